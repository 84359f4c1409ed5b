//! Who may touch what, against running processes: a device's session reaches only its
//! own commands; a plain device cannot report for others as a gateway does; a gateway
//! that claims a device it does not serve does not keep it.

mod common;

use std::path::Path;

use common::*;
use gwmo_device::settings::{AuthName, FactoryAccount};
use gwmo_device::{Agent, DeviceSettings};
use gwmo_proto::Alert;
use gwmo_proto::codes::{alert, alert_type};
use gwmo_session::Trigger;
use serde_json::Value;

/// Holds one session as `enrollment`'s device, sending `alerts` (a client that says
/// whatever it likes, with its own valid credentials).
fn session_with_alerts(dir: &Path, enrollment: &Value, alerts: Vec<Alert>) {
    let text = |key: &str| enrollment[key].as_str().unwrap().to_owned();
    let agent = Agent::open(DeviceSettings {
        dev_id: text("dev_id"),
        state_dir: dir.join(text("dev_id").replace(':', "_")),
        accounts: vec![FactoryAccount {
            server_id: text("server_id"),
            server_url: text("server_url"),
            auth: AuthName::Md5,
            client_name: Some(text("client_name")),
            client_secret: text("client_secret"),
            server_name: Some(text("server_name")),
            server_secret: text("server_secret"),
        }],
        tls: test_tls(),
        ..DeviceSettings::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(agent.session(&text("server_id"), Trigger::Client, None, alerts))
        .unwrap();
}

/// A Generic Alert of type `kind` about the gateway node `source`, as a gateway sends it.
fn gateway_alert(kind: &str, source: &str, data: String) -> Alert {
    Alert {
        cmd_id: 0,
        code: alert::GENERIC_ALERT,
        correlator: None,
        items: vec![gwmo_gateway::gateway::gwmo_alert_item(kind, source, data)],
    }
}

/// A Device Attach Alert naming `dev_id`.
fn attach_alert(dev_id: &str) -> Alert {
    let data = serde_json::json!({ "dev_id": dev_id, "origin": "local-bootstrap" });
    gateway_alert(
        alert_type::DEVICE_ATTACH,
        "./GwMO/DeviceInventory/x",
        data.to_string(),
    )
}

/// Enrolls `GW:<gateway_id>` and registers it as a gateway; returns its enrollment.
fn registered_gateway(server: &ServerProcess, gateway_id: &str) -> Value {
    let enrollment = server.enroll(&format!("GW:{gateway_id}"), "md5");
    let registration = format!(
        r#"{{"gateway_id":"{gateway_id}","dev_id":"GW:{gateway_id}","dm_url":"https://127.0.0.1:9/dm","server_assisted":true}}"#
    );
    assert_eq!(
        server.api("POST", "/api/gateways", Some(&registration)).0,
        201
    );
    enrollment
}

#[test]
fn a_device_session_reaches_only_its_own_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mine = server.enroll("IMEI:350000000000601", "md5");
    server.enroll("IMEI:350000000000602", "md5");
    let theirs = server.queue(
        "IMEI:350000000000602",
        r#"{"op":"Get","target":"./DevInfo/DevId"}"#,
    );
    assert_success(
        &device_once(&device_config(dir.path(), &mine, "xml", "")),
        "session",
    );
    assert_eq!(server.command(theirs)["state"], "queued");
    // The same device's credentials under another DevId: refused, nothing claimed.
    let mut posing = mine.clone();
    posing["dev_id"] = "IMEI:350000000000602".into();
    let other = dir.path().join("posing");
    std::fs::create_dir_all(&other).unwrap();
    assert!(
        !device_once(&device_config(&other, &posing, "xml", ""))
            .status
            .success()
    );
    assert_eq!(server.command(theirs)["state"], "queued");
}

#[test]
fn a_plain_device_cannot_report_devices_as_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let victim = "IMEI:350000000000603";
    server.enroll(victim, "md5");
    let device = server.enroll("IMEI:350000000000604", "md5");
    session_with_alerts(dir.path(), &device, vec![attach_alert(victim)]);
    let (_, record) = server.api("GET", &format!("/api/devices/{victim}"), None);
    assert_eq!(record["gateway"], Value::Null, "{record}");
    assert_eq!(
        record["commands"],
        serde_json::json!([]),
        "no validation queued"
    );
}

#[test]
fn a_gateway_claiming_a_device_it_does_not_serve_does_not_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let victim = "IMEI:350000000000605";
    let enrollment = server.enroll(victim, "md5");
    // A registered gateway (the operator trusts it), lying about a device.
    let rogue = registered_gateway(&server, "gw-rogue");
    session_with_alerts(dir.path(), &rogue, vec![attach_alert(victim)]);
    let (_, record) = server.api("GET", &format!("/api/devices/{victim}"), None);
    assert_eq!(record["gateway"]["gateway_id"], "gw-rogue", "{record}");

    // The device's next session carries the validation; it has no such account (404),
    // so the server drops the association the lie made.
    assert_success(
        &device_once(&device_config(dir.path(), &enrollment, "xml", "")),
        "session",
    );
    let (_, record) = server.api("GET", &format!("/api/devices/{victim}"), None);
    assert_eq!(record["gateway"], Value::Null, "{record}");
    assert_eq!(record["commands"][0]["status"], 404, "{record}");
    let (_, events) = server.api(
        "GET",
        &format!("/api/events?kind=attach-refused&device={victim}"),
        None,
    );
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["gateway"], "gw-rogue");
}

#[test]
fn a_gateway_cannot_report_results_for_another_gateways_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let owner = registered_gateway(&server, "gw-a");
    let other = registered_gateway(&server, "gw-b");
    let request =
        r#"{"targets":["IMEI:350000000000606"],"command":{"op":"Get","target":"./DevInfo/Mod"}}"#;
    let (status, body) = server.api("POST", "/api/gateways/gw-a/fanout", Some(request));
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let results = |status: u16| {
        gateway_alert(
            alert_type::FANOUT_RESULTS,
            &format!("./GwMO/Fanout/{id}"),
            format!(r#"[{{"dev_id":"IMEI:350000000000606","status":{status}}}]"#),
        )
    };

    session_with_alerts(dir.path(), &other, vec![results(500)]);
    let (_, fanout) = server.api("GET", &format!("/api/fanouts/{id}"), None);
    assert_eq!(
        fanout["state"], "sent",
        "another gateway's report was taken: {fanout}"
    );

    session_with_alerts(dir.path(), &owner, vec![results(200)]);
    let (_, fanout) = server.api("GET", &format!("/api/fanouts/{id}"), None);
    assert_eq!(fanout["state"], "done", "{fanout}");
    assert_eq!(fanout["results"][0]["status"], 200, "{fanout}");
}
