//! `stsedge.toml`: server settings, parsed strictly and validated as a whole.
//!
//! # Defaults
//! `tenants_dir = "tenants"`, `state_dir = "/var/lib/stsedge"`,
//! `[https] listen = ["0.0.0.0:443", "[::]:443"]`, `dev_self_signed = false`,
//! `[admin] listen = "127.0.0.1:9090"`, `[dns] listen = ["0.0.0.0:53", "[::]:53"]`,
//! `[tlsrpt] max_report_bytes = 10485760`; `[limits]` as in [`Limits`]. `[dns]`, `[acme]` and `[tlsrpt]` are off
//! unless present.

use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use super::error::{ConfigError, ProblemKind, SourceText, resolve_path};
use super::tenant::CertPaths;
use crate::domain::DomainName;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/stsedge/stsedge.toml";
pub const DEFAULT_MAX_REPORT_BYTES: u64 = 10 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    tenants_dir: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    https: RawHttps,
    #[serde(default)]
    admin: RawAdmin,
    dns: Option<Spanned<RawDns>>,
    acme: Option<Spanned<RawAcme>>,
    tlsrpt: Option<Spanned<RawTlsRpt>>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<i64>>,
    handshake_timeout_ms: Option<Spanned<i64>>,
    header_timeout_ms: Option<Spanned<i64>>,
    max_header_bytes: Option<Spanned<i64>>,
    connection_lifetime_secs: Option<Spanned<i64>>,
    drain_timeout_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttps {
    listen: Option<Vec<Spanned<String>>>,
    service_cert: Option<Spanned<String>>,
    service_key: Option<Spanned<String>>,
    #[serde(default)]
    dev_self_signed: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    zone: Spanned<String>,
    listen: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    ipv4: Vec<Spanned<String>>,
    #[serde(default)]
    ipv6: Vec<Spanned<String>>,
    #[serde(default)]
    nameservers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Spanned<String>,
    #[serde(default)]
    contact: Vec<Spanned<String>>,
    ca_bundle: Option<Spanned<String>>,
    resolver: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsRpt {
    host: Spanned<String>,
    max_report_bytes: Option<Spanned<i64>>,
}

/// Validated server settings. Paths are absolute or relative to the working directory,
/// already resolved against the directory of `stsedge.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    pub tenants_dir: PathBuf,
    pub state_dir: PathBuf,
    pub https: HttpsConfig,
    pub admin: AdminConfig,
    pub dns: Option<DnsConfig>,
    pub acme: Option<AcmeConfig>,
    pub tlsrpt: Option<TlsRptConfig>,
    pub limits: Limits,
}

/// Bounds on what one client can cost (`[limits]`, optional; not in SPEC §2 because
/// the defaults suit nearly everyone).
///
/// # Defaults
/// 20 000 connections, 10 s for the TLS handshake, 10 s for request headers, 16 KiB of
/// headers, 60 s per connection, 10 s to drain at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub connection_lifetime: Duration,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 20_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            connection_lifetime: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// hyper refuses a read buffer below 8 KiB.
const MIN_HEADER_BYTES: i64 = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    pub listen: Vec<SocketAddr>,
    pub service_cert: Option<CertPaths>,
    pub dev_self_signed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub zone: DomainName,
    pub listen: Vec<SocketAddr>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub nameservers: Vec<DomainName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    pub directory: String,
    pub contact: Vec<String>,
    pub ca_bundle: Option<PathBuf>,
    pub resolver: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptConfig {
    pub host: DomainName,
    pub max_report_bytes: u64,
}

impl ServerConfig {
    /// Reads and validates `path`, reporting every problem found.
    pub fn load(path: &Path) -> Result<ServerConfig, Vec<ConfigError>> {
        // Absolute, so every path derived from it compares equal to the absolute paths
        // file-system events carry (a relative `--config` once made edits go unseen).
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(&path).map_err(|e| vec![ConfigError::io(&path, &e)])?;
        Self::parse(&path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ServerConfig, Vec<ConfigError>> {
        let src = SourceText { path, text };
        let raw: RawServer = toml::from_str(text).map_err(|e| vec![src.toml_error(&e)])?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut v = Validator {
            src: &src,
            errors: Vec::new(),
        };
        let path_or = |value: &Option<Spanned<String>>, default: &str| {
            resolve_path(&base_dir, value.as_ref().map_or(default, |s| s.get_ref()))
        };
        let tenants_dir = path_or(&raw.tenants_dir, "tenants");
        let state_dir = path_or(&raw.state_dir, "/var/lib/stsedge");

        let https = HttpsConfig {
            listen: v.listen_list(raw.https.listen.as_deref(), &["0.0.0.0:443", "[::]:443"]),
            service_cert: v.cert_pair(
                &base_dir,
                &raw.https.service_cert,
                &raw.https.service_key,
                "service_cert",
                "service_key",
            ),
            dev_self_signed: raw.https.dev_self_signed,
        };
        let admin = AdminConfig {
            listen: raw
                .admin
                .listen
                .as_ref()
                .and_then(|s| v.socket_addr(s))
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
        };
        let dns = raw.dns.as_ref().map(|d| {
            let d = d.get_ref();
            DnsConfig {
                zone: v.domain(&d.zone, "zone").unwrap_or_else(placeholder_name),
                listen: v.listen_list(d.listen.as_deref(), &["0.0.0.0:53", "[::]:53"]),
                ipv4: d
                    .ipv4
                    .iter()
                    .filter_map(|a| v.ip(a, true))
                    .filter_map(as_v4)
                    .collect(),
                ipv6: d
                    .ipv6
                    .iter()
                    .filter_map(|a| v.ip(a, false))
                    .filter_map(as_v6)
                    .collect(),
                nameservers: d
                    .nameservers
                    .iter()
                    .filter_map(|n| v.domain(n, "nameserver"))
                    .collect(),
            }
        });
        if let Some(spanned) = &raw.dns {
            let d = spanned.get_ref();
            if d.ipv4.is_empty() && d.ipv6.is_empty() {
                v.push(
                    spanned.span(),
                    "[dns] has no addresses for the HTTPS edge; add `ipv4 = [\"…\"]` or `ipv6 = [\"…\"]`",
                );
            }
            if d.nameservers.is_empty() {
                v.push(
                    spanned.span(),
                    "[dns] has no nameservers; add `nameservers = [\"ns1.<zone>\"]` with the names the zone is delegated to",
                );
            }
        }
        let acme = raw.acme.as_ref().map(|a| {
            let a = a.get_ref();
            if !a.directory.get_ref().starts_with("https://") {
                v.push(
                    a.directory.span(),
                    "[acme] directory must be an https:// URL, like \"https://acme-v02.api.letsencrypt.org/directory\"",
                );
            }
            for c in &a.contact {
                if !c.get_ref().starts_with("mailto:") {
                    v.push(c.span(), "[acme] contact entries are `mailto:` URIs, like \"mailto:ops@example.net\"");
                }
            }
            AcmeConfig {
                directory: a.directory.get_ref().clone(),
                contact: a.contact.iter().map(|c| c.get_ref().clone()).collect(),
                ca_bundle: a.ca_bundle.as_ref().map(|p| resolve_path(&base_dir, p.get_ref())),
                resolver: a.resolver.as_ref().and_then(|r| v.socket_addr(r)),
            }
        });
        let tlsrpt = raw.tlsrpt.as_ref().map(|t| {
            let t = t.get_ref();
            let max_report_bytes = match &t.max_report_bytes {
                None => DEFAULT_MAX_REPORT_BYTES,
                Some(n) if *n.get_ref() > 0 => *n.get_ref() as u64,
                Some(n) => {
                    v.push(
                        n.span(),
                        "max_report_bytes must be a positive number of bytes, like 10485760",
                    );
                    DEFAULT_MAX_REPORT_BYTES
                }
            };
            TlsRptConfig {
                host: v.domain(&t.host, "host").unwrap_or_else(placeholder_name),
                max_report_bytes,
            }
        });

        let d = Limits::default();
        let l = &raw.limits;
        let limits = Limits {
            max_connections: v.number(
                &l.max_connections,
                "max_connections",
                1,
                d.max_connections as i64,
            ) as usize,
            handshake_timeout: Duration::from_millis(v.number(
                &l.handshake_timeout_ms,
                "handshake_timeout_ms",
                1,
                d.handshake_timeout.as_millis() as i64,
            ) as u64),
            header_timeout: Duration::from_millis(v.number(
                &l.header_timeout_ms,
                "header_timeout_ms",
                1,
                d.header_timeout.as_millis() as i64,
            ) as u64),
            max_header_bytes: v.number(
                &l.max_header_bytes,
                "max_header_bytes",
                MIN_HEADER_BYTES,
                d.max_header_bytes as i64,
            ) as usize,
            connection_lifetime: Duration::from_secs(v.number(
                &l.connection_lifetime_secs,
                "connection_lifetime_secs",
                1,
                d.connection_lifetime.as_secs() as i64,
            ) as u64),
            drain_timeout: Duration::from_millis(v.number(
                &l.drain_timeout_ms,
                "drain_timeout_ms",
                0,
                d.drain_timeout.as_millis() as i64,
            ) as u64),
        };

        if !v.errors.is_empty() {
            return Err(v.errors);
        }
        Ok(ServerConfig {
            path: path.to_path_buf(),
            base_dir,
            tenants_dir,
            state_dir,
            https,
            admin,
            dns,
            acme,
            tlsrpt,
            limits,
        })
    }

    /// Where certificates obtained by ACME for `domain` live (SPEC §2).
    pub fn acme_cert_dir(&self, domain: &DomainName) -> PathBuf {
        self.state_dir
            .join("certs")
            .join(format!("{}{domain}", crate::policy::POLICY_HOST_PREFIX))
    }
}

fn placeholder_name() -> DomainName {
    DomainName::parse("invalid.invalid").expect("literal")
}

fn as_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn as_v6(ip: IpAddr) -> Option<Ipv6Addr> {
    match ip {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

struct Validator<'a> {
    src: &'a SourceText<'a>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn push(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>) {
        self.errors
            .push(self.src.error(span, ProblemKind::Invalid, msg));
    }

    /// An integer setting that must be at least `min`; `default` when absent.
    fn number(&mut self, value: &Option<Spanned<i64>>, name: &str, min: i64, default: i64) -> i64 {
        match value {
            None => default,
            Some(n) if *n.get_ref() >= min => *n.get_ref(),
            Some(n) => {
                self.push(
                    n.span(),
                    format!("[limits] {name} must be at least {min}; the default is {default}"),
                );
                default
            }
        }
    }

    fn socket_addr(&mut self, s: &Spanned<String>) -> Option<SocketAddr> {
        let parsed = s.get_ref().parse::<SocketAddr>();
        if parsed.is_err() {
            self.push(
                s.span(),
                format!(
                    "`{}` is not an address and port; write it like \"0.0.0.0:443\" or \"[::]:443\"",
                    s.get_ref()
                ),
            );
        }
        parsed.ok()
    }

    fn listen_list(
        &mut self,
        list: Option<&[Spanned<String>]>,
        default: &[&str],
    ) -> Vec<SocketAddr> {
        match list {
            Some(list) => list.iter().filter_map(|s| self.socket_addr(s)).collect(),
            None => default
                .iter()
                .map(|s| s.parse().expect("literal"))
                .collect(),
        }
    }

    fn ip(&mut self, s: &Spanned<String>, v4: bool) -> Option<IpAddr> {
        let parsed = s
            .get_ref()
            .parse::<IpAddr>()
            .ok()
            .filter(|ip| ip.is_ipv4() == v4);
        if parsed.is_none() {
            let example = if v4 { "192.0.2.10" } else { "2001:db8::10" };
            self.push(
                s.span(),
                format!(
                    "`{}` is not an IPv{} address; write it like \"{example}\"",
                    s.get_ref(),
                    if v4 { 4 } else { 6 }
                ),
            );
        }
        parsed
    }

    fn domain(&mut self, s: &Spanned<String>, what: &str) -> Option<DomainName> {
        match DomainName::parse(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(
                    s.span(),
                    format!("{what} `{}` is not a valid domain name ({e}); write a name like `sts.example.net`", s.get_ref()),
                );
                None
            }
        }
    }

    fn cert_pair(
        &mut self,
        base: &Path,
        cert: &Option<Spanned<String>>,
        key: &Option<Spanned<String>>,
        cert_name: &str,
        key_name: &str,
    ) -> Option<CertPaths> {
        match (cert, key) {
            (Some(c), Some(k)) => Some(CertPaths {
                cert: resolve_path(base, c.get_ref()),
                key: resolve_path(base, k.get_ref()),
            }),
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => {
                self.push(
                    one.span(),
                    format!("set both `{cert_name}` and `{key_name}`, or neither"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let c = ServerConfig::parse(Path::new("/etc/stsedge/stsedge.toml"), "").unwrap();
        assert_eq!(c.tenants_dir, Path::new("/etc/stsedge/tenants"));
        assert_eq!(c.state_dir, Path::new("/var/lib/stsedge"));
        assert_eq!(c.https.listen.len(), 2);
        assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
        assert!(!c.https.dev_self_signed);
        assert!(c.dns.is_none() && c.acme.is_none() && c.tlsrpt.is_none());
    }

    #[test]
    fn the_spec_example_parses() {
        let text = r#"
tenants_dir = "tenants"
state_dir   = "/var/lib/stsedge"
[https]
listen = ["0.0.0.0:443", "[::]:443"]
[admin]
listen = "127.0.0.1:9090"
[dns]
zone   = "sts.example.net"
listen = ["0.0.0.0:53", "[::]:53"]
ipv4   = ["192.0.2.10"]
ipv6   = []
nameservers = ["ns1.sts.example.net"]
[acme]
directory = "https://acme-v02.api.letsencrypt.org/directory"
contact   = ["mailto:ops@example.net"]
[tlsrpt]
host = "tlsrpt.sts.example.net"
max_report_bytes = 10485760
"#;
        let c = ServerConfig::parse(Path::new("stsedge.toml"), text).unwrap();
        assert_eq!(c.dns.unwrap().zone.as_str(), "sts.example.net");
        assert_eq!(c.tlsrpt.unwrap().max_report_bytes, 10485760);
    }

    #[test]
    fn all_problems_are_listed_with_lines() {
        let text = "[https]\nlisten = [\"0.0.0.0\"]\n[admin]\nlisten = \"nowhere\"\n[dns]\nzone = \"bad_zone\"\nipv4 = [\"::1\"]\nnameservers = [\"ns1.example.net\"]\n";
        let errors = ServerConfig::parse(Path::new("s.toml"), text).unwrap_err();
        let lines: Vec<_> = errors.iter().filter_map(|e| e.location.line).collect();
        assert_eq!(lines, [2, 4, 6, 7], "{errors:#?}");
    }

    #[test]
    fn unknown_sections_are_errors() {
        let errors = ServerConfig::parse(Path::new("s.toml"), "[htps]\nlisten = []\n").unwrap_err();
        assert!(errors[0].message.contains("unknown field"));
    }
}
