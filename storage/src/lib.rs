//! `rollup-supervisor-storage`: the durable state of rollup-supervisor, on sled.
//!
//! [`ChainsDb`] holds the canonical L1 index (one row per L1 block, parent-linked, with the safe
//! and finalized heads) and one derivation log per L2 chain: which L2 blocks were derived as of
//! which L1 block. Its writes enforce the derivation-log invariant (from one entry to the next
//! exactly one side advances by exactly one parent-linked block) and are atomic across trees and
//! flushed before they return; a write that would break an invariant is a typed
//! [`StorageError`] and writes nothing. The node's safe and finalized heads are stored only as
//! recorded blocks ([`ChainsDb::set_heads`]), so a node that lies about them cannot poison the
//! index. [`DurableDb`] closes it at the first disk failure and reopens it from disk, so that
//! nothing that did not become durable is ever read; [`SharedDb`] lets many threads read it while one
//! writes, and keeps every reader to what is durable. [`ChainsDb::check`] re-verifies every invariant by a full scan, and
//! [`ChainsDb::repair_heads`] repairs heads an earlier build stored unchecked. It also stores what
//! identifies the chains it was recorded from ([`ChainsDb::identity`]), so that the supervisor can
//! refuse to serve a datadir against another chain.
//!
//! Feature `test-utils`: [`test_utils`], to build damaged databases in tests.
//!
//! This crate knows nothing of actors or RPC: the actors crate owns one `ChainsDb` inside its
//! `ChainsDbActor`. The on-disk format is described in the `codec` module and carries a schema
//! version; an unknown version or a malformed row is an error, never a panic.

mod check;
mod codec;
mod db;
mod durable;
mod error;
mod heads;
mod identity;
mod outage;
mod shared;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
mod types;

pub use check::CheckReport;
pub use db::ChainsDb;
pub use durable::{DurableDb, REOPEN_EVERY};
pub use error::{Result, Side, StorageError};
pub use heads::{HeadKind, HeadNote, HeadRefusal, HeadRepair};
pub use identity::{ChainIdentity, FirstBlock, IdentityMigration, IdentityOf, WriteGate};
pub use outage::{OutageRecord, OutageResult, ReportTx, Superseded};
pub use shared::SharedDb;
pub use types::{BlockRef, ChainId, ChainMode, DerivedPair, L1Heads, Recorded};

/// Size in bytes of one L1 index row (key and value).
pub const L1_ROW_BYTES: usize = 8 + codec::L1_VALUE_LEN;
/// Size in bytes of one derivation row (key and value): one per derived L2 block; the
/// `NewL1 : ExistingL2` entries take no row.
pub const DERIVATION_ROW_BYTES: usize = 8 + codec::L2_VALUE_LEN;

#[cfg(test)]
mod tests;
