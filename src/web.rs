//! The web client's assets. Until the browser client lands (see `web/README.md`), the
//! gateway serves a small landing page.

use axum::response::Html;

const INDEX: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>opsgate</title>
<style>body{font:15px system-ui,sans-serif;margin:3em;max-width:46em;color:#222}code{background:#eee;padding:0 .3em}</style>
</head><body>
<h1>opsgate</h1>
<p>The gateway is running. The REST API lives under <code>api/</code> and the multiplexed
WebSocket at <code>ws</code> (subprotocol <code>opsgate.v1</code>); see the README and
<code>protocol/PROTOCOL.md</code>.</p>
<p><a href="healthz">healthz</a> · <a href="metrics">metrics</a></p>
</body></html>"#;

/// `GET /`
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
