//! Local programs in a real PTY, from the admin's allow-list only.

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt;
use opsgate_protocol::{codes, DATA_HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::source::{
    InputQueue, OpenError, Source, SourceCtl, SourceEvent, Stopper, MAX_SOURCE_CHUNK,
};

/// Largest output chunk handed to the channel at once. Reads are coalesced up to this
/// while the PTY has more ready, so bulk output travels in few, large frames.
const CHUNK: usize = MAX_SOURCE_CHUNK;
/// Chunks queued between the reader and the channel: the only output buffered outside
/// the channel's window.
const EVENT_QUEUE: usize = 2;
const CONTROL_QUEUE: usize = 8;

/// `GET /api/programs`: the names of the allow-listed programs (`[pty.programs]`), for
/// any logged-in user. Never the argv: what runs is the admin's business.
pub async fn list_programs(
    axum::extract::State(app): axum::extract::State<Arc<crate::app::App>>,
    _user: crate::auth::CurrentUser,
) -> axum::Json<Vec<String>> {
    axum::Json(app.cfg.pty.programs.keys().cloned().collect())
}

/// Starts `argv` in a new PTY of `cols`×`rows` with `TERM=xterm-256color`; its input
/// comes from `input`.
pub fn spawn(
    argv: &[String],
    cols: u16,
    rows: u16,
    input: Arc<InputQueue>,
) -> Result<Source, OpenError> {
    let fail = |e: &dyn std::fmt::Display| {
        OpenError::new(codes::SPAWN_FAILED, format!("cannot start {argv:?}: {e}"))
    };
    let (program, args) = argv.split_first().ok_or_else(|| fail(&"empty argv"))?;
    let (pty, pts) = pty_process::open().map_err(|e| fail(&e))?;
    pty.resize(pty_process::Size::new(rows, cols))
        .map_err(|e| fail(&e))?;
    let mut cmd = pty_process::Command::new(program)
        .args(args)
        .env("TERM", "xterm-256color");
    // The gateway's own secrets (admin password, config overrides) stay with the gateway.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OPSGATE_") {
            cmd = cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn(pts).map_err(|e| fail(&e))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| fail(&"no pid"))?;
    let (mut reader, mut writer) = pty.into_split();
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<SourceCtl>(CONTROL_QUEUE);

    tokio::spawn(async move {
        let mut status = None;
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK + DATA_HEADER_LEN);
            buf.resize(DATA_HEADER_LEN, 0);
            let read = tokio::select! {
                r = reader.read_buf(&mut buf) => r,
                s = child.wait(), if status.is_none() => {
                    status = s.ok();
                    // The program is gone; collect what it left in the PTY, then stop.
                    match tokio::time::timeout(std::time::Duration::from_millis(200), reader.read_buf(&mut buf)).await {
                        Ok(r) => r,
                        Err(_) => Ok(0),
                    }
                }
            };
            // EIO after the child exits is how a PTY says end of file.
            let n = read.unwrap_or(0);
            if n == 0 {
                break;
            }
            while buf.len() < CHUNK + DATA_HEADER_LEN {
                match reader.read_buf(&mut buf).now_or_never() {
                    Some(Ok(k)) if k > 0 => {}
                    _ => break,
                }
            }
            if ev_tx.send(SourceEvent::Data(buf)).await.is_err() {
                return;
            }
        }
        if status.is_none() {
            status = child.wait().await.ok();
        }
        let (code, signal) = match status {
            Some(s) => {
                use std::os::unix::process::ExitStatusExt;
                (s.code(), s.signal().map(signal_name))
            }
            None => (None, None),
        };
        let _ = ev_tx.send(SourceEvent::Exit { code, signal }).await;
    });

    // Writer: input in order, whole; the program's reading pace is the input window's.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ctl = ctl_rx.recv() => match ctl {
                    Some(SourceCtl::Resize { cols, rows }) => {
                        let _ = writer.resize(pty_process::Size::new(rows, cols));
                    }
                    None => break,
                },
                chunk = input.next() => {
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                    input.consumed(chunk.len());
                }
            }
        }
        input.close();
    });

    Ok(Source {
        events: ev_rx,
        control: ctl_tx,
        stopper: Stopper::Call(Box::new(move || kill_group(pid))),
    })
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

/// Ends a PTY program's whole process group: SIGHUP (as a terminal closing would), then
/// SIGKILL two seconds later for anything that ignored it.
pub fn kill_group(pid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let pgid = Pid::from_raw(pid);
    if killpg(pgid, Signal::SIGHUP).is_err() {
        return;
    }
    let _ = killpg(pgid, Signal::SIGCONT);
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let _ = killpg(pgid, Signal::SIGKILL);
    });
}
