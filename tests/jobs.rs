//! Fleet jobs against a real sshd whose device accounts run a fake network CLI
//! (tests/fixtures/fake_device.py): config backups with paging, enable and volatile
//! lines; versions and diffs; retries, cancel, unknown host keys, job channels, restart.

mod common;
mod sshd;
mod ws;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use opsgate_protocol::ServerFrame;
use serde_json::{json, Value};
use sshd::{Sshd, SshdOptions};
use ws::connect;

const IOS_USER: &str = "ogt-ios";
const JUNOS_USER: &str = "ogt-junos";
const EOS_USER: &str = "ogt-eos";
/// Fleet accounts `ogt-d00` … `ogt-d49`: one per target, so the fixture's login log
/// counts each target's logins.
const FLEET: usize = 50;

fn fleet_user(i: usize) -> String {
    format!("ogt-d{i:02}")
}

fn device_users() -> Vec<String> {
    let mut v: Vec<String> = [IOS_USER, JUNOS_USER, EOS_USER]
        .iter()
        .map(|u| u.to_string())
        .collect();
    v.extend((0..FLEET).map(fleet_user));
    v
}
const ENABLE_SECRET: &str = "en-secret-1";
const JOBS_CONFIG: &str =
    "[jobs]\nretries = 2\nretry_base_ms = 500\nretry_max_ms = 1000\ncommand_timeout_secs = 10\n";

const CONFIG_V1: &str = "hostname rtr1\n!\ninterface GigabitEthernet0/1\n description uplink to core\n ip address 10.0.0.1 255.255.255.0\n!\ninterface GigabitEthernet0/2\n shutdown\n!\nvlan 321\n name users\n!\nvlan 400\n name voice\n!\nrouter ospf 1\n network 10.0.0.0 0.0.0.255 area 0\n!\nline vty 0 4\n transport input ssh\n!";

/// Installs the fake device CLI and the device accounts (once per test binary).
fn ensure_devices() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = PathBuf::from("/usr/local/lib/opsgate-test");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let shell = dir.join("fake_device.py");
        std::fs::copy(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_device.py"),
            &shell,
        )
        .expect("copy shell");
        Command::new("chmod")
            .args(["755"])
            .arg(&shell)
            .status()
            .expect("chmod");
        Command::new("chmod")
            .args(["755"])
            .arg(&dir)
            .status()
            .expect("chmod");
        let users = device_users();
        for user in &users {
            if !Command::new("id")
                .arg(user)
                .output()
                .expect("id")
                .status
                .success()
            {
                let _ = Command::new("useradd")
                    .args(["-m", "-s"])
                    .arg(&shell)
                    .arg(user)
                    .status();
            }
            let _ = Command::new("usermod")
                .args(["-s"])
                .arg(&shell)
                .arg(user)
                .output();
        }
        let mut c = Command::new("chpasswd")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        let lines: String = users
            .iter()
            .map(|u| format!("{u}:{}\n", sshd::PASSWORD))
            .collect();
        c.stdin
            .take()
            .expect("stdin")
            .write_all(lines.as_bytes())
            .expect("write");
        assert!(c.wait().expect("wait").success());
        std::fs::create_dir_all("/tmp/opsgate-fake").expect("fake dir");
        Command::new("chmod")
            .args(["1777", "/tmp/opsgate-fake"])
            .status()
            .expect("chmod");
    });
}

/// A device sshd with its fixture directory.
struct Devices {
    sshd: Sshd,
    fixture: PathBuf,
}

impl Devices {
    fn start() -> Devices {
        ensure_devices();
        let users = device_users();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        let sshd = Sshd::start_with_users(SshdOptions::default(), &names);
        let fixture = PathBuf::from(format!("/tmp/opsgate-fake/{}", sshd.port));
        let _ = std::fs::remove_dir_all(&fixture);
        std::fs::create_dir_all(&fixture).expect("fixture");
        Command::new("chmod")
            .args(["777"])
            .arg(&fixture)
            .status()
            .expect("chmod");
        let d = Devices { sshd, fixture };
        d.set_config(CONFIG_V1);
        std::fs::write(d.fixture.join("logins.log"), "").expect("log");
        Command::new("chmod")
            .args(["666"])
            .arg(d.fixture.join("logins.log"))
            .status()
            .expect("chmod");
        d
    }

    fn set_config(&self, text: &str) {
        let p = self.fixture.join("config.txt");
        std::fs::write(&p, text).expect("config");
        Command::new("chmod")
            .args(["644"])
            .arg(&p)
            .status()
            .expect("chmod");
    }

    fn set_delay(&self, secs: f64) {
        let p = self.fixture.join("delay");
        std::fs::write(&p, secs.to_string()).expect("delay");
        Command::new("chmod")
            .args(["644"])
            .arg(&p)
            .status()
            .expect("chmod");
    }

    /// Logins per account so far.
    fn logins_by_user(&self) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for l in std::fs::read_to_string(self.fixture.join("logins.log"))
            .unwrap_or_default()
            .lines()
        {
            *m.entry(l.to_string()).or_default() += 1;
        }
        m
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.fixture);
    }
}

async fn setup() -> (Server, Client) {
    let s = Server::start(ServerOptions::default().config(JOBS_CONFIG)).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    (s, admin)
}

/// A gateway with `config`, its admin logged in, the devices' host key trusted and a
/// credential set for them (its id).
async fn ready(d: &Devices, config: &str) -> (Server, Client, String) {
    let s = Server::start(ServerOptions::default().config(config)).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    (s, admin, cred)
}

async fn credential(c: &Client) -> String {
    let r = c
        .post(
            "/api/credentials",
            &json!({"name":"dev","kind":"password","secret":sshd::PASSWORD,"enable_secret":ENABLE_SECRET}),
        )
        .await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("id").to_string()
}

async fn session(
    c: &Client,
    name: &str,
    port: u16,
    user: &str,
    device_type: &str,
    cred: &str,
) -> String {
    let r = c
        .post(
            "/api/sessions",
            &json!({"folder":"lab","display_name":name,"host":"127.0.0.1","port":port,
                    "username":user,"device_type":device_type,"credential_id":cred}),
        )
        .await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("id").to_string()
}

/// Trusts the sshd's host key in the admin's personal workspace through an `ssh`
/// channel as the plain test user (which runs /bin/sh, not the fake device).
async fn trust(s: &Server, c: &Client, port: u16) {
    let pw = c
        .post(
            "/api/credentials",
            &json!({"name":"plain","kind":"password","secret":sshd::PASSWORD}),
        )
        .await
        .json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut w = connect(s, c.cookie.as_deref().expect("cookie")).await;
    w.send_json(
        json!({"type":"open","ch":1,"kind":"ssh","host":"127.0.0.1","port":port,
                       "username":sshd::USER,"credential_id":pw,"cols":80,"rows":24}),
    )
    .await;
    match w
        .expect_control(|f| {
            matches!(
                f,
                ServerFrame::Hostkey { .. }
                    | ServerFrame::Opened { .. }
                    | ServerFrame::Error { .. }
            )
        })
        .await
    {
        ServerFrame::Hostkey { .. } => {
            w.send_json(json!({"type":"hostkey_accept","ch":1})).await;
            w.expect_opened(1).await;
        }
        ServerFrame::Opened { .. } => {}
        other => panic!("trusting failed: {other:?}"),
    }
    w.close().await;
}

async fn run_job(c: &Client, body: Value) -> String {
    let r = c.post("/api/jobs", &body).await;
    r.assert_status(202);
    r.json()["id"].as_str().expect("id").to_string()
}

async fn wait_job(c: &Client, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let j = c.get(&format!("/api/jobs/{id}")).await.json();
        if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(Instant::now() < deadline, "job did not finish: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn backup_twice_is_one_version_and_a_change_diffs_exactly() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    let ios = session(&admin, "rtr1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    let junos = session(
        &admin,
        "mx1",
        d.sshd.port,
        JUNOS_USER,
        "juniper_junos",
        &cred,
    )
    .await;

    let body = json!({"type":"config_backup","targets":[ios, junos]});
    let id = run_job(&admin, body.clone()).await;
    let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    for t in j["targets"].as_array().expect("targets") {
        assert_eq!(t["state"], "succeeded", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
        assert_eq!(t["changed"], true, "{t}");
        assert!(t["duration_ms"].as_u64().is_some(), "{t}");
    }
    let versions = admin
        .get(&format!("/api/configs?session_id={ios}"))
        .await
        .json();
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    let v1 = versions[0]["id"].as_str().expect("id").to_string();
    let text = admin.get(&format!("/api/configs/{v1}")).await.json()["text"]
        .as_str()
        .expect("text")
        .to_string();
    // The whole config through the --More-- pager (paging was disabled... or paged
    // through), without the volatile lines, the echo, the prompt or \r.
    assert!(text.contains("hostname rtr1\n"), "{text}");
    assert!(
        text.contains("line vty 0 4\n transport input ssh\n"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("end"), "{text}");
    for gone in [
        "Building configuration",
        "Current configuration",
        "Last configuration change",
        "ntp clock-period",
        "rtr1#",
        "show running",
        "\r",
        "More",
    ] {
        assert!(!text.contains(gone), "{gone:?} in {text}");
    }
    let jv = admin
        .get(&format!("/api/configs?session_id={junos}"))
        .await
        .json();
    let jtext = admin
        .get(&format!(
            "/api/configs/{}",
            jv[0]["id"].as_str().expect("id")
        ))
        .await
        .json()["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(jtext.starts_with("hostname rtr1\n"), "{jtext}");
    assert!(!jtext.contains("Last commit"), "{jtext}");

    // Again, unchanged: no new version, but checked.
    let id = run_job(&admin, body.clone()).await;
    let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["targets"][0]["changed"], false, "{j}");
    let versions = admin
        .get(&format!("/api/configs?session_id={ios}"))
        .await
        .json();
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");

    // A real change: a second version whose diff is exactly that change.
    d.set_config(&CONFIG_V1.replace("vlan 321\n name users", "vlan 322\n name users"));
    let id = run_job(&admin, json!({"type":"config_backup","targets":[ios]})).await;
    let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
    assert_eq!(j["targets"][0]["changed"], true, "{j}");
    let versions = admin
        .get(&format!("/api/configs?session_id={ios}"))
        .await
        .json();
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");
    let v2 = versions[0]["id"].as_str().expect("id").to_string();
    let diff = admin
        .get(&format!("/api/configs/diff?from={v1}&to={v2}"))
        .await;
    diff.assert_status(200);
    let diff = diff.json();
    assert_eq!(diff["stats"], json!({"added":1,"removed":1}), "{diff}");
    let unified = diff["unified"].as_str().expect("unified");
    assert!(unified.contains("-vlan 321\n+vlan 322\n"), "{unified}");
    let changed: Vec<&Value> = diff["hunks"][0]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["tag"] != "equal")
        .collect();
    assert_eq!(changed.len(), 2, "{diff}");
    assert_eq!(changed[0]["old_line"], changed[1]["new_line"], "{diff}");

    // Across devices: refused unless asked for.
    let jid = jv[0]["id"].as_str().expect("id");
    admin
        .get(&format!("/api/configs/diff?from={v2}&to={jid}"))
        .await
        .assert_error(400, Some("cross_device_diff"));
    admin
        .get(&format!(
            "/api/configs/diff?from={v2}&to={jid}&allow_cross=true"
        ))
        .await
        .assert_status(200);

    // Search the latest configs: only the Junos box still has vlan 321.
    let found = admin.get("/api/configs/search?q=vlan%20321").await.json();
    let results = found["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{found}");
    assert_eq!(found["truncated"], false, "{found}");
    assert_eq!(results[0]["session_id"], junos.as_str(), "{found}");
    assert!(
        results[0]["matches"][0]["line"].as_u64().is_some(),
        "{found}"
    );
    let re = admin
        .get("/api/configs/search?q=%5Evlan%20(321%7C322)%24&regex=true")
        .await
        .json();
    assert_eq!(re["results"].as_array().map(Vec::len), Some(2), "{re}");
    admin
        .get("/api/configs/search?q=(unclosed&regex=true")
        .await
        .assert_error(400, Some("invalid_query"));

    // A command job collects each target's output.
    let id = run_job(
        &admin,
        json!({"type":"command","targets":[ios],"commands":["show running-config"]}),
    )
    .await;
    let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
    let out = j["targets"][0]["output"][0]["output"]
        .as_str()
        .expect("output");
    assert!(out.contains("vlan 322"), "{j}");
}

#[tokio::test]
async fn fleet_progress_retries_hostkeys_and_cancel() {
    let d = Devices::start();
    let untrusted = Sshd::start_with_users(SshdOptions::default(), &[IOS_USER]);
    let (s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    // 48 reachable devices, a closed port and an untrusted host key: 50 targets.
    let mut targets = Vec::new();
    for i in 0..FLEET - 2 {
        targets.push(
            session(
                &admin,
                &format!("sw{i}"),
                d.sshd.port,
                IOS_USER,
                "cisco_ios",
                &cred,
            )
            .await,
        );
    }
    let closed_port = common::free_port();
    let closed = session(&admin, "dead", closed_port, IOS_USER, "cisco_ios", &cred).await;
    let unknown = session(&admin, "new", untrusted.port, IOS_USER, "cisco_ios", &cred).await;
    let mut all = targets.clone();
    all.push(closed.clone());
    all.push(unknown.clone());

    let id = run_job(
        &admin,
        json!({"type":"config_backup","targets":all,"concurrency":8}),
    )
    .await;
    // Watch it on a job channel.
    let mut w = connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":7,"kind":"job","job_id":id}))
        .await;
    w.expect_opened(7).await;
    let exit = w
        .expect_control(|f| matches!(f, ServerFrame::Exit { ch: 7, .. }))
        .await;
    assert!(
        matches!(exit, ServerFrame::Exit { code: Some(1), .. }),
        "{exit:?}"
    );
    let progress: Vec<serde_json::Map<String, Value>> = w
        .controls
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Progress { ch: 7, event } => Some(event.clone()),
            _ => None,
        })
        .collect();
    let last_summary = progress
        .iter()
        .rev()
        .find(|e| e.get("event") == Some(&json!("job")))
        .expect("job summary");
    assert_eq!(last_summary["state"], "failed", "{last_summary:?}");
    assert_eq!(
        last_summary["summary"],
        json!({"total":50,"queued":0,"running":0,"retrying":0,"succeeded":48,"failed":2,"cancelled":0})
    );
    let retrying: Vec<_> = progress
        .iter()
        .filter(|e| {
            e.get("session_id") == Some(&json!(closed))
                && e.get("state") == Some(&json!("retrying"))
        })
        .collect();
    // (The first retry may fall before the channel subscribed; replay keeps the latest.)
    assert!(!retrying.is_empty(), "retries are reported: {progress:?}");
    for t in &targets {
        assert!(
            progress
                .iter()
                .any(|e| e.get("session_id") == Some(&json!(t))
                    && e.get("state") == Some(&json!("succeeded"))),
            "no succeeded event for {t}"
        );
    }

    let j = admin.get(&format!("/api/jobs/{id}")).await.json();
    let by = |sid: &str| {
        j["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["session_id"] == sid)
            .cloned()
            .expect("target")
    };
    let c = by(&closed);
    assert_eq!(c["state"], "failed", "{c}");
    assert_eq!(c["attempts"], 3, "{c}");
    assert_eq!(c["error"]["code"], "connect_refused", "{c}");
    let u = by(&unknown);
    assert_eq!(u["error"]["code"], "hostkey_unknown", "{u}");
    assert_eq!(u["attempts"], 1, "no retry for host keys: {u}");
    // Never trusted silently.
    let hosts = admin.get("/api/known-hosts").await.json();
    assert_eq!(hosts.as_array().map(Vec::len), Some(1), "{hosts}");

    // A late socket gets the current state of every target first.
    w.send_json(json!({"type":"open","ch":8,"kind":"job","job_id":id}))
        .await;
    w.expect_opened(8).await;
    w.expect_control(|f| matches!(f, ServerFrame::Exit { ch: 8, .. }))
        .await;
    let replayed = w
        .controls
        .iter()
        .filter(
            |f| matches!(f, ServerFrame::Progress { ch: 8, event } if event["event"] == "target"),
        )
        .count();
    assert_eq!(replayed, 50);

    // Listing filters by state and type.
    let list = admin
        .get("/api/jobs?state=failed&type=config_backup")
        .await
        .json();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(
        admin.get("/api/jobs?state=succeeded").await.json()["total"],
        0
    );

    // Cancel midway: slow devices, concurrency 2.
    d.set_delay(1.5);
    let id = run_job(
        &admin,
        json!({"type":"config_backup","targets":targets,"concurrency":2}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = Instant::now();
    admin
        .post(&format!("/api/jobs/{id}/cancel"), &json!({}))
        .await
        .assert_status(202);
    let j = wait_job(&admin, &id, Duration::from_secs(10)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        asked.elapsed()
    );
    assert_eq!(j["state"], "cancelled", "{j}");
    let cancelled = j["summary"]["cancelled"].as_u64().unwrap_or(0);
    assert!(cancelled >= 40, "{j}");
    let sum = &j["summary"];
    assert_eq!(
        sum["succeeded"].as_u64().unwrap_or(0) + cancelled,
        48,
        "every target is succeeded or cancelled: {j}"
    );
    admin
        .post(&format!("/api/jobs/{id}/cancel"), &json!({}))
        .await
        .assert_error(409, Some("job_finished"));
}

#[tokio::test]
async fn a_killed_gateway_finishes_the_remaining_targets_once() {
    let d = Devices::start();
    let (mut s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    // 50 targets, each on its own device account: the fixture's login log says how
    // many times each target ran.
    let mut targets = Vec::new();
    for i in 0..FLEET {
        targets.push(
            session(
                &admin,
                &format!("sw{i}"),
                d.sshd.port,
                &fleet_user(i),
                "cisco_ios",
                &cred,
            )
            .await,
        );
    }
    d.set_delay(0.3);
    let concurrency = 4;
    let id = run_job(
        &admin,
        json!({"type":"config_backup","targets":targets,"concurrency":concurrency}),
    )
    .await;
    // Let some finish, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = admin.get(&format!("/api/jobs/{id}")).await.json();
        if j["summary"]["succeeded"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill9();
    let at_kill = d.logins_by_user();
    let started_at_kill: usize = at_kill.values().sum();
    assert!(
        started_at_kill < FLEET,
        "the job must still be running at the kill ({started_at_kill} logins)"
    );
    s.start_again().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let j = wait_job(&admin, &id, Duration::from_secs(90)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["summary"]["succeeded"], FLEET, "{j}");
    let after = d.logins_by_user();
    let mut rerun = 0;
    for i in 0..FLEET {
        let u = fleet_user(i);
        let (before, total) = (
            at_kill.get(&u).copied().unwrap_or(0),
            after.get(&u).copied().unwrap_or(0),
        );
        if before == 0 {
            // Not started before the kill: run exactly once after the restart.
            assert_eq!(total, 1, "{u}: {total} logins, none before the kill");
        } else {
            // Started before the kill: done then (1), or cut off mid-backup and run
            // again once (2) — never more.
            assert!((1..=2).contains(&total), "{u}: {total} logins");
            assert_eq!(before, 1, "{u}: {before} logins before the kill");
            if total == 2 {
                rerun += 1;
            }
        }
    }
    assert!(
        rerun <= concurrency,
        "{rerun} targets ran twice; at most the {concurrency} in flight at the kill may"
    );
    for t in &targets {
        let v = admin
            .get(&format!("/api/configs?session_id={t}"))
            .await
            .json();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    }
}

#[tokio::test]
async fn bad_job_requests_are_refused() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    let cred = credential(&admin).await;
    let mine = session(&admin, "rtr1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    admin
        .post("/api/jobs", &json!({"type":"reboot","targets":[mine]}))
        .await
        .assert_error(400, Some("invalid_job_type"));
    admin
        .post("/api/jobs", &json!({"type":"config_backup","targets":[]}))
        .await
        .assert_error(400, Some("invalid_targets"));
    admin
        .post("/api/jobs", &json!({"type":"command","targets":[mine]}))
        .await
        .assert_error(400, Some("invalid_commands"));
    admin
        .post(
            "/api/jobs",
            &json!({"type":"config_backup","targets":["nope"]}),
        )
        .await
        .assert_error(404, Some("not_found"));
    // Another user's saved session is as unknown as a made-up id.
    admin
        .post(
            "/api/users",
            &json!({"username":"bob","password":"bob-password-123","role":"operator"}),
        )
        .await
        .assert_status(201);
    let bob = s.login("bob", "bob-password-123").await;
    bob.post(
        "/api/jobs",
        &json!({"type":"config_backup","targets":[mine]}),
    )
    .await
    .assert_error(404, Some("not_found"));
    bob.get("/api/jobs/whatever")
        .await
        .assert_error(404, Some("not_found"));
    // A job of admin's (its host key is not trusted: it fails at once, never asking).
    let id = run_job(&admin, json!({"type":"config_backup","targets":[mine]})).await;
    let j = wait_job(&admin, &id, Duration::from_secs(30)).await;
    assert_eq!(j["targets"][0]["error"]["code"], "hostkey_unknown", "{j}");
    bob.get(&format!("/api/jobs/{id}"))
        .await
        .assert_error(404, Some("not_found"));
    bob.get(&format!("/api/configs?session_id={mine}"))
        .await
        .assert_status(200);
    assert_eq!(bob.get("/api/jobs").await.json()["total"], 0);
    // Nor can bob watch it on a job channel.
    let mut w = connect(&s, bob.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":3,"kind":"job","job_id":id}))
        .await;
    w.expect_error(Some(3), "not_found").await;
    // Viewers watch but do not start jobs.
    admin
        .post(
            "/api/users",
            &json!({"username":"vic","password":"vic-password-123","role":"viewer"}),
        )
        .await
        .assert_status(201);
    let vic = s.login("vic", "vic-password-123").await;
    vic.post("/api/jobs", &json!({"type":"config_backup","targets":[]}))
        .await
        .assert_error(403, Some("forbidden"));
}

#[tokio::test]
async fn schedules_and_statistics() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    let ios = session(&admin, "rtr1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    let job = json!({"type":"config_backup","targets":[ios]});
    for (cron, why) in [
        ("0 2 * *", "fields"),
        ("0 2 * * * *", "fields"),
        ("61 2 * * *", "cron"),
        ("every day", "fields"),
    ] {
        let msg = admin
            .post(
                "/api/schedules",
                &json!({"name":"nightly","cron":cron,"job":job}),
            )
            .await
            .assert_error(400, Some("invalid_schedule"));
        assert!(msg.contains(why), "{cron}: {msg}");
    }
    let msg = admin
        .post(
            "/api/schedules",
            &json!({"name":"n","cron":"0 2 * * *","timezone":"Mars/Olympus","job":job}),
        )
        .await
        .assert_error(400, Some("invalid_schedule"));
    assert!(msg.contains("IANA"), "{msg}");
    // An IANA zone: 09:00 in Berlin is 07:00 or 08:00 UTC depending on the season.
    let r = admin
        .post(
            "/api/schedules",
            &json!({"name":"berlin","cron":"0 9 * * *","timezone":"Europe/Berlin","job":job,"enabled":false}),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.json()["timezone"], "Europe/Berlin");
    let berlin = r.json()["id"].as_str().expect("id").to_string();
    let r = admin
        .put(
            &format!("/api/schedules/{berlin}"),
            &json!({"name":"berlin","cron":"0 9 * * *","timezone":"Europe/Berlin","job":job,"enabled":true}),
        )
        .await;
    r.assert_status(200);
    let h = r.json()["next_run"].as_i64().expect("next_run") % 86_400 / 3600;
    assert!(h == 7 || h == 8, "{}", r.json());
    admin
        .delete(&format!("/api/schedules/{berlin}"))
        .await
        .assert_status(204);
    admin
        .post("/api/schedules", &json!({"name":"n","cron":"0 2 * * *","job":{"type":"config_backup","targets":["nope"]}}))
        .await
        .assert_error(404, Some("not_found"));
    let r = admin
        .post(
            "/api/schedules",
            &json!({"name":"nightly","cron":"0 2 * * *","timezone":"+02:00","job":job}),
        )
        .await;
    r.assert_status(201);
    let sched = r.json();
    let id = sched["id"].as_str().expect("id").to_string();
    let next = sched["next_run"].as_i64().expect("next_run");
    // 02:00 at +02:00 is 00:00 UTC.
    assert_eq!(next % 86_400, 0, "{sched}");
    assert!(sched["last_run"].is_null(), "{sched}");

    let r = admin
        .post(&format!("/api/schedules/{id}/run-now"), &json!({}))
        .await;
    r.assert_status(202);
    let job_id = r.json()["id"].as_str().expect("id").to_string();
    let j = wait_job(&admin, &job_id, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["schedule_id"], id.as_str(), "{j}");
    let list = admin.get("/api/schedules").await.json();
    assert_eq!(list[0]["last_job_id"], job_id.as_str(), "{list}");
    assert!(list[0]["last_run"].as_i64().is_some(), "{list}");

    let r = admin
        .put(
            &format!("/api/schedules/{id}"),
            &json!({"name":"n2","cron":"30 3 * * 1","job":job,"enabled":false}),
        )
        .await;
    r.assert_status(200);
    assert!(r.json()["next_run"].is_null(), "disabled: {}", r.json());

    let st = admin.get("/api/statistics").await.json();
    assert_eq!(st["devices"]["total"], 1, "{st}");
    assert_eq!(st["devices"]["by_type"]["cisco_ios"], 1, "{st}");
    assert_eq!(st["devices"]["by_folder"]["lab"], 1, "{st}");
    assert_eq!(st["backups"]["last_24h"]["succeeded"], 1, "{st}");
    assert_eq!(st["configs_changed_24h"], 1, "{st}");
    assert_eq!(st["storage"]["config_versions"], 1, "{st}");
    assert_eq!(st["jobs_by_state"]["succeeded"], 1, "{st}");
    assert_eq!(
        st["stale_devices"].as_array().map(Vec::len),
        Some(0),
        "{st}"
    );

    admin
        .delete(&format!("/api/schedules/{id}"))
        .await
        .assert_status(204);
    admin
        .delete(&format!("/api/schedules/{id}"))
        .await
        .assert_error(404, Some("not_found"));
}

/// Backs up `session` twice: the first backup stores a version, the second finds the
/// config unchanged. Returns the one stored text.
async fn backup_twice(admin: &Client, session: &str) -> String {
    let body = json!({"type":"config_backup","targets":[session]});
    for round in 0..2 {
        let id = run_job(admin, body.clone()).await;
        let j = wait_job(admin, &id, Duration::from_secs(60)).await;
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["targets"][0]["changed"], round == 0, "round {round}: {j}");
    }
    let versions = admin
        .get(&format!("/api/configs?session_id={session}"))
        .await
        .json();
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    admin
        .get(&format!(
            "/api/configs/{}",
            versions[0]["id"].as_str().expect("id")
        ))
        .await
        .json()["text"]
        .as_str()
        .expect("text")
        .to_string()
}

#[tokio::test]
async fn arista_eos_config_is_cleaned() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    let eos = session(&admin, "leaf1", d.sshd.port, EOS_USER, "arista_eos", &cred).await;
    let text = backup_twice(&admin, &eos).await;
    assert!(
        text.starts_with("!\n! boot system flash:/vEOS-lab.swi\n"),
        "{text}"
    );
    assert!(text.contains("hostname rtr1\n"), "{text}");
    assert!(text.trim_end().ends_with("end"), "{text}");
    for gone in [
        "! Command:",
        "! device:",
        "! Time:",
        "Startup-config last modified",
        "rtr1#",
        "\r",
    ] {
        assert!(!text.contains(gone), "{gone:?} in {text}");
    }
}

/// A config in other scripts than ASCII: long lines of multi-byte characters, so the
/// device's output reaches the gateway in SSH packets that split characters. It is stored
/// exactly, and a second backup of the same device finds it unchanged.
#[tokio::test]
async fn a_config_in_utf8_is_stored_whole_and_unchanged_the_second_time() {
    let d = Devices::start();
    let mut config = String::from("hostname rtr1\n!\n");
    for i in 0..8 {
        config.push_str(&format!(
            "interface GigabitEthernet0/{i}\n description Übergang zur Zentrale {}\n!\n",
            "✓–€→".repeat(500 + i)
        ));
    }
    config.push_str("line vty 0 4\n transport input ssh\n!");
    d.set_config(&config);
    let (s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    let ios = session(&admin, "rtr1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    let text = backup_twice(&admin, &ios).await;
    assert!(!text.contains('\u{fffd}'), "a character was split: {text}");
    assert!(
        text.contains(&format!("!\n{config}\nend")),
        "stored:\n{text}"
    );
}

/// What a loopback webhook receiver saw.
#[derive(Default)]
struct Hooks {
    /// (headers, body) of each request to `/ok`.
    ok: Vec<(axum::http::HeaderMap, Vec<u8>)>,
    /// Requests to `/fail` (answered 500) and `/stall` (never answered in time).
    fail: usize,
    stall: usize,
}

/// A webhook receiver on 127.0.0.1 inside the test process: `/ok` records and answers
/// 204, `/fail` answers 500, `/stall` waits 30 s before answering.
async fn hook_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Hooks>>) {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Hooks::default()));
    let (a, b, c) = (seen.clone(), seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/ok",
            post(
                move |h: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    a.lock().expect("lock").ok.push((h, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/fail",
            post(move || async move {
                b.lock().expect("lock").fail += 1;
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/stall",
            post(move || async move {
                c.lock().expect("lock").stall += 1;
                tokio::time::sleep(Duration::from_secs(30)).await;
                axum::http::StatusCode::NO_CONTENT
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, seen)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn webhooks_retry_and_job_metrics() {
    const SECRET: &str = "hook-secret-1";
    let (port, hooks) = hook_receiver().await;
    let d = Devices::start();
    let cfg = format!(
        "{JOBS_CONFIG}\n[jobs.webhooks]\nurls = [\"http://127.0.0.1:{port}/ok\", \"http://127.0.0.1:{port}/fail\", \"http://127.0.0.1:{port}/stall\"]\nsecret = \"{SECRET}\"\ntimeout_ms = 400\nretries = 2\nretry_base_ms = 100\n"
    );
    let (s, admin, cred) = ready(&d, &cfg).await;
    let ios = session(&admin, "rtr1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    let closed = session(
        &admin,
        "dead",
        common::free_port(),
        IOS_USER,
        "cisco_ios",
        &cred,
    )
    .await;

    // A failed job (one target on a closed port): job.failed. The first backup of
    // rtr1 is not a change.
    let failed = run_job(
        &admin,
        json!({"type":"config_backup","targets":[ios, closed]}),
    )
    .await;
    let j = wait_job(&admin, &failed, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "failed", "{j}");
    // A changed config: config.changed. The stalled and failing receivers do not slow
    // the job: it is done long before their deliveries give up.
    d.set_config(&CONFIG_V1.replace("vlan 400", "vlan 401"));
    let changed = run_job(&admin, json!({"type":"config_backup","targets":[ios]})).await;
    let j = wait_job(&admin, &changed, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["targets"][0]["changed"], true, "{j}");

    // Both events arrive, signed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.lock().expect("lock").ok.len() < 2 {
        assert!(Instant::now() < deadline, "webhooks did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<Value> = {
        let h = hooks.lock().expect("lock");
        h.ok.iter()
            .map(|(headers, body)| {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
                let want = format!("sha256={}", hex::encode(ring::hmac::sign(&key, body)));
                assert_eq!(
                    headers
                        .get("x-opsgate-signature")
                        .and_then(|v| v.to_str().ok()),
                    Some(want.as_str())
                );
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/json")
                );
                serde_json::from_slice(body).expect("json body")
            })
            .collect()
    };
    let failed_ev = events
        .iter()
        .find(|e| e["event"] == "job.failed")
        .expect("job.failed");
    assert_eq!(failed_ev["job_id"], failed.as_str(), "{failed_ev}");
    assert_eq!(failed_ev["summary"]["failed"], 1, "{failed_ev}");
    assert_eq!(failed_ev["failed"][0]["session_id"], closed.as_str());
    assert_eq!(
        failed_ev["failed"][0]["error"]["code"], "connect_refused",
        "{failed_ev}"
    );
    assert_eq!(failed_ev["owner"], ADMIN, "{failed_ev}");
    assert!(failed_ev["timestamp"].as_i64().is_some(), "{failed_ev}");
    let changed_ev = events
        .iter()
        .find(|e| e["event"] == "config.changed")
        .expect("config.changed");
    assert_eq!(changed_ev["job_id"], changed.as_str(), "{changed_ev}");
    assert_eq!(changed_ev["session_id"], ios.as_str(), "{changed_ev}");
    let versions = admin
        .get(&format!("/api/configs?session_id={ios}"))
        .await
        .json();
    assert_eq!(changed_ev["config_id"], versions[0]["id"], "{changed_ev}");
    assert_eq!(
        changed_ev["previous_config_id"], versions[1]["id"],
        "{changed_ev}"
    );

    // The failing and the stalled receiver: each event tried 1 + 2 times, then given up
    // (counted and audited), never more.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let m = admin.get("/metrics").await.text();
        if metric(&m, "opsgate_webhook_deliveries_total{result=\"failed\"}") >= 4 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not give up:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    {
        let h = hooks.lock().expect("lock");
        assert_eq!(h.fail, 6, "2 events x 3 attempts to /fail");
        assert_eq!(h.stall, 6, "2 events x 3 attempts to /stall");
        assert_eq!(h.ok.len(), 2, "each event once to /ok");
    }
    assert_eq!(
        metric(
            &text,
            "opsgate_webhook_deliveries_total{result=\"delivered\"}"
        ),
        2
    );
    assert_eq!(
        metric(&text, "opsgate_webhook_deliveries_total{result=\"failed\"}"),
        4
    );
    assert_eq!(metric(&text, "opsgate_webhook_retries_total"), 8);
    assert_eq!(
        metric(&text, "opsgate_jobs_finished_total{state=\"failed\"}"),
        1
    );
    assert_eq!(
        metric(&text, "opsgate_jobs_finished_total{state=\"succeeded\"}"),
        1
    );
    assert_eq!(
        metric(&text, "opsgate_job_targets_total{state=\"succeeded\"}"),
        2
    );
    assert_eq!(
        metric(&text, "opsgate_job_targets_total{state=\"failed\"}"),
        1
    );
    assert_eq!(metric(&text, "opsgate_job_target_retries_total"), 2);
    assert_eq!(metric(&text, "opsgate_jobs_running"), 0);
    let audit = admin.get("/api/audit?limit=500").await.text();
    assert_eq!(audit.matches("\"webhook.delivered\"").count(), 2, "{audit}");
    assert_eq!(audit.matches("\"webhook.failed\"").count(), 4, "{audit}");
    // The audit names the receiver's origin, not a path that may hold a token.
    assert!(!audit.contains("/stall"), "{audit}");

    // Retry: a new job of the same type over the failed target only.
    let r = admin
        .post(&format!("/api/jobs/{failed}/retry"), &json!({}))
        .await;
    r.assert_status(202);
    let retry = r.json()["id"].as_str().expect("id").to_string();
    assert_ne!(retry, failed);
    let j = wait_job(&admin, &retry, Duration::from_secs(60)).await;
    assert_eq!(j["type"], "config_backup", "{j}");
    assert_eq!(j["retry_of"], failed.as_str(), "{j}");
    assert_eq!(j["targets"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(j["targets"][0]["session_id"], closed.as_str(), "{j}");
    let m = admin.get("/metrics").await.text();
    assert_eq!(metric(&m, "opsgate_job_retries_total"), 1);
    // Nothing failed in a succeeded job; unknown and invisible jobs are 404.
    admin
        .post(&format!("/api/jobs/{changed}/retry"), &json!({}))
        .await
        .assert_error(409, Some("nothing_to_retry"));
    admin
        .post("/api/jobs/nope/retry", &json!({}))
        .await
        .assert_error(404, Some("not_found"));
    admin
        .post(
            "/api/users",
            &json!({"username":"vic","password":"vic-password-123","role":"viewer"}),
        )
        .await
        .assert_status(201);
    let vic = s.login("vic", "vic-password-123").await;
    vic.post(&format!("/api/jobs/{failed}/retry"), &json!({}))
        .await
        .assert_error(403, Some("forbidden"));
    // A command job's retry keeps its commands; one whose failed session is gone has
    // nothing left to retry.
    let cmd = run_job(
        &admin,
        json!({"type":"command","targets":[ios, closed],"commands":["show clock"]}),
    )
    .await;
    wait_job(&admin, &cmd, Duration::from_secs(60)).await;
    let r = admin
        .post(&format!("/api/jobs/{cmd}/retry"), &json!({}))
        .await;
    r.assert_status(202);
    let again = r.json()["id"].as_str().expect("id").to_string();
    let j = admin.get(&format!("/api/jobs/{again}")).await.json();
    assert_eq!(j["type"], "command", "{j}");
    assert_eq!(j["commands"], json!(["show clock"]), "{j}");
    wait_job(&admin, &again, Duration::from_secs(60)).await;
    admin
        .delete(&format!("/api/sessions/{closed}"))
        .await
        .assert_status(204);
    admin
        .post(&format!("/api/jobs/{cmd}/retry"), &json!({}))
        .await
        .assert_error(409, Some("nothing_to_retry"));
}

#[tokio::test]
async fn deleting_a_team_counts_and_cascades_its_jobs_configs_and_schedules() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    let r = admin.post("/api/teams", &json!({"name":"NOC"})).await;
    r.assert_status(201);
    let team = r.json()["id"].as_str().expect("id").to_string();
    let at = |p: &str| {
        let sep = if p.contains('?') { '&' } else { '?' };
        format!("{p}{sep}workspace={team}")
    };
    admin
        .put(
            &format!("/api/teams/{team}/members/{ADMIN}"),
            &json!({"role":"admin"}),
        )
        .await
        .assert_status(200);
    let r = admin
        .post(
            &at("/api/credentials"),
            &json!({"name":"dev","kind":"password","secret":sshd::PASSWORD,"enable_secret":ENABLE_SECRET}),
        )
        .await;
    r.assert_status(201);
    let cred = r.json()["id"].as_str().expect("id").to_string();
    let new_session = |name: &str, user: &str| {
        json!({"folder":"lab","display_name":name,"host":"127.0.0.1","port":d.sshd.port,
               "username":user,"device_type":"cisco_ios","credential_id":cred})
    };
    // The team's known host, trusted through a terminal on a team session.
    let r = admin
        .post(&at("/api/sessions"), &new_session("shell", sshd::USER))
        .await;
    r.assert_status(201);
    let shell = r.json()["id"].as_str().expect("id").to_string();
    let mut w = connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":1,"kind":"ssh","session_id":shell,"cols":80,"rows":24}))
        .await;
    w.expect_control(|f| matches!(f, ServerFrame::Hostkey { .. }))
        .await;
    w.send_json(json!({"type":"hostkey_accept","ch":1})).await;
    w.expect_opened(1).await;
    w.close().await;
    let r = admin
        .post(&at("/api/sessions"), &new_session("rtr1", IOS_USER))
        .await;
    r.assert_status(201);
    let ios = r.json()["id"].as_str().expect("id").to_string();
    let r = admin
        .post(
            &at("/api/jobs"),
            &json!({"type":"config_backup","targets":[ios]}),
        )
        .await;
    r.assert_status(202);
    let job = r.json()["id"].as_str().expect("id").to_string();
    let j = wait_job(&admin, &at(&job), Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    admin
        .post(
            &at("/api/schedules"),
            &json!({"name":"nightly","cron":"0 2 * * *","timezone":"Europe/Berlin",
                    "job":{"type":"config_backup","targets":[ios]}}),
        )
        .await
        .assert_status(201);

    let msg = admin
        .delete(&format!("/api/teams/{team}"))
        .await
        .assert_error(409, Some("team_not_empty"));
    for what in [
        "2 saved sessions",
        "1 credentials",
        "1 known hosts",
        "1 jobs",
        "1 config versions",
        "1 schedules",
    ] {
        assert!(msg.contains(what), "{what:?} not in {msg}");
    }
    admin
        .delete(&format!("/api/teams/{team}?cascade=true"))
        .await
        .assert_status(204);
    admin
        .get(&at("/api/jobs"))
        .await
        .assert_error(404, Some("not_found"));
    let audit = admin.get("/api/audit?limit=50").await.text();
    assert!(
        audit.contains("2 saved sessions") && audit.contains("1 config versions"),
        "{audit}"
    );

    // Nothing of the team's workspace is left in the database.
    let mut s = s;
    s.stop();
    let db = redb::Database::open(s.data_dir().join("opsgate.redb")).expect("open db");
    let tx = redb::ReadableDatabase::begin_read(&db).expect("read");
    let key = opsgate::workspace::team_key(&team);
    for def in [
        opsgate::store::FOLDERS,
        opsgate::store::SAVED_SESSIONS,
        opsgate::store::CREDENTIALS,
        opsgate::store::KNOWN_HOSTS,
        opsgate::store::JOBS,
        opsgate::store::JOB_TARGETS,
        opsgate::store::CONFIG_VERSIONS,
        opsgate::store::SCHEDULES,
        opsgate::store::EXECUTIONS,
    ] {
        let Ok(table) = tx.open_table(def) else {
            continue;
        };
        let n = opsgate::store::count_owned(&table, &key).expect("count");
        assert_eq!(n, 0, "{} rows left in {}", n, redb::TableHandle::name(&def));
    }
}

#[tokio::test]
async fn a_targets_output_is_bounded_over_all_its_commands() {
    let d = Devices::start();
    // A debug build on a busy machine reads 34 MB through russh slowly: a generous
    // command timeout, so only the output bound can fail the target.
    let (_s, admin, cred) = ready(&d, "[jobs]\nretries = 0\ncommand_timeout_secs = 300\n").await;
    let box1 = session(&admin, "box1", d.sshd.port, sshd::USER, "linux", &cred).await;
    // 17 MB each: each command is under the 32 MiB bound, the two together are not.
    let id = run_job(
        &admin,
        json!({"type":"command","targets":[box1],"commands":[
            "head -c 17000000 /dev/zero | tr '\\0' x",
            "head -c 17000000 /dev/zero | tr '\\0' y"]}),
    )
    .await;
    let j = wait_job(&admin, &id, Duration::from_secs(600)).await;
    let t = &j["targets"][0];
    assert_eq!(t["state"], "failed", "{}", t["state"]);
    assert_eq!(t["error"]["code"], "output_too_large", "{}", t["error"]);
}

/// Running targets share `[jobs] output_budget_mib`: the first to find it spent goes on
/// beyond it (one overdraft at a time, so they never all wait on each other), the next
/// waits until another's output is stored, and no target may print more than the whole
/// budget.
#[tokio::test]
async fn running_targets_share_the_output_budget() {
    let d = Devices::start();
    let (_s, admin, cred) = ready(
        &d,
        "[jobs]\nretries = 0\ncommand_timeout_secs = 60\noutput_budget_mib = 1\n",
    )
    .await;
    let box1 = session(&admin, "box1", d.sshd.port, sshd::USER, "linux", &cred).await;
    let wait_for = |what: &'static str, name: &'static str, at_least: u64| {
        let admin = &admin;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let m = admin.get("/metrics").await.text();
                if metric(&m, name) >= at_least {
                    return;
                }
                assert!(Instant::now() < deadline, "{what}:\n{m}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let job = |ch: char, then: &str| {
        json!({"type":"command","targets":[box1],"commands":[
            format!("head -c 700000 /dev/zero | tr '\\0' {ch}{then}")]})
    };

    // A: 700 KB, then it keeps its command open for a while.
    let a = run_job(&admin, job('a', "; sleep 3")).await;
    wait_for(
        "A holds its output",
        "opsgate_job_output_held_bytes",
        700_000,
    )
    .await;
    // B: 700 KB more do not fit beside A's: B overdraws.
    let b = run_job(&admin, job('b', "; sleep 3")).await;
    wait_for(
        "B finds the budget spent",
        "opsgate_job_output_waits_total",
        1,
    )
    .await;
    // C: no budget and no overdraft left: C waits for A or B.
    let c = run_job(&admin, job('c', "")).await;
    wait_for("C waits", "opsgate_job_output_waits_total", 2).await;
    let jc = admin.get(&format!("/api/jobs/{c}")).await.json();
    assert_eq!(jc["state"], "running", "{jc}");
    let mut finished = Vec::new();
    for (id, ch) in [(&a, 'a'), (&b, 'b'), (&c, 'c')] {
        let j = wait_job(&admin, id, Duration::from_secs(120)).await;
        assert_eq!(j["state"], "succeeded", "{j}");
        let out = j["targets"][0]["output"][0]["output"]
            .as_str()
            .expect("output");
        assert_eq!(out.len(), 700_000, "{ch}");
        assert!(out.chars().all(|x| x == ch), "{ch}");
        finished.push(j["finished_at"].as_i64().expect("finished_at"));
    }
    assert!(
        finished[2] >= finished[0].min(finished[1]),
        "C finished before A and B: {finished:?}"
    );
    // More than the whole budget from one target: refused, and every share given back.
    let big = run_job(
        &admin,
        json!({"type":"command","targets":[box1],"commands":[
            "head -c 1100000 /dev/zero | tr '\\0' x"]}),
    )
    .await;
    let j = wait_job(&admin, &big, Duration::from_secs(120)).await;
    assert_eq!(j["targets"][0]["error"]["code"], "output_too_large", "{j}");
    let m = admin.get("/metrics").await.text();
    assert_eq!(metric(&m, "opsgate_job_output_held_bytes"), 0);
}

/// A workspace's queued and running jobs are bounded in number and in targets named
/// (`[jobs] max_live_jobs`, `max_live_targets`), also against a burst of submissions.
#[tokio::test]
async fn a_workspace_holds_at_most_max_live_jobs_and_targets() {
    let d = Devices::start();
    let (_s, admin, cred) = ready(
        &d,
        "[jobs]\nretries = 0\nmax_live_jobs = 2\nmax_live_targets = 3\n",
    )
    .await;
    let mut boxes = Vec::new();
    for i in 0..6 {
        boxes.push(
            session(
                &admin,
                &format!("box{i}"),
                d.sshd.port,
                sshd::USER,
                "linux",
                &cred,
            )
            .await,
        );
    }
    let sleeper =
        |targets: &[String]| json!({"type":"command","targets":targets,"commands":["sleep 2"]});
    // Six at once, one target each: two get in.
    let bodies: Vec<Value> = boxes
        .iter()
        .map(|b| sleeper(std::slice::from_ref(b)))
        .collect();
    let burst =
        futures_util::future::join_all(bodies.iter().map(|b| admin.post("/api/jobs", b))).await;
    let mut started = Vec::new();
    for r in &burst {
        if r.status == 202u16 {
            started.push(r.json()["id"].as_str().expect("id").to_string());
        } else {
            let msg = r.assert_error(409, Some("limit_reached"));
            assert!(msg.contains("max_live_jobs"), "{msg}");
        }
    }
    assert_eq!(started.len(), 2, "accepted of six at once");
    for id in &started {
        let j = wait_job(&admin, id, Duration::from_secs(60)).await;
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    // Room again: two targets live, then two more would make four of three.
    let two = run_job(&admin, sleeper(&boxes[0..2])).await;
    let msg = admin
        .post("/api/jobs", &sleeper(&boxes[2..4]))
        .await
        .assert_error(409, Some("limit_reached"));
    assert!(msg.contains("max_live_targets"), "{msg}");
    let one = run_job(&admin, sleeper(&boxes[2..3])).await;
    for id in [two, one] {
        let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
        assert_eq!(j["state"], "succeeded", "{j}");
    }
}

#[tokio::test]
async fn a_workspace_holds_at_most_max_schedules() {
    let s = Server::start(ServerOptions::default().config("[jobs]\nmax_schedules = 2\n")).await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let cred = credential(&admin).await;
    let r1 = session(&admin, "r1", 22, IOS_USER, "cisco_ios", &cred).await;
    let body = json!({"name":"n","cron":"0 2 * * *","enabled":false,
                      "job":{"type":"config_backup","targets":[r1]}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = admin.post("/api/schedules", &body).await;
        r.assert_status(201);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    let msg = admin
        .post("/api/schedules", &body)
        .await
        .assert_error(409, Some("limit_reached"));
    assert!(msg.contains("max_schedules"), "{msg}");
    admin
        .delete(&format!("/api/schedules/{}", ids[0]))
        .await
        .assert_status(204);
    admin.post("/api/schedules", &body).await.assert_status(201);
}

#[tokio::test]
async fn a_user_whose_job_is_running_is_not_deleted_under_it() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    admin.create_user("ann", "ann-password-1", "operator").await;
    let ann = s.login("ann", "ann-password-1").await;
    trust(&s, &ann, d.sshd.port).await;
    let cred = credential(&ann).await;
    let r1 = session(&ann, "r1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    // A slow device keeps the backup running while the admin tries to delete ann.
    d.set_delay(2.0);
    let id = run_job(&ann, json!({"type":"config_backup","targets":[r1]})).await;
    admin
        .delete("/api/users/ann")
        .await
        .assert_error(409, Some("user_busy"));
    let j = wait_job(&ann, &id, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    admin.delete("/api/users/ann").await.assert_status(204);
}

/// The job's owner task keeps no output in memory once a target's row holds it, so a
/// running job costs its targets' states, not what its devices printed; reading the
/// job while it runs still shows every finished target's output (from its row), and a
/// listing shows the states.
#[tokio::test]
async fn a_running_jobs_finished_outputs_come_from_their_rows() {
    let d = Devices::start();
    let (s, admin) = setup().await;
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    let box1 = session(&admin, "box1", d.sshd.port, sshd::USER, "linux", &cred).await;
    let box2 = session(&admin, "box2", d.sshd.port, sshd::USER, "linux", &cred).await;
    let id = run_job(
        &admin,
        json!({"type":"command","targets":[box1, box2],"concurrency":1,
               "commands":["printf 'out-%s\\n' 42; sleep 4"]}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let j = admin.get(&format!("/api/jobs/{id}")).await.json();
        let done: Vec<&Value> = j["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| t["state"] == "succeeded")
            .collect();
        if j["state"] == "running" && done.len() == 1 {
            break done[0].clone();
        }
        assert!(
            j["state"] == "running" || j["state"] == "queued",
            "the job ended before it was seen half done: {j}"
        );
        assert!(Instant::now() < deadline, "no target finished: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = seen["output"][0]["output"].as_str().unwrap_or_default();
    assert!(out.contains("out-42"), "{seen}");
    let list = admin.get("/api/jobs").await.json();
    let item = &list["jobs"][0];
    assert_eq!(item["id"], id.as_str(), "{list}");
    assert_eq!(item["summary"]["succeeded"], 1, "{list}");
    let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    for t in j["targets"].as_array().expect("targets") {
        let out = t["output"][0]["output"].as_str().unwrap_or_default();
        assert!(out.contains("out-42"), "{t}");
    }
}

/// A workspace keeps its newest `[jobs] keep_jobs` finished jobs: older ones go (with
/// their outputs) at start and every ten minutes; the list and a job's page agree.
#[tokio::test]
async fn finished_jobs_beyond_keep_jobs_are_removed() {
    let mut s =
        Server::start(ServerOptions::default().config("[jobs]\nretries = 0\nkeep_jobs = 2\n"))
            .await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let d = Devices::start();
    trust(&s, &admin, d.sshd.port).await;
    let cred = credential(&admin).await;
    // One good backup first: its job will be removed, its device must not look stale.
    let r1 = session(&admin, "r1", d.sshd.port, IOS_USER, "cisco_ios", &cred).await;
    let first = run_job(&admin, json!({"type":"config_backup","targets":[r1]})).await;
    let j = wait_job(&admin, &first, Duration::from_secs(60)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    // Nothing listens there: each backup fails at once with connect_refused.
    let dead = session(
        &admin,
        "dead",
        common::free_port(),
        IOS_USER,
        "cisco_ios",
        &cred,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = run_job(&admin, json!({"type":"config_backup","targets":[dead]})).await;
        let j = wait_job(&admin, &id, Duration::from_secs(60)).await;
        assert_eq!(j["state"], "failed", "{j}");
        ids.push(id);
        // Distinct creation seconds, so "newest" is not decided by the id alone.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    s.restart().await;
    let admin = s.login(ADMIN, ADMIN_PASSWORD).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = admin.get("/api/jobs").await.json();
        if list["total"] == 2 {
            let kept: Vec<&str> = list["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .filter_map(|j| j["id"].as_str())
                .collect();
            assert_eq!(kept, [ids[3].as_str(), ids[2].as_str()], "{list}");
            assert_eq!(list["jobs"][0]["summary"]["failed"], 1, "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "old jobs stayed: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin
        .get(&format!("/api/jobs/{}", ids[0]))
        .await
        .assert_error(404, Some("not_found"));
    let j = admin.get(&format!("/api/jobs/{}", ids[3])).await.json();
    assert_eq!(j["targets"][0]["error"]["code"], "connect_refused", "{j}");
    admin
        .get(&format!("/api/jobs/{first}"))
        .await
        .assert_error(404, Some("not_found"));
    // r1's last good backup is known from its config version: only "dead" is stale.
    let st = admin.get("/api/statistics").await.json();
    let stale: Vec<&str> = st["stale_devices"]
        .as_array()
        .expect("stale")
        .iter()
        .filter_map(|d| d["display_name"].as_str())
        .collect();
    assert_eq!(stale, ["dead"], "{st}");
}
