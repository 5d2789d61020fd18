//! Sealed secrets (tokens, API keys) opened with the configured key. A failure names the
//! secret (which token, which source), never its value.

use crate::config;
use crate::error::{PullsyncError, Result};
use pullsync_core::crypto::SealingKey;

pub struct Secrets {
    key: SealingKey,
}

impl Secrets {
    /// The key from `pullsync.encryption_key_file`, read now.
    pub fn load() -> Result<Self> {
        Ok(Secrets {
            key: config::sealing_key()?,
        })
    }

    /// Opens `sealed`; `what` names it in the error.
    pub fn open(&self, sealed: &str, what: impl FnOnce() -> String) -> Result<String> {
        self.key
            .open(sealed)
            .map_err(|reason| PullsyncError::Unsealable {
                what: what(),
                reason,
            })
    }

    pub fn seal(&self, plain: &str) -> String {
        self.key.seal(plain)
    }

    pub fn key(&self) -> &SealingKey {
        &self.key
    }
}

/// Opens one secret with the configured key.
pub fn open(sealed: &str, what: impl FnOnce() -> String) -> Result<String> {
    Secrets::load()?.open(sealed, what)
}
