//! The End Device's configuration (`device.toml`): its identity, where its state
//! lives, and the DM accounts it carries from the factory.

use std::net::SocketAddr;
use std::path::PathBuf;

use gwmo_proto::Encoding;
use gwmo_proto::auth::AuthType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSettings {
    /// `./DevInfo/DevId`.
    pub dev_id: String,
    /// `./DevInfo/Man`.
    pub manufacturer: String,
    /// `./DevInfo/Mod`.
    pub model: String,
    /// The encoding of the messages it sends.
    pub encoding: WireEncoding,
    /// Largest message it accepts (announced as MaxMsgSize).
    pub max_msg_size: usize,
    /// Largest object it takes in chunks (announced as MaxObjSize); a larger one is
    /// refused with 413.
    pub max_obj_size: usize,
    /// Where the device's DM tree is kept (`--state` overrides it); `{dev_id}` in it
    /// stands for the DevId (`IMEI:1` as `IMEI_1`), so that devices never share one.
    pub state_dir: PathBuf,
    /// Where to take package-0 notifications over HTTP; none: no listener.
    pub listen: Option<SocketAddr>,
    /// The URL reported to servers for package 0; defaults to `https://<listen>/notify`
    /// (`http` with plain HTTP).
    pub notify_url: Option<String>,
    /// Open a session with every account this often (0: only at start and on package 0).
    pub poll_secs: u64,
    /// Seconds to wait for each answer from a server.
    pub timeout_secs: u64,
    /// The accounts written into ./DMAcc on first start (factory bootstrap).
    pub accounts: Vec<FactoryAccount>,
    /// The ServerID of the DM Gateway the device sees on its network (static
    /// configuration). When it is not the gateway the device is bootstrapped to, the
    /// device reports a Location Update Alert to its servers.
    pub gateway: Option<String>,
    /// Look for gateways with DNS-SD (`_omadm-gw._tcp`) on this interface only, before
    /// each session with a DM Server; `gateway` is the fallback when none answers.
    pub discover_interface: Option<String>,
    /// How long each DNS-SD look-up listens, in milliseconds.
    pub discover_wait_ms: u64,
    /// A Local DM Bootstrap Server to ask for a Gateway Bootstrap when the device has
    /// no gateway yet (`https://host:port/bootstrap`).
    pub bootstrap_url: Option<String>,
    /// The device's USERPIN: a Gateway Bootstrap must carry a MAC made with it.
    pub userpin: Option<String>,
    /// Accept Gateway Bootstraps without a MAC (only when no USERPIN is set).
    pub accept_unsigned_bootstrap: bool,
    /// The longest a Gateway Bootstrap may wait for its first management session (24 h).
    pub max_lapse_secs: u64,
    /// `./DevDetail/FwV` on first start; a firmware update sets it to the version
    /// installed.
    pub firmware_version: String,
    /// How the device installs a firmware package it downloaded and verified.
    pub firmware: FirmwareSettings,
    /// The CA the device verifies its servers' (and bootstrap servers')
    /// certificates with, its package-0 listener's certificate, or plain HTTP.
    pub tls: gwmo_net::TlsSettings,
}

/// What `{dev_id}` in `state_dir` stands for.
const DEV_ID_PLACEHOLDER: &str = "{dev_id}";

impl DeviceSettings {
    /// The state directory, `{dev_id}` replaced by the DevId in a form every file
    /// system takes (characters other than letters, digits, `.`, `_` and `-` as `_`).
    pub fn state_path(&self) -> PathBuf {
        let text = self.state_dir.to_string_lossy();
        if !text.contains(DEV_ID_PLACEHOLDER) {
            return self.state_dir.clone();
        }
        let safe: String = self
            .dev_id
            .chars()
            .map(
                |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    true => c,
                    false => '_',
                },
            )
            .collect();
        PathBuf::from(text.replace(DEV_ID_PLACEHOLDER, &safe))
    }
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            dev_id: "IMEI:000000000000000".into(),
            manufacturer: "gwmo".into(),
            model: "gwmo-device".into(),
            encoding: WireEncoding::Xml,
            max_msg_size: 64 * 1024,
            max_obj_size: 4 << 20,
            state_dir: PathBuf::from(format!("gwmo-device-state/{DEV_ID_PLACEHOLDER}")),
            listen: None,
            notify_url: None,
            poll_secs: 0,
            timeout_secs: 30,
            accounts: Vec::new(),
            gateway: None,
            discover_interface: None,
            discover_wait_ms: 1500,
            bootstrap_url: None,
            userpin: None,
            accept_unsigned_bootstrap: false,
            max_lapse_secs: 24 * 3600,
            firmware_version: "1.0".into(),
            firmware: FirmwareSettings::default(),
            tls: gwmo_net::TlsSettings::default(),
        }
    }
}

/// `[firmware]`: the device's install step (FUMO leaves it to the device; docs/FUMO.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirmwareSettings {
    /// A command run (through `sh -c`) to install a verified package, with its path in
    /// `GWMO_FIRMWARE_IMAGE` and its version in `GWMO_FIRMWARE_VERSION`; exit status 0
    /// means installed. None: the install is simulated (below).
    pub install_command: Option<String>,
    /// A simulated install takes this long, in milliseconds.
    pub simulated_install_ms: u64,
    /// A simulated install fails (to rehearse failures).
    pub simulated_install_fails: bool,
    /// The largest package the device downloads, in MiB.
    pub max_package_mib: u64,
    /// Download attempts before the device gives up (each resumes the one before).
    pub download_attempts: u32,
    /// Check the package as it arrives and keep none of it, as a device that writes an
    /// update straight to a spare partition does, and as `gwmo sim`'s thousands of
    /// devices must (none could store its own copy). A cut download starts over, and
    /// the install is the simulated one: `install_command` needs a file, so the two
    /// are refused together.
    pub streaming: bool,
}

impl Default for FirmwareSettings {
    fn default() -> Self {
        FirmwareSettings {
            install_command: None,
            simulated_install_ms: 0,
            simulated_install_fails: false,
            max_package_mib: 256,
            download_attempts: 5,
            streaming: false,
        }
    }
}

impl DeviceSettings {
    pub fn bootstrap_policy(&self) -> crate::local::Policy {
        crate::local::Policy {
            userpin: self.userpin.clone(),
            accept_unsigned: self.accept_unsigned_bootstrap,
            max_lapse_secs: self.max_lapse_secs,
        }
    }
}

/// A DM account the device is built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactoryAccount {
    /// The server's ServerID (its DMAcc account is named after it).
    pub server_id: String,
    /// Where the server takes DM messages (`https://host:port/dm`).
    pub server_url: String,
    /// How the device and the server authenticate: `md5` (the default), `hmac` or
    /// `basic`.
    #[serde(default)]
    pub auth: AuthType,
    /// The device's name toward the server (default: its DevId).
    #[serde(default)]
    pub client_name: Option<String>,
    /// The device's secret toward the server (the enrollment's `client_secret`).
    pub client_secret: String,
    /// The server's name toward the device (default: its ServerID).
    #[serde(default)]
    pub server_name: Option<String>,
    /// The server's secret toward the device (the enrollment's `server_secret`).
    pub server_secret: String,
}

/// Message encodings, as written in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireEncoding {
    #[default]
    Xml,
    Wbxml,
}

impl From<WireEncoding> for Encoding {
    fn from(value: WireEncoding) -> Self {
        match value {
            WireEncoding::Xml => Encoding::Xml,
            WireEncoding::Wbxml => Encoding::Wbxml,
        }
    }
}
