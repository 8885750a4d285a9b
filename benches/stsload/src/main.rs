//! `stsload`: the stsedge benchmark toolkit — fixture generator, verified load
//! generator and in-memory rustls ceiling. This file owns only the command line;
//! each subcommand lives in its own module.
//!
//! It deliberately does not link the stsedge crate: it checks a running server
//! against SPEC.md from the outside, the way nginx can be checked with it too.

mod ceiling;
mod cpu;
mod fixture;
mod manifest;
mod policy;
mod run;
mod summary;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "stsload",
    version,
    about = "Benchmark toolkit for stsedge (and nginx, for comparison)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a benchmark world: CA, per-tenant certificates and tenant files,
    /// stsedge.toml, an equivalent nginx.conf, and manifest.tsv.
    Fixture {
        /// Number of tenants (t000001.bench.example …).
        #[arg(long)]
        tenants: u32,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// stsedge's HTTPS port in stsedge.toml.
        #[arg(long, default_value_t = 8443)]
        http_port: u16,
        /// stsedge's admin port in stsedge.toml.
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
        /// nginx's HTTPS port in nginx.conf [default: http-port + 1].
        #[arg(long)]
        nginx_port: Option<u16>,
        /// Generator threads [default: available cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Replace an existing fixture in --out.
        #[arg(long)]
        force: bool,
    },
    /// Drive verified policy fetches at a server and report throughput, latency,
    /// errors and server/loader CPU.
    ///
    /// Certificates are checked by the SHA-256 of the leaf (from manifest.tsv), not
    /// by chain validation, and handshake signatures are NOT verified unless
    /// --verify-signatures is given: that keeps the loader's per-handshake cost well
    /// below the server's so the loader is not what is measured.
    Run {
        /// Server address, e.g. 127.0.0.1:8443.
        #[arg(long)]
        target: SocketAddr,
        /// Fixture directory (reads manifest.tsv).
        #[arg(long)]
        fixture: PathBuf,
        #[arg(long, value_enum, default_value_t = run::Mode::Full)]
        mode: run::Mode,
        /// Concurrent tasks (connections in flight).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Measured window in seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Unmeasured warm-up in seconds before the window.
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        /// Stop after this many requests even if time remains.
        #[arg(long)]
        max_requests: Option<u64>,
        /// Open loop: start requests at this total rate (spread over the tasks) and
        /// measure latency from each request's due time, so queueing behind a slow
        /// server counts. Default: closed loop (as fast as responses come back).
        #[arg(long)]
        rate: Option<f64>,
        /// In resume mode, do NOT first visit every tenant once (unmeasured) to fill
        /// the session cache; the window then mixes first-visit full handshakes in.
        #[arg(long)]
        no_prime: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the JSON report to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Print a one-line summary instead of the full text report.
        #[arg(long)]
        brief: bool,
        /// Server process to charge CPU to (repeatable; descendants are included, so
        /// nginx's master pid also covers its worker).
        #[arg(long = "server-pid")]
        server_pid: Vec<u32>,
        /// Exit 0 even if there were errors or mismatches.
        #[arg(long)]
        allow_errors: bool,
        /// Really verify handshake signatures (costs the loader one ECDSA verify per
        /// full handshake). Off by default.
        #[arg(long)]
        verify_signatures: bool,
        /// Use TLS 1.2 instead of TLS 1.3.
        #[arg(long)]
        tls12: bool,
        /// TLS 1.3 cipher suite the client lists first (servers follow client order
        /// by default, so this decides the suite).
        #[arg(long, value_enum, default_value_t = tls::Suite::Aes256)]
        suite: tls::Suite,
        /// Runtime threads: 1 = tokio current-thread runtime (pin with taskset).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Per-request timeout in seconds (counted as a `timeout` error).
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Seed for tenant choice, for repeatable runs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// In-memory rustls ceiling: server CPU per full and per resumed TLS 1.3
    /// handshake with no sockets, runtime or HTTP.
    Ceiling {
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
    /// Print the A/B table and median ratios from compare.sh's results.jsonl.
    Summarize {
        /// JSON lines: {"round","server","mode","concurrency","rc","report"}.
        results: PathBuf,
    },
}

fn secs(v: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("--{what} must be a non-negative number of seconds"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Fixture {
            tenants,
            out,
            http_port,
            admin_port,
            nginx_port,
            threads,
            force,
        } => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            fixture::generate(&fixture::FixtureOptions {
                tenants,
                out,
                https_port: http_port,
                admin_port,
                nginx_port: nginx_port.unwrap_or(http_port.wrapping_add(1)),
                threads,
                force,
            })
        }
        Command::Run {
            target,
            fixture,
            mode,
            concurrency,
            duration,
            warmup,
            max_requests,
            rate,
            no_prime,
            json,
            json_out,
            brief,
            server_pid,
            allow_errors,
            verify_signatures,
            tls12,
            suite,
            threads,
            timeout,
            seed,
        } => {
            let code = run::run(run::RunOptions {
                target,
                fixture,
                mode,
                concurrency,
                duration: secs(duration, "duration")?,
                warmup: secs(warmup, "warmup")?,
                max_requests,
                rate,
                prime: !no_prime,
                json,
                json_out,
                brief,
                server_pids: server_pid,
                allow_errors,
                verify_signatures,
                tls12,
                suite,
                threads,
                timeout: secs(timeout, "timeout")?,
                seed,
            })?;
            std::process::exit(code);
        }
        Command::Ceiling { iterations, json } => ceiling::ceiling(iterations, json),
        Command::Summarize { results } => summary::summarize(&results),
    }
}
