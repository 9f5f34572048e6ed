//! The messages of the uptime flow: `UptimeWatchdog` → `TxInjector` → `SignerActor`.

use actix::Message;
use alloy::consensus::{Signed, TxEip1559};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord};
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

/// The operator's override (`admin_forceUptimeUpdate`): treat the chain as stalled after its
/// current head and pre-position the pair now. Sent by the RPC server to the chain's
/// `UptimeWatchdog`, which marks the outage (so the next block ends it, as after a real stall)
/// and forwards a [`ForcedStall`] to the `TxInjector`. An outage already in progress is not
/// started twice: the same outage is answered.
#[derive(Debug, Message)]
#[rtype(result = "Result<OutageRecord, String>")]
pub struct ForceUptimeUpdate;

/// A stall forced by the operator. Sent by the `UptimeWatchdog` to the `TxInjector`, which
/// handles it as [`SequencerStalled`] and answers once the pair is pre-positioned (or why not).
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<OutageRecord, String>")]
pub struct ForcedStall {
    /// The L2 chain.
    pub chain: ChainId,
    /// The head when the operator asked: the last block before the reported gap.
    pub last_block: BlockRef,
}

/// Sign one EIP-1559 transaction. Sent by the `TxInjector` to its `SignerActor`, which signs one
/// at a time, within its timeout, unless its circuit breaker is open.
#[derive(Debug, Message)]
#[rtype(result = "Result<Signed<TxEip1559>, SignError>")]
pub struct SignTransaction(pub TxEip1559);

/// Ask the signer backend whether it is up (Web3Signer: `GET /upcheck`; a local key always is).
/// Sent by `/readyz`; does not go through the circuit breaker.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SignError>")]
pub struct ProbeSigner;

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
