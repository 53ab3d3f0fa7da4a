//! The HTTP edge: routes, the JSON error shape for every rejection, the origin check,
//! the host check, request ids, the API rate limit, security headers and the body limit.

mod apidoc;
mod context;
mod hosts;
mod rate;
mod serve;

pub use apidoc::{
    ApiDoc, ErrorBody, ErrorDetail, Statistics, SystemStats, WorkspaceHeader, WorkspaceQuery,
};
pub use context::{record_login, RequestId, RequestSpan};
pub use hosts::{HostPolicy, ListenPort};
pub use serve::{raise_fd_limit, serve};

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::app::App;
use crate::apps::routes as apps;
use crate::auth::{self, routes as auth_routes, CurrentUser, RedbSessionStore, Role};
use crate::error::{error_json, ApiError, ApiResult};
use crate::inventory::routes as inv;
use crate::jobs::routes as jobs;
use crate::jobs::schedules;
use crate::netbox::routes as netbox;
use crate::store::{StoreError, HTTP_SESSIONS};
use crate::tools::routes as tools;
use crate::workspace::{self, routes as teams};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `Json<T>` whose rejections use the JSON error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("invalid_json", e.body_text()))
            }
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::bad_request("invalid_body", e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

/// 413 in the JSON error shape.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body exceeds the limit",
    )
}

/// Builds the whole router, mounted under the configured base path.
pub fn router(app: Arc<App>) -> Router {
    let cfg = &app.cfg;
    let cookie_path = if cfg.base_path.is_empty() {
        "/".to_string()
    } else {
        cfg.base_path.clone()
    };
    let secure = cfg.tls_enabled()
        || cfg
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    let sessions = SessionManagerLayer::new(RedbSessionStore::new(app.store.clone()))
        .with_name(cfg.session.cookie_name.clone())
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(secure)
        .with_path(cookie_path)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            cfg.session.idle_timeout_secs as i64,
        )));

    let rate_limit = Arc::new(rate::ApiRateLimit::new(
        &cfg.rate_limit,
        cfg.trusted_proxies.clone(),
    ));
    let hosts = Arc::new(HostPolicy::new(cfg));
    let trusted = Arc::new(cfg.trusted_proxies.clone());

    // Every API route is registered through `routes!`, which takes its path and methods
    // from the handler's `#[utoipa::path]`: a route cannot exist undocumented (see
    // `apidoc`). One `routes!` per path: handlers of different paths in one call would
    // share one method router. New routes go in this block, in the same form.
    let (api, doc) = OpenApiRouter::with_openapi(apidoc::ApiDoc::openapi())
        .routes(routes!(auth_routes::login))
        .routes(routes!(auth_routes::status))
        .routes(routes!(auth_routes::logout))
        .routes(routes!(auth_routes::list_users, auth_routes::create_user))
        .routes(routes!(auth_routes::update_user, auth_routes::delete_user))
        .routes(routes!(inv::list_sessions, inv::create_session))
        .routes(routes!(inv::export_sessions))
        .routes(routes!(inv::import_sessions))
        .routes(routes!(inv::csv_template))
        .routes(routes!(
            inv::get_session,
            inv::update_session,
            inv::delete_session
        ))
        .routes(routes!(inv::create_folder))
        .routes(routes!(inv::rename_folder, inv::delete_folder))
        .routes(routes!(inv::list_credentials, inv::create_credential))
        .routes(routes!(inv::update_credential, inv::delete_credential))
        .routes(routes!(inv::list_known_hosts))
        .routes(routes!(inv::delete_known_host))
        .routes(routes!(list_audit))
        .routes(routes!(teams::list_workspaces))
        .routes(routes!(teams::list_teams, teams::create_team))
        .routes(routes!(
            teams::get_team,
            teams::rename_team,
            teams::delete_team
        ))
        .routes(routes!(teams::put_member, teams::delete_member))
        .routes(routes!(crate::pty::list_programs))
        .routes(routes!(crate::mux::listing::list_channels))
        .routes(routes!(jobs::list_jobs, jobs::create_job))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(jobs::list_configs))
        .routes(routes!(jobs::diff_configs))
        .routes(routes!(jobs::search_configs))
        .routes(routes!(jobs::get_config))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(schedules::update, schedules::delete))
        .routes(routes!(schedules::run_now))
        .routes(routes!(crate::jobs::stats::statistics))
        .routes(routes!(tools::list_tools))
        .routes(routes!(tools::get_tool))
        .routes(routes!(tools::execute))
        .routes(routes!(tools::list_executions))
        .routes(routes!(tools::get_execution, tools::cancel_execution))
        .routes(routes!(crate::stats::system_stats))
        .routes(routes!(
            netbox::get_settings,
            netbox::put_settings,
            netbox::delete_settings
        ))
        .routes(routes!(netbox::list_sites))
        .routes(routes!(netbox::list_platforms))
        .routes(routes!(netbox::list_devices))
        .routes(routes!(netbox::import_devices))
        .routes(routes!(apps::list_servers))
        .routes(routes!(apps::server_status))
        .routes(routes!(apps::list_projects, apps::create_project))
        .routes(routes!(apps::update_project, apps::delete_project))
        .routes(routes!(apps::list_apps, apps::create_app))
        .routes(routes!(apps::get_app, apps::update_app, apps::delete_app))
        .routes(routes!(apps::start_app))
        .routes(routes!(apps::stop_app))
        .routes(routes!(apps::extend_app))
        .routes(routes!(crate::mux::ws_handler))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(apidoc::openapi_json))
        .routes(routes!(apidoc::docs_page))
        .split_for_parts();
    let doc = Arc::new(apidoc::ApiDocument::new(&apidoc::finish(doc, cfg)));

    let api = api
        // The web client's build files are the one route outside the API document
        // (`tests/openapi.rs` knows it as the only exception).
        .route("/assets/{*path}", get(crate::web::asset))
        .layer(Extension(doc))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::from_fn_with_state(rate_limit, rate::rate_limit))
        .layer(sessions)
        .layer(middleware::from_fn_with_state(app.clone(), origin_check))
        .layer(axum::extract::DefaultBodyLimit::max(cfg.max_body_bytes));

    let base = cfg.base_path.clone();
    let routed = if base.is_empty() {
        api.route("/", get(crate::web::index))
    } else {
        // `{base}/` is where the gateway says it listens and what a proxy forwards;
        // `{base}` alone redirects there so the page's relative links keep the prefix.
        let slash = format!("{base}/");
        let target = slash.clone();
        Router::new()
            .route(&slash, get(crate::web::index))
            .route(
                &base,
                get(move || async move { axum::response::Redirect::permanent(&target) }),
            )
            .nest(&base, api)
            .fallback(|| async { ApiError::not_found("route") })
    };
    routed
        // A bug must never take a connection down silently: a panicking handler answers
        // 500 in the error shape and the gateway keeps serving.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the gateway log",
                )
                .into_response()
            },
        ))
        // Before any handler and before the base path is even looked at: a request for
        // a host that is not this gateway gets 421 (DNS rebinding).
        .layer(middleware::from_fn_with_state(hosts, hosts::host_check))
        .layer(middleware::from_fn_with_state(app.clone(), edge))
        .layer(middleware::from_fn_with_state(
            trusted,
            context::request_context,
        ))
        .with_state(app)
}

/// Outermost layer: security headers, JSON shape for every error (including axum's own
/// rejections and 405s), and response counting.
async fn edge(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let https = auth::request_is_https_parts(&parts, &app.cfg);
    let http1 = parts.version < axum::http::Version::HTTP_2;
    let req = Request::from_parts(parts, body);
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE && http1 {
        // hyper drops the connection after this response because the rest of the body is
        // unread; say so, or a keep-alive client reuses the dead connection and its next
        // request fails.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    app.metrics.http_response(status.as_u16());
    if status.is_client_error() || status.is_server_error() {
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !is_json {
            let code = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                StatusCode::UNAUTHORIZED => "unauthenticated",
                StatusCode::FORBIDDEN => "forbidden",
                s if s.is_server_error() => "internal",
                _ => "bad_request",
            };
            let (mut parts, body) = resp.into_parts();
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let mut message = String::from_utf8_lossy(&text).trim().to_string();
            if message.is_empty() {
                message = status.canonical_reason().unwrap_or("error").to_string();
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp = Response::from_parts(parts, axum::body::Body::from(error_json(code, &message)));
        }
    }
    let h = resp.headers_mut();
    // The console page sets its own policy (with a per-response style nonce, see
    // `crate::web`); everything else gets this one.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

/// Cross-site request forgery guard: a state-changing request must carry an allowed
/// `Origin`, or, without one, the `X-Requested-With` header no cross-site form can send.
async fn origin_check(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match parts.headers.get(header::ORIGIN) {
        Some(origin) => {
            let origin = origin.to_str().unwrap_or("");
            if !auth::origin_allowed(&parts, &app.cfg, origin) {
                return ApiError::forbidden(format!(
                    "origin {origin:?} is not allowed to change anything here"
                ))
                .into_response();
            }
        }
        None => {
            if !parts.headers.contains_key("x-requested-with") {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_required",
                    "state-changing requests need an Origin or X-Requested-With header",
                )
                .into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Whether `Authorization: Bearer <token>` carries `token`, compared in constant time
/// (over SHA-256 digests, so the length does not leak either).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("");
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    !given.is_empty() && diff == 0
}

/// `GET /healthz`: the process answers (no login: for load balancers and supervisors).
#[utoipa::path(get, path = "/healthz", tag = "system", security(()),
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String, example = "ok")))]
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: open unless `metrics_token` is set, then it needs that bearer token.
#[utoipa::path(get, path = "/metrics", tag = "system", security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "`unauthenticated`: `metrics_token` is set and the bearer token is missing or wrong.", body = ErrorBody),
    ))]
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    use redb::ReadableTableMetadata;
    let token = &app.cfg.metrics_token;
    if !token.is_empty() && !bearer_matches(&headers, token) {
        let mut resp = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "GET /metrics needs Authorization: Bearer <metrics_token>",
        )
        .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(resp);
    }
    let n = app
        .store
        .read(|tx| -> Result<u64, StoreError> { Ok(tx.open_table(HTTP_SESSIONS)?.len()?) })
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(n as usize) + &app.apps.render_metrics(),
    )
        .into_response())
}

/// `GET /api/audit` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Events older than this sequence number (the previous page's `next_before`).
    before: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// Admins: only this user's events.
    actor: Option<String>,
}

/// `GET /api/audit`: a page of events, newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct AuditPage {
    events: Vec<crate::audit::AuditEvent>,
    /// `before` of the next page; null on the last page. A page may hold fewer events
    /// than `limit` (even none) and still have a next one: one page looks at no more than
    /// 20,000 events of the log.
    next_before: Option<u64>,
}

/// `GET /api/audit?before=&limit=[&actor=][&workspace=]`: admins see everyone, others
/// themselves. With a team selected, only that team's events: everyone's for a global
/// admin or a team admin, the caller's own for other members, 404 for non-members.
#[utoipa::path(get, path = "/api/audit", tag = "system", params(AuditQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "A page of audit events, newest first", body = AuditPage)))]
async fn list_audit(
    State(app): State<Arc<App>>,
    user: CurrentUser,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let selected = workspace::selector_of(&uri, &headers)?;
    let sees_all = match &selected {
        None => user.role == Role::Admin,
        Some(_) if user.role == Role::Admin => true,
        Some(id) => {
            let ws = workspace::Workspace::resolve(&app, user.clone(), Some(id.clone())).await?;
            ws.role == Role::Admin
        }
    };
    let filter = crate::audit::Filter {
        actor: if sees_all {
            q.actor
        } else {
            Some(user.username)
        },
        workspace: selected,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = app
        .store
        .read(move |tx| {
            crate::audit::list(tx, &filter, q.before, limit, crate::audit::SCAN_PER_PAGE)
        })
        .await?;
    Ok(Json(AuditPage {
        events: page.events,
        next_before: page.next_before,
    }))
}
