//! The installed Debian package (built and installed by `.ci/run`, which sets
//! `GWMO_PACKAGE_INSTALLED=1`): the server started with its unit's command line,
//! environment, user and working directory, and the configuration, token and PKI the
//! package left in /etc/gwmo; a device holds a session with it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const UNIT: &str = "/lib/systemd/system/gwmo-server.service";
const CA: &str = "/etc/gwmo/pki/ca.pem";

/// One request to the installed server, trusting the package's CA.
fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let (status, _, text) = exchange(
        connect_tls_trusting(addr, Path::new(CA)),
        addr,
        method,
        path,
        Some(token),
        "application/json",
        body.as_bytes(),
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_installed_server_runs_from_its_unit_and_holds_a_device_session() {
    if std::env::var_os("GWMO_PACKAGE_INSTALLED").is_none() {
        eprintln!(
            "NOT RUN: set GWMO_PACKAGE_INSTALLED=1 after installing the package (.ci/run does)"
        );
        return;
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    let exec = value("ExecStart").unwrap();
    let user = value("User").unwrap();
    let environment: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(str::to_owned)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "something already listens on {addr}: stop it first"
    );
    // setpriv runs the unit's command in its own process as the unit's user (no child
    // left behind when the test stops it).
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid",
            &user,
            "--regid",
            &user,
            "--init-groups",
            "--",
            "env",
        ])
        .args(&environment)
        .args(exec.split_whitespace())
        .current_dir(value("WorkingDirectory").unwrap());
    let mut server = Daemon::spawn(command, dir.path().join("server.log"));
    poll(
        "the installed server ready",
        Duration::from_secs(30),
        || {
            server.assert_running();
            let stream = std::net::TcpStream::connect(addr).ok()?;
            drop(stream);
            let (status, _) = call(addr, "GET", "/readyz", "", "");
            (status == 200).then_some(())
        },
    );

    let token = std::fs::read_to_string("/etc/gwmo/admin-token").unwrap();
    // A DevId of its own: the installed store outlives a run.
    let dev_id = format!("IMEI:35{:013}", rand::random::<u64>() % 10_000_000_000_000);
    let enroll = format!(r#"{{"dev_id":"{dev_id}"}}"#);
    let (status, enrollment) = call(addr, "POST", "/api/devices", token.trim(), &enroll);
    assert_eq!(status, 201, "{enrollment}");
    let config = dir.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "dev_id = \"{dev_id}\"\nstate_dir = {:?}\n[[accounts]]\nserver_id = {}\nserver_url = \"https://127.0.0.1:8443/dm\"\nauth = \"md5\"\nclient_secret = {}\nserver_secret = {}\n[tls]\nca = \"{CA}\"\n",
            dir.path().join("state"),
            enrollment["server_id"],
            enrollment["client_secret"],
            enrollment["server_secret"],
        ),
    )
    .unwrap();
    let session = Command::new("/usr/bin/gwmo")
        .args(["device", "--once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success(&session, "a device session with the installed server");
    let (_, device) = call(
        addr,
        "GET",
        &format!("/api/devices/{dev_id}"),
        token.trim(),
        "",
    );
    assert_eq!(device["sessions"], 1, "{device}");
    assert!(
        Path::new("/var/lib/gwmo/server.db").exists(),
        "the store where the package puts it"
    );
    server.kill();
}
