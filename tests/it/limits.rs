//! Bounds on hostile or broken clients: connection cap, handshake and header timeouts,
//! header size. Each test is bounded by the harness deadline, never by a timed assert.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::client::{client_config, connect};
use crate::common::{Fixture, Request, eventually, fetch};

const SNI: &str = "mta-sts.example.com";

fn fixture(limits: &str) -> Fixture {
    let f = Fixture::with_config(&format!("[limits]\n{limits}\n"));
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    f
}

/// Reads until the server closes; returns what it sent.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    out
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_others_keep_working() {
    let f = fixture("max_connections = 2");
    let server = f.start();
    let config = client_config(f.ca.roots(), false, false);
    let first = connect(server.https, SNI, config.clone()).await.unwrap();
    let _second = connect(server.https, SNI, config.clone()).await.unwrap();
    let third = connect(server.https, SNI, config.clone()).await;
    assert!(third.is_err(), "a third connection is over the cap");
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(
        !metrics.contains("stsedge_connections_rejected_total 0"),
        "{metrics}"
    );
    drop(first);
    eventually("a free slot after a client leaves", || async {
        let r = fetch(server.https, f.ca.roots(), Request::get(SNI))
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_dropped_at_the_handshake_timeout() {
    let f = fixture("handshake_timeout_ms = 200");
    let server = f.start();
    let mut tcp = TcpStream::connect(server.https).await.unwrap();
    assert!(read_until_closed(&mut tcp).await.is_empty());
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(
        metrics.contains("stsedge_tls_handshakes_total{result=\"timeout\"} 1"),
        "{metrics}"
    );
    // Meanwhile nobody else was blocked.
    assert_eq!(
        fetch(server.https, f.ca.roots(), Request::get(SNI))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_at_the_header_timeout() {
    let f = fixture("header_timeout_ms = 200");
    let server = f.start();
    let mut tls = connect(server.https, SNI, client_config(f.ca.roots(), false, false))
        .await
        .unwrap();
    tls.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut tls).await).into_owned();
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let f = fixture("max_header_bytes = 8192");
    let server = f.start();
    let mut tls = connect(server.https, SNI, client_config(f.ca.roots(), false, false))
        .await
        .unwrap();
    let big = "a".repeat(20_000);
    let req = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\nX-Big: {big}\r\n\r\n"
    );
    let _ = tls.write_all(req.as_bytes()).await;
    let _ = tls.flush().await;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut tls).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn limits_are_validated() {
    let f = Fixture::with_config("[limits]\nmax_header_bytes = 100\n");
    let out = f.stsedge(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stsedge.toml:4:20: [limits] max_header_bytes must be at least 8192"),
        "{stderr}"
    );
}
