//! Client and server session state machines talking to each other in memory: the
//! whole DM 1.2 package exchange, authentication both ways, multi-message packages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use std::collections::BTreeMap;

use gwmo_proto::codes::{StatusCode, alert, status};
use gwmo_proto::{
    CmdIds, Command, Data, Encoding, Item, ItemCommand, Location, Message, Meta, Results, Status,
};
use gwmo_session::{
    AuthType, ClientConfig, ClientEvent, ClientOutcome, ClientSession, ClientStep, Credentials,
    DeviceAuth, Executor, Misuse, Received, ServerConfig, ServerEvent, ServerReply, ServerSession,
    SessionError, Trigger,
};

/// A device tree double: leaves in a map, Get and Replace only.
#[derive(Default)]
struct MapTree(BTreeMap<String, String>);

impl Executor for MapTree {
    fn execute(
        &mut self,
        _server: &str,
        msg_ref: u32,
        command: &Command,
        ids: &mut CmdIds,
    ) -> Vec<Command> {
        if let Command::Atomic(atomic) = command {
            let mut out = vec![Command::Status(Status {
                cmd_id: ids.next_id(),
                msg_ref,
                cmd_ref: command.cmd_id(),
                cmd: command.name().into(),
                target_refs: vec![],
                source_refs: vec![],
                chal: None,
                code: status::OK,
                items: vec![],
            })];
            for member in &atomic.commands {
                out.extend(self.execute(_server, msg_ref, member, ids));
            }
            return out;
        }
        let target = command
            .items()
            .first()
            .and_then(|i| i.target.as_ref())
            .map(|t| t.uri.clone());
        let (code, results) = match (command, &target) {
            (Command::Replace(c), Some(uri)) if self.0.contains_key(uri) => {
                let value = c.items[0]
                    .data
                    .as_ref()
                    .and_then(|d| d.as_text())
                    .unwrap_or("");
                self.0.insert(uri.clone(), value.to_owned());
                (status::OK, None)
            }
            (Command::Get(_), Some(uri)) => match self.0.get(uri) {
                Some(v) => (status::OK, Some((uri.clone(), v.clone()))),
                None => (status::NOT_FOUND, None),
            },
            _ => (status::NOT_FOUND, None),
        };
        let mut out = vec![Command::Status(Status {
            cmd_id: ids.next_id(),
            msg_ref,
            cmd_ref: command.cmd_id(),
            cmd: command.name().into(),
            target_refs: target.into_iter().collect(),
            source_refs: vec![],
            chal: None,
            code,
            items: vec![],
        })];
        if let Some((uri, value)) = results {
            out.push(Command::Results(Results {
                cmd_id: ids.next_id(),
                msg_ref: Some(msg_ref),
                cmd_ref: command.cmd_id(),
                meta: None,
                target_ref: None,
                source_ref: None,
                items: vec![Item {
                    source: Some(Location::new(uri)),
                    data: Some(Data::Text(value)),
                    ..Item::default()
                }],
            }));
        }
        out
    }
}

/// One device message in, the server's answer out (enqueueing nothing in between).
fn exchange(
    server: &mut ServerSession,
    message: &Message,
    raw: &[u8],
    hmac: Option<&str>,
    fresh: &mut dyn FnMut() -> Vec<u8>,
) -> Result<ServerReply, SessionError> {
    match server.receive(message, raw, hmac, fresh)? {
        Received::Refused(reply) => Ok(reply),
        Received::Accepted(answer) => server.reply(answer),
    }
}

fn creds(auth: AuthType, name: &str, secret: &str) -> Credentials {
    Credentials {
        auth,
        name: name.into(),
        secret: secret.into(),
    }
}

struct Pair {
    client: ClientSession,
    server: ServerSession,
    tree: MapTree,
    nonces: u32,
}

impl Pair {
    fn new(auth: AuthType, encoding: Encoding, client_nonce_known_to_server: &[u8]) -> Pair {
        Pair::with_limits(
            auth,
            encoding,
            client_nonce_known_to_server,
            1 << 20,
            1 << 20,
        )
    }

    /// A pair whose device and server accept messages of at most these sizes.
    fn with_limits(
        auth: AuthType,
        encoding: Encoding,
        client_nonce_known_to_server: &[u8],
        client_max: usize,
        server_max: usize,
    ) -> Pair {
        let config = ClientConfig {
            device_id: "IMEI:490154203237518".into(),
            server_id: "gwmo-dms".into(),
            server_uri: "http://127.0.0.1/dm".into(),
            encoding,
            max_msg_size: client_max,
            max_obj_size: MAX_OBJ,
            client: creds(auth, "device-1", "client-secret"),
            client_nonce: b"n-old".to_vec(),
            server: creds(auth, "gwmo-dms", "server-secret"),
            server_nonce: b"s-1".to_vec(),
            max_auth_attempts: 3,
        };
        let devinfo = vec![Item {
            source: Some(Location::new("./DevInfo/DevId")),
            data: Some(Data::Text("IMEI:490154203237518".into())),
            ..Item::default()
        }];
        let client = ClientSession::new(config, "1A".into(), Trigger::Client, devinfo, vec![]);
        let server = ServerSession::new(
            ServerConfig {
                server_uri: "http://127.0.0.1/dm".into(),
                resp_uri: None,
                max_msg_size: server_max,
                max_obj_size: MAX_OBJ,
                max_auth_attempts: 3,
            },
            "IMEI:490154203237518".into(),
            "1A".into(),
            encoding,
            DeviceAuth {
                client: creds(auth, "device-1", "client-secret"),
                client_nonce: client_nonce_known_to_server.to_vec(),
                server: creds(auth, "gwmo-dms", "server-secret"),
                server_nonce: b"s-1".to_vec(),
            },
        );
        let mut tree = MapTree::default();
        tree.0.insert("./DevDetail/FwV".into(), "1.0".into());
        Pair {
            client,
            server,
            tree,
            nonces: 0,
        }
    }

    /// Runs the session to its end; returns the outcome and every server event.
    fn run(&mut self) -> Result<(ClientOutcome, Vec<ServerEvent>, Vec<ClientEvent>), SessionError> {
        self.run_with(|_| {})
    }

    /// As [`Pair::run`], with each device message changed by `client_quirk` on its way
    /// (what another client implementation sends differently).
    fn run_with(
        &mut self,
        client_quirk: impl Fn(&mut Message),
    ) -> Result<(ClientOutcome, Vec<ServerEvent>, Vec<ClientEvent>), SessionError> {
        let mut outgoing = self.client.start()?;
        let mut server_events = Vec::new();
        let mut client_events = Vec::new();
        for _ in 0..500 {
            let mut message = Encoding::sniff(&outgoing.body).decode(&outgoing.body)?;
            client_quirk(&mut message);
            let mut counter = self.nonces;
            let mut fresh = || {
                counter += 1;
                format!("nonce-{counter}").into_bytes()
            };
            let reply = exchange(
                &mut self.server,
                &message,
                &outgoing.body,
                outgoing.hmac.as_deref(),
                &mut fresh,
            )?;
            server_events.extend(self.server.take_events());
            let step = self.client.receive(
                &reply.outgoing.body,
                reply.outgoing.hmac.as_deref(),
                &mut self.tree,
                &mut fresh,
            )?;
            self.nonces = counter;
            client_events.extend(self.client.take_events());
            match step {
                ClientStep::Done(outcome) => {
                    assert!(
                        reply.ended,
                        "the client stopped but the server expects more"
                    );
                    return Ok((outcome, server_events, client_events));
                }
                ClientStep::Send(next) => outgoing = next,
            }
        }
        panic!("the session did not end in 500 round trips");
    }
}

fn get(uri: &str) -> Command {
    Command::Get(ItemCommand {
        cmd_id: 0,
        meta: None,
        items: vec![Item {
            target: Some(Location::new(uri)),
            ..Item::default()
        }],
    })
}

fn replace(uri: &str, value: &str) -> Command {
    Command::Replace(ItemCommand {
        cmd_id: 0,
        meta: Some(Box::new(Meta {
            format: Some("chr".into()),
            ..Meta::default()
        })),
        items: vec![Item {
            target: Some(Location::new(uri)),
            data: Some(Data::Text(value.into())),
            ..Item::default()
        }],
    })
}

fn done(events: &[ServerEvent]) -> BTreeMap<u64, (StatusCode, Vec<Item>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::CommandDone { tag, outcome } => {
                Some((*tag, (outcome.status, outcome.results.clone())))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn md5_session_with_a_challenge_runs_the_queued_commands() {
    for encoding in [Encoding::Xml, Encoding::Wbxml] {
        // The server holds another nonce than the device: the first Cred fails, the
        // device answers the challenge, and the session goes on.
        let mut pair = Pair::new(AuthType::Md5, encoding, b"n-current");
        pair.server.enqueue(7, replace("./DevDetail/FwV", "2.0"));
        pair.server.enqueue(8, get("./DevDetail/FwV"));
        pair.server.enqueue(9, get("./Missing"));
        let (outcome, server_events, client_events) = pair.run().unwrap();
        assert_eq!(outcome, ClientOutcome::Completed);
        assert!(server_events.contains(&ServerEvent::AuthenticationFailed {
            code: status::INVALID_CREDENTIALS
        }));
        assert!(server_events.contains(&ServerEvent::Authenticated));
        let results = done(&server_events);
        assert_eq!(results[&7].0, status::OK);
        assert_eq!(results[&8].0, status::OK);
        assert_eq!(results[&8].1[0].data, Some(Data::Text("2.0".into())));
        assert_eq!(results[&9].0, status::NOT_FOUND);
        assert!(client_events.contains(&ClientEvent::ServerAuthenticated));
        // The refused Cred consumed nothing: the challenge repeated the nonce held, and
        // the one Cred that passed consumed it. The device stores the newest nonce the
        // server gave it, for its next session.
        let issued: Vec<_> = server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::ClientNonceIssued { used, next } => Some((used.clone(), next.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(issued.len(), 1);
        assert_eq!(issued[0].0, b"n-current");
        let issued: Vec<_> = issued.into_iter().map(|(_, next)| next).collect();
        let stored: Vec<_> = client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::ClientNonce(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(stored.last(), issued.last());
        assert!(server_events.iter().any(|e| matches!(e, ServerEvent::DevInfo(d) if d["./DevInfo/DevId"] == "IMEI:490154203237518")));
    }
}

/// Issue 14, finding 2: a client whose Status for our header carries a Basic
/// challenge without NextNonce (valid: Basic has no nonce) keeps its session, and every
/// command runs once.
#[test]
fn a_challenge_without_a_nonce_from_the_device_keeps_the_session() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.server.enqueue(7, get("./DevDetail/FwV"));
    pair.server.enqueue(8, replace("./DevDetail/FwV", "2.0"));
    let basic_challenge = |message: &mut Message| {
        for command in &mut message.body.commands {
            if let Command::Status(s) = command
                && s.cmd_ref == 0
            {
                s.chal = Some(Box::new(gwmo_proto::Chal {
                    meta: Meta {
                        r#type: Some("syncml:auth-basic".into()),
                        format: Some("b64".into()),
                        ..Meta::default()
                    },
                }));
            }
        }
    };
    let (outcome, server_events, _) = pair.run_with(basic_challenge).unwrap();
    assert_eq!(outcome, ClientOutcome::Completed);
    let results = done(&server_events);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[&7].0, status::OK);
    assert_eq!(results[&8].0, status::OK);
    assert_eq!(pair.tree.0["./DevDetail/FwV"], "2.0");
}

/// Issue 14, finding 3: a client that sends Statuses for an Atomic's members only:
/// the Atomic is settled from them when the package ends, not sent again.
#[test]
fn an_atomic_answered_only_through_its_members_is_settled() {
    for (member, expected) in [
        (replace("./DevDetail/FwV", "2.0"), status::OK),
        (replace("./Missing", "x"), status::ATOMIC_FAILED),
    ] {
        let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
        let atomic = Command::Atomic(gwmo_proto::Container {
            cmd_id: 0,
            meta: None,
            commands: vec![member],
        });
        pair.server.enqueue(7, atomic);
        let members_only = |message: &mut Message| {
            message
                .body
                .commands
                .retain(|c| !matches!(c, Command::Status(s) if s.cmd == "Atomic"));
        };
        let (outcome, server_events, _) = pair.run_with(members_only).unwrap();
        assert_eq!(outcome, ClientOutcome::Completed);
        let results = done(&server_events);
        assert_eq!(results.get(&7).map(|r| r.0), Some(expected));
    }
}

#[test]
fn hmac_session_authenticates_every_message_both_ways() {
    let mut pair = Pair::new(AuthType::Hmac, Encoding::Xml, b"n-old");
    pair.server.enqueue(1, get("./DevDetail/FwV"));
    let (outcome, server_events, client_events) = pair.run().unwrap();
    assert_eq!(outcome, ClientOutcome::Completed);
    assert_eq!(done(&server_events)[&1].0, status::OK);
    assert!(
        !server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::AuthenticationFailed { .. }))
    );
    assert!(client_events.contains(&ClientEvent::ServerAuthenticated));
}

#[test]
fn a_tampered_hmac_message_is_refused() {
    let mut pair = Pair::new(AuthType::Hmac, Encoding::Xml, b"n-old");
    let mut outgoing = pair.client.start().unwrap();
    // Change one byte of the body after the MAC was computed.
    let at = outgoing.body.len() - 20;
    outgoing.body[at] ^= 0x01;
    let message = match Encoding::Xml.decode(&outgoing.body) {
        Ok(m) => m,
        Err(_) => return, // the flip broke the XML itself: refused as malformed
    };
    let reply = exchange(
        &mut pair.server,
        &message,
        &outgoing.body,
        outgoing.hmac.as_deref(),
        &mut || b"x".to_vec(),
    )
    .unwrap();
    assert!(
        pair.server
            .take_events()
            .contains(&ServerEvent::AuthenticationFailed {
                code: status::INVALID_CREDENTIALS
            })
    );
    assert!(!pair.server.is_device_authenticated());
    assert!(!reply.outgoing.body.is_empty());
}

#[test]
fn a_replayed_package_one_is_refused_because_its_nonce_was_used() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.server.enqueue(1, get("./DevDetail/FwV")); // keeps the session open
    let first = pair.client.start().unwrap();
    let message = Encoding::Xml.decode(&first.body).unwrap();
    exchange(&mut pair.server, &message, &first.body, None, &mut || {
        b"fresh".to_vec()
    })
    .unwrap();
    assert!(pair.server.is_device_authenticated());

    // The same bytes, captured and sent again in a new session: the nonce has rotated.
    let fresh_pair = Pair::new(AuthType::Md5, Encoding::Xml, b"fresh");
    let mut server = fresh_pair.server;
    exchange(&mut server, &message, &first.body, None, &mut || {
        b"other".to_vec()
    })
    .unwrap();
    assert!(!server.is_device_authenticated());
    assert!(
        server
            .take_events()
            .contains(&ServerEvent::AuthenticationFailed {
                code: status::INVALID_CREDENTIALS
            })
    );

    // And within the first session, the same MsgID again is a replay.
    let again = exchange(&mut pair.server, &message, &first.body, None, &mut || {
        b"x".to_vec()
    });
    assert!(matches!(again, Err(SessionError::Replay(1))));
}

#[test]
fn wrong_device_secret_is_refused_until_the_session_gives_up() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.server = ServerSession::new(
        ServerConfig {
            server_uri: "http://127.0.0.1/dm".into(),
            resp_uri: None,
            max_msg_size: 1 << 20,
            max_obj_size: MAX_OBJ,
            max_auth_attempts: 3,
        },
        "IMEI:490154203237518".into(),
        "1A".into(),
        Encoding::Xml,
        DeviceAuth {
            client: creds(AuthType::Md5, "device-1", "another-secret"),
            client_nonce: b"n-old".to_vec(),
            server: creds(AuthType::Md5, "gwmo-dms", "server-secret"),
            server_nonce: b"s-1".to_vec(),
        },
    );
    pair.server.enqueue(1, get("./DevDetail/FwV"));
    let error = pair.run().unwrap_err();
    assert!(
        matches!(
            error,
            SessionError::AuthenticationFailed(status::INVALID_CREDENTIALS)
        ),
        "{error}"
    );
    assert_eq!(pair.tree.0["./DevDetail/FwV"], "1.0");
}

#[test]
fn a_server_with_wrong_credentials_is_not_obeyed() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.client = {
        let config = ClientConfig {
            device_id: "IMEI:490154203237518".into(),
            server_id: "gwmo-dms".into(),
            server_uri: "http://127.0.0.1/dm".into(),
            encoding: Encoding::Xml,
            max_msg_size: 1 << 20,
            max_obj_size: MAX_OBJ,
            client: creds(AuthType::Md5, "device-1", "client-secret"),
            client_nonce: b"n-old".to_vec(),
            server: creds(AuthType::Md5, "gwmo-dms", "what-the-device-expects"),
            server_nonce: b"s-1".to_vec(),
            max_auth_attempts: 2,
        };
        ClientSession::new(config, "1A".into(), Trigger::Client, vec![], vec![])
    };
    pair.server.enqueue(1, replace("./DevDetail/FwV", "evil"));
    assert!(pair.run().is_err());
    assert_eq!(
        pair.tree.0["./DevDetail/FwV"], "1.0",
        "a command of an unauthenticated server ran"
    );
}

#[test]
fn a_package_larger_than_max_msg_size_goes_in_several_messages() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    for i in 0..40 {
        pair.tree
            .0
            .insert(format!("./Vendor/Leaf{i}"), "v".repeat(100));
        pair.server.enqueue(i, get(&format!("./Vendor/Leaf{i}")));
    }
    // The device accepts only small messages: the server must split its package, and the
    // device its answer.
    let mut round_trips = 0;
    let mut outgoing = pair.client.start().unwrap();
    let mut all = Vec::new();
    let small = 2048;
    loop {
        round_trips += 1;
        assert!(round_trips < 100);
        let mut message = Encoding::Xml.decode(&outgoing.body).unwrap();
        // Announce a small MaxMsgSize on the device's behalf (as a small device would).
        message.header.meta.get_or_insert_default().max_msg_size = Some(small);
        let reply = exchange(
            &mut pair.server,
            &message,
            &outgoing.body,
            None,
            &mut || b"k".to_vec(),
        )
        .unwrap();
        assert!(
            reply.outgoing.body.len() <= small as usize + 600,
            "{}",
            reply.outgoing.body.len()
        );
        all.extend(pair.server.take_events());
        match pair
            .client
            .receive(&reply.outgoing.body, None, &mut pair.tree, &mut || {
                b"c".to_vec()
            })
            .unwrap()
        {
            ClientStep::Done(_) => break,
            ClientStep::Send(next) => outgoing = next,
        }
    }
    let results = done(&all);
    assert_eq!(results.len(), 40);
    assert!(
        results
            .values()
            .all(|(code, items)| *code == status::OK && items.len() == 1)
    );
    assert!(
        round_trips > 3,
        "expected several messages, got {round_trips}"
    );
}

#[test]
fn the_device_aborting_ends_the_session() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    let first = pair.client.start().unwrap();
    let mut message = Encoding::Xml.decode(&first.body).unwrap();
    message
        .body
        .commands
        .push(Command::Alert(gwmo_proto::Alert {
            cmd_id: 9,
            code: alert::SESSION_ABORT,
            correlator: None,
            items: vec![],
        }));
    let reply = exchange(&mut pair.server, &message, &first.body, None, &mut || {
        b"z".to_vec()
    })
    .unwrap();
    assert!(reply.ended);
    assert!(pair.server.take_events().contains(&ServerEvent::Aborted));
}

#[test]
fn commands_are_never_sent_before_the_device_authenticates() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-current");
    pair.server.enqueue(1, replace("./DevDetail/FwV", "2.0"));
    let first = pair.client.start().unwrap();
    let message: Message = Encoding::Xml.decode(&first.body).unwrap();
    let reply = exchange(&mut pair.server, &message, &first.body, None, &mut || {
        b"q".to_vec()
    })
    .unwrap();
    let sent = Encoding::Xml.decode(&reply.outgoing.body).unwrap();
    assert!(
        sent.body
            .commands
            .iter()
            .all(|c| matches!(c, Command::Status(_)))
    );
    assert_eq!(pair.server.unsent_tags(), vec![1]);
}

/// The MaxObjSize of both sides in these tests: above `big_text`, below `huge_text`.
const MAX_OBJ: usize = 32 * 1024;

fn huge_text() -> String {
    "x".repeat(MAX_OBJ + 1)
}

fn big_text() -> String {
    (0..10_000)
        .map(|i| ['a', '&', '<', 'é', 'z'][i % 5])
        .collect()
}

#[test]
fn a_large_object_goes_in_chunks_and_is_reassembled_on_the_device() {
    for encoding in [Encoding::Xml, Encoding::Wbxml] {
        let mut pair = Pair::with_limits(AuthType::Md5, encoding, b"n-old", 2048, 1 << 20);
        pair.tree.0.insert("./Vendor/Big".into(), "small".into());
        pair.server.enqueue(1, replace("./Vendor/Big", &big_text()));
        let (outcome, server_events, _) = pair.run().unwrap();
        assert_eq!(outcome, ClientOutcome::Completed);
        assert_eq!(pair.tree.0["./Vendor/Big"], big_text(), "{encoding:?}");
        assert_eq!(done(&server_events)[&1].0, status::OK);
    }
}

#[test]
fn a_large_result_goes_in_chunks_and_is_reassembled_on_the_server() {
    for encoding in [Encoding::Xml, Encoding::Wbxml] {
        let mut pair = Pair::with_limits(AuthType::Md5, encoding, b"n-old", 1 << 20, 2048);
        pair.tree.0.insert("./Vendor/Big".into(), big_text());
        pair.server.enqueue(1, get("./Vendor/Big"));
        let (_, server_events, _) = pair.run().unwrap();
        let results = done(&server_events);
        assert_eq!(results[&1].0, status::OK);
        assert_eq!(results[&1].1.len(), 1, "one reassembled item");
        assert_eq!(
            results[&1].1[0].data,
            Some(Data::Text(big_text())),
            "{encoding:?}"
        );
    }
}

/// A chunk of a Replace, as a sender would write it.
fn chunk(data: &str, more: bool, size: Option<u64>) -> Command {
    Command::Replace(ItemCommand {
        cmd_id: 0,
        meta: None,
        items: vec![Item {
            target: Some(Location::new("./Vendor/Big")),
            meta: size.map(|size| {
                Box::new(Meta {
                    size: Some(size),
                    ..Meta::default()
                })
            }),
            data: Some(Data::Text(data.into())),
            more_data: more,
            ..Item::default()
        }],
    })
}

#[test]
fn chunks_that_do_not_add_up_to_the_announced_size_get_424() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.tree.0.insert("./Vendor/Big".into(), "small".into());
    pair.server.enqueue(1, chunk("abc", true, Some(10)));
    pair.server.enqueue(2, chunk("def", false, None));
    let (_, server_events, _) = pair.run().unwrap();
    let results = done(&server_events);
    assert_eq!(results[&1].0, status::CHUNKED_ITEM_ACCEPTED);
    assert_eq!(results[&2].0, status::SIZE_MISMATCH);
    assert_eq!(
        pair.tree.0["./Vendor/Big"], "small",
        "a mismatched object was stored"
    );
}

#[test]
fn an_object_larger_than_max_obj_size_gets_413_and_nothing_of_it_is_kept() {
    for encoding in [Encoding::Xml, Encoding::Wbxml] {
        let tree = refused_413_then_the_next_runs(encoding, replace("./Vendor/Big", &huge_text()));
        assert_eq!(tree["./Vendor/Big"], "small", "part of it was stored");
    }
}

/// A device with MaxMsgSize 2 KB and `./Vendor/Big` = "small" is sent `too_large`,
/// then a Replace of its FwV: the first ends 413, the second runs as usual. Returns
/// the device's tree.
fn refused_413_then_the_next_runs(
    encoding: Encoding,
    too_large: Command,
) -> BTreeMap<String, String> {
    let mut pair = Pair::with_limits(AuthType::Md5, encoding, b"n-old", 2048, 1 << 20);
    pair.tree.0.insert("./Vendor/Big".into(), "small".into());
    pair.server.enqueue(1, too_large);
    pair.server.enqueue(2, replace("./DevDetail/FwV", "2.0"));
    let (outcome, server_events, _) = pair.run().unwrap();
    assert_eq!(outcome, ClientOutcome::Completed);
    let results = done(&server_events);
    assert_eq!(
        results[&1].0,
        status::REQUEST_ENTITY_TOO_LARGE,
        "{encoding:?}"
    );
    assert_eq!(results[&2].0, status::OK, "the next command ran as usual");
    assert_eq!(pair.tree.0["./DevDetail/FwV"], "2.0");
    pair.tree.0
}

#[test]
fn a_huge_announced_size_is_refused_at_the_first_chunk() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.tree.0.insert("./Vendor/Big".into(), "small".into());
    pair.server.enqueue(1, chunk("abc", true, Some(u64::MAX)));
    pair.server.enqueue(2, chunk("def", false, None));
    let (_, server_events, _) = pair.run().unwrap();
    let results = done(&server_events);
    assert_eq!(results[&1].0, status::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(results[&2].0, status::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(pair.tree.0["./Vendor/Big"], "small");
}

#[test]
fn a_result_larger_than_max_obj_size_is_kept_as_its_size_only() {
    let mut pair = Pair::with_limits(AuthType::Md5, Encoding::Wbxml, b"n-old", 1 << 20, 2048);
    pair.tree.0.insert("./Vendor/Big".into(), huge_text());
    pair.server.enqueue(1, get("./Vendor/Big"));
    let (_, server_events, _) = pair.run().unwrap();
    let results = done(&server_events);
    assert_eq!(results[&1].0, status::OK);
    let item = &results[&1].1[0];
    assert_eq!(item.data, None, "the data was kept");
    assert_eq!(
        item.meta.as_ref().and_then(|m| m.size),
        Some(huge_text().len() as u64)
    );
}

#[test]
fn a_package_that_ends_inside_a_large_object_gets_alert_1225() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    pair.tree.0.insert("./Vendor/Big".into(), "small".into());
    pair.server.enqueue(1, chunk("abc", true, Some(6)));
    let (_, server_events, _) = pair.run().unwrap();
    let no_end = server_events
        .iter()
        .any(|e| matches!(e, ServerEvent::Alert(a) if a.code == alert::NO_END_OF_DATA));
    assert!(
        !no_end,
        "1225 is not a Generic Alert: it is answered, not reported"
    );
    assert_eq!(pair.tree.0["./Vendor/Big"], "small");
}

/// An Atomic far larger than 2 KB, which cannot go in chunks.
fn atomic_of_200_replaces() -> Command {
    let members = (0..200)
        .map(|i| replace(&format!("./Vendor/N{i}"), "value"))
        .collect();
    Command::Atomic(gwmo_proto::Container {
        cmd_id: 0,
        meta: None,
        commands: members,
    })
}

/// An Atomic larger than the device's MaxMsgSize cannot go in chunks: it is settled
/// 413 and never sent, and the commands queued after it still run.
#[test]
fn a_command_no_message_of_the_device_can_hold_is_refused_not_sent() {
    for encoding in [Encoding::Xml, Encoding::Wbxml] {
        let tree = refused_413_then_the_next_runs(encoding, atomic_of_200_replaces());
        assert!(!tree.contains_key("./Vendor/N0"));
    }
}

/// The same when nothing else is queued: the answer that refuses it ends the session.
#[test]
fn a_session_whose_only_command_is_too_large_ends() {
    let mut pair = Pair::with_limits(AuthType::Md5, Encoding::Xml, b"n-old", 2048, 1 << 20);
    pair.server.enqueue(1, atomic_of_200_replaces());
    let (outcome, server_events, _) = pair.run().unwrap();
    assert_eq!(outcome, ClientOutcome::Completed);
    assert_eq!(done(&server_events)[&1].0, status::REQUEST_ENTITY_TOO_LARGE);
    assert!(pair.server.is_ended());
}

#[test]
fn a_session_used_out_of_order_says_it_is_the_callers_mistake() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    let fresh = &mut || b"n".to_vec();
    let early = pair
        .client
        .receive(b"<SyncML/>", None, &mut pair.tree, fresh);
    assert!(matches!(
        early,
        Err(SessionError::Misuse(Misuse::NotStarted))
    ));
    pair.client.start().unwrap();
    let twice = pair.client.start();
    assert!(matches!(
        twice,
        Err(SessionError::Misuse(Misuse::AlreadyStarted))
    ));

    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    let (outcome, _, _) = pair.run().unwrap();
    assert_eq!(outcome, ClientOutcome::Completed);
    assert!(pair.server.is_ended() && pair.server.is_device_authenticated());
    let after = pair
        .client
        .receive(b"<SyncML/>", None, &mut pair.tree, fresh);
    let Err(error) = after else {
        panic!("read after the end")
    };
    assert!(matches!(error, SessionError::Misuse(Misuse::Ended)) && !error.is_peer_fault());
    let late = pair.client.start();
    assert!(matches!(
        late,
        Err(SessionError::Misuse(Misuse::AlreadyStarted))
    ));
}

#[test]
fn a_message_of_another_session_is_the_peers_fault() {
    let mut pair = Pair::new(AuthType::Md5, Encoding::Xml, b"n-old");
    let outgoing = pair.client.start().unwrap();
    let mut message = Encoding::Xml.decode(&outgoing.body).unwrap();
    message.header.session_id = "FF".into();
    let refused = pair
        .server
        .receive(&message, &outgoing.body, None, &mut || b"n".to_vec());
    let Err(error) = refused else {
        panic!("accepted")
    };
    assert!(matches!(error, SessionError::OtherSession { ref session, .. } if session == "FF"));
    assert!(error.is_peer_fault());
    assert!(!pair.server.is_device_authenticated() && !pair.server.is_ended());
}
