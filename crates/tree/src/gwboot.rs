//! Bootstrap provenance of DM accounts (`./DMAcc/<X>/Ext/GwBoot`, DESIGN.md §3) and
//! the trust it gives a gateway.
//!
//! A gateway account of trust `full` (server assisted) or `validated` acts with the
//! rights of the server that bootstrapped it (`Parent`): that is how the seed's "the DM
//! Gateway MAY make changes to pre-existing DMAcc objects" holds on a device whose ACLs
//! name only its factory servers. A `restricted` gateway has only what ACLs give it.

use crate::TreeError;
use crate::acl::{Acl, Op};
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
    tree.set_leaf(&leaf(name, "Confirmed"), confirmed, Format::Bool)?;
    // Where an account came from and how far it is trusted is no secret: every server
    // may read it (the DM Server shows it to its operator), whoever may change it.
    // The rights it had by inheritance stay as they were.
    let provenance = format!("{DMACC}/{name}/Ext/GwBoot");
    let segments = ["DMAcc", name, "Ext", "GwBoot"];
    let mut acl = tree.effective_acl(&segments).cloned().unwrap_or_default();
    acl.grant(Op::Get, "*");
    tree.set_acl(&provenance, acl)?;
    // Validation (Trust := validated) is open to every server as far as ACLs go: the
    // trust rule (`Tree::trust_permits_change`) lets only servers that predate the
    // gateway write it.
    let mut trust = Acl::granting("*", &[Op::Get]);
    trust.grant(Op::Replace, "*");
    tree.set_acl(&leaf(name, "Trust"), trust)
}

/// The node name of the account whose ServerID is `server_id`.
pub fn account_of(tree: &Tree, server_id: &str) -> Option<String> {
    dm_accounts(tree)
        .into_iter()
        .find(|(_, account)| account.server_id == server_id)
        .map(|(name, _)| name)
}

/// The accounts that lapse with gateway `server_id`: those it bootstrapped, and theirs.
fn descendants(tree: &Tree, server_id: &str) -> Vec<String> {
    let accounts = dm_accounts(tree);
    let mut lapsing = Vec::new();
    let mut parents = vec![server_id.to_owned()];
    while let Some(parent) = parents.pop() {
        for (name, account) in &accounts {
            let p = provenance(tree, name);
            if p.origin == Origin::ViaGateway
                && p.parent.as_deref() == Some(parent.as_str())
                && !lapsing.contains(name)
            {
                lapsing.push(name.clone());
                parents.push(account.server_id.clone());
            }
        }
    }
    lapsing
}

impl Tree {
    /// Whether `server_id` may change the node at `segments` as far as gateway trust
    /// goes (ACLs are checked separately):
    /// - GwBoot provenance is written only by servers whose own account predates any
    ///   gateway (origin factory or server): a gateway never validates itself, and no
    ///   other server may;
    /// - a gateway that is not fully trusted (`restricted`) may not change DMAcc objects
    ///   that existed before its bootstrap: only its own account and the ones it made.
    pub(crate) fn trust_permits_change(&self, server_id: &str, segments: &[&str]) -> bool {
        let [dmacc, account, rest @ ..] = segments else {
            return true;
        };
        if *dmacc != &DMACC[2..] {
            return true;
        }
        let writer = account_of(self, server_id).map(|name| provenance(self, &name));
        if let [ext, gwboot, ..] = rest
            && *ext == "Ext"
            && *gwboot == "GwBoot"
        {
            return writer.is_some_and(|w| matches!(w.origin, Origin::Factory | Origin::Server));
        }
        let Some(writer) = writer else {
            return true;
        };
        if writer.trust != Trust::Restricted {
            return true;
        }
        let own = account_of(self, server_id).as_deref() == Some(*account);
        let target = format!("{DMACC}/{account}");
        let made_by_writer = || {
            let p = provenance(self, account);
            p.origin == Origin::ViaGateway && p.parent.as_deref() == Some(server_id)
        };
        own || !self.exists(&target) || made_by_writer()
    }

    /// An account a gateway creates is recorded as bootstrapped via that gateway.
    pub(crate) fn record_via_gateway(&mut self, server_id: &str, created: &[&str]) {
        let [dmacc, account] = created else {
            return;
        };
        if *dmacc != &DMACC[2..] {
            return;
        }
        let Some(writer) = account_of(self, server_id) else {
            return;
        };
        if !matches!(
            provenance(self, &writer).origin,
            Origin::ServerAssisted | Origin::LocalBootstrap | Origin::ViaGateway
        ) {
            return;
        }
        let via = Provenance {
            origin: Origin::ViaGateway,
            parent: Some(server_id.to_owned()),
            trust: Trust::Full,
            lapse_at: None,
            confirmed: true,
        };
        // The account node was just created under ./DMAcc: these writes cannot fail.
        let _ = write_provenance(self, account, &via);
    }

    /// After a server set a gateway account's Trust: the server that validated a local
    /// bootstrap becomes its Parent, whose rights the now fully trusted gateway shares.
    pub(crate) fn record_validator(&mut self, server_id: &str, segments: &[&str]) {
        let [dmacc, account, "Ext", "GwBoot", "Trust"] = segments else {
            return;
        };
        if *dmacc != &DMACC[2..] {
            return;
        }
        let mut p = provenance(self, account);
        if p.trust == Trust::Validated && p.parent.is_none() {
            p.parent = Some(server_id.to_owned());
            // The account exists (its Trust leaf was just replaced): cannot fail.
            let _ = write_provenance(self, account, &p);
        }
    }

    /// Removes every local gateway bootstrap whose deadline has passed unconfirmed,
    /// with all the accounts that came via it. `now` is RFC 3339 UTC
    /// (`YYYY-MM-DDTHH:MM:SSZ`), compared as text with `LapseAt` in the same form.
    /// Returns the ServerIDs removed.
    pub fn lapse(&mut self, now: &str) -> Vec<String> {
        let due: Vec<(String, String)> = dm_accounts(self)
            .into_iter()
            .filter(|(name, _)| {
                let p = provenance(self, name);
                !p.confirmed && p.lapse_at.as_deref().is_some_and(|at| at <= now)
            })
            .map(|(name, account)| (name, account.server_id))
            .collect();
        let mut removed = Vec::new();
        for (name, server_id) in due {
            for child in descendants(self, &server_id) {
                if let Some(id) = self
                    .value(&format!("{DMACC}/{child}/ServerID"))
                    .map(str::to_owned)
                {
                    removed.push(id);
                }
                let _ = self.remove(&format!("{DMACC}/{child}"));
            }
            let _ = self.remove(&format!("{DMACC}/{name}"));
            removed.push(server_id);
        }
        removed
    }

    /// A management session with gateway `server_id` was completed: its bootstrap no
    /// longer lapses.
    pub fn confirm_gateway(&mut self, server_id: &str) -> Result<bool, TreeError> {
        let Some(name) = account_of(self, server_id) else {
            return Ok(false);
        };
        let mut p = provenance(self, &name);
        if p.confirmed || p.lapse_at.is_none() {
            return Ok(false);
        }
        p.confirmed = true;
        p.lapse_at = None;
        write_provenance(self, &name, &p)?;
        Ok(true)
    }

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
