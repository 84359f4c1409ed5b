//! The XML encoding of SyncML DM 1.2 messages.
//!
//! Decoding turns quick-xml's event stream into the tokens of the shared grammar:
//! elements are matched by local name (so `syncml:metinf` prefixes or a `<MetInf>`
//! wrapper inside `<Meta>` read the same), a DOCTYPE is read and never resolved, CDATA
//! and entities are expanded, and a `<Data>` holding an element (a TNDS `<MgmtTree>`)
//! is kept as XML text. Encoding writes compact XML in DTD order.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

pub use crate::grammar::{DecodeError, MAX_DEPTH};
use crate::grammar::{Decoded, Grammar, Lexer, Node, Sink, Tag, Walk, is_xml_char, missing};
use crate::model::*;

/// Why a message cannot be written as XML.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("binary data ({0} bytes) cannot be XML text: send it as b64")]
    BinaryData(usize),
    #[error("character U+{0:04X} cannot appear in XML 1.0")]
    InvalidChar(u32),
}

/// Decodes an XML DM message.
pub fn decode(input: &[u8]) -> Result<Message, DecodeError> {
    // The reader skips a byte order mark without counting it in its positions, which
    // embedded documents are cut out of `input` by (found by fuzzing): drop it first.
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    Grammar::new(XmlLexer {
        reader: Reader::from_reader(input),
        input,
    })
    .message()
}

/// Encodes a DM message as compact XML.
pub fn encode(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut sink = XmlSink {
        out: Vec::with_capacity(1024),
    };
    sink.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    Walk::message(&mut sink, message)?;
    Ok(sink.out)
}

struct XmlLexer<'a> {
    reader: Reader<&'a [u8]>,
    input: &'a [u8],
}

impl XmlLexer<'_> {
    fn syntax(&self, error: impl std::fmt::Display) -> DecodeError {
        DecodeError::Syntax {
            offset: self.reader.error_position(),
            message: error.to_string(),
        }
    }
}

impl<'a> Lexer<'a> for XmlLexer<'a> {
    fn root(&mut self) -> Decoded<()> {
        loop {
            match self.reader.read_event().map_err(|e| self.syntax(e))? {
                Event::Start(root) => return check_root(&root),
                Event::Empty(e) if e.local_name().as_ref() == "SyncML" => {
                    return Err(missing("SyncML", Tag::SyncHdr));
                }
                Event::Empty(e) => {
                    return Err(DecodeError::NotSyncMl(e.local_name().as_ref().to_owned()));
                }
                Event::Eof => return Err(DecodeError::Truncated("SyncML")),
                Event::Text(t) if t.xml10_content().trim().is_empty() => {}
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
                _ => return Err(self.syntax("content before the root element")),
            }
        }
    }

    fn next(&mut self) -> Decoded<Node<'a>> {
        loop {
            let event = self.reader.read_event().map_err(|e| self.syntax(e))?;
            return Ok(match event {
                Event::Start(e) => Node::Open(Tag::of(e.local_name().as_ref()), false),
                Event::Empty(e) => Node::Open(Tag::of(e.local_name().as_ref()), true),
                Event::End(_) => Node::Close,
                Event::Text(t) => Node::Text(t.xml10_content()),
                Event::CData(c) => Node::Text(c.xml10_content()),
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref().map_err(|e| self.syntax(e))? {
                        Some(c) => c.to_string(),
                        None => {
                            let name = r.xml10_content();
                            resolve_predefined_entity(&name)
                                .ok_or_else(|| self.syntax(format!("unknown entity &{name};")))?
                                .to_owned()
                        }
                    };
                    Node::Text(Cow::Owned(resolved))
                }
                Event::Eof => Node::Eof,
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => continue,
            });
        }
    }

    /// Text (with CDATA and entities), or an embedded element kept as its XML text.
    fn data(&mut self, depth_left: usize) -> Decoded<Data> {
        let start = self.reader.buffer_position() as usize;
        let mut text = String::new();
        let (mut depth, mut embedded) = (0, false);
        loop {
            let before = self.reader.buffer_position() as usize;
            match self.next()? {
                Node::Text(t) if depth == 0 => text.push_str(&t),
                Node::Text(_) => {}
                Node::Open(_, true) => embedded = true,
                Node::Open(_, false) => {
                    embedded = true;
                    depth += 1;
                    if depth > depth_left {
                        return Err(DecodeError::TooDeep);
                    }
                }
                Node::Close if depth > 0 => depth -= 1,
                Node::Close if embedded => {
                    let raw =
                        String::from_utf8_lossy(self.input.get(start..before).unwrap_or_default());
                    return Ok(Data::Xml(raw.trim().to_owned()));
                }
                Node::Close => return Ok(Data::Text(text)),
                Node::Eof => return Err(DecodeError::Truncated("Data")),
            }
        }
    }
}

fn check_root(root: &BytesStart<'_>) -> Decoded<()> {
    let name = root.local_name();
    if name.as_ref() != "SyncML" {
        return Err(DecodeError::NotSyncMl(name.as_ref().to_owned()));
    }
    for attribute in root.attributes().flatten() {
        if attribute.key.as_ref() == "xmlns" {
            let value = attribute.value.to_string();
            if !value.to_ascii_uppercase().starts_with("SYNCML:SYNCML") {
                return Err(DecodeError::Namespace(value));
            }
        }
    }
    Ok(())
}

/// Appends compact XML to a buffer.
struct XmlSink {
    out: Vec<u8>,
}

impl XmlSink {
    fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    /// Escapes `<`, `&`, `>` and carriage returns (which parsers would otherwise fold).
    fn escaped(&mut self, text: &str) -> Result<(), EncodeError> {
        let mut clean = 0;
        for (at, c) in text.char_indices() {
            let replacement = match c {
                '<' => "&lt;",
                '&' => "&amp;",
                '>' => "&gt;",
                '\r' => "&#13;",
                '\t' | '\n' => continue,
                c if !is_xml_char(c) => return Err(EncodeError::InvalidChar(c as u32)),
                _ => continue,
            };
            self.raw(&text[clean..at]);
            self.raw(replacement);
            clean = at + c.len_utf8();
        }
        self.raw(&text[clean..]);
        Ok(())
    }
}

impl Sink for XmlSink {
    type Error = EncodeError;

    fn start(&mut self, tag: Tag) {
        self.out.push(b'<');
        self.raw(tag.name());
        if tag == Tag::SyncMl {
            self.raw(" xmlns=\"SYNCML:SYNCML1.2\"");
        } else if tag.is_metinf() {
            self.raw(" xmlns=\"syncml:metinf\"");
        }
        self.out.push(b'>');
    }

    fn end(&mut self, tag: Tag) {
        self.raw("</");
        self.raw(tag.name());
        self.out.push(b'>');
    }

    fn empty(&mut self, tag: Tag) {
        self.out.push(b'<');
        self.raw(tag.name());
        self.raw("/>");
    }

    fn text(&mut self, text: &str) -> Result<(), EncodeError> {
        self.escaped(text)
    }

    fn data(&mut self, data: &Data) -> Result<(), EncodeError> {
        match data {
            Data::Text(text) => self.escaped(text),
            Data::Xml(xml) => {
                self.raw(xml);
                Ok(())
            }
            Data::Bytes(bytes) => Err(EncodeError::BinaryData(bytes.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGE1: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" "http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd">
<SyncML xmlns='SYNCML:SYNCML1.2'>
  <SyncHdr>
    <VerDTD>1.2</VerDTD>
    <VerProto>DM/1.2</VerProto>
    <SessionID>1A</SessionID>
    <MsgID> 1 </MsgID>
    <Target><LocURI>http://dm.example/dm</LocURI></Target>
    <Source><LocURI>IMEI:490154203237518</LocURI><LocName>Bruce2</LocName></Source>
    <Cred>
      <Meta><Format xmlns='syncml:metinf'>b64</Format><Type xmlns='syncml:metinf'>syncml:auth-md5</Type></Meta>
      <Data>Zz6EivR3yeaaENcRN6lpAQ==</Data>
    </Cred>
    <Meta><MaxMsgSize xmlns="syncml:metinf">16384</MaxMsgSize></Meta>
  </SyncHdr>
  <SyncBody>
    <Alert><CmdID>1</CmdID><Data>1201</Data></Alert>
    <Replace>
      <CmdID>2</CmdID>
      <Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>A &amp; B &lt;co&gt;&#x41;</Data></Item>
      <Item><Source><LocURI>./DevInfo/Mod</LocURI></Source><Data><![CDATA[<raw> & stuff]]></Data></Item>
    </Replace>
    <NoResp/>
    <Final/>
  </SyncBody>
</SyncML>"#;

    #[test]
    fn reads_a_real_package_one_with_doctype_and_single_quotes() {
        let m = decode(PACKAGE1.as_bytes()).unwrap();
        assert_eq!(m.header.session_id, "1A");
        assert_eq!(m.header.msg_id, 1);
        assert_eq!(m.header.source.name.as_deref(), Some("Bruce2"));
        let cred = m.header.cred.as_ref().unwrap();
        assert_eq!(cred.meta.r#type.as_deref(), Some("syncml:auth-md5"));
        assert_eq!(cred.data, "Zz6EivR3yeaaENcRN6lpAQ==");
        assert_eq!(m.header.meta.as_ref().unwrap().max_msg_size, Some(16384));
        assert!(m.body.is_final);
        assert_eq!(m.body.commands.len(), 2);
        let Command::Replace(r) = &m.body.commands[1] else {
            panic!()
        };
        assert_eq!(r.items[0].data, Some(Data::Text("A & B <co>A".into())));
        assert_eq!(r.items[1].data, Some(Data::Text("<raw> & stuff".into())));
    }

    #[test]
    fn encoding_and_decoding_keeps_the_meaning() {
        let m = decode(PACKAGE1.as_bytes()).unwrap();
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn a_metinf_wrapper_and_prefixes_read_the_same() {
        let doc = br#"<SyncML xmlns="SYNCML:SYNCML1.2" xmlns:m="syncml:metinf"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>a</LocURI></Target><Source><LocURI>b</LocURI></Source><Meta><MetInf xmlns="syncml:metinf"><MaxMsgSize>100</MaxMsgSize></MetInf><m:MaxObjSize>7</m:MaxObjSize></Meta></SyncHdr><SyncBody/></SyncML>"#;
        let m = decode(doc).unwrap();
        let meta = m.header.meta.unwrap();
        assert_eq!((meta.max_msg_size, meta.max_obj_size), (Some(100), Some(7)));
        assert!(!m.body.is_final);
    }

    #[test]
    fn an_embedded_mgmt_tree_is_kept_as_xml() {
        let tnds = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD><Node><NodeName>X</NodeName></Node></MgmtTree>"#;
        let doc = format!(
            r#"<SyncML><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>a</LocURI></Target><Source><LocURI>b</LocURI></Source></SyncHdr><SyncBody><Add><CmdID>1</CmdID><Item><Target><LocURI>./DMAcc</LocURI></Target><Data>
            {tnds}
            </Data></Item></Add></SyncBody></SyncML>"#
        );
        let m = decode(doc.as_bytes()).unwrap();
        let Command::Add(add) = &m.body.commands[0] else {
            panic!()
        };
        assert_eq!(add.items[0].data, Some(Data::Xml(tnds.into())));
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn missing_required_elements_are_named() {
        let no_session = br#"<SyncML><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><MsgID>1</MsgID><Target><LocURI>a</LocURI></Target><Source><LocURI>b</LocURI></Source></SyncHdr><SyncBody/></SyncML>"#;
        let error = decode(no_session).unwrap_err().to_string();
        assert_eq!(error, "<SyncHdr> has no <SessionID>");
        let status_without_code = PACKAGE1.replace(
            "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>",
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd></Status>",
        );
        let error = decode(status_without_code.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "<Status> has no <Data>");
    }

    #[test]
    fn numbers_that_are_not_numbers_are_named() {
        let doc = PACKAGE1.replace("<MsgID> 1 </MsgID>", "<MsgID>one</MsgID>");
        let error = decode(doc.as_bytes()).unwrap_err().to_string();
        assert_eq!(error, "<MsgID> must be a number, not \"one\"");
    }

    #[test]
    fn non_dm_commands_and_foreign_roots_are_refused() {
        let doc = PACKAGE1.replace("<NoResp/>", "<Sync><CmdID>9</CmdID></Sync>");
        assert!(matches!(
            decode(doc.as_bytes()),
            Err(DecodeError::UnsupportedCommand("Sync"))
        ));
        assert!(matches!(
            decode(b"<html><body/></html>"),
            Err(DecodeError::NotSyncMl(_))
        ));
        assert!(matches!(
            decode(b"<SyncML xmlns='SYNCML:SYNCML1.2'/>"),
            Err(DecodeError::Missing { .. })
        ));
        assert!(matches!(
            decode(b"<SyncML xmlns='urn:other'></SyncML>"),
            Err(DecodeError::Namespace(_))
        ));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = PACKAGE1.as_bytes();
        for end in 0..bytes.len() - 1 {
            assert!(decode(&bytes[..end]).is_err(), "accepted {end} bytes");
        }
    }

    #[test]
    fn an_empty_element_inside_data_is_embedded_xml() {
        let doc = PACKAGE1.replace(
            "<Data><![CDATA[<raw> & stuff]]></Data>",
            "<Data><X/></Data>",
        );
        let m = decode(doc.as_bytes()).unwrap();
        let Command::Replace(r) = &m.body.commands[1] else {
            panic!()
        };
        assert_eq!(r.items[1].data, Some(Data::Xml("<X/>".into())));
        assert!(m.body.is_final);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let open = "<Sequence><CmdID>1</CmdID>".repeat(100);
        let close = "</Sequence>".repeat(100);
        let doc = PACKAGE1.replace("<NoResp/>", &format!("{open}{close}"));
        assert!(matches!(decode(doc.as_bytes()), Err(DecodeError::TooDeep)));
    }

    #[test]
    fn text_that_needs_escaping_survives() {
        let mut m = decode(PACKAGE1.as_bytes()).unwrap();
        m.header.session_id = "a<&>]]>b\r\nc\u{e9}".into();
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
        m.header.session_id = "bell\u{7}".into();
        assert!(matches!(encode(&m), Err(EncodeError::InvalidChar(7))));
    }
}
