//! A real HTTPS client for tests: tokio-rustls with the test CA as the only root, and
//! hyper's HTTP/1.1 or HTTP/2 client, with full control of SNI, Host, ALPN and version.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct Request<'a> {
    pub sni: &'a str,
    /// `None` means the same as `sni`.
    pub host: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub h2: bool,
    pub tls12: bool,
}

impl<'a> Request<'a> {
    pub fn get(sni: &'a str) -> Self {
        Request {
            sni,
            host: None,
            method: "GET",
            path: "/.well-known/mta-sts.txt",
            h2: false,
            tls12: false,
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// DER of the certificate the server presented.
    pub leaf: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub version: rustls::ProtocolVersion,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client_config(
    roots: Arc<rustls::RootCertStore>,
    h2: bool,
    tls12: bool,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Arc::new(config)
}

/// The TLS error the handshake failed with, if it failed in TLS.
pub fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Whether a handshake for `sni` is refused with `unrecognized_name` (the name is not
/// served).
pub async fn refused(addr: SocketAddr, sni: &str, config: Arc<rustls::ClientConfig>) -> bool {
    match connect(addr, sni, config).await {
        Ok(_) => false,
        Err(e) => {
            tls_error(&e)
                == Some(&rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnrecognisedName,
                ))
        }
    }
}

/// One request on a fresh connection.
pub async fn fetch(
    addr: SocketAddr,
    roots: Arc<rustls::RootCertStore>,
    req: Request<'_>,
) -> std::io::Result<Reply> {
    let config = client_config(roots, req.h2, req.tls12);
    let tls = connect(addr, req.sni, config).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].to_vec();
    let alpn = conn.alpn_protocol().map(|a| a.to_vec());
    let version = conn.protocol_version().unwrap();
    let host = req.host.unwrap_or(req.sni).to_owned();
    let io = TokioIo::new(tls);
    let request = |uri: String| {
        http::Request::builder()
            .method(req.method)
            .uri(uri)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = if req.h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        send.send_request(request(format!("https://{host}{}", req.path)))
            .await
            .map_err(std::io::Error::other)?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let mut r = request(req.path.to_owned());
        r.headers_mut()
            .insert(http::header::HOST, host.parse().unwrap());
        send.send_request(r).await.map_err(std::io::Error::other)?
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
        leaf,
        alpn,
        version,
    })
}

/// A plain HTTP/1.1 GET (the admin listener).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends one policy GET for `host` on an open connection and reads exactly one
/// response (head and `content-length` bytes of body). `None` once the server has
/// closed the connection.
pub async fn get_on(
    stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    host: &str,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(head + &String::from_utf8(body).unwrap())
}
