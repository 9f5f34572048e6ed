//! The L1-flow benchmark (not a test): `cargo bench --bench l1_flow`.
//!
//! Pre-mines 10 000 L1 blocks on anvil (built once, then reloaded from a state dump cached in
//! `target/bench-cache/`), tracks 4 L2 chains, and reports:
//! - catch-up throughput of the release binary in L1 blocks/s, next to the same node's raw rate
//!   for serving those headers to a plain batched client in the same run, and their ratio;
//! - `supervisor_syncStatus` latency (p50/p99/max) during the catch-up, polled every 1 ms;
//! - head-to-commit latency (p50/p99) while following one new block at a time;
//! - database bytes per derivation row (logical row size, and sled's size on disk per row);
//! - the supervisor's peak RSS.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../it/harness/mod.rs"]
mod harness;
#[path = "../it/supervisor.rs"]
mod supervisor;

use std::{
    cell::Cell,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use harness::{Anvil, AnvilOptions, RpcClient, consts::L2_CHAIN_ID, wait_for};
use supervisor::{ChainSpec, Spec, Supervisor, hex_u64};

/// L1 blocks in the chain (`L1_FLOW_BLOCKS`, default 10 000).
fn l1_blocks() -> u64 {
    std::env::var("L1_FLOW_BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}
const L2_BLOCKS: u64 = 500;
const BATCH: u64 = 500;
const LATENCY_SAMPLES: usize = 100;

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-cache")
}

/// An anvil holding [`l1_blocks`] blocks, from the cached state file when there is one.
async fn l1_node() -> Result<Anvil> {
    let state = cache_dir().join(format!("l1-{}.json", l1_blocks()));
    if state.exists() {
        let anvil = Anvil::spawn(AnvilOptions { load_state: Some(state.clone()), ..Default::default() }).await?;
        if anvil.block_number().await? == l1_blocks() {
            return Ok(anvil);
        }
    }
    eprintln!(
        "building the {}-block L1 chain (anvil slows down as it grows: minutes; cached afterwards)...",
        l1_blocks()
    );
    std::fs::create_dir_all(cache_dir())?;
    // Start from the 10 000-block chain if it is cached and this one is longer.
    let shorter = cache_dir().join("l1-10000.json");
    let load_state = (l1_blocks() > 10_000 && shorter.exists()).then_some(shorter);
    let mut anvil =
        Anvil::spawn(AnvilOptions { dump_state: Some(state.clone()), load_state, ..Default::default() }).await?;
    let slow = RpcClient::with_timeout(anvil.url(), Duration::from_secs(600))?;
    let mut left = l1_blocks() - anvil.block_number().await?;
    while left > 0 {
        let n = left.min(1000);
        slow.mine(n).await?;
        left -= n;
    }
    anvil.shutdown().await?;
    let anvil = Anvil::spawn(AnvilOptions { load_state: Some(state), ..Default::default() }).await?;
    anyhow::ensure!(anvil.block_number().await? == l1_blocks(), "the state file did not reload");
    Ok(anvil)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    harness::percentile(sorted, p).unwrap_or_default()
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let l1 = l1_node().await?;
    let mut l2s = Vec::new();
    for id in L2_CHAIN_ID..L2_CHAIN_ID + 4 {
        let node = Anvil::spawn(AnvilOptions { chain_id: Some(id), ..Default::default() }).await?;
        node.mine(10).await?;
        l2s.push((id, node));
    }

    // The node's raw rate: a plain client fetching the same headers in batches of the same size.
    let plain = RpcClient::new(l1.url())?;
    let mut raw_best = Duration::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let blocks = plain.canonical_chain(0, l1_blocks()).await?;
        raw_best = raw_best.min(t.elapsed());
        assert_eq!(blocks.len() as u64, l1_blocks() + 1);
    }
    let sequential_rate = (l1_blocks() + 1) as f64 / raw_best.as_secs_f64();
    // The same with two batches in flight, as the supervisor's pipelined catch-up has them: the
    // node's limit for this access pattern.
    let mut two_best = Duration::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let mut fetched = 0u64;
        let mut start = 0u64;
        while start <= l1_blocks() {
            let a = (start, l1_blocks().min(start + BATCH - 1));
            let b = (a.1 + 1, l1_blocks().min(a.1 + BATCH));
            if b.0 > l1_blocks() {
                fetched += plain.canonical_chain(a.0, a.1).await?.len() as u64;
            } else {
                let (x, y) = tokio::join!(plain.canonical_chain(a.0, a.1), plain.canonical_chain(b.0, b.1));
                fetched += (x?.len() + y?.len()) as u64;
            }
            start = b.1 + 1;
        }
        assert_eq!(fetched, l1_blocks() + 1);
        two_best = two_best.min(t.elapsed());
    }
    let two_rate = (l1_blocks() + 1) as f64 / two_best.as_secs_f64();
    let raw_rate = sequential_rate.max(two_rate);

    // Catch-up: from process start to the last block recorded.
    let mut spec = Spec::new(l1.url());
    spec.batch_size = BATCH;
    spec.chains = l2s.iter().map(|(id, node)| ChainSpec::new(*id, node.url(), "latest")).collect();
    // Both ways: from process start, and from the first block recorded (start-up excluded:
    // reading the config, opening the database, the chain-id checks).
    let t = Instant::now();
    let sup = Supervisor::start(&spec).await?;
    let poller = SyncStatusPoller::start(sup.rpc_url.clone());
    let first: Cell<Option<(Instant, u64)>> = Cell::new(None);
    wait_for("catch-up to the last block", Duration::from_secs(600), Duration::from_millis(1), || async {
        let latest = sup.l1_latest().await?;
        if let (None, Some(n)) = (first.get(), latest) {
            first.set(Some((Instant::now(), n)));
        }
        Ok((latest == Some(l1_blocks())).then_some(()))
    })
    .await?;
    let catch_up = t.elapsed();
    let status_latencies = poller.stop().await?;
    let rate = (l1_blocks() + 1) as f64 / catch_up.as_secs_f64();
    let (first_at, first_block) = first.get().context("no block seen")?;
    let running_rate = (l1_blocks() - first_block) as f64 / first_at.elapsed().as_secs_f64();

    // Following: one new block at a time, from the node's answer to the supervisor's.
    let latencies = follow_latency(&sup, &l1, LATENCY_SAMPLES, 100).await?;

    // Derivation rows: every chain derives L2_BLOCKS more blocks.
    for (_, node) in &l2s {
        node.mine(L2_BLOCKS).await?;
    }
    for (id, node) in &l2s {
        let head = node.block_number().await?;
        wait_for(&format!("chain {id} derived"), Duration::from_secs(120), Duration::from_millis(10), || async {
            let pair = sup.call("supervisor_localSafe", serde_json::json!([id])).await?.ok();
            let derived = pair.and_then(|p| p["derived"]["number"].as_str().map(hex_u64)).transpose()?;
            Ok((derived == Some(head)).then_some(()))
        })
        .await?;
    }
    let pid = sup_pid(&sup)?;
    let rss = peak_rss_kib(pid).context("no /proc status")?;
    let mut sup = sup;
    assert_eq!(sup.stop().await?, 0);
    let dump = sup.db_inspect()?;
    let l1_rows = dump["l1"].as_array().map_or(0, Vec::len) as u64;
    let mut l2_rows = 0u64;
    let mut log_entries = 0u64;
    for (id, _) in &l2s {
        let log = dump["chains"][id.to_string()]["log"].as_array().cloned().unwrap_or_default();
        log_entries += log.len() as u64;
        let mut last = None;
        for e in &log {
            let d = e["derived"]["number"].clone();
            if last.as_ref() != Some(&d) {
                l2_rows += 1;
                last = Some(d);
            }
        }
    }
    let disk = dir_size(&sup.datadir());

    println!("| metric | value |");
    println!("|---|---|");
    println!("| L1 blocks caught up | {} (batch size {BATCH}, 4 chains tracked) |", l1_blocks() + 1);
    println!("| catch-up time (process start to last block recorded) | {:.2} s |", catch_up.as_secs_f64());
    println!("| **catch-up throughput** | **{rate:.0} L1 blocks/s** |");
    println!(
        "| node raw rate, plain batched client, best of 2: one batch in flight / two in flight | {sequential_rate:.0} / {two_rate:.0} blocks/s (the higher is the limit below) |"
    );
    println!("| **ratio to the node's raw rate** | **{:.0} %** |", 100.0 * rate / raw_rate);
    println!(
        "| throughput from the first block recorded (start-up excluded; {} blocks) | {running_rate:.0} L1 blocks/s, **{:.0} %** of the raw rate |",
        l1_blocks() - first_block,
        100.0 * running_rate / raw_rate
    );
    println!(
        "| `supervisor_syncStatus` latency during the catch-up, p50 / p99 / max ({} calls, one every {} ms) | {} / {:.1} ms |",
        status_latencies.len(),
        SyncStatusPoller::EVERY.as_millis(),
        p50_p99(&status_latencies),
        status_latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!(
        "| head-to-commit latency, p50 / p99 ({LATENCY_SAMPLES} blocks, poll interval 100 ms, 4 chains) | {} |",
        p50_p99(&latencies)
    );
    println!("| derivation row, logical (key + value) | {} bytes |", rollup_supervisor_storage::DERIVATION_ROW_BYTES);
    println!("| L1 row, logical (key + value) | {} bytes |", rollup_supervisor_storage::L1_ROW_BYTES);
    println!("| rows: L1 / L2 (derivation) / log entries expanded | {l1_rows} / {l2_rows} / {log_entries} |");
    println!(
        "| sled directory size / all rows (L1 + L2) | {} bytes ({:.0} bytes/row) |",
        disk,
        disk as f64 / (l1_rows + l2_rows) as f64
    );
    println!("| supervisor peak RSS | {:.1} MiB |", rss as f64 / 1024.0);

    // Head latency: the newHeads subscription next to polling at the default and at 100 ms.
    let ws = follow_latency_with(&l1, 2_000, true, LATENCY_SAMPLES).await?;
    let poll_100 = follow_latency_with(&l1, 100, false, LATENCY_SAMPLES).await?;
    let poll_default = follow_latency_with(&l1, 2_000, false, 30).await?;
    println!(
        "| head-to-commit p50 / p99, `l1.ws_url` newHeads (poll 2 s as safety net, {LATENCY_SAMPLES} blocks) | {} |",
        p50_p99(&ws)
    );
    println!("| head-to-commit p50 / p99, polling every 100 ms ({LATENCY_SAMPLES} blocks) | {} |", p50_p99(&poll_100));
    println!("| head-to-commit p50 / p99, polling at the default 2 s (30 blocks) | {} |", p50_p99(&poll_default));
    Ok(())
}

/// Calls `supervisor_syncStatus` every [`Self::EVERY`] on one keep-alive connection, as a
/// dashboard or a peer would, timing each answer, until stopped. With `L1_FLOW_STATUS_SAMPLES`
/// set to a path, every latency (µs, sorted) is written there, to pool several runs.
struct SyncStatusPoller {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Vec<Duration>>>,
}

impl SyncStatusPoller {
    const EVERY: Duration = Duration::from_millis(1);

    fn start(url: String) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let client = RpcClient::with_timeout(url, Duration::from_secs(30))?;
            let mut latencies = Vec::new();
            while !*stopped.borrow() {
                let t = Instant::now();
                let answer = client.call("supervisor_syncStatus", serde_json::json!([]), None).await?;
                anyhow::ensure!(answer.is_ok(), "syncStatus failed: {answer:?}");
                latencies.push(t.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(Self::EVERY) => {}
                    _ = stopped.changed() => {}
                }
            }
            latencies.sort();
            Ok(latencies)
        });
        Self { stop, task }
    }

    /// Every answer's latency, sorted.
    async fn stop(self) -> Result<Vec<Duration>> {
        let _ = self.stop.send(true);
        let latencies = self.task.await??;
        anyhow::ensure!(!latencies.is_empty(), "no syncStatus answer during the catch-up");
        if let Ok(path) = std::env::var("L1_FLOW_STATUS_SAMPLES") {
            let lines: Vec<String> = latencies.iter().map(|d| d.as_micros().to_string()).collect();
            std::fs::write(path, lines.join("\n") + "\n")?;
        }
        Ok(latencies)
    }
}

/// Head-to-commit latency of `samples` blocks mined one at a time, from the node's answer to the
/// supervisor's, sorted. Blocks arrive at jittered times (up to `jitter_ms` apart) so that they
/// do not fall into step with the poll timer.
async fn follow_latency(sup: &Supervisor, l1: &Anvil, samples: usize, jitter_ms: u64) -> Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(samples);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..samples {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        // The block's arrival time, at random: the pace of the chain, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis((seed >> 33) % jitter_ms)).await;
        l1.mine(1).await?;
        let n = l1.block_number().await?;
        let t = Instant::now();
        wait_for(&format!("block {n} recorded"), Duration::from_secs(30), Duration::from_millis(1), || async {
            Ok((sup.l1_latest().await? == Some(n)).then_some(()))
        })
        .await?;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// Head-to-commit latency of a fresh supervisor that starts at the head, polling every
/// `poll_ms`, with or without the `newHeads` subscription.
async fn follow_latency_with(l1: &Anvil, poll_ms: u64, ws: bool, samples: usize) -> Result<Vec<Duration>> {
    let mut spec = Spec::new(l1.url());
    spec.start_block = None;
    spec.l1_poll_ms = poll_ms;
    if ws {
        spec.extra_l1 = format!("ws_url = \"ws://{}\"\n", l1.addr());
    }
    let mut sup = Supervisor::start(&spec).await?;
    let n = l1.block_number().await?;
    wait_for("at the head (and subscribed)", Duration::from_secs(60), Duration::from_millis(5), || async {
        let subscribed = !ws || sup.metric("l1_new_heads_subscribed").await? == 1.0;
        Ok((sup.l1_latest().await? == Some(n) && subscribed).then_some(()))
    })
    .await?;
    let latencies = follow_latency(&sup, l1, samples, poll_ms.min(1000)).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(latencies)
}

fn p50_p99(l: &[Duration]) -> String {
    format!("{:.1} ms / {:.1} ms", percentile(l, 0.5).as_secs_f64() * 1e3, percentile(l, 0.99).as_secs_f64() * 1e3)
}

fn sup_pid(sup: &Supervisor) -> Result<u32> {
    sup.pid().context("supervisor not running")
}
