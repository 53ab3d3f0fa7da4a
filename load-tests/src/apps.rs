//! `opsgate-load apps-poll`: the server status poller of issue 14.
//!
//! 1. logs in, stores a password credential and trusts the sshd's host key through one
//!    `ssh` channel (as a user would);
//! 2. starts the unreachable targets itself: half are closed ports (bound, then
//!    released), half point at a *blackholed* listener of this process that accepts TCP
//!    and never answers (so the check can only end by its timeout);
//! 3. creates `--servers` saved sessions of type `linux`, `--unreachable-pct` of them
//!    unreachable, the rest pointing at the real sshd;
//! 4. watches `GET /metrics` for the poller's rounds: the first round that started after
//!    every session existed is the *cold* round (every reachable server logs in), the
//!    next the *warm* one (the poller's cached connections are reused). For each: wall
//!    time as the gateway measured it, servers online, SSH connections opened, and the
//!    gateway's CPU seconds from the end of the previous round to the end of this one
//!    (that stretch holds the round and the idle interval before it).
//!
//! The gateway must run with `[apps] poll_interval_secs` set (the smoke run uses 1);
//! every wait is bounded ([`ROUND_LIMIT`]).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::common::{check_loopback, Cell, ProcSample, Report};
use crate::opsgate::{close_channels, open_channels, ChannelSpec, Gateway};

/// The longest the scenario waits for one poll round.
const ROUND_LIMIT: Duration = Duration::from_secs(300);

/// Arguments of `opsgate-load apps-poll`.
#[derive(Debug, Clone, clap::Args)]
pub struct AppsPollArgs {
    /// Base URL of the gateway (loopback only)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// User to log in as (operator or admin)
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// That user's password
    #[arg(long, env = "OPSGATE_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// The gateway's pid, for its CPU time
    #[arg(long, default_value_t = 0)]
    pub gateway_pid: u32,
    /// Port of the real sshd the reachable servers point at
    #[arg(long)]
    pub ssh_port: u16,
    /// Account on that sshd
    #[arg(long, default_value = "opsgate-test")]
    pub ssh_user: String,
    /// Its password
    #[arg(long, env = "LOAD_SSH_PASSWORD", hide_env_values = true)]
    pub ssh_password: String,
    /// Saved sessions of type linux to create
    #[arg(long, default_value_t = 200)]
    pub servers: usize,
    /// Percentage of them that are unreachable (half closed ports, half blackholed)
    #[arg(long, default_value_t = 10)]
    pub unreachable_pct: usize,
    /// Write the figures as JSON lines here
    #[arg(long)]
    pub json: Option<String>,
}

/// Accepts connections and holds them unanswered until the scenario ends (at most
/// `max` of them; later ones are dropped, which a check sees as a reset).
async fn blackhole(max: usize) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            if held.len() < max {
                held.push(s);
            }
        }
    });
    Ok((port, task))
}

fn closed_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

struct Metrics {
    rounds: u64,
    round_secs: f64,
    servers: u64,
    online: u64,
    connects: u64,
}

async fn metrics(http: &reqwest::Client, base: &str) -> anyhow::Result<Metrics> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let get = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Metrics {
        rounds: get("opsgate_apps_poll_rounds_total") as u64,
        round_secs: get("opsgate_apps_poll_round_seconds"),
        servers: get("opsgate_apps_poll_round_servers") as u64,
        online: get("opsgate_apps_poll_round_online") as u64,
        connects: get("opsgate_apps_poll_connects_total") as u64,
    })
}

/// Waits for the round counter to pass `after`; returns the metrics then and the
/// gateway's CPU time at that moment.
async fn next_round(
    http: &reqwest::Client,
    base: &str,
    after: u64,
    pid: u32,
) -> anyhow::Result<(Metrics, f64)> {
    let deadline = Instant::now() + ROUND_LIMIT;
    loop {
        let m = metrics(http, base).await?;
        if m.rounds > after {
            let cpu = ProcSample::read(pid).map(|p| p.cpu_secs).unwrap_or(0.0);
            return Ok((m, cpu));
        }
        if Instant::now() > deadline {
            bail!("no poll round within {ROUND_LIMIT:?}: is [apps] poll_interval_secs set?");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the scenario and prints a table.
pub async fn run(a: AppsPollArgs) -> anyhow::Result<()> {
    let base = a.url.trim_end_matches('/').to_string();
    check_loopback(&base)?;
    if a.servers == 0 || a.unreachable_pct > 100 {
        bail!("--servers must be > 0 and --unreachable-pct at most 100");
    }
    let gw = Gateway::new(&base)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let cookie = gw.login(&a.user, &a.password).await?;
    let cred = gw
        .create_password_credential(&cookie, "apps-bench", &a.ssh_password)
        .await?;
    let mut ws = gw.connect(&cookie).await?;
    open_channels(
        &mut ws,
        &[1],
        &ChannelSpec::Ssh {
            host: "127.0.0.1".into(),
            port: a.ssh_port,
            username: a.ssh_user.clone(),
            credential_id: cred.clone(),
        },
    )
    .await
    .context("trusting the sshd's host key")?;
    close_channels(&mut ws, &[1]).await?;

    // Servers the user already has (another scenario's) are polled too.
    let existing = http
        .get(format!("{base}/api/servers"))
        .header("cookie", &cookie)
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["servers"]
        .as_array()
        .map_or(0, Vec::len);
    let expected = existing + a.servers;
    let unreachable = a.servers * a.unreachable_pct / 100;
    let (hole, hole_task) = blackhole(a.servers).await?;
    let closed = closed_port()?;
    // One import is one transaction: a poll round sees none of them or all of them, so
    // the first round that sees them is cold for every server.
    let started = Instant::now();
    let mut yaml = String::from("- folder_name: apps-bench\n  sessions:\n");
    for i in 0..a.servers {
        let port = if i < unreachable / 2 {
            closed
        } else if i < unreachable {
            hole
        } else {
            a.ssh_port
        };
        yaml.push_str(&format!(
            "    - {{display_name: srv-{i:04}, host: 127.0.0.1, port: '{port}', device_type: linux, username: {}, credential_id: {cred}}}\n",
            a.ssh_user
        ));
    }
    let r = http
        .post(format!("{base}/api/sessions/import?mode=merge"))
        .header("x-requested-with", "opsgate-load")
        .header("cookie", &cookie)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "importing the servers answered {}: {}",
            r.status(),
            r.text().await?
        );
    }
    let created_in = started.elapsed();

    let mut prev = metrics(&http, &base).await?;
    let mut cpu_prev = ProcSample::read(a.gateway_pid)
        .map(|p| p.cpu_secs)
        .unwrap_or(0.0);
    let mut report = Report::new("apps-poll");
    let mut skipped = 0;
    for label in ["cold", "warm"] {
        let (m, cpu) = loop {
            let (m, cpu) = next_round(&http, &base, prev.rounds, a.gateway_pid).await?;
            if m.servers as usize == expected {
                break (m, cpu);
            }
            // A round that started before the import saw none of the servers.
            skipped += 1;
            if skipped > 2 {
                return Err(anyhow!(
                    "rounds keep seeing {} servers, expected {}",
                    m.servers,
                    expected
                ));
            }
            (prev, cpu_prev) = (m, cpu);
        };
        report.row(vec![
            ("round", Cell::Text(label.into())),
            ("servers", Cell::Int(m.servers as i64)),
            ("unreachable", Cell::Int(unreachable as i64)),
            ("online", Cell::Int(m.online as i64)),
            ("ssh_logins", Cell::Int((m.connects - prev.connects) as i64)),
            ("round_wall_s", Cell::Num(m.round_secs, 2)),
            ("gw_cpu_s", Cell::Num(cpu - cpu_prev, 2)),
        ]);
        cpu_prev = cpu;
        prev = m;
    }
    hole_task.abort();
    eprintln!(
        "created {} sessions in {:.1} s",
        a.servers,
        created_in.as_secs_f64()
    );
    report.finish(a.json.as_deref(), &base)
}
