//! The DM Gateway at run time, wired together. Toward the DM Server it is a DM client
//! (the device agent, with the GwMO objects in its own tree); toward end devices it is
//! a DM server (an embedded `gwmo-server` with its own store) and, with the local
//! approach on, a Local DM Bootstrap Server. Its [`Driver`] brings the Device Inventory
//! into the end-device store after every session with the DM Server, after every
//! end-device message stored, when a local bootstrap falls due to lapse, when reports
//! the DM Server did not take fall due again, and after every local bootstrap.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gwmo_bootstrap::{BootstrapSettings, Enroller};
use gwmo_device::{Agent, DeviceSettings};
use gwmo_net::unix_now;
use gwmo_server::{EndDevices, Server, ServerSettings};
use gwmo_session::Trigger;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::GatewayError;
use crate::driver::Driver;
use crate::images::ImageStore;
use crate::inventory::write_gwmo;
use crate::report_retry::PauseEnds;
use crate::settings::{GatewaySettings, SettingsError};

/// How long the gateway lets end-device messages gather before it syncs for them: a
/// session of several messages costs one sync, not one each.
const GATHER_CHANGES: Duration = Duration::from_millis(50);

/// How often the inventory's recorded States and LastSessions (derived from the
/// end-device store, written without a save each) reach the disk.
const SAVE_RECORDS_EVERY: Duration = Duration::from_secs(5);

/// The longest the gateway waits for any piece of an image it fetches.
const IMAGE_FETCH_IDLE: Duration = Duration::from_secs(30);

/// A started gateway, not yet running.
pub struct Gateway {
    settings: GatewaySettings,
    agent: Arc<Agent>,
    server: Server,
    end_devices: EndDevices,
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
            artifact_dir: Some(settings.state_dir.join("images")),
            artifact_max_mib: settings.image_store_mib,
            tls: settings.tls.clone(),
            ..ServerSettings::default()
        })
        .await?;
        let dm_url = server.dm_url().to_owned();
        agent
            .update_tree(|tree| write_gwmo(tree, &settings, &dms, &dm_url))
            .await?;
        let end_devices = server.end_devices();
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
            end_devices,
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
            end_devices,
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
        let upstream_client = gwmo_net::HttpClient::new(
            &settings
                .tls
                .client()
                .map_err(gwmo_device::DeviceError::from)?,
            IMAGE_FETCH_IDLE,
            1 << 20,
        );
        let images = ImageStore::new(
            end_devices.clone(),
            upstream_client,
            settings.image_store_mib,
            IMAGE_FETCH_IDLE,
        );
        let settings = Arc::new(settings);
        let driver = Driver::new(settings.clone(), agent.clone(), end_devices, images);
        // The images kept across a restart, listed again.
        driver.write_image_inventory().await;
        let _bootstrap_advertisement = match bootstrap {
            Some(listener) => {
                serve_bootstrap(&driver, listener, addr, until_stopped(stopped.clone()))?
            }
            None => None,
        };
        agent.session_with_all(Trigger::Client).await;
        driver.sync().await;
        let poll = Duration::from_secs(settings.poll_secs.max(1));
        let mut stopped_watch = stopped.clone();
        let mut changes = driver.end_devices().changes();
        let mut next_check = driver.check_again_at();
        let mut report_retry = driver.report_retry();
        let mut pause_ends = PauseEnds::default();
        let mut save_records = tokio::time::interval(SAVE_RECORDS_EVERY);
        loop {
            let lapse_due = next_check.borrow_and_update().map(|at| {
                let secs = u64::try_from(at.saturating_sub(unix_now())).unwrap_or(0);
                tokio::time::Instant::now() + Duration::from_secs(secs)
            });
            let reports_due = pause_ends.next(&report_retry.borrow_and_update());
            tokio::select! {
                // Only ever changes from running to stopped.
                _ = stopped_watch.changed() => break,
                _ = agent.sessions_done().notified() => {}
                _ = tokio::time::sleep(poll), if settings.poll_secs > 0 => {
                    agent.session_with_all(Trigger::Client).await;
                }
                // End-device sessions change the inventory's State and LastSession,
                // and answer probes.
                Ok(()) = changes.changed() => tokio::time::sleep(GATHER_CHANGES).await,
                _ = sleep_until_some(lapse_due) => {}
                // A sync (for a local bootstrap) moved the next lapse.
                Ok(()) = next_check.changed() => continue,
                // Reports the DM Server did not take go again.
                _ = sleep_until_some(reports_due) => pause_ends.woke_for(reports_due),
                Ok(()) = report_retry.changed() => continue,
                _ = save_records.tick() => {
                    save_records_logged(&agent).await;
                    continue;
                }
            }
            driver.sync().await;
        }
        save_records_logged(&agent).await;
        match serving.await {
            Ok(result) => result.map_err(GatewayError::from),
            Err(_) => Ok(()),
        }
    }
}

/// Writes what syncs recorded in the tree since the last save.
async fn save_records_logged(agent: &Agent) {
    if let Err(error) = agent.save_unsaved().await {
        warn!(%error, "could not save the Device Inventory's records");
    }
}

/// Starts the embedded Local DM Bootstrap Server: the credentials it issues become
/// inventory entries of origin local-bootstrap. Advertised with DNS-SD when the gateway
/// is; the advertisement lives as long as the returned value.
fn serve_bootstrap(
    driver: &Driver,
    (listener, tls): (TcpListener, Option<gwmo_net::TlsAcceptor>),
    gateway_addr: Option<SocketAddr>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<gwmo_discovery::Advertisement>, GatewayError> {
    let settings = driver.settings();
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
    let enrolling = driver.clone();
    let enroller: Enroller = Arc::new(move |enrollment| {
        let driver = enrolling.clone();
        Box::pin(async move { driver.add_local(enrollment).await })
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

/// The page cache of the gateway's end-device store: it holds the gateway's own
/// devices, not a fleet, and a gateway's memory is small.
const END_DEVICE_STORE_CACHE_MIB: u32 = 4;

/// Sleeps until `at`; never ends when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
