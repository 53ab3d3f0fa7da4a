//! The inventory of a workspace: folders, saved sessions, credential sets and known
//! hosts. Every object is keyed by (workspace key, id) (see [`crate::workspace`]); an id
//! of another workspace is simply not found. Reads take the workspace key, writes a
//! [`crate::workspace::Scope`] (the key and the acting user, for the audit log).

mod credentials;
pub mod csv_import;
pub mod keys;
mod known_hosts;
pub mod routes;
mod sealer;
mod sessions;
mod yaml;

pub use credentials::{Credential, CredentialKind, CredentialSecret};
pub use known_hosts::KnownHost;
pub use sealer::{MasterKeyError, Sealer};
pub use sessions::{DeviceType, SavedSession, SessionInput};

use redb::{TableDefinition, WriteTransaction};

use crate::config::InventoryConfig;
use crate::error::ApiError;
use crate::store::{self, StoreError, CREDENTIALS, FOLDERS, KNOWN_HOSTS, SAVED_SESSIONS};

/// Errors of inventory operations.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("import refused: {} bad row(s); nothing was applied", .0.len())]
    Import(Vec<yaml::RowError>),
    #[error("secret could not be sealed or opened: {0}")]
    Crypto(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::from_redb_errors!(InventoryError);

impl InventoryError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        InventoryError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::Invalid { code, message } => ApiError::bad_request(code, message),
            InventoryError::NotFound(what) => ApiError::not_found(what),
            InventoryError::Conflict { code, message } => ApiError::conflict(code, message),
            InventoryError::Import(rows) => {
                let detail: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
                ApiError::bad_request(
                    "import_invalid",
                    format!(
                        "nothing was imported; {} bad row(s): {}",
                        rows.len(),
                        detail.join("; ")
                    ),
                )
            }
            InventoryError::Crypto(_) | InventoryError::Store(_) => ApiError::internal(e),
        }
    }
}

/// How many saved sessions and folders a workspace held when a write began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    sessions: usize,
    folders: usize,
}

impl Held {
    pub(crate) fn count(tx: &WriteTransaction, owner: &str) -> Result<Held, InventoryError> {
        Ok(Held {
            sessions: store::count_owned(&tx.open_table(SAVED_SESSIONS)?, owner)?,
            folders: store::count_owned(&tx.open_table(FOLDERS)?, owner)?,
        })
    }
}

/// Refuses (409 `limit_reached`) a write that leaves the workspace with more saved
/// sessions or folders than `[inventory]` allows and more than it held `before`. Called
/// last in every write that can create either (a session creates its folder), inside
/// its transaction, so a refused write, a whole import included, is rolled back and
/// nothing of it is kept. A workspace already over a limit (it was lowered) can still
/// edit, move within its folders and shrink. Counting walks the workspace's keys: a few
/// milliseconds at the default limits.
pub(crate) fn check_session_room(
    tx: &WriteTransaction,
    owner: &str,
    limits: &InventoryConfig,
    before: Held,
) -> Result<(), InventoryError> {
    let sessions = Limit {
        max: limits.max_sessions,
        before: before.sessions,
        what: "saved sessions",
        key: "max_sessions",
    };
    sessions.check(tx, SAVED_SESSIONS, owner)?;
    let folders = Limit {
        max: limits.max_folders,
        before: before.folders,
        what: "folders",
        key: "max_folders",
    };
    folders.check(tx, FOLDERS, owner)
}

/// As [`check_session_room`], for credential sets, after a create (which always adds
/// one).
pub(crate) fn check_credential_room(
    tx: &WriteTransaction,
    owner: &str,
    limits: &InventoryConfig,
) -> Result<(), InventoryError> {
    let limit = Limit {
        max: limits.max_credentials,
        before: 0,
        what: "credential sets",
        key: "max_credentials",
    };
    limit.check(tx, CREDENTIALS, owner)
}

/// As [`check_session_room`], for trusted host keys, after one was added.
pub fn check_known_host_room(
    tx: &WriteTransaction,
    owner: &str,
    limits: &InventoryConfig,
) -> Result<(), InventoryError> {
    let limit = Limit {
        max: limits.max_known_hosts,
        before: 0,
        what: "trusted host keys",
        key: "max_known_hosts",
    };
    limit.check(tx, KNOWN_HOSTS, owner)
}

/// One `[inventory]` limit as a write sees it.
struct Limit {
    max: usize,
    /// What the workspace held before the write: a write that adds nothing passes.
    before: usize,
    what: &'static str,
    key: &'static str,
}

impl Limit {
    fn check(
        &self,
        tx: &WriteTransaction,
        def: TableDefinition<(&str, &str), &[u8]>,
        owner: &str,
    ) -> Result<(), InventoryError> {
        let held = store::count_owned(&tx.open_table(def)?, owner)?;
        self.judge(held)
    }

    fn judge(&self, held: usize) -> Result<(), InventoryError> {
        if held > self.max && held > self.before {
            return Err(limit_reached(held, self.max, self.what, self.key));
        }
        Ok(())
    }
}

/// The limit on saved sessions, judged on a count the caller made (a NetBox dry run
/// plans its creates without writing them).
pub(crate) fn check_planned_sessions(
    limits: &InventoryConfig,
    before: usize,
    would_hold: usize,
) -> Result<(), InventoryError> {
    Limit {
        max: limits.max_sessions,
        before,
        what: "saved sessions",
        key: "max_sessions",
    }
    .judge(would_hold)
}

/// The error of a write that would leave `held` objects where `max` are allowed.
fn limit_reached(held: usize, max: usize, what: &str, key: &str) -> InventoryError {
    InventoryError::Conflict {
        code: "limit_reached",
        message: format!(
            "the workspace would hold {held} {what}; at most {max} are allowed ([inventory] {key}); nothing was changed"
        ),
    }
}

/// Removes everything in a user's personal workspace (used when the user is deleted):
/// inventory, jobs and their outputs, config versions, schedules, tool executions. A
/// user later created with the same name starts empty.
pub fn delete_all_of(tx: &WriteTransaction, owner: &str) -> Result<(), StoreError> {
    for def in store::WORKSPACE_TABLES {
        store::delete_owned(&mut tx.open_table(def)?, owner)?;
    }
    Ok(())
}

pub use credentials::load_secret;
pub use known_hosts::{add_known_host, find_known_host};
pub use sessions::{get_session, valid_host};
// The NetBox import builds and applies sessions with the same checks as the API.
pub(crate) use sessions::{
    check_folder_name, create_session, ensure_folder, update_session, ValidSession,
};
