//! How many records a listing holds in all (the `total` every listing answers with),
//! written once for both backends.

use super::sql::{Bound, SqlRunner};
use super::{AuditFilter, CommandState, EventFilter, StoreError};

/// The totals of a store's listings.
pub struct Counts<'a>(pub &'a dyn SqlRunner);

impl Counts<'_> {
    fn count(&self, sql: &str, params: &[Bound]) -> Result<u64, StoreError> {
        let rows = self.0.rows(sql, params)?;
        let count = rows
            .first()
            .and_then(|row| row.first())
            .and_then(|cell| cell.int());
        Ok(count.unwrap_or(0) as u64)
    }

    /// What `/metrics` shows of the store, in one query.
    pub fn gauges(&self) -> Result<crate::metrics::Gauges, StoreError> {
        let rows = self.0.rows(
            "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM commands WHERE state = 'queued'),
                    (SELECT count(*) FROM gateways), (SELECT count(*) FROM campaigns WHERE state = 'running')",
            &[],
        )?;
        let cell = |at: usize| {
            rows.first()
                .and_then(|row| row.get(at))
                .and_then(|cell| cell.int())
                .unwrap_or(0) as u64
        };
        Ok(crate::metrics::Gauges {
            devices: cell(0),
            queued_commands: cell(1),
            gateways: cell(2),
            campaigns_running: cell(3),
        })
    }

    pub fn gateways(&self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM gateways", &[])
    }

    pub fn associations(&self, gateway_id: Option<&str>) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM associations WHERE (CAST(?1 AS TEXT) IS NULL OR gateway_id = ?1)",
            &[Bound::text_or_null(gateway_id.map(str::to_owned))],
        )
    }

    pub fn commands(&self, dev_id: &str, state: Option<CommandState>) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM commands WHERE dev_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)",
            &[
                Bound::Text(dev_id.to_owned()),
                Bound::text_or_null(state.map(|s| s.as_str().to_owned())),
            ],
        )
    }

    pub fn fanouts(&self, gateway_id: Option<&str>) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM fanouts WHERE (CAST(?1 AS TEXT) IS NULL OR gateway_id = ?1)",
            &[Bound::text_or_null(gateway_id.map(str::to_owned))],
        )
    }

    pub fn events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM events WHERE (CAST(?1 AS TEXT) IS NULL OR kind = ?1) AND (CAST(?2 AS TEXT) IS NULL OR dev_id = ?2)",
            &[
                Bound::text_or_null(filter.kind.clone()),
                Bound::text_or_null(filter.dev_id.clone()),
            ],
        )
    }

    pub fn audit(&self, filter: &AuditFilter) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM audit WHERE (CAST(?1 AS TEXT) IS NULL OR operator = ?1)
               AND (CAST(?2 AS BIGINT) = 0 OR status IN (401, 403))",
            &[
                Bound::text_or_null(filter.operator.clone()),
                Bound::Int(i64::from(filter.refused)),
            ],
        )
    }

    pub fn campaigns(&self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM campaigns", &[])
    }

    pub fn campaign_targets(
        &self,
        id: i64,
        wave: Option<i64>,
        state: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM campaign_devices WHERE campaign_id = ?1
               AND (CAST(?2 AS BIGINT) < 0 OR wave = ?2) AND (?3 = '' OR state = ?3)",
            &[
                Bound::Int(id),
                Bound::Int(wave.unwrap_or(-1)),
                Bound::Text(state.unwrap_or("").to_owned()),
            ],
        )
    }
}
