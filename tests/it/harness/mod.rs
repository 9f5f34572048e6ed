#![allow(dead_code, unused_imports)] // not every test uses every helper
//! Integration-test harness: real `anvil` nodes, a JSON-RPC client with anvil helpers, a
//! fault-injecting loopback TCP proxy, and a deadline-bounded polling helper.
//!
//! The client is independent of the project's crates on purpose (no alloy): hashes are
//! lowercase `0x` hex strings, numbers are `u64`. (The launcher, shared with the binary, asks
//! anvil's chain id with alloy's client.)
//!
//! * [`Anvil`]: the one anvil launcher ([`launcher`], `bin/devnet/anvil.rs`, shared with
//!   `rollup-supervisor devnet`) with [`RpcClient`] in front: derefs to it, so
//!   `anvil.block_number()`, `anvil.reorg(5, 5)` etc. work directly.
//! * [`RpcClient`]: JSON-RPC over HTTP (also usable through a [`Proxy`] URL).
//! * [`Proxy`]: `127.0.0.1:0` TCP forwarder with [`ProxyMode`]s Forward / Cut / Blackhole /
//!   Garbage / Truncated, and Rewrite: JSON-RPC aware, it forwards and replaces the results a
//!   [`Rewrite`] rule picks (a lying `finalized` block, `null` for `latest`, a frozen head; see
//!   [`rewrite_block_tags`]).
//! * [`HostileNode`]: an HTTP front for a node that, when hostile, sends huge answers.
//! * [`RollupNode`]: a stand-in rollup node serving `optimism_syncStatus` and
//!   `optimism_safeHeadAtL1Block` from real anvil L1 and L2 nodes, with a derivation lag.
//! * [`wait_for`]: poll a condition until it yields `Some`, with a hard deadline ([`wait`],
//!   `bin/devnet/wait.rs`, the one wait helper, shared with devnet); [`clock`]: the wall clock.
//! * [`consts`] (`bin/devnet/consts.rs`): chain ids, dev keys, artifacts and gas limits shared
//!   with devnet.
//!
//! anvil 1.7.1 `safe` / `finalized` tags: `safe = latest - slots_in_an_epoch` and
//! `finalized = latest - 2 * slots_in_an_epoch`, both saturating at 0 (block 0 until the chain
//! is long enough). Default `--slots-in-an-epoch` is 32 → safe = latest-32, finalized =
//! latest-64. `--slots-in-an-epoch 1` → latest-1 / latest-2; `--slots-in-an-epoch 0` →
//! safe = finalized = latest. Use [`AnvilOptions::slots_in_an_epoch`]. anvil does not protect
//! "finalized" blocks: [`RpcClient::reorg`] deeper than `2 * slots` rewrites them.

pub mod anvil;
pub mod clock;
#[path = "../../../bin/devnet/consts.rs"]
pub mod consts;
pub mod huge_node;
#[path = "../../../bin/devnet/anvil.rs"]
pub mod launcher;
pub mod proxy;
pub mod rollup_node;
pub mod rpc;
#[path = "../../../bin/devnet/wait.rs"]
pub mod wait;

pub use anvil::Anvil;
pub use clock::{unix_now, wait_until_unix_second};
pub use huge_node::HostileNode;
pub use launcher::{AnvilNode, AnvilOptions, anvil_bin};
pub use proxy::{GARBAGE_BODY, Proxy, ProxyMode, Rewrite, TRUNCATED_BODY, rewrite_block_tags};
pub use rollup_node::{Derivation, RollupNode};
pub use rpc::{Block, BlockId, Reorg, RpcClient, RpcError, check_linked, parse_hex_u64, to_hex};
pub use wait::wait_for;

/// The sample at fraction `p` (0.0..=1.0) of `sorted`, by rounded index; the benchmarks' one
/// definition of p50 / p99. Empty input has none.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> Option<std::time::Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get((last as f64 * p.clamp(0.0, 1.0)).round() as usize).copied()
}
