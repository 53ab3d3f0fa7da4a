//! tower-sessions store backed by redb, so a gateway restart logs nobody out.
//!
//! The database never holds a session id: rows are keyed by the SHA-256 of the id (the
//! cookie value) and the stored record leaves the id out, so a copied database file
//! yields no live cookie. Rows written before this scheme were keyed by the raw id; no
//! cookie hashes to them, so those logins simply ended (their users log in again), and
//! the expiry sweep removes the rows.

use std::collections::HashMap;

use async_trait::async_trait;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use crate::store::{self, Store, StoreError, HTTP_SESSIONS};

/// Login sessions in the `http_sessions` table.
#[derive(Debug, Clone)]
pub struct RedbSessionStore {
    store: Store,
}

impl RedbSessionStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn backend(e: StoreError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// A session record as stored: everything but the id.
#[derive(Serialize, Deserialize)]
struct Stored {
    data: HashMap<String, serde_json::Value>,
    expiry_date: OffsetDateTime,
}

impl Stored {
    fn of(record: &Record) -> Stored {
        Stored {
            data: record.data.clone(),
            expiry_date: record.expiry_date,
        }
    }

    /// The user this session is logged in as, if any.
    fn username(&self) -> Option<&str> {
        self.data.get(super::LOGIN_KEY)?.get("username")?.as_str()
    }
}

/// The table key of a session id: hex SHA-256 of its cookie form.
fn key_of(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

/// The username a stored session record belongs to, if it is logged in.
pub(super) fn record_username(bytes: &[u8]) -> Option<String> {
    let record: Stored = serde_json::from_slice(bytes).ok()?;
    record.username().map(str::to_string)
}

/// Makes room for one more login of `username`: of its stored logins, the ones that
/// expire first are removed until fewer than `keep` remain. Without it, a script that
/// logs in again and again (its password being right) left a row per login for hours,
/// and every expiry sweep, run in the write transaction all writers wait for, read them
/// all. Returns how many were removed.
pub(super) fn make_room_for_login(
    tx: &redb::WriteTransaction,
    username: &str,
    keep: usize,
    replaced: Option<&Id>,
) -> Result<usize, StoreError> {
    // The login being replaced (the same browser logging in again) goes anyway.
    let replaced = replaced.map(key_of);
    let mut table = tx.open_table(HTTP_SESSIONS)?;
    let mut mine = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let Ok(record) = serde_json::from_slice::<Stored>(v.value()) else {
            continue;
        };
        if record.username() == Some(username) && replaced.as_deref() != Some(k.value()) {
            mine.push((record.expiry_date, k.value().to_string()));
        }
    }
    let keep = keep.max(1);
    if mine.len() < keep {
        return Ok(0);
    }
    mine.sort();
    let doomed = mine.len() + 1 - keep;
    for (_, key) in mine.iter().take(doomed) {
        table.remove(key.as_str())?;
    }
    Ok(doomed)
}

#[async_trait]
impl SessionStore for RedbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut candidate = record.clone();
        let saved = self
            .store
            .write(move |tx| -> Result<Record, StoreError> {
                let mut table = tx.open_table(HTTP_SESSIONS)?;
                // Ids are 128 random bits; a collision is astronomically unlikely but
                // must never hand one user another's session.
                while table.get(key_of(&candidate.id).as_str())?.is_some() {
                    candidate.id = Id::default();
                }
                let bytes = store::encode(&Stored::of(&candidate))?;
                table.insert(key_of(&candidate.id).as_str(), bytes.as_slice())?;
                Ok(candidate)
            })
            .await
            .map_err(backend)?;
        record.id = saved.id;
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let record = record.clone();
        self.store
            .write(move |tx| -> Result<(), StoreError> {
                let key = key_of(&record.id);
                let mut table = tx.open_table(HTTP_SESSIONS)?;
                // Only a stored login is updated: one ended meanwhile (logout, its user
                // deleted, the oldest beyond `max_logins_per_user`) by another request
                // stays ended, whatever a request still in flight on it saves.
                if table.get(key.as_str())?.is_none() {
                    return Ok(());
                }
                let bytes = store::encode(&Stored::of(&record))?;
                table.insert(key.as_str(), bytes.as_slice())?;
                Ok(())
            })
            .await
            .map_err(backend)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let key = key_of(session_id);
        let stored = self
            .store
            .read(move |tx| -> Result<Option<Stored>, StoreError> {
                let table = tx.open_table(HTTP_SESSIONS)?;
                match table.get(key.as_str())? {
                    Some(v) => Ok(Some(store::decode(v.value())?)),
                    None => Ok(None),
                }
            })
            .await
            .map_err(backend)?;
        Ok(stored
            .filter(|r| r.expiry_date > OffsetDateTime::now_utc())
            .map(|r| Record {
                id: *session_id,
                data: r.data,
                expiry_date: r.expiry_date,
            }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let key = key_of(session_id);
        self.store
            .write(move |tx| -> Result<(), StoreError> {
                tx.open_table(HTTP_SESSIONS)?.remove(key.as_str())?;
                Ok(())
            })
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for RedbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.store
            .write(move |tx| -> Result<(), StoreError> {
                let mut table = tx.open_table(HTTP_SESSIONS)?;
                let now = OffsetDateTime::now_utc();
                let mut doomed = Vec::new();
                for row in table.iter()? {
                    let (k, v) = row?;
                    let expired = serde_json::from_slice::<Stored>(v.value())
                        .map(|r| r.expiry_date <= now)
                        .unwrap_or(true);
                    if expired {
                        doomed.push(k.value().to_string());
                    }
                }
                for id in doomed {
                    table.remove(id.as_str())?;
                }
                Ok(())
            })
            .await
            .map_err(backend)
    }
}
