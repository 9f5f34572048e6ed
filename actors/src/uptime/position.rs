//! The injector while an outage is on: each check reads the pools, prices the report above
//! the best competitor, re-signs only the slots that need it, submits them to every endpoint,
//! and re-submits whatever a pool lost. See the module documentation of `injector.rs`.

use alloy::{
    consensus::{TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    primitives::{TxKind, U256},
};
use std::time::Instant;

use rollup_supervisor_storage::{OutageRecord, OutageResult, ReportTx};
use tracing::{error, info, warn};

use super::{
    feed,
    injector::{InjectError, Injector, Phase, ReportMode, now_ms},
    pool::{Competition, PoolView},
    ports::{Journal, Node, ReportSigner},
    pricing::{self, Clock, Slot, SlotPlan, Target, Why},
    submit::{PoolError, Settled, Submitted, settle},
};
use crate::metrics;

impl<N: Node, S: ReportSigner, J: Journal> Injector<N, S, J> {
    /// The best pending competitor now. The pools are read in a task of their own, given half
    /// a check interval; a slower node (anvil takes 2.6 s to serve 10 000 pending transactions)
    /// leaves the read running into the next check and this one prices with the newest
    /// completed read. A read that took longer than a check is not repeated before three times
    /// its duration has passed, so serving the pool never takes more than a quarter of the
    /// node's time and the check's other requests do not queue behind it. A node that answers
    /// without a pool does not serve `txpool_content`: said once per change and in
    /// `txpool_unreadable`; a node that does not answer is only down (its submissions say so).
    /// `None` when no pool was ever readable: pricing then falls back to the configured fees.
    async fn competition_now(&mut self) -> Option<Competition> {
        let mut task = match self.pool_read.take() {
            Some(task) => task,
            None if self.pool_rest_until.is_some_and(|t| Instant::now() < t) => return self.competition,
            None => {
                let (node, ours) = (self.node.clone(), self.signer_address);
                let started = Instant::now();
                actix::spawn(async move { (node.pools(ours).await, started.elapsed()) })
            }
        };
        let budget = self.cfg.refresh_interval / 2;
        match tokio::time::timeout(budget, &mut task).await {
            Ok(Ok((views, took))) => {
                self.take_pools(views);
                self.pool_rest_until = (took > self.cfg.refresh_interval).then(|| Instant::now() + took * 3);
            }
            Ok(Err(_)) => {} // the task was cancelled: the next check starts another
            Err(_) => self.pool_read = Some(task),
        }
        self.competition
    }

    /// Folds one read of every pool into `competition` and the readability gauges.
    pub(super) fn take_pools(&mut self, views: Vec<Result<PoolView, PoolError>>) {
        let chain = self.chain_label();
        let mut best: Option<Competition> = None;
        for (i, view) in views.into_iter().enumerate() {
            let endpoint = self.node.labels().nth(i).unwrap_or("?").to_owned();
            let serves = match &view {
                Ok(_) => Some(true),
                Err(PoolError::Unserved(_)) => Some(false),
                Err(PoolError::Unreachable(_)) => None,
            };
            // One slot per endpoint; a view beyond them (a `Node` that answers more pools than
            // it has endpoints) is used for pricing but not tracked.
            if let Some(serves) = serves
                && let Some(readable) = self.pool_readable.get_mut(i)
                && *readable != Some(serves)
            {
                *readable = Some(serves);
                match &view {
                    Err(e) => {
                        warn!(target: "uptime", chain = self.cfg.chain, %endpoint, error = %e, "this node does not serve its pending pool (txpool_content): where no pool is readable the report is priced at the configured fees, which cannot promise first place")
                    }
                    Ok(_) => {
                        info!(target: "uptime", chain = self.cfg.chain, %endpoint, "the pending pool is readable: the report is priced above the best pending transaction")
                    }
                }
                let labels = [("chain", chain.as_str()), ("endpoint", endpoint.as_str())];
                self.metrics.set(&metrics::POOL_UNREADABLE, &labels, if serves { 0.0 } else { 1.0 });
            }
            if let Ok(view) = view {
                best = Some(best.map_or(view.competition, |b| b.merge(view.competition)));
            }
        }
        // An unreadable read (every node down, or too large) keeps the last known competitor.
        if best.is_some() {
            self.competition = best;
        }
    }

    /// Journals `outage` and makes it the injector's record, so memory never lags the journal.
    async fn save(&mut self, outage: &OutageRecord) -> Result<(), InjectError> {
        self.journal(outage).await?;
        self.outage = Some(outage.clone());
        Ok(())
    }

    /// The check while stalled (and, after resumption, the push until the report lands).
    pub(super) async fn pre_position(&mut self) -> Result<(), InjectError> {
        self.preflight().await?;
        let Some(mut outage) = self.outage.clone() else { return Ok(()) };
        if !self.preflight_ok || outage.result != OutageResult::Pending {
            return Ok(());
        }
        let slots = self.cfg.mode.slots();
        if outage.txs.iter().all(Option::is_none) && outage.signed_fees.is_empty() && self.phase == Phase::Stalled {
            let latest = self.latest_round().await?;
            if self.reported_since(latest, outage.down_ts()).await? {
                info!(target: "uptime", chain = self.cfg.chain, down_ts = outage.down_ts(), "the feed already shows this outage: nothing to inject");
                self.injection("already_reported");
                return self.finish(OutageResult::AlreadyReported, None).await;
            }
            if latest.started_at > outage.down_ts() && !self.warned_ignored {
                self.warned_ignored = true;
                error!(target: "uptime", chain = self.cfg.chain, down_ts = outage.down_ts(), latest_started_at = latest.started_at, "the feed's newest round started after this outage's down timestamp: the feed will ignore the down update (a chain whose time lags a pair's wall-clock up time: use reporter mode)");
            }
        }
        let competition = self.competition_now().await;
        let base_fee = self.node.base_fee().await?.unwrap_or(0);
        let target = self.cfg.rules.target(base_fee, competition.as_ref());
        if target.outbid_at_cap && !outage.outbid_at_cap {
            outage.outbid_at_cap = true;
            self.count(&metrics::REPORT_OUTBID);
            warn!(target: "uptime", chain = self.cfg.chain, cap = self.cfg.rules.cap, best = competition.map_or(0, |c| c.best()), "a pending transaction pays the fee cap or more: the report stays at the cap and may not be first");
        }

        let mined = self.node.nonce(self.signer_address).await?;
        if outage.nonce.is_none()
            && let Some(old) = outage.superseded.take()
        {
            // The superseded report may still be pooled at these nonces: a replacement of it
            // must pay the pools' bump over what it signed for each one. (Journaled with the
            // first signature; until then the journal still holds `superseded`.)
            outage.signed_fees = (0..slots as u64)
                .map(|slot| {
                    (mined + slot)
                        .checked_sub(old.nonce)
                        .and_then(|k| old.signed_fees.get(k as usize))
                        .map_or(0, |f| *f)
                })
                .collect();
        }
        let nonce = *outage.nonce.get_or_insert(mined);
        outage.reporter = match self.cfg.mode {
            ReportMode::Reporter(r) => Some(r),
            ReportMode::Pair => None,
        };
        outage.txs.resize(slots, None);
        outage.signed_fees.resize(slots, 0);
        let mut plan = self.plan(&mut outage, &target, competition.as_ref(), mined);
        self.afford(&outage, &mut plan).await?;
        let mut repriced = false;
        for (slot, p) in plan.into_iter().enumerate() {
            let slot_nonce = nonce.saturating_add(slot as u64);
            if slot_nonce < mined {
                continue; // mined: the confirmation finds out what
            }
            match p {
                SlotPlan::Sign(price, why) => {
                    let tx = self.sign_slot(&outage, slot, slot_nonce, price).await?;
                    // Write-ahead: whatever a pool may hold of ours for this nonce, the next
                    // signature outbids it, even after a crash right after this submission.
                    let before = outage.signed_fees[slot];
                    // The highest ever signed: a price held down by the balance lowers nothing.
                    outage.signed_fees[slot] = before.max(price);
                    self.save(&outage).await?;
                    match self.submit_slot(&mut outage, slot, tx, why).await {
                        Settled::Pooled => repriced |= why == Why::Outbid,
                        Settled::Mined => break,
                        // A node holds (or may hold) one of ours for this nonce: go on.
                        Settled::Outbid => {}
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
                    self.save(&outage).await?;
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
        self.save(&outage).await?;
        if outage.fully_pooled(slots) {
            self.blocked = None;
        }
        Ok(())
    }

    /// Holds the planned signatures to what the signer can pay: if the balance does not cover
    /// the plan, each signature is priced at what it does cover (never below the floor), and
    /// none is made if even the floor is out of reach. What is already pooled is kept and
    /// still verified.
    async fn afford(&mut self, outage: &OutageRecord, plan: &mut [SlotPlan]) -> Result<(), InjectError> {
        let gas = U256::from(self.cfg.gas_limit);
        let signing = plan.iter().filter(|p| matches!(p, SlotPlan::Sign(..))).count();
        if signing == 0 {
            return Ok(());
        }
        let kept: U256 = plan
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p, SlotPlan::Sign(..)))
            .map(|(i, _)| gas * U256::from(outage.txs[i].as_ref().map_or(0, |t| t.max_fee_per_gas)))
            .fold(U256::ZERO, |a, b| a + b);
        let need = plan.iter().fold(kept, |a, p| match p {
            SlotPlan::Sign(price, _) => a + gas * U256::from(*price),
            _ => a,
        });
        let balance = self.read_balance().await?;
        if self.funded(balance, need) {
            return Ok(());
        }
        let per_gas = (balance.saturating_sub(kept) / gas / U256::from(signing)).saturating_to::<u128>();
        let affordable = per_gas >= self.cfg.rules.floor;
        for p in plan.iter_mut() {
            if let SlotPlan::Sign(price, why) = *p {
                *p = if affordable { SlotPlan::Sign(price.min(per_gas), why) } else { SlotPlan::Keep };
            }
        }
        if affordable {
            warn!(target: "uptime", chain = self.cfg.chain, %balance, max_fee = per_gas, "the signer cannot pay the price that sorts first: signing at what the balance covers");
        }
        Ok(())
    }

    /// Per slot, what to do now ([`PriceRules::plan`]); a mined slot is kept. The cap is
    /// counted once per outage when it stops a due re-signature.
    pub(super) fn plan(
        &self,
        outage: &mut OutageRecord,
        target: &Target,
        c: Option<&Competition>,
        mined: u64,
    ) -> Vec<SlotPlan> {
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
        Ok(ReportTx {
            hash: *signed.hash(),
            raw: TxEnvelope::Eip1559(signed).encoded_2718().into(),
            max_fee_per_gas: price,
            up_ts,
        })
    }

    /// Submits a newly signed `tx` for `slot` to every endpoint; it becomes the slot's pooled
    /// transaction only if a node accepted it.
    async fn submit_slot(&mut self, outage: &mut OutageRecord, slot: usize, tx: ReportTx, why: Why) -> Settled {
        let which: Vec<usize> = (0..self.node.endpoints()).collect();
        let outcomes = self.node.submit(&tx.raw, &which).await;
        for (&i, outcome) in which.iter().zip(&outcomes) {
            self.count_endpoint(&metrics::SUBMISSIONS, i, Some(("result", outcome.label())));
            if let Submitted::Failed(e) = outcome {
                warn!(target: "uptime", chain = self.cfg.chain, endpoint = self.node.labels().nth(i).unwrap_or("?"), error = %e, "submission failed");
            }
        }
        let settled = settle(&outcomes);
        self.held.insert(tx.hash, outcomes.iter().map(Submitted::pooled).collect());
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
                // The resumption raced this check: not a refusal.
                info!(target: "uptime", chain = self.cfg.chain, slot, "nonce already used: the report (or another transaction of the signer) was mined");
                return settled;
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
        let known = self.node.knows(tx.hash).await;
        let gone: Vec<usize> = known.iter().enumerate().filter(|(_, k)| **k == Some(false)).map(|(i, _)| i).collect();
        if gone.is_empty() {
            return true;
        }
        let outcomes = self.node.submit(&tx.raw, &gone).await;
        // After a restart nothing is known about who held it: a pool that takes it back lost it.
        let held = self.held.get(&tx.hash).cloned().unwrap_or_else(|| vec![true; self.node.endpoints()]);
        for (&i, outcome) in gone.iter().zip(&outcomes) {
            self.count_endpoint(&metrics::SUBMISSIONS, i, Some(("result", outcome.label())));
            if outcome.pooled() && held.get(i).copied().unwrap_or(true) {
                self.count_endpoint(&metrics::POOL_LOST, i, None);
                warn!(target: "uptime", chain = self.cfg.chain, endpoint = self.node.labels().nth(i).unwrap_or("?"), tx = %tx.hash, "the report was gone from this pool (restart or failover): re-submitted");
            }
        }
        let mut held = held;
        for (&i, outcome) in gone.iter().zip(&outcomes) {
            if let Some(h) = held.get_mut(i) {
                *h |= outcome.pooled();
            }
        }
        self.held.insert(tx.hash, held);
        !outcomes.contains(&Submitted::NonceTooLow)
    }
}
