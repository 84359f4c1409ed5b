//! `gwmo sim`: a rehearsal of a rollout. Many End Devices and DM Gateways in one
//! process against real `gwmo server` instances (started here, or already running),
//! over real HTTP on loopback with real authentication. Each device is brought to its
//! gateway by figure x (server-assisted), figure z (local bootstrap, then validation),
//! or half of each; afterwards every device's association and commands are checked
//! in the server's store. The result is a [`Report`].

mod baseline;
mod campaign;
mod device;
mod firmware;
mod fleet;
mod gateways;
mod progress;
pub mod report;
pub mod soak;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_device::settings::WireEncoding;
use gwmo_gateway::settings::Approaches;
use gwmo_session::ClientOutcome;
use progress::Progress;
pub use progress::ProgressOutput;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use device::Approach;
pub use fleet::Servers;
pub use report::Report;

use device::{DeviceOutcome, DevicePlan};
use fleet::Fleet;
use gateways::GatewayPlan;
use report::{Bootstrapped, CpuCost, ErrorKind, Latency, ServerMemory, Sessions, Verified};

/// Which approaches the simulated devices use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproachMix {
    ServerAssisted,
    Local,
    /// Even devices server-assisted, odd ones local.
    Both,
}

impl ApproachMix {
    fn for_device(self, index: usize) -> Approach {
        match self {
            ApproachMix::ServerAssisted => Approach::ServerAssisted,
            ApproachMix::Local => Approach::Local,
            ApproachMix::Both if index.is_multiple_of(2) => Approach::ServerAssisted,
            ApproachMix::Both => Approach::Local,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ApproachMix::ServerAssisted => "server-assisted",
            ApproachMix::Local => "local",
            ApproachMix::Both => "both",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// End Devices behind the gateways.
    pub devices: usize,
    pub gateways: usize,
    pub approach: ApproachMix,
    /// End Devices the DM Server manages itself, without a gateway.
    pub direct: usize,
    pub servers: Servers,
    /// Devices rolling out at the same time.
    pub concurrency: usize,
    /// Also measure the raw HTTP ceiling of the same stack.
    pub baseline: bool,
    /// The longest a device waits for a session the other side starts.
    pub wait: Duration,
    /// Where the rollout's progress goes.
    pub progress: ProgressOutput,
    /// After the rollout, keep devices holding sessions at a steady rate for a while,
    /// sampling memory and file descriptors.
    pub soak: Option<soak::SoakOptions>,
    /// Plain HTTP everywhere instead of TLS.
    pub plain_http: bool,
    /// The development CA to issue the simulation's certificates from (made when
    /// absent; none: one for this run only). External servers must trust it.
    pub pki: Option<PathBuf>,
    /// After the rollout, a firmware campaign of an image of this many MiB to every
    /// device (`firmware.rs`).
    pub firmware_mib: Option<u64>,
    /// After the rollout (and the firmware phase), a campaign over every device in
    /// waves, one failing past its threshold (`campaign.rs`).
    pub campaign: bool,
}

impl SimOptions {
    /// How device `index` is brought under management: the first `devices` through
    /// their gateways, the `direct` ones after them by the DM Server alone.
    fn approach_of(&self, index: usize) -> Approach {
        match index < self.devices {
            true => self.approach.for_device(index),
            false => Approach::Direct,
        }
    }

    /// Every device of the run.
    fn all_devices(&self) -> usize {
        self.devices + self.direct
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the DM Server did not start: {0}")]
    ServerStart(String),
    #[error("admin API: {0}")]
    Admin(String),
    #[error("bad plan: {0}")]
    Plan(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Wiring(#[from] gwmo_wiring::WiringError),
}

/// Runs the simulation and returns what it measured. Errors of single devices are in
/// the report; an `Err` means the simulation itself could not run.
pub async fn run(options: SimOptions) -> Result<Report, SimError> {
    if options.devices == 0 || options.gateways == 0 {
        return Err(SimError::Plan("at least one device and one gateway"));
    }
    // The servers' files (their SQLite store) on the ordinary disk, as in production;
    // the simulated devices' and gateways' state in memory-backed files when the
    // machine has them: 10,000 devices each syncing its own flash do not share one
    // disk in real life.
    let server_scratch = tempfile::tempdir().map_err(|e| SimError::Io(std::env::temp_dir(), e))?;
    let shm = std::path::Path::new("/dev/shm");
    let scratch = match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .map_err(|e| SimError::Io(shm.to_owned(), e))?;
    let setup_started = Instant::now();
    let pki = options
        .pki
        .clone()
        .unwrap_or_else(|| server_scratch.path().join("pki"));
    let tls = fleet::tls(options.plain_http, &pki)?;
    let fleet = Arc::new(Fleet::start(&options.servers, tls, server_scratch.path()).await?);
    // What the servers and this process hold before any device: the fixed part, kept
    // out of the memory per device.
    let servers_at_start: u64 = fleet
        .instances
        .iter()
        .filter_map(|i| i.memory())
        .map(|(rss, _)| rss)
        .sum();
    let simulator_at_start = fleet::resident_bytes("self");
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let gateway_id = |g: usize| format!("sim{run_id}-gw{g:04}");
    let dev_id = |i: usize| format!("IMEI:sim{run_id}-{i:06}");
    let userpin = |i: usize| format!("{:08}", (i * 7919) % 100_000_000);
    let instances = fleet.instances.len();

    let plans = (0..options.gateways)
        .map(|g| GatewayPlan {
            gateway_id: gateway_id(g),
            instance: g % instances,
            approaches: Approaches {
                server_assisted: options.approach != ApproachMix::Local,
                local: options.approach != ApproachMix::ServerAssisted,
            },
            userpins: (g..options.devices)
                .step_by(options.gateways)
                .filter(|&i| options.approach.for_device(i) == Approach::Local)
                .map(|i| (dev_id(i), userpin(i)))
                .collect(),
        })
        .collect();
    let gateways = gateways::start(&fleet, plans, scratch.path()).await?;

    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut enrolling = JoinSet::new();
    for i in 0..options.all_devices() {
        let (fleet, limit, dev_id) = (fleet.clone(), limit.clone(), dev_id(i));
        enrolling.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, fleet.enroll(i % instances, &dev_id).await)
        });
    }
    let mut enrollments = vec![serde_json::Value::Null; options.all_devices()];
    while let Some(joined) = enrolling.join_next().await {
        if let Ok((i, enrollment)) = joined {
            enrollments[i] = enrollment?;
        }
    }
    let baseline = match options.baseline {
        true => Some(baseline::measure(&fleet, options.concurrency, options.devices * 2).await?),
        false => None,
    };
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let mut progress = Progress::new(options.progress, options.all_devices());
    let traffic_before = fleet.traffic().await?;
    let cpu_before = fleet.cpu_secs();
    let simulator_cpu_before = fleet::cpu_secs("self");
    let rollout_started = Instant::now();
    let mut rolling = JoinSet::new();
    let mut plans = Vec::with_capacity(options.all_devices());
    for (i, enrollment) in enrollments.iter().enumerate() {
        let approach = options.approach_of(i);
        let gateway = (approach != Approach::Direct).then(|| &gateways.list[i % options.gateways]);
        let plan = DevicePlan {
            dev_id: dev_id(i),
            approach,
            gateway_id: gateway.map(|g| g.gateway_id.clone()),
            bootstrap_url: gateway.and_then(|g| g.bootstrap_url.clone()),
            userpin: userpin(i),
            encoding: match (i / 2) % 2 {
                0 => WireEncoding::Xml,
                _ => WireEncoding::Wbxml,
            },
            account: gwmo_wiring::enrollment_account(enrollment)?,
            state_dir: scratch.path().join("devices").join(i.to_string()),
            wait: options.wait,
            tls: fleet.tls.clone(),
            streams_firmware: options.firmware_mib.is_some(),
        };
        plans.push(plan.clone());
        let limit = limit.clone();
        rolling.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let approach = plan.approach;
            (i, approach, device::roll_out(plan).await)
        });
    }
    let mut outcomes: Vec<(usize, Approach, DeviceOutcome)> = Vec::new();
    while let Some(joined) = rolling.join_next().await {
        if let Ok(outcome) = joined {
            outcomes.push(outcome);
        }
        progress.inc();
    }
    let rollout_secs = rollout_started.elapsed().as_secs_f64();
    let server_traffic = fleet.traffic().await?.since(traffic_before);
    let server_round_trips = server_traffic.messages;
    let server_cpu_secs = fleet
        .cpu_secs()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let simulator_cpu_secs = fleet::cpu_secs("self")
        .zip(simulator_cpu_before)
        .map(|(after, before)| after - before);
    progress.finish();

    let mut errors: BTreeMap<String, ErrorKind> = BTreeMap::new();
    let mut note = |kind: &str, example: String| {
        let entry = errors.entry(kind.to_owned()).or_default();
        entry.count += 1;
        if entry.example.is_empty() {
            entry.example = example;
        }
    };
    let mut bootstrapped = Bootstrapped::default();
    let mut latencies = Vec::new();
    // A session that failed is no error by itself: the device tries again, or the
    // server wakes it again. Only a device whose rollout did not finish is one.
    let mut failed_sessions = 0;
    for (i, approach, outcome) in &outcomes {
        for session in &outcome.sessions {
            match &session.result {
                Ok(report) if report.outcome == ClientOutcome::Completed => {
                    latencies.push(session.elapsed)
                }
                _ => failed_sessions += 1,
            }
        }
        match &outcome.error {
            Some((kind, error)) => note(kind, format!("{}: {error}", dev_id(*i))),
            None => match approach {
                Approach::ServerAssisted => bootstrapped.server_assisted += 1,
                Approach::Local => bootstrapped.local += 1,
                Approach::Direct => bootstrapped.direct += 1,
            },
        }
    }
    let verified = verify(&fleet, &options, &dev_id, &gateway_id, &mut note).await;
    // The devices whose rollout finished, and what their DevIds start with.
    let rolled_out: Vec<DevicePlan> = outcomes
        .iter()
        .filter(|(_, _, outcome)| outcome.error.is_none())
        .map(|(i, _, _)| plans[*i].clone())
        .collect();
    let prefix = format!("IMEI:sim{run_id}-");
    let firmware = match options.firmware_mib {
        Some(mib) => {
            let phase = firmware::Phase {
                image_mib: mib,
                prefix: prefix.clone(),
                concurrency: options.concurrency,
            };
            Some(firmware::rehearse(&fleet, &gateways, &rolled_out, &phase, &mut note).await)
        }
        None => None,
    };
    let campaign = match options.campaign {
        true => Some(
            campaign::rehearse(
                &fleet,
                &gateways,
                &rolled_out,
                &prefix,
                options.concurrency,
                &mut note,
            )
            .await,
        ),
        false => None,
    };
    let soak = match options.soak {
        Some(soak) => Some(soak::run(&fleet, &plans, soak, &mut note).await),
        None => None,
    };
    gateways.stop().await;

    let rollout = rollout_secs.max(f64::EPSILON);
    let completed_sessions = latencies.len();
    let server_round_trips_per_sec = server_round_trips as f64 / rollout;
    let server_memory = memory(&fleet, servers_at_start, options.all_devices());
    let simulator_peak_bytes = fleet::peak_bytes("self");
    Ok(Report {
        devices: options.devices,
        direct: options.direct,
        gateways: options.gateways,
        approach: options.approach.name().into(),
        store: fleet.store.clone(),
        server_instances: instances,
        concurrency: options.concurrency,
        setup_secs,
        rollout_secs,
        bootstrapped,
        sessions: Sessions {
            failed: failed_sessions,
            total: latencies.len(),
            per_sec: latencies.len() as f64 / rollout,
            latency_ms: Latency::of(latencies),
        },
        server_round_trips,
        server_round_trips_per_sec,
        server_traffic,
        server_cpu_secs,
        server_round_trips_per_cpu_sec: server_cpu_secs
            .filter(|secs| *secs > 0.0)
            .map(|secs| server_round_trips as f64 / secs),
        cpu: CpuCost::of(
            server_cpu_secs,
            simulator_cpu_secs,
            server_round_trips,
            completed_sessions,
            options.all_devices(),
        ),
        baseline,
        server_memory,
        simulator_peak_bytes,
        simulator_bytes_per_device: simulator_peak_bytes
            .zip(simulator_at_start)
            .map(|(peak, start)| peak.saturating_sub(start) / options.all_devices().max(1) as u64),
        verified,
        firmware,
        campaign,
        soak,
        errors,
    })
}

/// Checks every device in the server's store: associated with its gateway by the
/// approach it used, every command the server queued for it done with 200, and none
/// queued twice (a duplicated bootstrap or validation).
async fn verify(
    fleet: &Arc<Fleet>,
    options: &SimOptions,
    dev_id: &impl Fn(usize) -> String,
    gateway_id: &impl Fn(usize) -> String,
    note: &mut impl FnMut(&str, String),
) -> Verified {
    let mut verified = Verified::default();
    let mut reading = JoinSet::new();
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    for i in 0..options.all_devices() {
        let (fleet, limit, id) = (fleet.clone(), limit.clone(), dev_id(i));
        reading.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let path = format!("/api/devices/{id}");
            (i, fleet.admin(i).get(&path).await)
        });
    }
    while let Some(joined) = reading.join_next().await {
        let Ok((i, device)) = joined else { continue };
        let device = match device {
            Ok(device) => device,
            Err(error) => {
                note("verify-read", error.to_string());
                continue;
            }
        };
        let origin = match options.approach_of(i) {
            Approach::ServerAssisted => Some(gwmo_tree::Origin::ServerAssisted),
            Approach::Local => Some(gwmo_tree::Origin::LocalBootstrap),
            Approach::Direct => None,
        };
        let association = &device["gateway"];
        let expected = origin.map(|origin| (gateway_id(i % options.gateways), origin.as_str()));
        let associated = match &expected {
            Some((gateway, origin)) => {
                association["gateway_id"] == gateway.as_str() && association["origin"] == *origin
            }
            None => association.is_null(),
        };
        if associated {
            verified.associations += 1;
        } else {
            note(
                "association",
                format!("{}: expected {expected:?}, found {association}", dev_id(i)),
            );
        }
        let commands = device["commands"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut specs: Vec<String> = commands.iter().map(|c| c["spec"].to_string()).collect();
        specs.sort();
        if let Some(twice) = specs.windows(2).find(|pair| pair[0] == pair[1]) {
            note("duplicate-command", format!("{}: {}", dev_id(i), twice[0]));
        }
        for command in commands {
            if command["state"] == "done" && command["status"] == 200 {
                verified.commands += 1;
            } else {
                note("command", format!("{}: {command}", dev_id(i)));
            }
        }
    }
    verified
}

/// The servers' memory now, and per device: what their peak grew by since they
/// started (`at_start`), over the devices.
fn memory(fleet: &Fleet, at_start: u64, devices: usize) -> Option<ServerMemory> {
    let measured: Vec<(u64, u64)> = fleet.instances.iter().filter_map(|i| i.memory()).collect();
    if measured.is_empty() {
        return None;
    }
    let rss_bytes = measured.iter().map(|m| m.0).sum();
    let peak_bytes: u64 = measured.iter().map(|m| m.1).sum();
    Some(ServerMemory {
        rss_bytes,
        peak_bytes,
        at_start_bytes: at_start,
        peak_bytes_per_device: peak_bytes.saturating_sub(at_start) / devices.max(1) as u64,
    })
}
