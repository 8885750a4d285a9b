//! `stsedge serve`: bind, load, publish, serve; reload on events and SIGHUP; drain on
//! SIGTERM/SIGINT.

use arc_swap::ArcSwap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::CliError;
use crate::admin::Admin;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::reload::{Reloader, Sources, Trigger, status_line};
use crate::server::{Edge, bind};
use crate::snapshot::Snapshot;
use crate::tls::{SniResolver, provider, server_config};

pub fn run(config_path: &Path) -> Result<ExitCode, CliError> {
    let config = ServerConfig::load(config_path).map_err(CliError::Config)?;
    let listen = |addr| {
        bind(addr).map_err(|source| CliError::Listen {
            addr,
            error: source,
        })
    };
    let https: Vec<std::net::TcpListener> = config
        .https
        .listen
        .iter()
        .copied()
        .map(listen)
        .collect::<Result<_, _>>()?;
    let admin_listener = listen(config.admin.listen)?;
    let dns: Vec<crate::dns::DnsSockets> = config
        .dns
        .iter()
        .flat_map(|d| d.listen.iter().copied())
        .map(|addr| {
            crate::dns::bind(addr).map_err(|source| CliError::Listen {
                addr,
                error: source,
            })
        })
        .collect::<Result<_, _>>()?;
    // `available_parallelism` honours CPU affinity and cgroup quotas, so a server pinned
    // to one core runs one worker.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One core: a current-thread runtime, without the work-stealing machinery a single
    // worker cannot use.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = builder.enable_all().thread_name("stsedge-worker").build()?;
    runtime.block_on(serve(config, https, admin_listener, dns))
}

async fn serve(
    config: ServerConfig,
    https: Vec<std::net::TcpListener>,
    admin_listener: std::net::TcpListener,
    dns: Vec<crate::dns::DnsSockets>,
) -> Result<ExitCode, CliError> {
    // Before anything can tell systemd or a supervisor we exist: a signal that arrives
    // early must be handled, not kill the process with the default action.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let https: Vec<TcpListener> = https
        .into_iter()
        .map(TcpListener::from_std)
        .collect::<Result<_, _>>()?;
    let admin_listener = TcpListener::from_std(admin_listener)?;
    let https_addrs: Vec<String> = https
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let admin_addr = admin_listener.local_addr()?;
    let dns_addrs: Vec<String> = dns
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let dns_field = (!dns_addrs.is_empty()).then(|| dns_addrs.join(","));
    let dns_field = dns_field.as_deref().map(tracing::field::display);
    tracing::info!(https = %https_addrs.join(","), admin = %admin_addr, dns = dns_field, "listening; loading tenants");

    let metrics = Arc::new(Metrics::new());
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty(Arc::new(
        config.clone(),
    ))));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = Arc::new(Admin {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        ready: false.into(),
    });
    tokio::spawn(admin.clone().serve(admin_listener, stop_rx.clone()));

    let started = std::time::Instant::now();
    let provider = provider();
    // HTTPS serves from the first partial snapshot on; a name not loaded yet waits for
    // the end of the load instead of being refused.
    let (loading_tx, loading_rx) = tokio::sync::watch::channel(true);
    let tls = server_config(
        provider.clone(),
        Arc::new(SniResolver::new(snapshot.clone())),
    )?;
    // Limits are fixed for the life of the process (the connection cap sizes a semaphore).
    let edge = Edge::new(
        snapshot.clone(),
        tls,
        metrics.clone(),
        config.limits.clone(),
        stop_rx.clone(),
        loading_rx,
    );
    let accept_loops: Vec<_> = https
        .into_iter()
        .map(|l| tokio::spawn(edge.clone().serve(l)))
        .collect();
    let (sources, first) = {
        let shared = snapshot.clone();
        tokio::task::spawn_blocking(move || {
            let mut sources = Sources::new(config, provider);
            let mut first_partial = true;
            let first = sources.initial_progressive(&mut |partial| {
                if first_partial {
                    tracing::info!(
                        tenants = partial.tenant_count(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "serving while loading the rest"
                    );
                    first_partial = false;
                }
                shared.store(Arc::new(partial));
            });
            (sources, first)
        })
        .await
        .expect("initial load panicked")
    };
    metrics.published(&first);
    snapshot.store(Arc::new(first));
    let _ = loading_tx.send(false);
    admin.ready.store(true, Ordering::Release);

    let (tx, rx) = std::sync::mpsc::channel();
    let reloader =
        Reloader::new(sources, snapshot.clone(), metrics.clone(), tx.clone(), rx).spawn();
    // After the first snapshot: an empty zone would answer NXDOMAIN, and resolvers
    // cache that. Queries sent meanwhile wait in the socket buffers.
    let dns_task = if dns.is_empty() {
        None
    } else {
        let handler = crate::dns::DnsHandler::new(snapshot.clone(), metrics.clone());
        Some(crate::dns::spawn(dns, handler, stop_rx.clone())?)
    };

    let status = status_line(&snapshot.load());
    tracing::info!(
        https = %https_addrs.join(","), admin = %admin_addr, dns = dns_field,
        tenants = snapshot.load().tenant_count(),
        took_ms = started.elapsed().as_millis() as u64,
        "ready; {status}"
    );
    crate::systemd::ready(&status);
    crate::systemd::spawn_watchdog();

    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = tx.send(Trigger::Sighup);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!("stopping: no new connections; draining open ones");
    crate::systemd::stopping();
    let _ = stop_tx.send(true);
    for l in accept_loops {
        let _ = l.await;
    }
    if let Some(t) = dns_task {
        let _ = t.await;
    }
    let left = edge.drain().await;
    if left > 0 {
        tracing::warn!(connections = left, "drain timed out; closing the rest");
    } else {
        tracing::info!("drained");
    }
    let _ = tx.send(Trigger::Stop);
    let _ = tokio::task::spawn_blocking(move || reloader.join()).await;
    Ok(ExitCode::SUCCESS)
}
