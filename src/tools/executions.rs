//! Executions: every tool run, started on a channel or by `POST /api/tools/{name}/execute`,
//! is recorded in its workspace. While it runs, one collector task drains the run's
//! source into a [`Live`] record (output bounded by `tools.output_bytes`); channels follow
//! that record (stored output first, then live), so a reload or a dropped socket loses
//! nothing of a run. When it ends the record is written to redb, and retention (count
//! and age per workspace) is applied.

use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::{Prepared, State};
use crate::audit::{self, AuditSink};
use crate::source::{Source, SourceEvent, Stopper, MAX_SOURCE_CHUNK};
use crate::store::{self, Store, StoreError, EXECUTIONS, EXECUTION_INDEX};

/// A stored execution.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    pub id: String,
    pub tool: String,
    pub params: Value,
    /// Who started it.
    pub user: String,
    /// `null` for a personal workspace, else the team id.
    pub team: Option<String>,
    pub state: String,
    pub created_at: i64,
    /// Milliseconds since the epoch, for ordering runs started in the same second.
    #[serde(default)]
    pub created_ms: i64,
    pub ended_at: Option<i64>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub result: Option<Value>,
    /// Output bytes the run produced (all of them, stored or not).
    pub output_bytes: u64,
    /// More output was produced than `tools.output_bytes` keeps.
    pub truncated: bool,
    /// The first `tools.output_bytes` of output (lossy UTF-8).
    #[serde(default)]
    pub output: String,
}

impl Execution {
    /// The record without its output (for lists).
    pub fn summary(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("output");
        }
        v
    }
}

/// A run in flight.
pub struct Live {
    pub key: String,
    inner: Mutex<LiveInner>,
    changed: watch::Sender<u64>,
}

struct LiveInner {
    rec: Execution,
    output: Vec<u8>,
    /// The latest `run` progress event.
    progress: Option<Map<String, Value>>,
    ended: Option<(Option<i32>, Option<String>)>,
    stopper: Option<Stopper>,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, LiveInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// The record as it stands, output included.
    pub fn snapshot(&self) -> Execution {
        let g = self.lock();
        let mut rec = g.rec.clone();
        rec.output = String::from_utf8_lossy(&g.output).into_owned();
        rec
    }

    /// The record as it stands, without its output (for lists).
    fn record(&self) -> Execution {
        self.lock().rec.clone()
    }

    /// Cancels the run (kills its process group); false if it already ended.
    pub fn cancel(&self) -> bool {
        match self.lock().stopper.take() {
            Some(s) => {
                s.stop();
                true
            }
            None => false,
        }
    }
}

/// Retention and output bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    pub output_bytes: usize,
    pub keep_count: usize,
    pub keep_days: u64,
}

/// Runs in flight, by id; finished ones are in redb.
pub struct Executions {
    live: DashMap<String, Arc<Live>>,
    store: Store,
    audit: AuditSink,
    limits: Limits,
}

impl Executions {
    pub fn new(store: Store, audit: AuditSink, limits: Limits) -> Executions {
        Executions {
            live: DashMap::new(),
            store,
            audit,
            limits,
        }
    }

    /// Runs in flight over the gateway.
    pub fn running(&self) -> usize {
        self.live.len()
    }

    /// Whether a run of workspace `key` is in flight (a team's deletion waits for it).
    pub fn running_in(&self, key: &str) -> bool {
        self.live.iter().any(|l| l.key == key)
    }

    pub fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.live.get(id).map(|l| l.clone())
    }

    /// Starts a prepared run in workspace `key` (team id `team`); returns its record.
    pub fn start(
        self: &Arc<Self>,
        run: Prepared,
        user: &str,
        ip: Option<String>,
        key: String,
        team: Option<String>,
    ) -> Arc<Live> {
        let rec = Execution {
            id: store::new_id(),
            tool: run.tool.to_string(),
            params: run.params.clone(),
            user: user.to_string(),
            team,
            state: "running".into(),
            created_at: store::now(),
            created_ms: now_ms(),
            ended_at: None,
            exit_code: None,
            message: None,
            result: None,
            output_bytes: 0,
            truncated: false,
            output: String::new(),
        };
        let source = super::start(run, |_, _| {});
        let (changed, _) = watch::channel(0);
        let live = Arc::new(Live {
            key,
            inner: Mutex::new(LiveInner {
                rec,
                output: Vec::new(),
                progress: None,
                ended: None,
                stopper: Some(source.stopper),
            }),
            changed,
        });
        let id = live.lock().rec.id.clone();
        self.live.insert(id, live.clone());
        tokio::spawn(self.clone().collect(live.clone(), source.events, ip));
        live
    }

    async fn collect(
        self: Arc<Self>,
        live: Arc<Live>,
        mut events: crate::source::SourceEvents,
        ip: Option<String>,
    ) {
        let first = live.snapshot();
        let _ = self.save(&live.key, &first).await;
        while let Some(ev) = events.next().await {
            let mut g = live.lock();
            match ev {
                SourceEvent::Data(b) => {
                    let payload = &b[opsgate_protocol::DATA_HEADER_LEN..];
                    g.rec.output_bytes += payload.len() as u64;
                    let room = self.limits.output_bytes.saturating_sub(g.output.len());
                    if payload.len() > room {
                        g.rec.truncated = true;
                    }
                    let take = payload.len().min(room);
                    g.output.extend_from_slice(&payload[..take]);
                }
                SourceEvent::Progress { mut event, .. } => {
                    event.insert("execution_id".into(), json!(g.rec.id));
                    if let Some(s) = event.get("state").and_then(Value::as_str) {
                        g.rec.state = s.to_string();
                    }
                    g.rec.result = event.get("result").cloned().or(g.rec.result.take());
                    g.rec.message = event
                        .get("message")
                        .and_then(Value::as_str)
                        .map(String::from)
                        .or(g.rec.message.take());
                    g.progress = Some(event);
                }
                SourceEvent::Exit { code, signal } => {
                    g.rec.exit_code = code;
                    g.ended = Some((code, signal));
                }
                SourceEvent::Failed { code, message } => {
                    g.rec.state = State::Failed.word().into();
                    g.rec.message = Some(format!("{code}: {message}"));
                    g.ended = Some((None, None));
                }
            }
            drop(g);
            live.bump();
        }
        let rec = {
            let mut g = live.lock();
            g.stopper = None;
            if g.ended.is_none() {
                g.ended = Some((None, None));
            }
            g.rec.ended_at = Some(store::now());
            let mut rec = g.rec.clone();
            rec.output = String::from_utf8_lossy(&g.output).into_owned();
            rec
        };
        self.audit.record(
            audit::Entry::new(&rec.user, "tool.run")
                .target(rec.id.clone())
                .ip(ip)
                .detail(format!(
                    "{} {}: {} (exit {:?})",
                    rec.tool, rec.params, rec.state, rec.exit_code
                ))
                .workspace(rec.team.clone()),
        );
        if let Err(e) = self.save(&live.key, &rec).await {
            tracing::warn!(error = %e, "cannot store tool execution");
        }
        self.live.remove(&rec.id);
        live.bump();
    }

    async fn save(&self, key: &str, rec: &Execution) -> Result<(), StoreError> {
        let (key, rec, limits) = (key.to_string(), rec.clone(), self.limits.clone());
        self.store
            .write(move |tx| {
                let mut t = tx.open_table(EXECUTIONS)?;
                let mut index = tx.open_table(EXECUTION_INDEX)?;
                let rec = put(&mut t, &mut index, &key, rec)?;
                if rec.ended_at.is_some() {
                    prune(&mut t, &mut index, &key, &rec.id, &limits)?;
                }
                Ok::<_, StoreError>(())
            })
            .await
    }

    /// One execution of workspace `key`: live if running, else stored.
    pub async fn get(&self, key: &str, id: &str) -> Result<Option<Execution>, StoreError> {
        if let Some(l) = self.live(id) {
            if l.key == key {
                return Ok(Some(l.snapshot()));
            }
        }
        let (key, id) = (key.to_string(), id.to_string());
        self.store
            .read(move |tx| {
                let t = tx.open_table(EXECUTIONS)?;
                store::get_owned::<Execution, _>(&t, &key, &id)
            })
            .await
    }

    /// The executions of workspace `key`, newest first, without output.
    pub async fn list(&self, key: &str) -> Result<Vec<Execution>, StoreError> {
        // Live runs first, then the store: a run that ends in between has its final
        // record stored by then (it is written before the run leaves the live map).
        // The other order could read a run's "running" row and then miss it in the
        // live map, listing a finished run as running.
        let mut live: std::collections::HashMap<String, Execution> = self
            .live
            .iter()
            .filter(|l| l.value().key == key)
            .map(|l| (l.key().clone(), l.value().record()))
            .collect();
        let k = key.to_string();
        let mut all: Vec<Execution> = self
            .store
            .read(move |tx| {
                let t = tx.open_table(EXECUTION_INDEX)?;
                store::list_owned::<Execution, _>(&t, &k)
            })
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        for e in all.iter_mut() {
            if let Some(now) = live.remove(&e.id) {
                *e = now;
            }
        }
        // Runs whose first record is not stored yet.
        all.extend(live.into_values());
        for e in all.iter_mut() {
            e.output.clear();
        }
        all.sort_by_key(|e| std::cmp::Reverse((e.created_ms, e.id.clone())));
        Ok(all)
    }
}

/// Stores run `rec` of workspace `key`: its row, and its index row, the same record
/// without its output (up to 1 MiB: emptied in place, not copied). Returns that record.
fn put(
    t: &mut store::OwnedTable<'_>,
    index: &mut store::OwnedTable<'_>,
    key: &str,
    mut rec: Execution,
) -> Result<Execution, StoreError> {
    let k = (key, rec.id.as_str());
    t.insert(k, store::encode(&rec)?.as_slice())?;
    rec.output = String::new();
    index.insert(k, store::encode(&rec)?.as_slice())?;
    Ok(rec)
}

/// Keeps the newest `keep_count` finished executions of a workspace, none older than
/// `keep_days`. Reads the index: deciding reads no output.
fn prune(
    t: &mut store::OwnedTable<'_>,
    index: &mut store::OwnedTable<'_>,
    key: &str,
    just_saved: &str,
    limits: &Limits,
) -> Result<(), StoreError> {
    let rows: Vec<(String, Execution)> = store::list_owned(index, key)?;
    let mut done: Vec<&(String, Execution)> =
        rows.iter().filter(|(_, e)| e.ended_at.is_some()).collect();
    // The run just saved is the newest whatever the clocks say.
    done.sort_by_key(|e| std::cmp::Reverse((e.0 == just_saved, e.1.created_ms)));
    let oldest = store::now() - (limits.keep_days as i64) * 86_400;
    for (i, (id, e)) in done.iter().enumerate() {
        if i >= limits.keep_count || e.created_at < oldest {
            t.remove((key, id.as_str()))?;
            index.remove((key, id.as_str()))?;
        }
    }
    Ok(())
}

/// A channel following `live` (from its first byte) or a finished record.
pub fn follow(live: Option<Arc<Live>>, done: Option<Execution>, cancel_on_close: bool) -> Source {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ctl_tx, _) = tokio::sync::mpsc::channel(1);
    if let Some(l) = live.clone().filter(|_| cancel_on_close) {
        let weak = Arc::downgrade(&l);
        tokio::spawn(async move {
            let _ = stop_rx.await;
            if let Some(l) = weak.upgrade() {
                l.cancel();
            }
        });
    }
    struct F {
        live: Option<Arc<Live>>,
        rx: Option<watch::Receiver<u64>>,
        done: Option<Execution>,
        offset: usize,
        sent_progress: Option<Map<String, Value>>,
        finished: bool,
    }
    let rx = live.as_ref().map(|l| l.changed.subscribe());
    let f = F {
        live,
        rx,
        done,
        offset: 0,
        sent_progress: None,
        finished: false,
    };
    let events = futures_util::stream::unfold(f, |mut f| async move {
        loop {
            if f.finished {
                return None;
            }
            if let Some(l) = f.live.clone() {
                {
                    let g = l.lock();
                    if g.output.len() > f.offset {
                        let end = g.output.len().min(f.offset + MAX_SOURCE_CHUNK);
                        let ev = super::run::data(&g.output[f.offset..end]);
                        f.offset = end;
                        return Some((ev, f));
                    }
                    if g.progress.is_some() && g.progress != f.sent_progress {
                        f.sent_progress = g.progress.clone();
                        let event = g.progress.clone().unwrap_or_default();
                        return Some((
                            SourceEvent::Progress {
                                key: "run".into(),
                                event,
                            },
                            f,
                        ));
                    }
                    if let Some((code, signal)) = g.ended.clone() {
                        f.finished = true;
                        return Some((SourceEvent::Exit { code, signal }, f));
                    }
                }
                let gone = match f.rx.as_mut() {
                    Some(rx) => rx.changed().await.is_err(),
                    None => true,
                };
                if gone {
                    // The collector is gone without an end (cannot happen in order;
                    // kept as a bound): end the channel.
                    f.finished = true;
                    return Some((
                        SourceEvent::Exit {
                            code: None,
                            signal: None,
                        },
                        f,
                    ));
                }
                continue;
            }
            // A finished, stored execution: output, the final state, the exit.
            let rec = f.done.clone()?;
            let out = rec.output.as_bytes();
            if out.len() > f.offset {
                let end = out.len().min(f.offset + MAX_SOURCE_CHUNK);
                let ev = super::run::data(&out[f.offset..end]);
                f.offset = end;
                return Some((ev, f));
            }
            if f.sent_progress.is_none() {
                let mut ev = Map::new();
                ev.insert("tool".into(), json!(rec.tool));
                ev.insert("state".into(), json!(rec.state));
                ev.insert("execution_id".into(), json!(rec.id));
                if let Some(r) = &rec.result {
                    ev.insert("result".into(), r.clone());
                }
                if let Some(c) = rec.exit_code {
                    ev.insert("exit_code".into(), json!(c));
                }
                f.sent_progress = Some(ev.clone());
                return Some((
                    SourceEvent::Progress {
                        key: "run".into(),
                        event: ev,
                    },
                    f,
                ));
            }
            f.finished = true;
            return Some((
                SourceEvent::Exit {
                    code: rec.exit_code,
                    signal: None,
                },
                f,
            ));
        }
    });
    Source {
        events: Box::pin(events),
        control: ctl_tx,
        stopper: Stopper::Signal(stop_tx),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema-3 store's executions are indexed when it opens; the listing then reads
    /// the index only: with every full row made unreadable it still answers, without
    /// output, while `get` (which reads the row) fails.
    #[tokio::test]
    async fn listing_reads_no_output_and_older_stores_are_indexed() {
        let dir = tempfile::tempdir().expect("dir");
        let run = |id: &str, ms: i64| Execution {
            id: id.into(),
            tool: "ping".into(),
            params: Value::Null,
            user: "alice".into(),
            team: None,
            state: "succeeded".into(),
            created_at: ms / 1000,
            created_ms: ms,
            ended_at: Some(ms / 1000),
            exit_code: Some(0),
            message: None,
            result: None,
            output_bytes: 4,
            truncated: false,
            output: "pong".into(),
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .write_blocking(|tx| -> Result<(), StoreError> {
                    tx.open_table(store::META)?
                        .insert("schema_version", 3u32.to_be_bytes().as_slice())?;
                    let mut t = tx.open_table(EXECUTIONS)?;
                    for r in [run("e1", 1_000), run("e2", 2_000)] {
                        t.insert(("alice", r.id.as_str()), store::encode(&r)?.as_slice())?;
                    }
                    Ok(())
                })
                .expect("write");
        }
        let store = Store::open(dir.path()).expect("migrates");
        let full = |id: &str| {
            store
                .read_blocking(|tx| {
                    store::get_owned::<Execution, _>(&tx.open_table(EXECUTIONS)?, "alice", id)
                })
                .expect("read")
                .expect("row")
        };
        assert_eq!(full("e1").output, "pong", "the row keeps its output");
        store
            .write_blocking(|tx| -> Result<(), StoreError> {
                let mut t = tx.open_table(EXECUTIONS)?;
                for id in ["e1", "e2"] {
                    t.insert(("alice", id), b"not json".as_slice())?;
                }
                Ok(())
            })
            .expect("spoil");
        let runs = Executions::new(
            store.clone(),
            crate::audit::AuditSink::start(store.clone()),
            Limits {
                output_bytes: 1024,
                keep_count: 10,
                keep_days: 30,
            },
        );
        let list = runs.list("alice").await.expect("list");
        let ids: Vec<&str> = list.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e2", "e1"]);
        assert!(list
            .iter()
            .all(|e| e.output.is_empty() && e.output_bytes == 4));
        assert!(runs.get("alice", "e1").await.is_err());
    }
}

/// `cargo test --release --lib execution_listing_cost -- --ignored --nocapture`: what
/// listing (and so pruning) a workspace's kept executions costs (load-tests/RESULTS.md).
#[cfg(test)]
mod bench {
    use super::*;

    #[test]
    #[ignore]
    fn execution_listing_cost_with_1000_kept_runs() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        let output = "64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.042 ms\n".repeat(4500);
        for chunk in 0..10 {
            store
                .write_blocking(|tx| -> Result<(), StoreError> {
                    let mut t = tx.open_table(EXECUTIONS)?;
                    let mut index = tx.open_table(EXECUTION_INDEX)?;
                    for i in 0..100 {
                        let rec = Execution {
                            id: format!("run{chunk:02}{i:03}"),
                            tool: "ping".into(),
                            params: serde_json::json!({"host":"127.0.0.1","count":4500}),
                            user: "alice".into(),
                            team: None,
                            state: "succeeded".into(),
                            created_at: 1,
                            created_ms: 1000,
                            ended_at: Some(2),
                            exit_code: Some(0),
                            message: None,
                            result: Some(serde_json::json!({"sent":4500,"received":4500})),
                            output_bytes: output.len() as u64,
                            truncated: false,
                            output: output.clone(),
                        };
                        put(&mut t, &mut index, "alice", rec)?;
                    }
                    Ok(())
                })
                .expect("fill");
        }
        for (name, table) in [("rows with output", EXECUTIONS), ("index", EXECUTION_INDEX)] {
            let t = std::time::Instant::now();
            let n = store
                .read_blocking(|tx| {
                    store::list_owned::<Execution, _>(&tx.open_table(table)?, "alice")
                })
                .expect("list")
                .len();
            println!(
                "{n} runs of {} KiB output: listing the {name}: {:?}",
                output.len() / 1024,
                t.elapsed()
            );
        }
    }
}
