//! What one workspace may hold (`[inventory]`) and how much audit log is kept
//! (`[audit]`): an operator scripting creates, imports or folder moves cannot grow a
//! workspace (and so every listing, export and search of it) without bound. Over a limit
//! a write is refused with 409 `limit_reached`, whole: nothing of a refused import is
//! kept.

mod common;

use common::{Client, Resp, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

const LIMITS: &str = "[inventory]\nmax_sessions = 3\nmax_folders = 2\nmax_credentials = 1\n";

async fn yaml_import(c: &Client, query: &str, yaml: &str) -> Resp {
    c.send_raw(
        Method::POST,
        &format!("/api/sessions/import{query}"),
        "application/yaml",
        yaml.to_string(),
    )
    .await
}

fn session(folder: &str, name: &str, host: &str) -> Value {
    json!({"folder": folder, "display_name": name, "host": host, "device_type": "linux"})
}

fn names(c: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = c
        .iter()
        .map(|s| s["display_name"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

fn folders(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_workspace_holds_no_more_than_its_limits_and_a_refused_write_keeps_nothing() {
    let mut server = Server::start(ServerOptions::default().config(LIMITS)).await;
    let c = server.login(ADMIN, ADMIN_PASSWORD).await;

    for (i, name) in ["a1", "a2", "a3"].iter().enumerate() {
        c.create_session(&session("A", name, &format!("10.0.0.{}", i + 1)))
            .await;
    }
    let msg = c
        .post("/api/sessions", &session("A", "a4", "10.0.0.4"))
        .await
        .assert_error(409, Some("limit_reached"));
    assert!(msg.contains("max_sessions") && msg.contains('3'), "{msg}");
    assert_eq!(names(&c.all_sessions().await), ["a1", "a2", "a3"]);

    // Room for one more: an import of two new rows is refused whole, dry run included,
    // in YAML and in CSV.
    let a3 = c
        .all_sessions()
        .await
        .into_iter()
        .find(|s| s["display_name"] == "a3")
        .expect("a3");
    c.delete(&format!("/api/sessions/{}", a3["id"].as_str().expect("id")))
        .await
        .assert_status(204);
    let two_new = "- folder_name: A\n  sessions:\n    - {display_name: b1, host: 10.0.1.1, DeviceType: linux}\n    - {display_name: b2, host: 10.0.1.2, DeviceType: linux}\n";
    yaml_import(&c, "", two_new)
        .await
        .assert_error(409, Some("limit_reached"));
    yaml_import(&c, "?dry_run=true", two_new)
        .await
        .assert_error(409, Some("limit_reached"));
    let csv = "folder,display_name,host,port,username,device_type,credential,tags\r\nA,c1,10.0.2.1,22,,linux,,\r\nA,c2,10.0.2.2,22,,linux,,\r\n";
    for query in ["", "&dry_run=true"] {
        c.send_raw(
            Method::POST,
            &format!("/api/sessions/import?format=csv{query}"),
            "text/csv",
            csv.to_string(),
        )
        .await
        .assert_error(409, Some("limit_reached"));
    }
    assert_eq!(names(&c.all_sessions().await), ["a1", "a2"]);
    // What counts is the result: replacing the inventory with three rows fits.
    let three = "- folder_name: A\n  sessions:\n    - {display_name: r1, host: 10.0.3.1, DeviceType: linux}\n    - {display_name: r2, host: 10.0.3.2, DeviceType: linux}\n    - {display_name: r3, host: 10.0.3.3, DeviceType: linux}\n";
    yaml_import(&c, "?mode=replace", three)
        .await
        .assert_status(200);
    assert_eq!(names(&c.all_sessions().await), ["r1", "r2", "r3"]);

    // Folders: "A" and one more. Moving a session into a new folder would create a
    // third: refused, and the session stays where it was.
    c.post("/api/folders", &json!({"name": "B"}))
        .await
        .assert_status(201);
    c.post("/api/folders", &json!({"name": "C"}))
        .await
        .assert_error(409, Some("limit_reached"));
    let r1 = c
        .all_sessions()
        .await
        .into_iter()
        .find(|s| s["display_name"] == "r1")
        .expect("r1");
    let id = r1["id"].as_str().expect("id").to_string();
    c.put(
        &format!("/api/sessions/{id}"),
        &session("C", "r1", "10.0.3.1"),
    )
    .await
    .assert_error(409, Some("limit_reached"));
    let list = c.list_sessions().await;
    assert_eq!(folders(&list), ["A", "B"]);
    let after = c.get(&format!("/api/sessions/{id}")).await.json();
    assert_eq!(after["folder"], "A");
    // Into an existing folder it moves.
    c.put(
        &format!("/api/sessions/{id}"),
        &session("B", "r1", "10.0.3.1"),
    )
    .await
    .assert_status(200);

    // Credential sets: one.
    let cred = |name: &str| json!({"name": name, "kind": "password", "secret": "pw-123456"});
    c.post("/api/credentials", &cred("first"))
        .await
        .assert_status(201);
    c.post("/api/credentials", &cred("second"))
        .await
        .assert_error(409, Some("limit_reached"));
    let creds = c.get("/api/credentials").await.json();
    assert_eq!(creds.as_array().map(Vec::len), Some(1), "{creds}");

    // Another workspace (another user's personal one) has its own count.
    let admin = c;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = server.login("ann", "ann-password-1").await;
    ann.create_session(&session("A", "mine", "10.0.9.1")).await;

    // The limits lowered below what the workspace holds (3 sessions in 2 folders): it can
    // still edit and shrink, not grow.
    for (k, v) in [("MAX_SESSIONS", "1"), ("MAX_FOLDERS", "1")] {
        server
            .opts
            .env
            .push((format!("OPSGATE_INVENTORY__{k}"), v.to_string()));
    }
    server.restart().await;
    let c = server.login(ADMIN, ADMIN_PASSWORD).await;
    c.put(
        &format!("/api/sessions/{id}"),
        &session("B", "r1-renamed", "10.0.3.1"),
    )
    .await
    .assert_status(200);
    c.post("/api/sessions", &session("A", "more", "10.0.4.1"))
        .await
        .assert_error(409, Some("limit_reached"));
    let two = "- folder_name: A\n  sessions:\n    - {display_name: s1, host: 10.0.5.1, DeviceType: linux}\n    - {display_name: s2, host: 10.0.5.2, DeviceType: linux}\n";
    yaml_import(&c, "?mode=replace", two)
        .await
        .assert_status(200);
    assert_eq!(names(&c.all_sessions().await), ["s1", "s2"]);
}

#[tokio::test]
async fn the_audit_log_keeps_its_newest_events_and_pages_through_a_sparse_filter() {
    // The smallest log the configuration allows, and more events than that.
    let server =
        Server::start(ServerOptions::default().config("[audit]\nmax_events = 1000\n")).await;
    let admin = server.login(ADMIN, ADMIN_PASSWORD).await;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = server.login("ann", "ann-password-1").await;
    // ann's one event, then 1,100 of the admin's (folder creates and deletes).
    ann.post("/api/folders", &json!({"name": "ann-first"}))
        .await
        .assert_status(201);
    for i in 0..550 {
        let name = format!("f{i}");
        admin
            .post("/api/folders", &json!({"name": name}))
            .await
            .assert_status(201);
        admin
            .delete(&format!("/api/folders/{name}"))
            .await
            .assert_status(204);
    }
    let mut all = Vec::new();
    let mut before: Option<u64> = None;
    for _ in 0..20 {
        let q = match before {
            Some(b) => format!("/api/audit?limit=1000&before={b}"),
            None => "/api/audit?limit=1000".to_string(),
        };
        let page = admin.get(&q).await.json();
        all.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(all.len(), 1000, "the log keeps max_events events");
    let seqs: Vec<u64> = all.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] == w[1] + 1),
        "newest first, no gap"
    );
    let newest = seqs[0];
    assert_eq!(seqs[999], newest - 999, "the oldest ones went");
    assert!(
        all.iter()
            .all(|e| e["action"] != "login" || e["actor"] != "ann"),
        "ann's login is older than the kept window"
    );
    // ann sees only her own events; hers fell out of the window, so her listing is empty
    // and ends (no endless paging through other people's events).
    let page = ann.get("/api/audit?limit=10").await.json();
    assert_eq!(page["events"], json!([]), "{page}");
    assert_eq!(page["next_before"], Value::Null, "{page}");
}
