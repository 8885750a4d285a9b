//! `tenants/DOMAIN.toml`: one customer domain. The file name is the domain.
//!
//! Parsing is pure (text in, `TenantSpec` or every problem out); reading the file and
//! loading its certificate belong to the reloader and `tls`.
//!
//! # Defaults
//! `mode = "testing"`, `max_age = 604800`; `mx` is required unless `mode = "none"`;
//! without `cert`/`key` the certificate comes from ACME (or, in development, is
//! self-signed).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

use super::error::{ConfigError, Location, ProblemKind, SourceText, resolve_path};
use crate::domain::DomainName;
use crate::policy::{MAX_AGE_LIMIT, Mode, MxPattern, Policy};

pub const DEFAULT_MAX_AGE: u32 = 604_800;
pub const TENANT_FILE_SUFFIX: &str = ".toml";

/// The serde mirror of the file: nothing validated yet, spans kept for messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    mode: Option<Spanned<String>>,
    max_age: Option<Spanned<i64>>,
    mx: Option<Spanned<Vec<Spanned<String>>>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    tlsrpt_rua: Option<Vec<Spanned<String>>>,
}

/// A certificate chain and its private key, as paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A validated tenant file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub domain: DomainName,
    pub policy: Policy,
    /// A static certificate; `None` means "obtain one" (ACME or dev self-signed).
    pub cert: Option<std::sync::Arc<CertPaths>>,
    /// Extra TLS-RPT destinations for the `_smtp._tls` record.
    pub tlsrpt_rua: Vec<String>,
}

/// The would-be domain of a tenant file: the name without `.toml`; `None` for hidden
/// files (editors' temporaries) and other extensions. The one rule for what a tenant
/// file is.
pub fn tenant_file_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    name.strip_suffix(TENANT_FILE_SUFFIX)
}

/// The domain a tenant file is for, from its name; `None` for files that are not
/// tenant files at all (editor backups, hidden files, other extensions).
pub fn domain_of_file(path: &Path) -> Option<Result<DomainName, ConfigError>> {
    let stem = tenant_file_stem(path)?;
    Some(DomainName::parse(stem).map_err(|e| {
        ConfigError::new(
            Location::file(path),
            ProblemKind::Invalid,
            format!(
                "the file name `{stem}` is not a valid domain name ({e}); name the file after the customer domain, like `example.com.toml`"
            ),
        )
    }))
}

/// Parses and validates a tenant file's text. `base_dir` is the directory of
/// `stsedge.toml`, against which relative certificate paths resolve.
pub fn parse_tenant(
    domain: DomainName,
    path: &Path,
    text: &str,
    base_dir: &Path,
) -> Result<TenantSpec, Vec<ConfigError>> {
    let src = SourceText { path, text };
    let raw: RawTenant = toml::from_str(text).map_err(|e| vec![src.toml_error(&e)])?;
    let mut errors = Vec::new();

    let mode = match &raw.mode {
        None => Mode::Testing,
        Some(m) => Mode::parse(m.get_ref()).unwrap_or_else(|| {
            errors.push(src.error(
                m.span(),
                ProblemKind::Invalid,
                format!(
                    "mode `{}` is not an MTA-STS mode; use \"testing\", \"enforce\" or \"none\"",
                    m.get_ref()
                ),
            ));
            Mode::Testing
        }),
    };

    let max_age = match &raw.max_age {
        None => DEFAULT_MAX_AGE,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=MAX_AGE_LIMIT).contains(&n) => n,
            _ => {
                errors.push(src.error(
                    v.span(),
                    ProblemKind::Invalid,
                    format!(
                        "max_age {} is out of range; set it to a number of seconds from 1 to {MAX_AGE_LIMIT} (RFC 8461 §3.2)",
                        v.get_ref()
                    ),
                ));
                DEFAULT_MAX_AGE
            }
        },
    };

    let mut mx = Vec::new();
    if let Some(list) = &raw.mx {
        for item in list.get_ref() {
            match MxPattern::parse(item.get_ref()) {
                Ok(p) if mx.contains(&p) => errors.push(src.error(
                    item.span(),
                    ProblemKind::Invalid,
                    format!("mx `{}` is listed twice; remove one", item.get_ref()),
                )),
                Ok(p) => mx.push(p),
                Err(e) => errors.push(src.error(
                    item.span(),
                    ProblemKind::Invalid,
                    format!(
                        "mx `{}` is not a valid MX pattern ({e}); write a host name like `mail.example.com` or `*.mx.example.net`",
                        item.get_ref()
                    ),
                )),
            }
        }
    }
    let listed = raw.mx.as_ref().is_some_and(|l| !l.get_ref().is_empty());
    if !listed && mode != Mode::None {
        let span = raw.mx.as_ref().map_or(0..0, |l| l.span());
        let location = if raw.mx.is_some() {
            src.at(span)
        } else {
            Location::file(path)
        };
        errors.push(ConfigError::new(
            location,
            ProblemKind::Invalid,
            format!(
                "no mx patterns for mode `{mode}`; add `mx = [\"mail.{domain}\"]` with the host names of the domain's MX records, or set `mode = \"none\"`"
            ),
        ));
    }

    let cert = match (&raw.cert, &raw.key) {
        (Some(c), Some(k)) => Some(std::sync::Arc::new(CertPaths {
            cert: resolve_path(base_dir, c.get_ref()),
            key: resolve_path(base_dir, k.get_ref()),
        })),
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => {
            let (have, missing) = if raw.cert.is_some() {
                ("cert", "key")
            } else {
                ("key", "cert")
            };
            errors.push(src.error(
                one.span(),
                ProblemKind::Invalid,
                format!("`{have}` is set without `{missing}`; set both, or neither to use ACME"),
            ));
            None
        }
    };

    let mut tlsrpt_rua = Vec::new();
    for uri in raw.tlsrpt_rua.iter().flatten() {
        match check_rua(uri.get_ref()) {
            Ok(()) => tlsrpt_rua.push(uri.get_ref().clone()),
            Err(why) => errors.push(src.error(
                uri.span(),
                ProblemKind::Invalid,
                format!("tlsrpt_rua `{}` {why}", uri.get_ref()),
            )),
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TenantSpec {
        domain,
        policy: Policy { mode, max_age, mx },
        cert,
        tlsrpt_rua,
    })
}

/// RFC 8460 §3: `rua` is a comma-separated list of `mailto:` or `https:` URIs, so a
/// destination may not contain the separators itself.
fn check_rua(uri: &str) -> Result<(), &'static str> {
    let rest = uri
        .strip_prefix("mailto:")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or("is not a TLS-RPT destination; write `mailto:reports@example.com` or `https://host/path`")?;
    if rest.is_empty() {
        return Err("has nothing after the scheme; add the address or host");
    }
    if uri
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b == b',' || b == b';' || b.is_ascii_control())
    {
        return Err("contains a space, `,` or `;`; percent-encode them (RFC 8460 §3)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TenantSpec, Vec<ConfigError>> {
        parse_tenant(
            DomainName::parse("example.com").unwrap(),
            Path::new("tenants/example.com.toml"),
            text,
            Path::new("/etc/stsedge"),
        )
    }

    #[test]
    fn defaults_apply() {
        let t = parse("mx = [\"mail.example.com\"]\n").unwrap();
        assert_eq!(t.policy.mode, Mode::Testing);
        assert_eq!(t.policy.max_age, 604800);
        assert!(t.cert.is_none());
    }

    #[test]
    fn relative_cert_paths_resolve_against_the_config_dir() {
        let t =
            parse("mx = [\"mail.example.com\"]\ncert = \"c/f.pem\"\nkey = \"/k.pem\"\n").unwrap();
        let cert = t.cert.unwrap();
        assert_eq!(cert.cert, Path::new("/etc/stsedge/c/f.pem"));
        assert_eq!(cert.key, Path::new("/k.pem"));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let errors =
            parse("mode = \"strict\"\nmax_age = 0\nmx = [\"mx*.example.com\"]\n").unwrap_err();
        let lines: Vec<_> = errors.iter().map(|e| e.location.line).collect();
        assert_eq!(lines, [Some(1), Some(2), Some(3)]);
        assert!(errors[0].message.contains("\"enforce\""));
        assert!(errors[1].message.contains("from 1 to 31557600"));
        assert!(errors[2].message.contains("leftmost label"));
    }

    #[test]
    fn unknown_keys_are_errors_with_a_location() {
        let errors = parse("mx = [\"mail.example.com\"]\nmaxage = 5\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location.line, Some(2));
        assert!(
            errors[0].message.contains("unknown field"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn mx_is_required_unless_mode_none() {
        assert!(parse("mode = \"enforce\"\n").is_err());
        assert!(parse("mode = \"none\"\n").is_ok());
    }

    #[test]
    fn rua_must_be_mailto_or_https() {
        assert!(parse("mx=[\"a.example.com\"]\ntlsrpt_rua=[\"mailto:t@example.com\"]").is_ok());
        assert!(parse("mx=[\"a.example.com\"]\ntlsrpt_rua=[\"http://x\"]").is_err());
        assert!(parse("mx=[\"a.example.com\"]\ntlsrpt_rua=[\"mailto:a@b,c\"]").is_err());
    }

    #[test]
    fn file_names_are_domains() {
        assert!(domain_of_file(Path::new("t/.example.com.toml.swp")).is_none());
        assert!(domain_of_file(Path::new("t/example.com.toml~")).is_none());
        let d = domain_of_file(Path::new("t/Example.COM.toml"))
            .unwrap()
            .unwrap();
        assert_eq!(d.as_str(), "example.com");
        assert!(
            domain_of_file(Path::new("t/bad_name.toml"))
                .unwrap()
                .is_err()
        );
    }
}
