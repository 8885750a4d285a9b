//! MX hosts against `mx` patterns: which real MX a policy leaves uncovered (a sender
//! in `enforce` mode would refuse to deliver to it), which patterns match no MX
//! (drift), and the patterns to suggest for `tenant add --mx-from-dns`.
//!
//! The judging functions are pure; the only I/O is the MX lookup in
//! [`mx_patterns_from_dns`]. Nothing here connects to an MX.

use hickory_resolver::TokioResolver;

use super::dns::{self, DnsError};
use crate::domain::DomainName;
use crate::policy::MxPattern;

/// The outcome of matching MX hosts against patterns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// MX hosts no pattern matches.
    pub uncovered: Vec<String>,
    /// Patterns that match no MX host.
    pub unused: Vec<String>,
}

impl Coverage {
    pub fn is_complete(&self) -> bool {
        self.uncovered.is_empty()
    }
}

pub fn coverage(hosts: &[String], patterns: &[MxPattern]) -> Coverage {
    Coverage {
        uncovered: hosts
            .iter()
            .filter(|h| !patterns.iter().any(|p| p.matches(h)))
            .cloned()
            .collect(),
        unused: patterns
            .iter()
            .filter(|p| !hosts.iter().any(|h| p.matches(h)))
            .map(ToString::to_string)
            .collect(),
    }
}

/// Labels a shared parent must have before a wildcard is suggested: `*.example.com`
/// would cover any host of a customer's own domain, `*.mail.protection.outlook.com`
/// only a provider's MX fleet.
const MIN_WILDCARD_PARENT_LABELS: usize = 3;

/// The `mx` patterns to suggest for these MX hosts (most preferred first): the single
/// wildcard `*.PARENT` when there are at least two hosts, each is exactly one label
/// under the same `PARENT`, and `PARENT` has at least three labels; otherwise the
/// hosts themselves, without duplicates.
pub fn suggest_patterns(hosts: &[String]) -> Vec<String> {
    let mut exact: Vec<String> = Vec::with_capacity(hosts.len());
    for h in hosts {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if !h.is_empty() && !exact.contains(&h) {
            exact.push(h);
        }
    }
    let parent_of = |h: &str| h.split_once('.').map(|(_, p)| p.to_owned());
    if exact.len() >= 2 {
        let parents: Vec<Option<String>> = exact.iter().map(|h| parent_of(h)).collect();
        if let Some(Some(first)) = parents.first()
            && parents.iter().all(|p| p.as_deref() == Some(first.as_str()))
            && first.split('.').count() >= MIN_WILDCARD_PARENT_LABELS
        {
            let wildcard = format!("*.{first}");
            if MxPattern::parse(&wildcard).is_ok() {
                return vec![wildcard];
            }
        }
    }
    exact
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MxLookupError {
    #[error("{domain} has no MX records; publish them first, or give the patterns with --mx")]
    NoMx { domain: String },
    #[error(
        "{domain} publishes a null MX (RFC 7505): it accepts no mail, so MTA-STS has nothing to protect"
    )]
    NullMx { domain: String },
    #[error("{0}")]
    Dns(#[from] DnsError),
}

/// The MX hosts of `domain`, most preferred first (lowercase, no trailing dot).
/// A null MX or no MX at all is an error.
pub async fn mx_hosts(
    domain: &DomainName,
    resolver: &TokioResolver,
) -> Result<Vec<String>, MxLookupError> {
    let records = match dns::mx(resolver, domain.as_str()).await {
        Err(e) if e.is_absent() => Vec::new(),
        other => other?,
    };
    if records.is_empty() {
        return Err(MxLookupError::NoMx {
            domain: domain.to_string(),
        });
    }
    if records.iter().all(|m| m.host.is_empty()) {
        return Err(MxLookupError::NullMx {
            domain: domain.to_string(),
        });
    }
    let mut hosts: Vec<String> = Vec::with_capacity(records.len());
    for m in records.into_iter().filter(|m| !m.host.is_empty()) {
        if !hosts.contains(&m.host) {
            hosts.push(m.host);
        }
    }
    Ok(hosts)
}

/// For `tenant add --mx-from-dns`: the `mx` patterns to write for `domain`, from its
/// MX records (see [`suggest_patterns`]). Build `resolver` with
/// [`crate::verify::resolver`] from `--resolver`.
pub async fn mx_patterns_from_dns(
    domain: &DomainName,
    resolver: &TokioResolver,
) -> Result<Vec<String>, MxLookupError> {
    Ok(suggest_patterns(&mx_hosts(domain, resolver).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_provider_fleet_becomes_one_wildcard() {
        assert_eq!(
            suggest_patterns(&s(&[
                "example-com.mail.protection.outlook.com",
                "example-com-2.mail.protection.outlook.com."
            ])),
            s(&["*.mail.protection.outlook.com"])
        );
        assert_eq!(
            suggest_patterns(&s(&["mx1.mx.example.net", "MX2.mx.example.net"])),
            s(&["*.mx.example.net"])
        );
    }

    #[test]
    fn otherwise_the_exact_hosts_in_preference_order() {
        // One host: no wildcard, however deep.
        assert_eq!(
            suggest_patterns(&s(&["example-com.mail.protection.outlook.com"])),
            s(&["example-com.mail.protection.outlook.com"])
        );
        // A two-label parent is the customer's own domain: too broad for a wildcard.
        assert_eq!(
            suggest_patterns(&s(&["mx1.example.com", "mx2.example.com"])),
            s(&["mx1.example.com", "mx2.example.com"])
        );
        // Google's hosts do not share one parent.
        let google = s(&[
            "aspmx.l.google.com",
            "alt1.aspmx.l.google.com",
            "alt2.aspmx.l.google.com",
        ]);
        assert_eq!(suggest_patterns(&google), google);
        // Duplicates and case go; order stays.
        assert_eq!(
            suggest_patterns(&s(&["B.example.org.", "a.example.com", "b.example.org"])),
            s(&["b.example.org", "a.example.com"])
        );
        // The same host twice is one host, not a fleet.
        assert_eq!(
            suggest_patterns(&s(&["mx.a.b.example", "MX.a.b.example"])),
            s(&["mx.a.b.example"])
        );
    }

    #[test]
    fn coverage_reports_uncovered_hosts_and_unused_patterns() {
        let patterns = vec![
            MxPattern::parse("mail.example.com").unwrap(),
            MxPattern::parse("*.mx.example.net").unwrap(),
            MxPattern::parse("old.example.com").unwrap(),
        ];
        let c = coverage(
            &s(&["mail.example.com", "a.mx.example.net", "b.c.mx.example.net"]),
            &patterns,
        );
        assert_eq!(c.uncovered, s(&["b.c.mx.example.net"]));
        assert_eq!(c.unused, s(&["old.example.com"]));
        assert!(!c.is_complete());
    }
}
