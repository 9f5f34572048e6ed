//! [`RollupFollower`]: a chain's derivation log from its rollup node (op-node, kona-node), in
//! explicit mode: which L2 blocks were derived from which L1 block, as the node derived them.
//!
//! Each step asks the rollup node's `optimism_syncStatus`. Its `current_l1` is the L1 block
//! derivation idles at; everything safe was derived from L1 *before* it, so the newest L1 block
//! fully derived is `current_l1 - 1` (its parent), and that block must be in our L1 index with
//! the same hash: until the index reaches it the step waits, and while the hashes differ (a
//! reorg on one side) it holds, says so once, and follows once they agree. For every L1 block
//! between the log's head and that one it records, in one write, the L1 block
//! (`NewL1 : ExistingL2`) and the L2 blocks derived from it:
//!
//! - **exact**, where the node serves `optimism_safeHeadAtL1Block` (op-node with its safe-head
//!   database): the safe head as of each L1 block says which L2 blocks that block made safe;
//! - **bounded**, otherwise: the L2 blocks that became safe since the last step are attributed to
//!   the newest L1 block fully derived at this step. The true source is at or below it, and above
//!   the L1 block the previous step reached: the error is at most the L1 blocks derived between
//!   two polls (one or two while following at the default poll interval; more while the rollup
//!   node catches up).
//!
//! The L2 blocks themselves are fetched from the chain's L2 node and checked against the rollup
//! node's refs (hash at every safe head it named, parent links from the log's tip). An L2 node
//! that no longer has the log's newest block (reset, or restored from an older snapshot) makes
//! the log rewind to the newest block it still has; the explicit log's head goes back with it,
//! and the rollup node's re-derivation is recorded from there.

use std::time::{Duration, Instant};

use alloy::primitives::B256;

use actix::Addr;
use rollup_supervisor_storage::{BlockRef, ChainId, DerivedPair};
use tracing::{info, warn};

use crate::{
    chains_db::{ChainsDbActor, messages::*},
    follow::{FollowError, Progress, Step},
    metrics::{self, Metrics},
    rpc::{BlockTag, EthRpc, SafeHeadError, SyncStatus},
};

/// The most L2 blocks one step fetches and records (more only when one L1 block derived more).
const L2_PER_STEP: u64 = 2_000;

/// See the module documentation.
#[derive(Debug)]
pub struct RollupFollower {
    chain: ChainId,
    name: String,
    rollup: EthRpc,
    l2: EthRpc,
    db: Addr<ChainsDbActor>,
    /// L1 blocks per step.
    batch_size: u64,
    metrics: Metrics,
    /// Since when the rollup node has not served `optimism_safeHeadAtL1Block` (asked again
    /// after [`SAFE_HEAD_REPROBE`]).
    unsupported_since: Option<Instant>,
    /// Whether the last answer was exact (to log the change once).
    exact: bool,
    /// Why the log is held (the rollup node's L1 block is not ours), while it is: said once.
    held: Option<String>,
    /// The last step found the L2 node without the log's newest block.
    reset_suspected: bool,
}

impl RollupFollower {
    /// Follows `chain`'s rollup node (`rollup`) and L2 node (`l2`) into its log behind `db`.
    pub fn new(
        chain: ChainId,
        rollup: EthRpc,
        l2: EthRpc,
        db: Addr<ChainsDbActor>,
        batch_size: u64,
        metrics: Metrics,
    ) -> Self {
        let name = format!("rollup_{chain}");
        Self {
            chain,
            name,
            rollup,
            l2,
            db,
            batch_size: batch_size.max(1),
            metrics,
            unsupported_since: None,
            exact: false,
            held: None,
            reset_suspected: false,
        }
    }

    async fn run(&mut self) -> Result<Progress, FollowError> {
        let status = self.rollup.sync_status().await?;
        let Some(fully) = status.current_l1.number.checked_sub(1) else {
            return Ok(Progress::Idle);
        };
        let ours = self.db.send(GetL1Block(fully)).await??;
        let Some(ours) = ours else {
            return Err(FollowError::Waiting(format!("the L1 index has not reached block {fully} yet")));
        };
        if ours.hash != status.current_l1.parent_hash {
            return Err(self.hold(format!(
                "the rollup node derived from L1 block {fully} {} but the L1 index holds {}: a reorg on its side or ours; holding until they agree",
                status.current_l1.parent_hash, ours.hash
            )));
        }
        let Some(tip) = self.db.send(GetLocalSafe(self.chain)).await?? else {
            return self.anchor(ours, &status).await;
        };
        if let Some(progress) = self.rewind_if_reset(&tip).await? {
            return Ok(progress);
        }
        let from = tip.source.number + 1;
        if from > fully {
            return Ok(Progress::Idle);
        }
        let to = fully.min(tip.source.number + self.batch_size);
        let l1 = self.db.send(GetRange { track: Track::L1, from, to }).await??;
        if l1.len() as u64 != to - from + 1 {
            return Err(FollowError::Waiting(format!("the L1 index lacks blocks in {from}..={to}")));
        }
        let heads = self.safe_heads(&l1, fully, &status, tip.derived.number).await?;
        // Keep a step's L2 fetch bounded: stop after the L1 block that crosses L2_PER_STEP.
        let take = heads.iter().position(|h| h.0 > tip.derived.number + L2_PER_STEP).map_or(heads.len(), |i| i + 1);
        let (l1, heads) = (&l1[..take], &heads[..take]);
        let newest = heads.last().map_or(tip.derived.number, |h| h.0);
        if newest > tip.derived.number {
            // One request first: a rollup node ahead of this L2 node (or naming a block no chain
            // has) costs a wait, not a fetch of everything up to it.
            let l2_head = self.l2_head().await?;
            if newest > l2_head {
                return Err(FollowError::Waiting(format!(
                    "the rollup node's safe L2 block {newest} is above the L2 node's head {l2_head}"
                )));
            }
        }
        let l2 = self.l2_blocks(&tip.derived, newest).await?;
        for (number, hash) in heads.iter().filter(|h| h.0 > tip.derived.number) {
            let fetched = &l2[(number - tip.derived.number - 1) as usize];
            if let Some(hash) = hash
                && fetched.hash != *hash
            {
                return Err(FollowError::Inconsistent(format!(
                    "the rollup node's safe L2 block {number} is {hash}, the L2 node's is {}",
                    fetched.hash
                )));
            }
        }
        let mut entries = Vec::with_capacity(l1.len() + l2.len());
        let mut derived = tip.derived;
        for (source, (head, _)) in l1.iter().zip(heads) {
            entries.push((*source, derived));
            for block in &l2[(derived.number - tip.derived.number) as usize..(head - tip.derived.number) as usize] {
                entries.push((*source, *block));
                derived = *block;
            }
        }
        self.db.send(NewDerivationPairs { chain: self.chain, entries }).await??;
        self.released();
        let labels = [("watcher", self.name.as_str())];
        self.metrics.add(&metrics::BLOCKS_RECORDED, &labels, (derived.number - tip.derived.number) as f64);
        self.metrics.set(&metrics::RECORDED_HEAD, &labels, derived.number as f64);
        let reached = l1.last().map_or(tip.source.number, |b| b.number);
        self.metrics.set(&metrics::SYNC_LAG, &labels, (fully - reached) as f64);
        Ok(Progress::Advanced { behind: fully - reached })
    }

    /// An empty log starts at the newest L1 block fully derived, with the node's safe head.
    async fn anchor(&mut self, source: BlockRef, status: &SyncStatus) -> Result<Progress, FollowError> {
        let safe = self.l2.block_by_number(status.safe_l2.number).await?;
        let Some(safe) = safe.filter(|b| b.hash == status.safe_l2.hash) else {
            return Err(FollowError::Inconsistent(format!(
                "the L2 node does not have the rollup node's safe block {} {}",
                status.safe_l2.number, status.safe_l2.hash
            )));
        };
        self.db.send(NewDerivationPairs { chain: self.chain, entries: vec![(source, safe)] }).await??;
        info!(target: "derivation", chain = self.chain, l1 = source.number, l2 = safe.number, "started the derivation log from the rollup node");
        Ok(Progress::Advanced { behind: 0 })
    }

    /// The safe head as of each L1 block in `l1`: its number, and its hash where the rollup
    /// node named it. Never below `derived`, the log's newest L2 block.
    async fn safe_heads(
        &mut self,
        l1: &[BlockRef],
        fully: u64,
        status: &SyncStatus,
        derived: u64,
    ) -> Result<Vec<(u64, Option<B256>)>, FollowError> {
        let first = l1[0].number;
        let asked = self.unsupported_since.is_none_or(|since| since.elapsed() >= SAFE_HEAD_REPROBE);
        let answers = if asked {
            match self.rollup.safe_heads_at(first..=l1[l1.len() - 1].number).await {
                Ok(answers) => answers,
                Err(SafeHeadError::Rpc(e)) => return Err(e.into()),
                Err(other) => vec![Err(other)],
            }
        } else {
            Vec::new()
        };
        let mut answers = answers.into_iter();
        let mut out = Vec::with_capacity(l1.len());
        let mut prev = derived;
        for block in l1 {
            let exact = match answers.next() {
                // Made safe by an L1 block before this range: the safe head did not move.
                Some(Ok(at)) if at.l1_block.number < first => Some((prev, None)),
                Some(Ok(at)) => {
                    let ours = l1.get((at.l1_block.number - first) as usize).map(|b| b.hash);
                    if at.l1_block.number > block.number || ours != Some(at.l1_block.hash) {
                        return Err(self.hold(format!(
                            "the rollup node says L1 block {} {} made L2 block {} safe as of L1 block {}, but the L1 index holds {ours:?} there",
                            at.l1_block.number, at.l1_block.hash, at.safe_head.number, block.number
                        )));
                    }
                    self.supported();
                    Some(if at.safe_head.number > prev {
                        (at.safe_head.number, Some(at.safe_head.hash))
                    } else {
                        (prev, None)
                    })
                }
                Some(Err(SafeHeadError::Unsupported(why))) => {
                    self.unsupported(&why);
                    None
                }
                Some(Err(SafeHeadError::Rpc(e))) => return Err(e.into()),
                Some(Err(SafeHeadError::NotFound)) | None => None,
            };
            let fallback = if block.number == fully && status.safe_l2.number > prev {
                (status.safe_l2.number, Some(status.safe_l2.hash))
            } else {
                (prev, None)
            };
            let head = exact.unwrap_or(fallback);
            prev = head.0;
            out.push(head);
        }
        Ok(out)
    }

    fn supported(&mut self) {
        if self.unsupported_since.take().is_some() || !self.exact {
            info!(target: "derivation", chain = self.chain, "the rollup node serves optimism_safeHeadAtL1Block: every L2 block is attributed to the L1 block that derived it");
        }
        self.exact = true;
    }

    fn unsupported(&mut self, why: &str) {
        if self.unsupported_since.is_none() {
            warn!(target: "derivation", chain = self.chain, reason = why, reprobe = ?SAFE_HEAD_REPROBE, "the rollup node does not serve optimism_safeHeadAtL1Block: L2 blocks are attributed to the newest L1 block fully derived when they are first seen safe (an upper bound; see the README)");
        }
        self.unsupported_since = Some(Instant::now());
        self.exact = false;
    }

    /// The L2 blocks above `tip` up to `to`, parent-linked from `tip`, from the L2 node.
    async fn l2_blocks(&self, tip: &BlockRef, to: u64) -> Result<Vec<BlockRef>, FollowError> {
        let mut out: Vec<BlockRef> = Vec::with_capacity(to.saturating_sub(tip.number).min(L2_PER_STEP) as usize);
        let mut parent = *tip;
        while parent.number < to {
            let end = to.min(parent.number + self.batch_size.max(100));
            let blocks = self.l2.blocks(parent.number + 1..=end).await?;
            if blocks.len() as u64 != end - parent.number {
                return Err(FollowError::Waiting(format!(
                    "the L2 node does not have block {} yet",
                    parent.number + 1 + blocks.len() as u64
                )));
            }
            for block in blocks {
                if !block.is_child_of(&parent) {
                    return Err(FollowError::Inconsistent(format!(
                        "L2 block {} does not link to {} {}",
                        block.number, parent.number, parent.hash
                    )));
                }
                out.push(block);
                parent = block;
            }
        }
        Ok(out)
    }

    /// If the L2 node no longer has the log's newest block, rewinds the log to the newest block
    /// it still has.
    async fn rewind_if_reset(&mut self, tip: &DerivedPair) -> Result<Option<Progress>, FollowError> {
        let node = self.l2.block_by_number(tip.derived.number).await?;
        if node.is_some_and(|b| b.hash == tip.derived.hash) {
            self.reset_suspected = false;
            return Ok(None);
        }
        // Twice in a row before it counts: one answer from a lagging replica behind a load
        // balancer must not rewind the log.
        if !std::mem::replace(&mut self.reset_suspected, true) {
            return Ok(Some(Progress::Idle));
        }
        self.reset_suspected = false;
        // Start at the node's head: nothing above it can match.
        let mut hi = tip.derived.number.min(self.l2_head().await?);
        let ancestor = loop {
            let lo = hi.saturating_sub(self.batch_size - 1);
            let stored = self.db.send(GetRange { track: Track::L2(self.chain), from: lo, to: hi }).await??;
            let node = self.l2.blocks(lo..=hi).await?;
            if let Some(m) =
                stored.iter().rev().find(|s| node.get((s.number - lo) as usize).is_some_and(|n| n.hash == s.hash))
            {
                break Some(m.number);
            }
            match stored.first() {
                Some(first) if first.number > lo || lo == 0 => break first.number.checked_sub(1),
                None => break Some(hi),
                Some(_) => hi = lo - 1,
            }
        };
        let Some(ancestor) = ancestor else {
            return Err(FollowError::Inconsistent("the L2 node's genesis block differs from the log's".into()));
        };
        warn!(
            target: "derivation",
            chain = self.chain,
            old_tip = tip.derived.number,
            rewound_to = ancestor,
            "the L2 node no longer has the log's newest block (reset, or restored from an older snapshot): rewinding the log to the newest block it still has"
        );
        self.metrics.inc(&metrics::NODE_RESETS, &[("watcher", self.name.as_str())]);
        self.db.send(L2Reorg { chain: self.chain, common_ancestor: ancestor }).await??;
        Ok(Some(Progress::Rewound))
    }

    /// The L2 node's newest block number (0 if it names none).
    async fn l2_head(&self) -> Result<u64, FollowError> {
        Ok(self.l2.block_by_tag(BlockTag::Latest).await?.map_or(0, |b| b.number))
    }

    /// The log moves again after a hold: said once.
    fn released(&mut self) {
        if let Some(reason) = self.held.take() {
            info!(target: "derivation", chain = self.chain, %reason, "the rollup node and the L1 index agree again: the derivation log moves");
        }
    }

    /// Holds the log for `reason`, saying it once per episode.
    fn hold(&mut self, reason: String) -> FollowError {
        if self.held.as_ref() != Some(&reason) {
            warn!(target: "derivation", chain = self.chain, %reason, "holding the derivation log");
            self.held = Some(reason.clone());
        }
        FollowError::Waiting(reason)
    }
}

impl Step for RollupFollower {
    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self) -> impl Future<Output = Result<Progress, FollowError>> {
        self.run()
    }

    fn reset(&mut self) {
        self.unsupported_since = None;
    }
}

/// How often a rollup node without a safe-head database is asked again whether it has one.
pub const SAFE_HEAD_REPROBE: Duration = Duration::from_secs(600);
