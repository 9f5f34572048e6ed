//! [`DurableDb`]: a [`ChainsDb`] whose readers only ever see what reached the disk.
//!
//! sled applies a write in memory before it flushes it. When the flush fails (a full disk), the
//! write stays visible in memory although the disk never got it, and sled refuses every later
//! write with the same error for as long as the process keeps it open, even once space returns.
//! So the first disk error closes the database: the value is dropped, every call meanwhile is
//! [`StorageError::Unavailable`], and the first call at least [`REOPEN_EVERY`] later reopens it
//! from its directory, which holds exactly what became durable (sled recovers a transaction
//! whole or not at all). What the process had not made durable is forgotten; the writers reload
//! their tips from the reopened database and write it again.
//!
//! Any other error sled reports from a write (corruption it found, or a bug of its own) closes
//! it too, since its memory is then no guide to the disk either; but the writer gets sled's
//! error itself, which stops it (its supervisor restarts it with backoff, as for a corrupt row),
//! so that a fault which returns at every reopen shows as a restart loop, not as a disk that
//! keeps filling up.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::{debug, error, info, warn};

use crate::{ChainsDb, Result, StorageError, WriteGate};

/// How often a closed database is reopened, at most.
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// See the module documentation.
#[derive(Debug)]
pub struct DurableDb {
    state: State,
    /// Where to reopen it from (`None`: in memory, never reopened).
    path: Option<PathBuf>,
    /// Carried over to every reopened value: identity verification outlives a disk failure.
    gate: WriteGate,
}

#[derive(Debug)]
// One value per process, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum State {
    Open(ChainsDb),
    /// Closed by a disk failure or a sled error; `warned`: a failed reopen has been logged once.
    Closed {
        cause: String,
        at: Instant,
        last_attempt: Instant,
        warned: bool,
    },
}

impl DurableDb {
    /// Wraps an open database.
    pub fn new(db: ChainsDb) -> Self {
        Self { path: db.path().map(ToOwned::to_owned), gate: db.write_gate(), state: State::Open(db) }
    }

    /// Runs `f` on the database, reopening it first if a disk failure closed it (at most once
    /// per [`REOPEN_EVERY`]). A sled error from `f` closes it (see [`Self::failed`]).
    pub fn run<T>(&mut self, f: impl FnOnce(&mut ChainsDb) -> Result<T>) -> Result<T> {
        self.run_with(false, f)
    }

    /// [`Self::run`], reopening now however recently the last attempt failed (a stop's final
    /// flush must not fail only because it came soon after an attempt).
    pub fn run_now<T>(&mut self, f: impl FnOnce(&mut ChainsDb) -> Result<T>) -> Result<T> {
        self.run_with(true, f)
    }

    /// Whether the database is open (no disk failure, or reopened since).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// The open database, without trying to reopen a closed one.
    pub fn current(&mut self) -> Option<&mut ChainsDb> {
        match &mut self.state {
            State::Open(db) => Some(db),
            State::Closed { .. } => None,
        }
    }

    /// The open database to read, without trying to reopen a closed one.
    pub fn get(&self) -> Option<&ChainsDb> {
        match &self.state {
            State::Open(db) => Some(db),
            State::Closed { .. } => None,
        }
    }

    /// Runs the query `f` on the open database; [`StorageError::Unavailable`] while closed. It
    /// neither reopens nor closes (that needs `&mut self`): a reader that shares the database
    /// ([`crate::SharedDb`]) calls [`Self::reopen_if_due`] first and hands a disk error from `f`
    /// to [`Self::failed`].
    pub fn query<T>(&self, f: impl FnOnce(&ChainsDb) -> Result<T>) -> Result<T> {
        match &self.state {
            State::Open(db) => f(db),
            State::Closed { cause, at, .. } => Err(unavailable(cause, *at)),
        }
    }

    /// Whether the database is closed and the last attempt to reopen it is [`REOPEN_EVERY`] old.
    pub fn reopen_due(&self) -> bool {
        matches!(self.state, State::Closed { last_attempt, .. } if last_attempt.elapsed() >= REOPEN_EVERY)
    }

    /// Reopens a closed database from disk if [`Self::reopen_due`].
    pub fn reopen_if_due(&mut self) {
        if self.reopen_due() {
            self.reopen();
        }
    }

    /// What the caller that met `e` answers. A disk error (`sled::Error::Io`) closes the
    /// database and is [`StorageError::Unavailable`] (a database already closed stays as it
    /// is). Any other sled error closes it too and is returned as it is (see the module
    /// documentation). Our own errors (a refused or undecodable row) change nothing.
    pub fn failed(&mut self, e: StorageError) -> StorageError {
        match (e, &self.state) {
            (StorageError::Sled(e @ sled::Error::Io(_)), State::Open(_)) => self.close(&e),
            (StorageError::Sled(sled::Error::Io(_)), State::Closed { cause, at, .. }) => unavailable(cause, *at),
            (StorageError::Sled(e), State::Open(_)) => {
                self.close(&e);
                StorageError::Sled(e)
            }
            (other, _) => other,
        }
    }

    fn run_with<T>(&mut self, now: bool, f: impl FnOnce(&mut ChainsDb) -> Result<T>) -> Result<T> {
        if now || self.reopen_due() {
            self.reopen();
        }
        let result = match &mut self.state {
            State::Open(db) => f(db),
            State::Closed { cause, at, .. } => return Err(unavailable(cause, *at)),
        };
        result.map_err(|e| self.failed(e))
    }

    /// Reopens a closed database from its directory, if it can.
    fn reopen(&mut self) {
        let (State::Closed { cause, at, last_attempt, warned }, Some(path)) = (&mut self.state, &self.path) else {
            return;
        };
        *last_attempt = Instant::now();
        match ChainsDb::open(path) {
            Ok(mut db) => {
                db.gate = self.gate.clone();
                info!(
                    target: "storage",
                    path = %path.display(),
                    closed_for = ?at.elapsed(),
                    closed_since = %cause,
                    latest_l1 = ?db.latest_l1().ok().flatten().map(|b| b.number),
                    "reopened the database from disk: writing resumes from what is durable"
                );
                self.state = State::Open(db);
            }
            Err(e) if !*warned => {
                *warned = true;
                warn!(target: "storage", path = %path.display(), error = %e, "the database cannot be reopened yet: trying again every second");
            }
            Err(e) => {
                debug!(target: "storage", path = %path.display(), error = %e, "the database cannot be reopened yet")
            }
        }
    }

    /// Drops the database after the sled error `e`; the answer to the calls while it is closed.
    fn close(&mut self, e: &sled::Error) -> StorageError {
        let (failed, until) = if matches!(e, sled::Error::Io(_)) {
            ("the disk failed", " until the disk accepts writes")
        } else {
            ("sled failed", "")
        };
        error!(
            target: "storage",
            path = ?self.path,
            cause = %e,
            reopen_every = ?REOPEN_EVERY,
            "{failed}: closed the database so that nothing it had not made durable is served; reopening it from disk{until}"
        );
        let cause = format!("{failed}: {e}");
        // Dropping it releases sled's lock on the directory, so that it can be reopened.
        let now = Instant::now();
        self.state = State::Closed { cause: cause.clone(), at: now, last_attempt: now, warned: false };
        StorageError::Unavailable { cause, since: Duration::ZERO }
    }
}

/// The answer while closed by `cause` at `at`.
fn unavailable(cause: &str, at: Instant) -> StorageError {
    StorageError::Unavailable { cause: cause.to_owned(), since: at.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_database_reopens_from_disk_with_its_write_gate() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = DurableDb::new(ChainsDb::open(dir.path()).unwrap());
        let gate = durable.current().unwrap().write_gate();
        gate.close();
        let err = durable.run(|_| Err::<(), _>(sled::Error::Io(std::io::ErrorKind::StorageFull.into()).into()));
        assert!(matches!(err, Err(StorageError::Unavailable { .. })), "{err:?}");
        assert!(!durable.is_open());
        // Within REOPEN_EVERY of the failure: still closed, nothing runs.
        let mut ran = false;
        let err = durable.run(|_| {
            ran = true;
            Ok(())
        });
        assert!(matches!(err, Err(StorageError::Unavailable { .. })) && !ran, "{err:?}");
        // A stop's flush reopens at once; the reopened value shares the gate.
        durable.run_now(|db| db.flush()).unwrap();
        assert!(durable.is_open());
        assert!(durable.current().unwrap().write_gate().is_closed());
        gate.open();
        assert!(!durable.current().unwrap().write_gate().is_closed());
    }

    #[test]
    fn any_sled_error_from_a_write_closes_the_database_and_it_reopens_with_what_was_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = DurableDb::new(ChainsDb::open(dir.path()).unwrap());
        let block = |n: u64| {
            let h = |n: u64| alloy::primitives::B256::left_padding_from(&n.to_be_bytes());
            crate::BlockRef { number: n, hash: h(n + 1), parent_hash: h(n), timestamp: n }
        };
        durable.run(|db| db.record_new_l1(block(0))).unwrap();
        // sled reports a bug of its own (as a flush could) instead of a disk error: the writer
        // gets it, and the database is closed.
        let err = durable.run(|_| Err::<(), _>(sled::Error::ReportableBug("a flush that went wrong".into()).into()));
        assert!(matches!(err, Err(StorageError::Sled(sled::Error::ReportableBug(_)))), "{err:?}");
        assert!(!durable.is_open());
        let closed = durable.run(|db| db.latest_l1());
        assert!(
            matches!(&closed, Err(e @ StorageError::Unavailable { .. }) if e.to_string().contains("sled failed: ")),
            "{closed:?}"
        );
        // Reopened from disk; our own errors leave it open.
        durable.run_now(|db| db.flush()).unwrap();
        let refused = durable.run(|_| Err::<(), _>(StorageError::NoL1));
        assert!(matches!(refused, Err(StorageError::NoL1)) && durable.is_open(), "{refused:?}");
        assert_eq!(durable.run(|db| db.latest_l1()).unwrap(), Some(block(0)), "what was durable");
    }

    #[test]
    fn a_database_in_memory_stays_closed() {
        let mut durable = DurableDb::new(ChainsDb::temporary().unwrap());
        let _ = durable.run(|_| Err::<(), _>(sled::Error::Io(std::io::ErrorKind::StorageFull.into()).into()));
        assert!(matches!(durable.run_now(|db| db.flush()), Err(StorageError::Unavailable { .. })));
    }
}
