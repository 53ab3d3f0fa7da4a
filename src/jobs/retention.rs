//! How many finished jobs a workspace keeps: the newest `[jobs] keep_jobs`. Older ones
//! go with their targets' rows (and so their outputs, up to 32 MiB a target), removed by
//! a sweep at start and every [`SWEEP_EVERY`]. Without it every job ever run stayed on
//! disk, and every `GET /api/jobs` and statistics page read all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, WriteTransaction};
use serde::Deserialize;

use super::model::{self, JobState};
use super::JobError;
use crate::app::App;
use crate::store::JOBS;

/// Time between sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Jobs removed at most per sweep: a first sweep over years of history is spread over
/// several transactions, none of which holds the write lock for long.
pub const MAX_REMOVED_PER_SWEEP: usize = 5_000;

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
            loop {
                let removed = app
                    .store
                    .write(move |tx| prune(tx, keep, MAX_REMOVED_PER_SWEEP))
                    .await;
                let more = match removed {
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(
                                jobs = n,
                                "removed finished jobs beyond [jobs] keep_jobs"
                            );
                        }
                        n == MAX_REMOVED_PER_SWEEP
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "removing old jobs failed");
                        false
                    }
                };
                if !more {
                    break;
                }
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// Removes, in every workspace, the finished jobs beyond the newest `keep` (and their
/// target rows), at most `max_removed` of them; returns how many went. Running and
/// queued jobs are never removed and do not count.
pub fn prune(tx: &WriteTransaction, keep: usize, max_removed: usize) -> Result<usize, JobError> {
    let mut finished: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    {
        let jobs = tx.open_table(JOBS)?;
        for row in jobs.iter()? {
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
    }
    let mut doomed: Vec<(String, String)> = Vec::new();
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
    doomed.truncate(max_removed);
    for (workspace, id) in &doomed {
        model::remove(tx, workspace, id)?;
    }
    Ok(doomed.len())
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
        // Keep 2: of alice's four finished jobs a0 and a1 go; the running a2 stays, as
        // does the other workspace's only job.
        assert_eq!(prune(&tx, 2, 100).expect("prune"), 2);
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
        // The per-sweep bound: one at a time.
        let tx = db.begin_write().expect("tx");
        assert_eq!(prune(&tx, 0, 1).expect("prune"), 1);
        assert_eq!(prune(&tx, 0, 100).expect("prune"), 2);
        assert_eq!(prune(&tx, 0, 100).expect("prune"), 0);
    }
}
