//! Typed configuration: one struct with defaults, loaded from TOML and overridden by
//! `OPSGATE_*` environment variables (`OPSGATE_MUX__WINDOW_BYTES=65536` sets `[mux] window_bytes`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole gateway configuration. Every key has a default; see `opsgate --help`
/// and the README for the documented list.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// Directory holding the redb database and the credential master key.
    pub data_dir: PathBuf,
    /// Path prefix everything is served under (e.g. `/opsgate` behind a proxy); empty for `/`.
    pub base_path: String,
    /// The public URL users reach the gateway at (e.g. `https://ops.example.com/opsgate`);
    /// its origin is allowed for state-changing requests and the WebSocket.
    pub public_url: Option<String>,
    /// Extra origins allowed for state-changing requests and the WebSocket.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` / `X-Forwarded-Host` are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_listen: bool,
    /// Largest accepted REST request body.
    pub max_body_bytes: usize,
    /// Extra `Host` names (`name` for any port, or `name:port`) the gateway answers to,
    /// besides the listen address, loopback names and `public_url`'s host. Any other
    /// `Host` gets 421 (DNS rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Bearer token `GET /metrics` requires; empty leaves it open.
    pub metrics_token: String,
    /// Log line format on standard error.
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub rate_limit: RateLimitConfig,
    pub tls: TlsConfig,
    pub session: SessionConfig,
    pub login_limit: LoginLimitConfig,
    pub mux: MuxConfig,
    pub pty: PtyConfig,
    pub ssh: SshConfig,
    pub jobs: JobsConfig,
    /// `[apps]`: servers' status polling, app start/stop and auto-stop.
    pub apps: AppsConfig,
    /// `[tools]` and `[tools.<name>]`: network tools (see `crate::tools`).
    pub tools: crate::tools::ToolsConfig,
    pub netbox: NetboxConfig,
    pub memory: MemoryConfig,
    /// `[inventory]`: how much one workspace may hold.
    pub inventory: InventoryConfig,
    /// `[audit]`: how much of the audit log is kept.
    pub audit: AuditConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            base_path: String::new(),
            public_url: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            insecure_listen: false,
            max_body_bytes: 1024 * 1024,
            allowed_hosts: Vec::new(),
            metrics_token: String::new(),
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            tls: TlsConfig::default(),
            session: SessionConfig::default(),
            login_limit: LoginLimitConfig::default(),
            mux: MuxConfig::default(),
            pty: PtyConfig::default(),
            ssh: SshConfig::default(),
            jobs: JobsConfig::default(),
            apps: AppsConfig::default(),
            tools: crate::tools::ToolsConfig::default(),
            netbox: NetboxConfig::default(),
            memory: MemoryConfig::default(),
            inventory: InventoryConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// `log_format`: human-readable lines, or one JSON object per line for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[http]`: the listener's connection limits and timeouts (slowloris and fd exhaustion).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A request's headers must be complete this long after the connection opens or the
    /// previous response ends (HTTP/1), or the connection is closed.
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight and no bytes moving for this long is
    /// closed (HTTP/1 and HTTP/2; WebSockets have their own heartbeat).
    pub idle_timeout_secs: u64,
    /// Open connections (WebSockets included) for the whole gateway; lowered at start to
    /// three quarters of the file-descriptor limit, the rest being kept for PTYs, SSH
    /// connections and the database.
    pub max_connections: usize,
    /// Open connections from one client address. Trusted proxies are exempt.
    pub max_connections_per_ip: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 8192,
            max_connections_per_ip: 256,
        }
    }
}

/// `[rate_limit]`: the general API rate limit, separate from the login throttle.
/// A token bucket per key, refilled at this rate, holding at most one minute's worth.
/// 0 turns a limit off. `/healthz` is exempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per minute for one logged-in user (all their logins together).
    pub per_user_per_minute: u32,
    /// Requests per minute from one client address.
    pub per_ip_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_user_per_minute: 3000,
            per_ip_per_minute: 6000,
        }
    }
}

/// `[tls]`: serve HTTPS with these PEM files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[session]`: login session lifetimes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A login unused this long is logged out.
    pub idle_timeout_secs: u64,
    /// A login older than this is logged out, however active.
    pub absolute_timeout_secs: u64,
    /// Name of the session cookie.
    pub cookie_name: String,
    /// Logins one user may hold at once (browsers, scripts); a new one ends the one
    /// that would expire first.
    pub max_logins_per_user: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 8 * 3600,
            absolute_timeout_secs: 7 * 24 * 3600,
            cookie_name: "opsgate_session".into(),
            max_logins_per_user: 50,
        }
    }
}

/// `[login_limit]`: failed-login throttling. An attempt counts as failed from the moment
/// it starts and is refunded when the password turns out right, so concurrent guesses
/// cannot slip past the limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginLimitConfig {
    /// Failed logins from one client IP within the window before 429.
    pub per_ip: u32,
    /// Distinct client IPs with a failed login for one username within the window before
    /// that username gets 429 from everywhere. Counting addresses, not attempts, means
    /// one address can never lock a user out for others.
    pub per_username: u32,
    pub window_secs: u64,
    /// Login attempts being verified at once from one client IP.
    pub in_flight_per_ip: u32,
    /// Login attempts being verified at once for one username.
    pub in_flight_per_username: u32,
}

impl Default for LoginLimitConfig {
    fn default() -> Self {
        Self {
            per_ip: 5,
            per_username: 20,
            window_secs: 300,
            in_flight_per_ip: 4,
            in_flight_per_username: 4,
        }
    }
}

/// `[mux]`: the multiplexed WebSocket and its channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MuxConfig {
    /// Unacknowledged output per channel before the gateway stops reading its source.
    pub window_bytes: usize,
    /// Recent output kept per channel for resume; never smaller than the window.
    pub ring_bytes: usize,
    /// How long a detached channel lives waiting for `attach`.
    pub grace_secs: u64,
    /// Largest accepted WebSocket message.
    pub max_frame_bytes: usize,
    /// Sockets one login may hold at once.
    pub max_sockets_per_login: usize,
    /// Channels (attached or detached) one login may hold at once.
    pub max_channels_per_login: usize,
    /// Channels the whole gateway holds at once. PTYs are a machine-wide pool (kernel.pty.max,
    /// often 4,096 or less in containers) shared with sshd and others, so stay well below it.
    pub max_channels_total: usize,
    /// WebSocket ping interval; a peer silent for two intervals is dropped.
    pub heartbeat_secs: u64,
    /// How long an `ssh` channel waits for the user's answer to a `hostkey` question.
    pub hostkey_answer_secs: u64,
    /// Input per channel the client may send before the program has consumed it (the
    /// input window; a paste beyond it waits in the client).
    pub input_window_bytes: usize,
    /// Channels (attached or detached) one user may hold over all their logins.
    pub max_channels_per_user: usize,
    /// Channel opens one user may make a minute, in bursts of up to half of it (each
    /// forks a program or starts an SSH handshake); 0 = unlimited.
    pub opens_per_minute: u32,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            window_bytes: 256 * 1024,
            ring_bytes: 256 * 1024,
            grace_secs: 300,
            max_frame_bytes: 1024 * 1024,
            max_sockets_per_login: 16,
            max_channels_per_login: 256,
            max_channels_total: 2048,
            heartbeat_secs: 30,
            hostkey_answer_secs: 120,
            input_window_bytes: 128 * 1024,
            max_channels_per_user: 512,
            opens_per_minute: 600,
        }
    }
}

/// `[pty]`: local programs the browser may start, by name. The browser never sends argv.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PtyConfig {
    /// The account PTY programs run as when the gateway runs as root, so that they can
    /// neither signal the gateway nor read its data directory. Ignored (programs run as
    /// the gateway's own user, which is logged at start) when the gateway is not root.
    pub user: String,
    pub programs: BTreeMap<String, Vec<String>>,
}

impl Default for PtyConfig {
    fn default() -> Self {
        let mut programs = BTreeMap::new();
        // `-s`: top's secure mode, without the `k` (kill) and `r` (renice) commands.
        programs.insert("top".to_string(), vec!["top".into(), "-s".into()]);
        Self {
            user: "nobody".into(),
            programs,
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare address means just
/// that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(n) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(n.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|a| Cidr(ipnet::IpNet::from(a)))
            .map_err(|_| format!("{s:?} is not a network in CIDR notation (e.g. 10.0.0.0/8)"))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Cidr {
    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

/// `[ssh]`: outbound SSH client settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfig {
    pub connect_timeout_secs: u64,
    pub keepalive_secs: u64,
    pub term: String,
    /// If not empty, every address an SSH channel connects to (after DNS resolution)
    /// must lie in one of these networks.
    pub allowed_networks: Vec<Cidr>,
    /// Addresses in these networks are never connected to, even if allowed above.
    /// Default: link-local (169.254.0.0/16, fe80::/10), where cloud metadata services live.
    pub denied_networks: Vec<Cidr>,
    /// Non-admins may open saved sessions only, not ad-hoc `host`/`port` targets.
    pub saved_sessions_only: bool,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            keepalive_secs: 15,
            term: "xterm-256color".into(),
            allowed_networks: Vec::new(),
            denied_networks: ["169.254.0.0/16", "fe80::/10"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            saved_sessions_only: false,
        }
    }
}

impl SshConfig {
    /// Whether an SSH channel may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        (self.allowed_networks.is_empty() || self.allowed_networks.iter().any(|n| n.contains(ip)))
            && !self.denied_networks.iter().any(|n| n.contains(ip))
    }
}

/// `[jobs]`: fleet jobs (config backups, commands) and config versions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Targets being worked on at once over all jobs (SSH connections held by jobs).
    pub max_concurrency: usize,
    /// A job's concurrency when its request gives none.
    pub default_concurrency: usize,
    /// The most a job may ask for.
    pub max_concurrency_per_job: usize,
    /// Extra attempts after a connection-level failure (refused, timeout, remote closed);
    /// never after `auth_failed` or `hostkey_*`.
    pub retries: u32,
    /// First retry delay; doubles per attempt up to `retry_max_ms`, with jitter.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long one command (or the first prompt) may take on a device.
    pub command_timeout_secs: u64,
    /// Targets one job may name.
    pub max_targets: usize,
    /// Commands one `command` job may run per target.
    pub max_commands: usize,
    /// Schedules one workspace may hold (the scheduler reads them all every few
    /// seconds, and each may name `max_targets` targets).
    pub max_schedules: usize,
    /// Config versions kept per device (the newest always stays).
    pub config_keep_versions: usize,
    /// Versions older than this many days are dropped (0 = keep forever).
    pub config_keep_days: u64,
    /// Finished jobs kept per workspace (the newest; older ones are removed with their
    /// outputs every ten minutes); 0 keeps every job.
    pub keep_jobs: usize,
    /// Statistics call a device stale when its last successful backup is older.
    pub stale_after_hours: u64,
    /// Jobs one workspace may have queued or running at once (a schedule whose last run
    /// is still going skips its turn).
    pub max_live_jobs: usize,
    /// Targets those jobs may name together: what a workspace's live jobs cost in
    /// memory, rows and connections waiting for the pool.
    pub max_live_targets: usize,
    /// Memory for device output held by running targets over all jobs, in MiB. One
    /// target may hold up to 32 MiB (less if this is smaller); a target that finds it
    /// spent waits, until its command's deadline, for others to store theirs.
    pub output_budget_mib: usize,
    /// `[jobs.webhooks]`: job events POSTed to receivers (see `crate::jobs::webhooks`).
    pub webhooks: crate::jobs::webhooks::WebhooksConfig,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            default_concurrency: 16,
            max_concurrency_per_job: 64,
            retries: 2,
            retry_base_ms: 1000,
            retry_max_ms: 30_000,
            command_timeout_secs: 60,
            max_targets: 10_000,
            max_commands: 50,
            max_schedules: 500,
            config_keep_versions: 100,
            config_keep_days: 365,
            keep_jobs: 1000,
            stale_after_hours: 48,
            max_live_jobs: 100,
            max_live_targets: 50_000,
            output_budget_mib: 256,
            webhooks: Default::default(),
        }
    }
}

/// `[memory]`: how often the gateway hands memory it does not use back to the system.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Seconds between releases (free heap pages; with `release_code_pages`, the
    /// executable's code pages). 0: only once, after start-up.
    pub release_secs: u64,
    /// Also unmap the executable's resident code and read-only data pages. They are
    /// clean copies of the binary that stay in the page cache; what is used again is
    /// mapped back by a minor fault. Most were touched only by start-up or a login.
    /// Only after a quiet period (`memory::was_quiet` in the binary): a busy gateway keeps them.
    pub release_code_pages: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            release_secs: 10,
            release_code_pages: true,
        }
    }
}

/// `[netbox]`: NetBox device import. The NetBox URL is operator-supplied, so every
/// request to it is bounded in time, size and number.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetboxConfig {
    /// Connecting to NetBox (TCP and TLS handshake) may take this long.
    pub connect_timeout_ms: u64,
    /// One whole request (connect, send, read the answer) may take this long.
    pub request_timeout_ms: u64,
    /// Largest answer body read from NetBox (a page of 1,000 devices is a few MiB).
    pub max_response_bytes: usize,
    /// Answer bytes one listing or import may read over all its pages.
    pub max_listing_bytes: usize,
    /// Devices (or sites, platforms) asked for per page; NetBox caps it at its own
    /// `MAX_PAGE_SIZE` (1,000 by default) and the smaller answer is followed.
    pub page_size: usize,
    /// Pages one listing or import may fetch; past it the request is refused.
    pub max_pages: usize,
    /// Pages fetched at once from one NetBox.
    pub concurrency: usize,
    /// Extra attempts after a 429 or 5xx answer, with exponential backoff.
    pub retries: u32,
    /// First retry delay (doubles per attempt; a `Retry-After` up to 10 s is honoured).
    pub retry_base_ms: u64,
    /// Devices one import may take.
    pub max_import_devices: usize,
    /// The device custom field holding the SSH port (22 when absent).
    pub port_field: String,
    /// Device type for a platform the mapping does not know (and for devices without a
    /// platform); empty refuses such devices.
    pub default_device_type: String,
    /// NetBox platform slug → opsgate device type, on top of the built-in defaults.
    pub platforms: BTreeMap<String, String>,
}

impl Default for NetboxConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            max_response_bytes: 32 * 1024 * 1024,
            max_listing_bytes: 256 * 1024 * 1024,
            page_size: 1000,
            max_pages: 200,
            concurrency: 4,
            retries: 3,
            retry_base_ms: 500,
            max_import_devices: 20_000,
            port_field: "ssh_port".to_string(),
            default_device_type: String::new(),
            platforms: BTreeMap::new(),
        }
    }
}

/// `[apps]`: servers (saved sessions of type `linux`), their status poller, and apps
/// started and stopped over SSH (see `crate::apps`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// Seconds between the end of one poll round and the start of the next; 0 turns the
    /// background poller off (`GET /api/servers/{id}/status` still checks).
    pub poll_interval_secs: u64,
    /// Servers checked at once by a poll round.
    pub poll_concurrency: usize,
    /// How long one server's check (connect included) may take before it counts as
    /// `offline` with `connect_timeout`.
    pub poll_timeout_secs: u64,
    /// Authenticated SSH connections the poller keeps open between rounds (one per
    /// server at most); beyond this, checks connect and disconnect each time.
    pub max_cached_connections: usize,
    /// A server checked by hand less than this long ago answers with that result
    /// instead of connecting again.
    pub check_min_interval_secs: u64,
    /// How long a start or stop command may run before it fails with `command_timeout`.
    pub command_timeout_secs: u64,
    /// Start/stop commands running at once over all apps (each holds an SSH
    /// connection); later ones wait, their job `queued`.
    pub max_running_commands: usize,
    /// Output kept with a start/stop job (the tail: the end holds the error).
    pub output_bytes: usize,
    /// Seconds between auto-stop sweeps.
    pub sweep_interval_secs: u64,
    /// How many seconds one minute of `auto_stop_minutes` and `extend` lasts: 60. Tests
    /// and demos shorten it to see an auto-stop happen; nothing else should change it.
    pub auto_stop_minute_secs: u64,
    /// The most one `extend` may add, and the furthest an auto-stop deadline may lie
    /// ahead, in minutes.
    pub max_extend_minutes: u32,
    /// Projects per workspace.
    pub max_projects: usize,
    /// Apps per workspace.
    pub max_apps: usize,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            poll_interval_secs: 60,
            poll_concurrency: 16,
            poll_timeout_secs: 10,
            max_cached_connections: 256,
            check_min_interval_secs: 5,
            command_timeout_secs: 900,
            max_running_commands: 32,
            output_bytes: 64 * 1024,
            sweep_interval_secs: 10,
            auto_stop_minute_secs: 60,
            max_extend_minutes: 7 * 24 * 60,
            max_projects: 1000,
            max_apps: 1000,
        }
    }
}

/// `[inventory]`: the most one workspace may hold of each kind of object. Every
/// listing of a kind is whole (the console shows the tree at once), so these bound what
/// one listing, export or search costs; over a limit a write is refused with 409
/// `limit_reached` and nothing of it is kept.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// Saved sessions per workspace (at least `[netbox] max_import_devices` is sensible).
    pub max_sessions: usize,
    /// Folders per workspace.
    pub max_folders: usize,
    /// Credential sets per workspace.
    pub max_credentials: usize,
    /// Trusted host keys per workspace.
    pub max_known_hosts: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            max_sessions: 20_000,
            max_folders: 2_000,
            max_credentials: 1_000,
            max_known_hosts: 20_000,
        }
    }
}

/// `[audit]`: the audit log keeps the newest `max_events` events; older ones are removed
/// as new ones are written, so the log cannot grow without bound.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Events kept (at least 1,000).
    pub max_events: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_events: 1_000_000,
        }
    }
}

/// Environment variables consumed by the CLI itself rather than the override mechanism.
const CLI_ENV: &[&str] = &[
    "OPSGATE_LISTEN",
    "OPSGATE_DATA_DIR",
    "OPSGATE_CONFIG",
    "OPSGATE_ADMIN_PASSWORD",
    "OPSGATE_INSECURE_LISTEN",
    "OPSGATE_LOG",
];

impl Config {
    /// Reads `file` (if any), then applies `OPSGATE_*` overrides from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut root = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("OPSGATE_") else {
                continue;
            };
            if CLI_ENV.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            set_path(&mut root, &path, parse_env_value(&value))
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        let mut cfg: Config = toml::Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.normalise()?;
        Ok(cfg)
    }

    fn normalise(&mut self) -> Result<(), ConfigError> {
        let base = self.base_path.trim().trim_end_matches('/');
        if !base.is_empty() && !base.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "base_path must start with '/': {base:?}"
            )));
        }
        self.base_path = base.to_string();
        if self.mux.ring_bytes < self.mux.window_bytes {
            // Resume is lossless only if every unacknowledged byte is still in the ring.
            self.mux.ring_bytes = self.mux.window_bytes;
        }
        if self.mux.window_bytes == 0 || self.mux.max_frame_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "mux.window_bytes must be > 0 and mux.max_frame_bytes >= 1024".into(),
            ));
        }
        if self.http.header_read_timeout_secs == 0
            || self.http.idle_timeout_secs == 0
            || self.http.max_connections == 0
            || self.http.max_connections_per_ip == 0
        {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_secs, idle_timeout_secs, max_connections and max_connections_per_ip must be > 0".into(),
            ));
        }
        if self.login_limit.in_flight_per_ip == 0 || self.login_limit.in_flight_per_username == 0 {
            return Err(ConfigError::Invalid(
                "login_limit.in_flight_per_ip and in_flight_per_username must be > 0".into(),
            ));
        }
        if self.audit.max_events < 1_000 {
            return Err(ConfigError::Invalid(
                "audit.max_events must be at least 1000".into(),
            ));
        }
        self.metrics_token = self.metrics_token.trim().to_string();
        self.jobs
            .webhooks
            .validate()
            .map_err(ConfigError::Invalid)?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key must be given together".into(),
            ));
        }
        // A platform mapped to an unknown device type is a mistake to report at start.
        crate::netbox::import::Mapping::new(&self.netbox).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// Whether the gateway serves HTTPS itself.
    pub fn tls_enabled(&self) -> bool {
        self.tls.cert.is_some()
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Accept TOML literals (numbers, booleans, arrays) and fall back to a plain string.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nested_keys_and_types() {
        let env = vec![
            ("OPSGATE_MUX__WINDOW_BYTES".to_string(), "65536".to_string()),
            ("OPSGATE_BASE_PATH".to_string(), "/opsgate/".to_string()),
            ("OPSGATE_LISTEN".to_string(), "ignored".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let cfg = Config::load(None, env).expect("config");
        assert_eq!(cfg.mux.window_bytes, 65536);
        assert_eq!(cfg.base_path, "/opsgate");
        assert!(cfg.mux.ring_bytes >= cfg.mux.window_bytes);
    }

    #[test]
    fn ssh_networks_parse_and_deny_wins() {
        let text = "[ssh]\nallowed_networks = [\"10.0.0.0/8\", \"127.0.0.1\"]\ndenied_networks = [\"10.9.0.0/16\"]\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        let cfg = Config::load(Some(&path), Vec::new()).expect("config");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(cfg.ssh.allows(ip("10.1.2.3")));
        assert!(cfg.ssh.allows(ip("127.0.0.1")));
        assert!(!cfg.ssh.allows(ip("127.0.0.2")));
        assert!(!cfg.ssh.allows(ip("10.9.1.1")));
        assert!(!cfg.ssh.allows(ip("::ffff:10.9.1.1")));
        assert!(cfg.ssh.allows(ip("::ffff:10.1.1.1")));
        let defaults = SshConfig::default();
        assert!(defaults.allows(ip("127.0.0.1")));
        assert!(defaults.allows(ip("::1")));
        assert!(!defaults.allows(ip("169.254.169.254")));
        assert!(!defaults.allows(ip("::ffff:169.254.169.254")));
        std::fs::write(&path, "[ssh]\ndenied_networks = [\"nope\"]\n").expect("write");
        assert!(Config::load(Some(&path), Vec::new()).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let env = vec![("OPSGATE_NO_SUCH_KEY".to_string(), "1".to_string())];
        assert!(Config::load(None, env).is_err());
    }
}
