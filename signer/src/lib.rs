//! Transaction signers for rollup-supervisor.
//!
//! The supervisor signs one kind of transaction — EIP-1559 calls that report sequencer downtime
//! on L1 — and this crate hides where the key lives behind [`Signer`], the value the
//! `SignerActor` holds. Two backends:
//!
//! - [`LocalKey`]: a secp256k1 private key in process memory (alloy's `PrivateKeySigner`), loaded
//!   from hex, a file or an environment variable. Meant for development and test networks.
//! - [`Web3Signer`]: a remote [Web3Signer](https://docs.web3signer.consensys.io/) reached over
//!   HTTP(S), optionally with mutual TLS. The full unsigned EIP-1559 payload
//!   (`0x02 ‖ rlp(...)`) is posted to `/api/v1/eth1/sign/{key_id}`; the `r ‖ s ‖ v` answer is
//!   turned into an alloy `Signature`.
//!
//! Whatever the backend, [`Signer::sign`] checks that the signature recovers to the configured
//! address before handing it out ([`SignerError::WrongSigner`] otherwise), so a misrouted key id
//! or a confused remote cannot make the supervisor broadcast a transaction from the wrong account.
//! [`SignerError::is_transient`] tells the caller whether a retry can help.
//!
//! No secret ever reaches a `Debug` output, an error message or a log line: `LocalKey` prints only
//! its address, and URLs are shown as scheme, host and port only ([`redact`], the project's one
//! URL redactor, which the other crates use too).
//!
//! # Feature flags
//!
//! - `test-utils`: the `test_utils` module, an in-process Web3Signer stand-in (tokio, port 0)
//!   with failure modes for other crates' tests, and `LocalKey::random`. The crate's own unit tests
//!   always have it.

mod error;
mod local;
pub mod redact;
mod web3;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

use alloy::{
    consensus::{SignableTransaction, Signed, TxEip1559},
    primitives::{Address, Signature},
};

pub use error::{SignerError, TlsFile};
pub use local::LocalKey;
pub use web3::{Web3Signer, Web3SignerConfig};

/// A transaction signer: one of the two backends.
#[derive(Debug)]
pub enum Signer {
    /// A private key held in memory.
    Local(LocalKey),
    /// A remote Web3Signer.
    Web3(Web3Signer),
}

impl Signer {
    /// The address transactions are signed for.
    pub fn address(&self) -> Address {
        match self {
            Self::Local(key) => key.address(),
            Self::Web3(remote) => remote.address(),
        }
    }

    /// Signs an EIP-1559 transaction.
    ///
    /// The result is verified: its signature recovers to [`Signer::address`], else
    /// [`SignerError::WrongSigner`].
    pub async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, SignerError> {
        match self {
            Self::Local(key) => key.sign(tx),
            Self::Web3(remote) => remote.sign(tx).await,
        }
    }

    /// Health probe: always `Ok` for a local key; `GET /upcheck` must answer `200 OK` for Web3Signer.
    pub async fn probe(&self) -> Result<(), SignerError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Web3(remote) => remote.upcheck().await,
        }
    }
}

impl From<LocalKey> for Signer {
    fn from(key: LocalKey) -> Self {
        Self::Local(key)
    }
}

impl From<Web3Signer> for Signer {
    fn from(remote: Web3Signer) -> Self {
        Self::Web3(remote)
    }
}

/// Attaches `sig` to `tx` after checking that it recovers to `expected`.
///
/// High-`s` signatures are normalized to low-`s` (EIP-2) first; that keeps the signer unchanged.
fn verify(tx: TxEip1559, sig: Signature, expected: Address) -> Result<Signed<TxEip1559>, SignerError> {
    let sig = sig.normalized_s();
    let recovered = sig
        .recover_address_from_prehash(&tx.signature_hash())
        .map_err(|e| SignerError::BadResponse(format!("signature does not recover to any key: {e}")))?;
    if recovered != expected {
        return Err(SignerError::WrongSigner { expected, recovered });
    }
    Ok(tx.into_signed(sig))
}

#[cfg(test)]
mod tests {
    use alloy::signers::{SignerSync, local::PrivateKeySigner};

    use super::*;
    use crate::local::tests::tx;

    #[tokio::test]
    async fn local_signer_signs_and_probes() {
        let key = LocalKey::random();
        let signer = Signer::from(key.clone());
        assert_eq!(signer.address(), key.address());
        signer.probe().await.unwrap();
        let signed = signer.sign(tx()).await.unwrap();
        assert_eq!(signed.recover_signer().unwrap(), key.address());
    }

    #[test]
    fn verify_refuses_other_signer_and_normalizes_high_s() {
        let a = PrivateKeySigner::random();
        let b = PrivateKeySigner::random();
        let sig = a.sign_hash_sync(&tx().signature_hash()).unwrap();
        match verify(tx(), sig, b.address()) {
            Err(SignerError::WrongSigner { expected, recovered }) => {
                assert_eq!((expected, recovered), (b.address(), a.address()));
            }
            other => panic!("expected WrongSigner, got {other:?}"),
        }

        // The same signature in high-s form (s' = n - s, parity flipped) is accepted and normalized.
        let n = alloy::primitives::U256::from_be_slice(
            &alloy::hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").unwrap(),
        );
        let high = Signature::new(sig.r(), n - sig.s(), !sig.v());
        let signed = verify(tx(), high, a.address()).unwrap();
        assert_eq!(*signed.signature(), sig);
    }
}
