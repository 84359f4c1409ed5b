//! What a simulation measured: counts, rates, session latency percentiles, server
//! memory, the HTTP ceiling, and every error by kind; as a table and as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use crate::baseline::{Baseline, RawRequests};
pub use crate::fleet::ServerTraffic;

/// The summary of one run (`--report FILE` writes it as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub devices: usize,
    /// Devices the DM Server manages without a gateway.
    pub direct: usize,
    pub gateways: usize,
    pub approach: String,
    pub store: String,
    pub server_instances: usize,
    pub concurrency: usize,
    /// Starting servers and gateways, enrolling every device.
    pub setup_secs: f64,
    /// The rollout itself, from the first device's first session to the last one's end.
    pub rollout_secs: f64,
    pub bootstrapped: Bootstrapped,
    pub sessions: Sessions,
    /// DM messages the server instances answered during the rollout (from their
    /// `/metrics`), gateways' own sessions included.
    pub server_round_trips: u64,
    pub server_round_trips_per_sec: f64,
    /// The servers' connections and TLS handshakes during the rollout, beside its
    /// DM messages.
    pub server_traffic: ServerTraffic,
    /// CPU time the server instances spent during the rollout (servers the simulator
    /// started), and the DM round trips that buys per CPU second: the server's own
    /// capacity, whatever the simulated devices cost the machine.
    pub server_cpu_secs: Option<f64>,
    pub server_round_trips_per_cpu_sec: Option<f64>,
    /// What the rollout cost in CPU, per message, session and device.
    pub cpu: CpuCost,
    /// Raw HTTP requests to the same servers through the same stack, in the same run
    /// (`--baseline`): what a DM message's cost is compared with.
    pub baseline: Option<Baseline>,
    /// Server memory (only for servers the simulator started).
    pub server_memory: Option<ServerMemory>,
    /// The simulator's own peak resident memory (its devices and gateways), and what
    /// it grew by from the simulator's start, per device.
    pub simulator_peak_bytes: Option<u64>,
    pub simulator_bytes_per_device: Option<u64>,
    /// Devices checked afterwards in the server's store: association and commands.
    pub verified: Verified,
    /// The firmware campaign after the rollout, when asked for (`--firmware-mib`).
    pub firmware: Option<crate::firmware::FirmwareReport>,
    /// The campaign after the rollout, when asked for (`--campaign`).
    pub campaign: Option<crate::campaign::CampaignReport>,
    /// The steady phase, when asked for (`--soak-secs`).
    pub soak: Option<crate::soak::Soak>,
    pub errors: BTreeMap<String, ErrorKind>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Bootstrapped {
    pub server_assisted: usize,
    pub local: usize,
    /// Devices under the DM Server's own management (no gateway).
    pub direct: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sessions {
    /// Device sessions (with the DM Server or a gateway), whoever started them, that
    /// completed.
    pub total: usize,
    /// Sessions that failed or did not complete, and were tried again (an error only
    /// when the device's rollout did not finish: see `errors`).
    pub failed: usize,
    pub per_sec: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let at = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// CPU the rollout cost. The simulator's is its whole process: every simulated device
/// agent and gateway (with its embedded end-device server and store).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuCost {
    pub simulator_secs: Option<f64>,
    pub server_us_per_message: Option<f64>,
    pub server_us_per_session: Option<f64>,
    /// Server and simulator together, per device rolled out.
    pub ms_per_device: Option<f64>,
}

impl CpuCost {
    pub fn of(
        server_secs: Option<f64>,
        simulator_secs: Option<f64>,
        messages: u64,
        sessions: usize,
        devices: usize,
    ) -> CpuCost {
        let per = |secs: Option<f64>, count: f64, unit: f64| {
            secs.filter(|_| count > 0.0).map(|secs| secs * unit / count)
        };
        CpuCost {
            simulator_secs,
            server_us_per_message: per(server_secs, messages as f64, 1e6),
            server_us_per_session: per(server_secs, sessions as f64, 1e6),
            ms_per_device: per(
                server_secs.zip(simulator_secs).map(|(a, b)| a + b),
                devices as f64,
                1e3,
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerMemory {
    pub rss_bytes: u64,
    pub peak_bytes: u64,
    /// What the instances held once started, before any device: the fixed part.
    pub at_start_bytes: u64,
    /// What the instances' peak resident memory grew by from there, per device.
    pub peak_bytes_per_device: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    /// Devices whose association names the right gateway with the right origin.
    pub associations: usize,
    /// Commands the server queued for the devices (bootstraps, validations), each
    /// done exactly once with 200.
    pub commands: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorKind {
    pub count: usize,
    /// One instance of it, to start looking.
    pub example: String,
}

impl Report {
    pub fn error_count(&self) -> usize {
        self.errors.values().map(|e| e.count).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: String| {
            writeln!(f, "  {name:<38} {value}")
        };
        writeln!(f, "gwmo sim summary")?;
        row(
            f,
            "devices / gateways / approach",
            format!("{} / {} / {}", self.devices, self.gateways, self.approach),
        )?;
        row(
            f,
            "store / server instances / concurrency",
            format!(
                "{} / {} / {}",
                self.store, self.server_instances, self.concurrency
            ),
        )?;
        if self.direct > 0 {
            row(
                f,
                "devices managed directly (no gateway)",
                format!("{} ({} registered)", self.direct, self.bootstrapped.direct),
            )?;
        }
        row(f, "setup", format!("{:.1} s", self.setup_secs))?;
        row(f, "rollout", format!("{:.1} s", self.rollout_secs))?;
        row(
            f,
            "devices bootstrapped (server-assisted)",
            self.bootstrapped.server_assisted.to_string(),
        )?;
        row(
            f,
            "devices bootstrapped (local)",
            self.bootstrapped.local.to_string(),
        )?;
        row(f, "device sessions", self.sessions.total.to_string())?;
        row(
            f,
            "failed and tried again",
            self.sessions.failed.to_string(),
        )?;
        row(
            f,
            "sessions per second",
            format!("{:.0}", self.sessions.per_sec),
        )?;
        let latency = &self.sessions.latency_ms;
        row(
            f,
            "session latency p50 / p95 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms",
                latency.p50, latency.p95, latency.p99, latency.max
            ),
        )?;
        row(
            f,
            "server DM round trips per second",
            format!(
                "{:.0} ({} in all)",
                self.server_round_trips_per_sec, self.server_round_trips
            ),
        )?;
        row(
            f,
            "server connections per DM message",
            connections_per_message(&self.server_traffic),
        )?;
        if let (Some(cpu), Some(rate)) = (self.server_cpu_secs, self.server_round_trips_per_cpu_sec)
        {
            row(
                f,
                "server CPU (round trips per CPU second)",
                format!("{cpu:.1} s ({rate:.0})"),
            )?;
        }
        let micros = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.0} µs"));
        row(
            f,
            "server CPU per DM message / session",
            format!(
                "{} / {}",
                micros(self.cpu.server_us_per_message),
                micros(self.cpu.server_us_per_session)
            ),
        )?;
        if let Some(secs) = self.cpu.simulator_secs {
            row(f, "simulator CPU", format!("{secs:.1} s"))?;
        }
        if let Some(ms) = self.cpu.ms_per_device {
            row(
                f,
                "CPU per device (simulator + server)",
                format!("{ms:.2} ms"),
            )?;
        }
        if let Some(baseline) = &self.baseline {
            let ratio =
                |raw: &RawRequests| match (self.cpu.server_us_per_message, raw.server_cpu_us) {
                    (Some(message), Some(request)) if request > 0.0 => {
                        format!(" (a DM message: x{:.1})", message / request)
                    }
                    _ => String::new(),
                };
            for (name, raw) in [
                ("baseline: kept-alive request", &baseline.keep_alive),
                (
                    "baseline: request on a new connection",
                    &baseline.new_connection,
                ),
            ] {
                row(
                    f,
                    name,
                    format!(
                        "{:.0} per s, server CPU {}{}",
                        raw.per_sec,
                        micros(raw.server_cpu_us),
                        ratio(raw)
                    ),
                )?;
            }
            let beside = &baseline.keep_alive_beside_gets;
            row(
                f,
                "baseline: kept-alive request, between the Get rounds",
                format!(
                    "{:.0} per s, server CPU {}",
                    beside.per_sec,
                    micros(beside.server_cpu_us)
                ),
            )?;
            // Each against the kept-alive requests measured nearest it in time.
            for (name, dm, kept_alive, which) in [
                (
                    "baseline: DM message, kept alive",
                    &baseline.dm_kept_alive,
                    &baseline.keep_alive,
                    "a kept-alive request",
                ),
                (
                    "baseline: DM message with a Get, kept alive",
                    &baseline.dm_managed,
                    beside,
                    "a kept-alive request between its rounds",
                ),
            ] {
                let against = |raw: &RawRequests| times(dm.server_cpu_us, raw.server_cpu_us);
                row(
                    f,
                    name,
                    format!(
                        "{:.0} per s, server CPU {} ({} {which}, {} a new-connection one)",
                        dm.per_sec,
                        micros(dm.server_cpu_us),
                        against(kept_alive),
                        against(&baseline.new_connection),
                    ),
                )?;
            }
            if let Some(share) = connections_share(&self.server_traffic, baseline) {
                let kept_alive = baseline.keep_alive.server_cpu_us;
                let rest = self
                    .cpu
                    .server_us_per_message
                    .map(|message| message - share);
                row(
                    f,
                    "a rollout DM message: its connections / the rest",
                    format!(
                        "{} ({} a kept-alive request) / {} ({})",
                        micros(Some(share)),
                        times(Some(share), kept_alive),
                        micros(rest),
                        times(rest, kept_alive)
                    ),
                )?;
            }
        }
        if let Some(memory) = &self.server_memory {
            row(
                f,
                "server memory (at start / RSS / peak)",
                format!(
                    "{:.1} MiB / {:.1} MiB / {:.1} MiB",
                    memory.at_start_bytes as f64 / 1048576.0,
                    memory.rss_bytes as f64 / 1048576.0,
                    memory.peak_bytes as f64 / 1048576.0,
                ),
            )?;
            row(
                f,
                "server memory per device (peak over start)",
                format!("{:.1} KiB", memory.peak_bytes_per_device as f64 / 1024.0),
            )?;
        }
        if let Some(peak) = self.simulator_peak_bytes {
            let per_device = self.simulator_bytes_per_device.map_or(String::new(), |b| {
                format!(" ({:.1} KiB per device over its start)", b as f64 / 1024.0)
            });
            row(
                f,
                "simulator peak memory",
                format!("{:.1} MiB{per_device}", peak as f64 / 1048576.0),
            )?;
        }
        row(
            f,
            "verified associations / commands",
            format!(
                "{} / {}",
                self.verified.associations, self.verified.commands
            ),
        )?;
        if let Some(firmware) = &self.firmware {
            let mib = |bytes: u64| bytes as f64 / 1048576.0;
            row(
                f,
                "firmware: image / devices / time",
                format!(
                    "{:.1} MiB / {} / {:.1} s",
                    mib(firmware.image_bytes),
                    firmware.devices,
                    firmware.secs
                ),
            )?;
            row(
                f,
                "firmware: updated / failed / verified",
                format!(
                    "{} / {} / {}",
                    firmware.updated, firmware.failed, firmware.verified
                ),
            )?;
            row(
                f,
                "firmware: WAN (DM Server sent)",
                format!(
                    "{:.1} MiB ({:.2} images for {} gateways)",
                    mib(firmware.wan_bytes),
                    firmware.wan_images,
                    self.gateways
                ),
            )?;
            row(
                f,
                "firmware: LAN per gateway min / max / all",
                format!(
                    "{:.1} / {:.1} / {:.1} MiB",
                    mib(firmware.lan_bytes_min),
                    mib(firmware.lan_bytes_max),
                    mib(firmware.lan_bytes_total)
                ),
            )?;
        }
        if let Some(campaign) = &self.campaign {
            campaign.write_rows(f, row)?;
        }
        if let Some(soak) = &self.soak {
            row(
                f,
                "soak: duration / sessions / rate",
                format!(
                    "{:.0} s / {} / {:.0} per s",
                    soak.secs,
                    soak.sessions,
                    soak.sessions as f64 / soak.secs.max(f64::EPSILON)
                ),
            )?;
            if let (Some(traffic), Some(cpu)) =
                (&soak.server_traffic, soak.server_cpu_us_per_message)
            {
                let against =
                    |raw: Option<&RawRequests>| times(Some(cpu), raw.and_then(|r| r.server_cpu_us));
                let baseline = self.baseline.as_ref();
                row(
                    f,
                    "soak: server CPU per DM message",
                    format!(
                        "{cpu:.0} µs ({} a kept-alive request, {} a new-connection one)",
                        against(baseline.map(|b| &b.keep_alive)),
                        against(baseline.map(|b| &b.new_connection))
                    ),
                )?;
                row(
                    f,
                    "soak: server connections per DM message",
                    connections_per_message(traffic),
                )?;
            }
            row(
                f,
                "soak growth: server RSS / fds",
                format!(
                    "x{:.2} / x{:.2}",
                    soak.server_rss_growth, soak.server_fds_growth
                ),
            )?;
            row(
                f,
                "soak growth: simulator RSS / fds",
                format!(
                    "x{:.2} / x{:.2}",
                    soak.simulator_rss_growth, soak.simulator_fds_growth
                ),
            )?;
        }
        row(f, "errors", self.error_count().to_string())?;
        for (kind, error) in &self.errors {
            writeln!(
                f,
                "    {kind:<36} {:>6}  e.g. {}",
                error.count, error.example
            )?;
        }
        Ok(())
    }
}

/// What a DM message costs against a raw request, as the summary shows it: "x4.2", or
/// "-" where either is unknown.
fn times(message_us: Option<f64>, request_us: Option<f64>) -> String {
    match (message_us, request_us) {
        (Some(message), Some(request)) if request > 0.0 => format!("x{:.1}", message / request),
        _ => "-".to_owned(),
    }
}

/// The server CPU a rollout's DM message spends on its share of new connections: the
/// connections per message, each costing what a request on a new connection costs
/// beyond a kept-alive one. A lower bound: the baseline's new connections resume
/// where they can, the rollout's devices connect for the first time.
fn connections_share(traffic: &ServerTraffic, baseline: &Baseline) -> Option<f64> {
    let new_connection = baseline.new_connection.server_cpu_us?;
    let kept_alive = baseline.keep_alive.server_cpu_us?;
    let per_message = traffic.connections as f64 / traffic.messages.max(1) as f64;
    Some(per_message * (new_connection - kept_alive).max(0.0))
}

/// Connections and TLS handshakes per DM message, and the package-0 notifications the
/// server sent, as the summary shows them.
fn connections_per_message(traffic: &ServerTraffic) -> String {
    let per_message = |count: u64| count as f64 / traffic.messages.max(1) as f64;
    format!(
        "{:.2} (TLS handshakes: full {:.2}, resumed {:.2}; package 0 sent {:.2})",
        per_message(traffic.connections),
        per_message(traffic.full_handshakes),
        per_message(traffic.resumed_handshakes),
        per_message(traffic.notifications)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(server_cpu_us: Option<f64>) -> RawRequests {
        RawRequests {
            count: 1000,
            per_sec: 1000.0,
            server_cpu_us,
        }
    }

    #[test]
    fn a_rollout_message_s_connections_cost_what_a_new_connection_adds_to_a_request() {
        let traffic = ServerTraffic {
            messages: 300,
            connections: 100,
            full_handshakes: 100,
            resumed_handshakes: 0,
            notifications: 50,
        };
        let baseline = |kept_alive, new_connection| Baseline {
            keep_alive: raw(kept_alive),
            new_connection: raw(new_connection),
            dm_kept_alive: raw(Some(60.0)),
            dm_managed: raw(Some(75.0)),
            keep_alive_beside_gets: raw(Some(15.0)),
        };
        let share = connections_share(&traffic, &baseline(Some(15.0), Some(195.0)));
        assert_eq!(share, Some(60.0), "a third of (195 - 15) µs");
        assert_eq!(
            connections_share(&traffic, &baseline(None, Some(195.0))),
            None
        );
        assert_eq!(
            connections_share(&traffic, &baseline(Some(15.0), Some(10.0))),
            Some(0.0),
            "never below nothing"
        );
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(samples);
        assert_eq!(
            (latency.p50, latency.p95, latency.p99, latency.max),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(Vec::new()).max, 0.0);
        assert_eq!(Latency::of(vec![Duration::from_millis(7)]).p50, 7.0);
    }
}
