//! Actor-level tests that need no node: messages in, database writes out; a peer that is gone;
//! shutdown; supervision with backoff.

use std::{cell::Cell, rc::Rc, time::Duration};

use actix::{Actor, Supervisor};
use alloy::primitives::B256;
use rollup_supervisor_storage::{BlockRef, ChainMode, ChainsDb, Recorded, StorageError};

use crate::{
    chains_db::{ChainsDbActor, messages::*},
    follow::{FollowConfig, FollowError, FollowStore, Follower},
    metrics::{self, Metrics},
    rpc::{BlockTag, EthRpc},
    watcher::{
        Watcher, WatcherTiming,
        messages::{GetStatus, HeadAnnounced, Shutdown},
    },
};

fn block(n: u64, fork: u8) -> BlockRef {
    let h = |n: u64, fork: u8| {
        let mut b = [0u8; 32];
        b[0] = fork;
        b[24..].copy_from_slice(&n.to_be_bytes());
        B256::from(b)
    };
    BlockRef { number: n, hash: h(n, fork), parent_hash: h(n.wrapping_sub(1), fork), timestamp: n }
}

/// The `FollowStore` methods of a store that holds no blocks and accepts every write.
macro_rules! store_without_blocks {
    () => {
        async fn stored(&self, _: u64, _: u64) -> Result<Vec<BlockRef>, FollowError> {
            Ok(Vec::new())
        }
        async fn floor(&self) -> Result<Option<u64>, FollowError> {
            Ok(None)
        }
        async fn append(&self, _: Vec<BlockRef>) -> Result<(), FollowError> {
            Ok(())
        }
        async fn rewind(&self, _: u64, _: u64) -> Result<(), FollowError> {
            Ok(())
        }
    };
}

/// Following `latest`, batches of 10, no confirmations.
fn follow_latest() -> FollowConfig {
    FollowConfig {
        tag: BlockTag::Latest,
        confirmations: 0,
        batch_size: 10,
        start_block: None,
        expected_chain_id: None,
        rewind_when_behind: false,
    }
}

/// Polls `f` until it is true, for at most `secs` seconds.
async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[actix::test]
async fn chains_db_actor_writes_and_answers() {
    let db = ChainsDbActor::start(ChainsDb::temporary().expect("temporary db"), Metrics::default());
    db.send(RegisterChain { chain: 9, mode: ChainMode::FollowsL1 }).await.unwrap().unwrap();
    let blocks: Vec<_> = (0..=2).map(|n| block(n, 1)).collect();
    assert_eq!(db.send(NewL1Blocks(blocks)).await.unwrap().unwrap(), Recorded::Appended(3));
    assert_eq!(db.send(GetTip(Track::L1)).await.unwrap().unwrap(), Some(block(2, 1)));
    let l2 = vec![block(0, 2), block(1, 2)];
    db.send(NewDerivedBlocks { chain: 9, blocks: l2 }).await.unwrap().unwrap();
    let blocks: Vec<_> = (3..=5).map(|n| block(n, 1)).collect();
    db.send(NewL1Blocks(blocks)).await.unwrap().unwrap();
    let pair = db.send(GetLocalSafe(9)).await.unwrap().unwrap().unwrap();
    assert_eq!((pair.source, pair.derived), (block(5, 1), block(1, 2)));

    // A block that does not link is refused and nothing changes.
    let err = db.send(NewL1Blocks(vec![block(6, 7)])).await.unwrap().unwrap_err();
    assert!(matches!(err, StorageError::ParentMismatch { number: 6, .. }));
    db.send(NewL1Heads { safe: Some(block(3, 1)), finalized: Some(block(2, 1)) }).await.unwrap().unwrap();
    assert_eq!(db.send(GetFloor(Track::L1)).await.unwrap().unwrap(), Some(2));

    // The reorg path: rewind L1 and the chain together.
    let err = db.send(L1Reorg { common_ancestor: 1, old_tip: 5 }).await.unwrap().unwrap_err();
    assert!(matches!(err, StorageError::BelowFinalized { .. }));
    db.send(L1Reorg { common_ancestor: 3, old_tip: 5 }).await.unwrap().unwrap();
    assert_eq!(db.send(GetTip(Track::L1)).await.unwrap().unwrap(), Some(block(3, 1)));
    let pair = db.send(GetLocalSafe(9)).await.unwrap().unwrap().unwrap();
    assert_eq!(pair.source, block(3, 1));
    db.send(L2Reorg { chain: 9, common_ancestor: 0 }).await.unwrap().unwrap();
    assert_eq!(db.send(GetTip(Track::L2(9))).await.unwrap().unwrap(), Some(block(0, 2)));
    assert!(db.send(Check).await.unwrap().unwrap().is_ok());
    db.send(Flush).await.unwrap().unwrap();
}

#[actix::test]
async fn heads_the_node_lies_about_are_counted_and_never_stored() {
    let metrics = Metrics::default();
    let db = ChainsDbActor::start(ChainsDb::temporary().expect("temporary db"), metrics.clone());
    db.send(NewL1Blocks((0..=10).map(|n| block(n, 1)).collect())).await.unwrap().unwrap();
    db.send(NewL1Heads { safe: Some(block(8, 1)), finalized: Some(block(6, 1)) }).await.unwrap().unwrap();
    let rejected =
        |head: &str, reason: &str| metrics.get(&metrics::L1_HEAD_REJECTED, &[("head", head), ("reason", reason)]);
    assert_eq!(rejected("finalized", "conflict"), 0.0, "created at zero");

    // Another block at a recorded height, and finality far above the head: neither is stored.
    let lie = NewL1Heads { safe: Some(block(9, 7)), finalized: Some(block(u64::MAX >> 1, 7)) };
    db.send(lie).await.unwrap().unwrap();
    let status = db.send(GetSyncStatus).await.unwrap().unwrap();
    assert_eq!((status.l1.safe, status.l1.finalized), (Some(block(8, 1)), Some(block(6, 1))));
    assert_eq!(db.send(GetFloor(Track::L1)).await.unwrap().unwrap(), Some(6));
    assert_eq!(rejected("safe", "conflict"), 1.0);
    assert_eq!(metrics.get(&metrics::L1_HEAD, &[("head", "finalized")]), 6.0);

    // A finalized block moving back is refused and counted too.
    db.send(NewL1Heads { safe: Some(block(8, 1)), finalized: Some(block(5, 1)) }).await.unwrap().unwrap();
    assert_eq!(rejected("finalized", "regression"), 1.0);
    assert!(db.send(Check).await.unwrap().unwrap().is_ok());
}

/// A store whose heads poll takes a while, like a slow node: how many run at once.
#[derive(Clone, Default)]
struct SlowHeads {
    polls: Rc<Cell<u32>>,
    in_flight: Rc<Cell<u32>>,
    most_at_once: Rc<Cell<u32>>,
}

impl FollowStore for SlowHeads {
    async fn tip(&self) -> Result<Option<BlockRef>, FollowError> {
        Ok(Some(block(0, 1)))
    }
    store_without_blocks!();
    async fn poll_heads(&self, _: &EthRpc) -> Result<(), FollowError> {
        self.in_flight.set(self.in_flight.get() + 1);
        self.most_at_once.set(self.most_at_once.get().max(self.in_flight.get()));
        // The node takes ten heads intervals to answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.in_flight.set(self.in_flight.get() - 1);
        self.polls.set(self.polls.get() + 1);
        Ok(())
    }
}

#[actix::test]
async fn heads_polls_run_one_at_a_time_when_the_node_is_slower_than_the_interval() {
    let store = SlowHeads::default();
    let rpc = EthRpc::new("http://127.0.0.1:9", Duration::from_millis(200)).expect("url");
    let cfg = follow_latest();
    let metrics = Metrics::default();
    let timing = WatcherTiming { heads_interval: Some(Duration::from_millis(5)), ..fast_timing() };
    let follower = Follower::new("slow", rpc, store.clone(), cfg, metrics.clone());
    let _addr = Watcher::new(follower, timing, metrics).start();
    assert!(eventually(10, async || store.polls.get() >= 4).await, "the heads were not polled");
    assert_eq!(store.most_at_once.get(), 1, "heads polls overlapped: their writes could land in any order");
}

/// A store that counts calls and fails every `tip` with `fail`.
#[derive(Clone)]
struct FakeStore {
    tips: Rc<Cell<u32>>,
    gone: bool,
}

impl FollowStore for FakeStore {
    async fn tip(&self) -> Result<Option<BlockRef>, FollowError> {
        self.tips.set(self.tips.get() + 1);
        if self.gone { Err(FollowError::DbGone(actix::MailboxError::Closed)) } else { Ok(Some(block(0, 1))) }
    }
    store_without_blocks!();
}

fn fast_timing() -> WatcherTiming {
    WatcherTiming {
        poll_interval: Duration::from_millis(10),
        heads_interval: None,
        retry: (Duration::from_millis(5), Duration::from_millis(20)),
        restart: (Duration::from_millis(5), Duration::from_millis(40)),
        head_stall_after: None,
    }
}

fn fake_watcher(store: FakeStore, metrics: Metrics) -> Watcher<Follower<FakeStore>> {
    // Nothing listens on port 9; the node is never reached when the store fails first.
    let rpc = EthRpc::new("http://127.0.0.1:9", Duration::from_millis(200)).expect("url");
    let cfg = follow_latest();
    Watcher::new(Follower::new("fake", rpc, store, cfg, metrics.clone()), fast_timing(), metrics)
}

#[actix::test]
async fn a_watcher_whose_database_is_gone_is_restarted_with_backoff_and_counted() {
    let metrics = Metrics::default();
    let store = FakeStore { tips: Rc::new(Cell::new(0)), gone: true };
    let (s, m) = (store.clone(), metrics.clone());
    let addr = Supervisor::start(move |_| fake_watcher(s, m));
    let restarted = eventually(10, async || addr.send(GetStatus).await.is_ok_and(|s| s.restarts >= 3)).await;
    assert!(restarted, "the supervisor did not restart the watcher");
    assert!(metrics.get(&metrics::ACTOR_RESTARTS, &[("actor", "fake")]) >= 3.0);
    assert!(store.tips.get() >= 3, "each restart reloads its state from the store");
}

#[actix::test]
async fn a_node_that_is_down_is_retried_without_restarts() {
    let metrics = Metrics::default();
    let store = FakeStore { tips: Rc::new(Cell::new(0)), gone: false };
    let addr = fake_watcher(store.clone(), metrics.clone()).start();
    let failing = eventually(10, async || addr.send(GetStatus).await.is_ok_and(|s| s.consecutive_failures >= 2)).await;
    assert!(failing, "the watcher did not retry the dead node");
    let status = addr.send(GetStatus).await.unwrap();
    assert_eq!(status.restarts, 0, "a dead node is waited out, not a reason to restart");
    assert!(status.last_error.is_some_and(|e| e.contains("127.0.0.1:9")));
    assert!(metrics.get(&metrics::WATCHER_ERRORS, &[("watcher", "fake"), ("kind", "rpc")]) >= 2.0);
}

/// A store whose first `tip` waits until the test releases it: a step held in flight.
#[derive(Clone, Default)]
struct HeldStore {
    entered: Rc<Cell<bool>>,
    finished: Rc<Cell<bool>>,
    release: Rc<tokio::sync::Notify>,
}

impl FollowStore for HeldStore {
    async fn tip(&self) -> Result<Option<BlockRef>, FollowError> {
        if !self.entered.replace(true) {
            self.release.notified().await;
            self.finished.set(true);
        }
        Ok(Some(block(0, 1)))
    }
    store_without_blocks!();
}

#[actix::test]
async fn shutdown_answers_once_the_step_in_flight_has_finished_and_no_step_starts_after_it() {
    let metrics = Metrics::default();
    let store = HeldStore::default();
    // Nothing listens on port 9: every step ends in one failed request, counted per endpoint.
    let rpc = EthRpc::new("http://127.0.0.1:9", Duration::from_millis(200))
        .expect("url")
        .with_metrics(metrics.clone(), "held");
    let requests = || metrics.get(&metrics::NODE_REQUESTS, &[("endpoint", "held"), ("method", "eth_getBlockByNumber")]);
    let cfg = follow_latest();
    let follower = Follower::new("held", rpc, store.clone(), cfg, metrics.clone());
    let addr = Watcher::new(follower, fast_timing(), metrics.clone()).start();
    assert!(eventually(10, async || store.entered.get()).await, "the first step did not start");

    let mut shutdown = std::pin::pin!(addr.send(Shutdown));
    // Bounded negative check: while the step is held, Shutdown must not answer. 20 poll
    // intervals is ample for a reply that did not wait.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut shutdown).await;
    assert!(early.is_err(), "Shutdown answered while a step was in flight");
    assert!(!store.finished.get());
    assert_eq!(requests(), 0.0, "the held step has not reached the node yet");

    store.release.notify_one();
    let answered = tokio::time::timeout(Duration::from_secs(5), &mut shutdown).await;
    assert!(matches!(answered, Ok(Ok(()))), "Shutdown did not answer once the step finished: {answered:?}");
    assert!(store.finished.get(), "Shutdown answered before the step in flight finished");
    assert_eq!(requests(), 1.0, "the held step ran to its end (its request to the node) before the answer");

    // No step starts after the reply: neither the poll and retry timers (10 ms, 5-20 ms
    // backoff) nor an announced head. A bounded negative check over 20 retry intervals: a
    // watcher that kept stepping would have asked the node several times by then.
    addr.send(HeadAnnounced).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(requests(), 1.0, "a step ran after shutdown");
}

mod signer_actor {
    use std::time::Duration;

    use actix::Actor;
    use alloy::{
        consensus::TxEip1559,
        primitives::{Address, TxKind, U256},
    };
    use rollup_supervisor_signer::{
        Signer, Web3Signer,
        test_utils::{Mode, StandIn},
    };

    use crate::{
        metrics::{self, Metrics},
        uptime::{
            messages::{GetSignerHealth, SignTransaction},
            signer_actor::{BreakerConfig, SignError, SignerActor},
        },
    };

    fn tx() -> TxEip1559 {
        TxEip1559 {
            chain_id: 1,
            gas_limit: 100_000,
            max_fee_per_gas: 1,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(Address::ZERO),
            value: U256::ZERO,
            ..Default::default()
        }
    }

    #[actix::test]
    async fn a_slow_signer_times_out_then_the_breaker_fails_fast_then_a_probe_recovers() {
        let stand_in = StandIn::start().await.unwrap();
        let signer = Signer::Web3(Web3Signer::new(stand_in.config()).unwrap());
        let breaker = BreakerConfig { threshold: 2, cool_down: Duration::from_millis(300) };
        let metrics = Metrics::default();
        let actor = SignerActor::new(7, signer, Duration::from_millis(200), breaker, metrics.clone()).start();

        assert!(actor.send(SignTransaction(tx())).await.unwrap().is_ok());
        stand_in.set_mode(Mode::Slow(Duration::from_secs(5)));
        for _ in 0..2 {
            let err = actor.send(SignTransaction(tx())).await.unwrap().unwrap_err();
            assert!(matches!(err, SignError::Timeout(_)), "{err}");
        }
        let before = stand_in.sign_requests();
        let err = actor.send(SignTransaction(tx())).await.unwrap().unwrap_err();
        assert!(matches!(err, SignError::BreakerOpen(_)), "{err}");
        assert_eq!(stand_in.sign_requests(), before, "an open breaker makes no request");
        let health = actor.send(GetSignerHealth).await.unwrap();
        assert!(health.breaker_open && health.consecutive_failures >= 2);
        assert!(metrics.get(&metrics::SIGNER_BREAKER_OPENED, &[("chain", "7")]) >= 1.0);
        assert_eq!(metrics.get(&metrics::SIGNER_BREAKER, &[("chain", "7")]), 1.0, "open");
        assert!(metrics.get(&metrics::SIGNER_ERRORS, &[("chain", "7"), ("backend", "web3signer")]) >= 2.0);

        stand_in.set_mode(Mode::Normal);
        let healed = super::eventually(10, async || actor.send(SignTransaction(tx())).await.unwrap().is_ok()).await;
        assert!(healed, "the half-open probe signs once the signer is back");
        let health = actor.send(GetSignerHealth).await.unwrap();
        assert!(!health.breaker_open && health.consecutive_failures == 0);
        assert_eq!(metrics.get(&metrics::SIGNER_BREAKER, &[("chain", "7")]), 0.0, "closed");
        assert!(metrics.get(&metrics::SIGNER_LATENCY, &[("chain", "7"), ("backend", "web3signer")]) >= 2.0);
    }
}
