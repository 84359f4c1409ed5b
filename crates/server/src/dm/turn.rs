//! Turns at a one-connection store (SQLite), and the commits they share. A message
//! waits for its turn without holding its worker (two workers contending for the
//! connection's lock spun and slept on it), does all its store work in its turn, and
//! joins the open batch with it ([`Batches`]). Whoever finishes while nobody waits
//! for the turn commits the batch for all of its members; a member that leaves the
//! commit to a later one is answered only once the batch has committed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};

use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::batch::{Batches, Joined};

/// The most messages one commit covers: each waits for the last, so this bounds how
/// long a busy server holds an answer back.
const MAX_MEMBERS: usize = 64;

/// How long a member waits for a later one to commit its batch before it takes a turn
/// and commits the batch itself: only when the message it counted on gave up waiting
/// (its connection gone) and no other came.
const COMMIT_ITSELF_AFTER: Duration = Duration::from_millis(50);

/// The turns at the store.
#[derive(Default)]
pub(super) struct StoreTurns {
    turn: Mutex<()>,
    /// Messages waiting for the turn.
    waiting: AtomicUsize,
}

/// A message's turn: it holds the store until [`Turn::finish`].
pub(super) struct Turn<'a> {
    held: MutexGuard<'a, ()>,
    turns: &'a StoreTurns,
}

/// Counts a message as waiting for the turn for as long as it does, also if it gives
/// up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StoreTurns {
    /// Waits for the turn.
    pub(super) async fn take(&self) -> Turn<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(&self.waiting);
        let held = self.turn.lock().await;
        drop(waiting);
        Turn { held, turns: self }
    }
}

impl Turn<'_> {
    /// Ends the turn of a message whose store work joined `joined`: it commits the
    /// batch if nobody waits for the turn or the batch is full, and otherwise leaves
    /// the commit to a later member and waits for it. `Ok` once the batch committed.
    pub(super) async fn finish(
        self,
        batches: &dyn Batches,
        joined: Joined,
        metrics: &Metrics,
    ) -> Result<(), StoreError> {
        let turns = self.turns;
        let mut ends = batches.ends();
        if joined.members >= MAX_MEMBERS || turns.waiting.load(Ordering::SeqCst) == 0 {
            // A call from outside may have ended the batch already, and not committed
            // it: what the ledger says is what counts.
            let committed = commit(batches, metrics);
            let ended = ends.borrow().committed(joined.id);
            return kept(ended, joined).map_err(|lost| committed.err().unwrap_or(lost));
        }
        drop(self.held);
        loop {
            // What the ledger says, read out at once: its guard must not be held over
            // an await.
            let ended = tokio::time::timeout(
                COMMIT_ITSELF_AFTER,
                ends.wait_for(|ends| ends.committed(joined.id).is_some()),
            )
            .await
            .map(|ends| ends.map(|ends| ends.committed(joined.id)));
            match ended {
                Ok(Ok(ended)) => return kept(ended, joined),
                // The store is gone, and the batch with it.
                Ok(Err(_)) => return kept(None, joined),
                Err(_) => {
                    let _turn = turns.turn.lock().await;
                    // Whatever batch is open now (this one, or a later one with no
                    // member running): committing it early loses nothing.
                    let _ = commit(batches, metrics);
                }
            }
        }
    }
}

/// Commits the open batch, counting the commit and its time.
fn commit(batches: &dyn Batches, metrics: &Metrics) -> Result<bool, StoreError> {
    let started = Instant::now();
    let committed = batches.commit();
    if let Ok(true) = committed {
        metrics.store_commit(started.elapsed());
    }
    committed
}

/// Whether the member's work is kept, from how its batch ended (`None`: unknown).
fn kept(ended: Option<bool>, joined: Joined) -> Result<(), StoreError> {
    match ended {
        Some(true) => Ok(()),
        _ => Err(StoreError::BatchLost(joined.id)),
    }
}
