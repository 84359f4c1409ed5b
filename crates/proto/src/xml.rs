//! The XML encoding of SyncML DM 1.2 messages.
//!
//! Decoding is a recursive descent over quick-xml's event stream that builds the
//! model directly: elements are matched by local name (so `syncml:metinf` prefixes or a
//! `<MetInf>` wrapper inside `<Meta>` are all read the same), a DOCTYPE is read and
//! never resolved, CDATA and entities are expanded, elements the model has no place for
//! are skipped, and nesting is bounded. Encoding writes compact XML in DTD order.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

use crate::model::*;

/// Deepest element nesting accepted (Atomic and Sequence may nest in each other).
pub const MAX_DEPTH: usize = 64;

/// Why a document is not a valid DM message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed XML near byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
    #[error("the document ends inside <{0}>")]
    Truncated(&'static str),
    #[error("the root element is <{0}>, not <SyncML>")]
    NotSyncMl(String),
    #[error("<SyncML> has namespace {0:?}, not SYNCML:SYNCML1.2")]
    Namespace(String),
    #[error("<{parent}> has no <{element}>")]
    Missing {
        parent: &'static str,
        element: &'static str,
    },
    #[error("<{element}> must be a number, not {value:?}")]
    NotANumber {
        element: &'static str,
        value: String,
    },
    #[error("<{0}> is a SyncML command that DM does not use")]
    UnsupportedCommand(&'static str),
    #[error("elements are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

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
    let mut parser = Parser {
        reader: Reader::from_reader(input),
        input,
        depth: 0,
    };
    parser.message()
}

/// Encodes a DM message as compact XML.
pub fn encode(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer {
        out: Vec::with_capacity(1024),
    };
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?><SyncML xmlns=\"SYNCML:SYNCML1.2\">");
    w.header(&message.header)?;
    w.raw("<SyncBody>");
    for command in &message.body.commands {
        w.command(command)?;
    }
    if message.body.is_final {
        w.raw("<Final/>");
    }
    w.raw("</SyncBody></SyncML>");
    Ok(w.out)
}

/// The element names the model knows, matched once per start tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    SyncMl,
    SyncHdr,
    SyncBody,
    VerDtd,
    VerProto,
    SessionId,
    MsgId,
    Target,
    Source,
    LocUri,
    LocName,
    RespUri,
    Cred,
    Meta,
    MetInf,
    Format,
    Type,
    Mark,
    Size,
    NextNonce,
    Version,
    MaxMsgSize,
    MaxObjSize,
    Emi,
    Data,
    Final,
    Add,
    Alert,
    Atomic,
    Copy,
    Delete,
    Exec,
    Get,
    Replace,
    Results,
    Sequence,
    Status,
    Map,
    Put,
    Search,
    Sync,
    Item,
    MoreData,
    CmdId,
    MsgRef,
    CmdRef,
    Cmd,
    TargetRef,
    SourceRef,
    Chal,
    Correlator,
    Other,
}

impl Tag {
    fn of(local_name: &str) -> Tag {
        match local_name {
            "SyncML" => Tag::SyncMl,
            "SyncHdr" => Tag::SyncHdr,
            "SyncBody" => Tag::SyncBody,
            "VerDTD" => Tag::VerDtd,
            "VerProto" => Tag::VerProto,
            "SessionID" => Tag::SessionId,
            "MsgID" => Tag::MsgId,
            "Target" => Tag::Target,
            "Source" => Tag::Source,
            "LocURI" => Tag::LocUri,
            "LocName" => Tag::LocName,
            "RespURI" => Tag::RespUri,
            "Cred" => Tag::Cred,
            "Meta" => Tag::Meta,
            "MetInf" => Tag::MetInf,
            "Format" => Tag::Format,
            "Type" => Tag::Type,
            "Mark" => Tag::Mark,
            "Size" => Tag::Size,
            "NextNonce" => Tag::NextNonce,
            "Version" => Tag::Version,
            "MaxMsgSize" => Tag::MaxMsgSize,
            "MaxObjSize" => Tag::MaxObjSize,
            "EMI" => Tag::Emi,
            "Data" => Tag::Data,
            "Final" => Tag::Final,
            "Add" => Tag::Add,
            "Alert" => Tag::Alert,
            "Atomic" => Tag::Atomic,
            "Copy" => Tag::Copy,
            "Delete" => Tag::Delete,
            "Exec" => Tag::Exec,
            "Get" => Tag::Get,
            "Replace" => Tag::Replace,
            "Results" => Tag::Results,
            "Sequence" => Tag::Sequence,
            "Status" => Tag::Status,
            "Map" => Tag::Map,
            "Put" => Tag::Put,
            "Search" => Tag::Search,
            "Sync" => Tag::Sync,
            "Item" => Tag::Item,
            "MoreData" => Tag::MoreData,
            "CmdID" => Tag::CmdId,
            "MsgRef" => Tag::MsgRef,
            "CmdRef" => Tag::CmdRef,
            "Cmd" => Tag::Cmd,
            "TargetRef" => Tag::TargetRef,
            "SourceRef" => Tag::SourceRef,
            "Chal" => Tag::Chal,
            "Correlator" => Tag::Correlator,
            _ => Tag::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tag::SyncMl => "SyncML",
            Tag::SyncHdr => "SyncHdr",
            Tag::SyncBody => "SyncBody",
            Tag::VerDtd => "VerDTD",
            Tag::VerProto => "VerProto",
            Tag::SessionId => "SessionID",
            Tag::MsgId => "MsgID",
            Tag::Target => "Target",
            Tag::Source => "Source",
            Tag::LocUri => "LocURI",
            Tag::LocName => "LocName",
            Tag::RespUri => "RespURI",
            Tag::Cred => "Cred",
            Tag::Meta => "Meta",
            Tag::MetInf => "MetInf",
            Tag::Format => "Format",
            Tag::Type => "Type",
            Tag::Mark => "Mark",
            Tag::Size => "Size",
            Tag::NextNonce => "NextNonce",
            Tag::Version => "Version",
            Tag::MaxMsgSize => "MaxMsgSize",
            Tag::MaxObjSize => "MaxObjSize",
            Tag::Emi => "EMI",
            Tag::Data => "Data",
            Tag::Final => "Final",
            Tag::Add => "Add",
            Tag::Alert => "Alert",
            Tag::Atomic => "Atomic",
            Tag::Copy => "Copy",
            Tag::Delete => "Delete",
            Tag::Exec => "Exec",
            Tag::Get => "Get",
            Tag::Replace => "Replace",
            Tag::Results => "Results",
            Tag::Sequence => "Sequence",
            Tag::Status => "Status",
            Tag::Map => "Map",
            Tag::Put => "Put",
            Tag::Search => "Search",
            Tag::Sync => "Sync",
            Tag::Item => "Item",
            Tag::MoreData => "MoreData",
            Tag::CmdId => "CmdID",
            Tag::MsgRef => "MsgRef",
            Tag::CmdRef => "CmdRef",
            Tag::Cmd => "Cmd",
            Tag::TargetRef => "TargetRef",
            Tag::SourceRef => "SourceRef",
            Tag::Chal => "Chal",
            Tag::Correlator => "Correlator",
            Tag::Other => "element",
        }
    }
}

/// One step of the event stream, reduced to what the grammar needs.
enum Node<'a> {
    Open(Tag, bool),
    Close,
    Text(Cow<'a, str>),
    Eof,
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    input: &'a [u8],
    depth: usize,
}

type Decoded<T> = Result<T, DecodeError>;

impl<'a> Parser<'a> {
    fn syntax(&self, error: impl std::fmt::Display) -> DecodeError {
        DecodeError::Syntax {
            offset: self.reader.error_position(),
            message: error.to_string(),
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

    fn message(&mut self) -> Decoded<Message> {
        // The root: skip the prolog, check the name and namespace.
        let root = loop {
            match self.reader.read_event().map_err(|e| self.syntax(e))? {
                Event::Start(e) => break e,
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
        };
        check_root(&root)?;
        let (mut header, mut body) = (None, None);
        self.depth = 1;
        self.children(Tag::SyncMl, false, |p, tag, empty| {
            match tag {
                Tag::SyncHdr => header = Some(p.header(empty)?),
                Tag::SyncBody => body = Some(p.body(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Message {
            header: header.ok_or(missing("SyncML", Tag::SyncHdr))?,
            body: body.ok_or(missing("SyncML", Tag::SyncBody))?,
        })
    }

    /// Calls `each` for every child element of the element just opened, until its end.
    fn children(
        &mut self,
        parent: Tag,
        empty: bool,
        mut each: impl FnMut(&mut Self, Tag, bool) -> Decoded<()>,
    ) -> Decoded<()> {
        if empty {
            return Ok(());
        }
        loop {
            match self.next()? {
                Node::Open(tag, empty) => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(DecodeError::TooDeep);
                    }
                    each(self, tag, empty)?;
                    self.depth -= 1;
                }
                Node::Close => return Ok(()),
                Node::Text(_) => {}
                Node::Eof => return Err(DecodeError::Truncated(parent.name())),
            }
        }
    }

    fn skip(&mut self, tag: Tag, empty: bool) -> Decoded<()> {
        self.children(tag, empty, |p, tag, empty| p.skip(tag, empty))
    }

    /// The text of a leaf element, trimmed. Child elements are skipped.
    fn text(&mut self, tag: Tag, empty: bool) -> Decoded<String> {
        let mut text = String::new();
        if empty {
            return Ok(text);
        }
        loop {
            match self.next()? {
                Node::Text(t) => text.push_str(&t),
                Node::Open(child, empty) => self.skip(child, empty)?,
                Node::Close => break,
                Node::Eof => return Err(DecodeError::Truncated(tag.name())),
            }
        }
        let trimmed = text.trim();
        if trimmed.len() != text.len() {
            text = trimmed.to_owned();
        }
        Ok(text)
    }

    fn number<T: std::str::FromStr>(&mut self, tag: Tag, empty: bool) -> Decoded<T> {
        let text = self.text(tag, empty)?;
        text.parse().map_err(|_| DecodeError::NotANumber {
            element: tag.name(),
            value: text,
        })
    }

    /// `<Data>`: text (with CDATA and entities) or an embedded element kept as XML.
    fn data(&mut self, empty: bool) -> Decoded<Data> {
        if empty {
            return Ok(Data::Text(String::new()));
        }
        let start = self.reader.buffer_position() as usize;
        let mut text = String::new();
        let mut embedded = false;
        loop {
            let before = self.reader.buffer_position() as usize;
            match self.next()? {
                Node::Text(t) => text.push_str(&t),
                Node::Open(child, empty) => {
                    embedded = true;
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(DecodeError::TooDeep);
                    }
                    self.skip(child, empty)?;
                    self.depth -= 1;
                }
                Node::Close if embedded => {
                    let raw = self.input.get(start..before).unwrap_or_default();
                    let raw = String::from_utf8_lossy(raw);
                    return Ok(Data::Xml(raw.trim().to_owned()));
                }
                Node::Close => return Ok(Data::Text(text)),
                Node::Eof => return Err(DecodeError::Truncated("Data")),
            }
        }
    }

    fn header(&mut self, empty: bool) -> Decoded<Header> {
        let (mut ver_dtd, mut ver_proto, mut session_id, mut msg_id) = (None, None, None, None);
        let (mut target, mut source, mut resp_uri, mut cred, mut meta) =
            (None, None, None, None, None);
        self.children(Tag::SyncHdr, empty, |p, tag, empty| {
            match tag {
                Tag::VerDtd => ver_dtd = Some(p.text(tag, empty)?),
                Tag::VerProto => ver_proto = Some(p.text(tag, empty)?),
                Tag::SessionId => session_id = Some(p.text(tag, empty)?),
                Tag::MsgId => msg_id = Some(p.number(tag, empty)?),
                Tag::Target => target = Some(p.location(tag, empty)?),
                Tag::Source => source = Some(p.location(tag, empty)?),
                Tag::RespUri => resp_uri = Some(p.text(tag, empty)?),
                Tag::Cred => cred = Some(p.cred(empty)?),
                Tag::Meta => meta = Some(p.meta(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        let hdr = |tag| missing("SyncHdr", tag);
        Ok(Header {
            ver_dtd: ver_dtd.ok_or(hdr(Tag::VerDtd))?,
            ver_proto: ver_proto.ok_or(hdr(Tag::VerProto))?,
            session_id: session_id.ok_or(hdr(Tag::SessionId))?,
            msg_id: msg_id.ok_or(hdr(Tag::MsgId))?,
            target: target.ok_or(hdr(Tag::Target))?,
            source: source.ok_or(hdr(Tag::Source))?,
            resp_uri,
            cred,
            meta,
        })
    }

    fn location(&mut self, parent: Tag, empty: bool) -> Decoded<Location> {
        let (mut uri, mut name) = (None, None);
        self.children(parent, empty, |p, tag, empty| {
            match tag {
                Tag::LocUri => uri = Some(p.text(tag, empty)?),
                Tag::LocName => name = Some(p.text(tag, empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Location {
            uri: uri.ok_or(missing(parent.name(), Tag::LocUri))?,
            name,
        })
    }

    fn cred(&mut self, empty: bool) -> Decoded<Cred> {
        let (mut meta, mut data) = (None, None);
        self.children(Tag::Cred, empty, |p, tag, empty| {
            match tag {
                Tag::Meta => meta = Some(p.meta(empty)?),
                Tag::Data => data = Some(p.text(tag, empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Cred {
            meta: meta.unwrap_or_default(),
            data: data.ok_or(missing("Cred", Tag::Data))?,
        })
    }

    fn meta(&mut self, empty: bool) -> Decoded<Meta> {
        let mut meta = Meta::default();
        self.meta_into(Tag::Meta, empty, &mut meta)?;
        Ok(meta)
    }

    fn meta_into(&mut self, parent: Tag, empty: bool, meta: &mut Meta) -> Decoded<()> {
        self.children(parent, empty, |p, tag, empty| {
            match tag {
                Tag::MetInf => p.meta_into(tag, empty, meta)?,
                Tag::Format => meta.format = Some(p.text(tag, empty)?),
                Tag::Type => meta.r#type = Some(p.text(tag, empty)?),
                Tag::Mark => meta.mark = Some(p.text(tag, empty)?),
                Tag::Size => meta.size = Some(p.number(tag, empty)?),
                Tag::NextNonce => meta.next_nonce = Some(p.text(tag, empty)?),
                Tag::Version => meta.version = Some(p.text(tag, empty)?),
                Tag::MaxMsgSize => meta.max_msg_size = Some(p.number(tag, empty)?),
                Tag::MaxObjSize => meta.max_obj_size = Some(p.number(tag, empty)?),
                Tag::Emi => meta.emi.push(p.text(tag, empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })
    }

    fn body(&mut self, empty: bool) -> Decoded<Body> {
        let mut body = Body::default();
        self.children(Tag::SyncBody, empty, |p, tag, empty| {
            match tag {
                Tag::Final => {
                    body.is_final = true;
                    p.skip(tag, empty)?;
                }
                _ => {
                    if let Some(command) = p.command(tag, empty)? {
                        body.commands.push(command);
                    }
                }
            }
            Ok(())
        })?;
        Ok(body)
    }

    /// A command element, or `None` for an element that is none (skipped).
    fn command(&mut self, tag: Tag, empty: bool) -> Decoded<Option<Command>> {
        Ok(Some(match tag {
            Tag::Add => Command::Add(self.item_command(tag, empty)?),
            Tag::Copy => Command::Copy(self.item_command(tag, empty)?),
            Tag::Delete => Command::Delete(self.item_command(tag, empty)?),
            Tag::Get => Command::Get(self.item_command(tag, empty)?),
            Tag::Replace => Command::Replace(self.item_command(tag, empty)?),
            Tag::Alert => Command::Alert(self.alert(empty)?),
            Tag::Exec => Command::Exec(self.exec(empty)?),
            Tag::Atomic => Command::Atomic(self.container(tag, empty)?),
            Tag::Sequence => Command::Sequence(self.container(tag, empty)?),
            Tag::Results => Command::Results(self.results(empty)?),
            Tag::Status => Command::Status(self.status(empty)?),
            Tag::Map | Tag::Put | Tag::Search | Tag::Sync => {
                return Err(DecodeError::UnsupportedCommand(tag.name()));
            }
            _ => {
                self.skip(tag, empty)?;
                return Ok(None);
            }
        }))
    }

    fn item_command(&mut self, parent: Tag, empty: bool) -> Decoded<ItemCommand> {
        let (mut cmd_id, mut meta, mut items) = (None, None, Vec::new());
        self.children(parent, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::Meta => meta = Some(p.meta(empty)?),
                Tag::Item => items.push(p.item(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(ItemCommand {
            cmd_id: cmd_id.ok_or(missing(parent.name(), Tag::CmdId))?,
            meta,
            items,
        })
    }

    fn alert(&mut self, empty: bool) -> Decoded<Alert> {
        let (mut cmd_id, mut code, mut correlator, mut items) = (None, None, None, Vec::new());
        self.children(Tag::Alert, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::Data => code = Some(p.number(tag, empty)?),
                Tag::Correlator => correlator = Some(p.text(tag, empty)?),
                Tag::Item => items.push(p.item(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Alert {
            cmd_id: cmd_id.ok_or(missing("Alert", Tag::CmdId))?,
            code: code.ok_or(missing("Alert", Tag::Data))?,
            correlator,
            items,
        })
    }

    fn exec(&mut self, empty: bool) -> Decoded<Exec> {
        let (mut cmd_id, mut meta, mut correlator, mut items) = (None, None, None, Vec::new());
        self.children(Tag::Exec, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::Meta => meta = Some(p.meta(empty)?),
                Tag::Correlator => correlator = Some(p.text(tag, empty)?),
                Tag::Item => items.push(p.item(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Exec {
            cmd_id: cmd_id.ok_or(missing("Exec", Tag::CmdId))?,
            meta,
            correlator,
            items,
        })
    }

    fn container(&mut self, parent: Tag, empty: bool) -> Decoded<Container> {
        let (mut cmd_id, mut meta, mut commands) = (None, None, Vec::new());
        self.children(parent, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::Meta => meta = Some(p.meta(empty)?),
                _ => commands.extend(p.command(tag, empty)?),
            }
            Ok(())
        })?;
        Ok(Container {
            cmd_id: cmd_id.ok_or(missing(parent.name(), Tag::CmdId))?,
            meta,
            commands,
        })
    }

    fn results(&mut self, empty: bool) -> Decoded<Results> {
        let (mut cmd_id, mut msg_ref, mut cmd_ref, mut meta) = (None, None, None, None);
        let (mut target_ref, mut source_ref, mut items) = (None, None, Vec::new());
        self.children(Tag::Results, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::MsgRef => msg_ref = Some(p.number(tag, empty)?),
                Tag::CmdRef => cmd_ref = Some(p.number(tag, empty)?),
                Tag::Meta => meta = Some(p.meta(empty)?),
                Tag::TargetRef => target_ref = Some(p.text(tag, empty)?),
                Tag::SourceRef => source_ref = Some(p.text(tag, empty)?),
                Tag::Item => items.push(p.item(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Results {
            cmd_id: cmd_id.ok_or(missing("Results", Tag::CmdId))?,
            msg_ref,
            cmd_ref: cmd_ref.ok_or(missing("Results", Tag::CmdRef))?,
            meta,
            target_ref,
            source_ref,
            items,
        })
    }

    fn status(&mut self, empty: bool) -> Decoded<Status> {
        let (mut cmd_id, mut msg_ref, mut cmd_ref, mut cmd) = (None, None, None, None);
        let (mut target_refs, mut source_refs, mut chal, mut code, mut items) =
            (Vec::new(), Vec::new(), None, None, Vec::new());
        self.children(Tag::Status, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::MsgRef => msg_ref = Some(p.number(tag, empty)?),
                Tag::CmdRef => cmd_ref = Some(p.number(tag, empty)?),
                Tag::Cmd => cmd = Some(p.text(tag, empty)?),
                Tag::TargetRef => target_refs.push(p.text(tag, empty)?),
                Tag::SourceRef => source_refs.push(p.text(tag, empty)?),
                Tag::Chal => {
                    let mut meta = Meta::default();
                    p.children(tag, empty, |p, tag, empty| match tag {
                        Tag::Meta => p.meta_into(tag, empty, &mut meta),
                        _ => p.skip(tag, empty),
                    })?;
                    chal = Some(Chal { meta });
                }
                Tag::Data => code = Some(p.number(tag, empty)?),
                Tag::Item => items.push(p.item(empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        let need = |tag| missing("Status", tag);
        Ok(Status {
            cmd_id: cmd_id.ok_or(need(Tag::CmdId))?,
            msg_ref: msg_ref.ok_or(need(Tag::MsgRef))?,
            cmd_ref: cmd_ref.ok_or(need(Tag::CmdRef))?,
            cmd: cmd.ok_or(need(Tag::Cmd))?,
            target_refs,
            source_refs,
            chal,
            code: code.ok_or(need(Tag::Data))?,
            items,
        })
    }

    fn item(&mut self, empty: bool) -> Decoded<Item> {
        let mut item = Item::default();
        self.children(Tag::Item, empty, |p, tag, empty| {
            match tag {
                Tag::Target => item.target = Some(p.location(tag, empty)?),
                Tag::Source => item.source = Some(p.location(tag, empty)?),
                Tag::Meta => item.meta = Some(p.meta(empty)?),
                Tag::Data => item.data = Some(p.data(empty)?),
                Tag::MoreData => {
                    item.more_data = true;
                    p.skip(tag, empty)?;
                }
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(item)
    }
}

fn missing(parent: &'static str, element: Tag) -> DecodeError {
    DecodeError::Missing {
        parent,
        element: element.name(),
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
struct Writer {
    out: Vec<u8>,
}

type Written = std::result::Result<(), EncodeError>;

impl Writer {
    fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    fn open(&mut self, name: &str) {
        self.out.push(b'<');
        self.raw(name);
        self.out.push(b'>');
    }

    fn close(&mut self, name: &str) {
        self.raw("</");
        self.raw(name);
        self.out.push(b'>');
    }

    /// Escapes `<`, `&`, `>` and carriage returns (which parsers would otherwise fold).
    fn escaped(&mut self, text: &str) -> Written {
        let mut clean = 0;
        for (at, c) in text.char_indices() {
            let replacement = match c {
                '<' => "&lt;",
                '&' => "&amp;",
                '>' => "&gt;",
                '\r' => "&#13;",
                '\t' | '\n' => continue,
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                    return Err(EncodeError::InvalidChar(c as u32));
                }
                _ => continue,
            };
            self.raw(&text[clean..at]);
            self.raw(replacement);
            clean = at + c.len_utf8();
        }
        self.raw(&text[clean..]);
        Ok(())
    }

    fn leaf(&mut self, name: &str, text: &str) -> Written {
        self.open(name);
        self.escaped(text)?;
        self.close(name);
        Ok(())
    }

    fn number(&mut self, name: &str, value: impl std::fmt::Display) {
        self.open(name);
        self.raw(&value.to_string());
        self.close(name);
    }

    fn header(&mut self, h: &Header) -> Written {
        self.open("SyncHdr");
        self.leaf("VerDTD", &h.ver_dtd)?;
        self.leaf("VerProto", &h.ver_proto)?;
        self.leaf("SessionID", &h.session_id)?;
        self.number("MsgID", h.msg_id);
        self.location("Target", &h.target)?;
        self.location("Source", &h.source)?;
        if let Some(uri) = &h.resp_uri {
            self.leaf("RespURI", uri)?;
        }
        if let Some(cred) = &h.cred {
            self.open("Cred");
            self.meta(&cred.meta)?;
            self.leaf("Data", &cred.data)?;
            self.close("Cred");
        }
        if let Some(meta) = &h.meta {
            self.meta(meta)?;
        }
        self.close("SyncHdr");
        Ok(())
    }

    fn location(&mut self, name: &str, location: &Location) -> Written {
        self.open(name);
        self.leaf("LocURI", &location.uri)?;
        if let Some(loc_name) = &location.name {
            self.leaf("LocName", loc_name)?;
        }
        self.close(name);
        Ok(())
    }

    fn meta(&mut self, meta: &Meta) -> Written {
        self.open("Meta");
        let texts = [
            ("Format", &meta.format),
            ("Type", &meta.r#type),
            ("Mark", &meta.mark),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                self.metinf(name, value)?;
            }
        }
        if let Some(size) = meta.size {
            self.metinf("Size", &size.to_string())?;
        }
        if let Some(nonce) = &meta.next_nonce {
            self.metinf("NextNonce", nonce)?;
        }
        if let Some(version) = &meta.version {
            self.metinf("Version", version)?;
        }
        if let Some(size) = meta.max_msg_size {
            self.metinf("MaxMsgSize", &size.to_string())?;
        }
        if let Some(size) = meta.max_obj_size {
            self.metinf("MaxObjSize", &size.to_string())?;
        }
        for emi in &meta.emi {
            self.metinf("EMI", emi)?;
        }
        self.close("Meta");
        Ok(())
    }

    fn metinf(&mut self, name: &str, value: &str) -> Written {
        self.out.push(b'<');
        self.raw(name);
        self.raw(" xmlns=\"syncml:metinf\">");
        self.escaped(value)?;
        self.close(name);
        Ok(())
    }

    fn cmd_id_and_meta(&mut self, cmd_id: u32, meta: &Option<Meta>) -> Written {
        self.number("CmdID", cmd_id);
        if let Some(meta) = meta {
            self.meta(meta)?;
        }
        Ok(())
    }

    fn items(&mut self, items: &[Item]) -> Written {
        items.iter().try_for_each(|item| self.item(item))
    }

    fn command(&mut self, command: &Command) -> Written {
        let name = command.name();
        self.open(name);
        match command {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => {
                self.cmd_id_and_meta(c.cmd_id, &c.meta)?;
                self.items(&c.items)?;
            }
            Command::Alert(a) => {
                self.number("CmdID", a.cmd_id);
                self.number("Data", a.code);
                if let Some(correlator) = &a.correlator {
                    self.leaf("Correlator", correlator)?;
                }
                self.items(&a.items)?;
            }
            Command::Exec(e) => {
                self.cmd_id_and_meta(e.cmd_id, &e.meta)?;
                if let Some(correlator) = &e.correlator {
                    self.leaf("Correlator", correlator)?;
                }
                self.items(&e.items)?;
            }
            Command::Atomic(c) | Command::Sequence(c) => {
                self.cmd_id_and_meta(c.cmd_id, &c.meta)?;
                c.commands.iter().try_for_each(|m| self.command(m))?;
            }
            Command::Results(r) => {
                self.number("CmdID", r.cmd_id);
                if let Some(msg_ref) = r.msg_ref {
                    self.number("MsgRef", msg_ref);
                }
                self.number("CmdRef", r.cmd_ref);
                if let Some(meta) = &r.meta {
                    self.meta(meta)?;
                }
                if let Some(target) = &r.target_ref {
                    self.leaf("TargetRef", target)?;
                }
                if let Some(source) = &r.source_ref {
                    self.leaf("SourceRef", source)?;
                }
                self.items(&r.items)?;
            }
            Command::Status(s) => {
                self.number("CmdID", s.cmd_id);
                self.number("MsgRef", s.msg_ref);
                self.number("CmdRef", s.cmd_ref);
                self.leaf("Cmd", &s.cmd)?;
                for target in &s.target_refs {
                    self.leaf("TargetRef", target)?;
                }
                for source in &s.source_refs {
                    self.leaf("SourceRef", source)?;
                }
                if let Some(chal) = &s.chal {
                    self.open("Chal");
                    self.meta(&chal.meta)?;
                    self.close("Chal");
                }
                self.number("Data", s.code);
                self.items(&s.items)?;
            }
        }
        self.close(name);
        Ok(())
    }

    fn item(&mut self, item: &Item) -> Written {
        self.open("Item");
        if let Some(target) = &item.target {
            self.location("Target", target)?;
        }
        if let Some(source) = &item.source {
            self.location("Source", source)?;
        }
        if let Some(meta) = &item.meta {
            self.meta(meta)?;
        }
        match &item.data {
            None => {}
            Some(Data::Text(text)) => self.leaf("Data", text)?,
            Some(Data::Xml(xml)) => {
                self.open("Data");
                self.raw(xml);
                self.close("Data");
            }
            Some(Data::Bytes(bytes)) => return Err(EncodeError::BinaryData(bytes.len())),
        }
        if item.more_data {
            self.raw("<MoreData/>");
        }
        self.close("Item");
        Ok(())
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
