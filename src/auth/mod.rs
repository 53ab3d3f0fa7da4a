//! Users, roles, password hashing, login sessions and failed-login throttling.

mod activity;
mod extract;
mod hashing;
mod limiter;
pub mod routes;
mod session_store;

pub use activity::{login_state, refresh_login, LoginState};
pub use extract::{
    client_ip, origin_allowed, request_is_https_parts, AdminUser, CurrentUser, LoginInfo, LOGIN_KEY,
};
pub use limiter::LoginLimiter;
pub use session_store::RedbSessionStore;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::store::{self, StoreError, HTTP_SESSIONS, USERS};

/// What a user may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only: can watch jobs and configs, can open no terminal.
    Viewer,
    /// Terminals, tools and jobs on their own inventory.
    Operator,
    /// Users, tool allow-list, schedules, everyone's audit.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_at: i64,
}

/// Errors of user management.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid username: use 1-64 letters, digits, '.', '_' or '-'")]
    BadUsername,
    #[error("password too short: at least 8 characters")]
    WeakPassword,
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("refusing to remove or demote the last admin")]
    LastAdmin,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::from_redb_errors!(UserError);

impl From<UserError> for crate::error::ApiError {
    fn from(e: UserError) -> Self {
        use crate::error::ApiError;
        match e {
            UserError::BadUsername => ApiError::bad_request("invalid_username", e.to_string()),
            UserError::WeakPassword => ApiError::bad_request("weak_password", e.to_string()),
            UserError::Exists(_) => ApiError::conflict("user_exists", e.to_string()),
            UserError::NotFound(_) => ApiError::not_found("user"),
            UserError::LastAdmin => ApiError::conflict("last_admin", e.to_string()),
            UserError::Hash(_) | UserError::Store(_) => ApiError::internal(e),
        }
    }
}

/// Checks a username's syntax.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Hashes a password with argon2id and a fresh salt. CPU-heavy: call off the async runtime.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Verifies a password against a PHC string. CPU-heavy: call off the async runtime.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A hash of a random password, verified against when the username does not exist so
/// that a failed login takes the same time either way.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(store::new_id().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub fn get_user(tx: &ReadTransaction, username: &str) -> Result<Option<User>, StoreError> {
    let table = tx.open_table(USERS)?;
    match table.get(username)? {
        Some(v) => Ok(Some(store::decode(v.value())?)),
        None => Ok(None),
    }
}

pub fn list_users(tx: &ReadTransaction) -> Result<Vec<User>, StoreError> {
    let table = tx.open_table(USERS)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, v) = row?;
        out.push(store::decode(v.value())?);
    }
    Ok(out)
}

fn admin_count(tx: &WriteTransaction) -> Result<usize, StoreError> {
    let table = tx.open_table(USERS)?;
    let mut n = 0;
    for row in table.iter()? {
        let (_, v) = row?;
        let u: User = store::decode(v.value())?;
        if u.role == Role::Admin {
            n += 1;
        }
    }
    Ok(n)
}

/// Creates a user; `password_hash` comes from [`hash_password`].
pub fn create_user(
    tx: &WriteTransaction,
    username: &str,
    password_hash: String,
    role: Role,
    actor: &str,
) -> Result<User, UserError> {
    if !valid_username(username) {
        return Err(UserError::BadUsername);
    }
    let mut table = tx.open_table(USERS)?;
    if table.get(username)?.is_some() {
        return Err(UserError::Exists(username.into()));
    }
    let user = User {
        username: username.into(),
        role,
        password_hash,
        created_at: store::now(),
    };
    table.insert(username, store::encode(&user)?.as_slice())?;
    drop(table);
    audit::record(
        tx,
        audit::Entry::new(actor, "user.create")
            .target(username)
            .detail(role.as_str()),
    )?;
    Ok(user)
}

/// What [`update_user`] changed.
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub user: User,
    pub password_changed: bool,
    /// The role is different from before (setting the same role is no change).
    pub role_changed: bool,
}

/// Changes a user's password and/or role.
pub fn update_user(
    tx: &WriteTransaction,
    username: &str,
    password_hash: Option<String>,
    role: Option<Role>,
    actor: &str,
) -> Result<UserUpdate, UserError> {
    let mut user: User = {
        let table = tx.open_table(USERS)?;
        let v = table.get(username)?;
        match v {
            Some(v) => store::decode(v.value())?,
            None => return Err(UserError::NotFound(username.into())),
        }
    };
    let old_role = user.role;
    if let Some(role) = role {
        if user.role == Role::Admin && role != Role::Admin && admin_count(tx)? <= 1 {
            return Err(UserError::LastAdmin);
        }
        user.role = role;
    }
    let changed_password = password_hash.is_some();
    if let Some(h) = password_hash {
        user.password_hash = h;
    }
    tx.open_table(USERS)?
        .insert(username, store::encode(&user)?.as_slice())?;
    let what = match (changed_password, role) {
        (true, Some(r)) => format!("password, role={}", r.as_str()),
        (true, None) => "password".to_string(),
        (false, Some(r)) => format!("role={}", r.as_str()),
        (false, None) => "nothing".to_string(),
    };
    audit::record(
        tx,
        audit::Entry::new(actor, "user.update")
            .target(username)
            .detail(what),
    )?;
    if changed_password {
        // A new password ends every existing login of that user.
        delete_sessions_of(tx, username)?;
    }
    Ok(UserUpdate {
        role_changed: user.role != old_role,
        user,
        password_changed: changed_password,
    })
}

/// Deletes a user, their personal inventory, their team memberships and their login
/// sessions (team workspaces keep their objects).
pub fn delete_user(tx: &WriteTransaction, username: &str, actor: &str) -> Result<(), UserError> {
    let user: User = {
        let table = tx.open_table(USERS)?;
        let v = table.get(username)?;
        match v {
            Some(v) => store::decode(v.value())?,
            None => return Err(UserError::NotFound(username.into())),
        }
    };
    if user.role == Role::Admin && admin_count(tx)? <= 1 {
        return Err(UserError::LastAdmin);
    }
    tx.open_table(USERS)?.remove(username)?;
    crate::inventory::delete_all_of(tx, username)?;
    crate::workspace::forget_user(tx, username)?;
    delete_sessions_of(tx, username)?;
    audit::record(tx, audit::Entry::new(actor, "user.delete").target(username))?;
    Ok(())
}

/// Removes every stored login session belonging to `username`.
fn delete_sessions_of(tx: &WriteTransaction, username: &str) -> Result<(), StoreError> {
    let mut table = tx.open_table(HTTP_SESSIONS)?;
    let mut doomed = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        if session_store::record_username(v.value()).as_deref() == Some(username) {
            doomed.push(k.value().to_string());
        }
    }
    for id in doomed {
        table.remove(id.as_str())?;
    }
    Ok(())
}

/// On first start with no users, creates `admin` with `OPSGATE_ADMIN_PASSWORD` or a random
/// password. Returns the generated password (to print once), if one was generated.
pub fn bootstrap_admin(
    store: &store::Store,
    from_env: Option<String>,
) -> Result<Option<String>, UserError> {
    let empty = store.read_blocking(|tx| -> Result<bool, StoreError> {
        Ok(tx.open_table(USERS)?.is_empty()?)
    })?;
    if !empty {
        return Ok(None);
    }
    let (password, generated) = match from_env {
        Some(p) if !p.is_empty() => (p, false),
        _ => (
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                rand::random::<[u8; 15]>(),
            ),
            true,
        ),
    };
    let hash = hash_password(&password)?;
    store.write_blocking(|tx| create_user(tx, "admin", hash, Role::Admin, "system"))?;
    Ok(generated.then_some(password))
}

use redb::ReadableTableMetadata as _;
