//! Local programs in a real PTY, from the admin's allow-list only.
//!
//! When the gateway runs as root, programs run as the unprivileged `[pty] user` (no
//! supplementary groups, working directory `/`), so a program (or a person typing into
//! it) can neither signal the gateway nor read its data directory. When the gateway is
//! not root, programs run as the gateway's own user, which is logged at start.
//!
//! One task owns each program's process handle and is the only code that signals its
//! process group or reaps it: a group is signalled only while its leader is unreaped,
//! so a pid the kernel has handed to another process is never signalled.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::Duration;

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use nix::sys::signal::Signal;
use opsgate_protocol::{codes, DATA_HEADER_LEN};
use tokio::sync::{mpsc, oneshot};

use crate::config::PtyConfig;
use crate::source::{
    InputItem, InputQueue, OpenError, Source, SourceCtl, SourceEvent, Stopper, MAX_SOURCE_CHUNK,
};

/// Largest output chunk handed to the channel at once. Reads are coalesced up to this
/// while the PTY has more ready, so bulk output travels in few, large frames.
const CHUNK: usize = MAX_SOURCE_CHUNK;
/// What a waiting read holds: enough for keystroke echo and a prompt.
const FIRST_READ: usize = 2048;
const CONTROL_QUEUE: usize = 8;
/// How long a stopped program has after SIGHUP before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Errors while deciding who PTY programs run as.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("[pty] user {0:?} does not exist on this system; create it or set [pty] user")]
    NoSuchUser(String),
    #[error("looking up [pty] user {user:?}: {source}")]
    Lookup { user: String, source: nix::Error },
}

/// The account PTY programs run as, when it differs from the gateway's.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

static RUN_AS: OnceLock<Option<RunAs>> = OnceLock::new();

/// Decides, once at start, who PTY programs run as (see the module comment), and logs it.
pub fn configure(cfg: &PtyConfig) -> Result<(), PtyError> {
    let run_as = resolve_run_as(cfg)?;
    match &run_as {
        Some(r) if r.uid == 0 => tracing::warn!(
            user = %r.name,
            "PTY programs run as root ([pty] user): they can signal the gateway and read its data directory"
        ),
        Some(r) => tracing::info!(user = %r.name, uid = r.uid, gid = r.gid, "PTY programs run as an unprivileged user"),
        None => tracing::info!(
            uid = nix::unistd::geteuid().as_raw(),
            "the gateway is not root: PTY programs run as the gateway's own user ([pty] user is not used)"
        ),
    }
    // A second call (tests building several apps in one process) keeps the first answer.
    let _ = RUN_AS.set(run_as);
    Ok(())
}

fn resolve_run_as(cfg: &PtyConfig) -> Result<Option<RunAs>, PtyError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(&cfg.user)
        .map_err(|source| PtyError::Lookup {
            user: cfg.user.clone(),
            source,
        })?
        .ok_or_else(|| PtyError::NoSuchUser(cfg.user.clone()))?;
    let home = if user.dir.is_dir() {
        user.dir
    } else {
        PathBuf::from("/")
    };
    Ok(Some(RunAs {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home,
    }))
}

/// Who programs run as; if [`configure`] was never called, the defaults, so a root
/// gateway never starts programs as root by omission.
pub(crate) fn run_as() -> Option<&'static RunAs> {
    RUN_AS
        .get_or_init(|| resolve_run_as(&PtyConfig::default()).ok().flatten())
        .as_ref()
}

/// `GET /api/programs`: the names of the allow-listed programs (`[pty.programs]`), for
/// any logged-in user. Never the argv: what runs is the admin's business.
#[utoipa::path(get, path = "/api/programs", tag = "system",
    responses((status = 200, description = "Names of the programs a `pty` channel may run", body = Vec<String>, example = json!(["htop"]))))]
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
    if nix::unistd::geteuid().is_root() && run_as().is_none() {
        return Err(fail(&"no unprivileged [pty] user to run it as"));
    }
    let (pty, pts) = pty_process::open().map_err(|e| fail(&e))?;
    pty.resize(pty_process::Size::new(rows, cols))
        .map_err(|e| fail(&e))?;
    // The terminal is registered with the runtime for reading only (see `TerminalInput`),
    // before the program starts, so a failure here leaves no process behind.
    let master = std::os::fd::OwnedFd::from(pty);
    let input_fd = Arc::new(nonblocking_duplicate(&master).map_err(|e| fail(&e))?);
    // Keystrokes go straight to the terminal from the socket task when nothing is queued
    // (`InputQueue::offer`), through the same descriptor as the writer's.
    input.write_directly_to(input_fd.clone());
    let writer = TerminalInput {
        fd: input_fd,
        waiting: None,
    };
    let reader =
        tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(master).map_err(|e| fail(&e))?;
    let mut cmd = pty_process::Command::new(program)
        .args(args)
        .env("TERM", "xterm-256color");
    // The gateway's own secrets (admin password, config overrides) stay with the gateway.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OPSGATE_") {
            cmd = cmd.env_remove(k);
        }
    }
    if let Some(r) = run_as() {
        // std sets the gid, drops every supplementary group, then sets the uid, in the
        // child before exec.
        cmd = cmd
            .uid(r.uid)
            .gid(r.gid)
            .current_dir("/")
            .env("HOME", &r.home)
            .env("USER", &r.name)
            .env("LOGNAME", &r.name);
    }
    let mut child = cmd.spawn(pts).map_err(|e| fail(&e))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| fail(&"no pid"))?;
    let (ctl_tx, ctl_rx) = mpsc::channel::<SourceCtl>(CONTROL_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (status_tx, status_rx) = oneshot::channel::<Option<ExitStatus>>();

    let pgid = nix::unistd::Pid::from_raw(pid);
    // One task per program writes its input and reaps it (see `tend`); its output is
    // read by the channel task itself.
    tokio::spawn(async move {
        let reaped = reap(&mut child, stop_rx, |sig| {
            let _ = nix::sys::signal::killpg(pgid, sig);
        });
        let status = tend(reaped, writer, ctl_rx, input).await;
        let _ = status_tx.send(status);
    });

    // Output is read by the channel task itself (no reader task, no queue hop on the
    // echo path): the stream is polled only while the channel's window has room.
    let output = PtyOutput {
        reader,
        status_rx,
        status: None,
        finished: false,
    };
    let events = futures_util::stream::unfold(output, |mut out| async move {
        let ev = out.next_event().await?;
        Some((ev, out))
    });

    Ok(Source {
        events: Box::pin(events),
        control: ctl_tx,
        stopper: Stopper::Signal(stop_tx),
    })
}

/// Drives a running program until it is reaped: writes its input in order and whole
/// (the program's reading pace is the input window's), applies resizes, and waits for
/// `reaped`. One task does both so an idle terminal costs one task here, not two. A write
/// is one `select!` branch among the others, never awaited alone, so a program that
/// stops reading its input still gets its stop signal and is reaped.
async fn tend(
    reaped: impl std::future::Future<Output = Option<ExitStatus>>,
    mut writer: TerminalInput,
    mut control: mpsc::Receiver<SourceCtl>,
    input: Arc<InputQueue>,
) -> Option<ExitStatus> {
    tokio::pin!(reaped);
    // Input taken from the queue and not yet written, with how much of it was written.
    let mut pending: Option<(BytesMut, usize)> = None;
    // False once the channel is gone or the PTY refused a write: input is dropped then.
    let mut writing = true;
    let status = loop {
        let unwritten = match &pending {
            Some((chunk, done)) => &chunk[*done..],
            None => &[][..],
        };
        tokio::select! {
            status = &mut reaped => break status,
            ctl = control.recv(), if writing => match ctl {
                Some(SourceCtl::Resize { cols, rows }) => writer.resize(cols, rows),
                None => {
                    writing = false;
                    input.close();
                }
            },
            item = input.next_item(), if writing && pending.is_none() => match item {
                InputItem::Data(chunk) => pending = Some((chunk, 0)),
                InputItem::Resize { cols, rows } => writer.resize(cols, rows),
            },
            wrote = writer.write(unwritten), if writing && pending.is_some() => match wrote {
                Ok(n) if n > 0 => {
                    if let Some((chunk, done)) = &mut pending {
                        *done += n;
                        if *done == chunk.len() {
                            input.chunk_written(chunk.len());
                            pending = None;
                            writer.caught_up();
                        }
                    }
                }
                _ => {
                    // The terminal refuses input: the chunk is dropped, and counted as
                    // consumed like everything after it, so the window never jams.
                    writing = false;
                    if let Some((chunk, _)) = pending.take() {
                        input.consumed(chunk.len());
                    }
                    input.close();
                }
            },
        }
    };
    // What was taken and not written is dropped with the program; count it as consumed
    // so the client's input window does not jam on a finished program.
    if let Some((chunk, _)) = pending.take() {
        input.consumed(chunk.len());
    }
    if writing {
        input.close();
    }
    status
}

/// The program's side of the terminal as the gateway writes it: plain non-blocking
/// writes, and a registration for writability with the runtime only while a write has to
/// wait (a program that is not reading its input).
///
/// Why not one registration for both directions, as an async PTY type does: the master's
/// write queue is woken every time the program *reads* its input, so a PTY registered for
/// writability wakes a gateway thread at each keystroke the program reads, which is the
/// moment the program is about to echo it. `perf sched` of a keystroke echo showed that
/// wake-up preempting `cat` on its CPU for about 20 µs (plus two context switches) on the
/// way to the echo. The reading side (`PtyOutput`) is registered for readability only.
struct TerminalInput {
    /// Non-blocking, shared with the input queue's direct writes.
    fd: Arc<std::os::fd::OwnedFd>,
    /// A duplicate of `fd` registered for writability, while writes would block.
    waiting: Option<tokio::net::unix::pipe::Sender>,
}

/// A duplicate of the terminal's master in non-blocking mode (set, not assumed: a write
/// that could block would stall the socket task that writes keystrokes through it).
fn nonblocking_duplicate(master: &std::os::fd::OwnedFd) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fd = nix::unistd::dup(master)?;
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(fd)
}

impl TerminalInput {
    /// Writes some of `buf`, waiting while the terminal takes nothing. Cancel-safe: a
    /// write either happened within one poll and is returned, or did not happen.
    async fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            // While registered, through the registration: a write that would block must
            // clear its readiness, or `writable` answers at once and this loop spins.
            let wrote = match &self.waiting {
                Some(w) => w.try_write(buf),
                None => nix::unistd::write(&*self.fd, buf).map_err(std::io::Error::from),
            };
            match wrote {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let waiting = match &mut self.waiting {
                Some(w) => w,
                // Registered after the write failed: registration reports a terminal that
                // became writable in between, so no wake-up is lost.
                w => w.insert(tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(
                    self.fd.try_clone()?,
                )?),
            };
            waiting.writable().await?;
        }
    }

    /// The program caught up with its input: no more wake-ups for writability.
    fn caught_up(&mut self) {
        self.waiting = None;
    }

    fn resize(&self, cols: u16, rows: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(&*self.fd, size);
    }
}

/// A PTY program's output as the channel reads it.
struct PtyOutput {
    /// The terminal's master side, registered for readability only (see
    /// [`TerminalInput`]). Tokio's pipe reader is a plain non-blocking descriptor reader;
    /// a PTY master reads like one (EIO once the program's side is closed).
    reader: tokio::net::unix::pipe::Receiver,
    status_rx: oneshot::Receiver<Option<ExitStatus>>,
    /// The exit status, once the reaper reported it.
    status: Option<Option<ExitStatus>>,
    finished: bool,
}

impl PtyOutput {
    /// The next chunk of output, then the exit, then nothing.
    async fn next_event(&mut self) -> Option<SourceEvent> {
        if self.finished {
            return None;
        }
        // An idle terminal waits with a small buffer; a full first read grows it to a
        // whole chunk for the reads that follow.
        let mut buf = BytesMut::with_capacity(FIRST_READ + DATA_HEADER_LEN);
        buf.resize(DATA_HEADER_LEN, 0);
        let mut first = (&mut buf).limit(FIRST_READ);
        let read = tokio::select! {
            r = read_some(&self.reader, &mut first) => r,
            s = &mut self.status_rx, if self.status.is_none() => {
                self.status = Some(s.ok().flatten());
                // The program is gone; collect what it left in the PTY, then stop.
                match tokio::time::timeout(Duration::from_millis(200), read_some(&self.reader, &mut first)).await {
                    Ok(r) => r,
                    Err(_) => Ok(0),
                }
            }
        };
        // EIO after the child exits is how a PTY says end of file.
        let n = read.unwrap_or(0);
        if n == 0 {
            self.finished = true;
            let status = match self.status.take() {
                Some(s) => s,
                None => (&mut self.status_rx).await.ok().flatten(),
            };
            let (code, signal) = match status {
                Some(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    (s.code(), s.signal().map(signal_name))
                }
                None => (None, None),
            };
            return Some(SourceEvent::Exit { code, signal });
        }
        if n == FIRST_READ {
            buf.reserve(CHUNK - FIRST_READ);
        }
        while buf.len() < CHUNK + DATA_HEADER_LEN {
            let room = CHUNK + DATA_HEADER_LEN - buf.len();
            match self.reader.try_read_buf(&mut (&mut buf).limit(room)) {
                Ok(k) if k > 0 => {}
                _ => break,
            }
        }
        Some(SourceEvent::Data(buf))
    }
}

/// Reads what the terminal has, waiting until it has something. (Not tokio's
/// `AsyncRead` for the pipe reader: that one takes a short read as "drained" and would
/// end the coalescing of `next_event` after each read of the line discipline's buffer.)
async fn read_some(
    reader: &tokio::net::unix::pipe::Receiver,
    buf: &mut impl BufMut,
) -> std::io::Result<usize> {
    loop {
        reader.readable().await?;
        match reader.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Waits for the program to exit, or for a stop request (an explicit stop, or the
/// channel dropping its stopper) and then ends its process group: SIGHUP (as a terminal
/// closing would) and SIGCONT, then SIGKILL after [`KILL_GRACE`] for anything that
/// ignored it. `signal` is only ever called while `child` is unreaped: tokio reaps a
/// child only inside `wait`, and once `wait` has returned this function signals no more.
/// So the group id still belongs to this program (a zombie keeps its pid).
async fn reap(
    child: &mut tokio::process::Child,
    stop: oneshot::Receiver<()>,
    mut signal: impl FnMut(Signal),
) -> Option<ExitStatus> {
    tokio::select! {
        s = child.wait() => s.ok(),
        _ = stop => {
            signal(Signal::SIGHUP);
            signal(Signal::SIGCONT);
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    signal(Signal::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    }
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn spawn_group(script: &str) -> tokio::process::Child {
        tokio::process::Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .expect("spawn")
    }

    type Sent = Arc<Mutex<Vec<Signal>>>;

    /// A signaller that records and really signals the test child's group.
    fn recorder(child: &tokio::process::Child) -> (Sent, impl FnMut(Signal)) {
        let sent: Sent = Arc::default();
        let pgid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
        let s = sent.clone();
        (sent, move |sig| {
            s.lock().expect("lock").push(sig);
            let _ = nix::sys::signal::killpg(pgid, sig);
        })
    }

    #[tokio::test]
    async fn an_exited_and_reaped_program_is_never_signalled() {
        let mut child = spawn_group("exit 3");
        let (sent, signal) = recorder(&child);
        let (stop_tx, stop_rx) = oneshot::channel();
        let status = reap(&mut child, stop_rx, signal).await;
        assert_eq!(status.and_then(|s| s.code()), Some(3));
        // A stop after the exit reaches nobody: the reaper is done.
        assert!(stop_tx.send(()).is_err());
        tokio::time::sleep(KILL_GRACE + Duration::from_millis(300)).await;
        assert!(sent.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_stopped_program_that_exits_on_hangup_gets_no_delayed_kill() {
        let mut child = spawn_group("sleep 30");
        let (sent, signal) = recorder(&child);
        let (stop_tx, stop_rx) = oneshot::channel();
        let _ = stop_tx.send(());
        let status = reap(&mut child, stop_rx, signal).await;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.and_then(|s| s.signal()), Some(Signal::SIGHUP as i32));
        tokio::time::sleep(KILL_GRACE + Duration::from_millis(300)).await;
        assert_eq!(
            *sent.lock().expect("lock"),
            vec![Signal::SIGHUP, Signal::SIGCONT]
        );
    }

    #[tokio::test]
    async fn a_program_ignoring_hangup_is_killed_then_reaped() {
        let mut child = spawn_group("trap '' HUP; sleep 30 & wait");
        let (sent, signal) = recorder(&child);
        // Let the shell install its trap.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A dropped stopper stops the program too.
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        drop(stop_tx);
        let status = reap(&mut child, stop_rx, signal).await;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(Signal::SIGKILL as i32)
        );
        assert_eq!(
            *sent.lock().expect("lock"),
            vec![Signal::SIGHUP, Signal::SIGCONT, Signal::SIGKILL]
        );
    }
}
