//! Any body, under each content type, posted to the DM Server's endpoint with a device
//! enrolled: an answer or an error (an HTTP 4xx), never a panic, and the enrolled
//! device still there afterwards.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use gwmo_proto::auth::AuthType;
use gwmo_server::dm::DmService;
use gwmo_server::metrics::Metrics;
use gwmo_server::store::{NewDevice, SqliteStore, Store};
use gwmo_server::ServerSettings;
use libfuzzer_sys::fuzz_target;

const DEVICE: &str = "IMEI:490154203237518";

fn service() -> &'static (Arc<dyn Store>, DmService) {
    static SERVICE: OnceLock<(Arc<dyn Store>, DmService)> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("store"));
        store
            .enroll(
                &NewDevice {
                    dev_id: DEVICE.into(),
                    auth: AuthType::Md5,
                    client_name: DEVICE.into(),
                    client_secret: "client-secret".into(),
                    server_name: "gwmo-dms".into(),
                    server_secret: "server-secret".into(),
                },
                0,
            )
            .expect("enroll");
        let service = DmService::new(
            store.clone(),
            ServerSettings::default(),
            "http://127.0.0.1:8080/dm".into(),
            None,
            None,
            Arc::new(Metrics::default()),
        );
        (store, service)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 4 {
        0 => Some("application/vnd.syncml.dm+xml"),
        1 => Some("application/vnd.syncml.dm+wbxml"),
        2 => None,
        _ => Some("text/plain"),
    };
    let (store, service) = service();
    let _ = service.handle(content_type, None, body, Instant::now(), 1);
    assert!(store.device(DEVICE).expect("store").is_some());
});
