//! Firmware updates (FUMO 1.0) with the real binaries: an image uploaded to a running
//! server, a device updated by it (the image downloaded once, the version it reports
//! afterwards read back by the server), a download cut halfway that resumes with a
//! Range request, and every bad package: a wrong digest, a truncated image, an image
//! for another model, a PkgURL that does not answer, an install that fails. Each ends
//! with its FUMO result code at the server, the old firmware kept and nothing of the
//! package left on the device.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use gwmo_proto::{Alert, Data, Item, Location, Meta};
use serde_json::Value;

/// The device's install step: fails for version "broken", succeeds otherwise (and
/// leaves the version it installed in a file, as proof that it ran).
const INSTALL: &str = r#"test "$GWMO_FIRMWARE_VERSION" != broken && cp "$GWMO_FIRMWARE_IMAGE" "$GWMO_FIRMWARE_IMAGE.installed""#;

/// A device of its own on `server`, with the install step above, running.
fn firmware_device(server: &ServerProcess, dir: &Path, dev_id: &str) -> (Daemon, PathBuf) {
    let enrollment = server.enroll(dev_id, "md5");
    std::fs::create_dir_all(dir).unwrap();
    let extra = format!(
        "listen = \"127.0.0.1:0\"\nfirmware_version = \"1.0\"\n[firmware]\ninstall_command = {INSTALL:?}\ndownload_attempts = 2\n"
    );
    let config = device_config(dir, &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, dir.join("device.log"));
    server.reported_notify_url(dev_id, &mut device);
    (device, dir.join("state"))
}

/// A device of its own behind `gateway`, running, once the server has it associated
/// with the gateway; and its directory.
fn device_behind(
    server: &ServerProcess,
    dir: &Path,
    dev_id: &str,
    gateway: &str,
) -> (Daemon, PathBuf) {
    let home = dir.join(dev_id.replace(':', "_"));
    std::fs::create_dir_all(&home).unwrap();
    let mut device = end_device(&home, &server.enroll(dev_id, "md5"), gateway);
    poll(
        "the device behind its gateway",
        Duration::from_secs(60),
        || {
            device.assert_running();
            let (_, record) = server.api("GET", &format!("/api/devices/{dev_id}"), None);
            (record["gateway"]["gateway_id"] == gateway).then_some(())
        },
    );
    (device, home)
}

/// `size` bytes that are not all alike.
fn image(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn upload(server: &ServerProcess, version: &str, model: &str, bytes: &[u8]) -> Value {
    let query = format!("name=gwmo-fw&version={version}&man=gwmo&model={model}");
    let (status, artifact) = upload_artifact(server.addr, &query, bytes);
    assert_eq!(status, 201, "{artifact}");
    assert_eq!(artifact["size"], bytes.len());
    artifact
}

/// Sends `artifact` to the device; its correlator.
fn send(server: &ServerProcess, dev_id: &str, request: &str) -> String {
    let (status, update) = server.api(
        "POST",
        &format!("/api/devices/{dev_id}/firmware"),
        Some(request),
    );
    assert_eq!(status, 202, "{update}");
    assert_eq!(update["state"], "queued");
    update["correlator"].as_str().unwrap().to_owned()
}

/// Waits for the update `correlator` of `dev_id` to end; the update.
fn ended(server: &ServerProcess, dev_id: &str, correlator: &str, device: &mut Daemon) -> Value {
    poll("the firmware update's end", Duration::from_secs(60), || {
        device.assert_running();
        let (status, page) = server.api("GET", &format!("/api/devices/{dev_id}/firmware"), None);
        assert_eq!(status, 200, "{page}");
        page["updates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["correlator"] == correlator)
            .filter(|u| matches!(u["state"].as_str(), Some("succeeded" | "failed")))
            .cloned()
    })
}

fn served(server: &ServerProcess, artifact: &Value) -> u64 {
    let (status, now) = server.api(
        "GET",
        &format!("/api/artifacts/{}", artifact["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 200, "{now}");
    now["bytes_served"].as_u64().unwrap()
}

/// What the device stores of firmware: FwV and the FUMO State; and no package left.
fn firmware_of(state: &Path) -> (String, String) {
    for leftover in ["firmware.part", "firmware.pkg"] {
        assert!(!state.join(leftover).exists(), "{leftover} left behind");
    }
    let tree = device_tree(state);
    (
        leaf(&tree, "./DevDetail/FwV")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
        leaf(&tree, "./FUMO/Firmware/State")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[test]
fn req_fumo_a_direct_device_is_updated_by_the_dm_server_and_reports_its_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let (mut device, state) = firmware_device(&server, &dir.path().join("device"), "IMEI:FW-1");
    let bytes = image(1 << 20, 1);
    let artifact = upload(&server, "2.0", "gwmo-device", &bytes);
    let correlator = send(
        &server,
        "IMEI:FW-1",
        &format!(r#"{{"artifact":"{}"}}"#, artifact["id"].as_str().unwrap()),
    );
    let update = ended(&server, "IMEI:FW-1", &correlator, &mut device);
    assert_eq!(update["state"], "succeeded", "{update}");
    assert_eq!(update["result"], 200);
    assert_eq!(
        served(&server, &artifact),
        bytes.len() as u64,
        "downloaded once"
    );
    assert_eq!(firmware_of(&state), ("2.0".to_owned(), "100".to_owned()));
    // The install step ran on the verified package.
    assert!(std::fs::read_dir(&state).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".installed")
    }));
    // The server reads the version the device runs now, and finds it by it.
    poll("the new FwV at the server", Duration::from_secs(30), || {
        let (_, page) = server.api("GET", "/api/devices?fwv=2.0", None);
        (page["total"] == 1).then_some(())
    });
}

#[test]
fn req_fumo_bad_packages_end_with_their_result_code_and_the_old_firmware_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let (mut device, state) = firmware_device(&server, &dir.path().join("device"), "IMEI:FW-2");
    let artifacts = dir.path().join("server").join("server.db.artifacts");
    let stored = |artifact: &Value| artifacts.join(artifact["id"].as_str().unwrap());
    let request = |artifact: &Value, extra: &str| {
        format!(
            r#"{{"artifact":"{}"{extra}}}"#,
            artifact["id"].as_str().unwrap()
        )
    };
    let mut expect = |request: String, result: u64, fumo_state: &str| {
        let correlator = send(&server, "IMEI:FW-2", &request);
        let update = ended(&server, "IMEI:FW-2", &correlator, &mut device);
        assert_eq!(update["state"], "failed", "{update}");
        assert_eq!(update["result"], result, "{update}");
        assert!(
            update["reason"]
                .as_str()
                .unwrap()
                .starts_with(&result.to_string())
        );
        assert_eq!(
            firmware_of(&state),
            ("1.0".to_owned(), fumo_state.to_owned())
        );
    };

    // A wrong digest: the stored image changed after upload, same size.
    let tampered = upload(&server, "2.1", "gwmo-device", &image(300_000, 2));
    let mut bytes = std::fs::read(stored(&tampered)).unwrap();
    bytes[150_000] ^= 0xff;
    std::fs::write(stored(&tampered), &bytes).unwrap();
    expect(request(&tampered, ""), 404, "20");

    // A truncated image: half of it.
    let truncated = upload(&server, "2.2", "gwmo-device", &image(300_000, 3));
    std::fs::write(stored(&truncated), &bytes[..150_000]).unwrap();
    expect(request(&truncated, ""), 402, "20");

    // An image for another model: the server refuses to send it unless forced, and
    // the device refuses it before downloading anything.
    let other = upload(&server, "9.0", "other-model", &image(1000, 4));
    let (status, refusal) = server.api(
        "POST",
        "/api/devices/IMEI:FW-2/firmware",
        Some(&request(&other, "")),
    );
    assert_eq!(status, 409, "{refusal}");
    expect(request(&other, r#","force":true"#), 403, "20");
    assert_eq!(served(&server, &other), 0, "nothing downloaded");

    // A PkgURL where nothing answers.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = upload(&server, "3.0", "gwmo-device", &image(1000, 5));
    expect(
        request(
            &good,
            &format!(r#","pkg_url":"https://{closed}/firmware/x""#),
        ),
        412,
        "20",
    );

    // An install that fails: downloaded and verified, then the install step refuses.
    let broken = upload(&server, "broken", "gwmo-device", &image(1000, 6));
    expect(request(&broken, ""), 410, "80");

    // And after all that, a good package still goes in.
    let correlator = send(&server, "IMEI:FW-2", &request(&good, ""));
    let update = ended(&server, "IMEI:FW-2", &correlator, &mut device);
    assert_eq!(update["result"], 200, "{update}");
    assert_eq!(firmware_of(&state), ("3.0".to_owned(), "100".to_owned()));
}

/// Forwards connections on a port of its own to `target`; the first connection that
/// carries more than `cut_after` bytes back is cut there (a DM session on the way is
/// left alone: it carries far less). Its address.
fn cutting_proxy(target: SocketAddr, cut_after: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(upstream) = TcpStream::connect(target) else {
                return;
            };
            let cut = cut.clone();
            let (mut up_read, mut client_write) =
                (upstream.try_clone().unwrap(), client.try_clone().unwrap());
            let (mut client_read, mut up_write) = (client, upstream);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_read, &mut up_write);
                let _ = up_write.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut buffer = [0; 16 * 1024];
                while let Ok(read @ 1..) = up_read.read(&mut buffer) {
                    if sent + read > cut_after && !cut.swap(true, Ordering::SeqCst) {
                        let _ = client_write.write_all(&buffer[..cut_after - sent]);
                        break;
                    }
                    if client_write.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                    sent += read;
                }
                let _ = client_write.shutdown(std::net::Shutdown::Both);
                let _ = up_read.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn req_fumo_a_download_cut_halfway_resumes_with_a_range_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let (mut device, state) = firmware_device(&server, &dir.path().join("device"), "IMEI:FW-3");
    let bytes = image(4 << 20, 7);
    let artifact = upload(&server, "4.0", "gwmo-device", &bytes);
    let proxy = cutting_proxy(server.addr, 2 << 20);
    let id = artifact["id"].as_str().unwrap();
    let correlator = send(
        &server,
        "IMEI:FW-3",
        &format!(r#"{{"artifact":"{id}","pkg_url":"https://{proxy}/firmware/{id}"}}"#),
    );
    let update = ended(&server, "IMEI:FW-3", &correlator, &mut device);
    assert_eq!(update["result"], 200, "{update}");
    assert_eq!(firmware_of(&state), ("4.0".to_owned(), "100".to_owned()));
    let log = device.log_text();
    assert!(log.contains("firmware download resumed"), "{log}");
    // The second request asked only for the rest: far less than the image twice.
    let total = served(&server, &artifact);
    assert!(
        total < 2 * bytes.len() as u64 - (1 << 20),
        "{total} bytes served for a {} byte image",
        bytes.len()
    );
}

#[test]
fn req_fumo_twenty_devices_behind_one_gateway_are_updated_with_the_image_crossing_the_wan_once() {
    const DEVICES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let gateway = GatewayProcess::start(dir.path(), &server, "gw-fw", "");
    let dev_ids: Vec<String> = (0..DEVICES).map(|n| format!("IMEI:FWGW-{n:02}")).collect();
    let mut devices: Vec<Daemon> = dev_ids
        .iter()
        .map(|dev_id| {
            let home = dir.path().join(dev_id.replace(':', "_"));
            std::fs::create_dir_all(&home).unwrap();
            end_device(&home, &server.enroll(dev_id, "md5"), "gw-fw")
        })
        .collect();
    poll(
        "every device behind the gateway",
        Duration::from_secs(120),
        || {
            devices.iter_mut().for_each(Daemon::assert_running);
            let (_, page) = server.api("GET", "/api/devices?gateway=gw-fw", None);
            (page["total"] == DEVICES).then_some(())
        },
    );
    let bytes = image(1 << 20, 9);
    let artifact = upload(&server, "5.0", "gwmo-device", &bytes);
    let request = serde_json::json!({ "artifact": artifact["id"], "targets": dev_ids });
    let (status, sent) = server.api(
        "POST",
        "/api/gateways/gw-fw/firmware",
        Some(&request.to_string()),
    );
    assert_eq!(status, 202, "{sent}");
    let succeeded = poll("every update's end", Duration::from_secs(120), || {
        devices.iter_mut().for_each(Daemon::assert_running);
        let (_, page) = server.api("GET", "/api/firmware?limit=1000", None);
        let updates = page["updates"].as_array().unwrap().clone();
        let ended = updates
            .iter()
            .filter(|u| matches!(u["state"].as_str(), Some("succeeded" | "failed")))
            .count();
        (ended == DEVICES).then_some(updates)
    });
    for update in &succeeded {
        assert_eq!(update["state"], "succeeded", "{update}");
        assert_eq!(update["result"], 200, "{update}");
        assert_eq!(update["fanout"], sent["fanout"]);
    }
    // Across the WAN once; on the LAN once per device, from the gateway's copy.
    assert_eq!(served(&server, &artifact), bytes.len() as u64);
    let (status, held) = gateway.api("GET", "/api/artifacts", None);
    assert_eq!(status, 200, "{held}");
    let copy = &held["artifacts"][0];
    assert_eq!(copy["sha256"], artifact["sha256"]);
    assert_eq!(
        copy["bytes_served"],
        (DEVICES * bytes.len()) as u64,
        "{copy}"
    );
    // The gateway lists the image in its tree for the DM Server.
    let tree = device_tree(&gateway.dir.join("state").join("upstream"));
    let id = copy["id"].as_str().unwrap();
    assert_eq!(
        leaf(&tree, &format!("./GwMO/ImageInventory/{id}/SHA256")),
        Some(&artifact["sha256"])
    );
    // Every device runs the new version, and the server finds them by it.
    for dev_id in &dev_ids {
        let state = dir.path().join(dev_id.replace(':', "_")).join("state");
        assert_eq!(
            firmware_of(&state),
            ("5.0".to_owned(), "100".to_owned()),
            "{dev_id}"
        );
    }
    let (_, page) = server.api("GET", "/api/devices?fwv=5.0", None);
    assert_eq!(page["total"], DEVICES);
    // The gateway's own metrics, beside its embedded server's.
    let (status, _, metrics) = http_full(gateway.addr, "GET", "/metrics", "text/plain", b"");
    assert_eq!(status, 200);
    for line in [
        format!("gwmo_gateway_end_devices {DEVICES}"),
        "gwmo_gateway_attaches_reported_total 0".to_owned(),
        "gwmo_gateway_fanouts_reported_total 1".to_owned(),
        "gwmo_gateway_images 1".to_owned(),
        format!("gwmo_gateway_image_bytes_fetched_total {}", bytes.len()),
        format!("gwmo_artifact_bytes_served_total {}", DEVICES * bytes.len()),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
}

#[test]
fn req_fumo_a_firmware_campaign_follows_the_fumo_results_and_a_failed_install_counts_against_its_wave()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        &dir.path().join("server"),
        &dir.path()
            .join("server")
            .join("server.db")
            .display()
            .to_string(),
        "session_idle_secs = 1\n",
    );
    let _gateway = GatewayProcess::start(dir.path(), &server, "gw-c", "");
    let mut devices = Vec::new();
    for dev_id in ["IMEI:FWC-1", "IMEI:FWC-2"] {
        devices.push(device_behind(&server, dir.path(), dev_id, "gw-c").0);
    }
    for (dev_id, fails) in [("IMEI:FWC-3", false), ("IMEI:FWC-4", true)] {
        let home = dir.path().join(dev_id.replace(':', "_"));
        std::fs::create_dir_all(&home).unwrap();
        let enrollment = server.enroll(dev_id, "md5");
        let extra =
            format!("listen = \"127.0.0.1:0\"\n[firmware]\nsimulated_install_fails = {fails}\n");
        let mut daemon = device_daemon(
            &device_config(&home, &enrollment, "xml", &extra),
            home.join("device.log"),
        );
        server.reported_notify_url(dev_id, &mut daemon);
        devices.push(daemon);
    }
    let artifact = upload(&server, "6.0", "gwmo-device", &image(200_000, 11));
    let request = serde_json::json!({
        "name": "firmware 6.0",
        "firmware": { "artifact": artifact["id"] },
        "filter": { "search": "IMEI:FWC-" },
        "wave_size": 4,
        "error_threshold_percent": 10,
    });
    let (status, created) = server.api("POST", "/api/campaigns", Some(&request.to_string()));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let paused = poll(
        "the campaign paused by its failed install",
        Duration::from_secs(90),
        || {
            devices.iter_mut().for_each(Daemon::assert_running);
            let (_, campaign) = server.api("GET", &format!("/api/campaigns/{id}"), None);
            (campaign["state"] == "paused").then_some(campaign)
        },
    );
    assert_eq!(paused["devices"]["done"], 3, "{paused}");
    assert_eq!(paused["devices"]["failed"], 1, "{paused}");
    assert!(
        paused["reason"].as_str().unwrap().contains("1 of 4"),
        "{paused}"
    );
    let (_, page) = server.api("GET", &format!("/api/campaigns/{id}/devices"), None);
    for target in page["devices"].as_array().unwrap() {
        match target["dev_id"].as_str().unwrap() {
            "IMEI:FWC-4" => {
                assert_eq!(target["state"], "failed", "{target}");
                assert_eq!(target["status"], 410, "{target}");
                assert!(
                    target["error"]
                        .as_str()
                        .unwrap()
                        .contains("Firmware Update Failed")
                );
            }
            _ => {
                assert_eq!(target["state"], "done", "{target}");
                assert_eq!(target["status"], 200, "{target}");
            }
        }
    }
    // The failed device kept its firmware; the others run the new one.
    let (_, updated) = server.api("GET", "/api/devices?fwv=6.0", None);
    assert_eq!(updated["total"], 3, "{updated}");
    let state = dir.path().join("IMEI_FWC-4").join("state");
    assert_eq!(firmware_of(&state), ("1.0".to_owned(), "80".to_owned()));
}

#[test]
fn req_fumo_a_device_reports_only_on_its_own_update_and_a_result_ends_an_update_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let owner = server.enroll("IMEI:FW-OWNER", "md5");
    let stranger = server.enroll("IMEI:FW-STRANGER", "md5");
    // The owner's first session reports its Man and Mod.
    session_with_alerts(dir.path(), &owner, Vec::new());
    let artifact = upload(&server, "8.0", "gwmo-device", &image(1000, 12));
    let correlator = send(
        &server,
        "IMEI:FW-OWNER",
        &format!(
            r#"{{"artifact":"{}","wake":false}}"#,
            artifact["id"].as_str().unwrap()
        ),
    );
    let fumo_result = |code: &str| Alert {
        cmd_id: 0,
        code: 1226,
        correlator: Some(correlator.clone()),
        items: vec![Item {
            source: Some(Location::new("./FUMO/Firmware/DownloadAndUpdate")),
            meta: Some(Box::new(Meta {
                r#type: Some(gwmo_proto::codes::alert_type::FUMO_DOWNLOAD_AND_UPDATE.into()),
                format: Some("int".into()),
                ..Meta::default()
            })),
            data: Some(Data::Text(code.into())),
            ..Item::default()
        }],
    };
    let state = || {
        let (_, page) = server.api("GET", "/api/devices/IMEI:FW-OWNER/firmware", None);
        page["updates"][0].clone()
    };
    // Another device claims the owner's update succeeded: nothing changes.
    session_with_alerts(dir.path(), &stranger, vec![fumo_result("200")]);
    assert_eq!(state()["state"], "queued", "{}", state());
    assert!(
        server
            .daemon
            .log_text()
            .contains("a FUMO result for no update of this device")
    );
    // The owner's own report ends it; a later, different report changes nothing.
    session_with_alerts(dir.path(), &owner, vec![fumo_result("402")]);
    let ended = state();
    assert_eq!(
        (ended["state"].as_str(), ended["result"].as_i64()),
        (Some("failed"), Some(402))
    );
    session_with_alerts(dir.path(), &owner, vec![fumo_result("200")]);
    assert_eq!(state(), ended);
}

#[test]
fn bad_uploads_and_downloads_get_clear_refusals_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("server");
    let server = ServerProcess::start_with(
        &home,
        &home.join("server.db").display().to_string(),
        "artifact_max_mib = 1\n",
    );
    let query = "name=fw&version=1&man=gwmo&model=m";
    for (what, query, body, status) in [
        ("an empty image", query.to_owned(), Vec::new(), 400),
        (
            "another digest",
            format!("{query}&sha256={}", "0".repeat(64)),
            image(100, 1),
            400,
        ),
        (
            "a digest that is none",
            format!("{query}&sha256=xyz"),
            image(100, 1),
            400,
        ),
        (
            "no version",
            "name=fw&man=gwmo&model=m".to_owned(),
            image(100, 1),
            400,
        ),
        ("too large", query.to_owned(), image((1 << 20) + 1, 1), 413),
    ] {
        let (answered, refusal) = upload_artifact(server.addr, &query, &body);
        assert_eq!(answered, status, "{what}: {refusal}");
        assert!(refusal["error"].is_string(), "{what}: {refusal}");
    }
    let (_, listed) = server.api("GET", "/api/artifacts", None);
    assert_eq!(listed["total"], 0, "{listed}");
    let stored: Vec<_> = std::fs::read_dir(home.join("server.db.artifacts"))
        .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "left behind: {stored:?}");

    // Downloads: an unknown id, a path that is no id, and a range past the end.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = gwmo_net::HttpClient::new(
        &test_tls().client().unwrap(),
        Duration::from_secs(10),
        1 << 20,
    );
    let artifact = upload(&server, "1.0", "m", &image(1000, 2));
    let id = artifact["id"].as_str().unwrap();
    for (path, range, status) in [
        (format!("/firmware/{}", "0".repeat(32)), None, 404),
        ("/firmware/..%2Fserver.db".to_owned(), None, 404),
        (format!("/firmware/{id}"), Some("bytes=1000-"), 416),
        (format!("/firmware/{id}"), Some("bytes=10-19"), 206),
        (format!("/firmware/{id}"), None, 200),
    ] {
        let headers: Vec<(&str, &str)> = range.map(|r| vec![("range", r)]).unwrap_or_default();
        let url = format!("https://{}{path}", server.addr);
        let answer = runtime
            .block_on(client.request(gwmo_net::Method::GET, &url, &headers, Vec::new()))
            .unwrap();
        let (answered, body) = (answer.status, answer.body);
        assert_eq!(answered, status, "{path} {range:?}");
        match status {
            206 => assert_eq!(body, image(1000, 2)[10..20]),
            200 => assert_eq!(body, image(1000, 2)),
            _ => {}
        }
    }
}

#[test]
fn a_gateways_image_store_evicts_the_oldest_image_when_a_new_one_would_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    // Room for one 700 KB image, not two.
    let gateway = GatewayProcess::start(dir.path(), &server, "gw-small", "image_store_mib = 1\n");
    let (mut device, home) = device_behind(&server, dir.path(), "IMEI:FW-SMALL", "gw-small");
    let mut held_after = |version: &str, seed: u8| {
        let artifact = upload(&server, version, "gwmo-device", &image(700_000, seed));
        let request =
            serde_json::json!({ "artifact": artifact["id"], "targets": ["IMEI:FW-SMALL"] });
        let (status, sent) = server.api(
            "POST",
            "/api/gateways/gw-small/firmware",
            Some(&request.to_string()),
        );
        assert_eq!(status, 202, "{sent}");
        let correlator = sent["correlator"].as_str().unwrap().to_owned();
        let update = ended(&server, "IMEI:FW-SMALL", &correlator, &mut device);
        assert_eq!(update["result"], 200, "{update}");
        let (_, held) = gateway.api("GET", "/api/artifacts", None);
        let versions: Vec<String> = held["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["version"].as_str().unwrap().to_owned())
            .collect();
        (versions, artifact)
    };
    let (first, _) = held_after("9.1", 21);
    assert_eq!(first, ["9.1"]);
    let (second, artifact) = held_after("9.2", 22);
    assert_eq!(second, ["9.2"], "the older image made room");
    let tree = device_tree(&gateway.dir.join("state").join("upstream"));
    let listed = tree["children"]["GwMO"]["children"]["ImageInventory"]["children"]
        .as_object()
        .unwrap()
        .values()
        .map(|image| image["children"]["SHA256"]["value"].clone())
        .collect::<Vec<_>>();
    assert_eq!(
        listed,
        [artifact["sha256"].clone()],
        "the inventory lists what is held"
    );
    assert_eq!(
        firmware_of(&home.join("state")),
        ("9.2".to_owned(), "100".to_owned())
    );
}

#[test]
fn req_fumo_a_gateways_fetch_cut_halfway_resumes_with_a_range_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let gateway = GatewayProcess::start(dir.path(), &server, "gw-cut", "");
    let (mut device, home) = device_behind(&server, dir.path(), "IMEI:FW-CUT", "gw-cut");
    let bytes = image(4 << 20, 31);
    let artifact = upload(&server, "9.9", "gwmo-device", &bytes);
    let id = artifact["id"].as_str().unwrap();
    let proxy = cutting_proxy(server.addr, 2 << 20);
    let request = serde_json::json!({
        "artifact": id,
        "targets": ["IMEI:FW-CUT"],
        "pkg_url": format!("https://{proxy}/firmware/{id}"),
    });
    let (status, sent) = server.api(
        "POST",
        "/api/gateways/gw-cut/firmware",
        Some(&request.to_string()),
    );
    assert_eq!(status, 202, "{sent}");
    let correlator = sent["correlator"].as_str().unwrap().to_owned();
    let update = ended(&server, "IMEI:FW-CUT", &correlator, &mut device);
    assert_eq!(update["result"], 200, "{update}");
    let log = gateway.daemon.log_text();
    assert!(log.contains("firmware download resumed"), "{log}");
    // The gateway asked only for the rest the second time.
    let total = served(&server, &artifact);
    assert!(
        (bytes.len() as u64..2 * bytes.len() as u64 - (1 << 20)).contains(&total),
        "{total} bytes served for a {} byte image",
        bytes.len()
    );
    assert_eq!(
        firmware_of(&home.join("state")),
        ("9.9".to_owned(), "100".to_owned())
    );
}

/// curl, an HTTP client gwmo did not write, takes a range of an image and resumes a
/// cut download of it (`-C -`) from the server's `/firmware/{id}`.
#[test]
fn an_independent_client_takes_ranges_and_resumes_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let bytes = image(600_000, 41);
    let artifact = upload(&server, "1.1", "gwmo-device", &bytes);
    let url = format!(
        "https://{}/firmware/{}",
        server.addr,
        artifact["id"].as_str().unwrap()
    );
    let curl = |args: &[&str], out: &Path| {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--cacert"])
            .arg(pki().join("ca.pem"))
            .args(args)
            .arg("--output")
            .arg(out)
            .arg(&url)
            .output()
            .expect("curl (Debian's curl package; .ci/run installs it)");
        assert_success(&output, &format!("curl {args:?}"));
    };
    let part = dir.path().join("part");
    curl(&["--range", "1000-1999"], &part);
    assert_eq!(std::fs::read(&part).unwrap(), bytes[1000..2000]);
    // A download cut at 250,000 bytes, resumed where the file ends.
    let cut = dir.path().join("cut");
    std::fs::write(&cut, &bytes[..250_000]).unwrap();
    curl(&["--continue-at", "-"], &cut);
    assert_eq!(std::fs::read(&cut).unwrap(), bytes);
    assert_eq!(
        served(&server, &artifact),
        1000 + 350_000,
        "only what was asked for"
    );
}
