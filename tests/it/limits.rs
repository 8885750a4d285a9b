//! Bounds on hostile or broken clients: connection cap, handshake and header timeouts,
//! header size. Each test is bounded by the harness deadline, never by a timed assert.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::client::{client_config, connect, get_on};
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
    let (_f, server, mut tls) = connected("header_timeout_ms = 200").await;
    tls.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut tls).await).into_owned();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert_eq!(
        header_timeouts(&server).await,
        "stsedge_header_timeouts_total 1"
    );
}

/// A server with these limits and one open TLS connection to its tenant.
async fn connected(
    limits: &str,
) -> (
    Fixture,
    crate::common::Server,
    tokio_rustls::client::TlsStream<TcpStream>,
) {
    let f = fixture(limits);
    let server = f.start();
    let tls = connect(server.https, SNI, client_config(f.ca.roots(), false, false))
        .await
        .unwrap();
    (f, server, tls)
}

async fn header_timeouts(server: &crate::common::Server) -> String {
    let (_, metrics) = server.admin_get("/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("stsedge_header_timeouts_total "))
        .unwrap_or_else(|| panic!("no header timeout counter in {metrics}"))
        .to_owned()
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let (_f, server, mut tls) = connected("header_timeout_ms = 200").await;
    let answer = get_on(&mut tls, SNI).await.expect("a first answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // The client now says nothing: the server must close, long before the connection
    // lifetime (60 s by default) would.
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        read_until_closed(&mut tls),
    )
    .await
    .expect("an idle connection outlived its header timeout");
    assert!(closed.is_empty());
    assert_eq!(
        header_timeouts(&server).await,
        "stsedge_header_timeouts_total 1"
    );
}

#[tokio::test]
async fn a_busy_keep_alive_connection_outlives_the_header_timeout() {
    // Each head comes well within the timeout of the previous one; together they
    // span several timeouts, so a deadline not moved by requests would cut this.
    let (_f, server, mut tls) = connected("header_timeout_ms = 400").await;
    for i in 0..12 {
        let answer = get_on(&mut tls, SNI)
            .await
            .unwrap_or_else(|| panic!("closed before request {i}"));
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        header_timeouts(&server).await,
        "stsedge_header_timeouts_total 0"
    );
}

#[tokio::test]
async fn a_connection_is_retired_gracefully_at_its_lifetime() {
    // Requests keep coming (so the header timeout never fires); the lifetime still
    // ends the connection, after a complete answer, never in the middle of one.
    let (_f, _server, mut tls) =
        connected("connection_lifetime_secs = 1\nheader_timeout_ms = 5000").await;
    let mut answered = 0;
    while let Some(answer) = get_on(&mut tls, SNI).await {
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        answered += 1;
        assert!(
            answered < 100,
            "still open after {answered} requests 50 ms apart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        answered >= 2,
        "closed after {answered} answers, before its lifetime"
    );
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
