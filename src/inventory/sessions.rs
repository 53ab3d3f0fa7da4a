//! Folders and saved sessions.

use std::net::IpAddr;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::InventoryError;
use crate::audit;
use crate::store::{self, CREDENTIALS, FOLDERS, SAVED_SESSIONS};
use crate::workspace::Scope;

/// The device families opsgate knows how to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    CiscoIos,
    CiscoXe,
    CiscoNxos,
    AristaEos,
    Fortinet,
    JuniperJunos,
    ArubaOs,
    HpComware,
    HpProcurve,
    Linux,
}

/// Every device type's wire name, for error messages.
pub const DEVICE_TYPES: &str = "cisco_ios, cisco_xe, cisco_nxos, arista_eos, fortinet, juniper_junos, aruba_os, hp_comware, hp_procurve, linux";

impl DeviceType {
    /// Parses a wire name or a common alias from other tools (`ios`, `junos`, `Cisco IOS`).
    pub fn parse(raw: &str) -> Option<DeviceType> {
        let norm: String = raw
            .trim()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c == ' ' || c == '-' { '_' } else { c })
            .collect();
        Some(match norm.as_str() {
            "cisco_ios" | "ios" | "cisco" => DeviceType::CiscoIos,
            "cisco_xe" | "cisco_iosxe" | "cisco_ios_xe" | "ios_xe" | "iosxe" => DeviceType::CiscoXe,
            "cisco_nxos" | "cisco_nx_os" | "nxos" | "nx_os" => DeviceType::CiscoNxos,
            "arista_eos" | "eos" | "arista" => DeviceType::AristaEos,
            "fortinet" | "fortigate" | "fortios" => DeviceType::Fortinet,
            "juniper_junos" | "junos" | "juniper" => DeviceType::JuniperJunos,
            "aruba_os" | "arubaos" | "aruba" | "aruba_aos" => DeviceType::ArubaOs,
            "hp_comware" | "comware" | "h3c" => DeviceType::HpComware,
            "hp_procurve" | "procurve" | "aruba_procurve" => DeviceType::HpProcurve,
            "linux" | "ubuntu" | "debian" => DeviceType::Linux,
            _ => return None,
        })
    }
}

/// A saved session: how to reach one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SavedSession {
    pub id: String,
    pub folder: String,
    pub display_name: String,
    pub host: String,
    pub port: u16,
    /// Absent in legacy files: the open frame's or the credential's username is used.
    #[serde(default)]
    pub username: Option<String>,
    pub device_type: DeviceType,
    #[serde(default)]
    pub credential_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The NetBox device this session was imported from: a re-import updates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netbox_id: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A saved session as a client sends it. Loose types so that every mistake gets a
/// precise message rather than a generic decode error.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionInput {
    #[serde(default)]
    pub folder: Option<String>,
    pub display_name: String,
    pub host: String,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub username: Option<String>,
    pub device_type: String,
    #[serde(default)]
    pub credential_id: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// The checked fields of a saved session.
#[derive(Debug, Clone)]
pub(crate) struct ValidSession {
    pub folder: String,
    pub display_name: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub device_type: DeviceType,
    pub credential_id: Option<String>,
    pub tags: Vec<String>,
    /// Set by the NetBox import only; an edit through the API keeps the stored one.
    pub netbox_id: Option<u64>,
}

pub(crate) const DEFAULT_FOLDER: &str = "Default";

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Checks a folder name.
pub(crate) fn check_folder_name(name: &str) -> Result<String, InventoryError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || !printable(name) || name.contains('/') {
        return Err(InventoryError::invalid(
            "invalid_folder",
            "folder name must be 1-100 printable characters without '/'",
        ));
    }
    Ok(name.to_string())
}

/// Whether `host` is an IP address or an RFC 1123 host name.
pub fn valid_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl SessionInput {
    pub(crate) fn validate(self) -> Result<ValidSession, InventoryError> {
        let folder = check_folder_name(self.folder.as_deref().unwrap_or(DEFAULT_FOLDER))?;
        let display_name = self.display_name.trim().to_string();
        if display_name.is_empty()
            || display_name.chars().count() > 200
            || !printable(&display_name)
        {
            return Err(InventoryError::invalid(
                "invalid_display_name",
                "display_name must be 1-200 printable characters",
            ));
        }
        let host = self.host.trim().to_string();
        if !valid_host(&host) {
            return Err(InventoryError::invalid(
                "invalid_host",
                format!("host {host:?} is neither an IP address nor a valid host name"),
            ));
        }
        let port = self.port.unwrap_or(22);
        if !(1..=65535).contains(&port) {
            return Err(InventoryError::invalid(
                "invalid_port",
                format!("port {port} is out of range 1-65535"),
            ));
        }
        // Optional: legacy files carry the username on the credential set only.
        let username = self
            .username
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        if let Some(u) = &username {
            if u.len() > 128 || !printable(u) {
                return Err(InventoryError::invalid(
                    "invalid_username",
                    "username must be 1-128 printable characters",
                ));
            }
        }
        let device_type = DeviceType::parse(&self.device_type).ok_or_else(|| {
            InventoryError::invalid(
                "invalid_device_type",
                format!(
                    "unknown device_type {:?}; use one of {DEVICE_TYPES}",
                    self.device_type
                ),
            )
        })?;
        let tags = self.tags.unwrap_or_default();
        if tags.len() > 64
            || tags
                .iter()
                .any(|t| t.is_empty() || t.chars().count() > 200 || !printable(t))
        {
            return Err(InventoryError::invalid(
                "invalid_tags",
                "at most 64 tags, each 1-200 printable characters",
            ));
        }
        let credential_id = self.credential_id.filter(|c| !c.is_empty());
        Ok(ValidSession {
            folder,
            display_name,
            host,
            port: port as u16,
            username,
            device_type,
            credential_id,
            tags,
            netbox_id: None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FolderRecord {
    pub created_at: i64,
}

/// One folder with its sessions, as `GET /api/sessions` lists them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FolderView {
    pub name: String,
    pub sessions: Vec<SavedSession>,
}

/// A search term. ASCII terms match ASCII-case-insensitively, which lets a search skip
/// decoding records whose raw bytes cannot contain the term; other terms match by
/// Unicode lowercase.
struct Search {
    lower: String,
    /// Set when the raw-bytes prefilter is exact for this term: ASCII without the
    /// characters JSON escapes.
    raw: Option<memchr::memmem::Finder<'static>>,
}

impl Search {
    fn new(q: &str) -> Option<Search> {
        if q.is_empty() {
            return None;
        }
        let ascii = q.is_ascii();
        let lower = if ascii {
            q.to_ascii_lowercase()
        } else {
            q.to_lowercase()
        };
        let raw = (ascii && !q.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20))
            .then(|| memchr::memmem::Finder::new(lower.as_bytes()).into_owned());
        Some(Search { lower, raw })
    }

    /// False only if the record's JSON cannot hold a match (`buf` is scratch space).
    fn may_match(&self, record: &[u8], buf: &mut Vec<u8>) -> bool {
        let Some(f) = &self.raw else { return true };
        buf.clear();
        buf.extend(record.iter().map(u8::to_ascii_lowercase));
        f.find(buf).is_some()
    }

    fn matches(&self, s: &SavedSession) -> bool {
        let has = |field: &str| {
            if self.raw.is_some() {
                field.to_ascii_lowercase().contains(&self.lower)
            } else {
                field.to_lowercase().contains(&self.lower)
            }
        };
        has(&s.display_name) || has(&s.host) || s.tags.iter().any(|t| has(t))
    }
}

/// Folders with their sessions; with `q`, only sessions whose name, host or a tag
/// contains it (case-insensitive), and only folders with a match.
pub fn list_folders(
    tx: &ReadTransaction,
    owner: &str,
    q: Option<&str>,
) -> Result<Vec<FolderView>, InventoryError> {
    let folders: Vec<(String, FolderRecord)> = store::list_owned(&tx.open_table(FOLDERS)?, owner)?;
    let search = q.and_then(Search::new);
    let mut out: Vec<FolderView> = folders
        .into_iter()
        .map(|(name, _)| FolderView {
            name,
            sessions: Vec::new(),
        })
        .collect();
    let mut index: std::collections::HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.clone(), i))
        .collect();
    let table = tx.open_table(SAVED_SESSIONS)?;
    let mut scratch = Vec::new();
    for row in table.range((owner, "")..)? {
        let (k, v) = row?;
        if k.value().0 != owner {
            break;
        }
        if let Some(q) = &search {
            if !q.may_match(v.value(), &mut scratch) {
                continue;
            }
        }
        let s: SavedSession = store::decode(v.value())?;
        if search.as_ref().is_some_and(|q| !q.matches(&s)) {
            continue;
        }
        match index.get(&s.folder) {
            Some(&i) => out[i].sessions.push(s),
            None => {
                index.insert(s.folder.clone(), out.len());
                out.push(FolderView {
                    name: s.folder.clone(),
                    sessions: vec![s],
                });
            }
        }
    }
    if search.is_some() {
        out.retain(|f| !f.sessions.is_empty());
    }
    for f in &mut out {
        f.sessions.sort_by(|a, b| {
            a.display_name
                .to_lowercase()
                .cmp(&b.display_name.to_lowercase())
        });
    }
    Ok(out)
}

pub fn get_session(
    tx: &ReadTransaction,
    owner: &str,
    id: &str,
) -> Result<Option<SavedSession>, InventoryError> {
    Ok(store::get_owned(
        &tx.open_table(SAVED_SESSIONS)?,
        owner,
        id,
    )?)
}

pub(crate) fn ensure_folder(
    tx: &WriteTransaction,
    owner: &str,
    name: &str,
) -> Result<(), InventoryError> {
    let mut t = tx.open_table(FOLDERS)?;
    if t.get((owner, name))?.is_none() {
        let rec = store::encode(&FolderRecord {
            created_at: store::now(),
        })?;
        t.insert((owner, name), rec.as_slice())?;
    }
    Ok(())
}

fn check_credential(
    tx: &WriteTransaction,
    owner: &str,
    id: Option<&str>,
) -> Result<(), InventoryError> {
    if let Some(id) = id {
        if tx.open_table(CREDENTIALS)?.get((owner, id))?.is_none() {
            return Err(InventoryError::invalid(
                "unknown_credential",
                format!("credential {id} not found"),
            ));
        }
    }
    Ok(())
}

/// Stores a new saved session (creating its folder if needed).
pub(crate) fn create_session(
    tx: &WriteTransaction,
    ws: &Scope,
    v: ValidSession,
) -> Result<SavedSession, InventoryError> {
    let owner = ws.key.as_str();
    check_credential(tx, owner, v.credential_id.as_deref())?;
    ensure_folder(tx, owner, &v.folder)?;
    let now = store::now();
    let s = SavedSession {
        id: store::new_id(),
        folder: v.folder,
        display_name: v.display_name,
        host: v.host,
        port: v.port,
        username: v.username,
        device_type: v.device_type,
        credential_id: v.credential_id,
        tags: v.tags,
        netbox_id: v.netbox_id,
        created_at: now,
        updated_at: now,
    };
    tx.open_table(SAVED_SESSIONS)?
        .insert((owner, s.id.as_str()), store::encode(&s)?.as_slice())?;
    audit::record(
        tx,
        ws.audit("session.create")
            .target(&s.id)
            .detail(&s.display_name),
    )?;
    Ok(s)
}

/// Replaces the fields of an existing saved session.
pub(crate) fn update_session(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
    v: ValidSession,
) -> Result<SavedSession, InventoryError> {
    let owner = ws.key.as_str();
    let old: SavedSession = store::get_owned(&tx.open_table(SAVED_SESSIONS)?, owner, id)?
        .ok_or(InventoryError::NotFound("saved session"))?;
    check_credential(tx, owner, v.credential_id.as_deref())?;
    ensure_folder(tx, owner, &v.folder)?;
    let s = SavedSession {
        id: old.id,
        folder: v.folder,
        display_name: v.display_name,
        host: v.host,
        port: v.port,
        username: v.username,
        device_type: v.device_type,
        credential_id: v.credential_id,
        tags: v.tags,
        netbox_id: v.netbox_id.or(old.netbox_id),
        created_at: old.created_at,
        updated_at: store::now(),
    };
    tx.open_table(SAVED_SESSIONS)?
        .insert((owner, id), store::encode(&s)?.as_slice())?;
    audit::record(tx, ws.audit("session.update").target(id))?;
    Ok(s)
}

pub(crate) fn delete_session(
    tx: &WriteTransaction,
    ws: &Scope,
    id: &str,
) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
    if tx
        .open_table(SAVED_SESSIONS)?
        .remove((owner, id))?
        .is_none()
    {
        return Err(InventoryError::NotFound("saved session"));
    }
    audit::record(tx, ws.audit("session.delete").target(id))?;
    Ok(())
}

pub(crate) fn create_folder(
    tx: &WriteTransaction,
    ws: &Scope,
    name: &str,
) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
    let name = check_folder_name(name)?;
    if tx
        .open_table(FOLDERS)?
        .get((owner, name.as_str()))?
        .is_some()
    {
        return Err(InventoryError::Conflict {
            code: "folder_exists",
            message: format!("folder {name:?} already exists"),
        });
    }
    ensure_folder(tx, owner, &name)?;
    audit::record(tx, ws.audit("folder.create").target(name))?;
    Ok(())
}

pub(crate) fn rename_folder(
    tx: &WriteTransaction,
    ws: &Scope,
    from: &str,
    to: &str,
) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
    let to = check_folder_name(to)?;
    {
        let mut folders = tx.open_table(FOLDERS)?;
        if folders.get((owner, from))?.is_none() {
            return Err(InventoryError::NotFound("folder"));
        }
        if from == to {
            return Ok(());
        }
        if folders.get((owner, to.as_str()))?.is_some() {
            return Err(InventoryError::Conflict {
                code: "folder_exists",
                message: format!("folder {to:?} already exists"),
            });
        }
        let rec = folders
            .remove((owner, from))?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        folders.insert((owner, to.as_str()), rec.as_slice())?;
    }
    let mut table = tx.open_table(SAVED_SESSIONS)?;
    let moved: Vec<(String, SavedSession)> = store::list_owned(&table, owner)?;
    for (id, mut s) in moved {
        if s.folder == from {
            s.folder = to.clone();
            s.updated_at = store::now();
            table.insert((owner, id.as_str()), store::encode(&s)?.as_slice())?;
        }
    }
    drop(table);
    audit::record(
        tx,
        ws.audit("folder.rename")
            .target(from)
            .detail(format!("to {to}")),
    )?;
    Ok(())
}

pub(crate) fn delete_folder(
    tx: &WriteTransaction,
    ws: &Scope,
    name: &str,
) -> Result<(), InventoryError> {
    let owner = ws.key.as_str();
    let sessions: Vec<(String, SavedSession)> =
        store::list_owned(&tx.open_table(SAVED_SESSIONS)?, owner)?;
    let mut folders = tx.open_table(FOLDERS)?;
    if folders.get((owner, name))?.is_none() {
        return Err(InventoryError::NotFound("folder"));
    }
    let used = sessions.iter().filter(|(_, s)| s.folder == name).count();
    if used > 0 {
        return Err(InventoryError::Conflict {
            code: "folder_not_empty",
            message: format!("folder {name:?} still holds {used} session(s)"),
        });
    }
    folders.remove((owner, name))?;
    drop(folders);
    audit::record(tx, ws.audit("folder.delete").target(name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_syntax() {
        for ok in [
            "10.0.0.1",
            "::1",
            "[2001:db8::1]",
            "core-sw1.example.net",
            "r1",
            "a_b.lab",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "-bad.example", "a..b", "has space", "x;rm -rf", "a/b"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn device_type_aliases() {
        assert_eq!(DeviceType::parse("Cisco IOS"), Some(DeviceType::CiscoIos));
        assert_eq!(DeviceType::parse("junos"), Some(DeviceType::JuniperJunos));
        assert_eq!(DeviceType::parse("toaster"), None);
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;

    fn session(name: &str, host: &str, tags: &[&str]) -> SavedSession {
        SavedSession {
            id: "x".into(),
            folder: "F".into(),
            display_name: name.into(),
            host: host.into(),
            port: 22,
            username: Some("u".into()),
            device_type: DeviceType::Linux,
            credential_id: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            netbox_id: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn prefilter_never_hides_a_match() {
        let cases = [
            (
                session("Core-SW1", "10.0.0.1", &["site=Paris"]),
                vec!["core", "SW1", "0.0.1", "paris", "SITE=p"],
            ),
            (
                session("Zürich-FW", "fw.example", &["Modèle=X"]),
                vec!["zürich", "ZÜRICH", "fw", "modèle"],
            ),
            (
                session("quote\"d", "h", &["back\\slash"]),
                vec!["quote\"", "back\\"],
            ),
        ];
        let mut buf = Vec::new();
        for (s, queries) in cases {
            let raw = serde_json::to_vec(&s).expect("json");
            for q in queries {
                let search = Search::new(q).expect("search");
                assert!(search.matches(&s), "{q} should match {s:?}");
                assert!(search.may_match(&raw, &mut buf), "prefilter hid {q}");
            }
            let miss = Search::new("nowhere-to-be-found").expect("search");
            assert!(!miss.may_match(&raw, &mut buf) && !miss.matches(&s));
        }
    }
}
