//! [`Metrics`]: the process-wide registry of counters, gauges and histograms, rendered in the
//! Prometheus text format on `GET /metrics` and readable over JSON-RPC (`supervisor_metrics`).
//!
//! Every series belongs to a [`Family`] declared in [`ALL`]: one name (with its unit), one type
//! and one help text, so nothing can be exported undocumented. Counters are totals, never rates
//! (Prometheus computes rates). Labels are part of the series key:
//! `rollup_supervisor_actor_restarts_total{actor="l2_watcher_901"}`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

/// Every exported name starts with this.
pub const PREFIX: &str = "rollup_supervisor_";

/// A metric's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Only goes up (and resets to 0 when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets, with their sum and count.
    Histogram(&'static [f64]),
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        }
    }
}

/// One metric family: a name (without [`PREFIX`]), a type, the label names its series carry, and
/// its help text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Family {
    /// The name without [`PREFIX`].
    pub name: &'static str,
    /// The type.
    pub kind: Kind,
    /// The label names every series of the family carries.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

impl Family {
    /// The exported name.
    pub fn full_name(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }
}

/// Latency buckets in seconds: 1 ms to 30 s.
const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Reorg depth buckets in blocks.
const DEPTH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

macro_rules! families {
    ($($id:ident: $kind:expr, $name:literal, [$($label:literal),*], $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $id: Family = Family { name: $name, kind: $kind, labels: &[$($label),*], help: $help };
        )*
        /// Every family, in the order they are rendered.
        pub const ALL: &[Family] = &[$($id),*];
    };
}

families! {
    BUILD_INFO: Kind::Gauge, "build_info", ["version"], "Always 1; the version label says which build runs.";
    START_TIME: Kind::Gauge, "start_time_seconds", [], "When the process started, in seconds since the Unix epoch.";
    RESIDENT_MEMORY: Kind::Gauge, "resident_memory_bytes", [], "Resident memory of the process.";
    CPU_SECONDS: Kind::Counter, "cpu_seconds_total", [], "CPU time (user + system) the process has used.";
    OPEN_FDS: Kind::Gauge, "open_fds", [], "File descriptors the process holds open.";
    ACTOR_RESTARTS: Kind::Counter, "actor_restarts_total", ["actor"], "Restarts of an actor by its supervisor.";
    QUEUE_DEPTH: Kind::Gauge, "queue_depth", ["actor"], "Work waiting in an actor's own queue (the queues that can grow; mailboxes fed with `send` are bounded).";
    NODE_REQUESTS: Kind::Counter, "node_rpc_requests_total", ["endpoint", "method"], "JSON-RPC requests to a node (a batch counts once, as method `batch`).";
    NODE_ERRORS: Kind::Counter, "node_rpc_errors_total", ["endpoint", "method"], "Node requests that failed: connection, timeout, JSON-RPC error or an unparsable answer.";
    NODE_LATENCY: Kind::Histogram(SECONDS), "node_rpc_request_duration_seconds", ["endpoint"], "Time from sending a node request to its answer (or failure).";
    L1_HEAD: Kind::Gauge, "l1_block_number", ["head"], "Newest recorded L1 block by head: latest, safe, finalized.";
    NODE_HEAD: Kind::Gauge, "node_head_block_number", ["watcher"], "The node's head as the watcher last saw it (minus its confirmation depth).";
    SYNC_LAG: Kind::Gauge, "sync_lag_blocks", ["watcher"], "Blocks between the node's head (minus confirmations) and the newest recorded block.";
    RECORDED_HEAD: Kind::Gauge, "recorded_block_number", ["watcher"], "Newest block recorded by the watcher (L1, or the chain's derivation head).";
    BLOCKS_RECORDED: Kind::Counter, "blocks_recorded_total", ["watcher"], "Blocks written to the database.";
    REORGS: Kind::Counter, "reorgs_total", ["watcher"], "Reorgs handled (rewinds to a common ancestor).";
    L1_SUBSCRIBED: Kind::Gauge, "l1_new_heads_subscribed", [], "1 while the newHeads subscription to l1.ws_url is up (always 0 without one).";
    L1_HEADS_ANNOUNCED: Kind::Counter, "l1_heads_announced_total", [], "newHeads notifications received on l1.ws_url, each of which makes the L1 watcher step at once.";
    NODE_RESETS: Kind::Counter, "node_resets_total", ["watcher"], "Times an L2 node (or rollup node) no longer had the log's newest block (reset, or restored from an older snapshot) and the log was rewound to the newest block it still has.";
    REORG_DEPTH: Kind::Histogram(DEPTH), "reorg_depth_blocks", ["watcher"], "Depth of each reorg handled, in blocks.";
    WATCHER_ERRORS: Kind::Counter, "watcher_errors_total", ["watcher", "kind"], "Failed follow steps by kind: rpc (node down or answering nonsense), db (write refused or failed), fatal (restart).";
    DERIVED_L2: Kind::Gauge, "derived_l2_block_number", ["chain"], "The chain's derivation head: the newest derived L2 block.";
    DERIVED_L1: Kind::Gauge, "derived_from_l1_block_number", ["chain"], "The L1 block the chain's derivation head was derived from.";
    DB_WRITE_LATENCY: Kind::Histogram(SECONDS), "db_write_duration_seconds", ["op"], "Time to check, commit and flush one database write.";
    DB_ERRORS: Kind::Counter, "db_errors_total", ["op"], "Database operations that failed or were refused.";
    DB_SIZE: Kind::Gauge, "db_size_bytes", [], "Size of the database on disk.";
    DB_OPEN: Kind::Gauge, "db_open", [], "1 while the database is open; 0 after a disk failure (a full disk) closed it, until it is reopened from what is on disk.";
    L2_HEAD_AGE: Kind::Gauge, "l2_head_age_seconds", ["chain"], "Age of the chain's newest block at the watchdog's last check (chains with uptime reporting).";
    SEQUENCER_DOWN: Kind::Gauge, "sequencer_down", ["chain"], "1 while the chain's newest block is older than the threshold.";
    OUTAGES: Kind::Counter, "outages_total", ["chain"], "Sequencer outages detected (or forced by an operator).";
    INJECTIONS: Kind::Counter, "injections_total", ["chain", "result"], "Outcomes of outage reports: landed_first, landed_not_first, ignored (landed, but the feed started no new rounds from it), already_reported, failed (retried), gave_up (after max_reverts reverts).";
    PAIRS_SUBMITTED: Kind::Counter, "pairs_submitted_total", ["chain"], "Outage reports (a pair, or a reporter call) first pre-positioned in the sequencers' pools: once per outage, and once per retry.";
    PAIR_REFRESHES: Kind::Counter, "pair_refreshes_total", ["chain"], "Replacements of the pooled up transaction with a fresh up timestamp, on the refresh schedule (pair mode).";
    REPORT_REPRICED: Kind::Counter, "report_repriced_total", ["chain"], "Replacements of a pooled report transaction because a pending competitor overtook it.";
    REPORT_PRICE: Kind::Gauge, "report_max_fee_per_gas_wei", ["chain"], "Max fee (= priority fee) of the newest accepted report transaction.";
    SUBMISSIONS: Kind::Counter, "report_submissions_total", ["chain", "endpoint", "result"], "Report transactions submitted, by endpoint (rpc, submit_<i>) and the node's answer: accepted, already_known, underpriced, nonce_too_low, insufficient_funds, failed.";
    SUBMIT_ERRORS: Kind::Counter, "submit_errors_total", ["chain"], "Report transactions that no endpoint accepted.";
    POOL_LOST: Kind::Counter, "report_pool_lost_total", ["chain", "endpoint"], "Times a pooled report transaction was gone from an endpoint's pool (restart, failover) and was re-submitted.";
    POOL_UNREADABLE: Kind::Gauge, "txpool_unreadable", ["chain", "endpoint"], "1 if the endpoint does not serve txpool_content: the report is priced at the configured fees and cannot promise first place.";
    REPORT_OUTBID: Kind::Counter, "uptime_outbid_total", ["chain"], "Outages in which a pending transaction paid the fee cap or more, so the report could not be priced above it.";
    REPORT_REVERTS: Kind::Counter, "report_reverts_total", ["chain"], "Landed report transactions that reverted (an outage is given up after max_reverts).";
    UPTIME_ERRORS: Kind::Counter, "uptime_errors_total", ["chain"], "Uptime steps that failed (node, signer or journal) and were retried.";
    FEE_CAP_REACHED: Kind::Counter, "fee_cap_reached_total", ["chain"], "Outages in which a due replacement of the report was stopped by fee_cap_wei.";
    SIGNER_MISSING_ROLE: Kind::Gauge, "signer_missing_role", ["chain"], "1 if the report would revert for lack of permission: the signer lacks FEED_UPDATER_ROLE (pair), or the reporter lacks it, reports to another feed or does not allow the signer (reporter).";
    SIGNER_UNFUNDED: Kind::Gauge, "signer_unfunded", ["chain"], "1 if the signer cannot pay what the report may cost (gas_limit x the fees of the planned refreshes, or of the current prices during an outage).";
    WRONG_CHAIN: Kind::Gauge, "wrong_chain", ["chain"], "1 if the chain's node serves another chain id.";
    SIGNER_BALANCE: Kind::Gauge, "signer_balance_wei", ["chain"], "The signer account's balance on the chain.";
    SIGNER_REQUESTS: Kind::Counter, "signer_requests_total", ["chain", "backend"], "Signing requests, by backend: local or web3signer.";
    SIGNER_ERRORS: Kind::Counter, "signer_errors_total", ["chain", "backend"], "Signing requests that failed or timed out (requests refused by the open breaker are not sent).";
    SIGNER_LATENCY: Kind::Histogram(SECONDS), "signer_request_duration_seconds", ["chain", "backend"], "Time to sign one transaction.";
    SIGNER_BREAKER: Kind::Gauge, "signer_circuit_breaker_state", ["chain"], "The signer's circuit breaker: 0 closed, 1 open (failing fast), 2 half-open (probing).";
    SIGNER_BREAKER_OPENED: Kind::Counter, "signer_circuit_breaker_opened_total", ["chain"], "Times the signer's circuit breaker opened.";
    NODE_HEAD_FAILURES: Kind::Counter, "node_head_failures_total", ["watcher", "kind"], "Polls of the node's latest block that failed, by kind: null (the node answered null), stalled (the block had not changed for longer than the bound).";
    L1_HEAD_REJECTED: Kind::Counter, "l1_head_rejected_total", ["head", "reason"], "Safe or finalized blocks the L1 node named that contradict the L1 index and were not stored, by reason: conflict (not the recorded block at its height), regression (finalized below the recorded finalized block), order (safe below finalized).";
}

/// One histogram series: per-bucket counts (not cumulative), sum and count.
#[derive(Clone, Debug, Default)]
struct Hist {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// (family name, rendered labels) → value.
    values: BTreeMap<(&'static str, String), f64>,
    hists: BTreeMap<(&'static str, String), Hist>,
}

/// The registry. Cheap to clone; every clone shares the same series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    parts.join(",")
}

fn check(family: &Family, labels: &[(&str, &str)]) {
    debug_assert!(
        labels.len() == family.labels.len() && labels.iter().zip(family.labels).all(|((k, _), want)| k == want),
        "{}: labels {labels:?}, declared {:?}",
        family.name,
        family.labels
    );
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `by` to a counter.
    pub fn add(&self, family: &Family, labels: &[(&str, &str)], by: f64) {
        check(family, labels);
        *self.lock().values.entry((family.name, render_labels(labels))).or_default() += by;
    }

    /// Adds one to a counter.
    pub fn inc(&self, family: &Family, labels: &[(&str, &str)]) {
        self.add(family, labels, 1.0);
    }

    /// Creates a counter at 0 if it does not exist, so that `increase()` sees its first event.
    pub fn touch(&self, family: &Family, labels: &[(&str, &str)]) {
        self.add(family, labels, 0.0);
    }

    /// Creates a histogram with empty buckets if it does not exist.
    pub fn touch_histogram(&self, family: &Family, labels: &[(&str, &str)]) {
        check(family, labels);
        if let Kind::Histogram(bounds) = family.kind {
            let mut inner = self.lock();
            let h = inner.hists.entry((family.name, render_labels(labels))).or_default();
            if h.buckets.is_empty() {
                h.buckets = vec![0; bounds.len()];
            }
        }
    }

    /// Sets a gauge.
    pub fn set(&self, family: &Family, labels: &[(&str, &str)], value: f64) {
        check(family, labels);
        self.lock().values.insert((family.name, render_labels(labels)), value);
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, family: &Family, labels: &[(&str, &str)], value: f64) {
        check(family, labels);
        let Kind::Histogram(bounds) = family.kind else {
            debug_assert!(false, "{} is not a histogram", family.name);
            return;
        };
        let mut inner = self.lock();
        let h = inner
            .hists
            .entry((family.name, render_labels(labels)))
            .or_insert_with(|| Hist { buckets: vec![0; bounds.len()], ..Hist::default() });
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += value;
        h.count += 1;
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, family: &Family, labels: &[(&str, &str)], d: Duration) {
        self.observe(family, labels, d.as_secs_f64());
    }

    /// The value of a counter or gauge (0 if never touched); a histogram's count.
    pub fn get(&self, family: &Family, labels: &[(&str, &str)]) -> f64 {
        let key = (family.name, render_labels(labels));
        let inner = self.lock();
        match family.kind {
            Kind::Histogram(_) => inner.hists.get(&key).map_or(0.0, |h| h.count as f64),
            _ => inner.values.get(&key).copied().unwrap_or(0.0),
        }
    }

    /// Every counter and gauge series (histograms by their count), keyed as exported.
    pub fn snapshot(&self) -> BTreeMap<String, f64> {
        let inner = self.lock();
        let key = |name: &str, labels: &str| {
            if labels.is_empty() { format!("{PREFIX}{name}") } else { format!("{PREFIX}{name}{{{labels}}}") }
        };
        let mut out: BTreeMap<String, f64> =
            inner.values.iter().map(|((name, labels), v)| (key(name, labels), *v)).collect();
        out.extend(
            inner.hists.iter().map(|((name, labels), h)| (key(&format!("{name}_count"), labels), h.count as f64)),
        );
        out
    }

    /// The Prometheus text exposition (format 0.0.4) of every family.
    pub fn render(&self) -> String {
        self.sample_process();
        let inner = self.lock();
        let mut out = String::new();
        for family in ALL {
            let name = family.full_name();
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            let join = |labels: &str, extra: &str| match (labels.is_empty(), extra.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!("{{{extra}}}"),
                (false, true) => format!("{{{labels}}}"),
                (false, false) => format!("{{{labels},{extra}}}"),
            };
            match family.kind {
                Kind::Histogram(bounds) => {
                    for ((n, labels), h) in inner.hists.range((family.name, String::new())..) {
                        if *n != family.name {
                            break;
                        }
                        let mut cumulative = 0;
                        for (bound, n) in bounds.iter().zip(&h.buckets) {
                            cumulative += n;
                            let _ =
                                writeln!(out, "{name}_bucket{} {cumulative}", join(labels, &format!("le=\"{bound}\"")));
                        }
                        let _ = writeln!(out, "{name}_bucket{} {}", join(labels, "le=\"+Inf\""), h.count);
                        let _ = writeln!(out, "{name}_sum{} {}", join(labels, ""), h.sum);
                        let _ = writeln!(out, "{name}_count{} {}", join(labels, ""), h.count);
                    }
                }
                _ => {
                    for ((n, labels), v) in inner.values.range((family.name, String::new())..) {
                        if *n != family.name {
                            break;
                        }
                        let _ = writeln!(out, "{name}{} {v}", join(labels, ""));
                    }
                }
            }
        }
        out
    }

    /// Sets the build and start-time gauges; call once at start-up.
    pub fn process_started(&self, version: &str) {
        self.set(&BUILD_INFO, &[("version", version)], 1.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.set(&START_TIME, &[], now.as_secs_f64());
        self.sample_process();
    }

    /// Reads the process gauges from `/proc/self` (Linux; elsewhere they stay unset).
    fn sample_process(&self) {
        if let Some(rss) = process::resident_bytes() {
            self.set(&RESIDENT_MEMORY, &[], rss);
        }
        if let Some(cpu) = process::cpu_seconds() {
            self.set(&CPU_SECONDS, &[], cpu);
        }
        if let Some(fds) = process::open_fds() {
            self.set(&OPEN_FDS, &[], fds);
        }
    }
}

/// Process readings from procfs.
mod process {
    /// Clock ticks per second on every Linux target we run on (`getconf CLK_TCK`).
    const TICKS: f64 = 100.0;
    /// The page size on x86-64 and most aarch64 kernels.
    const PAGE: f64 = 4096.0;

    pub fn resident_bytes() -> Option<f64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * PAGE)
    }

    pub fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / TICKS)
    }

    pub fn open_fds() -> Option<f64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_with_help_and_type() {
        let m = Metrics::default();
        m.inc(&REORGS, &[("watcher", "l1")]);
        m.add(&REORGS, &[("watcher", "l1")], 2.0);
        m.set(&RECORDED_HEAD, &[("watcher", "l1")], 7.0);
        m.observe(&REORG_DEPTH, &[("watcher", "l1")], 3.0);
        m.observe(&REORG_DEPTH, &[("watcher", "l1")], 100.0);
        m.observe(&REORG_DEPTH, &[("watcher", "l1")], 1000.0);
        assert_eq!(m.get(&REORGS, &[("watcher", "l1")]), 3.0);
        assert_eq!(m.get(&REORGS, &[("watcher", "l2_1")]), 0.0);
        let text = m.render();
        assert!(text.contains("rollup_supervisor_recorded_block_number{watcher=\"l1\"} 7\n"), "{text}");
        assert!(text.contains("# TYPE rollup_supervisor_reorg_depth_blocks histogram\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"2\"} 0\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"4\"} 1\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"128\"} 2\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_count{watcher=\"l1\"} 3\n"));
        for family in ALL {
            assert!(text.contains(&format!("# HELP {} ", family.full_name())), "{}", family.name);
        }
    }

    #[test]
    fn names_are_unique_and_carry_units_and_label_values_are_escaped() {
        let mut seen = std::collections::BTreeSet::new();
        for f in ALL {
            assert!(seen.insert(f.name), "{} declared twice", f.name);
            assert!(f.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{}", f.name);
            if f.kind == Kind::Counter {
                assert!(f.name.ends_with("_total"), "counter {} must end in _total", f.name);
            }
        }
        let m = Metrics::default();
        m.set(&BUILD_INFO, &[("version", "a\"b\\c")], 1.0);
        assert!(m.render().contains("build_info{version=\"a\\\"b\\\\c\"} 1\n"));
    }

    #[test]
    fn process_gauges_are_read() {
        let m = Metrics::default();
        m.process_started("test");
        assert!(m.get(&RESIDENT_MEMORY, &[]) > 0.0);
        assert!(m.get(&OPEN_FDS, &[]) > 0.0);
        assert!(m.get(&START_TIME, &[]) > 1.6e9);
    }
}
