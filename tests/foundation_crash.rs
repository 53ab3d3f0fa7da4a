//! Crash safety: SIGKILL the gateway in the middle of a burst of writes, start it again
//! on the same data directory, and check that every acknowledged write is there and
//! nothing is half-written. Also: a database from a newer schema is refused.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Semaphore;

/// Creates in the burst; the kill comes long before the last.
const BURST: usize = 400;
/// Requests in flight at once.
const IN_FLIGHT: usize = 16;
/// Acknowledged creates before the kill.
const KILL_AFTER: usize = 60;
/// Rows per import in the burst (an import is one transaction: all or none).
const IMPORT_ROWS: usize = 25;

enum Write {
    /// A single saved session; the 201 body if acknowledged.
    Create(String, Option<Value>),
    /// An import into its own folder; whether it was acknowledged.
    Import(String, bool),
}

/// Checks that a stored saved session is whole: every field present with a sane value.
fn assert_whole(s: &Value) {
    let o = s.as_object().expect("session is an object");
    for k in [
        "id",
        "folder",
        "display_name",
        "host",
        "port",
        "username",
        "device_type",
        "tags",
        "created_at",
        "updated_at",
    ] {
        assert!(o.contains_key(k), "field {k} missing: {s}");
    }
    assert_eq!(s["id"].as_str().map(str::len), Some(32), "{s}");
    assert!(!s["display_name"].as_str().unwrap_or("").is_empty(), "{s}");
    assert!(!s["host"].as_str().unwrap_or("").is_empty(), "{s}");
    assert!(
        (1..=65535).contains(&s["port"].as_u64().unwrap_or(0)),
        "{s}"
    );
    assert!(s["tags"].is_array(), "{s}");
    assert!(s["created_at"].as_i64().unwrap_or(0) > 0, "{s}");
}

fn import_yaml(folder: &str) -> String {
    let mut y = format!("- folder_name: {folder}\n  sessions:\n");
    for i in 0..IMPORT_ROWS {
        y.push_str(&format!(
            "    - {{display_name: {folder}-r{i}, host: 10.{}.{}.1, port: '22', DeviceType: linux, username: root, Model: M{i}}}\n",
            i / 250,
            i % 250
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_no_acknowledged_write() {
    let mut server = Server::start_default().await;
    let admin = server.admin().await;
    // Something written before the burst must survive too.
    let early = admin
        .create_session(&session_input("before-burst", "10.255.0.1"))
        .await;

    let acked = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for i in 0..BURST {
        let c = admin.clone();
        let acked = acked.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            // One write in eight is a multi-row import.
            if i % 8 == 7 {
                let folder = format!("imp{i}");
                let r = c
                    .try_send(
                        c.request(Method::POST, "/api/sessions/import")
                            .header("content-type", "application/yaml")
                            .body(import_yaml(&folder)),
                    )
                    .await;
                let ok = matches!(&r, Ok(r) if r.status.as_u16() == 200);
                if ok {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                return Write::Import(folder, ok);
            }
            let mut body = session_input(
                &format!("burst-{i}"),
                &format!("10.{}.{}.9", i / 250, i % 250),
            );
            body["folder"] = Value::from(format!("F{}", i % 5));
            body["tags"] = serde_json::json!([format!("n={i}")]);
            let r = c
                .try_send(c.request(Method::POST, "/api/sessions").json(&body))
                .await;
            match r {
                Ok(r) if r.status.as_u16() == 201 => {
                    acked.fetch_add(1, Ordering::SeqCst);
                    Write::Create(format!("burst-{i}"), Some(r.json()))
                }
                Ok(r) if r.status.is_server_error() => {
                    panic!("500 during the burst: {}", r.text())
                }
                _ => Write::Create(format!("burst-{i}"), None),
            }
        }));
    }

    // Kill while requests are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "burst too slow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    let killed_at = acked.load(Ordering::SeqCst);

    let mut writes = Vec::new();
    for t in tasks {
        writes.push(t.await.expect("task"));
    }
    let acked_total = acked.load(Ordering::SeqCst);
    assert!(
        acked_total < BURST,
        "the kill came after the burst ended ({acked_total} acknowledged)"
    );

    // Straight from the redb file (recovered on open): every record decodes whole.
    let raw_count = {
        let store = opsgate::store::Store::open(server.data_dir()).expect("reopen store");
        store
            .read_blocking(|tx| -> Result<usize, opsgate::store::StoreError> {
                let table = tx.open_table(opsgate::store::SAVED_SESSIONS)?;
                let mut n = 0;
                for row in redb::ReadableTable::iter(&table)? {
                    let (k, v) = row?;
                    let s: opsgate::inventory::SavedSession = opsgate::store::decode(v.value())?;
                    assert_eq!(k.value().1, s.id, "key and record disagree");
                    n += 1;
                }
                Ok(n)
            })
            .expect("scan saved sessions")
    };

    server.start_again().await;
    let all = admin.all_sessions().await;
    assert_eq!(all.len(), raw_count); // same cookie: logins survive a crash too
    for s in &all {
        assert_whole(s);
    }
    let by_id: HashMap<&str, &Value> = all
        .iter()
        .map(|s| (s["id"].as_str().expect("id"), s))
        .collect();
    assert_eq!(by_id.len(), all.len(), "duplicate ids");
    assert_eq!(by_id.get(early["id"].as_str().expect("id")), Some(&&early));

    let mut per_folder: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        *per_folder
            .entry(s["folder"].as_str().expect("folder").to_string())
            .or_default() += 1;
    }
    let (mut creates_acked, mut imports_acked, mut imports_present) = (0, 0, 0);
    for w in &writes {
        match w {
            Write::Create(name, Some(body)) => {
                creates_acked += 1;
                let stored = by_id
                    .get(body["id"].as_str().expect("id"))
                    .unwrap_or_else(|| panic!("acknowledged create {name} lost"));
                assert_eq!(*stored, body, "stored differs from acknowledged");
            }
            Write::Create(name, None) => {
                // Unacknowledged: may or may not have committed, but at most once.
                let n = all
                    .iter()
                    .filter(|s| s["display_name"] == name.as_str())
                    .count();
                assert!(n <= 1, "{name} stored {n} times");
            }
            Write::Import(folder, ok) => {
                let n = per_folder.get(folder).copied().unwrap_or(0);
                assert!(
                    n == 0 || n == IMPORT_ROWS,
                    "import {folder} half-applied: {n} of {IMPORT_ROWS} rows"
                );
                if *ok {
                    imports_acked += 1;
                    assert_eq!(n, IMPORT_ROWS, "acknowledged import {folder} lost");
                }
                if n == IMPORT_ROWS {
                    imports_present += 1;
                }
            }
        }
    }
    assert!(creates_acked > 0 && imports_acked > 0);
    let stored_burst = all
        .iter()
        .filter(|s| {
            s["display_name"]
                .as_str()
                .unwrap_or("")
                .starts_with("burst-")
        })
        .count();
    assert!(stored_burst >= creates_acked);
    eprintln!(
        "killed after {killed_at} acks; {acked_total} acknowledged in all \
         ({creates_acked} creates, {imports_acked} imports); stored: {stored_burst} creates, \
         {imports_present} imports"
    );

    // The gateway is fully usable afterwards.
    admin
        .create_session(&session_input("after-crash", "10.254.0.1"))
        .await;
    assert_eq!(admin.all_sessions().await.len(), all.len() + 1);
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused() {
    let mut server = Server::start_default().await;
    server.stop();
    {
        let store = opsgate::store::Store::open(server.data_dir()).expect("open");
        store
            .write_blocking(|tx| -> Result<(), opsgate::store::StoreError> {
                let mut meta = tx.open_table(opsgate::store::META)?;
                meta.insert(
                    "schema_version",
                    (opsgate::store::SCHEMA_VERSION + 1)
                        .to_be_bytes()
                        .as_slice(),
                )?;
                Ok(())
            })
            .expect("bump schema");
    }
    let mut cmd = opsgate_command();
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(server.data_dir());
    let (status, out) = run_to_exit(cmd, Duration::from_secs(20));
    let status = status.expect("opsgate started on a newer database");
    assert!(!status.success());
    assert!(out.contains("newer"), "unclear message: {out}");
    // Its data and its version are left as they were.
    let db = redb::Database::open(server.data_dir().join("opsgate.redb")).expect("open db");
    let tx = redb::ReadableDatabase::begin_read(&db).expect("read");
    let meta = tx.open_table(opsgate::store::META).expect("meta");
    let v = meta
        .get("schema_version")
        .expect("get")
        .expect("version kept")
        .value()
        .to_vec();
    assert_eq!(v, (opsgate::store::SCHEMA_VERSION + 1).to_be_bytes());
    let users = tx.open_table(opsgate::store::USERS).expect("users");
    assert!(redb::ReadableTable::get(&users, "admin")
        .expect("get")
        .is_some());
}
