//! Reading the store's records out of SQLite rows, through the statement cache.

use rusqlite::{Connection, Row};

use crate::store::{
    CommandRecord, DeviceRecord, GatewayRecord, StoreError, auth_from_text, command_state,
    devinfo_from_json,
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

pub(super) const GATEWAY_COLUMNS: &str = "gateway_id, dev_id, dm_url, server_assisted";

pub(super) fn gateway_row(row: &Row<'_>) -> rusqlite::Result<GatewayRecord> {
    Ok(GatewayRecord {
        gateway_id: row.get(0)?,
        dev_id: row.get(1)?,
        dm_url: row.get(2)?,
        server_assisted: row.get(3)?,
    })
}

pub(super) const COMMAND_COLUMNS: &str =
    "id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at";

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
    }))
}
