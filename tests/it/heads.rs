//! The node's labelled heads and its latest block, when the node answers but lies or stalls:
//! a lying safe/finalized block never reaches the database (and a database an earlier build
//! poisoned is reported and repaired), a `null` or frozen latest block is a failure that is
//! counted, said once and makes `/readyz` fail.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, ensure};
use rollup_supervisor_storage::{BlockRef, ChainsDb, HeadKind, test_utils::write_head_unchecked};
use serde_json::{Value, json};

use crate::{
    harness::{Anvil, AnvilOptions, Proxy, rewrite_block_tags, to_hex, wait_for},
    supervisor::{BIN, Spec, Supervisor, hex_u64, readyz_check},
};

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// 2^63 - 1: the finalized number of the reliability run that put the watcher in a restart loop.
const FAR: u64 = (1 << 63) - 1;

/// A block header at `number` that no chain has: what a lying node names.
fn lying_block(number: u64) -> Value {
    json!({
        "number": to_hex(number),
        "hash": format!("0x{:064x}", 0xdead_0000_u64 + (number & 0xffff)),
        "parentHash": format!("0x{:064x}", 0xbeef_u64),
        "timestamp": to_hex(1_700_000_000),
    })
}

fn fake_ref(number: u64) -> BlockRef {
    BlockRef {
        number,
        hash: format!("0x{:064x}", 0xdead_0000_u64 + (number & 0xffff)).parse().expect("hash"),
        parent_hash: format!("0x{:064x}", 0xbeef_u64).parse().expect("hash"),
        timestamp: 1_700_000_000,
    }
}

async fn hash_at(anvil: &Anvil, n: u64) -> Result<String> {
    Ok(anvil.canonical_chain(n, n).await?[0].hash.clone())
}

/// The recorded `(number, hash)` of the latest, safe and finalized L1 heads.
type Heads = [Option<(u64, String)>; 3];

async fn heads(sup: &Supervisor) -> Result<Heads> {
    let status = sup.ok("supervisor_syncStatus", json!([])).await?;
    let head = |k: &str| -> Result<Option<(u64, String)>> {
        let h = &status["l1"][k];
        match (h["number"].as_str(), h["hash"].as_str()) {
            (Some(n), Some(hash)) => Ok(Some((hex_u64(n)?, hash.to_owned()))),
            _ => Ok(None),
        }
    };
    Ok([head("latest")?, head("safe")?, head("finalized")?])
}

/// What the issue asks of the recorded heads at every moment: safe and finalized are recorded
/// blocks (so never above latest) and finalized is not above safe.
async fn assert_heads_sound(sup: &Supervisor) -> Result<Heads> {
    let h = heads(sup).await?;
    let latest = h[0].as_ref().map_or(0, |(n, _)| *n);
    for (name, head) in [("safe", &h[1]), ("finalized", &h[2])] {
        let Some((n, hash)) = head else { continue };
        ensure!(*n <= latest, "{name} head {n} is above the recorded head {latest}");
        let row = sup.ok("supervisor_l1BlockByNumber", json!([n])).await?;
        ensure!(row["hash"].as_str() == Some(hash.as_str()), "{name} head {n} {hash} is not the recorded block {row}");
    }
    if let (Some((s, _)), Some((f, _))) = (&h[1], &h[2]) {
        ensure!(f <= s, "finalized {f} above safe {s}");
    }
    Ok(h)
}

/// Waits until `done` holds, checking [`assert_heads_sound`] at every poll: a broken head fails
/// at once, saying what is wrong.
async fn wait_sound<F, Fut>(sup: &Supervisor, what: &str, done: F) -> Result<()>
where
    F: Fn(Heads) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    wait_for(what, WAIT, POLL, || async {
        match assert_heads_sound(sup).await {
            Err(broken) => Ok(Some(Err(broken))),
            Ok(h) => Ok(done(h).await?.then_some(Ok(()))),
        }
    })
    .await?
}

/// Waits until the recorded safe and finalized heads are the node's (anvil: latest - 32 and
/// latest - 64), checking them at every poll.
async fn wait_honest_heads(sup: &Supervisor, anvil: &Anvil, latest: u64) -> Result<()> {
    let want = [
        Some((latest - 32, hash_at(anvil, latest - 32).await?)),
        Some((latest - 64, hash_at(anvil, latest - 64).await?)),
    ];
    wait_sound(sup, "the node's own safe and finalized blocks recorded", |h| {
        let ok = h[1..] == want;
        async move { Ok(ok) }
    })
    .await
}

/// The error of `/readyz`'s `l1` check; empty if it has none.
fn l1_error(body: &Value) -> &str {
    readyz_check(body, "l1")["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_safe_and_finalized_block_above_the_head_never_reaches_the_database() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(300).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    let mut sup = Supervisor::start(&Spec::new(proxy.url())).await?;
    sup.wait_l1(300, &hash_at(&anvil, 300).await?, WAIT).await?;
    wait_honest_heads(&sup, &anvil, 300).await?;

    // The reliability run's lie: "finalized" and "safe" are block head + 3, with a random hash.
    let lie = lying_block(303);
    proxy.rewrite(rewrite_block_tags(&["safe", "finalized"], move |_, _| lie.clone()));
    let before = proxy.rewritten();
    wait_sound(&sup, "several heads polls answered with the lie", |_| async { Ok(proxy.rewritten() >= before + 6) })
        .await?;
    let h = assert_heads_sound(&sup).await?;
    assert_eq!(h[2].as_ref().map(|(n, _)| *n), Some(236), "the lie is held, not stored");

    // The index goes on past the lie's height (it used to stop at 302: "conflict on L1 at block
    // 303") and drops the held lie when it records the real block 303.
    anvil.mine(5).await?;
    sup.wait_l1(305, &hash_at(&anvil, 305).await?, WAIT).await?;
    // (Said just after it is counted.)
    wait_sound(&sup, "the lie counted and said as contradicting the index", |_| async {
        Ok(sup.metric("l1_head_rejected_total{head=\"finalized\",reason=\"conflict\"}").await? >= 1.0
            && sup.log_text().contains("contradicts the L1 index: not stored"))
    })
    .await?;

    // The node tells the truth again: its answers are taken (they used to be refused with
    // "finality cannot move backwards from 303 to 241").
    proxy.restore();
    wait_honest_heads(&sup, &anvil, 305).await?;
    assert_eq!(sup.metric("actor_restarts_total{actor=\"l1\"}").await?, 0.0);
    crate::l1::stop_and_compare(&mut sup, &anvil, 0, 305).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finality_far_above_the_head_never_turns_a_later_reorg_into_a_restart_loop() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(100).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    let mut sup = Supervisor::start(&Spec::new(proxy.url())).await?;
    sup.wait_l1(100, &hash_at(&anvil, 100).await?, WAIT).await?;
    wait_honest_heads(&sup, &anvil, 100).await?;

    proxy.rewrite(rewrite_block_tags(&["finalized"], |_, _| lying_block(FAR)));
    let before = proxy.rewritten();
    wait_sound(&sup, "several heads polls answered with finalized = 2^63 - 1", |_| async {
        Ok(proxy.rewritten() >= before + 3)
    })
    .await?;
    proxy.restore();

    // A 3-block reorg well above the real finalized block (latest - 64) is an ordinary reorg.
    let reorg = anvil.reorg(3, 3).await?;
    sup.wait_l1(reorg.new_head().number, &reorg.new_head().hash, WAIT).await?;
    wait_honest_heads(&sup, &anvil, reorg.new_head().number).await?;
    assert_eq!(sup.metric("actor_restarts_total{actor=\"l1\"}").await?, 0.0, "{}", sup.log_text());
    assert!(!sup.log_text().contains("no longer canonical"), "{}", sup.log_text());
    crate::l1::stop_and_compare(&mut sup, &anvil, 0, reorg.new_head().number).await
}

/// Writes what an earlier build stored from a lying node: safe at head + 3 with a random hash,
/// finalized at 2^63 - 1. Returns once another process can open the database (sled releases
/// its lock in the background after the last handle is dropped).
async fn poison(sup: &Supervisor, head: u64) -> Result<()> {
    {
        let db = ChainsDb::open_as_is(sup.datadir())?;
        write_head_unchecked(&db, HeadKind::Safe, Some(fake_ref(head + 3)))?;
        write_head_unchecked(&db, HeadKind::Finalized, Some(fake_ref(FAR)))?;
    }
    wait_for("the database unlocked", WAIT, POLL, || async {
        let (_, text) = sup.db_check()?;
        Ok((!text.contains("could not acquire lock")).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_poisoned_by_lying_heads_is_reported_by_db_check_and_repaired() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(100).await?;
    let spec = Spec::new(anvil.url());
    let mut sup = Supervisor::start(&spec).await?;
    sup.wait_l1(100, &hash_at(&anvil, 100).await?, WAIT).await?;
    wait_honest_heads(&sup, &anvil, 100).await?;
    assert_eq!(sup.stop().await?, 0);

    // `db check` sees it (it used to say every invariant holds) and says how to repair it.
    poison(&sup, 100).await?;
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("finalized head #{FAR}")), "{text}");
    assert!(text.contains("is above the newest recorded L1 block 100"), "{text}");
    assert!(text.contains("safe head #103"), "{text}");
    assert!(text.contains("db repair-heads --datadir"), "{text}");

    // `db repair-heads` repairs it, says what it changed, and is a no-op the second time.
    let repair =
        || std::process::Command::new(BIN).args(["db", "repair-heads", "--datadir"]).arg(sup.datadir()).output();
    let out = repair()?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("repaired: finalized head #{FAR}")), "{said}");
    assert!(said.contains("repaired: safe head #103"), "{said}");
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "{text}");
    let again = String::from_utf8_lossy(&repair()?.stdout).into_owned();
    assert!(again.contains("nothing to repair"), "{again}");

    // Poisoned again, the supervisor repairs it when it starts (a restart used to keep it), and
    // the next reorg is followed (it used to be a restart loop).
    poison(&sup, 100).await?;
    sup.restart(&spec).await?;
    assert!(sup.log_text().contains("repaired an L1 head that broke the head invariants"), "{}", sup.log_text());
    let reorg = anvil.reorg(3, 3).await?;
    sup.wait_l1(reorg.new_head().number, &reorg.new_head().hash, WAIT).await?;
    wait_honest_heads(&sup, &anvil, reorg.new_head().number).await?;
    assert_eq!(sup.metric("actor_restarts_total{actor=\"l1\"}").await?, 0.0, "{}", sup.log_text());
    crate::l1::stop_and_compare(&mut sup, &anvil, 0, reorg.new_head().number).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_null_for_latest_is_counted_said_once_and_unready() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(20).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    let mut sup = Supervisor::start(&Spec::new(proxy.url())).await?;
    sup.wait_l1(20, &hash_at(&anvil, 20).await?, WAIT).await?;
    sup.wait_readyz(200, WAIT, |_| true).await?;

    // The node answers every request, `null` for its latest block, while the chain goes on.
    // (The proxy's switch can swallow the one request in flight on a pooled connection; that
    // request times out, and `/readyz` may name the timeout for a poll before the null.)
    proxy.rewrite(rewrite_block_tags(&["latest"], |_, _| Value::Null));
    anvil.mine(5).await?;
    sup.wait_readyz(503, WAIT, |body| l1_error(body).contains("answered null for its latest block")).await?;
    let nulls = "node_head_failures_total{watcher=\"l1\",kind=\"null\"}";
    wait_for("null answers counted", WAIT, POLL, || async { Ok((sup.metric(nulls).await? >= 10.0).then_some(())) })
        .await?;
    let warned = sup.log_text().matches("the node answers null for its latest block").count();
    assert_eq!(warned, 1, "said once per episode, not once per poll\n{}", sup.log_text());
    assert_eq!(sup.l1_latest().await?, Some(20), "nothing recorded from a node without a head");

    // It names its block again: recorded, ready, said.
    proxy.restore();
    sup.wait_l1(25, &hash_at(&anvil, 25).await?, WAIT).await?;
    sup.wait_readyz(200, WAIT, |_| true).await?;
    assert!(sup.log_text().contains("the node's latest block is live again"), "{}", sup.log_text());
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latest_block_that_stops_changing_while_the_node_answers_is_unready_after_the_bound() -> Result<()> {
    // The default bound is 120 s of an unchanged latest block.
    frozen_head_is_unready_after(None, Duration::from_secs(240)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_stall_bound_is_configurable() -> Result<()> {
    frozen_head_is_unready_after(Some(2), Duration::from_secs(30)).await
}

/// The node's latest block freezes: `/readyz` fails within `within` (the bound is
/// `l1.head_stall_secs`, or its default), the stall is counted and said once, and all clears
/// once the node moves again.
async fn frozen_head_is_unready_after(head_stall_secs: Option<u64>, within: Duration) -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(20).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    let mut spec = Spec::new(proxy.url());
    if let Some(secs) = head_stall_secs {
        spec.extra_l1 = format!("head_stall_secs = {secs}\n");
    }
    let mut sup = Supervisor::start(&spec).await?;
    sup.wait_l1(20, &hash_at(&anvil, 20).await?, WAIT).await?;

    // The node keeps naming block 20 as its latest while the chain goes on.
    let frozen: Value = anvil.rpc("eth_getBlockByNumber", json!([to_hex(20), false])).await?;
    let frozen_seen = Arc::new(AtomicBool::new(false));
    let seen = frozen_seen.clone();
    proxy.rewrite(rewrite_block_tags(&["latest"], move |_, _| {
        seen.store(true, Ordering::Relaxed);
        frozen.clone()
    }));
    anvil.mine(5).await?;
    // (With no block since block 20, the stall may be counted from before the switch: waited
    // for with the lie told at least once.)
    let unready = sup
        .wait_readyz(503, within, |body| {
            frozen_seen.load(Ordering::Relaxed)
                && l1_error(body).contains("#20")
                && l1_error(body).contains("has not changed for")
        })
        .await?;
    let bound = format!("(bound {} s)", head_stall_secs.unwrap_or(120));
    assert!(l1_error(&unready).contains(&bound), "{bound}: {unready}");
    // `/readyz` sees the stall grow between polls; the next poll counts it and says it.
    let stalled = "node_head_failures_total{watcher=\"l1\",kind=\"stalled\"}";
    wait_for("stalled polls counted", WAIT, POLL, || async { Ok((sup.metric(stalled).await? >= 5.0).then_some(())) })
        .await?;
    let warned = sup.log_text().matches("the node's latest block has not changed for longer than the bound").count();
    assert_eq!(warned, 1, "said once per episode\n{}", sup.log_text());

    proxy.restore();
    sup.wait_l1(25, &hash_at(&anvil, 25).await?, WAIT).await?;
    sup.wait_readyz(200, WAIT, |_| true).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}
