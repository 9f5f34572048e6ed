//! What identifies the chains a database was recorded from, so that a datadir is never served
//! against another chain.
//!
//! `meta` holds one identity for L1 (key `identity/l1`) and one per L2 chain (key
//! `identity/l2/` ‖ chain id): the chain id where it is known and the first recorded block
//! (number and hash). The first block is written in the same write as the first row of an empty
//! index or log, and removed when a rewind empties it; the chain id survives both. A database
//! written before identities existed gets them from its first rows when it is opened for the
//! supervisor ([`ChainsDb::open`]). The supervisor compares them with the nodes at start; while a
//! comparison is pending it may close the [`WriteGate`], and every L1 and L2 write is refused.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use alloy::primitives::B256;
use serde::Serialize;

use crate::{BlockRef, ChainId, ChainsDb, Result, StorageError, codec, db::WriteSet};

pub(crate) const META_IDENTITY_L1: &[u8] = b"identity/l1";
const META_IDENTITY_L2_PREFIX: &[u8] = b"identity/l2/";
const IDENTITY_LEN: usize = 1 + 8 + 8 + 32;
const HAS_CHAIN_ID: u8 = 1;
const HAS_FIRST: u8 = 2;

/// Which chain an identity belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentityOf {
    /// The L1 index.
    L1,
    /// One L2 chain's derivation log.
    L2(ChainId),
}

impl std::fmt::Display for IdentityOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityOf::L1 => write!(f, "L1"),
            IdentityOf::L2(chain) => write!(f, "L2 chain {chain}"),
        }
    }
}

/// The first block recorded from a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FirstBlock {
    /// Its number.
    pub number: u64,
    /// Its hash.
    pub hash: B256,
}

impl std::fmt::Display for FirstBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {}", self.number, self.hash)
    }
}

impl From<&BlockRef> for FirstBlock {
    fn from(b: &BlockRef) -> Self {
        Self { number: b.number, hash: b.hash }
    }
}

/// What identifies the chain a part of the database was recorded from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainIdentity {
    /// The chain id (EIP-155), where it is known.
    pub chain_id: Option<u64>,
    /// The first recorded block; `None` while nothing is recorded.
    pub first: Option<FirstBlock>,
}

impl std::fmt::Display for ChainIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.chain_id {
            Some(id) => write!(f, "chain id {id}")?,
            None => write!(f, "chain id not stored")?,
        }
        match self.first {
            Some(b) => write!(f, ", first recorded block {b}"),
            None => write!(f, ", nothing recorded"),
        }
    }
}

/// An identity written from the first rows of a database that had none (an earlier build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityMigration {
    /// Whose.
    pub of: IdentityOf,
    /// What was written.
    pub identity: ChainIdentity,
}

/// While closed, every write to the L1 index, the heads and the derivation logs is refused with
/// [`StorageError::IdentityUnverified`] (the outage journal is not gated). Clones share one gate;
/// it starts open.
#[derive(Clone, Debug, Default)]
pub struct WriteGate(Arc<AtomicBool>);

impl WriteGate {
    /// Refuses writes until [`Self::open`].
    pub fn close(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Allows writes again.
    pub fn open(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether writes are refused.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn key(of: IdentityOf) -> Vec<u8> {
    match of {
        IdentityOf::L1 => META_IDENTITY_L1.to_vec(),
        IdentityOf::L2(chain) => [META_IDENTITY_L2_PREFIX, &codec::num_key(chain)[..]].concat(),
    }
}

pub(crate) fn encode(identity: &ChainIdentity) -> [u8; IDENTITY_LEN] {
    let mut out = [0u8; IDENTITY_LEN];
    if let Some(id) = identity.chain_id {
        out[0] |= HAS_CHAIN_ID;
        out[1..9].copy_from_slice(&id.to_be_bytes());
    }
    if let Some(first) = identity.first {
        out[0] |= HAS_FIRST;
        out[9..17].copy_from_slice(&first.number.to_be_bytes());
        out[17..].copy_from_slice(first.hash.as_slice());
    }
    out
}

pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<ChainIdentity> {
    if value.len() != IDENTITY_LEN {
        return Err(codec::corrupt("meta", key, format!("identity is {} bytes, expected {IDENTITY_LEN}", value.len())));
    }
    let flags = value[0];
    if flags & !(HAS_CHAIN_ID | HAS_FIRST) != 0 {
        return Err(codec::corrupt("meta", key, format!("identity has unknown flags {flags:#04x}")));
    }
    let u64_at = |at: usize| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&value[at..at + 8]);
        u64::from_be_bytes(buf)
    };
    Ok(ChainIdentity {
        chain_id: (flags & HAS_CHAIN_ID != 0).then(|| u64_at(1)),
        first: (flags & HAS_FIRST != 0).then(|| FirstBlock { number: u64_at(9), hash: B256::from_slice(&value[17..]) }),
    })
}

impl ChainsDb {
    /// The stored identity of `of`; `None` when none is stored (nothing recorded yet, or a
    /// database of an earlier build opened with [`Self::open_as_is`]).
    pub fn identity(&self, of: IdentityOf) -> Result<Option<ChainIdentity>> {
        let key = key(of);
        self.raw_meta(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Stores the L1 chain id (the supervisor does after the node's answers matched the stored
    /// first block). Refuses to replace another stored chain id.
    pub fn set_l1_chain_id(&mut self, chain_id: u64) -> Result<()> {
        let mut identity = self.identity(IdentityOf::L1)?.unwrap_or_default();
        match identity.chain_id {
            Some(stored) if stored == chain_id => return Ok(()),
            Some(stored) => {
                return Err(StorageError::ChainIdMismatch { of: IdentityOf::L1, stored, offered: chain_id });
            }
            None => identity.chain_id = Some(chain_id),
        }
        let mut ws = WriteSet::default();
        ws.meta.insert(key(IdentityOf::L1), &encode(&identity)[..]);
        self.commit(ws)
    }

    /// Writes the identities a database of an earlier build lacks, from its first rows; returns
    /// each one written. Nothing is written where an identity is stored or nothing is recorded.
    pub fn migrate_identities(&mut self) -> Result<Vec<IdentityMigration>> {
        let mut written = Vec::new();
        let mut ws = WriteSet::default();
        if self.identity(IdentityOf::L1)?.is_none()
            && let Some(first) = self.first_l1()?
        {
            let identity = ChainIdentity { chain_id: None, first: Some((&first).into()) };
            ws.meta.insert(key(IdentityOf::L1), &encode(&identity)[..]);
            written.push(IdentityMigration { of: IdentityOf::L1, identity });
        }
        for chain in self.chains() {
            if self.identity(IdentityOf::L2(chain))?.is_none()
                && let Some(first) = self.first_derived(chain)?
            {
                let identity = ChainIdentity { chain_id: Some(chain), first: Some((&first).into()) };
                ws.meta.insert(key(IdentityOf::L2(chain)), &encode(&identity)[..]);
                written.push(IdentityMigration { of: IdentityOf::L2(chain), identity });
            }
        }
        if !written.is_empty() {
            self.commit(ws)?;
        }
        Ok(written)
    }

    /// The gate the supervisor closes while it has not yet compared the identities with the
    /// nodes.
    pub fn write_gate(&self) -> WriteGate {
        self.gate.clone()
    }

    /// `Err` while the write gate is closed.
    pub(crate) fn writable(&self) -> Result<()> {
        if self.gate.is_closed() { Err(StorageError::IdentityUnverified) } else { Ok(()) }
    }

    /// In `ws`: `first` is the first row of `of`'s (empty) index or log.
    pub(crate) fn identity_on_first(&self, ws: &mut WriteSet, of: IdentityOf, first: &BlockRef) -> Result<()> {
        let mut identity = self.identity(of)?.unwrap_or_default();
        if let IdentityOf::L2(chain) = of {
            identity.chain_id = Some(chain);
        }
        identity.first = Some(first.into());
        ws.meta.insert(key(of), &encode(&identity)[..]);
        Ok(())
    }

    /// In `ws`: `of`'s index or log is emptied; its chain id stays.
    pub(crate) fn identity_on_emptied(&self, ws: &mut WriteSet, of: IdentityOf) -> Result<()> {
        if let Some(mut identity) = self.identity(of)? {
            identity.first = None;
            ws.meta.insert(key(of), &encode(&identity)[..]);
        }
        Ok(())
    }

    /// Problems of the stored identities against the rows, for [`Self::check`].
    pub(crate) fn check_identities(&self, problems: &mut Vec<String>) -> Result<()> {
        let mut targets = vec![IdentityOf::L1];
        targets.extend(self.chains().into_iter().map(IdentityOf::L2));
        for of in targets {
            let identity = match self.identity(of) {
                Ok(Some(identity)) => identity,
                Ok(None) => continue,
                Err(e) => {
                    problems.push(format!("{of} identity: {e}"));
                    continue;
                }
            };
            if let (IdentityOf::L2(chain), Some(id)) = (of, identity.chain_id)
                && id != chain
            {
                problems.push(format!("{of} identity names chain id {id}"));
            }
            let first = match of {
                IdentityOf::L1 => self.first_l1().ok().flatten(),
                IdentityOf::L2(chain) => self.first_derived(chain).ok().flatten(),
            };
            match (identity.first, first) {
                (Some(stored), Some(row)) if stored != FirstBlock::from(&row) => problems
                    .push(format!("{of} identity names first block {stored} but the first recorded block is {row}")),
                (Some(stored), None) => {
                    problems.push(format!("{of} identity names first block {stored} but nothing is recorded"))
                }
                (None, Some(row)) => problems.push(format!("{of} identity names no first block but {row} is recorded")),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ChainMode;

    fn block(salt: u8, n: u64) -> BlockRef {
        let hash = |n: u64| {
            let mut b = [0u8; 32];
            b[0] = salt;
            b[24..].copy_from_slice(&n.to_be_bytes());
            B256::from(b)
        };
        BlockRef { number: n, hash: hash(n), parent_hash: hash(n.wrapping_sub(1)), timestamp: n }
    }

    fn chain(salt: u8, from: u64, to: u64) -> Vec<BlockRef> {
        (from..=to).map(|n| block(salt, n)).collect()
    }

    #[test]
    fn encoding_round_trips_and_refuses_bad_values() {
        for identity in [
            ChainIdentity::default(),
            ChainIdentity { chain_id: Some(900), first: None },
            ChainIdentity { chain_id: None, first: Some((&block(1, 7)).into()) },
            ChainIdentity { chain_id: Some(u64::MAX), first: Some((&block(2, u64::MAX)).into()) },
        ] {
            assert_eq!(decode(META_IDENTITY_L1, &encode(&identity)).unwrap(), identity);
        }
        assert!(matches!(decode(META_IDENTITY_L1, &[0; 3]), Err(StorageError::Corrupt { .. })));
        let mut bad = encode(&ChainIdentity::default());
        bad[0] = 0x80;
        assert!(matches!(decode(META_IDENTITY_L1, &bad), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn first_rows_write_the_identity_and_a_rewind_that_empties_clears_the_block() {
        let mut db = ChainsDb::temporary().unwrap();
        assert_eq!(db.identity(IdentityOf::L1).unwrap(), None);
        db.record_l1(&chain(1, 10, 12)).unwrap();
        let first = Some(FirstBlock::from(&block(1, 10)));
        assert_eq!(db.identity(IdentityOf::L1).unwrap(), Some(ChainIdentity { chain_id: None, first }));
        db.record_l1(&chain(1, 13, 14)).unwrap();
        db.set_l1_chain_id(900).unwrap();
        db.set_l1_chain_id(900).unwrap();
        assert!(matches!(
            db.set_l1_chain_id(901),
            Err(StorageError::ChainIdMismatch { stored: 900, offered: 901, .. })
        ));
        assert_eq!(db.identity(IdentityOf::L1).unwrap(), Some(ChainIdentity { chain_id: Some(900), first }));

        db.add_chain(5, ChainMode::FollowsL1).unwrap();
        assert_eq!(db.identity(IdentityOf::L2(5)).unwrap(), None);
        db.record_derived_from_head(5, &chain(9, 100, 101)).unwrap();
        let l2_first = Some(FirstBlock::from(&block(9, 100)));
        assert_eq!(db.identity(IdentityOf::L2(5)).unwrap(), Some(ChainIdentity { chain_id: Some(5), first: l2_first }));
        assert!(db.check().unwrap().is_ok());

        db.rewind_chain(5, 99).unwrap();
        assert_eq!(db.identity(IdentityOf::L2(5)).unwrap(), Some(ChainIdentity { chain_id: Some(5), first: None }));
        db.rewind_l1(11).unwrap();
        assert_eq!(db.identity(IdentityOf::L1).unwrap().and_then(|i| i.first), first);
        db.rewind_l1(5).unwrap();
        assert_eq!(db.identity(IdentityOf::L1).unwrap(), Some(ChainIdentity { chain_id: Some(900), first: None }));
        assert!(db.check().unwrap().is_ok(), "{:?}", db.check().unwrap().problems);

        // Refilled from elsewhere: the new first block, the chain id kept.
        db.record_l1(&chain(3, 20, 21)).unwrap();
        assert_eq!(
            db.identity(IdentityOf::L1).unwrap(),
            Some(ChainIdentity { chain_id: Some(900), first: Some((&block(3, 20)).into()) })
        );
        assert!(db.check().unwrap().is_ok());
    }

    #[test]
    fn an_old_database_gets_its_identity_from_its_first_rows_once() {
        let mut db = ChainsDb::temporary().unwrap();
        db.add_chain(5, ChainMode::FollowsL1).unwrap();
        db.add_chain(6, ChainMode::FollowsL1).unwrap();
        db.record_l1(&chain(1, 10, 12)).unwrap();
        db.record_derived_from_head(5, &chain(9, 100, 101)).unwrap();
        // What an earlier build left: no identity at all.
        let meta = db.trees().1.clone();
        meta.remove(META_IDENTITY_L1).unwrap();
        meta.remove(key(IdentityOf::L2(5))).unwrap();
        assert_eq!(db.identity(IdentityOf::L1).unwrap(), None);
        assert!(db.check().unwrap().is_ok(), "no identity is not a problem");

        let written = db.migrate_identities().unwrap();
        assert_eq!(
            written,
            vec![
                IdentityMigration {
                    of: IdentityOf::L1,
                    identity: ChainIdentity { chain_id: None, first: Some((&block(1, 10)).into()) }
                },
                IdentityMigration {
                    of: IdentityOf::L2(5),
                    identity: ChainIdentity { chain_id: Some(5), first: Some((&block(9, 100)).into()) }
                },
            ],
            "chain 6 recorded nothing and gets nothing"
        );
        assert_eq!(db.identity(IdentityOf::L2(6)).unwrap(), None);
        assert!(db.migrate_identities().unwrap().is_empty(), "a second open writes nothing");
        assert!(db.check().unwrap().is_ok());
    }

    #[test]
    fn check_reports_an_identity_that_contradicts_the_rows() {
        let mut db = ChainsDb::temporary().unwrap();
        db.record_l1(&chain(1, 10, 12)).unwrap();
        let meta = db.trees().1.clone();
        let wrong = ChainIdentity { chain_id: Some(900), first: Some((&block(2, 10)).into()) };
        meta.insert(META_IDENTITY_L1, &encode(&wrong)[..]).unwrap();
        let report = db.check().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].contains("L1 identity names first block #10"), "{:?}", report.problems);
        meta.insert(META_IDENTITY_L1, &[1u8, 2][..]).unwrap();
        assert!(db.check().unwrap().problems[0].contains("identity is 2 bytes"));
    }

    #[test]
    fn a_closed_gate_refuses_every_chain_write_and_changes_nothing() {
        let mut db = ChainsDb::temporary().unwrap();
        db.add_chain(5, ChainMode::FollowsL1).unwrap();
        db.record_l1(&chain(1, 10, 12)).unwrap();
        db.record_derived_from_head(5, &chain(9, 100, 100)).unwrap();
        let gate = db.write_gate();
        gate.close();
        let refused = |r: Result<()>| assert!(matches!(r, Err(StorageError::IdentityUnverified)), "{r:?}");
        refused(db.record_l1(&chain(1, 13, 13)).map(drop));
        refused(db.rewind_l1(10));
        refused(db.set_heads(Some(block(1, 11)), None));
        refused(db.record_derived_from_head(5, &chain(9, 101, 101)).map(drop));
        refused(db.rewind_chain(5, 0));
        assert_eq!(db.latest_l1().unwrap(), Some(block(1, 12)));
        assert_eq!(db.heads().unwrap().safe, None);
        gate.open();
        db.record_l1(&chain(1, 13, 13)).unwrap();
        assert!(db.check().unwrap().is_ok());
    }
}
