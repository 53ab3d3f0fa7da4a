//! DNS-rebinding guard. A page on `evil.example` whose name is re-pointed at the gateway
//! reaches it with `Host: evil.example`, and to the browser that is the page's own
//! origin, so the origin check passes. Only names the gateway is really reached by are
//! answered: the listen address, loopback names, `public_url`'s host and `allowed_hosts`.
//! Anything else gets 421 before any handler runs.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::error::ApiError;

/// The port the listener really has (differs from the configured one when that is 0).
#[derive(Debug, Clone, Copy)]
pub struct ListenPort(pub u16);

/// Which `Host` values the gateway answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    listen_ip: IpAddr,
    listen_port: u16,
    /// (name, port or any); from `public_url` and `allowed_hosts`, lower case.
    names: Vec<(String, Option<u16>)>,
    trusted_proxies: Vec<IpAddr>,
    tls: bool,
}

/// Splits `host[:port]` (IPv6 in brackets) into a lower-case host and its port.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    let a = authority.trim();
    if a.is_empty() || a.contains(['/', '@', ' ', ',']) {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = match &rest[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (&rest[..end], port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (a, None),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some((host, port))
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

impl HostPolicy {
    pub fn new(cfg: &Config) -> HostPolicy {
        let mut names = Vec::new();
        if let Some(url) = cfg.public_url.as_deref() {
            let https = url.starts_with("https://");
            if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
                let authority = rest.split('/').next().unwrap_or("");
                if let Some((h, p)) = split_host(authority) {
                    names.push((h, Some(p.unwrap_or(default_port(https)))));
                }
            }
        }
        for entry in &cfg.allowed_hosts {
            if let Some(parsed) = split_host(entry) {
                names.push(parsed);
            } else {
                tracing::warn!(entry = %entry, "ignoring an allowed_hosts entry that is not host[:port]");
            }
        }
        HostPolicy {
            listen_ip: cfg.listen.ip(),
            listen_port: cfg.listen.port(),
            names,
            trusted_proxies: cfg.trusted_proxies.clone(),
            tls: cfg.tls_enabled(),
        }
    }

    /// Whether `authority` (a `Host` value) names this gateway. `https` says which scheme
    /// the client used (for the default port), `listen_port` is the listener's port.
    pub fn allows(&self, authority: &str, https: bool, listen_port: u16) -> bool {
        let Some((host, port)) = split_host(authority) else {
            return false;
        };
        let port = port.unwrap_or(default_port(https));
        let ip = host.parse::<IpAddr>().ok();
        if port == listen_port {
            // A name that resolves to loopback on every machine cannot be re-pointed by
            // someone else's DNS, and an address literal needs no DNS at all.
            if host == "localhost" || ip.is_some_and(|i| i.is_loopback()) {
                return true;
            }
            if ip.is_some_and(|i| i == self.listen_ip || self.listen_ip.is_unspecified()) {
                return true;
            }
        }
        self.names
            .iter()
            .any(|(n, p)| *n == host && p.is_none_or(|p| p == port))
    }
}

/// The middleware: 421 `misdirected_request` unless the request's host is allowed.
/// Behind a trusted proxy its `X-Forwarded-Host` (what the browser used) is checked.
pub async fn host_check(
    State(policy): State<Arc<HostPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let from_proxy = peer.is_some_and(|p| policy.trusted_proxies.contains(&p));
    let forwarded = from_proxy
        .then(|| req.headers().get("x-forwarded-host"))
        .flatten();
    let host = forwarded
        .or_else(|| req.headers().get(axum::http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let https = policy.tls
        || (from_proxy
            && req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https")));
    let listen_port = req
        .extensions()
        .get::<ListenPort>()
        .map_or(policy.listen_port, |p| p.0);
    let ok = host
        .as_deref()
        .is_some_and(|h| policy.allows(h, https, listen_port));
    if !ok {
        let shown: String = host
            .unwrap_or_default()
            .chars()
            .take(100)
            .filter(|c| !c.is_control())
            .collect();
        tracing::info!(host = %shown, "refused a request for a host this gateway is not");
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            format!("this gateway does not answer for host {shown:?}; add it to allowed_hosts if it should"),
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> HostPolicy {
        let cfg = Config::load(None, Vec::new()).expect("cfg");
        let mut cfg = cfg;
        cfg.public_url = Some("https://ops.example.com/opsgate".into());
        cfg.allowed_hosts = vec![extra.to_string()];
        HostPolicy::new(&cfg)
    }

    #[test]
    fn hosts_are_matched_with_their_ports() {
        let p = policy("gw.internal:9000");
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "ops.example.com",
            "ops.example.com:443",
            "gw.internal:9000",
        ] {
            let https = ok.starts_with("ops.");
            assert!(p.allows(ok, https, 8080), "{ok} refused");
        }
        for bad in [
            "evil.example:8080",
            "localhost:9999",
            "ops.example.com:8080",
            "gw.internal:8080",
            "10.0.0.1:8080",
            "",
            "a b",
            "127.0.0.1:notaport",
        ] {
            assert!(!p.allows(bad, false, 8080), "{bad} allowed");
        }
        assert!(
            !p.allows("ops.example.com", false, 8080),
            "http default port 80"
        );
        assert!(policy("any.example").allows("any.example:1234", false, 8080));
    }
}
