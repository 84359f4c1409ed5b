//! Inputs the fuzz targets (fuzz/) found, kept as tests: each once decoded into a
//! message that did not survive re-encoding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

use gwmo_proto::{CodecError, Encoding};

/// An input the fuzzers found, from `tests/data/fuzz`.
fn finding(file: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/fuzz/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn refused(encoding: Encoding, file: &str) -> String {
    match encoding.decode(&finding(file)) {
        Err(error @ CodecError::Decode { .. }) => error.to_string(),
        other => panic!("{file} was not refused: {other:?}"),
    }
}

/// NUL characters between the elements of an embedded TNDS document: the XML decoder
/// tolerates raw control characters in `<Data>` (libwbxml's `wbxml2xml` writes nested
/// WBXML there raw), but WBXML cannot carry a NUL in a string: encoding refuses it
/// instead of dropping it, and XML keeps it as it came.
#[test]
fn a_nul_in_embedded_xml_is_refused_by_wbxml_and_kept_by_xml() {
    let message = Encoding::Xml
        .decode(&finding("nul-in-embedded-tnds.xml"))
        .unwrap();
    let error = Encoding::Wbxml.encode(&message).unwrap_err().to_string();
    assert!(error.contains("NUL"), "{error}");
    let xml = Encoding::Xml.encode(&message).unwrap();
    assert_eq!(Encoding::Xml.decode(&xml).unwrap(), message);
}

/// A WBXML document nested in OPAQUE data whose LITERAL tag name ("http://...") could
/// never be an XML element name.
#[test]
fn a_literal_tag_that_is_no_xml_name_is_refused() {
    let error = refused(Encoding::Wbxml, "literal-tag-not-an-xml-name.wbxml");
    assert!(error.contains("is not an XML name"), "{error}");
}

/// Text, a character reference and more text between two tags of an embedded document
/// were written as three inline strings, and as one once decoded: the same document now
/// always gives the same WBXML.
#[test]
fn embedded_text_encodes_the_same_after_a_round_trip() {
    let message = Encoding::Xml
        .decode(&finding("text-and-references-in-embedded-xml.xml"))
        .unwrap();
    let wbxml = Encoding::Wbxml.encode(&message).unwrap();
    let again = Encoding::Wbxml.decode(&wbxml).unwrap();
    assert_eq!(Encoding::Wbxml.encode(&again).unwrap(), wbxml);
}

/// An element of an embedded document named with a NUL inside: written as a LITERAL
/// (NUL-terminated), it came back cut short. Now WBXML refuses to write it.
#[test]
fn an_embedded_element_name_that_is_no_xml_name_is_refused_by_wbxml() {
    let message = Encoding::Xml
        .decode(&finding("nul-in-embedded-element-name.xml"))
        .unwrap();
    let error = Encoding::Wbxml.encode(&message).unwrap_err().to_string();
    assert!(error.contains("not an XML name"), "{error}");
}

/// A byte order mark before the XML declaration shifted the reader's positions by three
/// bytes, and an embedded document was cut out of the message three bytes off.
#[test]
fn a_byte_order_mark_does_not_shift_embedded_documents() {
    let message = Encoding::Xml
        .decode(&finding("byte-order-mark-and-embedded-xml.xml"))
        .unwrap();
    let xml = Encoding::Xml.encode(&message).unwrap();
    assert_eq!(Encoding::Xml.decode(&xml).unwrap(), message);
    let text = String::from_utf8(xml).unwrap();
    assert!(text.contains("<Data><MgmtTree"), "{text}");
}
