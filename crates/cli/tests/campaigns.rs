//! Campaigns against real processes: one command for the devices a filter matches, in
//! waves; devices behind a gateway get it through the gateway's fan-out, the others
//! straight; a wave failing past the threshold pauses the campaign; cancelling it sends
//! nothing more.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A server whose sweeper (and so every campaign) moves every second.
fn server(dir: &std::path::Path) -> ServerProcess {
    let database = dir.join("server.db").display().to_string();
    ServerProcess::start_with(dir, &database, "sweep_secs = 1\n")
}

/// Runs `dev_id` in its own directory: behind `gateway` when one is given (and waits
/// until the server knows it is associated), else on its own with a package-0 listener.
fn device(
    dir: &std::path::Path,
    server: &ServerProcess,
    dev_id: &str,
    gateway: Option<&str>,
) -> Daemon {
    let home = dir.join(dev_id.replace(':', "_"));
    std::fs::create_dir_all(&home).unwrap();
    let enrollment = server.enroll(dev_id, "md5");
    let mut daemon = match gateway {
        Some(gateway) => end_device(&home, &enrollment, gateway),
        None => {
            let config = device_config(&home, &enrollment, "xml", "listen = \"127.0.0.1:0\"\n");
            device_daemon(&config, home.join("device.log"))
        }
    };
    match gateway {
        Some(gateway) => poll(
            &format!("{dev_id} associated with {gateway}"),
            Duration::from_secs(60),
            || {
                daemon.assert_running();
                let (_, record) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
                (record["gateway"]["gateway_id"] == gateway).then_some(())
            },
        ),
        None => {
            server.reported_notify_url(dev_id, &mut daemon);
        }
    }
    daemon
}

fn campaign_until(server: &ServerProcess, id: i64, state: &str) -> Value {
    poll(
        &format!("campaign {id} {state}"),
        Duration::from_secs(60),
        || {
            let (status, campaign) = server.api("GET", &format!("/api/campaigns/{id}"), None);
            assert_eq!(status, 200, "{campaign}");
            (campaign["state"] == state).then_some(campaign)
        },
    )
}

fn targets(server: &ServerProcess, id: i64, query: &str) -> Vec<Value> {
    let (status, page) = server.api("GET", &format!("/api/campaigns/{id}/devices{query}"), None);
    assert_eq!(status, 200, "{page}");
    page["devices"].as_array().unwrap().clone()
}

#[test]
fn a_campaign_reaches_devices_behind_a_gateway_through_its_fan_out_and_the_others_directly() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let _gateway = GatewayProcess::start(dir.path(), &server, "gw-1", "");
    let _behind: Vec<Daemon> = ["IMEI:350000000000931", "IMEI:350000000000932"]
        .into_iter()
        .map(|dev_id| device(dir.path(), &server, dev_id, Some("gw-1")))
        .collect();
    let _direct = device(dir.path(), &server, "IMEI:350000000000933", None);

    let request = json!({
        "name": "read DevIds",
        "command": { "op": "Get", "target": "./DevInfo/DevId" },
        "filter": { "search": "IMEI:35000000000093" },
        "wave_size": 2,
        "error_threshold_percent": 50,
    });
    let (status, created) = server.api("POST", "/api/campaigns", Some(&request.to_string()));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        created["devices"]["pending"].as_u64().unwrap()
            + created["devices"]["sent"].as_u64().unwrap(),
        3
    );
    assert_eq!(created["wave"], 1, "the first wave goes out at once");

    let done = campaign_until(&server, id, "done");
    assert_eq!(done["devices"]["done"], 3, "{done}");
    assert_eq!(done["waves"].as_array().unwrap().len(), 2, "{done}");
    let reached = targets(&server, id, "");
    for target in &reached[..2] {
        assert_eq!(
            (target["wave"].as_i64(), target["gateway_id"].as_str()),
            (Some(1), Some("gw-1")),
            "{target}"
        );
        assert!(
            target["fanout_id"].is_i64() && target["command_id"].is_null(),
            "{target}"
        );
        assert_eq!(target["status"], 200);
    }
    let direct = &reached[2];
    assert_eq!(
        (direct["wave"].as_i64(), direct["gateway_id"].as_str()),
        (Some(2), None),
        "{direct}"
    );
    let command = server.command(direct["command_id"].as_i64().unwrap());
    assert_eq!(
        command["outcome"]["results"][0]["data"],
        "IMEI:350000000000933"
    );
    let fanout = reached[0]["fanout_id"].as_i64().unwrap();
    let (_, fanned) = server.api("GET", &format!("/api/fanouts/{fanout}"), None);
    assert_eq!(
        fanned["targets"],
        json!(["IMEI:350000000000931", "IMEI:350000000000932"]),
        "one fan-out for the gateway's wave"
    );
    assert_eq!(
        fanned["results"][1]["outcome"]["results"][0]["data"],
        "IMEI:350000000000932"
    );

    // A finished campaign neither pauses nor cancels; with no failure, a retry is empty.
    assert_eq!(
        server
            .api("POST", &format!("/api/campaigns/{id}/pause"), None)
            .0,
        409
    );
    assert_eq!(
        server
            .api("POST", &format!("/api/campaigns/{id}/cancel"), None)
            .0,
        409
    );
    let (status, retried) = server.api("POST", &format!("/api/campaigns/{id}/retry"), None);
    assert_eq!(
        (status, retried["retried"].as_u64()),
        (200, Some(0)),
        "{retried}"
    );
    let (_, listed) = server.api("GET", "/api/campaigns", None);
    assert_eq!(listed["campaigns"][0]["id"], id);
}

#[test]
fn a_failing_wave_pauses_the_campaign_and_a_cancel_stops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let _devices: Vec<Daemon> = [
        "IMEI:350000000000941",
        "IMEI:350000000000942",
        "IMEI:350000000000943",
    ]
    .into_iter()
    .map(|dev_id| device(dir.path(), &server, dev_id, None))
    .collect();
    for bad in [
        json!({ "name": "", "command": { "op": "Get", "target": "./A" } }),
        json!({ "name": "x", "command": { "op": "Launch" } }),
        json!({ "name": "x", "command": { "op": "Get", "target": "./A" }, "wave_size": 1, "wave_percent": 5 }),
        json!({ "name": "x", "command": { "op": "Get", "target": "./A" }, "error_threshold_percent": 101 }),
        json!({ "name": "x", "command": { "op": "Get", "target": "./A" }, "filter": { "limit": 3 } }),
    ] {
        assert_eq!(
            server
                .api("POST", "/api/campaigns", Some(&bad.to_string()))
                .0,
            400,
            "{bad}"
        );
    }
    let request = json!({
        "name": "read what is not there",
        "command": { "op": "Get", "target": "./Vendor/nothing" },
        "filter": { "search": "IMEI:35000000000094" },
        "wave_size": 1,
        "error_threshold_percent": 0,
    });
    let (status, created) = server.api("POST", "/api/campaigns", Some(&request.to_string()));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let paused = campaign_until(&server, id, "paused");
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .contains("wave 1: 1 of 1 devices failed"),
        "{paused}"
    );
    assert_eq!(
        (
            paused["devices"]["failed"].as_u64(),
            paused["devices"]["pending"].as_u64()
        ),
        (Some(1), Some(2)),
        "{paused}"
    );
    let failed = targets(&server, id, "?state=failed");
    assert_eq!(failed[0]["status"], 404, "{failed:?}");

    let (status, cancelled) = server.api("POST", &format!("/api/campaigns/{id}/cancel"), None);
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        (
            cancelled["state"].as_str(),
            cancelled["devices"]["cancelled"].as_u64()
        ),
        (Some("cancelled"), Some(2))
    );
    assert_eq!(
        server
            .api("POST", &format!("/api/campaigns/{id}/resume"), None)
            .0,
        409
    );
    assert_eq!(
        server
            .api("POST", &format!("/api/campaigns/{id}/retry"), None)
            .0,
        409
    );
    assert_eq!(server.api("GET", "/api/campaigns/999", None).0, 404);
    for dev_id in ["IMEI:350000000000942", "IMEI:350000000000943"] {
        let (_, record) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
        assert_eq!(record["commands"], json!([]), "nothing went to {dev_id}");
    }
}
