//! Unit tests for every error case, and property tests: random operation sequences never break
//! an invariant, a rejected write changes nothing, and close + reopen gives the same state.
#![allow(clippy::unwrap_used)]

use alloy::primitives::B256;
use proptest::prelude::*;

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

#[test]
fn l1_index_accepts_linked_blocks_and_repeats() {
    let mut db = ChainsDb::temporary().unwrap();
    assert_eq!(db.record_new_l1(l1(100)).unwrap(), Recorded::Appended(1));
    assert_eq!(db.record_new_l1(l1(100)).unwrap(), Recorded::Repeat);
    assert_eq!(db.record_l1(&[l1(101), l1(102)]).unwrap(), Recorded::Appended(2));
    assert_eq!(db.latest_l1().unwrap(), Some(l1(102)));
    assert_eq!(db.first_l1().unwrap(), Some(l1(100)));
    assert_eq!(db.l1_block(101).unwrap(), Some(l1(101)));
    assert_eq!(db.l1_block(99).unwrap(), None);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn l1_index_errors_write_nothing() {
    let mut db = db_with_l1(0..=5);
    let before = snapshot(&db);
    let cases: Vec<(Vec<BlockRef>, Expect)> = vec![
        (vec![block(1, 6, 1, 1)], |e| matches!(e, StorageError::ParentMismatch { number: 6, .. })),
        (vec![l1(8)], |e| matches!(e, StorageError::Future { next: 6, incoming: 8, .. })),
        (vec![block(1, 5, 1, 0)], |e| matches!(e, StorageError::Conflict { number: 5, .. })),
        (vec![block(1, 3, 1, 0)], |e| matches!(e, StorageError::Conflict { number: 3, .. })),
        (vec![l1(3)], |e| matches!(e, StorageError::Stale { tip: 5, incoming: 3, .. })),
        // A batch is all or nothing: a good block before a bad one is not written either.
        (vec![l1(6), l1(8)], |e| matches!(e, StorageError::Future { next: 7, .. })),
        (vec![l1(6), l1(6)], |e| matches!(e, StorageError::Stale { .. })),
    ];
    for (blocks, expected) in cases {
        let err = db.record_l1(&blocks).unwrap_err();
        assert!(expected(&err), "{blocks:?}: unexpected {err}");
        assert_eq!(snapshot(&db), before);
    }
    let top = BlockRef { number: u64::MAX, ..l1(5) };
    assert!(matches!(db.record_new_l1(top), Err(StorageError::Future { .. })));
}

/// A block at `n` that the index does not hold: a lying node's random hash.
fn fake(n: u64) -> BlockRef {
    block(9, n, 9, 9)
}

fn heads_of(db: &ChainsDb) -> (Option<u64>, Option<u64>, Option<u64>) {
    let h = db.heads().unwrap();
    (h.latest.map(|b| b.number), h.safe.map(|b| b.number), h.finalized.map(|b| b.number))
}

fn refusals(db: &mut ChainsDb) -> Vec<(HeadKind, &'static str)> {
    db.take_head_notes()
        .into_iter()
        .filter_map(|n| match n {
            HeadNote::Refused { head, reason, .. } => Some((head, reason.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn heads_are_recorded_blocks_finality_never_moves_back_and_safe_is_never_below_finalized() {
    let mut db = db_with_l1(10..=20);
    db.set_heads(Some(l1(15)), Some(l1(12))).unwrap();
    assert_eq!(heads_of(&db), (Some(20), Some(15), Some(12)));
    db.take_head_notes();

    // Each refusal leaves the stored heads as they were.
    type Refusal<'a> = (Option<BlockRef>, Option<BlockRef>, Vec<(HeadKind, &'a str)>);
    let cases: Vec<Refusal> = vec![
        (None, Some(l1(11)), vec![(HeadKind::Finalized, "regression")]),
        (None, Some(block(1, 12, 1, 0)), vec![(HeadKind::Finalized, "conflict")]),
        (None, Some(block(1, 14, 1, 0)), vec![(HeadKind::Finalized, "conflict")]),
        (Some(block(1, 16, 1, 0)), None, vec![(HeadKind::Safe, "conflict")]),
        (Some(l1(11)), None, vec![(HeadKind::Safe, "order")]),
        (Some(l1(9)), Some(l1(5)), vec![(HeadKind::Finalized, "regression"), (HeadKind::Safe, "order")]),
    ];
    for (safe, finalized, expected) in cases {
        db.set_heads(safe, finalized).unwrap();
        assert_eq!(refusals(&mut db), expected, "{safe:?} {finalized:?}");
        assert_eq!(heads_of(&db), (Some(20), Some(15), Some(12)), "{safe:?} {finalized:?}");
        assert!(db.check().unwrap().is_ok());
    }

    // Finalized above the stored safe block raises safe to it: a finalized block is safe.
    db.set_heads(None, Some(l1(17))).unwrap();
    assert_eq!(heads_of(&db), (Some(20), Some(17), Some(17)));
    // Safe may move back, but never below finalized.
    db.set_heads(Some(l1(18)), Some(l1(17))).unwrap();
    db.set_heads(Some(l1(17)), Some(l1(17))).unwrap();
    assert_eq!(heads_of(&db), (Some(20), Some(17), Some(17)));
    assert!(refusals(&mut db).is_empty());
    assert!(db.check().unwrap().is_ok());

    // Below the index: cannot be checked, not stored, not a contradiction.
    let mut fresh = db_with_l1(100..=110);
    fresh.set_heads(Some(l1(90)), Some(l1(80))).unwrap();
    assert_eq!(heads_of(&fresh), (Some(110), None, None));
    let notes = fresh.take_head_notes();
    assert!(notes.iter().all(|n| matches!(n, HeadNote::Refused { reason, .. } if !reason.contradicts_the_index())));
}

#[test]
fn a_lying_head_above_the_index_is_held_and_dropped_when_the_index_reaches_another_block() {
    // The reliability run's lie: finalized (and safe) at head + 3 with a random hash.
    let mut db = db_with_l1(0..=300);
    db.set_heads(Some(l1(268)), Some(l1(236))).unwrap();
    db.set_heads(Some(fake(303)), Some(fake(303))).unwrap();
    assert_eq!(heads_of(&db), (Some(300), Some(268), Some(236)), "never stored above the recorded head");
    assert_eq!(db.held_heads(), (Some(fake(303)), Some(fake(303))));
    assert!(db.check().unwrap().is_ok());
    db.take_head_notes();

    // The index goes on past it (it used to stop at 302 with a conflict at 303) and drops it.
    db.record_l1(&(301..=305).map(l1).collect::<Vec<_>>()).unwrap();
    assert_eq!(db.latest_l1().unwrap(), Some(l1(305)));
    assert_eq!(db.held_heads(), (None, None));
    assert_eq!(refusals(&mut db), vec![(HeadKind::Finalized, "conflict"), (HeadKind::Safe, "conflict")]);
    assert_eq!(heads_of(&db), (Some(305), Some(268), Some(236)));

    // The honest answers that follow are taken (they used to be refused as a regression).
    db.set_heads(Some(l1(273)), Some(l1(241))).unwrap();
    assert_eq!(heads_of(&db), (Some(305), Some(273), Some(241)));
    assert!(refusals(&mut db).is_empty());
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn a_head_above_the_index_is_stored_once_the_index_records_that_block() {
    let mut db = db_with_l1(0..=10);
    db.set_heads(Some(l1(14)), Some(l1(12))).unwrap();
    assert_eq!(heads_of(&db), (Some(10), None, None));
    db.record_l1(&[l1(11), l1(12)]).unwrap();
    assert_eq!(heads_of(&db), (Some(12), Some(12), Some(12)), "finalized 12 stored, safe raised to it");
    assert_eq!(db.held_heads(), (Some(l1(14)), None));
    db.record_l1(&[l1(13), l1(14), l1(15)]).unwrap();
    assert_eq!(heads_of(&db), (Some(15), Some(14), Some(12)));
    assert_eq!(db.held_heads(), (None, None));
    assert!(db.check().unwrap().is_ok());

    // A newer answer replaces what is held; a repeat of the tip settles nothing.
    db.set_heads(Some(l1(30)), None).unwrap();
    db.set_heads(Some(l1(20)), None).unwrap();
    assert_eq!(db.held_heads(), (Some(l1(20)), None));
    assert_eq!(db.record_l1(&[l1(15)]).unwrap(), Recorded::Repeat);
    assert_eq!(db.held_heads(), (Some(l1(20)), None));
}

#[test]
fn finality_far_above_the_head_is_never_stored_and_never_blocks_a_reorg() {
    let mut db = db_with_l1(0..=100);
    db.set_heads(Some(l1(68)), Some(l1(36))).unwrap();
    db.set_heads(None, Some(fake((1 << 63) - 1))).unwrap();
    assert_eq!(heads_of(&db), (Some(100), Some(68), Some(36)));
    // A 3-block reorg rewinds (it used to be "below the finalized block 2^63 - 1").
    db.rewind_l1(97).unwrap();
    db.record_l1(&[block(1, 98, 1, 0), block(1, 99, 1, 1), block(1, 100, 1, 1)]).unwrap();
    db.set_heads(Some(l1(69)), Some(l1(37))).unwrap();
    assert_eq!(heads_of(&db), (Some(100), Some(69), Some(37)));
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn check_reports_poisoned_heads_open_repairs_them_and_repair_is_idempotent() {
    use crate::test_utils::write_head_unchecked;
    let poison = |dir: &std::path::Path, safe: Option<BlockRef>, finalized: Option<BlockRef>| {
        let db = when_unlocked(|| ChainsDb::open_as_is(dir));
        write_head_unchecked(&db, HeadKind::Safe, safe).unwrap();
        write_head_unchecked(&db, HeadKind::Finalized, finalized).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
        db.record_l1(&(0..=300).map(l1).collect::<Vec<_>>()).unwrap();
        db.set_heads(Some(l1(268)), Some(l1(236))).unwrap();
    }
    // Each way an earlier build could store a lying node's word, and what it is repaired to.
    type Poisoned<'a> = (Option<BlockRef>, Option<BlockRef>, &'a str, (Option<u64>, Option<u64>));
    let cases: Vec<Poisoned> = vec![
        (Some(fake(303)), Some(fake(303)), "finalized head #303", (None, None)),
        (Some(l1(268)), Some(fake((1 << 63) - 1)), "is above the newest recorded L1 block 300", (Some(268), None)),
        (Some(fake(250)), Some(l1(236)), "is not the recorded block at its height", (Some(236), Some(236))),
        (Some(l1(230)), Some(l1(236)), "safe head 230 is below the finalized head 236", (Some(236), Some(236))),
        (None, Some(l1(236)), "there is no safe head", (Some(236), Some(236))),
    ];
    for (safe, finalized, problem, repaired) in cases {
        poison(dir.path(), safe, finalized);
        let report = when_unlocked(|| ChainsDb::open_as_is(dir.path())).check().unwrap();
        assert!(report.heads_need_repair, "{problem}: {:?}", report.problems);
        assert!(report.problems.iter().any(|p| p.contains(problem)), "{problem}: {:?}", report.problems);

        // `open` (the supervisor's) repairs; `open_as_is` (db check) left it alone.
        let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
        let (_, s, f) = heads_of(&db);
        assert_eq!((s, f), repaired, "{problem}");
        let report = db.check().unwrap();
        assert!(report.is_ok() && !report.heads_need_repair, "{problem}: {:?}", report.problems);
        assert!(db.repair_heads().unwrap().is_empty(), "a sound database needs no repair");
        // And the node's honest word is taken again afterwards.
        db.set_heads(Some(l1(270)), Some(l1(238))).unwrap();
        assert_eq!(heads_of(&db), (Some(300), Some(270), Some(238)), "{problem}");
        drop(db);
        poison(dir.path(), Some(l1(268)), Some(l1(236)));
    }
    // repair_heads reports what it changed.
    poison(dir.path(), Some(fake(303)), Some(fake((1 << 63) - 1)));
    let mut db = when_unlocked(|| ChainsDb::open_as_is(dir.path()));
    let repairs = db.repair_heads().unwrap();
    assert_eq!(repairs.len(), 2, "{repairs:?}");
    assert_eq!((repairs[0].head, repairs[0].to), (HeadKind::Finalized, None));
    assert!(repairs[0].to_string().contains("above the newest recorded L1 block 300"), "{}", repairs[0]);
    assert_eq!((repairs[1].head, repairs[1].from), (HeadKind::Safe, Some(fake(303))));
}

#[test]
fn rewind_l1_removes_blocks_and_derivations_atomically_and_respects_finality() {
    let mut db = db_with_l1(0..=3);
    db.add_chain(10, ChainMode::FollowsL1).unwrap();
    db.add_chain(20, ChainMode::FollowsL1).unwrap();
    db.record_derived_from_head(10, &[l2(0), l2(1)]).unwrap();
    db.record_l1(&[l1(4), l1(5)]).unwrap();
    db.record_derived_from_head(10, &[l2(2)]).unwrap();
    db.record_derived_from_head(20, &[block(3, 7, 0, 0)]).unwrap();
    db.set_heads(Some(l1(5)), Some(l1(2))).unwrap();

    assert!(matches!(db.rewind_l1(1), Err(StorageError::BelowFinalized { to: 1, finalized: 2 })));
    db.rewind_l1(4).unwrap();
    assert_eq!(db.latest_l1().unwrap(), Some(l1(4)));
    assert_eq!(db.heads().unwrap().safe, Some(l1(2)), "safe was on the orphaned blocks: lowered to finalized");
    assert_eq!(db.latest(10).unwrap().unwrap().derived, l2(1));
    assert_eq!(db.latest(10).unwrap().unwrap().source, l1(4));
    // Chain 20's only entry came from L1 5: its log is now empty.
    assert_eq!(db.latest(20).unwrap(), None);
    assert!(db.check().unwrap().is_ok());
    // Re-recording forward extends chain 10 again.
    db.record_new_l1(block(1, 5, 1, 0)).unwrap();
    assert_eq!(db.latest(10).unwrap().unwrap().source, block(1, 5, 1, 0));
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn record_new_l1_extends_only_chains_that_finished_with_the_previous_block() {
    let mut db = db_with_l1(0..=1);
    db.add_chain(1, ChainMode::FollowsL1).unwrap();
    db.add_chain(2, ChainMode::Explicit).unwrap();
    db.add_chain(3, ChainMode::Explicit).unwrap();
    db.record_derived(1, l1(1), l2(0)).unwrap();
    db.record_derived(2, l1(1), l2(0)).unwrap();
    db.record_derived(3, l1(1), l2(0)).unwrap();
    db.mark_finished(3, 1).unwrap();
    assert!(matches!(db.mark_finished(3, 0), Err(StorageError::Stale { .. })));
    assert!(matches!(db.mark_finished(3, 2), Err(StorageError::Future { .. })));
    db.record_new_l1(l1(2)).unwrap();
    assert_eq!(db.latest(1).unwrap().unwrap().source, l1(2));
    assert_eq!(db.latest(2).unwrap().unwrap().source, l1(1), "chain 2 has not finished with L1 1");
    assert_eq!(db.latest(3).unwrap().unwrap().source, l1(2));
    // Chain 2 may still append L2 blocks derived from L1 1: its log is not corrupted.
    db.record_derived(2, l1(1), l2(1)).unwrap();
    // ...and then advance its source itself.
    db.record_derived(2, l1(2), l2(1)).unwrap();
    assert_eq!(db.log(2).unwrap().len(), 3);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn derivation_log_errors_write_nothing() {
    let mut db = db_with_l1(0..=5);
    db.add_chain(7, ChainMode::Explicit).unwrap();
    db.record_derived(7, l1(2), l2(10)).unwrap();
    db.record_derived(7, l1(2), l2(11)).unwrap();
    assert_eq!(db.record_derived(7, l1(2), l2(11)).unwrap(), Recorded::Repeat);
    let before = snapshot(&db);
    let cases: Vec<(BlockRef, BlockRef, Expect)> = vec![
        (l1(2), block(2, 11, 1, 0), |e| matches!(e, StorageError::Conflict { side: Side::L2(7), number: 11, .. })),
        (l1(2), block(2, 10, 1, 0), |e| matches!(e, StorageError::Conflict { side: Side::L2(7), number: 10, .. })),
        (l1(2), l2(10), |e| matches!(e, StorageError::Stale { .. })),
        (l1(2), l2(13), |e| matches!(e, StorageError::Future { side: Side::L2(7), next: 12, incoming: 13 })),
        (l1(4), l2(11), |e| matches!(e, StorageError::Future { side: Side::L1, next: 3, incoming: 4 })),
        (l1(3), l2(12), |e| matches!(e, StorageError::OutOfOrder { chain: 7, source_number: 3, derived_number: 12 })),
        (l1(2), block(2, 12, 0, 1), |e| {
            matches!(e, StorageError::ParentMismatch { side: Side::L2(7), number: 12, .. })
        }),
        (l1(1), l2(12), |e| matches!(e, StorageError::Stale { side: Side::L1, .. })),
        (block(1, 3, 1, 0), l2(11), |e| matches!(e, StorageError::Conflict { side: Side::L1, number: 3, .. })),
        (l1(9), l2(11), |e| matches!(e, StorageError::UnknownL1 { number: 9, .. })),
    ];
    for (source, derived, expected) in cases {
        let err = db.record_derived(7, source, derived).unwrap_err();
        assert!(expected(&err), "({source}, {derived}): unexpected {err}");
        assert_eq!(snapshot(&db), before);
    }
    // A batch that goes bad half-way writes nothing.
    let err = db.record_derived_batch(7, &[(l1(2), l2(12)), (l1(2), l2(14))]).unwrap_err();
    assert!(matches!(err, StorageError::Future { .. }));
    assert_eq!(snapshot(&db), before);
    assert!(matches!(db.record_derived(8, l1(1), l2(1)), Err(StorageError::UnknownChain(8))));
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn queries_over_a_log() {
    let mut db = db_with_l1(10..=10);
    db.add_chain(5, ChainMode::FollowsL1).unwrap();
    assert!(matches!(db.derived_at(5, 10), Err(StorageError::EmptyChain(5))));
    assert!(matches!(db.derived_from(5, 0), Err(StorageError::EmptyChain(5))));
    // L1 10: L2 100..=102; L1 11, 12: nothing new; L1 13: L2 103.
    db.record_derived_from_head(5, &[l2(100), l2(101), l2(102)]).unwrap();
    db.record_l1(&[l1(11), l1(12), l1(13)]).unwrap();
    db.record_derived_from_head(5, &[l2(103)]).unwrap();
    for (at, expected) in [(10, 102), (11, 102), (12, 102), (13, 103)] {
        assert_eq!(db.derived_at(5, at).unwrap(), l2(expected), "derived_at {at}");
    }
    assert!(matches!(db.derived_at(5, 9), Err(StorageError::BeforeStart { asked: 9, first: 10, .. })));
    assert!(matches!(db.derived_at(5, 14), Err(StorageError::NotDerivedYet { asked: 14, have: 13, .. })));
    assert_eq!(db.derived_from(5, 100).unwrap(), l1(10));
    assert_eq!(db.derived_from(5, 103).unwrap(), l1(13));
    assert!(matches!(db.derived_from(5, 99), Err(StorageError::BeforeStart { .. })));
    assert!(matches!(db.derived_from(5, 104), Err(StorageError::NotDerivedYet { .. })));
    assert_eq!(db.latest(5).unwrap(), Some(DerivedPair { source: l1(13), derived: l2(103) }));
    // The expanded log: every entry advances exactly one side by one.
    let log = db.log(5).unwrap();
    assert_eq!(log.len(), 7);
    for w in log.windows(2) {
        let l1_step = w[1].source.number - w[0].source.number;
        let l2_step = w[1].derived.number - w[0].derived.number;
        assert_eq!(l1_step + l2_step, 1, "{w:?}");
    }
}

#[test]
fn last_common_l1_is_the_minimum_over_chains() {
    let mut db = ChainsDb::temporary().unwrap();
    assert_eq!(db.last_common_l1().unwrap(), None);
    db.record_l1(&(0..=9).map(l1).collect::<Vec<_>>()).unwrap();
    for chain in [1, 2, 3] {
        db.add_chain(chain, ChainMode::Explicit).unwrap();
    }
    assert_eq!(db.last_common_l1().unwrap(), None, "no chain has an entry yet");
    db.record_derived(2, l1(7), l2(0)).unwrap();
    db.record_derived(1, l1(3), l2(0)).unwrap();
    db.record_derived(3, l1(9), l2(0)).unwrap();
    assert_eq!(db.last_common_l1().unwrap(), Some(l1(3)));
    db.record_derived(1, l1(4), l2(0)).unwrap();
    assert_eq!(db.last_common_l1().unwrap(), Some(l1(4)));
}

#[test]
fn rewind_chain_truncates_and_keeps_the_head() {
    let mut db = db_with_l1(0..=2);
    db.add_chain(1, ChainMode::FollowsL1).unwrap();
    db.record_derived_from_head(1, &[l2(5), l2(6), l2(7)]).unwrap();
    db.rewind_chain(1, 5).unwrap();
    assert_eq!(db.latest(1).unwrap(), Some(DerivedPair { source: l1(2), derived: l2(5) }));
    db.record_derived_from_head(1, &[block(2, 6, 1, 0)]).unwrap();
    db.rewind_chain(1, 4).unwrap();
    assert_eq!(db.latest(1).unwrap(), None);
    assert!(db.check().unwrap().is_ok());
    assert!(matches!(db.rewind_chain(9, 0), Err(StorageError::UnknownChain(9))));
}

#[test]
fn an_explicit_chain_rewinds_to_before_the_l1_block_of_the_newest_remaining_block() {
    let mut db = db_with_l1(0..=4);
    db.add_chain(1, ChainMode::Explicit).unwrap();
    // L1 1 derived L2 5; L1 2 derived 6 and 7; L1 3 and 4 derived nothing.
    let entries = [(l1(1), l2(5)), (l1(2), l2(5)), (l1(2), l2(6)), (l1(2), l2(7)), (l1(3), l2(7)), (l1(4), l2(7))];
    db.record_derived_batch(1, &entries).unwrap();
    // The node lost 7: everything derived from L1 2 goes, the head goes back to L1 1.
    db.rewind_chain(1, 6).unwrap();
    assert_eq!(db.latest(1).unwrap(), Some(DerivedPair { source: l1(1), derived: l2(5) }));
    assert!(db.check().unwrap().is_ok());
    // Re-derivation records L1 2 whole, with what the node derived from it now.
    db.record_derived_batch(1, &[(l1(2), l2(5)), (l1(2), l2(6)), (l1(3), l2(6))]).unwrap();
    assert_eq!(db.derived_from(1, 6).unwrap(), l1(2));
    assert_eq!(db.latest(1).unwrap(), Some(DerivedPair { source: l1(3), derived: l2(6) }));
    // Losing the first L1 block's blocks empties the log.
    db.rewind_chain(1, 5).unwrap();
    assert_eq!(db.latest(1).unwrap(), None);
    assert!(db.check().unwrap().is_ok());
}

#[test]
fn the_finalized_l2_block_is_the_newest_derived_at_or_below_the_finalized_l1_block() {
    let mut db = db_with_l1(0..=6);
    db.add_chain(1, ChainMode::Explicit).unwrap();
    assert_eq!(db.finalized_l2(1, 3).unwrap(), None, "empty log");
    db.record_derived_batch(1, &[(l1(2), l2(5)), (l1(3), l2(5)), (l1(3), l2(6)), (l1(4), l2(6)), (l1(4), l2(7))])
        .unwrap();
    assert_eq!(db.finalized_l2(1, 1).unwrap(), None, "before the log starts");
    assert_eq!(db.finalized_l2(1, 2).unwrap(), Some(l2(5)));
    assert_eq!(db.finalized_l2(1, 3).unwrap(), Some(l2(6)));
    assert_eq!(db.finalized_l2(1, 6).unwrap(), Some(l2(7)), "a log behind the finalized block");
}

#[test]
fn reopen_keeps_everything_and_schema_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
        db.record_l1(&(0..=3).map(l1).collect::<Vec<_>>()).unwrap();
        db.add_chain(4, ChainMode::FollowsL1).unwrap();
        db.record_derived_from_head(4, &[l2(1)]).unwrap();
        db.set_heads(None, Some(l1(1))).unwrap();
        snapshot(&db)
    };
    assert_eq!(snapshot(&when_unlocked(|| ChainsDb::open(dir.path()))), before);
    {
        let raw = when_unlocked(|| sled::open(dir.path()));
        raw.open_tree("meta").unwrap().insert("schema", &7u32.to_be_bytes()).unwrap();
        raw.flush().unwrap();
    }
    let err = when_unlocked(|| match ChainsDb::open(dir.path()) {
        Ok(_) => Ok(None),
        Err(e @ StorageError::UnsupportedSchema { .. }) => Ok(Some(e)),
        Err(e) => Err(e),
    })
    .expect("the schema version must be refused");
    assert!(matches!(err, StorageError::UnsupportedSchema { found: 7, supported: 1 }), "{err}");
}

#[test]
fn corrupt_rows_are_errors_and_check_names_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
        db.record_l1(&(0..=3).map(l1).collect::<Vec<_>>()).unwrap();
        db.add_chain(4, ChainMode::FollowsL1).unwrap();
        db.record_derived_from_head(4, &[l2(1), l2(2)]).unwrap();
    }
    {
        let raw = when_unlocked(|| sled::open(dir.path()));
        raw.open_tree("l1").unwrap().insert(2u64.to_be_bytes(), &[0u8; 5]).unwrap();
        raw.open_tree("l2/4").unwrap().insert(1u64.to_be_bytes(), &[9u8; 80][..]).unwrap();
        raw.flush().unwrap();
    }
    let db = when_unlocked(|| ChainsDb::open(dir.path()));
    assert!(matches!(db.l1_block(2), Err(StorageError::Corrupt { .. })));
    let report = db.check().unwrap();
    let text = report.problems.join("\n");
    assert!(text.contains("corrupt row in tree l1 at key 0x0000000000000002"), "{text}");
    assert!(text.contains("chain 4: L2 block 2 has parent"), "{text}");
}

#[test]
fn check_reports_broken_links() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
        db.record_l1(&(0..=3).map(l1).collect::<Vec<_>>()).unwrap();
    }
    {
        let raw = when_unlocked(|| sled::open(dir.path()));
        let mut bad = block(1, 2, 0, 9);
        bad.hash = h(1, 2, 0);
        raw.open_tree("l1").unwrap().insert(2u64.to_be_bytes(), &crate::codec::encode_l1(&bad)[..]).unwrap();
        raw.open_tree("l1").unwrap().remove(3u64.to_be_bytes()).unwrap();
        raw.open_tree("l1").unwrap().insert(5u64.to_be_bytes(), &crate::codec::encode_l1(&l1(5))[..]).unwrap();
        raw.flush().unwrap();
    }
    let report = when_unlocked(|| ChainsDb::open(dir.path())).check().unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(report.problems[0].starts_with("L1 block 2 has parent"));
    assert_eq!(report.problems[1], "L1 index has a gap: block 5 follows block 2");
}

// ---- property tests -------------------------------------------------------------------------

/// One operation against the database, with inputs drawn from a small world of two forks so
/// that valid and invalid writes both happen often.
#[derive(Clone, Debug)]
enum Op {
    L1 {
        delta: i8,
        fork: u8,
        parent_fork: u8,
        count: u8,
    },
    Derived {
        chain: u8,
        source_step: u8,
        delta: i8,
        fork: u8,
        parent_fork: u8,
    },
    FromHead {
        chain: u8,
        count: u8,
        fork: u8,
    },
    Finished {
        chain: u8,
        back: u8,
    },
    RewindL1 {
        back: u8,
    },
    RewindChain {
        chain: u8,
        back: u8,
    },
    /// The node's heads: `back` blocks below the tip (negative: above it), `fake` a hash the
    /// index does not have; `None` for no answer.
    Heads {
        safe: Option<(i8, bool)>,
        finalized: Option<(i8, bool)>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (-1i8..=2, 0u8..2, 0u8..2, 1u8..4).prop_map(|(delta, fork, parent_fork, count)| Op::L1 { delta, fork, parent_fork, count }),
        3 => (0u8..3, 0u8..3, -1i8..=2, 0u8..2, 0u8..2).prop_map(|(chain, source_step, delta, fork, parent_fork)| Op::Derived { chain, source_step, delta, fork, parent_fork }),
        3 => (0u8..3, 1u8..4, 0u8..2).prop_map(|(chain, count, fork)| Op::FromHead { chain, count, fork }),
        1 => (0u8..3, 0u8..2).prop_map(|(chain, back)| Op::Finished { chain, back }),
        1 => (0u8..6).prop_map(|back| Op::RewindL1 { back }),
        1 => (0u8..3, 0u8..4).prop_map(|(chain, back)| Op::RewindChain { chain, back }),
        3 => (proptest::option::of((-3i8..6, proptest::bool::weighted(0.2))), proptest::option::of((-3i8..6, proptest::bool::weighted(0.2))))
            .prop_map(|(safe, finalized)| Op::Heads { safe, finalized }),
    ]
}

fn apply(db: &mut ChainsDb, op: &Op) -> Result<()> {
    let l1_tip = db.latest_l1()?.map_or(0, |b| b.number);
    let back = |b: u8| l1_tip.saturating_sub(u64::from(b));
    let l1_at =
        |db: &ChainsDb, n: u64, fork: u8| Ok::<_, StorageError>(db.l1_block(n)?.unwrap_or(block(1, n, fork, fork)));
    let chain = |c: u8| u64::from(c) + 1;
    match *op {
        Op::L1 { delta, fork, parent_fork, count } => {
            let start = l1_tip.saturating_add_signed(i64::from(delta));
            let blocks: Vec<_> = (0..u64::from(count))
                .map(|i| block(1, start + i, fork, if i == 0 { parent_fork } else { fork }))
                .collect();
            db.record_l1(&blocks).map(|_| ())
        }
        Op::Derived { chain: c, source_step, delta, fork, parent_fork } => {
            let latest = db.latest(chain(c))?;
            let (s, d) = latest.map_or((l1_tip, 0), |p| (p.source.number, p.derived.number));
            let source = l1_at(db, s + u64::from(source_step), fork)?;
            let derived = block(2 + c, d.saturating_add_signed(i64::from(delta)), fork, parent_fork);
            db.record_derived(chain(c), source, derived).map(|_| ())
        }
        Op::FromHead { chain: c, count, fork } => {
            let next = db.latest(chain(c))?.map_or(0, |p| p.derived.number + 1);
            let parent_fork = db.latest(chain(c))?.map_or(fork, |p| p.derived.hash[1]);
            let blocks: Vec<_> = (0..u64::from(count))
                .map(|i| block(2 + c, next + i, fork, if i == 0 { parent_fork } else { fork }))
                .collect();
            db.record_derived_from_head(chain(c), &blocks).map(|_| ())
        }
        Op::Finished { chain: c, back: b } => {
            let head = db.chain_info(chain(c))?.1.unwrap_or(0);
            db.mark_finished(chain(c), head.saturating_sub(u64::from(b)))
        }
        Op::RewindL1 { back: b } => db.rewind_l1(back(b)),
        Op::RewindChain { chain: c, back: b } => {
            let last = db.latest(chain(c))?.map_or(0, |p| p.derived.number);
            db.rewind_chain(chain(c), last.saturating_sub(u64::from(b)))
        }
        Op::Heads { safe, finalized } => {
            let head = |db: &ChainsDb, h: Option<(i8, bool)>| -> Result<Option<BlockRef>> {
                let Some((back, fake)) = h else { return Ok(None) };
                let n = l1_tip.saturating_add_signed(-i64::from(back));
                Ok(Some(if fake { block(9, n, 9, 9) } else { l1_at(db, n, 0)? }))
            };
            let (safe, finalized) = (head(db, safe)?, head(db, finalized)?);
            db.set_heads(safe, finalized)
        }
    }
}

fn assert_log_invariant(db: &ChainsDb) {
    for chain in db.chains() {
        let log = db.log(chain).unwrap();
        for w in log.windows(2) {
            let (a, b) = (w[0], w[1]);
            let l1_step = b.source.number - a.source.number;
            let l2_step = b.derived.number - a.derived.number;
            assert_eq!(l1_step + l2_step, 1, "chain {chain}: {a:?} -> {b:?}");
            if l1_step == 1 {
                assert!(b.source.is_child_of(&a.source));
                assert_eq!(a.derived, b.derived);
            } else {
                assert!(b.derived.is_child_of(&a.derived));
                assert_eq!(a.source, b.source);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
        for chain in 1..=3 {
            let mode = if chain == 2 { ChainMode::Explicit } else { ChainMode::FollowsL1 };
            db.add_chain(chain, mode).unwrap();
        }
        let mut finalized = None;
        for op in &ops {
            let before = snapshot(&db);
            let result = apply(&mut db, op);
            if result.is_err() {
                prop_assert_eq!(&snapshot(&db), &before, "a rejected {:?} changed the database", op);
            }
            let report = db.check().unwrap();
            prop_assert!(report.is_ok(), "after {:?}: {:?}", op, report.problems);
            assert_log_invariant(&db);
            let heads = db.heads().unwrap();
            let now = heads.finalized.map(|b| b.number);
            prop_assert!(now >= finalized, "finality moved back after {:?}", op);
            finalized = now;
            // Never above the recorded head, always a recorded block, finalized <= safe.
            for head in [heads.safe, heads.finalized].into_iter().flatten() {
                prop_assert_eq!(db.l1_block(head.number).unwrap(), Some(head), "after {:?}", op);
            }
            prop_assert!(heads.finalized.map(|b| b.number) <= heads.safe.map(|b| b.number), "after {:?}", op);
            // Close and reopen: the same state.
            let state = snapshot(&db);
            drop(db);
            db = when_unlocked(|| ChainsDb::open(dir.path()));
            prop_assert_eq!(snapshot(&db), state);
        }
    }
}
