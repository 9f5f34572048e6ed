//! Property tests: random operation sequences are applied to the database and to a plain
//! reference model (`model.rs`) of its rules. After every operation both agree on whether it was
//! allowed and on everything the public queries answer; no invariant breaks, a rejected write
//! changes nothing, and close + reopen gives the same state. The run also asserts that the
//! generator is meaningful: a good share of the operations is accepted, every kind at least once.

use std::{cell::RefCell, collections::BTreeMap};

use alloy::primitives::keccak256;
use proptest::{prelude::*, test_runner::TestRunner};

use super::{model::*, *};

const CHAINS: [(ChainId, ChainMode); 3] =
    [(1, ChainMode::FollowsL1), (2, ChainMode::Explicit), (3, ChainMode::FollowsL1)];

/// A block of the generated world. Its hash commits to its number, fork and parent, as a real
/// block's does: two blocks with one hash are one block.
fn mint(salt: u8, number: u64, fork: u8, parent_hash: B256) -> BlockRef {
    let mut preimage = vec![salt, fork];
    preimage.extend_from_slice(&number.to_be_bytes());
    preimage.extend_from_slice(parent_hash.as_slice());
    BlockRef { number, hash: keccak256(&preimage), parent_hash, timestamp: number.wrapping_mul(12) }
}

/// One operation, drawn so that most are what a correct writer sends and the rest are the
/// mistakes and lies the database must refuse: forks, gaps, repeats, both sides advancing, a
/// node's heads above the index or unknown to it.
#[derive(Clone, Debug)]
enum Op {
    /// L1 blocks from `tip + delta`; the first links to the block below it or (`!links`) to a
    /// block the index does not have.
    L1 {
        delta: i8,
        fork: u8,
        links: bool,
        count: u8,
    },
    /// One entry: source `head + source_step`, derived `last + delta`, linked to the block
    /// below it (or the same block for `delta` 0) or not.
    Derived {
        chain: ChainId,
        source_step: u8,
        delta: i8,
        fork: u8,
        links: bool,
    },
    /// L2 blocks after the last one, derived from the head (a chain that follows L1).
    FromHead {
        chain: ChainId,
        count: u8,
        fork: u8,
    },
    Finished {
        chain: ChainId,
        back: u8,
    },
    RewindL1 {
        back: u8,
    },
    RewindChain {
        chain: ChainId,
        back: u8,
    },
    /// The node's heads: `back` blocks below the tip (negative: above it, on the fork the index
    /// would grow on), `fake` a block the index does not have; `None` for no answer.
    Heads {
        safe: Option<(i8, bool)>,
        finalized: Option<(i8, bool)>,
    },
    Reopen,
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::L1 { .. } => "record_l1",
            Op::Derived { .. } => "record_derived",
            Op::FromHead { .. } => "record_derived_from_head",
            Op::Finished { .. } => "mark_finished",
            Op::RewindL1 { .. } => "rewind_l1",
            Op::RewindChain { .. } => "rewind_chain",
            Op::Heads { .. } => "set_heads",
            Op::Reopen => "reopen",
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let chain = prop_oneof![Just(1u64), Just(2), Just(3)];
    let links = proptest::bool::weighted(0.85);
    let head = proptest::option::weighted(0.7, (-3i8..6, proptest::bool::weighted(0.15)));
    prop_oneof![
        5 => (prop_oneof![1 => Just(-1i8), 2 => Just(0), 8 => Just(1), 1 => Just(2)], 0u8..2, links, 1u8..5)
            .prop_map(|(delta, fork, links, count)| Op::L1 { delta, fork, links, count }),
        4 => (chain.clone(), prop_oneof![
                4 => Just((0u8, 1i8)), 3 => Just((1, 0)), 1 => Just((0, 0)), 1 => Just((1, 1)),
                1 => Just((2, 0)), 1 => Just((0, 2)), 1 => Just((0, -1)),
            ], 0u8..2, links)
            .prop_map(|(chain, (source_step, delta), fork, links)| Op::Derived { chain, source_step, delta, fork, links }),
        3 => (chain.clone(), 1u8..4, 0u8..2).prop_map(|(chain, count, fork)| Op::FromHead { chain, count, fork }),
        2 => (chain.clone(), prop_oneof![3 => Just(0u8), 1 => Just(1)]).prop_map(|(chain, back)| Op::Finished { chain, back }),
        1 => (0u8..6).prop_map(|back| Op::RewindL1 { back }),
        2 => (chain, 0u8..4).prop_map(|(chain, back)| Op::RewindChain { chain, back }),
        3 => (head.clone(), head).prop_map(|(safe, finalized)| Op::Heads { safe, finalized }),
        1 => Just(Op::Reopen),
    ]
}

/// The concrete call for `op` in the state `model` describes (which the database must match).
fn resolve(model: &Model, op: &Op) -> Call {
    let tip = model.latest_l1();
    let tip_n = tip.map_or(0, |b| b.number);
    // The block recorded at `n`, else one of this world's blocks there that the index lacks.
    let l1_at = |n: u64| model.l1.get(&n).copied().unwrap_or_else(|| mint(1, n, 7, B256::ZERO));
    let parent_of = |n: u64, links: bool| match n.checked_sub(1).and_then(|p| model.l1.get(&p)) {
        Some(parent) if links => parent.hash,
        _ => B256::repeat_byte(0xee),
    };
    match *op {
        Op::L1 { delta, fork, links, count } => {
            let start = tip_n.saturating_add_signed(i64::from(delta));
            let mut parent = parent_of(start, links);
            let blocks = (0..u64::from(count))
                .map(|i| {
                    let b = mint(1, start + i, fork, parent);
                    parent = b.hash;
                    b
                })
                .collect();
            Call::RecordL1(blocks)
        }
        Op::Derived { chain, source_step, delta, fork, links } => {
            let c = &model.chains[&chain];
            let salt = 2 + chain as u8;
            let (source, derived) = match (c.head, c.rows.last_key_value()) {
                (Some(head), Some((_, (last, _)))) => {
                    let source = l1_at(head + u64::from(source_step));
                    let number = last.number.saturating_add_signed(i64::from(delta));
                    let derived = match c.rows.get(&number) {
                        Some((same, _)) if links => *same,
                        _ => {
                            let below = number.checked_sub(1).and_then(|p| c.rows.get(&p)).map(|(b, _)| b.hash);
                            let parent = below.filter(|_| links).unwrap_or(B256::repeat_byte(0xdd));
                            mint(salt, number, fork, parent)
                        }
                    };
                    (source, derived)
                }
                _ => (l1_at(tip_n.saturating_sub(u64::from(source_step))), mint(salt, 0, fork, B256::ZERO)),
            };
            Call::RecordDerived(chain, source, derived)
        }
        Op::FromHead { chain, count, fork } => {
            let last = model.chains[&chain].rows.last_key_value().map(|(_, (b, _))| *b);
            let (mut number, mut parent) = last.map_or((0, B256::ZERO), |b| (b.number + 1, b.hash));
            let blocks = (0..count)
                .map(|_| {
                    let b = mint(2 + chain as u8, number, fork, parent);
                    (number, parent) = (number + 1, b.hash);
                    b
                })
                .collect();
            Call::FromHead(chain, blocks)
        }
        Op::Finished { chain, back } => {
            let head = model.chains[&chain].head.unwrap_or(0);
            Call::MarkFinished(chain, head.saturating_sub(u64::from(back)))
        }
        Op::RewindL1 { back } => Call::RewindL1(tip_n.saturating_sub(u64::from(back))),
        Op::RewindChain { chain, back } => {
            let last = model.chains[&chain].rows.last_key_value().map_or(0, |(n, _)| *n);
            Call::RewindChain(chain, last.saturating_sub(u64::from(back)))
        }
        Op::Heads { safe, finalized } => {
            let head = |h: Option<(i8, bool)>| {
                let (back, fake) = h?;
                let n = tip_n.saturating_add_signed(-i64::from(back));
                Some(match (fake, model.l1.get(&n), tip) {
                    (true, ..) => mint(9, n, 9, B256::ZERO),
                    (false, Some(b), _) => *b,
                    // Above the index: the block the index gets there if it grows on fork 0.
                    (false, None, Some(tip)) if n > tip.number => {
                        (tip.number + 1..=n).fold(tip, |parent, k| mint(1, k, 0, parent.hash))
                    }
                    (false, None, _) => l1_at(n),
                })
            };
            Call::SetHeads(head(safe), head(finalized))
        }
        Op::Reopen => Call::Reopen,
    }
}

/// Runs `call` on the database (a reopen replaces it).
fn run(db: &mut ChainsDb, dir: &std::path::Path, call: &Call) -> Result<()> {
    match call {
        Call::RecordL1(blocks) => db.record_l1(blocks).map(drop),
        Call::RecordDerived(chain, source, derived) => db.record_derived(*chain, *source, *derived).map(drop),
        Call::FromHead(chain, blocks) => db.record_derived_from_head(*chain, blocks).map(drop),
        Call::MarkFinished(chain, number) => db.mark_finished(*chain, *number),
        Call::RewindL1(to) => db.rewind_l1(*to),
        Call::RewindChain(chain, to) => db.rewind_chain(*chain, *to),
        Call::SetHeads(safe, finalized) => db.set_heads(*safe, *finalized),
        Call::Reopen => {
            let before = snapshot(db);
            *db = ChainsDb::temporary()?;
            *db = when_unlocked(|| ChainsDb::open(dir));
            assert_eq!(snapshot(db), before, "close and reopen changed the state");
            Ok(())
        }
    }
}

/// The name of an error's variant, to compare with the model's answer.
fn kind(e: &StorageError) -> &'static str {
    match e {
        StorageError::EmptyChain(_) => "EmptyChain",
        StorageError::NotDerivedYet { .. } => "NotDerivedYet",
        StorageError::BeforeStart { .. } => "BeforeStart",
        _ => "other",
    }
}

/// Everything the public queries answer, from the database and from the model, must agree.
fn assert_matches(db: &ChainsDb, model: &Model, after: &Call) {
    let ctx = || format!("after {after:?}");
    assert_eq!(db.heads().unwrap(), model.heads(), "heads {}", ctx());
    assert_eq!(db.l1_range(0, u64::MAX).unwrap(), model.l1.values().copied().collect::<Vec<_>>(), "L1 {}", ctx());
    assert_eq!(db.first_l1().unwrap(), model.first_l1(), "{}", ctx());
    assert_eq!(db.l1_rows(), model.l1.len(), "{}", ctx());
    assert_eq!(db.held_heads(), model.held, "held heads {}", ctx());
    assert_eq!(db.identity(IdentityOf::L1).unwrap(), model.l1_identity, "L1 identity {}", ctx());
    assert_eq!(db.last_common_l1().unwrap(), model.last_common_l1(), "{}", ctx());
    assert_eq!(db.chains(), model.chains.keys().copied().collect::<Vec<_>>());
    let l1_window = match (model.first_l1(), model.latest_l1()) {
        (Some(first), Some(tip)) => first.number.saturating_sub(1)..=tip.number + 1,
        _ => 0..=2,
    };
    for (&chain, c) in &model.chains {
        assert_eq!(c.head.is_some(), !c.rows.is_empty(), "the model: chain {chain} has a head iff it has rows");
        assert_eq!(db.chain_info(chain).unwrap(), (c.mode, c.head), "chain {chain} {}", ctx());
        let rows: Vec<_> = c.rows.values().map(|(b, _)| *b).collect();
        assert_eq!(db.derived_range(chain, 0, u64::MAX).unwrap(), rows, "chain {chain} rows {}", ctx());
        assert_eq!(db.l2_rows(chain).unwrap(), rows.len());
        assert_eq!(db.first_derived(chain).unwrap(), rows.first().copied());
        assert_eq!(db.latest(chain).unwrap(), model.latest(chain), "chain {chain} latest {}", ctx());
        assert_eq!(db.log(chain).unwrap(), model.log(chain), "chain {chain} log {}", ctx());
        assert_eq!(db.identity(IdentityOf::L2(chain)).unwrap(), c.identity, "chain {chain} identity {}", ctx());
        for l1 in l1_window.clone() {
            let got = db.derived_at(chain, l1).map_err(|e| kind(&e));
            assert_eq!(got, model.derived_at(chain, l1), "chain {chain} derived_at {l1} {}", ctx());
            assert_eq!(db.finalized_l2(chain, l1).unwrap(), model.finalized_l2(chain, l1), "{}", ctx());
        }
        let l2_window = match (rows.first(), rows.last()) {
            (Some(first), Some(last)) => first.number.saturating_sub(1)..=last.number + 1,
            _ => 0..=1,
        };
        for l2 in l2_window {
            let got = db.derived_from(chain, l2).map_err(|e| kind(&e));
            assert_eq!(got, model.derived_from(chain, l2), "chain {chain} derived_from {l2} {}", ctx());
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

/// Per operation kind: how many were generated, accepted (`Ok`), and effective (accepted and
/// changed the state; a repeat or an empty rewind is accepted but not effective).
#[derive(Default)]
struct Tally(BTreeMap<&'static str, [u64; 3]>);

impl Tally {
    fn count(&mut self, op: &Op, accepted: bool, effective: bool) {
        let t = self.0.entry(op.kind()).or_default();
        t[0] += 1;
        t[1] += u64::from(accepted);
        t[2] += u64::from(effective);
    }
}

fn one_case(ops: &[Op], tally: &mut Tally) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = when_unlocked(|| ChainsDb::open(dir.path()));
    for (chain, mode) in CHAINS {
        db.add_chain(chain, mode).unwrap();
    }
    let mut model = Model::new(&CHAINS);
    assert_matches(&db, &model, &Call::Reopen);
    for op in ops {
        let call = resolve(&model, op);
        let before = (snapshot(&db), model.clone());
        let expected = model.apply(&call);
        let result = run(&mut db, dir.path(), &call);
        assert_eq!(
            result.is_ok(),
            expected.is_ok(),
            "the database and the model disagree on whether {call:?} ({op:?}) is allowed: database {result:?}, model {expected:?}"
        );
        if result.is_err() {
            assert_eq!(snapshot(&db), before.0, "a rejected {call:?} changed the database");
        }
        tally.count(op, result.is_ok(), model != before.1);
        assert_matches(&db, &model, &call);

        let report = db.check().unwrap();
        assert!(report.is_ok(), "after {call:?}: {:?}", report.problems);
        assert_log_invariant(&db);
        let heads = db.heads().unwrap();
        let finalized = before.1.finalized.map(|b| b.number);
        assert!(heads.finalized.map(|b| b.number) >= finalized, "finality moved back after {call:?}");
        // Never above the recorded head, always a recorded block, finalized <= safe.
        for head in [heads.safe, heads.finalized].into_iter().flatten() {
            assert_eq!(db.l1_block(head.number).unwrap(), Some(head), "after {call:?}");
        }
        assert!(heads.finalized.map(|b| b.number) <= heads.safe.map(|b| b.number), "after {call:?}");
    }
    // Whatever the sequence, what is on disk is what was served.
    run(&mut db, dir.path(), &Call::Reopen).unwrap();
    model.apply(&Call::Reopen).unwrap();
    assert_matches(&db, &model, &Call::Reopen);
}

#[test]
fn random_operations_keep_every_invariant_and_match_the_model() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64);
    let mut runner = TestRunner::new(ProptestConfig { cases, ..ProptestConfig::default() });
    let tally = RefCell::new(Tally::default());
    let outcome = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        one_case(&ops, &mut tally.borrow_mut());
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // The generator is meaningful: a database that refused everything would fail here.
    let tally = tally.into_inner();
    let mut lines = Vec::new();
    let (mut total, mut effective) = (0, 0);
    for (kind, [generated, accepted, changed]) in &tally.0 {
        lines.push(format!("{kind}: {generated} generated, {accepted} accepted, {changed} changed the state"));
        if *kind != "reopen" {
            total += generated;
            effective += changed;
            assert!(*changed > 0, "no {kind} ever changed the state:\n{}", lines.join("\n"));
        }
    }
    let share = effective as f64 / total as f64;
    eprintln!("{}\neffective share: {:.0} %", lines.join("\n"), share * 100.0);
    assert!(share >= 0.3, "only {:.0} % of the operations changed the state:\n{}", share * 100.0, lines.join("\n"));
    assert_eq!(tally.0.len(), 8, "every kind was generated: {:?}", tally.0.keys());
}
