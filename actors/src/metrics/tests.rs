//! The registry: isolation, zero series, the text format, process metrics.

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
