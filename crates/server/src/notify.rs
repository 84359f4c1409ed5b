//! Server-initiated sessions: a package-0 notification (DM 1.2 General
//! Notification, with its digest) posted to the URL the device reported.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gwmo_proto::codes::content_type;
use gwmo_proto::package0::{self, Initiator, Notification, UiMode};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, warn};

use crate::dm::{Wake, WakeFor};
use crate::state::AppState;
use crate::store::DeviceRecord;

/// Package-0 notifications in flight at once: a device that does not answer (its
/// notification waits for the client's time limit) holds up only its own.
const WAKES_IN_FLIGHT: usize = 64;

/// Why a device could not be notified.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("device {0:?} has reported no notification URL yet")]
    NoAddress(String),
    #[error("could not build the notification: {0}")]
    Build(#[from] package0::Package0Error),
    #[error("{0}")]
    Net(#[from] gwmo_net::NetError),
    #[error("the device answered the notification with HTTP {0}")]
    Refused(u16),
}

/// Wakes every device named on `to_wake` with package 0, several at once. A device
/// already being woken is not woken again meanwhile: the session it is about to open
/// takes every command queued by then.
pub(crate) async fn wake_each(state: Arc<AppState>, mut to_wake: UnboundedReceiver<Wake>) {
    let slots = Arc::new(Semaphore::new(WAKES_IN_FLIGHT));
    let waking: Arc<Mutex<HashSet<String>>> = Arc::default();
    while let Some(Wake { dev_id, reason }) = to_wake.recv().await {
        let newly = waking
            .lock()
            .map(|mut waking| waking.insert(dev_id.clone()))
            .unwrap_or(true);
        if !newly {
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (state, waking) = (state.clone(), waking.clone());
        tokio::spawn(async move {
            wake(&state, &dev_id, reason).await;
            if let Ok(mut waking) = waking.lock() {
                waking.remove(&dev_id);
            }
            drop(slot);
        });
    }
}

/// How often a device that answers "too soon" (429: a session with this server runs,
/// or ran just now) is notified again, and after how long the first time (doubling).
const TOO_SOON_RETRIES: u32 = 4;
const TOO_SOON_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

async fn wake(state: &AppState, dev_id: &str, reason: WakeFor) {
    let mut pause = TOO_SOON_PAUSE;
    for _ in 0..=TOO_SOON_RETRIES {
        // A session of the device (perhaps the one that made it answer "too soon")
        // may have taken every command already: a wake-up then opens an empty session.
        if reason == WakeFor::QueuedCommands {
            match state.store.has_queued_commands(dev_id) {
                Ok(true) => {}
                Ok(false) => return debug!(device = %dev_id, "nothing queued any more: not woken"),
                Err(error) => return warn!(%error, "store failure while waking a device"),
            }
        }
        let device = match state.store.device(dev_id) {
            Ok(Some(device)) => device,
            Ok(None) => return,
            Err(error) => return warn!(%error, "store failure while waking a device"),
        };
        match send(state, &device).await {
            Ok(_) => return,
            // A device in a private network: its own next session brings it.
            Err(NotifyError::NoAddress(_)) => {
                return debug!(device = %dev_id, "no notification URL: waiting for the device");
            }
            Err(NotifyError::Refused(429)) => {
                debug!(device = %dev_id, secs = pause.as_secs(), "the device is busy with this server: notifying it again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => return warn!(device = %dev_id, %error, "could not wake the device"),
        }
    }
    warn!(device = %dev_id, "the device stayed busy: its next session brings its commands");
}

/// Wakes `device` now if it takes package 0 (true); one that answers "too soon" (a
/// session with this server runs) is notified again in the background, like every
/// wake-up (false either way).
pub async fn wake_now(state: &AppState, device: &DeviceRecord) -> bool {
    match send(state, device).await {
        Ok(_) => true,
        Err(NotifyError::Refused(429)) => {
            state.dm.wake_later(&device.dev_id);
            false
        }
        Err(_) => false,
    }
}

/// Sends package 0 to `device`; returns the session id the device must open.
pub async fn send(state: &AppState, device: &DeviceRecord) -> Result<String, NotifyError> {
    let url = device
        .notify_address
        .clone()
        .ok_or_else(|| NotifyError::NoAddress(device.dev_id.clone()))?;
    let session_id: u16 = rand::random::<u16>().max(1);
    let auth = device.session_auth();
    let notification = Notification {
        version: 11,
        ui_mode: UiMode::Background,
        initiator: Initiator::Server,
        session_id,
        server_id: state.settings.server_id.clone(),
        vendor_specific: Vec::new(),
    };
    let bytes = package0::encode(
        &notification,
        &state.settings.server_id,
        &auth.server.secret,
        &auth.server_nonce,
    )?;
    let answer = state
        .client
        .post(&url, content_type::NOTIFICATION, None, bytes)
        .await?;
    if !(200..300).contains(&answer.status) {
        return Err(NotifyError::Refused(answer.status));
    }
    state.metrics.notification_sent();
    tracing::info!(device = %device.dev_id, session = session_id, "package 0 sent");
    Ok(package0::session_id_text(session_id))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::dm::DmService;
    use crate::settings::ServerSettings;
    use crate::store::tests::device;
    use crate::store::{SqliteStore, Store};

    /// A server state whose device `IMEI:1` takes package 0 at a listener that answers
    /// 200 and counts the notifications it got.
    async fn state_with_listening_device() -> (Arc<AppState>, Arc<AtomicUsize>) {
        state_with_device_answering("200 OK").await
    }

    /// As [`state_with_listening_device`], the listener answering with `status`.
    async fn state_with_device_answering(
        status: &'static str,
    ) -> (Arc<AppState>, Arc<AtomicUsize>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        store.enroll(&device("IMEI:1"), 0).unwrap();
        store.set_notify_address("IMEI:1", Some(&url)).unwrap();
        let notified = Arc::new(AtomicUsize::new(0));
        let counted = notified.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let settings = ServerSettings::default();
        let tls = gwmo_net::ClientTls::trusting(None, true).unwrap();
        let state = AppState {
            dm: DmService::new(
                store.clone(),
                settings.clone(),
                "http://dms.example/dm".into(),
                None,
                None,
                Arc::default(),
            ),
            client: gwmo_net::HttpClient::new(&tls, Duration::from_secs(5), 1024),
            metrics: Arc::default(),
            dm_url: "http://dms.example/dm".into(),
            settings,
            store,
        };
        (Arc::new(state), notified)
    }

    #[tokio::test]
    async fn a_wake_for_commands_a_session_took_already_is_not_sent() {
        let (state, notified) = state_with_listening_device().await;
        wake(&state, "IMEI:1", WakeFor::QueuedCommands).await;
        assert_eq!(notified.load(Ordering::SeqCst), 0, "nothing was queued");

        state.store.queue_command("IMEI:1", "{}", 0).unwrap();
        wake(&state, "IMEI:1", WakeFor::QueuedCommands).await;
        assert_eq!(notified.load(Ordering::SeqCst), 1);

        state.store.claim_pending("IMEI:1", "session", 0).unwrap();
        wake(&state, "IMEI:1", WakeFor::QueuedCommands).await;
        assert_eq!(notified.load(Ordering::SeqCst), 1, "a session took it");

        // An operator's request wakes the device whatever is queued.
        wake(&state, "IMEI:1", WakeFor::Asked).await;
        assert_eq!(notified.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_notifications_a_device_accepted_are_counted() {
        let sent = |state: &AppState| {
            let text = state.metrics.render(0, None);
            text.lines()
                .find_map(|line| line.strip_prefix("gwmo_notifications_sent_total "))
                .map(str::to_owned)
        };
        let (accepting, _) = state_with_device_answering("200 OK").await;
        let device = accepting.store.device("IMEI:1").unwrap().unwrap();
        send(&accepting, &device).await.unwrap();
        assert_eq!(sent(&accepting).as_deref(), Some("1"));

        let (busy, notified) = state_with_device_answering("429 Too Many Requests").await;
        let device = busy.store.device("IMEI:1").unwrap().unwrap();
        assert!(matches!(
            send(&busy, &device).await,
            Err(NotifyError::Refused(429))
        ));
        assert_eq!(notified.load(Ordering::SeqCst), 1, "it was posted");
        assert_eq!(sent(&busy).as_deref(), Some("0"), "but not accepted");
    }
}
