//! File-system watching with `notify`. Directories, not files, are watched: editors
//! and certbot replace files by rename, which a watch on the file itself would lose.
//! Events are only hints; `Sources` re-stats what they name.

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use super::Trigger;

pub struct DirWatcher {
    inner: Option<RecommendedWatcher>,
    failed: usize,
    watching: usize,
}

impl DirWatcher {
    pub fn new(tx: Sender<Trigger>) -> DirWatcher {
        let handler = move |res: notify::Result<notify::Event>| {
            let trigger = match res {
                Ok(event) if event.need_rescan() => Trigger::Rescan,
                Ok(event) if is_content_event(&event.kind) => Trigger::Paths(event.paths),
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "file watcher error; rescanning");
                    Trigger::Rescan
                }
            };
            let _ = tx.send(trigger);
        };
        match notify::recommended_watcher(handler) {
            Ok(w) => DirWatcher {
                inner: Some(w),
                failed: 0,
                watching: 0,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; changes apply on SIGHUP only");
                DirWatcher {
                    inner: None,
                    failed: 0,
                    watching: 0,
                }
            }
        }
    }

    pub fn watch(&mut self, dir: &Path) {
        let Some(w) = &mut self.inner else { return };
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => self.watching += 1,
            Err(e) => self.watch_failed(dir, &e),
        }
    }

    fn watch_failed(&mut self, dir: &Path, e: &notify::Error) {
        self.failed += 1;
        // Past the inotify limit every further watch fails too: say it once.
        if self.failed == 1 {
            tracing::warn!(
                dir = %dir.display(), error = %e,
                "cannot watch a directory; changes there apply on SIGHUP (raise fs.inotify.max_user_watches if this is the limit)"
            );
        }
    }

    pub fn unwatch(&mut self, dir: &Path) {
        if let Some(w) = &mut self.inner
            && w.unwatch(dir).is_ok()
        {
            self.watching -= 1;
        }
    }

    /// Directories being watched now.
    pub fn watching(&self) -> usize {
        self.watching
    }

    pub fn apply(&mut self, add: &[PathBuf], remove: &[PathBuf]) {
        for dir in remove {
            self.unwatch(dir);
        }
        for dir in add {
            self.watch(dir);
        }
    }
}

fn is_content_event(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}
