//! Executing server commands against a device tree: every status path of DM 1.2,
//! ACLs, Atomic rollback, Sequence order, and a property test that a server without
//! rights never changes anything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use gwmo_proto::codes::status;
use gwmo_proto::{
    CmdIds, Command, Container, Data, Exec, Item, ItemCommand, Location, Meta, Status,
};
use gwmo_tree::{Acl, DeviceInfo, DmAccount, Format, Tree, write_dm_account};
use proptest::prelude::*;

const DMS: &str = "dms";

fn device() -> Tree {
    let mut tree = Tree::new_device(&DeviceInfo {
        dev_id: "IMEI:1".into(),
        ..DeviceInfo::default()
    });
    let account = DmAccount::new(
        DMS,
        "http://dms/dm",
        gwmo_proto::auth::AuthType::Md5,
        "d",
        "c",
        DMS,
        "s",
    );
    write_dm_account(&mut tree, "Factory1", &account).unwrap();
    assert!(tree.adopt_factory_account(DMS));
    tree.ensure_interior("./Vendor").unwrap();
    tree.set_leaf("./Vendor/Leaf", "v", Format::Chr).unwrap();
    tree.set_acl(
        "./Vendor",
        Acl::parse("Get=*&Add=dms&Replace=dms&Delete=dms&Exec=dms").unwrap(),
    )
    .unwrap();
    tree
}

fn item(target: &str, data: Option<&str>) -> Item {
    Item {
        target: Some(Location::new(target)),
        data: data.map(|d| Data::Text(d.into())),
        ..Item::default()
    }
}

fn cmd(items: Vec<Item>) -> ItemCommand {
    ItemCommand {
        cmd_id: 7,
        meta: None,
        items,
    }
}

fn add(target: &str, data: &str) -> Command {
    Command::Add(cmd(vec![item(target, Some(data))]))
}
fn replace(target: &str, data: &str) -> Command {
    Command::Replace(cmd(vec![item(target, Some(data))]))
}
fn delete(target: &str) -> Command {
    Command::Delete(cmd(vec![item(target, None)]))
}
fn get(target: &str) -> Command {
    Command::Get(cmd(vec![item(target, None)]))
}

/// Runs one command; returns the codes of the Statuses it produced, in order.
fn codes(tree: &mut Tree, server: &str, command: &Command) -> Vec<u16> {
    statuses(&tree.execute(server, 1, command, &mut CmdIds::new()))
        .iter()
        .map(|s| s.code.get())
        .collect()
}

fn statuses(replies: &[Command]) -> Vec<&Status> {
    replies
        .iter()
        .filter_map(|c| {
            if let Command::Status(s) = c {
                Some(s)
            } else {
                None
            }
        })
        .collect()
}

fn code(tree: &mut Tree, server: &str, command: &Command) -> u16 {
    codes(tree, server, command)[0]
}

#[test]
fn add_creates_parents_and_refuses_duplicates_and_leaf_parents() {
    let mut tree = device();
    assert_eq!(
        code(&mut tree, DMS, &add("./Vendor/A/B/C", "1")),
        status::OK
    );
    assert_eq!(tree.value("./Vendor/A/B/C"), Some("1"));
    assert_eq!(
        code(&mut tree, DMS, &add("./Vendor/A/B/C", "2")),
        status::ALREADY_EXISTS
    );
    assert_eq!(
        code(&mut tree, DMS, &add("./Vendor/Leaf/X", "2")),
        status::COMMAND_NOT_ALLOWED
    );
    assert_eq!(
        code(&mut tree, "intruder", &add("./Vendor/Z", "1")),
        status::PERMISSION_DENIED
    );
    assert!(!tree.exists("./Vendor/Z"));
}

#[test]
fn add_with_format_node_makes_an_interior_node() {
    let mut tree = device();
    let mut command = cmd(vec![item("./Vendor/Dir", None)]);
    command.meta = Some(Box::new(Meta {
        format: Some("node".into()),
        ..Meta::default()
    }));
    assert_eq!(code(&mut tree, DMS, &Command::Add(command)), status::OK);
    assert_eq!(tree.children("./Vendor/Dir"), Some(vec![]));
}

#[test]
fn a_server_manages_what_it_adds_where_it_may_only_add() {
    let mut tree = device();
    tree.set_acl("./Vendor", Acl::parse("Add=other").unwrap())
        .unwrap();
    assert_eq!(
        code(&mut tree, "other", &add("./Vendor/Mine", "1")),
        status::OK
    );
    assert_eq!(
        code(&mut tree, "other", &replace("./Vendor/Mine", "2")),
        status::OK
    );
    assert_eq!(code(&mut tree, "other", &get("./Vendor/Mine")), status::OK);
    assert_eq!(
        code(&mut tree, DMS, &replace("./Vendor/Mine", "3")),
        status::PERMISSION_DENIED
    );
}

#[test]
fn replace_never_creates_and_needs_the_right() {
    let mut tree = device();
    assert_eq!(
        code(&mut tree, DMS, &replace("./Vendor/Missing", "x")),
        status::NOT_FOUND
    );
    assert!(!tree.exists("./Vendor/Missing"));
    assert_eq!(
        code(&mut tree, DMS, &replace("./Vendor", "x")),
        status::COMMAND_NOT_ALLOWED
    );
    assert_eq!(
        code(&mut tree, DMS, &replace("./DevInfo/DevId", "stolen")),
        status::PERMISSION_DENIED
    );
    assert_eq!(tree.value("./DevInfo/DevId"), Some("IMEI:1"));
    assert_eq!(
        code(&mut tree, DMS, &replace("./Vendor/Leaf", "w")),
        status::OK
    );
    assert_eq!(tree.value("./Vendor/Leaf"), Some("w"));
}

#[test]
fn delete_removes_subtrees_but_never_permanent_nodes() {
    let mut tree = device();
    tree.set_leaf("./Vendor/Sub/X", "1", Format::Chr).unwrap();
    assert_eq!(code(&mut tree, DMS, &delete("./Vendor/Sub")), status::OK);
    assert!(!tree.exists("./Vendor/Sub/X"));
    assert_eq!(
        code(&mut tree, DMS, &delete("./Vendor/Sub")),
        status::NOT_FOUND
    );
    tree.set_acl(".", Acl::parse("Get=*&Delete=*").unwrap())
        .unwrap();
    tree.set_acl("./DevInfo", Acl::parse("Get=*&Delete=*").unwrap())
        .unwrap();
    assert_eq!(
        code(&mut tree, DMS, &delete("./DevInfo")),
        status::COMMAND_NOT_ALLOWED
    );
    assert_eq!(
        code(&mut tree, DMS, &delete(".")),
        status::COMMAND_NOT_ALLOWED
    );
}

#[test]
fn get_returns_values_child_lists_and_properties() {
    let mut tree = device();
    let replies = tree.execute(DMS, 1, &get("./Vendor/Leaf"), &mut CmdIds::new());
    let Command::Results(results) = &replies[1] else {
        panic!("no Results after the Status")
    };
    assert_eq!(results.cmd_ref, 7);
    assert_eq!(results.items[0].data, Some(Data::Text("v".into())));
    assert_eq!(
        results.items[0].source.as_ref().unwrap().uri,
        "./Vendor/Leaf"
    );

    let replies = tree.execute(DMS, 1, &get("./DevInfo"), &mut CmdIds::new());
    let Command::Results(results) = &replies[1] else {
        panic!()
    };
    assert_eq!(
        results.items[0].data,
        Some(Data::Text("DevId/DmV/Ext/Lang/Man/Mod".into()))
    );
    assert_eq!(
        results.items[0].meta.as_ref().unwrap().format.as_deref(),
        Some("node")
    );

    let replies = tree.execute(DMS, 1, &get("./Vendor?prop=ACL"), &mut CmdIds::new());
    let Command::Results(results) = &replies[1] else {
        panic!()
    };
    assert_eq!(
        results.items[0].data,
        Some(Data::Text(
            "Add=dms&Delete=dms&Exec=dms&Get=*&Replace=dms".into()
        ))
    );

    assert_eq!(code(&mut tree, DMS, &get("./Nothing")), status::NOT_FOUND);
    assert_eq!(
        code(&mut tree, DMS, &get("./Vendor?list=Struct")),
        status::OPTIONAL_FEATURE_NOT_SUPPORTED
    );
    assert_eq!(
        code(
            &mut tree,
            "intruder",
            &get("./DMAcc/Factory1/AppAuth/1/AAuthSecret")
        ),
        status::PERMISSION_DENIED
    );
}

#[test]
fn an_acl_changes_only_with_replace_on_the_parent() {
    let mut tree = device();
    let set_acl = replace("./Vendor/Leaf?prop=ACL", "Get=*&Replace=other");
    assert_eq!(code(&mut tree, DMS, &set_acl), status::OK);
    assert_eq!(
        code(&mut tree, "other", &replace("./Vendor/Leaf", "o")),
        status::OK
    );
    assert_eq!(
        code(
            &mut tree,
            "other",
            &replace("./Vendor/Leaf?prop=ACL", "Get=*&Replace=*")
        ),
        status::PERMISSION_DENIED
    );
    assert_eq!(
        code(&mut tree, DMS, &replace("./Vendor/Leaf?prop=Format", "int")),
        status::COMMAND_NOT_ALLOWED
    );
}

#[test]
fn copy_is_leaf_to_leaf() {
    let mut tree = device();
    let copy = |target: &str, source: &str| {
        Command::Copy(cmd(vec![Item {
            target: Some(Location::new(target)),
            source: Some(Location::new(source)),
            ..Item::default()
        }]))
    };
    assert_eq!(
        code(&mut tree, DMS, &copy("./Vendor/Copy", "./Vendor/Leaf")),
        status::OK
    );
    assert_eq!(tree.value("./Vendor/Copy"), Some("v"));
    assert_eq!(
        code(&mut tree, DMS, &copy("./Vendor/Copy2", "./DevInfo")),
        status::COMMAND_NOT_ALLOWED
    );
    assert_eq!(
        code(&mut tree, DMS, &copy("./Vendor/Copy3", "./Vendor/Missing")),
        status::NOT_FOUND
    );
    assert_eq!(
        code(&mut tree, DMS, &copy("./DevInfo/Mod", "./Vendor/Leaf")),
        status::PERMISSION_DENIED
    );
}

#[test]
fn exec_needs_the_exec_right_and_is_handed_to_the_device() {
    let mut tree = device();
    let exec = |target: &str| {
        Command::Exec(Exec {
            cmd_id: 3,
            meta: None,
            correlator: Some("c1".into()),
            items: vec![item(target, Some("go"))],
        })
    };
    assert_eq!(
        code(&mut tree, "intruder", &exec("./Vendor/Leaf")),
        status::PERMISSION_DENIED
    );
    assert_eq!(
        code(&mut tree, DMS, &exec("./Vendor/Nothing")),
        status::NOT_FOUND
    );
    assert_eq!(code(&mut tree, DMS, &exec("./Vendor/Leaf")), status::OK);
    let requests = tree.take_exec_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].uri.as_str(), requests[0].data.as_deref()),
        ("./Vendor/Leaf", Some("go"))
    );
    assert_eq!(requests[0].correlator.as_deref(), Some("c1"));
    assert!(tree.take_exec_requests().is_empty());
}

#[test]
fn a_failing_atomic_changes_nothing_at_all() {
    let mut tree = device();
    let before = serde_json::to_string(&tree).unwrap();
    let atomic = Command::Atomic(Container {
        cmd_id: 1,
        meta: None,
        commands: vec![
            add("./Vendor/A", "1"),
            replace("./Vendor/Leaf", "changed"),
            delete("./Vendor/Missing"),
            add("./Vendor/B", "2"),
        ],
    });
    assert_eq!(
        codes(&mut tree, DMS, &atomic),
        vec![507, 216, 216, 404, 215]
    );
    assert_eq!(serde_json::to_string(&tree).unwrap(), before);
}

#[test]
fn a_successful_atomic_applies_everything() {
    let mut tree = device();
    let atomic = Command::Atomic(Container {
        cmd_id: 1,
        meta: None,
        commands: vec![add("./Vendor/A", "1"), delete("./Vendor/Leaf")],
    });
    assert_eq!(codes(&mut tree, DMS, &atomic), vec![200, 200, 200]);
    assert!(tree.exists("./Vendor/A") && !tree.exists("./Vendor/Leaf"));
}

#[test]
fn a_get_or_a_nested_atomic_fails_the_atomic() {
    let mut tree = device();
    for member in [
        get("./Vendor/Leaf"),
        Command::Atomic(Container {
            cmd_id: 2,
            meta: None,
            commands: vec![],
        }),
    ] {
        let atomic = Command::Atomic(Container {
            cmd_id: 1,
            meta: None,
            commands: vec![add("./Vendor/A", "1"), member],
        });
        assert_eq!(codes(&mut tree, DMS, &atomic), vec![status::COMMAND_FAILED]);
        assert!(!tree.exists("./Vendor/A"));
    }
}

#[test]
fn sequence_runs_in_order_and_keeps_each_status() {
    let mut tree = device();
    let sequence = Command::Sequence(Container {
        cmd_id: 1,
        meta: None,
        commands: vec![
            add("./Vendor/S", "1"),
            replace("./Vendor/S", "2"),
            delete("./Vendor/Nope"),
            get("./Vendor/S"),
        ],
    });
    let replies = tree.execute(DMS, 1, &sequence, &mut CmdIds::new());
    assert_eq!(
        statuses(&replies)
            .iter()
            .map(|s| s.code)
            .collect::<Vec<_>>(),
        vec![200, 200, 200, 404, 200]
    );
    let Some(Command::Results(results)) = replies.last() else {
        panic!()
    };
    assert_eq!(results.items[0].data, Some(Data::Text("2".into())));
}

#[test]
fn statuses_name_their_targets_and_get_their_own_ids() {
    let mut tree = device();
    let command = Command::Replace(cmd(vec![
        item("./Vendor/Leaf", Some("a")),
        item("./Vendor/No", Some("b")),
    ]));
    let replies = tree.execute(DMS, 4, &command, &mut CmdIds::new());
    let statuses = statuses(&replies);
    assert_eq!(statuses.len(), 2, "one Status per Item");
    assert_eq!(
        (
            statuses[0].msg_ref,
            statuses[0].cmd_ref,
            statuses[0].cmd.as_ref()
        ),
        (4, 7, "Replace")
    );
    assert_eq!(statuses[1].target_refs, vec!["./Vendor/No".to_owned()]);
    assert_eq!((statuses[0].cmd_id, statuses[1].cmd_id), (1, 2));
    assert_eq!(statuses[1].code, status::NOT_FOUND);
}

#[test]
fn bad_and_oversize_uris_are_refused() {
    let mut tree = device();
    assert_eq!(
        code(&mut tree, DMS, &add("./Vendor/../DevInfo/X", "1")),
        status::BAD_REQUEST
    );
    let long = format!("./Vendor/{}", "a".repeat(2000));
    assert_eq!(code(&mut tree, DMS, &add(&long, "1")), status::URI_TOO_LONG);
    assert_eq!(
        code(&mut tree, DMS, &Command::Add(cmd(vec![]))),
        status::INCOMPLETE_COMMAND
    );
}

/// A command of one item: Add, Replace, Delete, Copy, Exec, then Get, by `kind`.
fn item_command(kind: u8, it: Item) -> Command {
    let c = cmd(vec![it.clone()]);
    match kind {
        0 => Command::Add(c),
        1 => Command::Replace(c),
        2 => Command::Delete(c),
        3 => Command::Copy(c),
        4 => Command::Exec(Exec {
            cmd_id: 1,
            meta: None,
            correlator: None,
            items: vec![it],
        }),
        _ => Command::Get(c),
    }
}

fn arbitrary_command() -> impl Strategy<Value = Command> {
    let uris = prop::sample::select(vec![
        ".",
        "./DevInfo",
        "./DevInfo/DevId",
        "./DMAcc",
        "./DMAcc/Factory1",
        "./DMAcc/Factory1/ServerID",
        "./DMAcc/Factory1/AppAuth/1/AAuthSecret",
        "./Vendor",
        "./Vendor/Leaf",
        "./Vendor/New",
        "./DevDetail/FwV",
        "./Vendor/Leaf?prop=ACL",
        "./DMAcc/Factory1?prop=ACL",
        "./New",
    ]);
    let leaf = (0..6u8, uris.clone(), uris).prop_map(|(kind, target, source)| {
        let it = Item {
            target: Some(Location::new(target)),
            source: Some(Location::new(source)),
            data: Some(Data::Text("Get=*&Add=*&Replace=*&Delete=*".into())),
            ..Item::default()
        };
        item_command(kind, it)
    });
    leaf.prop_recursive(2, 8, 3, |inner| {
        (proptest::collection::vec(inner, 1..4), any::<bool>()).prop_map(|(commands, atomic)| {
            let c = Container {
                cmd_id: 2,
                meta: None,
                commands,
            };
            if atomic {
                Command::Atomic(c)
            } else {
                Command::Sequence(c)
            }
        })
    })
}

proptest! {
    #[test]
    fn a_server_without_rights_changes_nothing(commands in proptest::collection::vec(arbitrary_command(), 1..8)) {
        let mut tree = device();
        // ./Vendor grants only Get to everyone but dms; DMAcc/Factory1 only to dms.
        let before = serde_json::to_string(&tree).unwrap();
        for command in &commands {
            let _ = tree.execute("intruder", 1, command, &mut CmdIds::new());
        }
        prop_assert_eq!(serde_json::to_string(&tree).unwrap(), before);
        prop_assert!(tree.take_exec_requests().is_empty());
    }
}

/// The DM Server Assisted Gateway Bootstrap of figure x, as the DMS sends it: an Atomic
/// adding the gateway's account with its provenance.
fn server_assisted_bootstrap(tree: &mut Tree, gateway: &str) -> Vec<u16> {
    let base = format!("./DMAcc/{gateway}");
    let leaf = |path: &str, value: &str| add(&format!("{base}/{path}"), value);
    let atomic = Command::Atomic(Container {
        cmd_id: 1,
        meta: None,
        commands: vec![
            leaf("ServerID", gateway),
            leaf("AppAddr/1/Addr", "http://gw/dm"),
            leaf("AppAuth/1/AAuthLevel", "CLCRED"),
            leaf("AppAuth/1/AAuthType", "DIGEST"),
            leaf("Ext/GwBoot/Origin", "server-assisted"),
            leaf("Ext/GwBoot/Parent", DMS),
            leaf("Ext/GwBoot/Trust", "full"),
        ],
    });
    codes(tree, DMS, &atomic)
}

fn with_dmacc_add_for_dms() -> Tree {
    let mut tree = device();
    tree.set_acl("./DMAcc", Acl::parse("Get=*&Add=dms").unwrap())
        .unwrap();
    tree
}

#[test]
fn req_8x1_the_dm_server_bootstraps_the_device_to_the_gateway() {
    let mut tree = with_dmacc_add_for_dms();
    assert!(
        server_assisted_bootstrap(&mut tree, "gw-1")
            .iter()
            .all(|c| *c == 200)
    );
    let accounts = gwmo_tree::dm_accounts(&tree);
    assert!(
        accounts
            .iter()
            .any(|(_, a)| a.server_id == "gw-1" && a.address() == Some("http://gw/dm"))
    );
    let provenance = tree.provenance_of("gw-1").unwrap();
    assert_eq!(
        (provenance.origin, provenance.trust),
        (gwmo_tree::Origin::ServerAssisted, gwmo_tree::Trust::Full)
    );
    // The gateway manages its own account.
    assert_eq!(
        code(
            &mut tree,
            "gw-1",
            &replace("./DMAcc/gw-1/AppAddr/1/Addr", "http://gw2/dm")
        ),
        200
    );
}

#[test]
fn req_8x1_gateway_may_change_pre_existing_dmacc_objects() {
    let mut tree = with_dmacc_add_for_dms();
    server_assisted_bootstrap(&mut tree, "gw-1");
    // ./DMAcc/Factory1 existed before the gateway: its ACL names only dms.
    assert_eq!(
        code(
            &mut tree,
            "gw-1",
            &replace("./DMAcc/Factory1/AppAddr/1/Addr", "http://new/dm")
        ),
        200
    );
    assert_eq!(
        tree.value("./DMAcc/Factory1/AppAddr/1/Addr"),
        Some("http://new/dm")
    );
    assert_eq!(
        code(&mut tree, "gw-1", &get("./DMAcc/Factory1/ServerID")),
        200
    );
}

#[test]
fn req_8x1_gateway_may_bootstrap_the_device_to_other_dm_servers() {
    let mut tree = with_dmacc_add_for_dms();
    server_assisted_bootstrap(&mut tree, "gw-1");
    assert_eq!(
        code(
            &mut tree,
            "gw-1",
            &add("./DMAcc/other/ServerID", "other-dms")
        ),
        200
    );
    assert_eq!(
        code(
            &mut tree,
            "gw-1",
            &add("./DMAcc/other/AppAddr/1/Addr", "http://other/dm")
        ),
        200
    );
    // The new server manages its account and reads the device.
    assert_eq!(
        code(
            &mut tree,
            "other-dms",
            &replace("./DMAcc/other/AppAddr/1/Addr", "http://o2/dm")
        ),
        200
    );
    assert_eq!(code(&mut tree, "other-dms", &get("./DevInfo/Man")), 200);
}

#[test]
fn a_server_without_a_trusted_gateway_account_gets_no_delegated_rights() {
    let mut tree = with_dmacc_add_for_dms();
    // An account the DMS added without gateway provenance is an ordinary server.
    assert_eq!(
        code(&mut tree, DMS, &add("./DMAcc/plain/ServerID", "plain")),
        200
    );
    assert_eq!(
        code(
            &mut tree,
            "plain",
            &replace("./DMAcc/Factory1/AppAddr/1/Addr", "x")
        ),
        425
    );
    // A restricted gateway has only its ACLs.
    let gateway = DmAccount::new(
        "gw-r",
        "http://gw-r/dm",
        gwmo_proto::auth::AuthType::Md5,
        "d",
        "c",
        "gw-r",
        "s",
    );
    tree.apply_gateway_bootstrap(&gateway, 0, 60).unwrap();
    assert_eq!(
        code(
            &mut tree,
            "gw-r",
            &replace("./DMAcc/Factory1/AppAddr/1/Addr", "x")
        ),
        425
    );
}

/// The TNDS a server reads of the whole tree: the server's own account with its
/// secrets, never another server's account.
#[test]
fn a_tnds_get_returns_the_subtree_the_server_may_see() {
    let mut tree = device();
    let other = DmAccount::new(
        "other",
        "http://other/dm",
        gwmo_proto::auth::AuthType::Md5,
        "d",
        "other-client-secret",
        "other",
        "other-server-secret",
    );
    write_dm_account(&mut tree, "Other", &other).unwrap();
    let replies = tree.execute(DMS, 1, &get(".?list=TNDS+Format+Value"), &mut CmdIds::new());
    assert_eq!(statuses(&replies)[0].code, status::OK);
    let Command::Results(results) = &replies[1] else {
        panic!("no Results after the Status")
    };
    let meta = results.items[0].meta.as_ref().unwrap();
    assert_eq!(
        meta.r#type.as_deref(),
        Some(gwmo_proto::codes::content_type::TNDS_XML)
    );
    let Some(Data::Text(document)) = &results.items[0].data else {
        panic!("no TNDS text")
    };
    let nodes = gwmo_proto::tnds::parse(document).unwrap();
    let leaves = gwmo_proto::tnds::leaves(&nodes, ".");
    let value = |uri: &str| {
        leaves
            .iter()
            .find(|(path, _, _)| path == uri)
            .map(|(_, value, _)| value.clone())
    };
    assert_eq!(value("./DevInfo/DevId"), Some("IMEI:1".into()));
    assert_eq!(value("./Vendor/Leaf"), Some("v".into()));
    assert!(value("./DMAcc/Factory1/ServerID").is_some());
    assert!(
        !document.contains("other-client-secret") && !document.contains("Other"),
        "another server's account leaked: {document}"
    );
    // Someone with no Get right on the subtree's root gets 425, no document.
    assert_eq!(
        code(&mut tree, "other", &get("./DMAcc/Factory1?list=TNDS")),
        status::PERMISSION_DENIED
    );
    // Other list queries stay unsupported.
    assert_eq!(
        code(&mut tree, DMS, &get("./Vendor?list=Struct")),
        status::OPTIONAL_FEATURE_NOT_SUPPORTED
    );
}

/// A member of an Atomic from a server with rights: Add, Replace, Delete, Copy or Exec
/// of targets in and out of ./Vendor, new and existing, the accounts among them.
fn arbitrary_member() -> impl Strategy<Value = Command> {
    let uris = prop::sample::select(vec![
        "./Vendor",
        "./Vendor/Leaf",
        "./Vendor/New",
        "./Vendor/New/Deeper/Leaf",
        "./Vendor/Sub",
        "./Vendor/Sub/Leaf",
        "./Vendor/Leaf/Below",
        "./DMAcc/Factory1/Name",
        "./DMAcc/New",
        "./DevInfo/DevId",
        "./Vendor/Leaf?prop=ACL",
    ]);
    (0..5u8, uris.clone(), uris, any::<bool>()).prop_map(|(kind, target, source, node)| {
        let it = Item {
            target: Some(Location::new(target)),
            source: Some(Location::new(source)),
            meta: node.then(|| {
                Box::new(Meta {
                    format: Some("node".into()),
                    ..Meta::default()
                })
            }),
            data: (!node).then(|| Data::Text("v2".into())),
            ..Item::default()
        };
        item_command(kind, it)
    })
}

proptest! {
    #[test]
    fn an_atomic_that_fails_part_way_leaves_the_tree_as_it_was(
        members in proptest::collection::vec(arbitrary_member(), 0..6),
        failing_at in 0..6usize,
    ) {
        let mut tree = device();
        tree.ensure_interior("./Vendor/Sub").unwrap();
        tree.set_leaf("./Vendor/Sub/Leaf", "s", Format::Chr).unwrap();
        let before = serde_json::to_string(&tree).unwrap();
        let mut commands = members;
        // Replace never creates: this member fails, and the Atomic with it.
        commands.insert(failing_at.min(commands.len()), replace("./Vendor/Missing", "x"));
        let atomic = Command::Atomic(Container { cmd_id: 1, meta: None, commands });
        let codes = codes(&mut tree, DMS, &atomic);
        prop_assert_eq!(codes[0], status::ATOMIC_FAILED.get());
        prop_assert_eq!(serde_json::to_string(&tree).unwrap(), before);
        prop_assert!(tree.take_exec_requests().is_empty());
    }
}
