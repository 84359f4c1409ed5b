//! Packing commands into the messages of a package: CmdIDs are numbered per message,
//! and what does not fit under the peer's MaxMsgSize waits for the next message
//! (which the peer asks for with Alert 1222).

use std::collections::VecDeque;

use gwmo_proto::{Body, CmdIds, CodecError, Command, Data, Encoding, Header, Item, Message};

/// A message ready to send, and which queued commands went into it.
#[derive(Debug)]
pub(crate) struct Packed<T> {
    pub(crate) message: Message,
    pub(crate) bytes: Vec<u8>,
    /// Each queued command that went out: its tag and the CmdIDs it and its members got.
    pub(crate) sent: Vec<(T, Vec<u32>)>,
    /// Queued commands taken out unsent: alone in a message they are still larger than
    /// the limit, and they cannot go in chunks ([`Oversized::SetAside`]).
    pub(crate) too_large: Vec<T>,
}

/// What to do with a queued command that fits in no message under the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Oversized {
    /// Send it whole when the message would carry nothing else (the peer may still
    /// take it).
    SendWhole,
    /// Take it out of the queue unsent (the caller settles it).
    SetAside,
}

/// Builds one message: `leading` (statuses, alerts) always goes in, then as many
/// commands from the front of `queue` as fit in `limit` bytes. The message carries
/// `Final` when `closes_package` and the queue is then empty.
pub(crate) fn pack<T: Clone>(
    header: Header,
    leading: Vec<Command>,
    queue: &mut VecDeque<(T, Command)>,
    closes_package: bool,
    limit: usize,
    encoding: Encoding,
    oversized: Oversized,
) -> Result<Packed<T>, CodecError> {
    let mut message = Message {
        header,
        body: Body {
            commands: leading,
            is_final: false,
        },
    };
    let leading_len = message.body.commands.len();
    let encode_with = |message: &mut Message, taken: usize, queue: &VecDeque<(T, Command)>| {
        message.body.commands.truncate(leading_len);
        message
            .body
            .commands
            .extend(queue.iter().take(taken).map(|(_, c)| c.clone()));
        message.body.is_final = closes_package && taken == queue.len();
        number(&mut message.body.commands);
        encoding.encode(message)
    };

    let mut too_large = Vec::new();
    let (taken, bytes) = loop {
        // Most packages fit whole; otherwise find the largest prefix that does.
        let whole = encode_with(&mut message, queue.len(), queue)?;
        if whole.len() <= limit || queue.is_empty() {
            break (queue.len(), whole);
        }
        let (mut low, mut high) = (0, queue.len() - 1);
        while low < high {
            let mid = (low + high).div_ceil(2);
            if encode_with(&mut message, mid, queue)?.len() <= limit {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        // A message that would carry nothing new must still move the package on: a
        // large object goes in chunks sized to fit beside the leading commands;
        // anything else goes whole, when it fits alone (beside statuses, which are
        // small) or the message would carry nothing else; or it is set aside.
        if low == 0 {
            message.body.commands.truncate(leading_len);
            if split_front(queue, &message, limit, encoding)? {
                low = 1;
            } else if oversized == Oversized::SendWhole {
                low = usize::from(leading_len <= 1);
            } else if fits_alone(&message.header, queue, limit, encoding)? {
                low = 1;
            } else if let Some((tag, _)) = queue.pop_front() {
                too_large.push(tag);
                continue;
            }
        }
        break (low, encode_with(&mut message, low, queue)?);
    };

    let sent = queue
        .drain(..taken)
        .zip(&message.body.commands[leading_len..])
        .map(|((tag, _), command)| {
            let mut ids = Vec::new();
            collect_ids(command, &mut ids);
            (tag, ids)
        })
        .collect();
    Ok(Packed {
        message,
        bytes,
        sent,
        too_large,
    })
}

/// Whether the front command of the queue fits under `limit` in a message of its own.
fn fits_alone<T>(
    header: &Header,
    queue: &VecDeque<(T, Command)>,
    limit: usize,
    encoding: Encoding,
) -> Result<bool, CodecError> {
    let Some((_, front)) = queue.front() else {
        return Ok(true);
    };
    let mut alone = Message {
        header: header.clone(),
        body: Body {
            commands: vec![front.clone()],
            is_final: true,
        },
    };
    number(&mut alone.body.commands);
    Ok(encoding.encode(&alone)?.len() <= limit)
}

/// Replaces the front command of the queue, when it is an Add, Replace or Results of
/// one item too large for a message, with chunks of its data (DM large objects):
/// `MoreData` on every chunk but the last, the total `Size` in the first one's Meta.
/// Returns whether it did.
fn split_front<T: Clone>(
    queue: &mut VecDeque<(T, Command)>,
    without: &Message,
    limit: usize,
    encoding: Encoding,
) -> Result<bool, CodecError> {
    let Some((tag, command)) = queue.front().cloned() else {
        return Ok(false);
    };
    let Some(item) = single_item(&command) else {
        return Ok(false);
    };
    let Some(data) = item.data.clone() else {
        return Ok(false);
    };
    // What a message holds besides the data: the same command with no data.
    let mut empty = command.clone();
    if let Some(item) = single_item_mut(&mut empty) {
        item.data = Some(Data::Text(String::new()));
        item.meta.get_or_insert_default().size = Some(data.len() as u64);
        item.more_data = true;
    }
    let mut probe = without.clone();
    probe.body.commands.push(empty);
    let overhead = encoding.encode(&probe)?.len() + 16;
    // XML escapes grow the data ("&" is "&amp;"): size chunks by the escaped length.
    let raw = data.len().max(1);
    let written = match encoding {
        Encoding::Xml => escaped_len(data.as_bytes()),
        Encoding::Wbxml => raw,
    };
    let room = limit.saturating_sub(overhead);
    let chunk_len = (room * raw / written.max(1)).max(64);
    let chunks = split_data(&data, chunk_len);
    if chunks.len() < 2 {
        return Ok(false);
    }
    queue.pop_front();
    let last = chunks.len() - 1;
    for (index, chunk) in chunks.into_iter().enumerate().rev() {
        let mut piece = command.clone();
        if let Some(item) = single_item_mut(&mut piece) {
            item.data = Some(chunk);
            item.more_data = index != last;
            if index == 0 {
                item.meta.get_or_insert_default().size = Some(data.len() as u64);
            }
        }
        queue.push_front((tag.clone(), piece));
    }
    Ok(true)
}

/// The length of data once XML-escaped (as the XML codec escapes it).
fn escaped_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|b| match b {
            b'&' => 5,
            b'<' | b'>' => 4,
            b'\r' => 5,
            _ => 1,
        })
        .sum()
}

fn single_item(command: &Command) -> Option<&Item> {
    match command {
        Command::Add(c) | Command::Replace(c) if c.items.len() == 1 => c.items.first(),
        Command::Results(r) if r.items.len() == 1 => r.items.first(),
        _ => None,
    }
}

fn single_item_mut(command: &mut Command) -> Option<&mut Item> {
    match command {
        Command::Add(c) | Command::Replace(c) if c.items.len() == 1 => c.items.first_mut(),
        Command::Results(r) if r.items.len() == 1 => r.items.first_mut(),
        _ => None,
    }
}

/// Data cut into pieces of at most `len` bytes (text on character boundaries).
fn split_data(data: &Data, len: usize) -> Vec<Data> {
    match data {
        Data::Bytes(bytes) => bytes.chunks(len).map(|c| Data::Bytes(c.to_vec())).collect(),
        Data::Text(text) | Data::Xml(text) => {
            let mut pieces = Vec::new();
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut end = len.min(rest.len());
                while !rest.is_char_boundary(end) {
                    end -= 1;
                }
                let (piece, tail) =
                    rest.split_at(end.max(rest.chars().next().map_or(1, char::len_utf8)));
                pieces.push(Data::Text(piece.to_owned()));
                rest = tail;
            }
            pieces
        }
    }
}

/// Appends the data of the next chunk of a large object to what came before.
pub(crate) fn append_chunk(assembled: &mut Option<Data>, next: Option<&Data>) {
    let Some(next) = next else {
        return;
    };
    *assembled = Some(match (assembled.take(), next) {
        (None, next) => next.clone(),
        (Some(Data::Text(mut text)), Data::Text(more)) => {
            text.push_str(more);
            Data::Text(text)
        }
        (Some(before), more) => {
            let mut bytes = before.as_bytes().to_vec();
            bytes.extend_from_slice(more.as_bytes());
            match String::from_utf8(bytes) {
                Ok(text) => Data::Text(text),
                Err(e) => Data::Bytes(e.into_bytes()),
            }
        }
    });
}

/// Numbers the commands of a message 1, 2, 3, ... in document order, members of
/// Atomic and Sequence included.
fn number(commands: &mut [Command]) {
    fn walk(commands: &mut [Command], ids: &mut CmdIds) {
        for command in commands {
            command.set_cmd_id(ids.next_id());
            if let Command::Atomic(c) | Command::Sequence(c) = command {
                walk(&mut c.commands, ids);
            }
        }
    }
    walk(commands, &mut CmdIds::new());
}

fn collect_ids(command: &Command, ids: &mut Vec<u32>) {
    ids.push(command.cmd_id());
    if let Command::Atomic(c) | Command::Sequence(c) = command {
        for member in &c.commands {
            collect_ids(member, ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::{Item, ItemCommand, Location};

    /// One closing XML message of `queue` under `limit`, as a device packs.
    fn pack_whole(queue: &mut VecDeque<(u8, Command)>, limit: usize) -> Packed<u8> {
        let oversized = Oversized::SendWhole;
        pack(
            header(),
            vec![],
            queue,
            true,
            limit,
            Encoding::Xml,
            oversized,
        )
        .unwrap()
    }

    fn header() -> Header {
        Header {
            ver_dtd: "1.2".into(),
            ver_proto: "DM/1.2".into(),
            session_id: "1".into(),
            msg_id: 1,
            target: Location::new("IMEI:1"),
            source: Location::new("http://server"),
            resp_uri: None,
            cred: None,
            meta: None,
        }
    }

    fn replace(value: &str) -> Command {
        Command::Replace(ItemCommand {
            cmd_id: 0,
            meta: None,
            items: vec![Item {
                target: Some(Location::new("./A")),
                data: Some(gwmo_proto::Data::Text(value.into())),
                ..Item::default()
            }],
        })
    }

    #[test]
    fn a_package_that_fits_goes_whole_and_final() {
        let mut queue: VecDeque<(u8, Command)> = (0..5).map(|i| (i, replace("x"))).collect();
        let packed = pack_whole(&mut queue, 1 << 20);
        assert!(queue.is_empty());
        assert!(packed.message.body.is_final);
        assert_eq!(packed.sent.len(), 5);
        assert_eq!(packed.sent[4], (4, vec![5]));
    }

    #[test]
    fn what_does_not_fit_waits_and_the_message_is_not_final() {
        let big = "y".repeat(400);
        let mut queue: VecDeque<(u8, Command)> = (0..10).map(|i| (i, replace(&big))).collect();
        let packed = pack_whole(&mut queue, 1500);
        assert!(packed.bytes.len() <= 1500, "{} bytes", packed.bytes.len());
        assert!(!packed.message.body.is_final);
        assert!(!packed.sent.is_empty() && packed.sent.len() < 10);
        assert_eq!(queue.len() + packed.sent.len(), 10);
        assert_eq!(
            queue.front().map(|(tag, _)| *tag),
            Some(packed.sent.len() as u8)
        );
    }

    #[test]
    fn an_oversize_item_goes_in_chunks() {
        let big = "z".repeat(5000);
        let mut queue: VecDeque<(u8, Command)> = VecDeque::from([(7, replace(&big))]);
        let packed = pack_whole(&mut queue, 1000);
        assert!(packed.bytes.len() <= 1000, "{}", packed.bytes.len());
        assert!(!packed.message.body.is_final);
        let Command::Replace(first) = &packed.message.body.commands[0] else {
            panic!()
        };
        assert!(first.items[0].more_data);
        assert_eq!(first.items[0].meta.as_ref().unwrap().size, Some(5000));
        assert!(
            queue.iter().all(|(tag, _)| *tag == 7),
            "every chunk answers the same command"
        );
        let Some((_, Command::Replace(last))) = queue.back() else {
            panic!()
        };
        assert!(!last.items[0].more_data);
        let mut whole = first.items[0].data.clone();
        for (_, chunk) in &queue {
            let Command::Replace(c) = chunk else { panic!() };
            append_chunk(&mut whole, c.items[0].data.as_ref());
        }
        assert_eq!(whole, Some(Data::Text(big)));
    }

    #[test]
    fn an_oversize_command_that_cannot_be_split_still_goes() {
        let long_target = Command::Get(ItemCommand {
            cmd_id: 0,
            meta: None,
            items: vec![Item {
                target: Some(Location::new("x".repeat(5000))),
                ..Item::default()
            }],
        });
        let mut queue: VecDeque<(u8, Command)> = VecDeque::from([(7, long_target)]);
        let packed = pack_whole(&mut queue, 1000);
        assert_eq!(packed.sent.len(), 1);
        assert!(packed.message.body.is_final);
    }
}
