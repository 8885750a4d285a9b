//! Hot-path and reload benches (issue #2): SNI resolve hit/miss at 10, 10k and 1M
//! tenants; response build per request; snapshot build at 10k; one-tenant delta at 100k.
//!
//! `cargo bench --bench edge`; figures go to BENCHMARKS.md.

mod support;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use stsedge::http::{ConnectionRoute, respond};
use stsedge::metrics::Metrics;
use stsedge::snapshot::SnapshotBuilder;

fn sni_resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("sni_resolve");
    for n in [10usize, 10_000, 1_000_000] {
        let shared = support::shared(n);
        let hits: Vec<String> = (0..64)
            .map(|i| format!("MTA-STS.{}", support::domain(i * 7919 % n)))
            .collect();
        let misses: Vec<String> = (0..64)
            .map(|i| format!("mta-sts.absent{i}.bench.example"))
            .collect();
        for (kind, names) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(kind, n), names, |b, names| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & 63;
                    // What SniResolver::resolve does.
                    black_box(shared.load().certificate_for(&names[i]).cloned())
                })
            });
        }
    }
    group.finish();
}

fn response_build(c: &mut Criterion) {
    let shared = support::shared(10_000);
    let metrics = Metrics::new();
    let sni = format!("mta-sts.{}", support::domain(4242));
    let req = http::Request::builder()
        .uri("/.well-known/mta-sts.txt")
        .header("host", &sni)
        .body(())
        .unwrap();
    // The first request of a connection (what a full-handshake fetch does), with
    // the connection's route made for it, and a later one on a kept-alive connection.
    c.bench_function("response_build/policy_get", |b| {
        b.iter(|| {
            let conn = ConnectionRoute::new(&sni);
            black_box(respond(
                conn.route(&shared.load(), &req),
                &metrics.responses,
            ))
        })
    });
    let conn = ConnectionRoute::new(&sni);
    c.bench_function("response_build/policy_get_keepalive", |b| {
        b.iter(|| {
            black_box(respond(
                conn.route(&shared.load(), &req),
                &metrics.responses,
            ))
        })
    });
}

fn snapshot_build(c: &mut Criterion) {
    let cert = support::certificate();
    let config = support::config();
    c.bench_function("snapshot_build/10k_tenants", |b| {
        b.iter(|| {
            let mut builder = SnapshotBuilder::new(config.clone(), 10_000);
            for i in 0..10_000 {
                builder.upsert(support::tenant(i, &cert));
            }
            black_box(builder.build())
        })
    });
}

fn single_tenant_reload(c: &mut Criterion) {
    let current = support::snapshot(100_000);
    let cert = support::certificate();
    c.bench_function("reload/one_tenant_at_100k", |b| {
        b.iter_batched(
            || support::tenant(777, &cert),
            |changed| {
                let mut builder = current.to_builder();
                builder.upsert(changed);
                black_box(builder.build())
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    sni_resolve,
    response_build,
    snapshot_build,
    single_tenant_reload
);
criterion_main!(benches);
