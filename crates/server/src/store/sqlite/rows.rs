//! Reading the store's records out of SQLite rows, through the statement cache.

use std::sync::LazyLock;

use gwmo_session::{Credentials, DeviceAuth};
use rusqlite::{Connection, Row};

use crate::store::{
    Association, AuditEntry, AuditRecord, CommandRecord, DeviceRecord, FanoutRecord, GatewayRecord,
    ListedDevice, OperatorRecord, StoreError, auth_from_text, command_state, devinfo_from_json,
    role_from_text, tags_from_list,
};

/// Statements through the connection's statement cache: SQLite parses each SQL text
/// once per connection instead of once per call (parsing was the largest cost of a
/// store call under load).
pub(super) trait CachedStatements {
    fn run_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    fn row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn run_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, map)
    }
}

pub(super) const DEVICE_COLUMNS: &str = "dev_id, auth, client_name, client_secret, client_nonce, server_name, \
     server_secret, server_nonce, notify_address, devinfo, encoding, sessions, created_at, last_session_at";

pub(super) fn device_row(row: &Row<'_>) -> rusqlite::Result<Result<DeviceRecord, StoreError>> {
    let auth = match auth_from_text(&row.get::<_, String>(1)?) {
        Ok(auth) => auth,
        Err(error) => return Ok(Err(error)),
    };
    let devinfo = match devinfo_from_json(&row.get::<_, String>(9)?) {
        Ok(devinfo) => devinfo,
        Err(error) => return Ok(Err(error)),
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

/// What [`session_auth_row`] reads of a device (`?1`).
pub(super) const SESSION_AUTH_OF_DEVICE: &str = "SELECT auth, client_name, client_secret, \
     client_nonce, server_name, server_secret, server_nonce FROM devices WHERE dev_id = ?1";

/// A command by its id (`?1`), for [`command_row`]. Built once: the statement cache
/// finds a statement by its text, and the claim of every command reads one.
pub(super) static COMMAND_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1"));

/// A device's [`DeviceRecord::session_auth`], from [`SESSION_AUTH_OF_DEVICE`].
pub(super) fn session_auth_row(row: &Row<'_>) -> rusqlite::Result<Result<DeviceAuth, StoreError>> {
    let auth = match auth_from_text(&row.get::<_, String>(0)?) {
        Ok(auth) => auth,
        Err(error) => return Ok(Err(error)),
    };
    let credentials = |name, secret| Credentials { auth, name, secret };
    Ok(Ok(DeviceAuth {
        client: credentials(row.get(1)?, row.get(2)?),
        client_nonce: row.get(3)?,
        server: credentials(row.get(4)?, row.get(5)?),
        server_nonce: row.get(6)?,
    }))
}

/// A device as listings show it: [`DEVICE_COLUMNS`], its DevDetail, its tags, its
/// association.
pub(super) fn listed_columns() -> String {
    format!(
        "{DEVICE_COLUMNS}, devdetail, \
         (SELECT group_concat(tag, ',') FROM device_tags t WHERE t.dev_id = devices.dev_id), \
         (SELECT gateway_id FROM associations a WHERE a.dev_id = devices.dev_id), \
         (SELECT origin FROM associations a WHERE a.dev_id = devices.dev_id), \
         (SELECT since FROM associations a WHERE a.dev_id = devices.dev_id), \
         (SELECT trust FROM associations a WHERE a.dev_id = devices.dev_id)"
    )
}

pub(super) fn listed_device_row(
    row: &Row<'_>,
) -> rusqlite::Result<Result<ListedDevice, StoreError>> {
    let record = match device_row(row)? {
        Ok(record) => record,
        Err(error) => return Ok(Err(error)),
    };
    let devdetail = match devinfo_from_json(&row.get::<_, String>(14)?) {
        Ok(devdetail) => devdetail,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(ListedDevice {
        record,
        devdetail,
        tags: tags_from_list(row.get::<_, Option<String>>(15)?),
        association: match row.get::<_, Option<String>>(16)? {
            Some(gateway_id) => Some(Association {
                dev_id: row.get(0)?,
                gateway_id,
                origin: row.get(17)?,
                since: row.get(18)?,
                trust: row.get(19)?,
            }),
            None => None,
        },
    }))
}

pub(super) const GATEWAY_COLUMNS: &str = "gateway_id, dev_id, dm_url, server_assisted";

pub(super) fn gateway_row(row: &Row<'_>) -> rusqlite::Result<GatewayRecord> {
    Ok(GatewayRecord {
        gateway_id: row.get(0)?,
        dev_id: row.get(1)?,
        dm_url: row.get(2)?,
        server_assisted: row.get(3)?,
    })
}

pub(super) const COMMAND_COLUMNS: &str = "id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at, expires_at";

pub(super) fn command_row(row: &Row<'_>) -> rusqlite::Result<Result<CommandRecord, StoreError>> {
    let state = match command_state(&row.get::<_, String>(3)?) {
        Ok(state) => state,
        Err(error) => return Ok(Err(error)),
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
        expires_at: row.get(10)?,
    }))
}

pub(super) const FANOUT_COLUMNS: &str =
    "id, gateway_id, targets, spec, state, results, created_at, done_at";

pub(super) fn fanout_row(row: &Row<'_>) -> rusqlite::Result<FanoutRecord> {
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
}

pub(super) fn association_row(row: &Row<'_>) -> rusqlite::Result<Association> {
    Ok(Association {
        dev_id: row.get(0)?,
        gateway_id: row.get(1)?,
        origin: row.get(2)?,
        since: row.get(3)?,
        trust: row.get(4)?,
    })
}

pub(super) const OPERATOR_COLUMNS: &str = "name, role, token_sha256, created_at";

pub(super) fn operator_row(row: &Row<'_>) -> rusqlite::Result<Result<OperatorRecord, StoreError>> {
    let role = match role_from_text(&row.get::<_, String>(1)?) {
        Ok(role) => role,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(OperatorRecord {
        name: row.get(0)?,
        role,
        token_sha256: row.get(2)?,
        created_at: row.get(3)?,
    }))
}

pub(super) const AUDIT_COLUMNS: &str = "id, at, operator, role, source, method, path, status";

pub(super) fn audit_row(row: &Row<'_>) -> rusqlite::Result<Result<AuditRecord, StoreError>> {
    let role = match row
        .get::<_, Option<String>>(3)?
        .as_deref()
        .map(role_from_text)
    {
        Some(Err(error)) => return Ok(Err(error)),
        Some(Ok(role)) => Some(role),
        None => None,
    };
    Ok(Ok(AuditRecord {
        id: row.get(0)?,
        entry: AuditEntry {
            at: row.get(1)?,
            operator: row.get(2)?,
            role,
            source: row.get(4)?,
            method: row.get(5)?,
            path: row.get(6)?,
            status: row.get(7)?,
        },
    }))
}
