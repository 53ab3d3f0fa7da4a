//! The data directory is private to the gateway's user: the directory 0700, every file
//! in it 0600. It holds the login sessions, the audit log and the master key; read by
//! another local user, it once gave away a working admin session.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) mode 0700, or tightens an existing one, saying so.
pub fn prepare_data_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir, DIR_MODE)
}

/// Creates `path` empty with mode 0600 if it does not exist, so that whatever opens it
/// next never makes it world-readable, even for a moment.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tightens the directory and every file in it (recursively) that group or others may
/// read, write or enter, with a warning per path.
pub fn tighten_data_dir(dir: &Path) -> io::Result<()> {
    tighten(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tighten_data_dir(&entry.path())?;
        } else if kind.is_file() {
            tighten(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            was = format!("{current:o}"),
            now = format!("{mode:o}"),
            "data directory entry was open to other users; tightened"
        );
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_dir_and_files_are_tightened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        let f = dir.join("x");
        std::fs::write(&f, b"x").expect("write");
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).expect("chmod");
        prepare_data_dir(&dir).expect("prepare");
        tighten_data_dir(&dir).expect("tighten");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&f), 0o600);
    }
}
