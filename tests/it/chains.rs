//! Derivation logs: several L2 chains at different heights, L2 reorgs, and the RPC views.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    harness::{Anvil, AnvilOptions, wait_for},
    supervisor::{ChainSpec, Spec, Supervisor, hex_u64},
};

const WAIT: Duration = Duration::from_secs(60);

async fn local_safe(sup: &Supervisor, chain: u64) -> Result<Option<Value>> {
    Ok(sup.call("supervisor_localSafe", json!([chain])).await?.ok())
}

/// Waits until `chain`'s newest derived block is the node's head.
async fn wait_derived_head(sup: &Supervisor, chain: u64, node: &Anvil) -> Result<Value> {
    wait_for(&format!("chain {chain} derived up to its head"), WAIT, Duration::from_millis(50), || async {
        let n = node.block_number().await?;
        let head = &node.canonical_chain(n, n).await?[0];
        let pair = local_safe(sup, chain).await?;
        Ok(pair.filter(|p| p["derived"]["hash"] == json!(head.hash)))
    })
    .await
}

fn num(v: &Value) -> Result<u64> {
    hex_u64(v.as_str().context("not a quantity")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_chains_at_different_heights_are_derived_and_survive_an_l2_reorg() -> Result<()> {
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    let a = Anvil::spawn(AnvilOptions { chain_id: Some(901), ..Default::default() }).await?;
    let b = Anvil::spawn(AnvilOptions { chain_id: Some(902), ..Default::default() }).await?;
    l1.mine(40).await?;
    a.mine(20).await?;
    b.mine(120).await?;
    let mut spec = Spec::new(l1.url());
    spec.chains = vec![ChainSpec::new(901, a.url(), "latest"), ChainSpec::new(902, b.url(), "latest")];
    let mut sup = Supervisor::start(&spec).await?;
    wait_derived_head(&sup, 901, &a).await?;
    wait_derived_head(&sup, 902, &b).await?;

    // L2 blocks and L1 blocks interleave.
    a.mine(3).await?;
    wait_derived_head(&sup, 901, &a).await?;
    l1.mine(2).await?;
    let l1_head = l1.block_number().await?;
    wait_for("chains advanced to the new L1 head", WAIT, Duration::from_millis(50), || async {
        let ok = |p: Option<Value>| p.is_some_and(|p| num(&p["source"]["number"]).ok() == Some(l1_head));
        Ok((ok(local_safe(&sup, 901).await?) && ok(local_safe(&sup, 902).await?)).then_some(()))
    })
    .await?;
    b.mine(5).await?;
    let pair = wait_derived_head(&sup, 902, &b).await?;

    // The queries.
    let derived_head = num(&pair["derived"]["number"])?;
    let from = sup.ok("supervisor_derivedFrom", json!([902, derived_head])).await?;
    assert_eq!(num(&from["number"])?, l1_head, "the new L2 blocks came after L1 {l1_head}");
    let at = sup.ok("supervisor_derivedAt", json!(["0x386", format!("{l1_head:#x}")])).await?;
    assert_eq!(at["hash"], pair["derived"]["hash"]);
    let status = sup.ok("supervisor_syncStatus", json!([])).await?;
    assert_eq!(status["chains"]["902"]["localSafe"], pair);
    let unknown = sup.call("supervisor_localSafe", json!([7])).await?.expect_err("unknown chain");
    assert!(unknown["message"].as_str().is_some_and(|m| m.contains("unknown chain 7")), "{unknown}");
    let bad = sup.call("supervisor_derivedAt", json!([902, "twelve"])).await?.expect_err("bad params");
    assert_eq!(bad["code"], json!(-32602), "{bad}");
    let future = sup.call("supervisor_derivedAt", json!([902, l1_head + 1000])).await?.expect_err("future");
    assert!(future["message"].as_str().is_some_and(|m| m.contains("not")), "{future}");

    // An L2 reorg: chain 901 replaces its last 2 blocks.
    let reorg = a.reorg(2, 3).await?;
    wait_derived_head(&sup, 901, &a).await?;

    assert_eq!(sup.stop().await?, 0);
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "{text}");
    let dump = sup.db_inspect()?;
    for (chain, node) in [(901, &a), (902, &b)] {
        let log = dump["chains"][chain.to_string()]["log"].as_array().context("log")?.clone();
        let mut derived: Vec<(u64, String)> = Vec::new();
        for entry in &log {
            let d = (num(&entry["derived"]["number"])?, entry["derived"]["hash"].as_str().context("hash")?.to_owned());
            if derived.last() != Some(&d) {
                derived.push(d);
            }
        }
        let first = derived[0].0;
        let canonical: Vec<_> = node
            .canonical_chain(first, node.block_number().await?)
            .await?
            .into_iter()
            .map(|b| (b.number, b.hash))
            .collect();
        assert_eq!(derived, canonical, "chain {chain}'s derived blocks are its canonical chain");
    }
    assert!(reorg.new_head().number >= 23);
    Ok(())
}

/// An L1 reorg while the supervisor is down takes the derived L2 blocks above the common
/// ancestor with it at start-up; the L2 watcher, which may have loaded its tip before that
/// rewind, records them again although the L2 node makes no new block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l1_reorg_while_down_is_followed_by_the_l2_log_without_a_new_l2_block() -> Result<()> {
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    let l2 = Anvil::spawn(AnvilOptions { chain_id: Some(901), ..AnvilOptions::default() }).await?;
    l1.mine(5).await?;
    let mut spec = Spec::new(l1.url());
    spec.chains.push(ChainSpec::new(901, l2.url(), "latest"));
    let mut sup = Supervisor::start(&spec).await?;
    l2.mine(3).await?;
    wait_derived_head(&sup, 901, &l2).await?;
    // The next L2 blocks are derived as of a new L1 block, which a reorg while down removes.
    l1.mine(1).await?;
    let tip = l1.block_number().await?;
    let hash = l1.canonical_chain(tip, tip).await?.remove(0).hash;
    sup.wait_l1(tip, &hash, WAIT).await?;
    l2.mine(3).await?;
    let before = wait_derived_head(&sup, 901, &l2).await?;
    assert_eq!(num(&before["source"]["number"])?, tip, "{before}");
    sup.kill9().await?;
    l1.reorg(1, 1).await?;
    sup.restart(&spec).await?;
    // Until the L1 watcher's first step rewinds, the log still shows the old pair: waited for
    // the same L2 block derived as of the new L1 block.
    let new_tip = l1.canonical_chain(tip, tip).await?.remove(0);
    wait_for("the head re-derived as of the new L1 block", WAIT, Duration::from_millis(50), || async {
        let pair = local_safe(&sup, 901).await?;
        Ok(pair.filter(|p| {
            p["derived"]["hash"] == before["derived"]["hash"] && p["source"]["hash"] == json!(new_tip.hash)
        }))
    })
    .await
    .with_context(|| sup.log_text())?;
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}
