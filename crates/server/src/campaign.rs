//! Campaigns: one command for every device a filter matched, across every gateway and
//! every directly managed device, in waves. A device behind a gateway gets it through
//! that gateway's fan-out (one per gateway and wave); any other device gets it queued
//! for itself. A wave starts when the one before ended; a wave in which more devices
//! failed than the campaign's threshold allows pauses the campaign until an operator
//! resumes it (accepting those failures) or cancels it; failed devices can be tried
//! again in a wave of their own. Progress lives in the store, a wave at a time: the
//! server never holds the fleet in memory, and several instances can drive the same
//! campaign (starting a wave and sending to a device are each done once).

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::{info, warn};

use crate::command::CommandSpec;
use crate::firmware::TrackedUpdate;
use crate::store::campaigns::{
    CampaignRecord, CampaignState, Campaigns, NewCampaign, Sent, Settled, TargetState,
};
use crate::store::firmware::Firmware;
use crate::store::{DeviceFilter, QueuedCommand, Store, StoreError};

/// Why a campaign could not be moved on.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("campaign {0}: its stored command does not read back: {1}")]
    Spec(i64, String),
}

/// How big a campaign's waves are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveSize {
    Devices(u32),
    /// A share of the devices targeted, in percent (1 to 100).
    Percent(u8),
}

/// A campaign to start.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub name: &'a str,
    pub spec: &'a CommandSpec,
    pub filter: &'a DeviceFilter,
    /// The filter as the operator gave it, kept to show.
    pub filter_json: &'a str,
    pub wave: WaveSize,
    pub threshold_percent: u8,
}

/// Stores a campaign over the devices its filter matches now; returns its id and how
/// many devices it targets. Its first wave starts at the next [`advance`].
pub fn create(store: &dyn Store, plan: &Plan<'_>, now: i64) -> Result<(i64, u64), CampaignError> {
    let wave_size = match plan.wave {
        WaveSize::Devices(size) => i64::from(size.max(1)),
        WaveSize::Percent(percent) => {
            let total = store.count_devices(plan.filter)? as i64;
            ((total * i64::from(percent) + 99) / 100).max(1)
        }
    };
    let spec = plan.spec.to_json();
    let campaign = NewCampaign {
        name: plan.name,
        spec: &spec,
        filter_json: plan.filter_json,
        filter: plan.filter,
        wave_size,
        threshold_percent: i64::from(plan.threshold_percent),
    };
    Ok(Campaigns(store.sql()).create(&campaign, now)?)
}

/// Moves every running campaign on; returns the devices to wake (those a command was
/// queued for, and the gateways handed a fan-out).
pub fn advance_all(store: &dyn Store, now: i64) -> Result<Vec<String>, StoreError> {
    let campaigns = Campaigns(store.sql());
    let mut wakes = Vec::new();
    for id in campaigns.running()? {
        match advance(store, id, now) {
            Ok(woken) => wakes.extend(woken),
            Err(error) => warn!(campaign = id, %error, "could not move the campaign on"),
        }
    }
    Ok(wakes)
}

/// Moves one campaign on: settles what ended; then, once its current wave has ended,
/// pauses it if that wave failed past its threshold, else starts the next wave, else
/// ends it. Returns the devices to wake.
pub fn advance(store: &dyn Store, id: i64, now: i64) -> Result<Vec<String>, CampaignError> {
    let campaigns = Campaigns(store.sql());
    let Some(campaign) = campaigns.get(id)? else {
        return Ok(Vec::new());
    };
    if campaign.state != CampaignState::Running {
        return Ok(Vec::new());
    }
    // A firmware update ends with the device's FUMO result, not with its command.
    match crate::firmware::update_of(&campaign_spec(&campaign)?) {
        Some(update) => {
            campaigns.settle_firmware(id, &update.correlator, now)?;
        }
        None => {
            campaigns.settle_commands(id, now)?;
            settle_fanouts(store, &campaigns, id, now)?;
        }
    }
    let mut wakes = Vec::new();
    let wave = campaign.wave;
    let counts = wave_counts(&campaigns, id, wave)?;
    let open = counts.get(&TargetState::Pending).copied().unwrap_or(0)
        + counts.get(&TargetState::Sent).copied().unwrap_or(0);
    if wave > 0 && open > 0 {
        // A crash (or another instance) may have left devices of the started wave
        // unsent: they go now.
        wakes.extend(send_wave(store, &campaigns, &campaign, wave, now)?);
        return Ok(wakes);
    }
    let failed = counts.get(&TargetState::Failed).copied().unwrap_or(0);
    let settled = failed + counts.get(&TargetState::Done).copied().unwrap_or(0);
    if wave > campaign.accepted_wave
        && settled > 0
        && failed * 100 > campaign.threshold_percent as u64 * settled
    {
        let reason = format!(
            "wave {wave}: {failed} of {settled} devices failed, over the threshold of {}%",
            campaign.threshold_percent
        );
        warn!(campaign = id, %reason, "campaign paused");
        campaigns.set_state(
            id,
            &[CampaignState::Running],
            CampaignState::Paused,
            Some(&reason),
            false,
            now,
        )?;
        return Ok(wakes);
    }
    if wave < campaigns.last_wave(id)? {
        if campaigns.start_wave(id, wave + 1, now)? {
            info!(campaign = id, wave = wave + 1, "campaign wave started");
            wakes.extend(send_wave(store, &campaigns, &campaign, wave + 1, now)?);
        }
        return Ok(wakes);
    }
    campaigns.set_state(
        id,
        &[CampaignState::Running],
        CampaignState::Done,
        None,
        false,
        now,
    )?;
    info!(campaign = id, "campaign done");
    Ok(wakes)
}

/// The command a campaign sends, as stored.
fn campaign_spec(campaign: &CampaignRecord) -> Result<CommandSpec, CampaignError> {
    CommandSpec::parse(&campaign.spec)
        .map_err(|error| CampaignError::Spec(campaign.id, error.to_string()))
}

fn wave_counts(
    campaigns: &Campaigns<'_>,
    id: i64,
    wave: i64,
) -> Result<BTreeMap<TargetState, u64>, StoreError> {
    Ok(campaigns
        .waves(id)?
        .into_iter()
        .filter(|count| count.wave == wave)
        .map(|count| (count.state, count.devices))
        .collect())
}

/// Sends the campaign's command to the pending devices of `wave`: through a fan-out
/// for those behind a registered gateway, queued for each of the others.
fn send_wave(
    store: &dyn Store,
    campaigns: &Campaigns<'_>,
    campaign: &CampaignRecord,
    wave: i64,
    now: i64,
) -> Result<Vec<String>, CampaignError> {
    let spec = campaign_spec(campaign)?;
    let firmware = crate::firmware::update_of(&spec);
    let mut behind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut wakes = Vec::new();
    for (dev_id, gateway) in campaigns.wave_to_start(campaign.id, wave)? {
        match gateway {
            Some(gateway_id) => behind.entry(gateway_id).or_default().push(dev_id),
            None => {
                if send_direct(store, campaigns, campaign, firmware.as_ref(), &dev_id, now)? {
                    wakes.push(dev_id);
                }
            }
        }
    }
    for (gateway_id, devices) in behind {
        let Some(gateway) = store.gateway(&gateway_id)? else {
            // An association with a gateway no longer registered: straight to each.
            for dev_id in devices {
                if send_direct(store, campaigns, campaign, firmware.as_ref(), &dev_id, now)? {
                    wakes.push(dev_id);
                }
            }
            continue;
        };
        let mut claimed = Vec::new();
        for dev_id in devices {
            if campaigns.claim(campaign.id, &dev_id, now)? {
                claimed.push(dev_id);
            }
        }
        if claimed.is_empty() {
            continue;
        }
        let targets = serde_json::to_string(&claimed).unwrap_or_default();
        store.grouped(|| {
            let fanout_id = store.create_fanout(&gateway_id, &targets, &campaign.spec, now)?;
            let handover = crate::fanout::request(fanout_id, &claimed, &spec);
            store.queue_command(&gateway.dev_id, &handover.to_json(), now)?;
            for dev_id in &claimed {
                let sent = Sent::Fanout {
                    gateway_id: &gateway_id,
                    fanout_id,
                };
                campaigns.record_sent(campaign.id, dev_id, sent)?;
                if let Some(update) = &firmware {
                    let record = update.for_device(dev_id, None, Some(fanout_id), now);
                    Firmware(store.sql()).add_update(&record)?;
                }
            }
            Ok::<_, StoreError>(())
        })?;
        wakes.push(gateway.dev_id);
    }
    Ok(wakes)
}

/// Queues the campaign's command for one device, if this instance claims it first
/// (with the record of its firmware update, when it is one).
fn send_direct(
    store: &dyn Store,
    campaigns: &Campaigns<'_>,
    campaign: &CampaignRecord,
    firmware: Option<&TrackedUpdate>,
    dev_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut sent = false;
    store.grouped(|| {
        if !campaigns.claim(campaign.id, dev_id, now)? {
            return Ok(());
        }
        let command = QueuedCommand {
            dev_id,
            spec: &campaign.spec,
            expires_at: None,
        };
        let command_id = store.queue(&command, now)?;
        campaigns.record_sent(campaign.id, dev_id, Sent::Direct { command_id })?;
        if let Some(update) = firmware {
            let record = update.for_device(dev_id, Some(command_id), None, now);
            Firmware(store.sql()).add_update(&record)?;
        }
        sent = true;
        Ok::<_, StoreError>(())
    })?;
    Ok(sent)
}

/// Settles the devices of the campaign's fan-outs that ended, from what their gateways
/// reported: 2xx is done, anything else failed, a device the report leaves out failed.
fn settle_fanouts(
    store: &dyn Store,
    campaigns: &Campaigns<'_>,
    id: i64,
    now: i64,
) -> Result<(), StoreError> {
    for fanout_id in campaigns.ended_fanouts(id)? {
        let reported = store
            .fanout(fanout_id)?
            .and_then(|fanout| fanout.results)
            .and_then(|results| serde_json::from_str::<Value>(&results).ok());
        let by_device = reported_outcomes(reported.as_ref());
        for dev_id in campaigns.unsettled_of_fanout(id, fanout_id)? {
            let settled = by_device.get(&dev_id).cloned().unwrap_or(Settled {
                state: TargetState::Failed,
                status: None,
                error: Some("the gateway's report leaves this device out".into()),
            });
            campaigns.settle_target(id, &dev_id, fanout_id, &settled, now)?;
        }
    }
    Ok(())
}

/// What a gateway reported for each device of a fan-out (a gwmo gateway reports
/// `[{dev_id, state, status, outcome} | {dev_id, error}]`).
fn reported_outcomes(report: Option<&Value>) -> BTreeMap<String, Settled> {
    let mut outcomes = BTreeMap::new();
    for item in report.and_then(Value::as_array).into_iter().flatten() {
        let Some(dev_id) = item["dev_id"].as_str() else {
            continue;
        };
        let status = item["status"].as_i64();
        let settled = match (status, item["error"].as_str()) {
            (Some(200..=299), None) => Settled {
                state: TargetState::Done,
                status,
                error: None,
            },
            (_, Some(error)) => Settled {
                state: TargetState::Failed,
                status,
                error: Some(error.to_owned()),
            },
            (Some(code), None) => Settled {
                state: TargetState::Failed,
                status: Some(code),
                error: None,
            },
            (None, None) => Settled {
                state: TargetState::Failed,
                status: None,
                error: Some(format!(
                    "no status: the device's command is {}",
                    item["state"].as_str().unwrap_or("unknown")
                )),
            },
        };
        outcomes.insert(dev_id.to_owned(), settled);
    }
    outcomes
}

/// Cancels a campaign: devices whose wave has not started never get the command, and
/// commands still queued for devices are taken back (a fan-out already with its
/// gateway runs). Returns false when the campaign had ended.
pub fn cancel(store: &dyn Store, id: i64, now: i64) -> Result<bool, StoreError> {
    let campaigns = Campaigns(store.sql());
    let from = [CampaignState::Running, CampaignState::Paused];
    if !campaigns.set_state(
        id,
        &from,
        CampaignState::Cancelled,
        Some("cancelled by an operator"),
        false,
        now,
    )? {
        return Ok(false);
    }
    for (dev_id, command_id) in campaigns.cancel_targets(id, now)? {
        if store.cancel_command(command_id, now)? == crate::store::Cancelled::Now {
            campaigns.cancel_target(id, &dev_id, now)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
