//! Failed-authentication throttling per device: after `limit` failures with no
//! success in between, new sessions of that device are refused (HTTP 429) until
//! `lockout` has passed since its last failure. Kept in this instance's memory and
//! only for enrolled devices (an unknown DevId never gets as far as a challenge), so
//! it stays bounded; each instance of several counts on its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct AuthThrottle {
    /// Failures that lock a device out; 0 turns throttling off.
    limit: u32,
    lockout: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl AuthThrottle {
    pub fn new(limit: u32, lockout: Duration) -> AuthThrottle {
        AuthThrottle {
            limit,
            lockout,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How much longer `dev_id` is locked out at `now`, if it is.
    pub fn locked_for(&self, dev_id: &str, now: Instant) -> Option<Duration> {
        let failures = *self.lock().get(dev_id)?;
        let until = failures.last + self.lockout;
        (self.limit > 0 && failures.count >= self.limit && now < until).then(|| until - now)
    }

    /// Counts a failure; returns true when it is the one that locks the device out.
    pub fn failed(&self, dev_id: &str, now: Instant) -> bool {
        let mut all = self.lock();
        let failures = all.entry(dev_id.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        // Failures further apart than the lockout do not add up.
        if now.saturating_duration_since(failures.last) > self.lockout {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        self.limit > 0 && failures.count == self.limit
    }

    /// The device proved who it is: its failures are forgotten.
    pub fn succeeded(&self, dev_id: &str) {
        self.lock().remove(dev_id);
    }

    /// Drops what no longer counts at `now`.
    pub fn forget_expired(&self, now: Instant) {
        self.lock()
            .retain(|_, failures| now.saturating_duration_since(failures.last) <= self.lockout);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // Counts left half-updated by a panic elsewhere are still counts.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_locked_out_after_the_limit_until_the_lockout_passes() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!throttle.failed("IMEI:1", t0));
        assert!(!throttle.failed("IMEI:1", t0 + Duration::from_secs(1)));
        assert_eq!(throttle.locked_for("IMEI:1", t0), None);
        assert!(throttle.failed("IMEI:1", t0 + Duration::from_secs(2)));
        assert_eq!(
            throttle.locked_for("IMEI:1", t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(throttle.locked_for("IMEI:2", t0), None, "per device");
        assert_eq!(
            throttle.locked_for("IMEI:1", t0 + Duration::from_secs(62)),
            None
        );
    }

    #[test]
    fn a_success_or_a_long_pause_starts_the_count_again() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        throttle.failed("IMEI:1", t0);
        throttle.succeeded("IMEI:1");
        assert!(!throttle.failed("IMEI:1", t0));
        assert!(!throttle.failed("IMEI:1", t0 + Duration::from_secs(120)));
        assert_eq!(
            throttle.locked_for("IMEI:1", t0 + Duration::from_secs(120)),
            None
        );
        throttle.forget_expired(t0 + Duration::from_secs(500));
        assert!(throttle.lock().is_empty());
    }

    #[test]
    fn a_limit_of_zero_never_locks_out() {
        let throttle = AuthThrottle::new(0, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(!throttle.failed("IMEI:1", t0));
        }
        assert_eq!(throttle.locked_for("IMEI:1", t0), None);
    }
}
