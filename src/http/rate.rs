//! The general API rate limit, per logged-in user and per client address: a token bucket
//! per key holding at most a minute's worth of requests, refilled continuously. Separate
//! from the login throttle (which counts failures). `/healthz` is exempt.
//!
//! Memory is bounded: at `MAX_KEYS` keys, buckets that have refilled completely (the
//! same as no bucket) are dropped, then the least recently used one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::Request;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::auth::{LoginInfo, LOGIN_KEY};
use crate::config::RateLimitConfig;
use crate::error::ApiError;

const MAX_KEYS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets for one kind of key.
struct Buckets {
    per_sec: f64,
    capacity: f64,
    map: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    fn new(per_minute: u32) -> Option<Buckets> {
        (per_minute > 0).then(|| Buckets {
            per_sec: f64::from(per_minute) / 60.0,
            capacity: f64::from(per_minute),
            map: Mutex::default(),
        })
    }

    /// Takes one token for `key`; `Err(seconds)` until one is available.
    fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= MAX_KEYS {
            let (rate, cap) = (self.per_sec, self.capacity);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < cap);
            if map.len() >= MAX_KEYS {
                if let Some(k) = map.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone()) {
                    map.remove(&k);
                }
            }
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.capacity,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// The limiter the middleware uses.
pub struct ApiRateLimit {
    per_user: Option<Buckets>,
    per_ip: Option<Buckets>,
    trusted_proxies: Vec<IpAddr>,
}

impl ApiRateLimit {
    pub fn new(cfg: &RateLimitConfig, trusted_proxies: Vec<IpAddr>) -> ApiRateLimit {
        ApiRateLimit {
            per_user: Buckets::new(cfg.per_user_per_minute),
            per_ip: Buckets::new(cfg.per_ip_per_minute),
            trusted_proxies,
        }
    }
}

fn too_many(retry_after: u64) -> Response {
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {retry_after} s"),
        )
    }
    .into_response()
}

/// The middleware; runs inside the session layer so the login is at hand (the session
/// is loaded once per request and shared with the handler).
pub async fn rate_limit(
    State(limit): State<Arc<ApiRateLimit>>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let now = Instant::now();
    if let Some(b) = &limit.per_ip {
        let (parts, body) = req.into_parts();
        let ip = crate::auth::client_ip(&parts, &limit.trusted_proxies).to_string();
        if let Err(wait) = b.take(&ip, now) {
            return too_many(wait);
        }
        return with_user_limit(&limit, Request::from_parts(parts, body), next, now).await;
    }
    with_user_limit(&limit, req, next, now).await
}

async fn with_user_limit(limit: &ApiRateLimit, req: Request, next: Next, now: Instant) -> Response {
    let session = req.extensions().get::<Session>().cloned();
    let login = match session {
        Some(s) => s.get::<LoginInfo>(LOGIN_KEY).await.ok().flatten(),
        None => None,
    };
    if let Some(login) = login {
        super::record_login(req.extensions(), &login.username, &login.login_id);
        if let Some(b) = &limit.per_user {
            if let Err(wait) = b.take(&login.username, now) {
                return too_many(wait);
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_the_rate() {
        let b = Buckets::new(60).expect("on");
        let t0 = Instant::now();
        for _ in 0..60 {
            b.take("k", t0).expect("within the burst");
        }
        assert_eq!(b.take("k", t0), Err(1));
        assert!(b.take("other", t0).is_ok());
        assert!(b.take("k", t0 + Duration::from_secs(1)).is_ok());
        assert!(Buckets::new(0).is_none());
    }
}
