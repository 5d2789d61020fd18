//! Throttling of failed authentication per client address, decided on the HTTP thread
//! before a request costs a key lookup. Credentials accepted recently pass untouched, so a
//! flood of wrong keys from a consumer's own address does not lock the consumer out.
//! Pure: no pgrx here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A digest of (consumer id, API key) under a per-process secret: remembered instead of
/// the key itself.
pub type CredentialDigest = [u8; 32];

#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    /// Unproven attempts an address may have in flight or failed before it waits.
    pub burst: f64,
    /// How fast an address earns attempts back.
    pub refill_per_second: f64,
    /// How long an accepted credential passes without a token.
    pub remember_accepted: Duration,
    /// Entries kept per map before stale ones are dropped.
    pub max_entries: usize,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            burst: 20.0,
            refill_per_second: 0.5,
            remember_accepted: Duration::from_secs(3600),
            max_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What `admit` decided, to be handed back to `settle` with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A recently accepted credential: no token taken.
    Known,
    /// An unproven attempt: one token taken from the address.
    Charged,
}

#[derive(Debug)]
pub struct AuthThrottle {
    settings: ThrottleSettings,
    addresses: HashMap<IpAddr, Bucket>,
    accepted: HashMap<CredentialDigest, Instant>,
}

impl AuthThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        AuthThrottle {
            settings,
            addresses: HashMap::new(),
            accepted: HashMap::new(),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64()
            * self.settings.refill_per_second;
        Bucket {
            tokens: (bucket.tokens + earned).min(self.settings.burst),
            at: now,
        }
    }

    /// Lets a request through, or says how long its address must wait.
    pub fn admit(
        &mut self,
        address: IpAddr,
        credential: Option<&CredentialDigest>,
        now: Instant,
    ) -> Result<Admission, Duration> {
        if let Some(seen) = credential.and_then(|c| self.accepted.get(c)) {
            if now.saturating_duration_since(*seen) < self.settings.remember_accepted {
                return Ok(Admission::Known);
            }
        }
        self.prune(now);
        let full = Bucket {
            tokens: self.settings.burst,
            at: now,
        };
        let bucket = self.refilled(*self.addresses.get(&address).unwrap_or(&full), now);
        if bucket.tokens < 1.0 {
            self.addresses.insert(address, bucket);
            let missing = 1.0 - bucket.tokens;
            return Err(Duration::from_secs_f64(
                missing / self.settings.refill_per_second.max(f64::MIN_POSITIVE),
            ));
        }
        self.addresses.insert(
            address,
            Bucket {
                tokens: bucket.tokens - 1.0,
                ..bucket
            },
        );
        Ok(Admission::Charged)
    }

    /// Records the outcome: an accepted credential gives its token back and is remembered.
    pub fn settle(
        &mut self,
        address: IpAddr,
        credential: Option<&CredentialDigest>,
        admission: Admission,
        accepted: bool,
        now: Instant,
    ) {
        if !accepted {
            return;
        }
        if let Some(credential) = credential {
            self.accepted.insert(*credential, now);
        }
        if admission == Admission::Charged {
            if let Some(bucket) = self.addresses.get(&address).copied() {
                let mut bucket = self.refilled(bucket, now);
                bucket.tokens = (bucket.tokens + 1.0).min(self.settings.burst);
                self.addresses.insert(address, bucket);
            }
        }
    }

    /// Keeps both maps bounded: full buckets and expired credentials carry no state.
    fn prune(&mut self, now: Instant) {
        if self.addresses.len() >= self.settings.max_entries {
            let settings = self.settings;
            self.addresses.retain(|_, b| {
                let earned =
                    now.saturating_duration_since(b.at).as_secs_f64() * settings.refill_per_second;
                b.tokens + earned < settings.burst
            });
        }
        if self.accepted.len() >= self.settings.max_entries {
            let keep = self.settings.remember_accepted;
            self.accepted
                .retain(|_, seen| now.saturating_duration_since(*seen) < keep);
        }
        // Still full: a flood of distinct addresses. Forgetting them is safe, merely lenient.
        if self.addresses.len() >= self.settings.max_entries {
            self.addresses.clear();
        }
        if self.accepted.len() >= self.settings.max_entries {
            self.accepted.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn throttle() -> AuthThrottle {
        AuthThrottle::new(ThrottleSettings {
            burst: 3.0,
            refill_per_second: 1.0,
            remember_accepted: Duration::from_secs(60),
            max_entries: 100,
        })
    }

    #[test]
    fn an_address_that_keeps_failing_waits() {
        let mut t = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            let a = t.admit(ip(2), None, now).unwrap();
            t.settle(ip(2), None, a, false, now);
        }
        let wait = t.admit(ip(2), None, now).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Other addresses are not affected; the address earns attempts back.
        assert!(t.admit(ip(3), None, now).is_ok());
        assert!(t.admit(ip(2), None, now + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_known_credential_passes_a_throttled_address() {
        let mut t = throttle();
        let now = Instant::now();
        let good = [7u8; 32];
        let a = t.admit(ip(1), Some(&good), now).unwrap();
        t.settle(ip(1), Some(&good), a, true, now);
        for _ in 0..10 {
            if let Ok(a) = t.admit(ip(1), Some(&[9u8; 32]), now) {
                t.settle(ip(1), Some(&[9u8; 32]), a, false, now);
            }
        }
        assert!(t.admit(ip(1), Some(&[9u8; 32]), now).is_err());
        assert_eq!(t.admit(ip(1), Some(&good), now), Ok(Admission::Known));
        // Remembered for a while only: later it pays like any attempt.
        assert_eq!(
            t.admit(ip(1), Some(&good), now + Duration::from_secs(61)),
            Ok(Admission::Charged)
        );
    }

    #[test]
    fn accepted_attempts_give_their_token_back() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 0..10u8 {
            let credential = [i; 32];
            let a = t.admit(ip(1), Some(&credential), now).unwrap();
            assert_eq!(a, Admission::Charged);
            t.settle(ip(1), Some(&credential), a, true, now);
        }
    }

    #[test]
    fn many_addresses_stay_bounded() {
        let mut t = throttle();
        let now = Instant::now();
        for i in 0..1000u32 {
            let address = IpAddr::from(i.to_be_bytes());
            let a = t.admit(address, None, now).unwrap();
            t.settle(address, None, a, false, now);
            assert!(t.addresses.len() <= 100);
        }
    }
}
