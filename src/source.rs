//! The contract between a channel and the thing that feeds it: a PTY program, an SSH
//! shell, and later tool runs and job progress. `mux` drives sources through this
//! contract; `pty` and `ssh` implement it. It depends on neither, so the dependency runs
//! one way: `mux` → `source` ← `pty`, `ssh`.
//!
//! Output travels from the source to the channel as [`SourceEvent`]s through a small
//! bounded queue; the channel stops pulling while its flow-control window is full, so the
//! source blocks. Input travels the other way through an [`InputQueue`]: a byte buffer
//! bounded by the channel's input window, which the client may never overrun.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use futures_util::Stream;
use opsgate_protocol::HostkeyStatus;
use tokio::sync::{mpsc, oneshot, Notify};

/// The largest output chunk a source may hand over in one [`SourceEvent::Data`], and so
/// the largest data frame. The channel's ring keeps `window + MAX_SOURCE_CHUNK` bytes,
/// which is what makes every unacknowledged byte replayable whatever the read sizes (see
/// `mux::flow`). 32 KiB frames keep bulk output cheap per byte while bounding what a
/// WebSocket's write buffer holds on to after a burst (it keeps its largest frame).
pub const MAX_SOURCE_CHUNK: usize = 32 * 1024;

/// What a source (PTY reader, SSH channel reader) reports.
pub enum SourceEvent {
    /// Output: the first [`opsgate_protocol::DATA_HEADER_LEN`] bytes are headroom for the
    /// frame header; the rest is at most [`MAX_SOURCE_CHUNK`] bytes.
    Data(BytesMut),
    /// The program or remote shell ended.
    Exit {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// The source failed after it started (e.g. the SSH connection dropped).
    Failed { code: &'static str, message: String },
    /// A structured event (tool run state and result, job progress) sent to the client
    /// as a `progress` frame. It is not output: it does not count against the window and
    /// is not in the ring. The channel keeps the latest event per `key` (e.g. a job's
    /// target id, or "state") and replays those to a socket that attaches later, so a
    /// reload shows the current state of everything; at most [`MAX_PROGRESS_KEYS`] keys
    /// are kept (beyond that the oldest key is forgotten).
    Progress {
        key: String,
        event: serde_json::Map<String, serde_json::Value>,
    },
}

/// Progress keys a channel remembers for replay on attach.
pub const MAX_PROGRESS_KEYS: usize = 10_000;

/// What the channel tells its source besides input.
pub enum SourceCtl {
    Resize { cols: u16, rows: u16 },
}

/// How to stop a source.
pub enum Stopper {
    /// Tell the task that owns the source (the SSH shell's input task, the PTY
    /// program's tending task) to end it; dropping the sender does the same.
    Signal(oneshot::Sender<()>),
}

impl Stopper {
    /// Stops the source; never blocks.
    pub fn stop(self) {
        match self {
            Stopper::Signal(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// A source's output as the channel task polls it: only while the channel's window has
/// room, so a slow client's back-pressure reaches the source. A PTY and an SSH shell are
/// read right here, in the channel task; tool runs and job watchers feed a small queue
/// ([`queue_stream`]).
pub type SourceEvents = Pin<Box<dyn Stream<Item = SourceEvent> + Send>>;

/// A bounded queue's receiving end as [`SourceEvents`].
pub fn queue_stream(mut rx: mpsc::Receiver<SourceEvent>) -> SourceEvents {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// A started source.
pub struct Source {
    pub events: SourceEvents,
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

/// The next thing a source's writer must do, in the order the client asked.
#[derive(Debug, PartialEq, Eq)]
pub enum InputItem {
    /// Write these bytes; report them with [`InputQueue::consumed`].
    Data(BytesMut),
    /// Set the terminal size.
    Resize { cols: u16, rows: u16 },
}

/// What became of input offered to an [`InputQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the program, in order.
    Accepted,
    /// This input would exceed the input window: it is dropped, and so is everything
    /// after it until the client sends `input_resume`.
    Overrun { outstanding: u64, window: u64 },
    /// Dropped: an earlier overrun has not been acknowledged by the client yet.
    Refused,
}

struct InputState {
    buf: BytesMut,
    /// The latest terminal size asked for, and where in `buf` it arrived: the writer
    /// applies it after the input sent before it and before the input sent after it
    /// (a `stty size` typed right after a resize must see the new size).
    resize: Option<(u16, u16, usize)>,
    /// Bytes accepted since the channel opened.
    received: u64,
    refused: bool,
    /// The source can take no more input (it ended): input is counted as consumed and
    /// dropped, so a client's window never jams on a finished program.
    closed: bool,
    /// The writer took a chunk and has not finished writing it.
    taken: bool,
    /// A PTY program's terminal (a duplicate of its descriptor, non-blocking): input that
    /// finds nothing queued or being written goes straight to it from the socket task
    /// (see [`InputQueue::offer`]). Shared with the PTY writer; let go when the queue closes.
    direct: Option<Arc<std::os::fd::OwnedFd>>,
}

/// A channel's input on its way to the program: one ordered byte buffer, bounded by the
/// input window. The socket appends (never waits), the source's writer takes everything
/// at once and reports what the program consumed; the channel turns that into
/// `input_ack` frames. It exists from the channel's first moment, so input typed before
/// the source started (SSH type-ahead) waits here and is delivered when the shell runs.
pub struct InputQueue {
    state: Mutex<InputState>,
    consumed: AtomicU64,
    /// Consumption already acknowledged to the client (set by the channel).
    reported: AtomicU64,
    window: u64,
    writer_wake: Notify,
    /// Wakes the channel task so it can acknowledge consumed input.
    channel_wake: Arc<Notify>,
}

impl InputQueue {
    pub fn new(window: u64, channel_wake: Arc<Notify>) -> Self {
        InputQueue {
            state: Mutex::new(InputState {
                buf: BytesMut::new(),
                resize: None,
                received: 0,
                refused: false,
                closed: false,
                taken: false,
                direct: None,
            }),
            consumed: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            window: window.max(1),
            writer_wake: Notify::new(),
            channel_wake,
        }
    }

    fn lock(&self) -> MutexGuard<'_, InputState> {
        // A poisoned lock only means a panic elsewhere mid-append; the state is a byte
        // buffer and counters that stay consistent, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The input window in bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Offers client input. Never blocks; whole frames are accepted or dropped.
    pub fn offer(&self, data: &[u8]) -> Offer {
        let n = data.len() as u64;
        let mut s = self.lock();
        if s.refused {
            return Offer::Refused;
        }
        if s.closed {
            s.received += n;
            drop(s);
            self.consumed(n as usize);
            return Offer::Accepted;
        }
        let outstanding = s.received - self.consumed.load(Ordering::Acquire);
        if outstanding + n > self.window {
            s.refused = true;
            return Offer::Overrun {
                outstanding,
                window: self.window,
            };
        }
        if n == 0 {
            return Offer::Accepted;
        }
        s.received += n;
        // Keystrokes take the short way when they can: nothing waits before them (no
        // queued input, no chunk being written, no resize to apply first), so writing
        // here keeps the order, and the echo saves waking the writer task. A write that
        // would block, or takes part, leaves the rest to the writer as usual.
        let mut written = 0;
        if s.buf.is_empty() && !s.taken && s.resize.is_none() {
            if let Some(fd) = &s.direct {
                written = nix::unistd::write(fd, data).unwrap_or(0);
            }
        }
        if written < data.len() {
            s.buf.extend_from_slice(&data[written..]);
        }
        drop(s);
        if written > 0 {
            self.consumed(written);
        }
        if written < data.len() {
            self.writer_wake.notify_one();
        }
        Offer::Accepted
    }

    /// Lets [`InputQueue::offer`] write to this PTY directly (see `direct`).
    pub fn write_directly_to(&self, fd: Arc<std::os::fd::OwnedFd>) {
        let mut s = self.lock();
        if !s.closed {
            s.direct = Some(fd);
        }
    }

    /// The writer wrote the whole chunk [`InputQueue::next_item`] gave it, `n` bytes.
    pub fn chunk_written(&self, n: usize) {
        self.lock().taken = false;
        self.consumed(n);
    }

    /// The client acknowledged an overrun: accept input again.
    pub fn resume(&self) {
        self.lock().refused = false;
    }

    /// Records a terminal size change in order with the input around it.
    pub fn resize(&self, cols: u16, rows: u16) {
        let mut s = self.lock();
        let at = s.buf.len();
        s.resize = Some((cols, rows, at));
        drop(s);
        self.writer_wake.notify_one();
    }

    /// Waits for input or a resize and takes the next piece in order (the source's
    /// writer calls this): all input up to a pending resize, then the resize.
    pub async fn next_item(&self) -> InputItem {
        loop {
            {
                let mut s = self.lock();
                match s.resize {
                    Some((cols, rows, 0)) => {
                        s.resize = None;
                        return InputItem::Resize { cols, rows };
                    }
                    Some((cols, rows, at)) => {
                        s.resize = Some((cols, rows, 0));
                        s.taken = true;
                        return InputItem::Data(s.buf.split_to(at));
                    }
                    None if !s.buf.is_empty() => {
                        s.taken = true;
                        return InputItem::Data(s.buf.split());
                    }
                    None => {}
                }
            }
            // `notify_one` stores a permit when nobody waits, so an offer between the
            // check above and this await is not missed.
            self.writer_wake.notified().await;
        }
    }

    /// The program consumed `n` bytes handed out by [`InputQueue::next`]. The channel
    /// is woken only once half a window awaits acknowledgement: a keystroke's consumption
    /// rides along with the wake-up its echo causes anyway, so typing costs no extra
    /// task switch, while a paste is acknowledged as it drains.
    pub fn consumed(&self, n: usize) {
        let total = self.consumed.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
        if total - self.reported.load(Ordering::Acquire) >= self.window / 2 {
            self.channel_wake.notify_one();
        }
    }

    /// The channel acknowledged consumption up to `total` to the client.
    pub fn reported(&self, total: u64) {
        self.reported.store(total, Ordering::Release);
    }

    /// Bytes accepted and bytes consumed so far, read together.
    pub fn snapshot(&self) -> (u64, u64) {
        let s = self.lock();
        (s.received, self.consumed.load(Ordering::Acquire))
    }

    /// The source takes no more input: what waits and what comes is dropped and counted
    /// as consumed.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.direct = None;
        let waiting = s.buf.len();
        s.buf.clear();
        // A resize waiting behind the input dropped here would point past the end of it.
        s.resize = None;
        drop(s);
        if waiting > 0 {
            self.consumed(waiting);
        }
        self.channel_wake.notify_one();
    }

    /// Bytes the program consumed so far.
    pub fn consumed_total(&self) -> u64 {
        self.consumed.load(Ordering::Acquire)
    }

    /// Bytes accepted but not consumed yet.
    pub fn outstanding(&self) -> u64 {
        let s = self.lock();
        s.received - self.consumed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_and_enforces_the_window() {
        let q = InputQueue::new(10, Arc::new(Notify::new()));
        assert_eq!(q.offer(b"abc"), Offer::Accepted);
        assert_eq!(q.offer(b"defg"), Offer::Accepted);
        assert_eq!(
            q.next_item().await,
            InputItem::Data(BytesMut::from(&b"abcdefg"[..]))
        );
        // Not consumed yet: 7 outstanding, 4 more would exceed 10.
        assert_eq!(
            q.offer(b"hijk"),
            Offer::Overrun {
                outstanding: 7,
                window: 10
            }
        );
        q.consumed(7);
        // Refused until the client acknowledges the loss, even with room.
        assert_eq!(q.offer(b"x"), Offer::Refused);
        q.resume();
        assert_eq!(q.offer(b"0123456789"), Offer::Accepted);
        assert_eq!(q.outstanding(), 10);
        assert_eq!(
            q.next_item().await,
            InputItem::Data(BytesMut::from(&b"0123456789"[..]))
        );
    }

    #[tokio::test]
    async fn closing_with_a_resize_behind_waiting_input_leaves_nothing_to_take() {
        let q = InputQueue::new(100, Arc::new(Notify::new()));
        q.offer(b"pasted, not yet written");
        q.resize(80, 24);
        q.close();
        // The writer still asks once more before it sees the channel end: it must wait,
        // not take a slice past the end of the dropped input (that panicked).
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), q.next_item()).await;
        assert!(next.is_err(), "got {next:?}");
        assert_eq!(q.consumed_total(), 23);
    }

    #[tokio::test]
    async fn a_resize_keeps_its_place_among_the_input() {
        let q = InputQueue::new(100, Arc::new(Notify::new()));
        q.offer(b"before\n");
        q.resize(132, 43);
        q.offer(b"stty size\n");
        assert_eq!(
            q.next_item().await,
            InputItem::Data(BytesMut::from(&b"before\n"[..]))
        );
        assert_eq!(
            q.next_item().await,
            InputItem::Resize {
                cols: 132,
                rows: 43
            }
        );
        assert_eq!(
            q.next_item().await,
            InputItem::Data(BytesMut::from(&b"stty size\n"[..]))
        );
        // A resize with nothing before it comes first.
        q.resize(80, 24);
        assert_eq!(
            q.next_item().await,
            InputItem::Resize { cols: 80, rows: 24 }
        );
    }

    #[tokio::test]
    async fn closed_queue_counts_input_as_consumed() {
        let q = InputQueue::new(4, Arc::new(Notify::new()));
        assert_eq!(q.offer(b"ab"), Offer::Accepted);
        q.close();
        assert_eq!(q.consumed_total(), 2);
        assert_eq!(q.offer(b"abcdef"), Offer::Accepted);
        assert_eq!(q.consumed_total(), 8);
        assert_eq!(q.outstanding(), 0);
    }
}
