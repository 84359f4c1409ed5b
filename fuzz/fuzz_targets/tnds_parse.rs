//! Any text as a TNDS document (a Gateway Bootstrap, a device's tree report): an
//! error, or nodes that make a tree; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(nodes) = gwmo_proto::tnds::parse(text) {
        let _ = gwmo_proto::tnds::leaves(&nodes, "./DMAcc");
        let _ = gwmo_proto::tnds::to_xml(&nodes);
    }
    let _ = gwmo_tree::Tree::from_tnds(text, ".");
    let _ = gwmo_tree::read_bootstrap(text);
});
