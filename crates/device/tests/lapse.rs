//! A Gateway Bootstrap lapses across a restart: a device that was down past the
//! deadline removes the gateway's account (and what came via it) when it starts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use gwmo_device::settings::FactoryAccount;
use gwmo_device::{Agent, DeviceSettings, StateDir, local};
use gwmo_proto::auth::AuthType;
use gwmo_tree::{DmAccount, read_bootstrap};

fn settings(dir: &std::path::Path) -> DeviceSettings {
    DeviceSettings {
        dev_id: "IMEI:1".into(),
        state_dir: dir.to_owned(),
        accounts: vec![FactoryAccount {
            server_id: "dms".into(),
            server_url: "http://127.0.0.1:9/dm".into(),
            auth: Default::default(),
            client_name: None,
            client_secret: "c".into(),
            server_name: None,
            server_secret: "s".into(),
        }],
        ..DeviceSettings::default()
    }
}

/// A device given a local bootstrap at `issued` (unix seconds) that asked for 600 s.
fn bootstrapped_at(dir: &std::path::Path, issued: i64) {
    drop(Agent::open(settings(dir)).unwrap()); // the factory tree
    let state = StateDir::open(dir).unwrap();
    let mut tree = state.load_tree().unwrap().unwrap();
    let account = DmAccount::new(
        "gw-l",
        "http://gw/dm",
        AuthType::Md5,
        "IMEI:1",
        "c",
        "gw-l",
        "s",
    );
    let bootstrap = read_bootstrap(&gwmo_tree::bootstrap_document(&account, 600).unwrap()).unwrap();
    let policy = local::Policy {
        userpin: None,
        accept_unsigned: true,
        max_lapse_secs: 86_400,
    };
    local::apply(&mut tree, &bootstrap, issued, &policy).unwrap();
    state.save_tree(&tree).unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn req_8x2_a_device_down_past_the_deadline_lapses_the_bootstrap_at_start() {
    let dir = tempfile::tempdir().unwrap();
    bootstrapped_at(dir.path(), now() - 3600);
    let agent = Agent::open(settings(dir.path())).unwrap();
    let tree = agent.tree().await;
    assert!(
        !tree.exists("./DMAcc/gw-l"),
        "the lapsed gateway account survived the restart"
    );
    assert!(tree.exists("./DMAcc/dms"));
    // And it is gone from disk, not only from memory.
    let stored = StateDir::open(dir.path())
        .unwrap()
        .load_tree()
        .unwrap()
        .unwrap();
    assert!(!stored.exists("./DMAcc/gw-l"));
}

#[tokio::test]
async fn a_bootstrap_within_its_interval_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    bootstrapped_at(dir.path(), now());
    let agent = Agent::open(settings(dir.path())).unwrap();
    assert!(agent.tree().await.exists("./DMAcc/gw-l"));
    assert!(agent.enforce_lapse().await.unwrap().is_empty());
}
