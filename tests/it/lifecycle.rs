//! Process lifecycle: graceful drain on SIGTERM, and the repository's dev example.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::client::{client_config, connect, get_on};
use crate::common::{Fixture, Request, Server, eventually, fetch, policy_text, server_has_read};

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let mut server = f.start();
    let config = client_config(f.ca.roots(), false, false);
    let mut tls = connect(server.https, "mta-sts.example.com", config.clone())
        .await
        .unwrap();
    // Half a request: headers not finished when the signal arrives.
    tls.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let client_addr = tls.get_ref().0.local_addr().unwrap();
    eventually("the server to read the half request", || async {
        server_has_read(server.https, client_addr).then_some(())
    })
    .await;
    server.signal(libc::SIGTERM);
    server.wait_log("stopping");
    tls.write_all(b"\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(&policy_text("testing", &["mail.example.com"], 604800)),
        "{response}"
    );
    // `read_to_end` returned: the server closed the connection after that response.
    let status = server.wait_exit();
    assert!(status.success(), "{status}");
    server.wait_log("drained");
    assert!(
        connect(server.https, "mta-sts.example.com", config)
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    // Every other bound is far away: only the shutdown signal can end this connection
    // within the harness deadline.
    let f = Fixture::with_config(
        "[limits]\nheader_timeout_ms = 600000\ndrain_timeout_ms = 600000\nconnection_lifetime_secs = 600\n",
    );
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let mut server = f.start();
    let config = client_config(f.ca.roots(), false, false);
    let mut tls = connect(server.https, "mta-sts.example.com", config)
        .await
        .unwrap();
    let answer = get_on(&mut tls, "mta-sts.example.com").await.unwrap();
    let policy = policy_text("testing", &["mail.example.com"], 604800);
    assert!(answer.ends_with(&policy), "{answer}");
    // Now idle on a kept-alive connection.
    server.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    tokio::time::timeout(crate::common::DEADLINE, tls.read_to_end(&mut rest))
        .await
        .expect("the idle connection is still open after SIGTERM")
        .ok();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let status = server.wait_exit();
    assert!(status.success(), "{status}");
    server.wait_log("drained");
}

#[tokio::test]
async fn the_repository_dev_config_serves_its_example_tenants() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    for entry in std::fs::read_dir(repo.join("tenants")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.path().join("tenants").join(entry.file_name()),
        )
        .unwrap();
    }
    let config = std::fs::read_to_string(repo.join("stsedge.toml")).unwrap();
    assert!(
        config.contains("listen = [\"127.0.0.1:8443\"]")
            && config.contains("dev_self_signed = true")
    );
    let config = config
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    std::fs::write(dir.path().join("stsedge.toml"), config).unwrap();

    let server = Server::start(&dir.path().join("stsedge.toml"));
    server.wait_log("NOT FOR PRODUCTION");
    let ca = std::fs::read(dir.path().join("state/dev-ca/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let roots = Arc::new(roots);
    for domain in ["example.com", "example.net"] {
        let sni = format!("mta-sts.{domain}");
        let r = fetch(server.https, roots.clone(), Request::get(&sni))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("version: STSv1\r\n"));
    }
}

/// A large edge serves its first tenants while the rest load, and a tenant that is not
/// loaded yet waits for the load instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_start_serves_while_loading_and_refuses_no_tenant() {
    const TENANTS: usize = 1500;
    let f = Fixture::new();
    for i in 0..TENANTS {
        f.add_tenant(&format!("t{i:05}.example"), "mx = [\"mail.example.net\"]");
    }
    let server = Server::start_quiet(&f.config_path());
    let serving = server.wait_log("serving while loading");
    assert!(serving.contains("tenants=1024"), "{serving}");
    let mut fetches = Vec::new();
    for i in (0..TENANTS).step_by(97) {
        let (roots, addr) = (f.ca.roots(), server.https);
        fetches.push(tokio::spawn(async move {
            let sni = format!("mta-sts.t{i:05}.example");
            fetch(addr, roots, Request::get(&sni))
                .await
                .map(|r| r.status)
        }));
    }
    for (n, fetch) in fetches.into_iter().enumerate() {
        assert_eq!(fetch.await.unwrap().unwrap(), 200, "fetch {n}");
    }
    let ready = server.wait_log("ready;");
    assert!(ready.contains(&format!("tenants={TENANTS}")), "{ready}");
    let config = client_config(f.ca.roots(), false, false);
    assert!(crate::common::client::refused(server.https, "mta-sts.unknown.example", config).await);
}
