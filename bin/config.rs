//! The TOML configuration: plain structs with defaults, unknown keys rejected, and a validation
//! pass whose every message names the key and the problem.

use std::{net::SocketAddr, path::PathBuf};

use rollup_supervisor_actors::rpc::BlockTag;
use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database lives.
    pub datadir: PathBuf,
    /// The L1 node and how to follow it.
    pub l1: L1Config,
    /// The JSON-RPC server.
    pub rpc: RpcConfig,
    /// The L2 chains.
    pub chains: Vec<ChainConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            datadir: PathBuf::from("rollup-supervisor-data"),
            l1: L1Config::default(),
            rpc: RpcConfig::default(),
            chains: Vec::new(),
        }
    }
}

/// `[l1]`
#[derive(Clone, Debug, Deserialize)]
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
}

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
        }
    }
}

/// `[rpc]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Where the JSON-RPC server listens; loopback by default.
    pub listen: SocketAddr,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8555)) }
    }
}

/// One `[[chains]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The chain's id; its node must serve it.
    pub chain_id: u64,
    /// The chain's node.
    pub rpc_url: String,
    /// Which head of the chain counts as derived.
    #[serde(default = "default_tag")]
    pub derivation_tag: BlockTag,
    /// Between polls of the chain's head.
    #[serde(default = "default_l2_poll")]
    pub poll_interval_ms: u64,
    /// Blocks per batched request.
    #[serde(default = "default_batch")]
    pub batch_size: u64,
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
        for (key, value) in [
            ("l1.poll_interval_ms", self.l1.poll_interval_ms),
            ("l1.heads_poll_interval_ms", self.l1.heads_poll_interval_ms),
            ("l1.batch_size", self.l1.batch_size),
            ("l1.request_timeout_ms", self.l1.request_timeout_ms),
        ] {
            if value == 0 {
                return err(key, "must be greater than 0");
            }
        }
        if self.l1.batch_size > 10_000 {
            return err("l1.batch_size", "must be at most 10000");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, chain) in self.chains.iter().enumerate() {
            let key = |k: &str| format!("chains[{i}].{k}");
            if !seen.insert(chain.chain_id) {
                return err(&key("chain_id"), &format!("chain {} is listed twice", chain.chain_id));
            }
            check_url(&key("rpc_url"), &chain.rpc_url)?;
            if chain.poll_interval_ms == 0 {
                return err(&key("poll_interval_ms"), "must be greater than 0");
            }
            if chain.batch_size == 0 || chain.batch_size > 10_000 {
                return err(&key("batch_size"), "must be between 1 and 10000");
            }
        }
        Ok(())
    }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace));
    if ok { Ok(()) } else { Err(ConfigError(format!("invalid value for key `{key}`: {url:?} is not an http(s) URL"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn errors_name_the_key() {
        let msg = |text: &str| match Config::parse(text) {
            Ok(cfg) => cfg.validate().err().map(|e| e.0).unwrap_or_default(),
            Err(e) => e.0,
        };
        assert!(msg("[l1]\nrpc_url = 5").contains("rpc_url"));
        assert!(msg("[l1]\nrpc_urll = \"http://x\"").contains("rpc_urll"));
        assert!(msg("[l1]\nrpc_url = \"ftp://x\"").contains("`l1.rpc_url`"));
        assert!(msg("[l1]\nrpc_url = \"http://x\"\nbatch_size = 0").contains("`l1.batch_size`"));
        assert!(msg("").contains("`l1.rpc_url`"));
        let dup = "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://z\"";
        assert!(msg(dup).contains("`chains[1].chain_id`"));
        assert!(
            msg("[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\nderivation_tag = \"pending\"")
                .contains("derivation_tag")
        );
    }
}
