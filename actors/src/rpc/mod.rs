//! [`EthRpc`]: the few Ethereum JSON-RPC calls the watchers need, over alloy's RPC client on
//! our own HTTP transport ([`BoundedHttp`]), with a request timeout, a bound on the size of every
//! answer and strict validation of what the node answers.

mod rollup;
mod transport;
mod types;
pub mod ws;

use std::{
    future::IntoFuture as _,
    ops::RangeInclusive,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Bytes, U64, U128, U256},
    rpc::client::RpcClient,
    transports::{TransportError, TransportErrorKind, http::reqwest},
};
pub use rollup::{BlockId, NodeRef, SafeHeadAt, SafeHeadError, SyncStatus};
use rollup_supervisor_signer::redact;
use rollup_supervisor_storage::BlockRef;
use serde::Deserialize;
pub use transport::{BodyError, BoundedHttp, read_bounded};
use types::RpcHeader;
pub use types::{BlockTag, RpcError, RpcLog, RpcReceipt, RpcTx};

use crate::metrics::{self, Metrics};

/// A JSON-RPC client for one node. `Debug` and every error show its URL as [`EthRpc::endpoint`].
#[derive(Clone)]
pub struct EthRpc {
    client: RpcClient,
    /// The same node for the few requests whose answer size we bound ourselves.
    http: reqwest::Client,
    url: reqwest::Url,
    /// The URL as scheme, host and port.
    endpoint: String,
    /// What of the URL no error may show.
    secrets: redact::UrlSecrets,
    /// Where requests are counted and timed, under the `endpoint` label (`l1`, `l2_<chain>`).
    metrics: Option<(Metrics, String)>,
    /// The largest answer `client` reads, in bytes.
    max_response_bytes: usize,
}

impl std::fmt::Debug for EthRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthRpc")
            .field("endpoint", &self.endpoint)
            .field("metrics", &self.metrics.as_ref().map(|(_, label)| label))
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl EthRpc {
    /// The largest answer a client reads unless told otherwise ([`EthRpc::with_max_response_bytes`]).
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;

    /// A client for `url` (http or https) whose every request gives up after `timeout` and whose
    /// every answer is refused beyond [`EthRpc::DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let parsed =
            redact::parse_http_url(url).map_err(|e| format!("invalid URL {}: {e}", redact::redact_url_str(url)))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let limit = Self::DEFAULT_MAX_RESPONSE_BYTES;
        let client = RpcClient::new(BoundedHttp::new(http.clone(), parsed.clone(), limit), false);
        let (endpoint, secrets) = (redact::redact_url(&parsed), redact::UrlSecrets::of(&parsed));
        Ok(Self { client, http, url: parsed, endpoint, secrets, metrics: None, max_response_bytes: limit })
    }

    /// Refuses every answer larger than `limit` bytes (the whole HTTP body: one answer, or a
    /// batch's answers together) with an error saying so, reading no more of it than that.
    /// [`EthRpc::bounded_request`] takes its own limit.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.client = RpcClient::new(BoundedHttp::new(self.http.clone(), self.url.clone(), limit), false);
        self.max_response_bytes = limit;
        self
    }

    /// The largest answer this client reads, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Counts and times every request in `metrics` under `endpoint="{label}"` (a role name, never
    /// the URL, which may carry an API key).
    pub fn with_metrics(mut self, metrics: Metrics, label: impl Into<String>) -> Self {
        self.metrics = Some((metrics, label.into()));
        self
    }

    /// Runs one request (`method`, or `batch`), counting it, its failure and its duration.
    async fn timed<T>(
        &self,
        method: &str,
        fut: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, RpcError> {
        let started = Instant::now();
        let result = fut.await;
        self.record(method, result.is_ok(), started);
        result.map_err(|e| self.transport(e))
    }

    /// Counts one request (`method`), its failure and its duration since `started`.
    fn record(&self, method: &str, ok: bool, started: Instant) {
        if let Some((m, endpoint)) = &self.metrics {
            let labels = [("endpoint", endpoint.as_str()), ("method", method)];
            m.inc(&metrics::NODE_REQUESTS, &labels);
            // Created at 0 with the first request, so that `increase()` sees the first error.
            m.add(&metrics::NODE_ERRORS, &labels, if ok { 0.0 } else { 1.0 });
            m.observe_duration(&metrics::NODE_LATENCY, &[("endpoint", endpoint.as_str())], started.elapsed());
        }
    }

    async fn request<P, R>(&self, method: &'static str, params: P) -> Result<R, RpcError>
    where
        P: alloy::rpc::json_rpc::RpcSend + 'static,
        R: alloy::rpc::json_rpc::RpcRecv,
    {
        self.timed(method, self.client.request(method, params).into_future()).await
    }

    /// The node's address: scheme, host and port only (see [`redact`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn transport(&self, source: TransportError) -> RpcError {
        RpcError::Transport { endpoint: self.endpoint.clone(), source: self.without_url(source) }
    }

    fn unreachable(&self, method: &str, e: reqwest::Error) -> RpcError {
        let reason = format!("{method}: {}", self.scrub(&redact::reqwest_error(e)));
        RpcError::Unreachable { endpoint: self.endpoint.clone(), reason }
    }

    /// `e` with the node's URL redacted wherever it is text: reqwest's errors (which alloy's
    /// transport passes on as custom errors) name the full request URL, so they become their
    /// message without it, causes included ("error sending request: client error (Connect):
    /// tcp connect error: Connection refused"). HTTP error pages and answers that do not parse
    /// are scrubbed too (a proxy's "Cannot POST /v3/KEY"); JSON-RPC error objects are kept as
    /// the node sent them (callers match on their text).
    fn without_url(&self, e: TransportError) -> TransportError {
        use alloy::rpc::json_rpc::RpcError as Json;
        match e {
            Json::Transport(TransportErrorKind::Custom(inner)) => {
                let text = match inner.downcast::<reqwest::Error>() {
                    Ok(e) => redact::reqwest_error(*e),
                    Err(other) => redact::error_chain(&*other),
                };
                TransportErrorKind::custom_str(&self.scrub(&text))
            }
            Json::Transport(TransportErrorKind::HttpError(http)) => {
                TransportErrorKind::http_error(http.status, self.scrub(&http.body))
            }
            Json::DeserError { err, text } => Json::DeserError { err, text: self.scrub(&text) },
            other => other,
        }
    }

    /// `text` with this node's URL (and the secret parts of it), and any other URL, redacted.
    fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    fn bad(&self, reason: impl Into<String>) -> RpcError {
        RpcError::BadAnswer { endpoint: self.endpoint.clone(), reason: reason.into() }
    }

    /// One JSON-RPC request whose whole answer (the JSON-RPC envelope, unparsed) is read only up
    /// to `limit` bytes: a larger answer is refused, not buffered.
    pub async fn bounded_request(
        &self,
        method: &'static str,
        params: serde_json::Value,
        limit: usize,
    ) -> Result<Vec<u8>, RpcError> {
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let started = Instant::now();
        let result = async {
            let response =
                self.http.post(self.url.clone()).json(&body).send().await.map_err(|e| self.unreachable(method, e))?;
            read_bounded(response, limit).await.map_err(|e| match e {
                BodyError::Http(e) => self.unreachable(method, e),
                too_large => self.bad(format!("{method}: {too_large}")),
            })
        }
        .await;
        self.record(method, result.is_ok(), started);
        result
    }

    /// `eth_getTransactionByHash`: whether the node knows the transaction (pooled or mined).
    pub async fn knows_transaction(&self, hash: B256) -> Result<bool, RpcError> {
        let tx: Option<serde_json::Value> = self.request("eth_getTransactionByHash", (hash,)).await?;
        Ok(tx.is_some())
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let id: U64 = self.timed("eth_chainId", self.client.request_noparams("eth_chainId").into_future()).await?;
        Ok(id.to())
    }

    /// The block the node calls `tag`; `None` if it has none (no safe block yet, for example).
    pub async fn block_by_tag(&self, tag: BlockTag) -> Result<Option<BlockRef>, RpcError> {
        let header: Option<RpcHeader> = self.request("eth_getBlockByNumber", (tag.as_str(), false)).await?;
        header
            .map(|h| h.into_ref().ok_or_else(|| self.bad(format!("the {tag} block has no hash or number"))))
            .transpose()
    }

    /// The block at `number`; `None` if the node does not have it.
    pub async fn block_by_number(&self, number: u64) -> Result<Option<BlockRef>, RpcError> {
        let header: Option<RpcHeader> = self.request("eth_getBlockByNumber", (U64::from(number), false)).await?;
        header.map(|h| self.checked(h, number)).transpose()
    }

    /// The blocks in `range`, in one batched HTTP request. Stops at the first block the node does
    /// not have, so the result is a prefix of the range.
    pub async fn blocks(&self, range: RangeInclusive<u64>) -> Result<Vec<BlockRef>, RpcError> {
        let mut batch = self.client.new_batch();
        let mut waiters = Vec::new();
        for number in range.clone() {
            let waiter = batch
                .add_call::<_, Option<RpcHeader>>("eth_getBlockByNumber", &(U64::from(number), false))
                .map_err(|e| self.transport(e))?;
            waiters.push((number, waiter));
        }
        self.timed("batch", batch.send()).await?;
        let mut out = Vec::with_capacity(waiters.len());
        for (number, waiter) in waiters {
            match waiter.await.map_err(|e| self.transport(e))? {
                Some(h) => out.push(self.checked(h, number)?),
                None => break,
            }
        }
        Ok(out)
    }

    /// `eth_call` against the latest block.
    pub async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, RpcError> {
        let req = serde_json::json!({ "to": to, "data": data });
        self.request("eth_call", (req, "latest")).await
    }

    /// `eth_getBalance` at the latest block.
    pub async fn balance(&self, who: Address) -> Result<U256, RpcError> {
        self.request("eth_getBalance", (who, "latest")).await
    }

    /// `eth_getTransactionCount` at the latest block: the nonce of the account's next
    /// transaction to be mined.
    pub async fn latest_nonce(&self, who: Address) -> Result<u64, RpcError> {
        let n: U64 = self.request("eth_getTransactionCount", (who, "latest")).await?;
        Ok(n.to())
    }

    /// `eth_getTransactionCount` at block `number`: how many transactions of `who` were mined up
    /// to and including it.
    pub async fn nonce_at(&self, who: Address, number: u64) -> Result<u64, RpcError> {
        let n: U64 = self.request("eth_getTransactionCount", (who, U64::from(number))).await?;
        Ok(n.to())
    }

    /// `eth_sendRawTransaction`; the node's refusal is a [`RpcError::Transport`] whose message
    /// says why ("nonce too low", "replacement transaction underpriced", ...).
    pub async fn send_raw_transaction(&self, raw: Bytes) -> Result<B256, RpcError> {
        self.request("eth_sendRawTransaction", (raw,)).await
    }

    /// The latest block's base fee, if the chain has one.
    pub async fn latest_base_fee(&self) -> Result<Option<u128>, RpcError> {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Fee {
            base_fee_per_gas: Option<U128>,
        }
        let block: Option<Fee> = self.request("eth_getBlockByNumber", ("latest", false)).await?;
        Ok(block.and_then(|b| b.base_fee_per_gas).map(|f| f.to()))
    }

    /// The transactions of block `number` (hash, sender, nonce, input), in block order.
    pub async fn block_transactions(&self, number: u64) -> Result<Option<Vec<RpcTx>>, RpcError> {
        #[derive(Debug, Deserialize)]
        struct Txs {
            transactions: Vec<RpcTx>,
        }
        let block: Option<Txs> = self.request("eth_getBlockByNumber", (U64::from(number), true)).await?;
        Ok(block.map(|b| b.transactions))
    }

    /// `eth_getTransactionReceipt`.
    pub async fn receipt(&self, hash: B256) -> Result<Option<RpcReceipt>, RpcError> {
        self.request("eth_getTransactionReceipt", (hash,)).await
    }

    fn checked(&self, header: RpcHeader, number: u64) -> Result<BlockRef, RpcError> {
        let block = header.into_ref().ok_or_else(|| self.bad(format!("block {number} has no hash or number")))?;
        if block.number != number {
            return Err(self.bad(format!("asked for block {number}, got block {}", block.number)));
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls_and_redacts_credentials() {
        assert!(EthRpc::new("ws://127.0.0.1:1", Duration::from_secs(1)).is_err());
        assert!(EthRpc::new("not a url", Duration::from_secs(1)).is_err());
        let rpc = EthRpc::new("https://user:secret@example.com/key", Duration::from_secs(1));
        assert!(rpc.is_ok_and(|r| !r.endpoint().contains("secret")));
    }

    /// An API key in the user info, the path and the query, as hosted nodes take it.
    fn secret_url(port: u16) -> String {
        format!("http://alice:hunter2@127.0.0.1:{port}/key/SECRET123?apikey=SECRET456")
    }

    /// `e`'s Display, Debug and every source, as a log line or `{:#}` would show them.
    fn everything_shown(e: &RpcError) -> String {
        let mut out = format!("{e} {e:?}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            out += &format!(" | {s} {s:?}");
            source = s.source();
        }
        out
    }

    fn assert_no_secret(text: &str) {
        for secret in ["hunter2", "SECRET123", "SECRET456"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn the_endpoint_debug_and_url_errors_show_scheme_host_and_port_only() {
        let rpc = EthRpc::new(&secret_url(8545), Duration::from_secs(1)).expect("valid");
        assert_eq!(rpc.endpoint(), "http://127.0.0.1:8545/…");
        assert_no_secret(&format!("{rpc:?}"));
        for bad in ["http://alice:hunter2@127.0.0.1:99999/key/SECRET123", "ftp://alice:hunter2@h/SECRET123"] {
            let err = EthRpc::new(bad, Duration::from_secs(1)).expect_err(bad);
            assert_no_secret(&err);
        }
    }

    #[test]
    fn errors_from_a_dead_node_name_it_and_the_cause_but_no_secret() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let rpc = EthRpc::new(&secret_url(port), Duration::from_secs(2)).expect("valid");
        let errors = runtime().block_on(async {
            vec![
                rpc.chain_id().await.expect_err("dead"),
                rpc.block_by_tag(BlockTag::Latest).await.expect_err("dead"),
                rpc.blocks(0..=2).await.expect_err("dead"),
                rpc.bounded_request("eth_chainId", serde_json::json!([]), 1024).await.expect_err("dead"),
            ]
        });
        for e in &errors {
            let text = everything_shown(e);
            assert_no_secret(&text);
            assert!(text.contains(&format!("http://127.0.0.1:{port}/…")), "names the node: {text}");
            assert!(text.to_lowercase().contains("connect"), "says why: {text}");
        }
    }

    #[test]
    fn a_node_answer_that_echoes_the_url_is_scrubbed() {
        // One HTTP answer per connection: 401 with an error page quoting the request.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = secret_url(port);
        let page = format!("invalid key: Cannot POST /key/SECRET123?apikey=SECRET456 (you asked {url})");
        std::thread::spawn(move || {
            for stream in listener.incoming().take(1) {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut buf);
                let reply = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
            }
        });
        let rpc = EthRpc::new(&url, Duration::from_secs(2)).expect("valid");
        let e = runtime().block_on(rpc.chain_id()).expect_err("401");
        let text = everything_shown(&e);
        assert_no_secret(&text);
        assert!(text.contains("401") && text.contains("Cannot POST"), "keeps the answer: {text}");
    }
}
