#![allow(dead_code, unused_imports)] // not every test uses every helper
//! Integration-test harness: real `anvil` nodes, a JSON-RPC client with anvil helpers, a
//! fault-injecting loopback TCP proxy, and a deadline-bounded polling helper.
//!
//! Independent of the project's crates on purpose (no alloy): hashes are lowercase `0x` hex
//! strings, numbers are `u64`.
//!
//! * [`Anvil`]: spawns `anvil --host 127.0.0.1 --port 0 ...`, parses the `Listening on` line,
//!   drains stdout/stderr on background threads, kills + reaps the process on drop. Derefs to
//!   [`RpcClient`], so `anvil.block_number()`, `anvil.reorg(5, 5)` etc. work directly.
//! * [`RpcClient`]: JSON-RPC over HTTP (also usable through a [`Proxy`] URL).
//! * [`Proxy`]: `127.0.0.1:0` TCP forwarder with [`ProxyMode`]s Forward / Cut / Blackhole /
//!   Garbage / Truncated, and Rewrite: JSON-RPC aware, it forwards and replaces the results a
//!   [`Rewrite`] rule picks (a lying `finalized` block, `null` for `latest`, a frozen head; see
//!   [`rewrite_block_tags`]).
//! * [`HostileNode`]: an HTTP front for a node that, when hostile, sends huge answers.
//! * [`RollupNode`]: a stand-in rollup node serving `optimism_syncStatus` and
//!   `optimism_safeHeadAtL1Block` from real anvil L1 and L2 nodes, with a derivation lag.
//! * [`wait_for`]: poll a condition until it yields `Some`, with a hard deadline.
//!
//! anvil 1.7.1 `safe` / `finalized` tags: `safe = latest - slots_in_an_epoch` and
//! `finalized = latest - 2 * slots_in_an_epoch`, both saturating at 0 (block 0 until the chain
//! is long enough). Default `--slots-in-an-epoch` is 32 → safe = latest-32, finalized =
//! latest-64. `--slots-in-an-epoch 1` → latest-1 / latest-2; `--slots-in-an-epoch 0` →
//! safe = finalized = latest. Use [`AnvilOptions::slots_in_an_epoch`]. anvil does not protect
//! "finalized" blocks: [`RpcClient::reorg`] deeper than `2 * slots` rewrites them.

pub mod anvil;
pub mod huge_node;
pub mod proxy;
pub mod rollup_node;
pub mod rpc;
pub mod wait;

pub use anvil::{ANVIL_REL_PATH, Anvil, AnvilOptions, anvil_bin, resolve_anvil_bin, workspace_root};
pub use huge_node::HostileNode;
pub use proxy::{GARBAGE_BODY, Proxy, ProxyMode, Rewrite, TRUNCATED_BODY, rewrite_block_tags};
pub use rollup_node::{Derivation, RollupNode};
pub use rpc::{Block, BlockId, Reorg, RpcClient, RpcError, check_linked, parse_hex_u64, to_hex};
pub use wait::wait_for;
