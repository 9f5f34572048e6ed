//! Wires the actors together and runs them until SIGINT/SIGTERM.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use actix::{Addr, Supervisor, System};
use alloy::primitives::Address;
use anyhow::Context as _;
use jsonrpsee::server::ServerHandle;
use rollup_supervisor_actors::uptime::{
    injector::{Injector, InjectorConfig, ReportMode},
    pricing::PriceRules,
    signer_actor::{BreakerConfig, SignerActor},
    submit::{Endpoint, Sequencers},
    tx_injector::TxInjector,
    watchdog::{Reports, UptimeWatchdog},
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

use crate::rpc::{Admin, UptimeHandles};
use tracing::{info, warn};

use crate::config::Config;

/// Signers by chain id, for the chains with uptime reporting enabled.
pub type Signers = BTreeMap<u64, Signer>;

/// How long a graceful shutdown may take before the process gives up on it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the supervisor until SIGINT/SIGTERM; returns after a clean shutdown.
pub fn run(config: Config, signers: Signers, admin: Admin) -> anyhow::Result<()> {
    let db = open_db(&config)?;
    System::new().block_on(async move {
        let node = Node::start(config, db, signers, admin).await?;
        debug_fault_injection();
        wait_for_signal().await?;
        info!(target: "main", "signal received: stopping");
        node.stop().await
    })
}

/// Creates the data directory and opens the database in it.
pub fn open_db(config: &Config) -> anyhow::Result<ChainsDb> {
    std::fs::create_dir_all(&config.datadir)
        .with_context(|| format!("cannot create datadir {}", config.datadir.display()))?;
    ChainsDb::open(&config.datadir).with_context(|| format!("cannot open the database in {}", config.datadir.display()))
}

/// Binds a server's address up front, so that a busy port fails the start before any actor runs.
pub fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (key `{key}`)"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A running supervisor: every actor, the JSON-RPC server and the metrics server.
#[derive(Debug)]
pub struct Node {
    /// Where the JSON-RPC server listens.
    pub rpc_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The database actor.
    pub db: Addr<ChainsDbActor>,
    l1_watcher: Addr<L1Watcher>,
    l2_watchers: Vec<Addr<L2Watcher>>,
    rpc_server: ServerHandle,
    http_server: crate::http::HttpServer,
}

impl Node {
    /// Starts every actor and both servers inside the current actix system.
    pub async fn start(config: Config, db: ChainsDb, mut signers: Signers, admin: Admin) -> anyhow::Result<Self> {
        let metrics = Metrics::default();
        metrics.process_started(env!("CARGO_PKG_VERSION"));
        let timeout = Duration::from_millis(config.l1.request_timeout_ms);
        let l1_rpc = EthRpc::new(&config.l1.rpc_url, timeout)
            .map_err(|e| anyhow::anyhow!("l1.rpc_url: {e}"))?
            .with_metrics(metrics.clone(), "l1");
        if let Some(expected) = config.l1.chain_id {
            match l1_rpc.chain_id().await {
                Ok(got) if got != expected => {
                    anyhow::bail!(
                        "the L1 node at {} serves chain {got}, but l1.chain_id is {expected}",
                        l1_rpc.endpoint()
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(target: "main", error = %e, "cannot verify the L1 chain id now; the L1 watcher will before it records anything")
                }
            }
        }

        // Everything that can fail happens before the first watcher starts: an error return drops
        // the actor system, and actors already running in it would then fire their timers
        // outside a runtime.
        let mut l2_rpcs = Vec::new();
        for chain in &config.chains {
            let id = chain.chain_id;
            let rpc = EthRpc::new(&chain.rpc_url, timeout)
                .map_err(|e| anyhow::anyhow!("chains.{id}.rpc_url: {e}"))?
                .with_metrics(metrics.clone(), format!("l2_{id}"));
            l2_rpcs.push(rpc);
        }
        // Every sequencer a chain's report goes to: its own node, then each of `submit_urls`.
        let mut sequencers = BTreeMap::new();
        for (chain, rpc) in config.chains.iter().zip(&l2_rpcs).filter(|(c, _)| c.uptime.enabled) {
            let id = chain.chain_id;
            let mut endpoints = vec![Endpoint { label: "rpc".into(), rpc: rpc.clone() }];
            for (i, url) in chain.uptime.submit_urls.iter().enumerate().filter(|(_, u)| **u != chain.rpc_url) {
                let rpc = EthRpc::new(url, timeout)
                    .map_err(|e| anyhow::anyhow!("chains.{id}.uptime.submit_urls[{i}]: {e}"))?
                    .with_metrics(metrics.clone(), format!("l2_{id}_submit_{i}"));
                endpoints.push(Endpoint { label: format!("submit_{i}"), rpc });
            }
            sequencers.insert(id, Sequencers::new(endpoints));
        }
        let uptime_feeds = config
            .chains
            .iter()
            .filter(|c| c.uptime.enabled)
            .map(|c| c.uptime.feed_address.map(|feed| (c.chain_id, feed)).context("uptime.feed_address"))
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        let rpc_listener = bind(config.rpc.listen, "rpc.listen")?;
        let http_listener = bind(config.metrics.listen, "metrics.listen")?;

        let db = ChainsDbActor::start(db, metrics.clone());
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
        for (chain, rpc) in config.chains.iter().zip(&l2_rpcs) {
            let (id, rpc) = (chain.chain_id, rpc.clone());
            let cfg = FollowConfig {
                tag: chain.derivation_tag,
                confirmations: 0,
                batch_size: chain.batch_size,
                start_block: None,
                expected_chain_id: Some(id),
            };
            let timing = WatcherTiming {
                poll_interval: Duration::from_millis(chain.poll_interval_ms),
                heads_interval: None,
                ..WatcherTiming::default()
            };
            let (db, metrics) = (db.clone(), metrics.clone());
            l2_watchers.push(Supervisor::start(move |_| {
                let store = L2Target::new(db, id);
                let follower = Follower::new(format!("l2_{id}"), rpc, store.clone(), cfg, metrics.clone());
                L2Watcher::new(follower, store, timing, metrics)
            }));
        }

        let mut uptime = BTreeMap::new();
        for (chain, rpc) in config.chains.iter().zip(&l2_rpcs) {
            let (Some(feed), Some(signer), Some(sequencers)) = (
                uptime_feeds.get(&chain.chain_id),
                signers.remove(&chain.chain_id),
                sequencers.remove(&chain.chain_id),
            ) else {
                continue;
            };
            let handles = start_uptime(chain, *feed, rpc.clone(), sequencers, signer, db.clone(), metrics.clone());
            uptime.insert(chain.chain_id, handles);
        }

        let (rpc_server, rpc_addr) =
            crate::rpc::serve(rpc_listener, db.clone(), metrics.clone(), uptime.clone(), admin)?;
        let health = crate::http::Health {
            db: db.clone(),
            l1_watcher: l1_watcher.clone(),
            signers: uptime.iter().map(|(id, h)| (*id, h.signer.clone())).collect(),
            max_l1_lag_blocks: config.metrics.ready_max_l1_lag_blocks,
        };
        let http_server = crate::http::HttpServer::serve(http_listener, metrics.clone(), health)?;
        let metrics_addr = http_server.addr();
        info!(target: "main", rpc = %rpc_addr, metrics = %metrics_addr, chains = config.chains.len(), datadir = %config.datadir.display(), "rollup-supervisor running");
        Ok(Self { rpc_addr, metrics_addr, metrics, db, l1_watcher, l2_watchers, rpc_server, http_server })
    }

    /// Stops taking work, flushes the database and stops the actor system, within
    /// [`SHUTDOWN_TIMEOUT`].
    pub async fn stop(self) -> anyhow::Result<()> {
        let Node { db, l1_watcher, l2_watchers, rpc_server, http_server, .. } = self;
        let stopping = async move {
            let _ = rpc_server.stop();
            http_server.stop();
            let _ = l1_watcher.send(Shutdown).await;
            for w in &l2_watchers {
                let _ = w.send(Shutdown).await;
            }
            db.send(Flush).await??;
            anyhow::Ok(())
        };
        let result = match tokio::time::timeout(SHUTDOWN_TIMEOUT, stopping).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("shutdown did not finish within {SHUTDOWN_TIMEOUT:?}")),
        };
        if result.is_ok() {
            info!(target: "main", "database flushed; exiting");
        }
        System::current().stop();
        result
    }
}

/// Starts one chain's uptime flow: `UptimeWatchdog` → `TxInjector` → `SignerActor`.
#[allow(clippy::too_many_arguments)]
fn start_uptime(
    chain: &crate::config::ChainConfig,
    feed: Address,
    rpc: EthRpc,
    sequencers: Sequencers,
    signer: Signer,
    db: Addr<ChainsDbActor>,
    metrics: Metrics,
) -> UptimeHandles {
    let u = &chain.uptime;
    let id = chain.chain_id;
    let signer_address = signer.address();
    let signer_timeout = Duration::from_millis(u.signer.timeout_ms);
    let signer = {
        let metrics = metrics.clone();
        Supervisor::start(move |_| SignerActor::new(id, signer, signer_timeout, BreakerConfig::default(), metrics))
    };
    let cfg = InjectorConfig {
        chain: id,
        feed,
        mode: u.reporter_address.map_or(ReportMode::Pair, ReportMode::Reporter),
        refresh_interval: Duration::from_millis(u.refresh_interval_ms()),
        clock_skew_margin_secs: u.clock_skew_margin_secs,
        gas_limit: u.gas_limit,
        rules: PriceRules {
            floor: u.max_fee_per_gas_wei,
            margin_percent: u.outbid_margin_percent,
            bump_percent: u.fee_bump_percent,
            cap: u.fee_cap_wei,
        },
        planned_refreshes: u.planned_refreshes(),
        max_reverts: u.max_reverts,
    };
    let injector = {
        let (rpc, metrics, signer) = (rpc.clone(), metrics.clone(), signer.clone().recipient());
        Supervisor::start(move |_| {
            TxInjector::new(Injector::new(
                cfg.clone(),
                rpc.clone(),
                sequencers.clone(),
                signer.clone(),
                signer_address,
                db.clone(),
                metrics.clone(),
            ))
        })
    };
    let watchdog = {
        let reports = Reports::to(&injector);
        let (max_age, every) = (u.max_block_age_secs, Duration::from_millis(u.check_interval_ms));
        Supervisor::start(move |_| UptimeWatchdog::new(id, rpc, max_age, every, reports, metrics))
    };
    info!(target: "main", chain = id, signer = %signer_address, %feed, "uptime reporting enabled");
    UptimeHandles { watchdog, signer }
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
