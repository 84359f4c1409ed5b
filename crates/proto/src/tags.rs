//! The element names of SyncML DM 1.2 and their WBXML tokens, written once. The code
//! page tables are the WBXML tag tables of SyncML 1.2 (page 0), MetInf 1.2 (page 1)
//! and DM DDF 1.2 (page 2, TNDS); the [`Tag`]s the grammar knows are listed once with
//! their name and page, and each one's token is found in its page's table when the
//! crate is compiled (a name missing from its page does not compile).

use std::collections::HashMap;
use std::sync::OnceLock;

/// Tags of code page 0 (SyncML 1.2) from token 0x05 on.
pub(crate) const PAGE0: &[&str] = &[
    "Add",
    "Alert",
    "Archive",
    "Atomic",
    "Chal",
    "Cmd",
    "CmdID",
    "CmdRef",
    "Copy",
    "Cred",
    "Data",
    "Delete",
    "Exec",
    "Final",
    "Get",
    "Item",
    "Lang",
    "LocName",
    "LocURI",
    "Map",
    "MapItem",
    "Meta",
    "MsgID",
    "MsgRef",
    "NoResp",
    "NoResults",
    "Put",
    "Replace",
    "RespURI",
    "Results",
    "Search",
    "Sequence",
    "SessionID",
    "SftDel",
    "Source",
    "SourceRef",
    "Status",
    "Sync",
    "SyncBody",
    "SyncHdr",
    "SyncML",
    "Target",
    "TargetRef",
    "",
    "VerDTD",
    "VerProto",
    "NumberOfChanges",
    "MoreData",
    "Field",
    "Filter",
    "Record",
    "FilterType",
    "SourceParent",
    "TargetParent",
    "Move",
    "Correlator",
];

/// Tags of code page 1 (MetInf 1.2) from token 0x05 on.
pub(crate) const PAGE1: &[&str] = &[
    "Anchor",
    "EMI",
    "Format",
    "FreeID",
    "FreeMem",
    "Last",
    "Mark",
    "MaxMsgSize",
    "Mem",
    "MetInf",
    "Next",
    "NextNonce",
    "SharedMem",
    "Size",
    "Type",
    "Version",
    "MaxObjSize",
    "FieldLevel",
];

/// Tags of code page 2 (DM DDF 1.2, used by TNDS) from token 0x05 on.
pub(crate) const PAGE2: &[&str] = &[
    "AccessType",
    "ACL",
    "Add",
    "b64",
    "bin",
    "bool",
    "chr",
    "CaseSense",
    "CIS",
    "Copy",
    "CS",
    "date",
    "DDFName",
    "DefaultValue",
    "Delete",
    "Description",
    "DFFormat",
    "DFProperties",
    "DFTitle",
    "DFType",
    "Dynamic",
    "Exec",
    "float",
    "Format",
    "Get",
    "int",
    "Man",
    "MgmtTree",
    "MIME",
    "Mod",
    "Name",
    "Node",
    "node",
    "NodeName",
    "null",
    "Occurrence",
    "One",
    "OneOrMore",
    "OneOrN",
    "Path",
    "Permanent",
    "Replace",
    "RTProperties",
    "Scope",
    "Size",
    "time",
    "Title",
    "TStamp",
    "Type",
    "Value",
    "VerDTD",
    "VerNo",
    "xml",
    "ZeroOrMore",
    "ZeroOrN",
    "ZeroOrOne",
];

/// The code pages by number.
pub(crate) const PAGES: [&[&str]; 3] = [PAGE0, PAGE1, PAGE2];

/// The first token of every code page's tag table.
const FIRST_TOKEN: usize = 5;

/// The name of tag `token` (without its content and attribute bits) on `page`.
pub(crate) fn tag_name(page: u8, token: u8) -> Option<&'static str> {
    let index = usize::from(token & 0x3F).checked_sub(FIRST_TOKEN)?;
    PAGES
        .get(usize::from(page))?
        .get(index)
        .copied()
        .filter(|name| !name.is_empty())
}

/// The code page and token of an element name of a TNDS document (on page 2 first,
/// then SyncML's and MetInf's), looked up in a map built once.
pub(crate) fn tnds_token(name: &str) -> Option<(u8, u8)> {
    static BY_NAME: OnceLock<HashMap<&'static str, (u8, u8)>> = OnceLock::new();
    BY_NAME
        .get_or_init(|| {
            let mut by_name = HashMap::new();
            // Later pages first: page 2's names win where pages share one.
            for page in [1u8, 0, 2] {
                for (index, name) in PAGES[usize::from(page)].iter().enumerate() {
                    if !name.is_empty() {
                        by_name.insert(*name, (page, token_at(index)));
                    }
                }
            }
            by_name
        })
        .get(name)
        .copied()
}

const fn token_at(index: usize) -> u8 {
    (index + FIRST_TOKEN) as u8
}

/// The token of `name` on `page`, for a constant; panics (fails to compile) if absent.
const fn token_of(page: &[&str], name: &str) -> u8 {
    let mut index = 0;
    while index < page.len() {
        if same(page[index].as_bytes(), name.as_bytes()) {
            return token_at(index);
        }
        index += 1;
    }
    panic!("a tag missing from its code page")
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

macro_rules! tags {
    ($($variant:ident = $name:literal @ $page:literal,)*) => {
        /// The element names the model knows, matched once per start tag.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Tag {
            $($variant,)*
            /// Any element the model does not know.
            Other,
        }

        impl Tag {
            pub(crate) fn of(local_name: &str) -> Tag {
                match local_name {
                    $($name => Tag::$variant,)*
                    _ => Tag::Other,
                }
            }

            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Tag::$variant => $name,)*
                    Tag::Other => "element",
                }
            }

            /// Its WBXML code page and token (none for an unknown element).
            pub(crate) fn wbxml(self) -> Option<(u8, u8)> {
                match self {
                    $(Tag::$variant => Some(($page, const { token_of(PAGES[$page], $name) })),)*
                    Tag::Other => None,
                }
            }

            /// MetInf elements (`syncml:metinf`, WBXML code page 1).
            pub(crate) fn is_metinf(self) -> bool {
                self.wbxml().is_some_and(|(page, _)| page == 1)
            }
        }

        /// Every known element by name, for building [`BY_TOKEN`] at compile time.
        const NAMED: &[(&str, Tag)] = &[$(($name, Tag::$variant),)*];
    };
}

/// What a name means to the model, at compile time: [`Tag::of`] as a `const fn`.
const fn tag_named(name: &str) -> Tag {
    let mut index = 0;
    while index < NAMED.len() {
        if same(NAMED[index].0.as_bytes(), name.as_bytes()) {
            return NAMED[index].1;
        }
        index += 1;
    }
    Tag::Other
}

/// The element each token of each code page opens (as [`Tag::of`] its name), so that
/// decoding WBXML never compares names: the decoder's largest cost was matching the
/// name of every tag it read.
const BY_TOKEN: [[Tag; 64]; 3] = {
    let mut table = [[Tag::Other; 64]; 3];
    let mut page = 0;
    while page < PAGES.len() {
        let mut index = 0;
        while index < PAGES[page].len() {
            table[page][index + FIRST_TOKEN] = tag_named(PAGES[page][index]);
            index += 1;
        }
        page += 1;
    }
    table
};

/// The element tag `token` (content and attribute bits ignored) on `page` opens, and
/// its name; none if the page has no such token.
pub(crate) fn tag_of_token(page: u8, token: u8) -> Option<(Tag, &'static str)> {
    let name = tag_name(page, token)?;
    Some((BY_TOKEN[usize::from(page)][usize::from(token & 0x3F)], name))
}

tags! {
    SyncMl = "SyncML" @ 0,
    SyncHdr = "SyncHdr" @ 0,
    SyncBody = "SyncBody" @ 0,
    VerDtd = "VerDTD" @ 0,
    VerProto = "VerProto" @ 0,
    SessionId = "SessionID" @ 0,
    MsgId = "MsgID" @ 0,
    Target = "Target" @ 0,
    Source = "Source" @ 0,
    LocUri = "LocURI" @ 0,
    LocName = "LocName" @ 0,
    RespUri = "RespURI" @ 0,
    Cred = "Cred" @ 0,
    Meta = "Meta" @ 0,
    MetInf = "MetInf" @ 1,
    Format = "Format" @ 1,
    Type = "Type" @ 1,
    Mark = "Mark" @ 1,
    Size = "Size" @ 1,
    NextNonce = "NextNonce" @ 1,
    Version = "Version" @ 1,
    MaxMsgSize = "MaxMsgSize" @ 1,
    MaxObjSize = "MaxObjSize" @ 1,
    Emi = "EMI" @ 1,
    Data = "Data" @ 0,
    Final = "Final" @ 0,
    Add = "Add" @ 0,
    Alert = "Alert" @ 0,
    Atomic = "Atomic" @ 0,
    Copy = "Copy" @ 0,
    Delete = "Delete" @ 0,
    Exec = "Exec" @ 0,
    Get = "Get" @ 0,
    Replace = "Replace" @ 0,
    Results = "Results" @ 0,
    Sequence = "Sequence" @ 0,
    Status = "Status" @ 0,
    Map = "Map" @ 0,
    Put = "Put" @ 0,
    Search = "Search" @ 0,
    Sync = "Sync" @ 0,
    Item = "Item" @ 0,
    MoreData = "MoreData" @ 0,
    CmdId = "CmdID" @ 0,
    MsgRef = "MsgRef" @ 0,
    CmdRef = "CmdRef" @ 0,
    Cmd = "Cmd" @ 0,
    TargetRef = "TargetRef" @ 0,
    SourceRef = "SourceRef" @ 0,
    Chal = "Chal" @ 0,
    Correlator = "Correlator" @ 0,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_reads_back_from_its_name_and_its_token() {
        for name in PAGE0.iter().chain(PAGE1) {
            let tag = Tag::of(name);
            if tag == Tag::Other {
                continue;
            }
            assert_eq!(tag.name(), *name);
            let (page, token) = tag.wbxml().unwrap();
            assert_eq!(tag_name(page, token), Some(*name));
        }
        assert_eq!(Tag::of("NoSuchThing"), Tag::Other);
        for (page, names) in PAGES.iter().enumerate() {
            for (index, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
                let token = (index + FIRST_TOKEN) as u8;
                assert_eq!(
                    tag_of_token(page as u8, token | 0x40),
                    Some((Tag::of(name), *name)),
                    "page {page} token {token:#04x}"
                );
            }
        }
        assert_eq!(tag_of_token(0, 0x3F), None);
        assert_eq!(tag_of_token(7, 0x05), None);
        assert_eq!(Tag::of("MaxMsgSize").wbxml(), Some((1, 0x0C)));
        assert!(Tag::Emi.is_metinf() && !Tag::Item.is_metinf());
    }

    #[test]
    fn tnds_names_prefer_the_ddf_page() {
        assert_eq!(tnds_token("Format"), Some((2, 0x1C)));
        assert_eq!(tnds_token("MgmtTree").map(|(page, _)| page), Some(2));
        assert_eq!(tnds_token("LocURI").map(|(page, _)| page), Some(0));
        assert_eq!(tnds_token("Unknown"), None);
    }
}
