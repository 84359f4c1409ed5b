//! Server-initiated sessions: a package-0 notification (DM 1.2 General
//! Notification, with its digest) posted to the URL the device reported.

use gwmo_proto::codes::content_type;
use gwmo_proto::package0::{self, Initiator, Notification, UiMode};

use crate::dm::device_auth;
use crate::http::AppState;
use crate::store::DeviceRecord;

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

/// Sends package 0 to `device`; returns the session id the device must open.
pub async fn send(state: &AppState, device: &DeviceRecord) -> Result<String, NotifyError> {
    let url = device
        .notify_address
        .clone()
        .ok_or_else(|| NotifyError::NoAddress(device.dev_id.clone()))?;
    let session_id: u16 = rand::random::<u16>().max(1);
    let auth = device_auth(device);
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
    tracing::info!(device = %device.dev_id, session = session_id, "package 0 sent");
    Ok(package0::session_id_text(session_id))
}
