//! The crate's error type.

use std::path::PathBuf;

use alloy::primitives::Address;

/// Which TLS file of a [`Web3SignerConfig`](crate::Web3SignerConfig).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// `tls_client_cert`: the PEM client certificate chain and key, for mutual TLS.
    ClientCert,
    /// `tls_ca`: the PEM CA bundle trusted for the server certificate.
    Ca,
}

impl TlsFile {
    /// The configuration field that names the file (`tls_client_cert`, `tls_ca`).
    pub fn field(self) -> &'static str {
        match self {
            Self::ClientCert => "tls_client_cert",
            Self::Ca => "tls_ca",
        }
    }
}

impl std::fmt::Display for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ClientCert => "client certificate",
            Self::Ca => "CA bundle",
        })
    }
}

/// Everything that can go wrong while loading a key, talking to Web3Signer or checking a signature.
///
/// No variant ever carries key material: key errors name the source (file path, variable) only.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The private key could not be loaded or is not a valid secp256k1 key.
    #[error("signing key: {0}")]
    Key(String),
    /// The signer configuration is unusable (bad URL, TLS options on a plain-HTTP URL, ...).
    #[error("signer configuration: {0}")]
    Config(String),
    /// A TLS file (client identity, CA bundle) could not be read or parsed.
    #[error("tls: {file} {}: {reason}", path.display())]
    TlsFile {
        /// Which file.
        file: TlsFile,
        /// Where it was looked for.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS client could not be built from the files (they parse, but do not fit together).
    #[error("tls: {0}")]
    Tls(String),
    /// The remote signer could not be reached, or the connection broke before an answer arrived.
    #[error("remote signer unreachable: {0}")]
    Unreachable(String),
    /// The remote signer did not answer within the configured timeout.
    #[error("remote signer timed out")]
    Timeout,
    /// The remote signer answered with a non-success HTTP status.
    #[error("remote signer answered HTTP {status}: {body}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The remote signer answered 200 but with something that is not a signature.
    #[error("remote signer sent a bad response: {0}")]
    BadResponse(String),
    /// The signature is valid but recovers to a different address than the configured one.
    #[error("signature recovers to {recovered}, expected {expected}")]
    WrongSigner {
        /// The address the signer is configured for.
        expected: Address,
        /// The address the signature actually recovers to.
        recovered: Address,
    },
}

impl SignerError {
    /// Whether retrying the same request later may succeed.
    ///
    /// Unreachable, timeouts, 5xx, 408 and 429 are transient. Client errors (400 bad data,
    /// 404 unknown key), bad responses, a wrong signer and configuration/key/TLS errors are
    /// not: retrying would give the same answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout => true,
            Self::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Key(_)
            | Self::Config(_)
            | Self::TlsFile { .. }
            | Self::Tls(_)
            | Self::BadResponse(_)
            | Self::WrongSigner { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transience() {
        assert!(SignerError::Timeout.is_transient());
        assert!(SignerError::Unreachable("x".into()).is_transient());
        assert!(SignerError::Http { status: 500, body: String::new() }.is_transient());
        assert!(SignerError::Http { status: 503, body: String::new() }.is_transient());
        assert!(SignerError::Http { status: 429, body: String::new() }.is_transient());
        assert!(!SignerError::Http { status: 400, body: String::new() }.is_transient());
        assert!(!SignerError::Http { status: 404, body: String::new() }.is_transient());
        assert!(!SignerError::Key("x".into()).is_transient());
        assert!(!SignerError::BadResponse("x".into()).is_transient());
        assert!(
            !SignerError::WrongSigner { expected: Address::ZERO, recovered: Address::repeat_byte(1) }.is_transient()
        );
    }
}
