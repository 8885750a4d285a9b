//! HTTP routes of the policy edge (SPEC §3), independent of the transport.
//!
//! `route` decides what a request is, from the snapshot and the connection's SNI name;
//! `respond` is the one place that turns that decision into a status and headers.
//! Both are synchronous, allocation-light and read nothing but the snapshot.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;

use crate::metrics::ResponseCounters;
use crate::snapshot::{HostRoute, Snapshot, Tenant};

pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
const ALLOW_GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");

pub type Body = Full<Bytes>;

/// What a request turned out to be.
pub enum Outcome {
    Policy {
        tenant: Arc<Tenant>,
        head: bool,
    },
    NotFound,
    MethodNotAllowed,
    /// The `Host` names another site than the TLS SNI did (RFC 9110 §15.5.20).
    Misdirected,
    BadRequest(&'static str),
}

/// Decides what `req`, received on a connection whose SNI was `sni`, asks for.
pub fn route<B>(snapshot: &Snapshot, sni: &str, req: &Request<B>) -> Outcome {
    let Some(host) = request_host(req) else {
        return Outcome::BadRequest("a Host header is required\n");
    };
    if !same_host(host, sni) {
        return Outcome::Misdirected;
    }
    match snapshot.route(sni) {
        HostRoute::Tenant(tenant) if req.uri().path() == POLICY_PATH => match *req.method() {
            Method::GET => Outcome::Policy {
                tenant: tenant.clone(),
                head: false,
            },
            Method::HEAD => Outcome::Policy {
                tenant: tenant.clone(),
                head: true,
            },
            _ => Outcome::MethodNotAllowed,
        },
        HostRoute::Tenant(_) | HostRoute::Service | HostRoute::Unknown => Outcome::NotFound,
    }
}

/// The one mapping from outcomes to responses.
pub fn respond(outcome: Outcome, counters: &ResponseCounters) -> Response<Body> {
    match outcome {
        Outcome::Policy { tenant, head } => {
            counters.ok.inc();
            let body = if head {
                Bytes::new()
            } else {
                tenant.body.clone()
            };
            let mut resp = Response::new(Full::new(body));
            let headers = resp.headers_mut();
            headers.insert(CONTENT_TYPE, TEXT_PLAIN);
            headers.insert(CONTENT_LENGTH, tenant.content_length.clone());
            resp
        }
        Outcome::NotFound => {
            counters.not_found.inc();
            text(StatusCode::NOT_FOUND, "not found\n")
        }
        Outcome::MethodNotAllowed => {
            counters.method_not_allowed.inc();
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are allowed here\n",
            );
            resp.headers_mut().insert(ALLOW, ALLOW_GET_HEAD);
            resp
        }
        Outcome::Misdirected => {
            counters.misdirected.inc();
            text(
                StatusCode::MISDIRECTED_REQUEST,
                "the Host header does not match the TLS server name\n",
            )
        }
        Outcome::BadRequest(why) => {
            counters.bad_request.inc();
            text(StatusCode::BAD_REQUEST, why)
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    resp
}

/// The host the request is for: the HTTP/2 `:authority` (which hyper puts in the URI),
/// else the `Host` header; without the port.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    if let Some(host) = req.uri().host() {
        return Some(host);
    }
    let value = req.headers().get(HOST)?.to_str().ok()?;
    Some(strip_port(value))
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| &h[1..]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn same_host(host: &str, sni: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case(sni)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_are_ignored() {
        assert_eq!(strip_port("mta-sts.example.com:443"), "mta-sts.example.com");
        assert_eq!(strip_port("mta-sts.example.com"), "mta-sts.example.com");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert!(same_host("MTA-STS.example.com.", "mta-sts.example.com"));
        assert!(!same_host("mta-sts.example.org", "mta-sts.example.com"));
    }
}
