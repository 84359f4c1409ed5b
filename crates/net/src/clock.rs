//! The wall clock, read in one place: the roles' I/O shells call it and hand the time
//! to the pure logic (sessions, lapse, the reconciler), which never reads it itself.

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
