//! One task per WebSocket: it reads client frames and writes what channels send.
//!
//! The socket task never awaits a channel: commands go by `try_send` (a full channel
//! queue turns into an error frame or a helper task) and acks by an atomic counter, so a
//! busy channel cannot stall the socket, and a socket that is draining its outbox can
//! never deadlock with a channel waiting to send into it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use opsgate_protocol::{codes, decode_client, decode_data, encode_json, ClientFrame, ServerFrame};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::channel::{ChannelCmd, ChannelHandle, SocketRef};
use super::{
    error_frame, offset_past_end, output_lost, LoginCtx, MuxInner, Outbound, OUTBOX_CAPACITY,
};
use crate::source::Offer;

/// Frames written before a flush, so bulk output goes out in few syscalls.
const WRITE_BATCH: usize = 64;
/// How long acks and resizes for a channel number that just closed are ignored without
/// an error: the client may have sent them before it saw `closed` (they crossed on the
/// wire), and that is not a mistake worth reporting.
const RECENTLY_CLOSED_FOR: Duration = Duration::from_secs(10);
/// How long the last frame (why the socket ends) and the close may take.
const GOODBYE_LIMIT: Duration = Duration::from_secs(2);
/// Channel numbers remembered as recently closed, at most (the oldest is forgotten).
const RECENTLY_CLOSED_MAX: usize = 64;

/// A channel as this socket sees it.
struct Attachment {
    handle: ChannelHandle,
    /// Acks of this socket's client for this channel, taken by the channel task.
    acked: Arc<AtomicU64>,
}

struct Socket {
    inner: Arc<MuxInner>,
    login: LoginCtx,
    id: u64,
    outbox: mpsc::Sender<Outbound>,
    channels: HashMap<u32, Attachment>,
    recently_closed: VecDeque<(u32, Instant)>,
    /// Frames to send after the reply to the current client frame (at most four: the
    /// answer to an `attach` to an ended channel).
    later: Vec<ServerFrame>,
    /// The login's last-activity clock (Unix seconds), shared by its sockets.
    activity: Arc<AtomicI64>,
    activity_mark: i64,
}

impl Socket {
    fn attach_ref(&self, ch: u32) -> (SocketRef, Arc<AtomicU64>) {
        let acked = Arc::new(AtomicU64::new(0));
        (
            SocketRef {
                socket_id: self.id,
                ch,
                outbox: self.outbox.clone(),
                acked: acked.clone(),
            },
            acked,
        )
    }

    /// Input and acks are a person at work: they keep the login alive.
    fn active(&mut self) {
        let now = crate::store::now();
        if now != self.activity_mark {
            self.activity_mark = now;
            self.activity.store(now, Ordering::Release);
        }
    }

    fn just_closed(&self, ch: u32) -> bool {
        self.recently_closed
            .iter()
            .any(|(c, at)| *c == ch && at.elapsed() <= RECENTLY_CLOSED_FOR)
    }

    fn mark_closed(&mut self, ch: u32) {
        self.recently_closed
            .retain(|(c, at)| *c != ch && at.elapsed() <= RECENTLY_CLOSED_FOR);
        if self.recently_closed.len() >= RECENTLY_CLOSED_MAX {
            self.recently_closed.pop_front();
        }
        self.recently_closed.push_back((ch, Instant::now()));
    }

    fn handle_binary(&mut self, data: &bytes::Bytes) -> Option<ServerFrame> {
        let (ch, payload) = match decode_data(data) {
            Ok(v) => v,
            Err(e) => return Some(error_frame(None, codes::MALFORMED_FRAME, e.to_string())),
        };
        let Some(a) = self.channels.get(&ch) else {
            return Some(error_frame(
                Some(ch),
                codes::UNKNOWN_CHANNEL,
                format!("no channel {ch} on this socket"),
            ));
        };
        let n = payload.len();
        match a.handle.offer_input(payload) {
            Offer::Accepted => {
                self.inner.metrics.bytes_in(n);
                self.active();
                None
            }
            Offer::Overrun { outstanding, window } => Some(error_frame(
                Some(ch),
                codes::INPUT_OVERRUN,
                format!(
                    "input beyond the {window}-byte input window ({outstanding} bytes not yet consumed, {n} more sent): this input and all that follows is dropped until input_resume"
                ),
            )),
            // The client was told at the overrun; what it sent before hearing is dropped.
            Offer::Refused => None,
        }
    }

    fn handle_text(&mut self, text: &str) -> Option<ServerFrame> {
        let frame = match decode_client(text) {
            Ok(f) => f,
            Err(e) => {
                // Name the channel in the error if the frame says which.
                let ch = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("ch")?.as_u64())
                    .and_then(|c| u32::try_from(c).ok());
                return Some(error_frame(ch, codes::MALFORMED_FRAME, e.to_string()));
            }
        };
        let unknown = |ch: u32| {
            Some(error_frame(
                Some(ch),
                codes::UNKNOWN_CHANNEL,
                format!("no channel {ch} on this socket"),
            ))
        };
        let busy = |ch: u32| {
            Some(error_frame(
                Some(ch),
                codes::CHANNEL_BUSY,
                format!("channel {ch} is busy; send that again shortly"),
            ))
        };
        match frame {
            ClientFrame::Open(open) => {
                let ch = open.ch;
                if self.channels.contains_key(&ch) {
                    return Some(error_frame(
                        Some(ch),
                        codes::CHANNEL_IN_USE,
                        format!("channel {ch} is already open on this socket"),
                    ));
                }
                let (socket, acked) = self.attach_ref(ch);
                match self.inner.open_channel(&self.login, open.target, socket) {
                    Ok(handle) => {
                        self.recently_closed.retain(|(c, _)| *c != ch);
                        self.channels.insert(ch, Attachment { handle, acked });
                        None
                    }
                    Err(e) => {
                        // As for an open that fails later (PROTOCOL §3): the number is
                        // free again, and input or a resize sent behind the open is no
                        // mistake worth an error.
                        self.later.push(ServerFrame::Closed {
                            ch,
                            reason: Some(e.code.to_string()),
                        });
                        self.mark_closed(ch);
                        Some(error_frame(Some(ch), e.code, e.message))
                    }
                }
            }
            ClientFrame::Resize { ch, cols, rows } => match self.channels.get(&ch) {
                Some(_) if !(1..=1000).contains(&cols) || !(1..=1000).contains(&rows) => {
                    Some(error_frame(
                        Some(ch),
                        codes::INVALID_RESIZE,
                        format!("cols and rows must be 1-1000 (got {cols}x{rows}); size unchanged"),
                    ))
                }
                Some(a) => {
                    // Through the input queue, so it takes effect between the input sent
                    // before it and the input sent after it.
                    a.handle.shared.input.resize(cols, rows);
                    None
                }
                None if self.just_closed(ch) => None,
                None => unknown(ch),
            },
            ClientFrame::Ack { ch, bytes } => match self.channels.get(&ch) {
                Some(a) => {
                    a.acked.fetch_add(bytes, Ordering::AcqRel);
                    a.handle.shared.wake.notify_one();
                    self.active();
                    None
                }
                None if self.just_closed(ch) => None,
                None => unknown(ch),
            },
            ClientFrame::Close { ch } => match self.channels.get(&ch) {
                // The number stays taken until the channel's `closed` comes back.
                Some(a) => {
                    a.handle.stop("closed");
                    None
                }
                None if self.just_closed(ch) => None,
                None => unknown(ch),
            },
            ClientFrame::InputResume { ch } => match self.channels.get(&ch) {
                Some(a) => match a.handle.cmd.try_send(ChannelCmd::InputResume) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
                    Err(mpsc::error::TrySendError::Full(_)) => busy(ch),
                },
                None => unknown(ch),
            },
            ClientFrame::HostkeyAccept { ch } | ClientFrame::HostkeyReject { ch } => {
                let yes = matches!(frame, ClientFrame::HostkeyAccept { .. });
                match self.channels.get(&ch) {
                    Some(a) => match a.handle.cmd.try_send(ChannelCmd::Hostkey(yes)) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
                        Err(mpsc::error::TrySendError::Full(_)) => busy(ch),
                    },
                    None => unknown(ch),
                }
            }
            ClientFrame::Attach { ch, id, offset } => {
                if self.channels.contains_key(&ch) {
                    return Some(error_frame(
                        Some(ch),
                        codes::CHANNEL_IN_USE,
                        format!("channel {ch} is already open on this socket"),
                    ));
                }
                let Some(handle) = self.inner.channel(&id) else {
                    return self.attach_ended(ch, &id, offset);
                };
                if handle.login_id != self.login.login_id {
                    return Some(error_frame(
                        Some(ch),
                        codes::ATTACH_REFUSED,
                        "that channel belongs to another login",
                    ));
                }
                let (socket, acked) = self.attach_ref(ch);
                // Counted before it is queued, so the channel task, taking it at once on
                // another worker, never finds the count still zero (and never leaves it
                // one too high).
                handle.attach_queuing();
                let sent = handle.cmd.try_send(ChannelCmd::Attach {
                    socket: Box::new(socket),
                    offset,
                });
                if sent.is_err() {
                    handle.attach_not_queued();
                }
                match sent {
                    Ok(()) => {
                        handle.attach_queued();
                        self.recently_closed.retain(|(c, _)| *c != ch);
                        self.channels.insert(ch, Attachment { handle, acked });
                        None
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => busy(ch),
                    // It ended between the lookup and now; its record is in place.
                    Err(mpsc::error::TrySendError::Closed(_)) => self.attach_ended(ch, &id, offset),
                }
            }
        }
    }

    /// Answers an `attach` to a channel that is no longer running: if its program exited
    /// within the grace period, the client gets `opened` at the end of the output, the
    /// `exit` and `closed` (queued in `later`); otherwise `channel_gone`.
    fn attach_ended(&mut self, ch: u32, id: &str, offset: u64) -> Option<ServerFrame> {
        let gone = || {
            Some(error_frame(
                Some(ch),
                codes::CHANNEL_GONE,
                "no such channel: it ended or its grace period expired",
            ))
        };
        let Some(ending) = self.inner.ending(id) else {
            return gone();
        };
        if ending.login_id != self.login.login_id {
            // Another login's channel that ended: to this login it is simply gone.
            return gone();
        }
        if offset > ending.end {
            return Some(offset_past_end(ch, offset, ending.end));
        }
        let lost = ending.end - offset;
        self.later.push(ServerFrame::Opened {
            ch,
            id: id.to_string(),
            offset: Some(ending.end),
            lost: Some(lost),
            input_window: Some(0),
            input_pending: Some(0),
            input_received: Some(ending.input_received),
        });
        if lost > 0 {
            self.later.push(output_lost(ch, lost, ending.end));
        }
        if let Some(ServerFrame::Exit { code, signal, .. }) = ending.exit {
            self.later.push(ServerFrame::Exit { ch, code, signal });
        }
        self.later.push(ServerFrame::Closed {
            ch,
            reason: Some("exited".into()),
        });
        self.mark_closed(ch);
        None
    }

    /// Frees a channel number its channel released; returns the `closed` to send. Only
    /// while the number is still bound to that channel: a late release (the client
    /// closed it, or reused the number after an earlier `closed`) must not close the
    /// number's new channel in the client.
    fn released(&mut self, ch: u32, id: &str, reason: Option<&'static str>) -> Option<ServerFrame> {
        if self.channels.get(&ch).is_none_or(|a| &*a.handle.id != id) {
            return None;
        }
        self.channels.remove(&ch);
        self.mark_closed(ch);
        Some(ServerFrame::Closed {
            ch,
            reason: reason.map(str::to_string),
        })
    }
}

fn outbound_message(sock: &mut Socket, out: Outbound) -> Option<Message> {
    match out {
        Outbound::Frame(b) => Some(Message::Binary(b)),
        Outbound::Control(f) => Some(Message::Text(encode_json(&*f).into())),
        Outbound::Released { ch, id, reason } => sock
            .released(ch, &id, reason)
            .map(|f| Message::Text(encode_json(&f).into())),
    }
}

/// Runs one socket until the client leaves, goes silent, or the login ends.
pub(crate) async fn run(
    inner: Arc<MuxInner>,
    mut ws: WebSocket,
    login: LoginCtx,
    registration: super::SocketRegistration,
    mut kick: watch::Receiver<Option<&'static str>>,
    activity: Arc<AtomicI64>,
) {
    let id = registration.socket_id;
    let (outbox, mut out_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let mut sock = Socket {
        inner: inner.clone(),
        login: login.clone(),
        id,
        outbox,
        channels: HashMap::new(),
        recently_closed: VecDeque::new(),
        later: Vec::new(),
        activity,
        activity_mark: 0,
    };
    let heartbeat = Duration::from_secs(inner.cfg.heartbeat_secs.max(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut last_seen = Instant::now();
    let max_frame = inner.cfg.max_frame_bytes;
    let write_limit = heartbeat * 2;
    let end_reason: Option<&'static str> = loop {
        tokio::select! {
            msg = ws.recv() => {
                let Some(Ok(msg)) = msg else { break None };
                last_seen = Instant::now();
                let reply = match msg {
                    Message::Text(t) if t.len() > max_frame => Some(error_frame(None, codes::FRAME_TOO_LARGE, format!("frame of {} bytes exceeds the {max_frame}-byte limit", t.len()))),
                    Message::Binary(b) if b.len() > max_frame => Some(error_frame(None, codes::FRAME_TOO_LARGE, format!("frame of {} bytes exceeds the {max_frame}-byte limit", b.len()))),
                    Message::Text(t) => sock.handle_text(t.as_str()),
                    Message::Binary(b) => sock.handle_binary(&b),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if reply.is_none() && sock.later.is_empty() {
                    continue;
                }
                let later = std::mem::take(&mut sock.later);
                let write = async {
                    if let Some(f) = reply {
                        step(write_limit, ws.feed(Message::Text(encode_json(&f).into()))).await?;
                    }
                    for f in later {
                        step(write_limit, ws.feed(Message::Text(encode_json(&f).into()))).await?;
                    }
                    step(write_limit, ws.flush()).await
                };
                if let Err(end) = within(write, &mut kick).await {
                    break end;
                }
            }
            out = out_rx.recv() => {
                let Some(out) = out else { break None };
                let write = async {
                    if let Some(m) = outbound_message(&mut sock, out) {
                        step(write_limit, ws.feed(m)).await?;
                    }
                    let mut n = 1;
                    while n < WRITE_BATCH {
                        match out_rx.try_recv() {
                            Ok(out) => {
                                if let Some(m) = outbound_message(&mut sock, out) {
                                    step(write_limit, ws.feed(m)).await?;
                                }
                                n += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    step(write_limit, ws.flush()).await
                };
                if let Err(end) = within(write, &mut kick).await {
                    break end;
                }
            }
            _ = ticker.tick() => {
                if crate::store::now() >= login.expires_at {
                    break Some(codes::SESSION_EXPIRED);
                }
                if last_seen.elapsed() > heartbeat * 2 {
                    tracing::debug!("peer silent for two heartbeats; dropping socket");
                    break None;
                }
                if let Err(end) = within(step(write_limit, ws.send(Message::Ping(bytes::Bytes::new()))), &mut kick).await {
                    break end;
                }
            }
            _ = kick.changed() => {
                let reason = *kick.borrow();
                break Some(reason.unwrap_or("closed"));
            }
        }
    };
    if let Some(reason) = end_reason {
        // A peer that is not reading gets a moment for the reason, not a wait.
        let f = error_frame(None, reason, format!("socket closed: {reason}"));
        let goodbye = async {
            ws.send(Message::Text(encode_json(&f).into())).await?;
            ws.close().await
        };
        let _ = tokio::time::timeout(GOODBYE_LIMIT, goodbye).await;
    }
    // Channels notice the socket is gone when its outbox closes (they detach then); no
    // message is needed that a full queue could lose.
    drop(out_rx);
    drop(registration);
}

/// Why a socket write stopped short.
enum WriteFailed {
    /// The connection failed or closed.
    Closed,
    /// The peer took nothing for the whole bound.
    Stalled,
}

/// One step of a socket write (a frame fed, which writes it through, or the flush),
/// bounded by `limit` (two heartbeats): a peer that takes nothing for that long is as
/// gone as one that sends nothing for as long. The bound is on each step, not on a
/// batch, so a slow link that keeps taking frames is never dropped. Without it, a peer
/// that stopped reading with its TCP window at zero (or vanished once the buffers were
/// full) held the socket task in `flush` for good: no heartbeat, no kick, its outbox full
/// and every channel of it waiting to send, programs of a deleted user included.
async fn step<T>(
    limit: Duration,
    write: impl std::future::Future<Output = Result<T, axum::Error>>,
) -> Result<T, WriteFailed> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(WriteFailed::Closed),
        Err(_) => Err(WriteFailed::Stalled),
    }
}

/// A socket write (of [`step`]s), cut short by a kick (logout, user deleted, expiry)
/// so that it is acted on even while the write waits. `Err` is how the socket ends:
/// `None` for a failed or stalled write, the kick's reason.
async fn within<T>(
    write: impl std::future::Future<Output = Result<T, WriteFailed>>,
    kick: &mut watch::Receiver<Option<&'static str>>,
) -> Result<T, Option<&'static str>> {
    tokio::select! {
        r = write => r.map_err(|e| {
            if matches!(e, WriteFailed::Stalled) {
                tracing::debug!("peer took nothing for two heartbeats; dropping socket");
            }
            None
        }),
        _ = kick.changed() => Err(Some(kick.borrow().unwrap_or("closed"))),
    }
}
