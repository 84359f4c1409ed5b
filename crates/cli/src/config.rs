//! Loading a role's TOML configuration, and `--print-config`.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The keys whose values are paths, wherever they are in a configuration.
const PATH_KEYS: &[&str] = &[
    "state_dir",
    "address_file",
    "bootstrap_address_file",
    "database",
    "certificate",
    "private_key",
    "ca",
];

/// Reads the configuration file, or the defaults when there is none. A relative path
/// in it (or in a default it leaves) is taken from the file's directory, not from the
/// working directory: `cd / && gwmo server --config /etc/gwmo/server.toml` finds
/// `pki/server.pem` in `/etc/gwmo`.
pub fn load<T: DeserializeOwned + Serialize + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration {}", path.display()))?;
    let bad = || format!("bad configuration {}", path.display());
    let settings: T = toml::from_str(&text).with_context(bad)?;
    let mut value = toml::Value::try_from(&settings).with_context(bad)?;
    let base = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    resolve_paths(&mut value, base);
    value.try_into().with_context(bad)
}

/// Makes every relative path under a [`PATH_KEYS`] key relative to `base`.
fn resolve_paths(value: &mut toml::Value, base: &Path) {
    match value {
        toml::Value::Table(table) => {
            for (key, entry) in table.iter_mut() {
                match entry {
                    toml::Value::String(text) if PATH_KEYS.contains(&key.as_str()) => {
                        let is_url = text.contains("://");
                        if !is_url && Path::new(text.as_str()).is_relative() {
                            *text = base.join(&*text).display().to_string();
                        }
                    }
                    nested => resolve_paths(nested, base),
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|item| resolve_paths(item, base)),
        _ => {}
    }
}

/// The effective configuration as TOML.
pub fn print<T: Serialize>(settings: &T) -> anyhow::Result<()> {
    print!(
        "{}",
        toml::to_string(settings).context("cannot print the configuration")?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_taken_from_the_configuration_s_directory_and_urls_left_alone() {
        let mut value: toml::Value = toml::from_str(
            r#"
            database = "store/server.db"
            listen = "127.0.0.1:0"
            [tls]
            certificate = "pki/server.pem"
            ca = "/etc/ssl/ca.pem"
            [[accounts]]
            state_dir = "state"
            "#,
        )
        .unwrap();
        resolve_paths(&mut value, Path::new("/etc/gwmo"));
        assert_eq!(
            value["database"].as_str(),
            Some("/etc/gwmo/store/server.db")
        );
        assert_eq!(value["listen"].as_str(), Some("127.0.0.1:0"), "not a path");
        assert_eq!(
            value["tls"]["certificate"].as_str(),
            Some("/etc/gwmo/pki/server.pem")
        );
        assert_eq!(value["tls"]["ca"].as_str(), Some("/etc/ssl/ca.pem"));
        assert_eq!(
            value["accounts"][0]["state_dir"].as_str(),
            Some("/etc/gwmo/state")
        );
        let mut url: toml::Value = toml::from_str(r#"database = "postgres://u@h/db""#).unwrap();
        resolve_paths(&mut url, Path::new("/etc/gwmo"));
        assert_eq!(url["database"].as_str(), Some("postgres://u@h/db"));
    }
}
