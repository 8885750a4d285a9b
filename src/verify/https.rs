//! The policy fetch (RFC 8461 §3.3): `GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
//! over HTTP/1.1 with a certificate valid for `mta-sts.DOMAIN`, no redirect followed,
//! `200`, `text/plain`; and a strict parse of the body (§3.2) to compare with what the
//! tenant files render.
//!
//! It owns the HTTPS exchange and the parse; it must not follow redirects, relax
//! verification or read more than [`MAX_BODY`] bytes, and bounds the whole fetch by
//! [`FETCH_TIMEOUT`].

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::trust::TlsFailure;
use crate::policy::{Mode, MxPattern, Policy};

pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
/// The bound on connect + handshake + request + body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Connecting to one address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// RFC 8461 §3.3 lets senders cap the policy size; 64 KiB is what common MTAs use.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct Fetched {
    pub addr: SocketAddr,
    pub body: Bytes,
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("no address to connect to")]
    NoAddress,
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    #[error("cannot connect to {addr} ({reason})")]
    Connect { addr: SocketAddr, reason: String },
    #[error("the fetch from {0} timed out")]
    Timeout(SocketAddr),
    #[error("{addr}: {failure}")]
    Tls {
        addr: SocketAddr,
        failure: TlsFailure,
    },
    #[error("{addr}: HTTP failed ({reason})")]
    Http { addr: SocketAddr, reason: String },
    #[error(
        "answered {status} redirecting to {location:?}; RFC 8461 senders do not follow redirects"
    )]
    Redirect { status: u16, location: String },
    #[error("answered {0} instead of 200")]
    Status(u16),
    #[error("Content-Type is {0:?}, not text/plain")]
    ContentType(String),
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// Fetches the policy of `host` (`mta-sts.DOMAIN`) from the first of `addrs` that
/// accepts a connection.
pub async fn fetch(
    host: &str,
    addrs: &[IpAddr],
    port: u16,
    config: Arc<ClientConfig>,
) -> Result<Fetched, FetchError> {
    let mut last = FetchError::NoAddress;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Err(_) => {
                last = FetchError::Timeout(addr);
                continue;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = FetchError::Refused(addr);
                continue;
            }
            Ok(Err(e)) => {
                last = FetchError::Connect {
                    addr,
                    reason: e.to_string(),
                };
                continue;
            }
            Ok(Ok(tcp)) => tcp,
        };
        return match timeout(FETCH_TIMEOUT, exchange(host, addr, tcp, config)).await {
            Err(_) => Err(FetchError::Timeout(addr)),
            Ok(r) => r,
        };
    }
    Err(last)
}

async fn exchange(
    host: &str,
    addr: SocketAddr,
    tcp: TcpStream,
    config: Arc<ClientConfig>,
) -> Result<Fetched, FetchError> {
    let http_err = |e: &dyn std::fmt::Display| FetchError::Http {
        addr,
        reason: e.to_string(),
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|e| http_err(&e))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Tls {
            addr,
            failure: TlsFailure::from_io(&e),
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| http_err(&e))?;
    let driver = tokio::spawn(conn);
    let request = http::Request::get(POLICY_PATH)
        .header(http::header::HOST, host)
        .header(
            http::header::USER_AGENT,
            concat!("stsedge-verify/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_err(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http_err(&e));
    let result = match response {
        Ok(r) => read(r, addr).await,
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

async fn read(
    response: http::Response<hyper::body::Incoming>,
    addr: SocketAddr,
) -> Result<Fetched, FetchError> {
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        return Err(FetchError::Redirect {
            status: status.as_u16(),
            location,
        });
    }
    if status != http::StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/plain") {
        return Err(FetchError::ContentType(content_type));
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                FetchError::TooLarge
            } else {
                FetchError::Http {
                    addr,
                    reason: e.to_string(),
                }
            }
        })?
        .to_bytes();
    Ok(Fetched { addr, body })
}

/// Parses a policy body as a sender would (RFC 8461 §3.2): `version: STSv1` first,
/// then `mode`, `max_age` and `mx` in any order, CRLF or LF line ends, unknown keys
/// ignored. The error says which line is wrong.
pub fn parse_policy(body: &[u8]) -> Result<Policy, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let mut version = None;
    let (mut mode, mut max_age, mut mx) = (None, None, Vec::new());
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {} has no `key: value`", n + 1))?;
        let (key, value) = (key.trim(), value.trim());
        if version.is_none() && key != "version" {
            return Err("the first line is not `version: STSv1`".into());
        }
        match key {
            "version" if version.is_none() => version = Some(value),
            "mode" => {
                mode =
                    Some(Mode::parse(value).ok_or_else(|| format!("mode {value:?} is not valid"))?)
            }
            "max_age" => {
                max_age = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| format!("max_age {value:?} is not a number"))?,
                )
            }
            "mx" => mx.push(MxPattern::parse(value).map_err(|e| format!("mx {value:?}: {e}"))?),
            _ => {}
        }
    }
    if version != Some("STSv1") {
        return Err("the first line is not `version: STSv1`".into());
    }
    let mode = mode.ok_or("there is no `mode` line")?;
    let max_age = max_age.ok_or("there is no `max_age` line")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("there is no `mx` line".into());
    }
    Ok(Policy { mode, max_age, mx })
}

/// How the served policy differs from the expected one, for people.
pub fn differences(served: &Policy, expected: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if served.mode != expected.mode {
        out.push(format!(
            "mode {} (files say {})",
            served.mode, expected.mode
        ));
    }
    if served.max_age != expected.max_age {
        out.push(format!(
            "max_age {} (files say {})",
            served.max_age, expected.max_age
        ));
    }
    if served.mx != expected.mx {
        let list = |p: &Policy| {
            p.mx.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "mx [{}] (files say [{}])",
            list(served),
            list(expected)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rendered_policies_and_tolerant_variants() {
        let p = parse_policy(b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.mx.example.net\r\nmax_age: 86400\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 86400);
        assert_eq!(p.mx.len(), 2);
        assert!(
            p.render()
                .body
                .starts_with(b"version: STSv1\r\nmode: enforce")
        );
        let lf = parse_policy(b"version: STSv1\nmax_age:5\nmode: none\nfoo: bar\n").unwrap();
        assert_eq!(lf.mode, Mode::None);
    }

    #[test]
    fn rejects_what_senders_reject() {
        for (body, why) in [
            (&b"mode: enforce\r\nversion: STSv1\r\n"[..], "first line"),
            (
                b"version: STSv2\r\nmode: enforce\r\nmx: a.b\r\nmax_age: 1\r\n",
                "first line",
            ),
            (b"version: STSv1\r\nmode: strict\r\n", "mode"),
            (b"version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n", "mx"),
            (b"version: STSv1\r\nmode: enforce\r\nmx: a.b\r\n", "max_age"),
            (
                b"version: STSv1\r\nmode: enforce\r\nmx a.b\r\n",
                "key: value",
            ),
        ] {
            let e = parse_policy(body).unwrap_err();
            assert!(
                e.contains(why),
                "{e} for {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
