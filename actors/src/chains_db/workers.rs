//! The threads that touch the database: the one writer (`DbWriter`) and the readers
//! (`DbReader`), over the [`Store`] they share, and what the writer publishes after each write.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use actix::{Actor, Handler, Message, SyncContext};
use rollup_supervisor_storage::{ChainsDb, HeadNote, SharedDb, StorageError};
use tracing::{debug, warn};

use super::messages::SyncStatus;
use crate::metrics::{self, Metrics};

/// What the writer and the readers share: the database, the metrics, the published status.
#[derive(Clone, Debug)]
pub(super) struct Store {
    pub(super) db: Arc<SharedDb>,
    pub(super) metrics: Metrics,
    /// The sync status after the last write, published by the writer (`None`: take the
    /// readers' path).
    pub(super) status: Arc<Mutex<Option<SyncStatus>>>,
}

/// The answer to [`GetSyncStatus`], from the database.
pub(super) fn sync_status(db: &ChainsDb) -> Result<SyncStatus, StorageError> {
    let chains = db.chains().into_iter().map(|c| Ok((c, db.latest(c)?))).collect::<Result<_, StorageError>>()?;
    Ok(SyncStatus { l1: db.heads()?, chains })
}

impl Store {
    /// Publishes the sync status the writer computed after a write (`None`: none to publish),
    /// and exports the heads it holds.
    pub(super) fn publish(&self, status: Option<SyncStatus>) {
        match &status {
            Some(status) => self.export_status(status),
            None => self.export_heads(),
        }
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// The published sync status, while the database is open.
    pub(super) fn published(&self) -> Option<SyncStatus> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner).clone();
        status.filter(|_| self.db.is_open())
    }

    /// Exports whether the database is open, the L1 heads and each chain's derivation head.
    fn export_status(&self, status: &SyncStatus) {
        let m = &self.metrics;
        m.set(&metrics::DB_OPEN, &[], if self.db.is_open() { 1.0 } else { 0.0 });
        let heads = status.l1;
        for (label, head) in [("latest", heads.latest), ("safe", heads.safe), ("finalized", heads.finalized)] {
            m.set(&metrics::L1_HEAD, &[("head", label)], head.map_or(0.0, |b| b.number as f64));
        }
        for (chain, latest) in &status.chains {
            let chain_label = chain.to_string();
            let labels = [("chain", chain_label.as_str())];
            m.set(&metrics::DERIVED_L2, &labels, latest.map_or(0.0, |p| p.derived.number as f64));
            m.set(&metrics::DERIVED_L1, &labels, latest.map_or(0.0, |p| p.source.number as f64));
        }
    }

    /// Exports what the database holds: whether it is open, the L1 heads, each chain's
    /// derivation head.
    fn export_heads(&self) {
        let m = &self.metrics;
        m.set(&metrics::DB_OPEN, &[], if self.db.is_open() { 1.0 } else { 0.0 });
        self.db.peek(|db| {
            let Some(db) = db else {
                return;
            };
            if let Ok(heads) = db.heads() {
                for (label, head) in [("latest", heads.latest), ("safe", heads.safe), ("finalized", heads.finalized)] {
                    m.set(&metrics::L1_HEAD, &[("head", label)], head.map_or(0.0, |b| b.number as f64));
                }
            }
            for chain in db.chains() {
                let chain_label = chain.to_string();
                let labels = [("chain", chain_label.as_str())];
                if let Ok(latest) = db.latest(chain) {
                    m.set(&metrics::DERIVED_L2, &labels, latest.map_or(0.0, |p| p.derived.number as f64));
                    m.set(&metrics::DERIVED_L1, &labels, latest.map_or(0.0, |p| p.source.number as f64));
                }
            }
        });
    }

    /// Exports the size on disk (and whether the database is open).
    pub(super) fn export_size(&self) {
        self.metrics.set(&metrics::DB_OPEN, &[], if self.db.is_open() { 1.0 } else { 0.0 });
        if let Some(Ok(size)) = self.db.peek(|db| db.map(ChainsDb::size_on_disk)) {
            self.metrics.set(&metrics::DB_SIZE, &[], size as f64);
        }
    }
}

/// Runs the writes, one at a time, in the order they arrive.
#[derive(Debug)]
pub(super) struct DbWriter(pub(super) Store);

impl Actor for DbWriter {
    type Context = SyncContext<Self>;
}

impl DbWriter {
    /// Runs a write: timed, its failure counted, and the recorded heads exported afterwards.
    /// With `now`, a database closed by a disk failure is reopened first however recently the
    /// last attempt failed ([`DurableDb::run_now`]).
    pub(super) fn write<T>(
        &self,
        op: &'static str,
        now: bool,
        f: impl FnOnce(&mut ChainsDb) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let started = Instant::now();
        let (result, notes, status) = self.0.db.write(|db| {
            let result = if now { db.run_now(f) } else { db.run(f) };
            let notes = db.current().map(ChainsDb::take_head_notes).unwrap_or_default();
            // Under the writer's access, so nothing changes meanwhile; the write is durable, or
            // was refused and wrote nothing, or met a sled error, which closed the database.
            let status = db.get().and_then(|db| sync_status(db).ok());
            (result, notes, status)
        });
        let m = &self.0.metrics;
        m.observe_duration(&metrics::DB_WRITE_LATENCY, &[("op", op)], started.elapsed());
        m.add(&metrics::DB_ERRORS, &[("op", op)], if result.is_err() { 1.0 } else { 0.0 });
        self.report_head_notes(notes);
        self.0.publish(status);
        result
    }

    /// Logs what became of the safe and finalized blocks the L1 node named, and counts the ones
    /// that contradict the index.
    fn report_head_notes(&self, notes: Vec<HeadNote>) {
        for note in notes {
            match note {
                HeadNote::Stored { head, block } => {
                    debug!(target: "chains_db", head = head.as_str(), number = block.number, hash = %block.hash, "L1 head recorded");
                }
                HeadNote::Held { head, block, latest } => {
                    debug!(target: "chains_db", head = head.as_str(), number = block.number, hash = %block.hash, ?latest, "L1 head above the index: held until the index reaches it");
                }
                HeadNote::Refused { head, block, reason } if reason.contradicts_the_index() => {
                    self.0
                        .metrics
                        .inc(&metrics::L1_HEAD_REJECTED, &[("head", head.as_str()), ("reason", reason.as_str())]);
                    warn!(
                        target: "chains_db",
                        head = head.as_str(),
                        number = block.number,
                        hash = %block.hash,
                        reason = %reason,
                        "the L1 node named a safe or finalized block that contradicts the L1 index: not stored"
                    );
                }
                HeadNote::Refused { head, block, reason } => {
                    debug!(target: "chains_db", head = head.as_str(), number = block.number, hash = %block.hash, reason = %reason, "L1 head not stored");
                }
            }
        }
    }
}

/// Runs the queries, [`READERS`] at a time.
#[derive(Debug)]
pub(super) struct DbReader(pub(super) Store);

impl Actor for DbReader {
    type Context = SyncContext<Self>;
}

impl DbReader {
    /// Runs a query. One that closed or reopened the database exports that it did.
    pub(super) fn read<T>(&self, f: impl FnOnce(&ChainsDb) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let was_open = self.0.db.is_open();
        let result = self.0.db.read(f);
        let open = self.0.db.is_open();
        if open != was_open {
            self.0.metrics.set(&metrics::DB_OPEN, &[], if open { 1.0 } else { 0.0 });
        }
        result
    }
}

/// Samples the size on disk; sent to the readers every [`SIZE_EVERY`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct SampleSize;

impl Handler<SampleSize> for DbReader {
    type Result = ();
    fn handle(&mut self, _: SampleSize, _: &mut SyncContext<Self>) {
        self.0.export_size();
    }
}
