//! The injector's logic: on a stall, pre-positions the outage report in every sequencer's pool
//! and keeps it first and fresh there while the outage lasts; after resumption, confirms from
//! the chain what landed and where, and journals the outcome. Signing happens here, while the
//! chain is stalled: never on the block-production path.
//!
//! Two report shapes ([`ReportMode`]):
//! - **reporter**: one transaction `report(last_block.timestamp)` to our `UptimeReporter`, whose
//!   up round starts at the including block's own timestamp. Signed once per outage; re-signed
//!   only when a competitor overtakes it. Nothing ages.
//! - **pair**: `updateStatus(true, last_block.timestamp)` (nonce N) and
//!   `updateStatus(false, t_up)` (N+1) straight to the feed. The up transaction carries a
//!   wall-clock `t_up` and is refreshed on the schedule of [`pricing::refresh_due`].
//!
//! Each check while stalled: read every endpoint's pool ([`Sequencers::pools`]), price above the
//! best competitor ([`PriceRules::target`]), re-sign a slot only when it is overtaken or due for
//! a refresh (paying the pool's bump over the highest price ever signed for it), submit to
//! every endpoint, and re-submit the accepted bytes wherever a pool lost them. The price of
//! every signature is journaled before it is submitted (and the accepted transaction after),
//! so a `kill -9` at any moment resumes with the same nonces and a price that replaces
//! whatever of ours a pool holds: at most one report per nonce can ever land. Reads of the
//! chain go to whichever endpoint answers. The confirmation after resumption is in
//! `confirm.rs`.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix::{Addr, Recipient};
use alloy::{
    consensus::{Signed, TxEip1559},
    primitives::{Address, B256},
};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord, OutageResult, Superseded};
use tracing::{error, info, warn};

use super::{
    messages::SignTransaction,
    pool::{Competition, PoolView},
    ports::{Journal, Node, ReportSigner},
    pricing::PriceRules,
    signer_actor::SignError,
    submit::{PoolError, Sequencers},
};
use crate::{
    chains_db::ChainsDbActor,
    metrics::{self, Metrics},
};

/// What an outage report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportMode {
    /// Two transactions straight to the feed.
    Pair,
    /// One transaction to our reporter contract at this address.
    Reporter(Address),
}

impl ReportMode {
    /// Transactions per report.
    pub fn slots(self) -> usize {
        match self {
            ReportMode::Pair => 2,
            ReportMode::Reporter(_) => 1,
        }
    }
}

/// How the injector prices and times the report.
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    /// The L2 chain (and the chain id the transactions carry).
    pub chain: ChainId,
    /// The uptime feed.
    pub feed: Address,
    /// Pair or reporter.
    pub mode: ReportMode,
    /// Between checks of the pooled report.
    pub refresh_interval: Duration,
    /// `t_up = now - margin` (pair mode), so it is never later than the including block.
    pub clock_skew_margin_secs: u64,
    /// Gas limit of each transaction.
    pub gas_limit: u64,
    /// Floor, margin, bump and cap.
    pub rules: PriceRules,
    /// Reverted reports after which an outage is given up.
    pub max_reverts: u32,
}

/// One read of every endpoint's pool, and how long it took.
pub(super) type PoolRead = (Vec<Result<PoolView, PoolError>>, Duration);

/// Where the injector is in an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// No outage.
    Idle,
    /// The chain is stalled: pre-position and keep first and fresh.
    Stalled,
    /// The chain resumed: confirm (and retry if needed).
    Confirming,
}

/// The `result` label values of `injections_total`.
pub const INJECTION_RESULTS: [&str; 6] =
    ["landed_first", "landed_not_first", "ignored", "already_reported", "failed", "gave_up"];

/// How often the balance is read while no outage is in progress.
const BALANCE_EVERY: Duration = Duration::from_secs(30);

/// Why an operation did not complete; logged and counted, then retried on the next tick.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The L2 node failed.
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// The journal could not be written.
    #[error("journal: {0}")]
    Journal(String),
    /// A contract answered something we cannot read.
    #[error("contract {0}: unreadable answer")]
    Contract(Address),
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The injector's logic; see the module documentation. It reaches the world only through its
/// three ports ([`super::ports`]): the sequencer endpoints `N`, the signer `S` and the outage
/// journal `J`. The defaults are the production types (`Injector` alone names them); tests
/// drive it with doubles.
#[derive(Debug)]
pub struct Injector<N = Sequencers, S = Recipient<SignTransaction>, J = Addr<ChainsDbActor>> {
    pub(super) cfg: InjectorConfig,
    /// The chain's sequencer endpoints: reads, pools and submissions.
    pub(super) node: N,
    pub(super) signer: S,
    pub(super) signer_address: Address,
    /// The outage journal.
    pub(super) journal: J,
    pub(super) metrics: Metrics,
    pub(super) phase: Phase,
    pub(super) outage: Option<OutageRecord>,
    pub(super) preflight_ok: bool,
    pub(super) unfunded: bool,
    /// Per endpoint: whether its pool was readable at the last read (`None`: not read yet).
    pub(super) pool_readable: Vec<Option<bool>>,
    /// Head when the newest retry was sent after resumption (a retry waits one block).
    pub(super) retry_sent_at: Option<u64>,
    /// The outage's not-first failure was counted.
    pub(super) failure_counted: bool,
    /// The pool read in flight (it may outlast a check: the check then prices with `competition`).
    pub(super) pool_read: Option<tokio::task::JoinHandle<PoolRead>>,
    /// No new pool read before this (after a read slower than a check).
    pub(super) pool_rest_until: Option<Instant>,
    /// The best competitor of the newest completed pool read.
    pub(super) competition: Option<Competition>,
    /// Per transaction hash, which endpoints accepted it (a pool that never held it cannot lose it).
    pub(super) held: HashMap<B256, Vec<bool>>,
    /// The feed would ignore this outage's down update (logged once per outage).
    pub(super) warned_ignored: bool,
    /// When `signer_balance_wei` was last read.
    pub(super) balance_read_at: Option<Instant>,
    /// Why the report could not be pre-positioned the last time it was tried (for the operator).
    pub(super) blocked: Option<String>,
    /// The missing permission last reported (logged once per change).
    pub(super) permission_problem: Option<String>,
}

impl<N: Node, S: ReportSigner, J: Journal> Injector<N, S, J> {
    /// An injector; `signer_address` is the configured signer account. `node` holds the
    /// chain's own node first, then every `submit_urls` endpoint: reports go to all of them, and
    /// reads of the chain to whichever answers.
    pub fn new(cfg: InjectorConfig, node: N, signer: S, signer_address: Address, journal: J, metrics: Metrics) -> Self {
        Self {
            pool_readable: vec![None; node.endpoints()],
            cfg,
            node,
            signer,
            signer_address,
            journal,
            metrics,
            phase: Phase::Idle,
            outage: None,
            preflight_ok: false,
            unfunded: false,
            retry_sent_at: None,
            failure_counted: false,
            pool_read: None,
            pool_rest_until: None,
            competition: None,
            held: HashMap::new(),
            warned_ignored: false,
            balance_read_at: None,
            blocked: None,
            permission_problem: None,
        }
    }

    /// Start-up: checks the chain id and the permissions, whether each endpoint serves its pool,
    /// and picks up an unfinished outage from the journal.
    pub async fn start(&mut self) -> Result<(), InjectError> {
        self.init_metrics();
        if let Some(record) = self.journal.last_outage(self.cfg.chain).await?
            && record.result == OutageResult::Pending
        {
            info!(target: "uptime", chain = self.cfg.chain, down_ts = record.down_ts(), "resuming an unfinished outage from the journal");
            let mut record = record;
            let reporter = match self.cfg.mode {
                ReportMode::Reporter(r) => Some(r),
                ReportMode::Pair => None,
            };
            if record.nonce.is_some() && record.reporter != reporter {
                // The mode changed across the restart: re-sign at the same nonces, above
                // anything of ours any pool may hold for them.
                warn!(target: "uptime", chain = self.cfg.chain, was = ?record.reporter, now = ?reporter, "the report mode changed mid-outage: re-signing the report at the same nonces");
                let highest = record.signed_fees.iter().copied().max().unwrap_or(0);
                record.txs.clear();
                record.signed_fees = vec![highest; self.cfg.mode.slots()];
                record.reporter = reporter;
            }
            self.outage = Some(record);
            self.phase = Phase::Confirming;
        }
        // Said once at start-up: pricing falls back to the configured fees on a node without it.
        let views = self.node.pools(self.signer_address).await;
        self.take_pools(views);
        self.preflight().await
    }

    /// The outage began after `last_block`.
    pub async fn on_stalled(&mut self, last_block: BlockRef) -> Result<(), InjectError> {
        let same = self.outage.as_ref().is_some_and(|o| o.down_ts() == last_block.timestamp);
        let old = if same { None } else { self.outage.clone() };
        // What pools may still hold at the nonces the new report takes: an unfinished report's
        // signatures, or what a report that never chose its nonces had itself superseded.
        let superseded = old.as_ref().and_then(|o| match (o.nonce, &o.result) {
            (Some(nonce), OutageResult::Pending) => Some(Superseded { nonce, signed_fees: o.signed_fees.clone() }),
            (None, _) => o.superseded.clone(),
            (Some(_), _) => None,
        });
        let mut finished = Ok(());
        if let Some(old) = old.filter(|o| o.result == OutageResult::Pending) {
            // A new stall before the last outage's report landed: that one is not reported (its
            // nonces go to this one's report), and says so.
            self.not_first(old.last_block.number.saturating_add(1), "a new outage began before the report landed");
            error!(target: "uptime", chain = self.cfg.chain, old_down_ts = old.down_ts(), new_down_ts = last_block.timestamp, "the previous outage's report never landed: superseded by the new outage");
            let reason = "superseded: a new outage began before its report landed".to_owned();
            finished = self.finish(OutageResult::Failed { reason }, None).await;
        }
        self.phase = Phase::Stalled;
        self.retry_sent_at = None;
        if !same {
            let mut record = OutageRecord::new(self.cfg.chain, last_block);
            record.superseded = superseded;
            self.count(&metrics::OUTAGES);
            // In memory before the journal: the stall is said once, so a write that fails (a
            // full disk) must not lose it. The next check journals it before it submits.
            self.outage = Some(record.clone());
            self.failure_counted = false;
            // Permissions can change between outages: checked again for each.
            self.preflight_ok = false;
            finished?;
            self.journal(&record).await?;
        }
        self.pre_position().await
    }

    /// The operator forced an outage after `last_block`: handled as a stall, unless an earlier
    /// outage is still being confirmed. Answers the outage once its report is pre-positioned (or
    /// the feed already shows it), or why not.
    pub async fn on_forced(&mut self, last_block: BlockRef) -> Result<OutageRecord, String> {
        if let Some(o) = &self.outage
            && self.phase == Phase::Confirming
            && o.down_ts() != last_block.timestamp
        {
            return Err(format!(
                "the outage after block {} is still being confirmed; try again once it is reported",
                o.last_block.number
            ));
        }
        self.on_stalled(last_block).await.map_err(|e| e.to_string())?;
        match &self.outage {
            Some(o) if o.fully_pooled(self.cfg.mode.slots()) || o.result != OutageResult::Pending => Ok(o.clone()),
            _ => Err(self.blocked.clone().unwrap_or_else(|| "the report was not pre-positioned; see the log".into())),
        }
    }

    /// The check tick: keep the report first and fresh while stalled; confirm after resumption.
    pub async fn tick(&mut self) -> Result<(), InjectError> {
        match self.phase {
            Phase::Idle => {
                if self.balance_read_at.is_none_or(|at| at.elapsed() >= BALANCE_EVERY) {
                    self.read_balance().await?;
                }
                Ok(())
            }
            Phase::Stalled => self.pre_position().await,
            Phase::Confirming => self.confirm().await,
        }
    }

    /// The sequencer produced a block after the gap.
    pub async fn on_resumed(&mut self, last_block: BlockRef) -> Result<(), InjectError> {
        if self.outage.as_ref().is_none_or(|o| o.down_ts() != last_block.timestamp) {
            return Ok(());
        }
        self.phase = Phase::Confirming;
        self.confirm().await
    }

    pub(super) async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, InjectError> {
        Ok(self.signer.sign(tx).await?)
    }

    pub(super) async fn journal(&self, record: &OutageRecord) -> Result<(), InjectError> {
        self.journal.put_outage(record).await
    }
}
