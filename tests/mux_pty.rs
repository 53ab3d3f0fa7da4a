//! The multiplexed WebSocket with `pty` channels, against the real binary.

mod common;
mod ws;

use std::time::Duration;

use common::{Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use opsgate_protocol::ServerFrame;
use serde_json::json;
use ws::{connect, try_connect, Event};

const PROGRAMS: &str = r#"
[pty.programs]
cat = ["cat"]
sh = ["/bin/sh"]
yes = ["yes"]
seq = ["seq", "1", "300000"]
false = ["false"]
quiet_cat = ["sh", "-c", "stty -echo; printf READY; exec cat"]
"#;

async fn server() -> Server {
    Server::start(ServerOptions::default().config(PROGRAMS)).await
}

async fn server_with(extra: &str) -> Server {
    Server::start(ServerOptions::default().config(extra).config(PROGRAMS)).await
}

async fn admin_cookie(s: &Server) -> String {
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    c.cookie.clone().expect("cookie")
}

#[tokio::test]
async fn upgrade_needs_cookie_and_allowed_origin() {
    let s = server().await;
    assert_eq!(try_connect(&s, None, None).await.err(), Some(401));
    let cookie = admin_cookie(&s).await;
    assert_eq!(
        try_connect(&s, Some(&cookie), Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert!(try_connect(&s, Some(&cookie), None).await.is_ok());
}

#[tokio::test]
async fn echo_resize_and_exit() {
    let s = server().await;
    let cookie = admin_cookie(&s).await;
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "cat").await;
    w.expect_opened(1).await;
    w.input(1, b"hello opsgate\n").await;
    w.expect_output(1, "hello opsgate").await;

    w.send_json(json!({"type":"open","ch":2,"kind":"pty","program":"sh","cols":100,"rows":30}))
        .await;
    w.expect_opened(2).await;
    w.input(2, b"stty size\n").await;
    w.expect_output(2, "30 100").await;
    w.send_json(json!({"type":"resize","ch":2,"cols":132,"rows":43}))
        .await;
    w.input(2, b"stty size\n").await;
    w.expect_output(2, "43 132").await;
    w.input(2, b"exit 7\n").await;
    match w
        .expect_control(|f| matches!(f, ServerFrame::Exit { ch: 2, .. }))
        .await
    {
        ServerFrame::Exit { code, .. } => assert_eq!(code, Some(7)),
        _ => unreachable!(),
    }
    w.expect_control(|f| matches!(f, ServerFrame::Closed { ch: 2, .. }))
        .await;
    // The other channel is untouched.
    w.input(1, b"still here\n").await;
    w.expect_output(1, "still here").await;
}

#[tokio::test]
async fn sixty_four_channels_and_no_cross_talk() {
    let s = server().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    admin.create_user("bob", "bob-password-1", "operator").await;
    let bob = s.login("bob", "bob-password-1").await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut a1 = connect(&s, &cookie).await;
    let mut a2 = connect(&s, &cookie).await;
    let mut b1 = connect(&s, bob.cookie.as_deref().expect("cookie")).await;
    for ch in 1..=64u32 {
        a1.open_pty(ch, "cat").await;
    }
    for ch in 1..=64u32 {
        a1.expect_opened(ch).await;
    }
    a2.open_pty(1, "cat").await;
    a2.expect_opened(1).await;
    b1.open_pty(1, "cat").await;
    b1.expect_opened(1).await;
    for ch in 1..=64u32 {
        a1.input(ch, format!("marker-a1-{ch}\n").as_bytes()).await;
    }
    a2.input(1, b"marker-a2\n").await;
    b1.input(1, b"marker-b1\n").await;
    for ch in 1..=64u32 {
        let out = a1.expect_output(ch, &format!("marker-a1-{ch}\r\n")).await;
        assert!(
            !out.contains("a2") && !out.contains("b1"),
            "cross-talk on {ch}: {out}"
        );
        for other in 1..=64u32 {
            if other != ch {
                assert!(
                    !out.contains(&format!("marker-a1-{other}\r")),
                    "channel {ch} saw {other}"
                );
            }
        }
    }
    // `cat` in a PTY shows the line twice: the terminal's echo, then cat's copy. Wait for
    // both so that the silence checked below is real silence.
    a2.pump_until(|w| {
        w.buffered
            .get(&1)
            .is_some_and(|d| String::from_utf8_lossy(d).matches("marker-a2").count() >= 2)
    })
    .await;
    let out = String::from_utf8_lossy(&a2.buffered.remove(&1).unwrap_or_default()).to_string();
    assert!(!out.contains("a1") && !out.contains("b1"));
    let out = b1.expect_output(1, "marker-b1").await;
    assert!(!out.contains("a1") && !out.contains("a2"));
    let quiet = a2.drain_for(Duration::from_millis(300)).await;
    assert!(quiet.is_empty(), "unexpected data on a2: {quiet:?}");
}

#[tokio::test]
async fn flow_control_holds_one_window_and_acks_release_more() {
    let s = server_with("[mux]\nwindow_bytes = 262144\n").await;
    let cookie = admin_cookie(&s).await;
    let mut w = connect(&s, &cookie).await;
    w.auto_ack = false;
    w.open_pty(1, "yes").await;
    w.expect_opened(1).await;
    let got = w.drain_for(Duration::from_millis(1500)).await;
    let first = *got.get(&1).unwrap_or(&0);
    // One window, plus at most one read chunk that was in hand when the window closed.
    assert!(
        first >= 200_000,
        "too little output before the window closed: {first}"
    );
    assert!(
        first <= 262_144 + 65_536,
        "window not enforced: {first} bytes unacked"
    );
    let rss_before = s.rss_kib().expect("rss");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let more = w.drain_for(Duration::from_millis(300)).await;
    assert!(
        more.is_empty(),
        "output kept flowing without acks: {more:?}"
    );
    let rss_after = s.rss_kib().expect("rss");
    assert!(
        rss_after < rss_before + 4096,
        "gateway memory grew while the window was closed: {rss_before} -> {rss_after} KiB"
    );
    // Acknowledge everything: another window flows.
    w.ack(1, first).await;
    let again = w.drain_for(Duration::from_millis(1000)).await;
    let second = *again.get(&1).unwrap_or(&0);
    assert!(
        (200_000..=262_144 + 65_536).contains(&second),
        "after ack: {second}"
    );
}

fn expected_seq() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=300_000u32 {
        v.extend_from_slice(i.to_string().as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_bytes() {
    let s = server_with("[mux]\nwindow_bytes = 65536\nring_bytes = 131072\n").await;
    let cookie = admin_cookie(&s).await;
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "seq").await;
    let id = w.expect_opened(1).await;
    // Read (and ack) part of the stream, then drop the socket without a word.
    w.pump_until(|w| w.buffered.get(&1).is_some_and(|d| d.len() > 500_000))
        .await;
    let mut received = w.buffered.remove(&1).unwrap_or_default();
    drop(w);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut w2 = connect(&s, &cookie).await;
    let (offset, lost) = w2
        .attach(9, &id, received.len() as u64)
        .await
        .expect("attach");
    assert_eq!(offset, Some(received.len() as u64));
    assert_eq!(lost, Some(0));
    w2.expect_control(|f| matches!(f, ServerFrame::Exit { ch: 9, .. }))
        .await;
    w2.pump_until(|w| {
        w.controls
            .iter()
            .any(|f| matches!(f, ServerFrame::Closed { ch: 9, .. }))
    })
    .await;
    received.extend(w2.buffered.remove(&9).unwrap_or_default());
    let expected = expected_seq();
    assert_eq!(received.len(), expected.len(), "byte count differs");
    assert!(received == expected, "stream differs after resume");
}

#[tokio::test]
async fn attach_after_grace_or_by_another_user_is_refused() {
    let s = server_with("[mux]\ngrace_secs = 1\n").await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    admin.create_user("eve", "eve-password-1", "operator").await;
    let eve = s.login("eve", "eve-password-1").await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "cat").await;
    let id = w.expect_opened(1).await;
    w.open_pty(2, "cat").await;
    let id2 = w.expect_opened(2).await;

    let mut e = connect(&s, eve.cookie.as_deref().expect("cookie")).await;
    e.send_json(json!({"type":"attach","ch":1,"id":id2,"offset":0}))
        .await;
    e.expect_error(Some(1), "attach_refused").await;

    drop(w);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut w2 = connect(&s, &cookie).await;
    w2.send_json(json!({"type":"attach","ch":1,"id":id,"offset":0}))
        .await;
    w2.expect_error(Some(1), "channel_gone").await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_nothing_else_breaks() {
    let s = server_with("[mux]\nmax_frame_bytes = 65536\n").await;
    let cookie = admin_cookie(&s).await;
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "cat").await;
    w.expect_opened(1).await;

    w.send_text("{not json").await;
    w.expect_error(None, "malformed_frame").await;
    w.send_text(r#"{"type":"launch","ch":3}"#).await;
    w.expect_error(Some(3), "malformed_frame").await;
    w.input(42, b"x").await;
    w.expect_error(Some(42), "unknown_channel").await;
    w.send_binary(vec![1, 0, 0]).await;
    w.expect_error(None, "malformed_frame").await;
    w.send_binary(vec![0u8; 70_000]).await;
    w.expect_error(None, "frame_too_large").await;
    w.open_pty(5, "rm-rf").await;
    w.expect_error(Some(5), "program_not_allowed").await;
    // A refused open frees its number with `closed`, as one that fails later does; a
    // resize sent behind it is ignored, not an error.
    w.expect_control(|f| {
        matches!(f, ServerFrame::Closed { ch: 5, reason: Some(r) } if r == "program_not_allowed")
    })
    .await;
    w.send_json(json!({"type":"resize","ch":5,"cols":90,"rows":30}))
        .await;
    w.open_pty(1, "cat").await;
    w.expect_error(Some(1), "channel_in_use").await;
    // The open channel 1 is untouched: no `closed` for it.
    assert!(
        !w.controls
            .iter()
            .any(|f| matches!(f, ServerFrame::Closed { ch: 1, .. })
                || matches!(f, ServerFrame::Error { ch: Some(5), .. })),
        "{:?}",
        w.controls
    );
    w.send_json(json!({"type":"ack","ch":77,"bytes":1})).await;
    w.expect_error(Some(77), "unknown_channel").await;

    w.input(1, b"alive after abuse\n").await;
    w.expect_output(1, "alive after abuse").await;
}

#[tokio::test]
async fn logout_closes_sockets_and_channels() {
    let s = server().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "cat").await;
    w.expect_opened(1).await;
    admin
        .post("/api/auth/logout", &json!({}))
        .await
        .assert_status(204);
    // The socket ends (possibly after a `logged_out` error frame).
    let mut ended = false;
    for _ in 0..10 {
        match w.next_event(Duration::from_secs(5)).await {
            None => {
                ended = true;
                break;
            }
            Some(Event::Control(_)) | Some(Event::Data(..)) => continue,
        }
    }
    assert!(ended, "socket still open after logout");
    assert_eq!(try_connect(&s, Some(&cookie), None).await.err(), Some(401));
}

#[tokio::test]
async fn viewer_cannot_open_terminals() {
    let s = server().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    admin.create_user("vic", "vic-password-1", "viewer").await;
    let vic = s.login("vic", "vic-password-1").await;
    let mut w = connect(&s, vic.cookie.as_deref().expect("cookie")).await;
    w.open_pty(1, "cat").await;
    w.expect_error(Some(1), "forbidden").await;
}

#[tokio::test]
async fn per_login_limits_and_audit_of_channels() {
    let s = server_with("[mux]\nmax_channels_per_login = 2\nmax_sockets_per_login = 1\n").await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    assert_eq!(try_connect(&s, Some(&cookie), None).await.err(), Some(429));
    w.open_pty(1, "cat").await;
    let id = w.expect_opened(1).await;
    w.open_pty(2, "cat").await;
    w.expect_opened(2).await;
    w.open_pty(3, "cat").await;
    w.expect_error(Some(3), "limit_reached").await;
    // Closing one frees a place.
    w.send_json(json!({"type":"close","ch":1})).await;
    w.expect_control(|f| matches!(f, ServerFrame::Closed { ch: 1, .. }))
        .await;
    w.open_pty(3, "cat").await;
    w.expect_opened(3).await;
    // Channel opens and closes are audited (written in batches: allow a moment).
    let mut seen = false;
    for _ in 0..50 {
        let events = admin.get("/api/audit?limit=100").await.json();
        let list = events["events"].as_array().cloned().unwrap_or_default();
        let has = |action: &str| {
            list.iter()
                .any(|e| e["action"] == action && e["target"] == id.as_str())
        };
        if has("channel.open") && has("channel.close") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "channel open/close not audited");
    let metrics = admin.get("/metrics").await.text();
    assert!(
        metrics.contains("opsgate_channels{kind=\"pty\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("opsgate_sockets 1"), "{metrics}");
}

/// Channel opens are rate-limited per user (`[mux] opens_per_minute`, in bursts of half
/// a minute's worth): a script that opens and closes in a loop is refused once the burst
/// is spent, and gets opens back as the minute goes on.
#[tokio::test]
async fn channel_opens_are_rate_limited_per_user() {
    // A burst of 6, then one every 5 s: far slower than the burst takes, however busy
    // the machine.
    let s = server_with("[mux]\nopens_per_minute = 12\n").await;
    let cookie = admin_cookie(&s).await;
    let mut w = connect(&s, &cookie).await;
    // The burst, as fast as the socket goes.
    for ch in 1..=6 {
        open_and_close(&mut w, ch).await;
    }
    w.open_pty(100, "cat").await;
    let msg = w.expect_error(Some(100), "limit_reached").await;
    assert!(msg.contains("opens_per_minute"), "{msg}");
    // One comes back after 5 s.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    open_and_close(&mut w, 7).await;
}

async fn open_and_close(w: &mut ws::Ws, ch: u32) {
    w.open_pty(ch, "cat").await;
    w.expect_opened(ch).await;
    w.send_json(json!({"type":"close","ch":ch})).await;
    w.expect_control(|f| matches!(f, ServerFrame::Closed { ch: c, .. } if *c == ch))
        .await;
}

async fn expect_socket_end(w: &mut ws::Ws, code: &str) {
    let mut saw_code = false;
    for _ in 0..20 {
        match w.next_event(Duration::from_secs(5)).await {
            None => {
                assert!(saw_code, "socket ended without an error frame {code}");
                return;
            }
            Some(Event::Control(ServerFrame::Error {
                ch: None, code: c, ..
            })) if c == code => saw_code = true,
            Some(_) => {}
        }
    }
    panic!("socket did not end");
}

#[tokio::test]
async fn deleting_a_user_ends_their_sockets() {
    let s = server().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    admin.create_user("tmp", "tmp-password-1", "operator").await;
    let tmp = s.login("tmp", "tmp-password-1").await;
    let mut w = connect(&s, tmp.cookie.as_deref().expect("cookie")).await;
    w.open_pty(1, "cat").await;
    w.expect_opened(1).await;
    admin.delete("/api/users/tmp").await.assert_status(204);
    expect_socket_end(&mut w, "user_deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_tells_clients_and_audits_channel_close() {
    let mut s = server().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "cat").await;
    let id = w.expect_opened(1).await;
    let waiter = tokio::spawn(async move {
        expect_socket_end(&mut w, "shutting_down").await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::block_in_place(|| s.stop());
    assert!(
        status.is_some_and(|st| st.success()),
        "exit status {status:?}"
    );
    waiter.await.expect("socket saw shutdown");
    s.start_again().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let events = admin.get("/api/audit?limit=200").await.json();
    let closed = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e["action"] == "channel.close" && e["target"] == id.as_str());
    assert!(closed, "channel close not audited before exit: {events}");
}

#[tokio::test]
async fn a_large_paste_arrives_whole_and_in_order() {
    let s = server().await;
    let cookie = admin_cookie(&s).await;
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "quiet_cat").await;
    w.expect_opened(1).await;
    w.expect_output(1, "READY").await;
    let mut sent = String::new();
    for line in 0..5000 {
        sent.push_str(&format!("line-{line:05} {}\n", "x".repeat(48)));
    }
    // As a browser pastes: frames of 300 bytes under the input window.
    w.send_obeying_window(1, sent.as_bytes(), 300, 131_072)
        .await;
    let out = w.expect_output(1, "line-04999").await;
    let mut got = out.replace('\r', "");
    // Keep reading until the last line is complete.
    while !got.ends_with('\n') {
        w.pump_until(|w| w.buffered.contains_key(&1)).await;
        got.push_str(
            &String::from_utf8_lossy(&w.buffered.remove(&1).unwrap_or_default()).replace('\r', ""),
        );
    }
    assert!(
        w.controls
            .iter()
            .all(|f| !matches!(f, ServerFrame::Error { .. })),
        "{:?}",
        w.controls
    );
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "input reordered or lost");
}

/// A socket whose TCP receive buffer is a few KiB: once the client stops reading, the
/// gateway's writes to it stop making progress after what the kernels buffer.
async fn connect_small_window(s: &Server, cookie: &str) -> ws::Ws {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = sock.connect(s.listen_addr()).await.expect("connect");
    let (stream, _) = tokio_tungstenite::client_async(
        ws::upgrade_request(s, Some(cookie), None),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("upgrade");
    ws::Ws {
        stream,
        buffered: Default::default(),
        controls: Vec::new(),
        auto_ack: false,
    }
}

/// `yes` processes the gateway (pid `server`) runs.
fn yes_children(server: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let comm = stat.split_once('(').map_or("", |(_, r)| r);
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            comm.starts_with("yes)") && ppid == Some(&server.to_string())
        })
        .count()
}

/// Four `yes` terminals with 4 MiB windows: 16 MiB of output the gateway may send,
/// far more than the kernels buffer for a client that stopped reading.
async fn stall_socket(s: &Server, cookie: &str) -> ws::Ws {
    let mut w = connect_small_window(s, cookie).await;
    for ch in 1..=4 {
        w.open_pty(ch, "yes").await;
        w.expect_opened(ch).await;
    }
    // From here on nothing is read: the gateway's writes fill the buffers and wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    w
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_after_two_heartbeats() {
    let s = server_with("[mux]\nheartbeat_secs = 1\nwindow_bytes = 4194304\n").await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let _stalled = stall_socket(&s, &cookie).await;
    // Its channels detach (and wait for an `attach`) instead of waiting on it for good.
    let mut detached = false;
    for _ in 0..50 {
        let list = admin.get("/api/channels").await.json();
        let chans = list.as_array().cloned().unwrap_or_default();
        assert_eq!(chans.len(), 4, "{list}");
        if chans.iter().all(|c| c["attached"] == false) {
            detached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        detached,
        "channels still bound to a socket that takes nothing"
    );
    // They resume on a new socket, output intact.
    let mut w = connect(&s, &cookie).await;
    let id = admin.get("/api/channels").await.json()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    w.send_json(json!({"type":"attach","ch":9,"id":id,"offset":0}))
        .await;
    w.expect_output(9, "y\r\ny\r\n").await;
}

#[tokio::test]
async fn logout_ends_the_programs_of_a_socket_that_stopped_reading() {
    // The default heartbeat (30 s): it is the kick, not the heartbeat, that ends them.
    let s = server_with("[mux]\nwindow_bytes = 4194304\n").await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let pid = s.pid().expect("pid");
    let _stalled = stall_socket(&s, &cookie).await;
    assert_eq!(yes_children(pid), 4);
    admin
        .post("/api/auth/logout", &json!({}))
        .await
        .assert_status(204);
    let mut gone = false;
    for _ in 0..50 {
        if yes_children(pid) == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        gone,
        "{} programs still run after logout",
        yes_children(pid)
    );
}

#[tokio::test]
async fn upgrades_reset_as_they_are_answered_leave_no_socket_behind() {
    use tokio::io::AsyncWriteExt;
    let s = server_with("[mux]\nmax_sockets_per_login = 1\n").await;
    let cookie = admin_cookie(&s).await;
    let addr = s.listen_addr();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {}\r\nOrigin: {}\r\nCookie: {cookie}\r\n\r\n",
        opsgate_protocol::SUBPROTOCOL,
        s.origin()
    );
    // Clients that send the upgrade and reset at once or a moment later: the gateway
    // registers the socket, answers 101, and the upgrade fails under it.
    for i in 0..60u64 {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(request.as_bytes()).await.expect("write");
        if i % 3 > 0 {
            tokio::time::sleep(Duration::from_micros(300 * (i % 7))).await;
        }
        c.set_zero_linger().expect("linger");
        drop(c);
    }
    // With one socket allowed, a leaked registration would answer 429 from now on.
    let mut connected = false;
    for _ in 0..40 {
        match try_connect(&s, Some(&cookie), None).await {
            Ok(_) => {
                connected = true;
                break;
            }
            Err(status) => {
                assert_eq!(status, 429);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        connected,
        "the login's one socket is still taken by a reset upgrade"
    );
}

#[tokio::test]
async fn a_tab_that_was_not_reading_learns_its_terminal_moved_and_cannot_close_it() {
    let s = server_with("[mux]\nwindow_bytes = 4194304\n").await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    // Tab A: four chatty terminals, then it stops reading, so its outbox fills.
    let mut a = connect_small_window(&s, &cookie).await;
    let mut ids = Vec::new();
    for ch in 1..=4 {
        a.open_pty(ch, "yes").await;
        ids.push(a.expect_opened(ch).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Tab B takes terminal 1 while A's outbox is full, and A stays stalled for longer
    // than a release used to wait.
    let mut b = connect(&s, &cookie).await;
    b.send_json(json!({"type":"attach","ch":9,"id":ids[0],"offset":0}))
        .await;
    b.expect_output(9, "y\r\n").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A reads again: it is told terminal 1 moved…
    a.auto_ack = true;
    a.expect_control(|f| {
        matches!(f, ServerFrame::Closed { ch: 1, reason: Some(r) } if r == "attached_elsewhere")
    })
    .await;
    // …so its `close` for 1 reaches nothing, and B's terminal keeps running.
    a.send_json(json!({"type":"close","ch":1})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.buffered.clear();
    b.expect_output(9, "y\r\n").await;
    let list = admin.get("/api/channels").await.json();
    let first = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == ids[0].as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["exited"], false, "{list}");
}
