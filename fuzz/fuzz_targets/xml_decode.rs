//! Any bytes as a SyncML DM message in XML (see `gwmo_fuzz::round_trip`).
#![no_main]

use gwmo_proto::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gwmo_fuzz::round_trip(Encoding::Xml, data));
