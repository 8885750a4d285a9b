//! Loading a certificate chain and its key from PEM files into what rustls serves.
//!
//! A certificate is usable only if the key matches the leaf, the leaf is inside its
//! validity period and it names the host it will be served for; each failure becomes
//! a `ConfigError` that names the file and the fix. Nothing here is on the request path.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{CertPaths, ConfigError, Location, ProblemKind};

/// Where a served certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertOrigin {
    /// `cert`/`key` in the tenant file (or `service_cert`/`service_key`).
    Static,
    /// Obtained by ACME into `STATE_DIR/certs/`.
    Acme,
    /// Generated at start-up because `dev_self_signed = true`. Never for production.
    DevSelfSigned,
}

/// A certificate ready to be handed to rustls, with the facts the snapshot needs about
/// it. Holds no PEM text and no parsed X.509 structure, to keep per-tenant memory low.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    pub origin: CertOrigin,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("not_after", &self.not_after)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LoadedCert {
    pub fn is_valid_at(&self, unix: i64) -> bool {
        self.not_before <= unix && unix < self.not_after
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Facts read off a leaf certificate.
pub struct LeafInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
}

pub fn leaf_info(der: &CertificateDer<'_>) -> Result<LeafInfo, String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("the leaf certificate cannot be parsed ({e})"))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                dns_names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok(LeafInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
    })
}

/// Whether a certificate name (possibly `*.example.com`) covers `host` (RFC 6125 §6.4.3,
/// wildcard only as the whole leftmost label).
pub fn name_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Loads `paths` and checks the pair is servable now: the key matches the leaf and the
/// leaf is inside its validity period. `cert_pem` and `key_pem` are the contents of
/// `paths` (the caller reads them, to record their identity). Returns the leaf's DNS
/// names for `check_names`.
pub fn load_pair(
    paths: &CertPaths,
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: CertOrigin,
    provider: &CryptoProvider,
) -> Result<(LoadedCert, Vec<String>), ConfigError> {
    let cert_err =
        |msg: String| ConfigError::new(Location::file(&paths.cert), ProblemKind::Certificate, msg);
    let chain = parse_chain(&paths.cert, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| pem_error(&paths.key, e, "private key"))?;
    let info = leaf_info(&chain[0])
        .map_err(|m| cert_err(format!("{m}; replace it with a PEM X.509 certificate")))?;
    let certified = certified_key(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => ConfigError::new(
            Location::file(&paths.key),
            ProblemKind::Certificate,
            format!(
                "this key does not belong to the certificate in {}; use the private key that was issued with that certificate",
                paths.cert.display()
            ),
        ),
        other => ConfigError::new(
            Location::file(&paths.key),
            ProblemKind::Certificate,
            format!("the private key cannot be used ({other}); use an ECDSA, Ed25519 or RSA key in PEM"),
        ),
    })?;
    let now = unix_now();
    if now >= info.not_after {
        return Err(cert_err(format!(
            "the certificate expired at {}; renew it",
            format_unix(info.not_after)
        )));
    }
    if now < info.not_before {
        return Err(cert_err(format!(
            "the certificate is not valid before {}; check the clock or the certificate",
            format_unix(info.not_before)
        )));
    }
    Ok((
        LoadedCert {
            key: Arc::new(certified),
            not_before: info.not_before,
            not_after: info.not_after,
            origin,
        },
        info.dns_names,
    ))
}

/// Checks that a certificate with `dns_names`, loaded from `cert_path`, may be served
/// as `host`.
pub fn check_names(dns_names: &[String], host: &str, cert_path: &Path) -> Result<(), ConfigError> {
    if dns_names.iter().any(|n| name_covers(n, host)) {
        return Ok(());
    }
    let have = if dns_names.is_empty() {
        "no DNS name".to_owned()
    } else {
        dns_names.join(", ")
    };
    Err(ConfigError::new(
        Location::file(cert_path),
        ProblemKind::Certificate,
        format!(
            "the certificate is for {have} but is served as {host}; use one whose subjectAltName includes {host}"
        ),
    ))
}

/// Like `CertifiedKey::from_der`, but tries ECDSA first: the provider's generic loader
/// tries RSA first, and aws-lc parses (and validates) an EC key in full before refusing
/// it as RSA, which doubled start-up key parsing for the ECDSA keys most CAs issue now.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, rustls::Error> {
    let signing = match rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key) {
        Ok(k) => k,
        Err(_) => provider.key_provider.load_private_key(key)?,
    };
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(e),
    }
}

/// Intermediate and root certificates are shared by thousands of chains (a CA has a
/// handful): keep one copy of each. Bounded, since interned bytes live as long as the
/// process: past the bound, chains keep their own copies.
fn intern(der: CertificateDer<'static>) -> CertificateDer<'static> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    const MAX_INTERNED: usize = 512;
    static POOL: OnceLock<Mutex<HashSet<&'static [u8]>>> = OnceLock::new();
    let mut pool = POOL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = pool.get(der.as_ref()) {
        return CertificateDer::from(*shared);
    }
    if pool.len() >= MAX_INTERNED {
        return der;
    }
    let shared: &'static [u8] = Box::leak(der.as_ref().to_vec().into_boxed_slice());
    pool.insert(shared);
    CertificateDer::from(shared)
}

fn parse_chain(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let mut chain: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e, "certificate"))?;
    for issuer in chain.iter_mut().skip(1) {
        *issuer = intern(std::mem::replace(issuer, CertificateDer::from(&[][..])));
    }
    if chain.is_empty() {
        return Err(ConfigError::new(
            Location::file(path),
            ProblemKind::Certificate,
            "it holds no CERTIFICATE block; point `cert` at the PEM chain (leaf first), like fullchain.pem",
        ));
    }
    Ok(chain)
}

fn pem_error(path: &Path, err: rustls_pki_types::pem::Error, what: &str) -> ConfigError {
    use rustls_pki_types::pem::Error as E;
    match err {
        E::Io(io) => ConfigError::io(path, &io),
        E::NoItemsFound => ConfigError::new(
            Location::file(path),
            ProblemKind::Certificate,
            format!("it holds no PEM {what}; point the setting at the PEM file of the {what}"),
        ),
        other => ConfigError::new(
            Location::file(path),
            ProblemKind::Certificate,
            format!("it is not a readable PEM {what} ({other}); replace it with a PEM file"),
        ),
    }
}

/// `2026-12-03T15:58:27Z`.
pub fn format_unix(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("*.example.com", "mta-sts.example.com"));
        assert!(!name_covers("*.example.com", "a.mta-sts.example.com"));
        assert!(name_covers("mta-sts.example.com", "MTA-STS.example.com"));
        assert!(!name_covers("example.com", "mta-sts.example.com"));
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_796_313_507), "2026-12-03T15:58:27Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
    }
}
