//! The WBXML encoding of SyncML DM 1.2 messages (WBXML 1.2/1.3; SyncML code page 0,
//! MetInf code page 1, DM DDF/TNDS code page 2).
//!
//! Decoding reads the header and string table, then turns tokens into the tokens of
//! the shared grammar in one pass; an Item's `<Data>` may be strings, OPAQUE bytes, or
//! a nested WBXML document (TNDS, as libwbxml writes it), which comes back as XML.
//! Encoding makes two passes over the model: one counts repeated strings for the
//! string table, one writes tokens. Both directions are linear in the input, and every
//! length or offset is checked against what is left before it is used.

use std::borrow::Cow;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use quick_xml::events::Event;

pub use crate::grammar::{DecodeError, MAX_DEPTH};
use crate::grammar::{Decoded, Grammar, Lexer, Node, Sink, Walk, is_xml_name};
use crate::model::*;
use crate::tags::{Tag, tag_of_token, tnds_token};

const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const ENTITY: u8 = 0x02;
const STR_I: u8 = 0x03;
const LITERAL: u8 = 0x04;
const STR_T: u8 = 0x83;
const OPAQUE: u8 = 0xC3;
const CONTENT: u8 = 0x40;
const ATTRIBUTES: u8 = 0x80;

/// WBXML public identifier of SyncML 1.2.
const SYNCML_12: u32 = 0x1201;
/// UTF-8 (IANA MIBenum 106).
const UTF8: u32 = 106;
/// TNDS has no numeric public identifier: it is named in the string table.
const TNDS_PUBLIC_ID: &str = "-//OMA//DTD-DM-DDF 1.2//EN";
const TNDS_NAMESPACE: &str = "syncml:dmddf1.2";

/// Why a message cannot be written as WBXML.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("text with a NUL character cannot be a WBXML inline string")]
    NulInText,
    #[error("embedded XML in <Data> is malformed: {0}")]
    EmbeddedXml(String),
}

/// Decodes a WBXML DM message.
pub fn decode(input: &[u8]) -> Result<Message, DecodeError> {
    let (reader, _) = Reader::open(input)?;
    Grammar::new(WbxmlLexer { reader }).message()
}

/// Encodes a DM message as WBXML 1.2 with a string table of repeated strings.
pub fn encode(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut counter = StringCounter::default();
    Walk::message(&mut counter, message)?;
    let table = counter.into_table();
    let mut sink = WbxmlSink {
        out: Vec::with_capacity(512),
        page: 0,
        table: &table.offsets,
    };
    sink.out.push(0x02);
    write_mb(&mut sink.out, SYNCML_12);
    write_mb(&mut sink.out, UTF8);
    write_mb(&mut sink.out, table.bytes.len() as u32);
    sink.out.extend_from_slice(&table.bytes);
    Walk::message(&mut sink, message)?;
    Ok(sink.out)
}

fn write_mb(out: &mut Vec<u8>, mut value: u32) {
    let mut bytes = [0u8; 5];
    let mut at = bytes.len() - 1;
    bytes[at] = (value & 0x7F) as u8;
    value >>= 7;
    while value > 0 {
        at -= 1;
        bytes[at] = (value & 0x7F) as u8 | 0x80;
        value >>= 7;
    }
    out.extend_from_slice(&bytes[at..]);
}

/// A cursor over a WBXML document: header, string table, and tokens.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    table: &'a [u8],
    /// The string table as text, when it is UTF-8 as a whole (as it should be): its
    /// strings then need no check each.
    table_text: Option<&'a str>,
    page: u8,
}

impl<'a> Reader<'a> {
    /// Reads the header; returns the reader at the first body token and the public id
    /// (a string-table literal is returned as its text).
    fn open(input: &'a [u8]) -> Decoded<(Reader<'a>, PublicId<'a>)> {
        let mut reader = Reader {
            input,
            pos: 0,
            table: &[],
            table_text: None,
            page: 0,
        };
        let version = reader.byte("the WBXML version")?;
        if !(0x01..=0x03).contains(&version) {
            return Err(reader.error(format!(
                "WBXML version byte {version:#04x} is not 1.1 to 1.3"
            )));
        }
        let public_id = match reader.mb("the public identifier")? {
            0 => PublicIdRef::Literal(reader.mb("the public identifier index")?),
            id => PublicIdRef::Numeric(id),
        };
        let charset = reader.mb("the charset")?;
        if charset != UTF8 && charset != 0 {
            return Err(reader.error(format!("charset {charset} is not UTF-8")));
        }
        let table_len = reader.mb("the string table length")? as usize;
        reader.table = reader.take(table_len, "the string table")?;
        reader.table_text = std::str::from_utf8(reader.table).ok();
        let public_id = match public_id {
            PublicIdRef::Numeric(id) => PublicId::Numeric(id),
            PublicIdRef::Literal(index) => PublicId::Literal(reader.table_string(index)?),
        };
        Ok((reader, public_id))
    }

    #[cold]
    fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::Syntax {
            offset: self.pos as u64,
            message: message.into(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn byte(&mut self, what: &str) -> Decoded<u8> {
        let byte = *self
            .input
            .get(self.pos)
            .ok_or_else(|| self.error(format!("the document ends before {what}")))?;
        self.pos += 1;
        Ok(byte)
    }

    /// A multi-byte unsigned integer (at most 32 bits).
    fn mb(&mut self, what: &str) -> Decoded<u32> {
        let mut value: u32 = 0;
        for _ in 0..5 {
            let byte = self.byte(what)?;
            value = value
                .checked_mul(128)
                .ok_or_else(|| self.error(format!("{what} overflows 32 bits")))?
                | u32::from(byte & 0x7F);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(format!("{what} is longer than 5 bytes")))
    }

    fn take(&mut self, len: usize, what: &str) -> Decoded<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.input.len())
            .ok_or_else(|| self.error(format!("{what} claims {len} bytes, past the end")))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn utf8(&self, bytes: &'a [u8]) -> Decoded<&'a str> {
        std::str::from_utf8(bytes).map_err(|_| self.error("a string is not UTF-8"))
    }

    /// An inline string: bytes up to a NUL.
    fn inline_string(&mut self) -> Decoded<&'a str> {
        let rest = &self.input[self.pos..];
        let len = memchr::memchr(0, rest)
            .ok_or_else(|| self.error("an inline string has no terminating NUL"))?;
        self.pos += len + 1;
        self.utf8(&rest[..len])
    }

    /// The NUL-terminated string at `offset` in the string table.
    fn table_string(&self, offset: u32) -> Decoded<&'a str> {
        let offset = offset as usize;
        // An offset past the end, or inside a character, takes the checked way below,
        // which says what is wrong.
        if let Some(rest) = self.table_text.and_then(|text| text.get(offset..)) {
            let len = memchr::memchr(0, rest.as_bytes()).unwrap_or(rest.len());
            // A NUL is one byte, so a character boundary.
            return Ok(rest.get(..len).unwrap_or_default());
        }
        let rest = self
            .table
            .get(offset..)
            .ok_or_else(|| self.error(format!("string table offset {offset} is past its end")))?;
        let len = memchr::memchr(0, rest).unwrap_or(rest.len());
        self.utf8(&rest[..len])
    }

    /// Skips a tag's attribute list (up to its END).
    fn skip_attributes(&mut self) -> Decoded<()> {
        loop {
            match self.byte("an attribute")? {
                END => return Ok(()),
                SWITCH_PAGE => {
                    self.byte("a code page")?;
                }
                STR_I => {
                    self.inline_string()?;
                }
                STR_T | LITERAL | ENTITY => {
                    self.mb("an attribute value")?;
                }
                OPAQUE => {
                    let len = self.mb("an opaque length")? as usize;
                    self.take(len, "opaque data")?;
                }
                _ => {}
            }
        }
    }

    /// The next token, in the reader's terms.
    fn token(&mut self) -> Decoded<Token<'a>> {
        self.switch_pages()?;
        if let Some(text) = self.string()? {
            return Ok(Token::Text(Cow::Borrowed(text)));
        }
        if let Some(bytes) = self.opaque()? {
            return Ok(Token::Opaque(bytes));
        }
        if self.at_end() {
            return Ok(Token::Eof);
        }
        Ok(match self.byte("a token")? {
            END => Token::End,
            ENTITY => {
                let code = self.mb("an entity")?;
                let c = char::from_u32(code)
                    .ok_or_else(|| self.error(format!("entity {code} is not a character")))?;
                Token::Text(Cow::Owned(c.to_string()))
            }
            t if t & 0x3F == LITERAL => {
                let offset = self.mb("a literal tag name")?;
                let name = self.table_string(offset)?;
                if !is_xml_name(name) {
                    return Err(self.error(format!("literal tag name {name:?} is not an XML name")));
                }
                self.tag_rest(t, Tag::of(name), name)?
            }
            t if t & 0x3F >= 0x05 => {
                let (tag, name) = tag_of_token(self.page, t).ok_or_else(|| {
                    self.error(format!(
                        "token {t:#04x} is not a tag on code page {}",
                        self.page
                    ))
                })?;
                self.tag_rest(t, tag, name)?
            }
            t => return Err(self.error(format!("token {t:#04x} is not used in DM"))),
        })
    }

    /// Moves past any page switches here, taking the page each names.
    #[inline]
    fn switch_pages(&mut self) -> Decoded<()> {
        while self.input.get(self.pos) == Some(&SWITCH_PAGE) {
            self.pos += 1;
            self.page = self.byte("a code page")?;
        }
        Ok(())
    }

    /// The string token here (inline or from the string table), read; `None`, with
    /// nothing read, when the token here is another.
    #[inline]
    fn string(&mut self) -> Decoded<Option<&'a str>> {
        match self.input.get(self.pos).copied() {
            Some(STR_I) => {
                self.pos += 1;
                self.inline_string().map(Some)
            }
            Some(STR_T) => {
                self.pos += 1;
                let offset = self.mb("a string table offset")?;
                self.table_string(offset).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// An inline string of decimal digits here that fits a `u64`, read as that number;
    /// `None`, with nothing read, when the token here is anything else. What a leaf
    /// of a number nearly always is, and no UTF-8 check is needed on digits.
    #[inline]
    fn digits(&mut self) -> Decoded<Option<u64>> {
        if self.input.get(self.pos) != Some(&STR_I) {
            return Ok(None);
        }
        let digits = &self.input[self.pos + 1..];
        let Some(len) = digits.iter().position(|byte| !byte.is_ascii_digit()) else {
            return Ok(None);
        };
        if len == 0 || digits[len] != 0 {
            return Ok(None);
        }
        let number = digits[..len].iter().try_fold(0u64, |number, digit| {
            number.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        });
        if number.is_some() {
            self.pos += len + 2;
        }
        Ok(number)
    }

    /// The OPAQUE token here, read; `None`, with nothing read, when the token here is
    /// another.
    #[inline]
    fn opaque(&mut self) -> Decoded<Option<&'a [u8]>> {
        if self.input.get(self.pos) != Some(&OPAQUE) {
            return Ok(None);
        }
        self.pos += 1;
        let len = self.mb("an opaque length")? as usize;
        self.take(len, "opaque data").map(Some)
    }

    /// What `read` reads here, when the element's END follows it (read too): the
    /// common shape of a leaf or a `<Data>`, read in one step. `None`, with nothing
    /// read, otherwise.
    #[inline]
    fn one_and_end<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Decoded<Option<T>>,
    ) -> Decoded<Option<T>> {
        let start = self.pos;
        if let Some(value) = read(self)?
            && self.input.get(self.pos) == Some(&END)
        {
            self.pos += 1;
            return Ok(Some(value));
        }
        self.pos = start;
        Ok(None)
    }

    fn tag_rest(&mut self, token: u8, tag: Tag, name: &'a str) -> Decoded<Token<'a>> {
        if token & ATTRIBUTES != 0 {
            self.skip_attributes()?;
        }
        Ok(Token::Tag {
            tag,
            name,
            page: self.page,
            content: token & CONTENT != 0,
        })
    }
}

enum PublicIdRef {
    Numeric(u32),
    Literal(u32),
}

#[derive(Debug, PartialEq, Eq)]
enum PublicId<'a> {
    Numeric(u32),
    Literal(&'a str),
}

enum Token<'a> {
    Tag {
        tag: Tag,
        name: &'a str,
        page: u8,
        content: bool,
    },
    End,
    Text(Cow<'a, str>),
    Opaque(&'a [u8]),
    Eof,
}

struct WbxmlLexer<'a> {
    reader: Reader<'a>,
}

impl<'a> WbxmlLexer<'a> {
    /// The next node, from a token `Lexer::next` does not read itself; out of line,
    /// so that the common path stays small.
    #[inline(never)]
    fn next_by_token(&mut self) -> Decoded<Node<'a>> {
        Ok(match self.reader.token()? {
            Token::Tag { tag, content, .. } => Node::Open(tag, !content),
            Token::End => Node::Close,
            Token::Text(text) => Node::Text(text),
            Token::Opaque(bytes) => Node::Text(Cow::Borrowed(self.reader.utf8(bytes)?)),
            Token::Eof => Node::Eof,
        })
    }
}

impl<'a> Lexer<'a> for WbxmlLexer<'a> {
    fn root(&mut self) -> Decoded<()> {
        match self.reader.token()? {
            Token::Tag {
                name: "SyncML",
                content: true,
                ..
            } => Ok(()),
            Token::Tag { name: "SyncML", .. } => {
                Err(crate::grammar::missing("SyncML", Tag::SyncHdr))
            }
            Token::Tag { name, .. } => Err(DecodeError::NotSyncMl(name.to_owned())),
            Token::Eof => Err(DecodeError::Truncated("SyncML")),
            _ => Err(self.reader.error("the body does not start with a tag")),
        }
    }

    fn next(&mut self) -> Decoded<Node<'a>> {
        // The tokens of nearly every node (END, a known tag without attributes, a
        // string, after any page switch) go straight to grammar nodes; the rest
        // through `Reader::token`. Going through `Token` costs the hot path
        // store-forwarding stalls.
        let reader = &mut self.reader;
        match reader.input.get(reader.pos).copied() {
            Some(END) => {
                reader.pos += 1;
                return Ok(Node::Close);
            }
            Some(t) if t & 0x3F >= 0x05 && t & ATTRIBUTES == 0 => {
                if let Some((tag, _)) = tag_of_token(reader.page, t) {
                    reader.pos += 1;
                    return Ok(Node::Open(tag, t & CONTENT == 0));
                }
            }
            Some(STR_I | STR_T) => {
                if let Some(text) = reader.string()? {
                    return Ok(Node::Text(Cow::Borrowed(text)));
                }
            }
            Some(SWITCH_PAGE) => {
                // Once: no switch is left after these.
                reader.switch_pages()?;
                return self.next();
            }
            _ => {}
        }
        self.next_by_token()
    }

    fn one_string_and_end(&mut self) -> Decoded<Option<&'a str>> {
        self.reader.one_and_end(Reader::string)
    }

    fn one_number_and_end(&mut self) -> Decoded<Option<u64>> {
        self.reader.one_and_end(Reader::digits)
    }

    fn data(&mut self, depth_left: usize) -> Decoded<Data> {
        // One OPAQUE is how gwmo and most clients send data.
        if let Some(bytes) = self.reader.one_and_end(Reader::opaque)? {
            return Ok(opaque_data(Cow::Borrowed(bytes), depth_left));
        }
        if let Some(text) = self.one_string_and_end()? {
            return Ok(Data::Text(text.to_owned()));
        }
        // Strings and opaque data in the order they come, borrowed from the input
        // while they are one piece, copied once at the end.
        let mut content: Cow<'a, [u8]> = Cow::Borrowed(&[]);
        let (mut strings, mut opaque) = (false, false);
        let mut xml = XmlText::default();
        loop {
            let piece = match self.reader.token()? {
                Token::End if xml.depth() > 0 => {
                    xml.close();
                    continue;
                }
                Token::End => break,
                Token::Text(t) if xml.depth() > 0 => {
                    xml.text(&t);
                    continue;
                }
                Token::Text(t) => {
                    strings = true;
                    match t {
                        Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
                        Cow::Owned(t) => Cow::Owned(t.into_bytes()),
                    }
                }
                Token::Opaque(bytes) => {
                    opaque = true;
                    Cow::Borrowed(bytes)
                }
                Token::Tag {
                    name,
                    page,
                    content,
                    ..
                } => {
                    if xml.depth() >= depth_left {
                        return Err(DecodeError::TooDeep);
                    }
                    xml.open(name, page, content);
                    continue;
                }
                Token::Eof => return Err(DecodeError::Truncated("Data")),
            };
            if content.is_empty() {
                content = piece;
            } else {
                content.to_mut().extend_from_slice(&piece);
            }
        }
        if !xml.out.is_empty() {
            return Ok(Data::Xml(xml.out));
        }
        if opaque && !strings {
            return Ok(opaque_data(content, depth_left));
        }
        // Strings are UTF-8 each, so only opaque data among them can make this fail.
        String::from_utf8(content.into_owned())
            .map(Data::Text)
            .map_err(|_| self.reader.error("<Data> mixes text and binary data"))
    }
}

/// What opaque data alone in a `<Data>` is: a nested WBXML document (as XML), text,
/// or bytes.
fn opaque_data(bytes: Cow<'_, [u8]>, depth_left: usize) -> Data {
    if let Some(document) = document_to_xml(&bytes, depth_left) {
        return Data::Xml(document);
    }
    match String::from_utf8(bytes.into_owned()) {
        Ok(text) => Data::Text(text),
        Err(e) => Data::Bytes(e.into_bytes()),
    }
}

/// A whole WBXML document of SyncML, MetInf or DDF tags (such as the TNDS that
/// libwbxml nests in OPAQUE data, and prints as raw CDATA) as XML text, with elements
/// nested at most `depth_left` deep; `None` when the bytes are not such a document.
pub fn document_to_xml(bytes: &[u8], depth_left: usize) -> Option<String> {
    // Most opaque data is no document: say so before `Reader::open` words an error.
    if crate::Encoding::sniff(bytes) != crate::Encoding::Wbxml {
        return None;
    }
    let (mut reader, _) = Reader::open(bytes).ok()?;
    let mut xml = XmlText::default();
    loop {
        match reader.token().ok()? {
            Token::Tag {
                name,
                page,
                content,
                ..
            } if xml.depth() < depth_left => xml.open(name, page, content),
            Token::End if xml.depth() > 0 => xml.close(),
            Token::Text(t) if xml.depth() > 0 => xml.text(&t),
            Token::Eof if xml.depth() == 0 && !xml.out.is_empty() => return Some(xml.out),
            _ => return None,
        }
    }
}

/// XML text built from WBXML elements (embedded documents such as TNDS).
#[derive(Default)]
struct XmlText {
    out: String,
    open: Vec<String>,
}

impl XmlText {
    fn depth(&self) -> usize {
        self.open.len()
    }

    fn open(&mut self, name: &str, page: u8, content: bool) {
        self.out.push('<');
        self.out.push_str(name);
        if name == "MgmtTree" && page == 2 && self.open.is_empty() {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(TNDS_NAMESPACE);
            self.out.push('"');
        }
        if content {
            self.out.push('>');
            self.open.push(name.to_owned());
        } else {
            self.out.push_str("/>");
        }
    }

    fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(&name);
            self.out.push('>');
        }
    }

    fn text(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '<' => self.out.push_str("&lt;"),
                '&' => self.out.push_str("&amp;"),
                '>' => self.out.push_str("&gt;"),
                '\r' => self.out.push_str("&#13;"),
                c => self.out.push(c),
            }
        }
    }
}

/// The encoder's maps of a message's strings: foldhash, not SipHash, since hashing
/// each string twice was a tenth of encoding a DM answer, and a map lives for one
/// message, seeded at random.
type StringMap<V> = HashMap<String, V, RandomState>;

/// Strings an answer usually has at least: the maps start that large.
const USUAL_STRINGS: usize = 16;

/// First pass of the encoder: which strings repeat, to put them in the string table.
struct StringCounter {
    counts: StringMap<(u32, usize)>,
}

impl Default for StringCounter {
    fn default() -> StringCounter {
        StringCounter {
            counts: StringMap::with_capacity_and_hasher(USUAL_STRINGS, RandomState::default()),
        }
    }
}

/// Strings shorter than this cost less inline than as a table reference.
const MIN_TABLE_STRING: usize = 4;

struct StringTable {
    bytes: Vec<u8>,
    offsets: StringMap<u32>,
}

impl StringCounter {
    fn into_table(self) -> StringTable {
        let mut repeated: Vec<(String, usize)> = self
            .counts
            .into_iter()
            .filter(|(_, (count, _))| *count > 1)
            .map(|(text, (_, first))| (text, first))
            .collect();
        repeated.sort_by_key(|(_, first)| *first);
        let mut table = StringTable {
            bytes: Vec::new(),
            offsets: StringMap::with_capacity_and_hasher(repeated.len(), RandomState::default()),
        };
        for (text, _) in repeated {
            table.offsets.insert(text.clone(), table.bytes.len() as u32);
            table.bytes.extend_from_slice(text.as_bytes());
            table.bytes.push(0);
        }
        table
    }
}

impl Sink for StringCounter {
    type Error = EncodeError;

    fn start(&mut self, _: Tag) {}
    fn end(&mut self, _: Tag) {}
    fn empty(&mut self, _: Tag) {}

    fn text(&mut self, text: &str) -> Result<(), EncodeError> {
        if text.len() >= MIN_TABLE_STRING && !text.contains('\0') {
            let order = self.counts.len();
            match self.counts.get_mut(text) {
                Some((count, _)) => *count += 1,
                None => {
                    self.counts.insert(text.to_owned(), (1, order));
                }
            }
        }
        Ok(())
    }

    fn data(&mut self, _: &Data) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Second pass of the encoder: tokens.
struct WbxmlSink<'t> {
    out: Vec<u8>,
    page: u8,
    table: &'t StringMap<u32>,
}

impl WbxmlSink<'_> {
    fn tag(&mut self, tag: Tag, content: bool) {
        let page = u8::from(tag.is_metinf());
        if page != self.page {
            self.out.extend_from_slice(&[SWITCH_PAGE, page]);
            self.page = page;
        }
        let token = tag.wbxml().map_or(LITERAL, |(_, token)| token);
        self.out.push(if content { token | CONTENT } else { token });
    }

    fn opaque(&mut self, bytes: &[u8]) {
        self.out.push(OPAQUE);
        write_mb(&mut self.out, bytes.len() as u32);
        self.out.extend_from_slice(bytes);
    }
}

impl Sink for WbxmlSink<'_> {
    type Error = EncodeError;

    fn start(&mut self, tag: Tag) {
        self.tag(tag, true);
    }

    fn end(&mut self, _: Tag) {
        self.out.push(END);
    }

    fn empty(&mut self, tag: Tag) {
        self.tag(tag, false);
    }

    fn text(&mut self, text: &str) -> Result<(), EncodeError> {
        if let Some(offset) = self.table.get(text) {
            self.out.push(STR_T);
            write_mb(&mut self.out, *offset);
            return Ok(());
        }
        if text.contains('\0') {
            return Err(EncodeError::NulInText);
        }
        self.out.push(STR_I);
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(0);
        Ok(())
    }

    fn data(&mut self, data: &Data) -> Result<(), EncodeError> {
        match data {
            Data::Text(text) => self.opaque(text.as_bytes()),
            Data::Bytes(bytes) => self.opaque(bytes),
            Data::Xml(xml) => {
                let document = embedded_document(xml)?;
                self.opaque(&document);
            }
        }
        Ok(())
    }
}

/// An embedded XML document (TNDS) as a nested WBXML document, as libwbxml writes it:
/// version 1.3, the TNDS public identifier as a string-table literal, DDF tags on code
/// page 2 (names no page knows as LITERAL tags).
fn embedded_document(xml: &str) -> Result<Vec<u8>, EncodeError> {
    let mut table = TNDS_PUBLIC_ID.as_bytes().to_vec();
    table.push(0);
    let mut literals: HashMap<String, u32> = HashMap::new();
    let mut body = Vec::with_capacity(xml.len());
    let mut page = 0u8;
    let mut reader = quick_xml::Reader::from_str(xml);
    let bad = |e: &dyn std::fmt::Display| EncodeError::EmbeddedXml(e.to_string());
    // Text, CDATA and references between two tags make one inline string, so the same
    // document always encodes the same way.
    let mut text = String::new();
    loop {
        let event = reader.read_event().map_err(|e| bad(&e))?;
        match &event {
            Event::Text(t) => {
                text.push_str(&t.xml10_content());
                continue;
            }
            Event::CData(c) => {
                text.push_str(&c.xml10_content());
                continue;
            }
            Event::GeneralRef(r) => {
                match r.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => text.push(c),
                    None => text.push_str(
                        quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                            .ok_or_else(|| bad(&"unknown entity"))?,
                    ),
                }
                continue;
            }
            _ => {
                push_inline(&mut body, &text)?;
                text.clear();
            }
        }
        let (start, content) = match &event {
            Event::Start(e) => (Some(e.local_name().as_ref().to_owned()), true),
            Event::Empty(e) => (Some(e.local_name().as_ref().to_owned()), false),
            _ => (None, false),
        };
        if let Some(name) = start {
            match tnds_token(&name) {
                Some((tag_page, token)) => {
                    if tag_page != page {
                        body.extend_from_slice(&[SWITCH_PAGE, tag_page]);
                        page = tag_page;
                    }
                    body.push(if content { token | CONTENT } else { token });
                }
                None => {
                    // A LITERAL is a NUL-terminated string: only a real name survives.
                    if !is_xml_name(&name) {
                        return Err(bad(&format!("element name {name:?} is not an XML name")));
                    }
                    let next = table.len() as u32;
                    let offset = *literals.entry(name.clone()).or_insert_with(|| {
                        table.extend_from_slice(name.as_bytes());
                        table.push(0);
                        next
                    });
                    body.push(if content { LITERAL | CONTENT } else { LITERAL });
                    write_mb(&mut body, offset);
                }
            }
            continue;
        }
        match event {
            Event::End(_) => body.push(END),
            Event::Eof => break,
            _ => {}
        }
    }
    let mut out = vec![0x03];
    write_mb(&mut out, 0);
    write_mb(&mut out, 0);
    write_mb(&mut out, UTF8);
    write_mb(&mut out, table.len() as u32);
    out.extend_from_slice(&table);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Text inside an embedded document (whitespace between elements is dropped). A NUL
/// cannot be in an inline string: refused, as in the message's own text.
fn push_inline(body: &mut Vec<u8>, text: &str) -> Result<(), EncodeError> {
    if text.contains('\0') {
        return Err(EncodeError::NulInText);
    }
    if !text.trim().is_empty() {
        body.push(STR_I);
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        crate::xml::decode(
            br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1A</SessionID><MsgID>3</MsgID><Target><LocURI>IMEI:490154203237518</LocURI></Target><Source><LocURI>http://dm.example/dm</LocURI><LocName>dms</LocName></Source><Cred><Meta><Type xmlns="syncml:metinf">syncml:auth-md5</Type><Format xmlns="syncml:metinf">b64</Format></Meta><Data>Zz6EivR3yeaaENcRN6lpAQ==</Data></Cred><Meta><MaxMsgSize xmlns="syncml:metinf">65536</MaxMsgSize></Meta></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>2</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><TargetRef>http://dm.example/dm</TargetRef><SourceRef>IMEI:490154203237518</SourceRef><Chal><Meta><Type xmlns="syncml:metinf">syncml:auth-md5</Type><Format xmlns="syncml:metinf">b64</Format><NextNonce xmlns="syncml:metinf">AAEC</NextNonce></Meta></Chal><Data>212</Data></Status><Replace><CmdID>2</CmdID><Item><Target><LocURI>./Vendor/gwmo/Config/Mode</LocURI></Target><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>eco &amp; more</Data></Item></Replace><Get><CmdID>3</CmdID><Item><Target><LocURI>./Vendor/gwmo/Config/Mode</LocURI></Target></Item></Get><Atomic><CmdID>4</CmdID><Delete><CmdID>5</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Delete></Atomic><Final/></SyncBody></SyncML>"#,
        )
        .unwrap()
    }

    #[test]
    fn the_header_names_syncml_12_in_utf8() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(&bytes[..4], &[0x02, 0xA4, 0x01, 0x6A]);
    }

    #[test]
    fn round_trip_keeps_the_meaning() {
        let message = sample();
        assert_eq!(decode(&encode(&message).unwrap()).unwrap(), message);
    }

    /// `bytes` with its one occurrence of `from` replaced by `to`.
    fn splice(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        assert!(!bytes[at + 1..].windows(from.len()).any(|w| w == from));
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    }

    #[test]
    fn text_and_data_in_several_pieces_read_as_one_in_their_order() {
        let bytes = encode(&sample()).unwrap();
        // A leaf of two inline strings: "./A" as "./" and "A".
        let leaf = splice(&bytes, b"\x03./A\x00\x01", b"\x03./\x00\x03A\x00\x01");
        assert_eq!(decode(&leaf).unwrap(), sample());
        // `<Data>` as two OPAQUEs, and as OPAQUE and inline string either way round.
        let data = b"\xC3\x0Aeco & more\x01";
        for pieces in [
            &b"\xC3\x04eco \xC3\x06& more\x01"[..],
            b"\xC3\x04eco \x03& more\x00\x01",
            b"\x03eco \x00\xC3\x06& more\x01",
        ] {
            assert_eq!(decode(&splice(&bytes, data, pieces)).unwrap(), sample());
        }
        // Binary opaque data beside a string is refused, not misread.
        let binary = splice(&bytes, data, b"\x03eco \x00\xC3\x01\xFF\x01");
        assert!(decode(&binary).is_err());
    }

    #[test]
    fn a_number_reads_the_same_straight_from_its_digits_as_through_its_text() {
        let bytes = encode(&sample()).unwrap();
        let code = b"\x03212\x00\x01";
        // Digits only take the short way; leading zeros too. A sign, white space or
        // two strings take the general one: the same number either way.
        for same in [
            &b"\x030212\x00\x01"[..],
            b"\x03+212\x00\x01",
            b"\x03 212 \x00\x01",
            b"\x0321\x00\x032\x00\x01",
        ] {
            assert_eq!(decode(&splice(&bytes, code, same)).unwrap(), sample());
        }
        // Too large for a status code, too large for any number, empty, not digits.
        for wrong in [
            &b"\x0365536\x00\x01"[..],
            b"\x0399999999999999999999\x00\x01",
            b"\x03\x00\x01",
            b"\x032x2\x00\x01",
        ] {
            let decoded = decode(&splice(&bytes, code, wrong));
            assert!(
                matches!(
                    decoded,
                    Err(DecodeError::NotANumber {
                        element: "Data",
                        ..
                    })
                ),
                "{wrong:?}: {decoded:?}"
            );
        }
    }

    #[test]
    fn repeated_strings_go_to_the_string_table() {
        let bytes = encode(&sample()).unwrap();
        let (reader, public_id) = Reader::open(&bytes).unwrap();
        assert_eq!(public_id, PublicId::Numeric(SYNCML_12));
        let table = String::from_utf8_lossy(reader.table);
        for repeated in [
            "http://dm.example/dm",
            "IMEI:490154203237518",
            "syncml:auth-md5",
            "./Vendor/gwmo/Config/Mode",
        ] {
            assert!(table.contains(repeated), "{repeated} not in {table:?}");
        }
        assert!(
            !table.contains("Zz6Eiv"),
            "a string used once went into the table"
        );
    }

    #[test]
    fn multi_byte_integers() {
        for value in [0, 1, 127, 128, 0x1201, 16383, 16384, u32::MAX] {
            let mut out = Vec::new();
            write_mb(&mut out, value);
            let mut reader = Reader {
                input: &out,
                pos: 0,
                table: &[],
                table_text: None,
                page: 0,
            };
            assert_eq!(reader.mb("x").unwrap(), value);
        }
        let mut out = Vec::new();
        write_mb(&mut out, 0x1201);
        assert_eq!(out, vec![0xA4, 0x01]);
    }

    #[test]
    fn an_embedded_tnds_document_nests_and_comes_back_as_xml() {
        let tnds = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD><Node><NodeName>GW</NodeName><RTProperties><Format><node/></Format><Type><DDFName>urn:oma:mo:oma-dm-dmacc:1.0</DDFName></Type></RTProperties><Node><NodeName>ServerID</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>gw-1</Value></Node></Node></MgmtTree>"#;
        let mut message = sample();
        let Command::Replace(replace) = &mut message.body.commands[1] else {
            panic!()
        };
        replace.items[0].data = Some(Data::Xml(tnds.into()));
        let decoded = decode(&encode(&message).unwrap()).unwrap();
        assert_eq!(decoded, message);
        let nested = embedded_document(tnds).unwrap();
        assert_eq!(&nested[..4], &[0x03, 0x00, 0x00, 0x6A]);
    }

    #[test]
    fn binary_data_survives() {
        let mut message = sample();
        let Command::Replace(replace) = &mut message.body.commands[1] else {
            panic!()
        };
        replace.items[0].data = Some(Data::Bytes(vec![0xFF, 0x00, 0x80]));
        assert_eq!(decode(&encode(&message).unwrap()).unwrap(), message);
    }

    #[test]
    fn hostile_lengths_and_offsets_are_errors() {
        // A string table claiming 2^28 bytes.
        assert!(decode(&[0x02, 0xA4, 0x01, 0x6A, 0x81, 0x80, 0x80, 0x80, 0x00]).is_err());
        // STR_T pointing past an empty string table.
        assert!(decode(&[0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x83, 0x7F]).is_err());
        // OPAQUE claiming more than is left.
        assert!(decode(&[0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0xC3, 0x8F, 0x7F, 0x01]).is_err());
        // An mb_u_int32 that never ends.
        assert!(decode(&[0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        // Not WBXML at all.
        assert!(decode(b"<SyncML/>").is_err());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&sample()).unwrap();
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "accepted {end} bytes");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = vec![0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x6B];
        bytes.extend(std::iter::repeat_n(0x64, 200)); // Sequence with content, nested
        assert!(matches!(decode(&bytes), Err(DecodeError::TooDeep)));
    }

    #[test]
    fn a_literal_tag_is_read_by_its_name() {
        // A LITERAL tag named by the string table is read as that tag.
        let mut literal = vec![0x03, 0x01, 0x6A, 0x07];
        literal.extend_from_slice(b"SyncML\0");
        literal.push(LITERAL | CONTENT);
        literal.push(0x00);
        literal.extend_from_slice(&[0x6C, 0x71, STR_I, b'1', b'.', b'2', 0, END, END, END]);
        assert!(
            matches!(decode(&literal), Err(DecodeError::Missing { .. })),
            "{:?}",
            decode(&literal)
        );
    }
}
