//! opsgate: a WebSocket-first realtime gateway for network operators.
// One audited exception: `memory` (the library itself forbids unsafe code).
#![deny(unsafe_code)]

mod memory;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use opsgate::auth::{self, Role};
use opsgate::config::{Config, LogFormat};
use opsgate::store::Store;

const CONFIG_HELP: &str = "\
CONFIGURATION (TOML file via --config; every key may also be set as OPSGATE_<SECTION>__<KEY>,
e.g. OPSGATE_MUX__WINDOW_BYTES=65536 or OPSGATE_BASE_PATH=/opsgate):
  listen = \"127.0.0.1:8080\"        data_dir = \"./data\" (made 0700, its files 0600)
  base_path = \"\"                     serve everything under this prefix (reverse proxies)
  public_url = \"https://host/opsgate\" origin allowed for writes and the WebSocket
  allowed_origins = []               extra allowed origins
  allowed_hosts = []                 extra Host names (\"name\" or \"name:port\"); others get 421
  trusted_proxies = []               proxies whose X-Forwarded-* and X-Request-Id are believed
  insecure_listen = false            allow plain HTTP on a non-loopback address
  max_body_bytes = 1048576
  metrics_token = \"\"                 bearer token GET /metrics needs (empty: open)
  log_format = \"text\"                or \"json\" (one object per line)
  [http] header_read_timeout_secs = 10, idle_timeout_secs = 60, max_connections = 8192,
         max_connections_per_ip = 256  (the total is kept below 3/4 of the fd limit)
  [rate_limit] per_user_per_minute = 3000, per_ip_per_minute = 6000  (0 = off)
  [tls] cert = \"certs/opsgate-dev.crt\", key = \"certs/opsgate-dev.key\"
  [session] idle_timeout_secs = 28800, absolute_timeout_secs = 604800, cookie_name = \"opsgate_session\"
  [login_limit] per_ip = 5, per_username = 20 (distinct addresses), window_secs = 300,
                in_flight_per_ip = 4, in_flight_per_username = 4
  [mux] window_bytes = 262144, ring_bytes = 262144, grace_secs = 300, max_frame_bytes = 1048576,
        max_sockets_per_login = 16, max_channels_per_login = 256, max_channels_total = 2048,
        max_channels_per_user = 512, input_window_bytes = 131072,
        opens_per_minute = 600 (per user, bursts of half; 0 = unlimited),
        heartbeat_secs = 30,
        hostkey_answer_secs = 120
  [pty] user = \"nobody\"             account PTY programs run as when the gateway is root
  [pty.programs] top = [\"top\", \"-s\"] name -> argv of programs a pty channel may start
  [ssh] connect_timeout_secs = 10, keepalive_secs = 15, term = \"xterm-256color\",
        allowed_networks = [] (CIDRs; empty = any), denied_networks = [\"169.254.0.0/16\", \"fe80::/10\"],
        saved_sessions_only = false (true: non-admins may open saved sessions only)
  [tools] max_runs_per_user = 4, max_runs_total = 32, output_bytes = 1048576 (kept per execution),
          keep_count = 1000, keep_days = 30 (finished executions per workspace)
  [tools.<name>] enabled = true, timeout_secs, concurrency = 8, max_prefix = 24 (widest scan target)
          for ping, traceroute, mtr, dig, whois, nmap, port_check, tls_check
  [memory] release_secs = 10 (free heap and unused code pages go back this often; 0: after start-up
           only), release_code_pages = true (only after a period with under 1 % of a core used)
  [netbox] connect_timeout_ms = 5000, request_timeout_ms = 30000, max_response_bytes = 33554432,
           max_listing_bytes = 268435456, page_size = 1000, max_pages = 200, concurrency = 4,
           retries = 3 (429/5xx), retry_base_ms = 500, max_import_devices = 20000,
           port_field = \"ssh_port\", default_device_type = \"\" (empty: refuse unmapped platforms)
  [netbox.platforms] \"vyos\" = \"linux\"  NetBox platform slug -> device type, over the defaults
ENVIRONMENT: OPSGATE_ADMIN_PASSWORD sets the first admin's password; OPSGATE_LOG sets the
log filter (e.g. info, opsgate=debug).";

#[derive(Parser)]
#[command(name = "opsgate", version, about = "Realtime gateway for network operators", after_help = CONFIG_HELP)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "OPSGATE_LISTEN", global = true)]
    listen: Option<SocketAddr>,
    /// Data directory (database, master key) [default: ./data]
    #[arg(long, env = "OPSGATE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "OPSGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address
    #[arg(long, env = "OPSGATE_INSECURE_LISTEN", global = true)]
    insecure_listen: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default)
    Serve,
    /// Manage users in the data directory (stop the gateway first: redb allows one writer)
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Write a self-signed certificate for localhost into certs/
    GenCert {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Extra DNS names or IPs for the certificate
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user; the password is read from standard input
    Add {
        username: String,
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// Change a user's password (read from standard input)
    Passwd { username: String },
    /// Delete a user and everything they own
    Del { username: String },
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    cfg.insecure_listen |= args.insecure_listen;
    Ok(cfg)
}

fn read_password() -> anyhow::Result<String> {
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn user_command(cfg: &Config, action: UserAction) -> anyhow::Result<()> {
    opsgate::store::prepare_data_dir(&cfg.data_dir)?;
    let store = Store::open(&cfg.data_dir)?;
    opsgate::store::tighten_data_dir(&cfg.data_dir)?;
    match action {
        UserAction::Add { username, role } => {
            let role = Role::parse(&role).context("role must be admin, operator or viewer")?;
            let hash = auth::hash_password(&read_password()?)?;
            store.write_blocking(|tx| auth::create_user(tx, &username, hash, role, "cli"))?;
            println!("user {username} added ({})", role.as_str());
        }
        UserAction::Passwd { username } => {
            let hash = auth::hash_password(&read_password()?)?;
            store.write_blocking(|tx| auth::update_user(tx, &username, Some(hash), None, "cli"))?;
            println!("password of {username} changed");
        }
        UserAction::Del { username } => {
            store.write_blocking(|tx| auth::delete_user(tx, &username, "cli"))?;
            println!("user {username} deleted");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    if !cfg.listen.ip().is_loopback() && !cfg.tls_enabled() && !cfg.insecure_listen {
        bail!(
            "refusing plain HTTP on non-loopback address {}: configure [tls] (see `opsgate gen-cert`) or pass --insecure-listen",
            cfg.listen
        );
    }
    let tls = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => Some(opsgate::tls::acceptor(c, k)?),
        _ => None,
    };
    let app = opsgate::app::App::open(cfg.clone())
        .with_context(|| format!("opening data directory {}", cfg.data_dir.display()))?;
    if let Some(pw) =
        auth::bootstrap_admin(&app.store, std::env::var("OPSGATE_ADMIN_PASSWORD").ok())?
    {
        println!("created user 'admin' with password: {pw}");
        println!("(shown once; change it with `opsgate user passwd admin`)");
    }
    // Jobs that were pending or running when the gateway stopped continue now.
    let resumed = opsgate::jobs::runner::resume_all(&app)
        .await
        .context("resuming jobs")?;
    if resumed > 0 {
        tracing::info!(jobs = resumed, "resumed unfinished jobs");
    }
    // Finished jobs beyond `[jobs] keep_jobs` per workspace go, now and every 10 min.
    opsgate::jobs::retention::start(app.clone());
    // Cron schedules; a run missed while the gateway was down starts once now.
    tokio::spawn(opsgate::jobs::schedules::scheduler(app.clone()));
    // Apps: interrupted starts/stops turn failed; the auto-stop sweeper and the poller run.
    opsgate::apps::start(&app).await.context("starting apps")?;
    let cleaner = auth::RedbSessionStore::new(app.store.clone());
    tokio::spawn(async move {
        use tower_sessions::session_store::ExpiredDeletion;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = cleaner.delete_expired().await {
                tracing::warn!(error = %e, "removing expired login sessions failed");
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("opsgate listening on {scheme}://{addr}{}/", cfg.base_path);
    let router = opsgate::http::router(app.clone());
    let memory = cfg.memory.clone();
    let mut code = release_unused_memory(memory.release_code_pages);
    if memory.release_secs > 0 {
        tokio::spawn(async move {
            let period = std::time::Duration::from_secs(memory.release_secs);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let mut cpu_before = memory::cpu_time();
            loop {
                tick.tick().await;
                let cpu_now = memory::cpu_time();
                let quiet = match (cpu_before, cpu_now) {
                    (Some(before), Some(now)) => {
                        memory::was_quiet(now.saturating_sub(before), period)
                    }
                    _ => true,
                };
                cpu_before = cpu_now;
                // Free heap always goes back; code pages only after a quiet period.
                let release =
                    tokio::task::spawn_blocking(move || release_unused_memory(code && quiet));
                let keep_releasing = release.await.unwrap_or(false);
                if quiet {
                    code = keep_releasing;
                }
            }
        });
    }
    opsgate::http::serve(app.clone(), listener, router, tls, shutdown_signal()).await;
    println!("opsgate stopped");
    Ok(())
}

/// Free heap pages and, if `code`, the executable's code pages go back to the system
/// (`[memory]`; see `memory::release_code_pages` for why that is safe and cheap).
/// Returns whether to release code pages next time: a system that refuses (no
/// `/proc/self/pagemap` in some sandboxes) is told about once, not every period.
fn release_unused_memory(code: bool) -> bool {
    memory::release_free_heap();
    if !code {
        return false;
    }
    let started = std::time::Instant::now();
    match memory::release_code_pages() {
        Ok(bytes) => {
            tracing::debug!(
                bytes,
                took_us = started.elapsed().as_micros() as u64,
                "released code pages"
            );
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot release code pages; keeping them from now on");
            false
        }
    }
}

/// Logs go to standard error, as text or one JSON object per line (`log_format`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    memory::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::GenCert { dir, names }) => {
            init_logging(LogFormat::Text);
            let (c, k) = opsgate::tls::gen_cert(&dir, &names)?;
            println!("wrote {} and {}", c.display(), k.display());
            Ok(())
        }
        Some(Command::User { action }) => {
            let cfg = load_config(&cli.serve)?;
            init_logging(cfg.log_format);
            user_command(&cfg, action)
        }
        Some(Command::Serve) | None => {
            let cfg = load_config(&cli.serve)?;
            init_logging(cfg.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(cfg))
        }
    }
}
