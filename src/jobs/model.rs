//! Job and target records as stored in redb (`JOBS`, keyed (workspace key, job id)),
//! and the plain functions that read and write them.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::JobError;
use crate::auth::Role;
use crate::store::{self, JOBS};

/// What a job does on each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    ConfigBackup,
    Command,
}

impl JobType {
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

/// What one command printed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOutput {
    pub command: String,
    pub output: String,
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
    pub targets: Vec<Target>,
}

/// Counts of targets per state: the `job` summary.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
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

pub fn put(tx: &WriteTransaction, job: &Job) -> Result<(), JobError> {
    let mut t = tx.open_table(JOBS)?;
    t.insert(
        (job.workspace.as_str(), job.id.as_str()),
        store::encode(job)?.as_slice(),
    )?;
    Ok(())
}

pub fn get(tx: &ReadTransaction, workspace: &str, id: &str) -> Result<Option<Job>, JobError> {
    Ok(store::get_owned(&tx.open_table(JOBS)?, workspace, id)?)
}

/// The jobs of a workspace, newest first.
pub fn list(tx: &ReadTransaction, workspace: &str) -> Result<Vec<Job>, JobError> {
    let mut jobs: Vec<Job> = store::list_owned(&tx.open_table(JOBS)?, workspace)?
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(jobs)
}

/// Every job not finished yet, in any workspace (to resume at start).
pub fn unfinished(tx: &ReadTransaction) -> Result<Vec<Job>, JobError> {
    let mut out = Vec::new();
    for row in tx.open_table(JOBS)?.iter()? {
        let (_, v) = row?;
        let job: Job = store::decode(v.value())?;
        if !job.state.is_done() {
            out.push(job);
        }
    }
    out.sort_by_key(|j| j.created_at);
    Ok(out)
}
