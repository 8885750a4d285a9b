//! Authoritative DNS for the hosting zone (SPEC §3, "DNS"), on hickory-server,
//! answering from the same snapshot as the HTTPS edge.
//!
//! ```text
//!  UDP ─► hickory Server ──────────────┐  parse; FORMERR for garbage;
//!  TCP ─► tcp (connection cap, idle    │  responses never answered
//!         timeout, lifetime) ──────────┤
//!                                      ▼ Request
//!            handler::DnsHandler ── snapshot.load() once ──► zone::resolve
//!                                      │ Reply (AA, SOA in authority, rcode counted)
//!                                      ▼
//!            hickory encoder (UDP: EDNS size or 512, TC when over)
//! ```
//!
//! This module owns the DNS listeners and their lifetime: `listen::bind` before the
//! tenants load, [`spawn`] once the first snapshot is published, stop on the shutdown
//! signal. The zone's addresses, nameservers and tenants come from the snapshot on
//! every query, so a reload changes answers without restarting; the listen addresses
//! apply at start. It must not write to the snapshot or hold its guard across an
//! `.await`.

mod handler;
mod listen;
mod tcp;
mod zone;

pub use handler::{DnsHandler, MAX_UDP_PAYLOAD, Reply};
pub use listen::{DnsSockets, bind};
pub use tcp::{MAX_TCP_CONNECTIONS, TCP_IDLE_TIMEOUT, TCP_LIFETIME};
pub use zone::{ADDR_TTL, NEGATIVE_TTL, NS_TTL, TXT_TTL};

use std::sync::Arc;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::server::stopped;

/// Serves `sockets` with `handler` until `shutdown` is set. Must be called inside the
/// runtime.
pub fn spawn(
    sockets: Vec<DnsSockets>,
    handler: DnsHandler,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut tcp = Vec::new();
    let mut server = hickory_server::Server::new(handler.clone());
    for s in sockets {
        server.register_socket(tokio::net::UdpSocket::from_std(s.udp)?);
        tcp.push(tokio::spawn(tcp::serve(
            tokio::net::TcpListener::from_std(s.tcp)?,
            handler.clone(),
            permits.clone(),
            shutdown.clone(),
        )));
    }
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = stopped(&mut shutdown) => {}
            ended = server.block_until_done() => {
                tracing::error!(result = ?ended, "DNS listeners stopped on their own");
                return;
            }
        }
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS listener ended with an error at shutdown");
        }
        for t in tcp {
            let _ = t.await;
        }
    }))
}
