//! The TOML configuration: plain structs with defaults, unknown keys rejected, and a validation
//! pass whose every message names the key and the problem.

//!
//! `mod.rs` holds the file and its validation; `nodes.rs` the node sections (`[l1]`, `[rpc]`,
//! `[metrics]`, `[[chains]]`); `uptime.rs` `[chains.uptime]` and its signer.

mod nodes;
#[cfg(test)]
mod tests;
mod uptime;

use std::path::PathBuf;

use rollup_supervisor_signer::redact::{parse_http_url, redact_url_str};
use serde::{Deserialize, Serialize};

use self::nodes::MIN_RESPONSE_BYTES;
pub use self::{
    nodes::{ChainConfig, L1Config, MetricsConfig, RpcConfig},
    uptime::UptimeConfig,
};

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
pub(super) fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
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
