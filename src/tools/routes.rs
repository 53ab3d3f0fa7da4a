//! `GET /api/tools` and `GET /api/tools/{name}`: the registry, for every logged-in
//! user (viewers included: listing is reading).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize)]
pub struct ToolQuery {
    pub category: Option<String>,
    pub enabled: Option<bool>,
}

/// `GET /api/tools[?category=][&enabled=]` → `{"tools":[…]}`.
pub async fn list_tools(
    State(app): State<Arc<App>>,
    _user: CurrentUser,
    Query(q): Query<ToolQuery>,
) -> ApiResult<Json<Value>> {
    let tools: Vec<Value> = app
        .tools
        .all()
        .iter()
        .filter(|t| q.category.as_deref().is_none_or(|c| t.def.category == c))
        .filter(|t| q.enabled.is_none_or(|e| t.enabled == e))
        .map(|t| t.describe())
        .collect();
    Ok(Json(json!({ "tools": tools })))
}

/// `GET /api/tools/{name}`.
pub async fn get_tool(
    State(app): State<Arc<App>>,
    _user: CurrentUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    app.tools
        .get(&name)
        .map(|t| Json(t.describe()))
        .ok_or_else(|| ApiError::not_found("tool"))
}
