//! The messages both codec benchmarks measure: a package 1, a package of 50 commands,
//! a Results package carrying 64 KiB, and a management package of 2,000 Replaces.

use gwmo_proto::*;

/// Every sample message, by name.
pub fn samples() -> Vec<(&'static str, Message)> {
    vec![
        ("package1", package1()),
        ("50-commands", fifty_commands()),
        ("results-64KiB", results_64k()),
        ("2000-replaces", replaces(2000)),
    ]
}

fn header(msg_id: u32) -> Header {
    Header {
        ver_dtd: VER_DTD.into(),
        ver_proto: VER_PROTO.into(),
        session_id: "1A2B".into(),
        msg_id,
        target: Location::new("http://dm.example.com:8080/dm"),
        source: Location {
            uri: "IMEI:490154203237518".into(),
            name: Some("IMEI:490154203237518".into()),
        },
        resp_uri: None,
        cred: auth::cred(
            auth::AuthType::Md5,
            "IMEI:490154203237518",
            "secret",
            b"nonce",
        ),
        meta: Some(Box::new(Meta {
            max_msg_size: Some(65536),
            ..Meta::default()
        })),
    }
}

fn item(uri: &str, value: String) -> Item {
    Item {
        target: Some(Location::new(uri)),
        meta: Some(Box::new(Meta {
            format: Some("chr".into()),
            r#type: Some("text/plain".into()),
            ..Meta::default()
        })),
        data: Some(Data::Text(value)),
        ..Item::default()
    }
}

pub fn package1() -> Message {
    let devinfo = ["DevId", "Man", "Mod", "DmV", "Lang"]
        .iter()
        .map(|leaf| Item {
            source: Some(Location::new(format!("./DevInfo/{leaf}"))),
            data: Some(Data::Text(format!("value-of-{leaf}"))),
            ..Item::default()
        })
        .collect();
    Message {
        header: header(1),
        body: Body {
            commands: vec![
                Command::Alert(Alert {
                    cmd_id: 1,
                    code: codes::alert::CLIENT_INITIATED_MGMT,
                    correlator: None,
                    items: vec![],
                }),
                Command::Replace(ItemCommand {
                    cmd_id: 2,
                    meta: None,
                    items: devinfo,
                }),
            ],
            is_final: true,
        },
    }
}

pub fn fifty_commands() -> Message {
    let commands = (0..50u32)
        .map(|i| {
            let uri = format!("./Vendor/gwmo/Config/Leaf{i}");
            let items = vec![item(&uri, format!("value {i}"))];
            let command = ItemCommand {
                cmd_id: i + 1,
                meta: None,
                items,
            };
            match i % 5 {
                0 => Command::Add(command),
                1 => Command::Replace(command),
                2 => Command::Get(command),
                3 => Command::Delete(command),
                _ => Command::Status(Status {
                    cmd_id: i + 1,
                    msg_ref: 1,
                    cmd_ref: i,
                    cmd: "Replace".into(),
                    target_refs: vec![uri],
                    source_refs: vec![],
                    chal: None,
                    code: gwmo_proto::codes::status::OK,
                    items: vec![],
                }),
            }
        })
        .collect();
    Message {
        header: header(2),
        body: Body {
            commands,
            is_final: true,
        },
    }
}

pub fn results_64k() -> Message {
    let text: String = (0..64 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    Message {
        header: header(3),
        body: Body {
            commands: vec![Command::Results(Results {
                cmd_id: 1,
                msg_ref: Some(2),
                cmd_ref: 3,
                meta: None,
                target_ref: None,
                source_ref: None,
                items: vec![item("./Vendor/gwmo/Log", text)],
            })],
            is_final: true,
        },
    }
}

/// A management package of `count` Replace commands (about 100 bytes each).
pub fn replaces(count: u32) -> Message {
    let commands = (0..count)
        .map(|i| {
            Command::Replace(ItemCommand {
                cmd_id: i + 1,
                meta: None,
                items: vec![item(
                    &format!("./Vendor/gwmo/Config/Leaf{i}"),
                    format!("value {i}"),
                )],
            })
        })
        .collect();
    Message {
        header: header(4),
        body: Body {
            commands,
            is_final: true,
        },
    }
}
