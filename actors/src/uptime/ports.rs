//! What the [`Injector`](super::injector::Injector) needs from the world, as three small traits,
//! and the production implementations: thin adapters over today's concrete types.
//!
//! | trait | what it is | production |
//! |---|---|---|
//! | [`Node`] | the chain's sequencer endpoints: reads of the chain, their pools, submissions | [`Sequencers`] |
//! | [`ReportSigner`] | signs one EIP-1559 transaction | `Recipient<SignTransaction>` (the `SignerActor`) |
//! | [`Journal`] | the outage journal | `Addr<ChainsDbActor>` |
//!
//! The injector runs on one actix arbiter, one operation at a time: its futures need not be
//! `Send`, so the traits use plain `async fn`. Tests implement them with hand-written doubles
//! (`uptime/tests/doubles.rs`) and drive the injector's decisions without a node.

use actix::{Addr, Recipient};
use alloy::{
    consensus::{Signed, TxEip1559},
    primitives::{Address, B256, Bytes, U256},
};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord};

use super::{
    injector::InjectError,
    messages::SignTransaction,
    pool::PoolView,
    signer_actor::SignError,
    submit::{PoolError, Sequencers, Submitted},
};
use crate::{
    chains_db::{
        ChainsDbActor,
        messages::{GetLastOutage, PutOutage},
    },
    rpc::{BlockTag, RpcError, RpcReceipt, RpcTx},
};

/// The chain's sequencer endpoints (the chain's own node first, then every `submit_urls`
/// endpoint). Reads of the chain go to whichever endpoint answers; pools, lookups by hash and
/// submissions go to each endpoint, by its index in [`Node::labels`]. Cloned into the task that
/// reads the pools.
#[allow(async_fn_in_trait, reason = "the injector's futures run on one arbiter: they need not be Send")]
pub trait Node: Clone + 'static {
    /// The endpoints' metric labels, in order (`rpc`, `submit_<i>`: never a URL).
    fn labels(&self) -> impl Iterator<Item = &str>;

    /// How many endpoints there are.
    fn endpoints(&self) -> usize;

    /// The chain id the node serves.
    async fn chain_id(&self) -> Result<u64, RpcError>;

    /// The newest block.
    async fn head(&self) -> Result<Option<BlockRef>, RpcError>;

    /// Block `number`.
    async fn block(&self, number: u64) -> Result<Option<BlockRef>, RpcError>;

    /// The transactions of block `number`, in block order.
    async fn block_transactions(&self, number: u64) -> Result<Option<Vec<RpcTx>>, RpcError>;

    /// The receipt of `hash`; `None` while it is not mined (or the node does not have it yet).
    async fn receipt(&self, hash: B256) -> Result<Option<RpcReceipt>, RpcError>;

    /// The newest block's base fee (`None` before London).
    async fn base_fee(&self) -> Result<Option<u128>, RpcError>;

    /// `who`'s balance at the newest block.
    async fn balance(&self, who: Address) -> Result<U256, RpcError>;

    /// `who`'s mined transaction count at the newest block.
    async fn nonce(&self, who: Address) -> Result<u64, RpcError>;

    /// `who`'s mined transaction count after block `number`.
    async fn nonce_at(&self, who: Address, number: u64) -> Result<u64, RpcError>;

    /// `eth_call` of `data` to `to` at the newest block.
    async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, RpcError>;

    /// Every endpoint's pool, as far as the report is concerned; `Err` says why not.
    async fn pools(&self, ours: Address) -> Vec<Result<PoolView, PoolError>>;

    /// Whether each endpoint knows `hash` (pooled or mined); `None` where it did not answer.
    async fn knows(&self, hash: B256) -> Vec<Option<bool>>;

    /// Submits `raw` to the endpoints at `which` (indices); one answer each, in that order.
    async fn submit(&self, raw: &Bytes, which: &[usize]) -> Vec<Submitted>;
}

/// Signs one transaction of the report (or of its take-back).
#[allow(async_fn_in_trait, reason = "the injector's futures run on one arbiter: they need not be Send")]
pub trait ReportSigner {
    /// `tx`, signed by the configured signer account.
    async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, SignError>;
}

/// The outage journal: the newest record of a chain, and writes of records.
#[allow(async_fn_in_trait, reason = "the injector's futures run on one arbiter: they need not be Send")]
pub trait Journal {
    /// The newest outage record of `chain`.
    async fn last_outage(&self, chain: ChainId) -> Result<Option<OutageRecord>, InjectError>;

    /// Writes `record` (durably, before this returns).
    async fn put_outage(&self, record: &OutageRecord) -> Result<(), InjectError>;
}

impl Node for Sequencers {
    fn labels(&self) -> impl Iterator<Item = &str> {
        Sequencers::labels(self)
    }

    fn endpoints(&self) -> usize {
        self.len()
    }

    async fn chain_id(&self) -> Result<u64, RpcError> {
        self.read(|r| async move { r.chain_id().await }).await
    }

    async fn head(&self) -> Result<Option<BlockRef>, RpcError> {
        self.read(|r| async move { r.block_by_tag(BlockTag::Latest).await }).await
    }

    async fn block(&self, number: u64) -> Result<Option<BlockRef>, RpcError> {
        self.read(|r| async move { r.block_by_number(number).await }).await
    }

    async fn block_transactions(&self, number: u64) -> Result<Option<Vec<RpcTx>>, RpcError> {
        self.read(|r| async move { r.block_transactions(number).await }).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<RpcReceipt>, RpcError> {
        self.read(|r| async move { r.receipt(hash).await }).await
    }

    async fn base_fee(&self) -> Result<Option<u128>, RpcError> {
        self.read(|r| async move { r.latest_base_fee().await }).await
    }

    async fn balance(&self, who: Address) -> Result<U256, RpcError> {
        self.read(|r| async move { r.balance(who).await }).await
    }

    async fn nonce(&self, who: Address) -> Result<u64, RpcError> {
        self.read(|r| async move { r.latest_nonce(who).await }).await
    }

    async fn nonce_at(&self, who: Address, number: u64) -> Result<u64, RpcError> {
        self.read(|r| async move { r.nonce_at(who, number).await }).await
    }

    async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, RpcError> {
        self.read(|r| {
            let data = data.clone();
            async move { r.call(to, data).await }
        })
        .await
    }

    async fn pools(&self, ours: Address) -> Vec<Result<PoolView, PoolError>> {
        Sequencers::pools(self, ours).await
    }

    async fn knows(&self, hash: B256) -> Vec<Option<bool>> {
        Sequencers::knows(self, hash).await
    }

    async fn submit(&self, raw: &Bytes, which: &[usize]) -> Vec<Submitted> {
        Sequencers::submit(self, raw, which).await
    }
}

/// The chain's `SignerActor` (one signing at a time, its timeout and circuit breaker).
impl ReportSigner for Recipient<SignTransaction> {
    async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, SignError> {
        self.send(SignTransaction(tx)).await.map_err(|_| SignError::Gone)?
    }
}

/// The `ChainsDbActor` (sled tree `outages`, flushed before it answers).
impl Journal for Addr<ChainsDbActor> {
    async fn last_outage(&self, chain: ChainId) -> Result<Option<OutageRecord>, InjectError> {
        self.send(GetLastOutage(chain))
            .await
            .map_err(|e| InjectError::Journal(e.to_string()))?
            .map_err(|e| InjectError::Journal(e.to_string()))
    }

    async fn put_outage(&self, record: &OutageRecord) -> Result<(), InjectError> {
        self.send(PutOutage(record.clone()))
            .await
            .map_err(|e| InjectError::Journal(e.to_string()))?
            .map_err(|e| InjectError::Journal(e.to_string()))
    }
}
