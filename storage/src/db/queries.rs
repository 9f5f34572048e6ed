//! Reading the per-chain derivation logs: the newest entry, lookups by either side, ranges.

use crate::{BlockRef, ChainId, ChainMode, ChainsDb, DerivedPair, Result, StorageError, codec};

impl ChainsDb {
    pub fn latest(&self, chain: ChainId) -> Result<Option<DerivedPair>> {
        let tip = self.chain_tip(chain)?;
        match (tip.state.head, tip.last) {
            (Some(head), Some((derived, _))) => {
                let source = self.l1_block(head)?.ok_or_else(|| self.unknown_l1(head))?;
                Ok(Some(DerivedPair { source, derived }))
            }
            _ => Ok(None),
        }
    }

    /// The newest L2 block of `chain` derived from an L1 block at or below `l1` (the finalized
    /// L1 block: the chain's finalized L2 block by our own L1 finality). `None` if the log has
    /// nothing derived that early. A log whose head is below `l1` answers its newest block: every
    /// block it holds is derived from L1 at or below it.
    pub fn finalized_l2(&self, chain: ChainId, l1: u64) -> Result<Option<BlockRef>> {
        match self.derived_at(chain, l1) {
            Ok(block) => Ok(Some(block)),
            Err(StorageError::NotDerivedYet { .. }) => Ok(self.latest(chain)?.map(|p| p.derived)),
            Err(StorageError::EmptyChain(_) | StorageError::BeforeStart { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The newest L2 block `chain` derived at or before L1 block `l1`.
    pub fn derived_at(&self, chain: ChainId, l1: u64) -> Result<BlockRef> {
        let tip = self.chain_tip(chain)?;
        let (Some(head), Some((last, _))) = (tip.state.head, tip.last) else {
            return Err(StorageError::EmptyChain(chain));
        };
        if l1 > head {
            return Err(StorageError::NotDerivedYet { chain, asked: l1, have: head });
        }
        let tree = self.l2_tree(chain)?;
        let (first, first_source) = self.first_l2_row(chain, &tree)?;
        if l1 < first_source {
            return Err(StorageError::BeforeStart { chain, asked: l1, first: first_source });
        }
        // Sources never decrease along the log: binary search the last row with source <= l1.
        let (mut lo, mut hi) = (first.number, last.number);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let (_, source) = self.l2_row(chain, mid)?.ok_or_else(|| self.gap(chain, mid))?;
            if source <= l1 {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(self.l2_row(chain, lo)?.ok_or_else(|| self.gap(chain, lo))?.0)
    }

    /// The L1 block from which `chain`'s L2 block `l2` was derived.
    pub fn derived_from(&self, chain: ChainId, l2: u64) -> Result<BlockRef> {
        let tip = self.chain_tip(chain)?;
        let Some((last, _)) = tip.last else {
            return Err(StorageError::EmptyChain(chain));
        };
        match self.l2_row(chain, l2)? {
            Some((_, source)) => self.l1_block(source)?.ok_or_else(|| self.unknown_l1(source)),
            None if l2 > last.number => Err(StorageError::NotDerivedYet { chain, asked: l2, have: last.number }),
            None => {
                let (first, _) = self.first_l2_row(chain, &self.l2_tree(chain)?)?;
                Err(StorageError::BeforeStart { chain, asked: l2, first: first.number })
            }
        }
    }

    /// The derived L2 blocks of `chain` in `from..=to`, in order.
    pub fn derived_range(&self, chain: ChainId, from: u64, to: u64) -> Result<Vec<BlockRef>> {
        let tree = self.l2_tree(chain)?;
        if from > to {
            return Ok(Vec::new());
        }
        let name = codec::l2_tree_name(chain);
        tree.range(codec::num_key(from)..=codec::num_key(to))
            .map(|row| {
                let (k, v) = row?;
                Ok(codec::decode_l2(&name, &k, &v)?.0)
            })
            .collect()
    }

    /// The lowest head over all chains: the L1 block every chain has advanced to. `None` when no
    /// chain has an entry yet.
    pub fn last_common_l1(&self) -> Result<Option<BlockRef>> {
        let mut lowest: Option<u64> = None;
        for (_, state) in self.chain_states()? {
            if let Some(head) = state.head {
                lowest = Some(lowest.map_or(head, |l| l.min(head)));
            }
        }
        lowest.map(|n| self.l1_block(n)?.ok_or_else(|| self.unknown_l1(n))).transpose()
    }

    /// Every entry of `chain`'s log, oldest first, with the `NewL1 : ExistingL2` entries
    /// expanded (for inspection).
    pub fn log(&self, chain: ChainId) -> Result<Vec<DerivedPair>> {
        let tip = self.chain_tip(chain)?;
        let Some(head) = tip.state.head else {
            return Ok(Vec::new());
        };
        let name = codec::l2_tree_name(chain);
        let mut out: Vec<DerivedPair> = Vec::new();
        let push_l1_until = |out: &mut Vec<DerivedPair>, upto: u64| -> Result<()> {
            while let Some(prev) = out.last().copied() {
                if prev.source.number >= upto {
                    break;
                }
                let n = prev.source.number + 1;
                let source = self.l1_block(n)?.ok_or_else(|| self.unknown_l1(n))?;
                out.push(DerivedPair { source, derived: prev.derived });
            }
            Ok(())
        };
        for row in self.l2_tree(chain)?.iter() {
            let (k, v) = row?;
            let (derived, source) = codec::decode_l2(&name, &k, &v)?;
            push_l1_until(&mut out, source)?;
            let source = self.l1_block(source)?.ok_or_else(|| self.unknown_l1(source))?;
            out.push(DerivedPair { source, derived });
        }
        push_l1_until(&mut out, head)?;
        Ok(out)
    }

    /// The mode of `chain` and the L1 block its log has advanced to.
    pub fn chain_info(&self, chain: ChainId) -> Result<(ChainMode, Option<u64>)> {
        let state = self.chain_state(chain)?;
        Ok((state.mode, state.head))
    }

    /// The first derived L2 block of `chain`'s log.
    pub fn first_derived(&self, chain: ChainId) -> Result<Option<BlockRef>> {
        let name = codec::l2_tree_name(chain);
        self.l2_tree(chain)?.first()?.map(|(k, v)| Ok(codec::decode_l2(&name, &k, &v)?.0)).transpose()
    }

    /// How many L2 rows `chain` holds.
    pub fn l2_rows(&self, chain: ChainId) -> Result<usize> {
        Ok(self.l2_tree(chain)?.len())
    }
}
