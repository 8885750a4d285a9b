//! The immutable state one generation of the server answers from.
//!
//! A `Snapshot` holds every tenant with its pre-rendered policy, policy id and
//! certificate, the service certificates and the settings the answer paths need. It is
//! published behind an `ArcSwap` by the reloader and read, never changed, by the TLS
//! resolver, the HTTP routes and the DNS answers. A reader loads it once per
//! handshake, request or query, so it sees one generation or the next, never a mix.
//!
//! Nothing here reads files or takes locks; `SnapshotBuilder` derives the next
//! generation from the previous one by explicit changes.

mod ancestors;
mod names;

pub use ancestors::Ancestors;
pub use names::{NameMap, Named};

use bytes::Bytes;
use http::HeaderValue;
use rustls::sign::CertifiedKey;
use std::sync::Arc;

use crate::config::{CertPaths, ConfigError, ServerConfig, TenantSpec};
use crate::domain::{DomainName, strip_prefix_ignore_case};
use crate::policy::{Policy, PolicyId};
use crate::tls::{LoadedCert, name_covers};

pub use crate::policy::POLICY_HOST_PREFIX;

/// Why a tenant's certificate is not being served.
#[derive(Debug, Clone)]
pub enum CertStatus {
    Loaded(LoadedCert),
    /// No usable certificate; the string completes "not servable: …".
    Missing(Arc<str>),
}

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Active,
    /// `tenant rm` ran: `mode: none` is served until `until` (Unix seconds), then the
    /// tenant is removed (RFC 8461 §8.3).
    Decommissioning {
        since: i64,
        until: i64,
    },
}

/// One customer domain as served in this generation.
#[derive(Debug)]
pub struct Tenant {
    pub domain: DomainName,
    /// What the tenant file says (the last good version of it).
    pub spec: Arc<TenantSpec>,
    /// The policy actually served: the file's, or `mode: none` while decommissioning.
    pub policy: Policy,
    pub phase: Phase,
    pub body: Bytes,
    pub id: PolicyId,
    /// `Content-Length` of `body`, rendered once.
    pub content_length: HeaderValue,
    pub cert: CertStatus,
    /// The certificate files this tenant's certificate came from, if any; the reloader
    /// watches them.
    pub cert_paths: Option<Arc<CertPaths>>,
}

impl Tenant {
    pub fn new(
        spec: Arc<TenantSpec>,
        phase: Phase,
        cert: CertStatus,
        cert_paths: Option<Arc<CertPaths>>,
    ) -> Tenant {
        let policy = match phase {
            Phase::Active => spec.policy.clone(),
            Phase::Decommissioning { .. } => spec.policy.decommissioned(),
        };
        let rendered = policy.render();
        Tenant {
            domain: spec.domain.clone(),
            content_length: HeaderValue::from(rendered.body.len()),
            body: rendered.body,
            id: rendered.id,
            policy,
            phase,
            spec,
            cert,
            cert_paths,
        }
    }

    /// The certificate rustls should present, if the tenant has a usable one.
    #[inline]
    pub fn certified_key(&self) -> Option<&Arc<CertifiedKey>> {
        match &self.cert {
            CertStatus::Loaded(c) => Some(&c.key),
            CertStatus::Missing(_) => None,
        }
    }

    /// RFC 8461 §3.1: the TXT record must only announce a policy that senders can fetch,
    /// so it is published only while a valid certificate is loaded. `Err` says why not.
    pub fn servable(&self) -> Result<(), &str> {
        match &self.cert {
            CertStatus::Loaded(_) => Ok(()),
            CertStatus::Missing(why) => Err(why),
        }
    }
}

impl Named for Tenant {
    fn name(&self) -> &DomainName {
        &self.domain
    }
}

/// A certificate served for names other than `mta-sts.<tenant>` (the report host).
#[derive(Clone, Debug)]
pub struct ServiceCert {
    /// Lowercase DNS names, possibly `*.` wildcards.
    pub names: Arc<[String]>,
    pub cert: LoadedCert,
}

/// What a host name (SNI or `Host`) designates.
pub enum HostRoute<'a> {
    Tenant(&'a Arc<Tenant>),
    Service,
    Unknown,
}

pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<ServerConfig>,
    tenants: NameMap<Arc<Tenant>>,
    /// Names that exist only above tenant names (DNS empty non-terminals).
    ancestors: Ancestors,
    service: Option<ServiceCert>,
    /// Every current problem in the operator's files, sorted by file.
    pub problems: Arc<[ConfigError]>,
}

impl Snapshot {
    pub fn empty(config: Arc<ServerConfig>) -> Snapshot {
        Snapshot {
            generation: 0,
            config,
            tenants: NameMap::default(),
            ancestors: Ancestors::default(),
            service: None,
            problems: Arc::from([]),
        }
    }

    /// The tenant for `domain`, ignoring case. Never allocates.
    #[inline]
    pub fn tenant(&self, domain: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(domain)
    }

    /// Whether a tenant name lies strictly below `lower` (lowercase, no trailing dot):
    /// `com` and `example.com` for tenant `shop.example.com`. Never allocates.
    #[inline]
    pub fn is_above_tenant(&self, lower: &str) -> bool {
        self.ancestors.contains(lower)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.iter()
    }

    /// Tenants whose policy (and TXT record) is being served.
    pub fn servable_count(&self) -> usize {
        self.tenants.iter().filter(|t| t.servable().is_ok()).count()
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    pub fn service_cert(&self) -> Option<&ServiceCert> {
        self.service.as_ref()
    }

    /// What `host` designates: `mta-sts.<tenant>`, a service name, or nothing.
    /// Never allocates.
    #[inline]
    pub fn route(&self, host: &str) -> HostRoute<'_> {
        if let Some(tenant) =
            strip_prefix_ignore_case(host, POLICY_HOST_PREFIX).and_then(|d| self.tenants.get(d))
        {
            return HostRoute::Tenant(tenant);
        }
        match &self.service {
            Some(s) if s.names.iter().any(|n| name_covers(n, host)) => HostRoute::Service,
            _ => HostRoute::Unknown,
        }
    }

    /// The certificate for an SNI name, as rustls asks for it. Never allocates: this is
    /// the lookup behind every TLS handshake.
    #[inline]
    pub fn certificate_for(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        match self.route(sni) {
            HostRoute::Tenant(t) => t.certified_key(),
            HostRoute::Service => self.service.as_ref().map(|s| &s.cert.key),
            HostRoute::Unknown => None,
        }
    }

    /// The earliest moment (Unix seconds) at which something changes by itself: a
    /// served certificate stops or starts being valid, or a decommissioning ends. The
    /// reloader re-evaluates the tenants then.
    pub fn next_deadline(&self, now: i64) -> Option<i64> {
        let tenant_times = self.tenants.iter().flat_map(|t| {
            let cert = match &t.cert {
                CertStatus::Loaded(c) => [Some(c.not_before), Some(c.not_after)],
                CertStatus::Missing(_) => [None, None],
            };
            let phase = match t.phase {
                Phase::Decommissioning { until, .. } => Some(until),
                Phase::Active => None,
            };
            cert.into_iter().chain([phase]).flatten()
        });
        let service_times = self
            .service
            .iter()
            .flat_map(|s| [s.cert.not_before, s.cert.not_after]);
        tenant_times.chain(service_times).filter(|t| *t > now).min()
    }

    pub fn to_builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            generation: self.generation + 1,
            config: self.config.clone(),
            tenants: self.tenants.clone(),
            ancestors: self.ancestors.clone(),
            service: self.service.clone(),
            problems: self.problems.clone(),
        }
    }
}

/// The next generation under construction: the previous one plus explicit changes.
pub struct SnapshotBuilder {
    generation: u64,
    config: Arc<ServerConfig>,
    tenants: NameMap<Arc<Tenant>>,
    ancestors: Ancestors,
    service: Option<ServiceCert>,
    problems: Arc<[ConfigError]>,
}

impl SnapshotBuilder {
    pub fn new(config: Arc<ServerConfig>, capacity: usize) -> SnapshotBuilder {
        SnapshotBuilder {
            generation: 1,
            config,
            tenants: NameMap::with_capacity(capacity),
            ancestors: Ancestors::default(),
            service: None,
            problems: Arc::from([]),
        }
    }

    pub fn config(&mut self, config: Arc<ServerConfig>) -> &mut Self {
        self.config = config;
        self
    }

    pub fn upsert(&mut self, tenant: Arc<Tenant>) -> &mut Self {
        let domain = tenant.domain.clone();
        if self.tenants.insert(tenant).is_none() {
            self.ancestors.add(&domain);
        }
        self
    }

    pub fn remove(&mut self, domain: &str) -> &mut Self {
        if let Some(gone) = self.tenants.remove(domain) {
            self.ancestors.remove(&gone.domain);
        }
        self
    }

    pub fn tenant(&self, domain: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(domain)
    }

    pub fn service_cert(&self) -> Option<&ServiceCert> {
        self.service.as_ref()
    }

    pub fn service(&mut self, service: Option<ServiceCert>) -> &mut Self {
        self.service = service;
        self
    }

    pub fn problems(&mut self, problems: Arc<[ConfigError]>) -> &mut Self {
        self.problems = problems;
        self
    }

    /// The snapshot this builder would make now, leaving its contents as they are (for
    /// publishing while a long load goes on). The builder moves on to the next
    /// generation, so no two published snapshots share one: caches keyed by generation
    /// (a connection's route, the DNS apex) stay exact.
    pub fn peek(&mut self) -> Snapshot {
        self.generation += 1;
        Snapshot {
            generation: self.generation - 1,
            config: self.config.clone(),
            tenants: self.tenants.clone(),
            ancestors: self.ancestors.clone(),
            service: self.service.clone(),
            problems: self.problems.clone(),
        }
    }

    pub fn build(self) -> Snapshot {
        Snapshot {
            generation: self.generation,
            config: self.config,
            tenants: self.tenants,
            ancestors: self.ancestors,
            service: self.service,
            problems: self.problems,
        }
    }
}
