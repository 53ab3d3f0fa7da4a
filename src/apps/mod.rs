//! Servers, projects and apps: wake staging and demo stacks on Linux servers over SSH
//! and let them sleep again.
//!
//! - A *server* is a saved session of device type `linux` (inventory is the one source
//!   of host, port, user and credential); its status comes from [`poller`].
//! - A *project* groups apps; an *app* is a docker compose project in a directory of a
//!   server (or a systemd unit). Both live in redb per workspace ([`model`]); their
//!   state machine is [`state`].
//! - Start and stop are jobs ([`control`]): one SSH exec built by [`remote`] whose
//!   output streams on the job's `job` channel; a sweeper stops apps whose auto-stop
//!   deadline (stored, so it survives a restart) has passed.
//! - [`routes`]: the thin REST handlers.

pub mod control;
pub mod model;
pub mod poller;
pub mod remote;
pub mod routes;
pub mod state;

use std::sync::Arc;

use crate::app::App;
use crate::error::ApiError;
use crate::store::StoreError;

pub use poller::Poller;

/// Errors of the apps module.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Unknown or in another workspace: the same answer.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

crate::from_redb_errors!(AppsError);

impl From<crate::inventory::InventoryError> for AppsError {
    fn from(e: crate::inventory::InventoryError) -> Self {
        match e {
            crate::inventory::InventoryError::Store(s) => AppsError::Store(s),
            other => AppsError::Internal(other.to_string()),
        }
    }
}

impl From<crate::workspace::WorkspaceError> for AppsError {
    fn from(e: crate::workspace::WorkspaceError) -> Self {
        match e {
            crate::workspace::WorkspaceError::Store(s) => AppsError::Store(s),
            other => AppsError::Internal(other.to_string()),
        }
    }
}

impl From<AppsError> for ApiError {
    fn from(e: AppsError) -> Self {
        match e {
            AppsError::Invalid { code, message } => ApiError::bad_request(code, message),
            AppsError::NotFound(what) => ApiError::not_found(what),
            AppsError::Conflict { code, message } => ApiError::conflict(code, message),
            AppsError::Store(e) => ApiError::internal(e),
            AppsError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Starts the background work: apps a stopped gateway left `starting`/`stopping` turn
/// `failed`, then the auto-stop sweeper and (unless `poll_interval_secs` is 0) the
/// status poller run until the process ends.
pub async fn start(app: &Arc<App>) -> Result<(), AppsError> {
    let n = app.store.write(state::fail_interrupted).await?;
    if n > 0 {
        tracing::warn!(
            apps = n,
            "apps interrupted by the last stop are marked failed"
        );
    }
    tokio::spawn(control::sweeper(app.clone()));
    if app.cfg.apps.poll_interval_secs > 0 {
        tokio::spawn(poller::run(app.clone()));
    }
    Ok(())
}
