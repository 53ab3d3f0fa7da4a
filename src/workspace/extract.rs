//! The workspace selector of inventory routes: `?workspace=<id>` or the header
//! `X-Opsgate-Workspace: <id>`; absent, empty or `personal` means the caller's personal
//! workspace, so clients that never heard of workspaces keep working.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use serde::Deserialize;

use super::{Scope, Team, TeamsRead, WorkspaceError, PERSONAL};
use crate::app::App;
use crate::auth::{CurrentUser, Role};
use crate::error::ApiError;

/// The header form of the selector.
pub const HEADER: &str = "x-opsgate-workspace";

#[derive(Deserialize)]
struct SelectorQuery {
    workspace: Option<String>,
}

/// The team id a request selects, or `None` for the personal workspace. The query and
/// the header may both be given only if they agree.
pub fn selector_of(uri: &Uri, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_workspace", m.to_string());
    let from_query = Query::<SelectorQuery>::try_from_uri(uri)
        .map_err(|_| bad("the query string is malformed"))?
        .0
        .workspace;
    let from_header = match headers.get(HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad("X-Opsgate-Workspace must be text"))?
                .to_string(),
        ),
        None => None,
    };
    let norm = |v: Option<String>| {
        v.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != PERSONAL)
    };
    let (q, h) = (norm(from_query), norm(from_header));
    if q.is_some() && h.is_some() && q != h {
        return Err(bad(
            "?workspace= and X-Opsgate-Workspace name different workspaces",
        ));
    }
    let id = q.or(h);
    if id.as_ref().is_some_and(|i| i.len() > 128) {
        return Err(bad("workspace id too long"));
    }
    Ok(id)
}

/// The workspace a request works in, with the caller's role there. Extracting it checks
/// access, so a handler that takes it cannot forget to:
/// - personal: the user's global role; viewers read only (as before workspaces);
/// - team: the caller must be a member (else `404 not_found`, whether or not the team
///   exists, a global admin included); reads need any membership, writes `operator` or
///   `admin` (else `403 forbidden`).
#[derive(Debug, Clone)]
pub struct Workspace {
    pub user: CurrentUser,
    /// Where the objects live and who acts.
    pub scope: Scope,
    /// The caller's role in this workspace.
    pub role: Role,
    /// The team, for a team workspace.
    pub team: Option<Team>,
}

impl Workspace {
    /// Resolves `selector` (a team id, or `None` for personal) for `user`, checking
    /// read access only.
    pub async fn resolve(
        app: &App,
        user: CurrentUser,
        selector: Option<String>,
    ) -> Result<Workspace, ApiError> {
        let Some(team_id) = selector else {
            return Ok(Workspace {
                scope: Scope::personal(&user.username),
                role: user.role,
                team: None,
                user,
            });
        };
        let name = user.username.clone();
        let found = app
            .store
            .read(move |tx| -> Result<_, WorkspaceError> {
                let Some(team) = tx.team(&team_id)? else {
                    return Ok(None);
                };
                Ok(tx.role_in(&team_id, &name)?.map(|role| (team, role)))
            })
            .await?;
        let Some((team, role)) = found else {
            return Err(ApiError::not_found("workspace"));
        };
        Ok(Workspace {
            scope: Scope::team(&team.id, &user.username),
            role,
            team: Some(team),
            user,
        })
    }

    /// Refuses unless the caller's role here is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::forbidden(match &self.team {
            Some(t) => format!(
                "this needs the {} role in team {:?}; you are {} there",
                role.as_str(),
                t.name,
                self.role.as_str()
            ),
            None => "viewers have read-only access".to_string(),
        }))
    }
}

impl FromRequestParts<Arc<App>> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let user = CurrentUser::any_role(parts, app).await?;
        let selector = selector_of(&parts.uri, &parts.headers)?;
        let ws = Workspace::resolve(app, user, selector).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            ws.require(Role::Operator)?;
        }
        Ok(ws)
    }
}
