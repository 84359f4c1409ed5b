//! The web dashboard in a real browser: Debian's headless Chromium opens the page the
//! server serves, after figure z ran with real processes, and what it shows is checked;
//! a screenshot is saved (to `$GWMO_SCREENSHOT` too, when set: that is how the
//! README's picture is made). Installs Chromium with apt-get when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const ED: &str = "IMEI:350000000000501";
/// A device whose gateway it cannot reach: its bootstrap stays restricted, lapsing.
const UNREACHED: &str = "IMEI:350000000000503";

/// The Chromium binary, installed first if needs be.
fn chromium() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|name| {
            let output = Command::new("which").arg(name).output().ok()?;
            output
                .status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        })
    };
    if let Some(found) = find() {
        return found;
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "Chromium is missing and apt-get could not install it"
    );
    find().expect("chromium on the PATH after installing it")
}

fn headless(browser: &Path, args: &[&str], url: &str) -> String {
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            // The server's certificate is from the tests' development CA.
            "--ignore-certificate-errors",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_dashboard_shows_devices_gateways_accounts_the_tree_alerts_and_the_audit_log_in_a_real_browser()
 {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (_gateway, bootstrap_url) = local_gateway(dir.path(), &server, ED, "2468");
    let enrollment = server.enroll(ED, "md5");
    server.enroll("IMEI:350000000000502", "hmac");
    let extra = format!(
        "listen = \"127.0.0.1:0\"\nbootstrap_url = \"{bootstrap_url}\"\nuserpin = \"2468\"\n"
    );
    let config = device_config(dir.path(), &enrollment, "wbxml", &extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    poll(
        "the validation on the device",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let state = dir.path().join("state");
            if !state.join("tree.json").exists() {
                return None;
            }
            let tree = device_tree(&state);
            (leaf(&tree, "./DMAcc/gw-l/Ext/GwBoot/Trust")? == "validated").then_some(())
        },
    );
    let (status, asked) = server.api("POST", &format!("/api/devices/{ED}/tree"), None);
    assert_eq!(status, 202, "{asked}");
    let id = asked["command"].as_i64().unwrap();
    poll("the tree report", Duration::from_secs(30), || {
        (server.command(id)["status"] == 200).then_some(())
    });
    // A Get whose value the device's page shows.
    let (status, queued) = server.api(
        "POST",
        &format!("/api/devices/{ED}/commands"),
        Some(r#"{"op":"Get","target":"./DevInfo/Man"}"#),
    );
    assert_eq!(status, 201, "{queued}");
    let get = queued["id"].as_i64().unwrap();
    poll("the Get's answer", Duration::from_secs(30), || {
        device.assert_running();
        (server.command(get)["state"] == "done").then_some(())
    });
    let _unreached = unreached_device(dir.path(), &server);
    // A fleet: 10,000 more devices, enrolled from one CSV document.
    let csv: String = std::iter::once("dev_id\r\n".to_owned())
        .chain((0..10_000).map(|n| format!("IMEI:FLEET-{n:05}\r\n")))
        .collect();
    let (status, imported) = server.enroll_csv(&csv);
    assert_eq!(status, 200, "{imported}");
    let campaign = r#"{"name":"pilot-read","command":{"op":"Get","target":"./DevInfo/Mod"},"filter":{"search":"IMEI:350000000000502"}}"#;
    assert_eq!(server.api("POST", "/api/campaigns", Some(campaign)).0, 201);
    // A firmware image, and an update of a device that has not taken it yet.
    let (status, artifact) = upload_artifact(
        server.addr,
        "name=pilot-fw&version=7.1&man=gwmo&model=gwmo-device",
        &[7; 4096],
    );
    assert_eq!(status, 201, "{artifact}");
    let update = format!(
        r#"{{"artifact":"{}","force":true,"wake":false}}"#,
        artifact["id"].as_str().unwrap()
    );
    let (status, queued) = server.api(
        "POST",
        "/api/devices/IMEI:350000000000502/firmware",
        Some(&update),
    );
    assert_eq!(status, 202, "{queued}");

    let url = format!(
        "https://{}/dashboard#token={TOKEN}&device={ED}",
        server.addr
    );
    let dom = headless(&browser, &["--dump-dom"], &url);
    for shown in [
        ED,                     // the device list
        "IMEI:350000000000502", // a device with no session yet
        "gw-l",                 // the gateway, with how many devices it serves
        "1 device<",
        "live",                         // and whether it was seen lately
        "10005 devices · 2 gateways",   // the fleet's totals
        "<summary>DevDetail</summary>", // the reported tree, browsable
        "config (admin)",               // the audit log: who asked for the tree
        "/api/devices/IMEI:350000000000501/tree",
        "pilot-read", // the campaign, its state and its wave
        "wave 1/1",
        "class=\"wave\"",
        "local-bootstrap", // the account's origin and the association's
        "validated",       // its trust
        "(the gateway's own)",
        "gwmo-dms", // the factory account
        "attach",   // the alert log
        "takes package 0",
        "<td class=\"detail\">gwmo</td>", // the Get's value
        "pilot-fw 7.1",                   // the firmware image and its update
        "gwmo/gwmo-device",
        "<td>pilot-fw 7.1</td><td><span class=\"badge queued\">queued</span>",
    ] {
        assert!(
            dom.contains(shown),
            "the page does not show {shown:?}:\n{dom}"
        );
    }
    assert!(!dom.contains(enrollment["client_secret"].as_str().unwrap()));
    // A page at a time: 200 rows, and a button for the next page.
    assert_eq!(dom.matches("<tr class=\"device").count(), 200, "{dom}");
    assert!(dom.contains("<button id=\"more\">more</button>"), "{dom}");

    // A search, from a link: ten devices of the 10,005.
    let url = format!(
        "https://{}/dashboard#token={TOKEN}&search=IMEI:FLEET-0424",
        server.addr
    );
    let dom = headless(&browser, &["--dump-dom"], &url);
    assert!(dom.contains("10 devices match"), "{dom}");
    assert_eq!(dom.matches("<tr class=\"device").count(), 10, "{dom}");
    assert!(
        dom.contains("IMEI:FLEET-04249") && !dom.contains("IMEI:FLEET-04250"),
        "{dom}"
    );
    assert!(dom.contains("<button id=\"more\" hidden=\"\">"), "{dom}");

    // The device whose gateway never answered: restricted, and counting down.
    let url = format!(
        "https://{}/dashboard#token={TOKEN}&device={UNREACHED}&search=IMEI:35",
        server.addr
    );
    let dom = headless(&browser, &["--dump-dom"], &url);
    for shown in ["gw-far", "restricted", "lapses in", "validate"] {
        assert!(
            dom.contains(shown),
            "the page does not show {shown:?}:\n{dom}"
        );
    }

    let screenshot = dir.path().join("dashboard.png");
    headless(
        &browser,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,900",
        ],
        &url,
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 20_000, "an empty page? {} bytes", png.len());
    if let Some(keep) = std::env::var_os("GWMO_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
}

/// A device that takes the Gateway Bootstrap of `gw-far`, whose end-device address is
/// a closed port: its session with the gateway fails, the bootstrap stays restricted
/// and lapsing, and its session with the DM Server reports its tree.
fn unreached_device(dir: &std::path::Path, server: &ServerProcess) -> Daemon {
    let (_gateway, bootstrap_url) = local_gateway_named(
        dir,
        server,
        "gw-far",
        UNREACHED,
        "8642",
        "public_url = \"https://127.0.0.1:9/dm\"\n",
    );
    let enrollment = server.enroll(UNREACHED, "md5");
    let (status, asked) = server.api("POST", &format!("/api/devices/{UNREACHED}/tree"), None);
    assert_eq!(status, 202, "{asked}");
    let id = asked["command"].as_i64().unwrap();
    let home = dir.join("unreached");
    std::fs::create_dir_all(&home).unwrap();
    let extra =
        format!("bootstrap_url = \"{bootstrap_url}\"\nuserpin = \"8642\"\ntimeout_secs = 2\n");
    let config = device_config(&home, &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, home.join("device.log"));
    poll(
        "the unreached device's tree",
        Duration::from_secs(30),
        || {
            device.assert_running();
            (server.command(id)["status"] == 200).then_some(())
        },
    );
    let (_, accounts) = server.api("GET", &format!("/api/devices/{UNREACHED}/accounts"), None);
    let far = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["node"] == "gw-far")
        .cloned()
        .unwrap_or_else(|| panic!("no gw-far account: {accounts}"));
    assert_eq!(far["trust"], "restricted", "{far}");
    assert!(
        far["lapse_at"].is_i64(),
        "Unix seconds, as every time the API gives: {far}"
    );
    device
}

#[test]
fn the_dashboard_asks_for_the_token_and_serves_no_data_without_it() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    server.enroll(ED, "md5");
    let dom = headless(
        &browser,
        &["--dump-dom"],
        &format!("https://{}/dashboard", server.addr),
    );
    assert!(dom.contains("Admin token"), "{dom}");
    assert!(!dom.contains(ED), "data shown without a token:\n{dom}");
    let wrong = headless(
        &browser,
        &["--dump-dom"],
        &format!("https://{}/dashboard#token=wrong", server.addr),
    );
    assert!(wrong.contains("wrong or missing token"), "{wrong}");
    assert!(!wrong.contains(ED));
}

/// The API reference the server serves itself: every operation of its OpenAPI
/// description, with the role it needs, rendered in a real browser with nothing loaded
/// from anywhere else.
#[test]
fn the_api_reference_page_shows_every_operation_of_the_description() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (status, head, _) = exchange(
        connect_tls(server.addr),
        server.addr,
        "GET",
        "/docs/api",
        None,
        "",
        b"",
    );
    assert_eq!(status, 200);
    assert!(head.contains("default-src 'none'"), "{head}");
    let dom = headless(
        &browser,
        &["--dump-dom"],
        &format!("https://{}/docs/api", server.addr),
    );
    let description = openapi::description();
    for operations in description["paths"].as_object().unwrap().values() {
        for operation in operations.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(
                dom.contains(&format!("id=\"{id}\"")),
                "{id} is not shown:\n{dom}"
            );
        }
    }
    for shown in [
        "<span class=\"role\">viewer role</span>",
        "<span class=\"role\">operator role</span>",
        "<span class=\"role\">admin role</span>",
        "id=\"schema-CampaignDetail\"",
    ] {
        assert!(dom.contains(shown), "the page does not show {shown:?}");
    }
}
