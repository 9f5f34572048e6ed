//! The canonical L1 index: appending blocks, reading them and the L1 heads, rewinding.

use tracing::debug;

use super::{ChainsDb, WriteSet};
use crate::{BlockRef, L1Heads, Recorded, Result, Side, StorageError, codec, identity::IdentityOf};

impl ChainsDb {
    /// Records one new canonical L1 block; see [`Self::record_l1`].
    pub fn record_new_l1(&mut self, block: BlockRef) -> Result<Recorded> {
        self.record_l1(&[block])
    }

    /// Records consecutive canonical L1 blocks in one atomic write. For each block, every chain
    /// that has finished with the previous L1 block is extended with `block : ExistingL2`.
    ///
    /// The first block of an empty index may have any height. Afterwards each block must be the
    /// child of the one before; a block that does not link is a [`StorageError::ParentMismatch`]
    /// (an L1 reorg, to be handled by [`Self::rewind_l1`]). An exact repeat of the tip is a
    /// no-op. A block at the finalized height must be the finalized block. A head held above
    /// the index ([`Self::set_heads`]) at the height of an appended block is stored in the same
    /// write if it is that block, and dropped otherwise. On any error nothing is written.
    pub fn record_l1(&mut self, blocks: &[BlockRef]) -> Result<Recorded> {
        self.writable()?;
        let mut tip = self.latest_l1()?;
        let mut tips = self.chain_states()?;
        let finalized = self.finalized()?;
        let mut ws = WriteSet::default();
        let mut appended = 0;
        for block in blocks {
            if let Some(t) = tip {
                if block.number == t.number && block.hash == t.hash && appended == 0 {
                    continue;
                }
                self.validate_next(Side::L1, &t, block, |n| self.l1_block(n))?;
            } else {
                self.identity_on_first(&mut ws, IdentityOf::L1, block)?;
            }
            if let Some(f) = finalized
                && f.number == block.number
                && f.hash != block.hash
            {
                return Err(StorageError::Conflict {
                    side: Side::L1,
                    number: f.number,
                    stored: f.hash,
                    incoming: block.hash,
                });
            }
            ws.l1.insert(&codec::num_key(block.number), &codec::encode_l1(block)[..]);
            for (chain, state) in tips.iter_mut() {
                if state.extends_with(block.number) {
                    state.head = Some(block.number);
                    state.finished = false;
                    ws.chains.insert(&codec::num_key(*chain), &state.encode());
                }
            }
            tip = Some(*block);
            appended += 1;
        }
        if appended == 0 {
            return Ok(Recorded::Repeat);
        }
        // Only a repeat of the tip in front of the batch is skipped: the rest was appended.
        let settled = self.settle_held(&blocks[blocks.len() - appended..], &mut ws)?;
        self.commit(ws)?;
        self.apply_settled(settled);
        Ok(Recorded::Appended(appended))
    }

    /// Checks that `incoming` may follow `tip` on a chain whose recorded blocks `stored` returns.
    pub(super) fn validate_next(
        &self,
        side: Side,
        tip: &BlockRef,
        incoming: &BlockRef,
        stored: impl Fn(u64) -> Result<Option<BlockRef>>,
    ) -> Result<()> {
        if incoming.is_child_of(tip) {
            return Ok(());
        }
        let next = tip.number.saturating_add(1);
        if incoming.number == next {
            return Err(StorageError::ParentMismatch {
                side,
                number: incoming.number,
                stored: tip.hash,
                incoming_parent: incoming.parent_hash,
            });
        }
        if incoming.number > next {
            return Err(StorageError::Future { side, next, incoming: incoming.number });
        }
        match stored(incoming.number)? {
            Some(s) if s.hash != incoming.hash => {
                Err(StorageError::Conflict { side, number: incoming.number, stored: s.hash, incoming: incoming.hash })
            }
            _ => Err(StorageError::Stale { side, tip: tip.number, incoming: incoming.number }),
        }
    }

    /// The L1 block recorded at `number`.
    pub fn l1_block(&self, number: u64) -> Result<Option<BlockRef>> {
        let key = codec::num_key(number);
        self.l1.get(key)?.map(|v| codec::decode_l1(&key, &v)).transpose()
    }

    /// The L1 blocks recorded in `from..=to`, in order.
    pub fn l1_range(&self, from: u64, to: u64) -> Result<Vec<BlockRef>> {
        if from > to {
            return Ok(Vec::new());
        }
        self.l1
            .range(codec::num_key(from)..=codec::num_key(to))
            .map(|row| {
                let (k, v) = row?;
                codec::decode_l1(&k, &v)
            })
            .collect()
    }

    /// The newest recorded L1 block.
    pub fn latest_l1(&self) -> Result<Option<BlockRef>> {
        self.l1.last()?.map(|(k, v)| codec::decode_l1(&k, &v)).transpose()
    }

    /// The oldest recorded L1 block.
    pub fn first_l1(&self) -> Result<Option<BlockRef>> {
        self.l1.first()?.map(|(k, v)| codec::decode_l1(&k, &v)).transpose()
    }

    /// The latest, safe and finalized L1 heads.
    pub fn heads(&self) -> Result<L1Heads> {
        Ok(L1Heads { latest: self.latest_l1()?, safe: self.head(codec::META_SAFE)?, finalized: self.finalized()? })
    }

    fn head(&self, key: &[u8]) -> Result<Option<BlockRef>> {
        self.meta.get(key)?.map(|v| codec::decode_head(key, &v)).transpose()
    }

    fn finalized(&self) -> Result<Option<BlockRef>> {
        self.head(codec::META_FINALIZED)
    }

    /// Removes every L1 block above `to` and, in the same write, every derivation entry whose
    /// source is above `to`. Refuses to go below the finalized block. `to` below the first
    /// recorded block empties the index. A safe head above `to` is lowered to the finalized
    /// block (removed if there is none): it was on the orphaned blocks.
    pub fn rewind_l1(&mut self, to: u64) -> Result<()> {
        self.writable()?;
        if let Some(finalized) = self.finalized()?
            && to < finalized.number
        {
            return Err(StorageError::BelowFinalized { to, finalized: finalized.number });
        }
        let Some(latest) = self.latest_l1()? else {
            return Ok(());
        };
        if to >= latest.number {
            return Ok(());
        }
        let mut ws = WriteSet::default();
        for key in self.l1.range(codec::num_key(to.saturating_add(1))..).keys() {
            ws.l1.remove(key?);
        }
        if self.first_l1()?.is_some_and(|f| f.number > to) {
            self.identity_on_emptied(&mut ws, IdentityOf::L1)?;
        }
        if let Some(safe) = self.head(codec::META_SAFE)?
            && safe.number > to
        {
            match self.finalized()? {
                Some(f) => ws.meta.insert(codec::META_SAFE, &codec::encode_head(&f)[..]),
                None => ws.meta.remove(codec::META_SAFE),
            }
        }
        for (chain, mut state) in self.chain_states()? {
            let tree = self.l2_tree(chain)?;
            let mut removed_all = true;
            for row in tree.iter().rev() {
                let (k, v) = row?;
                let (_, source) = codec::decode_l2(&codec::l2_tree_name(chain), &k, &v)?;
                if source <= to {
                    removed_all = false;
                    break;
                }
                ws.l2(chain).remove(k);
            }
            if removed_all && !tree.is_empty() {
                self.identity_on_emptied(&mut ws, IdentityOf::L2(chain))?;
            }
            let head = if removed_all { None } else { state.head.map(|h| h.min(to)) };
            if head != state.head {
                state.head = head;
                state.finished = false;
                ws.chains.insert(&codec::num_key(chain), &state.encode()[..]);
            }
        }
        debug!(target: "storage", from = latest.number, to, "rewinding L1");
        self.commit(ws)
    }

    /// How many L1 rows the index holds.
    pub fn l1_rows(&self) -> usize {
        self.l1.len()
    }
}
