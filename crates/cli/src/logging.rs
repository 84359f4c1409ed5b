//! Logging: text (no colours off a terminal) or JSON lines on standard error. The
//! filter is `RUST_LOG` when set; otherwise the configuration's `log` key (read again
//! on SIGHUP, so that a daemon's verbosity changes without a restart); otherwise the
//! command's default.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::LogFormat;

/// Where the filter in force can be changed.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Whether `RUST_LOG` set the filter (and so nothing else may).
static FROM_ENVIRONMENT: OnceLock<bool> = OnceLock::new();

/// Starts logging with `RUST_LOG`, or else `default`.
pub fn init(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let from_environment = EnvFilter::try_from_default_env().ok();
    let _ = FROM_ENVIRONMENT.set(from_environment.is_some());
    let (filter, handle) =
        reload::Layer::new(from_environment.unwrap_or_else(|| EnvFilter::new(default)));
    let _ = FILTER.set(handle);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(lines.json()).init(),
        LogFormat::Text => registry
            .with(lines.with_ansi(std::io::stderr().is_terminal()))
            .init(),
    }
}

/// Applies the configuration's `log` filter, unless `RUST_LOG` set one. A filter that
/// does not parse is refused with a warning, and the one in force stays.
pub fn apply_configured(filter: Option<&str>) {
    let Some(filter) = filter else { return };
    if FROM_ENVIRONMENT.get().copied().unwrap_or(false) {
        tracing::info!(
            filter,
            "RUST_LOG is set: the configuration's log filter is not used"
        );
        return;
    }
    let Some(handle) = FILTER.get() else { return };
    match EnvFilter::try_new(filter) {
        Ok(parsed) => {
            if handle.reload(parsed).is_ok() {
                tracing::info!(filter, "log filter set from the configuration");
            }
        }
        Err(error) => {
            tracing::warn!(filter, %error, "the configuration's log filter does not parse: the one in force stays")
        }
    }
}
