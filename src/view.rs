//! Read-only views of snapshot state for people and tools: the JSON of the admin API
//! and of `--json` command output. Built on demand, never on the request path.

use serde::Serialize;

use crate::config::ConfigError;
use crate::snapshot::{CertStatus, Phase, Snapshot, Tenant};
use crate::tls::{CertOrigin, format_unix};

#[derive(Serialize)]
pub struct TenantView {
    pub domain: String,
    pub mode: &'static str,
    pub max_age: u32,
    pub mx: Vec<String>,
    pub id: String,
    pub servable: bool,
    #[serde(flatten)]
    pub phase: Phase,
    /// Why the policy (and its TXT record) is not served, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

#[derive(Serialize)]
pub struct CertView {
    pub origin: CertOrigin,
    pub not_after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl TenantView {
    /// `detailed` adds the policy text.
    pub fn of(t: &Tenant, detailed: bool) -> TenantView {
        let certificate = match &t.cert {
            CertStatus::Loaded(c) => Some(CertView {
                origin: c.origin,
                not_after: format_unix(c.not_after),
                file: t.cert_paths.as_ref().map(|p| p.cert.display().to_string()),
            }),
            CertStatus::Missing(_) => None,
        };
        TenantView {
            domain: t.domain.to_string(),
            mode: t.policy.mode.as_str(),
            max_age: t.policy.max_age,
            mx: t.policy.mx.iter().map(|m| m.to_string()).collect(),
            id: t.id.to_string(),
            servable: t.servable().is_ok(),
            phase: t.phase,
            reason: t.servable().err().map(str::to_owned),
            certificate,
            policy: detailed.then(|| String::from_utf8_lossy(&t.body).into_owned()),
        }
    }
}

/// All tenants, sorted by domain.
pub fn tenants(snapshot: &Snapshot) -> Vec<TenantView> {
    let mut list: Vec<TenantView> = snapshot
        .tenants()
        .map(|t| TenantView::of(t, false))
        .collect();
    list.sort_by(|a, b| a.domain.cmp(&b.domain));
    list
}

#[derive(Serialize)]
pub struct ProblemView<'a> {
    pub file: String,
    pub line: Option<usize>,
    pub kind: &'static str,
    pub message: &'a str,
}

pub fn problems(list: &[ConfigError]) -> Vec<ProblemView<'_>> {
    list.iter()
        .map(|p| ProblemView {
            file: p.location.file.display().to_string(),
            line: p.location.line,
            kind: p.kind.as_str(),
            message: &p.message,
        })
        .collect()
}
