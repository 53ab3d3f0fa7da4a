//! Regression guards for the terminal path's efficiency (issue 9). Not timed tests: they
//! count what the benchmarks explain (frames per MiB on the `ssh` path, the size cap of
//! data frames, memory kept after logins), so they hold on a busy 2-core machine.

mod common;
mod sshd;
mod ws;

use common::{Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use ws::{connect, Event};

/// The data-frame cap (`source::MAX_SOURCE_CHUNK`) plus the 5-byte header.
const MAX_FRAME: usize = 32 * 1024 + 5;

#[tokio::test]
async fn ssh_bulk_output_travels_in_few_full_frames() {
    let sshd = sshd::Sshd::start(sshd::SshdOptions::default());
    let s = Server::start(ServerOptions::default()).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let cred = admin.password_credential(sshd::PASSWORD).await;
    let mut w = connect(&s, &cookie).await;
    w.open_ssh_trusting(1, sshd.port, sshd::USER, &cred).await;
    w.input(
        1,
        b"stty -echo; printf 'GO\\n'; head -c 6291456 /dev/zero | base64 -w 0; printf 'DONE\\n'\n",
    )
    .await;
    w.expect_output(1, "GO\r\n").await;
    let (mut frames, mut bytes, mut largest) = (0usize, 0usize, 0usize);
    let mut tail = Vec::new();
    loop {
        match w.next_event(std::time::Duration::from_secs(20)).await {
            Some(Event::Data(1, d)) => {
                frames += 1;
                bytes += d.len();
                largest = largest.max(d.len() + 5);
                tail.extend_from_slice(&d);
                if tail.len() > 64 {
                    tail.drain(..tail.len() - 64);
                }
                if String::from_utf8_lossy(&tail).contains("DONE") {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("output stopped after {bytes} bytes"),
        }
    }
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let per_mib = frames as f64 / mib;
    println!(
        "ssh bulk: {bytes} bytes in {frames} frames ({per_mib:.0} per MiB, largest {largest})"
    );
    assert!(bytes > 8_000_000, "only {bytes} bytes");
    assert!(
        largest <= MAX_FRAME,
        "a data frame of {largest} bytes exceeds the cap"
    );
    // Before coalescing: about 160 frames per MiB (6.5 KB each). A full frame is 32 per MiB.
    assert!(
        per_mib <= 100.0,
        "{per_mib:.0} frames per MiB: ssh output is no longer coalesced"
    );
}

#[tokio::test]
async fn memory_after_many_logins_is_that_after_one() {
    let s = Server::start(ServerOptions::default()).await;
    let _first = s.login(ADMIN, ADMIN_PASSWORD).await;
    let after_one = s.rss_kib().expect("rss");
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(s.login(ADMIN, ADMIN_PASSWORD).await);
    }
    // Concurrent logins hash on several threads at once.
    let more = futures_util::future::join_all((0..4).map(|_| s.login(ADMIN, ADMIN_PASSWORD))).await;
    let after_many = s.rss_kib().expect("rss");
    println!("RSS after 1 login: {after_one} KiB; after 10: {after_many} KiB");
    drop((logins, more));
    // argon2id's work area is 19 MiB; keeping it per hashing thread was +19.5 MB a login.
    assert!(
        after_many < after_one + 8 * 1024,
        "RSS grew from {after_one} to {after_many} KiB over 9 more logins"
    );
}

/// A gateway that releases unused memory, code pages included, every second (the test
/// harness starts gateways with code pages kept and a 60 s period).
fn releasing_every_second() -> ServerOptions {
    ServerOptions::default()
        .env("OPSGATE_MEMORY__RELEASE_CODE_PAGES", "true")
        .env("OPSGATE_MEMORY__RELEASE_SECS", "1")
}

#[tokio::test]
async fn an_idle_gateway_hands_back_its_code_pages_and_keeps_working() {
    let s =
        Server::start(releasing_every_second().config("[pty.programs]\ncat = [\"cat\"]\n")).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    w.open_pty(1, "cat").await;
    w.input(1, b"before\n").await;
    w.expect_output(1, "before").await;
    // A login runs code nothing else does; within a second of it a release unmaps it.
    // Sampled every 50 ms: the highest figure is the code in use, the lowest the one
    // just after a release. Three tries, in case a release lands between the login and
    // the first sample.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let _other = s.login(ADMIN, ADMIN_PASSWORD).await;
        let (mut busy, mut idle) = (0, u64::MAX);
        for _ in 0..50 {
            let kib = s.status_kib("RssFile:").expect("rss");
            busy = busy.max(kib);
            idle = idle.min(kib);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        println!("file-backed RSS: {busy} KiB in use, {idle} KiB after a release");
        seen.push((busy, idle));
        if idle < busy / 2 {
            break;
        }
    }
    assert!(
        seen.iter().any(|&(busy, idle)| idle < busy / 2),
        "code pages were not released (in use, after a release: {seen:?} KiB)"
    );
    // Everything runs again from the page cache: the open terminal, a new one, a login.
    w.input(1, b"after\n").await;
    w.expect_output(1, "after").await;
    w.open_pty(2, "cat").await;
    w.input(2, b"second\n").await;
    w.expect_output(2, "second").await;
    let again = s.login(ADMIN, ADMIN_PASSWORD).await;
    assert!(again.cookie.is_some());
}

/// Code pages go back only after a quiet period: under a steady stream of requests the
/// gateway keeps the code a login mapped (releasing it would only have the workers fault
/// it back), and hands it back once the stream stops.
#[tokio::test]
async fn a_busy_gateway_keeps_its_code_pages_until_it_is_quiet() {
    use std::time::{Duration, Instant};
    let s = Server::start(releasing_every_second()).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let mapped = s.status_kib("RssFile:").expect("rss");
    // Three seconds of requests back to back: three release periods, none of them quiet.
    // Nothing is released, so the figure only grows (a release would take it to the
    // requests' own working set: about three quarters of it on the debug build).
    let started = Instant::now();
    let mut busy_lowest = u64::MAX;
    while started.elapsed() < Duration::from_secs(3) {
        admin.get("/api/sessions").await.assert_status(200);
        busy_lowest = busy_lowest.min(s.status_kib("RssFile:").expect("rss"));
    }
    // Then quiet: within two periods a release unmaps what the login and requests used.
    let mut idle_lowest = u64::MAX;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        idle_lowest = idle_lowest.min(s.status_kib("RssFile:").expect("rss"));
    }
    println!("file-backed RSS: {mapped} KiB after a login, {busy_lowest} KiB at least while busy, {idle_lowest} KiB once quiet");
    assert!(
        busy_lowest > mapped * 95 / 100,
        "code pages were released while busy ({mapped} KiB after the login, down to {busy_lowest} KiB)"
    );
    assert!(
        idle_lowest < mapped / 2,
        "code pages were not released once quiet ({mapped} KiB after the login, {idle_lowest} KiB after)"
    );
}
