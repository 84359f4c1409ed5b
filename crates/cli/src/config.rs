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

/// Reads the configuration file, or the defaults when there is none, then the
/// environment's overrides ([`apply_environment`]), and applies its log filter. A relative path in the file (or
/// in a default it leaves) is taken from the file's directory, not from the working
/// directory: `cd / && gwmo server --config /etc/gwmo/server.toml` finds
/// `pki/server.pem` in `/etc/gwmo`.
pub fn load<T: DeserializeOwned + Serialize + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let settings: T = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration {}", path.display()))?;
            let mut table = text.parse::<toml::Table>().map_err(|error| {
                anyhow::anyhow!(error).context(format!("bad configuration {}", path.display()))
            })?;
            // The log filter is the program's, not the role's (`crate::logging`). Read
            // from the text when it has none, an error keeps its line.
            let parsed = match table.remove(LOG_KEY) {
                Some(_) => toml::Value::Table(table).try_into(),
                None => toml::from_str(&text),
            };
            parsed.map_err(|error| {
                let hint = mistaken_table_hint(&error.to_string());
                anyhow::anyhow!(error)
                    .context(format!("bad configuration {}{hint}", path.display()))
            })?
        }
        None => T::default(),
    };
    let mut value =
        toml::Value::try_from(&settings).context("cannot read the configuration back")?;
    let fields = field_names::<T>();
    let overridden = apply_environment(&mut value, &fields, std::env::vars())?;
    if let Some(path) = path {
        let base = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        resolve_paths(&mut value, base);
    }
    crate::logging::apply_configured(log_filter(path)?.as_deref());
    value
        .try_into()
        .with_context(|| match overridden.is_empty() {
            true => "bad configuration".to_owned(),
            false => format!(
                "bad configuration (set from the environment: {})",
                overridden.join(", ")
            ),
        })
}

/// The key of every role's configuration that sets the log filter (`GWMO_LOG` in the
/// environment overrides it, `RUST_LOG` both).
const LOG_KEY: &str = "log";

/// The log filter the configuration sets: `GWMO_LOG`, else its `log` key.
pub fn log_filter(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Ok(filter) = std::env::var("GWMO_LOG") {
        return Ok(Some(filter));
    }
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration {}", path.display()))?;
    let table = text
        .parse::<toml::Table>()
        .with_context(|| format!("bad configuration {}", path.display()))?;
    match table.get(LOG_KEY) {
        None => Ok(None),
        Some(toml::Value::String(filter)) => Ok(Some(filter.clone())),
        Some(other) => anyhow::bail!(
            "bad configuration {}: log must be a filter such as \"info\" or \"warn,gwmo_server=debug\", not {other}",
            path.display()
        ),
    }
}

/// A hint for the one mistake whose parser message names no key: a table written as
/// an array of tables (`[[upstream]]` for `[upstream]`), or the other way round
/// (`[accounts]` for `[[accounts]]`).
fn mistaken_table_hint(message: &str) -> &'static str {
    match (
        message.contains("invalid type: map"),
        message.contains("invalid type: sequence") || message.contains("expected a sequence"),
    ) {
        (true, _) => " (a [table] written as [[table]]? One table is written [name])",
        (_, true) => " (a list written as one [table]? A list of tables is written [[name]])",
        _ => "",
    }
}

/// The prefix of the environment variables that override configuration keys.
const ENV_PREFIX: &str = "GWMO_";

/// Applies `GWMO_<KEY>` (a key of a table: `GWMO_TLS__CERTIFICATE`) and, for secrets
/// kept in files, `GWMO_<KEY>_FILE` (the file's content, without its final line
/// break). Only variables whose first part names a key of the role (`fields`) count:
/// others (`GWMO_TEST_POSTGRES`...) are not configuration. A value takes the type of
/// the key it replaces (a number stays a number); a key the file left unset takes
/// text. Returns the variables applied.
fn apply_environment(
    value: &mut toml::Value,
    fields: &[&str],
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<String>> {
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let known = |key: &str| fields.contains(&key.split("__").next().unwrap_or(""));
        let (key, raw) = if known(&key) {
            (key, raw)
        } else if let Some(secret) = key.strip_suffix("_file").filter(|k| known(k)) {
            let content = std::fs::read_to_string(&raw)
                .with_context(|| format!("{name}: cannot read {raw}"))?;
            (
                secret.to_owned(),
                content.trim_end_matches(['\n', '\r']).to_owned(),
            )
        } else {
            continue;
        };
        let path: Vec<&str> = key.split("__").collect();
        set(value, &path, &raw)
            .with_context(|| format!("{name}: cannot set {}", path.join(".")))?;
        applied.push(name);
    }
    Ok(applied)
}

/// Sets the key at `path` to `raw`, typed like the value it replaces.
fn set(value: &mut toml::Value, path: &[&str], raw: &str) -> anyhow::Result<()> {
    let (last, tables) = path.split_last().context("an empty key")?;
    let mut table = value.as_table_mut().context("not a table")?;
    for name in tables {
        table = table
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{name} is not a table"))?;
    }
    let typed = match table.get(*last) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.parse().context("not a whole number")?)
        }
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(raw.parse().context("not true or false")?)
        }
        Some(toml::Value::Float(_)) => toml::Value::Float(raw.parse().context("not a number")?),
        Some(toml::Value::Array(_)) => raw.parse::<toml::Value>().context("not a TOML array")?,
        _ => toml::Value::String(raw.to_owned()),
    };
    table.insert(last.to_string(), typed);
    Ok(())
}

/// The top-level keys of a configuration type, as its `Deserialize` declares them.
fn field_names<'de, T: serde::Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = FieldNames(Vec::new());
    // Only asks for the field list: the error after it is expected.
    let _ = T::deserialize(&mut names);
    names.0
}

/// A deserializer that only records the fields a struct asks for.
struct FieldNames(Vec<&'static str>);

impl<'de> serde::Deserializer<'de> for &mut FieldNames {
    type Error = serde::de::value::Error;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields.to_vec();
        Err(serde::de::Error::custom(
            "only the field names were asked for",
        ))
    }

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
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

/// The effective configuration as TOML; with `all`, every key of struct `owner` after
/// its doc comment, unset keys commented out (`crate::reference`).
pub fn print<T: Serialize>(settings: &T, owner: &str, all: bool) -> anyhow::Result<()> {
    let text = match all {
        false => toml::to_string(settings),
        true => {
            toml::Table::try_from(settings).map(|table| crate::reference::render(owner, &table))
        }
    };
    print!("{}", text.context("cannot print the configuration")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        listen: String,
        max_sessions: u64,
        admin_token: Option<String>,
        tls: Tls,
    }

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Tls {
        certificate: Option<String>,
        plain_http: bool,
    }

    #[test]
    fn the_environment_sets_keys_of_the_role_typed_like_them_and_secrets_from_files() {
        assert_eq!(
            field_names::<Sample>(),
            ["listen", "max_sessions", "admin_token", "tls"]
        );
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "0123456789abcdef-secret\n").unwrap();
        let mut value = toml::Value::try_from(Sample {
            max_sessions: 5,
            ..Sample::default()
        })
        .unwrap();
        let vars = [
            ("GWMO_LISTEN", "0.0.0.0:443".to_owned()),
            ("GWMO_MAX_SESSIONS", "100".to_owned()),
            ("GWMO_ADMIN_TOKEN_FILE", secret.display().to_string()),
            ("GWMO_TLS__CERTIFICATE", "/etc/gwmo/server.pem".to_owned()),
            ("GWMO_TLS__PLAIN_HTTP", "true".to_owned()),
            ("GWMO_TEST_POSTGRES", "postgres://not-a-key".to_owned()),
            ("HOME", "/root".to_owned()),
        ];
        let applied = apply_environment(
            &mut value,
            &field_names::<Sample>(),
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)),
        )
        .unwrap();
        assert_eq!(applied.len(), 5, "{applied:?}");
        let sample: Sample = value.try_into().unwrap();
        assert_eq!(
            sample,
            Sample {
                listen: "0.0.0.0:443".into(),
                max_sessions: 100,
                admin_token: Some("0123456789abcdef-secret".into()),
                tls: Tls {
                    certificate: Some("/etc/gwmo/server.pem".into()),
                    plain_http: true
                },
            }
        );
        let mut value = toml::Value::try_from(Sample::default()).unwrap();
        let wrong = [("GWMO_MAX_SESSIONS".to_owned(), "many".to_owned())];
        let error =
            apply_environment(&mut value, &field_names::<Sample>(), wrong.into_iter()).unwrap_err();
        assert!(
            format!("{error:#}").contains("GWMO_MAX_SESSIONS"),
            "{error:#}"
        );
        let missing = [(
            "GWMO_ADMIN_TOKEN_FILE".to_owned(),
            "/nonexistent/token".to_owned(),
        )];
        let error = apply_environment(&mut value, &field_names::<Sample>(), missing.into_iter())
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot read /nonexistent/token"),
            "{error:#}"
        );
    }

    #[test]
    fn a_table_written_as_an_array_of_tables_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "[[tls]]\nplain_http = true\n").unwrap();
        let error = load::<Sample>(Some(&path)).unwrap_err();
        assert!(
            format!("{error:#}").contains("One table is written [name]"),
            "{error:#}"
        );
    }

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
