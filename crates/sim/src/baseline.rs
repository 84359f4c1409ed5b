//! The floor a DM message is measured against: raw HTTP requests (`GET /healthz`) to
//! the same servers through the same client stack, once over kept-alive connections
//! and once on a new connection each (a new TLS handshake, resumed where the client
//! holds a ticket), with the server CPU each request costs. Beside them, DM messages
//! without the rollout's connections: lightweight devices (a `ClientSession` each, no
//! tree and no state directory, since their own cost is not what is measured) holding
//! sessions of their own over kept-alive connections, so that the server's cost of a
//! DM message itself stands next to the cost of an HTTP request.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_net::HttpClient;
use gwmo_net::Method;
use gwmo_proto::{CmdIds, Command, Encoding};
use gwmo_session::{
    AuthType, ClientConfig, ClientEvent, ClientSession, ClientStep, Credentials, Executor, Trigger,
};
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

/// The baselines, measured in the same run as the rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub keep_alive: RawRequests,
    pub new_connection: RawRequests,
    /// DM messages of lightweight devices' sessions over kept-alive connections (each
    /// a package 1 with the device's DevInfo, MD5 both ways, and its answer; nothing
    /// queued).
    pub dm_kept_alive: RawRequests,
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
    // As many as the kept-alive requests: the server's CPU is read in 10 ms ticks.
    let dm_kept_alive = dm_sessions(fleet, concurrency, kept_alive).await?;
    Ok(Baseline {
        keep_alive,
        new_connection,
        dm_kept_alive,
    })
}

/// `total` sessions of `concurrency` devices enrolled for the purpose, one after the
/// other on each device's kept-alive connection; counts DM messages.
async fn dm_sessions(
    fleet: &Arc<Fleet>,
    concurrency: usize,
    total: usize,
) -> Result<RawRequests, SimError> {
    let mut devices = Vec::new();
    for worker in 0..concurrency.clamp(1, total.max(1)) {
        let enrollment = fleet
            .enroll(worker, &format!("sim-baseline-{worker:05}"))
            .await?;
        devices.push((LightDevice::new(&enrollment)?, fleet.client().clone()));
    }
    measured(
        fleet,
        devices,
        total,
        |(mut device, client), count| async move {
            let mut messages = 0;
            for session in 0..count {
                messages += device.session(&client, session).await?;
            }
            Ok(messages)
        },
    )
    .await
}

/// A device that is only its account, the nonces it holds and the DevInfo its package
/// 1 reports (as a real device's does).
struct LightDevice {
    config: ClientConfig,
    devinfo: Vec<gwmo_proto::Item>,
}

impl LightDevice {
    fn new(enrollment: &serde_json::Value) -> Result<LightDevice, SimError> {
        let account = gwmo_wiring::enrollment_account(enrollment)?;
        let credentials = |name: Option<String>, secret: String| Credentials {
            auth: AuthType::Md5,
            name: name.unwrap_or_default(),
            secret,
        };
        let dev_id = enrollment["dev_id"]
            .as_str()
            .ok_or(SimError::Plan("an enrollment without its dev_id"))?;
        let devinfo = gwmo_tree::Tree::new_device(&gwmo_tree::DeviceInfo {
            dev_id: dev_id.to_owned(),
            ..gwmo_tree::DeviceInfo::default()
        })
        .devinfo_items();
        Ok(LightDevice {
            devinfo,
            config: ClientConfig {
                device_id: dev_id.to_owned(),
                server_id: account.server_id,
                server_uri: account.server_url,
                encoding: Encoding::Wbxml,
                max_msg_size: 16 * 1024,
                max_obj_size: 64 * 1024,
                client: credentials(account.client_name, account.client_secret),
                client_nonce: Vec::new(),
                server: credentials(account.server_name, account.server_secret),
                server_nonce: Vec::new(),
                max_auth_attempts: 3,
            },
        })
    }

    /// One session; returns how many messages it took (the first is challenged for
    /// a nonce, the others are one each).
    async fn session(&mut self, client: &HttpClient, number: usize) -> Result<usize, SimError> {
        let failed = |e: String| SimError::Admin(format!("DM baseline: {e}"));
        let mut session = ClientSession::new(
            self.config.clone(),
            format!("{:X}", number % 0xFFFF + 1),
            Trigger::Client,
            self.devinfo.clone(),
            Vec::new(),
        );
        let mut fresh_nonce = || rand::random::<[u8; 16]>().to_vec();
        let mut outgoing = session.start().map_err(|e| failed(e.to_string()))?;
        let mut messages = 0;
        loop {
            let answer = client
                .post(
                    &outgoing.url,
                    outgoing.content_type,
                    outgoing.hmac.as_deref(),
                    outgoing.body,
                )
                .await
                .map_err(|e| failed(e.to_string()))?;
            if answer.status != 200 {
                return Err(failed(format!("HTTP {}", answer.status)));
            }
            messages += 1;
            let step = session
                .receive(
                    &answer.body,
                    answer.hmac.as_deref(),
                    &mut NoCommands,
                    &mut fresh_nonce,
                )
                .map_err(|e| failed(e.to_string()))?;
            for event in session.take_events() {
                match event {
                    ClientEvent::ClientNonce(nonce) => self.config.client_nonce = nonce,
                    ClientEvent::ServerNonce(nonce) => self.config.server_nonce = nonce,
                    _ => {}
                }
            }
            match step {
                ClientStep::Send(next) => outgoing = next,
                ClientStep::Done(_) => return Ok(messages),
            }
        }
    }
}

/// The lightweight device's executor: nothing is queued for it, and were something
/// sent, it runs nothing.
struct NoCommands;

impl Executor for NoCommands {
    fn execute(&mut self, _: &str, _: u32, _: &Command, _: &mut CmdIds) -> Vec<Command> {
        Vec::new()
    }
}

async fn requests(
    fleet: &Arc<Fleet>,
    client: HttpClient,
    concurrency: usize,
    total: usize,
) -> Result<RawRequests, SimError> {
    let workers = (0..concurrency.clamp(1, total.max(1)))
        .map(|worker| {
            (
                client.clone(),
                format!("{}/healthz", fleet.base_url(worker)),
            )
        })
        .collect();
    measured(fleet, workers, total, |(client, url), count| async move {
        for _ in 0..count {
            let answer = client
                .request(Method::GET, &url, &[], Vec::new())
                .await
                .map_err(|e| SimError::Admin(format!("baseline: {e}")))?;
            if answer.status != 200 {
                return Err(SimError::Admin(format!("baseline: HTTP {}", answer.status)));
            }
        }
        Ok(count)
    })
    .await
}

/// Runs `work` for each of `workers` at once, each with its share of `total`, and
/// returns how many exchanges they counted, at what rate, and the server CPU each
/// cost.
async fn measured<W, F>(
    fleet: &Arc<Fleet>,
    workers: Vec<W>,
    total: usize,
    work: impl Fn(W, usize) -> F,
) -> Result<RawRequests, SimError>
where
    F: Future<Output = Result<usize, SimError>> + Send + 'static,
{
    let shares = workers.len().max(1);
    let cpu_before = fleet.cpu_secs();
    let started = Instant::now();
    let mut running = JoinSet::new();
    for (index, worker) in workers.into_iter().enumerate() {
        let share = total / shares + usize::from(index < total % shares);
        running.spawn(work(worker, share));
    }
    let mut exchanged = 0;
    while let Some(joined) = running.join_next().await {
        if let Ok(result) = joined {
            exchanged += result?;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let server_cpu = fleet.cpu_secs().zip(cpu_before).map(|(a, b)| a - b);
    Ok(RawRequests {
        count: exchanged,
        per_sec: exchanged as f64 / secs,
        server_cpu_us: server_cpu.map(|cpu| cpu * 1e6 / exchanged.max(1) as f64),
    })
}
