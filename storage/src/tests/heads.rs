//! The safe and finalized heads: only recorded blocks, held above the index, repaired on open.

use super::*;

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
