//! Development certificates (`[https] dev_self_signed = true`): a local CA kept in
//! `STATE_DIR/dev-ca/` and leaves issued from it in memory, so that
//! `curl --cacert STATE_DIR/dev-ca/ca.pem` verifies them. Never used unless the operator
//! turned it on; every use is logged as not for production.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::cert::{CertOrigin, LoadedCert, unix_now};
use crate::config::{ConfigError, Location, ProblemKind};

const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    pub ca_path: PathBuf,
}

impl DevCa {
    /// Opens the development CA under `state_dir`, creating it on first use.
    pub fn open_or_create(state_dir: &Path) -> Result<DevCa, ConfigError> {
        let dir = state_dir.join("dev-ca");
        let ca_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let err = |path: &Path, what: String| {
            ConfigError::new(Location::file(path), ProblemKind::Certificate, what)
        };
        if !ca_path.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| ConfigError::io(&dir, &e))?;
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| err(&key_path, format!("cannot generate a key ({e})")))?;
            let mut params = CertificateParams::default();
            params.distinguished_name.push(
                DnType::CommonName,
                "stsedge development CA (not for production)",
            );
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_after = rcgen::date_time_ymd(2099, 1, 1);
            let cert = params
                .self_signed(&key)
                .map_err(|e| err(&ca_path, format!("cannot create the CA ({e})")))?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            std::fs::write(&ca_path, cert.pem()).map_err(|e| ConfigError::io(&ca_path, &e))?;
        }
        let key_pem =
            std::fs::read_to_string(&key_path).map_err(|e| ConfigError::io(&key_path, &e))?;
        let ca_pem =
            std::fs::read_to_string(&ca_path).map_err(|e| ConfigError::io(&ca_path, &e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| {
            err(
                &key_path,
                format!(
                    "the development CA key is unreadable ({e}); delete {} to make a new CA",
                    dir.display()
                ),
            )
        })?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| {
            err(
                &ca_path,
                format!(
                    "the development CA is unreadable ({e}); delete {} to make a new CA",
                    dir.display()
                ),
            )
        })?;
        use rustls_pki_types::pem::PemObject;
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| err(&ca_path, format!("the development CA is unreadable ({e})")))?;
        Ok(DevCa {
            issuer,
            ca_der,
            ca_path,
        })
    }

    /// Issues a leaf for `host` (chain: leaf, CA).
    pub fn issue(&self, host: &str, provider: &CryptoProvider) -> Result<LoadedCert, String> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(vec![host.to_owned()]).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, host);
        let now = unix_now();
        let not_before = now - 3600;
        let not_after = now + LEAF_LIFETIME.as_secs() as i64;
        params.not_before = time_from_unix(not_before);
        params.not_after = time_from_unix(not_after);
        let leaf = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified = CertifiedKey::from_der(
            vec![leaf.der().clone(), self.ca_der.clone()],
            key_der,
            provider,
        )
        .map_err(|e| e.to_string())?;
        Ok(LoadedCert {
            key: Arc::new(certified),
            not_before,
            not_after,
            origin: CertOrigin::DevSelfSigned,
        })
    }
}

fn time_from_unix(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).expect("in range")
}

/// Writes a private key readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ConfigError::io(path, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ConfigError::io(path, &e))
}
