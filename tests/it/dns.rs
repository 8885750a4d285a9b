//! The authoritative DNS server (SPEC §3, DNS table): real queries with the hickory
//! client over UDP and TCP against the real binary, and hostile input.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::{
    DnsResponse, Edns, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Fixture, Server, eventually, write_atomic};

const ZONE: &str = "sts.example.net";

fn dns_config(ipv4: &[&str]) -> String {
    let ipv4: Vec<String> = ipv4.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[dns]\nzone = \"{ZONE}\"\nlisten = [\"127.0.0.1:0\"]\nipv4 = [{}]\nipv6 = [\"2001:db8::10\"]\nnameservers = [\"ns1.example.org\", \"ns2.example.org\"]\n[tlsrpt]\nhost = \"tlsrpt.{ZONE}\"\n",
        ipv4.join(", ")
    )
}

fn fixture() -> Fixture {
    Fixture::with_config(&dns_config(&["192.0.2.10", "192.0.2.11"]))
}

type DnsClient = Client<TokioRuntimeProvider>;

async fn udp_client(addr: SocketAddr) -> DnsClient {
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(5)))
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    client
}

async fn tcp_client(addr: SocketAddr) -> DnsClient {
    let (stream, sender) = TcpClientStream::new(
        addr,
        None,
        Some(Duration::from_secs(5)),
        TokioRuntimeProvider::new(),
    );
    let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await.unwrap(), sender);
    tokio::spawn(bg);
    client
}

/// A UDP and a TCP client for the server's DNS address.
async fn clients(server: &Server) -> [(&'static str, DnsClient); 2] {
    let addr = server.dns.expect("the ready line names the DNS address");
    [
        ("udp", udp_client(addr).await),
        ("tcp", tcp_client(addr).await),
    ]
}

async fn ask(client: &mut DnsClient, name: &str, rtype: RecordType) -> DnsResponse {
    client
        .query(Name::from_str(name).unwrap(), DNSClass::IN, rtype)
        .await
        .unwrap_or_else(|e| panic!("{name} {rtype}: {e}"))
}

fn txts(r: &DnsResponse) -> Vec<String> {
    r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn addrs(r: &DnsResponse) -> Vec<IpAddr> {
    r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// NODATA (the name exists) or NXDOMAIN, with the zone's SOA in authority.
#[track_caller]
fn assert_negative(r: &DnsResponse, code: ResponseCode, what: &str) {
    assert_eq!(r.metadata.response_code, code, "{what}: {r:?}");
    assert!(r.answers.is_empty(), "{what}: {:?}", r.answers);
    assert!(r.metadata.authoritative, "{what}: AA");
    let [soa] = &r.authorities[..] else {
        panic!("{what}: one SOA in authority, got {:?}", r.authorities)
    };
    assert_eq!(
        soa.name,
        Name::from_str(&format!("{ZONE}.")).unwrap(),
        "{what}"
    );
    assert!(matches!(soa.data, RData::SOA(_)), "{what}: {soa:?}");
}

async fn policy_id(server: &Server, domain: &str) -> String {
    let (_, body) = server.admin_get(&format!("/api/tenants/{domain}")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_row_of_the_spec_table_over_udp_and_tcp() {
    let f = fixture();
    f.add_tenant(
        "example.com",
        "mx = [\"mail.example.com\"]\ntlsrpt_rua = [\"mailto:tls@example.com\"]",
    );
    f.add_tenant("shop.example.org", "mx = [\"mail.example.org\"]");
    let server = f.start();
    let id = policy_id(&server, "example.com").await;

    for (proto, mut c) in clients(&server).await {
        let r = ask(
            &mut c,
            &format!("_mta-sts.example.com.{ZONE}."),
            RecordType::TXT,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert!(r.metadata.authoritative, "{proto}: AA");
        assert_eq!(txts(&r), [format!("v=STSv1; id={id}")], "{proto}");
        assert!(r.answers[0].ttl <= 300, "{proto}: short TXT TTL");

        let r = ask(
            &mut c,
            &format!("mta-sts.example.com.{ZONE}."),
            RecordType::A,
        )
        .await;
        assert_eq!(
            addrs(&r),
            [
                "192.0.2.10".parse::<IpAddr>().unwrap(),
                "192.0.2.11".parse().unwrap()
            ],
            "{proto}"
        );
        let r = ask(
            &mut c,
            &format!("mta-sts.example.com.{ZONE}."),
            RecordType::AAAA,
        )
        .await;
        assert_eq!(
            addrs(&r),
            ["2001:db8::10".parse::<IpAddr>().unwrap()],
            "{proto}"
        );

        let r = ask(
            &mut c,
            &format!("_smtp._tls.example.com.{ZONE}."),
            RecordType::TXT,
        )
        .await;
        assert_eq!(
            txts(&r),
            [format!(
                "v=TLSRPTv1; rua=https://tlsrpt.{ZONE}/tlsrpt/example.com,mailto:tls@example.com"
            )],
            "{proto}"
        );
        let r = ask(
            &mut c,
            &format!("_smtp._tls.shop.example.org.{ZONE}."),
            RecordType::TXT,
        )
        .await;
        assert_eq!(
            txts(&r),
            [format!(
                "v=TLSRPTv1; rua=https://tlsrpt.{ZONE}/tlsrpt/shop.example.org"
            )],
            "{proto}"
        );
        let r = ask(&mut c, &format!("tlsrpt.{ZONE}."), RecordType::A).await;
        assert_eq!(
            addrs(&r).len(),
            2,
            "{proto}: the in-zone report host resolves"
        );

        let r = ask(&mut c, &format!("{ZONE}."), RecordType::SOA).await;
        assert!(r.metadata.authoritative, "{proto}");
        let [soa] = &r.answers[..] else {
            panic!("{proto}: {r:?}")
        };
        let RData::SOA(soa) = &soa.data else {
            panic!("{proto}: {soa:?}")
        };
        assert_eq!(soa.mname, Name::from_str("ns1.example.org.").unwrap());
        assert_eq!(
            soa.rname,
            Name::from_str(&format!("hostmaster.{ZONE}.")).unwrap()
        );
        assert_eq!(soa.minimum, 300);
        let r = ask(&mut c, &format!("{ZONE}."), RecordType::NS).await;
        let mut ns: Vec<String> = r
            .answers
            .iter()
            .map(|a| match &a.data {
                RData::NS(n) => n.0.to_string(),
                other => panic!("{proto}: {other:?}"),
            })
            .collect();
        ns.sort();
        assert_eq!(ns, ["ns1.example.org.", "ns2.example.org."], "{proto}");

        // Known names, other types: NODATA.
        for (name, rtype) in [
            (format!("mta-sts.example.com.{ZONE}."), RecordType::MX),
            (format!("_mta-sts.example.com.{ZONE}."), RecordType::A),
            (format!("{ZONE}."), RecordType::A),
        ] {
            let r = ask(&mut c, &name, rtype).await;
            assert_negative(
                &r,
                ResponseCode::NoError,
                &format!("{proto} {name} {rtype}"),
            );
        }
        // Empty non-terminals (RFC 8020): NODATA, never NXDOMAIN.
        for name in [
            "example.com",
            "com",
            "_tls.example.com",
            "shop.example.org",
            "example.org",
            "org",
        ] {
            let name = format!("{name}.{ZONE}.");
            let r = ask(&mut c, &name, RecordType::A).await;
            assert_negative(&r, ResponseCode::NoError, &format!("{proto} {name}"));
        }
        // Nothing there: NXDOMAIN.
        for name in [
            "_mta-sts.example.net",
            "mta-sts.unknown.com",
            "www",
            "x._mta-sts.example.com",
            "net",
            "example.org.example.com",
        ] {
            let name = format!("{name}.{ZONE}.");
            let r = ask(&mut c, &name, RecordType::TXT).await;
            assert_negative(&r, ResponseCode::NXDomain, &format!("{proto} {name}"));
        }
        // Outside the zone: REFUSED.
        for name in [
            "_mta-sts.example.com.",
            "example.net.",
            "xsts.example.net.",
            ".",
        ] {
            let r = ask(&mut c, name, RecordType::TXT).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::Refused,
                "{proto} {name}"
            );
            assert!(!r.metadata.authoritative, "{proto} {name}");
            assert!(r.answers.is_empty() && r.authorities.is_empty());
        }
    }

    let (_, metrics) = server.admin_get("/metrics").await;
    for rcode in ["NOERROR", "NXDOMAIN", "REFUSED"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("stsedge_dns_queries_total{{rcode=\"{rcode}\"}}")))
            .unwrap_or_else(|| panic!("{rcode} in\n{metrics}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let f = fixture();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let id = policy_id(&server, "example.com").await;
    for (proto, mut c) in clients(&server).await {
        let name = "_MTA-sts.ExAmPlE.CoM.StS.eXaMpLe.NeT.";
        let r = ask(&mut c, name, RecordType::TXT).await;
        assert_eq!(txts(&r), [format!("v=STSv1; id={id}")], "{proto}");
        assert!(
            r.answers[0]
                .name
                .eq_ignore_root_case(&Name::from_str(name).unwrap()),
            "{proto}: owner {}",
            r.answers[0].name
        );
        let r = ask(
            &mut c,
            "MTA-STS.EXAMPLE.COM.STS.EXAMPLE.NET.",
            RecordType::A,
        )
        .await;
        assert_eq!(addrs(&r).len(), 2, "{proto}");
        let r = ask(&mut c, "CoM.sTs.ExAmPlE.nEt.", RecordType::A).await;
        assert_negative(&r, ResponseCode::NoError, proto);
    }
}

#[tokio::test]
async fn txt_is_withheld_until_the_tenant_has_a_certificate() {
    let f = fixture();
    let policy = "mx = [\"mail.example.com\"]\n";
    write_atomic(&f.tenant_path("example.com"), policy);
    let server = f.start();
    let txt_name = format!("_mta-sts.example.com.{ZONE}.");
    for (proto, mut c) in clients(&server).await {
        let r = ask(&mut c, &txt_name, RecordType::TXT).await;
        assert_negative(
            &r,
            ResponseCode::NoError,
            &format!("{proto}: no certificate, no TXT"),
        );
        let r = ask(
            &mut c,
            &format!("mta-sts.example.com.{ZONE}."),
            RecordType::A,
        )
        .await;
        assert_eq!(addrs(&r).len(), 2, "{proto}: the host still resolves");
    }

    let cert = f.issue_cert("example.com");
    write_atomic(&f.tenant_path("example.com"), &format!("{policy}{cert}"));
    let mut c = udp_client(server.dns.unwrap()).await;
    let txt = eventually("the TXT once a certificate is loaded", || {
        let mut c = c.clone();
        let name = txt_name.clone();
        async move { txts(&ask(&mut c, &name, RecordType::TXT).await).pop() }
    })
    .await;
    assert_eq!(
        txt,
        format!("v=STSv1; id={}", policy_id(&server, "example.com").await)
    );
    let r = ask(&mut c, &txt_name, RecordType::TXT).await;
    assert!(r.metadata.authoritative);
}

#[tokio::test]
async fn editing_a_tenant_changes_the_txt_id() {
    let f = fixture();
    let cert = f.issue_cert("example.com");
    write_atomic(
        &f.tenant_path("example.com"),
        &format!("mx = [\"mail.example.com\"]\n{cert}"),
    );
    let server = f.start();
    let name = format!("_mta-sts.example.com.{ZONE}.");
    let c = udp_client(server.dns.unwrap()).await;
    let before = txts(&ask(&mut c.clone(), &name, RecordType::TXT).await);
    let soa_serial = |r: &DnsResponse| match &r.answers[0].data {
        RData::SOA(s) => s.serial,
        other => panic!("{other:?}"),
    };
    let serial_before =
        soa_serial(&ask(&mut c.clone(), &format!("{ZONE}."), RecordType::SOA).await);

    write_atomic(
        &f.tenant_path("example.com"),
        &format!("mode = \"enforce\"\nmx = [\"mail.example.com\"]\n{cert}"),
    );
    let after = eventually("a new id in the TXT record", || {
        let mut c = c.clone();
        let (name, before) = (name.clone(), before.clone());
        async move {
            let now = txts(&ask(&mut c, &name, RecordType::TXT).await);
            (now != before).then_some(now)
        }
    })
    .await;
    let id = policy_id(&server, "example.com").await;
    assert_eq!(after, [format!("v=STSv1; id={id}")]);
    assert_ne!(before, after);
    let serial_after = soa_serial(&ask(&mut c.clone(), &format!("{ZONE}."), RecordType::SOA).await);
    assert!(
        serial_after > serial_before,
        "{serial_before} → {serial_after}"
    );
}

#[tokio::test]
async fn a_reloaded_config_changes_the_addresses() {
    let f = fixture();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let c = udp_client(server.dns.unwrap()).await;
    let host = format!("mta-sts.example.com.{ZONE}.");
    assert_eq!(
        addrs(&ask(&mut c.clone(), &host, RecordType::A).await).len(),
        2
    );

    let text = std::fs::read_to_string(f.config_path()).unwrap();
    let text = text.replace(
        "ipv4 = [\"192.0.2.10\", \"192.0.2.11\"]",
        "ipv4 = [\"198.51.100.7\"]",
    );
    write_atomic(&f.config_path(), &text);
    server.signal(libc::SIGHUP);
    eventually("the new address", || {
        let mut c = c.clone();
        let host = host.clone();
        async move {
            let now = addrs(&ask(&mut c, &host, RecordType::A).await);
            (now == ["198.51.100.7".parse::<IpAddr>().unwrap()]).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn udp_answers_over_the_client_limit_are_truncated() {
    let many: Vec<String> = (1..=120).map(|i| format!("10.0.0.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let f = Fixture::with_config(&dns_config(&many));
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let addr = server.dns.unwrap();
    let host = format!("mta-sts.example.com.{ZONE}.");

    let mut plain = udp_client(addr).await;
    plain.disable_edns();
    let r = ask(&mut plain, &host, RecordType::A).await;
    assert!(r.metadata.truncation, "no EDNS: 512 bytes at most");
    assert!(r.answers.len() < 120);

    let r = raw_udp(addr, &query_message(&host, RecordType::A, Some(4096))).await;
    assert!(
        r.metadata.truncation,
        "even a 4096 offer gets at most 1232 bytes"
    );
    let edns = r.edns.as_ref().expect("EDNS echoed");
    assert_eq!(edns.max_payload(), 1232);

    let r = ask(&mut tcp_client(addr).await, &host, RecordType::A).await;
    assert!(!r.metadata.truncation);
    assert_eq!(addrs(&r).len(), 120, "TCP carries the whole answer");
}

fn query_message(name: &str, rtype: RecordType, payload: Option<u16>) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m
}

/// Sends `message` in one datagram and decodes the reply.
async fn raw_udp(addr: SocketAddr, message: &Message) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&message.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(crate::common::DEADLINE, sock.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn malformed_queries_get_well_formed_errors() {
    let f = fixture();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let addr = server.dns.unwrap();
    let name = format!("_mta-sts.example.com.{ZONE}.");

    let mut two = query_message(&name, RecordType::TXT, None);
    two.add_query(Query::query(Name::from_str(&name).unwrap(), RecordType::A));
    let r = raw_udp(addr, &two).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::FormErr,
        "two questions"
    );
    assert_eq!(r.metadata.id, 4242);

    let mut none = query_message(&name, RecordType::TXT, None);
    none.queries.clear();
    let r = raw_udp(addr, &none).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::FormErr,
        "no question"
    );

    for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut m = query_message(&name, RecordType::TXT, None);
        m.metadata.op_code = op;
        let r = raw_udp(addr, &m).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
    }

    let mut v1 = query_message(&name, RecordType::TXT, Some(1232));
    v1.edns.as_mut().unwrap().set_version(1);
    let r = raw_udp(addr, &v1).await;
    // 16 is BADVERS with EDNS; hickory's decoder names the shared code BADSIG.
    assert_eq!(
        u16::from(r.metadata.response_code),
        16,
        "EDNS version 1: BADVERS"
    );
    assert!(
        r.edns.is_some(),
        "BADVERS needs the OPT record for its high bits"
    );

    let mut chaos = query_message("version.bind.", RecordType::TXT, None);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let r = raw_udp(addr, &chaos).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused, "CH class");

    let r = raw_udp(
        addr,
        &query_message(&format!("{ZONE}."), RecordType::AXFR, None),
    )
    .await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::Refused,
        "no zone transfers"
    );

    // A truncated question after a valid header: FORMERR from hickory's parser.
    let mut bytes = query_message(&name, RecordType::TXT, None)
        .to_vec()
        .unwrap();
    bytes.truncate(bytes.len() - 3);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(crate::common::DEADLINE))
        .unwrap();
    sock.send_to(&bytes, addr).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::FormErr,
        "truncated question"
    );

    // The same over TCP, in a well-framed message.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).await.unwrap();
    let r = Message::from_vec(&reply).unwrap();
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::FormErr,
        "TCP truncated question"
    );
}

#[tokio::test]
async fn hostile_input_does_not_stop_the_server() {
    let f = fixture();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let addr = server.dns.unwrap();
    let name = format!("_mta-sts.example.com.{ZONE}.");

    // Garbage datagrams: empty, shorter than a header, a header promising records that
    // are not there, a name whose compression pointer points at itself, a response (must
    // not be answered: reflection), random bytes, a maximal datagram.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0; 11],
        vec![
            0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        [
            &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
            &[0xc0, 0x0c, 0, 16, 0, 1],
        ]
        .concat(),
        [
            &[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 16, 0, 1],
        ]
        .concat(),
        vec![0xff; 65_507],
    ];
    let mut seed = 0x9e37_79b9_u32;
    for len in [12, 13, 64, 300, 512, 1500] {
        garbage.push(
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect(),
        );
    }
    for g in &garbage {
        sock.send_to(g, addr).unwrap();
    }

    // TCP: a frame announcing 65535 bytes that never come, a frame cut in the middle, a
    // length prefix alone, a zero-length frame, a huge frame of junk; each then closed.
    let query = query_message(&name, RecordType::TXT, None)
        .to_vec()
        .unwrap();
    let mut cut = (query.len() as u16).to_be_bytes().to_vec();
    cut.extend_from_slice(&query[..query.len() / 2]);
    let frames: Vec<Vec<u8>> = vec![
        [&[0xff, 0xff][..], &[0u8; 100]].concat(),
        cut,
        vec![0x00],
        vec![0x00, 0x00],
        [&[0xff, 0xff][..], &vec![0xab; 65_535][..]].concat(),
    ];
    for frame in frames {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&frame).await.unwrap();
        s.shutdown().await.unwrap();
        // The server answers junk with FORMERR or closes; either way it ends.
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(crate::common::DEADLINE, s.read_to_end(&mut sink)).await;
    }
    // An idle connection holds nothing up.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();

    for (proto, mut c) in clients(&server).await {
        let r = ask(&mut c, &name, RecordType::TXT).await;
        assert_eq!(txts(&r).len(), 1, "{proto}: still answering");
    }
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
}

#[tokio::test]
async fn a_response_is_never_answered() {
    // Answering datagrams with QR set would let a spoofer bounce two servers off
    // each other.
    let f = fixture();
    let server = f.start();
    let addr = server.dns.unwrap();
    let mut response = query_message(&format!("{ZONE}."), RecordType::SOA, None);
    response.metadata.message_type = MessageType::Response;
    response.metadata.id = 1;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&response.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let query = query_message(&format!("{ZONE}."), RecordType::SOA, None);
    sock.send_to(&query.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(crate::common::DEADLINE, sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(first.metadata.id, 4242, "the first reply is to the query");
}

#[tokio::test]
async fn tcp_connections_are_capped_and_the_cap_spares_the_rest() {
    let f = fixture();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let addr = server.dns.unwrap();
    // Fill the cap with idle connections (accepted in order, so all before the next).
    let mut held = Vec::new();
    for _ in 0..stsedge::dns::MAX_TCP_CONNECTIONS {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(crate::common::DEADLINE, over.read(&mut buf))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // A held connection still answers, and UDP is unaffected.
    let query = query_message(&format!("{ZONE}."), RecordType::SOA, None)
        .to_vec()
        .unwrap();
    let s = &mut held[0];
    s.write_all(&(query.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&query).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(Message::from_vec(&reply).unwrap().answers.len(), 1);
    let r = raw_udp(
        addr,
        &query_message(&format!("{ZONE}."), RecordType::SOA, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);

    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(
        metrics.contains("stsedge_dns_tcp_rejected_total 1"),
        "{metrics}"
    );
    // Freed slots are reused.
    held.clear();
    eventually("a new TCP connection is served again", || async {
        let mut c = tcp_client(addr).await;
        let r = c
            .query(
                Name::from_str(&format!("{ZONE}.")).unwrap(),
                DNSClass::IN,
                RecordType::SOA,
            )
            .await
            .ok()?;
        (r.answers.len() == 1).then_some(())
    })
    .await;
}
