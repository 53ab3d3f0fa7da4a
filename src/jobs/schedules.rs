//! Cron schedules that start jobs. Standard 5-field cron (minute hour day-of-month month
//! day-of-week) parsed by `croner`; an optional `timezone` is an IANA name
//! (`Europe/Berlin`, DST-correct through `chrono-tz`), `UTC` (the default) or a fixed
//! offset (`+02:00`, `-05:30`). An unknown one is 400 `invalid_schedule` with the reason.
//!
//! The scheduler task wakes every few seconds and starts each enabled schedule whose
//! next run after its last run (or its creation) has come. A run missed while the
//! gateway was down therefore runs once at start, not once per missed slot: the
//! schedule's `last_run` becomes now and the next run is computed from there.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{FixedOffset, TimeZone, Utc};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::routes::{build_job, submit, JobInput, JobStarted};
use super::JobError;
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody, WorkspaceHeader, WorkspaceQuery};
use crate::store::{self, SCHEDULES};
use crate::workspace::{self, team_of_key, Scope, TeamsRead, Workspace};

/// How often the scheduler looks for due schedules.
const TICK: Duration = Duration::from_secs(5);

/// A stored schedule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub job: JobInput,
    pub enabled: bool,
    pub owner: String,
    pub owner_role: Role,
    pub workspace: String,
    pub created_at: i64,
    #[serde(default)]
    pub last_run: Option<i64>,
    #[serde(default)]
    pub last_job_id: Option<String>,
    /// Why the last due run could not start, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A schedule as a client sends it (create, replace).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// 1 to 200 characters.
    pub name: String,
    /// Standard 5 fields: minute hour day-of-month month day-of-week.
    #[schema(example = "0 3 * * *")]
    pub cron: String,
    /// `UTC` (default), `Z`, or a fixed offset like `+02:00`.
    #[serde(default)]
    pub timezone: Option<String>,
    pub job: JobInput,
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_schedule", m)
}

/// A schedule's time zone: an IANA zone (DST-aware, from `chrono-tz`'s copy of the tz
/// database) or a fixed offset.
#[derive(Debug, Clone, Copy)]
enum Zone {
    Iana(chrono_tz::Tz),
    Fixed(FixedOffset),
}

/// Parses `tz`: absent, `UTC` or `Z`; a fixed offset `+HH:MM` / `-HH:MM`; or an IANA
/// name such as `Europe/Berlin`.
fn zone(tz: Option<&str>) -> Result<Zone, String> {
    let utc = || Zone::Iana(chrono_tz::UTC);
    let Some(tz) = tz.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(utc());
    };
    if tz.eq_ignore_ascii_case("utc") || tz == "Z" {
        return Ok(utc());
    }
    let sign = match tz.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => {
            return tz.parse::<chrono_tz::Tz>().map(Zone::Iana).map_err(|_| {
                format!(
                    "timezone {tz:?} is not an IANA time zone name (like Europe/Berlin), UTC or a fixed offset (like +02:00)"
                )
            })
        }
    };
    let err = || format!("timezone {tz:?}: a fixed offset is +HH:MM or -HH:MM, at most 14 hours");
    let (h, m) = tz[1..].split_once(':').ok_or_else(err)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(err());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
        .map(Zone::Fixed)
        .ok_or_else(err)
}

/// Checks a 5-field cron expression.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron {expr:?} has {fields} fields; use the standard 5 (minute hour day-of-month month day-of-week)"
        ));
    }
    croner::Cron::from_str(expr).map_err(|e| format!("cron {expr:?}: {e}"))
}

/// The first run strictly after `after` (unix seconds), as unix seconds. Wall-clock
/// times are those of the zone, so `0 2 * * *` in Europe/Berlin is 01:00 UTC in winter
/// and 00:00 UTC in summer; croner handles the DST days (a time skipped in spring runs
/// at the first instant after the gap, a repeated hour in autumn runs once).
pub fn next_after(cron: &str, tz: Option<&str>, after: i64) -> Result<i64, String> {
    let c = parse_cron(cron)?;
    fn next<Z: TimeZone>(c: &croner::Cron, z: Z, after: i64) -> Result<i64, String> {
        let start = z
            .timestamp_opt(after, 0)
            .single()
            .ok_or_else(|| "time out of range".to_string())?;
        c.find_next_occurrence(&start, false)
            .map(|t| t.with_timezone(&Utc).timestamp())
            .map_err(|e| format!("no next run: {e}"))
    }
    match zone(tz)? {
        Zone::Iana(z) => next(&c, z, after),
        Zone::Fixed(z) => next(&c, z, after),
    }
}

/// A schedule as the API shows it: with its next run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Unix seconds; null when disabled.
    pub next_run: Option<i64>,
}

fn view(s: &Schedule) -> ScheduleView {
    let from = s.last_run.unwrap_or(s.created_at).max(s.created_at);
    let next = if s.enabled {
        next_after(&s.cron, s.timezone.as_deref(), from).ok()
    } else {
        None
    };
    ScheduleView {
        schedule: s.clone(),
        next_run: next,
    }
}

fn put(tx: &WriteTransaction, s: &Schedule) -> Result<(), JobError> {
    tx.open_table(SCHEDULES)?.insert(
        (s.workspace.as_str(), s.id.as_str()),
        store::encode(s)?.as_slice(),
    )?;
    Ok(())
}

fn get(tx: &ReadTransaction, ws: &str, id: &str) -> Result<Option<Schedule>, JobError> {
    Ok(store::get_owned(&tx.open_table(SCHEDULES)?, ws, id)?)
}

async fn check_input(app: &Arc<App>, ws: &Workspace, input: &ScheduleInput) -> ApiResult<()> {
    if input.name.trim().is_empty() || input.name.len() > 200 {
        return Err(bad("name must be 1 to 200 characters"));
    }
    parse_cron(&input.cron).map_err(bad)?;
    zone(input.timezone.as_deref()).map_err(bad)?;
    // The job is checked as POST /api/jobs would (type, targets in this workspace …).
    build_job(app, &ws.scope, ws.user.role, input.job.clone()).await?;
    Ok(())
}

/// `POST /api/schedules`
#[utoipa::path(post, path = "/api/schedules", tag = "schedules", operation_id = "create_schedule", params(WorkspaceQuery, WorkspaceHeader), request_body = ScheduleInput,
    responses((status = 201, description = "Created", body = ScheduleView), (status = 400, description = "`invalid_schedule`: bad name, cron or timezone; the job's own codes as for `POST /api/jobs` (`invalid_job_type`, `invalid_targets`, `invalid_commands`, `invalid_concurrency`).", body = ErrorBody),
        (status = 404, description = "`not_found`: a target is not a saved session of the workspace.", body = ErrorBody),
        (status = 409, description = "`limit_reached`: the workspace holds `[jobs] max_schedules` schedules.", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<impl IntoResponse> {
    check_input(&app, &ws, &input).await?;
    let s = Schedule {
        id: store::new_id(),
        name: input.name.trim().to_string(),
        cron: input.cron.trim().to_string(),
        timezone: input.timezone,
        job: input.job,
        enabled: input.enabled.unwrap_or(true),
        owner: ws.user.username.clone(),
        owner_role: ws.user.role,
        workspace: ws.scope.key.clone(),
        created_at: store::now(),
        last_run: None,
        last_job_id: None,
        last_error: None,
    };
    let s2 = s.clone();
    let entry = ws
        .scope
        .audit("schedule.create")
        .detail(format!("schedule {} ({})", s.id, s.name));
    let max = app.cfg.jobs.max_schedules;
    app.store
        .write(move |tx| -> Result<(), JobError> {
            if store::count_owned(&tx.open_table(SCHEDULES)?, &s2.workspace)? >= max {
                return Err(JobError::Limit(format!(
                    "at most {max} schedules per workspace ([jobs] max_schedules)"
                )));
            }
            put(tx, &s2)?;
            crate::audit::record(tx, entry)?;
            Ok(())
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(&s))))
}

/// `GET /api/schedules`
#[utoipa::path(get, path = "/api/schedules", tag = "schedules", operation_id = "list_schedules", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The workspace's schedules with their next and last runs", body = Vec<ScheduleView>)))]
pub async fn list(State(app): State<Arc<App>>, ws: Workspace) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let all: Vec<(String, Schedule)> = app
        .store
        .read(move |tx| -> Result<_, JobError> {
            Ok(store::list_owned(&tx.open_table(SCHEDULES)?, &key)?)
        })
        .await?;
    Ok(Json(all.iter().map(|(_, s)| view(s)).collect::<Vec<_>>()))
}

/// `PUT /api/schedules/{id}`: replaces name, cron, timezone, job and enabled.
#[utoipa::path(put, path = "/api/schedules/{id}", tag = "schedules", operation_id = "update_schedule", params(("id" = String, Path, description = "Schedule id"), WorkspaceQuery, WorkspaceHeader), request_body = ScheduleInput,
    responses((status = 200, description = "Replaced", body = ScheduleView), (status = 400, description = "`invalid_schedule`: bad name, cron or timezone; the job's own codes as for `POST /api/jobs` (`invalid_job_type`, `invalid_targets`, `invalid_commands`, `invalid_concurrency`).", body = ErrorBody), (status = 404, description = "`not_found`: no schedule with this id in the workspace (or a target is not a saved session of it).", body = ErrorBody)))]
pub async fn update(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<impl IntoResponse> {
    check_input(&app, &ws, &input).await?;
    let key = ws.scope.key.clone();
    let entry = ws
        .scope
        .audit("schedule.update")
        .detail(format!("schedule {id}"));
    let s = app
        .store
        .write(move |tx| -> Result<Schedule, JobError> {
            let mut s: Schedule = store::get_owned(&tx.open_table(SCHEDULES)?, &key, &id)?
                .ok_or(JobError::NotFound("schedule"))?;
            s.name = input.name.trim().to_string();
            s.cron = input.cron.trim().to_string();
            s.timezone = input.timezone;
            s.job = input.job;
            if let Some(e) = input.enabled {
                s.enabled = e;
            }
            put(tx, &s)?;
            crate::audit::record(tx, entry)?;
            Ok(s)
        })
        .await?;
    Ok(Json(view(&s)))
}

/// `DELETE /api/schedules/{id}`
#[utoipa::path(delete, path = "/api/schedules/{id}", tag = "schedules", operation_id = "delete_schedule", params(("id" = String, Path, description = "Schedule id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted (jobs it started stay)"), (status = 404, description = "`not_found`: no schedule with this id in the workspace (or a target is not a saved session of it).", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let entry = ws
        .scope
        .audit("schedule.delete")
        .detail(format!("schedule {id}"));
    app.store
        .write(move |tx| -> Result<(), JobError> {
            if tx
                .open_table(SCHEDULES)?
                .remove((key.as_str(), id.as_str()))?
                .is_none()
            {
                return Err(JobError::NotFound("schedule"));
            }
            crate::audit::record(tx, entry)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/schedules/{id}/run-now`: starts its job now → 202 `{"id"}` (the job's).
#[utoipa::path(post, path = "/api/schedules/{id}/run-now", tag = "schedules", operation_id = "run_schedule_now", params(("id" = String, Path, description = "Schedule id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 202, description = "Its job started", body = JobStarted), (status = 400, description = "`invalid_schedule`: bad name, cron or timezone; the job's own codes as for `POST /api/jobs` (`invalid_job_type`, `invalid_targets`, `invalid_commands`, `invalid_concurrency`).", body = ErrorBody), (status = 404, description = "`not_found`: no schedule with this id in the workspace (or a target is not a saved session of it).", body = ErrorBody), (status = 409, description = "`limit_reached`: the workspace's live jobs are at `[jobs] max_live_jobs` or `max_live_targets`.", body = ErrorBody)))]
pub async fn run_now(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let s = app
        .store
        .read(move |tx| get(tx, &key, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    let job_id = start(&app, s, false).await?;
    Ok((StatusCode::ACCEPTED, Json(JobStarted { id: job_id })))
}

/// Starts a schedule's job as its owner and records the run.
async fn start(app: &Arc<App>, s: Schedule, due: bool) -> ApiResult<String> {
    let scope = match team_of_key(&s.workspace) {
        Some(t) => Scope::team(t, &s.owner),
        None => Scope::personal(&s.owner),
    };
    // The owner must still operate in the workspace.
    // The job runs with the owner's global role of now, not the one they had when
    // they made the schedule.
    let (sc, owner) = (scope.clone(), s.owner.clone());
    let (now_role, global) = app
        .store
        .read(move |tx| -> Result<_, workspace::WorkspaceError> {
            Ok((workspace::current_role(tx, &sc)?, tx.global_role(&owner)?))
        })
        .await
        .map_err(ApiError::internal)?;
    let runs_as = match (now_role, global) {
        (Some(r), Some(global)) if r >= Role::Operator => Some(global),
        _ => None,
    };
    // A due run whose previous run is still going skips its turn: a schedule that fires
    // faster than its job finishes would otherwise pile jobs up without end.
    let still_running = s
        .last_job_id
        .as_deref()
        .filter(|id| due && app.jobs.is_live(id));
    let result = if let Some(previous) = still_running {
        Err(ApiError::conflict(
            "schedule_busy",
            format!("skipped: the previous run (job {previous}) is still running"),
        ))
    } else if let Some(global) = runs_as {
        match build_job(app, &scope, global, s.job.clone()).await {
            Ok(mut job) => {
                job.schedule_id = Some(s.id.clone());
                submit(app, job).await
            }
            Err(e) => Err(e),
        }
    } else {
        Err(ApiError::forbidden(
            "the schedule's owner may no longer run jobs in its workspace",
        ))
    };
    let (ws, id) = (s.workspace.clone(), s.id.clone());
    let outcome = result.clone().map_err(|e| e.message);
    let now = store::now();
    app.store
        .write(move |tx| -> Result<(), JobError> {
            let Some(mut cur): Option<Schedule> =
                store::get_owned(&tx.open_table(SCHEDULES)?, &ws, &id)?
            else {
                return Ok(());
            };
            if due {
                cur.last_run = Some(now);
            }
            match outcome {
                Ok(job) => {
                    cur.last_job_id = Some(job);
                    cur.last_error = None;
                    if !due {
                        cur.last_run = Some(now);
                    }
                }
                Err(e) => cur.last_error = Some(e),
            }
            put(tx, &cur)
        })
        .await?;
    result
}

/// Runs due schedules until the process ends (see the module comment).
pub async fn scheduler(app: Arc<App>) {
    loop {
        let all = app
            .store
            .read(|tx| -> Result<Vec<Schedule>, JobError> {
                let mut out = Vec::new();
                for row in tx.open_table(SCHEDULES)?.iter()? {
                    let (_, v) = row?;
                    out.push(store::decode(v.value())?);
                }
                Ok(out)
            })
            .await;
        match all {
            Ok(all) => {
                let now = store::now();
                for s in all.into_iter().filter(|s| s.enabled) {
                    let from = s.last_run.unwrap_or(s.created_at).max(s.created_at);
                    let due = next_after(&s.cron, s.timezone.as_deref(), from)
                        .is_ok_and(|next| next <= now);
                    if due {
                        let id = s.id.clone();
                        if let Err(e) = start(&app, s, true).await {
                            tracing::warn!(schedule = %id, error = %e.message, "scheduled job did not start");
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading schedules failed"),
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_and_timezones() {
        assert!(parse_cron("0 2 * * *").is_ok());
        assert!(parse_cron("*/15 * * * 1-5").is_ok());
        assert!(parse_cron("0 2 * *").is_err());
        assert!(parse_cron("0 0 2 * * *").is_err());
        assert!(parse_cron("61 2 * * *").is_err());
        assert!(parse_cron("0 25 * * *").is_err());
        // 2026-01-01 00:00:00 UTC
        let t = 1_767_225_600;
        assert_eq!(next_after("0 2 * * *", None, t), Ok(t + 2 * 3600));
        assert_eq!(
            next_after("0 2 * * *", Some("+02:00"), t),
            Ok(t + 24 * 3600)
        );
        assert_eq!(next_after("0 2 * * *", Some("-01:00"), t), Ok(t + 3 * 3600));
        assert!(next_after("0 2 * * *", Some("Mars/Olympus"), t).is_err());
        assert!(next_after("0 2 * * *", Some("+25:00"), t).is_err());
    }

    #[test]
    fn iana_zones_follow_daylight_saving() {
        let h = 3600;
        // 2026-01-15 00:00 UTC: Berlin is UTC+1, so 09:00 there is 08:00 UTC.
        let jan = 1_768_435_200;
        assert_eq!(
            next_after("0 9 * * *", Some("Europe/Berlin"), jan),
            Ok(jan + 8 * h)
        );
        // 2026-07-15 00:00 UTC: summer time, UTC+2.
        let jul = 1_784_073_600;
        assert_eq!(
            next_after("0 9 * * *", Some("Europe/Berlin"), jul),
            Ok(jul + 7 * h)
        );
        assert_eq!(
            next_after("0 9 * * *", Some("America/New_York"), jul),
            Ok(jul + 13 * h)
        );
        // Across the spring change (2026-03-29 01:00 UTC): the day before at 09:00 CET
        // is 08:00 UTC, the day after 07:00 UTC.
        let mar28 = 1_774_656_000;
        assert_eq!(
            next_after("0 9 * * *", Some("Europe/Berlin"), mar28),
            Ok(mar28 + 8 * h)
        );
        assert_eq!(
            next_after("0 9 * * *", Some("Europe/Berlin"), mar28 + 86_400),
            Ok(mar28 + 86_400 + 7 * h)
        );
        // 02:30 does not exist in Berlin on 2026-03-29: the run is not lost that day.
        let r = next_after("30 2 * * *", Some("Europe/Berlin"), mar28 + 86_400).expect("next");
        assert!(r < mar28 + 2 * 86_400, "{r}");
        // 02:30 happens twice on 2026-10-25 (CEST then CET): it runs once that day.
        let oct25 = 1_792_886_400;
        let first = next_after("30 2 * * *", Some("Europe/Berlin"), oct25).expect("next");
        let second = next_after("30 2 * * *", Some("Europe/Berlin"), first).expect("next");
        assert!(first >= oct25 && first < oct25 + 86_400, "{first}");
        assert!(second >= oct25 + 86_400, "{first} then {second}");
    }
}
