//! The narrow interface for a role that embeds a DM server, as the gateway does for
//! its end devices: enroll and forget devices, queue commands and read their outcomes,
//! wake devices with package 0, and learn when sessions stored something. Nothing else
//! of the server is reachable through it. Every store call runs on a blocking thread,
//! never on an async worker.

use std::collections::HashMap;
use std::sync::Arc;

use gwmo_net::unix_now;
use gwmo_proto::auth::AuthType;
use tokio::sync::watch;

use crate::command::CommandSpec;
use crate::dm::Touched;
use crate::notify::{self, NotifyError};
use crate::state::AppState;
use crate::store::firmware::{Artifact, Firmware, FirmwareUpdate, Removal, UpdateState};
use crate::store::{CommandState, DeviceFilter, DeviceRecord, NewDevice, Store, StoreError};

/// Why an embedded server could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("end-device store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Notify(#[from] NotifyError),
    #[error("the end-device store's worker stopped")]
    WorkerGone,
}

/// An end device the embedded server serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndDevice {
    pub dev_id: String,
    pub client_secret: String,
    /// Sessions the device has held.
    pub sessions: i64,
    pub last_session_at: Option<i64>,
    /// `./DevInfo/Man` and `./DevInfo/Mod` as the device reported them ("" before).
    pub manufacturer: String,
    pub model: String,
}

impl From<DeviceRecord> for EndDevice {
    fn from(device: DeviceRecord) -> EndDevice {
        EndDevice {
            manufacturer: device.devinfo_leaf("Man"),
            model: device.devinfo_leaf("Mod"),
            dev_id: device.dev_id,
            client_secret: device.client_secret,
            sessions: device.sessions,
            last_session_at: device.last_session_at,
        }
    }
}

/// Every device the store serves.
fn all_served(store: &dyn Store) -> Result<Vec<EndDevice>, StoreError> {
    Ok(store
        .devices(&DeviceFilter::default(), None, u32::MAX)?
        .into_iter()
        .map(|device| EndDevice::from(device.record))
        .collect())
}

/// What changed among the devices served, from [`EndDevices::changes_since_last`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndDeviceChanges {
    /// Every device served now: whatever was kept before is replaced.
    All(Vec<EndDevice>),
    /// These devices, read again, and those no longer served; the others are as before.
    Some {
        served: Vec<EndDevice>,
        gone: Vec<String>,
    },
}

/// A device to serve: its credentials both ways (MD5), and where package 0 reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndDevice {
    pub dev_id: String,
    pub client_name: String,
    pub client_secret: String,
    pub server_secret: String,
    pub notify_url: Option<String>,
}

/// Where a queued command is, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub state: CommandState,
    pub status: Option<u16>,
    pub results: Option<String>,
}

/// A firmware image the embedded server holds and serves to its end devices (a
/// gateway's image store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub id: String,
    pub image: NewImage,
    pub created_at: i64,
    /// Where end devices download it.
    pub url: String,
    /// Bytes of it this process served.
    pub bytes_served: u64,
}

/// What describes an image to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    pub name: String,
    pub version: String,
    pub man: String,
    pub model: String,
    pub sha256: String,
    pub size: i64,
}

/// Where an end device's firmware update is, as the embedded server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareProgress {
    /// `queued`, `accepted`, `succeeded` or `failed`.
    pub state: &'static str,
    /// The FUMO result code the device reported.
    pub result: Option<i64>,
    pub reason: Option<String>,
}

/// A handle on an embedded server's end devices.
#[derive(Clone)]
pub struct EndDevices {
    state: Arc<AppState>,
}

impl EndDevices {
    pub(crate) fn new(state: Arc<AppState>) -> EndDevices {
        EndDevices { state }
    }

    /// Runs `work` on the store on a blocking thread.
    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, EmbedError> {
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|_| EmbedError::WorkerGone)?
            .map_err(EmbedError::from)
    }

    /// Every device served.
    pub async fn all(&self) -> Result<Vec<EndDevice>, EmbedError> {
        self.with_store(all_served).await
    }

    /// What changed among the devices served since the last call (the first call
    /// answers every device): an embedder that keeps what it read reads only this.
    pub async fn changes_since_last(&self) -> Result<EndDeviceChanges, EmbedError> {
        // Taken before the store is read: a change from here on is read now or next time.
        let touched = self.state.dm.take_touched();
        self.with_store(move |store| {
            Ok(match touched {
                Touched::All => EndDeviceChanges::All(all_served(store)?),
                Touched::Devices(dev_ids) => {
                    let mut served = Vec::new();
                    let mut gone = Vec::new();
                    for dev_id in dev_ids {
                        match store.device(&dev_id)? {
                            Some(device) => served.push(EndDevice::from(device)),
                            None => gone.push(dev_id),
                        }
                    }
                    EndDeviceChanges::Some { served, gone }
                }
            })
        })
        .await
    }

    /// Makes the next [`EndDevices::changes_since_last`] answer every device (whoever
    /// kept what it read lost track of it).
    pub fn read_all_next(&self) {
        self.state.dm.forget_touched();
    }

    /// Serves `device`, in place of any device of the same DevId (whose commands and
    /// nonces go with it).
    pub async fn enroll(&self, device: NewEndDevice) -> Result<(), EmbedError> {
        let server_name = self.state.settings.server_id.clone();
        let dev_id = device.dev_id.clone();
        let enrolled = self
            .with_store(move |store| {
                store.remove_device(&device.dev_id)?;
                store.enroll(
                    &NewDevice {
                        dev_id: device.dev_id.clone(),
                        auth: AuthType::Md5,
                        client_name: device.client_name,
                        client_secret: device.client_secret,
                        server_name,
                        server_secret: device.server_secret,
                    },
                    unix_now(),
                )?;
                store.set_notify_address(&device.dev_id, device.notify_url.as_deref())
            })
            .await;
        // Even after a failure: what was kept of the device may have changed.
        self.state.dm.touch(&dev_id);
        enrolled
    }

    /// Stops serving these devices.
    pub async fn forget(&self, dev_ids: Vec<String>) -> Result<(), EmbedError> {
        let touched = dev_ids.clone();
        let forgotten = self
            .with_store(move |store| {
                dev_ids
                    .iter()
                    .try_for_each(|dev_id| store.remove_device(dev_id).map(drop))
            })
            .await;
        // Even after a failure: some may be gone.
        touched
            .iter()
            .for_each(|dev_id| self.state.dm.touch(dev_id));
        forgotten
    }

    /// Queues `command` for `dev_id`; returns its id.
    pub async fn queue(&self, dev_id: &str, command: &CommandSpec) -> Result<i64, EmbedError> {
        let (dev_id, spec) = (dev_id.to_owned(), command.to_json());
        self.with_store(move |store| store.queue_command(&dev_id, &spec, unix_now()))
            .await
    }

    /// The outcomes of the commands `ids` that exist.
    pub async fn outcomes(
        &self,
        ids: Vec<i64>,
    ) -> Result<HashMap<i64, CommandOutcome>, EmbedError> {
        self.with_store(move |store| {
            let mut outcomes = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(command) = store.command(id)? {
                    let outcome = CommandOutcome {
                        state: command.state,
                        status: command.status,
                        results: command.results,
                    };
                    outcomes.insert(id, outcome);
                }
            }
            Ok(outcomes)
        })
        .await
    }

    /// Wakes `dev_id` with package 0 now; a device that answers "too soon" (a session
    /// with this gateway just ended) is notified again in the background while it has
    /// commands queued.
    pub async fn wake(&self, dev_id: &str) -> Result<(), EmbedError> {
        let id = dev_id.to_owned();
        let Some(device) = self.with_store(move |store| store.device(&id)).await? else {
            return Ok(());
        };
        match notify::send(&self.state, &device).await {
            Err(notify::NotifyError::Refused(429)) => {
                self.state.dm.wake_later(dev_id);
                Ok(())
            }
            sent => Ok(sent.map(drop)?),
        }
    }

    /// Adds the embedding role's own metrics to the embedded server's `/metrics`.
    pub fn add_metrics(&self, extra: Arc<dyn crate::metrics::ExtraMetrics>) {
        self.state.metrics.add_extra(extra);
    }

    /// Where the embedded server keeps the images it serves.
    pub fn image_dir(&self) -> std::path::PathBuf {
        self.state.settings.artifact_path()
    }

    fn stored_image(&self, artifact: Artifact) -> StoredImage {
        let bytes_served = self
            .state
            .metrics
            .artifact_bytes(&artifact.id)
            .load(std::sync::atomic::Ordering::Relaxed);
        StoredImage {
            url: crate::firmware::artifact_url(&self.state.dm_url, &artifact.id),
            id: artifact.id,
            image: NewImage {
                name: artifact.name,
                version: artifact.version,
                man: artifact.man,
                model: artifact.model,
                sha256: artifact.sha256,
                size: artifact.size,
            },
            created_at: artifact.created_at,
            bytes_served,
        }
    }

    /// Every image held, newest first.
    pub async fn images(&self) -> Result<Vec<StoredImage>, EmbedError> {
        let artifacts = self
            .with_store(|store| Firmware(store.sql()).artifacts())
            .await?;
        Ok(artifacts
            .into_iter()
            .map(|artifact| self.stored_image(artifact))
            .collect())
    }

    /// Keeps the verified image at `file` (moved into [`EndDevices::image_dir`]) and
    /// serves it from now on.
    pub async fn add_image(
        &self,
        image: NewImage,
        file: &std::path::Path,
    ) -> Result<StoredImage, EmbedError> {
        let id = crate::secrets::random_secret();
        let stored = self.image_dir().join(&id);
        std::fs::rename(file, &stored)
            .map_err(|e| EmbedError::Store(StoreError::Create(stored.display().to_string(), e)))?;
        let artifact = Artifact {
            id,
            name: image.name,
            version: image.version,
            man: image.man,
            model: image.model,
            size: image.size,
            sha256: image.sha256,
            created_at: unix_now(),
        };
        let record = artifact.clone();
        let added = self
            .with_store(move |store| Firmware(store.sql()).add_artifact(&record))
            .await;
        if added.is_err() {
            let _ = std::fs::remove_file(&stored);
        }
        added.map(|()| self.stored_image(artifact))
    }

    /// Removes an image no update in flight uses; returns whether it did.
    pub async fn remove_image(&self, id: &str) -> Result<bool, EmbedError> {
        let artifact = id.to_owned();
        let removal = self
            .with_store(move |store| Firmware(store.sql()).remove_artifact(&artifact))
            .await?;
        if removal == Removal::Removed {
            let _ = std::fs::remove_file(self.image_dir().join(id));
        }
        Ok(removal == Removal::Removed)
    }

    /// Follows the firmware update `correlator` that command `command` carries to
    /// `dev_id` (of image `image_id`): its device's answer and Generic Alert end it.
    pub async fn track_firmware(
        &self,
        dev_id: &str,
        correlator: &str,
        image_id: &str,
        command: i64,
    ) -> Result<(), EmbedError> {
        let now = unix_now();
        let update = FirmwareUpdate {
            correlator: correlator.to_owned(),
            dev_id: dev_id.to_owned(),
            artifact_id: image_id.to_owned(),
            command_id: Some(command),
            fanout_id: None,
            state: UpdateState::Queued,
            result: None,
            reason: None,
            created_at: now,
            updated_at: now,
        };
        self.with_store(move |store| {
            let firmware = Firmware(store.sql());
            // Tracked already with this command: a gateway resuming a fan-out. With
            // another: the same update sent again, which starts over.
            match firmware.update(&update.correlator, &update.dev_id)? {
                Some(tracked) if tracked.command_id == Some(command) => Ok(()),
                _ => firmware.add_update(&update),
            }
        })
        .await
    }

    /// Where the updates `correlator` of `dev_ids` are.
    pub async fn firmware_progress(
        &self,
        correlator: &str,
        dev_ids: Vec<String>,
    ) -> Result<HashMap<String, FirmwareProgress>, EmbedError> {
        let correlator = correlator.to_owned();
        self.with_store(move |store| {
            let firmware = Firmware(store.sql());
            let mut progress = HashMap::new();
            for dev_id in dev_ids {
                if let Some(update) = firmware.update(&correlator, &dev_id)? {
                    progress.insert(
                        dev_id,
                        FirmwareProgress {
                            state: update.state.name(),
                            result: update.result,
                            reason: update.reason,
                        },
                    );
                }
            }
            Ok(progress)
        })
        .await
    }

    /// Changes whenever a session stored something: a command's outcome, DevInfo, a
    /// session's end.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.state.dm.stored_changes()
    }
}
