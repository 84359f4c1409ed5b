//! What the store keeps of campaigns: each campaign's command, filter, wave size, error
//! threshold and state, and each targeted device's wave and progress. Written once for
//! both backends ([`SqlRunner`]); the rules that drive a campaign are in
//! `crate::campaign`.

use super::sql::{Bound, Cell, SqlRunner, int, optional_int, optional_text, text};
use super::{DeviceFilter, StoreError};

/// Where a campaign is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignState {
    Running,
    /// By an operator, or because a wave failed past the threshold.
    Paused,
    Cancelled,
    Done,
}

impl CampaignState {
    pub const ALL: [CampaignState; 4] = [
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Cancelled,
        CampaignState::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
            CampaignState::Done => "done",
        }
    }

    pub fn from_name(name: &str) -> Option<CampaignState> {
        CampaignState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Where one targeted device is in its campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetState {
    /// Its wave has not started.
    Pending,
    /// Its command is queued for it, or handed to its gateway's fan-out.
    Sent,
    Done,
    Failed,
    Cancelled,
}

impl TargetState {
    pub const ALL: [TargetState; 5] = [
        TargetState::Pending,
        TargetState::Sent,
        TargetState::Done,
        TargetState::Failed,
        TargetState::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::Sent => "sent",
            TargetState::Done => "done",
            TargetState::Failed => "failed",
            TargetState::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<TargetState> {
        TargetState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub id: i64,
    pub name: String,
    /// The command spec (JSON).
    pub spec: String,
    /// The device filter it was made with (JSON, as given).
    pub filter: String,
    pub wave_size: i64,
    /// A wave in which more than this share of devices (percent) failed pauses it.
    pub threshold_percent: i64,
    pub state: CampaignState,
    /// The last wave started (0: none yet).
    pub wave: i64,
    /// The last wave whose failures an operator accepted by resuming.
    pub accepted_wave: i64,
    /// Why it paused or ended.
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A targeted device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    pub dev_id: String,
    pub wave: i64,
    pub state: TargetState,
    /// The gateway whose fan-out carried it, if one did.
    pub gateway_id: Option<String>,
    pub command_id: Option<i64>,
    pub fanout_id: Option<i64>,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub updated_at: i64,
}

/// How many devices of one wave are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveCount {
    pub wave: i64,
    pub state: TargetState,
    pub devices: u64,
}

/// A new campaign.
#[derive(Debug, Clone)]
pub struct NewCampaign<'a> {
    pub name: &'a str,
    pub spec: &'a str,
    pub filter_json: &'a str,
    pub filter: &'a DeviceFilter,
    pub wave_size: i64,
    pub threshold_percent: i64,
}

const CAMPAIGN_COLUMNS: &str = "id, name, spec, filter, wave_size, threshold_percent, state, wave, \
     accepted_wave, reason, created_at, updated_at";
const TARGET_COLUMNS: &str =
    "dev_id, wave, state, gateway_id, command_id, fanout_id, status, error, attempts, updated_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("campaign record: {what}"))
}

fn campaign_row(row: &[Cell]) -> Result<CampaignRecord, StoreError> {
    Ok(CampaignRecord {
        id: int(row, 0)?,
        name: text(row, 1)?,
        spec: text(row, 2)?,
        filter: text(row, 3)?,
        wave_size: int(row, 4)?,
        threshold_percent: int(row, 5)?,
        state: CampaignState::from_name(&text(row, 6)?).ok_or_else(|| corrupt("a state"))?,
        wave: int(row, 7)?,
        accepted_wave: int(row, 8)?,
        reason: optional_text(row, 9),
        created_at: int(row, 10)?,
        updated_at: int(row, 11)?,
    })
}

fn target_row(row: &[Cell]) -> Result<TargetRecord, StoreError> {
    Ok(TargetRecord {
        dev_id: text(row, 0)?,
        wave: int(row, 1)?,
        state: TargetState::from_name(&text(row, 2)?).ok_or_else(|| corrupt("a state"))?,
        gateway_id: optional_text(row, 3),
        command_id: optional_int(row, 4),
        fanout_id: optional_int(row, 5),
        status: optional_int(row, 6),
        error: optional_text(row, 7),
        attempts: int(row, 8)?,
        updated_at: int(row, 9)?,
    })
}

/// The campaigns of a store.
pub struct Campaigns<'a>(pub &'a dyn SqlRunner);

impl Campaigns<'_> {
    /// Stores a campaign with every device the filter matches now, numbered into waves
    /// in DevId order; returns its id and how many devices it targets. The devices go
    /// from one table to the other inside the database: none is held in memory.
    pub fn create(&self, campaign: &NewCampaign<'_>, now: i64) -> Result<(i64, u64), StoreError> {
        let created = self.0.rows(
            "INSERT INTO campaigns (name, spec, filter, wave_size, threshold_percent, state, wave,
                 accepted_wave, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', 0, 0, ?6, ?6) RETURNING id",
            &[
                Bound::Text(campaign.name.to_owned()),
                Bound::Text(campaign.spec.to_owned()),
                Bound::Text(campaign.filter_json.to_owned()),
                Bound::Int(campaign.wave_size),
                Bound::Int(campaign.threshold_percent),
                Bound::Int(now),
            ],
        )?;
        let id = created
            .first()
            .map(|row| int(row, 0))
            .transpose()?
            .ok_or_else(|| corrupt("no id"))?;
        let (condition, bound) = campaign.filter.condition(self.0.dialect(), 4);
        let mut params = vec![
            Bound::Int(id),
            Bound::Int(campaign.wave_size),
            Bound::Int(now),
        ];
        params.extend(bound);
        let targeted = self.0.run(
            &format!(
                "INSERT INTO campaign_devices (campaign_id, dev_id, wave, state, attempts, updated_at)
                 SELECT ?1, dev_id, (ROW_NUMBER() OVER (ORDER BY dev_id) - 1) / ?2 + 1, 'pending', 0, ?3
                 FROM devices WHERE {condition}"
            ),
            &params,
        )?;
        Ok((id, targeted))
    }

    pub fn get(&self, id: i64) -> Result<Option<CampaignRecord>, StoreError> {
        self.0
            .rows(
                &format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?1"),
                &[Bound::Int(id)],
            )?
            .first()
            .map(|row| campaign_row(row))
            .transpose()
    }

    /// Campaigns newest first, with ids below `before`.
    pub fn list(&self, before: Option<i64>, limit: u32) -> Result<Vec<CampaignRecord>, StoreError> {
        self.0
            .rows(
                &format!(
                    "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
                ),
                &[Bound::Int(before.unwrap_or(i64::MAX)), Bound::Int(i64::from(limit))],
            )?
            .iter()
            .map(|row| campaign_row(row))
            .collect()
    }

    /// The ids of the running campaigns.
    pub fn running(&self) -> Result<Vec<i64>, StoreError> {
        self.0
            .rows(
                "SELECT id FROM campaigns WHERE state = 'running' ORDER BY id",
                &[],
            )?
            .iter()
            .map(|row| int(row, 0))
            .collect()
    }

    /// Moves the campaign from one of `from` to `to` (with `reason`); false when it was
    /// in none of them. `accept` also accepts the failures of the waves started so far.
    pub fn set_state(
        &self,
        id: i64,
        from: &[CampaignState],
        to: CampaignState,
        reason: Option<&str>,
        accept: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.name())).collect();
        let accepted = match accept {
            true => "wave",
            false => "accepted_wave",
        };
        let changed = self.0.run(
            &format!(
                "UPDATE campaigns SET state = ?2, reason = ?3, updated_at = ?4, accepted_wave = {accepted}
                 WHERE id = ?1 AND state IN ({})",
                states.join(", ")
            ),
            &[
                Bound::Int(id),
                Bound::Text(to.name().to_owned()),
                Bound::text_or_null(reason.map(str::to_owned)),
                Bound::Int(now),
            ],
        )?;
        Ok(changed > 0)
    }

    /// Starts wave `next` if the campaign is still running at wave `next - 1`: of
    /// several instances trying, one does. Returns whether this one did.
    pub fn start_wave(&self, id: i64, next: i64, now: i64) -> Result<bool, StoreError> {
        Ok(self.0.run(
            "UPDATE campaigns SET wave = ?2, updated_at = ?3
             WHERE id = ?1 AND wave = ?4 AND state = 'running'",
            &[
                Bound::Int(id),
                Bound::Int(next),
                Bound::Int(now),
                Bound::Int(next - 1),
            ],
        )? > 0)
    }

    /// The highest wave any device of the campaign is in.
    pub fn last_wave(&self, id: i64) -> Result<i64, StoreError> {
        let rows = self.0.rows(
            "SELECT COALESCE(MAX(wave), 0) FROM campaign_devices WHERE campaign_id = ?1",
            &[Bound::Int(id)],
        )?;
        rows.first().map(|row| int(row, 0)).unwrap_or(Ok(0))
    }

    /// How many devices of each wave are in each state.
    pub fn waves(&self, id: i64) -> Result<Vec<WaveCount>, StoreError> {
        self.0
            .rows(
                "SELECT wave, state, count(*) FROM campaign_devices WHERE campaign_id = ?1
                 GROUP BY wave, state ORDER BY wave, state",
                &[Bound::Int(id)],
            )?
            .iter()
            .map(|row| {
                Ok(WaveCount {
                    wave: int(row, 0)?,
                    state: TargetState::from_name(&text(row, 1)?)
                        .ok_or_else(|| corrupt("a state"))?,
                    devices: int(row, 2)? as u64,
                })
            })
            .collect()
    }

    /// The campaign's devices in DevId order after `after` (of one wave and one state,
    /// where given).
    pub fn targets(
        &self,
        id: i64,
        wave: Option<i64>,
        state: Option<TargetState>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        self.0
            .rows(
                &format!(
                    "SELECT {TARGET_COLUMNS} FROM campaign_devices
                     WHERE campaign_id = ?1 AND dev_id > ?2 AND (CAST(?3 AS BIGINT) < 0 OR wave = ?3)
                       AND (?4 = '' OR state = ?4)
                     ORDER BY dev_id LIMIT ?5"
                ),
                &[
                    Bound::Int(id),
                    Bound::Text(after.to_owned()),
                    Bound::Int(wave.unwrap_or(-1)),
                    Bound::Text(state.map_or("", TargetState::name).to_owned()),
                    Bound::Int(i64::from(limit)),
                ],
            )?
            .iter()
            .map(|row| target_row(row))
            .collect()
    }

    /// The pending devices of a wave, each with the gateway it is associated with now.
    pub fn wave_to_start(
        &self,
        id: i64,
        wave: i64,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.0
            .rows(
                "SELECT cd.dev_id, a.gateway_id FROM campaign_devices cd
                 LEFT JOIN associations a ON a.dev_id = cd.dev_id
                 WHERE cd.campaign_id = ?1 AND cd.wave = ?2 AND cd.state = 'pending'
                 ORDER BY cd.dev_id",
                &[Bound::Int(id), Bound::Int(wave)],
            )?
            .iter()
            .map(|row| Ok((text(row, 0)?, optional_text(row, 1))))
            .collect()
    }

    /// Takes a pending device of the campaign for sending: of several instances
    /// trying, one does. Returns whether this one did.
    pub fn claim(&self, id: i64, dev_id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self.0.run(
            "UPDATE campaign_devices SET state = 'sent', attempts = attempts + 1, updated_at = ?3
             WHERE campaign_id = ?1 AND dev_id = ?2 AND state = 'pending'",
            &[
                Bound::Int(id),
                Bound::Text(dev_id.to_owned()),
                Bound::Int(now),
            ],
        )? > 0)
    }

    /// Records how a claimed device's command went out: queued for it, or handed to
    /// its gateway's fan-out.
    pub fn record_sent(&self, id: i64, dev_id: &str, sent: Sent<'_>) -> Result<(), StoreError> {
        let (gateway, command, fanout) = match sent {
            Sent::Direct { command_id } => {
                (Bound::NullText, Bound::Int(command_id), Bound::NullInt)
            }
            Sent::Fanout {
                gateway_id,
                fanout_id,
            } => (
                Bound::Text(gateway_id.to_owned()),
                Bound::NullInt,
                Bound::Int(fanout_id),
            ),
        };
        self.0.run(
            "UPDATE campaign_devices SET gateway_id = ?3, command_id = ?4, fanout_id = ?5
             WHERE campaign_id = ?1 AND dev_id = ?2 AND state = 'sent'",
            &[
                Bound::Int(id),
                Bound::Text(dev_id.to_owned()),
                gateway,
                command,
                fanout,
            ],
        )?;
        Ok(())
    }

    /// Settles the devices whose own commands ended: 2xx is done, anything else (and a
    /// command cancelled or expired) failed.
    pub fn settle_commands(&self, id: i64, now: i64) -> Result<u64, StoreError> {
        self.0.run(
            "UPDATE campaign_devices SET
                 state = CASE WHEN commands.state = 'done' AND commands.status BETWEEN 200 AND 299
                              THEN 'done' ELSE 'failed' END,
                 status = commands.status,
                 error = CASE WHEN commands.state = 'done' THEN NULL ELSE 'command ' || commands.state END,
                 updated_at = ?2
             FROM commands
             WHERE campaign_devices.campaign_id = ?1 AND campaign_devices.state = 'sent'
               AND campaign_devices.command_id = commands.id
               AND commands.state IN ('done', 'cancelled', 'expired')",
            &[Bound::Int(id), Bound::Int(now)],
        )
    }

    /// The fan-outs of the campaign that ended and whose devices are not settled yet.
    pub fn ended_fanouts(&self, id: i64) -> Result<Vec<i64>, StoreError> {
        self.0
            .rows(
                "SELECT DISTINCT cd.fanout_id FROM campaign_devices cd
                 JOIN fanouts f ON f.id = cd.fanout_id
                 WHERE cd.campaign_id = ?1 AND cd.state = 'sent' AND f.state = 'done'
                 ORDER BY cd.fanout_id",
                &[Bound::Int(id)],
            )?
            .iter()
            .map(|row| int(row, 0))
            .collect()
    }

    /// Settles one device carried by fan-out `fanout_id`.
    /// Settles the sent devices of a firmware campaign whose update `correlator`
    /// ended: done when it succeeded, failed otherwise, with the FUMO result code as
    /// the status and the reason as the error.
    pub fn settle_firmware(&self, id: i64, correlator: &str, now: i64) -> Result<u64, StoreError> {
        self.0.run(
            "UPDATE campaign_devices SET
                 state = CASE (SELECT f.state FROM firmware_updates f
                               WHERE f.correlator = ?2 AND f.dev_id = campaign_devices.dev_id)
                         WHEN 'succeeded' THEN 'done' ELSE 'failed' END,
                 status = (SELECT f.result FROM firmware_updates f
                           WHERE f.correlator = ?2 AND f.dev_id = campaign_devices.dev_id),
                 error = (SELECT f.reason FROM firmware_updates f
                          WHERE f.correlator = ?2 AND f.dev_id = campaign_devices.dev_id),
                 updated_at = ?3
             WHERE campaign_id = ?1 AND state = 'sent'
               AND EXISTS (SELECT 1 FROM firmware_updates f
                           WHERE f.correlator = ?2 AND f.dev_id = campaign_devices.dev_id
                             AND f.state IN ('succeeded', 'failed'))",
            &[
                Bound::Int(id),
                Bound::Text(correlator.to_owned()),
                Bound::Int(now),
            ],
        )
    }

    pub fn settle_target(
        &self,
        id: i64,
        dev_id: &str,
        fanout_id: i64,
        settled: &Settled,
        now: i64,
    ) -> Result<(), StoreError> {
        self.0.run(
            "UPDATE campaign_devices SET state = ?4, status = ?5, error = ?6, updated_at = ?7
             WHERE campaign_id = ?1 AND dev_id = ?2 AND fanout_id = ?3 AND state = 'sent'",
            &[
                Bound::Int(id),
                Bound::Text(dev_id.to_owned()),
                Bound::Int(fanout_id),
                Bound::Text(settled.state.name().to_owned()),
                Bound::int_or_null(settled.status),
                Bound::text_or_null(settled.error.clone()),
                Bound::Int(now),
            ],
        )?;
        Ok(())
    }

    /// The devices a fan-out of the campaign carried and that are not settled.
    pub fn unsettled_of_fanout(&self, id: i64, fanout_id: i64) -> Result<Vec<String>, StoreError> {
        self.0
            .rows(
                "SELECT dev_id FROM campaign_devices
                 WHERE campaign_id = ?1 AND fanout_id = ?2 AND state = 'sent' ORDER BY dev_id",
                &[Bound::Int(id), Bound::Int(fanout_id)],
            )?
            .iter()
            .map(|row| text(row, 0))
            .collect()
    }

    /// Puts the failed devices in a new wave after the last one; returns how many.
    pub fn retry_failed(&self, id: i64, now: i64) -> Result<u64, StoreError> {
        let next = self.last_wave(id)? + 1;
        self.0.run(
            "UPDATE campaign_devices SET state = 'pending', wave = ?2, gateway_id = NULL,
                 command_id = NULL, fanout_id = NULL, status = NULL, error = NULL, updated_at = ?3
             WHERE campaign_id = ?1 AND state = 'failed'",
            &[Bound::Int(id), Bound::Int(next), Bound::Int(now)],
        )
    }

    /// Ends the devices whose wave has not started; returns the commands queued for
    /// devices of started waves that are still sent, for the caller to take back.
    pub fn cancel_targets(&self, id: i64, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.0.run(
            "UPDATE campaign_devices SET state = 'cancelled', updated_at = ?2
             WHERE campaign_id = ?1 AND state = 'pending'",
            &[Bound::Int(id), Bound::Int(now)],
        )?;
        self.0
            .rows(
                "SELECT dev_id, command_id FROM campaign_devices
                 WHERE campaign_id = ?1 AND state = 'sent' AND command_id IS NOT NULL",
                &[Bound::Int(id)],
            )?
            .iter()
            .map(|row| Ok((text(row, 0)?, int(row, 1)?)))
            .collect()
    }

    /// Marks a device whose queued command was taken back as cancelled.
    pub fn cancel_target(&self, id: i64, dev_id: &str, now: i64) -> Result<(), StoreError> {
        self.0.run(
            "UPDATE campaign_devices SET state = 'cancelled', updated_at = ?3
             WHERE campaign_id = ?1 AND dev_id = ?2 AND state = 'sent'",
            &[
                Bound::Int(id),
                Bound::Text(dev_id.to_owned()),
                Bound::Int(now),
            ],
        )?;
        Ok(())
    }
}

/// How a device's command went out.
#[derive(Debug, Clone, Copy)]
pub enum Sent<'a> {
    Direct { command_id: i64 },
    Fanout { gateway_id: &'a str, fanout_id: i64 },
}

/// How a device carried by a fan-out ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub state: TargetState,
    pub status: Option<i64>,
    pub error: Option<String>,
}
