//! NetBox devices → saved sessions. The mapping and the plan are plain functions
//! (tested without NetBox); [`apply`] writes every importable row in the caller's one
//! transaction, after every decision is made.
//!
//! Rules: folder = the site's name (`folder_by=site`) or one folder; `display_name` =
//! the device name; `host` = primary IPv4, else IPv6, else the name if
//! `use_name_as_host`, else refused; port = the custom field `netbox.port_field`, else
//! 22; `device_type` = the platform slug through the mapping (built-in defaults plus
//! `[netbox.platforms]`), else `netbox.default_device_type`, else refused; tags = the
//! NetBox tags' slugs plus `role=<role slug>`. A session remembers its NetBox id, so a
//! second import updates it (keeping its username and credential) instead of adding one.

use std::collections::{HashMap, HashSet};

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};

use super::NetboxError;
use crate::audit;
use crate::config::{InventoryConfig, NetboxConfig};
use crate::inventory::{self, DeviceType, SavedSession, SessionInput, ValidSession};
use crate::store::{self, SAVED_SESSIONS};
use crate::workspace::Scope;

/// A nested object (`site`, `platform`, `role`, `tags[]`) as NetBox 4 sends it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Nested {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
}

/// `primary_ip4` / `primary_ip6`: `address` carries the prefix length.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NestedIp {
    #[serde(default)]
    pub address: Option<String>,
}

/// `status`: `{value, label}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub value: Option<String>,
}

/// A device of `/api/dcim/devices/` (only the fields read here).
#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub site: Option<Nested>,
    #[serde(default)]
    pub platform: Option<Nested>,
    /// NetBox 4 (`device_role` in NetBox 3).
    #[serde(default, alias = "device_role")]
    pub role: Option<Nested>,
    #[serde(default)]
    pub status: Option<Choice>,
    #[serde(default)]
    pub primary_ip4: Option<NestedIp>,
    #[serde(default)]
    pub primary_ip6: Option<NestedIp>,
    #[serde(default)]
    pub tags: Vec<Nested>,
    #[serde(default)]
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
}

/// A device as `GET /api/netbox/devices` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceRow {
    pub id: u64,
    pub name: Option<String>,
    pub site: Option<String>,
    pub platform: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
    /// Without the prefix length.
    pub primary_ip: Option<String>,
    pub tags: Vec<String>,
    pub importable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Device search filters, passed to NetBox as its own (slug) filters.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilters {
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

impl DeviceFilters {
    /// The NetBox query parameters; every value checked (slugs are `[a-z0-9_-]`).
    pub fn to_query(&self) -> Result<Vec<(String, String)>, NetboxError> {
        let mut out = Vec::new();
        if let Some(q) = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            if q.chars().count() > 200 || q.chars().any(char::is_control) {
                return Err(NetboxError::invalid(
                    "invalid_filter",
                    "q must be at most 200 printable characters",
                ));
            }
            out.push(("q".to_string(), q.to_string()));
        }
        for (name, value) in [
            ("site", &self.site),
            ("platform", &self.platform),
            ("status", &self.status),
            ("role", &self.role),
            ("tag", &self.tag),
        ] {
            let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            let slug_ok = v.len() <= 100
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !slug_ok {
                return Err(NetboxError::invalid(
                    "invalid_filter",
                    format!(
                        "{name} must be a NetBox slug (letters, digits, '-', '_'; at most 100)"
                    ),
                ));
            }
            out.push((name.to_string(), v.to_string()));
        }
        Ok(out)
    }
}

/// How imported sessions are put in folders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FolderBy {
    /// One folder per site, named after the site.
    #[default]
    Site,
    /// Everything in `folder` (default `NetBox`).
    None,
}

/// `POST /api/netbox/import` body.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    #[serde(default)]
    pub device_ids: Option<Vec<u64>>,
    #[serde(default)]
    pub filters: Option<DeviceFilters>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub folder_by: FolderBy,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub use_name_as_host: bool,
}

/// Folder used for `folder_by=none` without `folder`, and for a device without a site.
pub const DEFAULT_FOLDER: &str = "NetBox";

/// Built-in platform slug → device type (NetBox's and netmiko's usual slugs).
const DEFAULT_PLATFORMS: &[(&str, DeviceType)] = &[
    ("ios", DeviceType::CiscoIos),
    ("cisco-ios", DeviceType::CiscoIos),
    ("cisco_ios", DeviceType::CiscoIos),
    ("iosxe", DeviceType::CiscoXe),
    ("ios-xe", DeviceType::CiscoXe),
    ("cisco-ios-xe", DeviceType::CiscoXe),
    ("cisco_xe", DeviceType::CiscoXe),
    ("nxos", DeviceType::CiscoNxos),
    ("nx-os", DeviceType::CiscoNxos),
    ("cisco-nx-os", DeviceType::CiscoNxos),
    ("cisco_nxos", DeviceType::CiscoNxos),
    ("eos", DeviceType::AristaEos),
    ("arista-eos", DeviceType::AristaEos),
    ("arista_eos", DeviceType::AristaEos),
    ("fortios", DeviceType::Fortinet),
    ("fortinet", DeviceType::Fortinet),
    ("fortinet-fortios", DeviceType::Fortinet),
    ("junos", DeviceType::JuniperJunos),
    ("juniper-junos", DeviceType::JuniperJunos),
    ("juniper_junos", DeviceType::JuniperJunos),
    ("aos", DeviceType::ArubaOs),
    ("arubaos", DeviceType::ArubaOs),
    ("aruba-os", DeviceType::ArubaOs),
    ("aruba_os", DeviceType::ArubaOs),
    ("comware", DeviceType::HpComware),
    ("hp-comware", DeviceType::HpComware),
    ("hp_comware", DeviceType::HpComware),
    ("procurve", DeviceType::HpProcurve),
    ("hp-procurve", DeviceType::HpProcurve),
    ("hp_procurve", DeviceType::HpProcurve),
    ("linux", DeviceType::Linux),
    ("ubuntu", DeviceType::Linux),
    ("debian", DeviceType::Linux),
];

/// The platform mapping in force: defaults, then the config's entries over them.
#[derive(Debug, Clone)]
pub struct Mapping {
    platforms: HashMap<String, DeviceType>,
    default: Option<DeviceType>,
    port_field: String,
}

impl Mapping {
    /// Builds the mapping; an unknown device type in the config is an error at start.
    pub fn new(cfg: &NetboxConfig) -> Result<Mapping, String> {
        let mut platforms: HashMap<String, DeviceType> = DEFAULT_PLATFORMS
            .iter()
            .map(|(s, d)| (s.to_string(), *d))
            .collect();
        for (slug, dt) in &cfg.platforms {
            let d = DeviceType::parse(dt).ok_or_else(|| {
                format!("[netbox.platforms] {slug} = {dt:?}: unknown device type")
            })?;
            platforms.insert(slug.to_ascii_lowercase(), d);
        }
        let default =
            match cfg.default_device_type.trim() {
                "" => None,
                d => Some(DeviceType::parse(d).ok_or_else(|| {
                    format!("netbox.default_device_type {d:?}: unknown device type")
                })?),
            };
        Ok(Mapping {
            platforms,
            default,
            port_field: cfg.port_field.clone(),
        })
    }
}

fn strip_prefix_len(address: &str) -> String {
    address
        .split('/')
        .next()
        .unwrap_or(address)
        .trim()
        .to_string()
}

/// A device turned into a session, or the reason it cannot be.
pub(crate) fn to_session(
    d: &Device,
    map: &Mapping,
    req: &ImportRequest,
) -> Result<ValidSession, String> {
    let name = d
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or("the device has no name")?;
    let ip = d
        .primary_ip4
        .as_ref()
        .or(d.primary_ip6.as_ref())
        .and_then(|ip| ip.address.as_deref())
        .map(strip_prefix_len);
    let host = match ip {
        Some(ip) => ip,
        None if req.use_name_as_host => name.to_string(),
        None => return Err("the device has no primary IP address".to_string()),
    };
    let port = match d.custom_fields.get(&map.port_field) {
        None | Some(serde_json::Value::Null) => 22,
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(-1),
        Some(_) => -1,
    };
    if !(1..=65535).contains(&port) {
        return Err(format!(
            "custom field {} is not a port number",
            map.port_field
        ));
    }
    let slug = d.platform.as_ref().and_then(|p| p.slug.as_deref());
    let device_type = match slug.and_then(|s| map.platforms.get(&s.to_ascii_lowercase())) {
        Some(dt) => *dt,
        None => match (map.default, slug) {
            (Some(dt), _) => dt,
            (None, Some(s)) => {
                return Err(format!(
                    "platform {s:?} has no device type mapping ([netbox.platforms])"
                ))
            }
            (None, None) => return Err("the device has no platform".to_string()),
        },
    };
    let folder = match req.folder_by {
        FolderBy::Site => d
            .site
            .as_ref()
            .and_then(|s| s.name.clone().or_else(|| s.slug.clone()))
            .unwrap_or_else(|| DEFAULT_FOLDER.to_string()),
        FolderBy::None => req
            .folder
            .clone()
            .unwrap_or_else(|| DEFAULT_FOLDER.to_string()),
    };
    let mut tags: Vec<String> = d.tags.iter().filter_map(|t| t.slug.clone()).collect();
    if let Some(role) = d.role.as_ref().and_then(|r| r.slug.as_deref()) {
        tags.push(format!("role={role}"));
    }
    tags.truncate(64);
    let input = SessionInput {
        folder: Some(folder.replace('/', "-")),
        display_name: name.to_string(),
        host,
        port: Some(port),
        username: None,
        device_type: serde_json::to_value(device_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        credential_id: None,
        tags: Some(tags),
    };
    let mut v = input.validate().map_err(|e| e.to_string())?;
    v.netbox_id = Some(d.id);
    Ok(v)
}

/// The listing row of a device.
pub fn row(d: &Device, map: &Mapping, req: &ImportRequest) -> DeviceRow {
    let reason = to_session(d, map, req).err();
    DeviceRow {
        id: d.id,
        name: d.name.clone(),
        site: d.site.as_ref().and_then(|s| s.name.clone()),
        platform: d.platform.as_ref().and_then(|p| p.slug.clone()),
        role: d.role.as_ref().and_then(|r| r.slug.clone()),
        status: d.status.as_ref().and_then(|s| s.value.clone()),
        primary_ip: d
            .primary_ip4
            .as_ref()
            .or(d.primary_ip6.as_ref())
            .and_then(|ip| ip.address.as_deref())
            .map(strip_prefix_len),
        tags: d.tags.iter().filter_map(|t| t.slug.clone()).collect(),
        importable: reason.is_none(),
        reason,
    }
}

/// One device in the answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    pub netbox_id: u64,
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an import did (or would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub created: Vec<Outcome>,
    pub updated: Vec<Outcome>,
    pub refused: Vec<Outcome>,
}

enum Plan {
    Create(ValidSession),
    Update(String, ValidSession),
}

/// Plans and applies an import in `tx`: devices already imported (same NetBox id) are
/// updated, keeping their username and credential; the others are created; a device
/// whose name (in its folder) or host and port collide with another session or another
/// device of the import is refused with the reason. Every decision is made before the
/// first write.
pub fn apply(
    tx: &WriteTransaction,
    ws: &Scope,
    devices: &[Device],
    map: &Mapping,
    req: &ImportRequest,
    limits: &InventoryConfig,
) -> Result<ImportReport, NetboxError> {
    let owner = ws.key.as_str();
    let before = inventory::Held::count(tx, owner)?;
    let existing: Vec<(String, SavedSession)> =
        store::list_owned(&tx.open_table(SAVED_SESSIONS)?, owner)?;
    let by_netbox: HashMap<u64, &SavedSession> = existing
        .iter()
        .filter_map(|(_, s)| s.netbox_id.map(|n| (n, s)))
        .collect();
    // Names and addresses taken, with the session that holds them (None: a device of
    // this import), to refuse collisions.
    let mut names: HashMap<(String, String), Option<&str>> = HashMap::new();
    let mut addrs: HashMap<(String, u16), Option<&str>> = HashMap::new();
    for (id, s) in &existing {
        names.insert(
            (s.folder.clone(), s.display_name.to_lowercase()),
            Some(id.as_str()),
        );
        addrs.insert((s.host.to_lowercase(), s.port), Some(id.as_str()));
    }
    let mut report = ImportReport {
        dry_run: req.dry_run,
        ..ImportReport::default()
    };
    let mut plans = Vec::new();
    let mut seen_ids: HashSet<u64> = HashSet::new();
    for d in devices {
        let refuse = |reason: String| Outcome {
            netbox_id: d.id,
            name: d.name.clone(),
            session_id: None,
            reason: Some(reason),
        };
        if !seen_ids.insert(d.id) {
            continue; // NetBox listed it twice (paging while it changed)
        }
        let mut v = match to_session(d, map, req) {
            Ok(v) => v,
            Err(reason) => {
                report.refused.push(refuse(reason));
                continue;
            }
        };
        let own = by_netbox.get(&d.id).map(|s| s.id.as_str());
        let name_key = (v.folder.clone(), v.display_name.to_lowercase());
        let addr_key = (v.host.to_lowercase(), v.port);
        let clash = |holder: Option<&Option<&str>>| match holder {
            None => None,
            Some(Some(id)) if Some(*id) == own => None,
            Some(Some(id)) => Some(format!("saved session {id}")),
            Some(None) => Some("another device of this import".to_string()),
        };
        if let Some(who) = clash(names.get(&name_key)) {
            report.refused.push(refuse(format!(
                "{who} already has the name {:?} in folder {:?}",
                v.display_name, v.folder
            )));
            continue;
        }
        if let Some(who) = clash(addrs.get(&addr_key)) {
            report
                .refused
                .push(refuse(format!("{who} already uses {}:{}", v.host, v.port)));
            continue;
        }
        names.insert(name_key, None);
        addrs.insert(addr_key, None);
        match by_netbox.get(&d.id) {
            Some(old) => {
                // What the operator attached here stays: NetBox knows no credentials.
                v.username = old.username.clone();
                v.credential_id = old.credential_id.clone();
                plans.push((d, Plan::Update(old.id.clone(), v)));
            }
            None => plans.push((d, Plan::Create(v))),
        }
    }
    let planned_folders: HashSet<String> = plans
        .iter()
        .map(|(_, p)| match p {
            Plan::Create(v) | Plan::Update(_, v) => v.folder.clone(),
        })
        .collect();
    for (d, plan) in plans {
        let outcome = |session_id: Option<String>| Outcome {
            netbox_id: d.id,
            name: d.name.clone(),
            session_id,
            reason: None,
        };
        match plan {
            Plan::Create(_) if req.dry_run => report.created.push(outcome(None)),
            Plan::Update(id, _) if req.dry_run => report.updated.push(outcome(Some(id))),
            Plan::Create(v) => {
                let s = inventory::create_session(tx, ws, v)?;
                report.created.push(outcome(Some(s.id)));
            }
            Plan::Update(id, v) => {
                inventory::update_session(tx, ws, &id, v)?;
                report.updated.push(outcome(Some(id)));
            }
        }
    }
    if req.dry_run {
        inventory::check_planned_sessions(
            limits,
            existing.len(),
            existing.len() + report.created.len(),
        )?;
        // Nothing was written, but the run's transaction is thrown away: make the
        // folders, so their limit is judged as a real run would be.
        for folder in &planned_folders {
            inventory::ensure_folder(tx, owner, folder)?;
        }
        inventory::check_session_room(tx, owner, limits, before)?;
    } else {
        inventory::check_session_room(tx, owner, limits, before)?;
        audit::record(
            tx,
            ws.audit("netbox.import").detail(format!(
                "{} created, {} updated, {} refused",
                report.created.len(),
                report.updated.len(),
                report.refused.len()
            )),
        )?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(v: serde_json::Value) -> Device {
        serde_json::from_value(v).expect("device")
    }

    fn req() -> ImportRequest {
        ImportRequest {
            device_ids: None,
            filters: None,
            dry_run: false,
            folder_by: FolderBy::Site,
            folder: None,
            use_name_as_host: false,
        }
    }

    #[test]
    fn maps_a_netbox_device() {
        let map = Mapping::new(&NetboxConfig::default()).expect("map");
        let d = device(serde_json::json!({
            "id": 7, "name": "core-sw1",
            "site": {"name": "Paris DC", "slug": "paris-dc"},
            "platform": {"name": "Cisco IOS", "slug": "ios"},
            "role": {"slug": "core"},
            "primary_ip4": {"address": "10.0.0.1/24"},
            "tags": [{"name": "Prod", "slug": "prod"}],
            "custom_fields": {"ssh_port": 2222}
        }));
        let v = to_session(&d, &map, &req()).expect("session");
        assert_eq!(v.folder, "Paris DC");
        assert_eq!(v.host, "10.0.0.1");
        assert_eq!(v.port, 2222);
        assert_eq!(v.device_type, DeviceType::CiscoIos);
        assert_eq!(v.tags, vec!["prod".to_string(), "role=core".to_string()]);
        assert_eq!(v.netbox_id, Some(7));
    }

    #[test]
    fn the_config_adds_platforms_and_refuses_unknown_device_types() {
        let mut cfg = NetboxConfig::default();
        cfg.platforms.insert("VyOS".into(), "linux".into());
        let map = Mapping::new(&cfg).expect("map");
        let d = device(
            serde_json::json!({"id": 3, "name": "r", "platform": {"slug": "vyos"},
            "primary_ip4": {"address": "192.0.2.1/32"}}),
        );
        assert_eq!(
            to_session(&d, &map, &req()).expect("mapped").device_type,
            DeviceType::Linux
        );
        cfg.platforms.insert("x".into(), "toaster".into());
        assert!(Mapping::new(&cfg).unwrap_err().contains("toaster"));
        let bad_default = NetboxConfig {
            default_device_type: "toaster".into(),
            ..NetboxConfig::default()
        };
        assert!(Mapping::new(&bad_default).is_err());
    }

    #[test]
    fn refusals_say_why() {
        let map = Mapping::new(&NetboxConfig::default()).expect("map");
        let no_ip = device(serde_json::json!({"id": 1, "name": "x", "platform": {"slug": "ios"}}));
        assert!(to_session(&no_ip, &map, &req())
            .unwrap_err()
            .contains("no primary IP"));
        let mut by_name = req();
        by_name.use_name_as_host = true;
        assert_eq!(to_session(&no_ip, &map, &by_name).expect("name").host, "x");
        let odd = device(
            serde_json::json!({"id": 2, "name": "y", "platform": {"slug": "toaster"},
            "primary_ip6": {"address": "2001:db8::1/64"}}),
        );
        assert!(to_session(&odd, &map, &req())
            .unwrap_err()
            .contains("toaster"));
        let cfg = NetboxConfig {
            default_device_type: "linux".into(),
            ..NetboxConfig::default()
        };
        let v = to_session(&odd, &Mapping::new(&cfg).expect("map"), &req()).expect("default");
        assert_eq!(
            (v.host.as_str(), v.device_type),
            ("2001:db8::1", DeviceType::Linux)
        );
    }
}
