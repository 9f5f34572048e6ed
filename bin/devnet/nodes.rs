//! The processes and files devnet owns: the anvil nodes (started in their own process group,
//! killed on drop and by the panic hook), finding the anvil binary, the datadir, the secrets,
//! and a JSON-RPC client for the nodes.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use alloy::{
    primitives::B256,
    rpc::{client::RpcClient, json_rpc::RpcRecv},
    transports::http::{Http, reqwest},
};
use anyhow::{Context as _, bail, ensure};
use rollup_supervisor_actors::rpc::EthRpc;
use serde_json::{Value, json};

use super::{
    BLOCK_TIME_SECS, POLL, RPC_TIMEOUT, WAIT,
    anvil::{self, AnvilNode, AnvilOptions},
    timeline::{Timeline, sh},
    wait::wait_for,
};

/// Pids of the running anvil processes, for the panic hook.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// SIGKILLs every anvil still running (the panic path, where no destructor runs).
pub(super) fn kill_children() {
    let pids = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for pid in pids {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stdin(Stdio::null()).status();
    }
}

/// An anvil node this devnet started ([`AnvilNode`], in its own process group, its output in
/// `<dir>/anvil-<name>.log`); killed and reaped when dropped.
#[derive(Debug)]
pub(super) struct DevnetNode {
    pub(super) name: &'static str,
    node: AnvilNode,
    pid: u32,
}

impl DevnetNode {
    /// Starts anvil on a free loopback port with interval mining; returns once it answers with
    /// `chain_id`.
    pub(super) async fn start(bin: &Path, name: &'static str, chain_id: u64, dir: &Path) -> anyhow::Result<Self> {
        let opts = AnvilOptions {
            chain_id: Some(chain_id),
            block_time: Some(BLOCK_TIME_SECS),
            own_process_group: true,
            log_file: Some(dir.join(format!("anvil-{}.log", name.to_lowercase()))),
            ..AnvilOptions::default()
        };
        let node = AnvilNode::spawn_with_bin(bin.to_owned(), opts)
            .await
            .with_context(|| format!("the {name} anvil did not start"))?;
        let pid = node.pid().context("the anvil process has no pid")?;
        CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).push(pid);
        Ok(Self { name, node, pid })
    }

    /// `http://127.0.0.1:<port>`.
    pub(super) fn url(&self) -> &str {
        self.node.url()
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for DevnetNode {
    fn drop(&mut self) {
        // `node`'s own drop kills and reaps it right after this.
        CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).retain(|p| *p != self.pid);
    }
}

/// `anvil --version`'s version.
pub(super) fn anvil_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    ensure!(out.status.success(), "{} --version failed ({})", bin.display(), out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().trim_start_matches("anvil Version: ").to_owned())
}

/// A node's JSON-RPC: the typed calls of [`EthRpc`], plus any method (anvil's, and
/// `eth_sendTransaction` from its unlocked dev accounts).
#[derive(Debug)]
pub(super) struct Chain {
    client: RpcClient,
    pub(super) eth: EthRpc,
}

impl Chain {
    pub(super) fn new(url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(RPC_TIMEOUT).build().context("cannot build an HTTP client")?;
        let parsed = url.parse().with_context(|| format!("invalid URL {url}"))?;
        let client = RpcClient::new(Http::with_client(http, parsed), true);
        Ok(Self { client, eth: EthRpc::new(url, RPC_TIMEOUT).map_err(anyhow::Error::msg)? })
    }

    pub(super) async fn call<R: RpcRecv>(&self, method: &'static str, params: Value) -> anyhow::Result<R> {
        self.client.request(method, params).await.with_context(|| format!("{method} failed"))
    }

    /// Sends a transaction from an unlocked account and waits for its successful receipt.
    pub(super) async fn transact(&self, tx: Value, what: &str) -> anyhow::Result<Value> {
        let mut receipts = self.transact_all(vec![(tx, what)]).await?;
        receipts.pop().context("no receipt")
    }

    /// Sends transactions from unlocked accounts one after the other (so that those of one
    /// account take consecutive nonces and share a block), then waits for every successful
    /// receipt, in order.
    pub(super) async fn transact_all(&self, txs: Vec<(Value, &str)>) -> anyhow::Result<Vec<Value>> {
        let mut sent = Vec::new();
        for (tx, what) in txs {
            let hash: B256 = self.call("eth_sendTransaction", json!([tx])).await?;
            sent.push((hash, what));
        }
        let mut receipts = Vec::new();
        for (hash, what) in sent {
            let receipt = wait_for(&format!("{what} to be mined"), WAIT, POLL, || async {
                let receipt: Value = self.call("eth_getTransactionReceipt", json!([hash])).await?;
                Ok((!receipt.is_null()).then_some(receipt))
            })
            .await?;
            ensure!(receipt["status"] == json!("0x1"), "{what} failed: {receipt}");
            receipts.push(receipt);
        }
        Ok(receipts)
    }
}

/// The anvil binary ([`anvil::locate`]: `--anvil`, `$ANVIL_BIN`, a checkout's
/// `tools/node_modules/.bin/anvil`, `anvil` on `PATH`). If none exists, installs the checkout's
/// pinned tools with `npm ci` when npm is there, or says how.
pub(super) fn find_anvil(flag: Option<&Path>, tl: Timeline) -> anyhow::Result<PathBuf> {
    if let Some(found) = anvil::locate(flag)? {
        return Ok(found);
    }
    let Some(root) = anvil::checkouts().into_iter().next() else {
        bail!(
            "anvil not found: run `npm ci --prefix tools` in a rollup-supervisor checkout, or pass --anvil PATH \
             (or set ANVIL_BIN)"
        )
    };
    let tools = root.join("tools");
    let command = format!("npm ci --prefix {}", sh(&tools.display().to_string()));
    let Some(npm) = anvil::on_path("npm") else {
        bail!("anvil not found: install Node.js and npm, then run `{command}` (or pass --anvil PATH)")
    };
    tl.say(format!("anvil not found: installing the pinned tools with `{command}` (its output goes to stderr)"));
    let status = Command::new(npm)
        .args(["ci", "--prefix"])
        .arg(&tools)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run `{command}`"))?;
    ensure!(status.success(), "`{command}` failed ({status}); fix what it says and run it again");
    let found = root.join(anvil::ANVIL_IN_CHECKOUT);
    ensure!(found.is_file(), "`{command}` succeeded but did not install {}", found.display());
    Ok(found)
}

/// Fails if `addr` cannot be bound now, before anything starts (port 0 always can).
pub(super) fn check_port(flag: &str, addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "{flag} {addr}: cannot listen there ({e}); is another devnet or supervisor running? \
             Pick another address with {flag} 127.0.0.1:PORT"
        )
    })
}

/// The devnet's directory: `--datadir` (kept), or a temporary one (removed by [`DataDir::close`]).
#[derive(Debug)]
pub(super) struct DataDir {
    pub(super) path: PathBuf,
    temporary: bool,
}

impl DataDir {
    pub(super) fn create(given: Option<&Path>) -> anyhow::Result<Self> {
        let (path, temporary) = match given {
            Some(path) => {
                let used = std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some());
                ensure!(
                    !used,
                    "--datadir {}: not empty; devnet starts new chains every time, so give it a new or empty directory",
                    path.display()
                );
                std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
                (path.to_owned(), false)
            }
            None => {
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
                let path =
                    std::env::temp_dir().join(format!("rollup-supervisor-devnet-{}-{nanos}", std::process::id()));
                std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
                (path, true)
            }
        };
        let path = std::fs::canonicalize(&path).with_context(|| format!("cannot resolve {}", path.display()))?;
        Ok(Self { path, temporary })
    }

    /// Removes a temporary directory (retried briefly: the database thread may still be closing
    /// its files), or says where a kept one is.
    pub(super) fn close(self, tl: Timeline) {
        if !self.temporary {
            tl.say(format!("datadir kept: {}", self.path.display()));
            return;
        }
        let mut attempts = 0;
        loop {
            match std::fs::remove_dir_all(&self.path) {
                Ok(()) => return tl.say(format!("temporary datadir {} removed", self.path.display())),
                Err(_) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(POLL);
                }
                Err(e) => return eprintln!("rollup-supervisor devnet: cannot remove {}: {e}", self.path.display()),
            }
        }
    }
}

/// Writes a new file readable by its owner only.
pub(super) fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// 32 random bytes, hex: a JWT secret.
pub(super) fn random_hex32() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the JWT secret")?;
    Ok(alloy::hex::encode(bytes))
}
