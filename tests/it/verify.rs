//! `stsedge verify`: the real binary against real parts on 127.0.0.1 — a hickory
//! authoritative server in the test holding the customer's zone and the hosting zone's
//! answers, a real `stsedge serve` for the HTTPS policy, and an SMTP listener with
//! STARTTLS (tokio-rustls, test CA) — one scenario per way enforce can go wrong.

use hickory_server::Server as DnsServer;
use hickory_server::proto::rr::rdata::{A, CNAME, MX, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{Fixture, Server, policy_text};

const DOMAIN: &str = "example.com";
const ZONE: &str = "sts.test";

/// What the world looks like; each test changes one thing from `good()`.
#[derive(Clone)]
struct Scenario {
    /// The `mx` lines of the tenant file.
    policy_mx: Vec<&'static str>,
    /// The domain's MX hosts (preference 10, 20, …), all at 127.0.0.1.
    mx: Vec<&'static str>,
    /// `_mta-sts.DOMAIN CNAME _mta-sts.DOMAIN.ZONE` published.
    txt_cname: bool,
    /// `mta-sts.DOMAIN` as a CNAME (`true`) or as an A record to the edge (`false`).
    host_cname: bool,
    /// The TXT id the hosting zone answers; `None`: the current one.
    txt_id: Option<&'static str>,
    /// Whether the MX listener offers STARTTLS.
    starttls: bool,
    /// The names on the MX certificate.
    mx_cert: Vec<&'static str>,
}

fn good() -> Scenario {
    Scenario {
        policy_mx: vec!["mx1.example.com", "*.mx.example.net"],
        mx: vec!["mx1.example.com", "a.mx.example.net"],
        txt_cname: true,
        host_cname: true,
        txt_id: None,
        starttls: true,
        mx_cert: vec!["mx1.example.com", "*.mx.example.net"],
    }
}

/// Everything a run needs; dropped at the end of the test (servers stop).
struct World {
    fixture: Fixture,
    server: Server,
    dns_addr: SocketAddr,
    smtp_addr: SocketAddr,
    _dns: DnsServer<Catalog>,
    runtime: tokio::runtime::Runtime,
}

impl World {
    fn start(s: &Scenario) -> World {
        let fixture = Fixture::with_config(&format!(
            "[dns]\nzone = \"{ZONE}\"\nlisten = [\"127.0.0.1:0\"]\nipv4 = [\"127.0.0.1\"]\nnameservers = [\"ns1.{ZONE}\"]\n"
        ));
        let mx_lines: Vec<String> = s.policy_mx.iter().map(|m| format!("\"{m}\"")).collect();
        fixture.add_tenant(
            DOMAIN,
            &format!("mode = \"testing\"\nmx = [{}]", mx_lines.join(", ")),
        );
        std::fs::write(fixture.path().join("ca.pem"), &fixture.ca.pem).unwrap();
        let server = fixture.start();

        let current =
            stsedge::policy::PolicyId::of(policy_text("testing", &s.policy_mx, 604800).as_bytes());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (dns, dns_addr) = runtime.block_on(dns_server(s, current.as_str()));
        let (chain, key) = fixture.ca.leaf(&s.mx_cert);
        let smtp_addr = runtime.block_on(smtp_listener(s.starttls, &chain, &key));
        World {
            fixture,
            server,
            dns_addr,
            smtp_addr,
            _dns: dns,
            runtime,
        }
    }

    /// Runs `stsedge verify DOMAIN` against this world: (exit ok, stdout).
    fn verify(&self, extra: &[&str]) -> (bool, String) {
        self.run(self.smtp_addr.port(), extra)
    }

    fn verify_with_smtp_port(&self, port: u16) -> (bool, String) {
        self.run(port, &[])
    }

    fn run(&self, smtp_port: u16, extra: &[&str]) -> (bool, String) {
        let (resolver, https, smtp) = (
            self.dns_addr.to_string(),
            self.server.https.port().to_string(),
            smtp_port.to_string(),
        );
        let ca = self.fixture.path().join("ca.pem");
        let mut args = vec![
            "verify",
            DOMAIN,
            "--resolver",
            &resolver,
            "--ca-file",
            ca.to_str().unwrap(),
            "--smtp-port",
            &smtp,
            "--https-port",
            &https,
        ];
        args.extend_from_slice(extra);
        let out = self.fixture.stsedge(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.is_empty() || !out.status.success(),
            "stderr: {stderr}"
        );
        (out.status.success(), format!("{stdout}{stderr}"))
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).unwrap()
}

fn zone(origin: &str, records: Vec<(String, RData)>) -> Arc<InMemoryZoneHandler> {
    let mut z = InMemoryZoneHandler::empty(name(origin), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(
        name(&format!("ns1.{origin}")),
        name(&format!("hostmaster.{origin}")),
        1,
        3600,
        600,
        86400,
        60,
    );
    assert!(z.upsert_mut(Record::from_rdata(name(origin), 60, RData::SOA(soa)), 1));
    for (owner, data) in records {
        assert!(z.upsert_mut(Record::from_rdata(name(&owner), 60, data), 1));
    }
    Arc::new(z)
}

/// The customer's zone and the hosting zone's answers in one authoritative server.
async fn dns_server(s: &Scenario, current_id: &str) -> (DnsServer<Catalog>, SocketAddr) {
    let localhost = || RData::A(A(Ipv4Addr::LOCALHOST));
    let mut customer = Vec::new();
    if s.txt_cname {
        customer.push((
            format!("_mta-sts.{DOMAIN}"),
            RData::CNAME(CNAME(name(&format!("_mta-sts.{DOMAIN}.{ZONE}")))),
        ));
    }
    if s.host_cname {
        customer.push((
            format!("mta-sts.{DOMAIN}"),
            RData::CNAME(CNAME(name(&format!("mta-sts.{DOMAIN}.{ZONE}")))),
        ));
    } else {
        customer.push((format!("mta-sts.{DOMAIN}"), localhost()));
    }
    let mut provider = Vec::new();
    for (i, mx) in s.mx.iter().enumerate() {
        customer.push((
            DOMAIN.into(),
            RData::MX(MX::new(10 * (i as u16 + 1), name(mx))),
        ));
        let host = (mx.to_string(), localhost());
        if mx.ends_with(DOMAIN) {
            customer.push(host);
        } else {
            provider.push(host);
        }
    }
    let id = s.txt_id.unwrap_or(current_id);
    let hosting = vec![
        (
            format!("_mta-sts.{DOMAIN}.{ZONE}"),
            RData::TXT(TXT::new(vec![format!("v=STSv1; id={id}")])),
        ),
        (format!("mta-sts.{DOMAIN}.{ZONE}"), localhost()),
    ];
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(name(DOMAIN)), vec![zone(DOMAIN, customer)]);
    catalog.upsert(LowerName::from(name(ZONE)), vec![zone(ZONE, hosting)]);
    catalog.upsert(
        LowerName::from(name("mx.example.net")),
        vec![zone("mx.example.net", provider)],
    );

    // UDP picks a free port; TCP takes the same one, unless another test holds it.
    let (udp, tcp, addr) = 'bind: {
        for _ in 0..50 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                break 'bind (udp, tcp, addr);
            }
        }
        panic!("no port free for both UDP and TCP");
    };
    let mut server = DnsServer::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    (server, addr)
}

/// An MX on 127.0.0.1 port 0: greeting, multi-line EHLO reply, STARTTLS if `starttls`,
/// then TLS with `chain`/`key`.
async fn smtp_listener(starttls: bool, chain: &str, key: &str) -> SocketAddr {
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(tcp);
                conn.get_mut()
                    .write_all(b"220 mx.test ESMTP ready\r\n")
                    .await?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if conn.read_line(&mut line).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    let verb = line.trim_end().to_ascii_uppercase();
                    if verb.starts_with("EHLO") {
                        let tls = if starttls { "250-STARTTLS\r\n" } else { "" };
                        let reply = format!(
                            "250-mx.test greets you\r\n250-PIPELINING\r\n{tls}250 8BITMIME\r\n"
                        );
                        conn.get_mut().write_all(reply.as_bytes()).await?;
                    } else if verb == "STARTTLS" && starttls {
                        conn.get_mut().write_all(b"220 go ahead\r\n").await?;
                        let mut tls = BufReader::new(acceptor.accept(conn.into_inner()).await?);
                        let mut line = String::new();
                        while tls.read_line(&mut line).await? > 0 {
                            if line.trim_end().eq_ignore_ascii_case("QUIT") {
                                tls.get_mut().write_all(b"221 bye\r\n").await?;
                                tls.get_mut().shutdown().await?;
                                break;
                            }
                            line.clear();
                        }
                        return Ok(());
                    } else if verb == "QUIT" {
                        conn.get_mut().write_all(b"221 bye\r\n").await?;
                        return Ok(());
                    } else {
                        conn.get_mut().write_all(b"502 unknown command\r\n").await?;
                    }
                }
            });
        }
    });
    addr
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[test]
fn a_correct_setup_passes_and_enforce_is_safe() {
    let world = World::start(&good());
    let (ok, out) = world.verify(&[]);
    assert!(ok, "{out}");
    for check in [
        "✓ CNAME _mta-sts.example.com: _mta-sts.example.com is a CNAME to _mta-sts.example.com.sts.test",
        "✓ CNAME mta-sts.example.com: mta-sts.example.com is a CNAME to mta-sts.example.com.sts.test",
        "✓ TXT _mta-sts.example.com: ",
        "✓ HTTPS mta-sts.example.com: https://mta-sts.example.com/.well-known/mta-sts.txt answers 200 text/plain",
        "✓ MX example.com: every MX (mx1.example.com, a.mx.example.net) matches",
        "✓ STARTTLS mx1.example.com: mx1.example.com (127.0.0.1:",
        "✓ STARTTLS a.mx.example.net: ",
    ] {
        line(&out, check);
    }
    assert!(!out.contains('✗'), "{out}");
    assert_eq!(line(&out, "verdict: "), "verdict: enforce is safe");

    let (ok, json) = world.verify(&["--json"]);
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["domain"], DOMAIN);
    assert_eq!(v["enforce_safe"], true);
    assert_eq!(v["discoverable"], true);
    assert_eq!(v["verdict"], "enforce is safe");
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7, "{json}");
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["name"].is_string() && c["detail"].is_string(), "{c}");
    }
}

#[test]
fn an_a_record_for_the_policy_host_is_accepted_when_it_points_at_the_edge() {
    let world = World::start(&Scenario {
        host_cname: false,
        ..good()
    });
    let (ok, out) = world.verify(&[]);
    assert!(ok, "{out}");
    line(
        &out,
        "✓ CNAME mta-sts.example.com: mta-sts.example.com has no CNAME but resolves to 127.0.0.1, an address of this edge",
    );
}

#[test]
fn a_missing_cname_means_the_policy_is_not_discoverable() {
    let world = World::start(&Scenario {
        txt_cname: false,
        ..good()
    });
    let (ok, out) = world.verify(&[]);
    assert!(!ok, "{out}");
    let cname = line(&out, "✗ CNAME _mta-sts.example.com: ");
    assert!(
        cname.contains("publish `_mta-sts.example.com. CNAME _mta-sts.example.com.sts.test.`"),
        "{out}"
    );
    line(&out, "✗ TXT _mta-sts.example.com: ");
    line(&out, "✓ HTTPS mta-sts.example.com: ");
    let verdict = line(&out, "verdict: ");
    assert!(
        verdict.contains("the policy is not discoverable yet because CNAME _mta-sts.example.com"),
        "{verdict}"
    );
    assert!(
        !verdict.contains("enforce is safe") && !verdict.contains("bounce"),
        "{verdict}"
    );
}

#[test]
fn an_mx_outside_the_policy_would_bounce_and_stale_patterns_are_drift() {
    let world = World::start(&Scenario {
        policy_mx: vec!["mx1.example.com", "old.example.com"],
        ..good()
    });
    let (ok, out) = world.verify(&[]);
    assert!(!ok, "{out}");
    let mx = line(&out, "✗ MX example.com: ");
    assert!(
        mx.contains("not covered by any policy mx pattern: a.mx.example.net"),
        "{mx}"
    );
    assert!(
        mx.contains("drift: pattern old.example.com matches no MX"),
        "{mx}"
    );
    // The MX itself is fine: only the policy is wrong.
    line(&out, "✓ STARTTLS a.mx.example.net: ");
    let verdict = line(&out, "verdict: ");
    assert!(
        verdict.starts_with("verdict: enforce would bounce mail because MX example.com ("),
        "{verdict}"
    );
}

#[test]
fn an_mx_without_starttls_would_bounce() {
    let world = World::start(&Scenario {
        starttls: false,
        ..good()
    });
    let (ok, out) = world.verify(&[]);
    assert!(!ok, "{out}");
    let probe = line(&out, "✗ STARTTLS mx1.example.com: ");
    assert!(
        probe.contains("STARTTLS is not offered in the EHLO reply"),
        "{probe}"
    );
    line(&out, "✓ MX example.com: ");
    let verdict = line(&out, "verdict: ");
    assert!(
        verdict.contains("enforce would bounce mail because STARTTLS mx1.example.com"),
        "{verdict}"
    );
    assert!(verdict.contains("STARTTLS a.mx.example.net"), "{verdict}");
}

#[test]
fn an_mx_certificate_for_another_name_would_bounce() {
    let world = World::start(&Scenario {
        mx_cert: vec!["mx1.example.com"],
        ..good()
    });
    let (ok, out) = world.verify(&[]);
    assert!(!ok, "{out}");
    line(&out, "✓ STARTTLS mx1.example.com: ");
    let probe = line(&out, "✗ STARTTLS a.mx.example.net: ");
    assert!(probe.contains("certificate invalid: wrong name"), "{probe}");
    let verdict = line(&out, "verdict: ");
    assert!(
        verdict.contains("enforce would bounce mail because STARTTLS a.mx.example.net"),
        "{verdict}"
    );
}

#[test]
fn an_mx_certificate_from_an_unknown_ca_is_untrusted() {
    let world = World::start(&good());
    // Without --ca-file only the web roots are trusted: the test CA is not among them,
    // for the policy host as for the MX.
    let out = world.fixture.stsedge(&[
        "verify",
        DOMAIN,
        "--resolver",
        &world.dns_addr.to_string(),
        "--smtp-port",
        &world.smtp_addr.port().to_string(),
        "--https-port",
        &world.server.https.port().to_string(),
    ]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        line(&out, "✗ STARTTLS mx1.example.com: ")
            .contains("certificate invalid: untrusted issuer"),
        "{out}"
    );
    assert!(
        line(&out, "✗ HTTPS mta-sts.example.com: ")
            .contains("certificate invalid: untrusted issuer"),
        "{out}"
    );
}

#[test]
fn an_mx_that_refuses_connections_is_told_apart() {
    let world = World::start(&good());
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, out) = world.verify_with_smtp_port(closed.port());
    assert!(!ok, "{out}");
    let probe = line(&out, "✗ STARTTLS mx1.example.com: ");
    assert!(
        probe.contains("connection refused by 127.0.0.1:"),
        "{probe}"
    );
    assert!(
        line(&out, "verdict: ").contains("enforce would bounce mail"),
        "{out}"
    );
}

#[test]
fn a_stale_txt_id_is_reported() {
    let world = World::start(&Scenario {
        txt_id: Some("20200101old"),
        ..good()
    });
    let (ok, out) = world.verify(&[]);
    assert!(!ok, "{out}");
    let txt = line(&out, "✗ TXT _mta-sts.example.com: ");
    assert!(
        txt.contains(
            "stale id: _mta-sts.example.com has id=20200101old, the current policy id is "
        ),
        "{txt}"
    );
    let verdict = line(&out, "verdict: ");
    assert!(
        verdict.contains("not discoverable yet because TXT _mta-sts.example.com (stale id"),
        "{verdict}"
    );
}

#[test]
fn an_unknown_domain_is_one_clear_error() {
    let world = World::start(&good());
    let out = world.fixture.stsedge(&[
        "verify",
        "example.org",
        "--resolver",
        &world.dns_addr.to_string(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("example.org is not a tenant in ")
            && err.contains("stsedge tenant add example.org"),
        "{err}"
    );
}

#[test]
fn mx_patterns_from_dns_suggests_the_provider_wildcard_or_exact_hosts() {
    let fleet = World::start(&Scenario {
        mx: vec!["a.mx.example.net", "b.mx.example.net"],
        ..good()
    });
    let own = World::start(&good());
    let domain = stsedge::domain::DomainName::parse(DOMAIN).unwrap();
    let ask = |world: &World| {
        let resolver = stsedge::verify::resolver(Some(world.dns_addr)).unwrap();
        world
            .runtime
            .block_on(stsedge::verify::mx_patterns_from_dns(&domain, &resolver))
            .unwrap()
    };
    assert_eq!(ask(&fleet), vec!["*.mx.example.net"]);
    assert_eq!(ask(&own), vec!["mx1.example.com", "a.mx.example.net"]);
    let resolver = stsedge::verify::resolver(Some(own.dns_addr)).unwrap();
    let none = stsedge::domain::DomainName::parse("nomail.example.com").unwrap();
    let err = own
        .runtime
        .block_on(stsedge::verify::mx_patterns_from_dns(&none, &resolver))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("nomail.example.com has no MX records"),
        "{err}"
    );
}

#[test]
fn tenant_add_takes_the_mx_patterns_from_dns() {
    let world = World::start(&Scenario {
        mx: vec!["a.mx.example.net", "b.mx.example.net"],
        ..good()
    });
    let resolver = world.dns_addr.to_string();
    std::fs::remove_file(world.fixture.tenant_path(DOMAIN)).unwrap();
    let out = world.fixture.stsedge(&[
        "tenant",
        "add",
        DOMAIN,
        "--mx-from-dns",
        "--resolver",
        &resolver,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(world.fixture.tenant_path(DOMAIN)).unwrap();
    assert!(text.contains("mx = [\"*.mx.example.net\"]"), "{text}");
    let out = world.fixture.stsedge(&[
        "tenant",
        "add",
        "nomail.example.com",
        "--mx-from-dns",
        "--resolver",
        &resolver,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no MX records"));
}
