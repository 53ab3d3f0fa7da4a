//! Server status: a background task checks every server (every saved session of type
//! `linux`, in every workspace) each `[apps] poll_interval_secs`, at most
//! `poll_concurrency` at once, each within `poll_timeout_secs`, with one SSH exec of
//! [`remote::STATUS_COMMAND`]. An unreachable server turns `offline` with the error
//! code; since every check has its own timeout and the round waits on none in
//! particular, a blackholed server costs one permit for one timeout, never the round.
//!
//! Who connects: checks use the workspace's credential and trusted host keys (an
//! unknown key is `hostkey_unknown`, never trusted silently), acting as the workspace's
//! owner for a personal workspace and as its first member with the operator or admin
//! role for a team's (none: `unknown` with `no_operator`).
//!
//! Connection reuse: an authenticated connection is kept after a successful check
//! (at most `max_cached_connections` over all servers; beyond, checks connect and
//! disconnect each time) and used by the next check of the same server if nothing it
//! was made from changed. Its fingerprint holds the session's host, port, username and
//! credential id, a digest of the credential's sealed secret (new on every update), the
//! trusted host key's fingerprint, and who acts with which role: editing where the
//! session points or its credential, deleting the known host, or a membership change
//! makes the next check drop it and connect afresh. A connection the peer closed, or one whose exec fails,
//! is dropped too (and the check retried once on a fresh connection).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::StreamExt;
use opsgate_protocol::codes;
use russh::ChannelMsg;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::remote::{self, Report};
use super::AppsError;
use crate::app::App;
use crate::auth::Role;
use crate::inventory::{self, Credential, DeviceType, SavedSession};
use crate::source::OpenError;
use crate::ssh::DeviceConn;
use crate::store::{self, CREDENTIALS, MEMBERS, SAVED_SESSIONS};
use crate::workspace::{self, team_of_key, Scope};

/// The most output a status check may print (it prints three short lines).
const MAX_STATUS_OUTPUT: usize = 64 * 1024;

/// (workspace key, saved session id).
type ServerKey = (String, String);

/// Whether a server answered its last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    Online,
    Offline,
    /// Not checked yet (or could not be checked: see `error`).
    Unknown,
}

/// Why a check failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckError {
    pub code: String,
    pub message: String,
}

/// A server's last known status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerStatus {
    pub status: Reachability,
    pub running_containers: Option<u64>,
    /// Seconds since the server booted.
    pub uptime: Option<u64>,
    /// 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
    /// Unix seconds of the last check.
    pub last_checked: Option<i64>,
    pub error: Option<CheckError>,
}

impl Default for ServerStatus {
    fn default() -> Self {
        ServerStatus {
            status: Reachability::Unknown,
            running_containers: None,
            uptime: None,
            load: None,
            last_checked: None,
            error: None,
        }
    }
}

struct Cached {
    conn: Arc<DeviceConn>,
    fingerprint: String,
}

/// The apps module's live state: servers' last statuses, the poller's cached
/// connections and concurrency limit, and the limit on running start/stop commands.
pub struct Poller {
    statuses: DashMap<ServerKey, ServerStatus>,
    conns: Mutex<HashMap<ServerKey, Cached>>,
    permits: Arc<Semaphore>,
    /// When each server was last checked on request (the rate bound).
    asked: DashMap<ServerKey, Instant>,
    max_cached: usize,
    /// Connections opened by checks (a reused one does not count): for the benchmark
    /// and to see reuse work.
    connects: std::sync::atomic::AtomicU64,
    /// Start/stop commands running at once (`max_running_commands`): `control` takes a
    /// permit before it connects.
    pub(super) commands: Arc<Semaphore>,
    /// Finished poll rounds, and the figures of the last one.
    rounds: std::sync::atomic::AtomicU64,
    last_round: Mutex<Option<RoundReport>>,
}

impl Poller {
    /// An empty poller for `[apps]`.
    pub fn new(cfg: &crate::config::AppsConfig) -> Poller {
        Poller {
            statuses: DashMap::new(),
            conns: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(cfg.poll_concurrency.max(1))),
            asked: DashMap::new(),
            max_cached: cfg.max_cached_connections,
            connects: std::sync::atomic::AtomicU64::new(0),
            commands: Arc::new(Semaphore::new(cfg.max_running_commands.max(1))),
            rounds: std::sync::atomic::AtomicU64::new(0),
            last_round: Mutex::new(None),
        }
    }

    /// Prometheus lines for `GET /metrics`: poll rounds, the last round's wall time and
    /// counts, SSH connections opened by checks, connections cached now.
    pub fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self
            .last_round
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cached = self.conns.lock().unwrap_or_else(|e| e.into_inner()).len();
        let (secs, servers, online) = last
            .map(|r| (r.elapsed.as_secs_f64(), r.servers, r.online))
            .unwrap_or_default();
        format!(
            "# TYPE opsgate_apps_poll_rounds_total counter\nopsgate_apps_poll_rounds_total {}\n\
             # TYPE opsgate_apps_poll_round_seconds gauge\nopsgate_apps_poll_round_seconds {secs:.6}\n\
             # TYPE opsgate_apps_poll_round_servers gauge\nopsgate_apps_poll_round_servers {servers}\n\
             # TYPE opsgate_apps_poll_round_online gauge\nopsgate_apps_poll_round_online {online}\n\
             # TYPE opsgate_apps_poll_connects_total counter\nopsgate_apps_poll_connects_total {}\n\
             # TYPE opsgate_apps_poll_cached_connections gauge\nopsgate_apps_poll_cached_connections {cached}\n",
            self.rounds.load(Relaxed),
            self.connects.load(Relaxed),
        )
    }

    /// The last status of a server (`unknown` if never checked).
    pub fn status(&self, key: &str, id: &str) -> ServerStatus {
        self.statuses
            .get(&(key.to_string(), id.to_string()))
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// SSH connections checks have opened so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn take_cached(&self, k: &ServerKey, fingerprint: &str) -> Option<Arc<DeviceConn>> {
        let mut map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.remove(k)?;
        (c.fingerprint == fingerprint && !c.conn.is_closed()).then_some(c.conn)
    }

    fn keep(&self, k: ServerKey, conn: Arc<DeviceConn>, fingerprint: String) {
        let mut map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        // Full: this one is dropped (disconnects) rather than evicting another.
        if map.len() < self.max_cached {
            map.insert(k, Cached { conn, fingerprint });
        }
    }

    fn forget_missing(&self, present: &HashSet<ServerKey>) {
        self.statuses.retain(|k, _| present.contains(k));
        self.asked.retain(|k, _| present.contains(k));
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| present.contains(k));
    }
}

/// Who a check acts as in a workspace, and with which role.
fn actor_of(tx: &redb::ReadTransaction, key: &str) -> Result<Option<(Scope, Role)>, AppsError> {
    match team_of_key(key) {
        None => Ok(crate::auth::get_user(tx, key)?.map(|u| (Scope::personal(key), u.role))),
        Some(team) => {
            let members = workspace::members_of(&tx.open_table(MEMBERS)?, team)?;
            Ok(members
                .into_iter()
                .find(|m| m.role >= Role::Operator)
                .map(|m| (Scope::team(team, &m.username), m.role)))
        }
    }
}

/// One server to check, with everything its connection is made from.
struct Work {
    key: ServerKey,
    session: SavedSession,
    /// `None`: nobody may connect for this workspace.
    actor: Option<(Scope, Role)>,
    fingerprint: String,
}

fn fingerprint_of(
    tx: &redb::ReadTransaction,
    key: &str,
    s: &SavedSession,
    actor: &Option<(Scope, Role)>,
) -> Result<String, AppsError> {
    // The sealed secret changes with every credential update (a fresh nonce each
    // time), even two in the same second; its digest stands for the credential.
    let cred_seal = match &s.credential_id {
        Some(cid) => store::get_owned::<Credential, _>(&tx.open_table(CREDENTIALS)?, key, cid)?
            .map(|c| {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(c.sealed.as_bytes()))
            }),
        None => None,
    };
    let hostkey = inventory::find_known_host(tx, key, &s.host, s.port)?.map(|k| k.fingerprint);
    Ok(format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        s.host,
        s.port,
        s.username,
        s.credential_id,
        cred_seal,
        hostkey,
        actor.as_ref().map(|(sc, r)| (&sc.actor, r.as_str())),
    ))
}

/// Every server of every workspace (or of workspace `only`), ready to check.
fn servers(tx: &redb::ReadTransaction, only: Option<&str>) -> Result<Vec<Work>, AppsError> {
    let mut out = Vec::new();
    let mut actors: HashMap<String, Option<(Scope, Role)>> = HashMap::new();
    let table = tx.open_table(SAVED_SESSIONS)?;
    let rows: Vec<(String, SavedSession)> = match only {
        Some(key) => store::list_owned(&table, key)?
            .into_iter()
            .map(|(_, s)| (key.to_string(), s))
            .collect(),
        None => {
            let mut v = Vec::new();
            for row in redb::ReadableTable::iter(&table)? {
                let (k, val) = row?;
                v.push((k.value().0.to_string(), store::decode(val.value())?));
            }
            v
        }
    };
    for (key, s) in rows {
        if s.device_type != DeviceType::Linux {
            continue;
        }
        let actor = match actors.get(&key) {
            Some(a) => a.clone(),
            None => {
                let a = actor_of(tx, &key)?;
                actors.insert(key.clone(), a.clone());
                a
            }
        };
        let fingerprint = fingerprint_of(tx, &key, &s, &actor)?;
        out.push(Work {
            key: (key, s.id.clone()),
            session: s,
            actor,
            fingerprint,
        });
    }
    Ok(out)
}

/// The servers of workspace `key` (saved sessions of type `linux`), by name.
pub fn list_servers(tx: &redb::ReadTransaction, key: &str) -> Result<Vec<SavedSession>, AppsError> {
    let mut v: Vec<SavedSession> = store::list_owned(&tx.open_table(SAVED_SESSIONS)?, key)?
        .into_iter()
        .map(|(_, s): (String, SavedSession)| s)
        .filter(|s| s.device_type == DeviceType::Linux)
        .collect();
    v.sort_by_key(|s| s.display_name.to_lowercase());
    Ok(v)
}

/// The poll loop (see the module comment).
pub async fn run(app: Arc<App>) {
    let every = Duration::from_secs(app.cfg.apps.poll_interval_secs.max(1));
    loop {
        match poll_round(&app).await {
            Ok(r) => tracing::debug!(
                servers = r.servers,
                online = r.online,
                ms = r.elapsed.as_millis() as u64,
                "poll round"
            ),
            Err(e) => tracing::warn!(error = %e, "poll round failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// What a poll round did.
#[derive(Debug, Clone)]
pub struct RoundReport {
    pub servers: usize,
    pub online: usize,
    pub elapsed: Duration,
}

/// Checks every server once, `poll_concurrency` at a time.
pub async fn poll_round(app: &Arc<App>) -> Result<RoundReport, AppsError> {
    let began = Instant::now();
    let work = app.store.read(|tx| servers(tx, None)).await?;
    let present: HashSet<ServerKey> = work.iter().map(|w| w.key.clone()).collect();
    let n = work.len();
    let conc = app.cfg.apps.poll_concurrency.max(1);
    let online = futures_util::stream::iter(work)
        .map(|w| check(app, w))
        .buffer_unordered(conc)
        .filter(|s| std::future::ready(s.status == Reachability::Online))
        .count()
        .await;
    app.apps.forget_missing(&present);
    let report = RoundReport {
        servers: n,
        online,
        elapsed: began.elapsed(),
    };
    *app.apps
        .last_round
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
    app.apps
        .rounds
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

/// Checks server `id` of workspace `key` now, unless it was checked on request less than
/// `check_min_interval_secs` ago (then the last result). `None`: no such server.
pub async fn check_now(
    app: &Arc<App>,
    key: &str,
    id: &str,
) -> Result<Option<ServerStatus>, AppsError> {
    let k = key.to_string();
    let work = app.store.read(move |tx| servers(tx, Some(&k))).await?;
    let Some(w) = work.into_iter().find(|w| w.session.id == id) else {
        return Ok(None);
    };
    let min = Duration::from_secs(app.cfg.apps.check_min_interval_secs);
    {
        let mut recent = false;
        app.apps
            .asked
            .entry(w.key.clone())
            .and_modify(|t| {
                if t.elapsed() < min {
                    recent = true;
                } else {
                    *t = Instant::now();
                }
            })
            .or_insert_with(Instant::now);
        if recent {
            return Ok(Some(app.apps.status(key, id)));
        }
    }
    Ok(Some(check(app, w).await))
}

/// Checks one server within the timeout and records the result.
async fn check(app: &Arc<App>, w: Work) -> ServerStatus {
    let poller = &app.apps;
    let limit = Duration::from_secs(app.cfg.apps.poll_timeout_secs.max(1));
    let status = match &w.actor {
        None => ServerStatus {
            last_checked: Some(store::now()),
            error: Some(CheckError {
                code: "no_operator".into(),
                message: "nobody in this workspace may connect (no operator or admin member)"
                    .into(),
            }),
            ..ServerStatus::default()
        },
        Some((scope, _)) => {
            let _permit = poller.permits.clone().acquire_owned().await.ok();
            let r = tokio::time::timeout(limit, probe(app, &w, scope)).await;
            let now = Some(store::now());
            match r {
                Ok(Ok(rep)) => ServerStatus {
                    status: Reachability::Online,
                    running_containers: rep.running_containers,
                    uptime: rep.uptime_secs,
                    load: rep.load,
                    last_checked: now,
                    error: None,
                },
                Ok(Err(e)) => offline(now, e.code, e.message),
                Err(_) => offline(
                    now,
                    codes::CONNECT_TIMEOUT,
                    format!("no answer within {} s", limit.as_secs()),
                ),
            }
        }
    };
    poller.statuses.insert(w.key.clone(), status.clone());
    status
}

fn offline(now: Option<i64>, code: &str, message: String) -> ServerStatus {
    ServerStatus {
        status: Reachability::Offline,
        last_checked: now,
        error: Some(CheckError {
            code: code.to_string(),
            message,
        }),
        ..ServerStatus::default()
    }
}

/// Runs the status command, on the cached connection if it is still good, else (or if
/// that fails) on a fresh one, which is then kept.
async fn probe(app: &Arc<App>, w: &Work, scope: &Scope) -> Result<Report, OpenError> {
    let poller = &app.apps;
    if let Some(conn) = poller.take_cached(&w.key, &w.fingerprint) {
        if let Ok(r) = exec_status(&conn).await {
            poller.keep(w.key.clone(), conn, w.fingerprint.clone());
            return Ok(r);
        }
        // Stale (the server restarted, a NAT forgot us): dropped; try afresh.
    }
    let conn =
        Arc::new(DeviceConn::connect(app, scope, &w.session, crate::ssh::Access::Actor).await?);
    poller
        .connects
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let r = exec_status(&conn).await?;
    poller.keep(w.key.clone(), conn, w.fingerprint.clone());
    Ok(r)
}

async fn exec_status(conn: &DeviceConn) -> Result<Report, OpenError> {
    let mut ch = conn
        .exec(remote::STATUS_COMMAND)
        .await
        .map_err(|e| OpenError::new(codes::CHANNEL_FAILED, e.to_string()))?;
    let mut out = Vec::new();
    loop {
        match ch.wait().await {
            Some(ChannelMsg::Data { data }) => {
                if out.len() + data.len() > MAX_STATUS_OUTPUT {
                    let _ = ch.close().await;
                    return Err(OpenError::new(
                        codes::CHANNEL_FAILED,
                        "the status command printed more than 64 KiB",
                    ));
                }
                out.extend_from_slice(&data);
            }
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    Ok(remote::parse_report(&String::from_utf8_lossy(&out)))
}
