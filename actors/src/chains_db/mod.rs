//! [`ChainsDbActor`]: the one address every writer and reader of the database sends to. It does
//! no database work itself: it hands each write to the writer thread and each query to the
//! reader threads, which answer the sender directly, so that a query never waits in a mailbox
//! behind writes.
//!
//! - Writes go to one `DbWriter` on a [`SyncArbiter`] of one thread, in the order they arrive:
//!   they stay serialised, each holding the [`SharedDb`] lock exclusively through its apply and
//!   its flush.
//! - Queries go to [`READERS`] `DbReader`s on a [`SyncArbiter`] of their own, and run
//!   concurrently under the shared lock. A query waits for at most the one write in progress;
//!   it never sees a write that is applied but not yet flushed, so that after a disk failure
//!   nothing that did not become durable has been served (see `storage/src/shared.rs` for why a
//!   lock and not a durable watermark). While the failure has the database closed, a query is
//!   `StorageError::Unavailable`; one that comes when a reopen is due reopens it from disk.
//!
//! - [`GetSyncStatus`], the query the JSON-RPC server and `/readyz` send most, waits for no write
//!   at all: after every write, still holding the lock, the writer computes the sync status (a
//!   durable state: the write was flushed, or refused and wrote nothing) and publishes it once
//!   it lets go; this actor answers from it at once while the database is open. It is a durable
//!   watermark of the only kind that needs no clamping: a whole answer, replaced whole. A write
//!   that failed with a sled error publishes nothing, and until the next write the query takes
//!   the readers' path (which answers `Unavailable` while the database is closed).
//!
//! Both run on threads of their own, so sled's flushes never block the arbiters that run the
//! watchers' timers and RPC. The recorded heads are exported after every write; the size on disk
//! is sampled every [`SIZE_EVERY`] by a reader.

pub mod messages;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use actix::{
    Actor, Addr, AsyncContext, Context, Handler, Message, Recipient, SyncArbiter, SyncContext,
    dev::{MessageResponse, OneshotSender},
};
use rollup_supervisor_storage::{ChainsDb, DurableDb, HeadNote, SharedDb, StorageError};
use tracing::{debug, info, warn};

use self::messages::*;
use crate::metrics::{self, Metrics};

/// Reader threads: queries run concurrently on this many.
pub const READERS: usize = 4;

/// How often the size on disk (`db_size_bytes`) is sampled.
pub const SIZE_EVERY: Duration = Duration::from_secs(10);

/// The address of the database: writes and queries, as typed messages ([`messages`]).
#[derive(Debug)]
pub struct ChainsDbActor {
    store: Store,
    writer: Addr<DbWriter>,
    readers: Addr<DbReader>,
    /// [`SIZE_EVERY`], but in tests.
    size_every: Duration,
}

impl ChainsDbActor {
    /// Starts the writer and reader threads over `db`, and the actor that dispatches to them on
    /// the current arbiter. If a writer or reader ever stops, its arbiter starts a fresh one over
    /// the same database.
    pub fn start(db: ChainsDb, metrics: Metrics) -> Addr<ChainsDbActor> {
        Self::start_shared(Arc::new(SharedDb::new(DurableDb::new(db))), metrics, SIZE_EVERY)
    }

    /// [`Self::start`] over a database already shared, sampling the size every `size_every`.
    fn start_shared(db: Arc<SharedDb>, metrics: Metrics, size_every: Duration) -> Addr<ChainsDbActor> {
        let store = Store { db, metrics, status: Arc::default() };
        for head in ["safe", "finalized"] {
            for reason in ["conflict", "regression", "order"] {
                store.metrics.touch(&metrics::L1_HEAD_REJECTED, &[("head", head), ("reason", reason)]);
            }
        }
        store.publish(store.db.peek(|db| db.and_then(|db| sync_status(db).ok())));
        store.export_size();
        let writer = {
            let store = store.clone();
            SyncArbiter::start(1, move || DbWriter(store.clone()))
        };
        let readers = {
            let store = store.clone();
            SyncArbiter::start(READERS, move || DbReader(store.clone()))
        };
        ChainsDbActor { store, writer, readers, size_every }.start()
    }
}

impl Actor for ChainsDbActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.size_every, |act, _| act.readers.do_send(SampleSize));
    }
}

/// What the writer and the readers share: the database, the metrics, the published status.
#[derive(Clone, Debug)]
struct Store {
    db: Arc<SharedDb>,
    metrics: Metrics,
    /// The sync status after the last write, published by the writer (`None`: take the
    /// readers' path).
    status: Arc<Mutex<Option<SyncStatus>>>,
}

/// The answer to [`GetSyncStatus`], from the database.
fn sync_status(db: &ChainsDb) -> Result<SyncStatus, StorageError> {
    let chains = db.chains().into_iter().map(|c| Ok((c, db.latest(c)?))).collect::<Result<_, StorageError>>()?;
    Ok(SyncStatus { l1: db.heads()?, chains })
}

impl Store {
    /// Publishes the sync status the writer computed after a write (`None`: none to publish),
    /// and exports the heads it holds.
    fn publish(&self, status: Option<SyncStatus>) {
        match &status {
            Some(status) => self.export_status(status),
            None => self.export_heads(),
        }
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// The published sync status, while the database is open.
    fn published(&self) -> Option<SyncStatus> {
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
    fn export_size(&self) {
        self.metrics.set(&metrics::DB_OPEN, &[], if self.db.is_open() { 1.0 } else { 0.0 });
        if let Some(Ok(size)) = self.db.peek(|db| db.map(ChainsDb::size_on_disk)) {
            self.metrics.set(&metrics::DB_SIZE, &[], size as f64);
        }
    }
}

/// Runs the writes, one at a time, in the order they arrive.
#[derive(Debug)]
struct DbWriter(Store);

impl Actor for DbWriter {
    type Context = SyncContext<Self>;
}

impl DbWriter {
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
        let (result, notes, status) = self.0.db.write(|db| {
            let result = if now { db.run_now(f) } else { db.run(f) };
            let notes = db.current().map(ChainsDb::take_head_notes).unwrap_or_default();
            // Under the writer's access, so nothing changes meanwhile; the write is durable, or
            // was refused and wrote nothing. A sled error may have left anything: publish nothing.
            let status = match (&result, db.get()) {
                (Err(StorageError::Sled(_)), _) | (_, None) => None,
                (_, Some(db)) => sync_status(db).ok(),
            };
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
struct DbReader(Store);

impl Actor for DbReader {
    type Context = SyncContext<Self>;
}

impl DbReader {
    /// Runs a query. One that closed or reopened the database exports that it did.
    fn read<T>(&self, f: impl FnOnce(&ChainsDb) -> Result<T, StorageError>) -> Result<T, StorageError> {
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
struct SampleSize;

impl Handler<SampleSize> for DbReader {
    type Result = ();
    fn handle(&mut self, _: SampleSize, _: &mut SyncContext<Self>) {
        self.0.export_size();
    }
}

/// A message on its way to the writer or a reader, with the sender's reply channel: the worker
/// answers the sender itself (`None`: the sender wanted no answer).
struct Job<M: Message> {
    msg: M,
    reply: Option<OneshotSender<M::Result>>,
}

impl<M: Message> Message for Job<M> {
    type Result = ();
}

impl<M: Message> Job<M> {
    /// Sends the answer; a sender that stopped waiting is not an error.
    fn answer(self, result: M::Result) {
        Self::answer_with(self.reply, result);
    }

    fn answer_with(reply: Option<OneshotSender<M::Result>>, result: M::Result) {
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// How [`ChainsDbActor`] answers: by handing the message and the sender's reply channel to the
/// writer or the readers, in arrival order, without waiting for either (or at once, with what it
/// has). If the worker is gone, the reply channel is dropped and the sender sees a
/// `MailboxError`, as from a stopped actor.
pub struct Dispatch<M>(Route<M>)
where
    M: Message + Send + 'static,
    M::Result: Send;

enum Route<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    To(M, Recipient<Job<M>>),
    Now(M::Result),
}

impl<M> Dispatch<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn to<W>(msg: M, worker: &Addr<W>) -> Self
    where
        W: Actor<Context = SyncContext<W>> + Handler<Job<M>>,
    {
        Dispatch(Route::To(msg, worker.clone().recipient()))
    }
}

impl<M> std::fmt::Debug for Dispatch<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch").finish_non_exhaustive()
    }
}

impl<M> MessageResponse<ChainsDbActor, M> for Dispatch<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn handle(self, _: &mut Context<ChainsDbActor>, reply: Option<OneshotSender<M::Result>>) {
        match self.0 {
            // `do_send` ignores the worker's mailbox capacity, so that messages keep their
            // order; every sender waits for its answer, so the queue holds one message per
            // sender at most.
            Route::To(msg, to) => to.do_send(Job { msg, reply }),
            Route::Now(result) => Job::<M>::answer_with(reply, result),
        }
    }
}

/// Implements `Handler<$msg>` by running `$body` (a closure over the db and the message): as a
/// query on a reader; with `write "op"`, as a timed write on the writer whose errors are counted
/// under `op`; with `write now "op"`, one that reopens a database closed by a disk failure at
/// once.
macro_rules! handle {
    ($msg:ty, |$db:ident, $m:ident| $body:expr) => {
        impl Handler<$msg> for ChainsDbActor {
            type Result = Dispatch<$msg>;
            fn handle(&mut self, msg: $msg, _: &mut Context<Self>) -> Self::Result {
                Dispatch::to(msg, &self.readers)
            }
        }
        impl Handler<Job<$msg>> for DbReader {
            type Result = ();
            fn handle(&mut self, job: Job<$msg>, _: &mut SyncContext<Self>) {
                let result = {
                    let $m = &job.msg;
                    self.read(|$db| $body)
                };
                job.answer(result);
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
            type Result = Dispatch<$msg>;
            fn handle(&mut self, msg: $msg, _: &mut Context<Self>) -> Self::Result {
                Dispatch::to(msg, &self.writer)
            }
        }
        impl Handler<Job<$msg>> for DbWriter {
            type Result = ();
            fn handle(&mut self, job: Job<$msg>, _: &mut SyncContext<Self>) {
                let result = {
                    let $m = &job.msg;
                    self.write($op, $now, |$db| $body)
                };
                job.answer(result);
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
// At once from the status the last write published; the readers' path while there is none.
impl Handler<GetSyncStatus> for ChainsDbActor {
    type Result = Dispatch<GetSyncStatus>;
    fn handle(&mut self, msg: GetSyncStatus, _: &mut Context<Self>) -> Self::Result {
        match self.store.published() {
            Some(status) => Dispatch(Route::Now(Ok(status))),
            None => Dispatch::to(msg, &self.readers),
        }
    }
}
impl Handler<Job<GetSyncStatus>> for DbReader {
    type Result = ();
    fn handle(&mut self, job: Job<GetSyncStatus>, _: &mut SyncContext<Self>) {
        let result = self.read(sync_status);
        job.answer(result);
    }
}
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use alloy::primitives::B256;
    use rollup_supervisor_storage::BlockRef;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn l1(numbers: std::ops::RangeInclusive<u64>) -> Vec<BlockRef> {
        let h = |n: u64| B256::left_padding_from(&n.to_be_bytes());
        numbers.map(|n| BlockRef { number: n, hash: h(n + 1), parent_hash: h(n), timestamp: n }).collect()
    }

    async fn latest(db: &Addr<ChainsDbActor>) -> Option<u64> {
        db.send(GetTip(Track::L1)).await.expect("mailbox").expect("query").map(|b| b.number)
    }

    #[actix::test]
    async fn a_query_waits_for_the_write_in_progress_not_for_the_writes_queued_behind_it() {
        let shared = Arc::new(SharedDb::new(DurableDb::new(ChainsDb::temporary().expect("temporary db"))));
        let db = ChainsDbActor::start_shared(shared.clone(), Metrics::default(), SIZE_EVERY);
        db.send(NewL1Blocks(l1(0..=9))).await.expect("mailbox").expect("write");

        // A write in progress for as long as the test wants (a slow flush).
        let (held, on_held) = mpsc::channel();
        let (release, on_release) = mpsc::channel::<()>();
        let holder = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                shared.write(|_| {
                    held.send(()).expect("test");
                    on_release.recv().expect("test");
                })
            })
        };
        on_held.recv_timeout(WAIT).expect("the write in progress");
        // Five writes queue behind it, then a query.
        let writes: Vec<_> = (1..=5).map(|i| db.send(NewL1Blocks(l1(i * 10..=i * 10 + 9)))).collect();
        let tip = db.send(GetTip(Track::L1));
        // The sync status does not wait even for the write in progress: the last durable one.
        let status = db.send(GetSyncStatus).await.expect("mailbox").expect("query");
        assert_eq!(status.l1.latest.map(|b| b.number), Some(9));
        let deadline = Instant::now() + WAIT;
        while shared.waiting_readers() == 0 {
            assert!(Instant::now() < deadline, "the query never reached a reader");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.send(()).expect("test");
        // Before the writes, or after the first one if the writer was already waiting for the
        // lock: never after the writes queued behind it.
        let seen = tip.await.expect("mailbox").expect("query").map(|b| b.number);
        assert!(matches!(seen, Some(9 | 19)), "the query saw {seen:?}");
        for write in writes {
            write.await.expect("mailbox").expect("write");
        }
        holder.join().expect("holder");
        assert_eq!(latest(&db).await, Some(59));
        let status = db.send(GetSyncStatus).await.expect("mailbox").expect("query");
        assert_eq!(status.l1.latest.map(|b| b.number), Some(59), "published by the last write");
    }

    #[actix::test]
    async fn the_size_on_disk_is_sampled_on_a_timer_and_the_heads_after_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Metrics::default();
        let shared = Arc::new(SharedDb::new(DurableDb::new(ChainsDb::open(dir.path()).expect("open"))));
        let every = Duration::from_millis(300);
        let db = ChainsDbActor::start_shared(shared, metrics.clone(), every);
        let size = || metrics.get(&metrics::DB_SIZE, &[]);
        let at_start = size();
        assert!(at_start > 0.0, "sampled at start");
        assert_eq!(metrics.get(&metrics::DB_OPEN, &[]), 1.0);
        let sent = Instant::now();
        db.send(NewL1Blocks(l1(0..=5000))).await.expect("mailbox").expect("write");
        assert_eq!(metrics.get(&metrics::L1_HEAD, &[("head", "latest")]), 5000.0, "heads after every write");
        if sent.elapsed() < every {
            assert_eq!(size(), at_start, "not sampled after the write");
        }
        // The next sample sees the rows.
        let deadline = Instant::now() + WAIT;
        while size() == at_start {
            assert!(Instant::now() < deadline, "the size was never sampled again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(size() > at_start);
    }
}
