//! Private keys as users upload them: the key file itself names its decryption cost
//! (OpenSSH bcrypt rounds, PuTTY Argon2 memory and passes, PKCS#8 PBKDF2 iterations or
//! scrypt parameters), so an uploaded key could make the gateway spend seconds of CPU or
//! gigabytes of memory. Every key's cost is read from its header before anything is
//! decrypted and refused above [`Limits`]; decryption then runs on a small bounded pool
//! with a time limit, never inside a database transaction. A key is decrypted once, at
//! save, and stored (sealed) without its passphrase encryption, so connecting never pays
//! a KDF again.

use std::time::Duration;

use base64::Engine;
use russh::keys::ssh_key::{LineEnding, PrivateKey};
use tokio::sync::Semaphore;

/// The most a key may ask for. Each is far above what the usual tools make by default
/// (ssh-keygen: 16 bcrypt rounds; PuTTYgen: Argon2id, 8 MiB, a pass count calibrated to
/// about 0.1 s; OpenSSL: PBKDF2 with 2,048 iterations, scrypt N=16384 r=8 p=1), and still
/// well under a second of one core in a release build.
pub struct Limits;

impl Limits {
    /// OpenSSH `bcrypt` rounds. 128 keeps the widely recommended `ssh-keygen -a 100`.
    pub const BCRYPT_ROUNDS: u32 = 128;
    /// PuTTY `Argon2-Memory`, in KiB (64 MiB).
    pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
    /// PuTTY `Argon2-Passes`.
    pub const ARGON2_PASSES: u32 = 64;
    /// PuTTY `Argon2-Parallelism`.
    pub const ARGON2_PARALLELISM: u32 = 8;
    /// PuTTY memory × passes, in KiB: 8 MiB × 64 passes or 64 MiB × 8 passes.
    pub const ARGON2_WORK_KIB: u64 = 8 * 1024 * 64;
    /// PKCS#8 PBKDF2 iterations.
    pub const PBKDF2_ITERATIONS: u32 = 1_000_000;
    /// PKCS#8 scrypt memory, 128 · N · r bytes (64 MiB).
    pub const SCRYPT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
    /// PKCS#8 scrypt parallelism.
    pub const SCRYPT_PARALLELISM: u16 = 4;
}

/// Decryptions running at once. Two cores are enough to keep both busy; more would let
/// key uploads starve logins and terminals.
static DECODE_POOL: Semaphore = Semaphore::const_new(2);
/// Longest wait for a place in the pool plus the decryption itself.
pub const DECODE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a private key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the private key asks for a decryption cost above the gateway's limit: {0}; re-encrypt it with the tool's defaults (e.g. `ssh-keygen -p -f KEY`)")]
    TooCostly(String),
    #[error("the private key cannot be read (wrong passphrase or unsupported format): {0}")]
    Invalid(String),
    #[error("decrypting the private key did not finish within {} s; try again", DECODE_TIMEOUT.as_secs())]
    Timeout,
}

/// Reads the decryption cost a key asks for and refuses it above [`Limits`]. Cheap: no
/// key derivation, no allocation beyond the key text. Returns whether the key file is
/// passphrase-protected.
pub fn check_cost(text: &str) -> Result<bool, KeyError> {
    if text.trim().starts_with("PuTTY-User-Key-File-") {
        return check_ppk(text);
    }
    let Some((label, der)) = pem_body(text)? else {
        // Not a format with a KDF: leave the verdict to the decoder.
        return Ok(false);
    };
    match label {
        Label::Openssh => check_openssh(&der),
        Label::EncryptedPkcs8 => check_pkcs8(&der).map(|()| true),
        // PKCS#1/SEC1 with a legacy `DEK-Info` header: one MD5 round, cheap.
        Label::Other => Ok(text.lines().any(|l| l.starts_with("DEK-Info:"))),
    }
}

/// A key the gateway has read, and whether its file was passphrase-protected.
pub struct DecodedKey {
    pub key: PrivateKey,
    pub was_encrypted: bool,
}

/// Checks the cost, then decrypts (if `passphrase` is given) on the bounded pool.
pub async fn decode(text: String, passphrase: Option<String>) -> Result<DecodedKey, KeyError> {
    let was_encrypted = check_cost(&text)?;
    let work = async move {
        let permit = DECODE_POOL
            .acquire()
            .await
            .map_err(|_| KeyError::Invalid("decryption pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            // The permit is released when the work really ends, even after a timeout.
            let _permit = permit;
            russh::keys::decode_secret_key(&text, passphrase.as_deref())
                .map(|key| DecodedKey { key, was_encrypted })
                .map_err(|e| KeyError::Invalid(e.to_string()))
        })
        .await
        .map_err(|e| KeyError::Invalid(e.to_string()))?
    };
    tokio::time::timeout(DECODE_TIMEOUT, work)
        .await
        .map_err(|_| KeyError::Timeout)?
}

/// A decrypted key as unencrypted OpenSSH text, the form the gateway stores (sealed).
pub fn to_stored_text(key: &PrivateKey) -> Result<String, KeyError> {
    key.to_openssh(LineEnding::LF)
        .map(|t| t.to_string())
        .map_err(|e| KeyError::Invalid(e.to_string()))
}

enum Label {
    Openssh,
    EncryptedPkcs8,
    Other,
}

/// The base64 body of the first PEM block, collected the way russh's decoder does (lines
/// of base64 characters between BEGIN and END), so both see the same bytes.
fn pem_body(text: &str) -> Result<Option<(Label, Vec<u8>)>, KeyError> {
    let mut label = None;
    let mut body = String::new();
    for line in text.lines() {
        if label.is_some() {
            if line.starts_with("-----END ") {
                break;
            }
            if line
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '='))
            {
                body.push_str(line);
            }
            continue;
        }
        label = match line {
            "-----BEGIN OPENSSH PRIVATE KEY-----" => Some(Label::Openssh),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----" => Some(Label::EncryptedPkcs8),
            l if l.starts_with("-----BEGIN ") => Some(Label::Other),
            _ => None,
        };
    }
    let Some(label) = label else { return Ok(None) };
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| KeyError::Invalid(format!("bad base64: {e}")))?;
    Ok(Some((label, der)))
}

/// Reads one SSH wire `string` (u32 length, bytes).
fn ssh_string<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], KeyError> {
    let bad = || KeyError::Invalid("truncated OpenSSH key header".into());
    let len: [u8; 4] = buf
        .get(..4)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let len = u32::from_be_bytes(len) as usize;
    let rest = buf.get(4..).ok_or_else(bad)?;
    let s = rest.get(..len).ok_or_else(bad)?;
    *buf = rest.get(len..).ok_or_else(bad)?;
    Ok(s)
}

/// `openssh-key-v1\0`, cipher name, KDF name, KDF options (`bcrypt`: salt, rounds).
fn check_openssh(der: &[u8]) -> Result<bool, KeyError> {
    const MAGIC: &[u8] = b"openssh-key-v1\0";
    let mut buf = der
        .strip_prefix(MAGIC)
        .ok_or_else(|| KeyError::Invalid("not an OpenSSH private key".into()))?;
    let cipher = ssh_string(&mut buf)?;
    let kdf = ssh_string(&mut buf)?;
    let mut options = ssh_string(&mut buf)?;
    let encrypted = cipher != b"none";
    match kdf {
        b"none" => Ok(encrypted),
        b"bcrypt" => {
            let _salt = ssh_string(&mut options)?;
            let rounds: [u8; 4] = options
                .get(..4)
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| KeyError::Invalid("truncated bcrypt options".into()))?;
            let rounds = u32::from_be_bytes(rounds);
            if rounds > Limits::BCRYPT_ROUNDS {
                return Err(KeyError::TooCostly(format!(
                    "{rounds} bcrypt rounds (at most {})",
                    Limits::BCRYPT_ROUNDS
                )));
            }
            Ok(encrypted)
        }
        other => Err(KeyError::Invalid(format!(
            "unsupported key derivation {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// PuTTY `.ppk`: header lines `Argon2-Memory: N` etc. Every occurrence is checked (the
/// parser keeps the last one).
fn check_ppk(text: &str) -> Result<bool, KeyError> {
    let mut memory: u64 = 0;
    let mut passes: u64 = 0;
    let mut encrypted = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let (limit, what) = match key {
            "Encryption" => {
                encrypted = value.trim() != "none";
                continue;
            }
            "Argon2-Memory" => (Limits::ARGON2_MEMORY_KIB, "KiB of Argon2 memory"),
            "Argon2-Passes" => (Limits::ARGON2_PASSES, "Argon2 passes"),
            "Argon2-Parallelism" => (Limits::ARGON2_PARALLELISM, "Argon2 lanes"),
            _ => continue,
        };
        let n: u32 = value
            .trim()
            .parse()
            .map_err(|_| KeyError::Invalid(format!("{key} is not a number")))?;
        if n > limit {
            return Err(KeyError::TooCostly(format!("{n} {what} (at most {limit})")));
        }
        match key {
            "Argon2-Memory" => memory = u64::from(n),
            "Argon2-Passes" => passes = u64::from(n),
            _ => {}
        }
    }
    if memory * passes > Limits::ARGON2_WORK_KIB {
        return Err(KeyError::TooCostly(format!(
            "{memory} KiB × {passes} Argon2 passes (at most {} KiB·passes)",
            Limits::ARGON2_WORK_KIB
        )));
    }
    Ok(encrypted)
}

/// PKCS#8 `EncryptedPrivateKeyInfo`: PBES2 with PBKDF2 or scrypt (PBES1 counts are 16-bit).
fn check_pkcs8(der: &[u8]) -> Result<(), KeyError> {
    use pkcs8::pkcs5::{pbes2::Kdf, EncryptionScheme};
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
        .map_err(|e| KeyError::Invalid(format!("encrypted PKCS#8: {e}")))?;
    let EncryptionScheme::Pbes2(params) = &info.encryption_algorithm else {
        return Ok(());
    };
    match &params.kdf {
        Kdf::Pbkdf2(p) if p.iteration_count > Limits::PBKDF2_ITERATIONS => {
            Err(KeyError::TooCostly(format!(
                "{} PBKDF2 iterations (at most {})",
                p.iteration_count,
                Limits::PBKDF2_ITERATIONS
            )))
        }
        Kdf::Scrypt(p) => {
            let memory = 128u64
                .saturating_mul(p.cost_parameter)
                .saturating_mul(u64::from(p.block_size));
            if memory > Limits::SCRYPT_MEMORY_BYTES
                || p.parallelization > Limits::SCRYPT_PARALLELISM
            {
                return Err(KeyError::TooCostly(format!(
                    "scrypt N={} r={} p={} (at most {} MiB and p={})",
                    p.cost_parameter,
                    p.block_size,
                    p.parallelization,
                    Limits::SCRYPT_MEMORY_BYTES >> 20,
                    Limits::SCRYPT_PARALLELISM
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OpenSSH key header with the given KDF and rounds, then junk: the check must
    /// decide from the header alone.
    fn openssh_with_rounds(rounds: u32) -> String {
        let mut b = b"openssh-key-v1\0".to_vec();
        for s in [&b"aes256-ctr"[..], b"bcrypt"] {
            b.extend_from_slice(&(s.len() as u32).to_be_bytes());
            b.extend_from_slice(s);
        }
        let mut opts = Vec::new();
        opts.extend_from_slice(&16u32.to_be_bytes());
        opts.extend_from_slice(&[7u8; 16]);
        opts.extend_from_slice(&rounds.to_be_bytes());
        b.extend_from_slice(&(opts.len() as u32).to_be_bytes());
        b.extend_from_slice(&opts);
        b.extend_from_slice(&[0u8; 64]);
        let body = base64::engine::general_purpose::STANDARD.encode(&b);
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n")
    }

    #[test]
    fn bcrypt_rounds_are_capped() {
        assert!(check_cost(&openssh_with_rounds(16)).is_ok());
        assert!(check_cost(&openssh_with_rounds(Limits::BCRYPT_ROUNDS)).is_ok());
        assert!(matches!(
            check_cost(&openssh_with_rounds(800)),
            Err(KeyError::TooCostly(_))
        ));
        assert!(matches!(
            check_cost(&openssh_with_rounds(u32::MAX)),
            Err(KeyError::TooCostly(_))
        ));
    }

    #[test]
    fn ppk_argon2_parameters_are_capped() {
        let ppk = |mem: &str, passes: &str| {
            format!(
                "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: aes256-cbc\nComment: x\n\
                 Public-Lines: 1\nAAAA\nKey-Derivation: Argon2id\nArgon2-Memory: {mem}\n\
                 Argon2-Passes: {passes}\nArgon2-Parallelism: 1\nArgon2-Salt: 00\n"
            )
        };
        assert!(check_cost(&ppk("8192", "13")).is_ok());
        assert!(matches!(
            check_cost(&ppk("1048576", "1")),
            Err(KeyError::TooCostly(_))
        ));
        assert!(matches!(
            check_cost(&ppk("65536", "64")),
            Err(KeyError::TooCostly(_))
        ));
        assert!(matches!(
            check_cost(&ppk("99999999999", "1")),
            Err(KeyError::Invalid(_))
        ));
    }

    #[test]
    fn truncated_headers_are_invalid_not_panics() {
        for n in 0..40 {
            let mut b = b"openssh-key-v1\0".to_vec();
            b.extend_from_slice(&[0xff; 40][..n]);
            let body = base64::engine::general_purpose::STANDARD.encode(&b);
            let text = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
            );
            assert!(check_cost(&text).is_err());
        }
    }
}
