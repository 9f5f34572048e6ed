//! Hostile L1 node modes: per mode a fresh supervisor (so VmHWM is the mode's own peak) behind a
//! proxy that hangs, cuts, sends garbage or truncated JSON, lies about its heads, answers `null`
//! for latest or sends huge answers; then the honest node again, and the index must recover.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    common::{Report, Rng, alive, mib, node_head, or_diagnose, peak_rss, tail, wait_caught_up},
    harness::{Anvil, AnvilOptions, HostileNode, Proxy, ProxyMode, rewrite_block_tags, to_hex, wait_for},
    supervisor::{Spec, Supervisor, l1_rows},
};

const PART: &str = "hostile L1 node";
const WAIT: Duration = Duration::from_secs(60);
/// 2^63 - 1: the finalized number a node once sent.
const FAR: u64 = (1 << 63) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts, reads, never answers.
    Hang,
    /// Accepts and closes at once.
    Cut,
    /// `200 OK` with a valid JSON body whose result is not a quantity.
    Garbage,
    /// `200 OK` with cut-off JSON.
    Truncated,
    /// `safe` and `finalized` are block head + 3 with a random hash.
    LyingSafeFinalized,
    /// `finalized` is block 2^63 - 1.
    FinalizedFar,
    /// `null` for the latest block.
    NullLatest,
    /// 200 MB single answers, 50 MB of padding per batch item.
    Huge,
}

impl Mode {
    pub const ALL: [Mode; 8] = [
        Mode::Hang,
        Mode::Cut,
        Mode::Garbage,
        Mode::Truncated,
        Mode::LyingSafeFinalized,
        Mode::FinalizedFar,
        Mode::NullLatest,
        Mode::Huge,
    ];
    pub const SHORT: [Mode; 3] = [Mode::Hang, Mode::LyingSafeFinalized, Mode::Huge];

    fn name(self) -> &'static str {
        match self {
            Mode::Hang => "hang (blackhole)",
            Mode::Cut => "cut",
            Mode::Garbage => "garbage",
            Mode::Truncated => "truncated JSON",
            Mode::LyingSafeFinalized => "lying safe/finalized (head+3, random hash)",
            Mode::FinalizedFar => "finalized = 2^63-1",
            Mode::NullLatest => "null for latest",
            Mode::Huge => "huge answers (200 MB / 50 MB per batch item)",
        }
    }
}

/// What sits between the supervisor and the honest node.
enum Front {
    Proxy(Proxy),
    Huge(HostileNode),
}

impl Front {
    fn url(&self) -> String {
        match self {
            Front::Proxy(p) => p.url(),
            Front::Huge(h) => h.url(),
        }
    }

    fn restore(&self) {
        match self {
            Front::Proxy(p) => p.restore(),
            Front::Huge(h) => h.set_hostile(false),
        }
    }
}

/// One mode's figures.
#[derive(Debug, Default)]
struct Outcome {
    alive_throughout: bool,
    healthz_probes: usize,
    healthz_failures: usize,
    evidence: String,
    rss_before: u64,
    rss_peak: u64,
    recovery: Option<Duration>,
    stop_code: Option<i32>,
    db_check: Option<(i32, String)>,
    mismatches: usize,
}

impl Outcome {
    fn survived(&self) -> bool {
        self.alive_throughout
            && self.healthz_failures == 0
            && self.recovery.is_some()
            && self.stop_code == Some(0)
            && self.db_check.as_ref().is_some_and(|(c, _)| *c == 0)
            && self.mismatches == 0
    }
}

pub async fn run(modes: &[Mode], seed: u64, short: bool, report: &mut Report) -> Result<()> {
    let mut rng = Rng::derive(seed, 3);
    let hold = Duration::from_secs(if short { 3 } else { 5 });
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(100).await?;
    let mut survived = 0;
    for &mode in modes {
        let t = Instant::now();
        let value = match run_mode(mode, &anvil, hold, &mut rng).await {
            Ok(o) => {
                let ok = o.survived();
                survived += usize::from(ok);
                let check = match &o.db_check {
                    Some((0, _)) => "db check ok".to_owned(),
                    Some((c, text)) => format!("db check exit {c}: {}", text.trim()),
                    None => "no db check".to_owned(),
                };
                let value = format!(
                    "{}; peak RSS {:.1} MiB ({:.1} before); /healthz {}/{}; {}; exit {}; {check}; {} mismatches; {}; {:.1} s",
                    if o.alive_throughout { "alive" } else { "DIED" },
                    mib(o.rss_peak),
                    mib(o.rss_before),
                    o.healthz_probes - o.healthz_failures,
                    o.healthz_probes,
                    o.recovery.map_or("NOT recovered".to_owned(), |d| format!("recovered in {:.1} s", d.as_secs_f64())),
                    o.stop_code.map_or("-".to_owned(), |c| c.to_string()),
                    o.mismatches,
                    o.evidence,
                    t.elapsed().as_secs_f64()
                );
                report.add(PART, mode.name(), &value, ok);
                continue;
            }
            Err(e) => format!("{e:#}"),
        };
        report.fail(PART, mode.name(), &value);
    }
    report.add(PART, "modes survived", &format!("{survived} of {}", modes.len()), survived == modes.len());
    Ok(())
}

fn random_hash(rng: &mut Rng) -> String {
    format!("0x{:016x}{:016x}{:016x}{:016x}", rng.next_u64(), rng.next_u64(), rng.next_u64(), rng.next_u64())
}

fn lying_block(number: u64, hash: &str, rng: &mut Rng) -> Value {
    json!({
        "number": to_hex(number),
        "hash": hash,
        "parentHash": random_hash(rng),
        "timestamp": to_hex(1_700_000_000),
    })
}

async fn run_mode(mode: Mode, anvil: &Anvil, hold: Duration, rng: &mut Rng) -> Result<Outcome> {
    let front = match mode {
        Mode::Huge => Front::Huge(HostileNode::start(anvil.addr()).await?),
        _ => Front::Proxy(Proxy::start(anvil.addr()).await?),
    };
    let mut sup = Supervisor::start(&Spec::new(front.url())).await?;
    let pid = sup.pid().context("no pid")?;
    or_diagnose(&sup, wait_caught_up(&sup, anvil, WAIT).await).await?;
    let mut out = Outcome { alive_throughout: true, rss_before: peak_rss(pid)?, ..Default::default() };

    let rpc_errors = "watcher_errors_total{watcher=\"l1\",kind=\"rpc\"}";
    let errors_before = sup.metric(rpc_errors).await?;
    let (head, _) = node_head(anvil).await?;
    match (&front, mode) {
        (Front::Proxy(p), Mode::Hang) => p.set_mode(ProxyMode::Blackhole),
        (Front::Proxy(p), Mode::Cut) => p.set_mode(ProxyMode::Cut),
        (Front::Proxy(p), Mode::Garbage) => p.set_mode(ProxyMode::Garbage),
        (Front::Proxy(p), Mode::Truncated) => p.set_mode(ProxyMode::Truncated),
        (Front::Proxy(p), Mode::LyingSafeFinalized) => {
            let lie = lying_block(head + 3, &random_hash(rng), rng);
            p.rewrite(rewrite_block_tags(&["safe", "finalized"], move |_, _| lie.clone()));
        }
        (Front::Proxy(p), Mode::FinalizedFar) => {
            let lie = lying_block(FAR, &random_hash(rng), rng);
            p.rewrite(rewrite_block_tags(&["finalized"], move |_, _| lie.clone()));
        }
        (Front::Proxy(p), Mode::NullLatest) => p.rewrite(rewrite_block_tags(&["latest"], |_, _| Value::Null)),
        (Front::Huge(h), Mode::Huge) => h.set_hostile(true),
        _ => anyhow::bail!("no front for {mode:?}"),
    }
    // The chain goes on meanwhile (a long way for the huge answers, so that catch-up batches
    // are asked for as well as heads).
    anvil.mine(if mode == Mode::Huge { 250 } else { 10 }).await?;

    // The mode lasts `hold`, and until it has visibly been met; /healthz and the process are
    // probed all along.
    let started = Instant::now();
    let (alive_all, probes, failures) = (Cell::new(true), Cell::new(0), Cell::new(0));
    let evidence = wait_for(&format!("{mode:?} met for {hold:?}"), WAIT, Duration::from_millis(200), || async {
        if !alive(pid) {
            alive_all.set(false);
            anyhow::bail!("the process died");
        }
        probes.set(probes.get() + 1);
        match sup.http_get("/healthz").await {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                failures.set(failures.get() + 1);
                eprintln!("{mode:?}: /healthz {status} {body}");
            }
            Err(e) => {
                failures.set(failures.get() + 1);
                eprintln!("{mode:?}: /healthz: {e:#}");
            }
        }
        let seen = match &front {
            Front::Proxy(p) if matches!(mode, Mode::LyingSafeFinalized | Mode::FinalizedFar | Mode::NullLatest) => {
                (p.rewritten() >= 3).then(|| format!("{} answers rewritten", p.rewritten()))
            }
            Front::Proxy(_) => {
                let errors = sup.metric(rpc_errors).await? - errors_before;
                (errors >= 1.0).then(|| format!("{errors} L1 rpc errors counted"))
            }
            Front::Huge(h) => {
                let refused = sup.log_text().matches("answer larger than").count();
                let sent = h.huge_answers();
                (sent >= 5 && refused >= 5).then(|| format!("{sent} huge answers sent, {refused} refused"))
            }
        };
        Ok(seen.filter(|_| started.elapsed() >= hold))
    })
    .await;
    out.alive_throughout = alive_all.get();
    out.healthz_probes = probes.get();
    out.healthz_failures = failures.get();
    out.rss_peak = peak_rss(pid).unwrap_or(0);
    let evidence = match evidence {
        Ok(e) => e,
        Err(e) => {
            out.evidence = format!("mode not met: {e:#}");
            return Ok(out);
        }
    };
    out.evidence = evidence;

    front.restore();
    anvil.mine(2).await?;
    let t = Instant::now();
    match wait_caught_up(&sup, anvil, WAIT).await {
        Ok(_) => out.recovery = Some(t.elapsed()),
        Err(e) => eprintln!("{mode:?}: no recovery: {e:#}\n{}", tail(&sup.run_log_text(), 30)),
    }
    out.rss_peak = peak_rss(pid).unwrap_or(out.rss_peak);
    out.alive_throughout &= alive(pid);
    if !out.alive_throughout {
        return Ok(out);
    }
    let (head, _) = node_head(anvil).await?;
    out.stop_code = Some(sup.stop().await?);
    out.db_check = Some(sup.db_check()?);
    if out.recovery.is_some() {
        let rows = l1_rows(&sup.db_inspect()?)?;
        let canonical: Vec<_> = anvil.canonical_chain(0, head).await?.into_iter().map(|b| (b.number, b.hash)).collect();
        out.mismatches =
            canonical.iter().zip(&rows).filter(|(c, r)| c != r).count() + canonical.len().abs_diff(rows.len());
    }
    Ok(out)
}
