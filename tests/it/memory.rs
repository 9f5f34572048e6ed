//! Issue 9 item 4: memory does not follow what a node sends. A hostile L1 node answers every
//! `eth_getBlockByNumber` with a 200 MB body and every batch with 50 MB of padding per item; the
//! supervisor refuses each answer past its bound (`answer larger than N bytes`), keeps running
//! with its peak RSS bounded, and records the chain once the honest node is behind the proxy again.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::{
    harness::{Anvil, AnvilOptions, HostileNode, wait_for},
    l1::stop_and_compare,
    supervisor::{Spec, Supervisor},
};

const WAIT: Duration = Duration::from_secs(60);
/// The bound on the supervisor's peak RSS under the hostile node.
const MAX_PEAK_RSS: u64 = 100 << 20;

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM")?;
    Ok(kib << 10)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_huge_answers_is_refused_and_memory_stays_bounded() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(50).await?;
    let node = HostileNode::start(anvil.addr()).await?;
    // The default bound: batch_size (100) × 64 KiB + 1 MiB.
    let spec = Spec::new(node.url());
    let mut sup = Supervisor::start(&spec).await?;
    let pid = sup.pid().context("pid")?;
    let head = |n: u64| {
        let anvil = &anvil;
        async move { anyhow::Ok(anvil.canonical_chain(n, n).await?[0].hash.clone()) }
    };
    sup.wait_l1(50, &head(50).await?, WAIT).await?;
    let normal = peak_rss(pid)?;

    // Hostile: every block answer is huge, while the chain grows (so both the heads and the
    // catch-up batches are asked for).
    node.set_hostile(true);
    anvil.mine(250).await?;
    wait_for("the supervisor refuses five huge answers", WAIT, Duration::from_millis(100), || async {
        let refused = sup.log_text().matches("answer larger than").count();
        Ok((refused >= 5 && node.huge_answers() >= 5).then_some(()))
    })
    .await
    .with_context(|| sup.log_text())?;
    let hostile = peak_rss(pid)?;
    eprintln!(
        "peak RSS (VmHWM): {:.1} MiB following an honest node, {:.1} MiB under the hostile one",
        mib(normal),
        mib(hostile)
    );
    let bound = format!("answer larger than {} bytes", 100 * (64 << 10) + (1 << 20));
    assert!(sup.log_text().contains(&bound), "the log says why: {}", sup.log_text());
    assert!(
        hostile < MAX_PEAK_RSS,
        "peak RSS {:.1} MiB under a hostile node (normal {:.1} MiB)",
        mib(hostile),
        mib(normal)
    );
    let (status, _) = sup.http_get("/healthz").await?;
    assert_eq!(status, 200, "still running");

    // Honest again: everything is recorded, without a gap.
    node.set_hostile(false);
    sup.wait_l1(300, &head(300).await?, WAIT).await?;
    eprintln!("peak RSS (VmHWM) at the end: {:.1} MiB", mib(peak_rss(pid)?));
    stop_and_compare(&mut sup, &anvil, 0, 300).await
}
