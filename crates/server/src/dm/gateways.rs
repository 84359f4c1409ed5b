//! Gateway bootstrapping as the DM Server sees it: a device's Location Update
//! (server assisted, seed 8.x.1) planned as one unit of work; a gateway's Device
//! Attach (local bootstrap, 8.x.2) recorded and validated, or refuted; Device Detach;
//! fan-out results; and the gateways told once a bootstrap settled.

use gwmo_proto::codes::alert_type;
use gwmo_tree::Origin;
use tracing::{info, warn};

use super::{DmError, DmService};
use crate::bootstrap;
use crate::command::CommandSpec;
use crate::secrets::random_secret;
use crate::store::{BootstrapPlan, Followups, GatewayRecord, NewCommand, NewEvent};

impl DmService {
    /// A device reports the gateway it sees: bootstrap it to that gateway (removing the
    /// account of the one it left), unless it already is.
    pub(super) fn location_update(
        &self,
        dev_id: &str,
        gateway_id: &str,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let Some(gateway) = self.store.gateway(gateway_id)? else {
            warn!(
                device = dev_id,
                gateway = gateway_id,
                "location update names an unknown gateway"
            );
            let detail = serde_json::json!({ "gateway": gateway_id, "result": "unknown gateway" });
            self.store.log_event(
                Some(dev_id),
                "location-update",
                &detail.to_string(),
                unix_now,
            )?;
            return Ok(());
        };
        if !gateway.server_assisted {
            let detail = serde_json::json!({ "gateway": gateway_id, "result": "server-assisted bootstrapping is off for this gateway" });
            self.store.log_event(
                Some(dev_id),
                "location-update",
                &detail.to_string(),
                unix_now,
            )?;
            return Ok(());
        }
        let previous = self.store.association(dev_id)?.map(|a| a.gateway_id);
        // Bootstrapped there already, or on the way (a device sends its Location Update
        // in every session until the bootstrap has run).
        if previous.as_deref() == Some(gateway_id)
            || self.store.bootstrap_pending(dev_id, gateway_id)?
        {
            return Ok(());
        }
        let (client_secret, server_secret) = (random_secret(), random_secret());
        let commands = bootstrap::device_commands(
            &self.settings.server_id,
            &gateway,
            previous.as_deref(),
            dev_id,
            &client_secret,
            &server_secret,
        );
        let commands: Vec<String> = commands.iter().map(CommandSpec::to_json).collect();
        let event = serde_json::json!({ "gateway": gateway_id, "previous": previous, "result": "bootstrap sent" });
        let then = Followups {
            commands: Vec::new(),
            events: vec![NewEvent {
                dev_id: Some(dev_id.to_owned()),
                kind: "location-update",
                detail: event.to_string(),
            }],
        };
        self.store.queue_bootstrap(
            &BootstrapPlan {
                dev_id,
                gateway_id,
                client_secret: &client_secret,
                server_secret: &server_secret,
                commands: &commands,
                then: &then,
            },
            unix_now,
        )?;
        info!(
            device = dev_id,
            gateway = gateway_id,
            ?previous,
            "bootstrapping the device to its gateway"
        );
        Ok(())
    }

    /// The registered gateway behind a report and the device it names; reports from
    /// anyone else, or naming no device, are dropped (with a warning).
    fn gateway_report<'r>(
        &self,
        gateway_dev_id: &str,
        report: &'r serde_json::Value,
        kind: &str,
    ) -> Result<Option<(GatewayRecord, &'r str)>, DmError> {
        let Some(gateway) = self.store.gateway_by_device(gateway_dev_id)? else {
            warn!(
                device = gateway_dev_id,
                kind, "gateway report from a device that is no registered gateway"
            );
            return Ok(None);
        };
        Ok(report["dev_id"].as_str().map(|dev_id| (gateway, dev_id)))
    }

    /// A gateway reports a device that a local bootstrap server brought to it (seed
    /// 8.x.2): the association is recorded and, the gateway being registered (trusted by
    /// the operator), this server validates it on the device.
    pub(super) fn device_attach(
        &self,
        gateway_dev_id: &str,
        attached: &serde_json::Value,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let Some((gateway, dev_id)) =
            self.gateway_report(gateway_dev_id, attached, "Device Attach")?
        else {
            return Ok(());
        };
        // The origin is this server's to say, not the gateway's: an association it made
        // itself (server assisted) stands as it is; any other attach is a local
        // bootstrap, restricted until the device answers its validation.
        let claimed = attached["origin"].as_str().unwrap_or_default();
        let made_here = self.store.association(dev_id)?.is_some_and(|a| {
            a.gateway_id == gateway.gateway_id && a.origin == Origin::ServerAssisted.as_str()
        });
        if made_here {
            info!(device = dev_id, gateway = %gateway.gateway_id, "Device Attach for a device this server bootstrapped to the gateway: nothing to do");
            return Ok(());
        }
        if claimed != Origin::LocalBootstrap.as_str() {
            warn!(device = dev_id, gateway = %gateway.gateway_id, claimed, "a Device Attach claimed an origin this server has no record of: taken as a local bootstrap");
        }
        let origin = Origin::LocalBootstrap.as_str();
        let bootstrap = attached["issued_at"].as_str();
        // The association, the validation and the event are one unit of work.
        let known = self.store.device(dev_id)?.is_some();
        let detail = serde_json::json!({
            "gateway": gateway.gateway_id, "device": attached, "validation": if known { "sent" } else { "none: the device has no account with this server" },
        });
        let then = Followups {
            commands: known
                .then(|| NewCommand {
                    dev_id: dev_id.to_owned(),
                    spec: bootstrap::validation(&gateway.gateway_id).to_json(),
                    validates: Some(gateway.gateway_id.clone()),
                })
                .into_iter()
                .collect(),
            events: vec![NewEvent {
                dev_id: Some(dev_id.to_owned()),
                kind: "attach",
                detail: detail.to_string(),
            }],
        };
        if !self.store.associate(
            dev_id,
            &gateway.gateway_id,
            origin,
            bootstrap,
            unix_now,
            &then,
        )? {
            info!(device = dev_id, gateway = %gateway.gateway_id, "a Device Attach already handled, sent again: nothing to do");
            return Ok(());
        }
        self.metrics.bootstrap(Origin::LocalBootstrap);
        if known {
            self.wake_later(dev_id);
        }
        info!(device = dev_id, gateway = %gateway.gateway_id, known, "device attached to a gateway");
        Ok(())
    }

    /// A validation the device answered 404: it has no account for that gateway, so the
    /// Device Attach that led to it was not true (a gateway claiming a device it does
    /// not serve). The association it made goes, and the refusal is logged.
    pub(super) fn refute_attach(
        &self,
        dev_id: &str,
        command: i64,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let Some(record) = self.store.command(command)? else {
            return Ok(());
        };
        let Ok(spec) = CommandSpec::parse(&record.spec) else {
            return Ok(());
        };
        let Some(account) = bootstrap::validated_account(&spec) else {
            return Ok(());
        };
        let Some(association) = self.store.association(dev_id)? else {
            return Ok(());
        };
        if association.origin != Origin::LocalBootstrap.as_str()
            || gwmo_tree::segment_for(&association.gateway_id) != account
        {
            return Ok(());
        }
        self.store.dissociate(dev_id, &association.gateway_id)?;
        warn!(
            device = dev_id,
            gateway = %association.gateway_id,
            "a Device Attach was not true: the device has no account for that gateway"
        );
        let detail = serde_json::json!({
            "gateway": association.gateway_id,
            "reason": "the device has no account for this gateway",
        });
        self.store.log_event(
            Some(dev_id),
            "attach-refused",
            &detail.to_string(),
            unix_now,
        )?;
        Ok(())
    }

    /// A gateway reports that a device left it (its local bootstrap lapsed): the
    /// association goes if it named that gateway.
    pub(super) fn device_detach(
        &self,
        gateway_dev_id: &str,
        detached: &serde_json::Value,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let Some((gateway, dev_id)) =
            self.gateway_report(gateway_dev_id, detached, "Device Detach")?
        else {
            return Ok(());
        };
        let dissociated = self.store.dissociate(dev_id, &gateway.gateway_id)?;
        if detached["reason"] == "lapsed" {
            self.metrics.lapse();
        }
        info!(device = dev_id, gateway = %gateway.gateway_id, dissociated, "device detached from a gateway");
        let detail = serde_json::json!({ "gateway": gateway.gateway_id, "device": detached });
        self.store
            .log_event(Some(dev_id), "detach", &detail.to_string(), unix_now)?;
        Ok(())
    }

    /// A gateway reports what its end devices answered to a fan-out.
    pub(super) fn fanout_results(
        &self,
        dev_id: &str,
        id: i64,
        results: &str,
        unix_now: i64,
    ) -> Result<(), DmError> {
        let Some(gateway) = self.store.gateway_by_device(dev_id)? else {
            warn!(
                device = dev_id,
                fanout = id,
                "fan-out results from a device that is no registered gateway"
            );
            return Ok(());
        };
        if self
            .store
            .complete_fanout(id, &gateway.gateway_id, results, unix_now)?
        {
            info!(gateway = %gateway.gateway_id, fanout = id, "fan-out results stored");
            self.firmware_fanout_results(id, results, unix_now)?;
        } else {
            warn!(gateway = %gateway.gateway_id, fanout = id, "fan-out results for an unknown or finished fan-out");
        }
        Ok(())
    }
}

/// The JSON data of the items of one Generic Alert type (Device Attach, Detach).
pub(super) fn alert_json<'a>(
    alert: &'a gwmo_proto::Alert,
    kind: &'a str,
) -> impl Iterator<Item = serde_json::Value> + 'a {
    alert
        .items
        .iter()
        .filter(move |item| item.meta.as_ref().and_then(|m| m.r#type.as_deref()) == Some(kind))
        .filter_map(|item| serde_json::from_str(item.data.as_ref()?.as_text()?).ok())
}

/// The gateways named by the Location Update items of an alert.
pub(super) fn location_updates(alert: &gwmo_proto::Alert) -> impl Iterator<Item = String> + '_ {
    alert
        .items
        .iter()
        .filter(|item| {
            item.meta.as_ref().and_then(|m| m.r#type.as_deref())
                == Some(alert_type::LOCATION_UPDATE)
        })
        .filter_map(|item| item.data.as_ref()?.as_text().map(|t| t.trim().to_owned()))
        .filter(|gateway| !gateway.is_empty())
}
