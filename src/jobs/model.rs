//! Job and target records as stored in redb (`JOBS`, keyed (workspace key, job id)),
//! and the plain functions that read and write them.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::JobError;
use crate::auth::Role;
use crate::store::{self, JOBS, JOB_TARGETS};

/// What a job does on each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    ConfigBackup,
    Command,
    /// A NetBox import, run by `crate::netbox` through [`super::runner::ExternalJob`]
    /// (not startable through `POST /api/jobs`, so `parse` does not know it).
    NetboxImport,
    /// Starts an app (`crate::apps`); run by the apps module, not by the worker pool.
    AppStart,
    /// Stops an app (`crate::apps`).
    AppStop,
}

impl JobType {
    /// The word the API uses (`config_backup`, …).
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
    /// Any job type by its word, including those only other modules start (NetBox
    /// imports, app starts and stops): for filters over jobs that exist.
    pub fn from_word(s: &str) -> Option<JobType> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// A job type `POST /api/jobs` can start.
    pub fn parse(s: &str) -> Option<JobType> {
        match s {
            "config_backup" => Some(JobType::ConfigBackup),
            "command" => Some(JobType::Command),
            _ => None,
        }
    }
}

/// A target's state; progress frames carry the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl TargetState {
    pub fn is_done(self) -> bool {
        matches!(
            self,
            TargetState::Succeeded | TargetState::Failed | TargetState::Cancelled
        )
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn parse(s: &str) -> Option<JobState> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
    pub fn is_done(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Why a target failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetError {
    pub code: String,
    pub message: String,
}

/// One target of a job: a saved session of the job's workspace.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Target {
    pub session_id: String,
    pub state: TargetState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TargetError>,
    /// Unix seconds of the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `command` jobs: the output of each command, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<CommandOutput>>,
    /// `config_backup`: the config version now current, and whether it is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

impl Target {
    /// A target that has not run yet.
    pub fn queued(session_id: String) -> Target {
        Target {
            session_id,
            state: TargetState::Queued,
            attempts: 0,
            error: None,
            started_at: None,
            duration_ms: None,
            output: None,
            config_id: None,
            changed: None,
        }
    }
}

/// What one command printed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOutput {
    pub command: String,
    pub output: String,
    /// App jobs: bytes of output seen in all (`output` keeps only the tail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A job as stored and as `GET /api/jobs/{id}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: JobType,
    pub state: JobState,
    /// The workspace key whose saved sessions, credentials and known hosts it uses.
    pub workspace: String,
    /// Who started it (acts with their rights in the workspace).
    pub owner: String,
    pub owner_role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    pub concurrency: usize,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub cancel_requested: bool,
    /// The schedule that started it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// The job whose failed and cancelled targets this one retries, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    pub targets: Vec<Target>,
}

/// Counts of targets per state: the `job` summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    pub total: usize,
    pub queued: usize,
    pub running: usize,
    pub retrying: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
}

impl Job {
    /// The job without its targets (cheap to copy whatever the job's size).
    pub fn clone_header(&self) -> Job {
        Job {
            id: self.id.clone(),
            kind: self.kind,
            state: self.state,
            workspace: self.workspace.clone(),
            owner: self.owner.clone(),
            owner_role: self.owner_role,
            commands: self.commands.clone(),
            concurrency: self.concurrency,
            created_at: self.created_at,
            finished_at: self.finished_at,
            cancel_requested: self.cancel_requested,
            schedule_id: self.schedule_id.clone(),
            retry_of: self.retry_of.clone(),
            targets: Vec::new(),
        }
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            total: self.targets.len(),
            ..Default::default()
        };
        for t in &self.targets {
            match t.state {
                TargetState::Queued => s.queued += 1,
                TargetState::Running => s.running += 1,
                TargetState::Retrying => s.retrying += 1,
                TargetState::Succeeded => s.succeeded += 1,
                TargetState::Failed => s.failed += 1,
                TargetState::Cancelled => s.cancelled += 1,
            }
        }
        s
    }

    /// The final state once every target is done.
    pub fn final_state(&self) -> JobState {
        let s = self.summary();
        if self.cancel_requested && s.cancelled > 0 {
            JobState::Cancelled
        } else if s.failed > 0 || s.cancelled > 0 {
            JobState::Failed
        } else {
            JobState::Succeeded
        }
    }
}

fn target_key(job_id: &str, idx: usize) -> String {
    // Zero-padded: rows of a job sort in target order.
    format!("{job_id}:{idx:06}")
}

/// Writes the job without its targets (state, cancel, times …).
pub fn put_header(tx: &WriteTransaction, job: &mut Job) -> Result<(), JobError> {
    let targets = std::mem::take(&mut job.targets);
    let encoded = store::encode(&*job);
    job.targets = targets;
    tx.open_table(JOBS)?.insert(
        (job.workspace.as_str(), job.id.as_str()),
        encoded?.as_slice(),
    )?;
    Ok(())
}

/// Writes one target's row (the hot path: a target's change costs one small row, so a
/// job of N targets is not rewritten N times).
pub fn put_target(
    tx: &WriteTransaction,
    workspace: &str,
    job_id: &str,
    idx: usize,
    target: &Target,
) -> Result<(), JobError> {
    tx.open_table(JOB_TARGETS)?.insert(
        (workspace, target_key(job_id, idx).as_str()),
        store::encode(target)?.as_slice(),
    )?;
    Ok(())
}

/// The bounds of a job's target rows in `JOB_TARGETS`: every `<job id>:<index>` lies in
/// `from..to` (`;` is the character after `:`).
pub(super) fn target_bounds(job_id: &str) -> (String, String) {
    (format!("{job_id}:"), format!("{job_id};"))
}

/// Key of a finished job's summary row in `JOB_TARGETS`. `!` sorts before the `:` of
/// its target rows' keys, so whoever reads the targets' range never meets it.
fn summary_key(job_id: &str) -> String {
    format!("{job_id}!summary")
}

/// Writes a finished job's counts in a row of their own, so a listing need not read its
/// targets' rows (which hold everything the devices printed).
pub fn put_summary(
    tx: &WriteTransaction,
    workspace: &str,
    job_id: &str,
    summary: &Summary,
) -> Result<(), JobError> {
    tx.open_table(JOB_TARGETS)?.insert(
        (workspace, summary_key(job_id).as_str()),
        store::encode(summary)?.as_slice(),
    )?;
    Ok(())
}

/// Removes a job: its header, its targets' rows and its summary row.
pub fn remove(tx: &WriteTransaction, workspace: &str, job_id: &str) -> Result<(), JobError> {
    tx.open_table(JOBS)?.remove((workspace, job_id))?;
    let mut targets = tx.open_table(JOB_TARGETS)?;
    targets.remove((workspace, summary_key(job_id).as_str()))?;
    let (from, to) = target_bounds(job_id);
    targets.retain_in(
        (workspace, from.as_str())..(workspace, to.as_str()),
        |_, _| false,
    )?;
    Ok(())
}

/// Writes the whole job: its header and every target's row (and, once it is finished,
/// its summary row).
pub fn put(tx: &WriteTransaction, job: &Job) -> Result<(), JobError> {
    put_header(tx, &mut job.clone_header())?;
    for (i, t) in job.targets.iter().enumerate() {
        put_target(tx, &job.workspace, &job.id, i, t)?;
    }
    if job.state.is_done() {
        put_summary(tx, &job.workspace, &job.id, &job.summary())?;
    }
    Ok(())
}

/// Fills a job read from `JOBS` with its target rows. A job stored before targets had
/// rows of their own keeps the targets inline.
fn with_targets<T>(table: &T, mut job: Job) -> Result<Job, JobError>
where
    T: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let (from, to) = target_bounds(&job.id);
    let mut targets = Vec::new();
    for row in table
        .range((job.workspace.as_str(), from.as_str())..(job.workspace.as_str(), to.as_str()))?
    {
        let (_, v) = row?;
        targets.push(store::decode(v.value())?);
    }
    if !targets.is_empty() {
        job.targets = targets;
    }
    Ok(job)
}

pub fn get(tx: &ReadTransaction, workspace: &str, id: &str) -> Result<Option<Job>, JobError> {
    let job: Option<Job> = store::get_owned(&tx.open_table(JOBS)?, workspace, id)?;
    match job {
        Some(j) => Ok(Some(with_targets(&tx.open_table(JOB_TARGETS)?, j)?)),
        None => Ok(None),
    }
}

/// A target's row read without its output: what listings and statistics need. The
/// output's text is skipped by the JSON reader, never allocated.
#[derive(Deserialize)]
struct TargetWithoutOutput {
    session_id: String,
    state: TargetState,
    attempts: u32,
    #[serde(default)]
    error: Option<TargetError>,
    #[serde(default)]
    started_at: Option<i64>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    config_id: Option<String>,
    #[serde(default)]
    changed: Option<bool>,
}

impl From<TargetWithoutOutput> for Target {
    fn from(t: TargetWithoutOutput) -> Target {
        Target {
            session_id: t.session_id,
            state: t.state,
            attempts: t.attempts,
            error: t.error,
            started_at: t.started_at,
            duration_ms: t.duration_ms,
            output: None,
            config_id: t.config_id,
            changed: t.changed,
        }
    }
}

/// The jobs of a workspace with their summaries, newest first. A job's targets are
/// read (without their output) only where `targets_of` says so; elsewhere they are left
/// empty, and a finished job's summary comes from its summary row: a listing costs the
/// jobs, not everything their devices ever printed.
pub fn list(
    tx: &ReadTransaction,
    workspace: &str,
    targets_of: impl Fn(&Job) -> bool,
) -> Result<Vec<(Job, Summary)>, JobError> {
    let targets = tx.open_table(JOB_TARGETS)?;
    let mut jobs = Vec::new();
    for (_, mut j) in store::list_owned::<Job, _>(&tx.open_table(JOBS)?, workspace)? {
        let wanted = targets_of(&j);
        if !j.targets.is_empty() {
            // A job stored before targets had rows of their own keeps them inline.
            let summary = j.summary();
            for t in &mut j.targets {
                t.output = None;
            }
            if !wanted {
                j.targets = Vec::new();
            }
            jobs.push((j, summary));
            continue;
        }
        let stored: Option<Summary> = if j.state.is_done() {
            match targets.get((workspace, summary_key(&j.id).as_str()))? {
                Some(v) => Some(store::decode(v.value())?),
                None => None,
            }
        } else {
            None
        };
        if let (Some(summary), false) = (&stored, wanted) {
            jobs.push((j, summary.clone()));
            continue;
        }
        let (from, to) = target_bounds(&j.id);
        for row in targets.range((workspace, from.as_str())..(workspace, to.as_str()))? {
            let (_, v) = row?;
            j.targets
                .push(store::decode::<TargetWithoutOutput>(v.value())?.into());
        }
        let summary = stored.unwrap_or_else(|| j.summary());
        if !wanted {
            j.targets = Vec::new();
        }
        jobs.push((j, summary));
    }
    jobs.sort_by(|(a, _), (b, _)| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(jobs)
}

/// Every job not finished yet, in any workspace (to resume at start).
pub fn unfinished(tx: &ReadTransaction) -> Result<Vec<Job>, JobError> {
    let targets = tx.open_table(JOB_TARGETS)?;
    let mut out = Vec::new();
    for row in tx.open_table(JOBS)?.iter()? {
        let (_, v) = row?;
        let job: Job = store::decode(v.value())?;
        if !job.state.is_done() {
            out.push(with_targets(&targets, job)?);
        }
    }
    out.sort_by_key(|j| j.created_at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    fn job(n: usize) -> Job {
        Job {
            id: "j1".into(),
            kind: JobType::ConfigBackup,
            state: JobState::Running,
            workspace: "alice".into(),
            owner: "alice".into(),
            owner_role: Role::Operator,
            commands: Vec::new(),
            concurrency: 2,
            created_at: 1,
            finished_at: None,
            cancel_requested: false,
            schedule_id: None,
            retry_of: None,
            targets: (0..n).map(|i| Target::queued(format!("s{i}"))).collect(),
        }
    }

    #[test]
    fn targets_have_rows_and_old_inline_jobs_still_read() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("t.redb")).expect("db");
        let tx = db.begin_write().expect("tx");
        // A job as stored before targets had rows: inline, no rows.
        let mut old = job(3);
        old.id = "old".into();
        tx.open_table(JOBS)
            .expect("t")
            .insert(
                ("alice", "old"),
                store::encode(&old).expect("enc").as_slice(),
            )
            .expect("insert");
        tx.open_table(JOB_TARGETS).expect("t");
        // A job of 12 targets (indices past 9 must keep their order), one changed.
        let mut j = job(12);
        put(&tx, &j).expect("put");
        j.targets[10].state = TargetState::Succeeded;
        put_target(&tx, "alice", "j1", 10, &j.targets[10]).expect("row");
        tx.commit().expect("commit");

        let tx = db.begin_read().expect("read");
        let got = get(&tx, "alice", "j1").expect("get").expect("some");
        let ids: Vec<_> = got.targets.iter().map(|t| t.session_id.clone()).collect();
        assert_eq!(ids, (0..12).map(|i| format!("s{i}")).collect::<Vec<_>>());
        assert_eq!(got.targets[10].state, TargetState::Succeeded);
        let old = get(&tx, "alice", "old").expect("get").expect("some");
        assert_eq!(old.targets.len(), 3);
        assert_eq!(unfinished(&tx).expect("unfinished").len(), 2);
        assert_eq!(list(&tx, "bob", |_| false).expect("list").len(), 0);
    }

    #[test]
    fn a_listing_takes_a_finished_jobs_counts_from_its_summary_row_not_its_targets() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("t.redb")).expect("db");
        let tx = db.begin_write().expect("tx");
        let mut j = job(3);
        j.state = JobState::Succeeded;
        for t in &mut j.targets {
            t.state = TargetState::Succeeded;
            t.output = Some(vec![CommandOutput {
                command: "show tech".into(),
                output: "x".repeat(100_000),
                bytes: None,
            }]);
        }
        put(&tx, &j).expect("put");
        // A running job has no summary row: its rows are read, without their output.
        let mut running = job(2);
        running.id = "j2".into();
        running.created_at = 2;
        running.targets[0].state = TargetState::Succeeded;
        running.targets[0].output = j.targets[0].output.clone();
        put(&tx, &running).expect("put");
        // Spoil the finished job's target rows: a listing that read them would fail.
        for i in 0..3 {
            tx.open_table(JOB_TARGETS)
                .expect("t")
                .insert(
                    ("alice", target_key("j1", i).as_str()),
                    b"not json".as_slice(),
                )
                .expect("spoil");
        }
        tx.commit().expect("commit");
        let tx = db.begin_read().expect("read");
        let listed = list(&tx, "alice", |_| false).expect("list");
        let ids: Vec<&str> = listed.iter().map(|(j, _)| j.id.as_str()).collect();
        assert_eq!(ids, ["j2", "j1"]);
        assert_eq!(listed[1].1.succeeded, 3);
        assert_eq!(listed[1].1.total, 3);
        assert!(listed[1].0.targets.is_empty());
        assert_eq!(listed[0].1.succeeded, 1);
        assert_eq!(listed[0].1.queued, 1);
        // Asked for them, a running job's targets come without output.
        let with = list(&tx, "alice", |j| j.id == "j2").expect("list");
        assert_eq!(with[0].0.targets.len(), 2);
        assert!(with[0].0.targets.iter().all(|t| t.output.is_none()));
        assert!(
            get(&tx, "alice", "j1").is_err(),
            "the spoiled rows are really there"
        );
    }
}
