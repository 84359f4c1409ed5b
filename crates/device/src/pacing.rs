//! What the device remembers of the package-0 notifications it acted on: their
//! digests (a captured package 0 replayed opens nothing) and, per server, when the
//! session a notification opened started and whether it still runs (sessions with
//! one server are one at a time and at least [`NOTIFICATION_INTERVAL`] apart). Pure:
//! the caller passes the time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use gwmo_proto::package0;

/// The shortest time between two sessions package 0 opens with one server.
pub const NOTIFICATION_INTERVAL: Duration = Duration::from_secs(1);

/// The notifications the device acted on lately: a captured package 0 replayed
/// opens nothing; and the sessions they opened, to space them out.
#[derive(Debug, Default)]
pub(crate) struct NotificationLog {
    seen: VecDeque<[u8; package0::DIGEST_LEN]>,
    /// Per server (only those with an account get this far): when its last
    /// notification session started, and whether it still runs.
    sessions: HashMap<String, (Instant, bool)>,
}

/// Digests remembered: far more than the notifications a server sends between two
/// nonce changes (after which an old one no longer verifies anyway).
const REMEMBERED: usize = 256;

impl NotificationLog {
    /// How long before a session for `server_id` may start at `now`, if it may not.
    pub(crate) fn wait_for(&self, server_id: &str, now: Instant) -> Option<Duration> {
        let (started, running) = *self.sessions.get(server_id)?;
        let next = started + NOTIFICATION_INTERVAL;
        match running {
            true => Some(NOTIFICATION_INTERVAL),
            false => (now < next).then(|| next - now),
        }
    }

    pub(crate) fn session_started(&mut self, server_id: &str, now: Instant) {
        self.sessions.insert(server_id.to_owned(), (now, true));
    }

    pub(crate) fn session_ended(&mut self, server_id: &str) {
        if let Some((_, running)) = self.sessions.get_mut(server_id) {
            *running = false;
        }
    }

    pub(crate) fn acted_on(&self, digest: &[u8; package0::DIGEST_LEN]) -> bool {
        self.seen.contains(digest)
    }

    /// Whether a verified notification with `digest` is new; it is remembered.
    pub(crate) fn first_time(&mut self, digest: [u8; package0::DIGEST_LEN]) -> bool {
        if self.seen.contains(&digest) {
            return false;
        }
        if self.seen.len() == REMEMBERED {
            self.seen.pop_front();
        }
        self.seen.push_back(digest);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_opens_a_session_once() {
        let mut log = NotificationLog::default();
        assert!(log.first_time([1; 16]));
        assert!(!log.first_time([1; 16]), "replayed");
        assert!(log.first_time([2; 16]));
        for i in 0..=255u8 {
            log.first_time([i; 16]);
        }
        assert_eq!(log.seen.len(), REMEMBERED, "bounded");
    }

    #[test]
    fn notification_sessions_with_a_server_are_one_at_a_time_and_spaced_out() {
        let mut log = NotificationLog::default();
        let t0 = Instant::now();
        assert_eq!(log.wait_for("dms", t0), None);
        log.session_started("dms", t0);
        let later = t0 + NOTIFICATION_INTERVAL * 5;
        assert_eq!(
            log.wait_for("dms", later),
            Some(NOTIFICATION_INTERVAL),
            "running"
        );
        assert_eq!(log.wait_for("gw", t0), None, "per server");
        log.session_ended("dms");
        let soon = t0 + NOTIFICATION_INTERVAL / 4;
        assert_eq!(
            log.wait_for("dms", soon),
            Some(NOTIFICATION_INTERVAL * 3 / 4)
        );
        assert_eq!(log.wait_for("dms", later), None);
    }
}
