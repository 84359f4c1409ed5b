//! `gwmo`: every gwmo role behind one command, plus the message codec tool.
//! The command line is a contract (docs/DECISIONS.md §5): tests and operators rely on it.

mod bootstrap;
mod certs;
mod config;
mod daemon;
mod demo;
mod device;
mod gateway;
mod msg;
mod operator;
mod server;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gwmo",
    version,
    about = "OMA DM 1.2 with DM Gateway bootstrapping on End Devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every role in one process on loopback, narrated, with a table of what was verified.
    Demo(demo::DemoArgs),
    /// Run a DM Server.
    Server(server::ServerArgs),
    /// Run a DM Gateway.
    Gateway(gateway::GatewayArgs),
    /// Run a standalone Local DM Bootstrap Server.
    Bootstrap(bootstrap::BootstrapArgs),
    /// Run an End Device agent, or inspect a device's state.
    Device(device::DeviceArgs),
    /// Decode and encode SyncML DM messages (XML and WBXML).
    Msg {
        #[command(subcommand)]
        command: msg::MsgCommand,
    },
    /// Rehearse a rollout: many End Devices and Gateways against real DM Servers.
    Sim(sim::SimArgs),
    /// Manage the admin API's operator accounts (viewer, operator, admin).
    Operator(operator::OperatorArgs),
    /// Make a development CA and certificates for the roles' listeners (TLS is on by
    /// default).
    Certs(certs::CertsArgs),
}

/// `--config FILE` and `--print-config`, shared by every role.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// The role's TOML configuration; every key has a default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Serve and call plain HTTP, without TLS (`plain_http` under `[tls]`): for closed
    /// test networks only; logged as a warning.
    #[arg(long)]
    pub plain_http: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout (the lapses and refusals it shows on purpose would
    // log warnings) and the simulator prints a summary: their logs stay quiet unless
    // RUST_LOG asks.
    init_logging(match cli.command {
        Command::Demo(_) | Command::Sim(_) => "error",
        _ => "warn,gwmo=info",
    });
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Server(args) => server::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::Device(args) => device::run(args),
        Command::Msg { command } => msg::run(command),
        Command::Sim(args) => sim::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Operator(args) => operator::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gwmo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` chooses what, else `default`.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}
