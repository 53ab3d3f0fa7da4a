//! Request context: a request id on every request, a tracing span carrying it (and, once
//! known, the user and login ids), one access-log line per request, and the id echoed
//! in `X-Request-Id`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

const HEADER: &str = "x-request-id";

/// The id of the request being handled (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The request's span (a request extension). Inner layers enter spans of their own
/// (tower-sessions does), so `Span::current()` is not it.
#[derive(Debug, Clone)]
pub struct RequestSpan(pub tracing::Span);

/// Records who is asking in the request's span, so its log lines say so.
pub fn record_login(extensions: &axum::http::Extensions, username: &str, login_id: &str) {
    if let Some(RequestSpan(span)) = extensions.get::<RequestSpan>() {
        span.record("user", username).record("login_id", login_id);
    }
}

/// An id a proxy may hand us: short, and only characters safe in a header and a log.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The middleware. `X-Request-Id` is taken from trusted proxies only (from anyone else
/// it would let a client write ids into our logs); otherwise a fresh one is made.
pub async fn request_context(
    State(trusted): State<Arc<Vec<IpAddr>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let from_proxy = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| trusted.contains(&c.0.ip()));
    let id = from_proxy
        .then(|| req.headers().get(HEADER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 12]>()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        user = tracing::field::Empty,
        login_id = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(RequestSpan(span.clone()));
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "http request"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tame_ids_are_accepted() {
        assert!(acceptable("abc-123_x.y:z"));
        assert!(!acceptable(""));
        assert!(!acceptable("a b"));
        assert!(!acceptable("a\nb"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
