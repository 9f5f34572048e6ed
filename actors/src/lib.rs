//! `rollup-supervisor-actors`: the actix actors of rollup-supervisor and the plain logic they
//! drive.
//!
//! - [`chains_db::ChainsDbActor`] owns the database (a writer thread and reader threads); every
//!   write and query is a typed message to it ([`chains_db::messages`]), and
//!   [`chains_db::DbQueries`] sends the servers' queries straight to the readers.
//! - [`watcher::L1Watcher`] follows L1 (batched catch-up, reorgs, safe/finalized heads) and
//!   sends `NewL1Blocks`, `L1Reorg` and `NewL1Heads`.
//! - [`watcher::L2Watcher`], one per chain, follows the chain's node and sends
//!   `NewDerivedBlocks` and `L2Reorg`: the chain's derivation input.
//!
//! The logic lives in [`follow::Follower`], which tests drive without a runtime of actors; the
//! actors are thin, supervised mailboxes. See ARCHITECTURE.md for the message map.

pub mod backoff;
pub mod chains_db;
pub mod derivation;
pub mod follow;
pub mod metrics;
pub mod rpc;
pub mod uptime;
pub mod watcher;

#[cfg(test)]
mod tests;
