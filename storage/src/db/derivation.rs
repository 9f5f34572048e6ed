//! Writing the per-chain derivation logs: appending entries, finishing an L1 block, rewinding.

use super::{ChainsDb, WriteSet};
use crate::{BlockRef, ChainId, ChainMode, Recorded, Result, Side, StorageError, codec, identity::IdentityOf};

impl ChainsDb {
    /// Appends one derivation entry to `chain`'s log; see [`Self::record_derived_batch`].
    pub fn record_derived(&mut self, chain: ChainId, source: BlockRef, derived: BlockRef) -> Result<Recorded> {
        self.record_derived_batch(chain, &[(source, derived)])
    }

    /// Appends derivation entries to `chain`'s log in one atomic write.
    ///
    /// The first entry of an empty log may start anywhere, as long as its source is in the L1
    /// index. Afterwards each entry must advance exactly one side by exactly one parent-linked
    /// block; an exact repeat of the last entry is a no-op; anything else is rejected and
    /// nothing is written. The source side is linked through the L1 index: it must be recorded
    /// there with the same hash.
    pub fn record_derived_batch(&mut self, chain: ChainId, entries: &[(BlockRef, BlockRef)]) -> Result<Recorded> {
        self.writable()?;
        let mut tip = self.chain_tip(chain)?;
        let mut ws = WriteSet::default();
        let mut appended = 0;
        for (source, derived) in entries {
            self.check_source(source)?;
            match (tip.state.head, tip.last) {
                (Some(head), Some((last, _))) => {
                    // The derived block is at the log's last height with another hash.
                    let conflict = || StorageError::Conflict {
                        side: Side::L2(chain),
                        number: derived.number,
                        stored: last.hash,
                        incoming: derived.hash,
                    };
                    let same_source = source.number == head;
                    let same_derived = derived.number == last.number;
                    if same_source && same_derived {
                        if derived.hash != last.hash {
                            return Err(conflict());
                        }
                        if appended == 0 {
                            continue;
                        }
                        // A repeat inside a batch is a writer bug, not a no-op.
                        return Err(StorageError::Stale {
                            side: Side::L2(chain),
                            tip: last.number,
                            incoming: derived.number,
                        });
                    }
                    if source.number < head {
                        return Err(StorageError::Stale { side: Side::L1, tip: head, incoming: source.number });
                    }
                    if source.number > head.saturating_add(1) {
                        return Err(StorageError::Future {
                            side: Side::L1,
                            next: head.saturating_add(1),
                            incoming: source.number,
                        });
                    }
                    if same_derived {
                        // L1 advances by one (linked through the index): `NewL1 : ExistingL2`.
                        if derived.hash != last.hash {
                            return Err(conflict());
                        }
                        tip.state.head = Some(source.number);
                    } else {
                        self.validate_next(Side::L2(chain), &last, derived, |n| {
                            Ok(self.l2_row(chain, n)?.map(|(b, _)| b))
                        })?;
                        if !same_source {
                            return Err(StorageError::OutOfOrder {
                                chain,
                                source_number: source.number,
                                derived_number: derived.number,
                            });
                        }
                        ws.l2(chain)
                            .insert(&codec::num_key(derived.number), &codec::encode_l2(derived, source.number)[..]);
                        tip.last = Some((*derived, source.number));
                    }
                }
                _ => {
                    if tip.last.is_none() {
                        self.identity_on_first(&mut ws, IdentityOf::L2(chain), derived)?;
                    }
                    ws.l2(chain).insert(&codec::num_key(derived.number), &codec::encode_l2(derived, source.number)[..]);
                    tip.state.head = Some(source.number);
                    tip.last = Some((*derived, source.number));
                }
            }
            // A chain that follows L1 has always finished with its head; an explicit one is
            // still deriving from the head it just wrote to.
            tip.state.finished = tip.state.mode == ChainMode::FollowsL1;
            appended += 1;
        }
        if appended == 0 {
            return Ok(Recorded::Repeat);
        }
        ws.chains.insert(&codec::num_key(chain), &tip.state.encode());
        self.commit(ws)?;
        Ok(Recorded::Appended(appended))
    }

    /// Appends L2 blocks derived from the L1 block `chain` has advanced to (or, for an empty log,
    /// from the newest recorded L1 block), in one atomic write. This is how a chain in
    /// [`ChainMode::FollowsL1`] records what it observes on its node.
    pub fn record_derived_from_head(&mut self, chain: ChainId, derived: &[BlockRef]) -> Result<Recorded> {
        let source = match self.chain_state(chain)?.head {
            Some(head) => self.l1_block(head)?.ok_or_else(|| self.unknown_l1(head))?,
            None => self.latest_l1()?.ok_or(StorageError::NoL1)?,
        };
        let entries: Vec<_> = derived.iter().map(|d| (source, *d)).collect();
        self.record_derived_batch(chain, &entries)
    }

    /// Explicit mode: the chain has finished deriving from L1 block `number`, so the next L1
    /// block extends it. `number` must be the chain's head.
    pub fn mark_finished(&mut self, chain: ChainId, number: u64) -> Result<()> {
        self.writable()?;
        let mut state = self.chain_state(chain)?;
        let head = state.head.ok_or(StorageError::EmptyChain(chain))?;
        if number != head {
            return Err(if number < head {
                StorageError::Stale { side: Side::L1, tip: head, incoming: number }
            } else {
                StorageError::Future { side: Side::L1, next: head, incoming: number }
            });
        }
        state.finished = true;
        let mut ws = WriteSet::default();
        ws.chains.insert(&codec::num_key(chain), &state.encode()[..]);
        self.commit(ws)
    }

    /// Removes every derived L2 block above `to_l2` from `chain`'s log (an L2 reorg, or an L2
    /// node reset behind the log). A chain that follows L1 keeps its head: it has still finished
    /// with those L1 blocks, and the newest remaining L2 block is what it derived as of them. An
    /// explicit chain goes back to before the L1 block `s` that `to_l2` was derived from: every
    /// block derived from `s` goes too, and the head is `s - 1`, so that the rollup node's
    /// re-derivation of `s` is recorded whole (the L1 block that made a block safe is never
    /// below the log's head). Rewinding below the first entry empties the log.
    pub fn rewind_chain(&mut self, chain: ChainId, to_l2: u64) -> Result<()> {
        self.writable()?;
        let tree = self.l2_tree(chain)?;
        let mut state = self.chain_state(chain)?;
        let (mut to_l2, mut head) = (to_l2, None);
        if state.mode == ChainMode::Explicit
            && let Some((_, source)) = self.l2_row(chain, to_l2)?
        {
            while let Some(prev) = to_l2.checked_sub(1)
                && self.l2_row(chain, to_l2)?.is_some_and(|(_, s)| s == source)
            {
                to_l2 = prev;
            }
            if self.l2_row(chain, to_l2)?.is_some_and(|(_, s)| s == source) {
                // Block 0 itself came from `source`: nothing of the log is left.
                to_l2 = 0;
                head = Some(None);
            } else {
                head = Some(source.checked_sub(1));
            }
        }
        let mut ws = WriteSet::default();
        let removed_all = head == Some(None);
        let from = if removed_all { 0 } else { to_l2.saturating_add(1) };
        for key in tree.range(codec::num_key(from)..).keys() {
            ws.l2(chain).remove(key?);
        }
        let first = tree.first()?.map(|(k, _)| codec::decode_num_key("l2", &k)).transpose()?;
        if removed_all || first.is_some_and(|f| f > to_l2) {
            state.head = None;
            state.finished = false;
            ws.chains.insert(&codec::num_key(chain), &state.encode()[..]);
            self.identity_on_emptied(&mut ws, IdentityOf::L2(chain))?;
        } else if let Some(Some(head)) = head
            && state.head != Some(head)
        {
            state.head = Some(head);
            state.finished = false;
            ws.chains.insert(&codec::num_key(chain), &state.encode()[..]);
        }
        self.commit(ws)
    }
}
