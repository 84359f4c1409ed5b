//! Sans-IO OMA DM 1.2 session state machines, for both sides: bytes in, bytes out.
//!
//! [`ClientSession`] is the End Device's side (package 1, then Status and Results for
//! every server package); [`ServerSession`] is the DM Server's (challenges, queued
//! commands, matching answers to commands). Neither does I/O, reads a clock or draws
//! random numbers: the caller moves the bytes and passes in fresh nonces.

mod client;
mod credentials;
mod packer;
mod server;

pub use client::{
    ClientConfig, ClientEvent, ClientOutcome, ClientSession, ClientStep, Executor, Trigger,
};
pub use credentials::Credentials;
pub use gwmo_proto::auth::AuthType;
pub use server::{
    Answer, CommandOutcome, DeviceAuth, Received, ServerConfig, ServerEvent, ServerReply,
    ServerSession,
};

use gwmo_proto::codes::StatusCode;
use gwmo_proto::{CodecError, Command, Cred, Header, Location, Meta, Status, VER_DTD, VER_PROTO};

/// A message to send, with what its HTTP request or response needs.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where to post it (clients only: the server URL, or the RespURI it gave).
    pub url: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `x-syncml-hmac` header value, when HMAC authentication is in use.
    pub hmac: Option<String>,
}

/// Why a session cannot go on: something the peer sent (every variant but
/// [`SessionError::Misuse`]), or a call out of order on this side.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("malformed message: {0}")]
    Codec(#[from] CodecError),
    #[error("malformed challenge: {0}")]
    Challenge(#[from] gwmo_proto::auth::AuthError),
    #[error("authentication failed (status {0})")]
    AuthenticationFailed(StatusCode),
    #[error("the peer refused the session with status {0}")]
    Rejected(StatusCode),
    #[error("message {0} was already received: replay refused")]
    Replay(u32),
    #[error("the message is of session {session:?} of {device:?}, not this one")]
    OtherSession { device: String, session: String },
    #[error("the server sent no status for our SyncHdr")]
    NoHeaderStatus,
    #[error("status {0} for our SyncHdr came without a challenge")]
    ChallengeMissing(StatusCode),
    #[error("{0}")]
    Misuse(#[from] Misuse),
}

impl SessionError {
    /// Whether the peer is at fault (not the caller).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, SessionError::Misuse(_))
    }
}

/// A call the session's phase does not allow: a bug of the caller, never the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Misuse {
    #[error("the session has ended: nothing more is read")]
    Ended,
    #[error("package 1 has been sent already")]
    AlreadyStarted,
    #[error("package 1 has not been sent yet")]
    NotStarted,
}

/// The SyncHdr of an outgoing message: we are `source` (named by our credentials'
/// name), announcing the largest message we accept.
pub(crate) struct OutgoingHeader<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) msg_id: u32,
    pub(crate) target: &'a str,
    pub(crate) source: &'a str,
    pub(crate) source_name: &'a str,
    pub(crate) resp_uri: Option<String>,
    pub(crate) cred: Option<Cred>,
    pub(crate) max_msg_size: usize,
    pub(crate) max_obj_size: usize,
}

impl OutgoingHeader<'_> {
    pub(crate) fn build(self) -> Header {
        Header {
            ver_dtd: VER_DTD.into(),
            ver_proto: VER_PROTO.into(),
            session_id: self.session_id.to_owned(),
            msg_id: self.msg_id,
            target: Location::new(self.target),
            source: Location {
                uri: self.source.to_owned(),
                name: Some(self.source_name.to_owned()),
            },
            resp_uri: self.resp_uri,
            cred: self.cred,
            meta: Some(Box::new(Meta {
                max_msg_size: Some(self.max_msg_size as u64),
                max_obj_size: Some(self.max_obj_size as u64),
                ..Meta::default()
            })),
        }
    }
}

/// The Status answering a message's SyncHdr.
pub(crate) fn header_status(header: &Header, code: StatusCode) -> Status {
    Status {
        cmd_id: 0,
        msg_ref: header.msg_id,
        cmd_ref: 0,
        cmd: "SyncHdr".into(),
        target_refs: vec![header.target.uri.clone()],
        source_refs: vec![header.source.uri.clone()],
        chal: None,
        code,
        items: vec![],
    }
}

/// The Status answering a command, naming the targets of its items.
pub(crate) fn command_status(command: &Command, msg_ref: u32, code: StatusCode) -> Status {
    Status {
        cmd_id: 0,
        msg_ref,
        cmd_ref: command.cmd_id(),
        cmd: command.name().into(),
        target_refs: command
            .items()
            .iter()
            .filter_map(|item| item.target.as_ref().map(|t| t.uri.clone()))
            .collect(),
        source_refs: vec![],
        chal: None,
        code,
        items: vec![],
    }
}
