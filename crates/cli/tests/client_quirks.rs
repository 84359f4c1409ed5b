//! What independent DM clients send that gwmo's own device does not, against a running
//! `gwmo server` (issue 14, findings 2 and 3): a device session driven one message at
//! a time, each message after package 1 rewritten as such a client writes it. The same
//! behaviours of a real client are tested in `real_client.rs` when one is built.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use common::scripted::Scripted;
use common::*;
use gwmo_proto::{Chal, Command, Message, Meta};

/// Finding 2: the device's Status for the server's SyncHdr carries a Basic challenge,
/// without NextNonce (valid: Basic has none), as libdmclient's does. The session goes
/// on, and each command runs once.
#[test]
fn finding_2_a_basic_challenge_without_a_nonce_keeps_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000210";
    let enrollment = server.enroll(dev_id, "md5");
    let commands = [
        server.queue(dev_id, r#"{"op":"Get","target":"./DevInfo/DevId"}"#),
        server.queue(
            dev_id,
            r#"{"op":"Add","target":"./Vendor/gwmo/Once","data":"1","format":"chr"}"#,
        ),
    ];
    let basic_challenge = |message: &mut Message| {
        for command in &mut message.body.commands {
            if let Command::Status(status) = command
                && status.cmd_ref == 0
            {
                status.chal = Some(Box::new(Chal {
                    meta: Meta {
                        r#type: Some("syncml:auth-basic".into()),
                        format: Some("b64".into()),
                        ..Meta::default()
                    },
                }));
            }
        }
    };
    Scripted::new(&server, &enrollment, "2B").finish_rewriting(&server, basic_challenge);
    for id in commands {
        let command = server.command(id);
        assert_eq!(command["state"], "done", "{command}");
        assert_eq!(command["status"], 200, "{command}");
    }
}

/// Finding 3: the device answers an Atomic with its members' Statuses only. The
/// Atomic is settled from them when the package ends (200 when all succeeded), not
/// left `sent` to go again at the next session.
#[test]
fn finding_3_an_atomic_answered_through_its_members_only_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000310";
    let enrollment = server.enroll(dev_id, "md5");
    let atomic = server.queue(
        dev_id,
        r#"{"op":"Atomic","commands":[{"op":"Add","target":"./Vendor/gwmo/A","data":"1","format":"chr"},{"op":"Add","target":"./Vendor/gwmo/B","data":"2","format":"chr"}]}"#,
    );
    let members_only = |message: &mut Message| {
        message
            .body
            .commands
            .retain(|c| !matches!(c, Command::Status(s) if s.cmd == "Atomic"));
    };
    Scripted::new(&server, &enrollment, "3A").finish_rewriting(&server, members_only);
    let command = server.command(atomic);
    assert_eq!(command["state"], "done", "{command}");
    assert_eq!(command["status"], 200, "{command}");
    let members = command["outcome"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{command}");
}
