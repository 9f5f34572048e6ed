//! The JSON-RPC server (jsonrpsee): read-only views of the database, Ethereum conventions
//! (quantities as `0x`-hex strings in results; hex strings or plain numbers accepted in params).
//! jsonrpsee answers each request; the connections are [`HttpServer`]'s (HTTP/1.1, the limits of
//! `[rpc]`, drained on stop), as for the metrics server.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use actix::{Addr, MailboxError};
use jsonrpsee::{
    RpcModule,
    server::{HttpBody, Server, ServerConfig, ServerHandle, middleware::rpc::RpcServiceBuilder, stop_channel},
    types::{ErrorObjectOwned, Params},
};
use rollup_supervisor_actors::{
    chains_db::{DbQueries, messages::*},
    metrics::Metrics,
    uptime::{
        messages::{ForceUptimeUpdate, GetSignerHealth, GetWatchdogStatus},
        signer_actor::SignerActor,
        watchdog::UptimeWatchdog,
    },
};
use rollup_supervisor_storage::{BlockRef, DerivedPair, StorageError};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tower::Service as _;

pub use self::admin::{Admin, read_secret, token};
use self::admin::{AdminGuard, bearer};
use crate::http::{BodyDeadline, HttpServer, Limits, Listener};

mod admin;

/// Error code for a valid request about something the database does not hold.
const NOT_FOUND: i32 = -32001;
/// Error code for an internal failure (database, mailbox).
const INTERNAL: i32 = -32603;
/// Error code for bad parameters.
const INVALID_PARAMS: i32 = -32602;
/// Error code for an admin action that was refused by a safety check.
const REFUSED: i32 = -32005;

/// A quantity parameter: `"0x1a"` or `26`.
#[derive(Clone, Copy, Debug)]
struct Quantity(u64);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().map(Quantity).ok_or_else(|| D::Error::custom(format!("{n} is not a u64"))),
            Value::String(s) => {
                let digits = s
                    .strip_prefix("0x")
                    .ok_or_else(|| D::Error::custom(format!("{s:?} is not a 0x-prefixed hex quantity")))?;
                u64::from_str_radix(digits, 16)
                    .map(Quantity)
                    .map_err(|e| D::Error::custom(format!("{s:?} is not a hex quantity: {e}")))
            }
            other => Err(D::Error::custom(format!("expected a quantity, got {other}"))),
        }
    }
}

/// One chain's uptime actors, for `supervisor_uptimeStatus`.
#[derive(Clone, Debug)]
pub struct UptimeHandles {
    /// The chain's watchdog.
    pub watchdog: Addr<UptimeWatchdog>,
    /// The chain's signer.
    pub signer: Addr<SignerActor>,
}

struct Ctx {
    db: DbQueries,
    metrics: Metrics,
    uptime: BTreeMap<u64, UptimeHandles>,
}

impl Ctx {
    fn uptime(&self, chain: u64) -> Result<&UptimeHandles, ErrorObjectOwned> {
        self.uptime
            .get(&chain)
            .ok_or_else(|| err(NOT_FOUND, format!("uptime reporting is not enabled for chain {chain}")))
    }
}

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

fn storage_err(e: StorageError) -> ErrorObjectOwned {
    match e {
        StorageError::UnknownChain(_)
        | StorageError::EmptyChain(_)
        | StorageError::NotDerivedYet { .. }
        | StorageError::BeforeStart { .. }
        | StorageError::UnknownL1 { .. }
        | StorageError::NoL1 => err(NOT_FOUND, e.to_string()),
        other => err(INTERNAL, other.to_string()),
    }
}

fn mailbox_err(e: MailboxError) -> ErrorObjectOwned {
    err(INTERNAL, format!("database actor unavailable: {e}"))
}

fn pair_json(pair: Option<DerivedPair>) -> Value {
    match pair {
        Some(p) => json!({ "source": p.source, "derived": p.derived }),
        None => Value::Null,
    }
}

fn params<T: for<'de> Deserialize<'de>>(p: &Params<'_>) -> Result<T, ErrorObjectOwned> {
    p.parse::<T>().map_err(|e| err(INVALID_PARAMS, e.message().to_owned()))
}

fn some_or_not_found(block: Option<BlockRef>, what: impl FnOnce() -> String) -> Result<BlockRef, ErrorObjectOwned> {
    block.ok_or_else(|| err(NOT_FOUND, what()))
}

/// Builds the module with every method.
fn module(
    db: DbQueries,
    metrics: Metrics,
    uptime: BTreeMap<u64, UptimeHandles>,
) -> Result<RpcModule<Ctx>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(Ctx { db, metrics, uptime });
    m.register_async_method("supervisor_syncStatus", |_p, ctx: Arc<Ctx>, _| async move {
        let status = ctx.db.sync_status().await.map_err(mailbox_err)?.map_err(storage_err)?;
        let chains: serde_json::Map<String, Value> = status
            .chains
            .into_iter()
            .map(|(id, pair)| (id.to_string(), json!({ "localSafe": pair_json(pair) })))
            .collect();
        Ok::<_, ErrorObjectOwned>(json!({
            "l1": { "latest": status.l1.latest, "safe": status.l1.safe, "finalized": status.l1.finalized },
            "chains": chains,
        }))
    })?;
    m.register_async_method("supervisor_l1BlockByNumber", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(n),) = params::<(Quantity,)>(&p)?;
        let block = ctx.db.send(GetL1Block(n)).await.map_err(mailbox_err)?.map_err(storage_err)?;
        some_or_not_found(block, || format!("L1 block {n} is not recorded"))
    })?;
    m.register_async_method("supervisor_localSafe", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(chain),) = params::<(Quantity,)>(&p)?;
        let pair = ctx.db.send(GetLocalSafe(chain)).await.map_err(mailbox_err)?.map_err(storage_err)?;
        let pair = pair.ok_or_else(|| err(NOT_FOUND, format!("chain {chain} has no derivation entries yet")))?;
        Ok::<_, ErrorObjectOwned>(pair_json(Some(pair)))
    })?;
    m.register_async_method("supervisor_derivedAt", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(chain), Quantity(l1)) = params::<(Quantity, Quantity)>(&p)?;
        ctx.db.send(GetDerivedAt { chain, l1 }).await.map_err(mailbox_err)?.map_err(storage_err)
    })?;
    m.register_async_method("supervisor_derivedFrom", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(chain), Quantity(l2)) = params::<(Quantity, Quantity)>(&p)?;
        ctx.db.send(GetDerivedFrom { chain, l2 }).await.map_err(mailbox_err)?.map_err(storage_err)
    })?;
    m.register_async_method("supervisor_finalizedL1", |_p, ctx: Arc<Ctx>, _| async move {
        let finalized = ctx.db.send(GetFinalized(None)).await.map_err(mailbox_err)?.map_err(storage_err)?;
        some_or_not_found(finalized.map(|(l1, _)| l1), || "no finalized L1 block is recorded yet".to_owned())
    })?;
    m.register_async_method("supervisor_finalized", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(chain),) = params::<(Quantity,)>(&p)?;
        let finalized = ctx.db.send(GetFinalized(Some(chain))).await.map_err(mailbox_err)?.map_err(storage_err)?;
        let Some((l1, l2)) = finalized else {
            return Err(err(NOT_FOUND, "no finalized L1 block is recorded yet"));
        };
        some_or_not_found(l2, || {
            format!(
                "chain {chain} has no L2 block derived from an L1 block at or below the finalized L1 block {}",
                l1.number
            )
        })
    })?;
    m.register_async_method("supervisor_uptimeStatus", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(chain),) = params::<(Quantity,)>(&p)?;
        let handles = ctx.uptime(chain)?;
        let watchdog = handles.watchdog.send(GetWatchdogStatus).await.map_err(mailbox_err)?;
        let signer = handles.signer.send(GetSignerHealth).await.map_err(mailbox_err)?;
        let outage = ctx.db.send(GetLastOutage(chain)).await.map_err(mailbox_err)?.map_err(storage_err)?;
        Ok::<_, ErrorObjectOwned>(json!({
            "chainId": format!("{chain:#x}"),
            "head": watchdog.head,
            "headAgeSecs": watchdog.head_age_secs,
            "stalled": watchdog.stalled,
            "lastError": watchdog.last_error,
            "signer": signer,
            "lastOutage": outage,
        }))
    })?;
    // Guarded by [`AdminGuard`], like every `admin_*` method.
    m.register_async_method("admin_forceUptimeUpdate", |p, ctx: Arc<Ctx>, _| async move {
        let (Quantity(chain),) = params::<(Quantity,)>(&p)?;
        let handles = ctx.uptime(chain)?;
        let outage = handles.watchdog.send(ForceUptimeUpdate).await.map_err(mailbox_err)?;
        let outage = outage.map_err(|e| err(REFUSED, e))?;
        tracing::info!(target: "rpc", chain, last_block = outage.last_block.number, nonce = ?outage.nonce, "admin_forceUptimeUpdate: pair pre-positioned");
        Ok::<_, ErrorObjectOwned>(json!(outage))
    })?;
    // A render (the exporter's text, the process metrics read from /proc) takes about a
    // millisecond: on a blocking thread, so a burst of them never delays the other methods.
    m.register_blocking_method("supervisor_metrics", |_p, ctx: Arc<Ctx>, _| {
        let snapshot = ctx.metrics.snapshot();
        Ok::<_, ErrorObjectOwned>(json!(snapshot))
    })?;
    m.register_blocking_method("supervisor_metricsText", |_p, ctx: Arc<Ctx>, _| {
        Ok::<_, ErrorObjectOwned>(ctx.metrics.render())
    })?;
    Ok(m)
}

/// The largest JSON-RPC request body: every method takes at most two quantities, so 1 MiB is a
/// batch of thousands of calls, and at [`Limits::max_connections`] requests being read at once
/// the server holds at most that many MiB (jsonrpsee's default is 10 MiB; larger: `413`).
const MAX_REQUEST_BODY_BYTES: u32 = 1 << 20;

/// The running JSON-RPC server.
#[derive(Debug)]
pub struct RpcServer {
    http: HttpServer,
    /// jsonrpsee's own stop signal, which its service watches.
    handle: ServerHandle,
}

impl RpcServer {
    /// The bound address (for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Stops accepting connections and drains the requests in flight (see [`HttpServer::stop`]).
    pub async fn stop(self) {
        self.http.stop().await;
        let _ = self.handle.stop();
    }
}

/// Serves every method on `listener` (bound by [`Listener::bind`]) over HTTP/1.1 within
/// `limits`. Warns when the server is reachable beyond loopback without admin tokens.
pub fn serve(
    listener: Listener,
    limits: Limits,
    db: DbQueries,
    metrics: Metrics,
    uptime: BTreeMap<u64, UptimeHandles>,
    admin: Admin,
) -> anyhow::Result<RpcServer> {
    let addr = listener.addr();
    if !addr.ip().is_loopback() && !admin.enabled() {
        tracing::warn!(target: "rpc", listen = %addr, "the JSON-RPC server listens beyond loopback without `rpc.jwt_secret_file`: anyone who can reach it can read it (admin methods stay off)");
    }
    let middleware = tower::ServiceBuilder::new().map_request(|mut req: jsonrpsee::server::HttpRequest| {
        let token = bearer(&req);
        req.extensions_mut().insert(token);
        req
    });
    // Connections are ours (`HttpServer`): jsonrpsee serves each request. Its own limit counts
    // requests in flight, at most one per HTTP/1.1 connection, so it is set to ours and never
    // reached first.
    let config = ServerConfig::builder()
        .http_only()
        .max_connections(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
        .max_request_body_size(MAX_REQUEST_BODY_BYTES)
        .build();
    let (stop_handle, handle) = stop_channel();
    let service = Server::builder()
        .set_config(config)
        .set_http_middleware(middleware)
        .set_rpc_middleware(RpcServiceBuilder::new().layer_fn(move |service| AdminGuard::new(service, admin.clone())))
        .to_service_builder()
        .build(module(db, metrics, uptime)?, stop_handle);
    // A body must arrive as fast as a head: within the header-read timeout.
    let within = limits.header_read_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut service = service.clone();
        async move { service.call(req.map(|body| HttpBody::new(BodyDeadline::new(body, within)))).await }
    });
    let http = HttpServer::serve("rpc", listener, limits.max_connections, limits.http1(), service)?;
    Ok(RpcServer { http, handle })
}

/// The names of every method the server registers.
#[cfg(test)]
pub fn method_names() -> Vec<String> {
    actix::System::new().block_on(async {
        let (_, db) = rollup_supervisor_actors::chains_db::ChainsDbActor::start_with_queries(
            rollup_supervisor_storage::ChainsDb::temporary().expect("temporary db"),
            Metrics::default(),
        );
        let m = module(db, Metrics::default(), BTreeMap::new()).expect("module");
        m.method_names().map(str::to_owned).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_accept_hex_and_numbers_and_reject_garbage() {
        let q = |v: Value| serde_json::from_value::<Quantity>(v).map(|q| q.0).map_err(|e| e.to_string());
        assert_eq!(q(json!("0x1a")), Ok(26));
        assert_eq!(q(json!(26)), Ok(26));
        assert!(q(json!("26")).is_err());
        assert!(q(json!("0xzz")).is_err());
        assert!(q(json!(-1)).is_err());
        assert!(q(json!(null)).is_err());
    }
}
