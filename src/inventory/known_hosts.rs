//! Host keys a user has trusted (trust on first use, per user).

use redb::{ReadTransaction, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::InventoryError;
use crate::audit;
use crate::store::{self, KNOWN_HOSTS};
use crate::workspace::Scope;

/// A trusted host key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KnownHost {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub algorithm: String,
    /// `SHA256:` + unpadded base64, as OpenSSH prints it.
    pub fingerprint: String,
    pub added_at: i64,
}

pub(crate) fn list(tx: &ReadTransaction, owner: &str) -> Result<Vec<KnownHost>, InventoryError> {
    let all: Vec<(String, KnownHost)> = store::list_owned(&tx.open_table(KNOWN_HOSTS)?, owner)?;
    Ok(all.into_iter().map(|(_, k)| k).collect())
}

/// The entry for `host:port`, if the user has one.
pub fn find_known_host(
    tx: &ReadTransaction,
    owner: &str,
    host: &str,
    port: u16,
) -> Result<Option<KnownHost>, InventoryError> {
    Ok(list(tx, owner)?
        .into_iter()
        .find(|k| k.port == port && k.host.eq_ignore_ascii_case(host)))
}

/// Trusts a key for `host:port` (replacing nothing: a changed key must be deleted first).
pub fn add_known_host(
    tx: &WriteTransaction,
    ws: &Scope,
    host: &str,
    port: u16,
    algorithm: &str,
    fingerprint: &str,
) -> Result<KnownHost, InventoryError> {
    let owner = ws.key.as_str();
    let k = KnownHost {
        id: store::new_id(),
        host: host.to_string(),
        port,
        algorithm: algorithm.to_string(),
        fingerprint: fingerprint.to_string(),
        added_at: store::now(),
    };
    tx.open_table(KNOWN_HOSTS)?
        .insert((owner, k.id.as_str()), store::encode(&k)?.as_slice())?;
    audit::record(
        tx,
        ws.audit("known_host.add")
            .target(format!("{host}:{port}"))
            .detail(fingerprint),
    )?;
    Ok(k)
}

pub(crate) fn delete(tx: &WriteTransaction, ws: &Scope, id: &str) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
    let removed = tx.open_table(KNOWN_HOSTS)?.remove((owner, id))?.is_some();
    if !removed {
        return Err(InventoryError::NotFound("known host"));
    }
    audit::record(tx, ws.audit("known_host.delete").target(id))?;
    Ok(())
}
