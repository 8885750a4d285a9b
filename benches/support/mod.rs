//! In-memory snapshots of N tenants for benches and the allocation test: one shared
//! certificate (what is measured is lookup and response building, not key storage).

#![allow(dead_code)]

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::sync::Arc;

use stsedge::config::{ServerConfig, TenantSpec};
use stsedge::domain::DomainName;
use stsedge::policy::{Mode, MxPattern, Policy};
use stsedge::snapshot::{CertStatus, Phase, Snapshot, SnapshotBuilder, Tenant};
use stsedge::tls::{CertOrigin, LoadedCert};

pub fn domain(i: usize) -> String {
    format!("t{i:07}.bench.example")
}

pub fn certificate() -> LoadedCert {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["*.bench.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    LoadedCert {
        key: Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], key, &provider).unwrap()),
        not_before: 0,
        not_after: i64::MAX,
        origin: CertOrigin::Static,
    }
}

pub fn tenant(i: usize, cert: &LoadedCert) -> Arc<Tenant> {
    let d = domain(i);
    let policy = Policy {
        mode: Mode::Testing,
        max_age: 604_800,
        mx: vec![MxPattern::parse(&format!("mail.{d}")).unwrap()],
    };
    let spec = TenantSpec {
        domain: DomainName::parse(&d).unwrap(),
        policy: policy.clone(),
        cert: None,
        tlsrpt_rua: Vec::new(),
    };
    Arc::new(Tenant::new(
        Arc::new(spec),
        Phase::Active,
        CertStatus::Loaded(cert.clone()),
        None,
    ))
}

pub fn config() -> Arc<ServerConfig> {
    Arc::new(ServerConfig::parse(Path::new("/etc/stsedge/stsedge.toml"), "").unwrap())
}

pub fn snapshot(n: usize) -> Snapshot {
    let cert = certificate();
    let mut builder = SnapshotBuilder::new(config(), n);
    for i in 0..n {
        builder.upsert(tenant(i, &cert));
    }
    builder.build()
}

pub fn shared(n: usize) -> Arc<ArcSwap<Snapshot>> {
    Arc::new(ArcSwap::from_pointee(snapshot(n)))
}
