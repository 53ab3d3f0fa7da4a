//! NetBox device import: a workspace's NetBox connection (URL and sealed token), device
//! search through NetBox's own filters, and the import of devices into saved sessions
//! (one folder per site), dry run or as a `netbox_import` job applied in one
//! transaction.
//!
//! - `client`: the bounded HTTP client (token styles, timeouts, size caps, retries,
//!   paging with bounded concurrency);
//! - `settings`: the stored connection per workspace;
//! - `import`: NetBox devices → saved sessions (pure mapping and planning, then one
//!   transaction);
//! - `routes`: the thin REST handlers.

pub mod client;
pub mod import;
pub mod routes;
pub mod settings;

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::inventory::InventoryError;
use crate::store::StoreError;

/// Errors of the NetBox module; each upstream failure has its own code.
#[derive(Debug, thiserror::Error)]
pub enum NetboxError {
    /// A bad request field.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No NetBox connection is set for the workspace.
    #[error("no NetBox connection is set for this workspace: PUT /api/netbox first")]
    NotConfigured,
    /// Connecting failed or timed out.
    #[error("NetBox is unreachable: {0}")]
    Unreachable(String),
    /// NetBox refused the token (401/403).
    #[error("{0}")]
    AuthFailed(String),
    /// The TLS certificate was refused.
    #[error("NetBox's TLS certificate was refused: {0}")]
    Tls(String),
    /// Any other unexpected answer.
    #[error("{message}")]
    Status { status: u16, message: String },
    /// More than the gateway's limits allow.
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::from_redb_errors!(NetboxError);

impl NetboxError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        NetboxError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The error code (also used in job target errors).
    pub fn code(&self) -> &'static str {
        match self {
            NetboxError::Invalid { code, .. } => code,
            NetboxError::NotConfigured => "netbox_not_configured",
            NetboxError::Unreachable(_) => "netbox_unreachable",
            NetboxError::AuthFailed(_) => "netbox_auth_failed",
            NetboxError::Tls(_) => "netbox_tls",
            NetboxError::Status { .. } => "netbox_error",
            NetboxError::TooMany(_) => "netbox_too_many",
            NetboxError::Inventory(InventoryError::Invalid { code, .. })
            | NetboxError::Inventory(InventoryError::Conflict { code, .. }) => code,
            NetboxError::Inventory(_) | NetboxError::Store(_) => "internal",
        }
    }
}

impl From<NetboxError> for ApiError {
    fn from(e: NetboxError) -> Self {
        let code = e.code();
        match e {
            NetboxError::Invalid { code, message } => ApiError::bad_request(code, message),
            NetboxError::NotConfigured => ApiError::conflict(code, e.to_string()),
            NetboxError::TooMany(m) => ApiError::bad_request(code, m),
            // Upstream failures are the gateway's answer about another server: 502, so
            // a client never mistakes NetBox's 401 for its own session expiring.
            NetboxError::Unreachable(_)
            | NetboxError::AuthFailed(_)
            | NetboxError::Tls(_)
            | NetboxError::Status { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, code, e.to_string())
            }
            NetboxError::Inventory(e) => e.into(),
            NetboxError::Store(e) => ApiError::internal(e),
        }
    }
}
