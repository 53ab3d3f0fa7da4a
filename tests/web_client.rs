//! What the browser client needs from the gateway, against the real binary: the
//! embedded page and assets (types, caching, CSP), `GET /api/programs`,
//! `GET /api/channels` (this login's channels, attached or not, output and exit), and
//! the import dry run behind the console's preview.

mod common;
mod ws;

use std::time::Duration;

use common::{session_input, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use serde_json::{json, Value};
use ws::connect;

const PROGRAMS: &str = r#"
[pty.programs]
cat = ["cat"]
zeta = ["true"]
hello = ["sh", "-c", "printf hello; sleep 0.2; exit 3"]
"#;

async fn server() -> Server {
    Server::start(ServerOptions::default().config(PROGRAMS)).await
}

#[tokio::test]
async fn page_and_assets_are_served_with_types_caching_and_a_nonce_csp() {
    let s = server().await;
    let anon = s.client();
    let page = anon.get("/").await;
    page.assert_status(200);
    assert_eq!(page.header("cache-control").as_deref(), Some("no-cache"));
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let csp = page.header("content-security-policy").expect("csp");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(
        !csp.contains("'unsafe-inline' ;") && !csp.contains("script-src 'self' 'unsafe-inline'")
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("nonce in style-src");
    let html = page.text();
    assert!(
        html.contains(&format!("content=\"{nonce}\"")),
        "page carries the nonce"
    );
    assert!(!html.contains("__OPSGATE_NONCE__"));
    // A fresh nonce per response.
    let again = anon.get("/").await;
    assert_ne!(
        again.header("content-security-policy").as_deref(),
        Some(csp.as_str())
    );

    let js = html
        .split("src=\"./")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("script src");
    let asset = anon.get(&format!("/{js}")).await;
    asset.assert_status(200);
    assert_eq!(
        asset.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert!(asset
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    anon.get("/assets/nope-123.js")
        .await
        .assert_error(404, Some("not_found"));
    // API responses keep the gateway's own strict policy.
    let api = anon.get("/api/auth/status").await;
    let api_csp = api.header("content-security-policy").expect("csp");
    assert!(!api_csp.contains("unsafe-inline"), "{api_csp}");
}

#[tokio::test]
async fn the_page_and_assets_follow_the_base_path() {
    let s = Server::start(ServerOptions::default().base_path("/ops")).await;
    let anon = s.client();
    let page = anon.get("/").await;
    page.assert_status(200);
    let html = page.text();
    let js = html
        .split("src=\"./")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("script src");
    anon.get(&format!("/{js}")).await.assert_status(200);
}

#[tokio::test]
async fn programs_lists_the_allow_list_names_to_any_logged_in_user() {
    let s = server().await;
    s.client()
        .get("/api/programs")
        .await
        .assert_error(401, Some("unauthenticated"));
    let admin = s.admin().await;
    admin
        .create_user("vera", "viewer-password-1", "viewer")
        .await;
    for c in [admin, s.login("vera", "viewer-password-1").await] {
        let r = c.get("/api/programs").await;
        r.assert_status(200);
        assert_eq!(r.json(), json!(["cat", "hello", "zeta"]));
    }
}

#[tokio::test]
async fn channels_lists_this_logins_channels_with_attachment_output_and_exit() {
    let s = server().await;
    let client = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = client.cookie.clone().expect("cookie");
    let other = s.login(ADMIN, ADMIN_PASSWORD).await;
    s.client()
        .get("/api/channels")
        .await
        .assert_error(401, Some("unauthenticated"));
    assert_eq!(client.get("/api/channels").await.json(), json!([]));

    let mut sock = connect(&s, &cookie).await;
    sock.auto_ack = false;
    sock.open_pty(1, "cat").await;
    let cat = sock.expect_opened(1).await;
    sock.input(1, b"abc\n").await;
    sock.expect_output(1, "abc").await;
    sock.open_pty(2, "hello").await;
    let hello = sock.expect_opened(2).await;
    sock.expect_output(2, "hello").await;
    sock.expect_control(|f| matches!(f, opsgate_protocol::ServerFrame::Exit { ch: 2, .. }))
        .await;

    let find = |list: &Value, id: &str| -> Value {
        list.as_array()
            .expect("array")
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let list = client.get("/api/channels").await.json();
    let c = find(&list, &cat);
    assert_eq!(c["kind"], "pty");
    assert_eq!(c["target"], "program cat");
    assert_eq!(c["attached"], true);
    assert_eq!(c["exited"], false);
    assert!(c.get("exit_code").is_none());
    // The echo and cat's copy: "abc\r\n" twice.
    assert!(c["bytes_out"].as_u64().expect("bytes") >= 10, "{c}");
    let h = find(&list, &hello);
    assert_eq!(h["exited"], true);
    assert_eq!(h["exit_code"], 3);
    assert_eq!(h["bytes_out"], 5);

    // Another login of the same user sees none of them.
    assert_eq!(other.get("/api/channels").await.json(), json!([]));

    // The socket drops: the channels stay, detached, with their offsets.
    sock.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let list = client.get("/api/channels").await.json();
        if find(&list, &cat)["attached"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never detached: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn import_dry_run_reports_changes_and_row_errors_without_writing() {
    let s = server().await;
    let c = s.admin().await;
    c.create_session(&session_input("core-sw1", "10.0.0.1"))
        .await;
    let before = c.export().await;
    let yaml = "- folder_name: Default\n  sessions:\n    - {display_name: core-sw1, host: 10.0.0.9, port: '22', DeviceType: linux, username: u}\n    - {display_name: new-sw, host: 10.0.0.2, port: '22', DeviceType: linux, username: u}\n";
    let r = c
        .send_raw(
            reqwest::Method::POST,
            "/api/sessions/import?mode=merge&dry_run=true",
            "application/yaml",
            yaml.as_bytes().to_vec(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(
        r.json(),
        json!({"valid": true, "created": 1, "updated": 1, "removed": 0, "errors": []})
    );
    assert_eq!(c.export().await, before, "a dry run writes nothing");

    let bad = yaml.replace(
        "'22', DeviceType: linux, username: u}\n    - {display_name: new-sw",
        "'99999', DeviceType: linux, username: u}\n    - {display_name: new-sw",
    );
    let r = c
        .send_raw(
            reqwest::Method::POST,
            "/api/sessions/import?mode=replace&dry_run=true",
            "application/yaml",
            bad.into_bytes(),
        )
        .await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["row"], 1);
    assert_eq!(v["errors"][0]["display_name"], "core-sw1");
    assert!(v["errors"][0]["message"]
        .as_str()
        .expect("msg")
        .contains("port"));
    assert_eq!(c.export().await, before);
}
