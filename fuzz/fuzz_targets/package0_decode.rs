//! Any bytes as a package-0 notification: an error or a notification, never a panic;
//! a notification decoded encodes again to the same trigger.
#![no_main]

use gwmo_proto::package0;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((notification, _digest)) = package0::decode(data) else {
        return;
    };
    let _ = package0::verify(data, &notification.server_id, "secret", b"nonce");
    if let Ok(again) = package0::encode(&notification, &notification.server_id, "s", b"n") {
        let (decoded, _) = package0::decode(&again).expect("what gwmo encodes, gwmo decodes");
        assert_eq!(decoded, notification);
    }
});
