//! Operator files → validated settings and tenants.
//!
//! Everything here is pure parsing and validation with errors that carry a file and a
//! line; nothing here watches files, loads certificates or touches the snapshot.

pub mod decommission;
mod error;
mod server;
mod tenant;
pub mod write;

pub use error::{ConfigError, Location, ProblemKind, SourceText, resolve_path};
pub use server::{
    AcmeConfig, AdminConfig, DEFAULT_CONFIG_PATH, DnsConfig, HttpsConfig, Limits, ServerConfig,
    TlsRptConfig,
};
pub use tenant::{
    CertPaths, DEFAULT_MAX_AGE, TENANT_FILE_SUFFIX, TenantSpec, domain_of_file, parse_tenant,
    tenant_file_stem,
};
