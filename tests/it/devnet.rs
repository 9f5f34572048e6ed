//! `rollup-supervisor devnet` end to end, in both report modes: the real binary starts its own
//! anvil nodes, stages one outage past a 2 s threshold, and once the report is pooled a user
//! pays far more than our default fees. Its timeline must show the report repriced above that
//! user, then the first block after the gap carrying the report first (reporter mode: our
//! `report` call at index 0, up since the block's own timestamp; `--pair`: the pair at indices 0
//! and 1) and the user after it, and the feed's two new rounds. The L2 node it prints must hold
//! that block; its endpoints must answer; SIGINT must stop everything it started (both anvil
//! processes, the temporary datadir) with exit 0.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader},
    process::{Child, ChildStdout, Command},
};

use crate::{
    harness::{
        RpcClient,
        consts::{DEV_ADDRESS_1, L2_CHAIN_ID},
        to_hex, wait_for,
    },
    supervisor::{BIN, hex_u64, scraped, signal},
};

/// Start-up, one outage and the endpoints line: about 11 s in a debug build.
const WAIT: Duration = Duration::from_secs(90);
/// Our default `max_fee_per_gas_wei` (1 gwei), which the devnet keeps.
const DEFAULT_FLOOR_GWEI: u64 = 1;

/// The running devnet. Dropped before it exited (a failed assertion), it gets SIGINT and a
/// bounded wait, so that a failing test leaves no anvil behind either.
struct Devnet {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// Everything read from stdout so far.
    text: String,
}

impl Devnet {
    fn start(args: &[&str], stderr: &Path) -> Result<Self> {
        let mut child = Command::new(BIN)
            .arg("devnet")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr)?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start rollup-supervisor devnet")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        Ok(Self { child, stdout, text: String::new() })
    }

    /// Reads stdout up to and including the first line containing `marker`.
    async fn read_until(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        let reading = async {
            let mut line = String::new();
            loop {
                line.clear();
                if self.stdout.read_line(&mut line).await? == 0 {
                    anyhow::bail!("stdout closed before a line with {marker:?}");
                }
                self.text.push_str(&line);
                if line.contains(marker) {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(timeout, reading).await.with_context(|| format!("no {marker:?} within {timeout:?}"))?
    }

    /// SIGINT, then the exit code (within `timeout`) and the rest of stdout.
    async fn interrupt(&mut self, timeout: Duration) -> Result<i32> {
        signal(self.child.id().context("already exited")?, "INT")?;
        let status = tokio::time::timeout(timeout, self.child.wait()).await.context("no exit after SIGINT")??;
        self.stdout.read_to_string(&mut self.text).await?;
        status.code().context("ended by a signal")
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = signal(pid, "INT");
            // A drop cannot await `wait_for`: a bounded poll for the exit, with a thread sleep.
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The number right after the first `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The first whitespace-delimited word after `prefix` in `text`.
fn word_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text[text.find(prefix)? + prefix.len()..].split_whitespace().next()
}

fn the_line<'a>(text: &'a str, containing: &str) -> Result<&'a str> {
    text.lines().find(|l| l.contains(containing)).with_context(|| format!("no line with {containing:?} in:\n{text}"))
}

/// Where the first line containing `containing` starts in `text`.
fn at(text: &str, containing: &str) -> Result<usize> {
    text.find(containing).with_context(|| format!("no {containing:?} in:\n{text}"))
}

fn running(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn field_u128(tx: &Value, key: &str) -> Result<u128> {
    let hex = tx[key].as_str().with_context(|| format!("{key} in {tx}"))?;
    Ok(u128::from_str_radix(hex.trim_start_matches("0x"), 16)?)
}

/// One devnet run (reporter mode, or `--pair`): the timeline, the L2 node's block after the
/// gap, the supervisor's endpoints, then SIGINT and the cleanup.
async fn devnet_run(pair: bool) -> Result<()> {
    let logs = tempfile::tempdir()?;
    let stderr = logs.path().join("devnet.stderr");
    let started = Instant::now();
    let mut args = vec!["--threshold-secs", "2", "--outages", "1"];
    args.extend(["--rpc-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
    if pair {
        args.push("--pair");
    }
    let mut devnet = Devnet::start(&args, &stderr)?;
    let shown = devnet.read_until("Ctrl-C to stop", WAIT).await;
    let text = devnet.text.clone();
    shown.with_context(|| {
        format!("stdout:\n{text}\nstderr:\n{}", std::fs::read_to_string(&stderr).unwrap_or_default())
    })?;
    let to_endpoints = started.elapsed();

    let anvils = [
        number_after(&text, "L1 node up: anvil pid ").context("the L1 anvil's pid")?,
        number_after(&text, "L2 node up: anvil pid ").context("the L2 anvil's pid")?,
    ];
    assert!(anvils.iter().all(|pid| running(*pid)), "both anvil processes run: {anvils:?}");
    assert!(!text.contains("UNEXPECTED"), "{text}");

    // Set-up: the reporter holds the feed's role and allows the signer; or (pair) the signer
    // holds the role itself.
    let reporter = if pair {
        assert!(!text.contains("UptimeReporter deployed"), "{text}");
        the_line(&text, &format!("FEED_UPDATER_ROLE granted to {DEV_ADDRESS_1}"))?;
        None
    } else {
        let deployed = the_line(&text, "UptimeReporter deployed on L2 at ")?;
        let reporter = word_after(deployed, "UptimeReporter deployed on L2 at ").context("the reporter")?.to_owned();
        assert!(the_line(&text, "FEED_UPDATER_ROLE granted to the reporter")?.contains("true"), "{text}");
        assert!(the_line(&text, "setReporter(")?.contains("isReporter true"), "{text}");
        assert!(the_line(&text, "reporter mode: one report(down_ts) call to ")?.contains(&reporter), "{text}");
        Some(reporter)
    };
    assert!(the_line(&text, "default fees: floor 1 gwei")?.contains("cap 1000 gwei"), "{text}");

    // The outage as the timeline tells it: stop after block `last`, stall, report pooled.
    let last = number_after(&text, "L2 block production stopped after block ").context("the last block")?;
    the_line(&text, &format!("stall detected: L2 head {last} is "))?;
    // Nonces and round ids are 0 and #2 unless the supervisor saw a stall of its own before (a
    // block more than 2 s late on a busy machine): not asserted.
    let pooled_marker =
        if pair { "pair pre-positioned in the L2 pool: nonces " } else { "report pre-positioned in the L2 pool: " };
    let pooled = the_line(&text, pooled_marker)?;
    if pair {
        let nonce = number_after(pooled, "nonces ").context("nonce")?;
        assert!(pooled.contains(&format!("nonces {nonce},{} ", nonce + 1)), "{pooled}");
    }
    let down_ts = number_after(pooled, "down_ts=").context("down_ts")?;
    assert!(pooled.contains(&format!("(block {last}'s timestamp)")), "{pooled}");
    if let Some(reporter) = &reporter {
        assert!(pooled.contains(&format!("report({down_ts}) to the reporter {reporter}, nonce ")), "{pooled}");
    }

    // Then a user outbids our defaults by far, and the report is repriced above it before L2
    // resumes.
    let user = the_line(&text, "a user transaction ")?;
    let user_hash = word_after(user, "a user transaction ").context("the user's hash")?.trim_end_matches('…');
    let user_fee = number_after(user, "paying ").context("the user's max fee")?;
    let user_tip = number_after(user, "max fee / ").context("the user's tip")?;
    assert_eq!(number_after(user, "floor of "), Some(DEFAULT_FLOOR_GWEI), "{user}");
    assert!(user_fee > DEFAULT_FLOOR_GWEI && user_tip > DEFAULT_FLOOR_GWEI, "{user}");
    let repriced = the_line(&text, &format!("report repriced above a pending user paying {user_fee} gwei: now "))?;
    let now = number_after(repriced, ": now ").context("the repriced fee")?;
    assert!(now > user_fee, "{repriced}");
    assert!(at(&text, pooled_marker)? < at(&text, "a user transaction ")?, "the user comes after the pooled report");
    assert!(at(&text, "a user transaction ")? < at(&text, "report repriced above")?, "{text}");
    assert!(at(&text, "report repriced above")? < at(&text, "L2 block production resumed")?, "{text}");
    if pair {
        the_line(&text, "pair refreshed (2)")?;
    }

    // The first block after the gap: the report first, the user after it.
    let landed = the_line(&text, "L2 resumed: ")?;
    assert!(landed.contains(&format!("L2 resumed: block {} (", last + 1)), "{landed}");
    let (up_ts, user_index) = if pair {
        assert!(landed.contains(&format!("at indices 0 and 1: updateStatus(true, {down_ts}) ")), "{landed}");
        let up_ts = number_after(landed, "updateStatus(false, ").context("up_ts")?;
        (up_ts, 2)
    } else {
        assert!(landed.contains(&format!("the report first, at index 0: report({down_ts}) ")), "{landed}");
        let up_ts = number_after(landed, "and up since ").context("t_up")?;
        let own = format!(
            "emitting down since {down_ts} (block {last}'s timestamp) and up since {up_ts} = block {}'s own timestamp \
             (t_up == block.timestamp)",
            last + 1
        );
        assert!(landed.contains(&own), "{landed}");
        (up_ts, 1)
    };
    assert!(up_ts > down_ts, "{landed}");
    let follows = format!("the user transaction {user_hash}… paying {user_fee} gwei follows at index {user_index}");
    assert!(landed.contains(&follows), "{landed}");

    // The feed's new rounds: down since the last block's timestamp, then up since t_up (reporter
    // mode: the including block's own timestamp).
    let rounds = the_line(&text, "feed rounds: ")?;
    let round = number_after(rounds, "feed rounds: #").context("round id")?;
    let up_at = if pair { String::new() } else { format!(" = block {}'s timestamp", last + 1) };
    assert!(
        rounds.contains(&format!(
            "#{round} down since {down_ts} = block {last}'s timestamp, #{} up since {up_ts}{up_at}",
            round + 1
        )),
        "{rounds}"
    );
    let what = if pair { "pair" } else { "report" };
    the_line(&text, &format!("1 of 1 outages reported with the {what} first"))?;

    // The L2 node it names holds that block: the report from our signer first, then the user,
    // who pays more than our defaults.
    let l2_url = word_after(&text, "), L2 ").context("the L2 URL")?;
    let block: Value = RpcClient::new(l2_url)?.rpc("eth_getBlockByNumber", json!([to_hex(last + 1), true])).await?;
    let txs = block["transactions"].as_array().context("transactions")?;
    let block_ts = hex_u64(block["timestamp"].as_str().context("timestamp")?)?;
    if pair {
        assert!(up_ts <= block_ts, "t_up {up_ts} is not after the block: {block}");
    } else {
        assert_eq!(block_ts, up_ts, "t_up == block.timestamp");
    }
    let report_len = if pair { 2 } else { 1 };
    for tx in txs.iter().take(report_len) {
        // The supervisor's signer: anvil's dev account #1.
        let from = tx["from"].as_str().map(str::to_lowercase);
        assert_eq!(from, Some(DEV_ADDRESS_1.to_lowercase()), "{tx}");
    }
    if let Some(reporter) = &reporter {
        assert_eq!(txs[0]["to"].as_str().map(str::to_lowercase), Some(reporter.to_lowercase()), "{block}");
    }
    let user_tx = txs.get(user_index).context("a transaction after the report")?;
    assert!(user_tx["hash"].as_str().is_some_and(|h| h.starts_with(user_hash)), "{block}");
    assert!(field_u128(user_tx, "maxFeePerGas")? > u128::from(DEFAULT_FLOOR_GWEI) * 1_000_000_000, "{user_tx}");
    assert!(field_u128(user_tx, "maxPriorityFeePerGas")? > u128::from(DEFAULT_FLOOR_GWEI) * 1_000_000_000);

    // The endpoints it prints answer.
    let rpc_url = word_after(&text, "JSON-RPC  ").context("the JSON-RPC URL")?;
    let metrics_url = word_after(&text, "metrics   ").context("the metrics URL")?;
    let status: Value = RpcClient::new(rpc_url)?.rpc("supervisor_uptimeStatus", json!([L2_CHAIN_ID])).await?;
    let outage = &status["lastOutage"];
    assert_eq!(outage["result"], json!({ "status": "landed", "first": true }), "{status}");
    assert_eq!(outage["includedIn"], json!(last + 1), "{status}");
    assert_eq!(outage["upTs"], json!(up_ts), "{status}");
    assert_eq!(outage["landedTxs"].as_array().map(Vec::len), Some(report_len), "{status}");
    let scrape = reqwest::get(metrics_url).await?.text().await?;
    let landed_first = scraped(&scrape, "rollup_supervisor_injections_total{chain=\"901\",result=\"landed_first\"}");
    assert!(landed_first >= Some(1.0), "{scrape}");
    let repriced = scraped(&scrape, "rollup_supervisor_report_repriced_total{chain=\"901\"}");
    assert!(repriced >= Some(1.0), "{scrape}");

    // SIGINT: everything it started stops, exit 0.
    let datadir = PathBuf::from(word_after(&text, "files     ").context("the datadir")?);
    assert!(datadir.is_dir());
    let code = devnet.interrupt(Duration::from_secs(30)).await?;
    let text = devnet.text.clone();
    assert_eq!(code, 0, "{text}");
    for (name, pid) in ["L1", "L2"].into_iter().zip(anvils) {
        assert!(text.contains(&format!("{name} anvil (pid {pid}) stopped")), "{text}");
    }
    wait_for("both anvil processes gone", Duration::from_secs(5), Duration::from_millis(50), || async {
        Ok(anvils.iter().all(|pid| !running(*pid)).then_some(()))
    })
    .await?;
    ensure!(!datadir.exists(), "the temporary datadir {} is still there", datadir.display());
    eprintln!(
        "devnet{}: endpoints line after {to_endpoints:?}, stopped after {:?}",
        if pair { " --pair" } else { "" },
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_reports_with_the_reporter_first_after_the_gap_ahead_of_a_user_and_stops_everything_on_sigint()
-> Result<()> {
    devnet_run(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_pair_mode_lands_the_pair_at_indices_0_and_1_ahead_of_a_user() -> Result<()> {
    devnet_run(true).await
}
