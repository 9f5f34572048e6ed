//! The TOML configuration: plain structs with defaults, unknown keys rejected, and a validation
//! pass whose every message names the key and the problem.

use std::{net::SocketAddr, path::PathBuf};

use rollup_supervisor_actors::rpc::BlockTag;
use rollup_supervisor_signer::redact::{parse_http_url, redact_url_str};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database lives.
    pub datadir: PathBuf,
    /// The L1 node and how to follow it.
    pub l1: L1Config,
    /// The JSON-RPC server.
    pub rpc: RpcConfig,
    /// The Prometheus and health endpoints.
    pub metrics: MetricsConfig,
    /// The L2 chains.
    pub chains: Vec<ChainConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            datadir: PathBuf::from("rollup-supervisor-data"),
            l1: L1Config::default(),
            rpc: RpcConfig::default(),
            metrics: MetricsConfig::default(),
            chains: Vec::new(),
        }
    }
}

/// `[l1]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct L1Config {
    /// The L1 node's JSON-RPC URL (http or https). Required.
    pub rpc_url: String,
    /// If set, the node must serve this chain.
    pub chain_id: Option<u64>,
    /// Between polls of the latest block when caught up.
    pub poll_interval_ms: u64,
    /// Between polls of the safe and finalized blocks.
    pub heads_poll_interval_ms: u64,
    /// Where an empty database starts; the current head if unset.
    pub start_block: Option<u64>,
    /// Stay this many blocks behind the head.
    pub confirmations: u64,
    /// Blocks per batched request while catching up.
    pub batch_size: u64,
    /// Timeout of one request to the node.
    pub request_timeout_ms: u64,
    /// The largest answer read from the node, in bytes; unset: [`response_bytes_for`] the batch.
    pub max_response_bytes: Option<u64>,
    /// How long the node's latest block may stay unchanged before the node counts as stuck.
    pub head_stall_secs: u64,
    /// The L1 node's WebSocket endpoint (ws or wss): its `newHeads` make the watcher step at
    /// once; polling goes on as the safety net.
    pub ws_url: Option<String>,
}

/// What a block answer may take in a batch by default: a header with its transaction hashes and
/// withdrawals (about 1 KiB empty, 15–30 KiB for a full mainnet block), with room to spare.
pub const RESPONSE_BYTES_PER_BLOCK: u64 = 64 << 10;

/// The default answer bound for batches of `batch_size` blocks: 64 KiB a block plus 1 MiB.
pub fn response_bytes_for(batch_size: u64) -> usize {
    let bytes = batch_size.saturating_mul(RESPONSE_BYTES_PER_BLOCK).saturating_add(1 << 20);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// `configured`, or the default for `batch_size`.
fn response_bytes(configured: Option<u64>, batch_size: u64) -> usize {
    configured.map_or_else(|| response_bytes_for(batch_size), |n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl L1Config {
    /// The largest answer read from the L1 node, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        response_bytes(self.max_response_bytes, self.batch_size)
    }
}

impl ChainConfig {
    /// The largest answer the chain's watcher reads from its node, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        response_bytes(self.max_response_bytes, self.batch_size)
    }
}

/// The smallest `max_response_bytes` accepted: below it no block answer fits.
const MIN_RESPONSE_BYTES: u64 = 4096;

impl Default for L1Config {
    fn default() -> Self {
        Self {
            rpc_url: String::new(),
            chain_id: None,
            poll_interval_ms: 2_000,
            heads_poll_interval_ms: 12_000,
            start_block: None,
            confirmations: 0,
            batch_size: 500,
            request_timeout_ms: 10_000,
            max_response_bytes: None,
            head_stall_secs: 120,
            ws_url: None,
        }
    }
}

/// `[rpc]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Where the JSON-RPC server listens; loopback by default.
    pub listen: SocketAddr,
    /// A file holding the hex-encoded 32-byte HS256 secret of admin tokens; admin methods are
    /// off without it.
    pub jwt_secret_file: Option<PathBuf>,
    /// Connections served at once; one accepted beyond it is closed at once.
    pub max_connections: std::num::NonZeroU32,
    /// How long a connection may take to send a request's headers, from when it opens or from
    /// its previous response (so idle keep-alive connections close after it too), and then the
    /// request's body.
    pub header_read_timeout_ms: std::num::NonZeroU64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8555)),
            jwt_secret_file: None,
            max_connections: nonzero_u32(100),
            header_read_timeout_ms: nonzero_u64(10_000),
        }
    }
}

/// `[metrics]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// `/readyz` fails while the L1 index is more blocks than this behind the node.
    pub ready_max_l1_lag_blocks: u64,
    /// Connections served at once; one accepted beyond it is closed at once.
    pub max_connections: std::num::NonZeroU32,
    /// How long a connection may take to send a request's headers, from when it opens or from
    /// its previous response (so idle keep-alive connections close after it too).
    pub header_read_timeout_ms: std::num::NonZeroU64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9555)),
            ready_max_l1_lag_blocks: 10,
            max_connections: nonzero_u32(32),
            header_read_timeout_ms: nonzero_u64(10_000),
        }
    }
}

/// `n`, or 1 for 0 (the servers' defaults are constants above 0).
const fn nonzero_u32(n: u32) -> std::num::NonZeroU32 {
    match std::num::NonZeroU32::new(n) {
        Some(n) => n,
        None => std::num::NonZeroU32::MIN,
    }
}

/// `n`, or 1 for 0.
const fn nonzero_u64(n: u64) -> std::num::NonZeroU64 {
    match std::num::NonZeroU64::new(n) {
        Some(n) => n,
        None => std::num::NonZeroU64::MIN,
    }
}

/// One `[[chains]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The chain's id; its node must serve it.
    pub chain_id: u64,
    /// The chain's node.
    pub rpc_url: String,
    /// The chain's rollup node (op-node, kona-node): if set, the derivation log records what it
    /// derived (`optimism_syncStatus`), and `derivation_tag` is not used.
    #[serde(default)]
    pub rollup_rpc_url: Option<String>,
    /// Which head of the chain counts as derived.
    #[serde(default = "default_tag")]
    pub derivation_tag: BlockTag,
    /// Between polls of the chain's head.
    #[serde(default = "default_l2_poll")]
    pub poll_interval_ms: u64,
    /// Blocks per batched request.
    #[serde(default = "default_batch")]
    pub batch_size: u64,
    /// Sequencer downtime reporting (off by default).
    #[serde(default)]
    pub uptime: UptimeConfig,
    /// The largest answer the watcher reads from the node, in bytes; unset: [`response_bytes_for`]
    /// the batch.
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
}

/// The longest `max_outage_secs` (a week): bounds the schedule's arithmetic at validation.
const MAX_OUTAGE_SECS: u64 = 7 * 86_400;

/// `[chains.uptime]`: report sequencer downtime to the chain's uptime feed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UptimeConfig {
    /// Off by default.
    pub enabled: bool,
    /// The feed contract. Required when enabled.
    pub feed_address: Option<alloy::primitives::Address>,
    /// Our `UptimeReporter` contract: when set, an outage is reported by one transaction
    /// `report(last_block.timestamp)` to it (up time = the including block's timestamp), instead
    /// of the down/up pair to the feed.
    pub reporter_address: Option<alloy::primitives::Address>,
    /// More sequencer endpoints every report is submitted to besides `rpc_url` (every
    /// sequencer of an HA set: pools are per instance).
    pub submit_urls: Vec<String>,
    /// The chain is stalled when its newest block is older than this.
    pub max_block_age_secs: u64,
    /// Between checks of the head.
    pub check_interval_ms: u64,
    /// Between refreshes of the pre-positioned pair; default: the check interval.
    pub refresh_interval_ms: Option<u64>,
    /// `t_up = now - margin`.
    pub clock_skew_margin_secs: u64,
    /// Gas limit of each report transaction (21000..=10000000).
    pub gas_limit: u64,
    /// The lowest max fee per gas of the report (also at least twice the base fee, and above
    /// every pending competitor); the priority fee always equals the max fee.
    pub max_fee_per_gas_wei: u128,
    /// Percent above the best pending competitor's fee the report is priced at (1..=100).
    pub outbid_margin_percent: u128,
    /// The report is never priced above this.
    pub fee_cap_wei: u128,
    /// The pools' replacement price bump, percent (10..=100; geth, reth and Besu need 10).
    pub fee_bump_percent: u128,
    /// The longest outage the pair's refresh schedule must last through (pair mode): the fee
    /// cap must cover its refreshes.
    pub max_outage_secs: u64,
    /// Reverted reports after which an outage is given up.
    pub max_reverts: u32,
    /// The signer.
    pub signer: SignerConfig,
}

impl Default for UptimeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            feed_address: None,
            reporter_address: None,
            submit_urls: Vec::new(),
            max_block_age_secs: 60,
            check_interval_ms: 1_000,
            refresh_interval_ms: None,
            clock_skew_margin_secs: 1,
            gas_limit: 150_000,
            max_fee_per_gas_wei: 1_000_000_000,
            outbid_margin_percent: 20,
            fee_cap_wei: 1_000_000_000_000,
            fee_bump_percent: 10,
            max_outage_secs: 86_400,
            max_reverts: 3,
            signer: SignerConfig::default(),
        }
    }
}

/// `[chains.uptime.signer]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerConfig {
    /// `"local"` or `"web3signer"`. Required when uptime is enabled.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// local: a file holding the hex private key.
    pub private_key_file: Option<PathBuf>,
    /// local: an environment variable holding the hex private key.
    pub private_key_env: Option<String>,
    /// web3signer: base URL.
    pub url: Option<String>,
    /// web3signer: the key identifier (0x + uncompressed public key).
    pub key_id: Option<String>,
    /// web3signer: the address the key signs for.
    pub address: Option<alloy::primitives::Address>,
    /// web3signer: request timeout.
    pub timeout_ms: u64,
    /// web3signer: PEM client certificate and key for mutual TLS.
    pub tls_client_cert: Option<PathBuf>,
    /// web3signer: PEM CA bundle to trust.
    pub tls_ca: Option<PathBuf>,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self {
            kind: None,
            private_key_file: None,
            private_key_env: None,
            url: None,
            key_id: None,
            address: None,
            timeout_ms: 2_000,
            tls_client_cert: None,
            tls_ca: None,
        }
    }
}

impl SignerConfig {
    /// Builds the signer this section describes (after [`Config::validate`]); a key that cannot
    /// be read is a configuration error naming the key (never showing the secret).
    pub fn build(&self, key: &str) -> Result<rollup_supervisor_signer::Signer, ConfigError> {
        use rollup_supervisor_signer::{LocalKey, Signer, Web3Signer, Web3SignerConfig};
        let fail = |k: &str, e: &dyn std::fmt::Display| ConfigError(format!("invalid value for key `{key}.{k}`: {e}"));
        match self.kind.as_deref() {
            Some("local") => {
                let local = match (&self.private_key_file, &self.private_key_env) {
                    (Some(path), _) => LocalKey::from_file(path).map_err(|e| fail("private_key_file", &e))?,
                    (None, Some(var)) => LocalKey::from_env(var).map_err(|e| fail("private_key_env", &e))?,
                    (None, None) => return Err(fail("private_key_file", &"missing")),
                };
                Ok(Signer::Local(local))
            }
            Some("web3signer") => {
                let (Some(url), Some(key_id), Some(address)) = (&self.url, &self.key_id, self.address) else {
                    return Err(fail("url", &"url, key_id and address are required"));
                };
                let mut cfg = Web3SignerConfig::new(url.clone(), key_id.clone(), address);
                cfg.timeout = std::time::Duration::from_millis(self.timeout_ms);
                cfg.tls_client_cert = self.tls_client_cert.clone();
                cfg.tls_ca = self.tls_ca.clone();
                // A TLS file's error names its own key; the rest is about the URL.
                let signer = Web3Signer::new(cfg).map_err(|e| match &e {
                    rollup_supervisor_signer::SignerError::TlsFile { file, .. } => fail(file.field(), &e),
                    _ => fail("url", &e),
                })?;
                Ok(Signer::Web3(signer))
            }
            other => Err(fail("type", &format!("{other:?} is not \"local\" or \"web3signer\""))),
        }
    }
}

impl UptimeConfig {
    /// The refresh interval in effect.
    pub fn refresh_interval_ms(&self) -> u64 {
        self.refresh_interval_ms.unwrap_or(self.check_interval_ms)
    }

    /// Refreshes of the pair's up transaction in an outage of `max_outage_secs`.
    pub fn planned_refreshes(&self) -> u32 {
        rollup_supervisor_actors::uptime::pricing::refreshes_for(
            self.max_block_age_secs,
            self.max_outage_secs,
            self.refresh_interval_ms(),
            self.clock_skew_margin_secs,
        )
    }

    /// The fee cap those refreshes need from `max_fee_per_gas_wei`.
    #[cfg(test)]
    pub fn required_fee_cap(&self) -> u128 {
        rollup_supervisor_actors::uptime::pricing::required_cap(
            self.max_fee_per_gas_wei,
            self.planned_refreshes(),
            self.fee_bump_percent,
        )
    }

    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let missing = |k: &str| Err(ConfigError(format!("missing key `{}`: required when uptime is enabled", key(k))));
        let bad = |k: &str, p: &str| Err(ConfigError(format!("invalid value for key `{}`: {p}", key(k))));
        if self.feed_address.is_none() {
            return missing("uptime.feed_address");
        }
        if self.max_block_age_secs == 0 {
            return bad("uptime.max_block_age_secs", "must be greater than 0");
        }
        if self.check_interval_ms == 0 {
            return bad("uptime.check_interval_ms", "must be greater than 0");
        }
        if self.refresh_interval_ms == Some(0) {
            return bad("uptime.refresh_interval_ms", "must be greater than 0 (leave it unset for the check interval)");
        }
        if !(21_000..=10_000_000).contains(&self.gas_limit) {
            return bad("uptime.gas_limit", "must be between 21000 and 10000000");
        }
        if self.fee_cap_wei < self.max_fee_per_gas_wei {
            return bad("uptime.fee_cap_wei", "must be at least max_fee_per_gas_wei");
        }
        if !(10..=100).contains(&self.fee_bump_percent) {
            return bad(
                "uptime.fee_bump_percent",
                "must be between 10 and 100: geth, op-geth, reth and Besu refuse replacements below a 10 % bump",
            );
        }
        if !(1..=100).contains(&self.outbid_margin_percent) {
            return bad("uptime.outbid_margin_percent", "must be between 1 and 100");
        }
        if self.max_reverts == 0 {
            return bad("uptime.max_reverts", "must be greater than 0");
        }
        for (i, url) in self.submit_urls.iter().enumerate() {
            check_url(&key(&format!("uptime.submit_urls[{i}]")), url)?;
        }
        if self.reporter_address.is_none() {
            if self.max_outage_secs <= self.max_block_age_secs || self.max_outage_secs > MAX_OUTAGE_SECS {
                return bad(
                    "uptime.max_outage_secs",
                    &format!("must be greater than max_block_age_secs and at most {MAX_OUTAGE_SECS} (a week)"),
                );
            }
            if self.refresh_interval_ms() < 100 {
                return bad("uptime.refresh_interval_ms", "must be at least 100 ms");
            }
            let refreshes = self.planned_refreshes();
            let need = rollup_supervisor_actors::uptime::pricing::required_cap(
                self.max_fee_per_gas_wei,
                refreshes,
                self.fee_bump_percent,
            );
            if self.fee_cap_wei < need {
                return bad(
                    "uptime.fee_cap_wei",
                    &format!(
                        "{} wei cannot refresh the pair through a {} s outage: its {refreshes} refreshes from max_fee_per_gas_wei = {} at a {} % bump need {need} wei (raise fee_cap_wei, lower max_outage_secs, or use reporter_address)",
                        self.fee_cap_wei, self.max_outage_secs, self.max_fee_per_gas_wei, self.fee_bump_percent
                    ),
                );
            }
        }
        let s = &self.signer;
        match s.kind.as_deref() {
            None => missing("uptime.signer.type"),
            Some("local") => match (&s.private_key_file, &s.private_key_env) {
                (None, None) => missing("uptime.signer.private_key_file` or `uptime.signer.private_key_env"),
                (Some(_), Some(_)) => {
                    bad("uptime.signer.private_key_env", "give private_key_file or private_key_env, not both")
                }
                _ => Ok(()),
            },
            Some("web3signer") => {
                match &s.url {
                    None => return missing("uptime.signer.url"),
                    Some(url) => check_url(&key("uptime.signer.url"), url)?,
                }
                if s.key_id.is_none() {
                    return missing("uptime.signer.key_id");
                }
                if s.address.is_none() {
                    return missing("uptime.signer.address");
                }
                if s.timeout_ms == 0 {
                    return bad("uptime.signer.timeout_ms", "must be greater than 0");
                }
                Ok(())
            }
            Some(other) => bad("uptime.signer.type", &format!("{other:?} is not \"local\" or \"web3signer\"")),
        }
    }
}

fn default_tag() -> BlockTag {
    BlockTag::Safe
}

fn default_l2_poll() -> u64 {
    2_000
}

fn default_batch() -> u64 {
    500
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses a TOML document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))
    }

    /// The configuration as one line of JSON for the start-up log, with every URL cut to its
    /// scheme, host and port: paths, queries and user info often carry API keys.
    pub fn redacted(&self) -> String {
        fn walk(key: &str, v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(map) => map.iter_mut().for_each(|(k, v)| walk(k, v)),
                serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(key, v)),
                // `…_url` and the items of `…_urls` (`submit_urls`).
                serde_json::Value::String(s) if key.ends_with("url") || key.ends_with("urls") => *s = redact_url_str(s),
                _ => {}
            }
        }
        let mut value = serde_json::to_value(self).unwrap_or_default();
        walk("", &mut value);
        value.to_string()
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, problem: &str| Err(ConfigError(format!("invalid value for key `{key}`: {problem}")));
        if self.datadir.as_os_str().is_empty() {
            return err("datadir", "must not be empty");
        }
        if self.l1.rpc_url.is_empty() {
            return err("l1.rpc_url", "is required (or pass --l1-rpc-url / ROLLUP_SUPERVISOR_L1_RPC_URL)");
        }
        check_url("l1.rpc_url", &self.l1.rpc_url)?;
        if let Some(url) = &self.l1.ws_url {
            check_ws_url("l1.ws_url", url)?;
        }
        for (key, value) in [
            ("l1.poll_interval_ms", self.l1.poll_interval_ms),
            ("l1.heads_poll_interval_ms", self.l1.heads_poll_interval_ms),
            ("l1.batch_size", self.l1.batch_size),
            ("l1.request_timeout_ms", self.l1.request_timeout_ms),
            ("l1.head_stall_secs", self.l1.head_stall_secs),
        ] {
            if value == 0 {
                return err(key, "must be greater than 0");
            }
        }
        if self.l1.batch_size > 10_000 {
            return err("l1.batch_size", "must be at most 10000");
        }
        let too_small = format!("must be at least {MIN_RESPONSE_BYTES} (or unset: sized from the batch size)");
        if self.l1.max_response_bytes.is_some_and(|n| n < MIN_RESPONSE_BYTES) {
            return err("l1.max_response_bytes", &too_small);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, chain) in self.chains.iter().enumerate() {
            let key = |k: &str| format!("chains[{i}].{k}");
            if !seen.insert(chain.chain_id) {
                return err(&key("chain_id"), &format!("chain {} is listed twice", chain.chain_id));
            }
            check_url(&key("rpc_url"), &chain.rpc_url)?;
            if let Some(url) = &chain.rollup_rpc_url {
                check_url(&key("rollup_rpc_url"), url)?;
            }
            if chain.poll_interval_ms == 0 {
                return err(&key("poll_interval_ms"), "must be greater than 0");
            }
            if chain.batch_size == 0 || chain.batch_size > 10_000 {
                return err(&key("batch_size"), "must be between 1 and 10000");
            }
            if chain.max_response_bytes.is_some_and(|n| n < MIN_RESPONSE_BYTES) {
                return err(&key("max_response_bytes"), &too_small);
            }
            chain.uptime.validate(&key)?;
        }
        Ok(())
    }
}

/// The URL check of every client (`EthRpc`, the Web3Signer client), so that a URL the file
/// passes never fails the start. The message shows the URL redacted: it may carry a key.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    parse_http_url(url)
        .map(|_| ())
        .map_err(|e| ConfigError(format!("invalid value for key `{key}`: {:?} is {e}", redact_url_str(url))))
}

/// A `ws://` or `wss://` URL with a host (checked as the `http(s)` URL it upgrades from).
fn check_ws_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let bad =
        |problem: &str| ConfigError(format!("invalid value for key `{key}`: {:?} is {problem}", redact_url_str(url)));
    let as_http = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("ws") => format!("http://{rest}"),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("wss") => format!("https://{rest}"),
        _ => return Err(bad("not a WebSocket URL: only ws and wss are supported")),
    };
    parse_http_url(&as_http).map(|_| ()).map_err(|e| bad(&e.replace("http(s)", "ws(s)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_bound_follows_the_batch_size_unless_set() {
        let cfg = Config::parse(
            "[l1]\nrpc_url = \"http://x\"\nbatch_size = 100\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\nmax_response_bytes = 5000",
        )
        .expect("parses");
        assert_eq!(cfg.l1.max_response_bytes(), 100 * 64 * 1024 + (1 << 20));
        assert_eq!(cfg.chains[0].max_response_bytes(), 5000);
        let low = Config::parse("[l1]\nrpc_url = \"http://x\"\nmax_response_bytes = 10").expect("parses");
        assert!(low.validate().is_err_and(|e| e.0.contains("`l1.max_response_bytes`")));
    }

    #[test]
    fn defaults_and_a_full_file() {
        let cfg = Config::parse(
            r#"
            datadir = "/tmp/x"
            [l1]
            rpc_url = "http://127.0.0.1:8545"
            chain_id = 1
            start_block = 5
            [rpc]
            listen = "127.0.0.1:0"
            [[chains]]
            chain_id = 10
            rpc_url = "http://127.0.0.1:9545"
            derivation_tag = "latest"
            "#,
        );
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.l1.poll_interval_ms, 2_000);
        assert_eq!(cfg.l1.confirmations, 0);
        assert_eq!(cfg.chains[0].derivation_tag, BlockTag::Latest);
        assert_eq!(Config::default().rpc.listen.to_string(), "127.0.0.1:8555");
    }

    #[test]
    fn the_logged_config_hides_url_paths_and_credentials() {
        let mut cfg = Config::default();
        cfg.l1.rpc_url = "https://user:pw@mainnet.example.io/v3/SECRETKEY?x=1".into();
        let line = cfg.redacted();
        assert!(line.contains("https://mainnet.example.io/…"), "{line}");
        assert!(!line.contains("SECRETKEY") && !line.contains("pw"), "{line}");
        assert_eq!(redact_url_str("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
    }

    #[test]
    fn errors_name_the_key() {
        let msg = |text: &str| match Config::parse(text) {
            Ok(cfg) => cfg.validate().err().map(|e| e.0).unwrap_or_default(),
            Err(e) => e.0,
        };
        assert!(msg("[l1]\nrpc_url = 5").contains("rpc_url"));
        assert!(msg("[l1]\nrpc_urll = \"http://x\"").contains("rpc_urll"));
        assert!(msg("[l1]\nrpc_url = \"ftp://x\"").contains("`l1.rpc_url`"));
        assert!(msg("[l1]\nrpc_url = \"http://x\"\nbatch_size = 0").contains("`l1.batch_size`"));
        assert!(msg("[l1]\nrpc_url = \"http://x\"\nhead_stall_secs = 0").contains("`l1.head_stall_secs`"));
        assert!(msg("[l1]\nrpc_url = \"http://x\"\nws_url = \"http://x\"").contains("`l1.ws_url`"));
        assert!(msg("[l1]\nrpc_url = \"http://x\"\nws_url = \"ws://h:99999\"").contains("invalid port"));
        assert!(msg("[l1]\nrpc_url = \"http://x\"\nws_url = \"wss://h:8546/key\"").is_empty());
        assert!(msg("").contains("`l1.rpc_url`"));
        let dup = "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://z\"";
        assert!(msg(dup).contains("`chains[1].chain_id`"));
        assert!(
            msg("[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\nderivation_tag = \"pending\"")
                .contains("derivation_tag")
        );
    }

    #[test]
    fn the_uptime_fees_are_validated_against_the_pools_and_the_refresh_schedule() {
        let uptime = |extra: &str| {
            let text = format!(
                "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n{extra}\n[chains.uptime.signer]\ntype = \"local\"\nprivate_key_env = \"K\""
            );
            Config::parse(&text).and_then(|c| c.validate()).err().map(|e| e.0).unwrap_or_default()
        };
        assert_eq!(uptime(""), "", "the defaults hold a day-long outage in pair mode");
        let defaults = UptimeConfig::default();
        assert!(defaults.required_fee_cap() <= defaults.fee_cap_wei);
        assert!(uptime("fee_bump_percent = 5").contains("`chains[0].uptime.fee_bump_percent`"));
        assert!(uptime("outbid_margin_percent = 0").contains("`chains[0].uptime.outbid_margin_percent`"));
        assert!(uptime("submit_urls = [\"ws://a\"]").contains("`chains[0].uptime.submit_urls[0]`"));
        // A cap that cannot pay for the schedule is refused, naming the key and the need.
        let low = uptime("fee_cap_wei = 100000000000");
        assert!(low.contains("`chains[0].uptime.fee_cap_wei`") && low.contains("refreshes"), "{low}");
        assert!(uptime("max_outage_secs = 3600\nfee_cap_wei = 100000000000").is_empty(), "a shorter outage fits");
        // Reporter mode refreshes nothing: no schedule to pay for.
        let reporter = "reporter_address = \"0x0000000000000000000000000000000000000002\"\nfee_cap_wei = 2000000000";
        assert_eq!(uptime(reporter), "");
        assert!(uptime("max_priority_fee_per_gas_wei = 1").contains("max_priority_fee_per_gas_wei"), "removed key");
    }

    const SECRET_URL: &str = "http://alice:hunter2@127.0.0.1:99999/key/SECRET123?apikey=SECRET456";

    fn assert_no_secret(text: &str) {
        for secret in ["hunter2", "SECRET123", "SECRET456"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }

    /// A file with one chain whose uptime section holds `extra` and whose signer is `signer`.
    fn with_uptime(extra: &str, signer: &str) -> String {
        format!(
            "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n{extra}\n[chains.uptime.signer]\n{signer}"
        )
    }

    fn web3signer(url: &str) -> String {
        format!(
            "type = \"web3signer\"\nurl = {url:?}\nkey_id = \"0xabc\"\naddress = \"0x0000000000000000000000000000000000000002\"\n"
        )
    }

    const LOCAL: &str = "type = \"local\"\nprivate_key_env = \"K\"";

    fn invalid(text: &str) -> String {
        Config::parse(text).and_then(|c| c.validate()).err().map(|e| e.0).unwrap_or_default()
    }

    #[test]
    fn urls_that_do_not_parse_are_config_errors_naming_the_key_without_their_secrets() {
        for (url, reason) in
            [("http://[::1", "invalid IPv6 address"), ("http://127.0.0.1:99999", "invalid port number")]
        {
            for (text, key) in [
                (format!("[l1]\nrpc_url = {url:?}"), "`l1.rpc_url`"),
                (
                    format!("[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = {url:?}"),
                    "`chains[0].rpc_url`",
                ),
                (with_uptime(&format!("submit_urls = [{url:?}]"), LOCAL), "`chains[0].uptime.submit_urls[0]`"),
                (with_uptime("", &web3signer(url)), "`chains[0].uptime.signer.url`"),
            ] {
                let err = invalid(&text);
                assert!(err.contains(key) && err.contains(reason), "{text}: {err}");
            }
        }
        let err = invalid(&format!("[l1]\nrpc_url = {SECRET_URL:?}"));
        assert!(err.contains("`l1.rpc_url`") && err.contains("http://127.0.0.1:99999/…"), "{err}");
        assert_no_secret(&err);
        // Whatever the configuration accepts, the clients accept: a URL never fails the start.
        for url in ["http://x", "https://alice:hunter2@node.example/v3/SECRET123?apikey=SECRET456", "http://[::1]:8545"]
        {
            assert!(check_url("l1.rpc_url", url).is_ok(), "{url}");
            let rpc = rollup_supervisor_actors::rpc::EthRpc::new(url, std::time::Duration::from_secs(1));
            assert!(rpc.is_ok(), "{url}");
            let signer = SignerConfig {
                kind: Some("web3signer".into()),
                url: Some(url.into()),
                key_id: Some("0xabc".into()),
                address: Some(alloy::primitives::Address::ZERO),
                ..SignerConfig::default()
            };
            assert!(signer.build("s").is_ok(), "{url}");
        }
    }

    #[test]
    fn interval_and_fee_errors_name_their_own_key() {
        let err = invalid(&with_uptime("refresh_interval_ms = 0", LOCAL));
        assert!(err.contains("`chains[0].uptime.refresh_interval_ms`") && !err.contains("check_interval"), "{err}");
        let err = invalid(&with_uptime("check_interval_ms = 0", LOCAL));
        assert!(err.contains("`chains[0].uptime.check_interval_ms`"), "{err}");
        // Unset, the refresh interval is the check interval: only that key is named.
        let err = invalid(&with_uptime("check_interval_ms = 0\nrefresh_interval_ms = 5", LOCAL));
        assert!(err.contains("`chains[0].uptime.check_interval_ms`"), "{err}");
        for bump in [0, 9, 101] {
            let err = invalid(&with_uptime(&format!("fee_bump_percent = {bump}"), LOCAL));
            assert!(err.contains("`chains[0].uptime.fee_bump_percent`"), "{bump}: {err}");
        }
    }

    #[test]
    fn a_missing_or_unreadable_tls_file_names_its_own_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not PEM\n").unwrap_or_else(|e| panic!("{e}"));
        let https = || SignerConfig {
            kind: Some("web3signer".into()),
            url: Some("https://alice:hunter2@signer.example:9000/key/SECRET123".into()),
            key_id: Some("0xabc".into()),
            address: Some(alloy::primitives::Address::ZERO),
            ..SignerConfig::default()
        };
        for (cfg, key, path) in [
            (SignerConfig { tls_ca: Some(missing.clone()), ..https() }, "tls_ca", &missing),
            (SignerConfig { tls_ca: Some(garbage.clone()), ..https() }, "tls_ca", &garbage),
            (SignerConfig { tls_client_cert: Some(missing.clone()), ..https() }, "tls_client_cert", &missing),
            (SignerConfig { tls_client_cert: Some(garbage.clone()), ..https() }, "tls_client_cert", &garbage),
        ] {
            let err = cfg.build("chains[0].uptime.signer").err().map(|e| e.0).unwrap_or_default();
            let named = format!("`chains[0].uptime.signer.{key}`");
            assert!(err.contains(&named) && err.contains(&path.display().to_string()), "{key}: {err}");
            assert!(!err.contains("signer.url"), "{key}: {err}");
            assert_no_secret(&err);
        }
    }

    #[test]
    fn the_logged_config_cuts_every_url_to_scheme_host_and_port() {
        let text = with_uptime(
            "submit_urls = [\"http://alice:hunter2@10.0.0.2:8545/key/SECRET123?apikey=SECRET456\"]",
            &web3signer("https://alice:hunter2@signer.example:9000/key/SECRET123?apikey=SECRET456"),
        )
        .replace("rpc_url = \"http://x\"", "rpc_url = \"https://alice:hunter2@l1.example/v3/SECRET123\"")
        .replace("rpc_url = \"http://y\"", "rpc_url = \"http://10.0.0.1:8545?apikey=SECRET456\"");
        let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let line = cfg.redacted();
        assert_no_secret(&line);
        for shown in [
            "https://l1.example/…",
            "http://10.0.0.1:8545/…",
            "http://10.0.0.2:8545/…",
            "https://signer.example:9000/…",
        ] {
            assert!(line.contains(shown), "{shown}: {line}");
        }
    }
}
