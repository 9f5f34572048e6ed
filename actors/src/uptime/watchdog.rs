//! `UptimeWatchdog`: polls one chain's head and says when its sequencer stalls and resumes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, MessageResult, Recipient, WrapFuture};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord};
use tracing::{info, trace, warn};

use super::{messages::*, submit::Sequencers};
use crate::{
    metrics::{self, Metrics},
    rpc::BlockTag,
};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What an observation of the head means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Nothing to report.
    Quiet,
    /// The outage begins (reported once).
    Stalled(BlockRef),
    /// The outage that began after `last_block` is over.
    Resumed {
        /// The last block before the gap.
        last_block: BlockRef,
        /// The new head.
        head: BlockRef,
    },
}

/// The stall rule, without any I/O: stalled when `now - head.timestamp > max_age`, once per
/// outage; resumed when a newer block appears; genesis (head ≤ 1) never triggers.
#[derive(Clone, Debug)]
pub struct StallDetector {
    max_age_secs: u64,
    stalled_at: Option<BlockRef>,
}

impl StallDetector {
    /// A detector with threshold `max_age_secs`.
    pub fn new(max_age_secs: u64) -> Self {
        Self { max_age_secs, stalled_at: None }
    }

    /// Whether an outage is on.
    pub fn stalled(&self) -> bool {
        self.stalled_at.is_some()
    }

    /// The operator says the chain is down after `head`: an outage starts now unless one is on
    /// (then that one stands). Returns the outage's last block.
    pub fn force(&mut self, head: BlockRef) -> BlockRef {
        *self.stalled_at.get_or_insert(head)
    }

    /// Feeds one observation of the head at time `now`.
    pub fn observe(&mut self, head: BlockRef, now: u64) -> Observation {
        if let Some(last) = self.stalled_at {
            if head.number > last.number {
                self.stalled_at = None;
                return Observation::Resumed { last_block: last, head };
            }
            return Observation::Quiet;
        }
        if head.number > 1 && now.saturating_sub(head.timestamp) > self.max_age_secs {
            self.stalled_at = Some(head);
            return Observation::Stalled(head);
        }
        Observation::Quiet
    }
}

/// Where the watchdog reports: the chain's `TxInjector`.
#[derive(Clone, Debug)]
pub struct Reports {
    /// Receives [`SequencerStalled`].
    pub stalled: Recipient<SequencerStalled>,
    /// Receives [`SequencerResumed`].
    pub resumed: Recipient<SequencerResumed>,
    /// Receives [`ForcedStall`].
    pub forced: Recipient<ForcedStall>,
}

impl Reports {
    /// Every report to `actor`.
    pub fn to<A>(actor: &actix::Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<SequencerStalled> + Handler<SequencerResumed> + Handler<ForcedStall>,
    {
        Self {
            stalled: actor.clone().recipient(),
            resumed: actor.clone().recipient(),
            forced: actor.clone().recipient(),
        }
    }
}

/// The actor: checks at start-up and every `check_interval`, reading the head from the chain's
/// sequencer endpoints (the one that answered last first), so a dead leader does not blind it.
#[derive(Debug)]
pub struct UptimeWatchdog {
    chain: ChainId,
    nodes: Sequencers,
    detector: StallDetector,
    check_interval: Duration,
    reports: Reports,
    metrics: Metrics,
    status: WatchdogStatus,
    checking: bool,
}

impl UptimeWatchdog {
    /// A watchdog for `chain`, reading its head from `nodes`, that reports to the injector's
    /// recipients.
    pub fn new(
        chain: ChainId,
        nodes: Sequencers,
        max_block_age_secs: u64,
        check_interval: Duration,
        reports: Reports,
        metrics: Metrics,
    ) -> Self {
        metrics.set(&metrics::SEQUENCER_DOWN, &[("chain", chain.to_string().as_str())], 0.0);
        Self {
            chain,
            nodes,
            detector: StallDetector::new(max_block_age_secs),
            check_interval,
            reports,
            metrics,
            status: WatchdogStatus::default(),
            checking: false,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        // The check's start, for measuring how evenly checks run (`cargo bench --bench uptime`,
        // UPTIME_BENCH=isolation).
        trace!(target: "uptime", chain = self.chain, checking = self.checking, "check due");
        if self.checking {
            return;
        }
        self.checking = true;
        let nodes = self.nodes.clone();
        ctx.spawn(async move { nodes.read(|r| async move { r.block_by_tag(BlockTag::Latest).await }).await }.into_actor(self).map(
            |result, act, _ctx| {
                act.checking = false;
                let chain = act.chain.to_string();
                let labels = [("chain", chain.as_str())];
                let head = match result {
                    Ok(Some(head)) => head,
                    Ok(None) => return,
                    Err(e) => {
                        // A chain we cannot see is not a chain we may call down.
                        warn!(target: "uptime", chain = act.chain, error = %e, "cannot read the L2 head");
                        act.status.last_error = Some(e.to_string());
                        return;
                    }
                };
                let now = unix_now();
                act.status.head = Some(head);
                act.status.head_age_secs = Some(now.saturating_sub(head.timestamp));
                act.status.last_error = None;
                act.metrics.set(&metrics::L2_HEAD_AGE, &labels, now.saturating_sub(head.timestamp) as f64);
                match act.detector.observe(head, now) {
                    Observation::Quiet => {}
                    Observation::Stalled(last_block) => {
                        warn!(target: "uptime", chain = act.chain, last_block = last_block.number, age_secs = now - last_block.timestamp, "sequencer stalled");
                        act.metrics.set(&metrics::SEQUENCER_DOWN, &labels, 1.0);
                        act.reports.stalled.do_send(SequencerStalled { chain: act.chain, last_block });
                    }
                    Observation::Resumed { last_block, head } => {
                        info!(target: "uptime", chain = act.chain, last_block = last_block.number, head = head.number, "sequencer resumed");
                        act.metrics.set(&metrics::SEQUENCER_DOWN, &labels, 0.0);
                        act.reports.resumed.do_send(SequencerResumed { chain: act.chain, last_block, head });
                    }
                }
                act.status.stalled = act.detector.stalled();
            },
        ));
    }
}

impl Actor for UptimeWatchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.check(ctx);
        ctx.run_interval(self.check_interval, |act, ctx| act.check(ctx));
    }
}

impl actix::Supervised for UptimeWatchdog {}

impl Handler<ForceUptimeUpdate> for UptimeWatchdog {
    type Result = actix::ResponseActFuture<Self, Result<OutageRecord, String>>;

    fn handle(&mut self, _: ForceUptimeUpdate, _: &mut Context<Self>) -> Self::Result {
        let nodes = self.nodes.clone();
        Box::pin(
            async move { nodes.read(|r| async move { r.block_by_tag(BlockTag::Latest).await }).await }
                .into_actor(self)
                .map(|head, act, _| {
                    let head = head.map_err(|e| format!("cannot read the L2 head: {e}"))?;
                    let head = head.ok_or("the L2 node has no latest block")?;
                    let last_block = act.detector.force(head);
                    act.status.stalled = true;
                    act.metrics.set(&metrics::SEQUENCER_DOWN, &[("chain", act.chain.to_string().as_str())], 1.0);
                    warn!(target: "uptime", chain = act.chain, last_block = last_block.number, "outage forced by the operator");
                    Ok(ForcedStall { chain: act.chain, last_block })
                })
                .then(|forced: Result<ForcedStall, String>, act, _| {
                    let to = act.reports.forced.clone();
                    async move {
                        let forced = forced?;
                        to.send(forced).await.map_err(|e| format!("the injector is unavailable: {e}"))?
                    }
                    .into_actor(act)
                }),
        )
    }
}

impl Handler<GetWatchdogStatus> for UptimeWatchdog {
    type Result = MessageResult<GetWatchdogStatus>;

    fn handle(&mut self, _: GetWatchdogStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status.clone())
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;

    fn head(number: u64, timestamp: u64) -> BlockRef {
        BlockRef { number, hash: B256::repeat_byte(number as u8), parent_hash: B256::ZERO, timestamp }
    }

    #[test]
    fn stalls_once_per_outage_resumes_on_a_newer_block_and_ignores_genesis() {
        let mut d = StallDetector::new(60);
        assert_eq!(d.observe(head(1, 0), 1_000), Observation::Quiet, "genesis never triggers");
        assert_eq!(d.observe(head(5, 1_000), 1_060), Observation::Quiet, "exactly the threshold is not stalled");
        assert_eq!(d.observe(head(5, 1_000), 1_061), Observation::Stalled(head(5, 1_000)));
        assert_eq!(d.observe(head(5, 1_000), 1_500), Observation::Quiet, "once per outage");
        assert!(d.stalled());
        assert_eq!(
            d.observe(head(6, 1_501), 1_501),
            Observation::Resumed { last_block: head(5, 1_000), head: head(6, 1_501) }
        );
        assert!(!d.stalled());
        assert_eq!(d.observe(head(6, 1_501), 1_502), Observation::Quiet);
    }

    #[test]
    fn a_forced_outage_ends_at_the_next_block_and_never_replaces_one_in_progress() {
        let mut d = StallDetector::new(60);
        assert_eq!(d.observe(head(5, 1_000), 1_001), Observation::Quiet);
        assert_eq!(d.force(head(5, 1_000)), head(5, 1_000));
        assert!(d.stalled());
        assert_eq!(d.observe(head(5, 1_000), 1_100), Observation::Quiet, "not reported a second time");
        assert_eq!(d.force(head(5, 1_000)), head(5, 1_000), "forcing again answers the same outage");
        assert_eq!(
            d.observe(head(6, 1_101), 1_101),
            Observation::Resumed { last_block: head(5, 1_000), head: head(6, 1_101) }
        );
        // A real stall in progress stands: forcing answers its last block, not the newer head.
        assert_eq!(d.observe(head(6, 1_101), 1_200), Observation::Stalled(head(6, 1_101)));
        assert_eq!(d.force(head(7, 1_300)), head(6, 1_101));
    }
}
