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
    let stream = TcpStream::connect(addr).unwrap();
    let (status, text) = exchange(
        stream,
        addr,
        method,
        path,
        Some(TOKEN),
        "application/json",
        body.unwrap_or("").as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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

/// What the client printed: it shows each server message it got ("Reply from ...").
fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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
        let output = std::process::Command::new(&client)
            .args(encoding)
            .args(["-s", "funambol"])
            .output()
            .unwrap();
        let said = printed(&output);
        let replies = said.matches("Reply from").count();
        eprintln!(
            "testdmclient {encoding:?}: exit {}, {replies} server messages",
            output.status
        );
        assert!(output.status.success(), "{said}");
        for ((spec, expected), id) in COMMANDS.iter().zip(&ids) {
            let (_, command) = plain_api(addr, "GET", &format!("/api/commands/{id}"), None);
            assert_eq!(command["state"], "done", "{spec}: {command}");
            assert_eq!(command["status"], *expected, "{spec}: {command}");
        }
        let (_, read) = plain_api(addr, "GET", &format!("/api/commands/{}", ids[4]), None);
        assert_eq!(read["outcome"]["results"][0]["data"], "2", "{read}");
        // A second session: nothing comes back to run again.
        let again = std::process::Command::new(&client)
            .args(encoding)
            .args(["-s", "funambol"])
            .output()
            .unwrap();
        // A session with nothing to run is one server message: package 2, Final.
        let again = printed(&again);
        assert_eq!(
            again.matches("Reply from").count(),
            1,
            "a command was sent again: {again}"
        );
    }
}
