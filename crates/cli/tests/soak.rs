//! Soak of every role as its own process: one `gwmo server`, one `gwmo gateway` and
//! several `gwmo device` daemons on loopback, kept busy for `GWMO_SOAK_SECS` seconds
//! (600 by default) with fan-outs through the gateway and commands the server sends
//! each device directly, while the resident memory and the open file descriptors of
//! every process are read from `/proc` every ten seconds. Memory rises at first while
//! the stores' page caches fill (bounded: `database_cache_mib`; a gateway's takes some
//! six minutes at this load), so it is judged over the second half of the run: a leak
//! goes on growing there, a cache does not.
//!
//! `gwmo sim --soak-secs` measures the same at fleet scale, but its gateways and devices
//! share the simulator's process; this one gives each role its own figures. It is long,
//! so it is ignored by default; run it with
//! `cargo test --release -p gwmo --test soak -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;

const DEVICES: usize = 4;
/// The server's SQLite page cache. Its store grows with every command, and its memory
/// with the store until the cache is full: 32 MiB by default, which this load would
/// take a quarter of an hour to fill. A small one is full within the first two minutes.
const SERVER_CACHE_MIB: u32 = 4;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// From the middle of the run to its end.
const MAX_RSS_GROWTH: f64 = 1.10;
/// Connections open at the moment of a sample come and go.
const MAX_EXTRA_FDS: usize = 8;

/// Resident memory and open descriptors of one process.
#[derive(Debug, Clone, Copy)]
struct Usage {
    rss_kib: u64,
    fds: usize,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    Usage { rss_kib, fds }
}

/// One row of the table: when, how much work so far, and every process's usage.
struct Sample {
    at: Duration,
    rounds: usize,
    roles: Vec<Usage>,
}

/// One round: a fan-out of a Get to every device through the gateway, then a Get the
/// server sends each device directly; every command must succeed.
fn round(server: &ServerProcess, gateway_id: &str, dev_ids: &[String]) {
    let targets: Vec<String> = dev_ids.iter().map(|id| format!("{id:?}")).collect();
    let request = format!(
        r#"{{"targets":[{}],"command":{{"op":"Get","target":"./DevInfo/DevId"}}}}"#,
        targets.join(",")
    );
    let (status, body) = server.api(
        "POST",
        &format!("/api/gateways/{gateway_id}/fanout"),
        Some(&request),
    );
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let fanout = poll("a fan-out", Duration::from_secs(60), || {
        let (_, fanout) = server.api("GET", &format!("/api/fanouts/{id}"), None);
        (fanout["state"] == "done").then_some(fanout)
    });
    for result in fanout["results"].as_array().unwrap() {
        assert_eq!(result["status"], 200, "{fanout}");
    }

    let queued: Vec<i64> = dev_ids
        .iter()
        .map(|dev_id| {
            let id = server.queue(dev_id, r#"{"op":"Get","target":"./DevInfo/DevId"}"#);
            let (status, body) = server.api("POST", &format!("/api/devices/{dev_id}/notify"), None);
            assert_eq!(status, 202, "{body}");
            id
        })
        .collect();
    for id in queued {
        let command = poll("a direct command", Duration::from_secs(60), || {
            let command = server.command(id);
            (command["state"] == "done").then_some(command)
        });
        assert_eq!(command["status"], 200, "{command}");
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[test]
#[ignore = "runs for ten minutes; see the module's documentation"]
fn every_role_in_its_own_process_keeps_memory_and_descriptors_flat() {
    let duration = Duration::from_secs(
        std::env::var("GWMO_SOAK_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(600),
    );
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("server.db").display().to_string();
    let server = ServerProcess::start_with(
        dir.path(),
        &database,
        &format!("database_cache_mib = {SERVER_CACHE_MIB}\n"),
    );
    let gateway = GatewayProcess::start(dir.path(), &server, "gw-soak", "");
    let mut devices: Vec<(String, Daemon)> = (1..=DEVICES)
        .map(|n| {
            let dev_id = format!("IMEI:35000000000070{n}");
            let device_dir = dir.path().join(dev_id.replace(':', "_"));
            std::fs::create_dir_all(&device_dir).unwrap();
            let enrollment = server.enroll(&dev_id, "md5");
            let extra = "listen = \"127.0.0.1:0\"\ngateway = \"gw-soak\"\n";
            let config = device_config(&device_dir, &enrollment, "wbxml", extra);
            let daemon = device_daemon(&config, device_dir.join("device.log"));
            (dev_id, daemon)
        })
        .collect();
    for (dev_id, daemon) in &mut devices {
        poll(
            &format!("{dev_id} behind the gateway"),
            Duration::from_secs(30),
            || {
                daemon.assert_running();
                let (status, record) = gateway.api("GET", &format!("/api/devices/{dev_id}"), None);
                (status == 200 && record["sessions"].as_i64() > Some(0)).then_some(())
            },
        );
        server.reported_notify_url(dev_id, daemon);
    }
    let dev_ids: Vec<String> = devices.iter().map(|(id, _)| id.clone()).collect();
    let mut names = vec!["server".to_owned(), "gateway".to_owned()];
    names.extend((1..=DEVICES).map(|n| format!("device {n}")));
    let mut pids = vec![server.daemon.pid(), gateway.daemon.pid()];
    pids.extend(devices.iter().map(|(_, daemon)| daemon.pid()));
    let sample = |at: Duration, rounds: usize| Sample {
        at,
        rounds,
        roles: pids.iter().map(|pid| usage(*pid)).collect(),
    };

    let started = Instant::now();
    let mut samples = vec![sample(Duration::ZERO, 0)];
    let mut rounds = 0;
    while started.elapsed() < duration {
        round(&server, &gateway.gateway_id, &dev_ids);
        rounds += 1;
        let due = samples.last().map_or(Duration::ZERO, |s| s.at) + SAMPLE_EVERY;
        if started.elapsed() >= due {
            samples.push(sample(started.elapsed(), rounds));
        }
    }
    samples.push(sample(started.elapsed(), rounds));
    for (_, daemon) in &mut devices {
        daemon.assert_running();
    }

    println!(
        "{rounds} rounds in {:.0} s: {} commands, each a session ({DEVICES} devices through the gateway, {DEVICES} direct)",
        started.elapsed().as_secs_f64(),
        rounds * DEVICES * 2
    );
    println!("| time | rounds | {} |", names.join(" | "));
    for s in &samples {
        let cells: Vec<String> = s
            .roles
            .iter()
            .map(|u| format!("{} / {}", mib(u.rss_kib), u.fds))
            .collect();
        println!(
            "| {:.0} s | {} | {} |",
            s.at.as_secs_f64(),
            s.rounds,
            cells.join(" | ")
        );
    }

    let Some(baseline) = samples
        .iter()
        .find(|s| s.at >= duration / 2)
        .filter(|_| duration >= Duration::from_secs(300))
    else {
        println!("shorter than five minutes: too short to tell a leak from caches filling");
        return;
    };
    let last = samples.last().unwrap();
    for (index, name) in names.iter().enumerate() {
        let (first, end) = (baseline.roles[index], last.roles[index]);
        let growth = end.rss_kib as f64 / first.rss_kib as f64;
        println!(
            "{name}, from {:.0} s to the end: RSS {} -> {} (x{growth:.2}), descriptors {} -> {}",
            baseline.at.as_secs_f64(),
            mib(first.rss_kib),
            mib(end.rss_kib),
            first.fds,
            end.fds
        );
        assert!(
            growth <= MAX_RSS_GROWTH,
            "{name}'s memory grew from {} to {}",
            mib(first.rss_kib),
            mib(end.rss_kib)
        );
        assert!(
            end.fds <= first.fds + MAX_EXTRA_FDS,
            "{name}'s descriptors grew from {} to {}",
            first.fds,
            end.fds
        );
    }
}
