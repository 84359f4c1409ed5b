//! Several `gwmo server` instances sharing one PostgreSQL database, behind a load
//! balancer that sends each new connection to the next instance: a device's sessions
//! land on different instances, each session stays on the instance that opened it
//! (RespURI), and every queued command runs exactly once.
//!
//! Needs `GWMO_TEST_POSTGRES` (an admin URL); CI sets it, and there a missing one fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::scripted::*;
use common::*;

/// A TCP load balancer on loopback: connection n goes to `backends[n % len]`.
/// Returns its address and the number of connections it took.
fn round_robin_balancer(backends: Vec<SocketAddr>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let Ok(backend) = TcpStream::connect(backends[n % backends.len()]) else {
                continue;
            };
            pipe(&client, &backend);
            pipe(&backend, &client);
        }
    });
    (addr, accepted)
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn sessions_opened(server: &ServerProcess) -> f64 {
    let (status, text) = http(server.addr, "GET", "/metrics", None, "text/plain", b"");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix("gwmo_sessions_opened_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no session counter in:\n{text}"))
}

fn start_instances(dir: &Path, database: &ScratchDatabase) -> [ServerProcess; 2] {
    start_instances_with(dir, database, "")
}

/// Two instances with more settings (TOML lines).
fn start_instances_with(
    dir: &Path,
    database: &ScratchDatabase,
    settings: &str,
) -> [ServerProcess; 2] {
    ["a", "b"].map(|name| ServerProcess::start_with(&dir.join(name), &database.url, settings))
}

#[test]
fn a_device_served_by_two_instances_runs_each_queued_command_once() {
    let Some(database) = ScratchDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let instances = start_instances(dir.path(), &database);
    let (balancer, connections) = round_robin_balancer(instances.iter().map(|s| s.addr).collect());
    let dev_id = "IMEI:350000000000201";
    let mut enrollment = instances[0].enroll(dev_id, "md5");
    // The device knows the operator's one public URL: the balancer's.
    enrollment["server_url"] = format!("https://{balancer}/dm").into();
    let config = device_config(dir.path(), &enrollment, "xml", "");

    let mut queued = Vec::new();
    for round in 0..2 {
        // Queued through both instances: the queue is shared.
        for (i, instance) in instances.iter().enumerate() {
            let spec = format!(
                r#"{{"op":"Add","target":"./Vendor/gwmo/R{round}I{i}","data":"{round}{i}"}}"#
            );
            queued.push(instance.queue(dev_id, &spec));
        }
        let before = instances.each_ref().map(sessions_opened);
        assert_success(&device_once(&config), "session");
        let after = instances.each_ref().map(sessions_opened);
        // The session opened on the instance the balancer chose and stayed there.
        assert_eq!(after[round] - before[round], 1.0, "round {round}");
        assert_eq!(after[1 - round], before[1 - round], "round {round}");
    }
    // One connection per session: every message after the first went to the RespURI.
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    let tree = device_tree(&dir.path().join("state"));
    for id in &queued {
        // Both instances answer for every command: the store is shared.
        for instance in &instances {
            let command = instance.command(*id);
            // An Add run twice would have failed with 418 the second time.
            assert_eq!(command["status"], 200, "{command}");
            assert_eq!(command["state"], "done", "{command}");
        }
    }
    for round in 0..2 {
        for i in 0..2 {
            let leaf_uri = format!("./Vendor/gwmo/R{round}I{i}");
            assert_eq!(
                leaf(&tree, &leaf_uri),
                Some(&serde_json::Value::String(format!("{round}{i}")))
            );
        }
    }
    // The second instance authenticated the device with the nonce the first issued.
    let (_, device) = instances[1].api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(device["sessions"], 2, "{device}");
}

/// A captured package 1 sent to both instances at once opens one session: the
/// instances share no memory, so only the store's swap of the nonce the credentials
/// were built with (kept only where that nonce is still held) can refuse the others.
#[test]
fn one_md5_credential_opens_one_session_across_two_instances() {
    let Some(database) = ScratchDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No throttling here: each round's losers would otherwise hold the next back.
    let instances = start_instances_with(dir.path(), &database, "auth_lockout_failures = 0\n");
    let enrollment = instances[0].enroll("IMEI:350000000000202", "md5");
    let mut nonce = Vec::new();
    for round in 0..8 {
        let copies = captured_package_1(&instances[0], &enrollment, &nonce, round, 16);
        let posts = copies
            .into_iter()
            .enumerate()
            .map(|(n, body)| (instances[n % 2].addr, body));
        let answers = post_all_at_once(posts);
        nonce = next_nonce(only_one_authenticated(round, &answers));
    }
}

#[test]
fn instances_started_together_share_one_migrated_schema() {
    let Some(database) = ScratchDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let instances = start_instances(dir.path(), &database);
    instances[0].enroll("IMEI:350000000000202", "hmac");
    let (status, device) = instances[1].api("GET", "/api/devices/IMEI:350000000000202", None);
    assert_eq!(status, 200, "{device}");
    let (status, _) = instances[1].api(
        "POST",
        "/api/devices",
        Some(r#"{"dev_id":"IMEI:350000000000202","auth":"md5"}"#),
    );
    assert_eq!(status, 409, "enrolled once across instances");
}

#[test]
fn instances_share_their_firmware_through_the_store_and_one_artifact_directory() {
    let Some(database) = ScratchDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("artifacts");
    let settings = format!("artifact_dir = {shared:?}\n");
    let instances = [
        ServerProcess::start_with(&dir.path().join("a"), &database.url, &settings),
        ServerProcess::start_with(&dir.path().join("b"), &database.url, &settings),
    ];
    // The image goes up through instance a...
    let image: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (status, artifact) = upload_artifact(
        instances[0].addr,
        "name=fw&version=2.0&man=gwmo&model=gwmo-device",
        &image,
    );
    assert_eq!(status, 201, "{artifact}");
    let id = artifact["id"].as_str().unwrap();
    // ...and instance b knows it (the store) and has its bytes (the directory).
    let (status, known) = instances[1].api("GET", &format!("/api/artifacts/{id}"), None);
    assert_eq!((status, &known["sha256"]), (200, &artifact["sha256"]));

    // A device whose sessions go to a, updated through b: it downloads from b.
    let dev_id = "IMEI:350000000000209";
    let enrollment = instances[0].enroll(dev_id, "md5");
    let home = dir.path().join("device");
    std::fs::create_dir_all(&home).unwrap();
    let config = device_config(&home, &enrollment, "xml", "listen = \"127.0.0.1:0\"\n");
    let mut device = device_daemon(&config, home.join("device.log"));
    instances[0].reported_notify_url(dev_id, &mut device);
    let request = format!(r#"{{"artifact":"{id}"}}"#);
    let (status, update) = instances[1].api(
        "POST",
        &format!("/api/devices/{dev_id}/firmware"),
        Some(&request),
    );
    assert_eq!(status, 202, "{update}");
    let ended = poll(
        "the update's end",
        std::time::Duration::from_secs(60),
        || {
            device.assert_running();
            let (_, page) =
                instances[0].api("GET", &format!("/api/devices/{dev_id}/firmware"), None);
            let update = page["updates"][0].clone();
            matches!(update["state"].as_str(), Some("succeeded" | "failed")).then_some(update)
        },
    );
    assert_eq!(ended["result"], 200, "{ended}");
    let served = |instance: &ServerProcess| {
        let (_, now) = instance.api("GET", &format!("/api/artifacts/{id}"), None);
        now["bytes_served"].as_u64().unwrap()
    };
    assert_eq!(
        served(&instances[1]),
        image.len() as u64,
        "b served the device"
    );
    assert_eq!(served(&instances[0]), 0);
}
