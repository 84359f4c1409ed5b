//! When the reports the DM Server could not take go again (Device Attach, Device
//! Detach, fan-out results). After a report fails (the server is down, or it aborted
//! the session), reports wait a growing, jittered pause (1 s, doubling up to a
//! minute) and then a sync sends them again. Nothing else would: a gateway that does
//! not poll its server holds no other session with it, so a report deferred while
//! the server was down used to wait for some end device's session to cause a sync,
//! and a quiet gateway never sent it (found by CI: the fan-out results of
//! `fan_out_results_the_server_missed_are_reported_when_it_is_back` never arrived).
//! The pause also keeps a gateway from calling a server that is down in a tight loop
//! (every failed session ends with a sync, which tried again at once). Time is
//! passed in.

use std::time::Duration;

use gwmo_device::backoff::Backoff;
use tokio::time::Instant;

/// The pause after the first failed report.
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause: a server back from an outage gets what it missed within about
/// a minute (a minute and a half with jitter).
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Whether reports may go now, and when they may if not.
#[derive(Debug, Clone)]
pub struct ReportRetry {
    backoff: Backoff,
    due: Option<Instant>,
}

impl Default for ReportRetry {
    fn default() -> ReportRetry {
        ReportRetry {
            backoff: Backoff::new(FIRST_PAUSE, LONGEST_PAUSE),
            due: None,
        }
    }
}

impl ReportRetry {
    /// When the last failure's pause ends; `None` once a report went.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether reports wait at `now` (a failure's pause has not run out).
    pub fn waiting_at(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| now < due)
    }

    /// A report failed at `now`: the next waits a pause twice as long as the last.
    pub fn failed(&mut self, now: Instant) {
        self.due = Some(now + self.backoff.next_wait());
    }

    /// A report went: the next goes at once, and a later failure starts again from
    /// the first pause. Returns whether anything changed.
    pub fn succeeded(&mut self) -> bool {
        let changed = self.due.is_some();
        *self = ReportRetry::default();
        changed
    }
}

/// Which pause's end the gateway's loop last woke for. It wakes once for each: also
/// for one that ran out while it was busy (a loop that looked only for ends still
/// ahead missed those, and sent nothing again: seen in CI), and not again for one it
/// woke for (an end left in the past woke it at once, for ever, when the sync then
/// had nothing to send).
#[derive(Debug, Default)]
pub struct PauseEnds {
    woken_for: Option<Instant>,
}

impl PauseEnds {
    /// The end to sleep until: the last failure's, unless already woken for.
    pub fn next(&self, retry: &ReportRetry) -> Option<Instant> {
        retry.due().filter(|due| Some(*due) != self.woken_for)
    }

    /// The loop woke for `end`.
    pub fn woke_for(&mut self, end: Option<Instant>) {
        self.woken_for = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_at_once_until_one_fails() {
        let retry = ReportRetry::default();
        assert!(!retry.waiting_at(Instant::now()));
        assert_eq!(retry.due(), None);
    }

    #[test]
    fn after_failures_reports_wait_pauses_that_double_up_to_a_minute() {
        let mut retry = ReportRetry::default();
        let now = Instant::now();
        for base in [1, 2, 4, 8, 16, 32, 60, 60] {
            retry.failed(now);
            let base = Duration::from_secs(base);
            let due = retry.due().unwrap();
            assert!(due >= now + base && due < now + base + base / 2, "{base:?}");
            assert!(retry.waiting_at(now + base - Duration::from_millis(1)));
            assert!(!retry.waiting_at(now + base + base / 2));
        }
    }

    #[test]
    fn the_loop_wakes_once_for_each_pause_end_even_one_already_past() {
        let mut retry = ReportRetry::default();
        let mut ends = PauseEnds::default();
        assert_eq!(ends.next(&retry), None, "no failure, nothing to wake for");
        // An end already past when the loop looks (it was busy) is still woken for.
        retry.failed(Instant::now() - Duration::from_secs(3600));
        let first = retry.due();
        assert!(first.is_some_and(|end| end < Instant::now()));
        assert_eq!(ends.next(&retry), first);
        ends.woke_for(first);
        assert_eq!(ends.next(&retry), None, "not again for the same end");
        retry.failed(Instant::now());
        assert_eq!(ends.next(&retry), retry.due(), "the next failure's end");
        assert_ne!(retry.due(), first);
    }

    #[test]
    fn a_report_that_went_ends_the_wait_and_starts_the_pauses_again() {
        let mut retry = ReportRetry::default();
        let now = Instant::now();
        for _ in 0..4 {
            retry.failed(now);
        }
        assert!(retry.succeeded());
        assert!(!retry.waiting_at(now));
        assert!(!retry.succeeded(), "nothing to end the second time");
        retry.failed(now);
        assert!(retry.due().unwrap() < now + Duration::from_millis(1500));
    }
}
