//! Bootstrap provenance of DM accounts (docs/DECISIONS.md §3) as servers see it: the
//! read-only mirror `./DMAcc/<X>/Ext/GwBoot/` of the device's own record
//! (`registry.rs`), the two writes a server may make through it (validating a local
//! bootstrap, declaring an account it created a server-assisted gateway), and the
//! rights a trusted gateway borrows from the server that vouched for it.
//!
//! A gateway of trust `full` (server assisted) or `validated` acts with the rights of
//! its `Parent`: that is how the seed's "the DM Gateway MAY make changes to
//! pre-existing DMAcc objects" holds on a device whose ACLs name only its factory
//! servers. A `restricted` gateway has only what ACLs give it, within what
//! `guard.rs` lets it change.

use gwmo_proto::codes::{StatusCode, status};

use crate::acl::{Acl, Op};
use crate::dmacc::{DMACC, account_of, account_server_ids};
use crate::node::{Format, Node};
use crate::provenance::{Origin, Trust};
use crate::registry::{AccountId, Record, Standing};
use crate::tree::Tree;

/// The mirror's place inside an account.
pub(crate) const MIRROR: [&str; 2] = ["Ext", "GwBoot"];

/// An account's provenance as the mirror shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub origin: Origin,
    /// The ServerID of the server that bootstrapped (or validated) this account.
    pub parent: Option<String>,
    /// As far as the lineage goes: an account that came through a restricted gateway
    /// is restricted too.
    pub trust: Trust,
    /// RFC 3339 deadline after which the account lapses; none once confirmed.
    pub lapse_at: Option<String>,
    pub confirmed: bool,
}

impl Provenance {
    fn fields(&self) -> [(&'static str, String, Format); 5] {
        [
            ("Origin", self.origin.as_str().into(), Format::Chr),
            (
                "Parent",
                self.parent.clone().unwrap_or_default(),
                Format::Chr,
            ),
            ("Trust", self.trust.as_str().into(), Format::Chr),
            (
                "LapseAt",
                self.lapse_at.clone().unwrap_or_default(),
                Format::Chr,
            ),
            ("Confirmed", self.confirmed.to_string(), Format::Bool),
        ]
    }
}

/// Reads the mirror of account `<node>` from a tree a device reported (the server's
/// view); `None` where the account shows none.
pub fn mirrored_provenance(tree: &Tree, node: &str) -> Option<Provenance> {
    let text = |field: &str| {
        tree.value(&format!("{DMACC}/{node}/Ext/GwBoot/{field}"))
            .filter(|v| !v.is_empty())
    };
    Some(Provenance {
        origin: Origin::parse(text("Origin")?)?,
        parent: text("Parent").map(str::to_owned),
        trust: Trust::parse(text("Trust")?)?,
        lapse_at: text("LapseAt").map(str::to_owned),
        confirmed: text("Confirmed") == Some("true"),
    })
}

/// RFC 3339 UTC to the second (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".into())
}

impl Tree {
    /// The provenance of the account of `server_id`, from the device's record; `None`
    /// for an account the device has no record of (which it does not trust).
    pub fn provenance_of(&self, server_id: &str) -> Option<Provenance> {
        let node = account_of(self, server_id)?;
        self.registry
            .at_node(&node)
            .map(|record| self.provenance(record))
    }

    fn provenance(&self, record: &Record) -> Provenance {
        let registry = &self.registry;
        let lapsing = registry.lapsing_root(record.id);
        let trust = match (record.origin, registry.standing(record.id)) {
            (Origin::LocalBootstrap, _) => record.trust,
            (_, Standing::Trusted { .. }) => Trust::Full,
            _ => Trust::Restricted,
        };
        Provenance {
            origin: record.origin,
            parent: record
                .parent
                .and_then(|p| registry.get(p))
                .map(|p| p.server_id.clone()),
            trust,
            lapse_at: lapsing
                .and_then(|r| r.lapse)
                .map(|l| rfc3339(l.deadline_unix)),
            confirmed: lapsing.is_none(),
        }
    }

    /// The record of the server behind `server_id` in a session: its one live account,
    /// else the account it had until it removed it in this session.
    pub(crate) fn writer(&self, server_id: &str) -> Option<AccountId> {
        let live: Vec<&str> = account_server_ids(self)
            .into_iter()
            .filter(|(_, id)| *id == server_id)
            .map(|(node, _)| node)
            .collect();
        match live.as_slice() {
            [node] => self.registry.at_node(node).map(|r| r.id),
            [] => self
                .registry
                .records
                .iter()
                .rev()
                .find(|r| r.node.is_none() && r.server_id == server_id)
                .map(|r| r.id),
            // Several accounts carry it: the writer is not one account.
            _ => None,
        }
    }

    pub(crate) fn standing_of(&self, server_id: &str) -> (Option<AccountId>, Standing) {
        let writer = self.writer(server_id);
        let standing = writer.map_or(Standing::Untrusted, |id| self.registry.standing(id));
        (writer, standing)
    }

    /// The server whose rights `server_id` also has: the parent of a fully trusted or
    /// validated gateway account.
    pub(crate) fn delegate(&self, server_id: &str) -> Option<String> {
        let Standing::Trusted {
            delegate: Some(parent),
            ..
        } = self.standing_of(server_id).1
        else {
            return None;
        };
        self.registry
            .get(parent)
            .map(|p| p.server_id.clone())
            .filter(|parent| parent != server_id)
    }

    /// Writes every live account's mirror from its record (after any change to the
    /// registry or to the accounts).
    pub(crate) fn refresh_mirrors(&mut self) {
        let mirrors: Vec<(String, Provenance)> = self
            .registry
            .records
            .iter()
            .filter_map(|r| Some((r.node.clone()?, self.provenance(r))))
            .collect();
        for (node, provenance) in mirrors {
            let Some(account) = self.node_at_mut(&["DMAcc", &node]) else {
                continue;
            };
            // The account is interior (it is on record): these cannot fail.
            let Some(children) = account.children_mut() else {
                continue;
            };
            let ext = children
                .entry(MIRROR[0].to_owned())
                .or_insert_with(Node::interior);
            if !ext.is_interior() {
                *ext = Node::interior();
            }
            if let Some(ext_children) = ext.children_mut() {
                ext_children.insert(MIRROR[1].to_owned(), mirror_node(&provenance));
            }
        }
    }

    /// A server's Add or Replace inside an account's mirror (`segments` =
    /// `DMAcc/<account>/Ext/GwBoot/<field>`): the two writes the device takes, into its
    /// record; anything else is refused.
    /// - Validation: `Trust` := `validated` on a local bootstrap, by a server that was
    ///   bootstrapped before it (factory, or added by one). No other server may, and a
    ///   gateway never validates itself.
    /// - Declaration: the server that created an account says it is a server-assisted
    ///   gateway (`Origin`), or restates what the mirror already shows.
    pub(crate) fn write_mirror(
        &mut self,
        server: &str,
        account: &str,
        field: &str,
        value: &str,
    ) -> Result<(), StatusCode> {
        if self.node_at(&["DMAcc", account]).is_none() {
            return Err(status::NOT_FOUND);
        }
        let (writer, standing) = self.standing_of(server);
        let (
            Some(writer),
            Standing::Trusted {
                validator: true, ..
            },
        ) = (writer, standing)
        else {
            return Err(status::PERMISSION_DENIED);
        };
        let record = self
            .registry
            .at_node(account)
            .ok_or(status::PERMISSION_DENIED)?
            .clone();
        let shown = self.provenance(&record);
        let local_bootstrap = record.origin == Origin::LocalBootstrap;
        let created_by_writer = record.parent == Some(writer)
            && matches!(record.origin, Origin::Server | Origin::ServerAssisted);
        let change = match field {
            "Trust"
                if value == Trust::Validated.as_str() && local_bootstrap && writer < record.id =>
            {
                Some((None, Some(Trust::Validated)))
            }
            "Origin" if created_by_writer => match Origin::parse(value) {
                Some(origin @ (Origin::Server | Origin::ServerAssisted)) => {
                    Some((Some(origin), None))
                }
                _ => None,
            },
            _ if created_by_writer || local_bootstrap && writer < record.id => shown
                .fields()
                .iter()
                .any(|(name, shown, _)| *name == field && shown == value)
                .then_some((None, None)),
            _ => None,
        };
        let (origin, trust) = change.ok_or(status::PERMISSION_DENIED)?;
        if let Some(entry) = self.registry.get_mut(record.id) {
            if let Some(origin) = origin {
                entry.origin = origin;
            }
            if let Some(trust) = trust {
                if entry.trust != trust {
                    entry.parent = Some(writer);
                }
                entry.trust = trust;
            }
        }
        self.refresh_mirrors();
        Ok(())
    }
}

/// The mirror node of one account: every server may read it, none write it.
fn mirror_node(provenance: &Provenance) -> Node {
    let mut node = Node::interior();
    node.acl = Some(Acl::granting("*", &[Op::Get]));
    if let Some(children) = node.children_mut() {
        for (name, value, format) in provenance.fields() {
            children.insert(name.to_owned(), Node::leaf(&value, format));
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_whole_seconds_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }
}
