//! The restricted-trust boundary of seed 8.x.2 held against a hostile gateway and a
//! hostile device on the same LAN, with separate `gwmo` processes over TLS: each
//! finding of issue 13 as its own test. The hostile gateway is a real `gwmo gateway`
//! whose operator queues whatever it likes for the device through its admin API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use gwmo_proto::codes::alert_type;
use gwmo_session::{ClientConfig, ClientEvent, ClientSession, ClientStep, Credentials};
use gwmo_tree::{AuthLevel, DeviceInfo, Tree, segment_for};
use serde_json::Value;

const ED: &str = "IMEI:350000000000901";
const PIN: &str = "4711";

/// A DM Server, a hostile gateway `gw-l` with its Local DM Bootstrap Server, and a
/// device configuration that takes its bootstrap from it.
struct Lan {
    dir: tempfile::TempDir,
    server: ServerProcess,
    gw: GatewayProcess,
    config: PathBuf,
    /// The device's factory DM Server and the node of its account.
    dms: String,
    dms_node: String,
}

impl Lan {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn tree(&self) -> Value {
        device_tree(&self.state())
    }

    /// Queues `specs` on the gateway for the device, then holds one session of the
    /// device with the gateway; returns each command as the gateway recorded it.
    fn hostile(&self, specs: &[&str]) -> Vec<Value> {
        let ids: Vec<i64> = specs
            .iter()
            .map(|spec| {
                let (status, body) =
                    self.gw
                        .api("POST", &format!("/api/devices/{ED}/commands"), Some(spec));
                assert_eq!(status, 201, "{spec}: {body}");
                body["id"].as_i64().unwrap()
            })
            .collect();
        let output = session_once(&self.config, "gw-l");
        assert_success(&output, "the device's session with the gateway");
        ids.iter()
            .map(|id| self.gw.api("GET", &format!("/api/commands/{id}"), None).1)
            .collect()
    }
}

fn leaf_text(tree: &Value, uri: &str) -> Option<String> {
    leaf(tree, uri).and_then(Value::as_str).map(str::to_owned)
}

/// A device that took gw-l's Gateway Bootstrap and held one session with it
/// (confirmed, restricted). Its sessions with the DM Server fail (a wrong secret in
/// its configuration), so nothing validates the gateway.
fn restricted_device() -> Lan {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (gw, url) = local_gateway(dir.path(), &server, ED, PIN);
    let mut enrollment = server.enroll(ED, "md5");
    enrollment["client_secret"] = "not-the-secret".into();
    let extra = format!("bootstrap_url = \"{url}\"\nuserpin = \"{PIN}\"\n");
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    let dms = enrollment["server_id"].as_str().unwrap().to_owned();
    let lan = Lan {
        dms_node: segment_for(&dms),
        dms,
        config,
        gw,
        server,
        dir,
    };
    let mut device = device_daemon(&lan.config, lan.dir.path().join("bootstrap.log"));
    poll(
        "the device's first session with the gateway",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let tree = device_tree_if_any(&lan.state())?;
            (leaf_text(&tree, "./DMAcc/gw-l/Ext/GwBoot/Confirmed").as_deref() == Some("true"))
                .then_some(())
        },
    );
    drop(device);
    let tree = lan.tree();
    assert_eq!(
        leaf_text(&tree, "./DMAcc/gw-l/Ext/GwBoot/Trust").as_deref(),
        Some("restricted")
    );
    lan
}

fn statuses(commands: &[Value]) -> Vec<i64> {
    commands
        .iter()
        .map(|c| c["status"].as_i64().unwrap_or(0))
        .collect()
}

#[test]
fn finding_1_a_restricted_gateway_cannot_lift_its_own_restriction() {
    let lan = restricted_device();
    let before = lan.tree();
    let dms_addr = format!("./DMAcc/{}/AppAddr/1/Addr", lan.dms_node);
    let hijack =
        format!(r#"{{"op":"Replace","target":"{dms_addr}","data":"https://127.0.0.1:9/dm"}}"#);
    let parent = format!(
        r#"{{"op":"Add","target":"./DMAcc/gw-l/Ext/GwBoot/Parent","data":"{}"}}"#,
        lan.dms
    );
    let commands = lan.hostile(&[
        r#"{"op":"Delete","target":"./DMAcc/gw-l/Ext"}"#,
        &parent,
        r#"{"op":"Add","target":"./DMAcc/gw-l/Ext/GwBoot/Trust","data":"validated"}"#,
        r#"{"op":"Replace","target":"./DMAcc/gw-l/Ext/GwBoot/Trust","data":"validated"}"#,
        r#"{"op":"Add","target":"./DMAcc/gw-l/Ext/GwBoot/Origin","data":"local-bootstrap"}"#,
        &hijack,
    ]);
    assert_eq!(statuses(&commands), vec![425; 6], "{commands:?}");
    let after = lan.tree();
    assert_eq!(leaf(&after, &dms_addr), leaf(&before, &dms_addr));
    assert_eq!(
        leaf(&after, "./DMAcc/gw-l/Ext/GwBoot/Trust"),
        leaf(&before, "./DMAcc/gw-l/Ext/GwBoot/Trust")
    );
}

#[test]
fn finding_2_an_account_the_gateway_made_stays_its_own() {
    let lan = restricted_device();
    let commands = lan.hostile(&[
        r#"{"op":"Add","target":"./DMAcc/sneaky/ServerID","data":"sneaky"}"#,
        r#"{"op":"Delete","target":"./DMAcc/sneaky/Ext"}"#,
        r#"{"op":"Replace","target":"./DMAcc/sneaky/Ext/GwBoot/Origin","data":"factory"}"#,
    ]);
    assert_eq!(statuses(&commands), vec![200, 425, 425], "{commands:?}");
    let tree = lan.tree();
    for (field, value) in [
        ("Origin", "via-gateway"),
        ("Parent", "gw-l"),
        ("Trust", "restricted"),
    ] {
        assert_eq!(
            leaf_text(&tree, &format!("./DMAcc/sneaky/Ext/GwBoot/{field}")).as_deref(),
            Some(value),
            "{field}"
        );
    }
}

#[test]
fn finding_3_a_restricted_gateway_cannot_rename_itself() {
    let lan = restricted_device();
    let commands = lan.hostile(&[
        r#"{"op":"Replace","target":"./DMAcc/gw-l/ServerID","data":"gw-renamed"}"#,
        r#"{"op":"Delete","target":"./DMAcc/gw-l/ServerID"}"#,
    ]);
    assert_eq!(statuses(&commands), vec![425, 425], "{commands:?}");
    assert_eq!(
        leaf_text(&lan.tree(), "./DMAcc/gw-l/ServerID").as_deref(),
        Some("gw-l")
    );
}

#[test]
fn finding_4_no_second_account_for_the_dm_server() {
    let lan = restricted_device();
    let impostor = format!(
        r#"{{"op":"Atomic","commands":[
            {{"op":"Add","target":"./DMAcc/AAA/ServerID","data":"{dms}"}},
            {{"op":"Add","target":"./DMAcc/AAA/AppAddr/1/Addr","data":"https://127.0.0.1:9/dm"}}]}}"#,
        dms = lan.dms
    );
    let commands = lan.hostile(&[&impostor]);
    assert_ne!(commands[0]["status"], 200, "{commands:?}");
    let tree = lan.tree();
    let accounts = tree["children"]["DMAcc"]["children"].as_object().unwrap();
    let for_the_dms: Vec<&String> = accounts
        .iter()
        .filter(|(_, account)| account["children"]["ServerID"]["value"] == lan.dms.as_str())
        .map(|(node, _)| node)
        .collect();
    assert_eq!(for_the_dms, vec![&lan.dms_node]);
    // The device's next session with its DM Server goes to the real one.
    let output = session_once(&lan.config, &lan.dms);
    let (_, events) = lan.server.api(
        "GET",
        &format!("/api/events?kind=auth-failed&device={ED}"),
        None,
    );
    assert!(
        !events["events"].as_array().unwrap().is_empty(),
        "the session did not reach the DM Server: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn finding_5_a_local_bootstrap_never_takes_a_factory_accounts_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    // The factory account of "gw.l" has node gw_l, the name gateway "gw_l" maps to.
    let (gw, url) = local_gateway_named(dir.path(), &server, "gw_l", ED, PIN, "");
    let mut enrollment = server.enroll(ED, "md5");
    enrollment["server_id"] = "gw.l".into();
    let extra = format!("bootstrap_url = \"{url}\"\nuserpin = \"{PIN}\"\n");
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    let tree = poll(
        "the gateway's account on the device",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let tree = device_tree_if_any(&dir.path().join("state"))?;
            leaf(&tree, "./DMAcc/gw_l_2/ServerID")
                .is_some()
                .then_some(tree)
        },
    );
    assert_eq!(
        leaf_text(&tree, "./DMAcc/gw_l/ServerID").as_deref(),
        Some("gw.l")
    );
    assert_eq!(
        leaf_text(&tree, "./DMAcc/gw_l/Ext/GwBoot/Origin").as_deref(),
        Some("factory")
    );
    assert_eq!(
        leaf_text(&tree, "./DMAcc/gw_l_2/ServerID").as_deref(),
        Some("gw_l")
    );
    drop(gw);
}

/// gw-l with its Local DM Bootstrap Server, which knows the device's PIN, and more
/// top-level `settings` (TOML lines); returns it and its bootstrap server's address.
fn lbs_gateway(
    dir: &Path,
    server: &ServerProcess,
    settings: &str,
) -> (GatewayProcess, std::net::SocketAddr) {
    let address_file = dir.join("lbs.addr");
    let extra = format!(
        "{settings}bootstrap_listen = \"127.0.0.1:0\"\nbootstrap_address_file = {address_file:?}\n[approaches]\nlocal = true\n[userpins]\n\"{ED}\" = \"{PIN}\"\n"
    );
    let mut gw = GatewayProcess::start(dir, server, "gw-l", &extra);
    let lbs = bound_address(&mut gw.daemon, &address_file);
    (gw, lbs)
}

/// A gateway whose bootstraps lapse after `lapse_secs` and name a DM address no
/// device reaches (so no session follows).
fn unreachable_gateway(
    dir: &Path,
    server: &ServerProcess,
    lapse_secs: u64,
) -> (GatewayProcess, std::net::SocketAddr) {
    let settings =
        format!("public_url = \"https://127.0.0.1:9/dm\"\nbootstrap_lapse_secs = {lapse_secs}\n");
    lbs_gateway(dir, server, &settings)
}

/// `gwmo device --config CONFIG --once --server-id SERVER`.
fn session_once(config: &Path, server_id: &str) -> std::process::Output {
    gwmo()
        .arg("device")
        .arg("--config")
        .arg(config)
        .args(["--once", "--server-id", server_id])
        .output()
        .unwrap()
}

fn unix_now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn unix_of(rfc3339: &str) -> f64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp() as f64
}

/// Waits until the device at `state` has no gateway account; returns when it noticed.
fn lapsed_at(state: &Path, device: &mut Daemon) -> f64 {
    poll("the lapse on the device", Duration::from_secs(30), || {
        device.assert_running();
        let tree = device_tree(state);
        leaf(&tree, "./DMAcc/gw-l/ServerID")
            .is_none()
            .then(unix_now_secs)
    })
}

/// A device configuration whose bootstrap comes from a gateway it never reaches, and
/// which does nothing but wait (`poll_secs = 0`).
struct IdleDevice {
    dir: tempfile::TempDir,
    _server: ServerProcess,
    _gw: GatewayProcess,
    config: PathBuf,
    state: PathBuf,
}

fn idle_device(lapse_secs: u64) -> IdleDevice {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (gw, lbs) = unreachable_gateway(dir.path(), &server, lapse_secs);
    let enrollment = server.enroll(ED, "md5");
    let extra = format!(
        "bootstrap_url = \"https://{lbs}/bootstrap\"\nuserpin = \"{PIN}\"\npoll_secs = 0\n"
    );
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    IdleDevice {
        state: dir.path().join("state"),
        config,
        _gw: gw,
        _server: server,
        dir,
    }
}

/// Waits for the running `device` to take its bootstrap; returns its LapseAt.
fn bootstrap_deadline(state: &Path, device: &mut Daemon) -> String {
    poll("the bootstrap", Duration::from_secs(30), || {
        device.assert_running();
        leaf_text(
            &device_tree_if_any(state)?,
            "./DMAcc/gw-l/Ext/GwBoot/LapseAt",
        )
    })
}

#[test]
fn finding_6_a_running_device_lapses_on_time_with_nothing_else_happening() {
    let idle = idle_device(2);
    let mut device = device_daemon(&idle.config, idle.dir.path().join("device.log"));
    let deadline = unix_of(&bootstrap_deadline(&idle.state, &mut device));
    lapsed_at(&idle.state, &mut device);
    // When the device acted, from its own log (not when this test noticed, which a
    // loaded machine delays; the line follows the tree's write); LapseAt is in whole
    // seconds.
    let line = poll("the lapse in the log", Duration::from_secs(10), || {
        device
            .log_text()
            .lines()
            .find(|line| line.contains("gateway bootstrap lapsed"))
            .map(str::to_owned)
    });
    let gone = unix_of_log_line(&line);
    assert!(
        gone >= deadline - 1.0 && gone <= deadline + 1.0,
        "lapsed at {gone}, deadline {deadline}"
    );
}

/// The time a log line starts with (RFC 3339, possibly inside ANSI colour codes).
fn unix_of_log_line(line: &str) -> f64 {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    let stamp = plain.split_whitespace().next().unwrap_or_default();
    let time = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{stamp:?}: {e}"));
    time.unix_timestamp_nanos() as f64 / 1e9
}

#[test]
fn finding_6_a_clock_ahead_at_bootstrap_and_set_right_later_does_not_stretch_the_lapse() {
    // libfaketime preloaded into the device itself (the `faketime` program would run
    // it as a child, which killing `faketime` leaves running).
    const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    if !Path::new(LIBFAKETIME).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have libfaketime (Debian package faketime)"
        );
        eprintln!(
            "NOT RUN: needs libfaketime (Debian package faketime) to set a process's clock ahead"
        );
        return;
    }
    let idle = idle_device(4);
    // Thirty days ahead at bootstrap.
    let mut ahead = std::process::Command::new(gwmo_path());
    ahead.env("LD_PRELOAD", LIBFAKETIME).env("FAKETIME", "+30d");
    ahead.arg("device").arg("--config").arg(&idle.config);
    let mut device = Daemon::spawn(ahead, idle.dir.path().join("ahead.log"));
    let deadline = bootstrap_deadline(&idle.state, &mut device);
    assert!(
        unix_of(&deadline) > unix_now_secs() + 86_400.0,
        "the clock was not ahead: {deadline}"
    );
    drop(device);
    // The clock set right: the device counts what it measures, not the wall deadline.
    let restarted = Instant::now();
    let mut device = device_daemon(&idle.config, idle.dir.path().join("device.log"));
    lapsed_at(&idle.state, &mut device);
    eprintln!("lapsed {:?} after the restart", restarted.elapsed());
    assert!(
        restarted.elapsed() <= Duration::from_secs(4 + 2),
        "the bootstrap outlived its interval: {:?}",
        restarted.elapsed()
    );
}

/// A device that takes a bootstrap from `lbs` and holds a session with the gateway
/// only until the gateway's first package is in: its answer never leaves.
fn cut_session(lbs: std::net::SocketAddr) {
    let (status, document) = request_bootstrap(lbs, ED, Some(PIN));
    assert_eq!(status, 200, "{document}");
    let account = gwmo_tree::read_bootstrap(&document).unwrap().account;
    let credentials = |level| {
        let auth = account.credentials(level).unwrap();
        Credentials {
            auth: auth.auth_type,
            name: auth.name.clone(),
            secret: auth.secret.clone(),
        }
    };
    let mut tree = Tree::new_device(&DeviceInfo {
        dev_id: ED.into(),
        ..DeviceInfo::default()
    });
    tree.apply_gateway_bootstrap(&account, 0, 600).unwrap();
    let config = ClientConfig {
        device_id: ED.into(),
        server_id: account.server_id.clone(),
        server_uri: account.addr.clone(),
        encoding: gwmo_proto::Encoding::Xml,
        max_msg_size: 64 * 1024,
        max_obj_size: 64 * 1024,
        client: credentials(AuthLevel::Client),
        client_nonce: Vec::new(),
        server: credentials(AuthLevel::Server),
        server_nonce: Vec::new(),
        max_auth_attempts: 3,
    };
    let mut session = ClientSession::new(
        config,
        "1".into(),
        gwmo_session::Trigger::Client,
        tree.devinfo_items(),
        Vec::new(),
    );
    let mut executor = TreeExecutor(tree);
    let client = gwmo_net::HttpClient::new(
        &test_tls().client().unwrap(),
        Duration::from_secs(10),
        1 << 20,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut outgoing = session.start().unwrap();
        loop {
            let answer = client
                .post(
                    &outgoing.url,
                    outgoing.content_type,
                    outgoing.hmac.as_deref(),
                    outgoing.body,
                )
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
            let step = session
                .receive(
                    &answer.body,
                    answer.hmac.as_deref(),
                    &mut executor,
                    &mut || rand::random::<[u8; 16]>().to_vec(),
                )
                .unwrap();
            let in_session = session
                .take_events()
                .contains(&ClientEvent::ServerAuthenticated);
            match step {
                ClientStep::Send(next) if !in_session => outgoing = next,
                _ => return,
            }
        }
    });
}

#[test]
fn finding_7_a_session_cut_after_package_1_ends_in_a_device_detach() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (mut gw, lbs) = lbs_gateway(dir.path(), &server, "bootstrap_lapse_secs = 2\n");
    cut_session(lbs);
    let (_, record) = gw.api("GET", &format!("/api/devices/{ED}"), None);
    assert!(record["sessions"].as_i64() > Some(0), "{record}");
    let detach = poll(
        "the Device Detach Alert on the server",
        Duration::from_secs(30),
        || {
            gw.daemon.assert_running();
            let (_, events) = server.api("GET", "/api/events?kind=detach", None);
            events["events"].as_array()?.first().cloned()
        },
    );
    assert_eq!(detach["detail"]["device"]["reason"], "lapsed", "{detach}");
    let (_, attaches) = server.api("GET", "/api/events?kind=attach", None);
    assert_eq!(
        attaches["events"],
        serde_json::json!([]),
        "an unconfirmed device was reported attached"
    );
}

#[test]
fn finding_8_the_bootstrap_server_gives_nothing_to_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (gw, lbs) = lbs_gateway(dir.path(), &server, "");
    let enrollment = server.enroll(ED, "md5");
    let extra = format!("bootstrap_url = \"https://{lbs}/bootstrap\"\nuserpin = \"{PIN}\"\n");
    let config = device_config(dir.path(), &enrollment, "xml", &extra);
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    poll(
        "the device's session with gw-l",
        Duration::from_secs(30),
        || {
            device.assert_running();
            let (_, record) = gw.api("GET", &format!("/api/devices/{ED}"), None);
            (record["sessions"].as_i64() > Some(0)).then_some(())
        },
    );
    drop(device);
    let inventory = || {
        let tree = device_tree(&gw.dir.join("state").join("upstream"));
        let entries = tree["children"]["GwMO"]["children"]["DeviceInventory"]["children"].clone();
        let names: Vec<String> = entries.as_object().unwrap().keys().cloned().collect();
        let secret = leaf_text(
            &tree,
            &format!("./GwMO/DeviceInventory/{}/ClientSecret", segment_for(ED)),
        );
        (names, secret)
    };
    let before = inventory();

    // Made-up DevIds: refused, never written down.
    let mut refused = std::collections::BTreeMap::new();
    for i in 0..200 {
        let (status, _) = request_bootstrap(lbs, &format!("IMEI:made-up-{i}"), None);
        *refused.entry(status).or_insert(0) += 1;
    }
    assert!(
        refused.keys().all(|status| [403, 429].contains(status)),
        "{refused:?}"
    );
    // The real DevId without its PIN: a challenge, no new credentials.
    let (status, _) = request_bootstrap(lbs, ED, None);
    assert!([401, 429].contains(&status), "{status}");
    let (status, _) = request_bootstrap(lbs, ED, Some("0000"));
    assert!([401, 429].contains(&status), "{status}");
    assert_eq!(
        inventory(),
        before,
        "a stranger's request changed the inventory"
    );
    // The device still holds sessions with its gateway.
    assert_success(
        &session_once(&config, "gw-l"),
        "the device's session after the strangers",
    );
}

#[test]
fn finding_9_a_gateway_cannot_claim_a_device_by_saying_it_bootstrapped_it_server_assisted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let victim = "IMEI:350000000000905";
    let enrollment = server.enroll(victim, "md5");
    let rogue = registered_gateway(&server, "gw-rogue");
    let claim = serde_json::json!({ "dev_id": victim, "origin": "server-assisted" });
    session_with_alerts(
        dir.path(),
        &rogue,
        vec![gateway_alert(
            alert_type::DEVICE_ATTACH,
            "./GwMO/DeviceInventory/x",
            claim.to_string(),
        )],
    );
    let (_, record) = server.api("GET", &format!("/api/devices/{victim}"), None);
    assert_eq!(record["gateway"]["origin"], "local-bootstrap", "{record}");
    assert_success(
        &device_once(&device_config(dir.path(), &enrollment, "xml", "")),
        "session",
    );
    let (_, record) = server.api("GET", &format!("/api/devices/{victim}"), None);
    assert_eq!(record["gateway"], Value::Null, "{record}");
    let (_, events) = server.api(
        "GET",
        &format!("/api/events?kind=attach-refused&device={victim}"),
        None,
    );
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
}
