//! The operator's HTTP endpoints on `[metrics] listen`: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers, L1 is reachable
//! and caught up, every uptime signer is healthy), each check named in a JSON body.

use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, time::Duration};

use actix::Addr;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use rollup_supervisor_actors::{
    chains_db::{ChainsDbActor, messages::GetSyncStatus},
    metrics::Metrics,
    uptime::{messages::ProbeSigner, signer_actor::SignerActor},
    watcher::{L1Watcher, messages::GetStatus},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, warn};

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` asks.
#[derive(Clone, Debug)]
pub struct Health {
    /// The database actor (asked for the sync status).
    pub db: Addr<ChainsDbActor>,
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
            let status = within("the database", self.db.send(GetSyncStatus)).await?;
            let status = status.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            Ok(json!({ "l1Latest": status.l1.latest.map(|b| b.number) }))
        };
        checks.push(check("db".into(), db.await));

        let l1 = async {
            let status = within("the L1 watcher", self.l1_watcher.send(GetStatus)).await?.map_err(|e| e.to_string())?;
            if let Some(error) = status.last_error {
                return Err(format!("L1 node unreachable or failing: {error}"));
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
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, JSON, r#"{"error":"only GET"}"#));
    }
    Ok(match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        "/healthz" => reply(StatusCode::OK, JSON, r#"{"status":"ok"}"#),
        "/readyz" => {
            let (ready, body) = health.ready().await;
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            reply(status, JSON, body.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, JSON, r#"{"error":"not found: try /metrics, /healthz or /readyz"}"#),
    })
}

/// The running server; dropping it (or [`HttpServer::stop`]) stops accepting connections.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl HttpServer {
    /// Serves on `listener` (bound by [`crate::node::bind`]) from the current actix arbiter.
    pub fn serve(listener: std::net::TcpListener, metrics: Metrics, health: Health) -> anyhow::Result<Self> {
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        actix::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(target: "http", error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = stopped.changed() => return,
                };
                let (metrics, health) = (metrics.clone(), health.clone());
                let service = service_fn(move |req| route(req, metrics.clone(), health.clone()));
                actix::spawn(async move {
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        debug!(target: "http", %peer, error = %e, "connection ended with an error");
                    }
                });
            }
        });
        Ok(Self { addr, stop })
    }

    /// The bound address (for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
