//! What a gateway counts of its own, rendered at the end of its embedded server's
//! `/metrics` (which counts the end devices' sessions, messages and alerts): its
//! inventory and end devices, what it reported to the DM Server, the bootstraps its
//! Local DM Bootstrap Server handed out, its fan-outs, and its image store.

use std::sync::atomic::{AtomicU64, Ordering};

use gwmo_server::{ExtraMetrics, MetricKind, write_metric};

#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Entries of the Device Inventory, at the last sync.
    pub inventory_entries: AtomicU64,
    /// End devices in the end-device store, at the last sync.
    pub end_devices: AtomicU64,
    pub attaches_reported: AtomicU64,
    pub detaches_reported: AtomicU64,
    /// Reports that did not go when due: the DM Server could not take them, or they
    /// were held while reports wait out a pause (sent again later).
    pub reports_deferred: AtomicU64,
    /// Sessions that carried a report and failed (each lengthens the pause before
    /// reports go again).
    pub report_sessions_failed: AtomicU64,
    pub local_bootstraps: AtomicU64,
    pub fanouts_run: AtomicU64,
    pub fanouts_reported: AtomicU64,
    /// Images held in the image store, and bytes fetched into it from upstream.
    pub images: AtomicU64,
    pub image_bytes_fetched: AtomicU64,
}

impl GatewayMetrics {
    pub fn add(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, to: u64) {
        gauge.store(to, Ordering::Relaxed);
    }
}

impl ExtraMetrics for GatewayMetrics {
    fn render(&self) -> String {
        use MetricKind::{Counter, Gauge};
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (kind, name, help, value) in [
            (
                Gauge,
                "gwmo_gateway_inventory_entries",
                "Entries of the gateway's Device Inventory.",
                &self.inventory_entries,
            ),
            (
                Gauge,
                "gwmo_gateway_end_devices",
                "End devices the gateway serves.",
                &self.end_devices,
            ),
            (
                Counter,
                "gwmo_gateway_attaches_reported_total",
                "Device Attach Alerts the DM Server took.",
                &self.attaches_reported,
            ),
            (
                Counter,
                "gwmo_gateway_detaches_reported_total",
                "Device Detach Alerts the DM Server took.",
                &self.detaches_reported,
            ),
            (
                Counter,
                "gwmo_gateway_reports_deferred_total",
                "Reports that did not go when due: not taken, or held during a pause (sent again later).",
                &self.reports_deferred,
            ),
            (
                Counter,
                "gwmo_gateway_report_sessions_failed_total",
                "Sessions carrying a report the DM Server did not take.",
                &self.report_sessions_failed,
            ),
            (
                Counter,
                "gwmo_gateway_local_bootstraps_total",
                "Gateway Bootstraps its Local DM Bootstrap Server handed out.",
                &self.local_bootstraps,
            ),
            (
                Counter,
                "gwmo_gateway_fanouts_run_total",
                "Fan-outs the gateway ran.",
                &self.fanouts_run,
            ),
            (
                Counter,
                "gwmo_gateway_fanouts_reported_total",
                "Fan-outs whose results the DM Server took.",
                &self.fanouts_reported,
            ),
            (
                Gauge,
                "gwmo_gateway_images",
                "Firmware images in the gateway's image store.",
                &self.images,
            ),
            (
                Counter,
                "gwmo_gateway_image_bytes_fetched_total",
                "Image bytes the gateway fetched from upstream.",
                &self.image_bytes_fetched,
            ),
        ] {
            write_metric(&mut out, kind, name, help, get(value));
        }
        out
    }
}
