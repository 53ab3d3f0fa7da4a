//! REST handlers for jobs and config versions (thin: the logic is in `model`,
//! `runner` and `configs`), and the `job` channel's open.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use opsgate_protocol::codes;
use serde::Deserialize;

use super::model::{self, Job, JobState, JobType, Target, TargetState};
use super::{configs, runner, JobError};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody, WorkspaceHeader, WorkspaceQuery};
use crate::inventory;
use crate::source::{OpenError, Source};
use crate::store;
use crate::workspace::{self, Workspace};

/// `POST /api/jobs` body (also a schedule's `job`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    /// `config_backup` or `command`.
    #[serde(rename = "type")]
    #[schema(example = "config_backup")]
    pub kind: String,
    /// Saved session ids of the workspace (duplicates are dropped).
    pub targets: Vec<String>,
    /// `command` jobs: one-line commands, run in order on each target.
    #[serde(default)]
    pub commands: Option<Vec<String>>,
    /// SPEC §5's single-command form.
    #[serde(default)]
    pub command: Option<String>,
    /// Targets worked on at once (default from the config).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// A started job (`POST /api/jobs`, `POST /api/schedules/{id}/run-now`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobStarted {
    pub id: String,
}

/// A cancel request taken (`POST /api/jobs/{id}/cancel`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CancelRequested {
    pub id: String,
    pub cancel_requested: bool,
}

/// One job in a list: without targets, with their counts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobListItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: JobType,
    pub state: JobState,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub concurrency: usize,
    pub summary: model::Summary,
    pub schedule_id: Option<String>,
    /// The job this one retries (`POST /api/jobs/{id}/retry`).
    pub retry_of: Option<String>,
}

/// `GET /api/jobs`: a page of jobs, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobListItem>,
    /// Jobs matching the filters, all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// `GET /api/jobs/{id}`: the job with its per-target state and counts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub summary: model::Summary,
}

/// One device whose latest config matched (`GET /api/configs/search`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub session_id: String,
    pub config_id: String,
    pub created_at: i64,
    /// At most 1000 per device.
    pub matches: Vec<LineMatch>,
}

/// A matching line.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LineMatch {
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// `GET /api/configs/search` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
    /// More lines matched than one answer carries ([`MAX_SEARCH_LINES`] lines,
    /// [`MAX_SEARCH_BYTES`] of text): the devices and lines after the cut are left out.
    pub truncated: bool,
}

/// The lines of `text` that `re` matches (at most 1,000), as far as the answer has room:
/// `used` (lines, bytes of text) grows by what is taken, up to `max`. True if lines were
/// left out for room.
fn matching_lines(
    text: &str,
    re: &regex::Regex,
    used: &mut (usize, usize),
    max: (usize, usize),
) -> (Vec<LineMatch>, bool) {
    let mut matches = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if !re.is_match(l) {
            continue;
        }
        if matches.len() >= 1000 {
            break;
        }
        if used.0 >= max.0 || used.1 + l.len() > max.1 {
            return (matches, true);
        }
        used.0 += 1;
        used.1 += l.len();
        matches.push(LineMatch {
            line: i + 1,
            text: l.to_string(),
        });
    }
    (matches, false)
}

/// Matched lines one search answer carries at most (1,000 per device).
pub const MAX_SEARCH_LINES: usize = 10_000;
/// Text of matched lines one search answer carries at most.
pub const MAX_SEARCH_BYTES: usize = 4 * 1024 * 1024;

fn bad(code: &'static str, m: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, m)
}

/// Checks a job request and builds the job (targets must be saved sessions of `ws`).
pub async fn build_job(
    app: &Arc<App>,
    scope: &workspace::Scope,
    owner_role: Role,
    input: JobInput,
) -> ApiResult<Job> {
    let cfg = &app.cfg.jobs;
    let kind = JobType::parse(&input.kind).ok_or_else(|| {
        bad(
            "invalid_job_type",
            format!(
                "unknown job type {:?}: use config_backup or command",
                input.kind
            ),
        )
    })?;
    if input.targets.is_empty() {
        return Err(bad(
            "invalid_targets",
            "targets is empty: name at least one saved session",
        ));
    }
    if input.targets.len() > cfg.max_targets {
        return Err(bad(
            "invalid_targets",
            format!("at most {} targets per job", cfg.max_targets),
        ));
    }
    let mut seen = HashSet::new();
    let targets: Vec<String> = input
        .targets
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect();
    let mut commands = input.commands.unwrap_or_default();
    if let Some(c) = input.command {
        commands.insert(0, c);
    }
    commands.retain(|c| !c.trim().is_empty());
    match kind {
        JobType::Command if commands.is_empty() => {
            return Err(bad("invalid_commands", "a command job needs commands"))
        }
        JobType::Command if commands.len() > cfg.max_commands => {
            return Err(bad(
                "invalid_commands",
                format!("at most {} commands", cfg.max_commands),
            ))
        }
        JobType::ConfigBackup if !commands.is_empty() => {
            return Err(bad(
                "invalid_commands",
                "config_backup takes no commands (the device type decides)",
            ))
        }
        _ => {}
    }
    if commands
        .iter()
        .any(|c| c.len() > 4096 || c.contains(['\n', '\r']))
    {
        return Err(bad(
            "invalid_commands",
            "a command is one line of at most 4096 bytes",
        ));
    }
    let concurrency = input.concurrency.unwrap_or(cfg.default_concurrency);
    if concurrency == 0 || concurrency > cfg.max_concurrency_per_job {
        return Err(bad(
            "invalid_concurrency",
            format!("concurrency must be 1..={}", cfg.max_concurrency_per_job),
        ));
    }
    let (key, ids) = (scope.key.clone(), targets.clone());
    let missing = app
        .store
        .read(move |tx| -> Result<Option<String>, JobError> {
            for id in &ids {
                if inventory::get_session(tx, &key, id)?.is_none() {
                    return Ok(Some(id.clone()));
                }
            }
            Ok(None)
        })
        .await?;
    if let Some(id) = missing {
        // Another workspace's id answers exactly as one that does not exist.
        return Err(ApiError::not_found(&format!("saved session {id:?}")));
    }
    Ok(Job {
        id: store::new_id(),
        kind,
        state: JobState::Queued,
        workspace: scope.key.clone(),
        owner: scope.actor.clone(),
        owner_role,
        commands,
        concurrency,
        created_at: store::now(),
        finished_at: None,
        cancel_requested: false,
        schedule_id: None,
        retry_of: None,
        targets: targets.into_iter().map(Target::queued).collect(),
    })
}

/// Checks that `workspace` has room among its live jobs for one more naming `targets`
/// targets (`[jobs] max_live_jobs`, `max_live_targets`; 409 `limit_reached`). The guard
/// must be held until the job is registered as live, so two submissions cannot both take
/// the last room.
pub async fn admit<'a>(
    app: &'a App,
    workspace: &str,
    targets: usize,
) -> ApiResult<tokio::sync::MutexGuard<'a, ()>> {
    let gate = app.jobs.submit_gate.lock().await;
    let (jobs, live_targets) = app.jobs.live_load(workspace);
    let cfg = &app.cfg.jobs;
    if jobs + 1 > cfg.max_live_jobs {
        return Err(ApiError::conflict(
            "limit_reached",
            format!(
                "the workspace has {jobs} jobs queued or running; at most {} may be ([jobs] max_live_jobs): wait for one to finish or cancel one",
                cfg.max_live_jobs
            ),
        ));
    }
    if live_targets + targets > cfg.max_live_targets {
        return Err(ApiError::conflict(
            "limit_reached",
            format!(
                "the workspace's queued and running jobs name {live_targets} targets; with this job's {targets} that is more than {} ([jobs] max_live_targets)",
                cfg.max_live_targets
            ),
        ));
    }
    Ok(gate)
}

/// Stores and starts a job, if its workspace has room for it ([`admit`]).
pub async fn submit(app: &Arc<App>, job: Job) -> ApiResult<String> {
    let _gate = admit(app, &job.workspace, job.targets.len()).await?;
    let j = job.clone();
    let scope = workspace::Scope {
        key: job.workspace.clone(),
        actor: job.owner.clone(),
    };
    let entry = scope.audit("job.start").detail(format!(
        "{:?} job {} on {} targets",
        job.kind,
        job.id,
        job.targets.len()
    ));
    app.store
        .write(move |tx| -> Result<(), JobError> {
            model::put(tx, &j)?;
            crate::audit::record(tx, entry)?;
            Ok(())
        })
        .await?;
    let id = job.id.clone();
    runner::spawn(app, job);
    Ok(id)
}

/// `POST /api/jobs`
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", params(WorkspaceQuery, WorkspaceHeader), request_body = JobInput,
    responses((status = 202, description = "Stored and started; follow it with a `job` channel or `GET /api/jobs/{id}`", body = JobStarted),
        (status = 400, description = "`invalid_job_type`, `invalid_targets`, `invalid_commands`, `invalid_concurrency`: see the message.", body = ErrorBody),
        (status = 404, description = "`not_found`: a target is not a saved session of the workspace.", body = ErrorBody),
        (status = 409, description = "`limit_reached`: the workspace's queued and running jobs are at `[jobs] max_live_jobs` or would name more than `max_live_targets` targets.", body = ErrorBody)))]
pub async fn create_job(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<JobInput>,
) -> ApiResult<impl IntoResponse> {
    let job = build_job(&app, &ws.scope, ws.user.role, input).await?;
    let id = submit(&app, job).await?;
    Ok((StatusCode::ACCEPTED, Json(JobStarted { id })))
}

/// The request a retry of `job` makes: same type, commands and concurrency, over the
/// targets that failed or were cancelled and whose saved session still exists.
/// `None` when there is nothing to retry.
pub fn retry_input(
    job: &Job,
    existing: &HashSet<String>,
    max_concurrency: usize,
) -> Option<JobInput> {
    let targets: Vec<String> = job
        .targets
        .iter()
        .filter(|t| matches!(t.state, TargetState::Failed | TargetState::Cancelled))
        .filter(|t| existing.contains(&t.session_id))
        .map(|t| t.session_id.clone())
        .collect();
    if targets.is_empty() {
        return None;
    }
    Some(JobInput {
        kind: job.kind.as_str(),
        targets,
        commands: (!job.commands.is_empty()).then(|| job.commands.clone()),
        command: None,
        concurrency: Some(job.concurrency.clamp(1, max_concurrency.max(1))),
    })
}

/// `POST /api/jobs/{id}/retry` → 202 `{"id"}`: a new job over the failed and cancelled
/// targets of a finished job (409 `job_running` while it runs, 409 `nothing_to_retry`
/// when none failed or their sessions are gone). Same rules as `POST /api/jobs`.
#[utoipa::path(post, path = "/api/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path, description = "Job id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 202, description = "A new job over the failed and cancelled targets; it carries `retry_of`", body = JobStarted),
        (status = 404, description = "`not_found`: no such job in the workspace.", body = ErrorBody),
        (status = 409, description = "`job_running`: the job has not finished; `nothing_to_retry`: no target failed or was cancelled, or their saved sessions are gone; `not_retryable`: only `config_backup` and `command` jobs retry; `limit_reached`: the workspace's live jobs are at `[jobs] max_live_jobs` or `max_live_targets`.", body = ErrorBody)))]
pub async fn retry_job(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let old = load_job(&app, &ws, id).await?;
    if !matches!(old.kind, JobType::ConfigBackup | JobType::Command) {
        // An import or an app's start/stop is started again from its own screen and
        // route, where its preconditions are checked (app state, NetBox filters).
        return Err(ApiError::conflict(
            "not_retryable",
            "only config_backup and command jobs can be retried",
        ));
    }
    if !old.state.is_done() {
        return Err(ApiError::conflict(
            "job_running",
            "the job is still running: wait for it to finish or cancel it first",
        ));
    }
    let (key, ids): (String, Vec<String>) = (
        ws.scope.key.clone(),
        old.targets.iter().map(|t| t.session_id.clone()).collect(),
    );
    // A session deleted since is left out rather than failing the whole retry.
    let existing = app
        .store
        .read(move |tx| -> Result<HashSet<String>, JobError> {
            let mut out = HashSet::new();
            for id in ids {
                if inventory::get_session(tx, &key, &id)?.is_some() {
                    out.insert(id);
                }
            }
            Ok(out)
        })
        .await?;
    let input =
        retry_input(&old, &existing, app.cfg.jobs.max_concurrency_per_job).ok_or_else(|| {
            ApiError::conflict(
                "nothing_to_retry",
                "no target of this job failed or was cancelled (or their saved sessions are gone)",
            )
        })?;
    let mut job = build_job(&app, &ws.scope, ws.user.role, input).await?;
    job.retry_of = Some(old.id.clone());
    let id = submit(&app, job).await?;
    app.metrics
        .jobs
        .job_retries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(JobStarted { id })))
}

/// `GET /api/jobs` filters and page.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    state: Option<String>,
    /// `config_backup`, `command`, `netbox_import`, `app_start` or `app_stop`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<usize>,
    /// Jobs to skip (default 0).
    offset: Option<usize>,
}

/// `GET /api/jobs?state=&type=&limit=&offset=` (newest first, without per-target output)
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(ListQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "A page of jobs, newest first", body = JobList),
        (status = 400, description = "`invalid_state`, `invalid_job_type`: unknown filter value.", body = ErrorBody)))]
pub async fn list_jobs(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let state = match q.state.as_deref() {
        Some(s) => Some(
            JobState::parse(s)
                .ok_or_else(|| bad("invalid_state", format!("unknown state {s:?}")))?,
        ),
        None => None,
    };
    let kind = match q.kind.as_deref() {
        Some(s) => Some(
            JobType::from_word(s)
                .ok_or_else(|| bad("invalid_job_type", format!("unknown job type {s:?}")))?,
        ),
        None => None,
    };
    let key = ws.scope.key.clone();
    let jobs = app
        .store
        .read(move |tx| model::list(tx, &key, |_| false))
        .await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0);
    let filtered: Vec<_> = jobs
        .into_iter()
        .map(|(j, summary)| match app.jobs.snapshot(&j.id) {
            Some(live) => {
                let summary = live.summary();
                (live, summary)
            }
            None => (j, summary),
        })
        .filter(|(j, _)| state.is_none_or(|s| j.state == s) && kind.is_none_or(|k| j.kind == k))
        .collect();
    let total = filtered.len();
    let page: Vec<_> = filtered
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(j, summary)| JobListItem {
            summary,
            id: j.id,
            kind: j.kind,
            state: j.state,
            created_at: j.created_at,
            finished_at: j.finished_at,
            concurrency: j.concurrency,
            schedule_id: j.schedule_id,
            retry_of: j.retry_of,
        })
        .collect();
    Ok(Json(JobList {
        jobs: page,
        total,
        offset,
        limit,
    }))
}

async fn load_job(app: &Arc<App>, ws: &Workspace, id: String) -> ApiResult<Job> {
    let live = app
        .jobs
        .snapshot(&id)
        .filter(|j| j.workspace == ws.scope.key);
    let key = ws.scope.key.clone();
    let stored = app.store.read(move |tx| model::get(tx, &key, &id)).await?;
    match live {
        Some(j) => Ok(super::runner::with_stored_outputs(j, stored)),
        None => stored.ok_or_else(|| ApiError::not_found("job")),
    }
}

/// `GET /api/jobs/{id}`
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "Job id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The job with its targets", body = JobDetail), (status = 404, description = "`not_found`: no job with this id in the workspace.", body = ErrorBody)))]
pub async fn get_job(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let job = load_job(&app, &ws, id).await?;
    let summary = job.summary();
    Ok(Json(JobDetail { job, summary }))
}

/// `POST /api/jobs/{id}/cancel`: queued targets stop at once, running ones within a
/// second. 202; a finished job answers 409 `job_finished`.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "Job id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 202, description = "Cancelling", body = CancelRequested), (status = 404, description = "`not_found`: no job with this id in the workspace.", body = ErrorBody),
        (status = 409, description = "`job_finished`: the job has already finished.", body = ErrorBody)))]
pub async fn cancel_job(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let job = load_job(&app, &ws, id).await?;
    if job.state.is_done() {
        return Err(ApiError::conflict(
            "job_finished",
            "the job has already finished",
        ));
    }
    if !app.jobs.cancel(&job.id) {
        // Not running here (between a restart and its resume, or it finished just now):
        // record the wish on the stored header, and only while it is stored and not
        // done, so a copy read before it finished never overwrites the finish.
        let (key, id) = (job.workspace.clone(), job.id.clone());
        app.store
            .write(move |tx| -> Result<(), JobError> {
                let stored: Option<Job> =
                    store::get_owned(&tx.open_table(store::JOBS)?, &key, &id)?;
                if let Some(mut header) = stored.filter(|j| !j.state.is_done()) {
                    header.cancel_requested = true;
                    // Its own header (with inline targets if it is that old), not a copy.
                    model::put(tx, &header)?;
                }
                Ok(())
            })
            .await?;
    }
    app.audit.record(
        ws.scope
            .audit("job.cancel")
            .detail(format!("job {}", job.id)),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(CancelRequested {
            id: job.id,
            cancel_requested: true,
        }),
    ))
}

/// Opens a `job` channel: the job is looked up in the user's personal workspace, then
/// their teams (any membership may watch).
pub async fn open_watch(
    app: Arc<App>,
    username: String,
    role: Role,
    job_id: String,
    workspace_slot: Arc<OnceLock<Arc<str>>>,
) -> Result<Source, OpenError> {
    let _ = role;
    let found = app
        .store
        .read(move |tx| -> Result<Option<Job>, JobError> {
            if let Some(j) = model::get(tx, &username, &job_id)? {
                return Ok(Some(j));
            }
            for (team, _) in workspace::teams_of(tx, &username)? {
                if let Some(j) = model::get(tx, &workspace::team_key(&team.id), &job_id)? {
                    return Ok(Some(j));
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| OpenError::new(codes::CHANNEL_FAILED, e.to_string()))?
        .ok_or_else(|| OpenError::new(codes::NOT_FOUND, "job not found"))?;
    let _ = workspace_slot.set(Arc::from(found.workspace.as_str()));
    Ok(super::watch::source(&app, found))
}

// ---- config versions ----

/// `GET /api/configs` filter.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigListQuery {
    /// Only this saved session's versions.
    session_id: Option<String>,
}

/// `GET /api/configs?session_id=`: versions, newest first.
#[utoipa::path(get, path = "/api/configs", tag = "configs", params(ConfigListQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Versions without their text, newest first", body = Vec<configs::VersionMeta>)))]
pub async fn list_configs(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<ConfigListQuery>,
) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let v = app
        .store
        .read(move |tx| configs::list(tx, &key, q.session_id.as_deref()))
        .await?;
    Ok(Json(v))
}

/// `GET /api/configs/{id}`: the version with its text.
#[utoipa::path(get, path = "/api/configs/{id}", tag = "configs",
    params(("id" = String, Path, description = "Config version id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The version with its text", body = configs::Version),
        (status = 404, description = "`not_found`: no config version with this id in the workspace.", body = ErrorBody)))]
pub async fn get_config(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let v = app
        .store
        .read(move |tx| configs::get(tx, &key, &id))
        .await?;
    Ok(Json(v))
}

/// `GET /api/configs/diff` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version's id.
    from: String,
    /// The newer version's id.
    to: String,
    /// Compare versions of two different devices.
    #[serde(default)]
    #[param(required = false)]
    allow_cross: bool,
}

/// `GET /api/configs/diff?from=&to=[&allow_cross=true]`
#[utoipa::path(get, path = "/api/configs/diff", tag = "configs", params(DiffQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The unified diff, hunks and counts", body = configs::Diff),
        (status = 400, description = "`cross_device_diff`: the versions are of two devices (add `allow_cross=true`); `bad_request`: `from` or `to` missing.", body = ErrorBody),
        (status = 404, description = "`not_found`: no config version with one of the ids in the workspace.", body = ErrorBody)))]
pub async fn diff_configs(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<DiffQuery>,
) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let (from, to) = (q.from.clone(), q.to.clone());
    // Two texts of up to 16 MiB and seconds of CPU: a burst of diffs waits here instead
    // of taking every core and gigabytes at once.
    let permit = app.jobs.heavy_read().await;
    let (a, b) = app
        .store
        .read(move |tx| -> Result<_, JobError> {
            Ok((configs::get(tx, &key, &from)?, configs::get(tx, &key, &to)?))
        })
        .await?;
    if a.session_id != b.session_id && !q.allow_cross {
        return Err(bad(
            "cross_device_diff",
            "the two versions belong to different devices; add allow_cross=true to compare them anyway",
        ));
    }
    if a.text.len() + b.text.len() > configs::MAX_DIFF_BYTES {
        return Err(bad(
            "diff_too_large",
            format!(
                "the two versions hold {} bytes together, over the {} a diff takes; download them instead",
                a.text.len() + b.text.len(),
                configs::MAX_DIFF_BYTES
            ),
        ));
    }
    // Seconds of CPU at worst: off the async workers, and few at a time.
    let d = tokio::task::spawn_blocking(move || {
        let _turn = permit;
        configs::diff(&a, &b)
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(d))
}

/// `GET /api/configs/search` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// 1 to 1000 characters.
    #[param(example = "hostname")]
    q: String,
    /// Treat `q` as a regular expression (else a plain substring).
    #[serde(default)]
    #[param(required = false)]
    regex: bool,
    /// Case-insensitive.
    #[serde(default)]
    #[param(required = false)]
    ignore_case: bool,
}

/// `GET /api/configs/search?q=[&regex=true][&ignore_case=true]`: matching lines in the
/// latest config of each device of the workspace.
#[utoipa::path(get, path = "/api/configs/search", tag = "configs", params(SearchQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Matching lines of each device's latest config", body = SearchResults),
        (status = 400, description = "`invalid_query`: empty, over 1000 characters, or an invalid or too large regex; `bad_request`: `q` missing.", body = ErrorBody)))]
pub async fn search_configs(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<SearchQuery>,
) -> ApiResult<impl IntoResponse> {
    if q.q.is_empty() || q.q.len() > 1000 {
        return Err(bad("invalid_query", "q must be 1 to 1000 characters"));
    }
    let pattern = if q.regex {
        q.q.clone()
    } else {
        regex::escape(&q.q)
    };
    // Bounded compile size: a client's pattern cannot take the gateway's memory.
    let re = regex::RegexBuilder::new(&pattern)
        .case_insensitive(q.ignore_case)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| bad("invalid_query", format!("invalid regex: {e}")))?;
    let key = ws.scope.key.clone();
    // Reads every device's latest config: a burst of searches waits here.
    let permit = app.jobs.heavy_read().await;
    let (results, truncated) = app
        .store
        .read(move |tx| -> Result<_, JobError> {
            let _turn = permit;
            let all = configs::list(tx, &key, None)?;
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            let mut used = (0, 0);
            let mut truncated = false;
            for meta in all {
                if used.0 >= MAX_SEARCH_LINES || used.1 >= MAX_SEARCH_BYTES {
                    truncated = true;
                    break;
                }
                // Newest first: the first version of a device is its latest; only that
                // one's text is read.
                if !seen.insert(meta.session_id.clone()) {
                    continue;
                }
                // A version missing under its index row is skipped, not the search.
                let Ok(v) = configs::get(tx, &key, &meta.id) else {
                    continue;
                };
                let (matches, full) = matching_lines(
                    &v.text,
                    &re,
                    &mut used,
                    (MAX_SEARCH_LINES, MAX_SEARCH_BYTES),
                );
                truncated |= full;
                if !matches.is_empty() {
                    out.push(SearchHit {
                        session_id: v.session_id,
                        config_id: v.id,
                        created_at: v.created_at,
                        matches,
                    });
                }
                if full {
                    // Nothing after the cut: later devices' shorter lines would fit,
                    // but the answer says everything after it is left out.
                    break;
                }
            }
            Ok((out, truncated))
        })
        .await?;
    Ok(Json(SearchResults { results, truncated }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_answer_stops_at_its_room_and_says_so() {
        let re = regex::Regex::new("vlan").expect("re");
        let text: String = (0..3000).map(|i| format!("vlan {i}\n")).collect();
        // 1,000 a device, whatever room is left.
        let mut used = (0, 0);
        let (m, full) = matching_lines(&text, &re, &mut used, (10_000, 1 << 20));
        assert_eq!((m.len(), full), (1000, false));
        assert_eq!(m[999].line, 1000);
        // Room for 1,500 lines in all: the second device gets 500, and the answer is cut.
        let (m, full) = matching_lines(&text, &re, &mut used, (1500, 1 << 20));
        assert_eq!((m.len(), full, used.0), (500, true, 1500));
        // Room in bytes: "vlan 0" … "vlan 9" are 6 bytes each.
        let mut used = (0, 0);
        let (m, full) = matching_lines(&text, &re, &mut used, (10_000, 60));
        assert_eq!((m.len(), full, used.1), (10, true, 60));
        // Lines that do not match take no room.
        let mut used = (0, 0);
        let (m, full) = matching_lines("a\nb\nvlan 7\n", &re, &mut used, (1, 6));
        assert_eq!((m.len(), full, m[0].line), (1, false, 3));
    }
}
