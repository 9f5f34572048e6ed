//! [`Watcher`]: the supervised actor around a [`Follower`]. [`L1Watcher`] follows L1 into the
//! L1 index; an [`L2Watcher`] per chain follows that chain's node (its `safe` head by default)
//! into the chain's derivation log. That is the first kind of derivation input; a rollup node
//! that pushes `(source, derived)` pairs would be a second actor sending to the same
//! `ChainsDbActor` messages, with no change to the storage rules.
//!
//! The actor is a thin mailbox: it runs one [`Follower::step`] at a time, schedules the next
//! (at once while catching up, after the poll interval when idle, after an exponential backoff
//! when the node fails), and stops on an error it cannot handle, so that its actix
//! [`Supervisor`](actix::Supervisor) restarts it with state reloaded from the database, after a
//! backoff that grows with repeated restarts. Restarts are logged and counted.
//!
//! A watcher that follows a node's `latest` block also checks that it is alive
//! ([`liveness`]): `null` answers, or a block that stops changing, are counted, said once per
//! episode and reported in [`GetStatus`] (which `/readyz` reads). The L1 watcher's heads poll
//! ([`PollHeads`]) runs one at a time, so its writes cannot overlap or arrive out of order.

pub mod liveness;
pub mod messages;
mod targets;

use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, ResponseFuture, Supervised, WrapFuture,
};
use rollup_supervisor_storage::BlockRef;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

pub use self::targets::{L1Target, L2Target};
use self::{liveness::HeadLiveness, messages::*};
use crate::{
    backoff::Backoff,
    derivation::RollupFollower,
    follow::{FollowError, Follower, Progress, Step},
    metrics::{self, Metrics},
};

/// Follows L1 into the L1 index (and its safe/finalized heads).
pub type L1Watcher = Watcher<Follower<L1Target>>;
/// Follows one L2 chain's node into its derivation log ("observed as of").
pub type L2Watcher = Watcher<Follower<L2Target>>;
/// Follows one L2 chain's rollup node into its derivation log (what it derived).
pub type RollupWatcher = Watcher<RollupFollower>;

/// Timing of a [`Watcher`].
#[derive(Clone, Debug)]
pub struct WatcherTiming {
    /// Between steps when there is nothing new.
    pub poll_interval: Duration,
    /// Between polls of the labelled heads (`None`: never).
    pub heads_interval: Option<Duration>,
    /// Backoff after failed steps: from `retry.0` doubling up to `retry.1`.
    pub retry: (Duration, Duration),
    /// Backoff before the first step after a restart: from `restart.0` doubling up to `restart.1`.
    pub restart: (Duration, Duration),
    /// Watchers of a `latest` block: how long it may stay unchanged before it counts as a
    /// failure (the node answers but is stuck) and the watcher reports it (`None`: never). The
    /// default, 120 s, is ten L1 slots: ten blocks behind is `/readyz`'s default lag bound too.
    pub head_stall_after: Option<Duration>,
}

/// Watchers of a `latest` block: `null` answers for longer than this many poll intervals make
/// the watcher report the node as failing.
pub const NULL_HEAD_POLLS: u32 = 3;

impl WatcherTiming {
    /// How long `null` answers for the latest block may last before the node counts as failing.
    pub fn null_head_after(&self) -> Duration {
        self.poll_interval * NULL_HEAD_POLLS
    }
}

impl Default for WatcherTiming {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            heads_interval: Some(Duration::from_secs(12)),
            retry: (Duration::from_millis(250), Duration::from_secs(30)),
            restart: (Duration::from_secs(1), Duration::from_secs(60)),
            head_stall_after: Some(Duration::from_secs(120)),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Watcher<F: Step> {
    name: String,
    follower: Option<F>,
    timing: WatcherTiming,
    metrics: Metrics,
    retry: Backoff,
    restart: Backoff,
    status: WatcherStatus,
    shutting_down: bool,
    waiters: Vec<oneshot::Sender<()>>,
    /// Whether the node's `latest` block is alive (watchers of `latest` only).
    liveness: Option<HeadLiveness>,
    /// A heads poll is running: the next one waits for it.
    heads_in_flight: bool,
    /// A head was announced while a step was in flight: step again as soon as it is done.
    step_again: bool,
    /// The scheduled next step, if any: one at a time, so announced heads add no second loop.
    next_step: Option<actix::SpawnHandle>,
    /// The scheduled step ends a retry or restart backoff.
    in_backoff: bool,
}

impl<F: Step> Watcher<F> {
    /// A watcher over `follower`.
    pub fn new(follower: F, timing: WatcherTiming, metrics: Metrics) -> Self {
        // Every series at zero from the start, so that `increase()` sees the first event.
        let name = follower.name();
        for kind in ["rpc", "db", "fatal"] {
            metrics.touch(&metrics::WATCHER_ERRORS, &[("watcher", name), ("kind", kind)]);
        }
        for family in [&metrics::REORGS, &metrics::NODE_RESETS, &metrics::BLOCKS_RECORDED] {
            metrics.touch(family, &[("watcher", name)]);
        }
        metrics.touch_histogram(&metrics::REORG_DEPTH, &[("watcher", name)]);
        metrics.touch(&metrics::ACTOR_RESTARTS, &[("actor", name)]);
        let liveness = follower.follows_latest().then(|| {
            for kind in ["null", "stalled"] {
                metrics.touch(&metrics::NODE_HEAD_FAILURES, &[("watcher", name), ("kind", kind)]);
            }
            HeadLiveness::new(timing.null_head_after(), timing.head_stall_after)
        });
        Self {
            retry: Backoff::new(timing.retry.0, timing.retry.1),
            restart: Backoff::new(timing.restart.0, timing.restart.1),
            name: follower.name().to_owned(),
            follower: Some(follower),
            timing,
            metrics,
            status: WatcherStatus::default(),
            shutting_down: false,
            waiters: Vec::new(),
            liveness,
            heads_in_flight: false,
            step_again: false,
            next_step: None,
            in_backoff: false,
        }
    }

    /// Feeds the node's answer for its latest block (`Some(None)`: `null`) to the liveness check:
    /// a failing answer is counted, and an episode is said once when it begins and when it ends.
    fn observe_head(&mut self, answer: Option<Option<BlockRef>>) {
        let (Some(liveness), Some(answer)) = (self.liveness.as_mut(), answer) else {
            return;
        };
        let observed = liveness.observe(answer, Instant::now());
        let name = self.name.as_str();
        if let Some(failure) = observed.failed {
            self.metrics.inc(&metrics::NODE_HEAD_FAILURES, &[("watcher", name), ("kind", failure.as_str())]);
        }
        if let Some((failure, lasted)) = observed.ended {
            info!(target: "watcher", watcher = %name, failure = failure.as_str(), lasted = ?lasted, "the node's latest block is live again");
        }
        match (observed.began, answer) {
            (Some(liveness::HeadFailure::Null), _) => warn!(
                target: "watcher",
                watcher = %name,
                unready_after = ?self.timing.null_head_after(),
                "the node answers null for its latest block: counted as a failure until it names one again"
            ),
            (Some(liveness::HeadFailure::Stalled), Some(head)) => warn!(
                target: "watcher",
                watcher = %name,
                number = head.number,
                hash = %head.hash,
                bound = ?self.timing.head_stall_after,
                "the node's latest block has not changed for longer than the bound: counted as a failure until it does"
            ),
            _ => {}
        }
    }

    /// The next step after `delay`, replacing any step already scheduled; `backoff`: a retry or
    /// restart backoff, which an announced head does not cut short.
    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration, backoff: bool) {
        if let Some(old) = self.next_step.take() {
            ctx.cancel_future(old);
        }
        self.next_step = Some(ctx.notify_later(Poll, delay));
        self.in_backoff = backoff;
    }

    fn step_done(&mut self, result: Result<Progress, FollowError>, ctx: &mut Context<Self>) {
        if self.shutting_down {
            for w in self.waiters.drain(..) {
                let _ = w.send(());
            }
            return;
        }
        let name = self.name.clone();
        match result {
            Ok(progress) => {
                self.retry.reset();
                self.restart.reset();
                self.status.consecutive_failures = 0;
                self.status.last_error = None;
                match progress {
                    Progress::Advanced { behind } => self.status.lag_blocks = Some(behind),
                    Progress::Idle => self.status.lag_blocks = Some(0),
                    Progress::Rewound | Progress::NoHead => {}
                }
                match progress {
                    Progress::Advanced { behind } if behind > 0 => ctx.notify(Poll),
                    Progress::Rewound => ctx.notify(Poll),
                    _ if std::mem::take(&mut self.step_again) => ctx.notify(Poll),
                    _ => self.schedule(ctx, self.timing.poll_interval, false),
                }
            }
            Err(e) if e.is_waiting() => {
                debug!(target: "watcher", watcher = %name, reason = %e, "waiting");
                self.schedule(ctx, self.timing.poll_interval, false);
            }
            Err(e) => {
                self.status.consecutive_failures += 1;
                self.status.last_error = Some(e.to_string());
                let kind = match &e {
                    _ if e.is_fatal() => "fatal",
                    FollowError::Rpc(_) | FollowError::Inconsistent(_) | FollowError::WrongChain { .. } => "rpc",
                    _ => "db",
                };
                self.metrics.inc(&metrics::WATCHER_ERRORS, &[("watcher", name.as_str()), ("kind", kind)]);
                if e.is_fatal() {
                    error!(target: "watcher", watcher = %name, error = %e, "cannot continue; stopping for a restart");
                    ctx.stop();
                    return;
                }
                let delay = self.retry.next_delay();
                if matches!(e, FollowError::WrongChain { .. }) {
                    error!(target: "watcher", watcher = %name, error = %e, retry_in = ?delay, "refusing to follow");
                } else {
                    warn!(target: "watcher", watcher = %name, error = %e, failures = self.status.consecutive_failures, retry_in = ?delay, "step failed");
                }
                self.schedule(ctx, delay, true);
            }
        }
    }
}

impl<F: Step> Actor for Watcher<F> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let delay = if self.status.restarts == 0 { Duration::ZERO } else { self.restart.next_delay() };
        self.schedule(ctx, delay, self.status.restarts > 0);
        if let Some(every) = self.timing.heads_interval {
            ctx.notify_later(PollHeads, delay);
            ctx.run_interval(every, |_, ctx| ctx.notify(PollHeads));
        }
    }
}

impl<F: Step> Supervised for Watcher<F> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.status.restarts += 1;
        let name = self.name.clone();
        self.metrics.inc(&metrics::ACTOR_RESTARTS, &[("actor", name.as_str())]);
        warn!(target: "watcher", watcher = %name, restarts = self.status.restarts, "restarting; state reloads from the database");
        // The stopped actor's futures are gone, the heads poll in flight and the scheduled step
        // with them (its handle must not cancel a future of the restarted context).
        self.heads_in_flight = false;
        self.next_step = None;
        if let Some(f) = self.follower.as_mut() {
            f.reset();
        }
    }
}

impl<F: Step> Handler<Poll> for Watcher<F> {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        // A step is in flight; it schedules the next one itself.
        let Some(mut follower) = self.follower.take() else {
            return;
        };
        let step = async move {
            let result = follower.step().await;
            (follower, result)
        };
        ctx.spawn(step.into_actor(self).map(|(mut follower, result), act, ctx| {
            act.observe_head(follower.take_head_answer());
            act.follower = Some(follower);
            act.step_done(result, ctx);
        }));
    }
}

impl<F: Step> Handler<HeadAnnounced> for Watcher<F> {
    type Result = ();

    fn handle(&mut self, _: HeadAnnounced, ctx: &mut Context<Self>) {
        if self.follower.is_none() {
            self.step_again = true;
        } else if !self.in_backoff {
            // Now instead of at the scheduled time: still one loop of steps.
            self.schedule(ctx, Duration::ZERO, false);
        }
    }
}

impl<F: Step> Handler<PollHeads> for Watcher<F> {
    type Result = ();

    fn handle(&mut self, _: PollHeads, ctx: &mut Context<Self>) {
        let (Some(follower), false) = (self.follower.as_ref(), self.shutting_down) else {
            return;
        };
        let Some(poll) = follower.heads_poll() else {
            return;
        };
        if self.heads_in_flight {
            // One poll at a time: two could write their answers in either order.
            debug!(target: "watcher", watcher = %self.name, "heads poll still running; skipping this one");
            return;
        }
        self.heads_in_flight = true;
        let name = follower.name().to_owned();
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                if let Err(e) = poll.await {
                    metrics.inc(&metrics::WATCHER_ERRORS, &[("watcher", name.as_str()), ("kind", "rpc")]);
                    warn!(target: "watcher", watcher = %name, error = %e, "polling safe/finalized heads failed");
                }
            }
            .into_actor(self)
            .map(|(), act, _| act.heads_in_flight = false),
        );
    }
}

impl<F: Step> Handler<Shutdown> for Watcher<F> {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        info!(target: "watcher", watcher = %self.name, "shutting down");
        if self.follower.is_some() {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl<F: Step> Handler<GetStatus> for Watcher<F> {
    type Result = actix::MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let mut status = self.status.clone();
        status.head_problem = self.liveness.as_ref().and_then(|l| l.problem(Instant::now()));
        actix::MessageResult(status)
    }
}
