//! The request extractors that enforce login and roles, in one place.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::{get_user, Role};
use crate::app::App;
use crate::error::ApiError;
use crate::store::{self, StoreError};

/// Session key under which the login is stored.
pub const LOGIN_KEY: &str = "login";

/// How often the idle clock is pushed forward at most (each push is one store write);
/// never less often than a quarter of the idle timeout, so activity always counts.
const SEEN_REFRESH_SECS: i64 = 60;

/// What a login session remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginInfo {
    pub username: String,
    /// Identifies this login across session-id rotation; channels belong to it.
    pub login_id: String,
    pub login_at: i64,
    pub seen_at: i64,
}

/// A logged-in user, as checked for this request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub username: String,
    pub role: Role,
    pub login: LoginInfo,
    pub session: Session,
    pub ip: String,
}

impl CurrentUser {
    /// Refuses unless the user has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role; you are {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<Arc<App>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let user = CurrentUser::any_role(parts, app).await?;
        // Viewers are read-only everywhere; logging out is the one write they may do.
        // (Inventory routes use `workspace::Workspace` instead, where a team membership
        // role decides inside the team.)
        let writes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if user.role == Role::Viewer && writes && !parts.uri.path().ends_with("/api/auth/logout") {
            return Err(ApiError::forbidden("viewers have read-only access"));
        }
        Ok(user)
    }
}

impl CurrentUser {
    /// The logged-in user whatever their global role, for extractors that decide what a
    /// role may do themselves (a team's workspace, where the membership role decides).
    pub(crate) async fn any_role(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let session = Session::from_request_parts(parts, app)
            .await
            .map_err(|(_, m)| ApiError::internal(m))?;
        let Some(mut login) = session
            .get::<LoginInfo>(LOGIN_KEY)
            .await
            .map_err(ApiError::internal)?
        else {
            return Err(ApiError::unauthorized());
        };
        let now = store::now();
        if now - login.login_at > app.cfg.session.absolute_timeout_secs as i64 {
            let _ = session.flush().await;
            return Err(ApiError::unauthorized());
        }
        let name = login.username.clone();
        let user = app
            .store
            .read(move |tx| -> Result<_, StoreError> { get_user(tx, &name) })
            .await?;
        let Some(user) = user else {
            let _ = session.flush().await;
            return Err(ApiError::unauthorized());
        };
        let refresh = SEEN_REFRESH_SECS.min(app.cfg.session.idle_timeout_secs as i64 / 4);
        if now - login.seen_at >= refresh {
            login.seen_at = now;
            session
                .insert(LOGIN_KEY, &login)
                .await
                .map_err(ApiError::internal)?;
        }
        let ip = client_ip(parts, &app.cfg.trusted_proxies).to_string();
        // Every log line of this request says whose it is.
        crate::http::record_login(&parts.extensions, &user.username, &login.login_id);
        Ok(CurrentUser {
            username: user.username,
            role: user.role,
            login,
            session,
            ip,
        })
    }
}

/// A logged-in admin.
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<Arc<App>> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, app).await?;
        user.require(Role::Admin)?;
        Ok(AdminUser(user))
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the
/// right-most untrusted address of `X-Forwarded-For`.
pub fn client_ip(parts: &Parts, trusted: &[IpAddr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    forwarded_client(peer, &parts.headers, trusted)
}

fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else { break };
        for hop in text.split(',').rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted.contains(&ip) {
                        return ip;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

/// Whether the original request came over TLS (directly or via a trusted proxy).
pub fn request_is_https(parts: &Parts, trusted: &[IpAddr], tls: bool) -> bool {
    if tls {
        return true;
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    peer.is_some_and(|p| trusted.contains(&p))
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// [`request_is_https`] with the gateway's configuration.
pub fn request_is_https_parts(parts: &Parts, cfg: &crate::config::Config) -> bool {
    request_is_https(parts, &cfg.trusted_proxies, cfg.tls_enabled())
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<&str> {
    let after = url.find("://")? + 3;
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    Some(&url[..end])
}

/// The origin this request was addressed to (as the browser saw it).
fn own_origin(parts: &Parts, cfg: &crate::config::Config) -> Option<String> {
    let peer_trusted = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| cfg.trusted_proxies.contains(&c.0.ip()));
    let forwarded_host = peer_trusted
        .then(|| parts.headers.get("x-forwarded-host"))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let host = forwarded_host
        .or_else(|| {
            parts
                .headers
                .get(axum::http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))?;
    let scheme = if request_is_https_parts(parts, cfg) {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}"))
}

/// Whether `origin` may make state-changing requests and open WebSockets here: the
/// gateway's own origin, the configured public URL's, or one listed in `allowed_origins`.
pub fn origin_allowed(parts: &Parts, cfg: &crate::config::Config, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    if origin.is_empty() || origin == "null" {
        return false;
    }
    if own_origin(parts, cfg).is_some_and(|o| o.eq_ignore_ascii_case(origin)) {
        return true;
    }
    if cfg
        .public_url
        .as_deref()
        .and_then(origin_of)
        .is_some_and(|o| o.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    cfg.allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        assert_eq!(
            forwarded_client(proxy, &h, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(forwarded_client(stranger, &h, &[proxy]), stranger);
    }
}
