//! The browser client, built from `web/` by `build.rs` (Vite) into `web/dist/` and
//! embedded in the binary with rust-embed.
//!
//! - `{base}/` serves `index.html` with `Cache-Control: no-cache` and its own CSP: a
//!   fresh nonce per response, stamped into the page (a `<meta>` the client reads) and
//!   into `style-src`, so the `<style>` elements xterm.js creates at run time are
//!   allowed while injected markup styles are not. Scripts are `'self'` only.
//! - `{base}/assets/…` serves Vite's content-hashed files with a one-year `immutable`
//!   cache: a new build has new names, so a cached file is never stale.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "web/dist/"]
struct Dist;

/// Where the page reads its nonce from; replaced per response.
const NONCE_PLACEHOLDER: &str = "__OPSGATE_NONCE__";

/// The page's policy. `style-src-attr 'unsafe-inline'` is there for one reason: xterm.js's
/// DOM renderer colours true-colour cells with `style` attributes, which a nonce cannot
/// cover. Style attributes run no script and load nothing beyond `img-src`.
fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         style-src-attr 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
         connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'"
    )
}

/// `GET {base}/`: the console.
pub async fn index() -> Response {
    let Some(file) = Dist::get("index.html") else {
        return ApiError::internal("web/dist/index.html is missing from the build").into_response();
    };
    let nonce = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let html = String::from_utf8_lossy(&file.data).replace(NONCE_PLACEHOLDER, &nonce);
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&page_csp(&nonce)) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The API reference page (`web/docs.html`, a second Vite entry), under the console's
/// CSP with its own nonce. It is served at `{base}/api/docs`, one level below where Vite's
/// relative `./assets/` links expect the page to be, so they are rewritten to `../assets/`.
pub fn docs_page() -> Response {
    let Some(file) = Dist::get("docs.html") else {
        return ApiError::internal("web/dist/docs.html is missing from the build").into_response();
    };
    let nonce = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let html = String::from_utf8_lossy(&file.data)
        .replace(NONCE_PLACEHOLDER, &nonce)
        .replace("\"./assets/", "\"../assets/");
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&page_csp(&nonce)) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// `GET {base}/assets/{*path}`: a hashed build file.
pub async fn asset(Path(path): Path<String>) -> Response {
    let Some(file) = Dist::get(&format!("assets/{path}")) else {
        return ApiError::not_found("asset").into_response();
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type(&path)),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        file.data,
    )
        .into_response()
}

/// Content types of what Vite emits; anything else is served as bytes (and `nosniff`
/// keeps the browser from guessing).
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_has_a_page_with_the_nonce_placeholder() {
        let page = Dist::get("index.html").expect("web/dist/index.html");
        let text = String::from_utf8_lossy(&page.data);
        assert!(text.contains(NONCE_PLACEHOLDER));
        // No inline script: every script comes from a file.
        assert!(!text.contains("<script>"));
    }

    #[test]
    fn the_build_has_the_api_reference_page() {
        let page = Dist::get("docs.html").expect("web/dist/docs.html");
        let text = String::from_utf8_lossy(&page.data);
        assert!(text.contains(NONCE_PLACEHOLDER));
        assert!(!text.contains("<script>"));
        // Its asset links are the ones `docs_page` moves one level up.
        assert!(text.contains("\"./assets/"));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index-abc.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
