//! The lapse of a local Gateway Bootstrap (seed 8.x.2): unless the device and the
//! gateway complete a management session within the interval, the gateway's account
//! goes, with every account that came through it (following the recorded lineage, not
//! names), the nodes they created and every right an ACL gave them.
//!
//! Time comes in as a parameter: the wall clock, and how much time the device
//! measured since it last asked (a monotonic clock while it runs; the wall clock since
//! the last checkpoint across a restart, never counted backwards).

use std::time::Duration;

use crate::TreeError;
use crate::dmacc::account_of;
use crate::node::Node;
use crate::tree::Tree;

/// How much time passed since the device last accounted for lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elapsed {
    /// Measured by the running device on a clock that does not jump.
    Measured(Duration),
    /// Unknown (the device was off): taken from the wall clock since the last
    /// checkpoint, or nothing if that clock is now behind it.
    SinceCheckpoint,
}

impl Tree {
    /// Counts `elapsed` off every pending lapse and removes the bootstraps that are
    /// due: their budget ran out or their deadline passed on the wall clock
    /// (`now_unix`). Returns the ServerIDs removed.
    pub fn lapse(&mut self, now_unix: i64, elapsed: Elapsed) -> Vec<String> {
        let registry = &mut self.registry;
        let elapsed_ms = match elapsed {
            Elapsed::Measured(duration) => u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            Elapsed::SinceCheckpoint => registry.checkpoint_unix.map_or(0, |at| {
                now_unix
                    .saturating_sub(at)
                    .max(0)
                    .unsigned_abs()
                    .saturating_mul(1000)
            }),
        };
        registry.checkpoint_unix = Some(now_unix);
        for lapse in registry.records.iter_mut().filter_map(|r| r.lapse.as_mut()) {
            lapse.remaining_ms = lapse.remaining_ms.saturating_sub(elapsed_ms);
        }
        let due: Vec<_> = registry
            .records
            .iter()
            .filter(|r| {
                r.lapse
                    .is_some_and(|l| l.remaining_ms == 0 || l.deadline_unix <= now_unix)
            })
            .map(|r| r.id)
            .collect();
        let mut removed = Vec::new();
        for root in due {
            removed.extend(self.remove_lineage(root));
        }
        if !removed.is_empty() {
            self.refresh_mirrors();
        }
        removed
    }

    /// How long until the next lapse at the latest, on either clock.
    pub fn next_lapse(&self, now_unix: i64) -> Option<Duration> {
        self.registry
            .records
            .iter()
            .filter_map(|r| r.lapse)
            .map(|l| {
                let by_wall = l
                    .deadline_unix
                    .saturating_sub(now_unix)
                    .max(0)
                    .unsigned_abs();
                Duration::from_millis(l.remaining_ms.min(by_wall.saturating_mul(1000)))
            })
            .min()
    }

    /// A management session with gateway `server_id` was completed: its bootstrap no
    /// longer lapses. Returns whether there was a lapse to stop.
    pub fn confirm_gateway(&mut self, server_id: &str) -> Result<bool, TreeError> {
        let Some(node) = account_of(self, server_id) else {
            return Ok(false);
        };
        let Some(id) = self.registry.at_node(&node).map(|r| r.id) else {
            return Ok(false);
        };
        let confirmed = self
            .registry
            .get_mut(id)
            .and_then(|record| record.lapse.take())
            .is_some();
        if confirmed {
            self.refresh_mirrors();
        }
        Ok(confirmed)
    }

    /// Removes `root` and everything that came through it; returns their ServerIDs.
    fn remove_lineage(&mut self, root: crate::registry::AccountId) -> Vec<String> {
        let lineage = self.registry.subtree(root);
        let records: Vec<_> = self
            .registry
            .records
            .iter()
            .filter(|r| lineage.contains(&r.id))
            .cloned()
            .collect();
        self.registry.records.retain(|r| !lineage.contains(&r.id));
        for record in &records {
            if let Some(node) = &record.node {
                let _ = self.remove(&format!("{}/{node}", crate::dmacc::DMACC));
            }
            for path in &record.created {
                let _ = self.remove(path);
            }
        }
        let still_used: Vec<String> = crate::dmacc::account_server_ids(self)
            .into_iter()
            .map(|(_, server_id)| server_id.to_owned())
            .collect();
        let gone: Vec<String> = records
            .into_iter()
            .map(|r| r.server_id)
            .filter(|id| !id.is_empty() && !still_used.contains(id))
            .collect();
        revoke_everywhere(&mut self.root, &gone);
        self.registry.forget_removed();
        gone
    }
}

/// Takes every right any ACL in the subtree gives to `servers`.
fn revoke_everywhere(node: &mut Node, servers: &[String]) {
    if let Some(acl) = node.acl.as_mut() {
        for server in servers {
            acl.revoke(server);
        }
    }
    if let Some(children) = node.children_mut() {
        for child in children.values_mut() {
            revoke_everywhere(child, servers);
        }
    }
}
