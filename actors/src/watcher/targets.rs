//! The two [`FollowStore`]s: the L1 index and one chain's derived blocks, both behind the
//! [`ChainsDbActor`] mailbox.

use actix::Addr;
use rollup_supervisor_storage::{BlockRef, ChainId};

use crate::{
    chains_db::{ChainsDbActor, messages::*},
    follow::{FollowError, FollowStore},
    rpc::{BlockTag, EthRpc},
};

/// The L1 index: appends are [`NewL1Blocks`], rewinds are [`L1Reorg`], the floor is the finalized
/// block, and the heads poll sends [`NewL1Heads`].
#[derive(Clone, Debug)]
pub struct L1Target {
    db: Addr<ChainsDbActor>,
}

impl L1Target {
    /// The L1 index behind `db`.
    pub fn new(db: Addr<ChainsDbActor>) -> Self {
        Self { db }
    }
}

/// One chain's derived blocks: appends are [`NewDerivedBlocks`], rewinds are [`L2Reorg`].
#[derive(Clone, Debug)]
pub struct L2Target {
    db: Addr<ChainsDbActor>,
    chain: ChainId,
}

impl L2Target {
    /// Chain `chain`'s derivation log behind `db`.
    pub fn new(db: Addr<ChainsDbActor>, chain: ChainId) -> Self {
        Self { db, chain }
    }
}

impl FollowStore for L1Target {
    async fn tip(&self) -> Result<Option<BlockRef>, FollowError> {
        Ok(self.db.send(GetTip(Track::L1)).await??)
    }

    async fn stored(&self, from: u64, to: u64) -> Result<Vec<BlockRef>, FollowError> {
        Ok(self.db.send(GetRange { track: Track::L1, from, to }).await??)
    }

    async fn floor(&self) -> Result<Option<u64>, FollowError> {
        Ok(self.db.send(GetFloor(Track::L1)).await??)
    }

    async fn append(&self, blocks: Vec<BlockRef>) -> Result<(), FollowError> {
        self.db.send(NewL1Blocks(blocks)).await??;
        Ok(())
    }

    async fn rewind(&self, common_ancestor: u64, old_tip: u64) -> Result<(), FollowError> {
        Ok(self.db.send(L1Reorg { common_ancestor, old_tip }).await??)
    }

    async fn poll_heads(&self, rpc: &EthRpc) -> Result<(), FollowError> {
        // Finalized first: the node's safe block, read after it, is at or above it unless the
        // node contradicts itself (which the database refuses).
        let finalized = rpc.block_by_tag(BlockTag::Finalized).await?;
        let safe = rpc.block_by_tag(BlockTag::Safe).await?;
        Ok(self.db.send(NewL1Heads { safe, finalized }).await??)
    }
}

impl FollowStore for L2Target {
    async fn tip(&self) -> Result<Option<BlockRef>, FollowError> {
        Ok(self.db.send(GetTip(Track::L2(self.chain))).await??)
    }

    async fn stored(&self, from: u64, to: u64) -> Result<Vec<BlockRef>, FollowError> {
        Ok(self.db.send(GetRange { track: Track::L2(self.chain), from, to }).await??)
    }

    async fn floor(&self) -> Result<Option<u64>, FollowError> {
        Ok(None)
    }

    async fn append(&self, blocks: Vec<BlockRef>) -> Result<(), FollowError> {
        self.db.send(NewDerivedBlocks { chain: self.chain, blocks }).await??;
        Ok(())
    }

    async fn rewind(&self, common_ancestor: u64, _old_tip: u64) -> Result<(), FollowError> {
        Ok(self.db.send(L2Reorg { chain: self.chain, common_ancestor }).await??)
    }
}
