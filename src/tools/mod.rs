//! Network tools operators run from the browser: a registry of declared tools, each with
//! a parameter schema, turned into argv (never a shell) only after every value parsed.
//!
//! A run is one more channel source (see `crate::source`): output streams under the
//! channel's window, `progress` events carry its state and final result. Runs are
//! limited per user, per tool and in all; over a limit the answer is `limit_reached`,
//! never a queue.

pub mod executions;
mod native;
mod parse;
pub mod results;
pub mod routes;
mod run;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::source::OpenError;
use validate::Val;

pub use run::{start, State};

/// Error codes of tool runs (REST and `error` frames).
pub mod codes {
    pub const INVALID_PARAMS: &str = "invalid_params";
    pub const UNKNOWN_TOOL: &str = "unknown_tool";
    pub const TOOL_DISABLED: &str = "tool_disabled";
    pub const TOOL_UNAVAILABLE: &str = "tool_unavailable";
}

/// `[tools]`: limits for every tool, and `[tools.<name>]` per tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ToolsConfig {
    /// Runs one user may have in flight over all tools.
    pub max_runs_per_user: usize,
    /// Runs the gateway has in flight over all users.
    pub max_runs_total: usize,
    /// Output kept per execution (stored, and replayed to followers); beyond it the
    /// output still counts in `output_bytes` and the record says `truncated`.
    pub output_bytes: usize,
    /// Finished executions kept per workspace (the newest).
    pub keep_count: usize,
    /// Finished executions older than this many days are removed.
    pub keep_days: u64,
    /// Per tool: `enabled`, `timeout_secs`, `concurrency`, `max_prefix`.
    #[serde(flatten)]
    pub tool: BTreeMap<String, ToolSettings>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            max_runs_per_user: 4,
            max_runs_total: 32,
            output_bytes: 1024 * 1024,
            keep_count: 1000,
            keep_days: 30,
            tool: BTreeMap::new(),
        }
    }
}

/// `[tools.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    pub enabled: Option<bool>,
    pub timeout_secs: Option<u64>,
    /// Runs of this tool in flight over all users.
    pub concurrency: Option<usize>,
    /// The widest scan target accepted (IPv4 prefix length; IPv6 + 96). Default 24.
    pub max_prefix: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Boolean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An IP address or an RFC 1123 hostname.
    Host,
    Ip,
    /// A name to look up in DNS (labels may hold `_`).
    DnsName,
    /// A host or a CIDR no wider than the tool's `max_prefix`.
    ScanTarget,
    PortList,
}

impl Format {
    fn word(self) -> &'static str {
        match self {
            Format::Host => "host",
            Format::Ip => "ip",
            Format::DnsName => "dns-name",
            Format::ScanTarget => "cidr",
            Format::PortList => "port-list",
        }
    }
}

/// One declared parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    pub ty: ParamType,
    pub format: Option<Format>,
    pub choices: Option<&'static [&'static str]>,
    pub range: Option<(i64, i64)>,
    pub default: Option<Val>,
    pub required: bool,
}

fn p(name: &'static str, description: &'static str, ty: ParamType) -> Param {
    Param {
        name,
        description,
        ty,
        format: None,
        choices: None,
        range: None,
        default: None,
        required: false,
    }
}

impl Param {
    fn format(mut self, f: Format) -> Self {
        self.format = Some(f);
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn range(mut self, lo: i64, hi: i64, default: i64) -> Self {
        self.range = Some((lo, hi));
        self.default = Some(Val::Int(default));
        self
    }
    fn choices(mut self, c: &'static [&'static str], default: &'static str) -> Self {
        self.choices = Some(c);
        self.default = Some(Val::Str(default.into()));
        self
    }
    fn default_str(mut self, d: &'static str) -> Self {
        self.default = Some(Val::Str(d.into()));
        self
    }

    fn schema(&self) -> Value {
        let mut s = Map::new();
        s.insert(
            "type".into(),
            json!(match self.ty {
                ParamType::String => "string",
                ParamType::Integer => "integer",
                ParamType::Boolean => "boolean",
            }),
        );
        s.insert("description".into(), json!(self.description));
        if let Some(f) = self.format {
            s.insert("format".into(), json!(f.word()));
        }
        if let Some(c) = self.choices {
            s.insert("enum".into(), json!(c));
        }
        if let Some((lo, hi)) = self.range {
            s.insert("minimum".into(), json!(lo));
            s.insert("maximum".into(), json!(hi));
        }
        if self.ty == ParamType::String && self.choices.is_none() {
            s.insert("maxLength".into(), json!(validate::MAX_STRING));
            s.insert("pattern".into(), json!("^[^-]"));
        }
        if let Some(d) = &self.default {
            s.insert("default".into(), d.to_json());
        }
        Value::Object(s)
    }
}

/// What runs a tool: a program found on the PATH, or code in the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    Program(&'static str),
    Native,
}

/// A declared tool.
#[derive(Debug, Clone)]
pub struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub runner: Runner,
    pub params: Vec<Param>,
    pub result_schema: Value,
    pub admin_only: bool,
    pub default_timeout_secs: u64,
}

const DNS_TYPES: &[&str] = &[
    "A", "AAAA", "CAA", "CNAME", "DS", "DNSKEY", "MX", "NS", "PTR", "SOA", "SRV", "TXT",
];
const SCANS: &[&str] = &["ping", "connect", "version"];

/// Every tool this gateway knows, enabled or not.
pub fn declarations() -> Vec<ToolDef> {
    use ParamType::*;
    let host = || {
        p("host", "target host name or IP address", String)
            .format(Format::Host)
            .required()
    };
    vec![
        ToolDef {
            name: "ping",
            description: "ICMP echo: reachability and round-trip times",
            category: "reachability",
            runner: Runner::Program("ping"),
            params: vec![
                host(),
                p("count", "echo requests to send", Integer).range(1, 20, 4),
                p("size", "payload bytes", Integer).range(0, 1472, 56),
            ],
            result_schema: results::schema::<results::PingResult>(),
            admin_only: false,
            default_timeout_secs: 60,
        },
        ToolDef {
            name: "traceroute",
            description: "the path to a host, hop by hop (UDP probes)",
            category: "path",
            runner: Runner::Program("traceroute"),
            params: vec![
                host(),
                p("max_hops", "largest TTL probed", Integer).range(1, 64, 30),
                p("queries", "probes per hop", Integer).range(1, 5, 3),
            ],
            result_schema: results::schema::<results::TracerouteResult>(),
            admin_only: false,
            default_timeout_secs: 120,
        },
        ToolDef {
            name: "mtr",
            description: "mtr report: loss and latency per hop",
            category: "path",
            runner: Runner::Program("mtr"),
            params: vec![
                host(),
                p("count", "probes per hop", Integer).range(1, 50, 5),
            ],
            result_schema: results::schema::<results::MtrResult>(),
            admin_only: false,
            default_timeout_secs: 120,
        },
        ToolDef {
            name: "dig",
            description: "DNS lookup",
            category: "dns",
            runner: Runner::Program("dig"),
            params: vec![
                p("name", "name to look up", String)
                    .format(Format::DnsName)
                    .required(),
                p("type", "record type", String).choices(DNS_TYPES, "A"),
                p(
                    "server",
                    "DNS server to ask (default: the system's)",
                    String,
                )
                .format(Format::Ip),
                p("port", "DNS server port", Integer).range(1, 65535, 53),
            ],
            result_schema: results::schema::<results::DigResult>(),
            admin_only: false,
            default_timeout_secs: 30,
        },
        ToolDef {
            name: "whois",
            description: "registry lookup of a domain or address",
            category: "registry",
            runner: Runner::Program("whois"),
            params: vec![
                p("query", "domain name or IP address", String)
                    .format(Format::Host)
                    .required(),
                p("server", "whois server (default: chosen by whois)", String).format(Format::Host),
                p("port", "whois server port", Integer).range(1, 65535, 43),
            ],
            result_schema: results::schema::<results::WhoisResult>(),
            admin_only: false,
            default_timeout_secs: 30,
        },
        ToolDef {
            name: "nmap",
            description:
                "nmap, safe subset: ping scan, TCP connect scan of given ports, service versions",
            category: "scan",
            runner: Runner::Program("nmap"),
            params: vec![
                p(
                    "target",
                    "host, address or CIDR (no wider than max_prefix)",
                    String,
                )
                .format(Format::ScanTarget)
                .required(),
                p(
                    "scan",
                    "ping: hosts up (-sn); connect: TCP connect (-sT); version: -sT -sV",
                    String,
                )
                .choices(SCANS, "connect"),
                p(
                    "ports",
                    "ports for connect and version scans: 22,80,8000-8100",
                    String,
                )
                .format(Format::PortList)
                .default_str("22,23,80,443,830,8080,8443"),
            ],
            result_schema: results::schema::<results::NmapResult>(),
            admin_only: false,
            default_timeout_secs: 300,
        },
        ToolDef {
            name: "port_check",
            description: "TCP connect to host:port, with timing",
            category: "reachability",
            runner: Runner::Native,
            params: vec![host(), p("port", "TCP port", Integer).range(1, 65535, 22)],
            result_schema: results::schema::<results::PortCheckResult>(),
            admin_only: false,
            default_timeout_secs: 15,
        },
        ToolDef {
            name: "tls_check",
            description:
                "TLS handshake: protocol version, cipher, certificate chain, names and expiry",
            category: "tls",
            runner: Runner::Native,
            params: vec![
                host(),
                p("port", "TCP port", Integer).range(1, 65535, 443),
                p(
                    "server_name",
                    "SNI name (default: host, if it is a name)",
                    String,
                )
                .format(Format::Host),
            ],
            result_schema: results::schema::<results::TlsCheckResult>(),
            admin_only: false,
            default_timeout_secs: 20,
        },
    ]
}

/// A registered tool with its settings and availability.
pub struct Tool {
    pub def: ToolDef,
    pub enabled: bool,
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_prefix: u8,
    /// The program's absolute path, if it has one and it was found.
    pub program: Option<PathBuf>,
}

impl Tool {
    pub fn available(&self) -> bool {
        self.def.runner == Runner::Native || self.program.is_some()
    }

    /// The registry entry as `GET /api/tools` shows it.
    pub fn describe(&self) -> routes::ToolDescription {
        let mut props = Map::new();
        let mut required = Vec::new();
        for p in &self.def.params {
            props.insert(p.name.into(), p.schema());
            if p.required {
                required.push(p.name);
            }
        }
        routes::ToolDescription {
            name: self.def.name,
            description: self.def.description,
            category: self.def.category,
            params: json!({"type":"object","properties":props,"required":required,"additionalProperties":false}),
            result_schema: self.def.result_schema.clone(),
            enabled: self.enabled,
            available: self.available(),
            admin_only: self.def.admin_only,
            timeout_secs: self.timeout.as_secs(),
            concurrency: self.concurrency,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("no tool named {0:?}")]
    Unknown(String),
    #[error("tool {0} is disabled by the administrator")]
    Disabled(&'static str),
    #[error("tool {0} is not installed on the gateway ({1} not found)")]
    Unavailable(&'static str, &'static str),
    #[error("tool {0} needs an administrator")]
    AdminOnly(&'static str),
    #[error("viewers cannot run tools")]
    Viewer,
    #[error("invalid parameters: {0}")]
    Invalid(validate::Invalid),
    #[error("{0}")]
    Limit(String),
}

impl ToolError {
    pub fn code(&self) -> &'static str {
        use opsgate_protocol::codes as c;
        match self {
            ToolError::Unknown(_) => codes::UNKNOWN_TOOL,
            ToolError::Disabled(_) => codes::TOOL_DISABLED,
            ToolError::Unavailable(..) => codes::TOOL_UNAVAILABLE,
            ToolError::AdminOnly(_) | ToolError::Viewer => c::FORBIDDEN,
            ToolError::Invalid(_) => codes::INVALID_PARAMS,
            ToolError::Limit(_) => c::LIMIT_REACHED,
        }
    }
}

impl From<ToolError> for OpenError {
    fn from(e: ToolError) -> Self {
        OpenError::new(e.code(), e.to_string())
    }
}

/// What a validated run does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Start this argv (argv[0] an absolute path), no shell.
    Program(Vec<String>),
    PortCheck {
        host: String,
        port: u16,
    },
    TlsCheck {
        host: String,
        port: u16,
        server_name: Option<String>,
    },
}

/// A run that passed every check and holds its concurrency slots.
pub struct Prepared {
    pub tool: &'static str,
    pub params: Value,
    pub plan: Plan,
    pub timeout: Duration,
    pub permit: Permit,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
    per_tool: HashMap<&'static str, usize>,
}

/// The registry and the run counters.
pub struct Tools {
    tools: Vec<Tool>,
    cfg: ToolsConfig,
    counts: Arc<Mutex<Counts>>,
}

/// One run's slots; released when dropped (the run ended).
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    user: String,
    tool: &'static str,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_user.remove(&self.user);
            }
        }
        if let Some(n) = c.per_tool.get_mut(self.tool) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Directories searched for tool programs besides the gateway's `PATH` (the `sbin`
/// ones hold traceroute and mtr on Debian but are often not on a service's PATH).
const PROGRAM_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(PROGRAM_DIRS.iter().map(PathBuf::from))
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Tools {
    /// Builds the registry from the declarations and `[tools]`; programs are looked up
    /// once, here. Unknown names under `[tools]` are an error.
    pub fn new(cfg: ToolsConfig) -> Result<Tools, String> {
        let defs = declarations();
        for name in cfg.tool.keys() {
            if !defs.iter().any(|d| d.name == name) {
                return Err(format!("[tools.{name}]: no such tool"));
            }
        }
        let tools = defs
            .into_iter()
            .map(|def| {
                let s = cfg.tool.get(def.name).cloned().unwrap_or_default();
                let program = match def.runner {
                    Runner::Program(p) => find_program(p),
                    Runner::Native => None,
                };
                Tool {
                    enabled: s.enabled.unwrap_or(true),
                    timeout: Duration::from_secs(
                        s.timeout_secs.unwrap_or(def.default_timeout_secs).max(1),
                    ),
                    concurrency: s.concurrency.unwrap_or(8).max(1),
                    max_prefix: s.max_prefix.unwrap_or(24).min(32),
                    program,
                    def,
                }
            })
            .collect();
        Ok(Tools {
            tools,
            cfg,
            counts: Arc::default(),
        })
    }

    pub fn all(&self) -> &[Tool] {
        &self.tools
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.def.name == name)
    }

    /// Runs in flight over the whole gateway.
    pub fn in_flight(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Checks everything (role, tool, parameters, limits) and takes the run's slots.
    /// Nothing has started when this returns an error.
    pub fn prepare(
        &self,
        user: &str,
        role: crate::auth::Role,
        is_admin: bool,
        name: &str,
        params: &Value,
    ) -> Result<Prepared, ToolError> {
        use crate::auth::Role;
        if role == Role::Viewer {
            return Err(ToolError::Viewer);
        }
        let tool = self
            .get(name)
            .ok_or_else(|| ToolError::Unknown(name.chars().take(64).collect()))?;
        let def = &tool.def;
        if def.admin_only && !is_admin {
            return Err(ToolError::AdminOnly(def.name));
        }
        if !tool.enabled {
            return Err(ToolError::Disabled(def.name));
        }
        let values = validate::check(def, params, tool.max_prefix).map_err(ToolError::Invalid)?;
        let plan = match (def.runner, &tool.program) {
            (Runner::Program(prog), None) => return Err(ToolError::Unavailable(def.name, prog)),
            (Runner::Program(_), Some(path)) => {
                Plan::Program(argv(def.name, &path.to_string_lossy(), &values))
            }
            (Runner::Native, _) => native_plan(def.name, &values),
        };
        let params = Value::Object(
            values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect(),
        );
        let permit = self.acquire(user, tool)?;
        Ok(Prepared {
            tool: def.name,
            params,
            plan,
            timeout: tool.timeout,
            permit,
        })
    }

    fn acquire(&self, user: &str, tool: &Tool) -> Result<Permit, ToolError> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.cfg.max_runs_total {
            return Err(ToolError::Limit(format!(
                "the gateway already runs {} tools (tools.max_runs_total)",
                c.total
            )));
        }
        let mine = c.per_user.get(user).copied().unwrap_or(0);
        if mine >= self.cfg.max_runs_per_user {
            return Err(ToolError::Limit(format!(
                "you already run {mine} tools (tools.max_runs_per_user)"
            )));
        }
        let this = c.per_tool.get(tool.def.name).copied().unwrap_or(0);
        if this >= tool.concurrency {
            return Err(ToolError::Limit(format!(
                "{} already runs {this} times (tools.{}.concurrency)",
                tool.def.name, tool.def.name
            )));
        }
        c.total += 1;
        *c.per_user.entry(user.to_string()).or_insert(0) += 1;
        *c.per_tool.entry(tool.def.name).or_insert(0) += 1;
        Ok(Permit {
            counts: self.counts.clone(),
            user: user.to_string(),
            tool: tool.def.name,
        })
    }
}

fn get<'a>(values: &'a [(&'static str, Val)], name: &str) -> Option<&'a Val> {
    values.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn s(values: &[(&'static str, Val)], name: &str) -> Option<String> {
    match get(values, name) {
        Some(Val::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn n(values: &[(&'static str, Val)], name: &str) -> i64 {
    match get(values, name) {
        Some(Val::Int(i)) => *i,
        _ => 0,
    }
}

/// The argv of a program tool. Every value here was parsed by `validate`: none starts
/// with `-`, none holds a space, a quote or a shell character, and the list is handed to
/// `execve` as is.
fn argv(tool: &str, program: &str, v: &[(&'static str, Val)]) -> Vec<String> {
    let mut a: Vec<String> = vec![program.to_string()];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    let host = s(v, "host").unwrap_or_default();
    match tool {
        "ping" => push(&[
            "-n",
            "-c",
            &n(v, "count").to_string(),
            "-s",
            &n(v, "size").to_string(),
            "-W",
            "2",
            "--",
            &host,
        ]),
        "traceroute" => push(&[
            "-n",
            "-m",
            &n(v, "max_hops").to_string(),
            "-q",
            &n(v, "queries").to_string(),
            "-w",
            "2",
            &host,
        ]),
        // `-r`: report mode (no curses), `-w`: wide, `-n`: no reverse lookups.
        "mtr" => push(&["-r", "-w", "-n", "-c", &n(v, "count").to_string(), &host]),
        "dig" => {
            if let Some(server) = s(v, "server") {
                push(&[&format!("@{server}")]);
            }
            push(&[
                "-p",
                &n(v, "port").to_string(),
                "+tries=1",
                "+time=3",
                &s(v, "name").unwrap_or_default(),
                &s(v, "type").unwrap_or_default(),
            ]);
        }
        "whois" => {
            if let Some(server) = s(v, "server") {
                push(&["-h", &server, "-p", &n(v, "port").to_string()]);
            }
            push(&["--", &s(v, "query").unwrap_or_default()]);
        }
        "nmap" => {
            // `--unprivileged`: never raw sockets, even where the process could open
            // them; `-n`: no reverse DNS; `-oX -`: XML on stdout for the result.
            push(&["--unprivileged", "-n", "-oX", "-"]);
            match s(v, "scan").as_deref() {
                Some("ping") => push(&["-sn"]),
                Some("version") => push(&["-sT", "-sV", "-p", &s(v, "ports").unwrap_or_default()]),
                _ => push(&["-sT", "-p", &s(v, "ports").unwrap_or_default()]),
            }
            push(&[&s(v, "target").unwrap_or_default()]);
        }
        _ => {}
    }
    a
}

fn native_plan(tool: &str, v: &[(&'static str, Val)]) -> Plan {
    let host = s(v, "host").unwrap_or_default();
    let port = u16::try_from(n(v, "port")).unwrap_or(0);
    match tool {
        "tls_check" => Plan::TlsCheck {
            server_name: s(v, "server_name"),
            host,
            port,
        },
        _ => Plan::PortCheck { host, port },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn tools() -> Tools {
        Tools::new(ToolsConfig::default()).expect("registry")
    }

    #[test]
    fn every_parameter_refuses_the_injection_corpus() {
        let t = tools();
        let corpus = [
            "a;id",
            "a&&id",
            "a|id",
            "$(id)",
            "`id`",
            "a\nid",
            "a\0b",
            "-x",
            "-oProxyCommand=id",
            "--script=vuln",
            "a b",
            "1.1.1.1\u{ff0e}2",
            "ex\u{0430}mple.com",
        ];
        let long = "a".repeat(300);
        for tool in t.all() {
            for param in &tool.def.params {
                for bad in corpus.iter().copied().chain([long.as_str()]) {
                    let mut params = Map::new();
                    for q in &tool.def.params {
                        if q.required {
                            params.insert(q.name.into(), json!("127.0.0.1"));
                        }
                    }
                    if tool.def.name == "dig" {
                        params.insert("name".into(), json!("example.com"));
                    }
                    params.insert(param.name.into(), json!(bad));
                    let r = t.prepare(
                        "u",
                        Role::Admin,
                        true,
                        tool.def.name,
                        &Value::Object(params),
                    );
                    assert!(
                        matches!(r, Err(ToolError::Invalid(_))),
                        "{}.{} accepted {bad:?}",
                        tool.def.name,
                        param.name
                    );
                }
            }
        }
    }

    #[test]
    fn argv_is_built_from_parsed_values() {
        let t = tools();
        let Some(tool) = t.get("nmap") else { return };
        let v = validate::check(
            &tool.def,
            &json!({"target":"192.0.2.9/28","scan":"connect","ports":"22,80"}),
            24,
        )
        .expect("valid");
        assert_eq!(
            argv("nmap", "/usr/bin/nmap", &v),
            [
                "/usr/bin/nmap",
                "--unprivileged",
                "-n",
                "-oX",
                "-",
                "-sT",
                "-p",
                "22,80",
                "192.0.2.0/28"
            ]
        );
        let r = t.prepare(
            "u",
            Role::Admin,
            true,
            "nmap",
            &json!({"target":"10.0.0.0/8"}),
        );
        assert!(matches!(r, Err(ToolError::Invalid(_))));
    }

    #[test]
    fn limits_answer_instead_of_queueing() {
        let t = Tools::new(ToolsConfig {
            max_runs_per_user: 1,
            ..Default::default()
        })
        .expect("registry");
        let p = json!({"host":"127.0.0.1","port":22});
        let first = t
            .prepare("u", Role::Operator, false, "port_check", &p)
            .expect("first");
        assert!(matches!(
            t.prepare("u", Role::Operator, false, "port_check", &p),
            Err(ToolError::Limit(_))
        ));
        assert!(t
            .prepare("v", Role::Operator, false, "port_check", &p)
            .is_ok());
        drop(first);
        assert!(t
            .prepare("u", Role::Operator, false, "port_check", &p)
            .is_ok());
        assert!(matches!(
            t.prepare("w", Role::Viewer, false, "port_check", &p),
            Err(ToolError::Viewer)
        ));
    }
}
