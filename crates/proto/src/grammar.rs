//! The element grammar of SyncML DM 1.2 shared by both encodings: decoding reads
//! the model from a stream of open/close/text tokens ([`Lexer`]), encoding walks the
//! model and hands the same tokens to a [`Sink`]. The XML and WBXML modules only turn
//! bytes into tokens and tokens into bytes.

use std::borrow::Cow;

use crate::model::*;
pub(crate) use crate::tags::Tag;

/// Deepest element nesting accepted (Atomic and Sequence may nest in each other).
pub const MAX_DEPTH: usize = 64;

/// Why a document is not a valid DM message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Broken syntax (of XML or of WBXML: the codec error names which).
    #[error("near byte {offset}: {message}")]
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

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Whether `name` can be an element name as gwmo writes XML: ASCII letters, digits,
/// `-`, `.` and `_`, not starting with a digit, `-` or `.` (every DM and TNDS name is).
pub(crate) fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// One step of the event stream, reduced to what the grammar needs.
pub(crate) enum Node<'a> {
    Open(Tag, bool),
    Close,
    Text(Cow<'a, str>),
    Eof,
}

/// Where decoding reads its tokens from.
pub(crate) trait Lexer<'a> {
    /// Reads up to and including the opening of a non-empty `<SyncML>` root.
    fn root(&mut self) -> Decoded<()>;
    fn next(&mut self) -> Decoded<Node<'a>>;
    /// The content of a leaf element just opened, read through its end, when it is
    /// one string: the common case, read without two trips through [`Lexer::next`].
    /// `None`, with nothing read, otherwise.
    fn one_string_and_end(&mut self) -> Decoded<Option<&'a str>> {
        Ok(None)
    }
    /// The content of a leaf element just opened, read through its end, when it is
    /// one string of decimal digits that fits a `u64` (a CmdID, a MsgRef, a size):
    /// read straight from the bytes. `None`, with nothing read, otherwise.
    fn one_number_and_end(&mut self) -> Decoded<Option<u64>> {
        Ok(None)
    }
    /// The content of a `<Data>` just opened, through its end; nested elements may go
    /// `depth_left` levels deep.
    fn data(&mut self, depth_left: usize) -> Decoded<Data>;
}

pub(crate) type Decoded<T> = Result<T, DecodeError>;

/// Recursive descent over a lexer's tokens, straight into the model.
pub(crate) struct Grammar<L> {
    lexer: L,
    depth: usize,
}

impl<'a, L: Lexer<'a>> Grammar<L> {
    pub(crate) fn new(lexer: L) -> Self {
        Grammar { lexer, depth: 1 }
    }

    pub(crate) fn message(&mut self) -> Decoded<Message> {
        self.lexer.root()?;
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
            header: header.ok_or_else(|| missing("SyncML", Tag::SyncHdr))?,
            body: body.ok_or_else(|| missing("SyncML", Tag::SyncBody))?,
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
            match self.lexer.next()? {
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

    /// The text of a leaf element, without the XML white space (ASCII) around it.
    /// Child elements are skipped.
    fn text(&mut self, tag: Tag, empty: bool) -> Decoded<String> {
        Ok(self.text_in_place(tag, empty)?.into_owned())
    }

    /// [`Self::text`] as a [`Word`]: not copied when it is a word the protocol names.
    fn word(&mut self, tag: Tag, empty: bool) -> Decoded<Word> {
        Ok(crate::model::word(self.text_in_place(tag, empty)?))
    }

    /// [`Self::text`], borrowed from the input where it is one piece there.
    fn text_in_place(&mut self, tag: Tag, empty: bool) -> Decoded<Cow<'a, str>> {
        let mut text = Cow::Borrowed("");
        if empty {
            return Ok(text);
        }
        if let Some(text) = self.lexer.one_string_and_end()? {
            return Ok(Cow::Borrowed(text.trim_ascii()));
        }
        loop {
            match self.lexer.next()? {
                Node::Text(piece) if text.is_empty() => text = piece,
                Node::Text(piece) => text.to_mut().push_str(&piece),
                Node::Open(child, empty) => self.skip(child, empty)?,
                Node::Close => break,
                Node::Eof => return Err(DecodeError::Truncated(tag.name())),
            }
        }
        Ok(match text {
            Cow::Borrowed(text) => Cow::Borrowed(text.trim_ascii()),
            Cow::Owned(text) if text.trim_ascii().len() == text.len() => Cow::Owned(text),
            Cow::Owned(text) => Cow::Owned(text.trim_ascii().to_owned()),
        })
    }

    fn number<T: std::str::FromStr + TryFrom<u64>>(&mut self, tag: Tag, empty: bool) -> Decoded<T> {
        if !empty && let Some(number) = self.lexer.one_number_and_end()? {
            return T::try_from(number).map_err(|_| DecodeError::NotANumber {
                element: tag.name(),
                value: number.to_string(),
            });
        }
        let text = self.text_in_place(tag, empty)?;
        text.parse().map_err(|_| DecodeError::NotANumber {
            element: tag.name(),
            value: text.into_owned(),
        })
    }

    /// `<Data>`: what the encoding makes of it (text, opaque bytes, embedded XML).
    fn data(&mut self, empty: bool) -> Decoded<Data> {
        if empty {
            return Ok(Data::Text(String::new()));
        }
        self.lexer.data(MAX_DEPTH.saturating_sub(self.depth))
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
                Tag::Meta => p.meta_into(tag, empty, meta.get_or_insert_default())?,
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        let hdr = |tag| missing("SyncHdr", tag);
        Ok(Header {
            ver_dtd: ver_dtd.ok_or_else(|| hdr(Tag::VerDtd))?,
            ver_proto: ver_proto.ok_or_else(|| hdr(Tag::VerProto))?,
            session_id: session_id.ok_or_else(|| hdr(Tag::SessionId))?,
            msg_id: msg_id.ok_or_else(|| hdr(Tag::MsgId))?,
            target: target.ok_or_else(|| hdr(Tag::Target))?,
            source: source.ok_or_else(|| hdr(Tag::Source))?,
            resp_uri,
            cred,
            meta: meta.map(Box::new),
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
            uri: uri.ok_or_else(|| missing(parent.name(), Tag::LocUri))?,
            name,
        })
    }

    fn cred(&mut self, empty: bool) -> Decoded<Cred> {
        let (mut meta, mut data) = (None, None);
        self.children(Tag::Cred, empty, |p, tag, empty| {
            match tag {
                Tag::Meta => p.meta_into(tag, empty, meta.get_or_insert_default())?,
                Tag::Data => data = Some(p.text(tag, empty)?),
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Cred {
            meta: meta.unwrap_or_default(),
            data: data.ok_or_else(|| missing("Cred", Tag::Data))?,
        })
    }

    fn meta_into(&mut self, parent: Tag, empty: bool, meta: &mut Meta) -> Decoded<()> {
        self.children(parent, empty, |p, tag, empty| {
            match tag {
                Tag::MetInf => p.meta_into(tag, empty, meta)?,
                Tag::Format => meta.format = Some(p.word(tag, empty)?),
                Tag::Type => meta.r#type = Some(p.word(tag, empty)?),
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
                Tag::Meta => p.meta_into(tag, empty, meta.get_or_insert_default())?,
                Tag::Item => p.push_item(empty, &mut items)?,
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(ItemCommand {
            cmd_id: cmd_id.ok_or_else(|| missing(parent.name(), Tag::CmdId))?,
            meta: meta.map(Box::new),
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
                Tag::Item => p.push_item(empty, &mut items)?,
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Alert {
            cmd_id: cmd_id.ok_or_else(|| missing("Alert", Tag::CmdId))?,
            code: code.ok_or_else(|| missing("Alert", Tag::Data))?,
            correlator,
            items,
        })
    }

    fn exec(&mut self, empty: bool) -> Decoded<Exec> {
        let (mut cmd_id, mut meta, mut correlator, mut items) = (None, None, None, Vec::new());
        self.children(Tag::Exec, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::Meta => p.meta_into(tag, empty, meta.get_or_insert_default())?,
                Tag::Correlator => correlator = Some(p.text(tag, empty)?),
                Tag::Item => p.push_item(empty, &mut items)?,
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Exec {
            cmd_id: cmd_id.ok_or_else(|| missing("Exec", Tag::CmdId))?,
            meta: meta.map(Box::new),
            correlator,
            items,
        })
    }

    fn container(&mut self, parent: Tag, empty: bool) -> Decoded<Container> {
        let (mut cmd_id, mut meta, mut commands) = (None, None, Vec::new());
        self.children(parent, empty, |p, tag, empty| {
            match tag {
                Tag::CmdId => cmd_id = Some(p.number(tag, empty)?),
                Tag::Meta => p.meta_into(tag, empty, meta.get_or_insert_default())?,
                _ => commands.extend(p.command(tag, empty)?),
            }
            Ok(())
        })?;
        Ok(Container {
            cmd_id: cmd_id.ok_or_else(|| missing(parent.name(), Tag::CmdId))?,
            meta: meta.map(Box::new),
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
                Tag::Meta => p.meta_into(tag, empty, meta.get_or_insert_default())?,
                Tag::TargetRef => target_ref = Some(p.text(tag, empty)?),
                Tag::SourceRef => source_ref = Some(p.text(tag, empty)?),
                Tag::Item => p.push_item(empty, &mut items)?,
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        Ok(Results {
            cmd_id: cmd_id.ok_or_else(|| missing("Results", Tag::CmdId))?,
            msg_ref,
            cmd_ref: cmd_ref.ok_or_else(|| missing("Results", Tag::CmdRef))?,
            meta: meta.map(Box::new),
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
                Tag::Cmd => cmd = Some(p.word(tag, empty)?),
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
                Tag::Data => code = Some(StatusCode(p.number(tag, empty)?)),
                Tag::Item => p.push_item(empty, &mut items)?,
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })?;
        let need = |tag| missing("Status", tag);
        Ok(Status {
            cmd_id: cmd_id.ok_or_else(|| need(Tag::CmdId))?,
            msg_ref: msg_ref.ok_or_else(|| need(Tag::MsgRef))?,
            cmd_ref: cmd_ref.ok_or_else(|| need(Tag::CmdRef))?,
            cmd: cmd.ok_or_else(|| need(Tag::Cmd))?,
            target_refs,
            source_refs,
            chal: chal.map(Box::new),
            code: code.ok_or_else(|| need(Tag::Data))?,
            items,
        })
    }

    /// Reads an `<Item>` into a new last entry of `items`, built in place; the first
    /// makes room for one only (most commands carry one).
    fn push_item(&mut self, empty: bool, items: &mut Vec<Item>) -> Decoded<()> {
        items.reserve_exact(usize::from(items.is_empty()));
        let index = items.len();
        items.push(Item::default());
        let item = &mut items[index];
        self.children(Tag::Item, empty, |p, tag, empty| {
            match tag {
                Tag::Target => item.target = Some(p.location(tag, empty)?),
                Tag::Source => item.source = Some(p.location(tag, empty)?),
                Tag::Meta => p.meta_into(tag, empty, item.meta.get_or_insert_default())?,
                Tag::Data => item.data = Some(p.data(empty)?),
                Tag::MoreData => {
                    item.more_data = true;
                    p.skip(tag, empty)?;
                }
                _ => p.skip(tag, empty)?,
            }
            Ok(())
        })
    }
}

pub(crate) fn missing(parent: &'static str, element: Tag) -> DecodeError {
    DecodeError::Missing {
        parent,
        element: element.name(),
    }
}

/// Where encoding writes its tokens to.
pub(crate) trait Sink {
    type Error;
    fn start(&mut self, tag: Tag);
    fn end(&mut self, tag: Tag);
    /// An element without content (`<Final/>`).
    fn empty(&mut self, tag: Tag);
    fn text(&mut self, text: &str) -> Result<(), Self::Error>;
    /// An Item's `<Data>` content.
    fn data(&mut self, data: &Data) -> Result<(), Self::Error>;
}

/// The most decimal digits a `u64` has.
const U64_DIGITS: usize = 20;

/// `value` in decimal, written into `digits`: a message has a number in most of its
/// elements, and none needs a string of its own.
fn decimal(mut value: u64, digits: &mut [u8; U64_DIGITS]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // ASCII digits only: never the empty default.
    std::str::from_utf8(&digits[at..]).unwrap_or_default()
}

/// Walks a message in DTD order, handing its elements to a sink.
pub(crate) struct Walk<'s, S> {
    sink: &'s mut S,
}

impl<'s, S: Sink> Walk<'s, S> {
    pub(crate) fn message(sink: &'s mut S, message: &Message) -> Result<(), S::Error> {
        let mut walk = Walk { sink };
        walk.sink.start(Tag::SyncMl);
        walk.header(&message.header)?;
        walk.sink.start(Tag::SyncBody);
        for command in &message.body.commands {
            walk.command(command)?;
        }
        if message.body.is_final {
            walk.sink.empty(Tag::Final);
        }
        walk.sink.end(Tag::SyncBody);
        walk.sink.end(Tag::SyncMl);
        Ok(())
    }

    fn leaf(&mut self, tag: Tag, text: &str) -> Result<(), S::Error> {
        self.sink.start(tag);
        self.sink.text(text)?;
        self.sink.end(tag);
        Ok(())
    }

    fn number(&mut self, tag: Tag, value: impl Into<u64>) -> Result<(), S::Error> {
        let mut digits = [0; U64_DIGITS];
        self.leaf(tag, decimal(value.into(), &mut digits))
    }

    fn optional(&mut self, tag: Tag, text: &Option<impl AsRef<str>>) -> Result<(), S::Error> {
        match text {
            Some(text) => self.leaf(tag, text.as_ref()),
            None => Ok(()),
        }
    }

    fn header(&mut self, h: &Header) -> Result<(), S::Error> {
        self.sink.start(Tag::SyncHdr);
        self.leaf(Tag::VerDtd, &h.ver_dtd)?;
        self.leaf(Tag::VerProto, &h.ver_proto)?;
        self.leaf(Tag::SessionId, &h.session_id)?;
        self.number(Tag::MsgId, h.msg_id)?;
        self.location(Tag::Target, &h.target)?;
        self.location(Tag::Source, &h.source)?;
        self.optional(Tag::RespUri, &h.resp_uri)?;
        if let Some(cred) = &h.cred {
            self.sink.start(Tag::Cred);
            self.meta(&cred.meta)?;
            self.leaf(Tag::Data, &cred.data)?;
            self.sink.end(Tag::Cred);
        }
        if let Some(meta) = &h.meta {
            self.meta(meta)?;
        }
        self.sink.end(Tag::SyncHdr);
        Ok(())
    }

    fn location(&mut self, tag: Tag, location: &Location) -> Result<(), S::Error> {
        self.sink.start(tag);
        self.leaf(Tag::LocUri, &location.uri)?;
        self.optional(Tag::LocName, &location.name)?;
        self.sink.end(tag);
        Ok(())
    }

    fn meta(&mut self, meta: &Meta) -> Result<(), S::Error> {
        self.sink.start(Tag::Meta);
        self.optional(Tag::Format, &meta.format)?;
        self.optional(Tag::Type, &meta.r#type)?;
        self.optional(Tag::Mark, &meta.mark)?;
        if let Some(size) = meta.size {
            self.number(Tag::Size, size)?;
        }
        self.optional(Tag::NextNonce, &meta.next_nonce)?;
        self.optional(Tag::Version, &meta.version)?;
        if let Some(size) = meta.max_msg_size {
            self.number(Tag::MaxMsgSize, size)?;
        }
        if let Some(size) = meta.max_obj_size {
            self.number(Tag::MaxObjSize, size)?;
        }
        for emi in &meta.emi {
            self.leaf(Tag::Emi, emi)?;
        }
        self.sink.end(Tag::Meta);
        Ok(())
    }

    fn cmd_id_and_meta(&mut self, cmd_id: u32, meta: &Option<Box<Meta>>) -> Result<(), S::Error> {
        self.number(Tag::CmdId, cmd_id)?;
        match meta {
            Some(meta) => self.meta(meta),
            None => Ok(()),
        }
    }

    fn items(&mut self, items: &[Item]) -> Result<(), S::Error> {
        items.iter().try_for_each(|item| self.item(item))
    }

    fn command(&mut self, command: &Command) -> Result<(), S::Error> {
        let tag = Tag::of(command.name());
        self.sink.start(tag);
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
                self.number(Tag::CmdId, a.cmd_id)?;
                self.number(Tag::Data, a.code)?;
                self.optional(Tag::Correlator, &a.correlator)?;
                self.items(&a.items)?;
            }
            Command::Exec(e) => {
                self.cmd_id_and_meta(e.cmd_id, &e.meta)?;
                self.optional(Tag::Correlator, &e.correlator)?;
                self.items(&e.items)?;
            }
            Command::Atomic(c) | Command::Sequence(c) => {
                self.cmd_id_and_meta(c.cmd_id, &c.meta)?;
                c.commands.iter().try_for_each(|m| self.command(m))?;
            }
            Command::Results(r) => {
                self.number(Tag::CmdId, r.cmd_id)?;
                if let Some(msg_ref) = r.msg_ref {
                    self.number(Tag::MsgRef, msg_ref)?;
                }
                self.number(Tag::CmdRef, r.cmd_ref)?;
                if let Some(meta) = &r.meta {
                    self.meta(meta)?;
                }
                self.optional(Tag::TargetRef, &r.target_ref)?;
                self.optional(Tag::SourceRef, &r.source_ref)?;
                self.items(&r.items)?;
            }
            Command::Status(s) => {
                self.number(Tag::CmdId, s.cmd_id)?;
                self.number(Tag::MsgRef, s.msg_ref)?;
                self.number(Tag::CmdRef, s.cmd_ref)?;
                self.leaf(Tag::Cmd, &s.cmd)?;
                for target in &s.target_refs {
                    self.leaf(Tag::TargetRef, target)?;
                }
                for source in &s.source_refs {
                    self.leaf(Tag::SourceRef, source)?;
                }
                if let Some(chal) = &s.chal {
                    self.sink.start(Tag::Chal);
                    self.meta(&chal.meta)?;
                    self.sink.end(Tag::Chal);
                }
                self.number(Tag::Data, s.code.get())?;
                self.items(&s.items)?;
            }
        }
        self.sink.end(tag);
        Ok(())
    }

    fn item(&mut self, item: &Item) -> Result<(), S::Error> {
        self.sink.start(Tag::Item);
        if let Some(target) = &item.target {
            self.location(Tag::Target, target)?;
        }
        if let Some(source) = &item.source {
            self.location(Tag::Source, source)?;
        }
        if let Some(meta) = &item.meta {
            self.meta(meta)?;
        }
        if let Some(data) = &item.data {
            self.sink.start(Tag::Data);
            self.sink.data(data)?;
            self.sink.end(Tag::Data);
        }
        if item.more_data {
            self.sink.empty(Tag::MoreData);
        }
        self.sink.end(Tag::Item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal_to_the_last_digit() {
        for value in [0, 7, 10, 99, 1_000_000_007, u64::MAX] {
            let mut digits = [0; U64_DIGITS];
            assert_eq!(decimal(value, &mut digits), value.to_string());
        }
    }
}
