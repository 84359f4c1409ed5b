//! The DM Gateway at run time. Toward the DM Server it is a DM client (the device
//! agent, with the GwMO objects in its own tree); toward end devices it is a DM server
//! (an embedded `gwmo-server` with its own store). After every session with the DM
//! Server, the Device Inventory the server keeps in the gateway's tree is brought into
//! the end-device store: new devices are enrolled and woken with package 0, removed
//! ones are forgotten.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gwmo_net::unix_now;

use gwmo_bootstrap::{BootstrapSettings, EnrollError, Enroller, Enrollment};
use gwmo_device::{Agent, DeviceSettings};
use gwmo_proto::auth::AuthType;
use gwmo_proto::{Alert, Data, Item, Location, Meta, codes};
use gwmo_server::command::CommandSpec;
use gwmo_server::state::AppState;
use gwmo_server::store::{CommandState, NewDevice};
use gwmo_server::{Server, ServerSettings};
use gwmo_session::{ClientOutcome, Trigger};
use gwmo_tree::{Acl, Format, Tree, TreeError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::settings::{GatewaySettings, SettingsError};

/// The GwMO objects in the gateway's tree (node names: DESIGN.md §3; the published
/// DDFs could not be read).
pub const GWMO: &str = "./GwMO";
pub const INVENTORY: &str = "./GwMO/DeviceInventory";
/// The leaf that marks an inventory entry whose local bootstrap lapsed, kept until the
/// DM Server has been told.
const LAPSED: &str = "Lapsed";
/// The leaf holding the id of the probe a locally bootstrapped device's first session
/// carries.
const PROBE: &str = "Probe";
pub const FANOUT: &str = "./GwMO/Fanout";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("toward the DM Server: {0}")]
    Upstream(#[from] gwmo_device::DeviceError),
    #[error("toward end devices: {0}")]
    Downstream(#[from] gwmo_server::ServerError),
    #[error("{0}")]
    Discovery(String),
    #[error("local bootstrap server: {0}")]
    Bootstrap(String),
    #[error("end-device store: {0}")]
    Store(#[from] gwmo_server::store::StoreError),
    #[error("the DM Server aborted the session that carried a report")]
    ReportAborted,
}

/// One entry of the Device Inventory, as the DM Server wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// The entry's node name under the inventory.
    pub node: String,
    pub dev_id: String,
    pub notify_url: Option<String>,
    pub client_name: String,
    pub client_secret: String,
    pub server_secret: String,
    pub origin: String,
}

/// A started gateway, not yet running.
pub struct Gateway {
    settings: GatewaySettings,
    agent: Arc<Agent>,
    server: Server,
    downstream: Arc<AppState>,
    /// The embedded Local DM Bootstrap Server's listener (approaches.local).
    bootstrap: Option<(TcpListener, Option<gwmo_net::TlsAcceptor>)>,
}

impl Gateway {
    /// Checks the configuration, opens the gateway's tree (writing the GwMO objects on
    /// first start) and binds the end-device listener.
    pub async fn start(settings: GatewaySettings) -> Result<Gateway, GatewayError> {
        settings.validate()?;
        let upstream = settings.upstream.clone().ok_or(SettingsError::NoUpstream)?;
        let dms = upstream.server_id.clone();
        let agent = Arc::new(Agent::open(DeviceSettings {
            dev_id: settings.dev_id.clone(),
            model: "gwmo-gateway".into(),
            state_dir: settings.state_dir.join("upstream"),
            listen: settings.notify_listen,
            poll_secs: settings.poll_secs,
            accounts: vec![upstream],
            tls: settings.tls.clone(),
            ..DeviceSettings::default()
        })?);
        let server = Server::bind(ServerSettings {
            listen: settings.listen,
            public_url: settings.public_url.clone(),
            server_id: settings.gateway_id.clone(),
            database: settings
                .state_dir
                .join("end-devices.db")
                .display()
                .to_string(),
            database_cache_mib: END_DEVICE_STORE_CACHE_MIB,
            admin_token: settings.admin_token.clone(),
            tls: settings.tls.clone(),
            ..ServerSettings::default()
        })
        .await?;
        let dm_url = server.dm_url().to_owned();
        agent
            .update_tree(|tree| write_gwmo(tree, &settings, &dms, &dm_url))
            .await?;
        let downstream = server.state();
        let bootstrap = match settings.approaches.local {
            true => Some((
                TcpListener::bind(settings.bootstrap_listen)
                    .await
                    .map_err(|e| {
                        GatewayError::Bootstrap(format!(
                            "cannot listen on {}: {e}",
                            settings.bootstrap_listen
                        ))
                    })?,
                settings
                    .tls
                    .acceptor("local bootstrap server")
                    .map_err(|e| GatewayError::Bootstrap(e.to_string()))?,
            )),
            false => None,
        };
        Ok(Gateway {
            settings,
            agent,
            server,
            downstream,
            bootstrap,
        })
    }

    /// Where end devices reach the embedded Local DM Bootstrap Server.
    pub fn bootstrap_addr(&self) -> Option<SocketAddr> {
        self.bootstrap.as_ref()?.0.local_addr().ok()
    }

    /// Where end devices reach the gateway.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr()
    }

    /// Runs until `shutdown`: the end-device server, the package-0 listener, a first
    /// session with the DM Server, then inventory syncs after every session.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut receiver: watch::Receiver<bool>| async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        };
        let Gateway {
            settings,
            agent,
            server,
            downstream,
            bootstrap,
        } = self;
        let addr = server.local_addr();
        let serving = tokio::spawn(server.run(until_stopped(stopped.clone())));
        // Kept for the whole run: dropping it withdraws the advertisement.
        let _advertisement = match (&settings.dns_sd_interface, addr) {
            (Some(interface), Some(addr)) => Some(
                gwmo_discovery::advertise(
                    gwmo_discovery::GATEWAY_SERVICE,
                    interface,
                    &settings.gateway_id,
                    addr.ip(),
                    addr.port(),
                )
                .map_err(|e| GatewayError::Discovery(e.to_string()))?,
            ),
            _ => None,
        };
        if let Some(addr) = settings.notify_listen {
            let listener = gwmo_device::notify::bind(&agent, addr).await?;
            agent.set_notify_url(&listener.url).await?;
            tokio::spawn(gwmo_device::notify::serve(
                agent.clone(),
                listener,
                until_stopped(stopped.clone()),
            ));
        }
        let settings = Arc::new(settings);
        let syncer = Syncer {
            settings: settings.clone(),
            agent: agent.clone(),
            downstream,
            running: Arc::default(),
            fanouts: Arc::default(),
        };
        let _bootstrap_advertisement = match bootstrap {
            Some(listener) => {
                serve_bootstrap(&syncer, listener, addr, until_stopped(stopped.clone()))?
            }
            None => None,
        };
        agent.session_with_all(Trigger::Client).await;
        syncer.sync().await;
        let poll = Duration::from_secs(settings.poll_secs.max(1));
        let mut stopped_watch = stopped.clone();
        loop {
            tokio::select! {
                // Only ever changes from running to stopped.
                _ = stopped_watch.changed() => break,
                _ = agent.sessions_done().notified() => {}
                _ = tokio::time::sleep(poll), if settings.poll_secs > 0 => {
                    agent.session_with_all(Trigger::Client).await;
                }
                // End-device sessions change the inventory's State and LastSession.
                _ = tokio::time::sleep(STATE_REFRESH) => {}
            }
            syncer.sync().await;
        }
        match serving.await {
            Ok(result) => result.map_err(GatewayError::from),
            Err(_) => Ok(()),
        }
    }
}

/// Starts the embedded Local DM Bootstrap Server: the credentials it issues become
/// inventory entries of origin local-bootstrap. Advertised with DNS-SD when the gateway
/// is; the advertisement lives as long as the returned value.
fn serve_bootstrap(
    syncer: &Syncer,
    (listener, tls): (TcpListener, Option<gwmo_net::TlsAcceptor>),
    gateway_addr: Option<SocketAddr>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<gwmo_discovery::Advertisement>, GatewayError> {
    let settings = &syncer.settings;
    let gateway_url = match (&settings.public_url, gateway_addr) {
        (Some(url), _) => url.clone(),
        (None, Some(addr)) => format!("{}://{addr}/dm", settings.tls.scheme()),
        (None, None) => return Err(GatewayError::Bootstrap("the gateway has no address".into())),
    };
    let lbs = BootstrapSettings {
        gateway_id: settings.gateway_id.clone(),
        gateway_url,
        lapse_secs: settings.bootstrap_lapse_secs,
        userpins: settings.userpins.clone(),
        issue_unsigned: settings.bootstrap_issue_unsigned,
        requests_per_sec: settings.bootstrap_requests_per_sec,
    };
    let enrolling = syncer.clone();
    let enroller: Enroller = Arc::new(move |enrollment| {
        let syncer = enrolling.clone();
        Box::pin(async move { syncer.add_local(enrollment).await })
    });
    let local_addr = listener.local_addr().ok();
    // A standalone bootstrap server hands over credentials with the admin token.
    let token = settings.admin_token.clone().unwrap_or_default();
    tokio::spawn(async move {
        let routes = gwmo_bootstrap::router(lbs, enroller.clone())
            .merge(gwmo_bootstrap::enrollment_router(token, enroller));
        gwmo_net::serve(
            listener,
            tls,
            routes,
            gwmo_net::ServeLimits::default(),
            stopped,
        )
        .await;
    });
    match (&settings.dns_sd_interface, local_addr) {
        (Some(interface), Some(addr)) => gwmo_discovery::advertise(
            gwmo_discovery::BOOTSTRAP_SERVICE,
            interface,
            &settings.gateway_id,
            addr.ip(),
            addr.port(),
        )
        .map(Some)
        .map_err(|e| GatewayError::Discovery(e.to_string())),
        _ => Ok(None),
    }
}

/// Brings the Device Inventory into the end-device store, and runs the fan-outs the
/// DM Server hands over.
#[derive(Clone)]
struct Syncer {
    settings: Arc<GatewaySettings>,
    agent: Arc<Agent>,
    downstream: Arc<AppState>,
    /// One sync at a time: the bootstrap server's and the main loop's syncs running
    /// together both saw a device not yet reported and sent its Device Attach twice
    /// (found by `gwmo sim`: a second validation left queued on the server).
    running: Arc<tokio::sync::Mutex<()>>,
    /// The fan-outs this process is running (a fan-out marked running in the tree but
    /// not here was left by a gateway that stopped: it is resumed).
    fanouts: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl Syncer {
    async fn sync(&self) {
        if let Err(error) = self.try_sync().await {
            warn!(%error, "could not bring the Device Inventory into the end-device store");
        }
    }

    async fn try_sync(&self) -> Result<(), GatewayError> {
        let _one_at_a_time = self.running.lock().await;
        // One copy of the tree per sync: the steps below read different leaves of it
        // (copying it per step was the gateway's largest cost with 100 devices).
        let tree = self.agent.tree().await;
        let entries = inventory(&tree);
        let store = &self.downstream.store;
        let listed: HashSet<&str> = entries.iter().map(|e| e.dev_id.as_str()).collect();
        for known in store.devices(None, u32::MAX)? {
            if !listed.contains(known.dev_id.as_str()) {
                store.remove_device(&known.dev_id)?;
                info!(device = %known.dev_id, "end device left the inventory");
            }
        }
        let mut states = Vec::with_capacity(entries.len());
        for entry in &entries {
            states.push((entry, self.admit(&tree, entry).await?));
        }
        self.record_states(&tree, &states).await?;
        // Each goes on its own, and none fails the sync: a report the DM Server cannot
        // take now (it is down) goes again at the next sync, and holds up neither the
        // other reports nor a local bootstrap that is syncing its new device.
        let reports = [
            ("Device Attach", self.report_attaches(&tree, &states).await),
            ("lapse", self.detach_lapsed(&tree, &states).await),
            ("fan-out", self.start_fanouts(&tree).await),
        ];
        for (what, result) in reports {
            if let Err(error) = result {
                warn!(%error, "{what} not reported to the DM Server yet");
            }
        }
        Ok(())
    }

    /// Brings one inventory entry into the end-device store (enrolling and waking the
    /// device when it is new or its credentials changed); returns its State. A locally
    /// bootstrapped device is `active` once it answered the probe of its first session
    /// (so it has confirmed its bootstrap: the device confirms before it answers), not
    /// merely once a session began.
    async fn admit(
        &self,
        tree: &Tree,
        entry: &InventoryEntry,
    ) -> Result<&'static str, GatewayError> {
        let store = &self.downstream.store;
        let approach_on = match entry.origin.as_str() {
            "local-bootstrap" => self.settings.approaches.local,
            _ => self.settings.approaches.server_assisted,
        };
        if !approach_on {
            warn!(device = %entry.dev_id, origin = %entry.origin, "refusing a bootstrap: the approach is off");
            return Ok("refused");
        }
        let local = entry.origin == "local-bootstrap";
        match store.device(&entry.dev_id)? {
            Some(known) if known.client_secret == entry.client_secret => {
                let active = match local {
                    true => self.probe_answered(tree, entry)?,
                    false => known.sessions > 0,
                };
                return Ok(if active { "active" } else { "enrolled" });
            }
            Some(_) => {
                store.remove_device(&entry.dev_id)?;
            }
            None => {}
        }
        store.enroll(
            &NewDevice {
                dev_id: entry.dev_id.clone(),
                auth: AuthType::Md5,
                client_name: entry.client_name.clone(),
                client_secret: entry.client_secret.clone(),
                server_name: self.settings.gateway_id.clone(),
                server_secret: entry.server_secret.clone(),
            },
            unix_now(),
        )?;
        store.set_notify_address(&entry.dev_id, entry.notify_url.as_deref())?;
        info!(device = %entry.dev_id, "end device added to the inventory");
        if local {
            self.queue_probe(entry).await?;
        }
        // A locally bootstrapped device opens its session itself once it has the account.
        if entry.origin != "local-bootstrap"
            && let Some(device) = store.device(&entry.dev_id)?
            && let Err(error) = gwmo_server::notify::send(&self.downstream, &device).await
        {
            warn!(device = %entry.dev_id, %error, "could not wake the end device");
        }
        Ok("enrolled")
    }

    /// The first session of a locally bootstrapped device carries a Get of its
    /// bootstrap's deadline: its answer shows the device confirmed the bootstrap.
    async fn queue_probe(&self, entry: &InventoryEntry) -> Result<(), GatewayError> {
        let probe = CommandSpec::Get {
            target: format!(
                "./DMAcc/{}/Ext/GwBoot/LapseAt",
                gwmo_tree::segment_for(&self.settings.gateway_id)
            ),
        };
        let id =
            self.downstream
                .store
                .queue_command(&entry.dev_id, &probe.to_json(), unix_now())?;
        let leaf = format!("{INVENTORY}/{}/{PROBE}", entry.node);
        self.agent
            .update_tree(|tree| tree.set_leaf(&leaf, &id.to_string(), Format::Int))
            .await?;
        Ok(())
    }

    /// Whether the device answered the probe of its first session.
    fn probe_answered(&self, tree: &Tree, entry: &InventoryEntry) -> Result<bool, GatewayError> {
        let Some(id) = tree
            .value(&format!("{INVENTORY}/{}/{PROBE}", entry.node))
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return Ok(false);
        };
        Ok(self
            .downstream
            .store
            .command(id)?
            .is_some_and(|command| command.state == CommandState::Done))
    }

    /// A device the embedded bootstrap server just bootstrapped: an inventory entry of
    /// origin local-bootstrap (restricted) with the interval issued, then a sync that
    /// enrolls it. A device the gateway serves already is re-keyed only by a request
    /// that proved its USERPIN.
    async fn add_local(&self, enrollment: Enrollment) -> Result<(), EnrollError> {
        let unavailable = |e: GatewayError| EnrollError::Unavailable(e.to_string());
        let now = unix_now();
        let (issued_at, lapse_secs) = (now.to_string(), enrollment.lapse_secs.to_string());
        let lapse_at = gwmo_tree::rfc3339(now.saturating_add(enrollment.lapse_secs as i64));
        let base = format!("{INVENTORY}/{}", gwmo_tree::segment_for(&enrollment.dev_id));
        let leaves = [
            ("DevId", enrollment.dev_id.as_str()),
            ("ClientName", enrollment.dev_id.as_str()),
            ("ClientSecret", enrollment.client_secret.as_str()),
            ("ServerSecret", enrollment.server_secret.as_str()),
            ("Origin", "local-bootstrap"),
            ("Trust", "restricted"),
            ("Attached", "false"),
            ("IssuedAt", &issued_at),
            ("LapseSecs", &lapse_secs),
            ("LapseAt", &lapse_at),
        ];
        {
            // The check and the write under the sync's lock: two requests for one
            // device cannot both find it new.
            let _one_at_a_time = self.running.lock().await;
            let tree = self.agent.tree().await;
            let served = tree.exists(&format!("{base}/ClientSecret"));
            if served && !enrollment.proven {
                return Err(EnrollError::Conflict(format!(
                    "{} is served by this gateway",
                    enrollment.dev_id
                )));
            }
            self.agent
                .update_tree(|tree| {
                    tree.remove(&base).ok();
                    leaves.iter().try_for_each(|(leaf, value)| {
                        tree.set_leaf(&format!("{base}/{leaf}"), value, Format::Chr)
                    })
                })
                .await
                .map_err(|e| unavailable(e.into()))?;
        }
        self.try_sync().await.map_err(unavailable)
    }

    /// Reports, once, each locally bootstrapped device that has held a session with the
    /// gateway: a Device Attach Alert to the DM Server (seed 8.x.2, figure z).
    async fn report_attaches(
        &self,
        tree: &Tree,
        states: &[(&InventoryEntry, &'static str)],
    ) -> Result<(), GatewayError> {
        let mut attached = Vec::new();
        let mut items = Vec::new();
        for (entry, state) in states {
            let flag = format!("{INVENTORY}/{}/Attached", entry.node);
            if entry.origin != "local-bootstrap"
                || *state != "active"
                || tree.value(&flag) == Some("true")
            {
                continue;
            }
            let devinfo = self
                .downstream
                .store
                .device(&entry.dev_id)?
                .map(|d| d.devinfo)
                .unwrap_or_default();
            let info = |leaf: &str| {
                devinfo
                    .get(&format!("./DevInfo/{leaf}"))
                    .cloned()
                    .unwrap_or_default()
            };
            // IssuedAt names the bootstrap: the server tells this report sent again (its
            // answer lost) from a new bootstrap of the same device.
            let issued_at = tree.value(&format!("{INVENTORY}/{}/IssuedAt", entry.node));
            let data = serde_json::json!({
                "dev_id": entry.dev_id, "man": info("Man"), "mod": info("Mod"), "origin": entry.origin,
                "issued_at": issued_at,
            });
            items.push(gwmo_alert_item(
                codes::alert_type::DEVICE_ATTACH,
                &format!("{INVENTORY}/{}", entry.node),
                data.to_string(),
            ));
            attached.push(flag);
        }
        if items.is_empty() {
            return Ok(());
        }
        self.report_upstream(items).await?;
        self.agent
            .update_tree(|tree| {
                attached
                    .iter()
                    .try_for_each(|flag| tree.set_leaf(flag, "true", Format::Chr))
            })
            .await?;
        info!(devices = attached.len(), "Device Attach reported");
        Ok(())
    }

    /// Ends the local bootstraps that lapsed without a session (seed 8.x.2): the device
    /// leaves the end-device store at once, and its inventory entry loses its
    /// credentials and is marked Lapsed until a session has carried the Device Detach
    /// Alert to the DM Server (one the server could not take goes again at the next sync).
    async fn detach_lapsed(
        &self,
        tree: &Tree,
        states: &[(&InventoryEntry, &'static str)],
    ) -> Result<(), GatewayError> {
        let lapsed: Vec<&InventoryEntry> = states
            .iter()
            .filter(|(entry, state)| {
                let number = |field: &str| {
                    tree.value(&format!("{INVENTORY}/{}/{field}", entry.node))
                        .and_then(|v| v.parse::<i64>().ok())
                };
                // The interval this bootstrap was issued with (the device applies the
                // same), not whatever the setting says now.
                let lapse =
                    number("LapseSecs").unwrap_or(self.settings.bootstrap_lapse_secs as i64);
                // Strictly after, in whole seconds: a Device Detach may come a little
                // after the device's own lapse, never before it.
                entry.origin == "local-bootstrap"
                    && *state != "active"
                    && number("IssuedAt").is_some_and(|at| unix_now() > at.saturating_add(lapse))
            })
            .map(|(entry, _)| *entry)
            .collect();
        if !lapsed.is_empty() {
            for entry in &lapsed {
                self.downstream.store.remove_device(&entry.dev_id)?;
            }
            self.agent
                .update_tree(|tree| {
                    lapsed.iter().try_for_each(|entry| {
                        let node = format!("{INVENTORY}/{}", entry.node);
                        for secret in ["ClientSecret", "ServerSecret"] {
                            let leaf = format!("{node}/{secret}");
                            if tree.exists(&leaf) {
                                tree.remove(&leaf)?;
                            }
                        }
                        tree.set_leaf(&format!("{node}/{LAPSED}"), "true", Format::Chr)
                    })
                })
                .await?;
            warn!(
                devices = lapsed.len(),
                "local bootstraps lapsed without a session"
            );
        }
        // This sync's lapses, and those an earlier report could not carry.
        let mut detached: Vec<(String, String, String)> = tree
            .children(INVENTORY)
            .unwrap_or_default()
            .into_iter()
            .filter(|node| tree.value(&format!("{INVENTORY}/{node}/{LAPSED}")) == Some("true"))
            .map(|node| {
                let leaf = |field: &str| {
                    tree.value(&format!("{INVENTORY}/{node}/{field}"))
                        .unwrap_or_default()
                        .to_owned()
                };
                (node.to_owned(), leaf("DevId"), leaf("Origin"))
            })
            .collect();
        detached.extend(
            lapsed
                .iter()
                .map(|e| (e.node.clone(), e.dev_id.clone(), e.origin.clone())),
        );
        if detached.is_empty() {
            return Ok(());
        }
        let items = detached
            .iter()
            .map(|(node, dev_id, origin)| {
                let data =
                    serde_json::json!({ "dev_id": dev_id, "origin": origin, "reason": "lapsed" });
                gwmo_alert_item(
                    codes::alert_type::DEVICE_DETACH,
                    &format!("{INVENTORY}/{node}"),
                    data.to_string(),
                )
            })
            .collect();
        self.report_upstream(items).await?;
        self.agent
            .update_tree(|tree| {
                detached
                    .iter()
                    .try_for_each(|(node, _, _)| tree.remove(&format!("{INVENTORY}/{node}")))
            })
            .await?;
        Ok(())
    }

    /// One session with the DM Server carrying these Generic Alert items.
    async fn report_upstream(&self, items: Vec<Item>) -> Result<(), GatewayError> {
        let Some(upstream) = &self.settings.upstream else {
            return Ok(());
        };
        let alert = Alert {
            cmd_id: 0,
            code: codes::alert::GENERIC_ALERT,
            correlator: None,
            items,
        };
        let report = self
            .agent
            .session(&upstream.server_id, Trigger::Client, None, vec![alert])
            .await?;
        match report.outcome {
            ClientOutcome::Completed => Ok(()),
            ClientOutcome::Aborted => Err(GatewayError::ReportAborted),
        }
    }

    /// Writes each entry's State and LastSession into the inventory, for the DM Server.
    async fn record_states(
        &self,
        tree: &Tree,
        states: &[(&InventoryEntry, &'static str)],
    ) -> Result<(), GatewayError> {
        let mut leaves = Vec::new();
        for (entry, state) in states {
            let last = self
                .downstream
                .store
                .device(&entry.dev_id)?
                .and_then(|d| d.last_session_at)
                .map(|at| at.to_string())
                .unwrap_or_default();
            let base = format!("{INVENTORY}/{}", entry.node);
            leaves.push((format!("{base}/State"), (*state).to_owned()));
            leaves.push((format!("{base}/LastSession"), last));
        }
        if leaves
            .iter()
            .all(|(uri, value)| tree.value(uri) == Some(value.as_str()))
        {
            return Ok(()); // unchanged: no write
        }
        self.agent
            .update_tree(|tree| {
                leaves
                    .iter()
                    .try_for_each(|(uri, value)| tree.set_leaf(uri, value, Format::Chr))
            })
            .await?;
        Ok(())
    }

    /// Starts every fan-out that has no Status yet, resumes those a stopped gateway
    /// left running, and reports again the results of finished ones the DM Server has
    /// not acknowledged; each in its own task.
    async fn start_fanouts(&self, tree: &Tree) -> Result<(), GatewayError> {
        for id in tree.children(FANOUT).unwrap_or_default() {
            let leaf = |field: &str| {
                tree.value(&format!("{FANOUT}/{id}/{field}"))
                    .unwrap_or("")
                    .to_owned()
            };
            let status = leaf("Status");
            match status.as_str() {
                "" => {
                    let status_node = format!("{FANOUT}/{id}/Status");
                    self.agent
                        .update_tree(|tree| tree.set_leaf(&status_node, "running", Format::Chr))
                        .await?;
                }
                "running" | "done" if !self.fanouts_running().contains(id) => {
                    info!(fanout = id, status, "taking up a fan-out left unfinished");
                }
                _ => continue,
            }
            self.fanouts_running().insert(id.to_owned());
            let targets: Vec<String> = leaf("Targets")
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            let queued = parse_queued(&leaf("Queued"));
            let (syncer, id, command, results) = (
                self.clone(),
                id.to_owned(),
                leaf("Command"),
                leaf("Results"),
            );
            tokio::spawn(async move {
                let finished = match status.as_str() {
                    "done" => syncer.deliver_fanout(&id, results).await,
                    _ => syncer.run_fanout(&id, targets, &command, queued).await,
                };
                if let Err(error) = finished {
                    warn!(fanout = %id, %error, "fan-out not finished yet");
                }
                syncer.fanouts_running().remove(&id);
            });
        }
        Ok(())
    }

    /// The ids of the fan-outs this process is running.
    fn fanouts_running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.fanouts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a fan-out: the command queued for each target (or, resuming, the one queued
    /// before, recorded in the fan-out's Queued leaf), the devices woken, their outcomes
    /// awaited and reported to the DM Server.
    async fn run_fanout(
        &self,
        id: &str,
        targets: Vec<String>,
        command: &str,
        mut queued: HashMap<String, i64>,
    ) -> Result<(), GatewayError> {
        let store = &self.downstream.store;
        let targets = if targets.iter().any(|t| t == "*") {
            store
                .devices(None, u32::MAX)?
                .into_iter()
                .map(|d| d.dev_id)
                .collect()
        } else {
            targets
        };
        let mut results = Vec::new();
        let mut pending = Vec::new();
        match CommandSpec::parse(command) {
            Err(error) => results.push(serde_json::json!({ "error": error.to_string() })),
            Ok(spec) => {
                for target in targets {
                    let Some(device) = store.device(&target)? else {
                        results.push(serde_json::json!({ "dev_id": target, "error": "not in this gateway's inventory" }));
                        continue;
                    };
                    let command = match queued.get(&target) {
                        Some(&command) => command,
                        None => {
                            let command =
                                store.queue_command(&device.dev_id, &spec.to_json(), unix_now())?;
                            queued.insert(target.clone(), command);
                            command
                        }
                    };
                    pending.push((target, command));
                }
                // Recorded before any device is woken: a gateway stopped from here on
                // resumes with these commands instead of queuing them again.
                let record = format_queued(&queued);
                let node = format!("{FANOUT}/{id}/Queued");
                self.agent
                    .update_tree(|tree| tree.set_leaf(&node, &record, Format::Chr))
                    .await?;
                for (target, _) in &pending {
                    if let Some(device) = store.device(target)?
                        && let Err(error) =
                            gwmo_server::notify::send(&self.downstream, &device).await
                    {
                        warn!(device = %device.dev_id, %error, "could not wake the end device for a fan-out");
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + FANOUT_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let mut done = true;
            for (_, command) in &pending {
                done &= store
                    .command(*command)?
                    .is_some_and(|c| c.state == CommandState::Done);
            }
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (target, command) in pending {
            let record = store.command(command)?;
            results.push(serde_json::json!({
                "dev_id": target,
                "state": record.as_ref().map(|c| c.state.as_str()),
                "status": record.as_ref().and_then(|c| c.status),
                "outcome": record
                    .as_ref()
                    .and_then(|c| c.results.as_deref())
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
            }));
        }
        let results = serde_json::Value::Array(results).to_string();
        let node = format!("{FANOUT}/{id}");
        self.agent
            .update_tree(|tree| {
                tree.set_leaf(&format!("{node}/Results"), &results, Format::Chr)?;
                tree.set_leaf(&format!("{node}/Status"), "done", Format::Chr)
            })
            .await?;
        self.deliver_fanout(id, results).await
    }

    /// Reports a finished fan-out's results to the DM Server and, once a session has
    /// carried them, removes the fan-out from the tree: kept, every fan-out would grow
    /// the tree (held in memory, written after every change) for as long as the gateway
    /// runs. Results a session could not carry stay, and go with the next sync.
    async fn deliver_fanout(&self, id: &str, results: String) -> Result<(), GatewayError> {
        let node = format!("{FANOUT}/{id}");
        let item = gwmo_alert_item(codes::alert_type::FANOUT_RESULTS, &node, results);
        self.report_upstream(vec![item]).await?;
        self.agent.update_tree(|tree| tree.remove(&node)).await?;
        info!(fanout = id, "fan-out results reported");
        Ok(())
    }
}

/// A fan-out's Queued leaf: `DevId=command` pairs separated by spaces (a pair that
/// does not read back is queued again).
fn format_queued(queued: &HashMap<String, i64>) -> String {
    let mut pairs: Vec<String> = queued
        .iter()
        .map(|(dev_id, command)| format!("{dev_id}={command}"))
        .collect();
    pairs.sort();
    pairs.join(" ")
}

fn parse_queued(text: &str) -> HashMap<String, i64> {
    text.split_whitespace()
        .filter_map(|pair| {
            let (dev_id, command) = pair.rsplit_once('=')?;
            Some((dev_id.to_owned(), command.parse().ok()?))
        })
        .collect()
}

/// A Generic Alert item about an inventory entry: a type, the entry, JSON data.
pub fn gwmo_alert_item(kind: &str, source: &str, data: String) -> Item {
    Item {
        source: Some(Location::new(source)),
        meta: Some(Meta {
            r#type: Some(kind.into()),
            format: Some("chr".into()),
            ..Meta::default()
        }),
        data: Some(Data::Text(data)),
        ..Item::default()
    }
}

/// The page cache of the gateway's end-device store: it holds the gateway's own
/// devices, not a fleet, and a gateway's memory is small.
const END_DEVICE_STORE_CACHE_MIB: u32 = 4;

/// How often the inventory's State and LastSession are brought up to date.
const STATE_REFRESH: Duration = Duration::from_secs(1);

/// How long a fan-out waits for its end devices before it reports what it has.
const FANOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// The GwMO objects of a new gateway: its Config, an empty Device Inventory, both
/// managed by the DM Server.
fn write_gwmo(
    tree: &mut Tree,
    settings: &GatewaySettings,
    dms: &str,
    dm_url: &str,
) -> Result<(), TreeError> {
    tree.ensure_interior(INVENTORY)?;
    tree.set_leaf("./GwMO/Config/GatewayID", &settings.gateway_id, Format::Chr)?;
    tree.set_leaf("./GwMO/Config/DMURL", dm_url, Format::Chr)?;
    let approaches = [
        ("server-assisted", settings.approaches.server_assisted),
        ("local", settings.approaches.local),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect::<Vec<_>>()
    .join(",");
    tree.set_leaf("./GwMO/Config/Approaches", &approaches, Format::Chr)?;
    tree.set_acl(
        GWMO,
        Acl::parse(&format!(
            "Get=*&Add={dms}&Replace={dms}&Delete={dms}&Exec={dms}"
        ))?,
    )
}

/// The entries of the Device Inventory that name a DevId.
pub fn inventory(tree: &Tree) -> Vec<InventoryEntry> {
    tree.children(INVENTORY)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let leaf = |field: &str| {
                tree.value(&format!("{INVENTORY}/{name}/{field}"))
                    .map(str::to_owned)
            };
            Some(InventoryEntry {
                node: name.to_owned(),
                dev_id: leaf("DevId").filter(|d| !d.is_empty())?,
                notify_url: leaf("NotifyURL").filter(|u| !u.is_empty()),
                client_name: leaf("ClientName").unwrap_or_default(),
                client_secret: leaf("ClientSecret")?,
                server_secret: leaf("ServerSecret")?,
                origin: leaf("Origin").unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::{CmdIds, Command, Data, Item, ItemCommand, Location};

    #[test]
    fn the_dm_server_writes_the_inventory_and_no_one_else_does() {
        let mut tree = Tree::default();
        write_gwmo(
            &mut tree,
            &GatewaySettings::default(),
            "dms",
            "http://gw/dm",
        )
        .unwrap();
        let add = |target: &str, value: &str| {
            Command::Add(ItemCommand {
                cmd_id: 1,
                meta: None,
                items: vec![Item {
                    target: Some(Location::new(format!("{INVENTORY}/ED1/{target}"))),
                    data: Some(Data::Text(value.into())),
                    ..Item::default()
                }],
            })
        };
        for (leaf, value) in [
            ("DevId", "IMEI:1"),
            ("ClientSecret", "c"),
            ("ServerSecret", "s"),
            ("Origin", "server-assisted"),
        ] {
            let replies = tree.execute("dms", 1, &add(leaf, value), &mut CmdIds::new());
            assert!(
                matches!(&replies[0], Command::Status(s) if s.code == 200),
                "{replies:?}"
            );
        }
        let refused = tree.execute("intruder", 1, &add("Other", "x"), &mut CmdIds::new());
        assert!(matches!(&refused[0], Command::Status(s) if s.code == 425));
        let entries = inventory(&tree);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].dev_id.as_str(), entries[0].origin.as_str()),
            ("IMEI:1", "server-assisted")
        );
        assert_eq!(
            tree.value("./GwMO/Config/Approaches"),
            Some("server-assisted")
        );
    }
}
