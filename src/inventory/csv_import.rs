//! Bulk import of saved sessions from a spreadsheet: UTF-8 CSV with a header row
//! (`folder,display_name,host,port,username,device_type,credential,tags`).
//!
//! Every row is checked first (the same rules as the API, reported by row number),
//! duplicates are found within the file (same host and port, or same display name in a
//! folder) and against the workspace's inventory, and then everything is applied in one
//! transaction or nothing is. Excel's habits are accepted: a byte-order mark, `;` as the
//! separator (chosen from the header line), CRLF line ends, quoted fields with commas.
//! The parser is linear and the body is bounded by `max_body_bytes`; rows are capped at
//! [`MAX_ROWS`].

use std::collections::HashMap;

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};

use super::sessions::{self, SavedSession, SessionInput, ValidSession};
use super::yaml::{ImportMode, RowError};
use super::{credentials, InventoryError};
use crate::audit;
use crate::config::InventoryConfig;
use crate::store::{self, FOLDERS, SAVED_SESSIONS};
use crate::workspace::Scope;

/// Rows one file may hold.
pub const MAX_ROWS: usize = 50_000;

/// The columns, in the template's order.
pub const COLUMNS: [&str; 8] = [
    "folder",
    "display_name",
    "host",
    "port",
    "username",
    "device_type",
    "credential",
    "tags",
];

/// `GET /api/sessions/import/template.csv`: the header and one example row.
pub const TEMPLATE: &str = "folder,display_name,host,port,username,device_type,credential,tags\r\n\
Core,core-sw1,10.0.0.1,22,admin,cisco_ios,lab-password,\"site=lab|role=core\"\r\n";

/// What to do with a row that matches a session already in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Refuse the whole file.
    #[default]
    Fail,
    /// Leave the existing session as it is.
    Skip,
    /// Overwrite the existing session with the row.
    Update,
}

/// One checked row.
#[derive(Debug, Clone)]
pub struct CsvRow {
    /// 1-based line of the data (the header is row 0).
    pub row: usize,
    session: ValidSession,
    credential: Option<String>,
}

/// A row in the answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RowRef {
    pub row: usize,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What an import did (or, for a dry run, would do).
#[derive(Debug, Serialize, Default, utoipa::ToSchema)]
pub struct CsvReport {
    /// False when at least one row is refused: then nothing is (or would be) applied.
    pub valid: bool,
    pub created: Vec<RowRef>,
    pub updated: Vec<RowRef>,
    pub skipped: Vec<RowRef>,
    /// Every refused row with its reason. A real import never applies a file with a
    /// refused row (it answers 400 `import_invalid`), so this is only ever filled by a
    /// dry run (`dry_run=true`), which lists them all as data.
    pub refused: Vec<RowError>,
    /// Sessions removed first (`mode=replace`).
    pub removed: usize,
}

impl CsvReport {
    /// The answer of a dry run whose file is refused.
    pub fn refused(rows: Vec<RowError>) -> CsvReport {
        CsvReport {
            refused: rows,
            ..CsvReport::default()
        }
    }
}

fn row_error(row: usize, folder: &str, name: Option<&str>, message: impl Into<String>) -> RowError {
    RowError {
        folder: folder.to_string(),
        row,
        display_name: name.map(str::to_string),
        message: message.into(),
    }
}

fn bad_file(message: impl Into<String>) -> InventoryError {
    InventoryError::invalid("invalid_csv", message)
}

/// Parses and checks a whole file. Returns every bad row, not just the first.
pub fn parse(body: &[u8]) -> Result<Vec<CsvRow>, InventoryError> {
    let text = std::str::from_utf8(body).map_err(|_| bad_file("the file is not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header_line = text.lines().next().unwrap_or("");
    // Excel writes `;` where the locale uses the comma for decimals.
    let separator = if header_line.contains(';') && !header_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| bad_file(format!("cannot read the header row: {e}")))?
        .clone();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        match COLUMNS.iter().find(|c| **c == name) {
            Some(c) => {
                if at.insert(c, i).is_some() {
                    return Err(bad_file(format!("column {c:?} appears twice")));
                }
            }
            None => {
                return Err(bad_file(format!(
                    "unknown column {h:?}; the columns are {}",
                    COLUMNS.join(",")
                )))
            }
        }
    }
    for required in ["display_name", "host", "device_type"] {
        if !at.contains_key(required) {
            return Err(bad_file(format!("the header has no {required:?} column")));
        }
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut by_name: HashMap<(String, String), usize> = HashMap::new();
    let mut by_addr: HashMap<(String, u16), usize> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        if row > MAX_ROWS {
            return Err(bad_file(format!("more than {MAX_ROWS} rows")));
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(row_error(row, "", None, format!("not valid CSV: {e}")));
                continue;
            }
        };
        if record.iter().all(|f| f.is_empty()) {
            continue; // a blank line, as spreadsheets leave at the end
        }
        let field = |c: &str| -> Option<String> {
            at.get(c)
                .and_then(|&i| record.get(i))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let folder = field("folder").unwrap_or_else(|| sessions::DEFAULT_FOLDER.to_string());
        let name = field("display_name").unwrap_or_default();
        let port = match field("port") {
            None => None,
            Some(p) => match p.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(row_error(
                        row,
                        &folder,
                        Some(&name),
                        format!("port {p:?} is not a number"),
                    ));
                    continue;
                }
            },
        };
        let tags = field("tags").map(|t| {
            t.split(['|', ','])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        let input = SessionInput {
            folder: Some(folder.clone()),
            display_name: name.clone(),
            host: field("host").unwrap_or_default(),
            port,
            username: field("username"),
            device_type: field("device_type").unwrap_or_default(),
            credential_id: None,
            tags,
        };
        let session = match input.validate() {
            Ok(v) => v,
            Err(e) => {
                errors.push(row_error(row, &folder, Some(&name), e.to_string()));
                continue;
            }
        };
        let name_key = (session.folder.clone(), session.display_name.to_lowercase());
        let addr_key = (session.host.to_lowercase(), session.port);
        if let Some(first) = by_name.get(&name_key) {
            errors.push(row_error(
                row,
                &folder,
                Some(&name),
                format!(
                    "duplicate of row {first}: same display name in folder {:?}",
                    session.folder
                ),
            ));
            continue;
        }
        if let Some(first) = by_addr.get(&addr_key) {
            errors.push(row_error(
                row,
                &folder,
                Some(&name),
                format!(
                    "duplicate of row {first}: same host and port {}:{}",
                    session.host, session.port
                ),
            ));
            continue;
        }
        by_name.insert(name_key, row);
        by_addr.insert(addr_key, row);
        rows.push(CsvRow {
            row,
            session,
            credential: field("credential"),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(InventoryError::Import(errors))
    }
}

/// What one row will do.
enum Plan {
    Create,
    Update(String),
    Skip(String),
}

/// Applies checked rows in the caller's transaction: every decision is made (and every
/// problem found) before anything is written, so a refused file changes nothing.
pub fn apply(
    tx: &WriteTransaction,
    ws: &Scope,
    rows: Vec<CsvRow>,
    mode: ImportMode,
    on_duplicate: OnDuplicate,
    limits: &InventoryConfig,
) -> Result<CsvReport, InventoryError> {
    let owner = ws.key.as_str();
    let before = super::Held::count(tx, owner)?;
    // Credentials by name (a name used twice in the workspace is ambiguous).
    let mut creds: HashMap<String, Vec<String>> = HashMap::new();
    for (id, name) in credentials::names(tx, owner)? {
        creds.entry(name.to_lowercase()).or_default().push(id);
    }
    let existing: Vec<(String, SavedSession)> = if mode == ImportMode::Replace {
        Vec::new()
    } else {
        store::list_owned(&tx.open_table(SAVED_SESSIONS)?, owner)?
    };
    let by_name: HashMap<(String, String), &str> = existing
        .iter()
        .map(|(id, s)| {
            (
                (s.folder.clone(), s.display_name.to_lowercase()),
                id.as_str(),
            )
        })
        .collect();
    let by_addr: HashMap<(String, u16), &str> = existing
        .iter()
        .map(|(id, s)| ((s.host.to_lowercase(), s.port), id.as_str()))
        .collect();
    let mut errors = Vec::new();
    let mut plans = Vec::with_capacity(rows.len());
    // Existing session id → the row that matched it first: two rows of one file (one by
    // name, one by address) must not both overwrite the same session (skipping it twice
    // is harmless).
    let mut claimed: HashMap<String, usize> = HashMap::new();
    for mut r in rows {
        let s = &r.session;
        if let Some(name) = &r.credential {
            match creds.get(&name.to_lowercase()).map(Vec::as_slice) {
                Some([id]) => r.session.credential_id = Some(id.clone()),
                Some([]) | None => {
                    errors.push(row_error(
                        r.row,
                        &s.folder,
                        Some(&s.display_name),
                        format!("no credential named {name:?}"),
                    ));
                    continue;
                }
                Some(_) => {
                    errors.push(row_error(
                        r.row,
                        &s.folder,
                        Some(&s.display_name),
                        format!("more than one credential is named {name:?}; rename one"),
                    ));
                    continue;
                }
            }
        }
        let s = &r.session;
        let found = by_name
            .get(&(s.folder.clone(), s.display_name.to_lowercase()))
            .or_else(|| by_addr.get(&(s.host.to_lowercase(), s.port)));
        if let (Some(id), OnDuplicate::Update) = (found, on_duplicate) {
            if let Some(first) = claimed.insert(id.to_string(), r.row) {
                errors.push(row_error(
                    r.row,
                    &s.folder,
                    Some(&s.display_name),
                    format!("matches the same saved session ({id}) as row {first}"),
                ));
                continue;
            }
        }
        let plan = match (found, on_duplicate) {
            (None, _) => Plan::Create,
            (Some(id), OnDuplicate::Update) => Plan::Update(id.to_string()),
            (Some(id), OnDuplicate::Skip) => Plan::Skip(id.to_string()),
            (Some(id), OnDuplicate::Fail) => {
                errors.push(row_error(
                    r.row,
                    &s.folder,
                    Some(&s.display_name),
                    format!("already in the inventory (session {id}, same display name in the folder or same host and port); use on_duplicate=skip or update"),
                ));
                continue;
            }
        };
        plans.push((r, plan));
    }
    if !errors.is_empty() {
        return Err(InventoryError::Import(errors));
    }
    let mut report = CsvReport {
        valid: true,
        ..CsvReport::default()
    };
    if mode == ImportMode::Replace {
        report.removed = store::delete_owned(&mut tx.open_table(SAVED_SESSIONS)?, owner)?;
        store::delete_owned(&mut tx.open_table(FOLDERS)?, owner)?;
    }
    for (r, plan) in plans {
        let display_name = r.session.display_name.clone();
        match plan {
            Plan::Create => {
                let s = sessions::create_session(tx, ws, r.session)?;
                report.created.push(RowRef {
                    row: r.row,
                    display_name,
                    id: Some(s.id),
                });
            }
            Plan::Update(id) => {
                sessions::update_session(tx, ws, &id, r.session)?;
                report.updated.push(RowRef {
                    row: r.row,
                    display_name,
                    id: Some(id),
                });
            }
            Plan::Skip(id) => report.skipped.push(RowRef {
                row: r.row,
                display_name,
                id: Some(id),
            }),
        }
    }
    super::check_session_room(tx, owner, limits, before)?;
    audit::record(
        tx,
        ws.audit("sessions.import").detail(format!(
            "CSV {mode:?}: {} created, {} updated, {} skipped, {} removed",
            report.created.len(),
            report.updated.len(),
            report.skipped.len(),
            report.removed
        )),
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_quirks_parse() {
        let body = "\u{feff}folder;display_name;host;port;device_type;tags\r\nCore;sw1;10.0.0.1;22;cisco_ios;\"a=1,b=2\"\r\n\r\n";
        let rows = parse(body.as_bytes()).expect("parse");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].session.tags,
            vec!["a=1".to_string(), "b=2".to_string()]
        );
        assert_eq!(rows[0].session.host, "10.0.0.1");
    }

    #[test]
    fn duplicates_within_the_file_are_reported_by_row() {
        let body = "display_name,host,device_type\nsw1,10.0.0.1,linux\nsw2,10.0.0.1,linux\nSW1,10.0.0.2,linux\n";
        let Err(InventoryError::Import(errs)) = parse(body.as_bytes()) else {
            panic!("duplicates accepted")
        };
        assert_eq!(errs.iter().map(|e| e.row).collect::<Vec<_>>(), vec![2, 3]);
    }
}
