//! REST handlers for the inventory: thin wrappers over the functions of this module.
//! Every handler takes a [`Workspace`] (the `?workspace=` / `X-Opsgate-Workspace`
//! selector, checked for the caller's role there), so every route works per workspace.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::credentials::{self, CredentialInput};
use super::csv_import;
use super::known_hosts;
use super::sessions::{self, SessionInput};
use super::yaml::{self, ImportMode};
use super::InventoryError;
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::http::ApiJson;
use crate::workspace::Workspace;

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// `GET /api/sessions[?q=]`
pub async fn list_sessions(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(query): Query<SearchQuery>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope.key;
    let folders = app
        .store
        .read(move |tx| sessions::list_folders(tx, &owner, query.q.as_deref()))
        .await?;
    Ok(Json(json!({ "folders": folders })))
}

/// `GET /api/sessions/{id}`
pub async fn get_session(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope.key;
    let s = app
        .store
        .read(move |tx| sessions::get_session(tx, &owner, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("saved session"))?;
    Ok(Json(s))
}

/// `POST /api/sessions`
pub async fn create_session(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<SessionInput>,
) -> ApiResult<impl IntoResponse> {
    let v = input.validate()?;
    let owner = ws.scope;
    let s = app
        .store
        .write(move |tx| sessions::create_session(tx, &owner, v))
        .await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// `PUT /api/sessions/{id}`
pub async fn update_session(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<SessionInput>,
) -> ApiResult<impl IntoResponse> {
    let v = input.validate()?;
    let owner = ws.scope;
    let s = app
        .store
        .write(move |tx| sessions::update_session(tx, &owner, &id, v))
        .await?;
    Ok(Json(s))
}

/// `DELETE /api/sessions/{id}`
pub async fn delete_session(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = ws.scope;
    app.store
        .write(move |tx| sessions::delete_session(tx, &owner, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderBody {
    name: String,
}

/// `POST /api/folders`
pub async fn create_folder(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(body): ApiJson<FolderBody>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope;
    let name = body.name.trim().to_string();
    let n2 = name.clone();
    app.store
        .write(move |tx| sessions::create_folder(tx, &owner, &n2))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": name }))))
}

/// `PUT /api/folders/{name}` (rename)
pub async fn rename_folder(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<FolderBody>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope;
    let to = body.name.trim().to_string();
    let t2 = to.clone();
    app.store
        .write(move |tx| sessions::rename_folder(tx, &owner, &name, &t2))
        .await?;
    Ok(Json(json!({ "name": to })))
}

/// `DELETE /api/folders/{name}` (409 unless empty)
pub async fn delete_folder(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = ws.scope;
    app.store
        .write(move |tx| sessions::delete_folder(tx, &owner, &name))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/sessions/export` (YAML)
pub async fn export_sessions(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope.key;
    let folders = app
        .store
        .read(move |tx| sessions::list_folders(tx, &owner, None))
        .await?;
    let text = yaml::export(&folders)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/yaml; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"opsgate-sessions.yaml\"",
            ),
        ],
        text,
    ))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    mode: Option<ImportMode>,
    /// `yaml` (default) or `csv`.
    format: Option<String>,
    /// CSV only: what to do with rows already in the inventory.
    on_duplicate: Option<csv_import::OnDuplicate>,
    /// Check and report, write nothing (the console's preview). YAML answers counts;
    /// CSV answers the created/updated/skipped/refused rows.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/sessions/import?mode=merge|replace[&dry_run=true]
/// [&format=csv&on_duplicate=fail|skip|update]` (YAML or CSV body; all or nothing). A CSV dry
/// run answers the created/updated/skipped/refused rows (refused ones with reasons). A
/// YAML dry run answers 200 `{"valid","created","updated","removed","errors"}` with every
/// bad row, and writes nothing.
pub async fn import_sessions(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<axum::response::Response> {
    let mode = q.mode.unwrap_or(ImportMode::Merge);
    match q.format.as_deref() {
        None | Some("yaml") => {}
        Some("csv") => {
            let on_duplicate = q.on_duplicate.unwrap_or_default();
            let owner = ws.scope;
            if q.dry_run {
                let report = preview_csv(&app, owner, &body, mode, on_duplicate).await?;
                return Ok(Json(report).into_response());
            }
            let rows = csv_import::parse(&body)?;
            let report = app
                .store
                .write(move |tx| csv_import::apply(tx, &owner, rows, mode, on_duplicate))
                .await?;
            return Ok(Json(report).into_response());
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("format {other:?} is not yaml or csv"),
            ))
        }
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_yaml", "the body is not UTF-8 text"))?;
    let owner = ws.scope;
    if q.dry_run {
        return Ok(Json(preview_import(&app, owner, text, mode).await?).into_response());
    }
    let rows = yaml::parse(text)?;
    let report = app
        .store
        .write(move |tx| yaml::apply(tx, &owner, rows, mode))
        .await?;
    Ok(Json(report).into_response())
}

/// `GET /api/sessions/import/template.csv`: the CSV header and one example row.
pub async fn csv_template(_ws: Workspace) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"opsgate-sessions.csv\"",
            ),
        ],
        csv_import::TEMPLATE,
    )
}

/// A CSV dry run: the whole import in a transaction that is never committed. Refused
/// rows come back as data (`valid: false`, `refused: [...]`), not as a 400.
async fn preview_csv(
    app: &App,
    owner: crate::workspace::Scope,
    body: &[u8],
    mode: ImportMode,
    on_duplicate: csv_import::OnDuplicate,
) -> ApiResult<csv_import::CsvReport> {
    let rows = match csv_import::parse(body) {
        Ok(r) => r,
        Err(InventoryError::Import(rows)) => return Ok(csv_import::CsvReport::refused(rows)),
        Err(e) => return Err(e.into()),
    };
    let outcome = app
        .store
        .write(move |tx| -> Result<(), CsvDryRun> {
            Err(
                match csv_import::apply(tx, &owner, rows, mode, on_duplicate) {
                    Ok(report) => CsvDryRun::Counted(report),
                    Err(e) => CsvDryRun::Refused(e),
                },
            )
        })
        .await;
    match outcome {
        Err(CsvDryRun::Counted(r)) => Ok(r),
        Err(CsvDryRun::Refused(InventoryError::Import(rows))) => {
            Ok(csv_import::CsvReport::refused(rows))
        }
        Err(CsvDryRun::Refused(e)) => Err(e.into()),
        Ok(()) => Err(ApiError::internal(
            "dry run committed nothing and reported nothing",
        )),
    }
}

/// How a CSV dry run leaves its write transaction: always by `Err`, so it is aborted.
enum CsvDryRun {
    Counted(csv_import::CsvReport),
    Refused(InventoryError),
}

impl From<crate::store::StoreError> for CsvDryRun {
    fn from(e: crate::store::StoreError) -> Self {
        CsvDryRun::Refused(e.into())
    }
}

/// How a dry run leaves its write transaction: always by `Err`, so it is aborted.
enum DryRun {
    Counted(yaml::ImportReport),
    Refused(InventoryError),
}

impl From<crate::store::StoreError> for DryRun {
    fn from(e: crate::store::StoreError) -> Self {
        DryRun::Refused(e.into())
    }
}

/// Runs the whole import, rows and credential checks included, in a transaction that
/// is never committed, and reports what it would do.
async fn preview_import(
    app: &App,
    owner: crate::workspace::Scope,
    text: &str,
    mode: ImportMode,
) -> ApiResult<serde_json::Value> {
    let refused = |rows: Vec<yaml::RowError>| json!({"valid": false, "created": 0, "updated": 0, "removed": 0, "errors": rows});
    let rows = match yaml::parse(text) {
        Ok(r) => r,
        Err(InventoryError::Import(rows)) => return Ok(refused(rows)),
        Err(e) => return Err(e.into()),
    };
    let outcome = app
        .store
        .write(move |tx| -> Result<(), DryRun> {
            Err(match yaml::apply(tx, &owner, rows, mode) {
                Ok(report) => DryRun::Counted(report),
                Err(e) => DryRun::Refused(e),
            })
        })
        .await;
    match outcome {
        Err(DryRun::Counted(r)) => Ok(json!({
            "valid": true, "created": r.created, "updated": r.updated, "removed": r.removed, "errors": [],
        })),
        Err(DryRun::Refused(InventoryError::Import(rows))) => Ok(refused(rows)),
        Err(DryRun::Refused(e)) => Err(e.into()),
        Ok(()) => Err(ApiError::internal(
            "dry run committed nothing and reported nothing",
        )),
    }
}

/// `GET /api/credentials`
pub async fn list_credentials(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope.key;
    let list = app
        .store
        .read(move |tx| credentials::list(tx, &owner))
        .await?;
    Ok(Json(list))
}

/// `POST /api/credentials`
pub async fn create_credential(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<CredentialInput>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope;
    // A private key is decrypted here, before the write transaction: its KDF must never
    // hold the database's write lock.
    let input = credentials::prepare(input).await?;
    let a = app.clone();
    let view = app
        .store
        .write(move |tx| credentials::create(tx, &a.sealer, &owner, input))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `PUT /api/credentials/{id}`
pub async fn update_credential(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CredentialInput>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope;
    let input = credentials::prepare(input).await?;
    let a = app.clone();
    let view = app
        .store
        .write(move |tx| credentials::update(tx, &a.sealer, &owner, &id, input))
        .await?;
    Ok(Json(view))
}

/// `DELETE /api/credentials/{id}`
pub async fn delete_credential(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = ws.scope;
    app.store
        .write(move |tx| credentials::delete(tx, &owner, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/known-hosts`
pub async fn list_known_hosts(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope.key;
    let list = app
        .store
        .read(move |tx| known_hosts::list(tx, &owner))
        .await?;
    Ok(Json(list))
}

/// `DELETE /api/known-hosts/{id}`
pub async fn delete_known_host(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = ws.scope;
    app.store
        .write(move |tx| known_hosts::delete(tx, &owner, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
