//! `stsedge verify DOMAIN`: load the tenant from the files, run [`crate::verify`], print
//! the report (text or JSON); exit 0 only if every check passed.

use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::CliError;
use crate::config::ServerConfig;
use crate::domain::DomainName;
use crate::reload::Sources;
use crate::verify::{self, DEFAULT_HTTPS_PORT, DEFAULT_SMTP_PORT, Expected, Options, VerifyError};

/// Options of every command that queries DNS or connects out (SPEC §1); `tenant add
/// --mx-from-dns` flattens these too.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// The DNS server to ask (UDP, TCP on truncation); default: the system resolver.
    #[arg(long, value_name = "ADDR:PORT")]
    pub resolver: Option<SocketAddr>,
    /// Extra trust anchors (PEM) besides the public web roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The tenant's domain.
    pub domain: String,
    #[command(flatten)]
    pub net: NetArgs,
    /// The port each MX is probed on.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_SMTP_PORT)]
    pub smtp_port: u16,
    /// For testing: the port the policy is fetched from instead of 443.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_HTTPS_PORT)]
    pub https_port: u16,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_path: &Path, args: VerifyArgs) -> Result<ExitCode, CliError> {
    let domain = DomainName::parse(&args.domain).map_err(|e| VerifyError::BadDomain {
        domain: args.domain.clone(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::load(config_path).map_err(CliError::Config)?;
    let helo = helo_name(&config);
    let dns = config.dns.clone();
    let tenants_dir = config.tenants_dir.clone();
    let snapshot = Sources::read_only(config, crate::tls::provider()).initial_only(&domain);
    let tenant = snapshot
        .tenant(domain.as_str())
        .ok_or_else(|| VerifyError::UnknownTenant {
            domain: domain.to_string(),
            dir: tenants_dir,
        })?;
    let expected = Expected::from_tenant(tenant, dns, helo);
    let opts = Options {
        resolver: args.net.resolver,
        ca_file: args.net.ca_file,
        smtp_port: args.smtp_port,
        https_port: args.https_port,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(verify::verify(&expected, &opts))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serialises")
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The name given in `EHLO`: the hosting zone, else the report host, else the system
/// host name.
fn helo_name(config: &ServerConfig) -> String {
    if let Some(dns) = &config.dns {
        return dns.zone.to_string();
    }
    if let Some(t) = &config.tlsrpt {
        return t.host.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| DomainName::parse(h).is_ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
