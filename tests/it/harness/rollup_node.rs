//! [`RollupNode`]: a stand-in for a rollup node (op-node, kona-node), which cannot be installed
//! here. It serves `optimism_syncStatus` and `optimism_safeHeadAtL1Block` exactly as op-node
//! shapes them (snake_case status fields; L1 refs `{hash, number, parentHash, timestamp}` with
//! plain JSON numbers; L2 refs adding `l1origin` and `sequenceNumber`; `current_l1` the L1 block
//! derivation idles at, everything safe derived from L1 *before* it), computed from real anvil
//! L1 and L2 nodes.
//!
//! Its derivation: `current_l1` trails the L1 head by `lag` blocks; each L1 block below it makes
//! up to `per_l1` more L2 blocks safe (while the L2 node has them). It records which L1 block
//! made each L2 block safe ([`RollupNode::declared`]), so that a test can assert the exact
//! sources, which differ from "the L1 head when the block was seen" by at least `lag` blocks.
//! It advances when asked, so two polls can be several L1 blocks apart.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use jsonrpsee::{
    RpcModule,
    server::{Server, ServerHandle},
    types::ErrorObjectOwned,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Block, BlockId, RpcClient, parse_hex_u64};

/// How the stand-in derives.
#[derive(Clone, Copy, Debug)]
pub struct Derivation {
    /// `current_l1` is the L1 head minus this.
    pub lag: u64,
    /// L2 blocks each L1 block makes safe, at most.
    pub per_l1: u64,
    /// Whether `optimism_safeHeadAtL1Block` is served (op-node with its safe-head database).
    pub safe_head_db: bool,
}

#[derive(Default)]
struct State {
    /// The newest L1 block fully derived, and the safe L2 block.
    fully: Option<u64>,
    safe: u64,
    /// L2 number → the L1 number that made it safe.
    declared: BTreeMap<u64, u64>,
    /// L1 number → (the L1 block that made the safe head safe, the safe head) as of it.
    safe_as_of: BTreeMap<u64, (u64, u64)>,
    /// Every `current_l1 - 1` a status answer reported.
    reported: BTreeSet<u64>,
}

struct Shared {
    l1: RpcClient,
    l2: RpcClient,
    how: Derivation,
    state: Mutex<State>,
}

/// See the module documentation.
pub struct RollupNode {
    url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl RollupNode {
    /// Serves on `127.0.0.1:0`, deriving from the nodes at `l1_url` and `l2_url`. It starts at
    /// the current heads: the L2 head so far counts as safe as of the first L1 block it reports.
    pub async fn start(l1_url: &str, l2_url: &str, how: Derivation) -> Result<RollupNode> {
        let shared = Arc::new(Shared {
            l1: RpcClient::new(l1_url)?,
            l2: RpcClient::new(l2_url)?,
            how,
            state: Mutex::new(State::default()),
        });
        let mut module = RpcModule::from_arc(shared.clone());
        module.register_async_method("optimism_syncStatus", |_p, shared, _| async move {
            shared.sync_status().await.map_err(internal)
        })?;
        module.register_async_method("optimism_safeHeadAtL1Block", |p, shared, _| async move {
            let (n,): (String,) = p.parse()?;
            let n = parse_hex_u64(&n).map_err(|e| ErrorObjectOwned::owned(-32602, e.to_string(), None::<()>))?;
            shared.safe_head_at(n).await
        })?;
        let server = Server::builder().build("127.0.0.1:0").await?;
        let url = format!("http://{}", server.local_addr()?);
        Ok(RollupNode { url, shared, handle: server.start(module) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// L2 number → the L1 number that made it safe, as declared so far.
    pub async fn declared(&self) -> BTreeMap<u64, u64> {
        self.shared.state.lock().await.declared.clone()
    }

    /// L1 number → the safe L2 number as of it.
    pub async fn safe_as_of(&self) -> BTreeMap<u64, u64> {
        self.shared.state.lock().await.safe_as_of.iter().map(|(n, (_, safe))| (*n, *safe)).collect()
    }

    /// The newest L1 block fully derived, as every status answer so far reported it.
    pub async fn reported(&self) -> BTreeSet<u64> {
        self.shared.state.lock().await.reported.clone()
    }

    /// Forgets its derivation, as a rollup node re-synced with its L2 node does: the next answer
    /// starts again from the L2 node's head.
    pub async fn reset(&self) {
        *self.shared.state.lock().await = State::default();
    }

    /// The safe L2 block now.
    pub async fn safe(&self) -> u64 {
        self.shared.state.lock().await.safe
    }
}

impl Drop for RollupNode {
    fn drop(&mut self) {
        let _ = self.handle.stop();
    }
}

fn internal(e: anyhow::Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32000, format!("{e:#}"), None::<()>)
}

fn l1_ref(b: &Block) -> Value {
    json!({ "hash": b.hash, "number": b.number, "parentHash": b.parent_hash, "timestamp": b.timestamp })
}

impl Shared {
    /// Derives up to `current_l1 - 1` for the L1 head now; the current L1 block's number.
    async fn advance(&self, state: &mut State) -> Result<u64> {
        let head = self.l1.block_number().await?;
        let current = head.saturating_sub(self.how.lag).max(1);
        let fully = current - 1;
        let l2_head = self.l2.block_number().await?;
        match state.fully {
            None => {
                state.safe = l2_head;
                state.safe_as_of.insert(fully, (fully, l2_head));
                for k in 0..=l2_head {
                    state.declared.insert(k, fully);
                }
            }
            Some(done) => {
                for n in done + 1..=fully {
                    let safe = (state.safe + self.how.per_l1).min(l2_head);
                    for k in state.safe + 1..=safe {
                        state.declared.insert(k, n);
                    }
                    let made_safe = if safe > state.safe { n } else { state.safe_as_of[&(n - 1)].0 };
                    state.safe = safe;
                    state.safe_as_of.insert(n, (made_safe, safe));
                }
            }
        }
        state.fully = Some(state.fully.map_or(fully, |d| d.max(fully)));
        Ok(state.fully.map_or(current, |f| f + 1))
    }

    async fn sync_status(&self) -> Result<Value> {
        let mut state = self.state.lock().await;
        let current = self.advance(&mut state).await?;
        state.reported.insert(current - 1);
        let l1 = |n: u64| async move { self.l1.block_required(BlockId::Number(n)).await };
        let (current_l1, head_l1) = (l1(current).await?, self.l1.block_required(BlockId::Latest).await?);
        let l2_ref = |b: Block, source: u64| -> Result<Value> {
            let mut r = l1_ref(&b);
            r["l1origin"] = json!({ "hash": format!("0x{:064x}", source), "number": source });
            r["sequenceNumber"] = json!(0);
            Ok(r)
        };
        let safe = self.l2.block_required(BlockId::Number(state.safe)).await?;
        let unsafe_head = self.l2.block_required(BlockId::Latest).await?;
        let genesis = self.l2.block_required(BlockId::Number(0)).await?;
        let source = *state.declared.get(&state.safe).context("safe block has no source")?;
        Ok(json!({
            "current_l1": l1_ref(&current_l1),
            "current_l1_finalized": l1_ref(&current_l1),
            "head_l1": l1_ref(&head_l1),
            "safe_l1": l1_ref(&head_l1),
            "finalized_l1": l1_ref(&head_l1),
            "unsafe_l2": l2_ref(unsafe_head, source)?,
            "safe_l2": l2_ref(safe.clone(), source)?,
            "finalized_l2": l2_ref(genesis, 0)?,
            "pending_safe_l2": l2_ref(safe.clone(), source)?,
            "cross_unsafe_l2": l2_ref(safe.clone(), source)?,
            "local_safe_l2": l2_ref(safe, source)?,
        }))
    }

    async fn safe_head_at(&self, n: u64) -> Result<Value, ErrorObjectOwned> {
        if !self.how.safe_head_db {
            return Err(ErrorObjectOwned::owned(-32000, "safe head database not enabled", None::<()>));
        }
        let mut state = self.state.lock().await;
        self.advance(&mut state).await.map_err(internal)?;
        let Some((_, (made_safe, safe))) = state.safe_as_of.range(..=n).next_back() else {
            return Err(ErrorObjectOwned::owned(-32000, "not found", None::<()>));
        };
        let (made_safe, safe) = (*made_safe, *safe);
        drop(state);
        let l1 = self.l1.block_required(BlockId::Number(made_safe)).await.map_err(internal)?;
        let l2 = self.l2.block_required(BlockId::Number(safe)).await.map_err(internal)?;
        Ok(
            json!({ "l1Block": { "hash": l1.hash, "number": l1.number }, "safeHead": { "hash": l2.hash, "number": l2.number } }),
        )
    }
}
