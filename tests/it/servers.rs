//! Both HTTP servers (JSON-RPC on `[rpc] listen`, `/metrics` `/healthz` `/readyz` on
//! `[metrics] listen`) against hostile nodes and clients: they come up at once whatever the L1
//! node does, hold slowloris clients (slow heads, slow JSON-RPC bodies) to the header-read
//! timeout, refuse big bodies and
//! connections beyond the limit, and answer the requests in flight when the process stops.
//!
//! Most tests launch the binary with their own configuration (the harness's `Spec` fixes the
//! request timeout at 2 s and has no `[metrics]` extras; these tests need the default 10 s and
//! the server limits), and print the figures they measure.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::{
    harness::{Anvil, AnvilOptions, Proxy, ProxyMode, RpcClient, consts::ANVIL_DEFAULT_CHAIN_ID, wait_for},
    supervisor::{BIN, Supervisor, readyz_check, signal},
    uptime::{Backend, Fixture},
};

const WAIT: Duration = Duration::from_secs(60);
/// How soon after launch every endpoint must answer, whatever the L1 node does.
/// (Well under the L1 request timeout, 10 s, that a start waiting for the node would take.)
const UP_WITHIN: Duration = Duration::from_secs(5);

/// The binary, launched with a configuration of our own.
struct Launched {
    child: Option<Child>,
    launched: Instant,
    dir: tempfile::TempDir,
    log: PathBuf,
}

/// Where the servers listen, read from the "running" line.
#[derive(Clone, Copy, Debug)]
struct Addrs {
    rpc: SocketAddr,
    metrics: SocketAddr,
}

impl Launched {
    /// `[l1]` with `l1` (and a fast poll), then `[rpc]` and `[metrics]` on port 0 with the extra
    /// lines given for each. The L1 request timeout is the default, 10 s.
    fn launch(l1_url: &str, l1: &str, rpc: &str, metrics: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config.toml");
        let log = dir.path().join("supervisor.log");
        std::fs::write(
            &config,
            format!(
                "datadir = {:?}\n[l1]\nrpc_url = {l1_url:?}\npoll_interval_ms = 100\nstart_block = 0\n{l1}\n\
                 [rpc]\nlisten = \"127.0.0.1:0\"\n{rpc}\n[metrics]\nlisten = \"127.0.0.1:0\"\n{metrics}\n",
                dir.path().join("data")
            ),
        )?;
        let launched = Instant::now();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start rollup-supervisor")?;
        Ok(Self { child: Some(child), launched, dir, log })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The servers' addresses, once the process says it runs, within `timeout` of the launch.
    async fn addrs(&self, timeout: Duration) -> Result<Addrs> {
        let left = timeout.saturating_sub(self.launched.elapsed());
        let found = wait_for("the \"running\" line", left, Duration::from_millis(10), || async {
            let text = self.log_text();
            let Some(line) = text.lines().find(|l| l.contains("rollup-supervisor running")) else { return Ok(None) };
            Ok(Some(Addrs { rpc: field(line, "rpc=")?, metrics: field(line, "metrics=")? }))
        })
        .await;
        found.map_err(|e| anyhow::anyhow!("{e:#}\nsupervisor log:\n{}", self.log_text()))
    }

    /// Waits for the process to exit by itself; its exit code.
    async fn wait_exit(&mut self, timeout: Duration) -> Result<i32> {
        let mut child = self.child.take().context("not running")?;
        let status = tokio::time::timeout(timeout, child.wait()).await.context("the process did not exit")??;
        status.code().context("killed by a signal")
    }

    /// SIGTERM; the exit code.
    async fn stop(&mut self) -> Result<i32> {
        let pid = self.child.as_ref().and_then(Child::id).context("not running")?;
        signal(pid, "TERM")?;
        self.wait_exit(Duration::from_secs(20)).await
    }
}

fn field(line: &str, key: &str) -> Result<SocketAddr> {
    let at = line.find(key).with_context(|| format!("no {key} in {line}"))? + key.len();
    let addr: String = line[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    Ok(addr.parse()?)
}

/// A plain client with no connection pool, so every request opens its own connection.
fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build()?)
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let reply = client()?.get(format!("http://{addr}{path}")).send().await?;
    Ok((reply.status().as_u16(), reply.text().await?))
}

/// A well-formed JSON-RPC call on a fresh client (so a connection of its own).
async fn call(addr: SocketAddr, method: &str, params: Value) -> Result<Value> {
    RpcClient::new(format!("http://{addr}"))?.rpc(method, params).await
}

/// Reads until the server closes the connection (EOF or reset); what it sent first.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The server ends of our connections `streams`, as `/proc/net/tcp` shows them (read once):
/// whether a process has accepted each (it has a socket inode) and how many bytes it has not
/// read yet. `None`: the kernel has no such connection.
fn server_ends(streams: &[&TcpStream]) -> Result<Vec<Option<(bool, u64)>>> {
    let hex = |a: SocketAddr| -> Result<String> {
        let SocketAddr::V4(v4) = a else { bail!("IPv4 only: {a}") };
        Ok(format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.ip().octets()), v4.port()))
    };
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let mut out = Vec::with_capacity(streams.len());
    for stream in streams {
        let (server, client) = (hex(stream.peer_addr()?)?, hex(stream.local_addr()?)?);
        let row = rows.iter().find(|f| f.len() > 9 && f[1] == server && f[2] == client);
        out.push(match row {
            Some(f) => {
                let unread = f[4].split(':').nth(1).context("rx_queue")?;
                Some((f[9] != "0", u64::from_str_radix(unread, 16)?))
            }
            None => None,
        });
    }
    Ok(out)
}

/// Waits until the server has accepted `stream` and read everything sent on it so far: the
/// request is in the server's hands.
async fn wait_read_by_server(stream: &TcpStream, what: &str) -> Result<()> {
    wait_for(what, WAIT, Duration::from_millis(10), || async {
        Ok((server_ends(&[stream])? == [Some((true, 0))]).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoints_come_up_at_once_while_the_l1_node_hangs() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(5).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    proxy.set_mode(ProxyMode::Blackhole);
    // anvil's default chain id: the right one, which cannot be verified while the node hangs.
    let l1 = format!("chain_id = {ANVIL_DEFAULT_CHAIN_ID}");
    let mut sup = Launched::launch(&proxy.url(), &l1, "", "")?;

    let addrs = sup.addrs(UP_WITHIN).await?;
    let running = sup.launched.elapsed();
    let left = || UP_WITHIN.saturating_sub(sup.launched.elapsed());
    let (status, body) = wait_for("/healthz", left(), Duration::from_millis(10), || async {
        Ok(Some(get(addrs.metrics, "/healthz").await?))
    })
    .await?;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let healthz = sup.launched.elapsed();
    let unready: Value = wait_for("/readyz", left(), Duration::from_millis(10), || async {
        let (status, body) = get(addrs.metrics, "/readyz").await?;
        Ok((status == 503).then(|| serde_json::from_str(&body)).transpose()?)
    })
    .await?;
    assert_eq!(readyz_check(&unready, "l1")["ok"], json!(false), "{unready}");
    assert_eq!(readyz_check(&unready, "db")["ok"], json!(true), "{unready}");
    let readyz = sup.launched.elapsed();
    let status = wait_for("supervisor_syncStatus", left(), Duration::from_millis(10), || async {
        Ok(Some(call(addrs.rpc, "supervisor_syncStatus", json!([])).await?))
    })
    .await?;
    assert_eq!(status["l1"]["latest"], Value::Null, "nothing recorded from an unverified node: {status}");
    let rpc = sup.launched.elapsed();
    eprintln!(
        "hung L1, l1.chain_id set: from launch, running line {running:?}, /healthz 200 {healthz:?}, /readyz 503 \
         {readyz:?}, JSON-RPC {rpc:?} (bound {UP_WITHIN:?})"
    );

    // The node answers: the chain id is verified and the index follows.
    proxy.restore();
    let hash = anvil.canonical_chain(5, 5).await?[0].hash.clone();
    wait_for("L1 block 5 recorded", WAIT, Duration::from_millis(50), || async {
        let status = call(addrs.rpc, "supervisor_syncStatus", json!([])).await?;
        Ok((status["l1"]["latest"]["hash"] == json!(hash)).then_some(()))
    })
    .await?;
    wait_for("/readyz 200", WAIT, Duration::from_millis(100), || async {
        Ok((get(addrs.metrics, "/readyz").await?.0 == 200).then_some(()))
    })
    .await?;
    wait_for("the chain id verified", WAIT, Duration::from_millis(50), || async {
        Ok(sup.log_text().contains("L1 chain id verified").then_some(()))
    })
    .await?;
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_l1_chain_id_is_a_clear_error_even_after_the_node_hung() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions { chain_id: Some(5), ..Default::default() }).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    proxy.set_mode(ProxyMode::Blackhole);
    let mut sup = Launched::launch(&proxy.url(), "chain_id = 1", "", "")?;
    let addrs = sup.addrs(UP_WITHIN).await?;
    let (status, _) = get(addrs.metrics, "/healthz").await?;
    assert_eq!(status, 200);

    // The node answers, with another chain: the process stops with the reason, nothing recorded.
    proxy.restore();
    assert_eq!(sup.wait_exit(WAIT).await?, 1, "{}", sup.log_text());
    let log = sup.log_text();
    assert!(log.contains("serves chain 5, but l1.chain_id is 1"), "{log}");
    let dump = std::process::Command::new(BIN)
        .args(["db", "inspect", "--json", "--datadir"])
        .arg(sup.dir.path().join("data"))
        .output()?;
    let dump: Value = serde_json::from_slice(&dump.stdout)?;
    assert_eq!(dump["l1"].as_array().map(Vec::len), Some(0), "{dump}");
    Ok(())
}

/// What a slow client sends before it trickles one more byte every 200 ms.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Nothing at all (and nothing later).
    Silent,
    /// Part of a request head.
    Head,
    /// A whole head declaring a body, and the body's first byte (JSON-RPC only).
    Body,
}

/// A slowloris client's connection, with what it sends first; when it was opened.
async fn open_slow(addr: SocketAddr, slow: Slow) -> Result<(TcpStream, Instant)> {
    let mut stream = TcpStream::connect(addr).await?;
    let opened = Instant::now();
    match slow {
        Slow::Silent => {}
        Slow::Head => stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await?,
        Slow::Body => {
            let head =
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[";
            stream.write_all(head.as_bytes()).await?
        }
    }
    Ok((stream, opened))
}

/// A slowloris client on one connection ([`open_slow`]), until the server closes it; how long
/// that took from the opening (`None`: not within `give_up`).
async fn slowloris(mut stream: TcpStream, opened: Instant, slow: Slow, give_up: Duration) -> Result<Option<Duration>> {
    let mut buf = [0u8; 1024];
    while opened.elapsed() < give_up {
        // One more byte every 200 ms: the client's pace, which the header timeout must cut short.
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ok(Some(opened.elapsed())),
                Ok(_) => {} // an error answer before the close
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if !matches!(slow, Slow::Silent) && stream.write_all(b" ").await.is_err() {
                    return Ok(Some(opened.elapsed()));
                }
            }
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_closed_after_the_header_timeout_while_others_are_served() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    // 3 s: opening the 48 slow connections and serving the ordinary requests must fit in it on
    // a loaded machine (every slow connection must still be open when they are answered).
    let limits = "max_connections = 64\nheader_read_timeout_ms = 3000";
    let mut sup = Launched::launch(&anvil.url(), "", limits, limits)?;
    let addrs = sup.addrs(WAIT).await?;
    let timeout = Duration::from_millis(3000);
    let give_up = Duration::from_secs(15);

    let mut opened = Vec::new();
    for (server, addr) in [("rpc", addrs.rpc), ("metrics", addrs.metrics)] {
        for i in 0..24 {
            let slow = match i % 4 {
                0 => Slow::Silent,
                1 if server == "rpc" => Slow::Body,
                _ => Slow::Head,
            };
            opened.push((server, slow, open_slow(addr, slow).await?));
        }
    }
    // Every slow connection accepted by its server: they hold their connections while the
    // ordinary requests below are answered.
    let streams: Vec<&TcpStream> = opened.iter().map(|(_, _, (s, _))| s).collect();
    wait_for("every slow connection accepted", timeout, Duration::from_millis(10), || async {
        Ok(server_ends(&streams)?.iter().all(|end| end.is_some_and(|(accepted, _)| accepted)).then_some(()))
    })
    .await?;
    drop(streams);
    let clients: Vec<_> = opened
        .into_iter()
        .map(|(server, slow, (stream, at))| (server, slow, tokio::spawn(slowloris(stream, at, slow, give_up))))
        .collect();
    let asked = Instant::now();
    let (status, _) = get(addrs.metrics, "/healthz").await?;
    assert_eq!(status, 200);
    call(addrs.rpc, "supervisor_syncStatus", json!([])).await?;
    let served = asked.elapsed();
    let open = clients.iter().filter(|(_, _, c)| !c.is_finished()).count();
    assert_eq!(open, clients.len(), "the ordinary requests were only answered once slow clients had gone");

    let mut closed_after = Vec::new();
    for (server, slow, client) in clients {
        let after = client.await??;
        let after = after.with_context(|| format!("a {server} connection ({slow:?}) still open after {give_up:?}"))?;
        ensure!(
            after >= timeout.mul_f64(0.8) && after <= timeout + Duration::from_secs(2),
            "a {server} connection ({slow:?}) closed after {after:?}, not at the {timeout:?} header timeout"
        );
        closed_after.push(after);
    }
    closed_after.sort();
    eprintln!(
        "slowloris: 48 connections (24 per server: 6 silent, the rest trickling a head, or on JSON-RPC 6 a body), \
         header timeout {timeout:?}: ordinary requests served in {served:?}; slow connections closed after {:?}..{:?}",
        closed_after[0],
        closed_after[closed_after.len() - 1]
    );
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    let mut sup = Launched::launch(&anvil.url(), "", "", "")?;
    let addrs = sup.addrs(WAIT).await?;

    // The metrics server reads no body: a declared one over 1 KiB, or one of undeclared length,
    // is answered 413 before a byte of it is read, and the connection closed.
    for (head, what) in [
        ("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n", "a 10 MiB POST"),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n", "a GET with a 2 KiB body"),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "a chunked GET"),
    ] {
        let mut stream = TcpStream::connect(addrs.metrics).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&[b'a'; 1000]).await?;
        let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut stream))
            .await
            .with_context(|| format!("{what}: the connection stayed open"))?;
        ensure!(answer.is_empty() || answer.starts_with("HTTP/1.1 413"), "{what}: {answer}");
        eprintln!("metrics server, {what}: {}", answer.lines().next().unwrap_or("closed without an answer"));
    }
    // Small ones are fine.
    let reply = client()?.get(format!("http://{}/healthz", addrs.metrics)).body("{}").send().await?;
    assert_eq!(reply.status().as_u16(), 200);

    // The JSON-RPC server: a body over 1 MiB is answered 413 (the client may see the connection
    // closed first, while it still sends), and the server goes on serving.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"supervisor_syncStatus","params":[],"pad":"{}"}}"#,
        "a".repeat(2 << 20)
    );
    let reply = client()?
        .post(format!("http://{}", addrs.rpc))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    match reply {
        Ok(reply) => assert_eq!(reply.status().as_u16(), 413),
        Err(e) => eprintln!("JSON-RPC, 2 MiB body: closed while sending ({e})"),
    }
    call(addrs.rpc, "supervisor_syncStatus", json!([])).await?;
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    Ok(())
}

/// Whether a fresh connection to `addr` gets an answer to a request (false: closed without one).
async fn answered(addr: SocketAddr, request: &str) -> Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Ok(false);
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut stream)).await.context("no close")?;
    Ok(answer.starts_with("HTTP/1.1 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_until_one_ends() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    let limits = "max_connections = 4\nheader_read_timeout_ms = 30000";
    let mut sup = Launched::launch(&anvil.url(), "", limits, limits)?;
    let addrs = sup.addrs(WAIT).await?;
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let sync = r#"{"jsonrpc":"2.0","id":1,"method":"supervisor_syncStatus","params":[]}"#;
    let rpc = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sync}",
        sync.len()
    );

    for (server, addr, request) in [("metrics", addrs.metrics, health), ("rpc", addrs.rpc, rpc.as_str())] {
        ensure!(answered(addr, request).await?, "{server}: answered below the limit");
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(addr).await?);
        }
        // Once the server has accepted all four, a fifth is closed unanswered, every time.
        wait_for(&format!("{server} at its limit"), Duration::from_secs(10), Duration::from_millis(100), || async {
            Ok((!answered(addr, request).await?).then_some(()))
        })
        .await?;
        for _ in 0..3 {
            ensure!(!answered(addr, request).await?, "{server}: a fifth connection was served");
        }
        // One ends: the next is served.
        drop(idle.pop());
        wait_for(&format!("{server} serving again"), WAIT, Duration::from_millis(50), || async {
            Ok(answered(addr, request).await?.then_some(()))
        })
        .await?;
        drop(idle);
    }
    assert!(sup.log_text().contains("connection limit reached"), "{}", sup.log_text());
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_rpc_request_in_flight_at_stop_is_answered_and_new_connections_are_refused() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    let mut sup = Launched::launch(&anvil.url(), "", "", "")?;
    let addrs = sup.addrs(WAIT).await?;

    // A request whose body is still arriving when the process is told to stop.
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"supervisor_syncStatus","params":[]}"#;
    let mut stream = TcpStream::connect(addrs.rpc).await?;
    stream
        .write_all(
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    let (first, rest) = body.split_at(20);
    stream.write_all(first.as_bytes()).await?;
    wait_read_by_server(&stream, "the head and the body's first bytes read by the server").await?;
    let pid = sup.child.as_ref().and_then(Child::id).context("not running")?;
    signal(pid, "TERM")?;
    let stopped = Instant::now();

    // Meanwhile, new connections are refused (within 3 s: the request in flight has 5).
    for (server, addr) in [("rpc", addrs.rpc), ("metrics", addrs.metrics)] {
        wait_for(
            &format!("{server} refusing connections"),
            Duration::from_secs(3),
            Duration::from_millis(50),
            || async {
                Ok(match TcpStream::connect(addr).await {
                    Err(_) => Some(()),
                    Ok(mut s) => {
                        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
                        let answer = tokio::time::timeout(Duration::from_secs(1), read_to_close(&mut s)).await;
                        answer.is_ok_and(|a| a.is_empty()).then_some(())
                    }
                })
            },
        )
        .await?;
    }

    // The rest of the request a second after the signal (the scenario's timing, not a wait for
    // a condition): the stop waits for it (up to 5 s).
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(stopped.elapsed())).await;
    stream.write_all(rest.as_bytes()).await?;
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut stream)).await?;
    ensure!(answer.starts_with("HTTP/1.1 200"), "the request in flight got: {answer:?}\n{}", sup.log_text());
    let json = answer.split("\r\n\r\n").nth(1).context("no body")?;
    let reply: Value = serde_json::from_str(json)?;
    assert_eq!(reply["id"], json!(7), "{reply}");
    assert!(reply["result"]["l1"].is_object(), "{reply}");
    assert_eq!(sup.wait_exit(Duration::from_secs(20)).await?, 0, "{}", sup.log_text());
    eprintln!("drain: the request in flight 1 s after SIGTERM answered, exit 0 {:?} after SIGTERM", stopped.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_readyz_in_flight_at_stop_is_answered() -> Result<()> {
    let f = Fixture::new(true).await?;
    f.fund().await?;
    let mut sup = Supervisor::start(&f.quiet_spec()?).await?;
    sup.wait_readyz(200, WAIT, |_| true).await?;
    let Backend::Web3(stand_in) = &f.backend else { bail!("web3signer fixture") };
    // The signer probe now takes the signer's whole timeout (1 s): /readyz is that slow.
    stand_in.set_mode(rollup_supervisor_signer::test_utils::Mode::Slow(Duration::from_secs(3)));
    let metrics: SocketAddr = sup.metrics_url.trim_start_matches("http://").parse()?;
    let asked = Instant::now();
    let mut readyz = TcpStream::connect(metrics).await?;
    readyz.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    wait_read_by_server(&readyz, "the /readyz request read by the server").await?;
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut readyz)).await?;
    let status: u16 = answer.split_whitespace().nth(1).context("no status line")?.parse()?;
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).context("no body")?)?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(readyz_check(&body, "signer_901")["ok"], json!(false), "{body}");
    eprintln!("drain: /readyz in flight at SIGTERM answered {status} after {:?}", asked.elapsed());
    Ok(())
}

#[test]
fn a_zero_server_limit_is_a_configuration_error_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (section, key) in [("rpc", "max_connections"), ("metrics", "header_read_timeout_ms")] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("[l1]\nrpc_url = \"http://127.0.0.1:1\"\n[{section}]\n{key} = 0\n"))?;
        let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(&path).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "the message must name {key}: {stderr}");
    }
    Ok(())
}
