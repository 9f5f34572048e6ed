//! Property tests: random operation sequences never break an invariant, a rejected write changes
//! nothing, and close + reopen gives the same state.

use proptest::prelude::*;

use super::*;

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
