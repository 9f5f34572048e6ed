//! Unit tests for every error case, and property tests: random operation sequences never break
//! an invariant, agree with a reference model of the rules (`model.rs`), a rejected write changes
//! nothing, and close + reopen gives the same state. In files by subject; this one holds the
//! helpers they share.
#![allow(clippy::unwrap_used)]

mod derivation;
mod heads;
mod l1;
mod model;
mod on_disk;
mod property;

use alloy::primitives::B256;

use crate::*;

/// A deterministic hash for block `n` on fork `fork` of chain `salt`.
fn h(salt: u8, n: u64, fork: u8) -> B256 {
    let mut b = [0u8; 32];
    b[0] = salt;
    b[1] = fork;
    b[24..].copy_from_slice(&n.to_be_bytes());
    B256::from(b)
}

/// Runs `open` until it stops failing on sled's file lock: after the last handle is dropped,
/// sled's background flusher releases the lock asynchronously, so an immediate reopen in the
/// same process can race it. Any other error, or a lock held for 10 s, fails the test.
pub(crate) fn when_unlocked<T, E: std::fmt::Display>(open: impl Fn() -> std::result::Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Ok(v) => return v,
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("cannot open the database: {e}"),
        }
    }
}

/// A predicate over the error a rejected write returns.
type Expect = fn(&StorageError) -> bool;

fn block(salt: u8, n: u64, fork: u8, parent_fork: u8) -> BlockRef {
    BlockRef {
        number: n,
        hash: h(salt, n, fork),
        parent_hash: h(salt, n.wrapping_sub(1), parent_fork),
        timestamp: n.wrapping_mul(12),
    }
}

fn l1(n: u64) -> BlockRef {
    block(1, n, 0, 0)
}

fn l2(n: u64) -> BlockRef {
    block(2, n, 0, 0)
}

fn db_with_l1(range: std::ops::RangeInclusive<u64>) -> ChainsDb {
    let mut db = ChainsDb::temporary().unwrap();
    let blocks: Vec<_> = range.map(l1).collect();
    db.record_l1(&blocks).unwrap();
    db
}

fn snapshot(db: &ChainsDb) -> String {
    let mut out = format!("{:?}\n", db.heads().unwrap());
    out += &format!("{:?}\n", db.l1_range(0, u64::MAX).unwrap());
    for chain in db.chains() {
        out += &format!("{chain}: {:?} {:?}\n", db.chain_info(chain).unwrap(), db.log(chain).unwrap());
    }
    out
}
