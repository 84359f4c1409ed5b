//! Reads the doc comments of every role's configuration structs from their sources, so
//! that `gwmo <role> --print-config --all` (src/reference.rs) prints each key with the
//! same words its code has: the reference cannot drift from the code. Writes
//! `$OUT_DIR/settings_docs.rs`: one `Field` per field, in declaration order.

use std::fmt::Write;
use std::path::Path;

/// The configuration structs, by the file (relative to this crate) that declares them.
const SOURCES: &[(&str, &[&str])] = &[
    ("../server/src/settings.rs", &["ServerSettings"]),
    ("../net/src/tls.rs", &["TlsSettings"]),
    (
        "../device/src/settings.rs",
        &["DeviceSettings", "FirmwareSettings", "FactoryAccount"],
    ),
    (
        "../gateway/src/settings.rs",
        &["GatewaySettings", "Approaches"],
    ),
    ("../bootstrap/src/lib.rs", &["BootstrapSettings"]),
    ("src/bootstrap.rs", &["StandaloneSettings"]),
];

fn main() {
    let mut out = String::from("pub const FIELDS: &[Field] = &[\n");
    for (file, structs) in SOURCES {
        println!("cargo:rerun-if-changed={file}");
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        for field in fields(&text, structs) {
            let _ = writeln!(
                out,
                "    Field {{ owner: {:?}, name: {:?}, ty: {:?}, doc: {:?} }},",
                field.0, field.1, field.2, field.3
            );
        }
    }
    out.push_str("];\n");
    let dir = std::env::var("OUT_DIR").unwrap_or_else(|_| panic!("cargo sets OUT_DIR"));
    let path = Path::new(&dir).join("settings_docs.rs");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// (struct, field, type, doc) of the public fields of `wanted` structs in `text` (a
/// field without a doc comment has none: a test refuses that).
fn fields(text: &str, wanted: &[&str]) -> Vec<(String, String, String, String)> {
    let mut found = Vec::new();
    let mut owner: Option<String> = None;
    let mut doc: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("pub struct ")
            .and_then(|rest| rest.strip_suffix(" {"))
        {
            owner = wanted.contains(&name).then(|| name.to_owned());
            doc.clear();
            continue;
        }
        let Some(current) = &owner else { continue };
        if line.starts_with('}') {
            owner = None;
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix("///") {
            doc.push(comment.trim().to_owned());
        } else if let Some(field) = trimmed
            .strip_prefix("pub ")
            .and_then(|f| f.strip_suffix(','))
        {
            if let Some((name, ty)) = field.split_once(':') {
                let (name, ty) = (name.trim().to_owned(), ty.trim().to_owned());
                found.push((current.clone(), name, ty, doc.join(" ")));
            }
            doc.clear();
        } else if !trimmed.starts_with("#[") && !trimmed.is_empty() {
            doc.clear();
        }
    }
    found
}
