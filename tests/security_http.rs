//! Issue 8, the HTTP side, each finding replayed as an attacker would against the real
//! binary on loopback: a readable data directory with live session ids, login throttle
//! races, a demoted user's open socket, slowloris, DNS rebinding, an open `/metrics`,
//! no API rate limit, unstructured logs without request ids, and typed passwords in the
//! audit log.

mod common;
mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use opsgate_protocol::ServerFrame;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use ws::{connect, Event};

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn chmod(p: &std::path::Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// Item 3: the data directory is 0700 and its files 0600 (a loose one is tightened at
/// start), and the database never holds a session id a client's cookie carries.
#[tokio::test]
async fn data_dir_is_private_and_holds_no_session_id() {
    let mut server = Server::start_default().await;
    let dir = server.data_dir().to_path_buf();
    let db = dir.join("opsgate.redb");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600, "opsgate.redb");
    assert_eq!(mode(&dir.join("master.key")), 0o600, "master.key");

    let mut admin = server.client();
    let cookie = admin.login(ADMIN, ADMIN_PASSWORD).await;
    admin.get("/api/auth/status").await.assert_status(200);
    let id = cookie.split_once('=').expect("name=value").1.to_string();
    assert!(id.len() >= 16, "cookie value {id:?}");
    let hits = files_containing(&dir, id.as_bytes());
    assert!(hits.is_empty(), "session id stored in {hits:?}");

    // Loosened behind its back (an old version, a restore): tightened at the next start.
    server.stop();
    chmod(&dir, 0o755);
    chmod(&db, 0o644);
    let extra = dir.join("notes.txt");
    std::fs::write(&extra, "x").expect("write");
    chmod(&extra, 0o664);
    server.start_again().await;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&extra), 0o600);
    assert!(server.logs().contains("tightened"), "no warning logged");

    // Hashed ids still survive a restart.
    admin.get("/api/auth/status").await.assert_status(200);
    assert!(files_containing(&dir, id.as_bytes()).is_empty());
}

/// Item 4: concurrent wrong guesses are counted before the hash, so at most the limit
/// is verified; and a burst from one address does not lock the user out elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_counted_before_verifying() {
    let server = Server::start_default().await; // per_ip = 5
    for (source, n) in [(lo(1), 30), (lo(3), 100)] {
        let attacker = server.client_from(source);
        let mut tasks = Vec::new();
        for i in 0..n {
            let c = attacker.clone();
            tasks.push(tokio::spawn(async move {
                c.try_login(ADMIN, &format!("wrong-guess-{i}"))
                    .await
                    .status
                    .as_u16()
            }));
        }
        let mut verified = 0;
        let mut throttled = 0;
        for t in tasks {
            match t.await.expect("task") {
                401 => verified += 1,
                429 => throttled += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert!(
            verified <= 5,
            "{verified} of {n} concurrent guesses from {source} were verified (limit 5)"
        );
        assert_eq!(verified + throttled, n);
        // Some were turned away for being too many at once rather than by the count;
        // one at a time, the address gets the rest of its 5 and no more.
        for i in 0..10 {
            let r = attacker.try_login(ADMIN, &format!("slow-guess-{i}")).await;
            match r.status.as_u16() {
                401 => verified += 1,
                429 => break,
                other => panic!("unexpected status {other}"),
            }
        }
        assert!(verified <= 5, "{verified} guesses from {source} verified");
        let r = attacker.try_login(ADMIN, ADMIN_PASSWORD).await;
        r.assert_error(429, Some("rate_limited"));
        assert!(r.header("retry-after").is_some());
    }
    // The user is not locked out for everyone else.
    let r = server
        .client_from(lo(2))
        .try_login(ADMIN, ADMIN_PASSWORD)
        .await;
    r.assert_status(200);
}

/// Item 5: demoting a user ends their open sockets, and a new socket has the new role.
#[tokio::test]
async fn a_role_change_ends_the_users_sockets() {
    let server =
        Server::start(ServerOptions::default().config("[pty.programs]\ncat = [\"cat\"]")).await;
    let admin = server.admin().await;
    admin.create_user("op", "op-password-1", "operator").await;
    let op = server.login("op", "op-password-1").await;
    let cookie = op.cookie.clone().expect("cookie");
    let mut w = connect(&server, &cookie).await;
    w.open_pty(1, "cat").await;
    w.expect_opened(1).await;

    admin
        .put("/api/users/op", &json!({"role": "viewer"}))
        .await
        .assert_status(200);
    let mut saw_reason = false;
    let mut ended = false;
    for _ in 0..40 {
        match w.next_event(Duration::from_secs(5)).await {
            None => {
                ended = true;
                break;
            }
            Some(Event::Control(ServerFrame::Error { ch: None, code, .. }))
                if code == "role_changed" =>
            {
                saw_reason = true
            }
            Some(_) => {}
        }
    }
    assert!(saw_reason, "no role_changed frame");
    assert!(ended, "socket stayed open after the demotion");

    let mut w = connect(&server, &cookie).await;
    w.open_pty(2, "cat").await;
    w.expect_error(Some(2), "forbidden").await;

    // Setting the same role again is no change and ends nothing.
    let mut w = connect(&server, &cookie).await;
    admin
        .put("/api/users/op", &json!({"role": "viewer"}))
        .await
        .assert_status(200);
    assert!(
        !matches!(
            w.next_event(Duration::from_millis(500)).await,
            Some(Event::Control(ServerFrame::Error { ch: None, .. }))
        ),
        "an unchanged role ended the socket"
    );
}

/// A connection from `source` to the server (bound so per-address caps see it).
async fn tcp_from(server: &Server, source: IpAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(source, 0)).expect("bind");
    sock.connect(server.addr).await.expect("connect")
}

/// Waits (at most `limit`) until the server closes `s`; returns how long it took.
async fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(t0.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => continue, // a response (e.g. to the keep-alive request); read on
        }
    }
}

/// Item 6: half-sent requests and idle connections are closed within the timeouts,
/// while a normal client keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_and_others_are_served() {
    let server = Server::start(
        ServerOptions::default()
            .config("[http]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 3"),
    )
    .await;
    let host = server.addr.to_string();
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut s = tcp_from(&server, lo(5)).await;
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Slow-{i}: ");
        s.write_all(head.as_bytes()).await.expect("write");
        slow.push(tokio::spawn(closed_within(s, Duration::from_secs(10))));
    }
    for _ in 0..10 {
        let s = tcp_from(&server, lo(5)).await; // sends nothing at all
        slow.push(tokio::spawn(closed_within(s, Duration::from_secs(10))));
    }
    for _ in 0..5 {
        // One whole request, then an idle keep-alive connection.
        let mut s = tcp_from(&server, lo(5)).await;
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        slow.push(tokio::spawn(closed_within(s, Duration::from_secs(10))));
    }
    // A normal client is served all along.
    let normal = server.client();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        normal.get("/healthz").await.assert_status(200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, t) in slow.into_iter().enumerate() {
        let took = t.await.expect("task");
        let took = took.unwrap_or_else(|| panic!("slow connection {i} still open after 10 s"));
        assert!(
            took <= Duration::from_secs(6),
            "connection {i} lived {took:?}"
        );
    }
    normal.get("/healthz").await.assert_status(200);
}

/// Item 6: connections over the per-address cap are closed at once; other addresses are
/// served.
#[tokio::test]
async fn connections_per_address_are_capped() {
    let server =
        Server::start(ServerOptions::default().config("[http]\nmax_connections_per_ip = 5")).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tcp_from(&server, lo(6)).await);
    }
    // Let the gateway accept and count them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = tcp_from(&server, lo(6)).await;
    let took = closed_within(extra, Duration::from_secs(3)).await;
    assert!(
        took.is_some(),
        "a sixth connection from one address stayed open"
    );
    server
        .client_from(lo(7))
        .get("/healthz")
        .await
        .assert_status(200);
    drop(held);
    // Slots are given back when connections close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .client_from(lo(6))
        .get("/healthz")
        .await
        .assert_status(200);
}

/// Item 7: a request for a host the gateway is not (DNS rebinding) gets 421, whatever
/// its Origin; the real names keep working, under a base path and behind a proxy.
#[tokio::test]
async fn foreign_hosts_are_refused() {
    let server = Server::start(
        ServerOptions::default()
            .base_path("/opsgate")
            .config("public_url = \"https://ops.example.com/opsgate\"")
            .config("allowed_hosts = [\"gw.internal\"]")
            .config("trusted_proxies = [\"127.0.0.1\"]"),
    )
    .await;
    let port = server.addr.port();
    let c = server.client().without_requested_with();
    let login = |host: String, origin: String, fwd: Option<(&'static str, &'static str)>| {
        let mut rb = c
            .request(Method::POST, "/api/auth/login")
            .header("host", host)
            .header("origin", origin)
            .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}));
        if let Some((h, proto)) = fwd {
            rb = rb
                .header("x-forwarded-host", h)
                .header("x-forwarded-proto", proto);
        }
        c.send(rb)
    };

    let evil = format!("evil.example:{port}");
    let r = login(evil.clone(), format!("http://{evil}"), None).await;
    r.assert_error(421, Some("misdirected_request"));
    assert!(r.cookie().is_none());
    let r = c
        .send(
            c.request(Method::GET, "/healthz")
                .header("host", evil.clone()),
        )
        .await;
    r.assert_error(421, Some("misdirected_request"));
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    // Outside the base path as well: refused before routing.
    let r = reqwest::Client::new()
        .get(format!("{}/", server.origin()))
        .header("host", evil.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 421);

    for (host, origin, fwd) in [
        (server.addr.to_string(), server.origin(), None),
        (
            format!("localhost:{port}"),
            format!("http://localhost:{port}"),
            None,
        ),
        (
            format!("gw.internal:{port}"),
            format!("http://gw.internal:{port}"),
            None,
        ),
        (
            server.addr.to_string(),
            "https://ops.example.com".to_string(),
            Some(("ops.example.com", "https")),
        ),
    ] {
        let r = login(host.clone(), origin, fwd).await;
        assert_eq!(r.status, 200, "{host} {fwd:?}: {}", r.text());
    }
    // A trusted proxy forwarding a foreign host is refused too.
    let r = login(
        server.addr.to_string(),
        "https://evil.example".into(),
        Some(("evil.example", "https")),
    )
    .await;
    r.assert_error(421, Some("misdirected_request"));
}

/// Item 14: `/metrics` needs the bearer token once `metrics_token` is set.
#[tokio::test]
async fn metrics_token_guards_metrics() {
    let open = Server::start_default().await;
    open.client().get("/metrics").await.assert_status(200);
    drop(open);

    let server =
        Server::start(ServerOptions::default().config("metrics_token = \"scrape-me-please\""))
            .await;
    let c = server.client();
    let r = c.get("/metrics").await;
    r.assert_error(401, Some("unauthenticated"));
    assert!(!r.text().contains("opsgate_"), "metrics leaked");
    let wrong = c
        .send(
            c.request(Method::GET, "/metrics")
                .bearer_auth("scrape-me-pleasE"),
        )
        .await;
    wrong.assert_error(401, Some("unauthenticated"));
    let right = c
        .send(
            c.request(Method::GET, "/metrics")
                .bearer_auth("scrape-me-please"),
        )
        .await;
    right.assert_status(200);
    assert!(right.text().contains("opsgate_"), "{}", right.text());
}

/// Item 16: a burst over the per-user and per-address limits gets 429 with Retry-After;
/// other addresses are unaffected and `/healthz` is exempt.
#[tokio::test]
async fn api_rate_limit_per_user_and_per_address() {
    let server = Server::start(
        ServerOptions::default()
            .config("[rate_limit]\nper_user_per_minute = 20\nper_ip_per_minute = 40"),
    )
    .await;
    let admin = server.admin().await;
    let mut limited = None;
    for i in 0..30 {
        let r = admin.get("/api/auth/status").await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        r.assert_status(200);
    }
    let (i, r) = limited.expect("30 requests within a limit of 20 a minute");
    assert!(i <= 20, "limited only after {i}");
    r.assert_error(429, Some("rate_limited"));
    let secs: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    admin.get("/healthz").await.assert_status(200);

    // The user's limit follows the user to another address ...
    let elsewhere = server
        .client_from(lo(2))
        .with_cookie(admin.cookie.as_deref());
    elsewhere
        .get("/api/auth/status")
        .await
        .assert_error(429, Some("rate_limited"));
    // ... but that address is not limited for others.
    server
        .client_from(lo(2))
        .get("/api/auth/status")
        .await
        .assert_error(401, Some("unauthenticated"));

    // Per address, logged in or not.
    let stranger = server.client_from(lo(3));
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(stranger.get("/api/auth/status").await.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 401).count() <= 40);
    server
        .client_from(lo(4))
        .get("/api/auth/status")
        .await
        .assert_status(401);
}

/// Item 17: JSON logs, one line per request carrying the id the response echoed, and
/// the user once known; `X-Request-Id` is believed only from trusted proxies.
#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let server = Server::start(
        ServerOptions::default()
            .config("log_format = \"json\"")
            .config("trusted_proxies = [\"127.0.0.2\"]"),
    )
    .await;
    let admin = server.admin().await;
    let r = admin.get("/api/auth/status").await;
    r.assert_status(200);
    let id = r.header("x-request-id").expect("X-Request-Id echoed");
    assert!(id.len() >= 16, "{id}");

    // A client cannot choose its id; a trusted proxy can.
    let chosen = "proxy-chosen-id-123";
    let r = admin
        .send(
            admin
                .request(Method::GET, "/healthz")
                .header("x-request-id", chosen),
        )
        .await;
    assert_ne!(r.header("x-request-id").as_deref(), Some(chosen));
    let proxy = server.client_from(lo(2));
    let r = proxy
        .send(
            proxy
                .request(Method::GET, "/healthz")
                .header("x-request-id", chosen),
        )
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some(chosen));

    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let logs = server.logs();
        let found = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == id.as_str() && v["fields"]["status"] == 200);
        if let Some(v) = found {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON log line for {id}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["span"]["user"], ADMIN, "{line}");
    assert!(line["span"]["login_id"].is_string(), "{line}");
    let text = server.logs();
    let plain: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('{') && serde_json::from_str::<Value>(l).is_err())
        .collect();
    assert!(plain.is_empty(), "log lines that are not JSON: {plain:?}");
}

/// Item 12 (part): a failed login for a name that is no user does not keep the typed
/// text, which may well be a password.
#[tokio::test]
async fn unknown_login_names_are_not_stored_verbatim() {
    let server = Server::start_default().await;
    let typed = "Tr0ub4dor&3-typed-into-the-name-field";
    server
        .client()
        .try_login(typed, "whatever-password")
        .await
        .assert_error(401, Some("invalid_credentials"));
    server
        .client_from(lo(2))
        .try_login(typed, "again")
        .await
        .assert_status(401);
    let admin = server.admin().await;
    admin
        .try_login(ADMIN, "wrong-password-1")
        .await
        .assert_status(401);
    let audit = admin.get("/api/audit?limit=100").await;
    audit.assert_status(200);
    assert!(!audit.text().contains(typed), "typed name in the audit log");
    let events = audit.json()["events"].as_array().cloned().expect("events");
    let unknown: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "login_failed" && e["actor"] == "unknown user")
        .collect();
    assert_eq!(unknown.len(), 2, "{events:?}");
    // The same name gives the same tag, so repeats stay visible.
    assert_eq!(unknown[0]["detail"], unknown[1]["detail"]);
    assert!(unknown[0]["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("name hash ")));
    assert!(events
        .iter()
        .any(|e| e["action"] == "login_failed" && e["actor"] == ADMIN));
    assert!(files_containing(server.data_dir(), typed.as_bytes()).is_empty());
}
