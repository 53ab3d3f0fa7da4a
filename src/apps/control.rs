//! Starting and stopping apps, and the auto-stop sweeper.
//!
//! A start or stop is one job (`app_start`/`app_stop`) with one target, the server:
//! [`model::begin`] moves the app and creates the job in one transaction, then a task
//! connects with the inventory's credential and trusted host keys (the same
//! `ssh::DeviceConn` as fleet jobs: an unknown key fails with `hostkey_unknown`), runs
//! the one command, streams its output on the job, and records the outcome on the app
//! before it ends the job (so a client that sees the job end reads the app's new state).

use std::sync::Arc;
use std::time::Duration;

use opsgate_protocol::codes;
use russh::ChannelMsg;
use tokio::sync::watch;

use super::model::{self, ManagedApp};
use super::remote::Action;
use super::state::{self, Begun, Trigger};
use super::AppsError;
use crate::app::App;
use crate::auth::Role;
use crate::inventory;
use crate::jobs::external::ExternalJob;
use crate::jobs::model::TargetError;
use crate::ssh::DeviceConn;
use crate::store;
use crate::workspace::{team_of_key, Scope};

/// Error code of a command that exited non-zero.
pub const COMMAND_FAILED: &str = "command_failed";
/// Error code of a command that ran past `[apps] command_timeout_secs`.
pub const COMMAND_TIMEOUT: &str = "command_timeout";
/// How much of the output's end goes into the app's `last_error`.
const ERROR_TAIL: usize = 4096;

/// Starts or stops app `id` of workspace `ws` as a user with role `role` there.
/// Returns at once with the app (now `starting`/`stopping`) and its job; the command
/// runs in the background.
pub async fn launch(
    app: &Arc<App>,
    ws: Scope,
    role: Role,
    id: String,
    action: Action,
    trigger: Trigger,
) -> Result<Begun, AppsError> {
    // Stopping an app at its deadline is the gateway's housekeeping: it must work after
    // whoever started the app was demoted.
    let access = match trigger {
        Trigger::AutoStop(_) => crate::ssh::Access::Housekeeping,
        Trigger::User => crate::ssh::Access::Actor,
    };
    let ws2 = ws.clone();
    let begun = app
        .store
        .write(move |tx| state::begin(tx, &ws2, role, &id, action, &trigger))
        .await?;
    // Registered as live before the 202 answer: a client that opens the job's channel
    // right after it must find the live job, or it would see `queued` forever.
    let job = ExternalJob::start(app, begun.job.clone(), app.cfg.apps.output_bytes);
    let (app2, b) = (app.clone(), begun.clone());
    let span = tracing::info_span!("app", id = %begun.app.id, job = %begun.job.id);
    tokio::spawn(tracing::Instrument::instrument(
        run(app2, ws, access, b, action, job),
        span,
    ));
    Ok(begun)
}

async fn run(
    app: Arc<App>,
    ws: Scope,
    access: crate::ssh::Access,
    begun: Begun,
    action: Action,
    mut job: ExternalJob,
) {
    // The job stays `queued` while `max_running_commands` others run; a cancel then
    // ends it without connecting.
    let permit = tokio::select! {
        p = app.apps.commands.clone().acquire_owned() => p.ok(),
        _ = cancelled(job.cancel_receiver()) => None,
    };
    let result = match permit {
        Some(_permit) => {
            job.running(&begun.command).await;
            execute(&app, &ws, access, &begun.app, &begun.command, &mut job).await
        }
        None => Err(fail("cancelled", "cancelled before the command started")),
    };
    let for_app = match &result {
        Ok(()) => Ok(()),
        Err(e) => {
            let tail = job.output_tail();
            let tail = tail_chars(tail.trim_end(), ERROR_TAIL);
            Err(if tail.is_empty() {
                format!("{}: {}", e.code, e.message)
            } else {
                format!("{}: {}\n{tail}", e.code, e.message)
            })
        }
    };
    tracing::info!(ok = result.is_ok(), ?action, "app command finished");
    let (ws2, id, job_id) = (ws.clone(), begun.app.id.clone(), begun.job.id.clone());
    let minute = app.cfg.apps.auto_stop_minute_secs.max(1) as i64;
    if let Err(e) = app
        .store
        .write(move |tx| state::complete(tx, &ws2, &id, &job_id, action, for_app, minute))
        .await
    {
        tracing::error!(error = %e, "recording the app's new state failed");
    }
    job.finish(result).await;
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = s.len() - max;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn fail(code: &str, message: impl Into<String>) -> TargetError {
    TargetError {
        code: code.to_string(),
        message: message.into(),
    }
}

async fn cancelled(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn execute(
    app: &Arc<App>,
    ws: &Scope,
    access: crate::ssh::Access,
    target: &ManagedApp,
    command: &str,
    job: &mut ExternalJob,
) -> Result<(), TargetError> {
    let (key, sid) = (ws.key.clone(), target.server_id.clone());
    let session = app
        .store
        .read(move |tx| inventory::get_session(tx, &key, &sid))
        .await
        .map_err(|e| fail(codes::CHANNEL_FAILED, e.to_string()))?
        .ok_or_else(|| {
            fail(
                codes::NOT_FOUND,
                "the server's saved session no longer exists",
            )
        })?;
    let cancel = job.cancel_receiver();
    let conn = tokio::select! {
        c = DeviceConn::connect(app, ws, &session, access) => c.map_err(|e| fail(e.code, e.message))?,
        _ = cancelled(cancel.clone()) => return Err(fail("cancelled", "cancelled before the command started")),
    };
    let result = stream(app, &conn, command, job, cancel).await;
    conn.disconnect().await;
    result
}

/// Runs `command` and streams its output (stdout and stderr, in arrival order) into
/// the job until the channel closes; fails on a non-zero exit, a timeout or a cancel.
async fn stream(
    app: &Arc<App>,
    conn: &DeviceConn,
    command: &str,
    job: &mut ExternalJob,
    cancel: watch::Receiver<bool>,
) -> Result<(), TargetError> {
    let limit = Duration::from_secs(app.cfg.apps.command_timeout_secs.max(1));
    let mut ch = conn
        .exec(command)
        .await
        .map_err(|e| fail(codes::CHANNEL_FAILED, e.to_string()))?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut status = None;
    let mut signal = None;
    let stop = cancelled(cancel);
    tokio::pin!(stop);
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(deadline, ch.wait()) => m,
            _ = &mut stop => {
                let _ = ch.close().await;
                return Err(fail("cancelled", "cancelled while the command ran"));
            }
        };
        match msg {
            Err(_) => {
                let _ = ch.close().await;
                return Err(fail(
                    COMMAND_TIMEOUT,
                    format!("the command did not finish within {} s", limit.as_secs()),
                ));
            }
            Ok(Some(ChannelMsg::Data { data }))
            | Ok(Some(ChannelMsg::ExtendedData { data, .. })) => job.output(&data),
            Ok(Some(ChannelMsg::ExitStatus { exit_status })) => status = Some(exit_status),
            Ok(Some(ChannelMsg::ExitSignal { signal_name, .. })) => {
                signal = Some(format!("{signal_name:?}"))
            }
            Ok(Some(ChannelMsg::Close)) | Ok(None) => break,
            Ok(Some(_)) => {}
        }
    }
    match (status, signal) {
        (Some(0), _) => Ok(()),
        (Some(n), _) => Err(fail(
            COMMAND_FAILED,
            format!("the command exited with status {n}"),
        )),
        (None, Some(s)) => Err(fail(
            COMMAND_FAILED,
            format!("the command was killed by signal {s}"),
        )),
        (None, None) => Err(fail(
            codes::REMOTE_CLOSED,
            "the server closed the channel without an exit status",
        )),
    }
}

/// The auto-stop sweeper: every `[apps] sweep_interval_secs`, stops running apps whose
/// deadline has passed, as the user who started them (audited `app.auto_stop` with the
/// reason). Deadlines are stored, so a deadline that passed while the gateway was down
/// is acted on at the first sweep after start.
pub async fn sweeper(app: Arc<App>) {
    let every = Duration::from_secs(app.cfg.apps.sweep_interval_secs.max(1));
    loop {
        if let Err(e) = sweep_once(&app).await {
            tracing::warn!(error = %e, "auto-stop sweep failed");
        }
        tokio::time::sleep(every).await;
    }
}

/// One sweep; returns how many stops it launched.
pub async fn sweep_once(app: &Arc<App>) -> Result<usize, AppsError> {
    let now = store::now();
    let due: Vec<(String, ManagedApp)> = app
        .store
        .read(model::all_apps)
        .await?
        .into_iter()
        .filter(|(_, a)| {
            a.status == model::AppStatus::Running && a.auto_stop_at.is_some_and(|t| t <= now)
        })
        .collect();
    let mut n = 0;
    for (key, a) in due {
        let actor = a.started_by.clone().unwrap_or_else(|| key.clone());
        let ws = match team_of_key(&key) {
            Some(team) => Scope::team(team, &actor),
            None => Scope::personal(&key),
        };
        let role = a.started_by_role.unwrap_or(Role::Operator);
        let reason = format!(
            "auto-stop after {} min (started at {}, deadline {})",
            a.auto_stop_minutes,
            a.started_at.unwrap_or_default(),
            a.auto_stop_at.unwrap_or_default()
        );
        match launch(
            app,
            ws,
            role,
            a.id.clone(),
            Action::Stop,
            Trigger::AutoStop(reason),
        )
        .await
        {
            Ok(b) => {
                tracing::info!(app = %a.id, job = %b.job.id, "auto-stop");
                n += 1;
            }
            // Stopped or started again by someone in between: nothing to do.
            Err(AppsError::Conflict { .. }) => {}
            Err(e) => tracing::warn!(app = %a.id, error = %e, "auto-stop could not start"),
        }
    }
    Ok(n)
}
