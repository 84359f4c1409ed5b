//! Strangers on the network against a running `gwmo server` (issue 14, findings 4 to
//! 8): a device's session is driven one message at a time over TLS while someone who
//! knows its DevId, SessionID or a captured message tries to join, replay, replace or
//! lock it out. Each test checks what the real device got and what the store holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, SocketAddr};

use common::scripted::*;
use common::*;
use gwmo_proto::Command;
use serde_json::Value;

/// A source address other than the device's (all of 127/8 is loopback on Linux).
const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 66));

fn device_events(server: &ServerProcess, dev_id: &str, kind: &str) -> Vec<Value> {
    let (status, events) = server.api("GET", &format!("/api/events?device={dev_id}"), None);
    assert_eq!(status, 200);
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

fn enrolled_with_commands(server: &ServerProcess, dev_id: &str) -> (Value, Vec<i64>) {
    let enrollment = server.enroll(dev_id, "md5");
    let commands = vec![
        server.queue(dev_id, r#"{"op":"Get","target":"./DevInfo/DevId"}"#),
        server.queue(
            dev_id,
            r#"{"op":"Add","target":"./Vendor/gwmo/Once","data":"1","format":"chr"}"#,
        ),
    ];
    (enrollment, commands)
}

/// Each command ended with 200 (the Add would end 418 had it run twice), and the
/// device has nothing else queued or sent.
fn assert_done_once(server: &ServerProcess, dev_id: &str, commands: &[i64]) {
    for id in commands {
        let command = server.command(*id);
        assert_eq!(command["state"], "done", "{command}");
        assert_eq!(command["status"], 200, "{command}");
    }
    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    let all = device["commands"].as_array().unwrap();
    assert_eq!(all.len(), commands.len(), "{device}");
}

#[test]
fn finding_4_a_session_goes_on_only_at_the_secret_address_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000401";
    let (enrollment, commands) = enrolled_with_commands(&server, dev_id);
    let mut device = Scripted::new(&server, &enrollment, "4D");
    device.open(&server);

    // The RespURI carries a token of at least 128 bits.
    let path = device.path();
    let token = path.split_once("?s=").map(|(_, t)| t.to_owned()).unwrap();
    assert!(path.starts_with("/dm?s="), "{path}");
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );

    // A stranger who knows DevId and SessionID (sniffed, or guessed: a SessionID is 16
    // bits) posts the device's next message, and a Location Update of its own, to the
    // plain URL and under a guessed token: none reaches the session.
    let mut injected = decode(&String::from_utf8(device.next.body.clone()).unwrap());
    injected.body.commands.push(Command::Alert(gateway_alert(
        gwmo_proto::codes::alert_type::LOCATION_UPDATE,
        "./DevInfo",
        "gw-stranger".into(),
    )));
    let injected = encode(&injected);
    let guessed = format!("/dm?s={}", "0".repeat(32));
    for path in ["/dm", guessed.as_str()] {
        for body in [&device.next.body, &injected] {
            let (status, answer) = post_dm(server.addr, path, body);
            assert_eq!(status, 404, "{path}: {answer}");
        }
    }
    // The device goes on as if nothing happened; everything ran once.
    device.finish(&server);
    assert_done_once(&server, dev_id, &commands);
    assert!(device_events(&server, dev_id, "location-update").is_empty());
}

#[test]
fn finding_5_one_md5_credential_opens_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("server.db").display().to_string();
    // No throttling here: each round's losers would otherwise hold the next back.
    let server = ServerProcess::start_with(dir.path(), &database, "auth_lockout_failures = 0\n");
    let dev_id = "IMEI:350000000000501";
    let (enrollment, _) = enrolled_with_commands(&server, dev_id);
    let mut nonce = Vec::new();
    // Eight rounds: package 1 with valid credentials, captured and sent at once under
    // 16 SessionIDs; the next round's Cred is built with the nonce the winner got.
    for round in 0..8 {
        let copies = captured_package_1(&server, &enrollment, &nonce, round, 16);
        let answers = post_all_at_once(copies.into_iter().map(|body| (server.addr, body)));
        nonce = next_nonce(only_one_authenticated(round, &answers));
    }
}

#[test]
fn finding_6_a_strangers_package_1_leaves_the_live_session_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000601";
    let (enrollment, commands) = enrolled_with_commands(&server, dev_id);
    let mut device = Scripted::new(&server, &enrollment, "6E");
    device.open(&server);
    // The same DevId and SessionID, Alert 1201, no credentials, at the plain URL and
    // at the session's own: refused (407), and the session stays as it was.
    let mut package_1 = Scripted::new(&server, &enrollment, "6E").next.body;
    let mut stranger = decode(&String::from_utf8(package_1).unwrap());
    stranger.header.cred = None;
    package_1 = encode(&stranger);
    for path in ["/dm".to_owned(), device.path()] {
        let (status, answer) = post_dm(server.addr, &path, &package_1);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(header_status(&answer), 407, "{answer}");
    }
    for id in &commands {
        assert_eq!(server.command(*id)["state"], "sent");
    }
    device.finish(&server);
    assert_done_once(&server, dev_id, &commands);
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn open_sessions(server: &ServerProcess) -> u64 {
    let (status, text) = http(server.addr, "GET", "/metrics", None, "text/plain", b"");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix("gwmo_sessions_open "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

#[test]
fn finding_7_refused_messages_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000701";
    let (enrollment, _) = enrolled_with_commands(&server, dev_id);
    let mut package_1 =
        decode(&String::from_utf8(Scripted::new(&server, &enrollment, "1").next.body).unwrap());
    package_1.header.cred = None;
    let before = rss_kib(server.daemon.pid());
    // 200 refused package 1s, each under its own SessionID.
    for n in 0..200 {
        package_1.header.session_id = format!("{n:X}");
        let (status, answer) = post_dm(server.addr, "/dm", &encode(&package_1));
        assert_eq!((status, header_status(&answer)), (200, 407), "{answer}");
    }
    assert_eq!(
        open_sessions(&server),
        0,
        "a refused message opened a session"
    );
    // SessionIDs and DevIds past their limits are refused before anything is kept.
    package_1.header.session_id = "9".repeat(900 * 1024);
    for _ in 0..20 {
        let (status, answer) = post_dm(server.addr, "/dm", &encode(&package_1));
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("SessionID"), "{answer}");
    }
    package_1.header.session_id = "1".into();
    package_1.header.source.uri = format!("IMEI:{}", "1".repeat(300));
    let (status, answer) = post_dm(server.addr, "/dm", &encode(&package_1));
    assert_eq!(status, 400, "{answer}");
    assert_eq!(open_sessions(&server), 0);
    // 18 MB went through; a few MB of buffers may stay with the allocator.
    let grown = rss_kib(server.daemon.pid()).saturating_sub(before);
    assert!(grown < 32 * 1024, "the server grew by {grown} KiB");
}

/// One HTTP exchange over TLS from `source` (a loopback address of its own).
fn post_dm_from(source: IpAddr, addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let stream = connect_tls_from(addr, source);
    let content_type = "application/vnd.syncml.dm+xml";
    let (status, _, answer) = exchange(stream, addr, "POST", "/dm", None, content_type, body);
    (status, answer)
}

#[test]
fn finding_8_a_stranger_cannot_lock_the_device_out_or_move_its_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000801";
    let (enrollment, commands) = enrolled_with_commands(&server, dev_id);
    // The device's own package 1, built with the nonce it holds: kept for later.
    let mut device = Scripted::new(&server, &enrollment, "8A");
    // A stranger sends 40 package 1s without credentials and 40 with wrong ones.
    let mut forged = decode(&String::from_utf8(device.next.body.clone()).unwrap());
    let mut statuses = Vec::new();
    for n in 0..80 {
        forged.header.session_id = format!("{:X}", 0x200 + n);
        if n == 40 {
            let mut wrong = enrollment.clone();
            wrong["client_secret"] = "guess".into();
            forged.header.cred =
                decode(&String::from_utf8(Scripted::new(&server, &wrong, "1").next.body).unwrap())
                    .header
                    .cred;
        } else if n < 40 {
            forged.header.cred = None;
        }
        statuses.push(post_dm_from(STRANGER, server.addr, &encode(&forged)).0);
    }
    // Missing credentials cost the stranger nothing; wrong ones soon make it wait.
    assert!(statuses[..40].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[40..].contains(&429), "{statuses:?}");
    // The device, from its own address, with the nonce it held before: authenticated
    // at its first message (the stranger moved no nonce), and its session runs.
    let (status, answer) = device.send(&server);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(header_status(&answer), 212, "{answer}");
    assert!(device.take(&answer));
    device.finish(&server);
    assert_done_once(&server, dev_id, &commands);
    let failures = device_events(&server, dev_id, "auth-failed");
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|e| e["detail"]["source"] == STRANGER.to_string()),
        "{failures:?}"
    );
}

#[test]
fn a_device_challenged_in_its_first_answer_opens_its_session_with_message_2() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let dev_id = "IMEI:350000000000402";
    let (enrollment, commands) = enrolled_with_commands(&server, dev_id);
    let mut stale = enrollment.clone();
    // A client that forgot its nonce: its first Cred fails, it answers the challenge
    // (package 1 again, as message 2), and nothing was kept between the two.
    let mut device = Scripted::new(&server, &enrollment, "2C");
    let mut first = decode(&String::from_utf8(device.next.body.clone()).unwrap());
    stale["client_secret"] = "not-the-secret".into();
    first.header.cred =
        decode(&String::from_utf8(Scripted::new(&server, &stale, "2C").next.body).unwrap())
            .header
            .cred;
    let (status, answer) = post_dm(server.addr, "/dm", &encode(&first));
    assert_eq!((status, header_status(&answer)), (200, 401), "{answer}");
    // Its answer names the plain address: no token for a session nobody keeps.
    let resp_uri = decode(&answer).header.resp_uri.unwrap();
    assert!(!resp_uri.contains("?s="), "{answer}");
    assert!(device.take(&answer));
    assert_eq!(
        decode(&String::from_utf8(device.next.body.clone()).unwrap())
            .header
            .msg_id,
        2
    );
    device.finish(&server);
    assert_done_once(&server, dev_id, &commands);
}
