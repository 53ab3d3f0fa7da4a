//! The transitions of an app's state, each one write transaction with its audit entry
//! (and, for a start or stop, its job record).
//!
//! State machine of an app:
//!
//! ```text
//! stopped|failed --start--> starting --ok--> running --stop/auto-stop--> stopping --ok--> stopped
//!                           starting --error--> failed        stopping --error--> failed
//! running|failed --stop--> stopping
//! ```
//! `start` of a running app is 409 `app_running`, `stop` of a stopped one 409
//! `app_stopped`, and anything while `starting`/`stopping` 409 `app_busy`.

use redb::{ReadableTable, WriteTransaction};

use super::model::{
    busy, check_id, deadline, invalid, put_app, saved_session, AppKind, AppStatus, ManagedApp,
};
use super::remote::{self, Action};
use super::AppsError;
use crate::auth::Role;
use crate::inventory::DeviceType;
use crate::jobs::model::{self as jobs_model, Job, JobState, JobType, Target};
use crate::store::{self, APPS};
use crate::workspace::Scope;

/// Why a stop happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A user asked.
    User,
    /// The auto-stop deadline passed; the text says so for the audit log.
    AutoStop(String),
}

/// What [`begin`] started: the app as now stored, its job, and the command to run.
#[derive(Debug, Clone)]
pub struct Begun {
    pub app: ManagedApp,
    pub job: Job,
    pub command: String,
}

/// The command an app's start or stop runs.
pub fn command_of(app: &ManagedApp, action: Action) -> String {
    match (app.kind, app.unit.as_deref()) {
        (AppKind::Systemd, Some(unit)) => remote::systemd_command(unit, action),
        _ => remote::compose_command(&app.cd_path, action),
    }
}

/// The atomic half of a start or stop: checks the state, moves the app to
/// `starting`/`stopping`, creates its job and audits, all in this one transaction —
/// so of two racing starts, exactly one sees `stopped` and the other gets `app_busy`.
pub fn begin(
    tx: &WriteTransaction,
    ws: &Scope,
    role: Role,
    id: &str,
    action: Action,
    trigger: &Trigger,
) -> Result<Begun, AppsError> {
    check_id(id, "app")?;
    let mut app: ManagedApp =
        store::get_owned(&tx.open_table(APPS)?, &ws.key, id)?.ok_or(AppsError::NotFound("app"))?;
    match (action, app.status) {
        (_, AppStatus::Starting | AppStatus::Stopping) => return Err(busy(&app)),
        (Action::Start, AppStatus::Running) => {
            return Err(AppsError::Conflict {
                code: "app_running",
                message: "the app is already running".into(),
            })
        }
        (Action::Stop, AppStatus::Stopped) => {
            return Err(AppsError::Conflict {
                code: "app_stopped",
                message: "the app is already stopped".into(),
            })
        }
        _ => {}
    }
    let server = saved_session(tx, &ws.key, &app.server_id)?;
    if server.device_type != DeviceType::Linux {
        return Err(invalid(
            "invalid_server",
            "the app's server is no longer a linux saved session",
        ));
    }
    let command = command_of(&app, action);
    let job = Job {
        id: store::new_id(),
        kind: match action {
            Action::Start => JobType::AppStart,
            Action::Stop => JobType::AppStop,
        },
        state: JobState::Queued,
        workspace: ws.key.clone(),
        owner: ws.actor.clone(),
        owner_role: role,
        commands: vec![command.clone()],
        concurrency: 1,
        created_at: store::now(),
        finished_at: None,
        cancel_requested: false,
        schedule_id: None,
        retry_of: None,
        targets: vec![Target::queued(app.server_id.clone())],
    };
    jobs_model::put(tx, &job).map_err(|e| AppsError::Internal(e.to_string()))?;
    app.status = match action {
        Action::Start => AppStatus::Starting,
        Action::Stop => AppStatus::Stopping,
    };
    app.job_id = Some(job.id.clone());
    app.last_error = None;
    if action == Action::Start {
        app.started_by = Some(ws.actor.clone());
        app.started_by_role = Some(role);
    }
    app.updated_at = store::now();
    put_app(tx, &ws.key, &app)?;
    let entry = match (action, trigger) {
        (Action::Start, _) => ws.audit("app.start"),
        (Action::Stop, Trigger::User) => ws.audit("app.stop"),
        (Action::Stop, Trigger::AutoStop(_)) => ws.audit("app.auto_stop"),
    };
    let detail = match trigger {
        Trigger::User => format!("{} (job {})", app.name, job.id),
        Trigger::AutoStop(reason) => format!("{}: {reason} (job {})", app.name, job.id),
    };
    crate::audit::record(tx, entry.target(&app.id).detail(detail))?;
    Ok(Begun { app, job, command })
}

/// The other half: records the outcome of job `job_id` on app `id` (if the app still
/// exists and that job is still its current one) and audits a failure.
pub fn complete(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
    job_id: &str,
    action: Action,
    outcome: Result<(), String>,
    minute_secs: i64,
) -> Result<Option<ManagedApp>, AppsError> {
    let Some(mut app) = store::get_owned::<ManagedApp, _>(&tx.open_table(APPS)?, &ws.key, id)?
    else {
        return Ok(None);
    };
    if app.job_id.as_deref() != Some(job_id) {
        return Ok(None);
    }
    let now = store::now();
    match (&outcome, action) {
        (Ok(()), Action::Start) => {
            app.status = AppStatus::Running;
            app.started_at = Some(now);
            app.auto_stop_at = deadline(now, app.auto_stop_minutes, minute_secs);
        }
        (Ok(()), Action::Stop) => {
            app.status = AppStatus::Stopped;
            app.stopped_at = Some(now);
            app.auto_stop_at = None;
        }
        (Err(e), _) => {
            app.status = AppStatus::Failed;
            app.last_error = Some(e.clone());
            // A failed app is not stopped again by the sweeper: someone must look.
            app.auto_stop_at = None;
        }
    }
    app.updated_at = now;
    put_app(tx, &ws.key, &app)?;
    if let Err(e) = &outcome {
        let what = match action {
            Action::Start => "start",
            Action::Stop => "stop",
        };
        let first = e.lines().next().unwrap_or_default();
        crate::audit::record(
            tx,
            ws.audit("app.failed")
                .target(&app.id)
                .detail(format!("{what} of {} failed: {first}", app.name)),
        )?;
    }
    Ok(Some(app))
}

/// Pushes a running app's auto-stop deadline `minutes` later (from now if it already
/// passed), never beyond `max_minutes` from now.
pub fn extend(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
    minutes: u32,
    max_minutes: u32,
    minute_secs: i64,
) -> Result<ManagedApp, AppsError> {
    if minutes == 0 || minutes > max_minutes {
        return Err(invalid(
            "invalid_minutes",
            format!("minutes must be 1-{max_minutes}"),
        ));
    }
    check_id(id, "app")?;
    let mut app: ManagedApp =
        store::get_owned(&tx.open_table(APPS)?, &ws.key, id)?.ok_or(AppsError::NotFound("app"))?;
    if app.status != AppStatus::Running {
        return Err(AppsError::Conflict {
            code: "app_not_running",
            message: "only a running app has an auto-stop deadline to extend".into(),
        });
    }
    let now = store::now();
    let Some(at) = app.auto_stop_at else {
        return Err(AppsError::Conflict {
            code: "auto_stop_off",
            message: "the app has no auto-stop (auto_stop_minutes is 0)".into(),
        });
    };
    let limit = now + i64::from(max_minutes) * minute_secs;
    app.auto_stop_at = Some((at.max(now) + i64::from(minutes) * minute_secs).min(limit));
    app.updated_at = now;
    put_app(tx, &ws.key, &app)?;
    crate::audit::record(
        tx,
        ws.audit("app.extend")
            .target(id)
            .detail(format!("{} by {minutes} min", app.name)),
    )?;
    Ok(app)
}

/// At start-up: an app left `starting`/`stopping` by a gateway that stopped has lost its
/// command (its job is failed `interrupted` by the jobs module); it turns `failed`.
pub fn fail_interrupted(tx: &WriteTransaction) -> Result<usize, AppsError> {
    let mut fixed = Vec::new();
    for row in tx.open_table(APPS)?.iter()? {
        let (k, v) = row?;
        let app: ManagedApp = store::decode(v.value())?;
        if matches!(app.status, AppStatus::Starting | AppStatus::Stopping) {
            fixed.push((k.value().0.to_string(), app));
        }
    }
    for (key, mut app) in fixed.iter().cloned() {
        app.status = AppStatus::Failed;
        app.last_error = Some(
            "interrupted: the gateway stopped while the command ran; check the server and start or stop again"
                .into(),
        );
        app.auto_stop_at = None;
        put_app(tx, &key, &app)?;
        let actor = app.started_by.clone().unwrap_or_else(|| "system".into());
        crate::audit::record(
            tx,
            crate::audit::Entry::new(&actor, "app.failed")
                .target(&app.id)
                .detail(format!("{}: interrupted by a gateway restart", app.name))
                .workspace(crate::workspace::team_of_key(&key).map(str::to_string)),
        )?;
    }
    Ok(fixed.len())
}
