//! Spawning and controlling a real `anvil` process.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::oneshot;

use super::rpc::RpcClient;
use super::wait::wait_for;

/// Where `npm ci --prefix tools` puts anvil, relative to the workspace root.
pub const ANVIL_REL_PATH: &str = "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
/// How long to wait for the `Listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the first successful RPC after `Listening on`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Graceful (SIGTERM) shutdown budget before falling back to SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Anvil::restart`] retries while the old port is still in use.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(15);
const LOG_LINES: usize = 300;

type Log = Arc<Mutex<VecDeque<String>>>;

/// The root package's manifest dir (`/work/main` when compiled as part of the root package).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$ANVIL_BIN` if set (and non-empty), else `<workspace root>/tools/.../anvil`.
pub fn anvil_bin() -> Result<PathBuf> {
    resolve_anvil_bin(std::env::var_os("ANVIL_BIN"), &workspace_root())
}

/// Pure form of [`anvil_bin`]: `env_override` is the value of `ANVIL_BIN`.
pub fn resolve_anvil_bin(env_override: Option<OsString>, root: &Path) -> Result<PathBuf> {
    if let Some(p) = env_override.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("ANVIL_BIN={} is not a file", p.display());
    }
    let p = root.join(ANVIL_REL_PATH);
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "anvil binary not found at {}: run `npm ci --prefix tools` in {} (or set ANVIL_BIN)",
        p.display(),
        root.display()
    )
}

/// Command-line options. `Default` = automine, chain id 31337, 32 slots per epoch.
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
    /// `--dump-state P`: written on graceful exit only, so a drop/[`Anvil::shutdown`] of a
    /// node with this set sends SIGTERM first (not SIGKILL).
    pub dump_state: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl AnvilOptions {
    /// Full argument list for a given `--port` (0 = ephemeral).
    pub fn args(&self, port: u16) -> Result<Vec<OsString>> {
        if self.extra_args.iter().any(|a| a == "--silent") {
            bail!("--silent hides the `Listening on` line the harness parses");
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

/// A running anvil on `127.0.0.1:<port>`. Derefs to [`RpcClient`] for all RPC helpers.
/// Dropping it kills (SIGKILL; SIGTERM first if `dump_state` is set) and reaps the process.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    port: u16,
    client: RpcClient,
    bin: PathBuf,
    opts: AnvilOptions,
    log: Log,
}

impl Deref for Anvil {
    type Target = RpcClient;
    fn deref(&self) -> &RpcClient {
        &self.client
    }
}

impl Anvil {
    /// Spawns anvil (binary from [`anvil_bin`]) on an ephemeral port and waits until it answers RPC.
    pub async fn spawn(opts: AnvilOptions) -> Result<Anvil> {
        Self::spawn_with_bin(anvil_bin()?, opts).await
    }

    pub async fn spawn_with_bin(bin: PathBuf, opts: AnvilOptions) -> Result<Anvil> {
        let log: Log = Arc::new(Mutex::new(VecDeque::new()));
        let (child, port) = start_process(&bin, &opts, 0, &log).await?;
        let client = RpcClient::new(format!("http://127.0.0.1:{port}"))?;
        let anvil = Anvil { child: Some(child), port, client, bin, opts, log };
        anvil.wait_ready().await?; // on error `anvil` is dropped → process killed
        Ok(anvil)
    }

    /// RPC answers, and (if `dump_state` is set) anvil's SIGTERM handler is installed — it is
    /// registered a little after the server starts, and a SIGTERM before that kills anvil
    /// without writing the dump.
    async fn wait_ready(&self) -> Result<()> {
        self.wait_rpc().await?;
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

    async fn wait_rpc(&self) -> Result<()> {
        let c = &self.client;
        wait_for(&format!("anvil RPC at {}", c.url()), READY_TIMEOUT, Duration::from_millis(25), move || async move {
            c.chain_id().await.map(Some)
        })
        .await
        .with_context(|| format!("anvil log tail:\n{}", self.log_tail(40)))
        .map(drop)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.client.url().to_string()
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

    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    pub fn options(&self) -> &AnvilOptions {
        &self.opts
    }

    /// Last captured stdout/stderr lines (stderr prefixed `[stderr]`).
    pub fn logs(&self) -> Vec<String> {
        lock(&self.log).iter().cloned().collect()
    }

    fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Hard kill (SIGKILL) + reap, for "node down" tests; the port stops answering when this
    /// returns. Chain state is lost: [`RpcClient::dump_state`] first and
    /// [`RpcClient::load_state`] after [`Self::restart`] to keep it.
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
        if !status.success() {
            bail!("anvil exited with {status}; log tail:\n{}", self.log_tail(20));
        }
        Ok(())
    }

    /// Starts a fresh anvil with the same options on the same port (killing the current one if
    /// it is still running). The URL stays valid; the chain restarts from genesis (or
    /// `load_state`). Retries for up to [`RESTART_TIMEOUT`] while the port is still in use.
    pub async fn restart(&mut self) -> Result<()> {
        self.restart_inner().await
    }

    /// [`Self::restart`] with other options (another `load_state`: a node restored from a
    /// snapshot, or none: a node re-synced from scratch).
    pub async fn restart_with(&mut self, opts: AnvilOptions) -> Result<()> {
        self.opts = opts;
        self.restart_inner().await
    }

    async fn restart_inner(&mut self) -> Result<()> {
        self.kill().await;
        lock(&self.log).push_back("---- harness: restart ----".into());
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            match start_process(&self.bin, &self.opts, self.port, &self.log).await {
                Ok((child, port)) => {
                    self.child = Some(child);
                    if port != self.port {
                        bail!("restarted anvil listens on {port}, expected {}", self.port);
                    }
                    break;
                }
                Err(e) if Instant::now() < deadline && format!("{e:#}").contains("in use") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.context(format!("restarting anvil on port {}", self.port))),
            }
        }
        self.wait_ready().await
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = stop_child(child, self.opts.dump_state.is_some());
        }
    }
}

fn lock(log: &Log) -> std::sync::MutexGuard<'_, VecDeque<String>> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

fn tail(log: &Log, n: usize) -> String {
    let l = lock(log);
    let skip = l.len().saturating_sub(n);
    l.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
}

fn parse_listening(line: &str) -> Option<u16> {
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
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if tx.is_some()
                    && let Some(port) = parse_listening(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
                let mut l = lock(&log);
                if l.len() >= LOG_LINES {
                    l.pop_front();
                }
                l.push_back(format!("{prefix}{line}"));
            }
        })
        .with_context(|| format!("spawning thread {name}"))
}

/// Spawns the process and waits (≤ [`STARTUP_TIMEOUT`]) for its `Listening on` line.
async fn start_process(bin: &Path, opts: &AnvilOptions, port: u16, log: &Log) -> Result<(Child, u16)> {
    let args = opts.args(port)?;
    let mut child = Command::new(bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {} {args:?}", bin.display()))?;
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
            // Let the reader threads flush the last lines (bounded).
            let _ = wait_for("anvil output readers", Duration::from_secs(2), Duration::from_millis(10), || {
                let done = readers.iter().all(JoinHandle::is_finished);
                async move { Ok(done.then_some(())) }
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
/// [`SHUTDOWN_TIMEOUT`] first, then falls back to SIGKILL.
fn stop_child(mut child: Child, graceful: bool) -> Result<(ExitStatus, Stopped)> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok((status, Stopped::AlreadyExited));
    }
    if graceful {
        // Normally already true (see `Anvil::wait_ready`); bounded in any case.
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
