//! [`Metrics`]: counters and gauges shared by every actor, readable over JSON-RPC
//! (`supervisor_metrics`) and rendered in the Prometheus text format.
//!
//! Names carry units and are totals, never rates (Prometheus computes rates). Labels are part of
//! the series key: `l1_rpc_errors_total` or `actor_restarts_total{actor="l2_watcher_901"}`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

/// The documented series, for `# HELP` lines.
const HELP: &[(&str, &str)] = &[
    ("actor_restarts_total", "Actor restarts by its supervisor, by actor."),
    ("rpc_errors_total", "Failed or malformed node answers, by watcher."),
    ("blocks_recorded_total", "Blocks written to the database, by watcher."),
    ("reorgs_total", "Reorgs handled (rewinds), by watcher."),
    ("reorg_depth_blocks", "Depth of the last reorg, by watcher."),
    ("head_block_number", "Newest block recorded, by watcher."),
    ("db_write_errors_total", "Rejected or failed database writes, by watcher."),
];

/// A process-wide registry of counters and gauges. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    series: Arc<Mutex<BTreeMap<String, u64>>>,
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn add(&self, name: &str, labels: &[(&str, &str)], by: u64) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let v = series.entry(key(name, labels)).or_default();
        *v = v.saturating_add(by);
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series.lock().unwrap_or_else(PoisonError::into_inner).insert(key(name, labels), value);
    }

    /// The value of one series (0 if never touched).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.series.lock().unwrap_or_else(PoisonError::into_inner).get(&key(name, labels)).copied().unwrap_or(0)
    }

    /// Every series and its value.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help) in HELP {
            out += &format!("# HELP rollup_supervisor_{name} {help}\n");
        }
        for (k, v) in self.snapshot() {
            out += &format!("rollup_supervisor_{k} {v}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_by_label() {
        let m = Metrics::default();
        m.inc("rpc_errors_total", &[("watcher", "l1")]);
        m.add("rpc_errors_total", &[("watcher", "l1")], 2);
        m.set("head_block_number", &[("watcher", "l1")], 7);
        assert_eq!(m.get("rpc_errors_total", &[("watcher", "l1")]), 3);
        assert_eq!(m.get("rpc_errors_total", &[("watcher", "l2_1")]), 0);
        assert!(m.render().contains("rollup_supervisor_head_block_number{watcher=\"l1\"} 7\n"));
    }
}
