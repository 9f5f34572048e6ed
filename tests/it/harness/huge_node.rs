//! [`HostileNode`]: a hostile node that sends huge answers (the `memory` test and the
//! reliability suite's huge-answers mode): every `eth_getBlockByNumber` answered with a 200 MB
//! body, every batch with 50 MB of padding per item, generated while sent, never held.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use anyhow::{Context as _, Result};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// A single answer of the hostile node.
pub const SINGLE_BYTES: usize = 200_000_000;
/// The padding of each item of a batch answer.
pub const BATCH_ITEM_BYTES: usize = 50_000_000;

/// A loopback HTTP server in front of `target`: honest, it forwards each request and its answer;
/// hostile, it answers with the padding above, generated while it is sent (64 KiB at a time, never
/// held), close-delimited so that no `content-length` gives the size away.
pub struct HostileNode {
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
    pub async fn start(target: SocketAddr) -> Result<Self> {
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_hostile(&self, on: bool) {
        self.hostile.store(on, Ordering::SeqCst);
    }

    /// Hostile answers started so far.
    pub fn huge_answers(&self) -> usize {
        self.huge_answers.load(Ordering::SeqCst)
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
