//! YAML export and import of saved sessions, in the layout other tools use:
//!
//! ```yaml
//! - folder_name: Core
//!   sessions:
//!     - display_name: core-sw1
//!       host: 10.0.0.1
//!       port: '22'
//!       DeviceType: cisco_ios
//!       username: admin
//!       Model: C9300        # unknown keys are kept as tags "Model=C9300"
//! ```
//!
//! An import is validated whole before anything is written; one bad row refuses all.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};
use serde_yaml_ng::Value;

use super::sessions::{self, SavedSession, SessionInput, ValidSession};
use super::InventoryError;
use crate::audit;
use crate::config::InventoryConfig;
use crate::store::{self, CREDENTIALS, FOLDERS, SAVED_SESSIONS};
use crate::workspace::Scope;

/// One refused row of an import.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub folder: String,
    /// 1-based position within its folder's `sessions` list (0 for the folder itself).
    pub row: usize,
    pub display_name: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "folder {:?} row {}", self.folder, self.row)?;
        if let Some(n) = &self.display_name {
            write!(f, " ({n})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How an import treats what is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Update sessions with the same folder and display name, add the rest.
    Merge,
    /// Remove every saved session and folder first.
    Replace,
}

/// Renders the user's folders and sessions.
pub fn export(folders: &[sessions::FolderView]) -> Result<String, InventoryError> {
    let mut out = Vec::new();
    for f in folders {
        let rows: Vec<Value> = f
            .sessions
            .iter()
            .map(|s| {
                let mut m = serde_yaml_ng::Mapping::new();
                m.insert("display_name".into(), s.display_name.clone().into());
                m.insert("host".into(), s.host.clone().into());
                m.insert("port".into(), s.port.to_string().into());
                let dt = serde_yaml_ng::to_value(s.device_type).unwrap_or(Value::Null);
                m.insert("DeviceType".into(), dt);
                if let Some(u) = &s.username {
                    m.insert("username".into(), u.clone().into());
                }
                if let Some(c) = &s.credential_id {
                    m.insert("credential_id".into(), c.clone().into());
                }
                if !s.tags.is_empty() {
                    let tags: Vec<Value> = s.tags.iter().map(|t| t.clone().into()).collect();
                    m.insert("tags".into(), Value::Sequence(tags));
                }
                Value::Mapping(m)
            })
            .collect();
        let mut folder = serde_yaml_ng::Mapping::new();
        folder.insert("folder_name".into(), f.name.clone().into());
        folder.insert("sessions".into(), Value::Sequence(rows));
        out.push(Value::Mapping(folder));
    }
    serde_yaml_ng::to_string(&Value::Sequence(out))
        .map_err(|e| InventoryError::invalid("export_failed", e.to_string()))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn row_input(folder: &str, map: &serde_yaml_ng::Mapping) -> Result<SessionInput, String> {
    let mut input = SessionInput {
        folder: Some(folder.to_string()),
        display_name: String::new(),
        host: String::new(),
        port: None,
        username: None,
        device_type: String::new(),
        credential_id: None,
        tags: None,
    };
    let mut tags = Vec::new();
    for (k, v) in map {
        let key = scalar(k).ok_or("a key is not text")?;
        match key.as_str() {
            "display_name" | "name" => {
                input.display_name = scalar(v).ok_or("display_name must be text")?
            }
            "host" | "hostname" => input.host = scalar(v).ok_or("host must be text")?,
            "port" => {
                let p = scalar(v).ok_or("port must be a number")?;
                input.port = Some(
                    p.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("port {p:?} is not a number"))?,
                );
            }
            "DeviceType" | "device_type" => {
                input.device_type = scalar(v).ok_or("DeviceType must be text")?
            }
            "username" | "Username" => {
                input.username = match v {
                    Value::Null => None,
                    v => Some(scalar(v).ok_or("username must be text")?),
                }
            }
            "credential_id" => input.credential_id = scalar(v),
            "tags" => match v {
                Value::Sequence(items) => {
                    for t in items {
                        tags.push(scalar(t).ok_or("tags must be text")?);
                    }
                }
                Value::Null => {}
                other => tags.push(scalar(other).ok_or("tags must be a list")?),
            },
            _ => {
                // Fields other tools keep (Model, Vendor, SerialNumber …) survive as tags.
                if let Some(val) = scalar(v).filter(|s| !s.is_empty()) {
                    tags.push(format!("{key}={val}"));
                }
            }
        }
    }
    if input.display_name.trim().is_empty() {
        input.display_name = input.host.clone();
    }
    if input.device_type.is_empty() {
        return Err("DeviceType is missing".into());
    }
    input.tags = Some(tags);
    Ok(input)
}

/// Values a document may expand to, per byte of its text. An alias repeats its anchor's
/// whole subtree each time it is used, and serde_yaml_ng bounds only how many aliases are
/// followed, not what they expand to: a 1 MiB file of a 170,000-item list and 200,000
/// aliases of it is 3·10¹⁰ values, enough to take the process down. A document without
/// aliases has at most about one value per byte (`[x,x,…]`), so two per byte admits
/// every such document and the defaults a real inventory shares through aliases, and
/// bounds what any file can cost to twice what its size already allows.
const VALUES_PER_BYTE: usize = 2;

/// Counts a document's values (aliases expanded) without building them, and stops at
/// the first one over the budget.
#[derive(Clone, Copy)]
struct ValueBudget<'a>(&'a std::cell::Cell<usize>);

impl ValueBudget<'_> {
    fn take<E: serde::de::Error>(self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(())
            }
            None => Err(E::custom(
                "the document expands to too many values (aliases repeating large anchors?)",
            )),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueBudget<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueBudget<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<(), E> {
        self.take()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.take()?;
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    // A tagged value (`!tag value`).
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        self.take()?;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

/// Parses a YAML document whose values, aliases expanded, fit the text's budget.
fn parse_bounded(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    use serde::de::DeserializeSeed;
    let budget = std::cell::Cell::new(text.len().saturating_mul(VALUES_PER_BYTE).max(64));
    ValueBudget(&budget).deserialize(serde_yaml_ng::Deserializer::from_str(text))?;
    serde_yaml_ng::from_str(text)
}

/// Parses and validates a whole import. Returns every bad row, not just the first.
pub fn parse(text: &str) -> Result<Vec<(RowError, ValidSession)>, InventoryError> {
    let doc: Value = parse_bounded(text)
        .map_err(|e| InventoryError::invalid("invalid_yaml", format!("not valid YAML: {e}")))?;
    let Value::Sequence(folders) = doc else {
        return Err(InventoryError::invalid(
            "invalid_yaml",
            "expected a list of `- folder_name: …` entries",
        ));
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (fi, f) in folders.iter().enumerate() {
        let Some(fmap) = f.as_mapping() else {
            errors.push(RowError {
                folder: format!("#{}", fi + 1),
                row: 0,
                display_name: None,
                message: "folder entry is not a mapping".into(),
            });
            continue;
        };
        let name = fmap
            .get("folder_name")
            .or_else(|| fmap.get("folder"))
            .and_then(scalar)
            .unwrap_or_default();
        let folder = match sessions::check_folder_name(&name) {
            Ok(n) => n,
            Err(e) => {
                errors.push(RowError {
                    folder: format!("#{} {name:?}", fi + 1),
                    row: 0,
                    display_name: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let list = match fmap.get("sessions") {
            Some(Value::Sequence(s)) => s.as_slice(),
            Some(Value::Null) | None => &[],
            Some(_) => {
                errors.push(RowError {
                    folder: folder.clone(),
                    row: 0,
                    display_name: None,
                    message: "sessions must be a list".into(),
                });
                continue;
            }
        };
        for (ri, r) in list.iter().enumerate() {
            let row = ri + 1;
            let display = r.get("display_name").and_then(scalar);
            let fail = |message: String| RowError {
                folder: folder.clone(),
                row,
                display_name: display.clone(),
                message,
            };
            let Some(map) = r.as_mapping() else {
                errors.push(fail("row is not a mapping".into()));
                continue;
            };
            match row_input(&folder, map).and_then(|i| i.validate().map_err(|e| e.to_string())) {
                Ok(v) => {
                    let key = (v.folder.clone(), v.display_name.to_lowercase());
                    if let Some(first) = seen.get(&key) {
                        errors.push(fail(format!("duplicate of row {first} in the same folder")));
                    } else {
                        seen.insert(key, row);
                        rows.push((fail(String::new()), v));
                    }
                }
                Err(m) => errors.push(fail(m)),
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(InventoryError::Import(errors))
    }
}

/// What an import did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
}

/// Applies validated rows in the caller's transaction (all or nothing).
pub fn apply(
    tx: &WriteTransaction,
    ws: &Scope,
    rows: Vec<(RowError, ValidSession)>,
    mode: ImportMode,
    limits: &InventoryConfig,
) -> Result<ImportReport, InventoryError> {
    let owner = ws.key.as_str();
    let before = super::Held::count(tx, owner)?;
    // Credentials are the owner's own ids: check them all before writing anything, so a
    // bad one is reported by row like any other mistake.
    let creds = tx.open_table(CREDENTIALS)?;
    let mut errors = Vec::new();
    for (at, v) in &rows {
        if let Some(c) = &v.credential_id {
            if creds.get((owner, c.as_str()))?.is_none() {
                let mut e = at.clone();
                e.message = format!("credential {c} not found");
                errors.push(e);
            }
        }
    }
    drop(creds);
    if !errors.is_empty() {
        return Err(InventoryError::Import(errors));
    }
    let mut removed = 0;
    if mode == ImportMode::Replace {
        removed = store::delete_owned(&mut tx.open_table(SAVED_SESSIONS)?, owner)?;
        store::delete_owned(&mut tx.open_table(FOLDERS)?, owner)?;
    }
    let existing: Vec<(String, SavedSession)> =
        store::list_owned(&tx.open_table(SAVED_SESSIONS)?, owner)?;
    let mut by_name: HashMap<(String, String), String> = existing
        .into_iter()
        .map(|(id, s)| ((s.folder, s.display_name.to_lowercase()), id))
        .collect();
    let (mut created, mut updated) = (0, 0);
    for (_, v) in rows {
        let key = (v.folder.clone(), v.display_name.to_lowercase());
        match by_name.get(&key) {
            Some(id) => {
                sessions::update_session(tx, ws, id, v)?;
                updated += 1;
            }
            None => {
                let s = sessions::create_session(tx, ws, v)?;
                by_name.insert(key, s.id);
                created += 1;
            }
        }
    }
    super::check_session_room(tx, owner, limits, before)?;
    audit::record(
        tx,
        ws.audit("sessions.import").detail(format!(
            "{mode:?}: {created} created, {updated} updated, {removed} removed"
        )),
    )?;
    Ok(ImportReport {
        created,
        updated,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_layout_maps_fields() {
        let text = "- folder_name: Core\n  sessions:\n  - display_name: sw1\n    host: 10.0.0.1\n    port: '2222'\n    DeviceType: cisco_ios\n    username: admin\n    Model: C9300\n";
        let rows = parse(text).expect("parse");
        assert_eq!(rows.len(), 1);
        let (at, row) = &rows[0];
        assert_eq!((at.folder.as_str(), at.row), ("Core", 1));
        assert_eq!(row.port, 2222);
        assert_eq!(row.folder, "Core");
        assert_eq!(row.tags, vec!["Model=C9300".to_string()]);
    }

    /// A list anchored once and aliased many times: `items × aliases` values.
    fn alias_bomb(items: usize, aliases: usize) -> String {
        let mut text = String::from("- &a [");
        text.push_str(&"x,".repeat(items));
        text.push_str("x]\n- [");
        text.push_str(&"*a,".repeat(aliases));
        text.push_str("*a]\n");
        text
    }

    #[test]
    fn aliases_expanding_past_the_budget_are_refused_before_they_are_built() {
        // 10⁸ values from 80 KB: unbounded, this takes minutes and gigabytes.
        let text = alias_bomb(10_000, 10_000);
        let started = std::time::Instant::now();
        match parse(&text) {
            Err(InventoryError::Invalid { code, message }) => {
                assert_eq!(code, "invalid_yaml");
                assert!(message.contains("too many values"), "{message}");
            }
            other => panic!("expected invalid_yaml, got {other:?}"),
        }
        // Not a timing test: the budget stops it within a few hundred thousand values.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn aliases_that_share_a_value_between_rows_still_import() {
        let text = "- folder_name: A\n  sessions:\n  - {display_name: a, host: h1, DeviceType: linux, username: &u admin}\n  - {display_name: b, host: h2, DeviceType: linux, username: *u}\n";
        let rows = parse(text).expect("parse");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].1.username.as_deref(), Some("admin"));
    }

    #[test]
    fn bad_rows_are_all_reported() {
        let text = "- folder_name: A\n  sessions:\n  - {display_name: ok, host: h1, DeviceType: linux, username: u}\n  - {display_name: badport, host: h2, port: '70000', DeviceType: linux, username: u}\n  - {display_name: badtype, host: h3, DeviceType: toaster, username: u}\n";
        match parse(text) {
            Err(InventoryError::Import(rows)) => {
                assert_eq!(rows.len(), 2);
                assert_eq!(rows[0].row, 2);
                assert_eq!(rows[1].row, 3);
            }
            other => panic!("expected import error, got {other:?}"),
        }
    }
}
