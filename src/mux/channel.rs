//! One task per channel: it owns the channel's source (PTY or SSH), its flow-control
//! window and its ring buffer, and the attachment to at most one socket.
//!
//! Bounds, and what happens at each:
//! - Output in flight (read from the source, not yet acknowledged by the client) is at
//!   most `window_bytes` (+ one read chunk): at the bound the task stops pulling from the
//!   source, whose own small queue then fills, so the PTY writer or SSH channel blocks.
//! - The ring keeps `ring_bytes >= window_bytes`, so every unacknowledged byte can be
//!   replayed on `attach`; only bytes the client already acknowledged can age out.
//! - Input waiting for a slow program is at most `MAX_PENDING_INPUT`; beyond it input is
//!   refused with an `input_stalled` error rather than blocking output.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use opsgate_protocol::{codes, write_data_header, HostkeyStatus, ServerFrame, DATA_HEADER_LEN};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::ring::RingBuffer;
use super::{MuxInner, Outbound};

/// Input bytes held for a program that is not reading its terminal.
const MAX_PENDING_INPUT: usize = 256 * 1024;
/// Largest data frame replayed on attach.
const REPLAY_FRAME: usize = 64 * 1024;

/// What a source (PTY reader, SSH channel reader) reports.
pub enum SourceEvent {
    /// Output: the first [`DATA_HEADER_LEN`] bytes are headroom for the frame header.
    Data(BytesMut),
    /// The program or remote shell ended.
    Exit {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// The source failed after it started (e.g. the SSH connection dropped).
    Failed { code: &'static str, message: String },
}

/// What the channel tells its source's writer.
pub enum SourceCtl {
    Input(Bytes),
    Resize { cols: u16, rows: u16 },
}

/// How to stop a source.
pub enum Stopper {
    /// Tell the task that owns the source (the SSH driver, the PTY program's reaper) to
    /// end it; dropping the sender does the same.
    Signal(oneshot::Sender<()>),
}

impl Stopper {
    fn stop(self) {
        match self {
            Stopper::Signal(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// A started source.
pub struct Source {
    pub events: mpsc::Receiver<SourceEvent>,
    pub control: mpsc::Sender<SourceCtl>,
    pub stopper: Stopper,
}

/// Why a channel could not be opened.
#[derive(Debug, Clone)]
pub struct OpenError {
    pub code: &'static str,
    pub message: String,
}

impl OpenError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        OpenError {
            code,
            message: message.into(),
        }
    }
}

/// A host-key decision the SSH source needs from the user.
pub struct HostkeyQuestion {
    pub algorithm: String,
    pub fingerprint: String,
    pub status: HostkeyStatus,
    pub reply: oneshot::Sender<bool>,
}

/// Starts a source; runs inside the channel task so the channel stays responsive.
pub type Starter = Pin<Box<dyn Future<Output = Result<Source, OpenError>> + Send>>;

/// The socket a channel is attached to.
pub struct SocketRef {
    pub socket_id: u64,
    pub ch: u32,
    pub outbox: mpsc::Sender<Outbound>,
}

/// Messages to a channel task.
pub enum ChannelCmd {
    Input(Bytes),
    Resize { cols: u16, rows: u16 },
    Close,
    Attach { socket: SocketRef, offset: u64 },
    Detach { socket_id: u64 },
    Hostkey(bool),
    Shutdown(&'static str),
}

/// A handle to a running channel, held by the registry and by sockets.
#[derive(Clone)]
pub struct ChannelHandle {
    pub id: Arc<str>,
    pub kind: &'static str,
    pub login_id: Arc<str>,
    pub username: Arc<str>,
    pub cmd: mpsc::Sender<ChannelCmd>,
    /// Bytes acknowledged by the client, added to by the socket; an atomic rather than a
    /// queued message so an ack can never be lost or block the socket.
    pub acked: Arc<AtomicU64>,
    pub ack_signal: Arc<Notify>,
    /// The source's input queue, once started. The socket writes keystrokes straight
    /// into it (one task hop less on the echo path) while nothing is diverted.
    pub input: Arc<OnceLock<mpsc::Sender<SourceCtl>>>,
    /// Input messages sent through the channel task and not yet in the source's queue.
    /// While non-zero the socket must divert too, or input would overtake earlier input.
    pub diverted: Arc<AtomicUsize>,
}

impl ChannelHandle {
    /// Hands terminal input to the source: directly while nothing is diverted, else in
    /// order through the channel task. `Err` carries the error code to report.
    pub fn send_input(
        &self,
        data: Bytes,
        metrics: &crate::metrics::Metrics,
    ) -> Result<(), &'static str> {
        let mut data = data;
        let n = data.len();
        if self.diverted.load(Ordering::Acquire) == 0 {
            if let Some(tx) = self.input.get() {
                match tx.try_send(SourceCtl::Input(data)) {
                    Ok(()) => {
                        metrics.bytes_in(n);
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Full(SourceCtl::Input(d)))
                    | Err(mpsc::error::TrySendError::Closed(SourceCtl::Input(d))) => data = d,
                    Err(_) => return Ok(()),
                }
            }
        }
        self.diverted.fetch_add(1, Ordering::AcqRel);
        match self.cmd.try_send(ChannelCmd::Input(data)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.diverted.fetch_sub(1, Ordering::AcqRel);
                Err(codes::INPUT_STALLED)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.diverted.fetch_sub(1, Ordering::AcqRel);
                Err(codes::UNKNOWN_CHANNEL)
            }
        }
    }

    /// Records `bytes` more acknowledged output.
    pub fn ack(&self, bytes: u64) {
        self.acked.fetch_add(bytes, Ordering::AcqRel);
        self.ack_signal.notify_one();
    }
}

/// Everything a channel task needs to run.
pub struct ChannelTask {
    pub inner: Arc<MuxInner>,
    pub handle: ChannelHandle,
    pub window: u64,
    pub grace: Duration,
    pub ring: RingBuffer,
    pub attached: Option<SocketRef>,
}

enum Outcome {
    Continue,
    End(&'static str),
}

impl ChannelTask {
    async fn send(&mut self, out: Outbound) {
        if let Some(s) = &self.attached {
            if s.outbox.send(out).await.is_err() {
                // The socket is gone: from now on the output waits in the ring.
                self.attached = None;
            }
        }
    }

    async fn frame(&mut self, f: ServerFrame) {
        self.send(Outbound::Control(f)).await;
    }

    fn ch(&self) -> u32 {
        self.attached.as_ref().map_or(0, |s| s.ch)
    }

    /// Acked offset: what the client has confirmed, clamped to what exists.
    fn acked(&self, base: u64) -> u64 {
        (base + self.handle.acked.load(Ordering::Acquire)).min(self.ring.end())
    }

    async fn attach(
        &mut self,
        socket: SocketRef,
        offset: u64,
        ack_base: &mut u64,
        exit: &Option<ServerFrame>,
    ) {
        let id = self.handle.id.clone();
        if offset > self.ring.end() {
            let _ = socket
                .outbox
                .send(Outbound::Control(ServerFrame::Error {
                    ch: Some(socket.ch),
                    code: codes::INVALID_OFFSET.into(),
                    message: format!(
                        "offset {offset} is past the end of the output ({})",
                        self.ring.end()
                    ),
                }))
                .await;
            let _ = socket
                .outbox
                .send(Outbound::Released {
                    ch: socket.ch,
                    id,
                    reason: None,
                })
                .await;
            return;
        }
        if let Some(old) = self.attached.take() {
            if old.socket_id != socket.socket_id || old.ch != socket.ch {
                let _ = old.outbox.try_send(Outbound::Released {
                    ch: old.ch,
                    id: id.clone(),
                    reason: Some("attached_elsewhere"),
                });
            }
        }
        let from = offset.max(self.ring.start());
        let lost = from - offset;
        // Everything before `from` counts as delivered; the ack counter restarts there.
        *ack_base = from;
        self.handle.acked.store(0, Ordering::Release);
        self.attached = Some(socket);
        let ch = self.ch();
        self.frame(ServerFrame::Opened {
            ch,
            id: id.to_string(),
            offset: Some(from),
            lost: Some(lost),
        })
        .await;
        if lost > 0 {
            self.frame(ServerFrame::Error {
                ch: Some(ch),
                code: codes::OUTPUT_LOST.into(),
                message: format!(
                    "{lost} bytes of output before offset {from} are no longer buffered"
                ),
            })
            .await;
        }
        let mut frames = Vec::new();
        {
            let (a, b) = self.ring.since(from);
            for part in [a, b] {
                for piece in part.chunks(REPLAY_FRAME) {
                    frames.push(Bytes::from(opsgate_protocol::encode_data(ch, piece)));
                }
            }
        }
        for f in frames {
            self.send(Outbound::Frame(f)).await;
        }
        if let Some(e) = exit {
            self.frame(e.clone()).await;
        }
    }

    /// Runs the channel to its end.
    pub async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<ChannelCmd>,
        start: Starter,
        mut questions: Option<mpsc::Receiver<HostkeyQuestion>>,
    ) {
        let id = self.handle.id.clone();
        let span = tracing::info_span!("channel", id = %id, kind = self.handle.kind);
        let _enter = span.enter();
        drop(_enter);
        let mut ack_base = 0u64;
        let mut detached_at: Option<Instant> = None;
        let mut pending_answer: Option<oneshot::Sender<bool>> = None;
        let mut start = start;
        let mut size: Option<(u16, u16)> = None;

        // Phase 1: start the source, answering host-key questions meanwhile.
        let started = loop {
            let deadline = detached_at.map(|t| t + self.grace);
            tokio::select! {
                r = &mut start => break r,
                q = async { match questions.as_mut() { Some(q) => q.recv().await, None => std::future::pending().await } } => {
                    match q {
                        Some(q) => {
                            let ch = self.ch();
                            pending_answer = Some(q.reply);
                            self.frame(ServerFrame::Hostkey { ch, algorithm: q.algorithm, fingerprint: q.fingerprint, status: q.status }).await;
                        }
                        None => questions = None,
                    }
                }
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(ChannelCmd::Close) => return self.end(None, "closed").await,
                    Some(ChannelCmd::Shutdown(r)) => return self.end(None, r).await,
                    Some(ChannelCmd::Hostkey(yes)) => {
                        if let Some(tx) = pending_answer.take() { let _ = tx.send(yes); }
                    }
                    Some(ChannelCmd::Attach { socket, .. }) => {
                        // Not started yet: nothing to replay; `opened` follows the start.
                        self.attached = Some(socket);
                        detached_at = None;
                    }
                    Some(ChannelCmd::Detach { socket_id }) => {
                        if self.attached.as_ref().is_some_and(|s| s.socket_id == socket_id) {
                            self.attached = None;
                            detached_at = Some(Instant::now());
                        }
                    }
                    Some(ChannelCmd::Resize { cols, rows }) => size = Some((cols, rows)),
                    Some(ChannelCmd::Input(_)) => {
                        // Typed before the source exists: dropped, but accounted.
                        self.handle.diverted.fetch_sub(1, Ordering::AcqRel);
                    }
                },
                _ = sleep_until(deadline) => return self.end(None, "grace_expired").await,
            }
        };
        // A question sent just before the start failed (a changed key) still reaches
        // the user, ahead of the error.
        if let Some(mut q) = questions.take() {
            while let Ok(q) = q.try_recv() {
                let ch = self.ch();
                self.frame(ServerFrame::Hostkey {
                    ch,
                    algorithm: q.algorithm,
                    fingerprint: q.fingerprint,
                    status: q.status,
                })
                .await;
            }
        }
        let source = match started {
            Ok(s) => s,
            Err(e) => {
                let ch = self.ch();
                self.frame(ServerFrame::Error {
                    ch: Some(ch),
                    code: e.code.into(),
                    message: e.message,
                })
                .await;
                return self.end(None, e.code).await;
            }
        };
        if let Some((cols, rows)) = size {
            let _ = source.control.try_send(SourceCtl::Resize { cols, rows });
        }
        let ch = self.ch();
        self.frame(ServerFrame::Opened {
            ch,
            id: id.to_string(),
            offset: None,
            lost: None,
        })
        .await;
        if self.attached.is_none() && detached_at.is_none() {
            detached_at = Some(Instant::now());
        }

        // Phase 2: pump output under the window, forward input, follow attachments.
        let mut pending_input: VecDeque<Bytes> = VecDeque::new();
        let mut pending_bytes = 0usize;
        let mut exit: Option<ServerFrame> = None;
        let mut exited_at: Option<Instant> = None;
        let mut source_done = false;
        let ack_signal = self.handle.ack_signal.clone();
        let Source {
            mut events,
            control,
            stopper,
        } = source;
        let _ = self.handle.input.set(control.clone());
        let reason = loop {
            if self.attached.is_none() && detached_at.is_none() {
                detached_at = Some(Instant::now());
            }
            if self.attached.is_some() {
                detached_at = None;
            }
            let acked = self.acked(ack_base);
            if source_done && self.attached.is_some() && acked >= self.ring.end() {
                break "exited";
            }
            let can_read = !source_done && self.ring.end() - acked < self.window;
            let deadline = match (detached_at, exited_at) {
                (Some(d), _) => Some(d + self.grace),
                (None, Some(e)) => Some(e + self.grace),
                _ => None,
            };
            tokio::select! {
                ev = events.recv(), if can_read => match ev {
                    Some(SourceEvent::Data(mut chunk)) => {
                        let n = chunk.len().saturating_sub(DATA_HEADER_LEN);
                        self.ring.push(&chunk[DATA_HEADER_LEN..]);
                        self.inner.metrics.bytes_out(n);
                        if let Some(s) = &self.attached {
                            write_data_header(&mut chunk, s.ch);
                            self.send(Outbound::Frame(chunk.freeze())).await;
                        }
                    }
                    Some(SourceEvent::Exit { code, signal }) => {
                        let f = ServerFrame::Exit { ch: self.ch(), code, signal };
                        self.frame(f.clone()).await;
                        exit = Some(f);
                        source_done = true;
                        exited_at = Some(Instant::now());
                    }
                    Some(SourceEvent::Failed { code, message }) => {
                        let ch = self.ch();
                        self.frame(ServerFrame::Error { ch: Some(ch), code: code.into(), message }).await;
                        source_done = true;
                        exited_at = Some(Instant::now());
                    }
                    None => {
                        source_done = true;
                        exited_at = Some(Instant::now());
                    }
                },
                _ = ack_signal.notified() => {}
                permit = control.reserve(), if !pending_input.is_empty() => {
                    if let (Ok(p), Some(b)) = (permit, pending_input.pop_front()) {
                        pending_bytes -= b.len();
                        p.send(SourceCtl::Input(b));
                        self.handle.diverted.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                cmd = cmd_rx.recv() => match self.command(cmd, &control, &mut pending_input, &mut pending_bytes, &mut ack_base, &exit).await {
                    Outcome::Continue => {}
                    Outcome::End(r) => break r,
                },
                _ = sleep_until(deadline) => break if exit.is_some() { "exited" } else { "grace_expired" },
            }
        };
        self.end(Some(stopper), reason).await;
    }

    async fn command(
        &mut self,
        cmd: Option<ChannelCmd>,
        control: &mpsc::Sender<SourceCtl>,
        pending: &mut VecDeque<Bytes>,
        pending_bytes: &mut usize,
        ack_base: &mut u64,
        exit: &Option<ServerFrame>,
    ) -> Outcome {
        match cmd {
            None | Some(ChannelCmd::Close) => return Outcome::End("closed"),
            Some(ChannelCmd::Shutdown(r)) => return Outcome::End(r),
            Some(ChannelCmd::Input(b)) => {
                self.inner.metrics.bytes_in(b.len());
                if pending.is_empty() {
                    match control.try_send(SourceCtl::Input(b)) {
                        Ok(()) => {
                            self.handle.diverted.fetch_sub(1, Ordering::AcqRel);
                            return Outcome::Continue;
                        }
                        Err(mpsc::error::TrySendError::Full(SourceCtl::Input(b))) => {
                            *pending_bytes += b.len();
                            pending.push_back(b);
                        }
                        Err(_) => {
                            self.handle.diverted.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                } else if *pending_bytes + b.len() > MAX_PENDING_INPUT {
                    self.handle.diverted.fetch_sub(1, Ordering::AcqRel);
                    let ch = self.ch();
                    self.frame(ServerFrame::Error {
                        ch: Some(ch),
                        code: codes::INPUT_STALLED.into(),
                        message: format!(
                            "the program is not reading its input; {} bytes dropped",
                            b.len()
                        ),
                    })
                    .await;
                } else {
                    *pending_bytes += b.len();
                    pending.push_back(b);
                }
            }
            Some(ChannelCmd::Resize { cols, rows }) => {
                // A dropped resize is superseded by the next one; never block for it.
                let _ = control.try_send(SourceCtl::Resize { cols, rows });
            }
            Some(ChannelCmd::Attach { socket, offset }) => {
                self.attach(socket, offset, ack_base, exit).await;
            }
            Some(ChannelCmd::Detach { socket_id }) => {
                if self
                    .attached
                    .as_ref()
                    .is_some_and(|s| s.socket_id == socket_id)
                {
                    self.attached = None;
                }
            }
            Some(ChannelCmd::Hostkey(_)) => {}
        }
        Outcome::Continue
    }

    async fn end(mut self, stopper: Option<Stopper>, reason: &'static str) {
        if let Some(s) = stopper {
            s.stop();
        }
        let id = self.handle.id.clone();
        if let Some(s) = self.attached.take() {
            let msg = Outbound::Released {
                ch: s.ch,
                id: id.clone(),
                reason: Some(reason),
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), s.outbox.send(msg)).await;
        }
        tracing::debug!(channel = %id, reason, "channel ended");
        self.inner.channel_ended(&self.handle, reason);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
