//! The DM Server's store: enrolled devices with their credentials, nonces and last
//! DevInfo; the queue of management commands with their outcomes; an event log.
//!
//! SQLite embedded (a file created on first start, WAL, versioned migrations). The
//! interface uses no SQLite types so that a PostgreSQL backend can stand behind it.
//! Secrets are kept in clear: MD5 digests and HMACs need them on the server side.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use gwmo_proto::auth::AuthType;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Schema changes in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE devices (
        dev_id          TEXT PRIMARY KEY,
        auth            TEXT NOT NULL,
        client_name     TEXT NOT NULL,
        client_secret   TEXT NOT NULL,
        client_nonce    BLOB NOT NULL DEFAULT x'',
        server_name     TEXT NOT NULL,
        server_secret   TEXT NOT NULL,
        server_nonce    BLOB NOT NULL DEFAULT x'',
        notify_address  TEXT,
        devinfo         TEXT NOT NULL DEFAULT '{}',
        encoding        TEXT,
        sessions        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        last_session_at INTEGER
    );
    CREATE TABLE commands (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        dev_id      TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        spec        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'done')),
        session_key TEXT,
        status      INTEGER,
        results     TEXT,
        queued_at   INTEGER NOT NULL,
        sent_at     INTEGER,
        done_at     INTEGER
    );
    CREATE INDEX commands_by_device ON commands (dev_id, state, id);
    CREATE INDEX commands_by_session ON commands (session_key) WHERE state = 'sent';
    CREATE TABLE events (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        dev_id TEXT,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL
    );
"#,
    r#"
    ALTER TABLE devices ADD COLUMN auth_switch_to TEXT;
    ALTER TABLE devices ADD COLUMN auth_switch_command INTEGER;
"#,
    r#"
    CREATE TABLE gateways (
        gateway_id      TEXT PRIMARY KEY,
        dev_id          TEXT NOT NULL REFERENCES devices(dev_id),
        dm_url          TEXT NOT NULL,
        server_assisted INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE associations (
        dev_id     TEXT PRIMARY KEY REFERENCES devices(dev_id) ON DELETE CASCADE,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        origin     TEXT NOT NULL,
        since      INTEGER NOT NULL
    );
    CREATE TABLE pending_bootstraps (
        command       INTEGER PRIMARY KEY,
        dev_id        TEXT NOT NULL,
        gateway_id    TEXT NOT NULL,
        client_secret TEXT NOT NULL,
        server_secret TEXT NOT NULL
    );
"#,
    r#"
    CREATE TABLE fanouts (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        targets    TEXT NOT NULL,
        spec       TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('sent', 'done')),
        results    TEXT,
        created_at INTEGER NOT NULL,
        done_at    INTEGER
    );
"#,
    // A gateway may report devices this server never enrolled (blank devices bootstrapped
    // locally): associations no longer require an enrolled device.
    r#"
    CREATE TABLE associations_any (
        dev_id     TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL REFERENCES gateways(gateway_id),
        origin     TEXT NOT NULL,
        since      INTEGER NOT NULL
    );
    INSERT INTO associations_any SELECT dev_id, gateway_id, origin, since FROM associations;
    DROP TABLE associations;
    ALTER TABLE associations_any RENAME TO associations;
"#,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot create {0}: {1}")]
    Create(String, std::io::Error),
    #[error("device {0:?} is already enrolled")]
    AlreadyExists(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("the database was written by a newer gwmo (schema {0}, this one knows {1})")]
    TooNew(i64, usize),
}

/// A device to enroll.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub dev_id: String,
    pub auth: AuthType,
    pub client_name: String,
    pub client_secret: String,
    pub server_name: String,
    pub server_secret: String,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub dev_id: String,
    pub auth: AuthType,
    pub client_name: String,
    pub client_secret: String,
    /// The nonce the device must use in its next Cred (the last NextNonce we sent).
    pub client_nonce: Vec<u8>,
    pub server_name: String,
    pub server_secret: String,
    /// The nonce the device gave us for our next Cred.
    pub server_nonce: Vec<u8>,
    pub notify_address: Option<String>,
    pub devinfo: BTreeMap<String, String>,
    pub encoding: Option<String>,
    pub sessions: i64,
    pub created_at: i64,
    pub last_session_at: Option<i64>,
}

/// Where a queued command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    Queued,
    Sent,
    Done,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Sent => "sent",
            CommandState::Done => "done",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub id: i64,
    pub dev_id: String,
    pub spec: String,
    pub state: CommandState,
    pub session_key: Option<String>,
    pub status: Option<u16>,
    pub results: Option<String>,
    pub queued_at: i64,
    pub sent_at: Option<i64>,
    pub done_at: Option<i64>,
}

/// A DM Gateway the operator registered: its ServerID, its DevId as a client of this
/// server, and the URL end devices reach it at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GatewayRecord {
    pub gateway_id: String,
    pub dev_id: String,
    pub dm_url: String,
    pub server_assisted: bool,
}

/// Which gateway an end device is bootstrapped to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Association {
    pub dev_id: String,
    pub gateway_id: String,
    pub origin: String,
    pub since: i64,
}

/// A gateway bootstrap the device confirmed: what the gateway must now be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledBootstrap {
    pub dev_id: String,
    pub gateway_id: String,
    /// The gateway the device was bootstrapped to before, if another.
    pub previous: Option<String>,
    pub client_secret: String,
    pub server_secret: String,
}

/// A command the server asked a gateway to run on several of its end devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FanoutRecord {
    pub id: i64,
    pub gateway_id: String,
    /// JSON array of DevIds.
    pub targets: String,
    pub spec: String,
    pub state: String,
    /// JSON, as the gateway reported it.
    pub results: Option<String>,
    pub created_at: i64,
    pub done_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub at: i64,
    pub dev_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens the database file, creating it (and its directory) on first start.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Create(dir.display().to_string(), e))?;
        }
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        Store::prepare(connection)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::prepare(Connection::open_in_memory()?)
    }

    fn prepare(mut connection: Connection) -> Result<Store, StoreError> {
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew(version, MIGRATIONS.len()));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let transaction = connection.transaction()?;
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "user_version", index as i64 + 1)?;
            transaction.commit()?;
        }
        Ok(Store {
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // SQLite keeps the data consistent whatever a panicking holder did.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn enroll(&self, device: &NewDevice, now: i64) -> Result<(), StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO devices (dev_id, auth, client_name, client_secret, server_name, server_secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (dev_id) DO NOTHING",
            params![
                device.dev_id,
                auth_text(device.auth),
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

    pub fn device(&self, dev_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let connection = self.lock();
        let row = connection
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = ?1"),
                [dev_id],
                device_row,
            )
            .optional()?;
        row.transpose()
    }

    /// Devices in DevId order, after `after`, at most `limit`.
    pub fn devices(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id > ?1 ORDER BY dev_id LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![after.unwrap_or(""), limit], device_row)?;
        rows.map(|r| r?).collect()
    }

    /// Forgets a device: its commands go with it. Returns whether it was there.
    pub fn remove_device(&self, dev_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM devices WHERE dev_id = ?1", [dev_id])?
            > 0)
    }

    pub fn set_client_nonce(&self, dev_id: &str, nonce: &[u8]) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE devices SET client_nonce = ?2 WHERE dev_id = ?1",
            params![dev_id, nonce],
        )?;
        Ok(())
    }

    pub fn set_server_nonce(&self, dev_id: &str, nonce: &[u8]) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE devices SET server_nonce = ?2 WHERE dev_id = ?1",
            params![dev_id, nonce],
        )?;
        Ok(())
    }

    /// Records a session's DevInfo and encoding, and counts the session.
    pub fn record_session(
        &self,
        dev_id: &str,
        devinfo: &BTreeMap<String, String>,
        encoding: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let devinfo =
            serde_json::to_string(devinfo).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.lock().execute(
            "UPDATE devices SET devinfo = ?2, encoding = ?3, sessions = sessions + 1, last_session_at = ?4
             WHERE dev_id = ?1",
            params![dev_id, devinfo, encoding, now],
        )?;
        Ok(())
    }

    pub fn set_notify_address(
        &self,
        dev_id: &str,
        address: Option<&str>,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE devices SET notify_address = ?2 WHERE dev_id = ?1",
            params![dev_id, address],
        )?;
        Ok(())
    }

    pub fn queue_command(&self, dev_id: &str, spec: &str, now: i64) -> Result<i64, StoreError> {
        let connection = self.lock();
        connection.execute(
            "INSERT INTO commands (dev_id, spec, state, queued_at) VALUES (?1, ?2, 'queued', ?3)",
            params![dev_id, spec, now],
        )?;
        Ok(connection.last_insert_rowid())
    }

    /// Moves the device's queued commands to `sent` for one session, in queue order,
    /// and returns them. A command is claimed by one session only.
    pub fn claim_pending(
        &self,
        dev_id: &str,
        session_key: &str,
        now: i64,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let claimed = {
            let mut statement = transaction.prepare_cached(&format!(
                "UPDATE commands SET state = 'sent', session_key = ?2, sent_at = ?3
                 WHERE dev_id = ?1 AND state = 'queued' RETURNING {COMMAND_COLUMNS}"
            ))?;
            let rows = statement.query_map(params![dev_id, session_key, now], command_row)?;
            let mut claimed = rows.map(|r| r?).collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by_key(|c| c.id);
            claimed
        };
        transaction.commit()?;
        Ok(claimed)
    }

    /// Stores a command's outcome. Only a `sent` command completes; completing one
    /// that is already done with the same status changes nothing.
    pub fn complete(
        &self,
        id: i64,
        status: u16,
        results: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE commands SET state = 'done', status = ?2, results = ?3, done_at = ?4
             WHERE id = ?1 AND state = 'sent'",
            params![id, status, results, now],
        )?;
        Ok(())
    }

    /// Puts the unanswered commands of a session that died back in the queue.
    pub fn requeue_session(&self, session_key: &str) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE commands SET state = 'queued', session_key = NULL, sent_at = NULL
             WHERE session_key = ?1 AND state = 'sent'",
            [session_key],
        )?)
    }

    /// Records that the device moves to `auth` once command `command` (which changes
    /// the scheme on the device) succeeds.
    pub fn plan_auth_switch(
        &self,
        dev_id: &str,
        auth: AuthType,
        command: i64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE devices SET auth_switch_to = ?2, auth_switch_command = ?3 WHERE dev_id = ?1",
            params![dev_id, auth_text(auth), command],
        )?;
        Ok(())
    }

    /// Applies a planned scheme change when its command came back with `status`:
    /// success switches the device, anything else drops the plan. Returns the new scheme.
    pub fn settle_auth_switch(
        &self,
        command: i64,
        status: u16,
    ) -> Result<Option<AuthType>, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let planned: Option<(String, String)> = transaction
            .query_row(
                "SELECT dev_id, auth_switch_to FROM devices WHERE auth_switch_command = ?1",
                [command],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((dev_id, auth)) = planned else {
            return Ok(None);
        };
        let switched = gwmo_proto::codes::status::is_success(status);
        transaction.execute(
            "UPDATE devices SET auth = CASE WHEN ?2 THEN auth_switch_to ELSE auth END,
                 auth_switch_to = NULL, auth_switch_command = NULL WHERE dev_id = ?1",
            params![dev_id, switched],
        )?;
        transaction.commit()?;
        Ok(if switched {
            Some(auth_from_text(&auth)?)
        } else {
            None
        })
    }

    pub fn register_gateway(&self, gateway: &GatewayRecord) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO gateways (gateway_id, dev_id, dm_url, server_assisted) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (gateway_id) DO UPDATE SET dev_id = ?2, dm_url = ?3, server_assisted = ?4",
            params![gateway.gateway_id, gateway.dev_id, gateway.dm_url, gateway.server_assisted],
        )?;
        Ok(())
    }

    pub fn gateway(&self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.gateway_where("gateway_id", gateway_id)
    }

    fn gateway_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<GatewayRecord>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT gateway_id, dev_id, dm_url, server_assisted FROM gateways WHERE {column} = ?1"),
                [value],
                gateway_row,
            )
            .optional()?)
    }

    pub fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT gateway_id, dev_id, dm_url, server_assisted FROM gateways ORDER BY gateway_id",
        )?;
        let rows = statement.query_map([], gateway_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn association(&self, dev_id: &str) -> Result<Option<Association>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT dev_id, gateway_id, origin, since FROM associations WHERE dev_id = ?1",
                [dev_id],
                |row| {
                    Ok(Association {
                        dev_id: row.get(0)?,
                        gateway_id: row.get(1)?,
                        origin: row.get(2)?,
                        since: row.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Remembers a gateway bootstrap sent to a device as `command`, with the credentials
    /// the gateway will need once the device confirms it.
    pub fn plan_bootstrap(
        &self,
        command: i64,
        dev_id: &str,
        gateway_id: &str,
        client_secret: &str,
        server_secret: &str,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO pending_bootstraps (command, dev_id, gateway_id, client_secret, server_secret)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![command, dev_id, gateway_id, client_secret, server_secret],
        )?;
        Ok(())
    }

    /// Settles a planned bootstrap when its command came back with `status`: success
    /// makes it the device's association (replacing the previous one).
    pub fn settle_bootstrap(
        &self,
        command: i64,
        status: u16,
        now: i64,
    ) -> Result<Option<SettledBootstrap>, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let pending = transaction
            .query_row(
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
            transaction.commit()?;
            return Ok(None);
        }
        let previous: Option<String> = transaction
            .query_row(
                "SELECT gateway_id FROM associations WHERE dev_id = ?1",
                [&dev_id],
                |row| row.get(0),
            )
            .optional()?;
        upsert_association(&transaction, &dev_id, &gateway_id, "server-assisted", now)?;
        transaction.commit()?;
        Ok(Some(SettledBootstrap {
            previous: previous.filter(|p| *p != gateway_id),
            dev_id,
            gateway_id,
            client_secret,
            server_secret,
        }))
    }

    pub fn create_fanout(
        &self,
        gateway_id: &str,
        targets: &str,
        spec: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let connection = self.lock();
        connection.execute(
            "INSERT INTO fanouts (gateway_id, targets, spec, state, created_at) VALUES (?1, ?2, ?3, 'sent', ?4)",
            params![gateway_id, targets, spec, now],
        )?;
        Ok(connection.last_insert_rowid())
    }

    /// Stores what a gateway reported for one of its fan-outs (the gateway must be the
    /// one the fan-out went to). Returns whether it matched.
    pub fn complete_fanout(
        &self,
        id: i64,
        gateway_id: &str,
        results: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "UPDATE fanouts SET state = 'done', results = ?3, done_at = ?4
             WHERE id = ?1 AND gateway_id = ?2 AND state = 'sent'",
            params![id, gateway_id, results, now],
        )? > 0)
    }

    pub fn fanout(&self, id: i64) -> Result<Option<FanoutRecord>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, gateway_id, targets, spec, state, results, created_at, done_at FROM fanouts WHERE id = ?1",
                [id],
                |row| {
                    Ok(FanoutRecord {
                        id: row.get(0)?,
                        gateway_id: row.get(1)?,
                        targets: row.get(2)?,
                        spec: row.get(3)?,
                        state: row.get(4)?,
                        results: row.get(5)?,
                        created_at: row.get(6)?,
                        done_at: row.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// The registered gateway whose DevId (as a client of this server) is `dev_id`.
    pub fn gateway_by_device(&self, dev_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        self.gateway_where("dev_id", dev_id)
    }

    /// Records that `dev_id` is now served by `gateway_id` (a Device Attach Alert).
    pub fn associate(
        &self,
        dev_id: &str,
        gateway_id: &str,
        origin: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        upsert_association(&self.lock(), dev_id, gateway_id, origin, now)
    }

    /// Every association, by DevId.
    pub fn associations(&self) -> Result<Vec<Association>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT dev_id, gateway_id, origin, since FROM associations ORDER BY dev_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(Association {
                dev_id: row.get(0)?,
                gateway_id: row.get(1)?,
                origin: row.get(2)?,
                since: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends the association of `dev_id` with `gateway_id`, if that is its association.
    pub fn dissociate(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "DELETE FROM associations WHERE dev_id = ?1 AND gateway_id = ?2",
            params![dev_id, gateway_id],
        )? > 0)
    }

    pub fn command(&self, id: i64) -> Result<Option<CommandRecord>, StoreError> {
        let connection = self.lock();
        let row = connection
            .query_row(
                &format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1"),
                [id],
                command_row,
            )
            .optional()?;
        row.transpose()
    }

    pub fn commands_for(&self, dev_id: &str) -> Result<Vec<CommandRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE dev_id = ?1 ORDER BY id"
        ))?;
        let rows = statement.query_map([dev_id], command_row)?;
        rows.map(|r| r?).collect()
    }

    pub fn log_event(
        &self,
        dev_id: Option<&str>,
        kind: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO events (at, dev_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now, dev_id, kind, detail],
        )?;
        Ok(())
    }

    /// Events with an id above `after_id`, oldest first.
    pub fn events(&self, after_id: i64, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT id, at, dev_id, kind, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after_id, limit], |row| {
            Ok(EventRecord {
                id: row.get(0)?,
                at: row.get(1)?,
                dev_id: row.get(2)?,
                kind: row.get(3)?,
                detail: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const DEVICE_COLUMNS: &str = "dev_id, auth, client_name, client_secret, client_nonce, server_name, \
     server_secret, server_nonce, notify_address, devinfo, encoding, sessions, created_at, last_session_at";

fn device_row(row: &Row<'_>) -> rusqlite::Result<Result<DeviceRecord, StoreError>> {
    let auth = match auth_from_text(&row.get::<_, String>(1)?) {
        Ok(auth) => auth,
        Err(error) => return Ok(Err(error)),
    };
    let devinfo = match serde_json::from_str(&row.get::<_, String>(9)?) {
        Ok(devinfo) => devinfo,
        Err(error) => return Ok(Err(StoreError::Corrupt(format!("devinfo: {error}")))),
    };
    Ok(Ok(DeviceRecord {
        dev_id: row.get(0)?,
        auth,
        client_name: row.get(2)?,
        client_secret: row.get(3)?,
        client_nonce: row.get(4)?,
        server_name: row.get(5)?,
        server_secret: row.get(6)?,
        server_nonce: row.get(7)?,
        notify_address: row.get(8)?,
        devinfo,
        encoding: row.get(10)?,
        sessions: row.get(11)?,
        created_at: row.get(12)?,
        last_session_at: row.get(13)?,
    }))
}

fn upsert_association(
    connection: &Connection,
    dev_id: &str,
    gateway_id: &str,
    origin: &str,
    now: i64,
) -> Result<(), StoreError> {
    connection.execute(
        "INSERT INTO associations (dev_id, gateway_id, origin, since) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dev_id) DO UPDATE SET gateway_id = ?2, origin = ?3, since = ?4",
        params![dev_id, gateway_id, origin, now],
    )?;
    Ok(())
}

fn gateway_row(row: &Row<'_>) -> rusqlite::Result<GatewayRecord> {
    Ok(GatewayRecord {
        gateway_id: row.get(0)?,
        dev_id: row.get(1)?,
        dm_url: row.get(2)?,
        server_assisted: row.get(3)?,
    })
}

const COMMAND_COLUMNS: &str =
    "id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at";

fn command_row(row: &Row<'_>) -> rusqlite::Result<Result<CommandRecord, StoreError>> {
    let state: String = row.get(3)?;
    let state = match state.as_str() {
        "queued" => CommandState::Queued,
        "sent" => CommandState::Sent,
        "done" => CommandState::Done,
        other => return Ok(Err(StoreError::Corrupt(format!("command state {other:?}")))),
    };
    Ok(Ok(CommandRecord {
        id: row.get(0)?,
        dev_id: row.get(1)?,
        spec: row.get(2)?,
        state,
        session_key: row.get(4)?,
        status: row.get(5)?,
        results: row.get(6)?,
        queued_at: row.get(7)?,
        sent_at: row.get(8)?,
        done_at: row.get(9)?,
    }))
}

fn auth_text(auth: AuthType) -> &'static str {
    match auth {
        AuthType::Basic => "basic",
        AuthType::Md5 => "md5",
        AuthType::Hmac => "hmac",
    }
}

fn auth_from_text(text: &str) -> Result<AuthType, StoreError> {
    match text {
        "basic" => Ok(AuthType::Basic),
        "md5" => Ok(AuthType::Md5),
        "hmac" => Ok(AuthType::Hmac),
        other => Err(StoreError::Corrupt(format!("auth type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(dev_id: &str) -> NewDevice {
        NewDevice {
            dev_id: dev_id.into(),
            auth: AuthType::Hmac,
            client_name: "c".into(),
            client_secret: "cs".into(),
            server_name: "s".into(),
            server_secret: "ss".into(),
        }
    }

    #[test]
    fn a_fresh_file_is_migrated_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/server.db");
        {
            let store = Store::open(&path).unwrap();
            store.enroll(&device("IMEI:1"), 10).unwrap();
            store.set_client_nonce("IMEI:1", &[1, 2, 3]).unwrap();
            let devinfo = BTreeMap::from([("./DevInfo/Man".to_owned(), "gwmo".to_owned())]);
            store
                .record_session("IMEI:1", &devinfo, "wbxml", 20)
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let record = store.device("IMEI:1").unwrap().unwrap();
        assert_eq!(record.auth, AuthType::Hmac);
        assert_eq!(record.client_nonce, vec![1, 2, 3]);
        assert_eq!(record.devinfo["./DevInfo/Man"], "gwmo");
        assert_eq!((record.sessions, record.last_session_at), (1, Some(20)));
        assert_eq!(record.encoding.as_deref(), Some("wbxml"));
    }

    #[test]
    fn a_removed_device_takes_its_commands_with_it() {
        let store = Store::open_in_memory().unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let id = store.queue_command("IMEI:1", "{}", 1).unwrap();
        assert!(store.remove_device("IMEI:1").unwrap());
        assert!(store.command(id).unwrap().is_none());
        assert!(!store.remove_device("IMEI:1").unwrap());
        store.enroll(&device("IMEI:1"), 2).unwrap();
    }

    #[test]
    fn enrolling_twice_is_refused() {
        let store = Store::open_in_memory().unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        assert!(matches!(
            store.enroll(&device("IMEI:1"), 0),
            Err(StoreError::AlreadyExists(_))
        ));
    }

    #[test]
    fn a_command_is_claimed_once_and_completed_once() {
        let store = Store::open_in_memory().unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let first = store
            .queue_command("IMEI:1", "{\"op\":\"Get\"}", 1)
            .unwrap();
        let second = store.queue_command("IMEI:1", "{}", 1).unwrap();
        let claimed = store.claim_pending("IMEI:1", "s1", 2).unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![first, second]
        );
        assert!(store.claim_pending("IMEI:1", "s2", 3).unwrap().is_empty());

        store.complete(first, 200, "{}", 4).unwrap();
        store.complete(first, 500, "{\"late\":1}", 5).unwrap();
        let done = store.command(first).unwrap().unwrap();
        assert_eq!(
            (done.state, done.status, done.done_at),
            (CommandState::Done, Some(200), Some(4))
        );

        // A queued command cannot complete without having been sent.
        let third = store.queue_command("IMEI:1", "{}", 6).unwrap();
        store.complete(third, 200, "{}", 7).unwrap();
        assert_eq!(
            store.command(third).unwrap().unwrap().state,
            CommandState::Queued
        );
    }

    #[test]
    fn a_dead_session_gives_its_commands_back() {
        let store = Store::open_in_memory().unwrap();
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let id = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store.claim_pending("IMEI:1", "dead", 2).unwrap();
        assert_eq!(store.requeue_session("dead").unwrap(), 1);
        let again = store.claim_pending("IMEI:1", "next", 3).unwrap();
        assert_eq!(again[0].id, id);
        assert_eq!(again[0].session_key.as_deref(), Some("next"));
    }

    #[test]
    fn devices_and_events_page() {
        let store = Store::open_in_memory().unwrap();
        for i in 0..5 {
            store.enroll(&device(&format!("IMEI:{i}")), 0).unwrap();
            store
                .log_event(Some(&format!("IMEI:{i}")), "alert", "{}", i)
                .unwrap();
        }
        let first = store.devices(None, 2).unwrap();
        let next = store.devices(Some(&first[1].dev_id), 10).unwrap();
        assert_eq!((first.len(), next.len()), (2, 3));
        assert_eq!(next[0].dev_id, "IMEI:2");
        let events = store.events(0, 3).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(store.events(events[2].id, 10).unwrap().len(), 2);
    }

    #[test]
    fn an_auth_switch_applies_only_when_its_command_succeeds() {
        let store = Store::open_in_memory().unwrap();
        let mut md5 = device("IMEI:1");
        md5.auth = AuthType::Md5;
        store.enroll(&md5, 0).unwrap();
        let first = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store
            .plan_auth_switch("IMEI:1", AuthType::Hmac, first)
            .unwrap();
        assert_eq!(store.settle_auth_switch(first, 425).unwrap(), None);
        assert_eq!(store.device("IMEI:1").unwrap().unwrap().auth, AuthType::Md5);
        let second = store.queue_command("IMEI:1", "{}", 1).unwrap();
        store
            .plan_auth_switch("IMEI:1", AuthType::Hmac, second)
            .unwrap();
        assert_eq!(
            store.settle_auth_switch(second, 200).unwrap(),
            Some(AuthType::Hmac)
        );
        assert_eq!(
            store.device("IMEI:1").unwrap().unwrap().auth,
            AuthType::Hmac
        );
        assert_eq!(
            store.settle_auth_switch(second, 200).unwrap(),
            None,
            "settled once"
        );
    }

    #[test]
    fn a_bootstrap_becomes_an_association_when_the_device_confirms_it() {
        let store = Store::open_in_memory().unwrap();
        for id in ["IMEI:gw1", "IMEI:gw2", "IMEI:ed"] {
            store.enroll(&device(id), 0).unwrap();
        }
        for (gateway_id, dev_id) in [("gw-1", "IMEI:gw1"), ("gw-2", "IMEI:gw2")] {
            let gateway = GatewayRecord {
                gateway_id: gateway_id.into(),
                dev_id: dev_id.into(),
                dm_url: "http://gw/dm".into(),
                server_assisted: true,
            };
            store.register_gateway(&gateway).unwrap();
        }
        store
            .plan_bootstrap(10, "IMEI:ed", "gw-1", "c", "s")
            .unwrap();
        assert_eq!(store.settle_bootstrap(10, 507, 1).unwrap(), None);
        assert_eq!(store.association("IMEI:ed").unwrap(), None);

        store
            .plan_bootstrap(11, "IMEI:ed", "gw-1", "c", "s")
            .unwrap();
        let settled = store.settle_bootstrap(11, 200, 2).unwrap().unwrap();
        assert_eq!(
            (settled.gateway_id.as_str(), settled.previous),
            ("gw-1", None)
        );
        store
            .plan_bootstrap(12, "IMEI:ed", "gw-2", "c2", "s2")
            .unwrap();
        let moved = store.settle_bootstrap(12, 200, 3).unwrap().unwrap();
        assert_eq!(moved.previous.as_deref(), Some("gw-1"));
        assert_eq!(
            store.association("IMEI:ed").unwrap().unwrap().gateway_id,
            "gw-2"
        );
        assert_eq!(
            store.settle_bootstrap(12, 200, 4).unwrap(),
            None,
            "settled once"
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
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew(99, _))));
    }
}
