//! `ssh` channels through the gateway to a real OpenSSH sshd on 127.0.0.1.

mod common;
mod sshd;
mod ws;

use std::time::Duration;

use common::{Client, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use opsgate_protocol::{HostkeyStatus, ServerFrame};
use serde_json::{json, Value};
use sshd::{Sshd, SshdOptions};
use ws::{connect, Ws};

async fn setup(extra: &str) -> (Server, Client, String) {
    let s = Server::start(ServerOptions::default().config(extra)).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    (s, admin, cookie)
}

async fn password_credential(c: &Client, password: &str) -> String {
    let r = c
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":password}),
        )
        .await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("id").to_string()
}

async fn key_credential(c: &Client, key: &str, passphrase: &str) -> String {
    let r = c
        .post(
            "/api/credentials",
            &json!({"name":"key","kind":"private_key","secret":key,"passphrase":passphrase}),
        )
        .await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("id").to_string()
}

fn open_ssh(ch: u32, port: u16, cred: &str) -> Value {
    json!({"type":"open","ch":ch,"kind":"ssh","host":"127.0.0.1","port":port,
           "username":sshd::USER,"credential_id":cred,"cols":80,"rows":24})
}

/// Opens ch, accepting the host key if asked; returns whether it asked.
async fn open_trusting(w: &mut Ws, ch: u32, port: u16, cred: &str) -> bool {
    w.send_json(open_ssh(ch, port, cred)).await;
    let f = w
        .expect_control(|f| {
            matches!(f, ServerFrame::Hostkey { ch: c, .. } | ServerFrame::Opened { ch: c, .. } | ServerFrame::Error { ch: Some(c), .. } if *c == ch)
        })
        .await;
    match f {
        ServerFrame::Hostkey {
            status,
            fingerprint,
            ..
        } => {
            assert_eq!(status, HostkeyStatus::Unknown);
            assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
            w.send_json(json!({"type":"hostkey_accept","ch":ch})).await;
            w.expect_opened(ch).await;
            true
        }
        ServerFrame::Opened { .. } => false,
        other => panic!("open failed: {other:?}"),
    }
}

#[tokio::test]
async fn host_key_trust_echo_resize_and_exit() {
    let mut d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) = setup("").await;
    let cred = password_credential(&admin, sshd::PASSWORD).await;
    let mut w = connect(&s, &cookie).await;

    assert!(
        open_trusting(&mut w, 1, d.port, &cred).await,
        "first use must ask"
    );
    w.input(1, b"echo ssh-$((40+2))\n").await;
    w.expect_output(1, "ssh-42").await;
    w.input(1, b"stty size\n").await;
    w.expect_output(1, "24 80").await;
    w.send_json(json!({"type":"resize","ch":1,"cols":120,"rows":40}))
        .await;
    w.input(1, b"stty size\n").await;
    w.expect_output(1, "40 120").await;

    let hosts = admin.get("/api/known-hosts").await.json();
    assert_eq!(hosts.as_array().map(Vec::len), Some(1), "{hosts}");

    // Trusted now: the next open asks nothing.
    assert!(
        !open_trusting(&mut w, 2, d.port, &cred).await,
        "known key must not ask"
    );
    w.input(2, b"exit 3\n").await;
    match w
        .expect_control(|f| matches!(f, ServerFrame::Exit { ch: 2, .. }))
        .await
    {
        ServerFrame::Exit { code, .. } => assert_eq!(code, Some(3)),
        _ => unreachable!(),
    }

    // A new host key on the same address is refused with a clear warning.
    d.restart_with_new_host_key();
    w.send_json(open_ssh(3, d.port, &cred)).await;
    match w
        .expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: 3, .. }))
        .await
    {
        ServerFrame::Hostkey { status, .. } => assert_eq!(status, HostkeyStatus::Changed),
        _ => unreachable!(),
    }
    let msg = w.expect_error(Some(3), "hostkey_changed").await;
    assert!(msg.contains("changed"), "{msg}");
    // Channel 1 (an older connection) is unaffected by the new sshd's key... but that sshd
    // died with the restart, so check the socket itself still serves new channels.
    let cred2 = cred.clone();
    w.send_json(json!({"type":"open","ch":4,"kind":"pty","program":"nope","cols":80,"rows":24}))
        .await;
    w.expect_error(Some(4), "program_not_allowed").await;
    let _ = cred2;
}

#[tokio::test]
async fn rejected_host_key_is_not_stored() {
    let d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) = setup("").await;
    let cred = password_credential(&admin, sshd::PASSWORD).await;
    let mut w = connect(&s, &cookie).await;
    w.send_json(open_ssh(1, d.port, &cred)).await;
    w.expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: 1, .. }))
        .await;
    w.send_json(json!({"type":"hostkey_reject","ch":1})).await;
    w.expect_error(Some(1), "hostkey_rejected").await;
    let hosts = admin.get("/api/known-hosts").await.json();
    assert_eq!(hosts.as_array().map(Vec::len), Some(0), "{hosts}");
}

/// A workspace that already holds `[inventory] max_known_hosts` keys cannot trust one
/// more: the accepted key is not kept, the open fails with `limit_reached` saying why,
/// and the socket goes on.
#[tokio::test]
async fn a_host_key_past_the_workspace_limit_is_not_kept() {
    let d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) = setup("[inventory]\nmax_known_hosts = 0\n").await;
    let cred = password_credential(&admin, sshd::PASSWORD).await;
    let mut w = connect(&s, &cookie).await;
    w.send_json(open_ssh(1, d.port, &cred)).await;
    w.expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: 1, .. }))
        .await;
    w.send_json(json!({"type":"hostkey_accept","ch":1})).await;
    let message = w.expect_error(Some(1), "limit_reached").await;
    assert!(message.contains("max_known_hosts"), "{message}");
    let hosts = admin.get("/api/known-hosts").await.json();
    assert_eq!(hosts.as_array().map(Vec::len), Some(0), "{hosts}");
    // The socket goes on, and the key is still unknown.
    w.send_json(open_ssh(2, d.port, &cred)).await;
    w.expect_control(|f| {
        matches!(
            f,
            ServerFrame::Hostkey {
                ch: 2,
                status: HostkeyStatus::Unknown,
                ..
            }
        )
    })
    .await;
    w.send_json(json!({"type":"hostkey_reject","ch":2})).await;
    w.expect_error(Some(2), "hostkey_rejected").await;
}

#[tokio::test]
async fn connection_errors_have_clear_codes_and_spare_the_socket() {
    let mut d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) =
        setup("[ssh]\nconnect_timeout_secs = 2\n[pty.programs]\ncat = [\"cat\"]\n").await;
    let good = password_credential(&admin, sshd::PASSWORD).await;
    let bad = password_credential(&admin, "wrong-password").await;
    let mut w = connect(&s, &cookie).await;
    w.open_pty(100, "cat").await;
    w.expect_opened(100).await;

    // Wrong password.
    assert!(open_trusting(&mut w, 1, d.port, &good).await);
    w.send_json(open_ssh(2, d.port, &bad)).await;
    w.expect_error(Some(2), "auth_failed").await;

    // Closed port.
    let closed = common::free_port();
    w.send_json(open_ssh(3, closed, &good)).await;
    w.expect_error(Some(3), "connect_refused").await;

    // A listener that accepts and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let started = std::time::Instant::now();
    w.send_json(open_ssh(4, silent_port, &good)).await;
    w.expect_error(Some(4), "connect_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(10));

    // Unknown name.
    w.send_json(
        json!({"type":"open","ch":5,"kind":"ssh","host":"no-such-host.invalid","port":22,
        "username":"x","credential_id":good,"cols":80,"rows":24}),
    )
    .await;
    w.expect_error(Some(5), "dns_failed").await;

    // The host dies mid-session.
    w.input(1, b"echo before-kill\n").await;
    w.expect_output(1, "before-kill").await;
    d.kill();
    let why = w.expect_error(Some(1), "remote_closed").await;
    // The message says what russh saw, not only that it ended.
    assert!(why.contains("dropped (the session failed: "), "{why}");

    // Through all of it, the socket and its other channel stayed up.
    w.input(100, b"still alive\n").await;
    w.expect_output(100, "still alive").await;
}

#[tokio::test]
async fn private_key_and_keyboard_interactive_auth() {
    let d = Sshd::start(SshdOptions {
        password_auth: false,
    });
    let (s, admin, cookie) = setup("").await;
    let key = key_credential(&admin, &d.client_key, sshd::KEY_PASSPHRASE).await;
    let pw = password_credential(&admin, sshd::PASSWORD).await;
    let mut w = connect(&s, &cookie).await;
    assert!(open_trusting(&mut w, 1, d.port, &key).await);
    w.input(1, b"echo key-$((1+1))\n").await;
    w.expect_output(1, "key-2").await;
    // Password auth is off: the password credential goes through keyboard-interactive.
    assert!(!open_trusting(&mut w, 2, d.port, &pw).await);
    w.input(2, b"echo kbd-$((2+2))\n").await;
    w.expect_output(2, "kbd-4").await;
}

#[tokio::test]
async fn saved_session_opens_by_id() {
    let d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) = setup("").await;
    let cred = password_credential(&admin, sshd::PASSWORD).await;
    let saved = admin
        .create_session(
            &json!({"display_name":"fixture","host":"127.0.0.1","port":d.port,
            "username":sshd::USER,"device_type":"linux","credential_id":cred}),
        )
        .await;
    let id = saved["id"].as_str().expect("id");
    let mut w = connect(&s, &cookie).await;
    w.send_json(json!({"type":"open","ch":1,"kind":"ssh","session_id":id,"cols":80,"rows":24}))
        .await;
    w.expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: 1, .. }))
        .await;
    w.send_json(json!({"type":"hostkey_accept","ch":1})).await;
    w.expect_opened(1).await;
    w.input(1, b"whoami\n").await;
    w.expect_output(1, sshd::USER).await;
}

#[tokio::test]
async fn a_stalled_ssh_channel_does_not_stall_another() {
    let d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) = setup("").await;
    let cred = password_credential(&admin, sshd::PASSWORD).await;
    let mut w = connect(&s, &cookie).await;
    assert!(open_trusting(&mut w, 1, d.port, &cred).await);
    assert!(!open_trusting(&mut w, 2, d.port, &cred).await);
    // Channel 1 floods and is never acked.
    w.auto_ack = false;
    w.input(1, b"yes\n").await;
    let flood = w.drain_for(Duration::from_millis(1500)).await;
    let unacked = *flood.get(&1).unwrap_or(&0);
    assert!(
        unacked <= 262_144 + 65_536 + 4096,
        "window not enforced: {unacked}"
    );
    let rss1 = s.rss_kib().expect("rss");
    // Channel 2 still echoes promptly (acking only channel 2's output).
    for i in 0..5 {
        let marker = format!("echo-{i}-ok");
        w.input(2, format!("echo {marker}\n").as_bytes()).await;
        let started = std::time::Instant::now();
        loop {
            match w.next_event(Duration::from_secs(5)).await {
                Some(ws::Event::Data(2, d)) => {
                    w.ack(2, d.len()).await;
                    w.buffered.entry(2).or_default().extend(d);
                    if String::from_utf8_lossy(&w.buffered[&2]).contains(&format!("{marker}\r\n")) {
                        break;
                    }
                }
                Some(ws::Event::Data(1, _)) => panic!("channel 1 sent past its window"),
                Some(_) => {}
                None => panic!("channel 2 stalled behind channel 1"),
            }
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        w.buffered.remove(&2);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss2 = s.rss_kib().expect("rss");
    assert!(
        rss2 < rss1 + 8192,
        "memory grew behind a stalled channel: {rss1} -> {rss2} KiB"
    );
    // Acking channel 1 releases more output.
    w.ack(1, unacked).await;
    let more = w.drain_for(Duration::from_millis(800)).await;
    assert!(more.get(&1).copied().unwrap_or(0) > 100_000, "{more:?}");
}
