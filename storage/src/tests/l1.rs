//! The L1 index: appends, the errors that write nothing, rewinds.

use super::*;

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
