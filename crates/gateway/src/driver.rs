//! Performs what the reconciler decides: reads the gateway's tree and its end-device
//! store, asks `reconcile` what to do, and does it through the agent (the tree, the
//! sessions with the DM Server) and the embedded server's [`EndDevices`] (store calls
//! on blocking threads, package 0). The fan-outs it starts run in their own tasks and
//! wait for the end devices' outcomes on the store's change signal, not a timer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gwmo_bootstrap::{EnrollError, Enrollment};
use gwmo_device::Agent;
use gwmo_net::unix_now;
use gwmo_proto::{Alert, Data, Item, Location, Meta, codes};
use gwmo_server::{CommandSpec, CommandState, EndDevices, NewEndDevice};
use gwmo_session::{ClientOutcome, Trigger};
use gwmo_tree::gwmo::{entry, fanout};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::GatewayError;
use crate::images::{self, ImageStore};
use crate::inventory::{self, FanoutEntry, FanoutStatus, InventoryEntry, LocalBootstrap};
use crate::known::{InventoryView, Known};
use crate::metrics::GatewayMetrics;
use crate::reconcile::{Action, Observation, Policy, Report, reconcile};
use crate::report_retry::ReportRetry;
use crate::settings::GatewaySettings;

/// How long a fan-out waits for its end devices before it reports what it has.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fan-out of a firmware update waits for its end devices' results (their
/// downloads from the gateway and installs) before it reports what it has.
const FIRMWARE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Brings the Device Inventory and the end-device store in line, and runs fan-outs.
#[derive(Clone)]
pub struct Driver {
    settings: Arc<GatewaySettings>,
    agent: Arc<Agent>,
    end_devices: EndDevices,
    /// One sync at a time: the bootstrap server's and the main loop's syncs running
    /// together both saw a device not yet reported and sent its Device Attach twice
    /// (found by `gwmo sim`: a second validation left queued on the server). What the
    /// syncs read of the end-device store is kept under the same lock.
    syncing: Arc<tokio::sync::Mutex<Known>>,
    /// The fan-outs this process is running (a fan-out marked running in the tree but
    /// not here was left by a gateway that stopped: it is resumed).
    fanouts: Arc<std::sync::Mutex<HashSet<String>>>,
    /// When time alone next calls for a sync, as the last sync's plan said.
    check_again_at: Arc<watch::Sender<Option<i64>>>,
    /// Whether reports to the DM Server wait after a failure, and until when (the
    /// gateway's loop syncs then).
    report_retry: Arc<watch::Sender<ReportRetry>>,
    /// The firmware images kept for the end devices.
    images: Arc<ImageStore>,
    /// What the gateway counts of its own (`/metrics`).
    metrics: Arc<GatewayMetrics>,
}

impl Driver {
    pub fn new(
        settings: Arc<GatewaySettings>,
        agent: Arc<Agent>,
        end_devices: EndDevices,
        images: ImageStore,
    ) -> Driver {
        let metrics = Arc::new(GatewayMetrics::default());
        end_devices.add_metrics(metrics.clone());
        Driver {
            settings,
            agent,
            end_devices,
            syncing: Arc::default(),
            fanouts: Arc::default(),
            check_again_at: Arc::new(watch::Sender::new(None)),
            report_retry: Arc::new(watch::Sender::new(ReportRetry::default())),
            images: Arc::new(images),
            metrics,
        }
    }

    /// When time alone next calls for a sync (a local bootstrap falls due to lapse);
    /// changes only when a sync moved it.
    pub fn check_again_at(&self) -> watch::Receiver<Option<i64>> {
        self.check_again_at.subscribe()
    }

    /// Whether reports wait after a failure, and until when; changes when a report
    /// fails or goes.
    pub fn report_retry(&self) -> watch::Receiver<ReportRetry> {
        self.report_retry.subscribe()
    }

    pub fn end_devices(&self) -> &EndDevices {
        &self.end_devices
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    /// One sync, its failure logged.
    pub async fn sync(&self) {
        if let Err(error) = self.try_sync().await {
            warn!(%error, "could not bring the Device Inventory into the end-device store");
        }
    }

    async fn try_sync(&self) -> Result<(), GatewayError> {
        let mut known = self.syncing.lock().await;
        let synced = self.sync_from(&mut known).await;
        if synced.is_err() {
            // What this sync took in may be in part (changes taken, not read): the
            // next one starts from nothing and reads everything again.
            *known = Known::default();
            self.end_devices.read_all_next();
        }
        synced
    }

    async fn sync_from(&self, known: &mut Known) -> Result<(), GatewayError> {
        // Only what changed is read, from the tree and from the end-device store:
        // reading all of both per sync made a gateway's cost per device grow with its
        // inventory. The tree is read in place, never copied.
        //
        // The fan-outs running are taken before the tree: a fan-out task removes its
        // node before it leaves that set, so one missing from the set has either not
        // started or left no node in what is read next. Taken after, a fan-out that
        // ended in between looked finished and unreported, and was reported twice.
        let running_fanouts = self.fanouts_running().clone();
        if let Some(((entries, fanouts), revision)) = self
            .agent
            .read_tree_since(known.inventory_revision(), |tree| {
                (inventory::entries(tree), inventory::fanouts(tree))
            })
            .await
        {
            known.set_inventory(InventoryView {
                revision: Some(revision),
                entries,
                fanouts,
            });
        }
        let changed = known.update(self.end_devices.changes_since_last().await?);
        GatewayMetrics::set(
            &self.metrics.inventory_entries,
            known.inventory().entries.len() as u64,
        );
        GatewayMetrics::set(&self.metrics.end_devices, known.end_devices.len() as u64);
        let to_ask = known.probes_to_ask(&changed);
        if !to_ask.is_empty() {
            let outcomes = self.end_devices.outcomes(to_ask.clone()).await?;
            known.probes_asked(&to_ask, &outcomes);
        }
        let view = known.inventory();
        let plan = reconcile(&Observation {
            entries: &view.entries,
            fanouts: &view.fanouts,
            end_devices: &known.end_devices,
            answered_probes: &known.answered_probes,
            running_fanouts: &running_fanouts,
            policy: Policy {
                server_assisted: self.settings.approaches.server_assisted,
                local: self.settings.approaches.local,
                default_lapse_secs: i64::try_from(self.settings.bootstrap_lapse_secs)
                    .unwrap_or(i64::MAX),
            },
            now: unix_now(),
        });
        self.check_again_at.send_if_modified(|at| {
            std::mem::replace(at, plan.check_again_at) != plan.check_again_at
        });
        for action in plan.actions {
            self.perform(action, known).await?;
        }
        Ok(())
    }

    /// Does one action. A report the DM Server cannot take now (it is down) goes again
    /// at the next sync and holds up nothing else; a failure of the store or the tree
    /// ends the sync.
    async fn perform(&self, action: Action, known: &mut Known) -> Result<(), GatewayError> {
        match action {
            Action::Forget(dev_ids) => {
                for dev_id in &dev_ids {
                    info!(device = %dev_id, "end device left the inventory");
                }
                self.end_devices.forget(dev_ids).await?;
            }
            Action::Refuse(report) => {
                warn!(device = %report.dev_id, origin = %report.origin, "refusing a bootstrap: the approach is off");
            }
            Action::Enroll { entry, probe, wake } => self.enroll(&entry, probe, wake).await?,
            // Derived from the end-device store, so derived again after a crash: written
            // with the next save, not one save each.
            Action::RecordStates(leaves) => {
                let (from, to) = self
                    .agent
                    .update_tree_unsaved(|tree| inventory::set_leaves(tree, &leaves))
                    .await?;
                known.recorded(&leaves, from, to);
            }
            Action::ReportAttach(reports) => {
                let attached: Vec<(String, String)> = reports
                    .iter()
                    .map(|r| {
                        (
                            format!("{}/{}", r.entry, entry::ATTACHED),
                            "true".to_owned(),
                        )
                    })
                    .collect();
                let items = reports.iter().map(attach_item).collect();
                if let Err(error) = self.report_upstream(items).await {
                    self.report_deferred("Device Attach", &error);
                    return Ok(());
                }
                GatewayMetrics::add(&self.metrics.attaches_reported, attached.len() as u64);
                self.agent
                    .update_tree(|tree| inventory::set_leaves(tree, &attached))
                    .await?;
                info!(devices = attached.len(), "Device Attach reported");
            }
            Action::Lapse(entries) => self.lapse(entries).await?,
            Action::ReportDetach(reports) => {
                let items = reports.iter().map(detach_item).collect();
                if let Err(error) = self.report_upstream(items).await {
                    self.report_deferred("Device Detach", &error);
                    return Ok(());
                }
                GatewayMetrics::add(&self.metrics.detaches_reported, reports.len() as u64);
                self.agent
                    .update_tree(|tree| reports.iter().try_for_each(|r| tree.remove(&r.entry)))
                    .await?;
            }
            Action::RunFanout(fanout) => {
                match fanout.status {
                    FanoutStatus::New => {
                        let status = fanout.leaf(fanout::STATUS);
                        let running = FanoutStatus::Running.as_str().to_owned();
                        self.agent
                            .update_tree(|tree| inventory::set_leaves(tree, &[(status, running)]))
                            .await?;
                    }
                    _ => info!(fanout = %fanout.id, "taking up a fan-out left unfinished"),
                }
                self.spawn_fanout(fanout, false);
            }
            // Not while reports wait: the task would only find that out.
            Action::DeliverFanout(_) if self.reports_waiting() => {}
            Action::DeliverFanout(fanout) => {
                info!(fanout = %fanout.id, "reporting a fan-out left unreported");
                self.spawn_fanout(fanout, true);
            }
        }
        Ok(())
    }

    /// Serves an entry's device; queues the probe of a locally bootstrapped device's
    /// first session (a Get of its bootstrap's deadline: its answer shows the device
    /// confirmed the bootstrap); wakes a server-assisted one.
    async fn enroll(
        &self,
        entry: &InventoryEntry,
        probe: bool,
        wake: bool,
    ) -> Result<(), GatewayError> {
        let Some(credentials) = &entry.credentials else {
            return Ok(());
        };
        self.end_devices
            .enroll(NewEndDevice {
                dev_id: entry.dev_id.clone(),
                client_name: credentials.client_name.clone(),
                client_secret: credentials.client_secret.clone(),
                server_secret: credentials.server_secret.clone(),
                notify_url: entry.notify_url.clone(),
            })
            .await?;
        info!(device = %entry.dev_id, "end device added to the inventory");
        if probe {
            let get = CommandSpec::Get {
                target: format!(
                    "./DMAcc/{}/Ext/GwBoot/LapseAt",
                    gwmo_tree::segment_for(&self.settings.gateway_id)
                ),
            };
            let id = self.end_devices.queue(&entry.dev_id, &get).await?;
            let leaf = [(entry.leaf(entry::PROBE), id.to_string())];
            self.agent
                .update_tree(|tree| inventory::set_leaves(tree, &leaf))
                .await?;
        }
        if wake && let Err(error) = self.end_devices.wake(&entry.dev_id).await {
            warn!(device = %entry.dev_id, %error, "could not wake the end device");
        }
        Ok(())
    }

    /// Ends local bootstraps that lapsed without a session (seed 8.x.2): the devices
    /// leave the end-device store at once; their entries lose their credentials and are
    /// marked Lapsed until a session has carried the Device Detach.
    async fn lapse(&self, entries: Vec<InventoryEntry>) -> Result<(), GatewayError> {
        let dev_ids = entries.iter().map(|e| e.dev_id.clone()).collect();
        self.end_devices.forget(dev_ids).await?;
        self.agent
            .update_tree(|tree| {
                entries.iter().try_for_each(|entry| {
                    for secret in [entry::CLIENT_SECRET, entry::SERVER_SECRET] {
                        let leaf = entry.leaf(secret);
                        if tree.exists(&leaf) {
                            tree.remove(&leaf)?;
                        }
                    }
                    inventory::set_leaves(tree, &[(entry.leaf(entry::LAPSED), "true".into())])
                })
            })
            .await?;
        warn!(
            devices = entries.len(),
            "local bootstraps lapsed without a session"
        );
        Ok(())
    }

    /// A device the embedded bootstrap server just bootstrapped: an inventory entry of
    /// origin local-bootstrap (restricted) with the interval issued, then a sync that
    /// enrolls it. A device the gateway serves already is re-keyed only by a request
    /// that proved its USERPIN.
    pub async fn add_local(&self, enrollment: Enrollment) -> Result<(), EnrollError> {
        let unavailable = |e: GatewayError| EnrollError::Unavailable(e.to_string());
        let issued = LocalBootstrap {
            dev_id: &enrollment.dev_id,
            client_secret: &enrollment.client_secret,
            server_secret: &enrollment.server_secret,
            issued_at: unix_now(),
            lapse_secs: enrollment.lapse_secs,
        };
        let (base, leaves) = (issued.path(), issued.leaves());
        {
            // The check and the write under the sync's lock: two requests for one
            // device cannot both find it new.
            let _one_at_a_time = self.syncing.lock().await;
            let secret = format!("{base}/{}", entry::CLIENT_SECRET);
            let served = self.agent.read_tree(|tree| tree.exists(&secret)).await;
            if served && !enrollment.proven {
                return Err(EnrollError::Conflict(format!(
                    "{} is served by this gateway",
                    enrollment.dev_id
                )));
            }
            self.agent
                .update_tree(|tree| {
                    tree.remove(&base).ok();
                    inventory::set_leaves(tree, &leaves)
                })
                .await
                .map_err(|e| unavailable(e.into()))?;
        }
        GatewayMetrics::add(&self.metrics.local_bootstraps, 1);
        self.try_sync().await.map_err(unavailable)
    }

    /// One session with the DM Server carrying these Generic Alert items, unless
    /// reports wait out the pause after a failure. A failure starts (or lengthens) the
    /// pause; a report that went ends it.
    async fn report_upstream(&self, items: Vec<Item>) -> Result<(), GatewayError> {
        let Some(upstream) = &self.settings.upstream else {
            return Ok(());
        };
        if self.reports_waiting() {
            return Err(GatewayError::ReportsWaiting);
        }
        let alert = Alert {
            cmd_id: 0,
            code: codes::alert::GENERIC_ALERT,
            correlator: None,
            items,
        };
        let reported = match self
            .agent
            .session(&upstream.server_id, Trigger::Client, None, vec![alert])
            .await
        {
            Ok(report) if report.outcome == ClientOutcome::Completed => Ok(()),
            Ok(_) => Err(GatewayError::ReportAborted),
            Err(error) => Err(GatewayError::from(error)),
        };
        match &reported {
            Ok(()) => {
                self.report_retry.send_if_modified(ReportRetry::succeeded);
            }
            Err(_) => {
                GatewayMetrics::add(&self.metrics.report_sessions_failed, 1);
                self.report_retry
                    .send_modify(|retry| retry.failed(tokio::time::Instant::now()));
            }
        }
        reported
    }

    /// Whether reports wait out the pause after a failure.
    fn reports_waiting(&self) -> bool {
        self.report_retry
            .borrow()
            .waiting_at(tokio::time::Instant::now())
    }

    /// Counts and logs a report that did not go; it goes again with a later sync.
    fn report_deferred(&self, report: &str, error: &GatewayError) {
        GatewayMetrics::add(&self.metrics.reports_deferred, 1);
        match error {
            GatewayError::ReportsWaiting => debug!(report, %error, "report deferred"),
            _ => warn!(report, %error, "report not taken by the DM Server yet"),
        }
    }

    /// The ids of the fan-outs this process is running.
    fn fanouts_running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.fanouts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs (or only delivers) a fan-out in its own task.
    fn spawn_fanout(&self, fanout: FanoutEntry, deliver_only: bool) {
        self.fanouts_running().insert(fanout.id.clone());
        let driver = self.clone();
        tokio::spawn(async move {
            let finished = match deliver_only {
                true => {
                    driver
                        .deliver_fanout(&fanout.id, fanout.results.clone())
                        .await
                }
                false => driver.run_fanout(&fanout).await,
            };
            match finished {
                Ok(()) => {}
                Err(GatewayError::ReportsWaiting) => {
                    debug!(fanout = %fanout.id, "fan-out results wait to be reported")
                }
                Err(error) => warn!(fanout = %fanout.id, %error, "fan-out not finished yet"),
            }
            driver.fanouts_running().remove(&fanout.id);
        });
    }

    /// Runs a fan-out: the command queued for each target (or, resuming, the one queued
    /// before, recorded in its Queued leaf), the devices woken, their outcomes awaited
    /// and reported to the DM Server.
    async fn run_fanout(&self, fanout: &FanoutEntry) -> Result<(), GatewayError> {
        GatewayMetrics::add(&self.metrics.fanouts_run, 1);
        let served: HashSet<String> = self
            .end_devices
            .all()
            .await?
            .into_iter()
            .map(|device| device.dev_id)
            .collect();
        let targets: Vec<String> = match fanout.targets.iter().any(|t| t == "*") {
            true => {
                let mut all: Vec<String> = served.iter().cloned().collect();
                all.sort();
                all
            }
            false => fanout.targets.clone(),
        };
        let mut results = Vec::new();
        let mut pending = Vec::new();
        let mut firmware = None;
        let parsed = CommandSpec::parse(&fanout.command).map_err(|error| error.to_string());
        // A firmware update goes out pointed at the gateway's own copy of the image.
        let parsed = match parsed.map(|spec| (images::package_of(&spec), spec)) {
            Ok((Some(package), spec)) => match self.images.local_copy(&package).await {
                Ok((image, fetched)) => {
                    GatewayMetrics::add(&self.metrics.image_bytes_fetched, fetched);
                    self.write_image_inventory().await;
                    firmware = package
                        .correlator
                        .map(|correlator| (correlator, image.id.clone()));
                    Ok(images::pointed_at(&spec, &image.url))
                }
                Err(reason) => Err(reason),
            },
            Ok((None, spec)) => Ok(spec),
            Err(error) => Err(error),
        };
        match parsed {
            Err(error) => {
                warn!(fanout = %fanout.id, %error, "fan-out not sent to its devices");
                results.extend(
                    targets
                        .iter()
                        .map(|target| serde_json::json!({ "dev_id": target, "error": error })),
                );
            }
            Ok(spec) => {
                let mut queued = fanout.queued.clone();
                for target in targets {
                    if !served.contains(&target) {
                        results.push(serde_json::json!({ "dev_id": target, "error": "not in this gateway's inventory" }));
                        continue;
                    }
                    let command = match queued.get(&target) {
                        Some(&command) => command,
                        None => {
                            let command = self.end_devices.queue(&target, &spec).await?;
                            queued.insert(target.clone(), command);
                            command
                        }
                    };
                    if let Some((correlator, image)) = &firmware {
                        self.end_devices
                            .track_firmware(&target, correlator, image, command)
                            .await?;
                    }
                    pending.push((target, command));
                }
                // Recorded before any device is woken: a gateway stopped from here on
                // resumes with these commands instead of queuing them again.
                let record = [(
                    fanout.leaf(fanout::QUEUED),
                    inventory::format_queued(&queued),
                )];
                self.agent
                    .update_tree(|tree| inventory::set_leaves(tree, &record))
                    .await?;
                for (target, _) in &pending {
                    if let Err(error) = self.end_devices.wake(target).await {
                        warn!(device = %target, %error, "could not wake the end device for a fan-out");
                    }
                }
            }
        }
        let ids: Vec<i64> = pending.iter().map(|(_, command)| *command).collect();
        let outcomes = self.await_outcomes(ids).await?;
        let progress = match &firmware {
            Some((correlator, _)) => {
                let devices = pending.iter().map(|(target, _)| target.clone()).collect();
                self.await_firmware(correlator, devices).await?
            }
            None => HashMap::new(),
        };
        for (target, command) in pending {
            let outcome = outcomes.get(&command);
            let mut result = serde_json::json!({
                "dev_id": target,
                "state": outcome.map(|o| o.state.as_str()),
                "status": outcome.and_then(|o| o.status),
                "outcome": outcome
                    .and_then(|o| o.results.as_deref())
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
            });
            if let Some(update) = progress.get(&target) {
                result["firmware"] = serde_json::json!({
                    "state": update.state, "result": update.result, "reason": update.reason,
                });
            }
            results.push(result);
        }
        let results = serde_json::Value::Array(results).to_string();
        let finished = [
            (fanout.leaf(fanout::RESULTS), results.clone()),
            (
                fanout.leaf(fanout::STATUS),
                FanoutStatus::Done.as_str().to_owned(),
            ),
        ];
        self.agent
            .update_tree(|tree| inventory::set_leaves(tree, &finished))
            .await?;
        self.deliver_fanout(&fanout.id, results).await
    }

    /// The outcomes of `ids` once all are done, or as they are after [`FANOUT_TIMEOUT`];
    /// looked at again each time a session stored something.
    async fn await_outcomes(
        &self,
        ids: Vec<i64>,
    ) -> Result<HashMap<i64, gwmo_server::CommandOutcome>, GatewayError> {
        let deadline = tokio::time::Instant::now() + FANOUT_TIMEOUT;
        let mut changes = self.end_devices.changes();
        loop {
            let outcomes = self.end_devices.outcomes(ids.clone()).await?;
            let all_done = ids.iter().all(|id| {
                outcomes
                    .get(id)
                    .is_some_and(|o| o.state == CommandState::Done)
            });
            if all_done {
                return Ok(outcomes);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Ok(outcomes) },
                _ = tokio::time::sleep_until(deadline) => return Ok(outcomes),
            }
        }
    }

    /// Where the firmware updates `correlator` of `devices` are once each ended, or as
    /// they are after [`FIRMWARE_TIMEOUT`]; looked at again each time a session stored
    /// something (a device's Generic Alert ends its update).
    async fn await_firmware(
        &self,
        correlator: &str,
        devices: Vec<String>,
    ) -> Result<HashMap<String, gwmo_server::FirmwareProgress>, GatewayError> {
        let deadline = tokio::time::Instant::now() + FIRMWARE_TIMEOUT;
        let mut changes = self.end_devices.changes();
        loop {
            let progress = self
                .end_devices
                .firmware_progress(correlator, devices.clone())
                .await?;
            let all_ended = devices.iter().all(|dev_id| {
                progress
                    .get(dev_id)
                    .is_some_and(|p| matches!(p.state, "succeeded" | "failed"))
            });
            if all_ended {
                return Ok(progress);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Ok(progress) },
                _ = tokio::time::sleep_until(deadline) => return Ok(progress),
            }
        }
    }

    /// Writes what the image store holds into the tree, for the DM Server to read.
    pub async fn write_image_inventory(&self) {
        let images = self.images.images().await;
        GatewayMetrics::set(&self.metrics.images, images.len() as u64);
        if let Err(error) = self
            .agent
            .update_tree(|tree| images::write_inventory(tree, &images))
            .await
        {
            warn!(%error, "could not write the image inventory");
        }
    }

    /// Reports a finished fan-out's results to the DM Server and, once a session has
    /// carried them, removes the fan-out from the tree: kept, every fan-out would grow
    /// the tree (held in memory, written after every change) for as long as the gateway
    /// runs. Results a session could not carry stay, and go with the next sync.
    async fn deliver_fanout(&self, id: &str, results: String) -> Result<(), GatewayError> {
        let node = format!("{}/{id}", gwmo_tree::gwmo::FANOUT);
        let item = gwmo_alert_item(codes::alert_type::FANOUT_RESULTS, &node, results);
        self.report_upstream(vec![item]).await?;
        GatewayMetrics::add(&self.metrics.fanouts_reported, 1);
        self.agent.update_tree(|tree| tree.remove(&node)).await?;
        info!(fanout = id, "fan-out results reported");
        Ok(())
    }
}

/// The Device Attach item of a report (seed 8.x.2, figure z). IssuedAt names the
/// bootstrap: the server tells this report sent again (its answer lost) from a new
/// bootstrap of the same device.
fn attach_item(report: &Report) -> Item {
    let data = serde_json::json!({
        "dev_id": report.dev_id, "man": report.manufacturer, "mod": report.model,
        "origin": report.origin, "issued_at": report.issued_at.map(|at| at.to_string()),
    });
    gwmo_alert_item(
        codes::alert_type::DEVICE_ATTACH,
        &report.entry,
        data.to_string(),
    )
}

/// The Device Detach item of a lapsed local bootstrap.
fn detach_item(report: &Report) -> Item {
    let data =
        serde_json::json!({ "dev_id": report.dev_id, "origin": report.origin, "reason": "lapsed" });
    gwmo_alert_item(
        codes::alert_type::DEVICE_DETACH,
        &report.entry,
        data.to_string(),
    )
}

/// A Generic Alert item about an inventory entry or fan-out: a type, the node, JSON.
pub fn gwmo_alert_item(kind: &'static str, source: &str, data: String) -> Item {
    Item {
        source: Some(Location::new(source)),
        meta: Some(Box::new(Meta {
            r#type: Some(kind.into()),
            format: Some("chr".into()),
            ..Meta::default()
        })),
        data: Some(Data::Text(data)),
        ..Item::default()
    }
}
