//! Servers, projects and apps against a real sshd. No Docker engine runs here: the
//! sshd's test account (`ogt-apps`) has a login shell that puts a stand-in `docker`,
//! `docker-compose` and `systemctl` (tests/fixtures/apps_standin.py) first on PATH;
//! the stand-in logs its exact argv and working directory and simulates compose state.

mod common;
mod sshd;
mod ws;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use opsgate_protocol::ServerFrame;
use serde_json::{json, Value};
use sshd::{Sshd, SshdOptions};
use ws::connect;

const APPS_USER: &str = "ogt-apps";
const LIB: &str = "/usr/local/lib/opsgate-test";
const FIXTURES: &str = "/tmp/opsgate-apps";
/// Fast sweeps and manual checks that always connect; `[apps]` keys a test adds follow.
const APPS_CONFIG: &str =
    "[apps]\ncheck_min_interval_secs = 0\nsweep_interval_secs = 1\npoll_timeout_secs = 5\n";

fn chmod(mode: &str, p: &Path) {
    Command::new("chmod")
        .arg(mode)
        .arg(p)
        .status()
        .expect("chmod");
}

/// Installs the stand-ins, the PATH-setting login shell and the account (once).
fn ensure_account() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bin = PathBuf::from(LIB).join("apps-bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        chmod("755", Path::new(LIB));
        chmod("755", &bin);
        let standin = bin.join("standin.py");
        std::fs::copy(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apps_standin.py"),
            &standin,
        )
        .expect("copy stand-in");
        chmod("755", &standin);
        for name in ["docker", "docker-compose", "systemctl"] {
            let link = bin.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&standin, &link).expect("symlink");
        }
        // sshd runs `<shell> -c <command>` for an exec request: this shell puts the
        // stand-ins first on PATH and hands the command to /bin/sh unchanged.
        let shell = PathBuf::from(LIB).join("apps_shell.sh");
        std::fs::write(
            &shell,
            format!(
                "#!/bin/sh\nPATH={}:/usr/local/bin:/usr/bin:/bin\nexport PATH\nexec /bin/sh \"$@\"\n",
                bin.display()
            ),
        )
        .expect("shell");
        chmod("755", &shell);
        let exists = Command::new("id")
            .arg(APPS_USER)
            .output()
            .expect("id")
            .status
            .success();
        if !exists {
            let _ = Command::new("useradd")
                .args(["-m", "-s"])
                .arg(&shell)
                .arg(APPS_USER)
                .status();
        }
        let _ = Command::new("usermod")
            .arg("-s")
            .arg(&shell)
            .arg(APPS_USER)
            .status();
        let mut c = Command::new("chpasswd")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        c.stdin
            .take()
            .expect("stdin")
            .write_all(format!("{APPS_USER}:{}\n", sshd::PASSWORD).as_bytes())
            .expect("write");
        assert!(c.wait().expect("wait").success());
        std::fs::create_dir_all(FIXTURES).expect("fixtures");
        chmod("1777", Path::new(FIXTURES));
    });
}

/// An sshd for the apps account, with its fixture directory.
struct Host {
    sshd: Sshd,
    fixture: PathBuf,
}

impl Host {
    fn start() -> Host {
        ensure_account();
        let sshd = Sshd::start_with_users(SshdOptions::default(), &[APPS_USER]);
        let fixture = PathBuf::from(FIXTURES).join(sshd.port.to_string());
        let _ = std::fs::remove_dir_all(&fixture);
        std::fs::create_dir_all(&fixture).expect("fixture");
        chmod("777", &fixture);
        Host { sshd, fixture }
    }

    /// A directory on the "server" (made world-writable for the account).
    fn dir(&self, name: &str) -> String {
        let p = self.fixture.join(name);
        std::fs::create_dir_all(&p).expect("app dir");
        chmod("777", &p);
        p.display().to_string()
    }

    fn set(&self, switch: &str, text: &str) {
        let p = self.fixture.join(switch);
        std::fs::write(&p, text).expect("switch");
        chmod("666", &p);
    }

    fn unset(&self, switch: &str) {
        let _ = std::fs::remove_file(self.fixture.join(switch));
    }

    /// The stand-ins' calls: (argv, cwd).
    fn calls(&self) -> Vec<(Vec<String>, String)> {
        std::fs::read_to_string(self.fixture.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("log line");
                let argv = v["argv"]
                    .as_array()
                    .expect("argv")
                    .iter()
                    .map(|a| a.as_str().expect("arg").to_string())
                    .collect();
                (argv, v["cwd"].as_str().expect("cwd").to_string())
            })
            .collect()
    }

    /// The calls with exactly `argv`, as their working directories.
    fn dirs_of(&self, argv: &[&str]) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|(a, _)| a.iter().map(String::as_str).eq(argv.iter().copied()))
            .map(|(_, d)| d)
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.fixture);
    }
}

/// A gateway with a credential, a trusted server and a project in the admin's
/// personal workspace.
struct Env {
    host: Host,
    server: Server,
    admin: Client,
    server_id: String,
    project_id: String,
    cred: String,
}

async fn env(extra_config: &str) -> Env {
    let host = Host::start();
    // The background poller is off unless a test turns it on.
    let poll = if extra_config.contains("poll_interval_secs") {
        ""
    } else {
        "poll_interval_secs = 0\n"
    };
    let server = Server::start(
        ServerOptions::default()
            .config(APPS_CONFIG)
            .config(poll)
            .config(extra_config),
    )
    .await;
    let admin = server.login(ADMIN, ADMIN_PASSWORD).await;
    let cred = admin.password_credential(sshd::PASSWORD).await;
    // Trust the host key once, as a user would, through a terminal.
    let mut w = connect(&server, admin.cookie.as_deref().expect("cookie")).await;
    w.open_ssh_trusting(1, host.sshd.port, APPS_USER, &cred)
        .await;
    w.close().await;
    let s = admin
        .create_session(
            &json!({"folder":"servers","display_name":"stage1","host":"127.0.0.1",
            "port":host.sshd.port,"username":APPS_USER,"device_type":"linux","credential_id":cred}),
        )
        .await;
    let p = admin
        .post(
            "/api/projects",
            &json!({"name":"staging","description":"the staging stacks"}),
        )
        .await;
    p.assert_status(201);
    Env {
        server_id: s["id"].as_str().expect("id").to_string(),
        project_id: p.json()["id"].as_str().expect("id").to_string(),
        host,
        server,
        admin,
        cred,
    }
}

impl Env {
    async fn app(&self, name: &str, cd_path: &str, extra: Value) -> String {
        let mut body = json!({"name":name,"project_id":self.project_id,"server_id":self.server_id,
            "cd_path":cd_path});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self.admin.post("/api/apps", &body).await;
        r.assert_status(201);
        assert_eq!(r.json()["status"], "stopped");
        r.json()["id"].as_str().expect("id").to_string()
    }

    async fn wait_status(&self, id: &str, status: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let a = self.admin.get(&format!("/api/apps/{id}")).await.json();
            if a["status"] == status {
                return a;
            }
            assert!(Instant::now() < deadline, "app never became {status}: {a}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = self.admin.get(&format!("/api/jobs/{id}")).await.json();
            if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or("")) {
                return j;
            }
            assert!(Instant::now() < deadline, "job did not finish: {j}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        let a = self.admin.get("/api/audit?limit=1000").await.json();
        a["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or("").to_string(),
                    e["detail"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

const WAIT: Duration = Duration::from_secs(30);

fn no_marker_anywhere(env: &Env, name: &str) {
    let home = PathBuf::from(format!("/home/{APPS_USER}"));
    for dir in [
        env.host.fixture.clone(),
        home,
        PathBuf::from("/"),
        PathBuf::from("/tmp"),
    ] {
        assert!(!dir.join(name).exists(), "{name} appeared in {dir:?}");
    }
    let hits: Vec<_> = common::all_files(&env.host.fixture)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|f| f == name))
        .collect();
    assert!(hits.is_empty(), "marker files: {hits:?}");
}

#[tokio::test]
async fn start_and_stop_reach_cd_verbatim_with_live_output() {
    let env = env("").await;
    let port = env.host.sshd.port;
    let marker = format!("opsgate-marker-{port}");
    // Spaces, both quotes, `;`, `$(…)` and backticks: all must reach `cd` as one word.
    let nasty = env.host.dir(&format!(
        "my app's \"stack\"; echo pwned $(touch {marker}) `touch {marker}`"
    ));
    let id = env
        .app("web", &nasty, json!({"auto_stop_minutes": 0}))
        .await;
    // Progress lines of multi-byte characters, longer than one output event (4 KiB) and
    // than an SSH packet: the live events split them, and must not split a character.
    let progress: String = (0..40)
        .map(|i| format!(" ✔ Layer {i:02} pulled {}\n", "█▓▒░".repeat(40 + i)))
        .collect();
    env.host.set("progress", &progress);

    let r = env
        .admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await;
    r.assert_status(202);
    let job_id = r.json()["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(r.json()["id"], job_id.as_str());
    assert_eq!(r.json()["app"]["status"], "starting");
    // Follow the job's output live on a `job` channel.
    let mut w = connect(&env.server, env.admin.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":5,"kind":"job","job_id":job_id}))
        .await;
    let mut seen = String::new();
    w.pump_until(|w| {
        w.controls
            .iter()
            .any(|f| matches!(f, ServerFrame::Exit { ch: 5, .. }))
    })
    .await;
    for f in &w.controls {
        if let ServerFrame::Progress { ch: 5, event } = f {
            if event["event"] == "output" {
                seen.push_str(event["data"].as_str().unwrap_or(""));
            }
        }
    }
    assert!(
        seen.contains("Container web-1  Started"),
        "channel output: {seen:?}"
    );
    assert!(
        !seen.contains('\u{fffd}'),
        "a character was split: {seen:?}"
    );
    assert!(seen.starts_with(&progress), "channel output: {seen:?}");
    w.close().await;

    let a = env.wait_status(&id, "running", WAIT).await;
    assert!(a["started_at"].as_i64().is_some(), "{a}");
    assert!(a["auto_stop_at"].is_null(), "{a}");
    let job = env.job(&job_id).await;
    assert_eq!(job["type"], "app_start", "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    let out = job["targets"][0]["output"][0]["output"]
        .as_str()
        .unwrap_or("");
    assert!(out.contains("Container db-1  Started"), "{job}");

    assert_eq!(
        env.host.dirs_of(&["docker", "compose", "up", "-d"]),
        vec![nasty.clone()]
    );
    assert_eq!(
        env.host.dirs_of(&["docker", "compose", "version"]),
        vec![nasty.clone()]
    );
    no_marker_anywhere(&env, &marker);

    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_error(409, Some("app_running"));
    // Where it runs cannot change while it runs.
    env.admin
        .put(
            &format!("/api/apps/{id}"),
            &json!({"name":"web","project_id":env.project_id,
            "server_id":env.server_id,"cd_path":"/srv/elsewhere"}),
        )
        .await
        .assert_error(409, Some("app_running"));
    env.admin
        .delete(&format!("/api/apps/{id}"))
        .await
        .assert_error(409, Some("app_running"));

    let r = env
        .admin
        .post(&format!("/api/apps/{id}/stop"), &json!({}))
        .await;
    r.assert_status(202);
    let stop_job = r.json()["job_id"].as_str().expect("job").to_string();
    let a = env.wait_status(&id, "stopped", WAIT).await;
    assert!(a["stopped_at"].as_i64().is_some(), "{a}");
    assert_eq!(env.job(&stop_job).await["type"], "app_stop");
    assert_eq!(
        env.host.dirs_of(&["docker", "compose", "down"]),
        vec![nasty.clone()]
    );
    env.admin
        .post(&format!("/api/apps/{id}/stop"), &json!({}))
        .await
        .assert_error(409, Some("app_stopped"));

    // Without the compose plugin the standalone docker-compose runs, in the same place.
    env.host.set("no_plugin", "");
    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_status(202);
    env.wait_status(&id, "running", WAIT).await;
    assert_eq!(
        env.host.dirs_of(&["docker-compose", "up", "-d"]),
        vec![nasty.clone()]
    );
    env.host.unset("no_plugin");
    no_marker_anywhere(&env, &marker);

    let actions = env.audit_actions().await;
    for a in ["app.create", "app.start", "app.stop"] {
        assert!(
            actions.iter().any(|(x, _)| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

#[tokio::test]
async fn racing_starts_make_one_run_and_a_failure_keeps_its_output() {
    let env = env("").await;
    let dir = env.host.dir("race");
    let id = env.app("race", &dir, json!({})).await;
    env.host.set("delay", "1");
    let url = format!("/api/apps/{id}/start");
    let empty = json!({});
    let attempts = (0..6).map(|_| env.admin.post(&url, &empty));
    let results = futures_util::future::join_all(attempts).await;
    let accepted = results.iter().filter(|r| r.status == 202).count();
    assert_eq!(accepted, 1, "exactly one start is accepted");
    for r in results.iter().filter(|r| r.status != 202) {
        r.assert_error(409, None);
        let code = r.json()["error"]["code"].as_str().unwrap_or("").to_string();
        assert!(code == "app_busy" || code == "app_running", "{code}");
    }
    env.wait_status(&id, "running", WAIT).await;
    env.host.unset("delay");
    assert_eq!(
        env.host.dirs_of(&["docker", "compose", "up", "-d"]).len(),
        1
    );

    // A compose failure: the app is failed with the command's own words.
    let broken = env.host.dir("broken");
    let bid = env.app("broken", &broken, json!({})).await;
    env.host.set(
        "fail",
        "Error response from daemon: pull access denied for ghcr.io/acme/web\n",
    );
    let r = env
        .admin
        .post(&format!("/api/apps/{bid}/start"), &json!({}))
        .await;
    r.assert_status(202);
    let job_id = r.json()["job_id"].as_str().expect("job").to_string();
    let a = env.wait_status(&bid, "failed", WAIT).await;
    let err = a["last_error"].as_str().unwrap_or("");
    assert!(err.contains("command_failed"), "{a}");
    assert!(
        err.contains("pull access denied for ghcr.io/acme/web"),
        "{a}"
    );
    let job = env.job(&job_id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["targets"][0]["error"]["code"], "command_failed",
        "{job}"
    );
    assert!(
        job["targets"][0]["output"][0]["output"]
            .as_str()
            .unwrap_or("")
            .contains("pull access denied"),
        "{job}"
    );
    let actions = env.audit_actions().await;
    assert!(
        actions
            .iter()
            .any(|(a, d)| a == "app.failed" && d.contains("broken")),
        "{actions:?}"
    );
    // A failed app may be started again (and stopped).
    env.host.unset("fail");
    env.admin
        .post(&format!("/api/apps/{bid}/start"), &json!({}))
        .await
        .assert_status(202);
    env.wait_status(&bid, "running", WAIT).await;
}

#[tokio::test]
async fn systemd_apps_validation_projects_and_roles() {
    let env = env("").await;
    let id = env
        .app("svc", "", json!({"kind":"systemd","unit":"web@1.service"}))
        .await;
    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_status(202);
    env.wait_status(&id, "running", WAIT).await;
    assert_eq!(
        env.host
            .calls()
            .into_iter()
            .filter(|(a, _)| a[0] == "systemctl")
            .map(|(a, _)| a)
            .collect::<Vec<_>>(),
        vec![vec!["systemctl", "start", "web@1.service"]]
    );

    // Validation: nothing is stored for a bad body.
    let base = json!({"name":"x","project_id":env.project_id,"server_id":env.server_id});
    let with = |extra: Value| {
        let mut b = base.clone();
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        b
    };
    for (body, code) in [
        (with(json!({"cd_path":"relative/dir"})), "invalid_cd_path"),
        (
            with(json!({"cd_path":"/srv/a\nrm -rf /"})),
            "invalid_cd_path",
        ),
        (with(json!({})), "invalid_cd_path"),
        (
            with(json!({"cd_path":format!("/{}", "a".repeat(2000))})),
            "invalid_cd_path",
        ),
        (
            with(json!({"kind":"systemd","unit":"a;reboot"})),
            "invalid_unit",
        ),
        (
            with(json!({"kind":"systemd","unit":"-H evil"})),
            "invalid_unit",
        ),
        (with(json!({"kind":"systemd"})), "invalid_unit"),
        (with(json!({"cd_path":"/srv","unit":"x"})), "invalid_unit"),
        (
            with(json!({"cd_path":"/srv","auto_stop_minutes":99_999_999})),
            "invalid_auto_stop",
        ),
        (
            with(json!({"cd_path":"/srv","app_url":"javascript:alert(1)"})),
            "invalid_app_url",
        ),
        (with(json!({"cd_path":"/srv","name":""})), "invalid_name"),
    ] {
        env.admin
            .post("/api/apps", &body)
            .await
            .assert_error(400, Some(code));
    }
    env.admin
        .post(
            "/api/apps",
            &with(json!({"cd_path":"/srv","project_id":"0123abcd"})),
        )
        .await
        .assert_error(404, Some("not_found"));
    // A non-linux saved session is no server.
    let router = env
        .admin
        .create_session(
            &json!({"display_name":"rtr","host":"127.0.0.1","port":22,"device_type":"cisco_ios"}),
        )
        .await;
    env.admin
        .post(
            "/api/apps",
            &with(json!({"cd_path":"/srv","server_id":router["id"]})),
        )
        .await
        .assert_error(400, Some("invalid_server"));
    let servers = env.admin.get("/api/servers").await.json();
    assert_eq!(
        servers["servers"].as_array().map(Vec::len),
        Some(1),
        "{servers}"
    );
    env.admin
        .post(&format!("/api/apps/{id}/extend"), &json!({"minutes": 0}))
        .await
        .assert_error(400, Some("invalid_minutes"));
    env.admin
        .post(&format!("/api/apps/{id}/extend"), &json!({"minutes": 5}))
        .await
        .assert_error(409, Some("auto_stop_off"));
    assert_eq!(
        env.admin.get("/api/apps").await.json()["apps"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A project with apps goes only with cascade, and not while one runs.
    env.admin
        .delete(&format!("/api/projects/{}", env.project_id))
        .await
        .assert_error(409, Some("project_not_empty"));
    env.admin
        .delete(&format!("/api/projects/{}?cascade=true", env.project_id))
        .await
        .assert_error(409, Some("app_running"));
    env.admin
        .post(&format!("/api/apps/{id}/stop"), &json!({}))
        .await
        .assert_status(202);
    env.wait_status(&id, "stopped", WAIT).await;
    assert!(env
        .host
        .calls()
        .iter()
        .any(|(a, _)| a == &["systemctl", "stop", "web@1.service"]));
    let r = env
        .admin
        .delete(&format!("/api/projects/{}?cascade=true", env.project_id))
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["deleted_apps"], 1);
    assert_eq!(env.admin.get("/api/apps").await.json()["apps"], json!([]));

    // Team workspace: the viewer sees the app and its server, and cannot act.
    env.admin
        .create_user("vera", "vera-password-1", "viewer")
        .await;
    let team = env
        .admin
        .post("/api/teams", &json!({"name":"stage"}))
        .await
        .json();
    let tid = team["id"].as_str().expect("team").to_string();
    for (u, role) in [(ADMIN, "admin"), ("vera", "viewer")] {
        env.admin
            .put(
                &format!("/api/teams/{tid}/members/{u}"),
                &json!({"role":role}),
            )
            .await
            .assert_status(200);
    }
    let q = format!("?workspace={tid}");
    let tcred = env
        .admin
        .post(
            &format!("/api/credentials{q}"),
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD}),
        )
        .await
        .json()["id"]
        .as_str()
        .expect("cred")
        .to_string();
    let tsrv = env
        .admin
        .post(&format!("/api/sessions{q}"), &json!({"display_name":"t1","host":"127.0.0.1",
            "port":env.host.sshd.port,"username":APPS_USER,"device_type":"linux","credential_id":tcred}))
        .await
        .json()["id"]
        .as_str()
        .expect("session")
        .to_string();
    let tproj = env
        .admin
        .post(&format!("/api/projects{q}"), &json!({"name":"demo"}))
        .await
        .json()["id"]
        .as_str()
        .expect("project")
        .to_string();
    let tapp = env
        .admin
        .post(
            &format!("/api/apps{q}"),
            &json!({"name":"demo","project_id":tproj,
            "server_id":tsrv,"cd_path":"/srv/demo"}),
        )
        .await
        .json()["id"]
        .as_str()
        .expect("app")
        .to_string();
    let vera = env.server.login("vera", "vera-password-1").await;
    let seen = vera.get(&format!("/api/apps{q}")).await.json();
    assert_eq!(seen["apps"][0]["id"], tapp.as_str(), "{seen}");
    let srv = vera.get(&format!("/api/servers{q}")).await.json();
    assert_eq!(srv["servers"][0]["id"], tsrv.as_str(), "{srv}");
    vera.post(&format!("/api/apps/{tapp}/start{q}"), &json!({}))
        .await
        .assert_error(403, Some("forbidden"));
    vera.post(&format!("/api/projects{q}"), &json!({"name":"mine"}))
        .await
        .assert_error(403, Some("forbidden"));
    // Another workspace's app does not exist for the admin's personal one.
    env.admin
        .post(&format!("/api/apps/{tapp}/start"), &json!({}))
        .await
        .assert_error(404, Some("not_found"));
}

async fn metric(env: &Env, name: &str) -> u64 {
    let text = env.admin.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test]
async fn status_is_online_with_figures_then_offline_when_the_server_dies() {
    let mut env = env("").await;
    let dir = env.host.dir("stack");
    let id = env.app("stack", &dir, json!({})).await;
    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_status(202);
    env.wait_status(&id, "running", WAIT).await;
    let url = format!("/api/servers/{}/status", env.server_id);
    let s = env.admin.get(&url).await.json();
    assert_eq!(s["status"], "online", "{s}");
    assert_eq!(s["running_containers"], 2, "{s}");
    assert!(s["uptime"].as_u64().is_some_and(|u| u > 0), "{s}");
    assert_eq!(s["load"].as_array().map(Vec::len), Some(3), "{s}");
    assert!(s["last_checked"].as_i64().is_some(), "{s}");
    assert!(s["error"].is_null(), "{s}");
    // Checked again: the cached connection is reused (no second login); a changed
    // credential drops it (a new login).
    let s2 = env.admin.get(&url).await.json();
    assert_eq!(s2["status"], "online", "{s2}");
    assert_eq!(metric(&env, "opsgate_apps_poll_connects_total").await, 1);
    assert_eq!(
        metric(&env, "opsgate_apps_poll_cached_connections").await,
        1
    );
    env.admin
        .put(
            &format!("/api/credentials/{}", env.cred),
            &json!({"name":"pw","kind":"password","secret":sshd::PASSWORD}),
        )
        .await
        .assert_status(200);
    assert_eq!(env.admin.get(&url).await.json()["status"], "online");
    assert_eq!(metric(&env, "opsgate_apps_poll_connects_total").await, 2);
    let list = env.admin.get("/api/servers").await.json();
    assert_eq!(list["servers"][0]["status"], "online", "{list}");
    assert_eq!(list["servers"][0]["running_containers"], 2, "{list}");
    assert_eq!(list["servers"][0]["display_name"], "stage1", "{list}");

    // A server whose host key nobody trusted: offline with hostkey_unknown, and an app
    // there fails with it (never trusted silently).
    let other = Sshd::start_with_users(SshdOptions::default(), &[APPS_USER]);
    let untrusted = env
        .admin
        .create_session(
            &json!({"display_name":"new1","host":"127.0.0.1","port":other.port,
            "username":APPS_USER,"device_type":"linux","credential_id":env.cred}),
        )
        .await;
    let uid = untrusted["id"].as_str().expect("id");
    let s = env
        .admin
        .get(&format!("/api/servers/{uid}/status"))
        .await
        .json();
    assert_eq!(s["status"], "offline", "{s}");
    assert_eq!(s["error"]["code"], "hostkey_unknown", "{s}");
    let r = env
        .admin
        .post(
            "/api/apps",
            &json!({"name":"new","project_id":env.project_id,"server_id":uid,
            "cd_path":"/srv/new"}),
        )
        .await;
    r.assert_status(201);
    let nid = r.json()["id"].as_str().expect("id").to_string();
    env.admin
        .post(&format!("/api/apps/{nid}/start"), &json!({}))
        .await
        .assert_status(202);
    let a = env.wait_status(&nid, "failed", WAIT).await;
    assert!(
        a["last_error"]
            .as_str()
            .unwrap_or("")
            .starts_with("hostkey_unknown"),
        "{a}"
    );
    drop(other);

    env.host.sshd.kill();
    let s = env.admin.get(&url).await.json();
    assert_eq!(s["status"], "offline", "{s}");
    assert_eq!(s["error"]["code"], "connect_refused", "{s}");
    let list = env.admin.get("/api/servers").await.json();
    let stage1 = list["servers"]
        .as_array()
        .and_then(|v| v.iter().find(|s| s["id"] == env.server_id.as_str()))
        .expect("stage1 listed");
    assert_eq!(stage1["status"], "offline", "{list}");
    assert_eq!(stage1["error"]["code"], "connect_refused", "{list}");
    env.admin
        .get("/api/servers/0123456789abcdef/status")
        .await
        .assert_error(404, Some("not_found"));
    env.server.stop();
}

#[tokio::test]
async fn the_background_poller_marks_servers_online() {
    let env = env("poll_interval_secs = 1\n").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let list = env.admin.get("/api/servers").await.json();
        let s = &list["servers"][0];
        if s["status"] == "online" {
            assert_eq!(s["running_containers"], 0, "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "never online: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An app's auto-stop is housekeeping: it still stops the app when the user who started
/// it has since lost the right to start or stop apps (demoted to viewer).
#[tokio::test]
async fn auto_stop_fires_after_its_starter_is_demoted() {
    // One auto-stop "minute" lasts 2 s here.
    let env = env("auto_stop_minute_secs = 2\n").await;
    let dir = env.host.dir("demoted");
    let id = env
        .app("demoted", &dir, json!({"auto_stop_minutes": 1}))
        .await;
    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_status(202);
    env.wait_status(&id, "running", WAIT).await;
    env.admin
        .create_user("boss2", "boss2-password-1", "admin")
        .await;
    let boss2 = env.server.login("boss2", "boss2-password-1").await;
    boss2
        .put(&format!("/api/users/{ADMIN}"), &json!({"role": "viewer"}))
        .await
        .assert_status(200);
    // The demoted starter may no longer stop it by hand…
    env.admin
        .post(&format!("/api/apps/{id}/stop"), &json!({}))
        .await
        .assert_error(403, None);
    // …but its deadline still does.
    let a = env.wait_status(&id, "stopped", WAIT).await;
    assert!(a["auto_stop_at"].is_null(), "{a}");
    assert_eq!(
        env.host.dirs_of(&["docker", "compose", "down"]),
        vec![dir.clone()]
    );
}

#[tokio::test]
async fn auto_stop_fires_and_survives_a_restart() {
    // One auto-stop "minute" lasts 2 s here.
    let mut env = env("auto_stop_minute_secs = 2\n").await;
    let dir = env.host.dir("demo");
    let id = env.app("demo", &dir, json!({"auto_stop_minutes": 1})).await;
    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_status(202);
    let a = env.wait_status(&id, "running", WAIT).await;
    assert!(a["auto_stop_at"].as_i64().is_some(), "{a}");
    assert!(a["time_left_secs"].as_i64().is_some_and(|t| t <= 2), "{a}");
    let a = env.wait_status(&id, "stopped", WAIT).await;
    assert!(a["auto_stop_at"].is_null(), "{a}");
    assert_eq!(
        env.host.dirs_of(&["docker", "compose", "down"]),
        vec![dir.clone()]
    );
    let actions = env.audit_actions().await;
    assert!(
        actions
            .iter()
            .any(|(a, d)| a == "app.auto_stop" && d.contains("auto-stop after 1 min")),
        "{actions:?}"
    );

    // Extend pushes the deadline; a restart keeps it, and the sweeper acts after it.
    env.admin
        .post(&format!("/api/apps/{id}/start"), &json!({}))
        .await
        .assert_status(202);
    let before = env.wait_status(&id, "running", WAIT).await;
    let r = env
        .admin
        .post(&format!("/api/apps/{id}/extend"), &json!({"minutes": 3}))
        .await;
    r.assert_status(200);
    let after = r.json();
    assert!(
        after["auto_stop_at"].as_i64() >= before["auto_stop_at"].as_i64().map(|t| t + 6),
        "{before} {after}"
    );
    env.server.restart().await;
    let admin = env.server.login(ADMIN, ADMIN_PASSWORD).await;
    let a = admin.get(&format!("/api/apps/{id}")).await.json();
    assert_eq!(
        a["auto_stop_at"], after["auto_stop_at"],
        "deadline kept: {a}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let a = admin.get(&format!("/api/apps/{id}")).await.json();
        if a["status"] == "stopped" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not auto-stopped after restart: {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.host.dirs_of(&["docker", "compose", "down"]).len(), 2);
}
