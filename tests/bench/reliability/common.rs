//! What the parts of the reliability suite share: a seeded random source, the report table,
//! process probes (`/proc`), and small node helpers.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    harness::{RpcClient, wait_for},
    supervisor::{Supervisor, hex_u64},
};

/// A small deterministic generator (splitmix64): the same seed gives the same run, with no
/// dependency beyond std.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one part of the suite, independent of how much the others drew.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = Self(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo) }
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.range(0, n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    part: String,
    figure: String,
    value: String,
    ok: bool,
}

/// The suite's results: one row per figure or mode.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, part: &str, figure: &str, value: &str, ok: bool) {
        let mark = if ok { "ok" } else { "FAIL" };
        eprintln!("  [{mark}] {part} / {figure}: {value}");
        self.rows.push(Row { part: part.into(), figure: figure.into(), value: value.into(), ok });
    }

    pub fn fail(&mut self, part: &str, figure: &str, why: &str) {
        self.add(part, figure, why, false);
    }

    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| !r.ok).count()
    }

    pub fn failed(&self) -> bool {
        self.failures() > 0
    }

    pub fn print(&self) {
        // A failure's text can be long and multi-line: the table keeps its first line (the
        // whole text went to stderr when the row was added).
        let cell = |s: &str| {
            let first = s.lines().next().unwrap_or_default().replace('|', "\\|");
            if first.chars().count() > 300 {
                format!("{}…", first.chars().take(300).collect::<String>())
            } else {
                first
            }
        };
        println!();
        println!("| part | figure | value | result |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} |",
                cell(&r.part),
                cell(&r.figure),
                cell(&r.value),
                if r.ok { "ok" } else { "**FAIL**" }
            );
        }
        println!();
    }
}

/// A `/proc/PID/status` field in bytes (`VmHWM`, `VmRSS`).
pub fn proc_status_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib << 10)
}

/// The process's peak resident set (`VmHWM`: a lifetime peak), in bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    proc_status_bytes(pid, "VmHWM")
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) S ...`: the state follows the last `)`.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X')
    })
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The node's head: number and hash.
pub async fn node_head(node: &RpcClient) -> Result<(u64, String)> {
    let n = node.block_number().await?;
    Ok((n, node.canonical_chain(n, n).await?[0].hash.clone()))
}

/// Waits until the recorded L1 head is the node's current head, by hash (re-reading the node's
/// head at every poll, so a chain that grows meanwhile is followed).
pub async fn wait_caught_up(sup: &Supervisor, node: &RpcClient, timeout: Duration) -> Result<u64> {
    wait_for("the recorded L1 head to be the node's head", timeout, Duration::from_millis(50), || async {
        let (n, hash) = node_head(node).await?;
        let status = sup.ok("supervisor_syncStatus", json!([])).await?;
        let latest = &status["l1"]["latest"];
        let at = latest["number"].as_str().map(hex_u64).transpose()?;
        Ok((at == Some(n) && latest["hash"].as_str() == Some(hash.as_str())).then_some(n))
    })
    .await
}

/// Waits until `chain`'s derivation head is the L2 node's head, by hash.
pub async fn wait_derived_head(sup: &Supervisor, chain: u64, l2: &RpcClient, timeout: Duration) -> Result<u64> {
    wait_for(&format!("chain {chain} derived up to its node's head"), timeout, Duration::from_millis(50), || async {
        let (n, hash) = node_head(l2).await?;
        let pair: Option<Value> = sup.call("supervisor_localSafe", json!([chain])).await?.ok();
        Ok(pair.filter(|p| p["derived"]["hash"].as_str() == Some(hash.as_str())).map(|_| n))
    })
    .await
}

/// The last `n` lines of a log, for a failure's text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `(number, hash)` of a JSON block reference.
pub fn block_ref(v: &Value) -> Result<(u64, String)> {
    Ok((hex_u64(v["number"].as_str().context("number")?)?, v["hash"].as_str().context("hash")?.to_owned()))
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `result`, or its error with what the supervisor was doing when a wait for it failed (saved by
/// [`diagnose`], the file named in the error).
pub async fn or_diagnose<T>(sup: &Supervisor, result: Result<T>) -> Result<T> {
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            let file = diagnose(sup, &format!("{e:#}")).await;
            Err(e.context(format!("the supervisor's threads, counters and log in {file}")))
        }
    }
}

/// What a supervisor was doing, best effort, saved to a file whose path is returned: every
/// thread's stack (`gdb`, if installed), the node requests and database writes it counted, and
/// its log's tail.
async fn diagnose(sup: &Supervisor, what: &str) -> String {
    let mut out = format!("{what}\n\n");
    if let Some(pid) = sup.pid() {
        // At most 60 s; gdb says on stderr why it cannot attach (e.g. `kernel.yama.ptrace_scope`).
        let stacks = tokio::process::Command::new("timeout")
            .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
            .output()
            .await
            .map_or_else(
                |e| format!("cannot run gdb: {e}"),
                |o| {
                    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                    format!("{}\n{out}\n{err}", o.status)
                },
            );
        out += &format!("## threads of {pid}\n{stacks}\n");
    }
    if let Ok((_, metrics)) = sup.http_get("/metrics").await {
        let counted = [
            "node_rpc_requests_total",
            "blocks_recorded_total",
            "db_write_duration_seconds_count",
            "db_errors_total",
            "watcher_errors_total",
        ];
        out += "## counters\n";
        for line in metrics.lines().filter(|l| counted.iter().any(|c| l.contains(c)) && !l.starts_with('#')) {
            out += line;
            out.push('\n');
        }
    }
    out += &format!("## log tail\n{}\n", tail(&sup.run_log_text(), 200));
    let path = std::env::temp_dir().join(format!("reliability-hang-{}.txt", sup.pid().unwrap_or(0)));
    match std::fs::write(&path, out) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(cannot write {}: {e})", path.display()),
    }
}
