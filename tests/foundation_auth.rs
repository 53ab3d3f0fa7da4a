//! Login, the session cookie, logout, restarts, roles, the failed-login limiter, audit
//! and metrics — against the real binary over real HTTP.

mod common;

use std::net::IpAddr;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// The attributes of a `Set-Cookie` value, lower-cased, without the `name=value` pair.
fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn login_json_basic_and_bad_with_strict_cookie() {
    let server = Server::start_default().await;
    let anon = server.client();

    // Good JSON login: 200 {username, role} and a strict, HttpOnly cookie.
    let r = anon.try_login(ADMIN, ADMIN_PASSWORD).await;
    r.assert_status(200);
    assert_eq!(r.json(), json!({"username": "admin", "role": "admin"}));
    let set = r.set_cookies();
    assert_eq!(set.len(), 1, "one cookie: {set:?}");
    assert!(set[0].starts_with("opsgate_session="), "{set:?}");
    let attrs = cookie_attributes(&set[0]);
    assert!(attrs.contains(&"httponly".to_string()), "{attrs:?}");
    assert!(attrs.contains(&"samesite=strict".to_string()), "{attrs:?}");
    assert!(attrs.contains(&"path=/".to_string()), "{attrs:?}");
    assert!(
        !attrs.contains(&"secure".to_string()),
        "plain HTTP must not set Secure (the browser would drop it): {attrs:?}"
    );

    // The cookie works: status answers who we are and when the login ends.
    let me = anon.with_cookie(r.cookie().as_deref());
    let st = me.get("/api/auth/status").await;
    st.assert_status(200);
    let st = st.json();
    assert_eq!(st["username"], "admin");
    assert_eq!(st["role"], "admin");
    let expires = st["expires_at"].as_str().expect("expires_at");
    assert!(
        expires.len() >= 20 && expires.contains('T'),
        "RFC 3339: {expires}"
    );

    // Without a cookie: 401 in the error shape.
    anon.get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));
    anon.get("/api/sessions")
        .await
        .assert_error(401, Some("unauthenticated"));

    // Bad password and unknown user: 401, no cookie.
    for (u, p) in [(ADMIN, "wrong-password"), ("nobody", "whatever-pass")] {
        let r = anon.try_login(u, p).await;
        r.assert_error(401, Some("invalid_credentials"));
        assert!(r.set_cookies().is_empty(), "failed login set a cookie");
    }

    // HTTP Basic, good and bad.
    let r = anon.try_login_basic(ADMIN, ADMIN_PASSWORD).await;
    r.assert_status(200);
    assert_eq!(r.json()["username"], "admin");
    let basic = anon.with_cookie(r.cookie().as_deref());
    basic.get("/api/auth/status").await.assert_status(200);
    let r = anon.try_login_basic(ADMIN, "not-the-password").await;
    r.assert_error(401, Some("invalid_credentials"));
    assert!(r.set_cookies().is_empty());

    // Neither JSON nor Basic.
    anon.send(anon.request(Method::POST, "/api/auth/login"))
        .await
        .assert_error(400, None);
}

#[tokio::test]
async fn session_id_is_rotated_at_login() {
    let server = Server::start_default().await;

    // A cookie planted before login (session fixation) is never the one handed out.
    let planted = "opsgate_session=AAAAAAAAAAAAAAAAAAAAAA";
    let r = server
        .client()
        .with_cookie(Some(planted))
        .try_login(ADMIN, ADMIN_PASSWORD)
        .await;
    r.assert_status(200);
    let first = r.cookie().expect("cookie");
    assert_ne!(first, planted);

    // Logging in again while holding a live session rotates its id, and the old id dies.
    let c1 = server.client().with_cookie(Some(&first));
    c1.get("/api/auth/status").await.assert_status(200);
    let r = c1.try_login(ADMIN, ADMIN_PASSWORD).await;
    r.assert_status(200);
    let second = r.cookie().expect("cookie");
    assert_ne!(second, first, "session id not rotated at login");
    c1.get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));
    server
        .client()
        .with_cookie(Some(&second))
        .get("/api/auth/status")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn logout_makes_the_old_cookie_useless() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    admin.get("/api/sessions").await.assert_status(200);

    let r = admin.post("/api/auth/logout", &json!({})).await;
    r.assert_status(204);

    // Replaying the very same cookie gets nothing.
    admin
        .get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));
    admin
        .get("/api/sessions")
        .await
        .assert_error(401, Some("unauthenticated"));
    admin
        .post("/api/sessions", &session_input("r1", "10.0.0.1"))
        .await
        .assert_error(401, Some("unauthenticated"));
    admin
        .post("/api/auth/logout", &json!({}))
        .await
        .assert_error(401, None);
}

/// A user holds at most `[session] max_logins_per_user` logins: a new one ends the one
/// that would expire first; other users' logins are untouched.
#[tokio::test]
async fn a_user_holds_at_most_max_logins_per_user() {
    let server =
        Server::start(ServerOptions::default().config("[session]\nmax_logins_per_user = 3\n"))
            .await;
    let first = server.admin().await;
    first.create_user("op1", "op1-password-1", "operator").await;
    let other = server.login("op1", "op1-password-1").await;
    let mut logins = vec![first];
    for _ in 0..4 {
        logins.push(server.admin().await);
    }
    for (i, c) in logins.iter().enumerate() {
        let r = c.get("/api/auth/status").await;
        if i < 2 {
            r.assert_error(401, Some("unauthenticated"));
        } else {
            r.assert_status(200);
        }
    }
    other.get("/api/auth/status").await.assert_status(200);
    // A browser logging in again replaces its own login, not another one.
    let mut again = logins.pop().expect("last");
    again.login(ADMIN, ADMIN_PASSWORD).await;
    again.get("/api/auth/status").await.assert_status(200);
    for c in &logins[2..] {
        c.get("/api/auth/status").await.assert_status(200);
    }
}

#[tokio::test]
async fn a_restart_keeps_a_logged_in_user_logged_in() {
    let mut server = Server::start_default().await;
    let admin = server.admin().await;
    let created = admin
        .create_session(&session_input("core-sw1", "10.1.1.1"))
        .await;

    // Graceful restart.
    server.restart().await;
    let st = admin.get("/api/auth/status").await;
    st.assert_status(200);
    assert_eq!(st.json()["username"], "admin");
    assert_eq!(admin.all_sessions().await, vec![created.clone()]);

    // Crash (SIGKILL) and start again: still logged in, data still there.
    server.kill9();
    server.start_again().await;
    admin.get("/api/auth/status").await.assert_status(200);
    assert_eq!(admin.all_sessions().await, vec![created]);
}

#[tokio::test]
async fn tls_sets_secure_cookie_and_hsts() {
    let server = Server::start(ServerOptions::default().tls()).await;
    assert!(server.base_url().starts_with("https://"));
    let r = server.client().try_login(ADMIN, ADMIN_PASSWORD).await;
    r.assert_status(200);
    let set = r.set_cookies();
    let attrs = cookie_attributes(&set[0]);
    for want in ["secure", "httponly", "samesite=strict"] {
        assert!(
            attrs.contains(&want.to_string()),
            "{want} missing: {attrs:?}"
        );
    }
    let hsts = r
        .header("strict-transport-security")
        .expect("HSTS under TLS");
    assert!(hsts.contains("max-age="), "{hsts}");

    let me = server.client().with_cookie(r.cookie().as_deref());
    me.get("/api/auth/status").await.assert_status(200);

    // Plain HTTP to a TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP answered on the TLS port"
    );
}

#[tokio::test]
async fn failed_logins_get_429_per_ip_but_not_for_another_ip() {
    // Defaults: 5 failures per IP, 20 per user name, in 300 s.
    let server = Server::start_default().await;
    let attacker = server.client_from(ip("127.0.0.1"));
    for i in 0..5 {
        attacker
            .try_login(ADMIN, &format!("guess-{i}-wrong"))
            .await
            .assert_error(401, Some("invalid_credentials"));
    }
    let r = attacker.try_login(ADMIN, "guess-6-wrong").await;
    r.assert_error(429, Some("rate_limited"));
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After is seconds");
    assert!((1..=301).contains(&retry), "Retry-After {retry}");
    // Throttled before the password is even checked: the right one is refused too.
    attacker
        .try_login(ADMIN, ADMIN_PASSWORD)
        .await
        .assert_error(429, Some("rate_limited"));
    attacker
        .try_login_basic(ADMIN, ADMIN_PASSWORD)
        .await
        .assert_error(429, Some("rate_limited"));

    // The real admin, from another address, is not locked out.
    let other = server.client_from(ip("127.0.0.2"));
    let r = other.try_login(ADMIN, ADMIN_PASSWORD).await;
    r.assert_status(200);

    let admin = other.with_cookie(r.cookie().as_deref());
    let metrics = admin.get("/metrics").await;
    metrics.assert_status(200);
    let text = metrics.text();
    assert!(
        metric(&text, "opsgate_logins_total{result=\"throttled\"}") >= 3.0,
        "{text}"
    );
    assert!(
        metric(&text, "opsgate_logins_total{result=\"failed\"}") >= 5.0,
        "{text}"
    );
    assert!(
        metric(&text, "opsgate_logins_total{result=\"ok\"}") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_username_across_ips() {
    let server = Server::start(
        ServerOptions::default().config("[login_limit]\nper_ip = 100\nper_username = 3\n"),
    )
    .await;
    for n in 1..=3 {
        server
            .client_from(ip(&format!("127.0.0.{n}")))
            .try_login(ADMIN, "wrong-password")
            .await
            .assert_error(401, Some("invalid_credentials"));
    }
    let r = server
        .client_from(ip("127.0.0.4"))
        .try_login(ADMIN, "wrong-password")
        .await;
    r.assert_error(429, Some("rate_limited"));
    assert!(r.header("retry-after").is_some());
    // Another user name from the same place is not affected.
    server
        .client_from(ip("127.0.0.4"))
        .try_login("someone-else", "wrong-password")
        .await
        .assert_error(401, Some("invalid_credentials"));
}

#[tokio::test]
async fn forwarded_for_is_the_rate_limit_key_only_through_a_trusted_proxy() {
    let server = Server::start(ServerOptions::default().config(
        "trusted_proxies = [\"127.0.0.1\"]\n[login_limit]\nper_ip = 2\nper_username = 1000\n",
    ))
    .await;
    let via = |c: &Client, xff: &str, user: &str| {
        c.request(Method::POST, "/api/auth/login")
            .header("x-forwarded-for", xff)
            .json(&json!({"username": user, "password": "wrong-password"}))
    };

    // Through the trusted proxy 127.0.0.1 the limiter keys on the forwarded client.
    let proxy = server.client_from(ip("127.0.0.1"));
    for _ in 0..2 {
        proxy
            .send(via(&proxy, "203.0.113.7", "u1"))
            .await
            .assert_error(401, None);
    }
    proxy
        .send(via(&proxy, "203.0.113.7", "u1"))
        .await
        .assert_error(429, Some("rate_limited"));
    // A different client behind the same proxy is not blocked.
    proxy
        .send(via(&proxy, "203.0.113.8", "u1"))
        .await
        .assert_error(401, Some("invalid_credentials"));

    // From an untrusted peer the header is ignored: rotating it does not help.
    let stranger = server.client_from(ip("127.0.0.2"));
    for n in 0..2 {
        stranger
            .send(via(&stranger, &format!("198.51.100.{n}"), "u2"))
            .await
            .assert_error(401, None);
    }
    stranger
        .send(via(&stranger, "198.51.100.99", "u2"))
        .await
        .assert_error(429, Some("rate_limited"));

    // The audit log records the forwarded address only when it is believed.
    let admin = server.client_from(ip("127.0.0.3"));
    let mut admin = admin;
    admin.login(ADMIN, ADMIN_PASSWORD).await;
    let events = audit_events(&admin, "").await;
    let ips: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "login_failed")
        .filter_map(|e| e["ip"].as_str())
        .collect();
    assert!(ips.contains(&"203.0.113.7"), "{ips:?}");
    assert!(ips.contains(&"127.0.0.2"), "{ips:?}");
    assert!(!ips.iter().any(|i| i.starts_with("198.51.100.")), "{ips:?}");
}

#[tokio::test]
async fn roles_viewer_cannot_write_operator_cannot_manage_users() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    admin
        .create_user("olga", "operator-pass-1", "operator")
        .await;
    admin.create_user("vic", "viewer-pass-1", "viewer").await;
    let users = admin.get("/api/users").await;
    users.assert_status(200);
    let names: Vec<String> = users
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["username"].as_str().unwrap_or("").to_string())
        .collect();
    for n in ["admin", "olga", "vic"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    assert!(!users.text().contains("argon2"), "password hashes leaked");

    let viewer = server.login("vic", "viewer-pass-1").await;
    assert_eq!(
        viewer.get("/api/auth/status").await.json()["role"],
        "viewer"
    );
    viewer.get("/api/sessions").await.assert_status(200);
    viewer.get("/api/credentials").await.assert_status(200);
    viewer.get("/api/known-hosts").await.assert_status(200);
    let writes: Vec<(Method, &str, Value)> = vec![
        (
            Method::POST,
            "/api/sessions",
            session_input("x", "10.0.0.9"),
        ),
        (Method::POST, "/api/folders", json!({"name": "F"})),
        (
            Method::POST,
            "/api/credentials",
            json!({"name": "c", "kind": "password", "secret": "pw-123456"}),
        ),
        (Method::PUT, "/api/folders/Default", json!({"name": "G"})),
        (Method::DELETE, "/api/folders/Default", Value::Null),
        (
            Method::POST,
            "/api/users",
            json!({"username": "z", "password": "zzzzzzzzz", "role": "admin"}),
        ),
    ];
    for (m, path, body) in &writes {
        let rb = viewer.request(m.clone(), path);
        let rb = if body.is_null() { rb } else { rb.json(body) };
        viewer.send(rb).await.assert_error(403, Some("forbidden"));
    }
    viewer
        .send_raw(
            Method::POST,
            "/api/sessions/import",
            "application/yaml",
            "- folder_name: A\n  sessions: []\n",
        )
        .await
        .assert_error(403, Some("forbidden"));
    assert!(viewer.all_sessions().await.is_empty());

    let op = server.login("olga", "operator-pass-1").await;
    op.create_session(&session_input("edge-1", "10.2.0.1"))
        .await;
    op.get("/api/users")
        .await
        .assert_error(403, Some("forbidden"));
    op.post(
        "/api/users",
        &json!({"username": "mallory", "password": "mallory-pass", "role": "admin"}),
    )
    .await
    .assert_error(403, Some("forbidden"));
    op.put("/api/users/olga", &json!({"role": "admin"}))
        .await
        .assert_error(403, Some("forbidden"));
    op.delete("/api/users/vic")
        .await
        .assert_error(403, Some("forbidden"));
    assert_eq!(op.get("/api/auth/status").await.json()["role"], "operator");
    assert_eq!(
        admin
            .get("/api/users")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // The viewer may still log out.
    viewer
        .post("/api/auth/logout", &json!({}))
        .await
        .assert_status(204);

    // Admin user management: change a role, change a password (which ends that user's
    // logins), delete.
    admin
        .put("/api/users/vic", &json!({"role": "operator"}))
        .await
        .assert_status(200);
    admin
        .put("/api/users/olga", &json!({"password": "operator-pass-2"}))
        .await
        .assert_status(200);
    op.get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));
    server
        .client()
        .try_login("olga", "operator-pass-1")
        .await
        .assert_error(401, None);
    server.login("olga", "operator-pass-2").await;
    admin.delete("/api/users/vic").await.assert_status(204);
    admin.delete("/api/users/vic").await.assert_error(404, None);
    admin
        .delete("/api/users/admin")
        .await
        .assert_error(409, Some("last_admin"));
    admin
        .post(
            "/api/users",
            &json!({"username": "olga", "password": "another-pass", "role": "viewer"}),
        )
        .await
        .assert_error(409, Some("user_exists"));
    admin
        .post(
            "/api/users",
            &json!({"username": "short", "password": "short", "role": "viewer"}),
        )
        .await
        .assert_error(400, Some("weak_password"));
}

async fn audit_events(c: &Client, query: &str) -> Vec<Value> {
    let r = c.get(&format!("/api/audit{query}")).await;
    r.assert_status(200);
    r.json()["events"].as_array().expect("events").clone()
}

#[tokio::test]
async fn audit_shows_logins_failures_and_changes_and_non_admins_see_their_own() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    admin
        .create_user("olga", "operator-pass-1", "operator")
        .await;
    server
        .client()
        .try_login("olga", "not-her-password")
        .await
        .assert_status(401);
    let op = server.login("olga", "operator-pass-1").await;
    let s = op
        .create_session(&session_input("edge-1", "10.2.0.1"))
        .await;
    admin
        .create_session(&session_input("core-1", "10.9.0.1"))
        .await;

    let all = audit_events(&admin, "").await;
    let has = |actor: &str, action: &str| {
        all.iter()
            .any(|e| e["actor"] == actor && e["action"] == action)
    };
    assert!(has("admin", "login"), "{all:#?}");
    assert!(has("olga", "login"), "{all:#?}");
    assert!(has("olga", "login_failed"), "{all:#?}");
    assert!(has("admin", "user.create"), "{all:#?}");
    assert!(
        all.iter().any(|e| e["actor"] == "olga"
            && e["action"] == "session.create"
            && e["target"] == s["id"]),
        "{all:#?}"
    );
    assert!(has("admin", "session.create"), "{all:#?}");
    // Newest first, with an address on logins.
    let seqs: Vec<u64> = all
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    assert!(all
        .iter()
        .filter(|e| e["action"] == "login")
        .all(|e| e["ip"] == "127.0.0.1"));

    // Paging: two at a time walks the same events.
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_string();
    for _ in 0..100 {
        let r = admin.get(&format!("/api/audit{query}")).await;
        r.assert_status(200);
        let v = r.json();
        paged.extend(v["events"].as_array().expect("events").clone());
        match v["next_before"].as_u64() {
            Some(b) => query = format!("?limit=2&before={b}"),
            None => break,
        }
    }
    let paged_seqs: Vec<u64> = paged
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(paged_seqs.starts_with(&seqs), "{paged_seqs:?} vs {seqs:?}");

    // The operator sees only her own events, even when asking for someone else's.
    for q in ["", "?actor=admin"] {
        let mine = audit_events(&op, q).await;
        assert!(!mine.is_empty());
        assert!(mine.iter().all(|e| e["actor"] == "olga"), "{mine:#?}");
        assert!(mine.iter().any(|e| e["action"] == "session.create"));
    }
    // Admins can filter by actor.
    let olga = audit_events(&admin, "?actor=olga").await;
    assert!(olga.iter().all(|e| e["actor"] == "olga"));
    assert!(olga.len() >= 3, "{olga:#?}");

    // Logout is audited too.
    op.post("/api/auth/logout", &json!({}))
        .await
        .assert_status(204);
    assert!(audit_events(&admin, "?actor=olga")
        .await
        .iter()
        .any(|e| e["action"] == "logout"));
}

/// The value of one sample line of Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|rest| rest.trim()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

#[tokio::test]
async fn metrics_count_logins_and_requests() {
    let server = Server::start_default().await;
    let anon = server.client();
    anon.try_login(ADMIN, "wrong-password")
        .await
        .assert_status(401);
    let admin = server.admin().await;
    let r = anon.get("/metrics").await;
    r.assert_status(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = r.text();
    assert_eq!(metric(&text, "opsgate_logins_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        metric(&text, "opsgate_logins_total{result=\"failed\"}"),
        1.0
    );
    assert!(metric(&text, "opsgate_http_responses_total{class=\"2xx\"}") >= 1.0);
    assert!(metric(&text, "opsgate_http_responses_total{class=\"4xx\"}") >= 1.0);
    assert_eq!(metric(&text, "opsgate_login_sessions"), 1.0);
    admin
        .post("/api/auth/logout", &json!({}))
        .await
        .assert_status(204);
    let text = anon.get("/metrics").await.text();
    assert_eq!(metric(&text, "opsgate_login_sessions"), 0.0);
}

#[tokio::test]
async fn idle_and_absolute_timeouts_end_a_login() {
    // Idle: a login unused for longer than the idle timeout is gone.
    // (Seconds, not one: a login on a busy 2-core machine running the suite in parallel
    // can take longer than a second to reach its first status check.)
    let idle = Server::start(ServerOptions::default().config("[session]\nidle_timeout_secs = 3\n"));
    // Absolute: a login older than the absolute timeout is gone, however active.
    let absolute = Server::start(
        ServerOptions::default()
            .config("[session]\nidle_timeout_secs = 3600\nabsolute_timeout_secs = 3\n"),
    );
    let (idle, absolute) = tokio::join!(idle, absolute);
    let a = idle.admin().await;
    let b = absolute.admin().await;
    a.get("/api/auth/status").await.assert_status(200);
    b.get("/api/auth/status").await.assert_status(200);
    let start = std::time::Instant::now();
    // Keep the absolute-timeout login busy the whole time.
    while start.elapsed() < std::time::Duration::from_millis(4200) {
        b.get("/api/sessions").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    a.get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));
    b.get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));
}
