//! stsedge: a multi-tenant MTA-STS policy host (RFC 8461, RFC 8460).
//!
//! # Data flow
//!
//! ```text
//!  stsedge.toml ─┐
//!  tenants/*.toml ├─► config (parse, validate) ─► reload::Sources (incremental) ─┐
//!  cert/key PEM ──┘        ▲                                                    │
//!                          │ notify events, SIGHUP, cert expiry                 ▼
//!                    reload::Reloader ───────────── store ───► ArcSwap<Snapshot>
//!                                                                  │ load (no lock)
//!                        ┌─────────────────────────┬───────────────┴──────┐
//!                        ▼                         ▼                      ▼
//!               tls::SniResolver            http::route/respond     admin (JSON, metrics)
//!               (certificate by SNI)        (policy, 404/405/421)
//! ```
//!
//! # Layout
//!
//! - [`domain`]: `DomainName`, the validated, case-folded name used everywhere.
//! - [`policy`]: the RFC 8461 model, rendering and the policy id.
//! - [`config`]: files → validated settings and tenants, errors with file and line.
//! - [`snapshot`]: the immutable generation every answer comes from, and its builder.
//! - [`reload`]: watching files and turning changes into new snapshots.
//! - [`tls`]: certificates, the SNI resolver, the rustls configuration.
//! - [`http`]: routes and the one status mapping.
//! - [`server`]: listeners, handshakes, connections, limits, drain.
//! - [`dns`]: the authoritative DNS server for the hosting zone.
//! - [`admin`], [`metrics`], [`view`], [`systemd`]: operations.
//! - [`verify`]: live network checks of a tenant (`stsedge verify`), MX suggestions.
//! - [`cli`]: the commands.

pub mod admin;
pub mod cli;
pub mod config;
pub mod dns;
pub mod domain;
pub mod files;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod systemd;
pub mod tls;
pub mod verify;
pub mod view;
