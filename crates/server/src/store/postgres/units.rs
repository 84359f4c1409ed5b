//! The parts of the store's units of work that run inside a caller's transaction:
//! setting an association, settling what was planned on a command, and writing what a
//! decision entails.

use gwmo_proto::auth::AuthType;
use gwmo_tree::Origin;
use postgres::GenericClient;

use super::rows::*;
use crate::store::{
    Entailed, Followups, GatewayRecord, SettledBootstrap, StoreError, auth_from_text, crash_point,
};

/// Settles the authentication switch planned on `command`, if one was: success makes
/// it the device's scheme.
pub(super) fn settle_auth_switch(
    transaction: &mut impl GenericClient,
    command: i64,
    status: u16,
) -> Result<Option<AuthType>, StoreError> {
    let Some(planned) = transaction.query_opt(
        "SELECT dev_id, auth_switch_to FROM devices WHERE auth_switch_command = $1
         FOR UPDATE",
        &[&command],
    )?
    else {
        return Ok(None);
    };
    let dev_id: String = planned.try_get(0)?;
    let auth: String = planned.try_get(1)?;
    let switched = gwmo_proto::codes::status::is_success(status);
    transaction.execute(
        "UPDATE devices SET auth = CASE WHEN $2 THEN auth_switch_to ELSE auth END,
             auth_switch_to = NULL, auth_switch_command = NULL WHERE dev_id = $1",
        &[&dev_id, &switched],
    )?;
    switched.then(|| auth_from_text(&auth)).transpose()
}

/// Settles the gateway bootstrap planned on `command`, if one was: success makes it the
/// device's association and writes what `entailed` says it entails.
pub(super) fn settle_bootstrap(
    transaction: &mut impl GenericClient,
    command: i64,
    status: u16,
    now: i64,
    entailed: Entailed<'_>,
) -> Result<Option<(SettledBootstrap, Followups)>, StoreError> {
    let Some(pending) = transaction.query_opt(
        "DELETE FROM pending_bootstraps WHERE command = $1
         RETURNING dev_id, gateway_id, client_secret, server_secret",
        &[&command],
    )?
    else {
        return Ok(None);
    };
    let dev_id: String = pending.try_get(0)?;
    let gateway_id: String = pending.try_get(1)?;
    if !gwmo_proto::codes::status::is_success(status) {
        return Ok(None);
    }
    let previous: Option<String> = transaction
        .query_opt(
            "SELECT gateway_id FROM associations WHERE dev_id = $1 FOR UPDATE",
            &[&dev_id],
        )?
        .map(|row| row.try_get(0))
        .transpose()?;
    upsert_association(
        transaction,
        &dev_id,
        &gateway_id,
        Origin::ServerAssisted.as_str(),
        None,
        now,
    )?;
    crash_point("settle-bootstrap");
    let settled = SettledBootstrap {
        previous: previous.filter(|p| *p != gateway_id),
        client_secret: pending.try_get(2)?,
        server_secret: pending.try_get(3)?,
        dev_id,
        gateway_id,
    };
    let device = transaction
        .query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = $1"),
            &[&settled.dev_id],
        )?
        .as_ref()
        .map(device_row)
        .transpose()?;
    let mut gateway = |id: Option<&str>| -> Result<Option<GatewayRecord>, StoreError> {
        let Some(id) = id else { return Ok(None) };
        transaction
            .query_opt(
                &format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway_id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(gateway_row)
            .transpose()
    };
    let then = match device {
        Some(device) => {
            let new = gateway(Some(&settled.gateway_id))?;
            let old = gateway(settled.previous.as_deref())?;
            entailed(&settled, &device, new.as_ref(), old.as_ref())
        }
        None => Followups::default(),
    };
    write_followups(transaction, &then, now)?;
    Ok(Some((settled, then)))
}

/// Writes what a decision entails, inside its transaction.
pub(super) fn write_followups(
    client: &mut impl GenericClient,
    then: &Followups,
    now: i64,
) -> Result<(), StoreError> {
    for command in &then.commands {
        client.execute(
            "INSERT INTO commands (dev_id, spec, state, queued_at) VALUES ($1, $2, 'queued', $3)",
            &[&command.dev_id, &command.spec, &now],
        )?;
    }
    for event in &then.events {
        client.execute(
            "INSERT INTO events (at, dev_id, kind, detail) VALUES ($1, $2, $3, $4)",
            &[&now, &event.dev_id, &event.kind, &event.detail],
        )?;
    }
    Ok(())
}

/// Sets the association; false when it already records `attach_key` (not null) with
/// the same gateway.
pub(super) fn upsert_association(
    client: &mut impl GenericClient,
    dev_id: &str,
    gateway_id: &str,
    origin: &str,
    attach_key: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = client.execute(
        "INSERT INTO associations (dev_id, gateway_id, origin, since, attach_key)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (dev_id) DO UPDATE SET gateway_id = $2, origin = $3, since = $4, attach_key = $5
         WHERE $5::TEXT IS NULL OR associations.gateway_id <> $2
            OR associations.attach_key IS DISTINCT FROM $5::TEXT",
        &[&dev_id, &gateway_id, &origin, &now, &attach_key],
    )?;
    Ok(changed > 0)
}
