//! Credential sets: a password or a private key (with optional passphrase) and an
//! optional enable secret. The secret parts are sealed; no API ever returns them.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{InventoryError, SavedSession, Sealer};
use crate::audit;
use crate::store::{self, CREDENTIALS, SAVED_SESSIONS};

/// What kind of secret a credential set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Password,
    PrivateKey,
}

/// A stored credential set. `sealed` is never serialised to clients: see [`CredentialView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    pub name: String,
    pub kind: CredentialKind,
    #[serde(default)]
    pub username: Option<String>,
    pub has_passphrase: bool,
    pub has_enable_secret: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// base64(nonce || AEAD ciphertext of [`CredentialSecret`] as JSON).
    pub sealed: String,
}

/// The secret material, only ever in memory in the clear.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct CredentialSecret {
    /// The password, or the private key in OpenSSH/PEM text.
    pub secret: String,
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub enable_secret: Option<String>,
}

impl std::fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialSecret(redacted)")
    }
}

/// What clients see of a credential set.
#[derive(Debug, Serialize)]
pub struct CredentialView {
    pub id: String,
    pub name: String,
    pub kind: CredentialKind,
    pub username: Option<String>,
    pub has_passphrase: bool,
    pub has_enable_secret: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&Credential> for CredentialView {
    fn from(c: &Credential) -> Self {
        CredentialView {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: c.kind,
            username: c.username.clone(),
            has_passphrase: c.has_passphrase,
            has_enable_secret: c.has_enable_secret,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A credential set as a client sends it. On update, an absent `secret` keeps the old
/// secret; an absent `passphrase`/`enable_secret` keeps the old one; an empty string clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub name: String,
    pub kind: CredentialKind,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub enable_secret: Option<String>,
}

fn check_key(secret: &CredentialSecret) -> Result<(), InventoryError> {
    russh::keys::decode_secret_key(&secret.secret, secret.passphrase.as_deref())
        .map(|_| ())
        .map_err(|e| {
            InventoryError::invalid(
                "invalid_private_key",
                format!(
                    "the private key cannot be read (wrong passphrase or unsupported format): {e}"
                ),
            )
        })
}

fn merge(
    input: CredentialInput,
    old: Option<CredentialSecret>,
) -> Result<(String, CredentialKind, Option<String>, CredentialSecret), InventoryError> {
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(InventoryError::invalid(
            "invalid_name",
            "name must be 1-200 characters",
        ));
    }
    let mut secret = old.unwrap_or_default();
    match input.secret {
        Some(s) if !s.is_empty() => secret.secret = s,
        Some(_) => {
            return Err(InventoryError::invalid(
                "invalid_secret",
                "secret must not be empty",
            ))
        }
        None if secret.secret.is_empty() => {
            return Err(InventoryError::invalid(
                "missing_secret",
                "secret is required (a password or a private key)",
            ))
        }
        None => {}
    }
    if let Some(p) = input.passphrase {
        secret.passphrase = (!p.is_empty()).then_some(p);
    }
    if let Some(e) = input.enable_secret {
        secret.enable_secret = (!e.is_empty()).then_some(e);
    }
    if secret.secret.len() > 64 * 1024 {
        return Err(InventoryError::invalid(
            "invalid_secret",
            "secret too large",
        ));
    }
    if input.kind == CredentialKind::PrivateKey {
        check_key(&secret)?;
    } else {
        secret.passphrase = None;
    }
    let username = input
        .username
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    Ok((name, input.kind, username, secret))
}

pub(crate) fn list(
    tx: &ReadTransaction,
    owner: &str,
) -> Result<Vec<CredentialView>, InventoryError> {
    let all: Vec<(String, Credential)> = store::list_owned(&tx.open_table(CREDENTIALS)?, owner)?;
    Ok(all.iter().map(|(_, c)| CredentialView::from(c)).collect())
}

pub(crate) fn create(
    tx: &WriteTransaction,
    sealer: &Sealer,
    owner: &str,
    input: CredentialInput,
) -> Result<CredentialView, InventoryError> {
    let (name, kind, username, secret) = merge(input, None)?;
    let id = store::new_id();
    let plain = serde_json::to_vec(&secret).map_err(|e| InventoryError::Crypto(e.to_string()))?;
    let now = store::now();
    let c = Credential {
        sealed: sealer.seal(owner, &id, &plain)?,
        id,
        name,
        kind,
        username,
        has_passphrase: secret.passphrase.is_some(),
        has_enable_secret: secret.enable_secret.is_some(),
        created_at: now,
        updated_at: now,
    };
    tx.open_table(CREDENTIALS)?
        .insert((owner, c.id.as_str()), store::encode(&c)?.as_slice())?;
    audit::record(
        tx,
        audit::Entry::new(owner, "credential.create").target(&c.id),
    )?;
    Ok(CredentialView::from(&c))
}

pub(crate) fn update(
    tx: &WriteTransaction,
    sealer: &Sealer,
    owner: &str,
    id: &str,
    input: CredentialInput,
) -> Result<CredentialView, InventoryError> {
    let old: Credential = store::get_owned(&tx.open_table(CREDENTIALS)?, owner, id)?
        .ok_or(InventoryError::NotFound("credential"))?;
    let old_secret: CredentialSecret =
        serde_json::from_slice(&sealer.open(owner, id, &old.sealed)?)
            .map_err(|e| InventoryError::Crypto(e.to_string()))?;
    let (name, kind, username, secret) = merge(input, Some(old_secret))?;
    let plain = serde_json::to_vec(&secret).map_err(|e| InventoryError::Crypto(e.to_string()))?;
    let c = Credential {
        sealed: sealer.seal(owner, id, &plain)?,
        id: id.to_string(),
        name,
        kind,
        username,
        has_passphrase: secret.passphrase.is_some(),
        has_enable_secret: secret.enable_secret.is_some(),
        created_at: old.created_at,
        updated_at: store::now(),
    };
    tx.open_table(CREDENTIALS)?
        .insert((owner, id), store::encode(&c)?.as_slice())?;
    audit::record(tx, audit::Entry::new(owner, "credential.update").target(id))?;
    Ok(CredentialView::from(&c))
}

pub(crate) fn delete(tx: &WriteTransaction, owner: &str, id: &str) -> Result<(), InventoryError> {
    let users: Vec<(String, SavedSession)> =
        store::list_owned(&tx.open_table(SAVED_SESSIONS)?, owner)?;
    let mut table = tx.open_table(CREDENTIALS)?;
    if table.get((owner, id))?.is_none() {
        return Err(InventoryError::NotFound("credential"));
    }
    let used = users
        .iter()
        .filter(|(_, s)| s.credential_id.as_deref() == Some(id))
        .count();
    if used > 0 {
        return Err(InventoryError::Conflict {
            code: "credential_in_use",
            message: format!("{used} saved session(s) still use this credential"),
        });
    }
    table.remove((owner, id))?;
    drop(table);
    audit::record(tx, audit::Entry::new(owner, "credential.delete").target(id))?;
    Ok(())
}

/// Loads and opens a credential for use by an SSH connection.
pub fn load_secret(
    tx: &ReadTransaction,
    sealer: &Sealer,
    owner: &str,
    id: &str,
) -> Result<(Credential, CredentialSecret), InventoryError> {
    let c: Credential = store::get_owned(&tx.open_table(CREDENTIALS)?, owner, id)?
        .ok_or(InventoryError::NotFound("credential"))?;
    let secret = serde_json::from_slice(&sealer.open(owner, id, &c.sealed)?)
        .map_err(|e| InventoryError::Crypto(e.to_string()))?;
    Ok((c, secret))
}
