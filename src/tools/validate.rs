//! Parameter values are parsed, never pattern-matched: an IP by `std`, a CIDR by
//! `ipnet`, a hostname by the RFC 1123 label rules, a port list number by number. What
//! comes out is a typed value the tool turns into argv; nothing a client sent reaches a
//! program unparsed, and nothing can start with `-` (so it cannot become an option).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::{Format, Param, ParamType, ToolDef};

/// The longest string any parameter accepts (a DNS name is at most 253).
pub const MAX_STRING: usize = 253;
/// The most ports one port list may name in total (nmap's own maximum is 65535; a
/// narrower bound keeps one scan's cost predictable).
pub const MAX_PORTS: usize = 4096;

/// Why a value was refused: the parameter and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub param: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter {:?}: {}", self.param, self.reason)
    }
}

fn bad(param: &str, reason: impl Into<String>) -> Invalid {
    Invalid {
        param: param.to_string(),
        reason: reason.into(),
    }
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Val {
    pub fn to_json(&self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.clone()),
            Val::Int(i) => Value::from(*i),
            Val::Bool(b) => Value::Bool(*b),
        }
    }
}

/// Checks `params` (a JSON object, or null for "all defaults") against the tool's
/// declaration and returns every declared parameter's value (defaults filled in; an
/// optional parameter without default is absent). Unknown parameters are refused.
pub fn check(
    def: &ToolDef,
    params: &Value,
    max_prefix: u8,
) -> Result<Vec<(&'static str, Val)>, Invalid> {
    let empty = Map::new();
    let obj = match params {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err(bad("params", "must be an object")),
    };
    for k in obj.keys() {
        if !def.params.iter().any(|p| p.name == k.as_str()) {
            return Err(bad(k, "unknown parameter"));
        }
    }
    let mut out = Vec::new();
    for p in &def.params {
        let v = match obj.get(p.name) {
            Some(Value::Null) | None => match &p.default {
                Some(d) => d.clone(),
                None if p.required => return Err(bad(p.name, "is required")),
                None => continue,
            },
            Some(v) => check_one(p, v, max_prefix)?,
        };
        out.push((p.name, v));
    }
    Ok(out)
}

fn check_one(p: &Param, v: &Value, max_prefix: u8) -> Result<Val, Invalid> {
    match p.ty {
        ParamType::Integer => {
            let n = v
                .as_i64()
                .ok_or_else(|| bad(p.name, "must be an integer"))?;
            if let Some((lo, hi)) = p.range {
                if n < lo || n > hi {
                    return Err(bad(p.name, format!("must be {lo}-{hi}")));
                }
            }
            Ok(Val::Int(n))
        }
        ParamType::Boolean => v
            .as_bool()
            .map(Val::Bool)
            .ok_or_else(|| bad(p.name, "must be true or false")),
        ParamType::String => {
            let s = v.as_str().ok_or_else(|| bad(p.name, "must be a string"))?;
            if s.is_empty() || s.len() > MAX_STRING {
                return Err(bad(p.name, format!("must be 1-{MAX_STRING} characters")));
            }
            if !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    p.name,
                    "may hold printable ASCII only (no spaces, control or non-ASCII characters)",
                ));
            }
            if s.starts_with('-') {
                return Err(bad(p.name, "may not start with '-'"));
            }
            if let Some(choices) = p.choices {
                if !choices.contains(&s) {
                    return Err(bad(p.name, format!("must be one of {choices:?}")));
                }
                return Ok(Val::Str(s.to_string()));
            }
            let canonical = match p.format {
                Some(Format::Host) => host(s).map_err(|r| bad(p.name, r))?,
                Some(Format::Ip) => s
                    .parse::<IpAddr>()
                    .map_err(|_| bad(p.name, "must be an IPv4 or IPv6 address"))?
                    .to_string(),
                Some(Format::DnsName) => dns_name(s).map_err(|r| bad(p.name, r))?,
                Some(Format::ScanTarget) => {
                    scan_target(s, max_prefix).map_err(|r| bad(p.name, r))?
                }
                Some(Format::PortList) => port_list(s).map_err(|r| bad(p.name, r))?,
                None => return Err(bad(p.name, "has no declared format")),
            };
            Ok(Val::Str(canonical))
        }
    }
}

/// An IP address (canonical form) or a hostname by RFC 1123: labels of letters, digits
/// and inner hyphens, 1-63 characters each, 253 in all, a top label that is not all
/// digits; one trailing dot allowed.
pub fn host(s: &str) -> Result<String, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    labels(s, false)?;
    Ok(s.to_string())
}

/// A DNS name to look up: as a hostname, but labels may also hold `_` (SRV, DKIM
/// names). Used only where the value is a query, never a connection target.
pub fn dns_name(s: &str) -> Result<String, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    labels(s, true)?;
    Ok(s.to_string())
}

fn labels(s: &str, underscore: bool) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return Err("must be an IP address or a hostname of at most 253 characters".into());
    }
    let parts: Vec<&str> = name.split('.').collect();
    for l in &parts {
        if l.is_empty() || l.len() > 63 {
            return Err("hostname labels must be 1-63 characters".into());
        }
        let ok = l
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'));
        if !ok {
            return Err(format!(
                "hostname labels may hold letters, digits and '-'{} only",
                if underscore { ", '_'" } else { "" }
            ));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("hostname labels may not start or end with '-'".into());
        }
    }
    // RFC 1123 only forbids an all-digit top label; we ask for a letter, as every real
    // top-level domain has, so that `10.0.0.1-50` (an nmap range) is not a hostname.
    if !parts
        .last()
        .is_some_and(|t| t.bytes().any(|b| b.is_ascii_alphabetic()))
    {
        return Err(
            "not a valid IP address, and a hostname's last label must hold a letter".into(),
        );
    }
    Ok(())
}

/// A scan target: a host, or a CIDR no wider than `/max_prefix` for IPv4 (`/max_prefix
/// + 96` for IPv6, the same number of addresses).
pub fn scan_target(s: &str, max_prefix: u8) -> Result<String, String> {
    if !s.contains('/') {
        return host(s);
    }
    let net: IpNet = s
        .parse()
        .map_err(|_| "must be a host, an IP address or a CIDR like 192.0.2.0/28".to_string())?;
    let (prefix, min) = match net {
        IpNet::V4(n) => (n.prefix_len(), max_prefix.min(32)),
        IpNet::V6(n) => (n.prefix_len(), max_prefix.min(32) + 96),
    };
    if prefix < min {
        return Err(format!(
            "a /{prefix} is wider than the allowed /{min} for scans"
        ));
    }
    Ok(net.trunc().to_string())
}

/// A port list: `22`, `22,80,443`, `8000-8100`, combined; each port 1-65535, ranges
/// ascending, at most [`MAX_PORTS`] ports. Returned in canonical form.
pub fn port_list(s: &str) -> Result<String, String> {
    let mut total = 0usize;
    let mut out = Vec::new();
    for item in s.split(',') {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(item)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is not ascending"));
        }
        total += usize::from(hi - lo) + 1;
        if total > MAX_PORTS {
            return Err(format!("names more than {MAX_PORTS} ports"));
        }
        out.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        });
    }
    Ok(out.join(","))
}

fn port(s: &str) -> Result<u16, String> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{s} is not a port 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host("192.0.2.1").as_deref(), Ok("192.0.2.1"));
        assert_eq!(host("::1").as_deref(), Ok("::1"));
        assert!(host("core-sw1.example.net").is_ok());
        assert!(host("example.com.").is_ok());
        for b in [
            "-oProxyCommand=x",
            "a;b",
            "a b",
            "a..b",
            "a_b.com",
            "-a.com",
            "a-.com",
            "1.2.3.999",
            "exa\u{0440}ple.com",
            "$(id)",
            "`id`",
            "a|b",
            "a\nb",
        ] {
            assert!(host(b).is_err(), "{b:?} accepted");
        }
        assert!(host(&"a".repeat(64)).is_err());
        assert!(dns_name("_sip._tcp.example.com").is_ok());
    }

    #[test]
    fn scan_targets() {
        assert_eq!(
            scan_target("192.0.2.7/24", 24).as_deref(),
            Ok("192.0.2.0/24")
        );
        assert!(scan_target("10.0.0.0/8", 24).is_err());
        assert!(scan_target("10.0.0.0/23", 24).is_err());
        assert!(scan_target("2001:db8::/64", 24).is_err());
        assert!(scan_target("2001:db8::/120", 24).is_ok());
        assert!(scan_target("10.0.0.1-50", 24).is_err());
    }

    #[test]
    fn port_lists() {
        assert_eq!(
            port_list("22,80,8000-8010").as_deref(),
            Ok("22,80,8000-8010")
        );
        for b in [
            "0", "65536", "10-5", "1-65535", "22,,80", "+22", "22 ", "0x16",
        ] {
            assert!(port_list(b).is_err(), "{b:?} accepted");
        }
    }
}
