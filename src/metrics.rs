//! Prometheus metrics. Counters the request path touches are pre-resolved handles
//! (one atomic add each); label lookups happen only at start-up and on reload.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::snapshot::Snapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeLabel {
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Handles for HTTP response codes the server can produce.
pub struct ResponseCounters {
    pub ok: Counter,
    pub bad_request: Counter,
    pub not_found: Counter,
    pub method_not_allowed: Counter,
    pub misdirected: Counter,
}

pub struct HandshakeCounters {
    pub ok: Counter,
    pub unknown_sni: Counter,
    pub no_sni: Counter,
    pub failed: Counter,
    pub timeout: Counter,
}

/// Handles for the DNS response codes the server answers with.
pub struct DnsCounters {
    pub noerror: Counter,
    pub nxdomain: Counter,
    pub refused: Counter,
    pub formerr: Counter,
    pub notimp: Counter,
    pub servfail: Counter,
    pub badvers: Counter,
    /// TCP connections closed at once because the DNS connection cap was reached.
    pub tcp_rejected: Counter,
}

pub struct Metrics {
    registry: Registry,
    pub dns: DnsCounters,
    pub responses: ResponseCounters,
    pub handshakes: HandshakeCounters,
    pub connections_open: Gauge,
    pub connections_rejected: Counter,
    pub header_timeouts: Counter,
    reloads: Family<ResultLabel, Counter>,
    pub reload_seconds: Histogram,
    generation: Gauge,
    tenants: Family<StateLabel, Gauge>,
    problems: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stsedge");
        let responses = Family::<CodeLabel, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses by status code",
            responses.clone(),
        );
        let code = |c| responses.get_or_create(&CodeLabel { code: c }).clone();
        let handshakes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            handshakes.clone(),
        );
        let hs = |r| handshakes.get_or_create(&ResultLabel { result: r }).clone();
        let dns = Family::<RcodeLabel, Counter>::default();
        registry.register(
            "dns_queries",
            "DNS queries answered, by response code",
            dns.clone(),
        );
        let rcode = |r| dns.get_or_create(&RcodeLabel { rcode: r }).clone();
        let dns_tcp_rejected = Counter::default();
        registry.register(
            "dns_tcp_rejected",
            "DNS TCP connections closed at once because the connection cap was reached",
            dns_tcp_rejected.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "HTTPS connections open",
            connections_open.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "HTTPS connections closed at once because the connection limit was reached",
            connections_rejected.clone(),
        );
        let header_timeouts = Counter::default();
        registry.register(
            "header_timeouts",
            "HTTPS connections closed because no request head came within header_timeout_ms \
             of the previous one (an idle keep-alive connection, or a slow client)",
            header_timeouts.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("reloads", "Reload attempts by result", reloads.clone());
        let reload_seconds = Histogram::new([0.001, 0.005, 0.02, 0.05, 0.2, 1.0, 5.0]);
        registry.register(
            "reload_duration_seconds",
            "Time to build and publish a snapshot",
            reload_seconds.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "snapshot_generation",
            "Generation of the snapshot being served",
            generation.clone(),
        );
        let tenants = Family::<StateLabel, Gauge>::default();
        registry.register("tenants", "Tenants by state", tenants.clone());
        let problems = Gauge::default();
        registry.register(
            "config_problems",
            "Problems in config, tenant and certificate files (see `stsedge check`)",
            problems.clone(),
        );
        Metrics {
            responses: ResponseCounters {
                ok: code(200),
                bad_request: code(400),
                not_found: code(404),
                method_not_allowed: code(405),
                misdirected: code(421),
            },
            handshakes: HandshakeCounters {
                ok: hs("ok"),
                unknown_sni: hs("unknown_sni"),
                no_sni: hs("no_sni"),
                failed: hs("failed"),
                timeout: hs("timeout"),
            },
            dns: DnsCounters {
                noerror: rcode("NOERROR"),
                nxdomain: rcode("NXDOMAIN"),
                refused: rcode("REFUSED"),
                formerr: rcode("FORMERR"),
                notimp: rcode("NOTIMP"),
                servfail: rcode("SERVFAIL"),
                badvers: rcode("BADVERS"),
                tcp_rejected: dns_tcp_rejected,
            },
            registry,
            connections_open,
            connections_rejected,
            header_timeouts,
            reloads,
            reload_seconds,
            generation,
            tenants,
            problems,
        }
    }

    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Updates the gauges that describe the published snapshot.
    pub fn published(&self, snapshot: &Snapshot) {
        let servable = snapshot.servable_count();
        self.generation.set(snapshot.generation as i64);
        self.tenants
            .get_or_create(&StateLabel { state: "servable" })
            .set(servable as i64);
        self.tenants
            .get_or_create(&StateLabel {
                state: "not_servable",
            })
            .set((snapshot.tenant_count() - servable) as i64);
        self.problems.set(snapshot.problems.len() as i64);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
