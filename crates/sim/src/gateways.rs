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

/// Enrolls, starts and registers every planned gateway, all at once; returns them in
/// plan order once each one's first session with its server is done.
pub async fn start(
    fleet: &Fleet,
    plans: Vec<GatewayPlan>,
    scratch: &Path,
) -> Result<Gateways, SimError> {
    let mut starting = tokio::task::JoinSet::new();
    for (index, plan) in plans.into_iter().enumerate() {
        let server = fleet.admin(plan.instance);
        let plan = gwmo_wiring::GatewayPlan {
            state_dir: scratch.join(&plan.gateway_id),
            gateway_id: plan.gateway_id,
            approaches: plan.approaches,
            userpins: plan.userpins,
            bootstrap_lapse_secs: gwmo_gateway::GatewaySettings::default().bootstrap_lapse_secs,
            // Its admin API answers the server's token (the firmware phase reads what
            // the gateway's image store served).
            admin_token: Some(server.token().to_owned()),
            tls: fleet.tls.clone(),
        };
        starting.spawn(async move { (index, gwmo_wiring::start_gateway(&server, plan).await) });
    }
    let mut started = Vec::with_capacity(starting.len());
    while let Some(joined) = starting.join_next().await {
        let Ok((index, gateway)) = joined else {
            continue;
        };
        started.push((index, gateway?));
    }
    started.sort_by_key(|(index, _)| *index);
    Ok(Gateways {
        list: started.into_iter().map(|(_, gateway)| gateway).collect(),
    })
}
