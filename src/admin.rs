//! The admin listener (loopback by default): health, readiness, Prometheus metrics and
//! a read-only JSON API over the current snapshot. Plain HTTP/1.1; it must never be
//! exposed beyond the operator's network.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::view;

pub struct Admin {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Set once the first snapshot from the files has been published.
    pub ready: AtomicBool,
}

impl Admin {
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let (stream, _) = tokio::select! {
                _ = crate::server::stopped(&mut shutdown) => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => { tokio::time::sleep(Duration::from_millis(20)).await; continue; }
                },
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(|req| std::future::ready(Ok::<_, Infallible>(admin.handle(&req))));
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        let path = req.uri().path();
        match path {
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/readyz" if self.ready.load(Ordering::Acquire) => plain(StatusCode::OK, "ready\n"),
            "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "loading\n"),
            "/metrics" => {
                let mut resp = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                resp
            }
            "/api/tenants" => json(&view::tenants(&self.snapshot.load())),
            "/api/problems" => json(&view::problems(&self.snapshot.load().problems)),
            _ => match path.strip_prefix("/api/tenants/") {
                Some(domain) => match self.snapshot.load().tenant(domain) {
                    Some(t) => json(&view::TenantView::of(t, true)),
                    None => plain(StatusCode::NOT_FOUND, "no such tenant\n"),
                },
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).expect("views serialise");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
