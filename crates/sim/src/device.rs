//! One simulated End Device's rollout: a real [`Agent`] with its own tree on disk and
//! its own package-0 listener, taken through figure x (server-assisted) or figure z
//! (local bootstrap, then validation by the DM Server) until its gateway manages it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gwmo_device::backoff::Backoff;
use gwmo_device::settings::{FactoryAccount, WireEncoding};
use gwmo_device::{Agent, DeviceSettings, SessionEnd};
use gwmo_session::{ClientOutcome, Trigger};
use gwmo_tree::Trust;
use tokio::sync::mpsc::UnboundedReceiver;

/// How a device is brought to its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approach {
    /// Seed 8.x.1: the DM Server bootstraps the device to the gateway it reports.
    ServerAssisted,
    /// Seed 8.x.2: the gateway's Local DM Bootstrap Server does, and the DM Server
    /// validates the gateway afterwards.
    Local,
    /// No gateway: the DM Server manages the device itself.
    Direct,
}

/// Everything one device needs to know.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub dev_id: String,
    pub approach: Approach,
    /// The gateway that is to manage the device (none: the DM Server does).
    pub gateway_id: Option<String>,
    pub bootstrap_url: Option<String>,
    pub userpin: String,
    pub encoding: WireEncoding,
    pub account: FactoryAccount,
    pub state_dir: PathBuf,
    /// The longest to wait for a session someone else starts (package 0).
    pub wait: Duration,
    pub tls: gwmo_net::TlsSettings,
    /// The device takes firmware updates checking the package as it streams in and
    /// keeping none of it (`[firmware] streaming`): thousands of simulated devices
    /// cannot each store an image.
    pub streams_firmware: bool,
}

impl DevicePlan {
    /// Whom the device holds its managed sessions with: its gateway, or the DM Server.
    pub fn manager(&self) -> &str {
        self.gateway_id
            .as_deref()
            .unwrap_or(&self.account.server_id)
    }
}

/// What became of one device.
pub struct DeviceOutcome {
    pub sessions: Vec<SessionEnd>,
    /// The step that failed, and why.
    pub error: Option<(&'static str, String)>,
}

/// Runs the device's rollout; never panics, whatever the servers answer.
pub async fn roll_out(plan: DevicePlan) -> DeviceOutcome {
    let (observer, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut observed = Observed {
        receiver,
        seen: Vec::new(),
    };
    let error = match open(&plan) {
        Ok(agent) => {
            agent.observe_sessions(observer);
            run(&plan, agent, &mut observed).await.err()
        }
        Err(error) => Some(error),
    };
    while let Ok(session) = observed.receiver.try_recv() {
        observed.seen.push(session);
    }
    DeviceOutcome {
        sessions: observed.seen,
        error,
    }
}

/// The device's sessions as they end: the ones waited for and the others.
struct Observed {
    receiver: UnboundedReceiver<SessionEnd>,
    seen: Vec<SessionEnd>,
}

type StepError = (&'static str, String);

/// The device's agent, from its state directory (its tree as its last session left it).
pub fn open(plan: &DevicePlan) -> Result<Arc<Agent>, StepError> {
    agent(plan).map(Arc::new)
}

/// [`open`], not yet shared.
pub fn agent(plan: &DevicePlan) -> Result<Agent, StepError> {
    let settings = DeviceSettings {
        dev_id: plan.dev_id.clone(),
        encoding: plan.encoding,
        state_dir: plan.state_dir.clone(),
        accounts: vec![plan.account.clone()],
        gateway: match plan.approach {
            Approach::ServerAssisted => plan.gateway_id.clone(),
            Approach::Local | Approach::Direct => None,
        },
        userpin: (plan.approach == Approach::Local).then(|| plan.userpin.clone()),
        timeout_secs: plan.wait.as_secs().max(1),
        firmware: gwmo_device::settings::FirmwareSettings {
            streaming: plan.streams_firmware,
            ..Default::default()
        },
        tls: plan.tls.clone(),
        ..DeviceSettings::default()
    };
    Agent::open(settings).map_err(|e| ("device-state", e.to_string()))
}

async fn run(
    plan: &DevicePlan,
    agent: Arc<Agent>,
    observed: &mut Observed,
) -> Result<(), StepError> {
    let any = "127.0.0.1:0"
        .parse()
        .map_err(|_| ("notify-listener", "loopback".to_owned()))?;
    let listener = gwmo_device::notify::bind(&agent, any)
        .await
        .map_err(|e| ("notify-listener", e.to_string()))?;
    agent
        .set_notify_url(&listener.url)
        .await
        .map_err(|e| ("device-state", e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listening = tokio::spawn(gwmo_device::notify::serve(agent.clone(), listener, async {
        let _ = stopped.await;
    }));
    let outcome = match plan.approach {
        Approach::ServerAssisted => server_assisted(plan, &agent, observed).await,
        Approach::Local => local(plan, &agent, observed).await,
        // Its first session tells the DM Server where to send package 0.
        Approach::Direct => session(&agent, &plan.account.server_id, plan.wait).await,
    };
    let _ = stop.send(());
    let _ = listening.await;
    outcome
}

/// Figure x: a session with the DM Server reports the gateway in sight and brings
/// back its Gateway Bootstrap; the gateway then wakes the device for a session.
async fn server_assisted(
    plan: &DevicePlan,
    agent: &Agent,
    observed: &mut Observed,
) -> Result<(), StepError> {
    session(agent, &plan.account.server_id, plan.wait).await?;
    let bootstrapped = agent
        .read_tree(|tree| {
            gwmo_tree::dm_accounts(tree)
                .iter()
                .any(|(_, account)| account.server_id == plan.manager())
        })
        .await;
    if !bootstrapped {
        return Err((
            "no-gateway-bootstrap",
            "the server's session brought no account for the gateway".into(),
        ));
    }
    observed
        .wait_for(plan.manager(), plan.wait, "gateway-session")
        .await
}

/// Figure z: a session with the DM Server (it learns where to send package 0), the
/// Gateway Bootstrap from the local bootstrap server, a session with the gateway that
/// confirms it, then the DM Server's session that validates the gateway.
async fn local(plan: &DevicePlan, agent: &Agent, observed: &mut Observed) -> Result<(), StepError> {
    session(agent, &plan.account.server_id, plan.wait).await?;
    let url = plan.bootstrap_url.as_deref().ok_or((
        "local-bootstrap",
        "the gateway runs no bootstrap server".to_owned(),
    ))?;
    let gateway = agent
        .local_bootstrap(url)
        .await
        .map_err(|e| ("local-bootstrap", e.to_string()))?;
    if gateway != plan.manager() {
        return Err((
            "local-bootstrap",
            format!("bootstrapped to {gateway}, not {}", plan.manager()),
        ));
    }
    session(agent, &gateway, plan.wait).await?;
    let deadline = Instant::now() + plan.wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        observed
            .wait_for(&plan.account.server_id, left, "validation")
            .await?;
        let trust = agent
            .read_tree(|tree| tree.provenance_of(&gateway).map(|p| p.trust))
            .await;
        if trust == Some(Trust::Validated) {
            return Ok(());
        }
    }
}

/// A session the device starts with `server_id`, tried again after a failure with a
/// growing, jittered pause (as a real device does: a server restarting or busy gets
/// its devices back) until it completes or `patience` has passed.
pub async fn session(agent: &Agent, server_id: &str, patience: Duration) -> Result<(), StepError> {
    let deadline = Instant::now() + patience;
    let mut backoff = Backoff::new(Duration::from_millis(250), MAX_RETRY_PAUSE);
    loop {
        let error = match agent
            .session(server_id, Trigger::Client, None, Vec::new())
            .await
        {
            Ok(report) if report.outcome == ClientOutcome::Completed => return Ok(()),
            Ok(report) => format!("{:?}", report.outcome),
            Err(error) => error.to_string(),
        };
        let wait = backoff.next_wait();
        if Instant::now() + wait >= deadline {
            return Err((session_kind(agent, server_id), error));
        }
        tokio::time::sleep(wait).await;
    }
}

/// The longest pause between two tries of a session in a simulation (a real device
/// goes up to minutes; a rehearsal waits seconds).
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(4);

fn session_kind(agent: &Agent, server_id: &str) -> &'static str {
    if agent
        .settings()
        .accounts
        .iter()
        .any(|a| a.server_id == server_id)
    {
        "server-session"
    } else {
        "gateway-session"
    }
}

impl Observed {
    /// Waits for a completed session with `server_id` that the other side started.
    /// One that failed (its server died in the middle, say) is not the end: the server
    /// wakes the device again for what went back to its queue.
    async fn wait_for(
        &mut self,
        server_id: &str,
        wait: Duration,
        kind: &'static str,
    ) -> Result<(), StepError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut failed = None;
        loop {
            let session = match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Ok(Some(session)) => session,
                Ok(None) => return Err((kind, "the device stopped".into())),
                Err(_) => {
                    let why = failed.unwrap_or_else(|| {
                        format!("no session from {server_id} within {} s", wait.as_secs())
                    });
                    return Err((kind, why));
                }
            };
            let awaited = session.server_id == server_id && session.trigger == Trigger::Server;
            let result = session.result.clone();
            self.seen.push(session);
            match result {
                Ok(report) if awaited && report.outcome == ClientOutcome::Completed => {
                    return Ok(());
                }
                Err(error) if awaited => failed = Some(error),
                _ => {}
            }
        }
    }
}
