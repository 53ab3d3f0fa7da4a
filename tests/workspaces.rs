//! Team workspaces against the real binary: the isolation matrix extended to teams,
//! shared known hosts and sessions between operators (real sshd), sealing bound to the
//! workspace, removal of a member ending their team channels, team deletion, and the
//! migration of a data dir written by the schema-1 binary.

mod common;
mod sshd;
mod ws;

use common::*;
use opsgate_protocol::{HostkeyStatus, ServerFrame};
use reqwest::Method;
use serde_json::{json, Value};
use sshd::{Sshd, SshdOptions};
use ws::{connect, Ws};

/// `path` in team `team`'s workspace (the query selector).
fn at(path: &str, team: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}workspace={team}")
}

async fn create_team(admin: &Client, name: &str) -> String {
    let r = admin.post("/api/teams", &json!({ "name": name })).await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("team id").to_string()
}

async fn set_member(c: &Client, team: &str, user: &str, role: &str) -> Resp {
    c.put(
        &format!("/api/teams/{team}/members/{user}"),
        &json!({ "role": role }),
    )
    .await
}

async fn user(server: &Server, admin: &Client, name: &str, role: &str) -> Client {
    let pw = format!("{name}-password-1");
    admin.create_user(name, &pw, role).await;
    server.login(name, &pw).await
}

async fn credential(c: &Client, team: Option<&str>, secret: &str) -> String {
    let body = json!({"name":"lab","kind":"password","username":sshd::USER,"secret":secret});
    let path = team.map_or("/api/credentials".to_string(), |t| {
        at("/api/credentials", t)
    });
    let r = c.post(&path, &body).await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("credential id").to_string()
}

async fn saved_session(
    c: &Client,
    team: Option<&str>,
    name: &str,
    port: u16,
    cred: Option<&str>,
) -> String {
    let body = json!({"folder":"Lab","display_name":name,"host":"127.0.0.1","port":port,
                      "device_type":"linux","credential_id":cred,"tags":["shared"]});
    let path = team.map_or("/api/sessions".to_string(), |t| at("/api/sessions", t));
    let r = c.post(&path, &body).await;
    r.assert_status(201);
    r.json()["id"].as_str().expect("session id").to_string()
}

fn open_saved(ch: u32, sid: &str) -> Value {
    json!({"type":"open","ch":ch,"kind":"ssh","session_id":sid,"cols":80,"rows":24})
}

fn open_adhoc(ch: u32, port: u16, cred: &str) -> Value {
    json!({"type":"open","ch":ch,"kind":"ssh","host":"127.0.0.1","port":port,
           "username":sshd::USER,"credential_id":cred,"cols":80,"rows":24})
}

/// Sends `open`, accepts a host-key question if one comes; returns whether it asked.
async fn open_trusting(w: &mut Ws, ch: u32, open: Value) -> bool {
    w.send_json(open).await;
    let f = w
        .expect_control(|f| {
            matches!(f, ServerFrame::Hostkey { ch: c, .. } | ServerFrame::Opened { ch: c, .. } | ServerFrame::Error { ch: Some(c), .. } if *c == ch)
        })
        .await;
    match f {
        ServerFrame::Hostkey { status, .. } => {
            assert_eq!(status, HostkeyStatus::Unknown);
            w.send_json(json!({"type":"hostkey_accept","ch":ch})).await;
            w.expect_opened(ch).await;
            true
        }
        ServerFrame::Opened { .. } => false,
        other => panic!("open on {ch} failed: {other:?}"),
    }
}

async fn ws_of(server: &Server, c: &Client) -> Ws {
    connect(server, c.cookie.as_deref().expect("cookie")).await
}

async fn json_ok(c: &Client, path: &str) -> Value {
    let r = c.get(path).await;
    r.assert_status(200);
    r.json()
}

/// Every id the user's audit listing mentions, as one string to search.
async fn audit_text(c: &Client, query: &str) -> String {
    json_ok(c, &format!("/api/audit{query}")).await.to_string()
}

#[tokio::test]
async fn isolation_matrix_extended_to_team_workspaces() {
    let mut server = Server::start_default().await;
    let admin = server.admin().await;
    let noc = create_team(&admin, "NOC").await;
    let other = create_team(&admin, "Other").await;
    let op = user(&server, &admin, "op", "operator").await;
    let vw = user(&server, &admin, "vw", "operator").await;
    let out = user(&server, &admin, "out", "operator").await;
    // A global viewer who is the team's admin manages its members, nothing else.
    let lead = user(&server, &admin, "lead", "viewer").await;
    set_member(&admin, &noc, "op", "operator")
        .await
        .assert_status(200);
    set_member(&admin, &noc, "vw", "viewer")
        .await
        .assert_status(200);
    // Not a member yet: the team does not exist for them.
    set_member(&lead, &noc, "out", "viewer")
        .await
        .assert_error(404, Some("not_found"));
    set_member(&admin, &noc, "lead", "admin")
        .await
        .assert_status(200);
    set_member(&admin, &other, "out", "operator")
        .await
        .assert_status(200);

    // The team's objects, made by its operator.
    let cred = credential(&op, Some(&noc), "team-secret-pw-1").await;
    let sid = saved_session(&op, Some(&noc), "noc-core-1", 22, Some(&cred)).await;
    op.post(&at("/api/folders", &noc), &json!({"name": "Spare"}))
        .await
        .assert_status(201);
    // Personal objects beside them.
    let own = saved_session(&op, None, "op-own-1", 22, None).await;
    let out_own = saved_session(&out, None, "out-own-1", 22, None).await;
    let other_sid = saved_session(&out, Some(&other), "other-core-1", 22, None).await;

    // A known host of the team, seeded into the redb file while the gateway is down
    // (they come from host-key confirmation otherwise).
    server.stop();
    let kh = {
        let store = opsgate::store::Store::open(server.data_dir()).expect("store");
        store
            .write_blocking(|tx| {
                opsgate::inventory::add_known_host(
                    tx,
                    &opsgate::workspace::Scope::team(&noc, "op"),
                    "10.1.1.1",
                    22,
                    "ssh-ed25519",
                    "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
                )
            })
            .expect("seed known host")
            .0
            .id
    };
    server.start_again().await;

    let session_body =
        json!({"folder":"Lab","display_name":"x","host":"10.0.0.9","device_type":"linux"});
    let cred_body = json!({"name":"n","kind":"password","secret":"s3cret-value"});
    let folder_body = json!({"name": "Renamed"});
    let yaml = "- folder_name: Imp\n  sessions:\n  - {display_name: imp1, host: 10.2.2.2, DeviceType: linux}\n";
    // Every route, with the team selected: (method, path, body).
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/sessions".into(), None),
        (Method::GET, "/api/sessions?q=noc".into(), None),
        (Method::GET, "/api/sessions/export".into(), None),
        (Method::GET, format!("/api/sessions/{sid}"), None),
        (Method::GET, "/api/credentials".into(), None),
        (Method::GET, "/api/known-hosts".into(), None),
        (
            Method::POST,
            "/api/sessions".into(),
            Some(session_body.clone()),
        ),
        (
            Method::PUT,
            format!("/api/sessions/{sid}"),
            Some(session_body.clone()),
        ),
        (
            Method::POST,
            "/api/folders".into(),
            Some(json!({"name": "F2"})),
        ),
        (
            Method::PUT,
            "/api/folders/Spare".into(),
            Some(folder_body.clone()),
        ),
        (
            Method::POST,
            "/api/credentials".into(),
            Some(cred_body.clone()),
        ),
        (
            Method::PUT,
            format!("/api/credentials/{cred}"),
            Some(cred_body.clone()),
        ),
        (Method::DELETE, format!("/api/known-hosts/{kh}"), None),
        (Method::DELETE, "/api/folders/Spare".into(), None),
        (Method::DELETE, format!("/api/sessions/{sid}"), None),
        (Method::DELETE, format!("/api/credentials/{cred}"), None),
    ];
    let send = |c: &Client, m: &Method, path: &str, body: &Option<Value>, team: &str| {
        let mut rb = c.request(m.clone(), &at(path, team));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        rb
    };

    // Outsiders (an operator of another team, the global admin, a bogus id): 404 for
    // every route, reads and writes alike, and for the import.
    for (who, c) in [("out", &out), ("admin", &admin)] {
        for (m, path, body) in &routes {
            let r = c.send(send(c, m, path, body, &noc)).await;
            assert_eq!(r.status.as_u16(), 404, "{who} {m} {path}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "not_found", "{who} {m} {path}");
        }
        let r = c
            .send_raw(
                Method::POST,
                &at("/api/sessions/import", &noc),
                "application/yaml",
                yaml,
            )
            .await;
        r.assert_error(404, Some("not_found"));
    }
    for (m, path, body) in &routes {
        let r = op.send(send(&op, m, path, body, "0123456789abcdef")).await;
        assert_eq!(r.status.as_u16(), 404, "bogus team {m} {path}");
    }
    // The header selector is the same selector; two different ones are refused.
    let r = out
        .send(
            out.request(Method::GET, "/api/sessions")
                .header("X-Opsgate-Workspace", &noc),
        )
        .await;
    r.assert_error(404, Some("not_found"));
    let r = op
        .send(
            op.request(Method::GET, "/api/sessions")
                .header("X-Opsgate-Workspace", &noc),
        )
        .await;
    r.assert_status(200);
    assert_eq!(flatten_sessions(&r.json()).len(), 1);
    op.send(
        op.request(Method::GET, &at("/api/sessions", &other))
            .header("X-Opsgate-Workspace", &noc),
    )
    .await
    .assert_error(400, Some("invalid_workspace"));

    // The team's viewer reads everything and writes nothing.
    for (m, path, body) in &routes {
        let r = vw.send(send(&vw, m, path, body, &noc)).await;
        if *m == Method::GET {
            assert_eq!(r.status.as_u16(), 200, "viewer {m} {path}: {}", r.text());
        } else {
            assert_eq!(r.status.as_u16(), 403, "viewer {m} {path}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "forbidden");
        }
    }
    vw.send_raw(
        Method::POST,
        &at("/api/sessions/import", &noc),
        "application/yaml",
        yaml,
    )
    .await
    .assert_error(403, Some("forbidden"));
    // Nor does a viewer open the team's terminals (refused before any connection).
    let mut w = ws_of(&server, &vw).await;
    w.send_json(open_saved(1, &sid)).await;
    w.expect_error(Some(1), "forbidden").await;
    // An outsider cannot open it either, and learns nothing.
    let mut wo = ws_of(&server, &out).await;
    wo.send_json(open_saved(1, &sid)).await;
    wo.expect_error(Some(1), "not_found").await;

    // The operator uses and writes the inventory, but manages no membership.
    op.send_raw(
        Method::POST,
        &at("/api/sessions/import?mode=merge", &noc),
        "application/yaml",
        yaml,
    )
    .await
    .assert_status(200);
    op.put(&at(&format!("/api/sessions/{sid}"), &noc), &session_body)
        .await
        .assert_status(200);
    set_member(&op, &noc, "out", "viewer")
        .await
        .assert_error(403, Some("forbidden"));
    op.delete(&format!("/api/teams/{noc}/members/vw"))
        .await
        .assert_error(403, Some("forbidden"));
    op.put(&format!("/api/teams/{noc}"), &json!({"name": "Mine"}))
        .await
        .assert_error(403, Some("forbidden"));
    op.delete(&format!("/api/teams/{noc}"))
        .await
        .assert_error(403, Some("forbidden"));
    // Outsiders get 404 on the team routes that name it.
    for (m, path) in [
        (Method::GET, format!("/api/teams/{noc}")),
        (Method::PUT, format!("/api/teams/{noc}/members/out")),
        (Method::DELETE, format!("/api/teams/{noc}/members/vw")),
    ] {
        let r = out
            .send(out.request(m.clone(), &path).json(&json!({"role":"admin"})))
            .await;
        assert_eq!(r.status.as_u16(), 404, "out {m} {path}: {}", r.text());
    }
    // The team's admin manages members (a global viewer though).
    set_member(&lead, &noc, "out", "viewer")
        .await
        .assert_status(200);
    lead.delete(&format!("/api/teams/{noc}/members/out"))
        .await
        .assert_status(204);
    lead.put(&format!("/api/teams/{noc}"), &json!({"name": "Mine"}))
        .await
        .assert_error(403, Some("forbidden"));
    let t = json_ok(&lead, &format!("/api/teams/{noc}")).await;
    assert_eq!(t["role"], "admin");
    assert_eq!(t["members"].as_array().map(Vec::len), Some(3), "{t}");

    // Listings: each workspace shows its own objects only, with or without a search.
    let names = |v: &Value| -> Vec<String> {
        flatten_sessions(v)
            .iter()
            .map(|s| s["display_name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut team_names = names(&json_ok(&op, &at("/api/sessions", &noc)).await);
    team_names.sort();
    assert_eq!(team_names, ["imp1", "x"]);
    assert_eq!(names(&json_ok(&op, "/api/sessions").await), ["op-own-1"]);
    assert!(names(&json_ok(&op, "/api/sessions?q=x").await).is_empty());
    assert!(names(&json_ok(&out, "/api/sessions?q=1").await) == ["out-own-1"]);
    assert_eq!(
        names(&json_ok(&out, &at("/api/sessions", &other)).await),
        ["other-core-1"]
    );
    op.get(&at("/api/sessions", &other))
        .await
        .assert_error(404, Some("not_found"));
    let export = op.export().await;
    assert!(
        export.contains("op-own-1") && !export.contains("imp1"),
        "{export}"
    );
    let team_export = op.get(&at("/api/sessions/export", &noc)).await.text();
    assert!(team_export.contains("imp1") && !team_export.contains("op-own-1"));
    assert!(json_ok(&op, "/api/credentials").await == json!([]));
    assert!(json_ok(&op, "/api/known-hosts").await == json!([]));
    let team_creds = json_ok(&vw, &at("/api/credentials", &noc)).await;
    assert_eq!(team_creds.as_array().map(Vec::len), Some(1));
    assert!(!team_creds.to_string().contains("team-secret-pw-1"));
    assert_eq!(
        json_ok(&vw, &at("/api/known-hosts", &noc)).await[0]["host"],
        "10.1.1.1"
    );

    // Teams and workspaces each caller may see.
    let teams = json_ok(&op, "/api/teams").await;
    assert_eq!(teams.as_array().map(Vec::len), Some(1), "{teams}");
    assert_eq!(teams[0]["id"], noc.as_str());
    assert_eq!(teams[0]["role"], "operator");
    assert!(teams[0].get("members").is_none(), "{teams}");
    let wss = json_ok(&out, "/api/workspaces").await;
    assert_eq!(
        wss["workspaces"],
        json!([
            {"id":"personal","kind":"personal","name":"out","role":"operator"},
            {"id":other,"kind":"team","name":"Other","role":"operator"}
        ])
    );
    assert_eq!(
        json_ok(&admin, "/api/teams").await.as_array().map(Vec::len),
        Some(2)
    );

    // Audit: members see their own events, with the team named; nobody else's team
    // objects reach a non-admin's listing.
    let op_audit = json_ok(&op, "/api/audit").await;
    let created = op_audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == "session.create" && e["target"] == sid.as_str())
        .cloned()
        .expect("op's session.create");
    assert_eq!(created["workspace"], noc.as_str());
    assert_eq!(created["actor"], "op");
    // (`out` tried to open the team's session by id above: that attempt is its own.)
    let out_audit = json_ok(&out, "/api/audit").await;
    assert!(
        out_audit["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["actor"] == "out" && e.get("workspace").is_none_or(|w| *w != noc.as_str())),
        "{out_audit}"
    );
    assert!(!out_audit.to_string().contains(&cred));
    let vw_audit = audit_text(&vw, &format!("?workspace={noc}")).await;
    assert!(!vw_audit.contains(&sid), "{vw_audit}");
    out.get(&at("/api/audit", &noc))
        .await
        .assert_error(404, Some("not_found"));
    // The team's admin sees the team's events; not the other team's.
    let lead_audit = audit_text(&lead, &format!("?workspace={noc}")).await;
    assert!(lead_audit.contains(&sid) && !lead_audit.contains(&other_sid));
    assert!(!lead_audit.contains(&own) && !lead_audit.contains(&out_own));
}

#[tokio::test]
async fn two_operators_share_the_teams_known_hosts_and_sessions() {
    let mut d = Sshd::start(SshdOptions::default());
    let server = Server::start_default().await;
    let admin = server.admin().await;
    let team = create_team(&admin, "NOC").await;
    let ann = user(&server, &admin, "ann", "operator").await;
    // A global viewer: inside the team, the membership role decides.
    let ben = user(&server, &admin, "ben", "viewer").await;
    set_member(&admin, &team, "ann", "operator")
        .await
        .assert_status(200);
    set_member(&admin, &team, "ben", "operator")
        .await
        .assert_status(200);
    let cred = credential(&ann, Some(&team), sshd::PASSWORD).await;
    let sid = saved_session(&ann, Some(&team), "lab-1", d.port, Some(&cred)).await;

    let mut wa = ws_of(&server, &ann).await;
    assert!(open_trusting(&mut wa, 1, open_saved(1, &sid)).await);
    wa.input(1, b"echo ann-$((40+2))\n").await;
    wa.expect_output(1, "ann-42").await;
    let hosts = json_ok(&ben, &at("/api/known-hosts", &team)).await;
    assert_eq!(hosts.as_array().map(Vec::len), Some(1), "{hosts}");
    assert_eq!(json_ok(&ann, "/api/known-hosts").await, json!([]));

    // Ben connects without a question: the key is the team's.
    let mut wb = ws_of(&server, &ben).await;
    assert!(!open_trusting(&mut wb, 1, open_saved(1, &sid)).await);
    wb.input(1, b"echo ben-$((40+2))\n").await;
    wb.expect_output(1, "ben-42").await;
    // A global viewer still opens no ad-hoc terminal with the team's credential.
    wb.send_json(open_adhoc(2, d.port, &cred)).await;
    wb.expect_error(Some(2), "forbidden").await;

    // Ann changes the saved session; Ben's list shows it.
    let body = json!({"folder":"Core","display_name":"lab-renamed","host":"127.0.0.1",
                          "port":d.port,"device_type":"linux","credential_id":cred});
    ann.put(&at(&format!("/api/sessions/{sid}"), &team), &body)
        .await
        .assert_status(200);
    let seen = flatten_sessions(&json_ok(&ben, &at("/api/sessions", &team)).await);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["display_name"], "lab-renamed");
    assert_eq!(seen[0]["folder"], "Core");

    // The channel opens are audited with the workspace and the user (written in
    // batches off the hot path: give the writer a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = json_ok(&admin, &format!("/api/audit?workspace={team}")).await;
        let mut actors: Vec<String> = events["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| {
                e["action"] == "channel.open"
                    && e["detail"].as_str().is_some_and(|d| d.ends_with(": ok"))
            })
            .filter_map(|e| e["actor"].as_str().map(str::to_string))
            .collect();
        actors.sort();
        if actors == ["ann", "ben"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A changed key is refused for everyone in the team.
    d.restart_with_new_host_key();
    for (w, ch) in [(&mut wa, 5u32), (&mut wb, 6u32)] {
        w.send_json(open_saved(ch, &sid)).await;
        match w
            .expect_control(|f| matches!(f, ServerFrame::Hostkey { ch: c, .. } if *c == ch))
            .await
        {
            ServerFrame::Hostkey { status, .. } => assert_eq!(status, HostkeyStatus::Changed),
            _ => unreachable!(),
        }
        w.expect_error(Some(ch), "hostkey_changed").await;
    }
}

#[tokio::test]
async fn a_credential_copied_to_another_team_does_not_open() {
    let _d = Sshd::start(SshdOptions::default());
    let d = &_d;
    let mut server = Server::start_default().await;
    let admin = server.admin().await;
    let a = create_team(&admin, "A").await;
    let b = create_team(&admin, "B").await;
    let op = user(&server, &admin, "op", "operator").await;
    for t in [&a, &b] {
        set_member(&admin, t, "op", "operator")
            .await
            .assert_status(200);
    }
    let cred = credential(&op, Some(&a), sshd::PASSWORD).await;
    let sid_a = saved_session(&op, Some(&a), "in-a", d.port, Some(&cred)).await;

    // Copy team A's sealed record into team B's rows, straight in the redb file.
    server.stop();
    {
        use opsgate::store::{Store, StoreError, CREDENTIALS};
        use redb::ReadableTable;
        let store = Store::open(server.data_dir()).expect("store");
        let (ka, kb) = (format!("team:{a}"), format!("team:{b}"));
        store
            .write_blocking(|tx| -> Result<(), StoreError> {
                let mut t = tx.open_table(CREDENTIALS)?;
                let raw = t
                    .get((ka.as_str(), cred.as_str()))?
                    .expect("team A's credential")
                    .value()
                    .to_vec();
                t.insert((kb.as_str(), cred.as_str()), raw.as_slice())?;
                Ok(())
            })
            .expect("copy");
    }
    server.start_again().await;
    let op = server.login("op", "op-password-1").await;
    // Team B now lists a credential with that id, and a session may name it…
    let sid_b = saved_session(&op, Some(&b), "in-b", d.port, Some(&cred)).await;
    let mut w = ws_of(&server, &op).await;
    // …but it does not open there: a clean error, no question asked, no secret shown.
    w.send_json(open_saved(1, &sid_b)).await;
    let msg = w.expect_error(Some(1), "channel_failed").await;
    assert!(!msg.contains(sshd::PASSWORD), "{msg}");
    assert!(msg.contains("does not open"), "{msg}");
    assert!(w
        .controls
        .iter()
        .all(|f| !matches!(f, ServerFrame::Hostkey { .. })));
    // In team A the same record still works.
    assert!(open_trusting(&mut w, 2, open_saved(2, &sid_a)).await);
    w.input(2, b"echo a-$((40+2))\n").await;
    w.expect_output(2, "a-42").await;
    assert!(server.is_running());
    assert!(!server.logs().contains(sshd::PASSWORD));
    assert!(!server.logs().contains("panicked"));
}

/// A member removed while a tab of theirs is not reading (its socket's outbox full, the
/// team terminal waiting to hand that socket a frame) loses the team terminal at once,
/// not when the frozen socket is dropped two heartbeats later.
#[tokio::test]
async fn removing_a_member_ends_a_team_channel_waiting_on_a_tab_that_does_not_read() {
    let d = Sshd::start(SshdOptions::default());
    // A window larger than the socket's outbox and TCP buffers, so the channel waits on
    // the socket (not on the window) once the client stops reading.
    let server = Server::start(
        ServerOptions::default().config("[mux]\nwindow_bytes = 67108864\nheartbeat_secs = 60"),
    )
    .await;
    let (admin, team, op, sid) = operator_with_team_session(&server, d.port).await;
    let mut w = ws_of(&server, &op).await;
    assert!(open_trusting(&mut w, 1, open_saved(1, &sid)).await);
    // Output floods in; the client reads no more of it.
    w.input(1, b"yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789\n")
        .await;
    // Until the socket's buffers are full and the channel waits on them.
    let t0 = std::time::Instant::now();
    let mut last = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let v = op.get("/api/channels").await.json();
        let out = v[0]["bytes_out"].as_u64().unwrap_or(0);
        if out > 0 && out == last {
            break;
        }
        last = out;
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "output never stalled"
        );
    }
    assert_eq!(channel_count(&op).await, 1);
    set_member(&admin, &team, "op", "viewer")
        .await
        .assert_status(200);
    let t0 = std::time::Instant::now();
    while channel_count(&op).await > 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "the team terminal still runs after the member lost access"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(w);
    assert!(!server.logs().contains("panicked"));
}

/// Team "NOC" with the operator `op` in it, and the team's saved session "lab" to the
/// sshd on `port` with a team credential: (admin, team id, op, session id).
async fn operator_with_team_session(
    server: &Server,
    port: u16,
) -> (Client, String, Client, String) {
    let admin = server.admin().await;
    let team = create_team(&admin, "NOC").await;
    let op = user(server, &admin, "op", "operator").await;
    set_member(&admin, &team, "op", "operator")
        .await
        .assert_status(200);
    let cred = credential(&op, Some(&team), sshd::PASSWORD).await;
    let sid = saved_session(&op, Some(&team), "lab", port, Some(&cred)).await;
    (admin, team, op, sid)
}

/// How many channels `c`'s user has running (`GET /api/channels`).
async fn channel_count(c: &Client) -> usize {
    c.get("/api/channels")
        .await
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn removing_a_member_ends_their_team_channels_only() {
    let d = Sshd::start(SshdOptions::default());
    let server =
        Server::start(ServerOptions::default().config("[pty.programs]\ncat = [\"cat\"]")).await;
    let (admin, team, op, sid) = operator_with_team_session(&server, d.port).await;
    let own_cred = credential(&op, None, sshd::PASSWORD).await;

    let mut w = ws_of(&server, &op).await;
    assert!(open_trusting(&mut w, 1, open_saved(1, &sid)).await);
    // The personal workspace keeps its own known hosts: it asks again.
    assert!(open_trusting(&mut w, 2, open_adhoc(2, d.port, &own_cred)).await);
    let mut pty = ws_of(&server, &op).await;
    pty.open_pty(1, "cat").await;
    pty.expect_opened(1).await;

    // Made a viewer: the team channel ends, the personal one stays.
    set_member(&admin, &team, "op", "viewer")
        .await
        .assert_status(200);
    let closed = w
        .expect_control(|f| matches!(f, ServerFrame::Closed { ch: 1, .. }))
        .await;
    assert_eq!(
        closed,
        ServerFrame::Closed {
            ch: 1,
            reason: Some("access_revoked".into())
        }
    );
    w.input(2, b"echo still-$((40+2))\n").await;
    w.expect_output(2, "still-42").await;
    w.send_json(open_saved(3, &sid)).await;
    w.expect_error(Some(3), "forbidden").await;

    // Operator again, then removed: the same.
    set_member(&admin, &team, "op", "operator")
        .await
        .assert_status(200);
    assert!(!open_trusting(&mut w, 4, open_saved(4, &sid)).await);
    admin
        .delete(&format!("/api/teams/{team}/members/op"))
        .await
        .assert_status(204);
    let closed = w
        .expect_control(|f| matches!(f, ServerFrame::Closed { ch: 4, .. }))
        .await;
    assert_eq!(
        closed,
        ServerFrame::Closed {
            ch: 4,
            reason: Some("access_revoked".into())
        }
    );
    w.input(2, b"echo alive-$((40+2))\n").await;
    w.expect_output(2, "alive-42").await;
    w.send_json(open_saved(5, &sid)).await;
    w.expect_error(Some(5), "not_found").await;
    // Not a team object: the PTY channel is untouched.
    pty.input(1, b"pty-still-here\n").await;
    pty.expect_output(1, "pty-still-here").await;
    assert!(!pty
        .controls
        .iter()
        .any(|f| matches!(f, ServerFrame::Closed { .. })));
    op.get(&at("/api/sessions", &team))
        .await
        .assert_error(404, Some("not_found"));
}

#[tokio::test]
async fn a_team_with_objects_cannot_be_deleted() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    let team = create_team(&admin, "NOC").await;
    admin
        .post("/api/teams", &json!({"name": "noc"}))
        .await
        .assert_error(409, Some("team_exists"));
    let op = user(&server, &admin, "op", "operator").await;
    set_member(&admin, &team, "op", "operator")
        .await
        .assert_status(200);
    let cred = credential(&op, Some(&team), "whatever-pw").await;
    let sid = saved_session(&op, Some(&team), "s1", 22, Some(&cred)).await;
    let r = admin.delete(&format!("/api/teams/{team}")).await;
    let msg = r.assert_error(409, Some("team_not_empty"));
    assert!(
        msg.contains("saved sessions") && msg.contains("credentials"),
        "{msg}"
    );
    op.delete(&at(&format!("/api/sessions/{sid}"), &team))
        .await
        .assert_status(204);
    op.delete(&at("/api/folders/Lab", &team))
        .await
        .assert_status(204);
    admin
        .delete(&format!("/api/teams/{team}"))
        .await
        .assert_error(409, Some("team_not_empty"));
    op.delete(&at(&format!("/api/credentials/{cred}"), &team))
        .await
        .assert_status(204);
    admin
        .put(&format!("/api/teams/{team}"), &json!({"name": "NOC 2"}))
        .await
        .assert_status(200);
    admin
        .delete(&format!("/api/teams/{team}"))
        .await
        .assert_status(204);
    op.get(&at("/api/sessions", &team))
        .await
        .assert_error(404, Some("not_found"));
    assert_eq!(json_ok(&op, "/api/teams").await, json!([]));
    admin
        .delete(&format!("/api/teams/{team}"))
        .await
        .assert_error(404, Some("not_found"));
}

#[tokio::test]
async fn a_schema_1_data_dir_opens_with_everything_in_personal_workspaces() {
    let d = Sshd::start(SshdOptions::default());
    let mut server = Server::start_default().await;
    server.stop();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-data");
    for f in ["opsgate.redb", "master.key"] {
        std::fs::copy(fixture.join(f), server.data_dir().join(f)).expect("copy fixture");
    }
    let version = |dir: &std::path::Path| {
        use opsgate::store::{Store, StoreError, META};
        let store = Store::open(dir).expect("store");
        store
            .read_blocking(|tx| -> Result<Vec<u8>, StoreError> {
                Ok(tx
                    .open_table(META)?
                    .get("schema_version")?
                    .map(|v| v.value().to_vec())
                    .unwrap_or_default())
            })
            .expect("read")
    };
    {
        // The fixture really is schema 1 (read without opening it through Store, which
        // would migrate it).
        let db = redb::Database::open(server.data_dir().join("opsgate.redb")).expect("redb");
        let tx = redb::ReadableDatabase::begin_read(&db).expect("read");
        let meta = tx.open_table(opsgate::store::META).expect("meta");
        let v = meta.get("schema_version").expect("get").expect("present");
        assert_eq!(v.value(), 1u32.to_be_bytes());
    }
    server.start_again().await;

    let alice = server.login("alice", "alice-password-1").await;
    let list = json_ok(&alice, "/api/sessions").await;
    let folders: Vec<&str> = list["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(folders, ["Core", "Empty"], "{list}");
    let sessions = flatten_sessions(&list);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["display_name"], "core-sw1");
    assert_eq!(sessions[0]["tags"], json!(["site=lab"]));
    let creds = json_ok(&alice, "/api/credentials").await;
    assert_eq!(creds[0]["name"], "lab");
    assert_eq!(creds[0]["has_enable_secret"], true);
    let cred = creds[0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        json_ok(&alice, "/api/workspaces").await["workspaces"],
        json!([{"id":"personal","kind":"personal","name":"alice","role":"operator"}])
    );
    // Each owner's objects stayed theirs.
    let admin = server.admin().await;
    let admin_sessions = admin.all_sessions().await;
    assert_eq!(admin_sessions.len(), 1);
    assert_eq!(admin_sessions[0]["display_name"], "edge-1");
    let bob = server.login("bob", "bob-password-1").await;
    assert!(bob.all_sessions().await.is_empty());

    // The credential the old binary sealed still opens: ad hoc, then by the saved
    // session moved to the test sshd's port (the key is trusted by then).
    let mut w = ws_of(&server, &alice).await;
    assert!(open_trusting(&mut w, 1, open_adhoc(1, d.port, &cred)).await);
    w.input(1, b"echo old-$((40+2))\n").await;
    w.expect_output(1, "old-42").await;
    let sid = sessions[0]["id"].as_str().expect("id").to_string();
    let mut body = sessions[0].clone();
    for k in ["id", "created_at", "updated_at"] {
        body.as_object_mut().expect("object").remove(k);
    }
    body["port"] = json!(d.port);
    alice
        .put(&format!("/api/sessions/{sid}"), &body)
        .await
        .assert_status(200);
    assert!(!open_trusting(&mut w, 2, open_saved(2, &sid)).await);
    w.input(2, b"echo saved-$((40+2))\n").await;
    w.expect_output(2, "saved-42").await;

    server.stop();
    assert_eq!(
        version(server.data_dir()),
        opsgate::store::SCHEMA_VERSION.to_be_bytes()
    );
}

#[tokio::test]
async fn a_user_created_again_under_a_deleted_name_finds_nothing_of_the_old_one() {
    let server = Server::start_default().await;
    let admin = server.admin().await;
    let ann = user(&server, &admin, "ann", "operator").await;
    let cred = credential(&ann, None, "ann-device-pw").await;
    let sid = saved_session(&ann, None, "r1", 22, Some(&cred)).await;
    ann.post(
        "/api/schedules",
        &json!({"name":"nightly","cron":"0 2 * * *","enabled":false,
                "job":{"type":"config_backup","targets":[sid]}}),
    )
    .await
    .assert_status(201);
    admin.delete("/api/users/ann").await.assert_status(204);
    let ann = user(&server, &admin, "ann", "operator").await;
    for path in ["/api/schedules", "/api/credentials", "/api/jobs"] {
        let list = ann.get(path).await.json();
        let items = list
            .as_array()
            .or_else(|| list["items"].as_array())
            .or_else(|| list["jobs"].as_array())
            .cloned()
            .unwrap_or_default();
        assert!(items.is_empty(), "{path}: {list}");
    }
    assert!(flatten_sessions(&ann.list_sessions().await).is_empty());
}
