//! What a session's events change: the DM endpoint writes each to the store before
//! the answer leaves (a nonce the device will use must be known if this instance
//! stops right after), one method per kind of event.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use gwmo_proto::codes::{alert_type, status};
use gwmo_proto::{Alert, StatusCode};
use gwmo_session::{CommandOutcome, ServerEvent};
use gwmo_tree::Origin;
use tracing::{info, warn};

use super::gateways::{alert_json, location_updates};
use super::{DmError, DmService, NOTIFY_URL_NODE, Slot};
use crate::bootstrap;
use crate::command::{CommandSpec, StoredOutcome};
use crate::store::{Reported, SessionRecord};

/// The TNDS document of a Results item answering a Get of the whole tree.
fn whole_tree_report(item: &gwmo_proto::Item) -> Option<&str> {
    let source = item.source.as_ref()?.uri.as_str();
    let mime = item.meta.as_ref()?.r#type.as_deref()?;
    (source.split('?').next() == Some(".") && mime == gwmo_proto::codes::content_type::TNDS_XML)
        .then(|| item.data.as_ref()?.as_text())
        .flatten()
}

/// Where a device describes itself beyond DevInfo (firmware, software and hardware
/// versions): what a Get reads there is kept, and devices are found by it.
const DEVDETAIL: &str = "./DevDetail/";

/// The DevDetail leaves a command's results carry.
fn devdetail_read(outcome: &CommandOutcome) -> BTreeMap<String, String> {
    outcome
        .results
        .iter()
        .filter_map(|item| {
            let uri = item.source.as_ref()?.uri.as_str();
            let value = item.data.as_ref()?.as_text()?;
            uri.starts_with(DEVDETAIL)
                .then(|| (uri.to_owned(), value.to_owned()))
        })
        .collect()
}

/// What a session that reported `devinfo` records of itself.
fn session_record<'a>(
    devinfo: &'a BTreeMap<String, String>,
    slot: &Slot,
    unix_now: i64,
) -> SessionRecord<'a> {
    SessionRecord {
        devinfo,
        encoding: slot.encoding.name(),
        notify_address: devinfo.get(NOTIFY_URL_NODE).map(String::as_str),
        now: unix_now,
    }
}

impl DmService {
    /// Writes the session's events to the store, then tells whoever watches that
    /// something was stored.
    pub(super) fn persist(
        &self,
        dev_id: &str,
        slot: &mut Slot,
        peer: IpAddr,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let mut seen_gateways = Vec::new();
        // The server nonce and the DevDetail leaves the message reported go to the
        // device's row together, once its events are stored.
        let mut server_nonce = None;
        let mut devdetail = BTreeMap::new();
        let mut events = slot.session.take_events();
        // A session's first message swaps the client nonce and reports DevInfo: both go
        // to the device's row in one write, kept only if the nonce was still held.
        let mut devinfo = events
            .iter()
            .position(|event| matches!(event, ServerEvent::DevInfo(_)))
            .and_then(|at| match events.remove(at) {
                ServerEvent::DevInfo(reported) => Some(reported),
                _ => None,
            });
        for event in events {
            match event {
                ServerEvent::Authenticated => {
                    self.throttle.succeeded(peer, dev_id);
                    info!(
                        device = dev_id,
                        encoding = slot.encoding.name(),
                        "device authenticated"
                    );
                }
                ServerEvent::AuthenticationFailed { code } => {
                    self.authentication_failed(dev_id, code, peer, slot.last_active, unix_now)?
                }
                ServerEvent::ClientNonceIssued { used, next } => {
                    let swapped = match devinfo.take() {
                        Some(reported) => self.store.swap_client_nonce_and_record_session(
                            dev_id,
                            &used,
                            &next,
                            &session_record(&reported, slot, unix_now),
                        )?,
                        None => self.store.swap_client_nonce(dev_id, &used, &next)?,
                    };
                    if !swapped {
                        warn!(
                            device = dev_id,
                            %peer,
                            "credentials built with a nonce another session consumed: refused"
                        );
                        return Err(DmError::NonceSpent(dev_id.to_owned()));
                    }
                }
                ServerEvent::ServerNonceReceived(nonce) => server_nonce = Some(nonce),
                ServerEvent::DevInfo(reported) => {
                    self.record_session(dev_id, &reported, slot, unix_now)?
                }
                ServerEvent::Alert(alert) => {
                    self.alert(dev_id, &alert, unix_now)?;
                    seen_gateways.extend(location_updates(&alert));
                }
                ServerEvent::CommandDone { tag, outcome } => {
                    devdetail.extend(self.command_done(dev_id, tag as i64, &outcome, unix_now)?)
                }
                ServerEvent::Aborted => {
                    self.store
                        .log_event(Some(dev_id), "session-aborted", "{}", unix_now)?;
                }
            }
        }
        // DevInfo reported without a nonce to swap with it.
        if let Some(reported) = devinfo {
            self.record_session(dev_id, &reported, slot, unix_now)?;
        }
        if server_nonce.is_some() || !devdetail.is_empty() {
            let reported = Reported {
                server_nonce: server_nonce.as_deref(),
                devdetail: &devdetail,
            };
            self.store.record_reported(dev_id, &reported)?;
        }
        // After the DevInfo of the same message is stored.
        for gateway_id in seen_gateways {
            self.location_update(dev_id, &gateway_id, unix_now)?;
        }
        self.touch(dev_id);
        self.stored
            .send_modify(|count| *count = count.wrapping_add(1));
        Ok(())
    }

    fn record_session(
        &self,
        dev_id: &str,
        devinfo: &BTreeMap<String, String>,
        slot: &Slot,
        unix_now: i64,
    ) -> Result<(), DmError> {
        Ok(self
            .store
            .record_session(dev_id, &session_record(devinfo, slot, unix_now))?)
    }

    /// Credentials missing (407) or wrong (401): logged and counted; wrong ones from
    /// one source too often make its new sessions for the device wait.
    fn authentication_failed(
        &self,
        dev_id: &str,
        code: StatusCode,
        peer: IpAddr,
        last_active: Instant,
        unix_now: i64,
    ) -> Result<(), DmError> {
        warn!(
            device = dev_id,
            code = code.get(),
            "device authentication failed"
        );
        self.metrics.auth_failure();
        if code == status::INVALID_CREDENTIALS && self.throttle.failed(peer, dev_id, last_active) {
            warn!(
                device = dev_id,
                secs = self.settings.auth_lockout_secs,
                %peer,
                "too many wrong credentials from this source: its new sessions for the device wait"
            );
            let detail = serde_json::json!({
                "source": peer.to_string(),
                "failures": self.settings.auth_lockout_failures,
                "max_lockout_secs": self.settings.auth_lockout_secs,
            });
            self.store
                .log_event(Some(dev_id), "auth-locked", &detail.to_string(), unix_now)?;
        }
        let detail = serde_json::json!({ "status": code.get(), "source": peer.to_string() });
        self.store
            .log_event(Some(dev_id), "auth-failed", &detail.to_string(), unix_now)?;
        Ok(())
    }

    /// A Generic Alert or Client Event: logged and counted; the gateway reports it
    /// carries (Device Attach, Device Detach, fan-out results) are acted on.
    fn alert(&self, dev_id: &str, alert: &Alert, unix_now: i64) -> Result<(), DmError> {
        let detail = serde_json::json!({
            "code": alert.code,
            "items": alert.items.iter().map(|i| serde_json::json!({
                "type": i.meta.as_ref().and_then(|m| m.r#type.clone()),
                "source": i.source.as_ref().map(|s| s.uri.clone()),
                "data": i.data.as_ref().and_then(|d| d.as_text()).map(str::to_owned),
            })).collect::<Vec<_>>(),
        });
        info!(device = dev_id, code = alert.code, "alert");
        self.store
            .log_event(Some(dev_id), "alert", &detail.to_string(), unix_now)?;
        for kind in alert
            .items
            .iter()
            .filter_map(|i| i.meta.as_ref()?.r#type.as_deref())
        {
            self.metrics.alert(kind);
        }
        for attached in alert_json(alert, alert_type::DEVICE_ATTACH) {
            self.device_attach(dev_id, &attached, unix_now)?;
        }
        for detached in alert_json(alert, alert_type::DEVICE_DETACH) {
            self.device_detach(dev_id, &detached, unix_now)?;
        }
        for (id, results) in crate::fanout::results(alert) {
            self.fanout_results(dev_id, id, &results, unix_now)?;
        }
        self.firmware_reported(dev_id, alert, unix_now)?;
        Ok(())
    }

    /// A queued command came back: its outcome is stored, and whatever waited on it
    /// settles (an attach refuted, a tree report, an authentication switch, a gateway
    /// bootstrap). Returns the DevDetail leaves its results carried, for the device's
    /// row.
    fn command_done(
        &self,
        dev_id: &str,
        command: i64,
        outcome: &CommandOutcome,
        unix_now: i64,
    ) -> Result<BTreeMap<String, String>, DmError> {
        let summary = StoredOutcome::from(outcome);
        if self.resend_account_as_replaces(dev_id, command, &summary, unix_now)? {
            return Ok(BTreeMap::new());
        }
        let stored = serde_json::to_string(&summary).unwrap_or_default();
        let status = outcome.status.get();
        info!(device = dev_id, command, status, "command done");
        // The outcome and what was planned on it (an authentication switch, a gateway
        // bootstrap with the gateways' inventory changes) are one unit of work; the
        // gateways are woken once it is stored.
        let completed = self.store.complete(
            command,
            status,
            &stored,
            unix_now,
            &bootstrap::tell_gateways,
        )?;
        if let Some(auth) = completed.auth_switched_to {
            info!(
                device = dev_id,
                ?auth,
                "authentication scheme switched for the next session"
            );
        }
        if let Some((_, then)) = completed.bootstrap {
            self.metrics.bootstrap(Origin::ServerAssisted);
            for told in &then.commands {
                self.wake_later(&told.dev_id);
            }
        }
        if outcome.status == status::NOT_FOUND {
            self.refute_attach(dev_id, command, unix_now)?;
        }
        self.firmware_command_done(dev_id, command, &summary, unix_now)?;
        let mut devdetail = devdetail_read(outcome);
        if let Some(tnds) = outcome.results.iter().find_map(whole_tree_report) {
            self.store.set_tree(dev_id, tnds, unix_now)?;
            if let Ok(nodes) = gwmo_proto::tnds::parse(tnds) {
                devdetail.extend(
                    gwmo_proto::tnds::leaves(&nodes, ".")
                        .into_iter()
                        .filter(|(uri, _, _)| uri.starts_with(DEVDETAIL))
                        .map(|(uri, value, _)| (uri, value)),
                );
            }
        }
        self.metrics.command_status(status);
        Ok(devdetail)
    }

    /// A bootstrap account the device says it has already (an earlier send ran, and its
    /// answer died with the instance that sent it): the same command goes again as
    /// Replaces of the same leaves, in this session, and settles with their outcome.
    /// Returns whether it did.
    fn resend_account_as_replaces(
        &self,
        dev_id: &str,
        command: i64,
        outcome: &StoredOutcome,
        unix_now: i64,
    ) -> Result<bool, DmError> {
        // Read the command only for the one outcome that may call for it.
        if !bootstrap::first_member_already_there(outcome) {
            return Ok(false);
        }
        let Some(record) = self.store.command(command)? else {
            return Ok(false);
        };
        let Some(replaces) = CommandSpec::parse(&record.spec)
            .ok()
            .and_then(|spec| bootstrap::account_as_replaces(&spec))
        else {
            return Ok(false);
        };
        if !self.store.resend_as(command, &replaces.to_json())? {
            return Ok(false);
        }
        info!(
            device = dev_id,
            command, "the device has this account already: sending it again as Replaces"
        );
        let detail = serde_json::json!({ "command": command, "outcome": outcome });
        self.store.log_event(
            Some(dev_id),
            "account-resent",
            &detail.to_string(),
            unix_now,
        )?;
        Ok(true)
    }
}
