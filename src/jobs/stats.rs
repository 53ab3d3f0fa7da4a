//! `GET /api/statistics`: dashboard figures for the selected workspace, computed from
//! the inventory, the jobs and the config versions in one read transaction.
//!
//! Backup outcomes come from the backup jobs of the last 7 days (or of
//! `stale_after_hours`, if longer): a device is "failed" when its newest backup in that
//! window failed; its last successful backup also comes from its newest config version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use redb::ReadTransaction;
use serde_json::{json, Value};

use super::model::{self, JobType, TargetState};
use super::{configs, JobError};
use crate::app::App;
use crate::error::ApiResult;
use crate::http::{WorkspaceHeader, WorkspaceQuery};
use crate::inventory::SavedSession;
use crate::store::{self, SAVED_SESSIONS};
use crate::workspace::Workspace;

const DAY: i64 = 86_400;

/// The figures for workspace `key` at time `now`.
pub fn compute(
    tx: &ReadTransaction,
    key: &str,
    now: i64,
    stale_after_hours: u64,
) -> Result<Value, JobError> {
    let sessions: Vec<(String, SavedSession)> =
        store::list_owned(&tx.open_table(SAVED_SESSIONS)?, key)?;
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_folder: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in &sessions {
        let t = serde_json::to_value(s.device_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *by_type.entry(t).or_default() += 1;
        *by_folder.entry(s.folder.clone()).or_default() += 1;
    }
    // Only the targets of backups that ran in the window are read (they hold no output;
    // a target starts before its job finishes, so a job finished before the window has
    // none in it): what a dashboard costs follows the last days' backups, not the up to
    // `keep_jobs` × `max_targets` rows every kept job holds. Other jobs count by state.
    let window = (7 * DAY).max((stale_after_hours as i64).saturating_mul(3600));
    let jobs = model::list(tx, key, |j| {
        j.kind == JobType::ConfigBackup && j.finished_at.is_none_or(|f| now - f <= window)
    })?;
    let mut jobs_by_state: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ok24, mut fail24, mut ok7, mut fail7) = (0, 0, 0, 0);
    // Per device: (time, succeeded) of its newest finished backup, and its newest success.
    let mut last: HashMap<String, (i64, bool)> = HashMap::new();
    let mut last_ok: HashMap<String, i64> = HashMap::new();
    for (j, _) in &jobs {
        let state = serde_json::to_value(j.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *jobs_by_state.entry(state).or_default() += 1;
        if j.kind != JobType::ConfigBackup || j.targets.is_empty() {
            continue;
        }
        for t in &j.targets {
            let Some(at) = t.started_at else { continue };
            let ok = match t.state {
                TargetState::Succeeded => true,
                TargetState::Failed => false,
                _ => continue,
            };
            let age = now - at;
            if age <= DAY {
                if ok {
                    ok24 += 1
                } else {
                    fail24 += 1
                }
            }
            if age <= 7 * DAY {
                if ok {
                    ok7 += 1
                } else {
                    fail7 += 1
                }
            }
            let e = last.entry(t.session_id.clone()).or_insert((at, ok));
            if at >= e.0 {
                *e = (at, ok);
            }
            if ok {
                let e = last_ok.entry(t.session_id.clone()).or_insert(at);
                *e = (*e).max(at);
            }
        }
    }
    // A successful backup also marks its config version as seen: the config index keeps
    // that for every device, whatever `[jobs] keep_jobs` has removed of the jobs.
    let versions = configs::list(tx, key, None)?;
    for v in &versions {
        let e = last_ok
            .entry(v.session_id.clone())
            .or_insert(v.last_checked);
        *e = (*e).max(v.last_checked);
    }
    let stale_secs = (stale_after_hours as i64).saturating_mul(3600);
    let mut failed_devices = Vec::new();
    let mut stale_devices = Vec::new();
    for (id, s) in &sessions {
        if last.get(id).is_some_and(|(_, ok)| !ok) {
            failed_devices.push(json!({"session_id": id, "display_name": s.display_name}));
        }
        match last_ok.get(id) {
            Some(at) if now - at <= stale_secs => {}
            other => stale_devices.push(json!({
                "session_id": id, "display_name": s.display_name, "last_backup": other,
            })),
        }
    }
    let changed24 = versions
        .iter()
        .filter(|v| now - v.created_at <= DAY)
        .count();
    let bytes: usize = versions.iter().map(|v| v.bytes).sum();
    Ok(json!({
        "devices": {"total": sessions.len(), "by_type": by_type, "by_folder": by_folder},
        "backups": {
            "last_24h": {"succeeded": ok24, "failed": fail24},
            "last_7d": {"succeeded": ok7, "failed": fail7},
        },
        "failed_devices": failed_devices,
        "stale_devices": stale_devices,
        "stale_after_hours": stale_after_hours,
        "configs_changed_24h": changed24,
        "storage": {"config_versions": versions.len(), "config_bytes": bytes},
        "jobs_by_state": jobs_by_state,
    }))
}

/// `GET /api/statistics`
#[utoipa::path(get, path = "/api/statistics", tag = "system", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Dashboard figures of the workspace", body = crate::http::Statistics)))]
pub async fn statistics(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<impl IntoResponse> {
    let key = ws.scope.key.clone();
    let hours = app.cfg.jobs.stale_after_hours;
    let v = app
        .store
        .read(move |tx| compute(tx, &key, store::now(), hours))
        .await?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::jobs::model::{Job, JobState, Target};
    use crate::store::{Store, JOB_TARGETS};
    use redb::ReadableTable;

    fn backup(id: &str, finished_at: i64, failed: &str) -> Job {
        let mut targets = Vec::new();
        for s in ["s1", "s2"] {
            let mut t = Target::queued(s.into());
            t.started_at = Some(finished_at - 60);
            t.state = if s == failed {
                TargetState::Failed
            } else {
                TargetState::Succeeded
            };
            targets.push(t);
        }
        Job {
            id: id.into(),
            kind: JobType::ConfigBackup,
            state: JobState::Failed,
            workspace: "alice".into(),
            owner: "alice".into(),
            owner_role: Role::Operator,
            commands: Vec::new(),
            concurrency: 2,
            created_at: finished_at - 120,
            finished_at: Some(finished_at),
            cancel_requested: false,
            schedule_id: None,
            retry_of: None,
            targets,
        }
    }

    /// A backup job that finished before the window is counted by its summary row; its
    /// target rows are not read (here they are unreadable), the recent one's are.
    #[test]
    fn only_recent_backups_targets_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        let now = 100 * DAY;
        store
            .write_blocking(|tx| -> Result<(), JobError> {
                model::put(tx, &backup("old", now - 8 * DAY, "s1"))?;
                model::put(tx, &backup("new", now - 3600, "s2"))?;
                let (from, to) = model::target_bounds("old");
                let mut t = tx.open_table(JOB_TARGETS)?;
                let keys: Vec<String> = t
                    .range(("alice", from.as_str())..("alice", to.as_str()))?
                    .map(|r| r.map(|(k, _)| k.value().1.to_string()))
                    .collect::<Result<_, _>>()?;
                assert_eq!(keys.len(), 2);
                for k in keys {
                    t.insert(("alice", k.as_str()), b"unreadable".as_slice())?;
                }
                Ok(())
            })
            .expect("write");
        let v = store
            .read_blocking(|tx| compute(tx, "alice", now, 48))
            .expect("the old job's target rows are not read");
        assert_eq!(
            v["backups"]["last_7d"],
            json!({"succeeded": 1, "failed": 1})
        );
        assert_eq!(
            v["backups"]["last_24h"],
            json!({"succeeded": 1, "failed": 1})
        );
        assert_eq!(v["jobs_by_state"]["failed"], 2);
    }
}
