//! [`ChainsDb`]: the L1 index and the per-chain derivation logs, on one sled database.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use sled::{Batch, Transactional, Tree};
use tracing::{debug, info, warn};

use crate::{
    BlockRef, ChainId, ChainMode, DerivedPair, L1Heads, Recorded, Result, Side, StorageError,
    codec::{self, ChainState},
    heads::Held,
    identity::{IdentityOf, WriteGate},
};

/// The canonical L1 index and one derivation log per L2 chain.
///
/// A chain's derivation log is the sequence of pairs `(source L1, derived L2)` in which, from one
/// entry to the next, exactly one side advances by exactly one parent-linked block. It is stored
/// compactly and losslessly: one row per derived L2 block holding the L1 number it was first
/// derived from, plus the chain's *head*, the L1 block the log has advanced to. The entries where
/// only L1 advances (`NewL1 : ExistingL2`) cost no row at all; their source side is the L1 index.
///
/// Every write is validated in full before anything is written, committed in one sled
/// transaction across all trees it touches, and flushed before the call returns.
/// `&mut self` on writes makes this value the single writer.
///
/// The safe and finalized L1 heads are stored only as recorded blocks; see the `heads` module
/// ([`Self::set_heads`]).
pub struct ChainsDb {
    db: sled::Db,
    /// Where it lives (`None`: in memory), for [`crate::DurableDb`] to reopen it.
    path: Option<PathBuf>,
    meta: Tree,
    l1: Tree,
    chains: Tree,
    l2: BTreeMap<ChainId, Tree>,
    outages: Tree,
    /// Heads held in memory until the index reaches them, and head notes not yet taken.
    pub(crate) held: Held,
    /// Closed while the supervisor has not compared the stored identities with the nodes.
    pub(crate) gate: WriteGate,
}

impl std::fmt::Debug for ChainsDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainsDb").field("chains", &self.l2.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// The writes of one operation, applied atomically by [`ChainsDb::commit`].
#[derive(Default)]
pub(crate) struct WriteSet {
    pub(crate) meta: Batch,
    l1: Batch,
    chains: Batch,
    l2: BTreeMap<ChainId, Batch>,
}

impl WriteSet {
    fn l2(&mut self, chain: ChainId) -> &mut Batch {
        self.l2.entry(chain).or_default()
    }
}

/// A chain's tip as validation sees it: its head and its last derived block.
#[derive(Clone, Copy, Debug)]
struct ChainTip {
    state: ChainState,
    last: Option<(BlockRef, u64)>,
}

impl ChainsDb {
    /// Opens (or creates) the database in `path` for the supervisor: safe and finalized heads
    /// that break the head invariants (stored by an earlier build from a node that lied) are
    /// repaired first, each with a warn log; see [`Self::repair_heads`]. A database of an
    /// earlier build gets the chain identities from its first rows, each with an info log; see
    /// [`Self::migrate_identities`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let mut db = Self::open_as_is(path)?;
        for migration in db.migrate_identities()? {
            info!(
                target: "storage",
                of = %migration.of,
                identity = %migration.identity,
                "stored the chain identity from the first recorded block (database of an earlier build)"
            );
        }
        for repair in db.repair_heads()? {
            warn!(
                target: "storage",
                head = repair.head.as_str(),
                from = ?repair.from,
                to = ?repair.to,
                reason = %repair.reason,
                "repaired an L1 head that broke the head invariants (stored unchecked by an earlier build)"
            );
        }
        Ok(db)
    }

    /// Opens (or creates) the database in `path` and changes nothing in it (`db check`, `db
    /// inspect`): a poisoned head stays as it is, for [`Self::check`] to report.
    pub fn open_as_is(path: impl AsRef<Path>) -> Result<Self> {
        let db = sled::Config::new().path(path.as_ref()).open()?;
        Self::from_sled(db, Some(path.as_ref().to_owned()))
    }

    /// Opens a database that lives in memory only (for tests and benchmarks).
    pub fn temporary() -> Result<Self> {
        Self::from_sled(sled::Config::new().temporary(true).open()?, None)
    }

    fn from_sled(db: sled::Db, path: Option<PathBuf>) -> Result<Self> {
        let meta = db.open_tree("meta")?;
        match meta.get(codec::META_SCHEMA)? {
            None => {
                meta.insert(codec::META_SCHEMA, &codec::SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let bytes: [u8; 4] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| codec::corrupt("meta", codec::META_SCHEMA, "schema version is not 4 bytes"))?;
                let found = u32::from_be_bytes(bytes);
                if found != codec::SCHEMA_VERSION {
                    return Err(StorageError::UnsupportedSchema { found, supported: codec::SCHEMA_VERSION });
                }
            }
        }
        let l1 = db.open_tree("l1")?;
        let chains = db.open_tree("chains")?;
        let mut l2 = BTreeMap::new();
        for row in chains.iter() {
            let (key, _) = row?;
            let chain = codec::decode_num_key("chains", &key)?;
            l2.insert(chain, db.open_tree(codec::l2_tree_name(chain))?);
        }
        let outages = db.open_tree("outages")?;
        Ok(Self { db, path, meta, l1, chains, l2, outages, held: Held::default(), gate: WriteGate::default() })
    }

    /// Registers a chain (idempotent). A registered chain's mode may be changed.
    pub fn add_chain(&mut self, chain: ChainId, mode: ChainMode) -> Result<()> {
        let state = match self.chain_state(chain) {
            Ok(state) => ChainState { mode, ..state },
            Err(StorageError::UnknownChain(_)) => ChainState::new(mode),
            Err(e) => return Err(e),
        };
        let tree = self.db.open_tree(codec::l2_tree_name(chain))?;
        self.l2.insert(chain, tree);
        let mut ws = WriteSet::default();
        ws.chains.insert(&codec::num_key(chain), &state.encode()[..]);
        self.commit(ws)
    }

    /// The directory it lives in (`None`: in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The registered chains, in order.
    pub fn chains(&self) -> Vec<ChainId> {
        self.l2.keys().copied().collect()
    }

    // ---- L1 index -------------------------------------------------------------------------

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
    fn validate_next(
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

    // ---- derivation logs ------------------------------------------------------------------

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
                    let same_source = source.number == head;
                    let same_derived = derived.number == last.number;
                    if same_source && same_derived {
                        if derived.hash != last.hash {
                            return Err(StorageError::Conflict {
                                side: Side::L2(chain),
                                number: derived.number,
                                stored: last.hash,
                                incoming: derived.hash,
                            });
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
                            return Err(StorageError::Conflict {
                                side: Side::L2(chain),
                                number: derived.number,
                                stored: last.hash,
                                incoming: derived.hash,
                            });
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

    /// How many L1 rows the index holds.
    pub fn l1_rows(&self) -> usize {
        self.l1.len()
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes everything to disk (every write already does; this is for shutdown).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    // ---- internals ------------------------------------------------------------------------

    pub(crate) fn outages_tree(&self) -> &Tree {
        &self.outages
    }

    /// The raw `meta` value at `key`.
    pub(crate) fn raw_meta(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self.meta.get(key)?)
    }

    pub(crate) fn trees(&self) -> (&sled::Db, &Tree, &Tree, &Tree, &BTreeMap<ChainId, Tree>) {
        (&self.db, &self.meta, &self.l1, &self.chains, &self.l2)
    }

    fn check_source(&self, source: &BlockRef) -> Result<()> {
        match self.l1_block(source.number)? {
            Some(stored) if stored.hash == source.hash => Ok(()),
            Some(stored) => Err(StorageError::Conflict {
                side: Side::L1,
                number: source.number,
                stored: stored.hash,
                incoming: source.hash,
            }),
            None => Err(self.unknown_l1(source.number)),
        }
    }

    fn unknown_l1(&self, number: u64) -> StorageError {
        let range = match (self.first_l1(), self.latest_l1()) {
            (Ok(Some(a)), Ok(Some(b))) => format!("{}..={}", a.number, b.number),
            _ => "none".to_owned(),
        };
        StorageError::UnknownL1 { number, range }
    }

    fn gap(&self, chain: ChainId, number: u64) -> StorageError {
        codec::corrupt(&codec::l2_tree_name(chain), &codec::num_key(number), "missing row inside the log")
    }

    fn l2_tree(&self, chain: ChainId) -> Result<Tree> {
        self.l2.get(&chain).cloned().ok_or(StorageError::UnknownChain(chain))
    }

    fn l2_row(&self, chain: ChainId, number: u64) -> Result<Option<(BlockRef, u64)>> {
        let key = codec::num_key(number);
        let name = codec::l2_tree_name(chain);
        self.l2_tree(chain)?.get(key)?.map(|v| codec::decode_l2(&name, &key, &v)).transpose()
    }

    fn first_l2_row(&self, chain: ChainId, tree: &Tree) -> Result<(BlockRef, u64)> {
        let (k, v) = tree.first()?.ok_or(StorageError::EmptyChain(chain))?;
        codec::decode_l2(&codec::l2_tree_name(chain), &k, &v)
    }

    fn chain_state(&self, chain: ChainId) -> Result<ChainState> {
        let key = codec::num_key(chain);
        let v = self.chains.get(key)?.ok_or(StorageError::UnknownChain(chain))?;
        ChainState::decode(&key, &v)
    }

    fn chain_states(&self) -> Result<Vec<(ChainId, ChainState)>> {
        self.chains
            .iter()
            .map(|row| {
                let (k, v) = row?;
                Ok((codec::decode_num_key("chains", &k)?, ChainState::decode(&k, &v)?))
            })
            .collect()
    }

    fn chain_tip(&self, chain: ChainId) -> Result<ChainTip> {
        let state = self.chain_state(chain)?;
        let name = codec::l2_tree_name(chain);
        let last = self.l2_tree(chain)?.last()?.map(|(k, v)| codec::decode_l2(&name, &k, &v)).transpose()?;
        Ok(ChainTip { state, last })
    }

    /// Applies `ws` in one transaction over every tree it touches, then flushes.
    pub(crate) fn commit(&self, ws: WriteSet) -> Result<()> {
        let mut trees: Vec<&Tree> = vec![&self.meta, &self.l1, &self.chains];
        let mut batches = vec![ws.meta, ws.l1, ws.chains];
        for (chain, batch) in ws.l2 {
            trees.push(self.l2.get(&chain).ok_or(StorageError::UnknownChain(chain))?);
            batches.push(batch);
        }
        trees
            .as_slice()
            .transaction(|txs| {
                for (tx, batch) in txs.iter().zip(&batches) {
                    tx.apply_batch(batch)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StorageError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StorageError::Sled(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        self.db.flush()?;
        Ok(())
    }
}
