//! HS256 JSON Web Tokens for the admin methods, as the Engine API does it: a 32-byte secret in a
//! hex file shared with the caller, a token per request in `Authorization: Bearer <jwt>`, and an
//! `iat` claim within [`MAX_CLOCK_DRIFT_SECS`] of our clock, so a captured token expires.

use std::path::Path;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `iat` may be from our clock, either way (the Engine API's 60 seconds).
pub const MAX_CLOCK_DRIFT_SECS: u64 = 60;

/// The shared secret. `Debug` never shows it.
#[derive(Clone)]
pub struct JwtSecret([u8; 32]);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

/// Why a token was refused; the message goes back to the caller.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// No `Authorization: Bearer` header.
    #[error("missing `Authorization: Bearer <jwt>` header")]
    Missing,
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not HS256.
    #[error("unsupported algorithm {0:?}: only HS256")]
    Algorithm(String),
    /// The signature does not match the secret.
    #[error("invalid signature")]
    Signature,
    /// `iat` is missing or too far from now.
    #[error("token issued at {iat}, now is {now}: must be within {MAX_CLOCK_DRIFT_SECS} s")]
    Stale {
        /// The claim.
        iat: u64,
        /// Our clock.
        now: u64,
    },
}

impl JwtSecret {
    /// Reads a secret file: 64 hex digits, optionally `0x`-prefixed, surrounding whitespace ignored.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_hex(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_hex(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        let bytes = alloy::hex::decode(digits).map_err(|_| "not hex".to_owned())?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("{} bytes; a JWT secret is 32 bytes (64 hex digits)", b.len()))?;
        Ok(Self(secret))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// A token issued at `iat` (seconds since the epoch).
    pub fn token(&self, iat: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{iat}}}"#));
        let signing_input = format!("{header}.{claims}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Checks a token at time `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<(), JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected header.claims.signature"));
        };
        let json = |part: &str| -> Result<serde_json::Value, JwtError> {
            let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed("not base64url"))?;
            serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed("not JSON"))
        };
        let alg = json(header)?.get("alg").and_then(|a| a.as_str()).unwrap_or_default().to_owned();
        if alg != "HS256" {
            return Err(JwtError::Algorithm(alg));
        }
        let signature =
            URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed("signature not base64url"))?;
        let mut mac = self.mac();
        mac.update(format!("{header}.{claims}").as_bytes());
        mac.verify_slice(&signature).map_err(|_| JwtError::Signature)?;
        let iat =
            json(claims)?.get("iat").and_then(|i| i.as_u64()).ok_or(JwtError::Malformed("no numeric iat claim"))?;
        if iat.abs_diff(now) > MAX_CLOCK_DRIFT_SECS {
            return Err(JwtError::Stale { iat, now });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> JwtSecret {
        JwtSecret([byte; 32])
    }

    #[test]
    fn accepts_its_own_tokens_within_the_drift_and_nothing_else() {
        let s = secret(7);
        assert_eq!(s.verify(&s.token(1_000), 1_000), Ok(()));
        assert_eq!(s.verify(&s.token(1_000), 1_060), Ok(()));
        assert_eq!(s.verify(&s.token(1_000), 940), Ok(()));
        assert_eq!(s.verify(&s.token(1_000), 1_061), Err(JwtError::Stale { iat: 1_000, now: 1_061 }));
        assert_eq!(secret(8).verify(&s.token(1_000), 1_000), Err(JwtError::Signature));
        assert!(matches!(s.verify("a.b", 0), Err(JwtError::Malformed(_))));
        assert!(matches!(s.verify("!!.!!.!!", 0), Err(JwtError::Malformed(_))));
        // A token whose header says "none" is refused even with an empty signature.
        let none =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(br#"{"iat":1000}"#));
        assert_eq!(s.verify(&none, 1_000), Err(JwtError::Algorithm("none".into())));
        // A tampered claim breaks the signature.
        let token = s.token(1_000);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"iat":2000}"#);
        parts[1] = &forged;
        assert_eq!(s.verify(&parts.join("."), 2_000), Err(JwtError::Signature));
    }

    #[test]
    fn secret_files_are_64_hex_digits() {
        assert!(JwtSecret::from_hex(&"ab".repeat(32)).is_ok());
        assert!(JwtSecret::from_hex(&format!("0x{}", "ab".repeat(32))).is_ok());
        assert!(JwtSecret::from_hex(&"ab".repeat(31)).unwrap_err().contains("31 bytes"));
        assert!(JwtSecret::from_hex("zz").is_err());
        assert_eq!(format!("{:?}", secret(1)), "JwtSecret(..)");
    }
}
