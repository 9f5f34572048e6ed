//! The submission seam: how a signed report reaches the sequencers. Pools live in one process
//! each, so every submission goes to every endpoint (the chain's `rpc_url` and each of
//! `submit_urls`: every sequencer of an op-conductor set, a standby Besu), concurrently, each
//! within its own request timeout, so one endpoint down never blocks the others.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use alloy::primitives::{Address, B256, Bytes};
use futures_util::future::join_all;
use serde_json::json;

use super::pool::{self, PoolView};
use crate::rpc::{EthRpc, RpcError};

/// What a node said about one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// In the pool under this hash.
    Accepted(B256),
    /// The node already has exactly this transaction.
    AlreadyKnown,
    /// A transaction with this nonce is pooled at a price this one does not beat (ours from an
    /// earlier run or a twin instance: no one else holds the key), or the pool's price bump is
    /// larger than `fee_bump_percent`.
    Underpriced,
    /// The nonce is used: something with this nonce was mined.
    NonceTooLow,
    /// The account cannot pay for it.
    InsufficientFunds,
    /// No answer in time: the node may or may not have taken it.
    TimedOut,
    /// Anything else the node refused, or a transport failure.
    Failed(String),
}

impl Submitted {
    /// Whether this node now holds exactly this transaction.
    pub fn pooled(&self) -> bool {
        matches!(self, Submitted::Accepted(_) | Submitted::AlreadyKnown)
    }

    /// The `result` label of `report_submissions_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Submitted::Accepted(_) => "accepted",
            Submitted::AlreadyKnown => "already_known",
            Submitted::Underpriced => "underpriced",
            Submitted::NonceTooLow => "nonce_too_low",
            Submitted::InsufficientFunds => "insufficient_funds",
            Submitted::TimedOut => "timed_out",
            Submitted::Failed(_) => "failed",
        }
    }
}

/// The `result` label values of `report_submissions_total`.
pub const SUBMISSION_RESULTS: [&str; 7] =
    ["accepted", "already_known", "underpriced", "nonce_too_low", "insufficient_funds", "timed_out", "failed"];

/// What the answers of every endpoint to one signed transaction add up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// At least one node holds it: it is ours from now on.
    Pooled,
    /// The nonce was mined: nothing to record; the confirmation reads the chain.
    Mined,
    /// Nobody took it for sure, and a node holds (or may hold, after a timeout) a transaction
    /// of ours for the nonce priced at least this one (a twin instance, an earlier run): the
    /// next signature must outbid the price just signed.
    Outbid,
    /// Nobody took it and nobody holds anything of ours for it as far as the answers tell
    /// (transport failures, funds, other refusals): the price just signed may be signed again.
    NotPooled,
}

/// Adds up the endpoints' answers to one transaction: accepted anywhere wins; then a mined
/// nonce; then an underpriced refusal (a pricier one of ours is pooled); else not pooled.
pub fn settle(outcomes: &[Submitted]) -> Settled {
    if outcomes.iter().any(Submitted::pooled) {
        Settled::Pooled
    } else if outcomes.contains(&Submitted::NonceTooLow) {
        Settled::Mined
    } else if outcomes.contains(&Submitted::Underpriced) || outcomes.contains(&Submitted::TimedOut) {
        Settled::Outbid
    } else {
        Settled::NotPooled
    }
}

/// Maps a node's refusal to what it means for the report (geth, reth, Besu and anvil wordings).
pub fn classify(e: &RpcError) -> Submitted {
    let text = e.to_string().to_lowercase();
    if text.contains("already known") || text.contains("known transaction") || text.contains("already imported") {
        Submitted::AlreadyKnown
    } else if text.contains("nonce too low") || text.contains("nonce is too low") {
        Submitted::NonceTooLow
    } else if text.contains("underpriced") || text.contains("replacement") {
        Submitted::Underpriced
    } else if text.contains("insufficient funds") {
        Submitted::InsufficientFunds
    } else if text.contains("timed out") || text.contains("timeout") {
        Submitted::TimedOut
    } else {
        Submitted::Failed(e.to_string())
    }
}

/// One place a report is submitted to.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `rpc` for the chain's `rpc_url`, `submit_<i>` for `submit_urls[i]`: never the URL.
    pub label: String,
    /// Its client.
    pub rpc: EthRpc,
}

/// Every submission endpoint of one chain, the chain's own node first. Reads of the chain
/// (head, nonce, base fee, contract calls) go to the endpoint that answered last, then to the
/// others in order, so one sequencer down (the leader, before a failover) never stops the flow.
#[derive(Clone, Debug)]
pub struct Sequencers {
    endpoints: Vec<Endpoint>,
    /// The endpoint reads go to first: the one that answered last (shared by clones).
    preferred: Arc<AtomicUsize>,
}

impl Sequencers {
    /// The endpoints, the chain's own node first.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Self { endpoints, preferred: Arc::new(AtomicUsize::new(0)) }
    }

    /// Runs the read `f` against the endpoint that answered last, then against each other one
    /// in order until one answers; the last error if none does.
    pub async fn read<T, F, Fut>(&self, f: F) -> Result<T, RpcError>
    where
        F: Fn(EthRpc) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            match f(self.endpoints[i].rpc.clone()).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RpcError::Unreachable { endpoint: String::new(), reason: "no endpoint".into() }))
    }

    /// Their labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.label.as_str())
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are none (never, once built from a config).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Submits `raw` to the endpoints at `which` (indices), concurrently; one outcome each.
    pub async fn submit(&self, raw: &Bytes, which: &[usize]) -> Vec<Submitted> {
        join_all(which.iter().map(|&i| async move {
            match self.endpoints[i].rpc.send_raw_transaction(raw.clone()).await {
                Ok(hash) => Submitted::Accepted(hash),
                Err(e) => classify(&e),
            }
        }))
        .await
    }

    /// Whether each endpoint knows `hash` (pooled or mined); `None` where it did not answer.
    pub async fn knows(&self, hash: B256) -> Vec<Option<bool>> {
        join_all(self.endpoints.iter().map(|e| async move { e.rpc.knows_transaction(hash).await.ok() })).await
    }

    /// Every endpoint's pool, read within [`pool::MAX_POOL_BYTES`]; `Err` says why not.
    pub async fn pools(&self, ours: Address) -> Vec<Result<PoolView, PoolError>> {
        join_all(self.endpoints.iter().map(|e| async move {
            let body = match e.rpc.bounded_request("txpool_content", json!([]), pool::MAX_POOL_BYTES).await {
                Ok(body) => body,
                Err(e @ RpcError::Unreachable { .. }) => return Err(PoolError::Unreachable(e.to_string())),
                // Too large to read: as unusable as no pool at all.
                Err(e) => return Err(PoolError::Unserved(e.to_string())),
            };
            pool::parse_answer(&body, ours).map_err(PoolError::Unserved)
        }))
        .await
    }
}

/// Why an endpoint's pool could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The node did not answer (down, timeout): says nothing about the method.
    #[error("{0}")]
    Unreachable(String),
    /// The node answered, but not with a readable pool: it does not serve `txpool_content`, or
    /// its pool is larger than [`pool::MAX_POOL_BYTES`].
    #[error("{0}")]
    Unserved(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_refusals_are_classified_by_their_wording() {
        let e = |m: &str| RpcError::BadAnswer { endpoint: "n".into(), reason: m.into() };
        assert_eq!(classify(&e("nonce too low: next nonce 5, tx nonce 3")), Submitted::NonceTooLow);
        assert_eq!(classify(&e("replacement transaction underpriced")), Submitted::Underpriced);
        assert_eq!(classify(&e("transaction underpriced")), Submitted::Underpriced);
        assert_eq!(classify(&e("already known")), Submitted::AlreadyKnown);
        assert_eq!(classify(&e("insufficient funds for gas * price + value")), Submitted::InsufficientFunds);
        assert!(matches!(classify(&e("execution reverted")), Submitted::Failed(_)));
        assert_eq!(classify(&e("operation timed out")), Submitted::TimedOut);
        assert!(Submitted::AlreadyKnown.pooled() && !Submitted::Underpriced.pooled());
        for s in [Submitted::Accepted(B256::ZERO), Submitted::Underpriced, Submitted::Failed(String::new())] {
            assert!(SUBMISSION_RESULTS.contains(&s.label()));
        }
    }

    #[test]
    fn partial_outcomes_settle_by_what_the_pools_hold() {
        let failed = || Submitted::Failed("connection refused".into());
        let ok = Submitted::Accepted(B256::ZERO);
        // One endpoint down, the other took it: ours.
        assert_eq!(settle(&[failed(), ok.clone()]), Settled::Pooled);
        assert_eq!(settle(&[Submitted::AlreadyKnown, Submitted::Underpriced]), Settled::Pooled);
        // Refused as underpriced everywhere: not ours; a pricier one of ours holds the nonce.
        assert_eq!(settle(&[Submitted::Underpriced, failed()]), Settled::Outbid);
        assert_eq!(settle(&[Submitted::NonceTooLow, Submitted::Underpriced]), Settled::Mined);
        // A timeout may have been taken: the next signature must outbid it.
        assert_eq!(settle(&[Submitted::TimedOut, failed()]), Settled::Outbid);
        // Nothing anywhere: the same price may be signed again (no fee growth while a node is down).
        assert_eq!(settle(&[failed(), Submitted::InsufficientFunds]), Settled::NotPooled);
        assert_eq!(settle(&[]), Settled::NotPooled);
    }
}
