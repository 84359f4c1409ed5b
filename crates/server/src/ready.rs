//! Whether this instance can serve (`/readyz`): its store answers, and the disk under
//! an SQLite store has room to grow. A load balancer or an orchestrator stops sending
//! it devices while it cannot; `/healthz` says only that the process is up.

use std::path::Path;

use serde::Serialize;

use crate::settings::ServerSettings;
use crate::store::{Store, is_shared};

/// What `/readyz` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or why the store does not answer.
    pub store: String,
    /// Free space on the disk under an SQLite store, in MiB (none for PostgreSQL, or
    /// when it cannot be read).
    pub free_disk_mib: Option<u64>,
    /// Why it is not ready.
    pub reasons: Vec<String>,
}

/// Checks the store with a query and the free space under an SQLite file.
pub fn check(store: &dyn Store, settings: &ServerSettings) -> Readiness {
    let mut reasons = Vec::new();
    let store_state = match store.sql().rows("SELECT 1", &[]) {
        Ok(_) => "ok".to_owned(),
        Err(error) => {
            reasons.push(format!("the store does not answer: {error}"));
            error.to_string()
        }
    };
    let free_disk_mib = match is_shared(&settings.database) {
        true => None,
        false => free_mib(Path::new(&settings.database)),
    };
    if let Some(free) = free_disk_mib
        && free < settings.ready_min_free_mib
    {
        reasons.push(format!(
            "{free} MiB free on the store's disk, under ready_min_free_mib ({})",
            settings.ready_min_free_mib
        ));
    }
    Readiness {
        ready: reasons.is_empty(),
        store: store_state,
        free_disk_mib,
        reasons,
    }
}

/// The space an unprivileged writer may still use on the file system holding `path`.
fn free_mib(path: &Path) -> Option<u64> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize) >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn a_store_that_answers_on_a_disk_with_room_is_ready_and_one_short_of_room_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("s.db");
        let store = SqliteStore::open(&database, 2).unwrap();
        let mut settings = ServerSettings {
            database: database.display().to_string(),
            ready_min_free_mib: 0,
            ..ServerSettings::default()
        };
        let ready = check(&store, &settings);
        assert!(ready.ready, "{ready:?}");
        assert_eq!(ready.store, "ok");
        let free = ready.free_disk_mib.unwrap();
        settings.ready_min_free_mib = free + 1_000_000;
        let full = check(&store, &settings);
        assert!(!full.ready);
        assert!(full.reasons[0].contains("ready_min_free_mib"), "{full:?}");
    }
}
