//! A device session driven one message at a time over TLS, for tests that must act
//! between two messages: send something else, drop an answer, kill the server.

use std::net::SocketAddr;

use gwmo_proto::{Alert, Command, Encoding, Message};
use gwmo_session::{
    AuthType, ClientConfig, ClientOutcome, ClientSession, ClientStep, Credentials, Outgoing,
    Trigger,
};
use gwmo_tree::{Acl, DeviceInfo, DmAccount, Tree};
use serde_json::Value;

use super::{ServerProcess, TreeExecutor, connect_tls, exchange, http};

/// A new tree of the enrolled device, as `gwmo device` provisions one: its DM
/// Server's factory account, which may add accounts to ./DMAcc, and `./Vendor/gwmo`
/// where that server may add.
pub fn device_tree_for(server: &ServerProcess, enrollment: &Value) -> Tree {
    let text = |key: &str| enrollment[key].as_str().unwrap().to_owned();
    let mut tree = Tree::new_device(&DeviceInfo {
        dev_id: text("dev_id"),
        ..DeviceInfo::default()
    });
    let account = DmAccount::new(
        &text("server_id"),
        &server.dm_url(),
        AuthType::Md5,
        &text("client_name"),
        &text("client_secret"),
        &text("server_name"),
        &text("server_secret"),
    );
    tree.add_factory_account(&account).unwrap();
    tree.ensure_interior("./Vendor/gwmo").unwrap();
    let acl = format!("Get=*&Add={}", text("server_id"));
    tree.set_acl("./Vendor", Acl::parse(&acl).unwrap()).unwrap();
    tree.set_acl(gwmo_tree::DMACC, Acl::parse(&acl).unwrap())
        .unwrap();
    tree
}

/// One device session, sent one message at a time.
pub struct Scripted {
    pub session: ClientSession,
    pub tree: TreeExecutor,
    pub next: Outgoing,
}

impl Scripted {
    /// Session `session_id` of the enrolled device, package 1 ready to go.
    pub fn new(server: &ServerProcess, enrollment: &Value, session_id: &str) -> Scripted {
        Scripted::with_nonce(server, enrollment, session_id, &[])
    }

    /// The same, its Cred built with `nonce` (an enrolled device starts with none).
    pub fn with_nonce(
        server: &ServerProcess,
        enrollment: &Value,
        session_id: &str,
        nonce: &[u8],
    ) -> Scripted {
        let tree = device_tree_for(server, enrollment);
        Scripted::resume(server, enrollment, session_id, nonce, tree, Vec::new())
    }

    /// A session of the device whose tree is `tree` (as an earlier session left it),
    /// sending `alerts` in package 1.
    pub fn resume(
        server: &ServerProcess,
        enrollment: &Value,
        session_id: &str,
        nonce: &[u8],
        tree: Tree,
        alerts: Vec<Alert>,
    ) -> Scripted {
        let text = |key: &str| enrollment[key].as_str().unwrap().to_owned();
        let credentials = |name: &str, secret: &str| Credentials {
            auth: AuthType::Md5,
            name: text(name),
            secret: text(secret),
        };
        let mut session = ClientSession::new(
            ClientConfig {
                device_id: text("dev_id"),
                server_id: text("server_id"),
                server_uri: server.dm_url(),
                encoding: Encoding::Xml,
                max_msg_size: 64 * 1024,
                max_obj_size: 1 << 20,
                client: credentials("client_name", "client_secret"),
                client_nonce: nonce.to_vec(),
                server: credentials("server_name", "server_secret"),
                server_nonce: Vec::new(),
                max_auth_attempts: 3,
            },
            session_id.into(),
            Trigger::Client,
            tree.devinfo_items(),
            alerts,
        );
        let next = session.start().unwrap();
        Scripted {
            session,
            tree: TreeExecutor(tree),
            next,
        }
    }

    /// The path (with query) the next message goes to.
    pub fn path(&self) -> String {
        path_of(&self.next.url)
    }

    /// The next message, encoded.
    pub fn body(&self) -> &[u8] {
        &self.next.body
    }

    /// Sends the next message where the session says; returns the server's answer.
    pub fn send(&self, server: &ServerProcess) -> (u16, String) {
        post_dm(server.addr, &self.path(), &self.next.body)
    }

    /// Changes the next message before it goes, as a client that writes it otherwise
    /// would (credentials are in the header: MD5 still verifies).
    pub fn rewrite(&mut self, change: impl FnOnce(&mut Message)) {
        let mut message = decode(&String::from_utf8(self.next.body.clone()).unwrap());
        change(&mut message);
        self.next.body = encode(&message);
    }

    /// Sends and reads until the session ends, passing each message after the first
    /// through `change`; every answer must be 200.
    pub fn finish_rewriting(&mut self, server: &ServerProcess, change: impl Fn(&mut Message)) {
        loop {
            let (status, answer) = self.send(server);
            assert_eq!(status, 200, "{answer}");
            if !self.take(&answer) {
                return;
            }
            self.rewrite(&change);
        }
    }

    /// The device's tree as the session left it.
    pub fn into_tree(self) -> Tree {
        self.tree.0
    }

    /// Reads the server's answer; returns whether the session goes on.
    pub fn take(&mut self, answer: &str) -> bool {
        let step = self
            .session
            .receive(answer.as_bytes(), None, &mut self.tree, &mut || {
                rand::random::<[u8; 16]>().to_vec()
            })
            .unwrap();
        match step {
            ClientStep::Send(next) => {
                self.next = next;
                true
            }
            ClientStep::Done(outcome) => {
                assert_eq!(outcome, ClientOutcome::Completed);
                false
            }
        }
    }

    /// Sends and reads until the session ends; every answer must be 200.
    pub fn finish(&mut self, server: &ServerProcess) {
        self.finish_rewriting(server, |_| {});
    }

    /// Sends and reads until the server has handed over its queued commands (the
    /// device authenticated, and the session is open at its token).
    pub fn open(&mut self, server: &ServerProcess) {
        for _ in 0..3 {
            let (status, answer) = self.send(server);
            assert_eq!(status, 200, "{answer}");
            let carries_commands = decode(&answer)
                .body
                .commands
                .iter()
                .any(|c| !matches!(c, Command::Status(_) | Command::Results(_)));
            assert!(self.take(&answer), "the session ended before any command");
            if carries_commands {
                return;
            }
        }
        panic!("the server never handed over the queued commands");
    }
}

pub fn decode(xml: &str) -> Message {
    Encoding::Xml.decode(xml.as_bytes()).unwrap()
}

pub fn encode(message: &Message) -> Vec<u8> {
    Encoding::Xml.encode(message).unwrap()
}

/// The path and query of an absolute URL.
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/')
        .map_or_else(|| "/".to_owned(), |at| rest[at..].to_owned())
}

pub fn post_dm(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    http(
        addr,
        "POST",
        path,
        None,
        "application/vnd.syncml.dm+xml",
        body,
    )
}

/// The code of the Status for the SyncHdr in an answer.
pub fn header_status(answer: &str) -> u16 {
    decode(answer)
        .body
        .commands
        .iter()
        .find_map(|c| match c {
            Command::Status(s) if s.cmd_ref == 0 => Some(s.code.get()),
            _ => None,
        })
        .unwrap()
}

/// The NextNonce of the challenge in an answer's Status for the SyncHdr.
pub fn next_nonce(answer: &str) -> Vec<u8> {
    decode(answer)
        .body
        .commands
        .iter()
        .find_map(|c| match c {
            Command::Status(s) if s.cmd_ref == 0 => {
                gwmo_proto::auth::next_nonce(s.chal.as_ref()?).ok()?
            }
            _ => None,
        })
        .unwrap()
}

/// Package 1 of the enrolled device with valid credentials built with `nonce`,
/// captured and copied `copies` times under SessionIDs of round `round`.
pub fn captured_package_1(
    server: &ServerProcess,
    enrollment: &Value,
    nonce: &[u8],
    round: usize,
    copies: usize,
) -> Vec<Vec<u8>> {
    let captured = Scripted::with_nonce(server, enrollment, "1", nonce)
        .next
        .body;
    let captured = decode(&String::from_utf8(captured).unwrap());
    (0..copies)
        .map(|n| {
            let mut copy = captured.clone();
            copy.header.session_id = format!("{:X}", 0x100 * (round + 1) + n);
            encode(&copy)
        })
        .collect()
}

/// Posts each body to its address at once, each on a connection of its own whose TLS
/// handshake is done before any is sent; the statuses and answers in order.
pub fn post_all_at_once(
    posts: impl IntoIterator<Item = (SocketAddr, Vec<u8>)>,
) -> Vec<(u16, String)> {
    let posts: Vec<_> = posts.into_iter().collect();
    let start = std::sync::Barrier::new(posts.len());
    std::thread::scope(|scope| {
        let running: Vec<_> = posts
            .into_iter()
            .map(|(addr, body)| {
                let start = &start;
                scope.spawn(move || {
                    let mut stream = connect_tls(addr);
                    stream.conn.complete_io(&mut stream.sock).unwrap();
                    start.wait();
                    let content_type = "application/vnd.syncml.dm+xml";
                    let (status, _, answer) =
                        exchange(stream, addr, "POST", "/dm", None, content_type, &body);
                    (status, answer)
                })
            })
            .collect();
        running.into_iter().map(|p| p.join().unwrap()).collect()
    })
}

/// Of the answers to copies of one package 1, exactly one authenticated (212); the
/// others lost the race for the nonce (409) or came after it was swapped and no longer
/// verify (401). Returns the one.
pub fn only_one_authenticated(round: usize, answers: &[(u16, String)]) -> &str {
    let accepted: Vec<&String> = answers
        .iter()
        .filter(|(status, answer)| *status == 200 && header_status(answer) == 212)
        .map(|(_, answer)| answer)
        .collect();
    assert_eq!(accepted.len(), 1, "round {round}: {answers:?}");
    for (status, answer) in answers {
        assert!(
            *status == 409 || (*status == 200 && matches!(header_status(answer), 212 | 401)),
            "{status} {answer}"
        );
    }
    accepted[0]
}
