//! The one declarative list of every metric family we export: name, type, labels, help and
//! buckets.
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
        DB_SIZE: Kind::Gauge, "db_size_bytes", [], "Size of the database on disk, sampled every 10 s.";
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
