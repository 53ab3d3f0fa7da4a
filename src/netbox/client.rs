//! The HTTP client that talks to one NetBox: token styles, bounded requests (time,
//! size, no redirects), retries on 429/5xx, and paged listings fetched with bounded
//! concurrency.
//!
//! Paging: NetBox answers `{count, next, previous, results}`. The first page says how
//! many objects match and how many it really returned (NetBox caps `limit` at its
//! `MAX_PAGE_SIZE`); while `next` is set, the remaining pages are asked for by
//! `offset` from the configured base URL, several at once. `next` itself is never
//! fetched: a server-supplied URL could point anywhere, the base URL is the operator's.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::NetboxError;
use crate::config::NetboxConfig;

/// Longest `Retry-After` honoured; longer waits use the normal backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// One page of a NetBox listing.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub count: u64,
    #[serde(default)]
    pub next: Option<String>,
    pub results: Vec<T>,
}

/// `GET /api/status/`: only the version is read.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(rename = "netbox-version", default)]
    netbox_version: Option<String>,
}

/// NetBox's error body: `{"detail": "..."}`.
#[derive(Debug, Deserialize)]
struct Detail {
    detail: Option<String>,
}

/// A client for one NetBox (its URL and token), with the gateway's limits.
pub struct NetboxClient {
    http: reqwest::Client,
    base: reqwest::Url,
    auth: HeaderValue,
    cfg: NetboxConfig,
}

impl std::fmt::Debug for NetboxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("NetboxClient")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// Checks a NetBox base URL: http or https, a host, no credentials, no query.
pub fn parse_url(raw: &str) -> Result<reqwest::Url, NetboxError> {
    let bad = |m: &str| NetboxError::invalid("invalid_url", m.to_string());
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 2048 {
        return Err(bad("url must be 1-2048 characters"));
    }
    let mut url = reqwest::Url::parse(raw).map_err(|e| bad(&format!("url is not valid: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("url must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("url has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("put the token in \"token\", not in the url"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("url takes no query or fragment"));
    }
    // The API lives under `{url}/api/`; a trailing `/api` typed by habit is dropped.
    let path = url.path().trim_end_matches('/').to_string();
    let path = path.strip_suffix("/api").unwrap_or(&path).to_string();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

/// The `Authorization` value for a token: NetBox v2 tokens (`nbt_<key>.<secret>`) are
/// bearer tokens, legacy 40-hex tokens use the `Token` scheme.
pub fn auth_header(token: &str) -> Result<HeaderValue, NetboxError> {
    let t = token.trim();
    let legacy = t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let v2 = t.strip_prefix("nbt_").is_some_and(|rest| {
        let mut parts = rest.splitn(2, '.');
        let (key, secret) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        !key.is_empty()
            && !secret.is_empty()
            && rest.len() <= 256
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    });
    let value = if legacy {
        format!("Token {t}")
    } else if v2 {
        format!("Bearer {t}")
    } else {
        return Err(NetboxError::invalid(
            "invalid_token",
            "token must be a legacy 40-hex token or a v2 token nbt_<key>.<secret>",
        ));
    };
    let mut h = HeaderValue::from_str(&value)
        .map_err(|_| NetboxError::invalid("invalid_token", "token has invalid characters"))?;
    // Keeps it out of any debug output of the request.
    h.set_sensitive(true);
    Ok(h)
}

impl NetboxClient {
    /// A client for `url` with `token`; `verify_tls=false` skips certificate checks for
    /// this client only.
    pub fn new(
        cfg: &NetboxConfig,
        url: &str,
        token: &str,
        verify_tls: bool,
    ) -> Result<NetboxClient, NetboxError> {
        let base = parse_url(url)?;
        let auth = auth_header(token)?;
        let tls = crate::tls::client_config(verify_tls)
            .map_err(|e| NetboxError::Unreachable(format!("cannot build the client: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
            .timeout(Duration::from_millis(cfg.request_timeout_ms.max(1)))
            // A redirect would be followed with the token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("opsgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NetboxError::Unreachable(format!("cannot build the client: {e}")))?;
        Ok(NetboxClient {
            http,
            base,
            auth,
            cfg: cfg.clone(),
        })
    }

    /// `GET /api/status/`: checks the URL and the token (the status endpoint answers
    /// without a token, so a token-only endpoint is asked too) and returns the version.
    pub async fn check(&self) -> Result<Option<String>, NetboxError> {
        let status: Status = self.get_json("api/status/", &[]).await?;
        // `/api/status/` is readable anonymously on many installs: prove the token.
        let _: Page<serde_json::Value> = self
            .get_json("api/dcim/sites/", &[("limit".into(), "1".into())])
            .await?;
        Ok(status.netbox_version)
    }

    /// One page of `path` with `query`.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Page<T>, NetboxError> {
        self.get_json(path, query).await
    }

    /// Every object of a listing: the first page, then the rest by offset, at most
    /// `concurrency` at once, at most `max_pages` pages and `max_items` objects (both
    /// checked against the first page's `count`, before the rest is fetched) and
    /// `max_listing_bytes` of responses. `on_page` hears of each page (pages done, pages
    /// in all).
    pub async fn all<T: DeserializeOwned + Send>(
        &self,
        path: &str,
        query: &[(String, String)],
        max_items: usize,
        on_page: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<T>, NetboxError> {
        let max_bytes = self.cfg.max_listing_bytes;
        Ok(self
            .all_within(path, query, max_items, max_bytes, on_page)
            .await?
            .0)
    }

    /// Response bytes one listing may take in all ([`NetboxClient::all`]).
    pub fn max_listing_bytes(&self) -> usize {
        self.cfg.max_listing_bytes
    }

    /// [`NetboxClient::all`] within `max_bytes` of responses; also answers the bytes
    /// taken, so that several listings for one request can share one budget.
    pub async fn all_within<T: DeserializeOwned + Send>(
        &self,
        path: &str,
        query: &[(String, String)],
        max_items: usize,
        max_bytes: usize,
        on_page: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Vec<T>, usize), NetboxError> {
        let limit = self.cfg.page_size.clamp(1, 1000);
        let with = |offset: usize| {
            let mut q = query.to_vec();
            q.push(("limit".into(), limit.to_string()));
            q.push(("offset".into(), offset.to_string()));
            q
        };
        let (first, mut bytes): (Page<T>, usize) = self.get_sized(path, &with(0)).await?;
        let step = first.results.len();
        let total = usize::try_from(first.count).unwrap_or(usize::MAX);
        if total > max_items || step > max_items {
            return Err(NetboxError::TooMany(format!(
                "{total} objects match; the limit is {max_items} (netbox.max_import_devices): narrow the filters"
            )));
        }
        if bytes > max_bytes {
            return Err(NetboxError::TooMany(format!(
                "NetBox's answers exceed {max_bytes} bytes (netbox.max_listing_bytes)"
            )));
        }
        let mut out = first.results;
        if first.next.is_none() || step == 0 || out.len() >= total {
            on_page(1, 1);
            return Ok((out, bytes));
        }
        let pages = total.div_ceil(step);
        if pages > self.cfg.max_pages.max(1) {
            return Err(NetboxError::TooMany(format!(
                "{total} objects match ({pages} pages of {step}); the limit is {} pages: narrow the filters",
                self.cfg.max_pages
            )));
        }
        on_page(1, pages);
        out.reserve(total.saturating_sub(out.len()));
        // `buffered` keeps at most `concurrency` requests in flight and yields pages
        // in order.
        let mut rest = stream::iter((1..pages).map(|i| {
            let q = with(i * step);
            async move { self.get_sized::<Page<T>>(path, &q).await }
        }))
        .buffered(self.cfg.concurrency.clamp(1, 16));
        let mut done = 1;
        while let Some(page) = rest.next().await {
            let (page, size) = page?;
            out.extend(page.results);
            bytes += size;
            // A server may send more than its `count` said, or huge objects: what is
            // kept is bounded whatever it sends.
            if out.len() > max_items || bytes > max_bytes {
                return Err(NetboxError::TooMany(format!(
                    "NetBox sent more than it announced (over {max_items} objects or {max_bytes} bytes)"
                )));
            }
            done += 1;
            on_page(done, pages);
        }
        Ok((out, bytes))
    }

    /// GET with retries on 429/5xx and connection-level failures, bounded in attempts.
    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, NetboxError> {
        Ok(self.get_sized(path, query).await?.0)
    }

    /// [`Self::get_json`] and the size of the answer's body.
    async fn get_sized<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<(T, usize), NetboxError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| NetboxError::invalid("invalid_url", e.to_string()))?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt > self.cfg.retries;
            match self.get_once(&url, query).await {
                Ok(body) => {
                    let value = serde_json::from_slice(&body).map_err(|e| NetboxError::Status {
                        status: 200,
                        message: format!("the answer of {path} is not what NetBox sends: {e}"),
                    })?;
                    return Ok((value, body.len()));
                }
                Err(Failure::Retry(wait, e)) if !last => {
                    let backoff = self
                        .cfg
                        .retry_base_ms
                        .saturating_mul(1 << (attempt - 1).min(10));
                    let wait = wait
                        .filter(|w| *w <= MAX_RETRY_AFTER)
                        .unwrap_or(Duration::from_millis(backoff));
                    tracing::info!(path, attempt, error = %e, ?wait, "NetBox request retried");
                    tokio::time::sleep(wait).await;
                }
                Err(Failure::Retry(_, e) | Failure::Final(e)) => return Err(e),
            }
        }
    }

    async fn get_once(
        &self,
        url: &reqwest::Url,
        query: &[(String, String)],
    ) -> Result<Vec<u8>, Failure> {
        let mut url = url.clone();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let resp = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                let err = classify(&e);
                // Timeouts and refused connections are not retried: the caller asked for
                // an answer within the timeout, and a stalled server would multiply it.
                Failure::Final(err)
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(300).collect::<String>())
            .unwrap_or_default();
        let body = read_capped(resp, self.cfg.max_response_bytes).await?;
        if status.is_success() {
            return Ok(body);
        }
        // Only NetBox's own `detail` is passed on: the URL is the operator's choice, and
        // echoing any other body would make the gateway a reader of whatever service
        // that URL names.
        let detail = serde_json::from_slice::<Detail>(&body)
            .ok()
            .and_then(|d| d.detail)
            .unwrap_or_default();
        let detail: String = detail
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        let err = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => NetboxError::AuthFailed(format!(
                "NetBox refused the token ({}): {detail}",
                status.as_u16()
            )),
            s if s.is_redirection() => NetboxError::Status {
                status: s.as_u16(),
                message: format!(
                    "NetBox answered a redirect ({}) to {location:?}; give that URL instead",
                    s.as_u16()
                ),
            },
            s => NetboxError::Status {
                status: s.as_u16(),
                message: if detail.is_empty() {
                    format!("NetBox answered {s}")
                } else {
                    format!("NetBox answered {}: {detail}", s.as_u16())
                },
            },
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Failure::Retry(retry_after, err))
        } else {
            Err(Failure::Final(err))
        }
    }
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt (429, 5xx), after the server's `Retry-After` if it gave one.
    Retry(Option<Duration>, NetboxError),
    Final(NetboxError),
}

/// Reads a body, refusing past `cap` bytes (checked as it arrives, not after).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, Failure> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Failure::Final(too_large(cap)));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > cap {
                    return Err(Failure::Final(too_large(cap)));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(Failure::Final(classify(&e))),
        }
    }
}

fn too_large(cap: usize) -> NetboxError {
    NetboxError::Status {
        status: 200,
        message: format!(
            "NetBox's answer is larger than the {cap}-byte limit (netbox.max_response_bytes)"
        ),
    }
}

/// Maps a transport error to `netbox_tls` (certificate), else `netbox_unreachable`.
fn classify(e: &reqwest::Error) -> NetboxError {
    let mut text = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("invalidcertificate")
        || lower.contains("unknownissuer")
    {
        return NetboxError::Tls(text);
    }
    if e.is_timeout() {
        return NetboxError::Unreachable(format!("NetBox did not answer in time: {text}"));
    }
    NetboxError::Unreachable(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_styles() {
        let legacy = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            auth_header(legacy).expect("legacy").to_str().ok(),
            Some(format!("Token {legacy}").as_str())
        );
        let v2 = "nbt_abc123.s3cr3tPart";
        assert_eq!(
            auth_header(v2).expect("v2").to_str().ok(),
            Some(format!("Bearer {v2}").as_str())
        );
        for bad in ["", "short", "nbt_", "nbt_key", "nbt_.x", "Token abc\n"] {
            assert!(auth_header(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://nb.example.com/api")
                .expect("url")
                .as_str(),
            "https://nb.example.com/"
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8000/netbox/")
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8000/netbox/"
        );
        for bad in [
            "ftp://x",
            "http://u:p@x/",
            "https://x/?a=1",
            "not a url",
            "",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
    }
}
