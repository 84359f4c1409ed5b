//! `gwmo sim`: rehearse a rollout of many End Devices and DM Gateways against real
//! DM Server instances, with a progress bar, a summary table and a JSON report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use gwmo_sim::{ApproachMix, Servers, SimOptions};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// End Devices to roll out behind the gateways.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// End Devices the DM Server manages itself, without a gateway, besides those.
    #[arg(long, default_value_t = 0)]
    direct: usize,
    /// DM Gateways the devices are spread over.
    #[arg(long, default_value_t = 10)]
    gateways: usize,
    /// How devices reach their gateway (both: half each).
    #[arg(long, value_enum, default_value_t = ApproachArg::Both)]
    approach: ApproachArg,
    /// Devices rolling out at the same time.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// The store of the servers the simulator starts: an SQLite path or a
    /// postgres:// URL (default: an SQLite file in a scratch directory).
    #[arg(long, value_name = "PATH|URL")]
    db: Option<String>,
    /// Server instances to start on that store (several need PostgreSQL).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Use servers already running instead (base URL, repeatable), with `--admin-token`.
    #[arg(long, value_name = "URL", conflicts_with_all = ["db", "instances"])]
    server: Vec<String>,
    /// The admin token of the `--server`s.
    #[arg(long, requires = "server")]
    admin_token: Option<String>,
    /// Also measure raw HTTP round trips per second of the same stack (the ceiling).
    #[arg(long)]
    baseline: bool,
    /// Seconds a device waits for a session the other side starts.
    #[arg(long, default_value_t = 120)]
    wait_secs: u64,
    /// After the rollout, keep devices holding sessions for this many seconds, sampling
    /// the memory and file descriptors of the server and the simulator (0: no soak).
    #[arg(long, default_value_t = 0)]
    soak_secs: u64,
    /// Sessions started per second during the soak.
    #[arg(long, default_value_t = 50.0)]
    soak_rate: f64,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The development CA (`gwmo certs --dir DIR`) the simulated roles' certificates
    /// come from, and which they trust: `--server`s must present certificates from it.
    /// Default: a CA made for this run only.
    #[arg(long, value_name = "DIR")]
    pki: Option<PathBuf>,
    /// Plain HTTP everywhere, without TLS.
    #[arg(long)]
    plain_http: bool,
    /// After the rollout, a firmware campaign of an image of this many MiB to every
    /// device, through its gateway's image store: the WAN and LAN bytes, the time,
    /// every device's new version checked.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    firmware_mib: Option<u64>,
    /// After the rollout, a campaign over every device in waves of a tenth, with a
    /// threshold of 10 %: a quarter of the first wave lacks what it reads, so the
    /// campaign pauses; the simulator resumes it, retries the failed devices and
    /// reports the time, the rates and the servers' memory.
    #[arg(long)]
    campaign: bool,
    /// How often the servers the simulator starts sweep (and so move a campaign on);
    /// default: the server's own.
    #[arg(long, value_name = "SECS", conflicts_with = "server")]
    sweep_secs: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ApproachArg {
    ServerAssisted,
    Local,
    Both,
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.instances > 1 && !args.db.as_deref().is_some_and(gwmo_server::is_shared) {
        bail!("several server instances share one store: give --db postgres://...");
    }
    let servers = if args.server.is_empty() {
        Servers::Spawn {
            exe: std::env::current_exe().context("cannot find the gwmo binary")?,
            database: args.db,
            instances: args.instances,
            sweep_secs: args.sweep_secs,
        }
    } else {
        Servers::External {
            base_urls: args.server,
            admin_token: args.admin_token.context("--server needs --admin-token")?,
        }
    };
    let options = SimOptions {
        devices: args.devices,
        gateways: args.gateways,
        direct: args.direct,
        approach: match args.approach {
            ApproachArg::ServerAssisted => ApproachMix::ServerAssisted,
            ApproachArg::Local => ApproachMix::Local,
            ApproachArg::Both => ApproachMix::Both,
        },
        servers,
        concurrency: args.concurrency,
        baseline: args.baseline,
        wait: Duration::from_secs(args.wait_secs),
        progress: match std::io::stderr().is_terminal() {
            true => gwmo_sim::ProgressOutput::Bar,
            false => gwmo_sim::ProgressOutput::Lines,
        },
        soak: (args.soak_secs > 0).then(|| gwmo_sim::soak::SoakOptions {
            duration: Duration::from_secs(args.soak_secs),
            rate: args.soak_rate,
        }),
        plain_http: args.plain_http,
        pki: args.pki,
        firmware_mib: args.firmware_mib,
        campaign: args.campaign,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(gwmo_sim::run(options))?;
    print!("{report}");
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        gwmo_device::write_atomically(path, json.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if report.error_count() > 0 {
        bail!("{} error(s) in the simulation", report.error_count());
    }
    Ok(())
}
