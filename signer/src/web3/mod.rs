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
mod tests;
