//! The uptime flow under crashes, revoked permissions and users outbidding the report, end to
//! end with the real binary against a real anvil L2 (see `uptime.rs` for the fixture).
//!
//! Default fee settings throughout (`max_fee_per_gas_wei`, `fee_cap_wei`, `fee_bump_percent`,
//! `outbid_margin_percent` are never set); the fixture's settings come from `uptime.rs`.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256, keccak256};
use anyhow::{Context as _, Result, ensure};
use rollup_supervisor_actors::uptime::feed::{self, FEED_UPDATER_ROLE};
use serde_json::{Value, json};

use crate::{
    harness::{wait_for, wait_until_unix_second},
    supervisor::{Supervisor, hex_u64},
    uptime::{
        CHAIN, Fixture, MAX_AGE, WAIT, assert_pair_first_fresh, assert_report_first, block_after_gap, wait_landed_first,
    },
};

const GWEI: u128 = 1_000_000_000;
/// The default `max_reverts`.
const MAX_REVERTS: u64 = 3;

/// The signer's transactions in the L2 pool: pending nonces (sorted) and how many are queued.
async fn signer_pool(f: &Fixture) -> Result<(Vec<u64>, usize)> {
    let content: Value = f.l2.rpc("txpool_content", json!([])).await?;
    let of = |section: &str| -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for (from, txs) in content[section].as_object().into_iter().flatten() {
            if from.parse::<Address>().ok() == Some(f.signer) {
                for nonce in txs.as_object().into_iter().flatten().map(|(n, _)| n) {
                    out.push(nonce.parse()?);
                }
            }
        }
        out.sort();
        Ok(out)
    };
    Ok((of("pending")?, of("queued")?.len()))
}

/// The report is first in `block`: the reporter call at index 0, or the pair at 0 and 1 with a
/// `t_up` no older than the refresh schedule's bound at that moment.
async fn assert_first(f: &Fixture, last_ts: u64, block: u64) -> Result<()> {
    if f.reporter.is_some() {
        assert_report_first(f, last_ts, block).await?;
    } else {
        assert_pair_first_fresh(f, last_ts, block).await?;
    }
    Ok(())
}

/// The status of the outage journal's last record.
async fn last_outage(sup: &Supervisor) -> Result<Value> {
    Ok(sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?["lastOutage"].clone())
}

/// Stall, then 8 runs of the supervisor over one data directory, each `kill -9`ed after a
/// different delay (before, during and after the first submission and the refreshes), then one
/// last run: exactly one report lands, first, and the journal says so.
async fn kill_9_scenario(reporter: bool) -> Result<()> {
    let f = if reporter { Fixture::reporter(false).await? } else { Fixture::new(false).await? };
    f.fund().await?;
    let n = f.report_len();
    // The runs start about two seconds before the stall is detected (once the head is more than
    // MAX_AGE s old), so that the first is killed before it however slowly a run starts; later
    // ones around the first submission, the last ones while the report is pooled and refreshed
    // (pair) or re-checked (reporter).
    f.l2.mine(1).await?; // a fresh last block: the schedule below starts from now
    let (last, last_ts) = f.stop_sequencer().await?;
    let spec = f.spec()?;
    wait_until_unix_second(last_ts + MAX_AGE - 1, WAIT).await?;
    // Deterministic per iteration, spread over 0..1.5 s and out of order.
    const DELAYS_MS: [u64; 8] = [0, 700, 150, 1500, 40, 1050, 350, 1250];
    let mut sup: Option<Supervisor> = None;
    let mut phases = Vec::new();
    for (i, delay) in DELAYS_MS.into_iter().enumerate() {
        let log_start = sup.as_ref().map_or(0, |s| s.log_text().len());
        match &mut sup {
            None => sup = Some(Supervisor::start(&spec).await?),
            Some(s) => s.restart(&spec).await?,
        }
        let s = sup.as_mut().context("started")?;
        // The kill's moment, from the schedule above: what it hits is recorded below, not hoped.
        tokio::time::sleep(Duration::from_millis(delay)).await;
        s.kill9().await?;
        let (pending, queued) = signer_pool(&f).await?;
        ensure!(
            pending.len() <= n && queued == 0,
            "after kill {i}: more than one report pooled: {pending:?} + {queued} queued"
        );
        let log = s.log_text();
        let run = log.get(log_start..).unwrap_or_default();
        let phase = if !run.contains("sequencer stalled") {
            "before the stall"
        } else if pending.is_empty() {
            "before the first submission"
        } else if run.contains("report pre-positioned") {
            "after the first submission"
        } else {
            "while pooled"
        };
        eprintln!("kill {i} after {delay} ms ({phase}): the signer's pending nonces {pending:?}");
        phases.push(phase);
    }
    ensure!(phases.contains(&"before the stall") || phases.contains(&"before the first submission"), "{phases:?}");
    ensure!(phases.contains(&"while pooled"), "no kill while the report was pooled: {phases:?}");
    let mut sup = sup.context("started")?;
    sup.restart(&spec).await?;

    // The last run: exactly one report pending (nonces 0..n), nothing queued beyond it.
    wait_for("the last run sees the stall", WAIT, Duration::from_millis(50), || async {
        let s = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
        Ok((s["stalled"] == json!(true)).then_some(()))
    })
    .await?;
    f.wait_pair_pooled().await?;
    if !reporter {
        // The pooled up transaction may be a killed run's: this run refreshes it on schedule.
        wait_for("the last run refreshed the pair", WAIT, Duration::from_millis(50), || async {
            Ok((sup.metric("pair_refreshes_total{chain=\"901\"}").await? >= 1.0).then_some(()))
        })
        .await?;
    }
    let (pending, queued) = signer_pool(&f).await?;
    assert_eq!(pending, (0..n as u64).collect::<Vec<_>>(), "exactly one report pending, from nonce 0");
    assert_eq!(queued, 0, "nothing of the signer's queued beyond the report");

    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    assert_first(&f, last_ts, block).await?;
    assert_eq!(f.signer_nonce().await?, n as u64, "exactly one report landed");
    assert_eq!(f.latest_round().await?.0, 3, "exactly two new rounds after the deploy round");
    wait_landed_first(&sup, block).await?;
    // Later blocks carry nothing more from the signer.
    f.l2.mine(2).await?;
    wait_for("the watchdog saw the later blocks", WAIT, Duration::from_millis(50), || async {
        let s = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
        Ok((s["head"]["number"].as_str().map(hex_u64).transpose()? >= Some(block + 2)).then_some(()))
    })
    .await?;
    f.l2.mine(1).await?;
    assert_eq!(f.signer_nonce().await?, n as u64, "nothing more from the signer");
    assert_eq!(signer_pool(&f).await?, (vec![], 0), "nothing of the signer's pooled");
    assert_eq!(last_outage(&sup).await?["result"]["first"], json!(true));
    assert_eq!(sup.stop().await?, 0);
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "db check after 8 kills: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_of_an_outage_lands_exactly_one_report() -> Result<()> {
    kill_9_scenario(true).await?;
    kill_9_scenario(false).await
}

fn word(v: U256) -> B256 {
    B256::from(v.to_be_bytes::<32>())
}

/// `hasRole(FEED_UPDATER_ROLE, who)` on the feed at block tag `tag` (`pending`: what the next
/// block would see).
async fn has_role(f: &Fixture, who: Address, tag: &str) -> Result<bool> {
    let data = feed::has_role(FEED_UPDATER_ROLE, who);
    let out: String = f.l2.rpc("eth_call", json!([{ "to": f.feed, "data": data }, tag])).await?;
    Ok(U256::from_str_radix(out.trim_start_matches("0x"), 16)? == U256::from(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_revoked_mid_outage_gives_bounded_reverts_and_an_alert_metric() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (last, _) = f.stop_sequencer().await?;
    let sup = Supervisor::start(&f.spec()?).await?;
    f.wait_pair_pooled().await?;

    // Revoke the role without a block: `s_roles` (mapping(bytes32 => mapping(address => bool)))
    // is the feed's first state variable, slot 0, so s_roles[role][signer] lives at
    // keccak256(signer . keccak256(role . 0)).
    let inner = keccak256([FEED_UPDATER_ROLE.as_slice(), word(U256::ZERO).as_slice()].concat());
    let slot = keccak256([B256::left_padding_from(f.signer.as_slice()).as_slice(), inner.as_slice()].concat());
    assert!(has_role(&f, f.signer, "latest").await?, "the signer holds the role before");
    let _: Value = f.l2.rpc("anvil_setStorageAt", json!([f.feed, slot, word(U256::ZERO)])).await?;
    assert!(!has_role(&f, f.signer, "latest").await?, "the role is revoked");
    assert!(!has_role(&f, f.signer, "pending").await?, "the role is revoked for the next block too");
    assert_eq!(f.l2.block_number().await?, last, "the chain is still stalled");
    let pooled = f.wait_pair_pooled().await?;
    assert_eq!(pooled.len(), 2);

    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    // The pair landed in the first block after the gap and reverted.
    let body: Value = f.l2.rpc("eth_getBlockByNumber", json!([format!("{block:#x}"), true])).await?;
    let ours: Vec<String> = body["transactions"]
        .as_array()
        .context("transactions")?
        .iter()
        .filter(|t| t["from"].as_str().and_then(|s| s.parse::<Address>().ok()) == Some(f.signer))
        .map(|t| t["hash"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ours.len(), 2, "the pair landed in block {block}");
    for hash in &ours {
        let r: Value = f.l2.rpc("eth_getTransactionReceipt", json!([hash])).await?;
        assert_eq!(r["status"], json!("0x0"), "the report transaction {hash} reverted");
    }
    assert_eq!(f.latest_round().await?.0, 1, "the feed recorded nothing");

    // Both counted and both said (each log line is written just after its metric).
    wait_for(
        "the revert counted and said, the missing role flagged and said",
        WAIT,
        Duration::from_millis(100),
        || async {
            let reverts = sup.metric("report_reverts_total{chain=\"901\"}").await?;
            let missing = sup.metric("signer_missing_role{chain=\"901\"}").await?;
            let log = sup.log_text();
            let said = log.contains("the report reverted") && log.contains("lacks FEED_UPDATER_ROLE");
            Ok((reverts >= 1.0 && missing == 1.0 && said).then_some(()))
        },
    )
    .await?;

    // More blocks over a few seconds (under the stall threshold): no endless re-sending. The
    // sleep is the chain's block time: checks see a live chain for 3 s, the negative check below.
    let mut head = block;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        head = f.resume().await?;
    }
    wait_for("the watchdog saw every later block", WAIT, Duration::from_millis(50), || async {
        let s = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
        Ok((s["head"]["number"].as_str().map(hex_u64).transpose()? >= Some(head)).then_some(()))
    })
    .await?;
    let nonce = f.signer_nonce().await?;
    assert!(nonce <= 2 * MAX_REVERTS, "at most max_reverts reports: nonce {nonce}");
    assert_eq!(nonce, 2, "nothing is sent while the role is missing");
    f.resume().await?;
    assert_eq!(f.signer_nonce().await?, nonce, "the signer's nonce stopped growing");
    assert_eq!(signer_pool(&f).await?, (vec![], 0), "nothing of the signer's pooled");
    let reverts = sup.metric("report_reverts_total{chain=\"901\"}").await?;
    assert!((1.0..=MAX_REVERTS as f64).contains(&reverts), "report_reverts_total {reverts}");
    assert_eq!(sup.metric("signer_missing_role{chain=\"901\"}").await?, 1.0);
    Ok(())
}

/// Stall; once the report is pooled, three users arrive one after another at increasing fees,
/// each above our defaults; the report is repriced above each; it lands first and all three
/// follow it in the first block after the gap.
async fn users_scenario(reporter: bool) -> Result<()> {
    let f = if reporter { Fixture::reporter(false).await? } else { Fixture::new(false).await? };
    f.fund().await?;
    let n = f.report_len();
    let (last, last_ts) = f.stop_sequencer().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    f.wait_pair_pooled().await?;
    let mut users = Vec::new();
    for (account, max_fee, tip) in [(3, 5 * GWEI, GWEI), (4, 80 * GWEI, 40 * GWEI), (5, 150 * GWEI, 150 * GWEI)] {
        users.push(f.user_tx_paying(account, max_fee, tip).await?);
        f.wait_outbid(max_fee.max(tip)).await?;
    }
    let pooled = f.pooled_with_fees(&f.l2).await?;
    assert_eq!(pooled.len(), n, "one report pooled: {pooled:?}");
    assert!(sup.metric("report_repriced_total{chain=\"901\"}").await? >= 1.0, "the report was repriced");

    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    assert_first(&f, last_ts, block).await?;
    let (_, txs) = block_after_gap(&f.l2, block).await?;
    let after: Vec<&str> = txs[n..].iter().map(|t| t.0.as_str()).collect();
    for user in &users {
        assert!(after.contains(&user.as_str()), "user {user} follows the report in block {block}: {after:?}");
    }
    assert_eq!(f.signer_nonce().await?, n as u64, "exactly one report landed");
    wait_landed_first(&sup, block).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_paying_more_than_our_defaults_arriving_during_the_outage_sort_after_the_report() -> Result<()> {
    users_scenario(true).await?;
    users_scenario(false).await
}
