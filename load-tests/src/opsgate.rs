//! The opsgate side: log in over REST, open the multiplexed socket, open channels.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use opsgate_protocol::{
    decode_server, encode_json, ClientFrame, Open, OpenTarget, ServerFrame, SUBPROTOCOL,
};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::check_loopback;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one open (spawn, SSH connect + auth) may take before it counts as failed.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A gateway reached over HTTP(S) on loopback.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` (plus any base path).
    pub base: String,
}

impl Gateway {
    pub fn new(base: &str) -> anyhow::Result<Gateway> {
        let base = base.trim_end_matches('/').to_string();
        check_loopback(&base)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(true)
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(Gateway { http, base })
    }

    fn origin(&self) -> String {
        // scheme://host:port, without the base path.
        match reqwest::Url::parse(&self.base) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => self.base.clone(),
        }
    }

    fn ws_url(&self) -> String {
        format!("{}/ws", self.base).replacen("http", "ws", 1)
    }

    /// Logs in; returns the cookie as `name=value`.
    pub async fn login(&self, user: &str, password: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .header("x-requested-with", "opsgate-load")
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .context("POST /api/auth/login")?;
        let status = r.status();
        let cookie = crate::common::session_cookie(r.headers());
        let _ = r.bytes().await;
        match cookie {
            Some(c) if status.is_success() => Ok(c),
            _ => bail!("login as {user} answered {status}"),
        }
    }

    /// Stores a password credential; returns its id.
    pub async fn create_password_credential(
        &self,
        cookie: &str,
        name: &str,
        secret: &str,
    ) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/api/credentials", self.base))
            .header("x-requested-with", "opsgate-load")
            .header("cookie", cookie)
            .json(&json!({"name": name, "kind": "password", "secret": secret}))
            .send()
            .await
            .context("POST /api/credentials")?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("creating a credential answered {status}: {v}");
        }
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("credential answer without id: {v}"))
    }

    /// Opens the multiplexed socket with a login cookie.
    pub async fn connect(&self, cookie: &str) -> anyhow::Result<Ws> {
        Ok(self.connect_with(cookie, &[]).await?.0)
    }

    /// Opens the socket with extra request headers; also returns the response headers.
    pub async fn connect_with(
        &self,
        cookie: &str,
        extra: &[(&'static str, &str)],
    ) -> anyhow::Result<(Ws, tokio_tungstenite::tungstenite::http::HeaderMap)> {
        let mut req = self.ws_url().into_client_request()?;
        let h = req.headers_mut();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        h.insert("cookie", HeaderValue::from_str(cookie)?);
        h.insert("origin", HeaderValue::from_str(&self.origin())?);
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_str(v)?);
        }
        let (ws, resp) = tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true)
            .await
            .context("WebSocket upgrade")?;
        Ok((ws, resp.headers().clone()))
    }
}

/// The client side of every WebSocket the load generator opens, whatever the target:
/// Nagle off (a keystroke must not wait for a delayed ACK) and a 64 KiB read buffer.
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// What to open on a channel.
#[derive(Clone, Debug)]
pub enum ChannelSpec {
    Pty {
        program: String,
    },
    Ssh {
        host: String,
        port: u16,
        username: String,
        credential_id: String,
    },
}

impl ChannelSpec {
    pub fn open_frame(&self, ch: u32) -> String {
        let target = match self.clone() {
            ChannelSpec::Pty { program } => OpenTarget::Pty {
                program,
                cols: 80,
                rows: 24,
            },
            ChannelSpec::Ssh {
                host,
                port,
                username,
                credential_id,
            } => OpenTarget::Ssh {
                session_id: None,
                host: Some(host),
                port: Some(port),
                username: Some(username),
                credential_id: Some(credential_id),
                cols: 80,
                rows: 24,
            },
        };
        encode_json(&ClientFrame::Open(Open { ch, target }))
    }
}

pub async fn send_frame(ws: &mut Ws, f: &ClientFrame) -> anyhow::Result<()> {
    ws.send(Message::Text(encode_json(f).into())).await?;
    Ok(())
}

/// Sends `open` for every channel in `chans` at once, answers host-key questions with
/// accept, and waits for all `opened`. Returns the channel ids in order. Data that
/// arrives meanwhile (a prompt) is returned too, per channel index.
pub async fn open_channels(
    ws: &mut Ws,
    chans: &[u32],
    spec: &ChannelSpec,
) -> anyhow::Result<(Vec<String>, Vec<Vec<u8>>)> {
    for &ch in chans {
        ws.send(Message::Text(spec.open_frame(ch).into())).await?;
    }
    let mut ids: Vec<Option<String>> = vec![None; chans.len()];
    let mut early: Vec<Vec<u8>> = vec![Vec::new(); chans.len()];
    let idx = |ch: u32| chans.iter().position(|c| *c == ch);
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    while ids.iter().any(Option::is_none) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("channels not opened within {OPEN_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("socket closed while opening"))??;
        match msg {
            Message::Text(t) => match decode_server(t.as_str())? {
                ServerFrame::Opened { ch, id, .. } => {
                    if let Some(i) = idx(ch) {
                        ids[i] = Some(id);
                    }
                }
                ServerFrame::Hostkey { ch, .. } => {
                    send_frame(ws, &ClientFrame::HostkeyAccept { ch }).await?;
                }
                ServerFrame::Error { ch, code, message } => {
                    bail!("open failed on channel {ch:?}: {code}: {message}")
                }
                ServerFrame::Closed { ch, reason } => {
                    bail!("channel {ch} closed while opening: {reason:?}")
                }
                _ => {}
            },
            Message::Binary(b) => {
                if let Ok((ch, payload)) = opsgate_protocol::decode_data(&b) {
                    if let Some(i) = idx(ch) {
                        early[i].extend_from_slice(payload);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((ids.into_iter().flatten().collect(), early))
}

/// Sends `close` for each channel and waits (at most 5 s) for their `closed`, so that
/// their programs end now rather than after the detached grace period.
pub async fn close_channels(ws: &mut Ws, chans: &[u32]) -> anyhow::Result<()> {
    for &ch in chans {
        ws.feed(Message::Text(
            encode_json(&ClientFrame::Close { ch }).into(),
        ))
        .await?;
    }
    ws.flush().await?;
    let mut open: Vec<u32> = chans.to_vec();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !open.is_empty() {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        if let Message::Text(t) = msg? {
            if let Ok(ServerFrame::Closed { ch, .. }) = decode_server(t.as_str()) {
                open.retain(|c| *c != ch);
            }
        }
    }
    Ok(())
}
