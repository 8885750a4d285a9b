//! The `stsedge` binary: parse the command line, set up logging, run the command.

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = stsedge::cli::Cli::parse();
    // hickory logs every DNS query at info and some hostile packets at warn: keep that
    // per-packet chatter out of the service log unless it is asked for by name.
    let spec = std::env::var("STSEDGE_LOG").unwrap_or_else(|_| "info".into());
    let quiet = |s: &str| format!("{s},hickory_server=error,hickory_net=error,hickory_proto=error");
    let spec = if spec.contains("hickory") {
        spec
    } else {
        quiet(&spec)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet("info")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match stsedge::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("stsedge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
