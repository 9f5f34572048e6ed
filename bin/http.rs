//! The operator's HTTP endpoints on `[metrics] listen`: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers, L1 is reachable
//! and caught up, every uptime signer is healthy), each check named in a JSON body.
//!
//! Also the connection handling both servers share ([`HttpServer`]; the JSON-RPC server passes
//! jsonrpsee's service to it): HTTP/1.1 only, at most [`Limits::max_connections`] connections
//! (more are closed as soon as they are accepted), a header-read timeout that also closes idle
//! keep-alive connections (slowloris), and on stop: no new connection, every request in flight
//! answered within [`DRAIN_TIMEOUT`], then every connection closed.

use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, pin::Pin, task::Poll, time::Duration};

use actix::Addr;
use anyhow::Context as _;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Bytes, Frame, Incoming, SizeHint},
    header::{CONNECTION, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::{HttpService, service_fn},
};
use hyper_util::rt::{TokioIo, TokioTimer};
use rollup_supervisor_actors::{
    chains_db::DbQueries,
    metrics::Metrics,
    uptime::{messages::ProbeSigner, signer_actor::SignerActor},
    watcher::{L1Watcher, messages::GetStatus},
};
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};
use tracing::{debug, info, warn};

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a stopping server waits for the requests in flight before it closes their
/// connections: half the process's shutdown bound, which the rest of the stop (watchers, flush)
/// shares concurrently, and longer than any request takes here (the slowest, `/readyz` with
/// a failing check, answers within [`CHECK_TIMEOUT`]).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request body the metrics server accepts. Its endpoints take none and never read
/// one; a body larger than this, or of undeclared length, is answered `413` and the connection
/// closed, so no client can make the server buffer or wait for one.
pub const METRICS_MAX_BODY_BYTES: u64 = 1024;

/// hyper's read buffer on the metrics server, which bounds a request's head (larger: `431`):
/// the smallest hyper allows twice over, for requests that are one line and a few headers.
const METRICS_MAX_BUF_BYTES: usize = 16 * 1024;

/// At most one "connection limit reached" warning per server in this time.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What hyper takes as a service's or a body's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails unless it has arrived within a deadline, so that a client sending
/// a body slowly holds its connection no longer than one sending its headers slowly (the
/// JSON-RPC server reads its bodies through it, with the header-read timeout).
#[derive(Debug)]
pub struct BodyDeadline<B> {
    body: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    within: Duration,
}

impl<B> BodyDeadline<B> {
    /// `body`, which must end within `within` from now.
    pub fn new(body: B, within: Duration) -> Self {
        Self { body, deadline: Box::pin(tokio::time::sleep(within)), within }
    }
}

/// The error of a [`BodyDeadline`] that passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTooSlow(Duration);

impl<B> Body for BodyDeadline<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow(self.within))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What `/readyz` asks.
#[derive(Clone, Debug)]
pub struct Health {
    /// The database's read side (asked for the sync status).
    pub db: DbQueries,
    /// The L1 watcher (asked for its last step's result).
    pub l1_watcher: Addr<L1Watcher>,
    /// The signer of every chain with uptime reporting.
    pub signers: BTreeMap<u64, Addr<SignerActor>>,
    /// The largest L1 lag that still counts as caught up.
    pub max_l1_lag_blocks: u64,
}

/// One readiness check's outcome.
fn check(name: String, result: Result<Value, String>) -> (bool, Value) {
    match result {
        Ok(detail) => (true, json!({ "name": name, "ok": true, "detail": detail })),
        Err(error) => (false, json!({ "name": name, "ok": false, "error": error })),
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{what} did not answer within {CHECK_TIMEOUT:?}"))
}

impl Health {
    /// Runs every check; `(ready, body)`.
    pub async fn ready(&self) -> (bool, Value) {
        let mut checks = Vec::new();
        let db = async {
            let status = within("the database", self.db.sync_status()).await?;
            let status = status.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            Ok(json!({ "l1Latest": status.l1.latest.map(|b| b.number) }))
        };
        checks.push(check("db".into(), db.await));

        let l1 = async {
            let status = within("the L1 watcher", self.l1_watcher.send(GetStatus)).await?.map_err(|e| e.to_string())?;
            if let Some(error) = status.last_error {
                return Err(format!("L1 node unreachable or failing: {error}"));
            }
            if let Some(problem) = status.head_problem {
                return Err(format!("L1 node failing although it answers: {problem}"));
            }
            let Some(lag) = status.lag_blocks else {
                return Err("the L1 watcher has not completed a step yet".into());
            };
            if lag > self.max_l1_lag_blocks {
                return Err(format!(
                    "L1 index is {lag} blocks behind the node (ready_max_l1_lag_blocks = {})",
                    self.max_l1_lag_blocks
                ));
            }
            Ok(json!({ "lagBlocks": lag }))
        };
        checks.push(check("l1".into(), l1.await));

        for (chain, signer) in &self.signers {
            let probe = async {
                let answer = within("the signer actor", signer.send(ProbeSigner)).await?;
                answer.map_err(|e| e.to_string())?.map_err(|e| format!("signer unreachable: {e}"))?;
                Ok(json!({ "chain": chain }))
            };
            checks.push(check(format!("signer_{chain}"), probe.await));
        }
        let ready = checks.iter().all(|(ok, _)| *ok);
        for (ok, c) in &checks {
            if !ok {
                debug!(target: "http", check = %c, "readiness check failed");
            }
        }
        (ready, json!({ "ready": ready, "checks": checks.into_iter().map(|(_, c)| c).collect::<Vec<_>>() }))
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const JSON: &str = "application/json";

async fn route(req: Request<Incoming>, metrics: Metrics, health: Health) -> Result<Response<Full<Bytes>>, Infallible> {
    // The body is never read: refuse one that could be large before anything else.
    if req.body().size_hint().upper().is_none_or(|len| len > METRICS_MAX_BODY_BYTES) {
        let mut response = reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            JSON,
            format!(r#"{{"error":"request body over {METRICS_MAX_BODY_BYTES} bytes or of undeclared length"}}"#),
        );
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, JSON, r#"{"error":"only GET"}"#));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            // A render takes about a millisecond: off the servers' thread, like the RPC methods'.
            let text = tokio::task::spawn_blocking(move || metrics.render()).await;
            match text {
                Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text),
                Err(e) => {
                    let body = serde_json::json!({ "error": format!("render failed: {e}") });
                    reply(StatusCode::INTERNAL_SERVER_ERROR, JSON, body.to_string())
                }
            }
        }
        "/healthz" => reply(StatusCode::OK, JSON, r#"{"status":"ok"}"#),
        "/readyz" => {
            let (ready, body) = health.ready().await;
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            reply(status, JSON, body.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, JSON, r#"{"error":"not found: try /metrics, /healthz or /readyz"}"#),
    })
}

/// How a server protects itself from its clients (`[rpc]` and `[metrics]`
/// `max_connections` / `header_read_timeout_ms`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; a connection accepted beyond it is closed at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, counted from when it opens
    /// or from the previous response, so idle keep-alive connections close after it too.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The HTTP/1.1 connection settings these limits stand for.
    pub fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout).keep_alive(true);
        builder
    }
}

/// A bound listening socket, not yet served: binding comes before any actor starts, so that a
/// busy port is a clear error.
#[derive(Debug)]
pub struct Listener {
    /// A std listener, so that it can be bound on one thread and served on another (a tokio
    /// listener belongs to the runtime that registered it).
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr`; the error names the configuration `key`.
    pub fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<Self> {
        let listen = || format!("cannot listen on {addr} (key `{key}`)");
        let listener = std::net::TcpListener::bind(addr).with_context(listen)?;
        listener.set_nonblocking(true).with_context(listen)?;
        let addr = listener.local_addr().with_context(listen)?;
        Ok(Self { listener, addr })
    }

    /// The bound address (the port chosen for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A running server: accepts connections on the current actix arbiter and serves each with
/// `service`, within [`Limits`]. [`HttpServer::stop`] drains it; dropping it closes every
/// connection once its request in flight is answered.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener`.
    pub fn metrics(listener: Listener, limits: Limits, metrics: Metrics, health: Health) -> anyhow::Result<Self> {
        let service = service_fn(move |req| route(req, metrics.clone(), health.clone()));
        let mut http1 = limits.http1();
        http1.max_buf_size(METRICS_MAX_BUF_BYTES);
        Self::serve("metrics", listener, limits.max_connections, http1, service)
    }

    /// Serves `service` on `listener`, each connection with `http1`'s settings; `name` is the
    /// server's in logs.
    pub fn serve<S>(
        name: &'static str,
        listener: Listener,
        max_connections: usize,
        http1: http1::Builder,
        service: S,
    ) -> anyhow::Result<Self>
    where
        S: HttpService<Incoming> + Clone + 'static,
        S::Error: Into<BoxError>,
        <S::ResBody as Body>::Error: Into<BoxError>,
    {
        let (stop, stopped) = watch::channel(false);
        let addr = listener.addr;
        let listener = TcpListener::from_std(listener.listener).with_context(|| format!("cannot serve on {addr}"))?;
        let task = actix::spawn(accept(name, listener, max_connections, http1, service, stopped));
        Ok(Self { addr, stop, task })
    }

    /// The bound address (for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections at once (new ones are refused), lets every request in flight
    /// finish within [`DRAIN_TIMEOUT`] and closes every connection; returns once all are closed.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            warn!(target: "http", error = %e, "the server's task ended abnormally");
        }
    }
}

/// The accept loop: one task per connection, at most `max_connections` of them; on stop, the
/// listener is closed and the connections drained.
async fn accept<S>(
    name: &'static str,
    listener: TcpListener,
    max_connections: usize,
    http1: http1::Builder,
    service: S,
    mut stopped: watch::Receiver<bool>,
) where
    S: HttpService<Incoming> + Clone + 'static,
    S::Error: Into<BoxError>,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    let mut connections = JoinSet::new();
    // Refused connections since the last warning, which comes at most once a minute.
    let (mut refused, mut warned) = (0u64, None::<tokio::time::Instant>);
    let stop_connections = stopped.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= max_connections {
                        refused += 1;
                        debug!(target: "http", server = name, %peer, "connection refused: at the limit");
                        if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                            warn!(target: "http", server = name, max_connections, refused, "connection limit reached: new connections are closed until one ends");
                            (refused, warned) = (0, Some(tokio::time::Instant::now()));
                        }
                        drop(stream);
                        continue;
                    }
                    connections.spawn_local(connection(name, stream, peer, http1.clone(), service.clone(), stop_connections.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(target: "http", server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
    // New connections are refused from here on.
    drop(listener);
    let open = connections.len();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        warn!(target: "http", server = name, open = connections.len(), bound = ?DRAIN_TIMEOUT, "requests still in flight after the drain bound: closing their connections");
        connections.shutdown().await;
    } else if open > 0 {
        info!(target: "http", server = name, connections = open, "connections drained");
    }
}

/// Serves one connection until it ends, or until stop: then the request in flight (if any) is
/// answered and the connection closed.
async fn connection<S>(
    name: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    http1: http1::Builder,
    service: S,
    mut stopped: watch::Receiver<bool>,
) where
    S: HttpService<Incoming> + 'static,
    S::Error: Into<BoxError>,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    let conn = http1.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped.wait_for(|stop| *stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(target: "http", server = name, %peer, error = %e, "connection ended with an error");
    }
}
