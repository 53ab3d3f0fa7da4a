//! The audit log: one append-only redb table of who did what, written in the same
//! transaction as the change it describes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::store::{self, StoreError, AUDIT, META};

/// Actor of a failed login for a name that is no user (never a valid username: it has a
/// space).
pub const UNKNOWN_USER: &str = "unknown user";

/// What the log keeps of a login name that is no user. People type passwords into the
/// username field, so never the text: a short hash, keyed with a random per-database
/// key (so it cannot be checked against a list of guesses without the database), that
/// still lets an admin see the same name tried again.
pub fn unknown_name_detail(tx: &WriteTransaction, typed: &str) -> Result<String, StoreError> {
    use sha2::{Digest, Sha256};
    const KEY: &str = "audit_name_key";
    let mut meta = tx.open_table(META)?;
    let existing = meta.get(KEY)?.map(|v| v.value().to_vec());
    let key = match existing {
        Some(k) => k,
        None => {
            let k = rand::random::<[u8; 32]>().to_vec();
            meta.insert(KEY, k.as_slice())?;
            k
        }
    };
    let digest = Sha256::new()
        .chain_update(&key)
        .chain_update(typed.as_bytes())
        .finalize();
    Ok(format!("name hash {}", hex::encode(&digest[..4])))
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: u64,
    /// Unix seconds.
    pub at: i64,
    /// Who acted (the username; for a failed login, the name that was tried if it is a
    /// user, else [`UNKNOWN_USER`]).
    pub actor: String,
    /// What happened, e.g. `login`, `login_failed`, `session.create`, `channel.open`.
    pub action: String,
    /// What it happened to (an id or a name), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The client address, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Extra human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The team whose workspace it happened in (its id); absent for a personal
    /// workspace and for what belongs to no workspace (logins, users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// What to record; `seq` and `at` are filled in.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
    /// A team id (see [`AuditEvent::workspace`]).
    pub workspace: Option<String>,
}

impl Entry {
    pub fn new(actor: &str, action: &'static str) -> Self {
        Entry {
            actor: actor.to_string(),
            action,
            ..Default::default()
        }
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }
    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
    /// The team whose workspace this is about, if any.
    pub fn workspace(mut self, team_id: Option<String>) -> Self {
        self.workspace = team_id;
        self
    }
}

/// Appends an event inside the caller's transaction.
pub fn record(tx: &WriteTransaction, entry: Entry) -> Result<(), StoreError> {
    let mut table = tx.open_table(AUDIT)?;
    let seq = match table.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    let event = AuditEvent {
        seq,
        at: store::now(),
        actor: entry.actor,
        action: entry.action.to_string(),
        target: entry.target,
        ip: entry.ip,
        detail: entry.detail,
        workspace: entry.workspace,
    };
    table.insert(seq, store::encode(&event)?.as_slice())?;
    Ok(())
}

/// Which events a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only events in this team's workspace (a team id).
    pub workspace: Option<String>,
}

impl Filter {
    fn matches(&self, e: &AuditEvent) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self
                .workspace
                .as_ref()
                .is_none_or(|w| e.workspace.as_ref() == Some(w))
    }
}

/// Newest-first page of events with `seq < before` that pass `filter`.
pub fn list(
    tx: &ReadTransaction,
    filter: &Filter,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    let table = tx.open_table(AUDIT)?;
    let upper = before.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for row in table.range(..upper)?.rev() {
        let (_, v) = row?;
        let event: AuditEvent = store::decode(v.value())?;
        if filter.matches(&event) {
            out.push(event);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Audit events from hot paths (channel open/close) are queued and written in batches,
/// so a thousand channels opening at once cost a few commits, not a thousand fsyncs.
/// The queue is bounded at [`AUDIT_QUEUE`] events. It only fills if redb stalls for a
/// long time while channels churn; then further events are dropped, counted and logged
/// as an error (never a task or an allocation per event), and the writer catches up.
#[derive(Clone)]
pub struct AuditSink {
    queue: Arc<AuditQueue>,
}

struct AuditQueue {
    items: Mutex<VecDeque<Queued>>,
    wake: Notify,
    dropped: AtomicU64,
}

/// What the audit queue carries.
enum Queued {
    Event(Entry),
    /// Answered once everything queued before it is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Events waiting for the writer at most.
pub const AUDIT_QUEUE: usize = 65_536;
const AUDIT_BATCH: usize = 512;

impl AuditQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AuditSink {
    /// Starts the writer task; call inside the Tokio runtime.
    pub fn start(store: store::Store) -> AuditSink {
        let queue = Arc::new(AuditQueue {
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        });
        let q = queue.clone();
        tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                let mut flushes = Vec::new();
                {
                    let mut items = q.lock();
                    while batch.len() < AUDIT_BATCH {
                        match items.pop_front() {
                            Some(Queued::Event(e)) => batch.push(e),
                            Some(Queued::Flush(done)) => {
                                flushes.push(done);
                                break;
                            }
                            None => break,
                        }
                    }
                }
                if batch.is_empty() && flushes.is_empty() {
                    q.wake.notified().await;
                    continue;
                }
                let n = batch.len();
                if n > 0 {
                    let r = store
                        .write(move |tx| -> Result<(), StoreError> {
                            for e in batch {
                                record(tx, e)?;
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::error!(error = %e, events = n, "audit write failed");
                    }
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        AuditSink { queue }
    }

    /// Queues an event; never blocks.
    pub fn record(&self, entry: Entry) {
        {
            let mut items = self.queue.lock();
            if items.len() >= AUDIT_QUEUE {
                drop(items);
                let n = self.queue.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(1000) {
                    tracing::error!(dropped = n, "audit queue full: events dropped");
                }
                return;
            }
            items.push_back(Queued::Event(entry));
        }
        self.queue.wake.notify_one();
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event queued so far is committed (used at shutdown).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue.lock().push_back(Queued::Flush(done));
        self.queue.wake.notify_one();
        let _ = wait.await;
    }
}
