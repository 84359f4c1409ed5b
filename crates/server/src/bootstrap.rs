//! DM Server Assisted Gateway Bootstrapping (seed 8.x.1, docs/DECISIONS.md §2 A): the commands
//! the server sends an end device that reports the gateway it now sees, and what it
//! tells the gateways once the device has confirmed its new account.

use gwmo_proto::auth::AuthType;
use gwmo_tree::gwmo::{INVENTORY, entry};
use gwmo_tree::{Origin, Trust, segment_for};

use gwmo_proto::codes::{StatusCode, status};

use crate::command::{CommandSpec, StoredOutcome};
use crate::store::{
    DeviceRecord, Followups, GatewayRecord, NewCommand, NewEvent, SettledBootstrap,
};

fn add(target: String, data: &str) -> CommandSpec {
    CommandSpec::Add {
        target,
        data: Some(data.to_owned()),
        format: None,
        mime: None,
    }
}

/// The commands for the end device: remove the account of the gateway it left (if
/// any), then add the new gateway's account, all of it or nothing.
pub fn device_commands(
    server_id: &str,
    gateway: &GatewayRecord,
    previous: Option<&str>,
    dev_id: &str,
    client_secret: &str,
    server_secret: &str,
) -> Vec<CommandSpec> {
    let base = format!("./DMAcc/{}", segment_for(&gateway.gateway_id));
    let leaf = |path: &str, value: &str| add(format!("{base}/{path}"), value);
    let account = CommandSpec::Atomic {
        commands: vec![
            leaf("ServerID", &gateway.gateway_id),
            leaf("AppID", "w7"),
            leaf("AppAddr/1/Addr", &gateway.dm_url),
            leaf("AppAddr/1/AddrType", "URI"),
            leaf("AAuthPref", "DIGEST"),
            leaf("AppAuth/1/AAuthLevel", "CLCRED"),
            leaf("AppAuth/1/AAuthType", "DIGEST"),
            leaf("AppAuth/1/AAuthName", dev_id),
            leaf("AppAuth/1/AAuthSecret", client_secret),
            leaf("AppAuth/1/AAuthData", ""),
            leaf("AppAuth/2/AAuthLevel", "SRVCRED"),
            leaf("AppAuth/2/AAuthType", "DIGEST"),
            leaf("AppAuth/2/AAuthName", &gateway.gateway_id),
            leaf("AppAuth/2/AAuthSecret", server_secret),
            leaf("AppAuth/2/AAuthData", ""),
            // The server that bootstraps the gateway vouches for it (docs/DECISIONS.md §3: a
            // trusted pre-existing server writes the provenance of what it creates).
            leaf("Ext/GwBoot/Origin", Origin::ServerAssisted.as_str()),
            leaf("Ext/GwBoot/Parent", server_id),
            leaf("Ext/GwBoot/Trust", Trust::Full.as_str()),
            leaf("Ext/GwBoot/LapseAt", ""),
            leaf("Ext/GwBoot/Confirmed", "true"),
        ],
    };
    let mut commands: Vec<CommandSpec> = previous
        .map(|old| CommandSpec::Delete {
            target: format!("./DMAcc/{}", segment_for(old)),
        })
        .into_iter()
        .collect();
    commands.push(account);
    commands
}

/// Whether a device answered an Atomic with "already exists" (418) for its first
/// member: for the account Atomic of [`device_commands`], an earlier send ran and its
/// answer was lost with the instance that sent it (or an account of that gateway was
/// there before).
pub fn first_member_already_there(outcome: &StoredOutcome) -> bool {
    status::ATOMIC_FAILED == outcome.status
        && outcome.members.first().map(|m| StatusCode(m.status)) == Some(status::ALREADY_EXISTS)
}

/// The account Atomic of [`device_commands`] as Replaces of the same leaves: they make
/// the account the one planned, whatever was there. None for any other command, and
/// for this form itself.
pub fn account_as_replaces(spec: &CommandSpec) -> Option<CommandSpec> {
    let CommandSpec::Atomic { commands } = spec else {
        return None;
    };
    let creates_an_account = matches!(
        commands.first(),
        Some(CommandSpec::Add { target, .. }) if target.starts_with("./DMAcc/") && target.ends_with("/ServerID")
    );
    if !creates_an_account {
        return None;
    }
    let replaces = commands
        .iter()
        .map(|command| match command {
            CommandSpec::Add {
                target,
                data: Some(data),
                format,
                mime,
            } => Some(CommandSpec::Replace {
                target: target.clone(),
                data: data.clone(),
                format: format.clone(),
                mime: mime.clone(),
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(CommandSpec::Atomic { commands: replaces })
}

/// The gateway's Device Inventory entry for a device it now serves.
pub fn inventory_add(device: &DeviceRecord, settled: &SettledBootstrap) -> CommandSpec {
    let base = format!("{INVENTORY}/{}", segment_for(&device.dev_id));
    let leaf = |path: &str, value: &str| add(format!("{base}/{path}"), value);
    CommandSpec::Atomic {
        commands: vec![
            leaf(entry::DEV_ID, &device.dev_id),
            leaf(entry::MAN, &device.devinfo_leaf("Man")),
            leaf(entry::MOD, &device.devinfo_leaf("Mod")),
            leaf(
                entry::NOTIFY_URL,
                device.notify_address.as_deref().unwrap_or(""),
            ),
            leaf(entry::AUTH, AuthType::Md5.name()),
            leaf(entry::CLIENT_NAME, &device.dev_id),
            leaf(entry::CLIENT_SECRET, &settled.client_secret),
            leaf(entry::SERVER_SECRET, &settled.server_secret),
            leaf(entry::ORIGIN, Origin::ServerAssisted.as_str()),
            leaf(entry::TRUST, Trust::Full.as_str()),
        ],
    }
}

/// What a confirmed server-assisted bootstrap entails: the gateway the device is now
/// bootstrapped to gets it in its Device Inventory, the one it left loses it (each if
/// registered), and an event records it.
pub fn tell_gateways(
    settled: &SettledBootstrap,
    device: &DeviceRecord,
    new: Option<&GatewayRecord>,
    old: Option<&GatewayRecord>,
) -> Followups {
    let mut commands = Vec::new();
    if let Some(gateway) = new {
        commands.push(NewCommand {
            dev_id: gateway.dev_id.clone(),
            spec: inventory_add(device, settled).to_json(),
            validates: None,
        });
    }
    if let Some(gateway) = old {
        commands.push(NewCommand {
            dev_id: gateway.dev_id.clone(),
            spec: inventory_remove(&settled.dev_id).to_json(),
            validates: None,
        });
    }
    let detail = serde_json::json!({ "gateway": settled.gateway_id, "previous": settled.previous });
    Followups {
        commands,
        events: vec![NewEvent {
            dev_id: Some(settled.dev_id.clone()),
            kind: "bootstrap",
            detail: detail.to_string(),
        }],
    }
}

/// Validates a locally bootstrapped gateway on a device (seed 8.x.2): its account's
/// Trust becomes `validated`. Only a server that predates the gateway may do this.
pub fn validation(gateway_id: &str) -> CommandSpec {
    CommandSpec::Replace {
        target: format!("./DMAcc/{}/Ext/GwBoot/Trust", segment_for(gateway_id)),
        data: Trust::Validated.as_str().into(),
        format: None,
        mime: None,
    }
}

/// The gateway (its account's node name) that `spec` validates, if it is a validation.
pub fn validated_account(spec: &CommandSpec) -> Option<&str> {
    match spec {
        CommandSpec::Replace { target, data, .. } if data == Trust::Validated.as_str() => target
            .strip_prefix("./DMAcc/")?
            .strip_suffix("/Ext/GwBoot/Trust"),
        _ => None,
    }
}

/// Removes a device from the inventory of the gateway it left.
pub fn inventory_remove(dev_id: &str) -> CommandSpec {
    CommandSpec::Delete {
        target: format!("{INVENTORY}/{}", segment_for(dev_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> GatewayRecord {
        GatewayRecord {
            gateway_id: "gw-2".into(),
            dev_id: "IMEI:gw2".into(),
            dm_url: "http://10.0.0.2/dm".into(),
            server_assisted: true,
        }
    }

    #[test]
    fn a_move_removes_the_old_account_then_adds_the_new_one_atomically() {
        let commands = device_commands("dms", &gateway(), Some("gw-1"), "IMEI:1", "c", "s");
        assert_eq!(
            commands[0],
            CommandSpec::Delete {
                target: "./DMAcc/gw-1".into()
            }
        );
        let CommandSpec::Atomic { commands: adds } = &commands[1] else {
            panic!("not atomic")
        };
        let targets: Vec<String> = adds
            .iter()
            .filter_map(|c| match c {
                CommandSpec::Add { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            targets[0], "./DMAcc/gw-2/ServerID",
            "ServerID first: it grants the gateway its account"
        );
        assert!(targets.contains(&"./DMAcc/gw-2/Ext/GwBoot/Trust".to_owned()));
        assert_eq!(
            device_commands("dms", &gateway(), None, "IMEI:1", "c", "s").len(),
            1
        );
    }

    #[test]
    fn inventory_entries_are_named_after_the_device() {
        assert_eq!(
            inventory_remove("IMEI:35"),
            CommandSpec::Delete {
                target: "./GwMO/DeviceInventory/IMEI_35".into()
            }
        );
    }
}
