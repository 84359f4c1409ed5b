//! Firmware updates (FUMO 1.0, docs/FUMO.md): the command that updates a device from
//! an uploaded artifact (the package's name, version and descriptor replaced under the
//! device's FUMO object, its PkgURL pointed at the artifact, then an Exec of
//! DownloadAndUpdate with a correlator of its own), and what the device's answers
//! mean: a 202 to the Exec accepts the update, the Generic Alert carrying the same
//! correlator ends it with a FUMO result code.

use gwmo_proto::Alert;
use gwmo_tree::fumo::{self, Operation, ResultCode};

use crate::command::{CommandSpec, StoredOutcome};
use crate::store::firmware::Artifact;

/// The path firmware images are uploaded under: its bodies are streamed to disk by
/// their handler, not read whole by the listener.
pub const UPLOAD_PREFIX: &str = "/api/artifacts";

/// The path artifacts are downloaded from, `{FIRMWARE_PATH}/{id}`.
pub const DOWNLOAD_PATH: &str = "/firmware";

/// A correlator no other update has: 64 random bits.
pub fn new_correlator() -> String {
    format!("fw-{:016x}", rand::random::<u64>())
}

/// Where `artifact` is downloaded from, for a server whose DM URL is `dm_url`
/// (`https://host:port/dm` gives `https://host:port/firmware/<id>`).
pub fn artifact_url(dm_url: &str, artifact_id: &str) -> String {
    let base = dm_url
        .split_once("://")
        .and_then(|(scheme, rest)| {
            let authority = rest.split('/').next()?;
            Some(format!("{scheme}://{authority}"))
        })
        .unwrap_or_default();
    format!("{base}{DOWNLOAD_PATH}/{artifact_id}")
}

/// The command that updates a device's firmware to `artifact`, fetched from
/// `pkg_url`: a Sequence, so that the Exec runs only after the Replaces before it.
pub fn update_command(artifact: &Artifact, pkg_url: &str, correlator: &str) -> CommandSpec {
    let object = fumo::OBJECT;
    let replace = |node: &str, data: &str, format: &str| CommandSpec::Replace {
        target: format!("{object}/{node}"),
        data: data.to_owned(),
        format: Some(format.to_owned()),
        mime: None,
    };
    let operation = Operation::DownloadAndUpdate.node();
    CommandSpec::Sequence {
        commands: vec![
            replace("PkgName", &artifact.name, "chr"),
            replace("PkgVersion", &artifact.version, "chr"),
            replace(fumo::EXT_SHA256, &artifact.sha256, "chr"),
            replace(fumo::EXT_SIZE, &artifact.size.to_string(), "chr"),
            replace(fumo::EXT_MAN, &artifact.man, "chr"),
            replace(fumo::EXT_MOD, &artifact.model, "chr"),
            replace(&format!("{operation}/PkgURL"), pkg_url, "chr"),
            CommandSpec::Exec {
                target: format!("{object}/{operation}"),
                data: None,
                correlator: Some(correlator.to_owned()),
            },
        ],
    }
}

/// The update a command made by [`update_command`] carries: its correlator and the
/// artifact (the last segment of its PkgURL); none for any other command.
pub fn update_of(spec: &CommandSpec) -> Option<TrackedUpdate> {
    let CommandSpec::Sequence { commands } = spec else {
        return None;
    };
    let operation = Operation::DownloadAndUpdate.node();
    let url_target = format!("{}/{operation}/PkgURL", fumo::OBJECT);
    let exec_target = format!("{}/{operation}", fumo::OBJECT);
    let artifact = commands.iter().find_map(|c| match c {
        CommandSpec::Replace { target, data, .. } if *target == url_target => {
            data.rsplit('/').next().map(str::to_owned)
        }
        _ => None,
    })?;
    let correlator = commands.iter().find_map(|c| match c {
        CommandSpec::Exec {
            target, correlator, ..
        } if *target == exec_target => correlator.clone(),
        _ => None,
    })?;
    Some(TrackedUpdate {
        correlator,
        artifact,
    })
}

/// What identifies the devices' updates of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedUpdate {
    pub correlator: String,
    pub artifact: String,
}

impl TrackedUpdate {
    /// The record of one device's update, sent by command `command_id` or handed to
    /// its gateway by fan-out `fanout_id`.
    pub fn for_device(
        &self,
        dev_id: &str,
        command_id: Option<i64>,
        fanout_id: Option<i64>,
        now: i64,
    ) -> crate::store::firmware::FirmwareUpdate {
        crate::store::firmware::FirmwareUpdate {
            correlator: self.correlator.clone(),
            dev_id: dev_id.to_owned(),
            artifact_id: self.artifact.clone(),
            command_id,
            fanout_id,
            state: crate::store::firmware::UpdateState::Queued,
            result: None,
            reason: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// What the device's answer to an update command says: `Ok` when it accepted the Exec
/// (202), or why not.
pub fn accepted(outcome: &StoredOutcome) -> Result<(), String> {
    let exec = outcome.members.iter().rev().find(|m| m.cmd == "Exec");
    let refused = outcome
        .members
        .iter()
        .find(|m| m.cmd != "Exec" && !(200..300).contains(&m.status));
    match (refused, exec) {
        (Some(member), _) => Err(format!(
            "the device refused a {} of the update with status {}",
            member.cmd, member.status
        )),
        (None, Some(exec)) if exec.status == 202 => Ok(()),
        (None, Some(exec)) => Err(format!(
            "the device answered the Exec of DownloadAndUpdate with status {}",
            exec.status
        )),
        (None, None) => Err(format!(
            "the device answered the update with status {} and no status for its Exec",
            outcome.status
        )),
    }
}

/// A FUMO result a device reported: the correlator of the Exec it answers, and the
/// result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub correlator: String,
    pub result: ResultCode,
}

/// The FUMO results a Generic Alert carries (an alert of another type, or one
/// without a correlator or a numeric result, carries none).
pub fn reported(alert: &Alert) -> Vec<Reported> {
    if alert.code != gwmo_proto::codes::alert::GENERIC_ALERT {
        return Vec::new();
    }
    let Some(correlator) = alert.correlator.as_deref() else {
        return Vec::new();
    };
    alert
        .items
        .iter()
        .filter(|item| {
            item.meta
                .as_ref()
                .and_then(|m| m.r#type.as_deref())
                .is_some_and(|kind| Operation::ALL.iter().any(|o| o.alert_type() == kind))
        })
        .filter_map(|item| item.data.as_ref()?.as_text()?.trim().parse::<u16>().ok())
        .map(|code| Reported {
            correlator: correlator.to_owned(),
            result: ResultCode(code),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MemberStatus;
    use gwmo_proto::{Data, Item, Meta};

    fn artifact() -> Artifact {
        Artifact {
            id: "00ff".into(),
            name: "image".into(),
            version: "2.0".into(),
            man: "gwmo".into(),
            model: "gwmo-device".into(),
            size: 10,
            sha256: "ab".repeat(32),
            created_at: 0,
        }
    }

    #[test]
    fn the_download_url_is_on_the_dm_servers_own_authority() {
        assert_eq!(
            artifact_url("https://dms.example:8443/dm", "00ff"),
            "https://dms.example:8443/firmware/00ff"
        );
    }

    #[test]
    fn the_update_ends_with_the_exec_and_its_correlator() {
        let CommandSpec::Sequence { commands } = update_command(&artifact(), "https://x/f", "fw-1")
        else {
            panic!("not a Sequence");
        };
        assert_eq!(
            commands.last(),
            Some(&CommandSpec::Exec {
                target: "./FUMO/Firmware/DownloadAndUpdate".into(),
                data: None,
                correlator: Some("fw-1".into()),
            })
        );
        assert!(commands.contains(&CommandSpec::Replace {
            target: "./FUMO/Firmware/DownloadAndUpdate/PkgURL".into(),
            data: "https://x/f".into(),
            format: Some("chr".into()),
            mime: None,
        }));
    }

    #[test]
    fn an_update_command_names_its_correlator_and_artifact_and_no_other_does() {
        let spec = update_command(&artifact(), "https://dms/firmware/00ff", "fw-9");
        assert_eq!(
            update_of(&spec),
            Some(TrackedUpdate {
                correlator: "fw-9".into(),
                artifact: "00ff".into()
            })
        );
        let get = CommandSpec::Get {
            target: "./DevInfo/Man".into(),
        };
        assert_eq!(update_of(&get), None);
    }

    #[test]
    fn only_a_202_to_the_exec_accepts_the_update() {
        let outcome = |statuses: &[(&str, u16)]| StoredOutcome {
            status: 200,
            members: statuses
                .iter()
                .map(|(cmd, status)| MemberStatus {
                    cmd: (*cmd).into(),
                    status: *status,
                })
                .collect(),
            results: Vec::new(),
        };
        assert_eq!(
            accepted(&outcome(&[("Replace", 200), ("Exec", 202)])),
            Ok(())
        );
        assert!(accepted(&outcome(&[("Replace", 200), ("Exec", 200)])).is_err());
        assert!(accepted(&outcome(&[("Replace", 425), ("Exec", 202)])).is_err());
        assert!(accepted(&outcome(&[("Replace", 200)])).is_err());
    }

    #[test]
    fn results_are_read_from_fumo_alerts_with_a_correlator_only() {
        fn alert(kind: &'static str, correlator: Option<&str>, data: &str) -> Alert {
            Alert {
                cmd_id: 1,
                code: 1226,
                correlator: correlator.map(str::to_owned),
                items: vec![Item {
                    meta: Some(Box::new(Meta {
                        r#type: Some(kind.into()),
                        format: Some("int".into()),
                        ..Meta::default()
                    })),
                    data: Some(Data::Text(data.into())),
                    ..Item::default()
                }],
            }
        }
        let kind = gwmo_proto::codes::alert_type::FUMO_DOWNLOAD_AND_UPDATE;
        assert_eq!(
            reported(&alert(kind, Some("fw-1"), "402")),
            vec![Reported {
                correlator: "fw-1".into(),
                result: ResultCode::CORRUPTED_PACKAGE
            }]
        );
        assert!(reported(&alert(kind, None, "200")).is_empty());
        assert!(reported(&alert("urn:other", Some("fw-1"), "200")).is_empty());
        assert!(reported(&alert(kind, Some("fw-1"), "two hundred")).is_empty());
    }
}
