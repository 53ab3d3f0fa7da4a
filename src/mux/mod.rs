//! The multiplexed WebSocket: one task per socket, one task per channel, bounded queues
//! between them. Channels belong to the login (not the socket): when a socket drops they
//! detach and wait `grace_secs` for an `attach` from a new socket.
//!
//! The registry ([`Mux`]) holds handles only; each channel's state lives in its task
//! (`channel.rs`), each socket's in its task (`socket.rs`).

mod channel;
mod ended;
mod flow;
pub(crate) mod listing;
mod ring;
mod socket;

pub use channel::{ChannelHandle, Starter};
pub use flow::{OutputFlow, Replay};
pub use listing::{list_channels, ChannelInfo};
pub use ring::RingBuffer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dashmap::DashMap;
use opsgate_protocol::{codes, OpenTarget, ServerFrame, SUBPROTOCOL};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::app::App;
use crate::audit;
use crate::auth::{self, CurrentUser, Role};
use crate::config::MuxConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::source::{HostkeyQuestion, OpenError};

/// Messages from channels (and the registry) to a socket task.
pub enum Outbound {
    /// A complete binary data frame.
    Frame(Bytes),
    /// A control frame (boxed: the socket's queue allocates its slots up front, and a
    /// frame is ten times the size of the other variants).
    Control(Box<ServerFrame>),
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
/// Queue of commands into one channel: attach, host-key answers and input resumes only
/// (input, resizes, acks and stop requests bypass it), so a few slots are plenty; a
/// socket that finds it full answers `channel_busy`.
const CHANNEL_CMD_CAPACITY: usize = 16;

/// A registered socket: its id, its kick signal and its login's activity clock.
type SocketSlot = (u64, watch::Receiver<Option<&'static str>>, Arc<AtomicI64>);

/// Who a socket belongs to.
#[derive(Clone)]
pub(crate) struct LoginCtx {
    pub login_id: Arc<str>,
    pub username: Arc<str>,
    pub role: Role,
    pub ip: String,
    /// Unix seconds after which the login is over however active (absolute timeout).
    pub expires_at: i64,
    /// The login's session id (to refresh its idle clock from terminal activity).
    pub session_id: Option<String>,
}

struct LoginEntry {
    username: Arc<str>,
    /// socket id → kick signal (a reason once set).
    sockets: HashMap<u64, watch::Sender<Option<&'static str>>>,
    channels: usize,
    session_id: Option<String>,
    expires_at: i64,
    /// Unix seconds of the last input or ack on any socket of this login.
    activity: Arc<AtomicI64>,
    /// When activity was last written to the stored login, and the last activity the
    /// store is known to hold (from either sockets or REST).
    flushed_at: i64,
    known_seen: i64,
}

/// A user's channel opens: a token bucket holding half a minute's worth.
struct OpenBucket {
    tokens: f64,
    at: std::time::Instant,
}

/// Shared registry state.
pub struct MuxInner {
    pub(crate) cfg: MuxConfig,
    pub(crate) metrics: Arc<Metrics>,
    app: Weak<App>,
    channels: DashMap<Arc<str>, ChannelHandle>,
    logins: DashMap<Arc<str>, LoginEntry>,
    /// Channels per user over all their logins.
    user_channels: DashMap<Arc<str>, usize>,
    /// Channel opens per user (`[mux] opens_per_minute`): one entry per user who opened
    /// a channel, so bounded by the user table.
    open_rate: DashMap<Arc<str>, OpenBucket>,
    /// Channels that ended because their program exited, for late `attach`es.
    ended: ended::EndedChannels,
    next_socket: AtomicU64,
    shutting_down: AtomicBool,
}

/// The registry of sockets and channels.
pub struct Mux {
    inner: Arc<MuxInner>,
}

impl Mux {
    pub fn new(cfg: MuxConfig, metrics: Arc<Metrics>, app: Weak<App>) -> Self {
        let inner = Arc::new(MuxInner {
            cfg,
            metrics,
            app,
            channels: DashMap::new(),
            logins: DashMap::new(),
            user_channels: DashMap::new(),
            open_rate: DashMap::new(),
            ended: ended::EndedChannels::default(),
            next_socket: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(login_sweeper(Arc::downgrade(&inner)));
        }
        Mux { inner }
    }

    /// Ends every socket and channel of one login (logout).
    pub fn close_login(&self, login_id: &str, reason: &'static str) {
        self.inner.end_where(|login, _| login == login_id, reason);
    }

    /// Ends every socket and channel of a user (deletion, password change).
    pub fn close_user(&self, username: &str, reason: &'static str) {
        self.inner.end_where(|_, user| user == username, reason);
    }

    /// Ends the channels that use workspace `key`'s objects, of one user or everyone's
    /// (a team membership removed or reduced to viewer, a team deleted). Their sockets
    /// and other channels stay.
    pub fn close_workspace(&self, key: &str, username: Option<&str>, reason: &'static str) {
        self.inner.close_where(
            |h| {
                username.is_none_or(|u| *h.username == *u)
                    && h.workspace.get().is_some_and(|w| **w == *key)
            },
            reason,
        );
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
                h.stop(reason);
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
    fn socket_opened(&self, login: &LoginCtx) -> Option<SocketSlot> {
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let mut entry = self
            .logins
            .entry(login.login_id.clone())
            .or_insert_with(|| LoginEntry {
                username: login.username.clone(),
                sockets: HashMap::new(),
                channels: 0,
                session_id: login.session_id.clone(),
                expires_at: login.expires_at,
                activity: Arc::new(AtomicI64::new(0)),
                flushed_at: crate::store::now(),
                known_seen: crate::store::now(),
            });
        if entry.sockets.len() >= self.cfg.max_sockets_per_login {
            return None;
        }
        entry.sockets.insert(id, tx);
        self.metrics.socket_opened();
        Some((id, rx, entry.activity.clone()))
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
        // A saved session may be a team's, where the membership role decides: the ssh
        // source checks the role once it knows the session's workspace.
        let saved = matches!(
            &target,
            OpenTarget::Ssh {
                session_id: Some(_),
                ..
            }
        );
        // Following an execution is reading: viewers may.
        let follow = matches!(
            &target,
            OpenTarget::Tool {
                execution_id: Some(_),
                ..
            }
        );
        if login.role == Role::Viewer && matches!(kind, "ssh" | "pty" | "tool") && !saved && !follow
        {
            return Err(OpenError::new(
                codes::FORBIDDEN,
                "viewers cannot open terminals or run tools",
            ));
        }
        let app = self
            .app()
            .ok_or_else(|| OpenError::new(codes::SHUTTING_DOWN, "the gateway is shutting down"))?;
        let (target_name, check): (String, Result<(), OpenError>) = match &target {
            OpenTarget::Pty {
                program,
                cols,
                rows,
            } => (format!("program {program}"), check_size(*cols, *rows)),
            OpenTarget::Ssh {
                session_id,
                host,
                port,
                username,
                cols,
                rows,
                ..
            } => (
                match (session_id, host) {
                    (Some(sid), _) => format!("saved session {sid}"),
                    (None, h) => format!(
                        "{}@{}:{}",
                        username.as_deref().unwrap_or("?"),
                        h.as_deref().unwrap_or("?"),
                        port.unwrap_or(22)
                    ),
                },
                check_size(*cols, *rows),
            ),
            OpenTarget::Job { job_id } => (format!("job {job_id}"), Ok(())),
            OpenTarget::Tool {
                execution_id: Some(id),
                ..
            } => (format!("execution {id}"), Ok(())),
            OpenTarget::Tool { tool, .. } => (format!("tool {tool}"), Ok(())),
            OpenTarget::Stats { interval_ms } => (format!("stats every {interval_ms} ms"), Ok(())),
        };
        check?;
        let id: Arc<str> = Arc::from(crate::store::new_id());
        let (cmd_tx, cmd_rx) = mpsc::channel(CHANNEL_CMD_CAPACITY);
        let handle = ChannelHandle::new(
            id.clone(),
            kind,
            login,
            target_name,
            self.cfg.input_window_bytes as u64,
            cmd_tx,
        );
        let input = handle.shared.input.clone();
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
                (
                    Box::pin(async move { crate::pty::spawn(&argv, cols, rows, input) }),
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
                let (qtx, qrx) = mpsc::channel(1);
                let target = crate::ssh::Target {
                    session_id,
                    host,
                    port,
                    username,
                    credential_id,
                    cols,
                    rows,
                    role: login.role,
                };
                let owner = login.username.to_string();
                let workspace = handle.workspace.clone();
                (
                    Box::pin(async move {
                        crate::ssh::start(app, owner, target, workspace, qtx, input).await
                    }),
                    Some(qrx),
                )
            }
            // Viewers may watch: the job is looked up among the user's workspaces.
            OpenTarget::Job { job_id } => {
                let (owner, role) = (login.username.to_string(), login.role);
                let workspace = handle.workspace.clone();
                (
                    Box::pin(async move {
                        crate::jobs::routes::open_watch(app, owner, role, job_id, workspace).await
                    }),
                    None,
                )
            }
            OpenTarget::Stats { interval_ms } => {
                input.close();
                let sampler = app.stats.clone();
                (
                    Box::pin(async move { Ok(crate::stats::channel(&sampler, interval_ms)) }),
                    None,
                )
            }
            OpenTarget::Tool {
                execution_id: Some(id),
                ..
            } => {
                // Follow an execution of any workspace the user is in.
                let user = login.username.to_string();
                (
                    Box::pin(async move { crate::tools::routes::follow(&app, &user, &id).await }),
                    None,
                )
            }
            OpenTarget::Tool { tool, params, .. } => {
                // Every check (tool, role, parameters, run limits) happens here, before
                // anything starts; the run's slots travel with it. The run is an
                // execution of the personal workspace; this channel follows it, and its
                // `close` cancels it.
                let run = app.tools.prepare(
                    &login.username,
                    login.role,
                    login.role == Role::Admin,
                    &tool,
                    &params,
                )?;
                input.close();
                let (user, ip) = (login.username.to_string(), login.ip.clone());
                (
                    // Started by the channel task, so a channel limit refused below
                    // never leaves a run behind.
                    Box::pin(async move {
                        let live = app
                            .executions
                            .start(run, &user, Some(ip), user.clone(), None);
                        Ok(crate::tools::executions::follow(Some(live), None, true))
                    }),
                    None,
                )
            }
        };
        self.reserve_channel(login)?;
        self.channels.insert(id.clone(), handle.clone());
        self.metrics.channel_opened(kind);
        let task = channel::ChannelTask {
            inner: self.clone(),
            handle: handle.clone(),
            grace: Duration::from_secs(self.cfg.grace_secs),
            flow: OutputFlow::new(self.cfg.window_bytes, self.cfg.ring_bytes),
            attached: Some(socket),
        };
        // Every log line of the channel carries its id, kind, user and login.
        let span = tracing::info_span!("channel", id = %id, kind, user = %login.username, login = %login.login_id);
        tokio::spawn(task.run(cmd_rx, start, questions).instrument(span));
        Ok(handle)
    }

    /// Counts a new channel against the gateway's, the user's and the login's limits,
    /// or says which is reached.
    fn reserve_channel(&self, login: &LoginCtx) -> Result<(), OpenError> {
        if self.channels.len() >= self.cfg.max_channels_total {
            return Err(OpenError::new(
                codes::LIMIT_REACHED,
                format!(
                    "the gateway already holds {} channels (its limit)",
                    self.channels.len()
                ),
            ));
        }
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
        self.take_open(&login.username)?;
        {
            let mut per_user = self
                .user_channels
                .entry(login.username.clone())
                .or_insert(0);
            if *per_user >= self.cfg.max_channels_per_user {
                return Err(OpenError::new(
                    codes::LIMIT_REACHED,
                    format!(
                        "you already have {} channels open over all your logins (the limit)",
                        *per_user
                    ),
                ));
            }
            *per_user += 1;
        }
        entry.channels += 1;
        Ok(())
    }

    /// Takes one of `user`'s channel opens. Every open forks a program or starts an SSH
    /// handshake and writes audit events; the channel limits bound how many are open,
    /// not how fast a script opens and closes them.
    fn take_open(&self, user: &Arc<str>) -> Result<(), OpenError> {
        let per_minute = self.cfg.opens_per_minute;
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = (per_minute as f64 / 2.0).max(1.0);
        let rate = per_minute as f64 / 60.0;
        let now = std::time::Instant::now();
        let mut b = self.open_rate.entry(user.clone()).or_insert(OpenBucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(capacity);
        b.at = now;
        if b.tokens < 1.0 {
            let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0);
            return Err(OpenError::new(
                codes::LIMIT_REACHED,
                format!(
                    "too many channel opens: at most {per_minute} a minute per user ([mux] opens_per_minute); try again in {wait} s"
                ),
            ));
        }
        b.tokens -= 1.0;
        Ok(())
    }

    /// Audits a channel's start with its target and outcome.
    fn audit_open(&self, handle: &ChannelHandle, outcome: Result<(), &'static str>) {
        let detail = match outcome {
            Ok(()) => format!("{} {}: ok", handle.kind, handle.target),
            Err(code) => format!("{} {}: failed ({code})", handle.kind, handle.target),
        };
        self.audit(
            audit::Entry::new(&handle.username, "channel.open")
                .target(handle.id.to_string())
                .ip(Some(handle.ip.to_string()))
                .detail(detail)
                .workspace(team_of(handle)),
        );
    }

    fn channel_ended(
        &self,
        handle: &ChannelHandle,
        reason: &'static str,
        ending: Option<ended::Ending>,
    ) {
        // Remembered before the channel leaves the registry, so an `attach` that misses
        // the one finds the other.
        if let Some(e) = ending {
            self.ended.remember(handle.id.clone(), e, self.grace());
        }
        self.channels.remove(&handle.id);
        self.metrics.channel_closed(handle.kind);
        self.logins.remove_if_mut(&*handle.login_id, |_, e| {
            e.channels = e.channels.saturating_sub(1);
            e.sockets.is_empty() && e.channels == 0
        });
        self.user_channels.remove_if_mut(&handle.username, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
        self.audit(
            audit::Entry::new(&handle.username, "channel.close")
                .target(handle.id.to_string())
                .detail(format!("{} {}: {reason}", handle.kind, handle.target))
                .workspace(team_of(handle)),
        );
    }

    fn channel(&self, id: &str) -> Option<ChannelHandle> {
        self.channels.get(id).map(|h| h.clone())
    }

    /// How channel `id` ended, if it exited within the grace period.
    fn ending(&self, id: &str) -> Option<ended::Ending> {
        self.ended.get(id, self.grace())
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.cfg.grace_secs)
    }

    /// One pass of the login sweeper: ends the sockets and channels of logins that
    /// expired (absolute or idle timeout), and writes terminal activity to the stored
    /// login so that working only in terminals keeps a login alive.
    async fn sweep_logins(&self, store: &crate::store::Store, idle: u64) {
        let now = crate::store::now();
        let refresh = (idle as i64 / 4).clamp(1, 60);
        let mut work = Vec::new();
        for e in self.logins.iter() {
            work.push((
                e.key().clone(),
                e.session_id.clone(),
                e.expires_at,
                e.activity.load(Ordering::Acquire),
                e.flushed_at,
                e.known_seen,
            ));
        }
        for (login_id, session_id, expires_at, activity, flushed_at, known_seen) in work {
            let expired = if now >= expires_at {
                true
            } else if let Some(sid) = session_id {
                let state = if activity > known_seen && now - flushed_at >= refresh {
                    let st = crate::auth::refresh_login(store, &sid, activity, idle).await;
                    if let Some(mut e) = self.logins.get_mut(&login_id) {
                        e.flushed_at = now;
                    }
                    Some(st)
                } else if now - activity.max(known_seen) >= idle as i64 {
                    Some(crate::auth::login_state(store, &sid).await)
                } else {
                    None
                };
                match state {
                    Some(crate::auth::LoginState::Gone) => true,
                    Some(crate::auth::LoginState::Alive { seen_at }) => {
                        if let Some(mut e) = self.logins.get_mut(&login_id) {
                            e.known_seen = e.known_seen.max(seen_at);
                        }
                        now - seen_at.max(activity) >= idle as i64
                    }
                    None => false,
                }
            } else {
                false
            };
            if expired {
                self.end_where(|l, _| l == &*login_id, codes::SESSION_EXPIRED);
            }
        }
    }
}

/// Runs [`MuxInner::sweep_logins`] every quarter of the idle timeout (at most every
/// 30 s) for as long as the mux exists.
async fn login_sweeper(inner: Weak<MuxInner>) {
    loop {
        let Some(mux) = inner.upgrade() else { return };
        let Some(app) = mux.app() else {
            drop(mux);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let idle = app.cfg.session.idle_timeout_secs.max(1);
        let every = Duration::from_secs((idle / 4).clamp(1, 30));
        mux.sweep_logins(&app.store, idle).await;
        drop((mux, app));
        tokio::time::sleep(every).await;
    }
}

/// An `error` frame, on channel `ch` or (None) on the socket.
fn error_frame(ch: Option<u32>, code: &str, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        ch,
        code: code.to_string(),
        message: message.into(),
    }
}

/// `invalid_offset`: an `attach` asked for output beyond the `end` produced.
fn offset_past_end(ch: u32, offset: u64, end: u64) -> ServerFrame {
    error_frame(
        Some(ch),
        codes::INVALID_OFFSET,
        format!("offset {offset} is past the end of the output ({end})"),
    )
}

/// `output_lost`: an `attach`'s replay starts at `from`, `lost` bytes after the offset
/// the client asked for.
fn output_lost(ch: u32, lost: u64, from: u64) -> ServerFrame {
    error_frame(
        Some(ch),
        codes::OUTPUT_LOST,
        format!("{lost} bytes of output before offset {from} are no longer buffered"),
    )
}

/// The team whose objects a channel uses, for its audit events.
fn team_of(handle: &ChannelHandle) -> Option<String> {
    let key = handle.workspace.get()?;
    crate::workspace::team_of_key(key).map(str::to_string)
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
#[utoipa::path(get, path = "/ws", tag = "system",
    description = "The multiplexed WebSocket (subprotocol `opsgate.v1`): terminals, tool output, \
job progress and stats as channels. Its frames are specified in `protocol/PROTOCOL.md`.",
    params(("Sec-WebSocket-Protocol" = String, Header, description = "`opsgate.v1`", example = "opsgate.v1")),
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade.", body = crate::http::ErrorBody),
        (status = 403, description = "`forbidden`: the `Origin` is not allowed.", body = crate::http::ErrorBody),
    ))]
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
        session_id: user.session.id().map(|id| id.to_string()),
    };
    let inner = app.mux.inner.clone();
    let Some((socket_id, kick, activity)) = inner.socket_opened(&login) else {
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
    let registration = SocketRegistration {
        inner: inner.clone(),
        login_id: login.login_id.clone(),
        socket_id,
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
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("socket", id = socket_id, user = %login.username, login = %login.login_id);
            socket::run(inner, socket, login, registration, kick, activity).instrument(span)
        })
}

/// A socket's registration under its login (its place under `max_sockets_per_login`,
/// its kick), released when dropped. The socket task holds it to its end. If the upgrade
/// never completes (the client resets the connection as the 101 goes out), axum drops
/// the upgrade callback without calling it, and the registration goes with it: released
/// only at the socket task's end, each such reset kept a place for good, and after 16 the
/// login got `429 too_many_sockets` until it logged in again.
pub(crate) struct SocketRegistration {
    inner: Arc<MuxInner>,
    login_id: Arc<str>,
    pub(crate) socket_id: u64,
}

impl Drop for SocketRegistration {
    fn drop(&mut self) {
        self.inner.socket_closed(&self.login_id, self.socket_id);
    }
}
