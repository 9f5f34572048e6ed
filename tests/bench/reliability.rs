//! The reliability suite (not a benchmark, not part of `cargo test`): `tools/reliability.sh`, or
//! `cargo bench --bench reliability -- [--short] [--kills N] [--fuzz N] [--seed S]`.
//!
//! It runs the release binary against real anvil nodes and prints one markdown table:
//!
//! 1. **Crash storm** (`reliability/storm.rs`): one L1 and one L2 anvil; `kill -9` spread over
//!    three phases — catch-up (a pre-mined L1 chain, read one small batch at a time), following
//!    (blocks mined while it runs) and live L1 reorgs of depth 1–5 (some while it is down) —
//!    with some kills before the process is even ready. `db check` runs after every kill. At the
//!    end it restarts, waits until the recorded L1 head is the node's head (by hash) and the L2
//!    chain's derivation head is the L2 node's head, stops with SIGTERM (exit 0), and compares
//!    every stored L1 row with the node's canonical chain hash by hash, and every derivation
//!    entry with both nodes' canonical chains.
//! 2. **Hostile L1 node** (`reliability/hostile.rs`): per mode a fresh supervisor behind a
//!    proxy (so that its peak RSS, VmHWM, is the mode's own): hang, cut, garbage, truncated,
//!    lying safe/finalized heads (head + 3 with a random hash), a finalized head of 2^63 - 1,
//!    `null` for latest, and 200 MB answers / 50 MB of padding per batch item. A mode is
//!    survived if the process stays alive with `/healthz` 200 throughout, the index then
//!    reaches the node's head with the right hash, SIGTERM ends it with 0, `db check` passes
//!    and every stored row is canonical.
//! 3. **JSON-RPC fuzz** (`reliability/fuzz.rs`): concurrent clients send malformed requests
//!    (random bytes, truncated JSON, wrong param types, unknown methods, odd ids, deep nesting,
//!    oversized bodies, junk and empty batches, raw non-HTTP bytes) while another task measures
//!    `supervisor_syncStatus` latency; the process must stay alive with `/healthz` 200.
//!
//! `--short` (CI): 10 kills, 3 hostile modes, 2 000 fuzz requests. Default: 60 kills, every
//! mode, 40 000 fuzz requests. `--only storm|hostile|fuzz` runs one part. Every random choice
//! comes from `--seed` (default fixed), so a run can be repeated. Exits 1 if any row failed.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../it/harness/mod.rs"]
mod harness;
#[path = "../it/supervisor.rs"]
mod supervisor;

#[path = "reliability/common.rs"]
mod common;
#[path = "reliability/fuzz.rs"]
mod fuzz;
#[path = "reliability/hostile.rs"]
mod hostile;
#[path = "reliability/storm.rs"]
mod storm;

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use common::Report;

/// What to run, from the command line.
#[derive(Debug, Clone)]
struct Options {
    short: bool,
    kills: usize,
    fuzz_requests: usize,
    seed: u64,
    modes: Vec<hostile::Mode>,
    /// The one part to run (`--only`); every part when `None`.
    only: Option<String>,
}

fn parse_args() -> Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let short = args.iter().any(|a| a == "--short");
    let mut opts = Options {
        short,
        kills: if short { 10 } else { 60 },
        fuzz_requests: if short { 2_000 } else { 40_000 },
        seed: 0x5eed_2026,
        modes: if short { hostile::Mode::SHORT.to_vec() } else { hostile::Mode::ALL.to_vec() },
        only: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64> {
            let v = it.next().with_context(|| format!("{name} needs a value"))?;
            v.parse().with_context(|| format!("{name} {v}: not a number"))
        };
        match arg.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--short" | "--bench" => {}
            "--kills" => opts.kills = usize::try_from(value("--kills")?)?,
            "--fuzz" => opts.fuzz_requests = usize::try_from(value("--fuzz")?)?,
            "--seed" => opts.seed = value("--seed")?,
            "--only" => match it.next().map(String::as_str) {
                Some(part @ ("storm" | "hostile" | "fuzz")) => opts.only = Some(part.to_owned()),
                other => bail!("--only needs storm, hostile or fuzz, not {other:?}"),
            },
            "--help" | "-h" => {
                println!("usage: reliability [--short] [--kills N] [--fuzz N] [--seed S] [--only storm|hostile|fuzz]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if opts.kills < 3 {
        bail!("--kills must be at least 3 (one per phase)");
    }
    Ok(opts)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("reliability: {e:#}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    eprintln!(
        "reliability suite: {} run, {} kills, {} hostile modes, {} fuzz requests, seed {:#x}",
        if opts.short { "short" } else { "full" },
        opts.kills,
        opts.modes.len(),
        opts.fuzz_requests,
        opts.seed
    );
    let mut report = Report::default();
    let runs = |part: &str| opts.only.as_deref().is_none_or(|only| only == part);

    if runs("storm") {
        let t = Instant::now();
        if let Err(e) = storm::run(opts.kills, opts.seed, opts.short, &mut report).await {
            report.fail("crash storm", "aborted", &format!("{e:#}"));
        }
        eprintln!("crash storm done in {:.1} s", t.elapsed().as_secs_f64());
    }
    if runs("hostile") {
        let t = Instant::now();
        if let Err(e) = hostile::run(&opts.modes, opts.seed, opts.short, &mut report).await {
            report.fail("hostile node", "aborted", &format!("{e:#}"));
        }
        eprintln!("hostile modes done in {:.1} s", t.elapsed().as_secs_f64());
    }
    if runs("fuzz") {
        let t = Instant::now();
        if let Err(e) = fuzz::run(opts.fuzz_requests, opts.seed, &mut report).await {
            report.fail("fuzz", "aborted", &format!("{e:#}"));
        }
        eprintln!("fuzz done in {:.1} s", t.elapsed().as_secs_f64());
    }

    report.add("suite", "wall time", &format!("{:.1} s", started.elapsed().as_secs_f64()), true);
    report.print();
    if report.failed() {
        eprintln!("reliability: FAILED ({} failing rows)", report.failures());
        std::process::exit(1);
    }
    eprintln!("reliability: all rows ok");
}
