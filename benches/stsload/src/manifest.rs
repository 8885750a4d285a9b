//! Reads a fixture's `manifest.tsv` into the loader's tenant table (per tenant the
//! SNI/Host name and the expected body, rendered by the same function the fixture
//! used for nginx) and into the verifier's host → leaf-SHA-256 index.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::HeaderValue;
use rustls_pki_types::ServerName;

use crate::policy::{bench_policy_body, parse_sha256_hex, policy_host};

/// One tenant as the loader sees it. Everything per-request is precomputed so the hot
/// loop only clones cheap handles.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub host_header: HeaderValue,
    pub server_name: ServerName<'static>,
    pub body: Bytes,
}

/// The whole tenant table plus the host → certificate-hash index the verifier uses.
#[derive(Debug)]
pub struct Manifest {
    pub tenants: Vec<Tenant>,
    pub cert_by_host: Arc<HashMap<String, [u8; 32]>>,
}

impl Manifest {
    /// Loads `DIR/manifest.tsv` (`domain<TAB>sha256hex` per line).
    pub fn load(fixture_dir: &Path) -> Result<Self> {
        let path = fixture_dir.join("manifest.tsv");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `stsload fixture` first)", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let mut tenants = Vec::new();
        let mut cert_by_host = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((domain, hash)) = line.split_once('\t') else {
                bail!("line {}: expected `domain<TAB>sha256`", n + 1);
            };
            let Some(cert_sha256) = parse_sha256_hex(hash.trim()) else {
                bail!("line {}: bad SHA-256 hex {hash:?}", n + 1);
            };
            let host = policy_host(domain);
            let server_name = ServerName::try_from(host.clone())
                .with_context(|| format!("line {}: {host:?} is not a DNS name", n + 1))?;
            cert_by_host.insert(host.clone(), cert_sha256);
            tenants.push(Tenant {
                host_header: HeaderValue::from_str(&host)?,
                server_name,
                body: Bytes::from(bench_policy_body(domain)),
            });
        }
        if tenants.is_empty() {
            bail!("no tenants");
        }
        Ok(Self {
            tenants,
            cert_by_host: Arc::new(cert_by_host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let h = "ab".repeat(32);
        let m = Manifest::parse(&format!("t000001.bench.example\t{h}\n")).unwrap();
        assert_eq!(m.tenants.len(), 1);
        assert_eq!(m.tenants[0].host_header, "mta-sts.t000001.bench.example");
        assert_eq!(m.cert_by_host["mta-sts.t000001.bench.example"], [0xab; 32]);
        assert!(Manifest::parse("x\tzz\n").is_err());
    }
}
