//! Legacy session files carry no username per session (the credential set does): they
//! import, round-trip through export, and open with the credential's username.

mod common;
mod sshd;
mod ws;

use common::*;
use opsgate_protocol::ServerFrame;
use reqwest::Method;
use serde_json::{json, Value};
use sshd::{Sshd, SshdOptions};

/// The layout from the issue, as existing tools write it: no username anywhere.
const LEGACY: &str = r#"
- folder_name: "Production Network"
  sessions:
    - DeviceType: cisco_ios
      display_name: prod-rtr-1
      host: 10.0.1.1
      port: '22'
      Model: ISR4431
    - DeviceType: linux
      display_name: prod-jump
      host: 10.0.1.2
      port: '2222'
      username:
"#;

async fn import(c: &Client, mode: &str, yaml: &str) -> Resp {
    c.send_raw(
        Method::POST,
        &format!("/api/sessions/import?mode={mode}"),
        "application/yaml",
        yaml.to_string(),
    )
    .await
}

fn comparable(mut sessions: Vec<Value>) -> Vec<Value> {
    for s in &mut sessions {
        let o = s.as_object_mut().expect("object");
        for k in ["id", "created_at", "updated_at"] {
            o.remove(k);
        }
    }
    sessions.sort_by_key(|s| s["display_name"].as_str().unwrap_or("").to_string());
    sessions
}

#[tokio::test]
async fn a_legacy_file_without_usernames_imports_and_round_trips() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    import(&admin, "merge", LEGACY).await.assert_status(200);
    let sessions = admin.all_sessions().await;
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let rtr = sessions
        .iter()
        .find(|s| s["display_name"] == "prod-rtr-1")
        .expect("prod-rtr-1");
    assert!(rtr["username"].is_null(), "{rtr}");
    assert_eq!(rtr["host"], "10.0.1.1");
    assert_eq!(rtr["port"], 22);
    assert_eq!(rtr["folder"], "Production Network");

    // Export, replace everything with the export: the same sessions, still no username.
    let exported = admin.export().await;
    assert!(!exported.contains("username"), "{exported}");
    import(&admin, "replace", &exported)
        .await
        .assert_status(200);
    assert_eq!(
        comparable(admin.all_sessions().await),
        comparable(sessions.clone())
    );

    // The REST API takes a session without a username too, and an empty one means none.
    let mut body = session_input("no-user", "10.0.0.9");
    body.as_object_mut().expect("object").remove("username");
    let s = admin.create_session(&body).await;
    assert!(s["username"].is_null(), "{s}");
    body["username"] = json!("  ");
    let s = admin.create_session(&body).await;
    assert!(s["username"].is_null(), "{s}");
}

async fn credential(c: &Client, body: Value) -> String {
    let r = c.post("/api/credentials", &body).await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn the_username_comes_from_the_credential_set_else_the_open_fails_naming_it() {
    let d = Sshd::start(SshdOptions::default());
    let server = Server::start_default().await;
    let admin = server.admin().await;
    // `password` as the alias of `secret`, and the username on the credential set only.
    let with_user = credential(
        &admin,
        json!({"name":"ops","kind":"password","password":sshd::PASSWORD,"username":sshd::USER}),
    )
    .await;
    let without_user = credential(
        &admin,
        json!({"name":"bare","kind":"password","secret":sshd::PASSWORD}),
    )
    .await;
    let yaml = format!(
        "- folder_name: Lab\n  sessions:\n    - display_name: fixture\n      host: 127.0.0.1\n      port: '{}'\n      DeviceType: linux\n      credential_id: {with_user}\n",
        d.port
    );
    import(&admin, "merge", &yaml).await.assert_status(200);
    let saved = admin.all_sessions().await;
    let id = saved[0]["id"].as_str().expect("id").to_string();
    assert!(saved[0]["username"].is_null());

    let mut w = ws::connect(&server, admin.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":1,"kind":"ssh","session_id":id,"cols":80,"rows":24}))
        .await;
    w.expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: 1, .. }))
        .await;
    w.send_json(json!({"type":"hostkey_accept","ch":1})).await;
    w.expect_opened(1).await;
    w.input(1, b"echo \"I am $(whoami)\"\n").await;
    w.expect_output(1, &format!("I am {}", sshd::USER)).await;

    // The same session with a credential that has no username either: invalid_open,
    // naming what is missing.
    let msg = {
        w.send_json(json!({"type":"open","ch":2,"kind":"ssh","session_id":id,
                           "credential_id":without_user,"cols":80,"rows":24}))
            .await;
        w.expect_error(Some(2), "invalid_open").await
    };
    assert!(msg.contains("username"), "{msg}");
    // Ad hoc, likewise.
    w.send_json(
        json!({"type":"open","ch":3,"kind":"ssh","host":"127.0.0.1","port":d.port,
                       "credential_id":without_user,"cols":80,"rows":24}),
    )
    .await;
    let msg = w.expect_error(Some(3), "invalid_open").await;
    assert!(msg.contains("username"), "{msg}");
    // The open frame's username wins over everything.
    w.send_json(
        json!({"type":"open","ch":4,"kind":"ssh","session_id":id,"username":sshd::USER,
                       "credential_id":without_user,"cols":80,"rows":24}),
    )
    .await;
    w.expect_opened(4).await;
}
