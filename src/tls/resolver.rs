//! `SniResolver`: picks the certificate for a handshake from the current snapshot.
//!
//! This runs inside every TLS handshake, so it does one `ArcSwap::load`, one
//! allocation-free name lookup and one `Arc` clone, and nothing else.

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

use crate::snapshot::Snapshot;

pub struct SniResolver {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        SniResolver { snapshot }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls has already lowercased the name and dropped a trailing dot.
        let name = hello.server_name()?;
        self.snapshot.load().certificate_for(name).cloned()
    }
}
