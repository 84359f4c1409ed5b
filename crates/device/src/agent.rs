//! The End Device agent: holds the DM tree, opens management sessions with the
//! servers it has accounts for (at start, on a schedule, or when package 0 asks),
//! and persists the tree after every message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gwmo_net::{HttpClient, unix_now};
use gwmo_proto::{Alert, CmdIds, Command, Encoding};
use gwmo_session::{
    ClientConfig, ClientEvent, ClientOutcome, ClientSession, ClientStep, Credentials, Executor,
    Trigger,
};
use gwmo_tree::{AuthLevel, DmAccount, Elapsed, Tree};
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::revised::Revised;
use crate::settings::DeviceSettings;
use crate::state::StateDir;
use crate::{DeviceError, local, provision};

/// What one session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    pub server_id: String,
    pub session_id: String,
    pub outcome: ClientOutcome,
    /// Server messages received.
    pub messages: u32,
}

/// What an observer (a simulator, a test) is told after each session.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub server_id: String,
    pub trigger: Trigger,
    /// From the first message sent to the last answer read.
    pub elapsed: Duration,
    pub result: Result<SessionReport, String>,
}

/// One End Device.
pub struct Agent {
    settings: DeviceSettings,
    pub(crate) state: StateDir,
    tree: Mutex<Revised>,
    pub(crate) client: HttpClient,
    sessions_done: Notify,
    /// Each server's nonces before the last one the device handed out, newest last (a
    /// package 0 made with one still verifies: the message that carried a newer one
    /// may never have reached the server, or the server may have died before it
    /// stored it).
    previous_server_nonces: std::sync::Mutex<HashMap<String, VecDeque<Vec<u8>>>>,
    observer: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<SessionEnd>>,
    /// When lapses were last accounted for, on a clock that does not jump.
    lapse_clock: std::sync::Mutex<Instant>,
    /// Wakes the lapse timer when a new bootstrap may lapse sooner.
    lapse_rearm: Notify,
    /// What package 0 opened lately (`notify.rs`).
    pub(crate) notifications: std::sync::Mutex<crate::pacing::NotificationLog>,
    /// The tree holds changes not written yet ([`Agent::update_tree_unsaved`]).
    unsaved: AtomicBool,
    /// Firmware operations servers asked for, until their results are reported
    /// (`updater.rs`; kept in the state directory too).
    pub(crate) firmware_jobs: std::sync::Mutex<Vec<crate::firmware::Job>>,
    /// Wakes the firmware worker when a job is accepted.
    pub(crate) firmware_wake: Notify,
}

impl Agent {
    /// Loads the device's tree from its state directory, or builds it on first start
    /// from the configuration (DevInfo, DevDetail and the factory accounts).
    pub fn open(settings: DeviceSettings) -> Result<Agent, DeviceError> {
        if settings.firmware.streaming && settings.firmware.install_command.is_some() {
            return Err(DeviceError::Settings(
                "[firmware] streaming keeps no package for install_command to install: set one or the other",
            ));
        }
        let dir = settings.state_path();
        let state = StateDir::open(&dir)?;
        let mut tree = match state.load_tree()? {
            Some(mut tree) => {
                let stored = tree.value("./DevInfo/DevId").unwrap_or_default().to_owned();
                if stored != settings.dev_id {
                    return Err(DeviceError::StateOfAnother {
                        dir,
                        stored,
                        configured: settings.dev_id.clone(),
                    });
                }
                if provision::adopt_factory_accounts(&mut tree, &settings) {
                    state.save_tree(&tree)?;
                    info!("factory accounts of a tree from an earlier version recorded");
                }
                let applied_before = state.load_applied_accounts()?;
                let changed = provision::apply_configured_accounts(
                    &mut tree,
                    &settings,
                    applied_before.as_deref(),
                )?;
                if !changed.is_empty() {
                    state.save_tree(&tree)?;
                    for change in changed {
                        warn!(account = %change, "the configuration differs from the stored state: the configuration's values apply");
                    }
                }
                if applied_before.as_deref() != Some(&settings.accounts[..]) {
                    state.save_applied_accounts(&settings.accounts)?;
                }
                tree
            }
            None => {
                let tree = provision::factory_tree(&settings)?;
                state.save_tree(&tree)?;
                state.save_applied_accounts(&settings.accounts)?;
                info!(dev_id = %settings.dev_id, accounts = settings.accounts.len(), "new device: factory tree written");
                tree
            }
        };
        // A device that was down past a bootstrap's deadline lapses it before anything
        // else; the time it was off counts from the wall clock.
        lapse(&mut tree, &state, Elapsed::SinceCheckpoint)?;
        if crate::firmware::ensure_object(&mut tree, &settings)? {
            state.save_tree(&tree)?;
        }
        let firmware_jobs = state
            .load_record(crate::firmware::JOB_FILE)?
            .unwrap_or_default();
        Ok(Agent {
            client: HttpClient::new(
                &settings.tls.client()?,
                Duration::from_secs(settings.timeout_secs.max(1)),
                settings.max_msg_size.max(1024) * 2,
            ),
            settings,
            state,
            tree: Mutex::new(Revised::new(tree)),
            sessions_done: Notify::new(),
            previous_server_nonces: std::sync::Mutex::new(HashMap::new()),
            observer: std::sync::OnceLock::new(),
            lapse_clock: std::sync::Mutex::new(Instant::now()),
            lapse_rearm: Notify::new(),
            notifications: std::sync::Mutex::default(),
            unsaved: AtomicBool::new(false),
            firmware_jobs: std::sync::Mutex::new(firmware_jobs),
            firmware_wake: Notify::new(),
        })
    }

    /// The agent, calling its peers through `client` instead of the one it made: a
    /// device process that opens its agent again keeps its connections and the TLS
    /// session tickets its peers gave it (a client holds both).
    pub fn with_client(mut self, client: HttpClient) -> Agent {
        self.client = client;
        self
    }

    /// What the agent calls its peers through.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn settings(&self) -> &DeviceSettings {
        &self.settings
    }

    /// A copy of the tree as it is now.
    pub async fn tree(&self) -> Tree {
        self.tree.lock().await.clone()
    }

    /// What `read` finds in the tree as it is now, without copying the tree (a
    /// gateway's holds its whole Device Inventory).
    pub async fn read_tree<R>(&self, read: impl FnOnce(&Tree) -> R) -> R {
        read(&*self.tree.lock().await)
    }

    /// What `read` finds in the tree, with the tree's revision; none if the revision
    /// is still `known`: nothing changed the tree since the read that gave it.
    pub async fn read_tree_since<R>(
        &self,
        known: Option<u64>,
        read: impl FnOnce(&Tree) -> R,
    ) -> Option<(R, u64)> {
        let tree = self.tree.lock().await;
        let revision = tree.revision();
        (known != Some(revision)).then(|| (read(&tree), revision))
    }

    /// The nonces the device handed `server_id` before its current one, newest last.
    pub fn previous_server_nonces(&self, server_id: &str) -> Vec<Vec<u8>> {
        self.previous_server_nonces
            .lock()
            .ok()
            .and_then(|previous| previous.get(server_id).map(|n| n.iter().cloned().collect()))
            .unwrap_or_default()
    }

    fn forget_server_nonces(&self, server_id: &str) {
        if let Ok(mut previous) = self.previous_server_nonces.lock() {
            previous.remove(server_id);
        }
    }

    /// Keeps `nonce` among the server's previous ones (a few: they still verify a
    /// package 0, whose replays the notification log refuses).
    fn remember_server_nonce(&self, server_id: &str, nonce: Vec<u8>) {
        const KEPT: usize = 4;
        if let Ok(mut previous) = self.previous_server_nonces.lock() {
            let kept = previous.entry(server_id.to_owned()).or_default();
            if kept.back() != Some(&nonce) {
                kept.push_back(nonce);
            }
            while kept.len() > KEPT {
                kept.pop_front();
            }
        }
    }

    /// Changes the tree as the device itself (not a server), and stores it.
    pub async fn update_tree(
        &self,
        change: impl FnOnce(&mut Tree) -> Result<(), gwmo_tree::TreeError>,
    ) -> Result<(), DeviceError> {
        let mut tree = self.tree.lock().await;
        change(&mut tree)?;
        self.save(&tree)
    }

    /// Changes the tree as the device itself, and leaves writing it to the next save:
    /// for values derived from elsewhere, which a crash may lose because they are
    /// derived again (a gateway's record of its end devices' last sessions). Saves
    /// the whole tree on every such change cost more than the rest of a gateway's work.
    ///
    /// Returns the tree's revision before the change and after it (see
    /// [`Agent::read_tree_since`]).
    pub async fn update_tree_unsaved(
        &self,
        change: impl FnOnce(&mut Tree) -> Result<(), gwmo_tree::TreeError>,
    ) -> Result<(u64, u64), DeviceError> {
        let mut tree = self.tree.lock().await;
        let before = tree.revision();
        change(&mut tree)?;
        self.unsaved.store(true, Ordering::Relaxed);
        Ok((before, tree.revision()))
    }

    /// Writes the changes [`Agent::update_tree_unsaved`] left, if any.
    pub async fn save_unsaved(&self) -> Result<(), DeviceError> {
        let tree = self.tree.lock().await;
        match self.unsaved.load(Ordering::Relaxed) {
            true => self.save(&tree),
            false => Ok(()),
        }
    }

    /// Writes the whole tree (called with its lock held: every change is made under
    /// it, so what is written is everything changed so far).
    fn save(&self, tree: &Tree) -> Result<(), DeviceError> {
        let saved = self.state.save_tree(tree);
        self.unsaved.store(saved.is_err(), Ordering::Relaxed);
        saved
    }

    /// Notified each time a session ends, whatever its outcome (so that what a server
    /// changed can be acted on).
    pub fn sessions_done(&self) -> &Notify {
        &self.sessions_done
    }

    /// Sends a [`SessionEnd`] to `observer` after every session from now on (once set,
    /// the observer stays).
    pub fn observe_sessions(&self, observer: tokio::sync::mpsc::UnboundedSender<SessionEnd>) {
        let _ = self.observer.set(observer);
    }

    /// Records the URL where this device takes package 0, reported in DevInfo.
    pub async fn set_notify_url(&self, url: &str) -> Result<(), DeviceError> {
        let mut tree = self.tree.lock().await;
        provision::set_notify_url(&mut tree, url)?;
        self.save(&tree)
    }

    /// The ServerIDs of the accounts in ./DMAcc.
    pub async fn server_ids(&self) -> Vec<String> {
        gwmo_tree::dm_accounts(&*self.tree.lock().await)
            .into_iter()
            .map(|(_, account)| account.server_id)
            .collect()
    }

    /// Holds one management session with `server_id`. `session_id` is the one a
    /// package 0 named; otherwise the device picks one.
    pub async fn session(
        &self,
        server_id: &str,
        trigger: Trigger,
        session_id: Option<String>,
        alerts: Vec<Alert>,
    ) -> Result<SessionReport, DeviceError> {
        let seen = self.seen_gateway(server_id).await;
        let started = std::time::Instant::now();
        let report = self
            .hold_session(server_id, trigger, session_id, alerts, seen.as_deref())
            .await;
        if let Some(observer) = self.observer.get() {
            let _ = observer.send(SessionEnd {
                server_id: server_id.to_owned(),
                trigger,
                elapsed: started.elapsed(),
                result: report
                    .as_ref()
                    .map(Clone::clone)
                    .map_err(ToString::to_string),
            });
        }
        self.sessions_done.notify_one();
        report
    }

    /// The gateway the device sees: looked up with DNS-SD when configured (before a
    /// session with a DM Server; the current gateway is kept while it is in sight),
    /// else the configured one.
    async fn seen_gateway(&self, server_id: &str) -> Option<String> {
        let configured = self.settings.gateway.clone();
        let Some(interface) = self.settings.discover_interface.clone() else {
            return configured;
        };
        let current = {
            let tree = self.tree.lock().await;
            if provision::is_gateway(&tree, server_id) {
                return None;
            }
            provision::current_gateway(&tree)
        };
        let wait = Duration::from_millis(self.settings.discover_wait_ms);
        let browse = tokio::task::spawn_blocking(move || {
            gwmo_discovery::browse(gwmo_discovery::GATEWAY_SERVICE, &interface, wait)
        });
        match browse.await {
            Ok(Ok(found)) => {
                let ids: Vec<String> = found.into_iter().map(|f| f.server_id).collect();
                info!(gateways = ?ids, "DNS-SD look-up");
                match current {
                    Some(current) if ids.contains(&current) => Some(current),
                    _ => ids.into_iter().next().or(configured),
                }
            }
            Ok(Err(error)) => {
                warn!(%error, "DNS-SD look-up failed");
                configured
            }
            Err(_) => configured,
        }
    }

    async fn hold_session(
        &self,
        server_id: &str,
        trigger: Trigger,
        session_id: Option<String>,
        alerts: Vec<Alert>,
        seen_gateway: Option<&str>,
    ) -> Result<SessionReport, DeviceError> {
        let mut tree = self.tree.lock().await;
        self.lapse_due(&mut tree)?;
        let (account_name, account) = gwmo_tree::account_for(&tree, server_id)
            .ok_or_else(|| DeviceError::NoAccount(server_id.to_owned()))?;
        let config = client_config(&self.settings, &account)?;
        let mut server_nonce = config.server_nonce.clone();
        let mut alerts = alerts;
        alerts.extend(provision::location_update(&tree, seen_gateway, server_id));
        let session_id =
            session_id.unwrap_or_else(|| format!("{:X}", rand::random::<u16>().max(1)));
        let mut session = ClientSession::new(
            config,
            session_id.clone(),
            trigger,
            tree.devinfo_items(),
            alerts,
        );
        session.accept_previous_server_nonces(self.previous_server_nonces(server_id));
        let mut fresh_nonce = || rand::random::<[u8; 16]>().to_vec();
        let mut outgoing = session.start()?;
        let mut messages = 0;
        let mut server_authenticated = false;
        let outcome = loop {
            let answer = self
                .client
                .post(
                    &outgoing.url,
                    outgoing.content_type,
                    outgoing.hmac.as_deref(),
                    outgoing.body,
                )
                .await?;
            if answer.status != 200 {
                return Err(DeviceError::Refused(
                    answer.status,
                    String::from_utf8_lossy(&answer.body).trim().to_owned(),
                ));
            }
            messages += 1;
            let step = session.receive(
                &answer.body,
                answer.hmac.as_deref(),
                &mut TreeExecutor(&mut tree),
                &mut fresh_nonce,
            );
            // Whatever ran, and every nonce learnt, is on disk before the next message.
            let events = session.take_events();
            server_authenticated |= events.contains(&ClientEvent::ServerAuthenticated);
            for event in &events {
                match event {
                    // The server showed it is in step: the nonces before are used up.
                    ClientEvent::ServerAuthenticated => self.forget_server_nonces(server_id),
                    ClientEvent::ServerNonce(next) => {
                        let before = std::mem::replace(&mut server_nonce, next.clone());
                        self.remember_server_nonce(server_id, before);
                    }
                    _ => {}
                }
            }
            apply_events(&mut tree, &account_name, &events)?;
            for request in tree.take_exec_requests() {
                match crate::firmware::Job::of_exec(&tree, &request) {
                    Some(job) => self.accept_firmware_job(&mut tree, job)?,
                    None => provision::run_exec(&mut tree, &request),
                }
            }
            let step = step?;
            // Answering an authenticated gateway's package establishes the management
            // session (docs/DECISIONS.md §3): the bootstrap is confirmed before the answer
            // leaves, so a gateway that has the answer knows the device keeps it.
            if server_authenticated && matches!(step, ClientStep::Send(_)) {
                self.confirm_gateway(&mut tree, server_id)?;
            }
            self.save(&tree)?;
            match step {
                ClientStep::Send(next) => outgoing = next,
                ClientStep::Done(outcome) => break outcome,
            }
        };
        // A completed, mutually authenticated session confirms it too.
        if outcome == ClientOutcome::Completed && self.confirm_gateway(&mut tree, server_id)? {
            self.save(&tree)?;
        }
        info!(server = server_id, session = %session_id, ?outcome, messages, "session finished");
        Ok(SessionReport {
            server_id: server_id.to_owned(),
            session_id,
            outcome,
            messages,
        })
    }

    /// Confirms the local bootstrap of gateway `server_id`, if it has one pending;
    /// returns whether it did (the caller stores the tree).
    fn confirm_gateway(&self, tree: &mut Tree, server_id: &str) -> Result<bool, DeviceError> {
        // Lapse accounting first: a bootstrap already past its budget is not confirmed.
        self.lapse_due(tree)?;
        let confirmed = tree.confirm_gateway(server_id)?;
        if confirmed {
            info!(
                gateway = server_id,
                "gateway bootstrap confirmed: it no longer lapses"
            );
        }
        Ok(confirmed)
    }

    /// Where to ask for a Gateway Bootstrap: the configured URL, or the first Local DM
    /// Bootstrap Server DNS-SD finds (`_omadm-bs._tcp`) on the discovery interface.
    async fn bootstrap_url(&self) -> Option<String> {
        if let Some(url) = &self.settings.bootstrap_url {
            return Some(url.clone());
        }
        let interface = self.settings.discover_interface.clone()?;
        let wait = Duration::from_millis(self.settings.discover_wait_ms);
        let found = tokio::task::spawn_blocking(move || {
            gwmo_discovery::browse(gwmo_discovery::BOOTSTRAP_SERVICE, &interface, wait)
        })
        .await
        .ok()?
        .map_err(|error| warn!(%error, "DNS-SD look-up for a bootstrap server failed"))
        .ok()?;
        let server = found.into_iter().next()?;
        let address = server
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(server.addresses.first())?;
        let url = format!(
            "{}://{}/bootstrap",
            self.settings.tls.scheme(),
            std::net::SocketAddr::new(*address, server.port)
        );
        info!(%url, server = %server.server_id, "found a local bootstrap server");
        Some(url)
    }

    /// Removes the local gateway bootstraps that are due (and what came via them);
    /// returns the ServerIDs removed.
    pub async fn enforce_lapse(&self) -> Result<Vec<String>, DeviceError> {
        let mut tree = self.tree.lock().await;
        self.lapse_due(&mut tree)
    }

    /// The timer's check: lapses what is due and, while a lapse is pending, stores how
    /// much of its interval is left, so that a crash loses at most one timer period of
    /// measured time.
    async fn account_lapses(&self) -> Result<(), DeviceError> {
        let mut tree = self.tree.lock().await;
        let removed = self.lapse_due(&mut tree)?;
        if removed.is_empty() && tree.next_lapse(unix_now()).is_some() {
            self.save(&tree)?;
        }
        Ok(())
    }

    /// Counts the time measured since the last call off the pending lapses and
    /// removes what is due.
    fn lapse_due(&self, tree: &mut Tree) -> Result<Vec<String>, DeviceError> {
        let elapsed = match self.lapse_clock.lock() {
            Ok(mut last) => {
                let now = Instant::now();
                let elapsed = now.duration_since(*last);
                *last = now;
                elapsed
            }
            Err(_) => Duration::ZERO,
        };
        lapse(tree, &self.state, Elapsed::Measured(elapsed))
    }

    /// Removes each lapsing bootstrap at its deadline, by a timer: a device with no
    /// other activity must not keep an unconfirmed gateway past its interval. Never
    /// returns ([`Agent::run`] runs it beside the sessions).
    pub async fn run_lapse_timer(&self) {
        // Longest sleep: a wall clock set forward is noticed within it.
        const RECHECK: Duration = Duration::from_secs(30);
        loop {
            let next = self.tree.lock().await.next_lapse(unix_now());
            match next {
                Some(due) => tokio::select! {
                    _ = tokio::time::sleep(due.min(RECHECK)) => {}
                    _ = self.lapse_rearm.notified() => {}
                },
                None => self.lapse_rearm.notified().await,
            }
            if let Err(error) = self.account_lapses().await {
                warn!(%error, "lapse check failed");
            }
        }
    }

    /// Fetches a Gateway Bootstrap from a local bootstrap server (answering its
    /// challenge with the USERPIN, when it asks), checks it against the device's policy
    /// and applies it. Returns the gateway's ServerID.
    pub async fn local_bootstrap(&self, url: &str) -> Result<String, DeviceError> {
        let policy = self.settings.bootstrap_policy();
        let request = gwmo_tree::BootstrapRequest {
            dev_id: self.settings.dev_id.clone(),
            max_lapse_secs: policy.max_lapse_secs,
            ..Default::default()
        };
        let mut answer = self.post_bootstrap_request(url, &request).await?;
        if answer.status == 401 {
            let challenge = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|body| body["challenge"].as_str().map(str::to_owned))
                .ok_or_else(|| DeviceError::Bootstrap("a 401 without a challenge".into()))?;
            let pin = policy.userpin.as_deref().ok_or_else(|| {
                DeviceError::Bootstrap(
                    "the bootstrap server wants a USERPIN proof and this device has no USERPIN"
                        .into(),
                )
            })?;
            answer = self
                .post_bootstrap_request(url, &request.answer(&challenge, pin))
                .await?;
        }
        if answer.status != 200 {
            return Err(DeviceError::Refused(
                answer.status,
                String::from_utf8_lossy(&answer.body).trim().to_owned(),
            ));
        }
        let content_type = answer.content_type.unwrap_or_default();
        local::check(&answer.body, &content_type, &policy)?;
        let text = std::str::from_utf8(&answer.body)
            .map_err(|_| DeviceError::Bootstrap("the document is not UTF-8".into()))?;
        let bootstrap =
            gwmo_tree::read_bootstrap(text).map_err(|e| DeviceError::Bootstrap(e.to_string()))?;
        let mut tree = self.tree.lock().await;
        // Lapse accounting up to now first, so the new budget starts from here.
        self.lapse_due(&mut tree)?;
        let mut changed = tree.clone();
        let gateway = local::apply(&mut changed, &bootstrap, unix_now(), &policy)?;
        self.save(&changed)?;
        **tree = changed;
        self.lapse_rearm.notify_one();
        info!(%gateway, "local gateway bootstrap applied (restricted until validated)");
        Ok(gateway)
    }

    /// Posts a bootstrap request; a server that is busy (429: many devices asking at
    /// once, after a power cut say) is asked again after a growing, jittered pause.
    async fn post_bootstrap_request(
        &self,
        url: &str,
        request: &gwmo_tree::BootstrapRequest,
    ) -> Result<gwmo_net::HttpResponse, DeviceError> {
        const ATTEMPTS: u32 = 6;
        let body = serde_json::to_vec(request)
            .map_err(|e| DeviceError::Bootstrap(format!("cannot write the request: {e}")))?;
        let mut pause = Duration::from_millis(250);
        for _ in 1..ATTEMPTS {
            let answer = self
                .client
                .post(url, "application/json", None, body.clone())
                .await?;
            if answer.status != 429 {
                return Ok(answer);
            }
            let jitter = Duration::from_millis(rand::random::<u64>() % 250);
            tokio::time::sleep(pause + jitter).await;
            pause *= 2;
        }
        Ok(self
            .client
            .post(url, "application/json", None, body)
            .await?)
    }

    /// Opens a session with every account; failures are logged, not fatal.
    pub async fn session_with_all(
        &self,
        trigger: Trigger,
    ) -> Vec<Result<SessionReport, DeviceError>> {
        let servers = self.server_ids().await;
        self.sessions_with(servers, trigger)
            .await
            .into_iter()
            .map(|(_, report)| report)
            .collect()
    }

    /// A session with each of `servers`, one after the other; failures are logged.
    async fn sessions_with(
        &self,
        servers: Vec<String>,
        trigger: Trigger,
    ) -> Vec<(String, Result<SessionReport, DeviceError>)> {
        let mut reports = Vec::new();
        for server_id in servers {
            let report = self.session(&server_id, trigger, None, Vec::new()).await;
            if let Err(error) = &report {
                warn!(server = %server_id, %error, "session failed");
            }
            reports.push((server_id, report));
        }
        reports
    }

    /// Holds a session with each of `servers`, and tries the failed ones again after a
    /// growing, jittered pause (1 s, doubling up to 5 min), as real devices do, until
    /// each has held one or its account is gone: a server that was down, restarting or
    /// busy gets its device back without anyone waking it.
    async fn sessions_until_held(&self, servers: Vec<String>) {
        const LONGEST_PAUSE: Duration = Duration::from_secs(300);
        let failed_of = |reports: Vec<(String, Result<SessionReport, DeviceError>)>| {
            reports
                .into_iter()
                .filter(|(_, report)| report.is_err())
                .map(|(server, _)| server)
                .collect::<Vec<_>>()
        };
        let mut failed = failed_of(self.sessions_with(servers, Trigger::Client).await);
        let mut backoff = Backoff::new(Duration::from_secs(1), LONGEST_PAUSE);
        while !failed.is_empty() {
            tokio::time::sleep(backoff.next_wait()).await;
            let present = self.server_ids().await;
            failed.retain(|server| present.contains(server));
            info!(servers = ?failed, "trying failed sessions again");
            failed = failed_of(self.sessions_with(failed, Trigger::Client).await);
        }
    }

    /// Runs until `shutdown`: a session with every account at start (failed ones tried
    /// again with backoff), then on schedule (when `poll_secs` > 0); lapses at their
    /// deadlines all the while.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = shutdown => {}
            _ = self.run_lapse_timer() => {}
            _ = self.session_rounds() => {}
            _ = self.run_firmware_jobs() => {}
        }
    }

    async fn session_rounds(&self) {
        let mut tick = (self.settings.poll_secs > 0)
            .then(|| tokio::time::interval(Duration::from_secs(self.settings.poll_secs)));
        loop {
            // Each round looks again for what it did not find (a bootstrap server, a
            // gateway in sight): a device must not give up after one look.
            self.bootstrap_if_needed().await;
            let servers = self.server_ids().await;
            self.sessions_until_held(servers).await;
            match tick.as_mut() {
                Some(tick) => {
                    tick.tick().await;
                }
                None => std::future::pending().await,
            }
        }
    }

    /// Figure z: a device without a gateway asks a local bootstrap server, if it knows or
    /// finds one, before its sessions.
    async fn bootstrap_if_needed(&self) {
        if provision::current_gateway(&*self.tree.lock().await).is_some() {
            return;
        }
        let Some(url) = self.bootstrap_url().await else {
            return;
        };
        match self.local_bootstrap(&url).await {
            Ok(gateway) => info!(%gateway, "bootstrapped by the local bootstrap server"),
            Err(error) => warn!(%error, "local bootstrap failed"),
        }
    }
}

/// Lapses what is due and stores the tree if anything went.
fn lapse(tree: &mut Tree, state: &StateDir, elapsed: Elapsed) -> Result<Vec<String>, DeviceError> {
    let removed = tree.lapse(unix_now(), elapsed);
    if !removed.is_empty() {
        state.save_tree(tree)?;
        warn!(accounts = ?removed, "gateway bootstrap lapsed: its accounts are removed");
    }
    Ok(removed)
}

/// Runs a server's commands against a device's tree: the `Executor` a session takes.
pub struct TreeExecutor<'a>(pub &'a mut Tree);

impl Executor for TreeExecutor<'_> {
    fn execute(
        &mut self,
        server_id: &str,
        msg_ref: u32,
        command: &Command,
        ids: &mut CmdIds,
    ) -> Vec<Command> {
        self.0.execute(server_id, msg_ref, command, ids)
    }
}

/// The session settings for an account of the tree.
fn client_config(
    settings: &DeviceSettings,
    account: &DmAccount,
) -> Result<ClientConfig, DeviceError> {
    let missing = |what: &str| DeviceError::BadAccount(account.server_id.clone(), what.to_owned());
    let client = account
        .credentials(AuthLevel::Client)
        .ok_or_else(|| missing("client credentials (CLCRED)"))?;
    let server = account
        .credentials(AuthLevel::Server)
        .ok_or_else(|| missing("server credentials (SRVCRED)"))?;
    let server_uri = account
        .address()
        .ok_or_else(|| missing("address (AppAddr)"))?;
    Ok(ClientConfig {
        device_id: settings.dev_id.clone(),
        server_id: account.server_id.clone(),
        server_uri: server_uri.to_owned(),
        encoding: Encoding::from(settings.encoding),
        max_msg_size: settings.max_msg_size,
        max_obj_size: settings.max_obj_size,
        client: Credentials {
            auth: client.auth_type,
            name: client.name.clone(),
            secret: client.secret.clone(),
        },
        client_nonce: client.nonce.clone(),
        server: Credentials {
            auth: server.auth_type,
            name: server.name.clone(),
            secret: server.secret.clone(),
        },
        server_nonce: server.nonce.clone(),
        max_auth_attempts: 3,
    })
}

/// Stores the nonces the session exchanged in the account's AppAuth entries.
fn apply_events(
    tree: &mut Tree,
    account_name: &str,
    events: &[ClientEvent],
) -> Result<(), DeviceError> {
    for event in events {
        match event {
            ClientEvent::ClientNonce(nonce) => {
                gwmo_tree::set_account_nonce(tree, account_name, AuthLevel::Client, nonce)?
            }
            ClientEvent::ServerNonce(nonce) => {
                gwmo_tree::set_account_nonce(tree, account_name, AuthLevel::Server, nonce)?
            }
            ClientEvent::ServerAuthenticated | ClientEvent::AlertStatus { .. } => {}
        }
    }
    Ok(())
}
