//! Authoritative DNS for the hosting zone (SPEC §3, "DNS"), on hickory-server,
//! answering from the same snapshot as the HTTPS edge.
//!
//! ```text
//!  UDP / TCP ─► hickory Server (parse, FORMERR for garbage, TCP idle timeout)
//!                  │ Request
//!                  ▼
//!            handler::DnsHandler ── snapshot.load() once ──► zone::resolve
//!                  │ Reply (AA, SOA in authority, rcode counted)
//!                  ▼
//!            hickory encoder (UDP size limit, TC)
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
mod zone;

pub use handler::{DnsHandler, MAX_UDP_PAYLOAD, Reply};
pub use listen::{DnsSockets, bind};
pub use zone::{ADDR_TTL, NEGATIVE_TTL, NS_TTL, TXT_TTL};

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::stopped;

/// A TCP connection that sends no complete query for this long is closed (RFC 7766
/// §6.2.3 suggests seconds, not minutes).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies queued per TCP connection before the connection stops reading.
const TCP_RESPONSE_QUEUE: usize = 32;

/// Serves `sockets` with `handler` until `shutdown` is set. Must be called inside the
/// runtime.
pub fn spawn(
    sockets: Vec<DnsSockets>,
    handler: DnsHandler,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let mut server = hickory_server::Server::new(handler);
    for s in sockets {
        server.register_socket(tokio::net::UdpSocket::from_std(s.udp)?);
        server.register_listener(
            tokio::net::TcpListener::from_std(s.tcp)?,
            TCP_IDLE_TIMEOUT,
            TCP_RESPONSE_QUEUE,
        );
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
    }))
}
