//! The L1 flow: catch-up, following, reorgs (live and while stopped), restarts and crashes.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::{
    harness::{Anvil, AnvilOptions, wait_for},
    supervisor::{Spec, Supervisor, hex_u64, l1_rows},
};

const WAIT: Duration = Duration::from_secs(60);

/// Stops the supervisor (SIGTERM → exit 0), then checks that its database holds exactly the
/// node's canonical chain from its first row to `head`, hash by hash, and passes `db check`.
pub async fn stop_and_compare(sup: &mut Supervisor, anvil: &Anvil, first: u64, head: u64) -> Result<()> {
    assert_eq!(sup.stop().await?, 0, "SIGTERM must end in exit 0\n{}", sup.log_text());
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "db check failed: {text}");
    let rows = l1_rows(&sup.db_inspect()?)?;
    let canonical: Vec<_> = anvil.canonical_chain(first, head).await?.into_iter().map(|b| (b.number, b.hash)).collect();
    assert_eq!(rows.len(), canonical.len(), "row count: no gap, no duplicate");
    assert_eq!(rows, canonical);
    Ok(())
}

async fn head(anvil: &Anvil) -> Result<(u64, String)> {
    let n = anvil.block_number().await?;
    let b = anvil.canonical_chain(n, n).await?;
    Ok((n, b[0].hash.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_follows_heads_and_resumes_after_restart_without_gap() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(300).await?;
    let spec = Spec::new(anvil.url());
    let mut sup = Supervisor::start(&spec).await?;
    let (n, hash) = head(&anvil).await?;
    sup.wait_l1(n, &hash, WAIT).await?;

    // anvil: safe = latest - 32, finalized = latest - 64.
    wait_for("safe and finalized heads", WAIT, Duration::from_millis(100), || async {
        let status = sup.ok("supervisor_syncStatus", json!([])).await?;
        let num = |k: &str| status["l1"][k]["number"].as_str().map(hex_u64).transpose();
        Ok((num("safe")? == Some(n - 32) && num("finalized")? == Some(n - 64)).then_some(()))
    })
    .await?;

    // Following: new blocks arrive one by one.
    for _ in 0..3 {
        anvil.mine(1).await?;
        let (n, hash) = head(&anvil).await?;
        sup.wait_l1(n, &hash, WAIT).await?;
    }
    let block = sup.ok("supervisor_l1BlockByNumber", json!(["0x64"])).await?;
    assert_eq!(block["hash"], json!(anvil.canonical_chain(100, 100).await?[0].hash));
    let missing = sup.call("supervisor_l1BlockByNumber", json!([100_000])).await?;
    assert!(missing.is_err_and(|e| { e["message"].as_str().is_some_and(|m| m.contains("not recorded")) }));

    stop_and_compare(&mut sup, &anvil, 0, 303).await?;

    // Stopped while the chain grows; restarted, it resumes where it left off.
    anvil.mine(50).await?;
    sup.restart(&spec).await?;
    let (n, hash) = head(&anvil).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    stop_and_compare(&mut sup, &anvil, 0, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reorgs_of_depth_1_5_and_30_end_equal_to_the_canonical_chain() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(100).await?;
    let mut sup = Supervisor::start(&Spec::new(anvil.url())).await?;
    let (n, hash) = head(&anvil).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    for depth in [1, 5, 30] {
        let reorg = anvil.reorg(depth, depth + 2).await?;
        let new_head = reorg.new_head().clone();
        sup.wait_l1(new_head.number, &new_head.hash, WAIT).await?;
    }
    let reorgs = sup.metric("reorgs_total{watcher=\"l1\"}").await?;
    assert!(reorgs >= 3.0, "{reorgs}");
    assert!(sup.metric("reorg_depth_blocks_count{watcher=\"l1\"}").await? >= 3.0);
    let n = anvil.block_number().await?;
    stop_and_compare(&mut sup, &anvil, 0, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_while_stopped_is_caught_at_start_up() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(80).await?;
    let spec = Spec::new(anvil.url());
    let mut sup = Supervisor::start(&spec).await?;
    let (n, hash) = head(&anvil).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    assert_eq!(sup.stop().await?, 0);

    // Same length: only the parent-hash check of the stored head can notice.
    let reorg = anvil.reorg(10, 10).await?;
    sup.restart(&spec).await?;
    sup.wait_l1(reorg.new_head().number, &reorg.new_head().hash, WAIT).await?;
    assert!(sup.log_text().contains("reorg: rewinding to the common ancestor"));
    stop_and_compare(&mut sup, &anvil, 0, reorg.new_head().number).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_catch_up_leaves_a_sound_database_and_a_restart_completes_it() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    // anvil mines slowly on a busy machine: give this one call time.
    crate::harness::RpcClient::with_timeout(anvil.url(), Duration::from_secs(180))?.mine(1000).await?;
    let mut spec = Spec::new(anvil.url());
    // One block per request and write: slow enough to be killed mid-way even on a busy machine.
    spec.batch_size = 1;
    let mut sup = Supervisor::start(&spec).await?;
    wait_for("some progress", WAIT, Duration::from_millis(5), || async {
        Ok(sup.l1_latest().await?.filter(|n| *n >= 200).map(|_| ()))
    })
    .await?;
    sup.kill9().await?;
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "after kill -9: {text}");
    let rows = l1_rows(&sup.db_inspect()?)?;
    assert!(rows.len() >= 200 && rows.len() < 1001, "killed mid-way, {} rows", rows.len());

    spec.batch_size = 500;
    sup.restart(&spec).await?;
    let (n, hash) = head(&anvil).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    stop_and_compare(&mut sup, &anvil, 0, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_depth_keeps_the_index_behind_the_head() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(50).await?;
    let mut spec = Spec::new(anvil.url());
    spec.extra_l1 = "confirmations = 5\n".into();
    let mut sup = Supervisor::start(&spec).await?;
    sup.wait_l1(45, &anvil.canonical_chain(45, 45).await?[0].hash, WAIT).await?;
    anvil.mine(1).await?;
    sup.wait_l1(46, &anvil.canonical_chain(46, 46).await?[0].hash, WAIT).await?;
    assert_eq!(sup.l1_latest().await?, Some(46), "never closer than 5 blocks to the head (51)");
    stop_and_compare(&mut sup, &anvil, 0, 46).await
}

/// With `l1.ws_url`, a new L1 block is recorded when the node announces it, not at the next
/// poll: with polling at 10 minutes, every block here can only come through the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_websocket_url_new_heads_are_recorded_when_announced() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(3).await?;
    let mut spec = Spec::new(anvil.url());
    spec.l1_poll_ms = 600_000;
    spec.extra_l1 = format!("ws_url = \"ws://{}\"\n", anvil.addr());
    let mut sup = Supervisor::start(&spec).await?;
    wait_for("subscribed", Duration::from_secs(30), Duration::from_millis(20), || async {
        Ok((sup.metric("l1_new_heads_subscribed").await? == 1.0).then_some(()))
    })
    .await?;
    for _ in 0..5 {
        anvil.mine(1).await?;
        let n = anvil.block_number().await?;
        let hash = anvil.canonical_chain(n, n).await?.remove(0).hash;
        sup.wait_l1(n, &hash, Duration::from_secs(10)).await?;
    }
    assert!(sup.metric("l1_heads_announced_total").await? >= 5.0);
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}
