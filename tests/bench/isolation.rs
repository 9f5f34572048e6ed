//! `UPTIME_BENCH=isolation cargo bench --bench uptime`: does a long L1 catch-up delay the other
//! work of the process? While the supervisor catches up on the cached 10 000-block L1 chain
//! (build it once with `cargo bench --bench l1_flow`), with one L2 chain whose uptime watchdog
//! is on, this measures
//! - `supervisor_syncStatus` latency, polled back to back by one client, against the same
//!   method on the same process once it is idle (the limit);
//! - how late each watchdog check starts against its schedule (`check due` trace events),
//!   with the check interval at 50 ms so that a catch-up of a few hundred milliseconds holds
//!   enough checks to measure (the delay a check suffers does not depend on the interval).
//!
//! Each round starts a fresh supervisor (new datadir) on the same nodes; the figures are over
//! every round's catch-up window.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::json;

use crate::{
    harness::{Anvil, AnvilOptions},
    supervisor::{Supervisor, hex_u64},
    uptime::Fixture,
};

const ROUNDS: usize = 10;
const CHECK_MS: u64 = 50;
const BLOCKS: u64 = 10_000;

/// Latencies of calls made during the catch-up, of calls made once idle, and the lateness of
/// each watchdog check that was due during the catch-up.
pub struct Isolation {
    pub busy: Vec<Duration>,
    pub idle: Vec<Duration>,
    pub late: Vec<Duration>,
    pub catch_up: Vec<Duration>,
}

pub async fn run() -> Result<Isolation> {
    let state =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-cache/l1-{BLOCKS}.json"));
    ensure!(state.exists(), "{} is missing: run `cargo bench --bench l1_flow` once to build it", state.display());
    let l1 = Anvil::spawn(AnvilOptions { load_state: Some(state), ..Default::default() }).await?;
    ensure!(l1.block_number().await? == BLOCKS, "the cached L1 chain did not load");
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let mut out = Isolation { busy: Vec::new(), idle: Vec::new(), late: Vec::new(), catch_up: Vec::new() };
    for _ in 0..ROUNDS {
        let mut spec = f.spec()?;
        spec.l1_url = l1.url();
        spec.start_block = Some(0);
        spec.batch_size = 500; // the default
        spec.chains[0].extra =
            spec.chains[0].extra.replace("check_interval_ms = 250", &format!("check_interval_ms = {CHECK_MS}"));
        spec.env = vec![("RUST_LOG", "info,uptime=trace")];
        let started = Instant::now();
        let mut sup = Supervisor::start(&spec).await?;
        let window_start = now_of_day();
        let mut busy = Vec::new();
        loop {
            let t = Instant::now();
            let status = sup.ok("supervisor_syncStatus", json!([])).await?;
            let took = t.elapsed();
            let latest = status["l1"]["latest"]["number"].as_str().map(hex_u64).transpose()?;
            if latest == Some(BLOCKS) {
                break;
            }
            busy.push(took);
            ensure!(started.elapsed() < Duration::from_secs(120), "the catch-up did not finish");
        }
        let window_end = now_of_day();
        out.catch_up.push(started.elapsed());
        for _ in 0..200 {
            let t = Instant::now();
            sup.ok("supervisor_syncStatus", json!([])).await?;
            out.idle.push(t.elapsed());
        }
        ensure!(sup.stop().await? == 0, "the supervisor did not stop cleanly");
        out.busy.extend(busy);
        out.late.extend(lateness(&sup.log_text(), window_start, window_end)?);
    }
    Ok(out)
}

/// Seconds since midnight UTC, as the log's timestamps count them.
fn now_of_day() -> f64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_secs_f64() % 86_400.0
}

/// The log's timestamp (`2026-12-01T15:01:02.123456Z`) as seconds since midnight.
fn time_of_day(line: &str) -> Option<f64> {
    let clock = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let (h, m, s): (f64, f64, f64) =
        (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// How much later than `CHECK_MS` after the previous one each check started, for the checks
/// that started within `[from, to]`.
fn lateness(log: &str, from: f64, to: f64) -> Result<Vec<Duration>> {
    let times: Vec<f64> = log.lines().filter(|l| l.contains("check due")).filter_map(time_of_day).collect();
    ensure!(times.len() > 2, "no `check due` events in the log");
    let due = CHECK_MS as f64 / 1000.0;
    Ok(times
        .windows(2)
        .filter(|w| w[1] >= from && w[1] <= to)
        .map(|w| Duration::from_secs_f64((w[1] - w[0] - due).max(0.0)))
        .collect())
}

/// `p50 / p99 / max` in milliseconds.
pub fn summary(samples: &mut [Duration]) -> Result<String> {
    samples.sort();
    let ms = |p: f64| crate::harness::percentile(samples, p).map(|d| d.as_secs_f64() * 1000.0).context("no samples");
    Ok(format!("{:.1} / {:.1} / {:.1} ms (n = {})", ms(0.5)?, ms(0.99)?, ms(1.0)?, samples.len()))
}
