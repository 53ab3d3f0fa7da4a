//! `/api/auth/*` and `/api/users*`: thin handlers over the functions in `auth`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use tower_sessions::Session;

use super::{AdminUser, CurrentUser, LoginInfo, Role, UserError, LOGIN_KEY};
use crate::app::App;
use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::http::ApiJson;
use crate::http::ErrorBody;
use crate::store::{self, StoreError};

/// `POST /api/auth/login` JSON body (or send none and an `Authorization: Basic` header).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// Who logged in (`POST /api/auth/login`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LoginAnswer {
    pub username: String,
    pub role: Role,
}

/// The current login (`GET /api/auth/status`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LoginStatus {
    pub username: String,
    pub role: Role,
    /// RFC 3339: when the session ends unless used (idle timeout) or at the latest
    /// (absolute timeout), whichever comes first.
    pub expires_at: String,
}

/// A user account as the API shows it (never the password hash).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub role: Role,
    /// Unix seconds.
    pub created_at: i64,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `POST /api/auth/login`
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    security((), ("basic" = [])),
    request_body(content = LoginBody, description = "Or an empty body and `Authorization: Basic`"),
    responses(
        (status = 200, description = "Logged in; sets the session cookie (a fresh id)", body = LoginAnswer),
        (status = 400, description = "`missing_credentials`: neither a body nor Basic credentials; `invalid_json`: a body that is not `{\"username\",\"password\"}`; `invalid_credentials_format`: username over 128 or password over 1024 bytes.", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: wrong username or password.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed logins from this address or for this user; see `Retry-After`.", body = ErrorBody),
    ))]
pub async fn login(
    State(app): State<Arc<App>>,
    session: Session,
    parts: axum::extract::Request,
) -> ApiResult<impl IntoResponse> {
    let (parts, body) = parts.into_parts();
    let ip = super::client_ip(&parts, &app.cfg.trusted_proxies).to_string();
    let body: Bytes = axum::body::to_bytes(body, app.cfg.max_body_bytes)
        .await
        .map_err(|_| crate::http::too_large())?;
    let (username, password) = if body.iter().all(u8::is_ascii_whitespace) {
        basic_credentials(&parts.headers).ok_or_else(|| {
            ApiError::bad_request(
                "missing_credentials",
                "send JSON {\"username\",\"password\"} or an Authorization: Basic header",
            )
        })?
    } else {
        let b: LoginBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
        (b.username, b.password)
    };
    if username.len() > 128 || password.len() > 1024 {
        return Err(ApiError::bad_request(
            "invalid_credentials_format",
            "username or password too long",
        ));
    }
    // Counted as a failure from here on (refunded below on success), so concurrent
    // guesses cannot all reach the hash before the first failure is recorded.
    let attempt = match app.limiter.begin(&ip, &username) {
        Ok(a) => a,
        Err(wait) => {
            app.metrics.login_throttled();
            return Err(ApiError::rate_limited(wait));
        }
    };
    let name = username.clone();
    let user = app
        .store
        .read(move |tx| -> Result<_, StoreError> { super::get_user(tx, &name) })
        .await?;
    let phc = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| super::decoy_hash().to_string());
    let pw = password.clone();
    let ok = super::hashing::run(move || super::verify_password(&pw, &phc))
        .await
        .ok_or_else(|| ApiError::internal("password hashing pool stopped"))?;
    let user = match (ok, user) {
        (true, Some(u)) => {
            attempt.succeeded();
            u
        }
        (_, known) => {
            drop(attempt);
            app.metrics.login_failed();
            let (u, ip2, known) = (username.clone(), ip.clone(), known.is_some());
            app.store
                .write(move |tx| -> Result<(), StoreError> {
                    let entry = if known {
                        audit::Entry::new(&u, "login_failed")
                    } else {
                        // Never the typed text: it may be a password.
                        audit::Entry::new(audit::UNKNOWN_USER, "login_failed")
                            .detail(audit::unknown_name_detail(tx, &u)?)
                    };
                    audit::record(tx, entry.ip(Some(ip2)))
                })
                .await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong username or password",
            ));
        }
    };
    let (u, keep, current) = (
        user.username.clone(),
        app.cfg.session.max_logins_per_user,
        session.id(),
    );
    let ended = app
        .store
        .write(move |tx| super::session_store::make_room_for_login(tx, &u, keep, current.as_ref()))
        .await?;
    if ended > 0 {
        tracing::info!(user = %user.username, ended, "oldest logins ended for a new one ([session] max_logins_per_user)");
    }
    // A fresh id at login defeats session fixation.
    session.cycle_id().await.map_err(ApiError::internal)?;
    let now = store::now();
    let info = LoginInfo {
        username: user.username.clone(),
        login_id: store::new_id(),
        login_at: now,
        seen_at: now,
    };
    session
        .insert(LOGIN_KEY, &info)
        .await
        .map_err(ApiError::internal)?;
    app.metrics.login_ok();
    crate::http::record_login(&parts.extensions, &user.username, &info.login_id);
    let (u, ip2) = (user.username.clone(), ip);
    app.store
        .write(move |tx| -> Result<(), StoreError> {
            audit::record(tx, audit::Entry::new(&u, "login").ip(Some(ip2)))
        })
        .await?;
    Ok(Json(LoginAnswer {
        username: user.username,
        role: user.role,
    }))
}

/// `GET /api/auth/status`
#[utoipa::path(get, path = "/api/auth/status", tag = "auth",
    responses((status = 200, description = "The current login", body = LoginStatus)))]
pub async fn status(
    State(app): State<Arc<App>>,
    user: CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let idle_end = user.login.seen_at + app.cfg.session.idle_timeout_secs as i64;
    let abs_end = user.login.login_at + app.cfg.session.absolute_timeout_secs as i64;
    let expires = time::OffsetDateTime::from_unix_timestamp(idle_end.min(abs_end))
        .map_err(ApiError::internal)?;
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(ApiError::internal)?;
    Ok(Json(LoginStatus {
        username: user.username,
        role: user.role,
        expires_at: expires,
    }))
}

/// `POST /api/auth/logout`: ends the login and every socket and channel of it.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out; every socket and channel of the login is closed")))]
pub async fn logout(State(app): State<Arc<App>>, user: CurrentUser) -> ApiResult<StatusCode> {
    user.session.flush().await.map_err(ApiError::internal)?;
    app.mux.close_login(&user.login.login_id, "logged_out");
    let (u, ip) = (user.username.clone(), user.ip.clone());
    app.store
        .write(move |tx| -> Result<(), StoreError> {
            audit::record(tx, audit::Entry::new(&u, "logout").ip(Some(ip)))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_json(u: &super::User) -> UserView {
    UserView {
        username: u.username.clone(),
        role: u.role,
        created_at: u.created_at,
    }
}

/// `GET /api/users`
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses(
        (status = 200, description = "Every user", body = Vec<UserView>),
        (status = 403, description = "`forbidden`: admins only.", body = ErrorBody),
    ))]
pub async fn list_users(
    State(app): State<Arc<App>>,
    _admin: AdminUser,
) -> ApiResult<impl IntoResponse> {
    let users = app
        .store
        .read(|tx| -> Result<_, StoreError> { super::list_users(tx) })
        .await?;
    Ok(Json(users.iter().map(user_json).collect::<Vec<_>>()))
}

/// `POST /api/users` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    role: Role,
}

/// `POST /api/users`
#[utoipa::path(post, path = "/api/users", tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "`invalid_username`, `weak_password`: see the message.", body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only.", body = ErrorBody),
        (status = 409, description = "`user_exists`: the name is taken.", body = ErrorBody),
    ))]
pub async fn create_user(
    State(app): State<Arc<App>>,
    AdminUser(admin): AdminUser,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<impl IntoResponse> {
    if !super::valid_username(&body.username) {
        return Err(UserError::BadUsername.into());
    }
    let pw = body.password;
    let hash = super::hashing::run(move || super::hash_password(&pw))
        .await
        .ok_or_else(|| ApiError::internal("password hashing pool stopped"))??;
    let actor = admin.username.clone();
    let user = app
        .store
        .write(move |tx| super::create_user(tx, &body.username, hash, body.role, &actor))
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

/// `PUT /api/users/{username}` body: what to change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    password: Option<String>,
    role: Option<Role>,
}

/// `PUT /api/users/{username}`
#[utoipa::path(put, path = "/api/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The user")),
    request_body = UserChange,
    responses(
        (status = 200, description = "Changed; the user's sockets are closed if the role or password changed", body = UserView),
        (status = 400, description = "`weak_password`: see the message.", body = ErrorBody),
        (status = 403, description = "`forbidden`: admins only.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user.", body = ErrorBody),
        (status = 409, description = "`last_admin`: the last admin keeps the admin role.", body = ErrorBody),
    ))]
pub async fn update_user(
    State(app): State<Arc<App>>,
    AdminUser(admin): AdminUser,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<UserChange>,
) -> ApiResult<impl IntoResponse> {
    let hash = match body.password {
        Some(pw) => Some(
            super::hashing::run(move || super::hash_password(&pw))
                .await
                .ok_or_else(|| ApiError::internal("password hashing pool stopped"))??,
        ),
        None => None,
    };
    let actor = admin.username.clone();
    let name = username.clone();
    let update = app
        .store
        .write(move |tx| super::update_user(tx, &name, hash, body.role, &actor))
        .await?;
    // Sockets and channels carry the role they were opened with: any change ends them,
    // so the next socket is opened with the new role.
    if update.password_changed {
        app.mux.close_user(&username, "password_changed");
    } else if update.role_changed {
        app.mux.close_user(&username, "role_changed");
    }
    Ok(Json(user_json(&update.user)))
}

/// `DELETE /api/users/{username}`
#[utoipa::path(delete, path = "/api/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The user")),
    responses(
        (status = 204, description = "Deleted; the user's sockets are closed"),
        (status = 403, description = "`forbidden`: admins only.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user.", body = ErrorBody),
        (status = 409, description = "`last_admin`: the last admin cannot be deleted; `user_busy`: a job or tool run in their personal workspace is in progress.", body = ErrorBody),
    ))]
pub async fn delete_user(
    State(app): State<Arc<App>>,
    AdminUser(admin): AdminUser,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    // Their personal workspace goes with them; a job still running there would write
    // its rows back for a user later created under the same name to find.
    if app.jobs.running_in(&username) || app.executions.running_in(&username) {
        return Err(ApiError::conflict(
            "user_busy",
            "a job or tool run in this user's workspace is in progress: cancel it or wait, then delete",
        ));
    }
    let actor = admin.username.clone();
    let name = username.clone();
    app.store
        .write(move |tx| super::delete_user(tx, &name, &actor))
        .await?;
    app.mux.close_user(&username, "user_deleted");
    Ok(StatusCode::NO_CONTENT)
}
