//! A workspace's NetBox connection, stored in `NETBOX_SETTINGS` under (workspace key,
//! `settings`). The token is sealed with the inventory's sealer, bound to the workspace
//! key, and only ever opened to build a client; no API returns it.

use redb::{ReadTransaction, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::client::NetboxClient;
use super::NetboxError;
use crate::audit;
use crate::config::NetboxConfig;
use crate::inventory::Sealer;
use crate::store::{self, NETBOX_SETTINGS};
use crate::workspace::Scope;

/// The row id (one connection per workspace) and the sealing context of the token.
const ROW: &str = "settings";

/// The stored connection.
#[derive(Clone, Serialize, Deserialize)]
pub struct Stored {
    pub url: String,
    /// The token, sealed (never logged: `Debug` leaves it out).
    token_sealed: String,
    pub verify_tls: bool,
    #[serde(default)]
    pub netbox_version: Option<String>,
    pub updated_at: i64,
    pub updated_by: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("url", &self.url)
            .field("verify_tls", &self.verify_tls)
            .finish_non_exhaustive()
    }
}

/// `GET /api/netbox`: never the token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    pub url: Option<String>,
    pub configured: bool,
    pub verify_tls: bool,
    pub netbox_version: Option<String>,
}

impl SettingsView {
    pub fn of(stored: Option<&Stored>) -> SettingsView {
        match stored {
            Some(s) => SettingsView {
                url: Some(s.url.clone()),
                configured: true,
                verify_tls: s.verify_tls,
                netbox_version: s.netbox_version.clone(),
            },
            None => SettingsView {
                url: None,
                configured: false,
                verify_tls: true,
                netbox_version: None,
            },
        }
    }
}

/// `PUT /api/netbox` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub url: String,
    pub token: String,
    #[serde(default)]
    pub verify_tls: Option<bool>,
}

impl std::fmt::Debug for SettingsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsInput")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Reads a workspace's connection.
pub fn get(tx: &ReadTransaction, key: &str) -> Result<Option<Stored>, NetboxError> {
    Ok(store::get_owned(
        &tx.open_table(NETBOX_SETTINGS)?,
        key,
        ROW,
    )?)
}

/// Stores a connection already tested by the caller.
pub fn put(
    tx: &WriteTransaction,
    sealer: &Sealer,
    ws: &Scope,
    url: String,
    token: &str,
    verify_tls: bool,
    netbox_version: Option<String>,
) -> Result<(), NetboxError> {
    let token_sealed = sealer.seal(&ws.key, ROW, token.trim().as_bytes())?;
    let rec = Stored {
        url: url.clone(),
        token_sealed,
        verify_tls,
        netbox_version,
        updated_at: store::now(),
        updated_by: ws.actor.clone(),
    };
    tx.open_table(NETBOX_SETTINGS)?
        .insert((ws.key.as_str(), ROW), store::encode(&rec)?.as_slice())?;
    audit::record(
        tx,
        ws.audit("netbox.settings")
            .target(url)
            .detail(format!("verify_tls={verify_tls}")),
    )?;
    Ok(())
}

/// Removes the connection; false if there was none.
pub fn delete(tx: &WriteTransaction, ws: &Scope) -> Result<bool, NetboxError> {
    let gone = tx
        .open_table(NETBOX_SETTINGS)?
        .remove((ws.key.as_str(), ROW))?
        .is_some();
    if gone {
        audit::record(tx, ws.audit("netbox.delete"))?;
    }
    Ok(gone)
}

/// A client for a stored connection (opens the token).
pub fn client(
    cfg: &NetboxConfig,
    sealer: &Sealer,
    key: &str,
    stored: &Stored,
) -> Result<NetboxClient, NetboxError> {
    let token = sealer.open(key, ROW, &stored.token_sealed)?;
    let token = String::from_utf8(token)
        .map_err(|_| NetboxError::invalid("invalid_token", "the stored token is not text"))?;
    NetboxClient::new(cfg, &stored.url, &token, stored.verify_tls)
}
