//! How many finished jobs a workspace keeps: the newest `[jobs] keep_jobs`. Older ones
//! go with their targets' rows (and so their outputs, up to 32 MiB a target), removed by
//! a sweep at start and every [`SWEEP_EVERY`]. Without it every job ever run stayed on
//! disk, and every `GET /api/jobs` and statistics page read all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::Deserialize;

use super::model::{self, JobState};
use super::JobError;
use crate::app::App;
use crate::store::JOBS;

/// Time between sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Jobs removed per write transaction: a removal takes the job's target rows (and their
/// outputs) with it, and every other write of the gateway waits for the transaction.
pub const REMOVED_PER_TRANSACTION: usize = 200;

/// What a sweep reads of a job's row (the rest, legacy inline targets included, is
/// skipped by the JSON reader).
#[derive(Deserialize)]
struct JobAge {
    state: JobState,
    created_at: i64,
}

/// Starts the sweeper; call inside the Tokio runtime.
pub fn start(app: Arc<App>) {
    let keep = app.cfg.jobs.keep_jobs;
    if keep == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            if let Err(e) = sweep(&app, keep).await {
                tracing::error!(error = %e, "removing old jobs failed");
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// One sweep: the candidates are chosen in a read transaction (no lock on writers),
/// then removed a few hundred per write transaction.
async fn sweep(app: &Arc<App>, keep: usize) -> Result<(), JobError> {
    let doomed = app.store.read(move |tx| beyond_keep(tx, keep)).await?;
    let mut removed = 0;
    for chunk in doomed.chunks(REMOVED_PER_TRANSACTION) {
        let chunk = chunk.to_vec();
        removed += app
            .store
            .write(move |tx| remove_finished(tx, &chunk))
            .await?;
        tokio::task::yield_now().await;
    }
    if removed > 0 {
        tracing::info!(
            jobs = removed,
            "removed finished jobs beyond [jobs] keep_jobs"
        );
    }
    Ok(())
}

/// The finished jobs of each workspace beyond its newest `keep`, as (workspace, id).
/// Running and queued jobs never count and are never chosen.
pub fn beyond_keep(tx: &ReadTransaction, keep: usize) -> Result<Vec<(String, String)>, JobError> {
    let mut finished: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for row in tx.open_table(JOBS)?.iter()? {
        let (k, v) = row?;
        let (workspace, id) = k.value();
        let Ok(age) = serde_json::from_slice::<JobAge>(v.value()) else {
            continue;
        };
        if age.state.is_done() {
            finished
                .entry(workspace.to_string())
                .or_default()
                .push((age.created_at, id.to_string()));
        }
    }
    let mut doomed = Vec::new();
    for (workspace, mut list) in finished {
        if list.len() <= keep {
            continue;
        }
        // Newest first; ties by id so a sweep always picks the same ones.
        list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        for (_, id) in list.into_iter().skip(keep) {
            doomed.push((workspace.clone(), id));
        }
    }
    Ok(doomed)
}

/// Removes those of `jobs` that are still stored and finished; returns how many.
pub fn remove_finished(
    tx: &WriteTransaction,
    jobs: &[(String, String)],
) -> Result<usize, JobError> {
    let mut removed = 0;
    for (workspace, id) in jobs {
        let done = {
            let table = tx.open_table(JOBS)?;
            let row = table.get((workspace.as_str(), id.as_str()))?;
            row.and_then(|v| serde_json::from_slice::<JobAge>(v.value()).ok())
                .is_some_and(|a| a.state.is_done())
        };
        if done {
            model::remove(tx, workspace, id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::auth::Role;
    use crate::jobs::model::{Job, JobType, Target};
    use crate::store::JOB_TARGETS;

    fn job(workspace: &str, id: &str, state: JobState, created_at: i64) -> Job {
        Job {
            id: id.into(),
            kind: JobType::Command,
            state,
            workspace: workspace.into(),
            owner: "alice".into(),
            owner_role: Role::Operator,
            commands: vec!["show version".into()],
            concurrency: 2,
            created_at,
            finished_at: None,
            cancel_requested: false,
            schedule_id: None,
            retry_of: None,
            targets: (0..3).map(|i| Target::queued(format!("s{i}"))).collect(),
        }
    }

    #[test]
    fn the_newest_finished_jobs_of_each_workspace_stay_with_their_targets() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("t.redb")).expect("db");
        let tx = db.begin_write().expect("tx");
        for (i, state) in [
            JobState::Succeeded,
            JobState::Failed,
            JobState::Running,
            JobState::Cancelled,
            JobState::Succeeded,
        ]
        .into_iter()
        .enumerate()
        {
            model::put(&tx, &job("alice", &format!("a{i}"), state, i as i64)).expect("put");
        }
        model::put(&tx, &job("team:t1", "t0", JobState::Succeeded, 0)).expect("put");
        tx.commit().expect("commit");
        // Keep 2: of alice's four finished jobs a0 and a1 go; the running a2 stays, as
        // does the other workspace's only job.
        let rx = db.begin_read().expect("rx");
        let mut doomed = beyond_keep(&rx, 2).expect("choose");
        drop(rx);
        doomed.sort();
        assert_eq!(
            doomed,
            [
                ("alice".to_string(), "a0".to_string()),
                ("alice".into(), "a1".into())
            ]
        );
        let tx = db.begin_write().expect("tx");
        assert_eq!(remove_finished(&tx, &doomed).expect("remove"), 2);
        // Chosen again (a sweep raced another): nothing more goes.
        assert_eq!(remove_finished(&tx, &doomed).expect("remove"), 0);
        tx.commit().expect("commit");
        let rx = db.begin_read().expect("rx");
        let mut left: Vec<String> = model::list(&rx, "alice", |_| false)
            .expect("list")
            .into_iter()
            .map(|(j, _)| j.id)
            .collect();
        left.sort();
        assert_eq!(left, ["a2", "a3", "a4"]);
        assert_eq!(
            model::list(&rx, "team:t1", |_| false).expect("list").len(),
            1
        );
        let rows = rx.open_table(JOB_TARGETS).expect("targets");
        // Three target rows a job, and a summary row for each finished one (a3, a4, t0).
        assert_eq!(
            rows.len().expect("len"),
            4 * 3 + 3,
            "the removed jobs' targets and summaries went too"
        );
        drop(rows);
        drop(rx);
        // A job chosen while finished but stored as running again is left alone.
        let tx = db.begin_write().expect("tx");
        model::put(&tx, &job("alice", "a5", JobState::Running, 9)).expect("put");
        let chosen = [("alice".to_string(), "a5".to_string())];
        assert_eq!(remove_finished(&tx, &chosen).expect("remove"), 0);
    }
}
