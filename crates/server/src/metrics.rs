//! What a DM server counts, rendered in the Prometheus text format at `/metrics`:
//! sessions, authentication failures, command statuses by code, Generic Alerts by
//! type (attach, detach, location update, fan-out), gateway bootstraps by approach,
//! lapsed local bootstraps, package-0 notifications devices accepted, the time spent in
//! the store per DM message, a histogram of
//! the time a DM message takes, and gauges of what the store holds (devices, queued
//! commands, gateways, running campaigns) read at each scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a role embedding the server counts of its own (a gateway), rendered at the
/// end of the same `/metrics`.
pub trait ExtraMetrics: Send + Sync + std::fmt::Debug {
    /// The role's metrics in the Prometheus text format ([`write_metric`] writes one).
    fn render(&self) -> String;
}

/// The kind of a metric, as the text format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Writes one metric with its help and type lines.
pub fn write_metric(
    out: &mut String,
    kind: MetricKind,
    name: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    };
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Counters shared by every request handler.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_opened: AtomicU64,
    sessions_ended: AtomicU64,
    messages: AtomicU64,
    messages_refused: AtomicU64,
    auth_failures: AtomicU64,
    lapses: AtomicU64,
    notifications_sent: AtomicU64,
    store_micros: AtomicU64,
    store_commits: AtomicU64,
    /// DM messages by the time they took, in [`LATENCY_BUCKETS`] (one more: +Inf).
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_micros: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
    alerts: Mutex<BTreeMap<String, u64>>,
    bootstraps: Mutex<BTreeMap<&'static str, u64>>,
    /// Firmware bytes sent, by artifact id (shared with the answers streaming them).
    artifact_bytes: Mutex<BTreeMap<String, std::sync::Arc<AtomicU64>>>,
    /// The embedding role's own, once it gave them.
    extra: std::sync::OnceLock<std::sync::Arc<dyn ExtraMetrics>>,
    /// What the DM and admin listener counts of its connections.
    connections: std::sync::Arc<gwmo_net::ConnectionCounts>,
}

/// The upper bounds of the message-time histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// What the store holds, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub devices: u64,
    pub queued_commands: u64,
    pub gateways: u64,
    pub campaigns_running: u64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    // A poisoned map only means a panic elsewhere; counting goes on.
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *map.entry(key).or_default() += 1;
}

impl Metrics {
    pub fn session_opened(&self) {
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_ended(&self) {
        self.sessions_ended.fetch_add(1, Ordering::Relaxed);
    }

    /// One DM message handled, and the time its store work took.
    pub fn message(&self, store_time: Duration) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.store_micros
            .fetch_add(store_time.as_micros() as u64, Ordering::Relaxed);
    }

    /// One commit of DM messages' store work (with SQLite several messages share one),
    /// and the time it took.
    pub fn store_commit(&self, took: Duration) {
        self.store_commits.fetch_add(1, Ordering::Relaxed);
        self.store_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// One DM message answered or refused, and how long it took in all.
    pub fn handled(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// A DM message refused before any session (malformed, unknown device, ...).
    pub fn message_refused(&self) {
        self.messages_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A package-0 notification that a device accepted (answered 2xx).
    pub fn notification_sent(&self) {
        self.notifications_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A gateway reported that a device's local bootstrap lapsed (no session in time).
    pub fn lapse(&self) {
        self.lapses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn command_status(&self, code: u16) {
        bump(&self.statuses, code);
    }

    pub fn alert(&self, kind: &str) {
        bump(&self.alerts, kind.to_owned());
    }

    /// Adds the embedding role's own metrics to `/metrics` (the first given stays).
    pub fn add_extra(&self, extra: std::sync::Arc<dyn ExtraMetrics>) {
        let _ = self.extra.set(extra);
    }

    /// The counter of firmware bytes this instance sent of artifact `id`.
    pub fn artifact_bytes(&self, id: &str) -> std::sync::Arc<AtomicU64> {
        let mut map = self
            .artifact_bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    /// Where the listener counts its connections and handshakes.
    pub fn connections(&self) -> std::sync::Arc<gwmo_net::ConnectionCounts> {
        self.connections.clone()
    }

    /// A gateway bootstrap, by the approach it came through (its origin's name).
    pub fn bootstrap(&self, approach: gwmo_tree::Origin) {
        bump(&self.bootstraps, approach.as_str());
    }

    /// The Prometheus text exposition of every counter, of the sessions open now, and
    /// of what the store holds (when it answered).
    pub fn render(&self, sessions_open: usize, gauges: Option<Gauges>) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            write_metric(&mut out, MetricKind::Counter, name, help, value)
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            "gwmo_sessions_opened_total",
            "DM sessions opened by devices that authenticated.",
            get(&self.sessions_opened),
        );
        counter(
            "gwmo_sessions_ended_total",
            "DM sessions that ended (completed, aborted, or given up after failed logins).",
            get(&self.sessions_ended),
        );
        counter(
            "gwmo_messages_total",
            "DM messages answered.",
            get(&self.messages),
        );
        counter(
            "gwmo_messages_refused_total",
            "DM messages refused before any session.",
            get(&self.messages_refused),
        );
        counter(
            "gwmo_auth_failures_total",
            "Device credentials missing or wrong.",
            get(&self.auth_failures),
        );
        counter(
            "gwmo_lapses_total",
            "Local gateway bootstraps that lapsed without a session, as gateways reported.",
            get(&self.lapses),
        );
        counter(
            "gwmo_notifications_sent_total",
            "Package-0 notifications devices accepted (each a connection this server opened).",
            get(&self.notifications_sent),
        );
        let connections = self.connections.tally();
        counter(
            "gwmo_connections_accepted_total",
            "Connections the DM and admin listener accepted.",
            connections.accepted,
        );
        counter(
            "gwmo_tls_handshakes_failed_total",
            "TLS handshakes on the listener that failed or timed out.",
            connections.failed_handshakes,
        );
        let artifact_bytes: u64 = self
            .artifact_bytes
            .lock()
            .map(|map| map.values().map(|c| get(c)).sum())
            .unwrap_or_default();
        counter(
            "gwmo_artifact_bytes_served_total",
            "Firmware image bytes this instance sent to devices and gateways.",
            artifact_bytes,
        );
        write_metric(
            &mut out,
            MetricKind::Gauge,
            "gwmo_sessions_open",
            "DM sessions this instance holds open (only devices that authenticated have one).",
            sessions_open,
        );
        if let Some(gauges) = gauges {
            for (name, help, value) in [
                ("gwmo_devices", "Devices enrolled.", gauges.devices),
                (
                    "gwmo_commands_queued",
                    "Commands queued and not yet sent.",
                    gauges.queued_commands,
                ),
                ("gwmo_gateways", "Gateways registered.", gauges.gateways),
                (
                    "gwmo_campaigns_running",
                    "Campaigns running.",
                    gauges.campaigns_running,
                ),
            ] {
                write_metric(&mut out, MetricKind::Gauge, name, help, value);
            }
        }
        let _ = writeln!(
            out,
            "# HELP gwmo_message_seconds Time to handle a DM message, from its bytes to its answer.\n# TYPE gwmo_message_seconds histogram"
        );
        let mut below = 0;
        for (bound, bucket) in LATENCY_BUCKETS
            .iter()
            .map(Some)
            .chain([None])
            .zip(&self.latency)
        {
            below += get(bucket);
            let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "gwmo_message_seconds_bucket{{le=\"{le}\"}} {below}");
        }
        let _ = writeln!(
            out,
            "gwmo_message_seconds_sum {}\ngwmo_message_seconds_count {below}",
            get(&self.latency_micros) as f64 / 1e6
        );
        write_metric(
            &mut out,
            MetricKind::Counter,
            "gwmo_store_seconds_total",
            "Time spent in the store handling DM messages.",
            get(&self.store_micros) as f64 / 1e6,
        );
        write_metric(
            &mut out,
            MetricKind::Counter,
            "gwmo_store_commits_total",
            "Commits of DM messages' store work: with SQLite, messages that arrive together share one.",
            get(&self.store_commits),
        );
        labelled(
            &mut out,
            "gwmo_command_statuses_total",
            "Statuses of queued commands, by code.",
            "code",
            &counts(&self.statuses),
        );
        labelled(
            &mut out,
            "gwmo_alerts_total",
            "Generic Alerts from devices and gateways, by type.",
            "type",
            &counts(&self.alerts),
        );
        labelled(
            &mut out,
            "gwmo_tls_handshakes_total",
            "TLS handshakes on the listener, by kind (resumed: from a session ticket, without the public-key work).",
            "kind",
            &[
                ("full", connections.full_handshakes),
                ("resumed", connections.resumed_handshakes),
            ],
        );
        labelled(
            &mut out,
            "gwmo_bootstraps_total",
            "Gateway bootstraps completed, by approach.",
            "approach",
            &counts(&self.bootstraps),
        );
        if let Some(extra) = self.extra.get() {
            out.push_str(&extra.render());
        }
        out
    }
}

/// A counted map's entries, copied out from under its lock.
fn counts<K: Clone + Ord>(map: &Mutex<BTreeMap<K, u64>>) -> Vec<(K, u64)> {
    let map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.iter()
        .map(|(key, value)| (key.clone(), *value))
        .collect()
}

/// One counter with a label, a sample per entry.
fn labelled<K: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    entries: &[(K, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (key, value) in entries {
        let key = key.to_string().replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.session_opened();
        metrics.message(Duration::from_millis(2));
        metrics.store_commit(Duration::from_millis(1));
        metrics.command_status(200);
        metrics.command_status(200);
        metrics.command_status(425);
        metrics.alert("urn:oma:at:gwmo:1.0:DeviceAttach");
        metrics.bootstrap(gwmo_tree::Origin::ServerAssisted);
        metrics.lapse();
        metrics.handled(Duration::from_micros(700));
        metrics.handled(Duration::from_millis(2));
        metrics.handled(Duration::from_secs(3));
        let gauges = Gauges {
            devices: 7,
            queued_commands: 2,
            gateways: 1,
            campaigns_running: 0,
        };
        let text = metrics.render(0, Some(gauges));
        assert!(
            text.contains("# TYPE gwmo_devices gauge\ngwmo_devices 7\n"),
            "{text}"
        );
        assert!(text.contains("gwmo_commands_queued 2\n"));
        assert!(
            text.contains("# TYPE gwmo_tls_handshakes_total counter\ngwmo_tls_handshakes_total{kind=\"full\"} 0\ngwmo_tls_handshakes_total{kind=\"resumed\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("gwmo_connections_accepted_total 0\n"));
        assert!(
            text.contains("gwmo_message_seconds_bucket{le=\"0.0005\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("gwmo_message_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gwmo_message_seconds_bucket{le=\"0.0025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gwmo_message_seconds_bucket{le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gwmo_message_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("gwmo_message_seconds_count 3\n"), "{text}");
        assert!(
            !metrics.render(0, None).contains("gwmo_devices"),
            "no gauges when the store did not answer"
        );
        assert!(
            text.contains(
                "# TYPE gwmo_sessions_opened_total counter\ngwmo_sessions_opened_total 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("gwmo_command_statuses_total{code=\"200\"} 2\n"));
        assert!(text.contains("gwmo_command_statuses_total{code=\"425\"} 1\n"));
        assert!(text.contains("gwmo_alerts_total{type=\"urn:oma:at:gwmo:1.0:DeviceAttach\"} 1\n"));
        assert!(text.contains("gwmo_bootstraps_total{approach=\"server-assisted\"} 1\n"));
        assert!(text.contains("gwmo_store_seconds_total 0.003\n"));
        assert!(text.contains("gwmo_store_commits_total 1\n"), "{text}");
        assert!(text.contains("gwmo_lapses_total 1\n"));
        // Every sample line is "name{labels} value" or "name value".
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
