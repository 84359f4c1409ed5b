//! The steady phase after a rollout (`--soak-secs`): devices keep holding sessions, in
//! turn with their gateway and with their DM Server, at a fixed rate for a fixed time,
//! while the resident memory and open file descriptors of the server instances and of
//! this process (every simulated gateway and device) are sampled. A leak shows as
//! growth between the first and the last samples. Each device keeps its HTTP client
//! from one session to the next, as a device daemon does, and with it the TLS session
//! tickets its peers gave it: a session's messages share a connection, and the next
//! session resumes on a new one. The servers' CPU per DM message and their
//! connections and handshakes are measured over the phase: what a fleet that already
//! connected once costs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gwmo_net::HttpClient;
use gwmo_session::{ClientOutcome, Trigger};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::device::{self, DevicePlan};
use crate::fleet::{Fleet, ServerTraffic};

/// How long and how fast.
#[derive(Debug, Clone, Copy)]
pub struct SoakOptions {
    pub duration: Duration,
    /// Sessions started per second.
    pub rate: f64,
}

/// What the soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub secs: f64,
    pub rate: f64,
    pub sessions: usize,
    pub errors: usize,
    pub samples: Vec<Sample>,
    /// Last sample over first (after the first minute's warm-up when the run is
    /// long enough): 1.0 is flat.
    pub server_rss_growth: f64,
    pub server_fds_growth: f64,
    pub simulator_rss_growth: f64,
    pub simulator_fds_growth: f64,
    /// The servers' DM messages, connections and handshakes during the soak.
    pub server_traffic: Option<ServerTraffic>,
    /// Server CPU per DM message during the soak (servers the simulator started).
    pub server_cpu_us_per_message: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_secs: f64,
    pub sessions: usize,
    pub server_rss_bytes: u64,
    pub server_fds: usize,
    pub simulator_rss_bytes: u64,
    pub simulator_fds: usize,
}

/// How long a device keeps a connection after a message: its session's next message
/// comes at once, its next session much later on a new connection (resumed with a
/// ticket). Connections kept longer would hold every device's sockets in this one
/// process, past its file limit at 20,000 devices.
const IDLE_BETWEEN_SESSIONS: Duration = Duration::from_secs(2);

/// How often resources are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Runs the soak; `note` hears every failed session.
pub async fn run(
    fleet: &Fleet,
    plans: &[DevicePlan],
    options: SoakOptions,
    note: &mut impl FnMut(&str, String),
) -> Soak {
    let started = Instant::now();
    let busy: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Arc<Mutex<HashMap<usize, HttpClient>>> = Arc::default();
    let traffic_before = fleet.traffic().await.ok();
    let cpu_before = fleet.cpu_secs();
    let mut sessions = 0;
    let mut samples = vec![sample(fleet, started, 0)];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate.max(0.01)));
    let mut next_sample = started + SAMPLE_EVERY;
    let mut running = JoinSet::new();
    let mut turn = 0usize;
    while started.elapsed() < options.duration {
        tick.tick().await;
        while running.try_join_next().is_some() {}
        if Instant::now() >= next_sample {
            samples.push(sample(fleet, started, sessions));
            next_sample += SAMPLE_EVERY;
        }
        let index = turn % plans.len();
        turn += 1;
        // A device still in its last session sits this turn out.
        if !lock(&busy).insert(index) {
            continue;
        }
        sessions += 1;
        let plan = plans[index].clone();
        let with_gateway = (turn / plans.len()).is_multiple_of(2);
        let (busy, failures, clients) = (busy.clone(), failures.clone(), clients.clone());
        running.spawn(async move {
            let kept = lock(&clients).get(&index).cloned();
            match one_session(&plan, with_gateway, kept).await {
                Ok(client) => {
                    lock(&clients).insert(index, client);
                }
                Err(error) => lock(&failures).push(format!("{}: {error}", plan.dev_id)),
            }
            lock(&busy).remove(&index);
        });
    }
    while running.join_next().await.is_some() {}
    let server_traffic = fleet
        .traffic()
        .await
        .ok()
        .zip(traffic_before)
        .map(|(after, before)| after.since(before));
    let server_cpu_us_per_message = fleet
        .cpu_secs()
        .zip(cpu_before)
        .zip(server_traffic)
        .filter(|(_, traffic)| traffic.messages > 0)
        .map(|((after, before), traffic)| (after - before) * 1e6 / traffic.messages as f64);
    samples.push(sample(fleet, started, sessions));
    let failures = std::mem::take(&mut *lock(&failures));
    for failure in &failures {
        note("soak-session", failure.clone());
    }
    // Growth is measured from the end of the first minute when the run is long
    // enough (caches fill first), else from the start.
    let baseline = samples
        .iter()
        .find(|s| s.at_secs >= 60.0 && samples.len() >= 8)
        .or(samples.first());
    let growth = |value: fn(&Sample) -> f64| {
        let first = baseline.map(value).unwrap_or(0.0);
        let last = samples.last().map(value).unwrap_or(0.0);
        if first > 0.0 { last / first } else { 0.0 }
    };
    Soak {
        secs: started.elapsed().as_secs_f64(),
        rate: options.rate,
        sessions,
        errors: failures.len(),
        server_rss_growth: growth(|s| s.server_rss_bytes as f64),
        server_fds_growth: growth(|s| s.server_fds as f64),
        simulator_rss_growth: growth(|s| s.simulator_rss_bytes as f64),
        simulator_fds_growth: growth(|s| s.simulator_fds as f64),
        samples,
        server_traffic,
        server_cpu_us_per_message,
    }
}

/// One session of the device, through the client it `kept` from its last one (or a
/// new one); returns the client to keep.
async fn one_session(
    plan: &DevicePlan,
    with_gateway: bool,
    kept: Option<HttpClient>,
) -> Result<HttpClient, String> {
    let agent = device::agent(plan).map_err(|(_, error)| error)?;
    let client = kept.unwrap_or_else(|| agent.client().closing_idle_after(IDLE_BETWEEN_SESSIONS));
    let agent = agent.with_client(client);
    let server_id = match with_gateway {
        true => plan.manager(),
        false => &plan.account.server_id,
    };
    let report = agent
        .session(server_id, Trigger::Client, None, Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    match report.outcome {
        ClientOutcome::Completed => Ok(agent.client().clone()),
        other => Err(format!("{other:?}")),
    }
}

fn sample(fleet: &Fleet, started: Instant, sessions: usize) -> Sample {
    let (server_rss_bytes, server_fds) = fleet.instances.iter().fold((0, 0), |(rss, fds), i| {
        (
            rss + i.memory().map_or(0, |(rss, _)| rss),
            fds + i.open_files().unwrap_or(0),
        )
    });
    Sample {
        at_secs: started.elapsed().as_secs_f64(),
        sessions,
        server_rss_bytes,
        server_fds,
        simulator_rss_bytes: crate::fleet::resident_bytes("self").unwrap_or(0),
        simulator_fds: crate::fleet::open_files("self").unwrap_or(0),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
