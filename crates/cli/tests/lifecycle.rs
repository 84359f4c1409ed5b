//! The lifecycle of what the server manages, through the admin API of a running
//! server and real device sessions: queued commands wake their device, are listed,
//! cancelled and expire unsent; a device is decommissioned; a gateway is read and
//! removed only once nothing depends on it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const ADD: &str = r#"{"op":"Add","target":"./Vendor/gwmo/Lifecycle","data":"ran"}"#;
const GET: &str = r#"{"op":"Get","target":"./DevInfo/Man"}"#;

fn queue_quietly(server: &ServerProcess, dev_id: &str, spec: &str, query: &str) -> i64 {
    let (status, body) = server.api(
        "POST",
        &format!("/api/devices/{dev_id}/commands?wake=false{query}"),
        Some(spec),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["waking"], false);
    body["id"].as_i64().unwrap()
}

fn listed(server: &ServerProcess, dev_id: &str, query: &str) -> Vec<i64> {
    let (status, page) = server.api(
        "GET",
        &format!("/api/devices/{dev_id}/commands{query}"),
        None,
    );
    assert_eq!(status, 200, "{page}");
    page["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn queuing_a_command_wakes_its_device_without_a_notify_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let enrollment = server.enroll("IMEI:350000000000911", "md5");
    let config = device_config(
        dir.path(),
        &enrollment,
        "wbxml",
        "listen = \"127.0.0.1:0\"\n",
    );
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    server.reported_notify_url("IMEI:350000000000911", &mut device);
    let (status, queued) = server.api(
        "POST",
        "/api/devices/IMEI:350000000000911/commands",
        Some(ADD),
    );
    assert_eq!(status, 201, "{queued}");
    assert_eq!(
        (queued["state"].as_str(), queued["waking"].as_bool()),
        (Some("queued"), Some(true))
    );
    let id = queued["id"].as_i64().unwrap();
    let done = poll(
        "the woken device to run the command",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let command = server.command(id);
            (command["state"] == "done").then_some(command)
        },
    );
    assert_eq!(done["status"], 200, "{done}");
    assert!(
        device.log_text().contains("package 0 accepted"),
        "{}",
        device.log_text()
    );
}

#[test]
fn a_cancelled_command_never_goes_out_and_one_sent_cannot_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let enrollment = server.enroll("IMEI:350000000000912", "md5");
    let dev = "IMEI:350000000000912";
    let cancelled = queue_quietly(&server, dev, ADD, "");
    let kept = queue_quietly(&server, dev, GET, "");
    assert_eq!(
        listed(&server, dev, "?state=queued"),
        [kept, cancelled],
        "newest first"
    );

    let (status, body) = server.api("DELETE", &format!("/api/commands/{cancelled}"), None);
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    let (status, body) = server.api("DELETE", &format!("/api/commands/{cancelled}"), None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("is cancelled"),
        "{body}"
    );
    assert_eq!(server.api("DELETE", "/api/commands/999999", None).0, 404);

    assert_success(
        &device_once(&device_config(dir.path(), &enrollment, "xml", "")),
        "session",
    );
    assert_eq!(server.command(kept)["state"], "done");
    let record = server.command(cancelled);
    assert_eq!(
        (record["state"].as_str(), record["sent_at"].as_i64()),
        (Some("cancelled"), None),
        "{record}"
    );
    let tree = device_tree(&dir.path().join("state"));
    assert!(
        !tree.to_string().contains("Lifecycle"),
        "the cancelled Add ran"
    );
    let (status, body) = server.api("DELETE", &format!("/api/commands/{kept}"), None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("is done"),
        "{body}"
    );
    assert_eq!(listed(&server, dev, "?state=cancelled"), [cancelled]);
    assert_eq!(listed(&server, dev, "?limit=1"), [kept]);
    assert_eq!(
        listed(&server, dev, &format!("?before={kept}")),
        [cancelled]
    );
    let (status, body) = server.api(
        "GET",
        &format!("/api/devices/{dev}/commands?state=lost"),
        None,
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_command_that_expires_before_any_session_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    // The sweeper runs every session_idle_secs (at most 15 s): here every second.
    let database = dir.path().join("server.db").display().to_string();
    let server = ServerProcess::start_with(dir.path(), &database, "session_idle_secs = 1\n");
    let enrollment = server.enroll("IMEI:350000000000913", "md5");
    let dev = "IMEI:350000000000913";
    for bad in ["0", "31622401", "soon"] {
        let (status, body) = server.api(
            "POST",
            &format!("/api/devices/{dev}/commands?wake=false&expires_in={bad}"),
            Some(ADD),
        );
        assert_eq!(status, 400, "expires_in={bad}: {body}");
    }
    let lapsing = queue_quietly(&server, dev, ADD, "&expires_in=1");
    let lasting = queue_quietly(&server, dev, GET, "&expires_in=3600");
    let expired = poll(
        "the sweeper to expire the command",
        Duration::from_secs(30),
        || {
            let command = server.command(lapsing);
            (command["state"] == "expired").then_some(command)
        },
    );
    assert!(
        expired["done_at"].as_i64() >= expired["expires_at"].as_i64(),
        "{expired}"
    );

    assert_success(
        &device_once(&device_config(dir.path(), &enrollment, "xml", "")),
        "session",
    );
    assert_eq!(server.command(lasting)["state"], "done");
    assert_eq!(server.command(lapsing)["state"], "expired");
    let tree = device_tree(&dir.path().join("state"));
    assert!(
        !tree.to_string().contains("Lifecycle"),
        "the expired Add ran"
    );
}

#[test]
fn a_decommissioned_device_is_forgotten_and_a_gateway_goes_only_once_nothing_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let behind = "IMEI:350000000000914";
    let enrollment = server.enroll(behind, "md5");
    let gateway = registered_gateway(&server, "gw-life");
    // The gateway reports the device behind it.
    session_with_alerts(dir.path(), &gateway, vec![attach_alert(behind, None)]);
    let (_, detail) = server.api("GET", "/api/gateways/gw-life", None);
    assert_eq!(detail["devices"], 1, "{detail}");
    assert!(detail["last_session_at"].is_i64(), "{detail}");
    assert_eq!(server.api("GET", "/api/gateways/gw-none", None).0, 404);
    let fanout = server.api(
        "POST",
        "/api/gateways/gw-life/fanout",
        Some(&format!(r#"{{"targets":["{behind}"],"command":{GET}}}"#)),
    );
    assert_eq!(fanout.0, 202, "{}", fanout.1);
    let (_, fanouts) = server.api("GET", "/api/fanouts?gateway=gw-life", None);
    assert_eq!(fanouts["fanouts"][0]["id"], fanout.1["id"], "{fanouts}");

    // The gateway's own device stays while it is a gateway; the gateway stays while a
    // device is behind it, unless forced.
    let (status, body) = server.api("DELETE", "/api/devices/GW:gw-life", None);
    assert_eq!(status, 409, "{body}");
    let (status, body) = server.api("DELETE", "/api/gateways/gw-life", None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("1 devices are behind"),
        "{body}"
    );

    let queued = queue_quietly(&server, behind, GET, "");
    let (status, gone) = server.api("DELETE", &format!("/api/devices/{behind}"), None);
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["gateway"]["gateway_id"], "gw-life", "{gone}");
    // Its gateway is told to take it out of its Device Inventory (and so stop serving it).
    let told = server.command(gone["gateway"]["command"].as_i64().unwrap());
    assert_eq!(told["dev_id"], "GW:gw-life");
    assert_eq!(
        told["spec"],
        serde_json::json!({ "op": "Delete", "target": "./GwMO/DeviceInventory/IMEI_350000000000914" })
    );
    assert_eq!(
        server.api("GET", &format!("/api/devices/{behind}"), None).0,
        404
    );
    assert_eq!(
        server
            .api("GET", &format!("/api/commands/{queued}"), None)
            .0,
        404
    );
    assert_eq!(
        server
            .api("DELETE", &format!("/api/devices/{behind}"), None)
            .0,
        404
    );
    let (_, associations) = server.api("GET", "/api/associations", None);
    assert_eq!(associations["associations"], Value::Array(vec![]));
    // Its credentials open nothing any more.
    let refused = device_once(&device_config(dir.path(), &enrollment, "xml", ""));
    assert!(
        !refused.status.success(),
        "a decommissioned device held a session"
    );

    let (status, removed) = server.api("DELETE", "/api/gateways/gw-life", None);
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["associations_dropped"], 0);
    assert_eq!(server.api("GET", "/api/gateways/gw-life", None).0, 404);
    assert_eq!(
        server
            .api("GET", &format!("/api/fanouts/{}", fanout.1["id"]), None)
            .0,
        404
    );
    let (status, body) = server.api("DELETE", "/api/devices/GW:gw-life", None);
    assert_eq!(status, 200, "now an ordinary device: {body}");
}
