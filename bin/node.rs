//! Wires the actors together and runs them until SIGINT/SIGTERM.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use actix::{Addr, Arbiter, ArbiterHandle, Recipient, Supervisor, System};
use alloy::primitives::Address;
use anyhow::Context as _;
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
    derivation::RollupFollower,
    follow::{FollowConfig, Follower},
    metrics::Metrics,
    rpc::{BlockTag, EthRpc, ws},
    watcher::{L1Target, L1Watcher, L2Target, L2Watcher, RollupWatcher, WatcherTiming, messages::Shutdown},
};
use rollup_supervisor_signer::Signer;
use rollup_supervisor_storage::{ChainMode, ChainsDb};

use crate::{
    http::{HttpServer, Limits, Listener},
    identity::{identity_targets, verify_identities_at_start, verify_identities_in_background, verify_l1_chain_id},
    rpc::{Admin, RpcServer, UptimeHandles},
};
use tokio::sync::mpsc;
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
        let mut node = Node::start(config, db, signers, admin).await?;
        debug_fault_injection();
        let fatal = tokio::select! {
            signal = wait_for_signal() => signal.err(),
            fatal = node.fatal() => Some(fatal),
        };
        match fatal {
            None => {
                info!(target: "main", "signal received: stopping");
                node.stop().await
            }
            Some(fatal) => {
                if let Err(e) = node.stop().await {
                    warn!(target: "main", error = format!("{e:#}"), "stopping after a fatal error");
                }
                Err(fatal)
            }
        }
    })
}

/// Creates the data directory and opens the database in it.
pub fn open_db(config: &Config) -> anyhow::Result<ChainsDb> {
    std::fs::create_dir_all(&config.datadir)
        .with_context(|| format!("cannot create datadir {}", config.datadir.display()))?;
    ChainsDb::open(&config.datadir).with_context(|| format!("cannot open the database in {}", config.datadir.display()))
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
    l2_watchers: Vec<Recipient<Shutdown>>,
    rpc_server: RpcServer,
    http_server: HttpServer,
    /// A start-up check that failed after the servers came up (the L1 chain id).
    fatal: mpsc::Receiver<anyhow::Error>,
    arbiters: Arbiters,
}

impl Node {
    /// Starts every actor and both servers inside the current actix system. Nothing here waits
    /// for a node longer than [`crate::identity::IDENTITY_BOUND`] (the datadir's chain identities,
    /// see [`verify_identities_at_start`]; a foreign chain is a [`crate::identity::ForeignDatadir`] error before
    /// anything binds): the servers answer as soon as this returns, whatever the nodes do (the L1
    /// chain id and identities not verified in time are verified in the background).
    pub async fn start(config: Config, mut db: ChainsDb, mut signers: Signers, admin: Admin) -> anyhow::Result<Self> {
        let metrics = Metrics::default();
        metrics.process_started(env!("CARGO_PKG_VERSION"));
        let timeout = Duration::from_millis(config.l1.request_timeout_ms);
        // Each flow's clients are its own: a reqwest client's pooled connections are driven by
        // the runtime that opened them, so the start-up checks (on this thread) must not hand
        // theirs to a watcher on another arbiter.
        let l1_client = || {
            EthRpc::new(&config.l1.rpc_url, timeout)
                .map(|rpc| {
                    rpc.with_max_response_bytes(config.l1.max_response_bytes()).with_metrics(metrics.clone(), "l1")
                })
                .map_err(|e| anyhow::anyhow!("l1.rpc_url: {e}"))
        };
        let l2_client = |chain: &crate::config::ChainConfig| {
            let id = chain.chain_id;
            EthRpc::new(&chain.rpc_url, timeout)
                .map(|rpc| {
                    rpc.with_max_response_bytes(chain.max_response_bytes())
                        .with_metrics(metrics.clone(), format!("l2_{id}"))
                })
                .map_err(|e| anyhow::anyhow!("chains.{id}.rpc_url: {e}"))
        };
        let l1_rpc = l1_client()?;

        // Everything that can fail happens before the first watcher starts, except starting the
        // servers on their arbiter; an error there drops `arbiters`, which stops every flow.
        let l2_rpcs = config.chains.iter().map(l2_client).collect::<anyhow::Result<Vec<_>>>()?;
        let mut rollup_rpcs = BTreeMap::new();
        for chain in &config.chains {
            let (id, Some(url)) = (chain.chain_id, &chain.rollup_rpc_url) else { continue };
            let rpc = EthRpc::new(url, timeout)
                .map_err(|e| anyhow::anyhow!("chains.{id}.rollup_rpc_url: {e}"))?
                .with_max_response_bytes(chain.max_response_bytes())
                .with_metrics(metrics.clone(), format!("rollup_{id}"));
            rollup_rpcs.insert(id, rpc);
        }
        // Every sequencer a chain's report goes to: its own node, then each of `submit_urls`.
        // Their requests give up within two checks (1..=request_timeout_ms), so a dead endpoint
        // delays a check by that at most, and reads fall back to the next endpoint. Their answers
        // (full blocks, receipts) are bounded by `EthRpc::DEFAULT_MAX_RESPONSE_BYTES`, the pool's
        // by `MAX_POOL_BYTES`.
        let mut sequencers = BTreeMap::new();
        for chain in config.chains.iter().filter(|c| c.uptime.enabled) {
            let id = chain.chain_id;
            let short = Duration::from_millis(2 * chain.uptime.refresh_interval_ms())
                .clamp(Duration::from_secs(1), timeout.max(Duration::from_secs(1)));
            let rpc = EthRpc::new(&chain.rpc_url, short)
                .map_err(|e| anyhow::anyhow!("chains.{id}.rpc_url: {e}"))?
                .with_metrics(metrics.clone(), format!("l2_{id}"));
            let mut endpoints = vec![Endpoint { label: "rpc".into(), rpc }];
            for (i, url) in chain.uptime.submit_urls.iter().enumerate().filter(|(_, u)| **u != chain.rpc_url) {
                let rpc = EthRpc::new(url, short)
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
        // Before anything binds or starts: a datadir recorded from another chain is refused here
        // when the nodes answer within IDENTITY_BOUND, else in the background (see
        // `verify_identities_at_start`).
        let check_l2 = config.chains.iter().map(l2_client).collect::<anyhow::Result<Vec<_>>>()?;
        let targets = identity_targets(&config, &db, &l1_client()?, &check_l2)?;
        let pending = verify_identities_at_start(&config.datadir, &mut db, targets).await?;
        let gate = db.write_gate();
        let rpc_listener = Listener::bind(config.rpc.listen, "rpc.listen")?;
        let http_listener = Listener::bind(config.metrics.listen, "metrics.listen")?;
        let rpc_limits = Limits {
            max_connections: config.rpc.max_connections.get() as usize,
            header_read_timeout: Duration::from_millis(config.rpc.header_read_timeout_ms.get()),
        };
        let http_limits = Limits {
            max_connections: config.metrics.max_connections.get() as usize,
            header_read_timeout: Duration::from_millis(config.metrics.header_read_timeout_ms.get()),
        };
        let l1_check = config.l1.chain_id.map(|expected| l1_client().map(|rpc| (rpc, expected))).transpose()?;

        let (db, queries) = ChainsDbActor::start_with_queries(db, metrics.clone());
        for chain in &config.chains {
            let mode =
                if rollup_rpcs.contains_key(&chain.chain_id) { ChainMode::Explicit } else { ChainMode::FollowsL1 };
            db.send(RegisterChain { chain: chain.chain_id, mode }).await??;
        }

        let l1_cfg = FollowConfig {
            tag: BlockTag::Latest,
            confirmations: config.l1.confirmations,
            batch_size: config.l1.batch_size,
            start_block: config.l1.start_block,
            expected_chain_id: config.l1.chain_id,
            rewind_when_behind: false,
        };
        let l1_timing = WatcherTiming {
            poll_interval: Duration::from_millis(config.l1.poll_interval_ms),
            heads_interval: Some(Duration::from_millis(config.l1.heads_poll_interval_ms)),
            head_stall_after: Some(Duration::from_secs(config.l1.head_stall_secs)),
            ..WatcherTiming::default()
        };
        // Each flow runs on an arbiter (a thread) of its own, so a long catch-up, a slow node or a
        // burst of RPC calls in one does not hold up another's timers and I/O: L1, each chain's
        // derivation, each chain's uptime report, and both servers. The database has threads of
        // its own (the writer and readers behind `ChainsDbActor`).
        let mut arbiters = Arbiters::default();
        let l1_arbiter = arbiters.spawn()?;
        let l1_watcher = {
            let (db, metrics) = (db.clone(), metrics.clone());
            Supervisor::start_in_arbiter(&l1_arbiter, move |_| {
                let store = L1Target::new(db);
                let follower = Follower::new("l1", l1_rpc, store.clone(), l1_cfg, metrics.clone());
                L1Watcher::new(follower, l1_timing, metrics)
            })
        };

        if let Some(url) = config.l1.ws_url.clone() {
            let (watcher, metrics) = (l1_watcher.clone().recipient(), metrics.clone());
            l1_arbiter.spawn_fn(move || ws::follow_new_heads(url, watcher, metrics));
        }

        let mut l2_watchers: Vec<Recipient<Shutdown>> = Vec::new();
        for (chain, rpc) in config.chains.iter().zip(&l2_rpcs) {
            let (id, rpc) = (chain.chain_id, rpc.clone());
            let timing = WatcherTiming {
                poll_interval: Duration::from_millis(chain.poll_interval_ms),
                heads_interval: None,
                ..WatcherTiming::default()
            };
            let (db, metrics) = (db.clone(), metrics.clone());
            let arbiter = arbiters.spawn()?;
            if let Some(rollup) = rollup_rpcs.remove(&id) {
                let batch = chain.batch_size;
                let watcher = Supervisor::start_in_arbiter(&arbiter, move |_| {
                    let follower = RollupFollower::new(id, rollup, rpc, db, batch, metrics.clone());
                    RollupWatcher::new(follower, timing, metrics)
                });
                l2_watchers.push(watcher.recipient());
                continue;
            }
            let cfg = FollowConfig {
                tag: chain.derivation_tag,
                confirmations: 0,
                batch_size: chain.batch_size,
                start_block: None,
                expected_chain_id: Some(id),
                rewind_when_behind: true,
            };
            let watcher = Supervisor::start_in_arbiter(&arbiter, move |_| {
                let follower = Follower::new(format!("l2_{id}"), rpc, L2Target::new(db, id), cfg, metrics.clone());
                L2Watcher::new(follower, timing, metrics)
            });
            l2_watchers.push(watcher.recipient());
        }

        let mut uptime = BTreeMap::new();
        for chain in &config.chains {
            let (Some(feed), Some(signer), Some(sequencers)) = (
                uptime_feeds.get(&chain.chain_id),
                signers.remove(&chain.chain_id),
                sequencers.remove(&chain.chain_id),
            ) else {
                continue;
            };
            let handles =
                start_uptime(&arbiters.spawn()?, chain, *feed, sequencers, signer, db.clone(), metrics.clone());
            uptime.insert(chain.chain_id, handles);
        }

        let health = crate::http::Health {
            db: queries.clone(),
            l1_watcher: l1_watcher.clone(),
            signers: uptime.iter().map(|(id, h)| (*id, h.signer.clone())).collect(),
            max_l1_lag_blocks: config.metrics.ready_max_l1_lag_blocks,
        };
        let servers = {
            let metrics = metrics.clone();
            run_on(&arbiters.spawn()?, move || {
                let rpc = crate::rpc::serve(rpc_listener, rpc_limits, queries, metrics.clone(), uptime, admin)?;
                let http = HttpServer::metrics(http_listener, http_limits, metrics, health)?;
                anyhow::Ok((rpc, http))
            })
        };
        let (rpc_server, http_server) = servers.await??;
        let (rpc_addr, metrics_addr) = (rpc_server.addr(), http_server.addr());
        info!(target: "main", rpc = %rpc_addr, metrics = %metrics_addr, chains = config.chains.len(), datadir = %config.datadir.display(), "rollup-supervisor running");

        let (fail, fatal) = mpsc::channel(1);
        if !pending.is_empty() {
            let (fail, datadir) = (fail.clone(), config.datadir.clone());
            actix::spawn(async move {
                if let Err(e) = verify_identities_in_background(&datadir, pending, &gate).await {
                    let _ = fail.send(e).await;
                }
            });
        }
        if let Some((rpc, expected)) = l1_check {
            actix::spawn(async move {
                if let Err(e) = verify_l1_chain_id(&rpc, expected).await {
                    let _ = fail.send(e).await;
                }
            });
        }
        Ok(Self {
            rpc_addr,
            metrics_addr,
            metrics,
            db,
            l1_watcher,
            l2_watchers,
            rpc_server,
            http_server,
            fatal,
            arbiters,
        })
    }

    /// Resolves with the error of a start-up check that failed after [`Node::start`] returned
    /// (the L1 node serves another chain than `l1.chain_id`); never while they pass.
    pub async fn fatal(&mut self) -> anyhow::Error {
        match self.fatal.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    /// Stops taking work, flushes the database and stops the actor system, within
    /// [`SHUTDOWN_TIMEOUT`]. Both servers refuse new connections at once and answer the requests
    /// in flight (within [`crate::http::DRAIN_TIMEOUT`]) while the watchers stop and the
    /// database flushes.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Node { db, l1_watcher, l2_watchers, rpc_server, http_server, arbiters, .. } = self;
        let servers = async move {
            tokio::join!(rpc_server.stop(), http_server.stop());
        };
        let actors = async move {
            let _ = l1_watcher.send(Shutdown).await;
            for w in &l2_watchers {
                let _ = w.send(Shutdown).await;
            }
            db.send(Flush).await??;
            anyhow::Ok(())
        };
        let stopping = async move { tokio::join!(servers, actors).1 };
        let result = match tokio::time::timeout(SHUTDOWN_TIMEOUT, stopping).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("shutdown did not finish within {SHUTDOWN_TIMEOUT:?}")),
        };
        if result.is_ok() {
            info!(target: "main", "database flushed; exiting");
        }
        arbiters.stop(Duration::from_secs(2)).await;
        System::current().stop();
        result
    }
}

/// The arbiters the flows and servers run on; dropping them stops them (also when the start
/// fails half-way, so no flow outlives its node).
#[derive(Debug, Default)]
struct Arbiters(Vec<Arbiter>);

impl Arbiters {
    /// A new arbiter (thread) for one flow.
    fn spawn(&mut self) -> anyhow::Result<ArbiterHandle> {
        let arbiter = Arbiter::try_new().context("cannot start a thread for an arbiter")?;
        let handle = arbiter.handle();
        self.0.push(arbiter);
        Ok(handle)
    }

    /// Stops every arbiter and waits, for at most `bound`, until their threads have ended (the
    /// actors on them dropped).
    async fn stop(mut self, bound: Duration) {
        let arbiters = std::mem::take(&mut self.0);
        for arbiter in &arbiters {
            arbiter.stop();
        }
        // A detached thread, not `spawn_blocking`: the runtime's shutdown would wait for it.
        let (tx, joined) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            arbiters.into_iter().for_each(|a| drop(a.join()));
            let _ = tx.send(());
        });
        if tokio::time::timeout(bound, joined).await.is_err() {
            warn!(target: "main", ?bound, "an arbiter did not stop in time");
        }
    }
}

impl Drop for Arbiters {
    fn drop(&mut self) {
        for arbiter in &self.0 {
            arbiter.stop();
        }
    }
}

/// Runs `f` on `arbiter` and returns what it returns (actix's `spawn_fn` does not).
fn run_on<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
    arbiter: &ArbiterHandle,
    f: F,
) -> impl Future<Output = anyhow::Result<T>> + use<T, F> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = arbiter.spawn_fn(move || {
        let _ = tx.send(f());
    });
    async move {
        anyhow::ensure!(spawned, "an arbiter stopped at start-up");
        rx.await.context("an arbiter stopped at start-up")
    }
}

/// Starts one chain's uptime flow on `arbiter`: `UptimeWatchdog` → `TxInjector` → `SignerActor`.
fn start_uptime(
    arbiter: &ArbiterHandle,
    chain: &crate::config::ChainConfig,
    feed: Address,
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
        Supervisor::start_in_arbiter(arbiter, move |_| {
            SignerActor::new(id, signer, signer_timeout, BreakerConfig::default(), metrics)
        })
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
        max_reverts: u.max_reverts,
    };
    let injector = {
        let (sequencers, metrics, signer) = (sequencers.clone(), metrics.clone(), signer.clone().recipient());
        Supervisor::start_in_arbiter(arbiter, move |_| {
            TxInjector::new(Injector::new(
                cfg.clone(),
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
        Supervisor::start_in_arbiter(arbiter, move |_| {
            UptimeWatchdog::new(id, sequencers.clone(), max_age, every, reports, metrics.clone())
        })
    };
    if u128::from(u.gas_limit).saturating_mul(u.fee_cap_wei) > 10u128.pow(18) {
        warn!(target: "main", chain = id, gas_limit = u.gas_limit, fee_cap_wei = u.fee_cap_wei, "gas_limit x fee_cap_wei exceeds 1 ether: geth and op-geth refuse such transactions by default (--rpc.txfeecap), so the report could not be priced up to the cap there");
    }
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
