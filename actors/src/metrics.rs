//! [`Metrics`]: the registry of counters, gauges and histograms, rendered in the Prometheus text
//! format on `GET /metrics` and readable over JSON-RPC (`supervisor_metrics`).
//!
//! Every series belongs to a [`Family`] declared in [`ALL`]: one name (with its unit), one type,
//! its label names, its help text and (histograms) its buckets, so nothing can be exported
//! undocumented. The same list writes the README's metrics table (`bin/reference.rs`). Counters are
//! totals, never rates (Prometheus computes rates). Labels are part of the series key:
//! `rollup_supervisor_actor_restarts_total{actor="l2_watcher_901"}`.
//!
//! Storage and text format are `metrics-exporter-prometheus`'s: each [`Metrics`] owns one
//! [`PrometheusRecorder`] and drives it through the `metrics` facade's [`Recorder`] trait. No
//! global recorder is installed, so every `Metrics::default()` (each test's) is isolated, whatever
//! thread writes to it. The standard process metrics (`process_cpu_seconds_total`, ...) come from
//! `metrics-process`, collected into this recorder on every [`Metrics::render`].

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder, formatting};

/// Every name the supervisor itself exports starts with this.
pub const PREFIX: &str = "rollup_supervisor_";

/// A metric's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Only goes up (and resets to 0 when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into these buckets (upper bounds), with their sum and count.
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

/// Who writes a family's series and registers its help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The actors, through [`Metrics`]; exported as [`PREFIX`] + name, described by [`Metrics`].
    Supervisor,
    /// `metrics_process::Collector`, which names and describes them (standard Prometheus names,
    /// no prefix) and sets them on every render.
    Process,
}

/// One metric family: a name, a type, the label names its series carry, and its help text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Family {
    /// The name without [`PREFIX`].
    pub name: &'static str,
    /// The exported name: [`PREFIX`] + name for [`Owner::Supervisor`], the name itself otherwise.
    pub exported: &'static str,
    /// Who writes and describes it.
    pub owner: Owner,
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
        self.exported.to_owned()
    }
}

/// Latency buckets in seconds: 1 ms to 30 s.
const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Reorg depth buckets in blocks.
const DEPTH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

macro_rules! families {
    ($($owner:ident $prefix:literal {
        $($id:ident: $kind:expr, $name:literal, [$($label:literal),*], $help:literal;)*
    })*) => {
        $($(
            #[doc = $help]
            pub const $id: Family = Family {
                name: $name,
                exported: concat!($prefix, $name),
                owner: Owner::$owner,
                kind: $kind,
                labels: &[$($label),*],
                help: $help,
            };
        )*)*
        /// Every family: the supervisor's, then the process metrics.
        pub const ALL: &[Family] = &[$($($id),*),*];
    };
}

families! {
    Supervisor "rollup_supervisor_" {
        BUILD_INFO: Kind::Gauge, "build_info", ["version"], "Always 1; the version label says which build runs.";
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
    // What `metrics_process::Collector` exports on Linux, with its own help texts (a test checks
    // they are still the collector's).
    Process "" {
        PROCESS_CPU_SECONDS: Kind::Counter, "process_cpu_seconds_total", [], "Total user and system CPU time spent in seconds.";
        PROCESS_OPEN_FDS: Kind::Gauge, "process_open_fds", [], "Number of open file descriptors.";
        PROCESS_MAX_FDS: Kind::Gauge, "process_max_fds", [], "Maximum number of open file descriptors.";
        PROCESS_VIRTUAL_MEMORY: Kind::Gauge, "process_virtual_memory_bytes", [], "Virtual memory size in bytes.";
        PROCESS_VIRTUAL_MEMORY_MAX: Kind::Gauge, "process_virtual_memory_max_bytes", [], "Maximum amount of virtual memory available in bytes.";
        PROCESS_RESIDENT_MEMORY: Kind::Gauge, "process_resident_memory_bytes", [], "Resident memory size in bytes.";
        PROCESS_START_TIME: Kind::Gauge, "process_start_time_seconds", [], "Start time of the process since unix epoch in seconds.";
        PROCESS_THREADS: Kind::Gauge, "process_threads", [], "Number of OS threads in the process.";
    }
}

/// True if every histogram family has buckets (the exporter refuses empty ones).
const fn every_histogram_has_buckets(families: &[Family]) -> bool {
    let mut i = 0;
    while i < families.len() {
        if let Kind::Histogram(bounds) = families[i].kind
            && bounds.is_empty()
        {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(every_histogram_has_buckets(ALL), "a histogram family without buckets");

/// Histogram observations are buffered by the recorder until a render (or an upkeep) folds them
/// into the buckets; without a scraper, at most this many wait.
const UPKEEP_EVERY: u64 = 1024;

/// What the recorder is told about the call site (the Prometheus exporter ignores it).
static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

#[derive(Debug)]
struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    observations: AtomicU64,
}

/// The registry. Cheap to clone; every clone shares the same series, and every
/// `Metrics::default()` is a registry of its own.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut builder = PrometheusBuilder::new();
        for family in ALL {
            if let Kind::Histogram(bounds) = family.kind {
                builder = match builder.set_buckets_for_metric(Matcher::Full(family.exported.to_owned()), bounds) {
                    Ok(builder) => builder,
                    // Its only error is empty buckets, which `every_histogram_has_buckets` rules out.
                    Err(e) => unreachable!("{}: {e}", family.exported),
                };
            }
        }
        let recorder = builder.build_recorder();
        for family in ALL.iter().filter(|f| f.owner == Owner::Supervisor) {
            let (name, help) = (KeyName::from(family.exported), SharedString::const_str(family.help));
            match family.kind {
                Kind::Counter => recorder.describe_counter(name, None, help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Histogram(_) => recorder.describe_histogram(name, None, help),
            }
        }
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());
        let handle = recorder.handle();
        Metrics { inner: Arc::new(Inner { recorder, handle, process, observations: AtomicU64::new(0) }) }
    }
}

fn check(family: &Family, labels: &[(&str, &str)]) {
    debug_assert!(
        labels.len() == family.labels.len() && labels.iter().zip(family.labels).all(|((k, _), want)| k == want),
        "{}: labels {labels:?}, declared {:?}",
        family.name,
        family.labels
    );
}

/// The recorder's key of one series.
fn key(family: &Family, labels: &[(&str, &str)]) -> Key {
    check(family, labels);
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| {
            let k = family
                .labels
                .iter()
                .find(|declared| *declared == k)
                .map_or_else(|| SharedString::from((*k).to_owned()), |declared| SharedString::const_str(declared));
            Label::new(k, (*v).to_owned())
        })
        .collect();
    Key::from_parts(family.exported, labels)
}

/// A series as it is exported: `name{k="v",...}`, labels escaped as the exporter escapes them.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", formatting::sanitize_label_key(k), formatting::sanitize_label_value(v)))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// A sample line of an exposition: (series, value); `None` for comments and blank lines.
fn sample(line: &str) -> Option<(&str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    Some((series, value.parse().ok()?))
}

/// A counter increment: counters count whole events.
fn whole(by: f64) -> u64 {
    debug_assert!(by >= 0.0 && by.fract() == 0.0, "a counter goes up by whole events, not {by}");
    by as u64
}

impl Metrics {
    /// Adds `by` to a counter (to a gauge, if the family is one).
    pub fn add(&self, family: &Family, labels: &[(&str, &str)], by: f64) {
        let key = key(family, labels);
        match family.kind {
            Kind::Counter => self.inner.recorder.register_counter(&key, &METADATA).increment(whole(by)),
            Kind::Gauge => self.inner.recorder.register_gauge(&key, &METADATA).increment(by),
            Kind::Histogram(_) => debug_assert!(false, "{} is a histogram", family.name),
        }
    }

    /// Adds one to a counter.
    pub fn inc(&self, family: &Family, labels: &[(&str, &str)]) {
        self.add(family, labels, 1.0);
    }

    /// Creates a series at 0 if it does not exist, so that `increase()` sees its first event.
    pub fn touch(&self, family: &Family, labels: &[(&str, &str)]) {
        match family.kind {
            Kind::Histogram(_) => self.touch_histogram(family, labels),
            _ => self.add(family, labels, 0.0),
        }
    }

    /// Creates a histogram with empty buckets if it does not exist.
    pub fn touch_histogram(&self, family: &Family, labels: &[(&str, &str)]) {
        let key = key(family, labels);
        if let Kind::Histogram(_) = family.kind {
            // Registering creates the series; the handle is not needed.
            let _ = self.inner.recorder.register_histogram(&key, &METADATA);
        }
    }

    /// Sets a gauge (a counter, if the family is one: to a whole number).
    pub fn set(&self, family: &Family, labels: &[(&str, &str)], value: f64) {
        let key = key(family, labels);
        match family.kind {
            Kind::Gauge => self.inner.recorder.register_gauge(&key, &METADATA).set(value),
            Kind::Counter => self.inner.recorder.register_counter(&key, &METADATA).absolute(whole(value)),
            Kind::Histogram(_) => debug_assert!(false, "{} is a histogram", family.name),
        }
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, family: &Family, labels: &[(&str, &str)], value: f64) {
        let Kind::Histogram(_) = family.kind else {
            debug_assert!(false, "{} is not a histogram", family.name);
            return;
        };
        self.inner.recorder.register_histogram(&key(family, labels), &METADATA).record(value);
        if self.inner.observations.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.inner.handle.run_upkeep();
        }
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, family: &Family, labels: &[(&str, &str)], d: Duration) {
        self.observe(family, labels, d.as_secs_f64());
    }

    /// The value of a counter or gauge (0 if never touched); a histogram's count. Read from the
    /// exposition, so it costs a render: for tests and tools, not for hot paths.
    pub fn get(&self, family: &Family, labels: &[(&str, &str)]) -> f64 {
        let text = match family.owner {
            Owner::Supervisor => self.exposition(),
            Owner::Process => self.render(),
        };
        let name = match family.kind {
            Kind::Histogram(_) => format!("{}_count", family.exported),
            _ => family.exported.to_owned(),
        };
        let want = series(&name, labels);
        text.lines().filter_map(sample).find(|(s, _)| *s == want).map_or(0.0, |(_, v)| v)
    }

    /// Every counter and gauge series (histograms by their count), keyed as exported.
    pub fn snapshot(&self) -> BTreeMap<String, f64> {
        let text = self.render();
        let mut out = BTreeMap::new();
        // Inside a histogram family: its `_count` series, the only one of its lines kept.
        let mut count: Option<String> = None;
        for line in text.lines() {
            if let Some(family) = line.strip_prefix("# TYPE ") {
                count = family.strip_suffix(" histogram").map(|name| format!("{name}_count"));
            }
            let Some((series, value)) = sample(line) else { continue };
            let name = series.split_once('{').map_or(series, |(name, _)| name);
            if count.as_ref().is_none_or(|count| count == name) {
                out.insert(series.to_owned(), value);
            }
        }
        out
    }

    /// The Prometheus text exposition (format 0.0.4) of every family, process metrics sampled now.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.inner.recorder, || self.inner.process.collect());
        self.exposition()
    }

    /// The recorder's exposition, then `# HELP`/`# TYPE` of every family that has no series yet
    /// (the exporter writes only families with series), so every family is always documented.
    fn exposition(&self) -> String {
        let mut text = self.inner.handle.render();
        let mut undocumented = String::new();
        {
            let typed: BTreeSet<&str> =
                text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
            for family in ALL.iter().filter(|f| !typed.contains(f.exported)) {
                formatting::write_help_line(&mut undocumented, family.exported, None, None, family.help);
                formatting::write_type_line(&mut undocumented, family.exported, None, None, family.kind.as_str());
                undocumented.push('\n');
            }
        }
        text.push_str(&undocumented);
        text
    }

    /// Sets the build gauge and samples the process metrics; call once at start-up.
    pub fn process_started(&self, version: &str) {
        self.set(&BUILD_INFO, &[("version", version)], 1.0);
        metrics::with_local_recorder(&self.inner.recorder, || self.inner.process.collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The families an exposition declares (name → help, type), after checking its structure: one
    /// `# HELP` and one `# TYPE` per family, before its samples; every sample belongs to the family
    /// typed last (a histogram's as `_bucket`, `_sum`, `_count`) and has a number for a value.
    fn families_in(text: &str) -> BTreeMap<String, (String, String)> {
        let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut help: Option<(String, String)> = None;
        let mut current: Option<(String, String)> = None;
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').expect("HELP name text");
                assert!(!families.contains_key(name), "{name} documented twice:\n{text}");
                help = Some((name.to_owned(), text.to_owned()));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name type");
                let (helped, text) = help.take().expect("HELP before TYPE");
                assert_eq!(helped, name, "HELP and TYPE of one family");
                assert!(families.insert(name.to_owned(), (text, kind.to_owned())).is_none(), "{name} typed twice");
                current = Some((name.to_owned(), kind.to_owned()));
            } else {
                let (series, value) = line.rsplit_once(' ').expect("series value");
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let name = series.split_once('{').map_or(series, |(name, labels)| {
                    assert!(labels.ends_with('}'), "{line}");
                    name
                });
                let (family, kind) = current.as_ref().expect("a sample after a TYPE");
                let ok = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(family)),
                    _ => name == family,
                };
                assert!(ok, "{line} outside its family ({family})");
            }
        }
        families
    }

    #[test]
    fn counters_gauges_and_histograms_render_with_help_and_type() {
        let m = Metrics::default();
        m.inc(&REORGS, &[("watcher", "l1")]);
        m.add(&REORGS, &[("watcher", "l1")], 2.0);
        m.set(&RECORDED_HEAD, &[("watcher", "l1")], 7.0);
        m.set(&SIGNER_BALANCE, &[("chain", "901")], 1e19);
        m.observe(&REORG_DEPTH, &[("watcher", "l1")], 3.0);
        m.observe(&REORG_DEPTH, &[("watcher", "l1")], 100.0);
        m.observe(&REORG_DEPTH, &[("watcher", "l1")], 1000.0);
        assert_eq!(m.get(&REORGS, &[("watcher", "l1")]), 3.0);
        assert_eq!(m.get(&REORGS, &[("watcher", "l2_1")]), 0.0);
        assert_eq!(m.get(&SIGNER_BALANCE, &[("chain", "901")]), 1e19);
        assert_eq!(m.get(&REORG_DEPTH, &[("watcher", "l1")]), 3.0);
        let text = m.render();
        assert!(text.contains("rollup_supervisor_recorded_block_number{watcher=\"l1\"} 7\n"), "{text}");
        assert!(text.contains("rollup_supervisor_reorgs_total{watcher=\"l1\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE rollup_supervisor_reorg_depth_blocks histogram\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"2\"} 0\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"4\"} 1\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"128\"} 2\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_sum{watcher=\"l1\"} 1103\n"));
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_count{watcher=\"l1\"} 3\n"));
        // Every family once, with its help and type (the process metrics' help is the collector's).
        let declared = families_in(&text);
        for family in ALL {
            let (help, kind) = declared.get(family.exported).unwrap_or_else(|| panic!("{} missing", family.exported));
            assert_eq!((help.as_str(), kind.as_str()), (family.help, family.kind.as_str()), "{}", family.exported);
        }
        assert_eq!(declared.len(), ALL.len(), "exported but not declared: {declared:?}");
    }

    #[test]
    fn names_are_unique_and_carry_units_and_label_values_are_escaped() {
        let mut seen = std::collections::BTreeSet::new();
        for f in ALL {
            assert!(seen.insert(f.exported), "{} declared twice", f.exported);
            assert!(f.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{}", f.name);
            if f.kind == Kind::Counter {
                assert!(f.name.ends_with("_total"), "counter {} must end in _total", f.name);
            }
            match f.owner {
                Owner::Supervisor => assert_eq!(f.exported, format!("{PREFIX}{}", f.name)),
                Owner::Process => {
                    assert!(f.exported == f.name && f.name.starts_with("process_") && f.labels.is_empty(), "{}", f.name)
                }
            }
        }
        let m = Metrics::default();
        m.set(&BUILD_INFO, &[("version", "a\"b\\c\nd")], 1.0);
        assert!(m.render().contains("build_info{version=\"a\\\"b\\\\c\\nd\"} 1\n"));
        assert_eq!(m.get(&BUILD_INFO, &[("version", "a\"b\\c\nd")]), 1.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_the_standard_ones() {
        let m = Metrics::default();
        m.process_started("test");
        assert_eq!(m.get(&BUILD_INFO, &[("version", "test")]), 1.0);
        assert!(m.get(&PROCESS_RESIDENT_MEMORY, &[]) > 0.0);
        assert!(m.get(&PROCESS_VIRTUAL_MEMORY, &[]) >= m.get(&PROCESS_RESIDENT_MEMORY, &[]));
        assert!(m.get(&PROCESS_OPEN_FDS, &[]) > 0.0);
        assert!(m.get(&PROCESS_MAX_FDS, &[]) >= m.get(&PROCESS_OPEN_FDS, &[]));
        assert!(m.get(&PROCESS_THREADS, &[]) >= 1.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64();
        let started = m.get(&PROCESS_START_TIME, &[]);
        assert!(started > 1.6e9 && started <= now + 1.0, "{started}");
        let text = m.render();
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("process_cpu_seconds_total ")), "{text}");
    }

    #[test]
    fn every_instance_is_its_own_registry_written_from_any_thread() {
        let (a, b) = (Metrics::default(), Metrics::default());
        let writer = a.clone();
        std::thread::spawn(move || writer.inc(&OUTAGES, &[("chain", "901")])).join().expect("writer thread");
        assert_eq!(a.get(&OUTAGES, &[("chain", "901")]), 1.0);
        assert_eq!(b.get(&OUTAGES, &[("chain", "901")]), 0.0);
        assert!(!b.render().contains("rollup_supervisor_outages_total{"));
    }

    #[test]
    fn touched_series_render_at_zero() {
        let m = Metrics::default();
        m.touch(&OUTAGES, &[("chain", "901")]);
        m.touch_histogram(&REORG_DEPTH, &[("watcher", "l1")]);
        let text = m.render();
        assert!(text.contains("rollup_supervisor_outages_total{chain=\"901\"} 0\n"), "{text}");
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"1\"} 0\n"), "{text}");
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_bucket{watcher=\"l1\",le=\"+Inf\"} 0\n"), "{text}");
        assert!(text.contains("rollup_supervisor_reorg_depth_blocks_count{watcher=\"l1\"} 0\n"), "{text}");
        m.inc(&OUTAGES, &[("chain", "901")]);
        m.touch(&OUTAGES, &[("chain", "901")]);
        assert_eq!(m.get(&OUTAGES, &[("chain", "901")]), 1.0, "touching keeps the value");
    }

    #[test]
    fn the_snapshot_holds_counters_gauges_and_histogram_counts_as_exported() {
        let m = Metrics::default();
        m.inc(&NODE_REQUESTS, &[("endpoint", "l1"), ("method", "eth_chainId")]);
        m.set(&DB_SIZE, &[], 4096.0);
        m.observe(&NODE_LATENCY, &[("endpoint", "l1")], 0.002);
        m.observe(&NODE_LATENCY, &[("endpoint", "l1")], 0.2);
        let snapshot = m.snapshot();
        let get = |k: &str| snapshot.get(k).copied();
        assert_eq!(get("rollup_supervisor_node_rpc_requests_total{endpoint=\"l1\",method=\"eth_chainId\"}"), Some(1.0));
        assert_eq!(get("rollup_supervisor_db_size_bytes"), Some(4096.0));
        assert_eq!(get("rollup_supervisor_node_rpc_request_duration_seconds_count{endpoint=\"l1\"}"), Some(2.0));
        assert!(!snapshot.keys().any(|k| k.contains("_bucket") || k.contains("_sum")), "{snapshot:?}");
        #[cfg(target_os = "linux")]
        assert!(get("process_resident_memory_bytes").is_some_and(|v| v > 0.0), "{snapshot:?}");
    }

    #[test]
    fn observations_beyond_one_upkeep_batch_are_all_counted() {
        let m = Metrics::default();
        let n = 3 * UPKEEP_EVERY + 5;
        for i in 0..n {
            m.observe(&DB_WRITE_LATENCY, &[("op", "record_l1")], if i % 2 == 0 { 0.003 } else { 20.0 });
        }
        assert_eq!(m.get(&DB_WRITE_LATENCY, &[("op", "record_l1")]), n as f64);
        let text = m.render();
        let le = |bound: &str| {
            let want = format!("rollup_supervisor_db_write_duration_seconds_bucket{{op=\"record_l1\",le=\"{bound}\"}}");
            text.lines().filter_map(sample).find(|(s, _)| *s == want).map(|(_, v)| v)
        };
        assert_eq!(le("0.005"), Some(n.div_ceil(2) as f64));
        assert_eq!(le("30"), Some(n as f64));
    }

    /// Render time and the cost of one write, on a registry the size of a two-chain deployment.
    /// `cargo test -p rollup-supervisor-actors --lib --release -- --ignored --nocapture timing`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn timing() {
        use std::time::Instant;
        let m = Metrics::default();
        let values = ["l1", "l2_901", "l2_902", "l2_901_submit_0"];
        let mut series = 0;
        for family in ALL.iter().filter(|f| f.owner == Owner::Supervisor) {
            for v in values {
                let labels: Vec<(&str, &str)> = family.labels.iter().map(|l| (*l, v)).collect();
                match family.kind {
                    Kind::Counter => m.add(family, &labels, 3.0),
                    Kind::Gauge => m.set(family, &labels, 12345.0),
                    Kind::Histogram(_) => (0..100).for_each(|i| m.observe(family, &labels, f64::from(i) / 1000.0)),
                }
                series += 1;
                if family.labels.is_empty() {
                    break;
                }
            }
        }
        let renders = 200;
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..renders {
            bytes += m.render().len();
        }
        let render = started.elapsed() / renders;
        let writes = 200_000u32;
        let labels = [("endpoint", "l2_901"), ("method", "eth_getBlockByNumber")];
        let started = Instant::now();
        for _ in 0..writes {
            m.inc(&NODE_REQUESTS, &labels);
        }
        let inc = started.elapsed() / writes;
        let started = Instant::now();
        for i in 0..writes {
            m.set(&RECORDED_HEAD, &[("watcher", "l1")], f64::from(i));
        }
        let set = started.elapsed() / writes;
        let started = Instant::now();
        for i in 0..writes {
            m.observe(&NODE_LATENCY, &[("endpoint", "l1")], f64::from(i % 100) / 1000.0);
        }
        let observe = started.elapsed() / writes;
        eprintln!(
            "{series} series, {} bytes: render {render:?}, inc {inc:?}, set {set:?}, observe {observe:?}",
            bytes / renders as usize
        );
    }
}
