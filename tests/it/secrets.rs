//! Secrets in URLs: an API key in the user info, path or query of the L1, L2 or Web3Signer URL
//! never reaches the log (at debug level too), the `/readyz` body, `supervisor_uptimeStatus` or
//! a configuration error, while every failure is still reported with the node's scheme, host
//! and port and its cause.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    harness::wait_for,
    supervisor::{BIN, ChainSpec, Spec, Supervisor, readyz_check},
};

const WAIT: Duration = Duration::from_secs(60);
const CHAIN: u64 = 901;
const SECRETS: [&str; 3] = ["SECRET123", "SECRET456", "hunter2"];

/// A loopback port nothing listens on (bound, then closed).
fn dead_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `http://127.0.0.1:<port>` with a key in the path and the query (and user info, if `user`).
fn secret_url(port: u16, user: bool) -> String {
    let user = if user { "operator:hunter2@" } else { "" };
    format!("http://{user}127.0.0.1:{port}/key/SECRET123?apikey=SECRET456")
}

/// A node that refuses every request as a hosted provider refuses a bad key: HTTP 401 with an
/// error page quoting the request line (`POST /key/SECRET123?apikey=SECRET456 HTTP/1.1`). Its
/// port; it serves until the test's runtime ends.
async fn refusing_node() -> Result<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let line = request.lines().next().unwrap_or_default().to_owned();
                let page = format!("invalid API key: {line}");
                let reply = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// How each URL is shown: scheme, host and port, `/…` for what was cut.
fn shown(port: u16) -> String {
    format!("http://127.0.0.1:{port}/…")
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} reached {what}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_l1_l2_and_web3signer_urls_reach_no_log_status_or_readiness_body() -> Result<()> {
    // L1 and the signer are down; the L2 node answers, refusing the key.
    let (l1, l2, signer) = (dead_port()?, refusing_node().await?, dead_port()?);
    let mut spec = Spec::new(secret_url(l1, false));
    // Asked for at start: the first error is logged before anything runs.
    spec.l1_chain_id = Some(900);
    let mut chain = ChainSpec::new(CHAIN, secret_url(l2, true), "latest");
    chain.extra = format!(
        "[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n[chains.uptime.signer]\ntype = \"web3signer\"\nurl = {:?}\nkey_id = \"0x{}\"\naddress = \"0x0000000000000000000000000000000000000002\"\ntimeout_ms = 1000\n",
        secret_url(signer, true),
        "ab".repeat(64)
    );
    spec.chains = vec![chain];
    // Debug level, what an operator chasing a problem turns on: alloy's HTTP transport then logs
    // in a span that carries the full URL.
    spec.env = vec![("RUST_LOG", "debug")];
    let mut sup = Supervisor::start(&spec).await?;

    // /readyz: not ready, each failing check saying which node and why (the l1 check first says
    // that no step has completed yet).
    let signer_check = format!("signer_{CHAIN}");
    let names = |body: &Value, check: &str, node: &str| {
        let error = readyz_check(body, check)["error"].as_str().unwrap_or_default();
        error.contains(node) && error.to_lowercase().contains("connect")
    };
    let ready = sup
        .wait_readyz(503, WAIT, |body| names(body, "l1", &shown(l1)) && names(body, &signer_check, &shown(signer)))
        .await?;
    assert_no_secret("/readyz", &ready.to_string());

    // supervisor_uptimeStatus: the L2 node's refusal, with the node named.
    let status = wait_for("supervisor_uptimeStatus.lastError", WAIT, Duration::from_millis(200), || async {
        let status = sup.ok("supervisor_uptimeStatus", json!([CHAIN])).await?;
        Ok(status["lastError"].is_string().then_some(status))
    })
    .await?;
    assert_no_secret("supervisor_uptimeStatus", &status.to_string());
    let last_error = status["lastError"].as_str().context("lastError")?;
    assert!(last_error.contains(&shown(l2)) && last_error.contains("401"), "{status}");
    assert!(last_error.contains("invalid API key: POST /…"), "the answer, with the echoed key cut: {status}");

    // The log: every node's failure is there, no secret is.
    wait_for("each node's failure logged", WAIT, Duration::from_millis(200), || async {
        let log = sup.log_text();
        Ok([l1, l2, signer].iter().all(|port| log.contains(&shown(*port))).then_some(()))
    })
    .await?;
    assert_eq!(sup.stop().await?, 0);
    let log = sup.log_text();
    assert_no_secret("the log", &log);
    Ok(())
}

#[test]
fn a_url_the_configuration_refuses_is_named_without_its_secrets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = "http://operator:hunter2@127.0.0.1:99999/key/SECRET123?apikey=SECRET456";
    let signer = format!(
        "[[chains]]\nchain_id = 1\nrpc_url = \"http://127.0.0.1:1\"\n[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n[chains.uptime.signer]\ntype = \"web3signer\"\nurl = {bad:?}\nkey_id = \"0xab\"\naddress = \"0x0000000000000000000000000000000000000002\"\n"
    );
    for (text, key) in [
        (format!("[l1]\nrpc_url = {bad:?}\n"), "`l1.rpc_url`"),
        (
            format!("[l1]\nrpc_url = \"http://127.0.0.1:1\"\n[[chains]]\nchain_id = 1\nrpc_url = {bad:?}\n"),
            "`chains[0].rpc_url`",
        ),
        (format!("[l1]\nrpc_url = \"http://127.0.0.1:1\"\n{signer}"), "`chains[0].uptime.signer.url`"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text)?;
        let out = std::process::Command::new(BIN)
            .args(["run", "--datadir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&path)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key) && stderr.contains("http://127.0.0.1:99999/…"), "{text}: {stderr}");
        assert_no_secret("stderr", &stderr);
    }
    Ok(())
}
