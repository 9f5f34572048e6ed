//! The derivation logs: appends, the errors that write nothing, queries, rewinds.

use super::*;

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
