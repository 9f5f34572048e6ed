//! Runs the real `rollup-supervisor` binary: writes its config, starts it, talks to its JSON-RPC
//! server, stops it with a signal or kills it, and reads its database with `db inspect`/`db check`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::harness::{RpcClient, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_rollup-supervisor");

/// One L2 chain in the config.
pub struct ChainSpec {
    pub chain_id: u64,
    pub rpc_url: String,
    pub tag: &'static str,
    /// More TOML for this chain (its `[chains.uptime]` sections).
    pub extra: String,
}

impl ChainSpec {
    pub fn new(chain_id: u64, rpc_url: String, tag: &'static str) -> Self {
        Self { chain_id, rpc_url, tag, extra: String::new() }
    }
}

/// What goes into the config file.
pub struct Spec {
    pub l1_url: String,
    pub l1_chain_id: Option<u64>,
    pub start_block: Option<u64>,
    pub batch_size: u64,
    pub chains: Vec<ChainSpec>,
    pub extra_l1: String,
    /// `l1.poll_interval_ms` (100 unless set).
    pub l1_poll_ms: u64,
    /// More TOML for `[rpc]`.
    pub extra_rpc: String,
    pub env: Vec<(&'static str, &'static str)>,
}

impl Spec {
    pub fn new(l1_url: String) -> Self {
        Self {
            l1_url,
            l1_chain_id: None,
            start_block: Some(0),
            batch_size: 100,
            chains: Vec::new(),
            extra_l1: String::new(),
            l1_poll_ms: 100,
            extra_rpc: String::new(),
            env: Vec::new(),
        }
    }

    fn toml(&self, datadir: &Path) -> String {
        let mut out = format!(
            "datadir = {:?}\n[l1]\nrpc_url = {:?}\npoll_interval_ms = {}\nheads_poll_interval_ms = 300\nrequest_timeout_ms = 2000\nbatch_size = {}\n{}",
            datadir, self.l1_url, self.l1_poll_ms, self.batch_size, self.extra_l1
        );
        if let Some(id) = self.l1_chain_id {
            out += &format!("chain_id = {id}\n");
        }
        if let Some(start) = self.start_block {
            out += &format!("start_block = {start}\n");
        }
        out += "[rpc]\nlisten = \"127.0.0.1:0\"\n";
        out += &self.extra_rpc;
        out += "[metrics]\nlisten = \"127.0.0.1:0\"\n";
        for c in &self.chains {
            out += &format!(
                "[[chains]]\nchain_id = {}\nrpc_url = {:?}\nderivation_tag = {:?}\npoll_interval_ms = 100\n",
                c.chain_id, c.rpc_url, c.tag
            );
            out += &c.extra;
        }
        out
    }
}

/// A running (or stopped) supervisor over one data directory.
pub struct Supervisor {
    child: Option<Child>,
    /// Where this run's lines start in the log (earlier runs append to the same file).
    log_start: usize,
    pub dir: tempfile::TempDir,
    pub rpc_url: String,
    /// The JSON-RPC client for [`Self::rpc_url`], once the server answers.
    rpc: Option<RpcClient>,
    /// `http://host:port` of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_url: String,
    log: PathBuf,
}

impl Supervisor {
    /// Writes the config and starts the binary; returns once its RPC server answers.
    pub async fn start(spec: &Spec) -> anyhow::Result<Self> {
        let mut sup = Self::launch(spec)?;
        sup.wait_ready().await?;
        Ok(sup)
    }

    /// Writes the config and starts the binary, without waiting for anything.
    pub fn launch(spec: &Spec) -> anyhow::Result<Self> {
        Self::launch_prepared(spec, |_| Ok(()))
    }

    /// [`Self::start`], after `prepare` has made the (empty) data directory, e.g. by mounting a
    /// file system there.
    pub async fn start_prepared(
        spec: &Spec,
        prepare: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let mut sup = Self::launch_prepared(spec, prepare)?;
        sup.wait_ready().await?;
        Ok(sup)
    }

    fn launch_prepared(spec: &Spec, prepare: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("data"))?;
        prepare(&dir.path().join("data"))?;
        let mut sup = Self {
            child: None,
            log_start: 0,
            rpc_url: String::new(),
            rpc: None,
            metrics_url: String::new(),
            log: dir.path().join("supervisor.log"),
            dir,
        };
        sup.spawn(spec)?;
        Ok(sup)
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Starts the binary again over the same data directory, without waiting for anything.
    pub fn relaunch(&mut self, spec: &Spec) -> anyhow::Result<()> {
        self.spawn(spec)
    }

    /// This run's part of the log.
    pub fn run_log_text(&self) -> String {
        self.log_text().get(self.log_start..).unwrap_or_default().to_owned()
    }

    /// Starts the binary again over the same data directory.
    pub async fn restart(&mut self, spec: &Spec) -> anyhow::Result<()> {
        self.spawn(spec)?;
        self.wait_ready().await
    }

    fn spawn(&mut self, spec: &Spec) -> anyhow::Result<()> {
        std::fs::write(self.config_path(), spec.toml(&self.datadir()))?;
        self.log_start = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .envs(spec.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start rollup-supervisor")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let log_path = self.log.clone();
        let start = self.log_start;
        let urls = wait_for("the supervisor's RPC server", Duration::from_secs(30), Duration::from_millis(50), || {
            let log_path = log_path.clone();
            async move {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                // This run's "running" line names the bound addresses.
                let line =
                    text.get(start..).unwrap_or_default().lines().find(|l| l.contains("rollup-supervisor running"));
                Ok(line.and_then(|l| Some((field_url(l, "rpc=")?, field_url(l, "metrics=")?))))
            }
        })
        .await;
        match urls {
            Ok((rpc, metrics)) => {
                self.rpc = Some(RpcClient::with_timeout(rpc.clone(), Duration::from_secs(30))?);
                self.rpc_url = rpc;
                self.metrics_url = metrics;
                Ok(())
            }
            Err(e) => bail!("{e:#}\nsupervisor log:\n{}", self.log_text()),
        }
    }

    /// The running process's id (the benchmark reads its peak RSS).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Calls a method of the supervisor's JSON-RPC server; a JSON-RPC error is `Ok(Err(..))`.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Result<Value, Value>> {
        self.call_with_token(method, params, None).await
    }

    /// Calls a method with `Authorization: Bearer <token>` if a token is given.
    pub async fn call_with_token(
        &self,
        method: &str,
        params: Value,
        token: Option<String>,
    ) -> anyhow::Result<Result<Value, Value>> {
        let rpc = self.rpc.as_ref().context("the supervisor's JSON-RPC server is not up")?;
        rpc.call(method, params, token.as_deref()).await
    }

    /// Calls a method that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.call(method, params).await?.map_err(|e| anyhow::anyhow!("{method}: {e}"))
    }

    /// `GET` one of the metrics server's paths: status and body.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let reply = reqwest::Client::new()
            .get(format!("{}{path}", self.metrics_url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        Ok((reply.status().as_u16(), reply.text().await?))
    }

    /// Polls `/readyz` until it answers `want` with a body that `holds`; that body. Any other
    /// answer counts as the last error, so a timeout names what `/readyz` said instead.
    pub async fn wait_readyz(
        &self,
        want: u16,
        timeout: Duration,
        holds: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let holds = &holds;
        wait_for(
            &format!("/readyz to answer {want} with the expected checks"),
            timeout,
            Duration::from_millis(100),
            || async move {
                let (status, body) = self.http_get("/readyz").await?;
                let parsed: Value = serde_json::from_str(&body).with_context(|| format!("/readyz body {body:?}"))?;
                if status == want && holds(&parsed) {
                    Ok(Some(parsed))
                } else {
                    bail!("/readyz answered {status} {body}")
                }
            },
        )
        .await
    }

    /// One series scraped from `/metrics`, named without the `rollup_supervisor_` prefix and with
    /// its labels as exported (`reorgs_total{watcher="l1"}`); 0 if absent.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let (_, text) = self.http_get("/metrics").await?;
        Ok(scraped(&text, &format!("rollup_supervisor_{series}")).unwrap_or(0.0))
    }

    /// The sum of every series scraped from `/metrics` that starts with `prefix` (named without
    /// the `rollup_supervisor_` prefix, labels as exported: `report_submissions_total{chain="901",`
    /// adds up every endpoint and result of that chain); 0 if there is none.
    pub async fn metric_sum(&self, prefix: &str) -> anyhow::Result<f64> {
        let (_, text) = self.http_get("/metrics").await?;
        let prefix = format!("rollup_supervisor_{prefix}");
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The recorded L1 latest block number, if any.
    pub async fn l1_latest(&self) -> anyhow::Result<Option<u64>> {
        let status = self.ok("supervisor_syncStatus", json!([])).await?;
        status["l1"]["latest"]["number"].as_str().map(hex_u64).transpose()
    }

    /// Waits until the recorded L1 latest block is `number` with hash `hash`.
    pub async fn wait_l1(&self, number: u64, hash: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_for(&format!("L1 block {number} {hash} recorded"), timeout, Duration::from_millis(50), || async {
            let status = self.ok("supervisor_syncStatus", json!([])).await?;
            let latest = &status["l1"]["latest"];
            let at = latest["number"].as_str().map(hex_u64).transpose()?;
            Ok((at == Some(number) && latest["hash"].as_str() == Some(hash)).then_some(()))
        })
        .await
    }

    /// SIGTERM, then waits for the exit code.
    pub async fn stop(&mut self) -> anyhow::Result<i32> {
        let Some(mut child) = self.child.take() else { bail!("not running") };
        let pid = child.id().context("no pid")?;
        signal(pid, "TERM")?;
        let status =
            tokio::time::timeout(Duration::from_secs(20), child.wait()).await.context("no exit after SIGTERM")??;
        status.code().context("killed by a signal")
    }

    /// SIGKILL: a crash.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { bail!("not running") };
        child.kill().await?;
        Ok(())
    }

    /// Waits for the process to exit by itself; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<i32> {
        let Some(mut child) = self.child.take() else { bail!("not running") };
        let status = tokio::time::timeout(timeout, child.wait()).await.context("the process did not exit")??;
        status.code().context("killed by a signal")
    }

    /// `db check`: exit code and output.
    pub fn db_check(&self) -> anyhow::Result<(i32, String)> {
        let out = std::process::Command::new(BIN).args(["db", "check", "--datadir"]).arg(self.datadir()).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        Ok((out.status.code().unwrap_or(-1), text))
    }

    /// `db inspect --json`.
    pub fn db_inspect(&self) -> anyhow::Result<Value> {
        let out = std::process::Command::new(BIN)
            .args(["db", "inspect", "--json", "--datadir"])
            .arg(self.datadir())
            .output()?;
        if !out.status.success() {
            bail!("db inspect failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?.success();
    if !ok {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

/// The value of `series` in a Prometheus text exposition.
pub fn scraped(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `http://<addr>` from the `key=<addr>` field of a text log line, or the `"key":"<addr>"`
/// field of a JSON one.
fn field_url(line: &str, key: &str) -> Option<String> {
    let json_key = format!("\"{}\":\"", key.trim_end_matches('='));
    let (at, end) = match line.find(key) {
        Some(i) => (i + key.len(), None),
        None => (line.find(&json_key)? + json_key.len(), Some('"')),
    };
    let addr: String = line[at..].chars().take_while(|c| !c.is_whitespace() && Some(*c) != end).collect();
    Some(format!("http://{addr}"))
}

pub fn hex_u64(s: &str) -> anyhow::Result<u64> {
    Ok(u64::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

/// The stored L1 rows of a `db inspect` dump as `(number, hash)`.
pub fn l1_rows(dump: &Value) -> anyhow::Result<Vec<(u64, String)>> {
    dump["l1"]
        .as_array()
        .context("no l1 rows")?
        .iter()
        .map(|b| {
            Ok((hex_u64(b["number"].as_str().context("number")?)?, b["hash"].as_str().context("hash")?.to_owned()))
        })
        .collect()
}

/// The check named `name` (`"l1"`, `"db"`, `"signer_901"`) in a `/readyz` body; `null` if absent.
pub fn readyz_check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}
