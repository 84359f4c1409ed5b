//! The floor a DM message is measured against: raw HTTP requests (`GET /healthz`) to
//! the same servers through the same client stack, once over kept-alive connections
//! and once on a new connection each (a new TLS handshake, resumed where the client
//! holds a ticket), with the server CPU each request costs. Beside them, DM messages
//! without the rollout's connections: lightweight devices (a `ClientSession` each, no
//! tree and no state directory, since their own cost is not what is measured) holding
//! sessions of their own over kept-alive connections, so that the server's cost of a
//! DM message itself stands next to the cost of an HTTP request: once with nothing
//! queued (a session is one message), and once with a Get queued for every session (a
//! session is two: the Get goes out, its Results come back and are stored).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_device::TreeExecutor;
use gwmo_net::{HttpClient, Method};
use gwmo_proto::Encoding;
use gwmo_session::{
    AuthType, ClientConfig, ClientEvent, ClientSession, ClientStep, Credentials, Trigger,
};
use gwmo_tree::Tree;
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
    /// DM messages of lightweight devices' management sessions over kept-alive
    /// connections: each session takes one queued Get, so it is two messages (package
    /// 1 answered with the Get; the Results and Status, answered with the close), and
    /// the server claims the command, sends it, and stores its outcome. The queueing
    /// (admin API calls between the rounds of sessions) is not counted.
    pub dm_managed: RawRequests,
    /// Raw kept-alive requests measured in the same rounds as `dm_managed`, each burst
    /// right before a round of sessions: the machine's speed drifts from minute to
    /// minute (a kept-alive request cost this server 12 to 21 µs from one run to the
    /// next), and so a ratio between two phases apart drifted with it.
    pub keep_alive_beside_gets: RawRequests,
}

/// Enough requests that the server's CPU time, counted in 10 ms ticks, is measured
/// to within a few percent.
const KEPT_ALIVE_AT_LEAST: usize = 20_000;
const NEW_CONNECTIONS_AT_LEAST: usize = 2_000;

/// The command every management session of the baseline takes: a leaf every device
/// lets every server read.
const MANAGED_GET: &str = r#"{"op":"Get","target":"./DevDetail/FwV"}"#;

/// Lightweight devices each worker manages in the management sessions, one session
/// each per round: enough that a round's server CPU spans many clock ticks.
const MANAGED_PER_WORKER: usize = 8;

/// Kept-alive requests measured before each round of management sessions, per DM
/// message of the round: about as much server CPU as the round's messages take.
const KEPT_ALIVE_PER_GET_MESSAGE: usize = 4;

/// Measures `total` kept-alive requests and a quarter as many on new connections
/// (each at least enough to measure), `concurrency` at a time, spread over the
/// instances.
pub async fn measure(
    fleet: &Arc<Fleet>,
    concurrency: usize,
    total: usize,
) -> Result<Baseline, SimError> {
    let kept_alive = total.max(KEPT_ALIVE_AT_LEAST);
    let keep_alive = request_tally(fleet, fleet.client(), concurrency, kept_alive)
        .await?
        .into();
    let client_tls = fleet
        .tls
        .client()
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let fresh = HttpClient::new_connection_each(&client_tls, Duration::from_secs(60), 1 << 16);
    let new_connections = (total / 4).max(NEW_CONNECTIONS_AT_LEAST);
    let new_connection = request_tally(fleet, &fresh, concurrency, new_connections)
        .await?
        .into();
    // As many as the kept-alive requests: the server's CPU is read in 10 ms ticks.
    let dm_kept_alive = dm_sessions(fleet, concurrency, kept_alive).await?;
    let (dm_managed, keep_alive_beside_gets) =
        managed_sessions(fleet, concurrency, kept_alive).await?;
    Ok(Baseline {
        keep_alive,
        new_connection,
        dm_kept_alive,
        dm_managed,
        keep_alive_beside_gets,
    })
}

/// `total` sessions of `concurrency` devices enrolled for the purpose, one after the
/// other on each device's kept-alive connection; counts DM messages.
async fn dm_sessions(
    fleet: &Arc<Fleet>,
    concurrency: usize,
    total: usize,
) -> Result<RawRequests, SimError> {
    let workers = concurrency.clamp(1, total.max(1));
    let mut devices = Vec::new();
    for worker in 0..workers {
        let device = light_device(fleet, worker, &format!("sim-baseline-{worker:05}")).await?;
        devices.push((device, share(total, workers, worker)));
    }
    let (tally, _) = measured(fleet, devices, |(mut device, sessions)| async move {
        let mut messages = 0;
        for session in 0..sessions {
            messages += device.session(session).await?;
        }
        Ok(((device, sessions), messages))
    })
    .await?;
    Ok(tally.into())
}

/// Management sessions of `concurrency` workers' [`MANAGED_PER_WORKER`] devices each,
/// in rounds until `total` messages were counted: a Get is queued for every device
/// (not counted), kept-alive requests are measured, then every device holds one
/// session (counted) that takes it. Returns the sessions' messages and the kept-alive
/// requests measured beside them.
async fn managed_sessions(
    fleet: &Arc<Fleet>,
    concurrency: usize,
    total: usize,
) -> Result<(RawRequests, RawRequests), SimError> {
    let mut workers = Vec::new();
    for worker in 0..concurrency.clamp(1, total.max(1)) {
        let mut devices = Vec::new();
        for index in 0..MANAGED_PER_WORKER {
            let dev_id = format!("sim-managed-{worker:05}-{index}");
            let mut device = light_device(fleet, worker, &dev_id).await?;
            // Its first session is challenged for a nonce: held before the count.
            device.session(0).await?;
            devices.push(device);
        }
        workers.push((worker, devices));
    }
    let mut tally = Tally::empty();
    let mut kept_alive = Tally::empty();
    let requests_per_round = 2 * KEPT_ALIVE_PER_GET_MESSAGE * workers.len() * MANAGED_PER_WORKER;
    let mut rounds = 0;
    while tally.exchanged < total {
        for (worker, devices) in &workers {
            for device in devices {
                fleet
                    .admin(*worker)
                    .queue_without_waking(&device.config.device_id, MANAGED_GET)
                    .await?;
            }
        }
        let burst = request_tally(fleet, fleet.client(), concurrency, requests_per_round);
        kept_alive = kept_alive.then(burst.await?);
        let session = rounds + 1;
        let (counted, back) = measured(fleet, workers, |(worker, mut devices)| async move {
            let mut messages = 0;
            for device in &mut devices {
                match device.session(session).await? {
                    2 => messages += 2,
                    other => {
                        return Err(SimError::Admin(format!(
                            "DM baseline: a management session took {other} messages, not 2"
                        )));
                    }
                }
            }
            Ok(((worker, devices), messages))
        })
        .await?;
        tally = tally.then(counted);
        workers = back;
        rounds += 1;
    }
    for (worker, devices) in &workers {
        for device in devices {
            check_gets_done(fleet, *worker, &device.config.device_id, rounds).await?;
        }
    }
    Ok((tally.into(), kept_alive.into()))
}

/// Checks that the server stored each of the `rounds` Gets queued for `dev_id` as done
/// with 200, and none other.
async fn check_gets_done(
    fleet: &Arc<Fleet>,
    worker: usize,
    dev_id: &str,
    rounds: usize,
) -> Result<(), SimError> {
    let path = format!("/api/devices/{dev_id}/commands?limit={}", rounds + 1);
    let listed = fleet.admin(worker).get(&path).await?;
    let commands = listed["commands"].as_array().map_or(&[][..], Vec::as_slice);
    let done = commands
        .iter()
        .filter(|c| c["state"] == "done" && c["status"] == 200)
        .count();
    let total = listed["total"].as_u64();
    if total == Some(rounds as u64) && done == rounds {
        return Ok(());
    }
    Err(SimError::Admin(format!(
        "DM baseline: {dev_id} should have {rounds} Gets, all done with 200; \
         it has {total:?}, {done} of them done with 200"
    )))
}

/// A lightweight device enrolled at instance `worker`, with the client it keeps.
async fn light_device(
    fleet: &Arc<Fleet>,
    worker: usize,
    dev_id: &str,
) -> Result<LightDevice, SimError> {
    let enrollment = fleet.enroll(worker, dev_id).await?;
    LightDevice::new(&enrollment, fleet.client().clone())
}

/// A device that is only its account, the nonces it holds, a new device's tree (whose
/// DevInfo its package 1 reports and which answers a Get, as a real device's does),
/// and the client it keeps.
struct LightDevice {
    config: ClientConfig,
    tree: Tree,
    devinfo: Vec<gwmo_proto::Item>,
    client: HttpClient,
}

impl LightDevice {
    fn new(enrollment: &serde_json::Value, client: HttpClient) -> Result<LightDevice, SimError> {
        let account = gwmo_wiring::enrollment_account(enrollment)?;
        let credentials = |name: Option<String>, secret: String| Credentials {
            auth: AuthType::Md5,
            name: name.unwrap_or_default(),
            secret,
        };
        let dev_id = enrollment["dev_id"]
            .as_str()
            .ok_or(SimError::Plan("an enrollment without its dev_id"))?;
        let tree = Tree::new_device(&gwmo_tree::DeviceInfo {
            dev_id: dev_id.to_owned(),
            ..gwmo_tree::DeviceInfo::default()
        });
        Ok(LightDevice {
            devinfo: tree.devinfo_items(),
            tree,
            client,
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

    /// One session; returns how many messages it took (a device's first is challenged
    /// for a nonce; otherwise one, and one more when a command was queued).
    async fn session(&mut self, number: usize) -> Result<usize, SimError> {
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
            let answer = self
                .client
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
                    &mut TreeExecutor(&mut self.tree),
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

/// `total` raw requests (`GET /healthz`) through `client`, `concurrency` at a time.
async fn request_tally(
    fleet: &Arc<Fleet>,
    client: &HttpClient,
    concurrency: usize,
    total: usize,
) -> Result<Tally, SimError> {
    let workers = concurrency.clamp(1, total.max(1));
    let requesters = (0..workers)
        .map(|worker| {
            (
                client.clone(),
                format!("{}/healthz", fleet.base_url(worker)),
                share(total, workers, worker),
            )
        })
        .collect();
    let (tally, _) = measured(fleet, requesters, |(client, url, count)| async move {
        for _ in 0..count {
            let answer = client
                .request(Method::GET, &url, &[], Vec::new())
                .await
                .map_err(|e| SimError::Admin(format!("baseline: {e}")))?;
            if answer.status != 200 {
                return Err(SimError::Admin(format!("baseline: HTTP {}", answer.status)));
            }
        }
        Ok(((client, url, count), count))
    })
    .await?;
    Ok(tally)
}

/// Worker `index`'s share of `total` exchanges among `workers`.
fn share(total: usize, workers: usize, index: usize) -> usize {
    total / workers + usize::from(index < total % workers)
}

/// What one or more measured phases counted: exchanges, their wall time, and the
/// servers' CPU (unknown for servers the simulator did not start).
struct Tally {
    exchanged: usize,
    secs: f64,
    server_cpu_secs: Option<f64>,
}

impl Tally {
    fn empty() -> Tally {
        Tally {
            exchanged: 0,
            secs: 0.0,
            server_cpu_secs: Some(0.0),
        }
    }

    /// This tally and a later phase's, together.
    fn then(self, later: Tally) -> Tally {
        Tally {
            exchanged: self.exchanged + later.exchanged,
            secs: self.secs + later.secs,
            server_cpu_secs: self
                .server_cpu_secs
                .zip(later.server_cpu_secs)
                .map(|(a, b)| a + b),
        }
    }
}

impl From<Tally> for RawRequests {
    fn from(tally: Tally) -> RawRequests {
        RawRequests {
            count: tally.exchanged,
            per_sec: tally.exchanged as f64 / tally.secs.max(f64::EPSILON),
            server_cpu_us: tally
                .server_cpu_secs
                .map(|cpu| cpu * 1e6 / tally.exchanged.max(1) as f64),
        }
    }
}

/// Runs `work` for each of `workers` at once; each gives its worker back with the
/// exchanges it counted. Returns the tally (exchanges, wall time, the servers' CPU)
/// and the workers.
async fn measured<W, F>(
    fleet: &Arc<Fleet>,
    workers: Vec<W>,
    work: impl Fn(W) -> F,
) -> Result<(Tally, Vec<W>), SimError>
where
    W: Send + 'static,
    F: Future<Output = Result<(W, usize), SimError>> + Send + 'static,
{
    let cpu_before = fleet.cpu_secs();
    let started = Instant::now();
    let mut running = JoinSet::new();
    for worker in workers {
        running.spawn(work(worker));
    }
    let mut exchanged = 0;
    let mut back = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (worker, count) =
            joined.map_err(|e| SimError::Admin(format!("baseline: a worker failed: {e}")))??;
        exchanged += count;
        back.push(worker);
    }
    let tally = Tally {
        exchanged,
        secs: started.elapsed().as_secs_f64(),
        server_cpu_secs: fleet.cpu_secs().zip(cpu_before).map(|(a, b)| a - b),
    };
    Ok((tally, back))
}
