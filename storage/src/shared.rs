//! [`SharedDb`]: one writer and many concurrent readers over a [`DurableDb`], and what keeps the
//! readers to what is durable.
//!
//! sled applies a write in memory before its flush returns. A read that ran between the two
//! could serve a row (or a rewind: rows gone) that the disk then refuses, after which
//! [`DurableDb`] reopens from disk and the state that was served never existed. So the choice
//! here is a lock, not a durable watermark: a write holds the lock exclusively from its first
//! change through its flush, and through the close that a failed flush causes; a read holds it
//! shared. A reader sees the database before a write, after the write is durable, or closed
//! ([`StorageError::Unavailable`]); never in between. A watermark that readers clamp to would
//! need clamping in every query, and cannot express a rewind that is applied but not yet durable
//! (rows deleted in memory that the disk still holds); the lock needs nothing in the queries.
//!
//! Readers run concurrently with each other. A read waits for at most the one write in
//! progress, never for the writes queued behind it: a writer lets every reader that is waiting
//! for the lock take it before the writer takes it again (std's `RwLock` alone would let a
//! writer that comes straight back from its last write barge ahead of the readers that write
//! just woke).
//!
//! A reader that finds the database closed and due for a reopen reopens it (that takes the
//! writer's access, once), so that the watchers' reads after a disk failure bring it back as
//! their writes do. A disk error met by a read closes it, as one met by a write does (sled's
//! other errors close it only from a write, whose changes they may have left in memory).

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard,
    atomic::{AtomicBool, Ordering},
};

use crate::{ChainsDb, DurableDb, Result, StorageError};

/// See the module documentation.
#[derive(Debug)]
pub struct SharedDb {
    db: RwLock<DurableDb>,
    /// Readers waiting for the lock. A writer waits until it is zero before it takes the lock.
    waiting: Mutex<usize>,
    /// Signalled when `waiting` drops to zero.
    served: Condvar,
    /// Whether the database was open when the last writer released it (every close and reopen
    /// happens under the writer's access): for metrics, without taking the lock.
    open: AtomicBool,
}

// A poisoned lock means a thread panicked while holding it; the process exits on a panic, so
// this is only reachable in tests. sled's state is consistent either way.
fn unpoison<G>(result: std::result::Result<G, PoisonError<G>>) -> G {
    result.unwrap_or_else(PoisonError::into_inner)
}

impl SharedDb {
    /// Shares a durable database.
    pub fn new(db: DurableDb) -> Self {
        let open = AtomicBool::new(db.is_open());
        Self { db: RwLock::new(db), waiting: Mutex::new(0), served: Condvar::new(), open }
    }

    /// Runs `f` with the database to itself: every write goes through here, so that its apply,
    /// its flush and a close after a failed flush are one step that no reader sees half of. Waits
    /// for the readers already waiting to be served first, then for the readers in progress.
    pub fn write<T>(&self, f: impl FnOnce(&mut DurableDb) -> T) -> T {
        let mut waiting = unpoison(self.waiting.lock());
        while *waiting > 0 {
            waiting = unpoison(self.served.wait(waiting));
        }
        drop(waiting);
        let mut db = unpoison(self.db.write());
        let out = f(&mut db);
        self.open.store(db.is_open(), Ordering::Release);
        out
    }

    /// Runs the query `f` concurrently with other readers. [`StorageError::Unavailable`] while a
    /// disk failure has the database closed; a closed database due for a reopen is reopened
    /// first; a disk error from `f` closes it (the caller gets `Unavailable`).
    pub fn read<T>(&self, f: impl FnOnce(&ChainsDb) -> Result<T>) -> Result<T> {
        let mut db = self.read_lock();
        if db.reopen_due() {
            drop(db);
            self.write(DurableDb::reopen_if_due);
            db = self.read_lock();
        }
        match db.query(f) {
            Err(e @ StorageError::Sled(sled::Error::Io(_))) => {
                drop(db);
                Err(self.write(|db| db.failed(e)))
            }
            other => other,
        }
    }

    /// Runs `f` on the open database (`None`: closed) as a reader, without reopening it and
    /// without closing it on an error: for metrics.
    pub fn peek<T>(&self, f: impl FnOnce(Option<&ChainsDb>) -> T) -> T {
        f(self.read_lock().get())
    }

    /// Whether the database was open when the last writer released it.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// How many readers are waiting for the lock now (for tests and diagnostics).
    pub fn waiting_readers(&self) -> usize {
        *self.waiting()
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, DurableDb> {
        *self.waiting() += 1;
        let db = unpoison(self.db.read());
        let mut waiting = self.waiting();
        *waiting -= 1;
        if *waiting == 0 {
            self.served.notify_all();
        }
        db
    }

    fn waiting(&self) -> MutexGuard<'_, usize> {
        unpoison(self.waiting.lock())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{atomic::AtomicBool, mpsc},
        thread,
        time::{Duration, Instant},
    };

    use alloy::primitives::B256;

    use super::*;
    use crate::BlockRef;

    const WAIT: Duration = Duration::from_secs(10);

    fn l1(n: u64) -> BlockRef {
        let h = |n: u64| B256::left_padding_from(&n.to_be_bytes());
        BlockRef { number: n, hash: h(n + 1), parent_hash: h(n), timestamp: n }
    }

    fn disk_full() -> StorageError {
        sled::Error::Io(std::io::ErrorKind::StorageFull.into()).into()
    }

    /// Waits until `n` readers are waiting for the lock.
    fn until_waiting(shared: &SharedDb, n: usize) {
        let deadline = Instant::now() + WAIT;
        while shared.waiting_readers() != n {
            assert!(Instant::now() < deadline, "{n} readers never waited");
            thread::yield_now();
        }
    }

    #[test]
    fn a_reader_never_sees_a_write_whose_flush_then_fails() {
        let shared = SharedDb::new(DurableDb::new(ChainsDb::temporary().unwrap()));
        let (applied, on_applied) = mpsc::channel();
        let (fail, on_fail) = mpsc::channel::<()>();
        let shared = &shared;
        thread::scope(|s| {
            let writer = s.spawn(move || {
                shared.write(|db| {
                    db.run(|db| {
                        // Applied in sled's memory; then the flush "fails".
                        db.record_new_l1(l1(7))?;
                        applied.send(()).unwrap();
                        on_fail.recv().unwrap();
                        Err::<(), _>(disk_full())
                    })
                })
            });
            on_applied.recv_timeout(WAIT).unwrap();
            let reader = s.spawn(move || shared.read(|db| db.latest_l1()));
            until_waiting(shared, 1);
            fail.send(()).unwrap();
            assert!(matches!(writer.join().unwrap(), Err(StorageError::Unavailable { .. })));
            // The reader waited for the whole write, and found the database closed.
            let read = reader.join().unwrap();
            assert!(matches!(read, Err(StorageError::Unavailable { .. })), "served {read:?}");
        });
        assert!(!shared.is_open());
        assert!(matches!(shared.read(|db| db.latest_l1()), Err(StorageError::Unavailable { .. })));
    }

    #[test]
    fn a_reader_waits_for_the_write_in_progress_but_not_for_the_next_one() {
        let shared = SharedDb::new(DurableDb::new(ChainsDb::temporary().unwrap()));
        let (started, on_started) = mpsc::channel();
        let (finish, on_finish) = mpsc::channel::<()>();
        let second_ran = &AtomicBool::new(false);
        let shared = &shared;
        thread::scope(|s| {
            // One writer, two writes back to back, as the writer thread takes them from its queue.
            s.spawn(move || {
                shared.write(|db| {
                    db.run(|db| db.record_new_l1(l1(1))).unwrap();
                    started.send(()).unwrap();
                    on_finish.recv().unwrap();
                });
                shared.write(|db| {
                    db.run(|db| db.record_new_l1(l1(2))).unwrap();
                    second_ran.store(true, Ordering::SeqCst);
                });
            });
            on_started.recv_timeout(WAIT).unwrap();
            let reader = s.spawn(move || shared.read(|db| Ok((db.latest_l1()?, second_ran.load(Ordering::SeqCst)))));
            until_waiting(shared, 1);
            finish.send(()).unwrap();
            let (latest, second) = reader.join().unwrap().unwrap();
            assert_eq!(latest, Some(l1(1)), "the write in progress, whole");
            assert!(!second, "the reader went before the write queued behind it");
        });
        assert_eq!(shared.read(|db| db.latest_l1()).unwrap(), Some(l1(2)));
    }

    #[test]
    fn readers_run_concurrently() {
        let shared = SharedDb::new(DurableDb::new(ChainsDb::temporary().unwrap()));
        let (inside, on_inside) = mpsc::channel();
        let shared = &shared;
        thread::scope(|s| {
            let first = s.spawn(move || {
                shared.read(|db| {
                    // The second reader gets in while this one still holds the lock.
                    let other = on_inside.recv_timeout(WAIT);
                    db.latest_l1().map(|l| (l, other.is_ok()))
                })
            });
            let second = s.spawn(move || {
                shared.read(|_| {
                    inside.send(()).unwrap();
                    Ok(())
                })
            });
            second.join().unwrap().unwrap();
            assert!(first.join().unwrap().unwrap().1, "the two reads overlapped");
        });
    }

    #[test]
    fn a_reader_reopens_a_closed_database_from_disk_and_a_read_error_of_the_disk_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::tests::when_unlocked(|| ChainsDb::open(dir.path()));
        let shared = SharedDb::new(DurableDb::new(db));
        shared.write(|db| db.run(|db| db.record_new_l1(l1(3)))).unwrap();
        let err = shared.read(|_| Err::<(), _>(disk_full()));
        assert!(matches!(err, Err(StorageError::Unavailable { .. })), "{err:?}");
        assert!(!shared.is_open());
        assert!(shared.peek(|db| db.is_none()));
        // Reads alone bring it back, once a reopen is due.
        let deadline = Instant::now() + WAIT;
        let latest = loop {
            match shared.read(|db| db.latest_l1()) {
                Ok(latest) => break latest,
                Err(StorageError::Unavailable { .. }) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("not reopened: {e}"),
            }
        };
        assert_eq!(latest, Some(l1(3)));
        assert!(shared.is_open());
        // Any other error of a query leaves it open.
        assert!(matches!(shared.read(|_| Err::<(), _>(StorageError::NoL1)), Err(StorageError::NoL1)));
        assert!(shared.is_open());
    }
}
