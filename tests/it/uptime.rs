//! The uptime flow end to end: a real anvil L2 with automine off (the sequencer is "down" until
//! a block is mined), our feed (and, in reporter mode, our reporter) deployed from the committed
//! artifacts, the role granted, and the real supervisor binary pre-positioning the report.
//!
//! Every test runs with the default fee settings (`max_fee_per_gas_wei`, `fee_cap_wei`,
//! `fee_bump_percent`, `outbid_margin_percent`); only the timing is shortened (a 3 s threshold,
//! 250 ms checks, 500 ms refreshes) and `max_outage_secs` is 1800 so that the default cap covers
//! the pair's refresh schedule at that short threshold. Users pending during an outage pay more
//! than our default fees.

use std::time::Duration;

use alloy::{
    primitives::{Address, B256, U256, keccak256},
    signers::local::PrivateKeySigner,
};
use anyhow::{Context as _, Result, ensure};
use rollup_supervisor_actors::uptime::feed;
use rollup_supervisor_signer::test_utils::{Mode, StandIn};
use serde_json::{Value, json};

use crate::{
    harness::{
        Anvil, AnvilOptions,
        consts::{ANSWER_UPDATED, DEPLOY_GAS, FEED_ARTIFACT, L2_CHAIN_ID, REPORTER_ARTIFACT, TRANSFER_GAS},
        wait_for, wait_until_unix_second,
    },
    supervisor::{ChainSpec, Spec, Supervisor, hex_u64},
};

/// The fixture's settings, shared by the uptime test modules (its `spec()` writes them).
pub const WAIT: Duration = Duration::from_secs(60);
pub const CHAIN: u64 = L2_CHAIN_ID;
pub const MAX_AGE: u64 = 3;
pub const REFRESH_MS: u64 = 500;
pub const MARGIN: u64 = 1;
/// How often the uptime tests look at the running system.
pub const POLL: Duration = Duration::from_millis(100);
/// A user paying far more than our default fees (1 gwei): 80 gwei max fee, 40 gwei tip.
pub const USER_MAX_FEE: u128 = 80_000_000_000;
pub const USER_TIP: u128 = 40_000_000_000;

/// Which signer the supervisor uses.
pub enum Backend {
    Local,
    Web3(StandIn),
}

/// An L1 node, an L2 node with our feed, and a signer key with the updater role.
pub struct Fixture {
    pub l1: Anvil,
    pub l2: Anvil,
    pub feed: Address,
    pub signer: Address,
    pub key: PrivateKeySigner,
    pub backend: Backend,
    /// Our reporter contract, when deployed: the supervisor then runs in reporter mode.
    pub reporter: Option<Address>,
    /// Extra `[chains.uptime]` lines.
    pub extra: String,
    pub dir: tempfile::TempDir,
}

fn word(v: U256) -> String {
    alloy::hex::encode(v.to_be_bytes::<32>())
}

fn addr_word(a: Address) -> String {
    format!("{:0>64}", alloy::hex::encode(a.as_slice()))
}

impl Fixture {
    pub async fn new(web3signer: bool) -> Result<Self> {
        Self::with_l2(web3signer, AnvilOptions { chain_id: Some(CHAIN), ..Default::default() }).await
    }

    /// As [`Self::new`], with the reporter deployed, allowed and granted the role.
    pub async fn reporter(web3signer: bool) -> Result<Self> {
        let mut f = Self::new(web3signer).await?;
        f.deploy_reporter().await?;
        Ok(f)
    }

    /// As [`Self::new`], with the L2 node started from `l2` (its chain id must be 901).
    pub async fn with_l2(web3signer: bool, l2: AnvilOptions) -> Result<Self> {
        let l1 = Anvil::spawn(AnvilOptions::default()).await?;
        let l2 = Anvil::spawn(l2).await?;
        let key = PrivateKeySigner::random();
        let backend =
            if web3signer { Backend::Web3(StandIn::start_with_key(key.clone()).await?) } else { Backend::Local };
        let signer = key.address();
        let accounts: Vec<String> = l2.rpc("eth_accounts", json!([])).await?;
        let admin: Address = accounts[0].parse()?;

        let artifact: Value = serde_json::from_str(FEED_ARTIFACT)?;
        let bytecode = artifact["bytecode"].as_str().context("bytecode")?;
        let data = format!("{bytecode}{}{}{}", word(U256::ZERO), addr_word(admin), addr_word(signer));
        let hash: String =
            l2.rpc("eth_sendTransaction", json!([{ "from": admin, "data": data, "gas": DEPLOY_GAS }])).await?;
        let receipt = wait_for("the feed deployed", WAIT, Duration::from_millis(20), || async {
            let r: Value = l2.rpc("eth_getTransactionReceipt", json!([hash])).await?;
            Ok((!r.is_null()).then_some(r))
        })
        .await?;
        ensure!(receipt["status"] == json!("0x1"), "deploy failed: {receipt}");
        let feed: Address = receipt["contractAddress"].as_str().context("contractAddress")?.parse()?;
        l2.mine(2).await?;
        let dir = tempfile::tempdir()?;
        Ok(Self { l1, l2, feed, signer, key, backend, reporter: None, extra: String::new(), dir })
    }

    /// The feed admin (anvil's account 0) sends `data` to `to` (`None`: a deployment) and waits
    /// for a successful receipt (the L2 must be mining).
    pub async fn admin_tx(&self, to: Option<Address>, data: String) -> Result<Value> {
        let accounts: Vec<String> = self.l2.rpc("eth_accounts", json!([])).await?;
        let mut tx = json!({ "from": accounts[0], "data": data, "gas": DEPLOY_GAS });
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash: String = self.l2.rpc("eth_sendTransaction", json!([tx])).await?;
        let receipt = wait_for("an admin transaction mined", WAIT, Duration::from_millis(20), || async {
            let r: Value = self.l2.rpc("eth_getTransactionReceipt", json!([hash])).await?;
            Ok((!r.is_null()).then_some(r))
        })
        .await?;
        ensure!(receipt["status"] == json!("0x1"), "admin transaction failed: {receipt}");
        Ok(receipt)
    }

    /// Deploys `contracts/out/UptimeReporter.json` for the feed, grants it FEED_UPDATER_ROLE on
    /// the feed and allows the signer on it.
    pub async fn deploy_reporter(&mut self) -> Result<Address> {
        let accounts: Vec<String> = self.l2.rpc("eth_accounts", json!([])).await?;
        let admin: Address = accounts[0].parse()?;
        let artifact: Value = serde_json::from_str(REPORTER_ARTIFACT)?;
        let bytecode = artifact["bytecode"].as_str().context("bytecode")?;
        let receipt = self.admin_tx(None, format!("{bytecode}{}{}", addr_word(self.feed), addr_word(admin))).await?;
        let reporter: Address = receipt["contractAddress"].as_str().context("contractAddress")?.parse()?;
        let grant = feed::grant_role(feed::FEED_UPDATER_ROLE, reporter);
        self.admin_tx(Some(self.feed), grant.to_string()).await?;
        self.admin_tx(Some(reporter), feed::set_reporter(self.signer, true).to_string()).await?;
        self.l2.mine(1).await?;
        self.reporter = Some(reporter);
        Ok(reporter)
    }

    pub async fn fund(&self) -> Result<()> {
        let _: Value = self.l2.rpc("anvil_setBalance", json!([self.signer, "0x8ac7230489e80000"])).await?;
        Ok(())
    }

    /// The sequencer stops: blocks are only produced by [`Self::resume`]. Returns the last block
    /// before the gap, `(number, timestamp)`.
    pub async fn stop_sequencer(&self) -> Result<(u64, u64)> {
        self.l2.set_automine(false).await?;
        let last = self.l2.block_number().await?;
        Ok((last, self.l2.canonical_chain(last, last).await?[0].timestamp))
    }

    /// The sequencer produces one block; returns its number.
    pub async fn resume(&self) -> Result<u64> {
        let _: Value = self.l2.rpc("evm_mine", json!([])).await?;
        self.l2.block_number().await
    }

    /// The supervisor's config for the L2 chain with uptime reporting on: a chain with no block
    /// for [`MAX_AGE`] s is down.
    pub fn spec(&self) -> Result<Spec> {
        self.spec_with(MAX_AGE, 1800)
    }

    /// [`Self::spec`] with a stall threshold of an hour, which no test outlives: the watchdog
    /// never calls this chain down, whatever the machine's speed, for the tests of everything
    /// but an outage. (A pair-mode outage must outlast the threshold: the refresh schedule is
    /// sized for a day.)
    pub fn quiet_spec(&self) -> Result<Spec> {
        self.spec_with(3600, 86_400)
    }

    fn spec_with(&self, max_block_age_secs: u64, max_outage_secs: u64) -> Result<Spec> {
        let signer = match &self.backend {
            Backend::Local => {
                let path = self.dir.path().join("signer.key");
                std::fs::write(&path, alloy::hex::encode(self.key.to_bytes()))?;
                format!("type = \"local\"\nprivate_key_file = {path:?}\n")
            }
            Backend::Web3(stand_in) => format!(
                "type = \"web3signer\"\nurl = {:?}\nkey_id = {:?}\naddress = \"{}\"\ntimeout_ms = 1000\n",
                stand_in.url(),
                stand_in.identifier(),
                stand_in.address()
            ),
        };
        let mut chain = ChainSpec::new(CHAIN, self.l2.url(), "latest");
        let reporter = self.reporter.map(|r| format!("reporter_address = \"{r}\"\n")).unwrap_or_default();
        chain.extra = format!(
            "[chains.uptime]\nenabled = true\nfeed_address = \"{}\"\n{reporter}max_block_age_secs = {max_block_age_secs}\ncheck_interval_ms = 250\nrefresh_interval_ms = {REFRESH_MS}\nclock_skew_margin_secs = {MARGIN}\nmax_outage_secs = {max_outage_secs}\n{}[chains.uptime.signer]\n{signer}",
            self.feed, self.extra
        );
        let mut spec = Spec::new(self.l1.url());
        spec.start_block = None;
        spec.chains = vec![chain];
        Ok(spec)
    }

    /// The signer's transactions waiting in the L2 pool, as (nonce, hash).
    pub async fn pooled(&self) -> Result<Vec<(u64, String)>> {
        Ok(self.pooled_with_fees(&self.l2).await?.into_iter().map(|(n, h, _)| (n, h)).collect())
    }

    /// The signer's transactions waiting in `node`'s pool, as (nonce, hash, max fee).
    pub async fn pooled_with_fees(&self, node: &Anvil) -> Result<Vec<(u64, String, u128)>> {
        let content: Value = node.rpc("txpool_content", json!([])).await?;
        let mut out = Vec::new();
        for (from, txs) in content["pending"].as_object().into_iter().flatten() {
            if from.parse::<Address>().ok() == Some(self.signer) {
                for (nonce, tx) in txs.as_object().into_iter().flatten() {
                    let fee = tx["maxFeePerGas"].as_str().context("maxFeePerGas")?;
                    let fee = u128::from_str_radix(fee.trim_start_matches("0x"), 16)?;
                    out.push((nonce.parse()?, tx["hash"].as_str().unwrap_or_default().to_owned(), fee));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Waits until every pooled report transaction of the signer pays more than `fee` (max fee
    /// and tip are equal): the supervisor has seen and outbid a pending user.
    pub async fn wait_outbid(&self, fee: u128) -> Result<Vec<(u64, String, u128)>> {
        let n = self.report_len();
        wait_for("the report priced above the pending users", WAIT, Duration::from_millis(50), || async {
            let pooled = self.pooled_with_fees(&self.l2).await?;
            Ok((pooled.len() == n && pooled.iter().all(|p| p.2 > fee)).then_some(pooled))
        })
        .await
    }

    /// How many transactions one report has: 1 in reporter mode, 2 for the pair.
    pub fn report_len(&self) -> usize {
        if self.reporter.is_some() { 1 } else { 2 }
    }

    /// Waits until exactly one report from the signer is pooled.
    pub async fn wait_pair_pooled(&self) -> Result<Vec<(u64, String)>> {
        let n = self.report_len();
        wait_for("the report in the pool", WAIT, Duration::from_millis(50), || async {
            let pooled = self.pooled().await?;
            ensure!(pooled.len() <= n, "more than one report pooled: {pooled:?}");
            Ok((pooled.len() == n).then_some(pooled))
        })
        .await
    }

    /// A user transaction from anvil account `account`, paying far more than our default fees
    /// ([`USER_MAX_FEE`], [`USER_TIP`]).
    pub async fn user_tx(&self) -> Result<String> {
        self.user_tx_paying(3, USER_MAX_FEE, USER_TIP).await
    }

    /// A user transaction from anvil account `account` paying `max_fee` / `tip`.
    pub async fn user_tx_paying(&self, account: usize, max_fee: u128, tip: u128) -> Result<String> {
        let accounts: Vec<String> = self.l2.rpc("eth_accounts", json!([])).await?;
        self.l2
            .rpc(
                "eth_sendTransaction",
                json!([{ "from": accounts[account], "to": accounts[9], "value": "0x1", "gas": TRANSFER_GAS,
                         "maxPriorityFeePerGas": format!("{tip:#x}"), "maxFeePerGas": format!("{max_fee:#x}") }]),
            )
            .await
    }

    /// Nonce of the signer at the latest block.
    pub async fn signer_nonce(&self) -> Result<u64> {
        let n: String = self.l2.rpc("eth_getTransactionCount", json!([self.signer, "latest"])).await?;
        hex_u64(&n)
    }

    /// `latestRoundData()` → (roundId, answer, startedAt).
    pub async fn latest_round(&self) -> Result<(u64, u64, u64)> {
        let call = json!([{ "to": self.feed, "data": feed::latest_round_data() }, "latest"]);
        let out: String = self.l2.rpc("eth_call", call).await?;
        let bytes = alloy::hex::decode(out)?;
        let w = |i: usize| U256::from_be_slice(&bytes[i * 32..(i + 1) * 32]).to::<u64>();
        Ok((w(0), w(1), w(2)))
    }
}

/// What the block after the gap holds: per transaction (hash, from, its first AnswerUpdated
/// (answer, timestamp) if any), and the block timestamp.
pub async fn block_after_gap(l2: &Anvil, number: u64) -> Result<(u64, Vec<(String, Address, Option<(u64, u64)>)>)> {
    let (ts, txs) = block_updates(l2, number).await?;
    Ok((ts, txs.into_iter().map(|(h, from, updates)| (h, from, updates.first().copied())).collect()))
}

/// What block `number` holds: per transaction (hash, from, every AnswerUpdated (answer,
/// timestamp) it emitted), and the block timestamp.
pub async fn block_updates(l2: &Anvil, number: u64) -> Result<(u64, Vec<(String, Address, Vec<(u64, u64)>)>)> {
    let block: Value = l2.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), true])).await?;
    let ts = hex_u64(block["timestamp"].as_str().context("timestamp")?)?;
    let answer_updated = keccak256(ANSWER_UPDATED);
    let mut out = Vec::new();
    for tx in block["transactions"].as_array().context("transactions")? {
        let hash = tx["hash"].as_str().context("hash")?.to_owned();
        let from: Address = tx["from"].as_str().context("from")?.parse()?;
        let receipt: Value = l2.rpc("eth_getTransactionReceipt", json!([hash])).await?;
        ensure!(receipt["status"] == json!("0x1"), "transaction {hash} failed");
        let updates: Vec<(u64, u64)> = receipt["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|log| {
                let topics = log["topics"].as_array()?;
                (topics.first()?.as_str()?.parse::<B256>().ok()? == answer_updated).then(|| {
                    let answer = U256::from_str_radix(topics[1].as_str()?.trim_start_matches("0x"), 16).ok()?;
                    let at = U256::from_str_radix(log["data"].as_str()?.trim_start_matches("0x"), 16).ok()?;
                    Some((answer.to::<u64>(), at.to::<u64>()))
                })?
            })
            .collect();
        out.push((hash, from, updates));
    }
    Ok((ts, out))
}

/// One more second of `t_up` age than the refresh schedule's bound, for a check that runs late
/// on a loaded machine (the tests run in parallel on two cores).
pub const LATE_CHECK_SLACK: u64 = 1;

/// The promise of the refresh schedule: at wall-clock second `at`, the pooled `t_up` is at most
/// `max(⌈refresh⌉ + margin, 10 % of the outage's age)` seconds old (`pricing::staleness_bound`,
/// written out here as the test's own oracle).
pub fn staleness_bound(at: u64, down_ts: u64) -> u64 {
    (REFRESH_MS.div_ceil(1000) + MARGIN).max(at.saturating_sub(down_ts) / 10)
}

/// [`assert_pair_first_within`] with the schedule's bound at the including block's timestamp
/// (plus [`LATE_CHECK_SLACK`]) as slack.
pub async fn assert_pair_first_fresh(f: &Fixture, last_ts: u64, block: u64) -> Result<u64> {
    let (ts, _) = block_after_gap(&f.l2, block).await?;
    assert_pair_first_within(f, last_ts, block, staleness_bound(ts, last_ts) + LATE_CHECK_SLACK).await
}

/// The core assertions of scenario 1: indices 0 and 1 carry the pair, the user tx comes after,
/// `t_up` is at most one refresh (and the margin, and [`LATE_CHECK_SLACK`]) old and not in the
/// future, the feed says up since `t_up`.
async fn assert_pair_first(f: &Fixture, last_block_ts: u64, block: u64, refreshes_ms: u64) -> Result<u64> {
    assert_pair_first_within(f, last_block_ts, block, refreshes_ms.div_ceil(1000) + MARGIN + LATE_CHECK_SLACK).await
}

/// Indices 0 and 1 of block `block` carry the pair (down since `last_block_ts`, then up since
/// `t_up` with `ts - slack <= t_up <= ts`), nothing else of the signer's is in the block, and
/// the feed says up since `t_up`. Returns `t_up`.
pub async fn assert_pair_first_within(f: &Fixture, last_block_ts: u64, block: u64, slack: u64) -> Result<u64> {
    let (ts, txs) = block_after_gap(&f.l2, block).await?;
    ensure!(txs.len() >= 2, "block {block} holds {} transactions", txs.len());
    assert_eq!(txs[0].1, f.signer, "index 0 is from the signer");
    assert_eq!(txs[0].2, Some((1, last_block_ts)), "index 0: AnswerUpdated(1, _, last_block.timestamp)");
    assert_eq!(txs[1].1, f.signer, "index 1 is from the signer");
    let (answer, t_up) = txs[1].2.context("index 1 emits AnswerUpdated")?;
    assert_eq!(answer, 0, "index 1: up");
    assert!(ts.saturating_sub(slack) <= t_up && t_up <= ts, "t_up {t_up} vs block timestamp {ts} (slack {slack})");
    assert!(txs[2..].iter().all(|t| t.1 != f.signer), "exactly one pair in the block");
    let (_, answer, started_at) = f.latest_round().await?;
    assert_eq!((answer, started_at), (0, t_up), "latestRoundData: up since t_up");
    Ok(t_up)
}

/// Waits until the journal says the chain's last outage landed first in `block`; returns that
/// `lastOutage` record.
pub async fn wait_landed_first(sup: &Supervisor, block: u64) -> Result<Value> {
    wait_for("the outage journaled as landed first", WAIT, Duration::from_millis(100), || async {
        let o = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?["lastOutage"].clone();
        Ok((o["result"]["status"] == json!("landed")
            && o["result"]["first"] == json!(true)
            && o["includedIn"] == json!(block))
        .then_some(o))
    })
    .await
}

/// Reporter mode: index 0 of the first block after the gap is the signer's one `report` call,
/// emitting down since `last_block_ts` then up since the block's own timestamp; nothing else of
/// the signer's in the block; the feed says up since that timestamp. Returns the block timestamp.
pub async fn assert_report_first(f: &Fixture, last_block_ts: u64, block: u64) -> Result<u64> {
    let (ts, txs) = block_updates(&f.l2, block).await?;
    ensure!(!txs.is_empty(), "block {block} is empty");
    assert_eq!(txs[0].1, f.signer, "index 0 is from the signer");
    assert_eq!(txs[0].2, vec![(1, last_block_ts), (0, ts)], "index 0: down since the last block, up since this block");
    assert!(txs[1..].iter().all(|t| t.1 != f.signer), "exactly one report in the block");
    let (_, answer, started_at) = f.latest_round().await?;
    assert_eq!((answer, started_at), (0, ts), "latestRoundData: up since the including block's timestamp");
    Ok(ts)
}

async fn scenario_1(web3signer: bool) -> Result<()> {
    let f = Fixture::new(web3signer).await?;
    f.fund().await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    f.wait_pair_pooled().await?;
    let user = f.user_tx().await?;
    f.wait_outbid(USER_MAX_FEE).await?;
    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    assert_pair_first(&f, last_ts, block, REFRESH_MS).await?;
    let (_, txs) = block_after_gap(&f.l2, block).await?;
    assert_eq!(txs.get(2).map(|t| t.0.as_str()), Some(user.as_str()), "the user transaction comes after the pair");
    wait_landed_first(&sup, block).await?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_puts_the_pair_first_in_the_first_block_after_the_gap_local_key() -> Result<()> {
    scenario_1(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_puts_the_pair_first_in_the_first_block_after_the_gap_web3signer() -> Result<()> {
    scenario_1(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_outage_no_transaction() -> Result<()> {
    // The sequencer makes a block every second on its own (well under the 3 s threshold),
    // however slowly the supervisor starts.
    let l2 = AnvilOptions { chain_id: Some(CHAIN), block_time: Some(1), ..Default::default() };
    let f = Fixture::with_l2(false, l2).await?;
    f.fund().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    let start = f.l2.block_number().await?;
    let status = wait_for("the watchdog saw six more blocks", WAIT, Duration::from_millis(50), || async {
        let s = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
        Ok((s["head"]["number"].as_str().map(hex_u64).transpose()? >= Some(start + 6)).then_some(s))
    })
    .await?;
    assert_eq!(status["stalled"], json!(false));
    assert_eq!(f.signer_nonce().await?, 0, "no transaction, ever");
    assert!(f.pooled().await?.is_empty());
    assert_eq!(status["lastOutage"], Value::Null);
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_lands_exactly_one_pair_with_a_fresh_up_timestamp() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (_, last_ts) = f.stop_sequencer().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    let first = f.wait_pair_pooled().await?;
    // Many refresh intervals: the pooled pair is replaced (new hashes, same nonces).
    wait_for("several refreshes", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("pair_refreshes_total{chain=\"901\"}").await? >= 8.0).then_some(()))
    })
    .await?;
    let now = f.wait_pair_pooled().await?;
    assert_eq!(now.iter().map(|p| p.0).collect::<Vec<_>>(), first.iter().map(|p| p.0).collect::<Vec<_>>());
    assert_ne!(now[1].1, first[1].1, "the up transaction was refreshed");
    let block = f.resume().await?;
    assert_pair_first(&f, last_ts, block, REFRESH_MS).await?;
    assert_eq!(f.signer_nonce().await?, 2, "exactly one pair landed");
    assert_eq!(f.latest_round().await?.0, 3, "two new rounds after the deploy round");
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_outage_and_a_start_during_an_outage_land_exactly_one_pair() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (_, last_ts) = f.stop_sequencer().await?;
    // Started while the chain is already stalled past the threshold.
    wait_until_unix_second(last_ts + MAX_AGE + 2, WAIT).await?;
    let spec = f.spec()?;
    let mut sup = Supervisor::start(&spec).await?;
    let before = f.wait_pair_pooled().await?;
    // Restarted mid-outage: the journal keeps the nonces, the pair is refreshed, not doubled.
    assert_eq!(sup.stop().await?, 0);
    sup.restart(&spec).await?;
    wait_for("a refresh after the restart", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("pair_refreshes_total{chain=\"901\"}").await? >= 1.0).then_some(()))
    })
    .await?;
    let after = f.wait_pair_pooled().await?;
    assert_eq!(after.iter().map(|p| p.0).collect::<Vec<_>>(), before.iter().map(|p| p.0).collect::<Vec<_>>());
    let block = f.resume().await?;
    assert_pair_first(&f, last_ts, block, REFRESH_MS).await?;
    assert_eq!(f.signer_nonce().await?, 2, "exactly one pair landed");
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_down_during_the_outage_delays_nothing_and_the_pair_lands_once_it_is_back() -> Result<()> {
    let f = Fixture::new(true).await?;
    f.fund().await?;
    let Backend::Web3(stand_in) = &f.backend else { unreachable!() };
    stand_in.set_mode(Mode::Down);
    let (_, last_ts) = f.stop_sequencer().await?;
    let sup = Supervisor::start(&f.spec()?).await?;
    wait_for("signing failures counted", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("signer_errors_total{chain=\"901\",backend=\"web3signer\"}").await? >= 3.0).then_some(()))
    })
    .await?;
    assert!(f.pooled().await?.is_empty(), "nothing pooled without a signature");
    // Meanwhile the L1 flow keeps recording blocks.
    f.l1.mine(3).await?;
    let n = f.l1.block_number().await?;
    let hash = f.l1.canonical_chain(n, n).await?[0].hash.clone();
    sup.wait_l1(n, &hash, WAIT).await?;
    let status = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
    assert!(status["signer"]["consecutiveFailures"].as_u64() >= Some(3), "{status}");

    stand_in.set_mode(Mode::Normal);
    f.wait_pair_pooled().await?;
    let block = f.resume().await?;
    assert_pair_first(&f, last_ts, block, REFRESH_MS).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfunded_signer_sends_nothing_and_injects_as_soon_as_funded() -> Result<()> {
    let f = Fixture::new(false).await?;
    let (_, last_ts) = f.stop_sequencer().await?;
    let sup = Supervisor::start(&f.spec()?).await?;
    wait_for("the unfunded alert", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("signer_unfunded{chain=\"901\"}").await? == 1.0).then_some(()))
    })
    .await?;
    assert!(sup.log_text().contains("signer balance below what the report may cost"));
    // Reported before the chain is even called down, then the outage is held back for funds.
    wait_for("the stall detected", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("outages_total{chain=\"901\"}").await? == 1.0).then_some(()))
    })
    .await?;
    assert!(f.pooled().await?.is_empty(), "nothing is sent while unfunded");
    f.fund().await?;
    f.wait_pair_pooled().await?;
    let block = f.resume().await?;
    assert_pair_first(&f, last_ts, block, REFRESH_MS).await?;
    Ok(())
}

/// Two instances with the same chain, signer key and feed, each with its own database: both see
/// the stall, and each signs and submits the pair itself (its own metrics say so, whatever the
/// node answered: accepted, already known or underpriced), yet exactly one pair lands (the
/// shared nonces), first, with the freshness bound of one instance, and each journal says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_the_same_chain_and_signer_both_act_and_land_exactly_one_pair() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (_, last_ts) = f.stop_sequencer().await?;
    let spec = f.spec()?;
    let mut a = Supervisor::start(&spec).await?;
    let mut b = Supervisor::start(&spec).await?;
    f.wait_pair_pooled().await?;
    for (name, sup) in [("a", &a), ("b", &b)] {
        let acted = wait_for(&format!("instance {name} signed and submitted the pair"), WAIT, POLL, || async {
            let stalled = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?["stalled"] == json!(true);
            let signed = sup.metric("signer_requests_total{chain=\"901\",backend=\"local\"}").await?;
            let submitted = sup.metric_sum("report_submissions_total{chain=\"901\",endpoint=\"rpc\",").await?;
            Ok((stalled && signed >= 2.0 && submitted >= 2.0).then_some((signed, submitted)))
        })
        .await?;
        eprintln!("instance {name}: {} signatures, {} submissions", acted.0, acted.1);
    }
    let block = f.resume().await?;
    assert_pair_first(&f, last_ts, block, REFRESH_MS).await?;
    assert_eq!(f.signer_nonce().await?, 2, "exactly one pair landed");
    assert_eq!(f.latest_round().await?.0, 3, "exactly one down/up round pair after the deploy round");
    for sup in [&a, &b] {
        wait_landed_first(sup, block).await?;
    }
    // Later blocks carry nothing more from the signer.
    f.l2.mine(2).await?;
    assert_eq!(f.signer_nonce().await?, 2);
    assert!(f.pooled().await?.is_empty());
    assert_eq!(a.stop().await?, 0);
    assert_eq!(b.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_from_the_wrong_key_is_refused_and_a_missing_role_is_reported() -> Result<()> {
    let f = Fixture::new(true).await?;
    f.fund().await?;
    let Backend::Web3(stand_in) = &f.backend else { unreachable!() };
    stand_in.set_mode(Mode::WrongKey);
    f.stop_sequencer().await?;
    let sup = Supervisor::start(&f.spec()?).await?;
    wait_for("the wrong signature refused", WAIT, Duration::from_millis(100), || async {
        Ok(sup.log_text().contains("signature recovers to").then_some(()))
    })
    .await?;
    assert!(f.pooled().await?.is_empty());
    drop(sup);

    // A signer without the role: reported clearly at start-up.
    let mut g = Fixture::new(false).await?;
    g.key = PrivateKeySigner::random();
    g.signer = g.key.address();
    let sup = Supervisor::start(&g.spec()?).await?;
    wait_for("the missing role reported", WAIT, Duration::from_millis(100), || async {
        Ok(sup.log_text().contains("lacks FEED_UPDATER_ROLE").then_some(()))
    })
    .await?;
    assert_eq!(sup.metric("signer_missing_role{chain=\"901\"}").await?, 1.0);
    Ok(())
}

#[test]
fn the_committed_feed_artifact_matches_a_fresh_compile() -> Result<()> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("bash").arg(format!("{root}/contracts/build.sh")).arg("--check").output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "contracts/build.sh --check: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_that_does_not_land_first_is_reported_and_retried_with_the_original_down_timestamp() -> Result<()> {
    use alloy::{
        consensus::{SignableTransaction, TxEip1559, TxEnvelope},
        eips::eip2718::Encodable2718,
        primitives::TxKind,
        signers::SignerSync,
    };
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    let sup = Supervisor::start(&f.spec()?).await?;
    let pooled = f.wait_pair_pooled().await?;
    // Someone else with the signer's key outbids the down transaction (same nonce, higher fee).
    let stray = TxEip1559 {
        chain_id: CHAIN,
        nonce: pooled[0].0,
        gas_limit: 21_000,
        max_fee_per_gas: 10_000_000_000_000,
        max_priority_fee_per_gas: 10_000_000_000_000,
        to: TxKind::Call(Address::repeat_byte(7)),
        value: U256::from(1),
        ..Default::default()
    };
    let sig = f.key.sign_hash_sync(&stray.signature_hash())?;
    let raw = TxEnvelope::Eip1559(stray.into_signed(sig)).encoded_2718();
    let _: String = f.l2.rpc("eth_sendRawTransaction", json!([alloy::hex::encode_prefixed(raw)])).await?;
    f.l2.set_automine(true).await?;
    let block = last + 1;
    // The first block after the gap does not carry the pair first: said loudly, then retried.
    wait_for("the pair retried and landed", WAIT, Duration::from_millis(100), || async {
        let s = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
        Ok((s["lastOutage"]["result"]["status"] == json!("landed")).then_some(s))
    })
    .await?;
    let (_, txs) = block_after_gap(&f.l2, block).await?;
    assert_ne!(txs[0].2, Some((1, last_ts)), "the first block did not start with the down update");
    let status = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
    assert_eq!(status["lastOutage"]["result"]["first"], json!(false), "{status}");
    assert!(sup.metric("injections_total{chain=\"901\",result=\"failed\"}").await? >= 1.0);
    assert!(sup.log_text().contains("did not land first"));
    let (_, answer, started_at) = f.latest_round().await?;
    assert_eq!(answer, 0, "the feed ends up");
    assert!(started_at >= last_ts);
    // The retried down update used the original down timestamp.
    let included: u64 = status["lastOutage"]["includedIn"].as_u64().context("includedIn")?;
    let (_, later) = block_after_gap(&f.l2, included).await?;
    assert!(later.iter().any(|t| t.2 == Some((1, last_ts))), "down update with the original timestamp");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_node_that_is_down_or_serves_another_chain_gets_no_injection_and_l1_goes_on() -> Result<()> {
    use crate::harness::Proxy;
    let f = Fixture::new(false).await?;
    f.fund().await?;
    f.stop_sequencer().await?;
    let proxy = Proxy::start(f.l2.addr()).await?;
    proxy.cut();
    let mut spec = f.spec()?;
    spec.chains[0].extra = spec.chains[0].extra.replace(&f.l2.url(), &proxy.url());
    spec.chains[0].rpc_url = proxy.url();
    let sup = Supervisor::start(&spec).await?;
    // (The endpoint's errors are the L2 watcher's and the watchdog's: wait for the watchdog's.)
    let status =
        wait_for("L2 read errors counted and the watchdog's said", WAIT, Duration::from_millis(100), || async {
            let errors =
                sup.metric("node_rpc_errors_total{endpoint=\"l2_901\",method=\"eth_getBlockByNumber\"}").await?;
            let status = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
            Ok((errors >= 3.0 && status["lastError"].is_string()).then_some(status))
        })
        .await?;
    assert_eq!(status["stalled"], json!(false), "a chain we cannot see is not called down");
    f.l1.mine(2).await?;
    let n = f.l1.block_number().await?;
    sup.wait_l1(n, &f.l1.canonical_chain(n, n).await?[0].hash, WAIT).await?;
    proxy.restore();
    f.wait_pair_pooled().await?;
    drop(sup);

    // The configured chain id is 902 but the node serves 901: refused, nothing sent.
    let g = Fixture::new(false).await?;
    g.fund().await?;
    g.stop_sequencer().await?;
    let mut spec = g.spec()?;
    spec.chains[0].chain_id = 902;
    let sup = Supervisor::start(&spec).await?;
    wait_for("the wrong chain reported", WAIT, Duration::from_millis(100), || async {
        Ok(sup.log_text().contains("the L2 node serves another chain: refusing to inject").then_some(()))
    })
    .await?;
    assert!(g.pooled().await?.is_empty());
    Ok(())
}

async fn reporter_scenario(web3signer: bool) -> Result<()> {
    let f = Fixture::reporter(web3signer).await?;
    f.fund().await?;
    let (last, last_ts) = f.stop_sequencer().await?;
    let mut sup = Supervisor::start(&f.spec()?).await?;
    f.wait_pair_pooled().await?;
    let user = f.user_tx().await?;
    f.wait_outbid(USER_MAX_FEE).await?;
    // Several checks later the one pooled report is still the same transaction: nothing to refresh.
    let pooled = f.pooled().await?;
    wait_for("checks while stalled", WAIT, Duration::from_millis(100), || async {
        let n = sup.metric("report_submissions_total{chain=\"901\",endpoint=\"rpc\",result=\"accepted\"}").await?;
        Ok((n >= 1.0).then_some(()))
    })
    .await?;
    let block = f.resume().await?;
    assert_eq!(block, last + 1);
    let ts = assert_report_first(&f, last_ts, block).await?;
    let (_, txs) = block_after_gap(&f.l2, block).await?;
    assert_eq!(txs.get(1).map(|t| t.0.as_str()), Some(user.as_str()), "the better-paying user comes after the report");
    assert!(pooled.len() == 1, "exactly one signer transaction pending: {pooled:?}");
    assert_eq!(f.signer_nonce().await?, 1, "one transaction for the whole outage");
    let outage = wait_landed_first(&sup, block).await?;
    assert_eq!(outage["upTs"], json!(ts), "journaled up timestamp = the including block's");
    assert_eq!(sup.metric("pair_refreshes_total{chain=\"901\"}").await?, 0.0, "nothing refreshed");
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporter_mode_lands_one_transaction_first_with_t_up_equal_to_the_block_timestamp() -> Result<()> {
    reporter_scenario(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporter_mode_through_web3signer() -> Result<()> {
    reporter_scenario(true).await
}
