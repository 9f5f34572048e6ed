//! `TxInjector`: the thin actor around [`Injector`]. It runs one operation at a time, in
//! arrival order, so nonces are never allocated twice and the journal is written in order.

use std::collections::VecDeque;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord};
use tokio::sync::oneshot;
use tracing::warn;

use super::{injector::Injector, messages::*};
use crate::metrics;

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
pub struct TxInjector {
    injector: Option<Injector>,
    queue: VecDeque<Event>,
    refresh_interval: std::time::Duration,
    chain: ChainId,
}

impl TxInjector {
    /// The actor around `injector`.
    pub fn new(injector: Injector) -> Self {
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

impl Actor for TxInjector {
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

impl Handler<SequencerStalled> for TxInjector {
    type Result = ();

    fn handle(&mut self, msg: SequencerStalled, ctx: &mut Context<Self>) {
        self.queue.push_back(Event::Stalled(msg.last_block));
        self.pump(ctx);
    }
}

impl Handler<ForcedStall> for TxInjector {
    type Result = actix::ResponseFuture<Result<OutageRecord, String>>;

    fn handle(&mut self, msg: ForcedStall, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queue.push_back(Event::Forced(msg.last_block, reply));
        self.pump(ctx);
        Box::pin(async move { answer.await.unwrap_or_else(|_| Err("the injector restarted; try again".into())) })
    }
}

impl Handler<SequencerResumed> for TxInjector {
    type Result = ();

    fn handle(&mut self, msg: SequencerResumed, ctx: &mut Context<Self>) {
        self.queue.push_back(Event::Resumed(msg.last_block));
        self.pump(ctx);
    }
}

impl actix::Supervised for TxInjector {}
