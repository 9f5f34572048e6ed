//! The local backend: a secp256k1 private key held in process memory.

use std::{ffi::OsString, fmt, path::Path};

use alloy::{
    consensus::{SignableTransaction, Signed, TxEip1559},
    primitives::{Address, B256},
    signers::{SignerSync, local::PrivateKeySigner},
};

use crate::{SignerError, verify};

/// A private key held in memory (alloy's [`PrivateKeySigner`]).
///
/// `Debug` prints only the address; the key never appears in `Debug`, `Display` or error output.
#[derive(Clone)]
pub struct LocalKey {
    inner: PrivateKeySigner,
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").field("address", &format_args!("{}", self.inner.address())).finish()
    }
}

impl LocalKey {
    /// Parses a hex private key: `0x`-prefixed or bare, 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(secret: &str) -> Result<Self, SignerError> {
        parse_hex(secret).map_err(|reason| SignerError::Key(format!("invalid private key: {reason}")))
    }

    /// Reads a hex private key (same format as [`LocalKey::from_hex`]) from a file.
    pub fn from_file(path: &Path) -> Result<Self, SignerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SignerError::Key(format!("cannot read key file {}: {}", path.display(), e.kind())))?;
        parse_hex(&text)
            .map_err(|reason| SignerError::Key(format!("key file {}: invalid private key: {reason}", path.display())))
    }

    /// Reads a hex private key (same format as [`LocalKey::from_hex`]) from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, SignerError> {
        from_var(var, std::env::var_os(var))
    }

    /// A fresh random key, for tests.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn random() -> Self {
        Self { inner: PrivateKeySigner::random() }
    }

    /// The key's Ethereum address.
    pub fn address(&self) -> Address {
        self.inner.address()
    }

    /// Signs an EIP-1559 transaction and checks that the signature recovers to [`LocalKey::address`].
    pub fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, SignerError> {
        let hash = tx.signature_hash();
        // k256 signing with a valid key and a 32-byte prehash does not fail in practice; map it anyway.
        let sig = self.inner.sign_hash_sync(&hash).map_err(|e| SignerError::Key(format!("signing failed: {e}")))?;
        verify(tx, sig, self.address())
    }

    /// The underlying alloy signer.
    pub fn as_private_key_signer(&self) -> &PrivateKeySigner {
        &self.inner
    }
}

impl From<PrivateKeySigner> for LocalKey {
    fn from(inner: PrivateKeySigner) -> Self {
        Self { inner }
    }
}

/// The `from_env` logic with the variable's value passed in, so it can be tested without `set_var`
/// (which is `unsafe` in edition 2024).
fn from_var(var: &str, value: Option<OsString>) -> Result<LocalKey, SignerError> {
    let value = value.ok_or_else(|| SignerError::Key(format!("environment variable {var} is not set")))?;
    // Not `VarError`'s Display: for non-unicode values it prints the value.
    let text = value
        .to_str()
        .ok_or_else(|| SignerError::Key(format!("environment variable {var}: invalid private key: not valid UTF-8")))?;
    parse_hex(text)
        .map_err(|reason| SignerError::Key(format!("environment variable {var}: invalid private key: {reason}")))
}

/// Parses the key; the error is a fixed description that never contains input characters.
fn parse_hex(secret: &str) -> Result<LocalKey, &'static str> {
    let s = secret.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() != 64 {
        return Err("expected 64 hex digits");
    }
    let mut bytes = [0u8; 32];
    alloy::hex::decode_to_slice(s, &mut bytes).map_err(|_| "not hex")?;
    let key = B256::from(bytes);
    bytes.fill(0);
    PrivateKeySigner::from_bytes(&key).map(LocalKey::from).map_err(|_| "not a valid secp256k1 scalar (zero or >= n)")
}

#[cfg(test)]
pub(crate) mod tests {
    use alloy::primitives::{TxKind, U256};

    use super::*;

    // Well-known anvil key #0; any fixed key works.
    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ADDR: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    pub(crate) fn tx() -> TxEip1559 {
        TxEip1559 {
            chain_id: 1,
            nonce: 7,
            gas_limit: 21_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(0x11)),
            value: U256::from(12_345u64),
            input: vec![0xde, 0xad].into(),
            access_list: Default::default(),
        }
    }

    /// The signed transaction's EIP-2718 encoding decodes back to the same transaction and hash.
    pub(crate) fn assert_round_trips(signed: &Signed<TxEip1559>) {
        let mut buf = Vec::new();
        signed.eip2718_encode(&mut buf);
        assert_eq!(buf[0], 0x02);
        let decoded = Signed::<TxEip1559>::eip2718_decode(&mut buf.as_slice()).unwrap();
        assert_eq!(decoded.tx(), signed.tx());
        assert_eq!(decoded.signature(), signed.signature());
        assert_eq!(decoded.hash(), signed.hash());
    }

    #[test]
    fn parses_prefixed_bare_and_padded() {
        let expected: Address = ADDR.parse().unwrap();
        for s in [KEY.to_owned(), format!("0x{KEY}"), format!("  0x{KEY}\n"), format!("0X{}", KEY.to_uppercase())] {
            assert_eq!(LocalKey::from_hex(&s).unwrap().address(), expected, "{s:?}");
        }
    }

    #[test]
    fn rejects_bad_keys_without_echoing_them() {
        let zero = "0".repeat(64);
        let too_big = "f".repeat(64);
        let not_hex = format!("{}zz", &KEY[..62]);
        let short = &KEY[..63];
        for bad in ["", "0x", short, &not_hex, &zero, &too_big] {
            let err = LocalKey::from_hex(bad).unwrap_err();
            assert!(matches!(err, SignerError::Key(_)));
            let msg = format!("{err} {err:?}");
            if bad.len() > 4 {
                assert!(!msg.contains(&bad[2..]), "{msg}");
            }
        }
    }

    #[test]
    fn local_signature_recovers_to_address() {
        let key = LocalKey::from_hex(KEY).unwrap();
        let signed = key.sign(tx()).unwrap();
        assert_eq!(signed.recover_signer().unwrap(), key.address());
        assert_round_trips(&signed);
    }

    #[test]
    fn debug_has_no_secret() {
        let key = LocalKey::from_hex(KEY).unwrap();
        let dbg = format!("{key:?} {:?}", crate::Signer::Local(key.clone()));
        assert!(!dbg.to_lowercase().contains(KEY), "{dbg}");
        assert!(dbg.contains("address"));
        assert_eq!(format!("{key:?}"), format!("LocalKey {{ address: {ADDR} }}"));
    }

    #[test]
    fn from_file_ok_and_errors_name_path_not_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("key.hex");
        std::fs::write(&good, format!("0x{KEY}\n")).unwrap();
        assert_eq!(LocalKey::from_file(&good).unwrap().address(), ADDR.parse::<Address>().unwrap());

        // One digit short of a key: the content is secret-like and must not be echoed.
        let bad = dir.path().join("bad.hex");
        std::fs::write(&bad, &KEY[..63]).unwrap();
        let msg = LocalKey::from_file(&bad).unwrap_err().to_string();
        assert!(msg.contains(&bad.display().to_string()), "{msg}");
        assert!(!msg.contains(&KEY[..63]), "{msg}");

        let missing = dir.path().join("missing.hex");
        let msg = LocalKey::from_file(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing.hex"), "{msg}");
    }

    #[test]
    fn from_env_errors_name_variable_not_key() {
        let var = "ROLLUP_SUPERVISOR_SIGNER_TEST_SURELY_UNSET_VAR";
        let msg = LocalKey::from_env(var).unwrap_err().to_string();
        assert!(msg.contains(var) && msg.contains("not set"), "{msg}");

        let ok = from_var("K", Some(OsString::from(format!("0x{KEY}")))).unwrap();
        assert_eq!(ok.address(), ADDR.parse::<Address>().unwrap());

        let bad = format!("{}g", &KEY[..63]);
        let msg = from_var("SIGNER_KEY", Some(OsString::from(bad.clone()))).unwrap_err().to_string();
        assert!(msg.contains("SIGNER_KEY"), "{msg}");
        assert!(!msg.contains(&bad[..63]), "{msg}");
    }
}
