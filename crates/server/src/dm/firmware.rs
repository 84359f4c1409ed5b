//! What a session's events change for firmware updates: the device's answer to an
//! update command accepts it or says why not, and a FUMO Generic Alert ends it with
//! its result code (docs/FUMO.md). A device reports only on its own updates: a
//! correlator of another device's update changes nothing.

use gwmo_proto::Alert;
use gwmo_tree::fumo::ResultCode;
use tracing::{info, warn};

use super::{DmError, DmService};
use crate::command::{CommandSpec, StoredOutcome};
use crate::firmware::{accepted, reported};
use crate::store::firmware::{Firmware, UpdateState};

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
                firmware.settle_state(&update.correlator, UpdateState::Accepted, unix_now)?;
                info!(device = dev_id, correlator = %update.correlator, "firmware update accepted: the device downloads and installs");
            }
            Err(reason) => {
                firmware.settle(
                    &update.correlator,
                    UpdateState::Failed,
                    None,
                    Some(&reason),
                    unix_now,
                )?;
                warn!(device = dev_id, correlator = %update.correlator, %reason, "firmware update refused");
            }
        }
        Ok(())
    }

    /// The FUMO results a device's Generic Alert carries: each ends the device's update
    /// of that correlator; a success has the device's firmware version read again.
    pub(super) fn firmware_reported(
        &self,
        dev_id: &str,
        alert: &Alert,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let firmware = Firmware(self.store.sql());
        for report in reported(alert) {
            let Some(update) = firmware.update(&report.correlator)? else {
                warn!(device = dev_id, correlator = %report.correlator, "a FUMO result for no update this server sent");
                continue;
            };
            if update.dev_id != dev_id {
                warn!(device = dev_id, correlator = %report.correlator, owner = %update.dev_id, "a FUMO result for another device's update: ignored");
                continue;
            }
            let ResultCode(code) = report.result;
            let (state, reason) = match report.result.is_success() {
                true => (UpdateState::Succeeded, None),
                false => (
                    UpdateState::Failed,
                    Some(format!("{code} {}", report.result.meaning())),
                ),
            };
            if !firmware.settle(
                &report.correlator,
                state,
                Some(i64::from(code)),
                reason.as_deref(),
                unix_now,
            )? {
                continue;
            }
            info!(device = dev_id, correlator = %report.correlator, result = code, meaning = report.result.meaning(), "firmware update ended");
            if state == UpdateState::Succeeded {
                // What the device runs now, in its own words.
                let read = CommandSpec::Get {
                    target: "./DevDetail/FwV".into(),
                };
                self.store
                    .queue_command(dev_id, &read.to_json(), unix_now)?;
            }
        }
        Ok(())
    }
}
