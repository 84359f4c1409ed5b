//! Packing commands into the messages of a package: CmdIDs are numbered per message,
//! and what does not fit under the peer's MaxMsgSize waits for the next message
//! (which the peer asks for with Alert 1222).

use std::collections::VecDeque;

use gwmo_proto::{Body, CmdIds, CodecError, Command, Encoding, Header, Message};

/// A message ready to send, and which queued commands went into it.
#[derive(Debug)]
pub(crate) struct Packed<T> {
    pub(crate) message: Message,
    pub(crate) bytes: Vec<u8>,
    /// Each queued command that went out: its tag and the CmdIDs it and its members got.
    pub(crate) sent: Vec<(T, Vec<u32>)>,
}

/// Builds one message: `leading` (statuses, alerts) always goes in, then as many
/// commands from the front of `queue` as fit in `limit` bytes. The message carries
/// `Final` when `closes_package` and the queue is then empty.
pub(crate) fn pack<T>(
    header: Header,
    leading: Vec<Command>,
    queue: &mut VecDeque<(T, Command)>,
    closes_package: bool,
    limit: usize,
    encoding: Encoding,
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

    // Most packages fit whole; otherwise find the largest prefix that does.
    let mut taken = queue.len();
    let mut bytes = encode_with(&mut message, taken, queue)?;
    if bytes.len() > limit && !queue.is_empty() {
        let (mut low, mut high) = (0, queue.len() - 1);
        while low < high {
            let mid = (low + high).div_ceil(2);
            if encode_with(&mut message, mid, queue)?.len() <= limit {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        // A message that would carry nothing new must still move the package on, even
        // if its one command is larger than the limit.
        taken = if low == 0 && leading_len <= 1 { 1 } else { low };
        bytes = encode_with(&mut message, taken, queue)?;
    }

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
    })
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
        let packed = pack(header(), vec![], &mut queue, true, 1 << 20, Encoding::Xml).unwrap();
        assert!(queue.is_empty());
        assert!(packed.message.body.is_final);
        assert_eq!(packed.sent.len(), 5);
        assert_eq!(packed.sent[4], (4, vec![5]));
    }

    #[test]
    fn what_does_not_fit_waits_and_the_message_is_not_final() {
        let big = "y".repeat(400);
        let mut queue: VecDeque<(u8, Command)> = (0..10).map(|i| (i, replace(&big))).collect();
        let packed = pack(header(), vec![], &mut queue, true, 1500, Encoding::Xml).unwrap();
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
    fn an_oversize_command_still_moves_the_package_on() {
        let mut queue: VecDeque<(u8, Command)> = VecDeque::from([(7, replace(&"z".repeat(5000)))]);
        let packed = pack(header(), vec![], &mut queue, true, 1000, Encoding::Xml).unwrap();
        assert_eq!(packed.sent.len(), 1);
        assert!(packed.message.body.is_final);
    }
}
