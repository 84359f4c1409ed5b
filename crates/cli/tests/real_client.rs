//! `gwmo server` against an independent OMA DM 1.2 client: the test client of
//! intel/libdmclient (C, on OMA's SyncML reference toolkit), built from its public
//! source outside this repository. CI cannot download it, so each variant runs only
//! when its variable names a built `testdmclient` (`GWMO_DMCLIENT`: Basic over plain
//! HTTP; `GWMO_DMCLIENT_MD5`, `GWMO_DMCLIENT_BASIC_TLS`, `GWMO_DMCLIENT_MD5_TLS`); each
//! says so plainly when it does not.
//!
//! The client's account is compiled into its DMAcc test plugin: ServerID `funambol`,
//! Basic or MD5 toward the server (`funambol`/`funambol`), MD5 expected from the server
//! (secret `srvpwd`), and the server's URL, which must be patched to a loopback
//! address before building and given here as `<variable>_URL` if it is not the
//! variant's default. Its DevId is `DMCtest`; its plugins expose a writable
//! `./Vendor/memory` and an executable `./test/execute`. How to build it:
//! docs/REAL-CLIENTS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

const DEV_ID: &str = "DMCtest";

/// The commands queued for the client, with the status each must end with.
const COMMANDS: &[(&str, u16)] = &[
    (r#"{"op":"Get","target":"./DevInfo/Mod"}"#, 200),
    (r#"{"op":"Get","target":"./DevInfo"}"#, 200),
    (
        r#"{"op":"Add","target":"./Vendor/memory/gwmo","data":"1"}"#,
        200,
    ),
    (
        r#"{"op":"Replace","target":"./Vendor/memory/gwmo","data":"2"}"#,
        200,
    ),
    (r#"{"op":"Get","target":"./Vendor/memory/gwmo"}"#, 200),
    (
        r#"{"op":"Atomic","commands":[{"op":"Add","target":"./Vendor/memory/a","data":"x"},{"op":"Add","target":"./Vendor/memory/b","data":"y"}]}"#,
        200,
    ),
    (
        r#"{"op":"Exec","target":"./test/execute","data":"ping"}"#,
        200,
    ),
    (r#"{"op":"Delete","target":"./Vendor/memory/gwmo"}"#, 200),
    // Its DevInfo grants no server Replace: refused, and said so.
    (
        r#"{"op":"Replace","target":"./DevInfo/Lang","data":"fr-FR"}"#,
        425,
    ),
];

/// Runs one session of the client (`-w`: WBXML); returns what it printed, which shows
/// each server message it got ("Reply from ...").
fn session(peer: &Peer, encoding: Option<&str>) -> String {
    let output = std::process::Command::new(&peer.client)
        .args(encoding)
        .args(["-s", "funambol"])
        .env("DMCLIENT_CA", pki().join("ca.pem"))
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "testdmclient {encoding:?}: {}, {} server messages",
        output.status,
        printed.matches("Reply from").count()
    );
    assert!(output.status.success(), "{printed}");
    printed
}

/// How a built client reaches the server.
struct Peer {
    client: std::ffi::OsString,
    /// The URL compiled into its DMAcc plugin.
    url: String,
    /// Its scheme toward the server, as enrolled.
    auth: &'static str,
}

impl Peer {
    /// The client `variable` names, or why the test does not run.
    fn from_env(
        variable: &str,
        url_variable: &str,
        default_url: &str,
        auth: &'static str,
    ) -> Option<Peer> {
        let Some(client) = std::env::var_os(variable) else {
            eprintln!(
                "NOT RUN: set {variable} to a testdmclient built from intel/libdmclient (docs/REAL-CLIENTS.md)"
            );
            return None;
        };
        let url = std::env::var(url_variable).unwrap_or_else(|_| default_url.into());
        Some(Peer { client, url, auth })
    }

    fn tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    fn addr(&self) -> SocketAddr {
        self.url
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches("/dm"))
            .and_then(|host| host.parse().ok())
            .expect("the client's URL is http(s)://<ip>:<port>/dm")
    }

    /// One admin API call, over TLS when the client uses it.
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let addr = self.addr();
        match self.tls() {
            true => api(addr, method, path, body),
            false => api_on(TcpStream::connect(addr).unwrap(), addr, method, path, body),
        }
    }
}

/// One build of the client per scheme toward the server and transport: its DMAcc
/// plugin's `toserver/AAuthType` and URL, and the test program told the CA by
/// `DMCLIENT_CA` for TLS (docs/REAL-CLIENTS.md). Each runs when its variable names it.
fn run_variant(variable: &str, default_url: &str, auth: &'static str) {
    let url_variable = format!("{variable}_URL");
    if let Some(peer) = Peer::from_env(variable, &url_variable, default_url, auth) {
        full_sessions(&peer);
    }
}

#[test]
fn libdmclient_with_basic_over_plain_http_holds_full_sessions_in_xml_and_wbxml() {
    run_variant("GWMO_DMCLIENT", "http://127.0.0.1:18080/dm", "basic");
}

#[test]
fn libdmclient_with_md5_over_tls_holds_full_sessions_in_xml_and_wbxml() {
    run_variant("GWMO_DMCLIENT_MD5_TLS", "https://127.0.0.1:18443/dm", "md5");
}

#[test]
fn libdmclient_with_md5_over_plain_http_holds_full_sessions_in_xml_and_wbxml() {
    run_variant("GWMO_DMCLIENT_MD5", "http://127.0.0.1:18081/dm", "md5");
}

#[test]
fn libdmclient_with_basic_over_tls_holds_full_sessions_in_xml_and_wbxml() {
    run_variant(
        "GWMO_DMCLIENT_BASIC_TLS",
        "https://127.0.0.1:18444/dm",
        "basic",
    );
}

/// Starts `gwmo server` where the client posts, enrolls it, and in XML and then WBXML
/// runs every command of [`COMMANDS`] in one session, then a session with nothing.
fn full_sessions(peer: &Peer) {
    let addr = peer.addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let tls = match peer.tls() {
        true => tls_table(),
        false => "[tls]\nplain_http = true\n".to_owned(),
    };
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nserver_id = \"funambol\"\ndatabase = {:?}\nadmin_token = \"{TOKEN}\"\n{tls}",
            dir.path().join("server.db")
        ),
    )
    .unwrap();
    let mut command = gwmo();
    command.arg("server").arg("--config").arg(&config);
    let mut server = Daemon::spawn(command, dir.path().join("server.log"));
    poll("the server", Duration::from_secs(30), || {
        server.assert_running();
        TcpStream::connect(addr).ok()
    });
    let enroll = format!(
        r#"{{"dev_id":"{DEV_ID}","auth":"{}","client_name":"funambol","client_secret":"funambol","server_secret":"srvpwd"}}"#,
        peer.auth
    );
    assert_eq!(peer.api("POST", "/api/devices", Some(&enroll)).0, 201);

    for encoding in [None, Some("-w")] {
        let ids: Vec<i64> = COMMANDS
            .iter()
            .map(|(spec, _)| {
                let (status, body) = peer.api(
                    "POST",
                    &format!("/api/devices/{DEV_ID}/commands"),
                    Some(spec),
                );
                assert_eq!(status, 201, "{spec}: {body}");
                body["id"].as_i64().unwrap()
            })
            .collect();
        session(peer, encoding);
        for ((spec, expected), id) in COMMANDS.iter().zip(&ids) {
            let (_, command) = peer.api("GET", &format!("/api/commands/{id}"), None);
            assert_eq!(command["state"], "done", "{spec}: {command}");
            assert_eq!(command["status"], *expected, "{spec}: {command}");
        }
        let (_, read) = peer.api("GET", &format!("/api/commands/{}", ids[4]), None);
        assert_eq!(read["outcome"]["results"][0]["data"], "2", "{read}");
        // A second session carries nothing to run again: one server message, package 2
        // (after a challenge with MD5: the client keeps no nonce between runs).
        let again = session(peer, encoding);
        let expected = if peer.auth == "md5" { 2 } else { 1 };
        assert_eq!(
            again.matches("Reply from").count(),
            expected,
            "a command was sent again: {again}"
        );
    }
}
