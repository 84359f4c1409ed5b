//! What completing a command settles, decided once for both backends: a planned
//! authentication switch, a planned gateway bootstrap with what it entails, or a
//! planned validation of a local bootstrap. Each
//! backend gives the steps of its own transaction ([`Settlement`]); the order of the
//! steps and what they decide are here.

use gwmo_proto::auth::AuthType;

use super::{
    DeviceRecord, Entailed, Followups, GatewayRecord, SettledBootstrap, StoreError, auth_from_text,
    crash_point,
};

/// A bootstrap planned on a command, taken out of the plans.
pub(super) struct PlannedBootstrap {
    pub(super) dev_id: String,
    pub(super) gateway_id: String,
    pub(super) client_secret: String,
    pub(super) server_secret: String,
}

/// The steps of a settlement, inside one backend transaction.
pub(super) trait Settlement {
    /// Removes and returns the authentication switch planned on `command`: the device
    /// and the scheme's name.
    fn take_auth_switch(&mut self, command: i64) -> Result<Option<(String, String)>, StoreError>;
    /// Ends the device's planned switch, applying it or not.
    fn end_auth_switch(&mut self, dev_id: &str, switched: bool) -> Result<(), StoreError>;
    /// Removes and returns the bootstrap planned on `command`.
    fn take_bootstrap(&mut self, command: i64) -> Result<Option<PlannedBootstrap>, StoreError>;
    /// The gateway the device is associated with, held until the transaction ends.
    fn associated_gateway(&mut self, dev_id: &str) -> Result<Option<String>, StoreError>;
    /// Makes the device's association a server-assisted one with `gateway_id`.
    fn associate_server_assisted(
        &mut self,
        dev_id: &str,
        gateway_id: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    fn device(&mut self, dev_id: &str) -> Result<Option<DeviceRecord>, StoreError>;
    fn gateway(&mut self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError>;
    fn write_followups(&mut self, then: &Followups, now: i64) -> Result<(), StoreError>;
    /// Removes and returns the validation planned on `command`: the device and the
    /// gateway.
    fn take_validation(&mut self, command: i64) -> Result<Option<(String, String)>, StoreError>;
    /// Marks the device's association with the gateway validated (if it still is with
    /// that gateway and restricted).
    fn mark_validated(&mut self, dev_id: &str, gateway_id: &str) -> Result<(), StoreError>;
}

/// Settles the validation planned on `command`, if one was: success makes the
/// device's association with the gateway `validated`. Returns whether it did.
pub(super) fn settle_validation(
    tx: &mut impl Settlement,
    command: i64,
    status: u16,
) -> Result<bool, StoreError> {
    let Some((dev_id, gateway_id)) = tx.take_validation(command)? else {
        return Ok(false);
    };
    let validated = gwmo_proto::codes::status::is_success(status);
    if validated {
        tx.mark_validated(&dev_id, &gateway_id)?;
    }
    Ok(validated)
}

/// Settles the authentication switch planned on `command`, if one was: success makes
/// it the device's scheme, which is returned.
pub(super) fn settle_auth_switch(
    tx: &mut impl Settlement,
    command: i64,
    status: u16,
) -> Result<Option<AuthType>, StoreError> {
    let Some((dev_id, auth)) = tx.take_auth_switch(command)? else {
        return Ok(None);
    };
    let switched = gwmo_proto::codes::status::is_success(status);
    tx.end_auth_switch(&dev_id, switched)?;
    switched.then(|| auth_from_text(&auth)).transpose()
}

/// Settles the gateway bootstrap planned on `command`, if one was: success makes it the
/// device's association and writes what `entailed` says it entails.
pub(super) fn settle_bootstrap(
    tx: &mut impl Settlement,
    command: i64,
    status: u16,
    now: i64,
    entailed: Entailed<'_>,
) -> Result<Option<(SettledBootstrap, Followups)>, StoreError> {
    let Some(planned) = tx.take_bootstrap(command)? else {
        return Ok(None);
    };
    if !gwmo_proto::codes::status::is_success(status) {
        return Ok(None);
    }
    let previous = tx.associated_gateway(&planned.dev_id)?;
    tx.associate_server_assisted(&planned.dev_id, &planned.gateway_id, now)?;
    crash_point("settle-bootstrap");
    let settled = SettledBootstrap {
        previous: previous.filter(|p| *p != planned.gateway_id),
        dev_id: planned.dev_id,
        gateway_id: planned.gateway_id,
        client_secret: planned.client_secret,
        server_secret: planned.server_secret,
    };
    let then = match tx.device(&settled.dev_id)? {
        Some(device) => {
            let new = tx.gateway(&settled.gateway_id)?;
            let old = match &settled.previous {
                Some(previous) => tx.gateway(previous)?,
                None => None,
            };
            entailed(&settled, &device, new.as_ref(), old.as_ref())
        }
        None => Followups::default(),
    };
    tx.write_followups(&then, now)?;
    Ok(Some((settled, then)))
}
