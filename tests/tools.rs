//! Tool runs on `tool` channels, against real programs (iputils ping, traceroute, mtr,
//! dig against a dnsmasq on loopback, whois against a loopback responder, nmap) and the
//! two Rust tools. A tool whose program is missing makes its test skip with a note.

mod common;
mod ws;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{free_port, Server, ServerOptions};
use opsgate_protocol::ServerFrame;
use serde_json::{json, Map, Value};
use ws::{connect, Ws};

fn have(program: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(program).exists())
}

async fn admin_ws(s: &Server) -> Ws {
    let admin = s.admin().await;
    connect(s, admin.cookie.as_deref().expect("cookie")).await
}

async fn open_tool(w: &mut Ws, ch: u32, tool: &str, params: Value) {
    w.send_json(json!({"type":"open","ch":ch,"kind":"tool","tool":tool,"params":params}))
        .await;
}

/// Waits for the run's final `progress` (a state other than `running`) on `ch`.
async fn final_progress(w: &mut Ws, ch: u32) -> Map<String, Value> {
    let f = w
        .expect_control(|f| {
            matches!(f, ServerFrame::Progress { ch: c, event }
                if *c == ch && event.get("state").and_then(Value::as_str) != Some("running"))
        })
        .await;
    match f {
        ServerFrame::Progress { event, .. } => event,
        _ => unreachable!(),
    }
}

async fn expect_exit(w: &mut Ws, ch: u32) {
    w.expect_control(|f| matches!(f, ServerFrame::Exit { ch: c, .. } if *c == ch))
        .await;
}

/// Every process below `pid` (children, grandchildren …), from /proc.
fn descendants(pid: u32) -> HashSet<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The command may hold spaces and parentheses: fields start after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            // f[0] state, f[1] ppid. Zombies still count (not reaped yet).
            if let Some(pp) = f.get(1).and_then(|v| v.parse::<u32>().ok()) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut found = HashSet::new();
    let mut frontier = vec![pid];
    while let Some(x) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == x && found.insert(c) {
                frontier.push(c);
            }
        }
    }
    found
}

fn alive(pids: &HashSet<u32>) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect()
}

async fn wait_gone(pids: &HashSet<u32>) {
    for _ in 0..50 {
        if alive(pids).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still alive: {:?}", alive(pids));
}

#[tokio::test]
async fn the_registry_lists_every_tool_with_its_schema() {
    let s = Server::start_default().await;
    let admin = s.admin().await;
    let r = admin.get("/api/tools").await;
    r.assert_status(200);
    let tools = r.json()["tools"].as_array().cloned().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for n in [
        "ping",
        "traceroute",
        "mtr",
        "dig",
        "whois",
        "nmap",
        "port_check",
        "tls_check",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let nmap = admin.get("/api/tools/nmap").await.json();
    assert_eq!(nmap["category"], "scan");
    assert_eq!(nmap["params"]["properties"]["target"]["format"], "cidr");
    assert_eq!(
        nmap["params"]["properties"]["scan"]["enum"],
        json!(["ping", "connect", "version"])
    );
    assert_eq!(nmap["available"], json!(have("nmap")));
    let scans = admin.get("/api/tools?category=scan").await.json();
    assert_eq!(scans["tools"].as_array().map(Vec::len), Some(1));
    admin
        .get("/api/tools/rm")
        .await
        .assert_error(404, Some("not_found"));
}

#[tokio::test]
async fn ping_streams_lines_and_returns_a_parsed_result() {
    if !have("ping") {
        eprintln!("skipped: ping is not installed");
        return;
    }
    let s = Server::start_default().await;
    let mut w = admin_ws(&s).await;
    open_tool(&mut w, 1, "ping", json!({"host":"127.0.0.1","count":2})).await;
    w.expect_opened(1).await;
    w.expect_output(1, "bytes from 127.0.0.1").await;
    let end = final_progress(&mut w, 1).await;
    assert_eq!(end["state"], "succeeded", "{end:?}");
    let r = &end["result"];
    assert_eq!(r["sent"], 2);
    assert_eq!(r["received"], 2);
    assert_eq!(r["loss_pct"], 0.0);
    assert!(r["rtt_max_ms"].as_f64().is_some_and(|v| v >= 0.0), "{r}");
    expect_exit(&mut w, 1).await;
}

#[tokio::test]
async fn traceroute_and_mtr_report_hops_to_loopback() {
    let s = Server::start_default().await;
    let mut w = admin_ws(&s).await;
    for (ch, tool, params) in [
        (
            1,
            "traceroute",
            json!({"host":"127.0.0.1","max_hops":3,"queries":1}),
        ),
        (2, "mtr", json!({"host":"127.0.0.1","count":1})),
    ] {
        if !have(tool) {
            eprintln!("skipped {tool}: not installed");
            continue;
        }
        open_tool(&mut w, ch, tool, params).await;
        w.expect_opened(ch).await;
        let end = final_progress(&mut w, ch).await;
        assert_eq!(end["state"], "succeeded", "{tool}: {end:?}");
        let hops = end["result"]["hops"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            hops.first().map(|h| &h["address"]),
            Some(&json!("127.0.0.1")),
            "{tool}: {end:?}"
        );
    }
}

#[tokio::test]
async fn dig_answers_by_section_from_a_dnsmasq_on_loopback() {
    if !have("dig") || !have("dnsmasq") {
        eprintln!("skipped: dig or dnsmasq is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "192.0.2.55 router1.opsgate.test\n").expect("hosts");
    let port = free_port();
    let mut dns = std::process::Command::new("dnsmasq")
        .args([
            "-k",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            &format!("--port={port}"),
            &format!("--addn-hosts={}", hosts.display()),
            &format!("--pid-file={}", dir.path().join("pid").display()),
        ])
        .spawn()
        .expect("dnsmasq starts");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = Server::start_default().await;
    let mut w = admin_ws(&s).await;
    open_tool(
        &mut w,
        1,
        "dig",
        json!({"name":"router1.opsgate.test","type":"A","server":"127.0.0.1","port":port}),
    )
    .await;
    w.expect_opened(1).await;
    let end = final_progress(&mut w, 1).await;
    let _ = dns.kill();
    let _ = dns.wait();
    assert_eq!(end["state"], "succeeded", "{end:?}");
    assert_eq!(end["result"]["status"], "NOERROR");
    assert_eq!(end["result"]["answer"][0]["data"], "192.0.2.55", "{end:?}");
    assert_eq!(end["result"]["answer"][0]["type"], "A");
}

#[tokio::test]
async fn whois_asks_the_given_server() {
    if !have("whois") {
        eprintln!("skipped: whois is not installed");
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut q = [0u8; 256];
            let n = c.read(&mut q).unwrap_or(0);
            let asked = String::from_utf8_lossy(&q[..n]).trim().to_string();
            let _ = write!(
                c,
                "% test responder\nDomain Name: {asked}\nRegistrar: Opsgate Test Registry\n"
            );
        }
    });
    let s = Server::start_default().await;
    let mut w = admin_ws(&s).await;
    open_tool(
        &mut w,
        1,
        "whois",
        json!({"query":"example.test","server":"127.0.0.1","port":port}),
    )
    .await;
    w.expect_opened(1).await;
    w.expect_output(1, "Registrar").await;
    let end = final_progress(&mut w, 1).await;
    assert_eq!(
        end["result"]["fields"]["Registrar"], "Opsgate Test Registry",
        "{end:?}"
    );
    assert_eq!(end["result"]["fields"]["Domain Name"], "example.test");
}

#[tokio::test]
async fn nmap_connect_scan_names_open_and_closed_ports() {
    if !have("nmap") {
        eprintln!("skipped: nmap is not installed");
        return;
    }
    let open = TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_port = open.local_addr().expect("addr").port();
    let closed_port = free_port();
    let s = Server::start_default().await;
    let mut w = admin_ws(&s).await;
    open_tool(
        &mut w,
        1,
        "nmap",
        json!({"target":"127.0.0.1","scan":"connect","ports":format!("{open_port},{closed_port}")}),
    )
    .await;
    w.expect_opened(1).await;
    let end = final_progress(&mut w, 1).await;
    assert_eq!(end["state"], "succeeded", "{end:?}");
    let ports = end["result"]["hosts"][0]["ports"]
        .as_array()
        .cloned()
        .expect("ports");
    let state_of = |p: u16| {
        ports
            .iter()
            .find(|x| x["port"] == p)
            .map(|x| x["state"].clone())
    };
    assert_eq!(state_of(open_port), Some(json!("open")), "{ports:?}");
    assert_eq!(state_of(closed_port), Some(json!("closed")), "{ports:?}");
    drop(open);
}

#[tokio::test]
async fn port_check_and_tls_check_against_the_gateways_own_tls_listener() {
    // The test client speaks plain WebSocket: a plain gateway checks a TLS one.
    let target = Server::start(ServerOptions::default().tls()).await;
    let s = Server::start_default().await;
    let mut w = admin_ws(&s).await;
    let port = target.addr.port();
    open_tool(
        &mut w,
        1,
        "port_check",
        json!({"host":"127.0.0.1","port":port}),
    )
    .await;
    w.expect_opened(1).await;
    let end = final_progress(&mut w, 1).await;
    assert_eq!(end["result"]["open"], true, "{end:?}");
    assert!(end["result"]["connect_ms"].as_f64().is_some());

    open_tool(
        &mut w,
        2,
        "tls_check",
        json!({"host":"127.0.0.1","port":port}),
    )
    .await;
    w.expect_opened(2).await;
    let end = final_progress(&mut w, 2).await;
    assert_eq!(end["state"], "succeeded", "{end:?}");
    let r = &end["result"];
    assert_eq!(r["protocol_version"], "TLSv1_3", "{r}");
    assert_eq!(r["names_match"], true, "{r}");
    assert_eq!(r["expired"], false);
    assert!(r["days_left"].as_i64().is_some_and(|d| d > 300), "{r}");
    let names = r["chain"][0]["names"].as_array().cloned().expect("names");
    assert!(names.contains(&json!("localhost")), "{names:?}");

    let free = free_port();
    open_tool(
        &mut w,
        3,
        "port_check",
        json!({"host":"127.0.0.1","port":free}),
    )
    .await;
    w.expect_opened(3).await;
    let end = final_progress(&mut w, 3).await;
    assert_eq!(end["result"]["open"], false, "{end:?}");
}

#[tokio::test]
async fn the_injection_corpus_is_refused_before_anything_starts() {
    let s = Server::start_default().await;
    let pid = s.pid().expect("pid");
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("pwned");
    let m = marker.display().to_string();
    let corpus: Vec<String> = vec![
        format!("127.0.0.1;touch {m}"),
        format!("127.0.0.1 && touch {m}"),
        format!("127.0.0.1|touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("127.0.0.1\ntouch {m}"),
        "127.0.0.1\u{0}x".into(),
        "-x".into(),
        format!("-oProxyCommand=touch {m}"),
        "--script=vuln".into(),
        "--script=http-brute".into(),
        "127.0.0.1 -sS".into(),
        "a".repeat(300),
        "127\u{ff0e}0\u{ff0e}0\u{ff0e}1".into(),
        "ex\u{0430}mple.com".into(),
        "10.0.0.0/8".into(),
        "0.0.0.0/0".into(),
        "@127.0.0.1".into(),
        "+short".into(),
        "22;id".into(),
    ];
    let admin = s.admin().await;
    let tools = admin.get("/api/tools").await.json()["tools"]
        .as_array()
        .cloned()
        .expect("tools");
    let mut w = connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    let mut ch = 0u32;
    for t in &tools {
        let name = t["name"].as_str().expect("name");
        let props = t["params"]["properties"]
            .as_object()
            .cloned()
            .expect("props");
        let required: Vec<String> = t["params"]["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for param in props.keys() {
            for bad in &corpus {
                let mut params = Map::new();
                for r in &required {
                    let ok = if r == "name" {
                        "example.com"
                    } else {
                        "127.0.0.1"
                    };
                    params.insert(r.clone(), json!(ok));
                }
                params.insert(param.clone(), json!(bad));
                ch += 1;
                open_tool(&mut w, ch, name, Value::Object(params)).await;
                let msg = w.expect_error(Some(ch), "invalid_params").await;
                assert!(msg.contains(param.as_str()), "{name}.{param}: {msg}");
            }
        }
    }
    // A /8 scan target names why.
    ch += 1;
    open_tool(&mut w, ch, "nmap", json!({"target":"10.0.0.0/8"})).await;
    let msg = w.expect_error(Some(ch), "invalid_params").await;
    assert!(msg.contains("/24"), "{msg}");
    assert!(ch > 100, "corpus too small: {ch}");
    assert!(!marker.exists(), "a marker file appeared");
    assert!(
        descendants(pid).is_empty(),
        "the gateway spawned {:?}",
        descendants(pid)
    );
}

#[tokio::test]
async fn close_kills_the_run_and_its_children_and_the_time_limit_does_too() {
    if !have("mtr") || !have("ping") {
        eprintln!("skipped: mtr or ping is not installed");
        return;
    }
    let s =
        Server::start(ServerOptions::default().config("[tools.ping]\ntimeout_secs = 2\n")).await;
    let pid = s.pid().expect("pid");
    let mut w = admin_ws(&s).await;
    // mtr runs mtr-packet as its child: both must go.
    open_tool(&mut w, 1, "mtr", json!({"host":"127.0.0.1","count":50})).await;
    w.expect_opened(1).await;
    let mut procs = HashSet::new();
    for _ in 0..50 {
        procs = descendants(pid);
        if procs.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(procs.len() >= 2, "mtr and mtr-packet should run: {procs:?}");
    w.send_json(json!({"type":"close","ch":1})).await;
    w.expect_control(|f| matches!(f, ServerFrame::Closed { ch: 1, .. }))
        .await;
    wait_gone(&procs).await;

    // The time limit: ping 20 times, limit 2 s.
    open_tool(&mut w, 2, "ping", json!({"host":"127.0.0.1","count":20})).await;
    w.expect_opened(2).await;
    w.expect_output(2, "bytes from").await;
    let procs = descendants(pid);
    assert!(!procs.is_empty());
    let end = final_progress(&mut w, 2).await;
    assert_eq!(end["state"], "timed_out", "{end:?}");
    expect_exit(&mut w, 2).await;
    wait_gone(&procs).await;
}

#[tokio::test]
async fn concurrency_limits_answer_limit_reached() {
    if !have("ping") {
        eprintln!("skipped: ping is not installed");
        return;
    }
    let s = Server::start(
        ServerOptions::default()
            .config("[tools]\nmax_runs_per_user = 1\n[tools.ping]\nconcurrency = 1\n"),
    )
    .await;
    let mut w = admin_ws(&s).await;
    open_tool(&mut w, 1, "ping", json!({"host":"127.0.0.1","count":20})).await;
    w.expect_opened(1).await;
    open_tool(
        &mut w,
        2,
        "port_check",
        json!({"host":"127.0.0.1","port":1}),
    )
    .await;
    let msg = w.expect_error(Some(2), "limit_reached").await;
    assert!(msg.contains("max_runs_per_user"), "{msg}");
    // Another user hits the per-tool limit.
    let admin = s.admin().await;
    admin
        .create_user("op2", "op2-password-123", "operator")
        .await;
    let op = s.login("op2", "op2-password-123").await;
    let mut w2 = connect(&s, op.cookie.as_deref().expect("cookie")).await;
    open_tool(&mut w2, 1, "ping", json!({"host":"127.0.0.1","count":1})).await;
    let msg = w2.expect_error(Some(1), "limit_reached").await;
    assert!(msg.contains("tools.ping.concurrency"), "{msg}");
    // The slot comes back when the run ends.
    w.send_json(json!({"type":"close","ch":1})).await;
    w.expect_control(|f| matches!(f, ServerFrame::Closed { ch: 1, .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_tool(&mut w2, 2, "ping", json!({"host":"127.0.0.1","count":1})).await;
    w2.expect_opened(2).await;
}

#[tokio::test]
async fn a_run_followed_after_a_socket_drop_replays_its_output_whole() {
    if !have("ping") {
        eprintln!("skipped: ping is not installed");
        return;
    }
    let s = Server::start_default().await;
    let admin = s.admin().await;
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    open_tool(&mut w, 1, "ping", json!({"host":"127.0.0.1","count":3})).await;
    let id = w.expect_opened(1).await;
    w.expect_output(1, "icmp_seq=1").await;
    w.close().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut w = connect(&s, &cookie).await;
    w.send_json(json!({"type":"attach","ch":5,"id":id,"offset":0}))
        .await;
    w.expect_opened(5).await;
    let out = w.expect_output(5, "packets transmitted").await;
    for needle in ["PING 127.0.0.1", "icmp_seq=1", "icmp_seq=2", "icmp_seq=3"] {
        assert!(out.contains(needle), "{needle} missing from {out:?}");
    }
    let end = final_progress(&mut w, 5).await;
    assert_eq!(end["result"]["received"], 3, "{end:?}");
}

#[tokio::test]
async fn a_viewer_lists_tools_but_cannot_run_one() {
    let s = Server::start_default().await;
    let admin = s.admin().await;
    admin
        .create_user("viewer1", "viewer-password-1", "viewer")
        .await;
    let v = s.login("viewer1", "viewer-password-1").await;
    v.get("/api/tools").await.assert_status(200);
    let mut w = connect(&s, v.cookie.as_deref().expect("cookie")).await;
    open_tool(
        &mut w,
        1,
        "port_check",
        json!({"host":"127.0.0.1","port":22}),
    )
    .await;
    w.expect_error(Some(1), "forbidden").await;
}

/// Polls `GET /api/executions/{id}` until the run left `running`.
async fn wait_execution(c: &common::Client, id: &str) -> Value {
    for _ in 0..200 {
        let r = c.get(&format!("/api/executions/{id}")).await;
        r.assert_status(200);
        let v = r.json();
        if v["state"] != "running" && v["ended_at"].is_i64() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("execution {id} did not end");
}

#[tokio::test]
async fn rest_executions_run_list_cancel_follow_and_retain() {
    let s = Server::start(ServerOptions::default().config("[tools]\nkeep_count = 2\n")).await;
    let admin = s.admin().await;
    let bad = admin
        .post(
            "/api/tools/port_check/execute",
            &json!({"params":{"host":"127.0.0.1;id","port":22}}),
        )
        .await;
    bad.assert_error(400, Some("invalid_params"));
    admin
        .post("/api/tools/nope/execute", &json!({"params":{}}))
        .await
        .assert_error(404, Some("unknown_tool"));

    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let r = admin
        .post(
            "/api/tools/port_check/execute",
            &json!({"params":{"host":"127.0.0.1","port":port}}),
        )
        .await;
    r.assert_status(202);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let e = wait_execution(&admin, &id).await;
    assert_eq!(e["state"], "succeeded", "{e}");
    assert_eq!(e["result"]["open"], true);
    assert_eq!(e["params"]["port"], port);
    assert!(
        e["output"].as_str().is_some_and(|o| o.contains("open")),
        "{e}"
    );
    assert_eq!(e["truncated"], false);

    // Follow the finished run on a channel: stored output, the final state, exit.
    let mut w = connect(&s, admin.cookie.as_deref().expect("cookie")).await;
    w.send_json(json!({"type":"open","ch":1,"kind":"tool","execution_id":id}))
        .await;
    w.expect_opened(1).await;
    w.expect_output(1, "open").await;
    let end = final_progress(&mut w, 1).await;
    assert_eq!(end["result"]["open"], true);
    expect_exit(&mut w, 1).await;

    if have("ping") {
        // Cancel a long run by DELETE; the list shows it cancelled.
        let r = admin
            .post(
                "/api/tools/ping/execute",
                &json!({"params":{"host":"127.0.0.1","count":20}}),
            )
            .await;
        r.assert_status(202);
        let pid = r.json()["id"].as_str().expect("id").to_string();
        // A second socket follows it live.
        w.send_json(json!({"type":"open","ch":2,"kind":"tool","execution_id":pid}))
            .await;
        w.expect_opened(2).await;
        w.expect_output(2, "bytes from").await;
        admin
            .delete(&format!("/api/executions/{pid}"))
            .await
            .assert_status(202);
        let e = wait_execution(&admin, &pid).await;
        assert_eq!(e["state"], "cancelled", "{e}");
        let end = final_progress(&mut w, 2).await;
        assert_eq!(end["state"], "cancelled");
        admin
            .delete(&format!("/api/executions/{pid}"))
            .await
            .assert_error(409, Some("not_running"));
        let list = admin.get("/api/executions?state=cancelled").await.json();
        assert_eq!(list["total"], 1, "{list}");
        assert_eq!(list["executions"][0]["id"], json!(pid));
        assert!(list["executions"][0].get("output").is_none());
    }

    // Retention: keep_count = 2 per workspace.
    for _ in 0..2 {
        let r = admin
            .post(
                "/api/tools/port_check/execute",
                &json!({"params":{"host":"127.0.0.1","port":port}}),
            )
            .await;
        let id = r.json()["id"].as_str().expect("id").to_string();
        wait_execution(&admin, &id).await;
    }
    // Retention applies when the finished record is written, just after it ended.
    let mut list = Value::Null;
    for _ in 0..50 {
        list = admin.get("/api/executions").await.json();
        if list["total"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list["total"], 2, "{list}");
    admin
        .get(&format!("/api/executions/{id}"))
        .await
        .assert_error(404, Some("not_found"));

    // Viewers read, never run; another user's personal executions are not theirs.
    admin
        .create_user("viewer2", "viewer-password-2", "viewer")
        .await;
    let v = s.login("viewer2", "viewer-password-2").await;
    v.post(
        "/api/tools/port_check/execute",
        &json!({"params":{"host":"127.0.0.1","port":port}}),
    )
    .await
    .assert_error(403, Some("forbidden"));
    let theirs = v.get("/api/executions").await.json();
    assert_eq!(theirs["total"], 0);
    let audit = admin.get("/api/audit?limit=200").await.json();
    assert!(
        audit.to_string().contains("tool.run"),
        "no tool.run in the audit"
    );
    drop(l);
}

/// utime + stime of `pid` in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3; utime 14 and stime 15 (1-based) → 11, 12 here.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[tokio::test]
async fn system_stats_by_rest_and_on_a_shared_sampler() {
    let s = Server::start(ServerOptions::default().config("[mux]\nmax_sockets_per_login = 256\n"))
        .await;
    let admin = s.admin().await;
    let st = admin.get("/api/system/stats").await;
    st.assert_status(200);
    let v = st.json();
    assert!(
        v["cpu"]["per_core_pct"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    assert!(v["memory"]["total"].as_u64().is_some_and(|m| m > 0), "{v}");
    assert!(v["processes"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(
        v["gateway"]["rss_bytes"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
    assert!(v["uptime_secs"].as_u64().is_some(), "{v}");

    // A channel asks for 50 ms and gets 250 ms.
    let cookie = admin.cookie.clone().expect("cookie");
    let mut w = connect(&s, &cookie).await;
    w.send_json(json!({"type":"open","ch":1,"kind":"stats","interval_ms":50}))
        .await;
    w.expect_opened(1).await;
    let mut ats = Vec::new();
    for _ in 0..3 {
        let f = w
            .expect_control(|f| matches!(f, ServerFrame::Progress { ch: 1, .. }))
            .await;
        if let ServerFrame::Progress { event, .. } = f {
            assert_eq!(event["interval_ms"], 250);
            assert_eq!(event["kind"], "system");
            assert!(event["gateway"]["channels"]["stats"].as_i64() >= Some(1));
            ats.push(event["at_ms"].as_i64().expect("at_ms"));
        }
    }
    assert!(ats.windows(2).all(|p| p[1] - p[0] >= 200), "{ats:?}");

    // 200 sockets watching at 250 ms cost one sampler: CPU with and without them.
    let pid = s.pid().expect("pid");
    let measure = Duration::from_secs(5);
    let t0 = cpu_ticks(pid);
    tokio::time::sleep(measure).await;
    let one = cpu_ticks(pid) - t0;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        let mut w = connect(&s, &cookie).await;
        w.send_json(json!({"type":"open","ch":1,"kind":"stats","interval_ms":250}))
            .await;
        sockets.push(w);
    }
    for w in sockets.iter_mut() {
        w.expect_opened(1).await;
    }
    // The clients read everything (a browser would) while the gateway is measured.
    let reader = tokio::spawn(async move {
        let mut frames = 0usize;
        let end = tokio::time::Instant::now() + Duration::from_secs(6);
        while tokio::time::Instant::now() < end {
            for w in sockets.iter_mut() {
                while w.next_event(Duration::from_millis(1)).await.is_some() {
                    frames += 1;
                }
            }
        }
        (sockets, frames)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t1 = cpu_ticks(pid);
    tokio::time::sleep(measure).await;
    let many = cpu_ticks(pid) - t1;
    let (_sockets, frames) = reader.await.expect("reader");
    let v = admin.get("/api/system/stats").await.json();
    assert!(v["gateway"]["stats_watchers"].as_u64() >= Some(200), "{v}");
    eprintln!(
        "stats: gateway CPU over {measure:?}: 1 watcher {one} ticks ({:.1}% of a core), 201 watchers {many} ticks ({:.1}%); {frames} progress frames read",
        one as f64 / measure.as_secs_f64(),
        many as f64 / measure.as_secs_f64()
    );
    // One sampler: 200 more watchers cost framing and sending, not 200 samplers
    // (a sampler per watcher would be ~200 × the one-watcher cost).
    assert!(many < one * 50 + 100, "one {one}, many {many}");
}
