//! The device's own record of where each DM account came from (docs/DECISIONS.md §3): keyed
//! by an identity that no server command can change (not the node name, not the
//! ServerID), written only by the device. The `Ext/GwBoot` leaves in the tree are a
//! read-only mirror of it (`gwboot.rs`); nothing a server writes there counts.
//!
//! An account the registry does not know is not trusted (fail closed).

use serde::{Deserialize, Serialize};

use crate::provenance::{Origin, Trust};

/// The identity of one account for as long as the device knows it. Given in
/// increasing order: an account with a smaller id was there first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountId(pub(crate) u64);

/// When an unconfirmed local bootstrap lapses: at its deadline on the wall clock or
/// when its budget, counted down with time the device measured, runs out, whichever
/// comes first. The budget keeps a clock that was ahead at bootstrap (and set right
/// later) from stretching the interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LapseBudget {
    /// Unix seconds on the device's clock when the bootstrap was applied, plus its interval.
    pub deadline_unix: i64,
    /// Milliseconds of the interval still left.
    pub remaining_ms: u64,
}

/// What the device knows of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub(crate) id: AccountId,
    /// Its node under ./DMAcc; `None` once a command removed it (the record stays
    /// while accounts it bootstrapped or a lapse still depend on it).
    pub(crate) node: Option<String>,
    /// Its ServerID as last seen.
    pub(crate) server_id: String,
    pub(crate) origin: Origin,
    /// The account that bootstrapped it, or (validated) the server that vouched for it.
    pub(crate) parent: Option<AccountId>,
    pub(crate) trust: Trust,
    /// Set while an unconfirmed local bootstrap may lapse.
    pub(crate) lapse: Option<LapseBudget>,
    /// Nodes outside ./DMAcc this (restricted) account created: they go when it lapses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) created: Vec<String>,
}

/// How far the server behind an account may act on the device's accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Bound only by ACLs. `validator`: a server bootstrapped before any gateway
    /// (factory, or added by one), which may validate a later local bootstrap.
    /// `delegate`: the server whose rights it shares (a fully trusted gateway).
    Trusted {
        validator: bool,
        delegate: Option<AccountId>,
    },
    /// A local bootstrap not validated yet, or an account that came through one: it
    /// changes only itself and the accounts it made.
    Restricted,
    /// Not on record, or not one account: changes nothing under ./DMAcc.
    Untrusted,
}

/// Every account record of a device, and the clock its lapse budgets count with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub(crate) next_id: u64,
    pub(crate) records: Vec<Record>,
    /// Unix seconds of the last lapse accounting: time passed since then while the
    /// device was off is counted from the wall clock (never backwards).
    #[serde(default)]
    pub(crate) checkpoint_unix: Option<i64>,
}

impl Registry {
    pub(crate) fn insert(&mut self, mut record: Record) -> AccountId {
        let id = AccountId(self.next_id);
        self.next_id += 1;
        record.id = id;
        self.records.push(record);
        id
    }

    pub(crate) fn get(&self, id: AccountId) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: AccountId) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.id == id)
    }

    /// The live record of the account at node `name`.
    pub(crate) fn at_node(&self, name: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.node.as_deref() == Some(name))
    }

    /// The ancestors of `id` on record, nearest first (a broken or cyclic lineage ends
    /// where it breaks).
    fn lineage(&self, id: AccountId) -> impl Iterator<Item = &Record> {
        let mut next = self.get(id);
        let mut steps = 0;
        std::iter::from_fn(move || {
            let record = next?;
            steps += 1;
            next = (steps <= self.records.len())
                .then(|| record.parent.and_then(|p| self.get(p)))
                .flatten();
            Some(record)
        })
    }

    /// Whether `id` is `ancestor` or came (transitively) through it.
    pub(crate) fn descends_from(&self, id: AccountId, ancestor: AccountId) -> bool {
        self.lineage(id).any(|r| r.id == ancestor)
    }

    /// `root` and every record that came through it.
    pub(crate) fn subtree(&self, root: AccountId) -> Vec<AccountId> {
        self.records
            .iter()
            .filter(|r| self.descends_from(r.id, root))
            .map(|r| r.id)
            .collect()
    }

    pub(crate) fn standing(&self, id: AccountId) -> Standing {
        let Some(record) = self.get(id) else {
            return Standing::Untrusted;
        };
        let parent = || {
            record
                .parent
                .filter(|p| *p != id)
                .map_or(Standing::Untrusted, |p| self.standing_below(p, id))
        };
        match record.origin {
            Origin::Factory => Standing::Trusted {
                validator: true,
                delegate: None,
            },
            Origin::Server => match parent() {
                Standing::Trusted {
                    validator: true, ..
                } => Standing::Trusted {
                    validator: true,
                    delegate: None,
                },
                other => demote(other),
            },
            Origin::ServerAssisted => match parent() {
                Standing::Trusted { .. } => Standing::Trusted {
                    validator: false,
                    delegate: record.parent,
                },
                other => demote(other),
            },
            Origin::LocalBootstrap => match (record.trust, parent()) {
                (
                    Trust::Validated,
                    Standing::Trusted {
                        validator: true, ..
                    },
                ) => Standing::Trusted {
                    validator: false,
                    delegate: record.parent,
                },
                _ => Standing::Restricted,
            },
            Origin::ViaGateway => demote(parent()),
        }
    }

    /// The standing of `parent` as seen from its child `child` (a parent that is younger
    /// than its child, which only a corrupted record can show, is not trusted).
    fn standing_below(&self, parent: AccountId, child: AccountId) -> Standing {
        if parent >= child {
            return Standing::Untrusted;
        }
        self.standing(parent)
    }

    /// The local bootstrap whose lapse `id` is bound to: itself or its nearest
    /// unconfirmed ancestor that may still lapse.
    pub(crate) fn lapsing_root(&self, id: AccountId) -> Option<&Record> {
        self.lineage(id).find(|r| r.lapse.is_some())
    }

    /// Drops removed records nothing depends on any more: no record names them as
    /// parent, and no pending lapse still has to take back what they were given.
    pub(crate) fn forget_removed(&mut self) {
        loop {
            let unused = self.records.iter().position(|r| {
                r.node.is_none()
                    && self.lapsing_root(r.id).is_none()
                    && !self.records.iter().any(|c| c.parent == Some(r.id))
            });
            match unused {
                Some(index) => {
                    self.records.remove(index);
                }
                None => return,
            }
        }
    }
}

/// What an account that came through another keeps of its standing: no delegation,
/// no validating.
fn demote(standing: Standing) -> Standing {
    match standing {
        Standing::Trusted { .. } => Standing::Trusted {
            validator: false,
            delegate: None,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(origin: Origin, parent: Option<u64>, trust: Trust) -> Record {
        Record {
            id: AccountId(0),
            node: Some("n".into()),
            server_id: "s".into(),
            origin,
            parent: parent.map(AccountId),
            trust,
            lapse: None,
            created: Vec::new(),
        }
    }

    #[test]
    fn standing_follows_the_lineage() {
        let mut registry = Registry::default();
        let factory = registry.insert(record(Origin::Factory, None, Trust::Full));
        let local = registry.insert(record(Origin::LocalBootstrap, None, Trust::Restricted));
        let via = registry.insert(record(Origin::ViaGateway, Some(local.0), Trust::Full));
        let via_via = registry.insert(record(Origin::ViaGateway, Some(via.0), Trust::Full));
        assert!(matches!(
            registry.standing(factory),
            Standing::Trusted {
                validator: true,
                ..
            }
        ));
        for restricted in [local, via, via_via] {
            assert_eq!(registry.standing(restricted), Standing::Restricted);
        }
        let record = registry.get_mut(local).unwrap();
        record.trust = Trust::Validated;
        record.parent = Some(factory);
        assert_eq!(
            registry.standing(local),
            Standing::Trusted {
                validator: false,
                delegate: Some(factory)
            }
        );
        assert_eq!(
            registry.standing(via_via),
            Standing::Trusted {
                validator: false,
                delegate: None
            }
        );
        assert_eq!(registry.subtree(local), vec![local, via, via_via]);
    }

    #[test]
    fn unknown_and_corrupt_lineages_are_not_trusted() {
        let mut registry = Registry::default();
        assert_eq!(registry.standing(AccountId(7)), Standing::Untrusted);
        // A server-assisted account whose parent is younger than itself.
        let assisted = registry.insert(record(Origin::ServerAssisted, Some(1), Trust::Full));
        registry.insert(record(Origin::Factory, None, Trust::Full));
        assert_eq!(registry.standing(assisted), Standing::Untrusted);
        // A cycle ends.
        let a = registry.insert(record(Origin::ViaGateway, Some(3), Trust::Full));
        registry.insert(record(Origin::ViaGateway, Some(a.0), Trust::Full));
        assert_eq!(registry.standing(a), Standing::Untrusted);
    }
}
