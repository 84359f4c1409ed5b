//! Reading the store's records out of PostgreSQL rows.

use postgres::Row;

use crate::store::{
    Association, AuditEntry, AuditRecord, CommandRecord, DeviceRecord, FanoutRecord, GatewayRecord,
    ListedDevice, OperatorRecord, StoreError, auth_from_text, command_state, devinfo_from_json,
    role_from_text, tags_from_list,
};

pub(super) const DEVICE_COLUMNS: &str = "dev_id, auth, client_name, client_secret, client_nonce, server_name, \
     server_secret, server_nonce, notify_address, devinfo, encoding, sessions, created_at, last_session_at";

pub(super) fn device_row(row: &Row) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        dev_id: row.try_get(0)?,
        auth: auth_from_text(row.try_get(1)?)?,
        client_name: row.try_get(2)?,
        client_secret: row.try_get(3)?,
        client_nonce: row.try_get(4)?,
        server_name: row.try_get(5)?,
        server_secret: row.try_get(6)?,
        server_nonce: row.try_get(7)?,
        notify_address: row.try_get(8)?,
        devinfo: devinfo_from_json(row.try_get(9)?)?,
        encoding: row.try_get(10)?,
        sessions: row.try_get(11)?,
        created_at: row.try_get(12)?,
        last_session_at: row.try_get(13)?,
    })
}

/// A device as listings show it: [`DEVICE_COLUMNS`], its DevDetail, its tags, its
/// association.
pub(super) fn listed_columns() -> String {
    format!(
        "{DEVICE_COLUMNS}, devdetail, \
         (SELECT string_agg(tag, ',') FROM device_tags t WHERE t.dev_id = devices.dev_id), \
         (SELECT gateway_id FROM associations a WHERE a.dev_id = devices.dev_id), \
         (SELECT origin FROM associations a WHERE a.dev_id = devices.dev_id), \
         (SELECT since FROM associations a WHERE a.dev_id = devices.dev_id), \
         (SELECT trust FROM associations a WHERE a.dev_id = devices.dev_id)"
    )
}

pub(super) fn listed_device_row(row: &Row) -> Result<ListedDevice, StoreError> {
    Ok(ListedDevice {
        record: device_row(row)?,
        devdetail: devinfo_from_json(row.try_get(14)?)?,
        tags: tags_from_list(row.try_get(15)?),
        association: match row.try_get::<_, Option<String>>(16)? {
            Some(gateway_id) => Some(Association {
                dev_id: row.try_get(0)?,
                gateway_id,
                origin: row.try_get(17)?,
                since: row.try_get(18)?,
                trust: row.try_get(19)?,
            }),
            None => None,
        },
    })
}

pub(super) const COMMAND_COLUMNS: &str = "id, dev_id, spec, state, session_key, status, results, queued_at, sent_at, done_at, expires_at";

pub(super) fn command_row(row: &Row) -> Result<CommandRecord, StoreError> {
    let status: Option<i32> = row.try_get(5)?;
    Ok(CommandRecord {
        id: row.try_get(0)?,
        dev_id: row.try_get(1)?,
        spec: row.try_get(2)?,
        state: command_state(row.try_get(3)?)?,
        session_key: row.try_get(4)?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("status {s}"))))
            .transpose()?,
        results: row.try_get(6)?,
        queued_at: row.try_get(7)?,
        sent_at: row.try_get(8)?,
        done_at: row.try_get(9)?,
        expires_at: row.try_get(10)?,
    })
}

pub(super) const GATEWAY_COLUMNS: &str = "gateway_id, dev_id, dm_url, server_assisted";

pub(super) fn gateway_row(row: &Row) -> Result<GatewayRecord, StoreError> {
    Ok(GatewayRecord {
        gateway_id: row.try_get(0)?,
        dev_id: row.try_get(1)?,
        dm_url: row.try_get(2)?,
        server_assisted: row.try_get(3)?,
    })
}

pub(super) fn association_row(row: &Row) -> Result<Association, StoreError> {
    Ok(Association {
        dev_id: row.try_get(0)?,
        gateway_id: row.try_get(1)?,
        origin: row.try_get(2)?,
        since: row.try_get(3)?,
        trust: row.try_get(4)?,
    })
}

pub(super) const FANOUT_COLUMNS: &str =
    "id, gateway_id, targets, spec, state, results, created_at, done_at";

pub(super) fn fanout_row(row: &Row) -> Result<FanoutRecord, StoreError> {
    Ok(FanoutRecord {
        id: row.try_get(0)?,
        gateway_id: row.try_get(1)?,
        targets: row.try_get(2)?,
        spec: row.try_get(3)?,
        state: row.try_get(4)?,
        results: row.try_get(5)?,
        created_at: row.try_get(6)?,
        done_at: row.try_get(7)?,
    })
}

pub(super) const OPERATOR_COLUMNS: &str = "name, role, token_sha256, created_at";

pub(super) fn operator_row(row: &Row) -> Result<OperatorRecord, StoreError> {
    Ok(OperatorRecord {
        name: row.try_get(0)?,
        role: role_from_text(row.try_get(1)?)?,
        token_sha256: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

pub(super) const AUDIT_COLUMNS: &str = "id, at, operator, role, source, method, path, status";

pub(super) fn audit_row(row: &Row) -> Result<AuditRecord, StoreError> {
    let status: i32 = row.try_get(7)?;
    Ok(AuditRecord {
        id: row.try_get(0)?,
        entry: AuditEntry {
            at: row.try_get(1)?,
            operator: row.try_get(2)?,
            role: row
                .try_get::<_, Option<&str>>(3)?
                .map(role_from_text)
                .transpose()?,
            source: row.try_get(4)?,
            method: row.try_get(5)?,
            path: row.try_get(6)?,
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("audit status {status}")))?,
        },
    })
}
