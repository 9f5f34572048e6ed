//! The operator's surface on a real system: `/healthz`, `/readyz` and `/metrics` (every family
//! documented, every name the shipped alerts and dashboard use actually exported), the
//! JWT-protected `admin_forceUptimeUpdate`, JSON logs with the effective configuration.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context as _, Result, ensure};
use rollup_supervisor_actors::metrics::{ALL, Kind};
use serde_json::{Value, json};

use crate::{
    harness::{Proxy, RpcClient, wait_for},
    supervisor::{BIN, Supervisor, readyz_check, scraped},
    uptime::{Fixture, block_after_gap},
};

const WAIT: Duration = Duration::from_secs(60);
const CHAIN: u64 = 901;

/// Every `rollup_supervisor_*` and `process_*` name in a shipped file, histogram suffixes cut to
/// the family.
fn names_in(path: &str) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))?;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    for prefix in ["rollup_supervisor_", "process_"] {
        for (i, _) in text.match_indices(prefix).filter(|(i, _)| !text[..*i].ends_with(word)) {
            let name: String = text[i..].chars().take_while(|c| word(*c)).collect();
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            names.insert(family.to_owned());
        }
    }
    ensure!(!names.is_empty(), "{path} names no metric");
    Ok(names)
}

#[tokio::test]
async fn health_readiness_and_metrics_follow_the_system() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let proxy = Proxy::start(f.l1.addr()).await?;
    let mut spec = f.quiet_spec()?;
    spec.l1_url = proxy.url();
    let sup = Supervisor::start(&spec).await?;

    let (status, body) = sup.http_get("/healthz").await?;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let ready = sup.wait_readyz(200, WAIT, |_| true).await?;
    assert_eq!(ready["ready"], json!(true), "{ready}");
    for name in ["db", "l1", "signer_901"] {
        assert_eq!(readyz_check(&ready, name)["ok"], json!(true), "{name}: {ready}");
    }

    // Every family is documented and typed; what the shipped alerts and dashboard name exists.
    let (_, text) = sup.http_get("/metrics").await?;
    let exported: BTreeSet<String> = ALL.iter().map(|f| f.full_name()).collect();
    for family in ALL {
        let name = family.full_name();
        assert!(text.contains(&format!("# HELP {name} {}\n", family.help)), "{name} has no help");
        assert!(text.contains(&format!("# TYPE {name} {}\n", family.kind.as_str())), "{name} has no type");
        if family.kind == Kind::Counter {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/dashboard.json"] {
        let unknown: Vec<_> = names_in(file)?.difference(&exported).cloned().collect();
        assert!(unknown.is_empty(), "{file} names metrics the supervisor does not export: {unknown:?}");
    }
    // The system's state shows up in it.
    assert_eq!(scraped(&text, "rollup_supervisor_build_info{version=\"0.1.0\"}"), Some(1.0));
    assert_eq!(scraped(&text, "rollup_supervisor_sequencer_down{chain=\"901\"}"), Some(0.0));
    assert_eq!(scraped(&text, "rollup_supervisor_signer_circuit_breaker_state{chain=\"901\"}"), Some(0.0));
    assert!(
        scraped(&text, "rollup_supervisor_node_rpc_requests_total{endpoint=\"l1\",method=\"eth_getBlockByNumber\"}")
            .is_some()
    );
    assert!(text.contains("rollup_supervisor_db_write_duration_seconds_bucket{op=\"record_l1\",le=\"+Inf\"}"));
    wait_for("the signer balance exported", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("signer_balance_wei{chain=\"901\"}").await? == 1e19).then_some(()))
    })
    .await?;
    let latest = f.l1.block_number().await?;
    wait_for("the L1 head exported", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("l1_block_number{head=\"latest\"}").await? >= latest as f64).then_some(()))
    })
    .await?;

    // L1 unreachable: not ready, and the body says which check failed and why.
    proxy.cut();
    let unready = sup.wait_readyz(503, WAIT, |body| readyz_check(body, "l1")["ok"] == json!(false)).await?;
    assert_eq!(unready["ready"], json!(false));
    assert_eq!(readyz_check(&unready, "l1")["ok"], json!(false), "{unready}");
    assert!(readyz_check(&unready, "l1")["error"].as_str().is_some_and(|e| e.contains("unreachable")), "{unready}");
    assert_eq!(readyz_check(&unready, "db")["ok"], json!(true), "{unready}");
    let (status, _) = sup.http_get("/healthz").await?;
    assert_eq!(status, 200, "alive while not ready");
    proxy.restore();
    sup.wait_readyz(200, WAIT, |_| true).await?;
    Ok(())
}

#[tokio::test]
async fn a_dead_signer_makes_the_process_unready() -> Result<()> {
    let f = Fixture::new(true).await?;
    f.fund().await?;
    let sup = Supervisor::start(&f.quiet_spec()?).await?;
    sup.wait_readyz(200, WAIT, |_| true).await?;
    let crate::uptime::Backend::Web3(stand_in) = &f.backend else { anyhow::bail!("web3signer fixture") };
    stand_in.set_mode(rollup_supervisor_signer::test_utils::Mode::Down);
    let unready = sup.wait_readyz(503, WAIT, |body| readyz_check(body, "signer_901")["ok"] == json!(false)).await?;
    assert_eq!(readyz_check(&unready, "l1")["ok"], json!(true), "{unready}");
    stand_in.set_mode(rollup_supervisor_signer::test_utils::Mode::Normal);
    sup.wait_readyz(200, WAIT, |_| true).await?;
    Ok(())
}

/// `rollup-supervisor jwt token --secret-file`.
fn token(secret_file: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new(BIN).args(["jwt", "token", "--secret-file"]).arg(secret_file).output()?;
    ensure!(out.status.success(), "jwt token: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn error_message(e: &Value) -> &str {
    e["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn admin_override_needs_a_valid_token_and_reports_the_outage_once() -> Result<()> {
    let f = Fixture::new(false).await?;
    f.fund().await?;
    let (last, _) = f.stop_sequencer().await?;
    // The chain is healthy as far as the watchdog knows: only the operator says otherwise.
    let mut spec = f.quiet_spec()?;

    // Without a secret the admin methods are off.
    let mut sup = Supervisor::start(&spec).await?;
    let refused = sup.call("admin_forceUptimeUpdate", json!([CHAIN])).await?.expect_err("admin is off");
    assert!(error_message(&refused).contains("admin methods are disabled"), "{refused}");
    assert_eq!(sup.stop().await?, 0);

    let secret = sup.dir.path().join("jwt.hex");
    std::fs::write(&secret, "7f".repeat(32))?;
    let other = sup.dir.path().join("other.hex");
    std::fs::write(&other, "80".repeat(32))?;
    spec.extra_rpc = format!("jwt_secret_file = {secret:?}\n");
    sup.restart(&spec).await?;

    let call = |token: Option<String>| sup.call_with_token("admin_forceUptimeUpdate", json!([CHAIN]), token);
    let missing = call(None).await?.expect_err("no token");
    assert!(error_message(&missing).contains("unauthorized: missing"), "{missing}");
    let forged = call(Some(token(&other)?)).await?.expect_err("another secret");
    assert!(error_message(&forged).contains("unauthorized: provided signature is invalid"), "{forged}");
    // Inside a batch the admin call is refused too, and the read beside it is answered.
    let batch = [("admin_forceUptimeUpdate", json!([CHAIN])), ("supervisor_syncStatus", json!([]))];
    let replies = RpcClient::new(sup.rpc_url.clone())?.rpc_batch(&batch).await?;
    let refused = replies[0].as_ref().expect_err("an admin call in a batch without a token").to_string();
    assert!(refused.contains("unauthorized: missing"), "{refused}");
    assert!(replies[1].as_ref().is_ok_and(|status| status["l1"].is_object()), "{replies:?}");
    assert!(f.pooled().await?.is_empty(), "nothing was sent without a valid token");
    let unknown = sup.call_with_token("admin_forceUptimeUpdate", json!([7]), Some(token(&secret)?)).await?;
    assert!(error_message(&unknown.expect_err("chain 7")).contains("not enabled for chain 7"));

    let outage = call(Some(token(&secret)?)).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(outage["lastBlock"]["number"], json!(format!("{last:#x}")), "{outage}");
    let pooled = f.wait_pair_pooled().await?;
    let nonce = outage["nonce"].as_u64().context("nonce")?;
    assert_eq!(pooled.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![nonce, nonce + 1]);
    // Asking again answers the same outage: no second pair.
    let again = call(Some(token(&secret)?)).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        (again["nonce"].clone(), again["lastBlock"].clone()),
        (outage["nonce"].clone(), outage["lastBlock"].clone())
    );
    assert_eq!(f.pooled().await?.len(), 2);
    assert_eq!(sup.metric("outages_total{chain=\"901\"}").await?, 1.0);

    // The next block carries the pair first; the journal records it as landed first.
    let (rounds_before, _, _) = f.latest_round().await?;
    let first = f.resume().await?;
    assert_eq!(first, last + 1);
    let (_, txs) = block_after_gap(&f.l2, first).await?;
    assert!(txs.len() >= 2 && txs[0].1 == f.signer && txs[1].1 == f.signer, "{txs:?}");
    assert_eq!(txs[0].2.map(|(answer, _)| answer), Some(1), "down first");
    assert_eq!(txs[1].2.map(|(answer, _)| answer), Some(0), "then up");
    assert_eq!(f.latest_round().await?.0, rounds_before + 2);
    wait_for("the forced outage confirmed", WAIT, Duration::from_millis(100), || async {
        Ok((sup.metric("injections_total{chain=\"901\",result=\"landed_first\"}").await? == 1.0).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn json_logs_carry_fields_and_the_redacted_config_and_warn_about_an_open_rpc() -> Result<()> {
    let f = Fixture::new(false).await?;
    let mut spec = f.spec()?;
    // Credentials in the URL must not reach the log.
    spec.l1_url = f.l1.url().replace("http://", "http://operator:hunter2@");
    spec.env = vec![("ROLLUP_SUPERVISOR_LOG_FORMAT", "json"), ("ROLLUP_SUPERVISOR_RPC_LISTEN", "0.0.0.0:0")];
    let mut sup = Supervisor::start(&spec).await?;
    wait_for("the L1 watcher recording", WAIT, Duration::from_millis(100), || async {
        Ok(sup.l1_latest().await?.map(|_| ()))
    })
    .await?;
    assert_eq!(sup.stop().await?, 0);
    let log = sup.log_text();
    assert!(!log.contains("hunter2"), "a credential reached the log");
    let lines: Vec<Value> =
        log.lines().map(serde_json::from_str).collect::<Result<_, _>>().context("a non-JSON line")?;
    let find = |message: &str| lines.iter().find(|l| l["message"] == message).cloned().unwrap_or(Value::Null);
    let config = find("effective configuration");
    assert!(config["config"].as_str().is_some_and(|c| c.contains("\"listen\"") && c.contains("127.0.0.1")), "{config}");
    let open = lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains("beyond loopback")));
    assert!(open.is_some_and(|l| l["level"] == "WARN"), "no warning for a non-loopback RPC without a JWT secret");
    let running = find("rollup-supervisor running");
    assert!(running["rpc"].as_str().is_some_and(|a| a.starts_with("0.0.0.0:")), "{running}");
    let recorded = lines.iter().find(|l| l["message"] == "started following");
    assert!(recorded.is_some_and(|l| l["number"].is_u64() && l["hash"].is_string()), "structured block fields");
    Ok(())
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error_before_anything_starts() -> Result<()> {
    let f = Fixture::new(false).await?;
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let mut spec = f.spec()?;
    spec.env = vec![("ROLLUP_SUPERVISOR_METRICS_LISTEN", Box::leak(addr.clone().into_boxed_str()))];
    let mut sup = Supervisor::launch(&spec)?;
    assert_eq!(sup.wait_exit(WAIT).await?, 1);
    let log = sup.log_text();
    assert!(log.contains(&format!("cannot listen on {addr} (key `metrics.listen`)")), "{log}");
    assert!(!log.contains("panic"), "{log}");
    Ok(())
}

/// `rollup-supervisor run --config <text>`: exit code and stderr.
fn run_with(dir: &std::path::Path, text: &str) -> Result<(Option<i32>, String)> {
    let path = dir.join("config.toml");
    std::fs::write(&path, text)?;
    let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(&path).output()?;
    Ok((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[tokio::test]
async fn bad_urls_tls_files_and_intervals_exit_2_naming_the_key_and_a_deleted_db_file_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let datadir = format!("datadir = {:?}\n", dir.path().join("data"));
    let uptime = |extra: &str, signer: &str| {
        format!(
            "{datadir}[l1]\nrpc_url = \"http://127.0.0.1:1\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://127.0.0.1:1\"\n[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n{extra}\n[chains.uptime.signer]\n{signer}"
        )
    };
    let local = "type = \"local\"\nprivate_key_env = \"NO_SUCH_KEY_VARIABLE\"\n";
    let missing_ca = dir.path().join("missing-ca.pem");
    let web3 = format!(
        "type = \"web3signer\"\nurl = \"https://127.0.0.1:1\"\nkey_id = \"0xab\"\naddress = \"0x0000000000000000000000000000000000000002\"\ntls_ca = {missing_ca:?}\n"
    );
    for (text, key, not) in [
        (format!("{datadir}[l1]\nrpc_url = \"http://[::1\"\n"), "`l1.rpc_url`", None),
        (format!("{datadir}[l1]\nrpc_url = \"http://127.0.0.1:99999\"\n"), "`l1.rpc_url`", None),
        (uptime("", &web3), "`chains[0].uptime.signer.tls_ca`", Some("signer.url")),
        (uptime("refresh_interval_ms = 0", local), "`chains[0].uptime.refresh_interval_ms`", Some("check_interval_ms")),
        (uptime("fee_bump_percent = 0", local), "`chains[0].uptime.fee_bump_percent`", None),
    ] {
        let (code, stderr) = run_with(dir.path(), &text)?;
        assert_eq!(code, Some(2), "{text}\n{stderr}");
        assert!(stderr.contains(key), "must name {key}: {stderr}");
        assert!(not.is_none_or(|n| !stderr.contains(n)), "must not name {not:?}: {stderr}");
        assert!(!stderr.contains("panic"), "{stderr}");
    }

    // A datadir whose sled data file was deleted: refused, saying so, and left as it was.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let spec = crate::supervisor::Spec::new(format!("http://127.0.0.1:{dead}"));
    let mut sup = Supervisor::start(&spec).await?;
    assert_eq!(sup.stop().await?, 0);
    let data_file = sup.datadir().join("db");
    std::fs::remove_file(&data_file)?;
    let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(sup.config_path()).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let named = format!("missing its data file {}", data_file.display());
    assert!(stderr.contains(&named) && !stderr.contains("corrupt"), "{stderr}");
    let (code, text) = sup.db_check()?;
    assert!(code == 1 && text.contains(&named) && !text.contains("corrupt"), "{code}: {text}");
    assert!(!data_file.exists(), "nothing opened the directory and recreated the file");
    Ok(())
}
