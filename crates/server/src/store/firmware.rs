//! What the store keeps of firmware: the artifacts operators uploaded (their bytes are
//! files in the artifact directory, named by id; the store holds what describes them)
//! and each firmware update sent to a device, followed through the FUMO states to the
//! result code its Generic Alert carried. Written once for both backends
//! ([`SqlRunner`]); the rules are in `crate::firmware`.

use super::StoreError;
use super::sql::{Bound, Cell, SqlRunner, int, optional_int, optional_text, text};

/// A migration both backends run as it is.
pub const FIRMWARE_MIGRATION: &str = r#"
    CREATE TABLE artifacts (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        version    TEXT NOT NULL,
        man        TEXT NOT NULL,
        model      TEXT NOT NULL,
        size       BIGINT NOT NULL,
        sha256     TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE firmware_updates (
        correlator  TEXT NOT NULL,
        dev_id      TEXT NOT NULL,
        artifact_id TEXT NOT NULL,
        command_id  BIGINT,
        fanout_id   BIGINT,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'accepted', 'succeeded', 'failed')),
        result      BIGINT,
        reason      TEXT,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (correlator, dev_id)
    );
    CREATE INDEX firmware_updates_by_device ON firmware_updates (dev_id, created_at);
    CREATE INDEX firmware_updates_by_command ON firmware_updates (command_id);
    CREATE INDEX firmware_updates_by_fanout ON firmware_updates (fanout_id);
    CREATE INDEX firmware_updates_by_artifact ON firmware_updates (artifact_id, state);
"#;

/// A firmware image as uploaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    /// 128 random bits in hex: also the name of its download URL, so that nobody who
    /// was not sent the URL guesses it.
    pub id: String,
    pub name: String,
    pub version: String,
    /// The Man and Mod (DevInfo) of the devices it is built for.
    pub man: String,
    pub model: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
}

/// What asking to forget an artifact came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
    /// Updates in flight use it: kept.
    InUse,
}

/// Where one device's firmware update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    /// Its command waits for the device's next session.
    Queued,
    /// The device answered 202 to the Exec: downloading and installing.
    Accepted,
    Succeeded,
    Failed,
}

impl UpdateState {
    pub const ALL: [UpdateState; 4] = [
        UpdateState::Queued,
        UpdateState::Accepted,
        UpdateState::Succeeded,
        UpdateState::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UpdateState::Queued => "queued",
            UpdateState::Accepted => "accepted",
            UpdateState::Succeeded => "succeeded",
            UpdateState::Failed => "failed",
        }
    }

    pub fn from_name(name: &str) -> Option<UpdateState> {
        UpdateState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One firmware update of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareUpdate {
    /// The Exec's correlator, which the device's Generic Alert carries back (one per
    /// update sent to a device, or per fan-out: the devices of one fan-out share it).
    pub correlator: String,
    pub dev_id: String,
    pub artifact_id: String,
    /// The queued command that carries it to the device, or
    pub command_id: Option<i64>,
    /// the fan-out that hands it to the device's gateway.
    pub fanout_id: Option<i64>,
    pub state: UpdateState,
    /// The FUMO result code the device reported.
    pub result: Option<i64>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ARTIFACT_COLUMNS: &str = "id, name, version, man, model, size, sha256, created_at";
const UPDATE_COLUMNS: &str = "correlator, dev_id, artifact_id, command_id, fanout_id, state, \
     result, reason, created_at, updated_at";

fn artifact_row(row: &[Cell]) -> Result<Artifact, StoreError> {
    Ok(Artifact {
        id: text(row, 0)?,
        name: text(row, 1)?,
        version: text(row, 2)?,
        man: text(row, 3)?,
        model: text(row, 4)?,
        size: int(row, 5)?,
        sha256: text(row, 6)?,
        created_at: int(row, 7)?,
    })
}

fn update_row(row: &[Cell]) -> Result<FirmwareUpdate, StoreError> {
    Ok(FirmwareUpdate {
        correlator: text(row, 0)?,
        dev_id: text(row, 1)?,
        artifact_id: text(row, 2)?,
        command_id: optional_int(row, 3),
        fanout_id: optional_int(row, 4),
        state: UpdateState::from_name(&text(row, 5)?)
            .ok_or_else(|| StoreError::Corrupt("a firmware update's state".into()))?,
        result: optional_int(row, 6),
        reason: optional_text(row, 7),
        created_at: int(row, 8)?,
        updated_at: int(row, 9)?,
    })
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending<'a> {
    pub state: UpdateState,
    /// The FUMO result code, when the device reported one.
    pub result: Option<i64>,
    pub reason: Option<&'a str>,
}

/// The firmware records of a store.
pub struct Firmware<'a>(pub &'a dyn SqlRunner);

impl Firmware<'_> {
    pub fn add_artifact(&self, artifact: &Artifact) -> Result<(), StoreError> {
        self.0.run(
            &format!(
                "INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            &[
                Bound::Text(artifact.id.clone()),
                Bound::Text(artifact.name.clone()),
                Bound::Text(artifact.version.clone()),
                Bound::Text(artifact.man.clone()),
                Bound::Text(artifact.model.clone()),
                Bound::Int(artifact.size),
                Bound::Text(artifact.sha256.clone()),
                Bound::Int(artifact.created_at),
            ],
        )?;
        Ok(())
    }

    pub fn artifact(&self, id: &str) -> Result<Option<Artifact>, StoreError> {
        self.0
            .rows(
                &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = ?1"),
                &[Bound::Text(id.to_owned())],
            )?
            .first()
            .map(|row| artifact_row(row))
            .transpose()
    }

    /// Every artifact, newest first.
    pub fn artifacts(&self) -> Result<Vec<Artifact>, StoreError> {
        self.0
            .rows(
                &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts ORDER BY created_at DESC, id"),
                &[],
            )?
            .iter()
            .map(|row| artifact_row(row))
            .collect()
    }

    /// Forgets an artifact, unless an update in flight uses it.
    pub fn remove_artifact(&self, id: &str) -> Result<Removal, StoreError> {
        let removed = self.0.run(
            "DELETE FROM artifacts WHERE id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM firmware_updates
                 WHERE artifact_id = ?1 AND state IN ('queued', 'accepted'))",
            &[Bound::Text(id.to_owned())],
        )?;
        Ok(match (removed > 0, self.artifact(id)?.is_some()) {
            (true, _) => Removal::Removed,
            (false, true) => Removal::InUse,
            (false, false) => Removal::NotFound,
        })
    }

    /// Records an update; one of the same correlator and device (a campaign's failed
    /// device sent again) starts over.
    pub fn add_update(&self, update: &FirmwareUpdate) -> Result<(), StoreError> {
        self.0.run(
            &format!(
                "INSERT INTO firmware_updates ({UPDATE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (correlator, dev_id) DO UPDATE SET
                     artifact_id = excluded.artifact_id, command_id = excluded.command_id,
                     fanout_id = excluded.fanout_id, state = excluded.state,
                     result = excluded.result, reason = excluded.reason,
                     updated_at = excluded.updated_at"
            ),
            &[
                Bound::Text(update.correlator.clone()),
                Bound::Text(update.dev_id.clone()),
                Bound::Text(update.artifact_id.clone()),
                Bound::int_or_null(update.command_id),
                Bound::int_or_null(update.fanout_id),
                Bound::Text(update.state.name().to_owned()),
                Bound::int_or_null(update.result),
                Bound::text_or_null(update.reason.clone()),
                Bound::Int(update.created_at),
                Bound::Int(update.updated_at),
            ],
        )?;
        Ok(())
    }

    pub fn update(
        &self,
        correlator: &str,
        dev_id: &str,
    ) -> Result<Option<FirmwareUpdate>, StoreError> {
        self.0
            .rows(
                &format!(
                    "SELECT {UPDATE_COLUMNS} FROM firmware_updates WHERE correlator = ?1 AND dev_id = ?2"
                ),
                &[
                    Bound::Text(correlator.to_owned()),
                    Bound::Text(dev_id.to_owned()),
                ],
            )?
            .first()
            .map(|row| update_row(row))
            .transpose()
    }

    /// The updates a fan-out hands its gateway.
    pub fn updates_of_fanout(&self, fanout_id: i64) -> Result<Vec<FirmwareUpdate>, StoreError> {
        self.0
            .rows(
                &format!("SELECT {UPDATE_COLUMNS} FROM firmware_updates WHERE fanout_id = ?1"),
                &[Bound::Int(fanout_id)],
            )?
            .iter()
            .map(|row| update_row(row))
            .collect()
    }

    /// The update a queued command carries, if it carries one.
    pub fn update_of_command(&self, command_id: i64) -> Result<Option<FirmwareUpdate>, StoreError> {
        self.0
            .rows(
                &format!("SELECT {UPDATE_COLUMNS} FROM firmware_updates WHERE command_id = ?1"),
                &[Bound::Int(command_id)],
            )?
            .first()
            .map(|row| update_row(row))
            .transpose()
    }

    /// Updates newest first: of one device, or of all, in one state or any.
    pub fn updates(
        &self,
        dev_id: Option<&str>,
        state: Option<UpdateState>,
        limit: u32,
    ) -> Result<Vec<FirmwareUpdate>, StoreError> {
        self.0
            .rows(
                &format!(
                    "SELECT {UPDATE_COLUMNS} FROM firmware_updates
                     WHERE (CAST(?1 AS TEXT) IS NULL OR dev_id = ?1)
                       AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)
                     ORDER BY created_at DESC, correlator LIMIT ?3"
                ),
                &[
                    Bound::text_or_null(dev_id.map(str::to_owned)),
                    Bound::text_or_null(state.map(|s| s.name().to_owned())),
                    Bound::Int(i64::from(limit)),
                ],
            )?
            .iter()
            .map(|row| update_row(row))
            .collect()
    }

    /// Moves a queued update on to `state` (accepted), keeping its result and reason.
    pub fn settle_state(
        &self,
        correlator: &str,
        dev_id: &str,
        state: UpdateState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let changed = self.0.run(
            "UPDATE firmware_updates SET state = ?3, updated_at = ?4
             WHERE correlator = ?1 AND dev_id = ?2 AND state = 'queued'",
            &[
                Bound::Text(correlator.to_owned()),
                Bound::Text(dev_id.to_owned()),
                Bound::Text(state.name().to_owned()),
                Bound::Int(now),
            ],
        )?;
        Ok(changed > 0)
    }

    /// Moves an update on, unless it already ended (a late or repeated report changes
    /// nothing); returns whether it moved.
    pub fn settle(
        &self,
        correlator: &str,
        dev_id: &str,
        ending: &Ending<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let changed = self.0.run(
            "UPDATE firmware_updates SET state = ?3, result = ?4, reason = ?5, updated_at = ?6
             WHERE correlator = ?1 AND dev_id = ?2 AND state IN ('queued', 'accepted')",
            &[
                Bound::Text(correlator.to_owned()),
                Bound::Text(dev_id.to_owned()),
                Bound::Text(ending.state.name().to_owned()),
                Bound::int_or_null(ending.result),
                Bound::text_or_null(ending.reason.map(str::to_owned)),
                Bound::Int(now),
            ],
        )?;
        Ok(changed > 0)
    }
}

/// An artifact of ten bytes for model "m", as the tests store it.
#[cfg(test)]
pub(crate) fn sample_artifact(id: &str, created_at: i64) -> Artifact {
    Artifact {
        id: id.into(),
        name: "fw".into(),
        version: "2.0".into(),
        man: "gwmo".into(),
        model: "m".into(),
        size: 10,
        sha256: "ab".repeat(32),
        created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::each_backend;

    fn update(correlator: &str, dev_id: &str, fanout_id: Option<i64>) -> FirmwareUpdate {
        FirmwareUpdate {
            correlator: correlator.into(),
            dev_id: dev_id.into(),
            artifact_id: "a1".into(),
            command_id: fanout_id.is_none().then_some(7),
            fanout_id,
            state: UpdateState::Queued,
            result: None,
            reason: None,
            created_at: 100,
            updated_at: 100,
        }
    }

    #[test]
    fn an_artifact_in_use_is_kept_and_one_no_update_needs_goes() {
        each_backend(|store| {
            let firmware = Firmware(store.sql());
            firmware.add_artifact(&sample_artifact("a1", 1)).unwrap();
            firmware.add_artifact(&sample_artifact("a2", 2)).unwrap();
            let listed: Vec<String> = firmware
                .artifacts()
                .unwrap()
                .into_iter()
                .map(|a| a.id)
                .collect();
            assert_eq!(listed, ["a2", "a1"], "newest first");
            firmware.add_update(&update("fw-1", "d1", None)).unwrap();
            assert_eq!(firmware.remove_artifact("a1").unwrap(), Removal::InUse);
            assert_eq!(firmware.remove_artifact("a2").unwrap(), Removal::Removed);
            assert_eq!(firmware.remove_artifact("a2").unwrap(), Removal::NotFound);
            let failed = Ending {
                state: UpdateState::Failed,
                result: Some(402),
                reason: Some("402 Corrupted Firmware Update Package"),
            };
            assert!(firmware.settle("fw-1", "d1", &failed, 200).unwrap());
            assert_eq!(firmware.remove_artifact("a1").unwrap(), Removal::Removed);
        });
    }

    #[test]
    fn an_update_moves_on_once_and_a_repeat_report_changes_nothing() {
        each_backend(|store| {
            let firmware = Firmware(store.sql());
            firmware.add_update(&update("fw-1", "d1", None)).unwrap();
            firmware.add_update(&update("fw-2", "d1", Some(3))).unwrap();
            firmware.add_update(&update("fw-2", "d2", Some(3))).unwrap();
            assert!(
                firmware
                    .settle_state("fw-1", "d1", UpdateState::Accepted, 110)
                    .unwrap()
            );
            assert!(
                !firmware
                    .settle_state("fw-1", "d1", UpdateState::Accepted, 111)
                    .unwrap()
            );
            let done = Ending {
                state: UpdateState::Succeeded,
                result: Some(200),
                reason: None,
            };
            assert!(firmware.settle("fw-1", "d1", &done, 120).unwrap());
            let late = Ending {
                state: UpdateState::Failed,
                result: Some(410),
                reason: Some("late"),
            };
            assert!(
                !firmware.settle("fw-1", "d1", &late, 130).unwrap(),
                "ended already"
            );
            let ended = firmware.update("fw-1", "d1").unwrap().unwrap();
            assert_eq!(
                (ended.state, ended.result, ended.updated_at),
                (UpdateState::Succeeded, Some(200), 120)
            );
            // Another device's update of the same correlator is apart.
            assert_eq!(firmware.update("fw-1", "d2").unwrap(), None);
            let fanned: Vec<String> = firmware
                .updates_of_fanout(3)
                .unwrap()
                .into_iter()
                .map(|u| u.dev_id)
                .collect();
            assert_eq!(fanned.len(), 2);
            let device = firmware.updates(Some("d1"), None, 10).unwrap();
            assert_eq!(device.len(), 2);
            let queued = firmware
                .updates(None, Some(UpdateState::Queued), 10)
                .unwrap();
            assert_eq!(queued.len(), 2);
            // Sent again (a campaign's retry): the update starts over.
            let mut again = update("fw-1", "d1", None);
            again.command_id = Some(8);
            firmware.add_update(&again).unwrap();
            let restarted = firmware.update("fw-1", "d1").unwrap().unwrap();
            assert_eq!(
                (restarted.state, restarted.result, restarted.command_id),
                (UpdateState::Queued, None, Some(8))
            );
        });
    }
}
