//! Policies by SNI, every status code of SPEC §3, TLS versions and refusals.

use crate::common::client::{client_config, connect, tls_error};
use crate::common::{Fixture, Request, fetch, policy_text};

const COM: &str =
    "mode = \"enforce\"\nmax_age = 86400\nmx = [\"mail.example.com\", \"*.mx.example.net\"]";
const ORG: &str = "mx = [\"mx.example.org\"]";
const NET: &str = "mode = \"none\"";

fn three_tenants() -> Fixture {
    let f = Fixture::new();
    f.add_tenant("example.com", COM);
    f.add_tenant("example.org", ORG);
    f.add_tenant("example.net", NET);
    f
}

#[tokio::test]
async fn each_tenant_gets_its_own_policy_and_certificate_over_h1_and_h2() {
    let f = three_tenants();
    let server = f.start();
    let expected = [
        (
            "example.com",
            policy_text("enforce", &["mail.example.com", "*.mx.example.net"], 86400),
        ),
        (
            "example.org",
            policy_text("testing", &["mx.example.org"], 604800),
        ),
        ("example.net", policy_text("none", &[], 604800)),
    ];
    for (domain, body) in &expected {
        let sni = format!("mta-sts.{domain}");
        for h2 in [false, true] {
            let reply = fetch(
                server.https,
                f.ca.roots(),
                Request {
                    h2,
                    ..Request::get(&sni)
                },
            )
            .await
            .unwrap();
            assert_eq!(reply.status, 200, "{sni} h2={h2}");
            assert_eq!(reply.text(), *body, "{sni} h2={h2}");
            assert_eq!(reply.headers["content-type"], "text/plain");
            assert_eq!(
                reply.alpn.as_deref(),
                Some(if h2 { &b"h2"[..] } else { &b"http/1.1"[..] })
            );
            let leaf = rustls_pki_types::CertificateDer::from(reply.leaf.clone());
            let info = stsedge::tls::leaf_info(&leaf).unwrap();
            assert_eq!(
                info.dns_names,
                std::slice::from_ref(&sni),
                "certificate chosen by SNI"
            );
        }
    }
    // Each policy has its own id, and the API shows the same one DNS will publish.
    let (_, api) = server.admin_get("/api/tenants").await;
    let tenants: serde_json::Value = serde_json::from_str(&api).unwrap();
    let ids: std::collections::HashSet<_> = tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())));
}

#[tokio::test]
async fn status_codes_follow_the_spec() {
    let f = three_tenants();
    let server = f.start();
    let roots = f.ca.roots();
    let sni = "mta-sts.example.com";
    for h2 in [false, true] {
        let base = Request {
            h2,
            ..Request::get(sni)
        };
        let head = fetch(
            server.https,
            roots.clone(),
            Request {
                method: "HEAD",
                ..base.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        let full_len =
            policy_text("enforce", &["mail.example.com", "*.mx.example.net"], 86400).len();
        assert_eq!(
            head.headers["content-length"],
            full_len.to_string().as_str()
        );
        let get = fetch(server.https, roots.clone(), base.clone())
            .await
            .unwrap();
        assert_eq!(get.body.len(), full_len);
        assert_eq!(
            get.headers["content-length"],
            full_len.to_string().as_str(),
            "a GET announces its length too (h2: {h2})"
        );

        let other = fetch(
            server.https,
            roots.clone(),
            Request {
                path: "/",
                ..base.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(other.status, 404);
        let other = fetch(
            server.https,
            roots.clone(),
            Request {
                path: "/.well-known/mta-sts.txt/x",
                ..base.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(other.status, 404);

        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let r = fetch(
                server.https,
                roots.clone(),
                Request {
                    method,
                    ..base.clone()
                },
            )
            .await
            .unwrap();
            assert_eq!(r.status, 405, "{method}");
            assert_eq!(r.headers["allow"], "GET, HEAD");
        }

        let misdirected = fetch(
            server.https,
            roots.clone(),
            Request {
                host: Some("mta-sts.example.org"),
                ..base.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            misdirected.status, 421,
            "Host of another tenant on this connection"
        );

        let with_port = fetch(
            server.https,
            roots.clone(),
            Request {
                host: Some("MTA-STS.Example.com:443"),
                ..base.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            with_port.status, 200,
            "Host compared without port, ignoring case"
        );

        let query = fetch(
            server.https,
            roots.clone(),
            Request {
                path: "/.well-known/mta-sts.txt?x=1",
                ..base.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(query.status, 200);
        assert!(!query.headers.contains_key("location"), "never a redirect");
    }
}

#[tokio::test]
async fn tls12_and_tls13_both_serve() {
    let f = three_tenants();
    let server = f.start();
    for tls12 in [false, true] {
        let r = fetch(
            server.https,
            f.ca.roots(),
            Request {
                tls12,
                ..Request::get("mta-sts.example.org")
            },
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        let want = if tls12 {
            rustls::ProtocolVersion::TLSv1_2
        } else {
            rustls::ProtocolVersion::TLSv1_3
        };
        assert_eq!(r.version, want);
    }
}

#[tokio::test]
async fn sni_is_case_insensitive() {
    let f = three_tenants();
    let server = f.start();
    let r = fetch(
        server.https,
        f.ca.roots(),
        Request::get("MTA-STS.EXAMPLE.Org"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        policy_text("testing", &["mx.example.org"], 604800)
    );
}

#[tokio::test]
async fn unknown_or_missing_sni_is_refused_with_unrecognized_name() {
    let f = three_tenants();
    let server = f.start();
    let config = client_config(f.ca.roots(), false, false);
    for sni in [
        "mta-sts.example.edu",
        "example.com",
        "www.example.com",
        "127.0.0.1",
    ] {
        // An IP address as server name makes rustls send no SNI at all.
        let err = connect(server.https, sni, config.clone())
            .await
            .expect_err(sni);
        assert_eq!(
            tls_error(&err),
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::UnrecognisedName
            )),
            "{sni}: {err}"
        );
    }
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(
        metrics.contains("stsedge_tls_handshakes_total{result=\"unknown_sni\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stsedge_tls_handshakes_total{result=\"no_sni\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_tenant_without_a_usable_certificate_is_not_served() {
    let f = Fixture::new();
    f.add_tenant("example.com", ORG);
    // Key of another certificate: rejected, so the tenant has no certificate.
    let host = "mta-sts.example.org";
    let cert = f.issue_cert("example.org");
    let (_, other_key) = f.ca.leaf(&[host]);
    std::fs::write(
        f.path().join("certs").join(host).join("privkey.pem"),
        other_key,
    )
    .unwrap();
    std::fs::write(f.tenant_path("example.org"), format!("{ORG}\n{cert}")).unwrap();
    let server = f.start();
    let config = client_config(f.ca.roots(), false, false);
    let err = connect(server.https, host, config)
        .await
        .expect_err("mismatched key must not serve");
    assert!(tls_error(&err).is_some(), "{err}");
    let ok = fetch(
        server.https,
        f.ca.roots(),
        Request::get("mta-sts.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "other tenants unaffected");
    let (_, detail) = server.admin_get("/api/tenants/example.org").await;
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["servable"], false);
    assert!(
        detail["reason"]
            .as_str()
            .unwrap()
            .contains("does not belong to the certificate"),
        "{detail}"
    );
}
