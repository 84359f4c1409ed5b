//! The admin REST API against a running server: its OpenAPI description matches the
//! routes that exist, listings page, and refused requests (no token, wrong token,
//! unknown device, malformed body) get a clear 4xx and change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::Value;

/// Every `/api/...` route the server's router declares (read from its source, so a
/// route added without documentation fails here).
fn declared_routes() -> Vec<String> {
    let source = include_str!("../../server/src/http.rs");
    source
        .split('"')
        .filter(|piece| piece.starts_with("/api/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_openapi_description_documents_every_route_and_only_routes_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let (status, text) = http(server.addr, "GET", "/api/openapi.json", None, "", b"");
    assert_eq!(status, 200, "served without a token");
    let spec: Value = serde_json::from_str(&text).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();

    for route in declared_routes() {
        assert!(paths.contains_key(&route), "{route} is not documented");
    }
    assert_every_operation_needs_the_token(server.addr, &spec);
}

/// Every operation of the OpenAPI description `spec`, called at `addr` without a
/// token and with a wrong one, is refused with 401 (the description itself is public).
fn assert_every_operation_needs_the_token(addr: std::net::SocketAddr, spec: &Value) {
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path
                .replace("{dev_id}", "IMEI:1")
                .replace("{gateway_id}", "gw")
                .replace("{id}", "1");
            for token in [None, Some("wrong")] {
                let (status, body) = http(
                    addr,
                    &method.to_uppercase(),
                    &concrete,
                    token,
                    "application/json",
                    b"{}",
                );
                let expected = if path == "/api/openapi.json" {
                    200
                } else {
                    401
                };
                assert_eq!(status, expected, "{method} {path} ({token:?}): {body}");
            }
        }
    }
}

/// A gateway's own admin API (its end devices, their commands) is as closed as the
/// DM Server's: every operation wants the gateway's token, and its end devices
/// cannot be read or commanded without it.
#[test]
fn a_gateways_admin_api_refuses_everyone_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let gw = GatewayProcess::start(dir.path(), &server, "gw-a", "");
    let (status, text) = http(gw.addr, "GET", "/api/openapi.json", None, "", b"");
    assert_eq!(status, 200);
    let spec: Value = serde_json::from_str(&text).unwrap();
    assert_every_operation_needs_the_token(gw.addr, &spec);
    // With its token, the same API answers: the refusals above were the token's doing.
    let (status, body) = gw.api("GET", "/api/devices", None);
    assert_eq!(status, 200, "{body}");
}

/// What a refused request must leave as it was.
fn snapshot(server: &ServerProcess) -> Value {
    let (_, devices) = server.api("GET", "/api/devices", None);
    let (_, gateways) = server.api("GET", "/api/gateways", None);
    let (_, device) = server.api("GET", "/api/devices/IMEI:350000000000301", None);
    serde_json::json!([devices, gateways, device["commands"]])
}

#[test]
fn refused_requests_get_a_clear_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    server.enroll("IMEI:350000000000301", "md5");
    let before = snapshot(&server);

    let device = "/api/devices/IMEI:350000000000301";
    let queue = format!("{device}/commands");
    let nested_atomic = (0..60).fold(
        r#"{"op":"Add","target":"./A","data":"1"}"#.to_owned(),
        |inner, _| format!(r#"{{"op":"Atomic","commands":[{inner}]}}"#),
    );
    let get = br#"{"op":"Get","target":"./DevInfo/Man"}"#;
    let mut refused: Vec<(&str, String, u16, String)> = Vec::new();
    let with_token_typed = |method: &str, path: &str, content_type: &str, body: &[u8]| {
        http(server.addr, method, path, Some(TOKEN), content_type, body)
    };
    let with_token = |method: &str, path: &str, body: &[u8]| {
        with_token_typed(method, path, "application/json", body)
    };
    // No token, a wrong token.
    for token in [None, Some("wrong")] {
        for (method, path, body) in [
            ("GET", "/api/devices", &b""[..]),
            ("POST", "/api/devices", br#"{"dev_id":"IMEI:9"}"#),
            ("POST", queue.as_str(), get),
            ("POST", "/api/gateways", br#"{}"#),
        ] {
            let (status, text) = http(server.addr, method, path, token, "application/json", body);
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            refused.push((method, path.to_owned(), status, text));
        }
    }
    // Unknown device, gateway, command.
    for (method, path, body) in [
        ("GET", "/api/devices/IMEI:none", &b""[..]),
        ("POST", "/api/devices/IMEI:none/commands", get),
        ("POST", "/api/devices/IMEI:none/notify", b""),
        ("POST", "/api/devices/IMEI:none/tree", b""),
        ("GET", "/api/devices/IMEI:none/accounts", b""),
        (
            "POST",
            "/api/devices/IMEI:none/validate",
            br#"{"gateway_id":"gw"}"#,
        ),
        (
            "POST",
            &format!("{device}/validate"),
            br#"{"gateway_id":"gw-none"}"#,
        ),
        ("GET", "/api/commands/999", b""),
        ("GET", "/api/fanouts/999", b""),
    ] {
        let (status, text) = with_token(method, path, body);
        assert_eq!(status, 404, "{method} {path}: {text}");
        refused.push((method, path.to_owned(), status, text));
    }
    // Malformed bodies and parameters.
    for (method, path, body) in [
        ("POST", "/api/devices", &b"{not json"[..]),
        (
            "POST",
            "/api/devices",
            br#"{"dev_id":"IMEI:9","colour":"red"}"#,
        ),
        (
            "POST",
            "/api/devices",
            br#"{"dev_id":"IMEI:9","auth":"rot13"}"#,
        ),
        ("POST", queue.as_str(), br#"{"op":"Launch","target":"./A"}"#),
        (
            "POST",
            queue.as_str(),
            br#"{"op":"Get","target":"/etc/passwd"}"#,
        ),
        ("POST", queue.as_str(), br#"{"op":"Atomic","commands":[]}"#),
        // Issue 14, finding 11: nested deeper than any device decodes.
        ("POST", queue.as_str(), nested_atomic.as_bytes()),
        ("POST", &format!("{device}/auth"), br#"{"auth":"none"}"#),
        ("POST", "/api/gateways", br#"{"gateway_id":"gw"}"#),
        ("GET", "/api/devices?limit=many", b""),
        ("GET", "/api/events?after=yesterday", b""),
    ] {
        let (status, text) = with_token(method, path, body);
        assert!(
            (400..500).contains(&status) && status != 404,
            "{method} {path} {}: {status} {text}",
            String::from_utf8_lossy(body)
        );
        refused.push((method, path.to_owned(), status, text));
    }
    // A body that is not JSON at all.
    let (status, text) = with_token_typed(
        "POST",
        "/api/devices",
        "text/plain",
        br#"{"dev_id":"IMEI:9"}"#,
    );
    assert_eq!(status, 415, "{text}");
    refused.push(("POST", "/api/devices".to_owned(), status, text));
    // Each refusal says why, in the one shape: {"error": "..."}, the framework's own
    // refusals (malformed JSON, unknown fields, a bad query, a wrong type) included,
    // with a status its operation documents.
    for (method, path, status, text) in &refused {
        let body = serde_json::from_str::<Value>(text).unwrap_or(Value::String(text.clone()));
        openapi::assert_documented(method, path, *status, &body);
        let reason = body["error"].as_str().map(str::to_owned);
        assert!(
            reason.is_some_and(|r| !r.trim().is_empty()),
            "{status} not as {{\"error\": ...}}: {text}"
        );
    }
    // A refused token is told which scheme to use.
    let stream = connect_tls(server.addr);
    let (status, head, _) = exchange(stream, server.addr, "GET", "/api/devices", None, "", b"");
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"gwmo admin api\""),
        "{head}"
    );
    assert_eq!(
        snapshot(&server),
        before,
        "a refused request changed the store"
    );
}

#[test]
fn listings_page_through_every_device_and_gateway_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    for i in 0..5 {
        server.enroll(&format!("IMEI:35000000000040{i}"), "md5");
    }
    for g in 0..3 {
        let body = format!(
            r#"{{"gateway_id":"gw-{g}","dev_id":"IMEI:35000000000040{g}","dm_url":"https://127.0.0.1:9/dm","server_assisted":true}}"#
        );
        assert_eq!(server.api("POST", "/api/gateways", Some(&body)).0, 201);
    }
    for (listing, key) in [("devices", "dev_id"), ("gateways", "gateway_id")] {
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let (status, page) = server.api(
                "GET",
                &format!("/api/{listing}?limit=2&after={after}"),
                None,
            );
            assert_eq!(status, 200, "{page}");
            let expected = if listing == "devices" { 5 } else { 3 };
            assert_eq!(page["total"], expected, "every page says how many in all");
            let rows = page[listing].as_array().unwrap();
            assert!(rows.len() <= 2);
            seen.extend(rows.iter().map(|r| r[key].as_str().unwrap().to_owned()));
            match page["next"].as_str() {
                Some(next) => after = next.to_owned(),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "{listing}: in order, each once");
        assert_eq!(seen.len(), if listing == "devices" { 5 } else { 3 });
    }
    // Any listing as CSV: every page of it, whatever the page size.
    let (status, csv) = server.api("GET", "/api/gateways?format=csv&limit=1", None);
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.as_str().unwrap().lines().collect();
    assert_eq!(
        lines[0],
        "dev_id,devices,dm_url,gateway_id,last_session_at,server_assisted"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[3].starts_with("IMEI:350000000000402,0,https://127.0.0.1:9/dm,gw-2,,true"),
        "{csv}"
    );
    let (status, csv) = server.api("GET", "/api/audit?format=csv", None);
    assert_eq!(status, 200);
    assert_eq!(
        csv.as_str().unwrap().lines().count(),
        1 + 5 + 3,
        "5 enrollments, 3 registrations"
    );
    assert_eq!(
        server
            .api("GET", "/api/devices/IMEI:none/commands?format=csv", None)
            .0,
        404
    );
    let (status, none) = server.api("GET", "/api/associations?gateway=gw-1", None);
    assert_eq!(status, 200);
    assert_eq!(none["associations"], serde_json::json!([]));
}

/// The checker every admin API answer of the tests goes through fails on what the
/// description does not allow: a test that passes through it proves something.
#[test]
fn the_description_checker_refuses_answers_the_description_does_not_allow() {
    use serde_json::json;
    let spec = openapi::description();
    let device = json!({
        "dev_id": "IMEI:1", "auth": "md5", "devinfo": {"./DevInfo/Man": "gwmo"},
        "devdetail": {}, "tags": ["pilot"], "gateway": null,
        "notify_url": null, "encoding": "wbxml", "sessions": 2, "created_at": 5,
        "last_session_at": null,
    });
    let page = |device: Value| json!({ "devices": [device], "next": null, "total": 1 });
    assert_eq!(
        openapi::check(
            spec,
            "GET",
            "/api/devices?limit=5",
            200,
            &page(device.clone())
        ),
        Ok(())
    );

    let mut wrong = Vec::new();
    let mut changed = |edit: &dyn Fn(&mut Value)| {
        let mut body = device.clone();
        edit(&mut body);
        wrong.push(openapi::check(
            spec,
            "GET",
            "/api/devices",
            200,
            &page(body),
        ));
    };
    changed(&|d| {
        d.as_object_mut()
            .unwrap()
            .remove("sessions")
            .map(drop)
            .unwrap()
    });
    changed(&|d| d["colour"] = json!("red"));
    changed(&|d| d["sessions"] = json!("two"));
    changed(&|d| d["auth"] = json!("rot13"));
    changed(&|d| d["dev_id"] = Value::Null);
    changed(&|d| d["devinfo"]["./DevInfo/Man"] = json!(7));
    changed(&|d| d["tags"] = json!("pilot"));
    for outcome in &wrong {
        assert!(outcome.is_err(), "{outcome:?}");
    }
    let refusal = json!({ "error": "no" });
    assert!(openapi::check(spec, "GET", "/api/devices", 418, &refusal).is_err());
    assert!(openapi::check(spec, "GET", "/api/devices", 401, &json!("plain text")).is_err());
    assert!(openapi::check(spec, "PATCH", "/api/devices", 200, &refusal).is_err());
    assert!(openapi::check(spec, "GET", "/api/nothing", 200, &refusal).is_err());
    assert_eq!(
        openapi::check(spec, "GET", "/api/devices", 401, &refusal),
        Ok(())
    );
    // A command is exactly one of its forms.
    let command = |spec_json: Value| {
        json!({ "id": 1, "dev_id": "IMEI:1", "state": "queued", "spec": spec_json,
                "status": null, "outcome": null, "queued_at": 1, "sent_at": null,
                "done_at": null, "expires_at": null })
    };
    let get = json!({ "op": "Get", "target": "./A" });
    assert_eq!(
        openapi::check(spec, "GET", "/api/commands/1", 200, &command(get)),
        Ok(())
    );
    let nulls = json!({ "op": "Add", "target": "./A", "format": null });
    assert!(openapi::check(spec, "GET", "/api/commands/1", 200, &command(nulls)).is_err());
    let empty = json!({ "op": "Atomic", "commands": [] });
    assert!(openapi::check(spec, "GET", "/api/commands/1", 200, &command(empty)).is_err());
    // No body where none is documented.
    assert_eq!(
        openapi::check(spec, "DELETE", "/api/operators/x", 204, &json!("")),
        Ok(())
    );
    assert!(openapi::check(spec, "DELETE", "/api/operators/x", 204, &refusal).is_err());
}
