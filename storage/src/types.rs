//! The values stored in [`ChainsDb`](crate::ChainsDb): block references and derivation pairs.

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};

/// An L2 chain identifier (the EIP-155 chain id).
pub type ChainId = u64;

/// A reference to one block: enough to place it in a chain and link it to its parent.
///
/// Serialised the Ethereum way: `{hash, number, parentHash, timestamp}` with quantities as
/// `0x`-hex strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockRef {
    /// The block hash.
    pub hash: B256,
    /// The block number.
    #[serde(with = "alloy::serde::quantity")]
    pub number: u64,
    /// The hash of the parent block (`number - 1`).
    pub parent_hash: B256,
    /// The block timestamp, seconds since the Unix epoch.
    #[serde(with = "alloy::serde::quantity")]
    pub timestamp: u64,
}

impl BlockRef {
    /// Whether `self` is the direct child of `parent`: one higher and linked to it by hash.
    pub fn is_child_of(&self, parent: &BlockRef) -> bool {
        parent.number.checked_add(1) == Some(self.number) && self.parent_hash == parent.hash
    }
}

impl std::fmt::Display for BlockRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {}", self.number, self.hash)
    }
}

/// One entry of a chain's derivation log: `derived` (an L2 block) is the newest L2 block
/// derived as of `source` (an L1 block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedPair {
    /// The L1 block the chain has derived up to.
    pub source: BlockRef,
    /// The newest L2 block derived as of `source`.
    pub derived: BlockRef,
}

/// How a chain's derivation log learns that the chain has finished with an L1 block, which is
/// what lets [`ChainsDb::record_l1`](crate::ChainsDb::record_l1) extend it with
/// `NewL1 : ExistingL2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChainMode {
    /// The chain's L2 blocks are observed on its node (for example its `safe` head) and recorded
    /// as derived from the newest recorded L1 block: the chain has always finished with every L1
    /// block recorded before, so each new L1 block extends it.
    FollowsL1,
    /// A rollup node pushes `(source, derived)` pairs and says when it has finished with an L1
    /// block ([`ChainsDb::mark_finished`](crate::ChainsDb::mark_finished)); only then does a new
    /// L1 block extend the chain.
    Explicit,
}

/// The L1 heads the database knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct L1Heads {
    /// The newest recorded canonical L1 block.
    pub latest: Option<BlockRef>,
    /// The newest L1 block the node called safe.
    pub safe: Option<BlockRef>,
    /// The newest L1 block the node called finalized; never moves backwards.
    pub finalized: Option<BlockRef>,
}

/// The outcome of a write that may be an exact repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// This many new entries were written.
    Appended(usize),
    /// Everything was already recorded exactly so; nothing was written.
    Repeat,
}
