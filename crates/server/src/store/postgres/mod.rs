//! The shared store backend: PostgreSQL, for several server instances serving the
//! same devices. A small pool of connections per instance; versioned migrations in
//! `gwmo_schema`, run under an advisory lock so that instances starting together
//! migrate once. Row locks make claiming a command, settling a bootstrap and
//! settling an authentication switch happen once, whichever instance tries first.
//!
//! The client is the synchronous `postgres` crate: the DM endpoint already runs on
//! blocking threads, and calls from async handlers leave the runtime's worker with
//! `block_in_place` (so this backend needs the multi-threaded runtime).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use gwmo_proto::auth::AuthType;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls, Row, Statement};

mod rows;
mod schema;
mod units;

use rows::*;
use schema::MIGRATIONS;
use units::*;

use super::filter::{Bound, DeviceFilter, Dialect, POSTGRES};
use super::settle::{settle_auth_switch, settle_bootstrap, settle_validation};
use super::sql::{Cell, SqlRunner, dollar_placeholders};

use super::{
    ASSOCIATION_COLUMNS, Association, AuditEntry, AuditFilter, AuditRecord, BootstrapPlan,
    CLAIM_OR_EXPIRE, Cancelled, CommandFilter, CommandRecord, CommandState, Completed,
    Decommissioned, DeviceRecord, Entailed, EventFilter, EventRecord, FanoutRecord, Followups,
    GatewayRecord, GatewayRemoval, ListedDevice, NewDevice, OperatorRecord, QueuedCommand,
    Reported, SessionRecord, Store, StoreError, command_state, crash_point, devinfo_to_json,
};
use crate::operators::Role;

/// A bound value as PostgreSQL takes it.
fn sql_value(bound: Bound) -> Box<dyn ToSql + Sync> {
    match bound {
        Bound::Text(text) => Box::new(text),
        Bound::Int(number) => Box::new(number),
        Bound::NullText => Box::new(None::<String>),
        Bound::NullInt => Box::new(None::<i64>),
    }
}

/// One value of a row, by its column's type.
fn cell(row: &Row, at: usize) -> Result<Cell, StoreError> {
    let column = &row.columns()[at];
    Ok(match *column.type_() {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(at)?
            .map_or(Cell::Null, Cell::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(at)?
            .map_or(Cell::Null, |n| Cell::Int(n.into())),
        Type::TEXT | Type::VARCHAR => row
            .try_get::<_, Option<String>>(at)?
            .map_or(Cell::Null, Cell::Text),
        ref other => {
            return Err(StoreError::Corrupt(format!(
                "column {} of type {other} read as plain SQL",
                column.name()
            )));
        }
    })
}

impl SqlRunner for PostgresStore {
    fn run(&self, sql: &str, params: &[Bound]) -> Result<u64, StoreError> {
        let values: Vec<Box<dyn ToSql + Sync>> = params.iter().cloned().map(sql_value).collect();
        self.execute(&dollar_placeholders(sql), &borrowed(&values))
    }

    fn rows(&self, sql: &str, params: &[Bound]) -> Result<Vec<Vec<Cell>>, StoreError> {
        let values: Vec<Box<dyn ToSql + Sync>> = params.iter().cloned().map(sql_value).collect();
        self.query(&dollar_placeholders(sql), &borrowed(&values), |row| {
            (0..row.len()).map(|at| cell(row, at)).collect()
        })
    }

    fn dialect(&self) -> &'static Dialect {
        &POSTGRES
    }
}

/// Parameters as the client takes them.
fn borrowed(values: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|value| value.as_ref()).collect()
}

/// Any fixed number: the advisory lock instances take while migrating.
const MIGRATION_LOCK: i64 = 0x67776d6f;

/// Connections each instance keeps.
const POOL_SIZE: usize = 4;

pub struct PostgresStore {
    config: Config,
    pool: Vec<Mutex<Option<Pooled>>>,
    next: AtomicUsize,
}

/// A pooled connection and the statements prepared on it: a statement is parsed once
/// per connection, and each later call is one round trip instead of two (prepare,
/// then execute).
struct Pooled {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Pooled {
    /// `sql`, prepared on this connection the first time it is asked for.
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings
    /// the schema up to date.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let config: Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::BadUrl(e.to_string()))?;
        let store = PostgresStore {
            config,
            pool: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        store.with(migrate)?;
        Ok(store)
    }

    /// Runs `work` on a pooled connection (connecting, or reconnecting after the
    /// server closed it, as needed).
    fn with_pooled<T>(
        &self,
        work: impl FnOnce(&mut Pooled) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        leave_async_worker(|| {
            let mut slot = self.slot();
            let pooled = match slot.take() {
                Some(pooled) if !pooled.client.is_closed() => slot.insert(pooled),
                _ => slot.insert(Pooled {
                    client: self.config.connect(NoTls)?,
                    statements: HashMap::new(),
                }),
            };
            work(pooled)
        })
    }

    /// Runs `work` on a pooled connection's client (for transactions).
    fn with<T>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_pooled(|pooled| work(&mut pooled.client))
    }

    /// A free connection slot if there is one, else the next in turn.
    fn slot(&self) -> MutexGuard<'_, Option<Pooled>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.pool.len() {
            if let Ok(slot) = self.pool[(start + offset) % self.pool.len()].try_lock() {
                return slot;
            }
        }
        // A panicking holder leaves the connection as PostgreSQL left it: usable.
        self.pool[start % self.pool.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.with_pooled(|pooled| {
            let statement = pooled.statement(sql)?;
            Ok(pooled.client.execute(&statement, params)?)
        })
    }

    fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        map: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.with_pooled(|pooled| {
            let statement = pooled.statement(sql)?;
            pooled
                .client
                .query_opt(&statement, params)?
                .as_ref()
                .map(map)
                .transpose()
        })
    }

    fn query<T>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        map: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.with_pooled(|pooled| {
            let statement = pooled.statement(sql)?;
            pooled
                .client
                .query(&statement, params)?
                .iter()
                .map(map)
                .collect()
        })
    }
}

/// The synchronous client runs its own small runtime: on an async worker thread it
/// must first leave the caller's.
fn leave_async_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS gwmo_schema (version INTEGER NOT NULL);
         INSERT INTO gwmo_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM gwmo_schema);",
    )?;
    let version: i32 = transaction
        .query_one("SELECT version FROM gwmo_schema", &[])?
        .get(0);
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::TooNew(version.into(), MIGRATIONS.len()));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.batch_execute(migration)?;
        let version = index as i32 + 1;
        transaction.execute("UPDATE gwmo_schema SET version = $1", &[&version])?;
    }
    transaction.commit()?;
    Ok(())
}

impl Store for PostgresStore {
    fn enroll(&self, device: &NewDevice, now: i64) -> Result<(), StoreError> {
        let inserted = self.execute(
            "INSERT INTO devices (dev_id, auth, client_name, client_secret, server_name, server_secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dev_id) DO NOTHING",
            &[
                &device.dev_id,
                &device.auth.name(),
                &device.client_name,
                &device.client_secret,
                &device.server_name,
                &device.server_secret,
                &now,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(device.dev_id.clone()));
        }
        Ok(())
    }

    fn device(&self, dev_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = $1"),
            &[&dev_id],
            device_row,
        )
    }

    fn devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ListedDevice>, StoreError> {
        let (condition, bound) = filter.condition(&POSTGRES, 3);
        let mut values: Vec<Box<dyn ToSql + Sync>> = vec![
            Box::new(after.unwrap_or("").to_owned()),
            Box::new(i64::from(limit)),
        ];
        values.extend(bound.into_iter().map(sql_value));
        self.query(
            &format!(
                "SELECT {} FROM devices WHERE dev_id > $1 AND {condition} ORDER BY dev_id LIMIT $2",
                listed_columns()
            ),
            &borrowed(&values),
            listed_device_row,
        )
    }

    fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError> {
        let (condition, bound) = filter.condition(&POSTGRES, 1);
        let values: Vec<Box<dyn ToSql + Sync>> = bound.into_iter().map(sql_value).collect();
        let counts = self.query(
            &format!("SELECT count(*) FROM devices WHERE {condition}"),
            &borrowed(&values),
            |row| Ok(row.try_get::<_, i64>(0)?),
        )?;
        Ok(counts.first().copied().unwrap_or(0) as u64)
    }

    fn record_reported(&self, dev_id: &str, reported: &Reported<'_>) -> Result<(), StoreError> {
        let devdetail = reported.devdetail_json()?;
        self.execute(
            "UPDATE devices SET server_nonce = coalesce($2, server_nonce),
                 devdetail = CASE WHEN $3::TEXT IS NULL THEN devdetail
                                  ELSE (devdetail::jsonb || ($3::TEXT)::jsonb)::TEXT END
             WHERE dev_id = $1",
            &[&dev_id, &reported.server_nonce, &devdetail],
        )?;
        Ok(())
    }

    fn tag_devices(
        &self,
        filter: &DeviceFilter,
        add: &[String],
        remove: &[String],
    ) -> Result<u64, StoreError> {
        let (condition, bound) = filter.condition(&POSTGRES, 2);
        let (count_condition, _) = filter.condition(&POSTGRES, 1);
        self.with(|client| {
            let mut transaction = client.transaction()?;
            let with_tag = |tag: &String| {
                let mut values: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(tag.clone())];
                values.extend(bound.iter().cloned().map(sql_value));
                values
            };
            for tag in add {
                transaction.execute(
                    &format!(
                        "INSERT INTO device_tags (dev_id, tag) SELECT dev_id, $1 FROM devices
                         WHERE {condition} ON CONFLICT DO NOTHING"
                    ),
                    &borrowed(&with_tag(tag)),
                )?;
            }
            for tag in remove {
                transaction.execute(
                    &format!(
                        "DELETE FROM device_tags WHERE tag = $1
                         AND dev_id IN (SELECT dev_id FROM devices WHERE {condition})"
                    ),
                    &borrowed(&with_tag(tag)),
                )?;
            }
            let values: Vec<Box<dyn ToSql + Sync>> = bound.iter().cloned().map(sql_value).collect();
            let matched: i64 = transaction
                .query_one(
                    &format!("SELECT count(*) FROM devices WHERE {count_condition}"),
                    &borrowed(&values),
                )?
                .try_get(0)?;
            transaction.commit()?;
            Ok(matched as u64)
        })
    }

    fn sql(&self) -> &dyn SqlRunner {
        self
    }

    fn tags(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.query(
            "SELECT tag, count(*) FROM device_tags GROUP BY tag ORDER BY tag",
            &[],
            |row| {
                Ok((
                    row.try_get::<_, String>(0)?,
                    row.try_get::<_, i64>(1)? as u64,
                ))
            },
        )
    }

    fn remove_device(&self, dev_id: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM devices WHERE dev_id = $1", &[&dev_id])? > 0)
    }

    fn swap_client_nonce(
        &self,
        dev_id: &str,
        used: &[u8],
        next: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE devices SET client_nonce = $3 WHERE dev_id = $1 AND client_nonce = $2",
            &[&dev_id, &used, &next],
        )? == 1)
    }

    fn record_session(&self, dev_id: &str, session: &SessionRecord<'_>) -> Result<(), StoreError> {
        let devinfo = devinfo_to_json(session.devinfo)?;
        self.execute(
            "UPDATE devices SET devinfo = $2, encoding = $3, sessions = sessions + 1, last_session_at = $4,
                 notify_address = coalesce($5, notify_address)
             WHERE dev_id = $1",
            &[&dev_id, &devinfo, &session.encoding, &session.now, &session.notify_address],
        )?;
        Ok(())
    }

    fn swap_client_nonce_and_record_session(
        &self,
        dev_id: &str,
        used: &[u8],
        next: &[u8],
        session: &SessionRecord<'_>,
    ) -> Result<bool, StoreError> {
        let devinfo = devinfo_to_json(session.devinfo)?;
        Ok(self.execute(
            "UPDATE devices SET client_nonce = $3, devinfo = $4, encoding = $5, sessions = sessions + 1,
                 last_session_at = $6, notify_address = coalesce($7, notify_address)
             WHERE dev_id = $1 AND client_nonce = $2",
            &[
                &dev_id,
                &used,
                &next,
                &devinfo,
                &session.encoding,
                &session.now,
                &session.notify_address,
            ],
        )? == 1)
    }

    fn set_notify_address(&self, dev_id: &str, address: Option<&str>) -> Result<(), StoreError> {
        self.execute(
            "UPDATE devices SET notify_address = $2 WHERE dev_id = $1",
            &[&dev_id, &address],
        )?;
        Ok(())
    }

    fn queue(&self, command: &QueuedCommand<'_>, now: i64) -> Result<i64, StoreError> {
        self.with(|client| {
            Ok(client
                .query_one(
                    "INSERT INTO commands (dev_id, spec, state, queued_at, expires_at)
                     VALUES ($1, $2, 'queued', $3, $4) RETURNING id",
                    &[&command.dev_id, &command.spec, &now, &command.expires_at],
                )?
                .try_get(0)?)
        })
    }

    fn cancel_command(&self, id: i64, now: i64) -> Result<Cancelled, StoreError> {
        self.with(|client| {
            let mut transaction = client.transaction()?;
            let cancelled = transaction.execute(
                "UPDATE commands SET state = 'cancelled', done_at = $2 WHERE id = $1 AND state = 'queued'",
                &[&id, &now],
            )?;
            let outcome = match cancelled {
                0 => match transaction.query_opt("SELECT state FROM commands WHERE id = $1", &[&id])? {
                    Some(row) => Cancelled::TooLate(command_state(row.try_get(0)?)?),
                    None => Cancelled::NotFound,
                },
                _ => Cancelled::Now,
            };
            transaction.commit()?;
            Ok(outcome)
        })
    }

    fn expire_commands(&self, now: i64) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE commands SET state = 'expired', done_at = $1
             WHERE state = 'queued' AND expires_at IS NOT NULL AND expires_at <= $1",
            &[&now],
        )
    }

    fn claim_pending(
        &self,
        dev_id: &str,
        session_key: &str,
        now: i64,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        // Two instances claiming at once: the second waits for the first's row locks,
        // then sees the rows no longer queued and skips them.
        let mut claimed = self.query(
            &format!(
                "UPDATE commands SET {}
                 WHERE dev_id = $1 AND state = 'queued' RETURNING {COMMAND_COLUMNS}",
                CLAIM_OR_EXPIRE.replace('?', "$")
            ),
            &[&dev_id, &session_key, &now],
            command_row,
        )?;
        claimed.retain(|c| c.state == CommandState::Sent);
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    fn complete(
        &self,
        id: i64,
        status: u16,
        results: &str,
        now: i64,
        entailed: Entailed<'_>,
    ) -> Result<Completed, StoreError> {
        self.with(|client| {
            let mut transaction = client.transaction()?;
            transaction.execute(
                "UPDATE commands SET state = 'done', status = $2, results = $3, done_at = $4
                 WHERE id = $1 AND state = 'sent'",
                &[&id, &i32::from(status), &results, &now],
            )?;
            let completed = Completed {
                auth_switched_to: settle_auth_switch(&mut transaction, id, status)?,
                bootstrap: settle_bootstrap(&mut transaction, id, status, now, entailed)?,
                validated: settle_validation(&mut transaction, id, status)?,
            };
            transaction.commit()?;
            Ok(completed)
        })
    }

    fn resend_as(&self, id: i64, spec: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE commands SET spec = $2, state = 'queued', session_key = NULL, sent_at = NULL
             WHERE id = $1 AND state = 'sent'",
            &[&id, &spec],
        )? == 1)
    }

    fn bootstrap_pending(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError> {
        let rows = self.query(
            "SELECT 1 FROM pending_bootstraps WHERE dev_id = $1 AND gateway_id = $2 LIMIT 1",
            &[&dev_id, &gateway_id],
            |_| Ok(()),
        )?;
        Ok(!rows.is_empty())
    }

    fn requeue_session(&self, dev_id: &str, session_key: &str) -> Result<usize, StoreError> {
        let requeued = self.execute(
            "UPDATE commands SET state = 'queued', session_key = NULL, sent_at = NULL
             WHERE dev_id = $1 AND state = 'sent' AND session_key = $2",
            &[&dev_id, &session_key],
        )?;
        Ok(requeued as usize)
    }

    fn devices_with_queued_commands(&self) -> Result<Vec<String>, StoreError> {
        self.query(
            "SELECT DISTINCT dev_id FROM commands WHERE state = 'queued' ORDER BY dev_id",
            &[],
            |row| Ok(row.try_get::<_, String>(0)?),
        )
    }

    fn has_queued_commands(&self, dev_id: &str) -> Result<bool, StoreError> {
        let found = self.query(
            "SELECT 1 FROM commands WHERE dev_id = $1 AND state = 'queued' LIMIT 1",
            &[&dev_id],
            |_| Ok(()),
        )?;
        Ok(!found.is_empty())
    }

    fn requeue_abandoned(&self, sent_before: i64) -> Result<Vec<String>, StoreError> {
        let devices = self.query(
            "UPDATE commands SET state = 'queued', session_key = NULL, sent_at = NULL
             WHERE state = 'sent' AND sent_at < $1 RETURNING dev_id",
            &[&sent_before],
            |row| Ok(row.try_get::<_, String>(0)?),
        )?;
        let devices: std::collections::BTreeSet<String> = devices.into_iter().collect();
        Ok(devices.into_iter().collect())
    }

    fn plan_auth_switch(
        &self,
        dev_id: &str,
        auth: AuthType,
        command: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE devices SET auth_switch_to = $2, auth_switch_command = $3 WHERE dev_id = $1",
            &[&dev_id, &auth.name(), &command],
        )?;
        Ok(())
    }

    fn register_gateway(&self, gateway: &GatewayRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO gateways (gateway_id, dev_id, dm_url, server_assisted) VALUES ($1, $2, $3, $4)
             ON CONFLICT (gateway_id) DO UPDATE SET dev_id = $2, dm_url = $3, server_assisted = $4",
            &[
                &gateway.gateway_id,
                &gateway.dev_id,
                &gateway.dm_url,
                &gateway.server_assisted,
            ],
        )?;
        Ok(())
    }

    fn gateway(&self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway_id = $1"),
            &[&gateway_id],
            gateway_row,
        )
    }

    fn gateways(&self, after: &str, limit: u32) -> Result<Vec<GatewayRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway_id > $1
                 ORDER BY gateway_id LIMIT $2"
            ),
            &[&after, &i64::from(limit)],
            gateway_row,
        )
    }

    fn gateway_by_device(&self, dev_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE dev_id = $1"),
            &[&dev_id],
            gateway_row,
        )
    }

    fn association(&self, dev_id: &str) -> Result<Option<Association>, StoreError> {
        self.query_opt(
            &format!("SELECT {ASSOCIATION_COLUMNS} FROM associations WHERE dev_id = $1"),
            &[&dev_id],
            association_row,
        )
    }

    fn associations(
        &self,
        gateway_id: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Association>, StoreError> {
        self.query(
            &format!(
                "SELECT {ASSOCIATION_COLUMNS} FROM associations
                 WHERE dev_id > $1 AND ($2::TEXT IS NULL OR gateway_id = $2)
                 ORDER BY dev_id LIMIT $3"
            ),
            &[&after, &gateway_id, &i64::from(limit)],
            association_row,
        )
    }

    fn associate(
        &self,
        dev_id: &str,
        gateway_id: &str,
        origin: &str,
        attach_key: Option<&str>,
        now: i64,
        then: &Followups,
    ) -> Result<bool, StoreError> {
        self.with(|client| {
            let mut transaction = client.transaction()?;
            let changed = upsert_association(
                &mut transaction,
                dev_id,
                gateway_id,
                origin,
                attach_key,
                now,
            )?;
            if changed {
                crash_point("associate");
                write_followups(&mut transaction, then, now)?;
            }
            transaction.commit()?;
            Ok(changed)
        })
    }

    fn dissociate(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError> {
        Ok(self.execute(
            "DELETE FROM associations WHERE dev_id = $1 AND gateway_id = $2",
            &[&dev_id, &gateway_id],
        )? > 0)
    }

    fn queue_bootstrap(&self, plan: &BootstrapPlan<'_>, now: i64) -> Result<i64, StoreError> {
        self.with(|client| {
            let mut transaction = client.transaction()?;
            let mut last = None;
            for spec in plan.commands {
                let id: i64 = transaction
                    .query_one(
                        "INSERT INTO commands (dev_id, spec, state, queued_at)
                         VALUES ($1, $2, 'queued', $3) RETURNING id",
                        &[&plan.dev_id, spec, &now],
                    )?
                    .try_get(0)?;
                last = Some(id);
                crash_point("queue-bootstrap");
            }
            let last = last.ok_or(StoreError::EmptyPlan)?;
            transaction.execute(
                "INSERT INTO pending_bootstraps (command, dev_id, gateway_id, client_secret, server_secret)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&last, &plan.dev_id, &plan.gateway_id, &plan.client_secret, &plan.server_secret],
            )?;
            write_followups(&mut transaction, plan.then, now)?;
            transaction.commit()?;
            Ok(last)
        })
    }

    fn create_fanout(
        &self,
        gateway_id: &str,
        targets: &str,
        spec: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        self.with(|client| {
            Ok(client
                .query_one(
                    "INSERT INTO fanouts (gateway_id, targets, spec, state, created_at)
                     VALUES ($1, $2, $3, 'sent', $4) RETURNING id",
                    &[&gateway_id, &targets, &spec, &now],
                )?
                .try_get(0)?)
        })
    }

    fn complete_fanout(
        &self,
        id: i64,
        gateway_id: &str,
        results: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE fanouts SET state = 'done', results = $3, done_at = $4
             WHERE id = $1 AND gateway_id = $2 AND state = 'sent'",
            &[&id, &gateway_id, &results, &now],
        )? > 0)
    }

    fn fanout(&self, id: i64) -> Result<Option<FanoutRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {FANOUT_COLUMNS} FROM fanouts WHERE id = $1"),
            &[&id],
            fanout_row,
        )
    }

    fn command(&self, id: i64) -> Result<Option<CommandRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1"),
            &[&id],
            command_row,
        )
    }

    fn commands_of(
        &self,
        dev_id: &str,
        filter: &CommandFilter,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {COMMAND_COLUMNS} FROM commands
                 WHERE dev_id = $1 AND ($2::TEXT IS NULL OR state = $2) AND ($3::BIGINT IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            ),
            &[
                &dev_id,
                &filter.state.map(CommandState::as_str),
                &filter.before,
                &i64::from(limit),
            ],
            command_row,
        )
    }

    fn fanouts(
        &self,
        gateway_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FanoutRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {FANOUT_COLUMNS} FROM fanouts
                 WHERE ($1::TEXT IS NULL OR gateway_id = $1) AND ($2::BIGINT IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&gateway_id, &before, &i64::from(limit)],
            fanout_row,
        )
    }

    fn decommission_device(&self, dev_id: &str) -> Result<Decommissioned, StoreError> {
        self.with(|client| {
            let mut transaction = client.transaction()?;
            if let Some(row) = transaction.query_opt(
                "SELECT gateway_id FROM gateways WHERE dev_id = $1",
                &[&dev_id],
            )? {
                return Ok(Decommissioned::IsGateway(row.try_get(0)?));
            }
            let association = transaction
                .query_opt(
                    &format!(
                        "DELETE FROM associations WHERE dev_id = $1 RETURNING {ASSOCIATION_COLUMNS}"
                    ),
                    &[&dev_id],
                )?
                .as_ref()
                .map(association_row)
                .transpose()?;
            transaction.execute(
                "DELETE FROM pending_bootstraps WHERE dev_id = $1",
                &[&dev_id],
            )?;
            let removed =
                transaction.execute("DELETE FROM devices WHERE dev_id = $1", &[&dev_id])?;
            transaction.commit()?;
            Ok(match (removed, association) {
                (0, None) => Decommissioned::NotFound,
                (_, association) => Decommissioned::Removed(association),
            })
        })
    }

    fn remove_gateway(&self, gateway_id: &str, force: bool) -> Result<GatewayRemoval, StoreError> {
        self.with(|client| {
            let mut transaction = client.transaction()?;
            // Locks the gateway's row: an attach reported meanwhile waits for the end.
            if transaction
                .query_opt(
                    "SELECT 1 FROM gateways WHERE gateway_id = $1 FOR UPDATE",
                    &[&gateway_id],
                )?
                .is_none()
            {
                return Ok(GatewayRemoval::NotFound);
            }
            let behind: i64 = transaction
                .query_one(
                    "SELECT count(*) FROM associations WHERE gateway_id = $1",
                    &[&gateway_id],
                )?
                .try_get(0)?;
            if behind > 0 && !force {
                return Ok(GatewayRemoval::HasDevices(behind as u64));
            }
            for sql in [
                "DELETE FROM associations WHERE gateway_id = $1",
                "DELETE FROM fanouts WHERE gateway_id = $1",
                "DELETE FROM pending_bootstraps WHERE gateway_id = $1",
                "DELETE FROM gateways WHERE gateway_id = $1",
            ] {
                transaction.execute(sql, &[&gateway_id])?;
            }
            transaction.commit()?;
            Ok(GatewayRemoval::Removed(behind as u64))
        })
    }

    fn associated_counts(&self, gateway_ids: &[&str]) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = self.query(
            "SELECT gateway_id, count(*) FROM associations WHERE gateway_id = ANY($1)
             GROUP BY gateway_id",
            &[&gateway_ids],
            |row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?)),
        )?;
        let mut counts: BTreeMap<String, u64> =
            gateway_ids.iter().map(|id| ((*id).to_owned(), 0)).collect();
        counts.extend(rows.into_iter().map(|(id, count)| (id, count as u64)));
        Ok(counts)
    }

    fn add_operator(&self, operator: &OperatorRecord) -> Result<(), StoreError> {
        let added = self.execute(
            "INSERT INTO operators (name, role, token_sha256, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[
                &operator.name,
                &operator.role.name(),
                &operator.token_sha256,
                &operator.created_at,
            ],
        )?;
        match added {
            0 => Err(StoreError::AlreadyExists(operator.name.clone())),
            _ => Ok(()),
        }
    }

    fn operator_by_token(&self, token_sha256: &str) -> Result<Option<OperatorRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE token_sha256 = $1"),
            &[&token_sha256],
            operator_row,
        )
    }

    fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        self.query(
            &format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name"),
            &[],
            operator_row,
        )
    }

    fn remove_operator(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM operators WHERE name = $1", &[&name])? > 0)
    }

    fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO audit (at, operator, role, source, method, path, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &entry.at,
                &entry.operator,
                &entry.role.map(Role::name),
                &entry.source,
                &entry.method,
                &entry.path,
                &i32::from(entry.status),
            ],
        )?;
        Ok(())
    }

    fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit
                 WHERE ($1::BIGINT IS NULL OR id < $1) AND ($2::TEXT IS NULL OR operator = $2)
                   AND (NOT $3 OR status IN (401, 403))
                 ORDER BY id DESC LIMIT $4"
            ),
            &[
                &before,
                &filter.operator,
                &filter.refused,
                &i64::from(limit),
            ],
            audit_row,
        )
    }

    fn set_tree(&self, dev_id: &str, tnds: &str, now: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE devices SET tree = $2, tree_at = $3 WHERE dev_id = $1",
            &[&dev_id, &tnds, &now],
        )?;
        Ok(())
    }

    fn tree(&self, dev_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.query_opt(
            "SELECT tree, tree_at FROM devices WHERE dev_id = $1 AND tree IS NOT NULL",
            &[&dev_id],
            |row| Ok((row.try_get(0)?, row.try_get(1)?)),
        )
    }

    fn forget_history(&self, before: i64) -> Result<u64, StoreError> {
        let mut forgotten = 0;
        for sql in [
            "DELETE FROM commands WHERE done_at < $1 AND state IN ('done', 'cancelled', 'expired')",
            "DELETE FROM fanouts WHERE state = 'done' AND done_at < $1",
            "DELETE FROM events WHERE at < $1",
            "DELETE FROM audit WHERE at < $1",
        ] {
            forgotten += self.execute(sql, &[&before])?;
        }
        Ok(forgotten)
    }

    fn log_event(
        &self,
        dev_id: Option<&str>,
        kind: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO events (at, dev_id, kind, detail) VALUES ($1, $2, $3, $4)",
            &[&now, &dev_id, &kind, &detail],
        )?;
        Ok(())
    }

    fn events(
        &self,
        after_id: i64,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.query(
            "SELECT id, at, dev_id, kind, detail FROM events
             WHERE id > $1 AND ($3::TEXT IS NULL OR kind = $3) AND ($4::TEXT IS NULL OR dev_id = $4)
             ORDER BY id LIMIT $2",
            &[&after_id, &i64::from(limit), &filter.kind, &filter.dev_id],
            |row| {
                Ok(EventRecord {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    dev_id: row.try_get(2)?,
                    kind: row.try_get(3)?,
                    detail: row.try_get(4)?,
                })
            },
        )
    }
}
