//! The messages [`ChainsDbActor`](super::ChainsDbActor) handles: facts that end in a durable
//! write, and queries. Every reply is a `Result`; a write that is acknowledged is on disk.

use actix::Message;
use rollup_supervisor_storage::{
    BlockRef, ChainId, ChainMode, CheckReport, DerivedPair, L1Heads, OutageRecord, Recorded, StorageError,
};
use serde::Serialize;

/// New canonical L1 blocks, consecutive and parent-linked, recorded in one write together with
/// `NewL1 : ExistingL2` for every chain that has finished with the previous L1 block.
/// Sent by the L1 watcher, one message per fetched batch.
#[derive(Debug, Message)]
#[rtype(result = "Result<Recorded, StorageError>")]
pub struct NewL1Blocks(pub Vec<BlockRef>);

/// L1 reorged: rewind the L1 index and every chain's log to `common_ancestor`.
/// Sent by the L1 watcher after it found the highest stored block that is still canonical.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct L1Reorg {
    /// The highest stored block still canonical; everything above it goes.
    pub common_ancestor: u64,
    /// The stored tip before the rewind, for the log.
    pub old_tip: u64,
}

/// The L1 node's safe and finalized heads. Sent by the L1 watcher.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct NewL1Heads {
    /// The safe head, if the node has one.
    pub safe: Option<BlockRef>,
    /// The finalized head, if the node has one.
    pub finalized: Option<BlockRef>,
}

/// New L2 blocks observed on `chain`'s node, recorded as derived from the L1 block the chain has
/// advanced to. Sent by the chain's L2 watcher.
#[derive(Debug, Message)]
#[rtype(result = "Result<Recorded, StorageError>")]
pub struct NewDerivedBlocks {
    /// The L2 chain.
    pub chain: ChainId,
    /// Consecutive L2 blocks.
    pub blocks: Vec<BlockRef>,
}

/// Derivation-log entries `(source L1, derived L2)` of an explicit chain, as its rollup node
/// derived them, recorded in one write. Sent by the chain's `RollupWatcher`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Recorded, StorageError>")]
pub struct NewDerivationPairs {
    /// The L2 chain.
    pub chain: ChainId,
    /// Consecutive entries; each advances one side by one block.
    pub entries: Vec<(BlockRef, BlockRef)>,
}

/// `chain` reorged, or its node was reset behind the log: drop every derived block above
/// `common_ancestor`. Sent by its L2 watcher or rollup watcher.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct L2Reorg {
    /// The L2 chain.
    pub chain: ChainId,
    /// The highest stored L2 block still canonical.
    pub common_ancestor: u64,
}

/// The finalized L1 block, and `chain`'s newest L2 block derived from an L1 block at or below it
/// (`None`: nothing derived that early), as our own L1 finality says.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<(BlockRef, Option<BlockRef>)>, StorageError>")]
pub struct GetFinalized(pub Option<ChainId>);

/// Registers a chain's derivation log (idempotent). Sent once per chain at start-up.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct RegisterChain {
    /// The L2 chain.
    pub chain: ChainId,
    /// How it learns that the chain finished with an L1 block.
    pub mode: ChainMode,
}

/// Which chain a query is about: the L1 index, or one L2 chain's derived blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    /// The L1 index.
    L1,
    /// The derived L2 blocks of one chain.
    L2(ChainId),
}

/// The newest stored block of a track (`None` while empty).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<BlockRef>, StorageError>")]
pub struct GetTip(pub Track);

/// The stored blocks of a track in `from..=to`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<BlockRef>, StorageError>")]
pub struct GetRange {
    /// Which track.
    pub track: Track,
    /// First height.
    pub from: u64,
    /// Last height.
    pub to: u64,
}

/// The lowest height a track may be rewound to, if any: L1's finalized block.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<u64>, StorageError>")]
pub struct GetFloor(pub Track);

/// The L1 heads and every chain's newest entry.
#[derive(Debug, Message)]
#[rtype(result = "Result<SyncStatus, StorageError>")]
pub struct GetSyncStatus;

/// The answer to [`GetSyncStatus`].
#[derive(Clone, Debug, Serialize)]
pub struct SyncStatus {
    /// L1 latest, safe, finalized.
    pub l1: L1Heads,
    /// Per chain, its newest derivation entry.
    pub chains: Vec<(ChainId, Option<DerivedPair>)>,
}

/// The L1 block at a height.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<BlockRef>, StorageError>")]
pub struct GetL1Block(pub u64);

/// A chain's newest derivation entry.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<DerivedPair>, StorageError>")]
pub struct GetLocalSafe(pub ChainId);

/// The newest L2 block a chain derived at or before an L1 height.
#[derive(Debug, Message)]
#[rtype(result = "Result<BlockRef, StorageError>")]
pub struct GetDerivedAt {
    /// The L2 chain.
    pub chain: ChainId,
    /// The L1 height.
    pub l1: u64,
}

/// The L1 block an L2 block was derived from.
#[derive(Debug, Message)]
#[rtype(result = "Result<BlockRef, StorageError>")]
pub struct GetDerivedFrom {
    /// The L2 chain.
    pub chain: ChainId,
    /// The L2 height.
    pub l2: u64,
}

/// Runs the full invariant check.
#[derive(Debug, Message)]
#[rtype(result = "Result<CheckReport, StorageError>")]
pub struct Check;

/// Flushes to disk; sent at shutdown after the watchers stopped.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct Flush;

/// Journals an outage record (uptime flow). Sent by the chain's `TxInjector`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct PutOutage(pub OutageRecord);

/// The newest outage record of a chain. Sent by the `TxInjector` at start and the RPC server.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<OutageRecord>, StorageError>")]
pub struct GetLastOutage(pub ChainId);
