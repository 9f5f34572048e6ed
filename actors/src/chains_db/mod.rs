//! [`ChainsDbActor`]: the one owner of the database. Every write and every query goes through
//! its mailbox, so writes are serialised; it runs on its own thread (a [`SyncArbiter`]) so that
//! sled's flushes never block the arbiters that run the watchers' timers and RPC. It holds the
//! database as a [`DurableDb`]: after a disk failure every call is refused until the database
//! has been reopened from what is on disk, so that nothing that did not become durable is served.

pub mod messages;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use actix::{Actor, Addr, Handler, SyncArbiter, SyncContext};
use rollup_supervisor_storage::{ChainsDb, DurableDb, HeadNote, StorageError};
use tracing::{debug, info, warn};

use self::messages::*;
use crate::metrics::{self, Metrics};

/// The actor that owns the [`ChainsDb`].
#[derive(Debug)]
pub struct ChainsDbActor {
    db: Arc<Mutex<DurableDb>>,
    metrics: Metrics,
}

impl ChainsDbActor {
    /// Starts the actor on a dedicated thread. If it ever stops, the arbiter starts a fresh one
    /// over the same database.
    pub fn start(db: ChainsDb, metrics: Metrics) -> Addr<ChainsDbActor> {
        let db = Arc::new(Mutex::new(DurableDb::new(db)));
        for head in ["safe", "finalized"] {
            for reason in ["conflict", "regression", "order"] {
                metrics.touch(&metrics::L1_HEAD_REJECTED, &[("head", head), ("reason", reason)]);
            }
        }
        let actor = ChainsDbActor { db, metrics };
        actor.export_heads();
        SyncArbiter::start(1, move || ChainsDbActor { db: actor.db.clone(), metrics: actor.metrics.clone() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DurableDb> {
        // A poisoned lock means a previous handler panicked; the process exits on panic, so this
        // is only reachable in tests. sled's state is consistent either way.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(&self, f: impl FnOnce(&mut ChainsDb) -> Result<T, StorageError>) -> Result<T, StorageError> {
        self.lock().run(f)
    }

    /// Runs a write: timed, its failure counted, and the recorded heads exported afterwards.
    /// With `now`, a database closed by a disk failure is reopened first however recently the
    /// last attempt failed ([`DurableDb::run_now`]).
    fn write<T>(
        &self,
        op: &'static str,
        now: bool,
        f: impl FnOnce(&mut ChainsDb) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let started = Instant::now();
        let (result, notes) = {
            let mut db = self.lock();
            let result = if now { db.run_now(f) } else { db.run(f) };
            (result, db.current().map(ChainsDb::take_head_notes).unwrap_or_default())
        };
        self.metrics.observe_duration(&metrics::DB_WRITE_LATENCY, &[("op", op)], started.elapsed());
        self.metrics.add(&metrics::DB_ERRORS, &[("op", op)], if result.is_err() { 1.0 } else { 0.0 });
        self.report_head_notes(notes);
        self.export_heads();
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
                    self.metrics
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

    /// Exports what the database holds: the L1 heads, each chain's derivation head, its size.
    fn export_heads(&self) {
        let mut durable = self.lock();
        let m = &self.metrics;
        m.set(&metrics::DB_OPEN, &[], if durable.is_open() { 1.0 } else { 0.0 });
        let Some(db) = durable.current() else {
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
        if let Ok(size) = db.size_on_disk() {
            m.set(&metrics::DB_SIZE, &[], size as f64);
        }
    }
}

impl Actor for ChainsDbActor {
    type Context = SyncContext<Self>;
}

/// Implements `Handler<$msg>` by running `$body` (a closure over the db and the message); with
/// `write "op"`, as a timed write whose errors are counted under `op`; with `write now "op"`, one
/// that reopens a database closed by a disk failure at once.
macro_rules! handle {
    ($msg:ty, |$db:ident, $m:ident| $body:expr) => {
        impl Handler<$msg> for ChainsDbActor {
            type Result = <$msg as actix::Message>::Result;
            fn handle(&mut self, $m: $msg, _: &mut SyncContext<Self>) -> Self::Result {
                self.with(|$db| $body)
            }
        }
    };
    (write $op:literal, $($rest:tt)*) => {
        handle!(@write false, $op, $($rest)*);
    };
    (write now $op:literal, $($rest:tt)*) => {
        handle!(@write true, $op, $($rest)*);
    };
    (@write $now:literal, $op:literal, $msg:ty, |$db:ident, $m:ident| $body:expr) => {
        impl Handler<$msg> for ChainsDbActor {
            type Result = <$msg as actix::Message>::Result;
            fn handle(&mut self, $m: $msg, _: &mut SyncContext<Self>) -> Self::Result {
                self.write($op, $now, |$db| $body)
            }
        }
    };
}

handle!(write "record_l1", NewL1Blocks, |db, m| db.record_l1(&m.0));
handle!(write "rewind_l1", L1Reorg, |db, m| {
    warn!(target: "chains_db", old_tip = m.old_tip, common_ancestor = m.common_ancestor, "rewinding L1 and every chain");
    db.rewind_l1(m.common_ancestor)
});
handle!(write "set_heads", NewL1Heads, |db, m| db.set_heads(m.safe, m.finalized));
handle!(write "record_derived", NewDerivedBlocks, |db, m| db.record_derived_from_head(m.chain, &m.blocks));
handle!(write "record_derived", NewDerivationPairs, |db, m| db.record_derived_batch(m.chain, &m.entries));
handle!(write "rewind_chain", L2Reorg, |db, m| {
    warn!(target: "chains_db", chain = m.chain, common_ancestor = m.common_ancestor, "rewinding chain");
    db.rewind_chain(m.chain, m.common_ancestor)
});
handle!(write "add_chain", RegisterChain, |db, m| {
    info!(target: "chains_db", chain = m.chain, mode = ?m.mode, "chain registered");
    db.add_chain(m.chain, m.mode)
});
handle!(GetTip, |db, m| match m.0 {
    Track::L1 => db.latest_l1(),
    Track::L2(chain) => Ok(db.latest(chain)?.map(|p| p.derived)),
});
handle!(GetRange, |db, m| match m.track {
    Track::L1 => db.l1_range(m.from, m.to),
    Track::L2(chain) => db.derived_range(chain, m.from, m.to),
});
handle!(GetFloor, |db, m| match m.0 {
    Track::L1 => Ok(db.heads()?.finalized.map(|f| f.number)),
    Track::L2(_) => Ok(None),
});
handle!(GetSyncStatus, |db, _m| {
    let chains = db.chains().into_iter().map(|c| Ok((c, db.latest(c)?))).collect::<Result<_, StorageError>>()?;
    Ok(SyncStatus { l1: db.heads()?, chains })
});
handle!(GetL1Block, |db, m| db.l1_block(m.0));
handle!(GetLocalSafe, |db, m| db.latest(m.0));
handle!(GetDerivedAt, |db, m| db.derived_at(m.chain, m.l1));
handle!(GetDerivedFrom, |db, m| db.derived_from(m.chain, m.l2));
handle!(GetFinalized, |db, m| {
    let Some(l1) = db.heads()?.finalized else { return Ok(None) };
    let l2 = match m.0 {
        Some(chain) => db.finalized_l2(chain, l1.number)?,
        None => None,
    };
    Ok(Some((l1, l2)))
});
handle!(Check, |db, _m| db.check());
// The stop's last write: a database closed by a disk failure is reopened now, not after the usual
// wait, so that a stop once space has returned flushes and exits cleanly.
handle!(write now "flush", Flush, |db, _m| db.flush());
handle!(write "put_outage", PutOutage, |db, m| db.put_outage(&m.0));
handle!(GetLastOutage, |db, m| db.last_outage(m.0));
