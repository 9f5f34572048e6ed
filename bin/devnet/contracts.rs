//! The contracts devnet deploys on L2 from the committed artifacts (the uptime feed, and by
//! default our `UptimeReporter` in front of it), the permissions it grants and checks, and what
//! the feed's rounds and a report's receipt say.

use alloy::primitives::{Address, B256, Bytes, U64, U256, keccak256};
use anyhow::{Context as _, ensure};
use rollup_supervisor_actors::uptime::{feed, injector::ReportMode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    consts::{ANSWER_UPDATED, DEPLOY_GAS, FEED_ARTIFACT, OUTAGE_REPORTED, REPORTER_ARTIFACT},
    nodes::Chain,
    timeline::{Timeline, clock, quantity},
};

/// What devnet deployed: the feed, and how the supervisor reports outages to it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Deployed {
    pub(super) feed: Address,
    pub(super) mode: ReportMode,
}

/// Deploys the feed (admin: `admin`, anvil dev key #0), then either (`pair`) grants the feed's
/// `FEED_UPDATER_ROLE` to `signer`, or deploys our reporter in front of the feed, has the feed
/// admin grant the role to the reporter and the reporter admin allow `signer`. Every
/// permission is read back (`hasRole`, `isReporter`) before it is said.
pub(super) async fn deploy(
    l2: &Chain,
    admin: Address,
    signer: Address,
    pair: bool,
    tl: Timeline,
) -> anyhow::Result<Deployed> {
    let feed = deploy_feed(l2, admin, tl).await?;
    let mode = if pair {
        let grant = feed::grant_role(feed::FEED_UPDATER_ROLE, signer);
        let receipt = l2.transact(json!({ "from": admin, "to": feed, "data": grant }), "grantRole").await?;
        ensure!(has_role(l2, feed, signer).await?, "hasRole(FEED_UPDATER_ROLE, {signer}) is false after grantRole");
        tl.say(format!(
            "FEED_UPDATER_ROLE granted to {signer} (anvil dev key #1, the supervisor's signer) in block {}: hasRole \
             true; pair mode: the signer writes to the feed itself",
            quantity(&receipt["blockNumber"])
        ));
        ReportMode::Pair
    } else {
        ReportMode::Reporter(deploy_reporter(l2, feed, admin, signer, tl).await?)
    };
    Ok(Deployed { feed, mode })
}

/// Deploys `artifact` from `from` with the constructor arguments `args` (one word each);
/// returns the new contract and its block.
async fn deploy_artifact(
    l2: &Chain,
    artifact: &str,
    what: &str,
    from: Address,
    args: &[B256],
) -> anyhow::Result<(Address, String)> {
    let artifact: Value = serde_json::from_str(artifact).with_context(|| format!("the {what} artifact is not JSON"))?;
    let code = artifact["bytecode"].as_str().with_context(|| format!("the {what} artifact has no bytecode"))?;
    let mut data = alloy::hex::decode(code).with_context(|| format!("the {what} artifact's bytecode is not hex"))?;
    for arg in args {
        data.extend_from_slice(arg.as_slice());
    }
    let tx = json!({ "from": from, "data": Bytes::from(data), "gas": DEPLOY_GAS });
    let receipt = l2.transact(tx, &format!("the {what} deployment")).await?;
    let address: Address =
        receipt["contractAddress"].as_str().context("the deployment receipt has no contractAddress")?.parse()?;
    Ok((address, quantity(&receipt["blockNumber"])))
}

/// The feed, initially up, with `admin` as its admin (and, as the constructor wants a non-zero
/// updater, its first updater).
async fn deploy_feed(l2: &Chain, admin: Address, tl: Timeline) -> anyhow::Result<Address> {
    // constructor(bool initialStatus = false (up), address admin, address feedUpdater = admin)
    let args = [B256::ZERO, admin.into_word(), admin.into_word()];
    let (feed, block) = deploy_artifact(l2, FEED_ARTIFACT, "feed", admin, &args).await?;
    let first = round(l2, feed, None).await?;
    tl.say(format!(
        "uptime feed deployed on L2 at {feed} in block {block}; round #{}: up since {}; admin {admin} (anvil dev key #0)",
        first.round_id,
        clock(first.started_at)
    ));
    Ok(feed)
}

/// `UptimeReporter(feed, admin)`, then in one block the feed admin's `grantRole` to it and the
/// reporter admin's `setReporter(signer, true)`, both read back.
async fn deploy_reporter(
    l2: &Chain,
    feed: Address,
    admin: Address,
    signer: Address,
    tl: Timeline,
) -> anyhow::Result<Address> {
    let args = [feed.into_word(), admin.into_word()];
    let (reporter, block) = deploy_artifact(l2, REPORTER_ARTIFACT, "reporter", admin, &args).await?;
    let its_feed = read_address(l2, reporter, feed::reporter_feed()).await?;
    let admin_call = Bytes::copy_from_slice(&keccak256("admin()")[..4]);
    let its_admin = read_address(l2, reporter, admin_call).await?;
    ensure!(its_feed == feed, "the reporter at {reporter} answers feed() = {its_feed}, not {feed}");
    ensure!(its_admin == admin, "the reporter at {reporter} answers admin() = {its_admin}, not {admin}");
    tl.say(format!(
        "UptimeReporter deployed on L2 at {reporter} in block {block}: feed() = {its_feed} (the feed), admin() = \
         {its_admin} (the feed's admin too)"
    ));

    // Both from the admin account: consecutive nonces, one block.
    let receipts = l2
        .transact_all(vec![
            (
                json!({ "from": admin, "to": feed, "data": feed::grant_role(feed::FEED_UPDATER_ROLE, reporter) }),
                "grantRole(FEED_UPDATER_ROLE, reporter)",
            ),
            (json!({ "from": admin, "to": reporter, "data": feed::set_reporter(signer, true) }), "setReporter"),
        ])
        .await?;
    let block = |i: usize| receipts.get(i).map_or_else(|| "?".to_owned(), |r| quantity(&r["blockNumber"]));
    ensure!(has_role(l2, feed, reporter).await?, "hasRole(FEED_UPDATER_ROLE, {reporter}) is false after grantRole");
    tl.say(format!(
        "FEED_UPDATER_ROLE granted to the reporter by the feed admin in block {}: hasRole(FEED_UPDATER_ROLE, \
         reporter) true",
        block(0)
    ));
    let allowed = feed::decode_bool(&l2.eth.call(reporter, feed::is_reporter(signer)).await?);
    ensure!(allowed == Some(true), "isReporter({signer}) is {allowed:?} after setReporter({signer}, true)");
    tl.say(format!(
        "setReporter({signer}, true) by the reporter admin in block {}: isReporter true for the supervisor's \
         signer (anvil dev key #1)",
        block(1)
    ));
    Ok(reporter)
}

async fn has_role(l2: &Chain, feed: Address, who: Address) -> anyhow::Result<bool> {
    let out = l2.eth.call(feed, feed::has_role(feed::FEED_UPDATER_ROLE, who)).await?;
    feed::decode_bool(&out).with_context(|| format!("the feed at {feed} answered {out} to hasRole"))
}

async fn read_address(l2: &Chain, at: Address, call: Bytes) -> anyhow::Result<Address> {
    let out = l2.eth.call(at, call).await?;
    feed::decode_address(&out).with_context(|| format!("{at} answered {out}, not an address"))
}

/// The feed's latest round, or round `id`.
pub(super) async fn round(l2: &Chain, feed: Address, id: Option<u128>) -> anyhow::Result<feed::Round> {
    let data = id.map_or_else(feed::latest_round_data, feed::get_round_data);
    let out = l2.eth.call(feed, data).await?;
    let round = if id.is_some() { feed::decode_round_data(&out) } else { feed::decode_round(&out) };
    round.with_context(|| format!("the feed at {feed} answered {out} to a round query"))
}

/// A receipt, with the fields and logs the timeline reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    status: Option<U64>,
    transaction_index: Option<U64>,
    #[serde(default)]
    logs: Vec<Log>,
}

#[derive(Debug, Deserialize)]
struct Log {
    address: Address,
    topics: Vec<B256>,
    data: Bytes,
}

/// What a transaction did, from its receipt.
#[derive(Debug)]
pub(super) struct Effects {
    /// It executed successfully.
    pub(super) ok: bool,
    /// Its index in its block.
    pub(super) index: Option<u64>,
    /// The feed's `AnswerUpdated` events in order: (down, the round's start).
    pub(super) rounds: Vec<(bool, u64)>,
    /// The reporter's `OutageReported(down, up)`, when it emitted one.
    pub(super) outage: Option<(u64, u64)>,
}

/// Reads `tx`'s receipt for what the feed (and the reporter, if any) emitted.
pub(super) async fn effects(l2: &Chain, tx: B256, feed: Address, reporter: Option<Address>) -> anyhow::Result<Effects> {
    let receipt: Option<Receipt> = l2.call("eth_getTransactionReceipt", json!([tx])).await?;
    let receipt = receipt.with_context(|| format!("no receipt for {tx}"))?;
    let (answer_updated, outage_reported) = (keccak256(ANSWER_UPDATED), keccak256(OUTAGE_REPORTED));
    let word =
        |data: &[u8], i: usize| data.get(i * 32..(i + 1) * 32).and_then(|w| u64::try_from(U256::from_be_slice(w)).ok());
    let mut effects = Effects {
        ok: receipt.status == Some(U64::from(1)),
        index: receipt.transaction_index.map(|i| i.to()),
        rounds: Vec::new(),
        outage: None,
    };
    for log in &receipt.logs {
        match log.topics.as_slice() {
            [t0, answer, _round] if log.address == feed && *t0 == answer_updated => {
                let answer = U256::from_be_bytes(answer.0);
                if let Some(start) = word(&log.data, 0)
                    && answer <= U256::ONE
                {
                    effects.rounds.push((answer == U256::ONE, start));
                }
            }
            [t0] if Some(log.address) == reporter && *t0 == outage_reported => {
                effects.outage = word(&log.data, 0).zip(word(&log.data, 1));
            }
            _ => {}
        }
    }
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_topics_are_the_documented_ones() {
        assert_eq!(
            keccak256(ANSWER_UPDATED).to_string(),
            "0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f"
        );
        assert_eq!(
            keccak256(OUTAGE_REPORTED).to_string(),
            "0x92c48c30922e579a16d2ec01f575c8b7def9564119b44ee7e8eeb3747f97ed39"
        );
        assert_eq!(keccak256("admin()")[..4], [0xf8, 0x51, 0xa4, 0x40]);
    }

    #[test]
    fn the_artifacts_have_bytecode() {
        for artifact in [FEED_ARTIFACT, REPORTER_ARTIFACT] {
            let value: Value = serde_json::from_str(artifact).unwrap();
            assert!(value["bytecode"].as_str().is_some_and(|c| c.starts_with("0x6")));
        }
    }
}
