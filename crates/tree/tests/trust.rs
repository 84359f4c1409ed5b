//! The trust rules of Local DM Bootstrap Server Assisted Gateway Bootstrapping (seed
//! 8.x.2) played by a hostile gateway: what a gateway that is not fully trusted may not
//! touch, for every command that could, who may validate it, and the lapse of its
//! bootstrap with everything that came through it. The findings of issue 13 each have
//! a test of their own; the property tests at the end generate what a hostile gateway
//! could send and check the rules over everything that changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use gwmo_proto::auth::AuthType;
use gwmo_proto::{CmdIds, Command, Container, Data, Exec, Item, ItemCommand, Location, Meta};
use gwmo_tree::{
    Acl, DeviceInfo, DmAccount, Elapsed, Format, Origin, Tree, Trust, account_of, rfc3339,
};
use proptest::prelude::*;
use serde_json::Value;

const DMS: &str = "dms";
/// A second factory server whose ServerID maps to the same node name as `dms_example`.
const DMS2: &str = "dms.example";
const GW: &str = "gw-l";
/// The gateway bootstrap is applied at this time and asks for this interval.
const ISSUED: i64 = 1_800_000_000;
const INTERVAL: u64 = 600;
const EVERYONE: &str = "Add=*&Delete=*&Exec=*&Get=*&Replace=*";

fn account(id: &str) -> DmAccount {
    DmAccount::new(
        id,
        &format!("http://{id}/dm"),
        AuthType::Md5,
        "d",
        "c",
        id,
        "s",
    )
}

/// A device with two factory accounts and a gateway account from a local bootstrap
/// server (restricted, lapsing INTERVAL after ISSUED), where ACLs would let the
/// gateway do anything: only the trust rules stand in its way.
fn device() -> Tree {
    let mut tree = Tree::new_device(&DeviceInfo {
        dev_id: "IMEI:1".into(),
        ..DeviceInfo::default()
    });
    tree.add_factory_account(&account(DMS)).unwrap();
    tree.add_factory_account(&account(DMS2)).unwrap();
    tree.apply_gateway_bootstrap(&account(GW), ISSUED, INTERVAL)
        .unwrap();
    for uri in [
        ".",
        "./DMAcc",
        "./DMAcc/dms",
        "./DMAcc/dms_example",
        "./DMAcc/gw-l",
    ] {
        tree.set_acl(uri, Acl::parse(EVERYONE).unwrap()).unwrap();
    }
    tree.set_leaf("./Vendor/Leaf", "v", Format::Chr).unwrap();
    // The firmware object, open to everyone by its ACL too.
    tree.install_fumo(gwmo_tree::fumo::OBJECT, Acl::parse(EVERYONE).unwrap())
        .unwrap();
    tree
}

fn item(target: &str, data: &str) -> Item {
    Item {
        target: Some(Location::new(target)),
        data: Some(Data::Text(data.into())),
        ..Item::default()
    }
}

fn items(target: &str, data: &str) -> ItemCommand {
    ItemCommand {
        cmd_id: 1,
        meta: None,
        items: vec![item(target, data)],
    }
}

fn add(target: &str, data: &str) -> Command {
    Command::Add(items(target, data))
}

fn replace(target: &str, data: &str) -> Command {
    Command::Replace(items(target, data))
}

fn delete(target: &str) -> Command {
    Command::Delete(items(target, ""))
}

fn copy(source: &str, target: &str) -> Command {
    Command::Copy(ItemCommand {
        cmd_id: 1,
        meta: None,
        items: vec![Item {
            target: Some(Location::new(target)),
            source: Some(Location::new(source)),
            ..Item::default()
        }],
    })
}

fn exec(target: &str) -> Command {
    Command::Exec(Exec {
        cmd_id: 1,
        meta: None,
        correlator: None,
        items: vec![item(target, "")],
    })
}

fn codes(tree: &mut Tree, server: &str, command: &Command) -> Vec<u16> {
    tree.execute(server, 1, command, &mut CmdIds::new())
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some(s.code.get()),
            _ => None,
        })
        .collect()
}

/// The node of account `<name>` with everything below it and its properties.
fn account_node(tree: &Tree, name: &str) -> Option<Value> {
    let json = serde_json::to_value(tree).unwrap();
    let node = json["root"]["content"]["interior"]["DMAcc"]["content"]["interior"][name].clone();
    (!node.is_null()).then_some(node)
}

fn dmacc_children(tree: &Tree) -> BTreeSet<String> {
    tree.children("./DMAcc")
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Every node path of the tree.
fn paths(tree: &Tree) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![".".to_owned()];
    while let Some(path) = stack.pop() {
        for child in tree.children(&path).unwrap_or_default() {
            stack.push(format!("{path}/{child}"));
        }
        found.insert(path);
    }
    found
}

/// Every ServerID any ACL of the tree names.
fn acl_names(tree: &Tree) -> BTreeSet<String> {
    paths(tree)
        .iter()
        .filter_map(|path| tree.acl(path))
        .flat_map(|acl| {
            acl.to_string()
                .split('&')
                .filter_map(|entry| entry.split_once('=').map(|(_, s)| s.to_owned()))
                .flat_map(|servers| servers.split('+').map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every command kind that could change the pre-existing account of the DM Server.
fn changes_to_the_dms_account() -> Vec<(&'static str, Command)> {
    vec![
        ("Add", add("./DMAcc/dms/Name", "hijacked")),
        (
            "Replace",
            replace("./DMAcc/dms/AppAddr/1/Addr", "http://evil/dm"),
        ),
        (
            "Replace ACL",
            replace("./DMAcc/dms/AppAddr?prop=ACL", "Get=*"),
        ),
        ("Delete", delete("./DMAcc/dms")),
        ("Delete interior", delete("./DMAcc/dms/AppAuth")),
        (
            "Copy onto",
            copy("./Vendor/Leaf", "./DMAcc/dms/AppAddr/1/Addr"),
        ),
        ("Exec", exec("./DMAcc/dms")),
    ]
}

#[test]
fn req_8x2_a_restricted_gateway_may_not_change_pre_existing_dmacc_objects() {
    for (name, command) in changes_to_the_dms_account() {
        let mut tree = device();
        let before = tree.clone();
        assert_eq!(codes(&mut tree, GW, &command), vec![425], "{name}");
        assert_eq!(tree, before, "{name} changed the tree");
        assert!(tree.take_exec_requests().is_empty(), "{name}");
    }
}

#[test]
fn req_8x2_an_atomic_with_one_refused_command_changes_nothing_at_all() {
    for (name, refused) in changes_to_the_dms_account() {
        let mut tree = device();
        let before = tree.clone();
        let atomic = Command::Atomic(Container {
            cmd_id: 1,
            meta: None,
            commands: vec![
                replace("./Vendor/Leaf", "changed"),
                add("./DMAcc/made/ServerID", "made"),
                refused,
            ],
        });
        assert_eq!(
            codes(&mut tree, GW, &atomic),
            vec![507, 216, 216, 425],
            "{name}"
        );
        assert_eq!(tree, before, "{name}");
    }
}

#[test]
fn req_8x2_a_sequence_runs_what_is_allowed_and_refuses_the_rest() {
    for (name, refused) in changes_to_the_dms_account() {
        let mut tree = device();
        let sequence = Command::Sequence(Container {
            cmd_id: 1,
            meta: None,
            commands: vec![refused, replace("./Vendor/Leaf", "changed")],
        });
        assert_eq!(
            codes(&mut tree, GW, &sequence),
            vec![200, 425, 200],
            "{name}"
        );
        assert_eq!(tree.value("./Vendor/Leaf"), Some("changed"));
        assert_eq!(
            account_node(&tree, "dms"),
            account_node(&device(), "dms"),
            "{name}"
        );
    }
}

#[test]
fn req_8x2_the_restricted_gateway_manages_its_own_account_and_what_it_made() {
    let mut tree = device();
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &replace("./DMAcc/gw-l/AppAddr/1/Addr", "http://gw2/dm")
        ),
        vec![200]
    );
    assert_eq!(
        codes(&mut tree, GW, &add("./DMAcc/other/ServerID", "other-dms")),
        vec![200]
    );
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &replace("./DMAcc/other/ServerID", "other-dms2")
        ),
        vec![200]
    );
    let p = tree.provenance_of("other-dms2").unwrap();
    assert_eq!(
        (p.origin, p.parent.as_deref(), p.trust),
        (Origin::ViaGateway, Some(GW), Trust::Restricted)
    );
}

/// Finding 1: deleting its own `Ext`, then writing provenance that claims trust.
#[test]
fn finding_1_a_restricted_gateway_cannot_lift_its_own_restriction() {
    let mut tree = device();
    let before = tree.clone();
    for (path, value) in [
        ("./DMAcc/gw-l/Ext/GwBoot/Parent", DMS),
        ("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated"),
        ("./DMAcc/gw-l/Ext/GwBoot/Origin", "factory"),
        ("./DMAcc/gw-l/Ext/GwBoot/LapseAt", ""),
        ("./DMAcc/gw-l/Ext/GwBoot/Confirmed", "true"),
    ] {
        assert_eq!(
            codes(&mut tree, GW, &replace(path, value)),
            vec![425],
            "{path}"
        );
        assert_eq!(codes(&mut tree, GW, &add(path, value)), vec![425], "{path}");
    }
    for path in [
        "./DMAcc/gw-l/Ext",
        "./DMAcc/gw-l/Ext/GwBoot",
        "./DMAcc/gw-l/Ext/GwBoot/Trust",
    ] {
        assert_eq!(codes(&mut tree, GW, &delete(path)), vec![425], "{path}");
    }
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &copy(
                "./DMAcc/dms/Ext/GwBoot/Origin",
                "./DMAcc/gw-l/Ext/GwBoot/Origin"
            )
        ),
        vec![425]
    );
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &replace("./DMAcc/gw-l/Ext/GwBoot?prop=ACL", EVERYONE)
        ),
        vec![425]
    );
    assert_eq!(tree, before);
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &replace("./DMAcc/dms/AppAddr/1/Addr", "http://evil/dm")
        ),
        vec![425]
    );
}

/// Finding 2: an account the gateway made, stripped of its provenance, still lapses.
#[test]
fn finding_2_what_the_gateway_made_cannot_escape_the_lapse() {
    let mut tree = device();
    codes(&mut tree, GW, &add("./DMAcc/sneaky/ServerID", "sneaky"));
    assert_eq!(
        codes(&mut tree, GW, &delete("./DMAcc/sneaky/Ext")),
        vec![425]
    );
    // Even its own removal leaves the record of what it made.
    assert_eq!(codes(&mut tree, GW, &delete("./DMAcc/gw-l")), vec![200]);
    assert!(tree.exists("./DMAcc/sneaky"));
    let removed = tree.lapse(
        ISSUED + INTERVAL as i64,
        Elapsed::Measured(Duration::from_secs(INTERVAL)),
    );
    assert!(removed.contains(&"sneaky".to_owned()), "{removed:?}");
    assert_eq!(
        dmacc_children(&tree),
        BTreeSet::from(["dms".into(), "dms_example".into()])
    );
}

/// Finding 3: the gateway may not rename itself; lapse follows the record, not names.
#[test]
fn finding_3_a_restricted_gateway_cannot_rename_itself_out_of_its_lapse() {
    let mut tree = device();
    assert_eq!(
        codes(&mut tree, GW, &replace("./DMAcc/gw-l/ServerID", "gw-new")),
        vec![425]
    );
    assert_eq!(
        codes(&mut tree, GW, &delete("./DMAcc/gw-l/ServerID")),
        vec![425]
    );
    codes(&mut tree, GW, &add("./DMAcc/made/ServerID", "made"));
    // What it made may be renamed (to a ServerID the device does not have), and still lapses.
    assert_eq!(
        codes(&mut tree, GW, &replace("./DMAcc/made/ServerID", "renamed")),
        vec![200]
    );
    let removed = tree.lapse(ISSUED + INTERVAL as i64, Elapsed::Measured(Duration::ZERO));
    assert_eq!(
        removed.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["gw-l".into(), "renamed".into()])
    );
}

/// Finding 4: no account may take the ServerID of another, whoever adds it.
#[test]
fn finding_4_no_one_can_add_a_second_account_for_an_existing_server() {
    for writer in [GW, DMS] {
        let mut tree = device();
        let before = tree.clone();
        for command in [
            add("./DMAcc/aaa/ServerID", DMS),
            add("./DMAcc/aaa/ServerID", GW),
            Command::Atomic(Container {
                cmd_id: 1,
                meta: None,
                commands: vec![
                    add("./DMAcc/aaa/ServerID", "fresh"),
                    replace("./DMAcc/aaa/ServerID", DMS2),
                ],
            }),
        ] {
            let codes = codes(&mut tree, writer, &command);
            assert!(codes.contains(&425), "{writer}: {codes:?}");
            assert_eq!(tree, before, "{writer}");
        }
        assert_eq!(account_of(&tree, DMS).as_deref(), Some("dms"));
    }
}

#[test]
fn finding_4_a_session_never_guesses_between_two_accounts() {
    let mut tree = Tree::new_device(&DeviceInfo::default());
    gwmo_tree::write_dm_account(&mut tree, "a", &account(DMS)).unwrap();
    gwmo_tree::write_dm_account(&mut tree, "b", &account(DMS)).unwrap();
    assert_eq!(account_of(&tree, DMS), None);
    assert_eq!(
        tree.provenance_of(DMS),
        None,
        "an unrecorded account is not trusted"
    );
}

/// Finding 5: a local bootstrap whose ServerID maps onto a factory account's node.
#[test]
fn finding_5_a_local_bootstrap_takes_a_fresh_node() {
    let mut tree = Tree::new_device(&DeviceInfo::default());
    tree.add_factory_account(&account("dms.example")).unwrap();
    let node = tree
        .apply_gateway_bootstrap(&account("dms_example"), ISSUED, INTERVAL)
        .unwrap();
    assert_ne!(node, "dms_example");
    tree.lapse(ISSUED + INTERVAL as i64, Elapsed::Measured(Duration::ZERO));
    assert_eq!(
        account_of(&tree, "dms.example").as_deref(),
        Some("dms_example")
    );
}

#[test]
fn req_8x2_validation_by_a_previously_bootstrapped_server_lifts_the_restriction() {
    let mut tree = device();
    let validate = replace("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated");
    assert_eq!(codes(&mut tree, DMS, &validate), vec![200]);
    let p = tree.provenance_of(GW).unwrap();
    assert_eq!(p.trust, Trust::Validated);
    assert_eq!(
        p.parent.as_deref(),
        Some(DMS),
        "the validator vouches for it"
    );
    assert_eq!(
        tree.value("./DMAcc/gw-l/Ext/GwBoot/Trust"),
        Some("validated")
    );
    let hijack = replace("./DMAcc/dms/AppAddr/1/Addr", "http://gw-chosen/dm");
    assert_eq!(codes(&mut tree, GW, &hijack), vec![200]);
    // Still no writing of the mirror, nor renaming onto another server.
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &replace("./DMAcc/gw-l/Ext/GwBoot/LapseAt", "")
        ),
        vec![425]
    );
    assert_eq!(
        codes(&mut tree, GW, &replace("./DMAcc/gw-l/ServerID", DMS2)),
        vec![425]
    );
}

#[test]
fn req_8x2_a_restricted_gateway_may_not_update_firmware_until_a_trusted_server_validates_it() {
    use gwmo_tree::fumo::OBJECT;
    let mut tree = device();
    // As a gwmo device makes it: its factory servers may update the firmware.
    tree.set_acl(OBJECT, Acl::parse("Get=*&Replace=dms&Exec=dms").unwrap())
        .unwrap();
    let url = replace(
        &format!("{OBJECT}/DownloadAndUpdate/PkgURL"),
        "https://gw-chosen/fw",
    );
    let start = exec(&format!("{OBJECT}/DownloadAndUpdate"));
    assert_eq!(codes(&mut tree, GW, &url), vec![425]);
    assert_eq!(codes(&mut tree, GW, &start), vec![425]);
    assert!(tree.take_exec_requests().is_empty(), "nothing started");
    assert_eq!(
        tree.value(&format!("{OBJECT}/DownloadAndUpdate/PkgURL")),
        Some("")
    );
    // Validated by the factory server, the gateway acts with its rights: the Exec is
    // accepted for later processing (FUMO: 202), not run now.
    let validate = replace("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated");
    assert_eq!(codes(&mut tree, DMS, &validate), vec![200]);
    assert_eq!(codes(&mut tree, GW, &url), vec![200]);
    assert_eq!(codes(&mut tree, GW, &start), vec![202]);
    let started = tree.take_exec_requests();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].uri, format!("{OBJECT}/DownloadAndUpdate"));
}

#[test]
fn a_restricted_gateway_changes_no_firmware_object_even_where_an_acl_would_let_it() {
    use gwmo_tree::fumo::OBJECT;
    let mut tree = device();
    let url = format!("{OBJECT}/DownloadAndUpdate/PkgURL");
    assert_eq!(
        codes(&mut tree, GW, &replace(&url, "https://gw-chosen/fw")),
        vec![425]
    );
    assert_eq!(
        codes(&mut tree, GW, &exec(&format!("{OBJECT}/DownloadAndUpdate"))),
        vec![425]
    );
    assert_eq!(
        codes(&mut tree, GW, &add("./FUMO/Mine/PkgName", "x")),
        vec![425]
    );
    assert_eq!(codes(&mut tree, GW, &delete(OBJECT)), vec![425]);
    assert!(tree.take_exec_requests().is_empty());
    assert_eq!(tree.value(&url), Some(""));
    assert!(!tree.exists("./FUMO/Mine"));
    // The factory server, fully trusted, does all of it.
    assert_eq!(
        codes(&mut tree, DMS, &replace(&url, "https://dms/fw")),
        vec![200]
    );
    assert_eq!(
        codes(
            &mut tree,
            DMS,
            &exec(&format!("{OBJECT}/DownloadAndUpdate"))
        ),
        vec![202]
    );
}

#[test]
fn req_8x2_no_one_else_may_validate_the_gateway() {
    let mut tree = device();
    codes(&mut tree, GW, &add("./DMAcc/other/ServerID", "other-dms"));
    // A server the factory server adds after the gateway came is no previous one.
    codes(&mut tree, DMS, &add("./DMAcc/later/ServerID", "later-dms"));
    let validate = replace("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated");
    for server in [GW, "other-dms", "later-dms", "stranger"] {
        assert_eq!(
            codes(&mut tree, server, &validate),
            vec![425],
            "{server} validated the gateway"
        );
        assert_eq!(tree.provenance_of(GW).unwrap().trust, Trust::Restricted);
    }
}

#[test]
fn req_8x1_the_server_that_creates_a_gateway_account_declares_it_server_assisted() {
    let mut tree = device();
    let atomic = Command::Atomic(Container {
        cmd_id: 1,
        meta: None,
        commands: vec![
            add("./DMAcc/gw-1/ServerID", "gw-1"),
            add("./DMAcc/gw-1/Ext/GwBoot/Origin", "server-assisted"),
            add("./DMAcc/gw-1/Ext/GwBoot/Parent", DMS),
            add("./DMAcc/gw-1/Ext/GwBoot/Trust", "full"),
            add("./DMAcc/gw-1/Ext/GwBoot/LapseAt", ""),
            add("./DMAcc/gw-1/Ext/GwBoot/Confirmed", "true"),
        ],
    });
    assert_eq!(codes(&mut tree, DMS, &atomic), vec![200; 7]);
    let p = tree.provenance_of("gw-1").unwrap();
    assert_eq!(
        (p.origin, p.trust, p.parent.as_deref()),
        (Origin::ServerAssisted, Trust::Full, Some(DMS))
    );
    // Another server cannot say so of it, nor the factory server of a gateway it did
    // not create, nor claim what the mirror does not show.
    for (server, path, value) in [
        (DMS2, "./DMAcc/gw-1/Ext/GwBoot/Origin", "server"),
        (DMS, "./DMAcc/gw-l/Ext/GwBoot/Origin", "server-assisted"),
        (DMS, "./DMAcc/gw-1/Ext/GwBoot/Parent", DMS2),
        (DMS, "./DMAcc/gw-1/Ext/GwBoot/Origin", "factory"),
    ] {
        assert_eq!(
            codes(&mut tree, server, &replace(path, value)),
            vec![425],
            "{server} {path}"
        );
    }
}

#[test]
fn req_8x2_an_unconfirmed_bootstrap_lapses_with_everything_that_came_via_the_gateway() {
    let mut tree = device();
    let before = tree.clone();
    codes(&mut tree, GW, &add("./DMAcc/other/ServerID", "other-dms"));
    codes(&mut tree, GW, &add("./Vendor/GatewayWasHere", "1"));
    codes(
        &mut tree,
        GW,
        &replace("./Vendor?prop=ACL", "Get=*&Add=gw-l+other-dms"),
    );
    // The server the gateway brought in bootstraps yet another: transitively via it.
    codes(
        &mut tree,
        "other-dms",
        &add("./DMAcc/third/ServerID", "third-dms"),
    );
    assert_eq!(
        tree.provenance_of("third-dms").unwrap().parent.as_deref(),
        Some("other-dms")
    );
    let deadline = rfc3339(ISSUED + INTERVAL as i64);
    assert_eq!(
        tree.provenance_of("third-dms").unwrap().lapse_at.as_deref(),
        Some(deadline.as_str()),
        "it lapses with the gateway"
    );

    assert!(
        tree.lapse(
            ISSUED + INTERVAL as i64 - 1,
            Elapsed::Measured(Duration::from_secs(INTERVAL - 1))
        )
        .is_empty(),
        "lapsed before its deadline"
    );
    let removed: BTreeSet<String> = tree
        .lapse(
            ISSUED + INTERVAL as i64,
            Elapsed::Measured(Duration::from_secs(1)),
        )
        .into_iter()
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from(["gw-l".into(), "other-dms".into(), "third-dms".into()])
    );
    assert_eq!(
        dmacc_children(&tree),
        BTreeSet::from(["dms".into(), "dms_example".into()])
    );
    assert!(!tree.exists("./Vendor/GatewayWasHere"));
    assert!(paths(&tree).is_subset(&paths(&before)));
    let names = acl_names(&tree);
    for gone in ["gw-l", "other-dms", "third-dms"] {
        assert!(
            !names.contains(gone),
            "an ACL still names {gone}: {names:?}"
        );
    }
}

#[test]
fn req_8x2_a_confirmed_bootstrap_does_not_lapse() {
    let mut tree = device();
    assert!(tree.confirm_gateway(GW).unwrap());
    assert!(
        tree.lapse(
            ISSUED + 10 * INTERVAL as i64,
            Elapsed::Measured(Duration::from_secs(10 * INTERVAL))
        )
        .is_empty()
    );
    assert!(tree.exists("./DMAcc/gw-l"));
    let p = tree.provenance_of(GW).unwrap();
    assert!(p.confirmed && p.lapse_at.is_none());
    assert!(
        !tree.confirm_gateway(DMS).unwrap(),
        "a factory account has nothing to confirm"
    );
}

#[test]
fn req_8x2_a_clock_ahead_at_bootstrap_does_not_stretch_the_interval() {
    let mut tree = device();
    let year = 365 * 86_400;
    let mut ahead = Tree::new_device(&DeviceInfo::default());
    ahead.add_factory_account(&account(DMS)).unwrap();
    ahead
        .apply_gateway_bootstrap(&account(GW), ISSUED + year, INTERVAL)
        .unwrap();
    // The clock is set right; the device measured 599 s, then one more.
    assert!(
        ahead
            .lapse(ISSUED + 599, Elapsed::Measured(Duration::from_secs(599)))
            .is_empty()
    );
    assert_eq!(ahead.next_lapse(ISSUED + 599), Some(Duration::from_secs(1)));
    assert_eq!(
        ahead.lapse(ISSUED + 600, Elapsed::Measured(Duration::from_secs(1))),
        vec![GW.to_owned()]
    );
    // Off across the deadline, the wall clock counts; never backwards.
    assert!(
        tree.lapse(ISSUED - year, Elapsed::SinceCheckpoint)
            .is_empty()
    );
    assert!(
        tree.lapse(ISSUED - year + 300, Elapsed::SinceCheckpoint)
            .is_empty()
    );
    assert_eq!(
        tree.lapse(ISSUED - year + 600, Elapsed::SinceCheckpoint),
        vec![GW.to_owned()],
        "300 s measured on the device plus 300 s off"
    );
}

#[test]
fn a_tree_round_trips_with_its_records() {
    let mut tree = device();
    codes(&mut tree, GW, &add("./DMAcc/other/ServerID", "other-dms"));
    let json = serde_json::to_string(&tree).unwrap();
    let back: Tree = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tree);
    assert_eq!(
        back.provenance_of("other-dms").unwrap().trust,
        Trust::Restricted
    );
}

// ---- Property tests: a hostile gateway ----

/// Node names under ./DMAcc the generated commands aim at: the factory accounts, the
/// gateway's, and new ones, one sorting before every other.
const ACCOUNTS: [&str; 5] = ["dms", "dms_example", "gw-l", "aaa", "zzz"];
const SUFFIXES: [&str; 14] = [
    "",
    "/ServerID",
    "/Name",
    "/AppAddr",
    "/AppAddr/1/Addr",
    "/AppAuth",
    "/AppAuth/1/AAuthSecret",
    "/Ext",
    "/Ext/GwBoot",
    "/Ext/GwBoot/Origin",
    "/Ext/GwBoot/Parent",
    "/Ext/GwBoot/Trust",
    "/Ext/GwBoot/LapseAt",
    "/Ext/GwBoot/Confirmed",
];
/// ServerIDs a hostile gateway would try: the device's own ones, and fresh ones.
const SERVER_IDS: [&str; 5] = [DMS, DMS2, GW, "fresh", "other"];
/// What it would write into provenance.
const PROVENANCE: [&str; 8] = [
    "validated",
    "full",
    "factory",
    "server-assisted",
    "local-bootstrap",
    DMS,
    "true",
    "",
];
const OTHER_VALUES: [&str; 4] = ["http://evil/dm", EVERYONE, "Get=gw-l", "x"];

/// A target, and a value of the kind a hostile gateway would write there.
fn target_and_value() -> impl Strategy<Value = (String, String)> {
    let pick = |values: &'static [&'static str]| prop::sample::select(values.to_vec());
    let account = pick(&ACCOUNTS);
    let server_id = (account.clone(), pick(&SERVER_IDS))
        .prop_map(|(a, v)| (format!("./DMAcc/{a}/ServerID"), v.to_owned()));
    let provenance = (account.clone(), pick(&SUFFIXES[7..]), pick(&PROVENANCE))
        .prop_map(|(a, s, v)| (format!("./DMAcc/{a}{s}"), v.to_owned()));
    let other = (account, pick(&SUFFIXES), pick(&OTHER_VALUES))
        .prop_map(|(a, s, v)| (format!("./DMAcc/{a}{s}"), v.to_owned()));
    let fixed = (
        pick(&[
            ".",
            "./DMAcc",
            "./Vendor",
            "./Vendor/Leaf",
            "./Vendor/New",
            "./DevInfo/Ext",
            "./FUMO",
            "./FUMO/Firmware",
            "./FUMO/Firmware/DownloadAndUpdate",
            "./FUMO/Firmware/DownloadAndUpdate/PkgURL",
            "./FUMO/Firmware/Download",
            "./FUMO/Firmware/Update",
            "./FUMO/Firmware/State",
            "./FUMO/Other",
        ]),
        pick(&OTHER_VALUES),
    )
        .prop_map(|(t, v)| (t.to_owned(), v.to_owned()));
    let base = prop_oneof![2 => server_id, 2 => provenance, 3 => other, 2 => fixed];
    (base, prop::bool::weighted(0.1)).prop_map(|((path, value), acl)| {
        if acl {
            (format!("{path}?prop=ACL"), value)
        } else {
            (path, value)
        }
    })
}

fn leaf_command() -> impl Strategy<Value = Command> {
    (
        0..6usize,
        target_and_value(),
        target_and_value(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(kind, (target, value), (source, _), interior)| {
            let mut command = items(&target, &value);
            if interior {
                command.meta = Some(Box::new(Meta {
                    format: Some("node".into()),
                    ..Meta::default()
                }));
            }
            match kind {
                0 => Command::Add(command),
                1 => Command::Replace(command),
                2 => delete(&target),
                3 => copy(&source, &target),
                4 => exec(&target),
                _ => Command::Get(command),
            }
        })
}

/// A generated command, shown compactly when proptest reports a shrunk failure.
#[derive(Clone)]
struct Hostile(Command);

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Command::Atomic(c) | Command::Sequence(c) => {
                let members: Vec<Hostile> = c.commands.iter().cloned().map(Hostile).collect();
                write!(f, "{}{:?}", self.0.name(), members)
            }
            command => {
                let (items, format) = match command {
                    Command::Add(c)
                    | Command::Replace(c)
                    | Command::Delete(c)
                    | Command::Get(c)
                    | Command::Copy(c) => {
                        (&c.items, c.meta.as_ref().and_then(|m| m.format.as_deref()))
                    }
                    Command::Exec(e) => (&e.items, None),
                    _ => return write!(f, "{}", command.name()),
                };
                write!(f, "{}", command.name())?;
                for item in items {
                    if let Some(source) = &item.source {
                        write!(f, " {}", source.uri)?;
                    }
                    if let Some(target) = &item.target {
                        write!(f, " {}", target.uri)?;
                    }
                    if let (Some(Data::Text(data)), false) = (
                        &item.data,
                        matches!(
                            command,
                            Command::Delete(_)
                                | Command::Copy(_)
                                | Command::Get(_)
                                | Command::Exec(_)
                        ),
                    ) {
                        write!(f, " = {data:?}")?;
                    }
                }
                if let Some(format) = format {
                    write!(f, " ({format})")?;
                }
                Ok(())
            }
        }
    }
}

fn hostile_command() -> impl Strategy<Value = Hostile> {
    hostile_tree().prop_map(Hostile)
}

fn hostile_tree() -> impl Strategy<Value = Command> {
    leaf_command().prop_recursive(2, 12, 4, |inner| {
        (prop::collection::vec(inner, 1..4), any::<bool>()).prop_map(|(commands, atomic)| {
            let container = Container {
                cmd_id: 1,
                meta: None,
                commands,
            };
            if atomic {
                Command::Atomic(container)
            } else {
                Command::Sequence(container)
            }
        })
    })
}

/// The gateway's session, then what lapse leaves: the rules over everything that
/// changed, not over the paths the commands named.
fn check_restricted_gateway(commands: &[Hostile]) -> Result<(), TestCaseError> {
    let mut tree = device();
    let before = tree.clone();
    let firmware = |tree: &Tree| {
        serde_json::to_value(tree).unwrap()["root"]["content"]["interior"]["FUMO"].clone()
    };
    for Hostile(command) in commands {
        tree.execute(GW, 1, command, &mut CmdIds::new());
        // The firmware: nothing changed, nothing started.
        prop_assert_eq!(
            firmware(&tree),
            firmware(&before),
            "./FUMO changed by {:?}",
            Hostile(command.clone())
        );
        let started: Vec<String> = tree
            .take_exec_requests()
            .into_iter()
            .map(|r| r.uri)
            .collect();
        prop_assert!(
            !started.iter().any(|uri| uri.starts_with("./FUMO")),
            "{:?} started {:?}",
            Hostile(command.clone()),
            started
        );
        for pre_existing in ["dms", "dms_example"] {
            prop_assert!(
                account_node(&tree, pre_existing) == account_node(&before, pre_existing),
                "{} changed by {:?}",
                pre_existing,
                Hostile(command.clone())
            );
        }
        prop_assert_eq!(
            account_of(&tree, DMS),
            Some("dms".to_owned()),
            "after {:?}",
            Hostile(command.clone())
        );
        prop_assert_eq!(
            account_of(&tree, DMS2),
            Some("dms_example".to_owned()),
            "after {:?}",
            Hostile(command.clone())
        );
        prop_assert_eq!(
            tree.provenance_of(DMS).map(|p| p.origin),
            Some(Origin::Factory)
        );
        prop_assert_eq!(
            tree.provenance_of(DMS2).map(|p| p.origin),
            Some(Origin::Factory)
        );
        prop_assert_eq!(tree.acl("."), before.acl("."));
        prop_assert_eq!(tree.acl("./DMAcc"), before.acl("./DMAcc"));
        // While the node is still the gateway's own account (a node it removed may be
        // taken by one it makes), it keeps its ServerID.
        if tree.value("./DMAcc/gw-l/Ext/GwBoot/Origin") == Some("local-bootstrap") {
            prop_assert_eq!(
                tree.value("./DMAcc/gw-l/ServerID"),
                Some(GW),
                "it renamed itself"
            );
        }
        if let Some(gateway) = tree.provenance_of(GW) {
            prop_assert_eq!(gateway.trust, Trust::Restricted);
            prop_assert!(!gateway.confirmed);
        }
    }
    let removed = tree.lapse(
        ISSUED + INTERVAL as i64,
        Elapsed::Measured(Duration::from_secs(INTERVAL)),
    );
    prop_assert!(removed.contains(&GW.to_owned()) || !before.exists("./DMAcc/gw-l"));
    prop_assert_eq!(
        dmacc_children(&tree),
        BTreeSet::from(["dms".to_owned(), "dms_example".to_owned()])
    );
    for pre_existing in ["dms", "dms_example"] {
        prop_assert_eq!(
            account_node(&tree, pre_existing),
            account_node(&before, pre_existing)
        );
    }
    let created: Vec<String> = paths(&tree).difference(&paths(&before)).cloned().collect();
    prop_assert!(created.is_empty(), "left behind: {:?}", created);
    let names = acl_names(&tree);
    let known: BTreeSet<String> = ["*", DMS, DMS2].into_iter().map(str::to_owned).collect();
    prop_assert!(names.is_subset(&known), "ACLs still name {:?}", names);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("GWMO_TRUST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1024)
    ))]

    #[test]
    fn req_8x2_a_restricted_gateway_never_changes_what_existed_and_lapses_whole(
        commands in prop::collection::vec(hostile_command(), 1..10)
    ) {
        check_restricted_gateway(&commands)?;
    }

    /// Once validated by the factory server, the gateway shares its rights: it may
    /// change the pre-existing accounts (every leaf the factory server may change).
    #[test]
    fn req_8x2_a_validated_gateway_may_change_pre_existing_accounts(
        node in prop::sample::select(vec!["dms", "dms_example"]),
        leaf in prop::sample::select(vec!["/Name", "/AppAddr/1/Addr", "/AppAuth/1/AAuthSecret", "/ServerID"]),
        value in "[a-z]{1,8}\\.new",
    ) {
        let mut tree = Tree::new_device(&DeviceInfo::default());
        tree.add_factory_account(&account(DMS)).unwrap();
        tree.add_factory_account(&account(DMS2)).unwrap();
        tree.apply_gateway_bootstrap(&account(GW), ISSUED, INTERVAL).unwrap();
        let owner = if node == "dms" { DMS } else { DMS2 };
        let validate = replace("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated");
        prop_assert_eq!(codes(&mut tree, owner, &validate), vec![200]);
        let path = format!("./DMAcc/{node}{leaf}");
        let command = if tree.exists(&path) { replace(&path, &value) } else { add(&path, &value) };
        prop_assert_eq!(codes(&mut tree, GW, &command), vec![200]);
        prop_assert_eq!(tree.value(&path), Some(value.as_str()));
    }
}
