//! Proptest strategies for arbitrary valid DM messages, shared by the codec tests.
//! Leaf text has no leading or trailing whitespace (codecs trim it outside `<Data>`),
//! and no characters XML 1.0 forbids.
#![allow(dead_code)] // each test file uses part of this

use gwmo_proto::*;
use proptest::option;
use proptest::prelude::*;

/// Leaf text: ids, URIs, names.
pub fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9./:_-]{1,24}"
}

/// Data text: markup characters, quotes, unicode, inner spaces and newlines.
pub fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9<>&'\" é€中]{0,40}".prop_map(|s| s.trim().to_owned())
}

pub fn location() -> impl Strategy<Value = Location> {
    (word(), option::of(word())).prop_map(|(uri, name)| Location { uri, name })
}

pub fn meta() -> impl Strategy<Value = Meta> {
    (
        (
            option::of(word()),
            option::of(word()),
            option::of(word()),
            option::of(any::<u32>()),
        ),
        (
            option::of(word()),
            option::of(word()),
            option::of(any::<u32>()),
            option::of(any::<u32>()),
        ),
        proptest::collection::vec(word(), 0..2),
    )
        .prop_map(
            |((format, r#type, mark, size), (next_nonce, version, max_msg, max_obj), emi)| Meta {
                format: format.map(Word::from),
                r#type: r#type.map(Word::from),
                mark,
                size: size.map(u64::from),
                next_nonce,
                version,
                max_msg_size: max_msg.map(u64::from),
                max_obj_size: max_obj.map(u64::from),
                emi,
            },
        )
}

/// A canonical TNDS document, as both codecs write embedded XML.
pub fn tnds() -> impl Strategy<Value = String> {
    (word(), word()).prop_map(|(name, value)| {
        format!(
            "<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD><Node><NodeName>{name}</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>{value}</Value></Node></MgmtTree>"
        )
    })
}

pub fn data() -> impl Strategy<Value = Data> {
    prop_oneof![4 => text().prop_map(Data::Text), 1 => tnds().prop_map(Data::Xml)]
}

pub fn item() -> impl Strategy<Value = Item> {
    (
        option::of(location()),
        option::of(location()),
        option::of(meta()),
        option::of(data()),
        any::<bool>(),
    )
        .prop_map(|(target, source, meta, data, more_data)| Item {
            target,
            source,
            meta: meta.map(Box::new),
            data,
            more_data,
        })
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    proptest::collection::vec(item(), 0..3)
}

fn item_command() -> impl Strategy<Value = ItemCommand> {
    (any::<u32>(), option::of(meta()), items()).prop_map(|(cmd_id, meta, items)| ItemCommand {
        cmd_id,
        meta: meta.map(Box::new),
        items,
    })
}

fn leaf_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        item_command().prop_map(Command::Add),
        item_command().prop_map(Command::Copy),
        item_command().prop_map(Command::Delete),
        item_command().prop_map(Command::Get),
        item_command().prop_map(Command::Replace),
        (any::<u32>(), 1100u16..1300, option::of(word()), items()).prop_map(
            |(cmd_id, code, correlator, items)| Command::Alert(Alert {
                cmd_id,
                code,
                correlator,
                items
            })
        ),
        (
            any::<u32>(),
            option::of(meta()),
            option::of(word()),
            items()
        )
            .prop_map(|(cmd_id, meta, correlator, items)| Command::Exec(Exec {
                cmd_id,
                meta: meta.map(Box::new),
                correlator,
                items
            })),
        (
            any::<u32>(),
            option::of(any::<u32>()),
            any::<u32>(),
            option::of(meta()),
            option::of(word()),
            option::of(word()),
            items()
        )
            .prop_map(
                |(cmd_id, msg_ref, cmd_ref, meta, target_ref, source_ref, items)| {
                    Command::Results(Results {
                        cmd_id,
                        msg_ref,
                        cmd_ref,
                        meta: meta.map(Box::new),
                        target_ref,
                        source_ref,
                        items,
                    })
                }
            ),
        (
            (any::<u32>(), any::<u32>(), any::<u32>(), word()),
            (
                proptest::collection::vec(word(), 0..2),
                proptest::collection::vec(word(), 0..2)
            ),
            (option::of(meta()), 100u16..600, items()),
        )
            .prop_map(
                |(
                    (cmd_id, msg_ref, cmd_ref, cmd),
                    (target_refs, source_refs),
                    (chal, code, items),
                )| {
                    Command::Status(Status {
                        cmd_id,
                        msg_ref,
                        cmd_ref,
                        cmd: cmd.into(),
                        target_refs,
                        source_refs,
                        chal: chal.map(|meta| Box::new(Chal { meta })),
                        code: gwmo_proto::codes::StatusCode(code),
                        items,
                    })
                }
            ),
    ]
}

/// Any command, Atomic and Sequence nested up to two levels.
pub fn command() -> impl Strategy<Value = Command> {
    leaf_command().prop_recursive(2, 12, 4, |inner| {
        (
            any::<u32>(),
            option::of(meta()),
            proptest::collection::vec(inner, 0..4),
            any::<bool>(),
        )
            .prop_map(|(cmd_id, meta, commands, atomic)| {
                let container = Container {
                    cmd_id,
                    meta: meta.map(Box::new),
                    commands,
                };
                if atomic {
                    Command::Atomic(container)
                } else {
                    Command::Sequence(container)
                }
            })
    })
}

pub fn message() -> impl Strategy<Value = Message> {
    (
        (word(), any::<u32>(), location(), location()),
        (
            option::of(word()),
            option::of((meta(), word())),
            option::of(meta()),
        ),
        (proptest::collection::vec(command(), 0..6), any::<bool>()),
    )
        .prop_map(
            |(
                (session_id, msg_id, target, source),
                (resp_uri, cred, meta),
                (commands, is_final),
            )| Message {
                header: Header {
                    ver_dtd: VER_DTD.into(),
                    ver_proto: VER_PROTO.into(),
                    session_id,
                    msg_id,
                    target,
                    source,
                    resp_uri,
                    cred: cred.map(|(meta, data)| Cred { meta, data }),
                    meta: meta.map(Box::new),
                },
                body: Body { commands, is_final },
            },
        )
}
