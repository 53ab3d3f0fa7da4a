//! Fleet jobs: config backups and commands over many saved sessions, with retries,
//! cancel, live progress on `job` channels, and persistence in redb (a job survives a
//! restart and continues with the targets not yet done).
//!
//! - `model`: the job and target records and how they are stored;
//! - `device`: the table of device types and the interactive-shell driver;
//! - `runner`: the worker pool (one owner task per job), retries, cancel, progress;
//! - `configs`: content-addressed config versions, diffs and search;
//! - `schedules`: cron schedules that start jobs;
//! - `stats`: dashboard statistics;
//! - `watch`: the `job` channel's source;
//! - `webhooks`: job events POSTed to configured receivers;
//! - `external`: jobs another module runs itself (app start/stop), same records and channel;
//! - `retention`: the finished jobs a workspace keeps (`[jobs] keep_jobs`);
//! - `routes`: the thin REST handlers.

pub mod configs;
pub mod device;
pub mod external;
pub mod model;
pub mod retention;
pub mod routes;
pub mod runner;
pub mod schedules;
pub mod stats;
pub mod watch;
pub mod webhooks;

pub use runner::Jobs;

/// Errors of the jobs module.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// A per-workspace limit (409 `limit_reached`).
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
}

crate::from_redb_errors!(JobError);

impl From<crate::inventory::InventoryError> for JobError {
    fn from(e: crate::inventory::InventoryError) -> Self {
        JobError::Invalid(e.to_string())
    }
}

impl From<JobError> for crate::error::ApiError {
    fn from(e: JobError) -> Self {
        use crate::error::ApiError;
        match e {
            JobError::NotFound(w) => ApiError::not_found(w),
            JobError::Invalid(m) => ApiError::bad_request("invalid_job", m),
            JobError::Limit(m) => {
                ApiError::new(axum::http::StatusCode::CONFLICT, "limit_reached", m)
            }
            JobError::Store(e) => ApiError::internal(e),
            JobError::Workspace(e) => ApiError::internal(e),
        }
    }
}
