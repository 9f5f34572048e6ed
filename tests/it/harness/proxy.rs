//! Fault-injecting loopback TCP proxy for "L1 endpoint cut and restored" tests, and a
//! JSON-RPC-aware mode ([`ProxyMode::Rewrite`]) for a node that answers, but lies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Body sent in [`ProxyMode::Garbage`]: valid JSON, fixed id 1, result not a valid quantity.
pub const GARBAGE_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"result":"0xzz"}"#;
/// Body sent in [`ProxyMode::Truncated`]: cut-off JSON (Content-Length matches, so the HTTP
/// response is complete but the JSON is not).
pub const TRUNCATED_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"number":"0x1","ha"#;
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// How long [`ProxyMode::Rewrite`] waits for the target's answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The rule of [`ProxyMode::Rewrite`]: called for every JSON-RPC call (the request object, with
/// `method` and `params`) together with the target's `result` for it (`null` if it answered an
/// error); `Some(v)` answers `v` as the result instead, `None` passes the target's answer on.
pub type Rewrite = Arc<dyn Fn(&Value, &Value) -> Option<Value> + Send + Sync>;

/// A [`Rewrite`] of `eth_getBlockByNumber(tag, _)` for each tag in `tags` (`"latest"`, `"safe"`,
/// `"finalized"`, or a `0x` number): `answer(tag, the target's block)` is the lie.
pub fn rewrite_block_tags(tags: &[&str], answer: impl Fn(&str, &Value) -> Value + Send + Sync + 'static) -> Rewrite {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    Arc::new(move |call, result| {
        if call["method"] != "eth_getBlockByNumber" {
            return None;
        }
        let tag = call["params"][0].as_str()?;
        tags.iter().any(|t| t == tag).then(|| answer(tag, result))
    })
}

/// What the proxy does with connections. A switch resets every upstream connection; a client's
/// connection goes on in the new mode (so a pooled keep-alive connection cannot bypass it),
/// except that a switch to `Cut` or back to `Forward` resets it (see [`handle`]). A request in
/// flight at the switch can go unanswered (the client times out) or get a garbled answer: a
/// test waits for the state the new mode leads to, never for the first one after the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways to the target.
    Forward,
    /// Accept, then close immediately (RST): clients fail fast.
    Cut,
    /// Accept and read, never answer: clients time out.
    Blackhole,
    /// Answer every HTTP request `200 OK` with [`GARBAGE_BODY`], then close.
    Garbage,
    /// Answer every HTTP request `200 OK` with [`TRUNCATED_BODY`], then close.
    Truncated,
    /// JSON-RPC aware: forward every request (single or batch) to the target, replace the
    /// results that the [`Rewrite`] set with [`Proxy::rewrite`] wants to, answer, then close.
    /// A node that answers every request, but not the truth.
    Rewrite,
}

/// Listens on `127.0.0.1:0`; each accepted connection is handled per the current
/// [`ProxyMode`]. Dropping it stops the listener and all connection tasks.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accepted: Arc<AtomicU64>,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
    rewritten: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts in [`ProxyMode::Forward`].
    pub async fn start(target: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding proxy listener")?;
        let addr = listener.local_addr().context("proxy local_addr")?;
        let (mode, rx) = watch::channel(ProxyMode::Forward);
        let accepted = Arc::new(AtomicU64::new(0));
        let rewrite = Arc::new(Mutex::new(None));
        let rewritten = Arc::new(AtomicU64::new(0));
        let rpc = RewriteState { rule: rewrite.clone(), rewritten: rewritten.clone(), http: reqwest::Client::new() };
        let task = tokio::spawn(accept_loop(listener, target, rx, accepted.clone(), rpc));
        Ok(Proxy { addr, target, mode, accepted, rewrite, rewritten, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Number of connections accepted so far (all modes).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    pub fn cut(&self) {
        self.set_mode(ProxyMode::Cut);
    }

    pub fn restore(&self) {
        self.set_mode(ProxyMode::Forward);
    }

    /// Switches to [`ProxyMode::Rewrite`] with `rule` (replacing any earlier rule).
    pub fn rewrite(&self, rule: Rewrite) {
        *self.rewrite.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rule);
        self.set_mode(ProxyMode::Rewrite);
    }

    /// How many results [`ProxyMode::Rewrite`] has replaced so far.
    pub fn rewritten(&self) -> u64 {
        self.rewritten.load(Ordering::Relaxed)
    }
}

/// What the connection tasks of [`ProxyMode::Rewrite`] share.
#[derive(Clone)]
struct RewriteState {
    rule: Arc<Mutex<Option<Rewrite>>>,
    rewritten: Arc<AtomicU64>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("mode", &self.mode())
            .field("rewritten", &self.rewritten())
            .finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropping `self.mode` (the watch sender) ends every connection task.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mut rx: watch::Receiver<ProxyMode>,
    accepted: Arc<AtomicU64>,
    rpc: RewriteState,
) {
    loop {
        let sock = tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => sock,
                Err(_) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            r = rx.changed() => {
                if r.is_err() {
                    return; // Proxy dropped
                }
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let mode = *rx.borrow();
        match mode {
            ProxyMode::Cut => reset(sock),
            _ => {
                tokio::spawn(handle(sock, mode, target, rx.clone(), rpc.clone()));
            }
        }
    }
}

/// Close with RST (SO_LINGER 0) so the peer sees an error at once.
fn reset(sock: TcpStream) {
    let _ = sock.set_zero_linger();
    drop(sock);
}

/// Resolves once the mode is no longer `mode` (or the proxy is gone).
async fn left_mode(rx: &mut watch::Receiver<ProxyMode>, mode: ProxyMode) {
    loop {
        if *rx.borrow_and_update() != mode {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serves one client connection, following mode changes: to `Cut` → reset; to `Forward` (from
/// another mode) → reset, the client reconnects and is forwarded; to `Blackhole` / `Garbage` /
/// `Truncated` / `Rewrite` → the upstream (if any) is reset and the client socket stays open and
/// switches behaviour, so a pooled keep-alive connection times out / gets garbage / gets the
/// rewritten answer rather than a reset.
async fn handle(
    mut client: TcpStream,
    mut mode: ProxyMode,
    target: SocketAddr,
    mut rx: watch::Receiver<ProxyMode>,
    rpc: RewriteState,
) {
    let _ = client.set_nodelay(true);
    let mut first = true;
    loop {
        match mode {
            ProxyMode::Cut => return reset(client),
            ProxyMode::Forward if !first => return reset(client),
            ProxyMode::Forward => {
                let upstream = tokio::select! {
                    r = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(target)) => r,
                    _ = left_mode(&mut rx, mode) => return reset(client),
                };
                let Ok(Ok(mut upstream)) = upstream else {
                    return reset(client); // target down: the client sees a reset, like the node itself
                };
                let _ = upstream.set_nodelay(true);
                let switched = tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => false,
                    _ = left_mode(&mut rx, mode) => true,
                };
                reset(upstream);
                if !switched {
                    return; // one side closed: drop the client normally
                }
            }
            ProxyMode::Blackhole => {
                let mut buf = vec![0u8; 16 * 1024];
                let switched = tokio::select! {
                    _ = async { while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {} } => false,
                    _ = left_mode(&mut rx, mode) => true,
                };
                if !switched {
                    return;
                }
            }
            ProxyMode::Garbage | ProxyMode::Truncated => {
                let body = if mode == ProxyMode::Garbage { GARBAGE_BODY } else { TRUNCATED_BODY };
                let switched = tokio::select! {
                    _ = answer_http(&mut client, |_| async move { Some(body.to_owned()) }) => false,
                    _ = left_mode(&mut rx, mode) => true,
                };
                if !switched {
                    return;
                }
            }
            ProxyMode::Rewrite => {
                let rpc = rpc.clone();
                let answer = move |request: Vec<u8>| {
                    let rpc = rpc.clone();
                    async move { rpc.answer(target, request).await }
                };
                let switched = tokio::select! {
                    _ = answer_http(&mut client, answer) => false,
                    _ = left_mode(&mut rx, mode) => true,
                };
                if !switched {
                    return;
                }
            }
        }
        first = false;
        mode = *rx.borrow_and_update();
    }
}

impl RewriteState {
    /// The target's answer to the JSON-RPC `request` body with the rule applied; `None` if the
    /// target did not answer (the client connection is then dropped, like the node's own).
    async fn answer(&self, target: SocketAddr, request: Vec<u8>) -> Option<String> {
        let reply = self
            .http
            .post(format!("http://{target}"))
            .header("content-type", "application/json")
            .body(request.clone())
            .timeout(UPSTREAM_TIMEOUT)
            .send()
            .await
            .ok()?;
        let mut answer: Value = serde_json::from_slice(&reply.bytes().await.ok()?).ok()?;
        let (Ok(calls), Some(rule)) = (
            serde_json::from_slice::<Value>(&request),
            self.rule.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        ) else {
            return Some(answer.to_string());
        };
        let rewrite = |call: &Value, one: &mut Value| {
            let result = one.get("result").cloned().unwrap_or(Value::Null);
            if let Some(lie) = rule(call, &result)
                && let Some(obj) = one.as_object_mut()
            {
                obj.remove("error");
                obj.insert("result".into(), lie);
                self.rewritten.fetch_add(1, Ordering::Relaxed);
            }
        };
        match (&calls, &mut answer) {
            (Value::Array(calls), Value::Array(answers)) => {
                for one in answers.iter_mut() {
                    if let Some(call) = calls.iter().find(|c| c["id"] == one["id"]) {
                        rewrite(call, one);
                    }
                }
            }
            (call @ Value::Object(_), one @ Value::Object(_)) => rewrite(call, one),
            _ => {}
        }
        Some(answer.to_string())
    }
}

/// Reads one HTTP/1.1 request (headers + Content-Length body), answers `200 OK` with the body
/// `respond` makes of the request's body, and `Connection: close`; `respond` answering `None`
/// closes the connection without an answer.
async fn answer_http<F, Fut>(sock: &mut TcpStream, respond: F) -> std::io::Result<()>
where
    F: FnOnce(Vec<u8>) -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(std::io::Error::other("request headers too large"));
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let headers = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let content_length = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BYTES);
    while buf.len() - header_end < content_length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = buf[header_end..(header_end + content_length).min(buf.len())].to_vec();
    let Some(body) = respond(request).await else {
        return Ok(());
    };
    let resp = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.flush().await?;
    sock.shutdown().await
}
