//! The parts of the store's units of work that run inside a caller's transaction:
//! setting an association, settling what was planned on a command, and writing what a
//! decision entails.

use gwmo_proto::auth::AuthType;
use gwmo_tree::Origin;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::*;
use crate::store::{
    Entailed, Followups, GatewayRecord, SettledBootstrap, StoreError, auth_from_text, crash_point,
};

/// Sets the association; false when it already records `attach_key` (not null) with
/// the same gateway.
pub(super) fn upsert_association(
    connection: &Connection,
    dev_id: &str,
    gateway_id: &str,
    origin: &str,
    attach_key: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = connection.run_cached(
        "INSERT INTO associations (dev_id, gateway_id, origin, since, attach_key)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (dev_id) DO UPDATE SET gateway_id = ?2, origin = ?3, since = ?4, attach_key = ?5
         WHERE ?5 IS NULL OR associations.gateway_id <> ?2 OR associations.attach_key IS NOT ?5",
        params![dev_id, gateway_id, origin, now, attach_key],
    )?;
    Ok(changed > 0)
}

/// Settles the authentication switch planned on `command`, if one was: success makes
/// it the device's scheme.
pub(super) fn settle_auth_switch(
    transaction: &Connection,
    command: i64,
    status: u16,
) -> Result<Option<AuthType>, StoreError> {
    let planned: Option<(String, String)> = transaction
        .row_cached(
            "SELECT dev_id, auth_switch_to FROM devices WHERE auth_switch_command = ?1",
            [command],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((dev_id, auth)) = planned else {
        return Ok(None);
    };
    let switched = gwmo_proto::codes::status::is_success(status);
    transaction.run_cached(
        "UPDATE devices SET auth = CASE WHEN ?2 THEN auth_switch_to ELSE auth END,
             auth_switch_to = NULL, auth_switch_command = NULL WHERE dev_id = ?1",
        params![dev_id, switched],
    )?;
    Ok(if switched {
        Some(auth_from_text(&auth)?)
    } else {
        None
    })
}

/// Settles the gateway bootstrap planned on `command`, if one was: success makes it the
/// device's association and writes what `entailed` says it entails.
pub(super) fn settle_bootstrap(
    transaction: &Connection,
    command: i64,
    status: u16,
    now: i64,
    entailed: Entailed<'_>,
) -> Result<Option<(SettledBootstrap, Followups)>, StoreError> {
    let pending = transaction
        .row_cached(
            "DELETE FROM pending_bootstraps WHERE command = ?1
             RETURNING dev_id, gateway_id, client_secret, server_secret",
            [command],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                ))
            },
        )
        .optional()?;
    let Some((dev_id, gateway_id, client_secret, server_secret)) = pending else {
        return Ok(None);
    };
    if !gwmo_proto::codes::status::is_success(status) {
        return Ok(None);
    }
    let previous: Option<String> = transaction
        .row_cached(
            "SELECT gateway_id FROM associations WHERE dev_id = ?1",
            [&dev_id],
            |row| row.get(0),
        )
        .optional()?;
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
        dev_id,
        gateway_id,
        client_secret,
        server_secret,
    };
    let device = transaction
        .row_cached(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = ?1"),
            [&settled.dev_id],
            device_row,
        )
        .optional()?
        .transpose()?;
    let gateway = |id: Option<&str>| -> Result<Option<GatewayRecord>, StoreError> {
        let Some(id) = id else { return Ok(None) };
        Ok(transaction
            .row_cached(
                &format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway_id = ?1"),
                [id],
                gateway_row,
            )
            .optional()?)
    };
    let then = match device {
        Some(device) => entailed(
            &settled,
            &device,
            gateway(Some(&settled.gateway_id))?.as_ref(),
            gateway(settled.previous.as_deref())?.as_ref(),
        ),
        None => Followups::default(),
    };
    write_followups(transaction, &then, now)?;
    Ok(Some((settled, then)))
}

/// Writes what a decision entails, inside its transaction.
pub(super) fn write_followups(
    connection: &Connection,
    then: &Followups,
    now: i64,
) -> Result<(), StoreError> {
    for command in &then.commands {
        connection.run_cached(
            "INSERT INTO commands (dev_id, spec, state, queued_at) VALUES (?1, ?2, 'queued', ?3)",
            params![command.dev_id, command.spec, now],
        )?;
    }
    for event in &then.events {
        connection.run_cached(
            "INSERT INTO events (at, dev_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now, event.dev_id, event.kind, event.detail],
        )?;
    }
    Ok(())
}
