//! Issue 9 item 4: memory does not follow what a node sends. A hostile L1 node answers every
//! `eth_getBlockByNumber` with a 200 MB body and every batch with 50 MB of padding per item; the
//! supervisor refuses each answer past its bound (`answer larger than N bytes`), keeps running
//! with its peak RSS bounded, and records the chain once the honest node is behind the proxy again.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::{
    harness::{Anvil, AnvilOptions, wait_for},
    l1::stop_and_compare,
    supervisor::{Spec, Supervisor},
};

const WAIT: Duration = Duration::from_secs(60);
/// A single answer of the hostile node.
const SINGLE_BYTES: usize = 200_000_000;
/// The padding of each item of a batch answer.
const BATCH_ITEM_BYTES: usize = 50_000_000;
/// The bound on the supervisor's peak RSS under the hostile node.
const MAX_PEAK_RSS: u64 = 100 << 20;

/// A loopback HTTP server in front of `target`: honest, it forwards each request and its answer;
/// hostile, it answers with the padding above, generated while it is sent (64 KiB at a time, never
/// held), close-delimited so that no `content-length` gives the size away.
struct HostileNode {
    addr: SocketAddr,
    hostile: Arc<AtomicBool>,
    /// Hostile answers started.
    huge_answers: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileNode {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (hostile, huge_answers) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (h, n) = (hostile.clone(), huge_answers.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, n) = (h.clone(), n.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, target, &h, &n).await;
                });
            }
        });
        Ok(Self { addr, hostile, huge_answers, task })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_hostile(&self, on: bool) {
        self.hostile.store(on, Ordering::SeqCst);
    }
}

/// One request on `stream`, one answer, then the connection closes.
async fn serve(mut stream: TcpStream, target: SocketAddr, hostile: &AtomicBool, huge: &AtomicUsize) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before the request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                .context("no content-length")??;
            break (end + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed inside the request");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    let request: Value = serde_json::from_slice(&body)?;
    let is_block = |r: &Value| r["method"] == "eth_getBlockByNumber";
    let batch = request.as_array().cloned();
    if hostile.load(Ordering::SeqCst) && batch.as_ref().map_or(is_block(&request), |b| b.iter().any(is_block)) {
        huge.fetch_add(1, Ordering::SeqCst);
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n").await?;
        match batch {
            Some(items) => {
                stream.write_all(b"[").await?;
                for (i, item) in items.iter().enumerate() {
                    let open = format!(
                        "{}{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"pad\":\"",
                        if i > 0 { "," } else { "" },
                        item["id"]
                    );
                    stream.write_all(open.as_bytes()).await?;
                    padding(&mut stream, BATCH_ITEM_BYTES).await?;
                    stream.write_all(b"\"}}").await?;
                }
                stream.write_all(b"]").await?;
            }
            None => {
                let open = format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"pad\":\"", request["id"]);
                stream.write_all(open.as_bytes()).await?;
                padding(&mut stream, SINGLE_BYTES).await?;
                stream.write_all(b"\"}}").await?;
            }
        }
        return Ok(());
    }
    let answer = reqwest::Client::new()
        .post(format!("http://{target}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?
        .bytes()
        .await?;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&answer).await?;
    Ok(())
}

/// `size` bytes of `a`, 64 KiB at a time; fails as soon as the peer stops reading.
async fn padding(stream: &mut TcpStream, size: usize) -> Result<()> {
    let piece = vec![b'a'; 64 << 10];
    let mut sent = 0;
    while sent < size {
        let n = piece.len().min(size - sent);
        stream.write_all(&piece[..n]).await?;
        sent += n;
    }
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM")?;
    Ok(kib << 10)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_huge_answers_is_refused_and_memory_stays_bounded() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(50).await?;
    let node = HostileNode::start(anvil.addr()).await?;
    // The default bound: batch_size (100) × 64 KiB + 1 MiB.
    let spec = Spec::new(node.url());
    let mut sup = Supervisor::start(&spec).await?;
    let pid = sup.pid().context("pid")?;
    let head = |n: u64| {
        let anvil = &anvil;
        async move { anyhow::Ok(anvil.canonical_chain(n, n).await?[0].hash.clone()) }
    };
    sup.wait_l1(50, &head(50).await?, WAIT).await?;
    let normal = peak_rss(pid)?;

    // Hostile: every block answer is huge, while the chain grows (so both the heads and the
    // catch-up batches are asked for).
    node.set_hostile(true);
    anvil.mine(250).await?;
    wait_for("the supervisor refuses five huge answers", WAIT, Duration::from_millis(100), || async {
        let refused = sup.log_text().matches("answer larger than").count();
        Ok((refused >= 5 && node.huge_answers.load(Ordering::SeqCst) >= 5).then_some(()))
    })
    .await
    .with_context(|| sup.log_text())?;
    let hostile = peak_rss(pid)?;
    eprintln!(
        "peak RSS (VmHWM): {:.1} MiB following an honest node, {:.1} MiB under the hostile one",
        mib(normal),
        mib(hostile)
    );
    let bound = format!("answer larger than {} bytes", 100 * (64 << 10) + (1 << 20));
    assert!(sup.log_text().contains(&bound), "the log says why: {}", sup.log_text());
    assert!(
        hostile < MAX_PEAK_RSS,
        "peak RSS {:.1} MiB under a hostile node (normal {:.1} MiB)",
        mib(hostile),
        mib(normal)
    );
    let (status, _) = sup.http_get("/healthz").await?;
    assert_eq!(status, 200, "still running");

    // Honest again: everything is recorded, without a gap.
    node.set_hostile(false);
    sup.wait_l1(300, &head(300).await?, WAIT).await?;
    eprintln!("peak RSS (VmHWM) at the end: {:.1} MiB", mib(peak_rss(pid)?));
    stop_and_compare(&mut sup, &anvil, 0, 300).await
}
