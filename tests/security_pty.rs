//! PTY programs run as the unprivileged `[pty] user` when the gateway runs as root: they
//! cannot signal the gateway or read its data directory. Real binary, real PTYs.

mod common;
mod ws;

use common::{Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use ws::connect;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// (uid, gid) of `name` from /etc/passwd.
fn ids_of(name: &str) -> Option<(String, String)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) {
                return None;
            }
            Some((f.get(2)?.to_string(), f.get(3)?.to_string()))
        })
}

#[tokio::test]
async fn a_pty_program_cannot_signal_the_gateway_or_read_its_data() {
    if !is_root() {
        eprintln!("skipped: the gateway drops privileges only when it runs as root");
        return;
    }
    let (uid, gid) = ids_of("nobody").expect("the nobody user exists");
    let mut s =
        Server::start(ServerOptions::default().config("[pty.programs]\nsh = [\"/bin/sh\"]\n"))
            .await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let gateway = s.pid().expect("pid");
    let key = s.data_dir().join("master.key");
    assert!(key.exists());
    let mut w = connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    w.open_pty(1, "sh").await;
    w.expect_opened(1).await;

    // The user's uid and gid, and no supplementary group (root's 0 least of all).
    w.input(1, b"echo \"U=$(id -u) G=$(id -G)|\"\n").await;
    w.expect_output(1, &format!("U={uid} G={gid}|")).await;
    w.input(1, b"echo \"D=$(pwd) H=$HOME|\"\n").await;
    w.expect_output(1, "D=/ H=/").await;

    w.input(
        1,
        format!("kill -TERM {gateway}; echo \"K=$?\"\n").as_bytes(),
    )
    .await;
    w.expect_output(1, "K=1").await;
    w.input(
        1,
        format!("cat '{}' > /dev/null; echo \"R=$?\"\n", key.display()).as_bytes(),
    )
    .await;
    w.expect_output(1, "R=1").await;
    // The data directory itself is private once it is 0700 (the gateway's file-mode
    // work); whatever its mode, listing it must agree with it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir())
        .expect("meta")
        .permissions()
        .mode();
    w.input(
        1,
        format!(
            "ls '{}' > /dev/null; echo \"L=$?\"\n",
            s.data_dir().display()
        )
        .as_bytes(),
    )
    .await;
    w.expect_output(1, if mode & 0o005 == 0 { "L=2" } else { "L=0" })
        .await;

    // The gateway kept serving.
    assert!(s.is_running(), "the gateway died:\n{}", s.logs());
    admin.get("/healthz").await.assert_status(200);
    w.input(1, b"echo still-$((1+1))\n").await;
    w.expect_output(1, "still-2").await;
    assert!(
        s.logs()
            .contains("PTY programs run as an unprivileged user"),
        "{}",
        s.logs()
    );
}

#[tokio::test]
async fn the_shipped_top_runs_in_secure_mode() {
    // Default allow-list: top with -s, where `k` (kill) is unavailable.
    let s = Server::start_default().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let mut w = connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    w.open_pty(1, "top").await;
    w.expect_opened(1).await;
    w.expect_output(1, "load average").await;
    w.input(1, b"k").await;
    w.expect_output(1, "secure mode").await;
    w.input(1, b"q").await;
}

#[tokio::test]
async fn a_missing_pty_user_stops_a_root_gateway_at_start() {
    if !is_root() {
        eprintln!("skipped: [pty] user is used only when the gateway runs as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[pty]\nuser = \"no-such-user-opsgate\"\n").expect("config");
    let mut cmd = common::opsgate_command();
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env("OPSGATE_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let (status, out) = common::run_to_exit(cmd, std::time::Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()), "{out}");
    assert!(out.contains("no-such-user-opsgate"), "{out}");
}
