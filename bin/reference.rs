//! The README's reference tables, generated from the code and checked against the README so they
//! cannot drift: every configuration key (with its default, read from `Config::default()`), every
//! metric family (from `metrics::ALL`) and every JSON-RPC method (from the server's module).
//!
//! `ROLLUP_SUPERVISOR_BLESS=1 cargo test --bin rollup-supervisor reference` rewrites the tables in
//! README.md after a change.

use std::collections::BTreeSet;

use rollup_supervisor_actors::metrics::ALL;
use serde_json::Value;

use crate::config::{ChainConfig, Config};

/// Every configuration key: (key, type, meaning). The defaults come from the code.
const KEYS: &[(&str, &str, &str)] = &[
    ("datadir", "path", "Where the database lives; created if missing."),
    ("l1.rpc_url", "URL", "The L1 node's JSON-RPC endpoint (http or https). Required."),
    ("l1.chain_id", "integer", "If set, the L1 node must serve this chain id, or nothing is recorded."),
    ("l1.poll_interval_ms", "integer", "Between polls of the L1 head once caught up."),
    ("l1.heads_poll_interval_ms", "integer", "Between polls of the L1 safe and finalized blocks."),
    ("l1.start_block", "integer", "Where an empty database starts; unset: at the node's head."),
    ("l1.confirmations", "integer", "Stay this many blocks behind the L1 head."),
    ("l1.batch_size", "integer", "Blocks per batched request while catching up (1..=10000)."),
    ("l1.request_timeout_ms", "integer", "Timeout of one request to any node (L1 and L2)."),
    (
        "l1.ws_url",
        "URL",
        "The L1 node's WebSocket endpoint (ws or wss), optional. Set: the supervisor subscribes to `newHeads` and the L1 watcher steps as soon as a block is announced (reconnecting with backoff, and after 120 s without a notification); `poll_interval_ms` polling goes on as the safety net. What is recorded still comes from `rpc_url`.",
    ),
    (
        "l1.head_stall_secs",
        "integer",
        "How long the L1 node's latest block may stay the same before the node counts as stuck: each poll then counts in `node_head_failures_total{kind=\"stalled\"}`, a warning is logged once and `/readyz` fails. The default is ten 12 s slots; raise it for a chain with slower blocks.",
    ),
    (
        "l1.max_response_bytes",
        "integer",
        "Largest answer (a whole batch) read from the L1 node; a larger one is refused (`answer larger than N bytes`), never buffered. Unset: `batch_size` × 64 KiB + 1 MiB. At least 4096.",
    ),
    ("rpc.listen", "address", "Where the JSON-RPC server listens."),
    (
        "rpc.jwt_secret_file",
        "path",
        "File with a hex 32-byte HS256 secret; enables the admin methods for callers with a valid token.",
    ),
    (
        "rpc.max_connections",
        "integer",
        "Connections the JSON-RPC server serves at once (at least 1); one accepted beyond it is closed at once.",
    ),
    (
        "rpc.header_read_timeout_ms",
        "integer",
        "A JSON-RPC connection is closed when a request's headers take longer, from connecting or from the previous answer (idle keep-alive too), or then its body.",
    ),
    ("metrics.listen", "address", "Where `/metrics`, `/healthz` and `/readyz` are served."),
    ("metrics.ready_max_l1_lag_blocks", "integer", "`/readyz` fails while the L1 index is further behind than this."),
    (
        "metrics.max_connections",
        "integer",
        "Connections the metrics server serves at once (at least 1); one accepted beyond it is closed at once.",
    ),
    (
        "metrics.header_read_timeout_ms",
        "integer",
        "A metrics connection is closed when a request's headers take longer, from connecting or from the previous answer (idle keep-alive too).",
    ),
    ("chains[].chain_id", "integer", "The L2 chain's id; its node must serve it. Required."),
    ("chains[].rpc_url", "URL", "The L2 node's JSON-RPC endpoint. Required."),
    (
        "chains[].rollup_rpc_url",
        "URL",
        "The chain's rollup node (op-node, kona-node). Set: the derivation log records what the rollup node derived (`optimism_syncStatus`, and `optimism_safeHeadAtL1Block` where served), each L2 block against the L1 block it was derived from. Unset: the L2 watcher records the `derivation_tag` head as derived from the newest recorded L1 block when seen (\"observed as of\", not derivation).",
    ),
    (
        "chains[].derivation_tag",
        "string",
        "Without `rollup_rpc_url`: which L2 head counts as derived: `latest`, `safe` or `finalized`. Its source is the newest L1 block recorded when the block was seen, not the L1 block it was derived from.",
    ),
    ("chains[].poll_interval_ms", "integer", "Between polls of the L2 head."),
    ("chains[].batch_size", "integer", "L2 blocks per batched request (1..=10000)."),
    (
        "chains[].max_response_bytes",
        "integer",
        "Largest answer the chain's watcher reads from its node; unset: `batch_size` × 64 KiB + 1 MiB. The uptime flow's requests (full blocks, the pool) are bounded at 32 MiB.",
    ),
    ("chains[].uptime.enabled", "bool", "Report this chain's sequencer downtime to its uptime feed."),
    ("chains[].uptime.feed_address", "address", "The uptime feed contract. Required when enabled."),
    (
        "chains[].uptime.reporter_address",
        "address",
        "Our `UptimeReporter`: when set, one `report(down)` call per outage, up time = the including block's timestamp; unset: the down/up pair.",
    ),
    (
        "chains[].uptime.submit_urls",
        "list of URLs",
        "More sequencers (an HA set, a standby) every report is also submitted to; pools are per instance.",
    ),
    ("chains[].uptime.max_block_age_secs", "integer", "The chain is down when its newest block is older than this."),
    ("chains[].uptime.check_interval_ms", "integer", "Between checks of the L2 head."),
    (
        "chains[].uptime.refresh_interval_ms",
        "integer",
        "Between checks of the pooled report (pool, price, refresh); unset: the check interval.",
    ),
    ("chains[].uptime.clock_skew_margin_secs", "integer", "The pair's up timestamp is `now - margin`."),
    ("chains[].uptime.gas_limit", "integer", "Gas limit of each report transaction (21000..=10000000)."),
    (
        "chains[].uptime.max_fee_per_gas_wei",
        "integer",
        "The report's lowest max fee (= priority fee); it also pays twice the base fee and outbids every pending transaction.",
    ),
    (
        "chains[].uptime.outbid_margin_percent",
        "integer",
        "The report is priced this many percent above the best pending competitor (1..=100).",
    ),
    (
        "chains[].uptime.fee_cap_wei",
        "integer",
        "The report is never priced above this; pair mode: must cover `max_outage_secs` of refreshes.",
    ),
    (
        "chains[].uptime.fee_bump_percent",
        "integer",
        "The pools' replacement price bump (10..=100; 10 on geth, reth and Besu).",
    ),
    (
        "chains[].uptime.max_outage_secs",
        "integer",
        "Pair mode: the longest outage the refresh schedule's fee headroom must last.",
    ),
    ("chains[].uptime.max_reverts", "integer", "Reverted reports after which an outage is given up."),
    ("chains[].uptime.signer.type", "string", "`local` or `web3signer`. Required when enabled."),
    ("chains[].uptime.signer.private_key_file", "path", "local: a file holding the hex private key."),
    ("chains[].uptime.signer.private_key_env", "string", "local: an environment variable holding the hex private key."),
    ("chains[].uptime.signer.url", "URL", "web3signer: its base URL."),
    ("chains[].uptime.signer.key_id", "string", "web3signer: the key's identifier (0x + uncompressed public key)."),
    (
        "chains[].uptime.signer.address",
        "address",
        "web3signer: the address the key signs for (every signature is checked).",
    ),
    ("chains[].uptime.signer.timeout_ms", "integer", "Timeout of one signing request."),
    ("chains[].uptime.signer.tls_client_cert", "path", "web3signer: PEM client certificate and key, for mutual TLS."),
    ("chains[].uptime.signer.tls_ca", "path", "web3signer: PEM CA bundle to trust."),
];

/// The JSON-RPC methods: (name, params, what it answers).
pub const METHODS: &[(&str, &str, &str)] = &[
    ("supervisor_syncStatus", "none", "L1 latest/safe/finalized and each chain's local-safe pair."),
    ("supervisor_l1BlockByNumber", "`number`", "The recorded canonical L1 block at that height."),
    ("supervisor_localSafe", "`chainId`", "The chain's newest (L1 source, derived L2) pair."),
    (
        "supervisor_finalizedL1",
        "none",
        "The finalized L1 block, as the L1 index recorded it (a block the L1 node named finalized, checked against the index).",
    ),
    (
        "supervisor_finalized",
        "`chainId`",
        "The chain's finalized L2 block: the newest L2 block derived from an L1 block at or below our finalized L1 block. A rollup node's own `finalized_l2` is not trusted over it.",
    ),
    ("supervisor_derivedAt", "`chainId`, `l1Number`", "The newest L2 block derived as of that L1 block."),
    ("supervisor_derivedFrom", "`chainId`, `l2Number`", "The L1 block that L2 block was first derived from."),
    ("supervisor_uptimeStatus", "`chainId`", "Watchdog view, signer health and the last outage's journal record."),
    ("supervisor_metrics", "none", "Every counter and gauge as a JSON object (histograms by count)."),
    ("supervisor_metricsText", "none", "The Prometheus exposition as a string."),
    (
        "admin_forceUptimeUpdate",
        "`chainId`",
        "Admin (JWT): pre-position a down/up pair now; answers the outage record.",
    ),
];

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        // An empty list (`submit_urls`) is a key whose default is `[]`.
        Value::Array(items) if items.is_empty() => out.push((prefix.to_owned(), v.clone())),
        Value::Array(items) => {
            for item in items {
                flatten(&format!("{prefix}[]"), item, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// Every key with its default, as the code has it.
fn defaults() -> Vec<(String, Value)> {
    let mut config = Config::default();
    let chain: Result<ChainConfig, _> = toml::from_str("chain_id = 0\nrpc_url = \"\"");
    config.chains = chain.into_iter().collect();
    let mut out = Vec::new();
    flatten("", &serde_json::to_value(&config).unwrap_or_default(), &mut out);
    out
}

fn shown(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        Value::String(s) if s.is_empty() => "required".into(),
        _ if key.ends_with("chain_id") && key.starts_with("chains") => "required".into(),
        other => format!("`{other}`"),
    }
}

/// The configuration table.
pub fn config_table() -> String {
    let defaults = defaults();
    let mut out = String::from("| Key | Type | Default | Meaning |\n|---|---|---|---|\n");
    for (key, ty, meaning) in KEYS {
        let default = defaults.iter().find(|(k, _)| k == key).map_or("?".into(), |(k, v)| shown(k, v));
        out += &format!("| `{key}` | {ty} | {default} | {meaning} |\n");
    }
    out
}

/// The metrics table.
pub fn metrics_table() -> String {
    let mut out = String::from("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
    for f in ALL {
        let labels: Vec<String> = f.labels.iter().map(|l| format!("`{l}`")).collect();
        out += &format!("| `{}` | {} | {} | {} |\n", f.full_name(), f.kind.as_str(), labels.join(", "), f.help);
    }
    out
}

/// The JSON-RPC table.
pub fn methods_table() -> String {
    let mut out = String::from("| Method | Params | Answers |\n|---|---|---|\n");
    for (name, params, what) in METHODS {
        out += &format!("| `{name}` | {params} | {what} |\n");
    }
    out
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->`.
fn splice(readme: &str, name: &str, table: &str) -> Option<String> {
    let (begin, end) = (format!("<!-- {name}:begin -->\n"), format!("<!-- {name}:end -->"));
    let from = readme.find(&begin)? + begin.len();
    let to = readme[from..].find(&end)? + from;
    Some(format!("{}{table}{}", &readme[..from], &readme[to..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_key_is_documented_and_nothing_else() {
        let code: BTreeSet<String> = defaults().into_iter().map(|(k, _)| k).collect();
        let documented: BTreeSet<String> = KEYS.iter().map(|(k, _, _)| (*k).to_owned()).collect();
        assert_eq!(code.difference(&documented).collect::<Vec<_>>(), Vec::<&String>::new(), "undocumented keys");
        assert_eq!(
            documented.difference(&code).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "documented keys that don't exist"
        );
    }

    #[test]
    fn every_rpc_method_is_documented_and_nothing_else() {
        let code: BTreeSet<String> = crate::rpc::method_names().into_iter().collect();
        let documented: BTreeSet<String> = METHODS.iter().map(|(m, _, _)| (*m).to_owned()).collect();
        assert_eq!(code, documented);
    }

    #[test]
    fn the_readme_tables_match_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let mut fresh = readme.clone();
        for (name, table) in [("config", config_table()), ("metrics", metrics_table()), ("rpc", methods_table())] {
            fresh = splice(&fresh, name, &table).unwrap_or_else(|| panic!("README.md has no {name}:begin/end markers"));
        }
        if fresh != readme && std::env::var_os("ROLLUP_SUPERVISOR_BLESS").is_some() {
            std::fs::write(path, &fresh).expect("write README.md");
            return;
        }
        assert!(
            fresh == readme,
            "README.md's reference tables are out of date: run `ROLLUP_SUPERVISOR_BLESS=1 cargo test --bin rollup-supervisor reference`"
        );
    }
}
