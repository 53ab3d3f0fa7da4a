//! System metrics: `GET /api/system/stats` and the `stats` channel.
//!
//! One sampler serves everyone: a single task refreshes sysinfo every
//! [`SAMPLE_EVERY`] and publishes the figures in a `watch`; it runs only while at least
//! one `stats` channel watches (the last one leaving stops it). Each channel just reads
//! the latest sample at its own interval, so 1,000 watchers cost one sampler and a
//! cheap clone of an `Arc` each per tick.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::app::App;
use crate::source::{Source, SourceEvent, Stopper};

/// The sampler's period, and the shortest interval a channel may ask for.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

struct Probe {
    sys: sysinfo::System,
    disks: Option<sysinfo::Disks>,
    nets: Option<sysinfo::Networks>,
    last: Instant,
}

/// The shared sampler.
pub struct Sampler {
    probe: Mutex<Option<Probe>>,
    latest: watch::Sender<Arc<Map<String, Value>>>,
    watchers: AtomicUsize,
    running: AtomicBool,
    app: Weak<App>,
}

/// A watcher's registration; the sampler stops when the last one is dropped.
struct Watch(Arc<Sampler>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Sampler {
    pub fn new(app: Weak<App>) -> Sampler {
        Sampler {
            probe: Mutex::new(None),
            latest: watch::channel(Arc::new(Map::new())).0,
            watchers: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            app,
        }
    }

    /// One sample now (also what the sampler task calls).
    pub fn sample(&self) -> Map<String, Value> {
        let mut g = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            let Ok(sys) = sysinfo::System::new() else {
                return Map::new();
            };
            *g = Some(Probe {
                sys,
                disks: sysinfo::Disks::new_with_refreshed_list().ok(),
                nets: sysinfo::Networks::new_with_refreshed_list().ok(),
                last: Instant::now(),
            });
        }
        let Some(p) = g.as_mut() else {
            return Map::new();
        };
        let secs = p.last.elapsed().as_secs_f64().max(0.001);
        p.last = Instant::now();
        p.sys.refresh_cpu_usage();
        p.sys.refresh_memory();
        if let Some(d) = p.disks.as_mut() {
            d.refresh(true);
        }
        if let Some(n) = p.nets.as_mut() {
            n.refresh(true);
        }
        let load = sysinfo::System::load_average().ok();
        let mut m = Map::new();
        m.insert("kind".into(), json!("system"));
        m.insert("at_ms".into(), json!(now_ms()));
        m.insert(
            "cpu".into(),
            json!({
                "total_pct": p.sys.global_cpu_usage(),
                "per_core_pct": p.sys.cpus().iter().map(|c| c.usage()).collect::<Vec<_>>(),
            }),
        );
        m.insert(
            "load".into(),
            json!(load.map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen}))),
        );
        m.insert(
            "memory".into(),
            json!({"total": p.sys.total_memory(), "used": p.sys.used_memory(),
                "swap_total": p.sys.total_swap(), "swap_used": p.sys.used_swap()}),
        );
        let disks: Vec<Value> = p
            .disks
            .as_ref()
            .map(|d| {
                d.iter()
                    .map(|d| {
                        json!({"mount": d.mount_point().display().to_string(),
                            "total": d.total_space(),
                            "used": d.total_space().saturating_sub(d.available_space())})
                    })
                    .collect()
            })
            .unwrap_or_default();
        m.insert("disks".into(), json!(disks));
        let nets: Vec<Value> = p
            .nets
            .as_ref()
            .map(|n| {
                let mut v: Vec<Value> = n
                    .iter()
                    .map(|(name, d)| {
                        json!({"interface": name.to_string_lossy(),
                            "rx_bytes_per_sec": (d.received() as f64 / secs).round(),
                            "tx_bytes_per_sec": (d.transmitted() as f64 / secs).round()})
                    })
                    .collect();
                v.sort_by(|a, b| a["interface"].as_str().cmp(&b["interface"].as_str()));
                v
            })
            .unwrap_or_default();
        m.insert("network".into(), json!(nets));
        drop(g);
        m.insert("uptime_secs".into(), json!(sysinfo::System::uptime().ok()));
        m.insert("processes".into(), json!(process_count()));
        m.insert("gateway".into(), self.gateway());
        m
    }

    fn gateway(&self) -> Value {
        let app = self.app.upgrade();
        let rss = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * 4096);
        match app {
            Some(app) => {
                let channels: Map<String, Value> = app
                    .metrics
                    .channels_by_kind()
                    .iter()
                    .map(|(k, n)| (k.to_string(), json!(n)))
                    .collect();
                json!({"rss_bytes": rss, "sockets": app.metrics.sockets(),
                    "channels": channels, "tool_runs": app.tools.in_flight(),
                    "stats_watchers": self.watchers.load(Ordering::Acquire)})
            }
            None => json!({ "rss_bytes": rss }),
        }
    }

    /// Registers a watcher, starting the sampler task if none runs.
    fn watch(self: &Arc<Self>) -> (Watch, watch::Receiver<Arc<Map<String, Value>>>) {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        let rx = self.latest.subscribe();
        if self
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    if me.watchers.load(Ordering::Acquire) == 0 {
                        me.running.store(false, Ordering::Release);
                        // A watcher that came after the check saw `running` and started
                        // nothing: carry on for it if nobody else took over.
                        if me.watchers.load(Ordering::Acquire) > 0
                            && me
                                .running
                                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                                .is_ok()
                        {
                            continue;
                        }
                        break;
                    }
                    let s = me.sample();
                    me.latest.send_replace(Arc::new(s));
                }
            });
        }
        (Watch(self.clone()), rx)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn process_count() -> usize {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

/// A `stats` channel: the latest shared sample as a `progress` event (key `stats`)
/// every `interval_ms` (at least [`SAMPLE_EVERY`]).
pub fn channel(sampler: &Arc<Sampler>, interval_ms: u64) -> Source {
    let every = Duration::from_millis(interval_ms).max(SAMPLE_EVERY);
    let every_ms = every.as_millis() as u64;
    let (guard, rx) = sampler.watch();
    let (stop_tx, _) = tokio::sync::oneshot::channel();
    let (ctl_tx, _) = tokio::sync::mpsc::channel(1);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let events = futures_util::stream::unfold(
        (guard, rx, tick, 0i64),
        move |(guard, mut rx, mut tick, mut last)| async move {
            loop {
                tick.tick().await;
                let s = rx.borrow_and_update().clone();
                let at = s.get("at_ms").and_then(Value::as_i64).unwrap_or(0);
                if at == 0 || at == last {
                    // No new sample yet (the sampler just started).
                    if rx.changed().await.is_err() {
                        return None;
                    }
                    continue;
                }
                last = at;
                let mut event = (*s).clone();
                event.insert("interval_ms".into(), json!(every_ms));
                return Some((
                    SourceEvent::Progress {
                        key: "stats".into(),
                        event,
                    },
                    (guard, rx, tick, last),
                ));
            }
        },
    );
    Source {
        events: Box::pin(events),
        control: ctl_tx,
        stopper: Stopper::Signal(stop_tx),
    }
}

/// `GET /api/system/stats`: the sampler's latest figures if fresh, else a sample now.
#[utoipa::path(get, path = "/api/system/stats", tag = "system",
    responses((status = 200, description = "CPU, memory, disks, network, uptime and the gateway's own figures", body = crate::http::SystemStats)))]
pub async fn system_stats(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    _user: crate::auth::CurrentUser,
) -> axum::Json<Value> {
    let latest = app.stats.latest.borrow().clone();
    let fresh = latest
        .get("at_ms")
        .and_then(Value::as_i64)
        .is_some_and(|at| now_ms() - at < 1000);
    if fresh {
        return axum::Json(Value::Object((*latest).clone()));
    }
    let s = app.stats.clone();
    let m = tokio::task::spawn_blocking(move || s.sample())
        .await
        .unwrap_or_default();
    axum::Json(Value::Object(m))
}
