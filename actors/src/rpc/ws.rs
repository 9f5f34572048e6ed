//! `newHeads` over WebSocket: the L1 watcher steps as soon as the node announces a block, not at
//! its next poll. The subscription only says "step now" ([`HeadAnnounced`]); what is recorded
//! still comes from the batched HTTP requests and their checks, and polling goes on at the
//! configured interval as the safety net: a subscription that drops, fails or goes silent
//! loses nothing, it only makes latency that of polling until it is back.
//!
//! The task connects, subscribes and forwards; on any failure, or after [`SILENCE`] without a
//! notification, it reconnects after an exponential backoff (1 s doubling to 30 s, reset once a
//! notification arrives).

use std::time::Duration;

use actix::Recipient;
use alloy::{primitives::B256, rpc::client::ClientBuilder, transports::ws::WsConnect};
use rollup_supervisor_signer::redact;
use tracing::{info, warn};

use crate::{
    backoff::Backoff,
    metrics::{self, Metrics},
    watcher::messages::HeadAnnounced,
};

/// A subscription without a notification for this long is dropped and made again: ten L1
/// slots, as the head-stall bound.
pub const SILENCE: Duration = Duration::from_secs(120);

/// How long connecting and subscribing may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Subscribes to `newHeads` at `url` for as long as the process runs, sending [`HeadAnnounced`]
/// to `watcher` for every notification. Runs on the current actix arbiter.
pub fn follow_new_heads(url: String, watcher: Recipient<HeadAnnounced>, metrics: Metrics) {
    actix::spawn(async move {
        let endpoint = redact::redact_url_str(&url);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        metrics.set(&metrics::L1_SUBSCRIBED, &[], 0.0);
        loop {
            let ended = subscribe(&url, &watcher, &metrics, &mut backoff).await;
            metrics.set(&metrics::L1_SUBSCRIBED, &[], 0.0);
            let delay = backoff.next_delay();
            let reason = redact::redact_urls_in(&ended);
            warn!(target: "watcher", %endpoint, %reason, retry_in = ?delay, "the L1 newHeads subscription ended: polling only until it is back");
            tokio::time::sleep(delay).await;
        }
    });
}

/// One subscription, until it fails; why it ended.
async fn subscribe(url: &str, watcher: &Recipient<HeadAnnounced>, metrics: &Metrics, backoff: &mut Backoff) -> String {
    let client = match tokio::time::timeout(SETUP_TIMEOUT, ClientBuilder::default().ws(WsConnect::new(url))).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return format!("cannot connect: {e}"),
        Err(_) => return format!("no WebSocket handshake within {SETUP_TIMEOUT:?}"),
    };
    let id: B256 = match tokio::time::timeout(SETUP_TIMEOUT, client.request("eth_subscribe", ("newHeads",))).await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => return format!("eth_subscribe failed: {e}"),
        Err(_) => return format!("no answer to eth_subscribe within {SETUP_TIMEOUT:?}"),
    };
    let Some(frontend) = client.pubsub_frontend() else {
        return "the transport has no subscriptions".into();
    };
    let mut sub = match frontend.get_subscription(id).await {
        Ok(sub) => sub,
        Err(e) => return format!("cannot read the subscription: {e}"),
    };
    metrics.set(&metrics::L1_SUBSCRIBED, &[], 1.0);
    info!(target: "watcher", endpoint = %redact::redact_url_str(url), "subscribed to L1 newHeads");
    loop {
        match tokio::time::timeout(SILENCE, sub.recv()).await {
            Ok(Ok(_)) => {
                backoff.reset();
                metrics.inc(&metrics::L1_HEADS_ANNOUNCED, &[]);
                watcher.do_send(HeadAnnounced);
            }
            Ok(Err(e)) => return format!("the subscription closed: {e}"),
            Err(_) => return format!("no notification for {SILENCE:?}"),
        }
    }
}
