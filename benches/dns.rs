//! DNS answer path at 100 000 tenants: a `_mta-sts` TXT hit, an NXDOMAIN, an empty
//! non-terminal and an A answer, each from a parsed request to encoded bytes (`reply` +
//! encode), plus the same with hickory's parse of the datagram in front (`wire`).
//!
//! `cargo bench --bench dns`; figures go to BENCHMARKS.md.

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::Request;
use stsedge::config::ServerConfig;
use stsedge::dns::DnsHandler;
use stsedge::metrics::Metrics;
use stsedge::snapshot::SnapshotBuilder;

const TENANTS: usize = 100_000;
const ZONE: &str = "sts.example.net";

fn handler() -> DnsHandler {
    let text = format!(
        "[dns]\nzone = \"{ZONE}\"\nipv4 = [\"192.0.2.10\"]\nnameservers = [\"ns1.example.org\"]\n[tlsrpt]\nhost = \"tlsrpt.example.org\"\n"
    );
    let config =
        Arc::new(ServerConfig::parse(Path::new("/etc/stsedge/stsedge.toml"), &text).unwrap());
    let cert = support::certificate();
    let mut builder = SnapshotBuilder::new(config, TENANTS);
    for i in 0..TENANTS {
        builder.upsert(support::tenant(i, &cert));
    }
    let snapshot = Arc::new(ArcSwap::from_pointee(builder.build()));
    DnsHandler::new(snapshot, Arc::new(Metrics::new()))
}

/// 64 datagrams asking `rtype` for `name(i)`, as a resolver sends them (EDNS 1232).
fn datagrams(name: impl Fn(usize) -> String, rtype: RecordType) -> Vec<Vec<u8>> {
    (0..64)
        .map(|i| {
            let mut m = Message::new(i as u16, MessageType::Query, OpCode::Query);
            m.add_query(Query::query(Name::from_ascii(name(i)).unwrap(), rtype));
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
            m.to_vec().unwrap()
        })
        .collect()
}

fn parse(bytes: &[u8]) -> Request {
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    Request::from_bytes(bytes.to_vec(), src, Protocol::Udp).unwrap()
}

fn answer(handler: &DnsHandler, request: &Request, out: &mut Vec<u8>) -> usize {
    out.clear();
    let reply = handler.reply(request);
    let mut encoder = BinEncoder::new(out);
    encoder.set_max_size(1232);
    reply
        .response(&request.queries)
        .destructive_emit(&mut encoder)
        .unwrap();
    out.len()
}

fn dns_answer(c: &mut Criterion) {
    let handler = handler();
    // Warm the per-generation SOA/NS cache, as the first query of a generation does.
    let zone = datagrams(|_| format!("{ZONE}."), RecordType::SOA);
    answer(&handler, &parse(&zone[0]), &mut Vec::new());

    let step = 7919;
    let cases = [
        (
            "txt_hit",
            datagrams(
                |i| format!("_mta-sts.{}.{ZONE}.", support::domain(i * step % TENANTS)),
                RecordType::TXT,
            ),
        ),
        (
            "nxdomain",
            datagrams(
                |i| format!("_mta-sts.absent{i}.bench.example.{ZONE}."),
                RecordType::TXT,
            ),
        ),
        (
            "nodata_ent",
            datagrams(|_| format!("bench.example.{ZONE}."), RecordType::A),
        ),
        (
            "a_hit",
            datagrams(
                |i| format!("mta-sts.{}.{ZONE}.", support::domain(i * step % TENANTS)),
                RecordType::A,
            ),
        ),
    ];
    let mut group = c.benchmark_group("dns_answer");
    for (kind, wire) in &cases {
        let parsed: Vec<Request> = wire.iter().map(|w| parse(w)).collect();
        let mut out = Vec::with_capacity(1232);
        // Measure the answer we mean to measure.
        answer(&handler, &parsed[0], &mut out);
        let m = Message::from_vec(&out).unwrap();
        let want = match *kind {
            "nxdomain" => (ResponseCode::NXDomain, 0),
            "nodata_ent" => (ResponseCode::NoError, 0),
            _ => (ResponseCode::NoError, 1),
        };
        assert_eq!((m.metadata.response_code, m.answers.len()), want, "{kind}");
        group.bench_with_input(BenchmarkId::new("reply", kind), &parsed, |b, parsed| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 63;
                black_box(answer(&handler, &parsed[i], &mut out))
            })
        });
        group.bench_with_input(BenchmarkId::new("wire", kind), wire, |b, wire| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 63;
                let request = parse(&wire[i]);
                black_box(answer(&handler, &request, &mut out))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dns_answer);
criterion_main!(benches);
