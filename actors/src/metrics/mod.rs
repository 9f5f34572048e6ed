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

mod families;
#[cfg(test)]
mod tests;

pub use self::families::*;

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
