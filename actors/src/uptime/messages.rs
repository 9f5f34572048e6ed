//! The messages of the uptime flow: `UptimeWatchdog` → `TxInjector` → `SignerActor`.

use actix::Message;
use alloy::consensus::{Signed, TxEip1559};
use rollup_supervisor_storage::{BlockRef, ChainId};
use serde::Serialize;

use super::signer_actor::SignError;

/// The chain's newest block is older than the threshold. Sent once per outage by the chain's
/// `UptimeWatchdog` to its `TxInjector`.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct SequencerStalled {
    /// The L2 chain.
    pub chain: ChainId,
    /// The last block before the gap: its timestamp is when the sequencer went down.
    pub last_block: BlockRef,
}

/// A block newer than the stalled one appeared. Sent by the `UptimeWatchdog` to the
/// `TxInjector` when an outage ends.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct SequencerResumed {
    /// The L2 chain.
    pub chain: ChainId,
    /// The last block before the gap.
    pub last_block: BlockRef,
    /// The newest block now.
    pub head: BlockRef,
}

/// Sign one EIP-1559 transaction. Sent by the `TxInjector` to its `SignerActor`, which signs one
/// at a time, within its timeout, unless its circuit breaker is open.
#[derive(Debug, Message)]
#[rtype(result = "Result<Signed<TxEip1559>, SignError>")]
pub struct SignTransaction(pub TxEip1559);

/// The signer's health. Sent by the RPC server.
#[derive(Debug, Message)]
#[rtype(result = "SignerHealth")]
pub struct GetSignerHealth;

/// The answer to [`GetSignerHealth`].
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignerHealth {
    /// Failed signings in a row.
    pub consecutive_failures: u32,
    /// The circuit breaker is open: signing fails fast until it half-opens.
    pub breaker_open: bool,
    /// The last error.
    pub last_error: Option<String>,
}

/// The watchdog's view of the chain. Sent by the RPC server to the `UptimeWatchdog`.
#[derive(Debug, Message)]
#[rtype(result = "WatchdogStatus")]
pub struct GetWatchdogStatus;

/// The answer to [`GetWatchdogStatus`].
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchdogStatus {
    /// The newest block seen.
    pub head: Option<BlockRef>,
    /// Seconds between that block's timestamp and the last check.
    pub head_age_secs: Option<u64>,
    /// Whether the chain counts as stalled.
    pub stalled: bool,
    /// The last error reading the chain's head.
    pub last_error: Option<String>,
}
