//! Wires the actors together and runs them until SIGINT/SIGTERM.

use std::{collections::BTreeMap, time::Duration};

use actix::{Addr, Supervisor, System};
use anyhow::Context as _;
use rollup_supervisor_actors::uptime::{
    injector::{Injector, InjectorConfig, TxInjector},
    signer_actor::{BreakerConfig, SignerActor},
    submit::RawTxSubmitter,
    watchdog::UptimeWatchdog,
};
use rollup_supervisor_actors::{
    chains_db::{
        ChainsDbActor,
        messages::{Flush, RegisterChain},
    },
    follow::{FollowConfig, Follower},
    metrics::Metrics,
    rpc::{BlockTag, EthRpc},
    watcher::{L1Target, L1Watcher, L2Target, L2Watcher, WatcherTiming, messages::Shutdown},
};
use rollup_supervisor_signer::Signer;
use rollup_supervisor_storage::{ChainMode, ChainsDb};

use crate::rpc::UptimeHandles;
use tracing::{info, warn};

use crate::config::Config;

/// Signers by chain id, for the chains with uptime reporting enabled.
pub type Signers = BTreeMap<u64, Signer>;

/// Runs the supervisor; returns after a clean shutdown.
pub fn run(config: Config, signers: Signers) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.datadir)
        .with_context(|| format!("cannot create datadir {}", config.datadir.display()))?;
    let db = ChainsDb::open(&config.datadir)
        .with_context(|| format!("cannot open the database in {}", config.datadir.display()))?;
    System::new().block_on(run_system(config, db, signers))
}

async fn run_system(config: Config, db: ChainsDb, mut signers: Signers) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let timeout = Duration::from_millis(config.l1.request_timeout_ms);
    let l1_rpc = EthRpc::new(&config.l1.rpc_url, timeout).map_err(|e| anyhow::anyhow!("l1.rpc_url: {e}"))?;
    if let Some(expected) = config.l1.chain_id {
        match l1_rpc.chain_id().await {
            Ok(got) if got != expected => {
                anyhow::bail!("the L1 node at {} serves chain {got}, but l1.chain_id is {expected}", l1_rpc.endpoint())
            }
            Ok(_) => {}
            Err(e) => {
                warn!(target: "main", error = %e, "cannot verify the L1 chain id now; the L1 watcher will before it records anything")
            }
        }
    }

    let db = ChainsDbActor::start(db);
    for chain in &config.chains {
        db.send(RegisterChain { chain: chain.chain_id, mode: ChainMode::FollowsL1 }).await??;
    }

    let l1_cfg = FollowConfig {
        tag: BlockTag::Latest,
        confirmations: config.l1.confirmations,
        batch_size: config.l1.batch_size,
        start_block: config.l1.start_block,
        expected_chain_id: config.l1.chain_id,
    };
    let l1_timing = WatcherTiming {
        poll_interval: Duration::from_millis(config.l1.poll_interval_ms),
        heads_interval: Some(Duration::from_millis(config.l1.heads_poll_interval_ms)),
        ..WatcherTiming::default()
    };
    let l1_watcher = {
        let (db, metrics) = (db.clone(), metrics.clone());
        Supervisor::start(move |_| {
            let store = L1Target::new(db);
            let follower = Follower::new("l1", l1_rpc, store.clone(), l1_cfg, metrics.clone());
            L1Watcher::new(follower, store, l1_timing, metrics)
        })
    };

    let mut l2_watchers: Vec<Addr<L2Watcher>> = Vec::new();
    for chain in &config.chains {
        let rpc = EthRpc::new(&chain.rpc_url, timeout)
            .map_err(|e| anyhow::anyhow!("chains.{}.rpc_url: {e}", chain.chain_id))?;
        let cfg = FollowConfig {
            tag: chain.derivation_tag,
            confirmations: 0,
            batch_size: chain.batch_size,
            start_block: None,
            expected_chain_id: Some(chain.chain_id),
        };
        let timing = WatcherTiming {
            poll_interval: Duration::from_millis(chain.poll_interval_ms),
            heads_interval: None,
            ..WatcherTiming::default()
        };
        let (db, metrics, id) = (db.clone(), metrics.clone(), chain.chain_id);
        l2_watchers.push(Supervisor::start(move |_| {
            let store = L2Target::new(db, id);
            let follower = Follower::new(format!("l2_{id}"), rpc, store.clone(), cfg, metrics.clone());
            L2Watcher::new(follower, store, timing, metrics)
        }));
    }

    let mut uptime = BTreeMap::new();
    for chain in config.chains.iter().filter(|c| c.uptime.enabled) {
        let Some(signer) = signers.remove(&chain.chain_id) else { continue };
        uptime.insert(chain.chain_id, start_uptime(chain, signer, timeout, db.clone(), metrics.clone())?);
    }

    let (server, addr) = crate::rpc::start(config.rpc.listen, db.clone(), metrics.clone(), uptime).await?;
    info!(target: "main", rpc = %addr, chains = config.chains.len(), datadir = %config.datadir.display(), "rollup-supervisor running");
    debug_fault_injection();

    wait_for_signal().await?;
    info!(target: "main", "signal received: stopping");
    let _ = l1_watcher.send(Shutdown).await;
    for w in &l2_watchers {
        let _ = w.send(Shutdown).await;
    }
    let _ = server.stop();
    db.send(Flush).await??;
    info!(target: "main", "database flushed; exiting");
    System::current().stop();
    Ok(())
}

/// Starts one chain's uptime flow: `UptimeWatchdog` → `TxInjector` → `SignerActor`.
fn start_uptime(
    chain: &crate::config::ChainConfig,
    signer: Signer,
    timeout: Duration,
    db: Addr<ChainsDbActor>,
    metrics: Metrics,
) -> anyhow::Result<UptimeHandles> {
    let u = &chain.uptime;
    let id = chain.chain_id;
    let rpc = EthRpc::new(&chain.rpc_url, timeout).map_err(|e| anyhow::anyhow!("chains.{id}.rpc_url: {e}"))?;
    let signer_address = signer.address();
    let signer_timeout = Duration::from_millis(u.signer.timeout_ms);
    let signer = {
        let metrics = metrics.clone();
        Supervisor::start(move |_| {
            SignerActor::new(format!("chain_{id}"), signer, signer_timeout, BreakerConfig::default(), metrics)
        })
    };
    let feed = u.feed_address.context("uptime.feed_address")?;
    let cfg = InjectorConfig {
        chain: id,
        feed,
        refresh_interval: Duration::from_millis(u.refresh_interval_ms()),
        clock_skew_margin_secs: u.clock_skew_margin_secs,
        gas_limit: u.gas_limit,
        max_fee_per_gas: u.max_fee_per_gas_wei,
        max_priority_fee_per_gas: u.max_priority_fee_per_gas_wei,
        fee_cap: u.fee_cap_wei,
        bump_percent: u.fee_bump_percent,
    };
    let injector = {
        let (rpc, metrics, signer) = (rpc.clone(), metrics.clone(), signer.clone().recipient());
        Supervisor::start(move |_| {
            TxInjector::new(Injector::new(
                cfg,
                rpc.clone(),
                RawTxSubmitter::new(rpc),
                signer,
                signer_address,
                db,
                metrics,
            ))
        })
    };
    let watchdog = {
        let (stalled, resumed) = (injector.clone().recipient(), injector.clone().recipient());
        let (max_age, every) = (u.max_block_age_secs, Duration::from_millis(u.check_interval_ms));
        Supervisor::start(move |_| UptimeWatchdog::new(id, rpc, max_age, every, stalled, resumed, metrics))
    };
    info!(target: "main", chain = id, signer = %signer_address, %feed, "uptime reporting enabled");
    Ok(UptimeHandles { watchdog, signer })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Debug builds only: `ROLLUP_SUPERVISOR_DEBUG_PANIC=1` panics inside the actor system once it
/// runs, so that tests can prove a panic ends the process with its exit code. Release builds
/// have no such hook.
fn debug_fault_injection() {
    #[cfg(debug_assertions)]
    if std::env::var_os("ROLLUP_SUPERVISOR_DEBUG_PANIC").is_some() {
        actix::spawn(async {
            #[allow(clippy::panic)]
            {
                panic!("injected by ROLLUP_SUPERVISOR_DEBUG_PANIC");
            }
        });
    }
}
