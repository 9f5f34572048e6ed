//! Failures: an L1 endpoint cut, slow or answering garbage; wrong chain ids; a panic; a bad
//! configuration.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::{
    harness::{Anvil, AnvilOptions, Proxy, ProxyMode, wait_for},
    supervisor::{BIN, ChainSpec, Spec, Supervisor},
};

const WAIT: Duration = Duration::from_secs(60);

async fn hash_at(anvil: &Anvil, n: u64) -> Result<String> {
    Ok(anvil.canonical_chain(n, n).await?[0].hash.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l1_endpoint_that_is_cut_hangs_or_answers_garbage_is_survived_and_recovered() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    anvil.mine(50).await?;
    let proxy = Proxy::start(anvil.addr()).await?;
    let mut sup = Supervisor::start(&Spec::new(proxy.url())).await?;
    sup.wait_l1(50, &hash_at(&anvil, 50).await?, WAIT).await?;

    for mode in [ProxyMode::Cut, ProxyMode::Garbage, ProxyMode::Blackhole] {
        let before = sup.metric("watcher_errors_total{watcher=\"l1\",kind=\"rpc\"}").await?;
        proxy.set_mode(mode);
        anvil.mine(10).await?;
        wait_for(&format!("errors counted in {mode:?}"), WAIT, Duration::from_millis(50), || async {
            Ok((sup.metric("watcher_errors_total{watcher=\"l1\",kind=\"rpc\"}").await? >= before + 2.0).then_some(()))
        })
        .await?;
        proxy.restore();
        let n = anvil.block_number().await?;
        sup.wait_l1(n, &hash_at(&anvil, n).await?, WAIT).await?;
    }
    assert_eq!(sup.metric("actor_restarts_total{actor=\"l1\"}").await?, 0.0, "a bad node is waited out, not a crash");
    let n = anvil.block_number().await?;
    crate::l1::stop_and_compare(&mut sup, &anvil, 0, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_l1_chain_id_is_refused_at_start_up() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions { chain_id: Some(5), ..Default::default() }).await?;
    let mut spec = Spec::new(anvil.url());
    spec.l1_chain_id = Some(1);
    let mut sup = Supervisor::launch(&spec)?;
    assert_eq!(sup.wait_exit(WAIT).await?, 1);
    let log = sup.log_text();
    assert!(log.contains("serves chain 5, but l1.chain_id is 1"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_l2_chain_id_is_refused_while_l1_and_other_chains_go_on() -> Result<()> {
    let l1 = Anvil::spawn(AnvilOptions::default()).await?;
    let good = Anvil::spawn(AnvilOptions { chain_id: Some(901), ..Default::default() }).await?;
    let wrong = Anvil::spawn(AnvilOptions { chain_id: Some(777), ..Default::default() }).await?;
    let mut spec = Spec::new(l1.url());
    spec.chains = vec![ChainSpec::new(901, good.url(), "latest"), ChainSpec::new(902, wrong.url(), "latest")];
    let mut sup = Supervisor::start(&spec).await?;
    l1.mine(5).await?;
    sup.wait_l1(5, &hash_at(&l1, 5).await?, WAIT).await?;
    wait_for("chain 901 derived", WAIT, Duration::from_millis(50), || async {
        Ok(sup.call("supervisor_localSafe", json!([901])).await?.ok())
    })
    .await?;
    wait_for("the refusal logged", WAIT, Duration::from_millis(50), || async {
        Ok(sup.log_text().contains("serves chain 777, not the configured chain 902").then_some(()))
    })
    .await?;
    let none = sup.call("supervisor_localSafe", json!([902])).await?.expect_err("nothing recorded for 902");
    assert!(none["message"].as_str().is_some_and(|m| m.contains("no derivation entries")), "{none}");
    assert_eq!(sup.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_ends_the_process_with_exit_code_1() -> Result<()> {
    let anvil = Anvil::spawn(AnvilOptions::default()).await?;
    let mut spec = Spec::new(anvil.url());
    spec.env = vec![("ROLLUP_SUPERVISOR_DEBUG_PANIC", "1")];
    let mut sup = Supervisor::launch(&spec)?;
    assert_eq!(sup.wait_exit(WAIT).await?, 1);
    assert!(sup.log_text().contains("panic: exiting so the process supervisor restarts us"), "{}", sup.log_text());
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "{text}");
    Ok(())
}

#[test]
fn an_invalid_configuration_exits_2_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("[l1]\nrpc_url = \"http://127.0.0.1:1\"\npoll_interval_ms = \"fast\"\n", "poll_interval_ms"),
        ("[l1]\nrpc_url = \"http://127.0.0.1:1\"\nconfirmation = 2\n", "confirmation"),
        ("[l1]\nrpc_url = \"localhost\"\n", "l1.rpc_url"),
        (
            "[l1]\nrpc_url = \"http://127.0.0.1:1\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://x\"\nderivation_tag = \"pending\"\n",
            "derivation_tag",
        ),
        ("[l1]\nrpc_url = \"http://127.0.0.1:1\"\n[rpc]\nlisten = \"nowhere\"\n", "listen"),
    ];
    for (text, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text)?;
        let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(&path).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: the message must name {key}: {stderr}");
    }
    // The L1 URL can come from the environment instead of the file.
    let out = std::process::Command::new(BIN)
        .args(["run", "--datadir"])
        .arg(dir.path())
        .env("ROLLUP_SUPERVISOR_L1_RPC_URL", "not-a-url")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("l1.rpc_url"));
    Ok(())
}
