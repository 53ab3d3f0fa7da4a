//! Prometheus counters, rendered as text at `GET /metrics`. Plain atomics: cheap on the
//! hot path, no registry crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// SSH connect latency histogram bucket bounds, in seconds.
const SSH_BUCKETS: [f64; 8] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Channel kinds, in the order of the per-kind gauges.
pub const CHANNEL_KINDS: [&str; 5] = ["ssh", "pty", "tool", "job", "stats"];

/// All gateway metrics.
#[derive(Default)]
pub struct Metrics {
    http_by_class: [AtomicU64; 5],
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    logins_throttled: AtomicU64,
    sockets_active: AtomicI64,
    sockets_total: AtomicU64,
    channels_active: [AtomicI64; 5],
    channels_total: [AtomicU64; 5],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    ssh_connect_buckets: [AtomicU64; 8],
    ssh_connect_count: AtomicU64,
    ssh_connect_sum_us: AtomicU64,
    /// Fleet jobs and their webhooks.
    pub jobs: JobMetrics,
}

fn kind_index(kind: &str) -> usize {
    CHANNEL_KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Metrics {
    pub fn http_response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.http_by_class[class].fetch_add(1, Relaxed);
    }
    pub fn login_ok(&self) {
        self.logins_ok.fetch_add(1, Relaxed);
    }
    pub fn login_failed(&self) {
        self.logins_failed.fetch_add(1, Relaxed);
    }
    pub fn login_throttled(&self) {
        self.logins_throttled.fetch_add(1, Relaxed);
    }
    pub fn socket_opened(&self) {
        self.sockets_active.fetch_add(1, Relaxed);
        self.sockets_total.fetch_add(1, Relaxed);
    }
    pub fn socket_closed(&self) {
        self.sockets_active.fetch_sub(1, Relaxed);
    }
    pub fn channel_opened(&self, kind: &str) {
        let i = kind_index(kind);
        self.channels_active[i].fetch_add(1, Relaxed);
        self.channels_total[i].fetch_add(1, Relaxed);
    }
    pub fn channel_closed(&self, kind: &str) {
        self.channels_active[kind_index(kind)].fetch_sub(1, Relaxed);
    }
    /// WebSockets open now.
    pub fn sockets(&self) -> i64 {
        self.sockets_active.load(Relaxed)
    }
    /// Channels open now, by kind.
    pub fn channels_by_kind(&self) -> [(&'static str, i64); 5] {
        let mut out = [("", 0); 5];
        for (i, k) in CHANNEL_KINDS.iter().enumerate() {
            out[i] = (k, self.channels_active[i].load(Relaxed));
        }
        out
    }
    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }
    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }
    pub fn ssh_connected(&self, took: std::time::Duration) {
        let s = took.as_secs_f64();
        for (i, b) in SSH_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.ssh_connect_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.ssh_connect_count.fetch_add(1, Relaxed);
        self.ssh_connect_sum_us
            .fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// Prometheus text exposition; `login_sessions` is read from the store by the caller.
    pub fn render(&self, login_sessions: usize) -> String {
        let mut o = String::with_capacity(4096);
        let _ = writeln!(o, "# TYPE opsgate_http_responses_total counter");
        for (i, c) in self.http_by_class.iter().enumerate() {
            let _ = writeln!(
                o,
                "opsgate_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        let _ = writeln!(o, "# TYPE opsgate_logins_total counter");
        let _ = writeln!(
            o,
            "opsgate_logins_total{{result=\"ok\"}} {}",
            self.logins_ok.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "opsgate_logins_total{{result=\"failed\"}} {}",
            self.logins_failed.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "opsgate_logins_total{{result=\"throttled\"}} {}",
            self.logins_throttled.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_login_sessions gauge");
        let _ = writeln!(o, "opsgate_login_sessions {login_sessions}");
        let _ = writeln!(o, "# TYPE opsgate_sockets gauge");
        let _ = writeln!(o, "opsgate_sockets {}", self.sockets_active.load(Relaxed));
        let _ = writeln!(o, "# TYPE opsgate_sockets_total counter");
        let _ = writeln!(
            o,
            "opsgate_sockets_total {}",
            self.sockets_total.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_channels gauge");
        for (i, k) in CHANNEL_KINDS.iter().enumerate() {
            let _ = writeln!(
                o,
                "opsgate_channels{{kind=\"{k}\"}} {}",
                self.channels_active[i].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# TYPE opsgate_channels_total counter");
        for (i, k) in CHANNEL_KINDS.iter().enumerate() {
            let _ = writeln!(
                o,
                "opsgate_channels_total{{kind=\"{k}\"}} {}",
                self.channels_total[i].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# TYPE opsgate_channel_bytes_total counter");
        let _ = writeln!(
            o,
            "opsgate_channel_bytes_total{{direction=\"in\"}} {}",
            self.bytes_in.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "opsgate_channel_bytes_total{{direction=\"out\"}} {}",
            self.bytes_out.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_ssh_connect_seconds histogram");
        for (i, b) in SSH_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "opsgate_ssh_connect_seconds_bucket{{le=\"{b}\"}} {}",
                self.ssh_connect_buckets[i].load(Relaxed)
            );
        }
        let count = self.ssh_connect_count.load(Relaxed);
        let _ = writeln!(
            o,
            "opsgate_ssh_connect_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "opsgate_ssh_connect_seconds_sum {}",
            self.ssh_connect_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "opsgate_ssh_connect_seconds_count {count}");
        self.jobs.render(&mut o);
        o
    }
}

/// Job states in the order of [`JobMetrics::finished`].
const JOB_END_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// Fleet job counters (`crate::jobs`): jobs by state, targets by outcome, retries,
/// webhook deliveries.
#[derive(Default)]
pub struct JobMetrics {
    /// Jobs being worked on now.
    pub running: AtomicI64,
    /// Jobs finished, by [`JOB_END_STATES`].
    finished: [AtomicU64; 3],
    /// Targets finished, by [`JOB_END_STATES`].
    targets: [AtomicU64; 3],
    /// Target attempts repeated after a connection-level failure.
    pub target_retries: AtomicU64,
    /// Jobs started by `POST /api/jobs/{id}/retry`.
    pub job_retries: AtomicU64,
    pub webhook_delivered: AtomicU64,
    pub webhook_failed: AtomicU64,
    /// Webhook events dropped because the queue was full.
    pub webhook_dropped: AtomicU64,
    /// Webhook HTTP attempts repeated after a retryable failure.
    pub webhook_retries: AtomicU64,
    /// Device output running targets hold now (their share of `[jobs] output_budget_mib`).
    pub output_held_bytes: AtomicI64,
    /// Times a target found the output budget spent and had to wait.
    pub output_waits: AtomicU64,
}

fn end_index(state: &str) -> Option<usize> {
    JOB_END_STATES.iter().position(|s| *s == state)
}

impl JobMetrics {
    /// A job ended in `state` (`succeeded`, `failed` or `cancelled`).
    pub fn job_finished(&self, state: &str) {
        if let Some(i) = end_index(state) {
            self.finished[i].fetch_add(1, Relaxed);
        }
    }
    /// A target ended in `state`.
    pub fn target_finished(&self, state: &str) {
        if let Some(i) = end_index(state) {
            self.targets[i].fetch_add(1, Relaxed);
        }
    }

    fn render(&self, o: &mut String) {
        let _ = writeln!(o, "# TYPE opsgate_jobs_running gauge");
        let _ = writeln!(o, "opsgate_jobs_running {}", self.running.load(Relaxed));
        let _ = writeln!(o, "# TYPE opsgate_jobs_finished_total counter");
        for (i, s) in JOB_END_STATES.iter().enumerate() {
            let _ = writeln!(
                o,
                "opsgate_jobs_finished_total{{state=\"{s}\"}} {}",
                self.finished[i].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# TYPE opsgate_job_targets_total counter");
        for (i, s) in JOB_END_STATES.iter().enumerate() {
            let _ = writeln!(
                o,
                "opsgate_job_targets_total{{state=\"{s}\"}} {}",
                self.targets[i].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# TYPE opsgate_job_target_retries_total counter");
        let _ = writeln!(
            o,
            "opsgate_job_target_retries_total {}",
            self.target_retries.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_job_retries_total counter");
        let _ = writeln!(
            o,
            "opsgate_job_retries_total {}",
            self.job_retries.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_webhook_deliveries_total counter");
        for (r, c) in [
            ("delivered", &self.webhook_delivered),
            ("failed", &self.webhook_failed),
            ("dropped", &self.webhook_dropped),
        ] {
            let _ = writeln!(
                o,
                "opsgate_webhook_deliveries_total{{result=\"{r}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(o, "# TYPE opsgate_webhook_retries_total counter");
        let _ = writeln!(
            o,
            "opsgate_webhook_retries_total {}",
            self.webhook_retries.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_job_output_held_bytes gauge");
        let _ = writeln!(
            o,
            "opsgate_job_output_held_bytes {}",
            self.output_held_bytes.load(Relaxed)
        );
        let _ = writeln!(o, "# TYPE opsgate_job_output_waits_total counter");
        let _ = writeln!(
            o,
            "opsgate_job_output_waits_total {}",
            self.output_waits.load(Relaxed)
        );
    }
}
