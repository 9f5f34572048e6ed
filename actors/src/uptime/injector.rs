//! `TxInjector`: on a stall, pre-positions the update pair in the sequencer's pool — tx N =
//! `updateStatus(true, last_block.timestamp)`, tx N+1 = `updateStatus(false, t_up)` — and
//! refreshes it while the outage lasts (same nonces, fresh `t_up`, bumped fees), so that the
//! first block after the gap carries it at indices 0 and 1 with a `t_up` at most one refresh
//! interval old. Signing happens here, while the chain is stalled: never on the
//! block-production path. After resumption it confirms the including block, the indices, the
//! receipts and the feed's rounds, journals the outcome, and retries with the original down
//! timestamp if the pair did not land.
//!
//! [`Injector`] is the logic (plain async code); [`TxInjector`] is its thin actor, which runs one
//! operation at a time so nonces are never allocated twice.

use std::{collections::VecDeque, time::Duration};

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Recipient, WrapFuture};
use alloy::{
    consensus::{Signed, TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    primitives::{Address, B256, Bytes, TxKind, U256},
};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord, OutageResult};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{
    feed::{self, Round},
    messages::*,
    signer_actor::SignError,
    submit::{Submitted, Submitter},
    watchdog::unix_now,
};
use crate::{
    chains_db::{
        ChainsDbActor,
        messages::{GetLastOutage, PutOutage},
    },
    metrics::{self, Family, Metrics},
    rpc::{EthRpc, RpcReceipt},
};

/// How the injector prices and times the pair.
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    /// The L2 chain (and the chain id the transactions carry).
    pub chain: ChainId,
    /// The uptime feed.
    pub feed: Address,
    /// Between refreshes of the pre-positioned pair.
    pub refresh_interval: Duration,
    /// `t_up = now - margin`, so it is never later than the including block's timestamp.
    pub clock_skew_margin_secs: u64,
    /// Gas limit of each transaction.
    pub gas_limit: u64,
    /// The lowest max fee per gas (the first pair pays at least this and twice the base fee).
    pub max_fee_per_gas: u128,
    /// The priority fee; `None`: equal to the max fee, so the pair sorts first.
    pub max_priority_fee_per_gas: Option<u128>,
    /// Refreshes stop raising fees here (and the refresh stops once a bump would pass it).
    pub fee_cap: u128,
    /// A replacement pays this many percent more (the pool's price bump; 10 on geth and anvil).
    pub bump_percent: u128,
}

/// Where the injector is in an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No outage.
    Idle,
    /// The chain is stalled: pre-position and refresh.
    Stalled,
    /// The chain resumed: confirm (and retry if needed).
    Confirming,
}

/// The injector's logic; see the module documentation.
#[derive(Debug)]
pub struct Injector<S> {
    cfg: InjectorConfig,
    rpc: EthRpc,
    submitter: S,
    signer: Recipient<SignTransaction>,
    signer_address: Address,
    db: Addr<ChainsDbActor>,
    metrics: Metrics,
    phase: Phase,
    outage: Option<OutageRecord>,
    preflight_ok: bool,
    warned_cap: bool,
    unfunded: bool,
    /// Head when the newest pair was sent after resumption (a retry waits one block).
    retry_sent_at: Option<u64>,
    /// When `signer_balance_wei` was last read.
    balance_read_at: Option<std::time::Instant>,
    /// Why the pair could not be pre-positioned the last time it was tried (for the operator).
    blocked: Option<String>,
}

/// The `result` label values of `injections_total`.
const INJECTION_RESULTS: [&str; 4] = ["landed_first", "landed_not_first", "already_reported", "failed"];

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
    /// The feed answered something we cannot read.
    #[error("feed {0}: unreadable answer")]
    Feed(Address),
}

impl<S: Submitter> Injector<S> {
    /// An injector; `signer_address` is the configured signer account.
    pub fn new(
        cfg: InjectorConfig,
        rpc: EthRpc,
        submitter: S,
        signer: Recipient<SignTransaction>,
        signer_address: Address,
        db: Addr<ChainsDbActor>,
        metrics: Metrics,
    ) -> Self {
        Self {
            cfg,
            rpc,
            submitter,
            signer,
            signer_address,
            db,
            metrics,
            phase: Phase::Idle,
            outage: None,
            preflight_ok: false,
            warned_cap: false,
            unfunded: false,
            retry_sent_at: None,
            balance_read_at: None,
            blocked: None,
        }
    }

    fn labels(&self) -> [(&'static str, String); 1] {
        [("chain", self.cfg.chain.to_string())]
    }

    fn count(&self, family: &Family) {
        let [(k, v)] = self.labels();
        self.metrics.inc(family, &[(k, v.as_str())]);
    }

    fn gauge(&self, family: &Family, value: f64) {
        let [(k, v)] = self.labels();
        self.metrics.set(family, &[(k, v.as_str())], value);
    }

    /// Counts the outcome of an outage report (`injections_total{result}`).
    fn injection(&self, result: &str) {
        let [(k, v)] = self.labels();
        self.metrics.inc(&metrics::INJECTIONS, &[(k, v.as_str()), ("result", result)]);
    }

    /// Creates every per-chain series at zero, so that alerts on `increase()` see the first event.
    fn init_metrics(&self) {
        let [(k, v)] = self.labels();
        let labels = [(k, v.as_str())];
        for family in [
            &metrics::OUTAGES,
            &metrics::PAIRS_SUBMITTED,
            &metrics::PAIR_REFRESHES,
            &metrics::SUBMIT_ERRORS,
            &metrics::UPTIME_ERRORS,
            &metrics::FEE_CAP_REACHED,
        ] {
            self.metrics.touch(family, &labels);
        }
        for result in INJECTION_RESULTS {
            self.metrics.touch(&metrics::INJECTIONS, &[(k, v.as_str()), ("result", result)]);
        }
        for family in [&metrics::WRONG_CHAIN, &metrics::SIGNER_MISSING_ROLE, &metrics::SIGNER_UNFUNDED] {
            self.metrics.set(family, &labels, 0.0);
        }
    }

    /// Reads the signer's balance into `signer_balance_wei`, and while no outage is on, whether
    /// it pays for a pair at the configured fees (`signer_unfunded`), so the alert fires before
    /// an outage needs the money.
    async fn read_balance(&mut self) -> Result<U256, InjectError> {
        let balance = self.rpc.balance(self.signer_address).await?;
        self.gauge(&metrics::SIGNER_BALANCE, f64::from(balance));
        if self.phase == Phase::Idle {
            self.funded(balance, self.cfg.max_fee_per_gas);
        }
        self.balance_read_at = Some(std::time::Instant::now());
        Ok(balance)
    }

    /// Start-up: checks the chain id and the signer's role, and picks up an unfinished outage
    /// from the journal.
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
        self.preflight().await
    }

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
        let data = self.rpc.call(self.cfg.feed, feed::has_role(feed::FEED_UPDATER_ROLE, self.signer_address)).await?;
        match feed::decode_bool(&data) {
            Some(true) => {
                self.gauge(&metrics::SIGNER_MISSING_ROLE, 0.0);
                self.preflight_ok = true;
            }
            Some(false) => {
                self.gauge(&metrics::SIGNER_MISSING_ROLE, 1.0);
                self.blocked = Some(format!(
                    "the signer {} lacks FEED_UPDATER_ROLE on the feed {}",
                    self.signer_address, self.cfg.feed
                ));
                error!(target: "uptime", chain = self.cfg.chain, signer = %self.signer_address, feed = %self.cfg.feed, "the signer lacks FEED_UPDATER_ROLE on the feed: updates would revert; grant the role");
            }
            None => return Err(InjectError::Feed(self.cfg.feed)),
        }
        Ok(())
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
        }
        self.pre_position().await
    }

    /// The operator forced an outage after `last_block`: handled as a stall, unless an earlier
    /// outage is still being confirmed. Answers the outage once its pair is pre-positioned (or
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
            Some(o) if !o.tx_hashes.is_empty() || o.result != OutageResult::Pending => Ok(o.clone()),
            _ => Err(self.blocked.clone().unwrap_or_else(|| "the pair was not pre-positioned; see the log".into())),
        }
    }

    /// The refresh tick: pre-position (or refresh) while stalled; confirm after resumption.
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
        feed::decode_round(&data).ok_or(InjectError::Feed(self.cfg.feed))
    }

    /// Whether the feed already shows this outage (a down round starting at or after the last
    /// block's timestamp, or an up round after it).
    async fn feed_shows(&self, down_ts: u64) -> Result<bool, InjectError> {
        let round = self.latest_round().await?;
        Ok(round.started_at >= down_ts && (round.down || round.started_at > down_ts))
    }

    async fn pre_position(&mut self) -> Result<(), InjectError> {
        self.preflight().await?;
        let Some(outage) = self.outage.clone() else { return Ok(()) };
        if !self.preflight_ok || outage.result != OutageResult::Pending {
            return Ok(());
        }
        let refresh = !outage.tx_hashes.is_empty();
        if !refresh && self.feed_shows(outage.down_ts()).await? {
            info!(target: "uptime", chain = self.cfg.chain, down_ts = outage.down_ts(), "the feed already shows this outage: nothing to inject");
            self.injection("already_reported");
            return self.finish(OutageResult::AlreadyReported, None).await;
        }
        self.send_pair(refresh).await
    }

    /// Signs and submits the pair. `refresh`: replace the pooled pair (same nonces, bumped fees).
    async fn send_pair(&mut self, refresh: bool) -> Result<(), InjectError> {
        let Some(mut outage) = self.outage.clone() else { return Ok(()) };
        let base_fee = self.rpc.latest_base_fee().await?.unwrap_or(0);
        let floor = self.cfg.max_fee_per_gas.max(base_fee.saturating_mul(2)).min(self.cfg.fee_cap);
        let max_fee = if refresh {
            let bumped = outage.max_fee_per_gas.saturating_mul(100 + self.cfg.bump_percent) / 100 + 1;
            if bumped > self.cfg.fee_cap {
                if !self.warned_cap {
                    self.warned_cap = true;
                    self.count(&metrics::FEE_CAP_REACHED);
                    warn!(target: "uptime", chain = self.cfg.chain, fee_cap = self.cfg.fee_cap, up_ts = ?outage.up_ts, "fee cap reached: the pooled pair can no longer be replaced, so its up timestamp ages from now on");
                }
                return Ok(());
            }
            bumped.max(floor)
        } else {
            floor
        };
        let priority = self.cfg.max_priority_fee_per_gas.map_or(max_fee, |p| {
            if refresh {
                (outage.max_priority_fee_per_gas.saturating_mul(100 + self.cfg.bump_percent) / 100 + 1).min(max_fee)
            } else {
                p.min(max_fee)
            }
        });

        let balance = self.read_balance().await?;
        if !self.funded(balance, max_fee) {
            return Ok(());
        }

        // The mined nonce, not the pending one: a pair already pooled by another instance (or an
        // earlier run) holds these nonces, and ours must replace it rather than queue behind it.
        let nonce = match outage.nonce {
            Some(n) => n,
            None => self.rpc.latest_nonce(self.signer_address).await?,
        };
        let down_ts = outage.down_ts();
        let up_ts = unix_now().saturating_sub(self.cfg.clock_skew_margin_secs).max(down_ts);
        let tx = |nonce: u64, down: bool, ts: u64| TxEip1559 {
            chain_id: self.cfg.chain,
            nonce,
            gas_limit: self.cfg.gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority,
            to: TxKind::Call(self.cfg.feed),
            value: U256::ZERO,
            access_list: Default::default(),
            input: feed::update_status(down, ts),
        };
        let down = self.sign(tx(nonce, true, down_ts)).await?;
        let up = self.sign(tx(nonce + 1, false, up_ts)).await?;
        let hashes = vec![*down.hash(), *up.hash()];
        let outcome = self.submitter.submit_pair(encode(down), encode(up)).await;
        match &outcome {
            [a, b] if (a.pooled() || *a == Submitted::Underpriced) && b.pooled() => {}
            [Submitted::NonceTooLow, _] | [_, Submitted::NonceTooLow] => {
                // The nonce was used (a pair landed, or another sender): resync and look again.
                warn!(target: "uptime", chain = self.cfg.chain, nonce, "nonce too low: resyncing");
                self.count(&metrics::SUBMIT_ERRORS);
                outage.nonce = None;
                outage.tx_hashes.clear();
                self.outage = Some(outage);
                return Ok(());
            }
            [Submitted::Underpriced, _] | [_, Submitted::Underpriced] => {
                // Another pair with our nonces is pooled at a higher price: outbid it next time.
                info!(target: "uptime", chain = self.cfg.chain, nonce, max_fee, "a pair with these nonces is already pooled at a higher price");
                outage.nonce = Some(nonce);
                outage.max_fee_per_gas = max_fee;
                outage.max_priority_fee_per_gas = priority;
                if outage.tx_hashes.is_empty() {
                    outage.tx_hashes = hashes;
                }
                self.outage = Some(outage);
                return Ok(());
            }
            other => {
                self.count(&metrics::SUBMIT_ERRORS);
                error!(target: "uptime", chain = self.cfg.chain, outcome = ?other, "the node refused the update pair");
                self.blocked = Some(format!("the node refused the pair: {other:?}"));
                if other.contains(&Submitted::InsufficientFunds) {
                    self.gauge(&metrics::SIGNER_UNFUNDED, 1.0);
                }
                return Ok(());
            }
        }
        outage.nonce = Some(nonce);
        outage.max_fee_per_gas = max_fee;
        outage.max_priority_fee_per_gas = priority;
        outage.up_ts = Some(up_ts);
        outage.tx_hashes = hashes;
        self.journal(&outage).await?;
        self.blocked = None;
        self.count(if refresh { &metrics::PAIR_REFRESHES } else { &metrics::PAIRS_SUBMITTED });
        if !refresh {
            info!(target: "uptime", chain = self.cfg.chain, nonce, down_ts, up_ts, max_fee, down_tx = %outage.tx_hashes[0], up_tx = %outage.tx_hashes[1], "update pair pre-positioned");
        }
        self.outage = Some(outage);
        Ok(())
    }

    /// Whether `balance` pays for a pair at `max_fee`; says so (once per change) in the log, in
    /// `signer_unfunded`, and to an operator forcing an update.
    fn funded(&mut self, balance: U256, max_fee: u128) -> bool {
        let need = U256::from(self.cfg.gas_limit) * U256::from(max_fee) * U256::from(2);
        let funded = balance >= need;
        if !funded && !self.unfunded {
            error!(target: "uptime", chain = self.cfg.chain, signer = %self.signer_address, %balance, %need, "signer balance below 2 x gas_limit x max_fee: not injecting until funded");
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

    /// After resumption: did the pair land first in the first block after the gap?
    async fn confirm(&mut self) -> Result<(), InjectError> {
        let Some(outage) = self.outage.clone() else { return Ok(()) };
        if outage.result != OutageResult::Pending {
            self.phase = Phase::Idle;
            return Ok(());
        }
        let first_block = outage.last_block.number + 1;
        let Some(txs) = self.rpc.block_transactions(first_block).await? else { return Ok(()) };
        let down_ts = outage.down_ts();
        let ours = |i: usize| {
            txs.get(i)
                .filter(|t| t.from == self.signer_address)
                .and_then(|t| feed::decode_update_status(&t.input).map(|(down, ts)| (t.hash, down, ts)))
        };
        if let (Some((h0, true, ts0)), Some((h1, false, up))) = (ours(0), ours(1))
            && ts0 == down_ts
            && self.succeeded(h0).await?
            && self.succeeded(h1).await?
        {
            let mut outage = outage;
            outage.tx_hashes = vec![h0, h1];
            outage.up_ts = Some(up);
            self.outage = Some(outage);
            let round = self.latest_round().await?;
            if round.down || round.started_at != up {
                // A later update (another writer) may have followed; say so, the pair did land.
                warn!(target: "uptime", chain = self.cfg.chain, ?round, up, "the feed's latest round is not our up round");
            }
            info!(target: "uptime", chain = self.cfg.chain, block = first_block, down_ts, up_ts = up, "update pair landed first in the first block after the gap");
            self.injection("landed_first");
            return self.finish(OutageResult::Landed { first: true }, Some(first_block)).await;
        }

        // Not first in the first block: landed later, failed, or not landed.
        let mut receipts = Vec::new();
        for hash in &outage.tx_hashes {
            receipts.push(self.rpc.receipt(*hash).await?);
        }
        if receipts.len() == 2 && receipts.iter().all(|r| r.as_ref().is_some_and(RpcReceipt::succeeded)) {
            let block = receipts[0].as_ref().and_then(|r| r.block_number).map(|b| b.to::<u64>());
            self.injection("landed_not_first");
            error!(target: "uptime", chain = self.cfg.chain, ?block, first_block, "update pair landed, but NOT first in the first block after the gap");
            return self.finish(OutageResult::Landed { first: false }, block).await;
        }
        let reverted = receipts.iter().any(|r| r.as_ref().is_some_and(RpcReceipt::reverted));
        if !reverted && self.feed_shows(down_ts).await? {
            info!(target: "uptime", chain = self.cfg.chain, down_ts, "the feed shows this outage (reported by another sender)");
            self.injection("already_reported");
            return self.finish(OutageResult::AlreadyReported, None).await;
        }
        // Retry on the next block with the original down timestamp (fresh nonces), at most once
        // per block.
        let head = self.rpc.block_by_tag(crate::rpc::BlockTag::Latest).await?.map_or(0, |b| b.number);
        if self.retry_sent_at.is_some_and(|at| head <= at) {
            return Ok(());
        }
        if self.retry_sent_at.is_none() || reverted {
            self.injection("failed");
            let reason =
                if reverted { "an update transaction reverted" } else { "not first in the first block after the gap" };
            error!(target: "uptime", chain = self.cfg.chain, first_block, reason, "update pair did not land first: retrying with the original down timestamp");
        }
        let mut retry = outage;
        retry.nonce = None;
        retry.tx_hashes.clear();
        self.outage = Some(retry);
        self.send_pair(false).await?;
        self.retry_sent_at = Some(head);
        Ok(())
    }

    async fn succeeded(&self, hash: B256) -> Result<bool, InjectError> {
        Ok(self.rpc.receipt(hash).await?.is_some_and(|r| r.succeeded()))
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

/// What the actor has to do next.
#[derive(Debug)]
enum Event {
    Start,
    Stalled(BlockRef),
    Forced(BlockRef, oneshot::Sender<Result<OutageRecord, String>>),
    Resumed(BlockRef),
    Tick,
}

/// The actor around [`Injector`]: one operation at a time, in arrival order.
#[derive(Debug)]
pub struct TxInjector<S: Submitter + Unpin + 'static> {
    injector: Option<Injector<S>>,
    queue: VecDeque<Event>,
    refresh_interval: Duration,
    chain: ChainId,
}

impl<S: Submitter + Unpin + 'static> TxInjector<S> {
    /// The actor around `injector`.
    pub fn new(injector: Injector<S>) -> Self {
        Self {
            refresh_interval: injector.cfg.refresh_interval,
            chain: injector.cfg.chain,
            injector: Some(injector),
            queue: VecDeque::from([Event::Start]),
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        let Some(mut injector) = self.injector.take() else { return };
        let actor = format!("tx_injector_{}", self.chain);
        injector.metrics.set(&metrics::QUEUE_DEPTH, &[("actor", actor.as_str())], self.queue.len() as f64);
        let Some(event) = self.queue.pop_front() else {
            self.injector = Some(injector);
            return;
        };
        let work = async move {
            let result = match event {
                Event::Start => injector.start().await,
                Event::Stalled(b) => injector.on_stalled(b).await,
                Event::Forced(b, reply) => {
                    let _ = reply.send(injector.on_forced(b).await);
                    Ok(())
                }
                Event::Resumed(b) => injector.on_resumed(b).await,
                Event::Tick => injector.tick().await,
            };
            (injector, result)
        };
        ctx.spawn(work.into_actor(self).map(|(injector, result), act, ctx| {
            if let Err(e) = result {
                injector.count(&metrics::UPTIME_ERRORS);
                warn!(target: "uptime", chain = act.chain, error = %e, "uptime step failed; retrying on the next tick");
            }
            act.injector = Some(injector);
            act.pump(ctx);
        }));
    }
}

impl<S: Submitter + Unpin + 'static> Actor for TxInjector<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.pump(ctx);
        ctx.run_interval(self.refresh_interval, |act, ctx| {
            // Ticks do not pile up behind a slow operation.
            if act.queue.is_empty() {
                act.queue.push_back(Event::Tick);
                act.pump(ctx);
            }
        });
    }
}

impl<S: Submitter + Unpin + 'static> Handler<SequencerStalled> for TxInjector<S> {
    type Result = ();

    fn handle(&mut self, msg: SequencerStalled, ctx: &mut Context<Self>) {
        self.queue.push_back(Event::Stalled(msg.last_block));
        self.pump(ctx);
    }
}

impl<S: Submitter + Unpin + 'static> Handler<ForcedStall> for TxInjector<S> {
    type Result = actix::ResponseFuture<Result<OutageRecord, String>>;

    fn handle(&mut self, msg: ForcedStall, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queue.push_back(Event::Forced(msg.last_block, reply));
        self.pump(ctx);
        Box::pin(async move { answer.await.unwrap_or_else(|_| Err("the injector restarted; try again".into())) })
    }
}

impl<S: Submitter + Unpin + 'static> Handler<SequencerResumed> for TxInjector<S> {
    type Result = ();

    fn handle(&mut self, msg: SequencerResumed, ctx: &mut Context<Self>) {
        self.queue.push_back(Event::Resumed(msg.last_block));
        self.pump(ctx);
    }
}

impl<S: Submitter + Unpin + 'static> actix::Supervised for TxInjector<S> {}
