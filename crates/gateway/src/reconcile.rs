//! The gateway's decisions, as a pure function: from what its tree says (the Device
//! Inventory and the fan-outs), what its end-device store holds, and the time, to the
//! list of actions that bring the two in line. The driver (`driver.rs`) performs them;
//! nothing here does I/O or reads a clock.
//!
//! - An end device the inventory no longer lists (with credentials) is forgotten.
//! - A listed device whose approach is off is refused; one not served, or served with
//!   other credentials, is enrolled (a server-assisted one is woken with package 0; a
//!   locally bootstrapped one opens its session itself, and its first session carries a
//!   probe whose answer shows it confirmed its bootstrap).
//! - Each entry's State and LastSession are recorded when they changed.
//! - A locally bootstrapped device that became active is reported once (Device
//!   Attach); one still not active after its interval lapses (strictly after, in whole
//!   seconds: a Device Detach may come a little after the device's own lapse, never
//!   before) and is reported (Device Detach) until a report went through.
//! - A new fan-out starts; one left running or done by a stopped gateway is taken up.

use std::collections::{HashMap, HashSet};

use gwmo_server::EndDevice;

use crate::inventory::{EntryState, FanoutEntry, FanoutStatus, InventoryEntry};
use gwmo_tree::gwmo::entry;

/// What the gateway's settings decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub server_assisted: bool,
    pub local: bool,
    /// The interval of a local bootstrap whose entry names none.
    pub default_lapse_secs: i64,
}

/// Everything the reconciler looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub entries: &'a [InventoryEntry],
    pub fanouts: &'a [FanoutEntry],
    /// The end-device store, by DevId.
    pub end_devices: &'a HashMap<String, EndDevice>,
    /// The probes (command ids) the devices answered.
    pub answered_probes: &'a HashSet<i64>,
    /// The fan-outs this process is running now.
    pub running_fanouts: &'a HashSet<String>,
    pub policy: Policy,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// A Device Attach or Device Detach report about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The entry's node path (the alert item's source).
    pub entry: String,
    pub dev_id: String,
    pub origin: String,
    /// Device Attach: what the device said of itself and which bootstrap it was.
    pub manufacturer: String,
    pub model: String,
    pub issued_at: Option<i64>,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop serving these devices.
    Forget(Vec<String>),
    /// This device's approach is off here: it is not served (said once, when its State
    /// becomes `refused`).
    Refuse(Report),
    /// Serve this entry's device (in place of any of the same DevId); `probe`: queue
    /// the probe of its first session; `wake`: send package 0.
    Enroll {
        entry: InventoryEntry,
        probe: bool,
        wake: bool,
    },
    /// Write these leaves (State, LastSession) into the inventory.
    RecordStates(Vec<(String, String)>),
    /// Tell the DM Server, in one session, of these devices; then mark them Attached.
    ReportAttach(Vec<Report>),
    /// These local bootstraps lapsed: stop serving the devices, wipe the entries'
    /// credentials and mark them Lapsed.
    Lapse(Vec<InventoryEntry>),
    /// Tell the DM Server, in one session, that these devices left; then remove their
    /// entries.
    ReportDetach(Vec<Report>),
    /// Run a fan-out: queue (or, resuming, take up) its commands, wake its devices,
    /// await them, report.
    RunFanout(FanoutEntry),
    /// Report a finished fan-out's results again and remove it.
    DeliverFanout(FanoutEntry),
}

/// What the reconciler decided: the actions, in the order they are to be performed,
/// and when time alone next changes a decision (a local bootstrap lapses), if ever.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub check_again_at: Option<i64>,
}

/// The actions that bring the end-device store and the inventory in line.
pub fn reconcile(seen: &Observation<'_>) -> Plan {
    let mut actions = Vec::new();
    let listed: Vec<&InventoryEntry> = seen
        .entries
        .iter()
        .filter(|entry| entry.credentials.is_some())
        .collect();
    let listed_ids: HashSet<&str> = listed.iter().map(|e| e.dev_id.as_str()).collect();
    let mut gone: Vec<String> = seen
        .end_devices
        .keys()
        .filter(|dev_id| !listed_ids.contains(dev_id.as_str()))
        .cloned()
        .collect();
    if !gone.is_empty() {
        gone.sort();
        actions.push(Action::Forget(gone));
    }

    let states: Vec<(&InventoryEntry, EntryState)> = listed
        .iter()
        .map(|entry| (*entry, admit(seen, entry, &mut actions)))
        .collect();

    let leaves: Vec<(String, String)> = states
        .iter()
        .flat_map(|(entry, state)| {
            let last_session = current_device(seen, entry)
                .and_then(|device| device.last_session_at)
                .map(|at| at.to_string())
                .unwrap_or_default();
            [
                (
                    entry.recorded_state.as_deref(),
                    entry::STATE,
                    state.as_str().to_owned(),
                ),
                (
                    entry.recorded_last_session.as_deref(),
                    entry::LAST_SESSION,
                    last_session,
                ),
            ]
            .into_iter()
            .filter(|(recorded, _, value)| *recorded != Some(value.as_str()))
            .map(|(_, leaf, value)| (entry.leaf(leaf), value))
            .collect::<Vec<_>>()
        })
        .collect();
    if !leaves.is_empty() {
        actions.push(Action::RecordStates(leaves));
    }

    let attaches: Vec<Report> = states
        .iter()
        .filter(|(entry, state)| {
            entry.is_local() && *state == EntryState::Active && !entry.attached
        })
        .map(|(entry, _)| {
            let device = current_device(seen, entry);
            Report {
                manufacturer: device.map(|d| d.manufacturer.clone()).unwrap_or_default(),
                model: device.map(|d| d.model.clone()).unwrap_or_default(),
                issued_at: entry.issued_at,
                ..report(entry)
            }
        })
        .collect();
    if !attaches.is_empty() {
        actions.push(Action::ReportAttach(attaches));
    }

    // The first second after its interval at which each waiting local bootstrap lapses.
    let lapse_times: Vec<(&InventoryEntry, i64)> = states
        .iter()
        .filter(|(entry, state)| entry.is_local() && *state != EntryState::Active)
        .filter_map(|(entry, _)| {
            let lapse = entry.lapse_secs.unwrap_or(seen.policy.default_lapse_secs);
            Some((
                *entry,
                entry.issued_at?.saturating_add(lapse).saturating_add(1),
            ))
        })
        .collect();
    let lapsed: Vec<InventoryEntry> = lapse_times
        .iter()
        .filter(|(_, at)| seen.now >= *at)
        .map(|(entry, _)| (*entry).clone())
        .collect();
    let check_again_at = lapse_times
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > seen.now)
        .min();
    // This sync's lapses, and those an earlier report could not carry.
    let detaches: Vec<Report> = seen
        .entries
        .iter()
        .filter(|entry| entry.lapsed)
        .chain(lapsed.iter())
        .map(report)
        .collect();
    if !lapsed.is_empty() {
        actions.push(Action::Lapse(lapsed));
    }
    if !detaches.is_empty() {
        actions.push(Action::ReportDetach(detaches));
    }

    for fanout in seen.fanouts {
        let ours = seen.running_fanouts.contains(&fanout.id);
        match fanout.status {
            FanoutStatus::New => actions.push(Action::RunFanout(fanout.clone())),
            FanoutStatus::Running if !ours => actions.push(Action::RunFanout(fanout.clone())),
            FanoutStatus::Done if !ours => actions.push(Action::DeliverFanout(fanout.clone())),
            FanoutStatus::Running | FanoutStatus::Done => {}
        }
    }
    Plan {
        actions,
        check_again_at,
    }
}

/// The stored device an entry names, if it is served with the entry's credentials.
fn current_device<'a>(seen: &Observation<'a>, entry: &InventoryEntry) -> Option<&'a EndDevice> {
    let secret = entry.credentials.as_ref()?.client_secret.as_str();
    seen.end_devices
        .get(&entry.dev_id)
        .filter(|device| device.client_secret == secret)
}

/// The State of a listed entry, pushing the enrollment it needs.
fn admit(seen: &Observation<'_>, entry: &InventoryEntry, actions: &mut Vec<Action>) -> EntryState {
    let approach_on = match entry.is_local() {
        true => seen.policy.local,
        false => seen.policy.server_assisted,
    };
    if !approach_on {
        if entry.recorded_state.as_deref() != Some(EntryState::Refused.as_str()) {
            actions.push(Action::Refuse(report(entry)));
        }
        return EntryState::Refused;
    }
    match current_device(seen, entry) {
        Some(device) => {
            let active = match entry.is_local() {
                true => entry
                    .probe
                    .is_some_and(|probe| seen.answered_probes.contains(&probe)),
                false => device.sessions > 0,
            };
            match active {
                true => EntryState::Active,
                false => EntryState::Enrolled,
            }
        }
        None => {
            actions.push(Action::Enroll {
                entry: entry.clone(),
                probe: entry.is_local(),
                wake: !entry.is_local(),
            });
            EntryState::Enrolled
        }
    }
}

fn report(entry: &InventoryEntry) -> Report {
    Report {
        entry: entry.path(),
        dev_id: entry.dev_id.clone(),
        origin: entry
            .origin
            .map(|origin| origin.as_str().to_owned())
            .unwrap_or_default(),
        manufacturer: String::new(),
        model: String::new(),
        issued_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::EntryCredentials;
    use gwmo_tree::Origin;

    const NOW: i64 = 1_000_000;

    fn entry(dev_id: &str, origin: Origin) -> InventoryEntry {
        InventoryEntry {
            node: dev_id.replace(':', "_"),
            dev_id: dev_id.into(),
            credentials: Some(EntryCredentials {
                client_name: dev_id.into(),
                client_secret: format!("secret of {dev_id}"),
                server_secret: "s".into(),
            }),
            origin: Some(origin),
            ..InventoryEntry::default()
        }
    }

    fn local(dev_id: &str, issued_at: i64, lapse_secs: i64) -> InventoryEntry {
        InventoryEntry {
            issued_at: Some(issued_at),
            lapse_secs: Some(lapse_secs),
            ..entry(dev_id, Origin::LocalBootstrap)
        }
    }

    fn served(entry: &InventoryEntry, sessions: i64) -> EndDevice {
        EndDevice {
            dev_id: entry.dev_id.clone(),
            client_secret: entry.credentials.as_ref().unwrap().client_secret.clone(),
            sessions,
            last_session_at: (sessions > 0).then_some(NOW - 5),
            manufacturer: "Acme".into(),
            model: "Sensor".into(),
        }
    }

    /// A gateway's world: entries, fan-outs, served devices, answered probes, running
    /// fan-outs; both approaches on.
    #[derive(Default)]
    struct World {
        entries: Vec<InventoryEntry>,
        fanouts: Vec<FanoutEntry>,
        end_devices: HashMap<String, EndDevice>,
        answered: HashSet<i64>,
        running: HashSet<String>,
    }

    impl World {
        fn serve(&mut self, entry: &InventoryEntry, sessions: i64) {
            self.end_devices
                .insert(entry.dev_id.clone(), served(entry, sessions));
        }

        fn plan_with(&self, policy: Policy, now: i64) -> Plan {
            reconcile(&Observation {
                entries: &self.entries,
                fanouts: &self.fanouts,
                end_devices: &self.end_devices,
                answered_probes: &self.answered,
                running_fanouts: &self.running,
                policy,
                now,
            })
        }

        fn actions_with(&self, policy: Policy, now: i64) -> Vec<Action> {
            self.plan_with(policy, now).actions
        }

        fn actions(&self) -> Vec<Action> {
            self.actions_with(
                Policy {
                    server_assisted: true,
                    local: true,
                    default_lapse_secs: 600,
                },
                NOW,
            )
        }
    }

    fn enrolled(actions: &[Action]) -> Vec<(&str, bool, bool)> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Enroll { entry, probe, wake } => {
                    Some((entry.dev_id.as_str(), *probe, *wake))
                }
                _ => None,
            })
            .collect()
    }

    fn states(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::RecordStates(leaves) => Some(leaves.clone()),
                _ => None,
            })
            .flatten()
            .filter(|(leaf, _)| leaf.ends_with("/State"))
            .collect()
    }

    #[test]
    fn a_new_server_assisted_device_is_enrolled_and_woken() {
        let world = World {
            entries: vec![entry("IMEI:1", Origin::ServerAssisted)],
            ..World::default()
        };
        let actions = world.actions();
        assert_eq!(enrolled(&actions), [("IMEI:1", false, true)]);
        assert_eq!(
            states(&actions),
            [(
                "./GwMO/DeviceInventory/IMEI_1/State".into(),
                "enrolled".into()
            )]
        );
    }

    #[test]
    fn a_new_locally_bootstrapped_device_is_enrolled_with_a_probe_and_not_woken() {
        let world = World {
            entries: vec![local("IMEI:2", NOW, 600)],
            ..World::default()
        };
        assert_eq!(enrolled(&world.actions()), [("IMEI:2", true, false)]);
    }

    #[test]
    fn a_device_served_with_other_credentials_is_enrolled_again() {
        let mut world = World::default();
        let mut rekeyed = entry("IMEI:3", Origin::ServerAssisted);
        world.serve(&rekeyed, 4);
        rekeyed.credentials.as_mut().unwrap().client_secret = "new".into();
        world.entries.push(rekeyed);
        assert_eq!(enrolled(&world.actions()), [("IMEI:3", false, true)]);
    }

    #[test]
    fn a_served_device_with_the_same_credentials_is_left_alone_and_active_once_heard_from() {
        let mut world = World::default();
        let quiet = entry("IMEI:4", Origin::ServerAssisted);
        let heard = entry("IMEI:5", Origin::ServerAssisted);
        world.serve(&quiet, 0);
        world.serve(&heard, 2);
        world.entries = vec![quiet, heard];
        let actions = world.actions();
        assert!(enrolled(&actions).is_empty(), "{actions:?}");
        assert_eq!(
            states(&actions),
            [
                (
                    "./GwMO/DeviceInventory/IMEI_4/State".into(),
                    "enrolled".into()
                ),
                (
                    "./GwMO/DeviceInventory/IMEI_5/State".into(),
                    "active".into()
                ),
            ]
        );
    }

    #[test]
    fn recorded_states_are_not_written_again() {
        let mut world = World::default();
        let mut heard = entry("IMEI:6", Origin::ServerAssisted);
        world.serve(&heard, 1);
        heard.recorded_state = Some("active".into());
        heard.recorded_last_session = Some((NOW - 5).to_string());
        world.entries.push(heard);
        assert_eq!(world.actions(), []);
    }

    #[test]
    fn a_device_whose_approach_is_off_is_refused_and_not_enrolled() {
        let world = World {
            entries: vec![
                local("IMEI:7", NOW, 600),
                entry("IMEI:8", Origin::ServerAssisted),
            ],
            ..World::default()
        };
        let server_assisted_only = Policy {
            server_assisted: true,
            local: false,
            default_lapse_secs: 600,
        };
        let actions = world.actions_with(server_assisted_only, NOW);
        assert_eq!(enrolled(&actions), [("IMEI:8", false, true)]);
        assert!(states(&actions).contains(&(
            "./GwMO/DeviceInventory/IMEI_7/State".into(),
            "refused".into()
        )));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Refuse(r) if r.dev_id == "IMEI:7"))
        );

        let mut told = world;
        told.entries[0].recorded_state = Some("refused".into());
        assert!(
            !told
                .actions_with(server_assisted_only, NOW)
                .iter()
                .any(|a| matches!(a, Action::Refuse(_))),
            "said once"
        );
    }

    #[test]
    fn a_device_that_left_the_inventory_or_lost_its_credentials_is_forgotten() {
        let mut world = World::default();
        let gone = entry("IMEI:9", Origin::ServerAssisted);
        let mut wiped = entry("IMEI:10", Origin::ServerAssisted);
        world.serve(&gone, 1);
        world.serve(&wiped, 1);
        wiped.credentials = None;
        world.entries.push(wiped);
        assert_eq!(
            world.actions(),
            [Action::Forget(vec!["IMEI:10".into(), "IMEI:9".into()])]
        );
    }

    #[test]
    fn a_local_device_becomes_active_only_when_its_probe_is_answered_then_is_reported_once() {
        let mut world = World::default();
        let mut device = local("IMEI:11", NOW - 10, 600);
        device.probe = Some(42);
        world.serve(&device, 1);
        world.entries.push(device.clone());
        let attaches = |actions: &[Action]| {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::ReportAttach(reports) => Some(reports.clone()),
                    _ => None,
                })
                .flatten()
                .collect::<Vec<_>>()
        };
        assert!(
            attaches(&world.actions()).is_empty(),
            "a session, no answer yet"
        );

        world.answered.insert(42);
        let reported = attaches(&world.actions());
        assert_eq!(
            reported,
            [Report {
                entry: "./GwMO/DeviceInventory/IMEI_11".into(),
                dev_id: "IMEI:11".into(),
                origin: "local-bootstrap".into(),
                manufacturer: "Acme".into(),
                model: "Sensor".into(),
                issued_at: Some(NOW - 10),
            }]
        );

        world.entries[0].attached = true;
        assert!(attaches(&world.actions()).is_empty(), "reported once");
    }

    #[test]
    fn a_server_assisted_device_is_never_reported_as_attached() {
        let mut world = World::default();
        let device = entry("IMEI:12", Origin::ServerAssisted);
        world.serve(&device, 3);
        world.entries.push(device);
        assert!(
            !world
                .actions()
                .iter()
                .any(|a| matches!(a, Action::ReportAttach(_)))
        );
    }

    #[test]
    fn a_local_bootstrap_lapses_strictly_after_its_own_interval_unless_active() {
        let issued = NOW - 600;
        let mut world = World {
            entries: vec![local("IMEI:13", issued, 600)],
            ..World::default()
        };
        let lapses = |actions: &[Action]| {
            actions
                .iter()
                .any(|a| matches!(a, Action::Lapse(entries) if entries[0].dev_id == "IMEI:13"))
        };
        assert!(
            !lapses(&world.actions_with(
                Policy {
                    server_assisted: true,
                    local: true,
                    default_lapse_secs: 1
                },
                NOW
            )),
            "at the deadline: not yet, and the entry's own interval counts, not the setting"
        );
        let policy = Policy {
            server_assisted: true,
            local: true,
            default_lapse_secs: 600,
        };
        let after = world.actions_with(policy, NOW + 1);
        assert!(lapses(&after), "{after:?}");
        assert!(
            after.iter().any(
                |a| matches!(a, Action::ReportDetach(reports) if reports[0].dev_id == "IMEI:13")
            )
        );

        // Active (its probe answered): it never lapses.
        world.entries[0].probe = Some(7);
        world.answered.insert(7);
        let served_entry = world.entries[0].clone();
        world.serve(&served_entry, 1);
        assert!(!lapses(&world.actions_with(policy, NOW + 10_000)));
    }

    #[test]
    fn the_plan_says_when_the_next_lapse_falls_due() {
        let world = World {
            entries: vec![
                local("IMEI:16", NOW - 100, 600),
                local("IMEI:17", NOW - 100, 300),
                entry("IMEI:18", Origin::ServerAssisted),
            ],
            ..World::default()
        };
        let policy = Policy {
            server_assisted: true,
            local: true,
            default_lapse_secs: 600,
        };
        assert_eq!(world.plan_with(policy, NOW).check_again_at, Some(NOW + 201));
        assert_eq!(
            world.plan_with(policy, NOW + 201).check_again_at,
            Some(NOW + 501),
            "the one due is lapsing now"
        );
        assert_eq!(World::default().plan_with(policy, NOW).check_again_at, None);
    }

    #[test]
    fn an_entry_without_an_interval_lapses_after_the_configured_one() {
        let mut device = local("IMEI:14", NOW - 100, 0);
        device.lapse_secs = None;
        let world = World {
            entries: vec![device],
            ..World::default()
        };
        let policy = |default_lapse_secs| Policy {
            server_assisted: true,
            local: true,
            default_lapse_secs,
        };
        let lapses = |actions: Vec<Action>| actions.iter().any(|a| matches!(a, Action::Lapse(_)));
        assert!(lapses(world.actions_with(policy(99), NOW)));
        assert!(!lapses(world.actions_with(policy(100), NOW)));
    }

    #[test]
    fn a_lapse_not_yet_reported_is_reported_again_and_nothing_else_happens_to_it() {
        let mut wiped = local("IMEI:15", NOW - 10_000, 60);
        wiped.credentials = None;
        wiped.lapsed = true;
        let world = World {
            entries: vec![wiped],
            ..World::default()
        };
        let actions = world.actions();
        assert_eq!(actions.len(), 1, "{actions:?}");
        let Action::ReportDetach(reports) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (reports[0].dev_id.as_str(), reports[0].origin.as_str()),
            ("IMEI:15", "local-bootstrap")
        );
    }

    #[test]
    fn fanouts_start_when_new_and_are_taken_up_when_no_one_runs_them() {
        let fanout = |id: &str, status| FanoutEntry {
            id: id.into(),
            status,
            targets: vec!["*".into()],
            command: "{}".into(),
            queued: HashMap::new(),
            results: String::new(),
        };
        let mut world = World {
            fanouts: vec![
                fanout("1", FanoutStatus::New),
                fanout("2", FanoutStatus::Running),
                fanout("3", FanoutStatus::Done),
                fanout("4", FanoutStatus::Running),
                fanout("5", FanoutStatus::Done),
            ],
            ..World::default()
        };
        world.running = HashSet::from(["4".to_owned(), "5".to_owned()]);
        let taken: Vec<(String, &str)> = world
            .actions()
            .iter()
            .filter_map(|a| match a {
                Action::RunFanout(f) => Some((f.id.clone(), "run")),
                Action::DeliverFanout(f) => Some((f.id.clone(), "deliver")),
                _ => None,
            })
            .collect();
        assert_eq!(
            taken,
            [
                ("1".to_owned(), "run"),
                ("2".to_owned(), "run"),
                ("3".to_owned(), "deliver")
            ]
        );
    }
}
