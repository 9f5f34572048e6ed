//! The facts about anvil's dev chains and our contracts that devnet, the tests and the
//! benchmarks share (they include this file with `#[path]`, see `tests/it/harness/mod.rs`):
//! chain ids, the dev account devnet signs with, the compiled contracts, gas limits and event
//! signatures. The feed's role and calls are `rollup_supervisor_actors::uptime::feed`'s.
#![allow(dead_code)] // devnet uses a part of it, the tests and benchmarks the rest

/// anvil's chain id when `--chain-id` is not given.
pub const ANVIL_DEFAULT_CHAIN_ID: u64 = 31_337;
/// devnet's L1 chain.
pub const L1_CHAIN_ID: u64 = 900;
/// The L2 chain of devnet, of the uptime tests and of the benchmarks.
pub const L2_CHAIN_ID: u64 = 901;
/// [`L2_CHAIN_ID`] as a metric label.
pub const L2_LABEL: &str = "901";

/// anvil's dev account #1 (mnemonic `test test ... junk`), funded on every anvil chain: devnet's
/// signer. Hex, no `0x`.
pub const DEV_KEY_1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// The address of [`DEV_KEY_1`].
pub const DEV_ADDRESS_1: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// The uptime feed contract, compiled (see contracts/README.md).
pub const FEED_ARTIFACT: &str = include_str!("../../contracts/out/SequencerUptimeFeed.json");
/// Our reporter contract, compiled (see contracts/README.md).
pub const REPORTER_ARTIFACT: &str = include_str!("../../contracts/out/UptimeReporter.json");

/// Gas limit of a deployment or an admin call (3 M), as a JSON-RPC quantity.
pub const DEPLOY_GAS: &str = "0x2dc6c0";
/// Gas of a plain transfer (21 000), as a JSON-RPC quantity.
pub const TRANSFER_GAS: &str = "0x5208";

/// The feed's `AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt)`.
pub const ANSWER_UPDATED: &str = "AnswerUpdated(int256,uint256,uint256)";
/// The reporter's `OutageReported(uint64 downTimestamp, uint64 upTimestamp)`.
pub const OUTAGE_REPORTED: &str = "OutageReported(uint64,uint64)";
