//! The audit log: one append-only redb table of who did what, written in the same
//! transaction as the change it describes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};
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

/// Where the database keeps `[audit] max_events` (8 bytes, little-endian). Kept with
/// the data rather than passed along: events are recorded from inside some forty write
/// transactions all over the gateway, which know nothing of the configuration.
const MAX_EVENTS_KEY: &str = "audit_max_events";

/// What the log keeps when nothing was configured.
const DEFAULT_MAX_EVENTS: u64 = 1_000_000;

/// Old events removed at most per event recorded: a log over its limit (the limit was
/// lowered) shrinks back over the following writes, none of which pays for all of it.
const PRUNE_PER_EVENT: usize = 64;

/// Sets how many events the log keeps (at start, from `[audit] max_events`).
pub fn set_max_events(tx: &WriteTransaction, max: u64) -> Result<(), StoreError> {
    tx.open_table(META)?
        .insert(MAX_EVENTS_KEY, max.max(1).to_le_bytes().as_slice())?;
    Ok(())
}

fn max_events(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let meta = tx.open_table(META)?;
    let stored = meta.get(MAX_EVENTS_KEY)?;
    Ok(stored
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map_or(DEFAULT_MAX_EVENTS, u64::from_le_bytes))
}

/// Appends an event inside the caller's transaction, and removes the oldest ones beyond
/// `[audit] max_events` (a table's length is known to redb without a scan).
pub fn record(tx: &WriteTransaction, entry: Entry) -> Result<(), StoreError> {
    let max = max_events(tx)?;
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
    for _ in 0..PRUNE_PER_EVENT {
        if table.len()? <= max {
            break;
        }
        table.pop_first()?;
    }
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

/// Events one listing decodes at most. A filter that matches little (a viewer's own
/// events in a busy log) would otherwise walk the whole log in one request; past this
/// many, the page ends early and its `next_before` says where the next one goes on.
pub const SCAN_PER_PAGE: usize = 20_000;

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// Where the next page starts (`before`), if older events remain to be looked at.
    pub next_before: Option<u64>,
}

/// Newest-first page of at most `limit` events with `seq < before` that pass `filter`,
/// looking at no more than `scan` events.
pub fn list(
    tx: &ReadTransaction,
    filter: &Filter,
    before: Option<u64>,
    limit: usize,
    scan: usize,
) -> Result<Page, StoreError> {
    let table = tx.open_table(AUDIT)?;
    let upper = before.unwrap_or(u64::MAX);
    let mut events = Vec::new();
    let mut looked = 0;
    let mut last_seen = None;
    let mut rows = table.range(..upper)?.rev();
    while events.len() < limit && looked < scan {
        let Some(row) = rows.next() else {
            return Ok(Page {
                events,
                next_before: None,
            });
        };
        let (k, v) = row?;
        looked += 1;
        last_seen = Some(k.value());
        let event: AuditEvent = store::decode(v.value())?;
        if filter.matches(&event) {
            events.push(event);
        }
    }
    // Stopped by the page size or the scan bound: a next page if anything is older.
    let next_before = last_seen.filter(|_| rows.next().is_some());
    Ok(Page {
        events,
        next_before,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str) -> Entry {
        Entry::new(actor, "test.event")
    }

    #[test]
    fn a_sparse_filter_pages_in_bounded_scans_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store::Store::open(dir.path()).expect("open");
        store
            .write_blocking(|tx| -> Result<(), StoreError> {
                set_max_events(tx, 50)?;
                for i in 0..100 {
                    record(tx, event(if i % 10 == 0 { "ann" } else { "bob" }))?;
                }
                Ok(())
            })
            .expect("write");
        let all = store
            .read_blocking(|tx| list(tx, &Filter::default(), None, 1000, 1000))
            .expect("list");
        let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (51..=100).rev().collect::<Vec<u64>>());
        assert_eq!(all.next_before, None);

        // ann has 5 of the 50 kept; a scan of 7 rows per page finds them over 8 pages,
        // some of them empty, and the last page says so.
        let only_ann = Filter {
            actor: Some("ann".into()),
            workspace: None,
        };
        let (mut found, mut before, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = store
                .read_blocking(|tx| list(tx, &only_ann, before, 100, 7))
                .expect("list");
            pages += 1;
            found.extend(page.events.iter().map(|e| e.seq));
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
            assert!(pages < 20, "paging does not end");
        }
        assert_eq!(found, [91, 81, 71, 61, 51]);
        assert_eq!(pages, 8);

        // The page size ends a page too, with the next one pointing past it.
        let first = store
            .read_blocking(|tx| list(tx, &Filter::default(), None, 3, 1000))
            .expect("list");
        assert_eq!(first.events.len(), 3);
        assert_eq!(first.next_before, Some(98));
    }
}
