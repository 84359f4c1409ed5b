//! The firmware phase of `gwmo sim` (`--firmware-mib N`): after the rollout, an image
//! of N MiB is uploaded to the DM Server and a firmware campaign sends it to every
//! device. Each gateway fetches the image once into its image store and serves it to
//! the devices behind it. The devices come back from their state directories,
//! `concurrency` at a time, and ask their gateway for what it has for them (sessions
//! they start: thousands of idle devices listening for package 0 at once would need
//! more file descriptors than one process gets); each checks the package as it
//! streams in (size and SHA-256; a simulated device keeps none of it, `[firmware]
//! streaming`), installs it (simulated) and reports its FUMO result. Measured: the time
//! to the campaign's end, the bytes the DM Server sent (the WAN side: about one image
//! per gateway) and the bytes each gateway sent (the LAN side), and every device's
//! version afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_device::Agent;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::device::{self, DevicePlan};
use crate::fleet::Fleet;
use crate::gateways::Gateways;

/// The version the rehearsal installs.
pub const VERSION: &str = "sim-2.0";

/// What the firmware phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FirmwareReport {
    pub image_bytes: u64,
    pub devices: usize,
    /// From the campaign's start to its end.
    pub secs: f64,
    /// Devices the campaign counted done, and failed.
    pub updated: u64,
    pub failed: u64,
    /// Devices found running the new version afterwards (their own trees), their
    /// report sent.
    pub verified: usize,
    /// Bytes of the image the DM Server sent, and that in images.
    pub wan_bytes: u64,
    pub wan_images: f64,
    /// Bytes each gateway sent its devices: the least, the most, all together.
    pub lan_bytes_min: u64,
    pub lan_bytes_max: u64,
    pub lan_bytes_total: u64,
}

/// An image of `bytes` bytes that compresses to nothing smaller (xorshift output).
fn image(bytes: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// What the phase is asked to do.
pub struct Phase {
    pub image_mib: u64,
    /// What the DevIds of this run start with (the campaign's filter).
    pub prefix: String,
    /// Devices updating at the same time.
    pub concurrency: usize,
}

/// Runs the phase over the devices of `plans` (those whose rollout finished); `note`
/// hears every error.
pub async fn rehearse(
    fleet: &Fleet,
    gateways: &Gateways,
    plans: &[DevicePlan],
    phase: &Phase,
    note: &mut impl FnMut(&str, String),
) -> FirmwareReport {
    let mut report = FirmwareReport {
        image_bytes: phase.image_mib << 20,
        devices: plans.len(),
        ..FirmwareReport::default()
    };
    let admin = fleet.admin(0);
    let query = format!("name=sim-firmware&version={VERSION}&man=gwmo&model=gwmo-device");
    let artifact = match admin
        .upload_artifact(&query, image(report.image_bytes as usize))
        .await
    {
        Ok((201, artifact)) => artifact,
        Ok((status, body)) => {
            note("firmware-upload", format!("{status}: {body}"));
            return report;
        }
        Err(error) => {
            note("firmware-upload", error.to_string());
            return report;
        }
    };
    let id = artifact["id"].as_str().unwrap_or_default().to_owned();
    let request = json!({
        "name": "gwmo sim firmware",
        "firmware": { "artifact": id },
        "filter": { "search": phase.prefix },
        "wave_size": plans.len().clamp(1, 10_000),
        "error_threshold_percent": 100,
    });
    let started = Instant::now();
    let campaign = match admin
        .call(
            gwmo_net::Method::POST,
            "/api/campaigns",
            Some(&request.to_string()),
        )
        .await
    {
        Ok(campaign) => campaign,
        Err(error) => {
            note("firmware-campaign", error.to_string());
            return report;
        }
    };
    let limit = Arc::new(Semaphore::new(phase.concurrency.max(1)));
    let mut updating = JoinSet::new();
    for plan in plans {
        let (plan, limit) = (plan.clone(), limit.clone());
        updating.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let updated = update(&plan).await;
            (plan.dev_id, updated)
        });
    }
    let mut told = Instant::now();
    let mut done = 0;
    while let Some(joined) = updating.join_next().await {
        done += 1;
        match joined {
            Ok((_, Ok(()))) => report.verified += 1,
            Ok((dev_id, Err((kind, error)))) => note(kind, format!("{dev_id}: {error}")),
            Err(error) => note("firmware-device", error.to_string()),
        }
        if told.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "firmware: {done} of {} devices took their update",
                plans.len()
            );
            told = Instant::now();
        }
    }
    let path = format!("/api/campaigns/{}", campaign["id"]);
    let ended = wait_for_end(&admin, &path, plans.len()).await;
    report.secs = started.elapsed().as_secs_f64();
    match ended {
        Ok(campaign) => {
            report.updated = campaign["devices"]["done"].as_u64().unwrap_or_default();
            report.failed = campaign["devices"]["failed"].as_u64().unwrap_or_default();
            if report.failed > 0 {
                note(
                    "firmware-update",
                    format!("{} devices failed; campaign {campaign}", report.failed),
                );
            }
        }
        Err(error) => note("firmware-campaign", error),
    }
    for instance in 0..fleet.instances.len() {
        if let Ok(held) = fleet
            .admin(instance)
            .get(&format!("/api/artifacts/{id}"))
            .await
        {
            report.wan_bytes += held["bytes_served"].as_u64().unwrap_or_default();
        }
    }
    report.wan_images = report.wan_bytes as f64 / report.image_bytes.max(1) as f64;
    let mut lan = Vec::new();
    for gateway in &gateways.list {
        let served = match gateway.admin.get("/api/artifacts").await {
            Ok(held) => held["artifacts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["bytes_served"].as_u64().unwrap_or_default())
                .sum(),
            Err(error) => {
                note(
                    "firmware-gateway",
                    format!("{}: {error}", gateway.gateway_id),
                );
                0
            }
        };
        lan.push(served);
    }
    report.lan_bytes_min = lan.iter().copied().min().unwrap_or_default();
    report.lan_bytes_max = lan.iter().copied().max().unwrap_or_default();
    report.lan_bytes_total = lan.iter().sum();
    report
}

/// How often the phase says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The version a device runs and its FUMO State.
async fn firmware_of(agent: &Agent) -> (Option<String>, Option<String>) {
    agent
        .read_tree(|tree| {
            (
                tree.value("./DevDetail/FwV").map(str::to_owned),
                tree.value(&format!("{}/State", gwmo_tree::fumo::OBJECT))
                    .map(str::to_owned),
            )
        })
        .await
}

/// One device's update: sessions with its gateway until one brings the update, then
/// the device's worker runs it and reports it; done once the device runs the new
/// version and its report went out.
async fn update(plan: &DevicePlan) -> Result<(), (&'static str, String)> {
    let agent = device::open(plan)?;
    let worker = agent.clone();
    let working = tokio::spawn(async move { worker.run_firmware_jobs().await });
    let updated = async {
        let deadline = Instant::now() + plan.wait;
        loop {
            device::session(&agent, plan.manager(), plan.wait).await?;
            if firmware_of(&agent).await.1.as_deref() != Some("10") {
                break;
            }
            if Instant::now() >= deadline {
                return Err((
                    "firmware-take",
                    "its gateway had no update for it".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let job = plan.state_dir.join(gwmo_device::firmware::JOB_FILE);
        loop {
            let (version, fumo) = firmware_of(&agent).await;
            let ended = matches!(fumo.as_deref(), Some("100" | "80" | "20"));
            if ended && !job.exists() {
                return match (version.as_deref(), fumo.as_deref()) {
                    (Some(VERSION), Some("100")) => Ok(()),
                    _ => Err((
                        "firmware-version",
                        format!("FwV {version:?}, FUMO State {fumo:?}"),
                    )),
                };
            }
            if Instant::now() >= deadline {
                return Err((
                    "firmware-report",
                    format!("no reported end in time: FUMO State {fumo:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    working.abort();
    let _ = working.await;
    updated
}

/// Polls the campaign until it is no longer running; prints its progress every 10 s.
async fn wait_for_end(
    admin: &gwmo_wiring::AdminClient,
    path: &str,
    devices: usize,
) -> Result<Value, String> {
    // A device's update takes seconds; the whole, minutes at most on one machine.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut told = Instant::now();
    loop {
        let campaign = admin.get(path).await.map_err(|e| e.to_string())?;
        if campaign["state"] != "running" {
            return Ok(campaign);
        }
        if told.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "firmware: {} of {devices} devices updated, {} failed",
                campaign["devices"]["done"], campaign["devices"]["failed"]
            );
            told = Instant::now();
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the campaign is still running after an hour: {campaign}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
