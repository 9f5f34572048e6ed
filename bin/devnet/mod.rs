//! `rollup-supervisor devnet`: the whole system on one machine, with nothing to configure.
//!
//! It starts two anvil nodes on loopback (L1 and L2, a block every second; L2 transactions wait in
//! the pool for the next block, as on a sequencer), deploys on L2 from the committed artifacts
//! the uptime feed and, in front of it, our `UptimeReporter`: the feed admin grants the feed's
//! updater role to the reporter and the reporter admin allows the supervisor's signer (with
//! `--pair`, no reporter: the signer gets the feed's updater role and reports with the down/up
//! pair). Then it runs the full supervisor on them (both flows, JSON-RPC, metrics) at the default
//! fee settings, configured through the same [`Config`] parsing and validation as `run`. It stops
//! L2 block production for longer than the threshold and resumes it, `--outages` times; during
//! each outage, once the report is pooled, a user sends a transaction paying far more than our
//! default fees, and production resumes only once the supervisor has repriced its pooled report
//! above it. The timeline on stdout says what the running system shows (the outage journal in the
//! database, the process metrics, the L2 pool, blocks and receipts, the feed's rounds), never what
//! it merely expects; a mismatch is printed as `UNEXPECTED`. Then it keeps running until SIGINT,
//! SIGTERM or SIGHUP, and stops everything it started: the supervisor, both anvil processes, and
//! the temporary datadir.
//!
//! The anvil processes run in their own process group, so a terminal's Ctrl-C reaches only this
//! process, which stops the supervisor before the nodes it watches. They are killed on every
//! error path too, and by the panic hook; only a SIGKILL of this process leaves them behind.
//!
//! Files by job: [`nodes`] (devnet's anvil nodes, the datadir, JSON-RPC to the nodes),
//! [`anvil`] (the anvil launcher), [`wait`] (polling a condition) and [`consts`] (the dev chains'
//! facts), which the tests and benchmarks include too,
//! [`contracts`] (deployment, permissions, rounds and receipts), [`outage`] (the staged outages
//! and what they show), [`timeline`] (stdout and formatting); this file: the command, its
//! configuration and its lifecycle.

mod anvil;
mod consts;
mod contracts;
mod nodes;
mod outage;
mod timeline;
mod wait;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use actix::System;
use alloy::primitives::Address;
use anyhow::{Context as _, bail};
use rollup_supervisor_actors::{metrics, uptime::injector::ReportMode};
use rollup_supervisor_signer::LocalKey;
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};

use self::{
    consts::{DEV_KEY_1, L1_CHAIN_ID, L2_CHAIN_ID, L2_LABEL},
    contracts::Deployed,
    nodes::{Chain, DataDir, DevnetNode, check_port, find_anvil, kill_children, random_hex32, write_secret},
    outage::Story,
    timeline::{Timeline, report_l1, sh},
};
use crate::{config::Config, node::Node};

/// Seconds between blocks on both nodes.
const BLOCK_TIME_SECS: u64 = 1;
/// How often the uptime flow reads the L2 head (and the pool, while stalled).
const CHECK_INTERVAL_MS: u64 = 250;
/// How often the pooled pair is refreshed during an outage (pair mode).
const REFRESH_INTERVAL_MS: u64 = 1_000;
/// The longest outage the pair's refresh schedule is planned for: short enough that the
/// default fee cap covers its refreshes from the default floor at every `--threshold-secs`
/// (`UptimeConfig::validate`), far longer than a staged outage.
const MAX_OUTAGE_SECS: u64 = 1_800;
/// Between two looks at the running system.
const POLL: Duration = Duration::from_millis(100);
/// How long any one step may take (on top of the threshold, for the stall).
const WAIT: Duration = Duration::from_secs(30);
/// One request to a node.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Pair mode: no reporter contract; the signer holds the feed's updater role and reports
    /// each outage with the down/up pair of `updateStatus` transactions.
    #[arg(long)]
    pub pair: bool,
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
    anvils: Vec<DevnetNode>,
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

/// The show: nodes, contracts, supervisor, outages, then where to look.
async fn demo(args: &DevnetArgs, bin: &Path, dir: &Path, tl: Timeline, started: &mut Started) -> anyhow::Result<()> {
    tl.say(format!("anvil {} ({})", nodes::anvil_version(bin)?, bin.display()));
    let mut urls = Vec::new();
    for (name, chain, what) in [
        ("L1", L1_CHAIN_ID, ""),
        ("L2", L2_CHAIN_ID, "; transactions wait in the pool for the next block, as on a sequencer"),
    ] {
        let node = DevnetNode::start(bin, name, chain, dir).await?;
        tl.say(format!(
            "{name} node up: anvil pid {}, chain {chain}, {}, a block every {BLOCK_TIME_SECS} s{what}",
            node.pid(),
            node.url()
        ));
        urls.push(node.url().to_owned());
        started.anvils.push(node);
    }
    let [l1_url, l2_url] = <[String; 2]>::try_from(urls).map_err(|_| anyhow::anyhow!("two nodes expected"))?;
    let l2 = Chain::new(&l2_url)?;
    let accounts: Vec<Address> = l2.call("eth_accounts", json!([])).await?;
    let (Some(&admin), Some(&user)) = (accounts.first(), accounts.get(2)) else {
        bail!("the L2 anvil lists {} dev accounts; 3 are needed", accounts.len())
    };
    let signer = LocalKey::from_hex(DEV_KEY_1)?.address();
    let deployed = contracts::deploy(&l2, admin, signer, args.pair, tl).await?;

    let key_file = dir.join("signer.key");
    write_secret(&key_file, DEV_KEY_1)?;
    let jwt_file = dir.join("jwt.hex");
    write_secret(&jwt_file, &random_hex32()?)?;
    let config = devnet_config(args, dir, &l1_url, &l2_url, deployed, key_file, jwt_file.clone())?;
    let uptime = config.chains.first().map(|c| c.uptime.clone()).context("the devnet configures one L2 chain")?;
    let signers = crate::build_signers(&config)?;
    let admin_rpc = crate::rpc::Admin::from_config(&config.rpc)?;
    let db = crate::node::open_db(&config)?;
    let datadir = config.datadir.clone();
    let node: &Node = started.node.insert(Node::start(config, db, signers, admin_rpc).await?);
    tl.say(format!(
        "supervisor up: JSON-RPC http://{}, metrics http://{}/metrics; database {}; stall threshold {} s, head \
         checked every {CHECK_INTERVAL_MS} ms",
        node.rpc_addr,
        node.metrics_addr,
        datadir.display(),
        args.threshold_secs
    ));
    let reports = match deployed.mode {
        ReportMode::Reporter(reporter) => {
            format!("reporter mode: one report(down_ts) call to {reporter} per outage, up round at the including block")
        }
        ReportMode::Pair => format!(
            "pair mode: updateStatus(true, down_ts) and updateStatus(false, t_up) to the feed, the pair refreshed \
             every {} ms",
            uptime.refresh_interval_ms()
        ),
    };
    tl.more(format!(
        "{reports}; default fees: floor {} (max_fee_per_gas_wei), {} % above the best pending competitor, cap {}",
        timeline::gwei(uptime.max_fee_per_gas_wei),
        uptime.outbid_margin_percent,
        timeline::gwei(uptime.fee_cap_wei)
    ));

    let story = Story {
        node,
        l2: &l2,
        feed: deployed.feed,
        mode: deployed.mode,
        signer,
        user,
        floor: uptime.max_fee_per_gas_wei,
        threshold: args.threshold_secs,
        tl,
    };
    let reported = tokio::select! {
        reported = story.outages(args.outages) => reported?,
        never = report_l1(node, tl) => match never {},
    };
    if args.outages > 0 {
        let landed = story.metric_with(&metrics::INJECTIONS, &[("chain", L2_LABEL), ("result", "landed_first")]);
        tl.say(format!(
            "{reported} of {} outages reported with the {} first in the first block after the gap, ahead of a user \
             paying more than our defaults, and the feed's rounds down then up (metrics: outages_total {}, \
             injections_total{{result=\"landed_first\"}} {landed}, report_repriced_total {})",
            args.outages,
            story.what(),
            story.metric(&metrics::OUTAGES),
            story.metric(&metrics::REPORT_REPRICED),
        ));
    }
    endpoints(node, &l1_url, &l2_url, deployed, dir, &jwt_file, tl);
    Ok(())
}

/// Prints where to look while the devnet keeps running.
fn endpoints(node: &Node, l1_url: &str, l2_url: &str, deployed: Deployed, dir: &Path, jwt_file: &Path, tl: Timeline) {
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
    tl.more(format!("  {}", call("supervisor_uptimeStatus", &format!("[{L2_CHAIN_ID}]"))));
    tl.more(format!("  {}", call("supervisor_syncStatus", "[]")));
    tl.more(format!("metrics   {m}/metrics   {m}/healthz   {m}/readyz"));
    tl.more(format!(
        "  curl -s {m}/metrics | grep -E 'sequencer_down|report_repriced_total|pair_refreshes_total|injections_total'"
    ));
    tl.more("admin     report an outage now (JWT-protected admin method):");
    tl.more(format!(
        "  curl -s -H 'content-type: application/json' -H \"Authorization: Bearer {token}\" -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"admin_forceUptimeUpdate\",\"params\":[{L2_CHAIN_ID}]}}' {rpc}"
    ));
    let reporter = match deployed.mode {
        ReportMode::Reporter(reporter) => format!(", uptime reporter {reporter}"),
        ReportMode::Pair => String::new(),
    };
    tl.more(format!(
        "nodes     L1 {l1_url} (chain {L1_CHAIN_ID}), L2 {l2_url} (chain {L2_CHAIN_ID}, uptime feed {}{reporter})",
        deployed.feed
    ));
    tl.more(format!("files     {} (node logs: anvil-l1.log, anvil-l2.log)", dir.display()));
    tl.say("Ctrl-C to stop");
}

/// The devnet's configuration, through the same parsing and validation as `run`'s file: the
/// default fee settings, short timings, and `reporter_address` unless in pair mode.
fn devnet_config(
    args: &DevnetArgs,
    dir: &Path,
    l1_url: &str,
    l2_url: &str,
    deployed: Deployed,
    key_file: PathBuf,
    jwt_file: PathBuf,
) -> anyhow::Result<Config> {
    let text = format!(
        r#"
[l1]
rpc_url = "{l1_url}"
chain_id = {L1_CHAIN_ID}
poll_interval_ms = 500
heads_poll_interval_ms = 2000
start_block = 0

[[chains]]
chain_id = {L2_CHAIN_ID}
rpc_url = "{l2_url}"
derivation_tag = "latest"
poll_interval_ms = 500

[chains.uptime]
enabled = true
max_block_age_secs = {threshold}
check_interval_ms = {CHECK_INTERVAL_MS}
refresh_interval_ms = {REFRESH_INTERVAL_MS}
clock_skew_margin_secs = 1
max_outage_secs = {MAX_OUTAGE_SECS}

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
        chain.uptime.feed_address = Some(deployed.feed);
        chain.uptime.reporter_address = match deployed.mode {
            ReportMode::Reporter(reporter) => Some(reporter),
            ReportMode::Pair => None,
        };
        chain.uptime.signer.private_key_file = Some(key_file.clone());
    }
    config.validate()?;
    Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UptimeConfig;

    fn args(threshold_secs: u64, pair: bool) -> DevnetArgs {
        DevnetArgs {
            threshold_secs,
            outages: 1,
            pair,
            datadir: None,
            rpc_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            anvil: None,
            log_format: "text".into(),
            log_filter: "warn".into(),
        }
    }

    fn devnet_config_for(args: &DevnetArgs, mode: ReportMode) -> anyhow::Result<Config> {
        let dir = Path::new("/tmp/devnet");
        let deployed = Deployed { feed: Address::repeat_byte(1), mode };
        devnet_config(
            args,
            dir,
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            deployed,
            dir.join("signer.key"),
            dir.join("jwt.hex"),
        )
    }

    #[test]
    fn the_devnet_config_passes_validation_at_the_default_fees_in_both_modes() {
        let reporter = Address::repeat_byte(2);
        let config = devnet_config_for(&args(6, false), ReportMode::Reporter(reporter)).unwrap();
        let uptime = &config.chains[0].uptime;
        assert_eq!(uptime.max_block_age_secs, 6);
        assert!(uptime.enabled);
        assert_eq!(uptime.reporter_address, Some(reporter));
        assert_eq!(uptime.feed_address, Some(Address::repeat_byte(1)));
        assert_eq!(config.datadir, Path::new("/tmp/devnet").join("db"));
        let defaults = UptimeConfig::default();
        assert_eq!(
            (uptime.max_fee_per_gas_wei, uptime.fee_cap_wei, uptime.fee_bump_percent, uptime.outbid_margin_percent),
            (
                defaults.max_fee_per_gas_wei,
                defaults.fee_cap_wei,
                defaults.fee_bump_percent,
                defaults.outbid_margin_percent
            )
        );
        // Pair mode: the default cap covers the refresh schedule at every threshold the flag takes.
        for threshold in [2, 6, 60, 600] {
            let config = devnet_config_for(&args(threshold, true), ReportMode::Pair);
            let config = config.unwrap_or_else(|e| panic!("--pair --threshold-secs {threshold}: {e:#}"));
            assert_eq!(config.chains[0].uptime.reporter_address, None);
        }
    }

    #[test]
    fn the_signer_key_is_anvils_dev_account_1() {
        let address = LocalKey::from_hex(DEV_KEY_1).unwrap().address();
        assert_eq!(address, consts::DEV_ADDRESS_1.parse::<Address>().unwrap());
    }
}
