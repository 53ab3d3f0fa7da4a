//! The REST API's OpenAPI 3.1 document and its reference page.
//!
//! The document is generated, never written by hand: every API route is registered
//! through `utoipa_axum`'s `OpenApiRouter` with `routes!(handler, …)`, which takes the
//! route's path and methods from the handler's `#[utoipa::path]` attribute, so a route
//! cannot exist without its documentation (and `tests/openapi.rs` probes the gateway for
//! every documented route). Request and response bodies are the handlers' own serde
//! types with `ToSchema` derived.
//!
//! What every route shares is added here once, in [`finish`], rather than repeated on
//! 60 attributes: the session-cookie security scheme (its name comes from the config),
//! `servers` from `base_path`, the 401 of authenticated routes, the origin rule of
//! writes (a documented `X-Requested-With` header and the 403 `origin_required`), the
//! JSON body errors (400/413/415), the API rate limit (429), the 404/400 of the
//! workspace selector, and the 500 every handler may answer.
//!
//! How to document a new route: put `#[utoipa::path(...)]` on the handler (method, path,
//! `tag`, `params`, `request_body`, `responses` with the route's own error codes), derive
//! `utoipa::ToSchema` on its bodies, add `WorkspaceQuery, WorkspaceHeader` to `params` if
//! it takes a [`crate::workspace::Workspace`], and register it in `crate::http::router`
//! with `.routes(routes!(handler))`.

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Serialize;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Doc, RefOr, Required, ResponseBuilder, ServerBuilder,
};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::config::Config;

/// The one error body of every REST answer that is not a success.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "saved session not found"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable snake_case `code` for programs, a `message` for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; each operation lists the codes it can answer.
    pub code: String,
    /// Human text; may change between versions.
    pub message: String,
}

/// The workspace selector, query form: a team id, or absent / empty / `personal` for
/// the caller's personal workspace.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspaceQuery {
    /// Team id of a shared workspace; absent, empty or `personal` selects the caller's
    /// personal workspace. May be combined with the header only if both agree.
    #[param(example = "personal")]
    pub workspace: Option<String>,
}

/// The workspace selector, header form (same meaning as `?workspace=`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct WorkspaceHeader {
    /// Team id of a shared workspace; absent, empty or `personal` selects the caller's
    /// personal workspace.
    #[param(rename = "X-Opsgate-Workspace")]
    pub x_opsgate_workspace: Option<String>,
}

/// Tags group the operations on the reference page, in this order.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "opsgate REST API",
        description = "The REST surface of the opsgate gateway: login, inventory (saved \
sessions, folders, credentials, known hosts) per workspace, teams, jobs, config versions, \
schedules, tools and executions, audit and statistics. Terminals, tool output and job \
progress stream over the WebSocket at `/ws` (see `protocol/PROTOCOL.md`).\n\n\
**Authentication.** Log in with `POST /api/auth/login` (JSON or `Authorization: Basic`); \
the answer sets the session cookie that every other call sends.\n\n\
**Writes.** A state-changing request (POST, PUT, DELETE) needs an `Origin` header of this \
gateway or, without an `Origin`, an `X-Requested-With` header (any value): a cross-site \
form can send neither. Otherwise 403 `forbidden` / `origin_required`.\n\n\
**Workspaces.** Inventory, jobs, configs and schedules live in a workspace, chosen per \
request with `?workspace=<team id>` or `X-Opsgate-Workspace: <team id>`; without one, \
the caller's personal workspace.\n\n\
**Errors.** Every error answers `{\"error\":{\"code\",\"message\"}}` (`ErrorBody`); \
each operation lists its status codes and error codes.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    security(("session_cookie" = [])),
    tags(
        (name = "auth", description = "Login, logout and the session"),
        (name = "users", description = "User accounts (admins)"),
        (name = "inventory", description = "Saved sessions and folders, import and export"),
        (name = "credentials", description = "Credential sets (secrets are never returned)"),
        (name = "known-hosts", description = "Trusted SSH host keys"),
        (name = "workspaces", description = "Workspaces and teams"),
        (name = "jobs", description = "Config backups and command jobs"),
        (name = "configs", description = "Stored config versions, diffs and search"),
        (name = "schedules", description = "Cron schedules of jobs"),
        (name = "tools", description = "Network tools and their executions"),
        (name = "system", description = "Audit, statistics, health, metrics, channels"),
        (name = "meta", description = "This document and the reference page"),
    )
)]
pub struct ApiDoc;

/// Name of the security scheme of the session cookie.
pub const COOKIE_SCHEME: &str = "session_cookie";
/// Name of the security scheme of HTTP Basic (accepted by the login route only).
pub const BASIC_SCHEME: &str = "basic";

/// Completes the document the router collected: what depends on the configuration
/// (cookie name, base path) and what every operation of a kind shares.
pub fn finish(mut doc: Doc, cfg: &Config) -> Doc {
    doc.servers = Some(vec![ServerBuilder::new()
        .url(if cfg.base_path.is_empty() {
            "/".to_string()
        } else {
            cfg.base_path.clone()
        })
        .description(Some(
            "This gateway (relative to the document's own origin, under `base_path`)",
        ))
        .build()]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        COOKIE_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            cfg.session.cookie_name.clone(),
            "The session cookie set by `POST /api/auth/login` (HttpOnly, SameSite=Strict, \
             Secure under TLS); idle and absolute timeouts apply."
                .to_string(),
        ))),
    );
    components.add_security_scheme(
        BASIC_SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "Accepted by `POST /api/auth/login` only (with an empty body), which \
                     answers with the session cookie: other routes take the cookie.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "metrics_token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`GET /metrics` only, when the config sets `metrics_token`.",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            readable_summary(op);
        }
        for (method, op) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("delete", &mut item.delete),
        ] {
            if let Some(op) = op.as_mut() {
                shared_answers(path, method, op);
            }
        }
    }
    doc
}

/// Handlers' doc comments start with their route (`` `GET /api/jobs` ``), which utoipa
/// takes as the summary; the reference page lists operations by summary, so it becomes
/// the operation id in words ("List jobs") and the route's own text moves to the
/// description.
fn readable_summary(op: &mut Operation) {
    let Some(id) = op.operation_id.as_deref() else {
        return;
    };
    let old = op.summary.take().unwrap_or_default();
    let mut words = id.replace('_', " ");
    if let Some(first) = words.get(..1) {
        words = first.to_uppercase() + &words[1..];
    }
    op.summary = Some(words);
    // What the doc comment says beyond the route itself, e.g. "(rename)".
    let rest = old
        .strip_prefix('`')
        .and_then(|s| s.split_once('`'))
        .map(|(_, rest)| rest.trim_start_matches([':', ' ']).trim())
        .unwrap_or(old.as_str());
    if !rest.is_empty() {
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{rest}\n\n{d}"),
            _ => rest.to_string(),
        });
    }
}

/// Adds what an operation shares with every operation of its kind.
fn shared_answers(path: &str, method: &str, op: &mut Operation) {
    // `security` left unset means the document's default (the cookie): authenticated.
    if op.security.is_none() {
        add_error(
            op,
            401,
            "`unauthenticated`: no valid session (log in first).",
        );
    }
    let params = op.parameters.get_or_insert_with(Vec::new);
    let scoped = params
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if p.name == "workspace"));
    for p in params.iter_mut() {
        if let RefOr::T(p) = p {
            give_example(p);
        }
    }
    if method != "get" {
        params.push(RefOr::T(origin_header()));
        add_error(
            op,
            403,
            "`origin_required`: no `Origin` and no `X-Requested-With` header; `forbidden`: \
             an `Origin` that is not this gateway's.",
        );
    }
    if scoped {
        add_error(
            op,
            400,
            "`invalid_workspace`: the selector is malformed, too long, or `?workspace=` and \
             `X-Opsgate-Workspace` disagree.",
        );
        add_error(
            op,
            404,
            "`not_found`: the selected team does not exist or the caller is not a member.",
        );
        if method != "get" {
            add_error(
                op,
                403,
                "`forbidden`: the caller's role in the workspace may not change it (viewers read).",
            );
        }
    }
    // The login reads its body itself (it may be empty, for Basic): its JSON errors are
    // on its own attribute.
    let json_body = path != "/api/auth/login"
        && op.request_body.as_ref().is_some_and(
            |b| matches!(b, RefOr::T(b) if b.content.contains_key("application/json")),
        );
    if json_body {
        add_error(
            op,
            400,
            "`invalid_json`: the body is not JSON; `invalid_body`: a field is missing, \
             unknown or of the wrong type.",
        );
        add_error(
            op,
            415,
            "`unsupported_media_type`: send `Content-Type: application/json`.",
        );
    }
    if op.request_body.is_some() {
        add_error(
            op,
            413,
            "`payload_too_large`: the body exceeds `max_body_bytes`.",
        );
    }
    if path.starts_with("/api/") {
        add_error(
            op,
            429,
            "`rate_limited`: too many requests from this user or address; see `Retry-After`.",
        );
    }
    add_error(op, 500, "`internal`: a server fault; see the gateway log.");
}

/// Gives a path parameter, or a required query parameter, an example if its attribute
/// has none, so every operation shows a complete example request. Ids are 32 hex digits
/// (`store::new_id`); `tests/openapi.rs` sends real ones from its seeded inventory.
fn give_example(p: &mut Parameter) {
    let needed =
        matches!(p.parameter_in, ParameterIn::Path) || matches!(p.required, Required::True);
    let has = serde_json::to_value(&*p)
        .ok()
        .is_some_and(|v| v.get("example").is_some());
    if !needed || has {
        return;
    }
    let example = match p.name.as_str() {
        "username" => "alice",
        "name" => "Core",
        _ => "3f2a9c0e5b7d41a8a6c2e9f01b4d7c55",
    };
    let built = ParameterBuilder::from(p.clone())
        .example(Some(serde_json::json!(example)))
        .build();
    *p = built;
}

/// The `X-Requested-With` header parameter of every write.
fn origin_header() -> Parameter {
    ParameterBuilder::new()
        .name("X-Requested-With")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Needed (any value, e.g. `XMLHttpRequest`) when the request carries no `Origin` \
             header, as scripts usually do not; a browser's same-origin request sends \
             `Origin` instead.",
        ))
        .example(Some(serde_json::json!("opsgate-cli")))
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String),
        ))
        .build()
}

/// Adds an error answer with `status`, or appends `codes` to the description of the one
/// the route's attribute already declares.
fn add_error(op: &mut Operation, status: u16, codes: &str) {
    let key = status.to_string();
    let responses = &mut op.responses.responses;
    match responses.get_mut(&key) {
        Some(RefOr::T(resp)) => {
            if !resp.description.contains(codes) {
                resp.description = format!("{} {codes}", resp.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let reason = axum::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            responses.insert(
                key,
                RefOr::T(
                    ResponseBuilder::new()
                        .description(format!("{reason}. {codes}"))
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    "ErrorBody",
                                ))))
                                .build(),
                        )
                        .build(),
                ),
            );
        }
    }
}

/// The generated document, rendered once at start-up (it cannot change while running).
pub struct ApiDocument {
    json: bytes::Bytes,
}

impl ApiDocument {
    /// Renders `doc`.
    pub fn new(doc: &Doc) -> Self {
        let json = doc.to_pretty_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialise");
            "{}".to_string()
        });
        Self { json: json.into() }
    }
}

/// `GET {base}/api/openapi.json`: the document. Served without a login: it describes
/// routes any client of this software can read in its source, and holds no data, no
/// secret and no user's name (the only configured value in it is the cookie's name).
/// Scripts need it before they have logged in.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")),
)]
pub async fn openapi_json(Extension(doc): Extension<Arc<ApiDocument>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        doc.json.clone(),
    )
        .into_response()
}

/// `GET {base}/api/docs`: the reference page (RapiDoc, bundled with the console's assets).
/// Public like the document it renders.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The API reference page", content_type = "text/html")),
)]
pub async fn docs_page() -> Response {
    crate::web::docs_page()
}

// ---- Shapes of answers built as JSON maps ----
//
// Two answers are assembled field by field as JSON (the stats sample doubles as the
// `stats` channel's event, the dashboard figures are a fold over the store): these
// types only document them. `tests/openapi.rs` sends the documented requests to a real
// gateway and checks the answers against these schemas, so they cannot drift silently.

/// `GET /api/system/stats` (also the `stats` channel's `progress` event).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SystemStats {
    /// `system`.
    #[schema(example = "system")]
    kind: String,
    /// Unix milliseconds of the sample.
    at_ms: i64,
    cpu: CpuStats,
    /// Load averages; null where the OS has none.
    load: Option<LoadStats>,
    memory: MemoryStats,
    disks: Vec<DiskStats>,
    network: Vec<NetStats>,
    uptime_secs: Option<u64>,
    processes: Option<u64>,
    /// The gateway process: `rss_bytes`, `sockets`, `channels` by kind, `tool_runs`,
    /// `stats_watchers`.
    #[schema(value_type = Object)]
    gateway: serde_json::Value,
}

/// CPU use in percent.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CpuStats {
    total_pct: f64,
    per_core_pct: Vec<f64>,
}

/// Load averages.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoadStats {
    one: f64,
    five: f64,
    fifteen: f64,
}

/// Memory in bytes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MemoryStats {
    total: u64,
    used: u64,
    swap_total: u64,
    swap_used: u64,
}

/// One mounted disk, bytes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DiskStats {
    mount: String,
    total: u64,
    used: u64,
}

/// One interface's rates since the previous sample.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NetStats {
    interface: String,
    rx_bytes_per_sec: f64,
    tx_bytes_per_sec: f64,
}

/// `GET /api/statistics`: the dashboard's figures for the selected workspace.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Statistics {
    /// `total`, and counts `by_type` (device type) and `by_folder`.
    #[schema(value_type = Object)]
    devices: serde_json::Value,
    /// `last_24h` and `last_7d`, each `{succeeded, failed}` target counts of backups.
    #[schema(value_type = Object)]
    backups: serde_json::Value,
    /// Devices whose last backup failed: `{session_id, display_name}`.
    #[schema(value_type = Vec<Object>)]
    failed_devices: Vec<serde_json::Value>,
    /// Devices without a good backup within `stale_after_hours`:
    /// `{session_id, display_name, last_backup}`.
    #[schema(value_type = Vec<Object>)]
    stale_devices: Vec<serde_json::Value>,
    stale_after_hours: u64,
    configs_changed_24h: u64,
    /// `config_versions` and `config_bytes`.
    #[schema(value_type = Object)]
    storage: serde_json::Value,
    /// Job counts by state.
    #[schema(value_type = Object)]
    jobs_by_state: serde_json::Value,
}
