//! Tools written in Rust, with no external program: `port_check` (a timed TCP connect)
//! and `tls_check` (a rustls handshake that reports what the server presented).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::results::{to_value, Certificate, PortCheckResult, TlsCheckResult, ToolFailure};
use super::run::{data, Outcome, State};
use super::Plan;
use crate::source::SourceEvent;

/// Runs a native tool under the time limit and the stopper; output lines go to `tx`.
pub async fn run(
    plan: Plan,
    timeout: Duration,
    stop: oneshot::Receiver<()>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Outcome {
    let work = async {
        match plan {
            Plan::PortCheck { host, port } => port_check(&host, port).await,
            Plan::TlsCheck {
                host,
                port,
                server_name,
            } => tls_check(&host, port, server_name).await,
            Plan::Program(_) => Err("not a native tool".to_string()),
        }
    };
    let r = tokio::select! {
        r = work => r,
        _ = stop => return Outcome::ended(State::Cancelled, "cancelled"),
        _ = tokio::time::sleep(timeout) => {
            return Outcome::ended(State::TimedOut, &format!("ran longer than its limit of {timeout:?}"))
        }
    };
    let (state, code, text, result) = match r {
        Ok((text, result)) => {
            let failed = result.get("error").is_some();
            (
                if failed {
                    State::Failed
                } else {
                    State::Succeeded
                },
                if failed { 1 } else { 0 },
                text,
                result,
            )
        }
        Err(e) => (
            State::Failed,
            1,
            format!("{e}\n"),
            to_value(&ToolFailure { error: e }),
        ),
    };
    let _ = tx.send(data(text.as_bytes())).await;
    Outcome {
        state,
        code: Some(code),
        signal: None,
        message: None,
        result: Some(result),
    }
}

async fn resolve(host: &str, port: u16) -> Result<(Vec<SocketAddr>, f64), String> {
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok((addrs, ms(t)))
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

async fn port_check(host: &str, port: u16) -> Result<(String, Value), String> {
    let (addrs, resolve_ms) = resolve(host, port).await?;
    let addr = addrs[0];
    let t = Instant::now();
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => {
            let c = ms(t);
            Ok((
                format!("{host}:{port} ({addr}) open, connected in {c} ms\n"),
                to_value(&PortCheckResult {
                    open: true,
                    address: addr.to_string(),
                    connect_ms: c,
                    resolve_ms,
                    error: None,
                }),
            ))
        }
        Err(e) => {
            let c = ms(t);
            Ok((
                format!("{host}:{port} ({addr}) not open after {c} ms: {e}\n"),
                to_value(&PortCheckResult {
                    open: false,
                    address: addr.to_string(),
                    connect_ms: c,
                    resolve_ms,
                    error: Some(e.to_string()),
                }),
            ))
        }
    }
}

async fn tls_check(
    host: &str,
    port: u16,
    server_name: Option<String>,
) -> Result<(String, Value), String> {
    let (addrs, _) = resolve(host, port).await?;
    let addr = addrs[0];
    let sni = server_name.unwrap_or_else(|| host.to_string());
    let name = ServerName::try_from(sni.clone()).map_err(|e| format!("server name: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    let t = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let connect_ms = ms(t);
    let t = Instant::now();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let handshake_ms = ms(t);
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let now = crate::store::now();
    let mut chain = Vec::new();
    let mut leaf_names: Vec<String> = Vec::new();
    let mut leaf_not_after = None;
    for (i, der) in conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            chain.push(Certificate {
                error: Some("unparsable certificate".into()),
                ..Certificate::default()
            });
            continue;
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for g in &san.value.general_names {
                match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            _ => None,
                        };
                        names.extend(ip.map(|i| i.to_string()));
                    }
                    _ => {}
                }
            }
        }
        let not_after = cert.validity().not_after.timestamp();
        if i == 0 {
            leaf_names = names.clone();
            leaf_not_after = Some(not_after);
        }
        use sha2::Digest;
        chain.push(Certificate {
            subject: Some(cert.subject().to_string()),
            issuer: Some(cert.issuer().to_string()),
            not_before: Some(cert.validity().not_before.timestamp()),
            not_after: Some(not_after),
            names: Some(names),
            self_signed: Some(cert.subject() == cert.issuer()),
            sha256: Some(hex::encode(sha2::Sha256::digest(der.as_ref()))),
            error: None,
        });
    }
    let names_match = leaf_names.iter().any(|n| name_matches(n, &sni));
    let days_left = leaf_not_after.map(|na| (na - now).div_euclid(86_400));
    let expired = leaf_not_after.map(|na| na < now);
    let text = format!(
        "{addr} {version} {suite}, handshake {handshake_ms} ms\ncertificate for {leaf_names:?}, {} day(s) left{}\nchain: {} certificate(s)\n",
        days_left.unwrap_or(0),
        if names_match { "" } else { " — does not match the name asked for" },
        chain.len()
    );
    Ok((
        text,
        to_value(&TlsCheckResult {
            address: addr.to_string(),
            server_name: sni,
            protocol_version: version,
            cipher_suite: suite,
            connect_ms,
            handshake_ms,
            chain,
            names_match,
            days_left,
            expired,
        }),
    ))
}

/// A certificate name (`*.example.com` matches one left-most label) against `host`.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    let h = h.trim_end_matches('.');
    match p.strip_prefix("*.") {
        Some(rest) => h.split_once('.').is_some_and(|(_, tail)| tail == rest),
        None => p == h,
    }
}
