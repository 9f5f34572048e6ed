//! The report in the sequencers' pools: the refresh schedule's staleness bound and the production
//! price bump through a long outage, a sequencer restart that empties its pool, a second
//! sequencer endpoint taking over after the first dies, and a node that does not serve
//! `txpool_content`.
//!
//! Same settings as `uptime.rs` (the default fees; a 3 s threshold, 250 ms watchdog checks,
//! 500 ms refreshes, a 1 s clock-skew margin).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::primitives::Address;
use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::{
    harness::{Anvil, AnvilOptions, Proxy, unix_now, wait_for},
    supervisor::{Supervisor, hex_u64},
    uptime::{CHAIN, Fixture, WAIT, assert_pair_first_fresh, assert_report_first, staleness_bound, wait_landed_first},
};

const POLL: Duration = Duration::from_millis(50);
/// The default `max_fee_per_gas_wei`.
const FLOOR: u128 = 1_000_000_000;
/// The production replacement bump (the default `fee_bump_percent`).
const BUMP: u128 = 10;
/// `endpoint` labels.
const LOST_RPC: &str = "report_pool_lost_total{chain=\"901\",endpoint=\"rpc\"}";

/// One transaction of the signer in a node's pool.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pooled {
    nonce: u64,
    hash: String,
    max_fee: u128,
    tip: u128,
    input: String,
}

fn quantity(v: &Value, field: &str) -> Result<u128> {
    let s = v[field].as_str().with_context(|| format!("{field} in {v}"))?;
    Ok(u128::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

/// The signer's pending transactions in `node`'s pool, by nonce.
async fn pooled(node: &Anvil, signer: Address) -> Result<Vec<Pooled>> {
    let content: Value = node.rpc("txpool_content", json!([])).await?;
    let mut out = Vec::new();
    for (from, txs) in content["pending"].as_object().into_iter().flatten() {
        if from.parse::<Address>().ok() != Some(signer) {
            continue;
        }
        for (nonce, tx) in txs.as_object().into_iter().flatten() {
            out.push(Pooled {
                nonce: nonce.parse()?,
                hash: tx["hash"].as_str().context("hash")?.to_owned(),
                max_fee: quantity(tx, "maxFeePerGas")?,
                tip: quantity(tx, "maxPriorityFeePerGas")?,
                input: tx["input"].as_str().context("input")?.to_owned(),
            });
        }
    }
    out.sort_by_key(|p| p.nonce);
    Ok(out)
}

/// Waits until `node` pools exactly `n` transactions of the signer.
async fn wait_pooled(node: &Anvil, signer: Address, n: usize, what: &str) -> Result<Vec<Pooled>> {
    wait_for(what, WAIT, POLL, || async {
        let p = pooled(node, signer).await?;
        ensure!(p.len() <= n, "more than one report pooled: {p:?}");
        Ok((p.len() == n).then_some(p))
    })
    .await
}

/// `updateStatus(bool, uint64)` calldata (4 + 32 + 32 bytes): `(down, timestamp)`.
fn decode_update_status(input: &str) -> Result<(bool, u64)> {
    let bytes = alloy::hex::decode(input)?;
    ensure!(bytes.len() == 68, "updateStatus calldata is 68 bytes, not {}: {input}", bytes.len());
    let down = bytes[35] == 1 && bytes[4..35].iter().all(|b| *b == 0);
    Ok((down, u64::from_be_bytes(bytes[60..68].try_into()?)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_with_short_refreshes_keeps_the_staleness_bound_and_pays_the_production_bump() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    let first = wait_pooled(&f.l2, f.signer, 2, "the pair in the pool").await?;
    let (down, mut up) = (first[0].clone(), first[1].clone());
    assert_eq!(up.nonce, down.nonce + 1);
    assert_eq!(decode_update_status(&down.input)?, (true, last_ts), "the down transaction");

    // Sample until the outage is 35 s old: past 30 s the bound is 10 % of the outage's age.
    let (mut changes, mut worst_age, mut samples, mut over) = (0u32, 0u64, 0u32, 0u32);
    while unix_now().as_secs() < last_ts + 35 {
        let p = pooled(&f.l2, f.signer).await?;
        let at = unix_now().as_secs(); // taken after the answer: the age is if anything overstated
        samples += 1;
        ensure!(p.len() == 2 && p[0].nonce == down.nonce && p[1].nonce == up.nonce, "the pair is always pooled: {p:?}");
        assert_eq!(p[0], down, "the down transaction is never replaced while no one competes");
        let now_up = &p[1];
        let (is_down, t_up) = decode_update_status(&now_up.input)?;
        assert!(!is_down, "nonce N+1 is the up transaction");
        assert_eq!(now_up.tip, now_up.max_fee, "priority fee = max fee");
        let bound = staleness_bound(at, last_ts);
        assert!(t_up <= at, "at {at}: the pooled t_up {t_up} is in the future");
        let age = at - t_up;
        assert!(age <= bound + 1, "at {at}: the pooled t_up {t_up} is {age} s old; the bound is {bound} s");
        worst_age = worst_age.max(age);
        over += u32::from(age > bound);
        if now_up.hash != up.hash {
            assert!(
                now_up.max_fee * 100 >= up.max_fee * (100 + BUMP),
                "a refresh pays the production bump: {} after {} (anvil would take +1 wei)",
                now_up.max_fee,
                up.max_fee
            );
            changes += 1;
            up = now_up.clone();
        }
        // The sampling pace: every sample is checked, none is awaited.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ~30 s of refreshes at least every ~1.5 s (then every ~2 s): the checks above are not vacuous.
    assert!(changes >= 12, "only {changes} refreshes seen in {samples} samples");
    let refreshes = sup.metric("pair_refreshes_total{chain=\"901\"}").await?;
    assert!(refreshes >= f64::from(changes), "{refreshes} refreshes counted, {changes} seen");
    assert!(up.max_fee >= FLOOR * 3, "the up transaction's price grew geometrically: {}", up.max_fee);

    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    let t_up = assert_pair_first_fresh(&f, last_ts, block).await?;
    assert_eq!(f.signer_nonce().await?, down.nonce + 2, "exactly one pair landed");
    eprintln!(
        "{changes} refreshes seen in {samples} samples; worst pooled age {worst_age} s; {over} samples one second over the bound; landed t_up {t_up}"
    );
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

/// Stall, pool the report, restart the sequencer (same port, same chain, empty pool; nothing can
/// reach it until its automine is off again), then the report is re-submitted and lands first.
async fn restart_scenario(reporter: bool) -> Result<()> {
    let mut f = if reporter { Fixture::reporter(false).await? } else { Fixture::new(false).await? };
    f.fund().await?;
    let n = f.report_len();
    let (last, last_ts) = f.stop_sequencer().await?;
    let last_hash = f.l2.canonical_chain(last, last).await?[0].hash.clone();
    // The supervisor reaches the node through a proxy, cut while the node restarts so that a
    // submission cannot meet the fresh node before its automine is off.
    let proxy = Proxy::start(f.l2.addr()).await?;
    let mut spec = f.spec()?;
    spec.chains[0].rpc_url = proxy.url();
    let mut sup = Supervisor::start(&spec).await?;
    let before = wait_pooled(&f.l2, f.signer, n, "the report in the pool").await?;
    assert_eq!(sup.metric(LOST_RPC).await?, 0.0);

    let state = f.l2.dump_state().await?;
    proxy.cut();
    f.l2.restart().await?;
    f.l2.load_state(&state).await?;
    f.l2.set_automine(false).await?;
    assert_eq!(f.l2.block_number().await?, last, "the chain survives the restart");
    assert_eq!(f.l2.canonical_chain(last, last).await?[0].hash, last_hash);
    let content: Value = f.l2.rpc("txpool_content", json!([])).await?;
    assert_eq!(content, json!({ "pending": {}, "queued": {} }), "the restart emptied the pool");
    proxy.restore();

    let after = wait_for("the report lost and pooled again", WAIT, POLL, || async {
        let lost = sup.metric(LOST_RPC).await?;
        let p = pooled(&f.l2, f.signer).await?;
        Ok((lost >= 1.0 && p.len() == n).then_some(p))
    })
    .await?;
    // The same bytes again: the reporter's one transaction, the pair's down transaction.
    assert_eq!(after[0], before[0], "re-submitted unchanged");
    wait_for("the loss logged", WAIT, POLL, || async {
        Ok(sup.log_text().contains("gone from this pool").then_some(()))
    })
    .await?;

    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    if reporter {
        assert_report_first(&f, last_ts, block).await?;
    } else {
        assert_pair_first_fresh(&f, last_ts, block).await?;
    }
    assert_eq!(f.signer_nonce().await?, before[0].nonce + n as u64, "exactly one report landed");
    wait_landed_first(&sup, block).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_restart_that_empties_its_pool_gets_the_report_resubmitted_and_it_lands_first() -> Result<()> {
    restart_scenario(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_restart_that_empties_its_pool_gets_the_pair_resubmitted_and_it_lands_first() -> Result<()> {
    restart_scenario(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sequencer_endpoints_the_first_dies_and_the_second_builds_the_first_block_with_the_report_first()
-> Result<()> {
    // A: the fixture's node (feed deployed, role granted, signer funded); B: a second sequencer
    // with A's state. The supervisor reads B (`rpc_url`) and submits to A too (`submit_urls`).
    let mut f = Fixture::new(false).await?;
    f.fund().await?;
    let state = f.l2.dump_state().await?;
    let b = Anvil::spawn(AnvilOptions { chain_id: Some(CHAIN), ..Default::default() }).await?;
    b.load_state(&state).await?;
    let head = f.l2.block_number().await?;
    assert_eq!(b.block_number().await?, head);
    assert_eq!(b.canonical_chain(head, head).await?, f.l2.canonical_chain(head, head).await?, "same chain");
    let mut a = std::mem::replace(&mut f.l2, b);
    a.set_automine(false).await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    f.extra = format!("submit_urls = [\"{}\"]\n", a.url());
    let mut sup = Supervisor::start(&f.spec()?).await?;

    let in_b = wait_pooled(&f.l2, f.signer, 2, "the pair in B's pool").await?;
    wait_pooled(&a, f.signer, 2, "the pair in A's pool").await?;
    let accepted_a = "report_submissions_total{chain=\"901\",endpoint=\"submit_0\",result=\"accepted\"}";
    // (Counted once the supervisor has A's answers, which may be after A pooled them.)
    wait_for("both transactions counted as accepted by A", WAIT, POLL, || async {
        Ok((sup.metric(accepted_a).await? >= 2.0).then_some(()))
    })
    .await?;

    a.kill().await;
    let failed_a = "report_submissions_total{chain=\"901\",endpoint=\"submit_0\",result=\"failed\"}";
    let at_kill = pooled(&f.l2, f.signer).await?;
    let refreshes_at_kill = sup.metric("pair_refreshes_total{chain=\"901\"}").await?;
    // The refreshes go on: the dead endpoint's failures are counted, and B holds each new up
    // transaction (the down one unchanged).
    let later = wait_for("refreshes pooled in B while A is dead", WAIT, POLL, || async {
        let failed = sup.metric(failed_a).await?;
        let refreshes = sup.metric("pair_refreshes_total{chain=\"901\"}").await?;
        let p = pooled(&f.l2, f.signer).await?;
        Ok((failed >= 2.0 && refreshes >= refreshes_at_kill + 2.0 && p.len() == 2 && p[1].hash != at_kill[1].hash)
            .then_some(p))
    })
    .await?;
    assert_eq!(later[0], in_b[0], "the down transaction stays");
    assert!(sup.log_text().contains("submission failed"));

    let block = f.resume().await?;
    assert_eq!(block, last + 1, "B builds the first block after the gap");
    assert_pair_first_fresh(&f, last_ts, block).await?;
    assert_eq!(f.signer_nonce().await?, in_b[0].nonce + 2, "exactly one pair landed");
    wait_landed_first(&sup, block).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

/// An HTTP JSON-RPC proxy in front of a node that does not serve `txpool_content` (as a node
/// with the txpool namespace disabled answers) and forwards every other request.
struct NoTxpool {
    url: String,
    /// `txpool_content` requests refused so far.
    refused: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl NoTxpool {
    async fn start(target: String) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let refused = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                conns.spawn(serve(sock, http.clone(), target.clone(), counter.clone()));
            }
        });
        Ok(Self { url, refused, task })
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for NoTxpool {
    fn drop(&mut self) {
        self.task.abort(); // and with it every connection (the JoinSet aborts its tasks)
    }
}

/// Serves HTTP/1.1 requests with a `content-length` body on one keep-alive connection.
async fn serve(mut sock: TcpStream, http: reqwest::Client, target: String, refused: Arc<AtomicU64>) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let headers = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let len: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .context("no content-length")?
            .trim()
            .parse()?;
        while buf.len() < header_end + len {
            let n = sock.read(&mut chunk).await?;
            ensure!(n > 0, "connection closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..header_end + len).skip(header_end).collect();
        let request: Value = serde_json::from_slice(&body)?;
        let reply = if request["method"] == json!("txpool_content") {
            refused.fetch_add(1, Ordering::Relaxed);
            json!({ "jsonrpc": "2.0", "id": request["id"], "error": {
                "code": -32601, "message": "the method txpool_content does not exist/is not available" } })
            .to_string()
            .into_bytes()
        } else {
            let answer = http.post(&target).header("content-type", "application/json").body(body).send().await?;
            answer.bytes().await?.to_vec()
        };
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", reply.len());
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(&reply).await?;
        sock.flush().await?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_txpool_content_falls_back_to_the_configured_fees_and_says_so() -> Result<()> {
    const WARNING: &str = "does not serve its pending pool (txpool_content)";
    let f = Fixture::reporter(false).await?;
    f.fund().await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    let latest: Value = f.l2.rpc("eth_getBlockByNumber", json!(["latest", false])).await?;
    let base_fee = u128::from(hex_u64(latest["baseFeePerGas"].as_str().context("baseFeePerGas")?)?);
    let floor = FLOOR.max(2 * base_fee);
    let proxy = NoTxpool::start(f.l2.url()).await?;
    let mut spec = f.spec()?;
    spec.chains[0].rpc_url = proxy.url.clone();
    let sup = Supervisor::start(&spec).await?;

    let pooled_at_floor = wait_pooled(&f.l2, f.signer, 1, "the report in the pool").await?;
    let report = &pooled_at_floor[0];
    assert_eq!((report.max_fee, report.tip), (floor, floor), "priced at max(1 gwei, 2 x base fee {base_fee})");
    assert_eq!(sup.metric("txpool_unreadable{chain=\"901\",endpoint=\"rpc\"}").await?, 1.0);
    // Several checks later: still the same transaction at the floor, and said once, not per check.
    let refused = proxy.refused();
    assert!(refused >= 1, "the supervisor asked the proxy for txpool_content");
    wait_for("more checks of the pool", WAIT, POLL, || async { Ok((proxy.refused() >= refused + 4).then_some(())) })
        .await?;
    assert_eq!(&pooled(&f.l2, f.signer).await?, &pooled_at_floor, "nothing re-signed");
    assert_eq!(sup.metric("txpool_unreadable{chain=\"901\",endpoint=\"rpc\"}").await?, 1.0);
    let log = sup.log_text();
    assert_eq!(log.matches(WARNING).count(), 1, "the warning is logged once:\n{log}");
    assert!(log.contains("does not exist/is not available"), "the node's own message is in the warning");

    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    assert_report_first(&f, last_ts, block).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_at_rpc_url_dies_and_the_standby_builds_the_first_block_with_the_report_first() -> Result<()> {
    // A: the leader, at `rpc_url` (the fixture's node); B: a standby with A's state in
    // `submit_urls`. A dies mid-outage: the watchdog and the injector read B instead, the
    // report stays pooled (and refreshed) in B, and B builds the first block after the gap.
    let mut f = Fixture::new(false).await?;
    f.fund().await?;
    let state = f.l2.dump_state().await?;
    let b = Anvil::spawn(AnvilOptions { chain_id: Some(CHAIN), ..Default::default() }).await?;
    b.load_state(&state).await?;
    b.set_automine(false).await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    f.extra = format!("submit_urls = [\"{}\"]\n", b.url());
    let mut sup = Supervisor::start(&f.spec()?).await?;
    wait_pooled(&f.l2, f.signer, 2, "the pair in A's pool").await?;
    let in_b = wait_pooled(&b, f.signer, 2, "the pair in B's pool").await?;

    f.l2.kill().await;
    let refreshes_at_kill = sup.metric("pair_refreshes_total{chain=\"901\"}").await?;
    let later = wait_for("refreshes pooled in B after the leader died", WAIT, POLL, || async {
        let refreshes = sup.metric("pair_refreshes_total{chain=\"901\"}").await?;
        let p = pooled(&b, f.signer).await?;
        Ok((refreshes >= refreshes_at_kill + 2.0 && p.len() == 2 && p[1].hash != in_b[1].hash).then_some(p))
    })
    .await?;
    assert_eq!(later[0], in_b[0], "the down transaction stays");
    let status = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
    assert_eq!(status["stalled"], json!(true), "the watchdog still sees the chain through B: {status}");

    // B takes over and builds the first block after the gap.
    let _: Value = b.rpc("evm_mine", json!([])).await?;
    let _dead_leader = std::mem::replace(&mut f.l2, b);
    let block = f.l2.block_number().await?;
    assert_eq!(block, last + 1, "B builds the first block after the gap");
    assert_pair_first_fresh(&f, last_ts, block).await?;
    wait_landed_first(&sup, block).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}
