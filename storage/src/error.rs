//! Errors of [`ChainsDb`](crate::ChainsDb). Every rejected write leaves the database unchanged.

use alloy::primitives::B256;

use crate::ChainId;

/// Which chain a block belongs to, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The L1 index, or the source side of a derivation pair.
    L1,
    /// The derived side of chain `0`'s derivation log.
    L2(ChainId),
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Side::L1 => write!(f, "L1"),
            Side::L2(chain) => write!(f, "L2 chain {chain}"),
        }
    }
}

/// What went wrong in the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A different block is already recorded at this height.
    #[error("conflict on {side} at block {number}: stored {stored}, incoming {incoming}")]
    Conflict {
        /// Which chain.
        side: Side,
        /// The height.
        number: u64,
        /// The recorded hash.
        stored: B256,
        /// The offered hash.
        incoming: B256,
    },
    /// The block is the next height but does not link to the recorded tip (on L1: a reorg).
    #[error("{side} block {number} has parent {incoming_parent}, but the recorded block {} is {stored}", number.saturating_sub(1))]
    ParentMismatch {
        /// Which chain.
        side: Side,
        /// The offered block's height.
        number: u64,
        /// The hash recorded at `number - 1`.
        stored: B256,
        /// The offered block's parent hash.
        incoming_parent: B256,
    },
    /// The block is more than one ahead of the recorded tip.
    #[error("{side} block {incoming} is in the future: the next block is {next}")]
    Future {
        /// Which chain.
        side: Side,
        /// The height that may be appended next.
        next: u64,
        /// The offered height.
        incoming: u64,
    },
    /// Both the source and the derived block advance at once.
    #[error(
        "chain {chain}: source and derived block both advance at once (source {source_number}, derived {derived_number})"
    )]
    OutOfOrder {
        /// The L2 chain.
        chain: ChainId,
        /// The offered source height.
        source_number: u64,
        /// The offered derived height.
        derived_number: u64,
    },
    /// Older than the tip but consistent with what is recorded: nothing to do, and an error
    /// because a writer that sends it has lost track.
    #[error("{side} block {incoming} is older than the recorded tip {tip}")]
    Stale {
        /// Which chain.
        side: Side,
        /// The recorded tip height.
        tip: u64,
        /// The offered height.
        incoming: u64,
    },
    /// A derivation source that is not in the canonical L1 index.
    #[error("L1 block {number} is not in the L1 index (recorded: {range})")]
    UnknownL1 {
        /// The height asked for.
        number: u64,
        /// The recorded range, for the message.
        range: String,
    },
    /// The chain has no registered derivation log.
    #[error("unknown chain {0}")]
    UnknownChain(ChainId),
    /// The chain's derivation log is empty.
    #[error("chain {0} has no derivation entries yet")]
    EmptyChain(ChainId),
    /// The L1 index is empty.
    #[error("no L1 block is recorded yet")]
    NoL1,
    /// A query past what the chain has derived.
    #[error("chain {chain} has derived up to {have}, not {asked}")]
    NotDerivedYet {
        /// The L2 chain.
        chain: ChainId,
        /// The height asked for.
        asked: u64,
        /// The highest height known.
        have: u64,
    },
    /// A query before the chain's first entry.
    #[error("chain {chain}'s log starts at {first}, after {asked}")]
    BeforeStart {
        /// The L2 chain.
        chain: ChainId,
        /// The height asked for.
        asked: u64,
        /// The first height known.
        first: u64,
    },
    /// A rewind below the finalized L1 block.
    #[error("refusing to rewind L1 to {to}: block {finalized} is finalized")]
    BelowFinalized {
        /// The requested rewind target.
        to: u64,
        /// The finalized height.
        finalized: u64,
    },
    /// A row that cannot be decoded.
    #[error("corrupt row in tree {tree} at key {key}: {reason}")]
    Corrupt {
        /// The tree name.
        tree: String,
        /// The key, hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The database was written by a build with another schema.
    #[error("database schema version {found} is not supported (this build reads version {supported})")]
    UnsupportedSchema {
        /// The version on disk.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The write gate is closed: the supervisor has not yet compared the stored chain identity
    /// with the nodes.
    #[error("refusing to write: the datadir's chain identity is not verified against the nodes yet")]
    IdentityUnverified,
    /// Another chain id is stored.
    #[error("{of}: the database was recorded from chain id {stored}, not {offered}")]
    ChainIdMismatch {
        /// Whose identity.
        of: crate::IdentityOf,
        /// The stored chain id.
        stored: u64,
        /// The offered one.
        offered: u64,
    },
    /// sled itself failed (I/O, or its own corruption detection).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The disk failed a read or a write (a full disk, say), or sled failed a write: the
    /// database was closed so that nothing it had not made durable is served, and it is
    /// reopened from what is on disk, at most once per second, until that succeeds. Nothing is
    /// read or written meanwhile.
    #[error(
        "the database is closed since {cause} ({since:?} ago); it reopens from what is on disk, at most once a second"
    )]
    Unavailable {
        /// What failed: `the disk failed: …` or `sled failed: …`, with sled's error.
        cause: String,
        /// How long ago it failed.
        since: std::time::Duration,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
