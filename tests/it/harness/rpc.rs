//! Minimal JSON-RPC client with the anvil helpers the end-to-end tests need.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Per-request HTTP timeout of [`RpcClient::new`].
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Max calls per batched HTTP POST in [`RpcClient::canonical_chain`].
pub const BATCH_CHUNK: u64 = 500;

/// Block selector for `eth_getBlockByNumber`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockId {
    Number(u64),
    Latest,
    Safe,
    Finalized,
    Earliest,
}

impl BlockId {
    pub fn to_param(self) -> String {
        match self {
            BlockId::Number(n) => to_hex(n),
            BlockId::Latest => "latest".into(),
            BlockId::Safe => "safe".into(),
            BlockId::Finalized => "finalized".into(),
            BlockId::Earliest => "earliest".into(),
        }
    }
}

impl From<u64> for BlockId {
    fn from(n: u64) -> Self {
        BlockId::Number(n)
    }
}

/// Header fields the tests care about. Hashes are lowercase `0x`-prefixed hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Block {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
    pub timestamp: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBlock {
    number: Option<String>,
    hash: Option<String>,
    parent_hash: String,
    timestamp: String,
}

impl TryFrom<RawBlock> for Block {
    type Error = anyhow::Error;
    fn try_from(raw: RawBlock) -> Result<Block> {
        let number = raw.number.ok_or_else(|| anyhow!("block has no number (pending?)"))?;
        let hash = raw.hash.ok_or_else(|| anyhow!("block has no hash (pending?)"))?;
        Ok(Block {
            number: parse_hex_u64(&number)?,
            hash: hash.to_ascii_lowercase(),
            parent_hash: raw.parent_hash.to_ascii_lowercase(),
            timestamp: parse_hex_u64(&raw.timestamp)?,
        })
    }
}

/// Result of [`RpcClient::reorg`].
#[derive(Debug, Clone)]
pub struct Reorg {
    /// Last block shared by the old and the new chain (height `old_head - depth`).
    pub common_ancestor: Block,
    /// The replaced blocks, ascending (heights `ancestor+1 ..= old head`).
    pub old_blocks: Vec<Block>,
    /// The new blocks, ascending (heights `ancestor+1 ..= new head`); never shorter than
    /// `old_blocks`.
    pub new_blocks: Vec<Block>,
}

impl Reorg {
    pub fn old_head(&self) -> &Block {
        self.old_blocks.last().unwrap_or(&self.common_ancestor)
    }
    pub fn new_head(&self) -> &Block {
        self.new_blocks.last().unwrap_or(&self.common_ancestor)
    }
}

/// A JSON-RPC error object returned by the node (downcast `anyhow::Error` to this to check
/// the code).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub method: String,
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: JSON-RPC error {}: {}", self.method, self.code, self.message)?;
        if let Some(d) = &self.data {
            write!(f, " (data: {d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

pub fn to_hex(n: u64) -> String {
    format!("{n:#x}")
}

pub fn parse_hex_u64(s: &str) -> Result<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| anyhow!("not a 0x-prefixed hex quantity: {s:?}"))?;
    ensure!(!digits.is_empty(), "empty hex quantity: {s:?}");
    u64::from_str_radix(digits, 16).with_context(|| format!("invalid hex quantity {s:?}"))
}

/// Checks that `blocks` are consecutive by number and each `parent_hash` is the previous hash.
pub fn check_linked(blocks: &[Block]) -> Result<()> {
    for w in blocks.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        ensure!(b.number == a.number + 1, "block {} follows block {}", b.number, a.number);
        ensure!(
            b.parent_hash == a.hash,
            "block {} parent_hash {} != hash of block {} ({})",
            b.number,
            b.parent_hash,
            a.number,
            a.hash
        );
    }
    Ok(())
}

fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 300;
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX { format!("{s}...({} bytes)", bytes.len()) } else { s }
}

/// Takes the `result` out of one JSON-RPC response object, checking `id` and `error`.
fn take_result(method: &str, expected_id: u64, mut resp: Value) -> Result<Value> {
    if !resp.is_object() {
        bail!("{method}: response is not a JSON object: {}", snippet(resp.to_string().as_bytes()));
    }
    let Some(obj) = resp.as_object_mut() else { bail!("{method}: response is not a JSON object") };
    let id = obj.get("id").and_then(Value::as_u64);
    ensure!(id == Some(expected_id), "{method}: response id {:?} != request id {expected_id}", obj.get("id"));
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        return Err(RpcError {
            method: method.to_string(),
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err.get("message").and_then(Value::as_str).unwrap_or("<no message>").to_string(),
            data: err.get("data").cloned(),
        }
        .into());
    }
    obj.remove("result").ok_or_else(|| anyhow!("{method}: response has neither result nor error"))
}

/// JSON-RPC over HTTP. Every request has a timeout (default [`DEFAULT_RPC_TIMEOUT`]).
#[derive(Debug)]
pub struct RpcClient {
    url: String,
    http: reqwest::Client,
    next_id: AtomicU64,
}

impl RpcClient {
    pub fn new(url: impl Into<String>) -> Result<Self> {
        Self::with_timeout(url, DEFAULT_RPC_TIMEOUT)
    }

    pub fn with_timeout(url: impl Into<String>, timeout: Duration) -> Result<Self> {
        // Idle connections are dropped before the servers' 10 s header timeout closes them, so
        // a call after a pause never races that close.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("building reqwest client")?;
        Ok(Self { url: url.into(), http, next_id: AtomicU64::new(1) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// POSTs `body` (with `Authorization: Bearer <token>` if a token is given); the answer's
    /// HTTP status and bytes.
    async fn post_bytes(
        &self,
        what: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>)> {
        let mut request = self.http.post(&self.url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.with_context(|| format!("{what}: HTTP request to {} failed", self.url))?;
        let status = resp.status();
        let bytes = resp.bytes().await.with_context(|| format!("{what}: reading HTTP body (status {status})"))?;
        Ok((status, bytes.to_vec()))
    }

    async fn post(&self, what: &str, body: &Value, token: Option<&str>) -> Result<Value> {
        let (status, bytes) = self.post_bytes(what, body, token).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{what}: HTTP {status} body is not JSON: {}", snippet(&bytes)))
    }

    fn request(&self, method: &str, params: Value) -> (u64, Value) {
        let id = self.id();
        (id, json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    }

    /// One JSON-RPC call. A JSON-RPC error becomes an [`RpcError`] (code + message).
    pub async fn rpc<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T> {
        let (id, body) = self.request(method, params);
        let resp = self.post(method, &body, None).await?;
        let result = take_result(method, id, resp)?;
        let shown = snippet(result.to_string().as_bytes());
        serde_json::from_value(result).with_context(|| format!("{method}: cannot decode result {shown}"))
    }

    /// One JSON-RPC call whose error is an answer to look at, not a failure: `Ok(Err(error
    /// object))`; with `Authorization: Bearer <token>` if a token is given.
    pub async fn call(&self, method: &str, params: Value, token: Option<&str>) -> Result<Result<Value, Value>> {
        let (id, body) = self.request(method, params);
        let mut resp = self.post(method, &body, token).await?;
        let got = resp.get("id").and_then(Value::as_u64);
        ensure!(got == Some(id), "{method}: response id {:?} != request id {id}: {resp}", resp.get("id"));
        if let Some(error) = resp.get_mut("error").filter(|e| !e.is_null()) {
            return Ok(Err(error.take()));
        }
        resp.get_mut("result").map(|r| Ok(r.take())).ok_or_else(|| anyhow!("{method}: neither result nor error"))
    }

    /// One JSON-RPC call; the answer's bytes as the node sent them (for a benchmark that times
    /// serving and parsing apart). A non-2xx status is an error.
    pub async fn rpc_raw(&self, method: &str, params: Value) -> Result<Vec<u8>> {
        let (_, body) = self.request(method, params);
        let (status, bytes) = self.post_bytes(method, &body, None).await?;
        ensure!(status.is_success(), "{method}: HTTP {status}: {}", snippet(&bytes));
        Ok(bytes)
    }

    /// One HTTP POST carrying all `calls` as a JSON-RPC batch. Returns the per-call results in
    /// the order of `calls` (matched by id; missing/duplicate/unknown ids are an error).
    pub async fn rpc_batch(&self, calls: &[(&str, Value)]) -> Result<Vec<Result<Value>>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.next_id.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": first + i as u64, "method": m, "params": p}))
            .collect();
        let what = format!("batch of {} calls", calls.len());
        let resp = self.post(&what, &Value::Array(body), None).await?;
        let Value::Array(items) = resp else {
            bail!("{what}: response is not an array: {}", snippet(resp.to_string().as_bytes()));
        };
        ensure!(items.len() == calls.len(), "{what}: got {} responses", items.len());
        let mut by_id: HashMap<u64, Value> = HashMap::with_capacity(items.len());
        for item in items {
            let id = item.get("id").and_then(Value::as_u64).ok_or_else(|| {
                anyhow!("{what}: response without numeric id: {}", snippet(item.to_string().as_bytes()))
            })?;
            ensure!((first..first + calls.len() as u64).contains(&id), "{what}: unexpected response id {id}");
            ensure!(by_id.insert(id, item).is_none(), "{what}: duplicate response id {id}");
        }
        let mut out = Vec::with_capacity(calls.len());
        for (i, (m, _)) in calls.iter().enumerate() {
            let id = first + i as u64;
            let item = by_id.remove(&id).ok_or_else(|| anyhow!("{what}: no response for id {id}"))?;
            out.push(take_result(m, id, item));
        }
        Ok(out)
    }

    pub async fn chain_id(&self) -> Result<u64> {
        parse_hex_u64(&self.rpc::<String>("eth_chainId", json!([])).await?)
    }

    pub async fn block_number(&self) -> Result<u64> {
        parse_hex_u64(&self.rpc::<String>("eth_blockNumber", json!([])).await?)
    }

    /// `eth_getBlockByNumber(id, false)`; `None` if the node has no such block.
    pub async fn block(&self, id: BlockId) -> Result<Option<Block>> {
        let raw: Option<RawBlock> = self.rpc("eth_getBlockByNumber", json!([id.to_param(), false])).await?;
        raw.map(Block::try_from).transpose()
    }

    /// Like [`Self::block`] but a missing block is an error.
    pub async fn block_required(&self, id: BlockId) -> Result<Block> {
        self.block(id).await?.ok_or_else(|| anyhow!("block {id:?} not found"))
    }

    pub async fn block_by_hash(&self, hash: &str) -> Result<Option<Block>> {
        let raw: Option<RawBlock> = self.rpc("eth_getBlockByHash", json!([hash, false])).await?;
        raw.map(Block::try_from).transpose()
    }

    /// Blocks `from..=to` in order, fetched with batched `eth_getBlockByNumber` (one HTTP POST
    /// per [`BATCH_CHUNK`] blocks). A missing block is an error. Not atomic across chunks: use
    /// [`check_linked`] if the chain may change concurrently.
    pub async fn canonical_chain(&self, from: u64, to: u64) -> Result<Vec<Block>> {
        ensure!(from <= to, "canonical_chain: from {from} > to {to}");
        let mut out = Vec::with_capacity((to - from).saturating_add(1).min(1 << 20) as usize);
        let mut start = from;
        loop {
            let end = to.min(start.saturating_add(BATCH_CHUNK - 1));
            let calls: Vec<(&str, Value)> =
                (start..=end).map(|n| ("eth_getBlockByNumber", json!([to_hex(n), false]))).collect();
            for (n, res) in (start..=end).zip(self.rpc_batch(&calls).await?) {
                let raw: Option<RawBlock> =
                    serde_json::from_value(res?).with_context(|| format!("decoding block {n}"))?;
                let block = Block::try_from(raw.ok_or_else(|| anyhow!("block {n} not found"))?)?;
                ensure!(block.number == n, "asked for block {n}, got {}", block.number);
                out.push(block);
            }
            if end == to {
                return Ok(out);
            }
            start = end + 1;
        }
    }

    /// Mines `blocks` blocks at once (`anvil_mine`); fast even for thousands of blocks.
    pub async fn mine(&self, blocks: u64) -> Result<()> {
        if blocks == 0 {
            return Ok(());
        }
        self.rpc::<Value>("anvil_mine", json!([to_hex(blocks)])).await.map(drop)
    }

    /// Mines `blocks` blocks whose timestamps are `interval_secs` apart (`anvil_mine(n, interval)`).
    pub async fn mine_with_interval(&self, blocks: u64, interval_secs: u64) -> Result<()> {
        if blocks == 0 {
            return Ok(());
        }
        self.rpc::<Value>("anvil_mine", json!([to_hex(blocks), to_hex(interval_secs)])).await.map(drop)
    }

    /// Mines one block with the given timestamp (`evm_mine(ts)`); later blocks continue from it.
    pub async fn mine_with_timestamp(&self, ts: u64) -> Result<()> {
        self.rpc::<Value>("evm_mine", json!([ts])).await.map(drop)
    }

    pub async fn set_automine(&self, on: bool) -> Result<()> {
        self.rpc::<Value>("evm_setAutomine", json!([on])).await.map(drop)
    }

    pub async fn set_next_block_timestamp(&self, ts: u64) -> Result<()> {
        self.rpc::<Value>("evm_setNextBlockTimestamp", json!([ts])).await.map(drop)
    }

    /// `evm_snapshot`; returns the snapshot id (e.g. `"0x0"`).
    pub async fn snapshot(&self) -> Result<String> {
        self.rpc("evm_snapshot", json!([])).await
    }

    /// `evm_revert`; an error if anvil answers `false` (unknown or already used id).
    pub async fn revert(&self, id: &str) -> Result<()> {
        let ok: bool = self.rpc("evm_revert", json!([id])).await?;
        ensure!(ok, "evm_revert({id}) returned false (unknown or already consumed snapshot)");
        Ok(())
    }

    /// `anvil_rollback(depth)`: drops the last `depth` blocks (no new blocks are mined).
    pub async fn rollback(&self, depth: u64) -> Result<()> {
        self.rpc::<Value>("anvil_rollback", json!([depth])).await.map(drop)
    }

    /// `anvil_dumpState`: the whole chain (blocks included) as hex gzip; see [`Self::load_state`].
    pub async fn dump_state(&self) -> Result<String> {
        self.rpc("anvil_dumpState", json!([])).await
    }

    /// `anvil_loadState`: restores a [`Self::dump_state`] blob (same block numbers and hashes).
    pub async fn load_state(&self, state: &str) -> Result<()> {
        let ok: bool = self.rpc("anvil_loadState", json!([state])).await?;
        ensure!(ok, "anvil_loadState returned false");
        Ok(())
    }

    /// Produces a real reorg: the last `depth` blocks are replaced by `max(new_blocks, depth)`
    /// new blocks, so the new head is never lower than the old one.
    ///
    /// Method: `anvil_rollback(depth)`, then `evm_mine(ts)` with
    /// `ts = max(old first replaced block's timestamp, ancestor's timestamp) + 1` — a different
    /// header, hence a different hash, at the first replaced height; every later new block
    /// differs through its parent hash — then `anvil_mine(n - 1, interval = 1s)`, so new
    /// timestamps strictly increase. Pending transactions (if any) land in the new blocks.
    /// (`anvil_reorg(depth, [])` is not used: its blocks are deterministic — repeating it gives
    /// back the same hashes, i.e. no reorg — and all carry the ancestor's timestamp.)
    ///
    /// After mining it re-reads the chain and checks: ancestor unchanged, every height
    /// `ancestor+1 ..= old head` has a new hash, parent links intact, new head >= old head.
    /// Don't combine with `--block-time` interval mining (it races with the rollback).
    pub async fn reorg(&self, depth: u64, new_blocks: u64) -> Result<Reorg> {
        ensure!(depth >= 1, "reorg depth must be >= 1");
        let head = self.block_number().await?;
        ensure!(depth <= head, "reorg depth {depth} exceeds chain height {head} (genesis can't be replaced)");
        let fork = head - depth;
        let mut old = self.canonical_chain(fork, head).await?;
        check_linked(&old)?;
        let common_ancestor = old.remove(0);
        let count = new_blocks.max(depth);

        self.rollback(depth).await.context("anvil_rollback")?;
        let after = self.block_required(BlockId::Latest).await?;
        ensure!(
            after.number == fork && after.hash == common_ancestor.hash,
            "after anvil_rollback({depth}) head is {}/{}, expected {fork}/{}",
            after.number,
            after.hash,
            common_ancestor.hash
        );

        let ts = old[0].timestamp.max(common_ancestor.timestamp).saturating_add(1);
        self.mine_with_timestamp(ts).await.context("mining first replacement block")?;
        self.mine_with_interval(count - 1, 1).await.context("mining replacement blocks")?;

        let mut chain = self.canonical_chain(fork, fork + count).await?;
        check_linked(&chain).context("new chain after reorg")?;
        ensure!(chain[0].hash == common_ancestor.hash, "common ancestor changed during reorg");
        let new_blocks = chain.split_off(1);
        for (o, n) in old.iter().zip(&new_blocks) {
            ensure!(o.hash != n.hash, "reorg left block {} unchanged ({})", o.number, o.hash);
        }
        Ok(Reorg { common_ancestor, old_blocks: old, new_blocks })
    }
}
