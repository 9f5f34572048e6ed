//! The remote backend: a Web3Signer reached over HTTP(S), through its eth1 signing API
//! (`POST /api/v1/eth1/sign/{identifier}` with `{"data": "0x…"}`, answered with the `0x` r‖s‖v
//! signature of `keccak256(data)`; `GET /upcheck` for health), as Consensys documents it at
//! <https://consensys.github.io/web3signer/web3signer-eth1.html>.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{
    consensus::{SignableTransaction, Signed, TxEip1559},
    hex,
    primitives::{Address, Signature},
};
use reqwest::{
    Url,
    header::{CONTENT_TYPE, HeaderValue},
};

use crate::{
    SignerError, TlsFile,
    redact::{UrlSecrets, error_chain as chain, redact_url, redact_url_str, reqwest_error},
    verify,
};

/// Default request timeout of [`Web3SignerConfig::new`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest response body kept in [`SignerError::Http`].
const MAX_ERROR_BODY: usize = 512;

/// How to reach a Web3Signer and which key to use.
#[derive(Clone)]
pub struct Web3SignerConfig {
    /// Base URL, `http(s)://host:port`, optionally with a path prefix. Credentials in the URL are
    /// sent as HTTP basic auth; only scheme, host and port are ever shown.
    pub url: String,
    /// The key identifier in the URL path: per Web3Signer, the `0x`-prefixed lower-case hex of the
    /// 64-byte uncompressed public key. Used as given.
    pub key_id: String,
    /// The address the key must sign for; every signature is checked against it.
    pub address: Address,
    /// Timeout for a whole request (connect, send, answer).
    pub timeout: Duration,
    /// PEM file with the client certificate chain and its private key, for mutual TLS.
    pub tls_client_cert: Option<PathBuf>,
    /// PEM CA bundle; when set, only these roots are trusted for the server certificate.
    pub tls_ca: Option<PathBuf>,
}

impl Web3SignerConfig {
    /// A plain configuration with a 10 s timeout and no TLS files.
    pub fn new(url: impl Into<String>, key_id: impl Into<String>, address: Address) -> Self {
        Self {
            url: url.into(),
            key_id: key_id.into(),
            address,
            timeout: DEFAULT_TIMEOUT,
            tls_client_cert: None,
            tls_ca: None,
        }
    }
}

impl fmt::Debug for Web3SignerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Web3SignerConfig")
            .field("url", &redact_url_str(&self.url))
            .field("key_id", &self.key_id)
            .field("address", &format_args!("{}", self.address))
            .field("timeout", &self.timeout)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

/// A client for one key on one Web3Signer.
pub struct Web3Signer {
    client: reqwest::Client,
    sign_url: Url,
    upcheck_url: Url,
    /// The base URL as scheme, host and port, for `Debug` and error messages.
    shown_url: String,
    /// What of the base URL an error or an answer must not show.
    secrets: UrlSecrets,
    key_id: String,
    address: Address,
    timeout: Duration,
}

impl fmt::Debug for Web3Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Web3Signer")
            .field("url", &self.shown_url)
            .field("key_id", &self.key_id)
            .field("address", &format_args!("{}", self.address))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Web3Signer {
    /// Validates the configuration and builds the HTTP client (timeout, TLS identity, CA roots).
    ///
    /// Does not contact the server; use [`Web3Signer::upcheck`] for that.
    pub fn new(cfg: Web3SignerConfig) -> Result<Self, SignerError> {
        // `url::ParseError`'s Display does not echo the input.
        let mut base = Url::parse(&cfg.url).map_err(|e| SignerError::Config(format!("invalid web3signer url: {e}")))?;
        let https = match base.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(SignerError::Config(format!("web3signer url scheme must be http or https, not {other}")));
            }
        };
        if !https && (cfg.tls_client_cert.is_some() || cfg.tls_ca.is_some()) {
            return Err(SignerError::Config(format!(
                "TLS files are configured but the web3signer url {} is plain http",
                redact_url(&base)
            )));
        }
        if cfg.key_id.trim().is_empty() {
            return Err(SignerError::Config("web3signer key id is empty".to_owned()));
        }
        if cfg.timeout.is_zero() {
            return Err(SignerError::Config("web3signer timeout must be positive".to_owned()));
        }
        let secrets = UrlSecrets::of(&base);
        base.set_query(None);
        base.set_fragment(None);
        let sign_url = with_segments(&base, &["api", "v1", "eth1", "sign", &cfg.key_id])?;
        let upcheck_url = with_segments(&base, &["upcheck"])?;

        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &cfg.tls_client_cert {
            let pem = read_tls_file(path, TlsFile::ClientCert)?;
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| tls_file(TlsFile::ClientCert, path, chain(&e)))?;
            builder = builder.identity(identity);
        }
        if let Some(path) = &cfg.tls_ca {
            let pem = read_tls_file(path, TlsFile::Ca)?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| tls_file(TlsFile::Ca, path, chain(&e)))?;
            if certs.is_empty() {
                return Err(tls_file(TlsFile::Ca, path, "no certificate found".to_owned()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| {
            let reason = format!("cannot build the HTTP client: {}", chain(&e));
            match (&cfg.tls_client_cert, &cfg.tls_ca) {
                // One file: it is the one at fault.
                (Some(path), None) => tls_file(TlsFile::ClientCert, path, reason),
                (None, Some(path)) => tls_file(TlsFile::Ca, path, reason),
                _ => {
                    let files = [(TlsFile::ClientCert, &cfg.tls_client_cert), (TlsFile::Ca, &cfg.tls_ca)]
                        .iter()
                        .filter_map(|(what, p)| p.as_ref().map(|p| format!(" {what} {}", p.display())))
                        .collect::<String>();
                    SignerError::Tls(format!("{reason} (TLS files:{files})"))
                }
            }
        })?;

        Ok(Self {
            client,
            sign_url,
            upcheck_url,
            shown_url: redact_url(&base),
            secrets,
            key_id: cfg.key_id,
            address: cfg.address,
            timeout: cfg.timeout,
        })
    }

    /// The address this key signs for.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The key identifier used in the URL.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `GET /upcheck`: `Ok` if the server answers `200` with body `OK`.
    pub async fn upcheck(&self) -> Result<(), SignerError> {
        let resp = self.client.get(self.upcheck_url.clone()).send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        let body = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(self.http_error(status, &body));
        }
        if body.trim() != "OK" {
            let body = self.secrets.scrub(&truncate(&body));
            return Err(SignerError::BadResponse(format!("upcheck answered {body:?}, expected \"OK\"")));
        }
        Ok(())
    }

    /// Signs an EIP-1559 transaction remotely and checks the signature recovers to
    /// [`Web3Signer::address`].
    pub async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, SignerError> {
        let payload = tx.encoded_for_signing();
        let body = serde_json::json!({ "data": hex::encode_prefixed(&payload) }).to_string();
        tracing::debug!(
            target: "signer",
            key_id = %self.key_id,
            chain_id = tx.chain_id,
            nonce = tx.nonce,
            "requesting web3signer signature"
        );
        let resp = self
            .client
            .post(self.sign_url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let content_type = resp.headers().get(CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        let body = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(self.http_error(status, &body));
        }
        let sig = parse_signature(content_type.as_deref(), &body)?;
        verify(tx, sig, self.address)
    }

    /// Maps a reqwest error: timeouts to [`SignerError::Timeout`], everything else that happened
    /// on the wire (connect refused, reset, closed early) to [`SignerError::Unreachable`].
    fn transport(&self, e: reqwest::Error) -> SignerError {
        if e.is_timeout() {
            SignerError::Timeout
        } else {
            // Without the URL: it may carry credentials. We name the redacted base instead.
            SignerError::Unreachable(format!("{}: {}", self.shown_url, self.secrets.scrub(&reqwest_error(e))))
        }
    }

    /// A non-success answer; its body may echo the request path, so it is scrubbed.
    fn http_error(&self, status: reqwest::StatusCode, body: &str) -> SignerError {
        SignerError::Http { status: status.as_u16(), body: self.secrets.scrub(&truncate(body)) }
    }
}

/// Parses Web3Signer's `text/plain` answer `0x` + hex(r ‖ s ‖ v), v ∈ {27, 28} (or {0, 1}).
fn parse_signature(content_type: Option<&str>, body: &str) -> Result<Signature, SignerError> {
    let mime = content_type.and_then(|ct| ct.split(';').next()).map(|m| m.trim().to_ascii_lowercase());
    if mime.as_deref() != Some("text/plain") {
        return Err(SignerError::BadResponse(format!(
            "content type {:?}, expected text/plain",
            content_type.unwrap_or("<none>")
        )));
    }
    let text = body.trim();
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(digits)
        .map_err(|e| SignerError::BadResponse(format!("signature is not hex ({e}): {:?}", truncate(text))))?;
    let Ok(raw) = <[u8; 65]>::try_from(bytes.as_slice()) else {
        return Err(SignerError::BadResponse(format!("signature is {} bytes, expected 65", bytes.len())));
    };
    let parity = match raw[64] {
        27 | 0 => false,
        28 | 1 => true,
        v => return Err(SignerError::BadResponse(format!("signature v = {v}, expected 27 or 28"))),
    };
    Ok(Signature::from_bytes_and_parity(&raw[..64], parity))
}

fn with_segments(base: &Url, segments: &[&str]) -> Result<Url, SignerError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| SignerError::Config(format!("web3signer url {} cannot be a base", redact_url(base))))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn read_tls_file(path: &Path, file: TlsFile) -> Result<Vec<u8>, SignerError> {
    std::fs::read(path).map_err(|e| tls_file(file, path, format!("cannot read it: {e}")))
}

fn tls_file(file: TlsFile, path: &Path, reason: String) -> SignerError {
    SignerError::TlsFile { file, path: path.to_owned(), reason }
}

/// At most [`MAX_ERROR_BODY`] bytes of `text` (on a char boundary), marked when cut.
fn truncate(text: &str) -> String {
    if text.len() <= MAX_ERROR_BODY {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
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
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider)).build().unwrap();
        let chain =
            CertificateDer::pem_file_iter(testdata("server.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
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
            Signer::Web3(
                Web3Signer::new(Web3SignerConfig::new("http://u:hunter2@h:1", "0xabc", Address::ZERO)).unwrap()
            )
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
}
