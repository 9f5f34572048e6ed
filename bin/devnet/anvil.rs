//! The one way anvil is run: `rollup-supervisor devnet`'s L1 and L2 nodes, and every node of the
//! tests and benchmarks (they include this file with `#[path]`, see `tests/it/harness/mod.rs`,
//! and put their JSON-RPC client in front of it).
//!
//! [`AnvilNode::spawn`] starts `anvil --host 127.0.0.1 --port 0 ...` (the binary from
//! [`locate`]), reads the port from its `Listening on` line, keeps its last output lines (and,
//! with [`AnvilOptions::log_file`], all of them in a file), waits until it answers `eth_chainId`
//! with the configured chain, and kills and reaps it when dropped. It also restarts a node on the
//! same port (down and back, or restored from a state file) and stops it gracefully, so that
//! `--dump-state` is written.
//!
//! Not `alloy-node-bindings`' `Anvil` (2.5): its builder hides the `Command` it runs, so it
//! cannot start anvil in a process group of its own, which devnet needs (a terminal's Ctrl-C
//! must reach devnet only, which stops the supervisor before the nodes it watches); it sends
//! anvil's stderr to ours; and when anvil exits before its `Listening on` line (a port still in
//! use at a restart, a bad `--load-state` file) it keeps reading the closed pipe until its
//! timeout and returns `Timeout` without the reason. Its drop sends SIGTERM to the pid even after
//! the process was reaped. What it would have done for us, the arguments and that line, is
//! [`AnvilOptions::args`] and [`parse_listening`].
#![allow(dead_code)] // devnet uses a part of it, the tests and benchmarks the rest

use std::{
    collections::VecDeque,
    ffi::{OsStr, OsString},
    fs::File,
    io::{BufRead, BufReader, Read, Write as _},
    net::SocketAddr,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use alloy::{primitives::U64, rpc::client::ClientBuilder};
use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tokio::sync::oneshot;

use super::{consts::ANVIL_DEFAULT_CHAIN_ID, wait::wait_for};

/// Where `npm ci --prefix tools` links anvil, relative to a checkout.
pub const ANVIL_IN_CHECKOUT: &str = "tools/node_modules/.bin/anvil";
/// How long to wait for the `Listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the first `eth_chainId` answer after `Listening on`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Graceful (SIGTERM) shutdown budget before falling back to SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`AnvilNode::restart`] retries while the old port is still in use.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(15);
/// Output lines kept for error messages and [`AnvilNode::logs`].
const LOG_LINES: usize = 300;

/// The last output lines, and the log file if any.
#[derive(Debug, Default)]
struct Output {
    lines: VecDeque<String>,
    file: Option<File>,
}

type Log = Arc<Mutex<Output>>;

/// The checkouts whose `tools/` may hold anvil: the current directory's, then the one this code
/// was built from (those with a `tools/package-lock.json`).
pub fn checkouts() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for root in [std::env::current_dir().ok(), Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))].into_iter().flatten() {
        if root.join("tools/package-lock.json").is_file() && !found.contains(&root) {
            found.push(root);
        }
    }
    found
}

/// The anvil binary: `flag` (devnet's `--anvil`), `$ANVIL_BIN`, a checkout's
/// [`ANVIL_IN_CHECKOUT`] ([`checkouts`]), `anvil` on `PATH`; `None` if there is none. A given
/// path that is not a file is an error.
pub fn locate(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(path) = flag {
        ensure!(path.is_file(), "--anvil {}: no such file", path.display());
        return Ok(Some(path.to_owned()));
    }
    if let Some(path) = std::env::var_os("ANVIL_BIN").filter(|v| !v.is_empty()).map(PathBuf::from) {
        ensure!(path.is_file(), "ANVIL_BIN={}: no such file", path.display());
        return Ok(Some(path));
    }
    let pinned = checkouts().into_iter().map(|root| root.join(ANVIL_IN_CHECKOUT)).find(|p| p.is_file());
    Ok(pinned.or_else(|| on_path("anvil")))
}

/// The first executable file `name` in a directory of `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// [`locate`] without a flag, or an error that says how to install it.
pub fn anvil_bin() -> Result<PathBuf> {
    locate(None)?.context("anvil not found: run `npm ci --prefix tools` in the checkout (or set ANVIL_BIN)")
}

/// Command-line options. `Default` = automine, anvil's chain id (31337), 32 slots per epoch.
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    pub chain_id: Option<u64>,
    /// `--block-time N`: interval mining every N seconds.
    pub block_time: Option<u64>,
    /// `--no-mining`: neither automine nor interval mining; mine explicitly.
    pub no_mining: bool,
    /// `--slots-in-an-epoch N`: safe = latest - N, finalized = latest - 2N (0 → both = latest).
    pub slots_in_an_epoch: Option<u64>,
    pub load_state: Option<PathBuf>,
    /// `--dump-state P`: written on graceful exit only, so a drop/[`AnvilNode::shutdown`] of a
    /// node with this set sends SIGTERM first (not SIGKILL).
    pub dump_state: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Starts anvil in a process group of its own, out of reach of a terminal's Ctrl-C.
    pub own_process_group: bool,
    /// Appends every output line to this file too (created or truncated at the first start).
    pub log_file: Option<PathBuf>,
}

impl AnvilOptions {
    /// The chain id the node serves.
    pub fn served_chain_id(&self) -> u64 {
        self.chain_id.unwrap_or(ANVIL_DEFAULT_CHAIN_ID)
    }

    /// Full argument list for a given `--port` (0 = ephemeral).
    pub fn args(&self, port: u16) -> Result<Vec<OsString>> {
        if self.extra_args.iter().any(|a| a == "--silent") {
            bail!("--silent hides the `Listening on` line the launcher parses");
        }
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |k: &str, v: &OsStr| {
            a.push(k.into());
            a.push(v.to_owned());
        };
        push("--host", OsStr::new("127.0.0.1"));
        push("--port", port.to_string().as_ref());
        if let Some(c) = self.chain_id {
            push("--chain-id", c.to_string().as_ref());
        }
        if let Some(b) = self.block_time {
            push("--block-time", b.to_string().as_ref());
        }
        if let Some(s) = self.slots_in_an_epoch {
            push("--slots-in-an-epoch", s.to_string().as_ref());
        }
        if let Some(p) = &self.load_state {
            push("--load-state", p.as_os_str());
        }
        if let Some(p) = &self.dump_state {
            push("--dump-state", p.as_os_str());
        }
        if self.no_mining {
            a.push("--no-mining".into());
        }
        a.extend(self.extra_args.iter().map(OsString::from));
        Ok(a)
    }
}

/// A running anvil on `127.0.0.1:<port>`. Dropping it kills it (SIGKILL; SIGTERM first if
/// `dump_state` is set) and reaps it.
#[derive(Debug)]
pub struct AnvilNode {
    child: Option<Child>,
    port: u16,
    url: String,
    bin: PathBuf,
    opts: AnvilOptions,
    log: Log,
}

impl AnvilNode {
    /// Starts anvil (binary from [`anvil_bin`]) on an ephemeral port; returns once it answers.
    pub async fn spawn(opts: AnvilOptions) -> Result<Self> {
        Self::spawn_with_bin(anvil_bin()?, opts).await
    }

    pub async fn spawn_with_bin(bin: PathBuf, opts: AnvilOptions) -> Result<Self> {
        let file = match &opts.log_file {
            Some(path) => Some(File::create(path).with_context(|| format!("cannot create {}", path.display()))?),
            None => None,
        };
        let log: Log = Arc::new(Mutex::new(Output { lines: VecDeque::new(), file }));
        let (child, port) = start_process(&bin, &opts, 0, &log).await?;
        let url = format!("http://127.0.0.1:{port}");
        let node = Self { child: Some(child), port, url, bin, opts, log };
        node.wait_ready().await?; // on error `node` is dropped → process killed
        Ok(node)
    }

    /// `eth_chainId` answers with the configured chain, and (if `dump_state` is set) anvil's
    /// SIGTERM handler is installed — it is registered a little after the server starts, and a
    /// SIGTERM before that kills anvil without writing the dump.
    async fn wait_ready(&self) -> Result<()> {
        let rpc = ClientBuilder::default().http(self.url.parse().with_context(|| format!("URL {}", self.url))?);
        let served =
            wait_for(&format!("anvil RPC at {}", self.url), READY_TIMEOUT, Duration::from_millis(25), || async {
                let id: U64 = rpc.request_noparams("eth_chainId").await?;
                Ok(Some(id.to::<u64>()))
            })
            .await
            .with_context(|| format!("anvil log tail:\n{}", self.log_tail(40)))?;
        let expected = self.opts.served_chain_id();
        ensure!(served == expected, "anvil at {} serves chain {served}, not {expected}", self.url);
        if let (Some(pid), true) = (self.pid(), self.opts.dump_state.is_some()) {
            wait_for(
                "anvil SIGTERM handler (SigCgt in /proc/PID/status)",
                READY_TIMEOUT,
                Duration::from_millis(5),
                move || async move { Ok(catches_sigterm(pid).then_some(())) },
            )
            .await?;
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// OS pid while the process is running (not after [`Self::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn options(&self) -> &AnvilOptions {
        &self.opts
    }

    /// Last captured stdout/stderr lines (stderr prefixed `[stderr]`).
    pub fn logs(&self) -> Vec<String> {
        lock(&self.log).lines.iter().cloned().collect()
    }

    fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Hard kill (SIGKILL) + reap, for "node down" tests; the port stops answering when this
    /// returns. Chain state is lost unless it was dumped (`anvil_dumpState`) to be loaded after
    /// [`Self::restart`].
    pub async fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || stop_child(child, false)).await;
        }
    }

    /// Graceful stop (SIGTERM; anvil then writes `--dump-state`). Errors if anvil did not exit
    /// within [`SHUTDOWN_TIMEOUT`] (it is SIGKILLed then) or exited unsuccessfully.
    pub async fn shutdown(&mut self) -> Result<()> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        let (status, how) =
            tokio::task::spawn_blocking(move || stop_child(child, true)).await.context("joining shutdown task")??;
        match how {
            Stopped::Terminated => {}
            Stopped::AlreadyExited => bail!("anvil had already exited ({status}); log tail:\n{}", self.log_tail(20)),
            Stopped::Killed => bail!("anvil did not exit on SIGTERM within {SHUTDOWN_TIMEOUT:?}; killed ({status})"),
        }
        ensure!(status.success(), "anvil exited with {status}; log tail:\n{}", self.log_tail(20));
        Ok(())
    }

    /// Starts a fresh anvil with the same options on the same port (killing the current one if
    /// it is still running). The URL stays valid; the chain restarts from genesis (or
    /// `load_state`). Retries for up to [`RESTART_TIMEOUT`] while the port is still in use.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        lock(&self.log).lines.push_back("---- launcher: restart ----".into());
        let (bin, opts, port, log) = (&self.bin, &self.opts, self.port, &self.log);
        let started = wait_for(
            &format!("anvil restarted on port {port}"),
            RESTART_TIMEOUT,
            Duration::from_millis(100),
            || async {
                match start_process(bin, opts, port, log).await {
                    Ok(started) => Ok(Some(Ok(started))),
                    // The old process's port is not free yet: tried again (the error is kept for the
                    // timeout's message).
                    Err(e) if format!("{e:#}").contains("in use") => Err(e),
                    Err(e) => Ok(Some(Err(e))),
                }
            },
        )
        .await?;
        let (child, at) = started.with_context(|| format!("restarting anvil on port {port}"))?;
        self.child = Some(child);
        ensure!(at == port, "restarted anvil listens on {at}, expected {port}");
        self.wait_ready().await
    }

    /// [`Self::restart`] with other options (another `load_state`: a node restored from a
    /// snapshot, or none: a node re-synced from scratch).
    pub async fn restart_with(&mut self, opts: AnvilOptions) -> Result<()> {
        self.opts = opts;
        self.restart().await
    }
}

impl Drop for AnvilNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = stop_child(child, self.opts.dump_state.is_some());
        }
    }
}

fn lock(log: &Log) -> std::sync::MutexGuard<'_, Output> {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tail(log: &Log, n: usize) -> String {
    let l = lock(log);
    let skip = l.lines.len().saturating_sub(n);
    l.lines.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
}

/// The port of anvil's `Listening on 127.0.0.1:PORT` line.
pub fn parse_listening(line: &str) -> Option<u16> {
    let rest = line.split("Listening on ").nth(1)?;
    rest.trim().parse::<SocketAddr>().ok().map(|a| a.port())
}

/// Reads `r` line by line into the log until EOF (so the pipe never fills); the first
/// `Listening on` line's port goes to `tx`.
fn spawn_reader<R: Read + Send + 'static>(
    name: &str,
    r: R,
    log: Log,
    prefix: &'static str,
    mut tx: Option<oneshot::Sender<u16>>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut reader = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = format!("{prefix}{}", String::from_utf8_lossy(&buf).trim_end());
                if tx.is_some()
                    && let Some(port) = parse_listening(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
                let mut out = lock(&log);
                if let Some(file) = &mut out.file {
                    let _ = writeln!(file, "{line}");
                }
                if out.lines.len() >= LOG_LINES {
                    out.lines.pop_front();
                }
                out.lines.push_back(line);
            }
        })
        .with_context(|| format!("spawning thread {name}"))
}

/// Spawns the process and waits (≤ [`STARTUP_TIMEOUT`]) for its `Listening on` line.
async fn start_process(bin: &Path, opts: &AnvilOptions, port: u16, log: &Log) -> Result<(Child, u16)> {
    let args = opts.args(port)?;
    let mut command = Command::new(bin);
    command.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if opts.own_process_group {
        command.process_group(0);
    }
    let mut child = command.spawn().with_context(|| format!("spawning {} {args:?}", bin.display()))?;
    let (tx, rx) = oneshot::channel();
    let readers = (|| -> Result<[JoinHandle<()>; 2]> {
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let err = child.stderr.take().ok_or_else(|| anyhow!("no stderr pipe"))?;
        Ok([
            spawn_reader("anvil-stdout", out, log.clone(), "", Some(tx))?,
            spawn_reader("anvil-stderr", err, log.clone(), "[stderr] ", None)?,
        ])
    })();
    let readers = match readers {
        Ok(r) => r,
        Err(e) => {
            let _ = stop_child(child, false);
            return Err(e);
        }
    };
    let outcome = tokio::time::timeout(STARTUP_TIMEOUT, rx).await;
    match outcome {
        Ok(Ok(port)) => Ok((child, port)),
        Ok(Err(_)) | Err(_) => {
            let why = match outcome {
                Err(_) => format!("no `Listening on` line within {STARTUP_TIMEOUT:?}"),
                _ => "stdout closed before a `Listening on` line".to_string(),
            };
            let status = stop_child(child, false).map(|(s, _)| s.to_string()).unwrap_or_else(|e| e.to_string());
            // Let the reader threads write the last lines (bounded).
            let _ = wait_for("anvil output readers", Duration::from_secs(2), Duration::from_millis(10), || async {
                Ok(readers.iter().all(JoinHandle::is_finished).then_some(()))
            })
            .await;
            bail!("anvil ({} {args:?}): {why}; exit: {status}; log tail:\n{}", bin.display(), tail(log, 40))
        }
    }
}

/// Whether `pid` has a SIGTERM handler installed (Linux: `SigCgt` bit 14 in /proc/PID/status).
fn catches_sigterm(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    AlreadyExited,
    Terminated,
    Killed,
}

/// Stops and reaps `child`. With `graceful`, sends SIGTERM (via `kill -TERM`) and waits up to
/// [`SHUTDOWN_TIMEOUT`] first, then falls back to SIGKILL. Blocking: a drop, or a blocking task.
fn stop_child(mut child: Child, graceful: bool) -> Result<(ExitStatus, Stopped)> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok((status, Stopped::AlreadyExited));
    }
    if graceful {
        // Normally already true (see `AnvilNode::wait_ready`); bounded in any case. Polled with
        // a thread sleep: this runs outside the async runtime.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !catches_sigterm(child.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return Ok((status, Stopped::Terminated));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let _ = child.kill(); // fails only if it already exited; wait() reaps either way
    let status = child.wait().context("waiting for anvil to exit")?;
    Ok((status, Stopped::Killed))
}
