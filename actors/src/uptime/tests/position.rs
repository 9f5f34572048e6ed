//! While the chain is stalled: what the injector signs, at which price, what it journals first,
//! where it submits, and what it counts.

use alloy::primitives::{B256, TxKind, U256};
use rollup_supervisor_storage::{BlockRef, OutageRecord, OutageResult};

use super::{
    CAP, Fixture, GWEI, config,
    doubles::{Event, FEED, LAST, Mined, NONCE, SIGNER, World, other_signer_tx, user_tx},
    status_of,
};
use crate::{
    metrics,
    uptime::{
        injector::{InjectError, Phase, ReportMode},
        pricing::replacement,
        submit::Submitted,
    },
};

#[actix::test]
async fn a_quiet_pool_gets_the_floor_journaled_before_each_submission_to_every_endpoint() {
    let mut f = Fixture::pair(2).await;
    f.stall().await;
    {
        let w = f.r();
        let signed = w.signed();
        assert_eq!(signed.len(), 2, "the down and the up transaction");
        for (slot, tx) in signed.iter().enumerate() {
            assert_eq!(tx.nonce, NONCE + slot as u64, "the signer's mined count, then the next");
            assert_eq!((tx.max_fee_per_gas, tx.max_priority_fee_per_gas), (GWEI, GWEI), "the floor, tip = max fee");
            assert_eq!((tx.chain_id, tx.gas_limit, tx.to, tx.value), (10, 100_000, TxKind::Call(FEED), U256::ZERO));
        }
        assert_eq!(status_of(&signed[0].input), (true, w.down_ts()), "down since the last block");
        let (down, up_ts) = status_of(&signed[1].input);
        assert!(!down && up_ts > w.down_ts(), "up at the wall clock");

        // Write-ahead: the record journaled last before a submission holds its price as signed and
        // the slot as not yet pooled, so a crash during the submission resumes above it.
        let mut last_journaled: Option<&OutageRecord> = None;
        let mut submissions = 0;
        for event in &w.events {
            match event {
                Event::Journaled(r) => last_journaled = Some(r),
                Event::Submitted { tx, to, .. } => {
                    let slot = (tx.nonce - NONCE) as usize;
                    let r = last_journaled.expect("journaled before submitted");
                    assert_eq!(r.signed_fees[slot], tx.max_fee_per_gas);
                    assert!(r.txs[slot].is_none());
                    assert_eq!(to, &[0, 1], "to every endpoint");
                    submissions += 1;
                }
                Event::Signed(_) => {}
            }
        }
        assert_eq!(submissions, 2);
        let record = w.last_record();
        assert_eq!(
            (record.nonce, record.up_ts, record.result.clone()),
            (Some(NONCE), Some(up_ts), OutageResult::Pending)
        );
        assert!(record.fully_pooled(2));
        assert_eq!(record.signed_fees, [GWEI, GWEI]);
    }
    assert_eq!(f.value(&metrics::OUTAGES), 1.0);
    assert_eq!(f.value(&metrics::PAIRS_SUBMITTED), 1.0);
    assert_eq!(f.value(&metrics::REPORT_PRICE), GWEI as f64);
    for endpoint in ["rpc", "submit_0"] {
        assert_eq!(f.at(&metrics::SUBMISSIONS, endpoint, Some(("result", "accepted"))), 2.0);
    }

    // Nothing changed: the next check signs and sends nothing (both pools still hold it).
    f.tick().await;
    assert_eq!((f.r().signed().len(), f.r().submitted().len()), (2, 2));
}

#[actix::test]
async fn a_base_fee_above_half_the_floor_is_paid_twice() {
    let mut world = World::new(1);
    world.base_fee = Some(3 * GWEI);
    let mut f = Fixture::start(world, config(ReportMode::Pair)).await;
    f.stall().await;
    assert!(f.r().signed().iter().all(|tx| tx.max_fee_per_gas == 6 * GWEI));
}

#[actix::test]
async fn a_competitor_is_outbid_by_the_margin_and_an_overtaking_one_reprices_the_report_once() {
    let mut f = Fixture::pair(1).await;
    // The user: 80 gwei max fee, 40 gwei tip.
    f.w().compete(80 * GWEI, 40 * GWEI);
    f.stall().await;
    assert!(f.r().signed().iter().all(|tx| tx.max_fee_per_gas == 96 * GWEI), "80 gwei + 20 %");
    assert_eq!(f.value(&metrics::REPORT_REPRICED), 0.0);

    // A newcomer ties our max fee: both transactions are re-signed above it (the margin beats
    // the pools' bump here), and the repricing is counted once for the pair.
    f.w().compete(96 * GWEI, 1);
    f.tick().await;
    let signed = f.r().signed();
    assert_eq!(signed.len(), 4);
    assert_eq!(
        signed[2..].iter().map(|t| (t.nonce, t.max_fee_per_gas)).collect::<Vec<_>>(),
        [(NONCE, 115_200_000_000), (NONCE + 1, 115_200_000_000)]
    );
    assert_eq!(f.value(&metrics::REPORT_REPRICED), 1.0);
    assert_eq!(f.r().last_record().signed_fees, [115_200_000_000, 115_200_000_000]);
}

#[actix::test]
async fn a_replacement_pays_the_bump_over_the_highest_fee_signed_when_the_margin_is_smaller() {
    let mut cfg = config(ReportMode::Pair);
    cfg.rules.margin_percent = 5;
    let mut f = Fixture::start(World::new(1), cfg).await;
    f.w().compete(80 * GWEI, 0);
    f.stall().await;
    assert!(f.r().signed().iter().all(|tx| tx.max_fee_per_gas == 84 * GWEI));
    // Overtaken: 5 % above the newcomer (88.2 gwei) would not replace ours in a production
    // pool; 84 × 110 / 100 + 1 does.
    f.w().compete(84 * GWEI, 0);
    f.tick().await;
    let fees: Vec<u128> = f.r().signed()[2..].iter().map(|t| t.max_fee_per_gas).collect();
    assert_eq!(fees, [92_400_000_001, 92_400_000_001]);
    assert_eq!(replacement(84 * GWEI, 10), 92_400_000_001);
}

#[actix::test]
async fn a_refusal_as_underpriced_is_outbid_next_and_a_refusal_by_every_node_costs_no_fee_growth() {
    let mut f = Fixture::pair(1).await;
    // A pricier transaction of ours holds the down nonce (a twin instance): refused.
    f.w().answers.push_back(vec![Submitted::Underpriced]);
    f.stall().await;
    let record = f.r().last_record();
    assert!(record.txs[0].is_none() && record.txs[1].is_some(), "the up transaction went on");
    assert_eq!(record.signed_fees, [GWEI, GWEI], "the refused price stays the highest signed");
    assert_eq!(f.value(&metrics::SUBMIT_ERRORS), 1.0);
    f.tick().await;
    let signed = f.r().signed();
    assert_eq!((signed[2].nonce, signed[2].max_fee_per_gas), (NONCE, replacement(GWEI, 10)));
    assert_eq!(signed.len(), 3, "the pooled up transaction is kept");

    // Every node down for the down transaction: nothing pooled, so the same price is signed again
    // at the next check, and the up transaction waits for it.
    let mut f = Fixture::pair(1).await;
    f.w().refusing.insert(0);
    f.stall().await;
    assert_eq!(f.r().signed().len(), 1);
    assert_eq!(f.r().last_record().signed_fees, [0, 0]);
    f.w().refusing.clear();
    f.tick().await;
    let fees: Vec<(u64, u128)> = f.r().signed().iter().map(|t| (t.nonce, t.max_fee_per_gas)).collect();
    assert_eq!(fees, [(NONCE, GWEI), (NONCE, GWEI), (NONCE + 1, GWEI)]);
    assert!(f.r().last_record().fully_pooled(2));
}

#[actix::test]
async fn a_restart_after_signing_resumes_at_the_same_nonces_above_the_journaled_fees() {
    let mut world = World::new(1);
    // Killed after journaling a 50 gwei signature, before any node's answer was journaled.
    journal_signed_pair(&mut world, [50 * GWEI, 50 * GWEI]);
    let mut f = Fixture::start(world, config(ReportMode::Pair)).await;
    assert_eq!(f.injector.phase, Phase::Confirming, "picked up from the journal");
    f.stall().await;
    let signed: Vec<(u64, u128)> = f.r().signed().iter().map(|t| (t.nonce, t.max_fee_per_gas)).collect();
    assert_eq!(signed, [(NONCE, 55_000_000_001), (NONCE + 1, 55_000_000_001)]);
    assert_eq!(f.value(&metrics::OUTAGES), 0.0, "the same outage, not a new one");
}

#[actix::test]
async fn at_the_fee_cap_the_report_stays_there_and_outbid_and_cap_are_counted_once_per_outage() {
    // A competitor below the cap but above it with the margin: priced at the cap, not outbid.
    let mut f = Fixture::pair(1).await;
    f.w().compete(900 * GWEI, 0);
    f.stall().await;
    assert!(f.r().signed().iter().all(|tx| tx.max_fee_per_gas == CAP));
    assert_eq!(f.value(&metrics::REPORT_OUTBID), 0.0);

    let mut f = Fixture::pair(1).await;
    f.w().compete(CAP, CAP);
    f.stall().await;
    assert!(f.r().signed().iter().all(|tx| tx.max_fee_per_gas == CAP), "never above the cap");
    assert!(f.r().last_record().outbid_at_cap);
    // Overtaken at the cap: a replacement would exceed it, so what is pooled is kept.
    for _ in 0..3 {
        f.tick().await;
    }
    assert_eq!(f.r().signed().len(), 2);
    assert_eq!(f.value(&metrics::REPORT_OUTBID), 1.0);
    assert_eq!(f.value(&metrics::FEE_CAP_REACHED), 1.0);
    assert!(f.r().last_record().fee_cap_reached);
}

#[actix::test]
async fn a_due_refresh_re_signs_only_the_up_transaction_with_a_fresh_timestamp() {
    let mut f = Fixture::pair(1).await;
    f.stall().await;
    let first = f.r().last_record();
    // The pooled up timestamp is 300 s old; an outage of ~1000 s allows 100 s.
    let old = f.r().down_ts() + 700;
    if let Some(o) = f.injector.outage.as_mut()
        && let Some(up) = o.txs[1].as_mut()
    {
        up.up_ts = Some(old);
    }
    f.tick().await;
    let signed = f.r().signed();
    assert_eq!(signed.len(), 3);
    assert_eq!((signed[2].nonce, signed[2].max_fee_per_gas), (NONCE + 1, replacement(GWEI, 10)));
    let (down, fresh) = status_of(&signed[2].input);
    assert!(!down && fresh > old + 200);
    let record = f.r().last_record();
    assert_eq!(record.txs[0], first.txs[0], "the down transaction is kept");
    assert_eq!(record.up_ts, Some(fresh));
    assert_eq!(f.value(&metrics::PAIR_REFRESHES), 1.0);
    assert_eq!(f.value(&metrics::REPORT_REPRICED), 0.0);
}

#[actix::test]
async fn a_pool_that_lost_the_report_gets_the_same_bytes_again_and_is_counted() {
    let mut f = Fixture::pair(2).await;
    f.stall().await;
    let before = f.r().submitted();
    // `submit_0` restarted with an empty pool.
    f.w().pooled[1].clear();
    f.tick().await;
    let after = f.r().submitted();
    assert_eq!(after.len(), 4);
    for (again, first) in after[2..].iter().zip(&before) {
        assert_eq!((again.1, &again.2), (first.1, &vec![1]), "the same transaction, to that endpoint only");
    }
    assert_eq!(f.r().signed().len(), 2, "nothing re-signed");
    assert_eq!(f.at(&metrics::POOL_LOST, "submit_0", None), 2.0);
    assert_eq!(f.at(&metrics::POOL_LOST, "rpc", None), 0.0);
}

#[actix::test]
async fn a_balance_short_of_the_price_signs_what_it_covers_and_nothing_below_the_floor() {
    let mut f = Fixture::pair(1).await;
    f.w().compete(80 * GWEI, 40 * GWEI);
    f.w().balance = U256::from(100_000 * 2 * 3 * GWEI);
    f.stall().await;
    assert!(f.r().signed().iter().all(|tx| tx.max_fee_per_gas == 3 * GWEI), "what the balance covers");
    assert_eq!(f.value(&metrics::SIGNER_UNFUNDED), 1.0);

    let mut f = Fixture::pair(1).await;
    f.w().balance = U256::from(100_000 * GWEI);
    let last = f.last_block();
    let answer = f.injector.on_forced(last).await;
    assert!(f.r().signed().is_empty(), "half the floor each: nothing signed");
    assert!(answer.expect_err("not pre-positioned").contains("holds 100000000000000 wei"));
    f.w().balance = U256::from(10u128.pow(20));
    f.tick().await;
    assert_eq!(f.r().signed().len(), 2, "funded: injected at the next check");
    assert_eq!(f.value(&metrics::SIGNER_UNFUNDED), 0.0);
}

#[actix::test]
async fn a_feed_that_already_shows_the_outage_gets_nothing() {
    let mut f = Fixture::pair(1).await;
    f.w().reported_by_another_sender();
    f.stall().await;
    assert!(f.r().signed().is_empty());
    assert_eq!(f.r().last_record().result, OutageResult::AlreadyReported);
    assert_eq!(f.injector.phase, Phase::Idle);
    f.assert_injections(&["already_reported"]);
}

#[actix::test]
async fn a_missing_role_blocks_the_report_until_it_is_granted() {
    let mut world = World::new(1);
    world.roles.clear();
    let mut f = Fixture::start(world, config(ReportMode::Pair)).await;
    assert_eq!(f.value(&metrics::SIGNER_MISSING_ROLE), 1.0);
    let last = f.last_block();
    let answer = f.injector.on_forced(last).await.expect_err("refused");
    assert!(answer.contains("lacks FEED_UPDATER_ROLE"), "{answer}");
    assert!(f.r().signed().is_empty());
    f.w().roles.insert(SIGNER);
    f.tick().await;
    assert_eq!(f.r().signed().len(), 2);
    assert_eq!(f.value(&metrics::SIGNER_MISSING_ROLE), 0.0);

    let mut world = World::new(1);
    world.chain_id = 11;
    let mut f = Fixture::start(world, config(ReportMode::Pair)).await;
    f.stall().await;
    assert!(f.r().signed().is_empty());
    assert_eq!(f.value(&metrics::WRONG_CHAIN), 1.0);
}

#[actix::test]
async fn a_signer_down_fails_the_check_and_the_next_check_signs() {
    let mut f = Fixture::pair(1).await;
    f.w().signer_down = true;
    let last = f.last_block();
    let err = f.injector.on_stalled(last).await.expect_err("the signer is down");
    assert!(matches!(err, InjectError::Sign(_)), "{err}");
    assert!(f.r().submitted().is_empty());
    assert!(f.r().last_record().signed_fees.is_empty(), "nothing signed, nothing journaled as signed");
    f.w().signer_down = false;
    f.tick().await;
    assert!(f.r().last_record().fully_pooled(2));
}

#[actix::test]
async fn a_node_down_fails_the_check_and_the_next_check_injects() {
    let mut f = Fixture::pair(1).await;
    f.w().down = true;
    let last = f.last_block();
    let err = f.injector.on_stalled(last).await.expect_err("the node is down");
    assert!(matches!(err, InjectError::Rpc(_)), "{err}");
    assert!(f.r().signed().is_empty());
    assert_eq!(f.value(&metrics::OUTAGES), 1.0, "the outage is journaled and counted all the same");
    f.w().down = false;
    f.tick().await;
    assert!(f.r().last_record().fully_pooled(2));
}

/// The first outage's report, pushed to 96 gwei by a user, is pooled; the sequencer makes one
/// block without it (the user's transaction only): the report is still in the pool, at the
/// nonces the next report takes. The new last block, for the next stall.
async fn a_superseded_report_still_pooled(f: &mut Fixture) -> BlockRef {
    f.w().compete(80 * GWEI, 40 * GWEI);
    f.stall().await;
    assert!(f.r().last_record().fully_pooled(2));
    f.w().compete(0, 0);
    let block = f.w().mine(vec![Mined::ok(user_tx(1), &[])]);
    f.resume().await;
    f.r().block_ref(block)
}

#[actix::test]
async fn a_new_outage_before_the_last_report_landed_is_signed_above_it_and_pooled_at_the_first_check() {
    let mut f = Fixture::pair(1).await;
    let last = a_superseded_report_still_pooled(&mut f).await;
    f.injector.on_stalled(last).await.expect("stalled again");

    assert_eq!(f.r().last_record().down_ts(), last.timestamp, "the new outage");
    // A production pool replaces the old report only for a 10 % bump on its fees: the first
    // check's signatures pay it, so the new report is pooled at once, not a check later.
    assert_signed_above_the_superseded(&f);
    let w = f.r();
    let old = &w.journal.iter().rev().find(|r| r.down_ts() == w.down_ts()).expect("the first outage");
    assert!(matches!(old.result, OutageResult::Failed { .. }), "{:?}", old.result);
}

/// [`a_superseded_report_still_pooled`], and the new report's first signature fails (the
/// signer is down, then back). The new outage's last block.
async fn superseded_while_the_signer_is_down(f: &mut Fixture) -> BlockRef {
    let last = a_superseded_report_still_pooled(f).await;
    f.w().signer_down = true;
    f.injector.on_stalled(last).await.expect_err("the signer is down");
    f.w().signer_down = false;
    assert!(f.r().last_record().superseded.is_some(), "the superseded report is journaled with the outage");
    last
}

/// The new report was signed, once, above the superseded one at both nonces, and is pooled.
fn assert_signed_above_the_superseded(f: &Fixture) {
    let w = f.r();
    let new: Vec<(u64, u128)> = w.signed()[2..].iter().map(|t| (t.nonce, t.max_fee_per_gas)).collect();
    assert_eq!(new, [(NONCE, replacement(96 * GWEI, 10)), (NONCE + 1, replacement(96 * GWEI, 10))]);
    let record = w.last_record();
    assert!(record.fully_pooled(2), "pooled at the first check that signs: {record:?}");
    assert_eq!(record.superseded, None, "taken into the signed fees");
}

#[actix::test]
async fn a_superseding_report_whose_first_signature_failed_still_signs_above_the_old_one() {
    let mut f = Fixture::pair(1).await;
    superseded_while_the_signer_is_down(&mut f).await;
    f.tick().await;
    assert_signed_above_the_superseded(&f);
}

#[actix::test]
async fn a_report_superseded_before_it_chose_its_nonces_passes_the_old_fees_on() {
    let mut f = Fixture::pair(1).await;
    superseded_while_the_signer_is_down(&mut f).await;
    // Another block without a report, and a third outage, before the second report was signed:
    // the first report is still pooled at the nonces the third one takes.
    let block = f.w().mine(vec![Mined::ok(user_tx(2), &[])]);
    let last = f.r().block_ref(block);
    f.injector.on_stalled(last).await.expect("the third outage");
    assert_eq!(f.r().last_record().down_ts(), last.timestamp, "the third outage");
    assert_signed_above_the_superseded(&f);
}

#[actix::test]
async fn an_outage_that_begins_while_the_journal_cannot_be_written_is_reported_once_it_can() {
    let mut f = Fixture::pair(1).await;
    f.w().journal_down = true;
    let last = f.last_block();
    let err = f.injector.on_stalled(last).await.expect_err("the journal refuses");
    assert!(matches!(err, InjectError::Journal(_)), "{err}");
    f.injector.tick().await.expect_err("the journal still refuses");
    assert!(f.r().submitted().is_empty(), "nothing submitted that the journal does not hold");
    // The stall is said once: the checks go on from memory once the journal takes writes.
    f.w().journal_down = false;
    f.tick().await;
    let record = f.r().last_record();
    assert_eq!(record.down_ts(), last.timestamp);
    assert!(record.fully_pooled(2), "{record:?}");
    assert_eq!(f.value(&metrics::OUTAGES), 1.0);
}

#[actix::test]
async fn a_new_outage_while_the_journal_cannot_be_written_still_supersedes_and_signs_above_the_old_report() {
    let mut f = Fixture::pair(1).await;
    let last = a_superseded_report_still_pooled(&mut f).await;
    f.w().journal_down = true;
    f.injector.on_stalled(last).await.expect_err("the journal refuses");
    f.w().journal_down = false;
    f.tick().await;
    assert_eq!(f.r().last_record().down_ts(), last.timestamp, "the new outage");
    assert_signed_above_the_superseded(&f);
}

#[actix::test]
async fn a_restart_before_a_superseding_report_is_signed_still_signs_above_the_old_one() {
    let mut f = Fixture::pair(1).await;
    let last = superseded_while_the_signer_is_down(&mut f).await;
    let mut f = f.restart().await;
    f.injector.on_stalled(last).await.expect("still stalled after the restart");
    assert_signed_above_the_superseded(&f);
}

#[actix::test]
async fn a_superseding_report_pays_the_bump_over_what_was_signed_for_each_nonce_it_takes() {
    let mut world = World::new(1);
    // An unfinished outage: its down transaction signed at 50 gwei, its up transaction
    // refreshed up to 80 gwei, both still pooled.
    journal_signed_pair(&mut world, [50 * GWEI, 80 * GWEI]);
    for (slot, fee) in [(0u64, 50 * GWEI), (1, 80 * GWEI)] {
        let hash = B256::repeat_byte(0x50 + slot as u8);
        world.pooled[0].insert(hash);
        world.by_nonce[0].insert(NONCE + slot, (hash, fee, fee));
    }
    let mut f = Fixture::start(world, config(ReportMode::Pair)).await;
    // The sequencer makes one block, with another transaction of the signer at the down nonce,
    // and stalls again: the new report takes the next nonces, the first still held at 80 gwei.
    let block = f.w().mine(vec![Mined::ok(other_signer_tx(NONCE), &[])]);
    let last = f.r().block_ref(block);
    f.injector.on_stalled(last).await.expect("stalled again");

    let signed: Vec<(u64, u128)> = f.r().signed().iter().map(|t| (t.nonce, t.max_fee_per_gas)).collect();
    assert_eq!(
        signed,
        [(NONCE + 1, replacement(80 * GWEI, 10)), (NONCE + 2, GWEI)],
        "per nonce, not the highest for all"
    );
    assert!(f.r().last_record().fully_pooled(2), "pooled at the first check");
}

/// Journals an unfinished pair-mode outage after [`LAST`], signed at `fees` from [`NONCE`] on,
/// with no node's answer journaled.
fn journal_signed_pair(world: &mut World, fees: [u128; 2]) {
    let mut record = OutageRecord::new(10, world.block_ref(LAST));
    record.nonce = Some(NONCE);
    record.txs = vec![None, None];
    record.signed_fees = fees.to_vec();
    world.journal.push(record);
}
