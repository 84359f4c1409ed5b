//! The trust rules of Local DM Bootstrap Server Assisted Gateway Bootstrapping (seed
//! 8.x.2): what a gateway that is not fully trusted may not touch, for every command
//! that could, who may validate it, and the lapse of its bootstrap.

use gwmo_proto::auth::AuthType;
use gwmo_proto::{CmdIds, Command, Container, Data, Exec, Item, ItemCommand, Location};
use gwmo_tree::{
    Acl, DeviceInfo, DmAccount, Format, Origin, Provenance, Tree, Trust, provenance,
    write_dm_account, write_provenance,
};

const DMS: &str = "dms";
const GW: &str = "gw-l";
const DEADLINE: &str = "2026-11-25T12:00:00Z";

/// A device with a factory DM Server account and a gateway account from a local
/// bootstrap server (restricted, lapsing at DEADLINE), where ACLs would let the gateway
/// do anything: only the trust rules stand in its way.
fn device() -> Tree {
    let mut tree = Tree::new_device(&DeviceInfo {
        dev_id: "IMEI:1".into(),
        ..DeviceInfo::default()
    });
    let account = |id: &str| {
        DmAccount::new(
            id,
            &format!("http://{id}/dm"),
            AuthType::Md5,
            "d",
            "c",
            id,
            "s",
        )
    };
    write_dm_account(&mut tree, "dms", &account(DMS)).unwrap();
    write_dm_account(&mut tree, GW, &account(GW)).unwrap();
    let local = Provenance {
        origin: Origin::LocalBootstrap,
        parent: None,
        trust: Trust::Restricted,
        lapse_at: Some(DEADLINE.into()),
        confirmed: false,
    };
    write_provenance(&mut tree, GW, &local).unwrap();
    let everyone = Acl::parse("Add=*&Delete=*&Exec=*&Get=*&Replace=*").unwrap();
    for uri in [".", "./DMAcc", "./DMAcc/dms", "./DMAcc/gw-l"] {
        tree.set_acl(uri, everyone.clone()).unwrap();
    }
    tree.set_leaf("./Vendor/Leaf", "v", Format::Chr).unwrap();
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

fn codes(tree: &mut Tree, server: &str, command: &Command) -> Vec<u16> {
    tree.execute(server, 1, command, &mut CmdIds::new())
        .iter()
        .filter_map(|c| {
            if let Command::Status(s) = c {
                Some(s.code)
            } else {
                None
            }
        })
        .collect()
}

fn snapshot(tree: &Tree) -> String {
    serde_json::to_string(tree).unwrap()
}

/// Every command kind that could change the pre-existing account of the DM Server.
fn changes_to_the_dms_account() -> Vec<(&'static str, Command)> {
    let copy = Command::Copy(ItemCommand {
        cmd_id: 1,
        meta: None,
        items: vec![Item {
            target: Some(Location::new("./DMAcc/dms/AppAddr/1/Addr")),
            source: Some(Location::new("./Vendor/Leaf")),
            ..Item::default()
        }],
    });
    vec![
        ("Add", Command::Add(items("./DMAcc/dms/Name", "hijacked"))),
        (
            "Replace",
            Command::Replace(items("./DMAcc/dms/AppAddr/1/Addr", "http://evil/dm")),
        ),
        (
            "Replace ACL",
            Command::Replace(items("./DMAcc/dms/AppAddr?prop=ACL", "Get=*")),
        ),
        ("Delete", Command::Delete(items("./DMAcc/dms", ""))),
        ("Copy onto", copy),
        (
            "Exec",
            Command::Exec(Exec {
                cmd_id: 1,
                meta: None,
                correlator: None,
                items: vec![item("./DMAcc/dms", "")],
            }),
        ),
    ]
}

#[test]
fn req_8x2_a_restricted_gateway_may_not_change_pre_existing_dmacc_objects() {
    for (name, command) in changes_to_the_dms_account() {
        let mut tree = device();
        let before = snapshot(&tree);
        assert_eq!(codes(&mut tree, GW, &command), vec![425], "{name}");
        assert_eq!(snapshot(&tree), before, "{name} changed the tree");
        assert!(tree.take_exec_requests().is_empty(), "{name}");
    }
}

#[test]
fn req_8x2_an_atomic_with_one_refused_command_changes_nothing_at_all() {
    for (name, refused) in changes_to_the_dms_account() {
        let mut tree = device();
        let before = snapshot(&tree);
        let atomic = Command::Atomic(Container {
            cmd_id: 1,
            meta: None,
            commands: vec![Command::Replace(items("./Vendor/Leaf", "changed")), refused],
        });
        assert_eq!(codes(&mut tree, GW, &atomic), vec![507, 216, 425], "{name}");
        assert_eq!(snapshot(&tree), before, "{name}");
    }
}

#[test]
fn req_8x2_a_sequence_runs_what_is_allowed_and_refuses_the_rest() {
    for (name, refused) in changes_to_the_dms_account() {
        let mut tree = device();
        let sequence = Command::Sequence(Container {
            cmd_id: 1,
            meta: None,
            commands: vec![refused, Command::Replace(items("./Vendor/Leaf", "changed"))],
        });
        assert_eq!(
            codes(&mut tree, GW, &sequence),
            vec![200, 425, 200],
            "{name}"
        );
        assert_eq!(tree.value("./Vendor/Leaf"), Some("changed"));
        assert_eq!(
            tree.value("./DMAcc/dms/AppAddr/1/Addr"),
            Some("http://dms/dm"),
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
            &Command::Replace(items("./DMAcc/gw-l/AppAddr/1/Addr", "http://gw2/dm"))
        ),
        vec![200]
    );
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &Command::Add(items("./DMAcc/other/ServerID", "other-dms"))
        ),
        vec![200]
    );
    assert_eq!(
        codes(
            &mut tree,
            GW,
            &Command::Replace(items("./DMAcc/other/ServerID", "other-dms"))
        ),
        vec![200]
    );
}

#[test]
fn req_8x2_accounts_the_gateway_adds_are_recorded_as_via_gateway() {
    let mut tree = device();
    codes(
        &mut tree,
        GW,
        &Command::Add(items("./DMAcc/other/ServerID", "other-dms")),
    );
    let p = provenance(&tree, "other");
    assert_eq!(
        (p.origin, p.parent.as_deref()),
        (Origin::ViaGateway, Some(GW))
    );
}

#[test]
fn req_8x2_validation_by_a_previously_bootstrapped_server_lifts_the_restriction() {
    let mut tree = device();
    let validate = Command::Replace(items("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated"));
    assert_eq!(codes(&mut tree, DMS, &validate), vec![200]);
    assert_eq!(provenance(&tree, GW).trust, Trust::Validated);
    assert_eq!(
        provenance(&tree, GW).parent.as_deref(),
        Some(DMS),
        "the validator vouches for it"
    );
    let hijack = Command::Replace(items("./DMAcc/dms/AppAddr/1/Addr", "http://gw-chosen/dm"));
    assert_eq!(codes(&mut tree, GW, &hijack), vec![200]);
}

#[test]
fn req_8x2_no_one_else_may_validate_the_gateway() {
    let mut tree = device();
    codes(
        &mut tree,
        GW,
        &Command::Add(items("./DMAcc/other/ServerID", "other-dms")),
    );
    let validate = Command::Replace(items("./DMAcc/gw-l/Ext/GwBoot/Trust", "validated"));
    for server in [GW, "other-dms", "stranger"] {
        assert_eq!(
            codes(&mut tree, server, &validate),
            vec![425],
            "{server} validated the gateway"
        );
        assert_eq!(provenance(&tree, GW).trust, Trust::Restricted);
    }
    // Nor may the gateway stop its own lapse.
    let keep = Command::Replace(items("./DMAcc/gw-l/Ext/GwBoot/LapseAt", ""));
    assert_eq!(codes(&mut tree, GW, &keep), vec![425]);
}

#[test]
fn req_8x2_an_unconfirmed_bootstrap_lapses_with_everything_that_came_via_the_gateway() {
    let mut tree = device();
    codes(
        &mut tree,
        GW,
        &Command::Add(items("./DMAcc/other/ServerID", "other-dms")),
    );
    // The server the gateway brought in bootstraps yet another: transitively via the gateway.
    tree.set_acl(
        "./DMAcc/other",
        Acl::parse("Add=*&Get=*&Replace=*&Delete=*").unwrap(),
    )
    .unwrap();
    codes(
        &mut tree,
        "other-dms",
        &Command::Add(items("./DMAcc/third/ServerID", "third-dms")),
    );
    assert_eq!(
        provenance(&tree, "third").parent.as_deref(),
        Some("other-dms")
    );

    assert!(
        tree.lapse("2026-11-25T11:59:59Z").is_empty(),
        "lapsed before its deadline"
    );
    let mut removed = tree.lapse(DEADLINE);
    removed.sort();
    assert_eq!(removed, vec!["gw-l", "other-dms", "third-dms"]);
    for gone in ["gw-l", "other", "third"] {
        assert!(
            !tree.exists(&format!("./DMAcc/{gone}")),
            "{gone} survived the lapse"
        );
    }
    assert!(tree.exists("./DMAcc/dms"), "the factory account lapsed");
}

#[test]
fn req_8x2_a_confirmed_bootstrap_does_not_lapse() {
    let mut tree = device();
    assert!(tree.confirm_gateway(GW).unwrap());
    assert!(tree.lapse("2030-01-01T00:00:00Z").is_empty());
    assert!(tree.exists("./DMAcc/gw-l"));
    let p = provenance(&tree, GW);
    assert!(p.confirmed && p.lapse_at.is_none());
    assert!(
        !tree.confirm_gateway(DMS).unwrap(),
        "a factory account has nothing to confirm"
    );
}
