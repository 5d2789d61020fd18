//! Sealing of secrets (API tokens, feed API keys) with AES-256-GCM.
//!
//! Sealed text is `v1:` + base64(nonce ‖ ciphertext ‖ tag). The version prefix lets a
//! later format or key rotation coexist with rows sealed today. Pure: no pgrx here.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the encryption key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("sealed value is not in the v1 format")]
    BadFormat,
    #[error("sealed value does not open with the configured key")]
    WrongKeyOrTampered,
}

/// A 256-bit key. Its Debug output never shows the key bytes.
#[derive(Clone)]
pub struct SealingKey {
    cipher: Aes256Gcm,
    raw: [u8; 32],
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// Parses base64 (standard alphabet, padding optional, surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let trimmed = text.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .map_err(|_| CryptoError::BadKey)?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(SealingKey {
            cipher: Aes256Gcm::new(&raw.into()),
            raw,
        })
    }

    /// A fresh random key in the text form `from_base64` accepts.
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(blob))
    }

    /// A separate key for another purpose (e.g. signing cursors), derived with
    /// HMAC-SHA256 so the sealing key itself is never used twice.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.raw)
            .expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Opens `sealed` and seals it again under `to`: what key rotation does to each value.
    pub fn reseal(&self, sealed: &str, to: &SealingKey) -> Result<String, CryptoError> {
        Ok(to.seal(&self.open(sealed)?))
    }

    pub fn is_same_key(&self, other: &SealingKey) -> bool {
        self.raw == other.raw
    }

    pub fn open(&self, sealed: &str) -> Result<String, CryptoError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CryptoError::BadFormat)?;
        let blob = STANDARD.decode(body).map_err(|_| CryptoError::BadFormat)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::BadFormat);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::WrongKeyOrTampered)?;
        String::from_utf8(plain).map_err(|_| CryptoError::WrongKeyOrTampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_base64(&SealingKey::generate_base64()).unwrap()
    }

    #[test]
    fn reseal_moves_a_value_to_the_new_key_only() {
        let (old, new) = (key(), key());
        let sealed = old.seal("THAAsecret");
        let moved = old.reseal(&sealed, &new).unwrap();
        assert_eq!(new.open(&moved).unwrap(), "THAAsecret");
        assert!(old.open(&moved).is_err());
        assert!(
            new.reseal(&sealed, &old).is_err(),
            "only the sealing key opens a value"
        );
        assert!(old.is_same_key(&old.clone()) && !old.is_same_key(&new));
    }

    #[test]
    fn round_trip() {
        let k = key();
        let sealed = k.seal("THAAsecret-token-123");
        assert_eq!(k.open(&sealed).unwrap(), "THAAsecret-token-123");
    }

    #[test]
    fn two_seals_differ_and_hide_the_plaintext() {
        let k = key();
        let a = k.seal("THAAsecret");
        let b = k.seal("THAAsecret");
        assert_ne!(a, b);
        assert!(a.starts_with("v1:"));
        assert!(!a.contains("THAAsecret") && !b.contains("THAAsecret"));
    }

    #[test]
    fn wrong_key_and_tampering_fail_cleanly() {
        let sealed = key().seal("token");
        assert_eq!(key().open(&sealed), Err(CryptoError::WrongKeyOrTampered));
        assert_eq!(key().open("token"), Err(CryptoError::BadFormat));
        assert_eq!(key().open("v1:!!!"), Err(CryptoError::BadFormat));
        assert_eq!(key().open("v1:AAAA"), Err(CryptoError::BadFormat));
        let k = key();
        let mut tampered = k.seal("token").into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(k.open(&tampered).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert_eq!(
            SealingKey::from_base64("c2hvcnQ=").unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            SealingKey::from_base64("not base64 at all").unwrap_err(),
            CryptoError::BadKey
        );
        let text = SealingKey::generate_base64();
        assert!(SealingKey::from_base64(&format!("  {text}\n")).is_ok());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_are_stable() {
        let k = key();
        assert_eq!(k.derive("cursor"), k.derive("cursor"));
        assert_ne!(k.derive("cursor"), k.derive("other"));
        assert_ne!(k.derive("cursor"), k.raw);
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key()), "SealingKey(..)");
    }
}
