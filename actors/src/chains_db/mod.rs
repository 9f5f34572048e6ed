//! [`ChainsDbActor`]: the address the watchers and the uptime actors send every write and query
//! to, and [`DbQueries`], the read side the servers use without it. The actor does no database
//! work itself: it hands each write to the writer thread and each query to the reader threads,
//! which answer the sender directly, so that a query never waits in a mailbox behind writes.
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
//! - [`GetSyncStatus`], the query the JSON-RPC server and `/readyz` ask most, waits for no write
//!   at all: after every write, still holding the lock, the writer computes the sync status (a
//!   durable state: the write was flushed, or refused and wrote nothing) and publishes it once
//!   it lets go; it is answered from that at once while the database is open. It is a durable
//!   watermark of the only kind that needs no clamping: a whole answer, replaced whole. A write
//!   that failed with a sled error publishes nothing, and until the next write the query takes
//!   the readers' path (which answers `Unavailable` while the database is closed).
//! - [`DbQueries`] is the same read side without this actor: the JSON-RPC server and `/readyz`,
//!   on an arbiter of their own, send their queries straight to the readers and read the
//!   published status in place, so that a query does not cross this actor's arbiter on its way
//!   (a batch of 2 000 `supervisor_syncStatus` calls is 2 000 answers, not 4 000 thread hops).
//!
//! Both run on threads of their own, so sled's flushes never block the arbiters that run the
//! watchers' timers and RPC. The recorded heads are exported after every write; the size on disk
//! is sampled every [`SIZE_EVERY`] by a reader.

pub mod messages;
mod workers;

use std::{sync::Arc, time::Duration};

use actix::{
    Actor, Addr, AsyncContext, Context, Handler, MailboxError, Message, SyncArbiter, SyncContext,
    dev::{MessageResponse, OneshotSender},
};
use rollup_supervisor_storage::{ChainsDb, DurableDb, SharedDb, StorageError};
use tokio::sync::oneshot;
use tracing::{info, warn};

use self::{
    messages::*,
    workers::{DbReader, DbWriter, SampleSize, Store, sync_status},
};
use crate::metrics::{self, Metrics};

/// Reader threads: queries run concurrently on this many.
pub const READERS: usize = 4;

/// How often the size on disk (`db_size_bytes`) is sampled.
pub const SIZE_EVERY: Duration = Duration::from_secs(10);

/// The address of the database: writes and queries, as typed messages ([`messages`]).
#[derive(Debug)]
pub struct ChainsDbActor {
    queries: DbQueries,
    writer: Addr<DbWriter>,
    /// [`SIZE_EVERY`], but in tests.
    size_every: Duration,
}

impl ChainsDbActor {
    /// Starts the writer and reader threads over `db`, and the actor that dispatches to them on
    /// the current arbiter. If a writer or reader ever stops, its arbiter starts a fresh one over
    /// the same database.
    pub fn start(db: ChainsDb, metrics: Metrics) -> Addr<ChainsDbActor> {
        Self::start_with_queries(db, metrics).0
    }

    /// [`Self::start`], and the read side as a [`DbQueries`] for callers on other arbiters.
    pub fn start_with_queries(db: ChainsDb, metrics: Metrics) -> (Addr<ChainsDbActor>, DbQueries) {
        Self::start_shared(Arc::new(SharedDb::new(DurableDb::new(db))), metrics, SIZE_EVERY)
    }

    /// [`Self::start_with_queries`] over a database already shared, sampling the size every
    /// `size_every`.
    fn start_shared(db: Arc<SharedDb>, metrics: Metrics, size_every: Duration) -> (Addr<ChainsDbActor>, DbQueries) {
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
        let queries = DbQueries { store, readers };
        (ChainsDbActor { queries: queries.clone(), writer, size_every }.start(), queries)
    }
}

impl Actor for ChainsDbActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.size_every, |act, _| act.queries.readers.do_send(SampleSize));
    }
}

/// The read side of the database, for callers on other arbiters that ask often: every query
/// goes straight to a reader thread and [`DbQueries::sync_status`] reads the published status in
/// place, with the answers [`ChainsDbActor`] gives. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DbQueries {
    store: Store,
    readers: Addr<DbReader>,
}

impl DbQueries {
    /// Runs a query on a reader thread. A `MailboxError` if the readers are gone.
    pub async fn send<M: Query>(&self, msg: M) -> Result<M::Result, MailboxError> {
        let (reply, answer) = oneshot::channel();
        msg.to_readers(self, reply);
        answer.await.map_err(|_| MailboxError::Closed)
    }

    /// [`GetSyncStatus`]: the status the last write published, at once; the readers' path while
    /// there is none or the database is closed.
    ///
    /// Each call yields its thread once before it answers, as a call answered from another
    /// thread does: jsonrpsee runs a batch's calls one after another in one task, so a batch of
    /// 2 000 calls answered in place would hold the servers' thread, and every other connection
    /// on it, until its last answer. (tokio's cooperative budget, which yields every 128 calls,
    /// left a probe's p99 under the JSON-RPC fuzz at about 10 ms against 6.7 ms with the yield:
    /// BENCHMARKS.md, the reliability section.)
    pub async fn sync_status(&self) -> Result<Result<SyncStatus, StorageError>, MailboxError> {
        tokio::task::yield_now().await;
        self.send(GetSyncStatus).await
    }
}

/// A query the reader threads answer: every read-only message in [`messages`]. Sealed: only
/// this module implements it.
pub trait Query: Message<Result: Send> + Send + Sized + 'static + sealed::Sealed {
    /// Hands the query and its reply channel to the readers (a reader answers on `reply`), or
    /// answers it at once ([`GetSyncStatus`], while a status is published).
    fn to_readers(self, queries: &DbQueries, reply: OneshotSender<Self::Result>);
}

mod sealed {
    pub trait Sealed {}
}

/// A message on its way to the writer or a reader, with the sender's reply channel: the worker
/// answers the sender itself (`None`: the sender wanted no answer).
struct Job<M: Message> {
    msg: M,
    reply: Reply<M>,
}

impl<M: Message> Message for Job<M> {
    type Result = ();
}

impl<M: Message> Job<M> {
    /// Sends the answer; a sender that stopped waiting is not an error.
    fn answer(self, result: M::Result) {
        if let Some(reply) = self.reply {
            let _ = reply.send(result);
        }
    }
}

/// How [`ChainsDbActor`] answers: by handing the message and the sender's reply channel to the
/// writer, or to the readers as [`DbQueries`] does, in arrival order, without waiting for either.
/// If the worker is gone, the reply channel is dropped and the sender sees a `MailboxError`, as
/// from a stopped actor.
pub struct Dispatch<M: Message>(Box<dyn FnOnce(Reply<M>) + Send>);

/// The sender's reply channel (`None`: the sender wanted no answer).
type Reply<M> = Option<OneshotSender<<M as Message>::Result>>;

impl<M> Dispatch<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn to_writer(msg: M, writer: &Addr<DbWriter>) -> Self
    where
        DbWriter: Handler<Job<M>>,
    {
        let writer = writer.clone();
        // `do_send` ignores the worker's mailbox capacity, so that messages keep their order;
        // every sender waits for its answer, so the queue holds one message per sender at most.
        Dispatch(Box::new(move |reply| writer.do_send(Job { msg, reply })))
    }

    fn query(msg: M, queries: &DbQueries) -> Self
    where
        M: Query,
    {
        let queries = queries.clone();
        // A query nobody waits for has nothing to do.
        Dispatch(Box::new(move |reply| {
            if let Some(reply) = reply {
                msg.to_readers(&queries, reply);
            }
        }))
    }
}

impl<M: Message> std::fmt::Debug for Dispatch<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch").finish_non_exhaustive()
    }
}

impl<M> MessageResponse<ChainsDbActor, M> for Dispatch<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn handle(self, _: &mut Context<ChainsDbActor>, reply: Reply<M>) {
        (self.0)(reply);
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
                Dispatch::query(msg, &self.queries)
            }
        }
        impl sealed::Sealed for $msg {}
        impl Query for $msg {
            fn to_readers(self, queries: &DbQueries, reply: OneshotSender<Self::Result>) {
                queries.readers.do_send(Job { msg: self, reply: Some(reply) });
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
                Dispatch::to_writer(msg, &self.writer)
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
impl Handler<GetSyncStatus> for ChainsDbActor {
    type Result = Dispatch<GetSyncStatus>;
    fn handle(&mut self, msg: GetSyncStatus, _: &mut Context<Self>) -> Self::Result {
        Dispatch::query(msg, &self.queries)
    }
}
impl sealed::Sealed for GetSyncStatus {}
// At once from the status the last write published; the readers' path while there is none.
impl Query for GetSyncStatus {
    fn to_readers(self, queries: &DbQueries, reply: OneshotSender<Self::Result>) {
        match queries.store.published() {
            Some(status) => {
                let _ = reply.send(Ok(status));
            }
            None => queries.readers.do_send(Job { msg: self, reply: Some(reply) }),
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
mod tests;
