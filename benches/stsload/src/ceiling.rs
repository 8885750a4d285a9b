//! `stsload ceiling`: what one core can do in rustls alone. Client and server
//! connections are wired through memory buffers (no sockets, no runtime, no HTTP
//! stack), and only the time spent inside the *server's* rustls calls (read_tls,
//! process_new_packets, write_tls, and the plaintext reader/writer for the exchange
//! cases) is counted. The certificate is the fixture's kind: an ECDSA P-256 leaf plus
//! its CA in the chain; key exchange X25519; rustls' default cipher suite choice.
//!
//! The gap between this and a server's measured CPU per request is the cost of the
//! kernel, the runtime, HTTP and the server's own code. Client-side time is printed
//! too: it is what the loader pays per handshake.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use time::OffsetDateTime;

use crate::fixture::{cert_sha256, issue_leaf, new_ca};
use crate::policy::{bench_policy_body, policy_host, tenant_domain};
use crate::tls::{HashVerifier, Suite, client_config, x25519_provider};

#[derive(Debug, Default)]
struct Times {
    server_ns: u64,
    client_ns: u64,
}

fn elapsed_ns(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// Moves records both ways until neither side has anything to send.
fn pump(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    buf: &mut Vec<u8>,
    times: &mut Times,
) -> Result<()> {
    loop {
        let mut moved = false;

        buf.clear();
        let t = Instant::now();
        while client.wants_write() {
            client.write_tls(buf)?;
        }
        times.client_ns += elapsed_ns(t);
        if !buf.is_empty() {
            moved = true;
            let t = Instant::now();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd)?;
                server.process_new_packets()?;
            }
            times.server_ns += elapsed_ns(t);
        }

        buf.clear();
        let t = Instant::now();
        while server.wants_write() {
            server.write_tls(buf)?;
        }
        times.server_ns += elapsed_ns(t);
        if !buf.is_empty() {
            moved = true;
            let t = Instant::now();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd)?;
                client.process_new_packets()?;
            }
            times.client_ns += elapsed_ns(t);
        }

        if !moved {
            return Ok(());
        }
    }
}

struct World {
    name: ServerName<'static>,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// One handshake (and optionally one request/response + server close_notify).
fn one(
    world: &World,
    server_cfg: &Arc<ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
    exchange: bool,
) -> Result<(Times, Option<HandshakeKind>)> {
    let mut times = Times::default();
    let mut buf = Vec::with_capacity(8192);
    let t = Instant::now();
    let mut client = ClientConnection::new(client_cfg.clone(), world.name.clone())?;
    times.client_ns += elapsed_ns(t);
    let t = Instant::now();
    let mut server = ServerConnection::new(server_cfg.clone())?;
    times.server_ns += elapsed_ns(t);
    pump(&mut client, &mut server, &mut buf, &mut times)?;
    if client.is_handshaking() || server.is_handshaking() {
        bail!("handshake did not complete");
    }
    if exchange {
        client.writer().write_all(&world.request)?;
        pump(&mut client, &mut server, &mut buf, &mut times)?;
        let t = Instant::now();
        let mut plain = [0u8; 512];
        let n = server.reader().read(&mut plain)?;
        server.writer().write_all(&world.response)?;
        server.send_close_notify();
        times.server_ns += elapsed_ns(t);
        if n != world.request.len() {
            bail!("server read {n} request bytes");
        }
        pump(&mut client, &mut server, &mut buf, &mut times)?;
        let mut got = Vec::new();
        let _ = client.reader().read_to_end(&mut got);
        if got != world.response {
            bail!("client got {} response bytes", got.len());
        }
    }
    Ok((times, client.handshake_kind()))
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub iterations: usize,
    pub server_median_us: f64,
    pub server_p90_us: f64,
    pub server_handshakes_per_core_s: f64,
    pub client_median_us: f64,
    pub kind: String,
    pub suite: String,
}

fn median_and_p90(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (at(0.5), at(0.9))
}

fn run_case(
    world: &World,
    name: &str,
    server_cfg: &Arc<ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
    exchange: bool,
    expect_resumed: bool,
    iterations: usize,
) -> Result<CaseResult> {
    let warmup = (iterations / 10).clamp(10, 200);
    let mut server = Vec::with_capacity(iterations);
    let mut client = Vec::with_capacity(iterations);
    let mut kind = None;
    let suite = negotiated_suite(world, server_cfg, client_cfg)?;
    for i in 0..warmup + iterations {
        let (t, k) = one(world, server_cfg, client_cfg, exchange)?;
        let resumed = k == Some(HandshakeKind::Resumed);
        // The very first handshake of a resuming client is necessarily full.
        if resumed != expect_resumed && i > 0 {
            bail!("{name}: expected resumed={expect_resumed}, got {k:?}");
        }
        if i >= warmup {
            server.push(t.server_ns);
            client.push(t.client_ns);
            kind = k;
        }
    }
    let (s50, s90) = median_and_p90(server);
    let (c50, _) = median_and_p90(client);
    Ok(CaseResult {
        case: name.to_string(),
        iterations,
        server_median_us: s50,
        server_p90_us: s90,
        server_handshakes_per_core_s: 1e6 / s50,
        client_median_us: c50,
        kind: format!("{kind:?}"),
        suite,
    })
}

fn negotiated_suite(
    world: &World,
    server_cfg: &Arc<ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
) -> Result<String> {
    let mut client = ClientConnection::new(client_cfg.clone(), world.name.clone())?;
    let mut server = ServerConnection::new(server_cfg.clone())?;
    pump(
        &mut client,
        &mut server,
        &mut Vec::new(),
        &mut Times::default(),
    )?;
    Ok(format!(
        "{:?}/{:?}",
        client
            .negotiated_cipher_suite()
            .map(|s| s.suite())
            .unwrap_or(rustls::CipherSuite::Unknown(0)),
        client
            .negotiated_key_exchange_group()
            .map(|g| g.name())
            .unwrap_or(rustls::NamedGroup::Unknown(0)),
    ))
}

/// Median cost of the handshake's public-key primitives, to decompose the totals.
#[derive(Debug, Serialize)]
pub struct Primitives {
    pub x25519_keygen_and_agree_us: f64,
    pub ecdsa_p256_sign_us: f64,
    pub ecdsa_p256_verify_us: f64,
}

fn median_us(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<u64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            elapsed_ns(t)
        })
        .collect();
    median_and_p90(std::mem::take(&mut v)).0
}

fn primitives(key_pkcs8: &[u8], iterations: usize) -> Result<Primitives> {
    use ::aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    use ::aws_lc_rs::rand::SystemRandom;
    use ::aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    };
    let rng = SystemRandom::new();
    let peer = EphemeralPrivateKey::generate(&X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .map_err(|_| anyhow::anyhow!("x25519 keygen"))?;
    let x25519 = median_us(iterations, || {
        let k = EphemeralPrivateKey::generate(&X25519, &rng).expect("x25519 keygen");
        let _ = std::hint::black_box(k.compute_public_key());
        let _ = agreement::agree_ephemeral(
            k,
            UnparsedPublicKey::new(&X25519, peer.as_ref()),
            (),
            |secret| {
                std::hint::black_box(secret);
                Ok(())
            },
        );
    });
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key_pkcs8)
        .map_err(|e| anyhow::anyhow!("ecdsa key: {e}"))?;
    let msg = [0x20u8; 130];
    let sig = key
        .sign(&rng, &msg)
        .map_err(|_| anyhow::anyhow!("ecdsa sign"))?;
    let sign = median_us(iterations, || {
        let _ = std::hint::black_box(key.sign(&rng, &msg));
    });
    let public = ::aws_lc_rs::signature::UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let verify = median_us(iterations, || {
        let _ = std::hint::black_box(public.verify(&msg, sig.as_ref()));
    });
    Ok(Primitives {
        x25519_keygen_and_agree_us: x25519,
        ecdsa_p256_sign_us: sign,
        ecdsa_p256_verify_us: verify,
    })
}

/// Entry point of `stsload ceiling`.
pub fn ceiling(iterations: usize, json: bool) -> Result<()> {
    let iterations = iterations.max(10);
    let now = OffsetDateTime::now_utc();
    let ca = new_ca(now)?;
    let domain = tenant_domain(1);
    let host = policy_host(&domain);
    let leaf = issue_leaf(&ca, &host, now)?;
    let chain = vec![
        CertificateDer::from(leaf.cert_der.clone()),
        CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).context("CA PEM")?,
    ];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).context("leaf key PEM")?;
    let pkcs8 = key.secret_der().to_vec();

    // The server gets rustls' full default provider (it would list X25519MLKEM768
    // first); the client only offers X25519, which is what gets negotiated.
    let server_with = |tickets: usize| -> Result<Arc<ServerConfig>> {
        let mut server =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Stateless tickets, as a multi-edge deployment would use (nginx here does too).
        server.ticketer = aws_lc_rs::Ticketer::new()?;
        server.send_tls13_tickets = tickets;
        Ok(Arc::new(server))
    };
    let server = server_with(2)?;
    let server_no_tickets = server_with(0)?;

    let body = bench_policy_body(&domain);
    let world = World {
        name: ServerName::try_from(host.clone())?,
        request: format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes(),
        response: format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    };

    let hashes = Arc::new(HashMap::from([(host.clone(), cert_sha256(&leaf.cert_der))]));
    let cfg = |suite: Suite, verify: bool, resume: bool| -> Result<Arc<ClientConfig>> {
        let provider = x25519_provider(false, suite);
        let v = Arc::new(HashVerifier::new(hashes.clone(), verify, &provider));
        Ok(Arc::new(client_config(
            v,
            provider,
            false,
            resume.then_some(16),
        )?))
    };
    let full = cfg(Suite::Aes256, false, false)?;
    let n = iterations;
    let results = vec![
        run_case(
            &world,
            "full (AES-256/SHA-384, 2 tickets)",
            &server,
            &full,
            false,
            false,
            n,
        )?,
        run_case(
            &world,
            "full, AES-128/SHA-256 first",
            &server,
            &cfg(Suite::Aes128, false, false)?,
            false,
            false,
            n,
        )?,
        run_case(
            &world,
            "full, ChaCha20/SHA-256 first",
            &server,
            &cfg(Suite::Chacha20, false, false)?,
            false,
            false,
            n,
        )?,
        run_case(
            &world,
            "full, server sends no tickets",
            &server_no_tickets,
            &full,
            false,
            false,
            n,
        )?,
        run_case(
            &world,
            "full, client verifies signature",
            &server,
            &cfg(Suite::Aes256, true, false)?,
            false,
            false,
            n,
        )?,
        run_case(
            &world,
            "resumed (AES-256/SHA-384)",
            &server,
            &cfg(Suite::Aes256, false, true)?,
            false,
            true,
            n,
        )?,
        run_case(
            &world,
            "resumed, AES-128/SHA-256 first",
            &server,
            &cfg(Suite::Aes128, false, true)?,
            false,
            true,
            n,
        )?,
        run_case(
            &world,
            "full + request/response + close",
            &server,
            &full,
            true,
            false,
            n,
        )?,
        run_case(
            &world,
            "resumed + request/response + close",
            &server,
            &cfg(Suite::Aes256, false, true)?,
            true,
            true,
            n,
        )?,
    ];
    let prims = primitives(&pkcs8, n)?;

    if json {
        println!(
            "{}",
            serde_json::json!({ "results": results, "primitives": prims })
        );
    } else {
        println!(
            "stsload ceiling: in-memory rustls 0.23 + aws-lc-rs, ECDSA P-256 leaf+CA chain, X25519"
        );
        println!(
            "  {iterations} iterations per case; medians of per-handshake time inside rustls calls"
        );
        println!(
            "  {:<38} {:>9} {:>8} {:>11} {:>9}  suite/group",
            "case", "server µs", "p90 µs", "server hs/s", "client µs"
        );
        for r in &results {
            println!(
                "  {:<38} {:>9.1} {:>8.1} {:>11.0} {:>9.1}  {}",
                r.case,
                r.server_median_us,
                r.server_p90_us,
                r.server_handshakes_per_core_s,
                r.client_median_us,
                r.suite
            );
        }
        println!(
            "  primitives (median µs): X25519 keygen+agree {:.1}, ECDSA P-256 sign {:.1}, verify {:.1}",
            prims.x25519_keygen_and_agree_us, prims.ecdsa_p256_sign_us, prims.ecdsa_p256_verify_us
        );
    }
    Ok(())
}
