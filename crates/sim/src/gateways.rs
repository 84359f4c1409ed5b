//! The simulation's DM Gateways: real [`Gateway`]s in this process, each enrolled
//! with and registered at one server instance, with its end-device listener, its
//! package-0 listener and (for the local approach) its Local DM Bootstrap Server on
//! loopback ports chosen at run time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gwmo_device::settings::{AuthName, FactoryAccount};
use gwmo_gateway::settings::Approaches;
use gwmo_gateway::{Gateway, GatewaySettings};
use gwmo_net::Method;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SimError;
use crate::fleet::Fleet;

/// A running simulated gateway.
pub struct SimGateway {
    pub gateway_id: String,
    /// Its Local DM Bootstrap Server, when it runs one.
    pub bootstrap_url: Option<String>,
    task: JoinHandle<()>,
}

/// Stops every gateway when dropped or told to.
pub struct Gateways {
    pub list: Vec<SimGateway>,
    stop: watch::Sender<bool>,
}

impl Gateways {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for gateway in self.list {
            let _ = gateway.task.await;
        }
    }
}

/// What a gateway needs to know before it starts: its ID and the USERPINs of the
/// devices its bootstrap server will sign for.
pub struct GatewayPlan {
    pub gateway_id: String,
    pub instance: usize,
    pub approaches: Approaches,
    pub userpins: BTreeMap<String, String>,
}

/// Enrolls, starts and registers every planned gateway, and waits for each one's
/// first session with its server.
pub async fn start(
    fleet: &Fleet,
    plans: Vec<GatewayPlan>,
    scratch: &Path,
) -> Result<Gateways, SimError> {
    let (stop, stopped) = watch::channel(false);
    let mut list = Vec::new();
    for plan in plans {
        list.push(start_one(fleet, plan, scratch, stopped.clone()).await?);
    }
    let gateways = Gateways { list, stop };
    for (index, gateway) in gateways.list.iter().enumerate() {
        wait_first_session(fleet, index, &gateway.gateway_id).await?;
    }
    Ok(gateways)
}

async fn start_one(
    fleet: &Fleet,
    plan: GatewayPlan,
    scratch: &Path,
    mut stopped: watch::Receiver<bool>,
) -> Result<SimGateway, SimError> {
    let dev_id = format!("GW:{}", plan.gateway_id);
    let enrollment = fleet.enroll(plan.instance, &dev_id).await?;
    let any = "127.0.0.1:0"
        .parse()
        .map_err(|_| SimError::Plan("loopback"))?;
    let gateway = Gateway::start(GatewaySettings {
        gateway_id: plan.gateway_id.clone(),
        dev_id: dev_id.clone(),
        state_dir: scratch.join(&plan.gateway_id),
        listen: any,
        notify_listen: Some(any),
        approaches: plan.approaches,
        bootstrap_listen: any,
        userpins: plan.userpins,
        upstream: Some(factory_account(&enrollment)?),
        tls: fleet.tls.clone(),
        ..GatewaySettings::default()
    })
    .await
    .map_err(|e| SimError::Gateway(plan.gateway_id.clone(), e.to_string()))?;
    let addr = gateway
        .local_addr()
        .ok_or_else(|| SimError::Gateway(plan.gateway_id.clone(), "no address".into()))?;
    let bootstrap_url = gateway
        .bootstrap_addr()
        .map(|a| format!("{}://{a}/bootstrap", fleet.tls.scheme()));
    let registration = serde_json::json!({
        "gateway_id": plan.gateway_id,
        "dev_id": dev_id,
        "dm_url": format!("{}://{addr}/dm", fleet.tls.scheme()),
        "server_assisted": plan.approaches.server_assisted,
    });
    fleet
        .api(
            plan.instance,
            Method::POST,
            "/api/gateways",
            Some(&registration),
        )
        .await?;
    let gateway_id = plan.gateway_id.clone();
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = gateway.run(stop).await {
            tracing::warn!(gateway = %gateway_id, %error, "simulated gateway stopped");
        }
    });
    Ok(SimGateway {
        gateway_id: plan.gateway_id,
        bootstrap_url,
        task,
    })
}

/// The first session tells the server where to wake the gateway with package 0.
async fn wait_first_session(fleet: &Fleet, index: usize, gateway_id: &str) -> Result<(), SimError> {
    let path = format!("/api/devices/GW:{gateway_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let device = fleet.api(index, Method::GET, &path, None).await?;
        if device["notify_url"].is_string() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(SimError::Gateway(
        gateway_id.to_owned(),
        "no first session with its server within 60 s".into(),
    ))
}

/// The factory account an enrollment describes (MD5 both ways).
pub fn factory_account(enrollment: &Value) -> Result<FactoryAccount, SimError> {
    let text = |key: &str| {
        enrollment[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SimError::Admin(format!("enrollment without {key}: {enrollment}")))
    };
    Ok(FactoryAccount {
        server_id: text("server_id")?,
        server_url: text("server_url")?,
        auth: AuthName::Md5,
        client_name: Some(text("client_name")?),
        client_secret: text("client_secret")?,
        server_name: Some(text("server_name")?),
        server_secret: text("server_secret")?,
    })
}
