//! The HTTP edge: bad input gets the documented status and error shape and changes
//! nothing; the origin check; the body limit; security headers; the base path behind a
//! reverse proxy; refusing plain HTTP on a public address.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Everything the user can see of their inventory, to compare before and after.
async fn state(c: &Client) -> (Value, String, Value) {
    let creds = c.get("/api/credentials").await;
    creds.assert_status(200);
    (c.list_sessions().await, c.export().await, creds.json())
}

fn with(mut base: Value, key: &str, v: Value) -> Value {
    base[key] = v;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().expect("object").remove(key);
    base
}

/// A JSON body just over 2 MiB that would be valid if it were not so large.
fn two_mib_session() -> String {
    let mut body = session_input("big", "10.0.0.1");
    body["tags"] = json!(["x".repeat(2 * 1024 * 1024)]);
    body.to_string()
}

#[tokio::test]
async fn bad_input_gets_its_status_and_shape_and_changes_nothing() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    let existing = admin
        .create_session(&with(
            session_input("keep-me", "10.0.0.1"),
            "folder",
            json!("Core"),
        ))
        .await;
    let id = existing["id"].as_str().expect("id").to_string();
    admin
        .post(
            "/api/credentials",
            &json!({"name": "c", "kind": "password", "secret": "pw-1234567"}),
        )
        .await
        .assert_status(201);
    let before = state(&admin).await;
    let good = session_input("new-one", "10.0.0.2");

    // (what, raw JSON body, status, code)
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            r#"{"display_name": "x","#.into(),
            400,
            "invalid_json",
        ),
        (
            "not JSON at all",
            "display_name=x".into(),
            400,
            "invalid_json",
        ),
        ("an array", "[]".into(), 400, "invalid_body"),
        (
            "port as text",
            with(good.clone(), "port", json!("22")).to_string(),
            400,
            "invalid_body",
        ),
        (
            "name as number",
            with(good.clone(), "display_name", json!(5)).to_string(),
            400,
            "invalid_body",
        ),
        (
            "tags not a list",
            with(good.clone(), "tags", json!("a")).to_string(),
            400,
            "invalid_body",
        ),
        (
            "port fractional",
            with(good.clone(), "port", json!(22.5)).to_string(),
            400,
            "invalid_body",
        ),
        (
            "missing host",
            without(good.clone(), "host").to_string(),
            400,
            "invalid_body",
        ),
        (
            "missing device_type",
            without(good.clone(), "device_type").to_string(),
            400,
            "invalid_body",
        ),
        ("empty object", "{}".into(), 400, "invalid_body"),
        (
            "unknown field",
            with(good.clone(), "owner", json!("bob")).to_string(),
            400,
            "invalid_body",
        ),
        (
            "unknown device_type",
            with(good.clone(), "device_type", json!("toaster")).to_string(),
            400,
            "invalid_device_type",
        ),
        (
            "port 0",
            with(good.clone(), "port", json!(0)).to_string(),
            400,
            "invalid_port",
        ),
        (
            "port 70000",
            with(good.clone(), "port", json!(70000)).to_string(),
            400,
            "invalid_port",
        ),
        (
            "port -1",
            with(good.clone(), "port", json!(-1)).to_string(),
            400,
            "invalid_port",
        ),
        (
            "bad host",
            with(good.clone(), "host", json!("a host; rm -rf /")).to_string(),
            400,
            "invalid_host",
        ),
        (
            "empty name",
            with(good.clone(), "display_name", json!("  ")).to_string(),
            400,
            "invalid_display_name",
        ),
        (
            "bad folder",
            with(good.clone(), "folder", json!("a/b")).to_string(),
            400,
            "invalid_folder",
        ),
        (
            "unknown credential",
            with(good.clone(), "credential_id", json!("nope")).to_string(),
            400,
            "unknown_credential",
        ),
        ("2 MiB body", two_mib_session(), 413, "payload_too_large"),
    ];
    for (what, body, status, code) in &cases {
        for (method, path) in [
            (Method::POST, "/api/sessions".to_string()),
            (Method::PUT, format!("/api/sessions/{id}")),
        ] {
            let r = admin
                .send_raw(method.clone(), &path, "application/json", body.clone())
                .await;
            let got = r.status.as_u16();
            assert_eq!(got, *status, "{what}: {method} {path}: {}", r.text());
            r.assert_error(*status, Some(code));
        }
    }

    // Wrong media type.
    admin
        .send_raw(
            Method::POST,
            "/api/sessions",
            "text/plain",
            good.to_string(),
        )
        .await
        .assert_error(415, Some("unsupported_media_type"));

    // Other bodies: credentials, folders, users, login.
    let other: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/api/credentials",
            json!({"name": "c", "kind": "token", "secret": "s"}),
            400,
            "invalid_body",
        ),
        (
            "/api/credentials",
            json!({"name": "c", "kind": "password"}),
            400,
            "missing_secret",
        ),
        (
            "/api/credentials",
            json!({"name": "", "kind": "password", "secret": "s"}),
            400,
            "invalid_name",
        ),
        (
            "/api/credentials",
            json!({"name": "k", "kind": "private_key", "secret": "not a key"}),
            400,
            "invalid_private_key",
        ),
        ("/api/folders", json!({}), 400, "invalid_body"),
        ("/api/folders", json!({"name": 7}), 400, "invalid_body"),
        ("/api/folders", json!({"name": ""}), 400, "invalid_folder"),
        (
            "/api/users",
            json!({"username": "u1", "password": "password-1", "role": "root"}),
            400,
            "invalid_body",
        ),
        (
            "/api/users",
            json!({"username": "bad name", "password": "password-1", "role": "viewer"}),
            400,
            "invalid_username",
        ),
        (
            "/api/auth/login",
            json!({"username": "admin"}),
            400,
            "invalid_json",
        ),
    ];
    for (path, body, status, code) in &other {
        admin
            .post(path, body)
            .await
            .assert_error(*status, Some(code));
    }
    admin
        .send_raw(Method::POST, "/api/auth/login", "application/json", "{nope")
        .await
        .assert_error(400, Some("invalid_json"));
    admin
        .send_raw(
            Method::POST,
            "/api/auth/login",
            "application/json",
            json!({"username": "admin", "password": "x".repeat(2 * 1024 * 1024)}).to_string(),
        )
        .await
        .assert_error(413, Some("payload_too_large"));
    admin
        .send_raw(
            Method::POST,
            "/api/sessions/import",
            "application/yaml",
            format!("# {}\n[]\n", "x".repeat(2 * 1024 * 1024)),
        )
        .await
        .assert_error(413, Some("payload_too_large"));
    admin
        .put(
            &format!("/api/credentials/{}", "0".repeat(32)),
            &json!({"name": "c", "kind": "password"}),
        )
        .await
        .assert_error(404, Some("not_found"));

    assert_eq!(state(&admin).await, before, "bad input changed the store");
    let users = admin.get("/api/users").await.json();
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    // The session we kept PUTting garbage at is untouched.
    assert_eq!(
        admin.get(&format!("/api/sessions/{id}")).await.json(),
        existing
    );
}

#[tokio::test]
async fn cross_origin_writes_are_refused() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    let kept = admin
        .create_session(&session_input("keep-me", "10.0.0.1"))
        .await;
    let id = kept["id"].as_str().expect("id").to_string();
    let before = state(&admin).await;
    let bare = admin.without_requested_with();

    for origin in ["https://evil.example.com", "null", "http://127.0.0.1:1"] {
        // Even with X-Requested-With: a present Origin must be an allowed one.
        for c in [&admin, &bare] {
            let post = c
                .request(Method::POST, "/api/sessions")
                .header("origin", origin)
                .json(&session_input("evil", "10.6.6.6"));
            c.send(post).await.assert_error(403, Some("forbidden"));
            let del = c
                .request(Method::DELETE, &format!("/api/sessions/{id}"))
                .header("origin", origin);
            c.send(del).await.assert_error(403, Some("forbidden"));
            let login = c
                .request(Method::POST, "/api/auth/login")
                .header("origin", origin)
                .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}));
            let r = c.send(login).await;
            r.assert_error(403, Some("forbidden"));
            assert!(r.set_cookies().is_empty());
        }
    }
    // Neither Origin nor X-Requested-With.
    bare.post("/api/sessions", &session_input("evil", "10.6.6.6"))
        .await
        .assert_error(403, Some("origin_required"));
    bare.delete(&format!("/api/sessions/{id}"))
        .await
        .assert_error(403, Some("origin_required"));
    bare.post("/api/auth/logout", &json!({}))
        .await
        .assert_error(403, Some("origin_required"));
    // Reads need neither.
    bare.get("/api/sessions").await.assert_status(200);

    assert_eq!(state(&admin).await, before);
    admin.get("/api/auth/status").await.assert_status(200);

    // The gateway's own origin is allowed without X-Requested-With.
    let same = bare
        .request(Method::POST, "/api/sessions")
        .header("origin", server.origin())
        .json(&session_input("same-origin", "10.0.0.3"));
    bare.send(same).await.assert_status(201);
}

#[tokio::test]
async fn security_headers_and_error_shape_everywhere() {
    let server = Server::start_default().await;
    let anon = server.client();
    let admin = server.admin().await;
    let responses = vec![
        ("healthz", anon.get("/healthz").await, 200),
        ("index", anon.get("/").await, 200),
        ("status 401", anon.get("/api/auth/status").await, 401),
        ("unknown route", anon.get("/no/such/route").await, 404),
        ("unknown api", admin.get("/api/nope").await, 404),
        (
            "wrong method",
            admin
                .send(admin.request(Method::PATCH, "/api/sessions"))
                .await,
            405,
        ),
        ("list", admin.get("/api/sessions").await, 200),
    ];
    for (what, r, status) in &responses {
        assert_eq!(r.status.as_u16(), *status, "{what}: {}", r.text());
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{what}: CSP {csp:?}");
        assert!(
            csp.contains("frame-ancestors 'none'"),
            "{what}: CSP {csp:?}"
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            r.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{what}"
        );
        assert!(r.header("referrer-policy").is_some(), "{what}");
        assert!(
            r.header("strict-transport-security").is_none(),
            "{what}: HSTS over plain HTTP"
        );
        if *status >= 400 {
            r.assert_error(*status, None);
        }
    }
}

#[tokio::test]
async fn base_path_serves_everything_under_the_prefix() {
    let server = Server::start(
        ServerOptions::default()
            .base_path("/opsgate")
            .config("public_url = \"https://ops.example.com/opsgate\""),
    )
    .await;
    let root = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{}{path}", server.origin());
        let root = root.clone();
        async move { root.get(url).send().await.expect("request") }
    };
    assert_eq!(get("/opsgate/healthz").await.status(), 200);
    assert_eq!(
        get("/opsgate/").await.status(),
        200,
        "index under the prefix"
    );
    for outside in ["/healthz", "/api/auth/status", "/", "/opsgatex/healthz"] {
        let r = get(outside).await;
        assert_eq!(r.status(), 404, "{outside} answered outside the base path");
        let v: Value = r.json().await.expect("json error");
        assert_eq!(v["error"]["code"], "not_found");
    }

    let r = server.client().try_login(ADMIN, ADMIN_PASSWORD).await;
    r.assert_status(200);
    let set = r.set_cookies();
    let attrs: Vec<String> = set[0]
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.contains(&"path=/opsgate".to_string()), "{set:?}");
    // public_url is https: the cookie is Secure even though this hop is plain HTTP.
    assert!(attrs.contains(&"secure".to_string()), "{set:?}");
    let admin = server.client().with_cookie(r.cookie().as_deref());
    admin.get("/api/auth/status").await.assert_status(200);

    // The public URL's origin may write, without X-Requested-With; others may not.
    let bare = admin.without_requested_with();
    for (origin, status) in [
        ("https://ops.example.com", 201),
        ("http://ops.example.com", 403),
        ("https://evil.example.com", 403),
    ] {
        let r = bare
            .send(
                bare.request(Method::POST, "/api/sessions")
                    .header("origin", origin)
                    .json(&session_input(origin, "10.0.0.1")),
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{origin}: {}", r.text());
    }
}

#[tokio::test]
async fn plain_http_on_a_public_address_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut cmd = opsgate_command();
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(data.path())
        .env("OPSGATE_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let (status, out) = run_to_exit(cmd, Duration::from_secs(20));
    let status = status.expect("opsgate kept running on 0.0.0.0 without TLS");
    assert!(!status.success(), "exit status {status}: {out}");
    assert!(
        out.contains("refusing plain HTTP"),
        "unclear message: {out}"
    );
    assert!(out.contains("--insecure-listen"), "no way out named: {out}");
    assert!(
        all_files(data.path()).is_empty(),
        "refused start still wrote to the data directory"
    );

    // Explicitly overridden, or with TLS, it starts.
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let insecure = Server::start(
        ServerOptions::default()
            .listen_ip(any)
            .arg("--insecure-listen"),
    )
    .await;
    insecure.admin().await;
    drop(insecure);
    let tls = Server::start(ServerOptions::default().listen_ip(any).tls()).await;
    tls.admin().await;
}
