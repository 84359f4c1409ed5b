//! TLS by default: every listener of every role speaks only TLS; a role without a
//! certificate refuses to start and says how to get one; plain HTTP needs the flag and
//! is logged as a warning; a device verifies its server's certificate and fails
//! clearly when it cannot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const ED: &str = "IMEI:350000000000701";

/// What a listener answers to a plain-HTTP request.
fn plain_answer(addr: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gwmo\r\nConnection: close\r\n\r\n")
        .unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut stream).unwrap()).into_owned()
}

/// The address in a URL such as `https://127.0.0.1:1234/notify`.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not https: {url}"));
    rest.split('/').next().unwrap().parse().unwrap()
}

/// Asserts that `addr` completes a TLS handshake with the test CA's certificate and
/// gives no HTTP answer in plain text.
fn assert_tls_only(what: &str, addr: SocketAddr) {
    let mut stream = connect_tls(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: gwmo\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| panic!("{what}: no TLS handshake: {e}"));
    let answer = read_until_closed(&mut stream).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{what}: no HTTP answer over TLS"
    );
    let plain = plain_answer(addr);
    assert!(
        !plain.starts_with("HTTP/"),
        "{what} answered plain HTTP: {plain}"
    );
}

#[test]
fn every_listener_of_every_role_speaks_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (mut gw, bootstrap_url) = local_gateway(dir.path(), &server, ED, "4711");
    let enrollment = server.enroll(ED, "md5");
    let config = device_config(dir.path(), &enrollment, "xml", "listen = \"127.0.0.1:0\"\n");
    let mut device = device_daemon(&config, dir.path().join("device.log"));
    let device_notify = server.reported_notify_url(ED, &mut device);
    let gateway_notify = server.reported_notify_url("GW:gw-l", &mut gw.daemon);

    assert_tls_only("the DM server", server.addr);
    assert_tls_only("the gateway's end-device listener", gw.addr);
    assert_tls_only("the local bootstrap server", addr_of(&bootstrap_url));
    assert_tls_only("the gateway's package-0 listener", addr_of(&gateway_notify));
    assert_tls_only("the device's package-0 listener", addr_of(&device_notify));
    assert!(server.dm_url().starts_with("https://"));
}

/// A server configuration in `dir` with no `[tls]` table; the server writes the
/// address it binds to `server.addr`.
fn server_config_without_tls(dir: &Path) -> PathBuf {
    let config = dir.join("server.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = {:?}\naddress_file = {:?}\n",
        dir.join("server.db"),
        dir.join("server.addr")
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_server_without_a_certificate_refuses_to_start_and_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config_without_tls(dir.path());
    let output = gwmo()
        .arg("server")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gwmo certs"), "{stderr}");
    assert!(stderr.contains("--plain-http"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn plain_http_takes_the_flag_and_is_logged_as_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config_without_tls(dir.path());
    let mut command = gwmo();
    command
        .arg("server")
        .arg("--config")
        .arg(&config)
        .arg("--plain-http");
    let mut server = Daemon::spawn(command, dir.path().join("server.log"));
    let addr = bound_address(&mut server, &dir.path().join("server.addr"));
    let answer = plain_answer(addr);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = server.log_text();
    assert!(
        log.contains("WARN") && log.contains("plain HTTP"),
        "no warning: {log}"
    );
}

#[test]
fn a_device_that_cannot_verify_the_servers_certificate_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let enrollment = server.enroll(ED, "md5");
    // A CA that did not issue the server's certificate.
    let other = dir.path().join("other-pki");
    let output = gwmo()
        .args(["certs", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_success(&output, "gwmo certs");
    let config = device_config(dir.path(), &enrollment, "xml", "");
    let text = std::fs::read_to_string(&config).unwrap();
    let ca = format!("ca = {:?}", pki().join("ca.pem"));
    assert!(text.contains(&ca));
    std::fs::write(
        &config,
        text.replace(&ca, &format!("ca = {:?}", other.join("ca.pem"))),
    )
    .unwrap();

    let output = device_once(&config);
    assert!(
        !output.status.success(),
        "a session with an unverified server"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("certificate") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    let (_, device) = server.api("GET", &format!("/api/devices/{ED}"), None);
    assert_eq!(device["sessions"], 0, "{device}");
}

#[test]
fn a_device_refuses_a_plain_http_server_url_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut enrollment = server.enroll(ED, "md5");
    enrollment["server_url"] = format!("http://{}/dm", server.addr).into();
    let config = device_config(dir.path(), &enrollment, "xml", "");
    let output = device_once(&config);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing plain HTTP"), "{stderr}");
}
