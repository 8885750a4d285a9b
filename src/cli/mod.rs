//! The command line (SPEC §1). Each command is a function returning an exit code;
//! `main` only parses arguments and prints the error.

mod check;
mod records;
mod serve;
mod tenant;
mod verify;

pub use verify::NetArgs;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{ConfigError, DEFAULT_CONFIG_PATH};

#[derive(Parser, Debug)]
#[command(name = "stsedge", version, about = "Multi-tenant MTA-STS policy host")]
pub struct Cli {
    /// The server configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server until SIGTERM/SIGINT; SIGHUP reloads.
    Serve,
    /// Validate the config, every tenant and every certificate; exit 0 only if all good.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add, change, remove and inspect tenants.
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    /// The zone-file lines the customer adds for DOMAIN.
    Records {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Live checks over the network: CNAMEs, TXT, the HTTPS policy, MX coverage and
    /// STARTTLS on every MX; says whether `enforce` is safe; exit 0 only if all pass.
    Verify(verify::VerifyArgs),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigError>),
    #[error(
        "cannot listen on {addr} ({error}); free the port, or give the service CAP_NET_BIND_SERVICE for ports below 1024"
    )]
    Listen {
        addr: SocketAddr,
        // Not `source`: the message already says it, and main prints the source chain.
        error: std::io::Error,
    },
    /// A wrong argument or a state the command cannot act on; the message says what to do.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Verify(#[from] crate::verify::VerifyError),
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Serve => serve::run(&cli.config),
        Command::Check { json } => check::run(&cli.config, json),
        Command::Tenant { command } => tenant::run(&cli.config, command),
        Command::Records { domain, json } => records::run(&cli.config, &domain, json),
        Command::Verify(args) => verify::run(&cli.config, args),
    }
}
