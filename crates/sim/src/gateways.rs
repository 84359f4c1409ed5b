//! The simulation's DM Gateways: real gateways in this process, each enrolled with and
//! registered at one server instance, with its end-device listener, its package-0
//! listener and (for the local approach) its Local DM Bootstrap Server on loopback
//! ports chosen at run time (started by `gwmo_wiring`, as the demo's are).

use std::collections::BTreeMap;
use std::path::Path;

use gwmo_gateway::settings::Approaches;
use gwmo_wiring::StartedGateway;

use crate::SimError;
use crate::fleet::Fleet;

/// The running simulated gateways, stopped together.
pub struct Gateways {
    pub list: Vec<StartedGateway>,
}

impl Gateways {
    pub async fn stop(self) {
        for gateway in self.list {
            gateway.running.stop().await;
        }
    }
}

/// What a gateway needs to know before it starts: its ID, its server instance, and
/// the USERPINs of the devices its bootstrap server will sign for.
pub struct GatewayPlan {
    pub gateway_id: String,
    pub instance: usize,
    pub approaches: Approaches,
    pub userpins: BTreeMap<String, String>,
}

/// Enrolls, starts and registers every planned gateway, each once its first session
/// with its server is done.
pub async fn start(
    fleet: &Fleet,
    plans: Vec<GatewayPlan>,
    scratch: &Path,
) -> Result<Gateways, SimError> {
    let mut list = Vec::with_capacity(plans.len());
    for plan in plans {
        let started = gwmo_wiring::start_gateway(
            &fleet.admin(plan.instance),
            gwmo_wiring::GatewayPlan {
                state_dir: scratch.join(&plan.gateway_id),
                gateway_id: plan.gateway_id,
                approaches: plan.approaches,
                userpins: plan.userpins,
                bootstrap_lapse_secs: gwmo_gateway::GatewaySettings::default().bootstrap_lapse_secs,
                admin_token: None,
                tls: fleet.tls.clone(),
            },
        )
        .await?;
        list.push(started);
    }
    Ok(Gateways { list })
}
