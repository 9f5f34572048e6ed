//! `SignerActor`: one per signer; signs one transaction at a time, gives up after its timeout,
//! and opens a circuit breaker after repeated failures so that a dead signer costs nothing but a
//! fast error until it is probed again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{Actor, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, MessageResult, WrapFuture};
use alloy::consensus::{Signed, TxEip1559};
use rollup_supervisor_signer::{Signer, SignerError};
use tracing::{info, warn};

use rollup_supervisor_storage::ChainId;

use super::messages::*;
use crate::metrics::{self, Metrics};

/// `signer_circuit_breaker_state` values.
const BREAKER_CLOSED: f64 = 0.0;
const BREAKER_OPEN: f64 = 1.0;
const BREAKER_HALF_OPEN: f64 = 2.0;

/// Why signing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignError {
    /// The backend failed (unreachable, HTTP error, bad answer, wrong signer...).
    #[error("{message}")]
    Backend {
        /// The backend's error.
        message: String,
        /// Whether waiting may help.
        transient: bool,
    },
    /// No answer within the timeout.
    #[error("signer did not answer within {0:?}")]
    Timeout(Duration),
    /// The breaker is open after repeated failures; no request was made.
    #[error("signer circuit breaker open for {0:?} more")]
    BreakerOpen(Duration),
    /// The actor is gone.
    #[error("signer actor unavailable")]
    Gone,
}

/// Breaker settings.
#[derive(Clone, Debug)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker.
    pub threshold: u32,
    /// How long it stays open before one probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { threshold: 3, cool_down: Duration::from_secs(5) }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct SignerActor {
    signer: Arc<Signer>,
    name: String,
    chain: String,
    backend: &'static str,
    timeout: Duration,
    breaker: BreakerConfig,
    open_until: Option<Instant>,
    health: SignerHealth,
    metrics: Metrics,
}

impl SignerActor {
    /// The signer actor of chain `chain`.
    pub fn new(chain: ChainId, signer: Signer, timeout: Duration, breaker: BreakerConfig, metrics: Metrics) -> Self {
        let backend = match signer {
            Signer::Local(_) => "local",
            Signer::Web3(_) => "web3signer",
        };
        let chain = chain.to_string();
        for family in [&metrics::SIGNER_REQUESTS, &metrics::SIGNER_ERRORS] {
            metrics.touch(family, &[("chain", chain.as_str()), ("backend", backend)]);
        }
        metrics.touch(&metrics::SIGNER_BREAKER_OPENED, &[("chain", chain.as_str())]);
        metrics.set(&metrics::SIGNER_BREAKER, &[("chain", chain.as_str())], BREAKER_CLOSED);
        Self {
            signer: Arc::new(signer),
            name: format!("chain_{chain}"),
            chain,
            backend,
            timeout,
            breaker,
            open_until: None,
            health: SignerHealth::default(),
            metrics,
        }
    }

    fn breaker_state(&self, state: f64) {
        self.metrics.set(&metrics::SIGNER_BREAKER, &[("chain", self.chain.as_str())], state);
    }

    fn record(&mut self, result: &Result<Signed<TxEip1559>, SignError>, took: Duration) {
        let labels = [("chain", self.chain.as_str()), ("backend", self.backend)];
        self.metrics.inc(&metrics::SIGNER_REQUESTS, &labels);
        self.metrics.observe_duration(&metrics::SIGNER_LATENCY, &labels, took);
        match result {
            Ok(_) => {
                if self.health.consecutive_failures > 0 {
                    info!(target: "signer", signer = %self.name, "signer healthy again");
                }
                self.health = SignerHealth::default();
                self.open_until = None;
                self.breaker_state(BREAKER_CLOSED);
            }
            Err(e) => {
                self.health.consecutive_failures += 1;
                self.health.last_error = Some(e.to_string());
                self.metrics.inc(&metrics::SIGNER_ERRORS, &labels);
                if self.health.consecutive_failures >= self.breaker.threshold {
                    self.open_until = Some(Instant::now() + self.breaker.cool_down);
                    self.health.breaker_open = true;
                    self.metrics.inc(&metrics::SIGNER_BREAKER_OPENED, &[("chain", self.chain.as_str())]);
                    self.breaker_state(BREAKER_OPEN);
                    warn!(target: "signer", signer = %self.name, error = %e, cool_down = ?self.breaker.cool_down, "signer failing: circuit breaker open");
                } else {
                    warn!(target: "signer", signer = %self.name, error = %e, "signing failed");
                }
            }
        }
    }
}

impl Actor for SignerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (signer, name) = (self.signer.clone(), self.name.clone());
        let address = signer.address();
        ctx.spawn(
            async move {
                match signer.probe().await {
                    Ok(()) => info!(target: "signer", signer = %name, %address, "signer reachable"),
                    Err(e) => {
                        warn!(target: "signer", signer = %name, %address, error = %e, "signer probe failed at start")
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<SignTransaction> for SignerActor {
    type Result = AtomicResponse<Self, Result<Signed<TxEip1559>, SignError>>;

    fn handle(&mut self, msg: SignTransaction, _: &mut Context<Self>) -> Self::Result {
        if let Some(until) = self.open_until {
            let now = Instant::now();
            if now < until {
                return AtomicResponse::new(Box::pin(
                    async move { Err(SignError::BreakerOpen(until - now)) }.into_actor(self),
                ));
            }
            // Half-open: this request is the probe.
            self.open_until = None;
            self.breaker_state(BREAKER_HALF_OPEN);
        }
        let (signer, timeout) = (self.signer.clone(), self.timeout);
        let work = async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, signer.sign(msg.0)).await {
                Ok(Ok(signed)) => Ok(signed),
                Ok(Err(e)) => Err(backend(e)),
                Err(_) => Err(SignError::Timeout(timeout)),
            };
            (result, started.elapsed())
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(result, took), act, _| {
            act.record(&result, took);
            result
        })))
    }
}

fn backend(e: SignerError) -> SignError {
    SignError::Backend { transient: e.is_transient(), message: e.to_string() }
}

impl Handler<GetSignerHealth> for SignerActor {
    type Result = MessageResult<GetSignerHealth>;

    fn handle(&mut self, _: GetSignerHealth, _: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.breaker_open = self.open_until.is_some_and(|u| Instant::now() < u);
        MessageResult(health)
    }
}

impl Handler<ProbeSigner> for SignerActor {
    type Result = actix::ResponseFuture<Result<(), SignError>>;

    fn handle(&mut self, _: ProbeSigner, _: &mut Context<Self>) -> Self::Result {
        let (signer, timeout) = (self.signer.clone(), self.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, signer.probe()).await {
                Ok(result) => result.map_err(backend),
                Err(_) => Err(SignError::Timeout(timeout)),
            }
        })
    }
}

impl actix::Supervised for SignerActor {}
