//! REST handlers for teams, memberships and the caller's workspaces.
//!
//! Who may do what: global admins create, rename and delete teams and manage any team's
//! members; a team's admins manage its members. For a route naming a team, a caller who
//! is neither a global admin nor a member gets `404`, as for a team that does not exist;
//! a member without the right role gets `403`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{MemberView, Team, TeamsRead, WorkspaceError, ACCESS_REVOKED, PERSONAL};
use crate::app::App;
use crate::auth::{AdminUser, CurrentUser, Role};
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody};
use crate::store::MEMBERS;

/// A logged-in user of any global role: membership routes decide by the team role (a
/// global viewer may be a team's admin).
pub struct AnyRoleUser(pub CurrentUser);

impl FromRequestParts<Arc<App>> for AnyRoleUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Ok(AnyRoleUser(CurrentUser::any_role(parts, app).await?))
    }
}

/// A team as the API shows it.
/// A team as the API shows it: `role` is the caller's there (absent if not a member);
/// `members` only for global admins and the team's admins.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeamView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// The caller's role in the team, if a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The members: shown to global admins and the team's admins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
}

/// One workspace the caller can select.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    /// The selector value: `personal` or a team id.
    pub id: String,
    /// `personal` or `team`.
    pub kind: &'static str,
    /// The username for a personal workspace, else the team's name.
    pub name: String,
    /// The caller's role there (the global role in the personal workspace).
    pub role: Role,
}

/// `GET /api/workspaces`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceView>,
}

/// The team and the caller's membership role, or 404 if the caller may not know of it.
async fn team_for(
    app: &App,
    user: &CurrentUser,
    id: String,
) -> Result<(Team, Option<Role>, Vec<MemberView>), ApiError> {
    let name = user.username.clone();
    let found = app
        .store
        .read(move |tx| -> Result<_, WorkspaceError> {
            let Some(team) = tx.team(&id)? else {
                return Ok(None);
            };
            let role = tx.role_in(&id, &name)?;
            let members = super::members_of(&tx.open_table(MEMBERS)?, &id)?;
            Ok(Some((team, role, members)))
        })
        .await?;
    match found {
        Some((team, role, members)) if role.is_some() || user.role == Role::Admin => {
            Ok((team, role, members))
        }
        _ => Err(ApiError::not_found("team")),
    }
}

fn view(team: Team, role: Option<Role>, members: Vec<MemberView>, admin: bool) -> TeamView {
    let show = admin || role == Some(Role::Admin);
    TeamView {
        id: team.id,
        name: team.name,
        created_at: team.created_at,
        role,
        members: show.then_some(members),
    }
}

/// `GET /api/teams`: every team for a global admin, else the caller's teams, each with
/// the caller's role.
#[utoipa::path(get, path = "/api/teams", tag = "workspaces",
    responses((status = 200, description = "Teams: every team for admins, the caller's otherwise", body = Vec<TeamView>)))]
pub async fn list_teams(
    State(app): State<Arc<App>>,
    user: CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let (name, admin) = (user.username.clone(), user.role == Role::Admin);
    let teams = app
        .store
        .read(move |tx| -> Result<Vec<TeamView>, WorkspaceError> {
            let members = tx.open_table(MEMBERS)?;
            let teams: Vec<(Team, Option<Role>)> = if admin {
                super::list_teams(tx)?
                    .into_iter()
                    .map(|t| {
                        let role = tx.role_in(&t.id, &name)?;
                        Ok((t, role))
                    })
                    .collect::<Result<_, WorkspaceError>>()?
            } else {
                super::teams_of(tx, &name)?
                    .into_iter()
                    .map(|(t, r)| (t, Some(r)))
                    .collect()
            };
            teams
                .into_iter()
                .map(|(t, role)| {
                    let m = super::members_of(&members, &t.id)?;
                    Ok(view(t, role, m, admin))
                })
                .collect()
        })
        .await?;
    Ok(Json(teams))
}

/// `GET /api/teams/{id}`
#[utoipa::path(get, path = "/api/teams/{id}", tag = "workspaces", params(("id" = String, Path, description = "Team id")),
    responses((status = 200, description = "The team", body = TeamView), (status = 404, description = "`not_found`: no such team, or the caller is neither a member nor a global admin.", body = ErrorBody)))]
pub async fn get_team(
    State(app): State<Arc<App>>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (team, role, members) = team_for(&app, &user, id).await?;
    Ok(Json(view(team, role, members, user.role == Role::Admin)))
}

/// The body of `POST /api/teams` and `PUT /api/teams/{id}`.
/// A team's name (create, rename).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamBody {
    name: String,
}

/// `POST /api/teams` (global admins)
#[utoipa::path(post, path = "/api/teams", tag = "workspaces", request_body = TeamBody,
    responses((status = 201, description = "Created", body = TeamView),
        (status = 400, description = "`invalid_name`: empty or too long.", body = ErrorBody),
        (status = 403, description = "`forbidden`: global admins only.", body = ErrorBody),
        (status = 409, description = "`team_exists`: the name is taken.", body = ErrorBody)))]
pub async fn create_team(
    State(app): State<Arc<App>>,
    AdminUser(user): AdminUser,
    ApiJson(body): ApiJson<TeamBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = user.username.clone();
    let team = app
        .store
        .write(move |tx| super::create_team(tx, &body.name, &actor))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(view(team, None, Vec::new(), true)),
    ))
}

/// Global admins pass; a member gets 403, anyone else 404.
async fn require_global_admin(app: &App, user: &CurrentUser, id: &str) -> Result<(), ApiError> {
    team_for(app, user, id.to_string()).await?;
    user.require(Role::Admin)
}

/// `PUT /api/teams/{id}` (rename; global admins)
#[utoipa::path(put, path = "/api/teams/{id}", tag = "workspaces", params(("id" = String, Path, description = "Team id")), request_body = TeamBody,
    responses((status = 200, description = "Renamed", body = TeamView),
        (status = 400, description = "`invalid_name`: empty or too long.", body = ErrorBody),
        (status = 403, description = "`forbidden`: global admins only.", body = ErrorBody), (status = 404, description = "`not_found`: no such team, or the caller is neither a member nor a global admin.", body = ErrorBody),
        (status = 409, description = "`team_exists`: the name is taken.", body = ErrorBody)))]
pub async fn rename_team(
    State(app): State<Arc<App>>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TeamBody>,
) -> ApiResult<impl IntoResponse> {
    require_global_admin(&app, &user, &id).await?;
    let actor = user.username.clone();
    let team = app
        .store
        .write(move |tx| super::rename_team(tx, &id, &body.name, &actor))
        .await?;
    Ok(Json(view(team, None, Vec::new(), true)))
}

/// `DELETE /api/teams/{id}[?cascade=true]` query.
#[derive(Deserialize, Default)]
pub struct DeleteTeamQuery {
    #[serde(default)]
    cascade: bool,
}

/// `DELETE /api/teams/{id}[?cascade=true]` (global admins). Without `cascade`: 409
/// `team_not_empty` unless its workspace is empty. With it: everything in the
/// workspace goes too; 409 `team_busy` while one of its jobs or tool runs is in flight
/// (they would write into a deleted workspace).
#[utoipa::path(delete, path = "/api/teams/{id}", tag = "workspaces", params(("id" = String, Path, description = "Team id"),
        ("cascade" = Option<bool>, Query, description = "Delete everything in the team's workspace too (jobs, configs, schedules, executions, inventory, apps)")),
    responses((status = 204, description = "Deleted; members' sockets in it are closed"),
        (status = 403, description = "`forbidden`: global admins only.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such team, or the caller is neither a member nor a global admin.", body = ErrorBody),
        (status = 409, description = "`team_not_empty`: its workspace still holds objects (without `cascade`); `team_busy`: one of its jobs or tool runs is in flight.", body = ErrorBody)))]
pub async fn delete_team(
    State(app): State<Arc<App>>,
    user: CurrentUser,
    Path(id): Path<String>,
    Query(q): Query<DeleteTeamQuery>,
) -> ApiResult<StatusCode> {
    require_global_admin(&app, &user, &id).await?;
    let actor = user.username.clone();
    let key = super::team_key(&id);
    if q.cascade && (app.jobs.running_in(&key) || app.executions.running_in(&key)) {
        return Err(ApiError::conflict(
            "team_busy",
            "a job or tool run of this team is in progress: cancel it or wait, then delete",
        ));
    }
    app.store
        .write(move |tx| super::delete_team(tx, &id, &actor, q.cascade))
        .await?;
    // A channel opened on a session deleted since still uses the team's credential.
    app.mux.close_workspace(&key, None, ACCESS_REVOKED);
    Ok(StatusCode::NO_CONTENT)
}

/// Global admins and the team's admins pass; other members get 403, anyone else 404.
async fn require_member_manager(app: &App, user: &CurrentUser, id: &str) -> Result<(), ApiError> {
    let (team, role, _) = team_for(app, user, id.to_string()).await?;
    if user.role == Role::Admin || role == Some(Role::Admin) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "managing the members of team {:?} needs its admin role",
        team.name
    )))
}

/// The body of `PUT /api/teams/{id}/members/{username}`.
/// A member's role in the team.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// `admin`, `operator` or `viewer`.
    #[schema(example = "operator")]
    role: String,
}

/// `PUT /api/teams/{id}/members/{username}` `{"role"}`: adds a member or changes their
/// role. Made a viewer, they lose the team's terminals at once.
#[utoipa::path(put, path = "/api/teams/{id}/members/{username}", tag = "workspaces",
    params(("id" = String, Path, description = "Team id"), ("username" = String, Path, description = "The member")), request_body = MemberBody,
    responses((status = 200, description = "The membership", body = MemberView),
        (status = 400, description = "`invalid_role`: not admin, operator or viewer.", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the team's admin role or global admin.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such team or user.", body = ErrorBody)))]
pub async fn put_member(
    State(app): State<Arc<App>>,
    AnyRoleUser(user): AnyRoleUser,
    Path((id, username)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberBody>,
) -> ApiResult<impl IntoResponse> {
    require_member_manager(&app, &user, &id).await?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request("invalid_role", "role must be admin, operator or viewer")
    })?;
    if !crate::auth::valid_username(&username) {
        return Err(ApiError::not_found("user"));
    }
    let actor = user.username.clone();
    let (tid, uname) = (id.clone(), username.clone());
    let (member, old) = app
        .store
        .write(move |tx| super::set_member(tx, &tid, &uname, role, &actor))
        .await?;
    if role < Role::Operator && old.is_some_and(|o| o >= Role::Operator) {
        app.mux
            .close_workspace(&super::team_key(&id), Some(&username), ACCESS_REVOKED);
    }
    Ok(Json(member))
}

/// `DELETE /api/teams/{id}/members/{username}`: the member's channels on the team's
/// objects end at once; their other channels stay.
#[utoipa::path(delete, path = "/api/teams/{id}/members/{username}", tag = "workspaces",
    params(("id" = String, Path, description = "Team id"), ("username" = String, Path, description = "The member")),
    responses((status = 204, description = "Removed; their sockets in the team are closed"),
        (status = 403, description = "`forbidden`: needs the team's admin role or global admin.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such team or member.", body = ErrorBody)))]
pub async fn delete_member(
    State(app): State<Arc<App>>,
    AnyRoleUser(user): AnyRoleUser,
    Path((id, username)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_member_manager(&app, &user, &id).await?;
    let actor = user.username.clone();
    let (tid, uname) = (id.clone(), username.clone());
    app.store
        .write(move |tx| super::remove_member(tx, &tid, &uname, &actor))
        .await?;
    app.mux
        .close_workspace(&super::team_key(&id), Some(&username), ACCESS_REVOKED);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/workspaces`: the caller's personal workspace, then their teams.
#[utoipa::path(get, path = "/api/workspaces", tag = "workspaces",
    responses((status = 200, description = "The personal workspace first, then the caller's teams", body = WorkspaceList)))]
pub async fn list_workspaces(
    State(app): State<Arc<App>>,
    user: CurrentUser,
) -> ApiResult<impl IntoResponse> {
    let name = user.username.clone();
    let teams = app.store.read(move |tx| super::teams_of(tx, &name)).await?;
    let mut out = vec![WorkspaceView {
        id: PERSONAL.to_string(),
        kind: "personal",
        name: user.username.clone(),
        role: user.role,
    }];
    out.extend(teams.into_iter().map(|(t, role)| WorkspaceView {
        id: t.id,
        kind: "team",
        name: t.name,
        role,
    }));
    Ok(Json(WorkspaceList { workspaces: out }))
}
