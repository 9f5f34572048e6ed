//! A fuzz of the JSON-RPC server: concurrent clients send malformed requests while another task
//! measures `supervisor_syncStatus` latency. The process must stay alive with `/healthz` 200,
//! no request may hang, and no answer may be a 5xx.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    common::{Report, Rng, alive, mib, ms, peak_rss, tail, wait_caught_up},
    harness::{Anvil, AnvilOptions, RpcClient, consts::L2_CHAIN_ID, percentile},
    supervisor::{ChainSpec, Spec, Supervisor},
};

const PART: &str = "JSON-RPC fuzz";
const WORKERS: u64 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const METHODS: [&str; 10] = [
    "supervisor_syncStatus",
    "supervisor_l1BlockByNumber",
    "supervisor_localSafe",
    "supervisor_derivedAt",
    "supervisor_derivedFrom",
    "supervisor_uptimeStatus",
    "supervisor_metrics",
    "supervisor_metricsText",
    "admin_forceUptimeUpdate",
    "rpc.discover",
];

/// What the fuzz clients saw.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    by_status: [usize; 6], // 1xx..5xx by hundreds, [0] unused
    closed: usize,
    hung: usize,
    raw: usize,
    healthz_failures: usize,
    died: bool,
    first_5xx: Option<String>,
    first_hang: Option<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        for (a, b) in self.by_status.iter_mut().zip(o.by_status) {
            *a += b;
        }
        self.closed += o.closed;
        self.hung += o.hung;
        self.raw += o.raw;
        self.healthz_failures += o.healthz_failures;
        self.died |= o.died;
        self.first_5xx = self.first_5xx.take().or(o.first_5xx);
        self.first_hang = self.first_hang.take().or(o.first_hang);
    }
}

/// One fuzz request: an HTTP POST body (with its content type), or raw bytes on a connection.
enum Case {
    Http { kind: &'static str, body: Vec<u8>, content_type: &'static str },
    Raw { bytes: Vec<u8> },
}

pub async fn run(requests: usize, seed: u64, report: &mut Report) -> Result<()> {
    let started = Instant::now();
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    let l2 = Anvil::spawn(AnvilOptions { chain_id: Some(L2_CHAIN_ID), ..Default::default() }).await?;
    l1.mine(100).await?;
    l2.mine(20).await?;
    let mut spec = Spec::new(l1.url());
    spec.chains = vec![ChainSpec::new(L2_CHAIN_ID, l2.url(), "latest")];
    let mut sup = Supervisor::start(&spec).await?;
    let pid = sup.pid().context("no pid")?;
    wait_caught_up(&sup, &l1, Duration::from_secs(60)).await?;
    let rpc = Arc::new(RpcClient::with_timeout(sup.rpc_url.clone(), REQUEST_TIMEOUT)?);

    let idle = sync_status_latencies(&rpc, 200).await?;

    // The latency probe: syncStatus every 10 ms while the fuzz runs.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new((Vec::<Duration>::new(), 0usize)));
    let probe = {
        let (stop, samples, rpc) = (stop.clone(), samples.clone(), rpc.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let ok = sync_status(&rpc).await.is_ok();
                {
                    let mut s = samples.lock().unwrap();
                    if ok { s.0.push(t.elapsed()) } else { s.1 += 1 }
                }
                // The probe's pace.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let issued = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (issued, url, metrics) = (issued.clone(), sup.rpc_url.clone(), sup.metrics_url.clone());
        let mut rng = Rng::derive(seed, 100 + w);
        workers.push(tokio::spawn(async move { worker(&mut rng, &url, &metrics, pid, &issued, requests).await }));
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await??);
    }
    let fuzz_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    probe.await?;
    let (mut busy, probe_errors) = std::mem::take(&mut *samples.lock().unwrap());
    busy.sort();

    let peak = peak_rss(pid).unwrap_or(0);
    let still_alive = alive(pid);
    let healthz = if still_alive { sup.http_get("/healthz").await.map(|(s, _)| s).unwrap_or(0) } else { 0 };
    let answers = still_alive && sync_status(&rpc).await.is_ok();
    let stop_code = if still_alive { sup.stop().await? } else { -1 };
    let (check, check_text) = sup.db_check()?;

    let s = &tally.by_status;
    report.add(
        PART,
        "requests",
        &format!(
            "{} ({} HTTP: {} 2xx, {} 4xx, {} 5xx, {} closed by the server; {} raw TCP) in {:.1} s",
            tally.sent,
            tally.sent - tally.raw,
            s[2],
            s[4],
            s[5],
            tally.closed,
            tally.raw,
            fuzz_time.as_secs_f64()
        ),
        tally.sent >= requests,
    );
    report.add(
        PART,
        "5xx answers",
        &format!("{}{}", s[5], tally.first_5xx.map_or(String::new(), |f| format!("; first: {f}"))),
        s[5] == 0,
    );
    report.add(
        PART,
        "hung requests (no answer in 10 s)",
        &format!("{}{}", tally.hung, tally.first_hang.map_or(String::new(), |f| format!("; first: {f}"))),
        tally.hung == 0,
    );
    let crashed = tally.died || !still_alive;
    report.add(
        PART,
        "crashes",
        &if crashed { format!("process gone; log tail: {}", tail(&sup.run_log_text(), 10)) } else { "0".to_owned() },
        !crashed,
    );
    report.add(
        PART,
        "/healthz during and after",
        &format!("{} failed probes; {healthz} at the end", tally.healthz_failures),
        tally.healthz_failures == 0 && healthz == 200,
    );
    // The benchmarks' one percentile; no samples reads "none".
    let at = |sorted: &[Duration], p: f64| percentile(sorted, p).map_or_else(|| "none".to_owned(), ms);
    report.add(
        PART,
        "syncStatus latency idle (p50 / p99)",
        &format!("{} / {} ({} calls)", at(&idle, 0.5), at(&idle, 0.99), idle.len()),
        true,
    );
    report.add(
        PART,
        "syncStatus latency during fuzz (p50 / p99 / max)",
        &format!(
            "{} / {} / {} ({} calls, {probe_errors} failed)",
            at(&busy, 0.5),
            at(&busy, 0.99),
            ms(busy.last().copied().unwrap_or_default()),
            busy.len()
        ),
        probe_errors == 0 && answers && !busy.is_empty(),
    );
    report.add(PART, "peak RSS", &format!("{:.1} MiB", mib(peak)), true);
    report.add(
        PART,
        "SIGTERM exit code, db check",
        &format!("{stop_code}, {check}{}", if check == 0 { String::new() } else { format!(": {check_text}") }),
        stop_code == 0 && check == 0,
    );
    Ok(())
}

/// A well-formed `supervisor_syncStatus` that names an L1 head.
async fn sync_status(rpc: &RpcClient) -> Result<()> {
    let status: serde_json::Value = rpc.rpc("supervisor_syncStatus", json!([])).await?;
    anyhow::ensure!(status["l1"]["latest"]["number"].is_string(), "no L1 head in {status}");
    Ok(())
}

async fn sync_status_latencies(rpc: &RpcClient, n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sync_status(rpc).await?;
        out.push(t.elapsed());
    }
    out.sort();
    Ok(out)
}

async fn worker(
    rng: &mut Rng,
    url: &str,
    metrics: &str,
    pid: u32,
    issued: &AtomicUsize,
    total: usize,
) -> Result<Tally> {
    // No pooled connections: a malformed request must not poison the next one's connection.
    let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).pool_max_idle_per_host(0).build()?;
    let addr = url.trim_start_matches("http://").to_owned();
    let mut t = Tally::default();
    while issued.fetch_add(1, Ordering::SeqCst) < total {
        t.sent += 1;
        match gen_case(rng) {
            Case::Raw { bytes } => {
                t.raw += 1;
                if let Ok(mut s) = TcpStream::connect(&addr).await {
                    let _ = s.write_all(&bytes).await;
                    let _ = s.shutdown().await;
                    let mut sink = [0u8; 4096];
                    // Whatever the server answers (400, or a close) within a moment, then drop.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                }
            }
            Case::Http { kind, body, content_type } => {
                let len = body.len();
                let sent = http.post(url).header("content-type", content_type).body(body).send().await;
                match sent {
                    Ok(reply) => {
                        let status = reply.status().as_u16();
                        t.by_status[usize::from(status / 100).min(5)] += 1;
                        let text = reply.text().await.unwrap_or_default();
                        if status >= 500 && t.first_5xx.is_none() {
                            t.first_5xx = Some(format!("{kind} ({len} bytes): {status} {}", tail(&text, 1)));
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        t.hung += 1;
                        t.first_hang.get_or_insert_with(|| format!("{kind} ({len} bytes)"));
                    }
                    Err(_) => t.closed += 1,
                }
            }
        }
        if t.sent % 250 == 0 {
            if !alive(pid) {
                t.died = true;
                break;
            }
            let ok = http.get(format!("{metrics}/healthz")).send().await.is_ok_and(|r| r.status().as_u16() == 200);
            t.healthz_failures += usize::from(!ok);
        }
    }
    Ok(t)
}

#[path = "gen.rs"]
mod generate;
use generate::gen_case;
