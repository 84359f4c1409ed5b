//! What every request handler and background task of a server shares: its settings,
//! store, DM service, counters and HTTP client. Below the handlers (admin, devtree,
//! notify) and the HTTP layer, above the DM service.

use std::sync::Arc;

use gwmo_net::HttpClient;

use crate::dm::DmService;
use crate::metrics::Metrics;
use crate::settings::ServerSettings;
use crate::store::Store;

/// What every request handler shares.
pub struct AppState {
    pub settings: ServerSettings,
    pub store: Arc<dyn Store>,
    pub dm: DmService,
    pub metrics: Arc<Metrics>,
    pub dm_url: String,
    pub client: HttpClient,
}
