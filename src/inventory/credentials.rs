//! Credential sets: a password or a private key (with optional passphrase) and an
//! optional enable secret. The secret parts are sealed; no API ever returns them.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::keys::{self, KeyError};
use super::{InventoryError, SavedSession, Sealer};
use crate::audit;
use crate::store::{self, CREDENTIALS, SAVED_SESSIONS};
use crate::workspace::Scope;

/// What kind of secret a credential set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// For a private key: the uploaded file was passphrase-protected.
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
    /// The password, or the private key as unencrypted OpenSSH text (sealed as a whole).
    /// Records from before keys were stored decrypted hold the uploaded text and its
    /// passphrase; they are decoded with the same cost limits at connect.
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
/// secret; an absent `enable_secret` keeps the old one; an empty string clears it.
/// `password` is accepted as an alias of `secret` for `password` credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub name: String,
    pub kind: CredentialKind,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub enable_secret: Option<String>,
}

/// Longest secret (a password or a key file).
const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Longest passphrase and enable secret: far above any real one, small enough that no
/// field makes a record or a KDF input large.
const MAX_SHORT_SECRET_BYTES: usize = 1024;

/// A checked [`CredentialInput`]. A private key has been decrypted already (outside any
/// transaction, see [`super::keys`]) and is held as unencrypted OpenSSH text.
pub struct PreparedCredential {
    name: String,
    kind: CredentialKind,
    username: Option<String>,
    /// A new secret, or `None` to keep the stored one.
    secret: Option<String>,
    /// For a new private key: whether the uploaded file was passphrase-protected.
    key_was_encrypted: bool,
    /// `Some("")` clears the enable secret.
    enable_secret: Option<String>,
}

fn key_error(e: KeyError) -> InventoryError {
    match e {
        KeyError::TooCostly(_) => InventoryError::invalid("key_too_costly", e.to_string()),
        KeyError::Invalid(_) => InventoryError::invalid("invalid_private_key", e.to_string()),
        KeyError::Timeout => InventoryError::invalid("key_too_costly", e.to_string()),
    }
}

/// Checks a client's input and, for a new private key, decrypts it on the bounded key
/// pool. Call before opening the write transaction.
pub async fn prepare(input: CredentialInput) -> Result<PreparedCredential, InventoryError> {
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(InventoryError::invalid(
            "invalid_name",
            "name must be 1-200 characters",
        ));
    }
    let username = input
        .username
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    if let Some(u) = &username {
        if u.chars().count() > 128 || u.chars().any(char::is_control) {
            return Err(InventoryError::invalid(
                "invalid_username",
                "username must be 1-128 printable characters",
            ));
        }
    }
    let secret = match (input.secret, input.password) {
        (Some(s), Some(p)) if s != p => {
            return Err(InventoryError::invalid(
                "invalid_secret",
                "give either secret or password (its alias), not both",
            ))
        }
        (Some(_), Some(_)) | (None, Some(_)) if input.kind == CredentialKind::PrivateKey => {
            return Err(InventoryError::invalid(
                "invalid_secret",
                "password is an alias of secret for password credentials; send a private key as secret",
            ))
        }
        (s, p) => s.or(p),
    };
    if secret.as_deref() == Some("") {
        return Err(InventoryError::invalid(
            "invalid_secret",
            "secret must not be empty",
        ));
    }
    if secret.as_ref().is_some_and(|s| s.len() > MAX_SECRET_BYTES) {
        return Err(InventoryError::invalid(
            "invalid_secret",
            "secret too large",
        ));
    }
    let passphrase = input.passphrase.filter(|p| !p.is_empty());
    if passphrase
        .as_ref()
        .is_some_and(|p| p.len() > MAX_SHORT_SECRET_BYTES)
    {
        return Err(InventoryError::invalid(
            "invalid_passphrase",
            format!("passphrase must be at most {MAX_SHORT_SECRET_BYTES} bytes"),
        ));
    }
    if input
        .enable_secret
        .as_ref()
        .is_some_and(|e| e.len() > MAX_SHORT_SECRET_BYTES)
    {
        return Err(InventoryError::invalid(
            "invalid_enable_secret",
            format!("enable_secret must be at most {MAX_SHORT_SECRET_BYTES} bytes"),
        ));
    }
    let mut key_was_encrypted = false;
    let secret = match (input.kind, secret) {
        (CredentialKind::PrivateKey, Some(text)) => {
            let decoded = keys::decode(text, passphrase).await.map_err(key_error)?;
            key_was_encrypted = decoded.was_encrypted;
            Some(keys::to_stored_text(&decoded.key).map_err(key_error)?)
        }
        (CredentialKind::PrivateKey, None) if passphrase.is_some() => {
            return Err(InventoryError::invalid(
                "invalid_passphrase",
                "the stored key is kept decrypted: send the key again together with its passphrase",
            ))
        }
        (_, s) => s,
    };
    Ok(PreparedCredential {
        name,
        kind: input.kind,
        username,
        secret,
        key_was_encrypted,
        enable_secret: input.enable_secret,
    })
}

/// The stored form of a credential: its sealed secret and the flags clients see.
fn merge(
    p: PreparedCredential,
    old: Option<(&Credential, CredentialSecret)>,
) -> Result<(CredentialSecret, bool), InventoryError> {
    let (old_kind, old_has_passphrase, mut secret) = match old {
        Some((c, s)) => (Some(c.kind), c.has_passphrase, s),
        None => (None, false, CredentialSecret::default()),
    };
    let has_passphrase = match p.secret {
        Some(s) => {
            secret.secret = s;
            // A new secret replaces whatever the old one needed.
            secret.passphrase = None;
            p.key_was_encrypted
        }
        None if old_kind.is_none() => {
            return Err(InventoryError::invalid(
                "missing_secret",
                "secret is required (a password or a private key)",
            ))
        }
        None if old_kind != Some(p.kind) => {
            return Err(InventoryError::invalid(
                "missing_secret",
                "changing the kind needs a new secret",
            ))
        }
        None => old_has_passphrase,
    };
    if let Some(e) = p.enable_secret {
        secret.enable_secret = (!e.is_empty()).then_some(e);
    }
    if p.kind == CredentialKind::Password {
        secret.passphrase = None;
    }
    Ok((
        secret,
        has_passphrase && p.kind == CredentialKind::PrivateKey,
    ))
}

pub(crate) fn list(
    tx: &ReadTransaction,
    owner: &str,
) -> Result<Vec<CredentialView>, InventoryError> {
    let all: Vec<(String, Credential)> = store::list_owned(&tx.open_table(CREDENTIALS)?, owner)?;
    Ok(all.iter().map(|(_, c)| CredentialView::from(c)).collect())
}

/// (id, name) of every credential of a workspace, inside a write transaction (CSV import
/// names credentials by name).
pub(crate) fn names(
    tx: &WriteTransaction,
    owner: &str,
) -> Result<Vec<(String, String)>, InventoryError> {
    let all: Vec<(String, Credential)> = store::list_owned(&tx.open_table(CREDENTIALS)?, owner)?;
    Ok(all.into_iter().map(|(id, c)| (id, c.name)).collect())
}

pub(crate) fn create(
    tx: &WriteTransaction,
    sealer: &Sealer,
    ws: &Scope,
    input: PreparedCredential,
) -> Result<CredentialView, InventoryError> {
    let owner = ws.key.as_str();
    let (name, kind, username) = (input.name.clone(), input.kind, input.username.clone());
    let (secret, has_passphrase) = merge(input, None)?;
    let id = store::new_id();
    let plain = serde_json::to_vec(&secret).map_err(|e| InventoryError::Crypto(e.to_string()))?;
    let now = store::now();
    let c = Credential {
        sealed: sealer.seal(owner, &id, &plain)?,
        id,
        name,
        kind,
        username,
        has_passphrase,
        has_enable_secret: secret.enable_secret.is_some(),
        created_at: now,
        updated_at: now,
    };
    tx.open_table(CREDENTIALS)?
        .insert((owner, c.id.as_str()), store::encode(&c)?.as_slice())?;
    audit::record(tx, ws.audit("credential.create").target(&c.id))?;
    Ok(CredentialView::from(&c))
}

pub(crate) fn update(
    tx: &WriteTransaction,
    sealer: &Sealer,
    ws: &Scope,
    id: &str,
    input: PreparedCredential,
) -> Result<CredentialView, InventoryError> {
    let owner = ws.key.as_str();
    let old: Credential = store::get_owned(&tx.open_table(CREDENTIALS)?, owner, id)?
        .ok_or(InventoryError::NotFound("credential"))?;
    let old_secret: CredentialSecret =
        serde_json::from_slice(&sealer.open(owner, id, &old.sealed)?)
            .map_err(|e| InventoryError::Crypto(e.to_string()))?;
    let (name, kind, username) = (input.name.clone(), input.kind, input.username.clone());
    let (secret, has_passphrase) = merge(input, Some((&old, old_secret)))?;
    let plain = serde_json::to_vec(&secret).map_err(|e| InventoryError::Crypto(e.to_string()))?;
    let c = Credential {
        sealed: sealer.seal(owner, id, &plain)?,
        id: id.to_string(),
        name,
        kind,
        username,
        has_passphrase,
        has_enable_secret: secret.enable_secret.is_some(),
        created_at: old.created_at,
        updated_at: store::now(),
    };
    tx.open_table(CREDENTIALS)?
        .insert((owner, id), store::encode(&c)?.as_slice())?;
    audit::record(tx, ws.audit("credential.update").target(id))?;
    Ok(CredentialView::from(&c))
}

pub(crate) fn delete(tx: &WriteTransaction, ws: &Scope, id: &str) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
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
    audit::record(tx, ws.audit("credential.delete").target(id))?;
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
