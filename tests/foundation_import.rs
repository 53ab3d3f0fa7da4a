//! YAML import and export of saved sessions: the legacy layout, all-or-nothing
//! validation, merge and replace modes, and the export → import round trip.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const LEGACY: &str = r#"
- folder_name: Core
  sessions:
    - display_name: core-sw1
      host: 10.0.0.1
      port: '22'
      DeviceType: cisco_ios
      username: admin
      Model: C9300
    - display_name: core-sw2
      host: core-sw2.example.net
      port: '2222'
      DeviceType: Cisco IOS
      username: admin
      Model: C9500
      Vendor: Cisco
- folder_name: Edge
  sessions:
    - display_name: fw1
      host: 192.0.2.1
      port: 22
      DeviceType: fortinet
      username: ops
"#;

async fn import(c: &Client, mode: Option<&str>, yaml: &str) -> Resp {
    let path = match mode {
        Some(m) => format!("/api/sessions/import?mode={m}"),
        None => "/api/sessions/import".to_string(),
    };
    c.send_raw(Method::POST, &path, "application/yaml", yaml.to_string())
        .await
}

fn by_name<'a>(sessions: &'a [Value], name: &str) -> &'a Value {
    sessions
        .iter()
        .find(|s| s["display_name"] == name)
        .unwrap_or_else(|| panic!("no session {name} in {sessions:#?}"))
}

/// A listing without the fields that differ between two copies of the same data.
fn comparable(list: &Value) -> Value {
    let mut folders = Vec::new();
    for f in list["folders"].as_array().expect("folders") {
        let mut sessions: Vec<Value> = f["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .map(|s| {
                let mut s = s.clone();
                let o = s.as_object_mut().expect("object");
                for k in ["id", "created_at", "updated_at"] {
                    o.remove(k);
                }
                s
            })
            .collect();
        sessions.sort_by_key(|s| s["display_name"].as_str().unwrap_or("").to_string());
        folders.push(json!({"name": f["name"], "sessions": sessions}));
    }
    folders.sort_by_key(|f| f["name"].as_str().unwrap_or("").to_string());
    Value::Array(folders)
}

#[tokio::test]
async fn legacy_layout_is_accepted_and_mapped() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    let r = import(&admin, None, LEGACY).await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"created": 3, "updated": 0, "removed": 0}));
    let all = admin.all_sessions().await;
    assert_eq!(all.len(), 3);
    let sw1 = by_name(&all, "core-sw1");
    assert_eq!(sw1["folder"], "Core");
    assert_eq!(sw1["host"], "10.0.0.1");
    assert_eq!(sw1["port"], 22);
    assert_eq!(sw1["device_type"], "cisco_ios");
    assert_eq!(sw1["username"], "admin");
    assert_eq!(sw1["tags"], json!(["Model=C9300"]));
    let sw2 = by_name(&all, "core-sw2");
    assert_eq!(sw2["port"], 2222, "string port mapped to a number");
    assert_eq!(sw2["device_type"], "cisco_ios", "alias mapped");
    let mut tags: Vec<String> = sw2["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().unwrap_or("").to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["Model=C9500", "Vendor=Cisco"]);
    let fw1 = by_name(&all, "fw1");
    assert_eq!(fw1["folder"], "Edge");
    assert_eq!(fw1["device_type"], "fortinet");
    // Tags are searchable.
    let found = flatten_sessions(&admin.get("/api/sessions?q=model%3Dc9500").await.json());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["display_name"], "core-sw2");

    // Merge: same folder + display name updates, the rest is added.
    let r = import(
        &admin,
        Some("merge"),
        "- folder_name: Core\n  sessions:\n    - {display_name: core-sw1, host: 10.0.0.11, port: '22', DeviceType: cisco_xe, username: admin}\n    - {display_name: core-sw3, host: 10.0.0.3, DeviceType: nxos, username: admin}\n",
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"created": 1, "updated": 1, "removed": 0}));
    let all = admin.all_sessions().await;
    assert_eq!(all.len(), 4);
    let sw1b = by_name(&all, "core-sw1");
    assert_eq!(sw1b["id"], sw1["id"], "merge keeps the id");
    assert_eq!(sw1b["host"], "10.0.0.11");
    assert_eq!(sw1b["device_type"], "cisco_xe");
    assert_eq!(by_name(&all, "core-sw3")["device_type"], "cisco_nxos");
}

#[tokio::test]
async fn one_bad_row_refuses_the_whole_file_and_names_the_row() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    import(&admin, None, LEGACY).await.assert_status(200);
    let before = (admin.list_sessions().await, admin.export().await);

    let bad = r#"
- folder_name: Lab
  sessions:
    - display_name: lab-r1
      host: 10.5.0.1
      port: '22'
      DeviceType: linux
      username: root
    - display_name: lab-r2
      host: 10.5.0.2
      port: '70000'
      DeviceType: linux
      username: root
    - display_name: lab-r3
      host: 10.5.0.3
      DeviceType: linux
      username: root
"#;
    for mode in [None, Some("merge"), Some("replace")] {
        let r = import(&admin, mode, bad).await;
        let msg = r.assert_error(400, Some("import_invalid"));
        assert!(msg.contains("lab-r2"), "row not named: {msg}");
        assert!(msg.contains("row 2"), "row number missing: {msg}");
        assert!(msg.contains("Lab"), "folder missing: {msg}");
        assert!(msg.contains("70000"), "reason missing: {msg}");
        assert!(!msg.contains("lab-r1") && !msg.contains("lab-r3"), "{msg}");
        assert_eq!(
            (admin.list_sessions().await, admin.export().await),
            before,
            "mode {mode:?} applied something"
        );
    }

    // Several bad rows: every one is reported.
    let many = "- folder_name: X\n  sessions:\n    - {display_name: a, host: 'bad host', DeviceType: linux, username: u}\n    - {display_name: b, host: h, DeviceType: toaster, username: u}\n    - {display_name: c, host: h, DeviceType: linux, username: u}\n    - {display_name: c, host: h2, DeviceType: linux, username: u}\n";
    let msg = import(&admin, None, many)
        .await
        .assert_error(400, Some("import_invalid"));
    for want in ["row 1", "row 2", "row 4", "toaster", "duplicate"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }

    // A file that prices its own parsing: 80 KB whose aliases expand to 10⁸ values is
    // refused within its budget (unbounded, it takes minutes and gigabytes), dry run too.
    let mut bomb = String::from("- &a [");
    bomb.push_str(&"x,".repeat(10_000));
    bomb.push_str("x]\n- [");
    bomb.push_str(&"*a,".repeat(10_000));
    bomb.push_str("*a]\n");
    import(&admin, None, &bomb)
        .await
        .assert_error(400, Some("invalid_yaml"));
    admin
        .send_raw(
            Method::POST,
            "/api/sessions/import?dry_run=true",
            "application/yaml",
            bomb.clone(),
        )
        .await
        .assert_error(400, Some("invalid_yaml"));

    // Not YAML / not the layout.
    import(&admin, None, "- [unclosed")
        .await
        .assert_error(400, Some("invalid_yaml"));
    import(&admin, None, "folder_name: not-a-list")
        .await
        .assert_error(400, Some("invalid_yaml"));
    import(&admin, Some("sideways"), LEGACY)
        .await
        .assert_error(400, None);
    assert_eq!((admin.list_sessions().await, admin.export().await), before);
}

#[tokio::test]
async fn replace_mode_removes_what_is_not_in_the_file() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = server.login("ann", "ann-password-1").await;
    import(&admin, None, LEGACY).await.assert_status(200);
    import(&ann, None, LEGACY).await.assert_status(200);
    admin
        .post("/api/folders", &json!({"name": "Empty"}))
        .await
        .assert_status(201);

    let r = import(
        &admin,
        Some("replace"),
        "- folder_name: New\n  sessions:\n    - {display_name: n1, host: 10.8.0.1, port: '22', DeviceType: linux, username: root}\n",
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"created": 1, "updated": 0, "removed": 3}));
    let list = admin.list_sessions().await;
    let folders: Vec<&str> = list["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(folders, vec!["New"], "{list}");
    assert_eq!(admin.all_sessions().await.len(), 1);
    // Another user's inventory is not touched by a replace.
    assert_eq!(ann.all_sessions().await.len(), 3);

    // Replacing with an empty list empties the inventory.
    let r = import(&admin, Some("replace"), "[]").await;
    r.assert_status(200);
    assert_eq!(r.json()["removed"], 1);
    assert_eq!(admin.list_sessions().await, json!({"folders": []}));
}

#[tokio::test]
async fn export_then_import_round_trips() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = server.login("ann", "ann-password-1").await;

    import(&admin, None, LEGACY).await.assert_status(200);
    let extra = json!({
        "folder": "Odd names", "display_name": "r: 'quoted' # not a comment",
        "host": "2001:db8::1", "port": 830, "username": "netconf",
        "device_type": "juniper_junos", "tags": ["a: b", "- dash", "yes", "007"]
    });
    admin.create_session(&extra).await;
    let exported = admin.export().await;
    let original = admin.list_sessions().await;

    // Export is the legacy layout.
    assert!(exported.contains("folder_name:"), "{exported}");
    assert!(exported.contains("DeviceType:"), "{exported}");

    // Into a fresh user: the same inventory.
    let r = import(&ann, None, &exported).await;
    r.assert_status(200);
    assert_eq!(r.json()["created"], 4);
    assert_eq!(
        comparable(&ann.list_sessions().await),
        comparable(&original)
    );
    assert_eq!(ann.export().await, exported);

    // Into the same user, replace: identical again.
    let r = import(&admin, Some("replace"), &exported).await;
    r.assert_status(200);
    assert_eq!(r.json()["removed"], 4);
    assert_eq!(
        comparable(&admin.list_sessions().await),
        comparable(&original)
    );
    assert_eq!(admin.export().await, exported);

    // Merge of its own export changes nothing but update times.
    let r = import(&admin, Some("merge"), &exported).await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"created": 0, "updated": 4, "removed": 0}));
    assert_eq!(admin.export().await, exported);
}

#[tokio::test]
async fn an_unknown_credential_is_reported_by_row() {
    let s = Server::start_default().await;
    let admin = s.admin().await;
    let yaml = "- folder_name: Core\n  sessions:\n    - {display_name: a, host: 10.0.0.1, DeviceType: linux, username: u}\n    - {display_name: b, host: 10.0.0.2, DeviceType: linux, username: u, credential_id: nope}\n";
    let r = import(&admin, None, yaml).await;
    let msg = r.assert_error(400, Some("import_invalid"));
    assert!(
        msg.contains("row 2") && msg.contains("(b)") && msg.contains("credential nope not found"),
        "{msg}"
    );
    assert!(
        admin.all_sessions().await.is_empty(),
        "something was applied"
    );
}
