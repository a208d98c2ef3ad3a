//! Credentials at rest: a value an upstream rotated (a Salesforce refresh
//! token) is stored sealed with ChaCha20-Poly1305 (`ring`), never in clear.
//!
//! The key is `CHANNEL_SYNC__STATE__ENCRYPTION_KEY` (32 bytes as 64 hex
//! characters, e.g. `openssl rand -hex 32`) or, when that is not set, derived
//! with HKDF-SHA256 from the configured client secret. The credential's name
//! is the associated data, so a sealed value cannot be moved to another name.
//! A stored value reads `cs1:` + hex(nonce || ciphertext || tag).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of a sealed value (format version 1).
const SEALED: &str = "cs1:";
/// HKDF salt and info: fixed, so the same secret always gives the same key.
const SALT: &[u8] = b"channel-sync state credentials v1";
const INFO: &[u8] = b"credentials";

/// Why a stored credential cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the stored credential cannot be decrypted with the current key (was CHANNEL_SYNC__STATE__ENCRYPTION_KEY or the client secret changed?)"
    )]
    WrongKey,
    #[error("the stored credential is not in a known form")]
    Malformed,
    #[error("the system random generator failed")]
    Random,
}

/// The key credentials are sealed with. Never printed.
pub struct CredentialKey(LessSafeKey);

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(<redacted>)")
    }
}

impl CredentialKey {
    /// A key given as 64 hex characters (32 bytes).
    pub fn from_hex(text: &str) -> Result<CredentialKey, String> {
        let bytes = unhex(text.trim())
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                "not 64 hex characters (32 bytes); make one with `openssl rand -hex 32`".to_string()
            })?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| "not a usable ChaCha20-Poly1305 key".to_string())?;
        Ok(CredentialKey(LessSafeKey::new(key)))
    }

    /// A key derived from a secret the operator already keeps (the client
    /// secret), with HKDF-SHA256.
    pub fn derive(secret: &str) -> Result<CredentialKey, String> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret.as_bytes());
        let key: UnboundKey = prk
            .expand(&[INFO], &CHACHA20_POLY1305)
            .map(UnboundKey::from)
            .map_err(|_| "HKDF could not derive the key".to_string())?;
        Ok(CredentialKey(LessSafeKey::new(key)))
    }

    /// Seals `value` under `name` (the associated data).
    pub fn seal(&self, name: &str, value: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut data = value.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| CryptoError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(format!("{SEALED}{}", hex(&out)))
    }

    /// Opens a value sealed under `name`.
    pub fn open(&self, name: &str, stored: &str) -> Result<String, CryptoError> {
        let bytes = stored
            .strip_prefix(SEALED)
            .and_then(unhex)
            .filter(|b| b.len() >= NONCE_LEN)
            .ok_or(CryptoError::Malformed)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut sealed)
            .map_err(|_| CryptoError::WrongKey)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::Malformed)
    }
}

/// Whether a stored value is sealed (older versions stored it in clear).
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_value_opens_with_its_key_and_name_only() {
        let key = CredentialKey::from_hex(KEY).unwrap();
        let sealed = key.seal("rt", "token-123").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("token-123"));
        assert_ne!(sealed, key.seal("rt", "token-123").unwrap(), "fresh nonce");
        assert_eq!(key.open("rt", &sealed).unwrap(), "token-123");
        assert_eq!(key.open("other", &sealed), Err(CryptoError::WrongKey));
        let other = CredentialKey::derive("client-secret").unwrap();
        assert_eq!(other.open("rt", &sealed), Err(CryptoError::WrongKey));
        let same = CredentialKey::derive("client-secret").unwrap();
        let sealed = other.seal("rt", "x").unwrap();
        assert_eq!(
            same.open("rt", &sealed).unwrap(),
            "x",
            "derivation is stable"
        );
        assert_eq!(key.open("rt", "token-123"), Err(CryptoError::Malformed));
        assert_eq!(key.open("rt", "cs1:zz"), Err(CryptoError::Malformed));
    }

    #[test]
    fn a_key_must_be_64_hex_characters() {
        assert!(CredentialKey::from_hex(&KEY[2..]).is_err());
        assert!(CredentialKey::from_hex(&KEY.replace('0', "g")).is_err());
        assert!(CredentialKey::from_hex(&format!(" {KEY}\n")).is_ok());
        assert!(!format!("{:?}", CredentialKey::from_hex(KEY).unwrap()).contains("0001"));
    }
}
