//! What a session's events change for firmware updates: the device's answer to an
//! update command accepts it or says why not, a FUMO Generic Alert ends it with its
//! result code (docs/FUMO.md), and a gateway's fan-out results end the updates it
//! handed on. A device reports only on its own updates: a correlator of another
//! device's update changes nothing.

use gwmo_proto::Alert;
use gwmo_tree::fumo::ResultCode;
use serde_json::Value;
use tracing::{info, warn};

use super::{DmError, DmService};
use crate::command::{CommandSpec, StoredOutcome};
use crate::firmware::{accepted, reported};
use crate::store::Reported;
use crate::store::firmware::{Ending, Firmware, FirmwareUpdate, UpdateState};

impl DmService {
    /// An update command came back: accepted (202 to its Exec), or failed with why.
    pub(super) fn firmware_command_done(
        &self,
        dev_id: &str,
        command: i64,
        outcome: &StoredOutcome,
        unix_now: i64,
    ) -> Result<(), DmError> {
        // Only a command with an Exec can be one.
        if !outcome.members.iter().any(|m| m.cmd == "Exec") {
            return Ok(());
        }
        let firmware = Firmware(self.store.sql());
        let Some(update) = firmware.update_of_command(command)? else {
            return Ok(());
        };
        match accepted(outcome) {
            Ok(()) => {
                firmware.settle_state(
                    &update.correlator,
                    dev_id,
                    UpdateState::Accepted,
                    unix_now,
                )?;
                info!(device = dev_id, correlator = %update.correlator, "firmware update accepted: the device downloads and installs");
            }
            Err(reason) => {
                let ending = Ending {
                    state: UpdateState::Failed,
                    result: None,
                    reason: Some(&reason),
                };
                self.end_update(&firmware, &update, &ending, unix_now)?;
            }
        }
        Ok(())
    }

    /// The FUMO results a device's Generic Alert carries: each ends the device's own
    /// update of that correlator.
    pub(super) fn firmware_reported(
        &self,
        dev_id: &str,
        alert: &Alert,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let firmware = Firmware(self.store.sql());
        for report in reported(alert) {
            let Some(update) = firmware.update(&report.correlator, dev_id)? else {
                warn!(device = dev_id, correlator = %report.correlator, "a FUMO result for no update of this device: ignored");
                continue;
            };
            let ResultCode(code) = report.result;
            let reason = format!("{code} {}", report.result.meaning());
            let ending = Ending {
                state: match report.result.is_success() {
                    true => UpdateState::Succeeded,
                    false => UpdateState::Failed,
                },
                result: Some(i64::from(code)),
                reason: (!report.result.is_success()).then_some(reason.as_str()),
            };
            self.end_update(&firmware, &update, &ending, unix_now)?;
        }
        Ok(())
    }

    /// A gateway's results of fan-out `fanout_id` (`[{dev_id, status, firmware: {state,
    /// result, reason}} | {dev_id, error}]`): each update the fan-out handed on ends as
    /// the gateway saw it; one the results leave out, or leave unfinished, failed.
    pub(super) fn firmware_fanout_results(
        &self,
        fanout_id: i64,
        results: &str,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let firmware = Firmware(self.store.sql());
        let updates = firmware.updates_of_fanout(fanout_id)?;
        if updates.is_empty() {
            return Ok(());
        }
        let reported: Vec<Value> = serde_json::from_str(results).unwrap_or_default();
        for update in updates {
            let item = reported
                .iter()
                .find(|r| r["dev_id"] == update.dev_id.as_str());
            let seen = item.map(|i| &i["firmware"]);
            let result = seen.and_then(|f| f["result"].as_i64());
            let reason = match (item, seen.and_then(|f| f["state"].as_str())) {
                (None, _) => "the gateway's results leave this device out".to_owned(),
                (Some(item), _) if item["error"].is_string() => {
                    format!(
                        "the gateway: {}",
                        item["error"].as_str().unwrap_or_default()
                    )
                }
                (Some(_), Some("succeeded")) => String::new(),
                (Some(_), Some("failed")) => seen
                    .and_then(|f| f["reason"].as_str())
                    .unwrap_or("the device reported a failure")
                    .to_owned(),
                (Some(_), _) => {
                    "the gateway had no result from the device when it reported".to_owned()
                }
            };
            let ending = Ending {
                state: match reason.is_empty() {
                    true => UpdateState::Succeeded,
                    false => UpdateState::Failed,
                },
                result,
                reason: (!reason.is_empty()).then_some(reason.as_str()),
            };
            self.end_update(&firmware, &update, &ending, unix_now)?;
        }
        Ok(())
    }

    /// Ends `update` as `ending` says (an update that ended already stays as it was);
    /// a success has the device's firmware version read again, for a device this
    /// server manages directly.
    fn end_update(
        &self,
        firmware: &Firmware<'_>,
        update: &FirmwareUpdate,
        ending: &Ending<'_>,
        unix_now: i64,
    ) -> Result<(), DmError> {
        if !firmware.settle(&update.correlator, &update.dev_id, ending, unix_now)? {
            return Ok(());
        }
        match ending.state {
            UpdateState::Succeeded => {
                info!(device = %update.dev_id, correlator = %update.correlator, result = ?ending.result, "firmware update succeeded");
                match update.fanout_id {
                    // What the device runs now, in its own words.
                    None => {
                        let read = CommandSpec::Get {
                            target: "./DevDetail/FwV".into(),
                        };
                        self.store
                            .queue_command(&update.dev_id, &read.to_json(), unix_now)?;
                    }
                    // This server holds no sessions with a device behind a gateway: its
                    // gateway's word that it installed the version is what there is.
                    Some(_) => {
                        if let Some(artifact) = firmware.artifact(&update.artifact_id)? {
                            let leaves = [("./DevDetail/FwV".to_owned(), artifact.version)];
                            let reported = Reported {
                                server_nonce: None,
                                devdetail: &leaves.into_iter().collect(),
                            };
                            self.store.record_reported(&update.dev_id, &reported)?;
                        }
                    }
                }
            }
            _ => {
                warn!(device = %update.dev_id, correlator = %update.correlator, result = ?ending.result, reason = ?ending.reason, "firmware update failed");
            }
        }
        Ok(())
    }
}
