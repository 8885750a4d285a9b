//! `Sources`: the file-backed side of the snapshot. It remembers what every tenant
//! file and certificate looked like when last read, so a change re-reads only the files
//! that changed and yields the next snapshot as a delta of the previous one.
//!
//! Rules it keeps:
//! - a file is re-read only when its identity (device, inode, size, times) changed;
//! - a bad tenant file or certificate never removes what was serving: the last good
//!   version stays, and the problem is put on the board (logged, counted, shown);
//! - a deleted tenant file removes the tenant.
//!
//! It runs on the reloader thread only; nothing here is reachable from a request.

use rustls::crypto::CryptoProvider;
use std::collections::BTreeMap;

/// Maps and sets keyed by long absolute paths and names, hashed with foldhash: a rescan
/// does tens of thousands of lookups, and nothing here is keyed by client input.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::decommission::{Decommission, marker_dir, marker_path, parse_marker};
use crate::config::{
    CertPaths, ConfigError, Location, ProblemKind, ServerConfig, TENANT_FILE_SUFFIX, TenantSpec,
    domain_of_file, parse_tenant, tenant_file_stem,
};
use crate::domain::DomainName;
use crate::snapshot::{
    CertStatus, POLICY_HOST_PREFIX, Phase, ServiceCert, Snapshot, SnapshotBuilder, Tenant,
};
use crate::tls::dev::DevCa;
use crate::tls::{CertOrigin, LoadedCert, check_names, load_pair, unix_now};

use super::parallel::par_map;
use crate::files::{self, FileIdentity};

struct TenantFile {
    domain: Option<DomainName>,
    identity: Option<FileIdentity>,
    /// The last version of the file that validated.
    good: Option<Arc<TenantSpec>>,
}

/// What is recorded of a tenant file: `None` never seen, `Some(None)` seen but not
/// readable as a file, `Some(Some(id))` the identity of the version last read.
type Recorded = Option<Option<FileIdentity>>;

/// Identities of a (certificate, key) pair's two files.
type CertIdentity = (Option<FileIdentity>, Option<FileIdentity>);

struct CertRecord {
    identity: CertIdentity,
    origin: CertOrigin,
    /// The last version of the pair that loaded.
    good: Option<(LoadedCert, Arc<[String]>)>,
    problem: Option<ConfigError>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ProblemKey {
    Config,
    TenantsDir,
    TenantFile(PathBuf),
    TenantCert(DomainName),
    Service,
}

/// Tenant files in the first published chunk of a progressive load.
const FIRST_CHUNK: usize = 1024;

/// Directories to start or stop watching after a change.
#[derive(Debug, Default)]
pub struct WatchDelta {
    pub add: Vec<PathBuf>,
    pub remove: Vec<PathBuf>,
}

pub struct Sources {
    config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
    dev_ca: Option<DevCa>,
    files: HashMap<PathBuf, TenantFile>,
    owner: HashMap<DomainName, PathBuf>,
    certs: HashMap<Arc<CertPaths>, CertRecord>,
    cert_users: HashMap<Arc<CertPaths>, Vec<DomainName>>,
    dev_certs: HashMap<DomainName, LoadedCert>,
    markers: HashMap<DomainName, Decommission>,
    /// For commands that only look (`check`, `tenant list/show`): never delete or
    /// create files.
    read_only: bool,
    board: BTreeMap<ProblemKey, Vec<ConfigError>>,
    watched: HashMap<PathBuf, usize>,
    watch_delta: WatchDelta,
    /// The board changed since the last snapshot was built from it.
    board_changed: bool,
    /// (device, inode) of each fixed watched directory when its watch was set.
    fixed_inodes: HashMap<PathBuf, Option<(u64, u64)>>,
}

impl Sources {
    pub fn new(config: ServerConfig, provider: Arc<CryptoProvider>) -> Sources {
        let mut sources = Sources {
            config: Arc::new(config),
            provider,
            dev_ca: None,
            files: HashMap::default(),
            owner: HashMap::default(),
            certs: HashMap::default(),
            cert_users: HashMap::default(),
            dev_certs: HashMap::default(),
            markers: HashMap::default(),
            read_only: false,
            board: BTreeMap::new(),
            watched: HashMap::default(),
            watch_delta: WatchDelta::default(),
            board_changed: false,
            fixed_inodes: HashMap::default(),
        };
        sources.open_dev_ca();
        for dir in sources.fixed_watch_dirs() {
            sources.fixed_inodes.insert(dir.clone(), dir_inode(&dir));
            sources.watch(dir);
        }
        sources
    }

    /// Sources for a command that only looks at the files.
    pub fn read_only(config: ServerConfig, provider: Arc<CryptoProvider>) -> Sources {
        let mut sources = Sources::new(config, provider);
        sources.read_only = true;
        sources
    }

    /// A snapshot holding only `domain` (for `tenant show`, without loading every
    /// other tenant's certificate).
    pub fn initial_only(&mut self, domain: &DomainName) -> Snapshot {
        let mut builder = SnapshotBuilder::new(self.config.clone(), 1);
        let path = self
            .config
            .tenants_dir
            .join(format!("{domain}{TENANT_FILE_SUFFIX}"));
        let mut domains = self.visit_tenant_files(&[path]);
        domains.extend(self.visit_markers());
        let domains: Vec<DomainName> = domains.into_iter().collect();
        self.prepare_certs(&domains);
        for d in &domains {
            self.rebuild(&mut builder, d);
        }
        builder.problems(self.problems());
        builder.build()
    }

    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    fn open_dev_ca(&mut self) {
        self.dev_ca = None;
        if !self.config.https.dev_self_signed {
            return;
        }
        tracing::warn!(
            state_dir = %self.config.state_dir.display(),
            "dev_self_signed is on: tenants without a certificate get one from a local development CA; NOT FOR PRODUCTION"
        );
        match DevCa::open_or_create(&self.config.state_dir) {
            Ok(ca) => self.dev_ca = Some(ca),
            Err(e) => self.set_problems(ProblemKey::Config, vec![e]),
        }
    }

    fn fixed_watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![
            self.config.base_dir.clone(),
            self.config.tenants_dir.clone(),
        ];
        // Created up front so `tenant rm` on a running server is seen at once.
        let markers = marker_dir(&self.config.state_dir);
        if markers.is_dir() || (!self.read_only && std::fs::create_dir_all(&markers).is_ok()) {
            dirs.push(markers);
        }
        let acme = self.config.state_dir.join("certs");
        if acme.is_dir() {
            dirs.push(acme);
        }
        dirs
    }

    /// Builds a whole snapshot from the files, as at start-up.
    pub fn initial(&mut self) -> Snapshot {
        let builder = SnapshotBuilder::new(self.config.clone(), 0);
        self.scan(builder, true, None).expect("forced")
    }

    /// Like `initial`, handing partial snapshots to `publish` as tenants load, so a
    /// restart of a large edge serves its first tenants within a fraction of a second.
    pub fn initial_progressive(&mut self, publish: &mut dyn FnMut(Snapshot)) -> Snapshot {
        let builder = SnapshotBuilder::new(self.config.clone(), 0);
        self.scan(builder, true, Some(publish)).expect("forced")
    }

    /// Re-reads `stsedge.toml`, then every tenant and certificate file whose identity
    /// changed (SIGHUP, or a change to the config file itself). `None` when nothing did.
    pub fn rescan(&mut self, current: &Snapshot) -> Option<Snapshot> {
        let mut builder = current.to_builder();
        let mut config_changed = false;
        match ServerConfig::load(&self.config.path) {
            Ok(new) if new != *self.config => {
                tracing::info!(file = %new.path.display(), "server configuration changed");
                if new.https.listen != self.config.https.listen
                    || new.admin.listen != self.config.admin.listen
                {
                    tracing::warn!(
                        "listen addresses changed; they take effect at the next restart"
                    );
                }
                let old_fixed = self.fixed_watch_dirs();
                let dev_changed = new.https.dev_self_signed != self.config.https.dev_self_signed
                    || new.state_dir != self.config.state_dir;
                self.config = Arc::new(new);
                for dir in old_fixed {
                    self.unwatch(&dir);
                }
                for dir in self.fixed_watch_dirs() {
                    self.watch(dir);
                }
                if dev_changed {
                    self.dev_certs.clear();
                    self.open_dev_ca();
                }
                self.set_problems(ProblemKey::Config, Vec::new());
                builder.config(self.config.clone());
                config_changed = true;
                // Every tenant may now resolve differently (paths, dev mode, ACME).
                let all: Vec<DomainName> = self.owner.keys().cloned().collect();
                for domain in all {
                    self.rebuild(&mut builder, &domain);
                }
            }
            Ok(_) => self.set_problems(ProblemKey::Config, Vec::new()),
            Err(errors) => {
                tracing::warn!(file = %self.config.path.display(), "server configuration rejected; keeping the running one");
                self.set_problems(ProblemKey::Config, errors);
            }
        }
        // A directory replaced by rename (a deploy of a whole new tenants/) keeps the
        // watch on the old inode: renew the watch of a fixed directory whose inode
        // changed. Only then: renewing drops the events queued for the old watch.
        for dir in self.fixed_watch_dirs() {
            let now = dir_inode(&dir);
            if self.watched.contains_key(&dir) && self.fixed_inodes.get(&dir) != Some(&now) {
                self.watch_delta.remove.push(dir.clone());
                self.watch_delta.add.push(dir.clone());
            }
            self.fixed_inodes.insert(dir, now);
        }
        self.scan(builder, config_changed, None)
    }

    /// Applies file events: `paths` are what the watcher reported (files or
    /// directories). Returns `None` when nothing served changed.
    pub fn apply_events(&mut self, paths: &[PathBuf], current: &Snapshot) -> Option<Snapshot> {
        let mut builder = current.to_builder();
        let mut changed = false;
        let mut tenant_paths = Vec::new();
        let mut dirs = HashSet::default();
        for path in paths {
            if path.parent() == Some(self.config.tenants_dir.as_path()) {
                // A tenant file: no certificate lives here, so no certificate scan.
                tenant_paths.push(path.clone());
                continue;
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
            dirs.insert(path.clone());
        }
        let mut domains = self.visit_tenant_files(&tenant_paths);
        if dirs.contains(&marker_dir(&self.config.state_dir)) {
            domains.extend(self.visit_markers());
        }
        // Certificates in a directory that had events: re-stat them all, since a
        // `..data` or `live/` symlink swap names the link, not the files.
        let in_dirs: Vec<(Arc<CertPaths>, CertIdentity)> = if dirs.is_empty() {
            Vec::new()
        } else {
            self.certs
                .iter()
                .filter(|(p, _)| {
                    [&p.cert, &p.key]
                        .iter()
                        .any(|f| f.parent().is_some_and(|d| dirs.contains(d)))
                })
                .map(|(p, r)| (p.clone(), r.identity))
                .collect()
        };
        for paths in self.visit_certs(in_dirs) {
            domains.extend(self.cert_users.get(&paths).into_iter().flatten().cloned());
            changed |= self.config.https.service_cert.as_ref() == Some(&paths);
        }
        // A directory appearing under STATE_DIR/certs is a new ACME certificate.
        let acme_root = self.config.state_dir.join("certs");
        for path in paths {
            if let Ok(rest) = path.strip_prefix(&acme_root)
                && let Some(first) = rest.components().next()
                && let Some(domain) = first
                    .as_os_str()
                    .to_str()
                    .and_then(|d| d.strip_prefix(POLICY_HOST_PREFIX))
                    .and_then(|d| DomainName::parse(d).ok())
                && self.owner.contains_key(&domain)
            {
                domains.insert(domain);
            }
        }
        if changed {
            self.refresh_service(&mut builder);
        }
        if domains.is_empty() && !changed && !self.board_changed {
            return None;
        }
        let mut domains: Vec<_> = domains.into_iter().collect();
        domains.sort();
        self.prepare_certs(&domains);
        for domain in &domains {
            self.rebuild(&mut builder, domain);
        }
        builder.problems(self.problems());
        Some(builder.build())
    }

    /// Rebuilds tenants whose certificate validity changed since they were built (a
    /// certificate expired, or became valid).
    pub fn revalidate(&mut self, current: &Snapshot) -> Option<Snapshot> {
        let now = unix_now();
        let stale: Vec<DomainName> = current
            .tenants()
            .filter(|t| {
                matches!(t.phase, Phase::Decommissioning { until, .. } if until <= now)
                    || cert_validity_changed(t, now, &self.certs)
            })
            .map(|t| t.domain.clone())
            .collect();
        let service_stale = current
            .service_cert()
            .is_some_and(|s| !s.cert.is_valid_at(now));
        if stale.is_empty() && !service_stale {
            return None;
        }
        let mut builder = current.to_builder();
        for domain in &stale {
            self.rebuild(&mut builder, domain);
        }
        if service_stale {
            self.refresh_service(&mut builder);
        }
        builder.problems(self.problems());
        Some(builder.build())
    }

    /// Directories to start and stop watching since the last call.
    pub fn take_watch_delta(&mut self) -> WatchDelta {
        std::mem::take(&mut self.watch_delta)
    }

    /// Visits every tenant and certificate file; `force` builds a snapshot even when
    /// nothing changed.
    fn scan(
        &mut self,
        mut builder: SnapshotBuilder,
        force: bool,
        mut publish: Option<&mut dyn FnMut(Snapshot)>,
    ) -> Option<Snapshot> {
        let dir = self.config.tenants_dir.clone();
        let present: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => {
                self.set_problems(ProblemKey::TenantsDir, Vec::new());
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| is_tenant_file_name(p))
                    .collect()
            }
            Err(e) => {
                // Keep serving what we have: an unreadable directory is not "no tenants".
                self.set_problems(ProblemKey::TenantsDir, vec![ConfigError::io(&dir, &e)]);
                builder.problems(self.problems());
                return Some(builder.build());
            }
        };
        // Files known but no longer listed go first (a rename within the directory must
        // drop the old name before the new one claims its domain). The common SIGHUP,
        // nothing deleted, is told by counting the listed files already known, from the
        // one lookup per file the stat pass needs anyway.
        let recorded: Vec<Recorded> = present.iter().map(|p| self.recorded(p)).collect();
        let listed_known = recorded.iter().filter(|r| r.is_some()).count();
        let mut visit: Vec<(PathBuf, Recorded)> = if listed_known == self.files.len() {
            Vec::with_capacity(present.len())
        } else {
            let present_set: HashSet<&PathBuf> = present.iter().collect();
            self.files
                .iter()
                .filter(|(p, _)| !present_set.contains(p))
                .map(|(p, f)| (p.clone(), Some(f.identity)))
                .collect()
        };
        visit.extend(present.into_iter().zip(recorded));
        let mut pending = self.visit_markers();
        let in_use: Vec<(Arc<CertPaths>, CertIdentity)> = self
            .certs
            .iter()
            .map(|(p, r)| (p.clone(), r.identity))
            .collect();
        for paths in self.visit_certs(in_use) {
            pending.extend(self.cert_users.get(&paths).into_iter().flatten().cloned());
        }
        let service_changed = self.refresh_service(&mut builder);
        // Tenant files in chunks that double, so that `publish` can serve the first
        // thousand tenants while the other 99 000 load.
        let mut touched = false;
        let mut chunk = FIRST_CHUNK;
        let mut rest: &[(PathBuf, Recorded)] = &visit;
        loop {
            let (now, later) = rest.split_at(chunk.min(rest.len()));
            pending.extend(self.visit_recorded(now));
            let mut domains: Vec<DomainName> = pending.drain().collect();
            domains.sort();
            touched |= !domains.is_empty();
            self.prepare_certs(&domains);
            for domain in &domains {
                self.rebuild(&mut builder, domain);
            }
            rest = later;
            if rest.is_empty() {
                break;
            }
            if let Some(publish) = publish.as_deref_mut() {
                publish(builder.peek());
            }
            chunk *= 2;
        }
        if !(force || service_changed || self.board_changed || touched) {
            return None;
        }
        builder.problems(self.problems());
        Some(builder.build())
    }

    /// Re-reads the tenant files among `paths` whose identity changed. Returns the
    /// domains whose tenant may need rebuilding.
    fn visit_tenant_files(&mut self, paths: &[PathBuf]) -> HashSet<DomainName> {
        let known: Vec<(PathBuf, Recorded)> = paths
            .iter()
            .filter(|p| is_tenant_file_name(p))
            .map(|p| (p.clone(), self.recorded(p)))
            .collect();
        self.visit_recorded(&known)
    }

    /// What is recorded of the tenant file at `path`.
    fn recorded(&self, path: &Path) -> Recorded {
        self.files.get(path).map(|f| f.identity)
    }

    /// `visit_tenant_files` for paths that come with what was recorded of them.
    fn visit_recorded(&mut self, known: &[(PathBuf, Recorded)]) -> HashSet<DomainName> {
        // A file not seen before is read at once; a known one only if it changed.
        // The stat pass is most of a SIGHUP with nothing changed: spread it over cores.
        let fresh = par_map(known, |(p, recorded)| match recorded {
            None | Some(None) => true,
            Some(id) => *id != FileIdentity::of(p),
        });
        let stale: Vec<PathBuf> = known
            .iter()
            .zip(fresh)
            .filter(|(_, stale)| *stale)
            .map(|((p, _), _)| p.clone())
            .collect();
        let base = self.config.base_dir.clone();
        let parsed = par_map(&stale, |path| read_tenant(path, &base));
        let mut domains = HashSet::default();
        for (path, (outcome, identity)) in stale.into_iter().zip(parsed) {
            let outcome = match outcome {
                TenantRead::Gone => {
                    if let Some(old) = self.files.remove(&path) {
                        self.set_problems(ProblemKey::TenantFile(path.clone()), Vec::new());
                        if let Some(d) = old.domain
                            && self.owner.get(&d) == Some(&path)
                        {
                            tracing::info!(tenant = %d, file = %path.display(), "tenant file removed");
                            self.owner.remove(&d);
                            domains.insert(d);
                        }
                    }
                    continue;
                }
                TenantRead::BadName(e) => {
                    self.files.insert(
                        path.clone(),
                        TenantFile {
                            domain: None,
                            identity,
                            good: None,
                        },
                    );
                    self.set_problems(ProblemKey::TenantFile(path), vec![e]);
                    continue;
                }
                TenantRead::Read(domain, result) => (domain, result),
            };
            let (domain, result) = outcome;
            if let Some(other) = self.owner.get(&domain).filter(|o| **o != path) {
                let msg = format!(
                    "it defines {domain} again, which {} already defines; remove one of the two files",
                    other.display()
                );
                self.set_problems(
                    ProblemKey::TenantFile(path.clone()),
                    vec![ConfigError::new(
                        Location::file(&path),
                        ProblemKind::Invalid,
                        msg,
                    )],
                );
                self.files.insert(
                    path,
                    TenantFile {
                        domain: Some(domain),
                        identity,
                        good: None,
                    },
                );
                continue;
            }
            let previous = self.files.remove(&path).and_then(|f| f.good);
            let good = match result {
                Ok(spec) => {
                    self.set_problems(ProblemKey::TenantFile(path.clone()), Vec::new());
                    Some(Arc::new(spec))
                }
                Err(errors) => {
                    if previous.is_some() {
                        tracing::warn!(tenant = %domain, "tenant file rejected; the last good version keeps serving");
                    }
                    self.set_problems(ProblemKey::TenantFile(path.clone()), errors);
                    previous.clone()
                }
            };
            if good.is_some() {
                self.owner.insert(domain.clone(), path.clone());
            }
            if good != previous || good.is_none() {
                domains.insert(domain.clone());
            }
            self.files.insert(
                path,
                TenantFile {
                    domain: Some(domain),
                    identity,
                    good,
                },
            );
        }
        domains
    }

    /// Loads the certificate pairs the given tenants need and that are not yet known.
    fn prepare_certs(&mut self, domains: &[DomainName]) {
        let wanted: Vec<(Arc<CertPaths>, CertOrigin)> = domains
            .iter()
            .filter_map(|d| self.cert_source(d))
            .filter(|(p, _)| !self.certs.contains_key(p))
            .collect();
        let provider = self.provider.clone();
        let loaded = par_map(&wanted, |(paths, origin)| {
            load_record(paths, *origin, &provider)
        });
        for ((paths, _), record) in wanted.into_iter().zip(loaded) {
            self.certs.insert(paths, record);
        }
    }

    /// Re-stats known certificate pairs and reloads those that changed. Returns the
    /// pairs that now load differently.
    /// `candidates` carry the identities recorded for them, so the stat pass does not
    /// look each pair up again.
    fn visit_certs(
        &mut self,
        candidates: Vec<(Arc<CertPaths>, CertIdentity)>,
    ) -> Vec<Arc<CertPaths>> {
        let changed = par_map(&candidates, |(p, recorded)| {
            (FileIdentity::of(&p.cert), FileIdentity::of(&p.key)) != *recorded
        });
        let stale: Vec<(Arc<CertPaths>, CertOrigin)> = candidates
            .into_iter()
            .zip(changed)
            .filter(|(_, changed)| *changed)
            .filter_map(|((p, _), _)| {
                let origin = self.certs.get(&p)?.origin;
                Some((p, origin))
            })
            .collect();
        let provider = self.provider.clone();
        let loaded = par_map(&stale, |(paths, origin)| {
            load_record(paths, *origin, &provider)
        });
        let mut changed = Vec::new();
        for ((paths, _), mut record) in stale.into_iter().zip(loaded) {
            let old = self.certs.remove(&paths).expect("candidate is known");
            if record.good.is_none() {
                // Keep serving the last good certificate while the files are broken
                // (mid-renewal, a bad copy): the problem is reported, nothing stops.
                record.good = old.good;
            }
            self.certs.insert(paths.clone(), record);
            changed.push(paths);
        }
        changed
    }

    /// Where `domain`'s certificate comes from, if from files.
    fn cert_source(&self, domain: &DomainName) -> Option<(Arc<CertPaths>, CertOrigin)> {
        let spec = self.files.get(self.owner.get(domain)?)?.good.as_ref()?;
        if let Some(paths) = &spec.cert {
            return Some((paths.clone(), CertOrigin::Static));
        }
        let dir = self.config.acme_cert_dir(domain);
        let paths = Arc::new(CertPaths {
            cert: dir.join("fullchain.pem"),
            key: dir.join("privkey.pem"),
        });
        (self.certs.contains_key(&paths) || paths.cert.exists())
            .then_some((paths, CertOrigin::Acme))
    }

    /// Replaces `domain` in the builder with what its files say now.
    fn rebuild(&mut self, builder: &mut SnapshotBuilder, domain: &DomainName) {
        let old_paths = builder
            .tenant(domain.as_str())
            .and_then(|t| t.cert_paths.clone());
        let spec = self
            .owner
            .get(domain)
            .and_then(|p| self.files.get(p))
            .and_then(|f| f.good.clone());
        let Some(spec) = spec else {
            builder.remove(domain.as_str());
            self.set_problems(ProblemKey::TenantCert(domain.clone()), Vec::new());
            self.set_users(domain, old_paths, None);
            return;
        };
        let host = format!("{POLICY_HOST_PREFIX}{domain}");
        let source = self.cert_source(domain);
        let (cert, problems) = match &source {
            Some((paths, _)) => self.cert_status(paths, &host),
            None => self.generated_cert(domain, &host),
        };
        self.set_problems(ProblemKey::TenantCert(domain.clone()), problems);
        let paths = source.map(|(p, _)| p);
        self.set_users(domain, old_paths, paths.clone());
        let phase = match self.markers.get(domain) {
            Some(d) if unix_now() >= d.until => return self.retire(builder, domain),
            Some(d) => Phase::Decommissioning {
                since: d.since,
                until: d.until,
            },
            None => Phase::Active,
        };
        builder.upsert(Arc::new(Tenant::new(spec, phase, cert, paths)));
    }

    /// The end of a decommissioning: every sender's cache of the old policy has expired,
    /// so the tenant goes. The tenant file goes first: if it cannot be deleted the
    /// marker stays, and the tenant stays unserved rather than coming back.
    fn retire(&mut self, builder: &mut SnapshotBuilder, domain: &DomainName) {
        let old_paths = builder
            .tenant(domain.as_str())
            .and_then(|t| t.cert_paths.clone());
        builder.remove(domain.as_str());
        self.set_users(domain, old_paths, None);
        self.set_problems(ProblemKey::TenantCert(domain.clone()), Vec::new());
        if self.read_only {
            return;
        }
        if let Some(path) = self.owner.get(domain).cloned() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(tenant = %domain, file = %path.display(), error = %e,
                    "decommissioning finished but the tenant file cannot be deleted; delete it by hand");
                return;
            }
            self.owner.remove(domain);
            self.files.remove(&path);
        }
        let marker = marker_path(&self.config.state_dir, domain);
        if let Err(e) = std::fs::remove_file(&marker)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %marker.display(), error = %e, "cannot delete the decommission marker");
        }
        self.markers.remove(domain);
        tracing::info!(tenant = %domain, "decommissioned: the previous max_age has passed; tenant removed");
    }

    /// Re-reads the decommission markers. Returns the domains whose marker changed.
    fn visit_markers(&mut self) -> HashSet<DomainName> {
        let dir = marker_dir(&self.config.state_dir);
        let mut now: HashMap<DomainName, Decommission> = HashMap::default();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Some(Ok(domain)) = domain_of_file(&path) else {
                continue;
            };
            match std::fs::read_to_string(&path).map(|t| parse_marker(&path, &t)) {
                Ok(Ok(d)) => {
                    now.insert(domain, d);
                }
                Ok(Err(e)) => {
                    tracing::warn!(file = %path.display(), "ignoring a bad decommission marker: {}", e.message)
                }
                Err(_) => {}
            }
        }
        let mut changed: HashSet<DomainName> = HashSet::default();
        for (d, m) in &now {
            if self.markers.get(d) != Some(m) {
                changed.insert(d.clone());
            }
        }
        changed.extend(
            self.markers
                .keys()
                .filter(|d| !now.contains_key(*d))
                .cloned(),
        );
        self.markers = now;
        changed.retain(|d| self.owner.contains_key(d));
        changed
    }

    fn cert_status(&self, paths: &CertPaths, host: &str) -> (CertStatus, Vec<ConfigError>) {
        let record = self.certs.get(paths);
        let mut problems: Vec<ConfigError> =
            record.and_then(|r| r.problem.clone()).into_iter().collect();
        let status = match record.and_then(|r| r.good.as_ref()) {
            Some((cert, names)) => match check_names(names, host, &paths.cert) {
                Ok(()) if cert.is_valid_at(unix_now()) => CertStatus::Loaded(cert.clone()),
                Ok(()) => {
                    CertStatus::Missing("the certificate is outside its validity period".into())
                }
                Err(e) => {
                    let why = e.message.clone();
                    problems.push(e);
                    CertStatus::Missing(why.into())
                }
            },
            None => CertStatus::Missing(
                problems
                    .first()
                    .map_or("the certificate has not been loaded".into(), |p| {
                        p.to_string().into()
                    }),
            ),
        };
        (status, problems)
    }

    /// A tenant without certificate files: a development certificate, or nothing yet.
    fn generated_cert(
        &mut self,
        domain: &DomainName,
        host: &str,
    ) -> (CertStatus, Vec<ConfigError>) {
        if let Some(ca) = &self.dev_ca {
            if let Some(c) = self
                .dev_certs
                .get(domain)
                .filter(|c| c.is_valid_at(unix_now()))
            {
                return (CertStatus::Loaded(c.clone()), Vec::new());
            }
            return match ca.issue(host, &self.provider) {
                Ok(c) => {
                    // One warning at start-up says dev mode is on; one line per tenant would flood.
                    tracing::debug!(tenant = %domain, "serving a development certificate");
                    self.dev_certs.insert(domain.clone(), c.clone());
                    (CertStatus::Loaded(c), Vec::new())
                }
                Err(e) => (
                    CertStatus::Missing(
                        format!("cannot issue a development certificate: {e}").into(),
                    ),
                    Vec::new(),
                ),
            };
        }
        if self.config.acme.is_some() {
            return (
                CertStatus::Missing("waiting for an ACME certificate".into()),
                Vec::new(),
            );
        }
        let why = "no certificate: the tenant file has no `cert`/`key` and [acme] is not configured; add both, or configure [acme]";
        let file = self.owner.get(domain).cloned().unwrap_or_default();
        let problem = ConfigError::new(Location::file(&file), ProblemKind::Certificate, why);
        (CertStatus::Missing(why.into()), vec![problem])
    }

    /// Sets the service certificate from the config; true if it changed.
    fn refresh_service(&mut self, builder: &mut SnapshotBuilder) -> bool {
        let config = self.config.clone();
        let service = match &config.https.service_cert {
            Some(paths) => {
                if !self.certs.contains_key(paths) {
                    let record = load_record(paths, CertOrigin::Static, &self.provider);
                    self.certs.insert(Arc::new(paths.clone()), record);
                    self.watch_cert_dirs(paths);
                }
                let record = &self.certs[paths];
                let problems: Vec<ConfigError> = record.problem.clone().into_iter().collect();
                let service = record
                    .good
                    .clone()
                    .map(|(cert, names)| ServiceCert { names, cert });
                self.set_problems(ProblemKey::Service, problems);
                service
            }
            None => match (&self.dev_ca, &config.tlsrpt) {
                (Some(ca), Some(tlsrpt)) => {
                    let cached = self
                        .dev_certs
                        .get(&tlsrpt.host)
                        .filter(|c| c.is_valid_at(unix_now()))
                        .cloned();
                    let cert =
                        cached.or_else(|| ca.issue(tlsrpt.host.as_str(), &self.provider).ok());
                    if let Some(c) = &cert {
                        self.dev_certs.insert(tlsrpt.host.clone(), c.clone());
                    }
                    cert.map(|cert| ServiceCert {
                        names: Arc::from([tlsrpt.host.to_string()]),
                        cert,
                    })
                }
                _ => None,
            },
        };
        let same = match (builder.service_cert(), &service) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.cert.key, &b.cert.key),
            (None, None) => true,
            _ => false,
        };
        builder.service(service);
        !same
    }

    fn set_users(
        &mut self,
        domain: &DomainName,
        old: Option<Arc<CertPaths>>,
        new: Option<Arc<CertPaths>>,
    ) {
        if old == new {
            return;
        }
        if let Some(old) = old
            && let Some(users) = self.cert_users.get_mut(&old)
        {
            users.retain(|d| d != domain);
            if users.is_empty() {
                self.cert_users.remove(&old);
                if self.config.https.service_cert.as_ref() != Some(&old) {
                    self.certs.remove(&old);
                    self.unwatch_cert_dirs(&old);
                }
            }
        }
        if let Some(new) = new {
            let users = self.cert_users.entry(new.clone()).or_default();
            let first = users.is_empty();
            if !users.contains(domain) {
                users.push(domain.clone());
            }
            if first {
                self.watch_cert_dirs(&new);
            }
        }
    }

    fn watch_cert_dirs(&mut self, paths: &CertPaths) {
        for dir in cert_dirs(paths) {
            self.watch(dir);
        }
    }

    fn unwatch_cert_dirs(&mut self, paths: &CertPaths) {
        for dir in cert_dirs(paths) {
            self.unwatch(&dir);
        }
    }

    fn watch(&mut self, dir: PathBuf) {
        let count = self.watched.entry(dir.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.watch_delta.add.push(dir);
        }
    }

    fn unwatch(&mut self, dir: &Path) {
        if let Some(count) = self.watched.get_mut(dir) {
            *count -= 1;
            if *count == 0 {
                self.watched.remove(dir);
                self.watch_delta.remove.push(dir.to_path_buf());
            }
        }
    }

    fn set_problems(&mut self, key: ProblemKey, problems: Vec<ConfigError>) {
        if problems.is_empty() {
            if self.board.remove(&key).is_some() {
                tracing::info!(source = ?key, "problem resolved");
                self.board_changed = true;
            }
            return;
        }
        if self.board.get(&key) == Some(&problems) {
            return;
        }
        for p in &problems {
            tracing::warn!(file = %p.location, kind = p.kind.as_str(), "{}", p.message);
        }
        self.board.insert(key, problems);
        self.board_changed = true;
    }

    /// Every current problem, ordered by source.
    pub fn problems(&mut self) -> Arc<[ConfigError]> {
        self.board_changed = false;
        self.board.values().flatten().cloned().collect()
    }
}

/// Whether a tenant's certificate crossed a validity boundary since it was built.
fn cert_validity_changed(
    t: &Tenant,
    now: i64,
    certs: &HashMap<Arc<CertPaths>, CertRecord>,
) -> bool {
    match &t.cert {
        CertStatus::Loaded(c) => !c.is_valid_at(now),
        CertStatus::Missing(_) => t.cert_paths.as_ref().is_some_and(|p| {
            certs
                .get(p)
                .and_then(|r| r.good.as_ref())
                .is_some_and(|(c, _)| c.is_valid_at(now))
        }),
    }
}

fn cert_dirs(paths: &CertPaths) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [&paths.cert, &paths.key]
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.dedup();
    dirs
}

fn dir_inode(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

fn is_tenant_file_name(path: &Path) -> bool {
    tenant_file_stem(path).is_some()
}

enum TenantRead {
    Gone,
    BadName(ConfigError),
    Read(DomainName, Result<TenantSpec, Vec<ConfigError>>),
}

/// Reads and parses one tenant file, with the identity of the version read.
fn read_tenant(path: &Path, base_dir: &Path) -> (TenantRead, Option<FileIdentity>) {
    let domain = match domain_of_file(path) {
        None => return (TenantRead::Gone, None),
        Some(Err(e)) => return (TenantRead::BadName(e), FileIdentity::of(path)),
        Some(Ok(d)) => d,
    };
    let (bytes, identity) = match files::read(path) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (TenantRead::Gone, None),
        Err(e) => {
            let error = vec![ConfigError::io(path, &e)];
            return (TenantRead::Read(domain, Err(error)), FileIdentity::of(path));
        }
    };
    let result = match std::str::from_utf8(&bytes) {
        Ok(text) => parse_tenant(domain.clone(), path, text, base_dir),
        Err(e) => Err(vec![ConfigError::new(
            Location::file(path),
            ProblemKind::Syntax,
            format!(
                "it is not UTF-8 text (byte {}); save it as UTF-8",
                e.valid_up_to()
            ),
        )]),
    };
    (TenantRead::Read(domain, result), Some(identity))
}

fn load_record(paths: &CertPaths, origin: CertOrigin, provider: &CryptoProvider) -> CertRecord {
    let (cert, key) = (files::read(&paths.cert), files::read(&paths.key));
    let identity = (
        cert.as_ref().ok().map(|(_, id)| *id),
        key.as_ref().ok().map(|(_, id)| *id),
    );
    let loaded = match (cert, key) {
        (Ok((cert, _)), Ok((key, _))) => {
            // The parsed key lives in aws-lc; the PEM text need not outlive the parse.
            let key = zeroize::Zeroizing::new(key);
            load_pair(paths, &cert, &key, origin, provider)
        }
        (Err(e), _) => Err(ConfigError::io(&paths.cert, &e)),
        (_, Err(e)) => Err(ConfigError::io(&paths.key, &e)),
    };
    match loaded {
        Ok((cert, names)) => CertRecord {
            identity,
            origin,
            good: Some((cert, names.into())),
            problem: None,
        },
        Err(e) => CertRecord {
            identity,
            origin,
            good: None,
            problem: Some(e),
        },
    }
}
