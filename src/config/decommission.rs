//! Decommission markers (RFC 8461 §8.3): `STATE_DIR/decommission/DOMAIN.toml`, written
//! by `stsedge tenant rm`. While one exists the tenant serves `mode: none` with a short
//! `max_age` (so a new id), until the previous `max_age` has passed; then the server
//! removes the tenant. Kept in the state directory so it survives restarts.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::error::{ConfigError, SourceText};
use crate::domain::DomainName;

pub const DECOMMISSION_DIR: &str = "decommission";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decommission {
    /// When `tenant rm` ran (Unix seconds).
    pub since: i64,
    /// When every sender's cached copy of the previous policy has expired: `since` plus
    /// the previous `max_age`. The tenant is removed then.
    pub until: i64,
}

pub fn marker_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DECOMMISSION_DIR)
}

pub fn marker_path(state_dir: &Path, domain: &DomainName) -> PathBuf {
    marker_dir(state_dir).join(format!("{domain}.toml"))
}

pub fn parse_marker(path: &Path, text: &str) -> Result<Decommission, ConfigError> {
    let src = SourceText { path, text };
    toml::from_str(text).map_err(|e| src.toml_error(&e))
}

pub fn render_marker(d: &Decommission) -> String {
    format!(
        "# Written by `stsedge tenant rm`: serving mode none until `until`, then removal.\n# Delete this file to cancel the decommissioning.\n{}",
        toml::to_string(d).expect("two integers serialise")
    )
}
