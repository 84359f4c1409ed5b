//! `gwmo sim` end to end: the real binary starts its own servers, rolls out devices
//! through both approaches, checks them in the server's store, and reports.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

/// Runs `gwmo sim` with `args` (split at spaces) and reads the report it writes.
fn sim(args: &str) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = gwmo()
        .arg("sim")
        .args(args.split_whitespace())
        .arg("--report")
        .arg(&report)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_else(|_| {
        panic!(
            "no report; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, serde_json::from_str(&text).unwrap())
}

/// Everything a successful run of `devices` devices, half each approach, must show.
fn assert_clean_rollout(output: &Output, report: &Value, devices: u64) {
    assert_success(output, "gwmo sim");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("gwmo sim summary"), "{stdout}");
    // Without a terminal, progress comes as lines (at the end at least), rates whole.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rfind(|l| l.contains("devices rolled out in"))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(last.starts_with(&format!("{devices}/{devices} ")), "{last}");
    assert!(
        last.ends_with("/s)") && !last.contains(['.', ',']),
        "{last}"
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["bootstrapped"]["server_assisted"], devices / 2);
    assert_eq!(report["bootstrapped"]["local"], devices / 2);
    assert_eq!(report["verified"]["associations"], devices);
    // At least the bootstrap (figure x) or the validation (figure z) of each device.
    assert!(report["verified"]["commands"].as_u64().unwrap() >= devices);
    // Figure x: the server's session, then the gateway's; figure z: the server's, the
    // gateway's, then the server's with the validation.
    assert!(report["sessions"]["total"].as_u64().unwrap() >= devices / 2 * 5);
    let latency = &report["sessions"]["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0);
    assert!(latency["p50"].as_f64() <= latency["p99"].as_f64());
    assert!(report["server_round_trips"].as_u64().unwrap() >= devices * 2);
    // Each device's first connection to the server is accepted during the rollout and
    // has no ticket to resume with. (Connections and handshakes are counted at
    // different moments, so a connection accepted just before the rollout can finish
    // its handshake inside it: the two deltas need not add up, and the listener's own
    // test checks that they do once nothing is in flight.)
    let traffic = &report["server_traffic"];
    assert_eq!(traffic["messages"], report["server_round_trips"]);
    let count = |name: &str| traffic[name].as_u64().unwrap();
    assert!(count("full_handshakes") >= devices, "{traffic}");
    assert!(count("connections") >= devices, "{traffic}");
    // Figure z: the server wakes each device with package 0 for the validation (and
    // wakes a gateway it has inventory for, unless a session of the gateway took it).
    assert!(count("notifications") >= devices / 2, "{traffic}");
}

#[test]
fn sim_rolls_out_both_approaches_with_zero_errors() {
    let (output, report) = sim("--devices 40 --gateways 4 --approach both --baseline");
    assert_clean_rollout(&output, &report, 40);
    assert_eq!(report["store"], "sqlite");
    for raw in ["keep_alive", "new_connection"] {
        assert!(
            report["baseline"][raw]["per_sec"].as_f64().unwrap() > 0.0,
            "{raw}"
        );
        assert!(
            report["baseline"][raw]["server_cpu_us"].as_f64().unwrap() > 0.0,
            "{raw}"
        );
        assert!(
            report["baseline"][raw]["count"].as_u64().unwrap() >= 2000,
            "{raw}"
        );
    }
    // The lightweight devices' sessions: one message each, and one more for each
    // device's first (challenged for a nonce); 128 devices at the default concurrency.
    let dm = &report["baseline"]["dm_kept_alive"];
    let messages = dm["count"].as_u64().unwrap();
    assert!((20_000..=20_000 + 128).contains(&messages), "{dm}");
    assert!(dm["server_cpu_us"].as_f64().unwrap() > 0.0, "{dm}");
    // The management sessions: 128 workers of 8 devices, each session two messages (the
    // Get out, its Results in), in rounds of 2,048 messages until 20,000 are counted;
    // the simulator checked that every Get ended done with 200.
    let managed = &report["baseline"]["dm_managed"];
    assert_eq!(managed["count"].as_u64(), Some(10 * 2048), "{managed}");
    // Its CPU is measured, not compared here: which message costs more is a benchmark's
    // finding (BENCHMARKS.md), and a debug build on a loaded CI machine reversed it.
    assert!(
        managed["server_cpu_us"].as_f64().unwrap() > 0.0,
        "{managed}"
    );
    // Before each of the ten rounds, four kept-alive requests per message of the round.
    let beside = &report["baseline"]["keep_alive_beside_gets"];
    assert_eq!(beside["count"].as_u64(), Some(10 * 4 * 2048), "{beside}");
    assert!(beside["server_cpu_us"].as_f64().unwrap() > 0.0, "{beside}");
    assert!(report["cpu"]["server_us_per_message"].as_f64().unwrap() > 0.0);
    assert!(report["cpu"]["ms_per_device"].as_f64().unwrap() > 0.0);
    // The rollout's message split into its share of new connections and the rest.
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("a rollout DM message: its connections / the rest"),
        "{summary}"
    );
    // Memory per device leaves out what the server held before any device.
    let memory = &report["server_memory"];
    let at_start = memory["at_start_bytes"].as_u64().unwrap();
    let peak = memory["peak_bytes"].as_u64().unwrap();
    assert!(at_start > 0 && at_start <= peak, "{memory}");
    assert_eq!(
        memory["peak_bytes_per_device"].as_u64().unwrap(),
        (peak - at_start) / 40,
        "{memory}"
    );
    assert!(
        report["simulator_bytes_per_device"].as_u64().is_some(),
        "{report}"
    );
}

#[test]
fn sim_against_two_instances_sharing_postgresql() {
    let Some(database) = ScratchDatabase::create() else {
        return;
    };
    let (output, report) = sim(&format!(
        "--devices 40 --gateways 4 --db {} --instances 2",
        database.url
    ));
    assert_clean_rollout(&output, &report, 40);
    assert_eq!(report["store"], "postgresql");
    assert_eq!(report["server_instances"], 2);
}

#[test]
fn sim_lists_the_errors_and_fails_when_devices_cannot_finish() {
    // No time at all to wait for the gateway's session.
    let (output, report) =
        sim("--devices 10 --gateways 2 --approach server-assisted --wait-secs 0");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error(s) in the simulation"), "{stderr}");
    let waited = &report["errors"]["gateway-session"];
    assert!(waited["count"].as_u64().unwrap() > 0, "{report}");
    assert!(
        waited["example"]
            .as_str()
            .unwrap()
            .contains("no session from"),
        "{report}"
    );
}

#[test]
fn several_instances_without_postgresql_are_refused() {
    let output = gwmo()
        .args([
            "sim",
            "--devices",
            "2",
            "--gateways",
            "1",
            "--instances",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--db postgres://"), "{stderr}");
}

#[test]
fn sim_soaks_at_a_steady_rate_and_samples_memory_and_files() {
    let (output, report) = sim("--devices 20 --gateways 2 --soak-secs 4 --soak-rate 20");
    assert_clean_rollout(&output, &report, 20);
    let soak = &report["soak"];
    // Four rounds: each device holds two sessions with its gateway and two with the
    // DM Server.
    assert!(soak["sessions"].as_u64().unwrap() >= 60, "{soak}");
    // A device keeps its client between sessions, as a device daemon does: its second
    // session with the server pays no new full handshake (at most one per device and
    // gateway over the whole soak, where opening a client per session paid one per
    // session).
    let traffic = &soak["server_traffic"];
    assert!(traffic["messages"].as_u64().unwrap() >= 40, "{traffic}");
    assert!(
        traffic["full_handshakes"].as_u64().unwrap() <= 22,
        "{traffic}"
    );
    assert!(soak["server_cpu_us_per_message"].as_f64().unwrap() > 0.0);
    assert_eq!(soak["errors"], 0, "{soak}");
    let samples = soak["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{soak}");
    for sample in samples {
        for key in [
            "server_rss_bytes",
            "server_fds",
            "simulator_rss_bytes",
            "simulator_fds",
        ] {
            assert!(sample[key].as_u64().unwrap() > 0, "{key}: {sample}");
        }
    }
    assert!(soak["server_rss_growth"].as_f64().unwrap() > 0.0);
}

#[test]
fn sim_rehearses_a_firmware_campaign_with_one_download_per_gateway() {
    let (output, report) = sim("--devices 40 --gateways 4 --firmware-mib 1");
    assert_clean_rollout(&output, &report, 40);
    let firmware = &report["firmware"];
    let image = 1u64 << 20;
    assert_eq!(firmware["image_bytes"], image);
    assert_eq!(firmware["updated"], 40, "{firmware}");
    assert_eq!(firmware["failed"], 0, "{firmware}");
    assert_eq!(firmware["verified"], 40, "{firmware}");
    // The DM Server sent one image per gateway; each gateway one per device behind it.
    assert_eq!(firmware["wan_bytes"], 4 * image, "{firmware}");
    assert_eq!(firmware["lan_bytes_min"], 10 * image, "{firmware}");
    assert_eq!(firmware["lan_bytes_total"], 40 * image, "{firmware}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("firmware: WAN (DM Server sent)"),
        "{stdout}"
    );
}

#[test]
fn sim_rehearses_a_campaign_that_pauses_on_a_failing_wave_then_finishes() {
    // Devices behind two gateways and devices the DM Server manages itself; servers
    // that move campaigns on every second.
    let (output, report) = sim("--devices 20 --gateways 2 --direct 4 --campaign --sweep-secs 1");
    assert_success(&output, "gwmo sim");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(
        (
            report["direct"].as_u64(),
            report["bootstrapped"]["direct"].as_u64()
        ),
        (Some(4), Some(4))
    );
    assert_eq!(report["verified"]["associations"], 24, "{report}");

    let campaign = &report["campaign"];
    assert_eq!(
        (
            campaign["devices"].as_u64(),
            campaign["behind_gateways"].as_u64(),
            campaign["direct"].as_u64()
        ),
        (Some(24), Some(20), Some(4)),
        "{campaign}"
    );
    // Waves of a tenth (3 devices), one in four of the first lacking what it reads:
    // 1 of 3 failed, over the 10 % threshold.
    assert_eq!(campaign["wave_size"], 3, "{campaign}");
    assert_eq!(campaign["lacking"], 1, "{campaign}");
    assert!(
        campaign["paused"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("wave 1: 1 of 3 devices failed")),
        "{campaign}"
    );
    // Resumed, it finished; its failed device, given the node, was retried in a wave
    // of its own: every device done.
    assert_eq!(campaign["retried"], 1, "{campaign}");
    assert_eq!(
        (campaign["done"].as_u64(), campaign["failed"].as_u64()),
        (Some(24), Some(0)),
        "{campaign}"
    );
    assert_eq!(campaign["waves"], 9, "8 waves and the retry's: {campaign}");
    let events: Vec<&str> = campaign["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mark| mark["event"].as_str().unwrap())
        .collect();
    let position = |event: &str| {
        events
            .iter()
            .position(|e| e.starts_with(event))
            .unwrap_or_else(|| panic!("no {event:?} in {events:?}"))
    };
    assert!(
        position("wave 1 started") < position("paused"),
        "{events:?}"
    );
    assert!(position("paused") < position("resumed"), "{events:?}");
    assert!(
        position("resumed") < position("wave 2 started"),
        "{events:?}"
    );
    assert!(position("wave 8 started") < position("1 failed devices retried"));
    assert_eq!(events.last(), Some(&"done"), "{events:?}");
    assert!(campaign["sessions"].as_u64().unwrap() >= 25, "{campaign}");
    // Through the gateways' fan-outs, each reported to the DM Server once.
    assert!(campaign["fanouts_run"].as_u64().unwrap() >= 2, "{campaign}");
    assert_eq!(campaign["fanouts_reported"], campaign["fanouts_run"]);
    assert!(campaign["server_messages"].as_u64().unwrap() > 0);
    assert!(campaign["server_rss_max_bytes"].as_u64().unwrap() > 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("campaign: done / failed / retried"),
        "{stdout}"
    );
}
