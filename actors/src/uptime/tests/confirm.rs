//! After resumption: how the injector reads from the chain what landed and where, classifies
//! the outcome, retries, and waits when the node cannot tell yet.

use alloy::primitives::{Address, B256, TxKind, U256};
use rollup_supervisor_storage::OutageResult;

use super::{
    Fixture, GWEI, config,
    doubles::{Event, Mined, NONCE, SIGNER, World, deposit_tx, other_signer_tx, user_tx},
    status_of,
};
use crate::{
    metrics,
    rpc::RpcTx,
    uptime::{
        feed,
        injector::{Phase, ReportMode},
        pricing::replacement,
    },
};

/// The pooled pair, as a block would carry it.
fn pair(f: &Fixture) -> (RpcTx, RpcTx) {
    let w = f.r();
    (w.sent(NONCE), w.sent(NONCE + 1))
}

#[actix::test]
async fn a_pair_right_after_the_deposits_of_the_first_block_landed_first() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    let (down, up) = pair(&f);
    let block = f.w().mine(vec![
        Mined::ok(deposit_tx(), &[]),
        Mined::ok(down.clone(), &[1]),
        Mined::ok(up.clone(), &[0]),
        Mined::ok(user_tx(1), &[]),
    ]);
    f.resume().await;
    f.assert_injections(&["landed_first"]);
    let record = f.r().last_record();
    assert_eq!(record.result, OutageResult::Landed { first: true });
    assert_eq!(record.included_in, Some(block));
    assert_eq!(record.landed_txs, [down.hash, up.hash]);
    assert_eq!(record.up_ts, Some(status_of(&up.input).1), "the landed up timestamp");
    assert_eq!(f.injector.phase, Phase::Idle);
}

#[actix::test]
async fn a_pair_behind_another_transaction_landed_not_first() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    let (down, up) = pair(&f);
    f.w().mine(vec![Mined::ok(user_tx(1), &[]), Mined::ok(down, &[1]), Mined::ok(up, &[0])]);
    f.resume().await;
    f.assert_injections(&["landed_not_first"]);
    assert_eq!(f.r().last_record().result, OutageResult::Landed { first: false });
}

#[actix::test]
async fn a_down_update_the_feed_ignored_is_counted_as_ignored() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    let (down, up) = pair(&f);
    // The down update started no round (`UpdateIgnored`): only the up round is new.
    f.w().mine(vec![Mined::ok(down, &[]), Mined::ok(up, &[0])]);
    f.resume().await;
    f.assert_injections(&["ignored"]);
    assert_eq!(f.r().last_record().result, OutageResult::Landed { first: true });
}

#[actix::test]
async fn a_report_missing_from_the_first_block_is_failed_once_pushed_and_lands_later() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    f.w().mine(vec![Mined::ok(user_tx(1), &[])]);
    f.resume().await;
    f.assert_injections(&["failed"]);
    assert_eq!(f.injector.phase, Phase::Confirming);
    assert_eq!(f.r().last_record().result, OutageResult::Pending);
    assert_eq!(f.r().signed().len(), 2, "pushed as it is: the same nonces, the original down timestamp");
    f.tick().await;
    f.assert_injections(&["failed"]);
    let (down, up) = pair(&f);
    let block = f.w().mine(vec![Mined::ok(down, &[1]), Mined::ok(up, &[0])]);
    f.tick().await;
    f.assert_injections(&["failed", "landed_not_first"]);
    let record = f.r().last_record();
    assert_eq!((record.result, record.included_in), (OutageResult::Landed { first: false }, Some(block)));
}

#[actix::test]
async fn a_feed_reported_by_another_sender_stands_down_and_takes_the_pooled_pair_back() {
    let mut f = Fixture::pair(2).await;
    f.stall().await;
    f.w().reported_by_another_sender();
    f.w().mine(vec![Mined::ok(user_tx(1), &[])]);
    f.resume().await;
    f.assert_injections(&["already_reported"]);
    assert_eq!(f.r().last_record().result, OutageResult::AlreadyReported);
    // Each pooled nonce is replaced by a 0-value transfer to the signer, over the pools' bump.
    let w = f.r();
    let cancels = &w.signed()[2..];
    assert_eq!(cancels.len(), 2);
    for (slot, tx) in cancels.iter().enumerate() {
        assert_eq!(tx.nonce, NONCE + slot as u64);
        assert_eq!((tx.to, tx.value, tx.gas_limit, tx.input.len()), (TxKind::Call(SIGNER), U256::ZERO, 21_000, 0));
        assert_eq!((tx.max_fee_per_gas, tx.max_priority_fee_per_gas), (replacement(GWEI, 10), replacement(GWEI, 10)));
    }
    assert!(w.submitted()[2..].iter().all(|(.., to)| to == &[0, 1]), "to every endpoint");
}

#[actix::test]
async fn another_transaction_of_the_signer_on_the_nonce_is_failed_and_retried_with_fresh_nonces() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    let down_ts = f.r().down_ts();
    f.w().mine(vec![Mined::ok(other_signer_tx(NONCE), &[]), Mined::ok(other_signer_tx(NONCE + 1), &[])]);
    f.resume().await;
    f.assert_injections(&["failed"]);
    let w = f.r();
    // The spent nonces are journaled as cleared before anything is signed again.
    let spent = w.events.iter().rposition(|e| matches!(e, Event::Submitted { tx, .. } if tx.nonce < NONCE + 2));
    let cleared = w.events.iter().rposition(|e| matches!(e, Event::Journaled(r) if r.nonce.is_none()));
    let resigned = w.events.iter().position(|e| matches!(e, Event::Signed(tx) if tx.nonce == NONCE + 2));
    assert!(spent.is_some() && spent < cleared && cleared < resigned, "{spent:?} < {cleared:?} < {resigned:?}");
    let signed = w.signed();
    assert_eq!(signed[2..].iter().map(|t| t.nonce).collect::<Vec<_>>(), [NONCE + 2, NONCE + 3]);
    assert_eq!(status_of(&signed[2].input), (true, down_ts), "the original down timestamp");
    assert_eq!(w.last_record().nonce, Some(NONCE + 2));
    drop(w);
    assert_eq!(f.value(&metrics::PAIRS_SUBMITTED), 2.0, "once per retry");
}

#[actix::test]
async fn a_reverted_report_is_retried_and_given_up_after_max_reverts() {
    let mut cfg = config(ReportMode::Pair);
    cfg.max_reverts = 2;
    let mut f = Fixture::start(World::new(1), cfg).await;
    f.stall().await;
    let (down, up) = pair(&f);
    f.w().mine(vec![Mined::reverted(down), Mined::reverted(up)]);
    f.resume().await;
    assert_eq!(f.value(&metrics::REPORT_REVERTS), 1.0);
    f.assert_injections(&["failed"]);
    let record = f.r().last_record();
    assert_eq!((record.reverts, record.nonce, record.result), (1, Some(NONCE + 2), OutageResult::Pending));

    let (down, up) = (f.r().sent(NONCE + 2), f.r().sent(NONCE + 3));
    let block = f.w().mine(vec![Mined::reverted(down), Mined::reverted(up)]);
    f.tick().await;
    assert_eq!(f.value(&metrics::REPORT_REVERTS), 2.0);
    f.assert_injections(&["failed", "gave_up"]);
    let record = f.r().last_record();
    assert_eq!(record.result, OutageResult::Failed { reason: "the report reverted 2 times".into() });
    assert_eq!(record.included_in, Some(block));
    assert_eq!(f.injector.phase, Phase::Idle);
    assert_eq!(f.r().signed().len(), 4, "nothing more is sent");
}

#[actix::test]
async fn a_landing_far_after_the_gap_is_found_by_binary_search_on_the_signers_nonce() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    // Another signature of the same report landed (its hash was never journaled: a crash
    // between signing and the node's answer), 500 blocks after the gap.
    let (down, up) = pair(&f);
    let (down, up) = (RpcTx { hash: B256::repeat_byte(0xd1), ..down }, RpcTx { hash: B256::repeat_byte(0xd2), ..up });
    f.w().skip(499);
    let block = f.w().mine(vec![Mined::ok(down.clone(), &[1]), Mined::ok(up.clone(), &[0])]);
    f.w().skip(400);
    f.resume().await;
    f.assert_injections(&["landed_not_first"]);
    let record = f.r().last_record();
    assert_eq!((record.included_in, record.landed_txs), (Some(block), vec![down.hash, up.hash]));
    let asked = f.r().nonce_asked.clone();
    // Per nonce: the head, then halving (100, 1000]: at most 1 + ⌈log2 900⌉ reads.
    assert!(asked.len() <= 2 * 11, "{} reads: {asked:?}", asked.len());
    assert!(asked.contains(&(block - 1)) && asked.contains(&block), "the boundary was read: {asked:?}");
}

#[actix::test]
async fn a_node_that_cannot_tell_yet_is_asked_again_and_nothing_is_decided_meanwhile() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    let (down, up) = pair(&f);
    f.w().mine(vec![Mined::ok(down, &[1]), Mined::ok(up, &[0])]);
    // A lagging replica: its count says mined, but it has neither the history nor the receipts.
    f.w().hide_nonce_history = true;
    f.w().hide_receipts = true;
    f.resume().await;
    let undecided = |f: &Fixture| {
        f.assert_injections(&[]);
        assert_eq!(f.injector.phase, Phase::Confirming);
        assert_eq!(f.r().last_record().result, OutageResult::Pending);
        assert_eq!(f.r().signed().len(), 2, "no second report");
    };
    undecided(&f);
    // The history is there, the receipts still are not.
    f.w().hide_nonce_history = false;
    f.tick().await;
    undecided(&f);
    f.w().hide_receipts = false;
    f.tick().await;
    f.assert_injections(&["landed_first"]);
}

#[actix::test]
async fn reporter_mode_lands_one_transaction_whose_up_time_is_the_blocks_own() {
    let reporter = Address::repeat_byte(0x4e);
    let mut world = World::new(1);
    world.roles.insert(reporter);
    world.reporters.insert(reporter, (super::doubles::FEED, true));
    let mut f = Fixture::start(world, config(ReportMode::Reporter(reporter))).await;
    f.stall().await;
    let down_ts = f.r().down_ts();
    let signed = f.r().signed();
    assert_eq!(signed.len(), 1);
    assert_eq!((signed[0].to, &signed[0].input), (TxKind::Call(reporter), &feed::report(down_ts)));
    let report = f.r().sent(NONCE);
    let block = f.w().mine(vec![Mined::ok(report, &[1, 0])]);
    f.resume().await;
    f.assert_injections(&["landed_first"]);
    let up_ts = f.r().block_ref(block).timestamp;
    assert_eq!(f.r().last_record().up_ts, Some(up_ts));
}
