//! The reloader: turns file events, SIGHUP and certificate expiry into new snapshots.
//!
//! It runs on its own thread, so building a snapshot (file reads, key parsing) never
//! competes with the request path for a runtime worker. It is the only writer of the
//! `ArcSwap<Snapshot>`; a failed or partial change never unpublishes what was serving.

mod parallel;
mod sources;
mod watcher;

pub use parallel::par_map;
pub use sources::Sources;

use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::tls::unix_now;
use watcher::DirWatcher;

/// Editors write a file in several steps; wait this long without events before acting.
const QUIET: Duration = Duration::from_millis(5);
/// …but never longer than this after the first event of a burst.
const MAX_BATCH: Duration = Duration::from_millis(100);

pub enum Trigger {
    /// Something changed at these paths (files or directories).
    Paths(Vec<PathBuf>),
    /// Re-read everything that changed (SIGHUP, or the watcher lost events).
    Rescan,
    /// SIGHUP: like `Rescan`, and tell systemd RELOADING/READY around it.
    Sighup,
    Stop,
}

pub struct Reloader {
    sources: Sources,
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    watcher: DirWatcher,
    rx: Receiver<Trigger>,
}

impl Reloader {
    pub fn new(
        sources: Sources,
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        tx: Sender<Trigger>,
        rx: Receiver<Trigger>,
    ) -> Reloader {
        Reloader {
            sources,
            snapshot,
            metrics,
            watcher: DirWatcher::new(tx),
            rx,
        }
    }

    pub fn spawn(self) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("stsedge-reload".into())
            .spawn(move || self.run())
            .expect("spawning the reloader thread")
    }

    fn run(mut self) {
        // Watches are set up here, off the start-up path (one inotify watch per
        // certificate directory adds up at 100 000 tenants); whatever changed between the
        // initial load and now is caught by one rescan.
        self.sync_watches();
        self.publish("watching", |s, cur| s.rescan(cur));
        tracing::info!(dirs = self.watcher.watching(), "watching for changes");
        loop {
            let timeout = self.until_next_deadline();
            let first = match self.rx.recv_timeout(timeout) {
                Ok(t) => t,
                Err(RecvTimeoutError::Timeout) => {
                    self.publish("expiry", |s, cur| s.revalidate(cur));
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let Some(batch) = self.collect(first) else {
                return;
            };
            let config_path = self.sources.config().path.clone();
            let config_touched = batch.paths.contains(&config_path);
            if batch.sighup {
                crate::systemd::reloading();
            }
            if batch.rescan || config_touched {
                let trigger = if batch.sighup { "sighup" } else { "rescan" };
                self.publish(trigger, |s, cur| s.rescan(cur));
            } else {
                let paths = batch.paths;
                self.publish("event", |s, cur| s.apply_events(&paths, cur));
            }
            if batch.sighup {
                let snap = self.snapshot.load();
                crate::systemd::ready(&status_line(&snap));
            }
        }
    }

    /// Gathers a burst of triggers. `None` means stop.
    fn collect(&self, first: Trigger) -> Option<Batch> {
        let mut batch = Batch::default();
        let started = Instant::now();
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Trigger::Stop) => return None,
                Some(Trigger::Paths(p)) => batch.paths.extend(p),
                Some(Trigger::Rescan) => batch.rescan = true,
                Some(Trigger::Sighup) => {
                    batch.rescan = true;
                    batch.sighup = true;
                }
                None => {}
            }
            // A SIGHUP is an explicit request: answer it at once.
            if batch.sighup {
                return Some(batch);
            }
            let left = MAX_BATCH.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Some(batch);
            }
            match self.rx.recv_timeout(QUIET.min(left)) {
                Ok(t) => next = Some(t),
                Err(RecvTimeoutError::Timeout) => return Some(batch),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn publish(
        &mut self,
        trigger: &'static str,
        build: impl FnOnce(&mut Sources, &Snapshot) -> Option<Snapshot>,
    ) {
        let started = Instant::now();
        let current = self.snapshot.load_full();
        let next = build(&mut self.sources, &current);
        self.sync_watches();
        let Some(next) = next else {
            self.metrics.reload("unchanged");
            let took_ms = format_args!("{:.2}", started.elapsed().as_secs_f64() * 1e3);
            if trigger == "sighup" {
                tracing::info!(trigger, took_ms, "reload: nothing changed");
            } else {
                tracing::debug!(trigger, took_ms, "nothing changed");
            }
            return;
        };
        let generation = next.generation;
        let tenants = next.tenant_count();
        let problems = next.problems.len();
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        let took = started.elapsed();
        self.metrics.reload("applied");
        self.metrics.reload_seconds.observe(took.as_secs_f64());
        self.metrics.published(&next);
        tracing::info!(
            trigger,
            generation,
            tenants,
            problems,
            took_ms = format_args!("{:.2}", took.as_secs_f64() * 1e3),
            "snapshot published"
        );
    }

    fn sync_watches(&mut self) {
        let delta = self.sources.take_watch_delta();
        self.watcher.apply(&delta.add, &delta.remove);
    }

    fn until_next_deadline(&self) -> Duration {
        let now = unix_now();
        match self.snapshot.load().next_deadline(now) {
            // One second late is fine; early would rebuild for nothing.
            Some(t) => Duration::from_secs((t - now) as u64 + 1),
            None => Duration::from_secs(3600),
        }
    }
}

#[derive(Default)]
struct Batch {
    paths: Vec<PathBuf>,
    rescan: bool,
    sighup: bool,
}

pub fn status_line(snapshot: &Snapshot) -> String {
    let servable = snapshot.servable_count();
    format!(
        "serving {servable}/{} tenants, {} problems, generation {}",
        snapshot.tenant_count(),
        snapshot.problems.len(),
        snapshot.generation
    )
}
