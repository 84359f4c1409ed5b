//! When the device's tree reaches its state directory: every change at once, except
//! the derived ones written with the next save (`Agent::update_tree_unsaved`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use gwmo_device::{Agent, DeviceSettings, StateDir};
use gwmo_tree::Format;

fn on_disk(dir: &std::path::Path, uri: &str) -> Option<String> {
    let tree = StateDir::open(dir).unwrap().load_tree().unwrap().unwrap();
    tree.value(uri).map(str::to_owned)
}

#[tokio::test]
async fn a_derived_change_reaches_the_disk_with_the_next_save_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::open(DeviceSettings {
        dev_id: "IMEI:1".into(),
        state_dir: dir.path().to_owned(),
        ..DeviceSettings::default()
    })
    .unwrap();
    agent
        .update_tree_unsaved(|tree| tree.set_leaf("./Records/A", "1", Format::Chr))
        .await
        .unwrap();
    assert_eq!(
        agent
            .read_tree(|t| t.value("./Records/A").map(str::to_owned))
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(on_disk(dir.path(), "./Records/A"), None, "not written yet");
    agent.save_unsaved().await.unwrap();
    assert_eq!(on_disk(dir.path(), "./Records/A").as_deref(), Some("1"));

    // A change saved at once carries the derived ones made before it.
    agent
        .update_tree_unsaved(|tree| tree.set_leaf("./Records/A", "2", Format::Chr))
        .await
        .unwrap();
    agent
        .update_tree(|tree| tree.set_leaf("./Records/B", "3", Format::Chr))
        .await
        .unwrap();
    assert_eq!(on_disk(dir.path(), "./Records/A").as_deref(), Some("2"));
    assert_eq!(on_disk(dir.path(), "./Records/B").as_deref(), Some("3"));
}
