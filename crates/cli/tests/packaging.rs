//! What operators install from: the systemd units, the Dockerfile and the compose file
//! under `packaging/`, checked for what a typo would break (no container engine is
//! needed): each unit runs `gwmo` with a role it has, as the gwmo user, hardened; the
//! Dockerfile's instructions, stages and non-root user; the compose file's YAML, its
//! services, commands and secrets. The Debian package itself is built, installed and
//! run by `.ci/run` (`package.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn packaging() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging"))
}

/// Whether `gwmo <role> --help` works: the role exists.
fn is_role(role: &str) -> bool {
    gwmo()
        .args([role, "--help"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn every_unit_runs_a_real_role_as_the_gwmo_user_with_hardening() {
    let mut units = 0;
    for entry in std::fs::read_dir(packaging().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display();
        for section in ["[Unit]", "[Service]", "[Install]"] {
            assert!(text.contains(section), "{name}: no {section}");
        }
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{name}: no {key}="))
                .to_owned()
        };
        let exec: Vec<String> = value("ExecStart")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(exec[0], "/usr/bin/gwmo", "{name}");
        assert!(is_role(&exec[1]), "{name}: gwmo has no role {:?}", exec[1]);
        assert_eq!(&exec[2], "--config", "{name}");
        assert_eq!(value("Type"), "notify", "{name}: the daemons say READY=1");
        assert_eq!(value("User"), "gwmo", "{name}");
        assert_eq!(
            value("ExecReload"),
            "/bin/kill -HUP $MAINPID",
            "{name}: SIGHUP reloads certificates"
        );
        for (key, expected) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(value(key), expected, "{name}: {key}");
        }
        units += 1;
    }
    assert_eq!(units, 3, "server, gateway, bootstrap");
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_a_user_in_another() {
    let text = std::fs::read_to_string(packaging().join("Dockerfile")).unwrap();
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
        "ARG",
        "ENV",
        "LABEL",
    ];
    let mut instructions = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if !continued && !trimmed.is_empty() && !trimmed.starts_with('#') {
            let keyword = trimmed.split_whitespace().next().unwrap();
            assert!(known.contains(&keyword), "unknown instruction: {line}");
            instructions.push(trimmed.to_owned());
        }
        continued = trimmed.ends_with('\\');
    }
    let stages: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[0].ends_with(" AS build"), "{}", stages[0]);
    let runtime: Vec<&String> = instructions
        .iter()
        .skip_while(|i| *i != stages[1])
        .collect();
    assert!(
        runtime.iter().any(|i| i.starts_with("COPY --from=build ")),
        "the binary from the build stage"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.starts_with("USER "))
        .expect("a USER");
    assert_ne!(user.as_str(), "USER root");
    for form in ["ENTRYPOINT", "CMD"] {
        let line = runtime.iter().find(|i| i.starts_with(form)).unwrap();
        let args: Vec<String> = serde_json::from_str(line[form.len()..].trim()).unwrap();
        assert!(!args.is_empty(), "{line}");
    }
}

#[test]
fn the_compose_file_is_yaml_whose_services_run_real_roles_with_declared_secrets() {
    let compose = packaging().join("compose.yaml");
    let as_json = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&compose)
        .output()
        .unwrap();
    assert!(
        as_json.status.success(),
        "YAML: {}",
        String::from_utf8_lossy(&as_json.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    let services = doc["services"].as_object().unwrap();
    for role in ["postgres", "server", "gateway", "device"] {
        assert!(services.contains_key(role), "no {role} service");
    }
    let declared = doc["secrets"].as_object().unwrap();
    for (name, service) in services {
        if service["image"] == "gwmo" {
            let command = service["command"].as_array().unwrap();
            assert!(is_role(command[0].as_str().unwrap()), "{name}: {command:?}");
        }
        for secret in service["secrets"].as_array().into_iter().flatten() {
            assert!(
                declared.contains_key(secret.as_str().unwrap()),
                "{name}: undeclared secret {secret}"
            );
        }
        for (key, _) in service["environment"].as_object().into_iter().flatten() {
            assert!(
                !key.starts_with("GWMO_") || key == &key.to_uppercase(),
                "{name}: {key}"
            );
        }
    }
}
