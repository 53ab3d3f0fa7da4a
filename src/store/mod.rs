//! The redb store: this module owns every table definition and the schema version.
//! Every change is one redb write transaction, so a crash (even `kill -9`) leaves either
//! the whole object or nothing.

mod files;

pub use files::{prepare_data_dir, tighten_data_dir};

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    TableHandle, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Schema version this binary writes. A database with a higher one is refused.
///
/// - 1: objects keyed by (owner username, id).
/// - 2: workspaces. The first key component of every owned table is a *workspace key*:
///   a personal workspace's key is its user's name (usernames cannot contain `:`), a team
///   workspace's is `team:<id>`. A schema-1 store is already valid schema 2 (every row in
///   its owner's personal workspace); opening it checks that and bumps the version.
/// - 3: [`CONFIG_INDEX`], config versions without their text.
/// - 4: [`KNOWN_HOST_INDEX`], trusted host keys by address; [`EXECUTION_INDEX`], tool
///   executions without their output.
pub const SCHEMA_VERSION: u32 = 4;

/// Key/value metadata (`schema_version`).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// username → user record (JSON).
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// hex SHA-256 of an HTTP login session id → its tower-sessions record minus the id (JSON).
pub const HTTP_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("http_sessions");
/// (workspace key, folder name) → folder record.
pub const FOLDERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("folders");
/// (workspace key, id) → saved session.
pub const SAVED_SESSIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("saved_sessions");
/// (workspace key, id) → credential set (secrets sealed, bound to the workspace key).
pub const CREDENTIALS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("credentials");
/// (workspace key, id) → trusted host key.
pub const KNOWN_HOSTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("known_hosts");
/// (workspace key, "<port>/<host in lower case>") → the id of that address's
/// [`KNOWN_HOSTS`] row (schema 4): an SSH open (every job target, every status poll)
/// finds its host key with one lookup instead of decoding the workspace's every entry.
pub const KNOWN_HOST_INDEX: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("known_host_index");
/// team id → team record (schema 2).
pub const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams");
/// (team id, username) → membership record with its role (schema 2).
pub const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");

/// (workspace key, job id) → job with its targets' states (jobs module).
pub const JOBS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("jobs");
/// (workspace key, "<job id>:<target index>") → one target of a job (jobs module): a
/// target's change writes its row only, not the whole job.
pub const JOB_TARGETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("job_targets");
/// (workspace key, version id) → config version with its text (jobs module).
pub const CONFIG_VERSIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("config_versions");
/// (workspace key, "<session id>/<version id>") → the same version without its text
/// (schema 3): a device's versions are one range, and listings never read config text.
pub const CONFIG_INDEX: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("config_index");

/// (workspace key, schedule id) → cron schedule with its job (jobs module).
pub const SCHEDULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("schedules");

/// (workspace key, `settings`) → the workspace's NetBox connection (token sealed).
pub const NETBOX_SETTINGS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("netbox_settings");

/// (workspace key, project id) → project (apps module).
pub const PROJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("projects");
/// (workspace key, app id) → app with its state and auto-stop deadline (apps module).
pub const APPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("apps");

/// The tables whose rows belong to a workspace, keyed (workspace key, id).
pub const OWNED_TABLES: [TableDefinition<(&str, &str), &[u8]>; 7] = [
    FOLDERS,
    SAVED_SESSIONS,
    CREDENTIALS,
    KNOWN_HOSTS,
    NETBOX_SETTINGS,
    PROJECTS,
    APPS,
];
/// Every table whose rows belong to a workspace: what deleting a team or a user (their
/// personal workspace) deletes, so nothing is left for a later team or user of the same
/// name to find.
pub const WORKSPACE_TABLES: [TableDefinition<(&str, &str), &[u8]>; 15] = [
    FOLDERS,
    SAVED_SESSIONS,
    CREDENTIALS,
    KNOWN_HOSTS,
    KNOWN_HOST_INDEX,
    NETBOX_SETTINGS,
    PROJECTS,
    APPS,
    JOBS,
    JOB_TARGETS,
    CONFIG_VERSIONS,
    CONFIG_INDEX,
    SCHEDULES,
    EXECUTIONS,
    EXECUTION_INDEX,
];
/// (workspace key, id) → tool execution: params, state, times, result, bounded output.
pub const EXECUTIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("executions");
/// (workspace key, id) → the same execution without its output (schema 4): listing and
/// pruning a workspace's executions read no output (up to 1 MiB each, 1,000 kept).
pub const EXECUTION_INDEX: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("execution_index");
/// sequence number → audit event.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// A table keyed by (owner, id), holding JSON values.
pub type OwnedTable<'t> = Table<'t, (&'static str, &'static str), &'static [u8]>;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("the database {path} is in use by another opsgate process")]
    Locked { path: String },
    #[error("the database was written by a newer opsgate (schema {found}); this binary understands schema {supported} and will not touch it")]
    NewerSchema { found: u32, supported: u32 },
    #[error("cannot migrate the database from schema {from}: {reason}")]
    Migration { from: u32, reason: String },
    #[error("stored record is unreadable: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("cannot create {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

macro_rules! redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Lets a module error type take redb's errors with `?` (through [`StoreError`]).
#[macro_export]
macro_rules! from_redb_errors {
    ($target:ty) => {
        impl From<redb::TableError> for $target {
            fn from(e: redb::TableError) -> Self {
                $crate::store::StoreError::from(e).into()
            }
        }
        impl From<redb::StorageError> for $target {
            fn from(e: redb::StorageError) -> Self {
                $crate::store::StoreError::from(e).into()
            }
        }
    };
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) `data_dir/opsgate.redb`, creates missing tables, and checks the
    /// schema version.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("opsgate.redb");
        // redb would create the file 0644; make it 0600 first (an empty file is fine).
        files::create_private_file(&path).map_err(|source| StoreError::File {
            path: path.display().to_string(),
            source,
        })?;
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.display().to_string(),
            },
            other => other.into(),
        })?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta
                .get("schema_version")?
                .map(|v| decode_version(v.value()));
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(v) => {
                    migrate(&tx, v)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())?;
                    tracing::info!(from = v, to = SCHEMA_VERSION, "database schema migrated");
                }
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
            }
            tx.open_table(USERS)?;
            tx.open_table(HTTP_SESSIONS)?;
            tx.open_table(FOLDERS)?;
            tx.open_table(SAVED_SESSIONS)?;
            tx.open_table(CREDENTIALS)?;
            tx.open_table(KNOWN_HOSTS)?;
            tx.open_table(KNOWN_HOST_INDEX)?;
            tx.open_table(AUDIT)?;
            tx.open_table(TEAMS)?;
            tx.open_table(MEMBERS)?;
            tx.open_table(JOBS)?;
            tx.open_table(JOB_TARGETS)?;
            tx.open_table(CONFIG_VERSIONS)?;
            tx.open_table(CONFIG_INDEX)?;
            tx.open_table(SCHEDULES)?;
            tx.open_table(EXECUTIONS)?;
            tx.open_table(EXECUTION_INDEX)?;
            tx.open_table(NETBOX_SETTINGS)?;
            tx.open_table(PROJECTS)?;
            tx.open_table(APPS)?;
        }
        tx.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Runs `f` in a read transaction on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, E> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(StoreError::from)?;
            f(&tx)
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// Runs `f` in a write transaction on the blocking pool; commits if it returns `Ok`,
    /// aborts (nothing written) if it returns `Err`.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(f))
            .await
            .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// Synchronous form of [`Store::write`], for the CLI.
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&WriteTransaction) -> Result<T, E>,
    {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Synchronous read, for the CLI and start-up.
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&ReadTransaction) -> Result<T, E>,
    {
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        f(&tx)
    }
}

/// Brings a store of schema `from` to [`SCHEMA_VERSION`], inside the opening transaction
/// (a failure leaves the file as it was).
///
/// 1 → 2: every owned row is keyed by its owner's username, which is exactly that user's
/// personal workspace key, so no row moves and no sealed secret changes (secrets are
/// bound to that same key). What must hold is that no key could be mistaken for a team
/// workspace's: no username and no row owner contains `:`.
fn migrate(tx: &WriteTransaction, from: u32) -> Result<(), StoreError> {
    match from {
        1 => {
            check_owners_for_teams(tx, from)?;
            index_config_versions(tx)?;
            index_known_hosts(tx)?;
            index_executions(tx)
        }
        2 => {
            index_config_versions(tx)?;
            index_known_hosts(tx)?;
            index_executions(tx)
        }
        3 => {
            index_known_hosts(tx)?;
            index_executions(tx)
        }
        _ => Err(StoreError::Migration {
            from,
            reason: "no migration path from this version".into(),
        }),
    }
}

/// Schema 3: every config version gets its row in [`CONFIG_INDEX`] (the version's
/// fields without `text`), so a backup and a listing read a device's versions without
/// any config text.
fn index_config_versions(tx: &WriteTransaction) -> Result<(), StoreError> {
    let versions = tx.open_table(CONFIG_VERSIONS)?;
    let mut index = tx.open_table(CONFIG_INDEX)?;
    for row in versions.iter()? {
        let (k, v) = row?;
        let (workspace, id) = k.value();
        let mut version: serde_json::Value = decode(v.value())?;
        let Some(fields) = version.as_object_mut() else {
            continue;
        };
        fields.remove("text");
        let session = fields
            .get("session_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        index.insert(
            (workspace, format!("{session}/{id}").as_str()),
            encode(&version)?.as_slice(),
        )?;
    }
    Ok(())
}

/// The [`KNOWN_HOST_INDEX`] key of `host:port`.
pub fn known_host_address(host: &str, port: u16) -> String {
    format!("{port}/{}", host.to_ascii_lowercase())
}

/// Schema 4: every trusted host key's address gets its row in [`KNOWN_HOST_INDEX`]. Of
/// several entries for one address (two accepts that raced), the first in key order
/// stands, as the scan that looked them up before found it first.
fn index_known_hosts(tx: &WriteTransaction) -> Result<(), StoreError> {
    let hosts = tx.open_table(KNOWN_HOSTS)?;
    let mut index = tx.open_table(KNOWN_HOST_INDEX)?;
    for row in hosts.iter()? {
        let (k, v) = row?;
        let (workspace, id) = k.value();
        let entry: serde_json::Value = decode(v.value())?;
        let host = entry.get("host").and_then(serde_json::Value::as_str);
        let port = entry
            .get("port")
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        let (Some(host), Some(port)) = (host, port) else {
            continue;
        };
        let address = known_host_address(host, port);
        if index.get((workspace, address.as_str()))?.is_none() {
            index.insert((workspace, address.as_str()), id.as_bytes())?;
        }
    }
    Ok(())
}

/// Schema 4: every tool execution gets its row in [`EXECUTION_INDEX`] (the record with
/// an empty `output`).
fn index_executions(tx: &WriteTransaction) -> Result<(), StoreError> {
    let runs = tx.open_table(EXECUTIONS)?;
    let mut index = tx.open_table(EXECUTION_INDEX)?;
    for row in runs.iter()? {
        let (k, v) = row?;
        let (workspace, id) = k.value();
        let mut run: serde_json::Value = decode(v.value())?;
        if let Some(fields) = run.as_object_mut() {
            fields.insert("output".into(), serde_json::Value::String(String::new()));
        }
        index.insert((workspace, id), encode(&run)?.as_slice())?;
    }
    Ok(())
}

/// Schema 2 reserves `:` in owners for team workspaces: a schema 1 store that used it
/// cannot be migrated.
fn check_owners_for_teams(tx: &WriteTransaction, from: u32) -> Result<(), StoreError> {
    let refuse = |what: String| StoreError::Migration {
        from,
        reason: format!("{what} contains ':', which schema 2 reserves for team workspaces"),
    };
    for row in tx.open_table(USERS)?.iter()? {
        let (k, _) = row?;
        if k.value().contains(':') {
            return Err(refuse(format!("username {:?}", k.value())));
        }
    }
    for def in OWNED_TABLES {
        for row in tx.open_table(def)?.iter()? {
            let (k, _) = row?;
            let (owner, _) = k.value();
            if owner.contains(':') {
                return Err(refuse(format!(
                    "the owner {owner:?} of a {} row",
                    def.name()
                )));
            }
        }
    }
    Ok(())
}

fn decode_version(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = bytes.len().min(4);
    b[..n].copy_from_slice(&bytes[..n]);
    u32::from_be_bytes(b)
}

/// Serialises a record for storage.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(value)?)
}

/// Reads a record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Gets one (owner, id) record.
pub fn get_owned<T, Tb>(table: &Tb, owner: &str, id: &str) -> Result<Option<T>, StoreError>
where
    T: DeserializeOwned,
    Tb: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    match table.get((owner, id))? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// Lists every record of one owner, in key order.
pub fn list_owned<T, Tb>(table: &Tb, owner: &str) -> Result<Vec<(String, T)>, StoreError>
where
    T: DeserializeOwned,
    Tb: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let mut out = Vec::new();
    for row in table.range((owner, "")..)? {
        let (k, v) = row?;
        let (o, id) = k.value();
        if o != owner {
            break;
        }
        out.push((id.to_string(), decode(v.value())?));
    }
    Ok(out)
}

/// Counts the records of one owner.
pub fn count_owned<Tb>(table: &Tb, owner: &str) -> Result<usize, StoreError>
where
    Tb: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let mut n = 0;
    for row in table.range((owner, "")..)? {
        let (k, _) = row?;
        if k.value().0 != owner {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// Removes every record of one owner; returns how many.
pub fn delete_owned(table: &mut OwnedTable<'_>, owner: &str) -> Result<usize, StoreError> {
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for row in table.range((owner, "")..)? {
            let (k, _) = row?;
            let (o, id) = k.value();
            if o != owner {
                break;
            }
            ids.push(id.to_string());
        }
        ids
    };
    for id in &ids {
        table.remove((owner, id.as_str()))?;
    }
    Ok(ids.len())
}

/// A fresh random identifier (128 bits, hex).
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_a_workspace_covers_every_table_a_workspace_owns() {
        // Two lists name tables keyed by workspace: the migration's and the deletion's.
        // An owned table missing from the second would outlive its user or team.
        let deleted: Vec<&str> = WORKSPACE_TABLES.iter().map(|t| t.name()).collect();
        for t in OWNED_TABLES {
            assert!(deleted.contains(&t.name()), "{} is not deleted", t.name());
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .write_blocking(|tx| -> Result<(), StoreError> {
                    let mut meta = tx.open_table(META)?;
                    meta.insert("schema_version", 99u32.to_be_bytes().as_slice())?;
                    Ok(())
                })
                .expect("write");
        }
        match Store::open(dir.path()) {
            Err(StoreError::NewerSchema { found: 99, .. }) => {}
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }

    fn set_version(store: &Store, v: u32) {
        store
            .write_blocking(|tx| -> Result<(), StoreError> {
                tx.open_table(META)?
                    .insert("schema_version", v.to_be_bytes().as_slice())?;
                Ok(())
            })
            .expect("write");
    }

    fn version(store: &Store) -> u32 {
        store
            .read_blocking(|tx| -> Result<u32, StoreError> {
                let meta = tx.open_table(META)?;
                let v = meta
                    .get("schema_version")?
                    .map(|v| decode_version(v.value()));
                Ok(v.unwrap_or(0))
            })
            .expect("read")
    }

    #[test]
    fn schema_1_is_bumped_and_a_colon_owner_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            set_version(&store, 1);
            store
                .write_blocking(|tx| -> Result<(), StoreError> {
                    tx.open_table(FOLDERS)?
                        .insert(("alice", "Core"), b"{}".as_slice())?;
                    Ok(())
                })
                .expect("write");
        }
        let store = Store::open(dir.path()).expect("migrates");
        assert_eq!(version(&store), SCHEMA_VERSION);
        set_version(&store, 1);
        store
            .write_blocking(|tx| -> Result<(), StoreError> {
                tx.open_table(FOLDERS)?
                    .insert(("team:x", "Core"), b"{}".as_slice())?;
                Ok(())
            })
            .expect("write");
        drop(store);
        match Store::open(dir.path()) {
            Err(StoreError::Migration { from: 1, .. }) => {}
            other => panic!("expected a refused migration, got {other:?}"),
        }
    }
}
