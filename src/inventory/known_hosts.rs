//! Host keys a user has trusted (trust on first use, per user).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::InventoryError;
use crate::audit;
use crate::store::{self, KNOWN_HOSTS, KNOWN_HOST_INDEX};
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

impl KnownHost {
    /// Whether this is the entry of `host:port` (host names compare without case).
    fn is_for(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.eq_ignore_ascii_case(host)
    }
}

/// The id [`KNOWN_HOST_INDEX`] holds for `address` in workspace `owner`.
fn indexed_id(
    index: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    owner: &str,
    address: &str,
) -> Result<Option<String>, InventoryError> {
    Ok(index
        .get((owner, address))?
        .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
}

pub(crate) fn list(tx: &ReadTransaction, owner: &str) -> Result<Vec<KnownHost>, InventoryError> {
    let all: Vec<(String, KnownHost)> = store::list_owned(&tx.open_table(KNOWN_HOSTS)?, owner)?;
    Ok(all.into_iter().map(|(_, k)| k).collect())
}

/// The entry for `host:port`, if the workspace has one: one index lookup and one row.
pub fn find_known_host(
    tx: &ReadTransaction,
    owner: &str,
    host: &str,
    port: u16,
) -> Result<Option<KnownHost>, InventoryError> {
    let address = store::known_host_address(host, port);
    let Some(id) = indexed_id(&tx.open_table(KNOWN_HOST_INDEX)?, owner, &address)? else {
        return Ok(None);
    };
    let found: Option<KnownHost> = store::get_owned(&tx.open_table(KNOWN_HOSTS)?, owner, &id)?;
    Ok(found.filter(|k| k.is_for(host, port)))
}

/// Trusts a key for `host:port`. Nothing is replaced (a changed key must be deleted
/// first): if the address already has an entry (another accept got there first), that
/// entry stays and is returned, with `false` (not added); the caller compares its
/// fingerprint.
pub fn add_known_host(
    tx: &WriteTransaction,
    ws: &Scope,
    host: &str,
    port: u16,
    algorithm: &str,
    fingerprint: &str,
) -> Result<(KnownHost, bool), InventoryError> {
    let owner = ws.key.as_str();
    let address = store::known_host_address(host, port);
    let mut index = tx.open_table(KNOWN_HOST_INDEX)?;
    if let Some(id) = indexed_id(&index, owner, &address)? {
        if let Some(k) = store::get_owned(&tx.open_table(KNOWN_HOSTS)?, owner, &id)? {
            return Ok((k, false));
        }
    }
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
    index.insert((owner, address.as_str()), k.id.as_bytes())?;
    audit::record(
        tx,
        ws.audit("known_host.add")
            .target(format!("{host}:{port}"))
            .detail(fingerprint),
    )?;
    Ok((k, true))
}

pub(crate) fn delete(tx: &WriteTransaction, ws: &Scope, id: &str) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
    let mut hosts = tx.open_table(KNOWN_HOSTS)?;
    let Some(removed) = hosts.remove((owner, id))? else {
        return Err(InventoryError::NotFound("known host"));
    };
    // An unreadable entry is removed all the same; its address row, if any, then
    // points at nothing, which a lookup reads as "unknown" and the next accept replaces.
    let gone = store::decode::<KnownHost>(removed.value()).ok();
    drop(removed);
    if let Some(gone) = gone {
        let address = store::known_host_address(&gone.host, gone.port);
        let mut index = tx.open_table(KNOWN_HOST_INDEX)?;
        if indexed_id(&index, owner, &address)?.as_deref() == Some(id) {
            index.remove((owner, address.as_str()))?;
            // An older store may hold another entry for the address (accepts that raced
            // before the index existed): it is the address's entry now.
            let all: Vec<(String, KnownHost)> = store::list_owned(&hosts, owner)?;
            if let Some((other, _)) = all.iter().find(|(_, k)| k.is_for(&gone.host, gone.port)) {
                index.insert((owner, address.as_str()), other.as_bytes())?;
            }
        }
    }
    audit::record(tx, ws.audit("known_host.delete").target(id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreError, META};

    fn entry(id: &str, host: &str, port: u16, fp: &str) -> KnownHost {
        KnownHost {
            id: id.into(),
            host: host.into(),
            port,
            algorithm: "ssh-ed25519".into(),
            fingerprint: fp.into(),
            added_at: 0,
        }
    }

    fn find(store: &Store, host: &str, port: u16) -> Option<String> {
        store
            .read_blocking(|tx| find_known_host(tx, "alice", host, port))
            .expect("find")
            .map(|k| k.fingerprint)
    }

    /// A schema-3 store (no index) with two entries for one address, as two accepts
    /// that raced could leave: opening it indexes them, the first in key order stands
    /// (as the scan found it), and deleting it hands the address to the other.
    #[test]
    fn host_keys_are_found_by_address_after_migration_and_deletes() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .write_blocking(|tx| -> Result<(), StoreError> {
                    tx.open_table(META)?
                        .insert("schema_version", 3u32.to_be_bytes().as_slice())?;
                    let mut t = tx.open_table(KNOWN_HOSTS)?;
                    for k in [
                        entry("a1", "Rtr1.Example", 22, "SHA256:first"),
                        entry("b2", "rtr1.example", 22, "SHA256:second"),
                        entry("c3", "rtr1.example", 2222, "SHA256:other-port"),
                    ] {
                        t.insert(("alice", k.id.as_str()), store::encode(&k)?.as_slice())?;
                    }
                    Ok(())
                })
                .expect("write");
        }
        let store = Store::open(dir.path()).expect("migrates");
        assert_eq!(
            find(&store, "RTR1.example", 22).as_deref(),
            Some("SHA256:first")
        );
        assert_eq!(
            find(&store, "rtr1.example", 2222).as_deref(),
            Some("SHA256:other-port")
        );
        assert_eq!(find(&store, "rtr2.example", 22), None);
        let ws = Scope::personal("alice");
        store
            .write_blocking(|tx| delete(tx, &ws, "a1"))
            .expect("delete");
        assert_eq!(
            find(&store, "rtr1.example", 22).as_deref(),
            Some("SHA256:second")
        );
        store
            .write_blocking(|tx| delete(tx, &ws, "b2"))
            .expect("delete");
        assert_eq!(find(&store, "rtr1.example", 22), None);
        // A new key for the address is found; a second accept for it adds nothing.
        let added = store
            .write_blocking(|tx| {
                add_known_host(tx, &ws, "rtr1.example", 22, "ssh-ed25519", "SHA256:new")
            })
            .expect("add");
        let again = store
            .write_blocking(|tx| {
                add_known_host(tx, &ws, "RTR1.EXAMPLE", 22, "ssh-ed25519", "SHA256:raced")
            })
            .expect("add");
        assert!(added.1, "the first accept adds");
        // The second returns the entry there, whose fingerprint the caller compares.
        assert_eq!(
            (again.0.id, again.0.fingerprint.as_str(), again.1),
            (added.0.id, "SHA256:new", false)
        );
        assert_eq!(
            find(&store, "rtr1.example", 22).as_deref(),
            Some("SHA256:new")
        );
        let n = store
            .read_blocking(|tx| list(tx, "alice"))
            .expect("list")
            .len();
        assert_eq!(n, 2);
        // Another workspace sees none of them.
        let other = store
            .read_blocking(|tx| find_known_host(tx, "bob", "rtr1.example", 22))
            .expect("find");
        assert!(other.is_none());
    }
}

/// `cargo test --release --lib lookup_cost -- --ignored --nocapture`: what one host-key
/// lookup costs in a workspace at `[inventory] max_known_hosts` (load-tests/RESULTS.md).
#[cfg(test)]
mod bench {
    use super::*;
    use crate::store::Store;

    #[test]
    #[ignore]
    fn lookup_cost_with_20000_entries() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("open");
        let ws = Scope::personal("alice");
        store
            .write_blocking(|tx| -> Result<(), InventoryError> {
                for i in 0..20_000u32 {
                    add_known_host(tx, &ws, &format!("rtr{i}.example.net"), 22, "ssh-ed25519", "SHA256:AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")?;
                }
                Ok(())
            })
            .expect("fill");
        let n = 1000u32;
        let t = std::time::Instant::now();
        for i in 0..n {
            let host = format!("rtr{}.example.net", i * 19);
            let k = store
                .read_blocking(|tx| -> Result<_, InventoryError> {
                    Ok(list(tx, "alice")?
                        .into_iter()
                        .find(|k| k.port == 22 && k.host.eq_ignore_ascii_case(&host)))
                })
                .expect("scan");
            assert!(k.is_some());
        }
        let scan = t.elapsed() / n;
        let t = std::time::Instant::now();
        for i in 0..n {
            let host = format!("rtr{}.example.net", i * 19);
            let k = store
                .read_blocking(|tx| find_known_host(tx, "alice", &host, 22))
                .expect("find");
            assert!(k.is_some());
        }
        let index = t.elapsed() / n;
        println!("20000 entries: scan {scan:?} per lookup, index {index:?} per lookup");
    }
}
