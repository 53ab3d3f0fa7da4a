//! TLS material: loading the configured PEM pair and making a self-signed one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio_rustls::TlsAcceptor;

/// Builds a rustls acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate found in {}", cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading private key from {}", key.display()))?
    .ok_or_else(|| anyhow!("no private key found in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes a self-signed certificate for localhost into `dir`; returns (cert, key) paths.
pub fn gen_cert(dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    sans.extend(names.iter().cloned());
    let certified = rcgen::generate_simple_self_signed(sans)?;
    let cert_path = dir.join("opsgate-dev.crt");
    let key_path = dir.join("opsgate-dev.key");
    std::fs::write(&cert_path, certified.cert.pem())?;
    let _ = std::fs::remove_file(&key_path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)?;
    f.write_all(certified.signing_key.serialize_pem().as_bytes())?;
    Ok((cert_path, key_path))
}
