//! The HTTPS edge: listeners, the accept loop, TLS handshakes and HTTP connections.
//!
//! Contract: `serve` accepts until the shutdown signal, then stops accepting; `drain`
//! waits (bounded) for open connections, which finish their in-flight requests. Every
//! stage a client controls has a bound: connection count, handshake time, header time
//! and size, connection lifetime. A connection reads the snapshot once per handshake
//! and once per request, and never waits on the reloader.

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use rustls::server::Acceptor;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::StartHandshake;

use crate::config::Limits;
use crate::http::{ConnectionRoute, respond};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::tls::ALPN_H2;

/// Everything a connection needs, shared by all of them.
pub struct Edge {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub tls: Arc<rustls::ServerConfig>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    /// True while the first load from the files is still going on.
    loading: watch::Receiver<bool>,
}

/// Concurrent HTTP/2 streams per connection: a policy fetch needs one.
const H2_MAX_STREAMS: u32 = 32;

/// The fatal `unrecognized_name` alert (RFC 6066 §3) as a plaintext TLS record, sent
/// before any ServerHello. rustls has no way to refuse a ClientHello with this alert.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

impl Edge {
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        tls: Arc<rustls::ServerConfig>,
        metrics: Arc<Metrics>,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
        loading: watch::Receiver<bool>,
    ) -> Arc<Edge> {
        Arc::new(Edge {
            loading,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            snapshot,
            tls,
            metrics,
            limits,
            shutdown,
        })
    }

    /// Accepts on `listener` until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let rejected = self.metrics.connections_rejected.clone();
        accept_capped(
            &listener,
            &self.permits,
            self.shutdown.clone(),
            &rejected,
            |stream, peer, permit| {
                let edge = self.clone();
                tokio::spawn(async move {
                    edge.metrics.connections_open.inc();
                    edge.connection(stream, peer).await;
                    edge.metrics.connections_open.dec();
                    drop(permit);
                });
            },
        )
        .await
    }

    /// Waits until every connection has closed, or `drain_timeout` passed. Returns the
    /// number still open.
    pub async fn drain(&self) -> usize {
        let all = self.limits.max_connections as u32;
        let waited =
            tokio::time::timeout(self.limits.drain_timeout, self.permits.acquire_many(all)).await;
        match waited {
            Ok(_) => 0,
            Err(_) => self.limits.max_connections - self.permits.available_permits(),
        }
    }

    async fn connection(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let tls = match tokio::time::timeout(self.limits.handshake_timeout, self.handshake(stream))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.handshakes.timeout.inc();
                tracing::debug!(%peer, "handshake timed out");
                return;
            }
        };
        self.metrics.handshakes.ok.inc();
        let (_, conn) = tls.get_ref();
        let routes = ConnectionRoute::new(conn.server_name().unwrap_or_default());
        let h2 = conn.alpn_protocol() == Some(ALPN_H2);
        let io = TokioIo::new(tls);
        let snapshot = self.snapshot.clone();
        let metrics = self.metrics.clone();
        let heads = Arc::new(HeadClock::new());
        let service_heads = heads.clone();
        let service = service_fn(move |req| {
            service_heads.mark();
            let outcome = routes.route(&snapshot.load(), &req);
            std::future::ready(Ok::<_, Infallible>(respond(outcome, &metrics.responses)))
        });
        let result = if h2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(H2_MAX_STREAMS)
                .max_header_list_size(self.limits.max_header_bytes as u32)
                .keep_alive_interval(Some(Duration::from_secs(20)))
                .keep_alive_timeout(Duration::from_secs(10));
            self.drive(builder.serve_connection(io, service), &heads)
                .await
        } else {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                // The header timeout is `drive`'s (see `HeadClock`).
                .header_read_timeout(None)
                .max_buf_size(self.limits.max_header_bytes)
                // One buffer per response: with vectored writes tokio-rustls seals the
                // head and the body as two TLS records.
                .writev(false);
            self.drive(builder.serve_connection(io, service), &heads)
                .await
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// Runs a connection to its end: asks it to finish gracefully at shutdown or when it
    /// has lived too long, and closes it when no request head came within the header
    /// timeout of the previous one (or of the handshake): that bounds both a client
    /// dribbling a header and an idle keep-alive connection. Both deadlines share one
    /// timer, re-armed only when it fires.
    ///
    /// The timer and the shutdown signal are polled once to take this task's waker;
    /// after that a wake is theirs only if a cheap check (an atomic load each) says so.
    /// A keep-alive connection is woken about once per request, and `select!` would
    /// poll all three futures every time.
    async fn drive<C: GracefulConnection>(
        &self,
        conn: C,
        heads: &HeadClock,
    ) -> Result<(), C::Error> {
        let mut conn = pin!(conn);
        let mut signal = self.shutdown.clone();
        let probe = self.shutdown.clone();
        let mut stop = pin!(stopped(&mut signal));
        let header_timeout = self.limits.header_timeout;
        let retire_at = heads.opened + self.limits.connection_lifetime;
        let first = heads.due(header_timeout).min(retire_at);
        let mut timer = pin!(tokio::time::sleep_until(first.into()));
        let mut closing = false;
        let mut armed = false;
        std::future::poll_fn(|cx| {
            loop {
                if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                    return Poll::Ready(res);
                }
                let mut progressed = false;
                let signalled = !armed || probe.has_changed().unwrap_or(true);
                if !closing && signalled && stop.as_mut().poll(cx).is_ready() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    progressed = true;
                }
                if !armed || timer.is_elapsed() {
                    while timer.as_mut().poll(cx).is_ready() {
                        let now = Instant::now();
                        let head_due = heads.due(header_timeout);
                        if now >= head_due {
                            self.metrics.header_timeouts.inc();
                            tracing::debug!("no request head within the header timeout; closing");
                            return Poll::Ready(Ok(()));
                        }
                        if now >= retire_at && !closing {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                            progressed = true;
                        }
                        let next = if closing {
                            head_due
                        } else {
                            head_due.min(retire_at)
                        };
                        timer.as_mut().reset(next.into());
                    }
                }
                armed = true;
                if !progressed {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// Reads the ClientHello, refuses names we do not serve with `unrecognized_name`,
    /// then completes the handshake with the shared `ServerConfig`.
    async fn handshake(
        &self,
        mut stream: TcpStream,
    ) -> Result<tokio_rustls::server::TlsStream<SendStream>, HandshakeError> {
        let mut acceptor = Acceptor::default();
        let mut buf = [0u8; 4096];
        let accepted = loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(HandshakeError::Eof);
            }
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                acceptor.read_tls(&mut chunk)?;
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => break accepted,
                Ok(None) => continue,
                Err((err, mut alert)) => {
                    self.metrics.handshakes.failed.inc();
                    let mut out = Vec::new();
                    let _ = alert.write_all(&mut out);
                    let _ = stream.write_all(&out).await;
                    return Err(HandshakeError::Tls(err));
                }
            }
        };
        // The common case allocates nothing; only a name not (yet) known is copied, to
        // wait for the end of the first load with it.
        let unknown = match accepted.client_hello().server_name() {
            None => None,
            Some(n) if self.snapshot.load().certificate_for(n).is_some() => Some(None),
            Some(n) => Some(Some(n.to_owned())),
        };
        let known = match unknown {
            None => {
                self.metrics.handshakes.no_sni.inc();
                false
            }
            Some(None) => true,
            Some(Some(name)) if self.serves_after_load(&name).await => true,
            Some(Some(_)) => {
                self.metrics.handshakes.unknown_sni.inc();
                false
            }
        };
        if !known {
            let _ = stream.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            let _ = stream.shutdown().await;
            return Err(HandshakeError::UnknownName);
        }
        StartHandshake::from_parts(accepted, SendStream(stream))
            .into_stream(self.tls.clone())
            .await
            .map_err(|e| {
                self.metrics.handshakes.failed.inc();
                HandshakeError::Io(e)
            })
    }
}

impl Edge {
    /// Whether `name` has a certificate. While the first load is still going on, a name
    /// not loaded yet waits for the end of the load (bounded by the handshake timeout)
    /// rather than being refused: it is probably a tenant in a later chunk.
    async fn serves_after_load(&self, name: &str) -> bool {
        let mut loading = self.loading.clone();
        while *loading.borrow_and_update() {
            if loading.changed().await.is_err() {
                break;
            }
        }
        self.snapshot.load().certificate_for(name).is_some()
    }
}

/// When a connection last received a request head (or finished its handshake).
///
/// hyper's own header timer costs every request a boxed tokio timer, registered in the
/// wheel and removed again once the head is in (about 0.2 µs of a 6 µs keep-alive
/// request here). A request here only stores the time; `Edge::drive` compares it when
/// its one timer fires.
struct HeadClock {
    opened: Instant,
    /// Nanoseconds from `opened` to the latest request head.
    last_head: AtomicU64,
}

impl HeadClock {
    fn new() -> HeadClock {
        HeadClock {
            opened: Instant::now(),
            last_head: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let since = self.opened.elapsed().as_nanos() as u64;
        self.last_head.store(since, Ordering::Relaxed);
    }

    /// When the next request head is due.
    fn due(&self, header_timeout: Duration) -> Instant {
        self.opened + Duration::from_nanos(self.last_head.load(Ordering::Relaxed)) + header_timeout
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("client closed the connection during the handshake")]
    Eof,
    #[error("no SNI, or a name this edge does not serve")]
    UnknownName,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tls(rustls::Error),
}

/// A TCP stream that sends a single buffer with `send(2)`, not `writev(2)`.
///
/// tokio-rustls hands every TLS record it flushes to `poll_write_vectored`, and a policy
/// response is one record: `writev` with one element goes through the VFS write path
/// (iovec import, the file-permission security hook) that `send` skips. The gain is
/// small (within noise in an A/B) but never negative. Several buffers (a handshake
/// flight) still go out in one `writev`.
struct SendStream(TcpStream);

impl tokio::io::AsyncRead for SendStream {
    #[inline]
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SendStream {
    #[inline]
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match bufs {
            [one] => std::pin::Pin::new(&mut self.0).poll_write(cx, one),
            _ => std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    #[inline]
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The accept loop every TCP listener here uses (HTTPS, DNS over TCP): accepts until
/// shutdown, backs off on accept errors (EMFILE and friends) instead of spinning, and
/// closes a connection at once, counting it in `rejected`, when all `permits` are
/// taken. `spawn` gets each accepted connection with the permit it must hold.
pub async fn accept_capped(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    rejected: &prometheus_client::metrics::counter::Counter,
    mut spawn: impl FnMut(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit),
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, local = ?listener.local_addr().ok(), "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => spawn(stream, peer, permit),
            Err(_) => {
                rejected.inc();
                drop(stream);
            }
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Binds a listening socket the way a server should: `SO_REUSEADDR`, IPv6 sockets
/// IPv6-only (so `0.0.0.0:443` and `[::]:443` coexist), a deep backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
