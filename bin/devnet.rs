//! `rollup-supervisor devnet`: the whole system on one machine, with nothing to configure.
//!
//! It starts two anvil nodes on loopback (L1 and L2, a block every second; L2 transactions wait in
//! the pool for the next block, as on a sequencer), deploys the uptime feed on L2 from the
//! committed artifact and grants its updater role to an anvil dev key, then runs the full
//! supervisor on them (both flows, JSON-RPC, metrics), configured through the same [`Config`]
//! parsing and validation as `run`. It stops L2 block production for longer than the threshold
//! and resumes it, `--outages` times, printing a timeline on stdout in which every fact is read
//! back from the running system (the outage journal in the database, the process metrics, the L2
//! node's blocks and receipts, the feed's rounds), never what it merely expects. Then it keeps
//! running until SIGINT, SIGTERM or SIGHUP, and stops everything it started: the supervisor, both
//! anvil processes, and the temporary datadir.
//!
//! The anvil processes run in their own process group, so a terminal's Ctrl-C reaches only this
//! process, which stops the supervisor before the nodes it watches. They are killed on every
//! error path too, and by the panic hook; only a SIGKILL of this process leaves them behind.

use std::{
    convert::Infallible,
    fmt::Display,
    fs::File,
    io::{Read as _, Write as _},
    net::SocketAddr,
    os::unix::{fs::OpenOptionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix::System;
use alloy::{
    primitives::{Address, B256, Bytes},
    rpc::{client::RpcClient, json_rpc::RpcRecv},
    transports::http::{Http, reqwest},
};
use anyhow::{Context as _, bail, ensure};
use rollup_supervisor_actors::{
    chains_db::messages::{GetLastOutage, GetLocalSafe, GetTip, Track},
    metrics::{self, Family},
    rpc::{BlockTag, EthRpc},
    uptime::feed,
};
use rollup_supervisor_signer::LocalKey;
use rollup_supervisor_storage::{BlockRef, OutageRecord, OutageResult};
use serde_json::{Value, json};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{config::Config, node::Node};

/// The L1 node's chain id.
const L1_CHAIN: u64 = 900;
/// The L2 node's chain id.
const L2_CHAIN: u64 = 901;
/// [`L2_CHAIN`] as a metric label.
const L2_LABEL: &str = "901";
/// Anvil's dev account #1 (mnemonic `test test ... junk`), funded on every anvil chain: the
/// supervisor's signer.
const SIGNER_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// Seconds between blocks on both nodes.
const BLOCK_TIME_SECS: u64 = 1;
/// How often the uptime flow reads the L2 head.
const CHECK_INTERVAL_MS: u64 = 250;
/// How often the pooled pair is refreshed during an outage.
const REFRESH_INTERVAL_MS: u64 = 1_000;
/// Refreshes of the pooled pair shown before L2 production resumes.
const REFRESHES_SHOWN: u64 = 2;
/// L2 blocks produced before each outage.
const BLOCKS_BEFORE_OUTAGE: u64 = 3;
/// The pair's max fee per gas (10 gwei).
const MAX_FEE_WEI: u128 = 10_000_000_000;
/// The feed contract, compiled (see contracts/README.md).
const FEED_ARTIFACT: &str = include_str!("../contracts/out/SequencerUptimeFeed.json");
/// Between two looks at the running system.
const POLL: Duration = Duration::from_millis(100);
/// How long any one step may take (on top of the threshold, for the stall).
const WAIT: Duration = Duration::from_secs(30);
/// One request to a node.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one "L1 blocks recorded" line this often.
const L1_REPORT_EVERY: Duration = Duration::from_secs(5);

/// `rollup-supervisor devnet`.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// The stall threshold (`max_block_age_secs`); each outage lasts longer than this. At least
    /// 2: both chains make a block every second.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(2..=600))]
    pub threshold_secs: u64,
    /// How many outages to stage (0: none, just run).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub outages: u64,
    /// Where the database, the keys and the node logs go; new or empty. Default: a new temporary
    /// directory, removed at exit.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// The supervisor's JSON-RPC server (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8555")]
    pub rpc_listen: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz` (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9555")]
    pub metrics_listen: SocketAddr,
    /// The anvil binary. Default: `$ANVIL_BIN`, then `tools/node_modules/.bin/anvil` of this
    /// checkout (installed with `npm ci --prefix tools` if missing), then `anvil` on `PATH`.
    #[arg(long)]
    pub anvil: Option<PathBuf>,
    /// `text` for people, `json` for log pipelines (logs go to stderr, the timeline to stdout).
    #[arg(long, env = "ROLLUP_SUPERVISOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Which events to log, as `RUST_LOG` takes it; `warn` by default, so that the timeline stays
    /// readable.
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    pub log_filter: String,
}

/// Runs the devnet until a signal. Exit code 0 after a clean stop (also when the signal comes
/// during start-up), 1 on a failure (after stopping whatever was started), 2 on a bad log filter.
pub fn run(args: DevnetArgs) -> ExitCode {
    let log = crate::LogArgs { log_format: args.log_format.clone(), log_filter: args.log_filter.clone() };
    if let Err(e) = crate::init_logging(&log) {
        eprintln!("rollup-supervisor: invalid --log-filter: {e}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    crate::install_panic_hook();
    let exit_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_children();
        exit_hook(info);
    }));
    let tl = Timeline(Instant::now());
    let prepared = check_port("--rpc-listen", args.rpc_listen)
        .and_then(|()| check_port("--metrics-listen", args.metrics_listen))
        .and_then(|()| find_anvil(args.anvil.as_deref(), tl))
        .and_then(|anvil| Ok((anvil, DataDir::create(args.datadir.as_deref())?)));
    let (anvil, dir) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("rollup-supervisor devnet: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let system = System::new();
    let (result, node_stopped) = system.block_on(devnet(&args, &anvil, &dir.path, tl));
    if !node_stopped {
        // `Node::start` may have failed (or been interrupted) after starting actors it then had
        // no handle to stop: dropping the runtime would poll them outside it, and actix panics
        // there. The process exits right after; nothing of the runtime needs a destructor.
        std::mem::forget(system);
    }
    dir.close(tl);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollup-supervisor devnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts everything, stages the outages, waits for a signal, stops everything. Also says
/// whether a supervisor was started and then stopped cleanly (false: none was started, starting
/// it failed, or its stop did not finish).
async fn devnet(args: &DevnetArgs, anvil: &Path, dir: &Path, tl: Timeline) -> (anyhow::Result<()>, bool) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => return (Err(e), false),
    };
    let mut started = Started::default();
    let outcome = tokio::select! {
        shown = demo(args, anvil, dir, tl, &mut started) => shown.map(|()| true),
        () = signals.recv() => Ok(false),
    };
    let outcome = match outcome {
        Ok(true) => {
            signals.recv().await;
            Ok(())
        }
        other => other.map(drop),
    };
    tl.say(match &outcome {
        Ok(()) => "signal received: stopping everything devnet started",
        Err(_) => "failed (the error follows on stderr): stopping everything devnet started",
    });
    let node_started = started.node.is_some();
    let stopped = started.stop(tl).await;
    let node_stopped = node_started && stopped.is_ok();
    (outcome.and(stopped), node_stopped)
}

/// What [`demo`] has started so far, for [`Started::stop`].
#[derive(Debug, Default)]
struct Started {
    anvils: Vec<AnvilNode>,
    node: Option<Node>,
}

impl Started {
    /// The supervisor first (it flushes its database), then the nodes it watched.
    async fn stop(mut self, tl: Timeline) -> anyhow::Result<()> {
        let result = match self.node.take() {
            Some(node) => node.stop().await.inspect(|()| tl.say("supervisor stopped (database flushed)")),
            None => {
                System::current().stop();
                Ok(())
            }
        };
        while let Some(anvil) = self.anvils.pop() {
            let (name, pid) = (anvil.name, anvil.pid());
            drop(anvil);
            tl.say(format!("{name} anvil (pid {pid}) stopped"));
        }
        result
    }
}

/// The show: nodes, feed, supervisor, outages, then where to look.
async fn demo(args: &DevnetArgs, bin: &Path, dir: &Path, tl: Timeline, started: &mut Started) -> anyhow::Result<()> {
    tl.say(format!("anvil {} ({})", anvil_version(bin)?, bin.display()));
    let mut urls = Vec::new();
    for (name, chain, what) in [
        ("L1", L1_CHAIN, ""),
        ("L2", L2_CHAIN, "; transactions wait in the pool for the next block, as on a sequencer"),
    ] {
        let node = AnvilNode::start(bin, name, chain, dir).await?;
        tl.say(format!(
            "{name} node up: anvil pid {}, chain {chain}, {}, a block every {BLOCK_TIME_SECS} s{what}",
            node.pid(),
            node.url
        ));
        urls.push(node.url.clone());
        started.anvils.push(node);
    }
    let [l1_url, l2_url] = <[String; 2]>::try_from(urls).map_err(|_| anyhow::anyhow!("two nodes expected"))?;
    let l2 = Chain::new(&l2_url)?;
    let accounts: Vec<Address> = l2.call("eth_accounts", json!([])).await?;
    let (Some(&admin), Some(&user)) = (accounts.first(), accounts.get(2)) else {
        bail!("the L2 anvil lists {} dev accounts; 3 are needed", accounts.len())
    };
    let signer = LocalKey::from_hex(SIGNER_KEY)?.address();
    let feed = deploy_feed(&l2, admin, signer, tl).await?;

    let key_file = dir.join("signer.key");
    write_secret(&key_file, SIGNER_KEY)?;
    let jwt_file = dir.join("jwt.hex");
    write_secret(&jwt_file, &random_hex32()?)?;
    let config = devnet_config(args, dir, &l1_url, &l2_url, feed, key_file, jwt_file.clone())?;
    let signers = crate::build_signers(&config)?;
    let admin_rpc = crate::rpc::Admin::from_config(&config.rpc)?;
    let db = crate::node::open_db(&config)?;
    let datadir = config.datadir.clone();
    let node: &Node = started.node.insert(Node::start(config, db, signers, admin_rpc).await?);
    tl.say(format!(
        "supervisor up: JSON-RPC http://{}, metrics http://{}/metrics; database {}; stall threshold {} s, \
         head checked every {CHECK_INTERVAL_MS} ms, pair refreshed every {REFRESH_INTERVAL_MS} ms",
        node.rpc_addr,
        node.metrics_addr,
        datadir.display(),
        args.threshold_secs
    ));

    let story = Story { node, l2: &l2, feed, user, threshold: args.threshold_secs, tl };
    let reported = tokio::select! {
        reported = story.outages(args.outages) => reported?,
        never = report_l1(node, tl) => match never {},
    };
    if args.outages > 0 {
        let landed = story.metric_with(&metrics::INJECTIONS, &[("chain", L2_LABEL), ("result", "landed_first")]);
        tl.say(format!(
            "{reported} of {} outages reported with the pair first in the first block after the gap and the feed's \
             rounds down then up (metrics: outages_total {}, injections_total{{result=\"landed_first\"}} {landed})",
            args.outages,
            story.metric(&metrics::OUTAGES),
        ));
    }
    endpoints(node, &l1_url, &l2_url, feed, dir, &jwt_file, tl);
    Ok(())
}

/// Prints where to look while the devnet keeps running.
fn endpoints(node: &Node, l1_url: &str, l2_url: &str, feed: Address, dir: &Path, jwt_file: &Path, tl: Timeline) {
    let rpc = format!("http://{}", node.rpc_addr);
    let m = format!("http://{}", node.metrics_addr);
    let call = |method: &str, params: &str| {
        format!(
            "curl -s -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{method}\",\"params\":{params}}}' {rpc}"
        )
    };
    let exe = std::env::current_exe().map_or_else(|_| "rollup-supervisor".to_owned(), |p| p.display().to_string());
    let token = format!("$({} jwt token --secret-file {})", sh(&exe), sh(&jwt_file.display().to_string()));
    tl.say("the supervisor keeps running:");
    tl.more(format!("JSON-RPC  {rpc}"));
    tl.more(format!("  {}", call("supervisor_uptimeStatus", &format!("[{L2_CHAIN}]"))));
    tl.more(format!("  {}", call("supervisor_syncStatus", "[]")));
    tl.more(format!("metrics   {m}/metrics   {m}/healthz   {m}/readyz"));
    tl.more(format!("  curl -s {m}/metrics | grep -E 'sequencer_down|pair_refreshes_total|injections_total'"));
    tl.more("admin     report an outage now (JWT-protected admin method):");
    tl.more(format!(
        "  curl -s -H 'content-type: application/json' -H \"Authorization: Bearer {token}\" -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"admin_forceUptimeUpdate\",\"params\":[{L2_CHAIN}]}}' {rpc}"
    ));
    tl.more(format!("nodes     L1 {l1_url} (chain {L1_CHAIN}), L2 {l2_url} (chain {L2_CHAIN}, uptime feed {feed})"));
    tl.more(format!("files     {} (node logs: anvil-l1.log, anvil-l2.log)", dir.display()));
    tl.say("Ctrl-C to stop");
}

/// The outages, told from what the running system reports.
#[derive(Debug)]
struct Story<'a> {
    node: &'a Node,
    l2: &'a Chain,
    feed: Address,
    /// An L2 dev account that sends a transaction during each outage.
    user: Address,
    threshold: u64,
    tl: Timeline,
}

impl Story<'_> {
    fn metric(&self, family: &Family) -> f64 {
        self.metric_with(family, &[("chain", L2_LABEL)])
    }

    fn metric_with(&self, family: &Family, labels: &[(&str, &str)]) -> f64 {
        self.node.metrics.get(family, labels)
    }

    /// The newest outage record in the supervisor's journal.
    async fn journal(&self) -> anyhow::Result<Option<OutageRecord>> {
        Ok(self.node.db.send(GetLastOutage(L2_CHAIN)).await??)
    }

    async fn head(&self) -> anyhow::Result<BlockRef> {
        self.l2.eth.block_by_tag(BlockTag::Latest).await?.context("the L2 node has no latest block")
    }

    /// Stages `count` outages; returns how many were reported exactly as they should be.
    async fn outages(&self, count: u64) -> anyhow::Result<u64> {
        let mut reported = 0;
        for n in 1..=count {
            self.producing().await?;
            reported += u64::from(self.outage(n, count).await?);
        }
        if count == 0 {
            self.producing().await?;
        }
        Ok(reported)
    }

    /// L2 makes a few blocks, and the supervisor sees a live sequencer.
    async fn producing(&self) -> anyhow::Result<()> {
        let from = self.head().await?.number;
        let outages = self.metric(&metrics::OUTAGES);
        let head = until("L2 blocks", WAIT, async || {
            Ok(self.l2.eth.block_by_tag(BlockTag::Latest).await?.filter(|b| b.number >= from + BLOCKS_BEFORE_OUTAGE))
        })
        .await?;
        if self.metric(&metrics::OUTAGES) > outages {
            self.tl.say(format!(
                "note: the supervisor reported an outage of its own while L2 was producing (a block came more than \
                 {} s after the one before, on a busy machine)",
                self.threshold
            ));
        }
        let state = if self.metric(&metrics::SEQUENCER_DOWN) > 0.0 { "DOWN" } else { "up" };
        self.tl.say(format!(
            "L2 producing: head {}; the supervisor sees its newest block {} s old (threshold {} s): sequencer {state}",
            head.number,
            self.metric(&metrics::L2_HEAD_AGE),
            self.threshold
        ));
        Ok(())
    }

    /// One outage: stop L2 production, watch the supervisor react, resume, check the result.
    async fn outage(&self, n: u64, count: u64) -> anyhow::Result<bool> {
        let previous = self.journal().await?.map(|r| r.down_ts());
        let submitted = self.metric(&metrics::PAIRS_SUBMITTED);
        let _: Value = self.l2.call("evm_setIntervalMining", json!([0])).await?;
        let last = self.head().await?;
        self.tl.say(format!(
            "outage {n} of {count}: L2 block production stopped after block {} (timestamp {}, {})",
            last.number,
            last.timestamp,
            clock(last.timestamp)
        ));
        let user_tx: B256 = self
            .l2
            .call(
                "eth_sendTransaction",
                json!([{ "from": self.user, "to": self.user, "value": "0x1", "maxPriorityFeePerGas": "0x1", "maxFeePerGas": format!("{MAX_FEE_WEI:#x}") }]),
            )
            .await?;
        self.tl.say(format!("a user transaction {} waits in the L2 pool (1 wei tip)", short(&user_tx)));

        let stall_wait = Duration::from_secs(self.threshold) + WAIT;
        let outage = until("the supervisor to detect the stall", stall_wait, async || {
            let down = self.metric(&metrics::SEQUENCER_DOWN) > 0.0;
            Ok(self.journal().await?.filter(|r| down && Some(r.down_ts()) != previous))
        })
        .await?;
        self.tl.say(format!(
            "stall detected: L2 head {} is {} s old (threshold {} s); outage journaled, sequencer_down 1",
            outage.last_block.number,
            self.metric(&metrics::L2_HEAD_AGE),
            self.threshold
        ));

        let down_ts = outage.down_ts();
        let pooled = until("the pair to be pre-positioned", WAIT, async || {
            let sent = self.metric(&metrics::PAIRS_SUBMITTED) > submitted;
            Ok(self.journal().await?.filter(|r| sent && r.down_ts() == down_ts && r.fully_pooled(2)))
        })
        .await?;
        let nonce = pooled.nonce.map_or_else(|| "?".to_owned(), |n| format!("{n},{}", n + 1));
        self.tl.say(format!(
            "pair pre-positioned in the L2 pool: nonces {nonce}  down_ts={} (block {}'s timestamp)  up_ts={}  \
             max fee {}  txs {}",
            down_ts,
            outage.last_block.number,
            pooled.up_ts.map_or_else(|| "?".to_owned(), |t| t.to_string()),
            gwei(pooled.txs.iter().flatten().map(|t| t.max_fee_per_gas).max().unwrap_or(0)),
            hashes(&pooled.pooled_hashes())
        ));

        let base = self.metric(&metrics::PAIR_REFRESHES);
        let refreshes = || (self.metric(&metrics::PAIR_REFRESHES) - base).max(0.0) as u64;
        let mut shown = 0;
        while shown < REFRESHES_SHOWN {
            let (count, refreshed) = until("the pair to be refreshed", WAIT, async || {
                let count = refreshes();
                Ok(if count > shown { self.journal().await?.map(|r| (count, r)) } else { None })
            })
            .await?;
            shown = count;
            self.tl.say(format!(
                "pair refreshed ({count}): same nonces, up_ts={}  max fee {}  txs {}",
                refreshed.up_ts.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                gwei(refreshed.txs.iter().flatten().map(|t| t.max_fee_per_gas).max().unwrap_or(0)),
                hashes(&refreshed.pooled_hashes())
            ));
        }

        let _: Value = self.l2.call("evm_setIntervalMining", json!([BLOCK_TIME_SECS])).await?;
        self.tl.say("L2 block production resumed");
        let done = until("the supervisor to confirm the pair", WAIT, async || {
            Ok(self.journal().await?.filter(|r| r.down_ts() == down_ts && r.result != OutageResult::Pending))
        })
        .await?;
        self.landed(&done, user_tx, refreshes()).await
    }

    /// Checks the journal's verdict against the L2 node's block and the feed's rounds, and says
    /// what they show. True when everything is as it should be.
    async fn landed(&self, record: &OutageRecord, user_tx: B256, refreshes: u64) -> anyhow::Result<bool> {
        let first = record.last_block.number + 1;
        let Some(number) = record.included_in else {
            self.tl.say(format!("L2 resumed: UNEXPECTED: the pair did not land (journal: {:?})", record.result));
            return Ok(false);
        };
        let block = self.l2.eth.block_by_number(number).await?.context("the block that carried the pair")?;
        let txs = self.l2.eth.block_transactions(number).await?.unwrap_or_default();
        let mut pair = Vec::new();
        for (index, tx) in txs.iter().take(2).enumerate() {
            let receipt = self.l2.eth.receipt(tx.hash).await?;
            let ok = receipt
                .is_some_and(|r| r.succeeded() && r.transaction_index.map(|i| i.to::<u64>()) == Some(index as u64));
            pair.push((tx.hash, feed::decode_update_status(&tx.input).filter(|_| ok)));
        }
        let down_ts = record.down_ts();
        let (as_journaled, up_ts) = match pair.as_slice() {
            [(h0, Some((true, t0))), (h1, Some((false, up)))] => {
                (record.landed_txs == [*h0, *h1] && *t0 == down_ts && record.up_ts == Some(*up), *up)
            }
            _ => (false, 0),
        };
        let first_place = number == first && record.result == OutageResult::Landed { first: true } && as_journaled;
        let gap = block.timestamp.saturating_sub(record.last_block.timestamp);
        if first_place {
            let user = txs.iter().position(|t| t.hash == user_tx);
            self.tl.say(format!(
                "L2 resumed: block {number} ({gap} s after block {}) carries the pair (as refreshed {refreshes} times) \
                 at indices 0 and 1: updateStatus(true, {down_ts}) {}, updateStatus(false, {up_ts}) {}{}",
                record.last_block.number,
                short(&pair[0].0),
                short(&pair[1].0),
                user.map(|i| format!("; the user transaction follows at index {i}")).unwrap_or_default()
            ));
        } else {
            self.tl.say(format!(
                "L2 resumed: UNEXPECTED: journal says {:?} in block {number} (the first block after the gap is {first}); \
                 block {number} starts with {}",
                record.result,
                hashes(&txs.iter().take(2).map(|t| t.hash).collect::<Vec<_>>())
            ));
        }

        let latest = round(self.l2, self.feed, None).await?;
        let down = round(self.l2, self.feed, Some(latest.round_id.saturating_sub(1))).await?;
        let rounds_right = down.down && down.started_at == down_ts && !latest.down && latest.started_at == up_ts;
        let up_age = block.timestamp.saturating_sub(latest.started_at);
        self.tl.say(format!(
            "feed rounds: #{} {} since {} = block {}'s timestamp, #{} {} since {} = {up_age} s before block {number}'s{}",
            down.round_id,
            if down.down { "down" } else { "up" },
            down.started_at,
            record.last_block.number,
            latest.round_id,
            if latest.down { "down" } else { "up" },
            latest.started_at,
            if rounds_right { "" } else { "  UNEXPECTED: not the journaled pair's timestamps" }
        ));
        Ok(first_place && rounds_right)
    }
}

/// Prints a line when L1 has advanced, at most every [`L1_REPORT_EVERY`], with the L2 chain's
/// newest derivation entry. Runs until dropped.
async fn report_l1(node: &Node, tl: Timeline) -> Infallible {
    let mut shown: Option<u64> = None;
    let mut said_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if said_at.is_some_and(|t| t.elapsed() < L1_REPORT_EVERY) {
            continue;
        }
        let Ok(Ok(Some(tip))) = node.db.send(GetTip(Track::L1)).await else { continue };
        if shown.is_some_and(|n| n >= tip.number) {
            continue;
        }
        let from = shown.map_or(0, |n| n + 1);
        let blocks =
            if from == tip.number { format!("L1 block {from}") } else { format!("L1 blocks {from}..{}", tip.number) };
        let derived = match node.db.send(GetLocalSafe(L2_CHAIN)).await {
            Ok(Ok(Some(pair))) => {
                format!("; L2 derivation head: block {} as of L1 block {}", pair.derived.number, pair.source.number)
            }
            _ => String::new(),
        };
        tl.say(format!("{blocks} recorded (tip {}){derived}", short(&tip.hash)));
        shown = Some(tip.number);
        said_at = Some(Instant::now());
    }
}

/// Deploys the feed (initially up, admin = `admin`), grants `FEED_UPDATER_ROLE` to `signer` and
/// checks it with `hasRole`.
async fn deploy_feed(l2: &Chain, admin: Address, signer: Address, tl: Timeline) -> anyhow::Result<Address> {
    let artifact: Value = serde_json::from_str(FEED_ARTIFACT).context("the feed artifact is not JSON")?;
    let code = artifact["bytecode"].as_str().context("the feed artifact has no bytecode")?;
    let mut data = alloy::hex::decode(code).context("the feed artifact's bytecode is not hex")?;
    // constructor(bool initialStatus = false (up), address admin, address feedUpdater = admin)
    data.extend_from_slice(&[0u8; 32]);
    data.extend_from_slice(admin.into_word().as_slice());
    data.extend_from_slice(admin.into_word().as_slice());
    let receipt = l2
        .transact(json!({ "from": admin, "data": Bytes::from(data), "gas": "0x2dc6c0" }), "the feed deployment")
        .await?;
    let feed: Address =
        receipt["contractAddress"].as_str().context("the deployment receipt has no contractAddress")?.parse()?;
    let first = round(l2, feed, None).await?;
    tl.say(format!(
        "uptime feed deployed on L2 at {feed} in block {}; round #{}: up since {}",
        quantity(&receipt["blockNumber"]),
        first.round_id,
        clock(first.started_at)
    ));

    let grant = feed::grant_role(feed::FEED_UPDATER_ROLE, signer);
    let receipt = l2.transact(json!({ "from": admin, "to": feed, "data": grant }), "grantRole").await?;
    let has = l2.eth.call(feed, feed::has_role(feed::FEED_UPDATER_ROLE, signer)).await?;
    ensure!(feed::decode_bool(&has) == Some(true), "hasRole(FEED_UPDATER_ROLE, {signer}) is false after grantRole");
    tl.say(format!(
        "FEED_UPDATER_ROLE granted to {signer} (anvil dev key #1, the supervisor's signer) in block {}: hasRole true",
        quantity(&receipt["blockNumber"])
    ));
    Ok(feed)
}

/// The feed's latest round, or round `id`.
async fn round(l2: &Chain, feed: Address, id: Option<u128>) -> anyhow::Result<feed::Round> {
    let data = id.map_or_else(feed::latest_round_data, feed::get_round_data);
    let out = l2.eth.call(feed, data).await?;
    let round = if id.is_some() { feed::decode_round_data(&out) } else { feed::decode_round(&out) };
    round.with_context(|| format!("the feed at {feed} answered {out} to a round query"))
}

/// The devnet's configuration, through the same parsing and validation as `run`'s file.
fn devnet_config(
    args: &DevnetArgs,
    dir: &Path,
    l1_url: &str,
    l2_url: &str,
    feed: Address,
    key_file: PathBuf,
    jwt_file: PathBuf,
) -> anyhow::Result<Config> {
    let text = format!(
        r#"
[l1]
rpc_url = "{l1_url}"
chain_id = {L1_CHAIN}
poll_interval_ms = 500
heads_poll_interval_ms = 2000
start_block = 0

[[chains]]
chain_id = {L2_CHAIN}
rpc_url = "{l2_url}"
derivation_tag = "latest"
poll_interval_ms = 500

[chains.uptime]
enabled = true
feed_address = "{feed}"
max_block_age_secs = {threshold}
check_interval_ms = {CHECK_INTERVAL_MS}
refresh_interval_ms = {REFRESH_INTERVAL_MS}
clock_skew_margin_secs = 1
max_fee_per_gas_wei = {MAX_FEE_WEI}

[chains.uptime.signer]
type = "local"
"#,
        threshold = args.threshold_secs
    );
    let mut config = Config::parse(&text)?;
    // Paths and addresses go in as values, not through TOML quoting.
    config.datadir = dir.join("db");
    config.rpc.listen = args.rpc_listen;
    config.rpc.jwt_secret_file = Some(jwt_file);
    config.metrics.listen = args.metrics_listen;
    for chain in &mut config.chains {
        chain.uptime.signer.private_key_file = Some(key_file.clone());
    }
    config.validate()?;
    Ok(config)
}

/// The timeline on stdout: one line per event, prefixed with the seconds since start.
#[derive(Clone, Copy, Debug)]
struct Timeline(Instant);

impl Timeline {
    fn say(&self, text: impl Display) {
        // A closed stdout (`| head`) must not end the demo.
        let _ = writeln!(std::io::stdout().lock(), "[{:>6.1}s] {text}", self.0.elapsed().as_secs_f64());
    }

    /// A line that belongs to the previous event, indented under its text.
    fn more(&self, text: impl Display) {
        let _ = writeln!(std::io::stdout().lock(), "          {text}");
    }
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal): each means "stop".
#[derive(Debug)]
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        let listen = |kind: SignalKind, name: &str| signal(kind).with_context(|| format!("cannot listen for {name}"));
        Ok(Self {
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            hup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// Pids of the running anvil processes, for the panic hook.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// SIGKILLs every anvil still running (the panic path, where no destructor runs).
fn kill_children() {
    let pids = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for pid in pids {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stdin(Stdio::null()).status();
    }
}

/// An anvil process this devnet started; killed and reaped when dropped.
#[derive(Debug)]
struct AnvilNode {
    name: &'static str,
    child: Child,
    /// `http://127.0.0.1:<port>`.
    url: String,
}

impl AnvilNode {
    /// Starts anvil on a free loopback port with interval mining, its output in
    /// `<dir>/anvil-<name>.log`, and waits until it answers with `chain_id`.
    async fn start(bin: &Path, name: &'static str, chain_id: u64, dir: &Path) -> anyhow::Result<Self> {
        let log_path = dir.join(format!("anvil-{}.log", name.to_lowercase()));
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--chain-id", &chain_id.to_string()])
            .args(["--block-time", &BLOCK_TIME_SECS.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).push(child.id());
        let mut node = Self { name, child, url: String::new() };
        let addr = until(&format!("the {name} anvil to listen"), WAIT, async || {
            if let Some(status) = node.child.try_wait()? {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                bail!(
                    "the {name} anvil exited ({status}) before listening; {}:\n{}",
                    log_path.display(),
                    tail.join("\n")
                );
            }
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            Ok(text.lines().find_map(|l| l.split("Listening on ").nth(1)?.trim().parse::<SocketAddr>().ok()))
        })
        .await?;
        node.url = format!("http://{addr}");
        let eth = EthRpc::new(&node.url, RPC_TIMEOUT).map_err(anyhow::Error::msg)?;
        let served =
            until(&format!("the {name} anvil to answer"), WAIT, async || Ok(eth.chain_id().await.ok())).await?;
        ensure!(served == chain_id, "the {name} anvil serves chain {served}, not {chain_id}");
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AnvilNode {
    fn drop(&mut self) {
        // anvil keeps nothing worth a graceful stop here; SIGKILL, then reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).retain(|p| *p != pid);
    }
}

/// `anvil --version`'s version.
fn anvil_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    ensure!(out.status.success(), "{} --version failed ({})", bin.display(), out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().trim_start_matches("anvil Version: ").to_owned())
}

/// A node's JSON-RPC: the typed calls of [`EthRpc`], plus any method (anvil's, and
/// `eth_sendTransaction` from its unlocked dev accounts).
#[derive(Debug)]
struct Chain {
    client: RpcClient,
    eth: EthRpc,
}

impl Chain {
    fn new(url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(RPC_TIMEOUT).build().context("cannot build an HTTP client")?;
        let parsed = url.parse().with_context(|| format!("invalid URL {url}"))?;
        let client = RpcClient::new(Http::with_client(http, parsed), true);
        Ok(Self { client, eth: EthRpc::new(url, RPC_TIMEOUT).map_err(anyhow::Error::msg)? })
    }

    async fn call<R: RpcRecv>(&self, method: &'static str, params: Value) -> anyhow::Result<R> {
        self.client.request(method, params).await.with_context(|| format!("{method} failed"))
    }

    /// Sends a transaction from an unlocked account and waits for its successful receipt.
    async fn transact(&self, tx: Value, what: &str) -> anyhow::Result<Value> {
        let hash: B256 = self.call("eth_sendTransaction", json!([tx])).await?;
        let receipt = until(&format!("{what} to be mined"), WAIT, async || {
            let receipt: Value = self.call("eth_getTransactionReceipt", json!([hash])).await?;
            Ok((!receipt.is_null()).then_some(receipt))
        })
        .await?;
        ensure!(receipt["status"] == json!("0x1"), "{what} failed: {receipt}");
        Ok(receipt)
    }
}

/// Polls `check` every [`POLL`] until it yields a value; fails on its first error, or after
/// `timeout` naming `what`.
async fn until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The anvil binary: `--anvil`, `$ANVIL_BIN`, a checkout's `tools/node_modules/.bin/anvil` (the
/// current directory's, then the one this binary was built from), `anvil` on `PATH`. If none
/// exists, installs the checkout's pinned tools with `npm ci` when npm is there, or says how.
fn find_anvil(flag: Option<&Path>, tl: Timeline) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        ensure!(path.is_file(), "--anvil {}: no such file", path.display());
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("ANVIL_BIN").filter(|v| !v.is_empty()).map(PathBuf::from) {
        ensure!(path.is_file(), "ANVIL_BIN={}: no such file", path.display());
        return Ok(path);
    }
    let pinned = |root: &Path| root.join("tools/node_modules/.bin/anvil");
    let mut checkouts: Vec<PathBuf> = Vec::new();
    for root in [std::env::current_dir().ok(), Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))].into_iter().flatten() {
        if root.join("tools/package-lock.json").is_file() && !checkouts.contains(&root) {
            checkouts.push(root);
        }
    }
    if let Some(found) = checkouts.iter().map(|root| pinned(root)).find(|p| p.is_file()) {
        return Ok(found);
    }
    if let Some(found) = on_path("anvil") {
        return Ok(found);
    }
    let Some(root) = checkouts.first() else {
        bail!(
            "anvil not found: run `npm ci --prefix tools` in a rollup-supervisor checkout, or pass --anvil PATH \
             (or set ANVIL_BIN)"
        )
    };
    let tools = root.join("tools");
    let command = format!("npm ci --prefix {}", sh(&tools.display().to_string()));
    let Some(npm) = on_path("npm") else {
        bail!("anvil not found: install Node.js and npm, then run `{command}` (or pass --anvil PATH)")
    };
    tl.say(format!("anvil not found: installing the pinned tools with `{command}` (its output goes to stderr)"));
    let status = Command::new(npm)
        .args(["ci", "--prefix"])
        .arg(&tools)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run `{command}`"))?;
    ensure!(status.success(), "`{command}` failed ({status}); fix what it says and run it again");
    let found = pinned(root);
    ensure!(found.is_file(), "`{command}` succeeded but did not install {}", found.display());
    Ok(found)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Fails if `addr` cannot be bound now, before anything starts (port 0 always can).
fn check_port(flag: &str, addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "{flag} {addr}: cannot listen there ({e}); is another devnet or supervisor running? \
             Pick another address with {flag} 127.0.0.1:PORT"
        )
    })
}

/// The devnet's directory: `--datadir` (kept), or a temporary one (removed by [`DataDir::close`]).
#[derive(Debug)]
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    fn create(given: Option<&Path>) -> anyhow::Result<Self> {
        let (path, temporary) = match given {
            Some(path) => {
                let used = std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some());
                ensure!(
                    !used,
                    "--datadir {}: not empty; devnet starts new chains every time, so give it a new or empty directory",
                    path.display()
                );
                std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
                (path.to_owned(), false)
            }
            None => {
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
                let path =
                    std::env::temp_dir().join(format!("rollup-supervisor-devnet-{}-{nanos}", std::process::id()));
                std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
                (path, true)
            }
        };
        let path = std::fs::canonicalize(&path).with_context(|| format!("cannot resolve {}", path.display()))?;
        Ok(Self { path, temporary })
    }

    /// Removes a temporary directory (retried briefly: the database thread may still be closing
    /// its files), or says where a kept one is.
    fn close(self, tl: Timeline) {
        if !self.temporary {
            tl.say(format!("datadir kept: {}", self.path.display()));
            return;
        }
        let mut attempts = 0;
        loop {
            match std::fs::remove_dir_all(&self.path) {
                Ok(()) => return tl.say(format!("temporary datadir {} removed", self.path.display())),
                Err(_) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(POLL);
                }
                Err(e) => return eprintln!("rollup-supervisor devnet: cannot remove {}: {e}", self.path.display()),
            }
        }
    }
}

/// Writes a new file readable by its owner only.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// 32 random bytes, hex: a JWT secret.
fn random_hex32() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the JWT secret")?;
    Ok(alloy::hex::encode(bytes))
}

/// A JSON-RPC quantity (`"0x1a"`) as a number, or `?`.
fn quantity(value: &Value) -> String {
    value
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// `0x1234abcd…`
fn short(hash: &B256) -> String {
    let full = hash.to_string();
    format!("{}…", full.get(..10).unwrap_or(&full))
}

fn hashes(list: &[B256]) -> String {
    list.iter().map(short).collect::<Vec<_>>().join(", ")
}

/// `17:02:00 UTC`.
fn clock(ts: u64) -> String {
    let day = ts % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

fn gwei(wei: u128) -> String {
    format!("{:.2} gwei", wei as f64 / 1e9)
}

/// `s` as one shell word.
fn sh(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:+=@%,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_format_what_the_timeline_shows() {
        assert_eq!(clock(1_795_280_520), "17:02:00 UTC");
        assert_eq!(short(&B256::repeat_byte(0xab)), "0xabababab…");
        assert_eq!(sh("/tmp/x-1/jwt.hex"), "/tmp/x-1/jwt.hex");
        assert_eq!(sh("/tmp/a b/it's"), r"'/tmp/a b/it'\''s'");
        assert_eq!(quantity(&json!("0x1a")), "26");
        assert_eq!(gwei(10_000_000_000), "10.00 gwei");
    }

    #[test]
    fn the_devnet_config_passes_validation() {
        let args = DevnetArgs {
            threshold_secs: 6,
            outages: 1,
            datadir: None,
            rpc_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            anvil: None,
            log_format: "text".into(),
            log_filter: "warn".into(),
        };
        let dir = Path::new("/tmp/devnet");
        let config = devnet_config(
            &args,
            dir,
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            Address::repeat_byte(1),
            dir.join("signer.key"),
            dir.join("jwt.hex"),
        )
        .unwrap();
        assert_eq!(config.chains[0].uptime.max_block_age_secs, 6);
        assert!(config.chains[0].uptime.enabled);
        assert_eq!(config.datadir, dir.join("db"));
    }

    #[test]
    fn the_signer_key_is_anvils_dev_account_1() {
        let address = LocalKey::from_hex(SIGNER_KEY).unwrap().address();
        assert_eq!(address, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse::<Address>().unwrap());
    }
}
