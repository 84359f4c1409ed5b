//! The configuration reference: `gwmo <role> --print-config --all` prints every key of
//! the role, each after its doc comment (read from the settings' sources by
//! `build.rs`), the keys left unset commented out; docs/CONFIG.md is that output for
//! every role, kept current by a test.

/// One field of a configuration struct.
pub struct Field {
    /// The struct that has it.
    pub owner: &'static str,
    pub name: &'static str,
    /// Its Rust type, as written.
    pub ty: &'static str,
    pub doc: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/settings_docs.rs"));

/// The documented struct a field's type holds (`Option<FactoryAccount>`,
/// `gwmo_net::TlsSettings`, `Vec<FactoryAccount>`), if any.
fn nested(ty: &str) -> Option<&'static str> {
    let inner = ty
        .trim_start_matches("Option<")
        .trim_start_matches("Vec<")
        .trim_end_matches('>');
    let inner = inner.rsplit("::").next().unwrap_or(inner);
    FIELDS.iter().map(|f| f.owner).find(|owner| *owner == inner)
}

/// `owner`'s configuration `value` as commented TOML: every documented key, in the
/// order of the code.
pub fn render(owner: &str, value: &toml::Table) -> String {
    let mut out = String::new();
    table(&mut out, owner, Some(value), "", false);
    out
}

/// Writes the keys of one table; its tables after them (as TOML wants). `commented`:
/// the whole table is unset (an example of its keys).
fn table(out: &mut String, owner: &str, value: Option<&toml::Table>, path: &str, commented: bool) {
    let fields: Vec<&Field> = FIELDS.iter().filter(|f| f.owner == owner).collect();
    let hash = if commented { "# " } else { "" };
    for field in fields.iter().filter(|f| nested(f.ty).is_none()) {
        comment(out, field.doc);
        match value.and_then(|v| v.get(field.name)) {
            Some(set) => out.push_str(&format!("{hash}{} = {set}\n", field.name)),
            None => out.push_str(&format!("# {} =   (unset)\n", field.name)),
        }
    }
    for field in fields.iter().filter(|f| nested(f.ty).is_some()) {
        let Some(inner) = nested(field.ty) else {
            continue;
        };
        let name = match path.is_empty() {
            true => field.name.to_owned(),
            false => format!("{path}.{}", field.name),
        };
        out.push('\n');
        comment(out, field.doc);
        let set = value.and_then(|v| v.get(field.name));
        if field.ty.starts_with("Vec<") {
            let entries: Vec<&toml::Table> = set
                .and_then(toml::Value::as_array)
                .map(|a| a.iter().filter_map(toml::Value::as_table).collect())
                .unwrap_or_default();
            if entries.is_empty() {
                out.push_str(&format!("# [[{name}]]   (none; one table per entry)\n"));
                table(out, inner, None, &name, true);
            }
            for entry in entries {
                out.push_str(&format!("{hash}[[{name}]]\n"));
                table(out, inner, Some(entry), &name, commented);
            }
            continue;
        }
        match set.and_then(toml::Value::as_table) {
            Some(inner_value) => {
                out.push_str(&format!("{hash}[{name}]\n"));
                table(out, inner, Some(inner_value), &name, commented);
            }
            None => {
                out.push_str(&format!("# [{name}]   (unset)\n"));
                table(out, inner, None, &name, true);
            }
        }
    }
}

/// A doc comment as TOML comment lines of at most 88 characters.
fn comment(out: &mut String, doc: &str) {
    let mut line = String::from("#");
    for word in doc.split_whitespace() {
        if line.len() + 1 + word.len() > 88 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_role_has_words() {
        for owner in [
            "ServerSettings",
            "DeviceSettings",
            "GatewaySettings",
            "StandaloneSettings",
            "TlsSettings",
        ] {
            assert!(FIELDS.iter().any(|f| f.owner == owner), "{owner} not read");
        }
        for field in FIELDS {
            assert!(
                !field.doc.is_empty(),
                "{}.{} has no doc comment",
                field.owner,
                field.name
            );
        }
    }

    #[test]
    fn unset_keys_and_tables_are_shown_commented_out() {
        let value: toml::Table =
            toml::from_str("listen = \"127.0.0.1:1\"\n[tls]\nplain_http = true\n").unwrap();
        let text = render("ServerSettings", &value);
        assert!(text.contains("\nlisten = \"127.0.0.1:1\"\n"), "{text}");
        assert!(text.contains("# admin_token =   (unset)\n"), "{text}");
        assert!(text.contains("\n[tls]\n"), "{text}");
        assert!(text.contains("\nplain_http = true\n"), "{text}");
        // What it reads back is the same configuration.
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back, value);
        let device = render("DeviceSettings", &toml::Table::new());
        assert!(
            device.contains("# [[accounts]]   (none; one table per entry)\n"),
            "{device}"
        );
        assert!(device.contains("\n# server_id =   (unset)\n"), "{device}");
    }
}
