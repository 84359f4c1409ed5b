//! Interop with libwbxml, the reference WBXML codec (Debian `libwbxml2-utils`):
//! what gwmo encodes, `wbxml2xml` reads back to the same message, and what
//! `xml2wbxml` encodes (with and without its string table), gwmo reads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process;

use gwmo_proto::{Command, Data, Encoding, Item, Message, wbxml};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: apt-get install libwbxml2-utils (.ci/run installs it)"
    );
    path
}

fn run(tool_name: &str, args: &[&str], input: &[u8], input_name: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join(input_name);
    let output_path = dir.path().join("out");
    std::fs::write(&input_path, input).unwrap();
    let output = process::Command::new(tool(tool_name))
        .args(args)
        .arg("-o")
        .arg(&output_path)
        .arg(&input_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{tool_name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&output_path).unwrap()
}

/// Undoes what libwbxml is documented to change: it renames the TNDS content type
/// to its WBXML form, and prints a nested WBXML document as raw CDATA.
fn normalise(message: &mut Message) {
    fn items(command: &mut Command) -> Vec<&mut Item> {
        match command {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => c.items.iter_mut().collect(),
            Command::Alert(a) => a.items.iter_mut().collect(),
            Command::Exec(e) => e.items.iter_mut().collect(),
            Command::Results(r) => r.items.iter_mut().collect(),
            Command::Status(s) => s.items.iter_mut().collect(),
            Command::Atomic(c) | Command::Sequence(c) => {
                c.commands.iter_mut().flat_map(|m| items(m)).collect()
            }
        }
    }
    for item in message.body.commands.iter_mut().flat_map(items) {
        if let Some(mime) = item.meta.as_mut().and_then(|m| m.r#type.as_mut()) {
            *mime = mime.replace("dmtnds+wbxml", "dmtnds+xml").into();
        }
        if let Some(Data::Text(text)) = &item.data
            && let Some(xml) = wbxml::document_to_xml(text.as_bytes(), 64)
        {
            item.data = Some(Data::Xml(xml));
        }
    }
}

/// gwmo WBXML -> wbxml2xml -> gwmo XML.
fn through_wbxml2xml(message: &Message) -> Message {
    let wbxml = Encoding::Wbxml.encode(message).unwrap();
    let xml = run("wbxml2xml", &["-m", "0"], &wbxml, "in.wbxml");
    let mut back = Encoding::Xml
        .decode(&xml)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&xml)));
    normalise(&mut back);
    back
}

/// gwmo XML -> xml2wbxml (string table on or off) -> gwmo WBXML.
fn through_xml2wbxml(message: &Message, string_table: bool) -> Message {
    let xml = Encoding::Xml.encode(message).unwrap();
    let args: &[&str] = if string_table { &[] } else { &["-n"] };
    let wbxml = run("xml2wbxml", args, &xml, "in.xml");
    let mut back = Encoding::Wbxml.decode(&wbxml).unwrap();
    normalise(&mut back);
    back
}

const SAMPLES: &[&str] = &[
    include_str!("data/package1.xml"),
    include_str!("data/package2.xml"),
    include_str!("data/package3.xml"),
    // A FUMO result (Generic Alert with a Correlator) and a FUMO update (Exec with one).
    include_str!("data/fumo.xml"),
];

#[test]
fn libwbxml_reads_what_gwmo_writes() {
    for sample in SAMPLES {
        let message = Encoding::Xml.decode(sample.as_bytes()).unwrap();
        assert_eq!(through_wbxml2xml(&message), message);
    }
}

#[test]
fn gwmo_reads_what_libwbxml_writes_with_and_without_a_string_table() {
    for sample in SAMPLES {
        let message = Encoding::Xml.decode(sample.as_bytes()).unwrap();
        assert_eq!(through_xml2wbxml(&message, true), message);
        assert_eq!(through_xml2wbxml(&message, false), message);
    }
}

#[test]
fn arbitrary_messages_survive_libwbxml_both_ways() {
    let mut runner = TestRunner::new(Config::with_cases(24));
    runner
        .run(&common::message(), |message| {
            prop_assert_eq!(&through_wbxml2xml(&message), &message);
            prop_assert_eq!(&through_xml2wbxml(&message, true), &message);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_data_of_strings_and_opaque_pieces_reads_in_the_order_libwbxml_reads_it() {
    let message = Encoding::Xml
        .decode(
            br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>IMEI:1</LocURI></Target><Source><LocURI>https://dm.example/dm</LocURI></Source></SyncHdr><SyncBody><Replace><CmdID>1</CmdID><Item><Target><LocURI>./Vendor/Mode</LocURI></Target><Data>eco &amp; more</Data></Item></Replace><Final/></SyncBody></SyncML>"#,
        )
        .unwrap();
    let whole = Encoding::Wbxml.encode(&message).unwrap();
    let data = b"\xC3\x0Aeco & more\x01";
    let at = whole.windows(data.len()).position(|w| w == data).unwrap();
    // Two OPAQUEs, and an OPAQUE and an inline string either way round.
    for pieces in [
        &b"\xC3\x04eco \xC3\x06& more\x01"[..],
        b"\xC3\x04eco \x03& more\x00\x01",
        b"\x03eco \x00\xC3\x06& more\x01",
    ] {
        let split = [&whole[..at], pieces, &whole[at + data.len()..]].concat();
        // libwbxml 0.11 prints such a `<Data>` as nested CDATA sections (not XML it
        // reads back itself) and misplaces the END after it, so only the text is
        // compared: the pieces in the order they came.
        let xml = String::from_utf8(run("wbxml2xml", &["-m", "0"], &split, "in.wbxml")).unwrap();
        let inside = xml
            .split("<Data>")
            .nth(1)
            .unwrap()
            .split("</Data>")
            .next()
            .unwrap();
        assert_eq!(
            inside.replace("<![CDATA[", "").replace("]]>", ""),
            "eco & more",
            "{xml}"
        );
        assert_eq!(Encoding::Wbxml.decode(&split).unwrap(), message);
    }
}
