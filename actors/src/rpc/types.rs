//! What the node's answers are parsed into (only the fields we read), the block tags we ask
//! for, and [`RpcError`].

use alloy::{
    primitives::{Address, B256, Bytes, U64},
    transports::TransportError,
};
use rollup_supervisor_storage::BlockRef;
use serde::{Deserialize, Serialize};

/// A block tag (or a number) as `eth_getBlockByNumber` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockTag {
    /// The node's newest block.
    Latest,
    /// The node's safe block.
    Safe,
    /// The node's finalized block.
    Finalized,
}

impl BlockTag {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            BlockTag::Latest => "latest",
            BlockTag::Safe => "safe",
            BlockTag::Finalized => "finalized",
        }
    }
}

impl std::fmt::Display for BlockTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong talking to a node. No variant carries the node's URL beyond its scheme,
/// host and port ([`redact`]): its path, query or user info may hold an API key.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The request failed: connection refused, timeout, HTTP error, a JSON-RPC error, or a
    /// reply that does not parse.
    #[error("{endpoint}: {source}")]
    Transport {
        /// The node's address.
        endpoint: String,
        /// The underlying failure.
        #[source]
        source: TransportError,
    },
    /// A request we make ourselves (see [`EthRpc::bounded_request`]) got no answer.
    #[error("{endpoint}: {reason}")]
    Unreachable {
        /// The node's address.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The reply parsed but is wrong: a block at another height than asked, a missing field.
    #[error("{endpoint}: bad answer: {reason}")]
    BadAnswer {
        /// The node's address.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
}

/// The header fields we read; everything else in the block is ignored (and not even parsed).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RpcHeader {
    hash: Option<B256>,
    number: Option<U64>,
    parent_hash: B256,
    timestamp: U64,
}

impl RpcHeader {
    pub(super) fn into_ref(self) -> Option<BlockRef> {
        Some(BlockRef {
            hash: self.hash?,
            number: self.number?.to(),
            parent_hash: self.parent_hash,
            timestamp: self.timestamp.to(),
        })
    }
}

/// A transaction as a block lists it (the fields the uptime flow reads).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcTx {
    /// Transaction hash.
    pub hash: B256,
    /// Sender.
    pub from: Address,
    /// Sender nonce.
    pub nonce: U64,
    /// Recipient (`None` for a contract creation).
    pub to: Option<Address>,
    /// EIP-2718 type (`0x7e`: an OP Stack deposit, which a sequencer puts first in a block).
    #[serde(rename = "type", default)]
    pub tx_type: Option<U64>,
    /// Calldata.
    pub input: Bytes,
}

/// A receipt (the fields the uptime flow reads).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcReceipt {
    /// 1 = success.
    pub status: Option<U64>,
    /// Including block.
    pub block_number: Option<U64>,
    /// Index in the block.
    pub transaction_index: Option<U64>,
    /// Its logs.
    #[serde(default)]
    pub logs: Vec<RpcLog>,
}

/// A log of a receipt (the fields the uptime flow reads).
#[derive(Clone, Debug, Deserialize)]
pub struct RpcLog {
    /// The emitting contract.
    pub address: Address,
    /// Its topics.
    pub topics: Vec<B256>,
}

impl RpcTx {
    /// Whether it is an OP Stack deposit transaction (type `0x7e`).
    pub fn is_deposit(&self) -> bool {
        self.tx_type == Some(U64::from(0x7e))
    }
}

impl RpcReceipt {
    /// Whether the transaction executed successfully (status 1).
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s == U64::from(1))
    }

    /// Whether the transaction executed and failed (a status other than 1).
    pub fn reverted(&self) -> bool {
        self.status.is_some_and(|s| s != U64::from(1))
    }
}
