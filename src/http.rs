//! HTTP routes of the policy edge (SPEC §3), independent of the transport.
//!
//! `ConnectionRoute::route` decides what a request is, from the snapshot and the
//! connection's SNI name; `respond` is the one place that turns that decision into a
//! status and headers.
//! Both are synchronous, allocation-light and read nothing but the snapshot.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::cell::RefCell;
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

/// The route of every request on one connection (whose SNI was `sni`). A keep-alive
/// connection names the same host in each request, so the tenant its SNI designates
/// is looked up once per snapshot generation rather than once per request (the name
/// lookup was the largest piece of our own work per keep-alive request).
pub struct ConnectionRoute {
    sni: Box<str>,
    /// The tenant `sni` designated in the snapshot of that generation.
    memo: RefCell<Option<(u64, Arc<Tenant>)>>,
}

impl ConnectionRoute {
    pub fn new(sni: &str) -> ConnectionRoute {
        ConnectionRoute {
            sni: sni.into(),
            memo: RefCell::new(None),
        }
    }

    /// Decides what `req` asks for.
    pub fn route<B>(&self, snapshot: &Snapshot, req: &Request<B>) -> Outcome {
        let Some(host) = request_host(req) else {
            return Outcome::BadRequest("a Host header is required\n");
        };
        if !same_host(host, &self.sni) {
            return Outcome::Misdirected;
        }
        match self.tenant(snapshot) {
            Some(tenant) if req.uri().path() == POLICY_PATH => match *req.method() {
                Method::GET => Outcome::Policy {
                    tenant,
                    head: false,
                },
                Method::HEAD => Outcome::Policy { tenant, head: true },
                _ => Outcome::MethodNotAllowed,
            },
            Some(_) | None => Outcome::NotFound,
        }
    }

    /// The tenant the SNI designates in `snapshot`, if any.
    fn tenant(&self, snapshot: &Snapshot) -> Option<Arc<Tenant>> {
        let mut memo = self.memo.borrow_mut();
        if let Some((generation, tenant)) = &*memo
            && *generation == snapshot.generation
        {
            return Some(tenant.clone());
        }
        let HostRoute::Tenant(tenant) = snapshot.route(&self.sni) else {
            *memo = None;
            return None;
        };
        *memo = Some((snapshot.generation, tenant.clone()));
        Some(tenant.clone())
    }
}

/// The one mapping from outcomes to responses.
pub fn respond(outcome: Outcome, counters: &ResponseCounters) -> Response<Body> {
    match outcome {
        Outcome::Policy { tenant, head } => {
            counters.ok.inc();
            // A GET's length comes from the body (hyper writes it from the exact size
            // hint; a header of ours would be parsed again to check it); a HEAD
            // announces the length of the GET it stands for.
            let mut resp = if head {
                let mut resp = Response::new(Full::new(Bytes::new()));
                resp.headers_mut()
                    .insert(CONTENT_LENGTH, tenant.content_length.clone());
                resp
            } else {
                Response::new(Full::new(tenant.body.clone()))
            };
            resp.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
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
    // Clients send the name as they sent the SNI: the byte comparison decides almost
    // every request before the case-insensitive one.
    host == sni || {
        let host = host.strip_suffix('.').unwrap_or(host);
        host.eq_ignore_ascii_case(sni)
    }
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

    fn tenant(mode: crate::policy::Mode) -> Arc<Tenant> {
        use crate::config::TenantSpec;
        use crate::domain::DomainName;
        use crate::policy::{MxPattern, Policy};
        use crate::snapshot::{CertStatus, Phase};
        let spec = TenantSpec {
            domain: DomainName::parse("example.com").unwrap(),
            policy: Policy {
                mode,
                max_age: 86_400,
                mx: vec![MxPattern::parse("mx.example.com").unwrap()],
            },
            cert: None,
            tlsrpt_rua: Vec::new(),
        };
        let cert = CertStatus::Missing("not needed to route".into());
        Arc::new(Tenant::new(Arc::new(spec), Phase::Active, cert, None))
    }

    fn body(outcome: Outcome) -> Option<String> {
        match outcome {
            Outcome::Policy { tenant, .. } => {
                Some(String::from_utf8(tenant.body.to_vec()).unwrap())
            }
            _ => None,
        }
    }

    /// The per-connection memo must follow the snapshot: an edit or a removal between
    /// two requests on one keep-alive connection is seen by the second request.
    #[test]
    fn connection_route_follows_each_generation() {
        use crate::policy::Mode;
        use crate::snapshot::SnapshotBuilder;
        let config = Arc::new(
            crate::config::ServerConfig::parse(std::path::Path::new("/etc/stsedge.toml"), "")
                .unwrap(),
        );
        let req = Request::get(POLICY_PATH)
            .header(HOST, "mta-sts.example.com")
            .body(())
            .unwrap();
        let conn = ConnectionRoute::new("mta-sts.example.com");

        let mut builder = SnapshotBuilder::new(config, 1);
        builder.upsert(tenant(Mode::Testing));
        let partial = builder.peek();
        let first = builder.build();
        assert_ne!(
            partial.generation, first.generation,
            "a peek has its own generation"
        );
        for _ in 0..2 {
            assert!(
                body(conn.route(&first, &req))
                    .unwrap()
                    .contains("mode: testing")
            );
        }

        let mut builder = first.to_builder();
        builder.upsert(tenant(Mode::Enforce));
        let edited = builder.build();
        let served = body(conn.route(&edited, &req)).unwrap();
        assert!(served.contains("mode: enforce"), "stale memo: {served}");
        assert_eq!(
            body(ConnectionRoute::new("mta-sts.example.com").route(&edited, &req)),
            Some(served),
            "the memo answers as a fresh lookup does"
        );

        let mut builder = edited.to_builder();
        builder.remove("example.com");
        let removed = builder.build();
        assert!(matches!(conn.route(&removed, &req), Outcome::NotFound));

        let other = Request::get(POLICY_PATH)
            .header(HOST, "mta-sts.example.org")
            .body(())
            .unwrap();
        assert!(matches!(conn.route(&edited, &other), Outcome::Misdirected));
    }
}
