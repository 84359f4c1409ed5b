//! Crash consistency with real processes: a DM Server killed with SIGKILL in the
//! middle of a session, or of a whole simulated rollout, loses no device, association,
//! queued command or result, and runs none twice; a device killed while writing its
//! tree keeps a whole one; a gateway that sends a report again because the answer died
//! with the server does not get it handled twice; a server killed inside the unit of
//! work of a Location Update leaves none of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::scripted::{Scripted, device_tree_for, next_nonce, post_dm};
use common::*;
use serde_json::Value;

/// Starts a session as the enrolled device and stops as soon as the server has handed
/// it its queued commands (they are `sent` in the store), without answering.
fn session_cut_short(server: &ServerProcess, enrollment: &Value, command: i64) {
    let mut device = Scripted::new(server, enrollment, "C1");
    for _ in 0..3 {
        let (status, answer) = device.send(server);
        assert_eq!(status, 200, "{answer}");
        if server.command(command)["state"] == "sent" {
            return;
        }
        // A challenge: the session answers it, nothing is run.
        assert!(device.take(&answer), "the session ended early");
    }
    panic!("the server never handed over the queued command");
}

/// A server in `dir` that drops a session idle for `idle_secs`, and takes back the
/// commands of a session no instance holds after twice that.
fn server_dropping_idle_sessions_after(dir: &Path, idle_secs: u64) -> ServerProcess {
    let database = dir.join("server.db").display().to_string();
    ServerProcess::start_with(
        dir,
        &database,
        &format!("session_idle_secs = {idle_secs}\n"),
    )
}

/// `enrollment`'s device running in `dir` with a package-0 listener, once its first
/// session has told `server` where that listener is.
fn listening_device(dir: &Path, server: &ServerProcess, enrollment: &Value) -> Daemon {
    let config = device_config(dir, enrollment, "xml", "listen = \"127.0.0.1:0\"\n");
    let mut device = device_daemon(&config, dir.join("device.log"));
    server.reported_notify_url(enrollment["dev_id"].as_str().unwrap(), &mut device);
    device
}

#[test]
fn a_server_killed_mid_session_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_dropping_idle_sessions_after(dir.path(), 1);
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

/// A command handed to a session that died with its server goes back to the queue,
/// and the device is woken with package 0 for it: a device that only listens (it never
/// polls) still gets it, without anyone asking.
#[test]
fn a_listening_device_is_woken_for_the_commands_a_killed_server_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    // Commands are taken back 2 x 3 s after they were sent: time for the device's own
    // first session to come and go before.
    let mut server = server_dropping_idle_sessions_after(dir.path(), 3);
    let dev_id = "IMEI:350000000000703";
    let enrollment = server.enroll(dev_id, "md5");
    let add = server.queue(
        dev_id,
        r#"{"op":"Add","target":"./Vendor/gwmo/Crash","data":"once"}"#,
    );
    session_cut_short(&server, &enrollment, add);
    server.kill_and_restart();

    let mut device = listening_device(dir.path(), &server, &enrollment);
    assert_eq!(
        server.command(add)["state"],
        "sent",
        "the premise: the command was still held by the dead session when the device came"
    );
    let done = poll(
        "the abandoned command done",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let command = server.command(add);
            (command["state"] == "done").then_some(command)
        },
    );
    assert_eq!(done["status"], 200, "{done}");
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./Vendor/gwmo/Crash"),
        Some(&Value::from("once"))
    );
}

/// Devices are woken several at once: one whose package-0 listener takes the
/// connection and never answers (the server waits 10 s for it) holds up none of the
/// others woken with it.
#[test]
fn a_device_that_never_answers_its_wake_up_holds_up_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_dropping_idle_sessions_after(dir.path(), 3);
    // Accepts connections (the kernel does) and never answers.
    let silent_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Woken first: the server wakes devices in DevId order.
    let (silent, listening) = ("IMEI:350000000000704", "IMEI:350000000000705");
    let silent_enrollment = server.enroll(silent, "md5");
    let silent_dir = dir.path().join("silent");
    std::fs::create_dir_all(&silent_dir).unwrap();
    let extra = format!(
        "listen = \"127.0.0.1:0\"\nnotify_url = \"https://{}/notify\"\n",
        silent_listener.local_addr().unwrap()
    );
    let silent_config = device_config(&silent_dir, &silent_enrollment, "xml", &extra);
    assert_success(&device_once(&silent_config), "the silent device's session");
    let listening_enrollment = server.enroll(listening, "md5");
    let mut commands = Vec::new();
    for (dev_id, enrollment) in [
        (silent, &silent_enrollment),
        (listening, &listening_enrollment),
    ] {
        let id = server.queue(dev_id, r#"{"op":"Get","target":"./DevInfo/DevId"}"#);
        session_cut_short(&server, enrollment, id);
        commands.push(id);
    }
    server.kill_and_restart();

    let _device = listening_device(dir.path(), &server, &listening_enrollment);
    assert_eq!(server.command(commands[1])["state"], "sent", "the premise");
    // The sweeper takes both back and wakes both devices, the silent one first.
    poll(
        "the abandoned commands requeued",
        Duration::from_secs(30),
        || (server.command(commands[0])["state"] == "queued").then_some(()),
    );
    let done = poll(
        "the listening device's command, well within the silent one's 10 s",
        Duration::from_secs(5),
        || {
            let command = server.command(commands[1]);
            (command["state"] == "done").then_some(command)
        },
    );
    assert_eq!(done["status"], 200, "{done}");
    drop(silent_listener);
}

/// A device killed with SIGKILL at many points of sessions that write its tree after
/// every message: each time its tree loads whole, and once sessions complete, every
/// queued command has run and the tree holds what they wrote.
#[test]
fn a_device_killed_while_writing_its_tree_keeps_a_whole_tree() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_dropping_idle_sessions_after(dir.path(), 1);
    let dev_id = "IMEI:350000000000702";
    let enrollment = server.enroll(dev_id, "md5");
    let commands: Vec<i64> = (0..60)
        .map(|i| {
            server.queue(
                dev_id,
                &format!(r#"{{"op":"Replace","target":"./Vendor/gwmo/Ping","data":"value {i}"}}"#),
            )
        })
        .collect();
    // Small messages: many of them, each followed by a tree write.
    let config = device_config(dir.path(), &enrollment, "xml", "max_msg_size = 2048\n");
    let state = dir.path().join("state");
    for kill_after_ms in (5..=100).step_by(5) {
        let mut command = gwmo();
        command
            .arg("device")
            .arg("--config")
            .arg(&config)
            .arg("--once");
        let mut device = Daemon::spawn(command, dir.path().join("device.log"));
        // Not a wait for anything: the moment of the crash, a little later each round.
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        device.kill();
        if state.join("tree.json").exists() {
            // `gwmo device tree` fails on a torn or half-written tree.
            let tree = device_tree(&state);
            assert!(leaf(&tree, "./DevInfo/DevId").is_some());
        }
    }
    // Sessions cut short give their commands back (idle timeout); the next whole
    // sessions run them all.
    poll("every command done", Duration::from_secs(60), || {
        let _ = device_once(&config);
        commands
            .iter()
            .all(|id| server.command(*id)["state"] == "done")
            .then_some(())
    });
    for id in &commands {
        assert_eq!(server.command(*id)["status"], 200);
    }
    let tree = device_tree(&state);
    assert_eq!(
        leaf(&tree, "./Vendor/gwmo/Ping"),
        Some(&Value::from("value 59"))
    );
}

/// Every device in the server's store, as `GET /api/devices/{id}` shows it (its
/// commands and its association included), by DevId.
fn store_snapshot(server: &ServerProcess) -> BTreeMap<String, Value> {
    let mut snapshot = BTreeMap::new();
    let mut after = String::new();
    loop {
        let (status, page) = server.api("GET", &format!("/api/devices?limit=500{after}"), None);
        assert_eq!(status, 200, "{page}");
        for device in page["devices"].as_array().unwrap() {
            let dev_id = device["dev_id"].as_str().unwrap();
            let (status, mut whole) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
            assert_eq!(status, 200, "{whole}");
            whole["commands"] = Value::Array(all_commands(server.addr, dev_id));
            snapshot.insert(dev_id.to_owned(), whole);
        }
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return snapshot,
        }
    }
}

fn associations(server: &ServerProcess) -> usize {
    let (_, body) = server.api("GET", "/api/associations?limit=1000", None);
    body["associations"].as_array().map_or(0, Vec::len)
}

/// SIGKILL of the DM Server in the middle of a whole simulated rollout (both
/// approaches, gateways and devices over TLS), then a restart on the same store: what
/// the store held just before the kill is all still there (devices, associations,
/// queued commands, results), nothing is duplicated, and the rollout goes on.
#[test]
fn a_server_killed_in_the_middle_of_a_rollout_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_dropping_idle_sessions_after(dir.path(), 1);
    let devices = 120;
    let report = dir.path().join("report.json");
    let mut command = gwmo();
    command
        .arg("sim")
        .args(["--devices", &devices.to_string(), "--gateways", "4"])
        .args([
            "--approach",
            "both",
            "--concurrency",
            "6",
            "--wait-secs",
            "20",
        ])
        .args(["--server", &format!("https://{}", server.addr)])
        .args(["--admin-token", TOKEN, "--pki"])
        .arg(pki())
        .arg("--report")
        .arg(&report)
        .env("RUST_LOG", "error");
    let mut sim = Daemon::spawn(command, dir.path().join("sim.log"));

    poll("a rollout under way", Duration::from_secs(120), || {
        sim.assert_running();
        (associations(&server) >= devices / 4).then_some(())
    });
    let before = store_snapshot(&server);
    server.kill_and_restart();
    poll("the simulation to finish", Duration::from_secs(300), || {
        std::fs::metadata(&report).ok()
    });
    let after = store_snapshot(&server);

    assert_eq!(
        after.len(),
        devices + 4,
        "every device and gateway enrolled"
    );
    for (dev_id, then) in &before {
        let now = after
            .get(dev_id)
            .unwrap_or_else(|| panic!("{dev_id} was lost"));
        if !then["gateway"].is_null() {
            assert_eq!(
                now["gateway"]["gateway_id"], then["gateway"]["gateway_id"],
                "{dev_id}'s association was lost"
            );
        }
        for command in then["commands"].as_array().unwrap() {
            let kept = now["commands"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == command["id"])
                .unwrap_or_else(|| panic!("{dev_id}: command {} was lost", command["id"]));
            if command["state"] == "done" {
                assert_eq!(kept, command, "{dev_id}: a recorded result changed");
            }
        }
    }
    for (dev_id, now) in &after {
        let mut specs: Vec<String> = now["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["spec"].to_string())
            .collect();
        let queued = specs.len();
        specs.sort();
        specs.dedup();
        assert_eq!(
            specs.len(),
            queued,
            "{dev_id}: a command queued twice: {now}"
        );
    }
    // The kill came in the middle, and the rollout went on after the restart.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let associated_before = before.values().filter(|d| !d["gateway"].is_null()).count();
    assert!(
        associated_before < devices,
        "the kill came after the rollout"
    );
    assert!(
        associations(&server) > associated_before,
        "nothing happened after the restart: {report}"
    );
    // Issue 14, finding 12: devices whose sessions died with the server tried again,
    // and the server woke those whose commands came back: the rollout ends with no
    // error, every association and command verified in the store.
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["verified"]["associations"], devices, "{report}");
    // Commands handed to a session that died with the server go back to the queue
    // (a device's next session runs them); none stays stuck as sent.
    poll("no command stuck as sent", Duration::from_secs(30), || {
        let now = store_snapshot(&server);
        let stuck = now
            .values()
            .flat_map(|d| d["commands"].as_array().unwrap())
            .any(|c| c["state"] == "sent");
        (!stuck).then_some(())
    });
}

/// A gateway whose Device Attach reached the server but whose answer did not (the
/// server was killed before it could send it) reports the same attach again: the
/// server recognises the bootstrap it already handled and queues no second validation.
/// A new bootstrap of the same device by the same gateway is validated again.
#[test]
fn a_device_attach_sent_again_after_a_lost_answer_queues_one_validation() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let device = "IMEI:350000000000801";
    server.enroll(device, "md5");
    let gateway = registered_gateway(&server, "gw-l");
    let validations = || {
        let (_, record) = server.api("GET", &format!("/api/devices/{device}"), None);
        assert_eq!(record["gateway"]["gateway_id"], "gw-l", "{record}");
        record["commands"].as_array().unwrap().len()
    };

    session_with_alerts(
        dir.path(),
        &gateway,
        vec![attach_alert(device, Some("1000"))],
    );
    assert_eq!(validations(), 1);
    session_with_alerts(
        dir.path(),
        &gateway,
        vec![attach_alert(device, Some("1000"))],
    );
    assert_eq!(validations(), 1, "the same attach, sent again");
    session_with_alerts(
        dir.path(),
        &gateway,
        vec![attach_alert(device, Some("2000"))],
    );
    assert_eq!(validations(), 2, "a new bootstrap");
}

/// `dev_id`, enrolled, with its first session ready to report `gateway_id` in a
/// Location Update: its enrollment, the alerts it sends, and the session.
fn reporting_gateway(
    server: &ServerProcess,
    dev_id: &str,
    gateway_id: &str,
) -> (Value, Vec<gwmo_proto::Alert>, Scripted) {
    let enrollment = server.enroll(dev_id, "md5");
    let seen = vec![gateway_alert(
        gwmo_proto::codes::alert_type::LOCATION_UPDATE,
        "./DevInfo",
        gateway_id.into(),
    )];
    let tree = device_tree_for(server, &enrollment);
    let first = Scripted::resume(server, &enrollment, "1", &[], tree, seen.clone());
    (enrollment, seen, first)
}

/// A device that ran its bootstrap Atomic while the server was killed before its
/// Statuses arrived: the Atomic goes again after the restart and finds the account
/// there (418). The server sends the same account as Replaces in that session, the
/// command ends 200 once, and the association follows (issue 14, finding 12).
#[test]
fn a_bootstrap_whose_answer_died_with_the_server_settles_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_dropping_idle_sessions_after(dir.path(), 1);
    registered_gateway(&server, "gw-doubt");
    let dev_id = "IMEI:350000000000702";
    let (enrollment, seen, mut first) = reporting_gateway(&server, dev_id, "gw-doubt");
    let (status, answer) = first.send(&server);
    assert_eq!(status, 200, "{answer}");
    let nonce = next_nonce(&answer);
    // The device runs the bootstrap; its Statuses never leave: the server dies.
    assert!(first.take(&answer));
    let tree = first.into_tree();
    assert!(gwmo_tree::account_for(&tree, "gw-doubt").is_some());
    server.kill_and_restart();
    let bootstrap = |server: &ServerProcess| -> Value {
        let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
        device["commands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["spec"]["op"] == "Atomic")
            .cloned()
            .unwrap()
    };
    poll(
        "the bootstrap back in the queue",
        Duration::from_secs(30),
        || (bootstrap(&server)["state"] == "queued").then_some(()),
    );
    let mut again = Scripted::resume(&server, &enrollment, "2", &nonce, tree, seen);
    again.finish(&server);

    let settled = bootstrap(&server);
    assert_eq!(settled["state"], "done", "{settled}");
    assert_eq!(settled["status"], 200, "{settled}");
    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(device["gateway"]["gateway_id"], "gw-doubt", "{device}");
    assert_eq!(device["commands"].as_array().unwrap().len(), 1, "{device}");
}

/// A server in `dir` that aborts at crash point `point` (`GWMO_CRASH_AT`, read by the
/// store), dropping idle sessions after 1 s; restarted, it runs without the crash point.
fn server_crashing_at(dir: &Path, point: &str) -> ServerProcess {
    let database = dir.join("server.db").display().to_string();
    ServerProcess::start_with_env(
        dir,
        &database,
        "session_idle_secs = 1\n",
        &[("GWMO_CRASH_AT", point)],
        &[],
    )
}

/// Posts `body` to `path`, expecting no answer: the server aborts while handling it.
/// Returns once the server process has ended.
fn post_into_the_crash(server: &mut ServerProcess, path: String, body: Vec<u8>) {
    let addr = server.addr;
    let sending = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| post_dm(addr, &path, &body));
    });
    poll("the server aborted", Duration::from_secs(30), || {
        server.daemon.exited().then_some(())
    });
    let _ = sending.join();
}

/// The server aborts (`GWMO_CRASH_AT=queue-bootstrap`) after queuing the first command
/// of a Location Update's bootstrap, before its plan and event are written. Nothing of
/// the unit of work is left after the restart: no command queued without its plan
/// (which no Status could ever settle). The device's next Location Update plans it
/// whole, and the association follows.
#[test]
fn a_server_killed_inside_a_location_updates_unit_of_work_leaves_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_crashing_at(dir.path(), "queue-bootstrap");
    registered_gateway(&server, "gw-unit");
    let dev_id = "IMEI:350000000000703";
    let (enrollment, seen, first) = reporting_gateway(&server, dev_id, "gw-unit");
    post_into_the_crash(&mut server, first.path(), first.body().to_vec());
    server.kill_and_restart();

    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(device["commands"], serde_json::json!([]), "{device}");
    assert!(device["gateway"].is_null(), "{device}");
    let (_, events) = server.api("GET", &format!("/api/events?device={dev_id}"), None);
    assert!(!events.to_string().contains("location-update"), "{events}");

    let tree = device_tree_for(&server, &enrollment);
    let mut again = Scripted::resume(&server, &enrollment, "2", &[], tree, seen);
    again.finish(&server);
    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(device["gateway"]["gateway_id"], "gw-unit", "{device}");
    let commands = device["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "{device}");
    assert_eq!(commands[0]["status"], 200, "{device}");
}

/// The server aborts (`GWMO_CRASH_AT=settle-bootstrap`) once it has recorded a
/// confirmed bootstrap's association, before what it entails (the gateway's inventory
/// command, the event) is written. After the restart the settlement is not there
/// either: the bootstrap goes again, settles once, and the gateway is told. With the
/// two written apart, the association stood and the gateway never heard of the device.
#[test]
fn a_server_killed_while_settling_a_bootstrap_settles_it_whole_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_crashing_at(dir.path(), "settle-bootstrap");
    registered_gateway(&server, "gw-settle");
    let dev_id = "IMEI:350000000000704";
    let (enrollment, seen, mut first) = reporting_gateway(&server, dev_id, "gw-settle");
    let (status, answer) = first.send(&server);
    assert_eq!(status, 200, "{answer}");
    let nonce = next_nonce(&answer);
    // The device runs the bootstrap; the server dies settling it.
    assert!(first.take(&answer));
    post_into_the_crash(&mut server, first.path(), first.body().to_vec());
    let tree = first.into_tree();
    server.kill_and_restart();

    let gateway_commands = |server: &ServerProcess| -> Vec<Value> {
        let (_, gateway) = server.api("GET", "/api/devices/GW:gw-settle", None);
        gateway["commands"].as_array().unwrap().clone()
    };
    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert!(
        device["gateway"].is_null(),
        "settled without its followups: {device}"
    );
    assert_eq!(gateway_commands(&server), Vec::<Value>::new());

    poll(
        "the bootstrap back in the queue",
        Duration::from_secs(30),
        || {
            let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
            (device["commands"][0]["state"] == "queued").then_some(())
        },
    );
    let mut again = Scripted::resume(&server, &enrollment, "2", &nonce, tree, seen);
    again.finish(&server);
    let (_, device) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
    assert_eq!(device["gateway"]["gateway_id"], "gw-settle", "{device}");
    let told = gateway_commands(&server);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].to_string().contains("DeviceInventory"), "{told:?}");
}

/// The server aborts (`GWMO_CRASH_AT=associate`) once it has recorded a Device
/// Attach's association, before the validation it entails is queued. After the
/// restart the gateway's report, sent again, is new to the server: the association and
/// its validation are there together. With the two written apart, the repeated report
/// was taken as handled and the device was never validated.
#[test]
fn a_server_killed_while_recording_a_device_attach_validates_the_device_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_crashing_at(dir.path(), "associate");
    let device = "IMEI:350000000000802";
    server.enroll(device, "md5");
    let gateway = registered_gateway(&server, "gw-attach");
    let (gateway_dir, report) = (dir.path().to_owned(), gateway.clone());
    let reporting = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| {
            session_with_alerts(
                &gateway_dir,
                &report,
                vec![attach_alert(device, Some("1000"))],
            )
        });
    });
    poll("the server aborted", Duration::from_secs(30), || {
        server.daemon.exited().then_some(())
    });
    let _ = reporting.join();
    server.kill_and_restart();
    let (_, record) = server.api("GET", &format!("/api/devices/{device}"), None);
    assert!(
        record["gateway"].is_null(),
        "associated without its validation: {record}"
    );

    session_with_alerts(
        dir.path(),
        &gateway,
        vec![attach_alert(device, Some("1000"))],
    );
    let (_, record) = server.api("GET", &format!("/api/devices/{device}"), None);
    assert_eq!(record["gateway"]["gateway_id"], "gw-attach", "{record}");
    let commands = record["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "the validation: {record}");
    assert!(commands[0].to_string().contains("validated"), "{record}");
}
