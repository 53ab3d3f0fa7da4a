//! SSH terminals through russh: connect, verify the host key with the user (trust on
//! first use, per workspace), authenticate with a stored credential, open a PTY shell.
//!
//! A saved session is looked up in every workspace the user may see (their personal one,
//! then their teams); the channel then uses that workspace's credential and known hosts,
//! so a key one team operator trusted is trusted for the whole team. An ad-hoc target
//! uses the personal workspace.
//!
//! russh hands channel data to us with an awaited send into a bounded queue and reopens
//! the SSH window on arrival, not on consumption. The channel task reads that queue
//! itself, coalescing what is there into chunks of at most `CHUNK` bytes, and only while
//! its flow-control window has room. When the browser stops acking, the window fills,
//! then russh's own queue for this one connection, and TCP back-pressure reaches the
//! device. Every terminal has its own SSH connection, so one stalled terminal never
//! stalls another. One more task per terminal writes its input (`tend_input`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::FutureExt;
use opsgate_protocol::{codes, HostkeyStatus, DATA_HEADER_LEN};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh::ChannelMsg;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::app::App;
use crate::auth::Role;
use crate::inventory::{self, CredentialKind, InventoryError};
use crate::source::{
    HostkeyQuestion, InputItem, InputQueue, OpenError, Source, SourceCtl, SourceEvent, Stopper,
    MAX_SOURCE_CHUNK,
};
use crate::store::StoreError;
use crate::workspace::{self, Scope, WorkspaceError};

const CHUNK: usize = MAX_SOURCE_CHUNK;
/// Output within this long of the previous chunk counts as a stream (see `ShellOutput`).
const STREAMING: Duration = Duration::from_millis(2);
/// Scheduler yields a streaming chunk may wait for more of russh's packets.
const COALESCE_YIELDS: u32 = 4;
const CONTROL_QUEUE: usize = 8;
/// How long authentication and opening the shell may take after the handshake.
const AUTH_LIMIT: Duration = Duration::from_secs(30);

/// What an `ssh` open asks for.
#[derive(Debug, Clone)]
pub struct Target {
    pub session_id: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub credential_id: Option<String>,
    pub cols: u16,
    pub rows: u16,
    /// The global role of the user opening it: it decides in their personal workspace
    /// (and `[ssh] saved_sessions_only` spares admins); in a team's, the membership does.
    pub role: Role,
}

struct Resolved {
    /// The workspace whose credential and known hosts the channel uses.
    scope: Scope,
    host: String,
    port: u16,
    /// From the open frame, else the saved session; the credential set is the last resort.
    username: Option<String>,
    credential_id: String,
}

/// Where establishing the session failed.
enum Step {
    Handshake(russh::Error),
    Auth(russh::Error),
    AuthRejected,
    AuthPrompt(String),
    Channel(russh::Error),
}

#[derive(Debug, Clone)]
enum HostkeyOutcome {
    Unknown {
        fingerprint: String,
    },
    Changed {
        fingerprint: String,
        known: String,
    },
    Rejected,
    Unanswered,
    /// Accepted, but it could not be kept (the workspace holds `[inventory]
    /// max_known_hosts` keys, or the store failed): the connection does not go on.
    NotStored {
        code: &'static str,
        why: String,
    },
}

struct Handler {
    app: Arc<App>,
    /// Whose known hosts are consulted and written, and who trusts a new key.
    scope: Scope,
    host: String,
    port: u16,
    /// Where host-key questions go; `None` (jobs) trusts only keys already known: an
    /// unknown key fails with `hostkey_unknown`, never trusted silently.
    questions: Option<mpsc::Sender<HostkeyQuestion>>,
    outcome: Arc<Mutex<Option<HostkeyOutcome>>>,
    /// Why the connection ended, when russh tells: the server's disconnect message or
    /// the error that ended the session (a packet over the size limit, a bad MAC), so a
    /// terminal says more than "closed".
    dropped: Arc<OnceLock<String>>,
    /// Set once the user is asked about the key: from then on the handshake waits for a
    /// person, not a network, and the connect timeout no longer applies.
    asked: Arc<AtomicBool>,
}

impl Handler {
    async fn refuse_channel(&self, kind: &str, reply: client::ChannelOpenHandle) {
        tracing::warn!(host = %self.host, port = self.port, kind, "refused a channel the SSH server tried to open");
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }
}

fn key_facts(key: &russh::keys::PublicKeyOrCertificate) -> (String, String) {
    match key {
        russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => (
            key.algorithm().as_str().to_string(),
            key.fingerprint(HashAlg::Sha256).to_string(),
        ),
        russh::keys::PublicKeyOrCertificate::Certificate(c) => (
            c.algorithm().as_str().to_string(),
            c.public_key().fingerprint(HashAlg::Sha256).to_string(),
        ),
    }
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let _ = self.dropped.set(format!(
                    "the server disconnected ({:?}): {}",
                    info.reason_code,
                    info.message.chars().take(200).collect::<String>()
                ));
                Ok(())
            }
            client::DisconnectReason::Error(e) => {
                let _ = self.dropped.set(format!("the session failed: {e}"));
                Err(e)
            }
        }
    }

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (algorithm, fingerprint) = key_facts(key);
        let (key, host, port) = (self.scope.key.clone(), self.host.clone(), self.port);
        let known = self
            .app
            .store
            .read(move |tx| inventory::find_known_host(tx, &key, &host, port))
            .await;
        let known = match known {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "known-hosts lookup failed");
                return Ok(false);
            }
        };
        match known {
            Some(k) if k.fingerprint == fingerprint => return Ok(true),
            Some(k) => {
                // Tell the user what we saw, then refuse: a changed key is never accepted
                // here; the user must delete the old entry first.
                if let Some(q) = &self.questions {
                    let (reply, _) = oneshot::channel();
                    let _ = q
                        .send(HostkeyQuestion {
                            algorithm,
                            fingerprint: fingerprint.clone(),
                            status: HostkeyStatus::Changed,
                            reply,
                        })
                        .await;
                }
                *self.outcome.lock().await = Some(HostkeyOutcome::Changed {
                    fingerprint,
                    known: k.fingerprint,
                });
                return Ok(false);
            }
            None => {}
        }
        let Some(questions) = &self.questions else {
            *self.outcome.lock().await = Some(HostkeyOutcome::Unknown { fingerprint });
            return Ok(false);
        };
        let (reply, answer) = oneshot::channel();
        self.asked.store(true, Ordering::Release);
        let asked = questions
            .send(HostkeyQuestion {
                algorithm: algorithm.clone(),
                fingerprint: fingerprint.clone(),
                status: HostkeyStatus::Unknown,
                reply,
            })
            .await;
        if asked.is_err() {
            return Ok(false);
        }
        let wait = Duration::from_secs(self.app.cfg.mux.hostkey_answer_secs);
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(true)) => {
                let (scope, host, port) = (self.scope.clone(), self.host.clone(), self.port);
                let limits = self.app.cfg.inventory;
                let ours = fingerprint.clone();
                let stored = self
                    .app
                    .store
                    .write(move |tx| {
                        let (entry, added) = inventory::add_known_host(
                            tx,
                            &scope,
                            &host,
                            port,
                            &algorithm,
                            &fingerprint,
                        )?;
                        if added {
                            inventory::check_known_host_room(tx, &scope.key, &limits)?;
                        }
                        Ok::<_, inventory::InventoryError>(entry.fingerprint)
                    })
                    .await;
                // Another accept for the address got there first, with another key: this
                // connection's key is not the one trusted now.
                if let Ok(known) = &stored {
                    if *known != ours {
                        *self.outcome.lock().await = Some(HostkeyOutcome::Changed {
                            fingerprint: ours,
                            known: known.clone(),
                        });
                        return Ok(false);
                    }
                }
                if let Err(e) = stored {
                    let (code, why) = match &e {
                        inventory::InventoryError::Conflict { code, message } => {
                            (*code, message.clone())
                        }
                        _ => {
                            tracing::error!(error = %e, "storing a trusted host key failed");
                            (
                                codes::CHANNEL_FAILED,
                                "the gateway could not store it".to_string(),
                            )
                        }
                    };
                    *self.outcome.lock().await = Some(HostkeyOutcome::NotStored { code, why });
                    return Ok(false);
                }
                Ok(true)
            }
            Ok(Ok(false)) => {
                *self.outcome.lock().await = Some(HostkeyOutcome::Rejected);
                Ok(false)
            }
            _ => {
                *self.outcome.lock().await = Some(HostkeyOutcome::Unanswered);
                Ok(false)
            }
        }
    }

    // The gateway asks the server for a PTY and a shell, nothing else: it never requests
    // agent or X11 forwarding or remote port forwards. russh accepts server-initiated
    // channels by default; a server opening one anyway (a compromised or hostile device
    // reaching back through the gateway) is refused explicitly.

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("auth-agent", reply).await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("x11", reply).await;
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("forwarded-tcpip", reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-tcpip", reply).await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("forwarded-streamlocal", reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-streamlocal", reply).await;
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("session", reply).await;
        Ok(())
    }

    async fn server_channel_open_unknown(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("unknown", reply).await;
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> OpenError {
    OpenError::new(codes::INVALID_OPEN, message)
}

async fn resolve(app: &Arc<App>, user: &str, t: &Target) -> Result<Resolved, OpenError> {
    let from_frame = t.username.clone().filter(|u| !u.is_empty());
    if let Some(sid) = t.session_id.clone() {
        let (u, role) = (user.to_string(), t.role);
        let found = app
            .store
            .read(move |tx| workspace::find_session(tx, &u, role, &sid))
            .await
            .map_err(|e| OpenError::new(codes::CHANNEL_FAILED, e.to_string()))?
            .ok_or_else(|| OpenError::new(codes::NOT_FOUND, "saved session not found"))?;
        if found.role < Role::Operator {
            return Err(OpenError::new(
                codes::FORBIDDEN,
                if found.scope.team_id().is_some() {
                    "team viewers cannot open the team's terminals"
                } else {
                    "viewers cannot open terminals or run tools"
                },
            ));
        }
        let s = found.session;
        let credential_id = t
            .credential_id
            .clone()
            .or(s.credential_id)
            .ok_or_else(|| invalid("the saved session has no credential; pick one"))?;
        return Ok(Resolved {
            scope: found.scope,
            host: s.host,
            port: s.port,
            username: from_frame.or(s.username),
            credential_id,
        });
    }
    if app.cfg.ssh.saved_sessions_only && t.role != Role::Admin {
        return Err(OpenError::new(
            codes::TARGET_DENIED,
            "this gateway only opens saved sessions (ssh.saved_sessions_only); give session_id",
        ));
    }
    let host = t
        .host
        .clone()
        .filter(|h| inventory::valid_host(h))
        .ok_or_else(|| invalid("give session_id, or a valid host"))?;
    let credential_id = t
        .credential_id
        .clone()
        .ok_or_else(|| invalid("credential_id is required"))?;
    Ok(Resolved {
        scope: Scope::personal(user),
        host,
        port: t.port.unwrap_or(22).max(1),
        username: from_frame,
        credential_id,
    })
}

/// Resolves `host` once, drops every address `[ssh]` networks do not allow, and connects
/// to the remaining addresses in order. The address checked is the address connected
/// to: nothing is resolved twice, so a DNS answer cannot change between check and use.
async fn connect_tcp(app: &App, host: &str, port: u16) -> Result<tokio::net::TcpStream, OpenError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let limit = Duration::from_secs(app.cfg.ssh.connect_timeout_secs.max(1));
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(limit, tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err(OpenError::new(
                    codes::DNS_FAILED,
                    format!("cannot resolve {bare}: {e}"),
                ))
            }
            Err(_) => {
                return Err(OpenError::new(
                    codes::DNS_FAILED,
                    format!("resolving {bare} timed out"),
                ))
            }
        };
    if addrs.is_empty() {
        return Err(OpenError::new(
            codes::DNS_FAILED,
            format!("{bare} has no address"),
        ));
    }
    let (allowed, denied): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| app.cfg.ssh.allows(a.ip()));
    if allowed.is_empty() {
        let list: Vec<String> = denied.iter().map(|a| a.ip().to_string()).collect();
        return Err(OpenError::new(
            codes::TARGET_DENIED,
            format!(
                "{bare} ({}) is outside the networks this gateway may connect to",
                list.join(", ")
            ),
        ));
    }
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = None;
    for addr in allowed {
        let err =
            match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => OpenError::new(
                    codes::CONNECT_REFUSED,
                    format!("{addr} refused the connection"),
                ),
                Ok(Err(e)) => OpenError::new(
                    codes::CONNECT_REFUSED,
                    format!("cannot connect to {addr}: {e}"),
                ),
                Err(_) => {
                    return Err(OpenError::new(
                        codes::CONNECT_TIMEOUT,
                        format!("no answer from {addr} within {} s", limit.as_secs()),
                    ))
                }
            };
        last = Some(err);
    }
    Err(last.unwrap_or_else(|| OpenError::new(codes::CONNECT_REFUSED, "no address to connect to")))
}

/// What to type at one keyboard-interactive prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromptAnswer {
    Password,
    Username,
}

/// Decides how to answer one keyboard-interactive prompt. Only two prompts are answered:
/// a hidden password prompt (once per login: a second one means the first was wrong or
/// the device wants something else, such as a new password) and an echoed user-name
/// prompt. Anything else (a one-time code, a token, "new password") is refused with
/// the prompt's text, so the user learns what the device asked for.
pub(crate) fn answer_prompt(
    prompt: &str,
    echo: bool,
    password_given: bool,
) -> Result<PromptAnswer, String> {
    let p = prompt.trim().to_ascii_lowercase();
    let refuse = || {
        format!(
            "the device asked {:?}, which opsgate cannot answer",
            prompt.trim()
        )
    };
    if echo {
        let name = p.trim_end_matches(':').trim();
        let is_username = ["username", "user name", "login", "user"]
            .iter()
            .any(|w| name == *w || name.ends_with(&format!(" {w}")));
        return if is_username {
            Ok(PromptAnswer::Username)
        } else {
            Err(refuse())
        };
    }
    const OTHER: &[&str] = &[
        "one-time", "one time", "otp", "token", "code", "pin", "new ", "again", "retype",
        "confirm", "verif", "expired", "old ", "current",
    ];
    let is_password = p.contains("password") && !OTHER.iter().any(|w| p.contains(w));
    match (is_password, password_given) {
        (true, false) => Ok(PromptAnswer::Password),
        (true, true) => Err(format!(
            "the device asked for a password again ({:?}): the password was not accepted",
            prompt.trim()
        )),
        (false, _) => Err(refuse()),
    }
}

/// Why authentication did not succeed.
enum AuthFail {
    /// The server said no.
    Rejected,
    /// A keyboard-interactive prompt we do not answer.
    Prompt(String),
    Error(russh::Error),
}

impl From<russh::Error> for AuthFail {
    fn from(e: russh::Error) -> Self {
        AuthFail::Error(e)
    }
}

/// The secret an SSH login uses, ready: a private key is decoded before connecting.
enum LoginSecret {
    Password(String),
    Key(Arc<russh::keys::PrivateKey>),
}

async fn authenticate(
    handle: &mut client::Handle<Handler>,
    username: &str,
    secret: &LoginSecret,
) -> Result<(), AuthFail> {
    match secret {
        LoginSecret::Password(password) => {
            if handle
                .authenticate_password(username, password.clone())
                .await?
                .success()
            {
                return Ok(());
            }
            // Many network devices only offer keyboard-interactive.
            let mut reply = handle
                .authenticate_keyboard_interactive_start(username, None)
                .await?;
            let mut password_given = false;
            // A bound on rounds: each answered round must make progress.
            for _ in 0..5 {
                match reply {
                    client::KeyboardInteractiveAuthResponse::Success => return Ok(()),
                    client::KeyboardInteractiveAuthResponse::Failure { .. } => {
                        return Err(AuthFail::Rejected)
                    }
                    client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                        let mut answers = Vec::with_capacity(prompts.len());
                        for p in &prompts {
                            match answer_prompt(&p.prompt, p.echo, password_given)
                                .map_err(AuthFail::Prompt)?
                            {
                                PromptAnswer::Password => {
                                    password_given = true;
                                    answers.push(password.clone());
                                }
                                PromptAnswer::Username => answers.push(username.to_string()),
                            }
                        }
                        reply = handle
                            .authenticate_keyboard_interactive_respond(answers)
                            .await?;
                    }
                }
            }
            Err(AuthFail::Rejected)
        }
        LoginSecret::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await?.flatten()
            } else {
                None
            };
            if handle
                .authenticate_publickey(username, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await?
                .success()
            {
                Ok(())
            } else {
                Err(AuthFail::Rejected)
            }
        }
    }
}

/// Why the credential could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("no longer allowed to use this workspace")]
    AccessGone,
}

impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> Self {
        LoadError::Inventory(e.into())
    }
}

/// A loaded login: where to connect and with what, ready (a key already decoded).
struct Login {
    host: String,
    port: u16,
    username: String,
    secret: LoginSecret,
}

/// Checks the caller may still use `scope` (operator or better), then loads the
/// credential and decodes a private key. Returns the login and the enable secret.
async fn load_login(
    app: &Arc<App>,
    r: &Resolved,
    access: Access,
    no_username: &'static str,
) -> Result<(Login, Option<String>), OpenError> {
    let (scope, cid) = (r.scope.clone(), r.credential_id.clone());
    let a = app.clone();
    let (cred, secret) = app
        .store
        .read(move |tx| -> Result<_, LoadError> {
            if matches!(access, Access::Actor) {
                let now = workspace::current_role(tx, &scope)?;
                if now.is_none_or(|r| r < Role::Operator) {
                    return Err(LoadError::AccessGone);
                }
            }
            Ok(inventory::load_secret(tx, &a.sealer, &scope.key, &cid)?)
        })
        .await
        .map_err(|e| match e {
            LoadError::Inventory(InventoryError::NotFound(_)) => invalid("credential not found"),
            LoadError::AccessGone => OpenError::new(codes::FORBIDDEN, e.to_string()),
            // Never the secret: a seal that does not open says only that.
            other => OpenError::new(codes::CHANNEL_FAILED, other.to_string()),
        })?;
    let login_user = r
        .username
        .clone()
        .or_else(|| cred.username.clone())
        .ok_or_else(|| invalid(no_username))?;
    let login_secret = match cred.kind {
        CredentialKind::Password => LoginSecret::Password(secret.secret.clone()),
        // Stored keys are already decrypted (no KDF here); a record from before that
        // change goes through the same cost limits and bounded pool as an upload.
        CredentialKind::PrivateKey => {
            match inventory::keys::decode(secret.secret.clone(), secret.passphrase.clone()).await {
                Ok(k) => LoginSecret::Key(Arc::new(k.key)),
                Err(e) => {
                    return Err(OpenError::new(
                        codes::AUTH_FAILED,
                        format!("the credential's private key cannot be used: {e}"),
                    ))
                }
            }
        }
    };
    let enable = secret.enable_secret.clone();
    drop(secret);
    Ok((
        Login {
            host: r.host.clone(),
            port: r.port,
            username: login_user,
            secret: login_secret,
        },
        enable,
    ))
}

/// Connects, checks the host key against `scope`'s known hosts (asking `questions` about
/// an unknown one, if given) and authenticates; with `shell`, also opens a PTY shell.
/// Handshake, authentication and the shell must be ready within the connect timeout,
/// except while a person is deciding about the host key.
async fn establish(
    app: &Arc<App>,
    scope: &Scope,
    login: Login,
    questions: Option<mpsc::Sender<HostkeyQuestion>>,
    shell: Option<(String, u16, u16)>,
    began: Instant,
    dropped: Arc<OnceLock<String>>,
) -> Result<(client::Handle<Handler>, Option<russh::Channel<client::Msg>>), OpenError> {
    let stream = connect_tcp(app, &login.host, login.port).await?;
    let outcome = Arc::new(Mutex::new(None));
    let asked = Arc::new(AtomicBool::new(false));
    let handler = Handler {
        dropped,
        asked: asked.clone(),
        app: app.clone(),
        scope: scope.clone(),
        host: login.host.clone(),
        port: login.port,
        questions,
        outcome: outcome.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(app.cfg.ssh.keepalive_secs.max(1))),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        preferred: preferred_algorithms(),
        ..Default::default()
    });
    let connect_limit = Duration::from_secs(app.cfg.ssh.connect_timeout_secs.max(1));
    let hostkey_limit = Duration::from_secs(app.cfg.mux.hostkey_answer_secs) + connect_limit;
    let username = login.username.clone();
    let login_secret = login.secret;
    let metrics = app.metrics.clone();
    let handshake_done = Arc::new(AtomicBool::new(false));
    let done = handshake_done.clone();
    let establish = async move {
        let mut handle = client::connect_stream(config, stream, handler)
            .await
            .map_err(Step::Handshake)?;
        done.store(true, Ordering::Release);
        match authenticate(&mut handle, &username, &login_secret).await {
            Ok(()) => {}
            Err(AuthFail::Rejected) => return Err(Step::AuthRejected),
            Err(AuthFail::Prompt(p)) => return Err(Step::AuthPrompt(p)),
            Err(AuthFail::Error(e)) => return Err(Step::Auth(e)),
        }
        metrics.ssh_connected(began.elapsed());
        let Some((term, cols, rows)) = shell else {
            return Ok((handle, None));
        };
        let channel = handle.channel_open_session().await.map_err(Step::Channel)?;
        channel
            .request_pty(true, &term, cols as u32, rows as u32, 0, 0, &[])
            .await
            .map_err(Step::Channel)?;
        channel.request_shell(true).await.map_err(Step::Channel)?;
        Ok((handle, Some(channel)))
    };
    tokio::pin!(establish);
    let established = match tokio::time::timeout(connect_limit, &mut establish).await {
        Ok(r) => Some(r),
        // Past the handshake, authentication may legitimately be slow (PAM delays a
        // failed attempt by seconds): give it its own allowance.
        Err(_) if asked.load(Ordering::Acquire) || handshake_done.load(Ordering::Acquire) => {
            tokio::time::timeout(hostkey_limit + AUTH_LIMIT, &mut establish)
                .await
                .ok()
        }
        Err(_) => None,
    };
    let target_name = format!("{}@{}:{}", login.username, login.host, login.port);
    let (host, port) = (&login.host, login.port);
    match established {
        Some(Ok(v)) => Ok(v),
        Some(Err(step)) => {
            let why = outcome.lock().await.clone();
            Err(match (why, step) {
                (Some(HostkeyOutcome::Unknown { fingerprint }), _) => OpenError::new(
                    codes::HOSTKEY_UNKNOWN,
                    format!(
                        "the host key of {host}:{port} ({fingerprint}) is not trusted in this workspace; open a terminal to it once and accept the key"
                    ),
                ),
                (Some(HostkeyOutcome::Changed { fingerprint, known }), _) => OpenError::new(
                    codes::HOSTKEY_CHANGED,
                    format!(
                        "WARNING: the host key of {host}:{port} has changed (now {fingerprint}, trusted {known}). Someone may be intercepting the connection. If the change is expected, delete the old entry in known hosts and connect again."
                    ),
                ),
                (Some(HostkeyOutcome::Rejected), _) => {
                    OpenError::new(codes::HOSTKEY_REJECTED, "you rejected the host key")
                }
                (Some(HostkeyOutcome::Unanswered), _) => OpenError::new(
                    codes::HOSTKEY_REJECTED,
                    "the host key was not confirmed in time",
                ),
                (Some(HostkeyOutcome::NotStored { code, why }), _) => OpenError::new(
                    code,
                    format!("the host key of {host}:{port} was accepted but could not be kept: {why}"),
                ),
                (None, Step::Handshake(e)) => OpenError::new(
                    codes::CHANNEL_FAILED,
                    format!("SSH handshake with {host}:{port} failed: {e}"),
                ),
                (None, Step::AuthRejected) => OpenError::new(
                    codes::AUTH_FAILED,
                    format!("authentication failed for {target_name}"),
                ),
                (None, Step::AuthPrompt(p)) => OpenError::new(
                    codes::AUTH_FAILED,
                    format!("authentication failed for {target_name}: {p}"),
                ),
                (None, Step::Auth(e)) => OpenError::new(
                    codes::AUTH_FAILED,
                    format!("authentication failed for {target_name}: {e}"),
                ),
                (None, Step::Channel(e)) => OpenError::new(
                    codes::CHANNEL_FAILED,
                    format!("opening the shell on {target_name} failed: {e}"),
                ),
            })
        }
        None if handshake_done.load(Ordering::Acquire) => Err(OpenError::new(
            codes::AUTH_FAILED,
            format!("authentication for {target_name} did not finish in time"),
        )),
        None => Err(OpenError::new(
            codes::CONNECT_TIMEOUT,
            format!(
                "{host}:{port} accepted the connection but did not complete SSH within {} s",
                connect_limit.as_secs()
            ),
        )),
    }
}

/// Whose right a device connection rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The scope's actor must still operate in the workspace (their role read now).
    Actor,
    /// The gateway's own housekeeping (an app's auto-stop): stopping what someone
    /// started stays allowed after they were demoted, or the app would run past its
    /// deadline with nobody left who may stop it.
    Housekeeping,
}

/// An authenticated SSH connection to a saved session, for jobs: the same connect,
/// host-key check (known keys only) and authentication as terminals.
pub struct DeviceConn {
    handle: client::Handle<Handler>,
    /// The credential's enable secret, for device types with an enable mode.
    pub enable_secret: Option<String>,
}

impl DeviceConn {
    /// Connects to saved session `session` of workspace `scope` for a job of the scope's
    /// actor, if they may still operate there (their role is read now, not taken from
    /// when the job began) unless `access` is housekeeping. An unknown host key fails
    /// with `hostkey_unknown`.
    pub async fn connect(
        app: &Arc<App>,
        scope: &Scope,
        session: &inventory::SavedSession,
        access: Access,
    ) -> Result<DeviceConn, OpenError> {
        let began = Instant::now();
        let r = Resolved {
            scope: scope.clone(),
            host: session.host.clone(),
            port: session.port,
            username: session.username.clone(),
            credential_id: session
                .credential_id
                .clone()
                .ok_or_else(|| invalid("the saved session has no credential"))?,
        };
        let (login, enable_secret) = load_login(
            app,
            &r,
            access,
            "no username: the saved session and its credential set give none",
        )
        .await?;
        let (handle, _) = establish(app, scope, login, None, None, began, Arc::default()).await?;
        Ok(DeviceConn {
            handle,
            enable_secret,
        })
    }

    /// Opens an interactive shell with a PTY (wide, so devices do not wrap lines).
    pub async fn shell(&self) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let channel = self.handle.channel_open_session().await?;
        channel
            .request_pty(true, "vt100", 511, 24, 0, 0, &[])
            .await?;
        channel.request_shell(true).await?;
        Ok(channel)
    }

    /// Runs one command with an exec request.
    pub async fn exec(&self, command: &str) -> Result<russh::Channel<client::Msg>, russh::Error> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        Ok(channel)
    }

    /// Whether the connection has ended (the peer closed it, or it failed): a cached
    /// connection that is closed must not be used again.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Ends the connection politely.
    pub async fn disconnect(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "done", "en")
            .await;
    }
}

/// Connects and opens a shell; host-key questions go to `questions`. Once the target's
/// workspace is known it is written to `workspace_slot` (the channel handle's), before access
/// is checked again and the credential loaded: a membership removed at any moment
/// either is seen by that check or finds the channel by its workspace and ends it.
pub async fn start(
    app: Arc<App>,
    owner: String,
    target: Target,
    workspace_slot: Arc<OnceLock<Arc<str>>>,
    questions: mpsc::Sender<HostkeyQuestion>,
    input: Arc<InputQueue>,
) -> Result<Source, OpenError> {
    let began = Instant::now();
    let r = resolve(&app, &owner, &target).await?;
    let _ = workspace_slot.set(Arc::from(r.scope.key.as_str()));
    let (login, _) = load_login(
        &app,
        &r,
        Access::Actor,
        if target.session_id.is_some() {
            "no username: the open frame, the saved session and its credential set give none"
        } else {
            "no username: give username in the open frame or on the credential set"
        },
    )
    .await?;
    let shell = Some((app.cfg.ssh.term.clone(), target.cols, target.rows));
    let dropped = Arc::new(OnceLock::new());
    let (handle, channel) = establish(
        &app,
        &r.scope,
        login,
        Some(questions),
        shell,
        began,
        dropped.clone(),
    )
    .await?;
    let Some(channel) = channel else {
        return Err(OpenError::new(codes::CHANNEL_FAILED, "no shell was opened"));
    };
    let (read, write) = channel.split();
    let handle = Arc::new(handle);
    let (ctl_tx, ctl_rx) = mpsc::channel::<SourceCtl>(CONTROL_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();

    // Output is read by the channel task itself, only while its window has room (see the
    // module comment): no driver task and no queue hop between russh and the channel.
    let output = ShellOutput {
        read,
        handle: handle.clone(),
        dropped,
        carry: None,
        last_sent: None,
        code: None,
        signal: None,
        closing: false,
        finished: false,
    };
    let events = futures_util::stream::unfold(output, |mut out| async move {
        let ev = out.next_event().await?;
        Some((ev, out))
    });
    tokio::spawn(tend_input(handle, write, ctl_rx, stop_rx, input));

    Ok(Source {
        events: Box::pin(events),
        control: ctl_tx,
        stopper: Stopper::Signal(stop_tx),
    })
}

/// A shell's output as the channel task reads it: russh's messages coalesced into
/// chunks of at most [`CHUNK`] bytes, then the exit (or `remote_closed`), then nothing.
struct ShellOutput {
    read: russh::ChannelReadHalf,
    handle: Arc<client::Handle<Handler>>,
    /// Why the connection ended, if russh said (see [`Handler`]).
    dropped: Arc<OnceLock<String>>,
    /// Output that did not fit in the previous chunk (chunks never exceed CHUNK).
    carry: Option<bytes::Bytes>,
    last_sent: Option<Instant>,
    code: Option<i32>,
    signal: Option<String>,
    /// The remote closed the channel after the chunk just returned: end next time.
    closing: bool,
    finished: bool,
}

impl ShellOutput {
    async fn next_event(&mut self) -> Option<SourceEvent> {
        if self.finished {
            return None;
        }
        loop {
            if self.closing {
                return Some(self.end().await);
            }
            // While output is streaming (a chunk went out moments ago) a full-size chunk
            // is allocated and filled below; otherwise one sized to what arrived, so an
            // idle terminal holds no chunk buffer while it waits.
            let streaming = self.last_sent.is_some_and(|t| t.elapsed() < STREAMING);
            let (mut buf, data) = match self.carry.take() {
                Some(d) => (new_chunk(CHUNK), d),
                None => match self.read.wait().await {
                    Some(ChannelMsg::Data { data })
                    | Some(ChannelMsg::ExtendedData { data, .. }) => {
                        (new_chunk(if streaming { CHUNK } else { data.len() }), data)
                    }
                    Some(other) => {
                        self.note(other);
                        continue;
                    }
                    None => {
                        self.closing = true;
                        continue;
                    }
                },
            };
            append(&mut buf, &data, &mut self.carry);
            // Coalesce into one chunk what russh holds now. While output is streaming,
            // also let russh's session task decrypt the packets already on the socket: a
            // few yields, never a timer, so bulk output travels in full-size frames while
            // a lone keystroke's echo goes at once.
            let mut yields = if streaming { COALESCE_YIELDS } else { 0 };
            while self.carry.is_none() && buf.len() < CHUNK + DATA_HEADER_LEN {
                match self.read.wait().now_or_never() {
                    Some(Some(ChannelMsg::Data { data }))
                    | Some(Some(ChannelMsg::ExtendedData { data, .. })) => {
                        append(&mut buf, &data, &mut self.carry)
                    }
                    Some(Some(other)) => {
                        self.note(other);
                        break;
                    }
                    Some(None) => {
                        self.closing = true;
                        break;
                    }
                    None if yields > 0 => {
                        yields -= 1;
                        tokio::task::yield_now().await;
                    }
                    None => break,
                }
            }
            self.last_sent = Some(Instant::now());
            return Some(SourceEvent::Data(buf));
        }
    }

    /// Records a message that is not output: the exit status or signal, or the close.
    fn note(&mut self, msg: ChannelMsg) {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => self.code = i32::try_from(exit_status).ok(),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                self.signal = Some(format!("SIG{signal_name:?}").to_uppercase())
            }
            ChannelMsg::Close => self.closing = true,
            _ => {}
        }
    }

    /// The shell is gone: close the connection now (not when the channel ends, which
    /// may be a grace period later) and say how it ended.
    async fn end(&mut self) -> SourceEvent {
        self.finished = true;
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "closed", "en")
            .await;
        if self.code.is_some() || self.signal.is_some() {
            SourceEvent::Exit {
                code: self.code,
                signal: self.signal.take(),
            }
        } else {
            SourceEvent::Failed {
                code: codes::REMOTE_CLOSED,
                message: match self.dropped.get() {
                    Some(why) => format!("the SSH connection dropped ({why})"),
                    None => "the SSH connection was closed by the remote side".into(),
                },
            }
        }
    }
}

/// Writes a shell's input (including what was typed while connecting) in order and whole,
/// until the channel stops it or goes away; then closes the connection. russh completes
/// a write once the remote's SSH window takes it, so a device that does not read holds
/// the client at its input window; a write is one `select!` branch, never awaited alone,
/// so a stop still gets through.
async fn tend_input(
    handle: Arc<client::Handle<Handler>>,
    write: russh::ChannelWriteHalf<client::Msg>,
    mut control: mpsc::Receiver<SourceCtl>,
    mut stop: oneshot::Receiver<()>,
    input: Arc<InputQueue>,
) {
    // The write in progress, with its length: russh may have sent part of it, so it is
    // kept across loop turns and only ever finished or abandoned with the shell.
    let mut in_flight: Option<(usize, WriteFuture<'_>)> = None;
    let mut writing = true;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ctl = control.recv() => match ctl {
                Some(SourceCtl::Resize { cols, rows }) => {
                    let _ = write.window_change(cols as u32, rows as u32, 0, 0).await;
                }
                None => break,
            },
            item = input.next_item(), if writing && in_flight.is_none() => match item {
                InputItem::Data(chunk) => {
                    in_flight = Some((chunk.len(), Box::pin(write.data_bytes(chunk.freeze()))));
                }
                InputItem::Resize { cols, rows } => {
                    if write.window_change(cols as u32, rows as u32, 0, 0).await.is_err() {
                        // As for a failed write below: input is dropped from now on.
                        writing = false;
                        input.close();
                    }
                }
            },
            r = async {
                match in_flight.as_mut() {
                    Some((_, w)) => w.as_mut().await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                let n = in_flight.take().map_or(0, |(n, _)| n);
                match r {
                    Ok(()) => input.chunk_written(n),
                    Err(_) => {
                        // The shell takes no more input: what comes is counted as
                        // consumed and dropped, so the client's window never jams.
                        input.consumed(n);
                        writing = false;
                        input.close();
                    }
                }
            }
        }
    }
    if let Some((n, _)) = in_flight.take() {
        input.consumed(n);
    }
    input.close();
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "closed", "en")
        .await;
}

/// russh's algorithm preferences with the ciphers reordered for this CPU. russh (like
/// OpenSSH) asks for chacha20-poly1305 first, which suits CPUs without AES instructions.
/// With them (x86-64 AES-NI and carry-less multiply, ARMv8 AES and PMULL), ring's
/// AES-GCM costs a fraction as much: on the `ssh` bulk path chacha20-poly1305 took
/// about a fifth of the gateway's CPU (`load-tests/RESULTS.md`). The same ciphers are
/// offered either way, so no server that connected before is refused now.
fn preferred_algorithms() -> russh::Preferred {
    russh::Preferred {
        cipher: std::borrow::Cow::Owned(cipher_order(cpu_has_fast_aes())),
        ..russh::Preferred::default()
    }
}

/// The cipher preference: aes256-gcm first when the CPU has AES instructions, else
/// russh's own order (chacha20-poly1305 first).
fn cipher_order(fast_aes: bool) -> Vec<russh::cipher::Name> {
    let mut order = russh::Preferred::default().cipher.into_owned();
    if fast_aes {
        order.retain(|c| *c != russh::cipher::AES_256_GCM);
        order.insert(0, russh::cipher::AES_256_GCM);
    }
    order
}

fn cpu_has_fast_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// One `data_bytes` write to a shell, boxed so it can wait across loop turns.
type WriteFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), russh::Error>> + Send + 'a>>;

/// An empty output chunk with room for its frame header and `payload` bytes (at most
/// [`CHUNK`]); appending more grows it up to that bound.
fn new_chunk(payload: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(DATA_HEADER_LEN + payload.min(CHUNK));
    buf.resize(DATA_HEADER_LEN, 0);
    buf
}

/// Appends `data` to a chunk being built, keeping what does not fit for the next one.
fn append(buf: &mut BytesMut, data: &[u8], carry: &mut Option<bytes::Bytes>) {
    let room = (CHUNK + DATA_HEADER_LEN).saturating_sub(buf.len());
    if data.len() > room {
        buf.extend_from_slice(&data[..room]);
        *carry = Some(bytes::Bytes::copy_from_slice(&data[room..]));
    } else {
        buf.extend_from_slice(data);
    }
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        OpenError::new(codes::CHANNEL_FAILED, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{answer_prompt, cipher_order, PromptAnswer};

    #[test]
    fn aes_gcm_comes_first_only_where_the_cpu_has_aes_and_the_offer_stays_the_same() {
        use russh::cipher::{AES_256_GCM, CHACHA20_POLY1305};
        let plain = cipher_order(false);
        assert_eq!(plain[0], CHACHA20_POLY1305);
        let fast = cipher_order(true);
        assert_eq!(&fast[..2], &[AES_256_GCM, CHACHA20_POLY1305]);
        let names = |v: &[russh::cipher::Name]| {
            let mut n: Vec<String> = v.iter().map(|c| c.as_ref().to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&plain), names(&fast), "only the order differs");
    }

    #[test]
    fn keyboard_interactive_answers_only_password_and_username_prompts() {
        // Hidden password prompts, as PAM, OpenSSH and network devices word them.
        for p in [
            "Password: ",
            "password:",
            "opsgate@10.0.0.1's password: ",
            "Enter password:",
        ] {
            assert_eq!(
                answer_prompt(p, false, false),
                Ok(PromptAnswer::Password),
                "{p}"
            );
        }
        // Echoed user-name prompts.
        for p in ["Username:", "login: ", "User Name:", "user:"] {
            assert_eq!(
                answer_prompt(p, true, false),
                Ok(PromptAnswer::Username),
                "{p}"
            );
            assert_eq!(
                answer_prompt(p, true, true),
                Ok(PromptAnswer::Username),
                "{p}"
            );
        }
        // The password once only: a second password prompt is a failure, named.
        let again = answer_prompt("Password: ", false, true).expect_err("second password");
        assert!(again.contains("Password"), "{again}");
        // Codes, tokens, password changes, and an echoed password prompt are refused.
        for (p, echo) in [
            ("Verification code: ", false),
            ("One-time password (OATH) for `admin': ", false),
            ("OTP: ", false),
            ("Enter PASSCODE:", false),
            ("Token: ", false),
            ("New password: ", false),
            ("Retype new password: ", false),
            ("(current) UNIX password: ", false),
            ("Password: ", true),
            ("Username:", false),
            ("Press enter to continue", true),
        ] {
            let e = answer_prompt(p, echo, false).expect_err(p);
            assert!(e.contains(p.trim()), "{e} should name {p:?}");
        }
    }
}
