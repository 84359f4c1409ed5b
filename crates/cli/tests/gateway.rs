//! Scenario: DM Server Assisted Gateway Bootstrapping (seed 8.x.1, figures x and y)
//! with the real `gwmo server`, two `gwmo gateway` and a `gwmo device` on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ED: &str = "IMEI:350000000000201";

fn association(server: &ServerProcess) -> Option<String> {
    let (_, device) = server.api("GET", &format!("/api/devices/{ED}"), None);
    device["gateway"]["gateway_id"].as_str().map(str::to_owned)
}

/// Waits until the end device has held a session with the gateway.
fn managed_by(gateway: &GatewayProcess, device: &mut Daemon) {
    poll(
        &format!(
            "a session between the end device and {}",
            gateway.gateway_id
        ),
        Duration::from_secs(30),
        || {
            device.assert_running();
            let (status, record) = gateway.api("GET", &format!("/api/devices/{ED}"), None);
            (status == 200 && record["sessions"].as_i64() > Some(0)).then_some(())
        },
    );
}

/// Queues a command on the gateway for the end device, wakes the device, waits for it.
fn through_gateway(gateway: &GatewayProcess, spec: &str) -> Value {
    let (status, queued) = gateway.api("POST", &format!("/api/devices/{ED}/commands"), Some(spec));
    assert_eq!(status, 201, "{queued}");
    let id = queued["id"].as_i64().unwrap();
    let (status, body) = gateway.api("POST", &format!("/api/devices/{ED}/notify"), None);
    assert_eq!(status, 202, "{body}");
    poll(
        "the command through the gateway",
        Duration::from_secs(30),
        || {
            let (_, command) = gateway.api("GET", &format!("/api/commands/{id}"), None);
            (command["state"] == "done").then_some(command)
        },
    )
}

/// Reads a leaf of a gateway's tree through the DM Server (a Get queued for the
/// gateway, which picks it up at its next poll).
fn read_gateway_leaf(server: &ServerProcess, gateway_dev_id: &str, uri: &str) -> Option<String> {
    let read = server.queue(
        gateway_dev_id,
        &format!(r#"{{"op":"Get","target":"{uri}"}}"#),
    );
    let command = poll(
        "the server reading the gateway's tree",
        Duration::from_secs(30),
        || {
            let command = server.command(read);
            (command["state"] == "done").then_some(command)
        },
    );
    command["outcome"]["results"][0]["data"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn req_8x1_figures_x_and_y_server_assisted_bootstrap_and_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut gw1 = GatewayProcess::start(dir.path(), &server, "gw-1", "poll_secs = 1\n");
    let mut gw2 = GatewayProcess::start(dir.path(), &server, "gw-2", "");
    let enrollment = server.enroll(ED, "md5");

    // Figure x: the device's first session with the DM Server reports gw-1; the server
    // bootstraps it to gw-1, tells gw-1, and gw-1 manages it.
    let mut device = end_device(dir.path(), &enrollment, "gw-1");
    managed_by(&gw1, &mut device);
    assert_eq!(association(&server).as_deref(), Some("gw-1"));
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./DMAcc/gw-1/Ext/GwBoot/Origin").unwrap(),
        "server-assisted"
    );
    assert_eq!(
        leaf(&tree, "./DMAcc/gw-1/Ext/GwBoot/Trust").unwrap(),
        "full"
    );
    let get = through_gateway(&gw1, r#"{"op":"Get","target":"./DevInfo/DevId"}"#);
    assert_eq!(get["outcome"]["results"][0]["data"], ED);
    // The gateway's Device Inventory, as the server reads it, shows the device active.
    poll(
        "gw-1's inventory to show the device active",
        Duration::from_secs(30),
        || {
            let state = read_gateway_leaf(
                &server,
                "GW:gw-1",
                "./GwMO/DeviceInventory/IMEI_350000000000201/State",
            );
            (state.as_deref() == Some("active")).then_some(())
        },
    );

    // 8.x.1: fully trusted, the gateway MAY change pre-existing DMAcc objects ...
    let changed = through_gateway(
        &gw1,
        r#"{"op":"Replace","target":"./DMAcc/gwmo-dms/AAuthPref","data":"DIGEST"}"#,
    );
    assert_eq!(changed["status"], 200, "{changed}");
    // ... and MAY bootstrap the device to other DM Servers.
    let other = through_gateway(
        &gw1,
        r#"{"op":"Atomic","commands":[{"op":"Add","target":"./DMAcc/other/ServerID","data":"other-dms"},{"op":"Add","target":"./DMAcc/other/AppAddr/1/Addr","data":"http://127.0.0.1:9/dm"}]}"#,
    );
    assert_eq!(other["status"], 200, "{other}");
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(leaf(&tree, "./DMAcc/other/ServerID").unwrap(), "other-dms");

    // Figure y: the device now sees gw-2, reports it, and moves.
    drop(device);
    let mut device = end_device(dir.path(), &enrollment, "gw-2");
    managed_by(&gw2, &mut device);
    assert_eq!(association(&server).as_deref(), Some("gw-2"));
    poll("gw-1 to forget the device", Duration::from_secs(30), || {
        gw1.daemon.assert_running();
        (gw1.api("GET", &format!("/api/devices/{ED}"), None).0 == 404).then_some(())
    });
    let tree = device_tree(&dir.path().join("state"));
    assert!(
        leaf(&tree, "./DMAcc/gw-1/ServerID").is_none(),
        "gw-1's account is still on the device"
    );
    assert_eq!(leaf(&tree, "./DMAcc/gw-2/ServerID").unwrap(), "gw-2");
    let get = through_gateway(&gw2, r#"{"op":"Get","target":"./DevInfo/Man"}"#);
    assert_eq!(get["status"], 200);
    gw2.daemon.assert_running();

    // The server's event log shows each association.
    let (_, events) = server.api("GET", "/api/events", None);
    let bootstraps: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "bootstrap")
        .collect();
    assert_eq!(bootstraps.len(), 2, "{events}");
    assert_eq!(bootstraps[1]["detail"]["previous"], "gw-1");
}

#[test]
fn a_gateway_with_neither_approach_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[approaches]\nserver_assisted = false\nlocal = false\n[upstream]\nserver_id = \"d\"\nserver_url = \"http://127.0.0.1:9/dm\"\nclient_secret = \"c\"\nserver_secret = \"s\"\n",
    )
    .unwrap();
    let output = gwmo()
        .arg("gateway")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("at least one bootstrapping approach"),
        "{stderr}"
    );
}

#[test]
fn the_server_refuses_to_bootstrap_to_a_gateway_with_the_approach_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let gw = GatewayProcess::start(dir.path(), &server, "gw-off", "");
    let registration = r#"{"gateway_id":"gw-off","dev_id":"GW:gw-off","dm_url":"https://127.0.0.1:9/dm","server_assisted":false}"#;
    assert_eq!(
        server.api("POST", "/api/gateways", Some(registration)).0,
        201
    );
    let enrollment = server.enroll(ED, "md5");
    let extra = "gateway = \"gw-off\"\n";
    let config = device_config(dir.path(), &enrollment, "xml", extra);
    assert_success(&device_once(&config), "session reporting gw-off");
    assert_eq!(association(&server), None);
    let tree = device_tree(&dir.path().join("state"));
    assert!(leaf(&tree, "./DMAcc/gw-off/ServerID").is_none());
    let (_, events) = server.api("GET", "/api/events", None);
    assert!(
        events
            .to_string()
            .contains("server-assisted bootstrapping is off"),
        "{events}"
    );
    drop(gw);
}

#[test]
fn a_fan_out_from_the_server_runs_through_the_gateway_on_several_devices() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let gw = GatewayProcess::start(dir.path(), &server, "gw-1", "");
    let devices: Vec<(String, Daemon)> = (1..=2)
        .map(|n| {
            let dev_id = format!("IMEI:35000000000030{n}");
            let device_dir = dir.path().join(dev_id.replace(':', "_"));
            std::fs::create_dir_all(&device_dir).unwrap();
            let enrollment = server.enroll(&dev_id, "md5");
            let mut daemon = end_device(&device_dir, &enrollment, "gw-1");
            poll(
                &format!("{dev_id} behind gw-1"),
                Duration::from_secs(30),
                || {
                    daemon.assert_running();
                    let (status, record) = gw.api("GET", &format!("/api/devices/{dev_id}"), None);
                    (status == 200 && record["sessions"].as_i64() > Some(0)).then_some(())
                },
            );
            (dev_id, daemon)
        })
        .collect();

    let request = format!(
        r#"{{"targets":["{}","{}","IMEI:not-here"],"command":{{"op":"Get","target":"./DevInfo/DevId"}}}}"#,
        devices[0].0, devices[1].0
    );
    let (status, body) = server.api("POST", "/api/gateways/gw-1/fanout", Some(&request));
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let fanout = poll(
        "the fan-out results on the server",
        Duration::from_secs(60),
        || {
            let (_, fanout) = server.api("GET", &format!("/api/fanouts/{id}"), None);
            (fanout["state"] == "done").then_some(fanout)
        },
    );
    let results = fanout["results"].as_array().unwrap();
    for (dev_id, _) in &devices {
        let result = results
            .iter()
            .find(|r| r["dev_id"] == dev_id.as_str())
            .unwrap();
        assert_eq!(result["status"], 200, "{result}");
        assert_eq!(result["outcome"]["results"][0]["data"], dev_id.as_str());
    }
    let missing = results
        .iter()
        .find(|r| r["dev_id"] == "IMEI:not-here")
        .unwrap();
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("not in this gateway")
    );

    // Once the server has the results, the gateway keeps nothing of the fan-out: its
    // tree would otherwise grow with every fan-out for as long as it runs.
    poll(
        "the finished fan-out gone from the gateway's tree",
        Duration::from_secs(30),
        || fan_out_status_on(&gw, id).is_none().then_some(()),
    );

    let (status, _) = server.api("POST", "/api/gateways/gw-unknown/fanout", Some(&request));
    assert_eq!(status, 404);
    let (status, _) = server.api(
        "POST",
        "/api/gateways/gw-1/fanout",
        Some(r#"{"targets":[],"command":{"op":"Get","target":"./A"}}"#),
    );
    assert_eq!(status, 400);
}

#[test]
fn req_8x1_the_device_finds_its_gateway_with_dns_sd() {
    // Every process of this test lives in a network namespace of its own.
    if let Err(reason) = gwmo_discovery::private_network() {
        eprintln!("NOT RUN: real mDNS needs a private network namespace ({reason})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let gw1 = GatewayProcess::start(dir.path(), &server, "gw-1", "dns_sd_interface = \"lo\"\n");
    let _silent = GatewayProcess::start(dir.path(), &server, "gw-2", "");
    let enrollment = server.enroll(ED, "md5");
    let extra = "listen = \"127.0.0.1:0\"\ndiscover_interface = \"lo\"\ndiscover_wait_ms = 1000\npoll_secs = 1\n"; // it looks again every second
    let config = device_config(dir.path(), &enrollment, "xml", extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    managed_by(&gw1, &mut device);
    assert_eq!(association(&server).as_deref(), Some("gw-1"));
    assert!(
        device.log_text().contains("DNS-SD look-up"),
        "{}",
        device.log_text()
    );
}

/// A gateway with the Local DM Bootstrap Server inside; returns it and the URL devices
/// ask for a Gateway Bootstrap.
#[test]
fn req_8x2_figure_z_local_bootstrap_attach_alert_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (gw, bootstrap_url) = local_gateway(dir.path(), &server, ED, "4711");
    let enrollment = server.enroll(ED, "md5");
    let extra = format!(
        "listen = \"127.0.0.1:0\"\nbootstrap_url = \"{bootstrap_url}\"\nuserpin = \"4711\"\n"
    );
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));

    // The device takes the bootstrap, holds its session with the gateway (confirming the
    // bootstrap), the gateway reports the Device Attach Alert, the server records the
    // association and validates the gateway on the device.
    managed_by(&gw, &mut device);
    let trust = poll(
        "the server to validate the gateway on the device",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let tree = device_tree(&dir.path().join("state"));
            let trust = leaf(&tree, "./DMAcc/gw-l/Ext/GwBoot/Trust")?
                .as_str()?
                .to_owned();
            (trust == "validated").then_some(tree)
        },
    );
    assert_eq!(
        leaf(&trust, "./DMAcc/gw-l/Ext/GwBoot/Origin").unwrap(),
        "local-bootstrap"
    );
    assert_eq!(
        leaf(&trust, "./DMAcc/gw-l/Ext/GwBoot/Confirmed").unwrap(),
        "true"
    );
    let (_, record) = server.api("GET", &format!("/api/devices/{ED}"), None);
    assert_eq!(record["gateway"]["gateway_id"], "gw-l", "{record}");
    assert_eq!(record["gateway"]["origin"], "local-bootstrap");
    // The server knows it validated the gateway on the device, and finds it by that.
    poll(
        "the validation on the server",
        Duration::from_secs(30),
        || {
            let (_, record) = server.api("GET", &format!("/api/devices/{ED}"), None);
            (record["gateway"]["trust"] == "validated").then_some(())
        },
    );
    let (_, validated) = server.api("GET", "/api/devices?trust=validated", None);
    assert_eq!(
        (
            validated["total"].as_u64(),
            validated["devices"][0]["dev_id"].as_str()
        ),
        (Some(1), Some(ED))
    );
    let (_, restricted) = server.api("GET", "/api/devices?trust=restricted", None);
    assert_eq!(restricted["total"], 0, "{restricted}");
    let (_, events) = server.api("GET", "/api/events", None);
    let attach = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "attach")
        .cloned();
    assert_eq!(attach.unwrap()["detail"]["device"]["dev_id"], ED);

    // An operator may ask for the validation too (here again, harmlessly).
    let (status, body) = server.api(
        "POST",
        &format!("/api/devices/{ED}/validate"),
        Some(r#"{"gateway_id":"gw-l"}"#),
    );
    assert_eq!(status, 202, "{body}");
    let id = body["command"].as_i64().unwrap();
    let done = poll("the operator's validation", Duration::from_secs(30), || {
        let command = server.command(id);
        (command["state"] == "done").then_some(command)
    });
    assert_eq!(done["status"], 200, "{done}");

    // The operator sees the device's accounts: the gateway's by its provenance only
    // (the account itself, secrets and all, belongs to the gateway).
    let (status, asked) = server.api("POST", &format!("/api/devices/{ED}/tree"), None);
    assert_eq!(status, 202, "{asked}");
    let id = asked["command"].as_i64().unwrap();
    poll("the tree report", Duration::from_secs(30), || {
        (server.command(id)["status"] == 200).then_some(())
    });
    let (_, accounts) = server.api("GET", &format!("/api/devices/{ED}/accounts"), None);
    let accounts = accounts["accounts"].as_array().unwrap();
    let gateway = accounts.iter().find(|a| a["node"] == "gw-l").unwrap();
    assert_eq!(gateway["origin"], "local-bootstrap", "{gateway}");
    assert_eq!(gateway["trust"], "validated");
    assert_eq!(gateway["confirmed"], true);
    assert_eq!(
        gateway["server_id"],
        Value::Null,
        "not readable by the DM Server"
    );
    let own = accounts
        .iter()
        .find(|a| a["server_id"] == "gwmo-dms")
        .unwrap();
    assert_eq!(own["origin"], "factory", "{own}");
    let (_, tree) = server.api("GET", &format!("/api/devices/{ED}/tree"), None);
    assert!(!tree.to_string().contains("gw-l/AppAuth"), "{tree}");

    // Validated, the gateway may now change the DM Server's pre-existing account.
    let changed = through_gateway(
        &gw,
        r#"{"op":"Replace","target":"./DMAcc/gwmo-dms/AAuthPref","data":"DIGEST"}"#,
    );
    assert_eq!(changed["status"], 200, "{changed}");
}

#[test]
fn req_8x2_a_bootstrap_whose_mac_does_not_verify_changes_nothing_on_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (_gw, bootstrap_url) = local_gateway(dir.path(), &server, ED, "4711");
    let enrollment = server.enroll(ED, "md5");
    let extra = format!("bootstrap_url = \"{bootstrap_url}\"\nuserpin = \"0000\"\n");
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    poll(
        "the device to refuse the bootstrap",
        Duration::from_secs(30),
        || {
            device.assert_running();
            device
                .log_text()
                .contains("local bootstrap failed")
                .then_some(())
        },
    );
    // The bootstrap server asks for proof of the USERPIN first: a device with another
    // PIN gets no document at all (a document whose MAC does not verify is refused by
    // the device too: device/src/local.rs).
    assert!(
        device
            .log_text()
            .contains("does not prove this device's USERPIN"),
        "{}",
        device.log_text()
    );
    let tree = device_tree(&dir.path().join("state"));
    assert!(
        leaf(&tree, "./DMAcc/gw-l/ServerID").is_none(),
        "the refused bootstrap left an account"
    );
}

#[test]
fn req_8x2_the_device_finds_the_local_bootstrap_server_with_dns_sd() {
    if let Err(reason) = gwmo_discovery::private_network() {
        eprintln!("NOT RUN: real mDNS needs a private network namespace ({reason})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let extra = "dns_sd_interface = \"lo\"\nbootstrap_listen = \"127.0.0.1:0\"\nbootstrap_issue_unsigned = true\n[approaches]\nlocal = true\n";
    let gw = GatewayProcess::start(dir.path(), &server, "gw-l", extra);
    let enrollment = server.enroll(ED, "md5");
    let device_extra = "discover_interface = \"lo\"\ndiscover_wait_ms = 1000\naccept_unsigned_bootstrap = true\npoll_secs = 1\n";
    let config = device_config(dir.path(), &enrollment, "xml", device_extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    managed_by(&gw, &mut device);
    assert!(
        device.log_text().contains("found a local bootstrap server"),
        "{}",
        device.log_text()
    );
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./DMAcc/gw-l/Ext/GwBoot/Origin").unwrap(),
        "local-bootstrap"
    );
}

/// A gateway whose local bootstraps lapse after a second; returns it and the address of
/// its Local DM Bootstrap Server.
fn gateway_with_quick_lapses(dir: &Path, server: &ServerProcess) -> (GatewayProcess, SocketAddr) {
    let address_file = dir.join("lbs.addr");
    let extra = format!(
        "bootstrap_listen = \"127.0.0.1:0\"\nbootstrap_address_file = {address_file:?}\nbootstrap_lapse_secs = 1\n[approaches]\nlocal = true\n[userpins]\n\"{ED}\" = \"4711\"\n"
    );
    let mut gw = GatewayProcess::start(dir, server, "gw-l", &extra);
    let lbs = bound_address(&mut gw.daemon, &address_file);
    (gw, lbs)
}

/// A device takes a Gateway Bootstrap from `lbs` and never comes back.
fn bootstrap_and_vanish(gw: &GatewayProcess, lbs: SocketAddr) {
    let (status, _) = request_bootstrap(lbs, ED, Some("4711"));
    assert_eq!(status, 200);
    assert_eq!(gw.api("GET", &format!("/api/devices/{ED}"), None).0, 200);
}

/// Waits for the server's `detach` event.
fn detach_event(server: &ServerProcess, gw: &mut GatewayProcess) -> Value {
    poll(
        "the Device Detach Alert on the server",
        Duration::from_secs(30),
        || {
            gw.daemon.assert_running();
            let (_, events) = server.api("GET", "/api/events", None);
            events["events"]
                .as_array()?
                .iter()
                .find(|e| e["kind"] == "detach")
                .cloned()
        },
    )
}

/// The inventory entry of the end device in the gateway's tree, while it is there.
fn inventory_entry(gw: &GatewayProcess) -> Option<Value> {
    let tree = device_tree(&gw.dir.join("state").join("upstream"));
    let mut node = &tree;
    for name in ["GwMO", "DeviceInventory", &gwmo_tree::segment_for(ED)] {
        node = node.get("children")?.get(name)?;
    }
    Some(node.clone())
}

#[test]
fn req_8x2_a_bootstrap_without_a_session_lapses_and_the_gateway_reports_the_detach() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (mut gw, lbs) = gateway_with_quick_lapses(dir.path(), &server);
    server.enroll(ED, "md5");
    bootstrap_and_vanish(&gw, lbs);
    let detach = detach_event(&server, &mut gw);
    assert_eq!(detach["detail"]["device"]["dev_id"], ED);
    assert_eq!(detach["detail"]["device"]["reason"], "lapsed");
    let (_, metrics) = http(server.addr, "GET", "/metrics", None, "text/plain", b"");
    assert!(metrics.contains("\ngwmo_lapses_total 1\n"), "{metrics}");
    assert_eq!(
        gw.api("GET", &format!("/api/devices/{ED}"), None).0,
        404,
        "the gateway still serves it"
    );
    // The gateway counts what it handed out and reported.
    let (_, metrics) = http(gw.addr, "GET", "/metrics", None, "text/plain", b"");
    for line in [
        "gwmo_gateway_local_bootstraps_total 1",
        "gwmo_gateway_detaches_reported_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
}

/// `gwmo bootstrap` pointed at a gateway's enrollment endpoint with `token`.
fn standalone_bootstrap(
    dir: &Path,
    gw: &GatewayProcess,
    gateway_bootstrap_url: &str,
    token: &str,
) -> (Daemon, String) {
    let address_file = dir.join(format!("standalone-{token}.addr"));
    let config = dir.join(format!("bootstrap-{token}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\naddress_file = {address_file:?}\ngateway_enrollments_url = \"{gateway_bootstrap_url}/enrollments\"\ngateway_token = \"{token}\"\n[bootstrap]\ngateway_id = \"gw-l\"\ngateway_url = \"https://{}/dm\"\nlapse_secs = 600\n[bootstrap.userpins]\n\"{ED}\" = \"4711\"\n{}",
            gw.addr,
            common::tls_table()
        ),
    )
    .unwrap();
    let mut command = gwmo();
    command.arg("bootstrap").arg("--config").arg(&config);
    let mut daemon = Daemon::spawn(command, dir.join(format!("bootstrap-{token}.log")));
    let addr = bound_address(&mut daemon, &address_file);
    (daemon, format!("https://{addr}/bootstrap"))
}

#[test]
fn req_8x2_a_standalone_bootstrap_server_hands_the_gateway_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (gw, gateway_bootstrap_url) = local_gateway(dir.path(), &server, ED, "4711");
    let (_standalone, url) = standalone_bootstrap(dir.path(), &gw, &gateway_bootstrap_url, TOKEN);
    let (_impostor, impostor_url) =
        standalone_bootstrap(dir.path(), &gw, &gateway_bootstrap_url, "wrong-token");
    let url_of = |url: &str| -> std::net::SocketAddr {
        url.trim_start_matches("https://")
            .trim_end_matches("/bootstrap")
            .parse()
            .unwrap()
    };
    // A bootstrap server the gateway does not trust issues nothing.
    let (status, _) = request_bootstrap(url_of(&impostor_url), ED, Some("4711"));
    assert_eq!(status, 503);

    let enrollment = server.enroll(ED, "md5");
    let extra = format!("bootstrap_url = \"{url}\"\nuserpin = \"4711\"\n");
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    managed_by(&gw, &mut device);
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./DMAcc/gw-l/Ext/GwBoot/Origin").unwrap(),
        "local-bootstrap"
    );
}

#[test]
fn req_8x2_figure_z_with_a_blank_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (gw, bootstrap_url) = local_gateway(dir.path(), &server, ED, "4711");
    // A device with no DM account at all, which the DM Server has never heard of.
    let config = dir.path().join("blank.toml");
    std::fs::write(
        &config,
        format!(
            "dev_id = \"{ED}\"\nstate_dir = {:?}\nbootstrap_url = \"{bootstrap_url}\"\nuserpin = \"4711\"\n{}",
            dir.path().join("state"),
            tls_table()
        ),
    )
    .unwrap();
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    managed_by(&gw, &mut device);
    let association = poll(
        "the server to record the association",
        Duration::from_secs(30),
        || {
            let (_, body) = server.api("GET", "/api/associations", None);
            body["associations"]
                .as_array()?
                .iter()
                .find(|a| a["dev_id"] == ED)
                .cloned()
        },
    );
    assert_eq!(association["gateway_id"], "gw-l");
    assert_eq!(association["origin"], "local-bootstrap");
    // No previously bootstrapped server: the gateway stays restricted.
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./DMAcc/gw-l/Ext/GwBoot/Trust").unwrap(),
        "restricted"
    );
    assert_eq!(
        leaf(&tree, "./DMAcc/gw-l/Ext/GwBoot/Confirmed").unwrap(),
        "true"
    );
    let (status, _) = server.api(
        "POST",
        &format!("/api/devices/{ED}/validate"),
        Some(r#"{"gateway_id":"gw-l"}"#),
    );
    assert_eq!(
        status, 404,
        "validation by a server the device does not know"
    );
}

#[test]
fn a_gateway_with_server_assisted_bootstrapping_off_refuses_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    // The operator registers it as server-assisted, but the gateway's own
    // configuration has only the local approach.
    let extra = "poll_secs = 1\nbootstrap_listen = \"127.0.0.1:0\"\n[approaches]\nserver_assisted = false\nlocal = true\n";
    let mut gw = GatewayProcess::start(dir.path(), &server, "gw-1", extra);
    let enrollment = server.enroll(ED, "md5");
    let config = device_config(dir.path(), &enrollment, "xml", "gateway = \"gw-1\"\n");
    assert_success(&device_once(&config), "session reporting gw-1");
    // The server did its part; the gateway declines the device and says so in its inventory.
    let state = poll(
        "gw-1 to record its refusal",
        Duration::from_secs(30),
        || {
            gw.daemon.assert_running();
            let state = read_gateway_leaf(
                &server,
                "GW:gw-1",
                "./GwMO/DeviceInventory/IMEI_350000000000201/State",
            );
            (state.as_deref() == Some("refused")).then_some(state)
        },
    );
    assert_eq!(state.as_deref(), Some("refused"));
    assert_eq!(
        gw.api("GET", &format!("/api/devices/{ED}"), None).0,
        404,
        "the gateway took the device"
    );
    assert!(
        gw.daemon
            .log_text()
            .contains("refusing a bootstrap: the approach is off"),
        "{}",
        gw.daemon.log_text()
    );
}

/// A gateway killed with SIGKILL in the middle of a fan-out (its command queued for an
/// end device that is away) resumes it when it starts again: the device runs the
/// command once, and the DM Server gets the results.
/// The end device, managed by `gw`, goes away; then the server hands `gw` a fan-out of
/// an Add for it, which waits at the gateway. Returns the fan-out's id and the device's
/// enrollment.
fn fan_out_waiting_for_an_absent_device(
    dir: &Path,
    server: &ServerProcess,
    gw: &GatewayProcess,
) -> (i64, Value) {
    let enrollment = server.enroll(ED, "md5");
    let mut device = end_device(dir, &enrollment, &gw.gateway_id);
    managed_by(gw, &mut device);
    device.kill();

    let request = format!(
        r#"{{"targets":["{ED}"],"command":{{"op":"Add","target":"./Vendor/gwmo/FannedOut","data":"once"}}}}"#
    );
    let (status, body) = server.api(
        "POST",
        &format!("/api/gateways/{}/fanout", gw.gateway_id),
        Some(&request),
    );
    assert_eq!(status, 202, "{body}");
    let fanout = body["id"].as_i64().unwrap();
    let gateway_state = gw.dir.join("state").join("upstream");
    poll(
        "the fan-out running on the gateway",
        Duration::from_secs(30),
        || {
            let tree = device_tree(&gateway_state);
            let node = format!("./GwMO/Fanout/{fanout}");
            (leaf(&tree, &format!("{node}/Status"))? == "running"
                && leaf(&tree, &format!("{node}/Queued")).is_some())
            .then_some(())
        },
    );
    (fanout, enrollment)
}

/// Waits for the third failed session carrying a report of `gw`'s, whose DM Server
/// went down at `server_down`: the pauses before the second and third (1 s and 2 s at
/// least) make it at least 3 s later. A gateway calling the server in a tight loop
/// gets there in a fraction of a second; one that gives up never does.
fn three_reports_fail_after_growing_pauses(gw: &GatewayProcess, server_down: Instant) {
    poll(
        "three failed sessions carrying a report",
        Duration::from_secs(60),
        || (gateway_counter(gw, "gwmo_gateway_report_sessions_failed_total")? >= 3).then_some(()),
    );
    let failing_for = server_down.elapsed();
    assert!(
        failing_for >= Duration::from_secs(3),
        "three failed report sessions in {failing_for:?}"
    );
}

/// The value of counter `name` on the gateway's `/metrics`.
fn gateway_counter(gw: &GatewayProcess, name: &str) -> Option<u64> {
    let (_, metrics) = http(gw.addr, "GET", "/metrics", None, "text/plain", b"");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The Status leaf of fan-out `id` in the gateway's tree, while the fan-out is there.
fn fan_out_status_on(gw: &GatewayProcess, id: i64) -> Option<String> {
    let tree = device_tree(&gw.dir.join("state").join("upstream"));
    leaf(&tree, &format!("./GwMO/Fanout/{id}/Status"))?
        .as_str()
        .map(str::to_owned)
}

#[test]
fn a_gateway_killed_during_a_fan_out_resumes_it_and_runs_each_command_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut gw = GatewayProcess::start(dir.path(), &server, "gw-1", "");
    let (fanout, enrollment) = fan_out_waiting_for_an_absent_device(dir.path(), &server, &gw);

    gw.kill_and_restart();
    // The device is back, and holds its sessions (with the gateway too).
    let mut device = end_device(dir.path(), &enrollment, "gw-1");
    let done = poll(
        "the fan-out results on the server",
        Duration::from_secs(60),
        || {
            device.assert_running();
            let (_, record) = server.api("GET", &format!("/api/fanouts/{fanout}"), None);
            (record["state"] == "done").then_some(record)
        },
    );
    let result = &done["results"][0];
    assert_eq!(result["dev_id"], ED, "{done}");
    // An Add run twice would answer 418.
    assert_eq!(result["status"], 200, "{done}");
    let (_, record) = gw.api("GET", &format!("/api/devices/{ED}"), None);
    let fanned: Vec<&Value> = record["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["spec"]["target"] == "./Vendor/gwmo/FannedOut")
        .collect();
    assert_eq!(fanned.len(), 1, "queued once: {record}");
    let tree = device_tree(&dir.path().join("state"));
    assert_eq!(
        leaf(&tree, "./Vendor/gwmo/FannedOut"),
        Some(&Value::from("once"))
    );
}

/// A fan-out that finishes while the DM Server is down keeps its results in the
/// gateway's tree; they reach the server once it is back, and only then does the
/// gateway remove the fan-out. The gateway does not poll and its end device is gone
/// by then: the gateway sends them again of its own accord, after pauses that grow
/// (1 s, then 2 s: three failed sessions take at least 3 s), not in a tight loop.
#[test]
fn fan_out_results_the_server_missed_are_reported_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let gw = GatewayProcess::start(dir.path(), &server, "gw-1", "");
    let (fanout, enrollment) = fan_out_waiting_for_an_absent_device(dir.path(), &server, &gw);

    server.daemon.kill();
    let server_down = Instant::now();
    // The device is back and runs the command; the results have nowhere to go.
    let mut device = end_device(dir.path(), &enrollment, "gw-1");
    poll(
        "the fan-out finished and kept on the gateway",
        Duration::from_secs(60),
        || {
            device.assert_running();
            (fan_out_status_on(&gw, fanout)? == "done").then_some(())
        },
    );
    // No session of the device's causes a sync from here on.
    device.kill();
    three_reports_fail_after_growing_pauses(&gw, server_down);

    server.kill_and_restart();
    let done = poll(
        "the missed results on the restarted server",
        Duration::from_secs(60),
        || {
            let (_, record) = server.api("GET", &format!("/api/fanouts/{fanout}"), None);
            (record["state"] == "done").then_some(record)
        },
    );
    assert_eq!(done["results"][0]["dev_id"], ED, "{done}");
    assert_eq!(done["results"][0]["status"], 200, "{done}");
    poll(
        "the reported fan-out gone from the gateway's tree",
        Duration::from_secs(30),
        || fan_out_status_on(&gw, fanout).is_none().then_some(()),
    );
}

/// A bootstrap that lapses while the DM Server is down ends at once on the gateway; the
/// Device Detach Alert waits, marked in the inventory, and goes again after growing
/// pauses, reaching the server when it is back. Only then does the entry go.
#[test]
fn a_lapse_while_the_server_is_down_is_reported_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let (mut gw, lbs) = gateway_with_quick_lapses(dir.path(), &server);
    server.enroll(ED, "md5");
    server.daemon.kill();
    let server_down = Instant::now();
    bootstrap_and_vanish(&gw, lbs);
    poll(
        "the lapse on the gateway, kept for the server",
        Duration::from_secs(30),
        || {
            gw.daemon.assert_running();
            let served = gw.api("GET", &format!("/api/devices/{ED}"), None).0 == 200;
            let entry = inventory_entry(&gw)?;
            let lapsed = entry["children"]["Lapsed"]["value"] == "true";
            (!served && lapsed).then_some(())
        },
    );
    let entry = inventory_entry(&gw).unwrap();
    assert!(
        entry["children"].get("ClientSecret").is_none(),
        "a lapsed entry keeps no credentials: {entry}"
    );
    three_reports_fail_after_growing_pauses(&gw, server_down);

    server.kill_and_restart();
    let detach = detach_event(&server, &mut gw);
    assert_eq!(detach["detail"]["device"]["dev_id"], ED);
    assert_eq!(detach["detail"]["device"]["reason"], "lapsed");
    poll(
        "the reported entry gone from the inventory",
        Duration::from_secs(30),
        || inventory_entry(&gw).is_none().then_some(()),
    );
}
