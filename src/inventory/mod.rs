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

use redb::WriteTransaction;

use crate::error::ApiError;
use crate::store::{self, StoreError};

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
pub(crate) use sessions::{check_folder_name, create_session, update_session, ValidSession};
