//! `opsgate-load rest`: the REST figures of issue 2.
//!
//! 1. logs in;
//! 2. makes sure the user has `--sessions` saved sessions named `bench-r00000…` in
//!    folders `bench-00…` (bulk, through `POST /api/sessions/import?mode=merge` in chunks
//!    under the body limit; merge makes a re-run update rather than duplicate them);
//! 3. times `GET /api/sessions?q=` for a term that matches one session, one that matches
//!    about a tenth of them, and the whole listing, `--requests` times each, one at a time;
//! 4. times `--logins` logins with `--concurrency` clients at once, then logs them out.
//!
//! Every loop is bounded in count and in time ([`PHASE_LIMIT`]); only loopback targets
//! are accepted, so the benchmark cannot be pointed at someone else's gateway.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Longest any one phase may run before it stops early (and says so).
const PHASE_LIMIT: Duration = Duration::from_secs(300);
/// Sessions per import request: about 100 bytes of YAML each, well under the 1 MiB limit.
const IMPORT_CHUNK: usize = 2_000;
/// Sessions per folder.
const PER_FOLDER: usize = 100;
/// Distinct `site=` tags; a `site=sNN` term matches one in this many sessions.
const SITES: usize = 10;

/// Arguments of `opsgate-load rest`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestArgs {
    /// Base URL of the gateway, including any base path (loopback only)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// User to log in as (an operator or admin; the saved sessions are created as theirs)
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// That user's password
    #[arg(long, env = "OPSGATE_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Saved sessions to have in place before searching
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Timed search requests per kind of query
    #[arg(long, default_value_t = 500)]
    pub requests: usize,
    /// Timed logins
    #[arg(long, default_value_t = 200)]
    pub logins: usize,
    /// Clients logging in at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// Runs the scenario and prints a table.
pub async fn run(args: RestArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    check_loopback(&base)?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(args.concurrency.max(1))
        .build()?;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
    };

    let cookie = api
        .login(&args.user, &args.password)
        .await?
        .1
        .context("first login")?;
    println!("opsgate REST benchmark against {base} as {}", args.user);

    // Populate.
    let t0 = Instant::now();
    let (created, updated) = populate(&api, &cookie, args.sessions).await?;
    let took = t0.elapsed();
    let total = count_sessions(&api, &cookie, None).await?;
    println!(
        "saved sessions: {total} in the user's inventory; bench set of {} written in {:.2} s \
         ({created} created, {updated} updated; {:.0} sessions/s through import)",
        args.sessions,
        took.as_secs_f64(),
        args.sessions as f64 / took.as_secs_f64().max(1e-9)
    );
    println!();

    // Search.
    let mut rows = Vec::new();
    if args.sessions > 0 {
        let one = format!("bench-r{:05}", args.sessions / 2);
        let hits = count_sessions(&api, &cookie, Some(&one)).await?;
        if hits != 1 {
            bail!("q={one} should match exactly one session, matched {hits}");
        }
        rows.push(
            time_search(
                &api,
                &cookie,
                &format!("q={one}"),
                &one,
                args.requests,
                hits,
            )
            .await?,
        );
        let tenth = "site=s03";
        let hits = count_sessions(&api, &cookie, Some(tenth)).await?;
        rows.push(
            time_search(
                &api,
                &cookie,
                &format!("q={tenth}"),
                tenth,
                args.requests,
                hits,
            )
            .await?,
        );
    }
    rows.push(time_search(&api, &cookie, "(no q: all)", "", args.requests, total).await?);

    // Logins.
    rows.push(time_logins(&api, &args).await?);

    print_table(&rows);
    Ok(())
}

/// Refuses anything but a loopback address or `localhost`.
fn check_loopback(base: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(base).with_context(|| format!("--url {base:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--url must be http:// or https://");
    }
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing to load-test {host}: only loopback targets (127.0.0.0/8, ::1, localhost)");
    }
    Ok(())
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn headers(cookie: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-requested-with", HeaderValue::from_static("opsgate-load"));
        if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
            h.insert(COOKIE, c);
        }
        h
    }

    /// Logs in; returns the status and, on success, the `name=value` of the cookie.
    async fn login(
        &self,
        user: &str,
        password: &str,
    ) -> anyhow::Result<(reqwest::StatusCode, Option<String>)> {
        let r = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .headers(Self::headers(None))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await?;
        let status = r.status();
        let cookie = crate::common::session_cookie(r.headers());
        let _ = r.bytes().await;
        if status.is_success() && cookie.is_none() {
            bail!("login answered {status} without a cookie");
        }
        Ok((status, cookie.filter(|_| status.is_success())))
    }

    async fn logout(&self, cookie: &str) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/api/auth/logout", self.base))
            .headers(Self::headers(Some(cookie)))
            .send()
            .await?;
        Ok(())
    }

    async fn sessions(&self, cookie: &str, q: &str) -> anyhow::Result<reqwest::Response> {
        let mut url = reqwest::Url::parse(&format!("{}/api/sessions", self.base))?;
        if !q.is_empty() {
            url.query_pairs_mut().append_pair("q", q);
        }
        Ok(self
            .http
            .get(url)
            .headers(Self::headers(Some(cookie)))
            .send()
            .await?)
    }
}

/// The bench set as legacy-layout YAML, rows `from..to`.
fn bench_yaml(from: usize, to: usize) -> String {
    let mut y = String::with_capacity((to - from) * 160);
    let mut folder = usize::MAX;
    for i in from..to {
        if i / PER_FOLDER != folder {
            folder = i / PER_FOLDER;
            y.push_str(&format!("- folder_name: bench-{folder:03}\n  sessions:\n"));
        }
        y.push_str(&format!(
            "    - {{display_name: bench-r{i:05}, host: 10.{}.{}.{}, port: '22', DeviceType: cisco_ios, username: netops, site: s{:02}, Model: C9300}}\n",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            i % SITES,
        ));
    }
    y
}

/// Imports the bench set in chunks; returns (created, updated).
async fn populate(api: &Api, cookie: &str, n: usize) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + PHASE_LIMIT;
    let (mut created, mut updated) = (0, 0);
    let mut from = 0;
    while from < n {
        if Instant::now() > deadline {
            bail!("populating stopped after {PHASE_LIMIT:?} at {from} of {n} sessions");
        }
        // IMPORT_CHUNK is a multiple of PER_FOLDER: no folder is split across imports.
        let to = (from + IMPORT_CHUNK).min(n);
        let r = api
            .http
            .post(format!("{}/api/sessions/import?mode=merge", api.base))
            .headers(Api::headers(Some(cookie)))
            .header("content-type", "application/yaml")
            .body(bench_yaml(from, to))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("import of rows {from}..{to} answered {status}: {body}");
        }
        created += body["created"].as_u64().unwrap_or(0);
        updated += body["updated"].as_u64().unwrap_or(0);
        from = to;
    }
    Ok((created, updated))
}

async fn count_sessions(api: &Api, cookie: &str, q: Option<&str>) -> anyhow::Result<usize> {
    let r = api.sessions(cookie, q.unwrap_or("")).await?;
    let status = r.status();
    if !status.is_success() {
        bail!("GET /api/sessions answered {status}");
    }
    let v: Value = r.json().await?;
    Ok(v["folders"]
        .as_array()
        .ok_or_else(|| anyhow!("no folders in the answer"))?
        .iter()
        .map(|f| f["sessions"].as_array().map_or(0, Vec::len))
        .sum())
}

/// One line of the table.
struct Row {
    what: String,
    done: u64,
    failed: u64,
    hist: Histogram<u64>,
    elapsed: Duration,
    note: String,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

async fn time_search(
    api: &Api,
    cookie: &str,
    label: &str,
    q: &str,
    n: usize,
    hits: usize,
) -> anyhow::Result<Row> {
    let mut hist = histogram()?;
    let (mut done, mut failed) = (0u64, 0u64);
    let mut bytes = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        if start.elapsed() > PHASE_LIMIT {
            break;
        }
        let t = Instant::now();
        let r = api.sessions(cookie, q).await;
        let ok = match r {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => {
                    bytes = b.len();
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        hist.record(t.elapsed().as_micros().max(1) as u64)?;
        done += 1;
        if !ok {
            failed += 1;
        }
    }
    Ok(Row {
        what: format!("GET /api/sessions {label}"),
        done,
        failed,
        hist,
        elapsed: start.elapsed(),
        note: format!("{hits} hits, {} KiB", bytes / 1024),
    })
}

async fn time_logins(api: &Api, args: &RestArgs) -> anyhow::Result<Row> {
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.logins);
    for _ in 0..args.logins {
        let permit = gate.clone().acquire_owned().await?;
        if start.elapsed() > PHASE_LIMIT {
            break;
        }
        let (api, user, pw) = (api.clone(), args.user.clone(), args.password.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = api.login(&user, &pw).await;
            let took = t.elapsed();
            drop(permit);
            (took, r.ok().and_then(|(_, c)| c))
        }));
    }
    let mut hist = histogram()?;
    let (mut done, mut failed) = (0u64, 0u64);
    let mut cookies = Vec::new();
    for t in tasks {
        let (took, cookie) = t.await?;
        hist.record(took.as_micros().max(1) as u64)?;
        done += 1;
        match cookie {
            Some(c) => cookies.push(c),
            None => failed += 1,
        }
    }
    let elapsed = start.elapsed();
    // Not timed: end the logins again so the benchmark leaves no sessions behind.
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = Vec::new();
    for c in cookies {
        let permit = gate.clone().acquire_owned().await?;
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let _ = api.logout(&c).await;
            drop(permit);
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(Row {
        what: format!("POST /api/auth/login, {} at once", args.concurrency),
        done,
        failed,
        hist,
        elapsed,
        note: String::new(),
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<46} {:>6} {:>6} {:>9} {:>9} {:>9} {:>10}  note",
        "request", "n", "failed", "p50 ms", "p99 ms", "max ms", "per s"
    );
    for r in rows {
        let ms = |q: f64| r.hist.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<46} {:>6} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>10.1}  {}",
            r.what,
            r.done,
            r.failed,
            ms(0.50),
            ms(0.99),
            r.hist.max() as f64 / 1000.0,
            r.done as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.note
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "http://127.0.0.1:8080",
            "https://localhost/opsgate",
            "http://[::1]:1",
            "http://127.1.2.3",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1", "https://example.com", "ftp://127.0.0.1"] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bench_yaml_splits_folders_and_tags_sites() {
        let y = bench_yaml(95, 105);
        assert!(y.contains("- folder_name: bench-000\n"));
        assert!(y.contains("- folder_name: bench-001\n"));
        assert!(y.contains("display_name: bench-r00100"));
        assert!(y.contains("site: s05"));
        assert_eq!(y.matches("display_name").count(), 10);
    }
}
