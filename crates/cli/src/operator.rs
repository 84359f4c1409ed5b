//! `gwmo operator`: the admin API's operator accounts, in the store of the server the
//! configuration names (with an SQLite store, while that server is stopped; the API's
//! `/api/operators` does the same while it runs).

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use gwmo_server::{OperatorAccounts, Role, ServerSettings};

#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// The server's TOML configuration (its `database` is used).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Make an account; its token is printed once (only its digest is kept).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List the accounts: name, role, created.
    List,
    /// Remove an account: its token stops working at once.
    Remove { name: String },
}

/// What an operator may do.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    /// Read everything but operators and the audit log.
    Viewer,
    /// Also enroll devices, queue and cancel commands, wake devices, send fan-outs.
    Operator,
    /// Also manage operators, gateways, decommissioning, authentication; read the audit log.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

pub fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let settings: ServerSettings = crate::config::load(args.config.as_deref())?;
    let accounts = OperatorAccounts::open(&settings.database)
        .with_context(|| format!("cannot open the store {}", settings.database))?;
    match args.command {
        OperatorCommand::Add { name, role } => {
            let token = accounts.add(&name, role.into())?;
            eprintln!(
                "operator {name:?} added as {}: its token follows, shown this once",
                Role::from(role).name()
            );
            println!("{token}");
        }
        OperatorCommand::List => {
            for (name, role, created_at) in accounts.list()? {
                println!("{name}\t{}\t{created_at}", role.name());
            }
        }
        OperatorCommand::Remove { name } => {
            if !accounts.remove(&name)? {
                anyhow::bail!("there is no operator named {name:?}");
            }
            eprintln!("operator {name:?} removed");
        }
    }
    Ok(())
}
