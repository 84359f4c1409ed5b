//! The fleet as a whole, against a running server: devices enrolled from CSV, found
//! by what they reported (DevInfo, a firmware version read by a Get), by when they
//! were last seen and by tag, with totals; tags set in bulk; a filtered export as CSV.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::json;

fn found(server: &ServerProcess, query: &str) -> (Vec<String>, u64) {
    let (status, page) = server.api("GET", &format!("/api/devices?{query}"), None);
    assert_eq!(status, 200, "{query}: {page}");
    let ids = page["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dev_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["total"].as_u64().unwrap())
}

#[test]
fn devices_enrolled_from_csv_are_found_tagged_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let document = "dev_id,auth,tags\r\n\
        IMEI:350000000000921,md5,pilot eu\r\n\
        IMEI:350000000000922,,pilot\r\n\
        IMEI:350000000000923,hmac,\r\n\
        IMEI:350000000000921,md5,\r\n\
        IMEI:350000000000924,rot13,\r\n\
        IMEI:350000000000925,md5,bad,tag\r\n\
        \"IMEI:360000000000926\",basic,\r\n";
    let (status, report) = server.enroll_csv(document);
    assert_eq!(status, 200, "{report}");
    let enrolled: Vec<&str> = report["enrolled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["dev_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        enrolled,
        [
            "IMEI:350000000000921",
            "IMEI:350000000000922",
            "IMEI:350000000000923",
            "IMEI:360000000000926"
        ]
    );
    let refused: Vec<(i64, &str)> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["dev_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            (5, "IMEI:350000000000921"),
            (6, "IMEI:350000000000924"),
            (7, "IMEI:350000000000925")
        ]
    );
    assert!(
        report["refused"][0]["error"]
            .as_str()
            .unwrap()
            .contains("already enrolled"),
        "{report}"
    );
    assert_eq!(report["enrolled"][2]["auth"], "hmac");
    for (bad, expected) in [
        ("", 400),
        ("colour\r\nred\r\n", 400),
        ("auth\r\nmd5\r\n", 400),
        ("dev_id\r\n\"unclosed\r\n", 400),
    ] {
        assert_eq!(server.enroll_csv(bad).0, expected, "{bad:?}");
    }
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/enrollments",
        Some(TOKEN),
        "application/json",
        b"[]",
    );
    assert_eq!(status, 415);

    // Two of them hold a session; one is asked for its firmware version.
    let device = |dev_id: &str| {
        report["enrolled"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["dev_id"] == dev_id)
            .unwrap()
            .clone()
    };
    let first = device("IMEI:350000000000921");
    let asked = server.queue(
        "IMEI:350000000000921",
        r#"{"op":"Get","target":"./DevDetail/FwV"}"#,
    );
    let first_dir = dir.path().join("first");
    std::fs::create_dir_all(&first_dir).unwrap();
    assert_success(
        &device_once(&device_config(&first_dir, &first, "xml", "")),
        "first session",
    );
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    assert_success(
        &device_once(&device_config(
            &second_dir,
            &device("IMEI:350000000000923"),
            "wbxml",
            "",
        )),
        "second session",
    );
    let outcome = server.command(asked);
    let firmware = outcome["outcome"]["results"][0]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    let man = {
        let (_, record) = server.api("GET", "/api/devices/IMEI:350000000000921", None);
        assert_eq!(
            record["devdetail"]["./DevDetail/FwV"],
            firmware.as_str(),
            "{record}"
        );
        assert_eq!(record["tags"], json!(["eu", "pilot"]), "{record}");
        record["devinfo"]["./DevInfo/Man"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    assert_eq!(found(&server, "").1, 4);
    assert_eq!(
        found(&server, "search=IMEI:35&limit=1"),
        (vec!["IMEI:350000000000921".into()], 3),
        "a page of one, the total of all"
    );
    assert_eq!(
        found(&server, &format!("fwv={firmware}")).0,
        ["IMEI:350000000000921"]
    );
    assert_eq!(found(&server, &format!("man={man}")).1, 2);
    assert_eq!(
        found(&server, "seen_within=3600").0,
        ["IMEI:350000000000921", "IMEI:350000000000923"]
    );
    assert_eq!(
        found(&server, "unseen_for=3600").0,
        ["IMEI:350000000000922", "IMEI:360000000000926"]
    );
    assert_eq!(
        found(&server, "tag=pilot").0,
        ["IMEI:350000000000921", "IMEI:350000000000922"]
    );
    assert_eq!(
        server.api("GET", "/api/devices?colour=red", None).0,
        400,
        "an unknown filter is refused, not ignored"
    );

    // Tags in bulk: by filter, then by name.
    let change =
        json!({ "add": ["wave-1"], "filter": { "search": "IMEI:35", "seen_within": 3600 } });
    let (status, changed) = server.api("POST", "/api/tags", Some(&change.to_string()));
    assert_eq!(
        (status, changed["matched"].as_u64()),
        (200, Some(2)),
        "{changed}"
    );
    let change = json!({ "remove": ["pilot"], "devices": ["IMEI:350000000000922", "IMEI:0"] });
    assert_eq!(
        server.api("POST", "/api/tags", Some(&change.to_string())).1["matched"],
        1
    );
    for bad in [
        json!({ "add": ["a b"], "devices": ["IMEI:1"] }),
        json!({ "add": ["x"] }),
        json!({ "devices": ["IMEI:1"] }),
        json!({ "add": ["x"], "filter": { "limit": 5 } }),
    ] {
        assert_eq!(
            server.api("POST", "/api/tags", Some(&bad.to_string())).0,
            400,
            "{bad}"
        );
    }
    let (_, tags) = server.api("GET", "/api/tags", None);
    assert_eq!(
        tags["tags"],
        json!([
            { "tag": "eu", "devices": 1 }, { "tag": "pilot", "devices": 1 }, { "tag": "wave-1", "devices": 2 },
        ])
    );

    // The export has every matching device, whatever the page size.
    let (status, csv) = server.api("GET", "/api/devices?format=csv&tag=wave-1", None);
    assert_eq!(status, 200);
    let csv = csv.as_str().unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "dev_id,man,mod,fwv,auth,encoding,sessions,created_at,last_session_at,notify_url,tags"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with(&format!("IMEI:350000000000921,{man},")),
        "{csv}"
    );
    assert!(
        lines[1].contains(&format!(",{firmware},md5,xml,1,"))
            && lines[1].ends_with(",eu pilot wave-1"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("IMEI:350000000000923,") && lines[2].contains(",hmac,wbxml,1,"),
        "{csv}"
    );
    assert_eq!(server.api("GET", "/api/devices?format=pdf", None).0, 400);
}
