//! The structured result of each tool, as types. A tool's `result_schema` (what
//! `GET /api/tools` shows) is generated from these with `schemars`, the same machinery
//! that generates the protocol's frame schemas, so a parser cannot return a shape its
//! declaration does not describe (a unit test validates every parser's output against
//! its tool's schema).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// The JSON Schema (draft 2020-12) of a result type.
pub fn schema<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// `ping`: the summary lines. A field is absent when ping did not print it (no reply at
/// all has no round-trip line).
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct PingResult {
    /// Echo requests sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    /// Replies received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// Packet loss in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_min_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_avg_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
}

/// `traceroute`: one line per hop.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct TracerouteResult {
    pub hops: Vec<TracerouteHop>,
}

/// One traceroute hop.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TracerouteHop {
    /// The TTL probed.
    pub hop: u32,
    /// The first address that answered; null when every probe timed out (`*`).
    pub address: Option<String>,
    /// Round-trip time of each probe that was answered.
    pub rtt_ms: Vec<f64>,
}

/// `mtr`: its report, one row per hop.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct MtrResult {
    pub hops: Vec<MtrHop>,
}

/// One row of mtr's report.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MtrHop {
    pub hop: u32,
    /// Null for a hop that never answered (`???`).
    pub address: Option<String>,
    pub loss_pct: Option<f64>,
    pub sent: Option<u64>,
    pub last_ms: Option<f64>,
    pub avg_ms: Option<f64>,
    pub best_ms: Option<f64>,
    pub worst_ms: Option<f64>,
    pub stdev_ms: Option<f64>,
}

/// `dig`: the answer's status, sections and timing.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct DigResult {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL` …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub answer: Vec<DnsRecord>,
    pub authority: Vec<DnsRecord>,
    pub additional: Vec<DnsRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_time_ms: Option<u64>,
    /// The server that answered, as dig prints it (`127.0.0.1#53(127.0.0.1) (UDP)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// One resource record of a dig section.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DnsRecord {
    pub name: String,
    pub ttl: Option<u64>,
    pub class: String,
    #[serde(rename = "type")]
    pub record_type: String,
    /// The record's data as dig prints it.
    pub data: String,
}

/// `whois`: `Key: value` lines, first occurrence of each key, at most 200 keys.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct WhoisResult {
    pub fields: BTreeMap<String, String>,
}

/// `nmap`: the hosts of its XML report.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct NmapResult {
    pub hosts: Vec<NmapHost>,
}

/// One scanned host.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct NmapHost {
    /// `up` or `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The host's first address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub ports: Vec<NmapPort>,
}

/// One port of a scanned host.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct NmapPort {
    pub protocol: Option<String>,
    pub port: Option<u16>,
    /// `open`, `closed`, `filtered` …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extrainfo: Option<String>,
}

/// `tcp_port` (native): whether a TCP connect succeeded, and how long it took.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PortCheckResult {
    pub open: bool,
    /// The address connected to (the first the name resolved to).
    pub address: String,
    pub connect_ms: f64,
    pub resolve_ms: f64,
    /// Why the connect failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `tls_check` (native): what the server presented in its TLS handshake.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TlsCheckResult {
    pub address: String,
    /// The name sent as SNI and checked against the certificate.
    pub server_name: String,
    pub protocol_version: String,
    pub cipher_suite: String,
    pub connect_ms: f64,
    pub handshake_ms: f64,
    /// The certificates as presented, leaf first.
    pub chain: Vec<Certificate>,
    /// Whether the leaf certificate names `server_name`.
    pub names_match: bool,
    /// Whole days until the leaf expires (negative once expired).
    pub days_left: Option<i64>,
    pub expired: Option<bool>,
}

/// One certificate of a presented chain; only `error` when it could not be parsed.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Certificate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// DNS names and addresses of the subject alternative name extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<bool>,
    /// SHA-256 of the DER encoding, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A native tool that could not even start its check (the name did not resolve …).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ToolFailure {
    pub error: String,
}

/// Serialises a result; these types hold no maps with non-string keys, so this cannot
/// fail, and `null` would be the honest answer if it did.
pub fn to_value<T: Serialize>(r: &T) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}
