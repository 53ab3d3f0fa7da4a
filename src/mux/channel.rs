//! One task per channel: it owns the channel's source (PTY or SSH), its output flow
//! (window, ring, offsets: `flow.rs`) and the attachment to at most one socket.
//!
//! Bounds, and what happens at each:
//! - Output unacknowledged by the client is at most `window_bytes` + one read
//!   ([`crate::source::MAX_SOURCE_CHUNK`]): at the bound the task stops pulling from the
//!   source, whose own small queue then fills, so the PTY writer or SSH channel blocks.
//!   The ring holds at least that much, so every unacknowledged byte can be replayed.
//! - Input the program has not consumed is at most `input_window_bytes`: the client
//!   counts it with `input_ack` frames and never sends more; a client that does gets
//!   `input_overrun` and its input is refused until it sends `input_resume`
//!   (`crate::source::InputQueue`).
//! - Commands from sockets (attach, host-key answers, input resume) go through a small
//!   queue (`CHANNEL_CMD_CAPACITY`); a socket finding it full answers `channel_busy`.
//!   Resizes ride the input queue, in order with the input. Stopping never needs the
//!   queue: it is a flag plus a wake-up, so `close`, logout and shutdown always get through.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use opsgate_protocol::{write_data_header, ServerFrame, DATA_HEADER_LEN};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::ended::Ending;
use super::flow::{OffsetPastEnd, OutputFlow};
use super::{error_frame, offset_past_end, output_lost, MuxInner, Outbound};
use crate::source::{HostkeyQuestion, InputQueue, Offer, OpenError, Source, SourceEvent};

/// Largest data frame replayed on attach.
const REPLAY_FRAME: usize = crate::source::MAX_SOURCE_CHUNK;
/// How long a small amount of consumed input may wait before it is acknowledged, so a
/// typist's keystrokes cost one `input_ack` per burst rather than one each. Half a
/// window is acknowledged at once, so a paste never waits for this.
const INPUT_ACK_DELAY: Duration = Duration::from_millis(50);

/// Starts a source; runs inside the channel task so the channel stays responsive.
pub type Starter = Pin<Box<dyn Future<Output = Result<Source, OpenError>> + Send>>;

/// The socket a channel is attached to.
pub struct SocketRef {
    pub socket_id: u64,
    pub ch: u32,
    pub outbox: mpsc::Sender<Outbound>,
    /// Output bytes this attachment's client acknowledged and the channel has not taken
    /// yet. An atomic rather than a queued message, so an ack can never be lost or block
    /// the socket; one per attachment, so a late ack from an old socket cannot count
    /// for the new one.
    pub acked: Arc<AtomicU64>,
}

/// Messages to a channel task. Stopping is not one of them (see [`ChannelHandle::stop`]).
/// (Resizes are not either: they travel in order with the input, `InputQueue::resize`.)
pub enum ChannelCmd {
    /// Boxed: every channel's command queue allocates a block of slots up front, so the
    /// slot size is paid per idle terminal.
    Attach {
        socket: Box<SocketRef>,
        offset: u64,
    },
    Hostkey(bool),
    /// The client acknowledged an `input_overrun`.
    InputResume,
}

/// State a channel shares with sockets and its source.
pub struct ChannelShared {
    /// Client input on its way to the program.
    pub input: Arc<InputQueue>,
    /// Wakes the channel task: an ack arrived, input was consumed, or it must stop.
    pub wake: Arc<Notify>,
    stop: OnceLock<&'static str>,
    /// What `GET /api/channels` reports; see [`ChannelStatus`].
    pub status: ChannelStatus,
    /// `attach` commands queued and not yet taken by the channel task (see
    /// [`ChannelHandle::attach_queued`]).
    attaches_queued: AtomicU64,
    attach_wake: Notify,
}

impl ChannelShared {
    /// One counted `attach` is no longer queued (taken by the channel task, or never
    /// queued); never below zero.
    fn uncount_attach(&self) {
        let _ = self
            .attaches_queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// A read-only view of a channel's progress for listings (`GET /api/channels`), so a
/// reloaded page or a second tab can find its terminals. Written only by the channel
/// task, with plain atomic stores after each event; readers may see a value one event
/// old, which is fine for a listing (the `attach` that follows is exact).
#[derive(Default)]
pub struct ChannelStatus {
    /// Output bytes the source has produced so far (the offset just past the newest).
    produced: AtomicU64,
    /// Bound to a socket right now.
    attached: AtomicBool,
    /// Set once when the source ended: its exit code, if it reported one.
    exit: OnceLock<Option<i32>>,
}

impl ChannelStatus {
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Acquire)
    }
    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }
    /// `None` while running; `Some(code)` once ended (`Some(None)`: no code, e.g. a
    /// signal or a dropped SSH connection).
    pub fn exit(&self) -> Option<Option<i32>> {
        self.exit.get().copied()
    }
    fn ended(&self, code: Option<i32>) {
        let _ = self.exit.set(code);
    }
}

/// A handle to a running channel, held by the registry and by sockets.
#[derive(Clone)]
pub struct ChannelHandle {
    pub id: Arc<str>,
    pub kind: &'static str,
    pub login_id: Arc<str>,
    pub username: Arc<str>,
    /// The client address of the login that opened it.
    pub ip: Arc<str>,
    /// What the channel runs, for the audit log: `user@host:port`, a saved session, or
    /// the program's name.
    pub target: Arc<str>,
    /// The workspace key whose objects (saved session, credential, known hosts) the
    /// channel uses: set by the `ssh` source once its target is resolved, never for a
    /// PTY program (nobody's object). Team membership changes end channels by it
    /// ([`super::Mux::close_workspace`]).
    pub workspace: Arc<OnceLock<Arc<str>>>,
    pub cmd: mpsc::Sender<ChannelCmd>,
    pub shared: Arc<ChannelShared>,
}

impl ChannelHandle {
    pub(crate) fn new(
        id: Arc<str>,
        kind: &'static str,
        login: &super::LoginCtx,
        target: String,
        input_window: u64,
        cmd: mpsc::Sender<ChannelCmd>,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        ChannelHandle {
            id,
            kind,
            login_id: login.login_id.clone(),
            username: login.username.clone(),
            ip: Arc::from(login.ip.as_str()),
            target: Arc::from(target),
            workspace: Arc::new(OnceLock::new()),
            cmd,
            shared: Arc::new(ChannelShared {
                input: Arc::new(InputQueue::new(input_window, wake.clone())),
                wake,
                stop: OnceLock::new(),
                attaches_queued: AtomicU64::new(0),
                attach_wake: Notify::new(),
                status: ChannelStatus::default(),
            }),
        }
    }

    /// Ends the channel for `reason` (the first reason given wins). Never blocks and
    /// never fails: it is a flag the channel task checks whenever it wakes.
    pub fn stop(&self, reason: &'static str) {
        let _ = self.shared.stop.set(reason);
        self.shared.wake.notify_one();
    }

    /// A socket queued an `attach` for this channel (counted first by
    /// [`ChannelHandle::attach_queuing`]). A channel task waiting to hand a
    /// frame to a socket whose outbox stays full (a tab that stopped reading) gives
    /// that socket up for it: without this, taking a terminal over from a frozen tab
    /// waited until the frozen socket was dropped, up to two heartbeats.
    pub fn attach_queued(&self) {
        self.shared.attach_wake.notify_one();
    }

    /// Counts an `attach` about to be queued (before [`ChannelHandle::attach_queued`]).
    pub fn attach_queuing(&self) {
        self.shared.attaches_queued.fetch_add(1, Ordering::AcqRel);
    }

    /// The `attach` counted by [`ChannelHandle::attach_queuing`] could not be queued.
    pub fn attach_not_queued(&self) {
        self.shared.uncount_attach();
    }

    /// Offers client input to the program, in order, under the input window.
    pub fn offer_input(&self, data: &[u8]) -> Offer {
        self.shared.input.offer(data)
    }
}

/// Everything a channel task needs to run.
pub struct ChannelTask {
    pub inner: Arc<MuxInner>,
    pub handle: ChannelHandle,
    pub grace: Duration,
    pub flow: OutputFlow,
    pub attached: Option<SocketRef>,
}

/// Consumed input not yet acknowledged to the client.
struct InputAcks {
    reported: u64,
    due: Option<Instant>,
}

enum Outcome {
    Continue,
    End(&'static str),
}

impl ChannelTask {
    async fn send(&mut self, out: Outbound) -> bool {
        let Some(s) = &self.attached else {
            return false;
        };
        let out = match s.outbox.try_send(out) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The socket is gone: from now on the output waits in the ring.
                self.attached = None;
                return false;
            }
            Err(mpsc::error::TrySendError::Full(out)) => out,
        };
        let shared = self.handle.shared.clone();
        if shared.stop.get().is_some() {
            return false;
        }
        let outbox = s.outbox.clone();
        let send = outbox.send(out);
        tokio::pin!(send);
        loop {
            tokio::select! {
                // A channel told to stop (access revoked, say) while its socket takes
                // nothing stops now, not when that socket is dropped two heartbeats
                // later: the frame is moot. Other wake-ups (acks, consumed input) are
                // looked at by the main loop after every event, so taking one is harmless.
                _ = shared.wake.notified() => {
                    if shared.stop.get().is_some() {
                        return false;
                    }
                }
                r = &mut send => {
                    if r.is_ok() {
                        return true;
                    }
                    self.attached = None;
                    return false;
                }
                _ = shared.attach_wake.notified() => {
                    if shared.attaches_queued.load(Ordering::Acquire) == 0 {
                        continue;
                    }
                    // Another attachment is queued behind a socket that takes nothing:
                    // let this socket go now. What it did not get stays in the ring for
                    // whoever attaches, and the queued `attach` is served next.
                    if let Some(old) = self.attached.take() {
                        tell_released(old, self.handle.id.clone(), "attached_elsewhere");
                    }
                    return false;
                }
            }
        }
    }

    async fn frame(&mut self, f: ServerFrame) {
        self.send(Outbound::Control(Box::new(f))).await;
    }

    fn ch(&self) -> u32 {
        self.attached.as_ref().map_or(0, |s| s.ch)
    }

    /// Publishes output and attachment for listings ([`ChannelStatus`]).
    fn publish_status(&self) {
        let st = &self.handle.shared.status;
        st.produced.store(self.flow.end(), Ordering::Release);
        st.attached
            .store(self.attached.is_some(), Ordering::Release);
    }

    /// Takes the acks the attached client sent since the last look.
    fn take_acks(&mut self) {
        if let Some(s) = &self.attached {
            let n = s.acked.swap(0, Ordering::AcqRel);
            if n > 0 {
                self.flow.ack(n);
            }
        }
    }

    /// Tells the attached client how much of its input the program consumed: at once
    /// when half a window is waiting to be acknowledged, else after [`INPUT_ACK_DELAY`].
    async fn report_input(&mut self, acks: &mut InputAcks) {
        if self.attached.is_none() {
            return;
        }
        let input = &self.handle.shared.input;
        let consumed = input.consumed_total();
        let unreported = consumed - acks.reported;
        if unreported == 0 {
            acks.due = None;
            return;
        }
        let now = Instant::now();
        if unreported >= input.window() / 2 || acks.due.is_some_and(|d| now >= d) {
            acks.reported = consumed;
            acks.due = None;
            input.reported(consumed);
            let ch = self.ch();
            self.frame(ServerFrame::InputAck {
                ch,
                bytes: unreported,
            })
            .await;
        } else if acks.due.is_none() {
            acks.due = Some(now + INPUT_ACK_DELAY);
        }
    }

    /// Frees the number an earlier socket used for this channel.
    fn release(&self, old: SocketRef) {
        tell_released(old, self.handle.id.clone(), "attached_elsewhere");
    }

    async fn attach(
        &mut self,
        socket: SocketRef,
        offset: u64,
        acks: &mut InputAcks,
        exit: &Option<ServerFrame>,
        progress: &ProgressLog,
    ) {
        let id = self.handle.id.clone();
        let replay = match self.flow.attach(offset) {
            Ok(r) => r,
            Err(OffsetPastEnd { end }) => {
                let refuse = [
                    Outbound::Control(Box::new(offset_past_end(socket.ch, offset, end))),
                    Outbound::Released {
                        ch: socket.ch,
                        id,
                        reason: None,
                    },
                ];
                for m in refuse {
                    let _ = socket.outbox.send(m).await;
                }
                return;
            }
        };
        if let Some(old) = self.attached.take() {
            if old.socket_id != socket.socket_id || old.ch != socket.ch {
                self.release(old);
            }
        }
        self.attached = Some(socket);
        let ch = self.ch();
        let input = self.handle.shared.input.clone();
        let (received, consumed) = input.snapshot();
        acks.reported = consumed;
        acks.due = None;
        input.reported(consumed);
        self.frame(ServerFrame::Opened {
            ch,
            id: id.to_string(),
            offset: Some(replay.from),
            lost: Some(replay.lost),
            input_window: Some(input.window()),
            input_pending: Some(received - consumed),
            input_received: Some(received),
        })
        .await;
        if replay.lost > 0 {
            self.frame(output_lost(ch, replay.lost, replay.from)).await;
        }
        let mut frames = Vec::new();
        {
            let (a, b) = self.flow.since(replay.from);
            for part in [a, b] {
                for piece in part.chunks(REPLAY_FRAME) {
                    frames.push(Bytes::from(opsgate_protocol::encode_data(ch, piece)));
                }
            }
        }
        for event in progress.latest() {
            self.frame(ServerFrame::Progress {
                ch,
                event: event.clone(),
            })
            .await;
        }
        let mut delivered = true;
        for f in frames {
            delivered &= self.send(Outbound::Frame(f)).await;
        }
        if delivered {
            self.flow.sent_all();
        }
        if let Some(ServerFrame::Exit { code, signal, .. }) = exit {
            let (code, signal) = (*code, signal.clone());
            self.frame(ServerFrame::Exit { ch, code, signal }).await;
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
        let wake = self.handle.shared.wake.clone();
        let mut detached_at: Option<Instant> = None;
        let mut pending_answer: Option<oneshot::Sender<bool>> = None;
        let mut start = start;

        // Phase 1: start the source, answering host-key questions meanwhile. Input typed
        // now waits in the input queue (type-ahead) and reaches the shell once it runs.
        let started = loop {
            if let Some(r) = self.handle.shared.stop.get().copied() {
                return self.end(&mut cmd_rx, None, r, None).await;
            }
            self.publish_status();
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
                _ = wake.notified() => {}
                cmd = cmd_rx.recv() => match cmd {
                    None => return self.end(&mut cmd_rx, None, "closed", None).await,
                    Some(ChannelCmd::Hostkey(yes)) => {
                        if let Some(tx) = pending_answer.take() { let _ = tx.send(yes); }
                    }
                    Some(ChannelCmd::Attach { socket, .. }) => {
                        self.handle.shared.uncount_attach();
                        let socket = *socket;
                        // Not started yet: nothing to replay; `opened` follows the start.
                        if let Some(old) = self.attached.take() {
                            if old.socket_id != socket.socket_id || old.ch != socket.ch {
                                self.release(old);
                            }
                        }
                        self.attached = Some(socket);
                        detached_at = None;
                    }
                    Some(ChannelCmd::InputResume) => {
                        let input = self.handle.shared.input.clone();
                        input.resume();
                        let ch = self.ch();
                        let pending = input.outstanding();
                        self.frame(ServerFrame::InputResumed { ch, pending }).await;
                    }
                },
                _ = socket_gone(&self.attached) => {
                    self.attached = None;
                    detached_at = Some(Instant::now());
                }
                _ = sleep_until(deadline) => return self.end(&mut cmd_rx, None, "grace_expired", None).await,
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
                self.inner.audit_open(&self.handle, Err(e.code));
                let ch = self.ch();
                self.frame(error_frame(Some(ch), e.code, e.message)).await;
                return self.end(&mut cmd_rx, None, e.code, None).await;
            }
        };
        self.inner.audit_open(&self.handle, Ok(()));
        let ch = self.ch();
        let input_window = self.handle.shared.input.window();
        self.frame(ServerFrame::Opened {
            ch,
            id: id.to_string(),
            offset: None,
            lost: None,
            input_window: Some(input_window),
            input_pending: None,
            input_received: None,
        })
        .await;

        // Phase 2: pump output under the window, acknowledge input, follow attachments.
        let mut acks = InputAcks {
            reported: 0,
            due: None,
        };
        let mut exit: Option<ServerFrame> = None;
        let mut progress = ProgressLog::default();
        let mut exited_at: Option<Instant> = None;
        let mut source_done = false;
        // The control sender is held until the channel ends: the source's input side
        // (a PTY program's tending task, an SSH shell's input task) stops when it drops.
        let Source {
            mut events,
            control: _control,
            stopper,
        } = source;
        let reason = loop {
            if let Some(r) = self.handle.shared.stop.get().copied() {
                break r;
            }
            self.take_acks();
            self.report_input(&mut acks).await;
            // Every change of attachment or output passes through here (the loop runs
            // after each event), so the listing is at most one event behind.
            self.publish_status();
            if self.attached.is_some() {
                detached_at = None;
            } else if detached_at.is_none() {
                detached_at = Some(Instant::now());
            }
            if source_done && self.attached.is_some() && self.flow.all_acked() {
                break "exited";
            }
            let can_read = !source_done && self.flow.can_read();
            let deadline = match (detached_at, exited_at) {
                (Some(d), _) => Some(d + self.grace),
                (None, Some(e)) => Some(e + self.grace),
                _ => None,
            };
            tokio::select! {
                ev = events.next(), if can_read => match ev {
                    Some(SourceEvent::Data(mut chunk)) => {
                        let n = chunk.len().saturating_sub(DATA_HEADER_LEN);
                        self.flow.produced(&chunk[DATA_HEADER_LEN..]);
                        self.inner.metrics.bytes_out(n);
                        if let Some(ch) = self.attached.as_ref().map(|s| s.ch) {
                            write_data_header(&mut chunk, ch);
                            if self.send(Outbound::Frame(chunk.freeze())).await {
                                self.flow.sent_all();
                            }
                        }
                    }
                    Some(SourceEvent::Exit { code, signal }) => {
                        self.handle.shared.status.ended(code);
                        let f = ServerFrame::Exit { ch: self.ch(), code, signal };
                        self.frame(f.clone()).await;
                        exit = Some(f);
                        source_done = true;
                        exited_at = Some(Instant::now());
                        self.handle.shared.input.close();
                    }
                    Some(SourceEvent::Progress { key, event }) => {
                        let ch = self.ch();
                        progress.remember(key, event.clone());
                        self.frame(ServerFrame::Progress { ch, event }).await;
                    }
                    Some(SourceEvent::Failed { code, message }) => {
                        self.handle.shared.status.ended(None);
                        let ch = self.ch();
                        self.frame(error_frame(Some(ch), code, message)).await;
                        source_done = true;
                        exited_at = Some(Instant::now());
                        self.handle.shared.input.close();
                    }
                    None => {
                        self.handle.shared.status.ended(None);
                        source_done = true;
                        exited_at = Some(Instant::now());
                        self.handle.shared.input.close();
                    }
                },
                _ = wake.notified() => {}
                cmd = cmd_rx.recv() => match self.command(cmd, &mut acks, &exit, &progress).await {
                    Outcome::Continue => {}
                    Outcome::End(r) => break r,
                },
                _ = socket_gone(&self.attached) => self.attached = None,
                _ = sleep_until(acks.due) => {}
                _ = sleep_until(deadline) => break if exit.is_some() { "exited" } else { "grace_expired" },
            }
        };
        // A program that exited leaves a record, so a client that acknowledged the last
        // output and lost its socket before `closed` still learns how it ended.
        let ending = (reason == "exited").then(|| Ending {
            login_id: self.handle.login_id.clone(),
            end: self.flow.end(),
            input_received: self.handle.shared.input.snapshot().0,
            exit,
        });
        self.end(&mut cmd_rx, Some(stopper), reason, ending).await;
    }

    async fn command(
        &mut self,
        cmd: Option<ChannelCmd>,
        acks: &mut InputAcks,
        exit: &Option<ServerFrame>,
        progress: &ProgressLog,
    ) -> Outcome {
        match cmd {
            None => return Outcome::End("closed"),
            Some(ChannelCmd::Attach { socket, offset }) => {
                self.handle.shared.uncount_attach();
                self.attach(*socket, offset, acks, exit, progress).await;
            }
            Some(ChannelCmd::Hostkey(_)) => {}
            Some(ChannelCmd::InputResume) => {
                // Resume and snapshot together, here where input acks are counted, so
                // the client's count restarts from exactly what `pending` says.
                let input = self.handle.shared.input.clone();
                input.resume();
                let (received, consumed) = input.snapshot();
                acks.reported = consumed;
                acks.due = None;
                input.reported(consumed);
                let ch = self.ch();
                self.frame(ServerFrame::InputResumed {
                    ch,
                    pending: received - consumed,
                })
                .await;
            }
        }
        Outcome::Continue
    }

    async fn end(
        mut self,
        cmd_rx: &mut mpsc::Receiver<ChannelCmd>,
        stopper: Option<crate::source::Stopper>,
        reason: &'static str,
        ending: Option<Ending>,
    ) {
        if let Some(s) = stopper {
            s.stop();
        }
        self.handle.shared.input.close();
        let id = self.handle.id.clone();
        tracing::debug!(channel = %id, reason, "channel ended");
        // Before the client is told `closed`: a client that opens another channel as
        // soon as it reads `closed` must find this one's place under the limits free.
        self.inner.channel_ended(&self.handle, reason, ending);
        let mut told: Vec<(u64, u32)> = Vec::new();
        if let Some(s) = self.attached.take() {
            told.push((s.socket_id, s.ch));
            tell_released(s, id.clone(), reason);
        }
        // An `attach` the socket sent before this channel ended, still queued: the socket
        // has bound the number to this channel, so it is told too (`closed`), once per
        // number, instead of waiting for an `opened` that will not come.
        cmd_rx.close();
        while let Ok(cmd) = cmd_rx.try_recv() {
            if let ChannelCmd::Attach { socket, .. } = cmd {
                if !told.contains(&(socket.socket_id, socket.ch)) {
                    told.push((socket.socket_id, socket.ch));
                    tell_released(*socket, id.clone(), reason);
                }
            }
        }
    }
}

/// `Released` deliveries waiting for a full outbox, over the whole gateway.
static RELEASES_WAITING: AtomicU64 = AtomicU64::new(0);
/// Most `Released` deliveries that may wait at once; past it one is dropped (logged).
const MAX_RELEASES_WAITING: u64 = 4096;

/// Tells socket `to` that this channel let go of its number. Never waits, and loses it
/// only past [`MAX_RELEASES_WAITING`] waiting gateway-wide (logged): when the outbox is
/// full (a socket writing bulk output, or one whose peer stopped reading, which the
/// socket's write bound drops within two heartbeats) a task delivers it. Dropped after a one-second wait before, it left the socket with a number
/// bound to a channel that had moved to another tab: its keystrokes went there, and its
/// `close` ended the terminal the other tab was using.
fn tell_released(to: SocketRef, id: Arc<str>, reason: &'static str) {
    let msg = Outbound::Released {
        ch: to.ch,
        id,
        reason: Some(reason),
    };
    match to.outbox.try_send(msg) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(msg)) => {
            if RELEASES_WAITING.fetch_add(1, Ordering::AcqRel) >= MAX_RELEASES_WAITING {
                RELEASES_WAITING.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!("too many channel releases waiting for full sockets; one dropped");
                return;
            }
            tokio::spawn(async move {
                let _ = to.outbox.send(msg).await;
                RELEASES_WAITING.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

/// The latest progress event per key, in the order keys first appeared (bounded by
/// [`crate::source::MAX_PROGRESS_KEYS`]).
#[derive(Default)]
struct ProgressLog {
    index: std::collections::HashMap<String, usize>,
    events: std::collections::VecDeque<(String, serde_json::Map<String, serde_json::Value>)>,
}

impl ProgressLog {
    fn remember(&mut self, key: String, event: serde_json::Map<String, serde_json::Value>) {
        if let Some(&i) = self.index.get(&key) {
            if let Some(slot) = self.events.get_mut(i) {
                slot.1 = event;
                return;
            }
        }
        if self.events.len() >= crate::source::MAX_PROGRESS_KEYS {
            if let Some((old, _)) = self.events.pop_front() {
                self.index.remove(&old);
                for v in self.index.values_mut() {
                    *v -= 1;
                }
            }
        }
        self.index.insert(key.clone(), self.events.len());
        self.events.push_back((key, event));
    }

    fn latest(&self) -> impl Iterator<Item = &serde_json::Map<String, serde_json::Value>> {
        self.events.iter().map(|(_, e)| e)
    }
}

/// Completes when the attached socket's task has ended (its outbox receiver is gone):
/// that is how a channel learns it is detached, with no message that could be lost.
async fn socket_gone(attached: &Option<SocketRef>) {
    match attached {
        Some(s) => s.outbox.closed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
