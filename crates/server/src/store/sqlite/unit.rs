//! A unit of work on the store's one connection, as an SQLite savepoint. Outermost it
//! is a transaction of its own; inside a group ([`crate::store::Store::group`]) it
//! nests, so that the group commits once, and a unit that fails undoes only itself.
//! A unit that writes with one statement needs no savepoint: SQLite undoes a statement
//! that fails by itself.

use std::ops::Deref;

use rusqlite::Connection;

use super::rows::CachedStatements;
use crate::store::StoreError;

/// Open until [`Unit::commit`]; dropped uncommitted (an error, a panic), it is undone.
pub(super) struct Unit<'c> {
    connection: &'c Connection,
    open: bool,
}

impl<'c> Unit<'c> {
    pub(super) fn begin(connection: &'c Connection) -> Result<Unit<'c>, StoreError> {
        connection.run_cached("SAVEPOINT unit", [])?;
        Ok(Unit {
            connection,
            open: true,
        })
    }

    /// A unit that changes the store with `writes` statements (reads do not count):
    /// one opens no savepoint, which spares a DM message two statements and the copy
    /// of every page its write changes into the savepoint's journal.
    pub(super) fn of_writes(
        connection: &'c Connection,
        writes: usize,
    ) -> Result<Unit<'c>, StoreError> {
        match writes {
            0 | 1 => Ok(Unit {
                connection,
                open: false,
            }),
            _ => Unit::begin(connection),
        }
    }

    /// Keeps what the unit wrote: committed, unless a group around it is still open.
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        if self.open {
            self.connection.run_cached("RELEASE unit", [])?;
            self.open = false;
        }
        Ok(())
    }
}

impl Deref for Unit<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection
    }
}

impl Drop for Unit<'_> {
    fn drop(&mut self) {
        if self.open
            && self
                .connection
                .execute_batch("ROLLBACK TO unit; RELEASE unit")
                .is_err()
            && !self.connection.is_autocommit()
        {
            // A savepoint left open would hold every later unit on this long-lived
            // connection in a transaction that never commits: the whole transaction
            // goes instead (an enclosing group loses its calls, and fails its commit).
            let _ = self.connection.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(connection: &Connection) -> i64 {
        connection
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_unit_dropped_uncommitted_undoes_only_itself_inside_its_group() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t (x)").unwrap();
        let group = Unit::begin(&connection).unwrap();
        let kept = Unit::begin(&connection).unwrap();
        kept.execute("INSERT INTO t VALUES (1)", []).unwrap();
        kept.commit().unwrap();
        let failed = Unit::begin(&connection).unwrap();
        failed.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(failed);
        assert!(!connection.is_autocommit(), "the group is still open");
        group.commit().unwrap();
        assert!(connection.is_autocommit());
        assert_eq!(count(&connection), 1);
    }

    #[test]
    fn a_unit_of_one_write_opens_no_savepoint_and_its_failed_write_undoes_only_itself() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (x UNIQUE)")
            .unwrap();
        let single = Unit::of_writes(&connection, 1).unwrap();
        assert!(single.is_autocommit(), "no savepoint, so no transaction");
        single.commit().unwrap();
        let several = Unit::of_writes(&connection, 2).unwrap();
        assert!(!several.is_autocommit(), "a savepoint for several writes");
        drop(several);
        let group = Unit::begin(&connection).unwrap();
        group.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let single = Unit::of_writes(&connection, 1).unwrap();
        single
            .execute("INSERT INTO t VALUES (2), (1)", [])
            .unwrap_err();
        drop(single);
        assert!(!connection.is_autocommit(), "the group is still open");
        group.commit().unwrap();
        assert_eq!(count(&connection), 1, "the failed write left nothing");
    }

    #[test]
    fn a_group_dropped_uncommitted_leaves_nothing_of_its_units() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch("CREATE TABLE t (x)").unwrap();
        let group = Unit::begin(&connection).unwrap();
        let unit = Unit::begin(&connection).unwrap();
        unit.execute("INSERT INTO t VALUES (1)", []).unwrap();
        unit.commit().unwrap();
        drop(group);
        assert_eq!(count(&connection), 0);
    }
}
