//! `rollup-supervisor devnet` end to end: the real binary starts its own anvil nodes, stages one
//! outage past a 2 s threshold, and its timeline must show the pair at indices 0 and 1 of the
//! first block after the gap and the feed's two new rounds; its endpoints must answer; SIGINT
//! must stop everything it started (both anvil processes, the temporary datadir) with exit 0.

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
    harness::wait_for,
    supervisor::{BIN, scraped, signal},
};

/// Start-up, one outage and the endpoints line: about 11 s in a debug build.
const WAIT: Duration = Duration::from_secs(90);

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

fn running(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_shows_an_outage_reported_first_after_the_gap_and_stops_everything_on_sigint() -> Result<()> {
    let logs = tempfile::tempdir()?;
    let stderr = logs.path().join("devnet.stderr");
    let started = Instant::now();
    let mut devnet = Devnet::start(
        &["--threshold-secs", "2", "--outages", "1", "--rpc-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        &stderr,
    )?;
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

    // The outage as the timeline tells it: stop after block `last`, stall, pair, refreshes.
    let last = number_after(&text, "L2 block production stopped after block ").context("the last block")?;
    the_line(&text, &format!("stall detected: L2 head {last} is "))?;
    // Nonces and round ids are 0,1 and #2,#3 unless the supervisor saw a stall of its own before
    // (a block more than 2 s late on a busy machine): not asserted.
    let pooled = the_line(&text, "pair pre-positioned in the L2 pool: nonces ")?;
    let nonce = number_after(pooled, "nonces ").context("nonce")?;
    assert!(pooled.contains(&format!("nonces {nonce},{} ", nonce + 1)), "{pooled}");
    let down_ts = number_after(pooled, "down_ts=").context("down_ts")?;
    assert!(pooled.contains(&format!("(block {last}'s timestamp)")), "{pooled}");
    the_line(&text, "pair refreshed (2)")?;

    // The first block after the gap carries the pair at indices 0 and 1, the user tx after it.
    let landed = the_line(&text, "L2 resumed: ")?;
    assert!(landed.contains(&format!("L2 resumed: block {} (", last + 1)), "{landed}");
    assert!(landed.contains(&format!("at indices 0 and 1: updateStatus(true, {down_ts}) ")), "{landed}");
    let up_ts = number_after(landed, "updateStatus(false, ").context("up_ts")?;
    assert!(up_ts > down_ts, "{landed}");
    assert!(landed.contains("the user transaction follows at index 2"), "{landed}");

    // The feed's new rounds: down since the last block's timestamp, then up since t_up.
    let rounds = the_line(&text, "feed rounds: ")?;
    let round = number_after(rounds, "feed rounds: #").context("round id")?;
    assert!(
        rounds.contains(&format!(
            "#{round} down since {down_ts} = block {last}'s timestamp, #{} up since {up_ts} ",
            round + 1
        )),
        "{rounds}"
    );
    the_line(&text, "1 of 1 outages reported with the pair first")?;

    // The endpoints it prints answer.
    let rpc_url = word_after(&text, "JSON-RPC  ").context("the JSON-RPC URL")?;
    let metrics_url = word_after(&text, "metrics   ").context("the metrics URL")?;
    let http = reqwest::Client::new();
    let status: Value = http
        .post(rpc_url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "supervisor_uptimeStatus", "params": [901] }))
        .send()
        .await?
        .json()
        .await?;
    let outage = &status["result"]["lastOutage"];
    assert_eq!(outage["result"], json!({ "status": "landed", "first": true }), "{status}");
    assert_eq!(outage["includedIn"], json!(last + 1), "{status}");
    let scrape = http.get(metrics_url).send().await?.text().await?;
    let landed_first = scraped(&scrape, "rollup_supervisor_injections_total{chain=\"901\",result=\"landed_first\"}");
    assert!(landed_first >= Some(1.0), "{scrape}");

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
    eprintln!("devnet: endpoints line after {to_endpoints:?}, stopped after {:?}", started.elapsed());
    Ok(())
}
