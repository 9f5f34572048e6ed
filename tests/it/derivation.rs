//! The derivation log from a rollup node (`rollup_rpc_url`), against the stand-in
//! [`RollupNode`] over real anvil L1 and L2 nodes: each L2 block is recorded as derived from
//! exactly the L1 block the rollup node declared (with `optimism_safeHeadAtL1Block`), or from
//! an L1 block at or after it that the node reported (without); the chain's finalized block
//! follows our own L1 finality. And an L2 node reset behind the index (restored from an older
//! snapshot, or re-synced on another history) rewinds the log and re-records it.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result, ensure};
use rollup_supervisor_storage::ChainsDb;
use serde_json::{Value, json};

use crate::{
    harness::{Anvil, AnvilOptions, BlockId, Derivation, RollupNode, consts::L2_CHAIN_ID, to_hex, wait_for},
    supervisor::{ChainSpec, Spec, Supervisor, hex_u64},
};

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const L2: u64 = L2_CHAIN_ID;
const LAG: u64 = 3;

fn number(v: &Value) -> Result<u64> {
    hex_u64(v["number"].as_str().context("number")?)
}

/// `(number, hash)` of the L1 block `supervisor_derivedFrom` names for L2 block `l2`.
async fn derived_from(sup: &Supervisor, l2: u64) -> Result<(u64, String)> {
    let b = sup.ok("supervisor_derivedFrom", json!([to_hex(L2), to_hex(l2)])).await?;
    Ok((number(&b)?, b["hash"].as_str().context("hash")?.to_owned()))
}

async fn local_safe(sup: &Supervisor) -> Result<Option<u64>> {
    match sup.call("supervisor_localSafe", json!([to_hex(L2)])).await? {
        Ok(pair) => Ok(Some(number(&pair["derived"])?)),
        Err(_) => Ok(None),
    }
}

struct Nodes {
    l1: Anvil,
    l2: Anvil,
    rollup: RollupNode,
    sup: Supervisor,
}

async fn start(safe_head_db: bool) -> Result<Nodes> {
    // finalized = latest - 8 on this L1.
    let l1 = Anvil::spawn(AnvilOptions { slots_in_an_epoch: Some(4), ..AnvilOptions::default() }).await?;
    let l2 = Anvil::spawn(AnvilOptions { chain_id: Some(L2), ..AnvilOptions::default() }).await?;
    l1.mine(20).await?;
    l2.mine(10).await?;
    let rollup = RollupNode::start(&l1.url(), &l2.url(), Derivation { lag: LAG, per_l1: 2, safe_head_db }).await?;
    let sup = Supervisor::start(&rollup_spec(&l1, &l2, &rollup)).await?;
    wait_for("the log's first entry", WAIT, POLL, || async { local_safe(&sup).await }).await?;
    Ok(Nodes { l1, l2, rollup, sup })
}

/// Waits until the supervisor has polled the rollup node at the L1 node's current head (the
/// stand-in derives when asked) and the log holds what the rollup node made safe then; that
/// safe block.
async fn wait_polled(sup: &Supervisor, l1: &Anvil, rollup: &RollupNode) -> Result<u64> {
    let fully = l1.block_number().await?.saturating_sub(LAG).max(1) - 1;
    wait_for(&format!("a poll reporting L1 block {fully} fully derived, recorded"), WAIT, POLL, || async {
        let safe = rollup.safe().await;
        let polled = rollup.reported().await.contains(&fully);
        Ok((polled && local_safe(sup).await? == Some(safe)).then_some(safe))
    })
    .await
    .with_context(|| sup.log_text())
}

/// L1 and L2 go on, several L1 blocks at a time now and then, so that polls skip blocks (every
/// fourth round waits until the supervisor has polled the rollup node at this round's L1 head);
/// then waits until the log has everything the rollup node made safe.
async fn run(n: &Nodes) -> Result<u64> {
    for round in 0..30u64 {
        n.l1.mine(1 + round % 3).await?;
        n.l2.mine(3).await?;
        if round % 4 == 0 {
            wait_polled(&n.sup, &n.l1, &n.rollup).await?;
        }
    }
    let safe = wait_for("the log reaching the rollup node's safe block", WAIT, POLL, || async {
        let safe = n.rollup.safe().await;
        let recorded = local_safe(&n.sup).await?;
        Ok((recorded == Some(safe) && safe > 10).then_some(safe))
    })
    .await
    .with_context(|| n.sup.log_text())?;
    Ok(safe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_safe_head_at_l1_block_every_l2_block_has_the_exact_source_the_rollup_node_declared() -> Result<()> {
    let n = start(true).await?;
    let first = local_safe(&n.sup).await?.context("anchor")?;
    let safe = run(&n).await?;
    let declared = n.rollup.declared().await;
    let l1_head = n.l1.block_number().await?;
    for k in first + 1..=safe {
        let (source, hash) = derived_from(&n.sup, k).await?;
        ensure!(source == declared[&k], "L2 block {k}: recorded source {source}, declared {}", declared[&k]);
        ensure!(hash == n.l1.block_required(BlockId::Number(source)).await?.hash, "L2 block {k}: source hash");
    }
    // The sources trail the L1 head by the derivation lag: "observed as of" would have named it.
    let newest = derived_from(&n.sup, safe).await?.0;
    ensure!(newest < l1_head - LAG + 1, "newest source {newest}, L1 head {l1_head}");
    // As of each L1 block, the log's answer is the rollup node's safe head as of it.
    let as_of: BTreeMap<u64, u64> = n.rollup.safe_as_of().await;
    let log_start = derived_from(&n.sup, first).await?.0;
    for (l1, l2) in as_of.range(log_start..=newest) {
        let at = n.sup.ok("supervisor_derivedAt", json!([to_hex(L2), to_hex(*l1)])).await?;
        ensure!(number(&at)? == *l2, "derivedAt({l1}) = {at}, the rollup node says {l2}");
    }
    finality_follows_our_l1(&n).await
}

/// `supervisor_finalized` is the newest L2 block derived from an L1 block at or below our
/// finalized L1 block, whatever the rollup node calls finalized (the stand-in says genesis).
async fn finality_follows_our_l1(n: &Nodes) -> Result<()> {
    let (l1, l2) = wait_for("a finalized L2 block", WAIT, POLL, || async {
        let l1 = n.sup.call("supervisor_finalizedL1", json!([])).await?;
        let l2 = n.sup.call("supervisor_finalized", json!([to_hex(L2)])).await?;
        Ok(match (l1, l2) {
            (Ok(l1), Ok(l2)) => Some((l1, l2)),
            _ => None,
        })
    })
    .await?;
    let at = n.sup.ok("supervisor_derivedAt", json!([to_hex(L2), l1["number"]])).await?;
    ensure!(at["hash"] == l2["hash"] && number(&l2)? > 0, "finalized {l2} is derivedAt(finalized L1 {l1}) = {at}");
    let source = derived_from(&n.sup, number(&l2)?).await?.0;
    ensure!(source <= number(&l1)?, "the finalized L2 block is derived from L1 {source}, above the finalized {l1}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_safe_head_at_l1_block_sources_are_the_first_reported_l1_block_at_or_after_the_declared_one()
-> Result<()> {
    let n = start(false).await?;
    let first = local_safe(&n.sup).await?.context("anchor")?;
    let safe = run(&n).await?;
    let (declared, reported) = (n.rollup.declared().await, n.rollup.reported().await);
    let (mut late, mut worst) = (0, 0);
    for k in first + 1..=safe {
        let (source, _) = derived_from(&n.sup, k).await?;
        ensure!(
            source >= declared[&k],
            "L2 block {k}: recorded source {source} is before the declared {}",
            declared[&k]
        );
        ensure!(reported.contains(&source), "L2 block {k}: source {source} was never reported as fully derived");
        late += u64::from(source > declared[&k]);
        worst = worst.max(source - declared[&k]);
    }
    ensure!(n.sup.log_text().matches("does not serve optimism_safeHeadAtL1Block").count() == 1, "said once");
    eprintln!(
        "bounded attribution: {late} of {} L2 blocks attributed after their declared source, by at most {worst} L1 blocks",
        safe - first
    );
    finality_follows_our_l1(&n).await
}

/// An L2 node restored from an older snapshot (a shorter chain with the same history), then
/// re-synced on another history: the log rewinds to what the node still has and re-records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_node_reset_behind_the_index_rewinds_the_log_and_re_records_it() -> Result<()> {
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    l1.mine(5).await?;
    let mut node = Snapshotted::start().await?;
    let l2 = &mut node.l2;
    let mut spec = Spec::new(l1.url());
    spec.chains.push(ChainSpec::new(L2, l2.url(), "latest"));
    let mut sup = Supervisor::start(&spec).await?;
    l2.mine(20).await?;
    wait_recorded(&sup, l2, 30).await?;

    // Restored from the snapshot at block 10: blocks 11..=30 are gone from the node.
    node.restore().await?;
    let l2 = &mut node.l2;
    let resets = "node_resets_total{watcher=\"l2_901\"}";
    wait_for("the reset seen", WAIT, POLL, || async { Ok((sup.metric(resets).await? >= 1.0).then_some(())) })
        .await
        .with_context(|| sup.log_text())?;
    ensure!(sup.log_text().contains("the node no longer has the stored tip"), "said");
    l2.mine(5).await?;
    // The log links by parent hash, so the node's block 15 at the tip means 11..=15 are its too.
    wait_recorded(&sup, l2, 15).await?;
    let stale = sup.call("supervisor_derivedFrom", json!([to_hex(L2), to_hex(16)])).await?;
    ensure!(stale.is_err(), "no stale row above the node's head: {stale:?}");

    // Re-synced on another history (a fresh chain): nothing recorded is the node's any more.
    l2.restart_with(AnvilOptions { chain_id: Some(L2), ..AnvilOptions::default() }).await?;
    l2.mine(20).await?;
    wait_recorded(&sup, l2, 20).await?;
    ensure!(sup.metric("actor_restarts_total{actor=\"l2_901\"}").await? == 0.0, "no restart: {}", sup.log_text());
    ensure!(stop_and_compare(&mut sup, l2).await? > 0);
    Ok(())
}

/// A supervisor config whose one chain takes its derivation from `rollup`.
fn rollup_spec(l1: &Anvil, l2: &Anvil, rollup: &RollupNode) -> Spec {
    let mut spec = Spec::new(l1.url());
    let mut chain = ChainSpec::new(L2, l2.url(), "latest");
    chain.extra = format!("rollup_rpc_url = {:?}\n", rollup.url());
    spec.chains.push(chain);
    spec
}

/// An L2 anvil running from a snapshot of its chain at block 10, which it can be restored to.
struct Snapshotted {
    l2: Anvil,
    snapshot: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Snapshotted {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let snapshot = dir.path().join("l2-at-10.json");
        let dump = AnvilOptions { chain_id: Some(L2), dump_state: Some(snapshot.clone()), ..AnvilOptions::default() };
        let mut l2 = Anvil::spawn(dump).await?;
        l2.mine(10).await?;
        l2.shutdown().await?;
        let mut node = Snapshotted { l2, snapshot, _dir: dir };
        node.restore().await?;
        Ok(node)
    }

    /// Restarts the node from the snapshot: its chain ends at block 10 again.
    async fn restore(&mut self) -> Result<()> {
        let load =
            AnvilOptions { chain_id: Some(L2), load_state: Some(self.snapshot.clone()), ..AnvilOptions::default() };
        self.l2.restart_with(load).await?;
        ensure!(self.l2.block_number().await? == 10, "the snapshot reloads at block 10");
        Ok(())
    }
}

async fn wait_recorded(sup: &Supervisor, l2: &Anvil, number: u64) -> Result<()> {
    let hash = l2.block_required(BlockId::Number(number)).await?.hash;
    wait_for(&format!("L2 block {number} recorded"), WAIT, POLL, || async {
        let pair = sup.call("supervisor_localSafe", json!([to_hex(L2)])).await?;
        Ok(pair.ok().filter(|p| p["derived"]["hash"] == hash.as_str()).map(|_| ()))
    })
    .await
    .with_context(|| sup.log_text())
}

/// The same with a rollup node: the L2 node is restored from an older snapshot and the rollup
/// node re-derives from there; the log rewinds with it and records the re-derivation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_node_and_l2_node_reset_behind_the_index_rewind_the_log() -> Result<()> {
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    l1.mine(20).await?;
    let mut node = Snapshotted::start().await?;
    let rollup =
        RollupNode::start(&l1.url(), &node.l2.url(), Derivation { lag: LAG, per_l1: 2, safe_head_db: true }).await?;
    let mut sup = Supervisor::start(&rollup_spec(&l1, &node.l2, &rollup)).await?;
    let l2 = &node.l2;
    l2.mine(20).await?;
    for _ in 0..12 {
        l1.mine(1).await?;
        wait_polled(&sup, &l1, &rollup).await?;
    }
    let before = local_safe(&sup).await?.context("recorded")?;
    ensure!(before > 20, "recorded up to {before}");

    node.restore().await?;
    let l2 = &node.l2;
    rollup.reset().await;
    let resets = "node_resets_total{watcher=\"rollup_901\"}";
    wait_for("the reset seen", WAIT, POLL, || async { Ok((sup.metric(resets).await? >= 1.0).then_some(())) })
        .await
        .with_context(|| sup.log_text())?;
    l2.mine(6).await?;
    l1.mine(5).await?;
    wait_for("the re-derivation recorded", WAIT, POLL, || async {
        let safe = rollup.safe().await;
        Ok((safe > 10 && local_safe(&sup).await? == Some(safe)).then_some(()))
    })
    .await
    .with_context(|| sup.log_text())?;
    ensure!(sup.metric("actor_restarts_total{actor=\"rollup_901\"}").await? == 0.0, "{}", sup.log_text());
    ensure!(stop_and_compare(&mut sup, l2).await? > 0);
    Ok(())
}

/// Stops the supervisor (exit 0); every L2 row it holds is the node's block, hash by hash.
async fn stop_and_compare(sup: &mut Supervisor, l2: &Anvil) -> Result<usize> {
    ensure!(sup.stop().await? == 0, "exit code");
    let db = ChainsDb::open_as_is(sup.datadir())?;
    let tip = db.latest(L2)?.context("an empty log")?.derived;
    let rows = db.derived_range(L2, 0, tip.number)?;
    for row in &rows {
        let node = l2.block_required(BlockId::Number(row.number)).await?;
        ensure!(
            format!("{:#x}", row.hash) == node.hash,
            "row {} {} differs from the node's {}",
            row.number,
            row.hash,
            node.hash
        );
    }
    ensure!(db.check()?.is_ok(), "db check");
    Ok(rows.len())
}
