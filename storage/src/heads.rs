//! The labelled L1 heads, safe and finalized: what the node says, checked against the index.
//!
//! The node's word is not trusted. A head is stored only if it is the recorded block at its
//! height, so it is never above the recorded L1 head and never a block the index does not hold.
//! A head above the index (the node is ahead of a catching-up or confirmation-delayed index, or
//! it lies) is *held* in memory: when the index records a block at its height, the head is
//! stored if it is that block and dropped otherwise. A head below the oldest recorded block cannot
//! be checked and is not stored. The finalized head never moves backwards, and the safe head is
//! never below it (a finalized block is safe; raising safe to finalized keeps that true).
//!
//! Each decision is a [`HeadNote`], taken by the writer with [`ChainsDb::take_head_notes`] to log
//! and count. [`ChainsDb::check`] verifies the stored heads; [`ChainsDb::repair_heads`] repairs a
//! database that an earlier build poisoned by storing a lying node's heads.

use std::fmt;

use alloy::primitives::B256;

use crate::{BlockRef, ChainsDb, Result, codec, db::WriteSet};

/// Which labelled L1 head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeadKind {
    /// The node's `safe` block.
    Safe,
    /// The node's `finalized` block.
    Finalized,
}

impl HeadKind {
    /// `safe` or `finalized`, as in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Safe => "safe",
            HeadKind::Finalized => "finalized",
        }
    }

    pub(crate) fn key(self) -> &'static [u8] {
        match self {
            HeadKind::Safe => codec::META_SAFE,
            HeadKind::Finalized => codec::META_FINALIZED,
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a head the node offered was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadRefusal {
    /// The index holds another block at that height (also a held head whose height the index
    /// reached with another block).
    Conflict {
        /// The recorded block's hash.
        recorded: B256,
    },
    /// A finalized block below the recorded finalized block: finality never moves backwards.
    Regression {
        /// The recorded finalized height.
        finalized: u64,
    },
    /// A safe block below the finalized block.
    BelowFinalized {
        /// The finalized height.
        finalized: u64,
    },
    /// Below the oldest recorded block (or in a gap): it cannot be checked against the index.
    Unverifiable {
        /// The oldest recorded height.
        first: u64,
    },
}

impl HeadRefusal {
    /// A short label for metrics: `conflict`, `regression`, `order`, `unverifiable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HeadRefusal::Conflict { .. } => "conflict",
            HeadRefusal::Regression { .. } => "regression",
            HeadRefusal::BelowFinalized { .. } => "order",
            HeadRefusal::Unverifiable { .. } => "unverifiable",
        }
    }

    /// Whether the head contradicts what is recorded (as opposed to being merely unverifiable):
    /// the sign of a node that lies or is on another chain.
    pub fn contradicts_the_index(&self) -> bool {
        !matches!(self, HeadRefusal::Unverifiable { .. })
    }
}

impl fmt::Display for HeadRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadRefusal::Conflict { recorded } => write!(f, "the L1 index has {recorded} at that height"),
            HeadRefusal::Regression { finalized } => {
                write!(f, "below the recorded finalized block {finalized}: finality never moves backwards")
            }
            HeadRefusal::BelowFinalized { finalized } => write!(f, "below the finalized block {finalized}"),
            HeadRefusal::Unverifiable { first } => {
                write!(f, "not in the L1 index (it starts at block {first}), so it cannot be checked")
            }
        }
    }
}

/// What happened to one head the node offered (or held): taken with
/// [`ChainsDb::take_head_notes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadNote {
    /// Stored: it is the recorded block at its height.
    Stored {
        /// Which head.
        head: HeadKind,
        /// The block.
        block: BlockRef,
    },
    /// Above the newest recorded block: held in memory until the index reaches its height.
    Held {
        /// Which head.
        head: HeadKind,
        /// The block.
        block: BlockRef,
        /// The newest recorded height, `None` while the index is empty.
        latest: Option<u64>,
    },
    /// Not stored, and not held.
    Refused {
        /// Which head.
        head: HeadKind,
        /// The block the node offered.
        block: BlockRef,
        /// Why.
        reason: HeadRefusal,
    },
}

/// One head changed by [`ChainsDb::repair_heads`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadRepair {
    /// Which head.
    pub head: HeadKind,
    /// What was stored (`None`: nothing, or a value that does not decode).
    pub from: Option<BlockRef>,
    /// What is stored now (`None`: nothing; the next heads poll asks the node again).
    pub to: Option<BlockRef>,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for HeadRepair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |b: &Option<BlockRef>| b.map_or_else(|| "none".to_owned(), |b| b.to_string());
        write!(f, "{} head {} ({}) -> {}", self.head, show(&self.from), self.reason, show(&self.to))
    }
}

/// The heads held in memory and the notes not yet taken.
#[derive(Debug, Default)]
pub(crate) struct Held {
    safe: Option<BlockRef>,
    finalized: Option<BlockRef>,
    notes: Vec<HeadNote>,
}

/// At most this many notes wait to be taken; older ones are dropped (nobody is taking them).
const MAX_NOTES: usize = 256;

impl Held {
    fn note(&mut self, notes: impl IntoIterator<Item = HeadNote>) {
        self.notes.extend(notes);
        let excess = self.notes.len().saturating_sub(MAX_NOTES);
        self.notes.drain(..excess);
    }
}

/// Where a block stands against the L1 index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The recorded block at its height.
    Recorded,
    /// Another block is recorded at its height.
    Conflict(B256),
    /// Above the newest recorded block (`None`: the index is empty).
    Above(Option<u64>),
    /// Below the oldest recorded block, or in a gap of a damaged index.
    Unverifiable(u64),
}

impl Place {
    /// Why a stored head at this place breaks the head invariants (`None`: it does not).
    pub(crate) fn problem(self) -> Option<String> {
        match self {
            Place::Recorded => None,
            Place::Conflict(recorded) => {
                Some(format!("is not the recorded block at its height (the L1 index has {recorded})"))
            }
            Place::Above(Some(latest)) => Some(format!("is above the newest recorded L1 block {latest}")),
            Place::Above(None) => Some("is set but the L1 index is empty".to_owned()),
            Place::Unverifiable(first) => {
                Some(format!("is not in the L1 index (it starts at block {first}), so it cannot be checked"))
            }
        }
    }
}

impl ChainsDb {
    /// Where `block` stands against the L1 index.
    pub(crate) fn place(&self, block: &BlockRef) -> Result<Place> {
        if let Some(recorded) = self.l1_block(block.number)? {
            return Ok(if recorded.hash == block.hash { Place::Recorded } else { Place::Conflict(recorded.hash) });
        }
        let latest = self.latest_l1()?.map(|b| b.number);
        if latest.is_none_or(|l| block.number > l) {
            return Ok(Place::Above(latest));
        }
        let first = self.first_l1()?.map_or(0, |b| b.number);
        Ok(Place::Unverifiable(first))
    }

    /// Records what the node calls its safe and finalized blocks (`None`: it has none), in one
    /// atomic write; see the module documentation for the rules. The answer replaces whatever
    /// was held from an earlier one. A head the rules refuse is not an error but a
    /// [`HeadNote::Refused`]; only a failure to read or write is an `Err`.
    pub fn set_heads(&mut self, safe: Option<BlockRef>, finalized: Option<BlockRef>) -> Result<()> {
        self.writable()?;
        let current_safe = self.stored_head(HeadKind::Safe)?;
        let current_finalized = self.stored_head(HeadKind::Finalized)?;
        let mut notes = Vec::new();
        let (mut held_safe, mut held_finalized) = (None, None);

        let mut new_finalized = current_finalized;
        if let Some(f) = finalized {
            let refuse = |reason| HeadNote::Refused { head: HeadKind::Finalized, block: f, reason };
            match current_finalized {
                Some(cur) if f.number < cur.number => {
                    notes.push(refuse(HeadRefusal::Regression { finalized: cur.number }));
                }
                Some(cur) if f.number == cur.number => {
                    if f.hash != cur.hash {
                        notes.push(refuse(HeadRefusal::Conflict { recorded: cur.hash }));
                    }
                }
                _ => match self.place(&f)? {
                    Place::Recorded => {
                        new_finalized = Some(f);
                        notes.push(HeadNote::Stored { head: HeadKind::Finalized, block: f });
                    }
                    Place::Conflict(recorded) => notes.push(refuse(HeadRefusal::Conflict { recorded })),
                    Place::Above(latest) => {
                        held_finalized = Some(f);
                        notes.push(HeadNote::Held { head: HeadKind::Finalized, block: f, latest });
                    }
                    Place::Unverifiable(first) => notes.push(refuse(HeadRefusal::Unverifiable { first })),
                },
            }
        }

        let mut new_safe = current_safe;
        if let Some(s) = safe {
            let refuse = |reason| HeadNote::Refused { head: HeadKind::Safe, block: s, reason };
            match new_finalized {
                Some(f) if s.number < f.number => {
                    notes.push(refuse(HeadRefusal::BelowFinalized { finalized: f.number }));
                }
                _ if current_safe == Some(s) => {}
                _ => match self.place(&s)? {
                    Place::Recorded => {
                        new_safe = Some(s);
                        notes.push(HeadNote::Stored { head: HeadKind::Safe, block: s });
                    }
                    Place::Conflict(recorded) => notes.push(refuse(HeadRefusal::Conflict { recorded })),
                    Place::Above(latest) => {
                        held_safe = Some(s);
                        notes.push(HeadNote::Held { head: HeadKind::Safe, block: s, latest });
                    }
                    Place::Unverifiable(first) => notes.push(refuse(HeadRefusal::Unverifiable { first })),
                },
            }
        }
        raise_safe(&mut new_safe, new_finalized, &mut notes);

        if (new_safe, new_finalized) != (current_safe, current_finalized) {
            let mut ws = WriteSet::default();
            put_head(&mut ws, HeadKind::Safe, current_safe, new_safe);
            put_head(&mut ws, HeadKind::Finalized, current_finalized, new_finalized);
            self.commit(ws)?;
        }
        self.held.safe = held_safe;
        self.held.finalized = held_finalized;
        self.held.note(notes);
        Ok(())
    }

    /// The heads held in memory above the index: `(safe, finalized)`.
    pub fn held_heads(&self) -> (Option<BlockRef>, Option<BlockRef>) {
        (self.held.safe, self.held.finalized)
    }

    /// Every head decision since the last call, oldest first.
    pub fn take_head_notes(&mut self) -> Vec<HeadNote> {
        std::mem::take(&mut self.held.notes)
    }

    /// Part of [`Self::record_l1`]: the held heads at the heights of the blocks being appended
    /// are stored (same block) or dropped (another block), into `ws`. Returns what to hold
    /// afterwards and the notes, to apply once `ws` is committed.
    pub(crate) fn settle_held(&self, appended: &[BlockRef], ws: &mut WriteSet) -> Result<SettledHeads> {
        let (mut held_safe, mut held_finalized) = (self.held.safe, self.held.finalized);
        if held_safe.is_none() && held_finalized.is_none() {
            return Ok(SettledHeads { safe: None, finalized: None, notes: Vec::new() });
        }
        let current_safe = self.stored_head(HeadKind::Safe)?;
        let current_finalized = self.stored_head(HeadKind::Finalized)?;
        let (mut new_safe, mut new_finalized) = (current_safe, current_finalized);
        let mut notes = Vec::new();
        for block in appended {
            if let Some(f) = held_finalized.filter(|f| f.number == block.number) {
                held_finalized = None;
                if f.hash != block.hash {
                    let reason = HeadRefusal::Conflict { recorded: block.hash };
                    notes.push(HeadNote::Refused { head: HeadKind::Finalized, block: f, reason });
                } else if new_finalized.is_none_or(|cur| f.number > cur.number) {
                    new_finalized = Some(f);
                    notes.push(HeadNote::Stored { head: HeadKind::Finalized, block: f });
                }
            }
            if let Some(s) = held_safe.filter(|s| s.number == block.number) {
                held_safe = None;
                match new_finalized {
                    _ if s.hash != block.hash => {
                        let reason = HeadRefusal::Conflict { recorded: block.hash };
                        notes.push(HeadNote::Refused { head: HeadKind::Safe, block: s, reason });
                    }
                    Some(f) if s.number < f.number => {
                        let reason = HeadRefusal::BelowFinalized { finalized: f.number };
                        notes.push(HeadNote::Refused { head: HeadKind::Safe, block: s, reason });
                    }
                    _ => {
                        new_safe = Some(s);
                        notes.push(HeadNote::Stored { head: HeadKind::Safe, block: s });
                    }
                }
            }
        }
        raise_safe(&mut new_safe, new_finalized, &mut notes);
        put_head(ws, HeadKind::Safe, current_safe, new_safe);
        put_head(ws, HeadKind::Finalized, current_finalized, new_finalized);
        Ok(SettledHeads { safe: held_safe, finalized: held_finalized, notes })
    }

    /// Applies what [`Self::settle_held`] decided, after its write was committed.
    pub(crate) fn apply_settled(&mut self, settled: SettledHeads) {
        self.held.safe = settled.safe;
        self.held.finalized = settled.finalized;
        self.held.note(settled.notes);
    }

    /// Brings the stored heads back within the head invariants, in one write, and returns what
    /// it changed (nothing on a sound database). A head that is not the recorded block at its
    /// height (above the newest recorded block, a hash the index does not have, below the
    /// oldest recorded block, or a value that does not decode) is removed; a safe head is
    /// lowered to the finalized block instead when there is one. A safe head below the
    /// finalized block, or missing beside it, is raised to it. No finalized block is invented:
    /// the next heads poll asks the node again, and the rules above apply to its answer.
    ///
    /// This is how a database that an earlier build poisoned with a lying node's heads (a
    /// finalized head above the index blocking every later block, or `2^63 - 1` blocking every
    /// reorg) is repaired; [`Self::open`] runs it.
    pub fn repair_heads(&mut self) -> Result<Vec<HeadRepair>> {
        let mut repairs = Vec::new();
        let finalized = self.sound_head(HeadKind::Finalized, None, &mut repairs)?;
        let mut safe = self.sound_head(HeadKind::Safe, finalized, &mut repairs)?;
        if let Some(f) = finalized {
            let from = safe;
            if from.is_none_or(|s| s.number < f.number) {
                let reason = match from {
                    Some(_) => format!("is below the finalized block {}", f.number),
                    None => format!("is missing while the finalized block is {}", f.number),
                };
                safe = Some(f);
                repairs.push(HeadRepair { head: HeadKind::Safe, from, to: safe, reason });
            }
        }
        if !repairs.is_empty() {
            let mut ws = WriteSet::default();
            for (head, value) in [(HeadKind::Safe, safe), (HeadKind::Finalized, finalized)] {
                match value {
                    Some(b) => ws.meta.insert(head.key(), &codec::encode_head(&b)[..]),
                    None => ws.meta.remove(head.key()),
                }
            }
            self.commit(ws)?;
        }
        self.held = Held::default();
        Ok(repairs)
    }

    /// The stored `head` if it is the recorded block at its height; otherwise records the repair
    /// (to `fallback`) and returns `fallback`.
    fn sound_head(
        &self,
        head: HeadKind,
        fallback: Option<BlockRef>,
        repairs: &mut Vec<HeadRepair>,
    ) -> Result<Option<BlockRef>> {
        let Some(raw) = self.raw_meta(head.key())? else {
            return Ok(None);
        };
        let (from, reason) = match codec::decode_head(head.key(), &raw) {
            Err(e) => (None, format!("does not decode: {e}")),
            Ok(block) => match self.place(&block)?.problem() {
                None => return Ok(Some(block)),
                Some(reason) => (Some(block), reason),
            },
        };
        repairs.push(HeadRepair { head, from, to: fallback, reason });
        Ok(fallback)
    }

    fn stored_head(&self, head: HeadKind) -> Result<Option<BlockRef>> {
        self.raw_meta(head.key())?.map(|v| codec::decode_head(head.key(), &v)).transpose()
    }
}

/// What [`ChainsDb::settle_held`] decided.
#[derive(Debug)]
pub(crate) struct SettledHeads {
    safe: Option<BlockRef>,
    finalized: Option<BlockRef>,
    notes: Vec<HeadNote>,
}

/// A finalized block is safe: raises `safe` to `finalized` when it is below it (or missing).
fn raise_safe(safe: &mut Option<BlockRef>, finalized: Option<BlockRef>, notes: &mut Vec<HeadNote>) {
    if let Some(f) = finalized
        && safe.is_none_or(|s| s.number < f.number)
    {
        *safe = Some(f);
        notes.push(HeadNote::Stored { head: HeadKind::Safe, block: f });
    }
}

/// Writes `head` into `ws` if it changed.
fn put_head(ws: &mut WriteSet, head: HeadKind, current: Option<BlockRef>, new: Option<BlockRef>) {
    if current == new {
        return;
    }
    match new {
        Some(b) => ws.meta.insert(head.key(), &codec::encode_head(&b)[..]),
        None => ws.meta.remove(head.key()),
    }
}
