//! The `stsedge` binary: parse the command line, set up logging, run the command.

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = stsedge::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("STSEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
