//! The pause before a failed session is tried again: doubling from a first pause up
//! to a longest one, each with up to half of it again at random (jitter), so that a
//! fleet whose server came back does not return all at once.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    pause: Duration,
    longest: Duration,
}

impl Backoff {
    pub fn new(first: Duration, longest: Duration) -> Backoff {
        Backoff {
            pause: first,
            longest,
        }
    }

    /// The next wait, jitter included; the one after is twice as long (up to the
    /// longest).
    pub fn next_wait(&mut self) -> Duration {
        let spread = u64::try_from(self.pause.as_millis() / 2)
            .unwrap_or(u64::MAX)
            .max(1);
        let wait = self.pause + Duration::from_millis(rand::random::<u64>() % spread);
        self.pause = (self.pause * 2).min(self.longest);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_with_at_most_half_again_of_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        for base in [1, 2, 4, 5, 5] {
            let wait = backoff.next_wait();
            let base = Duration::from_secs(base);
            assert!(
                wait >= base && wait < base + base / 2,
                "{wait:?} for {base:?}"
            );
        }
    }
}
