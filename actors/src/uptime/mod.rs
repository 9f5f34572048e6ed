//! The uptime flow: `UptimeWatchdog` sees an L2 head older than the threshold and sends
//! `SequencerStalled` to the chain's `TxInjector`, which has its `SignerActor` sign the update
//! pair and pre-positions it in the sequencer's pool; `SequencerResumed` starts the
//! confirmation. See ARCHITECTURE.md.

pub mod feed;
pub mod injector;
pub mod messages;
pub mod signer_actor;
pub mod submit;
pub mod watchdog;
