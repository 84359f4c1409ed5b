//! Bootstrap provenance of DM accounts (`./DMAcc/<X>/Ext/GwBoot`, DESIGN.md §3) and
//! the trust it gives a gateway.
//!
//! A gateway account of trust `full` (server assisted) or `validated` acts with the
//! rights of the server that bootstrapped it (`Parent`): that is how the seed's "the DM
//! Gateway MAY make changes to pre-existing DMAcc objects" holds on a device whose ACLs
//! name only its factory servers. A `restricted` gateway has only what ACLs give it.

use crate::TreeError;
use crate::dmacc::{DMACC, dm_accounts};
use crate::node::Format;
use crate::tree::Tree;

/// Where an account came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Factory,
    Server,
    ServerAssisted,
    LocalBootstrap,
    ViaGateway,
}

/// How far an account is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Full,
    Restricted,
    Validated,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Factory => "factory",
            Origin::Server => "server",
            Origin::ServerAssisted => "server-assisted",
            Origin::LocalBootstrap => "local-bootstrap",
            Origin::ViaGateway => "via-gateway",
        }
    }

    pub fn parse(text: &str) -> Option<Origin> {
        use Origin::*;
        [Factory, Server, ServerAssisted, LocalBootstrap, ViaGateway]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Full => "full",
            Trust::Restricted => "restricted",
            Trust::Validated => "validated",
        }
    }

    pub fn parse(text: &str) -> Option<Trust> {
        [Trust::Full, Trust::Restricted, Trust::Validated]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// The GwBoot leaves of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub origin: Origin,
    /// The ServerID of the server that bootstrapped this account, if any.
    pub parent: Option<String>,
    pub trust: Trust,
    /// RFC 3339 deadline after which the account lapses; none once confirmed.
    pub lapse_at: Option<String>,
    pub confirmed: bool,
}

fn leaf(name: &str, field: &str) -> String {
    format!("{DMACC}/{name}/Ext/GwBoot/{field}")
}

/// The provenance of account `<name>`; an account without GwBoot leaves is a factory one.
pub fn provenance(tree: &Tree, name: &str) -> Provenance {
    let text = |field| tree.value(&leaf(name, field)).filter(|v| !v.is_empty());
    Provenance {
        origin: text("Origin")
            .and_then(Origin::parse)
            .unwrap_or(Origin::Factory),
        parent: text("Parent").map(str::to_owned),
        trust: text("Trust").and_then(Trust::parse).unwrap_or(Trust::Full),
        lapse_at: text("LapseAt").map(str::to_owned),
        confirmed: text("Confirmed") == Some("true"),
    }
}

/// Writes the GwBoot leaves of account `<name>` (the device itself writing).
pub fn write_provenance(tree: &mut Tree, name: &str, p: &Provenance) -> Result<(), TreeError> {
    tree.set_leaf(&leaf(name, "Origin"), p.origin.as_str(), Format::Chr)?;
    tree.set_leaf(
        &leaf(name, "Parent"),
        p.parent.as_deref().unwrap_or(""),
        Format::Chr,
    )?;
    tree.set_leaf(&leaf(name, "Trust"), p.trust.as_str(), Format::Chr)?;
    tree.set_leaf(
        &leaf(name, "LapseAt"),
        p.lapse_at.as_deref().unwrap_or(""),
        Format::Chr,
    )?;
    let confirmed = if p.confirmed { "true" } else { "false" };
    tree.set_leaf(&leaf(name, "Confirmed"), confirmed, Format::Bool)
}

/// The node name of the account whose ServerID is `server_id`.
pub fn account_of(tree: &Tree, server_id: &str) -> Option<String> {
    dm_accounts(tree)
        .into_iter()
        .find(|(_, account)| account.server_id == server_id)
        .map(|(name, _)| name)
}

impl Tree {
    /// The server whose rights `server_id` also has: the parent of a fully trusted or
    /// validated gateway account.
    pub(crate) fn delegate(&self, server_id: &str) -> Option<String> {
        let name = account_of(self, server_id)?;
        let provenance = provenance(self, &name);
        let trusted = matches!(provenance.trust, Trust::Full | Trust::Validated);
        let gateway = matches!(
            provenance.origin,
            Origin::ServerAssisted | Origin::LocalBootstrap
        );
        (trusted && gateway)
            .then_some(provenance.parent)
            .flatten()
            .filter(|parent| parent != server_id)
    }
}
