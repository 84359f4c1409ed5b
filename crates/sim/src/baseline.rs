//! The floor a DM message is measured against: raw HTTP requests (`GET /healthz`) to
//! the same servers through the same client stack, once over kept-alive connections
//! and once on a new connection each (a new TLS handshake, resumed where the client
//! holds a ticket), with the server CPU each request costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_net::HttpClient;
use gwmo_net::Method;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::SimError;
use crate::fleet::Fleet;

/// What one kind of raw request cost.
#[derive(Debug, Clone, Serialize)]
pub struct RawRequests {
    pub count: usize,
    pub per_sec: f64,
    /// Server CPU per request, in microseconds (servers the simulator started).
    pub server_cpu_us: Option<f64>,
}

/// Both baselines, measured in the same run as the rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub keep_alive: RawRequests,
    pub new_connection: RawRequests,
}

/// Enough requests that the server's CPU time, counted in 10 ms ticks, is measured
/// to within a few percent.
const KEPT_ALIVE_AT_LEAST: usize = 20_000;
const NEW_CONNECTIONS_AT_LEAST: usize = 2_000;

/// Measures `total` kept-alive requests and a quarter as many on new connections
/// (each at least enough to measure), `concurrency` at a time, spread over the
/// instances.
pub async fn measure(
    fleet: &Arc<Fleet>,
    concurrency: usize,
    total: usize,
) -> Result<Baseline, SimError> {
    let kept_alive = total.max(KEPT_ALIVE_AT_LEAST);
    let keep_alive = requests(fleet, fleet.client().clone(), concurrency, kept_alive).await?;
    let client_tls = fleet
        .tls
        .client()
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let fresh = HttpClient::new_connection_each(&client_tls, Duration::from_secs(60), 1 << 16);
    let new_connections = (total / 4).max(NEW_CONNECTIONS_AT_LEAST);
    let new_connection = requests(fleet, fresh, concurrency, new_connections).await?;
    Ok(Baseline {
        keep_alive,
        new_connection,
    })
}

async fn requests(
    fleet: &Arc<Fleet>,
    client: HttpClient,
    concurrency: usize,
    total: usize,
) -> Result<RawRequests, SimError> {
    let workers = concurrency.clamp(1, total.max(1));
    let cpu_before = fleet.cpu_secs();
    let started = Instant::now();
    let mut running = JoinSet::new();
    for worker in 0..workers {
        let client = client.clone();
        let url = format!("{}/healthz", fleet.base_url(worker));
        let count = total / workers + usize::from(worker < total % workers);
        running.spawn(async move {
            for _ in 0..count {
                let answer = client
                    .request(Method::GET, &url, &[], Vec::new())
                    .await
                    .map_err(|e| SimError::Admin(format!("baseline: {e}")))?;
                if answer.status != 200 {
                    return Err(SimError::Admin(format!("baseline: HTTP {}", answer.status)));
                }
            }
            Ok(())
        });
    }
    while let Some(joined) = running.join_next().await {
        if let Ok(result) = joined {
            result?;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let server_cpu = fleet.cpu_secs().zip(cpu_before).map(|(a, b)| a - b);
    Ok(RawRequests {
        count: total,
        per_sec: total as f64 / secs,
        server_cpu_us: server_cpu.map(|cpu| cpu * 1e6 / total.max(1) as f64),
    })
}
