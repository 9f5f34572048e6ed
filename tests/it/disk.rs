//! A full disk: the datadir is on a tmpfs of its own, which a filler file fills while the
//! supervisor follows. Nothing the disk did not take is ever served, writing resumes without a
//! restart once the filler is deleted, and a stop then exits 0 with a database that matches the
//! node hash by hash.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); where the machine does not allow it, the test says
//! that it skipped and passes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use rollup_supervisor_storage::ChainsDb;
use serde_json::{Value, json};

use crate::{
    harness::{Anvil, AnvilOptions, BlockId, RpcClient, RpcError, consts::L2_CHAIN_ID, wait_for},
    supervisor::{ChainSpec, Spec, Supervisor, hex_u64, l1_rows, signal},
};

const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);
const L2: u64 = L2_CHAIN_ID;

/// A tmpfs mounted at a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` spells it: `2m`) at `dir`; `Ok(None)` where the
    /// machine does not allow mounting.
    fn mount(dir: &Path, size: &str) -> Result<Option<Tmpfs>> {
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        match out {
            Ok(out) if out.status.success() => Ok(Some(Tmpfs(dir.to_owned()))),
            Ok(out) => {
                eprintln!(
                    "SKIPPED disk::*: cannot mount a tmpfs here ({}); the disk-full test needs root or CAP_SYS_ADMIN",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                Ok(None)
            }
            Err(e) => {
                eprintln!("SKIPPED disk::*: no `mount` command ({e})");
                Ok(None)
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What the supervisor served, polled all along: the highest L1 block and L2 block it named.
#[derive(Default)]
struct Served {
    l1: Option<(u64, String)>,
    l2: Option<(u64, String)>,
    /// JSON-RPC errors (the database closed).
    refusals: u64,
}

fn block(v: &Value) -> Result<Option<(u64, String)>> {
    match (v["number"].as_str(), v["hash"].as_str()) {
        (Some(n), Some(h)) => Ok(Some((hex_u64(n)?, h.to_owned()))),
        _ => Ok(None),
    }
}

fn raise(slot: &mut Option<(u64, String)>, seen: Option<(u64, String)>) {
    if seen.as_ref().map(|s| s.0) > slot.as_ref().map(|s| s.0) {
        *slot = seen;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_serves_only_what_is_durable_and_writing_resumes_when_space_returns() -> Result<()> {
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    let l2 = Anvil::spawn(AnvilOptions { chain_id: Some(L2), ..AnvilOptions::default() }).await?;
    l1.mine(10).await?;
    l2.mine(10).await?;
    let mut spec = Spec::new(l1.url());
    spec.batch_size = 500;
    spec.chains.push(ChainSpec::new(L2, l2.url(), "latest"));

    let mut mounted = None;
    let mut sup = Supervisor::start_prepared(&spec, |dir| {
        mounted = Tmpfs::mount(dir, "16m")?;
        Ok(())
    })
    .await?;
    let Some(tmpfs) = mounted else {
        return Ok(());
    };
    let pid = sup.pid().context("pid")?;

    // Poll what the supervisor serves from the start until space returns.
    let served = Arc::new(Mutex::new(Served::default()));
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let (served, polling) = (served.clone(), polling.clone());
        let client = RpcClient::with_timeout(sup.rpc_url.clone(), Duration::from_secs(5))?;
        tokio::spawn(async move {
            while polling.load(Ordering::SeqCst) {
                match client.rpc::<Value>("supervisor_syncStatus", json!([])).await {
                    Ok(status) => {
                        let mut s = served.lock().expect("lock");
                        raise(&mut s.l1, block(&status["l1"]["latest"])?);
                        raise(&mut s.l2, block(&status["chains"][L2.to_string()]["localSafe"]["derived"])?);
                    }
                    Err(e) if e.downcast_ref::<RpcError>().is_some() => served.lock().expect("lock").refusals += 1,
                    Err(e) => return Err(e),
                }
                // The sampling pace of this poller: it records what is served, it awaits nothing.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(())
        })
    };

    // The supervisor follows; then the disk fills, and the next blocks find no space.
    let tip = l1.block_required(BlockId::Latest).await?;
    sup.wait_l1(tip.number, &tip.hash, WAIT).await?;
    let filler = tmpfs.0.join("filler");
    let dd = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).arg("bs=64k").output()?;
    ensure!(
        !dd.status.success() && String::from_utf8_lossy(&dd.stderr).contains("No space left"),
        "dd filled the disk"
    );
    l1.mine(300).await?;
    l2.mine(100).await?;
    wait_for("a write refused by the full disk", WAIT, POLL, || async {
        Ok((sup.metric("db_errors_total{op=\"record_l1\"}").await? > 0.0).then_some(()))
    })
    .await
    .with_context(|| sup.log_text())?;

    // What is durable, read from a copy taken with the process stopped (SIGSTOP), so that
    // nothing writes while it is copied.
    let copy = tempfile::tempdir()?;
    signal(pid, "STOP")?;
    let copied = Command::new("cp").arg("-a").arg(sup.datadir()).arg(copy.path().join("data")).status();
    signal(pid, "CONT")?;
    ensure!(copied?.success(), "cp failed");
    let (durable_l1, durable_l2) = {
        let db = ChainsDb::open_as_is(copy.path().join("data"))?;
        let report = db.check()?;
        ensure!(report.is_ok(), "the durable state holds every invariant: {report:?}");
        let l1 = db.latest_l1()?.context("no L1 row is durable")?;
        (l1, db.latest(L2)?.map(|p| p.derived))
    };

    // Nothing served was beyond what is durable: the disk is still full, so nothing became
    // durable since the copy either. One more query now, so that a state the disk refused is
    // caught however the poller was timed.
    if let Ok(status) = sup.call("supervisor_syncStatus", json!([])).await? {
        let mut s = served.lock().expect("lock");
        raise(&mut s.l1, block(&status["l1"]["latest"])?);
        raise(&mut s.l2, block(&status["chains"][L2.to_string()]["localSafe"]["derived"])?);
    }
    {
        let s = served.lock().expect("lock");
        let (n, hash) = s.l1.clone().context("nothing served before the disk filled")?;
        ensure!(
            n <= durable_l1.number,
            "served L1 block {n} but only {} is durable (what the disk did not take was served)",
            durable_l1.number
        );
        let at = ChainsDb::open_as_is(copy.path().join("data"))?.l1_block(n)?.context("served block not durable")?;
        ensure!(at.hash.to_string() == hash, "served L1 {n} {hash}, durable {}", at.hash);
        if let Some((n2, _)) = &s.l2 {
            let durable = durable_l2.map(|b| b.number);
            ensure!(Some(*n2) <= durable, "served L2 block {n2}, durable {durable:?}");
        }
    }
    ensure!(sup.metric("db_open").await? == 0.0, "the database is closed");
    let log = sup.log_text();
    ensure!(log.contains("No space left on device"), "the log names the disk's error:\n{log}");

    // While it is closed: the database check of /readyz fails, and queries are refused.
    let (code, body) = sup.http_get("/readyz").await?;
    ensure!(code == 503 && body.contains("\"db\""), "readyz while the disk is full: {code} {body}");
    let refused = sup.call("supervisor_syncStatus", json!([])).await?;
    let message = refused.as_ref().err().map(|e| e["message"].to_string()).unwrap_or_default();
    ensure!(message.contains("No space left on device"), "a query while closed is refused: {refused:?}");
    wait_for("the poller refused while closed", WAIT, POLL, || async {
        Ok((served.lock().expect("lock").refusals > 0).then_some(()))
    })
    .await?;

    let head = l1.block_number().await?;
    ensure!(
        durable_l1.number < head,
        "the disk filled before the new blocks were recorded ({} of {head})",
        durable_l1.number
    );

    // Space returns: writing resumes, in the same process, without a watcher restart.
    std::fs::remove_file(&filler)?;
    let tip = l1.canonical_chain(head, head).await?.remove(0);
    sup.wait_l1(head, &tip.hash, WAIT).await.with_context(|| sup.log_text())?;
    ensure!(sup.pid() == Some(pid), "the same process");
    ensure!(sup.metric("db_open").await? == 1.0);
    ensure!(sup.metric("actor_restarts_total{actor=\"l1\"}").await? == 0.0, "{}", sup.log_text());
    ensure!(sup.log_text().contains("reopened the database from disk: writing resumes from what is durable"));
    polling.store(false, Ordering::SeqCst);
    poller.await??;

    // A stop exits 0, and the disk holds the node's chain, hash by hash.
    let code = sup.stop().await?;
    ensure!(code == 0, "exit code after the episode: {code}\n{}", sup.run_log_text());
    let (code, out) = sup.db_check()?;
    ensure!(code == 0, "db check: {out}");
    let rows = l1_rows(&sup.db_inspect()?)?;
    let chain = l1.canonical_chain(0, head).await?;
    ensure!(rows.len() == chain.len(), "{} rows for {} blocks", rows.len(), chain.len());
    for ((n, hash), b) in rows.iter().zip(&chain) {
        if (*n, hash) != (b.number, &b.hash) {
            bail!("row {n} {hash} differs from the node's {} {}", b.number, b.hash);
        }
    }
    drop(tmpfs);
    Ok(())
}
