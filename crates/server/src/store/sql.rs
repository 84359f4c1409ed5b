//! Plain SQL that both backends run as it is: statements written once with `?N`
//! placeholders (PostgreSQL's spelling, `$N`, is made from them), values bound as
//! [`Bound`], rows read back as [`Cell`]s. For what needs no backend-specific
//! feature (campaigns), so that its logic is written once.

use super::StoreError;
pub use super::filter::{Bound, Dialect};

/// One value of a row read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(text) => Some(text),
            _ => None,
        }
    }
}

fn unexpected(what: &str, at: usize) -> StoreError {
    StoreError::Corrupt(format!("a stored row: {what} expected in column {at}"))
}

/// The number in column `at` of a row.
pub fn int(row: &[Cell], at: usize) -> Result<i64, StoreError> {
    row.get(at)
        .and_then(Cell::int)
        .ok_or_else(|| unexpected("a number", at))
}

/// The text in column `at` of a row.
pub fn text(row: &[Cell], at: usize) -> Result<String, StoreError> {
    row.get(at)
        .and_then(Cell::text)
        .map(str::to_owned)
        .ok_or_else(|| unexpected("a text", at))
}

pub fn optional_text(row: &[Cell], at: usize) -> Option<String> {
    row.get(at).and_then(Cell::text).map(str::to_owned)
}

pub fn optional_int(row: &[Cell], at: usize) -> Option<i64> {
    row.get(at).and_then(Cell::int)
}

/// Runs plain SQL on a backend.
pub trait SqlRunner {
    /// Runs one statement; returns how many rows it changed.
    fn run(&self, sql: &str, params: &[Bound]) -> Result<u64, StoreError>;
    /// Runs one query; returns its rows.
    fn rows(&self, sql: &str, params: &[Bound]) -> Result<Vec<Vec<Cell>>, StoreError>;
    /// How the backend spells what a device filter needs.
    fn dialect(&self) -> &'static Dialect;
}

/// `sql` with its `?N` placeholders as PostgreSQL writes them (`$N`); the SQL these
/// modules write holds no other question mark.
pub fn dollar_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}
