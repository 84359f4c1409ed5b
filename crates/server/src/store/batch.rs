//! Group commit: where the backend has one connection (SQLite), DM messages that take
//! their turns at it back to back put their work in one transaction, and each is
//! answered only once that transaction has committed. A commit costs as much for one
//! message as for ten (its WAL frames, the pages several messages share), so a batch
//! costs each message a fraction of it.
//!
//! The backend keeps a batch open only for its members: any call made outside one (the
//! admin API, a sweep, an embedding gateway) commits the open batch before it runs, so
//! nothing but a member's work is ever in it. How each batch ended is published in
//! [`BatchEnds`], for the members waiting on it.

use std::collections::VecDeque;

use tokio::sync::watch;

use super::StoreError;

/// The batch a member's work joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// Which batch: batches are numbered from 1, in the order they open.
    pub id: u64,
    /// How many members it has, this one included.
    pub members: usize,
}

/// Work that shares commits with other work (see the module's doc).
pub trait Batches: Send + Sync {
    /// Runs `work` inside the open batch, opening one if none is: the calls it makes
    /// commit when the batch does, and no sooner. Each call stays whole on its own, as
    /// in [`super::Store::group`]. `work` runs exactly once.
    fn join(&self, work: &mut dyn FnMut()) -> Result<Joined, StoreError>;
    /// Commits the open batch, if one is (`Ok(false)`: none was): `Err` if it could
    /// not, in which case none of its members' work is kept.
    fn commit(&self) -> Result<bool, StoreError>;
    /// How the batches ended, to wait on.
    fn ends(&self) -> watch::Receiver<BatchEnds>;
}

/// Failed batches remembered for the members still to read how theirs ended: far
/// more than can wait at once (a member reads within microseconds of the end).
const FAILURES_KEPT: usize = 64;

/// How the batches ended: all up to [`BatchEnds::through`] did, the listed ones without
/// committing.
#[derive(Debug, Clone, Default)]
pub struct BatchEnds {
    through: u64,
    failed: VecDeque<u64>,
    /// Failures before this one were forgotten: a batch up to it that is not listed may
    /// have failed too.
    forgotten_through: u64,
}

impl BatchEnds {
    /// Whether batch `id` committed; `None` while it is open.
    pub fn committed(&self, id: u64) -> Option<bool> {
        if id > self.through {
            return None;
        }
        // What cannot be known to have committed did not.
        Some(id > self.forgotten_through && !self.failed.contains(&id))
    }

    /// Records that batch `id`, the newest, ended.
    pub(super) fn ended(&mut self, id: u64, committed: bool) {
        self.through = self.through.max(id);
        if !committed {
            if self.failed.len() == FAILURES_KEPT
                && let Some(oldest) = self.failed.pop_front()
            {
                self.forgotten_through = oldest;
            }
            self.failed.push_back(id);
        }
    }
}

/// The open batch of a one-connection backend, kept beside its connection and changed
/// only by whoever holds that.
#[derive(Debug, Default)]
pub(super) struct OpenBatch {
    /// The open batch and its members so far.
    open: Option<Joined>,
    /// Members running now (a member's work may nest store calls).
    running: u32,
    /// The number the next batch takes.
    last_id: u64,
}

impl OpenBatch {
    /// A call outside any member's work while a batch is open: the batch must commit
    /// before it runs.
    pub(super) fn must_end_before_a_foreign_call(&self) -> bool {
        self.open.is_some() && self.running == 0
    }

    /// Whether a member's work is running (the calls made now are part of it).
    pub(super) fn member_running(&self) -> bool {
        self.running > 0
    }

    /// A member starts: the batch it joins, and whether it opens it.
    pub(super) fn start_member(&mut self) -> (Joined, bool) {
        self.running += 1;
        match &mut self.open {
            Some(open) => {
                open.members += 1;
                (*open, false)
            }
            None => {
                self.last_id += 1;
                let opened = Joined {
                    id: self.last_id,
                    members: 1,
                };
                self.open = Some(opened);
                (opened, true)
            }
        }
    }

    pub(super) fn end_member(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    /// The batch to end, taken out: `None` if none is open or a member is running.
    pub(super) fn take_to_end(&mut self) -> Option<Joined> {
        match self.running {
            0 => self.open.take(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_open_until_it_ends_and_then_committed_or_not() {
        let mut ends = BatchEnds::default();
        assert_eq!(ends.committed(1), None);
        ends.ended(1, true);
        ends.ended(2, false);
        assert_eq!(ends.committed(1), Some(true));
        assert_eq!(ends.committed(2), Some(false));
        assert_eq!(ends.committed(3), None);
    }

    #[test]
    fn a_batch_whose_failure_may_have_been_forgotten_counts_as_failed() {
        let mut ends = BatchEnds::default();
        let last_failed = FAILURES_KEPT as u64 + 2;
        ends.ended(1, true);
        for id in 2..=last_failed {
            ends.ended(id, false);
        }
        ends.ended(last_failed + 1, true);
        // Batch 2's failure was forgotten for the later ones: neither it nor batch 1,
        // which committed, can be told apart from a failure any more.
        assert_eq!(ends.committed(2), Some(false));
        assert_eq!(ends.committed(1), Some(false), "fails closed");
        assert_eq!(ends.committed(last_failed), Some(false));
        assert_eq!(ends.committed(last_failed + 1), Some(true));
    }

    #[test]
    fn members_join_the_open_batch_and_a_foreign_call_ends_it_only_between_them() {
        let mut open = OpenBatch::default();
        assert!(!open.must_end_before_a_foreign_call());
        let (first, opened) = open.start_member();
        assert!(opened);
        assert!(
            !open.must_end_before_a_foreign_call(),
            "a member is running"
        );
        assert_eq!(open.take_to_end(), None, "not while a member runs");
        open.end_member();
        let (second, opened) = open.start_member();
        assert!(!opened);
        assert_eq!(
            second,
            Joined {
                id: first.id,
                members: 2
            }
        );
        open.end_member();
        assert!(open.must_end_before_a_foreign_call());
        assert_eq!(open.take_to_end(), Some(second));
        let (third, opened) = open.start_member();
        assert!(opened);
        assert_eq!(
            third,
            Joined {
                id: first.id + 1,
                members: 1
            }
        );
    }
}
