//! Security of the SSH side: attacker-priced private keys, keyboard-interactive answers,
//! length caps on credential fields, and the networks SSH channels may reach. Real
//! binary, real OpenSSH sshd on 127.0.0.1.

mod common;
mod sshd;
mod ws;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Client, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use opsgate_protocol::ServerFrame;
use serde_json::{json, Value};
use sshd::{Sshd, SshdOptions};
use ws::{connect, Ws};

async fn setup(extra: &str) -> (Server, Client, String) {
    let s = Server::start(ServerOptions::default().config(extra)).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    (s, admin, cookie)
}

/// A fresh ed25519 key from ssh-keygen, encrypted with `passphrase` and `rounds`.
fn keygen(rounds: u32, passphrase: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k");
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-a",
            &rounds.to_string(),
            "-N",
            passphrase,
            "-f",
        ])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::read_to_string(&path).expect("key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    (key, public)
}

/// Rewrites the bcrypt rounds field of an OpenSSH private key, as an attacker would.
fn patch_rounds(key: &str, rounds: u32) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = b64.decode(body).expect("base64");
    let mut at = b"openssh-key-v1\0".len();
    let len_at = |der: &[u8], at: usize| {
        u32::from_be_bytes(der[at..at + 4].try_into().expect("4 bytes")) as usize
    };
    // cipher name, KDF name
    for _ in 0..2 {
        at += 4 + len_at(&der, at);
    }
    // KDF options: string salt, u32 rounds
    at += 4;
    at += 4 + len_at(&der, at);
    der[at..at + 4].copy_from_slice(&rounds.to_be_bytes());
    let text = b64.encode(&der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(70)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn key_body(name: &str, key: &str, passphrase: &str) -> Value {
    json!({"name": name, "kind": "private_key", "secret": key, "passphrase": passphrase})
}

/// Opens ch to the fixture sshd, accepting the host key if asked.
async fn open_ssh(w: &mut Ws, ch: u32, port: u16, cred: &str, username: Option<&str>) {
    let mut open = json!({"type":"open","ch":ch,"kind":"ssh","host":"127.0.0.1","port":port,
                          "credential_id":cred,"cols":80,"rows":24});
    if let Some(u) = username {
        open["username"] = json!(u);
    }
    w.send_json(open).await;
    let f = w
        .expect_control(|f| {
            matches!(f, ServerFrame::Hostkey { ch: c, .. } | ServerFrame::Opened { ch: c, .. } | ServerFrame::Error { ch: Some(c), .. } if *c == ch)
        })
        .await;
    match f {
        ServerFrame::Hostkey { .. } => {
            w.send_json(json!({"type":"hostkey_accept","ch":ch})).await;
            w.expect_opened(ch).await;
        }
        ServerFrame::Opened { .. } => {}
        other => panic!("open failed: {other:?}"),
    }
}

#[tokio::test]
async fn a_key_with_patched_bcrypt_rounds_is_refused_fast_with_a_code() {
    let (_s, admin, _) = setup("").await;
    let (key, _) = keygen(16, "pass-1");
    let costly = patch_rounds(&key, 800);
    let started = Instant::now();
    let r = admin
        .post("/api/credentials", &key_body("costly", &costly, "wrong"))
        .await;
    let msg = r.assert_error(400, Some("key_too_costly"));
    assert!(msg.contains("800"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The 32-bit field at its maximum: refused just as fast, and the gateway is fine.
    let r = admin
        .post(
            "/api/credentials",
            &key_body("costly", &patch_rounds(&key, u32::MAX), "pass-1"),
        )
        .await;
    r.assert_error(400, Some("key_too_costly"));
    assert!(started.elapsed() < Duration::from_secs(3));
    admin.get("/api/credentials").await.assert_status(200);
}

/// A PuTTY v3 key whose header asks Argon2 for 1 GiB. The public part is real; the
/// private part is random (it never gets that far).
fn costly_ppk(public_line: &str) -> String {
    let blob = public_line.split_whitespace().nth(1).expect("blob");
    let private = base64::engine::general_purpose::STANDARD.encode([7u8; 48]);
    format!(
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: aes256-cbc\nComment: costly\n\
         Public-Lines: 1\n{blob}\nKey-Derivation: Argon2id\nArgon2-Memory: 1048576\n\
         Argon2-Passes: 1\nArgon2-Parallelism: 1\nArgon2-Salt: 0123456789abcdef0123456789abcdef\n\
         Private-Lines: 1\n{private}\nPrivate-MAC: {}\n",
        "ab".repeat(32)
    )
}

#[tokio::test]
async fn a_putty_key_asking_for_a_gigabyte_is_refused_before_allocating() {
    let (s, admin, _) = setup("").await;
    let (_, public) = keygen(16, "");
    let rss_before = s.rss_kib().expect("rss");
    // Sample the gateway's memory while the request runs: the peak is what matters.
    let pid = s.pid().expect("pid");
    let peak = Arc::new(AtomicU64::new(rss_before));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, running) = (peak.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Acquire) {
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|st| {
                        st.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    })
                {
                    peak.fetch_max(kib, Ordering::AcqRel);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let r = admin
        .post(
            "/api/credentials",
            &key_body("ppk", &costly_ppk(&public), "any-passphrase"),
        )
        .await;
    let elapsed = started.elapsed();
    running.store(false, Ordering::Release);
    sampler.join().expect("sampler");
    let msg = r.assert_error(400, Some("key_too_costly"));
    assert!(msg.contains("1048576"), "{msg}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let grew = peak.load(Ordering::Acquire).saturating_sub(rss_before);
    assert!(grew < 64 * 1024, "gateway RSS grew by {grew} KiB");
}

#[tokio::test]
async fn a_login_is_not_held_up_by_a_costly_but_allowed_key_save() {
    let (s, admin, _) = setup("").await;
    // 128 rounds: the most a key may ask for, seconds of bcrypt in a debug build.
    let (key, _) = keygen(128, "pass-128");
    let saver = admin.clone();
    let save = tokio::spawn(async move {
        let started = Instant::now();
        let r = saver
            .post("/api/credentials", &key_body("slow", &key, "pass-128"))
            .await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let other = s.login(ADMIN, ADMIN_PASSWORD).await;
    let login_took = started.elapsed();
    // The login completed while the key was still being decrypted: it did not queue
    // behind the KDF for the database's write lock.
    let save_still_running = !save.is_finished();
    other.get("/api/auth/status").await.assert_status(200);
    let (r, save_took) = save.await.expect("save task");
    r.assert_status(201);
    assert_eq!(r.json()["has_passphrase"], true);
    assert!(
        save_still_running && login_took < Duration::from_secs(3),
        "login took {login_took:?} (save still running: {save_still_running}); the key save took {save_took:?}"
    );
}

#[tokio::test]
async fn a_saved_passphrase_key_connects_without_the_passphrase_at_connect() {
    let d = Sshd::start(SshdOptions::default());
    let (s, admin, cookie) = setup("").await;
    let r = admin
        .post(
            "/api/credentials",
            &key_body("fixture", &d.client_key, sshd::KEY_PASSPHRASE),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.json()["has_passphrase"], true);
    let cred = r.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, &cookie).await;
    open_ssh(&mut w, 1, d.port, &cred, Some(sshd::USER)).await;
    w.input(1, b"echo key-$((20+1))\n").await;
    w.expect_output(1, "key-21").await;
    // A rename keeps the stored key; a passphrase alone is refused (the key is stored
    // decrypted, the passphrase is not kept).
    let path = format!("/api/credentials/{cred}");
    admin
        .put(&path, &json!({"name": "renamed", "kind": "private_key"}))
        .await
        .assert_status(200);
    admin
        .put(
            &path,
            &json!({"name": "renamed", "kind": "private_key", "passphrase": "x"}),
        )
        .await
        .assert_error(400, Some("invalid_passphrase"));
    open_ssh(&mut w, 2, d.port, &cred, Some(sshd::USER)).await;
    w.input(2, b"echo again-$((20+2))\n").await;
    w.expect_output(2, "again-22").await;
}

#[tokio::test]
async fn keyboard_interactive_with_pam_still_logs_in() {
    // PasswordAuthentication no: the password goes through keyboard-interactive (PAM's
    // hidden "Password: " prompt).
    let d = Sshd::start(SshdOptions {
        password_auth: false,
    });
    let (s, admin, cookie) = setup("").await;
    let good = admin
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","password":sshd::PASSWORD}),
        )
        .await;
    good.assert_status(201);
    let good = good.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, &cookie).await;
    open_ssh(&mut w, 1, d.port, &good, Some(sshd::USER)).await;
    w.input(1, b"echo kbd-$((3+4))\n").await;
    w.expect_output(1, "kbd-7").await;
}

#[tokio::test]
async fn passphrase_enable_secret_and_username_have_length_caps() {
    let (_s, admin, _) = setup("").await;
    let long = "x".repeat(5000);
    for (field, code) in [
        ("passphrase", "invalid_passphrase"),
        ("enable_secret", "invalid_enable_secret"),
        ("username", "invalid_username"),
    ] {
        let mut body = json!({"name":"c","kind":"password","secret":"pw"});
        body[field] = json!(long);
        admin
            .post("/api/credentials", &body)
            .await
            .assert_error(400, Some(code));
    }
    // `password` is an alias of `secret`; both at once must agree.
    admin
        .post(
            "/api/credentials",
            &json!({"name":"c","kind":"password","password":"pw"}),
        )
        .await
        .assert_status(201);
    admin
        .post(
            "/api/credentials",
            &json!({"name":"c","kind":"password","password":"a","secret":"b"}),
        )
        .await
        .assert_error(400, Some("invalid_secret"));
}

#[tokio::test]
async fn ssh_targets_are_checked_against_the_configured_networks() {
    let d = Sshd::start(SshdOptions::default());
    // Deny loopback: every address of the target is checked after resolution.
    let (s, admin, cookie) = setup("[ssh]\ndenied_networks = [\"127.0.0.0/8\", \"::1\"]\n").await;
    let cred = admin
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD,"username":sshd::USER}),
        )
        .await;
    let cred = cred.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, &cookie).await;
    for (ch, host) in [
        (1, "127.0.0.1"),
        (2, "localhost"),
        (3, "[::ffff:127.0.0.1]"),
    ] {
        w.send_json(
            json!({"type":"open","ch":ch,"kind":"ssh","host":host,"port":d.port,
                           "credential_id":cred,"cols":80,"rows":24}),
        )
        .await;
        let msg = w.expect_error(Some(ch), "target_denied").await;
        assert!(msg.contains("outside"), "{msg}");
    }
    // A saved session is checked the same way.
    let saved = admin
        .create_session(
            &json!({"display_name":"lo","host":"127.0.0.1","port":d.port,
                               "device_type":"linux","credential_id":cred}),
        )
        .await;
    w.send_json(
        json!({"type":"open","ch":4,"kind":"ssh","session_id":saved["id"],"cols":80,"rows":24}),
    )
    .await;
    w.expect_error(Some(4), "target_denied").await;
    drop(w);
    drop(s);

    // The defaults deny link-local (cloud metadata) and allow loopback.
    let (s, admin, cookie) = setup("").await;
    let cred = admin
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD}),
        )
        .await;
    let cred = cred.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, &cookie).await;
    w.send_json(
        json!({"type":"open","ch":1,"kind":"ssh","host":"169.254.169.254","port":22,
                       "username":"x","credential_id":cred,"cols":80,"rows":24}),
    )
    .await;
    w.expect_error(Some(1), "target_denied").await;
    open_ssh(&mut w, 2, d.port, &cred, Some(sshd::USER)).await;
    w.input(2, b"echo allowed-$((5+5))\n").await;
    w.expect_output(2, "allowed-10").await;
    drop(w);
    drop(s);

    // An allow-list: only what is listed.
    let (s, admin, cookie) = setup("[ssh]\nallowed_networks = [\"127.0.0.1/32\"]\n").await;
    let cred = admin
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD}),
        )
        .await;
    let cred = cred.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, &cookie).await;
    w.send_json(
        json!({"type":"open","ch":1,"kind":"ssh","host":"127.0.0.2","port":d.port,
                       "username":sshd::USER,"credential_id":cred,"cols":80,"rows":24}),
    )
    .await;
    w.expect_error(Some(1), "target_denied").await;
    open_ssh(&mut w, 2, d.port, &cred, Some(sshd::USER)).await;
    w.input(2, b"echo listed-$((6+6))\n").await;
    w.expect_output(2, "listed-12").await;
}

#[tokio::test]
async fn saved_sessions_only_refuses_ad_hoc_targets_for_non_admins() {
    let d = Sshd::start(SshdOptions::default());
    let (s, admin, admin_cookie) = setup("[ssh]\nsaved_sessions_only = true\n").await;
    admin.create_user("op", "op-password-1", "operator").await;
    let op = s.login("op", "op-password-1").await;
    let cred = op
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD,"username":sshd::USER}),
        )
        .await;
    let cred = cred.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, op.cookie.as_deref().expect("cookie")).await;
    w.send_json(
        json!({"type":"open","ch":1,"kind":"ssh","host":"127.0.0.1","port":d.port,
                       "credential_id":cred,"cols":80,"rows":24}),
    )
    .await;
    let msg = w.expect_error(Some(1), "target_denied").await;
    assert!(msg.contains("saved"), "{msg}");
    // A saved session opens.
    let saved = op
        .create_session(
            &json!({"display_name":"fx","host":"127.0.0.1","port":d.port,
                               "device_type":"linux","credential_id":cred}),
        )
        .await;
    w.send_json(
        json!({"type":"open","ch":2,"kind":"ssh","session_id":saved["id"],"cols":80,"rows":24}),
    )
    .await;
    w.expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: 2, .. }))
        .await;
    w.send_json(json!({"type":"hostkey_accept","ch":2})).await;
    w.expect_opened(2).await;
    // Admins keep ad-hoc targets.
    let acred = admin
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD}),
        )
        .await;
    let acred = acred.json()["id"].as_str().expect("id").to_string();
    let mut aw = connect(&s, &admin_cookie).await;
    open_ssh(&mut aw, 1, d.port, &acred, Some(sshd::USER)).await;
}

/// An SSH server that, once the gateway's shell starts, tries to open channels back to
/// the gateway (agent, X11, a remote-forwarded TCP connection) and reports whether each
/// was accepted.
struct Hostile {
    report: tokio::sync::mpsc::UnboundedSender<(&'static str, bool)>,
}

impl russh::server::Handler for Hostile {
    type Error = russh::Error;

    async fn auth_password(
        &mut self,
        _user: &str,
        _password: &str,
    ) -> Result<russh::server::Auth, Self::Error> {
        Ok(russh::server::Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: russh::ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: russh::ChannelId,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        let report = self.report.clone();
        tokio::spawn(async move {
            let agent = handle.channel_open_agent().await.is_ok();
            let _ = report.send(("auth-agent", agent));
            let x11 = handle.channel_open_x11("127.0.0.1", 6010).await.is_ok();
            let _ = report.send(("x11", x11));
            let fwd = handle
                .channel_open_forwarded_tcpip("127.0.0.1", 8022, "203.0.113.9", 40000)
                .await
                .is_ok();
            let _ = report.send(("forwarded-tcpip", fwd));
            let direct = handle
                .channel_open_direct_tcpip("127.0.0.1", 22, "203.0.113.9", 40001)
                .await
                .is_ok();
            let _ = report.send(("direct-tcpip", direct));
            let _ = handle.data(channel, &b"hostile-done\r\n"[..]).await;
        });
        Ok(())
    }
}

#[tokio::test]
async fn channels_opened_by_the_server_are_refused() {
    let (key, _) = keygen(16, "");
    let host_key = russh::keys::decode_secret_key(&key, None).expect("host key");
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key],
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            if let Ok(session) =
                russh::server::run_stream(config, stream, Hostile { report: tx }).await
            {
                let _ = session.await;
            }
        }
    });

    let (s, admin, cookie) = setup("").await;
    let r = admin
        .post(
            "/api/credentials",
            &json!({"name":"pw","kind":"password","secret":"anything"}),
        )
        .await;
    let cred = r.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, &cookie).await;
    open_ssh(&mut w, 1, port, &cred, Some("someone")).await;
    w.expect_output(1, "hostile-done").await;
    let mut seen = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        seen.push(r);
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            ("auth-agent", false),
            ("x11", false),
            ("forwarded-tcpip", false),
            ("direct-tcpip", false)
        ]
    );
    // The terminal itself is unaffected.
    assert!(s
        .logs()
        .contains("refused a channel the SSH server tried to open"));
}
