//! Throttling of wrong credentials, so that guessing a device's secret is slow and a
//! stranger cannot lock the real device out. Failures are counted per source address
//! and device, and per source address over all devices; never per device alone. Past
//! `limit` failures with no success in between, that source's new sessions for that
//! device wait (HTTP 429): 1 s, then twice as long at each further failure, up to
//! `max_pause`. A source gets ten times `limit` over all devices before all its new
//! sessions wait the same way. Kept in this instance's memory, bounded to
//! [`MAX_TRACKED`] entries (past it new sources are not tracked: they still face the
//! credentials, which are the real defence); each instance of several counts on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most: a DevId is at most 256 bytes, so well under 100 MB.
pub const MAX_TRACKED: usize = 100_000;

/// How many times `limit` a source may fail over all devices.
const SOURCE_FACTOR: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    SourceDevice(IpAddr, String),
}

pub struct AuthThrottle {
    /// Failures before the waits start; 0 turns throttling off.
    limit: u32,
    max_pause: Duration,
    failures: Mutex<HashMap<Key, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when new sessions wait, once `count` is past `limit`.
    fn until(&self, limit: u32, max_pause: Duration) -> Option<Instant> {
        let past = self.count.checked_sub(limit)?;
        let pause = Duration::from_secs(1u64 << past.min(30)).min(max_pause);
        Some(self.last + pause)
    }
}

impl AuthThrottle {
    pub fn new(limit: u32, max_pause: Duration) -> AuthThrottle {
        AuthThrottle {
            limit,
            max_pause,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How much longer new sessions of `dev_id` from `source` wait at `now`, if they do.
    pub fn locked_for(&self, source: IpAddr, dev_id: &str, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let all = self.lock();
        let pair = Key::SourceDevice(source, dev_id.to_owned());
        let held = |key: &Key, limit: u32| {
            let until = all.get(key)?.until(limit, self.max_pause)?;
            (now < until).then(|| until - now)
        };
        let by_pair = held(&pair, self.limit);
        let by_source = held(&Key::Source(source), self.limit * SOURCE_FACTOR);
        by_pair.max(by_source)
    }

    /// Counts wrong credentials; returns true when this failure starts the waits for
    /// the device from that source.
    pub fn failed(&self, source: IpAddr, dev_id: &str, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let mut all = self.lock();
        let mut count = |key: Key| {
            let tracked = all.len() < MAX_TRACKED || all.contains_key(&key);
            let entry = tracked.then(|| {
                all.entry(key).or_insert(Failures {
                    count: 0,
                    last: now,
                })
            })?;
            // Failures further apart than the longest wait do not add up.
            if now.saturating_duration_since(entry.last) > self.max_pause {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
            Some(entry.count)
        };
        count(Key::Source(source));
        count(Key::SourceDevice(source, dev_id.to_owned())) == Some(self.limit)
    }

    /// The device proved who it is from `source`: its failures there are forgotten.
    pub fn succeeded(&self, source: IpAddr, dev_id: &str) {
        self.lock()
            .remove(&Key::SourceDevice(source, dev_id.to_owned()));
    }

    /// Drops what no longer counts at `now`.
    pub fn forget_expired(&self, now: Instant) {
        self.lock()
            .retain(|_, failures| now.saturating_duration_since(failures.last) <= self.max_pause);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        // Counts left half-updated by a panic elsewhere are still counts.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 66));
    const DEVICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn past_the_limit_a_source_waits_twice_as_long_at_each_failure() {
        let throttle = AuthThrottle::new(3, secs(60));
        let t0 = Instant::now();
        assert!(!throttle.failed(STRANGER, "IMEI:1", t0));
        assert!(!throttle.failed(STRANGER, "IMEI:1", t0));
        assert_eq!(throttle.locked_for(STRANGER, "IMEI:1", t0), None);
        assert!(throttle.failed(STRANGER, "IMEI:1", t0));
        assert_eq!(throttle.locked_for(STRANGER, "IMEI:1", t0), Some(secs(1)));
        throttle.failed(STRANGER, "IMEI:1", t0);
        assert_eq!(throttle.locked_for(STRANGER, "IMEI:1", t0), Some(secs(2)));
        for _ in 0..20 {
            throttle.failed(STRANGER, "IMEI:1", t0);
        }
        assert_eq!(
            throttle.locked_for(STRANGER, "IMEI:1", t0),
            Some(secs(60)),
            "capped"
        );
        assert_eq!(throttle.locked_for(STRANGER, "IMEI:1", t0 + secs(61)), None);
    }

    #[test]
    fn a_stranger_never_holds_back_the_device_from_its_own_address() {
        let throttle = AuthThrottle::new(3, secs(300));
        let t0 = Instant::now();
        for _ in 0..1000 {
            throttle.failed(STRANGER, "IMEI:1", t0);
        }
        assert!(throttle.locked_for(STRANGER, "IMEI:1", t0).is_some());
        assert_eq!(throttle.locked_for(DEVICE, "IMEI:1", t0), None);
    }

    #[test]
    fn a_source_that_fails_across_many_devices_waits_for_all() {
        let throttle = AuthThrottle::new(3, secs(300));
        let t0 = Instant::now();
        for n in 0..30 {
            throttle.failed(STRANGER, &format!("IMEI:{n}"), t0);
        }
        assert_eq!(
            throttle.locked_for(STRANGER, "IMEI:fresh", t0),
            Some(secs(1))
        );
        assert_eq!(throttle.locked_for(DEVICE, "IMEI:fresh", t0), None);
    }

    #[test]
    fn a_success_or_a_long_pause_starts_the_count_again() {
        let throttle = AuthThrottle::new(2, secs(60));
        let t0 = Instant::now();
        throttle.failed(DEVICE, "IMEI:1", t0);
        throttle.succeeded(DEVICE, "IMEI:1");
        assert!(!throttle.failed(DEVICE, "IMEI:1", t0));
        assert!(!throttle.failed(DEVICE, "IMEI:1", t0 + secs(120)));
        assert_eq!(throttle.locked_for(DEVICE, "IMEI:1", t0 + secs(120)), None);
        throttle.forget_expired(t0 + secs(500));
        assert!(throttle.lock().is_empty());
    }

    #[test]
    fn a_limit_of_zero_never_locks_out() {
        let throttle = AuthThrottle::new(0, secs(60));
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(!throttle.failed(STRANGER, "IMEI:1", t0));
        }
        assert_eq!(throttle.locked_for(STRANGER, "IMEI:1", t0), None);
        assert!(throttle.lock().is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = AuthThrottle::new(3, secs(60));
        let t0 = Instant::now();
        for n in 0..(MAX_TRACKED + 50) {
            throttle.failed(STRANGER, &format!("IMEI:{n}"), t0);
        }
        assert_eq!(throttle.lock().len(), MAX_TRACKED);
    }
}
