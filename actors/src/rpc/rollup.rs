//! The rollup node's derivation API (op-node, kona-node): `optimism_syncStatus` and
//! `optimism_safeHeadAtL1Block`, on the same bounded, redacting client as [`EthRpc`].
//!
//! Shapes as op-node serves them: L1 refs are `{hash, number, parentHash, timestamp}` with plain
//! JSON numbers; L2 refs add `l1origin` and `sequenceNumber` (ignored here). `current_l1` is the
//! L1 block derivation last idled at: the safe L2 blocks were derived from L1 *up to but
//! excluding* it. `optimism_safeHeadAtL1Block(n)` answers the safe head as of L1 block `n` and
//! the L1 block (at or below `n`) that made it safe.

use std::ops::RangeInclusive;

use alloy::{primitives::B256, rpc::json_rpc::RpcError as JsonRpcError};
use rollup_supervisor_storage::BlockRef;
use serde::Deserialize;

use super::{EthRpc, RpcError};

/// A block ref with plain JSON numbers, as the rollup node writes them.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRef {
    /// Block hash.
    pub hash: B256,
    /// Block number.
    pub number: u64,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp.
    pub timestamp: u64,
}

impl From<NodeRef> for BlockRef {
    fn from(r: NodeRef) -> Self {
        BlockRef { hash: r.hash, number: r.number, parent_hash: r.parent_hash, timestamp: r.timestamp }
    }
}

/// A block id: hash and number.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct BlockId {
    /// Block hash.
    pub hash: B256,
    /// Block number.
    pub number: u64,
}

/// The part of `optimism_syncStatus` the derivation input reads.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct SyncStatus {
    /// The L1 block derivation last idled at (the safe L2 blocks come from L1 before it).
    pub current_l1: NodeRef,
    /// The newest safe L2 block.
    pub safe_l2: NodeRef,
}

/// One answer of `optimism_safeHeadAtL1Block`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SafeHeadAt {
    /// The L1 block (at or below the one asked) whose derivation made `safe_head` safe.
    pub l1_block: BlockId,
    /// The safe L2 head as of the L1 block asked.
    pub safe_head: BlockId,
}

/// Why `optimism_safeHeadAtL1Block` gave no answer for a block.
#[derive(Debug)]
pub enum SafeHeadError {
    /// The node does not serve it (no such method, or its safe-head database is off).
    Unsupported(String),
    /// It does, but has nothing for this block (its database starts later).
    NotFound,
    /// The request failed.
    Rpc(RpcError),
}

impl EthRpc {
    /// `optimism_syncStatus`.
    pub async fn sync_status(&self) -> Result<SyncStatus, RpcError> {
        self.timed("optimism_syncStatus", self.client.request_noparams("optimism_syncStatus").into_future()).await
    }

    /// `optimism_safeHeadAtL1Block` for every block in `range`, in one batched request.
    pub async fn safe_heads_at(
        &self,
        range: RangeInclusive<u64>,
    ) -> Result<Vec<Result<SafeHeadAt, SafeHeadError>>, SafeHeadError> {
        use std::future::IntoFuture as _;
        let mut batch = self.client.new_batch();
        let mut waiters = Vec::new();
        for number in range {
            let waiter = batch
                .add_call::<_, SafeHeadAt>("optimism_safeHeadAtL1Block", &(alloy::primitives::U64::from(number),))
                .map_err(|e| SafeHeadError::Rpc(self.transport(e)))?;
            waiters.push(waiter);
        }
        self.timed("batch", batch.send().into_future()).await.map_err(SafeHeadError::Rpc)?;
        let mut out = Vec::with_capacity(waiters.len());
        for waiter in waiters {
            out.push(waiter.await.map_err(|e| match &e {
                JsonRpcError::ErrorResp(payload) => {
                    let message = payload.message.to_lowercase();
                    if payload.code == -32601
                        || message.contains("method")
                        || message.contains("not enabled")
                        || message.contains("not available")
                    {
                        SafeHeadError::Unsupported(payload.message.to_string())
                    } else if message.contains("not found") {
                        SafeHeadError::NotFound
                    } else {
                        SafeHeadError::Rpc(self.transport(e))
                    }
                }
                _ => SafeHeadError::Rpc(self.transport(e)),
            }));
        }
        Ok(out)
    }
}
