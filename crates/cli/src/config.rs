//! Loading a role's TOML configuration, and `--print-config`.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads the configuration file, or the defaults when there is none.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad configuration {}", path.display()))
}

/// The effective configuration as TOML.
pub fn print<T: Serialize>(settings: &T) -> anyhow::Result<()> {
    print!(
        "{}",
        toml::to_string(settings).context("cannot print the configuration")?
    );
    Ok(())
}
