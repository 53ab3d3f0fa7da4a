//! Webhooks: on a config change and on a failed job, a JSON event is POSTed to each URL
//! of `[jobs.webhooks] urls`.
//!
//! - Never blocking a job: events go into a bounded queue ([`WebhooksConfig::queue`])
//!   drained by one task. When the queue is full the event is dropped, counted
//!   (`opsgate_webhook_deliveries_total{result="dropped"}`) and logged: a dead receiver
//!   costs its events, never the job or the gateway's memory.
//! - Each delivery (one event to one URL) has a timeout, and is retried with
//!   exponential backoff and jitter up to `retries` more times on a connection error, a
//!   timeout, 429 or 5xx; other answers are final. At most `max_in_flight` deliveries
//!   run at once (a stalled receiver holds one slot, not the queue).
//! - Each delivery ends in one audit event, `webhook.delivered` or `webhook.failed`,
//!   in the event's workspace.
//! - With `secret` set, the body is signed: `X-Opsgate-Signature: sha256=<hex of
//!   HMAC-SHA256(secret, body)>`. The body carries `timestamp` and a unique
//!   `delivery` id so a receiver can reject replays.
//!
//! The URLs come from the admin's TOML only (no per-workspace API), so an operator
//! cannot point the gateway at an internal address (no SSRF surface); they are checked
//! at start (http/https, a host, no credentials in the URL) and redirects are not
//! followed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use crate::audit::{AuditSink, Entry};
use crate::metrics::Metrics;
use crate::workspace::team_of_key;

/// `[jobs.webhooks]`: where job events are POSTed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Receivers (http or https). Empty turns webhooks off.
    pub urls: Vec<String>,
    /// HMAC-SHA256 key for `X-Opsgate-Signature`; empty sends no signature.
    pub secret: String,
    /// One HTTP attempt's limit (connect, send, answer).
    pub timeout_ms: u64,
    /// Extra attempts after a retryable failure (connection, timeout, 429, 5xx).
    pub retries: u32,
    /// First retry delay; doubles per attempt (with jitter), at most 30 s.
    pub retry_base_ms: u64,
    /// Events waiting to be sent; when full, new events are dropped and counted.
    pub queue: usize,
    /// Deliveries in flight at once over all receivers.
    pub max_in_flight: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: String::new(),
            timeout_ms: 5000,
            retries: 3,
            retry_base_ms: 1000,
            queue: 1000,
            max_in_flight: 8,
        }
    }
}

impl WebhooksConfig {
    /// Checks the URLs (called when the config is loaded).
    pub fn validate(&self) -> Result<(), String> {
        for u in &self.urls {
            check_url(u)?;
        }
        Ok(())
    }
}

/// An acceptable webhook URL: http or https, with a host, without user info.
pub fn check_url(u: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("webhook URL {u:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "webhook URL {u:?}: only http and https are allowed"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("webhook URL {u:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "webhook URL {u:?}: no credentials in the URL (use `secret` to sign instead)"
        ));
    }
    Ok(url)
}

/// A failed target in a `job.failed` event.
#[derive(Debug, Clone, Serialize)]
pub struct FailedTarget {
    pub session_id: String,
    pub state: super::model::TargetState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::model::TargetError>,
}

/// Failed targets listed in one `job.failed` event at most (the count is always whole).
pub const MAX_FAILED_LISTED: usize = 100;

/// What happened (the `event` field says which).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event")]
pub enum Event {
    /// A backup stored a new version of a device's config that differs from the
    /// previous one (a device's first backup is not a change and sends nothing).
    #[serde(rename = "config.changed")]
    ConfigChanged {
        job_id: String,
        session_id: String,
        config_id: String,
        previous_config_id: String,
        sha256: String,
    },
    /// A job finished with failed or cancelled targets.
    #[serde(rename = "job.failed")]
    JobFailed {
        job_id: String,
        #[serde(rename = "type")]
        kind: super::model::JobType,
        state: super::model::JobState,
        summary: super::model::Summary,
        failed: Vec<FailedTarget>,
    },
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::ConfigChanged { .. } => "config.changed",
            Event::JobFailed { .. } => "job.failed",
        }
    }
}

/// The JSON body POSTed to a receiver.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    /// Unique per event (the same for every URL and retry of it).
    pub delivery: String,
    /// Unix seconds when the event happened.
    pub timestamp: i64,
    /// The team id whose workspace it happened in; absent for a personal workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The user whose job it was.
    pub owner: String,
    #[serde(flatten)]
    pub event: Event,
}

struct Queued {
    workspace: String,
    payload: Payload,
}

/// The sender side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Webhooks {
    tx: Option<mpsc::Sender<Queued>>,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    /// Starts the delivery task when URLs are configured; call inside the runtime.
    pub fn start(cfg: &WebhooksConfig, audit: AuditSink, metrics: Arc<Metrics>) -> Webhooks {
        let urls: Vec<reqwest::Url> = cfg.urls.iter().filter_map(|u| check_url(u).ok()).collect();
        if urls.is_empty() {
            return Webhooks { tx: None, metrics };
        }
        let client = match client(cfg) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks are off: the HTTP client did not build");
                return Webhooks { tx: None, metrics };
            }
        };
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let d = Deliverer {
            client,
            urls: Arc::new(urls),
            cfg: cfg.clone(),
            audit,
            metrics: metrics.clone(),
            slots: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
        };
        tokio::spawn(d.run(rx));
        Webhooks {
            tx: Some(tx),
            metrics,
        }
    }

    /// Queues an event for every URL; drops it (counted, logged) if the queue is full.
    pub fn send(&self, workspace: &str, owner: &str, event: Event) {
        let Some(tx) = &self.tx else { return };
        let q = Queued {
            workspace: workspace.to_string(),
            payload: Payload {
                delivery: crate::store::new_id(),
                timestamp: crate::store::now(),
                team_id: team_of_key(workspace).map(str::to_string),
                owner: owner.to_string(),
                event,
            },
        };
        if let Err(e) = tx.try_send(q) {
            let n = self.metrics.jobs.webhook_dropped.fetch_add(1, Relaxed) + 1;
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "delivery task gone",
            };
            if n == 1 || n.is_multiple_of(100) {
                tracing::warn!(dropped = n, why, "webhook event dropped");
            }
        }
    }
}

/// A client that uses the gateway's ring crypto (not a second TLS provider), the
/// system's roots, one attempt's timeout, and no redirects.
fn client(cfg: &WebhooksConfig) -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(true)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
        .connect_timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("opsgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

struct Deliverer {
    client: reqwest::Client,
    urls: Arc<Vec<reqwest::Url>>,
    cfg: WebhooksConfig,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
}

impl Deliverer {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let me = Arc::new(self);
        while let Some(q) = rx.recv().await {
            let body = match serde_json::to_vec(&q.payload) {
                Ok(b) => bytes::Bytes::from(b),
                Err(e) => {
                    tracing::error!(error = %e, "webhook event did not serialise");
                    continue;
                }
            };
            let q = Arc::new(q);
            for url in me.urls.iter() {
                // Waiting for a slot here is the back-pressure: the queue fills, then
                // `send` drops.
                let Ok(permit) = me.slots.clone().acquire_owned().await else {
                    return;
                };
                let (me2, q2, url2, body2) = (me.clone(), q.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    me2.deliver(&q2, url2, body2).await;
                    drop(permit);
                });
            }
        }
    }

    async fn deliver(&self, q: &Queued, url: reqwest::Url, body: bytes::Bytes) {
        let event = q.payload.event.name();
        let signature = (!self.cfg.secret.is_empty()).then(|| signature(&self.cfg.secret, &body));
        let max_attempts = self.cfg.retries.saturating_add(1);
        let mut attempt = 0u32;
        let outcome = loop {
            attempt += 1;
            let mut req = self
                .client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Opsgate-Event", event)
                .header("X-Opsgate-Delivery", q.payload.delivery.as_str())
                .body(body.clone());
            if let Some(s) = &signature {
                req = req.header("X-Opsgate-Signature", s.as_str());
            }
            let (retryable, result) = match req.send().await {
                Ok(r) if r.status().is_success() => break Ok(r.status().as_u16()),
                Ok(r) => {
                    let s = r.status();
                    (
                        s.is_server_error() || s.as_u16() == 429,
                        format!("HTTP {}", s.as_u16()),
                    )
                }
                Err(e) if e.is_timeout() => {
                    (true, format!("no answer within {} ms", self.cfg.timeout_ms))
                }
                Err(e) => (true, format!("request failed: {e}")),
            };
            if !retryable || attempt >= max_attempts {
                break Err(result);
            }
            self.metrics.jobs.webhook_retries.fetch_add(1, Relaxed);
            tokio::time::sleep(backoff(self.cfg.retry_base_ms, attempt)).await;
        };
        let team = team_of_key(&q.workspace).map(str::to_string);
        // The URL's path and query may hold a receiver's token: the audit shows the
        // origin only.
        let origin = url.origin().ascii_serialization();
        match outcome {
            Ok(status) => {
                self.metrics.jobs.webhook_delivered.fetch_add(1, Relaxed);
                self.audit.record(
                    Entry::new(&q.payload.owner, "webhook.delivered")
                        .target(origin)
                        .detail(format!(
                            "{event} {} (HTTP {status}, attempt {attempt})",
                            q.payload.delivery
                        ))
                        .workspace(team),
                );
            }
            Err(why) => {
                self.metrics.jobs.webhook_failed.fetch_add(1, Relaxed);
                tracing::warn!(url = %origin, event, attempts = attempt, why = %why, "webhook delivery failed");
                self.audit.record(
                    Entry::new(&q.payload.owner, "webhook.failed")
                        .target(origin)
                        .detail(format!(
                            "{event} {} after {attempt} attempts: {why}",
                            q.payload.delivery
                        ))
                        .workspace(team),
                );
            }
        }
    }
}

fn backoff(base_ms: u64, attempt: u32) -> Duration {
    let base = base_ms.max(1);
    let capped = base
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(30_000);
    Duration::from_millis(rand::rng().random_range(capped / 2..=capped.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/x?token=1").is_ok());
        assert!(check_url("http://127.0.0.1:9000/").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "not a url",
            "gopher://x/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let metrics = Arc::new(Metrics::default());
        // A queue of 2 that nobody drains (a receiver stalled for good).
        let (tx, _rx) = mpsc::channel(2);
        let hooks = Webhooks {
            tx: Some(tx),
            metrics: metrics.clone(),
        };
        for i in 0..5 {
            hooks.send(
                "alice",
                "alice",
                Event::ConfigChanged {
                    job_id: format!("j{i}"),
                    session_id: "s".into(),
                    config_id: "c".into(),
                    previous_config_id: "p".into(),
                    sha256: "x".into(),
                },
            );
        }
        assert_eq!(metrics.jobs.webhook_dropped.load(Relaxed), 3);
        // Without URLs nothing is queued and nothing counted.
        let off = Webhooks {
            tx: None,
            metrics: metrics.clone(),
        };
        off.send(
            "alice",
            "alice",
            Event::ConfigChanged {
                job_id: "j".into(),
                session_id: "s".into(),
                config_id: "c".into(),
                previous_config_id: "p".into(),
                sha256: "x".into(),
            },
        );
        assert_eq!(metrics.jobs.webhook_dropped.load(Relaxed), 3);
    }

    #[test]
    fn payload_shape() {
        let p = Payload {
            delivery: "d1".into(),
            timestamp: 7,
            team_id: None,
            owner: "alice".into(),
            event: Event::ConfigChanged {
                job_id: "j".into(),
                session_id: "s".into(),
                config_id: "c2".into(),
                previous_config_id: "c1".into(),
                sha256: "ab".into(),
            },
        };
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"delivery":"d1","timestamp":7,"owner":"alice",
                "event":"config.changed","job_id":"j","session_id":"s","config_id":"c2",
                "previous_config_id":"c1","sha256":"ab"})
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(100, 1) <= Duration::from_millis(100));
        assert!(backoff(100, 3) >= Duration::from_millis(200));
        assert!(backoff(100, 30) <= Duration::from_millis(30_000));
    }
}
