//! `[chains.uptime]`: reporting sequencer downtime to the chain's uptime feed, and
//! `[chains.uptime.signer]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_url};

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

    pub(super) fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
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
