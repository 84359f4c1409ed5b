//! Status codes (SyncML RepPro) and alert codes (DM 1.2 Protocol) as named constants.

/// A SyncML status code (`Status/Data`): what became of a command, or of a message's
/// header. Compares with plain numbers (`code == 200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// True for the 2xx family: the command succeeded (or was accepted).
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl From<u16> for StatusCode {
    fn from(code: u16) -> StatusCode {
        StatusCode(code)
    }
}

impl From<StatusCode> for u16 {
    fn from(code: StatusCode) -> u16 {
        code.0
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl PartialEq<StatusCode> for u16 {
    fn eq(&self, other: &StatusCode) -> bool {
        *self == other.0
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// SyncML status codes, as carried in `Status/Data`.
pub mod status {
    pub use super::StatusCode;

    pub const IN_PROGRESS: StatusCode = StatusCode(101);
    pub const OK: StatusCode = StatusCode(200);
    pub const ITEM_ADDED: StatusCode = StatusCode(201);
    pub const ACCEPTED_FOR_PROCESSING: StatusCode = StatusCode(202);
    pub const NO_CONTENT: StatusCode = StatusCode(204);
    pub const PARTIAL_CONTENT: StatusCode = StatusCode(206);
    pub const AUTHENTICATION_ACCEPTED: StatusCode = StatusCode(212);
    pub const CHUNKED_ITEM_ACCEPTED: StatusCode = StatusCode(213);
    pub const OPERATION_CANCELLED: StatusCode = StatusCode(214);
    pub const NOT_EXECUTED: StatusCode = StatusCode(215);
    pub const ATOMIC_ROLLBACK_OK: StatusCode = StatusCode(216);
    pub const NOT_MODIFIED: StatusCode = StatusCode(304);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    pub const INVALID_CREDENTIALS: StatusCode = StatusCode(401);
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    pub const COMMAND_NOT_ALLOWED: StatusCode = StatusCode(405);
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: StatusCode = StatusCode(406);
    pub const MISSING_CREDENTIALS: StatusCode = StatusCode(407);
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    pub const CONFLICT: StatusCode = StatusCode(409);
    pub const GONE: StatusCode = StatusCode(410);
    pub const SIZE_REQUIRED: StatusCode = StatusCode(411);
    pub const INCOMPLETE_COMMAND: StatusCode = StatusCode(412);
    pub const REQUEST_ENTITY_TOO_LARGE: StatusCode = StatusCode(413);
    pub const URI_TOO_LONG: StatusCode = StatusCode(414);
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    pub const REQUESTED_SIZE_TOO_BIG: StatusCode = StatusCode(416);
    pub const RETRY_LATER: StatusCode = StatusCode(417);
    pub const ALREADY_EXISTS: StatusCode = StatusCode(418);
    pub const DEVICE_FULL: StatusCode = StatusCode(420);
    pub const SIZE_MISMATCH: StatusCode = StatusCode(424);
    pub const PERMISSION_DENIED: StatusCode = StatusCode(425);
    pub const COMMAND_FAILED: StatusCode = StatusCode(500);
    pub const COMMAND_NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    pub const DTD_VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);
    pub const PROCESSING_ERROR: StatusCode = StatusCode(506);
    pub const ATOMIC_FAILED: StatusCode = StatusCode(507);
    pub const DATA_STORE_FAILURE: StatusCode = StatusCode(510);
    pub const SERVER_FAILURE: StatusCode = StatusCode(511);
    pub const PROTOCOL_VERSION_NOT_SUPPORTED: StatusCode = StatusCode(513);
    pub const OPERATION_CANCELLED_FAILURE: StatusCode = StatusCode(514);
    pub const ATOMIC_ROLLBACK_FAILED: StatusCode = StatusCode(516);
    pub const ATOMIC_RESPONSE_TOO_LARGE: StatusCode = StatusCode(517);

    /// True for the 2xx family: the command succeeded (or was accepted).
    pub fn is_success(code: impl Into<StatusCode>) -> bool {
        code.into().is_success()
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

/// Generic Alert (1226) types used by GwMO. docs/DECISIONS.md §3: the published
/// OMNA rows for GwMO could not be read, so these follow the `urn:oma:at:` pattern.
pub mod alert_type {
    pub const LOCATION_UPDATE: &str = "urn:oma:at:gwmo:1.0:LocationUpdate";
    pub const DEVICE_ATTACH: &str = "urn:oma:at:gwmo:1.0:DeviceAttach";
    pub const DEVICE_DETACH: &str = "urn:oma:at:gwmo:1.0:DeviceDetach";
    /// The outcome of a fan-out, from the gateway (data: JSON, one entry per device).
    pub const FANOUT_RESULTS: &str = "urn:oma:at:gwmo:1.0:FanoutResults";
    /// FUMO 1.0 §10.2: the result of an Exec on `<x>/Download`, `<x>/Update` and
    /// `<x>/DownloadAndUpdate` (data: the FUMO result code; docs/FUMO.md).
    pub const FUMO_DOWNLOAD: &str = "org.openmobilealliance.dm.firmwareupdate.download";
    pub const FUMO_UPDATE: &str = "org.openmobilealliance.dm.firmwareupdate.update";
    pub const FUMO_DOWNLOAD_AND_UPDATE: &str =
        "org.openmobilealliance.dm.firmwareupdate.downloadandupdate";
}
