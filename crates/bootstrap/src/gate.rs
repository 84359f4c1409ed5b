//! What a request to the bootstrap server must get past before it costs anything: a
//! rate limit on all requests, single-use challenges for USERPIN proofs, and a
//! growing pause for a DevId whose proofs keep failing (a USERPIN is short: guessing
//! it online must be slow). Every table is bounded, so strangers cannot grow it.
//! Time comes in as a parameter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a challenge may be answered.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Failed proofs a DevId may have before it must pause, and the first pause.
const FREE_FAILURES: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_secs(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(3600);
/// Entries in each table at most.
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
struct Tables {
    tokens: f64,
    refilled: Option<Instant>,
    challenges: HashMap<String, (String, Instant)>,
    failures: HashMap<String, (u32, Instant)>,
}

/// The gate of one bootstrap server.
pub(crate) struct Gate {
    /// Requests per second it takes; twice as many may come at once.
    rate_per_sec: f64,
    tables: Mutex<Tables>,
}

impl Gate {
    pub(crate) fn new(rate_per_sec: u32) -> Gate {
        Gate {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            tables: Mutex::default(),
        }
    }

    fn burst(&self) -> f64 {
        2.0 * self.rate_per_sec
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one request from the rate limit; false when it is spent.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        let mut tables = self.tables();
        let elapsed = tables
            .refilled
            .map_or(self.burst() / self.rate_per_sec, |at| {
                now.duration_since(at).as_secs_f64()
            });
        tables.tokens = (tables.tokens + elapsed * self.rate_per_sec).min(self.burst());
        tables.refilled = Some(now);
        if tables.tokens < 1.0 {
            return false;
        }
        tables.tokens -= 1.0;
        true
    }

    /// A new challenge for `dev_id` (replacing any earlier one).
    pub(crate) fn challenge(&self, dev_id: &str, now: Instant) -> String {
        let challenge: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut tables = self.tables();
        let challenges = &mut tables.challenges;
        challenges.retain(|_, (_, issued)| now.duration_since(*issued) < CHALLENGE_TTL);
        make_room(challenges, |(_, issued)| *issued);
        challenges.insert(dev_id.to_owned(), (challenge.clone(), now));
        challenge
    }

    /// Whether `given` is the live challenge of `dev_id`; it is used up either way.
    pub(crate) fn take_challenge(&self, dev_id: &str, given: &str, now: Instant) -> bool {
        self.tables()
            .challenges
            .remove(dev_id)
            .is_some_and(|(challenge, issued)| {
                now.duration_since(issued) < CHALLENGE_TTL
                    && bool::from(subtle::ConstantTimeEq::ct_eq(
                        challenge.as_bytes(),
                        given.as_bytes(),
                    ))
            })
    }

    /// How long `dev_id` must still wait after failed proofs, if at all.
    pub(crate) fn paused(&self, dev_id: &str, now: Instant) -> Option<Duration> {
        let tables = self.tables();
        let (_, until) = tables.failures.get(dev_id)?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    pub(crate) fn failed(&self, dev_id: &str, now: Instant) {
        let mut tables = self.tables();
        let failures = &mut tables.failures;
        if !failures.contains_key(dev_id) {
            make_room(failures, |(_, until)| *until);
        }
        let (count, until) = failures.entry(dev_id.to_owned()).or_insert((0, now));
        *count += 1;
        if let Some(over) = count.checked_sub(FREE_FAILURES + 1) {
            let pause = FIRST_PAUSE
                .saturating_mul(1 << over.min(16))
                .min(LONGEST_PAUSE);
            *until = now + pause;
        }
    }

    pub(crate) fn succeeded(&self, dev_id: &str) {
        self.tables().failures.remove(dev_id);
    }
}

/// Drops the oldest entry of a full table.
fn make_room<V>(table: &mut HashMap<String, V>, age: impl Fn(&V) -> Instant) {
    if table.len() < MAX_ENTRIES {
        return;
    }
    if let Some(oldest) = table
        .iter()
        .min_by_key(|(_, v)| age(v))
        .map(|(k, _)| k.clone())
    {
        table.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_lets_a_burst_through_then_refills() {
        let gate = Gate::new(100);
        let start = Instant::now();
        let admitted = (0..1000).filter(|_| gate.admit(start)).count();
        assert_eq!(admitted, 200);
        assert!(!gate.admit(start));
        assert!(gate.admit(start + Duration::from_millis(10)));
    }

    #[test]
    fn a_challenge_is_answered_once_and_in_time() {
        let gate = Gate::new(100);
        let now = Instant::now();
        let challenge = gate.challenge("d", now);
        assert!(!gate.take_challenge("other", &challenge, now));
        assert!(gate.take_challenge("d", &challenge, now));
        assert!(!gate.take_challenge("d", &challenge, now), "used twice");
        let late = gate.challenge("d", now);
        assert!(!gate.take_challenge("d", &late, now + CHALLENGE_TTL));
    }

    #[test]
    fn failed_proofs_make_a_dev_id_pause_longer_each_time() {
        let gate = Gate::new(100);
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            gate.failed("d", now);
        }
        assert_eq!(gate.paused("d", now), None);
        gate.failed("d", now);
        assert_eq!(gate.paused("d", now), Some(FIRST_PAUSE));
        gate.failed("d", now);
        assert_eq!(gate.paused("d", now), Some(FIRST_PAUSE * 2));
        assert_eq!(gate.paused("other", now), None);
        gate.succeeded("d");
        assert_eq!(gate.paused("d", now), None);
    }

    #[test]
    fn the_tables_stay_bounded() {
        let gate = Gate::new(100);
        let now = Instant::now();
        for i in 0..MAX_ENTRIES + 100 {
            gate.challenge(&format!("d{i}"), now);
            gate.failed(&format!("d{i}"), now);
        }
        let tables = gate.tables();
        assert!(tables.challenges.len() <= MAX_ENTRIES);
        assert!(tables.failures.len() <= MAX_ENTRIES);
    }
}
