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

    /// Changes whenever a session stored something: a command's outcome, DevInfo, a
    /// session's end.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.state.dm.stored_changes()
    }
}
