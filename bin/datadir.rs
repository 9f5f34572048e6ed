//! sled's files in the datadir, checked before sled opens it.
//!
//! sled keeps its rows in one data file, `db`, beside `conf` (its settings) and `snap.*`
//! (snapshots that point into `db`). A deleted `db` is not something sled reports: it creates an
//! empty one, writes a new snapshot, and then either fails with "Read corrupted data at file
//! offset …" (the old snapshot points into the missing file) or opens an empty database as if
//! nothing had been recorded. So this check runs first, and names what is missing.

use std::path::{Path, PathBuf};

/// sled's data file.
const DATA_FILE: &str = "db";
/// sled's settings, written when the database is created.
const CONF_FILE: &str = "conf";

/// A datadir that sled would misread.
#[derive(Debug, thiserror::Error)]
pub enum DatadirError {
    /// `conf` is there, `db` is not.
    #[error(
        "the database in {dir} is missing its data file {file}: the directory holds sled's `conf`{snapshots} but not `db`, the file with every recorded row (deleted, or left out of a copy). Restore the whole datadir from a backup, or move the directory aside to start an empty database"
    )]
    MissingDataFile {
        /// The datadir.
        dir: String,
        /// Where the data file should be.
        file: String,
        /// `" and snapshots"` when there are any.
        snapshots: &'static str,
    },
    /// `db` is empty while a snapshot points into it: it was deleted, and recreated empty by an
    /// earlier attempt to open the directory.
    #[error(
        "the database in {dir} is missing its data: the data file {file} is empty while sled's snapshot {snapshot} points into it (it was deleted, and recreated empty when the directory was opened since). Restore the whole datadir from a backup, or move the directory aside to start an empty database"
    )]
    EmptyDataFile {
        /// The datadir.
        dir: String,
        /// The data file.
        file: String,
        /// The snapshot that refers to data.
        snapshot: String,
    },
    /// The directory cannot be listed.
    #[error("cannot read the datadir {dir}: {source}")]
    Unreadable {
        /// The datadir.
        dir: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `Ok` when sled can open `dir` for what it is: no directory or an empty one (a new database),
/// or one whose `conf` has its data file `db`.
pub fn check(dir: &Path) -> Result<(), DatadirError> {
    let shown = || dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(DatadirError::Unreadable { dir: shown(), source }),
    };
    let mut snapshots: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DatadirError::Unreadable { dir: shown(), source })?;
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            snapshots.push(entry.path());
        }
    }
    if !dir.join(CONF_FILE).exists() {
        // Not (yet) a sled database: sled creates one.
        return Ok(());
    }
    let data = dir.join(DATA_FILE);
    let file = data.display().to_string();
    match std::fs::metadata(&data) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DatadirError::MissingDataFile {
            dir: shown(),
            file,
            snapshots: if snapshots.is_empty() { "" } else { " and snapshots" },
        }),
        Err(source) => Err(DatadirError::Unreadable { dir: shown(), source }),
        // sled only writes a snapshot of what its data file holds: an empty data file beside one
        // lost its rows. (A data file empty without a snapshot is a database that never got
        // past its creation: sled opens it as new, rightly.)
        Ok(meta) if meta.len() == 0 && !snapshots.is_empty() => {
            snapshots.sort();
            let snapshot = snapshots.last().map(|s| s.display().to_string()).unwrap_or_default();
            Err(DatadirError::EmptyDataFile { dir: shown(), file, snapshot })
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A database with one row, closed.
    fn database(dir: &Path) {
        let db = rollup_supervisor_storage::ChainsDb::open(dir).unwrap_or_else(|e| panic!("{e}"));
        drop(db);
    }

    #[test]
    fn new_and_intact_databases_pass() {
        let d = dir();
        assert!(check(&d.path().join("absent")).is_ok());
        assert!(check(d.path()).is_ok(), "an empty directory is a new database");
        database(d.path());
        assert!(check(d.path()).is_ok());
        database(d.path());
        assert!(check(d.path()).is_ok(), "reopened");
    }

    #[test]
    fn a_deleted_data_file_is_named_and_the_directory_left_alone() {
        let d = dir();
        database(d.path());
        std::fs::remove_file(d.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
        let err = check(d.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("missing its data file") && err.contains(&d.path().join("db").display().to_string()),
            "{err}"
        );
        assert!(!err.contains("corrupt"), "{err}");
        assert!(!d.path().join("db").exists(), "the check creates nothing");
    }

    #[test]
    fn a_data_file_recreated_empty_by_sled_is_named() {
        let d = dir();
        database(d.path());
        std::fs::remove_file(d.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
        // What opening the directory anyway leaves: sled recreates `db` empty beside a snapshot.
        std::fs::write(d.path().join("db"), b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.path().join("snap.000000000001AB03"), [1u8; 100]).unwrap_or_else(|e| panic!("{e}"));
        let err = check(d.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("is empty while sled's snapshot") && err.contains("snap.000000000001AB03"), "{err}");
        // Without a snapshot an empty data file is a database that never got past its creation.
        std::fs::remove_file(d.path().join("snap.000000000001AB03")).unwrap_or_else(|e| panic!("{e}"));
        assert!(check(d.path()).is_ok());
    }
}
