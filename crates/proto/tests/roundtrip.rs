//! Property tests: decoding an encoded message gives the same message back, in both
//! encodings, and no input (random or a corrupted encoding) makes a decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use gwmo_proto::Encoding;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn xml_round_trip_keeps_the_message(message in common::message()) {
        let bytes = Encoding::Xml.encode(&message).unwrap();
        prop_assert_eq!(Encoding::Xml.decode(&bytes).unwrap(), message);
    }

    #[test]
    fn wbxml_round_trip_keeps_the_message(message in common::message()) {
        let bytes = Encoding::Wbxml.encode(&message).unwrap();
        prop_assert_eq!(Encoding::Wbxml.decode(&bytes).unwrap(), message);
    }

    #[test]
    fn xml_to_wbxml_to_xml_keeps_the_message(message in common::message()) {
        let wbxml = Encoding::Wbxml.encode(&message).unwrap();
        let again = Encoding::Wbxml.decode(&wbxml).unwrap();
        let xml = Encoding::Xml.encode(&again).unwrap();
        prop_assert_eq!(Encoding::Xml.decode(&xml).unwrap(), message);
    }

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Encoding::Xml.decode(&bytes);
        let _ = Encoding::Wbxml.decode(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_corrupted_encodings(
        message in common::message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        for encoding in [Encoding::Xml, Encoding::Wbxml] {
            let mut bytes = encoding.encode(&message).unwrap();
            for (at, value) in &flips {
                let at = at.index(bytes.len());
                bytes[at] = *value;
            }
            let _ = encoding.decode(&bytes);
            let _ = encoding.decode(&bytes[..cut.index(bytes.len() + 1)]);
        }
    }
}
