//! A datadir recorded from one chain is never served against another (issue 9, item 6): the
//! database stores the L1 chain id and first recorded block, and `run` compares them with the
//! node before anything binds.

use std::time::Duration;

use anyhow::Result;

use crate::{
    harness::{Anvil, AnvilOptions, Proxy, ProxyMode},
    supervisor::{Spec, Supervisor, l1_rows},
};

const WAIT: Duration = Duration::from_secs(60);

fn chain_900(extra_args: &[&str]) -> AnvilOptions {
    AnvilOptions {
        chain_id: Some(900),
        extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        ..AnvilOptions::default()
    }
}

async fn head(anvil: &Anvil) -> Result<(u64, String)> {
    let n = anvil.block_number().await?;
    Ok((n, anvil.canonical_chain(n, n).await?[0].hash.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datadir_from_another_chain_with_the_same_chain_id_is_refused_before_serving() -> Result<()> {
    // Chain A: chain id 900, recorded from block 5.
    let a = Anvil::spawn(chain_900(&[])).await?;
    a.mine(20).await?;
    let mut spec = Spec::new(a.url());
    spec.start_block = Some(5);
    let mut sup = Supervisor::start(&spec).await?;
    let (n, hash) = head(&a).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    let rows_before = l1_rows(&sup.db_inspect()?)?;
    let a5 = a.canonical_chain(5, 5).await?[0].hash.clone();
    let (code, text) = sup.db_check()?;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("identity: L1: chain id 900, first recorded block #5 {a5}")), "{text}");

    // Chain B: the same chain id, another history (another genesis time, other timestamps).
    let b = Anvil::spawn(chain_900(&["--timestamp", "1000000"])).await?;
    b.mine_with_interval(30, 7).await?;
    let b5 = b.canonical_chain(5, 5).await?[0].hash.clone();
    assert_ne!(a5, b5);
    let mut foreign = Spec::new(b.url());
    foreign.start_block = Some(5);
    sup.relaunch(&foreign)?;
    let code = sup.wait_exit(Duration::from_secs(30)).await?;
    let log = sup.run_log_text();
    assert_eq!(code, 2, "a foreign datadir is a configuration error\n{log}");
    let datadir = sup.datadir().display().to_string();
    for needle in [datadir.as_str(), "l1.rpc_url", a5.as_str(), b5.as_str(), "another chain"] {
        assert!(log.contains(needle), "the error must name {needle:?}\n{log}");
    }
    assert!(!log.contains("rollup-supervisor running"), "nothing may be served\n{log}");
    assert_eq!(l1_rows(&sup.db_inspect()?)?, rows_before, "nothing foreign is recorded");
    assert_eq!(sup.db_check()?.0, 0);

    // The right node again: it starts and follows on.
    sup.restart(&spec).await?;
    a.mine(3).await?;
    let (n, hash) = head(&a).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    assert!(sup.run_log_text().contains("chain identity verified"), "{}", sup.run_log_text());
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_node_that_hangs_at_start_records_nothing_and_stops_the_process_once_it_answers() -> Result<()> {
    let a = Anvil::spawn(chain_900(&[])).await?;
    a.mine(10).await?;
    let mut sup = Supervisor::start(&Spec::new(a.url())).await?;
    let (n, hash) = head(&a).await?;
    sup.wait_l1(n, &hash, WAIT).await?;
    assert_eq!(sup.stop().await?, 0, "{}", sup.log_text());
    let rows_before = l1_rows(&sup.db_inspect()?)?;

    // The other chain, behind a proxy that hangs at start: the endpoints come up anyway.
    let b = Anvil::spawn(chain_900(&["--timestamp", "2000000"])).await?;
    b.mine_with_interval(20, 3).await?;
    let proxy = Proxy::start(b.addr()).await?;
    proxy.set_mode(ProxyMode::Blackhole);
    sup.restart(&Spec::new(proxy.url())).await?;
    assert!(sup.run_log_text().contains("cannot verify the datadir's chain identity yet"), "{}", sup.run_log_text());

    // It answers: the process stops with exit 2 and has recorded nothing from it.
    proxy.restore();
    let code = sup.wait_exit(WAIT).await?;
    let log = sup.run_log_text();
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("l1.rpc_url") && log.contains(&sup.datadir().display().to_string()), "{log}");
    assert_eq!(l1_rows(&sup.db_inspect()?)?, rows_before, "nothing foreign is recorded");
    assert_eq!(sup.db_check()?.0, 0);
    Ok(())
}
