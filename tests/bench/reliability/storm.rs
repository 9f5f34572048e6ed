//! The crash storm: `kill -9` over catch-up, following and live reorgs, `db check` after every
//! kill, then a hash-by-hash comparison of the whole database with both nodes' chains.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    common::{Report, Rng, block_ref, node_head, or_diagnose, tail, wait_caught_up, wait_derived_head},
    harness::{Anvil, AnvilOptions, RpcClient, consts::L2_CHAIN_ID, wait_for},
    supervisor::{ChainSpec, Spec, Supervisor, l1_rows},
};

const PART: &str = "crash storm";
const L2_CHAIN: u64 = L2_CHAIN_ID;
const WAIT: Duration = Duration::from_secs(120);
/// Catch-up reads this many blocks per request and write, so that it lasts long enough to be
/// killed in the middle (at the default 100 it records ~30 000 blocks/s).
const CATCH_UP_BATCH: u64 = 2;
/// How far catch-up goes, at most, between a restart and the next kill.
const CATCH_UP_MAX_ADVANCE: u64 = 400;
/// More L1 blocks are mined during catch-up whenever fewer than this are left to record: more
/// than a restart's advance, so that the kill still comes mid catch-up.
const CATCH_UP_REFILL_BELOW: u64 = 2 * CATCH_UP_MAX_ADVANCE;
/// One kill in this many happens before the process is ready (the database opening, the
/// servers binding), at a random moment after the launch.
const EARLY_EVERY: usize = 5;

/// The storm's counters.
#[derive(Debug, Default)]
struct Tally {
    kills: [usize; 3],
    early: usize,
    mid_catch_up: usize,
    reorgs: usize,
    reorgs_while_down: usize,
    db_check_failures: usize,
    first_failure: Option<String>,
}

/// Mines on L1 (and now and then on L2) at a random pace until stopped: the following phase.
struct Miner {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<u64>>,
}

impl Miner {
    fn start(l1: &Anvil, l2: &Anvil, mut rng: Rng) -> Result<Self> {
        let (l1, l2) = (RpcClient::new(l1.url())?, RpcClient::new(l2.url())?);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut mined = 0;
            while !flag.load(Ordering::SeqCst) {
                l1.mine(rng.range(1, 3)).await?;
                mined += 1;
                if rng.chance(40) {
                    l2.mine(1).await?;
                }
                // The pace of the chain, not a wait for a condition.
                tokio::time::sleep(rng.millis(40, 250)).await;
            }
            Ok(mined)
        });
        Ok(Self { stop, task })
    }

    async fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

pub async fn run(kills: usize, seed: u64, short: bool, report: &mut Report) -> Result<()> {
    let started = Instant::now();
    let mut rng = Rng::derive(seed, 1);
    let premine: u64 = if short { 1_000 } else { 2_500 };
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    let l2 = Anvil::spawn(AnvilOptions { chain_id: Some(L2_CHAIN), ..Default::default() }).await?;
    // anvil mines slowly as its chain grows: chunks, each with a long timeout.
    let slow = RpcClient::with_timeout(l1.url(), Duration::from_secs(300))?;
    let mut mined = 0;
    while mined < premine {
        let n = (premine - mined).min(500);
        slow.mine(n).await.context("pre-mining L1")?;
        mined += n;
    }
    l2.mine(50).await?;
    eprintln!("crash storm: pre-mined {premine} L1 blocks in {:.1} s", started.elapsed().as_secs_f64());

    let mut spec = Spec::new(l1.url());
    spec.chains = vec![ChainSpec::new(L2_CHAIN, l2.url(), "latest")];
    spec.batch_size = CATCH_UP_BATCH;
    let phase_kills = [kills / 3, kills / 3, kills - 2 * (kills / 3)];
    let mut tally = Tally::default();
    // The first kill: as soon as it is ready, early in the catch-up.
    let mut sup = Supervisor::start(&spec).await?;
    sup.kill9().await?;
    tally.kills[0] += 1;
    check_after_kill(&sup, &mut tally, "catch-up")?;

    // Catch-up: the index is behind the node by hundreds of blocks at every kill.
    for _ in 1..phase_kills[0] {
        let (node, _) = node_head(&l1).await?;
        let recorded = l1_rows(&sup.db_inspect()?)?.last().map_or(0, |r| r.0);
        if node.saturating_sub(recorded) < CATCH_UP_REFILL_BELOW {
            slow.mine(500).await.context("refilling the catch-up backlog")?;
        }
        if early_turn(&tally) {
            kill_early(&mut sup, &spec, &mut rng, &mut tally).await?;
        } else {
            sup.restart(&spec).await?;
            let before = sup.l1_latest().await?.unwrap_or(0);
            // Never past the node's head: nothing is mined meanwhile, so a target beyond it
            // would never be reached (the restart catches up fast, and it did happen).
            let target = (before + rng.range(1, CATCH_UP_MAX_ADVANCE)).min(node_head(&l1).await?.0);
            let progress = wait_for("catch-up progress before the kill", WAIT, Duration::from_millis(5), || async {
                Ok(sup.l1_latest().await?.filter(|n| *n >= target).map(|_| ()))
            })
            .await;
            or_diagnose(&sup, progress).await?;
            let at = sup.l1_latest().await?.unwrap_or(0);
            if at < node_head(&l1).await?.0 {
                tally.mid_catch_up += 1;
            }
            sup.kill9().await?;
        }
        tally.kills[0] += 1;
        check_after_kill(&sup, &mut tally, "catch-up")?;
    }

    // Following: the index is at the head, new blocks arrive while it runs.
    spec.batch_size = 100;
    let miner = Miner::start(&l1, &l2, Rng::derive(seed, 2))?;
    for _ in 0..phase_kills[1] {
        if early_turn(&tally) {
            kill_early(&mut sup, &spec, &mut rng, &mut tally).await?;
        } else {
            sup.restart(&spec).await?;
            // Caught up with the head of the restart, and following the blocks mined since.
            let (head, _) = node_head(&l1).await?;
            let progress =
                wait_for("a new block followed before the kill", WAIT, Duration::from_millis(10), || async {
                    Ok(sup.l1_latest().await?.filter(|n| *n > head).map(|_| ()))
                })
                .await;
            or_diagnose(&sup, progress).await?;
            // The kill's moment within the following, at random.
            tokio::time::sleep(rng.millis(0, 300)).await;
            sup.kill9().await?;
        }
        tally.kills[1] += 1;
        check_after_kill(&sup, &mut tally, "following")?;
    }
    let ticks = miner.finish().await.context("the miner")?;
    eprintln!("crash storm: following phase mined in {ticks} steps");

    // Reorgs: a reorg of depth 1..=5 while it runs, the kill at a random moment around it; one
    // in four happens while the process is down instead, for the start-up check to find.
    let reorg_client = Arc::new(RpcClient::new(l1.url())?);
    for i in 0..phase_kills[2] {
        let depth = rng.range(1, 6);
        let new_blocks = depth + rng.range(0, 3);
        if i % 4 == 3 {
            sup.restart(&spec).await?;
            or_diagnose(&sup, wait_caught_up(&sup, &l1, WAIT).await).await?;
            sup.kill9().await?;
            l1.reorg(depth, new_blocks).await.context("reorg while down")?;
            tally.reorgs_while_down += 1;
        } else {
            sup.restart(&spec).await?;
            or_diagnose(&sup, wait_caught_up(&sup, &l1, WAIT).await).await?;
            let client = reorg_client.clone();
            let reorg = tokio::spawn(async move { client.reorg(depth, new_blocks).await });
            // The kill's moment around the reorg (before, during its detection, after), at random.
            tokio::time::sleep(rng.millis(0, 600)).await;
            sup.kill9().await?;
            reorg.await?.context("live reorg")?;
        }
        if rng.chance(50) {
            l2.mine(1).await?;
        }
        tally.reorgs += 1;
        tally.kills[2] += 1;
        check_after_kill(&sup, &mut tally, "reorg")?;
    }

    // The end: restart, catch up, stop, compare everything.
    sup.restart(&spec).await?;
    let head = or_diagnose(&sup, wait_caught_up(&sup, &l1, WAIT).await).await?;
    let l2_head = match wait_derived_head(&sup, L2_CHAIN, &l2, Duration::from_secs(60)).await {
        Ok(n) => n,
        Err(e) => {
            let pair = sup.call("supervisor_localSafe", serde_json::json!([L2_CHAIN])).await;
            bail!(
                "{e:#}; the L2 node's head is {:?}, supervisor_localSafe({L2_CHAIN}) answers {pair:?}, the L1 head is {:?} \
                 (last kill: {}); supervisor log tail:\n{}",
                node_head(&l2).await?,
                node_head(&l1).await?,
                if (phase_kills[2] - 1) % 4 == 3 { "a reorg while down" } else { "around a live reorg" },
                tail(&sup.run_log_text(), 30)
            );
        }
    };
    let stop_code = sup.stop().await?;
    let (final_check, final_text) = sup.db_check()?;
    let dump = sup.db_inspect()?;
    let (l1_compared, l1_mismatches) = compare_l1(&dump, &l1, head).await?;
    let (l2_compared, l2_mismatches) = compare_l2(&dump, &l1, &l2, head, l2_head).await?;

    let total: usize = tally.kills.iter().sum();
    report.add(
        PART,
        "kill -9",
        &format!(
            "{total} ({} catch-up, {} following, {} reorg; {} before ready; {} mid catch-up)",
            tally.kills[0], tally.kills[1], tally.kills[2], tally.early, tally.mid_catch_up
        ),
        total >= kills,
    );
    report.add(
        PART,
        "reorgs (depth 1-5)",
        &format!("{} ({} while down)", tally.reorgs, tally.reorgs_while_down),
        tally.reorgs == tally.kills[2],
    );
    let failure = tally.first_failure.as_deref().map_or(String::new(), |t| format!("; first: {t}"));
    report.add(
        PART,
        "db check failures after a kill",
        &format!("{} of {total}{failure}", tally.db_check_failures),
        tally.db_check_failures == 0,
    );
    report.add(PART, "SIGTERM exit code at the end", &stop_code.to_string(), stop_code == 0);
    report.add(
        PART,
        "final db check",
        &if final_check == 0 { "0".to_owned() } else { format!("{final_check}: {final_text}") },
        final_check == 0,
    );
    report.add(
        PART,
        "L1 hash mismatches",
        &format!("{l1_mismatches} of {l1_compared} rows (blocks 0..={head})"),
        l1_mismatches == 0,
    );
    report.add(
        PART,
        "L2 derivation mismatches",
        &format!("{l2_mismatches} of {l2_compared} entries (derivation head {l2_head} = node head)"),
        l2_mismatches == 0,
    );
    report.add(PART, "time", &format!("{:.1} s", started.elapsed().as_secs_f64()), true);
    Ok(())
}

/// Whether the next kill is one of the early ones: every `EARLY_EVERY`th kill of the catch-up
/// and following phases.
fn early_turn(tally: &Tally) -> bool {
    (tally.kills[0] + tally.kills[1]) % EARLY_EVERY == EARLY_EVERY - 1
}

/// A kill at a random moment within the first 400 ms after the launch, ready or not.
async fn kill_early(sup: &mut Supervisor, spec: &Spec, rng: &mut Rng, tally: &mut Tally) -> Result<()> {
    sup.relaunch(spec)?;
    // The kill's moment, at random: the point of this kill is that nothing is awaited.
    tokio::time::sleep(rng.millis(0, 400)).await;
    sup.kill9().await?;
    tally.early += 1;
    Ok(())
}

fn check_after_kill(sup: &Supervisor, tally: &mut Tally, phase: &str) -> Result<()> {
    let (code, text) = sup.db_check()?;
    if code != 0 {
        tally.db_check_failures += 1;
        eprintln!("crash storm: db check exit {code} after a kill in {phase}:\n{text}");
        if tally.first_failure.is_none() {
            tally.first_failure = Some(format!(
                "{phase} kill {}: exit {code}: {}\nsupervisor log tail:\n{}",
                tally.kills.iter().sum::<usize>(),
                text.trim(),
                tail(&sup.run_log_text(), 20)
            ));
            if let Some(t) = &tally.first_failure {
                eprintln!("{t}");
            }
        }
    }
    Ok(())
}

/// Stored L1 rows against the node's canonical chain `0..=head`: rows compared, mismatches
/// (a wrong hash, a missing height, or a row the canonical chain does not have).
async fn compare_l1(dump: &serde_json::Value, l1: &Anvil, head: u64) -> Result<(usize, usize)> {
    let rows = l1_rows(dump)?;
    let canonical = l1.canonical_chain(0, head).await?;
    let stored: HashMap<u64, &str> = rows.iter().map(|(n, h)| (*n, h.as_str())).collect();
    let mut mismatches = canonical.iter().filter(|b| stored.get(&b.number) != Some(&b.hash.as_str())).count();
    mismatches += rows.iter().filter(|(n, _)| *n > head).count();
    mismatches += rows.len().saturating_sub(stored.len()); // duplicates
    for b in canonical.iter().filter(|b| stored.get(&b.number) != Some(&b.hash.as_str())).take(5) {
        eprintln!("crash storm: L1 {} is {} on the node, {:?} stored", b.number, b.hash, stored.get(&b.number));
    }
    Ok((rows.len(), mismatches))
}

/// Every derivation entry of the L2 chain: its L1 source must be the L1 node's canonical block
/// and its derived block the L2 node's; the last entry must be the L2 head.
async fn compare_l2(
    dump: &serde_json::Value,
    l1: &Anvil,
    l2: &Anvil,
    l1_head: u64,
    l2_head: u64,
) -> Result<(usize, usize)> {
    let log = dump["chains"][L2_CHAIN.to_string()]["log"].as_array().context("no derivation log")?;
    if log.is_empty() {
        bail!("empty derivation log for chain {L2_CHAIN}");
    }
    let l1_canon: HashMap<u64, String> =
        l1.canonical_chain(0, l1_head).await?.into_iter().map(|b| (b.number, b.hash)).collect();
    let l2_canon: HashMap<u64, String> =
        l2.canonical_chain(0, l2_head).await?.into_iter().map(|b| (b.number, b.hash)).collect();
    let mut mismatches = 0;
    for entry in log {
        let (sn, sh) = block_ref(&entry["source"])?;
        let (dn, dh) = block_ref(&entry["derived"])?;
        if l1_canon.get(&sn) != Some(&sh) || l2_canon.get(&dn) != Some(&dh) {
            if mismatches < 5 {
                eprintln!("crash storm: derivation entry not canonical: {entry}");
            }
            mismatches += 1;
        }
    }
    let last = block_ref(&log[log.len() - 1]["derived"])?;
    if l2_canon.get(&l2_head) != Some(&last.1) || last.0 != l2_head {
        eprintln!("crash storm: last derivation entry {last:?} is not the L2 head {l2_head}");
        mismatches += 1;
    }
    Ok((log.len(), mismatches))
}
