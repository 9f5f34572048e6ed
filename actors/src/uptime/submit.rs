//! The submission seam: how a signed update pair reaches the sequencer. Today through
//! `eth_sendRawTransaction`, which every node has; a bundle API (`linea_sendBundle`,
//! `eth_sendBundle`: both transactions for block head+1, all or nothing) is another
//! [`Submitter`], with no change to the watchdog, the injector's logic or the signer.

use std::future::Future;

use alloy::primitives::{B256, Bytes};

use crate::rpc::{EthRpc, RpcError};

/// What the node said about one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// In the pool under this hash.
    Accepted(B256),
    /// The node already has exactly this transaction.
    AlreadyKnown,
    /// A transaction with this nonce is pooled at a price this one does not beat (another
    /// instance's pair, or our own earlier one).
    Underpriced,
    /// The nonce is used: something with this nonce was mined.
    NonceTooLow,
    /// The account cannot pay for it.
    InsufficientFunds,
    /// Anything else the node refused, or a transport failure.
    Failed(String),
}

impl Submitted {
    /// Whether the pool now holds a transaction with this nonce that we can rely on.
    pub fn pooled(&self) -> bool {
        matches!(self, Submitted::Accepted(_) | Submitted::AlreadyKnown)
    }
}

/// Puts a signed pair (down, then up; EIP-2718 encoded) in front of the sequencer.
#[allow(async_fn_in_trait)]
pub trait Submitter {
    /// Submits both; the second is only sent if a down transaction with its nonce is pooled
    /// (ours, or an identical-purpose one at a price ours did not beat).
    fn submit_pair(&self, down: Bytes, up: Bytes) -> impl Future<Output = [Submitted; 2]>;
}

/// Submission through `eth_sendRawTransaction`.
#[derive(Clone, Debug)]
pub struct RawTxSubmitter {
    rpc: EthRpc,
}

impl RawTxSubmitter {
    /// Submits to the node behind `rpc`.
    pub fn new(rpc: EthRpc) -> Self {
        Self { rpc }
    }

    async fn send(&self, raw: Bytes) -> Submitted {
        match self.rpc.send_raw_transaction(raw).await {
            Ok(hash) => Submitted::Accepted(hash),
            Err(e) => classify(&e),
        }
    }
}

/// Maps a node's refusal to what it means for the pair (geth, reth, Besu and anvil wordings).
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
    } else {
        Submitted::Failed(e.to_string())
    }
}

impl Submitter for RawTxSubmitter {
    async fn submit_pair(&self, down: Bytes, up: Bytes) -> [Submitted; 2] {
        let first = self.send(down).await;
        if !(first.pooled() || first == Submitted::Underpriced) {
            return [first, Submitted::Failed("not sent: the down transaction was not pooled".into())];
        }
        let second = self.send(up).await;
        [first, second]
    }
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
        assert!(Submitted::AlreadyKnown.pooled() && !Submitted::Underpriced.pooled());
    }
}
