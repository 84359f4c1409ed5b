//! The parts of the store's units of work that run inside a caller's transaction:
//! setting an association, the steps of a settlement (`store/settle.rs` decides), and
//! writing what a decision entails.

use gwmo_tree::Origin;
use postgres::{GenericClient, Transaction};

use super::rows::*;
use crate::store::settle::{PlannedBootstrap, Settlement};
use crate::store::{DeviceRecord, Followups, GatewayRecord, StoreError};

/// The steps of a settlement in a PostgreSQL transaction; the rows they read are
/// locked until it ends.
impl Settlement for Transaction<'_> {
    fn take_auth_switch(&mut self, command: i64) -> Result<Option<(String, String)>, StoreError> {
        self.query_opt(
            "SELECT dev_id, auth_switch_to FROM devices WHERE auth_switch_command = $1
             FOR UPDATE",
            &[&command],
        )?
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
    }

    fn end_auth_switch(&mut self, dev_id: &str, switched: bool) -> Result<(), StoreError> {
        self.execute(
            "UPDATE devices SET auth = CASE WHEN $2 THEN auth_switch_to ELSE auth END,
                 auth_switch_to = NULL, auth_switch_command = NULL WHERE dev_id = $1",
            &[&dev_id, &switched],
        )?;
        Ok(())
    }

    fn take_bootstrap(&mut self, command: i64) -> Result<Option<PlannedBootstrap>, StoreError> {
        self.query_opt(
            "DELETE FROM pending_bootstraps WHERE command = $1
             RETURNING dev_id, gateway_id, client_secret, server_secret",
            &[&command],
        )?
        .map(|row| {
            Ok(PlannedBootstrap {
                dev_id: row.try_get(0)?,
                gateway_id: row.try_get(1)?,
                client_secret: row.try_get(2)?,
                server_secret: row.try_get(3)?,
            })
        })
        .transpose()
    }

    fn associated_gateway(&mut self, dev_id: &str) -> Result<Option<String>, StoreError> {
        self.query_opt(
            "SELECT gateway_id FROM associations WHERE dev_id = $1 FOR UPDATE",
            &[&dev_id],
        )?
        .map(|row| Ok(row.try_get(0)?))
        .transpose()
    }

    fn associate_server_assisted(
        &mut self,
        dev_id: &str,
        gateway_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let origin = Origin::ServerAssisted.as_str();
        upsert_association(self, dev_id, gateway_id, origin, None, now).map(drop)
    }

    fn device(&mut self, dev_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = $1"),
            &[&dev_id],
        )?
        .as_ref()
        .map(device_row)
        .transpose()
    }

    fn gateway(&mut self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway_id = $1"),
            &[&gateway_id],
        )?
        .as_ref()
        .map(gateway_row)
        .transpose()
    }

    fn write_followups(&mut self, then: &Followups, now: i64) -> Result<(), StoreError> {
        write_followups(self, then, now)
    }

    fn take_validation(&mut self, command: i64) -> Result<Option<(String, String)>, StoreError> {
        self.query_opt(
            "DELETE FROM pending_validations WHERE command = $1 RETURNING dev_id, gateway_id",
            &[&command],
        )?
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
    }

    fn mark_validated(&mut self, dev_id: &str, gateway_id: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE associations SET trust = 'validated'
             WHERE dev_id = $1 AND gateway_id = $2 AND trust = 'restricted'",
            &[&dev_id, &gateway_id],
        )?;
        Ok(())
    }
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
        if let Some(gateway_id) = &command.validates {
            client.execute(
                "INSERT INTO pending_validations (command, dev_id, gateway_id)
                 VALUES (currval(pg_get_serial_sequence('commands', 'id')), $1, $2)",
                &[&command.dev_id, gateway_id],
            )?;
        }
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
        "INSERT INTO associations (dev_id, gateway_id, origin, since, attach_key, trust)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $3 = 'server-assisted' THEN 'full' ELSE 'restricted' END)
         ON CONFLICT (dev_id) DO UPDATE SET gateway_id = $2, origin = $3, since = $4, attach_key = $5,
             trust = CASE WHEN $3 = 'server-assisted' THEN 'full' ELSE 'restricted' END
         WHERE $5::TEXT IS NULL OR associations.gateway_id <> $2
            OR associations.attach_key IS DISTINCT FROM $5::TEXT",
        &[&dev_id, &gateway_id, &origin, &now, &attach_key],
    )?;
    Ok(changed > 0)
}
