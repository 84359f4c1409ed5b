//! Crash consistency with real processes: a DM Server killed with SIGKILL in the
//! middle of a session loses no device and no queued command, and runs none twice.

mod common;

use std::time::Duration;

use common::*;
use gwmo_proto::{CmdIds, Command, Encoding};
use gwmo_session::{AuthType, ClientConfig, ClientSession, Credentials, Executor, Trigger};
use serde_json::Value;

/// A device that never gets as far as running anything (the server dies first).
struct NothingRuns;

impl Executor for NothingRuns {
    fn execute(&mut self, _: &str, _: u32, _: &Command, _: &mut CmdIds) -> Vec<Command> {
        panic!("the test stops before the device runs a command")
    }
}

/// Starts a session as the enrolled device and stops as soon as the server has handed
/// it its queued commands (they are `sent` in the store), without answering.
fn session_cut_short(server: &ServerProcess, enrollment: &Value, command: i64) {
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
            client: credentials("client_name", "client_secret"),
            client_nonce: Vec::new(),
            server: credentials("server_name", "server_secret"),
            server_nonce: Vec::new(),
            max_auth_attempts: 3,
        },
        "C1".into(),
        Trigger::Client,
        Vec::new(),
        Vec::new(),
    );
    let mut outgoing = session.start().unwrap();
    for _ in 0..3 {
        let (status, answer) = http(
            server.addr,
            "POST",
            "/dm",
            None,
            outgoing.content_type,
            &outgoing.body,
        );
        assert_eq!(status, 200, "{answer}");
        if server.command(command)["state"] == "sent" {
            return;
        }
        // A challenge: the session answers it, nothing is run.
        match session
            .receive(answer.as_bytes(), None, &mut NothingRuns, &mut || {
                vec![7; 16]
            })
            .unwrap()
        {
            gwmo_session::ClientStep::Send(next) => outgoing = next,
            other => panic!("the session ended early: {other:?}"),
        }
    }
    panic!("the server never handed over the queued command");
}

#[test]
fn a_server_killed_mid_session_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_with(
        dir.path(),
        &dir.path().join("server.db").display().to_string(),
        "session_idle_secs = 1\n",
    );
    let dev_id = "IMEI:350000000000701";
    let enrollment = server.enroll(dev_id, "md5");
    let add = server.queue(
        dev_id,
        r#"{"op":"Add","target":"./Vendor/gwmo/Crash","data":"once"}"#,
    );
    session_cut_short(&server, &enrollment, add);

    server.kill_and_restart();
    let (status, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(status, 200, "the device survived: {device}");
    // The session died with the instance that held it: its command comes back.
    poll(
        "the abandoned command back in the queue",
        Duration::from_secs(15),
        || (server.command(add)["state"] == "queued").then_some(()),
    );

    let config = device_config(dir.path(), &enrollment, "xml", "");
    assert_success(&device_once(&config), "the next session");
    let done = server.command(add);
    // An Add run a second time would have answered 418.
    assert_eq!(
        (done["state"].as_str(), done["status"].as_u64()),
        (Some("done"), Some(200)),
        "{done}"
    );
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./Vendor/gwmo/Crash"),
        Some(&Value::from("once"))
    );
    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(device["commands"].as_array().unwrap().len(), 1, "{device}");
}
