//! Where the GwMO objects live in a gateway's tree: the one spelling of their nodes
//! for the DM Server, which writes Device Inventory entries and fan-outs there, and
//! for the gateway, which reads them and records its own leaves beside them. (The
//! published GwMO DDFs could not be read; docs/DECISIONS.md says how these were
//! chosen.)

/// The root of the GwMO objects; the DM Server alone may change what is under it.
pub const GWMO: &str = "./GwMO";
/// The gateway's configuration, for the DM Server to read.
pub const CONFIG: &str = "./GwMO/Config";
/// One interior node per end device the gateway serves.
pub const INVENTORY: &str = "./GwMO/DeviceInventory";
/// One interior node per fan-out the DM Server hands the gateway.
pub const FANOUT: &str = "./GwMO/Fanout";

/// The leaves of a Device Inventory entry.
pub mod entry {
    // Written by whoever bootstraps the device (the DM Server, or the gateway's own
    // Local DM Bootstrap Server).
    pub const DEV_ID: &str = "DevId";
    pub const MAN: &str = "Man";
    pub const MOD: &str = "Mod";
    pub const NOTIFY_URL: &str = "NotifyURL";
    pub const AUTH: &str = "Auth";
    pub const CLIENT_NAME: &str = "ClientName";
    pub const CLIENT_SECRET: &str = "ClientSecret";
    pub const SERVER_SECRET: &str = "ServerSecret";
    pub const ORIGIN: &str = "Origin";
    pub const TRUST: &str = "Trust";
    // A local bootstrap's interval.
    pub const ISSUED_AT: &str = "IssuedAt";
    pub const LAPSE_SECS: &str = "LapseSecs";
    pub const LAPSE_AT: &str = "LapseAt";
    // The gateway's own record.
    /// `refused`, `enrolled` or `active`.
    pub const STATE: &str = "State";
    pub const LAST_SESSION: &str = "LastSession";
    /// `true` once the DM Server has been told of the device (Device Attach).
    pub const ATTACHED: &str = "Attached";
    /// `true` once the local bootstrap lapsed, until the DM Server has been told.
    pub const LAPSED: &str = "Lapsed";
    /// The id of the command that probes a locally bootstrapped device's first session.
    pub const PROBE: &str = "Probe";
}

/// The leaves of a fan-out.
pub mod fanout {
    /// DevIds separated by commas, or `*` for every end device.
    pub const TARGETS: &str = "Targets";
    /// The command, as the admin API's JSON command spec.
    pub const COMMAND: &str = "Command";
    // The gateway's own record.
    /// Absent (new), `running` or `done`.
    pub const STATUS: &str = "Status";
    /// `DevId=command` pairs: the commands queued for it.
    pub const QUEUED: &str = "Queued";
    /// The results, JSON, until the DM Server has them.
    pub const RESULTS: &str = "Results";
}
