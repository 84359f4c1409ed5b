//! The SyncML DM 1.2 message model: one type per element of the representation
//! protocol that DM uses, in document order. Both codecs (`xml`, `wbxml`) read and
//! write exactly these types, so a message decoded from one encoding can be written
//! in the other without loss of meaning.

use std::borrow::Cow;

pub use crate::codes::StatusCode;

/// Text that is nearly always one of a few words the protocol names (a Meta
/// `Format` or `Type`, the command a Status answers): decoding does not copy those,
/// it points at the one static copy of the word.
pub type Word = Cow<'static, str>;

/// The words a decoded [`Word`] is looked up in: DM's node formats, the media types
/// and credential schemes a Meta `Type` names, and the elements a Status answers.
const WORDS: &[&str] = &[
    // Format (DM 1.2 TND): every node format, the common ones first.
    "chr",
    "node",
    "int",
    "bool",
    "b64",
    "bin",
    "xml",
    "null",
    "date",
    "time",
    "float",
    // Type.
    "text/plain",
    crate::codes::content_type::TNDS_XML,
    crate::codes::content_type::TNDS_WBXML,
    "syncml:auth-md5",
    "syncml:auth-MAC",
    "syncml:auth-basic",
    crate::codes::alert_type::LOCATION_UPDATE,
    crate::codes::alert_type::DEVICE_ATTACH,
    crate::codes::alert_type::DEVICE_DETACH,
    crate::codes::alert_type::FANOUT_RESULTS,
    // Cmd of a Status.
    "SyncHdr",
    "Replace",
    "Get",
    "Add",
    "Delete",
    "Exec",
    "Alert",
    "Atomic",
    "Sequence",
    "Copy",
    "Results",
];

/// `text` as a [`Word`]: the static copy when it is one of the known words, a copy of
/// its own otherwise.
pub fn word(text: Cow<'_, str>) -> Word {
    match WORDS.iter().find(|known| **known == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.into_owned()),
    }
}

/// `VerDTD` of every DM 1.2 message.
pub const VER_DTD: &str = "1.2";
/// `VerProto` of every DM 1.2 message.
pub const VER_PROTO: &str = "DM/1.2";

/// A whole `<SyncML>` message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

/// `<SyncHdr>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Header {
    pub ver_dtd: String,
    pub ver_proto: String,
    /// 1–4 upper-case hex digits in DM; kept as text so any peer's value round-trips.
    pub session_id: String,
    pub msg_id: u32,
    pub target: Location,
    pub source: Location,
    pub resp_uri: Option<String>,
    pub cred: Option<Cred>,
    pub meta: Option<Box<Meta>>,
}

/// A `Target` or `Source`: `LocURI` and the optional `LocName`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Location {
    pub uri: String,
    pub name: Option<String>,
}

impl Location {
    pub fn new(uri: impl Into<String>) -> Self {
        Location {
            uri: uri.into(),
            name: None,
        }
    }
}

/// `<Cred>`: credentials, only ever in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Cred {
    /// `Type` (e.g. `syncml:auth-md5`) and `Format` (`b64`).
    pub meta: Meta,
    pub data: String,
}

/// `<Chal>`: a challenge inside a Status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Chal {
    /// `Type`, `Format` and `NextNonce`.
    pub meta: Meta,
}

/// `<Meta>` with the MetInf elements DM uses. All are optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Meta {
    pub format: Option<Word>,
    pub r#type: Option<Word>,
    pub mark: Option<String>,
    pub size: Option<u64>,
    pub next_nonce: Option<String>,
    pub version: Option<String>,
    pub max_msg_size: Option<u64>,
    pub max_obj_size: Option<u64>,
    pub emi: Vec<String>,
}

impl Meta {
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }
}

/// `<SyncBody>`: the commands in order, then `<Final/>` on the last message of a package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Body {
    pub commands: Vec<Command>,
    pub is_final: bool,
}

/// Every command DM uses (SyncML's Map, Put, Search and Sync are not DM commands).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Command {
    Add(ItemCommand),
    Alert(Alert),
    Atomic(Container),
    Copy(ItemCommand),
    Delete(ItemCommand),
    Exec(Exec),
    Get(ItemCommand),
    Replace(ItemCommand),
    Results(Results),
    Sequence(Container),
    Status(Status),
}

impl Command {
    /// The element name, as written in XML and in `Status/Cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "Add",
            Command::Alert(_) => "Alert",
            Command::Atomic(_) => "Atomic",
            Command::Copy(_) => "Copy",
            Command::Delete(_) => "Delete",
            Command::Exec(_) => "Exec",
            Command::Get(_) => "Get",
            Command::Replace(_) => "Replace",
            Command::Results(_) => "Results",
            Command::Sequence(_) => "Sequence",
            Command::Status(_) => "Status",
        }
    }

    pub fn cmd_id(&self) -> u32 {
        match self {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => c.cmd_id,
            Command::Alert(c) => c.cmd_id,
            Command::Atomic(c) | Command::Sequence(c) => c.cmd_id,
            Command::Exec(c) => c.cmd_id,
            Command::Results(c) => c.cmd_id,
            Command::Status(c) => c.cmd_id,
        }
    }

    pub fn set_cmd_id(&mut self, id: u32) {
        match self {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => c.cmd_id = id,
            Command::Alert(c) => c.cmd_id = id,
            Command::Atomic(c) | Command::Sequence(c) => c.cmd_id = id,
            Command::Exec(c) => c.cmd_id = id,
            Command::Results(c) => c.cmd_id = id,
            Command::Status(c) => c.cmd_id = id,
        }
    }

    /// The items of a command that has them (containers and Status have none of their own
    /// here; a Status's items are reachable through the `Status` itself).
    pub fn items(&self) -> &[Item] {
        match self {
            Command::Add(c)
            | Command::Copy(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Replace(c) => &c.items,
            Command::Alert(c) => &c.items,
            Command::Exec(c) => &c.items,
            Command::Results(c) => &c.items,
            Command::Status(c) => &c.items,
            Command::Atomic(_) | Command::Sequence(_) => &[],
        }
    }
}

/// Add, Copy, Delete, Get and Replace: a command id, optional Meta, and items.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ItemCommand {
    pub cmd_id: u32,
    pub meta: Option<Box<Meta>>,
    pub items: Vec<Item>,
}

/// `<Alert>`: the alert code travels in `Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Alert {
    pub cmd_id: u32,
    pub code: u16,
    pub correlator: Option<String>,
    pub items: Vec<Item>,
}

/// `<Exec>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Exec {
    pub cmd_id: u32,
    pub meta: Option<Box<Meta>>,
    pub correlator: Option<String>,
    pub items: Vec<Item>,
}

/// `<Atomic>` and `<Sequence>`: commands run all-or-nothing, or in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Container {
    pub cmd_id: u32,
    pub meta: Option<Box<Meta>>,
    pub commands: Vec<Command>,
}

/// `<Results>`: the answer to a Get, sent after its Status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Results {
    pub cmd_id: u32,
    pub msg_ref: Option<u32>,
    pub cmd_ref: u32,
    pub meta: Option<Box<Meta>>,
    pub target_ref: Option<String>,
    pub source_ref: Option<String>,
    pub items: Vec<Item>,
}

/// `<Status>`: the answer to a command (`cmd_ref` 0 with `cmd` `SyncHdr` answers the header).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Status {
    pub cmd_id: u32,
    pub msg_ref: u32,
    pub cmd_ref: u32,
    pub cmd: Word,
    pub target_refs: Vec<String>,
    pub source_refs: Vec<String>,
    pub chal: Option<Box<Chal>>,
    pub code: StatusCode,
    pub items: Vec<Item>,
}

/// `<Item>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Item {
    pub target: Option<Location>,
    pub source: Option<Location>,
    pub meta: Option<Box<Meta>>,
    pub data: Option<Data>,
    /// `<MoreData/>`: this is a chunk of a large object and more follows.
    pub more_data: bool,
}

/// The content of an Item's `<Data>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Data {
    /// Character data (XML text or CDATA, WBXML inline/table strings, or UTF-8 opaque).
    Text(String),
    /// Opaque bytes that are not UTF-8 (WBXML only; XML must carry such data as b64 text).
    Bytes(Vec<u8>),
    /// An embedded XML document, such as a TNDS `<MgmtTree>`, kept as its XML text.
    Xml(String),
}

impl Data {
    /// The data as text, if it is text or embedded XML.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(s) | Data::Xml(s) => Some(s),
            Data::Bytes(b) => std::str::from_utf8(b).ok(),
        }
    }

    /// The data as bytes, whatever its form.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Text(s) | Data::Xml(s) => s.as_bytes(),
            Data::Bytes(b) => b,
        }
    }

    /// Length of the data in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hands out the `CmdID`s of one message: 1, 2, 3, ...
#[derive(Debug, Clone, Default)]
pub struct CmdIds {
    last: u32,
}

impl CmdIds {
    pub fn new() -> Self {
        CmdIds::default()
    }

    pub fn next_id(&mut self) -> u32 {
        self.last += 1;
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_word_points_at_its_static_copy_and_other_text_is_kept_as_it_is() {
        assert!(matches!(word("chr".into()), Cow::Borrowed("chr")));
        assert!(matches!(
            word(String::from("Replace").into()),
            Cow::Borrowed("Replace")
        ));
        // Words are compared exactly: a format in other case is not the format.
        for other in ["CHR", "text/x-vendor", ""] {
            assert!(matches!(word(other.into()), Cow::Owned(ref text) if text == other));
        }
    }
}
