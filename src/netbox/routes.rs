//! REST handlers for NetBox (thin: the logic is in `client`, `settings` and `import`).
//! Every handler takes a [`Workspace`]: viewers read, operators and admins of the
//! workspace change the connection and import (the extractor refuses viewers' writes).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use super::client::NetboxClient;
use super::import::{self, Device, DeviceFilters, DeviceRow, ImportReport, ImportRequest, Mapping};
use super::settings::{self, SettingsInput, SettingsView};
use super::NetboxError;
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ErrorBody, WorkspaceHeader, WorkspaceQuery};
use crate::jobs::model::{self, Job, JobState, JobType, Target, TargetError};
use crate::jobs::runner::{ExternalJob, EXTERNAL_TARGET};
use crate::store;
use crate::workspace::{Scope, Workspace};

/// Imports (and dry runs) fetching from NetBox at once, over all workspaces: each may
/// hold up to `max_import_devices` devices in memory. More wait their turn.
static IMPORTS: Semaphore = Semaphore::const_new(2);
/// Whole listings (sites, platforms) read at once, over all workspaces.
static LISTINGS: Semaphore = Semaphore::const_new(4);

/// Device ids asked for per request (`?id=1&id=2…` keeps the URL short enough).
const IDS_PER_REQUEST: usize = 200;

/// The key of the import's own events on the `job` channel.
const PROGRESS_KEY: &str = "netbox";

fn mapping(app: &App) -> Result<Mapping, ApiError> {
    Mapping::new(&app.cfg.netbox).map_err(ApiError::internal)
}

/// A client for the workspace's stored connection.
async fn client_for(app: &Arc<App>, key: &str) -> Result<NetboxClient, NetboxError> {
    let k = key.to_string();
    let stored = app
        .store
        .read(move |tx| settings::get(tx, &k))
        .await?
        .ok_or(NetboxError::NotConfigured)?;
    settings::client(&app.cfg.netbox, &app.sealer, key, &stored)
}

/// `GET /api/netbox`
#[utoipa::path(get, path = "/api/netbox", tag = "netbox", operation_id = "get_netbox", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "The workspace's NetBox connection (never the token)", body = SettingsView)))]
pub async fn get_settings(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<Json<SettingsView>> {
    let key = ws.scope.key;
    let stored = app
        .store
        .read(move |tx| settings::get(tx, &key))
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SettingsView::of(stored.as_ref())))
}

/// `PUT /api/netbox {"url","token","verify_tls"?}`: tests the connection, then stores it.
#[utoipa::path(put, path = "/api/netbox", tag = "netbox", operation_id = "put_netbox", params(WorkspaceQuery, WorkspaceHeader), request_body = SettingsInput,
    responses((status = 200, description = "Tested (`GET /api/status/` and a token-only read) and stored; the token is sealed", body = SettingsView),
        (status = 400, description = "`invalid_url`, `invalid_token`: see the message.", body = ErrorBody),
        (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody),
        (status = 502, description = "`netbox_unreachable`, `netbox_auth_failed`, `netbox_tls`, `netbox_error`: NetBox could not be asked or refused (NetBox's own `detail` is passed on).", body = ErrorBody)))]
pub async fn put_settings(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(input): ApiJson<SettingsInput>,
) -> ApiResult<Json<SettingsView>> {
    let verify_tls = input.verify_tls.unwrap_or(true);
    let client = NetboxClient::new(&app.cfg.netbox, &input.url, &input.token, verify_tls)?;
    let version = client.check().await?;
    let url = super::client::parse_url(&input.url)?.to_string();
    let (a, scope, v2) = (app.clone(), ws.scope, version.clone());
    let token = input.token;
    let u2 = url.clone();
    app.store
        .write(move |tx| settings::put(tx, &a.sealer, &scope, u2, &token, verify_tls, v2))
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SettingsView {
        url: Some(url),
        configured: true,
        verify_tls,
        netbox_version: version,
    }))
}

/// `DELETE /api/netbox`
#[utoipa::path(delete, path = "/api/netbox", tag = "netbox", operation_id = "delete_netbox", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody),
        (status = 404, description = "`not_found`: no NetBox connection in the workspace.", body = ErrorBody)))]
pub async fn delete_settings(State(app): State<Arc<App>>, ws: Workspace) -> ApiResult<StatusCode> {
    let scope = ws.scope;
    let gone = app
        .store
        .write(move |tx| settings::delete(tx, &scope))
        .await
        .map_err(ApiError::from)?;
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("NetBox connection"))
    }
}

/// A site or platform.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamedObject {
    pub id: u64,
    pub name: String,
    pub slug: String,
}

/// `GET /api/netbox/sites` and `/platforms` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NamedList {
    pub results: Vec<NamedObject>,
}

async fn list_named(app: &Arc<App>, ws: &Workspace, path: &str) -> ApiResult<Json<NamedList>> {
    let client = client_for(app, &ws.scope.key).await?;
    // Each listing may hold up to `max_listing_bytes` while it is read; viewers may ask
    // for them, so only a few are read at once.
    let _turn = LISTINGS.acquire().await.map_err(ApiError::internal)?;
    let results: Vec<NamedObject> = client
        .all(path, &[], app.cfg.netbox.max_import_devices, &|_, _| {})
        .await?;
    Ok(Json(NamedList { results }))
}

/// `GET /api/netbox/sites`
#[utoipa::path(get, path = "/api/netbox/sites", tag = "netbox", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "NetBox's sites (every page)", body = NamedList), (status = 409, description = "`netbox_not_configured`: the workspace has no NetBox connection (`PUT /api/netbox`).", body = ErrorBody), (status = 502, description = "`netbox_unreachable`, `netbox_auth_failed`, `netbox_tls`, `netbox_error`: NetBox could not be asked or refused (NetBox's own `detail` is passed on).", body = ErrorBody)))]
pub async fn list_sites(State(app): State<Arc<App>>, ws: Workspace) -> ApiResult<Json<NamedList>> {
    list_named(&app, &ws, "api/dcim/sites/").await
}

/// `GET /api/netbox/platforms`
#[utoipa::path(get, path = "/api/netbox/platforms", tag = "netbox", params(WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "NetBox's platforms (every page)", body = NamedList), (status = 409, description = "`netbox_not_configured`: the workspace has no NetBox connection (`PUT /api/netbox`).", body = ErrorBody), (status = 502, description = "`netbox_unreachable`, `netbox_auth_failed`, `netbox_tls`, `netbox_error`: NetBox could not be asked or refused (NetBox's own `detail` is passed on).", body = ErrorBody)))]
pub async fn list_platforms(
    State(app): State<Arc<App>>,
    ws: Workspace,
) -> ApiResult<Json<NamedList>> {
    list_named(&app, &ws, "api/dcim/platforms/").await
}

/// `GET /api/netbox/devices` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    q: Option<String>,
    site: Option<String>,
    platform: Option<String>,
    status: Option<String>,
    role: Option<String>,
    tag: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/netbox/devices` answer: one page of NetBox's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub count: u64,
    /// The `offset` of the next page, if there is one.
    pub next_offset: Option<usize>,
    pub results: Vec<DeviceRow>,
}

/// `GET /api/netbox/devices?q=&site=&platform=&status=&role=&tag=&limit=&offset=`
#[utoipa::path(get, path = "/api/netbox/devices", tag = "netbox", params(DeviceQuery, WorkspaceQuery, WorkspaceHeader),
    responses((status = 200, description = "One page of NetBox's devices matching the filters (NetBox's own slug filters), each with whether it can be imported and why not", body = DeviceList),
        (status = 400, description = "`invalid_query`: a filter or the page is out of bounds.", body = ErrorBody), (status = 409, description = "`netbox_not_configured`: the workspace has no NetBox connection (`PUT /api/netbox`).", body = ErrorBody), (status = 502, description = "`netbox_unreachable`, `netbox_auth_failed`, `netbox_tls`, `netbox_error`: NetBox could not be asked or refused (NetBox's own `detail` is passed on).", body = ErrorBody)))]
pub async fn list_devices(
    State(app): State<Arc<App>>,
    ws: Workspace,
    Query(q): Query<DeviceQuery>,
) -> ApiResult<Json<DeviceList>> {
    let filters = DeviceFilters {
        q: q.q,
        site: q.site,
        platform: q.platform,
        status: q.status,
        role: q.role,
        tag: q.tag,
    };
    let mut query = filters.to_query()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0).min(10_000_000);
    query.push(("limit".into(), limit.to_string()));
    query.push(("offset".into(), offset.to_string()));
    let client = client_for(&app, &ws.scope.key).await?;
    let page = client.page::<Device>("api/dcim/devices/", &query).await?;
    let map = mapping(&app)?;
    let probe = ImportRequest {
        device_ids: None,
        filters: None,
        dry_run: true,
        folder_by: import::FolderBy::Site,
        folder: None,
        use_name_as_host: false,
    };
    let next_offset = page
        .next
        .as_ref()
        .map(|_| offset + page.results.len().max(1));
    Ok(Json(DeviceList {
        count: page.count,
        next_offset,
        results: page
            .results
            .iter()
            .map(|d| import::row(d, &map, &probe))
            .collect(),
    }))
}

/// Checks an import request before anything is fetched.
fn check_request(app: &App, req: &ImportRequest) -> Result<(), NetboxError> {
    match (&req.device_ids, &req.filters) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(NetboxError::invalid(
                "invalid_import",
                "give either device_ids or filters (filters may be {} for every device)",
            ))
        }
        (Some(ids), None) if ids.is_empty() || ids.len() > app.cfg.netbox.max_import_devices => {
            return Err(NetboxError::invalid(
                "invalid_import",
                format!(
                    "device_ids must name 1 to {} devices",
                    app.cfg.netbox.max_import_devices
                ),
            ))
        }
        (None, Some(f)) => {
            f.to_query()?;
        }
        _ => {}
    }
    if let Some(f) = &req.folder {
        crate::inventory::check_folder_name(f)
            .map_err(|e| NetboxError::invalid("invalid_folder", e.to_string()))?;
    }
    Ok(())
}

/// Every device the request names, through NetBox's paging.
async fn fetch(
    app: &App,
    client: &NetboxClient,
    req: &ImportRequest,
    on_page: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Device>, NetboxError> {
    let max = app.cfg.netbox.max_import_devices;
    let path = "api/dcim/devices/";
    match (&req.device_ids, &req.filters) {
        (Some(ids), _) => {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            let chunks: Vec<&[u64]> = ids.chunks(IDS_PER_REQUEST).collect();
            let mut out = Vec::with_capacity(ids.len());
            // One budget for the whole import, not one per chunk: a NetBox that ignores
            // the `id` filter would otherwise send up to the limit for every chunk.
            let mut bytes_left = client.max_listing_bytes();
            for (i, chunk) in chunks.iter().enumerate() {
                let query: Vec<(String, String)> = chunk
                    .iter()
                    .map(|id| ("id".to_string(), id.to_string()))
                    .collect();
                let items_left = max.saturating_sub(out.len());
                let (got, bytes) = client
                    .all_within::<Device>(path, &query, items_left, bytes_left, &|_, _| {})
                    .await?;
                bytes_left = bytes_left.saturating_sub(bytes);
                // Only what was asked for, and each device once, whatever NetBox sends.
                out.extend(
                    got.into_iter()
                        .filter(|d| chunk.binary_search(&d.id).is_ok()),
                );
                on_page(i + 1, chunks.len());
            }
            out.sort_unstable_by_key(|d| d.id);
            out.dedup_by_key(|d| d.id);
            Ok(out)
        }
        (None, Some(f)) => client.all(path, &f.to_query()?, max, on_page).await,
        (None, None) => Ok(Vec::new()),
    }
}

/// How a dry run leaves its write transaction: always by `Err`, so it is aborted.
enum DryRun {
    Planned(ImportReport),
    Refused(NetboxError),
}

impl From<store::StoreError> for DryRun {
    fn from(e: store::StoreError) -> Self {
        DryRun::Refused(e.into())
    }
}

/// `POST /api/netbox/import`: a dry run answers 200 with the report; a real run answers
/// 202 `{"id"}`, a `netbox_import` job whose progress streams on `job` channels.
#[utoipa::path(post, path = "/api/netbox/import", tag = "netbox", params(WorkspaceQuery, WorkspaceHeader), request_body = ImportRequest,
    responses((status = 200, description = "`dry_run`: what would be created, updated and refused (with reasons); nothing changed", body = ImportReport),
        (status = 202, description = "A `netbox_import` job started; follow it on a `job` channel. All importable rows are applied in one transaction, or none", body = crate::jobs::routes::JobStarted),
        (status = 400, description = "`invalid_import`, `netbox_too_many`: see the message.", body = ErrorBody),
        (status = 403, description = "`forbidden`: viewers read only.", body = ErrorBody), (status = 409, description = "`netbox_not_configured`: the workspace has no NetBox connection (`PUT /api/netbox`); `limit_reached`: the import would leave the workspace with more saved sessions than `[inventory] max_sessions` (nothing is imported; a job ends failed with this error).", body = ErrorBody), (status = 502, description = "`netbox_unreachable`, `netbox_auth_failed`, `netbox_tls`, `netbox_error`: NetBox could not be asked or refused (NetBox's own `detail` is passed on).", body = ErrorBody)))]
pub async fn import_devices(
    State(app): State<Arc<App>>,
    ws: Workspace,
    ApiJson(req): ApiJson<ImportRequest>,
) -> ApiResult<axum::response::Response> {
    check_request(&app, &req)?;
    let map = mapping(&app)?;
    let client = client_for(&app, &ws.scope.key).await?;
    if req.dry_run {
        let _turn = IMPORTS.acquire().await.map_err(ApiError::internal)?;
        let devices = fetch(&app, &client, &req, &|_, _| {}).await?;
        let scope = ws.scope;
        let limits = app.cfg.inventory;
        let outcome = app
            .store
            .write(move |tx| -> Result<(), DryRun> {
                Err(
                    match import::apply(tx, &scope, &devices, &map, &req, &limits) {
                        Ok(r) => DryRun::Planned(r),
                        Err(e) => DryRun::Refused(e),
                    },
                )
            })
            .await;
        return match outcome {
            Err(DryRun::Planned(r)) => Ok(Json(r).into_response()),
            Err(DryRun::Refused(e)) => Err(e.into()),
            Ok(()) => Err(ApiError::internal("dry run committed nothing")),
        };
    }
    // Imports wait their turn (two at a time) as live jobs: bounded like every job.
    let _gate = crate::jobs::routes::admit(&app, &ws.scope.key, 1).await?;
    let job = Job {
        id: store::new_id(),
        kind: JobType::NetboxImport,
        state: JobState::Queued,
        workspace: ws.scope.key.clone(),
        owner: ws.scope.actor.clone(),
        owner_role: ws.user.role,
        commands: Vec::new(),
        concurrency: 1,
        created_at: store::now(),
        finished_at: None,
        cancel_requested: false,
        schedule_id: None,
        retry_of: None,
        targets: vec![Target::queued(EXTERNAL_TARGET.to_string())],
    };
    let (j, entry) = (
        job.clone(),
        ws.scope
            .audit("job.start")
            .detail(format!("netbox_import job {}", job.id)),
    );
    app.store
        .write(move |tx| -> Result<(), NetboxError> {
            model::put(tx, &j).map_err(|e| NetboxError::Status {
                status: 500,
                message: e.to_string(),
            })?;
            crate::audit::record(tx, entry)?;
            Ok(())
        })
        .await?;
    let id = job.id.clone();
    let ext = ExternalJob::start(&app, job).await;
    let span = tracing::info_span!("netbox_import", job = %id);
    tokio::spawn(tracing::Instrument::instrument(
        run_import(app.clone(), ext, client, ws.scope, req, map),
        span,
    ));
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

fn event(phase: &str, fields: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event".into(), json!("netbox_import"));
    m.insert("phase".into(), json!(phase));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    m
}

/// Refused rows kept in the job record (the dry run lists them all).
const KEEP_REFUSED: usize = 500;

/// The job's work: fetch, then apply every importable row in one transaction.
async fn run_import(
    app: Arc<App>,
    ext: ExternalJob,
    client: NetboxClient,
    scope: Scope,
    req: ImportRequest,
    map: Mapping,
) {
    let started = std::time::Instant::now();
    let result: Result<ImportReport, NetboxError> = async {
        ext.progress(PROGRESS_KEY, event("queued", json!({})));
        let _turn = IMPORTS
            .acquire()
            .await
            .map_err(|e| NetboxError::TooMany(e.to_string()))?;
        let on_page = |done: usize, total: usize| {
            ext.progress(
                PROGRESS_KEY,
                event(
                    "fetching",
                    json!({"pages_done": done, "pages_total": total}),
                ),
            )
        };
        // A cancel stops the fetch at once (nothing is written before it ends).
        let cancelled =
            || NetboxError::invalid("cancelled", "cancelled before anything was applied");
        let devices = tokio::select! {
            d = fetch(&app, &client, &req, &on_page) => d?,
            _ = ext.until_cancelled() => return Err(cancelled()),
        };
        if ext.cancelled() {
            return Err(cancelled());
        }
        ext.progress(
            PROGRESS_KEY,
            event("applying", json!({"devices": devices.len()})),
        );
        let limits = app.cfg.inventory;
        let report = app
            .store
            .write(move |tx| import::apply(tx, &scope, &devices, &map, &req, &limits))
            .await?;
        Ok(report)
    }
    .await;
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(mut r) => {
            let counts = json!({
                "created": r.created.len(),
                "updated": r.updated.len(),
                "refused": r.refused.len(),
                "duration_ms": ms,
            });
            tracing::info!(%counts, "NetBox import applied");
            ext.progress(PROGRESS_KEY, event("done", counts.clone()));
            r.refused.truncate(KEEP_REFUSED);
            let summary = json!({
                "created": r.created.len(),
                "updated": r.updated.len(),
                "refused": r.refused,
                "duration_ms": ms,
            });
            ext.finish(Ok(summary.to_string())).await;
        }
        Err(e) => {
            tracing::info!(error = %e, "NetBox import failed; nothing applied");
            ext.progress(
                PROGRESS_KEY,
                event(
                    "failed",
                    json!({"code": e.code(), "message": e.to_string()}),
                ),
            );
            ext.finish(Err(TargetError {
                code: e.code().to_string(),
                message: e.to_string(),
            }))
            .await;
        }
    }
}
