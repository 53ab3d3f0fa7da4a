//! REST handlers for servers, projects and apps (thin: the logic is in `model`,
//! `control` and `poller`). Every route works in the selected workspace (`Workspace`
//! extractor): any member reads, operators and admins change and start/stop.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::model::{self, AppInput, ManagedApp, Project, ProjectInput};
use super::poller::{self, ServerStatus};
use super::remote::Action;
use super::state::{self, Trigger};
use super::{control, AppsError};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody, WorkspaceHeader, WorkspaceQuery};
use crate::store;
use crate::workspace::Workspace;

/// A server as `GET /api/servers` shows it: the saved session's address and its status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerView {
    pub id: String,
    pub display_name: String,
    pub folder: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub status: ServerStatus,
}

/// `GET /api/servers` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerList {
    pub servers: Vec<ServerView>,
}

/// `GET /api/projects` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
}

/// A project with how many apps it holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    #[serde(flatten)]
    pub project: Project,
    pub app_count: usize,
}

/// An app with the seconds left before its auto-stop.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppView {
    #[serde(flatten)]
    pub app: ManagedApp,
    /// Seconds until the sweeper stops it (0 once due); absent without a deadline.
    pub time_left_secs: Option<i64>,
}

impl From<ManagedApp> for AppView {
    fn from(app: ManagedApp) -> Self {
        let time_left_secs = app.auto_stop_at.map(|t| (t - store::now()).max(0));
        AppView {
            app,
            time_left_secs,
        }
    }
}

/// `GET /api/apps` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppList {
    pub apps: Vec<AppView>,
}

/// 202 answer of start and stop.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The job that runs the command; follow it on a `job` channel.
    pub job_id: String,
    /// The same id (as `POST /api/jobs` names it).
    pub id: String,
    pub app: AppView,
}

/// `DELETE /api/projects/{id}` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteProjectQuery {
    #[serde(default)]
    pub cascade: bool,
}

/// `DELETE /api/projects/{id}` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectDeleted {
    pub deleted_apps: usize,
}

/// `GET /api/apps` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppQuery {
    pub project_id: Option<String>,
}

/// `POST /api/apps/{id}/extend` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    pub minutes: u32,
}

fn minute_secs(app: &App) -> i64 {
    app.cfg.apps.auto_stop_minute_secs.max(1) as i64
}

/// `GET /api/servers`
#[utoipa::path(get, path = "/api/servers", tag = "apps", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The workspace's `linux` saved sessions with their last status", body = ServerList)))]
pub async fn list_servers(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<Json<ServerList>> {
    let key = ws.scope.key.clone();
    let sessions = app
        .store
        .read(move |tx| poller::list_servers(tx, &key))
        .await?;
    let servers = sessions
        .into_iter()
        .map(|s| ServerView {
            status: app.apps.status(&ws.scope.key, &s.id),
            id: s.id,
            display_name: s.display_name,
            folder: s.folder,
            host: s.host,
            port: s.port,
            username: s.username,
            tags: s.tags,
        })
        .collect();
    Ok(Json(ServerList { servers }))
}

/// `GET /api/servers/{id}/status`: checks now (at most once per
/// `check_min_interval_secs` per server; within it, the last result).
#[utoipa::path(get, path = "/api/servers/{id}/status", tag = "apps", params(("id" = String, Path, description = "Server (saved session) id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Checked now (at most once per `check_min_interval_secs`; within it, the last result)", body = ServerStatus), (status = 404, description = "`not_found`: no such linux saved session in the workspace.", body = ErrorBody)))]
pub async fn server_status(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<Json<ServerStatus>> {
    poller::check_now(&app, &ws.scope.key, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("server"))
}

/// `GET /api/projects`
#[utoipa::path(get, path = "/api/projects", tag = "apps", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The workspace's projects", body = ProjectList)))]
pub async fn list_projects(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<Json<ProjectList>> {
    let key = ws.scope.key.clone();
    let (projects, apps) = app
        .store
        .read(move |tx| -> Result<_, AppsError> {
            Ok((model::list_projects(tx, &key)?, model::list_apps(tx, &key)?))
        })
        .await?;
    let projects = projects
        .into_iter()
        .map(|p| ProjectView {
            app_count: apps.iter().filter(|a| a.project_id == p.id).count(),
            project: p,
        })
        .collect();
    Ok(Json(ProjectList { projects }))
}

/// `POST /api/projects` → 201
#[utoipa::path(post, path = "/api/projects", tag = "apps", params(WorkspaceQuery, WorkspaceHeader), request_body = ProjectInput,
    responses((status = 201, description = "Created", body = ProjectView), (status = 400, description = "`invalid_name`, `limit_reached`: see the message.", body = ErrorBody), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody)))]
pub async fn create_project(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<ProjectInput>,
) -> ApiResult<impl IntoResponse> {
    let (scope, cfg) = (ws.scope.clone(), app.cfg.apps.clone());
    let p = app
        .store
        .write(move |tx| model::create_project(tx, &scope, input, &cfg))
        .await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// `PUT /api/projects/{id}`
#[utoipa::path(put, path = "/api/projects/{id}", tag = "apps", params(("id" = String, Path, description = "Project id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader), request_body = ProjectInput,
    responses((status = 200, description = "Replaced", body = ProjectView), (status = 400, description = "`invalid_name`: see the message.", body = ErrorBody), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such project in the workspace.", body = ErrorBody)))]
pub async fn update_project(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ProjectInput>,
) -> ApiResult<Json<Project>> {
    let scope = ws.scope.clone();
    let p = app
        .store
        .write(move |tx| model::update_project(tx, &scope, &id, input))
        .await?;
    Ok(Json(p))
}

/// `DELETE /api/projects/{id}[?cascade=true]`
#[utoipa::path(delete, path = "/api/projects/{id}", tag = "apps", params(("id" = String, Path, description = "Project id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), DeleteProjectQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Deleted, with the apps it held when `cascade`", body = ProjectDeleted), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such project in the workspace.", body = ErrorBody),
        (status = 409, description = "`project_not_empty`: it holds apps (use `?cascade=true`); `app_busy`: one of its apps is starting or stopping.", body = ErrorBody)))]
pub async fn delete_project(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<DeleteProjectQuery>,
) -> ApiResult<Json<ProjectDeleted>> {
    let scope = ws.scope.clone();
    let n = app
        .store
        .write(move |tx| model::delete_project(tx, &scope, &id, q.cascade))
        .await?;
    Ok(Json(ProjectDeleted { deleted_apps: n }))
}

/// `GET /api/apps[?project_id=]`
#[utoipa::path(get, path = "/api/apps", tag = "apps", params(AppQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The workspace's apps with their state and auto-stop time left", body = AppList)))]
pub async fn list_apps(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<AppQuery>,
) -> ApiResult<Json<AppList>> {
    let key = ws.scope.key.clone();
    let apps = app.store.read(move |tx| model::list_apps(tx, &key)).await?;
    let apps = apps
        .into_iter()
        .filter(|a| q.project_id.as_ref().is_none_or(|p| &a.project_id == p))
        .map(AppView::from)
        .collect();
    Ok(Json(AppList { apps }))
}

/// `GET /api/apps/{id}`
#[utoipa::path(get, path = "/api/apps/{id}", tag = "apps", params(("id" = String, Path, description = "App id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The app", body = AppView), (status = 404, description = "`not_found`: no such app in the workspace.", body = ErrorBody)))]
pub async fn get_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<Json<AppView>> {
    let key = ws.scope.key.clone();
    let a = app
        .store
        .read(move |tx| model::get_app(tx, &key, &id))
        .await?;
    Ok(Json(a.into()))
}

/// `POST /api/apps` → 201
#[utoipa::path(post, path = "/api/apps", tag = "apps", params(WorkspaceQuery, WorkspaceHeader), request_body = AppInput,
    responses((status = 201, description = "Created (stopped)", body = AppView), (status = 400, description = "`invalid_name`, `invalid_cd_path`, `invalid_unit`, `invalid_app_url`, `invalid_auto_stop`, `invalid_server`, `invalid_project`, `limit_reached`: see the message.", body = ErrorBody), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody)))]
pub async fn create_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<AppInput>,
) -> ApiResult<impl IntoResponse> {
    let (scope, cfg) = (ws.scope.clone(), app.cfg.apps.clone());
    let a = app
        .store
        .write(move |tx| model::create_app(tx, &scope, input, &cfg))
        .await?;
    Ok((StatusCode::CREATED, Json(AppView::from(a))))
}

/// `PUT /api/apps/{id}`
#[utoipa::path(put, path = "/api/apps/{id}", tag = "apps", params(("id" = String, Path, description = "App id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader), request_body = AppInput,
    responses((status = 200, description = "Replaced", body = AppView), (status = 400, description = "`invalid_name`, `invalid_cd_path`, `invalid_unit`, `invalid_app_url`, `invalid_auto_stop`, `invalid_server`, `invalid_project`, `limit_reached`: see the message.", body = ErrorBody), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such app in the workspace.", body = ErrorBody),
        (status = 409, description = "`app_busy`: it is starting or stopping.", body = ErrorBody)))]
pub async fn update_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AppInput>,
) -> ApiResult<Json<AppView>> {
    let (scope, minute) = (ws.scope.clone(), minute_secs(&app));
    let a = app
        .store
        .write(move |tx| model::update_app(tx, &scope, &id, input, minute))
        .await?;
    Ok(Json(a.into()))
}

/// `DELETE /api/apps/{id}` → 204
#[utoipa::path(delete, path = "/api/apps/{id}", tag = "apps", params(("id" = String, Path, description = "App id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted (it is not stopped first)"), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such app in the workspace.", body = ErrorBody),
        (status = 409, description = "`app_busy`: it is starting or stopping.", body = ErrorBody)))]
pub async fn delete_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let scope = ws.scope.clone();
    app.store
        .write(move |tx| model::delete_app(tx, &scope, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn launch(
    app: Arc<App>,
    ws: Workspace,
    id: String,
    action: Action,
) -> ApiResult<impl IntoResponse> {
    let b = control::launch(&app, ws.scope.clone(), ws.role, id, action, Trigger::User).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: b.job.id.clone(),
            id: b.job.id,
            app: b.app.into(),
        }),
    ))
}

/// `POST /api/apps/{id}/start` → 202 `{"job_id","id","app"}`
#[utoipa::path(post, path = "/api/apps/{id}/start", tag = "apps", params(("id" = String, Path, description = "App id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 202, description = "Starting: `docker compose up -d` (or `systemctl start`) runs as a job; follow it on a `job` channel", body = Accepted), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such app in the workspace.", body = ErrorBody),
        (status = 409, description = "`app_running`: already running; `app_busy`: starting or stopping.", body = ErrorBody)))]
pub async fn start_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    launch(app, ws, id, Action::Start).await
}

/// `POST /api/apps/{id}/stop` → 202 `{"job_id","id","app"}`
#[utoipa::path(post, path = "/api/apps/{id}/stop", tag = "apps", params(("id" = String, Path, description = "App id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 202, description = "Stopping: `docker compose down` (or `systemctl stop`) runs as a job", body = Accepted), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such app in the workspace.", body = ErrorBody),
        (status = 409, description = "`app_stopped`: already stopped; `app_busy`: starting or stopping.", body = ErrorBody)))]
pub async fn stop_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    launch(app, ws, id, Action::Stop).await
}

/// `POST /api/apps/{id}/extend {"minutes"}`
#[utoipa::path(post, path = "/api/apps/{id}/extend", tag = "apps", params(("id" = String, Path, description = "App id", example = "5f2b9c0e1d3a4b6c8e7f9a0b1c2d3e4f"), WorkspaceQuery, WorkspaceHeader), request_body = ExtendInput,
    responses((status = 200, description = "The auto-stop deadline moved", body = AppView), (status = 400, description = "`invalid_minutes`: see the message.", body = ErrorBody), (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 404, description = "`not_found`: no such app in the workspace.", body = ErrorBody),
        (status = 409, description = "`not_running`: only a running app with auto-stop has a deadline.", body = ErrorBody)))]
pub async fn extend_app(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ExtendInput>,
) -> ApiResult<Json<AppView>> {
    let (scope, max, minute) = (
        ws.scope.clone(),
        app.cfg.apps.max_extend_minutes,
        minute_secs(&app),
    );
    let a = app
        .store
        .write(move |tx| state::extend(tx, &scope, &id, input.minutes, max, minute))
        .await?;
    Ok(Json(a.into()))
}
