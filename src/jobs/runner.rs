//! The worker pool. Each running job has one owner task that holds the job record,
//! persists every change in one redb transaction, and publishes progress; targets run
//! in worker tasks that report back through a bounded queue. A global semaphore
//! (`[jobs] max_concurrency`) bounds connections over all jobs; a job's `concurrency`
//! bounds its own.
//!
//! Persistence and restart: a target is marked `running` (and written) before its
//! worker starts. At start, unfinished jobs continue with their queued targets;
//! targets that were running when the process died are run again for
//! `config_backup` (a backup is idempotent, and an unchanged config makes no new
//! version) and fail with `interrupted` for `command` jobs (a command may not be
//! safe to repeat). Targets already done are never run again.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use opsgate_protocol::codes;
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use super::device::{self, DriveError, OutputHold, Shell};
use super::model::{self, CommandOutput, Job, JobState, JobType, Target, TargetError, TargetState};
use super::webhooks::{self, Webhooks};
use super::{configs, JobError};
use crate::app::App;
use crate::audit::AuditSink;
use crate::config::JobsConfig;
use crate::inventory;
use crate::metrics::Metrics;
use crate::source::OpenError;
use crate::ssh::DeviceConn;
use crate::store;
use crate::workspace::{team_of_key, Scope};

/// Progress events kept for a lagging watcher before it resynchronises from the job.
const PROGRESS_BUFFER: usize = 1024;
/// Worker reports waiting for the job's owner task.
const UPDATE_QUEUE: usize = 64;

/// Error code of a target that was running when the gateway stopped (command jobs).
pub const INTERRUPTED: &str = "interrupted";

/// A running job as others see it.
#[derive(Clone)]
pub(super) struct LiveJob {
    pub(super) events: broadcast::Sender<(String, Map<String, Value>)>,
    pub(super) cancel: watch::Sender<bool>,
    pub(super) snapshot: Arc<Mutex<Job>>,
}

impl LiveJob {
    /// Registers `job` as live: its `job` channels stream it and a cancel request
    /// reaches the returned receiver.
    pub(super) fn register(app: &Arc<App>, job: &Job) -> (LiveJob, watch::Receiver<bool>) {
        let (events, _) = broadcast::channel(PROGRESS_BUFFER);
        let (cancel, cancel_rx) = watch::channel(job.cancel_requested);
        let live = LiveJob {
            events,
            cancel,
            snapshot: Arc::new(Mutex::new(job.clone())),
        };
        app.jobs.live.insert(job.id.clone(), live.clone());
        (live, cancel_rx)
    }
}

/// The jobs registry: running jobs by id, the global concurrency limit, and the
/// webhook sender.
pub struct Jobs {
    global: Arc<Semaphore>,
    /// Memory for running targets' output (`[jobs] output_budget_mib`).
    output_budget: device::OutputBudget,
    /// Held from a submission's room check until its job is registered as live, so two
    /// submissions cannot both take the last room (`[jobs] max_live_jobs`).
    pub(crate) submit_gate: tokio::sync::Mutex<()>,
    /// Config diffs and searches at once (each reads up to all config text of a
    /// workspace, or seconds of CPU); others wait their turn.
    heavy_reads: Arc<Semaphore>,
    pub(super) live: DashMap<String, LiveJob>,
    /// Job events for `[jobs.webhooks]` receivers.
    pub webhooks: Webhooks,
    metrics: Arc<Metrics>,
}

impl Jobs {
    /// Call inside the Tokio runtime (the webhook delivery task starts here).
    pub fn new(cfg: &JobsConfig, audit: AuditSink, metrics: Arc<Metrics>) -> Jobs {
        Jobs {
            global: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            output_budget: device::OutputBudget::new(cfg.output_budget_mib, metrics.clone()),
            submit_gate: tokio::sync::Mutex::new(()),
            heavy_reads: Arc::new(Semaphore::new(2)),
            live: DashMap::new(),
            webhooks: Webhooks::start(&cfg.webhooks, audit, metrics.clone()),
            metrics,
        }
    }

    /// Whether a job of `workspace` is being worked on now.
    pub fn running_in(&self, workspace: &str) -> bool {
        self.live_load(workspace).0 > 0
    }

    /// How many jobs of `workspace` are live here, and how many targets they name.
    pub fn live_load(&self, workspace: &str) -> (usize, usize) {
        let mut load = (0, 0);
        for l in self.live.iter() {
            let j = l.snapshot.lock().unwrap_or_else(|e| e.into_inner());
            if j.workspace == workspace {
                load.0 += 1;
                load.1 += j.targets.len();
            }
        }
        load
    }

    /// A turn for a config diff or search (see `heavy_reads`), to be moved into the
    /// blocking work itself: a client that goes away drops its request, not the work
    /// already running, which must keep holding the turn.
    pub(super) async fn heavy_read(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.heavy_reads.clone().acquire_owned().await.ok()
    }

    /// Whether job `id` is live here.
    pub fn is_live(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    /// The current state of a running job (fresher than the database by a write).
    pub fn snapshot(&self, id: &str) -> Option<Job> {
        self.live
            .get(id)
            .map(|l| l.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Asks a running job to cancel; false if it is not running here.
    pub fn cancel(&self, id: &str) -> bool {
        match self.live.get(id) {
            Some(l) => {
                let _ = l.cancel.send(true);
                true
            }
            None => false,
        }
    }
}

/// Starts a stored job.
pub fn spawn(app: &Arc<App>, job: Job) {
    let (live, cancel_rx) = LiveJob::register(app, &job);
    let app = app.clone();
    let span = tracing::info_span!("job", id = %job.id);
    tokio::spawn(tracing::Instrument::instrument(
        run_job(app, job, live, cancel_rx),
        span,
    ));
}

/// Continues every unfinished job after a restart (see the module comment).
pub async fn resume_all(app: &Arc<App>) -> Result<usize, JobError> {
    let mut jobs = app.store.read(model::unfinished).await?;
    for job in &mut jobs {
        if matches!(
            job.kind,
            JobType::NetboxImport | JobType::AppStart | JobType::AppStop
        ) {
            // Its work lived in the task that died (another module's): an import is all
            // or nothing, so nothing of it was applied; an app's command is not repeated
            // blindly (the apps module marks the app failed). The job ends failed.
            interrupt_external(job);
        }
        for t in &mut job.targets {
            if matches!(t.state, TargetState::Running | TargetState::Retrying) {
                match job.kind {
                    JobType::ConfigBackup => t.state = TargetState::Queued,
                    // An app's start or stop is not repeated blindly either: the
                    // apps module marks the app failed with the same reason.
                    JobType::Command
                    | JobType::NetboxImport
                    | JobType::AppStart
                    | JobType::AppStop => {
                        t.state = TargetState::Failed;
                        t.error = Some(TargetError {
                            code: INTERRUPTED.into(),
                            message:
                                "the gateway stopped while this command ran; it is not run again"
                                    .into(),
                        });
                    }
                }
            }
        }
        persist(app, job).await;
        if matches!(job.kind, JobType::Command | JobType::ConfigBackup) {
            // The rows hold the outputs; the owner task keeps none (see `run_job`).
            for t in &mut job.targets {
                t.output = None;
            }
        }
    }
    let n = jobs.len();
    for job in jobs {
        tracing::info!(job = %job.id, "resuming job");
        spawn(app, job);
    }
    Ok(n)
}

/// What a worker reports.
enum Update {
    Running {
        idx: usize,
        attempt: u32,
    },
    Retrying {
        idx: usize,
        attempt: u32,
        error: TargetError,
        retry_in: Duration,
    },
    Done {
        idx: usize,
        state: TargetState,
        error: Option<TargetError>,
        output: Option<Vec<CommandOutput>>,
        config: Option<(String, bool)>,
        duration_ms: u64,
        /// The output budget `output` takes until it is stored.
        hold: Option<OutputHold>,
    },
}

pub(super) fn target_event(job: &Job, idx: usize) -> (String, Map<String, Value>) {
    let t = &job.targets[idx];
    let mut m = Map::new();
    m.insert("event".into(), json!("target"));
    m.insert("job_id".into(), json!(job.id));
    m.insert("session_id".into(), json!(t.session_id));
    m.insert("state".into(), json!(t.state));
    m.insert("attempts".into(), json!(t.attempts));
    if let Some(e) = &t.error {
        m.insert("error".into(), json!(e));
    }
    if let Some(d) = t.duration_ms {
        m.insert("duration_ms".into(), json!(d));
    }
    if let Some(c) = t.changed {
        m.insert("changed".into(), json!(c));
    }
    if let Some(c) = &t.config_id {
        m.insert("config_id".into(), json!(c));
    }
    (t.session_id.clone(), m)
}

pub(super) fn job_event(job: &Job) -> (String, Map<String, Value>) {
    let mut m = Map::new();
    m.insert("event".into(), json!("job"));
    m.insert("job_id".into(), json!(job.id));
    m.insert("state".into(), json!(job.state));
    m.insert("summary".into(), json!(job.summary()));
    ("job".to_string(), m)
}

async fn persist(app: &Arc<App>, job: &Job) {
    let j = job.clone();
    if let Err(e) = app
        .store
        .write(move |tx| -> Result<(), JobError> { model::put(tx, &j) })
        .await
    {
        tracing::error!(error = %e, "writing the job failed");
    }
}

/// Writes one target's row: what a target's change costs, whatever the job's size.
async fn persist_target(app: &Arc<App>, job: &Job, idx: usize) {
    let (ws, id, t) = (
        job.workspace.clone(),
        job.id.clone(),
        job.targets[idx].clone(),
    );
    if let Err(e) = app
        .store
        .write(move |tx| model::put_target(tx, &ws, &id, idx, &t))
        .await
    {
        tracing::error!(error = %e, "writing the job target failed");
    }
}

/// Writes the job's header and the rows of `targets` (none: the header alone), and once
/// the job is done its summary row, in one transaction. The owner task's copy of the job
/// holds no outputs, so it never writes a finished target's row again.
async fn persist_header(app: &Arc<App>, job: &Job, targets: &[usize]) {
    let mut header = job.clone_header();
    let rows: Vec<(usize, Target)> = targets
        .iter()
        .filter_map(|&i| job.targets.get(i).map(|t| (i, t.clone())))
        .collect();
    let summary = job.state.is_done().then(|| job.summary());
    if let Err(e) = app
        .store
        .write(move |tx| -> Result<(), JobError> {
            model::put_header(tx, &mut header)?;
            for (i, t) in &rows {
                model::put_target(tx, &header.workspace, &header.id, *i, t)?;
            }
            if let Some(summary) = &summary {
                model::put_summary(tx, &header.workspace, &header.id, summary)?;
            }
            Ok(())
        })
        .await
    {
        tracing::error!(error = %e, "writing the job failed");
    }
}

/// A running job as its owner task sees it, with the outputs of its finished targets
/// taken from their rows in `stored` (the task keeps none in memory).
pub fn with_stored_outputs(mut live: Job, stored: Option<Job>) -> Job {
    let Some(stored) = stored else { return live };
    for (t, s) in live.targets.iter_mut().zip(stored.targets) {
        if t.output.is_none() {
            t.output = s.output;
        }
    }
    live
}

/// Publishes a target's change and the job's summary; the snapshot copies that target
/// only (a whole-job copy per event would cost O(targets) each time).
fn publish_target(live: &LiveJob, job: &Job, idx: usize) {
    {
        let mut snap = live.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        if snap.targets.len() == job.targets.len() {
            snap.targets[idx] = job.targets[idx].clone();
            snap.state = job.state;
            snap.cancel_requested = job.cancel_requested;
        } else {
            *snap = job.clone();
        }
    }
    let _ = live.events.send(target_event(job, idx));
    let _ = live.events.send(job_event(job));
}

fn publish(live: &LiveJob, job: &Job, ev: (String, Map<String, Value>)) {
    *live.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = job.clone();
    let _ = live.events.send(ev);
}

async fn run_job(app: Arc<App>, mut job: Job, live: LiveJob, mut cancel_rx: watch::Receiver<bool>) {
    let cfg = app.cfg.jobs.clone();
    job.state = JobState::Running;
    app.jobs.metrics.jobs.running.fetch_add(1, Relaxed);
    persist_header(&app, &job, &[]).await;
    publish(&live, &job, job_event(&job));
    let mut pending: VecDeque<usize> = (0..job.targets.len())
        .filter(|&i| job.targets[i].state == TargetState::Queued)
        .collect();
    let (upd_tx, mut upd_rx) = mpsc::channel::<Update>(UPDATE_QUEUE);
    let concurrency = job.concurrency.clamp(1, cfg.max_concurrency_per_job.max(1));
    let mut running = 0usize;
    let mut cancelled = job.cancel_requested;
    let ctx = Arc::new(Ctx {
        job_id: job.id.clone(),
        kind: job.kind,
        scope: scope_of(&job.workspace, &job.owner),
        commands: job.commands.clone(),
    });
    loop {
        if cancelled && !pending.is_empty() {
            // Queued targets stop at once.
            let stopped: Vec<usize> = pending.drain(..).collect();
            for &i in &stopped {
                job.targets[i].state = TargetState::Cancelled;
            }
            // Only the targets that changed: the finished ones' rows hold their output,
            // which this copy of the job no longer has.
            persist_header(&app, &job, &stopped).await;
            for i in 0..job.targets.len() {
                if job.targets[i].state == TargetState::Cancelled {
                    publish(&live, &job, target_event(&job, i));
                }
            }
            publish(&live, &job, job_event(&job));
        }
        if pending.is_empty() && running == 0 {
            break;
        }
        tokio::select! {
            biased;
            r = cancel_rx.changed(), if !cancelled => {
                if r.is_err() || *cancel_rx.borrow() {
                    cancelled = true;
                    job.cancel_requested = true;
                    persist_header(&app, &job, &[]).await;
                }
            }
            Some(mut u) = upd_rx.recv() => {
                count(&app.jobs.metrics, &u);
                let hold = match &mut u {
                    Update::Done { hold, .. } => hold.take(),
                    _ => None,
                };
                let idx = apply(&mut job, u, &mut running);
                persist_target(&app, &job, idx).await;
                // The row holds the output now. The job kept here (and its live copy,
                // which every watcher and listing clones) does not: a running job's
                // memory is its targets' states, whatever its devices print. Readers
                // of a running job take outputs from the rows (`with_stored_outputs`).
                job.targets[idx].output = None;
                drop(hold); // the output is stored and gone from memory
                publish_target(&live, &job, idx);
            }
            permit = app.jobs.global.clone().acquire_owned(), if !cancelled && running < concurrency && !pending.is_empty() => {
                let Ok(permit) = permit else { break };
                let Some(idx) = pending.pop_front() else { continue };
                running += 1;
                let t = &mut job.targets[idx];
                t.state = TargetState::Running;
                t.attempts += 1;
                t.error = None;
                if t.started_at.is_none() {
                    t.started_at = Some(store::now());
                }
                let (attempt, sid) = (t.attempts, t.session_id.clone());
                // Written before the worker connects: after a crash this target is
                // known to have started.
                persist_target(&app, &job, idx).await;
                publish_target(&live, &job, idx);
                let (app2, ctx2, tx2, cancel2) = (app.clone(), ctx.clone(), upd_tx.clone(), cancel_rx.clone());
                tokio::spawn(async move {
                    run_target(app2, ctx2, idx, sid, attempt, cancel2, tx2).await;
                    drop(permit);
                });
            }
        }
    }
    job.state = job.final_state();
    job.finished_at = Some(store::now());
    persist_header(&app, &job, &[]).await;
    publish(&live, &job, job_event(&job));
    tracing::info!(state = ?job.state, summary = ?job.summary(), "job finished");
    let m = &app.jobs.metrics.jobs;
    m.running.fetch_sub(1, Relaxed);
    m.job_finished(state_word(job.state));
    for t in &job.targets {
        // Cancelled-while-queued targets never sent a Done update.
        if t.state == TargetState::Cancelled && t.duration_ms.is_none() {
            m.target_finished("cancelled");
        }
    }
    // A job the user cancelled is not a failure.
    if job.state == JobState::Failed {
        app.jobs
            .webhooks
            .send(&job.workspace, &job.owner, failed_event(&job));
    }
    app.jobs.live.remove(&job.id);
}

fn state_word<T: serde::Serialize>(s: T) -> &'static str {
    match serde_json::to_value(s)
        .ok()
        .as_ref()
        .and_then(Value::as_str)
    {
        Some("succeeded") => "succeeded",
        Some("failed") => "failed",
        Some("cancelled") => "cancelled",
        _ => "",
    }
}

/// Counts a worker's report in the job metrics.
fn count(m: &Metrics, u: &Update) {
    match u {
        Update::Retrying { .. } => {
            m.jobs.target_retries.fetch_add(1, Relaxed);
        }
        Update::Done { state, .. } => m.jobs.target_finished(state_word(*state)),
        Update::Running { .. } => {}
    }
}

/// The `job.failed` webhook event of a finished job.
fn failed_event(job: &Job) -> webhooks::Event {
    webhooks::Event::JobFailed {
        job_id: job.id.clone(),
        kind: job.kind,
        state: job.state,
        summary: job.summary(),
        failed: job
            .targets
            .iter()
            .filter(|t| matches!(t.state, TargetState::Failed | TargetState::Cancelled))
            .take(webhooks::MAX_FAILED_LISTED)
            .map(|t| webhooks::FailedTarget {
                session_id: t.session_id.clone(),
                state: t.state,
                error: t.error.clone(),
            })
            .collect(),
    }
}

fn apply(job: &mut Job, u: Update, running: &mut usize) -> usize {
    match u {
        Update::Running { idx, attempt } => {
            let t = &mut job.targets[idx];
            t.state = TargetState::Running;
            t.attempts = attempt;
            idx
        }
        Update::Retrying {
            idx,
            attempt,
            error,
            retry_in,
        } => {
            let t = &mut job.targets[idx];
            t.state = TargetState::Retrying;
            t.attempts = attempt;
            t.error = Some(TargetError {
                message: format!("{} (retry in {} ms)", error.message, retry_in.as_millis()),
                ..error
            });
            idx
        }
        Update::Done {
            idx,
            state,
            error,
            output,
            config,
            duration_ms,
            ..
        } => {
            *running = running.saturating_sub(1);
            let t = &mut job.targets[idx];
            t.state = state;
            t.error = error;
            t.output = output;
            if let Some((id, changed)) = config {
                t.config_id = Some(id);
                t.changed = Some(changed);
            }
            t.duration_ms = Some(duration_ms);
            idx
        }
    }
}

/// What every worker of a job shares.
struct Ctx {
    job_id: String,
    kind: JobType,
    scope: Scope,
    commands: Vec<String>,
}

fn scope_of(workspace: &str, owner: &str) -> Scope {
    match team_of_key(workspace) {
        Some(team) => Scope::team(team, owner),
        None => Scope::personal(owner),
    }
}

/// Codes worth another attempt: the connection, not the device's answer, failed.
fn retryable(code: &str) -> bool {
    matches!(
        code,
        codes::CONNECT_REFUSED
            | codes::CONNECT_TIMEOUT
            | codes::REMOTE_CLOSED
            | codes::CHANNEL_FAILED
    )
}

fn backoff(cfg: &JobsConfig, attempt: u32) -> Duration {
    let base = cfg.retry_base_ms.max(1);
    let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(cfg.retry_max_ms.max(base));
    // Full jitter in the upper half: retries of many targets spread out.
    let ms = rand::rng().random_range(capped / 2..=capped);
    Duration::from_millis(ms)
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            // The job's owner is gone; nothing to cancel for.
            std::future::pending::<()>().await;
        }
    }
}

struct Outcome {
    output: Option<Vec<CommandOutput>>,
    config: Option<(String, bool)>,
    /// The output budget `output` takes.
    hold: Option<OutputHold>,
}

#[allow(clippy::too_many_arguments)]
async fn run_target(
    app: Arc<App>,
    ctx: Arc<Ctx>,
    idx: usize,
    session_id: String,
    first_attempt: u32,
    mut cancel: watch::Receiver<bool>,
    tx: mpsc::Sender<Update>,
) {
    let cfg = app.cfg.jobs.clone();
    let mut attempt = first_attempt;
    let started = Instant::now();
    let max_attempts = cfg.retries.saturating_add(1);
    let done = loop {
        let r = tokio::select! {
            r = attempt_once(&app, &ctx, &session_id) => r,
            _ = cancelled(&mut cancel) => break Update::Done { idx, state: TargetState::Cancelled, error: None, output: None, config: None, duration_ms: 0, hold: None },
        };
        match r {
            Ok(o) => {
                break Update::Done {
                    idx,
                    state: TargetState::Succeeded,
                    error: None,
                    output: o.output,
                    config: o.config,
                    duration_ms: 0,
                    hold: o.hold,
                }
            }
            Err(e) if retryable(e.code) && attempt < max_attempts => {
                let retry_in = backoff(&cfg, attempt);
                tracing::info!(target = %session_id, attempt, code = e.code, "retrying");
                let _ = tx
                    .send(Update::Retrying {
                        idx,
                        attempt,
                        error: TargetError {
                            code: e.code.to_string(),
                            message: e.message,
                        },
                        retry_in,
                    })
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = cancelled(&mut cancel) => break Update::Done { idx, state: TargetState::Cancelled, error: None, output: None, config: None, duration_ms: 0, hold: None },
                }
                attempt += 1;
                let _ = tx.send(Update::Running { idx, attempt }).await;
            }
            Err(e) => {
                break Update::Done {
                    idx,
                    state: TargetState::Failed,
                    error: Some(TargetError {
                        code: e.code.to_string(),
                        message: e.message,
                    }),
                    output: None,
                    config: None,
                    duration_ms: 0,
                    hold: None,
                }
            }
        }
    };
    let done = match done {
        Update::Done {
            idx,
            state,
            error,
            output,
            config,
            hold,
            ..
        } => Update::Done {
            idx,
            state,
            error,
            output,
            config,
            duration_ms: started.elapsed().as_millis() as u64,
            hold,
        },
        other => other,
    };
    let _ = tx.send(done).await;
}

impl From<DriveError> for OpenError {
    fn from(e: DriveError) -> Self {
        OpenError::new(e.code, e.message)
    }
}

async fn attempt_once(app: &Arc<App>, ctx: &Ctx, session_id: &str) -> Result<Outcome, OpenError> {
    if ctx.kind == JobType::NetboxImport {
        // Never queued to workers (see `ExternalJob`); refuse rather than SSH anywhere.
        return Err(OpenError::new(codes::CHANNEL_FAILED, "not a device job"));
    }
    let (key, sid) = (ctx.scope.key.clone(), session_id.to_string());
    let session = app
        .store
        .read(move |tx| inventory::get_session(tx, &key, &sid))
        .await
        .map_err(|e| OpenError::new(codes::CHANNEL_FAILED, e.to_string()))?
        .ok_or_else(|| OpenError::new(codes::NOT_FOUND, "the saved session no longer exists"))?;
    let conn = DeviceConn::connect(app, &ctx.scope, &session, crate::ssh::Access::Actor).await?;
    let profile = device::profile(session.device_type);
    let timeout = Duration::from_secs(app.cfg.jobs.command_timeout_secs.max(1));
    let commands: Vec<String> = match ctx.kind {
        JobType::ConfigBackup => vec![profile.show_config.to_string()],
        JobType::Command | JobType::NetboxImport | JobType::AppStart | JobType::AppStop => {
            ctx.commands.clone()
        }
    };
    let hold = app.jobs.output_budget.hold();
    let result = drive(&conn, profile, &commands, timeout, hold).await;
    conn.disconnect().await;
    let (outputs, hold) = result?;
    match ctx.kind {
        JobType::Command | JobType::NetboxImport | JobType::AppStart | JobType::AppStop => {
            Ok(Outcome {
                output: Some(outputs),
                config: None,
                hold: Some(hold),
            })
        }
        JobType::ConfigBackup => {
            let raw = outputs
                .into_iter()
                .next()
                .map(|o| o.output)
                .unwrap_or_default();
            let text = device::strip_volatile(profile, &device::clean(&raw));
            let (ws, sid, job) = (
                ctx.scope.key.clone(),
                session_id.to_string(),
                ctx.job_id.clone(),
            );
            let (keep_n, keep_d) = (
                app.cfg.jobs.config_keep_versions,
                app.cfg.jobs.config_keep_days,
            );
            let rec = app
                .store
                .write(move |tx| configs::record(tx, &ws, &sid, &job, &text, keep_n, keep_d))
                .await
                .map_err(|e| OpenError::new(codes::CHANNEL_FAILED, e.to_string()))?;
            if let (true, Some(previous)) = (rec.changed, rec.previous.clone()) {
                app.jobs.webhooks.send(
                    &ctx.scope.key,
                    &ctx.scope.actor,
                    webhooks::Event::ConfigChanged {
                        job_id: ctx.job_id.clone(),
                        session_id: session_id.to_string(),
                        config_id: rec.id.clone(),
                        previous_config_id: previous,
                        sha256: rec.sha256.clone(),
                    },
                );
            }
            drop(hold); // the config is stored
            Ok(Outcome {
                output: None,
                config: Some((rec.id, rec.changed)),
                hold: None,
            })
        }
    }
}

/// Runs `commands` on the device: their outputs, and the share of the output budget that
/// covers them (to be dropped once they are stored).
async fn drive(
    conn: &DeviceConn,
    profile: &device::Profile,
    commands: &[String],
    timeout: Duration,
    mut hold: OutputHold,
) -> Result<(Vec<CommandOutput>, OutputHold), OpenError> {
    let channel_err = |e: russh::Error| OpenError::new(codes::CHANNEL_FAILED, e.to_string());
    let mut out = Vec::with_capacity(commands.len());
    if profile.exec {
        let max = hold.per_target();
        let mut used = 0;
        for c in commands {
            let ch = conn.exec(c).await.map_err(channel_err)?;
            let (text, _status) =
                device::exec_output(ch, timeout, max - used, &mut hold, used).await?;
            used = (used + text.len()).min(max);
            out.push(CommandOutput {
                command: c.clone(),
                output: text,
                bytes: None,
            });
        }
        return Ok((out, hold));
    }
    let ch = conn.shell().await.map_err(channel_err)?;
    let mut sh = Shell::start(ch, timeout, hold).await?;
    if let Some(enable) = profile.enable {
        sh.enable(enable, conn.enable_secret.as_deref()).await?;
    }
    for p in profile.disable_paging {
        sh.command(p).await?;
    }
    for c in commands {
        let text = sh.command(c).await?;
        out.push(CommandOutput {
            command: c.clone(),
            output: text,
            bytes: None,
        });
    }
    let hold = sh.close().await;
    Ok((out, hold))
}

/// The one target of a job run outside the worker pool (its `session_id`).
pub const EXTERNAL_TARGET: &str = "netbox";

fn interrupt_external(job: &mut Job) {
    for t in &mut job.targets {
        if !t.state.is_done() {
            t.state = TargetState::Failed;
            t.error = Some(TargetError {
                code: INTERRUPTED.into(),
                message: "the gateway stopped while this ran; it is not run again (an import applied nothing)".into(),
            });
        }
    }
}

/// A job whose work another module does in its own task (a NetBox import) instead of
/// the worker pool. It has one target, [`EXTERNAL_TARGET`], whose state is the job's;
/// the module publishes its own progress events (under its own key) on the job's
/// `job` channels, and ends the job with [`ExternalJob::finish`]. Cancel is asked
/// through the usual `POST /api/jobs/{id}/cancel` and read with [`ExternalJob::cancelled`].
pub struct ExternalJob {
    app: Arc<App>,
    job: Job,
    live: LiveJob,
    cancel: watch::Receiver<bool>,
    started: Instant,
}

impl ExternalJob {
    /// Registers a stored job as running and tells its watchers.
    pub async fn start(app: &Arc<App>, mut job: Job) -> ExternalJob {
        job.state = JobState::Running;
        for t in &mut job.targets {
            t.state = TargetState::Running;
            t.attempts = 1;
            t.started_at = Some(store::now());
        }
        let (live, cancel_rx) = LiveJob::register(app, &job);
        persist(app, &job).await;
        publish(&live, &job, job_event(&job));
        ExternalJob {
            app: app.clone(),
            job,
            live,
            cancel: cancel_rx,
            started: Instant::now(),
        }
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.job.id
    }

    /// Whether a cancel was asked for.
    pub fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves when a cancel is asked for (never, if the job is no longer live).
    pub async fn until_cancelled(&self) {
        cancelled(&mut self.cancel.clone()).await
    }

    /// Publishes one progress event under `key` (watchers keep the latest per key).
    pub fn progress(&self, key: &str, event: Map<String, Value>) {
        let _ = self.live.events.send((key.to_string(), event));
    }

    /// Ends the job: `Ok(summary)` succeeded (the summary is kept as the target's
    /// output), `Err` failed with that error, or cancelled if a cancel was asked.
    pub async fn finish(mut self, result: Result<String, TargetError>) {
        let cancelled = self.cancelled();
        if let Some(t) = self.job.targets.first_mut() {
            match result {
                Ok(summary) => {
                    t.state = TargetState::Succeeded;
                    t.output = Some(vec![CommandOutput {
                        command: "netbox_import".into(),
                        output: summary,
                        bytes: None,
                    }]);
                }
                Err(_) if cancelled => t.state = TargetState::Cancelled,
                Err(e) => {
                    t.state = TargetState::Failed;
                    t.error = Some(e);
                }
            }
            t.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        }
        self.job.cancel_requested = cancelled;
        self.job.state = self.job.final_state();
        self.job.finished_at = Some(store::now());
        persist(&self.app, &self.job).await;
        if !self.job.targets.is_empty() {
            publish(&self.live, &self.job, target_event(&self.job, 0));
        }
        publish(&self.live, &self.job, job_event(&self.job));
        self.app.jobs.live.remove(&self.job.id);
    }
}
