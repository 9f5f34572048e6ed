//! The configuration's parsing and validation.

use rollup_supervisor_actors::rpc::BlockTag;

use super::{uptime::SignerConfig, *};

#[test]
fn the_answer_bound_follows_the_batch_size_unless_set() {
    let cfg = Config::parse(
        "[l1]\nrpc_url = \"http://x\"\nbatch_size = 100\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\nmax_response_bytes = 5000",
    )
    .expect("parses");
    assert_eq!(cfg.l1.max_response_bytes(), 100 * 64 * 1024 + (1 << 20));
    assert_eq!(cfg.chains[0].max_response_bytes(), 5000);
    let low = Config::parse("[l1]\nrpc_url = \"http://x\"\nmax_response_bytes = 10").expect("parses");
    assert!(low.validate().is_err_and(|e| e.0.contains("`l1.max_response_bytes`")));
}

#[test]
fn defaults_and_a_full_file() {
    let cfg = Config::parse(
        r#"
        datadir = "/tmp/x"
        [l1]
        rpc_url = "http://127.0.0.1:8545"
        chain_id = 1
        start_block = 5
        [rpc]
        listen = "127.0.0.1:0"
        [[chains]]
        chain_id = 10
        rpc_url = "http://127.0.0.1:9545"
        derivation_tag = "latest"
        "#,
    );
    let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.validate().is_ok());
    assert_eq!(cfg.l1.poll_interval_ms, 2_000);
    assert_eq!(cfg.l1.confirmations, 0);
    assert_eq!(cfg.chains[0].derivation_tag, BlockTag::Latest);
    assert_eq!(Config::default().rpc.listen.to_string(), "127.0.0.1:8555");
}

#[test]
fn the_logged_config_hides_url_paths_and_credentials() {
    let mut cfg = Config::default();
    cfg.l1.rpc_url = "https://user:pw@mainnet.example.io/v3/SECRETKEY?x=1".into();
    let line = cfg.redacted();
    assert!(line.contains("https://mainnet.example.io/…"), "{line}");
    assert!(!line.contains("SECRETKEY") && !line.contains("pw"), "{line}");
    assert_eq!(redact_url_str("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
}

#[test]
fn errors_name_the_key() {
    let msg = |text: &str| match Config::parse(text) {
        Ok(cfg) => cfg.validate().err().map(|e| e.0).unwrap_or_default(),
        Err(e) => e.0,
    };
    assert!(msg("[l1]\nrpc_url = 5").contains("rpc_url"));
    assert!(msg("[l1]\nrpc_urll = \"http://x\"").contains("rpc_urll"));
    assert!(msg("[l1]\nrpc_url = \"ftp://x\"").contains("`l1.rpc_url`"));
    assert!(msg("[l1]\nrpc_url = \"http://x\"\nbatch_size = 0").contains("`l1.batch_size`"));
    assert!(msg("[l1]\nrpc_url = \"http://x\"\nhead_stall_secs = 0").contains("`l1.head_stall_secs`"));
    assert!(msg("[l1]\nrpc_url = \"http://x\"\nws_url = \"http://x\"").contains("`l1.ws_url`"));
    assert!(msg("[l1]\nrpc_url = \"http://x\"\nws_url = \"ws://h:99999\"").contains("invalid port"));
    assert!(msg("[l1]\nrpc_url = \"http://x\"\nws_url = \"wss://h:8546/key\"").is_empty());
    assert!(msg("").contains("`l1.rpc_url`"));
    let dup = "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://z\"";
    assert!(msg(dup).contains("`chains[1].chain_id`"));
    assert!(
        msg("[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\nderivation_tag = \"pending\"")
            .contains("derivation_tag")
    );
}

#[test]
fn the_uptime_fees_are_validated_against_the_pools_and_the_refresh_schedule() {
    let uptime = |extra: &str| {
        let text = format!(
            "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n{extra}\n[chains.uptime.signer]\ntype = \"local\"\nprivate_key_env = \"K\""
        );
        Config::parse(&text).and_then(|c| c.validate()).err().map(|e| e.0).unwrap_or_default()
    };
    assert_eq!(uptime(""), "", "the defaults hold a day-long outage in pair mode");
    let defaults = UptimeConfig::default();
    assert!(defaults.required_fee_cap() <= defaults.fee_cap_wei);
    assert!(uptime("fee_bump_percent = 5").contains("`chains[0].uptime.fee_bump_percent`"));
    assert!(uptime("outbid_margin_percent = 0").contains("`chains[0].uptime.outbid_margin_percent`"));
    assert!(uptime("submit_urls = [\"ws://a\"]").contains("`chains[0].uptime.submit_urls[0]`"));
    // A cap that cannot pay for the schedule is refused, naming the key and the need.
    let low = uptime("fee_cap_wei = 100000000000");
    assert!(low.contains("`chains[0].uptime.fee_cap_wei`") && low.contains("refreshes"), "{low}");
    assert!(uptime("max_outage_secs = 3600\nfee_cap_wei = 100000000000").is_empty(), "a shorter outage fits");
    // Reporter mode refreshes nothing: no schedule to pay for.
    let reporter = "reporter_address = \"0x0000000000000000000000000000000000000002\"\nfee_cap_wei = 2000000000";
    assert_eq!(uptime(reporter), "");
    assert!(uptime("max_priority_fee_per_gas_wei = 1").contains("max_priority_fee_per_gas_wei"), "removed key");
}

const SECRET_URL: &str = "http://alice:hunter2@127.0.0.1:99999/key/SECRET123?apikey=SECRET456";

fn assert_no_secret(text: &str) {
    for secret in ["hunter2", "SECRET123", "SECRET456"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
}

/// A file with one chain whose uptime section holds `extra` and whose signer is `signer`.
fn with_uptime(extra: &str, signer: &str) -> String {
    format!(
        "[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://y\"\n[chains.uptime]\nenabled = true\nfeed_address = \"0x0000000000000000000000000000000000000001\"\n{extra}\n[chains.uptime.signer]\n{signer}"
    )
}

fn web3signer(url: &str) -> String {
    format!(
        "type = \"web3signer\"\nurl = {url:?}\nkey_id = \"0xabc\"\naddress = \"0x0000000000000000000000000000000000000002\"\n"
    )
}

const LOCAL: &str = "type = \"local\"\nprivate_key_env = \"K\"";

fn invalid(text: &str) -> String {
    Config::parse(text).and_then(|c| c.validate()).err().map(|e| e.0).unwrap_or_default()
}

#[test]
fn urls_that_do_not_parse_are_config_errors_naming_the_key_without_their_secrets() {
    for (url, reason) in [("http://[::1", "invalid IPv6 address"), ("http://127.0.0.1:99999", "invalid port number")] {
        for (text, key) in [
            (format!("[l1]\nrpc_url = {url:?}"), "`l1.rpc_url`"),
            (
                format!("[l1]\nrpc_url = \"http://x\"\n[[chains]]\nchain_id = 1\nrpc_url = {url:?}"),
                "`chains[0].rpc_url`",
            ),
            (with_uptime(&format!("submit_urls = [{url:?}]"), LOCAL), "`chains[0].uptime.submit_urls[0]`"),
            (with_uptime("", &web3signer(url)), "`chains[0].uptime.signer.url`"),
        ] {
            let err = invalid(&text);
            assert!(err.contains(key) && err.contains(reason), "{text}: {err}");
        }
    }
    let err = invalid(&format!("[l1]\nrpc_url = {SECRET_URL:?}"));
    assert!(err.contains("`l1.rpc_url`") && err.contains("http://127.0.0.1:99999/…"), "{err}");
    assert_no_secret(&err);
    // Whatever the configuration accepts, the clients accept: a URL never fails the start.
    for url in ["http://x", "https://alice:hunter2@node.example/v3/SECRET123?apikey=SECRET456", "http://[::1]:8545"] {
        assert!(check_url("l1.rpc_url", url).is_ok(), "{url}");
        let rpc = rollup_supervisor_actors::rpc::EthRpc::new(url, std::time::Duration::from_secs(1));
        assert!(rpc.is_ok(), "{url}");
        let signer = SignerConfig {
            kind: Some("web3signer".into()),
            url: Some(url.into()),
            key_id: Some("0xabc".into()),
            address: Some(alloy::primitives::Address::ZERO),
            ..SignerConfig::default()
        };
        assert!(signer.build("s").is_ok(), "{url}");
    }
}

#[test]
fn interval_and_fee_errors_name_their_own_key() {
    let err = invalid(&with_uptime("refresh_interval_ms = 0", LOCAL));
    assert!(err.contains("`chains[0].uptime.refresh_interval_ms`") && !err.contains("check_interval"), "{err}");
    let err = invalid(&with_uptime("check_interval_ms = 0", LOCAL));
    assert!(err.contains("`chains[0].uptime.check_interval_ms`"), "{err}");
    // Unset, the refresh interval is the check interval: only that key is named.
    let err = invalid(&with_uptime("check_interval_ms = 0\nrefresh_interval_ms = 5", LOCAL));
    assert!(err.contains("`chains[0].uptime.check_interval_ms`"), "{err}");
    for bump in [0, 9, 101] {
        let err = invalid(&with_uptime(&format!("fee_bump_percent = {bump}"), LOCAL));
        assert!(err.contains("`chains[0].uptime.fee_bump_percent`"), "{bump}: {err}");
    }
}

#[test]
fn a_missing_or_unreadable_tls_file_names_its_own_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM\n").unwrap_or_else(|e| panic!("{e}"));
    let https = || SignerConfig {
        kind: Some("web3signer".into()),
        url: Some("https://alice:hunter2@signer.example:9000/key/SECRET123".into()),
        key_id: Some("0xabc".into()),
        address: Some(alloy::primitives::Address::ZERO),
        ..SignerConfig::default()
    };
    for (cfg, key, path) in [
        (SignerConfig { tls_ca: Some(missing.clone()), ..https() }, "tls_ca", &missing),
        (SignerConfig { tls_ca: Some(garbage.clone()), ..https() }, "tls_ca", &garbage),
        (SignerConfig { tls_client_cert: Some(missing.clone()), ..https() }, "tls_client_cert", &missing),
        (SignerConfig { tls_client_cert: Some(garbage.clone()), ..https() }, "tls_client_cert", &garbage),
    ] {
        let err = cfg.build("chains[0].uptime.signer").err().map(|e| e.0).unwrap_or_default();
        let named = format!("`chains[0].uptime.signer.{key}`");
        assert!(err.contains(&named) && err.contains(&path.display().to_string()), "{key}: {err}");
        assert!(!err.contains("signer.url"), "{key}: {err}");
        assert_no_secret(&err);
    }
}

#[test]
fn the_logged_config_cuts_every_url_to_scheme_host_and_port() {
    let text = with_uptime(
        "submit_urls = [\"http://alice:hunter2@10.0.0.2:8545/key/SECRET123?apikey=SECRET456\"]",
        &web3signer("https://alice:hunter2@signer.example:9000/key/SECRET123?apikey=SECRET456"),
    )
    .replace("rpc_url = \"http://x\"", "rpc_url = \"https://alice:hunter2@l1.example/v3/SECRET123\"")
    .replace("rpc_url = \"http://y\"", "rpc_url = \"http://10.0.0.1:8545?apikey=SECRET456\"");
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let line = cfg.redacted();
    assert_no_secret(&line);
    for shown in
        ["https://l1.example/…", "http://10.0.0.1:8545/…", "http://10.0.0.2:8545/…", "https://signer.example:9000/…"]
    {
        assert!(line.contains(shown), "{shown}: {line}");
    }
}
