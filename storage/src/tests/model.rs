//! A plain in-memory reference model of what the database promises, for the property test:
//! the L1 index, the safe and finalized heads, the derivation logs and the identities, each
//! write stated as a rule over ordinary maps (no sled, no codec, no compact log encoding). The
//! property test applies every operation to the model and to the database and asserts, through
//! the public query API, that they agree on whether it was allowed and on everything after it.

use std::collections::BTreeMap;

use crate::*;

/// One block is another when number and hash agree (the hash commits to the rest).
fn same(a: &BlockRef, b: &BlockRef) -> bool {
    a.number == b.number && a.hash == b.hash
}

/// A concrete write (or a reopen), the same for the model and the database.
#[derive(Clone, Debug)]
pub(super) enum Call {
    RecordL1(Vec<BlockRef>),
    RecordDerived(ChainId, BlockRef, BlockRef),
    FromHead(ChainId, Vec<BlockRef>),
    MarkFinished(ChainId, u64),
    RewindL1(u64),
    RewindChain(ChainId, u64),
    SetHeads(Option<BlockRef>, Option<BlockRef>),
    /// Close and reopen: whatever is held in memory only is gone.
    Reopen,
}

/// The whole state, as the public queries show it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Model {
    /// The canonical L1 index: contiguous, each block the child of the one below.
    pub l1: BTreeMap<u64, BlockRef>,
    pub safe: Option<BlockRef>,
    pub finalized: Option<BlockRef>,
    /// `(safe, finalized)` the node named above the index, held in memory until it gets there.
    pub held: (Option<BlockRef>, Option<BlockRef>),
    pub l1_identity: Option<ChainIdentity>,
    pub chains: BTreeMap<ChainId, Chain>,
}

/// One chain's derivation log.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Chain {
    pub mode: ChainMode,
    /// The L1 block the log has advanced to; `None` exactly while it has no derived block.
    pub head: Option<u64>,
    /// An explicit chain said it finished with `head`. (The database keeps this flag for a chain
    /// that follows L1 too, where nothing reads it.)
    pub finished: bool,
    /// Every derived L2 block by number, with the L1 block it was first derived from.
    pub rows: BTreeMap<u64, (BlockRef, u64)>,
    pub identity: Option<ChainIdentity>,
}

impl Chain {
    fn last(&self) -> Option<BlockRef> {
        self.rows.last_key_value().map(|(_, (b, _))| *b)
    }

    /// Empties the log (its identity keeps the chain id).
    fn empty(&mut self) {
        if !self.rows.is_empty()
            && let Some(identity) = &mut self.identity
        {
            identity.first = None;
        }
        self.rows.clear();
        self.set_head(None);
    }

    fn set_head(&mut self, head: Option<u64>) {
        if head != self.head {
            self.head = head;
            self.finished = false;
        }
    }
}

/// Where the model refuses a write: the rule it breaks.
pub(super) type Verdict = Result<(), &'static str>;

impl Model {
    pub fn new(chains: &[(ChainId, ChainMode)]) -> Self {
        let chains = chains
            .iter()
            .map(|&(id, mode)| (id, Chain { mode, head: None, finished: false, rows: BTreeMap::new(), identity: None }))
            .collect();
        Self { l1: BTreeMap::new(), safe: None, finalized: None, held: (None, None), l1_identity: None, chains }
    }

    /// Applies `call` whole, or refuses it and changes nothing.
    pub fn apply(&mut self, call: &Call) -> Verdict {
        let mut next = self.clone();
        match call {
            Call::RecordL1(blocks) => next.record_l1(blocks)?,
            Call::RecordDerived(chain, source, derived) => next.record_derived(*chain, &[(*source, *derived)])?,
            Call::FromHead(chain, blocks) => {
                let c = next.chain(*chain)?;
                let source = match c.head {
                    Some(head) => *next.l1.get(&head).ok_or("the head is not in the index")?,
                    None => next.latest_l1().ok_or("no L1 block to derive from")?,
                };
                let entries: Vec<_> = blocks.iter().map(|d| (source, *d)).collect();
                next.record_derived(*chain, &entries)?;
            }
            Call::MarkFinished(chain, number) => {
                let c = next.chain_mut(*chain)?;
                if c.head != Some(*number) {
                    return Err("only the head can be finished");
                }
                c.finished = true;
            }
            Call::RewindL1(to) => next.rewind_l1(*to)?,
            Call::RewindChain(chain, to) => next.rewind_chain(*chain, *to)?,
            Call::SetHeads(safe, finalized) => next.set_heads(*safe, *finalized),
            Call::Reopen => next.held = (None, None),
        }
        *self = next;
        Ok(())
    }

    fn chain(&self, chain: ChainId) -> Result<&Chain, &'static str> {
        self.chains.get(&chain).ok_or("unknown chain")
    }

    fn chain_mut(&mut self, chain: ChainId) -> Result<&mut Chain, &'static str> {
        self.chains.get_mut(&chain).ok_or("unknown chain")
    }

    /// Exact repeats of the tip in front of the batch are no-ops; the rest must each be the
    /// child of the block before (any block may start an empty index), and not contradict the
    /// finalized block. Every chain that has finished with a block's parent (one that follows
    /// L1 always has) advances to it. Held heads at the new heights are then settled.
    fn record_l1(&mut self, blocks: &[BlockRef]) -> Verdict {
        let skip = blocks.iter().take_while(|b| self.latest_l1().is_some_and(|tip| same(b, &tip))).count();
        let new = &blocks[skip..];
        for block in new {
            match self.latest_l1() {
                Some(tip) if !block.is_child_of(&tip) => return Err("does not link to the tip"),
                Some(_) => {}
                None => {
                    let chain_id = self.l1_identity.and_then(|i| i.chain_id);
                    self.l1_identity = Some(ChainIdentity { chain_id, first: Some(block.into()) });
                }
            }
            if self.finalized.is_some_and(|f| f.number == block.number && f.hash != block.hash) {
                return Err("contradicts the finalized block");
            }
            self.l1.insert(block.number, *block);
            for c in self.chains.values_mut() {
                let done = c.mode == ChainMode::FollowsL1 || c.finished;
                if done && c.head.and_then(|h| h.checked_add(1)) == Some(block.number) {
                    c.head = Some(block.number);
                    c.finished = false;
                }
            }
        }
        for block in new {
            if let Some(f) = self.held.1.filter(|f| f.number == block.number) {
                self.held.1 = None;
                if same(&f, block) && self.finalized.is_none_or(|cur| f.number > cur.number) {
                    self.finalized = Some(f);
                }
            }
            if let Some(s) = self.held.0.filter(|s| s.number == block.number) {
                self.held.0 = None;
                if same(&s, block) && self.finalized.is_none_or(|f| s.number >= f.number) {
                    self.safe = Some(s);
                }
            }
        }
        self.raise_safe();
        Ok(())
    }

    /// A finalized block is safe.
    fn raise_safe(&mut self) {
        if let Some(f) = self.finalized
            && self.safe.is_none_or(|s| s.number < f.number)
        {
            self.safe = Some(f);
        }
    }

    /// Appends entries to a log: each one's source must be in the L1 index (same hash). The
    /// first entry of an empty log may be anything else; afterwards an entry is an exact repeat
    /// of the last one (a no-op, only in front of the batch), or advances exactly one side by
    /// one block: the next L1 block with the same L2 block, or the child of the last L2 block
    /// with the same L1 block.
    fn record_derived(&mut self, chain: ChainId, entries: &[(BlockRef, BlockRef)]) -> Verdict {
        let mut appended = 0;
        for (source, derived) in entries {
            if self.l1.get(&source.number).is_none_or(|s| s.hash != source.hash) {
                return Err("the source is not in the L1 index");
            }
            let c = self.chain_mut(chain)?;
            match (c.head, c.last()) {
                (Some(head), Some(last)) => {
                    if source.number == head && same(derived, &last) {
                        if appended > 0 {
                            return Err("a repeat inside a batch");
                        }
                        continue;
                    } else if source.number == head + 1 && same(derived, &last) {
                        c.head = Some(source.number);
                    } else if source.number == head && derived.is_child_of(&last) {
                        c.rows.insert(derived.number, (*derived, source.number));
                    } else {
                        return Err("advances neither side by exactly one block");
                    }
                }
                _ => {
                    c.identity = Some(ChainIdentity { chain_id: Some(chain), first: Some(derived.into()) });
                    c.rows.insert(derived.number, (*derived, source.number));
                    c.head = Some(source.number);
                }
            }
            // A chain that follows L1 has always finished with its head; an explicit one is
            // still deriving from it.
            c.finished = c.mode == ChainMode::FollowsL1;
            appended += 1;
        }
        Ok(())
    }

    /// Removes the L1 blocks above `to` and every derived block whose source is above it; each
    /// head goes down to `to` at most (none where nothing is left), a safe head above `to` to
    /// the finalized block. Never below the finalized block.
    fn rewind_l1(&mut self, to: u64) -> Verdict {
        if self.finalized.is_some_and(|f| to < f.number) {
            return Err("below the finalized block");
        }
        if self.latest_l1().is_none_or(|tip| to >= tip.number) {
            return Ok(());
        }
        self.l1.retain(|&n, _| n <= to);
        if self.l1.is_empty()
            && let Some(identity) = &mut self.l1_identity
        {
            identity.first = None;
        }
        if self.safe.is_some_and(|s| s.number > to) {
            self.safe = self.finalized;
        }
        for c in self.chains.values_mut() {
            let kept: BTreeMap<_, _> = c.rows.iter().filter(|(_, (_, s))| *s <= to).map(|(k, v)| (*k, *v)).collect();
            if kept.is_empty() {
                c.empty();
            } else {
                c.rows = kept;
                c.set_head(c.head.map(|h| h.min(to)));
            }
        }
        Ok(())
    }

    /// Removes the derived blocks above `to`. A chain that follows L1 keeps its head. An explicit
    /// chain whose block `to` came from L1 block `s` loses every block derived from `s`, and its
    /// head goes to `s - 1`. A log left with nothing has no head.
    fn rewind_chain(&mut self, chain: ChainId, to: u64) -> Verdict {
        let c = self.chain_mut(chain)?;
        let from_source = match (c.mode, c.rows.get(&to)) {
            (ChainMode::Explicit, Some(&(_, s))) => Some(s),
            _ => None,
        };
        let kept: BTreeMap<_, _> = match from_source {
            Some(s) => c.rows.iter().filter(|(_, (_, source))| *source < s).map(|(k, v)| (*k, *v)).collect(),
            None => c.rows.range(..=to).map(|(k, v)| (*k, *v)).collect(),
        };
        if kept.is_empty() {
            c.empty();
        } else {
            c.rows = kept;
            if let Some(s) = from_source {
                c.set_head(Some(s - 1));
            }
        }
        Ok(())
    }

    /// The node's safe and finalized blocks: stored only if recorded, finalized never lower
    /// than stored, safe never below finalized (and raised to it); one above the index is held
    /// (replacing what was held); anything else is refused, which is not an error.
    fn set_heads(&mut self, safe: Option<BlockRef>, finalized: Option<BlockRef>) {
        self.held = (None, None);
        if let Some(f) = finalized {
            let higher = self.finalized.is_none_or(|cur| f.number > cur.number);
            if higher {
                match self.place(&f) {
                    Place::Recorded => self.finalized = Some(f),
                    Place::Above => self.held.1 = Some(f),
                    Place::Refused => {}
                }
            }
        }
        if let Some(s) = safe
            && self.finalized.is_none_or(|f| s.number >= f.number)
            && self.safe != Some(s)
        {
            match self.place(&s) {
                Place::Recorded => self.safe = Some(s),
                Place::Above => self.held.0 = Some(s),
                Place::Refused => {}
            }
        }
        self.raise_safe();
    }

    fn place(&self, block: &BlockRef) -> Place {
        match self.l1.get(&block.number) {
            Some(recorded) if recorded.hash == block.hash => Place::Recorded,
            Some(_) => Place::Refused,
            None if self.latest_l1().is_none_or(|tip| block.number > tip.number) => Place::Above,
            None => Place::Refused,
        }
    }

    // ---- what the queries answer ----------------------------------------------------------

    pub fn latest_l1(&self) -> Option<BlockRef> {
        self.l1.last_key_value().map(|(_, b)| *b)
    }

    pub fn first_l1(&self) -> Option<BlockRef> {
        self.l1.first_key_value().map(|(_, b)| *b)
    }

    pub fn heads(&self) -> L1Heads {
        L1Heads { latest: self.latest_l1(), safe: self.safe, finalized: self.finalized }
    }

    pub fn latest(&self, chain: ChainId) -> Option<DerivedPair> {
        let c = &self.chains[&chain];
        Some(DerivedPair { source: self.l1[&c.head?], derived: c.last()? })
    }

    /// Every entry of the log, the `NewL1 : ExistingL2` ones included.
    pub fn log(&self, chain: ChainId) -> Vec<DerivedPair> {
        let c = &self.chains[&chain];
        let mut out: Vec<DerivedPair> = Vec::new();
        let l1_up_to = |out: &mut Vec<DerivedPair>, to: u64| {
            while let Some(prev) = out.last().copied()
                && prev.source.number < to
            {
                out.push(DerivedPair { source: self.l1[&(prev.source.number + 1)], derived: prev.derived });
            }
        };
        for (derived, source) in c.rows.values() {
            l1_up_to(&mut out, *source);
            out.push(DerivedPair { source: self.l1[source], derived: *derived });
        }
        if let Some(head) = c.head {
            l1_up_to(&mut out, head);
        }
        out
    }

    /// The newest block derived at or before L1 block `l1`, or why there is none.
    pub fn derived_at(&self, chain: ChainId, l1: u64) -> Result<BlockRef, &'static str> {
        let c = &self.chains[&chain];
        let (Some(head), Some((_, (_, first_source)))) = (c.head, c.rows.first_key_value()) else {
            return Err("EmptyChain");
        };
        if l1 > head {
            return Err("NotDerivedYet");
        }
        if l1 < *first_source {
            return Err("BeforeStart");
        }
        Ok(c.rows.values().rev().find(|(_, s)| *s <= l1).map(|(b, _)| *b).expect("first row"))
    }

    /// The L1 block L2 block `l2` was derived from, or why there is none.
    pub fn derived_from(&self, chain: ChainId, l2: u64) -> Result<BlockRef, &'static str> {
        let c = &self.chains[&chain];
        let Some(last) = c.last() else {
            return Err("EmptyChain");
        };
        match c.rows.get(&l2) {
            Some((_, source)) => Ok(self.l1[source]),
            None if l2 > last.number => Err("NotDerivedYet"),
            None => Err("BeforeStart"),
        }
    }

    /// The newest block derived from L1 at or below `l1`.
    pub fn finalized_l2(&self, chain: ChainId, l1: u64) -> Option<BlockRef> {
        match self.derived_at(chain, l1) {
            Ok(block) => Some(block),
            Err("NotDerivedYet") => self.latest(chain).map(|p| p.derived),
            Err(_) => None,
        }
    }

    /// The lowest head over the chains that have one.
    pub fn last_common_l1(&self) -> Option<BlockRef> {
        self.chains.values().filter_map(|c| c.head).min().map(|n| self.l1[&n])
    }
}

/// Where a head the node names stands against the index.
enum Place {
    Recorded,
    Above,
    Refused,
}
