//! The DM endpoint: routes each device message to its session, feeds the session
//! the device's queued commands once the device has authenticated, and writes what
//! the session learnt (nonces, DevInfo, command outcomes, alerts) to the store
//! before the answer leaves (`effects`; the gateway bootstrapping it drives:
//! `gateways`). It runs on the async worker that read the message and awaits only
//! with SQLite: its turn at the store's one connection, and the commit of the batch
//! its work joined (`turn`). Its store calls are synchronous (a PostgreSQL store
//! leaves the worker around each round trip itself).

mod effects;
mod firmware;
mod gateways;
mod turn;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gwmo_proto::codes::alert;
use gwmo_proto::{CodecError, Command, Encoding, Message};
use gwmo_session::{Received, ServerConfig, ServerSession, SessionError};
use tracing::{debug, warn};

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use crate::command::CommandSpec;
use crate::metrics::Metrics;
use crate::settings::ServerSettings;
use crate::store::{Store, StoreError};
use crate::throttle::AuthThrottle;
use turn::StoreTurns;

/// The DevInfo leaf where a gwmo device reports the URL it takes package 0 at.
pub const NOTIFY_URL_NODE: &str = "./DevInfo/Ext/NotifyURL";

/// What a device's tree report is asked with (`Get` of the root as TNDS).
pub const TREE_REPORT_TARGET: &str = ".?list=TNDS+Format+Type+Value";

/// Why a message got no DM answer; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error(
        "unsupported content type {0:?}: expected application/vnd.syncml.dm+xml or +wbxml (or the DS types application/vnd.syncml+xml, +wbxml)"
    )]
    UnsupportedMediaType(String),
    #[error("malformed DM message: {0}")]
    Malformed(#[from] CodecError),
    #[error("device {0:?} is not enrolled")]
    UnknownDevice(String),
    #[error(
        "no open session {1:?} for device {0:?} at this address: a session starts with Alert 1200 or 1201, and goes on at the RespURI its first answer gave"
    )]
    UnknownSession(String, String),
    #[error("{0} is {1} bytes long: at most {2} are taken")]
    HeaderTooLong(&'static str, usize, usize),
    #[error(
        "device {0:?}: the nonce these credentials were built with was used by another session"
    )]
    NonceSpent(String),
    #[error("{0} sessions are open, the most this instance holds: try again later")]
    Busy(usize),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("device {0:?} failed to authenticate too often: try again in {1} s")]
    Throttled(String, u64),
}

/// The answer to post back.
#[derive(Debug)]
pub struct DmResponse {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub hmac: Option<String>,
    /// The device the message came from (for the access log).
    pub dev_id: String,
}

/// The longest DevId (Source LocURI) taken, in bytes: IMEI, MEID and URN forms are
/// far shorter.
pub const MAX_DEV_ID_LEN: usize = 256;
/// The longest SessionID taken, in bytes: DM writes it as 1 to 4 hex digits; other
/// clients' decimal or UUID forms fit too.
pub const MAX_SESSION_ID_LEN: usize = 64;

/// One posted DM message and what came with it over HTTP.
#[derive(Debug, Clone, Copy)]
pub struct DmRequest<'a> {
    pub content_type: Option<&'a str>,
    pub hmac: Option<&'a str>,
    /// The session token of the URL it was posted to (the RespURI's `s` parameter).
    pub session_token: Option<&'a str>,
    /// Where it came from (failed authentications are counted per source).
    pub peer: IpAddr,
    pub body: &'a [u8],
}

struct Slot {
    session: ServerSession,
    dev_id: String,
    session_id: String,
    /// The secret in the RespURI this session's messages must be posted to.
    token: String,
    store_key: String,
    encoding: Encoding,
    last_active: Instant,
}

/// The open sessions of this instance. Only a device that authenticated has one: a
/// refused message leaves nothing behind.
#[derive(Default)]
struct Sessions {
    by_token: HashMap<String, Slot>,
    /// Each device's live session (one at most: one that authenticates later takes
    /// its place, the device having started over).
    by_device: HashMap<String, String>,
}

impl Sessions {
    /// Takes out the session `token` names, if the message is of that session.
    fn take(&mut self, token: &str, dev_id: &str, session_id: &str) -> Option<Slot> {
        let slot = self.by_token.get(token)?;
        if slot.dev_id != dev_id || slot.session_id != session_id {
            return None;
        }
        self.by_token.remove(token)
    }

    fn forget(&mut self, slot: &Slot) {
        if self.by_device.get(&slot.dev_id) == Some(&slot.token) {
            self.by_device.remove(&slot.dev_id);
        }
    }

    fn len(&self) -> usize {
        self.by_token.len()
    }
}

/// All open sessions of this server instance.
pub struct DmService {
    store: Arc<dyn Store>,
    settings: ServerSettings,
    config: ServerConfig,
    /// Where a session's later messages go, before its token is added.
    resp_base: String,
    sessions: Mutex<Sessions>,
    /// Devices to wake with package 0 (the HTTP layer sends it).
    wake: Option<UnboundedSender<Wake>>,
    metrics: Arc<Metrics>,
    throttle: AuthThrottle,
    /// Counts the messages whose effects were stored: whoever watches it (an embedding
    /// gateway) learns that devices, commands or sessions changed without polling.
    stored: watch::Sender<u64>,
    /// Which devices those messages were from, for an embedder that keeps what it read
    /// of the store and reads again only what changed.
    touched: Mutex<TouchedDevices>,
    /// Where the store has one connection (SQLite), messages take turns at it here,
    /// and share commits.
    store_turns: Option<StoreTurns>,
}

/// The devices whose records changed since an embedder last asked: kept only once one
/// asks ([`DmService::take_touched`]), and bounded.
#[derive(Default)]
struct TouchedDevices {
    tracking: bool,
    devices: std::collections::HashSet<String>,
    /// More changed than are kept: the embedder reads everything again.
    overflowed: bool,
}

/// At most this many touched DevIds are kept between two asks; past it the next ask
/// answers [`Touched::All`].
const MAX_TOUCHED: usize = 65_536;

/// What changed in the store since the last [`DmService::take_touched`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// Anything may have: read everything again (the first ask, or too many changed).
    All,
    /// The records of these devices (their sessions, DevInfo, commands) and nothing else.
    Devices(std::collections::HashSet<String>),
}

impl DmService {
    pub fn new(
        store: Arc<dyn Store>,
        settings: ServerSettings,
        dm_url: String,
        resp_uri: Option<String>,
        wake: Option<UnboundedSender<Wake>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let resp_base = resp_uri.unwrap_or_else(|| dm_url.clone());
        let config = ServerConfig {
            server_uri: dm_url,
            resp_uri: None,
            max_msg_size: settings.max_msg_size,
            max_obj_size: settings.max_obj_size,
            max_auth_attempts: settings.max_auth_attempts,
        };
        DmService {
            throttle: AuthThrottle::new(
                settings.auth_lockout_failures,
                Duration::from_secs(settings.auth_lockout_secs),
            ),
            settings,
            config,
            resp_base,
            sessions: Mutex::default(),
            wake,
            metrics,
            stored: watch::Sender::new(0),
            touched: Mutex::default(),
            store_turns: store.batches().map(|_| StoreTurns::default()),
            store,
        }
    }

    /// The devices whose records changed since the last call; the first call starts the
    /// tracking and answers [`Touched::All`].
    pub fn take_touched(&self) -> Touched {
        let mut touched = self.lock_touched();
        let all = !touched.tracking || touched.overflowed;
        touched.tracking = true;
        touched.overflowed = false;
        let devices = std::mem::take(&mut touched.devices);
        match all {
            true => Touched::All,
            false => Touched::Devices(devices),
        }
    }

    /// Makes the next [`DmService::take_touched`] answer [`Touched::All`].
    pub fn forget_touched(&self) {
        let mut touched = self.lock_touched();
        touched.overflowed = true;
        touched.devices.clear();
    }

    /// Notes that `dev_id`'s record changed, for an embedder that tracks it.
    pub fn touch(&self, dev_id: &str) {
        let mut touched = self.lock_touched();
        if !touched.tracking || touched.overflowed {
            return;
        }
        if touched.devices.len() >= MAX_TOUCHED {
            touched.overflowed = true;
            touched.devices.clear();
            return;
        }
        if !touched.devices.contains(dev_id) {
            touched.devices.insert(dev_id.to_owned());
        }
    }

    fn lock_touched(&self) -> std::sync::MutexGuard<'_, TouchedDevices> {
        // Nothing is half-changed if a holder panicked: the set is only added to.
        self.touched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes after every message whose effects were stored.
    pub fn stored_changes(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// Handles one posted DM message. `unix_now` stamps what is stored.
    pub async fn handle(
        &self,
        request: DmRequest<'_>,
        now: Instant,
        unix_now: i64,
    ) -> Result<DmResponse, DmError> {
        let started = Instant::now();
        let answer = self.answer(request, now, unix_now).await;
        if answer.is_err() {
            self.metrics.message_refused();
        }
        self.metrics.handled(started.elapsed());
        answer
    }

    /// A message goes to the session its URL's token names, and only if it is of that
    /// session (DevId and SessionID); one that starts a session and names none opens a
    /// new one, which is kept only once the device has authenticated. Nothing a
    /// message without the token sends reaches a session that is open.
    async fn answer(
        &self,
        request: DmRequest<'_>,
        now: Instant,
        unix_now: i64,
    ) -> Result<DmResponse, DmError> {
        let encoding = match request.content_type {
            Some(value) => Encoding::from_content_type(value)
                .ok_or_else(|| DmError::UnsupportedMediaType(value.to_owned()))?,
            None => Encoding::sniff(request.body),
        };
        let message = encoding.decode(request.body)?;
        let (dev_id, session_id) = session_of(&message)?;
        let (Some(turns), Some(batches)) = (&self.store_turns, self.store.batches()) else {
            return self.answer_in_turn(&message, encoding, request, now, unix_now);
        };
        // From here to the answer every step may read or write the store, and nothing
        // is awaited until the work is done: a message dropped while it waits (its
        // connection gone) has not yet taken its session out of the open ones.
        let turn = turns.take().await;
        let mut answered = Err(DmError::Store(StoreError::GroupNotRun));
        let joined = batches.join(&mut || {
            answered = self.answer_in_turn(&message, encoding, request, now, unix_now);
        })?;
        if let Err(error) = turn.finish(batches, joined, &self.metrics).await {
            self.forget_uncommitted(dev_id, session_id, now, unix_now);
            return Err(error.into());
        }
        answered
    }

    /// What `answer` does with the store at hand: finds or opens the message's
    /// session, advances it, and keeps it for the next message if it goes on.
    fn answer_in_turn(
        &self,
        message: &Message,
        encoding: Encoding,
        request: DmRequest<'_>,
        now: Instant,
        unix_now: i64,
    ) -> Result<DmResponse, DmError> {
        let (dev_id, session_id) = session_of(message)?;
        let msg_id = message.header.msg_id;
        let mut continued = None;
        if let Some(token) = request.session_token {
            let mut sessions = self.lock_sessions();
            if let Some(slot) = sessions.take(token, dev_id, session_id) {
                if msg_id > slot.session.last_accepted_msg_id() {
                    continued = Some(slot);
                } else {
                    // A message the session already had (a retransmission, or a
                    // replay) is refused and leaves the session as it was; a package 1
                    // that repeats its MsgIDs is a device starting over, in a session
                    // of its own.
                    sessions.by_token.insert(token.to_owned(), slot);
                    if !opens_session(message) {
                        return Err(DmError::Session(gwmo_session::SessionError::Replay(msg_id)));
                    }
                }
            }
        }
        let (mut slot, opened) = match continued {
            Some(slot) => (slot, false),
            None if opens_session(message) => {
                if let Some(wait) = self.throttle.locked_for(request.peer, dev_id, now) {
                    return Err(DmError::Throttled(dev_id.to_owned(), wait.as_secs().max(1)));
                }
                (
                    self.open(dev_id, session_id, encoding, now, unix_now)?,
                    true,
                )
            }
            None => {
                return Err(DmError::UnknownSession(
                    dev_id.to_owned(),
                    session_id.to_owned(),
                ));
            }
        };
        slot.last_active = now;
        let result = self
            .advance(&mut slot, opened, message, request, unix_now)
            .map(|answer| DmResponse {
                content_type: encoding.reply_content_type(request.content_type),
                ..answer
            });
        match &result {
            Ok(_) if !slot.session.is_device_authenticated() => {
                debug!(device = %slot.dev_id, "refused: nothing kept");
            }
            Ok(_) if !slot.session.is_ended() => {
                let mut sessions = self.lock_sessions();
                sessions
                    .by_device
                    .insert(slot.dev_id.clone(), slot.token.clone());
                sessions.by_token.insert(slot.token.clone(), slot);
            }
            Ok(_) => {
                self.lock_sessions().forget(&slot);
                self.metrics.session_ended();
                debug!(device = %slot.dev_id, session = %slot.session_id, "session ended");
            }
            Err(error) => {
                warn!(device = %slot.dev_id, session = %slot.session_id, %error, "session dropped");
                self.lock_sessions().forget(&slot);
                self.drop_session(slot, unix_now)?;
            }
        }
        result
    }

    fn advance(
        &self,
        slot: &mut Slot,
        opened: bool,
        message: &Message,
        request: DmRequest<'_>,
        unix_now: i64,
    ) -> Result<DmResponse, DmError> {
        let mut fresh_nonce = || rand::random::<[u8; 16]>().to_vec();
        let dev_id = message.header.source.uri.as_str();
        let reply =
            match slot
                .session
                .receive(message, request.body, request.hmac, &mut fresh_nonce)?
            {
                // What one message changes is stored as one group (which, with
                // SQLite, commits with the batch the message joined).
                Received::Refused(reply) => {
                    let started = Instant::now();
                    self.store
                        .grouped(|| self.persist(dev_id, slot, request.peer, unix_now))?;
                    self.metrics.message(started.elapsed());
                    reply
                }
                Received::Accepted(answer) => {
                    let started = Instant::now();
                    self.store.grouped(|| {
                        // Events first: a Location Update in this message queues the
                        // bootstrap commands that its answer must carry.
                        self.persist(dev_id, slot, request.peer, unix_now)?;
                        if opened {
                            self.metrics.session_opened();
                            debug!(device = dev_id, session = %slot.session_id, "session opened");
                            self.supersede(dev_id, &slot.token, unix_now)?;
                        }
                        self.claim_commands(dev_id, slot, unix_now)
                    })?;
                    self.metrics.message(started.elapsed());
                    slot.session.reply(answer)?
                }
            };
        Ok(DmResponse {
            content_type: reply.outgoing.content_type,
            body: reply.outgoing.body,
            hmac: reply.outgoing.hmac,
            dev_id: dev_id.to_owned(),
        })
    }

    /// Hands the session the device's queued commands; one stored in a form this
    /// server cannot read fails with 400.
    fn claim_commands(&self, dev_id: &str, slot: &mut Slot, unix_now: i64) -> Result<(), DmError> {
        for queued in self
            .store
            .claim_pending(dev_id, &slot.store_key, unix_now)?
        {
            match CommandSpec::parse(&queued.spec) {
                Ok(spec) => slot.session.enqueue(queued.id as u64, spec.to_command()),
                Err(error) => {
                    warn!(command = queued.id, %error, "a stored command is not valid: failing it");
                    self.store.complete(
                        queued.id,
                        gwmo_proto::codes::status::BAD_REQUEST.get(),
                        "{}",
                        unix_now,
                        &crate::bootstrap::tell_gateways,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn open(
        &self,
        dev_id: &str,
        session_id: &str,
        encoding: Encoding,
        now: Instant,
        unix_now: i64,
    ) -> Result<Slot, DmError> {
        let open = self.lock_sessions().len();
        if open >= self.settings.max_sessions {
            return Err(DmError::Busy(open));
        }
        let auth = self
            .store
            .session_auth(dev_id)?
            .ok_or_else(|| DmError::UnknownDevice(dev_id.to_owned()))?;
        let token = format!("{:032x}", rand::random::<u128>());
        let separator = if self.resp_base.contains('?') {
            '&'
        } else {
            '?'
        };
        let config = ServerConfig {
            resp_uri: Some(format!(
                "{}{separator}{SESSION_TOKEN_PARAM}={token}",
                self.resp_base
            )),
            ..self.config.clone()
        };
        Ok(Slot {
            session: ServerSession::new(
                config,
                dev_id.to_owned(),
                session_id.to_owned(),
                encoding,
                auth,
            ),
            dev_id: dev_id.to_owned(),
            session_id: session_id.to_owned(),
            store_key: format!("{dev_id}#{session_id}#{unix_now}#{token}"),
            token,
            encoding,
            last_active: now,
        })
    }

    /// A device that authenticated in a new session has started over: the session it
    /// held before ends, and what that one was sent and never answered goes back to
    /// the queue (this session claims it next).
    fn supersede(&self, dev_id: &str, token: &str, unix_now: i64) -> Result<(), DmError> {
        let previous = {
            let mut sessions = self.lock_sessions();
            match sessions
                .by_device
                .insert(dev_id.to_owned(), token.to_owned())
            {
                Some(old) if old != token => sessions.by_token.remove(&old),
                _ => None,
            }
        };
        if let Some(previous) = previous {
            debug!(device = dev_id, session = %previous.session_id, "a newer session of the device replaces this one");
            self.settle_and_requeue(previous, unix_now, false)?;
        }
        Ok(())
    }

    /// A message whose batch did not commit: the session it advanced (the one of its
    /// device and SessionID last active at `now`, if it was kept) is ahead of what is
    /// stored, and ends.
    fn forget_uncommitted(&self, dev_id: &str, session_id: &str, now: Instant, unix_now: i64) {
        let slot = {
            let mut sessions = self.lock_sessions();
            let advanced = sessions.by_device.get(dev_id).cloned().filter(|token| {
                sessions
                    .by_token
                    .get(token)
                    .is_some_and(|slot| slot.session_id == session_id && slot.last_active == now)
            });
            advanced.and_then(|token| {
                let slot = sessions.by_token.remove(&token)?;
                sessions.forget(&slot);
                Some(slot)
            })
        };
        if let Some(slot) = slot {
            warn!(
                device = dev_id,
                session = session_id,
                "session dropped: its last message was not stored"
            );
            if let Err(error) = self.drop_session(slot, unix_now) {
                warn!(device = dev_id, %error, "the dropped session's commands were not requeued: they are when they are abandoned");
            }
        }
    }

    /// A session that is gone: what the device answered is stored, the rest goes back
    /// to the queue, and the device is woken for it.
    fn drop_session(&self, slot: Slot, unix_now: i64) -> Result<(), DmError> {
        self.settle_and_requeue(slot, unix_now, true)
    }

    fn settle_and_requeue(&self, mut slot: Slot, unix_now: i64, wake: bool) -> Result<(), DmError> {
        slot.session.settle_answered();
        let dev_id = slot.dev_id.clone();
        let mut requeued = 0;
        self.store.grouped(|| {
            self.persist(&dev_id, &mut slot, IpAddr::from([0, 0, 0, 0]), unix_now)?;
            requeued = self.store.requeue_session(&dev_id, &slot.store_key)?;
            Ok::<_, DmError>(())
        })?;
        if wake && requeued > 0 {
            debug!(device = %dev_id, requeued, "commands back in the queue: waking the device");
            self.wake_later(&dev_id);
        }
        Ok(())
    }

    /// Drops sessions idle for longer than the configured time; their commands that
    /// were sent but not answered go back to the queue for the next session.
    pub fn evict_idle(&self, now: Instant, unix_now: i64) -> Result<usize, DmError> {
        self.throttle.forget_expired(now);
        let idle = Duration::from_secs(self.settings.session_idle_secs);
        let stale: Vec<Slot> = {
            let mut sessions = self.lock_sessions();
            let tokens: Vec<_> = sessions
                .by_token
                .iter()
                .filter(|(_, slot)| now.saturating_duration_since(slot.last_active) > idle)
                .map(|(token, _)| token.clone())
                .collect();
            let stale: Vec<Slot> = tokens
                .iter()
                .filter_map(|token| sessions.by_token.remove(token))
                .collect();
            for slot in &stale {
                sessions.forget(slot);
            }
            stale
        };
        let count = stale.len();
        for slot in stale {
            self.drop_session(slot, unix_now)?;
        }
        Ok(count)
    }

    /// Requeues commands claimed long ago by sessions no instance holds any more (their
    /// instance was killed): twice the idle timeout, since a live instance drops an idle
    /// session and requeues its commands itself after one. The devices they belong to
    /// are woken with package 0 (those that listen for it get them at once, the others
    /// at their next session). Returns how many devices.
    pub fn requeue_abandoned(&self, unix_now: i64) -> Result<usize, DmError> {
        let idle = self.settings.session_idle_secs.max(1) as i64;
        let devices = self.store.requeue_abandoned(unix_now - 2 * idle)?;
        devices.iter().for_each(|dev_id| self.wake_later(dev_id));
        Ok(devices.len())
    }

    /// Hands `dev_id` to the background wake-ups (which notify again a device that
    /// answers "too soon") for the commands queued for it: none is sent once a session
    /// of the device has taken them all.
    pub fn wake_later(&self, dev_id: &str) {
        self.hand_to_wakes(dev_id, WakeFor::QueuedCommands);
    }

    /// Hands `dev_id` to the background wake-ups because an operator asked for a
    /// session, whatever is queued.
    pub fn notify_later(&self, dev_id: &str) {
        self.hand_to_wakes(dev_id, WakeFor::Asked);
    }

    fn hand_to_wakes(&self, dev_id: &str, reason: WakeFor) {
        if let Some(sender) = &self.wake {
            // The receiver lives as long as the server; a send after shutdown is moot.
            let _ = sender.send(Wake {
                dev_id: dev_id.to_owned(),
                reason,
            });
        }
    }

    /// Wakes every device with commands waiting (at start: the instance before may
    /// have died between queueing them and waking the device). Returns how many.
    pub fn wake_queued(&self) -> Result<usize, DmError> {
        let devices = self.store.devices_with_queued_commands()?;
        devices.iter().for_each(|dev_id| self.wake_later(dev_id));
        Ok(devices.len())
    }

    /// Forgets the history that ended more than `history_days` before `unix_now`
    /// (nothing when the setting is 0). Returns how many records went.
    pub fn forget_old_history(&self, unix_now: i64) -> Result<u64, DmError> {
        match i64::from(self.settings.history_days) {
            0 => Ok(0),
            days => Ok(self.store.forget_history(unix_now - days * 86_400)?),
        }
    }

    /// How many sessions this instance holds open now.
    pub fn open_sessions(&self) -> usize {
        self.lock_sessions().len()
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave the map half-changed: recover it.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A device to wake with package 0, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub dev_id: String,
    pub reason: WakeFor,
}

/// Why a device is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeFor {
    /// Commands were queued for it: moot once a session took them.
    QueuedCommands,
    /// An operator asked for a session.
    Asked,
}

/// The URL query parameter of a RespURI that carries the session token.
pub const SESSION_TOKEN_PARAM: &str = "s";

/// The session token in a request's URL query, if any.
pub fn session_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(SESSION_TOKEN_PARAM)?.strip_prefix('='))
}

/// The DevId and SessionID a message names, within the lengths taken.
fn session_of(message: &Message) -> Result<(&str, &str), DmError> {
    let dev_id = message.header.source.uri.as_str();
    let session_id = message.header.session_id.as_str();
    if dev_id.len() > MAX_DEV_ID_LEN {
        return Err(DmError::HeaderTooLong(
            "the Source LocURI",
            dev_id.len(),
            MAX_DEV_ID_LEN,
        ));
    }
    if session_id.len() > MAX_SESSION_ID_LEN {
        return Err(DmError::HeaderTooLong(
            "the SessionID",
            session_id.len(),
            MAX_SESSION_ID_LEN,
        ));
    }
    Ok((dev_id, session_id))
}

/// A message that starts a session: it alerts 1200 or 1201. Its MsgID is not asked:
/// a device challenged in its first answer sends package 1 again as message 2, and no
/// session was kept for it.
fn opens_session(message: &Message) -> bool {
    message.body.commands.iter().any(|c| {
        matches!(c, Command::Alert(a) if a.code == alert::CLIENT_INITIATED_MGMT || a.code == alert::SERVER_INITIATED_MGMT)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::tests::device;

    fn service(history_days: u32) -> (DmService, Arc<dyn Store>) {
        service_on(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            history_days,
        )
    }

    fn service_on(store: Arc<SqliteStore>, history_days: u32) -> (DmService, Arc<dyn Store>) {
        let store: Arc<dyn Store> = store;
        let settings = ServerSettings {
            history_days,
            ..ServerSettings::default()
        };
        let dm = DmService::new(
            store.clone(),
            settings,
            "https://dms.example/dm".into(),
            None,
            None,
            Arc::default(),
        );
        (dm, store)
    }

    /// A device with one command that finished at `done_at`.
    fn finished_command(store: &dyn Store, done_at: i64) -> i64 {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        let id = store.queue_command("IMEI:1", "{}", 0).unwrap();
        store.claim_pending("IMEI:1", "s1", 0).unwrap();
        store
            .complete(id, 200, "{}", done_at, &crate::bootstrap::tell_gateways)
            .unwrap();
        id
    }

    const DAY: i64 = 86_400;

    #[test]
    fn history_is_forgotten_once_older_than_history_days() {
        let (dm, store) = service(30);
        let id = finished_command(store.as_ref(), 1_000);
        assert_eq!(dm.forget_old_history(1_000 + 30 * DAY).unwrap(), 0);
        assert!(store.command(id).unwrap().is_some());
        assert_eq!(dm.forget_old_history(1_001 + 30 * DAY).unwrap(), 1);
        assert!(store.command(id).unwrap().is_none());
    }

    #[test]
    fn touched_devices_are_told_once_each_once_tracked_and_too_many_read_as_all() {
        let (dm, _) = service(0);
        let devices = |ids: &[&str]| Touched::Devices(ids.iter().map(|d| d.to_string()).collect());
        dm.touch("untracked");
        assert_eq!(
            dm.take_touched(),
            Touched::All,
            "the first ask reads everything"
        );
        assert_eq!(dm.take_touched(), devices(&[]));
        dm.touch("A");
        dm.touch("B");
        dm.touch("A");
        assert_eq!(dm.take_touched(), devices(&["A", "B"]));
        for index in 0..=MAX_TOUCHED {
            dm.touch(&index.to_string());
        }
        assert_eq!(dm.take_touched(), Touched::All);
        assert_eq!(dm.take_touched(), devices(&[]));
        dm.touch("A");
        dm.forget_touched();
        assert_eq!(
            dm.take_touched(),
            Touched::All,
            "whoever kept track lost it"
        );
    }

    /// Package 1 of `dev_id` with the credentials `store::tests::device` enrolls.
    fn package1(dev_id: &str) -> Vec<u8> {
        client(dev_id).start().unwrap().body
    }

    /// A device's client session with the credentials `store::tests::device` enrolls.
    fn client(dev_id: &str) -> gwmo_session::ClientSession {
        let credentials = |name: &str, secret: &str| gwmo_session::Credentials {
            auth: gwmo_proto::auth::AuthType::Hmac,
            name: name.into(),
            secret: secret.into(),
        };
        let config = gwmo_session::ClientConfig {
            device_id: dev_id.into(),
            server_id: "s".into(),
            server_uri: "https://dms.example/dm".into(),
            encoding: Encoding::Xml,
            max_msg_size: 10_000,
            max_obj_size: 100_000,
            client: credentials("c", "cs"),
            client_nonce: Vec::new(),
            server: credentials("s", "ss"),
            server_nonce: Vec::new(),
            max_auth_attempts: 3,
        };
        gwmo_session::ClientSession::new(
            config,
            "1".into(),
            gwmo_session::Trigger::Client,
            Vec::new(),
            Vec::new(),
        )
    }

    /// A posted package 1 as it came from `body`.
    fn posted(body: &[u8]) -> DmRequest<'_> {
        DmRequest {
            content_type: Some("application/vnd.syncml.dm+xml"),
            hmac: None,
            session_token: None,
            peer: IpAddr::from([127, 0, 0, 1]),
            body,
        }
    }

    #[tokio::test]
    async fn a_stored_message_tells_an_embedder_which_device_it_came_from() {
        let (dm, store) = service(0);
        store.enroll(&device("IMEI:1"), 0).unwrap();
        assert_eq!(dm.take_touched(), Touched::All);
        for dev_id in ["IMEI:1", "IMEI:not-enrolled"] {
            let body = package1(dev_id);
            let _ = dm.handle(posted(&body), Instant::now(), 1_000).await;
        }
        let only = std::collections::HashSet::from(["IMEI:1".to_owned()]);
        assert_eq!(dm.take_touched(), Touched::Devices(only));
    }

    /// With SQLite's one connection, a message whose turn at the store has not come
    /// waits without holding its worker, and goes on once the turn is free.
    #[tokio::test]
    async fn a_message_waits_for_its_turn_at_a_one_connection_store_without_its_worker() {
        let (dm, store) = service(0);
        store.enroll(&device("IMEI:1"), 0).unwrap();
        assert_eq!(dm.take_touched(), Touched::All);
        let body = package1("IMEI:1");
        let turns = dm.store_turns.as_ref().expect("SQLite: one connection");
        let held = turns.take().await;
        let mut handled = std::pin::pin!(dm.handle(posted(&body), Instant::now(), 1_000));
        assert!(pending(handled.as_mut()), "the message waits for the turn");
        let stored =
            |devices: &[&str]| Touched::Devices(devices.iter().map(|d| d.to_string()).collect());
        assert_eq!(dm.take_touched(), stored(&[]), "nothing stored meanwhile");
        drop(held);
        assert!(!handled.await.unwrap().body.is_empty());
        assert_eq!(dm.take_touched(), stored(&["IMEI:1"]));
    }

    /// Whether `future` is still waiting after being polled once.
    fn pending(future: std::pin::Pin<&mut (impl std::future::Future + ?Sized)>) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        future.poll(&mut context).is_pending()
    }

    /// `outgoing` as posted where the session told the device to.
    fn request_of(outgoing: &gwmo_session::Outgoing) -> DmRequest<'_> {
        DmRequest {
            session_token: session_token(outgoing.url.split_once('?').map(|(_, q)| q)),
            hmac: outgoing.hmac.as_deref(),
            ..posted(&outgoing.body)
        }
    }

    /// What `dm` answers `outgoing`.
    async fn post(dm: &DmService, outgoing: &gwmo_session::Outgoing) -> DmResponse {
        dm.handle(request_of(outgoing), Instant::now(), 1_000)
            .await
            .unwrap()
    }

    /// The device's next message after `answer`, its commands run on a new device's
    /// tree.
    fn next_message(
        device: &mut gwmo_session::ClientSession,
        answer: &DmResponse,
    ) -> gwmo_session::Outgoing {
        let mut tree = gwmo_tree::Tree::new_device(&gwmo_tree::DeviceInfo::default());
        let mut fresh_nonce = || vec![7; 16];
        match device
            .receive(
                &answer.body,
                answer.hmac.as_deref(),
                &mut gwmo_device::TreeExecutor(&mut tree),
                &mut fresh_nonce,
            )
            .unwrap()
        {
            gwmo_session::ClientStep::Send(next) => next,
            gwmo_session::ClientStep::Done(outcome) => panic!("session over: {outcome:?}"),
        }
    }

    /// A message dropped while it waits for its turn (its connection went away) leaves
    /// its session open, and the device's next try goes on in it.
    #[tokio::test]
    async fn a_message_dropped_while_waiting_for_its_turn_leaves_its_session_open() {
        let (dm, store) = service(0);
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store
            .queue_command("IMEI:1", r#"{"op":"Get","target":"./DevInfo/Mod"}"#, 0)
            .unwrap();
        let mut device = client("IMEI:1");
        let outgoing = device.start().unwrap();
        // Package 1: authenticated, and answered with the Get.
        let answer = post(&dm, &outgoing).await;
        let outgoing = next_message(&mut device, &answer);
        assert_eq!(dm.open_sessions(), 1, "the device's session opened");
        assert!(request_of(&outgoing).session_token.is_some());
        let held = dm.store_turns.as_ref().unwrap().take().await;
        {
            let waiting = std::pin::pin!(dm.handle(request_of(&outgoing), Instant::now(), 1_000));
            assert!(pending(waiting), "the message waits for the turn");
        }
        drop(held);
        assert_eq!(dm.open_sessions(), 1, "the session is still open");
        // The retry is taken in that session (an unknown one would be an error).
        post(&dm, &outgoing).await;
    }

    /// Package 1 of two enrolled devices, `IMEI:1` with a Get queued (its session goes
    /// on after the answer), `IMEI:2` with nothing.
    fn two_devices_starting(
        store: &dyn Store,
    ) -> (gwmo_session::Outgoing, gwmo_session::Outgoing, i64) {
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.enroll(&device("IMEI:2"), 0).unwrap();
        let get = store
            .queue_command("IMEI:1", r#"{"op":"Get","target":"./DevInfo/Mod"}"#, 0)
            .unwrap();
        let start = |dev_id| client(dev_id).start().unwrap();
        (start("IMEI:1"), start("IMEI:2"), get)
    }

    /// Where command `id` stands.
    fn state_of(store: &dyn Store, id: i64) -> crate::store::CommandState {
        store.command(id).unwrap().unwrap().state
    }

    /// Whether the server gave `dev_id` a nonce for its next credentials (and stored it).
    fn has_next_nonce(store: &dyn Store, dev_id: &str) -> bool {
        !store
            .device(dev_id)
            .unwrap()
            .unwrap()
            .client_nonce
            .is_empty()
    }

    /// `dm`'s handling of a message, to poll by hand.
    type Handling<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<DmResponse, DmError>> + 'a>>;

    /// Two messages wait for the turn while the test holds it; once it is free, the
    /// first does its work and, the second still waiting, leaves the commit to it.
    async fn first_leaves_the_commit_to_the_second<'a>(
        dm: &'a DmService,
        first: &'a gwmo_session::Outgoing,
        second: &'a gwmo_session::Outgoing,
    ) -> (Handling<'a>, Handling<'a>) {
        let held = dm.store_turns.as_ref().unwrap().take().await;
        let handling = |message| -> Handling<'a> {
            Box::pin(dm.handle(request_of(message), Instant::now(), 1_000))
        };
        let (mut first, mut second) = (handling(first), handling(second));
        assert!(pending(first.as_mut()), "the first waits for the turn");
        assert!(pending(second.as_mut()), "the second too");
        drop(held);
        assert!(
            pending(first.as_mut()),
            "the first waits for its batch's commit"
        );
        (first, second)
    }

    /// DM messages that wait for the turn while one holds it share its commit; each is
    /// answered only once the batch has committed.
    #[tokio::test]
    async fn messages_that_wait_for_the_turn_share_one_commit_and_are_answered_after_it() {
        let (dm, store) = service(0);
        let (first_message, second_message, get) = two_devices_starting(store.as_ref());
        let ends = store.batches().unwrap().ends();
        let (first, second) =
            first_leaves_the_commit_to_the_second(&dm, &first_message, &second_message).await;
        assert_eq!(ends.borrow().committed(1), None, "its batch is open");
        second.await.unwrap();
        assert_eq!(
            ends.borrow().committed(1),
            Some(true),
            "the second committed it"
        );
        first.await.unwrap();
        assert_eq!(ends.borrow().committed(2), None, "one commit for both");
        assert_eq!(
            state_of(store.as_ref(), get),
            crate::store::CommandState::Sent
        );
        assert!(has_next_nonce(store.as_ref(), "IMEI:2"));
    }

    /// A message that left its batch's commit to one that then gave up waiting for the
    /// turn (its connection gone) commits the batch itself before it answers.
    #[tokio::test]
    async fn a_batch_left_to_a_message_that_gave_up_is_committed_by_its_member() {
        let (dm, store) = service(0);
        let (first_message, second_message, get) = two_devices_starting(store.as_ref());
        let (first, second) =
            first_leaves_the_commit_to_the_second(&dm, &first_message, &second_message).await;
        drop(second);
        tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .expect("answered once its member committed the batch")
            .unwrap();
        let ends = store.batches().unwrap().ends();
        assert_eq!(ends.borrow().committed(1), Some(true));
        assert_eq!(
            state_of(store.as_ref(), get),
            crate::store::CommandState::Sent
        );
    }

    /// A message whose batch did not commit gets no answer, and the session it went on
    /// with in memory ends: what it claimed is still queued for the next one.
    #[tokio::test]
    async fn a_message_whose_batch_was_lost_is_refused_and_its_session_ends() {
        let sqlite = Arc::new(SqliteStore::open_in_memory().unwrap());
        let (dm, store) = service_on(sqlite.clone(), 0);
        let (first_message, second_message, get) = two_devices_starting(store.as_ref());
        let (first, second) =
            first_leaves_the_commit_to_the_second(&dm, &first_message, &second_message).await;
        assert_eq!(
            dm.open_sessions(),
            1,
            "the first device's session went on in memory"
        );
        sqlite.roll_back_behind_its_back();
        second.await.unwrap();
        let refused = first.await.err().unwrap();
        assert!(
            matches!(refused, DmError::Store(StoreError::BatchLost(1))),
            "{refused}"
        );
        assert_eq!(dm.open_sessions(), 0, "the session ended");
        assert_eq!(
            state_of(store.as_ref(), get),
            crate::store::CommandState::Queued
        );
        assert!(
            !has_next_nonce(store.as_ref(), "IMEI:1"),
            "nothing of the lost batch is kept"
        );
        assert!(
            has_next_nonce(store.as_ref(), "IMEI:2"),
            "the second, in a batch of its own"
        );
    }

    #[test]
    fn history_days_zero_keeps_history_for_ever() {
        let (dm, store) = service(0);
        let id = finished_command(store.as_ref(), 1_000);
        assert_eq!(dm.forget_old_history(1_000 + 10_000 * DAY).unwrap(), 0);
        assert!(store.command(id).unwrap().is_some());
    }
}
