//! Encryption at rest for credential secrets.
//!
//! A 32-byte master key lives in `data_dir/master.key` (mode 0600, made on first start).
//! Each workspace gets a key derived from it and its workspace key (the username of a
//! personal workspace, `team:<id>` of a team's: the same string schema 1 used as owner,
//! so secrets sealed before workspaces open unchanged), and every sealed secret is bound
//! (as AEAD associated data) to its workspace and credential id, so a ciphertext copied
//! to another user's or team's record, or another id, fails to open.
//!
//! The database keeps a key-check value (a one-way hash of the master key) in its
//! `meta` table. At start a missing or different `master.key` is refused while sealed
//! credentials exist, instead of quietly making a new key that opens none of them; a new
//! key is generated only for a store without credentials.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use redb::{ReadableTable, ReadableTableMetadata};
use sha2::{Digest, Sha256};

use super::{Credential, InventoryError};
use crate::store::{self, Store, StoreError, CREDENTIALS, META};

/// The `meta` key of the key-check value.
const KEY_CHECK: &str = "master_key_check";

/// Why the master key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{path} is missing, but the database holds {count} sealed credential(s) made with it. Restore master.key from the backup of this data directory (opsgate will not make a new key that opens none of them)")]
    Missing { path: String, count: u64 },
    #[error("{path} is not the key the database's {count} sealed credential(s) were made with. Restore the matching master.key from the backup of this data directory")]
    Mismatch { path: String, count: u64 },
    #[error("{path} must hold exactly 32 bytes")]
    Malformed { path: String },
    #[error("master key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::from_redb_errors!(MasterKeyError);

const NONCE_LEN: usize = 24;

/// What the database says about the key at start.
struct Found {
    /// Sealed credentials stored.
    count: u64,
    /// The stored key-check value.
    check: Option<Vec<u8>>,
    /// One credential's (owner, id, sealed secret), to verify a key without a check value.
    sample: Option<(String, String, String)>,
}

/// Seals and opens credential secrets.
pub struct Sealer {
    master: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Loads the master key from `data_dir` and checks it against the database (see the
    /// module comment); creates it (0600) only when no credential is stored.
    pub fn open_checked(data_dir: &Path, db: &Store) -> Result<Sealer, MasterKeyError> {
        let path = data_dir.join("master.key");
        let shown = path.display().to_string();
        let found = db.read_blocking(|tx| -> Result<Found, MasterKeyError> {
            let creds = tx.open_table(CREDENTIALS)?;
            let sample = match creds.first()? {
                Some((k, v)) => {
                    let (owner, id) = k.value();
                    let c: Credential = store::decode(v.value())?;
                    Some((owner.to_string(), id.to_string(), c.sealed))
                }
                None => None,
            };
            Ok(Found {
                count: creds.len()?,
                check: tx
                    .open_table(META)?
                    .get(KEY_CHECK)?
                    .map(|v| v.value().to_vec()),
                sample,
            })
        })?;
        let Found {
            count,
            check: stored_check,
            sample,
        } = found;
        let existed = path.exists();
        if !existed && count > 0 {
            return Err(MasterKeyError::Missing { path: shown, count });
        }
        let sealer = Self::load_or_create(data_dir).map_err(|source| {
            if source.kind() == std::io::ErrorKind::InvalidData {
                MasterKeyError::Malformed {
                    path: shown.clone(),
                }
            } else {
                MasterKeyError::Io {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        let check = sealer.key_check();
        let matches = match (&stored_check, &sample) {
            (Some(stored), _) => stored.as_slice() == check.as_slice(),
            // A database from before the check existed: a stored secret must open.
            (None, Some((owner, id, sealed))) => sealer.open(owner, id, sealed).is_ok(),
            (None, None) => true,
        };
        if !matches && count > 0 {
            return Err(MasterKeyError::Mismatch { path: shown, count });
        }
        if !matches || stored_check.is_none() {
            if existed && stored_check.is_some() {
                tracing::warn!(path = %shown, "master.key changed; no credential is stored, so the new key is accepted");
            }
            db.write_blocking(|tx| -> Result<(), MasterKeyError> {
                tx.open_table(META)?.insert(KEY_CHECK, check.as_slice())?;
                Ok(())
            })?;
        }
        Ok(sealer)
    }

    /// A one-way function of the master key (SHA-256 of a domain constant and the key):
    /// says whether a key is the right one without revealing it.
    fn key_check(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"opsgate/master-key-check/v1\0");
        h.update(self.master);
        h.finalize().into()
    }

    /// Loads the master key from `data_dir`, creating it (0600) if absent.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Sealer> {
        let path = data_dir.join("master.key");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let master: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} must hold exactly 32 bytes", path.display()),
                    )
                })?;
                Ok(Sealer { master })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let master: [u8; 32] = rand::random();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&master)?;
                f.sync_all()?;
                Ok(Sealer { master })
            }
            Err(e) => Err(e),
        }
    }

    fn cipher(&self, owner: &str) -> XChaCha20Poly1305 {
        let mut h = Sha256::new();
        h.update(b"opsgate/credential-key/v1\0");
        h.update(self.master);
        h.update(owner.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        XChaCha20Poly1305::new(&Key::from(key))
    }

    fn aad(owner: &str, id: &str) -> Vec<u8> {
        format!("opsgate-credential-v1\0{owner}\0{id}").into_bytes()
    }

    /// Encrypts `plaintext` for (workspace key `owner`, id); returns base64(nonce || ciphertext).
    pub fn seal(&self, owner: &str, id: &str, plaintext: &[u8]) -> Result<String, InventoryError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let aad = Self::aad(owner, id);
        let ct = self
            .cipher(owner)
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|e| InventoryError::Crypto(e.to_string()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Decrypts what [`Sealer::seal`] made for the same (owner, id).
    pub fn open(&self, owner: &str, id: &str, sealed: &str) -> Result<Vec<u8>, InventoryError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| InventoryError::Crypto(e.to_string()))?;
        if raw.len() < NONCE_LEN {
            return Err(InventoryError::Crypto("sealed secret too short".into()));
        }
        let (n, ct) = raw.split_at(NONCE_LEN);
        let nonce_bytes: [u8; NONCE_LEN] = n
            .try_into()
            .map_err(|_| InventoryError::Crypto("bad nonce".into()))?;
        let aad = Self::aad(owner, id);
        self.cipher(owner)
            .decrypt(&XNonce::from(nonce_bytes), Payload { msg: ct, aad: &aad })
            .map_err(|_| {
                InventoryError::Crypto("secret does not open for this owner and id".into())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_is_bound_to_owner_and_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Sealer::load_or_create(dir.path()).expect("key");
        let sealed = s.seal("alice", "c1", b"hunter2").expect("seal");
        assert_eq!(s.open("alice", "c1", &sealed).expect("open"), b"hunter2");
        assert!(s.open("bob", "c1", &sealed).is_err());
        assert!(s.open("alice", "c2", &sealed).is_err());
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .expect("meta")
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        // Reloading gives the same key.
        let s2 = Sealer::load_or_create(dir.path()).expect("key");
        assert_eq!(s2.open("alice", "c1", &sealed).expect("open"), b"hunter2");
    }
}
