//! The multiplexed WebSocket: one task per socket, one task per channel, bounded queues
//! between them. Channels belong to the login (not the socket): when a socket drops they
//! detach and wait `grace_secs` for an `attach` from a new socket.
//!
//! The registry ([`Mux`]) holds handles only; each channel's state lives in its task
//! (`channel.rs`), each socket's in its task (`socket.rs`).

mod channel;
mod ring;
mod socket;

pub use channel::{
    ChannelCmd, ChannelHandle, HostkeyQuestion, OpenError, Source, SourceCtl, SourceEvent, Starter,
    Stopper,
};
pub use ring::RingBuffer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dashmap::DashMap;
use opsgate_protocol::{codes, OpenTarget, ServerFrame, SUBPROTOCOL};
use tokio::sync::{mpsc, watch, Notify};

use crate::app::App;
use crate::audit;
use crate::auth::{self, CurrentUser, Role};
use crate::config::MuxConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Messages from channels (and the registry) to a socket task.
pub enum Outbound {
    /// A complete binary data frame.
    Frame(Bytes),
    /// A control frame.
    Control(ServerFrame),
    /// Channel `id` no longer uses number `ch` on this socket (it ended, or moved to
    /// another socket); the socket frees the number and sends `closed`.
    Released {
        ch: u32,
        id: Arc<str>,
        reason: Option<&'static str>,
    },
}

/// Queue from channels to one socket. Each channel has at most one window of output in
/// flight, so this bounds messages, and the window bounds bytes.
const OUTBOX_CAPACITY: usize = 256;
/// Queue of commands into one channel.
const CHANNEL_CMD_CAPACITY: usize = 256;

/// Who a socket belongs to.
#[derive(Clone)]
pub(crate) struct LoginCtx {
    pub login_id: Arc<str>,
    pub username: Arc<str>,
    pub role: Role,
    pub ip: String,
    /// Unix seconds after which the login is over however active (absolute timeout).
    pub expires_at: i64,
}

struct LoginEntry {
    username: Arc<str>,
    /// socket id → kick signal (a reason once set).
    sockets: HashMap<u64, watch::Sender<Option<&'static str>>>,
    channels: usize,
}

/// Shared registry state.
pub struct MuxInner {
    pub(crate) cfg: MuxConfig,
    pub(crate) metrics: Arc<Metrics>,
    app: Weak<App>,
    channels: DashMap<Arc<str>, ChannelHandle>,
    logins: DashMap<Arc<str>, LoginEntry>,
    next_socket: AtomicU64,
    shutting_down: AtomicBool,
}

/// The registry of sockets and channels.
pub struct Mux {
    inner: Arc<MuxInner>,
}

impl Mux {
    pub fn new(cfg: MuxConfig, metrics: Arc<Metrics>, app: Weak<App>) -> Self {
        Mux {
            inner: Arc::new(MuxInner {
                cfg,
                metrics,
                app,
                channels: DashMap::new(),
                logins: DashMap::new(),
                next_socket: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// Ends every socket and channel of one login (logout).
    pub fn close_login(&self, login_id: &str, reason: &'static str) {
        self.inner.end_where(|login, _| login == login_id, reason);
    }

    /// Ends every socket and channel of a user (deletion, password change).
    pub fn close_user(&self, username: &str, reason: &'static str) {
        self.inner.end_where(|_, user| user == username, reason);
    }

    /// Closes everything (graceful shutdown).
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.end_where(|_, _| true, codes::SHUTTING_DOWN);
    }

    /// Number of live channels (attached or detached).
    pub fn channel_count(&self) -> usize {
        self.inner.channels.len()
    }
}

impl MuxInner {
    fn close_where(&self, pred: impl Fn(&ChannelHandle) -> bool, reason: &'static str) {
        for h in self.channels.iter() {
            if pred(h.value()) {
                let cmd = h.cmd.clone();
                // Never block the caller: a full queue gets the message from a task.
                if let Err(mpsc::error::TrySendError::Full(msg)) =
                    cmd.try_send(ChannelCmd::Shutdown(reason))
                {
                    tokio::spawn(async move {
                        let _ = cmd.send(msg).await;
                    });
                }
            }
        }
    }

    /// Ends the channels and sockets of every login that `matches(login_id, username)`.
    fn end_where(&self, matches: impl Fn(&str, &str) -> bool, reason: &'static str) {
        self.close_where(|h| matches(&h.login_id, &h.username), reason);
        for entry in self.logins.iter() {
            if matches(entry.key(), &entry.username) {
                for kick in entry.sockets.values() {
                    let _ = kick.send(Some(reason));
                }
            }
        }
    }

    pub(crate) fn app(&self) -> Option<Arc<App>> {
        self.app.upgrade()
    }

    fn audit(&self, entry: audit::Entry) {
        if let Some(app) = self.app() {
            app.audit.record(entry);
        }
    }

    /// Registers a socket; `None` if the login has too many.
    fn socket_opened(
        &self,
        login: &LoginCtx,
    ) -> Option<(u64, watch::Receiver<Option<&'static str>>)> {
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let mut entry = self
            .logins
            .entry(login.login_id.clone())
            .or_insert_with(|| LoginEntry {
                username: login.username.clone(),
                sockets: HashMap::new(),
                channels: 0,
            });
        if entry.sockets.len() >= self.cfg.max_sockets_per_login {
            return None;
        }
        entry.sockets.insert(id, tx);
        self.metrics.socket_opened();
        Some((id, rx))
    }

    fn socket_closed(&self, login_id: &str, socket_id: u64) {
        self.metrics.socket_closed();
        self.logins.remove_if_mut(login_id, |_, e| {
            e.sockets.remove(&socket_id);
            e.sockets.is_empty() && e.channels == 0
        });
    }

    /// Opens a channel for `login`, attached to `socket`. The channel task sends
    /// `opened` (or `error` + `closed`) itself.
    pub(crate) fn open_channel(
        self: &Arc<Self>,
        login: &LoginCtx,
        target: OpenTarget,
        socket: channel::SocketRef,
    ) -> Result<ChannelHandle, OpenError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(OpenError::new(
                codes::SHUTTING_DOWN,
                "the gateway is shutting down",
            ));
        }
        let kind = target.kind();
        if login.role == Role::Viewer && matches!(kind, "ssh" | "pty" | "tool") {
            return Err(OpenError::new(
                codes::FORBIDDEN,
                "viewers cannot open terminals or run tools",
            ));
        }
        let app = self
            .app()
            .ok_or_else(|| OpenError::new(codes::SHUTTING_DOWN, "the gateway is shutting down"))?;
        let (start, questions): (Starter, Option<mpsc::Receiver<HostkeyQuestion>>) = match target {
            OpenTarget::Pty {
                program,
                cols,
                rows,
            } => {
                let argv = app.cfg.pty.programs.get(&program).cloned().ok_or_else(|| {
                    OpenError::new(
                        codes::NOT_ALLOWED,
                        format!("program {program:?} is not on the allow-list"),
                    )
                })?;
                check_size(cols, rows)?;
                (
                    Box::pin(async move { crate::pty::spawn(&argv, cols, rows) }),
                    None,
                )
            }
            OpenTarget::Ssh {
                session_id,
                host,
                port,
                username,
                credential_id,
                cols,
                rows,
            } => {
                check_size(cols, rows)?;
                let (qtx, qrx) = mpsc::channel(1);
                let target = crate::ssh::Target {
                    session_id,
                    host,
                    port,
                    username,
                    credential_id,
                    cols,
                    rows,
                    admin: login.role == Role::Admin,
                };
                let owner = login.username.to_string();
                (
                    Box::pin(async move { crate::ssh::start(app, owner, target, qtx).await }),
                    Some(qrx),
                )
            }
            other => {
                return Err(OpenError::new(
                    codes::UNSUPPORTED_KIND,
                    format!("channel kind {:?} is not available yet", other.kind()),
                ))
            }
        };
        if self.channels.len() >= self.cfg.max_channels_total {
            return Err(OpenError::new(
                codes::LIMIT_REACHED,
                format!(
                    "the gateway already holds {} channels (its limit)",
                    self.channels.len()
                ),
            ));
        }
        {
            let mut entry = self
                .logins
                .get_mut(&*login.login_id)
                .ok_or_else(|| OpenError::new(codes::FORBIDDEN, "socket not registered"))?;
            if entry.channels >= self.cfg.max_channels_per_login {
                return Err(OpenError::new(
                    codes::LIMIT_REACHED,
                    format!(
                        "this login already has {} channels open (the limit)",
                        entry.channels
                    ),
                ));
            }
            entry.channels += 1;
        }
        let id: Arc<str> = Arc::from(crate::store::new_id());
        let (cmd_tx, cmd_rx) = mpsc::channel(CHANNEL_CMD_CAPACITY);
        let handle = ChannelHandle {
            id: id.clone(),
            kind,
            login_id: login.login_id.clone(),
            username: login.username.clone(),
            cmd: cmd_tx,
            acked: Arc::new(AtomicU64::new(0)),
            input: Arc::new(std::sync::OnceLock::new()),
            diverted: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            ack_signal: Arc::new(Notify::new()),
        };
        self.channels.insert(id.clone(), handle.clone());
        self.metrics.channel_opened(kind);
        self.audit(
            audit::Entry::new(&login.username, "channel.open")
                .target(id.to_string())
                .ip(Some(login.ip.clone()))
                .detail(kind),
        );
        let task = channel::ChannelTask {
            inner: self.clone(),
            handle: handle.clone(),
            window: self.cfg.window_bytes as u64,
            grace: Duration::from_secs(self.cfg.grace_secs),
            ring: RingBuffer::new(self.cfg.ring_bytes),
            attached: Some(socket),
        };
        tokio::spawn(task.run(cmd_rx, start, questions));
        Ok(handle)
    }

    fn channel_ended(&self, handle: &ChannelHandle, reason: &'static str) {
        self.channels.remove(&handle.id);
        self.metrics.channel_closed(handle.kind);
        self.logins.remove_if_mut(&*handle.login_id, |_, e| {
            e.channels = e.channels.saturating_sub(1);
            e.sockets.is_empty() && e.channels == 0
        });
        self.audit(
            audit::Entry::new(&handle.username, "channel.close")
                .target(handle.id.to_string())
                .detail(reason),
        );
    }

    fn channel(&self, id: &str) -> Option<ChannelHandle> {
        self.channels.get(id).map(|h| h.clone())
    }
}

fn check_size(cols: u16, rows: u16) -> Result<(), OpenError> {
    if cols == 0 || rows == 0 || cols > 1000 || rows > 1000 {
        return Err(OpenError::new(
            codes::INVALID_OPEN,
            "cols and rows must be 1-1000",
        ));
    }
    Ok(())
}

/// `GET /ws`: checks the login cookie (401) and the `Origin` (403) before upgrading.
pub async fn ws_handler(State(app): State<Arc<App>>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let user = match CurrentUser::from_request_parts(&mut parts, &app).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !auth::origin_allowed(&parts, &app.cfg, origin) {
        return ApiError::forbidden(format!("WebSocket origin {origin:?} is not allowed"))
            .into_response();
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &app).await {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::bad_request("not_websocket", e.body_text()).into_response();
        }
    };
    let login = LoginCtx {
        login_id: Arc::from(user.login.login_id.as_str()),
        username: Arc::from(user.username.as_str()),
        role: user.role,
        ip: user.ip.clone(),
        expires_at: user.login.login_at + app.cfg.session.absolute_timeout_secs as i64,
    };
    let inner = app.mux.inner.clone();
    let Some((socket_id, kick)) = inner.socket_opened(&login) else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            format!(
                "this login already has {} sockets open",
                app.cfg.mux.max_sockets_per_login
            ),
        )
        .into_response();
    };
    let cfg = &app.cfg.mux;
    // Small read buffer: an idle socket should cost kilobytes, not tungstenite's 128 KiB
    // default. Messages up to 4× the frame limit are read (and refused with an error frame)
    // so that one oversize frame does not kill the socket; beyond that the socket closes.
    let hard_limit = cfg.max_frame_bytes.saturating_mul(4);
    ws.protocols([SUBPROTOCOL])
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| socket::run(inner, socket, login, socket_id, kick))
}
