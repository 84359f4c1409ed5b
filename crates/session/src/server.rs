//! The DM Server's side of a management session with one device, sans-IO: it
//! authenticates the device (challenging it with a fresh nonce when needed), takes
//! its DevInfo and alerts, sends the queued management commands within the device's
//! MaxMsgSize, and matches the Status and Results that come back to those commands.
//!
//! Its phases ([`ServerSession::receive`] reads a message; an accepted one is answered
//! with [`ServerSession::reply`], a refused one at once):
//!
//! ```text
//!                      credentials fail, attempts left
//!                         +-------+
//!                         v       |
//!   new ------------> Unauthenticated --- credentials pass ---> Open <--+
//!                         |                                      |  |   | a message
//!                         | credentials fail,                    |  +---+ accepted
//!                         | no attempts left                     |        and answered
//!                         v                                      v
//!                       Ended  <---- an answer with nothing left to send, Alert 1223,
//!                                    or (HMAC) a message failing with no attempts left
//! ```
//!
//! A message after the end, or a second message before the first was answered, is
//! the caller's mistake ([`Misuse`]); a message that names another session, repeats a
//! MsgID, or fails its credentials too often is the device's ([`SessionError`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use gwmo_proto::auth::AuthType;
use gwmo_proto::codes::{StatusCode, alert, status};
use gwmo_proto::{Alert, Command, Data, Encoding, Item, Message, Status};
use tracing::debug;

use crate::credentials::{Credentials, Prover, Verdict, Verifier};
use crate::packer::{Oversized, pack};
use crate::{Misuse, Outgoing, OutgoingHeader, SessionError, command_status, header_status};

/// The server's own settings for its sessions.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our Source LocURI (the URL devices post to).
    pub server_uri: String,
    /// Where the device must send its next message, if not to `server_uri`.
    pub resp_uri: Option<String>,
    /// The largest message we accept, announced in our header.
    pub max_msg_size: usize,
    /// The largest result we keep whole (announced as MaxObjSize): of a larger one only
    /// its size is kept.
    pub max_obj_size: usize,
    /// Failed authentications in a session after which it is ended.
    pub max_auth_attempts: u32,
}

/// A large result being received in chunks.
#[derive(Debug)]
struct PartialResult {
    /// The first chunk's item, with the data received so far while it is within our
    /// MaxObjSize; past it, none.
    item: Item,
    /// Bytes received so far.
    received: usize,
}

/// Both directions of authentication with one device, as the store holds them.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    /// What the device must show, and the nonce we last gave it.
    pub client: Credentials,
    pub client_nonce: Vec<u8>,
    /// What we show the device, and the nonce it last gave us.
    pub server: Credentials,
    pub server_nonce: Vec<u8>,
}

/// What became of one queued command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The command's own status code.
    pub status: StatusCode,
    /// The statuses of the members of an Atomic or Sequence, in order: (command, code).
    pub members: Vec<(String, StatusCode)>,
    /// The items of its Results (for a Get).
    pub results: Vec<Item>,
}

/// What the device answered to one queued command so far.
#[derive(Debug, Clone, Default)]
struct Answered {
    /// Its own Status, once it came.
    status: Option<StatusCode>,
    members: Vec<(String, StatusCode)>,
    results: Vec<Item>,
}

/// What the server must act on or persist, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The device proved who it is (once per session).
    Authenticated,
    /// The device's credentials were missing (407) or wrong (401).
    AuthenticationFailed { code: StatusCode },
    /// The device's credentials were checked against `used`; it must build its next
    /// Cred with `next`. Persist before replying, and only if the nonce held is still
    /// `used` (one credential, one session): otherwise refuse the message.
    ClientNonceIssued { used: Vec<u8>, next: Vec<u8> },
    /// The nonce the device gave us for our next Cred: persist it.
    ServerNonceReceived(Vec<u8>),
    /// The device's ./DevInfo leaves, by URI.
    DevInfo(BTreeMap<String, String>),
    /// A Generic Alert (1226) or Client Event (1224) from the device.
    Alert(Alert),
    /// A queued command came back complete (the device's package with its status ended).
    CommandDone { tag: u64, outcome: CommandOutcome },
    /// The device aborted the session (Alert 1223).
    Aborted,
}

/// What [`ServerSession::receive`] made of a message.
#[derive(Debug)]
pub enum Received {
    /// The credentials failed: send this answer (the challenge), nothing else.
    Refused(ServerReply),
    /// Authenticated: enqueue commands if any, persist the events, then build the
    /// answer with [`ServerSession::reply`].
    Accepted(Answer),
}

/// The statuses of an accepted message, to be answered with [`ServerSession::reply`].
#[derive(Debug)]
#[must_use = "an accepted message must be answered"]
pub struct Answer {
    statuses: Vec<Command>,
    /// Whether queued commands may follow the statuses (not while the device's own
    /// package is still coming in).
    sends_commands: bool,
    /// Whether the answer ends the session; `None`: when nothing is left to send.
    ends: Option<bool>,
}

/// How reading a message's commands ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Read,
    /// The device aborted the session (Alert 1223): the rest is not read.
    Aborted,
}

/// The answer to one device message.
#[derive(Debug)]
pub struct ServerReply {
    pub outgoing: Outgoing,
    /// The session is over: nothing more will come from the device.
    pub ended: bool,
}

/// Where a session stands (the diagram in the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No message of the device has passed its credentials yet.
    Unauthenticated,
    /// The device proved who it is: its messages are answered, commands go to it.
    Open,
    /// Over: nothing more is read.
    Ended { authenticated: bool },
}

/// One management session of the server with one device.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    device_id: String,
    session_id: String,
    encoding: Encoding,
    verifier: Verifier,
    prover: Prover,
    phase: Phase,
    /// The device accepted our credentials (MD5/Basic): no need to show them again.
    accepted_by_device: bool,
    auth_failures: u32,
    last_msg_id_in: u32,
    last_msg_id_out: u32,
    peer_max_msg_size: usize,
    queue: VecDeque<(u64, Command)>,
    /// Which queued command each (MsgID, CmdID) we sent belongs to, and its own CmdID.
    in_flight: HashMap<(u32, u32), (u64, u32)>,
    /// The commands of our last message, to send again if the device refused our credentials.
    last_sent: Vec<(u64, Command)>,
    outcomes: BTreeMap<u64, Answered>,
    /// The queued commands sent as Atomic (their outcome may have to be settled from
    /// their members' statuses).
    atomics: HashSet<u64>,
    events: Vec<ServerEvent>,
    /// The chunks of a large result received so far.
    partial_result: Option<PartialResult>,
}

impl ServerSession {
    /// A session opened by the first message of `device_id` in `session_id`.
    pub fn new(
        config: ServerConfig,
        device_id: String,
        session_id: String,
        encoding: Encoding,
        auth: DeviceAuth,
    ) -> Self {
        ServerSession {
            verifier: Verifier::new(auth.client, auth.client_nonce),
            prover: Prover::new(auth.server, auth.server_nonce),
            peer_max_msg_size: config.max_msg_size,
            config,
            device_id,
            session_id,
            encoding,
            phase: Phase::Unauthenticated,
            accepted_by_device: false,
            auth_failures: 0,
            last_msg_id_in: 0,
            last_msg_id_out: 0,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            last_sent: Vec::new(),
            outcomes: BTreeMap::new(),
            atomics: HashSet::new(),
            events: Vec::new(),
            partial_result: None,
        }
    }

    /// Queues a management command; `tag` names it in [`ServerEvent::CommandDone`].
    /// Commands are sent once the device has authenticated.
    pub fn enqueue(&mut self, tag: u64, command: Command) {
        self.queue.push_back((tag, command));
    }

    pub fn take_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn is_device_authenticated(&self) -> bool {
        matches!(
            self.phase,
            Phase::Open
                | Phase::Ended {
                    authenticated: true
                }
        )
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended { .. })
    }

    fn end(&mut self) {
        self.phase = Phase::Ended {
            authenticated: self.is_device_authenticated(),
        };
    }

    /// The MsgID of the last message of the device that was accepted (0: none yet).
    pub fn last_accepted_msg_id(&self) -> u32 {
        self.last_msg_id_in
    }

    /// Tags of queued commands not sent yet.
    pub fn unsent_tags(&self) -> Vec<u64> {
        self.queue.iter().map(|(tag, _)| *tag).collect()
    }

    /// Reads one message of the device (`raw` are its exact bytes, for HMAC).
    /// `fresh_nonce` supplies new random nonces. A message whose credentials fail is
    /// answered at once ([`Received::Refused`]); otherwise the caller may
    /// [`enqueue`](Self::enqueue) commands, persist the events, and then build the
    /// answer with [`reply`](Self::reply). Each message is answered before the next is
    /// read.
    pub fn receive(
        &mut self,
        message: &Message,
        raw: &[u8],
        hmac: Option<&str>,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<Received, SessionError> {
        if self.is_ended() {
            return Err(Misuse::Ended.into());
        }
        let header = &message.header;
        if self.last_msg_id_out == 0 {
            // Our messages are numbered after the device's: a device challenged before
            // this session opened starts it with message 2.
            self.last_msg_id_out = header.msg_id.saturating_sub(1);
        }
        if header.session_id != self.session_id || header.source.uri != self.device_id {
            return Err(SessionError::OtherSession {
                device: header.source.uri.clone(),
                session: header.session_id.clone(),
            });
        }
        if header.msg_id <= self.last_msg_id_in {
            return Err(SessionError::Replay(header.msg_id));
        }
        let our_status = self.judge_device(message, raw, hmac, fresh_nonce);
        if !status::is_success(our_status.code) {
            return self.refuse(message, our_status).map(Received::Refused);
        }
        // Only a message that passed its credentials moves the session on.
        self.last_msg_id_in = header.msg_id;
        if let Some(max) = header.meta.as_ref().and_then(|m| m.max_msg_size) {
            self.peer_max_msg_size = usize::try_from(max).unwrap_or(usize::MAX);
        }

        let mut statuses = vec![Command::Status(our_status)];
        if self.take_commands(message, &mut statuses)? == Body::Aborted {
            return Ok(Received::Accepted(Answer {
                statuses,
                sends_commands: false,
                ends: Some(true),
            }));
        }

        let asks_our_next_message = message
            .body
            .commands
            .iter()
            .any(|c| matches!(c, Command::Alert(a) if a.code == alert::NEXT_MESSAGE));
        if !message.body.is_final && !asks_our_next_message {
            // The device's package goes on: ask for its next message, send nothing new.
            statuses.push(Command::Alert(Alert {
                cmd_id: 0,
                code: alert::NEXT_MESSAGE,
                correlator: None,
                items: vec![],
            }));
            return Ok(Received::Accepted(Answer {
                statuses,
                sends_commands: false,
                ends: Some(false),
            }));
        }
        if message.body.is_final {
            self.settle_answered();
        }
        Ok(Received::Accepted(Answer {
            statuses,
            sends_commands: true,
            ends: (!message.body.is_final).then_some(false),
        }))
    }

    /// Reads the commands of an accepted message: the device's verdict on our
    /// credentials, the Status and Results of our commands, its alerts and DevInfo;
    /// appends the statuses they get to `statuses`.
    fn take_commands(
        &mut self,
        message: &Message,
        statuses: &mut Vec<Command>,
    ) -> Result<Body, SessionError> {
        let msg_ref = message.header.msg_id;
        let mut devinfo = BTreeMap::new();
        let mut resend = false;
        // When the device refused our credentials, its other statuses only say that
        // it ran nothing: the last message goes again instead.
        for command in &message.body.commands {
            if let Command::Status(s) = command
                && s.cmd_ref == 0
            {
                resend |= self.read_verdict_on_us(s)?;
            }
        }
        for command in &message.body.commands {
            match command {
                Command::Status(s) if s.cmd_ref == 0 || resend => {}
                Command::Status(s) => self.read_command_status(s),
                Command::Results(_) if resend => {}
                Command::Results(r) => self.read_results(r),
                Command::Alert(a) => {
                    let code = match a.code {
                        alert::SESSION_ABORT => {
                            self.events.push(ServerEvent::Aborted);
                            return Ok(Body::Aborted);
                        }
                        alert::CLIENT_INITIATED_MGMT
                        | alert::SERVER_INITIATED_MGMT
                        | alert::NEXT_MESSAGE => status::OK,
                        alert::GENERIC_ALERT | alert::CLIENT_EVENT => {
                            self.events.push(ServerEvent::Alert(a.clone()));
                            status::OK
                        }
                        _ => status::OPTIONAL_FEATURE_NOT_SUPPORTED,
                    };
                    statuses.push(Command::Status(command_status(command, msg_ref, code)));
                }
                Command::Replace(r) => {
                    devinfo.extend(r.items.iter().filter_map(|item| {
                        let uri = item.source.as_ref().or(item.target.as_ref())?.uri.clone();
                        let value = item.data.as_ref()?.as_text()?.to_owned();
                        Some((uri, value))
                    }));
                    statuses.push(Command::Status(command_status(
                        command,
                        msg_ref,
                        status::OK,
                    )));
                }
                // A client may send only Replace, Results, Alert and Status.
                _ => statuses.push(Command::Status(command_status(
                    command,
                    msg_ref,
                    status::COMMAND_NOT_ALLOWED,
                ))),
            }
        }
        if !devinfo.is_empty() {
            self.events.push(ServerEvent::DevInfo(devinfo));
        }
        if resend {
            let again = std::mem::take(&mut self.last_sent);
            for entry in again.into_iter().rev() {
                self.queue.push_front(entry);
            }
        }
        Ok(Body::Read)
    }

    /// The answer to the message [`receive`](Self::receive) accepted: its statuses,
    /// then queued commands as far as the device's MaxMsgSize allows. The session
    /// ends when nothing was left to send.
    pub fn reply(&mut self, answer: Answer) -> Result<ServerReply, SessionError> {
        let Answer {
            statuses,
            sends_commands,
            ends,
        } = answer;
        let ends = ends.unwrap_or(self.queue.is_empty());
        if !sends_commands {
            return self.build(statuses, &mut VecDeque::new(), false, ends);
        }
        let mut queue = std::mem::take(&mut self.queue);
        let reply = self.build(statuses, &mut queue, true, ends);
        self.queue = queue;
        reply
    }

    /// Checks the device's credentials when due; returns the Status for its SyncHdr.
    fn judge_device(
        &mut self,
        message: &Message,
        raw: &[u8],
        hmac: Option<&str>,
        fresh_nonce: &mut dyn FnMut() -> Vec<u8>,
    ) -> Status {
        let per_message = self.verifier.auth() == AuthType::Hmac;
        let mut header_status = header_status(&message.header, status::OK);
        if self.is_device_authenticated() && !per_message {
            return header_status;
        }
        let verdict = self.verifier.verify(&message.header, raw, hmac);
        header_status.code = match verdict {
            Verdict::Valid if per_message => status::OK,
            Verdict::Valid => status::AUTHENTICATION_ACCEPTED,
            Verdict::Missing => status::MISSING_CREDENTIALS,
            Verdict::Invalid => status::INVALID_CREDENTIALS,
        };
        if verdict != Verdict::Valid {
            // A refused message proves nothing and consumes nothing: the challenge
            // repeats the nonce held, so a stranger's refused messages never change
            // what the real device must answer.
            self.auth_failures += 1;
            self.events.push(ServerEvent::AuthenticationFailed {
                code: header_status.code,
            });
            header_status.chal = Some(Box::new(self.verifier.challenge()));
            return header_status;
        }
        // A used nonce is never good again: this is what refuses a replayed Cred. The
        // store swaps it only if no other session consumed it first.
        let used = self.verifier.nonce().to_vec();
        header_status.chal = Some(Box::new(self.verifier.rotate(fresh_nonce())));
        self.events.push(ServerEvent::ClientNonceIssued {
            used,
            next: self.verifier.nonce().to_vec(),
        });
        if self.phase == Phase::Unauthenticated {
            self.phase = Phase::Open;
            self.events.push(ServerEvent::Authenticated);
        }
        header_status
    }

    /// The reply to a message whose credentials failed: a Status for the header (with
    /// the challenge) and the same code for every command, nothing run.
    fn refuse(&mut self, message: &Message, header: Status) -> Result<ServerReply, SessionError> {
        let code = header.code;
        let mut statuses = vec![Command::Status(header)];
        statuses.extend(message.body.commands.iter().filter_map(|c| match c {
            Command::Status(_) | Command::Results(_) => None,
            _ => Some(Command::Status(command_status(
                c,
                message.header.msg_id,
                code,
            ))),
        }));
        let give_up = self.auth_failures >= self.config.max_auth_attempts;
        if give_up {
            debug!(device = %self.device_id, "authentication failed too often: ending the session");
            self.end();
        }
        // Commands are never sent to a device that has not authenticated.
        self.build(statuses, &mut VecDeque::new(), true, give_up)
    }

    /// The device's Status for our SyncHdr. Returns true when it refused our
    /// credentials and the last message must go again.
    fn read_verdict_on_us(&mut self, verdict: &Status) -> Result<bool, SessionError> {
        if let Some(chal) = &verdict.chal
            && self.prover.accept_challenge(chal)?
        {
            self.events.push(ServerEvent::ServerNonceReceived(
                self.prover.nonce().to_vec(),
            ));
        }
        match verdict.code {
            status::AUTHENTICATION_ACCEPTED => {
                self.accepted_by_device = true;
                Ok(false)
            }
            status::INVALID_CREDENTIALS | status::MISSING_CREDENTIALS => {
                self.auth_failures += 1;
                if self.auth_failures > self.config.max_auth_attempts {
                    return Err(SessionError::AuthenticationFailed(verdict.code));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn read_command_status(&mut self, s: &Status) {
        let Some(&(tag, own_id)) = self.in_flight.get(&(s.msg_ref, s.cmd_ref)) else {
            return;
        };
        let outcome = self.outcomes.entry(tag).or_default();
        if s.cmd_ref == own_id {
            outcome.status = Some(s.code);
        } else {
            outcome.members.push((s.cmd.to_string(), s.code));
        }
    }

    fn read_results(&mut self, r: &gwmo_proto::Results) {
        // MsgRef may be left out when the Results answer the last message we sent.
        let sent_in = r.msg_ref.unwrap_or(self.last_msg_id_out);
        let Some(&(tag, _)) = self.in_flight.get(&(sent_in, r.cmd_ref)) else {
            return;
        };
        for item in &r.items {
            // A large result comes in chunks: MoreData on all but the last. One larger
            // than our MaxObjSize is not kept: only its size is.
            let mut partial = self.partial_result.take().unwrap_or_else(|| PartialResult {
                item: Item {
                    data: None,
                    ..item.clone()
                },
                received: 0,
            });
            partial.received += item.data.as_ref().map_or(0, Data::len);
            let too_large = partial.received > self.config.max_obj_size;
            if too_large {
                partial.item.data = None;
            } else {
                crate::packer::append_chunk(&mut partial.item.data, item.data.as_ref());
            }
            if item.more_data {
                self.partial_result = Some(partial);
                continue;
            }
            let mut whole = partial.item;
            whole.more_data = false;
            if too_large {
                whole.meta.get_or_insert_default().size = Some(partial.received as u64);
            }
            self.outcomes.entry(tag).or_default().results.push(whole);
        }
    }

    /// Every command the device answered is done, never to be sent again: called when
    /// its package ends, and by the caller when the session is dropped before that (so
    /// that only what was never answered goes back to the queue). One whose own Status
    /// is missing (clients that answer only an Atomic's members, or a Get only with
    /// Results) is settled from what came: an Atomic succeeded if all its members did
    /// (507 otherwise), anything else 200.
    pub fn settle_answered(&mut self) {
        let answered: Vec<u64> = self
            .outcomes
            .iter()
            .filter(|(_, o)| o.status.is_some() || !o.members.is_empty() || !o.results.is_empty())
            .map(|(tag, _)| *tag)
            .collect();
        for tag in answered {
            if let Some(answered) = self.outcomes.remove(&tag) {
                let failed = answered.members.iter().any(|(_, code)| !code.is_success());
                let status =
                    answered
                        .status
                        .unwrap_or(match (self.atomics.contains(&tag), failed) {
                            (true, true) => status::ATOMIC_FAILED,
                            _ => status::OK,
                        });
                self.atomics.remove(&tag);
                self.in_flight.retain(|_, (t, _)| *t != tag);
                let outcome = CommandOutcome {
                    status,
                    members: answered.members,
                    results: answered.results,
                };
                self.events.push(ServerEvent::CommandDone { tag, outcome });
            }
        }
    }

    fn build(
        &mut self,
        leading: Vec<Command>,
        queue: &mut VecDeque<(u64, Command)>,
        closes_package: bool,
        ends: bool,
    ) -> Result<ServerReply, SessionError> {
        self.last_msg_id_out += 1;
        let msg_id = self.last_msg_id_out;
        let authenticated = self.is_device_authenticated();
        let shows_credentials = authenticated && !self.accepted_by_device;
        let header = OutgoingHeader {
            session_id: &self.session_id,
            msg_id,
            target: &self.device_id,
            source: &self.config.server_uri,
            source_name: self.prover.name(),
            // The address with the session's token, only for a device that proved who
            // it is; a refused message opens no session, and its answer names the
            // plain address (some clients read a RespURI in every header).
            resp_uri: match authenticated {
                true => self.config.resp_uri.clone(),
                false => self
                    .config
                    .resp_uri
                    .as_ref()
                    .map(|_| self.config.server_uri.clone()),
            },
            cred: shows_credentials.then(|| self.prover.cred()).flatten(),
            max_msg_size: self.config.max_msg_size,
            max_obj_size: self.config.max_obj_size,
        }
        .build();
        let packed = pack(
            header,
            leading,
            queue,
            closes_package,
            self.peer_max_msg_size,
            self.encoding,
            Oversized::SetAside,
        )?;
        // A command that fits in no message of this device (and cannot go in chunks)
        // is settled 413 instead of sent, so that it never loops.
        for tag in &packed.too_large {
            debug!(
                command = tag,
                limit = self.peer_max_msg_size,
                "a command larger than the device's MaxMsgSize: refused"
            );
            self.events.push(ServerEvent::CommandDone {
                tag: *tag,
                outcome: CommandOutcome {
                    status: status::REQUEST_ENTITY_TOO_LARGE,
                    members: Vec::new(),
                    results: Vec::new(),
                },
            });
        }
        // Nothing was left to send but what was refused: this answer ends the session.
        let ends = ends
            || (!packed.too_large.is_empty()
                && closes_package
                && queue.is_empty()
                && packed.sent.is_empty());
        self.last_sent.clear();
        let sent_commands = packed
            .message
            .body
            .commands
            .iter()
            .rev()
            .take(packed.sent.len());
        let mut sent_commands: Vec<Command> = sent_commands.cloned().collect();
        sent_commands.reverse();
        for ((tag, ids), command) in packed.sent.into_iter().zip(sent_commands) {
            let own_id = command.cmd_id();
            if matches!(command, Command::Atomic(_)) {
                self.atomics.insert(tag);
            }
            for id in ids {
                self.in_flight.insert((msg_id, id), (tag, own_id));
            }
            self.last_sent.push((tag, command));
        }
        if ends {
            self.end();
        }
        let hmac = if authenticated && self.prover.auth() == AuthType::Hmac {
            self.prover.hmac_header(&packed.bytes)
        } else {
            None
        };
        Ok(ServerReply {
            outgoing: Outgoing {
                url: String::new(),
                content_type: self.encoding.content_type(),
                body: packed.bytes,
                hmac,
            },
            ended: ends,
        })
    }
}
