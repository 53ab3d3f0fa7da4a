//! Config versions: content-addressed by the SHA-256 of the cleaned config. A backup
//! whose config is unchanged makes no new version; it records `last_checked` on the
//! newest one. Retention keeps at most `keep_versions` per device and drops versions
//! older than `keep_days` (never a device's newest).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use similar::{ChangeTag, TextDiff};

use super::JobError;
use crate::store::{self, CONFIG_INDEX, CONFIG_VERSIONS};

/// One stored config version.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Version {
    pub id: String,
    pub session_id: String,
    pub created_at: i64,
    pub sha256: String,
    pub bytes: usize,
    pub last_checked: i64,
    /// The job that stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The cleaned config (left out of lists).
    #[serde(default)]
    pub text: String,
}

impl Version {
    /// The version without its text, for lists.
    pub fn meta(&self) -> VersionMeta {
        VersionMeta {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            created_at: self.created_at,
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            last_checked: self.last_checked,
            job_id: self.job_id.clone(),
        }
    }
}

/// A config version without its text, as lists show it (and as [`CONFIG_INDEX`] keeps
/// it).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionMeta {
    pub id: String,
    pub session_id: String,
    pub created_at: i64,
    pub sha256: String,
    pub bytes: usize,
    pub last_checked: i64,
    #[serde(default)]
    pub job_id: Option<String>,
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Key of a version's index row: a device's versions are one range.
fn index_key(session_id: &str, version_id: &str) -> String {
    format!("{session_id}/{version_id}")
}

/// The index rows of one device (`Some`) or of the whole workspace, in any order.
fn read_index<T>(
    table: &T,
    workspace: &str,
    session_id: Option<&str>,
) -> Result<Vec<VersionMeta>, JobError>
where
    T: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let Some(session) = session_id else {
        let all: Vec<(String, VersionMeta)> = store::list_owned(table, workspace)?;
        return Ok(all.into_iter().map(|(_, v)| v).collect());
    };
    // `0` is the character after `/`: the range holds exactly "<session id>/…".
    let (from, to) = (format!("{session}/"), format!("{session}0"));
    let mut out = Vec::new();
    for row in table.range((workspace, from.as_str())..(workspace, to.as_str()))? {
        out.push(store::decode(row?.1.value())?);
    }
    Ok(out)
}

fn newest_first(v: &mut [VersionMeta]) {
    v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}

/// Versions of one device (or all devices) in `workspace`, newest first, without their
/// text: read from the index, never from the configs themselves.
pub fn list(
    tx: &ReadTransaction,
    workspace: &str,
    session_id: Option<&str>,
) -> Result<Vec<VersionMeta>, JobError> {
    let mut v = read_index(&tx.open_table(CONFIG_INDEX)?, workspace, session_id)?;
    newest_first(&mut v);
    Ok(v)
}

/// A version with its text. When it was last seen unchanged is kept in its index row
/// only (an unchanged backup, the common case, writes that small row, not the text).
pub fn get(tx: &ReadTransaction, workspace: &str, id: &str) -> Result<Version, JobError> {
    let mut v: Version = store::get_owned(&tx.open_table(CONFIG_VERSIONS)?, workspace, id)?
        .ok_or(JobError::NotFound("config version"))?;
    let index = tx.open_table(CONFIG_INDEX)?;
    if let Some(row) = index.get((workspace, index_key(&v.session_id, id).as_str()))? {
        let meta: VersionMeta = store::decode(row.value())?;
        v.last_checked = v.last_checked.max(meta.last_checked);
    }
    Ok(v)
}

/// What [`record`] did.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The device's current version.
    pub id: String,
    /// Whether it is new.
    pub changed: bool,
    /// The version it replaced as newest, if any (none for a device's first backup).
    pub previous: Option<String>,
    pub sha256: String,
}

/// Records a backup: a new version if the text differs from the device's newest,
/// else only `last_checked`.
pub fn record(
    tx: &WriteTransaction,
    workspace: &str,
    session_id: &str,
    job_id: &str,
    text: &str,
    keep_versions: usize,
    keep_days: u64,
) -> Result<Recorded, JobError> {
    let now = store::now();
    let sha = sha256_hex(text);
    let mut index = tx.open_table(CONFIG_INDEX)?;
    let mut table = tx.open_table(CONFIG_VERSIONS)?;
    let mut mine = read_index(&index, workspace, Some(session_id))?;
    newest_first(&mut mine);
    if let Some(newest) = mine.first_mut() {
        if newest.sha256 == sha {
            newest.last_checked = now;
            let id = newest.id.clone();
            index.insert(
                (workspace, index_key(session_id, &id).as_str()),
                store::encode(&*newest)?.as_slice(),
            )?;
            return Ok(Recorded {
                id,
                changed: false,
                previous: None,
                sha256: sha,
            });
        }
    }
    let previous = mine.first().map(|v| v.id.clone());
    let id = version_id(previous.as_deref());
    let v = Version {
        id: id.clone(),
        session_id: session_id.to_string(),
        created_at: now,
        sha256: sha.clone(),
        bytes: text.len(),
        last_checked: now,
        job_id: Some(job_id.to_string()),
        text: text.to_string(),
    };
    table.insert((workspace, id.as_str()), store::encode(&v)?.as_slice())?;
    index.insert(
        (workspace, index_key(session_id, &id).as_str()),
        store::encode(&v.meta())?.as_slice(),
    )?;
    // Retention: the new one is newest; drop beyond the count and past the age.
    let cutoff = now - (keep_days as i64).saturating_mul(86_400);
    for (i, old) in mine.iter().enumerate() {
        if i + 1 >= keep_versions.max(1) || (keep_days > 0 && old.created_at < cutoff) {
            table.remove((workspace, old.id.as_str()))?;
            index.remove((workspace, index_key(session_id, &old.id).as_str()))?;
        }
    }
    Ok(Recorded {
        id,
        changed: true,
        previous,
        sha256: sha,
    })
}

/// A line of a structured diff hunk.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiffLine {
    /// `equal`, `insert` or `delete`.
    #[schema(value_type = String)]
    pub tag: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_line: Option<usize>,
    pub text: String,
}

/// A hunk of a diff, with its lines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Hunk {
    pub old_start: usize,
    pub old_lines: usize,
    pub new_start: usize,
    pub new_lines: usize,
    pub lines: Vec<DiffLine>,
}

/// Two versions compared: the unified text and the same as structured hunks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Diff {
    pub from: String,
    pub to: String,
    pub unified: String,
    pub hunks: Vec<Hunk>,
    pub stats: DiffStats,
}

/// Lines added and removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiffStats {
    pub added: usize,
    pub removed: usize,
}

/// Longest a diff searches for the smallest set of changes. Myers' algorithm is
/// quadratic in the changed lines: two large configs that share little took minutes of a
/// worker. Past the deadline the diff is still correct, only less minimal.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
/// Largest pair of texts diffed (together). Each line of the answer is a string in the
/// hunks as well as in the unified text, so the answer is several times the input.
pub const MAX_DIFF_BYTES: usize = 16 * 1024 * 1024;

/// Diffs two versions' texts (3 lines of context), within [`DIFF_DEADLINE`]. The caller
/// keeps the texts under [`MAX_DIFF_BYTES`].
pub fn diff(from: &Version, to: &Version) -> Diff {
    let d = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(from.text.as_str(), to.text.as_str());
    let unified = d
        .unified_diff()
        .context_radius(3)
        .header(&from.id, &to.id)
        .to_string();
    let (mut added, mut removed) = (0, 0);
    let mut hunks = Vec::new();
    for group in d.grouped_ops(3) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        let mut lines = Vec::new();
        for op in &group {
            for change in d.iter_changes(op) {
                match change.tag() {
                    ChangeTag::Insert => added += 1,
                    ChangeTag::Delete => removed += 1,
                    ChangeTag::Equal => {}
                }
                lines.push(DiffLine {
                    tag: match change.tag() {
                        ChangeTag::Equal => "equal",
                        ChangeTag::Insert => "insert",
                        ChangeTag::Delete => "delete",
                    },
                    old_line: change.old_index().map(|i| i + 1),
                    new_line: change.new_index().map(|i| i + 1),
                    text: change.value().trim_end_matches('\n').to_string(),
                });
            }
        }
        hunks.push(Hunk {
            old_start: old.start + 1,
            old_lines: old.len(),
            new_start: new.start + 1,
            new_lines: new.len(),
            lines,
        });
    }
    Diff {
        from: from.id.clone(),
        to: to.id.clone(),
        unified,
        hunks,
        stats: DiffStats { added, removed },
    }
}

/// A new version's id: 16 hex digits of nanoseconds since the epoch, then 8 random hex
/// digits. Versions of one second (two backups in quick succession) keep their order
/// under "newest first" (`created_at`, then id), and an id is always above its device's
/// previous one, even if the clock stepped back.
fn version_id(previous: Option<&str>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let after_previous = previous
        .and_then(|p| p.get(..16))
        .and_then(|p| u64::from_str_radix(p, 16).ok())
        .map_or(0, |p| p.saturating_add(1));
    format!(
        "{:016x}{}",
        nanos.max(after_previous),
        &store::new_id()[..8]
    )
}

#[cfg(test)]
mod version_id_tests {
    use super::version_id;

    #[test]
    fn a_new_id_sorts_after_the_previous_one() {
        let first = version_id(None);
        let second = version_id(Some(&first));
        assert!(second > first, "{second} <= {first}");
        // A previous id from a clock that ran ahead still sorts below the next one.
        let ahead = format!("{:016x}{}", u64::MAX - 5, "abcdef01");
        assert!(version_id(Some(&ahead)) > ahead);
        assert_eq!(version_id(None).len(), 24);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, text: String) -> Version {
        Version {
            id: id.into(),
            session_id: "s".into(),
            created_at: 0,
            sha256: String::new(),
            bytes: text.len(),
            last_checked: 0,
            job_id: None,
            text,
        }
    }

    #[test]
    fn two_configs_that_share_nothing_are_diffed_within_the_deadline() {
        // The same lines in the opposite order, the worst case of Myers' search: the
        // answer is a correct diff whether or not the deadline cut the search short.
        let lines: Vec<String> = (0..30_000).map(|i| format!("interface x{i}\n")).collect();
        let a: String = lines.concat();
        let b: String = lines.iter().rev().cloned().collect();
        let d = diff(&version("a", a), &version("b", b));
        assert_eq!(d.stats.added, d.stats.removed);
        assert!(d.stats.added >= 29_999, "{}", d.stats.added);
    }

    #[test]
    fn a_small_change_is_a_small_hunk() {
        let a = "hostname r1\ninterface x\n description old\n!\n".to_string();
        let b = "hostname r1\ninterface x\n description new\n!\n".to_string();
        let d = diff(&version("a", a), &version("b", b));
        assert_eq!((d.stats.added, d.stats.removed), (1, 1));
        assert_eq!(d.hunks.len(), 1);
        assert!(d.unified.contains("+ description new"), "{}", d.unified);
    }
}

#[cfg(test)]
mod index_tests {
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::store::{Store, StoreError, META};

    fn backup(store: &Store, session: &str, text: &str) -> Recorded {
        let (s, t) = (session.to_string(), text.to_string());
        store
            .write_blocking(move |tx| record(tx, "alice", &s, "job1", &t, 2, 0))
            .expect("record")
    }

    #[test]
    fn a_devices_versions_come_from_the_index_and_a_schema_2_store_gets_one() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let store = Store::open(dir.path()).expect("open");
            let a1 = backup(&store, "sa", "hostname a\n");
            assert!(a1.changed);
            assert!(!backup(&store, "sa", "hostname a\n").changed);
            let a2 = backup(&store, "sa", "hostname a2\n");
            let a3 = backup(&store, "sa", "hostname a3\n");
            // Retention (2 a device): a1 went from the versions and from the index.
            let b1 = backup(&store, "sb", "hostname b\n");
            let listed = store
                .read_blocking(|tx| list(tx, "alice", Some("sa")))
                .expect("list");
            let ids: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
            assert_eq!(ids, [a3.id.as_str(), a2.id.as_str()]);
            assert!(store.read_blocking(|tx| get(tx, "alice", &a1.id)).is_err());
            let all = store
                .read_blocking(|tx| list(tx, "alice", None))
                .expect("list");
            assert_eq!(all.len(), 3);
            assert_eq!(all[0].id, b1.id);
            // As a schema 2 store was: no index.
            store
                .write_blocking(|tx| -> Result<(), StoreError> {
                    tx.delete_table(CONFIG_INDEX)?;
                    tx.open_table(META)?
                        .insert("schema_version", 2u32.to_be_bytes().as_slice())?;
                    Ok(())
                })
                .expect("downgrade");
        }
        let store = Store::open(dir.path()).expect("open migrates");
        let all = store
            .read_blocking(|tx| list(tx, "alice", None))
            .expect("list");
        assert_eq!(all.len(), 3, "the index was rebuilt from the versions");
        let rows = store
            .read_blocking(|tx| -> Result<u64, StoreError> {
                Ok(tx.open_table(CONFIG_INDEX)?.len()?)
            })
            .expect("len");
        assert_eq!(rows, 3);
        let sa = store
            .read_blocking(|tx| list(tx, "alice", Some("sa")))
            .expect("list");
        assert_eq!(sa.len(), 2);
        assert!(sa.iter().all(|v| v.session_id == "sa"));
    }
}
