//! The SMTP probe: connect to an MX, `EHLO`, check `STARTTLS` is offered, upgrade, and
//! let rustls verify the certificate against the MX host name, as a sending MTA that
//! honours an `enforce` policy would (RFC 8461 §4.2).
//!
//! It owns the wire exchange and the classification of what went wrong; it must not
//! send mail (no `MAIL FROM`), must not relax verification, and bounds every step by
//! [`STEP_TIMEOUT`] and every reply by [`MAX_REPLY_LINES`] × [`MAX_LINE`].
//!
//! # Why not `lettre`
//!
//! lettre 0.11's `AsyncSmtpConnection::starttls` takes `TlsParameters`, which builds
//! its own `ClientConfig` (from the process-default provider, else aws-lc-rs or ring)
//! and cannot be handed ours; its default features pull native-tls (OpenSSL) and its
//! `rustls-tls` feature pulls ring; and its TLS error is opaque, so "wrong name" could
//! not be told from "untrusted" or "expired". The client here is ~150 lines of
//! line-based EHLO/STARTTLS over tokio + tokio-rustls with our config.

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::trust::TlsFailure;

/// The bound on each step: connect, one reply, the TLS handshake.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; servers exceed it).
pub const MAX_LINE: u64 = 2048;
/// Most lines in one multi-line reply.
pub const MAX_REPLY_LINES: usize = 100;

/// What a successful probe saw.
#[derive(Debug, Clone)]
pub struct SmtpOk {
    pub addr: SocketAddr,
    pub tls_version: &'static str,
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpFailure {
    #[error("no address to connect to")]
    NoAddress,
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    #[error("connection to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("cannot connect to {addr} ({reason})")]
    Connect { addr: SocketAddr, reason: String },
    #[error("{addr}: timed out waiting for the {step}")]
    Timeout {
        addr: SocketAddr,
        step: &'static str,
    },
    #[error("{addr}: {what}")]
    Protocol { addr: SocketAddr, what: String },
    #[error("{addr}: STARTTLS is not offered in the EHLO reply")]
    NoStartTls { addr: SocketAddr },
    #[error("{addr}: STARTTLS was refused ({reply})")]
    StartTlsRefused { addr: SocketAddr, reply: String },
    #[error("{addr}: {failure}")]
    Tls {
        addr: SocketAddr,
        failure: TlsFailure,
    },
}

/// One SMTP reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn summary(&self) -> String {
        let first = self.lines.first().map_or("", String::as_str);
        let first: String = first
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        format!("{} {first}", self.code)
    }

    /// Whether an EHLO reply lists the `STARTTLS` keyword (RFC 3207).
    pub fn offers_starttls(&self) -> bool {
        self.lines.iter().skip(1).any(|l| {
            l.split_ascii_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
        })
    }
}

/// Reads one possibly multi-line reply (`250-…` lines, then `250 …`).
pub async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, String> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut buf = Vec::with_capacity(128);
    loop {
        if lines.len() == MAX_REPLY_LINES {
            return Err(format!("reply longer than {MAX_REPLY_LINES} lines"));
        }
        buf.clear();
        let n = (&mut *r)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("read failed ({e})"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        if buf.last() != Some(&b'\n') {
            return Err(format!("reply line longer than {MAX_LINE} bytes"));
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\r', '\n']);
        let (this, more) = parse_line(line).ok_or_else(|| {
            let shown: String = line.chars().filter(|c| !c.is_control()).take(80).collect();
            format!("malformed reply line {shown:?}")
        })?;
        if *code.get_or_insert(this) != this {
            return Err("reply lines with different codes".into());
        }
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if !more {
            return Ok(Reply { code: this, lines });
        }
    }
}

/// `(code, more lines follow)` of a reply line.
fn parse_line(line: &str) -> Option<(u16, bool)> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&b[0]) {
        return None;
    }
    let code = line[..3].parse().ok()?;
    match b.get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        _ => None,
    }
}

/// Probes `host` on each address in turn until one answers; the last failure if none.
pub async fn probe(
    host: &str,
    addrs: &[IpAddr],
    port: u16,
    helo: &str,
    config: Arc<ClientConfig>,
) -> Result<SmtpOk, SmtpFailure> {
    let mut last = SmtpFailure::NoAddress;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match probe_one(host, addr, helo, config.clone()).await {
            Ok(ok) => return Ok(ok),
            // A server that answered decides; only unreachable addresses fall through.
            Err(
                e @ (SmtpFailure::Refused(_)
                | SmtpFailure::ConnectTimeout(_)
                | SmtpFailure::Connect { .. }),
            ) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

async fn probe_one(
    host: &str,
    addr: SocketAddr,
    helo: &str,
    config: Arc<ClientConfig>,
) -> Result<SmtpOk, SmtpFailure> {
    let tcp = match timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(SmtpFailure::ConnectTimeout(addr)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(SmtpFailure::Refused(addr));
        }
        Ok(Err(e)) => {
            return Err(SmtpFailure::Connect {
                addr,
                reason: e.to_string(),
            });
        }
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let mut conn = BufReader::new(tcp);
    let protocol = |what: String| SmtpFailure::Protocol { addr, what };

    let greeting = reply(&mut conn, addr, "greeting").await?;
    if greeting.code != 220 {
        return Err(protocol(format!(
            "the greeting is not 220 ({})",
            greeting.summary()
        )));
    }
    send(&mut conn, addr, &format!("EHLO {helo}\r\n")).await?;
    let ehlo = reply(&mut conn, addr, "EHLO reply").await?;
    if ehlo.code != 250 {
        return Err(protocol(format!("EHLO was refused ({})", ehlo.summary())));
    }
    if !ehlo.offers_starttls() {
        let _ = timeout(STEP_TIMEOUT, conn.get_mut().write_all(b"QUIT\r\n")).await;
        return Err(SmtpFailure::NoStartTls { addr });
    }
    send(&mut conn, addr, "STARTTLS\r\n").await?;
    let ready = reply(&mut conn, addr, "STARTTLS reply").await?;
    if ready.code != 220 {
        return Err(SmtpFailure::StartTlsRefused {
            addr,
            reply: ready.summary(),
        });
    }
    // Bytes after the 220 would be read as if they came over TLS (CVE-2011-0411).
    if !conn.buffer().is_empty() {
        return Err(protocol(
            "the server sent data after `220` to STARTTLS, before the TLS handshake".into(),
        ));
    }
    let name = ServerName::try_from(host.to_owned()).map_err(|_| SmtpFailure::Tls {
        addr,
        failure: TlsFailure::Handshake(format!("{host} is not a valid TLS server name")),
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = match timeout(STEP_TIMEOUT, connector.connect(name, conn.into_inner())).await {
        Err(_) => {
            return Err(SmtpFailure::Timeout {
                addr,
                step: "TLS handshake",
            });
        }
        Ok(Err(e)) => {
            return Err(SmtpFailure::Tls {
                addr,
                failure: TlsFailure::from_io(&e),
            });
        }
        Ok(Ok(tls)) => tls,
    };
    let tls_version = match tls.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    };
    // Politeness only: the verdict is already in.
    let _ = timeout(STEP_TIMEOUT, async {
        tls.write_all(b"QUIT\r\n").await?;
        tls.shutdown().await
    })
    .await;
    Ok(SmtpOk { addr, tls_version })
}

async fn reply(
    conn: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    step: &'static str,
) -> Result<Reply, SmtpFailure> {
    match timeout(STEP_TIMEOUT, read_reply(conn)).await {
        Err(_) => Err(SmtpFailure::Timeout { addr, step }),
        Ok(Err(what)) => Err(SmtpFailure::Protocol {
            addr,
            what: format!("{step}: {what}"),
        }),
        Ok(Ok(r)) => Ok(r),
    }
}

async fn send(
    conn: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    line: &str,
) -> Result<(), SmtpFailure> {
    match timeout(STEP_TIMEOUT, conn.get_mut().write_all(line.as_bytes())).await {
        Err(_) => Err(SmtpFailure::Timeout {
            addr,
            step: "write",
        }),
        Ok(Err(e)) => Err(SmtpFailure::Protocol {
            addr,
            what: format!("write failed ({e})"),
        }),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(text: &str) -> Result<Reply, String> {
        read_reply(&mut text.as_bytes()).await
    }

    #[tokio::test]
    async fn multi_line_ehlo_replies_are_read_whole() {
        let r = parse(
            "250-mx.example.com hi\r\n250-PIPELINING\r\n250-starttls\r\n250 8BITMIME\r\nEXTRA",
        )
        .await
        .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 4);
        assert!(r.offers_starttls());
        let r = parse("250-mx.example.com STARTTLS\r\n250 SIZE 100\r\n")
            .await
            .unwrap();
        assert!(!r.offers_starttls(), "the greeting line is not a keyword");
        assert_eq!(parse("220\r\n").await.unwrap().code, 220);
    }

    #[tokio::test]
    async fn malformed_replies_are_errors() {
        assert!(parse("250-a\r\n251 b\r\n").await.is_err());
        assert!(parse("25x ok\r\n").await.is_err());
        assert!(parse("250-a\r\n").await.is_err(), "closed mid-reply");
        let long = format!("250 {}\r\n", "a".repeat(MAX_LINE as usize));
        assert!(parse(&long).await.is_err());
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert!(parse(&many).await.is_err());
    }
}
