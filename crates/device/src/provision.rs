//! What a device carries from the factory: its DevInfo and DevDetail, the DM
//! accounts of its configuration, and the vendor nodes gwmo devices offer.

use gwmo_proto::{Alert, Data, Item, Location, Meta, codes};
use gwmo_tree::{Acl, DeviceInfo, DmAccount, ExecRequest, Format, Tree};
use tracing::info;

use crate::DeviceError;
use crate::settings::{DeviceSettings, FactoryAccount};

/// Where a gwmo device reports the URL it takes package 0 at.
pub const NOTIFY_URL_NODE: &str = "./DevInfo/Ext/NotifyURL";
/// An executable node: Exec stores its data in [`LAST_PING_NODE`].
pub const PING_NODE: &str = "./Vendor/gwmo/Ping";
pub const LAST_PING_NODE: &str = "./Vendor/gwmo/LastPing";

/// The tree of a new device, with its factory accounts.
pub fn factory_tree(settings: &DeviceSettings) -> Result<Tree, DeviceError> {
    let mut tree = Tree::new_device(&DeviceInfo {
        dev_id: settings.dev_id.clone(),
        manufacturer: settings.manufacturer.clone(),
        model: settings.model.clone(),
        firmware_version: settings.firmware_version.clone(),
        ..DeviceInfo::default()
    });
    for factory in &settings.accounts {
        tree.add_factory_account(&factory_account(settings, factory))?;
    }
    // Vendor nodes every server may read, and the factory servers may execute.
    let servers: Vec<&str> = settings
        .accounts
        .iter()
        .map(|a| a.server_id.as_str())
        .collect();
    tree.ensure_interior("./Vendor/gwmo")?;
    tree.set_leaf(PING_NODE, "", Format::Chr)?;
    tree.set_leaf(LAST_PING_NODE, "", Format::Chr)?;
    let factory_servers = servers.join("+");
    let acl = if factory_servers.is_empty() {
        "Get=*".to_owned()
    } else {
        format!(
            "Get=*&Exec={factory_servers}&Replace={factory_servers}&Add={factory_servers}&Delete={factory_servers}"
        )
    };
    tree.set_acl("./Vendor", Acl::parse(&acl)?)?;
    // The factory servers may bootstrap the device to other servers and gateways.
    if !factory_servers.is_empty() {
        let acl = format!("Get=*&Add={factory_servers}");
        tree.set_acl(gwmo_tree::DMACC, Acl::parse(&acl)?)?;
    }
    Ok(tree)
}

fn factory_account(settings: &DeviceSettings, factory: &FactoryAccount) -> DmAccount {
    DmAccount::new(
        &factory.server_id,
        &factory.server_url,
        factory.auth,
        factory.client_name.as_deref().unwrap_or(&settings.dev_id),
        &factory.client_secret,
        factory.server_name.as_deref().unwrap_or(&factory.server_id),
        &factory.server_secret,
    )
}

/// Records as factory the configured accounts a tree written before the device kept
/// records holds (the configuration is the device's own word for them); every other
/// account it holds stays untrusted. Returns whether anything was recorded.
pub fn adopt_factory_accounts(tree: &mut Tree, settings: &DeviceSettings) -> bool {
    settings
        .accounts
        .iter()
        .filter(|factory| tree.adopt_factory_account(&factory.server_id))
        .count()
        > 0
}

/// Brings the stored factory accounts in line with a configuration the operator
/// changed. The rule: a factory account whose configuration differs from the one the
/// device last started with (`applied_before`; none recorded counts as changed) wins
/// for what it names: added if the tree lacks it, its address, scheme, names and
/// secrets taken from the configuration where they differ (its nonces kept). One the
/// operator left as it was stays as servers have managed it since (a server may have
/// rotated its secrets or switched its scheme over DM). Accounts the configuration
/// does not name (bootstrapped by servers and gateways) are left alone. Returns what
/// changed, one line each, for the log.
pub fn apply_configured_accounts(
    tree: &mut Tree,
    settings: &DeviceSettings,
    applied_before: Option<&[FactoryAccount]>,
) -> Result<Vec<String>, DeviceError> {
    let mut changed = Vec::new();
    for factory in &settings.accounts {
        if applied_before.is_some_and(|before| before.contains(factory)) {
            continue;
        }
        let configured = factory_account(settings, factory);
        let Some((node, stored)) = gwmo_tree::account_for(tree, &factory.server_id) else {
            tree.add_factory_account(&configured)?;
            changed.push(format!(
                "{}: added from the configuration",
                factory.server_id
            ));
            continue;
        };
        let mut differs = Vec::new();
        if stored.addr != configured.addr {
            differs.push("address".to_owned());
        }
        let mut merged = configured.clone();
        for auth in &mut merged.auths {
            let side = match auth.level {
                gwmo_tree::AuthLevel::Client => "client",
                gwmo_tree::AuthLevel::Server => "server",
            };
            let Some(before) = stored.credentials(auth.level) else {
                differs.push(format!("{side} credentials"));
                continue;
            };
            for (what, same) in [
                ("scheme", before.auth_type == auth.auth_type),
                ("name", before.name == auth.name),
                ("secret", before.secret == auth.secret),
            ] {
                if !same {
                    differs.push(format!("{side} {what}"));
                }
            }
            auth.nonce = before.nonce.clone();
        }
        if !differs.is_empty() {
            gwmo_tree::write_dm_account(tree, &node, &merged)?;
            changed.push(format!(
                "{}: {} from the configuration",
                factory.server_id,
                differs.join(", ")
            ));
        }
    }
    Ok(changed)
}

/// Whether the account of `server_id` is a gateway's.
pub fn is_gateway(tree: &Tree, server_id: &str) -> bool {
    tree.provenance_of(server_id)
        .is_some_and(|p| p.origin.is_gateway())
}

/// The ServerID of the gateway the device is bootstrapped to, if any.
pub fn current_gateway(tree: &Tree) -> Option<String> {
    gwmo_tree::dm_accounts(tree)
        .into_iter()
        .map(|(_, account)| account.server_id)
        .find(|server_id| is_gateway(tree, server_id))
}

/// The Location Update Alert (Generic Alert 1226, docs/DECISIONS.md §3) for a session with a
/// server, when the gateway the device sees is not the one it is bootstrapped to.
pub fn location_update(tree: &Tree, seen_gateway: Option<&str>, server_id: &str) -> Option<Alert> {
    let seen = seen_gateway?;
    if is_gateway(tree, server_id) || current_gateway(tree).as_deref() == Some(seen) {
        return None;
    }
    Some(Alert {
        cmd_id: 0,
        code: codes::alert::GENERIC_ALERT,
        correlator: None,
        items: vec![Item {
            source: Some(Location::new("./DevInfo/DevId")),
            meta: Some(Box::new(Meta {
                r#type: Some(codes::alert_type::LOCATION_UPDATE.into()),
                format: Some("chr".into()),
                ..Meta::default()
            })),
            data: Some(Data::Text(seen.to_owned())),
            ..Item::default()
        }],
    })
}

pub fn set_notify_url(tree: &mut Tree, url: &str) -> Result<(), DeviceError> {
    tree.set_leaf(NOTIFY_URL_NODE, url, Format::Chr)?;
    Ok(())
}

/// Acts on an Exec the tree accepted. The one executable node of a gwmo device is
/// Ping, which records its data (or "ping") as proof that it ran.
pub fn run_exec(tree: &mut Tree, request: &ExecRequest) {
    if request.uri == PING_NODE {
        let value = request.data.clone().unwrap_or_else(|| "ping".into());
        if tree.set_leaf(LAST_PING_NODE, &value, Format::Chr).is_ok() {
            info!(data = %value, "Ping executed");
        }
    }
}
