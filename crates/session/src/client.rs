//! The End Device's side of a management session, sans-IO: it writes package 1,
//! reads each server message (authenticating the server, running its commands through
//! an [`Executor`]), and answers with Status and Results until the server's package
//! needs no answer.
//!
//! Its phases ([`ClientSession::start`] writes package 1, [`ClientSession::receive`]
//! reads each server message):
//!
//! ```text
//!          start                  the server's credentials pass
//!   New ----------> Opening ----------------------------------> Open <--+
//!                   |  ^  |                                       |  |  | a package
//!                   |  |  | challenged (attempts left):           |  +--+ answered
//!                   |  +--+ package 1 again                       |
//!                   |                                             | a package needing no
//!                   | Alert 1223                                  | answer, or Alert 1223
//!                   v                                             v
//!                 Ended <-------------------------------------- Ended
//! ```
//!
//! Commands of a server that has not proved who it is are answered with the refusal
//! and never run. Reading before `start`, or after the end, is the caller's mistake
//! ([`Misuse`]).

use std::collections::{HashMap, VecDeque};

use gwmo_proto::codes::{StatusCode, alert, status};
use gwmo_proto::{Alert, CmdIds, Command, Data, Encoding, Item, ItemCommand, Message, Status};
use tracing::debug;

use crate::credentials::{Credentials, Prover, Verdict, Verifier};
use crate::packer::{Oversized, pack};
use crate::{Misuse, Outgoing, OutgoingHeader, SessionError, command_status, header_status};

/// Runs the management commands of a server against the device's tree.
pub trait Executor {
    /// Runs one command `server_id` sent in message `msg_ref`, and returns the Status
    /// (and Results) it produced. CmdIDs come from `ids`; the session renumbers them.
    fn execute(
        &mut self,
        server_id: &str,
        msg_ref: u32,
        command: &Command,
        ids: &mut CmdIds,
    ) -> Vec<Command>;
}

/// Who started the session: the device itself (Alert 1201) or a package-0 notification (1200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Client,
    Server,
}

/// What the device knows of the server account it opens a session with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `./DevInfo/DevId`: our Source LocURI.
    pub device_id: String,
    /// The account's ServerID: the principal the tree's ACLs name.
    pub server_id: String,
    /// The account's address: our Target LocURI and where package 1 goes.
    pub server_uri: String,
    pub encoding: Encoding,
    /// The largest message we accept, announced in our header.
    pub max_msg_size: usize,
    /// The largest object we take in chunks (announced as MaxObjSize): a larger one is
    /// refused with 413, and nothing of it is kept.
    pub max_obj_size: usize,
    /// Our credentials (CLCRED) and the nonce the server last gave us.
    pub client: Credentials,
    pub client_nonce: Vec<u8>,
    /// What the server must show (SRVCRED) and the nonce we last gave it.
    pub server: Credentials,
    pub server_nonce: Vec<u8>,
    /// Challenges in a row after which the session gives up.
    pub max_auth_attempts: u32,
}

/// What the device must remember when the session has told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A nonce from the authenticated server, for our next Cred: store it (CLCRED AAuthData).
    ClientNonce(Vec<u8>),
    /// The nonce we gave the server for its next Cred: store it (SRVCRED AAuthData).
    ServerNonce(Vec<u8>),
    /// The server proved who it is.
    ServerAuthenticated,
    /// The server's status for one of the alerts we sent.
    AlertStatus { alert: u16, code: StatusCode },
}

/// What to do after a server message.
#[derive(Debug)]
pub enum ClientStep {
    Send(Outgoing),
    Done(ClientOutcome),
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    /// The server's last package needed no answer.
    Completed,
    /// The server aborted the session (Alert 1223).
    Aborted,
}

/// A large object being received in chunks.
#[derive(Debug)]
struct LargeObject {
    target: String,
    /// The first chunk's command: its Meta (Format, Type) describes the whole.
    first: Command,
    data: Option<Data>,
    /// The size the first chunk announced.
    size: Option<u64>,
    /// Larger than our MaxObjSize: every chunk is answered 413, none is kept.
    refused: bool,
}

fn target_of(item: &Item) -> Option<&str> {
    item.target.as_ref().map(|t| t.uri.as_str())
}

/// Where a session stands (the diagram in the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Package 1 not sent yet.
    New,
    /// Package 1 sent; the server has not proved who it is.
    Opening,
    /// The server proved who it is (MD5 and Basic once per session; an HMAC is still
    /// checked on every message).
    Open,
    Ended,
}

/// One management session of an End Device with one server.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    session_id: String,
    last_msg_id: u32,
    url: String,
    peer_max_msg_size: usize,
    prover: Prover,
    verifier: Verifier,
    phase: Phase,
    /// A nonce the server gave us before it had proved itself: stored once it has.
    client_nonce_unsaved: bool,
    auth_attempts: u32,
    /// The server's credentials were used in the message being answered: hand it a
    /// fresh nonce in that answer.
    nonce_due: bool,
    package1: Vec<Command>,
    /// Our statuses and results still to send (a package larger than one message).
    queue: VecDeque<((), Command)>,
    sent_alerts: HashMap<(u32, u32), u16>,
    events: Vec<ClientEvent>,
    large: Option<LargeObject>,
}

impl ClientSession {
    /// A session that will report `devinfo` (the ./DevInfo leaves) and carry `alerts`
    /// (Generic Alerts, for example) in package 1.
    pub fn new(
        config: ClientConfig,
        session_id: String,
        trigger: Trigger,
        devinfo: Vec<Item>,
        alerts: Vec<Alert>,
    ) -> Self {
        let code = match trigger {
            Trigger::Client => alert::CLIENT_INITIATED_MGMT,
            Trigger::Server => alert::SERVER_INITIATED_MGMT,
        };
        let mut package1 = vec![Command::Alert(Alert {
            cmd_id: 0,
            code,
            correlator: None,
            items: vec![],
        })];
        package1.push(Command::Replace(ItemCommand {
            cmd_id: 0,
            meta: None,
            items: devinfo,
        }));
        package1.extend(alerts.into_iter().map(Command::Alert));
        ClientSession {
            prover: Prover::new(config.client.clone(), config.client_nonce.clone()),
            verifier: Verifier::new(config.server.clone(), config.server_nonce.clone()),
            url: config.server_uri.clone(),
            peer_max_msg_size: config.max_msg_size,
            config,
            session_id,
            last_msg_id: 0,
            phase: Phase::New,
            client_nonce_unsaved: false,
            auth_attempts: 0,
            nonce_due: false,
            package1,
            queue: VecDeque::new(),
            sent_alerts: HashMap::new(),
            events: Vec::new(),
            large: None,
        }
    }

    /// Nonces handed to the server before the one in the configuration, that a message
    /// lost on the way (or a server that died before storing the newer one) may leave
    /// the server using: its credentials built with one of them are good, once.
    pub fn accept_previous_server_nonces(&mut self, previous: Vec<Vec<u8>>) {
        self.verifier.accept_previous(previous);
    }

    /// Package 1.
    pub fn start(&mut self) -> Result<Outgoing, SessionError> {
        if self.phase != Phase::New {
            return Err(Misuse::AlreadyStarted.into());
        }
        self.phase = Phase::Opening;
        self.send_package1()
    }

    /// Package 1, first or again after a challenge.
    fn send_package1(&mut self) -> Result<Outgoing, SessionError> {
        self.send(self.package1.clone(), true, &mut Vec::new)
    }

    /// The session ends with `outcome`.
    fn end(&mut self, outcome: ClientOutcome) -> ClientStep {
        self.phase = Phase::Ended;
        ClientStep::Done(outcome)
    }

    /// Everything the device must persist that the session learnt since the last call.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Reads one server message and says what to send next, if anything.
    /// `fresh_nonce` supplies a new random nonce when one must be handed out.
    pub fn receive(
        &mut self,
        raw: &[u8],
        hmac: Option<&str>,
        executor: &mut dyn Executor,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<ClientStep, SessionError> {
        match self.phase {
            Phase::New => return Err(Misuse::NotStarted.into()),
            Phase::Ended => return Err(Misuse::Ended.into()),
            Phase::Opening | Phase::Open => {}
        }
        let message = self.config.encoding.decode(raw)?;
        let header = &message.header;
        if header.session_id != self.session_id {
            return Err(SessionError::OtherSession {
                device: header.target.uri.clone(),
                session: header.session_id.clone(),
            });
        }
        if let Some(uri) = &header.resp_uri {
            self.url.clone_from(uri);
        }
        if let Some(max) = header.meta.as_ref().and_then(|m| m.max_msg_size) {
            self.peer_max_msg_size = usize::try_from(max).unwrap_or(usize::MAX);
        }
        let msg_ref = header.msg_id;

        // How the server judged our credentials.
        let Some(verdict_on_us) = self.read_statuses(&message.body.commands) else {
            return Err(SessionError::NoHeaderStatus);
        };
        match verdict_on_us.code {
            status::INVALID_CREDENTIALS | status::MISSING_CREDENTIALS => {
                self.auth_attempts += 1;
                if self.auth_attempts >= self.config.max_auth_attempts {
                    return Err(SessionError::AuthenticationFailed(verdict_on_us.code));
                }
                let chal = verdict_on_us
                    .chal
                    .as_ref()
                    .ok_or(SessionError::ChallengeMissing(verdict_on_us.code))?;
                self.take_challenge(chal)?;
                debug!(
                    code = verdict_on_us.code.get(),
                    "challenged: sending package 1 again"
                );
                return self.send_package1().map(ClientStep::Send);
            }
            code if code.is_success() => {
                if let Some(chal) = &verdict_on_us.chal {
                    self.take_challenge(chal)?;
                }
            }
            code => return Err(SessionError::Rejected(code)),
        }

        // How we judge the server's.
        let our_status = self.judge_server(&message, raw, hmac, fresh_nonce)?;
        let server_ok = our_status.code.is_success();
        let refusal = our_status.code;
        let mut leading = vec![Command::Status(our_status)];
        let mut wants_our_next_message = false;
        let mut ids = CmdIds::new();
        for command in &message.body.commands {
            match command {
                Command::Status(_) | Command::Results(_) => {}
                _ if !server_ok => self.queue_status(command, msg_ref, refusal),
                Command::Alert(a) if a.code == alert::SESSION_ABORT => {
                    return Ok(self.end(ClientOutcome::Aborted));
                }
                Command::Alert(a) if a.code == alert::NEXT_MESSAGE => {
                    wants_our_next_message = true;
                    self.queue_status(command, msg_ref, status::OK);
                }
                _ => self.run(command, msg_ref, executor, &mut ids),
            }
        }
        if message.body.is_final {
            // The server's package ended in the middle of a large object.
            self.abandon_large_object();
        }

        if wants_our_next_message {
            // The server asked for the rest of our package.
            return self.send(leading, true, fresh_nonce).map(ClientStep::Send);
        }
        if !message.body.is_final {
            // The server's package goes on: answer and ask for its next message.
            leading.push(next_message_alert());
            return self.send(leading, false, fresh_nonce).map(ClientStep::Send);
        }
        if self.queue.is_empty() && server_ok {
            return Ok(self.end(ClientOutcome::Completed));
        }
        self.send(leading, true, fresh_nonce).map(ClientStep::Send)
    }

    /// Runs one server command, reassembling large objects (DM large object delivery):
    /// each chunk but the last is answered 213, the whole object runs once complete and
    /// its size checked (424 if it differs from the announced one). An object that
    /// announces, or grows to, more than our MaxObjSize gets 413 for it and every
    /// chunk after, and is never kept or run.
    fn run(
        &mut self,
        command: &Command,
        msg_ref: u32,
        executor: &mut dyn Executor,
        ids: &mut CmdIds,
    ) {
        let chunk = match command {
            Command::Add(c) | Command::Replace(c) if c.items.len() == 1 => c.items.first(),
            _ => None,
        };
        let continues =
            |large: &LargeObject| chunk.and_then(target_of) == Some(large.target.as_str());
        if self.large.as_ref().is_some_and(|large| !continues(large)) {
            // Anything but the next chunk interrupts a large object.
            self.abandon_large_object();
        }
        let Some(item) = chunk.filter(|item| item.more_data || self.large.is_some()) else {
            let replies = executor.execute(&self.config.server_id, msg_ref, command, ids);
            self.queue.extend(replies.into_iter().map(|c| ((), c)));
            return;
        };
        let large = self.large.get_or_insert_with(|| LargeObject {
            target: target_of(item).unwrap_or_default().to_owned(),
            first: command.clone(),
            data: None,
            size: item.meta.as_ref().and_then(|m| m.size),
            refused: false,
        });
        if !large.refused {
            crate::packer::append_chunk(&mut large.data, item.data.as_ref());
            let max = self.config.max_obj_size;
            let received = large.data.as_ref().map_or(0, Data::len);
            if large.size.is_some_and(|size| size > max as u64) || received > max {
                large.refused = true;
                large.data = None;
            }
        }
        if large.refused {
            if !item.more_data {
                self.large = None;
            }
            self.queue_status(command, msg_ref, status::REQUEST_ENTITY_TOO_LARGE);
            return;
        }
        if item.more_data {
            self.queue_status(command, msg_ref, status::CHUNKED_ITEM_ACCEPTED);
            return;
        }
        let Some(large) = self.large.take() else {
            return;
        };
        let received = large.data.as_ref().map_or(0, Data::len) as u64;
        if large.size.is_some_and(|size| size != received) {
            self.queue_status(command, msg_ref, status::SIZE_MISMATCH);
            return;
        }
        let mut whole = large.first;
        whole.set_cmd_id(command.cmd_id());
        if let Command::Add(c) | Command::Replace(c) = &mut whole
            && let Some(item) = c.items.first_mut()
        {
            item.data = large.data;
            item.more_data = false;
        }
        let replies = executor.execute(&self.config.server_id, msg_ref, &whole, ids);
        self.queue.extend(replies.into_iter().map(|c| ((), c)));
    }

    /// A large object that will not be completed: Alert 1225 (no end of data) names it.
    fn abandon_large_object(&mut self) {
        if let Some(large) = self.large.take() {
            self.queue.push_back((
                (),
                Command::Alert(Alert {
                    cmd_id: 0,
                    code: alert::NO_END_OF_DATA,
                    correlator: None,
                    items: vec![Item {
                        source: Some(gwmo_proto::Location::new(large.target)),
                        ..Item::default()
                    }],
                }),
            ));
        }
    }

    /// Records the statuses of our alerts; returns the status of our SyncHdr.
    fn read_statuses<'m>(&mut self, commands: &'m [Command]) -> Option<&'m Status> {
        let mut header_status = None;
        for command in commands {
            if let Command::Status(s) = command {
                if s.cmd_ref == 0 {
                    header_status = Some(s);
                } else if let Some(&alert) = self.sent_alerts.get(&(s.msg_ref, s.cmd_ref)) {
                    self.events.push(ClientEvent::AlertStatus {
                        alert,
                        code: s.code,
                    });
                }
            }
        }
        header_status
    }

    fn take_challenge(&mut self, chal: &gwmo_proto::Chal) -> Result<(), SessionError> {
        if self.prover.accept_challenge(chal)? {
            // Use the newest nonce at once, but store it only from an authenticated server.
            if self.phase == Phase::Open {
                self.events
                    .push(ClientEvent::ClientNonce(self.prover.nonce().to_vec()));
            } else {
                self.client_nonce_unsaved = true;
            }
        }
        Ok(())
    }

    /// Checks the server's credentials when they are due, and returns the Status for
    /// its SyncHdr: a success code when the server may be obeyed.
    fn judge_server(
        &mut self,
        message: &Message,
        raw: &[u8],
        hmac: Option<&str>,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<Status, SessionError> {
        self.nonce_due = false;
        let per_message = self.verifier.auth() == gwmo_proto::auth::AuthType::Hmac;
        let mut header_status = header_status(&message.header, status::OK);
        if self.phase != Phase::Open || per_message {
            let held = self.verifier.nonce().to_vec();
            match self.verifier.verify(&message.header, raw, hmac) {
                Verdict::Valid => {
                    if self.verifier.nonce() != held {
                        // The server used a nonce handed out before the one held (the
                        // newer never reached it): that is the one it has.
                        self.events
                            .push(ClientEvent::ServerNonce(self.verifier.nonce().to_vec()));
                    }
                    if self.phase != Phase::Open {
                        self.phase = Phase::Open;
                        self.events.push(ClientEvent::ServerAuthenticated);
                        if std::mem::take(&mut self.client_nonce_unsaved) {
                            self.events
                                .push(ClientEvent::ClientNonce(self.prover.nonce().to_vec()));
                        }
                    }
                    if !per_message {
                        header_status.code = status::AUTHENTICATION_ACCEPTED;
                    }
                    // The used nonce is replaced in the answer, if one is sent: a nonce
                    // that never reaches the server must not become the stored one.
                    self.nonce_due = true;
                }
                verdict => {
                    self.auth_attempts += 1;
                    if self.auth_attempts >= self.config.max_auth_attempts {
                        return Err(SessionError::AuthenticationFailed(
                            status::INVALID_CREDENTIALS,
                        ));
                    }
                    header_status.code = if verdict == Verdict::Missing {
                        status::MISSING_CREDENTIALS
                    } else {
                        status::INVALID_CREDENTIALS
                    };
                    header_status.chal = Some(Box::new(self.verifier.rotate(fresh_nonce())));
                    self.events
                        .push(ClientEvent::ServerNonce(self.verifier.nonce().to_vec()));
                }
            }
        }
        Ok(header_status)
    }

    fn queue_status(&mut self, command: &Command, msg_ref: u32, code: StatusCode) {
        let status = command_status(command, msg_ref, code);
        self.queue.push_back(((), Command::Status(status)));
    }

    /// Sends `leading` and as much of the queue as fits.
    fn send(
        &mut self,
        mut leading: Vec<Command>,
        closes_package: bool,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<Outgoing, SessionError> {
        if std::mem::take(&mut self.nonce_due)
            && let Some(Command::Status(header_status)) = leading.first_mut()
        {
            header_status.chal = Some(Box::new(self.verifier.rotate(fresh_nonce())));
            self.events
                .push(ClientEvent::ServerNonce(self.verifier.nonce().to_vec()));
        }
        self.last_msg_id += 1;
        let msg_id = self.last_msg_id;
        let header = OutgoingHeader {
            session_id: &self.session_id,
            msg_id,
            target: &self.config.server_uri,
            source: &self.config.device_id,
            source_name: self.prover.name(),
            resp_uri: None,
            cred: self.prover.cred(),
            max_msg_size: self.config.max_msg_size,
            max_obj_size: self.config.max_obj_size,
        }
        .build();
        let packed = pack(
            header,
            leading,
            &mut self.queue,
            closes_package,
            self.peer_max_msg_size,
            self.config.encoding,
            Oversized::SendWhole,
        )?;
        for command in &packed.message.body.commands {
            if let Command::Alert(a) = command {
                self.sent_alerts.insert((msg_id, a.cmd_id), a.code);
            }
        }
        Ok(Outgoing {
            url: self.url.clone(),
            content_type: self.config.encoding.content_type(),
            hmac: self.prover.hmac_header(&packed.bytes),
            body: packed.bytes,
        })
    }
}

fn next_message_alert() -> Command {
    Command::Alert(Alert {
        cmd_id: 0,
        code: alert::NEXT_MESSAGE,
        correlator: None,
        items: vec![],
    })
}
