//! `gwmo msg`: decode a captured DM message (XML or WBXML) to readable XML or JSON,
//! and encode XML to WBXML.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use gwmo_proto::Encoding;
use quick_xml::events::Event;

#[derive(Subcommand, Debug)]
pub enum MsgCommand {
    /// Decode a SyncML DM message (XML or WBXML, recognised by its first byte).
    Decode {
        /// The message (`-`: standard input).
        file: PathBuf,
        /// Print the decoded message model as JSON instead of XML.
        #[arg(long)]
        json: bool,
    },
    /// Encode a SyncML DM XML message as WBXML (the only binary encoding of DM
    /// messages).
    Encode {
        /// Write WBXML: what encode always writes; accepted for scripts that say so.
        #[arg(long)]
        wbxml: bool,
        /// The XML message (`-`: standard input).
        file: PathBuf,
        /// Where to write the result (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub fn run(command: MsgCommand) -> anyhow::Result<()> {
    match command {
        MsgCommand::Decode { file, json } => {
            let bytes = read(&file)?;
            let encoding = Encoding::sniff(&bytes);
            let message = encoding
                .decode(&bytes)
                .with_context(|| format!("{} is not a valid DM message", named(&file)))?;
            let out = if json {
                let mut text = serde_json::to_vec_pretty(&message).context("cannot write JSON")?;
                text.push(b'\n');
                text
            } else {
                indent(&Encoding::Xml.encode(&message)?)?
            };
            write(None, &out)
        }
        MsgCommand::Encode {
            wbxml: _,
            file,
            output,
        } => {
            let bytes = read(&file)?;
            let message = Encoding::Xml
                .decode(&bytes)
                .with_context(|| format!("{} is not a valid DM XML message", named(&file)))?;
            write(output.as_ref(), &Encoding::Wbxml.encode(&message)?)
        }
    }
}

/// How a message's source is named in an error.
fn named(file: &Path) -> String {
    match file.as_os_str() == "-" {
        true => "standard input".into(),
        false => file.display().to_string(),
    }
}

/// The bytes of `file`, or of standard input when it is `-`.
fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .context("cannot read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn write(output: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .context("cannot write to standard output")
        }
    }
}

/// Re-indents compact XML for reading; text and CDATA are kept as they are.
fn indent(xml: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::with_capacity(xml.len() * 2), b' ', 2);
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .context("cannot re-read the encoded XML")?
        {
            Event::Eof => break,
            event => writer.write_event(event).context("cannot indent the XML")?,
        }
        buf.clear();
    }
    let mut out = writer.into_inner();
    out.push(b'\n');
    Ok(out)
}
