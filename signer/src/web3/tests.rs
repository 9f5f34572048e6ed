//! The Web3Signer client against the stand-in: signing, errors, TLS, redaction.

use std::{sync::Arc, time::Instant};

use alloy::primitives::B256;

use super::*;
use crate::{
    Signer,
    local::tests::{assert_round_trips, tx},
    test_utils::{Mode, StandIn},
};

/// Upper bound for any single test step; nothing here should come close.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut).await.expect("test step timed out")
}

fn signer_for(stand_in: &StandIn) -> Web3Signer {
    Web3Signer::new(stand_in.config()).unwrap()
}

#[tokio::test]
async fn signs_via_stand_in_and_posts_the_signing_payload() {
    let key = alloy::signers::local::PrivateKeySigner::random();
    let stand_in = StandIn::start_with_key(key.clone()).await.unwrap();
    let signer = Signer::Web3(signer_for(&stand_in));
    assert_eq!(signer.address(), stand_in.address());

    let signed = within(signer.sign(tx())).await.unwrap();
    assert_eq!(signed.recover_signer().unwrap(), stand_in.address());
    assert_round_trips(&signed);
    assert_eq!(stand_in.last_sign_data().unwrap(), tx().encoded_for_signing());
    assert_eq!(stand_in.last_sign_data().unwrap()[0], 0x02);
    assert_eq!(stand_in.sign_requests(), 1);

    // Same signature as local signing with the same key (RFC 6979 nonces are deterministic).
    let local = crate::LocalKey::from(key).sign(tx()).unwrap();
    assert_eq!(signed.signature(), local.signature());
    assert_eq!(signed.hash(), local.hash());

    within(signer.probe()).await.unwrap();
}

#[tokio::test]
async fn wrong_key_is_refused() {
    let stand_in = StandIn::start().await.unwrap();
    let signer = signer_for(&stand_in);
    stand_in.set_mode(Mode::WrongKey);
    match within(signer.sign(tx())).await {
        Err(e @ SignerError::WrongSigner { expected, recovered }) => {
            assert_eq!(expected, stand_in.address());
            assert_ne!(recovered, expected);
            assert!(!e.is_transient());
        }
        other => panic!("expected WrongSigner, got {other:?}"),
    }
}

#[tokio::test]
async fn down_is_unreachable_quickly() {
    let stand_in = StandIn::start().await.unwrap();
    let signer = signer_for(&stand_in);
    stand_in.set_mode(Mode::Down);
    let started = Instant::now();
    let err = within(signer.sign(tx())).await.unwrap_err();
    assert!(matches!(err, SignerError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    let err = within(signer.upcheck()).await.unwrap_err();
    assert!(matches!(err, SignerError::Unreachable(_)), "{err:?}");

    stand_in.set_mode(Mode::Normal);
    within(signer.upcheck()).await.unwrap();
    within(signer.sign(tx())).await.unwrap();
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let stand_in = StandIn::start().await.unwrap();
    let cfg = stand_in.config();
    drop(stand_in);
    // Give the aborted server task a chance to release the port; then nothing answers.
    tokio::task::yield_now().await;
    let signer = Web3Signer::new(cfg).unwrap();
    let err = within(signer.upcheck()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn slow_signer_times_out() {
    let stand_in = StandIn::start().await.unwrap();
    let signer =
        Web3Signer::new(Web3SignerConfig { timeout: Duration::from_millis(500), ..stand_in.config() }).unwrap();
    stand_in.set_mode(Mode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let err = within(signer.sign(tx())).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SignerError::Timeout | SignerError::Unreachable(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn server_error_is_transient_http_500() {
    let stand_in = StandIn::start().await.unwrap();
    let signer = signer_for(&stand_in);
    stand_in.set_mode(Mode::Error500);
    let err = within(signer.sign(tx())).await.unwrap_err();
    assert!(matches!(err, SignerError::Http { status: 500, .. }), "{err:?}");
    assert!(err.is_transient());
    let err = within(signer.upcheck()).await.unwrap_err();
    assert!(matches!(err, SignerError::Http { status: 500, .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_key_is_permanent_http_404() {
    let stand_in = StandIn::start().await.unwrap();
    let cfg = Web3SignerConfig { key_id: format!("0x{}", "ab".repeat(64)), ..stand_in.config() };
    let err = within(Web3Signer::new(cfg).unwrap().sign(tx())).await.unwrap_err();
    assert!(matches!(err, SignerError::Http { status: 404, .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(stand_in.sign_requests(), 1);
}

#[tokio::test]
async fn base_url_with_path_prefix_and_trailing_slash() {
    let stand_in = StandIn::start().await.unwrap();
    let cfg = Web3SignerConfig { url: format!("{}/", stand_in.url()), ..stand_in.config() };
    within(Web3Signer::new(cfg).unwrap().sign(tx())).await.unwrap();

    let cfg = Web3SignerConfig { url: format!("{}/prefix/", stand_in.url()), ..stand_in.config() };
    let signer = Web3Signer::new(cfg).unwrap();
    assert_eq!(signer.sign_url.path(), format!("/prefix/api/v1/eth1/sign/{}", stand_in.identifier()));
    assert_eq!(signer.upcheck_url.path(), "/prefix/upcheck");
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tls").join(name)
}

/// A stand-in serving `testdata/tls/server.pem` and requiring a client certificate from the test CA.
async fn mtls_stand_in() -> StandIn {
    use tokio_rustls::rustls::{
        RootCertStore, ServerConfig,
        crypto::aws_lc_rs,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    };
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(testdata("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider)).build().unwrap();
    let chain = CertificateDer::pem_file_iter(testdata("server.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(testdata("server.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    StandIn::serve_tls(listener, alloy::signers::local::PrivateKeySigner::random(), Arc::new(config)).unwrap()
}

#[tokio::test]
async fn mutual_tls_signs() {
    let stand_in = mtls_stand_in().await;
    assert!(stand_in.url().starts_with("https://"));
    let cfg = Web3SignerConfig {
        tls_client_cert: Some(testdata("client.pem")),
        tls_ca: Some(testdata("ca.pem")),
        ..stand_in.config()
    };
    let signer = Web3Signer::new(cfg).unwrap();
    within(signer.upcheck()).await.unwrap();
    let signed = within(signer.sign(tx())).await.unwrap();
    assert_eq!(signed.recover_signer().unwrap(), stand_in.address());
    assert_eq!(stand_in.sign_requests(), 1);
}

#[tokio::test]
async fn tls_without_client_cert_or_trusted_ca_fails() {
    let stand_in = mtls_stand_in().await;
    let no_identity = Web3SignerConfig { tls_ca: Some(testdata("ca.pem")), ..stand_in.config() };
    let untrusted = Web3SignerConfig { tls_client_cert: Some(testdata("client.pem")), ..stand_in.config() };
    for cfg in [no_identity, untrusted] {
        let err = within(Web3Signer::new(cfg.clone()).unwrap().sign(tx())).await.unwrap_err();
        assert!(matches!(err, SignerError::Unreachable(_)), "{cfg:?}: {err:?}");
    }
    assert_eq!(stand_in.sign_requests(), 0);
}

#[test]
fn debug_and_errors_hide_url_credentials() {
    let cfg = Web3SignerConfig::new("https://user:hunter2@signer.example:9000", "0xabc", Address::ZERO);
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let signer = Web3Signer::new(cfg).unwrap();
    let dbg = format!(
        "{signer:?} {:?}",
        Signer::Web3(Web3Signer::new(Web3SignerConfig::new("http://u:hunter2@h:1", "0xabc", Address::ZERO)).unwrap())
    );
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("https://signer.example:9000") && dbg.contains("0xabc"), "{dbg}");
}

/// A secret in the base URL's path or query, as some hosted signers take an API key.
const SECRET_URL_TAIL: &str = "/key/SECRET123?apikey=SECRET456";

fn assert_no_url_secret(text: &str) {
    for secret in ["hunter2", "SECRET123", "SECRET456"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn debug_and_config_errors_hide_url_paths_and_queries() {
    let url = format!("http://user:hunter2@signer.example:9000{SECRET_URL_TAIL}");
    let cfg = Web3SignerConfig::new(url.clone(), "0xabc", Address::ZERO);
    let signer = Web3Signer::new(cfg.clone()).unwrap();
    let dbg = format!("{cfg:?} {signer:?}");
    assert_no_url_secret(&dbg);
    assert!(dbg.contains("http://signer.example:9000/…"), "{dbg}");
    // An error page that echoes the request path (a proxy in front of the signer).
    let echo = signer.http_error(reqwest::StatusCode::NOT_FOUND, "Cannot POST /key/SECRET123/api/v1/eth1/sign");
    assert_no_url_secret(&format!("{echo} {echo:?}"));
    let plain_with_tls = Web3SignerConfig { tls_ca: Some("/ca.pem".into()), ..cfg };
    let err = Web3Signer::new(plain_with_tls).unwrap_err().to_string();
    assert_no_url_secret(&err);
    assert!(err.contains("http://signer.example:9000/…"), "{err}");
}

#[tokio::test]
async fn unreachable_error_hides_url_credentials() {
    let stand_in = StandIn::start().await.unwrap();
    stand_in.set_mode(Mode::Down);
    let url = stand_in.url().replace("http://", "http://user:hunter2@");
    let signer = Web3Signer::new(Web3SignerConfig { url, ..stand_in.config() }).unwrap();
    let err = within(signer.sign(tx())).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn unreachable_errors_hide_url_paths_and_queries_and_keep_the_cause() {
    // Nothing listens on the port: connection refused, for upcheck and sign alike.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://user:hunter2@127.0.0.1:{port}{SECRET_URL_TAIL}");
    let signer = Web3Signer::new(Web3SignerConfig::new(url, "0xabc", Address::ZERO)).unwrap();
    for err in [within(signer.upcheck()).await.unwrap_err(), within(signer.sign(tx())).await.unwrap_err()] {
        let text = format!("{err} {err:?}");
        assert_no_url_secret(&text);
        assert!(matches!(err, SignerError::Unreachable(_)), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}/…")), "names the signer: {text}");
        assert!(text.to_lowercase().contains("connect"), "says why: {text}");
    }
    // The same through a stand-in that answers, under a path prefix that carries the secret.
    let stand_in = StandIn::start().await.unwrap();
    stand_in.set_mode(Mode::Down);
    let url = format!("{}{SECRET_URL_TAIL}", stand_in.url());
    let signer = Web3Signer::new(Web3SignerConfig { url, ..stand_in.config() }).unwrap();
    let err = within(signer.sign(tx())).await.unwrap_err();
    assert_no_url_secret(&format!("{err} {err:?}"));
}

#[test]
fn config_errors() {
    let ok = || Web3SignerConfig::new("http://127.0.0.1:1", "0xabc", Address::ZERO);
    for cfg in [
        Web3SignerConfig { url: "not a url".into(), ..ok() },
        Web3SignerConfig { url: "ftp://h:1".into(), ..ok() },
        Web3SignerConfig { key_id: " ".into(), ..ok() },
        Web3SignerConfig { timeout: Duration::ZERO, ..ok() },
        Web3SignerConfig { tls_ca: Some("/ca.pem".into()), ..ok() },
    ] {
        assert!(matches!(Web3Signer::new(cfg.clone()), Err(SignerError::Config(_))), "{cfg:?}");
    }
}

#[test]
fn bad_pem_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let bad_cert = dir.path().join("bad-cert.pem");
    std::fs::write(&bad_cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let https = || Web3SignerConfig::new("https://127.0.0.1:1", "0xabc", Address::ZERO);

    for (cfg, path) in [
        (Web3SignerConfig { tls_client_cert: Some(garbage.clone()), ..https() }, &garbage),
        (Web3SignerConfig { tls_client_cert: Some(bad_cert.clone()), ..https() }, &bad_cert),
        (Web3SignerConfig { tls_client_cert: Some(missing.clone()), ..https() }, &missing),
        (Web3SignerConfig { tls_ca: Some(garbage.clone()), ..https() }, &garbage),
        (Web3SignerConfig { tls_ca: Some(bad_cert.clone()), ..https() }, &bad_cert),
        (Web3SignerConfig { tls_ca: Some(missing.clone()), ..https() }, &missing),
    ] {
        let expected = if cfg.tls_ca.is_some() { TlsFile::Ca } else { TlsFile::ClientCert };
        match Web3Signer::new(cfg) {
            Err(e @ SignerError::TlsFile { file, .. }) => {
                assert_eq!(file, expected, "{e}");
                assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            }
            other => panic!("expected a TlsFile error for {}, got {other:?}", path.display()),
        }
    }
}

#[test]
fn parses_signatures_defensively() {
    let sig = |v: u8| format!("0x{}{}{v:02x}", "11".repeat(32), "22".repeat(32));
    let r = B256::repeat_byte(0x11);
    for (v, parity) in [(27, false), (28, true), (0, false), (1, true)] {
        let parsed = parse_signature(Some("text/plain"), &sig(v)).unwrap();
        assert_eq!((B256::from(parsed.r()), parsed.v()), (r, parity), "v = {v}");
    }
    assert!(parse_signature(Some("text/plain;charset=UTF-8"), &format!("{}\n", sig(27))).is_ok());
    assert!(parse_signature(Some("Text/Plain"), &sig(28)[2..]).is_ok());

    let bad = |ct: Option<&str>, body: &str| {
        let err = parse_signature(ct, body).unwrap_err();
        assert!(matches!(err, SignerError::BadResponse(_)), "{err:?}");
        assert!(!err.is_transient());
    };
    bad(Some("application/json"), &sig(27));
    bad(None, &sig(27));
    bad(Some("text/plain"), &sig(29));
    bad(Some("text/plain"), &sig(37));
    bad(Some("text/plain"), &sig(27)[..sig(27).len() - 2]);
    bad(Some("text/plain"), &format!("{}00", sig(27)));
    bad(Some("text/plain"), "0xzz");
    bad(Some("text/plain"), "");
}
