//! The hosting zone as data: which names exist under `[dns].zone` in one snapshot and
//! which records each holds (SPEC §3, DNS table).
//!
//! This module owns the mapping from a question (name, type) to a [`Resolution`]. It
//! never touches sockets, headers or EDNS (that is `handler`), never reads files, and
//! finds a tenant without allocating: the question is rendered lowercase into a stack
//! buffer and looked up with `Snapshot::tenant` / `Snapshot::is_above_tenant`. Only the
//! records of a positive answer are built per query.
//!
//! Names under zone `Z`, for each tenant `D`:
//!
//! ```text
//! Z                    SOA, NS
//! _mta-sts.D.Z         TXT "v=STSv1; id=…"   (only while D is servable)
//! mta-sts.D.Z          A, AAAA               ([dns] ipv4 / ipv6)
//! _smtp._tls.D.Z       TXT "v=TLSRPTv1; rua=…"
//! TLSRPT_HOST          A, AAAA               (when the report host is under Z)
//! D.Z, _tls.D.Z, parents of D.Z, in-zone nameserver names: exist, no records
//! anything else        NXDOMAIN
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_server::proto::ProtoError;
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use crate::config::DnsConfig;
use crate::domain::{strip_prefix_ignore_case, strip_suffix_ignore_case};
use crate::policy::{POLICY_HOST_PREFIX as POLICY_HOST, POLICY_TXT_PREFIX as POLICY_TXT};
use crate::snapshot::{Snapshot, Tenant};

/// TTL of the TXT records: short, so a new policy id reaches senders quickly.
pub const TXT_TTL: u32 = 300;
/// TTL of the A/AAAA records of the policy hosts.
pub const ADDR_TTL: u32 = 300;
/// TTL of the zone's NS records.
pub const NS_TTL: u32 = 3600;
/// TTL of the SOA record and its `minimum`: how long a NODATA/NXDOMAIN is cached
/// (RFC 2308 §5).
pub const NEGATIVE_TTL: u32 = 300;
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 1_209_600;

const TLSRPT_TXT: &str = "_smtp._tls.";
const TLSRPT_PARENT: &str = "_tls.";
/// A TXT character-string holds at most 255 octets (RFC 1035 §3.3); longer values are
/// split, and RFC 8460 §3 readers concatenate them.
const TXT_CHUNK: usize = 255;

/// The zone's own records for one snapshot generation, built once per generation.
pub struct Apex {
    pub generation: u64,
    pub serial: u32,
    pub soa: Record,
    pub ns: Vec<Record>,
}

impl Apex {
    pub fn new(dns: &DnsConfig, generation: u64, serial: u32) -> Result<Apex, ProtoError> {
        let zone = fqdn(dns.zone.as_str())?;
        let mname = match dns.nameservers.first() {
            Some(ns) => fqdn(ns.as_str())?,
            None => zone.clone(),
        };
        let rname = zone.prepend_label("hostmaster")?;
        let soa = SOA::new(
            mname,
            rname,
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            NEGATIVE_TTL,
        );
        let ns = dns
            .nameservers
            .iter()
            .map(|n| {
                let rdata = RData::NS(NS(fqdn(n.as_str())?));
                Ok(Record::from_rdata(zone.clone(), NS_TTL, rdata))
            })
            .collect::<Result<_, ProtoError>>()?;
        Ok(Apex {
            generation,
            serial,
            soa: Record::from_rdata(zone, NEGATIVE_TTL, RData::SOA(soa)),
            ns,
        })
    }
}

/// The next SOA serial: the time (RFC 1912 §2.2 allows any increasing scheme), and
/// never less than one more than the last one this process served, so it increases on
/// every change even within a second and survives restarts.
pub fn next_serial(previous: Option<u32>, unix_now: i64) -> u32 {
    let now = unix_now as u32;
    match previous {
        Some(p) => now.max(p.wrapping_add(1)),
        None => now,
    }
}

fn fqdn(name: &str) -> Result<Name, ProtoError> {
    let mut n = Name::from_ascii(name)?;
    n.set_fqdn(true);
    Ok(n)
}

/// Which of the apex records go into the answer section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApexPart {
    pub soa: bool,
    pub ns: bool,
}

/// What the zone says about one question under it.
#[derive(Debug)]
pub enum Resolution {
    /// The name does not exist (answer with the SOA in authority).
    NxDomain,
    /// The name exists; these are its records of the asked type. Both empty means
    /// NODATA (answer with the SOA in authority).
    Found {
        records: Vec<Record>,
        apex: ApexPart,
    },
}

/// What a name under the zone is.
enum Node<'a> {
    Apex,
    PolicyTxt(&'a Tenant),
    Host,
    TlsRptTxt(&'a Tenant),
    /// Exists, holds no records: a tenant's own name, `_tls.D`, parents, nameservers.
    Empty,
    Missing,
}

/// Longest name in text form: 255 octets on the wire are at most 254 characters.
const TEXT_MAX: usize = 256;

/// Renders `name` lowercase, without the trailing dot, into `buf`. Bytes that cannot
/// occur in a tenant or zone name (anything but letters, digits, `-` and `_`, so also a
/// `.` inside a label) become `?`, which keeps label boundaries intact and matches
/// nothing. Never allocates.
pub fn lower_text<'b>(name: &Name, buf: &'b mut [u8; TEXT_MAX]) -> Option<&'b str> {
    let mut len = 0;
    for label in name.iter() {
        if len > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        for &b in label {
            *buf.get_mut(len)? = match b {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => b,
                b'A'..=b'Z' => b.to_ascii_lowercase(),
                _ => b'?',
            };
            len += 1;
        }
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// Answers `qtype` for the name `owner` (as asked: its case is echoed in the answers)
/// from `snapshot`; `None` when the name is not under the zone, so not ours to answer.
pub fn resolve(
    snapshot: &Snapshot,
    dns: &DnsConfig,
    owner: &Name,
    qtype: RecordType,
) -> Option<Resolution> {
    let mut buf = [0u8; TEXT_MAX];
    let qname = lower_text(owner, &mut buf)?;
    let zone = dns.zone.as_str();
    let node = if qname == zone {
        Node::Apex
    } else if let Some(rel) = strip_suffix_ignore_case(qname, zone) {
        classify(snapshot, dns, qname, rel)
    } else {
        return None;
    };
    let any = qtype == RecordType::ANY;
    let mut records = Vec::new();
    let mut apex = ApexPart::default();
    match node {
        Node::Missing => return Some(Resolution::NxDomain),
        Node::Empty => {}
        Node::Apex => {
            apex.soa = any || qtype == RecordType::SOA;
            apex.ns = any || qtype == RecordType::NS;
        }
        Node::PolicyTxt(tenant) => {
            if (any || qtype == RecordType::TXT) && tenant.servable().is_ok() {
                let text = format!("v=STSv1; id={}", tenant.id.as_str());
                records.push(txt(owner, text.as_bytes()));
            }
        }
        Node::TlsRptTxt(tenant) => {
            if (any || qtype == RecordType::TXT)
                && let Some(text) = tlsrpt_text(snapshot, tenant)
            {
                records.push(txt(owner, text.as_bytes()));
            }
        }
        Node::Host => {
            if any || qtype == RecordType::A {
                records.extend(dns.ipv4.iter().map(|ip| a(owner, *ip)));
            }
            if any || qtype == RecordType::AAAA {
                records.extend(dns.ipv6.iter().map(|ip| aaaa(owner, *ip)));
            }
        }
    }
    Some(Resolution::Found { records, apex })
}

/// What `qname` (lowercase, under the zone; `rel` is the part before the zone) is.
fn classify<'a>(snapshot: &'a Snapshot, dns: &DnsConfig, qname: &str, rel: &str) -> Node<'a> {
    let tenant = |prefix| strip_prefix_ignore_case(rel, prefix).and_then(|d| snapshot.tenant(d));
    if let Some(t) = tenant(POLICY_TXT) {
        return Node::PolicyTxt(t);
    }
    if let Some(t) = tenant(TLSRPT_TXT) {
        return Node::TlsRptTxt(t);
    }
    if tenant(POLICY_HOST).is_some() {
        return Node::Host;
    }
    if let Some(tlsrpt) = &snapshot.config.tlsrpt
        && tlsrpt.host.as_str() == qname
    {
        return Node::Host;
    }
    let exists = snapshot.tenant(rel).is_some()
        || tenant(TLSRPT_PARENT).is_some()
        || snapshot.is_above_tenant(rel)
        || dns.nameservers.iter().any(|ns| {
            ns.as_str() == qname || strip_suffix_ignore_case(ns.as_str(), qname).is_some()
        })
        || snapshot
            .config
            .tlsrpt
            .as_ref()
            .is_some_and(|t| strip_suffix_ignore_case(t.host.as_str(), qname).is_some());
    if exists { Node::Empty } else { Node::Missing }
}

/// `v=TLSRPTv1; rua=…`: the report host of this edge, then the tenant's own
/// destinations. `None` when there is no destination at all.
fn tlsrpt_text(snapshot: &Snapshot, tenant: &Tenant) -> Option<String> {
    let ours = snapshot
        .config
        .tlsrpt
        .as_ref()
        .map(|t| format!("https://{}/tlsrpt/{}", t.host, tenant.domain));
    let mut text = String::from("v=TLSRPTv1; rua=");
    let mut first = true;
    for rua in ours.iter().chain(tenant.spec.tlsrpt_rua.iter()) {
        if !first {
            text.push(',');
        }
        text.push_str(rua);
        first = false;
    }
    (!first).then_some(text)
}

fn txt(owner: &Name, text: &[u8]) -> Record {
    let rdata = TXT::from_bytes(text.chunks(TXT_CHUNK).collect());
    Record::from_rdata(owner.clone(), TXT_TTL, RData::TXT(rdata))
}

fn a(owner: &Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(owner.clone(), ADDR_TTL, RData::A(A(ip)))
}

fn aaaa(owner: &Name, ip: Ipv6Addr) -> Record {
    Record::from_rdata(owner.clone(), ADDR_TTL, RData::AAAA(AAAA(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_text_folds_case_and_masks_odd_bytes() {
        let mut buf = [0u8; TEXT_MAX];
        let name = Name::from_ascii("_MTA-sts.Example.COM.").unwrap();
        assert_eq!(lower_text(&name, &mut buf), Some("_mta-sts.example.com"));
        let odd = Name::from_labels(vec![&b"a.b"[..], &b"c\xff"[..], &b"net"[..]]).unwrap();
        assert_eq!(lower_text(&odd, &mut buf), Some("a?b.c?.net"));
        assert_eq!(lower_text(&Name::root(), &mut buf), Some(""));
    }

    #[test]
    fn serials_increase() {
        assert_eq!(next_serial(None, 1_000), 1_000);
        assert_eq!(next_serial(Some(1_000), 1_000), 1_001);
        assert_eq!(next_serial(Some(5), 1_000), 1_000);
    }
}
