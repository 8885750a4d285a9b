//! Client-side TLS for the loader and the ceiling benchmark: the certificate
//! verifier that checks identity by leaf hash, and the one place that builds a
//! `ClientConfig` (X25519 only, ALPN http/1.1, resumption on or off).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts the server's certificate iff the SHA-256 of its end-entity certificate is
/// the one the fixture recorded for that SNI name.
///
/// No chain building or path validation: the fixture CA is ours, the hash pins the
/// exact leaf, and path validation would make the loader — not the server — the
/// bottleneck. Handshake signatures are only checked with `verify_signatures`; off,
/// a server could skip the CertificateVerify signature cheaply and still pass, which
/// is why the ceiling and `--verify-signatures` exist.
#[derive(Debug)]
pub struct HashVerifier {
    cert_by_host: Arc<HashMap<String, [u8; 32]>>,
    verify_signatures: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl HashVerifier {
    pub fn new(
        cert_by_host: Arc<HashMap<String, [u8; 32]>>,
        verify_signatures: bool,
        provider: &CryptoProvider,
    ) -> Self {
        Self {
            cert_by_host,
            verify_signatures,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for HashVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let expected = match server_name {
            ServerName::DnsName(name) => self.cert_by_host.get(name.as_ref()),
            _ => None,
        };
        let digest = crate::fixture::cert_sha256(end_entity);
        if expected == Some(&digest) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.verify_signatures {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        } else {
            Ok(HandshakeSignatureValid::assertion())
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.verify_signatures {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        } else {
            Ok(HandshakeSignatureValid::assertion())
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// aws-lc-rs with X25519 as the only key exchange group. The default list starts with
/// the X25519MLKEM768 hybrid, whose larger shares and extra work would change what
/// is measured; the benchmark contract is a plain X25519 handshake.
///
/// For TLS 1.2, secp256r1 is listed too (after X25519, so it is never chosen for key
/// exchange by a server honouring client order): in TLS 1.2 `supported_groups` also
/// says which curves the client accepts in an ECDSA *certificate* (RFC 8422 §5.1),
/// and OpenSSL (so nginx) refuses the handshake when the cert's curve is missing.
pub fn x25519_provider(tls12: bool, first: Suite) -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    if tls12 {
        provider.kx_groups.push(aws_lc_rs::kx_group::SECP256R1);
    }
    let want = first.suite();
    // Stable partition: the chosen TLS 1.3 suite first, the rest in rustls' order.
    provider.cipher_suites.sort_by_key(|s| s.suite() != want);
    Arc::new(provider)
}

/// The TLS 1.3 suite the client lists first. Both rustls (unless
/// `ignore_client_order`) and nginx (`ssl_prefer_server_ciphers off`, the default)
/// pick the client's favourite, so this choice decides what is measured: with
/// SHA-NI but no SHA-512 hardware, the SHA-384 key schedule of AES-256 costs
/// noticeably more than AES-128's SHA-256 (see `stsload ceiling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// TLS13_AES_256_GCM_SHA384: rustls' and OpenSSL's default first choice.
    Aes256,
    /// TLS13_AES_128_GCM_SHA256.
    Aes128,
    /// TLS13_CHACHA20_POLY1305_SHA256.
    Chacha20,
}

impl Suite {
    pub fn suite(self) -> rustls::CipherSuite {
        match self {
            Suite::Aes256 => rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            Suite::Aes128 => rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            Suite::Chacha20 => rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        }
    }
}

/// Builds the loader's client config. `resume_capacity` = `None` disables resumption
/// entirely (rustls resumes by default, which would silently turn "full" into
/// "resume"); `Some(n)` keeps tickets for `n` server names.
pub fn client_config(
    verifier: Arc<HashVerifier>,
    provider: Arc<CryptoProvider>,
    tls12: bool,
    resume_capacity: Option<usize>,
) -> anyhow::Result<ClientConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = match resume_capacity {
        None => Resumption::disabled(),
        // The cache's size counts TLS 1.3 tickets, 8 per server name, not names:
        // `new(n)` alone would remember only n/8 tenants and quietly turn most
        // "resumed" visits into full handshakes.
        Some(n) => Resumption::store(Arc::new(ClientSessionMemoryCache::new(
            n.max(16).saturating_mul(8),
        ))),
    };
    Ok(config)
}
