//! The uptime-flow benchmark (not a test): `cargo bench --bench uptime`.
//!
//! With the default fee settings, on a real anvil L2 with the real supervisor binary, in both
//! report modes (reporter call, and the down/up pair):
//! - placement: 20 outages, each with 1–3 competing users arriving at random moments of the
//!   outage at random fees (tips up to 100 gwei, max fee ≥ tip), the last at least two checks
//!   before resumption: the share of reports first in the first block after the gap;
//! - freshness: `block.timestamp - t_up` at inclusion for outages of 10 s, 60 s and 300 s (the
//!   pair's refreshes pay the production 10 % bump, which the code applies itself);
//! - cost: fees paid per report, signatures and submissions per outage;
//! - the pool read: parsing a 10 000-transaction `txpool_content` answer, against the time the
//!   node takes to serve a pool of that size;
//! - signing latency, local key vs the Web3Signer stand-in over loopback.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../it/harness/mod.rs"]
mod harness;
mod isolation;
#[path = "../it/supervisor.rs"]
mod supervisor;
#[allow(unused_imports)] // the tests' imports
#[path = "../it/uptime.rs"]
mod uptime;

use std::time::{Duration, Instant};

use alloy::{
    consensus::TxEip1559,
    primitives::{Address, TxKind, U256},
    signers::local::PrivateKeySigner,
};
use anyhow::{Context, Result, ensure};
use harness::{
    consts::{L2_CHAIN_ID, TRANSFER_GAS},
    unix_now, wait_for,
};
use rollup_supervisor_signer::{LocalKey, Web3Signer, test_utils::StandIn};
use serde_json::{Value, json};
use supervisor::Supervisor;
use uptime::{Fixture, block_updates};

const OUTAGES: usize = 20;
const SIGNATURES: usize = 300;
const MAX_AGE: u64 = 3;
const CHECK_MS: u64 = 250;
const GWEI: u128 = 1_000_000_000;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// A small deterministic generator (xorshift), so every run stages the same users.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

async fn signing_latency() -> Result<(Vec<Duration>, Vec<Duration>)> {
    let key = PrivateKeySigner::random();
    let local = LocalKey::from(key.clone());
    let stand_in = StandIn::start_with_key(key).await?;
    let remote = Web3Signer::new(stand_in.config())?;
    let tx = |nonce| TxEip1559 {
        chain_id: L2_CHAIN_ID,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: GWEI,
        max_priority_fee_per_gas: GWEI,
        to: TxKind::Call(Address::repeat_byte(1)),
        value: U256::ZERO,
        input: vec![0u8; 68].into(),
        ..Default::default()
    };
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for i in 0..SIGNATURES as u64 {
        let t = Instant::now();
        local.sign(tx(i))?;
        l.push(t.elapsed());
        let t = Instant::now();
        remote.sign(tx(i)).await?;
        r.push(t.elapsed());
    }
    l.sort();
    r.sort();
    Ok((l, r))
}

/// What one outage cost and where its report landed.
#[derive(Debug, Default)]
struct Outcome {
    /// From the first instant the watchdog's rule holds to the report in the node's pool.
    to_pool: Duration,
    first: bool,
    staleness: u64,
    fee_wei: u128,
    signatures: f64,
    submissions: f64,
}

/// Counters read before and after an outage: signatures, submissions.
async fn counters(sup: &Supervisor) -> Result<(f64, f64)> {
    Ok((sup.metric_sum("signer_requests_total").await?, sup.metric_sum("report_submissions_total").await?))
}

/// One outage of `stall` after the threshold, with `users` (arrival offset, max fee, tip)
/// competing; returns where the report landed and what it cost.
async fn outage(f: &Fixture, sup: &Supervisor, stall: Duration, users: &[(Duration, u128, u128)]) -> Result<Outcome> {
    f.l2.set_automine(true).await?;
    f.l2.mine(1).await?;
    let before = counters(sup).await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    // Polled every 2 ms, so the time to the pool is measured to within a few ms.
    let what = format!("the report pooled in the outage after block {last}");
    wait_for(&what, Duration::from_secs(30), Duration::from_millis(2), || async {
        Ok((f.pooled().await?.len() >= f.report_len()).then_some(()))
    })
    .await?;
    // The watchdog's rule `floor(now) - ts > max_age` first holds at ts + max_age + 1.
    let crossing = (last_ts + MAX_AGE + 1) as f64;
    let now = unix_now().as_secs_f64();
    let to_pool = Duration::from_secs_f64((now - crossing).max(0.0));
    let started = Instant::now();
    // The users' arrival times and the outage's length are the staged scenario, not waits for a
    // condition.
    for (i, (at, max_fee, tip)) in users.iter().enumerate() {
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        f.user_tx_paying(3 + i, *max_fee, *tip).await?;
    }
    tokio::time::sleep(stall.saturating_sub(started.elapsed())).await;
    let _: Value = f.l2.rpc("evm_mine", json!([])).await?;
    let (ts, txs) = block_updates(&f.l2, last + 1).await?;
    let n = f.report_len();
    let ours: Vec<_> = txs.iter().take(n).filter(|t| t.1 == f.signer).collect();
    let updates: Vec<(u64, u64)> = ours.iter().flat_map(|t| t.2.clone()).collect();
    let first = ours.len() == n && updates.len() == 2 && updates[0] == (1, last_ts) && updates[1].0 == 0;
    let mut fee_wei = 0;
    for t in &ours {
        let r: Value = f.l2.rpc("eth_getTransactionReceipt", json!([t.0])).await?;
        let hex = |k: &str| u128::from_str_radix(r[k].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16);
        fee_wei += hex("gasUsed")? * hex("effectiveGasPrice")?;
    }
    // The journal says the outage is over before the next one starts.
    let what = format!("the outage after block {last} confirmed");
    wait_for(&what, Duration::from_secs(30), Duration::from_millis(20), || async {
        let o = sup.ok("supervisor_uptimeStatus", json!([L2_CHAIN_ID])).await?["lastOutage"].clone();
        Ok((o["lastBlock"]["number"] == json!(format!("{last:#x}")) && o["result"]["status"] != json!("pending"))
            .then_some(()))
    })
    .await?;
    let after = counters(sup).await?;
    Ok(Outcome {
        to_pool,
        first,
        staleness: updates.get(1).map_or(u64::MAX, |(_, up)| ts.saturating_sub(*up)),
        fee_wei,
        signatures: after.0 - before.0,
        submissions: after.1 - before.1,
    })
}

/// Every figure for one mode.
async fn mode(reporter: bool) -> Result<Vec<String>> {
    let f = if reporter { Fixture::reporter(false).await? } else { Fixture::new(false).await? };
    f.fund().await?;
    for account in 3..6 {
        let accounts: Vec<String> = f.l2.rpc("eth_accounts", json!([])).await?;
        let _: Value = f.l2.rpc("anvil_setBalance", json!([accounts[account], "0x3635c9adc5dea00000"])).await?;
    }
    let mut sup = Supervisor::start(&f.spec()?).await?;
    let name = if reporter { "reporter" } else { "pair" };
    let mut rows = Vec::new();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut first, mut worst, mut fees, mut sigs, mut subs) = (0, 0u64, Vec::new(), 0.0, 0.0);
    let mut to_pool = Vec::new();
    for _ in 0..OUTAGES {
        let stall = Duration::from_millis(2_000 + rng.below(3_000));
        let latest = stall - Duration::from_millis(2 * CHECK_MS + 100);
        let users: Vec<_> = (0..1 + rng.below(3))
            .map(|_| {
                let tip = u128::from(rng.below(100_000)) * GWEI / 1_000;
                let max_fee = tip + GWEI + u128::from(rng.below(50_000)) * GWEI / 1_000;
                (Duration::from_millis(rng.below(latest.as_millis() as u64)), max_fee, tip)
            })
            .collect();
        let mut users = users;
        users.sort_by_key(|u| u.0);
        let o = outage(&f, &sup, stall, &users).await?;
        first += usize::from(o.first);
        to_pool.push(o.to_pool);
        worst = worst.max(o.staleness);
        fees.push(o.fee_wei);
        sigs += o.signatures;
        subs += o.submissions;
    }
    fees.sort();
    to_pool.sort();
    rows.push(format!(
        "| {name}: threshold crossed → report in the node's pool, p50 / p99 ({OUTAGES} outages, check interval {CHECK_MS} ms) | {:.0} ms / {:.0} ms |",
        pct(&to_pool, 0.5),
        pct(&to_pool, 0.99)
    ));
    rows.push(format!(
        "| {name}: report first in the first block after the gap, {OUTAGES} outages with 1–3 users at tips up to 100 gwei | {first} / {OUTAGES} ({:.0} %) |",
        100.0 * first as f64 / OUTAGES as f64
    ));
    rows.push(format!("| {name}: worst `block.timestamp - t_up` in those outages | {worst} s |"));
    rows.push(format!(
        "| {name}: fee paid per report, median / max (gas used × effective price) | {:.6} / {:.6} ETH |",
        fees[fees.len() / 2] as f64 / 1e18,
        fees[fees.len() - 1] as f64 / 1e18
    ));
    rows.push(format!(
        "| {name}: signatures / submissions per outage (mean, with competitors) | {:.1} / {:.1} |",
        sigs / OUTAGES as f64,
        subs / OUTAGES as f64
    ));
    for secs in [10u64, 60, 300] {
        let o = outage(&f, &sup, Duration::from_secs(secs), &[]).await?;
        ensure!(o.first, "{name}: the {secs} s outage's report was not first");
        rows.push(format!(
            "| {name}: {secs} s outage: `block.timestamp - t_up` / signatures / submissions / fee | {} s / {} / {} / {:.6} ETH |",
            o.staleness,
            o.signatures,
            o.submissions,
            o.fee_wei as f64 / 1e18
        ));
    }
    assert_eq!(sup.stop().await?, 0);
    Ok(rows)
}

/// Parsing a 10 000-transaction pool, against the node serving it; and how many checks per
/// second the supervisor keeps up during an outage, before and with that pool pending.
async fn pool_read() -> Result<(Duration, Duration, usize, f64, f64)> {
    use rollup_supervisor_actors::uptime::pool;
    let f = Fixture::new(false).await?;
    f.fund().await?;
    f.l2.set_automine(false).await?;
    let sup = Supervisor::start(&f.spec()?).await?;
    f.wait_pair_pooled().await?;
    // One `eth_getTransactionCount` per check while stalled.
    let series = "node_rpc_requests_total{endpoint=\"l2_901\",method=\"eth_getTransactionCount\"}";
    let rate = |secs: u64| {
        let sup = &sup;
        async move {
            let (before, t) = (sup.metric(series).await?, Instant::now());
            // The window the rate is measured over.
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok::<f64, anyhow::Error>((sup.metric(series).await? - before) / t.elapsed().as_secs_f64())
        }
    };
    let quiet = rate(10).await?;
    let accounts: Vec<String> = f.l2.rpc("eth_accounts", json!([])).await?;
    // 10 000 pending transactions from nine dev accounts (the signer's is not among them).
    for account in &accounts[1..] {
        let nonce: String = f.l2.rpc("eth_getTransactionCount", json!([account, "pending"])).await?;
        let nonce = u64::from_str_radix(nonce.trim_start_matches("0x"), 16)?;
        let n = if account == &accounts[9] { 10_000 - 8 * 1_112 } else { 1_112 };
        let calls: Vec<(&str, Value)> = (nonce..nonce + n)
            .map(|n| {
                let tx = json!({ "from": account, "to": accounts[0], "value": "0x1", "gas": TRANSFER_GAS, "nonce": format!("{n:#x}") });
                ("eth_sendTransaction", json!([tx]))
            })
            .collect();
        for r in f.l2.rpc_batch(&calls).await? {
            r?;
        }
    }
    let mut serve = Duration::MAX;
    let mut parse = Duration::MAX;
    let mut bytes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        bytes = f.l2.rpc_raw("txpool_content", json!([])).await?;
        serve = serve.min(t.elapsed());
        let t = Instant::now();
        let view = pool::parse_answer(&bytes, f.signer).map_err(anyhow::Error::msg)?;
        parse = parse.min(t.elapsed());
        ensure!(view.competition.count == 10_000, "{} pending", view.competition.count);
    }
    let busy = rate(20).await?;
    Ok((serve, parse, bytes.len(), quiet, busy))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if std::env::var("UPTIME_BENCH").as_deref() == Ok("isolation") {
        let mut r = isolation::run().await?;
        println!("catch-up of 10 000 L1 blocks, {} rounds: {}", r.catch_up.len(), isolation::summary(&mut r.catch_up)?);
        println!("supervisor_syncStatus during the catch-up: {}", isolation::summary(&mut r.busy)?);
        println!("supervisor_syncStatus once idle (the limit): {}", isolation::summary(&mut r.idle)?);
        println!("watchdog check lateness during the catch-up: {}", isolation::summary(&mut r.late)?);
        return Ok(());
    }
    let (local, remote) = signing_latency().await?;
    let (serve, parse, bytes, quiet, busy) = pool_read().await.context("pool read")?;
    // `UPTIME_BENCH=pool`: the pool figures only (a minute instead of half an hour).
    let mut rows = Vec::new();
    if std::env::var("UPTIME_BENCH").as_deref() != Ok("pool") {
        rows.extend(mode(true).await?);
        rows.extend(mode(false).await?);
    }

    println!("| metric | value |");
    println!("|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "| `txpool_content` with 10 000 pending transactions: anvil serves it in / we parse it in (best of 5; {:.1} MB) | {:.1} ms / {:.1} ms |",
        bytes as f64 / 1e6,
        serve.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e3
    );
    println!(
        "| checks per second during an outage, no pending users / 10 000 pending (configured: one per 500 ms) | {quiet:.2} / {busy:.2} |"
    );
    println!(
        "| signing latency, local key, p50 / p99 ({SIGNATURES} signatures) | {:.3} ms / {:.3} ms |",
        pct(&local, 0.5),
        pct(&local, 0.99)
    );
    println!(
        "| signing latency, Web3Signer stand-in over loopback HTTP, p50 / p99 | {:.3} ms / {:.3} ms |",
        pct(&remote, 0.5),
        pct(&remote, 0.99)
    );
    Ok(())
}
