//! Projects and apps as stored in redb (`PROJECTS`, `APPS`, keyed (workspace key, id)),
//! their validation, and the state machine. Every change is one write transaction with
//! its audit entry, so two requests racing see each other's result, never half of it.
//!
//! The state machine's transitions are in `state`.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::remote;
use super::AppsError;
use crate::auth::Role;
use crate::config::AppsConfig;
use crate::inventory::{DeviceType, SavedSession};
use crate::store::{self, APPS, PROJECTS, SAVED_SESSIONS};
use crate::workspace::Scope;

/// A group of apps (e.g. "staging", "demo").
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `POST /api/projects` and `PUT /api/projects/{id}` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// How an app is started and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// `docker compose up -d` / `down` in `cd_path`.
    #[default]
    Compose,
    /// `systemctl start|stop UNIT`.
    Systemd,
}

/// An app's state (see the module comment for the transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
}

/// An app: a compose project (or systemd unit) on a server.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManagedApp {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// A saved session of device type `linux` in the same workspace.
    pub server_id: String,
    /// Absolute directory on the server (the compose project's).
    pub cd_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_url: Option<String>,
    /// Minutes after a start when the app is stopped again; 0 = never.
    pub auto_stop_minutes: u32,
    pub kind: AppKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub status: AppStatus,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub stopped_at: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the sweeper stops it (Unix seconds), while running with auto-stop on.
    #[serde(default)]
    pub auto_stop_at: Option<i64>,
    /// The job of the current (or last) start or stop.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Who started it last, and their role then: the auto-stop acts as them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by_role: Option<Role>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `POST /api/apps` and `PUT /api/apps/{id}` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    pub name: String,
    pub project_id: String,
    pub server_id: String,
    #[serde(default)]
    pub cd_path: Option<String>,
    #[serde(default)]
    pub app_url: Option<String>,
    #[serde(default)]
    pub auto_stop_minutes: Option<u32>,
    #[serde(default)]
    pub kind: Option<AppKind>,
    #[serde(default)]
    pub unit: Option<String>,
}

/// The longest auto-stop, in minutes (30 days).
pub const MAX_AUTO_STOP_MINUTES: u32 = 30 * 24 * 60;

pub(super) fn invalid(code: &'static str, m: impl Into<String>) -> AppsError {
    AppsError::Invalid {
        code,
        message: m.into(),
    }
}

fn check_name(name: &str) -> Result<String, AppsError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_name",
            "name must be 1-100 printable characters",
        ));
    }
    Ok(n.to_string())
}

pub(super) fn check_id(id: &str, what: &str) -> Result<(), AppsError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AppsError::NotFound(match what {
            "project" => "project",
            "server" => "server",
            _ => "app",
        }));
    }
    Ok(())
}

fn project_of(input: ProjectInput, old: Option<&Project>) -> Result<Project, AppsError> {
    let name = check_name(&input.name)?;
    let description = input.description.unwrap_or_default();
    if description.chars().count() > 2000 {
        return Err(invalid(
            "invalid_description",
            "description is at most 2000 characters",
        ));
    }
    let now = store::now();
    Ok(Project {
        id: old.map_or_else(store::new_id, |o| o.id.clone()),
        name,
        description,
        created_at: old.map_or(now, |o| o.created_at),
        updated_at: now,
    })
}

/// Lists the projects of a workspace, by name.
pub fn list_projects(tx: &ReadTransaction, key: &str) -> Result<Vec<Project>, AppsError> {
    let mut v: Vec<Project> = store::list_owned(&tx.open_table(PROJECTS)?, key)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    v.sort_by_key(|p| p.name.to_lowercase());
    Ok(v)
}

/// Creates a project.
pub fn create_project(
    tx: &WriteTransaction,
    ws: &Scope,
    input: ProjectInput,
    cfg: &AppsConfig,
) -> Result<Project, AppsError> {
    let p = project_of(input, None)?;
    let mut t = tx.open_table(PROJECTS)?;
    if store::count_owned(&t, &ws.key)? >= cfg.max_projects {
        return Err(AppsError::Conflict {
            code: "limit_reached",
            message: format!("at most {} projects per workspace", cfg.max_projects),
        });
    }
    t.insert(
        (ws.key.as_str(), p.id.as_str()),
        store::encode(&p)?.as_slice(),
    )?;
    drop(t);
    crate::audit::record(tx, ws.audit("project.create").target(&p.id).detail(&p.name))?;
    Ok(p)
}

/// Renames / redescribes a project.
pub fn update_project(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
    input: ProjectInput,
) -> Result<Project, AppsError> {
    check_id(id, "project")?;
    let mut t = tx.open_table(PROJECTS)?;
    let old: Project = store::get_owned(&t, &ws.key, id)?.ok_or(AppsError::NotFound("project"))?;
    let p = project_of(input, Some(&old))?;
    t.insert((ws.key.as_str(), id), store::encode(&p)?.as_slice())?;
    drop(t);
    crate::audit::record(tx, ws.audit("project.update").target(id).detail(&p.name))?;
    Ok(p)
}

/// Deletes a project; with apps, only with `cascade` (and only if none is busy or
/// running: a running app would be left with nobody to stop it).
pub fn delete_project(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
    cascade: bool,
) -> Result<usize, AppsError> {
    check_id(id, "project")?;
    if store::get_owned::<Project, _>(&tx.open_table(PROJECTS)?, &ws.key, id)?.is_none() {
        return Err(AppsError::NotFound("project"));
    }
    let apps: Vec<ManagedApp> = list_apps_tx(tx, &ws.key)?
        .into_iter()
        .filter(|a| a.project_id == id)
        .collect();
    if !apps.is_empty() && !cascade {
        return Err(AppsError::Conflict {
            code: "project_not_empty",
            message: format!(
                "the project has {} app(s); delete them first or pass ?cascade=true",
                apps.len()
            ),
        });
    }
    if let Some(a) = apps
        .iter()
        .find(|a| !matches!(a.status, AppStatus::Stopped | AppStatus::Failed))
    {
        return Err(AppsError::Conflict {
            code: "app_running",
            message: format!("app {:?} is {:?}; stop it first", a.name, a.status),
        });
    }
    {
        let mut t = tx.open_table(APPS)?;
        for a in &apps {
            t.remove((ws.key.as_str(), a.id.as_str()))?;
        }
    }
    tx.open_table(PROJECTS)?.remove((ws.key.as_str(), id))?;
    crate::audit::record(
        tx,
        ws.audit("project.delete")
            .target(id)
            .detail(format!("with {} app(s)", apps.len())),
    )?;
    Ok(apps.len())
}

fn list_apps_tx(tx: &WriteTransaction, key: &str) -> Result<Vec<ManagedApp>, AppsError> {
    Ok(store::list_owned(&tx.open_table(APPS)?, key)?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// Lists the apps of a workspace, by name.
pub fn list_apps(tx: &ReadTransaction, key: &str) -> Result<Vec<ManagedApp>, AppsError> {
    let mut v: Vec<ManagedApp> = store::list_owned(&tx.open_table(APPS)?, key)?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    v.sort_by_key(|a| a.name.to_lowercase());
    Ok(v)
}

/// One app.
pub fn get_app(tx: &ReadTransaction, key: &str, id: &str) -> Result<ManagedApp, AppsError> {
    check_id(id, "app")?;
    store::get_owned(&tx.open_table(APPS)?, key, id)?.ok_or(AppsError::NotFound("app"))
}

/// Every app in every workspace with its workspace key (for the sweeper and start-up).
pub fn all_apps(tx: &ReadTransaction) -> Result<Vec<(String, ManagedApp)>, AppsError> {
    let mut out = Vec::new();
    for row in tx.open_table(APPS)?.iter()? {
        let (k, v) = row?;
        out.push((k.value().0.to_string(), store::decode(v.value())?));
    }
    Ok(out)
}

/// Checks an app body against the workspace (project and server exist, the server is
/// `linux`) and builds the record.
fn app_of(
    tx: &WriteTransaction,
    ws: &Scope,
    input: AppInput,
    old: Option<&ManagedApp>,
) -> Result<ManagedApp, AppsError> {
    let name = check_name(&input.name)?;
    let kind = input.kind.unwrap_or_default();
    let cd_path = input.cd_path.unwrap_or_default();
    match kind {
        AppKind::Compose => remote::check_cd_path(&cd_path)
            .map_err(|e| invalid("invalid_cd_path", e.to_string()))?,
        AppKind::Systemd if !cd_path.is_empty() => remote::check_cd_path(&cd_path)
            .map_err(|e| invalid("invalid_cd_path", e.to_string()))?,
        AppKind::Systemd => {}
    }
    let unit = match (kind, input.unit) {
        (AppKind::Systemd, Some(u)) => {
            remote::check_unit(&u).map_err(|e| invalid("invalid_unit", e.to_string()))?;
            Some(u)
        }
        (AppKind::Systemd, None) => {
            return Err(invalid("invalid_unit", "a systemd app needs a unit"))
        }
        (AppKind::Compose, Some(_)) => {
            return Err(invalid("invalid_unit", "unit is only for kind \"systemd\""))
        }
        (AppKind::Compose, None) => None,
    };
    let app_url = input.app_url.filter(|u| !u.trim().is_empty());
    if let Some(u) = &app_url {
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && u.len() <= 2048
            && !u.chars().any(|c| c.is_control() || c.is_whitespace());
        if !ok {
            return Err(invalid(
                "invalid_app_url",
                "app_url must be an http:// or https:// URL of at most 2048 characters",
            ));
        }
    }
    let auto_stop_minutes = input.auto_stop_minutes.unwrap_or(0);
    if auto_stop_minutes > MAX_AUTO_STOP_MINUTES {
        return Err(invalid(
            "invalid_auto_stop",
            format!("auto_stop_minutes must be 0 (never) to {MAX_AUTO_STOP_MINUTES}"),
        ));
    }
    check_id(&input.project_id, "project")?;
    if store::get_owned::<Project, _>(&tx.open_table(PROJECTS)?, &ws.key, &input.project_id)?
        .is_none()
    {
        return Err(AppsError::NotFound("project"));
    }
    check_id(&input.server_id, "server")?;
    let server = saved_session(tx, &ws.key, &input.server_id)?;
    if server.device_type != DeviceType::Linux {
        return Err(invalid(
            "invalid_server",
            "server_id must be a saved session of device type linux",
        ));
    }
    let now = store::now();
    let mut app = match old {
        Some(o) => o.clone(),
        None => ManagedApp {
            id: store::new_id(),
            name: String::new(),
            project_id: String::new(),
            server_id: String::new(),
            cd_path: String::new(),
            app_url: None,
            auto_stop_minutes: 0,
            kind,
            unit: None,
            status: AppStatus::Stopped,
            started_at: None,
            stopped_at: None,
            last_error: None,
            auto_stop_at: None,
            job_id: None,
            started_by: None,
            started_by_role: None,
            created_at: now,
            updated_at: now,
        },
    };
    app.name = name;
    app.project_id = input.project_id;
    app.server_id = input.server_id;
    app.cd_path = cd_path;
    app.app_url = app_url;
    app.auto_stop_minutes = auto_stop_minutes;
    app.kind = kind;
    app.unit = unit;
    app.updated_at = now;
    Ok(app)
}

pub(super) fn saved_session(
    tx: &WriteTransaction,
    key: &str,
    id: &str,
) -> Result<SavedSession, AppsError> {
    store::get_owned(&tx.open_table(SAVED_SESSIONS)?, key, id)?.ok_or(AppsError::NotFound("server"))
}

pub(super) fn put_app(tx: &WriteTransaction, key: &str, app: &ManagedApp) -> Result<(), AppsError> {
    tx.open_table(APPS)?
        .insert((key, app.id.as_str()), store::encode(app)?.as_slice())?;
    Ok(())
}

/// Creates an app (stopped).
pub fn create_app(
    tx: &WriteTransaction,
    ws: &Scope,
    input: AppInput,
    cfg: &AppsConfig,
) -> Result<ManagedApp, AppsError> {
    if store::count_owned(&tx.open_table(APPS)?, &ws.key)? >= cfg.max_apps {
        return Err(AppsError::Conflict {
            code: "limit_reached",
            message: format!("at most {} apps per workspace", cfg.max_apps),
        });
    }
    let app = app_of(tx, ws, input, None)?;
    put_app(tx, &ws.key, &app)?;
    crate::audit::record(tx, ws.audit("app.create").target(&app.id).detail(&app.name))?;
    Ok(app)
}

/// Changes an app. Where and how it runs (server, directory, kind, unit) may change only
/// while it is stopped or failed: otherwise the stop would go elsewhere than the start.
pub fn update_app(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
    input: AppInput,
    minute_secs: i64,
) -> Result<ManagedApp, AppsError> {
    check_id(id, "app")?;
    let old: ManagedApp =
        store::get_owned(&tx.open_table(APPS)?, &ws.key, id)?.ok_or(AppsError::NotFound("app"))?;
    let mut app = app_of(tx, ws, input, Some(&old))?;
    let moved = app.server_id != old.server_id
        || app.cd_path != old.cd_path
        || app.kind != old.kind
        || app.unit != old.unit;
    match old.status {
        AppStatus::Starting | AppStatus::Stopping => return Err(busy(&old)),
        AppStatus::Running if moved => {
            return Err(AppsError::Conflict {
                code: "app_running",
                message: "stop the app before changing its server, cd_path, kind or unit".into(),
            })
        }
        _ => {}
    }
    if app.status == AppStatus::Running && app.auto_stop_minutes != old.auto_stop_minutes {
        // A new auto-stop applies from the start that is already running.
        app.auto_stop_at = deadline(
            app.started_at.unwrap_or_else(store::now),
            app.auto_stop_minutes,
            minute_secs,
        );
    }
    put_app(tx, &ws.key, &app)?;
    crate::audit::record(tx, ws.audit("app.update").target(id).detail(&app.name))?;
    Ok(app)
}

/// Deletes an app that is stopped or failed.
pub fn delete_app(tx: &WriteTransaction, ws: &Scope, id: &str) -> Result<(), AppsError> {
    check_id(id, "app")?;
    let old: ManagedApp =
        store::get_owned(&tx.open_table(APPS)?, &ws.key, id)?.ok_or(AppsError::NotFound("app"))?;
    match old.status {
        AppStatus::Starting | AppStatus::Stopping => return Err(busy(&old)),
        AppStatus::Running => {
            return Err(AppsError::Conflict {
                code: "app_running",
                message: "stop the app before deleting it".into(),
            })
        }
        _ => {}
    }
    tx.open_table(APPS)?.remove((ws.key.as_str(), id))?;
    crate::audit::record(tx, ws.audit("app.delete").target(id).detail(&old.name))?;
    Ok(())
}

pub(super) fn busy(app: &ManagedApp) -> AppsError {
    AppsError::Conflict {
        code: "app_busy",
        message: format!(
            "the app is {} (job {}); wait for it to finish",
            if app.status == AppStatus::Starting {
                "starting"
            } else {
                "stopping"
            },
            app.job_id.as_deref().unwrap_or("?")
        ),
    }
}

/// `from` plus `minutes` minutes of `minute_secs` seconds each; `None` for 0 (never).
pub(super) fn deadline(from: i64, minutes: u32, minute_secs: i64) -> Option<i64> {
    (minutes > 0).then(|| from + i64::from(minutes) * minute_secs)
}
