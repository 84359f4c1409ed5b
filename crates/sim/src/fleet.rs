//! The DM Server instances a simulation runs against: `gwmo server` processes the
//! simulator starts itself (and kills at the end), or servers already running that
//! it reaches by URL; and the admin API calls the simulation makes on them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gwmo_net::{HttpClient, Method, TlsSettings};
use gwmo_proto::auth::AuthType;
use gwmo_server::ServerSettings;
use gwmo_wiring::AdminClient;
use serde_json::Value;

use crate::SimError;

/// Where the servers come from.
#[derive(Debug, Clone)]
pub enum Servers {
    /// Start `instances` `gwmo server` processes from `exe`, sharing `database` (an
    /// SQLite path or a PostgreSQL URL; none: an SQLite file in the scratch directory).
    Spawn {
        exe: PathBuf,
        database: Option<String>,
        instances: usize,
        /// Their `sweep_secs` (how often a campaign moves on); none: their default.
        sweep_secs: Option<u64>,
    },
    /// Servers already running: their base URLs (`https://host:port`) and admin token.
    External {
        base_urls: Vec<String>,
        admin_token: String,
    },
}

/// One server instance as the simulation sees it.
pub struct Instance {
    pub base_url: String,
    process: Option<Child>,
}

impl Instance {
    /// The server's resident and peak memory in bytes (`/proc`), if the simulator
    /// started it.
    pub fn memory(&self) -> Option<(u64, u64)> {
        let pid = self.process.as_ref()?.id().to_string();
        Some((resident_bytes(&pid)?, peak_bytes(&pid)?))
    }

    /// The server's open file descriptors, if the simulator started it.
    pub fn open_files(&self) -> Option<usize> {
        open_files(&self.process.as_ref()?.id().to_string())
    }

    /// CPU time the server has used so far, in seconds (`/proc`), if the simulator
    /// started it.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(&self.process.as_ref()?.id().to_string())
    }
}

/// CPU time (user and system) process `pid` ("self" for this one) has used so far,
/// in seconds.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (USER_HZ, 100 on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Peak resident memory of process `pid` ("self" for this one), in bytes.
pub fn peak_bytes(pid: &str) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// Resident memory of process `pid` ("self" for this one), in bytes.
pub fn resident_bytes(pid: &str) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// A `kB` line of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Open file descriptors of process `pid` ("self" for this one).
pub fn open_files(pid: &str) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The instances and an admin API client for them.
pub struct Fleet {
    pub instances: Vec<Instance>,
    pub store: String,
    /// What every simulated role uses: the certificate of its listeners, the CA it
    /// trusts (the servers' too), or plain HTTP.
    pub tls: TlsSettings,
    /// The admin API of the first instance (the others' through [`Fleet::admin`]).
    admin: AdminClient,
}

/// The simulation's TLS: plain HTTP, or a certificate for loopback from the
/// development CA in `pki` (made there when it has none), which every simulated role
/// presents and trusts. Servers the simulator does not start must trust that CA too.
pub fn tls(plain_http: bool, pki: &Path) -> Result<TlsSettings, SimError> {
    if plain_http {
        return Ok(TlsSettings {
            plain_http,
            ..TlsSettings::default()
        });
    }
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let issued =
        gwmo_net::certs::issue(pki, "sim", &hosts).map_err(|e| SimError::Tls(e.to_string()))?;
    Ok(issued.tls_settings())
}

impl Fleet {
    pub async fn start(
        servers: &Servers,
        tls: TlsSettings,
        scratch: &Path,
    ) -> Result<Fleet, SimError> {
        let client_tls = tls.client().map_err(|e| SimError::Tls(e.to_string()))?;
        let client = HttpClient::new(&client_tls, Duration::from_secs(60), 64 << 20);
        match servers {
            Servers::External {
                base_urls,
                admin_token,
            } => Ok(Fleet {
                instances: base_urls
                    .iter()
                    .map(|url| Instance {
                        base_url: url.trim_end_matches('/').to_owned(),
                        process: None,
                    })
                    .collect(),
                store: "external".into(),
                tls,
                admin: AdminClient::new(client, "", admin_token.clone()),
            }),
            Servers::Spawn {
                exe,
                database,
                instances,
                sweep_secs,
            } => {
                let token = format!("{:032x}", rand::random::<u128>());
                let database = database
                    .clone()
                    .unwrap_or_else(|| scratch.join("server.db").display().to_string());
                let settings = ServerSettings {
                    database: database.clone(),
                    admin_token: Some(token.clone()),
                    tls: tls.clone(),
                    sweep_secs: *sweep_secs,
                    ..ServerSettings::default()
                };
                let mut started = Vec::new();
                for index in 0..(*instances).max(1) {
                    started.push(spawn_server(exe, &settings, scratch, index).await?);
                }
                let store = if database.starts_with("postgres") {
                    "postgresql"
                } else {
                    "sqlite"
                };
                Ok(Fleet {
                    instances: started,
                    store: store.into(),
                    tls,
                    admin: AdminClient::new(client, "", token),
                })
            }
        }
    }

    /// The admin API of instance `index` (modulo the number of instances).
    pub fn admin(&self, index: usize) -> AdminClient {
        self.admin.at(self.base_url(index))
    }

    pub fn base_url(&self, index: usize) -> &str {
        &self.instances[index % self.instances.len()].base_url
    }

    /// Enrolls a device with MD5 authentication at instance `index`; returns the
    /// enrollment (with the credentials).
    pub async fn enroll(&self, index: usize, dev_id: &str) -> Result<Value, SimError> {
        Ok(self.admin(index).enroll(dev_id, AuthType::Md5).await?)
    }

    /// DM messages the instances have answered so far (their `/metrics`).
    pub async fn messages_answered(&self) -> Result<u64, SimError> {
        Ok(self.traffic().await?.messages)
    }

    /// What the instances have counted of their traffic so far (their `/metrics`).
    pub async fn traffic(&self) -> Result<ServerTraffic, SimError> {
        let mut total = ServerTraffic::default();
        for instance in &self.instances {
            let [
                messages,
                connections,
                full_handshakes,
                resumed_handshakes,
                notifications,
            ] = self
                .counters(&instance.base_url, &ServerTraffic::COUNTERS)
                .await?[..]
            else {
                return Err(SimError::Admin("metrics: counters missing".into()));
            };
            total.messages += messages;
            total.connections += connections;
            total.full_handshakes += full_handshakes;
            total.resumed_handshakes += resumed_handshakes;
            total.notifications += notifications;
        }
        Ok(total)
    }

    /// The counters `names` of the `/metrics` at `base_url` (a server's or a
    /// gateway's), in that order; 0 for one it does not offer.
    pub async fn counters(&self, base_url: &str, names: &[&str]) -> Result<Vec<u64>, SimError> {
        let url = format!("{base_url}/metrics");
        let answer = self
            .client()
            .request(Method::GET, &url, &[], Vec::new())
            .await
            .map_err(|e| SimError::Admin(format!("{url}: {e}")))?;
        let text = String::from_utf8_lossy(&answer.body);
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .unwrap_or_default() as u64
        };
        Ok(names.iter().map(|name| value(name)).collect())
    }

    /// CPU seconds all the instances the simulator started have used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.instances.iter().map(Instance::cpu_secs).sum()
    }

    pub fn client(&self) -> &HttpClient {
        self.admin.http()
    }
}

/// DM messages and connections the servers counted, summed over the instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerTraffic {
    pub messages: u64,
    /// Connections accepted (DM and admin API).
    pub connections: u64,
    /// TLS handshakes with the public-key work, and resumed from a ticket.
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
    /// Package-0 notifications devices accepted: each a connection the server opened,
    /// a new TLS handshake as a client to a device it never called before.
    pub notifications: u64,
}

impl ServerTraffic {
    const COUNTERS: [&str; 5] = [
        "gwmo_messages_total",
        "gwmo_connections_accepted_total",
        "gwmo_tls_handshakes_total{kind=\"full\"}",
        "gwmo_tls_handshakes_total{kind=\"resumed\"}",
        "gwmo_notifications_sent_total",
    ];

    /// What was counted after `before`.
    pub fn since(self, before: ServerTraffic) -> ServerTraffic {
        ServerTraffic {
            messages: self.messages.saturating_sub(before.messages),
            connections: self.connections.saturating_sub(before.connections),
            full_handshakes: self.full_handshakes.saturating_sub(before.full_handshakes),
            resumed_handshakes: self
                .resumed_handshakes
                .saturating_sub(before.resumed_handshakes),
            notifications: self.notifications.saturating_sub(before.notifications),
        }
    }
}

/// Starts `gwmo server` as instance `index` with `settings`, on a loopback port it
/// picks and writes to a file in `scratch`, and waits until it wrote it.
async fn spawn_server(
    exe: &Path,
    settings: &ServerSettings,
    scratch: &Path,
    index: usize,
) -> Result<Instance, SimError> {
    let config = scratch.join(format!("server-{index}.toml"));
    let log = scratch.join(format!("server-{index}.log"));
    let address_file = scratch.join(format!("server-{index}.addr"));
    let settings = ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        address_file: Some(address_file.clone()),
        ..settings.clone()
    };
    let text = toml::to_string(&settings).map_err(|e| SimError::ServerStart(e.to_string()))?;
    std::fs::write(&config, text).map_err(|e| SimError::Io(config.clone(), e))?;
    let log_file = std::fs::File::create(&log).map_err(|e| SimError::Io(log.clone(), e))?;
    let mut child = Command::new(exe)
        .arg("server")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| SimError::Io(exe.to_owned(), e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(addr) = std::fs::read_to_string(&address_file)
            .ok()
            .filter(|text| !text.trim().is_empty())
        {
            return Ok(Instance {
                base_url: format!("{}://{}", settings.tls.scheme(), addr.trim()),
                process: Some(child),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(SimError::ServerStart(format!(
                "exited with {status}: {output}"
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(SimError::ServerStart(
                "no address written within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
