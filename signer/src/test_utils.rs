//! Test helpers (feature `test-utils`): an in-process Web3Signer stand-in.
//!
//! [`StandIn`] speaks Web3Signer's eth1 API
//! (<https://consensys.github.io/web3signer/web3signer-eth1.html>) over plain HTTP/1.1 on
//! `127.0.0.1`, one request per connection (`Connection: close`), and signs with a real secp256k1
//! key: `keccak256(data)` then ECDSA, answered as `text/plain` `0x` r‖s‖v with v = 27/28.
//!
//! | request                              | answer                                              |
//! |--------------------------------------|-----------------------------------------------------|
//! | `POST /api/v1/eth1/sign/{id}`        | 200 signature; 404 unknown id; 400 missing/bad data |
//! | `GET /api/v1/eth1/publicKeys`        | 200 JSON `["0x<identifier>"]`                       |
//! | `GET /upcheck`                       | 200 `OK`                                            |
//! | `GET /healthcheck`                   | 200 JSON `{status, checks, outcome}`                |
//! | anything else                        | 404                                                 |
//!
//! [`Mode`] injects failures. Dropping the [`StandIn`] stops the server and all its connections.
//! [`StandIn::serve_tls`] serves the same API over TLS (e.g. with client-certificate checks, to test
//! mutual TLS); the crate's `testdata/tls/` holds a test CA and certificates for `127.0.0.1`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use rollup_supervisor_signer::{Web3Signer, test_utils::{Mode, StandIn}};
//! let stand_in = StandIn::start().await?;
//! let signer = Web3Signer::new(stand_in.config()).expect("valid config");
//! stand_in.set_mode(Mode::Error500);
//! # Ok(()) }
//! ```

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    hex,
    primitives::{Address, keccak256},
    signers::{SignerSync, local::PrivateKeySigner},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

use crate::Web3SignerConfig;

/// Longest request head (request line + headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest request body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// A client has this long to send its whole request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

const SIGN_PREFIX: &str = "/api/v1/eth1/sign/";

/// How the stand-in behaves; switch with [`StandIn::set_mode`] at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Answers as Web3Signer does.
    #[default]
    Normal,
    /// Accepts connections and closes them at once, without answering.
    Down,
    /// Waits this long before answering each request.
    Slow(Duration),
    /// Signs with a different key than the one its identifier and address belong to.
    WrongKey,
    /// Answers every request with `500 Internal Server Error`.
    Error500,
}

struct Shared {
    key: PrivateKeySigner,
    wrong_key: PrivateKeySigner,
    identifier: String,
    mode: Mutex<Mode>,
    sign_requests: AtomicU64,
    last_sign_data: Mutex<Option<Vec<u8>>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to a running Web3Signer stand-in. Dropping it stops the server.
pub struct StandIn {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandIn")
            .field("url", &self.url)
            .field("address", &self.shared.key.address())
            .field("mode", &self.shared.mode())
            .finish()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

impl StandIn {
    /// Binds `127.0.0.1:0` and serves a fresh random key.
    pub async fn start() -> io::Result<Self> {
        Self::start_with_key(PrivateKeySigner::random()).await
    }

    /// Binds `127.0.0.1:0` and serves `key`.
    pub async fn start_with_key(key: PrivateKeySigner) -> io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        Self::serve(listener, key)
    }

    /// Serves `key` over plain HTTP on an already bound listener. Must be called inside a tokio runtime.
    pub fn serve(listener: TcpListener, key: PrivateKeySigner) -> io::Result<Self> {
        Self::serve_with(listener, key, None)
    }

    /// Serves `key` over HTTPS with `tls` (which may require client certificates) on an already
    /// bound listener; [`StandIn::url`] is then `https://127.0.0.1:<port>`. Must be called inside a
    /// tokio runtime. Failed handshakes just close the connection.
    pub fn serve_tls(listener: TcpListener, key: PrivateKeySigner, tls: Arc<ServerConfig>) -> io::Result<Self> {
        Self::serve_with(listener, key, Some(TlsAcceptor::from(tls)))
    }

    fn serve_with(listener: TcpListener, key: PrivateKeySigner, tls: Option<TlsAcceptor>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let identifier = hex::encode_prefixed(key.public_key());
        let shared = Arc::new(Shared {
            key,
            wrong_key: PrivateKeySigner::random(),
            identifier,
            mode: Mutex::new(Mode::Normal),
            sign_requests: AtomicU64::new(0),
            last_sign_data: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(listener, tls, Arc::clone(&shared)));
        Ok(Self { addr, url: format!("{scheme}://{addr}"), shared, task })
    }

    /// `http://127.0.0.1:<port>` (`https://` when serving TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key identifier: `0x` + lower-case hex of the 64-byte uncompressed public key.
    pub fn identifier(&self) -> &str {
        &self.shared.identifier
    }

    /// The address of the served key.
    pub fn address(&self) -> Address {
        self.shared.key.address()
    }

    /// Changes the behaviour for requests from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// How many sign requests arrived (any outcome except connections closed in [`Mode::Down`]).
    pub fn sign_requests(&self) -> u64 {
        self.shared.sign_requests.load(Ordering::SeqCst)
    }

    /// The decoded `data` bytes of the last sign request that carried valid data.
    pub fn last_sign_data(&self) -> Option<Vec<u8>> {
        self.shared.last_sign_data.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A client configuration for this stand-in (its identifier and address, 5 s timeout).
    pub fn config(&self) -> Web3SignerConfig {
        Web3SignerConfig {
            timeout: Duration::from_secs(5),
            ..Web3SignerConfig::new(self.url.clone(), self.identifier(), self.address())
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Per-connection errors (aborted handshakes, fd exhaustion): back off briefly.
                tracing::debug!(target: "signer::stand_in", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if shared.mode() == Mode::Down {
            drop(stream);
            continue;
        }
        let shared = Arc::clone(&shared);
        match tls.clone() {
            None => connections.spawn(handle(stream, shared)),
            Some(acceptor) => connections.spawn(async move {
                match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => handle(stream, shared).await,
                    Ok(Err(e)) => tracing::debug!(target: "signer::stand_in", error = %e, "TLS handshake failed"),
                    Err(_) => {}
                }
            }),
        };
    }
}

struct Request {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    fn json(status: u16, body: serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: body.to_string() }
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: Arc<Shared>) {
    let request = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(Some(status))) => {
            let _ = write_response(&mut stream, Response::text(status, reason(status))).await;
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    let mode = shared.mode();
    if mode == Mode::Down {
        return;
    }
    if request.method == "POST" && request.path.starts_with(SIGN_PREFIX) {
        shared.sign_requests.fetch_add(1, Ordering::SeqCst);
    }
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let response = if mode == Mode::Error500 {
        Response::text(500, "Internal Server Error")
    } else {
        route(&shared, mode, &request)
    };
    let _ = write_response(&mut stream, response).await;
}

fn route(shared: &Shared, mode: Mode, request: &Request) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/upcheck") => Response::text(200, "OK"),
        ("GET", "/healthcheck") => Response::json(
            200,
            serde_json::json!({"status": "UP", "checks": [{"id": "default", "status": "UP"}], "outcome": "UP"}),
        ),
        ("GET", "/api/v1/eth1/publicKeys") => Response::json(200, serde_json::json!([shared.identifier])),
        ("POST", path) if path.starts_with(SIGN_PREFIX) => sign(shared, mode, &path[SIGN_PREFIX.len()..], request),
        _ => Response::text(404, "Not Found"),
    }
}

fn sign(shared: &Shared, mode: Mode, identifier: &str, request: &Request) -> Response {
    if !identifier.eq_ignore_ascii_case(&shared.identifier) {
        return Response::text(404, "Public Key not found");
    }
    let is_json = request
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Response::text(400, "Content-Type must be application/json");
    }
    let data = serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v.get("data").and_then(|d| d.as_str()).map(str::to_owned))
        .and_then(|d| d.strip_prefix("0x").and_then(|h| hex::decode(h).ok()));
    let Some(data) = data else {
        return Response::text(400, "Bad Request: missing or invalid data");
    };
    let hash = keccak256(&data);
    *shared.last_sign_data.lock().unwrap_or_else(PoisonError::into_inner) = Some(data);
    let key = if mode == Mode::WrongKey { &shared.wrong_key } else { &shared.key };
    match key.sign_hash_sync(&hash) {
        // `as_bytes` is r ‖ s ‖ v with v = 27/28.
        Ok(sig) => Response::text(200, hex::encode_prefixed(sig.as_bytes())),
        Err(_) => Response::text(500, "Internal Server Error"),
    }
}

/// Reads one request. `Err(None)`: connection closed or broken (no answer possible);
/// `Err(Some(status))`: malformed, answer with `status`.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, Option<u16>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(Some(431));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut body = buf.split_off(head_end + 4);
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| Some(400))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (request_line.next(), request_line.next(), request_line.next())
    else {
        return Err(Some(400));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Some(505));
    }
    let mut content_length = 0usize;
    let mut content_type = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Err(Some(400)) };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| Some(400))?;
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Some(411));
        }
    }
    if content_length > MAX_BODY {
        return Err(Some(413));
    }
    while body.len() < content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(content_length);
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Request { method: method.to_owned(), path, content_type, body })
}

async fn write_response<S: AsyncWrite + Unpin>(stream: &mut S, response: Response) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    async fn get(url: String) -> (u16, String, String) {
        tokio::time::timeout(LIMIT, async {
            let resp = reqwest::Client::new().get(url).send().await.unwrap();
            let status = resp.status().as_u16();
            let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (status, ct, String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap())
        })
        .await
        .unwrap()
    }

    async fn post(url: String, content_type: &str, body: &str) -> (u16, String) {
        let req = reqwest::Client::new().post(url).header("content-type", content_type).body(body.to_owned());
        tokio::time::timeout(LIMIT, async {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap())
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn identifier_is_the_uncompressed_public_key_of_the_address() {
        let stand_in = StandIn::start().await.unwrap();
        let id = stand_in.identifier();
        assert!(id.starts_with("0x") && id.len() == 2 + 128 && id == id.to_lowercase(), "{id}");
        let raw = hex::decode(id).unwrap();
        assert_eq!(Address::from_raw_public_key(&raw), stand_in.address());
    }

    #[tokio::test]
    async fn read_endpoints() {
        let s = StandIn::start().await.unwrap();
        assert_eq!(get(format!("{}/upcheck", s.url())).await, (200, "text/plain; charset=utf-8".into(), "OK".into()));

        let (status, ct, body) = get(format!("{}/api/v1/eth1/publicKeys", s.url())).await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        assert_eq!(serde_json::from_str::<Vec<String>>(&body).unwrap(), vec![s.identifier().to_owned()]);

        let (status, _, body) = get(format!("{}/healthcheck", s.url())).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "UP");
        assert_eq!(v["outcome"], "UP");
        assert_eq!(v["checks"][0]["id"], "default");

        assert_eq!(get(format!("{}/nope", s.url())).await.0, 404);
        assert_eq!(get(format!("{}/api/v1/eth1/sign/{}", s.url(), s.identifier())).await.0, 404);
    }

    #[tokio::test]
    async fn sign_endpoint_signs_keccak_of_data_and_rejects_bad_requests() {
        let s = StandIn::start().await.unwrap();
        let url = format!("{}/api/v1/eth1/sign/{}", s.url(), s.identifier());

        let (status, body) = post(url.clone(), "application/json", r#"{"data":"0xdeadbeef"}"#).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("0x") && body.len() == 2 + 130, "{body}");
        let sig = alloy::primitives::Signature::from_raw(&hex::decode(&body).unwrap()).unwrap();
        assert!(matches!(hex::decode(&body).unwrap()[64], 27 | 28));
        let hash = keccak256([0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(sig.recover_address_from_prehash(&hash).unwrap(), s.address());
        assert_eq!(s.last_sign_data(), Some(vec![0xde, 0xad, 0xbe, 0xef]));

        for bad in ["{}", r#"{"data":"zz"}"#, r#"{"data":"0xzz"}"#, r#"{"data":5}"#, "not json"] {
            assert_eq!(post(url.clone(), "application/json", bad).await.0, 400, "{bad}");
        }
        assert_eq!(post(url.clone(), "text/plain", r#"{"data":"0x00"}"#).await.0, 400);
        let unknown = format!("{}/api/v1/eth1/sign/0x{}", s.url(), "ab".repeat(64));
        assert_eq!(post(unknown, "application/json", r#"{"data":"0x00"}"#).await.0, 404);
        assert_eq!(s.sign_requests(), 8);
    }

    #[tokio::test]
    async fn drop_stops_the_server() {
        let s = StandIn::start().await.unwrap();
        let addr = s.local_addr();
        drop(s);
        // The listener is closed once the aborted accept task has been dropped; poll briefly.
        let refused = tokio::time::timeout(LIMIT, async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(refused.is_ok(), "stand-in still accepting after drop");
    }
}
