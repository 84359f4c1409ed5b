//! Management commands as operators queue them (JSON), their conversion to DM
//! commands, and the stored form of their outcome.

use gwmo_proto::{Command, Container, Data, Exec, Item, ItemCommand, Location, Meta, word};
use gwmo_session::CommandOutcome;
use serde::{Deserialize, Serialize};

/// A management command for one device, as queued through the admin API or the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "PascalCase", deny_unknown_fields)]
pub enum CommandSpec {
    Add {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        mime: Option<String>,
    },
    Replace {
        target: String,
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        mime: Option<String>,
    },
    Delete {
        target: String,
    },
    Get {
        target: String,
    },
    Copy {
        target: String,
        source: String,
    },
    Exec {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlator: Option<String>,
    },
    Atomic {
        commands: Vec<CommandSpec>,
    },
    Sequence {
        commands: Vec<CommandSpec>,
    },
}

/// Why a command spec cannot be queued.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("not a valid command: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} must hold at least one command")]
    EmptyContainer(&'static str),
    #[error("target must be a DM URI: '.' or starting with './', got {0:?}")]
    BadTarget(String),
    #[error("an Atomic may not hold a {0} (DM 1.2): no device would run it")]
    InAtomic(&'static str),
    #[error("containers nested deeper than {MAX_NESTING} levels: no device would take it")]
    TooDeep,
}

/// How deep Atomic and Sequence may nest in a queued command: well inside what any
/// device decodes (gwmo's codec stops at 64 elements, and a command needs several).
pub const MAX_NESTING: usize = 8;

impl CommandSpec {
    /// Parses and checks a spec from JSON text.
    pub fn parse(text: &str) -> Result<CommandSpec, SpecError> {
        let spec: CommandSpec = serde_json::from_str(text)?;
        spec.check(0)?;
        Ok(spec)
    }

    /// Refuses what no device could take, so that it is never queued to loop between
    /// sent and requeued: empty or too deeply nested containers, a Get or an Atomic
    /// inside an Atomic, targets that are no DM URI.
    fn check(&self, nesting: usize) -> Result<(), SpecError> {
        match self {
            CommandSpec::Atomic { commands } | CommandSpec::Sequence { commands } => {
                if commands.is_empty() {
                    return Err(SpecError::EmptyContainer(self.name()));
                }
                if nesting >= MAX_NESTING {
                    return Err(SpecError::TooDeep);
                }
                if let CommandSpec::Atomic { commands } = self
                    && let Some(member) = commands
                        .iter()
                        .find(|c| matches!(c, CommandSpec::Atomic { .. } | CommandSpec::Get { .. }))
                {
                    return Err(SpecError::InAtomic(member.name()));
                }
                commands.iter().try_for_each(|c| c.check(nesting + 1))
            }
            CommandSpec::Add { target, .. }
            | CommandSpec::Replace { target, .. }
            | CommandSpec::Delete { target }
            | CommandSpec::Get { target }
            | CommandSpec::Exec { target, .. }
            | CommandSpec::Copy { target, .. } => {
                // The root itself ("." or ".?list=...") or a node under it.
                if target.starts_with("./") || target.split('?').next() == Some(".") {
                    Ok(())
                } else {
                    Err(SpecError::BadTarget(target.clone()))
                }
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CommandSpec::Add { .. } => "Add",
            CommandSpec::Replace { .. } => "Replace",
            CommandSpec::Delete { .. } => "Delete",
            CommandSpec::Get { .. } => "Get",
            CommandSpec::Copy { .. } => "Copy",
            CommandSpec::Exec { .. } => "Exec",
            CommandSpec::Atomic { .. } => "Atomic",
            CommandSpec::Sequence { .. } => "Sequence",
        }
    }

    pub fn to_json(&self) -> String {
        // A derived Serialize of plain strings and vectors cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The DM command to send (CmdIDs are numbered when the message is packed).
    pub fn to_command(&self) -> Command {
        let target_item = |target: &str,
                           data: &Option<String>,
                           format: &Option<String>,
                           mime: &Option<String>| Item {
            target: Some(Location::new(target)),
            meta: meta(format, mime),
            data: data.clone().map(Data::Text),
            ..Item::default()
        };
        // Data always goes with its Format: `chr` is DM's default, and clients on
        // OMA's SyncML RTK (intel/libdmclient) crash on an Add or Replace without one.
        let stated = |format: &Option<String>| Some(format.clone().unwrap_or_else(|| "chr".into()));
        let items = |items: Vec<Item>| ItemCommand {
            cmd_id: 0,
            meta: None,
            items,
        };
        match self {
            CommandSpec::Add {
                target,
                data,
                format,
                mime,
            } => {
                let format = match data {
                    Some(_) => stated(format),
                    None => format.clone(),
                };
                Command::Add(items(vec![target_item(target, data, &format, mime)]))
            }
            CommandSpec::Replace {
                target,
                data,
                format,
                mime,
            } => Command::Replace(items(vec![target_item(
                target,
                &Some(data.clone()),
                &stated(format),
                mime,
            )])),
            CommandSpec::Delete { target } => {
                Command::Delete(items(vec![target_item(target, &None, &None, &None)]))
            }
            CommandSpec::Get { target } => {
                Command::Get(items(vec![target_item(target, &None, &None, &None)]))
            }
            CommandSpec::Copy { target, source } => Command::Copy(items(vec![Item {
                target: Some(Location::new(target)),
                source: Some(Location::new(source)),
                ..Item::default()
            }])),
            CommandSpec::Exec {
                target,
                data,
                correlator,
            } => Command::Exec(Exec {
                cmd_id: 0,
                meta: None,
                correlator: correlator.clone(),
                items: vec![target_item(target, data, &None, &None)],
            }),
            CommandSpec::Atomic { commands } => Command::Atomic(container(commands)),
            CommandSpec::Sequence { commands } => Command::Sequence(container(commands)),
        }
    }
}

fn meta(format: &Option<String>, mime: &Option<String>) -> Option<Box<Meta>> {
    (format.is_some() || mime.is_some()).then(|| {
        Box::new(Meta {
            format: format.as_deref().map(|format| word(format.into())),
            r#type: mime.as_deref().map(|mime| word(mime.into())),
            ..Meta::default()
        })
    })
}

fn container(commands: &[CommandSpec]) -> Container {
    Container {
        cmd_id: 0,
        meta: None,
        commands: commands.iter().map(CommandSpec::to_command).collect(),
    }
}

/// The stored outcome of a command: its status, its members' statuses, its results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub status: u16,
    pub members: Vec<MemberStatus>,
    pub results: Vec<ResultItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub cmd: String,
    pub status: u16,
}

/// One item of a Results: the node, its value and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultItem {
    pub uri: Option<String>,
    pub format: Option<String>,
    #[serde(rename = "type")]
    pub mime: Option<String>,
    pub data: Option<String>,
}

impl From<&CommandOutcome> for StoredOutcome {
    fn from(outcome: &CommandOutcome) -> Self {
        StoredOutcome {
            status: outcome.status.get(),
            members: outcome
                .members
                .iter()
                .map(|(cmd, status)| MemberStatus {
                    cmd: cmd.clone(),
                    status: status.get(),
                })
                .collect(),
            results: outcome
                .results
                .iter()
                .map(|item| ResultItem {
                    uri: item.source.as_ref().map(|s| s.uri.clone()),
                    format: item
                        .meta
                        .as_ref()
                        .and_then(|m| m.format.as_deref())
                        .map(str::to_owned),
                    mime: item
                        .meta
                        .as_ref()
                        .and_then(|m| m.r#type.as_deref())
                        .map(str::to_owned),
                    data: item
                        .data
                        .as_ref()
                        .and_then(|d| d.as_text())
                        .map(str::to_owned),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_become_dm_commands() {
        let spec = CommandSpec::parse(
            r#"{"op":"Atomic","commands":[{"op":"Add","target":"./A","data":"1","format":"int"},{"op":"Delete","target":"./B"}]}"#,
        )
        .unwrap();
        let Command::Atomic(atomic) = spec.to_command() else {
            panic!("not an Atomic")
        };
        assert_eq!(atomic.commands.len(), 2);
        assert_eq!(atomic.commands[0].name(), "Add");
        let Command::Add(add) = &atomic.commands[0] else {
            panic!()
        };
        assert_eq!(
            add.items[0].meta.as_ref().unwrap().format.as_deref(),
            Some("int")
        );
        assert_eq!(CommandSpec::parse(&spec.to_json()).unwrap(), spec);
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        assert!(matches!(CommandSpec::parse("{"), Err(SpecError::Json(_))));
        assert!(matches!(
            CommandSpec::parse(r#"{"op":"Launch","target":"./A"}"#),
            Err(SpecError::Json(_))
        ));
        assert!(matches!(
            CommandSpec::parse(r#"{"op":"Sequence","commands":[]}"#),
            Err(SpecError::EmptyContainer("Sequence"))
        ));
        assert!(matches!(
            CommandSpec::parse(r#"{"op":"Get","target":"/etc/passwd"}"#),
            Err(SpecError::BadTarget(_))
        ));
        assert!(matches!(
            CommandSpec::parse(r#"{"op":"Get","target":"..?list=TNDS"}"#),
            Err(SpecError::BadTarget(_))
        ));
        assert!(CommandSpec::parse(r#"{"op":"Get","target":".?list=TNDS"}"#).is_ok());
    }

    #[test]
    fn data_always_goes_with_its_format() {
        for spec in [
            r#"{"op":"Add","target":"./A","data":"1"}"#,
            r#"{"op":"Replace","target":"./A","data":"1"}"#,
        ] {
            let command = CommandSpec::parse(spec).unwrap().to_command();
            let format = command.items()[0]
                .meta
                .as_ref()
                .and_then(|m| m.format.clone());
            assert_eq!(format.as_deref(), Some("chr"), "{spec}");
        }
        let interior = CommandSpec::parse(r#"{"op":"Add","target":"./A","format":"node"}"#)
            .unwrap()
            .to_command();
        assert_eq!(
            interior.items()[0].meta.as_ref().unwrap().format.as_deref(),
            Some("node")
        );
    }

    /// Issue 14, finding 11: what no device could run is never queued.
    #[test]
    fn a_command_no_device_could_take_is_refused() {
        let nested = |op: &str, depth: usize| {
            let mut spec = r#"{"op":"Add","target":"./A","data":"1"}"#.to_owned();
            for _ in 0..depth {
                spec = format!(r#"{{"op":"{op}","commands":[{spec}]}}"#);
            }
            spec
        };
        assert!(CommandSpec::parse(&nested("Sequence", MAX_NESTING)).is_ok());
        assert!(matches!(
            CommandSpec::parse(&nested("Sequence", MAX_NESTING + 1)),
            Err(SpecError::TooDeep)
        ));
        assert!(matches!(
            CommandSpec::parse(&nested("Atomic", 60)),
            Err(SpecError::InAtomic("Atomic"))
        ));
        assert!(matches!(
            CommandSpec::parse(r#"{"op":"Atomic","commands":[{"op":"Get","target":"./A"}]}"#),
            Err(SpecError::InAtomic("Get"))
        ));
    }
}
