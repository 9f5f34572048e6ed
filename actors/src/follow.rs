//! [`Follower`]: follows one chain's head on its node and mirrors it into a [`FollowStore`],
//! batch by batch, detecting reorgs by parent hash and rewinding to the common ancestor.
//!
//! The same logic serves the L1 index (the L1 watcher) and each L2 chain's derived blocks (the
//! L2 watchers); only the store differs. It is plain async code with no actor in it: the
//! watcher actor drives one [`Follower::step`] at a time.

use std::future::Future;

use actix::MailboxError;
use rollup_supervisor_storage::{BlockRef, StorageError};
use tracing::{info, warn};

use crate::{
    metrics::{self, Metrics},
    rpc::{BlockTag, EthRpc, RpcError},
};

/// Where a [`Follower`] keeps what it has seen.
#[allow(async_fn_in_trait)]
pub trait FollowStore {
    /// The newest stored block.
    fn tip(&self) -> impl Future<Output = Result<Option<BlockRef>, FollowError>>;
    /// The stored blocks in `from..=to`.
    fn stored(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<BlockRef>, FollowError>>;
    /// The lowest height a rewind may reach (L1: the finalized block).
    fn floor(&self) -> impl Future<Output = Result<Option<u64>, FollowError>>;
    /// Appends consecutive blocks that extend the tip, in one durable write.
    fn append(&self, blocks: Vec<BlockRef>) -> impl Future<Output = Result<(), FollowError>>;
    /// Drops every stored block above `common_ancestor`.
    fn rewind(&self, common_ancestor: u64, old_tip: u64) -> impl Future<Output = Result<(), FollowError>>;
    /// Reads and records the node's labelled heads (L1: safe and finalized); nothing by default.
    fn poll_heads(&self, rpc: &EthRpc) -> impl Future<Output = Result<(), FollowError>> {
        let _ = rpc;
        async { Ok(()) }
    }
}

/// A heads poll: see [`Step::heads_poll`].
pub type HeadsPoll = std::pin::Pin<Box<dyn Future<Output = Result<(), FollowError>>>>;

/// What a [`Watcher`](crate::watcher::Watcher) runs, one step at a time: a [`Follower`], or
/// a chain's [`RollupFollower`](crate::derivation::RollupFollower).
pub trait Step: Unpin + 'static {
    /// The name used in logs and metric labels.
    fn name(&self) -> &str;
    /// One round of work.
    fn step(&mut self) -> impl Future<Output = Result<Progress, FollowError>>;
    /// Forgets everything cached: the next step reloads its state (after a restart).
    fn reset(&mut self);
    /// Whether it follows a node's `latest` block (and so checks that it is alive).
    fn follows_latest(&self) -> bool {
        false
    }
    /// What the node answered for `latest` in the last step that asked, once; see
    /// [`Follower::take_head_answer`].
    fn take_head_answer(&mut self) -> Option<Option<BlockRef>> {
        None
    }
    /// A poll of the node's labelled heads (L1: safe and finalized), if it has any.
    fn heads_poll(&self) -> Option<HeadsPoll> {
        None
    }
}

impl<S: FollowStore + Clone + Unpin + 'static> Step for Follower<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self) -> impl Future<Output = Result<Progress, FollowError>> {
        Follower::step(self)
    }

    fn reset(&mut self) {
        Follower::reset(self);
    }

    fn follows_latest(&self) -> bool {
        self.cfg.tag == BlockTag::Latest
    }

    fn take_head_answer(&mut self) -> Option<Option<BlockRef>> {
        Follower::take_head_answer(self)
    }

    fn heads_poll(&self) -> Option<HeadsPoll> {
        let (store, rpc) = (self.store.clone(), self.rpc.clone());
        Some(Box::pin(async move { store.poll_heads(&rpc).await }))
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The node did not answer, or answered garbage.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The node's answers contradict each other (it reorged between two calls).
    #[error("inconsistent node answer: {0}")]
    Inconsistent(String),
    /// The node serves another chain than configured.
    #[error("the node at {endpoint} serves chain {got}, not the configured chain {expected}")]
    WrongChain {
        /// The node's address.
        endpoint: String,
        /// The configured chain id.
        expected: u64,
        /// The node's chain id.
        got: u64,
    },
    /// The database refused or failed.
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    /// The step must wait for something outside it (the L1 index to reach a block, a node to
    /// catch up, or two nodes to agree).
    #[error("{0}")]
    Waiting(String),
    /// The database actor is gone.
    #[error("database actor unreachable: {0}")]
    DbGone(#[from] MailboxError),
    /// A block at or below the finalized height differs from the node's.
    #[error("stored block {number} is at or below the finalized block {floor} but no longer canonical")]
    FinalizedReorg {
        /// The height of the mismatch.
        number: u64,
        /// The finalized height.
        floor: u64,
    },
}

impl FollowError {
    /// Not a failure: the step must wait for another part of the process (an L2 block cannot be
    /// attributed to an L1 block before the L1 index holds one, as on a fresh start; nothing is
    /// recorded before the supervisor has compared the datadir's chain identity with the nodes).
    pub fn is_waiting(&self) -> bool {
        matches!(
            self,
            FollowError::Waiting(_) | FollowError::Storage(StorageError::NoL1 | StorageError::IdentityUnverified)
        )
    }

    /// Errors the follower cannot handle by waiting: the actor stops and its supervisor restarts
    /// it, with state reloaded from the database and exponential backoff.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FollowError::DbGone(_)
                | FollowError::FinalizedReorg { .. }
                | FollowError::Storage(
                    StorageError::Corrupt { .. } | StorageError::Sled(_) | StorageError::UnsupportedSchema { .. }
                )
        )
    }
}

/// How a [`Follower`] follows.
#[derive(Clone, Debug)]
pub struct FollowConfig {
    /// Which head to follow.
    pub tag: BlockTag,
    /// Stay this many blocks behind the head.
    pub confirmations: u64,
    /// Blocks per batched request (at least 1).
    pub batch_size: u64,
    /// Where an empty store starts; the head if `None`.
    pub start_block: Option<u64>,
    /// The chain id the node must serve, checked before the first step after every (re)start.
    pub expected_chain_id: Option<u64>,
    /// A node whose chain is shorter than the store (it lacks the stored tip, or has another
    /// block there) was reset or restored from an older snapshot: rewind to what it still has.
    /// For L2 nodes; an L1 node that lags (behind a load balancer, say) must not rewind the
    /// L1 index, so there a shorter chain is waited out.
    pub rewind_when_behind: bool,
}

/// What a step achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing new (or the node is behind us).
    Idle,
    /// Blocks were recorded; `behind` more are known to be waiting.
    Advanced {
        /// Blocks between the new tip and the target.
        behind: u64,
    },
    /// A reorg was found and the store rewound to the common ancestor.
    Rewound,
    /// The node answered `null` for the head it follows: it has none, or it is failing.
    NoHead,
}

/// Follows one chain; see the module documentation.
#[derive(Debug)]
pub struct Follower<S> {
    rpc: EthRpc,
    store: S,
    cfg: FollowConfig,
    name: String,
    metrics: Metrics,
    tip: Option<BlockRef>,
    chain_checked: bool,
    /// The node's answer for the followed head in the last step that got one.
    head_answer: Option<Option<BlockRef>>,
    /// While catching up, the next batch, fetched while the previous one was written: at most
    /// one batch ahead. Validated like any fetched batch when the next step takes it.
    prefetched: Option<Vec<BlockRef>>,
    /// The target of the step that prefetched it.
    catch_up_target: Option<u64>,
    /// The last step found the node without the stored tip (see `rewind_when_behind`).
    reset_suspected: bool,
    /// When the node's head was last asked.
    head_asked: Option<std::time::Instant>,
}

/// Mid catch-up, how long the head asked at the start of a step stands for the next ones.
const HEAD_REASK: std::time::Duration = std::time::Duration::from_secs(1);

impl<S: FollowStore> Follower<S> {
    /// A follower named `name` (in logs and metric labels).
    pub fn new(name: impl Into<String>, rpc: EthRpc, store: S, cfg: FollowConfig, metrics: Metrics) -> Self {
        Self {
            rpc,
            store,
            cfg,
            name: name.into(),
            metrics,
            tip: None,
            chain_checked: false,
            head_answer: None,
            prefetched: None,
            catch_up_target: None,
            reset_suspected: false,
            head_asked: None,
        }
    }

    /// Which head of the node it follows.
    pub fn tag(&self) -> BlockTag {
        self.cfg.tag
    }

    /// What the node answered for the followed head (`Some(None)`: `null`) in the last step that
    /// asked it, once: `None` until the next step gets an answer.
    pub fn take_head_answer(&mut self) -> Option<Option<BlockRef>> {
        self.head_answer.take()
    }

    /// Forgets everything cached: the next step reloads the tip and re-checks the chain id.
    pub fn reset(&mut self) {
        self.tip = None;
        self.chain_checked = false;
        self.prefetched = None;
    }

    /// The node client.
    pub fn rpc(&self) -> &EthRpc {
        &self.rpc
    }

    /// The name used in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One round: catch up by at most one batch, or find and rewind a reorg.
    pub async fn step(&mut self) -> Result<Progress, FollowError> {
        let tip = match self.tip {
            Some(tip) => Some(tip),
            None => self.store.tip().await?,
        };
        self.tip = tip;
        if !self.chain_checked {
            if let Some(expected) = self.cfg.expected_chain_id {
                let got = self.rpc.chain_id().await?;
                if got != expected {
                    return Err(FollowError::WrongChain { endpoint: self.rpc.endpoint().to_owned(), expected, got });
                }
            }
            self.chain_checked = true;
        }
        // Mid catch-up, with the next batch already fetched, the target asked one step ago
        // stands: asking the head again would cost a round trip per batch. It is asked again
        // once that target is reached, and at least every HEAD_REASK (the liveness check and
        // the lag metrics read the answer).
        let fresh = self.head_asked.is_some_and(|at| at.elapsed() < HEAD_REASK);
        let target = match (&self.prefetched, self.catch_up_target, tip) {
            (Some(_), Some(target), Some(tip)) if target > tip.number && fresh => target,
            _ => {
                self.head_asked = Some(std::time::Instant::now());
                let head = self.rpc.block_by_tag(self.cfg.tag).await?;
                self.head_answer = Some(head);
                let Some(head) = head else {
                    return Ok(Progress::NoHead);
                };
                head.number.saturating_sub(self.cfg.confirmations)
            }
        };
        let labels = [("watcher", self.name.as_str())];
        self.metrics.set(&metrics::NODE_HEAD, &labels, target as f64);
        self.metrics.set(&metrics::SYNC_LAG, &labels, target.saturating_sub(tip.map_or(target, |t| t.number)) as f64);
        let Some(tip) = tip else {
            return self.anchor(target).await;
        };

        if target <= tip.number {
            self.prefetched = None;
            // Nothing new above us; is what we hold at `target` still the node's block? This
            // catches a reorg to a chain no longer than ours, also one that happened while we
            // were stopped.
            let node = self.rpc.block_by_number(target).await?;
            let stored = self.store.stored(target, target).await?;
            if let (Some(n), Some(s)) = (node, stored.first())
                && n.hash != s.hash
            {
                return self.rewind_from(target, tip).await;
            }
            if self.cfg.rewind_when_behind && target < tip.number {
                let at_tip = self.rpc.block_by_number(tip.number).await?;
                // Twice in a row before it counts: one answer from a lagging replica behind a
                // load balancer must not rewind the log.
                let lost = at_tip.is_none_or(|b| b.hash != tip.hash);
                if lost && !std::mem::replace(&mut self.reset_suspected, true) {
                    return Ok(Progress::Idle);
                }
                if lost {
                    self.reset_suspected = false;
                    warn!(
                        target: "follow",
                        watcher = %self.name,
                        node_head = target,
                        stored_tip = tip.number,
                        "the node no longer has the stored tip (reset, or restored from an older snapshot): rewinding to the newest block it still has"
                    );
                    self.metrics.inc(&metrics::NODE_RESETS, &[("watcher", self.name.as_str())]);
                    return self.rewind_from(target, tip).await;
                }
            }
            self.reset_suspected = false;
            // Reload the tip next time: another writer may have moved it (an L1 rewind takes an
            // L2 log back with it, also one made at start-up before this watcher loaded its tip),
            // and a node with nothing new would otherwise never show it.
            self.tip = None;
            return Ok(Progress::Idle);
        }

        let batch = self.cfg.batch_size.max(1);
        let blocks = match self.prefetched.take() {
            Some(ahead) if ahead.first().is_some_and(|b| b.number == tip.number + 1) => ahead,
            _ => self.rpc.blocks(tip.number + 1..=target.min(tip.number.saturating_add(batch))).await?,
        };
        let Some(first) = blocks.first() else {
            return Ok(Progress::Idle);
        };
        if let Some(w) = blocks.windows(2).find(|w| !w[1].is_child_of(&w[0])) {
            return Err(FollowError::Inconsistent(format!(
                "block {} does not link to block {} in one batch",
                w[1].number, w[0].number
            )));
        }
        if !first.is_child_of(&tip) {
            // The node's chain forks below our tip (also after a restart: a reorg while down).
            return self.rewind_from(tip.number, tip).await;
        }
        let last = blocks[blocks.len() - 1];
        let count = blocks.len() as u64;
        // Catching up: fetch the next batch while this one is written (fetching and writing
        // alternated before, which held catch-up to 65-76 % of the node's rate).
        let appended = if target > last.number {
            let next = last.number + 1..=target.min(last.number.saturating_add(batch));
            let (appended, ahead) = tokio::join!(self.store.append(blocks), self.rpc.blocks(next));
            self.prefetched = ahead.ok().filter(|b| !b.is_empty());
            self.catch_up_target = Some(target);
            appended
        } else {
            self.store.append(blocks).await
        };
        if let Err(e) = appended {
            // The store moved under us (a rewind by another watcher): reload next time.
            self.tip = None;
            self.prefetched = None;
            return Err(e);
        }
        self.tip = Some(last);
        let labels = [("watcher", self.name.as_str())];
        self.metrics.add(&metrics::BLOCKS_RECORDED, &labels, count as f64);
        self.metrics.set(&metrics::RECORDED_HEAD, &labels, last.number as f64);
        self.metrics.set(&metrics::SYNC_LAG, &labels, (target - last.number) as f64);
        Ok(Progress::Advanced { behind: target - last.number })
    }

    /// An empty store starts at the configured block, or at the head.
    async fn anchor(&mut self, target: u64) -> Result<Progress, FollowError> {
        let start = self.cfg.start_block.unwrap_or(target);
        if start > target {
            return Ok(Progress::Idle);
        }
        let Some(block) = self.rpc.block_by_number(start).await? else {
            return Ok(Progress::Idle);
        };
        self.store.append(vec![block]).await?;
        info!(target: "follow", watcher = %self.name, number = block.number, hash = %block.hash, "started following");
        self.tip = Some(block);
        Ok(Progress::Advanced { behind: target - start })
    }

    /// Finds the highest stored block at or below `from` that the node still has, and rewinds
    /// the store to it.
    async fn rewind_from(&mut self, from: u64, tip: BlockRef) -> Result<Progress, FollowError> {
        let floor = self.store.floor().await?;
        let batch = self.cfg.batch_size.max(1);
        let mut hi = from;
        let ancestor = loop {
            if let Some(floor) = floor
                && hi < floor
            {
                return Err(FollowError::FinalizedReorg { number: hi + 1, floor });
            }
            let lo = hi.saturating_sub(batch - 1).max(floor.unwrap_or(0));
            let stored = self.store.stored(lo, hi).await?;
            let node = self.rpc.blocks(lo..=hi).await?;
            let matching =
                stored.iter().rev().find(|s| node.get((s.number - lo) as usize).is_some_and(|n| n.hash == s.hash));
            if let Some(m) = matching {
                break m.number;
            }
            match stored.first() {
                // Nothing stored down here: everything we hold is off the node's chain.
                None => break hi,
                // The first stored block is in this window and differs: drop everything.
                Some(first) if first.number > lo || lo == 0 => {
                    break first.number.checked_sub(1).ok_or_else(|| {
                        FollowError::Inconsistent("the node's genesis block differs from the stored one".into())
                    })?;
                }
                Some(_) => {}
            }
            if floor == Some(lo) {
                return Err(FollowError::FinalizedReorg { number: lo, floor: lo });
            }
            hi = lo - 1;
        };
        warn!(
            target: "follow",
            watcher = %self.name,
            old_tip = tip.number,
            common_ancestor = ancestor,
            depth = tip.number - ancestor,
            "reorg: rewinding to the common ancestor"
        );
        self.prefetched = None;
        self.store.rewind(ancestor, tip.number).await?;
        let labels = [("watcher", self.name.as_str())];
        self.metrics.inc(&metrics::REORGS, &labels);
        self.metrics.observe(&metrics::REORG_DEPTH, &labels, (tip.number - ancestor) as f64);
        self.tip = None;
        Ok(Progress::Rewound)
    }
}
