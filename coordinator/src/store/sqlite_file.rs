//! The SQLite database file: created owner-only (0600) before SQLite opens it, and refused at
//! start when group or others have any access to it or to its `-wal`/`-shm` files (they hold
//! runs, plans, logs and, without `--state-key`, state in clear). SQLite gives the `-wal` and
//! `-shm` files the mode of the database file, so a 0600 database keeps them 0600 too.

use crate::error::{Error, Result};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file of a `sqlite://PATH[?query]` URL, unless the database lives in memory.
pub fn path_of(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.starts_with(":memory:") || query.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Checks the modes of an existing database and its `-wal`/`-shm` files, then creates the
/// database file with mode 0600 if it does not exist yet.
pub fn prepare(db: &Path) -> Result<()> {
    check_modes(db)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(_) => Ok(()),
        // Created meanwhile by someone else: its mode decides, as for any existing file.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => check_modes(db),
        Err(e) => Err(Error::Internal(format!(
            "cannot create the database file {}: {e}; check that its directory exists and the coordinator may write there",
            db.display()
        ))),
    }
}

fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Refuses (naming each file, its mode and the fix) when group or others may access a file.
fn check_modes(db: &Path) -> Result<()> {
    let mut open = Vec::new();
    for f in [
        db.to_path_buf(),
        companion(db, "-wal"),
        companion(db, "-shm"),
    ] {
        match std::fs::metadata(&f) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                open.push((f, m.permissions().mode() & 0o7777));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot read the mode of the database file {}: {e}",
                    f.display()
                )))
            }
        }
    }
    if open.is_empty() {
        return Ok(());
    }
    let described: Vec<String> = open
        .iter()
        .map(|(f, m)| format!("{} has mode {m:04o}", f.display()))
        .collect();
    let paths: Vec<String> = open.iter().map(|(f, _)| f.display().to_string()).collect();
    Err(Error::PermissionDenied(format!(
        "the database is readable by other local users: {}; it holds runs, plans, logs and state, so the coordinator refuses to use it until only its owner may: run `chmod 600 {}` and start again",
        described.join(", "),
        paths.join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_file() {
        assert_eq!(path_of("sqlite://x/t.db"), Some(PathBuf::from("x/t.db")));
        assert_eq!(
            path_of("sqlite:///abs/t.db?mode=rwc"),
            Some(PathBuf::from("/abs/t.db"))
        );
        assert_eq!(path_of("sqlite://:memory:"), None);
        assert_eq!(path_of("sqlite://x?mode=memory"), None);
        assert_eq!(path_of("postgres://u@h/db"), None);
    }

    #[test]
    fn a_new_file_is_private_and_an_open_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("tofuflow-dbmode-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("t.db");
        prepare(&db).unwrap();
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        prepare(&db).unwrap();
        let wal = companion(&db, "-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = prepare(&db).unwrap_err().to_string();
        assert!(e.contains("t.db-wal has mode 0640"), "{e}");
        assert!(e.contains(&format!("chmod 600 {}", wal.display())), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
