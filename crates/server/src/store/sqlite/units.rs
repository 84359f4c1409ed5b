//! The parts of the store's units of work that run inside a caller's transaction:
//! setting an association, the steps of a settlement (`store/settle.rs` decides), and
//! writing what a decision entails.

use gwmo_tree::Origin;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::*;
use super::unit::Unit;
use crate::store::settle::{PlannedBootstrap, Settlement};
use crate::store::{DeviceRecord, Followups, GatewayRecord, StoreError};

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
        "INSERT INTO associations (dev_id, gateway_id, origin, since, attach_key, trust)
         VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?3 = 'server-assisted' THEN 'full' ELSE 'restricted' END)
         ON CONFLICT (dev_id) DO UPDATE SET gateway_id = ?2, origin = ?3, since = ?4, attach_key = ?5,
             trust = CASE WHEN ?3 = 'server-assisted' THEN 'full' ELSE 'restricted' END
         WHERE ?5 IS NULL OR associations.gateway_id <> ?2 OR associations.attach_key IS NOT ?5",
        params![dev_id, gateway_id, origin, now, attach_key],
    )?;
    Ok(changed > 0)
}

/// Whether anything is planned on the command `?1`: an authentication switch, a
/// gateway bootstrap or a validation.
pub(super) const ANY_PLAN_ON_COMMAND: &str =
    "SELECT EXISTS (SELECT 1 FROM devices WHERE auth_switch_command = ?1)
         OR EXISTS (SELECT 1 FROM pending_bootstraps WHERE command = ?1)
         OR EXISTS (SELECT 1 FROM pending_validations WHERE command = ?1)";

/// Whether `exists` (a `SELECT EXISTS` on the command `?1`) finds the command's plan.
/// Most commands have none, and this index probe costs far less than the `DELETE …
/// RETURNING` that takes a plan: SQLite opens a temporary table for a RETURNING
/// clause's rows whether or not any row matches.
pub(super) fn plan_exists(
    connection: &Connection,
    exists: &str,
    command: i64,
) -> Result<bool, StoreError> {
    Ok(connection.row_cached(exists, [command], |row| row.get(0))?)
}

/// The steps of a settlement in an SQLite unit of work.
impl Settlement for Unit<'_> {
    fn take_auth_switch(&mut self, command: i64) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .row_cached(
                "SELECT dev_id, auth_switch_to FROM devices WHERE auth_switch_command = ?1",
                [command],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn end_auth_switch(&mut self, dev_id: &str, switched: bool) -> Result<(), StoreError> {
        self.run_cached(
            "UPDATE devices SET auth = CASE WHEN ?2 THEN auth_switch_to ELSE auth END,
                 auth_switch_to = NULL, auth_switch_command = NULL WHERE dev_id = ?1",
            params![dev_id, switched],
        )?;
        Ok(())
    }

    fn take_bootstrap(&mut self, command: i64) -> Result<Option<PlannedBootstrap>, StoreError> {
        if !plan_exists(
            self,
            "SELECT EXISTS (SELECT 1 FROM pending_bootstraps WHERE command = ?1)",
            command,
        )? {
            return Ok(None);
        }
        Ok(self
            .row_cached(
                "DELETE FROM pending_bootstraps WHERE command = ?1
                 RETURNING dev_id, gateway_id, client_secret, server_secret",
                [command],
                |row| {
                    Ok(PlannedBootstrap {
                        dev_id: row.get(0)?,
                        gateway_id: row.get(1)?,
                        client_secret: row.get(2)?,
                        server_secret: row.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn associated_gateway(&mut self, dev_id: &str) -> Result<Option<String>, StoreError> {
        // The transaction holds SQLite's one write lock: nobody changes it meanwhile.
        Ok(self
            .row_cached(
                "SELECT gateway_id FROM associations WHERE dev_id = ?1",
                [dev_id],
                |row| row.get(0),
            )
            .optional()?)
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
        self.row_cached(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = ?1"),
            [dev_id],
            device_row,
        )
        .optional()?
        .transpose()
    }

    fn gateway(&mut self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        Ok(self
            .row_cached(
                &format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway_id = ?1"),
                [gateway_id],
                gateway_row,
            )
            .optional()?)
    }

    fn write_followups(&mut self, then: &Followups, now: i64) -> Result<(), StoreError> {
        write_followups(self, then, now)
    }

    fn take_validation(&mut self, command: i64) -> Result<Option<(String, String)>, StoreError> {
        if !plan_exists(
            self,
            "SELECT EXISTS (SELECT 1 FROM pending_validations WHERE command = ?1)",
            command,
        )? {
            return Ok(None);
        }
        Ok(self
            .row_cached(
                "DELETE FROM pending_validations WHERE command = ?1 RETURNING dev_id, gateway_id",
                [command],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn mark_validated(&mut self, dev_id: &str, gateway_id: &str) -> Result<(), StoreError> {
        self.run_cached(
            "UPDATE associations SET trust = 'validated'
             WHERE dev_id = ?1 AND gateway_id = ?2 AND trust = 'restricted'",
            params![dev_id, gateway_id],
        )?;
        Ok(())
    }
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
        if let Some(gateway_id) = &command.validates {
            connection.run_cached(
                "INSERT INTO pending_validations (command, dev_id, gateway_id)
                 VALUES (last_insert_rowid(), ?1, ?2)",
                params![command.dev_id, gateway_id],
            )?;
        }
    }
    for event in &then.events {
        connection.run_cached(
            "INSERT INTO events (at, dev_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now, event.dev_id, event.kind, event.detail],
        )?;
    }
    Ok(())
}
