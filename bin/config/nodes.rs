//! The node sections: `[l1]`, `[rpc]`, `[metrics]` and each `[[chains]]` entry.

use std::{net::SocketAddr, path::PathBuf};

use rollup_supervisor_actors::rpc::BlockTag;
use serde::{Deserialize, Serialize};

use super::UptimeConfig;

/// `[l1]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct L1Config {
    /// The L1 node's JSON-RPC URL (http or https). Required.
    pub rpc_url: String,
    /// If set, the node must serve this chain.
    pub chain_id: Option<u64>,
    /// Between polls of the latest block when caught up.
    pub poll_interval_ms: u64,
    /// Between polls of the safe and finalized blocks.
    pub heads_poll_interval_ms: u64,
    /// Where an empty database starts; the current head if unset.
    pub start_block: Option<u64>,
    /// Stay this many blocks behind the head.
    pub confirmations: u64,
    /// Blocks per batched request while catching up.
    pub batch_size: u64,
    /// Timeout of one request to the node.
    pub request_timeout_ms: u64,
    /// The largest answer read from the node, in bytes; unset: [`response_bytes_for`] the batch.
    pub max_response_bytes: Option<u64>,
    /// How long the node's latest block may stay unchanged before the node counts as stuck.
    pub head_stall_secs: u64,
    /// The L1 node's WebSocket endpoint (ws or wss): its `newHeads` make the watcher step at
    /// once; polling goes on as the safety net.
    pub ws_url: Option<String>,
}

/// What a block answer may take in a batch by default: a header with its transaction hashes and
/// withdrawals (about 1 KiB empty, 15–30 KiB for a full mainnet block), with room to spare.
pub const RESPONSE_BYTES_PER_BLOCK: u64 = 64 << 10;

/// The default answer bound for batches of `batch_size` blocks: 64 KiB a block plus 1 MiB.
pub fn response_bytes_for(batch_size: u64) -> usize {
    let bytes = batch_size.saturating_mul(RESPONSE_BYTES_PER_BLOCK).saturating_add(1 << 20);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// `configured`, or the default for `batch_size`.
fn response_bytes(configured: Option<u64>, batch_size: u64) -> usize {
    configured.map_or_else(|| response_bytes_for(batch_size), |n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl L1Config {
    /// The largest answer read from the L1 node, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        response_bytes(self.max_response_bytes, self.batch_size)
    }
}

impl ChainConfig {
    /// The largest answer the chain's watcher reads from its node, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        response_bytes(self.max_response_bytes, self.batch_size)
    }
}

/// The smallest `max_response_bytes` accepted: below it no block answer fits.
pub(super) const MIN_RESPONSE_BYTES: u64 = 4096;

impl Default for L1Config {
    fn default() -> Self {
        Self {
            rpc_url: String::new(),
            chain_id: None,
            poll_interval_ms: 2_000,
            heads_poll_interval_ms: 12_000,
            start_block: None,
            confirmations: 0,
            batch_size: 500,
            request_timeout_ms: 10_000,
            max_response_bytes: None,
            head_stall_secs: 120,
            ws_url: None,
        }
    }
}

/// `[rpc]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Where the JSON-RPC server listens; loopback by default.
    pub listen: SocketAddr,
    /// A file holding the hex-encoded 32-byte HS256 secret of admin tokens; admin methods are
    /// off without it.
    pub jwt_secret_file: Option<PathBuf>,
    /// Connections served at once; one accepted beyond it is closed at once.
    pub max_connections: std::num::NonZeroU32,
    /// How long a connection may take to send a request's headers, from when it opens or from
    /// its previous response (so idle keep-alive connections close after it too), and then the
    /// request's body.
    pub header_read_timeout_ms: std::num::NonZeroU64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8555)),
            jwt_secret_file: None,
            max_connections: nonzero_u32(100),
            header_read_timeout_ms: nonzero_u64(10_000),
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// `/readyz` fails while the L1 index is more blocks than this behind the node.
    pub ready_max_l1_lag_blocks: u64,
    /// Connections served at once; one accepted beyond it is closed at once.
    pub max_connections: std::num::NonZeroU32,
    /// How long a connection may take to send a request's headers, from when it opens or from
    /// its previous response (so idle keep-alive connections close after it too).
    pub header_read_timeout_ms: std::num::NonZeroU64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9555)),
            ready_max_l1_lag_blocks: 10,
            max_connections: nonzero_u32(32),
            header_read_timeout_ms: nonzero_u64(10_000),
        }
    }
}

/// `n`, or 1 for 0 (the servers' defaults are constants above 0).
const fn nonzero_u32(n: u32) -> std::num::NonZeroU32 {
    match std::num::NonZeroU32::new(n) {
        Some(n) => n,
        None => std::num::NonZeroU32::MIN,
    }
}

/// `n`, or 1 for 0.
const fn nonzero_u64(n: u64) -> std::num::NonZeroU64 {
    match std::num::NonZeroU64::new(n) {
        Some(n) => n,
        None => std::num::NonZeroU64::MIN,
    }
}

/// One `[[chains]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The chain's id; its node must serve it.
    pub chain_id: u64,
    /// The chain's node.
    pub rpc_url: String,
    /// The chain's rollup node (op-node, kona-node): if set, the derivation log records what it
    /// derived (`optimism_syncStatus`), and `derivation_tag` is not used.
    #[serde(default)]
    pub rollup_rpc_url: Option<String>,
    /// Which head of the chain counts as derived.
    #[serde(default = "default_tag")]
    pub derivation_tag: BlockTag,
    /// Between polls of the chain's head.
    #[serde(default = "default_l2_poll")]
    pub poll_interval_ms: u64,
    /// Blocks per batched request.
    #[serde(default = "default_batch")]
    pub batch_size: u64,
    /// Sequencer downtime reporting (off by default).
    #[serde(default)]
    pub uptime: UptimeConfig,
    /// The largest answer the watcher reads from the node, in bytes; unset: [`response_bytes_for`]
    /// the batch.
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
}

fn default_tag() -> BlockTag {
    BlockTag::Safe
}

fn default_l2_poll() -> u64 {
    2_000
}

fn default_batch() -> u64 {
    500
}
