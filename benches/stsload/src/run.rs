//! `stsload run`: the load generator. C tasks on one runtime (current-thread by
//! default, so the loader fits on one pinned core), each issuing verified policy
//! fetches until the deadline or the request budget is reached.
//!
//! Every response is checked (status, content type, exact body) and every full
//! handshake's leaf is pinned by hash, so a fast but wrong server shows up as
//! mismatches rather than as a good number. Each task keeps its own histogram and
//! counters and hands them back at the end: no shared mutable state on the hot path
//! except two atomics for the stop condition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::HandshakeKind;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cpu;
use crate::manifest::{Manifest, Tenant};
use crate::policy::POLICY_PATH;
use crate::tls::{HashVerifier, Suite, client_config, x25519_provider};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// New TCP connection + full TLS handshake per request.
    Full,
    /// New TCP connection per request, TLS session resumed when a ticket is held.
    Resume,
    /// One connection per task, requests back to back.
    Keepalive,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: SocketAddr,
    pub fixture: PathBuf,
    pub mode: Mode,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub max_requests: Option<u64>,
    pub rate: Option<f64>,
    pub prime: bool,
    pub json: bool,
    pub json_out: Option<PathBuf>,
    pub brief: bool,
    pub server_pids: Vec<u32>,
    pub allow_errors: bool,
    pub verify_signatures: bool,
    pub tls12: bool,
    pub suite: Suite,
    pub threads: usize,
    pub timeout: Duration,
    pub seed: u64,
}

/// Upper bound on the resume-mode priming pass (100k tenants take well under this).
const PRIME_LIMIT: Duration = Duration::from_secs(600);

/// Why a request failed. Each carries the error text; the first one of each kind is
/// shown in the report.
#[derive(Debug)]
enum Failure {
    Connect(String),
    Tls(String),
    /// The verifier rejected the leaf: a wrong certificate is a mismatch, not noise.
    Cert(String),
    Http(String),
    Timeout,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub tls: u64,
    pub http: u64,
    pub status: u64,
    pub timeout: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect + self.tls + self.http + self.status + self.timeout
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct MismatchCounts {
    pub body: u64,
    pub content_type: u64,
    pub cert: u64,
}

impl MismatchCounts {
    pub fn total(&self) -> u64 {
        self.body + self.content_type + self.cert
    }
}

/// One task's results; merged into the report at the end.
struct TaskStats {
    latency_us: Histogram<u64>,
    requests: u64,
    ok: u64,
    errors: ErrorCounts,
    mismatches: MismatchCounts,
    handshakes_full: u64,
    handshakes_resumed: u64,
    first_status_error: Option<u16>,
    /// First error text per kind, so a failing run says why.
    examples: BTreeMap<&'static str, String>,
}

impl TaskStats {
    fn new() -> Self {
        Self {
            // 1 µs .. 120 s at 3 significant digits: covers a stalled request too.
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            requests: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            mismatches: MismatchCounts::default(),
            handshakes_full: 0,
            handshakes_resumed: 0,
            first_status_error: None,
            examples: BTreeMap::new(),
        }
    }

    fn merge(&mut self, o: &TaskStats) {
        self.latency_us
            .add(&o.latency_us)
            .expect("same histogram bounds");
        self.requests += o.requests;
        self.ok += o.ok;
        let (e, m) = (&mut self.errors, &mut self.mismatches);
        e.connect += o.errors.connect;
        e.tls += o.errors.tls;
        e.http += o.errors.http;
        e.status += o.errors.status;
        e.timeout += o.errors.timeout;
        m.body += o.mismatches.body;
        m.content_type += o.mismatches.content_type;
        m.cert += o.mismatches.cert;
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
        self.first_status_error = self.first_status_error.or(o.first_status_error);
        for (k, v) in &o.examples {
            self.examples.entry(k).or_insert_with(|| v.clone());
        }
    }

    fn fail(&mut self, f: Failure) {
        self.requests += 1;
        let (kind, detail) = match f {
            Failure::Connect(d) => (("connect", &mut self.errors.connect), d),
            Failure::Tls(d) => (("tls", &mut self.errors.tls), d),
            Failure::Cert(d) => (("cert", &mut self.mismatches.cert), d),
            Failure::Http(d) => (("http", &mut self.errors.http), d),
            Failure::Timeout => (
                ("timeout", &mut self.errors.timeout),
                "no complete response within --timeout".to_string(),
            ),
        };
        *kind.1 += 1;
        self.examples.entry(kind.0).or_insert(detail);
    }

    fn handshake(&mut self, kind: Option<HandshakeKind>) {
        match kind {
            Some(HandshakeKind::Resumed) => self.handshakes_resumed += 1,
            _ => self.handshakes_full += 1,
        }
    }

    /// Judges a received response against the tenant's expected policy.
    fn judge(&mut self, tenant: &Tenant, resp: &Fetched, started: Instant) {
        self.requests += 1;
        let _ = self
            .latency_us
            .record((started.elapsed().as_micros() as u64).max(1));
        if resp.status != StatusCode::OK {
            self.errors.status += 1;
            self.first_status_error.get_or_insert(resp.status.as_u16());
            return;
        }
        let ct_ok = resp
            .content_type
            .as_ref()
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
        if !ct_ok {
            self.mismatches.content_type += 1;
        } else if resp.body != tenant.body {
            self.mismatches.body += 1;
        } else {
            self.ok += 1;
        }
    }
}

/// What we keep of a response.
struct Fetched {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
    /// The server announced it will close (`Connection: close`).
    closing: bool,
}

/// State every task shares read-only, plus the stop condition.
struct Shared {
    tenants: Arc<Vec<Tenant>>,
    connector: TlsConnector,
    target: SocketAddr,
    mode: Mode,
    timeout: Duration,
    deadline: Instant,
    budget: u64,
    issued: AtomicU64,
    /// Open-loop mode: each task's gap between request *starts* (= C / --rate).
    task_interval: Option<Duration>,
    /// Priming pass: tenants are handed out in order, each exactly once.
    cursor: Option<AtomicUsize>,
}

/// Paces one task. Closed loop (no --rate): the next request starts when the last
/// one ended. Open loop: requests are due on a fixed schedule and latency is taken
/// from the *due* time, so a stalled server is charged for the requests it delayed
/// (no coordinated omission) — what a p99 target needs.
struct Pacer {
    next: Instant,
    interval: Option<Duration>,
}

impl Pacer {
    fn new(shared: &Shared, task: u64, tasks: u64) -> Self {
        let offset = shared.task_interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(task as f64 / tasks.max(1) as f64)
        });
        Self {
            next: Instant::now() + offset,
            interval: shared.task_interval,
        }
    }

    /// Waits until the next request is due; returns the instant latency counts from.
    async fn wait(&mut self) -> Instant {
        match self.interval {
            None => Instant::now(),
            Some(iv) => {
                let due = self.next;
                self.next += iv;
                tokio::time::sleep_until(due.into()).await;
                due
            }
        }
    }
}

impl Shared {
    /// Claims the right to start one more request.
    fn admit(&self) -> bool {
        Instant::now() < self.deadline && self.issued.fetch_add(1, Ordering::Relaxed) < self.budget
    }
}

fn classify_tls(err: &std::io::Error) -> Failure {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(e @ rustls::Error::InvalidCertificate(_)) => Failure::Cert(e.to_string()),
        _ => Failure::Tls(err.to_string()),
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(shared: &Shared, tenant: &Tenant) -> Result<Tls, Failure> {
    let tcp = TcpStream::connect(shared.target)
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    // The request is one small write; Nagle would only add a delayed-ACK stall.
    let _ = tcp.set_nodelay(true);
    shared
        .connector
        .connect(tenant.server_name.clone(), tcp)
        .await
        .map_err(|e| classify_tls(&e))
}

fn policy_request(tenant: &Tenant, close: bool) -> Request<Empty<Bytes>> {
    let mut req = Request::get(POLICY_PATH)
        .header(HOST, tenant.host_header.clone())
        .body(Empty::new())
        .expect("static request parts are valid");
    if close {
        req.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    req
}

async fn read_response(resp: hyper::Response<hyper::body::Incoming>) -> Result<Fetched, Failure> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| Failure::Http(e.to_string()))?
        .to_bytes();
    let closing = parts
        .headers
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    Ok(Fetched {
        status: parts.status,
        content_type: parts.headers.get(CONTENT_TYPE).cloned(),
        body,
        closing,
    })
}

/// One connection, one handshake, one request (`full` and `resume`). The request says
/// `Connection: close`, as a one-shot policy fetcher would, so the exchange ends when
/// the response does; the connection future is driven alongside the request.
async fn one_shot(
    shared: &Shared,
    tenant: &Tenant,
) -> Result<(Option<HandshakeKind>, Fetched), Failure> {
    let tls = connect(shared, tenant).await?;
    let kind = tls.get_ref().1.handshake_kind();
    let (mut sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| Failure::Http(e.to_string()))?;
    let request = async {
        let resp = sender
            .send_request(policy_request(tenant, true))
            .await
            .map_err(|e| Failure::Http(e.to_string()))?;
        read_response(resp).await
    };
    let (conn_res, fetched) = tokio::join!(conn, request);
    let fetched = fetched?;
    conn_res.map_err(|e| Failure::Http(e.to_string()))?;
    Ok((kind, fetched))
}

async fn one_shot_task(shared: Arc<Shared>, seed: u64, mut pacer: Pacer) -> TaskStats {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = TaskStats::new();
    loop {
        let started = pacer.wait().await;
        if !shared.admit() {
            break;
        }
        let n = shared.tenants.len();
        let index = match &shared.cursor {
            Some(c) => match c.fetch_add(1, Ordering::Relaxed) {
                i if i < n => i,
                _ => break,
            },
            None => rng.usize(..n),
        };
        let tenant = &shared.tenants[index];
        match tokio::time::timeout(shared.timeout, one_shot(&shared, tenant)).await {
            Err(_) => stats.fail(Failure::Timeout),
            Ok(Err(f)) => stats.fail(f),
            Ok(Ok((kind, fetched))) => {
                stats.handshake(kind);
                stats.judge(tenant, &fetched, started);
            }
        }
    }
    stats
}

/// `keepalive`: one tenant per task, one connection reused for back-to-back requests.
/// A server-initiated close (`Connection: close`, idle or request limits) is not an
/// error; the task simply reconnects, and the reconnect counts as a handshake.
async fn keepalive_task(shared: Arc<Shared>, seed: u64, mut pacer: Pacer) -> TaskStats {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = TaskStats::new();
    let tenant = &shared.tenants[rng.usize(..shared.tenants.len())];
    let mut sender: Option<http1::SendRequest<Empty<Bytes>>> = None;
    loop {
        let started = pacer.wait().await;
        if !shared.admit() {
            break;
        }
        let attempt = async {
            let reusable = match sender.take() {
                Some(mut s) => s.ready().await.is_ok().then_some(s),
                None => None,
            };
            let mut s = match reusable {
                Some(s) => s,
                None => {
                    let tls = connect(&shared, tenant).await?;
                    stats.handshake(tls.get_ref().1.handshake_kind());
                    let (s, conn) = http1::handshake(TokioIo::new(tls))
                        .await
                        .map_err(|e| Failure::Http(e.to_string()))?;
                    // Long-lived, so a spawned driver is cheaper than re-joining it
                    // with every request; it ends when the sender is dropped.
                    tokio::spawn(conn);
                    s
                }
            };
            let resp = s
                .send_request(policy_request(tenant, false))
                .await
                .map_err(|e| Failure::Http(e.to_string()))?;
            let fetched = read_response(resp).await?;
            Ok::<_, Failure>((s, fetched))
        };
        match tokio::time::timeout(shared.timeout, attempt).await {
            Err(_) => stats.fail(Failure::Timeout),
            Ok(Err(f)) => stats.fail(f),
            Ok(Ok((s, fetched))) => {
                stats.judge(tenant, &fetched, started);
                if !fetched.closing {
                    sender = Some(s);
                }
            }
        }
    }
    stats
}

/// Runs one phase (priming, warm-up or measured) to completion and merges the task
/// results. `prime` visits every tenant exactly once instead of random ones.
async fn run_phase(
    base: &Arc<Shared>,
    opts: &RunOptions,
    duration: Duration,
    budget: u64,
    seed: u64,
    prime: bool,
) -> (TaskStats, Duration) {
    let shared = Arc::new(Shared {
        tenants: base.tenants.clone(),
        connector: base.connector.clone(),
        target: base.target,
        mode: base.mode,
        timeout: base.timeout,
        deadline: Instant::now() + duration,
        budget,
        issued: AtomicU64::new(0),
        task_interval: opts
            .rate
            .filter(|_| !prime)
            .map(|r| Duration::from_secs_f64(opts.concurrency as f64 / r)),
        cursor: prime.then(|| AtomicUsize::new(0)),
    });
    let started = Instant::now();
    let tasks = opts.concurrency as u64;
    let handles: Vec<_> = (0..opts.concurrency as u64)
        .map(|i| {
            let s = shared.clone();
            let task_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i);
            let pacer = Pacer::new(&s, i, tasks);
            match s.mode {
                Mode::Keepalive => tokio::spawn(keepalive_task(s, task_seed, pacer)),
                Mode::Full | Mode::Resume => tokio::spawn(one_shot_task(s, task_seed, pacer)),
            }
        })
        .collect();
    let mut total = TaskStats::new();
    for h in handles {
        total.merge(&h.await.expect("load task panicked"));
    }
    (total, started.elapsed())
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: SocketAddr,
    pub mode: Mode,
    pub tls_version: &'static str,
    pub preferred_suite: Suite,
    pub concurrency: usize,
    pub target_rate: Option<f64>,
    pub tenants: usize,
    pub threads: usize,
    pub verify_signatures: bool,
    pub elapsed_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub req_per_s: f64,
    pub latency_us: Latency,
    pub errors: ErrorCounts,
    pub errors_total: u64,
    pub mismatches: MismatchCounts,
    pub mismatches_total: u64,
    pub first_bad_status: Option<u16>,
    pub error_examples: BTreeMap<&'static str, String>,
    pub handshakes: u64,
    pub handshakes_full: u64,
    pub resumed: u64,
    pub server_pids: Vec<u32>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_req: Option<f64>,
    /// VmRSS summed over the server's processes (double-counts shared pages).
    pub server_rss_kib: Option<u64>,
    /// Pss summed over the server's processes (shared pages split, no double count).
    pub server_pss_kib: Option<u64>,
    pub loader_cpu_s: f64,
    pub loader_cpu_us_per_req: f64,
    pub loader_cpu_share: f64,
    /// CPU seconds used during the window by everything except the server pids and
    /// the loader (other builds/benchmarks on this shared machine). Large values
    /// make the run suspect.
    pub others_cpu_s: Option<f64>,
    pub steal_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

fn print_human(r: &Report) {
    println!(
        "stsload run: {:?} {} ({:?} first) against {} — {} tenants, concurrency {}, {} thread(s), signatures {}",
        r.mode,
        r.tls_version,
        r.preferred_suite,
        r.target,
        r.tenants,
        r.concurrency,
        r.threads,
        if r.verify_signatures {
            "verified"
        } else {
            "not verified"
        },
    );
    println!(
        "  requests    {} in {:.2} s  ({} ok)  =>  {:.0} req/s{}",
        r.requests,
        r.elapsed_s,
        r.ok,
        r.req_per_s,
        r.target_rate.map_or(String::new(), |t| format!(
            "  (open loop, target {t:.0} req/s; latency from due time)"
        ))
    );
    let l = &r.latency_us;
    println!(
        "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.0})",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    let e = &r.errors;
    println!(
        "  errors      {}  (connect {}, tls {}, http {}, status {}{}, timeout {})",
        r.errors_total,
        e.connect,
        e.tls,
        e.http,
        e.status,
        r.first_bad_status
            .map(|s| format!(" e.g. {s}"))
            .unwrap_or_default(),
        e.timeout
    );
    let m = &r.mismatches;
    println!(
        "  mismatches  {}  (body {}, content-type {}, cert {})",
        r.mismatches_total, m.body, m.content_type, m.cert
    );
    for (kind, text) in &r.error_examples {
        println!("    first {kind} error: {text}");
    }
    println!(
        "  handshakes  {}  (full {}, resumed {})",
        r.handshakes, r.handshakes_full, r.resumed
    );
    match (r.server_cpu_us_per_req, r.server_cpu_s) {
        (Some(per), Some(total)) => println!(
            "  server cpu  {per:.1} µs/request  ({total:.2} s over pids {:?}; rss {} KiB, pss {} KiB)",
            r.server_pids,
            r.server_rss_kib.map_or("?".into(), |v| v.to_string()),
            r.server_pss_kib.map_or("?".into(), |v| v.to_string())
        ),
        _ if !r.server_pids.is_empty() => println!("  server cpu  unavailable (a process exited?)"),
        _ => {}
    }
    println!(
        "  loader cpu  {:.1} µs/request  ({:.2} s = {:.0}% of one core{})",
        r.loader_cpu_us_per_req,
        r.loader_cpu_s,
        r.loader_cpu_share * 100.0,
        if r.loader_cpu_share > 0.9 * r.threads as f64 {
            "; the LOADER is the bottleneck"
        } else {
            ""
        }
    );
    if let Some(o) = r.others_cpu_s {
        println!(
            "  others cpu  {o:.2} s ({:.0}% of one core) used by other processes in the window{}; steal {:.2} s",
            o / r.elapsed_s * 100.0,
            if o / r.elapsed_s > 0.1 {
                " — NOISY, rerun"
            } else {
                ""
            },
            r.steal_s.unwrap_or(0.0)
        );
    }
}

/// One line per run, for scripts that run many (compare.sh).
fn print_brief(r: &Report) {
    println!(
        "{:?} c={} {}: {:.0} req/s, p50 {} p99 {} µs, server {} µs/req, loader {:.0} µs/req {:.0}%{}, others {}%, errors {}, mismatches {}, resumed {}/{}",
        r.mode,
        r.concurrency,
        r.target,
        r.req_per_s,
        r.latency_us.p50,
        r.latency_us.p99,
        r.server_cpu_us_per_req
            .map_or("?".to_string(), |c| format!("{c:.1}")),
        r.loader_cpu_us_per_req,
        r.loader_cpu_share * 100.0,
        if r.loader_cpu_share > 0.9 * r.threads as f64 {
            " (LOADER-BOUND)"
        } else {
            ""
        },
        r.others_cpu_s.map_or("?".to_string(), |o| format!(
            "{:.0}",
            o / r.elapsed_s * 100.0
        )),
        r.errors_total,
        r.mismatches_total,
        r.resumed,
        r.handshakes
    );
    for (kind, text) in &r.error_examples {
        println!("    first {kind} error: {text}");
    }
}

/// Entry point of `stsload run`; returns the process exit code.
pub fn run(opts: RunOptions) -> Result<i32> {
    if opts.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if opts.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    let manifest = Manifest::load(&opts.fixture)?;
    let provider = x25519_provider(opts.tls12, opts.suite);
    let verifier = Arc::new(HashVerifier::new(
        manifest.cert_by_host.clone(),
        opts.verify_signatures,
        &provider,
    ));
    let resume = (opts.mode == Mode::Resume).then_some(manifest.tenants.len());
    let config = client_config(verifier, provider, opts.tls12, resume)?;
    let tenants_n = manifest.tenants.len();
    let base = Arc::new(Shared {
        tenants: Arc::new(manifest.tenants),
        connector: TlsConnector::from(Arc::new(config)),
        target: opts.target,
        mode: opts.mode,
        timeout: opts.timeout,
        deadline: Instant::now(),
        budget: 0,
        issued: AtomicU64::new(0),
        task_interval: None,
        cursor: None,
    });

    let runtime = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };
    let pids = cpu::with_descendants(&opts.server_pids);
    let ticks_per_s = cpu::clock_ticks_per_sec() as f64;

    let (stats, elapsed, server_ticks, loader_us, machine) = runtime.block_on(async {
        if opts.mode == Mode::Resume && opts.prime {
            // Without this, every tenant's first visit in the window is a full
            // handshake, and with many tenants "resume" would mostly measure full
            // handshakes (at 10k tenants and ~10k requests, about half).
            let (p, took) = run_phase(&base, &opts, PRIME_LIMIT, u64::MAX, 0, true).await;
            eprintln!(
                "stsload: primed session cache: {} tenants visited in {:.1} s ({} errors)",
                p.requests,
                took.as_secs_f64(),
                p.errors.total() + p.mismatches.total()
            );
        }
        if !opts.warmup.is_zero() {
            // Same traffic, results discarded: fills session caches, page cache and
            // the server's lazy state before the window that counts.
            run_phase(
                &base,
                &opts,
                opts.warmup,
                u64::MAX,
                opts.seed ^ 0x5757,
                false,
            )
            .await;
        }
        let server_before = cpu::total_cpu_ticks(&pids).ok();
        let machine_before = cpu::machine_cpu();
        let loader_before = cpu::self_cpu_us();
        let budget = opts.max_requests.unwrap_or(u64::MAX);
        let (stats, elapsed) =
            run_phase(&base, &opts, opts.duration, budget, opts.seed, false).await;
        let loader_us = cpu::self_cpu_us().saturating_sub(loader_before);
        let machine = machine_before
            .zip(cpu::machine_cpu())
            .map(|(b, a)| cpu::MachineCpu {
                busy: a.busy.saturating_sub(b.busy),
                steal: a.steal.saturating_sub(b.steal),
            });
        let server_after = cpu::total_cpu_ticks(&pids).ok();
        let server_ticks = server_before
            .zip(server_after)
            .map(|(b, a)| a.saturating_sub(b));
        (stats, elapsed, server_ticks, loader_us, machine)
    });
    // Requests already started at the deadline finish and are counted; `elapsed`
    // runs until the last one did, so req/s stays honest.

    let h = &stats.latency_us;
    let secs = elapsed.as_secs_f64();
    let req = stats.requests.max(1) as f64;
    let server_cpu_s = server_ticks
        .filter(|_| !pids.is_empty())
        .map(|t| t as f64 / ticks_per_s);
    let report = Report {
        target: opts.target,
        mode: opts.mode,
        tls_version: if opts.tls12 { "TLSv1.2" } else { "TLSv1.3" },
        preferred_suite: opts.suite,
        concurrency: opts.concurrency,
        target_rate: opts.rate,
        tenants: tenants_n,
        threads: opts.threads.max(1),
        verify_signatures: opts.verify_signatures,
        elapsed_s: secs,
        requests: stats.requests,
        ok: stats.ok,
        req_per_s: stats.requests as f64 / secs,
        latency_us: Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        },
        errors: stats.errors,
        errors_total: stats.errors.total(),
        mismatches: stats.mismatches,
        mismatches_total: stats.mismatches.total(),
        first_bad_status: stats.first_status_error,
        error_examples: stats.examples.clone(),
        handshakes: stats.handshakes_full + stats.handshakes_resumed,
        handshakes_full: stats.handshakes_full,
        resumed: stats.handshakes_resumed,
        server_cpu_us_per_req: server_cpu_s.map(|s| s * 1e6 / req),
        server_cpu_s,
        server_pss_kib: (!pids.is_empty())
            .then(|| pids.iter().filter_map(|&p| cpu::pss_kib(p)).sum()),
        server_rss_kib: (!pids.is_empty())
            .then(|| pids.iter().filter_map(|&p| cpu::vm_rss_kib(p)).sum()),
        server_pids: pids,
        loader_cpu_s: loader_us as f64 / 1e6,
        loader_cpu_us_per_req: loader_us as f64 / req,
        loader_cpu_share: loader_us as f64 / 1e6 / secs,
        others_cpu_s: machine.map(|m| {
            let total = m.busy as f64 / ticks_per_s;
            (total - server_cpu_s.unwrap_or(0.0) - loader_us as f64 / 1e6).max(0.0)
        }),
        steal_s: machine.map(|m| m.steal as f64 / ticks_per_s),
    };
    let json = serde_json::to_string(&report).context("serializing report")?;
    if let Some(path) = &opts.json_out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if opts.json {
        println!("{json}");
    } else if opts.brief {
        print_brief(&report);
    } else {
        print_human(&report);
    }
    let bad = report.errors_total + report.mismatches_total;
    if report.requests == 0 {
        eprintln!("stsload: no request completed");
        return Ok(2);
    }
    Ok(if bad > 0 && !opts.allow_errors { 1 } else { 0 })
}
