//! `gwmo`: every gwmo role behind one command, plus the message codec tool.
//! The command line is a contract (docs/DECISIONS.md §5): tests and operators rely on it.

mod bootstrap;
mod certs;
mod config;
mod daemon;
mod demo;
mod device;
mod gateway;
mod logging;
mod msg;
mod operator;
mod reference;
mod server;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's allocator: a DM message allocates for its parsed
/// model, its answer and its store rows, and glibc's malloc and free were a seventh
/// of the server's CPU in a rollout (BENCHMARKS.md, issue 16).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gwmo",
    version,
    about = "OMA DM 1.2 with DM Gateway bootstrapping on End Devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to standard error: `text` (coloured only on a
    /// terminal) or `json` (one object a line, for journald and log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
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
    /// With --print-config: every key, each after what it does, the unset ones
    /// commented out (docs/CONFIG.md is this for every role).
    #[arg(long, requires = "print_config")]
    pub all: bool,
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
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Sim(_));
    logging::init(
        if quiet { "error" } else { "warn,gwmo=info" },
        cli.log_format,
    );
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
            eprintln!("gwmo: {}", said_once(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes joined with ": ", each said once: a wrapper whose message
/// already shows its cause's text is not followed by that text again.
fn said_once(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

/// Logs go to stderr; `RUST_LOG` chooses what, else `default`. Colours only when
/// stderr is a terminal: a file or journald gets plain text.
#[cfg(test)]
mod tests {
    use super::*;

    /// An error that shows its cause in its own message, as `#[error("TLS: {0}")]` does.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "TLS: {}", self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_message_already_shows_is_not_said_again() {
        let cause = std::io::Error::other("cannot read server.pem");
        let error = anyhow::Error::from(Wrapper(cause)).context("the server cannot start");
        assert_eq!(
            said_once(&error),
            "the server cannot start: TLS: cannot read server.pem"
        );
        let plain = anyhow::anyhow!("one").context("two");
        assert_eq!(said_once(&plain), "two: one");
    }
}
