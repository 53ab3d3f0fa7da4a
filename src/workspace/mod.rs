//! Workspaces: where inventory objects live, and teams.
//!
//! Every user has a personal workspace; admins create teams, each with a shared
//! workspace and a role per member (`admin`, `operator`, `viewer`). Owned tables are
//! keyed (workspace key, id), where the key is the username for a personal workspace and
//! `team:<id>` for a team's (usernames cannot contain `:`, so the two never meet).
//! Credential secrets are sealed to the workspace key, so ciphertext moved between
//! workspaces does not open.
//!
//! Inside a team the membership role decides: viewers read, operators also write the
//! inventory and open terminals, team admins also manage members. A global admin manages
//! teams and members but, without a membership, sees none of a team's objects (an admin
//! neither reads secrets). Someone outside a team gets `404` for it, as if it did not exist.

mod extract;
pub mod routes;

pub use extract::{selector_of, Workspace};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::auth::Role;
use crate::error::ApiError;
use crate::inventory::SavedSession;
use crate::store::{self, StoreError, MEMBERS, SAVED_SESSIONS, TEAMS};

/// The selector value (`?workspace=` / `X-Opsgate-Workspace`) of the caller's personal
/// workspace; absent or empty means the same.
pub const PERSONAL: &str = "personal";

/// `closed` reason of a channel that used a team's objects when its user was removed from
/// the team or made a viewer there.
pub const ACCESS_REVOKED: &str = "access_revoked";

const TEAM_PREFIX: &str = "team:";

/// The store key of team `id`'s workspace.
pub fn team_key(id: &str) -> String {
    format!("{TEAM_PREFIX}{id}")
}

/// The team id of a workspace key, or `None` for a personal workspace.
pub fn team_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(TEAM_PREFIX)
}

/// Whose objects an operation touches and who is acting: handed to every inventory
/// function, so the workspace key and the audit actor can never be mixed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The workspace key (first component of every owned table's key).
    pub key: String,
    /// The user acting (the audit log's actor).
    pub actor: String,
}

impl Scope {
    /// `username`'s personal workspace, acted on by that user.
    pub fn personal(username: &str) -> Scope {
        Scope {
            key: username.to_string(),
            actor: username.to_string(),
        }
    }

    /// Team `team_id`'s workspace, acted on by `actor`.
    pub fn team(team_id: &str, actor: &str) -> Scope {
        Scope {
            key: team_key(team_id),
            actor: actor.to_string(),
        }
    }

    /// The team id, if this is a team workspace.
    pub fn team_id(&self) -> Option<&str> {
        team_of_key(&self.key)
    }

    /// An audit entry by the actor, naming the workspace when it is a team's.
    pub fn audit(&self, action: &'static str) -> audit::Entry {
        audit::Entry::new(&self.actor, action).workspace(self.team_id().map(str::to_string))
    }
}

/// A team.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A membership record (the key is (team id, username)).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Membership {
    pub role: Role,
    pub added_at: i64,
}

/// A member as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub username: String,
    pub role: Role,
    pub added_at: i64,
}

/// Errors of team management.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Unknown, or not visible to the caller: the same answer either way.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::from_redb_errors!(WorkspaceError);

impl From<WorkspaceError> for ApiError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Invalid { code, message } => ApiError::bad_request(code, message),
            WorkspaceError::NotFound(what) => ApiError::not_found(what),
            WorkspaceError::Forbidden(m) => ApiError::forbidden(m),
            WorkspaceError::Conflict { code, message } => ApiError::conflict(code, message),
            WorkspaceError::Store(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::inventory::InventoryError> for WorkspaceError {
    fn from(e: crate::inventory::InventoryError) -> Self {
        match e {
            crate::inventory::InventoryError::Store(s) => WorkspaceError::Store(s),
            other => WorkspaceError::Store(StoreError::Task(other.to_string())),
        }
    }
}

fn check_team_name(name: &str) -> Result<String, WorkspaceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(WorkspaceError::Invalid {
            code: "invalid_name",
            message: "team name must be 1-100 printable characters".into(),
        });
    }
    Ok(name.to_string())
}

/// Read access to the team tables from either kind of transaction.
pub trait TeamsRead {
    /// A team by id.
    fn team(&self, id: &str) -> Result<Option<Team>, WorkspaceError>;
    /// `username`'s role in team `team_id`, if a member.
    fn role_in(&self, team_id: &str, username: &str) -> Result<Option<Role>, WorkspaceError>;
    /// `username`'s global role now (`None`: no such user any more).
    fn global_role(&self, username: &str) -> Result<Option<Role>, WorkspaceError>;
}

macro_rules! teams_read {
    ($t:ty) => {
        impl TeamsRead for $t {
            fn team(&self, id: &str) -> Result<Option<Team>, WorkspaceError> {
                match self.open_table(TEAMS)?.get(id)? {
                    Some(v) => Ok(Some(store::decode(v.value())?)),
                    None => Ok(None),
                }
            }
            fn role_in(
                &self,
                team_id: &str,
                username: &str,
            ) -> Result<Option<Role>, WorkspaceError> {
                match self.open_table(MEMBERS)?.get((team_id, username))? {
                    Some(v) => Ok(Some(store::decode::<Membership>(v.value())?.role)),
                    None => Ok(None),
                }
            }
            fn global_role(&self, username: &str) -> Result<Option<Role>, WorkspaceError> {
                match self.open_table(store::USERS)?.get(username)? {
                    Some(v) => Ok(Some(store::decode::<crate::auth::User>(v.value())?.role)),
                    None => Ok(None),
                }
            }
        }
    };
}
teams_read!(ReadTransaction);
teams_read!(WriteTransaction);

/// `username`'s role in team `team_id`, if a member.
pub fn role_in<T: TeamsRead>(
    tx: &T,
    team_id: &str,
    username: &str,
) -> Result<Option<Role>, WorkspaceError> {
    tx.role_in(team_id, username)
}

/// Every team, by name.
pub fn list_teams(tx: &ReadTransaction) -> Result<Vec<Team>, WorkspaceError> {
    let mut out = Vec::new();
    for row in tx.open_table(TEAMS)?.iter()? {
        let (_, v) = row?;
        out.push(store::decode::<Team>(v.value())?);
    }
    out.sort_by_key(|t| t.name.to_lowercase());
    Ok(out)
}

/// The teams `username` belongs to, with their role, by name. Scans the membership
/// table: teams and members are few (a team per group of people, not per object).
pub fn teams_of(tx: &ReadTransaction, username: &str) -> Result<Vec<(Team, Role)>, WorkspaceError> {
    let mut out = Vec::new();
    let members = tx.open_table(MEMBERS)?;
    for row in members.iter()? {
        let (k, v) = row?;
        let (team_id, user) = k.value();
        if user != username {
            continue;
        }
        let m: Membership = store::decode(v.value())?;
        if let Some(team) = tx.team(team_id)? {
            out.push((team, m.role));
        }
    }
    out.sort_by_key(|(t, _)| t.name.to_lowercase());
    Ok(out)
}

/// The members of a team, by username.
pub fn members_of<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    members: &T,
    team_id: &str,
) -> Result<Vec<MemberView>, WorkspaceError> {
    let mut out = Vec::new();
    for row in members.range((team_id, "")..)? {
        let (k, v) = row?;
        let (t, username) = k.value();
        if t != team_id {
            break;
        }
        let m: Membership = store::decode(v.value())?;
        out.push(MemberView {
            username: username.to_string(),
            role: m.role,
            added_at: m.added_at,
        });
    }
    Ok(out)
}

fn name_taken(
    tx: &WriteTransaction,
    name: &str,
    except: Option<&str>,
) -> Result<bool, WorkspaceError> {
    for row in tx.open_table(TEAMS)?.iter()? {
        let (_, v) = row?;
        let t: Team = store::decode(v.value())?;
        if t.name.to_lowercase() == name.to_lowercase() && Some(t.id.as_str()) != except {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates a team (no members yet).
pub fn create_team(tx: &WriteTransaction, name: &str, actor: &str) -> Result<Team, WorkspaceError> {
    let name = check_team_name(name)?;
    if name_taken(tx, &name, None)? {
        return Err(WorkspaceError::Conflict {
            code: "team_exists",
            message: format!("a team named {name:?} exists"),
        });
    }
    let team = Team {
        id: store::new_id(),
        name,
        created_at: store::now(),
    };
    tx.open_table(TEAMS)?
        .insert(team.id.as_str(), store::encode(&team)?.as_slice())?;
    audit::record(
        tx,
        audit::Entry::new(actor, "team.create")
            .target(&team.id)
            .detail(&team.name)
            .workspace(Some(team.id.clone())),
    )?;
    Ok(team)
}

/// Renames a team.
pub fn rename_team(
    tx: &WriteTransaction,
    id: &str,
    name: &str,
    actor: &str,
) -> Result<Team, WorkspaceError> {
    let name = check_team_name(name)?;
    let mut team = tx.team(id)?.ok_or(WorkspaceError::NotFound("team"))?;
    if name_taken(tx, &name, Some(id))? {
        return Err(WorkspaceError::Conflict {
            code: "team_exists",
            message: format!("a team named {name:?} exists"),
        });
    }
    team.name = name;
    tx.open_table(TEAMS)?
        .insert(id, store::encode(&team)?.as_slice())?;
    audit::record(
        tx,
        audit::Entry::new(actor, "team.rename")
            .target(id)
            .detail(&team.name)
            .workspace(Some(id.to_string())),
    )?;
    Ok(team)
}

/// Deletes a team with its memberships. Without `cascade` its workspace must be empty
/// (nothing in any of [`store::WORKSPACE_TABLES`]: folders, saved sessions, credentials,
/// known hosts, NetBox settings, projects, apps, jobs, config versions, schedules, tool
/// executions), else 409 `team_not_empty` listing what is left; with `cascade` all of
/// them are deleted in the same transaction (nothing is left orphaned). Returns
/// what was deleted, e.g. `["3 jobs", "2 config versions"]`.
pub fn delete_team(
    tx: &WriteTransaction,
    id: &str,
    actor: &str,
    cascade: bool,
) -> Result<Vec<String>, WorkspaceError> {
    if tx.team(id)?.is_none() {
        return Err(WorkspaceError::NotFound("team"));
    }
    let key = team_key(id);
    let mut left = Vec::new();
    for def in store::WORKSPACE_TABLES {
        let mut table = tx.open_table(def)?;
        let n = if cascade {
            store::delete_owned(&mut table, &key)?
        } else {
            store::count_owned(&table, &key)?
        };
        // A job's target rows (and its summary row) are part of the job ("N jobs" says
        // it), a config version's index row part of the version, a host key's address
        // row part of the key, an execution's index row part of the execution.
        let name = redb::TableHandle::name(&def);
        let counted_elsewhere = name == redb::TableHandle::name(&store::JOB_TARGETS)
            || name == redb::TableHandle::name(&store::CONFIG_INDEX)
            || name == redb::TableHandle::name(&store::KNOWN_HOST_INDEX)
            || name == redb::TableHandle::name(&store::EXECUTION_INDEX);
        if n > 0 && !counted_elsewhere {
            left.push(format!(
                "{n} {}",
                redb::TableHandle::name(&def).replace('_', " ")
            ));
        }
    }
    if !left.is_empty() && !cascade {
        return Err(WorkspaceError::Conflict {
            code: "team_not_empty",
            message: format!(
                "the team's workspace still holds {}; delete them first or add ?cascade=true",
                left.join(", ")
            ),
        });
    }
    let members: Vec<String> = members_of(&tx.open_table(MEMBERS)?, id)?
        .into_iter()
        .map(|m| m.username)
        .collect();
    {
        let mut table = tx.open_table(MEMBERS)?;
        for u in &members {
            table.remove((id, u.as_str()))?;
        }
    }
    tx.open_table(TEAMS)?.remove(id)?;
    let mut entry = audit::Entry::new(actor, "team.delete")
        .target(id)
        .workspace(Some(id.to_string()));
    if !left.is_empty() {
        entry = entry.detail(format!("with {}", left.join(", ")));
    }
    audit::record(tx, entry)?;
    Ok(left)
}

/// Adds `username` to a team or changes their role; returns the new membership and the
/// role they had before, if any.
pub fn set_member(
    tx: &WriteTransaction,
    team_id: &str,
    username: &str,
    role: Role,
    actor: &str,
) -> Result<(MemberView, Option<Role>), WorkspaceError> {
    if tx.team(team_id)?.is_none() {
        return Err(WorkspaceError::NotFound("team"));
    }
    if tx.open_table(store::USERS)?.get(username)?.is_none() {
        return Err(WorkspaceError::NotFound("user"));
    }
    let mut table = tx.open_table(MEMBERS)?;
    let old: Option<Membership> = match table.get((team_id, username))? {
        Some(v) => Some(store::decode(v.value())?),
        None => None,
    };
    let m = Membership {
        role,
        added_at: old.map_or_else(store::now, |o| o.added_at),
    };
    table.insert((team_id, username), store::encode(&m)?.as_slice())?;
    drop(table);
    audit::record(
        tx,
        audit::Entry::new(actor, "team.member.set")
            .target(username)
            .detail(role.as_str())
            .workspace(Some(team_id.to_string())),
    )?;
    Ok((
        MemberView {
            username: username.to_string(),
            role,
            added_at: m.added_at,
        },
        old.map(|o| o.role),
    ))
}

/// Removes `username` from a team; returns the role they had.
pub fn remove_member(
    tx: &WriteTransaction,
    team_id: &str,
    username: &str,
    actor: &str,
) -> Result<Role, WorkspaceError> {
    if tx.team(team_id)?.is_none() {
        return Err(WorkspaceError::NotFound("team"));
    }
    let old = tx
        .open_table(MEMBERS)?
        .remove((team_id, username))?
        .map(|v| store::decode::<Membership>(v.value()))
        .transpose()?
        .ok_or(WorkspaceError::NotFound("member"))?;
    audit::record(
        tx,
        audit::Entry::new(actor, "team.member.remove")
            .target(username)
            .workspace(Some(team_id.to_string())),
    )?;
    Ok(old.role)
}

/// Removes every membership of a user (the user is being deleted).
pub fn forget_user(tx: &WriteTransaction, username: &str) -> Result<(), StoreError> {
    let mut table = tx.open_table(MEMBERS)?;
    let mut doomed = Vec::new();
    for row in table.iter()? {
        let (k, _) = row?;
        let (team, user) = k.value();
        if user == username {
            doomed.push(team.to_string());
        }
    }
    for team in doomed {
        table.remove((team.as_str(), username))?;
    }
    Ok(())
}

/// A saved session found for an `ssh` open, with the workspace it lives in and the
/// opener's role there.
#[derive(Debug, Clone)]
pub struct FoundSession {
    pub scope: Scope,
    pub role: Role,
    pub session: SavedSession,
}

/// Finds saved session `id` among the workspaces `username` may see: their personal one
/// (where their global role applies) first, then their teams (the membership role).
/// Session ids are random and unique, so at most one workspace holds it.
pub fn find_session(
    tx: &ReadTransaction,
    username: &str,
    global_role: Role,
    id: &str,
) -> Result<Option<FoundSession>, WorkspaceError> {
    let sessions = tx.open_table(SAVED_SESSIONS)?;
    if let Some(s) = store::get_owned::<SavedSession, _>(&sessions, username, id)? {
        return Ok(Some(FoundSession {
            scope: Scope::personal(username),
            role: global_role,
            session: s,
        }));
    }
    for (team, role) in teams_of(tx, username)? {
        let scope = Scope::team(&team.id, username);
        if let Some(s) = store::get_owned::<SavedSession, _>(&sessions, &scope.key, id)? {
            return Ok(Some(FoundSession {
                scope,
                role,
                session: s,
            }));
        }
    }
    Ok(None)
}

/// The role `scope`'s actor has in its workspace now, read from the store: the global
/// role in their personal workspace, the membership role in a team's (`None` if the user
/// is gone or no longer a member). Work that outlives the request that started it (a
/// schedule, a job's later targets) checks this, not the role it was started with: a
/// user demoted to viewer kept running their personal schedules every minute.
pub fn current_role<T: TeamsRead>(tx: &T, scope: &Scope) -> Result<Option<Role>, WorkspaceError> {
    match scope.team_id() {
        None => tx.global_role(&scope.actor),
        Some(team) => tx.role_in(team, &scope.actor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_in_a_personal_workspace_is_the_users_role_now() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("database");
        let tx = db.begin_write().expect("write");
        let personal = Scope::personal("ann");
        crate::auth::create_user(&tx, "ann", "hash".into(), Role::Operator, "admin")
            .expect("create");
        assert_eq!(
            current_role(&tx, &personal).expect("role"),
            Some(Role::Operator)
        );
        // Demoted: a schedule or job that ann started as an operator may no longer run.
        crate::auth::update_user(&tx, "ann", None, Some(Role::Viewer), "admin").expect("demote");
        assert_eq!(
            current_role(&tx, &personal).expect("role"),
            Some(Role::Viewer)
        );
        tx.open_table(store::USERS)
            .expect("users")
            .remove("ann")
            .expect("remove");
        assert_eq!(current_role(&tx, &personal).expect("role"), None);
    }
}
