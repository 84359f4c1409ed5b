//! `gwmo device`: the End Device agent, and `gwmo device tree` to look inside a
//! device's stored DM tree.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gwmo_device::{Agent, DeviceSettings, StateDir};
use gwmo_session::Trigger;
use gwmo_tree::Tree;
use serde_json::{Map, Value, json};

use crate::ConfigArgs;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: Option<DeviceCommand>,
    #[command(flatten)]
    config: ConfigArgs,
    /// The directory holding the device's DM tree (overrides `state_dir`).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Hold one session (with `--server-id`, or every account) and exit; non-zero if it failed.
    #[arg(long)]
    once: bool,
    /// With `--once`: the ServerID of the account to open a session with.
    #[arg(long, value_name = "ID")]
    server_id: Option<String>,
    /// Forget the stored state (the DM tree, every account servers and gateways gave
    /// it) and start as a device fresh from the factory.
    #[arg(long)]
    reset_state: bool,
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Print a device's DM tree.
    Tree {
        #[arg(long, value_name = "DIR", required = true)]
        state: PathBuf,
        /// As JSON (nested objects: value, format, acl, children).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: DeviceArgs) -> anyhow::Result<()> {
    if let Some(DeviceCommand::Tree { state, json }) = args.command {
        return print_tree(&state, json);
    }
    let mut settings: DeviceSettings = crate::config::load(args.config.config.as_deref())?;
    if let Some(state) = args.state {
        settings.state_dir = state;
    }
    settings.tls.plain_http |= args.config.plain_http;
    if args.config.print_config {
        return crate::config::print(&settings, "DeviceSettings", args.config.all);
    }
    if args.reset_state {
        let dir = settings.state_path();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove the state in {}", dir.display()))?;
            tracing::warn!(dir = %dir.display(), "stored state removed (--reset-state): starting fresh from the factory");
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let agent = Arc::new(Agent::open(settings)?);
        let listener = match agent.settings().listen {
            Some(addr) => {
                let listener = gwmo_device::notify::bind(&agent, addr).await?;
                agent.set_notify_url(&listener.url).await?;
                tracing::info!(url = %listener.url, "taking package 0");
                Some(listener)
            }
            None => None,
        };
        if args.once {
            return once(&agent, args.server_id.as_deref()).await;
        }
        let notify = listener.map(|listener| {
            tokio::spawn(gwmo_device::notify::serve(
                agent.clone(),
                listener,
                crate::daemon::shutdown_signal(),
            ))
        });
        crate::daemon::reload_on_hangup(args.config.config.clone());
        crate::daemon::notify_ready();
        agent.run(crate::daemon::shutdown_signal()).await;
        if let Some(task) = notify {
            task.abort();
        }
        Ok(())
    })
}

async fn once(agent: &Agent, server_id: Option<&str>) -> anyhow::Result<()> {
    let reports = match server_id {
        Some(id) => vec![agent.session(id, Trigger::Client, None, Vec::new()).await],
        None => agent.session_with_all(Trigger::Client).await,
    };
    if reports.is_empty() {
        bail!("the device has no DM account: add one under [[accounts]] in its configuration");
    }
    for report in reports {
        let report = report?;
        println!(
            "session {} with {}: {:?} after {} server message(s)",
            report.session_id, report.server_id, report.outcome, report.messages
        );
    }
    Ok(())
}

fn print_tree(state: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let tree = StateDir::open(state)?
        .load_tree()?
        .with_context(|| format!("no device state in {}", state.display()))?;
    if json {
        let value = node_json(&tree, ".");
        println!(
            "{}",
            serde_json::to_string_pretty(&value).context("cannot write JSON")?
        );
    } else {
        let mut out = String::new();
        node_text(&tree, ".", 0, &mut out);
        print!("{out}");
    }
    Ok(())
}

fn node_json(tree: &Tree, uri: &str) -> Value {
    let mut node = Map::new();
    if let Some(format) = tree.format(uri) {
        node.insert("format".into(), json!(format.as_str()));
    }
    if let Some(acl) = tree.acl(uri) {
        node.insert("acl".into(), json!(acl.to_string()));
    }
    match tree.children(uri) {
        Some(children) => {
            let children: Map<String, Value> = children
                .into_iter()
                .map(|name| (name.to_owned(), node_json(tree, &format!("{uri}/{name}"))))
                .collect();
            node.insert("children".into(), Value::Object(children));
        }
        None => {
            node.insert("value".into(), json!(tree.value(uri)));
        }
    }
    Value::Object(node)
}

fn node_text(tree: &Tree, uri: &str, depth: usize, out: &mut String) {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    let pad = "  ".repeat(depth);
    match tree.children(uri) {
        Some(children) => {
            out.push_str(&format!("{pad}{name}/\n"));
            for child in children {
                node_text(tree, &format!("{uri}/{child}"), depth + 1, out);
            }
        }
        None => out.push_str(&format!(
            "{pad}{name} = {}\n",
            tree.value(uri).unwrap_or("")
        )),
    }
}
