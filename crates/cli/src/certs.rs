//! `gwmo certs`: a development CA and the certificates it issues, for trying gwmo out
//! with TLS on (its default) before real certificates exist.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Where the CA (`ca.pem`, `ca-key.pem`; made on first use, reused after) and the
    /// certificates are written.
    #[arg(long, value_name = "DIR", default_value = "gwmo-pki")]
    dir: PathBuf,
    /// The certificate's file name: `<NAME>.pem` and `<NAME>-key.pem`.
    #[arg(long, default_value = "server")]
    name: String,
    /// A host name or IP address the certificate is valid for (repeatable).
    #[arg(long = "host", value_name = "HOST", default_values = ["localhost", "127.0.0.1", "::1"])]
    hosts: Vec<String>,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let issued = gwmo_net::certs::issue(&args.dir, &args.name, &args.hosts)
        .with_context(|| format!("cannot issue {} in {}", args.name, args.dir.display()))?;
    println!(
        "{} for {}, issued by the development CA {}.\n\
         Every role that listens presents it, and every role trusts the CA:\n\n\
         [tls]\ncertificate = {:?}\nprivate_key = {:?}\nca = {:?}",
        issued.certificate.display(),
        args.hosts.join(", "),
        issued.ca.display(),
        absolute(&issued.certificate),
        absolute(&issued.private_key),
        absolute(&issued.ca),
    );
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
