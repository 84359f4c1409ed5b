//! A stranger posing as a device, against the server's session: whatever sequence of
//! messages it sends (any MsgIDs, this session's or another's, no credentials, wrong
//! ones, ones made with the right name and a wrong secret or a stale nonce, an HMAC
//! header it made up, any commands), the session never authenticates it, never hands
//! it a queued command, and records nothing of what it said.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use gwmo_proto::auth::{self, AuthType};
use gwmo_proto::codes::{StatusCode, alert};
use gwmo_proto::{
    Alert, Command, Data, Encoding, Header, Item, ItemCommand, Location, Message, Meta, Status,
    VER_DTD, VER_PROTO,
};
use gwmo_session::{Credentials, DeviceAuth, Received, ServerConfig, ServerEvent, ServerSession};
use proptest::prelude::*;

const DEVICE: &str = "IMEI:490154203237518";
const SESSION: &str = "1A";
const SECRET: &str = "client-secret";

fn session(auth: AuthType) -> ServerSession {
    let creds = |name: &str, secret: &str| Credentials {
        auth,
        name: name.into(),
        secret: secret.into(),
    };
    let mut session = ServerSession::new(
        ServerConfig {
            server_uri: "https://dms/dm".into(),
            resp_uri: None,
            max_msg_size: 1 << 20,
            max_obj_size: 1 << 20,
            max_auth_attempts: 3,
        },
        DEVICE.into(),
        SESSION.into(),
        Encoding::Xml,
        DeviceAuth {
            client: creds("device-1", SECRET),
            client_nonce: b"n-current".to_vec(),
            server: creds("gwmo-dms", "server-secret"),
            server_nonce: b"s-1".to_vec(),
        },
    );
    session.enqueue(
        7,
        Command::Replace(ItemCommand {
            cmd_id: 0,
            meta: None,
            items: vec![Item {
                target: Some(Location::new("./Vendor/Queued")),
                data: Some(Data::Text("for the device only".into())),
                ..Item::default()
            }],
        }),
    );
    session
}

/// The credentials a stranger can put in a header: it does not know the secret.
#[derive(Debug, Clone)]
enum Forged {
    None,
    Garbage(String),
    WrongSecret(AuthType, String),
    StaleNonce(AuthType),
}

fn forged() -> impl Strategy<Value = Forged> {
    let scheme = prop_oneof![Just(AuthType::Basic), Just(AuthType::Md5)];
    prop_oneof![
        Just(Forged::None),
        "[A-Za-z0-9+/=]{0,40}".prop_map(Forged::Garbage),
        (scheme.clone(), "[a-z]{1,12}").prop_map(|(a, s)| Forged::WrongSecret(a, s)),
        scheme.prop_map(Forged::StaleNonce),
    ]
}

fn cred(forged: &Forged) -> Option<gwmo_proto::Cred> {
    match forged {
        Forged::None => None,
        Forged::Garbage(data) => Some(gwmo_proto::Cred {
            meta: Meta {
                r#type: Some(AuthType::Md5.meta_type().into()),
                format: Some("b64".into()),
                ..Meta::default()
            },
            data: data.clone(),
        }),
        Forged::WrongSecret(scheme, secret) => {
            auth::cred(*scheme, "device-1", secret, b"n-current")
        }
        // The right secret, but a nonce this session does not hold: a captured Cred.
        Forged::StaleNonce(scheme) => {
            auth::cred(*scheme, "device-1", SECRET, b"n-old").filter(|_| *scheme == AuthType::Md5)
        }
    }
}

fn command() -> impl Strategy<Value = Command> {
    let item = |uri: String| Item {
        target: Some(Location::new(uri.clone())),
        source: Some(Location::new(uri)),
        data: Some(Data::Text("x".into())),
        ..Item::default()
    };
    prop_oneof![
        (
            1u32..5,
            prop_oneof![
                Just(alert::CLIENT_INITIATED_MGMT),
                Just(alert::SERVER_INITIATED_MGMT),
                Just(alert::GENERIC_ALERT),
                Just(alert::SESSION_ABORT),
                Just(alert::NEXT_MESSAGE),
            ]
        )
            .prop_map(|(cmd_id, code)| Command::Alert(Alert {
                cmd_id,
                code,
                correlator: None,
                items: vec![],
            })),
        (1u32..5, "\\./DevInfo/[A-Za-z]{1,6}").prop_map(move |(cmd_id, uri)| {
            Command::Replace(ItemCommand {
                cmd_id,
                meta: None,
                items: vec![item(uri)],
            })
        }),
        (1u32..5, 0u32..4, 0u32..4, 200u16..510).prop_map(|(cmd_id, msg_ref, cmd_ref, code)| {
            Command::Status(Status {
                cmd_id,
                msg_ref,
                cmd_ref,
                cmd: "Replace".into(),
                target_refs: vec![],
                source_refs: vec![],
                chal: None,
                code: StatusCode(code),
                items: vec![],
            })
        }),
    ]
}

#[derive(Debug, Clone)]
struct Forgery {
    msg_id: u32,
    own_session: bool,
    cred: Forged,
    hmac: Option<String>,
    commands: Vec<Command>,
    is_final: bool,
}

fn forgery() -> impl Strategy<Value = Forgery> {
    (
        1u32..6,
        any::<bool>(),
        forged(),
        proptest::option::of("[a-z=,]{0,30}"),
        proptest::collection::vec(command(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(msg_id, own_session, cred, hmac, commands, is_final)| Forgery {
                msg_id,
                own_session,
                cred,
                hmac,
                commands,
                is_final,
            },
        )
}

fn message(forgery: &Forgery) -> Message {
    Message {
        header: Header {
            ver_dtd: VER_DTD.into(),
            ver_proto: VER_PROTO.into(),
            session_id: if forgery.own_session {
                SESSION.into()
            } else {
                "FF".into()
            },
            msg_id: forgery.msg_id,
            target: Location::new("https://dms/dm"),
            source: Location::new(DEVICE),
            resp_uri: None,
            cred: cred(&forgery.cred),
            meta: None,
        },
        body: gwmo_proto::Body {
            commands: forgery.commands.clone(),
            is_final: forgery.is_final,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_stranger_never_authenticates_gets_no_command_and_leaves_no_record(
        auth in prop_oneof![Just(AuthType::Md5), Just(AuthType::Basic), Just(AuthType::Hmac)],
        forgeries in proptest::collection::vec(forgery(), 1..8),
    ) {
        let mut server = session(auth);
        for forgery in &forgeries {
            let message = message(forgery);
            let raw = Encoding::Xml.encode(&message).unwrap();
            let reply = match server.receive(&message, &raw, forgery.hmac.as_deref(), &mut || b"fresh".to_vec()) {
                Ok(Received::Refused(reply)) => reply,
                Ok(Received::Accepted(answer)) => {
                    prop_assert!(false, "a forged message was accepted: {forgery:?}");
                    server.reply(answer).unwrap()
                }
                // Another session's message, a replayed MsgID, or the session over.
                Err(_) => continue,
            };
            let sent = Encoding::Xml.decode(&reply.outgoing.body).unwrap();
            prop_assert!(
                sent.body.commands.iter().all(|c| matches!(c, Command::Status(_))),
                "the answer to a stranger carries more than statuses: {:?}", sent.body.commands
            );
            prop_assert!(!server.is_device_authenticated());
            prop_assert_eq!(server.unsent_tags(), vec![7]);
            for event in server.take_events() {
                prop_assert!(
                    matches!(event, ServerEvent::AuthenticationFailed { .. }),
                    "a stranger's message left {event:?}"
                );
            }
        }
    }
}
