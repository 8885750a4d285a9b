//! Trust for outgoing TLS: the public web roots (`webpki-roots`) plus `--ca-file`, one
//! rustls `ClientConfig` on the process's aws-lc-rs provider, and the mapping of a
//! failed handshake to what an operator has to fix.
//!
//! It owns certificate verification policy (TLS 1.2+, names checked by rustls'
//! webpki verifier); it must not relax it: `verify` reports what a sending MTA in
//! `enforce` mode would see, so there is no "accept invalid" switch here.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("{}: cannot read the CA file ({source}); pass a PEM file with one or more certificates", path.display())]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no CA certificate in this file; pass a PEM file with `BEGIN CERTIFICATE` blocks", path.display())]
    Empty { path: PathBuf },
    #[error("{}: a certificate in this file is not a usable trust anchor ({source})", path.display())]
    Anchor {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the TLS client cannot be configured ({0})")]
    Config(#[from] rustls::Error),
}

/// The public web roots plus every certificate in `ca_file`.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let read = |source| TrustError::Read {
            path: path.to_owned(),
            source,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?;
        if certs.is_empty() {
            return Err(TrustError::Empty {
                path: path.to_owned(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|source| TrustError::Anchor {
                path: path.to_owned(),
                source,
            })?;
        }
    }
    Ok(roots)
}

/// A client configuration: TLS 1.3 and 1.2, the given roots, the given ALPN.
pub fn client_config(
    roots: Arc<RootCertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TrustError> {
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Why a TLS handshake failed, in the terms a fix is chosen by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate is expired or not yet valid.
    Expired(String),
    /// The certificate does not name the host.
    WrongName(String),
    /// The chain does not lead to a trusted root.
    Untrusted(String),
    /// Another certificate problem (revoked, bad encoding, wrong usage…).
    BadCertificate(String),
    /// The handshake failed for a reason other than the certificate.
    Handshake(String),
}

impl TlsFailure {
    /// Classifies the `io::Error` a tokio-rustls handshake returned.
    pub fn from_io(e: &std::io::Error) -> TlsFailure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(c)) => Self::from_cert(c),
            Some(other) => TlsFailure::Handshake(other.to_string()),
            None => TlsFailure::Handshake(e.to_string()),
        }
    }

    fn from_cert(c: &CertificateError) -> TlsFailure {
        let text = rustls::Error::InvalidCertificate(c.clone()).to_string();
        match c {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired(text),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::WrongName(text)
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailure::Untrusted(text)
            }
            _ => TlsFailure::BadCertificate(text),
        }
    }

    /// Whether the certificate, rather than the TLS exchange, is at fault.
    pub fn is_certificate(&self) -> bool {
        !matches!(self, TlsFailure::Handshake(_))
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::Expired(t) => {
                write!(f, "certificate invalid: expired or not yet valid ({t})")
            }
            TlsFailure::WrongName(t) => write!(f, "certificate invalid: wrong name ({t})"),
            TlsFailure::Untrusted(t) => write!(f, "certificate invalid: untrusted issuer ({t})"),
            TlsFailure::BadCertificate(t) => write!(f, "certificate invalid ({t})"),
            TlsFailure::Handshake(t) => write!(f, "TLS handshake failed ({t})"),
        }
    }
}
