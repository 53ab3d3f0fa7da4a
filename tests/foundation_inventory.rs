//! The per-user inventory over REST: saved sessions, folders, search, credentials and
//! known hosts; isolation between users; secrets that never leave the server.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn saved_sessions_folders_and_search() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = server.login("ann", "ann-password-1").await;

    assert_eq!(ann.list_sessions().await, json!({"folders": []}));

    let sw = ann
        .create_session(&json!({
            "folder": "Core", "display_name": "Core-SW1", "host": "10.0.0.1", "port": 2222,
            "username": "netops", "device_type": "arista_eos", "tags": ["site=ams", "rack7"]
        }))
        .await;
    assert_eq!(sw["folder"], "Core");
    assert_eq!(sw["port"], 2222);
    assert_eq!(sw["device_type"], "arista_eos");
    assert_eq!(sw["tags"], json!(["site=ams", "rack7"]));
    let id = sw["id"].as_str().expect("id").to_string();
    // Defaults: folder "Default", port 22, no tags.
    let fw = ann
        .create_session(&json!({
            "display_name": "fw1", "host": "fw1.example.net", "username": "admin",
            "device_type": "fortinet"
        }))
        .await;
    assert_eq!(fw["folder"], "Default");
    assert_eq!(fw["port"], 22);
    assert_eq!(fw["tags"], json!([]));

    ann.get(&format!("/api/sessions/{id}"))
        .await
        .assert_status(200);
    assert_eq!(ann.get(&format!("/api/sessions/{id}")).await.json(), sw);

    let list = ann.list_sessions().await;
    let folders: Vec<&str> = list["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(folders.len(), 2, "{list}");
    assert!(folders.contains(&"Core") && folders.contains(&"Default"));

    // ?q= matches name, host or tag, case-insensitively, and drops empty folders.
    for (q, want) in [
        ("core-sw", vec!["Core-SW1"]),
        ("FW1.EXAMPLE", vec!["fw1"]),
        ("site%3Dams", vec!["Core-SW1"]),
        ("10.0.0", vec!["Core-SW1"]),
        ("nothing-matches", vec![]),
    ] {
        let r = ann.get(&format!("/api/sessions?q={q}")).await;
        r.assert_status(200);
        let v = r.json();
        let names: Vec<String> = flatten_sessions(&v)
            .iter()
            .map(|s| s["display_name"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(names, want, "q={q}: {v}");
        assert!(v["folders"]
            .as_array()
            .expect("folders")
            .iter()
            .all(|f| !f["sessions"].as_array().expect("sessions").is_empty()));
    }

    // Update keeps id and created_at.
    let mut body = session_input("Core-SW1", "10.0.0.2");
    body["folder"] = json!("Core");
    body["device_type"] = json!("junos");
    let r = ann.put(&format!("/api/sessions/{id}"), &body).await;
    r.assert_status(200);
    let up = r.json();
    assert_eq!(up["id"], sw["id"]);
    assert_eq!(up["created_at"], sw["created_at"]);
    assert_eq!(up["host"], "10.0.0.2");
    assert_eq!(up["device_type"], "juniper_junos");

    // Folders: create, duplicate, rename (moves sessions), delete only when empty.
    ann.post("/api/folders", &json!({"name": "Lab"}))
        .await
        .assert_status(201);
    ann.post("/api/folders", &json!({"name": "Lab"}))
        .await
        .assert_error(409, Some("folder_exists"));
    ann.post("/api/folders", &json!({"name": "a/b"}))
        .await
        .assert_error(400, Some("invalid_folder"));
    ann.put("/api/folders/Core", &json!({"name": "Backbone"}))
        .await
        .assert_status(200);
    assert_eq!(
        ann.get(&format!("/api/sessions/{id}")).await.json()["folder"],
        "Backbone"
    );
    ann.put("/api/folders/Backbone", &json!({"name": "Lab"}))
        .await
        .assert_error(409, Some("folder_exists"));
    ann.delete("/api/folders/Backbone")
        .await
        .assert_error(409, Some("folder_not_empty"));
    ann.delete("/api/folders/Lab").await.assert_status(204);
    ann.delete("/api/folders/Lab")
        .await
        .assert_error(404, Some("not_found"));

    ann.delete(&format!("/api/sessions/{id}"))
        .await
        .assert_status(204);
    ann.delete(&format!("/api/sessions/{id}"))
        .await
        .assert_error(404, Some("not_found"));
    ann.get(&format!("/api/sessions/{id}"))
        .await
        .assert_error(404, Some("not_found"));
    ann.delete("/api/folders/Backbone").await.assert_status(204);
    assert_eq!(ann.all_sessions().await, vec![fw]);
}

/// Seeds a known host for `owner` straight into the redb file while the server is down
/// (the REST API has no route to add one: they come from SSH host-key confirmation).
fn seed_known_host(server: &Server, owner: &str, host: &str) -> String {
    let store = opsgate::store::Store::open(server.data_dir()).expect("open store");
    let k = store
        .write_blocking(|tx| {
            opsgate::inventory::add_known_host(
                tx,
                &opsgate::workspace::Scope::personal(owner),
                host,
                22,
                "ssh-ed25519",
                "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            )
        })
        .expect("add known host");
    k.0.id
}

/// Everything user `c` can see of their own inventory.
async fn snapshot(c: &Client) -> (Value, String, Value, Value) {
    let creds = c.get("/api/credentials").await;
    creds.assert_status(200);
    let hosts = c.get("/api/known-hosts").await;
    hosts.assert_status(200);
    (
        c.list_sessions().await,
        c.export().await,
        creds.json(),
        hosts.json(),
    )
}

#[tokio::test]
async fn isolation_matrix_another_users_ids_are_404() {
    let mut server = Server::start_default().await;
    let admin = server.admin().await;
    admin
        .create_user("alice", "alice-password", "operator")
        .await;
    admin.create_user("bob", "bob-password-1", "operator").await;
    server.stop();
    let a_host = seed_known_host(&server, "alice", "core-sw1.example.net");
    let b_host = seed_known_host(&server, "bob", "edge.example.net");
    server.start_again().await;

    let alice = server.login("alice", "alice-password").await;
    let bob = server.login("bob", "bob-password-1").await;

    let cred = alice
        .post(
            "/api/credentials",
            &json!({"name": "lab", "kind": "password", "username": "netops", "secret": "alice-pw-123"}),
        )
        .await;
    cred.assert_status(201);
    let a_cred = cred.json()["id"].as_str().expect("id").to_string();
    let mut body = session_input("core-sw1", "10.0.0.1");
    body["folder"] = json!("Core");
    body["credential_id"] = json!(a_cred);
    let a_sess = alice.create_session(&body).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Bob has a folder of the same name as none of Alice's, and objects of his own.
    bob.create_session(&session_input("bob-r1", "10.9.9.9"))
        .await;

    let before = snapshot(&alice).await;
    assert_eq!(before.3.as_array().map(Vec::len), Some(1), "{:?}", before.3);

    // Every route that takes an id, with Alice's ids, as Bob: 404, never 200/500.
    let valid_cred = json!({"name": "x", "kind": "password", "secret": "bob-overwrite-1"});
    let matrix: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/sessions/{a_sess}"), None),
        (
            Method::PUT,
            format!("/api/sessions/{a_sess}"),
            Some(session_input("pwned", "10.6.6.6")),
        ),
        (Method::DELETE, format!("/api/sessions/{a_sess}"), None),
        (
            Method::PUT,
            format!("/api/credentials/{a_cred}"),
            Some(valid_cred.clone()),
        ),
        (Method::DELETE, format!("/api/credentials/{a_cred}"), None),
        (Method::DELETE, format!("/api/known-hosts/{a_host}"), None),
        (
            Method::PUT,
            "/api/folders/Core".to_string(),
            Some(json!({"name": "Pwned"})),
        ),
        (Method::DELETE, "/api/folders/Core".to_string(), None),
    ];
    for (m, path, body) in &matrix {
        let rb = bob.request(m.clone(), path);
        let rb = match body {
            Some(b) => rb.json(b),
            None => rb,
        };
        let r = bob.send(rb).await;
        assert_eq!(
            r.status.as_u16(),
            404,
            "{m} {path} as bob: {} {}",
            r.status,
            r.text()
        );
        r.assert_error(404, Some("not_found"));
    }
    // The admin is no exception: ownership, not role, decides.
    for (m, path, body) in &matrix {
        let rb = admin.request(m.clone(), path);
        let rb = match body {
            Some(b) => rb.json(b),
            None => rb,
        };
        admin.send(rb).await.assert_error(404, Some("not_found"));
    }
    // Using Alice's credential id in Bob's own session is refused, not linked.
    let mut steal = session_input("steal", "10.7.7.7");
    steal["credential_id"] = json!(a_cred);
    bob.post("/api/sessions", &steal)
        .await
        .assert_error(400, Some("unknown_credential"));
    // Bob's lists show only his own things.
    let bob_sessions = bob.all_sessions().await;
    assert_eq!(bob_sessions.len(), 1);
    assert_eq!(bob_sessions[0]["display_name"], "bob-r1");
    assert_eq!(bob.get("/api/credentials").await.json(), json!([]));
    let bob_hosts = bob.get("/api/known-hosts").await.json();
    assert_eq!(bob_hosts.as_array().map(Vec::len), Some(1));
    assert_eq!(bob_hosts[0]["id"], b_host.as_str());

    // Alice's objects are exactly as they were.
    assert_eq!(snapshot(&alice).await, before);

    // And Alice can still act on all of them (they were never touched, only hidden).
    alice
        .delete(&format!("/api/known-hosts/{a_host}"))
        .await
        .assert_status(204);
    alice
        .delete(&format!("/api/credentials/{a_cred}"))
        .await
        .assert_error(409, Some("credential_in_use"));
    alice
        .delete(&format!("/api/sessions/{a_sess}"))
        .await
        .assert_status(204);
    alice
        .delete(&format!("/api/credentials/{a_cred}"))
        .await
        .assert_status(204);
    // Bob's known host survived Alice's deletions.
    assert_eq!(
        bob.get("/api/known-hosts")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

const SECRET: &str = "Zq7-SECRET-horse-battery-4417";
const ENABLE: &str = "En4ble-SECRET-staple-9931";
const PASSPHRASE: &str = "pass-SECRET-phrase-5520";
const NEW_SECRET: &str = "Rotated-SECRET-password-7781";

fn ssh_keygen(dir: &std::path::Path) -> String {
    let path = dir.join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            PASSPHRASE,
            "-C",
            "opsgate-test",
            "-f",
        ])
        .arg(&path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    std::fs::read_to_string(&path).expect("read key")
}

/// Distinctive pieces of the private key text: its base64 lines.
fn key_fragments(key: &str) -> Vec<String> {
    key.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn credential_secrets_never_leave_the_server() {
    // Debug logs, so that a secret logged anywhere would show up.
    let mut server = Server::start(ServerOptions::default().env("OPSGATE_LOG", "debug")).await;
    let keydir = tempfile::tempdir().expect("tempdir");
    let key = ssh_keygen(keydir.path());
    let fragments = key_fragments(&key);
    assert!(!fragments.is_empty());
    let mut needles: Vec<String> = vec![
        SECRET.into(),
        ENABLE.into(),
        PASSPHRASE.into(),
        NEW_SECRET.into(),
    ];
    needles.extend(fragments.iter().cloned());

    let admin = server.admin().await;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = server.login("ann", "ann-password-1").await;
    let mut responses: Vec<Resp> = Vec::new();

    let r = ann
        .post(
            "/api/credentials",
            &json!({"name": "core", "kind": "password", "username": "netops",
                    "secret": SECRET, "enable_secret": ENABLE}),
        )
        .await;
    r.assert_status(201);
    let pw = r.json();
    assert_eq!(pw["kind"], "password");
    assert_eq!(pw["has_enable_secret"], true);
    assert_eq!(pw["has_passphrase"], false);
    responses.push(r);
    let pw_id = pw["id"].as_str().expect("id").to_string();

    // A private key with its passphrase; a wrong passphrase is refused up front.
    let r = ann
        .post(
            "/api/credentials",
            &json!({"name": "key", "kind": "private_key", "secret": key, "passphrase": "wrong-pass"}),
        )
        .await;
    r.assert_error(400, Some("invalid_private_key"));
    responses.push(r);
    let r = ann
        .post(
            "/api/credentials",
            &json!({"name": "key", "kind": "private_key", "username": "root",
                    "secret": key, "passphrase": PASSPHRASE}),
        )
        .await;
    r.assert_status(201);
    let pk = r.json();
    assert_eq!(pk["kind"], "private_key");
    assert_eq!(pk["has_passphrase"], true);
    responses.push(r);
    let pk_id = pk["id"].as_str().expect("id").to_string();

    // Update: rename only (secret kept), then rotate the secret.
    let r = ann
        .put(
            &format!("/api/credentials/{pw_id}"),
            &json!({"name": "core-renamed", "kind": "password"}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["has_enable_secret"], true);
    responses.push(r);
    let r = ann
        .put(
            &format!("/api/credentials/{pw_id}"),
            &json!({"name": "core-renamed", "kind": "password", "secret": NEW_SECRET}),
        )
        .await;
    r.assert_status(200);
    responses.push(r);

    // A saved session using it, and every read API.
    let mut s = session_input("core-sw1", "10.0.0.1");
    s["credential_id"] = json!(pw_id);
    let r = ann.post("/api/sessions", &s).await;
    r.assert_status(201);
    responses.push(r);
    for path in [
        "/api/credentials",
        "/api/sessions",
        "/api/sessions/export",
        "/api/known-hosts",
        "/api/audit",
        "/api/auth/status",
        "/metrics",
    ] {
        let r = ann.get(path).await;
        r.assert_status(200);
        responses.push(r);
    }
    let r = admin.get("/api/audit").await;
    r.assert_status(200);
    responses.push(r);
    let list = ann.get("/api/credentials").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    for c in list.as_array().expect("list") {
        let keys: Vec<&String> = c.as_object().expect("object").keys().collect();
        for forbidden in ["secret", "passphrase", "enable_secret", "sealed"] {
            assert!(!keys.iter().any(|k| *k == forbidden), "{c}");
        }
    }

    // Nothing in any response: bodies or headers.
    for r in &responses {
        let mut all = r.text();
        all.push_str(&format!("{:?}", r.headers));
        for n in &needles {
            assert!(
                !all.contains(n.as_str()),
                "secret {n:?} in a response: {all}"
            );
        }
    }

    // Nothing in the data directory, while running and after a clean stop.
    let data_dir = server.data_dir().to_path_buf();
    let check_dir = |when: &str| {
        for n in &needles {
            let hits = files_containing(&data_dir, n.as_bytes());
            assert!(hits.is_empty(), "{when}: secret {n:?} in {hits:?}");
        }
    };
    check_dir("running");
    ann.delete(&format!("/api/credentials/{pk_id}"))
        .await
        .assert_status(204);
    server.stop();
    assert!(!all_files(server.data_dir()).is_empty());
    check_dir("stopped");

    // The master key is private to the gateway's user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.data_dir().join("master.key"))
        .expect("master.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Nothing in the logs.
    let logs = server.logs();
    assert!(logs.len() > 100, "logs were captured: {logs}");
    for n in &needles {
        assert!(!logs.contains(n.as_str()), "secret {n:?} in the logs");
    }

    // The secret still opens after a restart (same master key), still unreadable via API.
    server.start_again().await;
    let again = ann.get("/api/credentials").await;
    again.assert_status(200);
    assert_eq!(again.json().as_array().map(Vec::len), Some(1));
    let r = ann
        .put(
            &format!("/api/credentials/{pw_id}"),
            &json!({"name": "core-again", "kind": "password"}),
        )
        .await;
    r.assert_status(200);
    for n in &needles {
        assert!(!r.text().contains(n.as_str()));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for n in &needles {
        assert!(
            !server.logs().contains(n.as_str()),
            "secret {n:?} in the logs"
        );
    }
}
