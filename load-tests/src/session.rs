//! One terminal connection to any target — opsgate (pty or ssh channels), a peer gateway
//! (wetty, webssh, ttyd) or a reference (a bare PTY, the `ssh` client) — behind one small
//! interface, so echo, throughput and idle run the same code against every one of them.
//!
//! Each peer is driven through its own real protocol:
//! - opsgate: `opsgate.v1` frames; output acknowledged as a browser would (`ack`).
//! - wetty 3.x: socket.io 4 (engine.io 4) over a WebSocket; events `input` / `data`,
//!   flow control by `commit` every 256 KiB as its browser client does.
//! - webssh 1.6: `POST /` with the SSH details returns a worker id; `GET /ws?id=…`; input
//!   as `{"data": …}`, output as raw binary frames.
//! - ttyd 1.7: WebSocket subprotocol `tty`, a JSON hello, then `'0'`-prefixed frames.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use opsgate_protocol::{decode_data, decode_server, encode_data, ClientFrame, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{check_loopback, check_loopback_host};
use crate::opsgate::{self, ChannelSpec, Gateway, Ws};

/// Which implementation to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// opsgate, `pty` channels running `--program`
    Opsgate,
    /// opsgate, `ssh` channels to `--ssh-host:--ssh-port`
    OpsgateSsh,
    /// wetty (socket.io), running whatever command it was started with
    Wetty,
    /// webssh (tornado + paramiko) to `--ssh-host:--ssh-port`
    Webssh,
    /// ttyd, running whatever command it was started with
    Ttyd,
    /// A PTY read directly by this process: no network, no gateway
    Bare,
    /// The OpenSSH client (`ssh -tt`) to `--ssh-host:--ssh-port`
    SshCli,
}

impl TargetKind {
    /// Targets that give a login shell: the scenario types its command into it.
    pub fn is_shell(self) -> bool {
        matches!(
            self,
            TargetKind::OpsgateSsh | TargetKind::Webssh | TargetKind::SshCli
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Opsgate => "opsgate-pty",
            TargetKind::OpsgateSsh => "opsgate-ssh",
            TargetKind::Wetty => "wetty",
            TargetKind::Webssh => "webssh",
            TargetKind::Ttyd => "ttyd",
            TargetKind::Bare => "bare-pty",
            TargetKind::SshCli => "ssh-tt",
        }
    }
}

/// Where and what to connect to; shared by every scenario.
#[derive(clap::Args, Clone, Debug)]
pub struct TargetArgs {
    #[arg(long, value_enum, default_value = "opsgate")]
    pub target: TargetKind,
    /// Base URL of the gateway or peer (loopback only), e.g. http://127.0.0.1:8080,
    /// http://127.0.0.1:3000/wetty
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// opsgate user
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// opsgate password
    #[arg(
        long,
        env = "OPSGATE_ADMIN_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    pub password: String,
    /// opsgate `pty` program name (from the gateway's `[pty.programs]`)
    #[arg(long, default_value = "echo")]
    pub program: String,
    /// `bare`: the shell command line run in the PTY (`sh -c …`)
    #[arg(long, default_value = "stty raw -echo; printf READY; exec cat")]
    pub command: String,
    #[arg(long, default_value = "127.0.0.1")]
    pub ssh_host: String,
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    #[arg(long, default_value = "opsgate-test")]
    pub ssh_user: String,
    #[arg(
        long,
        env = "LOAD_SSH_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    pub ssh_password: String,
    /// `ssh-cli`: private key file (no passphrase)
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// opsgate: sockets sharing one login (each login has its own socket limit)
    #[arg(long, default_value_t = 16)]
    pub sockets_per_login: usize,
    /// Process whose RSS and CPU time are measured (the gateway or peer server)
    #[arg(long, alias = "gateway-pid", default_value_t = 0)]
    pub server_pid: u32,
    /// Append result rows as JSON lines to this file
    #[arg(long)]
    pub json: Option<String>,
    /// Name of the target in reports [default: the target kind]
    #[arg(long)]
    pub label: Option<String>,
}

impl TargetArgs {
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.target.name().to_string())
    }
}

/// A target made ready to open sessions: logins done, credential stored.
pub struct Prepared {
    pub args: TargetArgs,
    gateway: Option<Gateway>,
    cookies: Vec<String>,
    spec: Option<ChannelSpec>,
    http: reqwest::Client,
}

impl Prepared {
    /// Validates the target and, for opsgate, logs in enough times for `sessions` sockets.
    pub async fn new(args: &TargetArgs, sessions: usize) -> anyhow::Result<Prepared> {
        match args.target {
            TargetKind::Bare => {}
            TargetKind::SshCli => check_loopback_host(&args.ssh_host)?,
            TargetKind::Webssh => {
                check_loopback(&args.url)?;
                check_loopback_host(&args.ssh_host)?;
            }
            _ => check_loopback(&args.url)?,
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut p = Prepared {
            args: args.clone(),
            gateway: None,
            cookies: Vec::new(),
            spec: None,
            http,
        };
        if matches!(args.target, TargetKind::Opsgate | TargetKind::OpsgateSsh) {
            let gw = Gateway::new(&args.url)?;
            let logins = sessions.div_ceil(args.sockets_per_login.max(1)).max(1);
            p.cookies = login_many(&gw, &args.user, &args.password, logins).await?;
            p.spec = Some(match args.target {
                TargetKind::Opsgate => ChannelSpec::Pty {
                    program: args.program.clone(),
                },
                _ => {
                    check_loopback_host(&args.ssh_host)?;
                    let id = gw
                        .create_password_credential(
                            &p.cookies[0],
                            &format!("load-{}", std::process::id()),
                            &args.ssh_password,
                        )
                        .await?;
                    ChannelSpec::Ssh {
                        host: args.ssh_host.clone(),
                        port: args.ssh_port,
                        username: args.ssh_user.clone(),
                        credential_id: id,
                    }
                }
            });
            p.gateway = Some(gw);
        }
        Ok(p)
    }

    pub fn cookie_for(&self, session: usize) -> Option<&str> {
        let per = self.args.sockets_per_login.max(1);
        self.cookies
            .get((session / per) % self.cookies.len().max(1))
            .map(String::as_str)
    }

    /// Opens session number `n` with `channels` terminals (only opsgate multiplexes more
    /// than one).
    pub async fn open(&self, n: usize, channels: usize) -> anyhow::Result<Session> {
        let channels = channels.max(1);
        if channels > 1
            && !matches!(
                self.args.target,
                TargetKind::Opsgate | TargetKind::OpsgateSsh
            )
        {
            bail!(
                "{} has one terminal per connection",
                self.args.target.name()
            );
        }
        let link = match self.args.target {
            TargetKind::Opsgate | TargetKind::OpsgateSsh => {
                let (gw, spec) = match (&self.gateway, &self.spec) {
                    (Some(g), Some(s)) => (g, s),
                    _ => bail!("opsgate target not prepared"),
                };
                let cookie = self.cookie_for(n).ok_or_else(|| anyhow!("no login"))?;
                let mut ws = gw.connect(cookie).await?;
                let chans: Vec<u32> = (1..=channels as u32).collect();
                let (_ids, early) = opsgate::open_channels(&mut ws, &chans, spec).await?;
                let mut backlog = VecDeque::new();
                for (i, e) in early.into_iter().enumerate() {
                    if !e.is_empty() {
                        backlog.push_back(Event::Data(i, Bytes::from(e)));
                    }
                }
                let s = Session {
                    link: Link::Opsgate {
                        ws,
                        unacked: vec![0; channels],
                        received: vec![0; channels],
                    },
                    backlog,
                    pending: Vec::new(),
                };
                // Early data counts as received (and unacknowledged) too.
                let mut s = s;
                let early: Vec<(usize, usize)> = s
                    .backlog
                    .iter()
                    .filter_map(|e| match e {
                        Event::Data(i, b) => Some((*i, b.len())),
                        _ => None,
                    })
                    .collect();
                if let Link::Opsgate {
                    unacked, received, ..
                } = &mut s.link
                {
                    for (i, n) in early {
                        unacked[i] += n as u64;
                        received[i] += n as u64;
                    }
                }
                return Ok(s);
            }
            TargetKind::Wetty => open_wetty(&self.args.url).await?,
            TargetKind::Webssh => open_webssh(&self.http, &self.args).await?,
            TargetKind::Ttyd => open_ttyd(&self.args.url).await?,
            TargetKind::Bare => open_bare(&self.args.command)?,
            TargetKind::SshCli => open_ssh_cli(&self.args)?,
        };
        Ok(Session {
            link,
            backlog: VecDeque::new(),
            pending: Vec::new(),
        })
    }
}

/// Logs in `n` times, four at a time (each login costs the gateway a password hash).
pub async fn login_many(
    gw: &Gateway,
    user: &str,
    password: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(4);
        let futs = (0..batch).map(|_| gw.login(user, password));
        for r in futures_util::future::join_all(futs).await {
            out.push(r?);
        }
        i += batch;
    }
    Ok(out)
}

/// What a session reports.
#[derive(Debug)]
pub enum Event {
    /// Output of terminal `idx`.
    Data(usize, Bytes),
    /// Terminal `idx` ended (program exit, channel closed, connection closed).
    End(usize),
    /// Nothing for the scenario (a control frame, a ping).
    Other,
}

enum Link {
    Opsgate {
        ws: Ws,
        /// Output received and not yet acknowledged, per channel.
        unacked: Vec<u64>,
        /// Output received since open, per channel (the resume offset).
        received: Vec<u64>,
    },
    Wetty {
        ws: Ws,
        /// Output not yet committed (wetty's browser commits every 256 KiB).
        uncommitted: u64,
    },
    Webssh {
        ws: Ws,
    },
    Ttyd {
        ws: Ws,
    },
    Bare {
        reader: pty_process::OwnedReadPty,
        writer: pty_process::OwnedWritePty,
        child: tokio::process::Child,
        buf: Vec<u8>,
    },
    SshCli {
        child: tokio::process::Child,
        stdin: tokio::process::ChildStdin,
        stdout: tokio::process::ChildStdout,
        buf: Vec<u8>,
    },
}

/// One connection with one or more terminals.
pub struct Session {
    link: Link,
    /// Events that arrived before the scenario started reading (e.g. during open).
    backlog: VecDeque<Event>,
    /// Messages to send on the next `flush` (acks, pongs): kept out of `next` so that
    /// `next` stays cancel-safe inside `select!`.
    pending: Vec<Message>,
}

/// opsgate acknowledges once this much output of a channel is unacknowledged (or on
/// `ack_idle`), as a browser that acks what it rendered in batches would.
const ACK_AT: u64 = 16 * 1024;
/// wetty's browser client commits in steps of this many characters.
const WETTY_COMMIT: u64 = 262_144;

impl Session {
    /// The next event. Cancel-safe: anything to send in reply is queued for `flush`.
    pub async fn next(&mut self) -> anyhow::Result<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        match &mut self.link {
            Link::Opsgate {
                ws,
                unacked,
                received,
                ..
            } => {
                let Some(msg) = ws.next().await else {
                    return Ok(Event::End(usize::MAX));
                };
                match msg? {
                    Message::Binary(b) => {
                        let (ch, payload) = decode_data(&b)?;
                        let i = (ch as usize).wrapping_sub(1);
                        if i >= unacked.len() {
                            return Ok(Event::Other);
                        }
                        let n = payload.len() as u64;
                        unacked[i] += n;
                        received[i] += n;
                        if unacked[i] >= ACK_AT {
                            self.pending.push(ack(ch, unacked[i]));
                            unacked[i] = 0;
                        }
                        Ok(Event::Data(i, b.slice(opsgate_protocol::DATA_HEADER_LEN..)))
                    }
                    Message::Text(t) => match decode_server(t.as_str())? {
                        ServerFrame::Exit { ch, .. } | ServerFrame::Closed { ch, .. } => {
                            Ok(Event::End((ch as usize).wrapping_sub(1)))
                        }
                        ServerFrame::Error { ch, code, message } => {
                            bail!("gateway error on channel {ch:?}: {code}: {message}")
                        }
                        _ => Ok(Event::Other),
                    },
                    Message::Close(_) => Ok(Event::End(usize::MAX)),
                    _ => Ok(Event::Other),
                }
            }
            Link::Wetty { ws, uncommitted } => {
                let Some(msg) = ws.next().await else {
                    return Ok(Event::End(0));
                };
                let text = match msg? {
                    Message::Text(t) => t,
                    Message::Close(_) => return Ok(Event::End(0)),
                    _ => return Ok(Event::Other),
                };
                let t = text.as_str();
                if t == "2" {
                    // engine.io ping from the server.
                    self.pending.push(Message::Text("3".into()));
                    return Ok(Event::Other);
                }
                let Some(body) = t.strip_prefix("42") else {
                    return Ok(Event::Other);
                };
                let v: Vec<serde_json::Value> = serde_json::from_str(body)?;
                match v.first().and_then(|e| e.as_str()) {
                    Some("data") => {
                        let s = v.get(1).and_then(|d| d.as_str()).unwrap_or("");
                        *uncommitted += s.len() as u64;
                        while *uncommitted >= WETTY_COMMIT {
                            *uncommitted -= WETTY_COMMIT;
                            self.pending.push(Message::Text(
                                format!("42[\"commit\",{WETTY_COMMIT}]").into(),
                            ));
                        }
                        Ok(Event::Data(0, Bytes::copy_from_slice(s.as_bytes())))
                    }
                    Some("logout") => Ok(Event::End(0)),
                    _ => Ok(Event::Other),
                }
            }
            Link::Webssh { ws } => {
                let Some(msg) = ws.next().await else {
                    return Ok(Event::End(0));
                };
                match msg? {
                    Message::Binary(b) => Ok(Event::Data(0, b)),
                    Message::Text(t) => Ok(Event::Data(0, Bytes::copy_from_slice(t.as_bytes()))),
                    Message::Close(_) => Ok(Event::End(0)),
                    _ => Ok(Event::Other),
                }
            }
            Link::Ttyd { ws } => {
                let Some(msg) = ws.next().await else {
                    return Ok(Event::End(0));
                };
                let b = match msg? {
                    Message::Binary(b) => b,
                    Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                    Message::Close(_) => return Ok(Event::End(0)),
                    _ => return Ok(Event::Other),
                };
                if b.first() == Some(&b'0') {
                    Ok(Event::Data(0, b.slice(1..)))
                } else {
                    Ok(Event::Other)
                }
            }
            Link::Bare { reader, buf, .. } => match reader.read(buf).await {
                // EIO after the child exits is how a PTY says end of file.
                Ok(0) | Err(_) => Ok(Event::End(0)),
                Ok(n) => Ok(Event::Data(0, Bytes::copy_from_slice(&buf[..n]))),
            },
            Link::SshCli { stdout, buf, .. } => match stdout.read(buf).await {
                Ok(0) | Err(_) => Ok(Event::End(0)),
                Ok(n) => Ok(Event::Data(0, Bytes::copy_from_slice(&buf[..n]))),
            },
        }
    }

    /// Sends what `next` queued (acks, pongs).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        if let Some(ws) = self.ws() {
            for m in pending {
                ws.feed(m).await?;
            }
            ws.flush().await?;
        }
        Ok(())
    }

    /// Acknowledges every byte received so far (opsgate), as a browser does after it
    /// rendered; call on a timer.
    pub async fn ack_idle(&mut self) -> anyhow::Result<()> {
        if let Link::Opsgate { unacked, .. } = &mut self.link {
            for (i, u) in unacked.iter_mut().enumerate() {
                if *u > 0 {
                    self.pending.push(ack(i as u32 + 1, *u));
                    *u = 0;
                }
            }
        }
        self.flush().await
    }

    fn ws(&mut self) -> Option<&mut Ws> {
        match &mut self.link {
            Link::Opsgate { ws, .. }
            | Link::Wetty { ws, .. }
            | Link::Webssh { ws }
            | Link::Ttyd { ws } => Some(ws),
            _ => None,
        }
    }

    /// Types `data` into terminal `idx`.
    pub async fn write(&mut self, idx: usize, data: &[u8]) -> anyhow::Result<()> {
        match &mut self.link {
            Link::Opsgate { ws, .. } => {
                ws.send(Message::Binary(encode_data(idx as u32 + 1, data).into()))
                    .await?
            }
            Link::Wetty { ws, .. } => {
                let s = String::from_utf8_lossy(data);
                let frame = format!("42{}", serde_json::json!(["input", s]));
                ws.send(Message::Text(frame.into())).await?
            }
            Link::Webssh { ws } => {
                let s = String::from_utf8_lossy(data);
                ws.send(Message::Text(
                    serde_json::json!({ "data": s }).to_string().into(),
                ))
                .await?
            }
            Link::Ttyd { ws } => {
                let mut b = Vec::with_capacity(data.len() + 1);
                b.push(b'0');
                b.extend_from_slice(data);
                ws.send(Message::Binary(b.into())).await?
            }
            Link::Bare { writer, .. } => writer.write_all(data).await?,
            Link::SshCli { stdin, .. } => {
                stdin.write_all(data).await?;
                stdin.flush().await?
            }
        }
        Ok(())
    }

    /// Ends the session politely: opsgate channels are closed first (a channel outlives
    /// its socket for the grace period otherwise, holding its PTY), then the WebSocket;
    /// child processes are killed.
    pub async fn close(mut self) {
        if let Link::Opsgate { ws, unacked, .. } = &mut self.link {
            let n = unacked.len() as u32;
            let _ = opsgate::close_channels(ws, &(1..=n).collect::<Vec<_>>()).await;
        }
        if let Some(ws) = self.ws() {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        }
        match &mut self.link {
            Link::Bare { child, .. } | Link::SshCli { child, .. } => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            }
            _ => {}
        }
    }
}

fn ack(ch: u32, bytes: u64) -> Message {
    Message::Text(opsgate_protocol::encode_json(&ClientFrame::Ack { ch, bytes }).into())
}

fn ws_url(http_url: &str) -> String {
    http_url.replacen("http", "ws", 1)
}

async fn ws_connect(
    url: &str,
    protocol: Option<&'static str>,
    origin: Option<String>,
) -> anyhow::Result<Ws> {
    let mut req = url.into_client_request()?;
    let h = req.headers_mut();
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    if let Some(o) = origin {
        h.insert("origin", HeaderValue::from_str(&o)?);
    }
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(opsgate::ws_config()), true)
            .await
            .with_context(|| format!("WebSocket to {url}"))?;
    Ok(ws)
}

fn origin_of(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::Url::parse(url)?.origin().ascii_serialization())
}

/// wetty: engine.io open, socket.io connect to `/`, then wait for `login` (the PTY is up).
async fn open_wetty(url: &str) -> anyhow::Result<Link> {
    let base = url.trim_end_matches('/');
    let ws_u = format!("{}/socket.io/?EIO=4&transport=websocket", ws_url(base));
    let mut ws = ws_connect(&ws_u, None, Some(origin_of(url)?)).await?;
    let deadline = tokio::time::Instant::now() + opsgate::OPEN_TIMEOUT;
    let mut connected = false;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("wetty did not start a terminal in time"))?
            .ok_or_else(|| anyhow!("wetty closed the socket"))??;
        let Message::Text(t) = msg else { continue };
        let t = t.as_str();
        if t.starts_with('0') && !connected {
            // engine.io OPEN: connect the socket.io default namespace.
            ws.send(Message::Text("40".into())).await?;
            connected = true;
        } else if t == "2" {
            ws.send(Message::Text("3".into())).await?;
        } else if t.starts_with("44") {
            bail!("wetty refused the socket.io connection: {t}");
        } else if t.starts_with("42[\"login\"") {
            break;
        }
    }
    Ok(Link::Wetty { ws, uncommitted: 0 })
}

/// webssh: the form post that makes the SSH connection, then the WebSocket to its worker.
async fn open_webssh(http: &reqwest::Client, a: &TargetArgs) -> anyhow::Result<Link> {
    let base = a.url.trim_end_matches('/');
    let form = [
        ("hostname", a.ssh_host.as_str()),
        ("port", &a.ssh_port.to_string()),
        ("username", a.ssh_user.as_str()),
        ("password", a.ssh_password.as_str()),
        ("term", "xterm-256color"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let r = http
        .post(format!("{base}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .context("POST to webssh")?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.context("webssh answer")?;
    let id = match v["id"].as_str() {
        Some(id) if status.is_success() => id.to_string(),
        _ => bail!("webssh refused ({status}): {v}"),
    };
    let ws = ws_connect(
        &format!("{}/ws?id={id}", ws_url(base)),
        None,
        Some(origin_of(&a.url)?),
    )
    .await?;
    Ok(Link::Webssh { ws })
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// ttyd: subprotocol `tty`, a JSON hello with the size, then output frames.
async fn open_ttyd(url: &str) -> anyhow::Result<Link> {
    let base = url.trim_end_matches('/');
    let mut ws = ws_connect(
        &format!("{}/ws", ws_url(base)),
        Some("tty"),
        Some(origin_of(url)?),
    )
    .await?;
    let hello = serde_json::json!({"AuthToken": "", "columns": 80, "rows": 24}).to_string();
    ws.send(Message::Binary(hello.into_bytes().into())).await?;
    Ok(Link::Ttyd { ws })
}

/// A PTY of our own running `sh -c command`, read directly: the floor for any gateway.
fn open_bare(command: &str) -> anyhow::Result<Link> {
    let (pty, pts) = pty_process::open()?;
    pty.resize(pty_process::Size::new(24, 80))?;
    let child = pty_process::Command::new("sh")
        .args(["-c", command])
        .env("TERM", "xterm-256color")
        .kill_on_drop(true)
        .spawn(pts)?;
    let (reader, writer) = pty.into_split();
    Ok(Link::Bare {
        reader,
        writer,
        child,
        buf: vec![0; 64 * 1024],
    })
}

/// The OpenSSH client with a forced remote PTY, its stdio piped to us.
fn open_ssh_cli(a: &TargetArgs) -> anyhow::Result<Link> {
    let key = a
        .ssh_key
        .as_ref()
        .ok_or_else(|| anyhow!("--ssh-key is needed for ssh-cli"))?;
    let mut child = tokio::process::Command::new("ssh")
        .arg("-tt")
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR"])
        .args(["-o", "BatchMode=yes"])
        .arg("-i")
        .arg(key)
        .args(["-p", &a.ssh_port.to_string()])
        .arg(format!("{}@{}", a.ssh_user, a.ssh_host))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting ssh")?;
    let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    Ok(Link::SshCli {
        child,
        stdin,
        stdout,
        buf: vec![0; 64 * 1024],
    })
}

/// The pid of the process a session's terminal talks through, where that is ours to
/// know (the `ssh` client): its CPU time is the reference's "gateway" cost.
pub fn session_client_pid(s: &Session) -> Option<u32> {
    match &s.link {
        Link::SshCli { child, .. } => child.id(),
        _ => None,
    }
}
