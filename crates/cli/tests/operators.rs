//! Operator accounts and roles on the admin API, against a running server: each
//! operation refuses the roles below the one its OpenAPI description names, a refusal
//! changes nothing, and every action and refusal is in the audit log with who, what,
//! when and from where. Accounts are made through the API and with `gwmo operator`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{Value, json};

const DEVICE: &str = "IMEI:350000000000901";
const GATEWAY_DEVICE: &str = "GW:350000000000902";

/// The role an operation's description says it needs ("Needs the X role.").
fn needed_role(operation: &Value) -> &'static str {
    let text = operation["description"].as_str().unwrap_or_default();
    ["viewer", "operator", "admin"]
        .into_iter()
        .find(|role| text.contains(&format!("Needs the {role} role.")))
        .unwrap_or_else(|| panic!("no role in {operation}"))
}

const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

/// Makes an operator account through the API (as the configured admin); its token.
fn operator(server: &ServerProcess, name: &str, role: &str) -> String {
    let (status, made) = server.api(
        "POST",
        "/api/operators",
        Some(&json!({ "name": name, "role": role }).to_string()),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (made["name"].as_str(), made["role"].as_str()),
        (Some(name), Some(role))
    );
    made["token"].as_str().unwrap().to_owned()
}

/// Everything an admin API call could change.
fn snapshot(server: &ServerProcess) -> Value {
    let read = |path: &str| {
        let (status, body) = server.api("GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    json!([
        read("/api/devices"),
        read(&format!("/api/devices/{DEVICE}")),
        read(&format!("/api/devices/{DEVICE}/commands")),
        read("/api/gateways"),
        read("/api/gateways/gw-1"),
        read("/api/fanouts"),
        read("/api/associations"),
        read("/api/operators"),
    ])
}

/// The audit log, newest first (as the configured admin).
fn audit(server: &ServerProcess, query: &str) -> Vec<Value> {
    let (status, log) = server.api("GET", &format!("/api/audit?limit=1000{query}"), None);
    assert_eq!(status, 200, "{log}");
    log["entries"].as_array().unwrap().clone()
}

#[test]
fn every_operation_refuses_the_roles_below_the_one_it_documents_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    server.enroll(DEVICE, "md5");
    server.enroll(GATEWAY_DEVICE, "md5");
    let gateway = json!({
        "gateway_id": "gw-1", "dev_id": GATEWAY_DEVICE,
        "dm_url": "https://127.0.0.1:9/dm", "server_assisted": true,
    });
    assert_eq!(
        server
            .api("POST", "/api/gateways", Some(&gateway.to_string()))
            .0,
        201
    );
    let (_, queued) = server.api(
        "POST",
        &format!("/api/devices/{DEVICE}/commands?wake=false"),
        Some(r#"{"op":"Get","target":"./DevInfo/Man"}"#),
    );
    let command = queued["id"].as_i64().unwrap();
    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|role| (*role, operator(&server, &format!("{role}-1"), role)))
        .collect();
    let before = snapshot(&server);
    let audited_before = audit(&server, "&refused=true").len();

    let mut refusals = Vec::new();
    let description = openapi::description();
    for (template, operations) in description["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            if template == "/api/openapi.json" {
                continue;
            }
            let needed = needed_role(operation);
            let path = template
                .replace("{dev_id}", DEVICE)
                .replace("{gateway_id}", "gw-1")
                .replace("{id}", &command.to_string())
                .replace("{name}", "viewer-1");
            for (role, token) in tokens.iter().filter(|(role, _)| rank(role) < rank(needed)) {
                let method = method.to_uppercase();
                let (status, body) = api_as(server.addr, token, &method, &path, Some("{}"));
                assert_eq!(status, 403, "{role} {method} {path}: {body}");
                let reason = body["error"].as_str().unwrap();
                assert!(
                    reason.contains(&format!("needs the {needed} role")) && reason.contains(role),
                    "{reason}"
                );
                refusals.push((format!("{role}-1"), method, path.clone()));
            }
        }
    }
    assert!(
        refusals.len() > 20,
        "only {} refusals tried",
        refusals.len()
    );
    assert_eq!(
        snapshot(&server),
        before,
        "a refused request changed something"
    );

    // Each refusal is in the audit log: who, with which role, what, from where.
    let refused = audit(&server, "&refused=true");
    assert_eq!(refused.len(), audited_before + refusals.len());
    for (entry, (name, method, path)) in refused.iter().rev().skip(audited_before).zip(&refusals) {
        assert_eq!(entry["operator"], name.as_str(), "{entry}");
        assert_eq!(entry["role"], name.trim_end_matches("-1"), "{entry}");
        assert_eq!(
            (entry["method"].as_str(), entry["path"].as_str()),
            (Some(method.as_str()), Some(path.as_str()))
        );
        assert_eq!(entry["status"], 403);
        assert_eq!(entry["source"], "127.0.0.1");
    }
}

#[test]
fn a_viewer_reads_an_operator_queues_an_admin_manages_and_the_audit_log_says_who() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let started = gwmo_net::unix_now();
    server.enroll(DEVICE, "md5");
    let viewer = operator(&server, "vera", "viewer");
    let ops = operator(&server, "otto", "operator");
    let admin = operator(&server, "ada", "admin");
    let queue = format!("/api/devices/{DEVICE}/commands?wake=false");
    let get = r#"{"op":"Get","target":"./DevInfo/Man"}"#;

    assert_eq!(
        api_as(server.addr, &viewer, "GET", "/api/devices", None).0,
        200
    );
    assert_eq!(
        api_as(server.addr, &viewer, "POST", &queue, Some(get)).0,
        403
    );
    assert_eq!(api_as(server.addr, &ops, "POST", &queue, Some(get)).0, 201);
    let newcomer = json!({ "name": "nina", "role": "viewer" }).to_string();
    assert_eq!(
        api_as(server.addr, &ops, "POST", "/api/operators", Some(&newcomer)).0,
        403
    );
    let (status, made) = api_as(
        server.addr,
        &admin,
        "POST",
        "/api/operators",
        Some(&newcomer),
    );
    assert_eq!(status, 201, "{made}");
    let nina = made["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api_as(server.addr, &nina, "GET", "/api/devices", None).0,
        200
    );
    assert_eq!(
        api_as(
            server.addr,
            &admin,
            "POST",
            "/api/operators",
            Some(&newcomer)
        )
        .0,
        409
    );
    let bad_name = json!({ "name": "config", "role": "admin" }).to_string();
    assert_eq!(
        api_as(
            server.addr,
            &admin,
            "POST",
            "/api/operators",
            Some(&bad_name)
        )
        .0,
        400
    );
    assert_eq!(
        api_as(server.addr, &admin, "DELETE", "/api/operators/nina", None).0,
        204
    );
    assert_eq!(
        api_as(server.addr, &nina, "GET", "/api/devices", None).0,
        401,
        "a removed operator's token stops working"
    );
    assert_eq!(
        api_as(server.addr, "gwmo_not-a-token", "GET", "/api/devices", None).0,
        401
    );
    assert_eq!(
        api_as(server.addr, &viewer, "GET", "/api/audit", None).0,
        403
    );

    // Tokens are never shown again, nor kept: the listing has names and roles only.
    let (_, listed) = server.api("GET", "/api/operators", None);
    assert_eq!(
        listed["operators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ada", "otto", "vera"]
    );
    assert!(!listed.to_string().contains(&viewer[5..]), "{listed}");

    // Newest first: the reads that succeeded are not audited, everything else is.
    let log = audit(&server, "");
    let seen: Vec<(Value, Value, Value, Value)> = log
        .iter()
        .take(11)
        .map(|e| {
            (
                e["operator"].clone(),
                e["method"].clone(),
                e["path"].clone(),
                e["status"].clone(),
            )
        })
        .collect();
    let expected = [
        (json!("vera"), "GET", "/api/audit", 403),
        (Value::Null, "GET", "/api/devices", 401),
        (Value::Null, "GET", "/api/devices", 401),
        (json!("ada"), "DELETE", "/api/operators/nina", 204),
        (json!("ada"), "POST", "/api/operators", 400),
        (json!("ada"), "POST", "/api/operators", 409),
        (json!("ada"), "POST", "/api/operators", 201),
        (json!("otto"), "POST", "/api/operators", 403),
        (json!("otto"), "POST", queue.as_str(), 201),
        (json!("vera"), "POST", queue.as_str(), 403),
        (json!("config"), "POST", "/api/operators", 201),
    ];
    let expected: Vec<(Value, Value, Value, Value)> = expected
        .into_iter()
        .map(|(who, method, path, status)| (who, json!(method), json!(path), json!(status)))
        .collect();
    assert_eq!(seen, expected);
    for entry in &log {
        let at = entry["at"].as_i64().unwrap();
        assert!(at >= started && at <= gwmo_net::unix_now(), "{entry}");
        assert_eq!(entry["source"], "127.0.0.1");
    }
    assert_eq!(log[9]["role"], "viewer");
    assert_eq!(
        log[10]["role"], "admin",
        "the configured token acts as an admin"
    );
    let (status, only_otto) = server.api("GET", "/api/audit?operator=otto", None);
    assert_eq!(status, 200);
    assert_eq!(
        only_otto["entries"].as_array().unwrap().len(),
        2,
        "{only_otto}"
    );
}

#[test]
fn gwmo_operator_makes_accounts_in_a_stopped_server_s_store_and_says_why_not_in_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let config = dir.path().join("server.toml");
    let operator_cli = |args: &[&str]| {
        gwmo()
            .arg("operator")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };

    let refused = operator_cli(&["add", "alice", "--role", "viewer"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");

    server.daemon.kill();
    let added = operator_cli(&["add", "alice", "--role", "viewer"]);
    assert_success(&added, "gwmo operator add");
    let token = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("gwmo_") && token.len() == 69, "{token}");
    let again = operator_cli(&["add", "alice", "--role", "admin"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already an operator named \"alice\""));
    let listed = operator_cli(&["list"]);
    assert_success(&listed, "gwmo operator list");
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.starts_with("alice\tviewer\t"), "{listed}");
    assert!(
        !listed.contains(&token[5..]),
        "the token is not kept: {listed}"
    );

    server.kill_and_restart();
    assert_eq!(
        api_as(server.addr, &token, "GET", "/api/devices", None).0,
        200
    );
    assert_eq!(
        api_as(
            server.addr,
            &token,
            "POST",
            "/api/devices",
            Some(r#"{"dev_id":"IMEI:1"}"#)
        )
        .0,
        403
    );

    server.daemon.kill();
    assert_success(&operator_cli(&["remove", "alice"]), "gwmo operator remove");
    let missing = operator_cli(&["remove", "alice"]);
    assert!(!missing.status.success());
    server.kill_and_restart();
    assert_eq!(
        api_as(server.addr, &token, "GET", "/api/devices", None).0,
        401
    );
}
