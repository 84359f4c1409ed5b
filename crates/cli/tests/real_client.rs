//! `gwmo server` against an independent OMA DM 1.2 client: the test client of
//! intel/libdmclient (C, on OMA's SyncML reference toolkit), built from its public
//! source outside this repository. CI cannot download it, so this runs only when
//! `GWMO_DMCLIENT` names the built `testdmclient`; it says so plainly when it does not.
//!
//! The client's account is compiled into its DMAcc test plugin: ServerID `funambol`,
//! Basic toward the server (`funambol`/`funambol`), MD5 expected from the server
//! (secret `srvpwd`), and the server's URL, which must be patched to a loopback
//! address before building and given here as `GWMO_DMCLIENT_URL` (default
//! `http://127.0.0.1:18080/dm`). Its DevId is `DMCtest`; its plugins expose a writable
//! `./Vendor/memory` and an executable `./test/execute`. How to build it:
//! docs/REAL-CLIENTS.md.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

const DEV_ID: &str = "DMCtest";

/// One admin API call over plain HTTP (the client speaks plain HTTP here).
fn plain_api(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    api_on(TcpStream::connect(addr).unwrap(), addr, method, path, body)
}

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
fn session(client: &std::ffi::OsStr, encoding: Option<&str>) -> String {
    let output = std::process::Command::new(client)
        .args(encoding)
        .args(["-s", "funambol"])
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

#[test]
fn libdmclient_holds_full_sessions_with_gwmo_in_xml_and_wbxml() {
    let Some(client) = std::env::var_os("GWMO_DMCLIENT") else {
        eprintln!(
            "NOT RUN: set GWMO_DMCLIENT to a testdmclient built from intel/libdmclient (docs/REAL-CLIENTS.md)"
        );
        return;
    };
    let url =
        std::env::var("GWMO_DMCLIENT_URL").unwrap_or_else(|_| "http://127.0.0.1:18080/dm".into());
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/dm")
        .parse()
        .expect("GWMO_DMCLIENT_URL is http://<ip>:<port>/dm");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nserver_id = \"funambol\"\ndatabase = {:?}\nadmin_token = \"{TOKEN}\"\n[tls]\nplain_http = true\n",
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
        r#"{{"dev_id":"{DEV_ID}","auth":"basic","client_name":"funambol","client_secret":"funambol","server_secret":"srvpwd"}}"#
    );
    assert_eq!(
        plain_api(addr, "POST", "/api/devices", Some(&enroll)).0,
        201
    );

    for encoding in [None, Some("-w")] {
        let ids: Vec<i64> = COMMANDS
            .iter()
            .map(|(spec, _)| {
                let (status, body) = plain_api(
                    addr,
                    "POST",
                    &format!("/api/devices/{DEV_ID}/commands"),
                    Some(spec),
                );
                assert_eq!(status, 201, "{spec}: {body}");
                body["id"].as_i64().unwrap()
            })
            .collect();
        session(&client, encoding);
        for ((spec, expected), id) in COMMANDS.iter().zip(&ids) {
            let (_, command) = plain_api(addr, "GET", &format!("/api/commands/{id}"), None);
            assert_eq!(command["state"], "done", "{spec}: {command}");
            assert_eq!(command["status"], *expected, "{spec}: {command}");
        }
        let (_, read) = plain_api(addr, "GET", &format!("/api/commands/{}", ids[4]), None);
        assert_eq!(read["outcome"]["results"][0]["data"], "2", "{read}");
        // A second session carries nothing to run again: one server message, package 2.
        let again = session(&client, encoding);
        assert_eq!(
            again.matches("Reply from").count(),
            1,
            "a command was sent again: {again}"
        );
    }
}
