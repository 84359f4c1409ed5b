//! A gateway in this process: enrolled with its DM Server as a device, started,
//! registered with the server, and running until stopped once its first session told
//! the server where to wake it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gwmo_device::settings::FactoryAccount;
use gwmo_gateway::settings::Approaches;
use gwmo_gateway::{Gateway, GatewaySettings};
use gwmo_net::TlsSettings;
use gwmo_proto::auth::AuthType;
use serde_json::Value;

use crate::{AdminClient, Running, WiringError, poll};

/// The factory account an enrollment describes, with MD5 both ways.
pub fn enrollment_account(enrollment: &Value) -> Result<FactoryAccount, WiringError> {
    let text = |key: &'static str| {
        enrollment[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| WiringError::Enrollment(key, enrollment.clone()))
    };
    Ok(FactoryAccount {
        server_id: text("server_id")?,
        server_url: text("server_url")?,
        auth: AuthType::Md5,
        client_name: Some(text("client_name")?),
        client_secret: text("client_secret")?,
        server_name: Some(text("server_name")?),
        server_secret: text("server_secret")?,
    })
}

/// What a gateway is before it starts.
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    pub gateway_id: String,
    pub state_dir: PathBuf,
    pub approaches: Approaches,
    /// USERPIN of each device its Local DM Bootstrap Server signs for.
    pub userpins: BTreeMap<String, String>,
    /// The lapse interval its Gateway Bootstraps ask for.
    pub bootstrap_lapse_secs: u64,
    /// The token of its own admin API, if it has one.
    pub admin_token: Option<String>,
    pub tls: TlsSettings,
}

/// A gateway running in this process.
pub struct StartedGateway {
    pub gateway_id: String,
    /// Its admin API (with the token of its server's).
    pub admin: AdminClient,
    /// Its Local DM Bootstrap Server, when it runs one.
    pub bootstrap_url: Option<String>,
    pub running: Running,
}

/// How long a gateway may take for its first session with its server.
const FIRST_SESSION: Duration = Duration::from_secs(60);

/// Enrolls the gateway with the server behind `server` (as device `GW:<id>`), starts
/// it on loopback ports chosen now, registers it, and waits for its first session.
pub async fn start_gateway(
    server: &AdminClient,
    plan: GatewayPlan,
) -> Result<StartedGateway, WiringError> {
    let failed =
        |e: &dyn std::fmt::Display| WiringError::Gateway(plan.gateway_id.clone(), e.to_string());
    let dev_id = format!("GW:{}", plan.gateway_id);
    let enrollment = server.enroll(&dev_id, AuthType::Md5).await?;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let scheme = plan.tls.scheme();
    let gateway = Gateway::start(GatewaySettings {
        gateway_id: plan.gateway_id.clone(),
        dev_id: dev_id.clone(),
        state_dir: plan.state_dir,
        listen: any,
        notify_listen: Some(any),
        admin_token: plan.admin_token,
        upstream: Some(enrollment_account(&enrollment)?),
        approaches: plan.approaches,
        bootstrap_listen: any,
        bootstrap_lapse_secs: plan.bootstrap_lapse_secs,
        userpins: plan.userpins,
        tls: plan.tls,
        ..GatewaySettings::default()
    })
    .await
    .map_err(|e| failed(&e))?;
    let addr = gateway.local_addr().ok_or_else(|| failed(&"no address"))?;
    let bootstrap_url = gateway
        .bootstrap_addr()
        .map(|a| format!("{scheme}://{a}/bootstrap"));
    server
        .register_gateway(
            &plan.gateway_id,
            &dev_id,
            &format!("{scheme}://{addr}/dm"),
            plan.approaches.server_assisted,
        )
        .await?;
    let gateway_id = plan.gateway_id.clone();
    let running = Running::spawn(|stopped| async move {
        if let Err(error) = gateway.run(stopped).await {
            tracing::warn!(gateway = %gateway_id, %error, "gateway stopped");
        }
    });
    let path = format!("/api/devices/{dev_id}");
    poll("the gateway's first session", FIRST_SESSION, || async {
        let device = server.get(&path).await?;
        Ok::<_, WiringError>(device["notify_url"].is_string().then_some(()))
    })
    .await?;
    Ok(StartedGateway {
        gateway_id: plan.gateway_id,
        admin: server.at(format!("{scheme}://{addr}")),
        bootstrap_url,
        running,
    })
}
