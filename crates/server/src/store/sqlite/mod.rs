//! The embedded store backend: one SQLite file created on first start, in WAL mode,
//! with versioned migrations recorded in `PRAGMA user_version`. One connection behind
//! a reentrant lock: SQLite serialises writers anyway, and a group of calls on one
//! thread ([`Store::group`]) holds it throughout, each call a savepoint in the group's
//! one transaction. DM messages share commits ([`Batches`]): a batch is one
//! transaction that stays open between its members, and the first call from anyone
//! else commits it before it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use gwmo_proto::auth::AuthType;
use gwmo_session::DeviceAuth;
use parking_lot::{Mutex, ReentrantMutex, ReentrantMutexGuard};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use tokio::sync::watch;

mod rows;
mod schema;
mod unit;
mod units;

use rows::*;
use schema::MIGRATIONS;
use unit::Unit;
use units::*;

use super::batch::{BatchEnds, Batches, Joined, OpenBatch};
use super::filter::{Bound, DeviceFilter, Dialect, SQLITE};
use super::settle::{settle_auth_switch, settle_bootstrap, settle_validation};
use super::sql::{Cell, SqlRunner};

use super::{
    ASSOCIATION_COLUMNS, Association, AuditEntry, AuditFilter, AuditRecord, BootstrapPlan,
    CLAIM_OR_EXPIRE, Cancelled, CommandFilter, CommandRecord, CommandState, Completed,
    Decommissioned, DeviceRecord, Entailed, EventFilter, EventRecord, FanoutRecord, Followups,
    GatewayRecord, GatewayRemoval, ListedDevice, NewDevice, OperatorRecord, QueuedCommand,
    Reported, SessionRecord, Store, StoreError, command_state, crash_point, devinfo_to_json,
};
use crate::operators::Role;

/// A bound value as SQLite takes it.
fn sql_value(bound: Bound) -> Value {
    match bound {
        Bound::Text(text) => Value::Text(text),
        Bound::Int(number) => Value::Integer(number),
        Bound::NullText | Bound::NullInt => Value::Null,
    }
}

impl SqlRunner for SqliteStore {
    fn run(&self, sql: &str, params: &[Bound]) -> Result<u64, StoreError> {
        let values = params.iter().cloned().map(sql_value);
        Ok(self.lock().run_cached(sql, params_from_iter(values))? as u64)
    }

    fn rows(&self, sql: &str, params: &[Bound]) -> Result<Vec<Vec<Cell>>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(sql)?;
        let columns = statement.column_count();
        let values = params.iter().cloned().map(sql_value);
        let rows = statement.query_map(params_from_iter(values), |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(number) => Cell::Int(number),
                        ValueRef::Real(number) => Cell::Int(number as i64),
                        ValueRef::Text(text) | ValueRef::Blob(text) => {
                            Cell::Text(String::from_utf8_lossy(text).into_owned())
                        }
                    })
                })
                .collect::<rusqlite::Result<Vec<Cell>>>()
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn dialect(&self) -> &'static Dialect {
        &SQLITE
    }
}

pub struct SqliteStore {
    connection: ReentrantMutex<Connection>,
    /// The open batch: changed only by whoever holds `connection`.
    batch: Mutex<OpenBatch>,
    batch_ends: watch::Sender<BatchEnds>,
}

/// Pages the WAL holds before a commit checkpoints it into the file. SQLite's 1,000
/// (4 MiB) made the DM path checkpoint about once a second at full load, and each
/// checkpoint wrote back the same hot pages (devices, the command queue) and synced
/// both files: a twentieth of a DM message's CPU. Ten times as many pages write each
/// hot page back a tenth as often; the WAL file grows to about 40 MiB and is reused
/// from its start after each checkpoint.
const WAL_PAGES_BEFORE_CHECKPOINT: i64 = 10_000;

impl SqliteStore {
    /// Opens the database file, creating it (and its directory) on first start, with a
    /// page cache of `cache_mib`.
    pub fn open(path: &Path, cache_mib: u32) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_locked(path, cache_mib, true)
    }

    /// As [`SqliteStore::open`], but other connections may read the file meanwhile: a
    /// test looks at what they see.
    #[cfg(test)]
    pub fn open_shared(path: &Path, cache_mib: u32) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_locked(path, cache_mib, false)
    }

    fn open_locked(
        path: &Path,
        cache_mib: u32,
        exclusive: bool,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Create(dir.display().to_string(), e))?;
        }
        let connection = Connection::open(path)?;
        // One process owns the file (several instances share a PostgreSQL store):
        // exclusive locking keeps the WAL index in this process's memory, which spares
        // every transaction its shared-memory locks (two fcntl calls and more: a tenth
        // of the server's CPU on a small DM message), and refuses a second server on
        // the same file at once instead of letting it share the file.
        connection.busy_timeout(std::time::Duration::ZERO)?;
        let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::InUse(path.display().to_string())
            }
            _ => StoreError::Sqlite(error),
        };
        if exclusive {
            connection
                .pragma_update(None, "locking_mode", "EXCLUSIVE")
                .map_err(in_use)?;
        }
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(in_use)?;
        if exclusive {
            connection
                .execute_batch("BEGIN EXCLUSIVE; COMMIT")
                .map_err(in_use)?;
        }
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "wal_autocheckpoint", WAL_PAGES_BEFORE_CHECKPOINT)?;
        // The server's default is 32 MiB: SQLite's own 2 MiB made a 10,000-device store
        // re-read its pages from the OS on every query. A negative size is in KiB.
        connection.pragma_update(None, "cache_size", -(i64::from(cache_mib) * 1024))?;
        SqliteStore::prepare(connection)
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::prepare(Connection::open_in_memory()?)
    }

    /// Rolls back the open transaction behind the store's back, as a unit that could
    /// not roll back to its savepoint does (a test of what a lost batch does).
    #[cfg(test)]
    pub(crate) fn roll_back_behind_its_back(&self) {
        self.connection.lock().execute_batch("ROLLBACK").unwrap();
    }

    fn prepare(connection: Connection) -> Result<SqliteStore, StoreError> {
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // A savepoint's journal (every store call inside a message's group is one) in
        // memory, never a file: SQLite spills one past 64 KiB to a temporary file and,
        // on this long-lived connection, kept writing every later savepoint's pages
        // there, a third of the server's writes (`pwrite64`) on the DM path.
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.set_prepared_statement_cache_capacity(64);
        let version: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew(version, MIGRATIONS.len()));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let unit = Unit::begin(&connection)?;
            unit.execute_batch(migration)?;
            unit.pragma_update(None, "user_version", index as i64 + 1)?;
            unit.commit()?;
        }
        Ok(SqliteStore {
            connection: ReentrantMutex::new(connection),
            batch: Mutex::default(),
            batch_ends: watch::Sender::default(),
        })
    }

    /// The connection, for a call of the store's: an open batch commits first unless
    /// the call is part of a member's work, so that nothing else is ever in a batch.
    fn lock(&self) -> ReentrantMutexGuard<'_, Connection> {
        let connection = self.connection.lock();
        if self.batch.lock().must_end_before_a_foreign_call() {
            // The caller goes on whatever the batch's fate: its members learn it.
            let _ = self.end_batch(&connection);
        }
        connection
    }

    /// Commits the open batch, if one is and no member is running, and publishes how it
    /// ended; `Ok(false)` if there was none. One that failed leaves nothing of its
    /// members' work.
    fn end_batch(&self, connection: &Connection) -> Result<bool, StoreError> {
        let Some(batch) = self.batch.lock().take_to_end() else {
            return Ok(false);
        };
        let committed = if connection.is_autocommit() {
            // A member's unit could not roll back to its savepoint and rolled back the
            // whole transaction (see `Unit`): the members before it lost their work.
            Err(StoreError::BatchLost(batch.id))
        } else {
            connection
                .run_cached("COMMIT", [])
                .map(drop)
                .map_err(|error| {
                    if !connection.is_autocommit() {
                        let _ = connection.execute_batch("ROLLBACK");
                    }
                    StoreError::from(error)
                })
        };
        self.publish_end(batch, &committed);
        committed.map(|()| true)
    }

    /// Tells the members of `batch` how it ended.
    fn publish_end(&self, batch: Joined, committed: &Result<(), StoreError>) {
        if let Err(error) = committed {
            tracing::error!(batch = batch.id, members = batch.members, %error, "a batch of DM messages did not commit: their sessions fail");
        }
        self.batch_ends
            .send_modify(|ends| ends.ended(batch.id, committed.is_ok()));
    }

    fn gateway_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<GatewayRecord>, StoreError> {
        Ok(self
            .lock()
            .row_cached(
                &format!("SELECT gateway_id, dev_id, dm_url, server_assisted FROM gateways WHERE {column} = ?1"),
                [value],
                gateway_row,
            )
            .optional()?)
    }
}

impl Batches for SqliteStore {
    fn join(&self, work: &mut dyn FnMut()) -> Result<Joined, StoreError> {
        let connection = self.connection.lock();
        if connection.is_autocommit()
            && let Some(lost) = self.batch.lock().take_to_end()
        {
            // The open batch's transaction is gone (see `end_batch`): this member opens
            // the next.
            self.publish_end(lost, &Err(StoreError::BatchLost(lost.id)));
        }
        let (joined, opens) = self.batch.lock().start_member();
        /// Ends the member however its work ends (a panic included).
        struct Running<'a>(&'a Mutex<OpenBatch>);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.lock().end_member();
            }
        }
        let running = Running(&self.batch);
        if opens && let Err(error) = connection.run_cached("BEGIN", []) {
            drop(running);
            let error = StoreError::from(error);
            if let Some(unopened) = self.batch.lock().take_to_end() {
                self.publish_end(unopened, &Err(StoreError::BatchLost(unopened.id)));
            }
            return Err(error);
        }
        work();
        drop(running);
        Ok(joined)
    }

    fn commit(&self) -> Result<bool, StoreError> {
        let connection = self.connection.lock();
        self.end_batch(&connection)
    }

    fn ends(&self) -> watch::Receiver<BatchEnds> {
        self.batch_ends.subscribe()
    }
}

impl Store for SqliteStore {
    fn group(&self, work: &mut dyn FnMut()) -> Result<(), StoreError> {
        let connection = self.lock();
        if self.batch.lock().member_running() {
            // The batch's transaction holds the group already: its calls commit with
            // the batch, each whole on its own, and a savepoint around them would only
            // be opened and released (two statements of a DM message's twenty).
            work();
            return Ok(());
        }
        let group = Unit::begin(&connection)?;
        work();
        group.commit()
    }

    fn batches(&self) -> Option<&dyn Batches> {
        Some(self)
    }

    fn enroll(&self, device: &NewDevice, now: i64) -> Result<(), StoreError> {
        let inserted = self.lock().run_cached(
            "INSERT INTO devices (dev_id, auth, client_name, client_secret, server_name, server_secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (dev_id) DO NOTHING",
            params![
                device.dev_id,
                device.auth.name(),
                device.client_name,
                device.client_secret,
                device.server_name,
                device.server_secret,
                now
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(device.dev_id.clone()));
        }
        Ok(())
    }

    fn device(&self, dev_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let connection = self.lock();
        let row = connection
            .row_cached(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = ?1"),
                [dev_id],
                device_row,
            )
            .optional()?;
        row.transpose()
    }

    fn session_auth(&self, dev_id: &str) -> Result<Option<DeviceAuth>, StoreError> {
        self.lock()
            .row_cached(SESSION_AUTH_OF_DEVICE, [dev_id], session_auth_row)
            .optional()?
            .transpose()
    }

    fn devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ListedDevice>, StoreError> {
        let (condition, bound) = filter.condition(&SQLITE, 3);
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {} FROM devices WHERE dev_id > ?1 AND {condition} ORDER BY dev_id LIMIT ?2",
            listed_columns()
        ))?;
        let mut values = vec![
            Value::from(after.unwrap_or("").to_owned()),
            Value::from(limit),
        ];
        values.extend(bound.into_iter().map(sql_value));
        let rows = statement.query_map(params_from_iter(values), listed_device_row)?;
        rows.map(|r| r?).collect()
    }

    fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError> {
        let (condition, bound) = filter.condition(&SQLITE, 1);
        let count = self.lock().row_cached(
            &format!("SELECT count(*) FROM devices WHERE {condition}"),
            params_from_iter(bound.into_iter().map(sql_value)),
            |row| row.get::<_, i64>(0),
        )?;
        Ok(count as u64)
    }

    fn record_reported(&self, dev_id: &str, reported: &Reported<'_>) -> Result<(), StoreError> {
        let devdetail = reported.devdetail_json()?;
        self.lock().run_cached(
            "UPDATE devices SET server_nonce = coalesce(?2, server_nonce),
                 devdetail = CASE WHEN ?3 IS NULL THEN devdetail ELSE json_patch(devdetail, ?3) END
             WHERE dev_id = ?1",
            params![dev_id, reported.server_nonce, devdetail],
        )?;
        Ok(())
    }

    fn tag_devices(
        &self,
        filter: &DeviceFilter,
        add: &[String],
        remove: &[String],
    ) -> Result<u64, StoreError> {
        let (condition, bound) = filter.condition(&SQLITE, 2);
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let with_tag = |tag: &String| {
            let mut values = vec![Value::from(tag.clone())];
            values.extend(bound.iter().cloned().map(sql_value));
            params_from_iter(values)
        };
        for tag in add {
            unit.run_cached(
                &format!(
                    "INSERT INTO device_tags (dev_id, tag) SELECT dev_id, ?1 FROM devices
                     WHERE {condition} ON CONFLICT DO NOTHING"
                ),
                with_tag(tag),
            )?;
        }
        for tag in remove {
            unit.run_cached(
                &format!(
                    "DELETE FROM device_tags WHERE tag = ?1
                     AND dev_id IN (SELECT dev_id FROM devices WHERE {condition})"
                ),
                with_tag(tag),
            )?;
        }
        let (condition, bound) = filter.condition(&SQLITE, 1);
        let matched = unit.row_cached(
            &format!("SELECT count(*) FROM devices WHERE {condition}"),
            params_from_iter(bound.into_iter().map(sql_value)),
            |row| row.get::<_, i64>(0),
        )?;
        unit.commit()?;
        Ok(matched as u64)
    }

    fn sql(&self) -> &dyn SqlRunner {
        self
    }

    fn tags(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT tag, count(*) FROM device_tags GROUP BY tag ORDER BY tag")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets a device: its commands go with it. Returns whether it was there.
    fn remove_device(&self, dev_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .run_cached("DELETE FROM devices WHERE dev_id = ?1", [dev_id])?
            > 0)
    }

    fn swap_client_nonce(
        &self,
        dev_id: &str,
        used: &[u8],
        next: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self.lock().run_cached(
            "UPDATE devices SET client_nonce = ?3 WHERE dev_id = ?1 AND client_nonce = ?2",
            params![dev_id, used, next],
        )? == 1)
    }

    /// Records a session's DevInfo and encoding, and counts the session.
    fn record_session(&self, dev_id: &str, session: &SessionRecord<'_>) -> Result<(), StoreError> {
        let devinfo = devinfo_to_json(session.devinfo)?;
        self.lock().run_cached(
            "UPDATE devices SET devinfo = ?2, encoding = ?3, sessions = sessions + 1, last_session_at = ?4,
                 notify_address = coalesce(?5, notify_address)
             WHERE dev_id = ?1",
            params![dev_id, devinfo, session.encoding, session.now, session.notify_address],
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
        Ok(self.lock().run_cached(
            "UPDATE devices SET client_nonce = ?3, devinfo = ?4, encoding = ?5, sessions = sessions + 1,
                 last_session_at = ?6, notify_address = coalesce(?7, notify_address)
             WHERE dev_id = ?1 AND client_nonce = ?2",
            params![
                dev_id,
                used,
                next,
                devinfo,
                session.encoding,
                session.now,
                session.notify_address
            ],
        )? == 1)
    }

    fn set_notify_address(&self, dev_id: &str, address: Option<&str>) -> Result<(), StoreError> {
        self.lock().run_cached(
            "UPDATE devices SET notify_address = ?2 WHERE dev_id = ?1",
            params![dev_id, address],
        )?;
        Ok(())
    }

    fn queue(&self, command: &QueuedCommand<'_>, now: i64) -> Result<i64, StoreError> {
        let connection = self.lock();
        connection.run_cached(
            "INSERT INTO commands (dev_id, spec, state, queued_at, expires_at)
             VALUES (?1, ?2, 'queued', ?3, ?4)",
            params![command.dev_id, command.spec, now, command.expires_at],
        )?;
        Ok(connection.last_insert_rowid())
    }

    fn cancel_command(&self, id: i64, now: i64) -> Result<Cancelled, StoreError> {
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let cancelled = unit.run_cached(
            "UPDATE commands SET state = 'cancelled', done_at = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, now],
        )?;
        let outcome = match cancelled {
            0 => match unit
                .row_cached("SELECT state FROM commands WHERE id = ?1", [id], |row| {
                    row.get::<_, String>(0)
                })
                .optional()?
            {
                Some(state) => Cancelled::TooLate(command_state(&state)?),
                None => Cancelled::NotFound,
            },
            _ => Cancelled::Now,
        };
        unit.commit()?;
        Ok(outcome)
    }

    fn expire_commands(&self, now: i64) -> Result<u64, StoreError> {
        Ok(self.lock().run_cached(
            "UPDATE commands SET state = 'expired', done_at = ?1
             WHERE state = 'queued' AND expires_at IS NOT NULL AND expires_at <= ?1",
            [now],
        )? as u64)
    }

    /// Moves the device's queued commands to `sent` for one session, in queue order,
    /// and returns them. A command is claimed by one session only.
    fn claim_pending(
        &self,
        dev_id: &str,
        session_key: &str,
        now: i64,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        /// The claim of one queued command (`?1`), built once.
        static CLAIM_ONE: LazyLock<String> = LazyLock::new(|| {
            format!("UPDATE commands SET {CLAIM_OR_EXPIRE} WHERE id = ?1 AND state = 'queued'")
        });
        let connection = self.lock();
        // Each command by its id: most messages find nothing queued, which an index
        // probe answers, and an UPDATE … RETURNING over the device's queue would open
        // a temporary table for its rows (even none) and, as it changes the index it
        // searches, collect the rows in another before changing one.
        let queued = {
            let mut statement = connection.prepare_cached(
                "SELECT id FROM commands WHERE dev_id = ?1 AND state = 'queued' ORDER BY id",
            )?;
            let rows = statement.query_map([dev_id], |row| row.get::<_, i64>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let unit = Unit::of_writes(&connection, queued.len())?;
        let mut claimed = Vec::with_capacity(queued.len());
        for id in queued {
            if unit.run_cached(&CLAIM_ONE, params![id, session_key, now])? == 0 {
                continue;
            }
            let command = unit.row_cached(&COMMAND_BY_ID, [id], command_row)??;
            if command.state == CommandState::Sent {
                claimed.push(command);
            }
        }
        unit.commit()?;
        Ok(claimed)
    }

    /// Stores a command's outcome. Only a `sent` command completes; completing one
    /// that is already done with the same status changes nothing.
    fn complete(
        &self,
        id: i64,
        status: u16,
        results: &str,
        now: i64,
        entailed: Entailed<'_>,
    ) -> Result<Completed, StoreError> {
        let connection = self.lock();
        // Most commands have nothing planned on them: one probe for the three kinds of
        // plan spares each settlement its own, and their completion is one write.
        let planned = plan_exists(&connection, ANY_PLAN_ON_COMMAND, id)?;
        let mut unit = Unit::of_writes(&connection, if planned { 2 } else { 1 })?;
        unit.run_cached(
            "UPDATE commands SET state = 'done', status = ?2, results = ?3, done_at = ?4
             WHERE id = ?1 AND state = 'sent'",
            params![id, status, results, now],
        )?;
        let completed = if planned {
            Completed {
                auth_switched_to: settle_auth_switch(&mut unit, id, status)?,
                bootstrap: settle_bootstrap(&mut unit, id, status, now, entailed)?,
                validated: settle_validation(&mut unit, id, status)?,
            }
        } else {
            Completed::default()
        };
        unit.commit()?;
        Ok(completed)
    }

    /// Puts the unanswered commands of a session that died back in the queue.
    fn resend_as(&self, id: i64, spec: &str) -> Result<bool, StoreError> {
        Ok(self.lock().run_cached(
            "UPDATE commands SET spec = ?2, state = 'queued', session_key = NULL, sent_at = NULL
             WHERE id = ?1 AND state = 'sent'",
            params![id, spec],
        )? == 1)
    }

    fn bootstrap_pending(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT 1 FROM pending_bootstraps WHERE dev_id = ?1 AND gateway_id = ?2 LIMIT 1",
        )?;
        Ok(statement.exists(params![dev_id, gateway_id])?)
    }

    fn requeue_session(&self, dev_id: &str, session_key: &str) -> Result<usize, StoreError> {
        Ok(self.lock().run_cached(
            "UPDATE commands SET state = 'queued', session_key = NULL, sent_at = NULL
             WHERE dev_id = ?1 AND state = 'sent' AND session_key = ?2",
            [dev_id, session_key],
        )?)
    }

    fn devices_with_queued_commands(&self) -> Result<Vec<String>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT DISTINCT dev_id FROM commands WHERE state = 'queued' ORDER BY dev_id",
        )?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn has_queued_commands(&self, dev_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .row_cached(
                "SELECT 1 FROM commands WHERE dev_id = ?1 AND state = 'queued' LIMIT 1",
                [dev_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn requeue_abandoned(&self, sent_before: i64) -> Result<Vec<String>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "UPDATE commands SET state = 'queued', session_key = NULL, sent_at = NULL
             WHERE state = 'sent' AND sent_at < ?1 RETURNING dev_id",
        )?;
        let rows = statement.query_map([sent_before], |row| row.get::<_, String>(0))?;
        let devices = rows.collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        Ok(devices.into_iter().collect())
    }

    /// Records that the device moves to `auth` once command `command` (which changes
    /// the scheme on the device) succeeds.
    fn plan_auth_switch(
        &self,
        dev_id: &str,
        auth: AuthType,
        command: i64,
    ) -> Result<(), StoreError> {
        self.lock().run_cached(
            "UPDATE devices SET auth_switch_to = ?2, auth_switch_command = ?3 WHERE dev_id = ?1",
            params![dev_id, auth.name(), command],
        )?;
        Ok(())
    }

    fn register_gateway(&self, gateway: &GatewayRecord) -> Result<(), StoreError> {
        self.lock().run_cached(
            "INSERT INTO gateways (gateway_id, dev_id, dm_url, server_assisted) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (gateway_id) DO UPDATE SET dev_id = ?2, dm_url = ?3, server_assisted = ?4",
            params![gateway.gateway_id, gateway.dev_id, gateway.dm_url, gateway.server_assisted],
        )?;
        Ok(())
    }

    fn gateway(&self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.gateway_where("gateway_id", gateway_id)
    }

    fn gateways(&self, after: &str, limit: u32) -> Result<Vec<GatewayRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT gateway_id, dev_id, dm_url, server_assisted FROM gateways
             WHERE gateway_id > ?1 ORDER BY gateway_id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after, limit], gateway_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn association(&self, dev_id: &str) -> Result<Option<Association>, StoreError> {
        Ok(self
            .lock()
            .row_cached(
                &format!("SELECT {ASSOCIATION_COLUMNS} FROM associations WHERE dev_id = ?1"),
                [dev_id],
                association_row,
            )
            .optional()?)
    }

    /// Remembers a gateway bootstrap sent to a device as `command`, with the credentials
    /// the gateway will need once the device confirms it.
    fn queue_bootstrap(&self, plan: &BootstrapPlan<'_>, now: i64) -> Result<i64, StoreError> {
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let mut last = None;
        for spec in plan.commands {
            unit.run_cached(
                "INSERT INTO commands (dev_id, spec, state, queued_at) VALUES (?1, ?2, 'queued', ?3)",
                params![plan.dev_id, spec, now],
            )?;
            last = Some(unit.last_insert_rowid());
            crash_point("queue-bootstrap");
        }
        let last = last.ok_or(StoreError::EmptyPlan)?;
        unit.run_cached(
            "INSERT INTO pending_bootstraps (command, dev_id, gateway_id, client_secret, server_secret)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![last, plan.dev_id, plan.gateway_id, plan.client_secret, plan.server_secret],
        )?;
        write_followups(&unit, plan.then, now)?;
        unit.commit()?;
        Ok(last)
    }

    fn create_fanout(
        &self,
        gateway_id: &str,
        targets: &str,
        spec: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let connection = self.lock();
        connection.run_cached(
            "INSERT INTO fanouts (gateway_id, targets, spec, state, created_at) VALUES (?1, ?2, ?3, 'sent', ?4)",
            params![gateway_id, targets, spec, now],
        )?;
        Ok(connection.last_insert_rowid())
    }

    /// Stores what a gateway reported for one of its fan-outs (the gateway must be the
    /// one the fan-out went to). Returns whether it matched.
    fn complete_fanout(
        &self,
        id: i64,
        gateway_id: &str,
        results: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().run_cached(
            "UPDATE fanouts SET state = 'done', results = ?3, done_at = ?4
             WHERE id = ?1 AND gateway_id = ?2 AND state = 'sent'",
            params![id, gateway_id, results, now],
        )? > 0)
    }

    fn fanout(&self, id: i64) -> Result<Option<FanoutRecord>, StoreError> {
        Ok(self
            .lock()
            .row_cached(
                &format!("SELECT {FANOUT_COLUMNS} FROM fanouts WHERE id = ?1"),
                [id],
                fanout_row,
            )
            .optional()?)
    }

    /// The registered gateway whose DevId (as a client of this server) is `dev_id`.
    fn gateway_by_device(&self, dev_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.gateway_where("dev_id", dev_id)
    }

    /// Records that `dev_id` is now served by `gateway_id` (a Device Attach Alert).
    fn associate(
        &self,
        dev_id: &str,
        gateway_id: &str,
        origin: &str,
        attach_key: Option<&str>,
        now: i64,
        then: &Followups,
    ) -> Result<bool, StoreError> {
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let changed = upsert_association(&unit, dev_id, gateway_id, origin, attach_key, now)?;
        if changed {
            crash_point("associate");
            write_followups(&unit, then, now)?;
        }
        unit.commit()?;
        Ok(changed)
    }

    /// Every association, by DevId.
    fn associations(
        &self,
        gateway_id: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Association>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {ASSOCIATION_COLUMNS} FROM associations
             WHERE dev_id > ?1 AND (?2 IS NULL OR gateway_id = ?2) ORDER BY dev_id LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![after, gateway_id, limit], association_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends the association of `dev_id` with `gateway_id`, if that is its association.
    fn dissociate(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().run_cached(
            "DELETE FROM associations WHERE dev_id = ?1 AND gateway_id = ?2",
            params![dev_id, gateway_id],
        )? > 0)
    }

    fn command(&self, id: i64) -> Result<Option<CommandRecord>, StoreError> {
        let connection = self.lock();
        let row = connection
            .row_cached(&COMMAND_BY_ID, [id], command_row)
            .optional()?;
        row.transpose()
    }

    fn commands_of(
        &self,
        dev_id: &str,
        filter: &CommandFilter,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COMMAND_COLUMNS} FROM commands
             WHERE dev_id = ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id < ?3)
             ORDER BY id DESC LIMIT ?4"
        ))?;
        let state = filter.state.map(CommandState::as_str);
        let rows =
            statement.query_map(params![dev_id, state, filter.before, limit], command_row)?;
        rows.map(|r| r?).collect()
    }

    fn fanouts(
        &self,
        gateway_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FanoutRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {FANOUT_COLUMNS} FROM fanouts
             WHERE (?1 IS NULL OR gateway_id = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![gateway_id, before, limit], fanout_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn decommission_device(&self, dev_id: &str) -> Result<Decommissioned, StoreError> {
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let gateway = unit
            .row_cached(
                "SELECT gateway_id FROM gateways WHERE dev_id = ?1",
                [dev_id],
                |row| row.get::<_, String>(0),
            )
            .optional()?;
        if let Some(gateway_id) = gateway {
            return Ok(Decommissioned::IsGateway(gateway_id));
        }
        let association = unit
            .row_cached(
                &format!(
                    "DELETE FROM associations WHERE dev_id = ?1 RETURNING {ASSOCIATION_COLUMNS}"
                ),
                [dev_id],
                association_row,
            )
            .optional()?;
        unit.run_cached("DELETE FROM pending_bootstraps WHERE dev_id = ?1", [dev_id])?;
        let removed = unit.run_cached("DELETE FROM devices WHERE dev_id = ?1", [dev_id])?;
        unit.commit()?;
        Ok(match (removed, association) {
            (0, None) => Decommissioned::NotFound,
            (_, association) => Decommissioned::Removed(association),
        })
    }

    fn remove_gateway(&self, gateway_id: &str, force: bool) -> Result<GatewayRemoval, StoreError> {
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let behind = unit.row_cached(
            "SELECT count(*) FROM associations WHERE gateway_id = ?1",
            [gateway_id],
            |row| row.get::<_, i64>(0),
        )? as u64;
        if behind > 0 && !force {
            return Ok(GatewayRemoval::HasDevices(behind));
        }
        unit.run_cached(
            "DELETE FROM associations WHERE gateway_id = ?1",
            [gateway_id],
        )?;
        unit.run_cached("DELETE FROM fanouts WHERE gateway_id = ?1", [gateway_id])?;
        unit.run_cached(
            "DELETE FROM pending_bootstraps WHERE gateway_id = ?1",
            [gateway_id],
        )?;
        let removed =
            unit.run_cached("DELETE FROM gateways WHERE gateway_id = ?1", [gateway_id])?;
        if removed == 0 {
            return Ok(GatewayRemoval::NotFound);
        }
        unit.commit()?;
        Ok(GatewayRemoval::Removed(behind))
    }

    fn associated_counts(&self, gateway_ids: &[&str]) -> Result<BTreeMap<String, u64>, StoreError> {
        let connection = self.lock();
        let mut counts = BTreeMap::new();
        for gateway_id in gateway_ids {
            let count = connection.row_cached(
                "SELECT count(*) FROM associations WHERE gateway_id = ?1",
                [gateway_id],
                |row| row.get::<_, i64>(0),
            )?;
            counts.insert((*gateway_id).to_owned(), count as u64);
        }
        Ok(counts)
    }

    fn add_operator(&self, operator: &OperatorRecord) -> Result<(), StoreError> {
        let added = self.lock().run_cached(
            "INSERT INTO operators (name, role, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![
                operator.name,
                operator.role.name(),
                operator.token_sha256,
                operator.created_at
            ],
        )?;
        match added {
            0 => Err(StoreError::AlreadyExists(operator.name.clone())),
            _ => Ok(()),
        }
    }

    fn operator_by_token(&self, token_sha256: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let row = self
            .lock()
            .row_cached(
                &format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE token_sha256 = ?1"),
                [token_sha256],
                operator_row,
            )
            .optional()?;
        row.transpose()
    }

    fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name"
        ))?;
        let rows = statement.query_map([], operator_row)?;
        rows.map(|r| r?).collect()
    }

    fn remove_operator(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .run_cached("DELETE FROM operators WHERE name = ?1", [name])?
            > 0)
    }

    fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.lock().run_cached(
            "INSERT INTO audit (at, operator, role, source, method, path, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                entry.at,
                entry.operator,
                entry.role.map(Role::name),
                entry.source,
                entry.method,
                entry.path,
                entry.status
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
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR operator = ?2)
               AND (NOT ?3 OR status IN (401, 403))
             ORDER BY id DESC LIMIT ?4"
        ))?;
        let rows = statement.query_map(
            params![before, filter.operator, filter.refused, limit],
            audit_row,
        )?;
        rows.map(|r| r?).collect()
    }

    fn set_tree(&self, dev_id: &str, tnds: &str, now: i64) -> Result<(), StoreError> {
        self.lock().run_cached(
            "INSERT INTO device_trees (dev_id, tnds, at) SELECT dev_id, ?2, ?3 FROM devices WHERE dev_id = ?1
             ON CONFLICT (dev_id) DO UPDATE SET tnds = excluded.tnds, at = excluded.at",
            params![dev_id, tnds, now],
        )?;
        Ok(())
    }

    fn tree(&self, dev_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(self
            .lock()
            .row_cached(
                "SELECT tnds, at FROM device_trees WHERE dev_id = ?1",
                [dev_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn forget_history(&self, before: i64) -> Result<u64, StoreError> {
        let connection = self.lock();
        let unit = Unit::begin(&connection)?;
        let mut forgotten = 0;
        for sql in [
            "DELETE FROM commands WHERE done_at < ?1 AND state IN ('done', 'cancelled', 'expired')",
            "DELETE FROM fanouts WHERE state = 'done' AND done_at < ?1",
            "DELETE FROM events WHERE at < ?1",
            "DELETE FROM audit WHERE at < ?1",
        ] {
            forgotten += unit.run_cached(sql, [before])? as u64;
        }
        unit.commit()?;
        Ok(forgotten)
    }

    fn log_event(
        &self,
        dev_id: Option<&str>,
        kind: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.lock().run_cached(
            "INSERT INTO events (at, dev_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now, dev_id, kind, detail],
        )?;
        Ok(())
    }

    /// Events with an id above `after_id`, oldest first.
    fn events(
        &self,
        after_id: i64,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT id, at, dev_id, kind, detail FROM events
             WHERE id > ?1 AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR dev_id = ?4)
             ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(
            params![after_id, limit, filter.kind, filter.dev_id],
            |row| {
                Ok(EventRecord {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    dev_id: row.get(2)?,
                    kind: row.get(3)?,
                    detail: row.get(4)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{device, server_nonce_only, session_in_wbxml};

    /// How many devices another connection to the file sees.
    fn devices_seen_from_outside(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM devices", [], |row| row.get(0))
            .unwrap()
    }

    /// The probe every completed command runs finds each kind of plan by an index: a
    /// scan of the devices would grow with the fleet.
    #[test]
    fn the_probe_for_a_command_s_plans_scans_no_table() {
        let store = SqliteStore::open_in_memory().unwrap();
        let steps = plan_of(&store, ANY_PLAN_ON_COMMAND, [1]);
        assert_eq!(
            steps.iter().filter(|s| s.starts_with("SEARCH")).count(),
            3,
            "{steps:?}"
        );
        let scans = |step: &&String| step.starts_with("SCAN") && *step != "SCAN CONSTANT ROW";
        assert!(!steps.iter().any(|step| scans(&step)), "{steps:?}");
    }

    /// The steps of `sql`'s query plan.
    fn plan_of(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let connection = store.lock();
        let mut plan = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        plan.query_map(params, |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Completing a command changes no index by device: the claim's probe and the
    /// other questions about queued commands read an index of the queued ones only.
    #[test]
    fn queued_commands_are_found_by_an_index_of_their_own() {
        let store = SqliteStore::open_in_memory().unwrap();
        for (sql, expected) in [
            (
                "SELECT id FROM commands WHERE dev_id = ?1 AND state = 'queued' ORDER BY id",
                "SEARCH commands USING COVERING INDEX commands_queued (dev_id=?)",
            ),
            (
                "SELECT 1 FROM commands WHERE dev_id = ?1 AND state = 'queued' LIMIT 1",
                "SEARCH commands USING COVERING INDEX commands_queued (dev_id=?)",
            ),
        ] {
            assert_eq!(plan_of(&store, sql, ["IMEI:1"]), [expected], "{sql}");
        }
        let listing = plan_of(
            &store,
            "SELECT DISTINCT dev_id FROM commands WHERE state = 'queued' ORDER BY dev_id",
            [],
        );
        assert_eq!(
            listing,
            ["SCAN commands USING COVERING INDEX commands_queued"]
        );
        let indexed: Vec<String> = store
            .lock()
            .prepare("SELECT name FROM pragma_index_info('commands_by_device')")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexed,
            ["dev_id", "id"],
            "no state: completing moves nothing"
        );
    }

    #[test]
    fn work_that_joined_a_batch_is_kept_only_once_the_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.db");
        let store = SqliteStore::open_shared(&path, 2).unwrap();
        let ends = store.ends();
        let enroll = |dev_id: &'static str| {
            let mut enrolled = None;
            let joined = store
                .join(&mut || enrolled = Some(store.enroll(&device(dev_id), 10)))
                .unwrap();
            enrolled.unwrap().unwrap();
            joined
        };
        assert_eq!(enroll("IMEI:1"), Joined { id: 1, members: 1 });
        assert_eq!(enroll("IMEI:2"), Joined { id: 1, members: 2 });
        assert_eq!(devices_seen_from_outside(&path), 0, "not committed yet");
        assert_eq!(ends.borrow().committed(1), None);
        assert!(store.commit().unwrap());
        assert!(!store.commit().unwrap(), "nothing left to commit");
        assert_eq!(devices_seen_from_outside(&path), 2);
        assert_eq!(ends.borrow().committed(1), Some(true));
        assert_eq!(
            enroll("IMEI:3"),
            Joined { id: 2, members: 1 },
            "a new batch"
        );
    }

    #[test]
    fn a_call_from_outside_a_batch_commits_the_batch_before_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.db");
        let store = SqliteStore::open_shared(&path, 2).unwrap();
        store
            .join(&mut || store.enroll(&device("IMEI:1"), 10).unwrap())
            .unwrap();
        assert_eq!(devices_seen_from_outside(&path), 0);
        // Neither in the batch nor rolled back with it, were it to fail.
        store.enroll(&device("IMEI:2"), 10).unwrap();
        assert_eq!(devices_seen_from_outside(&path), 2);
        assert_eq!(store.ends().borrow().committed(1), Some(true));
    }

    #[test]
    fn a_batch_whose_transaction_was_lost_fails_and_keeps_nothing() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .join(&mut || store.enroll(&device("IMEI:1"), 10).unwrap())
            .unwrap();
        store.roll_back_behind_its_back();
        let failed = store.commit().err().unwrap();
        assert!(matches!(failed, StoreError::BatchLost(1)), "{failed}");
        assert_eq!(store.ends().borrow().committed(1), Some(false));
        assert!(store.device("IMEI:1").unwrap().is_none());
        // The next member opens a batch of its own, which commits.
        let joined = store
            .join(&mut || store.enroll(&device("IMEI:2"), 10).unwrap())
            .unwrap();
        assert_eq!(joined.id, 2);
        store.commit().unwrap();
        assert!(store.device("IMEI:2").unwrap().is_some());
    }

    #[test]
    fn a_second_opener_of_the_file_is_refused_until_the_first_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.db");
        let first = SqliteStore::open(&path, 2).unwrap();
        first.enroll(&device("IMEI:1"), 10).unwrap();
        let refused = SqliteStore::open(&path, 2).err().unwrap();
        assert!(matches!(refused, StoreError::InUse(_)), "{refused}");
        assert!(refused.to_string().contains("PostgreSQL"), "{refused}");
        drop(first);
        let second = SqliteStore::open(&path, 2).unwrap();
        assert!(second.device("IMEI:1").unwrap().is_some(), "nothing lost");
    }

    #[test]
    fn a_fresh_file_is_migrated_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/server.db");
        {
            let store = SqliteStore::open(&path, 2).unwrap();
            store.enroll(&device("IMEI:1"), 10).unwrap();
            assert!(store.swap_client_nonce("IMEI:1", &[], &[1, 2, 3]).unwrap());
            let devinfo = BTreeMap::from([("./DevInfo/Man".to_owned(), "gwmo".to_owned())]);
            store
                .record_session("IMEI:1", &session_in_wbxml(&devinfo, 20))
                .unwrap();
        }
        let store = SqliteStore::open(&path, 2).unwrap();
        let record = store.device("IMEI:1").unwrap().unwrap();
        assert_eq!(record.auth, AuthType::Hmac);
        assert_eq!(record.client_nonce, vec![1, 2, 3]);
        assert_eq!(record.devinfo["./DevInfo/Man"], "gwmo");
        assert_eq!((record.sessions, record.last_session_at), (1, Some(20)));
        assert_eq!(record.encoding.as_deref(), Some("wbxml"));
    }

    /// The temporary files SQLite holds open (named `etilqs_…`, deleted as soon as
    /// opened) in this process.
    fn sqlite_temporary_files() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("etilqs_"))
            .count()
    }

    /// A savepoint's journal stays in memory however large it grows: one spilled to a
    /// temporary file (past 64 KiB) kept that file for every later savepoint on the
    /// connection, and every message's savepoints wrote through it.
    #[test]
    fn savepoint_journals_are_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), 2).unwrap();
        let connection = store.lock();
        let group = Unit::begin(&connection).unwrap();
        group
            .execute_batch(
                "CREATE TABLE filler (x TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
                 INSERT INTO filler SELECT printf('%.2000c', 'x') FROM n;",
            )
            .unwrap();
        // Every page the group wrote goes into this savepoint's journal first: some
        // 400 KB.
        let unit = Unit::begin(&connection).unwrap();
        unit.execute("UPDATE filler SET x = x || 'y'", []).unwrap();
        assert_eq!(
            sqlite_temporary_files(),
            0,
            "a savepoint journal spilled to a file"
        );
        unit.commit().unwrap();
        group.commit().unwrap();
    }

    /// The pages written to the WAL since the last call, which empties it.
    fn frames_since_checkpoint(store: &SqliteStore) -> i64 {
        let connection = store.lock();
        let frames = connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
            .unwrap();
        connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        frames
    }

    /// A device's session writes what changed, not the DM tree it reported once: a
    /// tree kept in the device's row went whole into the WAL (27 frames for 100 KB)
    /// whenever the row changed size.
    #[test]
    fn a_reported_tree_is_not_written_again_by_the_device_s_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), 2).unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let tnds = format!("<MgmtTree>{}</MgmtTree>", "x".repeat(100_000));
        store.set_tree("IMEI:1", &tnds, 5).unwrap();
        store.set_tree("IMEI:unknown", &tnds, 5).unwrap();
        frames_since_checkpoint(&store);
        for length in 1..=3 {
            let devinfo = BTreeMap::from([("./DevInfo/Mod".to_owned(), "m".repeat(length))]);
            store
                .record_session("IMEI:1", &session_in_wbxml(&devinfo, 10))
                .unwrap();
            let frames = frames_since_checkpoint(&store);
            assert!(frames <= 2, "a session wrote {frames} pages");
        }
        assert_eq!(store.tree("IMEI:1").unwrap(), Some((tnds, 5)));
        assert_eq!(store.tree("IMEI:unknown").unwrap(), None);
    }

    #[test]
    fn the_wal_is_checkpointed_after_ten_thousand_pages_not_a_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), 2).unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        frames_since_checkpoint(&store);
        for at in 0..1_500 {
            store
                .record_reported("IMEI:1", &server_nonce_only(&[at as u8]))
                .unwrap();
        }
        let frames = frames_since_checkpoint(&store);
        assert!(
            frames >= 1_500,
            "only {frames} pages in the WAL: it was checkpointed"
        );
    }

    /// A store file as the migrations before the one that contains `marker` left it,
    /// with `rows` written to it, then opened (and so migrated) by this version.
    fn stored_before(dir: &tempfile::TempDir, marker: &str, rows: &str) -> SqliteStore {
        let path = dir.path().join("s.db");
        let next = MIGRATIONS.iter().position(|m| m.contains(marker)).unwrap();
        {
            let old = Connection::open(&path).unwrap();
            for migration in &MIGRATIONS[..next] {
                old.execute_batch(migration).unwrap();
            }
            old.pragma_update(None, "user_version", next as i64)
                .unwrap();
            old.execute_batch(rows).unwrap();
        }
        SqliteStore::open(&path, 2).unwrap()
    }

    #[test]
    fn a_tree_reported_while_trees_were_kept_in_the_device_s_row_is_moved_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = stored_before(
            &dir,
            "device_trees",
            "INSERT INTO devices (dev_id, auth, client_name, client_secret, server_name, server_secret, created_at, tree, tree_at)
             VALUES ('IMEI:1', 'md5', 'c', 'cs', 's', 'ss', 0, '<MgmtTree/>', 7),
                    ('IMEI:2', 'md5', 'c', 'cs', 's', 'ss', 0, NULL, NULL);",
        );
        assert_eq!(
            store.tree("IMEI:1").unwrap(),
            Some(("<MgmtTree/>".to_owned(), 7))
        );
        assert_eq!(store.tree("IMEI:2").unwrap(), None);
        assert_eq!(store.device("IMEI:2").unwrap().unwrap().client_name, "c");
        // The tree goes with its device.
        assert!(store.remove_device("IMEI:1").unwrap());
        assert_eq!(store.tree("IMEI:1").unwrap(), None);
        let kept: i64 = store
            .lock()
            .query_row("SELECT count(*) FROM device_trees", [], |row| row.get(0))
            .unwrap();
        assert_eq!(kept, 0);
    }

    /// A device row as any schema has it, for the migration tests.
    const DEVICE_ROW: &str = "INSERT INTO devices (dev_id, auth, client_name, client_secret, server_name, server_secret, created_at)
             VALUES ('IMEI:1', 'md5', 'c', 'cs', 's', 'ss', 0);";

    /// A device's commands (command 7 among them) still go when the device does.
    fn commands_go_with_their_device(store: &SqliteStore) {
        assert!(store.remove_device("IMEI:1").unwrap());
        assert!(store.command(7).unwrap().is_none());
    }

    #[test]
    fn commands_stored_before_cancel_and_expiry_existed_survive_the_table_s_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let store = stored_before(
            &dir,
            "commands_v2",
            &format!(
                "{DEVICE_ROW}
                 INSERT INTO commands (id, dev_id, spec, state, status, queued_at, done_at)
                 VALUES (7, 'IMEI:1', '{{}}', 'done', 200, 1, 2), (8, 'IMEI:1', '{{}}', 'queued', NULL, 3, NULL);"
            ),
        );
        let done = store.command(7).unwrap().unwrap();
        assert_eq!(
            (done.state, done.status, done.expires_at),
            (CommandState::Done, Some(200), None)
        );
        assert_eq!(store.cancel_command(8, 4).unwrap(), Cancelled::Now);
        let next = store.queue_command("IMEI:1", "{}", 5).unwrap();
        assert!(next > 8, "ids keep counting: {next}");
        commands_go_with_their_device(&store);
    }

    #[test]
    fn commands_survive_the_rebuild_that_checks_states_without_a_temporary_table() {
        let dir = tempfile::tempdir().unwrap();
        // Command 9 was forgotten: its id is not given again.
        let store = stored_before(
            &dir,
            "commands_v3",
            &format!(
                "{DEVICE_ROW}
                 INSERT INTO commands (id, dev_id, spec, state, status, queued_at, done_at, expires_at)
                 VALUES (7, 'IMEI:1', '{{}}', 'done', 200, 1, 2, NULL),
                        (8, 'IMEI:1', '{{}}', 'queued', NULL, 3, NULL, 50),
                        (9, 'IMEI:1', '{{}}', 'done', 200, 3, 4, NULL);
                 DELETE FROM commands WHERE id = 9;"
            ),
        );
        let done = store.command(7).unwrap().unwrap();
        assert_eq!((done.state, done.status), (CommandState::Done, Some(200)));
        assert_eq!(store.command(8).unwrap().unwrap().expires_at, Some(50));
        assert_eq!(store.queue_command("IMEI:1", "{}", 5).unwrap(), 10);
        let connection = store.lock();
        let refused = connection.execute("UPDATE commands SET state = 'lost' WHERE id = 8", []);
        assert!(refused.is_err(), "the states are still checked");
        let claim =
            format!("UPDATE commands SET {CLAIM_OR_EXPIRE} WHERE id = ?1 AND state = 'queued'");
        let mut plan = connection.prepare(&format!("EXPLAIN {claim}")).unwrap();
        let opcodes: Vec<String> = plan
            .query_map(params![8, "s", 5], |row| row.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "{opcodes:?}"
        );
        drop(plan);
        drop(connection);
        assert!(store.remove_device("IMEI:1").unwrap());
        assert!(
            store.command(7).unwrap().is_none(),
            "they still go with their device"
        );
    }

    #[test]
    fn a_database_from_a_newer_gwmo_is_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path, 2),
            Err(StoreError::TooNew(99, _))
        ));
    }
}
