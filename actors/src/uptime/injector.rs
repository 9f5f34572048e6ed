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
//! every endpoint, and re-submit the accepted bytes wherever a pool lost them. Every signature
//! is journaled before it is submitted, so a `kill -9` at any moment resumes with the same
//! nonces and a price that replaces whatever of ours a pool holds: at most one report per
//! nonce can ever land.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Addr, Recipient};
use alloy::{
    consensus::{Signed, TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    primitives::{Address, B256, Bytes, TxKind, U256},
};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord, OutageResult, ReportTx};
use tracing::{error, info, warn};

use super::{
    feed::{self, Round},
    messages::*,
    pool::Competition,
    pricing::{self, Clock, PriceRules, Slot, SlotPlan, Target, Why},
    signer_actor::SignError,
    submit::{PoolError, SUBMISSION_RESULTS, Sequencers, Settled, Submitted, settle},
};
use crate::{
    chains_db::{
        ChainsDbActor,
        messages::{GetLastOutage, PutOutage},
    },
    metrics::{self, Family, Metrics},
    rpc::{BlockTag, EthRpc, RpcTx},
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
    /// Refreshes the default schedule needs for the longest outage planned for (pair mode):
    /// sizes the funding check.
    pub planned_refreshes: u32,
    /// Reverted reports after which an outage is given up.
    pub max_reverts: u32,
}

/// Where the injector is in an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No outage.
    Idle,
    /// The chain is stalled: pre-position and keep first and fresh.
    Stalled,
    /// The chain resumed: confirm (and retry if needed).
    Confirming,
}

/// The `result` label values of `injections_total`.
pub const INJECTION_RESULTS: [&str; 5] = ["landed_first", "landed_not_first", "already_reported", "failed", "gave_up"];

/// How often the balance is read while no outage is in progress.
const BALANCE_EVERY: Duration = Duration::from_secs(30);

/// How many blocks after the gap are searched for the report that consumed our nonce.
const LANDING_SCAN_BLOCKS: u64 = 256;

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
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a report transaction was found on chain.
#[derive(Clone, Debug)]
struct Landing {
    block: u64,
    index: u64,
    hash: B256,
    ok: bool,
}

/// The injector's logic; see the module documentation.
#[derive(Debug)]
pub struct Injector {
    pub(super) cfg: InjectorConfig,
    rpc: EthRpc,
    sequencers: Sequencers,
    signer: Recipient<SignTransaction>,
    signer_address: Address,
    db: Addr<ChainsDbActor>,
    pub(super) metrics: Metrics,
    phase: Phase,
    outage: Option<OutageRecord>,
    preflight_ok: bool,
    unfunded: bool,
    /// Per endpoint: whether its pool was readable at the last read (`None`: not read yet).
    pool_readable: Vec<Option<bool>>,
    /// Head when the newest retry was sent after resumption (a retry waits one block).
    retry_sent_at: Option<u64>,
    /// The outage's not-first failure was counted.
    failure_counted: bool,
    /// When `signer_balance_wei` was last read.
    balance_read_at: Option<Instant>,
    /// Why the report could not be pre-positioned the last time it was tried (for the operator).
    blocked: Option<String>,
    /// The missing permission last reported (logged once per change).
    permission_problem: Option<String>,
}

impl Injector {
    /// An injector; `signer_address` is the configured signer account. `sequencers` holds the
    /// chain's own node first, then every `submit_urls` endpoint.
    pub fn new(
        cfg: InjectorConfig,
        rpc: EthRpc,
        sequencers: Sequencers,
        signer: Recipient<SignTransaction>,
        signer_address: Address,
        db: Addr<ChainsDbActor>,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool_readable: vec![None; sequencers.len()],
            cfg,
            rpc,
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
            balance_read_at: None,
            blocked: None,
            permission_problem: None,
        }
    }

    fn chain_label(&self) -> String {
        self.cfg.chain.to_string()
    }

    pub(super) fn count(&self, family: &Family) {
        self.metrics.inc(family, &[("chain", self.chain_label().as_str())]);
    }

    fn gauge(&self, family: &Family, value: f64) {
        self.metrics.set(family, &[("chain", self.chain_label().as_str())], value);
    }

    fn count_endpoint(&self, family: &Family, endpoint: usize, extra: Option<(&'static str, &str)>) {
        let chain = self.chain_label();
        let label = self.sequencers.labels().nth(endpoint).unwrap_or("?").to_owned();
        let mut labels = vec![("chain", chain.as_str()), ("endpoint", label.as_str())];
        labels.extend(extra);
        self.metrics.inc(family, &labels);
    }

    /// Counts the outcome of an outage report (`injections_total{result}`).
    fn injection(&self, result: &str) {
        self.metrics.inc(&metrics::INJECTIONS, &[("chain", self.chain_label().as_str()), ("result", result)]);
    }

    /// Creates every per-chain series at zero, so that alerts on `increase()` see the first event.
    fn init_metrics(&self) {
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

    /// What a report costs at most before the outage is over, at the configured fees: the pair's
    /// down transaction at the floor and its up transaction at the end of the refresh schedule,
    /// or one reporter call at the floor.
    fn planned_cost(&self) -> U256 {
        let floor = self.cfg.rules.floor;
        let per_gas = match self.cfg.mode {
            ReportMode::Pair => {
                floor + pricing::required_cap(floor, self.cfg.planned_refreshes, self.cfg.rules.bump_percent)
            }
            ReportMode::Reporter(_) => floor,
        };
        U256::from(self.cfg.gas_limit) * U256::from(per_gas)
    }

    /// Reads the signer's balance into `signer_balance_wei`, and while no outage is on, whether
    /// it pays for a report at the configured fees (`signer_unfunded`), so the alert fires before
    /// an outage needs the money.
    async fn read_balance(&mut self) -> Result<U256, InjectError> {
        let balance = self.rpc.balance(self.signer_address).await?;
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
            self.outage = Some(record);
            self.phase = Phase::Confirming;
        }
        // Said once at start-up: pricing falls back to the configured fees on a node without it.
        self.read_pools().await;
        self.preflight().await
    }

    /// The chain id, and the permissions the report needs: the signer's `FEED_UPDATER_ROLE`
    /// (pair), or the reporter's role, its feed and its allowance of the signer (reporter).
    async fn preflight(&mut self) -> Result<(), InjectError> {
        if self.preflight_ok {
            return Ok(());
        }
        let chain_id = self.rpc.chain_id().await?;
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
                let data = self.rpc.call(reporter, feed::reporter_feed()).await?;
                let its_feed = feed::decode_address(&data).ok_or(InjectError::Contract(reporter))?;
                let data = self.rpc.call(reporter, feed::is_reporter(self.signer_address)).await?;
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

    async fn has_role(&self, who: Address) -> Result<bool, InjectError> {
        let data = self.rpc.call(self.cfg.feed, feed::has_role(feed::FEED_UPDATER_ROLE, who)).await?;
        feed::decode_bool(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    /// The outage began after `last_block`.
    pub async fn on_stalled(&mut self, last_block: BlockRef) -> Result<(), InjectError> {
        self.phase = Phase::Stalled;
        self.retry_sent_at = None;
        let same = self.outage.as_ref().is_some_and(|o| o.down_ts() == last_block.timestamp);
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

    async fn latest_round(&self) -> Result<Round, InjectError> {
        let data = self.rpc.call(self.cfg.feed, feed::latest_round_data()).await?;
        feed::decode_round(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    async fn round(&self, id: u128) -> Result<Round, InjectError> {
        let data = self.rpc.call(self.cfg.feed, feed::get_round_data(id)).await?;
        feed::decode_round_data(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    /// Whether the feed already shows this outage (a down round starting at or after the last
    /// block's timestamp, or an up round after it).
    async fn feed_shows(&self, down_ts: u64) -> Result<bool, InjectError> {
        let round = self.latest_round().await?;
        Ok(round.started_at >= down_ts && (round.down || round.started_at > down_ts))
    }

    /// Reads every endpoint's pool. A node that answers without a pool does not serve
    /// `txpool_content`: said once per change and in `txpool_unreadable`; a node that does not
    /// answer is only down (its submissions say so). The best competitor over the readable
    /// pools, or `None` when none is (pricing then falls back to the configured fees).
    async fn read_pools(&mut self) -> Option<Competition> {
        let views = self.sequencers.pools(self.signer_address).await;
        let chain = self.chain_label();
        let mut best: Option<Competition> = None;
        for (i, view) in views.into_iter().enumerate() {
            let endpoint = self.sequencers.labels().nth(i).unwrap_or("?").to_owned();
            let serves = match &view {
                Ok(_) => Some(true),
                Err(PoolError::Unserved(_)) => Some(false),
                Err(PoolError::Unreachable(_)) => None,
            };
            if let Some(serves) = serves
                && self.pool_readable[i] != Some(serves)
            {
                match &view {
                    Err(e) => {
                        warn!(target: "uptime", chain = self.cfg.chain, %endpoint, error = %e, "this node does not serve its pending pool (txpool_content): where no pool is readable the report is priced at the configured fees, which cannot promise first place")
                    }
                    Ok(_) => {
                        info!(target: "uptime", chain = self.cfg.chain, %endpoint, "the pending pool is readable: the report is priced above the best pending transaction")
                    }
                }
                self.pool_readable[i] = Some(serves);
                let labels = [("chain", chain.as_str()), ("endpoint", endpoint.as_str())];
                self.metrics.set(&metrics::POOL_UNREADABLE, &labels, if serves { 0.0 } else { 1.0 });
            }
            if let Ok(view) = view {
                best = Some(best.map_or(view.competition, |b| b.merge(view.competition)));
            }
        }
        best
    }

    /// The check while stalled (and, after resumption, the retry until the report lands).
    async fn pre_position(&mut self) -> Result<(), InjectError> {
        self.preflight().await?;
        let Some(mut outage) = self.outage.clone() else { return Ok(()) };
        if !self.preflight_ok || outage.result != OutageResult::Pending {
            return Ok(());
        }
        let slots = self.cfg.mode.slots();
        if outage.txs.iter().all(Option::is_none)
            && outage.signed_fees.is_empty()
            && self.phase == Phase::Stalled
            && self.feed_shows(outage.down_ts()).await?
        {
            {
                info!(target: "uptime", chain = self.cfg.chain, down_ts = outage.down_ts(), "the feed already shows this outage: nothing to inject");
                self.injection("already_reported");
                return self.finish(OutageResult::AlreadyReported, None).await;
            }
        }
        let competition = self.read_pools().await;
        let base_fee = self.rpc.latest_base_fee().await?.unwrap_or(0);
        let target = self.cfg.rules.target(base_fee, competition.as_ref());
        if target.outbid_at_cap && !outage.outbid_at_cap {
            outage.outbid_at_cap = true;
            self.count(&metrics::REPORT_OUTBID);
            warn!(target: "uptime", chain = self.cfg.chain, cap = self.cfg.rules.cap, best = competition.map_or(0, |c| c.best()), "a pending transaction pays the fee cap or more: the report stays at the cap and may not be first");
        }

        let mined = self.rpc.latest_nonce(self.signer_address).await?;
        let nonce = *outage.nonce.get_or_insert(mined);
        outage.txs.resize(slots, None);
        outage.signed_fees.resize(slots, 0);
        let plan = self.plan(&mut outage, &target, competition.as_ref(), mined);
        let mut need = U256::ZERO;
        for (i, p) in plan.iter().enumerate() {
            let fee = match p {
                SlotPlan::Sign(price, _) => *price,
                _ => outage.txs[i].as_ref().map_or(0, |t| t.max_fee_per_gas),
            };
            need += U256::from(self.cfg.gas_limit) * U256::from(fee);
        }
        if plan.iter().any(|p| matches!(p, SlotPlan::Sign(..))) {
            let balance = self.read_balance().await?;
            if !self.funded(balance, need) {
                self.outage = Some(outage);
                return Ok(());
            }
        }
        let mut repriced = false;
        for (slot, p) in plan.into_iter().enumerate() {
            let slot_nonce = nonce + slot as u64;
            if slot_nonce < mined {
                continue; // mined: the confirmation finds out what
            }
            match p {
                SlotPlan::Sign(price, why) => {
                    let tx = self.sign_slot(&outage, slot, slot_nonce, price).await?;
                    // Write-ahead: whatever a pool may hold of ours for this nonce, the next
                    // signature outbids it, even after a crash right after this submission.
                    let before = outage.signed_fees[slot];
                    outage.signed_fees[slot] = price;
                    self.journal(&outage).await?;
                    match self.submit_slot(&mut outage, slot, tx, why).await {
                        Settled::Pooled => repriced |= why == Why::Outbid,
                        Settled::Mined => break,
                        Settled::Outbid => {
                            if outage.txs[slot].is_none() {
                                break;
                            }
                        }
                        Settled::NotPooled => {
                            // No pool holds it: signing the same price again costs nothing, so a
                            // node that is down does not make the fees grow.
                            outage.signed_fees[slot] =
                                before.max(outage.txs[slot].as_ref().map_or(0, |t| t.max_fee_per_gas));
                            if outage.txs[slot].is_none() {
                                break;
                            }
                        }
                    }
                }
                SlotPlan::Keep | SlotPlan::Capped(_) => {
                    if let Some(tx) = outage.txs[slot].clone()
                        && !self.still_pooled(tx).await
                    {
                        break;
                    }
                }
            }
        }
        if repriced {
            // Once per repricing of the report, not per transaction of the pair.
            self.count(&metrics::REPORT_REPRICED);
        }
        self.journal(&outage).await?;
        if outage.fully_pooled(slots) {
            self.blocked = None;
        }
        self.outage = Some(outage);
        Ok(())
    }

    /// Per slot, what to do now ([`PriceRules::plan`]); a mined slot is kept. The cap is
    /// counted once per outage when it stops a due re-signature.
    fn plan(&self, outage: &mut OutageRecord, target: &Target, c: Option<&Competition>, mined: u64) -> Vec<SlotPlan> {
        let nonce = outage.nonce.unwrap_or(mined);
        let clock = Clock {
            now_ms: now_ms(),
            down_ts: outage.down_ts(),
            refresh_ms: self.cfg.refresh_interval.as_millis() as u64,
            margin_secs: self.cfg.clock_skew_margin_secs,
        };
        let plan: Vec<SlotPlan> = (0..self.cfg.mode.slots())
            .map(|i| {
                if nonce + (i as u64) < mined {
                    return SlotPlan::Keep;
                }
                let pooled = outage.txs[i].as_ref();
                let slot = Slot {
                    pooled_fee: pooled.map(|t| t.max_fee_per_gas),
                    up_ts: pooled.and_then(|t| t.up_ts),
                    signed_fee: outage.signed_fees[i],
                };
                self.cfg.rules.plan(&slot, target, c, &clock)
            })
            .collect();
        if plan.iter().any(|p| matches!(p, SlotPlan::Capped(_))) && !outage.fee_cap_reached {
            outage.fee_cap_reached = true;
            self.count(&metrics::FEE_CAP_REACHED);
            warn!(target: "uptime", chain = self.cfg.chain, fee_cap = self.cfg.rules.cap, up_ts = ?outage.up_ts, "fee cap reached: the pooled report can no longer be replaced (a pair's up timestamp ages from now on)");
        }
        plan
    }

    /// Signs slot `slot` of the report at `price`.
    async fn sign_slot(
        &self,
        outage: &OutageRecord,
        slot: usize,
        nonce: u64,
        price: u128,
    ) -> Result<ReportTx, InjectError> {
        let down_ts = outage.down_ts();
        let (to, input, up_ts) = match (self.cfg.mode, slot) {
            (ReportMode::Reporter(reporter), _) => (reporter, feed::report(down_ts), None),
            (ReportMode::Pair, 0) => (self.cfg.feed, feed::update_status(true, down_ts), None),
            (ReportMode::Pair, _) => {
                let up = pricing::up_ts_at(now_ms(), down_ts, self.cfg.clock_skew_margin_secs);
                (self.cfg.feed, feed::update_status(false, up), Some(up))
            }
        };
        let tx = TxEip1559 {
            chain_id: self.cfg.chain,
            nonce,
            gas_limit: self.cfg.gas_limit,
            max_fee_per_gas: price,
            max_priority_fee_per_gas: price,
            to: TxKind::Call(to),
            value: U256::ZERO,
            access_list: Default::default(),
            input,
        };
        let signed = self.sign(tx).await?;
        Ok(ReportTx { hash: *signed.hash(), raw: encode(signed), max_fee_per_gas: price, up_ts })
    }

    /// Submits a newly signed `tx` for `slot` to every endpoint; it becomes the slot's pooled
    /// transaction only if a node accepted it.
    async fn submit_slot(&mut self, outage: &mut OutageRecord, slot: usize, tx: ReportTx, why: Why) -> Settled {
        let which: Vec<usize> = (0..self.sequencers.len()).collect();
        let outcomes = self.sequencers.submit(&tx.raw, &which).await;
        for (&i, outcome) in which.iter().zip(&outcomes) {
            self.count_endpoint(&metrics::SUBMISSIONS, i, Some(("result", outcome.label())));
            if let Submitted::Failed(e) = outcome {
                warn!(target: "uptime", chain = self.cfg.chain, endpoint = self.sequencers.labels().nth(i).unwrap_or("?"), error = %e, "submission failed");
            }
        }
        let settled = settle(&outcomes);
        match settled {
            Settled::Pooled => {
                if tx.up_ts.is_some() {
                    outage.up_ts = tx.up_ts;
                }
                match why {
                    Why::New if slot == 0 => {
                        self.count(&metrics::PAIRS_SUBMITTED);
                        info!(target: "uptime", chain = self.cfg.chain, nonce = ?outage.nonce, down_ts = outage.down_ts(), max_fee = tx.max_fee_per_gas, tx = %tx.hash, mode = ?self.cfg.mode, "report pre-positioned");
                    }
                    Why::New => {}
                    Why::Refresh => self.count(&metrics::PAIR_REFRESHES),
                    Why::Outbid => {
                        info!(target: "uptime", chain = self.cfg.chain, slot, max_fee = tx.max_fee_per_gas, tx = %tx.hash, "report repriced above a pending competitor");
                    }
                }
                self.gauge(&metrics::REPORT_PRICE, tx.max_fee_per_gas as f64);
                outage.txs[slot] = Some(tx);
                return settled;
            }
            Settled::Mined => {
                warn!(target: "uptime", chain = self.cfg.chain, slot, "nonce already used: the report (or another transaction of the signer) was mined");
            }
            Settled::Outbid => {
                warn!(target: "uptime", chain = self.cfg.chain, slot, max_fee = tx.max_fee_per_gas, "refused as underpriced: a pricier transaction of ours holds this nonce (a twin instance or an earlier run), or the pools' price bump is above fee_bump_percent");
            }
            Settled::NotPooled => {
                error!(target: "uptime", chain = self.cfg.chain, slot, outcomes = ?outcomes, "no node accepted the report transaction");
            }
        }
        self.count(&metrics::SUBMIT_ERRORS);
        if outcomes.contains(&Submitted::InsufficientFunds) {
            self.gauge(&metrics::SIGNER_UNFUNDED, 1.0);
        }
        self.blocked = Some(format!("the nodes refused the report: {outcomes:?}"));
        settled
    }

    /// Verifies by hash that every endpoint still pools `tx`, and re-submits it unchanged where
    /// it is gone. A pool that takes it back had lost it (a restart, a failover: counted); one
    /// that refuses it as underpriced holds a pricier one of ours (a twin instance). Returns
    /// whether to go on to the next slot (not if the nonce was mined).
    async fn still_pooled(&mut self, tx: ReportTx) -> bool {
        let known = self.sequencers.knows(tx.hash).await;
        let gone: Vec<usize> = known.iter().enumerate().filter(|(_, k)| **k == Some(false)).map(|(i, _)| i).collect();
        if gone.is_empty() {
            return true;
        }
        let outcomes = self.sequencers.submit(&tx.raw, &gone).await;
        for (&i, outcome) in gone.iter().zip(&outcomes) {
            self.count_endpoint(&metrics::SUBMISSIONS, i, Some(("result", outcome.label())));
            if outcome.pooled() {
                self.count_endpoint(&metrics::POOL_LOST, i, None);
                warn!(target: "uptime", chain = self.cfg.chain, endpoint = self.sequencers.labels().nth(i).unwrap_or("?"), tx = %tx.hash, "the report was gone from this pool (restart or failover): re-submitted");
            }
        }
        !outcomes.contains(&Submitted::NonceTooLow)
    }

    /// Whether `balance` pays `need`; says so (once per change) in the log, in
    /// `signer_unfunded`, and to an operator forcing an update.
    fn funded(&mut self, balance: U256, need: U256) -> bool {
        let funded = balance >= need;
        if !funded && !self.unfunded {
            error!(target: "uptime", chain = self.cfg.chain, signer = %self.signer_address, %balance, %need, "signer balance below what the report may cost (gas_limit x fees): not injecting until funded");
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

    async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, InjectError> {
        let result = self.signer.send(SignTransaction(tx)).await.map_err(|_| SignError::Gone)?;
        result.map_err(InjectError::Sign)
    }

    /// Whether `tx` is slot `slot` of this outage's report.
    fn is_report(&self, tx: &RpcTx, slot: usize, down_ts: u64) -> bool {
        if tx.from != self.signer_address {
            return false;
        }
        match (self.cfg.mode, slot) {
            (ReportMode::Reporter(r), _) => tx.to == Some(r) && feed::decode_report(&tx.input) == Some(down_ts),
            (ReportMode::Pair, 0) => {
                tx.to == Some(self.cfg.feed) && feed::decode_update_status(&tx.input) == Some((true, down_ts))
            }
            (ReportMode::Pair, _) => {
                tx.to == Some(self.cfg.feed)
                    && feed::decode_update_status(&tx.input).is_some_and(|(down, ts)| !down && ts >= down_ts)
            }
        }
    }

    /// Where slot `slot` (nonce `nonce`) landed, read from the chain: the receipt of any hash we
    /// know for it, else a bounded scan of the blocks after the gap for the signer's
    /// transaction with that nonce. `Ok(None)`: the nonce holds something that is not our
    /// report.
    async fn landing(
        &self,
        outage: &OutageRecord,
        slot: usize,
        nonce: u64,
        head: u64,
    ) -> Result<Option<Landing>, InjectError> {
        if let Some(tx) = &outage.txs.get(slot).cloned().flatten()
            && let Some(r) = self.rpc.receipt(tx.hash).await?
            && let (Some(block), Some(index)) = (r.block_number, r.transaction_index)
        {
            return Ok(Some(Landing { block: block.to(), index: index.to(), hash: tx.hash, ok: r.succeeded() }));
        }
        let first = outage.last_block.number + 1;
        for number in first..=head.min(first + LANDING_SCAN_BLOCKS) {
            let Some(txs) = self.rpc.block_transactions(number).await? else { break };
            if let Some((index, tx)) =
                txs.iter().enumerate().find(|(_, t)| t.from == self.signer_address && t.nonce.to::<u64>() == nonce)
            {
                if !self.is_report(tx, slot, outage.down_ts()) {
                    return Ok(None);
                }
                let ok = self.rpc.receipt(tx.hash).await?.is_some_and(|r| r.succeeded());
                return Ok(Some(Landing { block: number, index: index as u64, hash: tx.hash, ok }));
            }
        }
        Ok(None)
    }

    /// After resumption: what landed, and where? Read from the chain, not from what the last
    /// submission saw.
    async fn confirm(&mut self) -> Result<(), InjectError> {
        let Some(outage) = self.outage.clone() else { return Ok(()) };
        if outage.result != OutageResult::Pending {
            self.phase = Phase::Idle;
            return Ok(());
        }
        let Some(head) = self.rpc.block_by_tag(BlockTag::Latest).await? else { return Ok(()) };
        let first = outage.last_block.number + 1;
        if head.number < first {
            return Ok(());
        }
        let mined = self.rpc.latest_nonce(self.signer_address).await?;
        let slots = self.cfg.mode.slots() as u64;
        let Some(nonce) = outage.nonce.filter(|n| mined >= n + slots) else {
            // The report has not landed (or never went out): the feed may show another sender's;
            // otherwise it is not first, and it keeps being pushed until it lands.
            if outage.nonce.is_none_or(|n| mined <= n) && self.feed_shows(outage.down_ts()).await? {
                info!(target: "uptime", chain = self.cfg.chain, down_ts = outage.down_ts(), "the feed shows this outage (reported by another sender)");
                self.injection("already_reported");
                return self.finish(OutageResult::AlreadyReported, None).await;
            }
            self.not_first(first, "the report is not in the first block after the gap");
            return self.pre_position().await;
        };
        let mut landings = Vec::new();
        for slot in 0..slots {
            match self.landing(&outage, slot as usize, nonce + slot, head.number).await? {
                Some(l) => landings.push(l),
                None => {
                    // A transaction that is not our report took the nonce: report again with the
                    // next nonces.
                    warn!(target: "uptime", chain = self.cfg.chain, nonce = nonce + slot, "another transaction of the signer took the report's nonce: reporting again");
                    self.not_first(first, "another transaction of the signer took the report's nonce");
                    return self.retry(head.number).await;
                }
            }
        }
        if let Some(bad) = landings.iter().find(|l| !l.ok) {
            return self.reverted(bad.clone(), head.number).await;
        }
        let first_place = landings.iter().enumerate().all(|(i, l)| l.block == first && l.index == i as u64);
        let mut outage = outage;
        outage.landed_txs = landings.iter().map(|l| l.hash).collect();
        let block = landings[0].block;
        if let ReportMode::Reporter(_) = self.cfg.mode {
            let included = self.rpc.block_by_number(block).await?.map(|b| b.timestamp);
            outage.up_ts = included;
        } else if let Some(txs) = self.rpc.block_transactions(landings[slots as usize - 1].block).await?
            && let Some(up) = txs.get(landings[slots as usize - 1].index as usize)
        {
            outage.up_ts = feed::decode_update_status(&up.input).map(|(_, ts)| ts);
        }
        self.outage = Some(outage.clone());
        self.check_rounds(&outage).await?;
        if first_place {
            info!(target: "uptime", chain = self.cfg.chain, block, down_ts = outage.down_ts(), up_ts = ?outage.up_ts, "report landed first in the first block after the gap");
            self.injection("landed_first");
            self.finish(OutageResult::Landed { first: true }, Some(block)).await
        } else {
            self.injection("landed_not_first");
            error!(target: "uptime", chain = self.cfg.chain, block, first_block = first, "report landed, but NOT first in the first block after the gap");
            self.finish(OutageResult::Landed { first: false }, Some(block)).await
        }
    }

    /// Compares the feed's newest two rounds with the landed report (a later writer may have
    /// followed: said, not failed).
    async fn check_rounds(&self, outage: &OutageRecord) -> Result<(), InjectError> {
        let latest = self.latest_round().await?;
        let down = if latest.round_id > 1 { Some(self.round(latest.round_id - 1).await?) } else { None };
        let ours = !latest.down
            && Some(latest.started_at) == outage.up_ts
            && down.is_some_and(|d| d.down && d.started_at == outage.down_ts());
        if !ours {
            warn!(target: "uptime", chain = self.cfg.chain, ?latest, ?down, up_ts = ?outage.up_ts, "the feed's newest rounds are not the report's down and up rounds");
        }
        Ok(())
    }

    /// Counts the outage's failure to land first, once.
    fn not_first(&mut self, first_block: u64, reason: &str) {
        if !self.failure_counted {
            self.failure_counted = true;
            self.injection("failed");
            error!(target: "uptime", chain = self.cfg.chain, first_block, reason, "report did not land first: retrying with the original down timestamp");
        }
    }

    /// A landed report reverted: re-check the permissions, and give up after `max_reverts`.
    async fn reverted(&mut self, landing: Landing, head: u64) -> Result<(), InjectError> {
        if self.retry_sent_at.is_some_and(|at| head <= at) {
            return Ok(());
        }
        let Some(mut outage) = self.outage.clone() else { return Ok(()) };
        outage.reverts += 1;
        self.count(&metrics::REPORT_REVERTS);
        error!(target: "uptime", chain = self.cfg.chain, tx = %landing.hash, block = landing.block, reverts = outage.reverts, max = self.cfg.max_reverts, "the report reverted");
        self.outage = Some(outage.clone());
        if outage.reverts >= self.cfg.max_reverts {
            error!(target: "uptime", chain = self.cfg.chain, reverts = outage.reverts, "giving up on this outage after repeated reverts: check the feed, the roles and the reporter");
            self.injection("gave_up");
            let reason = format!("the report reverted {} times", outage.reverts);
            return self.finish(OutageResult::Failed { reason }, Some(landing.block)).await;
        }
        self.not_first(outage.last_block.number + 1, "the report reverted");
        self.preflight_ok = false;
        // `retry` journals the count with the spent nonces cleared: a restart neither counts
        // this revert again nor takes its transactions for pooled ones.
        self.retry(head).await
    }

    /// Reports again with fresh nonces (the old ones are used), at most once per block; the
    /// cleared nonces are journaled first.
    async fn retry(&mut self, head: u64) -> Result<(), InjectError> {
        if self.retry_sent_at.is_some_and(|at| head <= at) {
            return Ok(());
        }
        if let Some(o) = &mut self.outage {
            o.nonce = None;
            o.txs.clear();
            o.signed_fees.clear();
            let o = o.clone();
            self.journal(&o).await?;
        }
        self.pre_position().await?;
        self.retry_sent_at = Some(head);
        Ok(())
    }

    async fn finish(&mut self, result: OutageResult, block: Option<u64>) -> Result<(), InjectError> {
        if let Some(mut outage) = self.outage.take() {
            outage.result = result;
            outage.included_in = block;
            self.journal(&outage).await?;
            self.outage = Some(outage);
        }
        self.phase = Phase::Idle;
        self.retry_sent_at = None;
        Ok(())
    }

    async fn journal(&self, record: &OutageRecord) -> Result<(), InjectError> {
        self.db
            .send(PutOutage(record.clone()))
            .await
            .map_err(|e| InjectError::Journal(e.to_string()))?
            .map_err(|e| InjectError::Journal(e.to_string()))
    }
}

fn encode(signed: Signed<TxEip1559>) -> Bytes {
    TxEnvelope::Eip1559(signed).encoded_2718().into()
}
