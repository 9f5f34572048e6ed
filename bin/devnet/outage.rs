//! The staged outages: L2 block production stops; once the supervisor has pre-positioned its
//! report, a user outbids our default fees by far; the supervisor must reprice its pooled report
//! above that user before production resumes, and the first block after the gap must carry the
//! report first and the user after it. Every step is told from what the running system shows:
//! the outage journal, the metrics, the L2 pool (`txpool_content`), blocks and receipts, and the
//! feed's rounds.

use std::{collections::BTreeMap, time::Duration};

use alloy::primitives::{Address, B256, U64, U128};
use anyhow::Context as _;
use rollup_supervisor_actors::{
    chains_db::messages::GetLastOutage,
    metrics::{self, Family},
    rpc::{BlockTag, RpcTx},
    uptime::{feed, injector::ReportMode},
};
use rollup_supervisor_storage::{BlockRef, OutageRecord, OutageResult};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    BLOCK_TIME_SECS, POLL, WAIT,
    consts::{L2_CHAIN_ID, L2_LABEL, TRANSFER_GAS},
    contracts::{effects, round},
    nodes::Chain,
    timeline::{Timeline, clock, gwei, hashes, short},
    wait::wait_for,
};
use crate::node::Node;

/// L2 blocks produced before each outage.
const BLOCKS_BEFORE_OUTAGE: u64 = 3;
/// Refreshes of the pooled pair shown before L2 production resumes (pair mode).
const REFRESHES_SHOWN: u64 = 2;
/// The competing user's max fee per gas: far above our default floor (1 gwei).
const USER_MAX_FEE: u128 = 80_000_000_000;
/// The competing user's priority fee.
const USER_TIP: u128 = 40_000_000_000;

/// A pending transaction in the L2 pool.
#[derive(Clone, Debug)]
struct Pending {
    from: Address,
    nonce: u64,
    hash: B256,
    max_fee: u128,
    tip: u128,
}

/// The fields of a `txpool_content` entry the timeline reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolTx {
    hash: B256,
    nonce: U64,
    max_fee_per_gas: Option<U128>,
    max_priority_fee_per_gas: Option<U128>,
    gas_price: Option<U128>,
}

#[derive(Debug, Deserialize)]
struct PoolContent {
    #[serde(default)]
    pending: BTreeMap<String, BTreeMap<String, PoolTx>>,
}

/// The outages, told from what the running system reports.
#[derive(Debug)]
pub(super) struct Story<'a> {
    pub(super) node: &'a Node,
    pub(super) l2: &'a Chain,
    pub(super) feed: Address,
    pub(super) mode: ReportMode,
    /// The supervisor's signer.
    pub(super) signer: Address,
    /// An L2 dev account that outbids our default fees during each outage.
    pub(super) user: Address,
    /// The supervisor's configured lowest max fee (`max_fee_per_gas_wei`, the default).
    pub(super) floor: u128,
    pub(super) threshold: u64,
    pub(super) tl: Timeline,
}

impl Story<'_> {
    pub(super) fn metric(&self, family: &Family) -> f64 {
        self.metric_with(family, &[("chain", L2_LABEL)])
    }

    pub(super) fn metric_with(&self, family: &Family, labels: &[(&str, &str)]) -> f64 {
        self.node.metrics.get(family, labels)
    }

    /// "the report" (reporter mode) or "the pair".
    pub(super) fn what(&self) -> &'static str {
        match self.mode {
            ReportMode::Reporter(_) => "report",
            ReportMode::Pair => "pair",
        }
    }

    /// The newest outage record in the supervisor's journal.
    async fn journal(&self) -> anyhow::Result<Option<OutageRecord>> {
        Ok(self.node.db.send(GetLastOutage(L2_CHAIN_ID)).await??)
    }

    async fn head(&self) -> anyhow::Result<BlockRef> {
        self.l2.eth.block_by_tag(BlockTag::Latest).await?.context("the L2 node has no latest block")
    }

    /// The L2 pool's pending transactions.
    async fn pool(&self) -> anyhow::Result<Vec<Pending>> {
        let content: PoolContent = self.l2.call("txpool_content", json!([])).await?;
        let mut out = Vec::new();
        for (from, txs) in content.pending {
            let from: Address = from.parse().with_context(|| format!("txpool_content lists sender {from:?}"))?;
            for tx in txs.into_values() {
                let price = |fee: Option<U128>| fee.or(tx.gas_price).map_or(0, |f| f.to::<u128>());
                out.push(Pending {
                    from,
                    nonce: tx.nonce.to(),
                    hash: tx.hash,
                    max_fee: price(tx.max_fee_per_gas),
                    tip: price(tx.max_priority_fee_per_gas),
                });
            }
        }
        out.sort_by_key(|p| (p.from, p.nonce));
        Ok(out)
    }

    /// Stages `count` outages; returns how many were reported exactly as they should be.
    pub(super) async fn outages(&self, count: u64) -> anyhow::Result<u64> {
        let mut reported = 0;
        for n in 1..=count {
            self.producing().await?;
            reported += u64::from(self.outage(n, count).await?);
        }
        if count == 0 {
            self.producing().await?;
        }
        Ok(reported)
    }

    /// L2 makes a few blocks, and the supervisor sees a live sequencer.
    async fn producing(&self) -> anyhow::Result<()> {
        let from = self.head().await?.number;
        let outages = self.metric(&metrics::OUTAGES);
        let head = wait_for("L2 blocks", WAIT, POLL, || async {
            Ok(self.l2.eth.block_by_tag(BlockTag::Latest).await?.filter(|b| b.number >= from + BLOCKS_BEFORE_OUTAGE))
        })
        .await?;
        if self.metric(&metrics::OUTAGES) > outages {
            self.tl.say(format!(
                "note: the supervisor reported an outage of its own while L2 was producing (a block came more than \
                 {} s after the one before, on a busy machine)",
                self.threshold
            ));
        }
        let state = if self.metric(&metrics::SEQUENCER_DOWN) > 0.0 { "DOWN" } else { "up" };
        self.tl.say(format!(
            "L2 producing: head {}; the supervisor sees its newest block {} s old (threshold {} s): sequencer {state}",
            head.number,
            self.metric(&metrics::L2_HEAD_AGE),
            self.threshold
        ));
        Ok(())
    }

    /// One outage: stop L2 production, watch the supervisor react and outbid a user, resume,
    /// check the result.
    async fn outage(&self, n: u64, count: u64) -> anyhow::Result<bool> {
        let previous = self.journal().await?.map(|r| r.down_ts());
        let submitted = self.metric(&metrics::PAIRS_SUBMITTED);
        let _: Value = self.l2.call("evm_setIntervalMining", json!([0])).await?;
        let last = self.head().await?;
        self.tl.say(format!(
            "outage {n} of {count}: L2 block production stopped after block {} (timestamp {}, {})",
            last.number,
            last.timestamp,
            clock(last.timestamp)
        ));

        let stall_wait = Duration::from_secs(self.threshold) + WAIT;
        let outage = wait_for("the supervisor to detect the stall", stall_wait, POLL, || async {
            let down = self.metric(&metrics::SEQUENCER_DOWN) > 0.0;
            Ok(self.journal().await?.filter(|r| down && Some(r.down_ts()) != previous))
        })
        .await?;
        self.tl.say(format!(
            "stall detected: L2 head {} is {} s old (threshold {} s); outage journaled, sequencer_down 1",
            outage.last_block.number,
            self.metric(&metrics::L2_HEAD_AGE),
            self.threshold
        ));

        let down_ts = outage.down_ts();
        let slots = self.mode.slots();
        let pooled = wait_for(&format!("the {} to be pre-positioned", self.what()), WAIT, POLL, || async {
            let sent = self.metric(&metrics::PAIRS_SUBMITTED) > submitted;
            Ok(self.journal().await?.filter(|r| sent && r.down_ts() == down_ts && r.fully_pooled(slots)))
        })
        .await?;
        self.say_pooled(&pooled);

        let user = self.outbid_by_user().await?;
        let repriced = self.repriced(&pooled, &user).await?;
        let refreshed_before = self.metric(&metrics::PAIR_REFRESHES);
        if self.mode == ReportMode::Pair {
            self.refreshes(refreshed_before, pooled.nonce).await?;
        }

        let _: Value = self.l2.call("evm_setIntervalMining", json!([BLOCK_TIME_SECS])).await?;
        self.tl.say("L2 block production resumed");
        let done = wait_for(&format!("the supervisor to confirm the {}", self.what()), WAIT, POLL, || async {
            Ok(self.journal().await?.filter(|r| r.down_ts() == down_ts && r.result != OutageResult::Pending))
        })
        .await?;
        let refreshes = (self.metric(&metrics::PAIR_REFRESHES) - refreshed_before).max(0.0) as u64;
        let landed = self.landed(&done, &user, refreshes).await?;
        Ok(repriced && landed)
    }

    fn say_pooled(&self, pooled: &OutageRecord) {
        let fee = gwei(pooled.txs.iter().flatten().map(|t| t.max_fee_per_gas).max().unwrap_or(0));
        let nonce = |k: u64| pooled.nonce.map_or_else(|| "?".to_owned(), |n| (n + k).to_string());
        let (down_ts, last) = (pooled.down_ts(), pooled.last_block.number);
        let txs = hashes(&pooled.pooled_hashes());
        match self.mode {
            ReportMode::Reporter(reporter) => self.tl.say(format!(
                "report pre-positioned in the L2 pool: report({down_ts}) to the reporter {reporter}, nonce {}  \
                 down_ts={down_ts} (block {last}'s timestamp)  max fee {fee}  tx {txs}",
                nonce(0)
            )),
            ReportMode::Pair => self.tl.say(format!(
                "pair pre-positioned in the L2 pool: nonces {},{}  down_ts={down_ts} (block {last}'s timestamp)  \
                 up_ts={}  max fee {fee}  txs {txs}",
                nonce(0),
                nonce(1),
                pooled.up_ts.map_or_else(|| "?".to_owned(), |t| t.to_string()),
            )),
        }
    }

    /// While L2 is stalled and the report is pooled, a user sends a transaction paying far more
    /// than our default fees; said once the L2 pool holds it.
    async fn outbid_by_user(&self) -> anyhow::Result<Pending> {
        let hash: B256 = self
            .l2
            .call(
                "eth_sendTransaction",
                json!([{ "from": self.user, "to": self.user, "value": "0x1", "gas": TRANSFER_GAS,
                         "maxFeePerGas": format!("{USER_MAX_FEE:#x}"), "maxPriorityFeePerGas": format!("{USER_TIP:#x}") }]),
            )
            .await?;
        let user = wait_for("the user transaction in the L2 pool", WAIT, POLL, || async {
            Ok(self.pool().await?.into_iter().find(|p| p.hash == hash))
        })
        .await?;
        let above = user.max_fee > self.floor && user.tip > self.floor;
        self.tl.say(format!(
            "a user transaction {} is sent while L2 is stalled, paying {} max fee / {} tip, above our default fee \
             floor of {} (max_fee_per_gas_wei): pending in the L2 pool beside the {}{}",
            short(&user.hash),
            gwei(user.max_fee),
            gwei(user.tip),
            gwei(self.floor),
            self.what(),
            if above { "" } else { "  UNEXPECTED: not above our default fee" }
        ));
        Ok(user)
    }

    /// Waits until the journal's pooled report pays more than `user` on every slot, the L2 pool
    /// holds exactly those transactions of the signer (max fee = tip) and the user is still
    /// pending; says so. True when the nonces are the pooled ones.
    async fn repriced(&self, pooled: &OutageRecord, user: &Pending) -> anyhow::Result<bool> {
        let slots = self.mode.slots();
        let beat = user.max_fee.max(user.tip);
        let (record, ours) =
            wait_for(&format!("the {} to be repriced above the user", self.what()), WAIT, POLL, || async {
                let Some(record) =
                    self.journal().await?.filter(|r| r.down_ts() == pooled.down_ts() && r.fully_pooled(slots))
                else {
                    return Ok(None);
                };
                if record.txs.iter().flatten().any(|t| t.max_fee_per_gas <= beat) {
                    return Ok(None);
                }
                let pool = self.pool().await?;
                let ours: Vec<Pending> = pool.iter().filter(|p| p.from == self.signer).cloned().collect();
                let held = ours.len() == slots
                    && record.txs.iter().flatten().all(|t| {
                        ours.iter()
                            .any(|p| p.hash == t.hash && p.max_fee == t.max_fee_per_gas && p.tip == t.max_fee_per_gas)
                    });
                let user_pending = pool.iter().any(|p| p.hash == user.hash);
                Ok((held && user_pending).then_some((record, ours)))
            })
            .await?;
        let fees: Vec<u128> = record.txs.iter().flatten().map(|t| t.max_fee_per_gas).collect();
        let before = pooled.txs.iter().flatten().map(|t| t.max_fee_per_gas).max().unwrap_or(0);
        let nonces: Vec<String> = ours.iter().map(|p| p.nonce.to_string()).collect();
        let same = record.nonce == pooled.nonce && ours.first().map(|p| p.nonce) == pooled.nonce;
        let prices = match fees.as_slice() {
            [down, up] => format!(" (down {}, up {})", gwei(*down), gwei(*up)),
            _ => String::new(),
        };
        self.tl.say(format!(
            "report repriced above a pending user paying {}: now {}{prices}, max fee = tip (was {}); the L2 pool holds \
             the replacement{} {} at nonce{} {} in place of the first{}; report_repriced_total {}{}",
            gwei(user.max_fee),
            gwei(fees.iter().copied().min().unwrap_or(0)),
            gwei(before),
            if slots > 1 { "s" } else { "" },
            hashes(&record.pooled_hashes()),
            if slots > 1 { "s" } else { "" },
            nonces.join(","),
            if slots > 1 { " pair" } else { " report" },
            self.metric(&metrics::REPORT_REPRICED),
            if same { "" } else { "  UNEXPECTED: not the pooled report's nonces" }
        ));
        Ok(same)
    }

    /// Pair mode: the pooled up transaction is refreshed with a fresh `t_up`; shows
    /// [`REFRESHES_SHOWN`] refreshes after the `base` value of `pair_refreshes_total`, each at the
    /// pooled pair's `nonce`.
    async fn refreshes(&self, base: f64, nonce: Option<u64>) -> anyhow::Result<()> {
        let refreshes = || (self.metric(&metrics::PAIR_REFRESHES) - base).max(0.0) as u64;
        let mut shown = 0;
        while shown < REFRESHES_SHOWN {
            let (count, refreshed) = wait_for("the pair to be refreshed", WAIT, POLL, || async {
                let count = refreshes();
                Ok(if count > shown { self.journal().await?.map(|r| (count, r)) } else { None })
            })
            .await?;
            shown = count;
            self.tl.say(format!(
                "pair refreshed ({count}): {}, up_ts={}  max fee {}  txs {}",
                if refreshed.nonce == nonce { "same nonces" } else { "UNEXPECTED: other nonces" },
                refreshed.up_ts.map_or_else(|| "?".to_owned(), |t| t.to_string()),
                gwei(refreshed.txs.iter().flatten().map(|t| t.max_fee_per_gas).max().unwrap_or(0)),
                hashes(&refreshed.pooled_hashes())
            ));
        }
        Ok(())
    }

    /// Checks the journal's verdict against the L2 node's block, the report's receipt and the
    /// feed's rounds, and says what they show. True when everything is as it should be.
    async fn landed(&self, record: &OutageRecord, user: &Pending, refreshes: u64) -> anyhow::Result<bool> {
        let first = record.last_block.number + 1;
        let Some(number) = record.included_in else {
            self.tl.say(format!(
                "L2 resumed: UNEXPECTED: the {} did not land (journal: {:?})",
                self.what(),
                record.result
            ));
            return Ok(false);
        };
        let block = self.l2.eth.block_by_number(number).await?.context("the block that carried the report")?;
        let txs = self.l2.eth.block_transactions(number).await?.unwrap_or_default();
        let slots = self.mode.slots();
        let landed = match self.mode {
            ReportMode::Reporter(reporter) => self.reporter_call(record, &block, &txs, reporter).await?,
            ReportMode::Pair => self.pair(record, &txs, refreshes).await?,
        };
        let first_place = number == first && record.result == OutageResult::Landed { first: true } && landed.is_some();
        let user_at = txs.iter().position(|t| t.hash == user.hash);
        let user_after = user_at.is_some_and(|i| i >= slots);
        let gap = block.timestamp.saturating_sub(record.last_block.timestamp);
        match landed.as_ref().filter(|_| first_place) {
            Some((what, _)) => {
                let user_says = match user_at {
                    Some(i) if user_after => format!(
                        "; the user transaction {} paying {} follows at index {i}",
                        short(&user.hash),
                        gwei(user.max_fee)
                    ),
                    Some(i) => format!(
                        "; UNEXPECTED: the user transaction {} is at index {i}, not after the {}",
                        short(&user.hash),
                        self.what()
                    ),
                    None => format!("; UNEXPECTED: the user transaction {} is not in this block", short(&user.hash)),
                };
                self.tl.say(format!(
                    "L2 resumed: block {number} ({gap} s after block {}) carries {what}{user_says}",
                    record.last_block.number
                ));
            }
            None => self.tl.say(format!(
                "L2 resumed: UNEXPECTED: journal says {:?} in block {number} (the first block after the gap is \
                 {first}); block {number} starts with {}",
                record.result,
                hashes(&txs.iter().take(slots + 1).map(|t| t.hash).collect::<Vec<_>>())
            )),
        }

        let up_ts = landed.map_or(0, |(_, up)| up);
        let latest = round(self.l2, self.feed, None).await?;
        let down = round(self.l2, self.feed, Some(latest.round_id.saturating_sub(1))).await?;
        let down_ts = record.down_ts();
        let rounds_right = down.down && down.started_at == down_ts && !latest.down && latest.started_at == up_ts;
        let up_at = match self.mode {
            ReportMode::Reporter(_) if latest.started_at == block.timestamp => format!("block {number}'s timestamp"),
            _ => format!("{} s before block {number}'s", block.timestamp.saturating_sub(latest.started_at)),
        };
        self.tl.say(format!(
            "feed rounds: #{} {} since {} = block {}'s timestamp, #{} {} since {} = {up_at}{}",
            down.round_id,
            if down.down { "down" } else { "up" },
            down.started_at,
            record.last_block.number,
            latest.round_id,
            if latest.down { "down" } else { "up" },
            latest.started_at,
            if rounds_right { "" } else { "  UNEXPECTED: not the journaled report's timestamps" }
        ));
        Ok(first_place && user_after && rounds_right)
    }

    /// Reporter mode: index 0 is our `report(down_ts)` call, as journaled, and its receipt shows
    /// the feed's down round since `down_ts`, then its up round since the block's own timestamp.
    /// Its description and `t_up`, or `None`.
    async fn reporter_call(
        &self,
        record: &OutageRecord,
        block: &BlockRef,
        txs: &[RpcTx],
        reporter: Address,
    ) -> anyhow::Result<Option<(String, u64)>> {
        let Some(tx) = txs.first() else { return Ok(None) };
        let fx = effects(self.l2, tx.hash, self.feed, Some(reporter)).await?;
        let down_ts = record.down_ts();
        let t_up = block.timestamp;
        let ours = tx.from == self.signer && tx.to == Some(reporter) && feed::decode_report(&tx.input) == Some(down_ts);
        let right = ours
            && fx.ok
            && fx.index == Some(0)
            && fx.rounds == [(true, down_ts), (false, t_up)]
            && fx.outage == Some((down_ts, t_up))
            && record.landed_txs == [tx.hash]
            && record.up_ts == Some(t_up);
        Ok(right.then(|| {
            (
                format!(
                    "the report first, at index 0: report({down_ts}) {} to the reporter, emitting down since \
                     {down_ts} (block {}'s timestamp) and up since {t_up} = block {}'s own timestamp \
                     (t_up == block.timestamp)",
                    short(&tx.hash),
                    record.last_block.number,
                    block.number
                ),
                t_up,
            )
        }))
    }

    /// Pair mode: indices 0 and 1 are our `updateStatus(true, down_ts)` and
    /// `updateStatus(false, t_up)`, as journaled. Their description and `t_up`, or `None`.
    async fn pair(
        &self,
        record: &OutageRecord,
        txs: &[RpcTx],
        refreshes: u64,
    ) -> anyhow::Result<Option<(String, u64)>> {
        let mut pair = Vec::new();
        for (index, tx) in txs.iter().take(2).enumerate() {
            let fx = effects(self.l2, tx.hash, self.feed, None).await?;
            let ok = fx.ok && fx.index == Some(index as u64) && tx.from == self.signer && tx.to == Some(self.feed);
            pair.push((tx.hash, feed::decode_update_status(&tx.input).filter(|_| ok)));
        }
        let down_ts = record.down_ts();
        Ok(match pair.as_slice() {
            [(h0, Some((true, t0))), (h1, Some((false, up)))]
                if record.landed_txs == [*h0, *h1] && *t0 == down_ts && record.up_ts == Some(*up) =>
            {
                Some((
                    format!(
                        "the pair (as refreshed {refreshes} times since the reprice) at indices 0 and 1: updateStatus(true, {down_ts}) \
                         {}, updateStatus(false, {up}) {}",
                        short(h0),
                        short(h1)
                    ),
                    *up,
                ))
            }
            _ => None,
        })
    }
}
