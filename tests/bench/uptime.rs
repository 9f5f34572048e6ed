//! The uptime-flow benchmark (not a test): `cargo bench --bench uptime`.
//!
//! - Time from the moment the head age crosses the threshold to the pair being in the node's
//!   pool, p50/p99 over 20 outages on a real anvil L2 with the real supervisor binary.
//! - Over the same 20 outages: the share in which the pair is at indices 0 and 1 of the first
//!   block after the gap, and the worst `block.timestamp - t_up`.
//! - Signing latency, local key vs the Web3Signer stand-in over loopback.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../it/harness/mod.rs"]
mod harness;
#[path = "../it/supervisor.rs"]
mod supervisor;
#[allow(unused_imports)] // the tests' imports
#[path = "../it/uptime.rs"]
mod uptime;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::{
    consensus::TxEip1559,
    primitives::{Address, TxKind, U256},
    signers::local::PrivateKeySigner,
};
use anyhow::{Result, ensure};
use rollup_supervisor_signer::{LocalKey, Web3Signer, test_utils::StandIn};
use serde_json::json;
use supervisor::Supervisor;
use uptime::{Fixture, block_after_gap};

const OUTAGES: usize = 20;
const SIGNATURES: usize = 300;
const MAX_AGE: u64 = 3;
const REFRESH_MS: u64 = 500;
const MARGIN: u64 = 1;

fn now_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

async fn signing_latency() -> Result<(Vec<Duration>, Vec<Duration>)> {
    let key = PrivateKeySigner::random();
    let local = LocalKey::from(key.clone());
    let stand_in = StandIn::start_with_key(key).await?;
    let remote = Web3Signer::new(stand_in.config())?;
    let tx = |nonce| TxEip1559 {
        chain_id: 901,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 1_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let (local, remote) = signing_latency().await?;

    let f = Fixture::new(false).await?;
    f.fund().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    let mut to_pool = Vec::new();
    let mut first = 0;
    let mut worst_age = 0u64;
    for i in 0..OUTAGES {
        f.l2.set_automine(true).await?;
        f.l2.mine(1).await?;
        let (last, last_ts) = f.stop_sequencer().await?;
        // The watchdog's rule `floor(now) - ts > max_age` first holds at ts + max_age + 1.
        let crossing = (last_ts + MAX_AGE + 1) as f64;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if f.pooled().await?.len() == 2 {
                break;
            }
            ensure!(Instant::now() < deadline, "outage {i}: no pair pooled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        to_pool.push(Duration::from_secs_f64((now_secs_f64() - crossing).max(0.0)));
        // Resume after a varying extra stall, so refreshes are caught at every phase.
        tokio::time::sleep(Duration::from_millis(300 + 97 * i as u64 % 1200)).await;
        let _: serde_json::Value = f.l2.rpc("evm_mine", json!([])).await?;
        let (ts, txs) = block_after_gap(&f.l2, last + 1).await?;
        let pair_first = txs.len() >= 2
            && txs[0].1 == f.signer
            && txs[0].2 == Some((1, last_ts))
            && txs[1].1 == f.signer
            && txs[1].2.is_some_and(|(a, _)| a == 0);
        if pair_first {
            first += 1;
            worst_age = worst_age.max(ts - txs[1].2.map_or(ts, |(_, t)| t));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = sup.ok("supervisor_uptimeStatus", json!([901])).await?;
            let outage = &s["lastOutage"];
            if outage["lastBlock"]["number"] == json!(format!("{last:#x}"))
                && outage["result"]["status"] != json!("pending")
            {
                break;
            }
            ensure!(Instant::now() < deadline, "outage {i}: never confirmed: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(sup.stop().await?, 0);
    to_pool.sort();

    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| threshold crossed → pair in the pool, p50 / p99 ({OUTAGES} outages, check interval 250 ms) | {:.0} ms / {:.0} ms |",
        pct(&to_pool, 0.5),
        pct(&to_pool, 0.99)
    );
    println!(
        "| pair at indices 0 and 1 of the first block after the gap | {first} / {OUTAGES} ({:.0} %) |",
        100.0 * first as f64 / OUTAGES as f64
    );
    println!(
        "| worst `block.timestamp - t_up` (refresh {REFRESH_MS} ms + margin {MARGIN} s, whole seconds) | {worst_age} s |"
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
