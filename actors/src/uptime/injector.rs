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
    primitives::{Address, B256, Bytes, U256},
};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord, OutageResult};
use tracing::{error, info, warn};

use super::{
    feed::{self, Round},
    messages::*,
    pool::{Competition, PoolView},
    pricing::PriceRules,
    signer_actor::SignError,
    submit::{PoolError, SUBMISSION_RESULTS, Sequencers},
};
use crate::{
    chains_db::{
        ChainsDbActor,
        messages::{GetLastOutage, PutOutage},
    },
    metrics::{self, Family, Metrics},
    rpc::{BlockTag, RpcReceipt, RpcTx},
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

/// The injector's logic; see the module documentation.
#[derive(Debug)]
pub struct Injector {
    pub(super) cfg: InjectorConfig,
    pub(super) sequencers: Sequencers,
    pub(super) signer: Recipient<SignTransaction>,
    pub(super) signer_address: Address,
    pub(super) db: Addr<ChainsDbActor>,
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

impl Injector {
    /// An injector; `signer_address` is the configured signer account. `sequencers` holds the
    /// chain's own node first, then every `submit_urls` endpoint: reports go to all of them, and
    /// reads of the chain to whichever answers.
    pub fn new(
        cfg: InjectorConfig,
        sequencers: Sequencers,
        signer: Recipient<SignTransaction>,
        signer_address: Address,
        db: Addr<ChainsDbActor>,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool_readable: vec![None; sequencers.len()],
            cfg,
            sequencers,
            signer,
            signer_address,
            db,
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

    pub(super) fn chain_label(&self) -> String {
        self.cfg.chain.to_string()
    }

    pub(super) fn count(&self, family: &Family) {
        self.metrics.inc(family, &[("chain", self.chain_label().as_str())]);
    }

    pub(super) fn gauge(&self, family: &Family, value: f64) {
        self.metrics.set(family, &[("chain", self.chain_label().as_str())], value);
    }

    pub(super) fn count_endpoint(&self, family: &Family, endpoint: usize, extra: Option<(&'static str, &str)>) {
        let chain = self.chain_label();
        let label = self.sequencers.labels().nth(endpoint).unwrap_or("?").to_owned();
        let mut labels = vec![("chain", chain.as_str()), ("endpoint", label.as_str())];
        labels.extend(extra);
        self.metrics.inc(family, &labels);
    }

    /// Counts the outcome of an outage report (`injections_total{result}`).
    pub(super) fn injection(&self, result: &str) {
        self.metrics.inc(&metrics::INJECTIONS, &[("chain", self.chain_label().as_str()), ("result", result)]);
    }

    /// Creates every per-chain series at zero, so that alerts on `increase()` see the first event.
    pub(super) fn init_metrics(&self) {
        let chain = self.chain_label();
        let labels = [("chain", chain.as_str())];
        for family in [
            &metrics::OUTAGES,
            &metrics::PAIRS_SUBMITTED,
            &metrics::PAIR_REFRESHES,
            &metrics::REPORT_REPRICED,
            &metrics::SUBMIT_ERRORS,
            &metrics::UPTIME_ERRORS,
            &metrics::FEE_CAP_REACHED,
            &metrics::REPORT_OUTBID,
            &metrics::REPORT_REVERTS,
        ] {
            self.metrics.touch(family, &labels);
        }
        for result in INJECTION_RESULTS {
            self.metrics.touch(&metrics::INJECTIONS, &[("chain", chain.as_str()), ("result", result)]);
        }
        for endpoint in self.sequencers.labels() {
            let labels = [("chain", chain.as_str()), ("endpoint", endpoint)];
            self.metrics.touch(&metrics::POOL_LOST, &labels);
            for result in SUBMISSION_RESULTS {
                let labels = [("chain", chain.as_str()), ("endpoint", endpoint), ("result", result)];
                self.metrics.touch(&metrics::SUBMISSIONS, &labels);
            }
        }
        for family in [&metrics::WRONG_CHAIN, &metrics::SIGNER_MISSING_ROLE, &metrics::SIGNER_UNFUNDED] {
            self.metrics.set(family, &labels, 0.0);
        }
    }

    /// What a report may cost, checked while no outage is on: every transaction of it at the
    /// fee cap (where competitors and, in pair mode, refreshes may take it), so the alert fires
    /// before an outage needs the money.
    pub(super) fn planned_cost(&self) -> U256 {
        U256::from(self.cfg.gas_limit) * U256::from(self.cfg.rules.cap) * U256::from(self.cfg.mode.slots())
    }

    /// Reads the signer's balance into `signer_balance_wei`, and while no outage is on, whether
    /// it pays for a report at the configured fees (`signer_unfunded`), so the alert fires before
    /// an outage needs the money.
    pub(super) async fn read_balance(&mut self) -> Result<U256, InjectError> {
        let who = self.signer_address;
        let balance = self.sequencers.read(|r| async move { r.balance(who).await }).await?;
        self.gauge(&metrics::SIGNER_BALANCE, f64::from(balance));
        if self.phase == Phase::Idle {
            self.funded(balance, self.planned_cost());
        }
        self.balance_read_at = Some(Instant::now());
        Ok(balance)
    }

    /// Start-up: checks the chain id and the permissions, whether each endpoint serves its pool,
    /// and picks up an unfinished outage from the journal.
    pub async fn start(&mut self) -> Result<(), InjectError> {
        self.init_metrics();
        let last =
            self.db.send(GetLastOutage(self.cfg.chain)).await.map_err(|e| InjectError::Journal(e.to_string()))?;
        if let Some(record) = last.map_err(|e| InjectError::Journal(e.to_string()))?
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
        let views = self.sequencers.pools(self.signer_address).await;
        self.take_pools(views);
        self.preflight().await
    }

    /// The chain id, and the permissions the report needs: the signer's `FEED_UPDATER_ROLE`
    /// (pair), or the reporter's role, its feed and its allowance of the signer (reporter).
    pub(super) async fn preflight(&mut self) -> Result<(), InjectError> {
        if self.preflight_ok {
            return Ok(());
        }
        let chain_id = self.sequencers.read(|r| async move { r.chain_id().await }).await?;
        if chain_id != self.cfg.chain {
            self.gauge(&metrics::WRONG_CHAIN, 1.0);
            self.blocked = Some(format!("the L2 node serves chain {chain_id}, not {}", self.cfg.chain));
            error!(target: "uptime", chain = self.cfg.chain, node_chain = chain_id, "the L2 node serves another chain: refusing to inject");
            return Ok(());
        }
        let problem = match self.cfg.mode {
            ReportMode::Pair => (!self.has_role(self.signer_address).await?).then(|| {
                format!("the signer {} lacks FEED_UPDATER_ROLE on the feed {}", self.signer_address, self.cfg.feed)
            }),
            ReportMode::Reporter(reporter) => {
                let data = self.call(reporter, feed::reporter_feed()).await?;
                let its_feed = feed::decode_address(&data).ok_or(InjectError::Contract(reporter))?;
                let data = self.call(reporter, feed::is_reporter(self.signer_address)).await?;
                let allowed = feed::decode_bool(&data).ok_or(InjectError::Contract(reporter))?;
                if its_feed != self.cfg.feed {
                    Some(format!("the reporter {reporter} reports to the feed {its_feed}, not {}", self.cfg.feed))
                } else if !self.has_role(reporter).await? {
                    Some(format!("the reporter {reporter} lacks FEED_UPDATER_ROLE on the feed {}", self.cfg.feed))
                } else if !allowed {
                    Some(format!("the signer {} is not an allowed reporter of {reporter}", self.signer_address))
                } else {
                    None
                }
            }
        };
        self.gauge(&metrics::SIGNER_MISSING_ROLE, if problem.is_some() { 1.0 } else { 0.0 });
        match problem {
            None => {
                if self.permission_problem.take().is_some() {
                    info!(target: "uptime", chain = self.cfg.chain, "the report's permissions are in place again");
                }
                self.preflight_ok = true;
            }
            Some(problem) => {
                // Said once per change, not on every check while it lasts.
                if self.permission_problem.as_ref() != Some(&problem) {
                    error!(target: "uptime", chain = self.cfg.chain, %problem, "the report would revert: not injecting until this is fixed");
                }
                self.permission_problem = Some(problem.clone());
                self.blocked = Some(problem);
            }
        }
        Ok(())
    }

    pub(super) async fn has_role(&self, who: Address) -> Result<bool, InjectError> {
        let data = self.call(self.cfg.feed, feed::has_role(feed::FEED_UPDATER_ROLE, who)).await?;
        feed::decode_bool(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    /// The outage began after `last_block`.
    pub async fn on_stalled(&mut self, last_block: BlockRef) -> Result<(), InjectError> {
        let same = self.outage.as_ref().is_some_and(|o| o.down_ts() == last_block.timestamp);
        if !same
            && let Some(old) = self.outage.clone()
            && old.result == OutageResult::Pending
        {
            // A new stall before the last outage's report landed: that one is not reported (its
            // nonces go to this one's report), and says so.
            self.not_first(old.last_block.number.saturating_add(1), "a new outage began before the report landed");
            error!(target: "uptime", chain = self.cfg.chain, old_down_ts = old.down_ts(), new_down_ts = last_block.timestamp, "the previous outage's report never landed: superseded by the new outage");
            let reason = "superseded: a new outage began before its report landed".to_owned();
            self.finish(OutageResult::Failed { reason }, None).await?;
        }
        self.phase = Phase::Stalled;
        self.retry_sent_at = None;
        if !same {
            let record = OutageRecord::new(self.cfg.chain, last_block);
            self.count(&metrics::OUTAGES);
            self.journal(&record).await?;
            self.outage = Some(record);
            self.failure_counted = false;
            // Permissions can change between outages: checked again for each.
            self.preflight_ok = false;
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

    // --- reads of the chain, from whichever sequencer endpoint answers -------------------

    pub(super) async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, InjectError> {
        Ok(self
            .sequencers
            .read(|r| {
                let data = data.clone();
                async move { r.call(to, data).await }
            })
            .await?)
    }

    pub(super) async fn mined_nonce(&self) -> Result<u64, InjectError> {
        let who = self.signer_address;
        Ok(self.sequencers.read(|r| async move { r.latest_nonce(who).await }).await?)
    }

    pub(super) async fn head(&self) -> Result<Option<BlockRef>, InjectError> {
        Ok(self.sequencers.read(|r| async move { r.block_by_tag(BlockTag::Latest).await }).await?)
    }

    pub(super) async fn nonce_at(&self, number: u64) -> Result<u64, InjectError> {
        let who = self.signer_address;
        Ok(self.sequencers.read(|r| async move { r.nonce_at(who, number).await }).await?)
    }

    pub(super) async fn block(&self, number: u64) -> Result<Option<BlockRef>, InjectError> {
        Ok(self.sequencers.read(|r| async move { r.block_by_number(number).await }).await?)
    }

    pub(super) async fn block_transactions(&self, number: u64) -> Result<Option<Vec<RpcTx>>, InjectError> {
        Ok(self.sequencers.read(|r| async move { r.block_transactions(number).await }).await?)
    }

    pub(super) async fn receipt(&self, hash: B256) -> Result<Option<RpcReceipt>, InjectError> {
        Ok(self.sequencers.read(|r| async move { r.receipt(hash).await }).await?)
    }

    /// The signer account.
    pub(super) fn signer_address(&self) -> Address {
        self.signer_address
    }

    pub(super) async fn latest_round(&self) -> Result<Round, InjectError> {
        let data = self.call(self.cfg.feed, feed::latest_round_data()).await?;
        feed::decode_round(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    pub(super) async fn round(&self, id: u128) -> Result<Round, InjectError> {
        let data = self.call(self.cfg.feed, feed::get_round_data(id)).await?;
        feed::decode_round_data(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    /// Whether the feed already shows this outage reported in full: its newest round is up
    /// since after the down timestamp, and the round before it down since at or after it. A
    /// lone down round (ours, with the up still to come) is not a report.
    pub(super) async fn feed_shows(&self, down_ts: u64) -> Result<bool, InjectError> {
        let latest = self.latest_round().await?;
        self.reported_since(latest, down_ts).await
    }

    /// [`Self::feed_shows`] with the feed's newest round already read.
    pub(super) async fn reported_since(&self, latest: Round, down_ts: u64) -> Result<bool, InjectError> {
        if latest.down || latest.started_at <= down_ts || latest.round_id < 2 {
            return Ok(false);
        }
        let before = self.round(latest.round_id - 1).await?;
        Ok(before.down && before.started_at >= down_ts)
    }

    /// Whether `balance` pays `need`; says so (once per change) in the log, in
    /// `signer_unfunded`, and to an operator forcing an update.
    pub(super) fn funded(&mut self, balance: U256, need: U256) -> bool {
        let funded = balance >= need;
        if !funded && !self.unfunded {
            error!(target: "uptime", chain = self.cfg.chain, signer = %self.signer_address, %balance, %need, "signer balance below what the report may cost (gas_limit x fees): fund it");
        } else if funded && self.unfunded {
            info!(target: "uptime", chain = self.cfg.chain, %balance, "signer funded again");
        }
        self.unfunded = !funded;
        self.gauge(&metrics::SIGNER_UNFUNDED, if funded { 0.0 } else { 1.0 });
        if !funded {
            self.blocked = Some(format!("the signer {} holds {balance} wei, needs {need}", self.signer_address));
        }
        funded
    }

    pub(super) async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, InjectError> {
        let result = self.signer.send(SignTransaction(tx)).await.map_err(|_| SignError::Gone)?;
        result.map_err(InjectError::Sign)
    }

    pub(super) async fn journal(&self, record: &OutageRecord) -> Result<(), InjectError> {
        self.db
            .send(PutOutage(record.clone()))
            .await
            .map_err(|e| InjectError::Journal(e.to_string()))?
            .map_err(|e| InjectError::Journal(e.to_string()))
    }
}
