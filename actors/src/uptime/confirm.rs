//! The injector after resumption: what landed, where, and did the feed record it? Read from
//! the chain, never from what the last submission saw.
//!
//! For each transaction of the report, the block that consumed its nonce is found by binary
//! search on the signer's transaction count (`eth_getTransactionCount(signer, block)`), so a
//! landing any number of blocks after the gap is found in O(log n) reads. A node that cannot
//! say yet (a lagging replica, a missing receipt) is asked again at the next check: missing
//! evidence is never taken for a failure, since a wrong "not ours" would send a second report.

use alloy::{
    consensus::{TxEip1559, TxEnvelope},
    eips::eip2718::Encodable2718,
    primitives::{B256, Bytes, TxKind, U256},
};
use rollup_supervisor_storage::{OutageRecord, OutageResult};
use tracing::{error, info, warn};

use super::{
    feed,
    injector::{InjectError, Injector, Phase, ReportMode},
    ports::{Journal, Node, ReportSigner},
    pricing,
};
use crate::{
    metrics,
    rpc::{RpcReceipt, RpcTx},
};

/// Where a report transaction was found on chain.
#[derive(Clone, Debug)]
pub(super) struct Landing {
    block: u64,
    index: u64,
    hash: B256,
    ok: bool,
    /// The `current` answers of the feed's `AnswerUpdated` events it emitted (1 down, 0 up):
    /// the new rounds it made.
    answers: Vec<u8>,
}

/// What the chain says about one nonce of the report.
#[derive(Clone, Debug)]
enum Found {
    /// Our report transaction consumed it.
    Landed(Landing),
    /// Another transaction of the signer consumed it.
    NotOurs,
    /// The node cannot tell yet: ask again at the next check.
    Unknown,
}

impl<N: Node, S: ReportSigner, J: Journal> Injector<N, S, J> {
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

    fn landing_of(&self, block: u64, index: u64, hash: B256, receipt: &RpcReceipt) -> Landing {
        let answers = receipt
            .logs
            .iter()
            .filter(|l| l.address == self.cfg.feed && l.topics.first() == Some(&super::feed::ANSWER_UPDATED))
            .filter_map(|l| l.topics.get(1).map(|t| t.0[31]))
            .collect();
        Landing { block, index, hash, ok: !receipt.reverted(), answers }
    }

    /// Where the transaction with nonce `nonce` (slot `slot`) landed, up to block `head`.
    async fn landing(&self, outage: &OutageRecord, slot: usize, nonce: u64, head: u64) -> Result<Found, InjectError> {
        if let Some(tx) = outage.txs.get(slot).cloned().flatten()
            && let Some(r) = self.node.receipt(tx.hash).await?
            && let (Some(block), Some(index)) = (r.block_number, r.transaction_index)
        {
            return Ok(Found::Landed(self.landing_of(block.to(), index.to(), tx.hash, &r)));
        }
        // The smallest block after which the signer's count exceeds `nonce`.
        let (mut lo, mut hi) = (outage.last_block.number, head);
        if self.node.nonce_at(self.signer_address, hi).await? <= nonce {
            return Ok(Found::Unknown);
        }
        while lo.saturating_add(1) < hi {
            let mid = lo + (hi - lo) / 2;
            if self.node.nonce_at(self.signer_address, mid).await? > nonce {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let Some(txs) = self.node.block_transactions(hi).await? else { return Ok(Found::Unknown) };
        let Some((index, tx)) =
            txs.iter().enumerate().find(|(_, t)| t.from == self.signer_address && t.nonce.to::<u64>() == nonce)
        else {
            return Ok(Found::Unknown);
        };
        if !self.is_report(tx, slot, outage.down_ts()) {
            return Ok(Found::NotOurs);
        }
        Ok(match self.node.receipt(tx.hash).await? {
            Some(r) => Found::Landed(self.landing_of(hi, index as u64, tx.hash, &r)),
            None => Found::Unknown,
        })
    }

    /// After resumption: what landed, and where?
    pub(super) async fn confirm(&mut self) -> Result<(), InjectError> {
        let Some(outage) = self.outage.clone() else { return Ok(()) };
        if outage.result != OutageResult::Pending {
            self.phase = Phase::Idle;
            return Ok(());
        }
        let Some(head) = self.node.head().await? else { return Ok(()) };
        let first = outage.last_block.number.saturating_add(1);
        if head.number < first {
            return Ok(());
        }
        let mined = self.node.nonce(self.signer_address).await?;
        let slots = self.cfg.mode.slots() as u64;
        let Some(nonce) = outage.nonce.filter(|n| mined >= n.saturating_add(slots)) else {
            // Not landed (or never sent). Reported in full by another sender: stand down and
            // take back what we pooled. Otherwise it is not first, and it is pushed until it lands.
            if outage.nonce.is_none_or(|n| mined <= n) && self.feed_shows(outage.down_ts()).await? {
                info!(target: "uptime", chain = self.cfg.chain, down_ts = outage.down_ts(), "the feed shows this outage (reported by another sender)");
                self.cancel(&outage, mined).await;
                self.injection("already_reported");
                return self.finish(OutageResult::AlreadyReported, None).await;
            }
            self.not_first(first, "the report is not in the first block after the gap");
            return self.pre_position().await;
        };
        let mut landings = Vec::new();
        for slot in 0..slots {
            match self.landing(&outage, slot as usize, nonce.saturating_add(slot), head.number).await? {
                Found::Landed(l) => landings.push(l),
                Found::Unknown => return Ok(()),
                Found::NotOurs => {
                    warn!(target: "uptime", chain = self.cfg.chain, nonce = nonce.saturating_add(slot), "another transaction of the signer took the report's nonce: reporting again");
                    self.not_first(first, "another transaction of the signer took the report's nonce");
                    return self.retry(head.number).await;
                }
            }
        }
        if let Some(bad) = landings.iter().find(|l| !l.ok) {
            return self.reverted(bad.clone(), head.number).await;
        }
        // OP Stack blocks open with their deposit transactions: first means first after them.
        let deposits = match self.node.block_transactions(first).await? {
            Some(txs) => txs.iter().take_while(|t| t.is_deposit()).count() as u64,
            None => return Ok(()),
        };
        let first_place = landings.iter().enumerate().all(|(i, l)| l.block == first && l.index == deposits + i as u64);
        let mut outage = outage;
        outage.landed_txs = landings.iter().map(|l| l.hash).collect();
        let block = landings[0].block;
        let last = &landings[landings.len() - 1];
        outage.up_ts = match self.cfg.mode {
            ReportMode::Reporter(_) => self.node.block(block).await?.map(|b| b.timestamp),
            ReportMode::Pair => self
                .node
                .block_transactions(last.block)
                .await?
                .and_then(|txs| txs.get(last.index as usize).and_then(|t| feed::decode_update_status(&t.input)))
                .map(|(_, ts)| ts),
        };
        self.outage = Some(outage.clone());
        // Both rounds must be new: a down update the feed ignored leaves no grace period.
        let answers: Vec<u8> = landings.iter().flat_map(|l| l.answers.iter().copied()).collect();
        if answers != [1, 0] {
            error!(target: "uptime", chain = self.cfg.chain, block, ?answers, down_ts = outage.down_ts(), "the report landed but the feed did not start a down round and then an up round from it (an update was ignored): lenders got no grace period");
            self.injection("ignored");
            return self.finish(OutageResult::Landed { first: first_place }, Some(block)).await;
        }
        self.check_rounds(&outage).await;
        if first_place {
            info!(target: "uptime", chain = self.cfg.chain, block, down_ts = outage.down_ts(), up_ts = ?outage.up_ts, "report landed first in the first block after the gap");
            self.injection("landed_first");
        } else {
            self.injection("landed_not_first");
            error!(target: "uptime", chain = self.cfg.chain, block, first_block = first, "report landed, but NOT first in the first block after the gap");
        }
        self.finish(OutageResult::Landed { first: first_place }, Some(block)).await
    }

    /// Compares the feed's newest two rounds with the landed report: a later writer may have
    /// followed, and a read may fail: said, never failed on.
    async fn check_rounds(&self, outage: &OutageRecord) {
        let rounds = async {
            let latest = self.latest_round().await?;
            let down = if latest.round_id > 1 { Some(self.round(latest.round_id - 1).await?) } else { None };
            Ok::<_, InjectError>((latest, down))
        };
        match rounds.await {
            Ok((latest, down)) => {
                let ours = !latest.down
                    && Some(latest.started_at) == outage.up_ts
                    && down.is_some_and(|d| d.down && d.started_at == outage.down_ts());
                if !ours {
                    warn!(target: "uptime", chain = self.cfg.chain, ?latest, ?down, up_ts = ?outage.up_ts, "the feed's newest rounds are not the report's down and up rounds (a later writer?)");
                }
            }
            Err(e) => {
                warn!(target: "uptime", chain = self.cfg.chain, error = %e, "cannot read the feed's rounds after the report landed")
            }
        }
    }

    /// Takes back the report transactions still pooled for the nonces from `mined` on, by
    /// replacing each with a 0-value transfer to the signer itself, so that a report made
    /// needless by another sender's never lands as a same-status update (which moves the
    /// feed's `updatedAt`). Best effort: a failure is logged.
    async fn cancel(&mut self, outage: &OutageRecord, mined: u64) {
        let Some(nonce) = outage.nonce else { return };
        for (slot, tx) in outage.txs.iter().enumerate() {
            let slot_nonce = nonce.saturating_add(slot as u64);
            if tx.is_none() || slot_nonce < mined {
                continue;
            }
            let signed = outage.signed_fees.get(slot).copied().unwrap_or(0);
            let price = pricing::replacement(signed, self.cfg.rules.bump_percent);
            if price > self.cfg.rules.cap {
                warn!(target: "uptime", chain = self.cfg.chain, nonce = slot_nonce, "cannot take the needless report back: a replacement would exceed the fee cap");
                continue;
            }
            let cancel = TxEip1559 {
                chain_id: self.cfg.chain,
                nonce: slot_nonce,
                gas_limit: 21_000,
                max_fee_per_gas: price,
                max_priority_fee_per_gas: price,
                to: TxKind::Call(self.signer_address),
                value: U256::ZERO,
                access_list: Default::default(),
                input: Bytes::new(),
            };
            match self.sign(cancel).await {
                Ok(signed) => {
                    let hash = *signed.hash();
                    let raw: Bytes = TxEnvelope::Eip1559(signed).encoded_2718().into();
                    let which: Vec<usize> = (0..self.node.endpoints()).collect();
                    let outcomes = self.node.submit(&raw, &which).await;
                    info!(target: "uptime", chain = self.cfg.chain, nonce = slot_nonce, %hash, ?outcomes, "needless report taken back with a 0-value self-transfer");
                }
                Err(e) => {
                    warn!(target: "uptime", chain = self.cfg.chain, error = %e, "cannot sign the take-back of a needless report")
                }
            }
        }
    }

    /// Counts the outage's failure to land first, once.
    pub(super) fn not_first(&mut self, first_block: u64, reason: &str) {
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
        self.not_first(outage.last_block.number.saturating_add(1), "the report reverted");
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

    /// Ends the outage with `result`, journaled; a failed write changes nothing, to be tried
    /// again.
    pub(super) async fn finish(&mut self, result: OutageResult, block: Option<u64>) -> Result<(), InjectError> {
        if let Some(mut outage) = self.outage.clone() {
            outage.result = result;
            outage.included_in = block;
            self.journal(&outage).await?;
            self.outage = Some(outage);
        }
        self.phase = Phase::Idle;
        self.retry_sent_at = None;
        Ok(())
    }
}
