//! What survives a reopen: everything written, a checked schema version, corrupt rows named.

use super::*;

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
