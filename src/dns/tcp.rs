//! DNS over TCP with bounds: a cap on open connections, an idle timeout between
//! queries, a lifetime per connection, and nothing answered for a message that is not
//! a query.
//!
//! hickory-server's own TCP listener has an idle timeout but no connection cap, so a
//! client holding thousands of idle connections would take file descriptors the HTTPS
//! edge needs. This module owns the accept loop and the per-connection loop; framing
//! (the 2-byte length prefix, so at most 65 535 bytes a message), parsing and encoding
//! stay hickory's. It must not answer anything itself: requests go to `DnsHandler`.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_server::net::tcp::TcpStream;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, MessageType, ResponseCode};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::server::{
    Request, RequestHandler, ResponseHandle, ResponseHandler, TimeoutStream,
};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};

use super::DnsHandler;
use crate::server::accept_capped;

/// Open DNS-over-TCP connections at most; more are closed at once. TCP is the
/// fallback for truncated answers, which this zone's small records almost never need.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// A connection that sends no complete query for this long is closed (RFC 7766
/// §6.2.3 suggests seconds, not minutes).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long however busy it is.
pub const TCP_LIFETIME: Duration = Duration::from_secs(120);
/// Replies queued per connection before it stops reading.
const TCP_RESPONSE_QUEUE: usize = 32;

/// Accepts on `listener` until shutdown; open connections end with it.
pub async fn serve(
    listener: TcpListener,
    handler: DnsHandler,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let rejected = handler.metrics().dns.tcp_rejected.clone();
    accept_capped(
        &listener,
        &permits,
        shutdown,
        &rejected,
        |stream, peer, permit| {
            while connections.try_join_next().is_some() {}
            let handler = handler.clone();
            connections.spawn(async move {
                tokio::time::timeout(TCP_LIFETIME, connection(stream, peer, &handler))
                    .await
                    .ok();
                drop(permit);
            });
        },
    )
    .await
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, handler: &DnsHandler) {
    let _ = stream.set_nodelay(true);
    let (stream, sender) = TcpStream::from_stream_with_buffer_size(
        AsyncIoTokioAsStd(stream),
        peer,
        TCP_RESPONSE_QUEUE,
    );
    let mut messages = TimeoutStream::new(stream, TCP_IDLE_TIMEOUT);
    let response = ResponseHandle::new(peer, sender, Protocol::Tcp);
    // Queries on one connection are answered in order; a pipelining client waits for
    // its own answers only.
    while let Some(Ok(message)) = messages.next().await {
        let (bytes, src) = message.into_parts();
        handle(handler, bytes, src, response.clone()).await;
    }
}

/// What hickory's server does with one message, minus its per-query logging: drop
/// anything shorter than a header or not a query, FORMERR for what does not parse.
async fn handle(
    handler: &DnsHandler,
    bytes: Vec<u8>,
    src: SocketAddr,
    mut response: ResponseHandle,
) {
    let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    match Request::from_bytes(bytes, src, Protocol::Tcp) {
        Ok(request) => {
            handler
                .handle_request::<_, TokioTime>(&request, response)
                .await;
        }
        Err(e) => {
            tracing::debug!(%src, error = %e, "unparsable DNS message over TCP");
            handler.metrics().dns.formerr.inc();
            let Ok(none) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return;
            };
            let reply = MessageResponseBuilder::new(&none, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let _ = response.send_response(reply).await;
        }
    }
}
