//! The uptime flow: `UptimeWatchdog` sees an L2 head older than the threshold and sends
//! `SequencerStalled` to the chain's `TxInjector`, which has its `SignerActor` sign the outage
//! report (a reporter call, or the down/up pair) and keeps it first and fresh in every
//! sequencer's pool; `SequencerResumed` starts the confirmation. See ARCHITECTURE.md.

mod checks;
mod confirm;
pub mod feed;
pub mod injector;
pub mod messages;
pub mod pool;
pub mod ports;
mod position;
pub mod pricing;
pub mod signer_actor;
pub mod submit;
pub mod tx_injector;
pub mod watchdog;

#[cfg(test)]
mod tests;
