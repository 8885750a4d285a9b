//! DNS for `verify` and `tenant add --mx-from-dns`: building the hickory resolver and
//! the few lookups the checks need (CNAME, TXT, MX, addresses), each bounded by
//! [`DNS_TIMEOUT`].
//!
//! It owns turning hickory's answers and errors into plain values and [`DnsError`];
//! it must not judge them (that is the checks' job in `mod.rs` and `mx.rs`) and never
//! answers from `/etc/hosts` when the operator named a resolver.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The bound on one lookup, retries and CNAME chasing included.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(8);
/// hickory's per-attempt timeout; two attempts fit in [`DNS_TIMEOUT`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    #[error("the system resolver configuration cannot be read ({0}); pass --resolver ADDR:PORT")]
    SystemConfig(String),
    #[error("{name} does not exist (NXDOMAIN)")]
    NxDomain { name: String },
    #[error("{name} has no {rtype} record")]
    NoRecords { name: String, rtype: RecordType },
    #[error("the {rtype} lookup of {name} timed out")]
    Timeout { name: String, rtype: RecordType },
    #[error("the {rtype} lookup of {name} failed ({reason})")]
    Failed {
        name: String,
        rtype: RecordType,
        reason: String,
    },
    #[error("{name} is not a valid DNS name")]
    BadName { name: String },
}

impl DnsError {
    /// The name does not exist or has no record of the type: an answer, not a failure
    /// to get one.
    pub fn is_absent(&self) -> bool {
        matches!(self, DnsError::NxDomain { .. } | DnsError::NoRecords { .. })
    }
}

/// A resolver that asks `server` (UDP, then TCP on truncation) or, without one, the
/// servers in `/etc/resolv.conf`.
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, DnsError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                provider,
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
        None => {
            TokioResolver::builder(provider).map_err(|e| DnsError::SystemConfig(e.to_string()))?
        }
    };
    tune(builder.options_mut());
    builder
        .build()
        .map_err(|e| DnsError::SystemConfig(e.to_string()))
}

fn tune(opts: &mut ResolverOpts) {
    opts.timeout = ATTEMPT_TIMEOUT;
    opts.attempts = 2;
    // `verify` is run right after a change: a cached answer would hide it.
    opts.cache_size = 0;
    opts.preserve_intermediates = true;
    opts.ndots = 0;
}

/// A fully-qualified name for `host` (no search domains are ever applied).
pub fn fqdn(host: &str) -> Result<Name, DnsError> {
    let bad = || DnsError::BadName {
        name: host.to_owned(),
    };
    let mut name = Name::from_ascii(host).map_err(|_| bad())?;
    name.set_fqdn(true);
    Ok(name)
}

/// `name` as shown to people: lowercase, no trailing dot.
pub fn display(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => s,
    }
}

async fn lookup(
    resolver: &TokioResolver,
    host: &str,
    rtype: RecordType,
) -> Result<Vec<RData>, DnsError> {
    Ok(lookup_records(resolver, host, rtype)
        .await?
        .into_iter()
        .map(|(_, data)| data)
        .collect())
}

/// The answer records (owner and data), CNAMEs on the way included.
async fn lookup_records(
    resolver: &TokioResolver,
    host: &str,
    rtype: RecordType,
) -> Result<Vec<(Name, RData)>, DnsError> {
    let name = fqdn(host)?;
    let found = tokio::time::timeout(DNS_TIMEOUT, resolver.lookup(name, rtype))
        .await
        .map_err(|_| DnsError::Timeout {
            name: host.to_owned(),
            rtype,
        })?;
    match found {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .map(|r| (r.name.clone(), r.data.clone()))
            .collect::<Vec<_>>()),
        Err(e) => Err(classify(e, host, rtype)),
    }
}

fn classify(e: NetError, host: &str, rtype: RecordType) -> DnsError {
    let name = host.to_owned();
    if e.is_nx_domain() {
        DnsError::NxDomain { name }
    } else if e.is_no_records_found() {
        DnsError::NoRecords { name, rtype }
    } else if matches!(e, NetError::Timeout) {
        DnsError::Timeout { name, rtype }
    } else {
        DnsError::Failed {
            name,
            rtype,
            reason: e.to_string(),
        }
    }
}

/// The CNAME target of `host`, or `None` when `host` has records but no CNAME.
pub async fn cname(resolver: &TokioResolver, host: &str) -> Result<Option<String>, DnsError> {
    let owner = fqdn(host)?;
    let records = match lookup_records(resolver, host, RecordType::CNAME).await {
        Err(DnsError::NoRecords { .. }) => return Ok(None),
        other => other?,
    };
    // Name equality ignores case, as DNS does.
    Ok(records.into_iter().find_map(|(name, data)| match data {
        RData::CNAME(c) if name == owner => Some(display(&c.0)),
        _ => None,
    }))
}

/// The TXT records at `host` after following CNAMEs, each as its strings joined
/// (RFC 7208 §3.3 style). Records that are not UTF-8 come back lossily decoded.
pub async fn txt(resolver: &TokioResolver, host: &str) -> Result<Vec<String>, DnsError> {
    Ok(lookup(resolver, host, RecordType::TXT)
        .await?
        .into_iter()
        .filter_map(|d| match d {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// One MX record: preference and exchange host (lowercase, no trailing dot; `""` for
/// the RFC 7505 null MX `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub host: String,
}

/// The MX records of `domain`, most preferred first.
pub async fn mx(resolver: &TokioResolver, domain: &str) -> Result<Vec<Mx>, DnsError> {
    let mut out: Vec<Mx> = lookup(resolver, domain, RecordType::MX)
        .await?
        .into_iter()
        .filter_map(|d| match d {
            RData::MX(m) => Some(Mx {
                preference: m.preference,
                host: if m.exchange.is_root() {
                    String::new()
                } else {
                    display(&m.exchange)
                },
            }),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.preference.cmp(&b.preference).then(a.host.cmp(&b.host)));
    out.dedup();
    Ok(out)
}

/// The addresses of `host` (A and AAAA, following CNAMEs).
pub async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    let mut out = Vec::new();
    let mut first_err = None;
    for rtype in [RecordType::A, RecordType::AAAA] {
        match lookup(resolver, host, rtype).await {
            Ok(records) => out.extend(records.into_iter().filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) if e.is_absent() => {
                first_err.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (out.is_empty(), first_err) {
        (true, Some(DnsError::NxDomain { name })) => Err(DnsError::NxDomain { name }),
        (true, _) => Err(DnsError::NoRecords {
            name: host.to_owned(),
            rtype: RecordType::A,
        }),
        (false, _) => Ok(out),
    }
}
