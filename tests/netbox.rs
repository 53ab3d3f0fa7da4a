//! NetBox import (issue 15, NetBox part) against the real binary and a NetBox-shaped
//! server (`tests/fixtures/netbox_fixture.py`: 2,500 devices over 20 sites, NetBox 4
//! shapes, both token styles, paging capped at 1,000): the connection and its token's
//! secrecy, who may change it, search by each filter, import by site as one job,
//! re-import updating in place, refusals with reasons, dry runs, all-or-nothing, and the
//! failure modes (wrong token, a stalling server, 429 once).

mod common;
mod ws;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{files_containing, Client, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use opsgate_protocol::ServerFrame;
use serde_json::{json, Value};

const LEGACY_TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
const V2_TOKEN: &str = "nbt_opsgatetest.s3cretPart42";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/netbox_fixture.py"
);

/// The fixture server, killed on drop.
struct NetBox {
    child: Child,
    url: String,
}

impl NetBox {
    fn start(mode: &str) -> NetBox {
        let mut child = Command::new("python3")
            .args([FIXTURE, "--mode", mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the NetBox fixture (python3)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("fixture port");
        let port: u16 = line.trim().parse().expect("fixture printed its port");
        NetBox {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Calls a test hook of the fixture.
    async fn hook(&self, path: &str, body: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("fixture hook");
        assert!(r.status().is_success(), "hook {path}: {}", r.status());
    }

    async fn hits(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/_fixture/hits", self.url))
            .await
            .expect("hits")
            .json()
            .await
            .expect("hits json");
        v["hits"].as_u64().expect("hits")
    }
}

impl Drop for NetBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Short timeouts and retry delays so failure tests take seconds.
const TEST_CONFIG: &str =
    "[netbox]\nconnect_timeout_ms = 2000\nrequest_timeout_ms = 3000\nretry_base_ms = 50\n";

async fn setup() -> (Server, Client) {
    let s = Server::start(ServerOptions::default().config(TEST_CONFIG)).await;
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    (s, c)
}

async fn configure(c: &Client, nb: &NetBox, token: &str) -> Value {
    let r = c
        .put("/api/netbox", &json!({"url": nb.url, "token": token}))
        .await;
    r.assert_status(200);
    r.json()
}

async fn wait_job(c: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = c.get(&format!("/api/jobs/{id}")).await.json();
        if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(Instant::now() < deadline, "job did not finish: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a real import and waits for its job.
async fn import(c: &Client, body: Value) -> Value {
    let r = c.post("/api/netbox/import", &body).await;
    r.assert_status(202);
    let id = r.json()["id"].as_str().expect("job id").to_string();
    wait_job(c, &id).await
}

/// The import summary a finished job keeps as its target's output.
fn summary(job: &Value) -> Value {
    let text = job["targets"][0]["output"][0]["output"]
        .as_str()
        .unwrap_or_else(|| panic!("no summary: {job}"));
    serde_json::from_str(text).expect("summary json")
}

#[tokio::test]
async fn the_connection_is_tested_its_token_sealed_and_never_returned() {
    let nb = NetBox::start("ok");
    let (s, c) = setup().await;
    let v = c.get("/api/netbox").await.json();
    assert_eq!(v["configured"], false);

    // A wrong token is refused by NetBox and nothing is stored.
    let r = c
        .put(
            "/api/netbox",
            &json!({"url": nb.url, "token": "ffffffffffffffffffffffffffffffffffffffff"}),
        )
        .await;
    let msg = r.assert_error(502, Some("netbox_auth_failed"));
    assert!(msg.contains("401"), "{msg}");
    assert_eq!(c.get("/api/netbox").await.json()["configured"], false);
    // Not a token at all: refused before any request.
    c.put("/api/netbox", &json!({"url": nb.url, "token": "hunter2"}))
        .await
        .assert_error(400, Some("invalid_token"));

    // Both token styles work.
    let v = configure(&c, &nb, V2_TOKEN).await;
    assert_eq!(v["netbox_version"], "4.2.9-fixture");
    let v = configure(&c, &nb, LEGACY_TOKEN).await;
    assert_eq!(v["configured"], true);
    let got = c.get("/api/netbox").await;
    got.assert_status(200);
    let body = got.text();
    let v = got.json();
    assert_eq!(v["url"], format!("{}/", nb.url));
    assert_eq!(v["verify_tls"], true);
    assert_eq!(v["netbox_version"], "4.2.9-fixture");
    assert!(
        !body.contains(LEGACY_TOKEN) && !body.contains("token"),
        "{body}"
    );
    // Sealed at rest, absent from the logs.
    assert!(
        files_containing(s.data_dir(), LEGACY_TOKEN.as_bytes()).is_empty(),
        "the token is readable in the data directory"
    );
    assert!(
        !s.logs().contains(LEGACY_TOKEN),
        "the token reached the log"
    );
    // The stored token works for searches.
    c.get("/api/netbox/sites").await.assert_status(200);

    c.delete("/api/netbox").await.assert_status(204);
    assert_eq!(c.get("/api/netbox").await.json()["configured"], false);
    c.get("/api/netbox/sites")
        .await
        .assert_error(409, Some("netbox_not_configured"));
    c.delete("/api/netbox").await.assert_status(404);
}

#[tokio::test]
async fn viewers_read_only_and_other_workspaces_do_not_see_the_connection() {
    let nb = NetBox::start("ok");
    let (s, admin) = setup().await;
    for (name, role) in [("op", "operator"), ("vw", "viewer")] {
        admin
            .create_user(name, &format!("{name}-password-1"), role)
            .await;
    }
    let op = s.login("op", "op-password-1").await;
    let vw = s.login("vw", "vw-password-1").await;
    let team = admin.post("/api/teams", &json!({"name": "noc"})).await;
    team.assert_status(201);
    let team = team.json()["id"].as_str().expect("team").to_string();
    for (u, role) in [("op", "operator"), ("vw", "viewer")] {
        admin
            .put(
                &format!("/api/teams/{team}/members/{u}"),
                &json!({"role": role}),
            )
            .await
            .assert_status(200);
    }
    let at = |p: &str| format!("{p}?workspace={team}");

    // The operator sets the team's connection; the team's viewer reads it.
    op.put(
        &at("/api/netbox"),
        &json!({"url": nb.url, "token": LEGACY_TOKEN}),
    )
    .await
    .assert_status(200);
    assert_eq!(vw.get(&at("/api/netbox")).await.json()["configured"], true);
    vw.get(&at("/api/netbox/sites")).await.assert_status(200);
    // …but changes nothing.
    vw.put(
        &at("/api/netbox"),
        &json!({"url": nb.url, "token": LEGACY_TOKEN}),
    )
    .await
    .assert_error(403, None);
    vw.delete(&at("/api/netbox")).await.assert_error(403, None);
    vw.post(
        &at("/api/netbox/import"),
        &json!({"filters": {"site": "site-01"}, "dry_run": true}),
    )
    .await
    .assert_error(403, None);
    // A global viewer cannot set one in their personal workspace either.
    vw.put(
        "/api/netbox",
        &json!({"url": nb.url, "token": LEGACY_TOKEN}),
    )
    .await
    .assert_error(403, None);

    // Other workspaces do not see it: personal ones, and a global admin outside the team.
    for c in [&admin, &op, &vw] {
        assert_eq!(c.get("/api/netbox").await.json()["configured"], false);
    }
    admin
        .get(&at("/api/netbox"))
        .await
        .assert_error(404, Some("not_found"));
}

#[tokio::test]
async fn search_by_each_filter() {
    let nb = NetBox::start("ok");
    let (_s, c) = setup().await;
    configure(&c, &nb, V2_TOKEN).await;

    let sites = c.get("/api/netbox/sites").await.json();
    assert_eq!(sites["results"].as_array().map(Vec::len), Some(20));
    assert_eq!(sites["results"][0]["slug"], "site-01");
    let platforms = c.get("/api/netbox/platforms").await.json();
    assert_eq!(platforms["results"].as_array().map(Vec::len), Some(11));

    let count = |q: &str| {
        let c = &c;
        let q = q.to_string();
        async move {
            let r = c.get(&format!("/api/netbox/devices?{q}&limit=5")).await;
            r.assert_status(200);
            r.json()
        }
    };
    // Expected numbers follow the fixture's generator.
    for (q, n) in [
        ("site=site-03", 125),
        ("platform=nxos", 250),
        ("status=planned", 357),
        ("role=core", 833),
        ("tag=pci", 500),
        ("q=dev-0012", 10),
        ("site=site-01&platform=ios", 120),
    ] {
        let v = count(q).await;
        assert_eq!(v["count"], n, "{q}: {v}");
        assert_eq!(v["results"].as_array().map(Vec::len), Some(5), "{q}");
        assert_eq!(v["next_offset"], 5, "{q}");
    }
    // A row: no prefix length, tags by slug, importable with a reason when not.
    let v = c.get("/api/netbox/devices?q=dev-00100").await.json();
    let row = &v["results"][0];
    assert_eq!(row["id"], 100);
    assert_eq!(row["site"], "Site 20");
    assert_eq!(row["importable"], false);
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no primary IP")),
        "{row}"
    );
    let v = c.get("/api/netbox/devices?q=dev-00003").await.json();
    let row = &v["results"][0];
    assert_eq!(row["primary_ip"], "10.0.0.3");
    assert_eq!(row["platform"], "nxos");
    assert_eq!(row["role"], "core");
    assert_eq!(row["status"], "active");
    assert_eq!(row["tags"], json!(["lab"]));
    assert_eq!(row["importable"], true);
    assert!(row.get("reason").is_none());
    // The last page has no next offset; a bad slug is refused before NetBox is asked.
    let v = c
        .get("/api/netbox/devices?site=site-03&limit=100&offset=100")
        .await
        .json();
    assert_eq!(v["results"].as_array().map(Vec::len), Some(25));
    assert_eq!(v["next_offset"], Value::Null);
    c.get("/api/netbox/devices?site=a%26b%3Dc")
        .await
        .assert_error(400, Some("invalid_filter"));
}

#[tokio::test]
async fn import_by_site_dry_run_job_and_reimport_updates_in_place() {
    let nb = NetBox::start("ok");
    let (s, c) = setup().await;
    configure(&c, &nb, LEGACY_TOKEN).await;
    let site1 = json!({"filters": {"site": "site-01"}, "folder_by": "site"});

    // Dry run: what would happen, nothing changed.
    let mut dry = site1.clone();
    dry["dry_run"] = json!(true);
    let r = c.post("/api/netbox/import", &dry).await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["created"].as_array().map(Vec::len), Some(120), "{v}");
    assert_eq!(v["refused"].as_array().map(Vec::len), Some(5));
    assert!(v["refused"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("toaster-os")));
    assert!(
        c.all_sessions().await.is_empty(),
        "a dry run changed the inventory"
    );

    // The real run is a job, watched on a job channel.
    let r = c.post("/api/netbox/import", &site1).await;
    r.assert_status(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let mut w = ws::connect(&s, c.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":1,"kind":"job","job_id":id}))
        .await;
    w.expect_opened(1).await;
    let exit = w
        .expect_control(|f| matches!(f, ServerFrame::Exit { ch: 1, .. }))
        .await;
    assert!(
        matches!(exit, ServerFrame::Exit { code: Some(0), .. }),
        "{exit:?}"
    );
    let job = wait_job(&c, &id).await;
    assert_eq!(job["type"], "netbox_import");
    assert_eq!(job["state"], "succeeded", "{job}");
    // The jobs list filters by it like any other type.
    let listed = c.get("/api/jobs?type=netbox_import").await.json();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    assert_eq!(c.get("/api/jobs?type=command").await.json()["total"], 0);
    c.get("/api/jobs?type=nope").await.assert_status(400);
    let sum = summary(&job);
    assert_eq!(sum["created"], 120);
    assert_eq!(sum["refused"].as_array().map(Vec::len), Some(5));

    let list = c.list_sessions().await;
    let folders = list["folders"].as_array().expect("folders");
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0]["name"], "Site 01");
    let sessions = c.all_sessions().await;
    assert_eq!(sessions.len(), 120);
    let d1 = sessions
        .iter()
        .find(|s| s["netbox_id"] == 1)
        .expect("device 1")
        .clone();
    assert_eq!(d1["display_name"], "dev-00001");
    assert_eq!(d1["host"], "10.0.0.1");
    assert_eq!(d1["port"], 22);
    assert_eq!(d1["device_type"], "cisco_ios");
    assert_eq!(d1["tags"], json!(["lab", "role=access"]));
    // The operator attaches a credential and a username to an imported session.
    let cred = c.password_credential("pw-123456").await;
    let mut edited = d1.clone();
    for k in ["id", "created_at", "updated_at", "netbox_id"] {
        edited.as_object_mut().expect("obj").remove(k);
    }
    edited["credential_id"] = json!(cred);
    edited["username"] = json!("netops");
    c.put(
        &format!("/api/sessions/{}", d1["id"].as_str().expect("id")),
        &edited,
    )
    .await
    .assert_status(200);

    // NetBox changes: a rename, a new address, a port; the re-import updates in place.
    nb.hook(
        "/_fixture/device/1",
        json!({"name": "core-1", "ip4": "10.9.9.9/32", "ssh_port": 2022}),
    )
    .await;
    let job = import(&c, site1.clone()).await;
    let sum = summary(&job);
    assert_eq!(
        (sum["created"].as_u64(), sum["updated"].as_u64()),
        (Some(0), Some(120)),
        "{sum}"
    );
    let sessions = c.all_sessions().await;
    assert_eq!(sessions.len(), 120, "a re-import duplicated sessions");
    let d1b = sessions
        .iter()
        .find(|s| s["netbox_id"] == 1)
        .expect("device 1");
    assert_eq!(d1b["id"], d1["id"]);
    assert_eq!(d1b["display_name"], "core-1");
    assert_eq!(d1b["host"], "10.9.9.9");
    assert_eq!(d1b["port"], 2022);
    // What the operator attached stays.
    assert_eq!(d1b["credential_id"], cred.as_str());
    assert_eq!(d1b["username"], "netops");

    // Audited.
    let audit = c.get("/api/audit?limit=1000").await.json();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"netbox.import") && actions.contains(&"netbox.settings"));
}

#[tokio::test]
async fn every_device_in_one_go_refusals_with_reasons_and_by_id() {
    let nb = NetBox::start("ok");
    let (_s, c) = setup().await;
    configure(&c, &nb, V2_TOKEN).await;

    // By id: a device without a primary IP is refused with its reason…
    let r = c
        .post(
            "/api/netbox/import",
            &json!({"device_ids": [100, 25, 1], "dry_run": true, "folder_by": "none", "folder": "Imported"}),
        )
        .await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["created"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["refused"][0]["netbox_id"], 100);
    assert!(v["refused"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("no primary IP")));
    // …unless the name may serve as the host.
    let r = c
        .post(
            "/api/netbox/import",
            &json!({"device_ids": [100], "dry_run": true, "use_name_as_host": true}),
        )
        .await;
    assert_eq!(r.json()["created"].as_array().map(Vec::len), Some(1));

    // Everything: three pages of NetBox, one transaction.
    let started = Instant::now();
    let job = import(&c, json!({"filters": {}})).await;
    println!(
        "2,500-device import (debug build) took {:?}",
        started.elapsed()
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    let sum = summary(&job);
    // 25 without an IP, 10 on an unmapped platform.
    assert_eq!(sum["created"], 2465, "{sum}");
    assert_eq!(sum["refused"].as_array().map(Vec::len), Some(35));
    let list = c.list_sessions().await;
    assert_eq!(list["folders"].as_array().map(Vec::len), Some(20));
    let sessions = c.all_sessions().await;
    let v6 = sessions
        .iter()
        .find(|s| s["netbox_id"] == 25)
        .expect("IPv6-only device");
    assert_eq!(v6["host"], "2001:db8::19");
    let port = sessions
        .iter()
        .find(|s| s["netbox_id"] == 3)
        .expect("device 3");
    assert_eq!(port["port"], 2222);
}

/// An import that would leave the workspace with more than `[inventory] max_sessions`
/// saved sessions is refused whole: its dry run answers 409 `limit_reached`, its job
/// fails with that code, and nothing is imported.
#[tokio::test]
async fn an_import_past_the_workspace_limit_imports_nothing() {
    let nb = NetBox::start("ok");
    let s = Server::start(ServerOptions::default().config(&format!(
        "{TEST_CONFIG}[inventory]\nmax_sessions = 1000\nmax_folders = 2\n"
    )))
    .await;
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    configure(&c, &nb, V2_TOKEN).await;
    let msg = c
        .post(
            "/api/netbox/import",
            &json!({"filters": {}, "dry_run": true}),
        )
        .await
        .assert_error(409, Some("limit_reached"));
    assert!(
        msg.contains("2465") && msg.contains("max_sessions"),
        "{msg}"
    );
    let job = import(&c, json!({"filters": {}})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["targets"][0]["error"]["code"], "limit_reached", "{job}");
    assert!(
        c.all_sessions().await.is_empty(),
        "a refused import applied rows"
    );
    // Three devices of three sites would make three folders (one per site): the dry
    // run says so as the real run would.
    let msg = c
        .post(
            "/api/netbox/import",
            &json!({"device_ids": [1, 2, 3], "dry_run": true}),
        )
        .await
        .assert_error(409, Some("limit_reached"));
    assert!(msg.contains("max_folders"), "{msg}");
    let job = import(&c, json!({"device_ids": [1, 2, 3]})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["targets"][0]["error"]["code"], "limit_reached", "{job}");
    // Two devices of one site fit.
    let job = import(&c, json!({"device_ids": [1, 21]})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(c.all_sessions().await.len(), 2);
}

#[tokio::test]
async fn all_or_nothing_when_netbox_fails_half_way() {
    let nb = NetBox::start("ok");
    let (_s, c) = setup().await;
    configure(&c, &nb, LEGACY_TOKEN).await;
    // The first device page comes back, every later one fails (after the retries).
    nb.hook("/_fixture/fail_after", json!({"requests": 1}))
        .await;
    let job = import(&c, json!({"filters": {}})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["targets"][0]["error"]["code"], "netbox_error", "{job}");
    assert!(
        c.all_sessions().await.is_empty(),
        "a failed import applied rows"
    );
}

#[tokio::test]
async fn a_stalling_netbox_is_unreachable_within_the_timeout() {
    let nb = NetBox::start("stall");
    let (_s, c) = setup().await;
    let started = Instant::now();
    let r = c
        .put(
            "/api/netbox",
            &json!({"url": nb.url, "token": LEGACY_TOKEN}),
        )
        .await;
    r.assert_error(502, Some("netbox_unreachable"));
    // request_timeout_ms = 3000 in TEST_CONFIG; generous for a busy machine.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    // A closed port is unreachable too.
    let port = common::free_port();
    c.put(
        "/api/netbox",
        &json!({"url": format!("http://127.0.0.1:{port}"), "token": LEGACY_TOKEN}),
    )
    .await
    .assert_error(502, Some("netbox_unreachable"));
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let nb = NetBox::start("429-once");
    let (_s, c) = setup().await;
    configure(&c, &nb, LEGACY_TOKEN).await;
    let before = nb.hits().await;
    let r = c
        .post(
            "/api/netbox/import",
            &json!({"filters": {"site": "site-02"}, "dry_run": true}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["created"].as_array().map(Vec::len), Some(125));
    // One throttled request, then the same one again (plus the hits call itself).
    assert_eq!(nb.hits().await - before, 3);
}

#[tokio::test]
async fn an_untrusted_certificate_is_netbox_tls_unless_verification_is_off() {
    // Another gateway serving HTTPS with a self-signed certificate stands in for a
    // NetBox behind an internal CA.
    let https = Server::start(ServerOptions::default().tls()).await;
    let url = format!("https://127.0.0.1:{}", https.addr.port());
    let (_s, c) = setup().await;
    let msg = c
        .put("/api/netbox", &json!({"url": url, "token": LEGACY_TOKEN}))
        .await
        .assert_error(502, Some("netbox_tls"));
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    // Without verification the TLS handshake passes; that server is no NetBox, and
    // its body is not passed on, only the status.
    let msg = c
        .put(
            "/api/netbox",
            &json!({"url": url, "token": LEGACY_TOKEN, "verify_tls": false}),
        )
        .await
        .assert_error(502, Some("netbox_error"));
    assert!(msg.contains("404") && !msg.contains("route"), "{msg}");
}

#[tokio::test]
async fn a_cancel_stops_the_fetch_and_a_restart_fails_the_import_applying_nothing() {
    let nb = NetBox::start("ok");
    let mut s = Server::start(
        ServerOptions::default()
            .config("[netbox]\nrequest_timeout_ms = 20000\nretry_base_ms = 50\n"),
    )
    .await;
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    configure(&c, &nb, LEGACY_TOKEN).await;
    nb.hook("/_fixture/stall_devices", json!({"on": true}))
        .await;

    // Cancel while NetBox hangs: the job ends at once, not after the request timeout.
    let r = c.post("/api/netbox/import", &json!({"filters": {}})).await;
    r.assert_status(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    c.post(&format!("/api/jobs/{id}/cancel"), &json!({}))
        .await
        .assert_status(202);
    let job = wait_job(&c, &id).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The gateway dies during an import: after the restart the job is failed
    // `interrupted`, and nothing of it was applied.
    let r = c.post("/api/netbox/import", &json!({"filters": {}})).await;
    r.assert_status(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill9();
    s.start_again().await;
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    let job = wait_job(&c, &id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["targets"][0]["error"]["code"], "interrupted", "{job}");
    assert!(c.all_sessions().await.is_empty());
}

#[tokio::test]
async fn an_import_by_id_has_one_budget_however_many_chunks_it_asks_in() {
    // A NetBox that ignores `id=` answers every 200-id chunk with all 2,500 devices.
    let nb = NetBox::start("ignore-ids");
    let s = Server::start(
        ServerOptions::default().config(&format!("{TEST_CONFIG}max_import_devices = 3000\n")),
    )
    .await;
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    configure(&c, &nb, V2_TOKEN).await;
    let ids: Vec<u64> = (1..=1000).collect();
    // Per chunk, 2,500 is under the limit of 3,000; the five chunks together are not.
    let msg = c
        .post(
            "/api/netbox/import",
            &json!({"device_ids": ids, "dry_run": true}),
        )
        .await
        .assert_error(400, Some("netbox_too_many"));
    assert!(msg.contains("3000") || msg.contains("limit"), "{msg}");
    assert!(c.all_sessions().await.is_empty());
    // Within the budget, only the devices asked for are imported, whatever NetBox sends.
    let r = c
        .post(
            "/api/netbox/import",
            &json!({"device_ids": [1, 2, 3], "dry_run": true}),
        )
        .await;
    r.assert_status(200);
    let v = r.json();
    let created: Vec<u64> = v["created"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["netbox_id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(created, vec![1, 2, 3], "{}", v["refused"]);
}
