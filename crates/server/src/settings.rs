//! The DM Server's configuration (`server.toml`): every key has a default, so an
//! empty file (or none) runs a server on loopback with an SQLite file beside it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP listener binds (port 0: any free port, logged at start).
    pub listen: SocketAddr,
    /// The URL devices post DM messages to; defaults to `https://<listen>/dm` (`http` with plain HTTP).
    pub public_url: Option<String>,
    /// This server's ServerID, as it appears in devices' DMAcc.
    pub server_id: String,
    /// Where the store is: the path of an SQLite file (created on first start), or a
    /// `postgres://user:password@host/database` URL for several instances sharing one.
    pub database: String,
    /// SQLite's page cache, in MiB. The server's memory grows with its store until the
    /// cache is full, then stays there. (A PostgreSQL store caches in its own server.)
    pub database_cache_mib: u32,
    /// How long finished commands, finished fan-outs and events are kept, in days
    /// (0: for ever). Devices, associations and queued commands are never forgotten.
    pub history_days: u32,
    /// The URL that reaches this very instance, sent to devices as RespURI so that a
    /// session started here continues here. Needed when several instances share one
    /// public URL; defaults to `https://<listen>/dm` (`http` with plain HTTP) with a PostgreSQL store.
    pub instance_url: Option<String>,
    /// Where uploaded firmware images are kept; defaults to `<database>.artifacts`
    /// beside an SQLite file. Instances sharing a PostgreSQL store must be given one
    /// directory they all reach (a shared mount): the store holds what describes an
    /// image, the directory its bytes.
    pub artifact_dir: Option<PathBuf>,
    /// The largest firmware image taken, in MiB.
    pub artifact_max_mib: u64,
    /// Bearer token of the admin API; the API is closed while it is unset. At least
    /// 16 printable ASCII characters (`MIN_ADMIN_TOKEN_LEN`), without spaces.
    pub admin_token: Option<String>,
    /// Largest DM message accepted (announced as MaxMsgSize), in bytes.
    pub max_msg_size: usize,
    /// Largest result kept whole when a device sends it in chunks (announced as
    /// MaxObjSize), in bytes; of a larger one only its size is stored.
    pub max_obj_size: usize,
    /// Failed authentications in one session before it is ended.
    pub max_auth_attempts: u32,
    /// Wrong credentials for one device from one source address (across sessions,
    /// with no success in between) after which that source's new sessions for the
    /// device wait: 1 s, then twice as long at each further failure, up to
    /// `auth_lockout_secs`. A source gets ten times as many over all devices. Missing
    /// credentials do not count, and other sources are never held back (0: never).
    pub auth_lockout_failures: u32,
    /// The longest such a wait gets.
    pub auth_lockout_secs: u64,
    /// A session with no message for this long is dropped, and its commands requeued.
    pub session_idle_secs: u64,
    /// How often the server sweeps: drops idle sessions, requeues abandoned commands,
    /// ends expired ones and moves campaigns on (a campaign's next wave starts at the
    /// sweep after its wave ended). Unset: `session_idle_secs`, at most 15.
    pub sweep_secs: Option<u64>,
    /// Sessions this instance holds open at once; a device that starts one more gets
    /// 503 (each device holds one at most).
    pub max_sessions: usize,
    /// The longest a request head may take to arrive, or a kept-alive connection sit
    /// idle, before the connection is dropped (slow clients).
    pub header_read_secs: u64,
    /// Connections the DM and admin listener keeps open at once; more are closed.
    pub max_connections: usize,
    /// The longest a request body may take to arrive (408 after that).
    pub body_read_secs: u64,
    /// Where to serve `/metrics` (with `/healthz` and `/readyz`) apart from the DM
    /// port, in plain HTTP: bind it where only the monitoring reaches. When set, the
    /// DM port no longer serves `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// Log a line per HTTP request (target `gwmo_server::access`, at info): method,
    /// path (never the query, which carries session tokens), status, bytes, time, the
    /// peer and, for a DM message, the device. Off by default: a busy server answers
    /// thousands of messages a second.
    pub access_log: bool,
    /// `/readyz` answers 503 when the disk holding an SQLite store has less free
    /// space than this, in MiB (a store that cannot grow fails every DM message).
    pub ready_min_free_mib: u64,
    /// Where to write the address actually bound (for scripts using port 0).
    pub address_file: Option<PathBuf>,
    /// The listener's certificate, the CA trusted for the devices' package-0
    /// listeners, or plain HTTP.
    pub tls: gwmo_net::TlsSettings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            server_id: "gwmo-dms".into(),
            database: "gwmo-server.db".into(),
            database_cache_mib: 32,
            history_days: 90,
            instance_url: None,
            artifact_dir: None,
            artifact_max_mib: 1024,
            admin_token: None,
            max_msg_size: 1 << 20,
            max_obj_size: 16 << 20,
            max_auth_attempts: 3,
            auth_lockout_failures: 10,
            auth_lockout_secs: 300,
            session_idle_secs: 300,
            sweep_secs: None,
            max_sessions: 100_000,
            header_read_secs: 30,
            max_connections: 4096,
            body_read_secs: 30,
            ready_min_free_mib: 64,
            access_log: false,
            metrics_listen: None,
            address_file: None,
            tls: gwmo_net::TlsSettings::default(),
        }
    }
}

impl ServerSettings {
    /// The URL devices reach this server at, once the listener is bound to `bound`.
    pub fn dm_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| self.own_url(bound))
    }

    /// How often the server sweeps: `sweep_secs`, else `session_idle_secs` up to 15 s;
    /// a second at least.
    pub fn sweep_period(&self) -> Duration {
        let secs = self.sweep_secs.unwrap_or(self.session_idle_secs.min(15));
        Duration::from_secs(secs.max(1))
    }

    /// `https://<bound>/dm` (`http` with plain HTTP).
    fn own_url(&self, bound: SocketAddr) -> String {
        format!("{}://{bound}/dm", self.tls.scheme())
    }

    /// Where uploaded firmware images are kept.
    pub fn artifact_path(&self) -> PathBuf {
        match &self.artifact_dir {
            Some(dir) => dir.clone(),
            None if crate::store::is_shared(&self.database) => PathBuf::from("gwmo-artifacts"),
            None => PathBuf::from(format!("{}.artifacts", self.database)),
        }
    }

    /// What the HTTP listener tolerates from clients.
    pub fn serve_limits(&self) -> gwmo_net::ServeLimits {
        gwmo_net::ServeLimits {
            header_read: std::time::Duration::from_secs(self.header_read_secs.max(1)),
            body_read: std::time::Duration::from_secs(self.body_read_secs.max(1)),
            max_body: self.max_msg_size,
            max_connections: self.max_connections.max(1),
            streamed_prefix: Some(crate::firmware::UPLOAD_PREFIX),
        }
    }

    /// The RespURI this instance sends: its own URL, when it is one of several
    /// instances sharing a PostgreSQL store (a DM session's state lives in the memory
    /// of the instance that opened it), or when configured.
    pub fn resp_uri(&self, bound: SocketAddr) -> Option<String> {
        self.instance_url
            .clone()
            .or_else(|| crate::store::is_shared(&self.database).then(|| self.own_url(bound)))
    }
}

/// The shortest admin token taken, in bytes: a short one is guessed, and an empty one
/// equals a request that carries none.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Why a configured admin token is refused (the process does not start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "admin_token is {0} bytes long: at least {MIN_ADMIN_TOKEN_LEN} are needed (make one with `head -c 24 /dev/urandom | base64`), or leave admin_token out to keep the admin API closed"
    )]
    TooShort(usize),
    #[error(
        "admin_token may hold only printable ASCII without spaces: it travels in an HTTP Authorization header"
    )]
    NotPrintable,
}

/// Checks a configured admin token (none: the admin API stays closed, which is fine).
pub fn check_admin_token(token: Option<&str>) -> Result<(), AdminTokenError> {
    let Some(token) = token else {
        return Ok(());
    };
    if token.len() < MIN_ADMIN_TOKEN_LEN {
        return Err(AdminTokenError::TooShort(token.len()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminTokenError::NotPrintable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_every_sweep_secs_else_with_the_idle_limit_up_to_15_s() {
        let with = |session_idle_secs, sweep_secs| {
            ServerSettings {
                session_idle_secs,
                sweep_secs,
                ..ServerSettings::default()
            }
            .sweep_period()
            .as_secs()
        };
        assert_eq!(with(300, None), 15);
        assert_eq!(with(5, None), 5);
        assert_eq!(with(300, Some(1)), 1);
        assert_eq!(with(1, Some(60)), 60);
        assert_eq!(with(0, None), 1, "never a busy loop");
        assert_eq!(with(300, Some(0)), 1);
    }

    #[test]
    fn an_empty_short_or_unprintable_admin_token_is_refused_and_none_keeps_the_api_closed() {
        assert_eq!(check_admin_token(None), Ok(()));
        assert_eq!(
            check_admin_token(Some("")),
            Err(AdminTokenError::TooShort(0))
        );
        assert_eq!(
            check_admin_token(Some("change-me")),
            Err(AdminTokenError::TooShort(9))
        );
        assert_eq!(
            check_admin_token(Some("sixteen chars ok")),
            Err(AdminTokenError::NotPrintable)
        );
        assert_eq!(
            check_admin_token(Some("tab\tin-the-middle-of-it")),
            Err(AdminTokenError::NotPrintable)
        );
        assert_eq!(check_admin_token(Some("test-admin-token")), Ok(()));
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let settings: ServerSettings = toml::from_str("").unwrap();
        assert_eq!(settings, ServerSettings::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<ServerSettings>("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(error.to_string().contains("lisen"), "{error}");
    }

    #[test]
    fn settings_round_trip_through_toml() {
        let settings = ServerSettings {
            admin_token: Some("t".into()),
            ..ServerSettings::default()
        };
        let text = toml::to_string(&settings).unwrap();
        assert_eq!(toml::from_str::<ServerSettings>(&text).unwrap(), settings);
    }
}
