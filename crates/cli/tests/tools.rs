//! The `gwmo` tools: `msg decode|encode` on large captures and bad input, and
//! `--print-config` for every role.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use common::gwmo;
use gwmo_proto::{Body, Command, Data, Encoding, Header, Item, ItemCommand, Location, Message};

fn large_message(commands: usize) -> Message {
    Message {
        header: Header {
            ver_dtd: "1.2".into(),
            ver_proto: "DM/1.2".into(),
            session_id: "1".into(),
            msg_id: 1,
            target: Location::new("IMEI:1"),
            source: Location::new("http://dms/dm"),
            resp_uri: None,
            cred: None,
            meta: None,
        },
        body: Body {
            commands: (0..commands)
                .map(|i| {
                    Command::Replace(ItemCommand {
                        cmd_id: i as u32 + 1,
                        meta: None,
                        items: vec![Item {
                            target: Some(Location::new(format!("./Vendor/Leaf{i}"))),
                            data: Some(Data::Text(format!(
                                "value {i} & <more> {}",
                                "x".repeat(200)
                            ))),
                            ..Item::default()
                        }],
                    })
                })
                .collect(),
            is_final: true,
        },
    }
}

#[test]
fn msg_encodes_and_decodes_a_capture_of_many_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let message = large_message(20_000);
    let xml_path = dir.path().join("capture.xml");
    std::fs::write(&xml_path, Encoding::Xml.encode(&message).unwrap()).unwrap();
    assert!(std::fs::metadata(&xml_path).unwrap().len() > 5_000_000);

    let wbxml_path = dir.path().join("capture.wbxml");
    let encoded = gwmo()
        .args(["msg", "encode", "--wbxml"])
        .arg(&xml_path)
        .arg("-o")
        .arg(&wbxml_path)
        .output()
        .unwrap();
    common::assert_success(&encoded, "msg encode");
    let wbxml = std::fs::read(&wbxml_path).unwrap();
    assert_eq!(Encoding::Wbxml.decode(&wbxml).unwrap(), message);

    let decoded = gwmo()
        .args(["msg", "decode"])
        .arg(&wbxml_path)
        .output()
        .unwrap();
    common::assert_success(&decoded, "msg decode");
    assert_eq!(
        Encoding::Xml.decode(&decoded.stdout).unwrap(),
        message,
        "the indented XML reads back the same"
    );

    let json = gwmo()
        .args(["msg", "decode", "--json"])
        .arg(&wbxml_path)
        .output()
        .unwrap();
    common::assert_success(&json, "msg decode --json");
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["body"]["commands"].as_array().unwrap().len(), 20_000);
    assert_eq!(
        value["body"]["commands"][7]["Replace"]["items"][0]["target"]["uri"],
        "./Vendor/Leaf7"
    );
}

/// `-` reads standard input, and encode writes WBXML without being told to.
#[test]
fn msg_reads_standard_input_and_encodes_to_wbxml_by_default() {
    use std::io::Write;
    let xml = Encoding::Xml.encode(&large_message(1)).unwrap();
    let pipe = |args: &[&str], input: &[u8]| {
        let mut child = gwmo()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let encoded = pipe(&["msg", "encode", "-"], &xml);
    common::assert_success(&encoded, "msg encode -");
    assert_eq!(encoded.stdout[0], 0x02, "WBXML 1.2");
    let decoded = pipe(&["msg", "decode", "--json", "-"], &encoded.stdout);
    common::assert_success(&decoded, "msg decode -");
    let json: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert!(json["header"]["session_id"].is_string(), "{json}");
    let refused = pipe(&["msg", "decode", "-"], b"not a message");
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .starts_with("gwmo: standard input is not a valid DM message")
    );
}

/// Logs written to a file carry no terminal colours; `--log-format json` writes one
/// JSON object a line, which a log shipper reads line by line.
#[test]
fn logs_are_plain_in_a_file_and_json_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::ServerProcess::start(&dir.path().join("text"));
    text.enroll("IMEI:350000000000951", "md5");
    let database = dir.path().join("json/server.db").display().to_string();
    let json = common::ServerProcess::start_with_env(
        &dir.path().join("json"),
        &database,
        "",
        &[],
        &["--log-format", "json"],
    );
    let (status, _) = common::api(json.addr, "GET", "/api/devices", Some("{}"));
    assert_eq!(status, 200);
    let (status, _) = common::api_as(json.addr, "wrong-token", "GET", "/api/devices", None);
    assert_eq!(status, 401, "a refusal is logged");
    let plain = common::poll(
        "the text server's log",
        std::time::Duration::from_secs(10),
        || {
            let log = text.daemon.log_text();
            log.contains("DM server listening").then_some(log)
        },
    );
    assert!(
        !plain.contains('\u{1b}'),
        "ANSI escapes in a log file: {plain:?}"
    );
    let lines = common::poll(
        "the refusal in the JSON log",
        std::time::Duration::from_secs(10),
        || {
            let log = json.daemon.log_text();
            log.contains("admin API request refused").then_some(log)
        },
    );
    for line in lines.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not one JSON object a line ({error}): {line}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{entry}"
        );
        assert!(entry["fields"]["message"].is_string(), "{entry}");
    }
    assert!(
        lines.lines().any(|l| l.contains("\"status\":401")),
        "{lines}"
    );
}

/// A runtime error says its cause once, however many layers carry it.
#[test]
fn a_runtime_error_is_printed_once_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "admin_token = \"0123456789abcdefXYZ\"\n[tls]\ncertificate = \"/nonexistent/server.pem\"\nprivate_key = \"/nonexistent/key.pem\"\n",
    )
    .unwrap();
    let output = gwmo()
        .arg("server")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr
        .lines()
        .filter(|l| l.starts_with("gwmo: "))
        .collect::<Vec<_>>();
    assert_eq!(said.len(), 1, "{stderr}");
    assert_eq!(
        said[0].matches("/nonexistent/server.pem").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn msg_refuses_bad_input_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.wbxml");
    let bytes = Encoding::Wbxml.encode(&large_message(3)).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.xml");
    std::fs::write(&garbage, "<SyncML><SyncHdr>").unwrap();
    for (path, expected) in [
        (&truncated, "malformed WBXML message"),
        (&garbage, "malformed XML message"),
    ] {
        let output = gwmo().args(["msg", "decode"]).arg(path).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("gwmo: ") && stderr.contains(expected),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let stderr = String::from_utf8_lossy(
        &gwmo()
            .args(["msg", "decode"])
            .arg(&truncated)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(
        !stderr.contains("XML near"),
        "WBXML is not called XML: {stderr}"
    );
    let missing = gwmo()
        .args(["msg", "decode", "/nonexistent/capture"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/capture"));
}

#[test]
fn every_role_prints_its_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "server_id = \"dms-7\"\n").unwrap();
    let output = gwmo()
        .args(["server", "--print-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    common::assert_success(&output, "server --print-config");
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert_eq!(printed["server_id"].as_str(), Some("dms-7"));
    assert_eq!(
        printed["listen"].as_str(),
        Some("127.0.0.1:8080"),
        "defaults are printed too"
    );

    let output = gwmo()
        .args(["device", "--print-config", "--state", "/tmp/x"])
        .output()
        .unwrap();
    common::assert_success(&output, "device --print-config");
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert_eq!(printed["state_dir"].as_str(), Some("/tmp/x"));

    std::fs::write(&config, "lisen = \"x\"\n").unwrap();
    let output = gwmo()
        .args(["server", "--print-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));
}

#[test]
fn the_demo_verifies_every_step() {
    let output = gwmo().arg("demo").output().unwrap();
    common::assert_success(&output, "gwmo demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    let (verified, total) = summary
        .split_once(" of ")
        .and_then(|(v, rest)| {
            Some((
                v.parse::<u32>().ok()?,
                rest.split_whitespace().next()?.parse::<u32>().ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    assert_eq!(verified, total, "{stdout}");
    assert!(total >= 8, "{stdout}");
    for step in ["figures x and y", "figure z", "a lapse", "firmware"] {
        assert!(stdout.contains(step), "no {step:?} step: {stdout}");
    }
    assert!(
        stdout.contains("/dashboard#token="),
        "no dashboard URL: {stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

#[test]
fn the_demo_keeps_its_server_and_dashboard_up_with_keep() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = gwmo();
    command.args(["demo", "--keep"]);
    let log = dir.path().join("demo.out");
    let file = std::fs::File::create(&log).unwrap();
    command.stdout(file).stderr(std::process::Stdio::null());
    let mut demo = command.spawn().unwrap();
    let url = common::poll(
        "the demo to finish its steps and keep running",
        std::time::Duration::from_secs(60),
        || {
            assert!(demo.try_wait().unwrap().is_none(), "the demo exited");
            let text = std::fs::read_to_string(&log).ok()?;
            let line = text.lines().find(|l| l.contains("keeps running"))?;
            let start = line.find("https://")?;
            line[start..].split_whitespace().next().map(str::to_owned)
        },
    );
    // The demo's own development CA, named on its first line.
    let text = std::fs::read_to_string(&log).unwrap();
    let ca = text
        .split_whitespace()
        .find(|word| word.ends_with("ca.pem)"))
        .map(|word| word.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("the demo names no CA: {text}"));
    let address = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap();
    let address: std::net::SocketAddr = address.parse().unwrap();
    let (status, _, page) = common::exchange(
        common::connect_tls_trusting(address, std::path::Path::new(ca)),
        address,
        "GET",
        "/dashboard",
        None,
        "text/html",
        b"",
    );
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(status, 200);
    assert!(page.contains("<title>gwmo dashboard</title>"), "{page}");
    assert!(url.contains("#token="), "{url}");
}

/// docs/CONFIG.md is what `gwmo <role> --print-config --all` prints for every role:
/// `GWMO_BLESS=1 cargo test -p gwmo --test tools config_reference` writes it again.
#[test]
fn the_config_reference_is_what_print_config_all_prints() {
    let mut expected = String::from(
        "# Configuration reference\n\n\
         Every key of every role, with what it does and its default, as\n\
         `gwmo <role> --print-config --all` prints it (keys left unset are commented out).\n\
         Relative paths are taken from the configuration file's directory; `GWMO_<KEY>`\n\
         (`GWMO_TLS__CA` for a key of a table) overrides a key from the environment, and\n\
         `GWMO_<KEY>_FILE` reads a secret from a file; `log` (or `GWMO_LOG`) sets the log\n\
         filter, read again on SIGHUP. This file is made from the code: a test fails when\n\
         it is stale.\n",
    );
    for (role, what) in [
        ("server", "The DM Server (`server.toml`)."),
        ("gateway", "A DM Gateway (`gateway.toml`)."),
        ("device", "An End Device (`device.toml`)."),
        (
            "bootstrap",
            "A standalone Local DM Bootstrap Server (`bootstrap.toml`).",
        ),
    ] {
        let output = std::process::Command::new(common::gwmo_path())
            .env_clear()
            .args([role, "--print-config", "--all"])
            .output()
            .unwrap();
        common::assert_success(&output, role);
        let printed = String::from_utf8(output.stdout).unwrap();
        expected.push_str(&format!(
            "\n## `gwmo {role}`\n\n{what}\n\n```toml\n{printed}```\n"
        ));
        // What it prints is a configuration the role takes.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("role.toml");
        std::fs::write(&config, &printed).unwrap();
        let again = std::process::Command::new(common::gwmo_path())
            .env_clear()
            .args([role, "--print-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        common::assert_success(&again, &format!("{role} reading its reference back"));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md");
    if std::env::var_os("GWMO_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == expected,
        "docs/CONFIG.md is stale: GWMO_BLESS=1 cargo test -p gwmo --test tools config_reference"
    );
}
