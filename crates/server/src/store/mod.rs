//! The DM Server's store: enrolled devices with their credentials, nonces and last
//! DevInfo; the queue of management commands with their outcomes; gateways,
//! associations and fan-outs; an event log.
//!
//! One interface, [`Store`], with two backends: SQLite embedded (the default, a file
//! created on first start) and PostgreSQL (for several server instances sharing one
//! database). Both run versioned migrations at open. Secrets are kept in clear: MD5
//! digests and HMACs need them on the server side.

pub mod batch;
pub mod campaigns;
pub mod counts;
mod filter;
pub mod firmware;
mod postgres;
mod settle;
mod sql;
mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gwmo_proto::auth::AuthType;
use gwmo_session::{Credentials, DeviceAuth};

use crate::operators::Role;

pub use self::filter::{DeviceFilter, valid_tag};
pub use self::postgres::PostgresStore;
pub use self::sql::SqlRunner;
pub use self::sqlite::SqliteStore;

/// A migration both backends run as it is: what names the bootstrap a Device Attach
/// reported (a gateway that sends its report again is not taken for a new bootstrap).
const ATTACH_KEY_MIGRATION: &str = "ALTER TABLE associations ADD COLUMN attach_key TEXT;";

/// A migration both backends run as it is: history is forgotten by age
/// (`history_days`) without scanning whole tables.
const HISTORY_INDEXES_MIGRATION: &str = r#"
    CREATE INDEX commands_by_done_at ON commands (done_at) WHERE state = 'done';
    CREATE INDEX fanouts_by_done_at ON fanouts (done_at) WHERE state = 'done';
    CREATE INDEX events_by_time ON events (at);
"#;

/// A migration both backends run as it is: a session's unanswered commands are found
/// through the device's index (the device is known wherever a session is), so the
/// index by session goes. Every command sent wrote it twice, once when a session
/// claimed the command and once when the device answered: a page more in each of
/// those messages' commits.
const SESSION_INDEX_MIGRATION: &str = "DROP INDEX commands_by_session;";

/// The assignments of the statement that claims a device's queued commands for a
/// session (`?2`/`$2` the session, `?3`/`$3` now; both backends spell parameters so
/// that the text is the same but for the sigil): a command whose expiry passed ends
/// as expired in the same statement instead of going out.
const CLAIM_OR_EXPIRE: &str = "
    state = CASE WHEN expires_at <= ?3 THEN 'expired' ELSE 'sent' END,
    session_key = CASE WHEN expires_at <= ?3 THEN NULL ELSE ?2 END,
    sent_at = CASE WHEN expires_at <= ?3 THEN NULL ELSE ?3 END,
    done_at = CASE WHEN expires_at <= ?3 THEN ?3 ELSE NULL END";

/// A migration both backends run as it is: what a device reported of its DevDetail
/// (firmware version and the like, from the results of Gets), and device tags.
const DEVDETAIL_AND_TAGS_MIGRATION: &str = r#"
    ALTER TABLE devices ADD COLUMN devdetail TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE device_tags (
        dev_id TEXT NOT NULL REFERENCES devices(dev_id) ON DELETE CASCADE,
        tag    TEXT NOT NULL,
        PRIMARY KEY (dev_id, tag)
    );
    CREATE INDEX device_tags_by_tag ON device_tags (tag, dev_id);
"#;

/// A migration both backends run as it is: what this server knows of a gateway's
/// standing on each device it serves (associations made before know only their
/// origin), and the validations waiting for the device's answer.
const TRUST_MIGRATION: &str = r#"
    ALTER TABLE associations ADD COLUMN trust TEXT NOT NULL DEFAULT 'restricted';
    UPDATE associations SET trust = 'full' WHERE origin = 'server-assisted';
    CREATE TABLE pending_validations (
        command    BIGINT PRIMARY KEY,
        dev_id     TEXT NOT NULL,
        gateway_id TEXT NOT NULL
    );
    CREATE INDEX associations_by_trust ON associations (trust, dev_id);
"#;

/// A migration both backends run as it is: each device a campaign targets, its wave
/// and its progress (no foreign key to devices: a decommissioned device's part in a
/// campaign stays in its history).
const CAMPAIGN_DEVICES_MIGRATION: &str = r#"
    CREATE TABLE campaign_devices (
        campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        dev_id      TEXT NOT NULL,
        wave        BIGINT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'failed', 'cancelled')),
        gateway_id  TEXT,
        command_id  BIGINT,
        fanout_id   BIGINT,
        status      BIGINT,
        error       TEXT,
        attempts    BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (campaign_id, dev_id)
    );
    CREATE INDEX campaign_devices_by_wave ON campaign_devices (campaign_id, wave, state);
    CREATE INDEX campaign_devices_by_fanout ON campaign_devices (fanout_id) WHERE fanout_id IS NOT NULL;
"#;

/// Opens the store `database` names: a `postgres://` (or `postgresql://`) URL, or else
/// the path of an SQLite file with a page cache of `cache_mib`.
pub fn open(database: &str, cache_mib: u32) -> Result<Arc<dyn Store>, StoreError> {
    if is_shared(database) {
        Ok(Arc::new(PostgresStore::open(database)?))
    } else {
        Ok(Arc::new(SqliteStore::open(Path::new(database), cache_mib)?))
    }
}

/// Whether `database` names a PostgreSQL database (shared by several instances).
pub fn is_shared(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "{0} is in use by another process: an SQLite store serves one server instance (several instances share a PostgreSQL store)"
    )]
    InUse(String),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("cannot create {0}: {1}")]
    Create(String, std::io::Error),
    #[error("device {0:?} is already enrolled")]
    AlreadyExists(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("the database was written by a newer gwmo (schema {0}, this one knows {1})")]
    TooNew(i64, usize),
    #[error("bad database URL: {0}")]
    BadUrl(String),
    #[error("a bootstrap plan needs at least one command")]
    EmptyPlan,
    #[error("the store did not run the group of calls it was given")]
    GroupNotRun,
    #[error("batch {0} of DM messages was rolled back: none of their work is kept")]
    BatchLost(u64),
}

/// A gateway bootstrap of a device, stored as one unit of work: the commands that
/// carry it, queued in order; the credentials the gateway needs once the device
/// confirms, kept with the last command (whose Status settles the bootstrap); and what
/// else it entails (the event that records it). A crash leaves all of it or none.
#[derive(Debug, Clone)]
pub struct BootstrapPlan<'a> {
    pub dev_id: &'a str,
    pub gateway_id: &'a str,
    pub client_secret: &'a str,
    pub server_secret: &'a str,
    /// Command specs (JSON), at least one.
    pub commands: &'a [String],
    /// Written with it, once its commands are queued.
    pub then: &'a Followups,
}

/// Aborts the process here if the environment variable `GWMO_CRASH_AT` names `point`.
/// The crash tests kill a server at an exact step of a unit of work this way: a
/// SIGKILL from outside cannot aim between two statements. Read once.
pub(crate) fn crash_point(point: &str) {
    static CRASH_AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if CRASH_AT
        .get_or_init(|| std::env::var("GWMO_CRASH_AT").ok())
        .as_deref()
        == Some(point)
    {
        std::process::abort();
    }
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

/// What a device reported of itself in one message, beyond its DevInfo.
#[derive(Debug, Clone, Copy)]
pub struct Reported<'a> {
    /// The nonce it gave us for our next Cred, if it gave one.
    pub server_nonce: Option<&'a [u8]>,
    /// DevDetail leaves (firmware, software, hardware versions) its results carried:
    /// merged into those kept.
    pub devdetail: &'a BTreeMap<String, String>,
}

impl Reported<'_> {
    /// The DevDetail leaves as the JSON object a store merges, if there are any.
    pub(crate) fn devdetail_json(&self) -> Result<Option<String>, StoreError> {
        (!self.devdetail.is_empty())
            .then(|| devinfo_to_json(self.devdetail))
            .transpose()
    }
}

/// What a session records of itself in its device's row ([`Store::record_session`]).
#[derive(Debug, Clone, Copy)]
pub struct SessionRecord<'a> {
    pub devinfo: &'a BTreeMap<String, String>,
    pub encoding: &'a str,
    /// Replaces the address kept; `None` keeps it.
    pub notify_address: Option<&'a str>,
    pub now: i64,
}

impl DeviceRecord {
    /// What a session with the device authenticates it and itself with.
    pub fn session_auth(&self) -> DeviceAuth {
        DeviceAuth {
            client: Credentials {
                auth: self.auth,
                name: self.client_name.clone(),
                secret: self.client_secret.clone(),
            },
            client_nonce: self.client_nonce.clone(),
            server: Credentials {
                auth: self.auth,
                name: self.server_name.clone(),
                secret: self.server_secret.clone(),
            },
            server_nonce: self.server_nonce.clone(),
        }
    }

    /// A leaf of `./DevInfo` as the device last reported it ("" if it did not).
    pub fn devinfo_leaf(&self, leaf: &str) -> String {
        self.devinfo
            .get(&format!("./DevInfo/{leaf}"))
            .cloned()
            .unwrap_or_default()
    }
}

/// A device as listings show it: its record, what it reported of its DevDetail, its
/// tags and its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDevice {
    pub record: DeviceRecord,
    /// DevDetail leaves by URI, as Gets last read them.
    pub devdetail: BTreeMap<String, String>,
    /// In order.
    pub tags: Vec<String>,
    /// The gateway it is associated with.
    pub association: Option<Association>,
}

/// Where a queued command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    Queued,
    Sent,
    Done,
    /// An operator took it back before any session claimed it.
    Cancelled,
    /// Its expiry passed before any session claimed it.
    Expired,
}

impl CommandState {
    pub const ALL: [CommandState; 5] = [
        CommandState::Queued,
        CommandState::Sent,
        CommandState::Done,
        CommandState::Cancelled,
        CommandState::Expired,
    ];

    pub fn from_name(name: &str) -> Option<CommandState> {
        CommandState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Sent => "sent",
            CommandState::Done => "done",
            CommandState::Cancelled => "cancelled",
            CommandState::Expired => "expired",
        }
    }
}

/// What cancelling a queued command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued, and now will never be sent.
    Now,
    /// It is no longer queued: it went out in a session or ended (its state).
    TooLate(CommandState),
    NotFound,
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
    /// When it ended: done, cancelled or expired.
    pub done_at: Option<i64>,
    /// After this (Unix seconds) no session is sent it.
    pub expires_at: Option<i64>,
}

/// A command to queue for one device.
#[derive(Debug, Clone, Copy)]
pub struct QueuedCommand<'a> {
    pub dev_id: &'a str,
    /// The command spec (JSON).
    pub spec: &'a str,
    pub expires_at: Option<i64>,
}

/// Which of a device's commands to list: a page in id order, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFilter {
    pub state: Option<CommandState>,
    /// Only ids below this one (the previous page's last).
    pub before: Option<i64>,
}

/// An operator account of the admin API. Its token is kept only as a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    pub role: Role,
    pub token_sha256: String,
    pub created_at: i64,
}

/// One admin API request for the audit log: an action, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    /// Who: the operator's name (`config` for the configured `admin_token`); none for
    /// a token nobody holds.
    pub operator: Option<String>,
    pub role: Option<Role>,
    /// From where: the peer's address.
    pub source: String,
    pub method: String,
    /// What: the path and query asked.
    pub path: String,
    /// How it ended: the response's HTTP status.
    pub status: u16,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub operator: Option<String>,
    /// Only refused requests (401 and 403).
    pub refused: bool,
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
    /// What this server knows of the gateway's standing on the device: `full` (it
    /// bootstrapped the gateway itself), `restricted` (a local bootstrap), or
    /// `validated` (a local bootstrap this server then validated on the device).
    pub trust: String,
}

/// The columns an [`Association`] is read from, in order.
const ASSOCIATION_COLUMNS: &str = "dev_id, gateway_id, origin, since, trust";

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

/// A command to queue as part of a unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommand {
    pub dev_id: String,
    /// The command spec (JSON).
    pub spec: String,
    /// The gateway whose local bootstrap on the device this command validates: its
    /// success makes the association `validated`.
    pub validates: Option<String>,
}

/// An event to log as part of a unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub dev_id: Option<String>,
    pub kind: &'static str,
    /// JSON.
    pub detail: String,
}

/// What a decision of the store entails (commands to queue, events to log), written in
/// the decision's own transaction and only if the decision holds: a crash leaves the
/// decision with all of it, or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followups {
    pub commands: Vec<NewCommand>,
    pub events: Vec<NewEvent>,
}

/// What a settled bootstrap entails, from what the store holds when it settles: the
/// device, the gateway it is now bootstrapped to and the one it left (if registered).
pub type Entailed<'a> = &'a dyn Fn(
    &SettledBootstrap,
    &DeviceRecord,
    Option<&GatewayRecord>,
    Option<&GatewayRecord>,
) -> Followups;

/// What completing a command settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completed {
    /// The scheme the device's record switched to, if the command carried a switch
    /// that succeeded.
    pub auth_switched_to: Option<AuthType>,
    /// The bootstrap it confirmed, and what that entailed.
    pub bootstrap: Option<(SettledBootstrap, Followups)>,
    /// Whether it validated a local bootstrap of a gateway on the device.
    pub validated: bool,
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

/// What decommissioning a device did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decommissioned {
    /// Gone, with the association it had.
    Removed(Option<Association>),
    /// It is the device of this registered gateway: remove the gateway first.
    IsGateway(String),
    NotFound,
}

/// What removing a gateway did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRemoval {
    /// Gone, with this many associations.
    Removed(u64),
    /// Not removed: this many devices are behind it, and removal was not forced.
    HasDevices(u64),
    NotFound,
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub dev_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub at: i64,
    pub dev_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// What the server keeps. Every method is one unit of work: a crash leaves either all
/// of it or none (several may share one commit: [`Store::group`]). Claiming and
/// completing commands are safe against several server instances doing the same at
/// once.
pub trait Store: Send + Sync {
    /// Runs `work`, whose store calls on this thread commit together when it returns,
    /// whatever it returned: each call stays whole on its own (one that fails undoes
    /// only itself), and the group costs one commit instead of one per call. A crash
    /// before the end loses the whole group. Where the backend cannot group (every
    /// call takes a pooled connection of its own), each call commits as it goes.
    /// `work` runs exactly once.
    fn group(&self, work: &mut dyn FnMut()) -> Result<(), StoreError> {
        work();
        Ok(())
    }
    /// Where every call waits for the backend's one connection, whoever makes it, the
    /// batches its callers can share commits in: callers that can wait without
    /// holding a thread (the DM endpoint's async workers) should take turns before
    /// calling rather than contend for it, and share commits while they do.
    fn batches(&self) -> Option<&dyn batch::Batches> {
        None
    }
    /// Enrolls a device; [`StoreError::AlreadyExists`] if its DevId is taken.
    fn enroll(&self, device: &NewDevice, now: i64) -> Result<(), StoreError>;
    fn device(&self, dev_id: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// [`DeviceRecord::session_auth`] of the device (`None`: not enrolled), which every
    /// session reads as it opens: a store may read only that much of the row.
    fn session_auth(&self, dev_id: &str) -> Result<Option<DeviceAuth>, StoreError> {
        Ok(self
            .device(dev_id)?
            .as_ref()
            .map(DeviceRecord::session_auth))
    }
    /// Devices in DevId order, after `after`, at most `limit`.
    /// Devices the filter matches in DevId order, after `after`, at most `limit`.
    fn devices(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ListedDevice>, StoreError>;
    /// How many devices the filter matches.
    fn count_devices(&self, filter: &DeviceFilter) -> Result<u64, StoreError>;
    /// Keeps what a device reported of itself in one message ([`Reported`]), in one
    /// write of its row.
    fn record_reported(&self, dev_id: &str, reported: &Reported<'_>) -> Result<(), StoreError>;
    /// Adds the tags `add` to the devices the filter matches and takes `remove` away
    /// from them, in one transaction; returns how many devices matched.
    fn tag_devices(
        &self,
        filter: &DeviceFilter,
        add: &[String],
        remove: &[String],
    ) -> Result<u64, StoreError>;
    /// Every tag in use, with how many devices carry it.
    fn tags(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Records that `command` validates `gateway_id`'s bootstrap on `dev_id`: its
    /// success makes their association `validated`.
    fn plan_validation(
        &self,
        command: i64,
        dev_id: &str,
        gateway_id: &str,
    ) -> Result<(), StoreError> {
        self.sql().run(
            "INSERT INTO pending_validations (command, dev_id, gateway_id) VALUES (?1, ?2, ?3)",
            &[
                sql::Bound::Int(command),
                sql::Bound::Text(dev_id.to_owned()),
                sql::Bound::Text(gateway_id.to_owned()),
            ],
        )?;
        Ok(())
    }
    /// Plain SQL on this store, for what is written once for both backends.
    fn sql(&self) -> &dyn SqlRunner;
    /// Forgets a device: its commands go with it. Returns whether it was there.
    fn remove_device(&self, dev_id: &str) -> Result<bool, StoreError>;
    /// Replaces the nonce a device must build its next Cred with, only if it is still
    /// `used` (the one its credentials were just checked against): false when another
    /// session consumed it first. This is what makes one credential open one session,
    /// across instances too.
    fn swap_client_nonce(&self, dev_id: &str, used: &[u8], next: &[u8])
    -> Result<bool, StoreError>;
    /// Records a session's DevInfo and encoding, and counts the session. A
    /// `notify_address` the device reported replaces the one kept; without one, the
    /// kept one stays. One statement: this runs at the start of every session.
    fn record_session(&self, dev_id: &str, session: &SessionRecord<'_>) -> Result<(), StoreError>;
    /// [`Store::swap_client_nonce`] and, only if the nonce swapped,
    /// [`Store::record_session`], in one write of the device's row: a session's first
    /// message does both.
    fn swap_client_nonce_and_record_session(
        &self,
        dev_id: &str,
        used: &[u8],
        next: &[u8],
        session: &SessionRecord<'_>,
    ) -> Result<bool, StoreError>;
    fn set_notify_address(&self, dev_id: &str, address: Option<&str>) -> Result<(), StoreError>;
    /// Queues a command that does not expire.
    fn queue_command(&self, dev_id: &str, spec: &str, now: i64) -> Result<i64, StoreError> {
        self.queue(
            &QueuedCommand {
                dev_id,
                spec,
                expires_at: None,
            },
            now,
        )
    }
    fn queue(&self, command: &QueuedCommand<'_>, now: i64) -> Result<i64, StoreError>;
    /// Takes back a queued command: it will never be sent.
    fn cancel_command(&self, id: i64, now: i64) -> Result<Cancelled, StoreError>;
    /// Ends the queued commands whose expiry passed by `now`; returns how many.
    fn expire_commands(&self, now: i64) -> Result<u64, StoreError>;
    /// Moves the device's queued commands to `sent` for one session, in queue order,
    /// and returns them; those whose expiry passed end as expired instead, in the same
    /// statement. A command is claimed by one session only, whichever instance holds
    /// it.
    fn claim_pending(
        &self,
        dev_id: &str,
        session_key: &str,
        now: i64,
    ) -> Result<Vec<CommandRecord>, StoreError>;
    /// Stores a command's outcome (only a `sent` command completes; completing one that
    /// is already done changes nothing) and settles, in the same transaction, what was
    /// planned on it: an authentication switch, or a gateway bootstrap with what
    /// `entailed` says it entails. Each plan settles once.
    fn complete(
        &self,
        id: i64,
        status: u16,
        results: &str,
        now: i64,
        entailed: Entailed<'_>,
    ) -> Result<Completed, StoreError>;
    /// Puts a command that was sent back in the queue as `spec` (a form of it that
    /// runs again safely); false if it is not `sent` any more.
    fn resend_as(&self, id: i64, spec: &str) -> Result<bool, StoreError>;
    /// Puts the unanswered commands of `dev_id`'s session that died back in the queue.
    fn requeue_session(&self, dev_id: &str, session_key: &str) -> Result<usize, StoreError>;
    /// The devices with commands waiting in the queue, each once, sorted (woken when an
    /// instance starts: a wake-up may have died with the instance before).
    fn devices_with_queued_commands(&self) -> Result<Vec<String>, StoreError>;
    /// Whether `dev_id` has a command waiting in the queue (a wake-up for commands
    /// that a session took meanwhile is not sent).
    fn has_queued_commands(&self, dev_id: &str) -> Result<bool, StoreError>;
    /// Puts back in the queue every command sent before `sent_before` and still
    /// unanswered: its session's instance died (a live one requeues its own). Returns
    /// the devices whose commands went back, each once, sorted.
    fn requeue_abandoned(&self, sent_before: i64) -> Result<Vec<String>, StoreError>;
    /// Records that the device moves to `auth` once command `command` (which changes
    /// the scheme on the device) succeeds.
    fn plan_auth_switch(
        &self,
        dev_id: &str,
        auth: AuthType,
        command: i64,
    ) -> Result<(), StoreError>;
    fn register_gateway(&self, gateway: &GatewayRecord) -> Result<(), StoreError>;
    fn gateway(&self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError>;
    /// Gateways in GatewayID order, after `after`, at most `limit`.
    fn gateways(&self, after: &str, limit: u32) -> Result<Vec<GatewayRecord>, StoreError>;
    /// The registered gateway whose DevId (as a client of this server) is `dev_id`.
    fn gateway_by_device(&self, dev_id: &str) -> Result<Option<GatewayRecord>, StoreError>;
    fn association(&self, dev_id: &str) -> Result<Option<Association>, StoreError>;
    /// Associations in DevId order (of one gateway, if given), after `after`, at most
    /// `limit`.
    fn associations(
        &self,
        gateway_id: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Association>, StoreError>;
    /// Records that `dev_id` is now served by `gateway_id` (a Device Attach Alert).
    /// `attach_key` names the bootstrap the gateway reports; false (and nothing
    /// changed) when the association already records that very one: the gateway sent
    /// its report again, not having heard the answer. What it entails (`then`) is
    /// written in the same transaction, only when it changed something.
    fn associate(
        &self,
        dev_id: &str,
        gateway_id: &str,
        origin: &str,
        attach_key: Option<&str>,
        now: i64,
        then: &Followups,
    ) -> Result<bool, StoreError>;
    /// Ends the association of `dev_id` with `gateway_id`, if that is its association.
    fn dissociate(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError>;
    /// Queues a gateway bootstrap of a device with its plan and its event, in one
    /// transaction; returns the command whose Status settles it (the last).
    fn queue_bootstrap(&self, plan: &BootstrapPlan<'_>, now: i64) -> Result<i64, StoreError>;
    /// Whether a bootstrap of the device to the gateway is planned and not settled.
    fn bootstrap_pending(&self, dev_id: &str, gateway_id: &str) -> Result<bool, StoreError>;
    fn create_fanout(
        &self,
        gateway_id: &str,
        targets: &str,
        spec: &str,
        now: i64,
    ) -> Result<i64, StoreError>;
    /// Stores what a gateway reported for one of its fan-outs (the gateway must be the
    /// one the fan-out went to). Returns whether it matched.
    fn complete_fanout(
        &self,
        id: i64,
        gateway_id: &str,
        results: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    fn fanout(&self, id: i64) -> Result<Option<FanoutRecord>, StoreError>;
    fn command(&self, id: i64) -> Result<Option<CommandRecord>, StoreError>;
    /// A page of the device's commands, newest first.
    fn commands_of(
        &self,
        dev_id: &str,
        filter: &CommandFilter,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError>;
    /// A page of fan-outs (of one gateway, where it names one), newest first, with ids
    /// below `before`.
    fn fanouts(
        &self,
        gateway_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FanoutRecord>, StoreError>;
    /// Decommissions a device: its record, commands, association and planned
    /// bootstraps go. A registered gateway's device stays until its gateway is removed.
    fn decommission_device(&self, dev_id: &str) -> Result<Decommissioned, StoreError>;
    /// Removes a registered gateway with its fan-outs and the associations of the
    /// devices behind it (those devices stay enrolled). With devices behind it and
    /// without `force`, nothing changes. Returns how many associations went, or why
    /// nothing did.
    fn remove_gateway(&self, gateway_id: &str, force: bool) -> Result<GatewayRemoval, StoreError>;
    /// How many devices are associated with each of these gateways.
    fn associated_counts(&self, gateway_ids: &[&str]) -> Result<BTreeMap<String, u64>, StoreError>;
    /// Adds an operator account; a name already taken is refused.
    fn add_operator(&self, operator: &OperatorRecord) -> Result<(), StoreError>;
    /// The operator whose token has this SHA-256 digest.
    fn operator_by_token(&self, token_sha256: &str) -> Result<Option<OperatorRecord>, StoreError>;
    /// Every operator account, by name.
    fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError>;
    fn remove_operator(&self, name: &str) -> Result<bool, StoreError>;
    fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Audit entries with an id below `before` (all when none), newest first.
    fn audit_log(
        &self,
        before: Option<i64>,
        limit: u32,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Keeps the DM tree the device reported (a TNDS document), replacing the last one.
    fn set_tree(&self, dev_id: &str, tnds: &str, now: i64) -> Result<(), StoreError>;
    /// The DM tree the device last reported, and when.
    fn tree(&self, dev_id: &str) -> Result<Option<(String, i64)>, StoreError>;
    fn log_event(
        &self,
        dev_id: Option<&str>,
        kind: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Events with an id above `after_id`, oldest first, at most `limit`; only those
    /// matching the filter's kind and device, where it names them.
    fn events(
        &self,
        after_id: i64,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Deletes the history that ended before `before`: finished (or cancelled, or
    /// expired) commands, finished fan-outs, events and audit entries. Devices, associations, gateways and whatever is still
    /// queued or running stay. Returns how many records went.
    fn forget_history(&self, before: i64) -> Result<u64, StoreError>;
}

impl dyn Store + '_ {
    /// [`Store::group`] around work that can fail: its calls commit together, and its
    /// own error comes back after the commit.
    pub fn grouped<E: From<StoreError>>(
        &self,
        work: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut work = Some(work);
        let mut outcome = Err(E::from(StoreError::GroupNotRun));
        self.group(&mut || {
            if let Some(work) = work.take() {
                outcome = work();
            }
        })?;
        outcome
    }
}

fn auth_from_text(text: &str) -> Result<AuthType, StoreError> {
    AuthType::from_name(text).ok_or_else(|| StoreError::Corrupt(format!("auth type {text:?}")))
}

fn command_state(text: &str) -> Result<CommandState, StoreError> {
    CommandState::from_name(text)
        .ok_or_else(|| StoreError::Corrupt(format!("command state {text:?}")))
}

fn role_from_text(text: &str) -> Result<Role, StoreError> {
    Role::from_name(text).ok_or_else(|| StoreError::Corrupt(format!("operator role {text:?}")))
}

fn devinfo_from_json(text: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("devinfo: {error}")))
}

/// Tags as the store lists them (comma-separated, in no order), sorted.
fn tags_from_list(list: Option<String>) -> Vec<String> {
    let mut tags: Vec<String> = list
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags
}

fn devinfo_to_json(devinfo: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(devinfo).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests;
