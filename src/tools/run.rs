//! A tool run as a channel source. One task owns the run: it starts the program in its
//! own process group (as the unprivileged PTY account when the gateway is root), feeds
//! its output into a small bounded queue the channel drains under its window, and ends
//! it on `close` (the stopper) or at the time limit by killing the whole group while the
//! leader is still unreaped, so a reused pid is never signalled. Then it reports the
//! final state with the parsed result as a `progress` event, and the exit.

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use nix::sys::signal::Signal;
use opsgate_protocol::DATA_HEADER_LEN;
use serde_json::{json, Map, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::{parse, Plan, Prepared};
use crate::source::{queue_stream, Source, SourceEvent, Stopper, MAX_SOURCE_CHUNK};

/// Output chunks waiting for the channel: small, so a slow client blocks the program's
/// pipe (back-pressure) rather than filling memory.
const QUEUE: usize = 4;
/// Stdout kept for parsing the result (nmap XML, dig sections). Output beyond it still
/// streams; the result then says `truncated`.
const PARSE_LIMIT: usize = 1024 * 1024;
/// After the leader exits, how long its pipes may stay open (a child still holding
/// them) before the run ends anyway.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// The state words of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
        }
    }
}

/// Starts a prepared run and returns it as a channel source. `on_end` is told the
/// final state (for the audit).
pub fn start(run: Prepared, on_end: impl FnOnce(State, Option<i32>) + Send + 'static) -> Source {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ctl_tx, _ctl_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let Prepared {
            tool,
            params,
            plan,
            timeout,
            permit,
        } = run;
        let started = Instant::now();
        let _ = tx
            .send(progress(
                tool,
                State::Running,
                Some(("params", params.clone())),
            ))
            .await;
        let outcome = match plan {
            Plan::Program(argv) => run_program(tool, &argv, timeout, stop_rx, &tx).await,
            native => super::native::run(native, timeout, stop_rx, &tx).await,
        };
        // The slot is free once the process is gone, before the client reads the end.
        drop(permit);
        let mut ev = Map::new();
        ev.insert("tool".into(), json!(tool));
        ev.insert("state".into(), json!(outcome.state.word()));
        ev.insert(
            "duration_ms".into(),
            json!(started.elapsed().as_millis() as u64),
        );
        if let Some(c) = outcome.code {
            ev.insert("exit_code".into(), json!(c));
        }
        if let Some(m) = &outcome.message {
            ev.insert("message".into(), json!(m));
        }
        if let Some(r) = outcome.result {
            ev.insert("result".into(), r);
        }
        on_end(outcome.state, outcome.code);
        let _ = tx
            .send(SourceEvent::Progress {
                key: "run".into(),
                event: ev,
            })
            .await;
        let _ = tx
            .send(SourceEvent::Exit {
                code: outcome.code,
                signal: outcome.signal,
            })
            .await;
    });
    Source {
        events: queue_stream(rx),
        control: ctl_tx,
        stopper: Stopper::Signal(stop_tx),
    }
}

fn progress(tool: &str, state: State, extra: Option<(&str, Value)>) -> SourceEvent {
    let mut ev = Map::new();
    ev.insert("tool".into(), json!(tool));
    ev.insert("state".into(), json!(state.word()));
    if let Some((k, v)) = extra {
        ev.insert(k.into(), v);
    }
    SourceEvent::Progress {
        key: "run".into(),
        event: ev,
    }
}

/// How a run ended.
pub struct Outcome {
    pub state: State,
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub message: Option<String>,
    pub result: Option<Value>,
}

impl Outcome {
    pub fn ended(state: State, message: &str) -> Outcome {
        Outcome {
            state,
            code: None,
            signal: Some("SIGKILL".into()),
            message: Some(message.into()),
            result: None,
        }
    }
}

/// A data event holding `bytes`.
pub fn data(bytes: &[u8]) -> SourceEvent {
    let mut b = BytesMut::with_capacity(DATA_HEADER_LEN + bytes.len());
    b.resize(DATA_HEADER_LEN, 0);
    b.extend_from_slice(bytes);
    SourceEvent::Data(b)
}

async fn run_program(
    tool: &'static str,
    argv: &[String],
    timeout: Duration,
    mut stop: oneshot::Receiver<()>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::ended(State::Failed, "empty argv");
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Nothing of the gateway's environment (OPSGATE_* secrets least of all).
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LANG", "C")
        .current_dir("/");
    if let Some(r) = crate::pty::run_as() {
        cmd.uid(r.uid).gid(r.gid).env("HOME", &r.home);
    } else if nix::unistd::geteuid().is_root() {
        return Outcome::ended(State::Failed, "no unprivileged [pty] user to run tools as");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let mut o = Outcome::ended(State::Failed, &format!("cannot start {program}: {e}"));
            o.signal = None;
            return o;
        }
    };
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(nix::unistd::Pid::from_raw);
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut captured: Vec<u8> = Vec::new();
    let mut truncated = false;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut pending: Option<SourceEvent> = None;
    let mut ended: Option<State> = None;
    let mut exit_status = None;
    let mut drain_deadline: Option<tokio::time::Instant> = None;

    loop {
        if stdout.is_none() && stderr.is_none() && pending.is_none() {
            break;
        }
        let drain_sleep = async {
            match drain_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let mut out_buf = BytesMut::with_capacity(DATA_HEADER_LEN + MAX_SOURCE_CHUNK);
        out_buf.resize(DATA_HEADER_LEN, 0);
        let mut err_buf = out_buf.clone();
        tokio::select! {
            _ = &mut stop => { ended = Some(State::Cancelled); break; }
            _ = &mut deadline => { ended = Some(State::TimedOut); break; }
            _ = drain_sleep => break,
            permit = tx.reserve(), if pending.is_some() => match permit {
                Ok(p) => { if let Some(ev) = pending.take() { p.send(ev) } }
                // The channel is gone: nobody reads, end the run.
                Err(_) => { ended = Some(State::Cancelled); break; }
            },
            st = child.wait(), if exit_status.is_none() => {
                exit_status = Some(st.ok());
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            r = read_some(&mut stdout, &mut out_buf), if pending.is_none() && stdout.is_some() => {
                match r {
                    Some(n) if n > 0 => {
                        let room = PARSE_LIMIT.saturating_sub(captured.len());
                        if n > room { truncated = true; }
                        captured.extend_from_slice(&out_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n.min(room)]);
                        pending = Some(SourceEvent::Data(out_buf));
                    }
                    _ => stdout = None,
                }
            }
            r = read_some(&mut stderr, &mut err_buf), if pending.is_none() && stderr.is_some() => {
                match r {
                    Some(n) if n > 0 => pending = Some(SourceEvent::Data(err_buf)),
                    _ => stderr = None,
                }
            }
        }
    }

    if let Some(state) = ended {
        // The leader is unreaped (we never waited for it, or it is still running): the
        // group id is still ours. SIGKILL the whole group, children included.
        if exit_status.is_none() {
            if let Some(pg) = pgid {
                let _ = nix::sys::signal::killpg(pg, Signal::SIGKILL);
            }
            let _ = child.wait().await;
        }
        let message = match state {
            State::TimedOut => format!("{tool} ran longer than its limit of {timeout:?}"),
            _ => format!("{tool} was cancelled"),
        };
        return Outcome::ended(state, &message);
    }
    // Output read just before the drain deadline still goes out.
    if let Some(ev) = pending.take() {
        let _ = tx.send(ev).await;
    }
    let status = match exit_status {
        Some(s) => s,
        None => child.wait().await.ok(),
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal()).map(|s| {
        Signal::try_from(s)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("SIG{s}"))
    });
    let text = String::from_utf8_lossy(&captured);
    let mut result = parse::result(tool, &text);
    if truncated {
        if let Some(Value::Object(m)) = result.as_mut() {
            m.insert("truncated".into(), json!(true));
        }
    }
    // ping exits 1 when no reply came: the run worked, the host did not answer; the
    // result says so. Other non-zero codes are failures.
    let ok = code == Some(0) || (tool == "ping" && code == Some(1));
    Outcome {
        state: if ok { State::Succeeded } else { State::Failed },
        code,
        signal,
        message: None,
        result,
    }
}

async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut BytesMut,
) -> Option<usize> {
    let r = r.as_mut()?;
    r.read_buf(&mut (&mut *buf).limit(MAX_SOURCE_CHUNK))
        .await
        .ok()
}
