//! Campaigns driven against each store backend: waves through gateways' fan-outs and
//! straight to devices, the threshold that pauses, resuming, retrying, cancelling.

use super::*;
use crate::store::campaigns::WaveCount;
use crate::store::tests::{device, each_backend, gateway};
use crate::store::{CommandState, Followups};

const GET: &str = r#"{"op":"Get","target":"./DevDetail/FwV"}"#;

/// Five devices (IMEI:1 to IMEI:5); IMEI:1 and IMEI:4 behind gateway gw-1.
fn fleet(store: &dyn Store) {
    store.enroll(&device("GW:1"), 0).unwrap();
    store.register_gateway(&gateway("gw-1", "GW:1")).unwrap();
    for n in 1..=5 {
        store.enroll(&device(&format!("IMEI:{n}")), 0).unwrap();
    }
    let none = Followups::default();
    for behind in ["IMEI:1", "IMEI:4"] {
        store
            .associate(behind, "gw-1", "local-bootstrap", None, 1, &none)
            .unwrap();
    }
}

fn start(store: &dyn Store, wave: WaveSize, threshold_percent: u8) -> i64 {
    let spec = CommandSpec::parse(GET).unwrap();
    let filter = DeviceFilter {
        dev_id_prefix: Some("IMEI:".into()),
        ..DeviceFilter::default()
    };
    let plan = Plan {
        name: "firmware check",
        spec: &spec,
        filter: &filter,
        filter_json: r#"{"search":"IMEI:"}"#,
        wave,
        threshold_percent,
    };
    let (id, targeted) = create(store, &plan, 10).unwrap();
    assert_eq!(targeted, 5);
    id
}

/// Answers every command queued for `dev_id` with `status`, as its session would.
fn answer(store: &dyn Store, dev_id: &str, status: u16, now: i64) {
    for command in store
        .claim_pending(dev_id, &format!("s-{dev_id}-{now}"), now)
        .unwrap()
    {
        let nothing = |_: &_, _: &_, _: Option<&_>, _: Option<&_>| Followups::default();
        store
            .complete(command.id, status, "{}", now, &nothing)
            .unwrap();
    }
}

/// Reports the gateway's open fan-outs as its driver would: `status` for each target.
fn gateway_reports(store: &dyn Store, status: i64, now: i64) {
    for fanout in store.fanouts(Some("gw-1"), None, 100).unwrap() {
        if fanout.state != "sent" {
            continue;
        }
        let targets: Vec<String> = serde_json::from_str(&fanout.targets).unwrap();
        let results: Vec<Value> = targets
            .iter()
            .map(|t| serde_json::json!({ "dev_id": t, "state": "done", "status": status }))
            .collect();
        let results = serde_json::to_string(&results).unwrap();
        assert!(
            store
                .complete_fanout(fanout.id, "gw-1", &results, now)
                .unwrap()
        );
    }
}

fn states(store: &dyn Store, id: i64) -> Vec<(String, i64, TargetState)> {
    Campaigns(store.sql())
        .targets(id, None, None, "", 100)
        .unwrap()
        .into_iter()
        .map(|t| (t.dev_id, t.wave, t.state))
        .collect()
}

fn campaign_state(store: &dyn Store, id: i64) -> CampaignState {
    Campaigns(store.sql()).get(id).unwrap().unwrap().state
}

#[test]
fn a_campaign_goes_wave_by_wave_through_its_gateway_and_straight_to_devices() {
    each_backend(|store| {
        fleet(store);
        let id = start(store, WaveSize::Devices(2), 50);
        use TargetState::*;
        assert!(states(store, id).iter().all(|(_, _, s)| *s == Pending));
        let waves: Vec<i64> = states(store, id).iter().map(|(_, w, _)| *w).collect();
        assert_eq!(waves, [1, 1, 2, 2, 3], "in DevId order, two a wave");

        let woken = advance(store, id, 11).unwrap();
        assert_eq!(
            woken,
            ["IMEI:2", "GW:1"],
            "IMEI:1 through its gateway, IMEI:2 itself"
        );
        let fanouts = store.fanouts(Some("gw-1"), None, 10).unwrap();
        assert_eq!(fanouts.len(), 1);
        assert_eq!(fanouts[0].targets, r#"["IMEI:1"]"#);
        assert!(
            store.has_queued_commands("GW:1").unwrap(),
            "the fan-out is handed over"
        );
        assert!(
            !store.has_queued_commands("IMEI:1").unwrap(),
            "not sent twice"
        );
        assert!(store.has_queued_commands("IMEI:2").unwrap());
        assert!(
            advance(store, id, 12).unwrap().is_empty(),
            "wave 1 is not over"
        );

        answer(store, "IMEI:2", 200, 13);
        assert!(
            advance(store, id, 14).unwrap().is_empty(),
            "IMEI:1 is still out"
        );
        gateway_reports(store, 200, 15);
        let woken = advance(store, id, 16).unwrap();
        assert_eq!(woken, ["IMEI:3", "GW:1"]);
        assert_eq!(
            &states(store, id)[..2],
            [("IMEI:1".into(), 1, Done), ("IMEI:2".into(), 1, Done)]
        );
        let target = Campaigns(store.sql())
            .targets(id, Some(1), None, "", 10)
            .unwrap();
        assert_eq!(
            (target[0].gateway_id.as_deref(), target[0].status),
            (Some("gw-1"), Some(200))
        );
        assert!(target[1].command_id.is_some() && target[1].fanout_id.is_none());

        answer(store, "IMEI:3", 200, 17);
        gateway_reports(store, 200, 17);
        assert_eq!(advance(store, id, 18).unwrap(), ["IMEI:5"]);
        answer(store, "IMEI:5", 200, 19);
        assert!(advance(store, id, 20).unwrap().is_empty());
        assert_eq!(campaign_state(store, id), CampaignState::Done);
        assert!(states(store, id).iter().all(|(_, _, s)| *s == Done));
        let waves = Campaigns(store.sql()).waves(id).unwrap();
        assert_eq!(
            waves.last(),
            Some(&WaveCount {
                wave: 3,
                state: Done,
                devices: 1
            })
        );
    });
}

#[test]
fn a_wave_that_fails_past_the_threshold_pauses_until_resumed_and_failures_can_be_retried() {
    each_backend(|store| {
        fleet(store);
        let id = start(store, WaveSize::Percent(40), 40);
        use TargetState::*;
        advance(store, id, 11).unwrap();
        answer(store, "IMEI:2", 404, 12);
        gateway_reports(store, 200, 12);
        assert!(advance(store, id, 13).unwrap().is_empty());
        let campaign = Campaigns(store.sql()).get(id).unwrap().unwrap();
        assert_eq!(campaign.state, CampaignState::Paused);
        assert!(
            campaign
                .reason
                .as_deref()
                .unwrap()
                .contains("1 of 2 devices failed"),
            "{campaign:?}"
        );
        assert!(
            advance(store, id, 14).unwrap().is_empty(),
            "paused: nothing goes out"
        );
        assert!(!store.has_queued_commands("IMEI:3").unwrap());

        // Resuming accepts the failed wave and goes on.
        let campaigns = Campaigns(store.sql());
        assert!(
            campaigns
                .set_state(
                    id,
                    &[CampaignState::Paused],
                    CampaignState::Running,
                    None,
                    true,
                    15
                )
                .unwrap()
        );
        assert_eq!(advance(store, id, 16).unwrap(), ["IMEI:3", "GW:1"]);
        answer(store, "IMEI:3", 200, 17);
        gateway_reports(store, 200, 17);
        advance(store, id, 18).unwrap();
        answer(store, "IMEI:5", 200, 19);
        advance(store, id, 20).unwrap();
        assert_eq!(campaign_state(store, id), CampaignState::Done);

        // The failed device, again, in a wave of its own.
        assert_eq!(campaigns.retry_failed(id, 21).unwrap(), 1);
        assert!(
            campaigns
                .set_state(
                    id,
                    &[CampaignState::Done],
                    CampaignState::Running,
                    None,
                    false,
                    21
                )
                .unwrap()
        );
        assert_eq!(advance(store, id, 22).unwrap(), ["IMEI:2"]);
        answer(store, "IMEI:2", 200, 23);
        advance(store, id, 24).unwrap();
        assert_eq!(campaign_state(store, id), CampaignState::Done);
        let retried = campaigns.targets(id, None, None, "IMEI:1", 1).unwrap();
        assert_eq!(
            (retried[0].wave, retried[0].state, retried[0].attempts),
            (4, Done, 2)
        );
    });
}

#[test]
fn a_cancelled_campaign_sends_nothing_more_and_takes_back_what_is_still_queued() {
    each_backend(|store| {
        fleet(store);
        let id = start(store, WaveSize::Devices(2), 100);
        use TargetState::*;
        advance(store, id, 11).unwrap();
        assert!(cancel(store, id, 12).unwrap());
        assert!(!cancel(store, id, 13).unwrap(), "once");
        assert_eq!(
            states(store, id),
            [
                ("IMEI:1".into(), 1, Sent), // its fan-out is with the gateway
                ("IMEI:2".into(), 1, Cancelled),
                ("IMEI:3".into(), 2, Cancelled),
                ("IMEI:4".into(), 2, Cancelled),
                ("IMEI:5".into(), 3, Cancelled),
            ]
        );
        let mine = store
            .commands_of("IMEI:2", &Default::default(), 10)
            .unwrap();
        assert_eq!(mine[0].state, CommandState::Cancelled);
        assert!(advance(store, id, 14).unwrap().is_empty());
        assert_eq!(campaign_state(store, id), CampaignState::Cancelled);
    });
}

#[test]
fn a_gateway_report_is_read_device_by_device_and_what_it_leaves_out_failed() {
    let report = serde_json::json!([
        { "dev_id": "A", "state": "done", "status": 200 },
        { "dev_id": "B", "state": "done", "status": 500 },
        { "dev_id": "C", "error": "not in this gateway's inventory" },
        { "dev_id": "D", "state": "sent", "status": null },
        { "error": "no device at all" },
    ]);
    let outcomes = reported_outcomes(Some(&report));
    let state = |d: &str| outcomes.get(d).map(|s| s.state);
    assert_eq!(state("A"), Some(TargetState::Done));
    assert_eq!(state("B"), Some(TargetState::Failed));
    assert_eq!(
        outcomes["C"].error.as_deref(),
        Some("not in this gateway's inventory")
    );
    assert!(outcomes["D"].error.as_deref().unwrap().contains("sent"));
    assert_eq!(outcomes.len(), 4);
    assert!(reported_outcomes(Some(&serde_json::json!({"not": "a list"}))).is_empty());
}

#[test]
fn a_firmware_campaign_settles_each_device_from_its_fumo_result_not_its_command() {
    use crate::store::firmware::{Ending, Firmware, UpdateState, sample_artifact};
    each_backend(|store| {
        fleet(store);
        let artifact = sample_artifact("a1", 0);
        let spec = crate::firmware::update_command(&artifact, "https://dms/firmware/a1", "fw-c");
        let filter = DeviceFilter {
            dev_id_prefix: Some("IMEI:".into()),
            ..DeviceFilter::default()
        };
        let plan = Plan {
            name: "firmware 2.0",
            spec: &spec,
            filter: &filter,
            filter_json: r#"{"search":"IMEI:"}"#,
            wave: WaveSize::Devices(5),
            threshold_percent: 100,
        };
        let (id, _) = create(store, &plan, 10).unwrap();
        advance(store, id, 11).unwrap();
        let firmware = Firmware(store.sql());
        // Each device's update is recorded: queued for it, or handed to its gateway.
        for n in 1..=5 {
            let update = firmware
                .update("fw-c", &format!("IMEI:{n}"))
                .unwrap()
                .unwrap();
            let behind = matches!(n, 1 | 4);
            assert_eq!(update.fanout_id.is_some(), behind, "IMEI:{n}");
            assert_eq!(update.command_id.is_some(), !behind, "IMEI:{n}");
            assert_eq!(update.artifact_id, "a1");
        }
        // The commands' own answers (202 accepted) settle nobody.
        for n in [2, 3, 5] {
            answer(store, &format!("IMEI:{n}"), 200, 12);
        }
        gateway_reports(store, 200, 12);
        advance(store, id, 13).unwrap();
        use TargetState::*;
        assert!(
            states(store, id).iter().all(|(_, _, s)| *s == Sent),
            "{:?}",
            states(store, id)
        );
        // The FUMO results do.
        for (n, result) in [(1, 200), (2, 200), (3, 410), (4, 200), (5, 200)] {
            let ending = Ending {
                state: match result {
                    200 => UpdateState::Succeeded,
                    _ => UpdateState::Failed,
                },
                result: Some(result),
                reason: (result != 200).then_some("410 Firmware Update Failed"),
            };
            assert!(
                firmware
                    .settle("fw-c", &format!("IMEI:{n}"), &ending, 14)
                    .unwrap()
            );
        }
        advance(store, id, 15).unwrap();
        let settled = Campaigns(store.sql())
            .targets(id, None, None, "", 100)
            .unwrap();
        for target in settled {
            match target.dev_id.as_str() {
                "IMEI:3" => {
                    assert_eq!((target.state, target.status), (Failed, Some(410)));
                    assert_eq!(target.error.as_deref(), Some("410 Firmware Update Failed"));
                }
                _ => assert_eq!(
                    (target.state, target.status),
                    (Done, Some(200)),
                    "{}",
                    target.dev_id
                ),
            }
        }
    });
}
