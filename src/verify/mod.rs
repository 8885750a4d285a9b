//! `stsedge verify DOMAIN`: live checks, over the network, that a tenant's MTA-STS is
//! discoverable and that switching it to `enforce` would not bounce mail.
//!
//! ```text
//!  tenant files ─► Expected (policy, body, id)          resolver (--resolver or system)
//!                        │                                      │
//!   1 cname ─ _mta-sts / mta-sts CNAME → *.ZONE (or an edge A) ─┤  discoverable?
//!   2 txt   ─ one `v=STSv1; id=…`, id = current id ─────────────┤
//!   3 https ─ GET policy, valid cert, 200 text/plain, same body ┤  enforce safe?
//!   4 mx    ─ every MX matched by a pattern ────────────────────┤
//!   5 smtp  ─ each MX: EHLO, STARTTLS, cert valid for the MX ───┘
//! ```
//!
//! This module owns the checks and the verdict; the wire work lives in [`dns`],
//! [`https`], [`smtp`], [`mx`], the trust anchors in [`trust`], the wording in `report`. It reads the tenant
//! files (never a running server), writes nothing, logs nothing (the report is the
//! output), and every network step is bounded by a timeout in its submodule.

pub mod dns;
pub mod https;
pub mod mx;
mod report;
pub mod smtp;
pub mod trust;

pub use dns::{DnsError, resolver};
pub use mx::{MxLookupError, mx_patterns_from_dns, suggest_patterns};
pub use report::{Check, Report, Stage};

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::DnsConfig;
use crate::domain::DomainName;
use crate::policy::{POLICY_HOST_PREFIX, POLICY_TXT_PREFIX as TXT_PREFIX};
use crate::policy::{Policy, PolicyId};
use crate::snapshot::Tenant;
pub const DEFAULT_HTTPS_PORT: u16 = 443;
pub const DEFAULT_SMTP_PORT: u16 = 25;

#[derive(Debug, Clone)]
pub struct Options {
    /// The one DNS server to ask; `None`: the system resolver.
    pub resolver: Option<SocketAddr>,
    /// Extra trust anchors besides the web roots.
    pub ca_file: Option<PathBuf>,
    pub smtp_port: u16,
    /// Where the policy is fetched; 443 except in tests.
    pub https_port: u16,
}

/// What the tenant files say the domain should publish.
#[derive(Debug, Clone)]
pub struct Expected {
    pub domain: DomainName,
    pub policy: Policy,
    pub body: Bytes,
    pub id: PolicyId,
    /// `Err(why)` when stsedge does not serve the TXT record (no valid certificate).
    pub servable: Result<(), String>,
    /// `[dns]` of the config, if stsedge hosts the zone.
    pub dns: Option<DnsConfig>,
    /// Name given in `EHLO`.
    pub helo: String,
}

impl Expected {
    pub fn from_tenant(tenant: &Tenant, dns: Option<DnsConfig>, helo: String) -> Expected {
        Expected {
            domain: tenant.domain.clone(),
            policy: tenant.policy.clone(),
            body: tenant.body.clone(),
            id: tenant.id,
            servable: tenant.servable().map_err(str::to_owned),
            dns,
            helo,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("`{domain}` is not a valid domain name ({reason})")]
    BadDomain { domain: String, reason: String },
    #[error(
        "{domain} is not a tenant in {}; add it with `stsedge tenant add {domain} --mx …`, or fix the problems `stsedge check` lists", dir.display()
    )]
    UnknownTenant { domain: String, dir: PathBuf },
    #[error("{0}")]
    Dns(#[from] DnsError),
    #[error("{0}")]
    Trust(#[from] trust::TrustError),
}

/// Runs every check for `expected` and returns the report.
pub async fn verify(expected: &Expected, opts: &Options) -> Result<Report, VerifyError> {
    let resolver = dns::resolver(opts.resolver)?;
    let roots = Arc::new(trust::roots(opts.ca_file.as_deref())?);
    let https_tls = trust::client_config(roots.clone(), &[crate::tls::ALPN_HTTP11])?;
    let smtp_tls = trust::client_config(roots, &[])?;
    let domain = expected.domain.as_str();

    let (cnames, txt, https, mail) = tokio::join!(
        check_cnames(&resolver, expected),
        check_txt(&resolver, expected),
        check_https(&resolver, expected, opts.https_port, https_tls),
        check_mail(&resolver, expected, opts.smtp_port, smtp_tls),
    );
    let mut checks = cnames;
    checks.push(Check::new(
        format!("TXT {TXT_PREFIX}{domain}"),
        Stage::Discovery,
        txt,
    ));
    checks.push(Check::new(
        format!("HTTPS {POLICY_HOST_PREFIX}{domain}"),
        Stage::Enforce,
        https,
    ));
    checks.extend(mail);
    Ok(Report::new(&expected.domain, checks))
}

/// Check 1: the customer's two CNAMEs (or an edge address for `mta-sts.`).
async fn check_cnames(resolver: &TokioResolver, e: &Expected) -> Vec<Check> {
    let d = e.domain.as_str();
    let txt_name = format!("{TXT_PREFIX}{d}");
    let host_name = format!("{POLICY_HOST_PREFIX}{d}");
    let Some(zone) = &e.dns else {
        let txt = match dns::txt(resolver, &txt_name).await {
            Ok(_) => Ok(format!(
                "{txt_name} resolves; CNAME check skipped ([dns] is not configured)"
            )),
            Err(err) => Err(err.to_string()),
        };
        let host = match dns::addresses(resolver, &host_name).await {
            Ok(a) => Ok(format!(
                "{host_name} resolves to {}; CNAME check skipped ([dns] is not configured)",
                list(&a)
            )),
            Err(err) => Err(err.to_string()),
        };
        return vec![
            Check::new(format!("CNAME {txt_name}"), Stage::Discovery, txt),
            Check::new(format!("CNAME {host_name}"), Stage::Discovery, host),
        ];
    };
    let (txt, host) = tokio::join!(
        cname_to(resolver, &txt_name, zone, false),
        cname_to(resolver, &host_name, zone, true),
    );
    vec![
        Check::new(format!("CNAME {txt_name}"), Stage::Discovery, txt),
        Check::new(format!("CNAME {host_name}"), Stage::Discovery, host),
    ]
}

async fn cname_to(
    resolver: &TokioResolver,
    name: &str,
    zone: &DnsConfig,
    address_ok: bool,
) -> Result<String, String> {
    let want = format!("{name}.{}", zone.zone);
    let publish = format!("publish `{name}. CNAME {want}.`");
    match dns::cname(resolver, name).await {
        Ok(Some(target)) if target == want => Ok(format!("{name} is a CNAME to {want}")),
        Ok(Some(target)) => Err(format!(
            "{name} is a CNAME to {target}, not {want}; {publish}"
        )),
        Ok(None) if address_ok => {
            let addrs = dns::addresses(resolver, name)
                .await
                .map_err(|err| format!("{err}; {publish}"))?;
            let edge = |a: &IpAddr| match a {
                IpAddr::V4(v4) => zone.ipv4.contains(v4),
                IpAddr::V6(v6) => zone.ipv6.contains(v6),
            };
            let foreign: Vec<IpAddr> = addrs.iter().copied().filter(|a| !edge(a)).collect();
            if foreign.is_empty() {
                Ok(format!(
                    "{name} has no CNAME but resolves to {}, an address of this edge",
                    list(&addrs)
                ))
            } else {
                Err(format!(
                    "{name} resolves to {}, not an address in [dns] ipv4/ipv6; {publish}",
                    list(&foreign)
                ))
            }
        }
        Ok(None) => Err(format!("{name} is not a CNAME; {publish}")),
        Err(err) if err.is_absent() => Err(format!("{err}; {publish}")),
        Err(err) => Err(err.to_string()),
    }
}

/// Check 2: exactly one `v=STSv1` TXT record, with the current id.
async fn check_txt(resolver: &TokioResolver, e: &Expected) -> Result<String, String> {
    let name = format!("{TXT_PREFIX}{}", e.domain);
    let records = dns::txt(resolver, &name).await.map_err(|err| {
        let mut why = err.to_string();
        if let Err(not_served) = &e.servable {
            why.push_str(&format!(
                "; stsedge does not serve it while the tenant is not servable ({not_served})"
            ));
        }
        why
    })?;
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1;") || r.trim() == "v=STSv1")
        .collect();
    let [record] = sts[..] else {
        return Err(format!(
            "{name} has {} `v=STSv1` TXT records; senders need exactly one",
            sts.len()
        ));
    };
    let id = sts_id(record).ok_or_else(|| {
        format!("the TXT record {record:?} has no valid `id=` (1 to 32 letters and digits)")
    })?;
    if id == e.id.as_str() {
        Ok(format!(
            "{name} has `v=STSv1; id={id}`, the current policy id"
        ))
    } else {
        Err(format!(
            "stale id: {name} has id={id}, the current policy id is {} (DNS caches may still hold the old record)",
            e.id
        ))
    }
}

/// The `id` of an STS TXT record (RFC 8461 §3.1), if it is well formed.
pub fn sts_id(record: &str) -> Option<&str> {
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=STSv1" {
        return None;
    }
    let id = fields.find_map(|f| f.strip_prefix("id="))?;
    ((1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// Check 3: the policy over HTTPS equals what the files render.
async fn check_https(
    resolver: &TokioResolver,
    e: &Expected,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let host = format!("{POLICY_HOST_PREFIX}{}", e.domain);
    let addrs = dns::addresses(resolver, &host)
        .await
        .map_err(|err| err.to_string())?;
    let fetched = https::fetch(&host, &addrs, port, tls)
        .await
        .map_err(|err| err.to_string())?;
    let url = format!("https://{host}{}", https::POLICY_PATH);
    let served = https::parse_policy(&fetched.body)
        .map_err(|why| format!("{url} does not parse as a policy: {why}"))?;
    if fetched.body == e.body {
        return Ok(format!(
            "{url} answers 200 text/plain from {} with a valid certificate and the current policy (mode {})",
            fetched.addr, served.mode
        ));
    }
    let diff = https::differences(&served, &e.policy);
    Err(if diff.is_empty() {
        format!("{url} serves the same policy in other bytes than the tenant files render")
    } else {
        format!("{url} serves {}", diff.join(", "))
    })
}

/// Checks 4 and 5: MX coverage, then one STARTTLS probe per MX.
async fn check_mail(
    resolver: &TokioResolver,
    e: &Expected,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Vec<Check> {
    let name = format!("MX {}", e.domain);
    let hosts = match mx::mx_hosts(&e.domain, resolver).await {
        Ok(h) => h,
        Err(err) => {
            return vec![
                Check::new(name, Stage::Enforce, Err(err.to_string())),
                Check::new(
                    "STARTTLS",
                    Stage::Enforce,
                    Err("no MX host to probe".into()),
                ),
            ];
        }
    };
    let cov = mx::coverage(&hosts, &e.policy.mx);
    let drift = if cov.unused.is_empty() {
        String::new()
    } else {
        format!("; drift: pattern {} matches no MX", cov.unused.join(", "))
    };
    let coverage = if cov.is_complete() {
        Ok(format!(
            "every MX ({}) matches a policy mx pattern{drift}",
            hosts.join(", ")
        ))
    } else {
        Err(format!(
            "not covered by any policy mx pattern: {}{drift}",
            cov.uncovered.join(", ")
        ))
    };
    let mut checks = vec![Check::new(name, Stage::Enforce, coverage)];

    let mut probes = tokio::task::JoinSet::new();
    for (i, host) in hosts.iter().cloned().enumerate() {
        let (resolver, tls, helo) = (resolver.clone(), tls.clone(), e.helo.clone());
        probes.spawn(async move {
            let result = match dns::addresses(&resolver, &host).await {
                Err(err) => Err(err.to_string()),
                Ok(addrs) => match smtp::probe(&host, &addrs, port, &helo, tls).await {
                    Ok(ok) => Ok(format!(
                        "{host} ({}) offers STARTTLS and presents a certificate valid for its name ({})",
                        ok.addr, ok.tls_version
                    )),
                    Err(err) => Err(err.to_string()),
                },
            };
            (i, Check::new(format!("STARTTLS {host}"), Stage::Enforce, result))
        });
    }
    let mut done: Vec<(usize, Check)> = probes.join_all().await;
    done.sort_by_key(|(i, _)| *i);
    checks.extend(done.into_iter().map(|(_, c)| c));
    checks
}

fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_ids_follow_rfc8461() {
        assert_eq!(
            sts_id("v=STSv1; id=20160831085700Z"),
            Some("20160831085700Z")
        );
        assert_eq!(sts_id("v=STSv1;id=abc;ext=1"), Some("abc"));
        assert_eq!(sts_id("v=STSv1; id="), None);
        assert_eq!(sts_id("v=STSv1; id=a-b"), None);
        assert_eq!(sts_id(&format!("v=STSv1; id={}", "a".repeat(33))), None);
        assert_eq!(sts_id("v=spf1; id=abc"), None);
    }
}
