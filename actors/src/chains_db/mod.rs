//! [`ChainsDbActor`]: the one owner of the database. Every write and every query goes through
//! its mailbox, so writes are serialised; it runs on its own thread (a [`SyncArbiter`]) so that
//! sled's flushes never block the arbiters that run the watchers' timers and RPC.

pub mod messages;

use std::sync::{Arc, Mutex, PoisonError};

use actix::{Actor, Addr, Handler, SyncArbiter, SyncContext};
use rollup_supervisor_storage::{ChainsDb, StorageError};
use tracing::{info, warn};

use self::messages::*;

/// The actor that owns the [`ChainsDb`].
#[derive(Debug)]
pub struct ChainsDbActor {
    db: Arc<Mutex<ChainsDb>>,
}

impl ChainsDbActor {
    /// Starts the actor on a dedicated thread. If it ever stops, the arbiter starts a fresh one
    /// over the same database.
    pub fn start(db: ChainsDb) -> Addr<ChainsDbActor> {
        let db = Arc::new(Mutex::new(db));
        SyncArbiter::start(1, move || ChainsDbActor { db: db.clone() })
    }

    fn with<T>(&self, f: impl FnOnce(&mut ChainsDb) -> Result<T, StorageError>) -> Result<T, StorageError> {
        // A poisoned lock means a previous handler panicked; the process exits on panic, so this
        // is only reachable in tests. sled's state is consistent either way.
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut db)
    }
}

impl Actor for ChainsDbActor {
    type Context = SyncContext<Self>;
}

/// Implements `Handler<$msg>` by running `$body` (a closure over the db and the message).
macro_rules! handle {
    ($msg:ty, |$db:ident, $m:ident| $body:expr) => {
        impl Handler<$msg> for ChainsDbActor {
            type Result = <$msg as actix::Message>::Result;
            fn handle(&mut self, $m: $msg, _: &mut SyncContext<Self>) -> Self::Result {
                self.with(|$db| $body)
            }
        }
    };
}

handle!(NewL1Blocks, |db, m| db.record_l1(&m.0));
handle!(L1Reorg, |db, m| {
    warn!(target: "chains_db", old_tip = m.old_tip, common_ancestor = m.common_ancestor, "rewinding L1 and every chain");
    db.rewind_l1(m.common_ancestor)
});
handle!(NewL1Heads, |db, m| {
    // Finality first: if it fails (a regression, a conflict), the safe head is still worth keeping.
    let finalized = m.finalized.map(|f| db.set_finalized(f)).transpose();
    if let Some(safe) = m.safe {
        db.set_safe(safe)?;
    }
    finalized.map(|_| ())
});
handle!(NewDerivedBlocks, |db, m| db.record_derived_from_head(m.chain, &m.blocks));
handle!(L2Reorg, |db, m| {
    warn!(target: "chains_db", chain = m.chain, common_ancestor = m.common_ancestor, "rewinding chain");
    db.rewind_chain(m.chain, m.common_ancestor)
});
handle!(RegisterChain, |db, m| {
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
handle!(Check, |db, _m| db.check());
handle!(Flush, |db, _m| db.flush());
handle!(PutOutage, |db, m| db.put_outage(&m.0));
handle!(GetLastOutage, |db, m| db.last_outage(m.0));
