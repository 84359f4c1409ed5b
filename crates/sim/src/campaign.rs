//! The campaign phase of `gwmo sim` (`--campaign`): after the rollout, the simulator
//! plays an operator running one campaign over every device of the run, behind the
//! gateways and managed directly, and plays the devices that take it.
//!
//! The campaign reads [`READING`] (a Get) in waves of a tenth of the devices, with an
//! error threshold of 10 %. A quarter of the first wave's devices are of a model that
//! lacks the node: they answer 404, the wave fails past its threshold and the
//! campaign pauses. The simulator then gives those devices the node (as an update of
//! theirs would), resumes the campaign (accepting the first wave's failures), lets it
//! finish, and retries the failed devices in a wave of their own: in the end every
//! device is done, with its reading.
//!
//! The devices do not listen for package 0 (thousands of idle listeners would need
//! more file descriptors than one process gets): the simulator watches which devices
//! the DM Server sent the command to and has each start sessions with whoever manages
//! it (its gateway, once the gateway's fan-out queued it; or the DM Server) until one
//! brings the command, `concurrency` devices at a time. Measured: the time to the end,
//! the waves as they started, the sessions and DM messages per second while it ran,
//! the servers' CPU and memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_session::{ClientOutcome, Trigger};
use gwmo_tree::Format;
use gwmo_wiring::AdminClient;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::device::{self, DevicePlan};
use crate::fleet::Fleet;
use crate::gateways::Gateways;

/// The node the campaign reads; the devices made to lack it answer 404.
pub const READING: &str = "./Vendor/gwmo/Battery";

/// The campaign's waves: this share of the devices each, in percent.
const WAVE_PERCENT: u8 = 10;
/// The share of a wave that may fail before the campaign pauses, in percent.
const THRESHOLD_PERCENT: u8 = 10;
/// One device of the first wave in this many lacks [`READING`]: over the threshold.
const LACKING_ONE_IN: usize = 4;
/// How often the simulator looks at the campaign.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// The longest the whole campaign may take.
const PATIENCE: Duration = Duration::from_secs(3600);

/// What the campaign phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignReport {
    /// Devices the campaign targeted, behind gateways and directly managed.
    pub devices: u64,
    pub behind_gateways: u64,
    pub direct: u64,
    pub wave_size: u64,
    pub threshold_percent: u8,
    /// Devices of the first wave made to lack the node it reads.
    pub lacking: usize,
    /// Why the campaign paused, and when (seconds from its start).
    pub paused: Option<String>,
    pub paused_at_secs: Option<f64>,
    /// Failed devices tried again after the campaign finished.
    pub retried: u64,
    /// At the end: devices done and failed.
    pub done: u64,
    pub failed: u64,
    /// Waves in all, the retry's included.
    pub waves: u64,
    /// From the campaign's creation to its end, the retry's wave included.
    pub secs: f64,
    /// What happened when (seconds from the start): each wave, the pause, the resume,
    /// the retry, the end.
    pub timeline: Vec<Mark>,
    /// Device sessions the simulator ran for the campaign (those that found nothing
    /// yet included), and per second of the campaign.
    pub sessions: usize,
    pub sessions_per_sec: f64,
    /// DM messages the server instances answered meanwhile (gateways' sessions
    /// included), and per second.
    pub server_messages: u64,
    pub server_messages_per_sec: f64,
    /// CPU the server instances used meanwhile (servers the simulator started), and
    /// this process (every gateway and device).
    pub server_cpu_secs: Option<f64>,
    pub simulator_cpu_secs: Option<f64>,
    /// The servers' resident memory at its highest while the campaign ran (sampled
    /// every half second), and their peak since they started.
    pub server_rss_max_bytes: Option<u64>,
    pub server_peak_bytes: Option<u64>,
    /// Fan-outs the gateways ran for the campaign, and reports of them they sent the
    /// DM Server (their `/metrics`): one each, or a report went twice.
    pub fanouts_run: u64,
    pub fanouts_reported: u64,
}

/// One moment of the campaign.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    /// Seconds from the campaign's creation.
    pub secs: f64,
    pub event: String,
}

/// Runs the campaign over the devices of `plans` (those whose rollout finished), whose
/// DevIds start with `prefix`; `note` hears every error.
pub async fn rehearse(
    fleet: &Fleet,
    gateways: &Gateways,
    plans: &[DevicePlan],
    prefix: &str,
    concurrency: usize,
    note: &mut impl FnMut(&str, String),
) -> CampaignReport {
    let mut report = CampaignReport {
        behind_gateways: plans.iter().filter(|p| p.gateway_id.is_some()).count() as u64,
        direct: plans.iter().filter(|p| p.gateway_id.is_none()).count() as u64,
        threshold_percent: THRESHOLD_PERCENT,
        ..CampaignReport::default()
    };
    let admin = fleet.admin(0);
    let messages_before = fleet.messages_answered().await.unwrap_or_default();
    let cpu_before = fleet.cpu_secs();
    let simulator_cpu_before = crate::fleet::cpu_secs("self");
    let fanouts_before = fanout_counters(fleet, gateways, note).await;
    let request = json!({
        "name": "gwmo sim: read the battery",
        "command": { "op": "Get", "target": READING },
        "filter": { "search": prefix },
        "wave_percent": WAVE_PERCENT,
        "error_threshold_percent": THRESHOLD_PERCENT,
    });
    let started = Instant::now();
    let created = admin
        .call(
            gwmo_net::Method::POST,
            "/api/campaigns",
            Some(&request.to_string()),
        )
        .await;
    let campaign = match created {
        Ok(campaign) => campaign,
        Err(error) => {
            note("campaign-create", error.to_string());
            return report;
        }
    };
    let path = format!("/api/campaigns/{}", campaign["id"]);
    report.devices = total_devices(&campaign);
    report.wave_size = campaign["wave_size"].as_u64().unwrap_or_default();
    let mut lacking: HashSet<String> = match every_page(&admin, &path, "wave=1").await {
        Ok(first_wave) => first_wave
            .iter()
            .step_by(LACKING_ONE_IN)
            .filter_map(|target| target["dev_id"].as_str().map(str::to_owned))
            .collect(),
        Err(error) => {
            note("campaign-read", error);
            return report;
        }
    };
    report.lacking = lacking.len();

    let plans: HashMap<&str, &DevicePlan> = plans
        .iter()
        .map(|plan| (plan.dev_id.as_str(), plan))
        .collect();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut taking = JoinSet::new();
    // Each device once per wave it is sent in (a retry sends it again, in a new wave).
    let mut pulled: HashSet<(String, i64)> = HashSet::new();
    let mut wave_seen = 0;
    let mut server_rss_max = None;
    let mut retried = false;
    let at = || started.elapsed().as_secs_f64();
    let mark = |event: String| Mark { secs: at(), event };
    let end = loop {
        if started.elapsed() > PATIENCE {
            note("campaign-end", format!("still running after {PATIENCE:?}"));
            break None;
        }
        while let Some(joined) = taking.try_join_next() {
            report.sessions += tally(joined, note);
        }
        server_rss_max = server_rss_max.max(fleet_rss(fleet));
        let campaign = match admin.get(&path).await {
            Ok(campaign) => campaign,
            Err(error) => {
                note("campaign-read", error.to_string());
                break None;
            }
        };
        let wave = campaign["wave"].as_i64().unwrap_or_default();
        if wave > wave_seen {
            wave_seen = wave;
            report.timeline.push(mark(format!("wave {wave} started")));
        }
        match campaign["state"].as_str() {
            Some("paused") => {
                let reason = campaign["reason"].as_str().unwrap_or_default().to_owned();
                report.timeline.push(mark(format!("paused: {reason}")));
                report.paused_at_secs = Some(at());
                report.paused = Some(reason);
                // The operator's fix: the devices that lacked the node get it.
                lacking.clear();
                if let Err(error) = post(&admin, &path, "resume").await {
                    note("campaign-resume", error);
                    break None;
                }
                report.timeline.push(mark("resumed".into()));
                continue;
            }
            Some("done") if campaign["devices"]["failed"].as_u64() > Some(0) && !retried => {
                retried = true;
                match post(&admin, &path, "retry").await {
                    Ok(answer) => report.retried = answer["retried"].as_u64().unwrap_or_default(),
                    Err(error) => {
                        note("campaign-retry", error);
                        break None;
                    }
                }
                report
                    .timeline
                    .push(mark(format!("{} failed devices retried", report.retried)));
                continue;
            }
            Some("running") => {}
            _ => break Some(campaign),
        }
        let sent = match every_page(&admin, &path, "state=sent").await {
            Ok(sent) => sent,
            Err(error) => {
                note("campaign-read", error);
                break None;
            }
        };
        for target in sent {
            let (Some(dev_id), Some(wave)) = (target["dev_id"].as_str(), target["wave"].as_i64())
            else {
                continue;
            };
            if !pulled.insert((dev_id.to_owned(), wave)) {
                continue;
            }
            let Some(plan) = plans.get(dev_id).map(|plan| (*plan).clone()) else {
                note("campaign-device", format!("{dev_id}: not of this run"));
                continue;
            };
            let lacks = lacking.contains(dev_id);
            let limit = limit.clone();
            taking.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let taken = take(&plan, lacks).await;
                (plan.dev_id, taken)
            });
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    while let Some(joined) = taking.join_next().await {
        report.sessions += tally(joined, note);
    }
    report.secs = at();
    if let Some(campaign) = end {
        let state = campaign["state"].as_str().unwrap_or("?");
        report.timeline.push(mark(state.to_owned()));
        report.done = campaign["devices"]["done"].as_u64().unwrap_or_default();
        report.failed = campaign["devices"]["failed"].as_u64().unwrap_or_default();
        report.waves = campaign["waves"].as_array().map_or(0, |w| w.len() as u64);
        if campaign["state"] != "done" || report.done != report.devices {
            note(
                "campaign-end",
                format!(
                    "{} of {} devices done: {campaign}",
                    report.done, report.devices
                ),
            );
        }
    }
    let secs = report.secs.max(f64::EPSILON);
    report.sessions_per_sec = report.sessions as f64 / secs;
    report.server_messages = fleet
        .messages_answered()
        .await
        .unwrap_or_default()
        .saturating_sub(messages_before);
    report.server_messages_per_sec = report.server_messages as f64 / secs;
    report.server_cpu_secs = fleet.cpu_secs().zip(cpu_before).map(|(a, b)| a - b);
    report.simulator_cpu_secs = crate::fleet::cpu_secs("self")
        .zip(simulator_cpu_before)
        .map(|(a, b)| a - b);
    let fanouts_after = fanout_counters(fleet, gateways, note).await;
    report.fanouts_run = fanouts_after.0.saturating_sub(fanouts_before.0);
    report.fanouts_reported = fanouts_after.1.saturating_sub(fanouts_before.1);
    if report.fanouts_reported != report.fanouts_run {
        note(
            "fanout-report",
            format!(
                "the gateways ran {} fan-outs and sent {} reports of them",
                report.fanouts_run, report.fanouts_reported
            ),
        );
    }
    report.server_rss_max_bytes = server_rss_max;
    report.server_peak_bytes = fleet
        .instances
        .iter()
        .map(|i| i.memory().map(|(_, peak)| peak))
        .sum();
    report
}

/// Fan-outs all the gateways ran so far, and reports of them they sent.
async fn fanout_counters(
    fleet: &Fleet,
    gateways: &Gateways,
    note: &mut impl FnMut(&str, String),
) -> (u64, u64) {
    let names = [
        "gwmo_gateway_fanouts_run_total",
        "gwmo_gateway_fanouts_reported_total",
    ];
    let mut totals = (0, 0);
    for gateway in &gateways.list {
        match fleet.counters(gateway.admin.base_url(), &names).await {
            Ok(counted) => {
                totals.0 += counted[0];
                totals.1 += counted[1];
            }
            Err(error) => note(
                "campaign-gateway",
                format!("{}: {error}", gateway.gateway_id),
            ),
        }
    }
    totals
}

/// The devices a campaign targets, over every state.
fn total_devices(campaign: &Value) -> u64 {
    campaign["devices"]
        .as_object()
        .map_or(0, |states| states.values().filter_map(Value::as_u64).sum())
}

/// The servers' resident memory now, all together.
fn fleet_rss(fleet: &Fleet) -> Option<u64> {
    fleet
        .instances
        .iter()
        .map(|i| i.memory().map(|(rss, _)| rss))
        .sum()
}

/// Every device of the campaign at `path` that `query` selects, page by page.
async fn every_page(admin: &AdminClient, path: &str, query: &str) -> Result<Vec<Value>, String> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = admin
            .get(&format!("{path}/devices?{query}&limit=1000&after={after}"))
            .await
            .map_err(|e| e.to_string())?;
        all.extend(page["devices"].as_array().into_iter().flatten().cloned());
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return Ok(all),
        }
    }
}

/// `POST {path}/{action}`.
async fn post(admin: &AdminClient, path: &str, action: &str) -> Result<Value, String> {
    admin
        .call(gwmo_net::Method::POST, &format!("{path}/{action}"), None)
        .await
        .map_err(|e| e.to_string())
}

/// The sessions one device ran; its error, if any, to `note`.
fn tally(
    joined: Result<(String, Taken), tokio::task::JoinError>,
    note: &mut impl FnMut(&str, String),
) -> usize {
    match joined {
        Ok((dev_id, taken)) => {
            if let Some(error) = taken.error {
                note("campaign-take", format!("{dev_id}: {error}"));
            }
            taken.sessions
        }
        Err(error) => {
            note("campaign-take", error.to_string());
            0
        }
    }
}

/// What one device's turn came to.
struct Taken {
    sessions: usize,
    error: Option<String>,
}

/// One device's turn: it has the node (unless `lacks`) and starts sessions with whoever
/// manages it until one brings a command (a session that brings none ends at the
/// server's first message), pausing between tries.
async fn take(plan: &DevicePlan, lacks: bool) -> Taken {
    let mut taken = Taken {
        sessions: 0,
        error: None,
    };
    let agent = match device::open(plan) {
        Ok(agent) => agent,
        Err((_, error)) => {
            taken.error = Some(error);
            return taken;
        }
    };
    if !lacks {
        let reading = (40 + plan.dev_id.bytes().map(u32::from).sum::<u32>() % 60).to_string();
        let given = agent
            .update_tree(|tree| tree.set_leaf(READING, &reading, Format::Int))
            .await;
        if let Err(error) = given {
            taken.error = Some(error.to_string());
            return taken;
        }
    }
    let deadline = Instant::now() + plan.wait;
    let mut backoff =
        gwmo_device::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
    loop {
        taken.sessions += 1;
        let session = agent
            .session(plan.manager(), Trigger::Client, None, Vec::new())
            .await;
        let last = match session {
            Ok(report) if report.outcome == ClientOutcome::Completed && report.messages >= 2 => {
                return taken;
            }
            Ok(report) => format!("no command yet ({:?})", report.outcome),
            Err(error) => error.to_string(),
        };
        let wait = backoff.next_wait();
        if Instant::now() + wait >= deadline {
            taken.error = Some(format!(
                "no command from {} in time: {last}",
                plan.manager()
            ));
            return taken;
        }
        tokio::time::sleep(wait).await;
    }
}

impl CampaignReport {
    /// The report's lines in the summary table, through `row`.
    pub fn write_rows(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        row: impl Fn(&mut std::fmt::Formatter<'_>, &str, String) -> std::fmt::Result,
    ) -> std::fmt::Result {
        let mib = |bytes: Option<u64>| {
            bytes.map_or("-".to_owned(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        row(
            f,
            "campaign: devices (gateways / direct)",
            format!(
                "{} ({} / {})",
                self.devices, self.behind_gateways, self.direct
            ),
        )?;
        row(
            f,
            "campaign: waves of / threshold",
            format!(
                "{} of {} / {}%",
                self.waves, self.wave_size, self.threshold_percent
            ),
        )?;
        row(
            f,
            "campaign: paused",
            match (&self.paused, self.paused_at_secs) {
                (Some(reason), Some(at)) => format!("at {at:.1} s: {reason}"),
                _ => "never".to_owned(),
            },
        )?;
        row(
            f,
            "campaign: done / failed / retried",
            format!("{} / {} / {}", self.done, self.failed, self.retried),
        )?;
        row(f, "campaign: time to finish", format!("{:.1} s", self.secs))?;
        row(
            f,
            "campaign: device sessions / per s",
            format!("{} / {:.0}", self.sessions, self.sessions_per_sec),
        )?;
        row(
            f,
            "campaign: server DM messages / per s",
            format!(
                "{} / {:.0}",
                self.server_messages, self.server_messages_per_sec
            ),
        )?;
        let secs = |cpu: Option<f64>| cpu.map_or("-".to_owned(), |secs| format!("{secs:.1} s"));
        row(
            f,
            "campaign: server CPU / RSS max / peak",
            format!(
                "{} / {} / {}",
                secs(self.server_cpu_secs),
                mib(self.server_rss_max_bytes),
                mib(self.server_peak_bytes)
            ),
        )?;
        row(f, "campaign: simulator CPU", secs(self.simulator_cpu_secs))?;
        row(
            f,
            "campaign: gateway fan-outs run / reported",
            format!("{} / {}", self.fanouts_run, self.fanouts_reported),
        )?;
        for mark in &self.timeline {
            row(
                f,
                "campaign: timeline",
                format!("{:7.1} s  {}", mark.secs, mark.event),
            )?;
        }
        Ok(())
    }
}
