//! `GET /api/tools` and `GET /api/tools/{name}`: the registry, for every logged-in
//! user (viewers included: listing is reading).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use opsgate_protocol::codes;
use serde::Deserialize;
use serde_json::Value;

use crate::app::App;
use crate::auth::{CurrentUser, Role};
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody, WorkspaceHeader, WorkspaceQuery};
use crate::source::{OpenError, Source};
use crate::workspace::Workspace;

/// `GET /api/tools` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ToolQuery {
    /// e.g. `reachability`, `path`, `dns`, `scan`.
    pub category: Option<String>,
    pub enabled: Option<bool>,
}

/// A tool as the registry describes it (`super::Tool::describe`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ToolDescription {
    #[schema(value_type = String, example = "ping")]
    pub name: &'static str,
    #[schema(value_type = String)]
    pub description: &'static str,
    #[schema(value_type = String)]
    pub category: &'static str,
    /// JSON Schema of `params` (an object schema).
    #[schema(value_type = Object)]
    pub params: Value,
    /// JSON Schema of an execution's `result`.
    pub result_schema: Value,
    pub enabled: bool,
    /// The tool's program is installed on the gateway.
    pub available: bool,
    pub admin_only: bool,
    pub timeout_secs: u64,
    /// Runs of this tool at once, gateway-wide.
    pub concurrency: usize,
}

/// `GET /api/tools`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ToolList {
    pub tools: Vec<ToolDescription>,
}

/// A started execution.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExecutionStarted {
    pub id: String,
}

/// A cancel under way.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExecutionCancelling {
    pub id: String,
    /// `cancelling`.
    #[schema(value_type = String, example = "cancelling")]
    pub state: &'static str,
}

/// `GET /api/executions`: a page, newest first, without output.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExecutionList {
    /// Executions without their `output`.
    #[schema(value_type = Vec<super::executions::Execution>)]
    pub executions: Vec<Value>,
    pub total: usize,
}

/// `GET /api/tools[?category=][&enabled=]` → `{"tools":[…]}`.
#[utoipa::path(get, path = "/api/tools", tag = "tools", params(ToolQuery),
    responses((status = 200, description = "The registry", body = ToolList)))]
pub async fn list_tools(
    State(app): State<Arc<App>>,
    _user: CurrentUser,
    Query(q): Query<ToolQuery>,
) -> ApiResult<Json<ToolList>> {
    let tools: Vec<ToolDescription> = app
        .tools
        .all()
        .iter()
        .filter(|t| q.category.as_deref().is_none_or(|c| t.def.category == c))
        .filter(|t| q.enabled.is_none_or(|e| t.enabled == e))
        .map(|t| t.describe())
        .collect();
    Ok(Json(ToolList { tools }))
}

/// `GET /api/tools/{name}`.
#[utoipa::path(get, path = "/api/tools/{name}", tag = "tools", params(("name" = String, Path, description = "Tool name", example = "ping")),
    responses((status = 200, description = "The tool", body = ToolDescription),
        (status = 404, description = "`not_found`: no such tool.", body = ErrorBody)))]
pub async fn get_tool(
    State(app): State<Arc<App>>,
    _user: CurrentUser,
    Path(name): Path<String>,
) -> ApiResult<Json<ToolDescription>> {
    app.tools
        .get(&name)
        .map(|t| Json(t.describe()))
        .ok_or_else(|| ApiError::not_found("tool"))
}

/// `POST /api/tools/{name}/execute` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ExecuteBody {
    /// Checked against the tool's `params` schema.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"host": "127.0.0.1", "count": 1}))]
    pub params: Value,
}

fn tool_error(e: super::ToolError) -> ApiError {
    use axum::http::StatusCode;
    let status = match &e {
        super::ToolError::Unknown(_) => StatusCode::NOT_FOUND,
        super::ToolError::AdminOnly(_) | super::ToolError::Viewer => StatusCode::FORBIDDEN,
        super::ToolError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
        super::ToolError::Disabled(_) | super::ToolError::Unavailable(..) => StatusCode::CONFLICT,
        super::ToolError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// `POST /api/tools/{name}/execute {params}` → 202 `{"id"}`: a run in the selected
/// workspace (operators and admins of it; `admin_only` tools need a global admin).
#[utoipa::path(post, path = "/api/tools/{name}/execute", tag = "tools", params(("name" = String, Path, description = "Tool name", example = "ping"), WorkspaceQuery, WorkspaceHeader),
    request_body = ExecuteBody,
    responses((status = 202, description = "Started; follow it with a `tool` channel or `GET /api/executions/{id}`", body = ExecutionStarted),
        (status = 400, description = "`invalid_params`: the params do not match the tool's schema.", body = ErrorBody),
        (status = 403, description = "`forbidden`: viewers run no tools; an `admin_only` tool needs a global admin.", body = ErrorBody),
        (status = 404, description = "`unknown_tool`: no such tool.", body = ErrorBody),
        (status = 409, description = "`tool_disabled`: disabled by the administrator; `tool_unavailable`: its program is not installed.", body = ErrorBody),
        (status = 429, description = "`limit_reached`: too many runs of this user or of the gateway at once.", body = ErrorBody)))]
pub async fn execute(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> ApiResult<impl IntoResponse> {
    let run = app
        .tools
        .prepare(
            &ws.user.username,
            ws.role,
            ws.user.role == Role::Admin,
            &name,
            &body.params,
        )
        .map_err(tool_error)?;
    let live = app.executions.start(
        run,
        &ws.user.username,
        Some(ws.user.ip.clone()),
        ws.scope.key.clone(),
        ws.scope.team_id().map(str::to_string),
    );
    let id = live.snapshot().id;
    Ok((StatusCode::ACCEPTED, Json(ExecutionStarted { id })))
}

/// `GET /api/executions` filters and page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecQuery {
    pub tool: Option<String>,
    pub user: Option<String>,
    pub state: Option<String>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// `GET /api/executions[?tool=][&user=][&state=][&limit=][&offset=]` →
/// `{"executions":[…],"total"}`, newest first, without output.
#[utoipa::path(get, path = "/api/executions", tag = "tools", params(ExecQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "A page of executions, newest first, without output", body = ExecutionList)))]
pub async fn list_executions(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<ExecQuery>,
) -> ApiResult<Json<ExecutionList>> {
    let all = app.executions.list(&ws.scope.key).await?;
    let matching: Vec<_> = all
        .into_iter()
        .filter(|e| q.tool.as_deref().is_none_or(|t| e.tool == t))
        .filter(|e| q.user.as_deref().is_none_or(|u| e.user == u))
        .filter(|e| q.state.as_deref().is_none_or(|s| e.state == s))
        .collect();
    let total = matching.len();
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let page: Vec<Value> = matching
        .iter()
        .skip(q.offset.unwrap_or(0))
        .take(limit)
        .map(|e| e.summary())
        .collect();
    Ok(Json(ExecutionList {
        executions: page,
        total,
    }))
}

/// `GET /api/executions/{id}`: the record with its stored output.
#[utoipa::path(get, path = "/api/executions/{id}", tag = "tools", params(("id" = String, Path, description = "Execution id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The record with its stored output", body = super::executions::Execution),
        (status = 404, description = "`not_found`: no execution with this id in the workspace.", body = ErrorBody)))]
pub async fn get_execution(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let e = app
        .executions
        .get(&ws.scope.key, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    Ok(Json(serde_json::to_value(e).unwrap_or(Value::Null)))
}

/// `DELETE /api/executions/{id}`: cancels a run in flight (202); 409 `not_running` if it
/// already ended.
#[utoipa::path(delete, path = "/api/executions/{id}", tag = "tools", params(("id" = String, Path, description = "Execution id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 202, description = "Cancelling: the process group is killed", body = ExecutionCancelling),
        (status = 404, description = "`not_found`: no execution with this id in the workspace.", body = ErrorBody),
        (status = 409, description = "`not_running`: it already ended.", body = ErrorBody)))]
pub async fn cancel_execution(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if let Some(l) = app.executions.live(&id).filter(|l| l.key == ws.scope.key) {
        if l.cancel() {
            app.audit.record(
                ws.scope
                    .audit("tool.cancel")
                    .target(id.clone())
                    .ip(Some(ws.user.ip.clone())),
            );
            return Ok((
                StatusCode::ACCEPTED,
                Json(ExecutionCancelling {
                    id,
                    state: "cancelling",
                }),
            ));
        }
    }
    match app.executions.get(&ws.scope.key, &id).await? {
        Some(e) => Err(ApiError::conflict(
            "not_running",
            format!("execution {id} already ended ({})", e.state),
        )),
        None => Err(ApiError::not_found("execution")),
    }
}

/// The source of a channel following execution `id`, if `user` may read it: their own
/// personal workspace's, or a team's they are a member of.
pub async fn follow(app: &Arc<App>, user: &str, id: &str) -> Result<Source, OpenError> {
    let u = user.to_string();
    let mut keys = vec![u.clone()];
    let teams = app
        .store
        .read(move |tx| crate::workspace::teams_of(tx, &u))
        .await
        .map_err(|e| OpenError::new(codes::NOT_FOUND, e.to_string()))?;
    keys.extend(teams.iter().map(|(t, _)| crate::workspace::team_key(&t.id)));
    if let Some(l) = app.executions.live(id).filter(|l| keys.contains(&l.key)) {
        return Ok(super::executions::follow(Some(l), None, false));
    }
    for k in &keys {
        if let Ok(Some(rec)) = app.executions.get(k, id).await {
            return Ok(super::executions::follow(None, Some(rec), false));
        }
    }
    Err(OpenError::new(
        codes::NOT_FOUND,
        format!("no execution {id:?} in your workspaces"),
    ))
}
