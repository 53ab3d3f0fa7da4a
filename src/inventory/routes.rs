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

use super::credentials::{self, CredentialInput, CredentialView};
use super::csv_import;
use super::known_hosts;
use super::known_hosts::KnownHost;
use super::sessions::SavedSession;
use super::sessions::{self, SessionInput, ValidSession};
use super::yaml::{self, ImportMode};
use super::InventoryError;
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody, WorkspaceHeader, WorkspaceQuery};
use crate::workspace::Workspace;

/// `GET /api/sessions` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Filter: a case-insensitive substring of the name, host or a tag.
    q: Option<String>,
}

/// `GET /api/sessions`: folders with their sessions.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub folders: Vec<sessions::FolderView>,
}

/// A folder's name (`POST /api/folders`, `PUT /api/folders/{name}`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct FolderName {
    pub name: String,
}

/// A YAML import's dry run (`dry_run=true`): what it would do, or every bad row.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ImportPreview {
    /// Whether the import would be applied.
    pub valid: bool,
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
    pub errors: Vec<yaml::RowError>,
}

/// What `POST /api/sessions/import` answers, by request: a YAML import's report, a CSV
/// import's report, or a YAML dry run's preview.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ImportAnswer {
    Yaml(yaml::ImportReport),
    Csv(csv_import::CsvReport),
    Preview(ImportPreview),
}

/// `GET /api/sessions[?q=]`
#[utoipa::path(get, path = "/api/sessions", tag = "inventory",
    params(SearchQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Folders with their saved sessions", body = SessionList)))]
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
    Ok(Json(SessionList { folders }))
}

/// `GET /api/sessions/{id}`
#[utoipa::path(get, path = "/api/sessions/{id}", tag = "inventory",
    params(("id" = String, Path, description = "Saved session id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The saved session", body = SavedSession), (status = 404, description = "`not_found`: no saved session with this id in the workspace.", body = ErrorBody)))]
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
#[utoipa::path(post, path = "/api/sessions", tag = "inventory",
    params(WorkspaceQuery, WorkspaceHeader), request_body = SessionInput,
    responses((status = 201, description = "Created", body = SavedSession), (status = 400, description = "`invalid_display_name`, `invalid_host`, `invalid_port`, `invalid_username`, `invalid_device_type`, `invalid_folder`, `invalid_tags`, `unknown_credential`: the named field is wrong.", body = ErrorBody), (status = 409, description = "`limit_reached`: the workspace would hold more saved sessions or folders than `[inventory]` allows; nothing was changed.", body = ErrorBody)))]
pub async fn create_session(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<SessionInput>,
) -> ApiResult<impl IntoResponse> {
    let v = input.validate()?;
    let owner = ws.scope;
    let limits = app.cfg.inventory;
    let s = app
        .store
        .write(move |tx| {
            let before = super::Held::count(tx, &owner.key)?;
            let s = sessions::create_session(tx, &owner, v)?;
            super::check_session_room(tx, &owner.key, &limits, before)?;
            Ok::<_, InventoryError>(s)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// `PUT /api/sessions/{id}`
#[utoipa::path(put, path = "/api/sessions/{id}", tag = "inventory",
    params(("id" = String, Path, description = "Saved session id"), WorkspaceQuery, WorkspaceHeader), request_body = SessionInput,
    responses((status = 200, description = "Replaced", body = SavedSession), (status = 400, description = "`invalid_display_name`, `invalid_host`, `invalid_port`, `invalid_username`, `invalid_device_type`, `invalid_folder`, `invalid_tags`, `unknown_credential`: the named field is wrong.", body = ErrorBody), (status = 404, description = "`not_found`: no saved session with this id in the workspace.", body = ErrorBody), (status = 409, description = "`limit_reached`: the workspace would hold more saved sessions or folders than `[inventory]` allows; nothing was changed.", body = ErrorBody)))]
pub async fn update_session(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<SessionInput>,
) -> ApiResult<impl IntoResponse> {
    let v = input.validate()?;
    let owner = ws.scope;
    let limits = app.cfg.inventory;
    let s = app
        .store
        .write(move |tx| {
            let before = super::Held::count(tx, &owner.key)?;
            let s = sessions::update_session(tx, &owner, &id, v)?;
            super::check_session_room(tx, &owner.key, &limits, before)?;
            Ok::<_, InventoryError>(s)
        })
        .await?;
    Ok(Json(s))
}

/// `DELETE /api/sessions/{id}`
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "inventory",
    params(("id" = String, Path, description = "Saved session id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`not_found`: no saved session with this id in the workspace.", body = ErrorBody)))]
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

/// A folder to create, or a folder's new name.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderBody {
    name: String,
}

/// `POST /api/folders`
#[utoipa::path(post, path = "/api/folders", tag = "inventory",
    params(WorkspaceQuery, WorkspaceHeader), request_body = FolderBody,
    responses((status = 201, description = "Created", body = FolderName),
        (status = 400, description = "`invalid_folder`: empty or too long a name.", body = ErrorBody),
        (status = 409, description = "`folder_exists`: the name is taken; `limit_reached`: the workspace holds `[inventory] max_folders` folders.", body = ErrorBody)))]
pub async fn create_folder(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(body): ApiJson<FolderBody>,
) -> ApiResult<impl IntoResponse> {
    let owner = ws.scope;
    let name = body.name.trim().to_string();
    let n2 = name.clone();
    let limits = app.cfg.inventory;
    app.store
        .write(move |tx| {
            let before = super::Held::count(tx, &owner.key)?;
            sessions::create_folder(tx, &owner, &n2)?;
            super::check_session_room(tx, &owner.key, &limits, before)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(FolderName { name })))
}

/// `PUT /api/folders/{name}` (rename)
#[utoipa::path(put, path = "/api/folders/{name}", tag = "inventory",
    params(("name" = String, Path, description = "Current folder name"), WorkspaceQuery, WorkspaceHeader), request_body = FolderBody,
    responses((status = 200, description = "Renamed (its sessions move along)", body = FolderName),
        (status = 400, description = "`invalid_folder`: empty or too long a name.", body = ErrorBody),
        (status = 404, description = "`not_found`: no folder with this id in the workspace.", body = ErrorBody),
        (status = 409, description = "`folder_exists`: the new name is taken.", body = ErrorBody)))]
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
    Ok(Json(FolderName { name: to }))
}

/// `DELETE /api/folders/{name}` (409 unless empty)
#[utoipa::path(delete, path = "/api/folders/{name}", tag = "inventory",
    params(("name" = String, Path, description = "Folder name"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`not_found`: no folder with this id in the workspace.", body = ErrorBody),
        (status = 409, description = "`folder_not_empty`: move or delete its sessions first.", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/api/sessions/export", tag = "inventory",
    params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Every folder and saved session as YAML (the import's layout)", content_type = "application/yaml", body = String)))]
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

/// `POST /api/sessions/import` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `merge` (default) or `replace` (remove every session and folder first).
    #[param(inline)]
    mode: Option<ImportMode>,
    /// `yaml` (default) or `csv`.
    format: Option<String>,
    /// CSV only: what to do with rows already in the inventory.
    #[param(inline)]
    on_duplicate: Option<csv_import::OnDuplicate>,
    /// Check and report, write nothing (the console's preview). YAML answers counts;
    /// CSV answers the created/updated/skipped/refused rows.
    #[serde(default)]
    #[param(required = false)]
    dry_run: bool,
}

/// `POST /api/sessions/import?mode=merge|replace[&dry_run=true]
/// [&format=csv&on_duplicate=fail|skip|update]` (YAML or CSV body; all or nothing). A CSV dry
/// run answers the created/updated/skipped/refused rows (refused ones with reasons). A
/// YAML dry run answers 200 `{"valid","created","updated","removed","errors"}` with every
/// bad row, and writes nothing.
#[utoipa::path(post, path = "/api/sessions/import", tag = "inventory",
    params(ImportQuery, WorkspaceQuery, WorkspaceHeader),
    request_body(description = "The file: YAML (default; the legacy `- folder_name:` layout too) or CSV (`format=csv`, the template's columns)",
        content((String = "application/yaml"), (String = "text/csv"))),
    responses((status = 200, description = "What was done (all or nothing), or a dry run's preview", body = ImportAnswer),
        (status = 400, description = "`import_invalid`: bad rows, nothing imported; `invalid_yaml`, `invalid_csv`: unreadable file; `invalid_format`: neither yaml nor csv. (With `on_duplicate=fail`, a CSV row already in the inventory is a bad row.)", body = ErrorBody), (status = 409, description = "`limit_reached`: after the import the workspace would hold more saved sessions or folders than `[inventory]` allows; nothing was imported (a dry run answers the same).", body = ErrorBody)))]
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
            let limits = app.cfg.inventory;
            let report = app
                .store
                .write(move |tx| csv_import::apply(tx, &owner, rows, mode, on_duplicate, &limits))
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
    let parsed = parse_yaml(body).await?;
    let owner = ws.scope;
    if q.dry_run {
        return Ok(Json(preview_import(&app, owner, parsed, mode).await?).into_response());
    }
    let rows = parsed?;
    let limits = app.cfg.inventory;
    let report = app
        .store
        .write(move |tx| yaml::apply(tx, &owner, rows, mode, &limits))
        .await?;
    Ok(Json(report).into_response())
}

/// `GET /api/sessions/import/template.csv`: the CSV header and one example row.
#[utoipa::path(get, path = "/api/sessions/import/template.csv", tag = "inventory",
    params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The CSV import's header and one example row", content_type = "text/csv", body = String)))]
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
    let limits = app.cfg.inventory;
    let outcome = app
        .store
        .write(move |tx| -> Result<(), CsvDryRun> {
            Err(
                match csv_import::apply(tx, &owner, rows, mode, on_duplicate, &limits) {
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

/// Parses a YAML import on a blocking thread: a file at the body limit takes tens of
/// milliseconds, which an async worker's other sockets should not wait for. The outer
/// error is the request's (not UTF-8), the inner one the file's.
async fn parse_yaml(
    body: Bytes,
) -> ApiResult<Result<Vec<(yaml::RowError, ValidSession)>, InventoryError>> {
    tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("invalid_yaml", "the body is not UTF-8 text"))?;
        Ok(yaml::parse(text))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Runs the whole import, rows and credential checks included, in a transaction that
/// is never committed, and reports what it would do.
async fn preview_import(
    app: &App,
    owner: crate::workspace::Scope,
    parsed: Result<Vec<(yaml::RowError, ValidSession)>, InventoryError>,
    mode: ImportMode,
) -> ApiResult<ImportPreview> {
    let refused = |errors: Vec<yaml::RowError>| ImportPreview {
        valid: false,
        created: 0,
        updated: 0,
        removed: 0,
        errors,
    };
    let rows = match parsed {
        Ok(r) => r,
        Err(InventoryError::Import(rows)) => return Ok(refused(rows)),
        Err(e) => return Err(e.into()),
    };
    let limits = app.cfg.inventory;
    let outcome = app
        .store
        .write(move |tx| -> Result<(), DryRun> {
            Err(match yaml::apply(tx, &owner, rows, mode, &limits) {
                Ok(report) => DryRun::Counted(report),
                Err(e) => DryRun::Refused(e),
            })
        })
        .await;
    match outcome {
        Err(DryRun::Counted(r)) => Ok(ImportPreview {
            valid: true,
            created: r.created,
            updated: r.updated,
            removed: r.removed,
            errors: Vec::new(),
        }),
        Err(DryRun::Refused(InventoryError::Import(rows))) => Ok(refused(rows)),
        Err(DryRun::Refused(e)) => Err(e.into()),
        Ok(()) => Err(ApiError::internal(
            "dry run committed nothing and reported nothing",
        )),
    }
}

/// `GET /api/credentials`
#[utoipa::path(get, path = "/api/credentials", tag = "credentials",
    params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Credential sets, without their secrets", body = Vec<CredentialView>)))]
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
#[utoipa::path(post, path = "/api/credentials", tag = "credentials",
    params(WorkspaceQuery, WorkspaceHeader), request_body = CredentialInput,
    responses((status = 201, description = "Created (the secret is sealed at rest and never returned)", body = CredentialView), (status = 400, description = "`invalid_name`, `invalid_username`, `missing_secret`, `invalid_secret`, `invalid_passphrase`, `invalid_enable_secret`, `invalid_private_key`, `key_too_costly`: the named field is wrong.", body = ErrorBody), (status = 409, description = "`limit_reached`: the workspace holds `[inventory] max_credentials` credential sets.", body = ErrorBody)))]
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
        .write(move |tx| {
            let view = credentials::create(tx, &a.sealer, &owner, input)?;
            super::check_credential_room(tx, &owner.key, &a.cfg.inventory)?;
            Ok::<_, InventoryError>(view)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `PUT /api/credentials/{id}`
#[utoipa::path(put, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential set id"), WorkspaceQuery, WorkspaceHeader), request_body = CredentialInput,
    responses((status = 200, description = "Changed", body = CredentialView), (status = 400, description = "`invalid_name`, `invalid_username`, `missing_secret`, `invalid_secret`, `invalid_passphrase`, `invalid_enable_secret`, `invalid_private_key`, `key_too_costly`: the named field is wrong.", body = ErrorBody), (status = 404, description = "`not_found`: no credential set with this id in the workspace.", body = ErrorBody)))]
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
#[utoipa::path(delete, path = "/api/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential set id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`not_found`: no credential set with this id in the workspace.", body = ErrorBody),
        (status = 409, description = "`credential_in_use`: saved sessions use it.", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/api/known-hosts", tag = "known-hosts",
    params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "Trusted host keys", body = Vec<KnownHost>)))]
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
#[utoipa::path(delete, path = "/api/known-hosts/{id}", tag = "known-hosts",
    params(("id" = String, Path, description = "Known host id"), WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted: the next connection asks to trust the key again"), (status = 404, description = "`not_found`: no known host with this id in the workspace.", body = ErrorBody)))]
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
