//! Who may touch what, against running processes: a device's session reaches only its
//! own commands; a plain device cannot report for others as a gateway does; a gateway
//! that claims a device it does not serve does not keep it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use common::*;
use gwmo_proto::codes::alert_type;
use serde_json::Value;

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
    session_with_alerts(dir.path(), &device, vec![attach_alert(victim, None)]);
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
    session_with_alerts(dir.path(), &rogue, vec![attach_alert(victim, None)]);
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

/// Runs `gwmo <role> --config <file with config>` and returns its failure's stderr.
fn refused_start(dir: &std::path::Path, role: &str, config: &str) -> String {
    let path = dir.join(format!("{role}.toml"));
    std::fs::write(&path, config).unwrap();
    let output = gwmo()
        .current_dir(dir)
        .arg(role)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{role} started with {config:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_empty_or_short_admin_token_stops_the_server_and_the_gateway_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    for token in ["", "change-me"] {
        let server = format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"dms.db\"\nadmin_token = \"{token}\"\n[tls]\nplain_http = true\n"
        );
        let stderr = refused_start(dir.path(), "server", &server);
        assert!(stderr.contains("at least 16 are needed"), "{stderr}");
        assert!(!dir.path().join("dms.db").exists(), "nothing created");
    }
    let gateway = "admin_token = \"\"\n[upstream]\nserver_id = \"d\"\nserver_url = \"http://127.0.0.1:9/dm\"\nclient_secret = \"c\"\nserver_secret = \"s\"\n";
    let stderr = refused_start(dir.path(), "gateway", gateway);
    assert!(stderr.contains("at least 16 are needed"), "{stderr}");
}
