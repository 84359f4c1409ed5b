//! Status codes (SyncML RepPro) and alert codes (DM 1.2 Protocol) as named constants.

/// SyncML status codes, as carried in `Status/Data`.
pub mod status {
    pub const IN_PROGRESS: u16 = 101;
    pub const OK: u16 = 200;
    pub const ITEM_ADDED: u16 = 201;
    pub const ACCEPTED_FOR_PROCESSING: u16 = 202;
    pub const NO_CONTENT: u16 = 204;
    pub const PARTIAL_CONTENT: u16 = 206;
    pub const AUTHENTICATION_ACCEPTED: u16 = 212;
    pub const CHUNKED_ITEM_ACCEPTED: u16 = 213;
    pub const OPERATION_CANCELLED: u16 = 214;
    pub const NOT_EXECUTED: u16 = 215;
    pub const ATOMIC_ROLLBACK_OK: u16 = 216;
    pub const NOT_MODIFIED: u16 = 304;
    pub const BAD_REQUEST: u16 = 400;
    pub const INVALID_CREDENTIALS: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const COMMAND_NOT_ALLOWED: u16 = 405;
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: u16 = 406;
    pub const MISSING_CREDENTIALS: u16 = 407;
    pub const REQUEST_TIMEOUT: u16 = 408;
    pub const CONFLICT: u16 = 409;
    pub const GONE: u16 = 410;
    pub const SIZE_REQUIRED: u16 = 411;
    pub const INCOMPLETE_COMMAND: u16 = 412;
    pub const REQUEST_ENTITY_TOO_LARGE: u16 = 413;
    pub const URI_TOO_LONG: u16 = 414;
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    pub const REQUESTED_SIZE_TOO_BIG: u16 = 416;
    pub const RETRY_LATER: u16 = 417;
    pub const ALREADY_EXISTS: u16 = 418;
    pub const DEVICE_FULL: u16 = 420;
    pub const SIZE_MISMATCH: u16 = 424;
    pub const PERMISSION_DENIED: u16 = 425;
    pub const COMMAND_FAILED: u16 = 500;
    pub const COMMAND_NOT_IMPLEMENTED: u16 = 501;
    pub const SERVICE_UNAVAILABLE: u16 = 503;
    pub const DTD_VERSION_NOT_SUPPORTED: u16 = 505;
    pub const PROCESSING_ERROR: u16 = 506;
    pub const ATOMIC_FAILED: u16 = 507;
    pub const DATA_STORE_FAILURE: u16 = 510;
    pub const SERVER_FAILURE: u16 = 511;
    pub const PROTOCOL_VERSION_NOT_SUPPORTED: u16 = 513;
    pub const OPERATION_CANCELLED_FAILURE: u16 = 514;
    pub const ATOMIC_ROLLBACK_FAILED: u16 = 516;
    pub const ATOMIC_RESPONSE_TOO_LARGE: u16 = 517;

    /// True for the 2xx family: the command succeeded (or was accepted).
    pub fn is_success(code: u16) -> bool {
        (200..300).contains(&code)
    }
}

/// DM 1.2 alert codes, as carried in `Alert/Data`.
pub mod alert {
    pub const DISPLAY: u16 = 1100;
    pub const CONFIRM_OR_REJECT: u16 = 1101;
    pub const TEXT_INPUT: u16 = 1102;
    pub const SINGLE_CHOICE: u16 = 1103;
    pub const MULTIPLE_CHOICE: u16 = 1104;
    pub const SERVER_INITIATED_MGMT: u16 = 1200;
    pub const CLIENT_INITIATED_MGMT: u16 = 1201;
    pub const NEXT_MESSAGE: u16 = 1222;
    pub const SESSION_ABORT: u16 = 1223;
    pub const CLIENT_EVENT: u16 = 1224;
    pub const NO_END_OF_DATA: u16 = 1225;
    pub const GENERIC_ALERT: u16 = 1226;
}

/// Content types of DM messages and related documents.
pub mod content_type {
    pub const DM_XML: &str = "application/vnd.syncml.dm+xml";
    pub const DM_WBXML: &str = "application/vnd.syncml.dm+wbxml";
    /// The SyncML DS media types, which many DM clients post their DM messages as
    /// (the OMA SyncML RTK's clients among them): taken as their DM equivalents.
    pub const DS_XML: &str = "application/vnd.syncml+xml";
    pub const DS_WBXML: &str = "application/vnd.syncml+wbxml";
    pub const TNDS_XML: &str = "application/vnd.syncml.dmtnds+xml";
    pub const TNDS_WBXML: &str = "application/vnd.syncml.dmtnds+wbxml";
    pub const NOTIFICATION: &str = "application/vnd.syncml.notification";
}

/// Generic Alert (1226) types used by GwMO. DESIGN.md section 3: the published
/// OMNA rows for GwMO could not be read, so these follow the `urn:oma:at:` pattern.
pub mod alert_type {
    pub const LOCATION_UPDATE: &str = "urn:oma:at:gwmo:1.0:LocationUpdate";
    pub const DEVICE_ATTACH: &str = "urn:oma:at:gwmo:1.0:DeviceAttach";
    pub const DEVICE_DETACH: &str = "urn:oma:at:gwmo:1.0:DeviceDetach";
    /// The outcome of a fan-out, from the gateway (data: JSON, one entry per device).
    pub const FANOUT_RESULTS: &str = "urn:oma:at:gwmo:1.0:FanoutResults";
}
