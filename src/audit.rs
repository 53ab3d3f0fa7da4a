//! The audit log: one append-only redb table of who did what, written in the same
//! transaction as the change it describes.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// What to record; `seq` and `at` are filled in.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
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
    };
    table.insert(seq, store::encode(&event)?.as_slice())?;
    Ok(())
}

/// Newest-first page of events with `seq < before`, optionally only one actor's.
pub fn list(
    tx: &ReadTransaction,
    actor: Option<&str>,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    let table = tx.open_table(AUDIT)?;
    let upper = before.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for row in table.range(..upper)?.rev() {
        let (_, v) = row?;
        let event: AuditEvent = store::decode(v.value())?;
        if actor.is_none_or(|a| a == event.actor) {
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
/// The queue is bounded; when it is full the event waits in a task rather than being
/// dropped (the audit log must not lose entries).
pub struct AuditSink {
    tx: tokio::sync::mpsc::Sender<Queued>,
}

/// What the audit queue carries.
enum Queued {
    Event(Entry),
    /// Answered once everything queued before it is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

const AUDIT_QUEUE: usize = 4096;
const AUDIT_BATCH: usize = 512;

impl AuditSink {
    /// Starts the writer task; call inside the Tokio runtime.
    pub fn start(store: store::Store) -> AuditSink {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Queued>(AUDIT_QUEUE);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = Vec::new();
                let mut flushes = Vec::new();
                let mut next = Some(first);
                while let Some(q) = next.take() {
                    match q {
                        Queued::Event(e) => batch.push(e),
                        Queued::Flush(done) => flushes.push(done),
                    }
                    if batch.len() < AUDIT_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                let n = batch.len();
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
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        AuditSink { tx }
    }

    /// Queues an event.
    pub fn record(&self, entry: Entry) {
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(e)) =
            self.tx.try_send(Queued::Event(entry))
        {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(e).await;
            });
        }
    }

    /// Waits until every event queued so far is committed (used at shutdown).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
