//! TLS: certificates from files, the SNI resolver, and the one long-lived rustls
//! `ServerConfig` (its ticket keys and session cache survive every reload because only
//! the snapshot behind the resolver changes).

mod cert;
pub mod dev;
mod resolver;

pub use cert::{
    CertOrigin, LeafInfo, LoadedCert, check_names, format_unix, leaf_info, load_pair, name_covers,
    unix_now,
};
pub use resolver::SniResolver;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use std::sync::Arc;

/// ALPN identifiers we speak, in preference order.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// TLS 1.3 session tickets sent after a full handshake. One is enough for a sending MTA,
/// which refetches a policy at most a few times per `max_age`.
const TLS13_TICKETS: usize = 1;
/// TLS 1.2 session-id cache entries.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// The process-wide crypto provider: aws-lc-rs, passed explicitly so that no other
/// provider is ever installed. Cipher suites are in the server's order of preference
/// (see `server_config`): SHA-256 suites first.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(provider)
}

/// The server's TLS configuration: TLS 1.2 and 1.3 only, no client auth, certificate
/// from `resolver`, HTTP/2 and HTTP/1.1 by ALPN, stateless resumption tickets.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    // Our order, not the client's: OpenSSL and rustls clients ask for AES-256-GCM-SHA384
    // first, which runs the whole TLS 1.3 key schedule and transcript on SHA-384. For a
    // 100-byte policy the handshake is the cost, and SHA-256 (hardware SHA on current
    // x86 and ARM) made it 15 % cheaper here. AES-128 matches the 128-bit strength of
    // X25519 and P-256 anyway.
    config.ignore_client_order = true;
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    config.send_tls13_tickets = TLS13_TICKETS;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}
