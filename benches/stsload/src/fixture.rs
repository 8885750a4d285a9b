//! `stsload fixture`: writes a complete, self-contained benchmark world into one
//! directory — a local CA, one ECDSA P-256 leaf per tenant, the tenant files and
//! stsedge.toml exactly as SPEC.md §2 defines them, an equivalent nginx.conf, and
//! the manifest the loader checks certificates against.
//!
//! Key generation and signing dominate, so tenants are striped over one std thread
//! per core; the single-threaded tail (manifest, nginx.conf) is plain string building.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::policy::{POLICY_PATH, bench_mx, bench_policy_body, hex, policy_host, tenant_domain};

/// Everything `stsload fixture` needs to know.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    pub tenants: u32,
    pub out: PathBuf,
    pub https_port: u16,
    pub admin_port: u16,
    pub nginx_port: u16,
    pub threads: usize,
    pub force: bool,
}

/// A local CA that signs every tenant leaf. Kept in memory for the whole run.
pub struct LocalCa {
    pub issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates the CA: long-lived, path length 0, only allowed to sign certificates.
pub fn new_ca(now: OffsetDateTime) -> Result<LocalCa> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "stsload benchmark CA");
    dn.push(DnType::OrganizationName, "stsedge bench");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok(LocalCa {
        cert_pem: cert.pem(),
        key_pem,
        issuer: Issuer::new(params, key),
    })
}

/// One tenant leaf: what gets written to disk and what the manifest records.
pub struct Leaf {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// PKCS#8 PEM ("BEGIN PRIVATE KEY").
    pub key_pem: String,
}

/// Issues a leaf shaped like a real ACME certificate (90 days, serverAuth only) so a
/// server that checks validity, EKU or SAN sees nothing unusual.
pub fn issue_leaf(ca: &LocalCa, host: &str, now: OffsetDateTime) -> Result<Leaf> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(90);
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok(Leaf {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// SHA-256 of a DER certificate: the identity the loader's verifier compares.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The tenant file, exactly the shape SPEC.md §2 documents (paths relative to DIR).
pub fn tenant_toml(domain: &str) -> String {
    let [mx1, mx2] = bench_mx(domain);
    let host = policy_host(domain);
    format!(
        "mode = \"testing\"\nmax_age = 604800\nmx = [\"{mx1}\", \"{mx2}\"]\n\
         cert = \"certs/{host}/fullchain.pem\"\nkey = \"certs/{host}/privkey.pem\"\n"
    )
}

/// stsedge.toml: only the keys the bench needs (the server rejects unknown keys).
pub fn stsedge_toml(https_port: u16, admin_port: u16) -> String {
    format!(
        "tenants_dir = \"tenants\"\nstate_dir = \"state\"\n\n[https]\nlisten = [\"127.0.0.1:{https_port}\"]\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
    )
}

/// Quotes `text` as an nginx double-quoted string. nginx's config lexer turns `\r`,
/// `\n`, `\t`, `\"` and `\\` back into bytes; `$` would start a variable in `return`
/// (a complex value) and has no escape, so it is refused rather than mangled.
pub fn nginx_quote(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len() + 16);
    out.push('"');
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => bail!("nginx `return` text cannot contain `$`: {text:?}"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// The nginx equivalent of the stsedge config: one `server` per tenant with the same
/// certificate and a fixed `return` of the same bytes. Everything nginx writes (pid,
/// logs, temp files) stays inside `dir`, so it runs as `nginx -p DIR -c DIR/nginx.conf
/// -e DIR/logs/error.log` without touching /etc or /var (`-e` because nginx opens its
/// compiled-in error log before it has read the config).
pub fn nginx_conf(dir: &Path, port: u16, domains: &[String]) -> Result<String> {
    let d = dir.display();
    let mut conf = String::with_capacity(512 + domains.len() * 480);
    writeln!(
        conf,
        "# Generated by `stsload fixture`: {n} tenants, the nginx side of the A/B benchmark.
# Run: nginx -p {d} -c {d}/nginx.conf -e {d}/logs/error.log
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;

events {{
    # Below the container's hard RLIMIT_NOFILE (worker_rlimit_nofile cannot raise it
    # here); the benchmark needs a few hundred connections at most.
    worker_connections 8192;
}}

http {{
    access_log off;
    server_tokens off;
    # Content-Type must stay exactly text/plain (no '; charset=' appended).
    charset off;
    client_body_temp_path {d}/nginx-tmp/client_body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    # One name per tenant: the default hash limits are far too small. A 64-byte
    # bucket holds a single 29-character name, so use 128; and a max_size above
    # 10000 makes nginx search only its last 1000 sizes (fast start-up at 100k).
    server_names_hash_max_size {hash};
    server_names_hash_bucket_size 128;
    # The loader's keepalive mode issues requests back to back on one connection;
    # the default keepalive_requests (1000) would close it mid-run.
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    ssl_session_cache shared:stsload:64m;
    ssl_session_timeout 1h;
",
        n = domains.len(),
        hash = (domains.len() * 4).next_power_of_two().max(16384),
    )?;
    for domain in domains {
        let host = policy_host(domain);
        let body = nginx_quote(&bench_policy_body(domain))?;
        writeln!(
            conf,
            "    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host};
        ssl_certificate {d}/certs/{host}/fullchain.pem;
        ssl_certificate_key {d}/certs/{host}/privkey.pem;
        location = {POLICY_PATH} {{
            default_type text/plain;
            return 200 {body};
        }}
    }}"
        )?;
    }
    conf.push_str("}\n");
    Ok(conf)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    // Private keys are 0600 as an operator would keep them; both servers read as root.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Writes one tenant's certificate directory and tenant file; returns its leaf hash.
fn write_tenant(dir: &Path, ca: &LocalCa, domain: &str, now: OffsetDateTime) -> Result<[u8; 32]> {
    let host = policy_host(domain);
    let leaf = issue_leaf(ca, &host, now)?;
    let cert_dir = dir.join("certs").join(&host);
    fs::create_dir(&cert_dir).with_context(|| format!("creating {}", cert_dir.display()))?;
    let mut chain = leaf.cert_pem;
    chain.push_str(&ca.cert_pem);
    write_file(&cert_dir.join("fullchain.pem"), &chain)?;
    write_private(&cert_dir.join("privkey.pem"), &leaf.key_pem)?;
    write_file(
        &dir.join("tenants").join(format!("{domain}.toml")),
        &tenant_toml(domain),
    )?;
    Ok(cert_sha256(&leaf.cert_der))
}

/// Prepares `out`: refuses to mix with an earlier fixture unless `force`, in which case
/// the old tenants and certificates are removed first (a stale tenant file would
/// silently change what the server serves).
fn prepare_dir(opts: &FixtureOptions) -> Result<PathBuf> {
    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let dir = fs::canonicalize(&opts.out)?;
    let existing = ["manifest.tsv", "tenants", "certs"]
        .iter()
        .any(|p| dir.join(p).exists());
    if existing {
        if !opts.force {
            bail!(
                "{} already holds a fixture; pass --force to replace it",
                dir.display()
            );
        }
        for sub in ["tenants", "certs", "state"] {
            let p = dir.join(sub);
            if p.exists() {
                fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    for sub in ["tenants", "certs", "state", "logs", "nginx-tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(dir)
}

/// Entry point of `stsload fixture`.
pub fn generate(opts: &FixtureOptions) -> Result<()> {
    if opts.tenants == 0 || opts.tenants > 999_999 {
        bail!("--tenants must be 1..=999999 (names are zero-padded to six digits)");
    }
    let started = Instant::now();
    let dir = prepare_dir(opts)?;
    let now = OffsetDateTime::now_utc();
    let ca = new_ca(now)?;
    write_file(&dir.join("ca.pem"), &ca.cert_pem)?;
    write_private(&dir.join("ca-key.pem"), &ca.key_pem)?;

    let threads = opts.threads.max(1);
    let n = opts.tenants;
    // Stripe indices over threads; each returns (index, hash) and the results are
    // sorted afterwards so the manifest and nginx.conf are in tenant order.
    let mut hashes: Vec<(u32, [u8; 32])> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (ca, dir) = (&ca, &dir);
                s.spawn(move || -> Result<Vec<(u32, [u8; 32])>> {
                    let mut out = Vec::with_capacity(n as usize / threads + 1);
                    let mut i = 1 + t as u32;
                    while i <= n {
                        out.push((i, write_tenant(dir, ca, &tenant_domain(i), now)?));
                        i += threads as u32;
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n as usize);
        for h in handles {
            all.extend(h.join().expect("fixture worker panicked")?);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    hashes.sort_unstable_by_key(|(i, _)| *i);
    let certs_done = started.elapsed();

    let domains: Vec<String> = hashes.iter().map(|(i, _)| tenant_domain(*i)).collect();
    let mut manifest = String::with_capacity(domains.len() * 96);
    for ((_, hash), domain) in hashes.iter().zip(&domains) {
        writeln!(manifest, "{domain}\t{}", hex(hash))?;
    }
    write_file(&dir.join("manifest.tsv"), &manifest)?;
    write_file(
        &dir.join("stsedge.toml"),
        &stsedge_toml(opts.https_port, opts.admin_port),
    )?;
    write_file(
        &dir.join("nginx.conf"),
        &nginx_conf(&dir, opts.nginx_port, &domains)?,
    )?;
    eprintln!(
        "fixture: {n} tenants in {} ({threads} threads; certificates+tenant files {:.2} s, total {:.2} s)\n  \
         stsedge: {}/stsedge.toml (https 127.0.0.1:{}, admin 127.0.0.1:{})\n  \
         nginx:   nginx -p {d} -c {d}/nginx.conf -e {d}/logs/error.log (https 127.0.0.1:{})",
        dir.display(),
        certs_done.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        dir.display(),
        opts.https_port,
        opts.admin_port,
        opts.nginx_port,
        d = dir.display(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_quote_escapes_crlf() {
        assert_eq!(nginx_quote("a\r\nb\"c\\").unwrap(), "\"a\\r\\nb\\\"c\\\\\"");
        assert!(nginx_quote("$host").is_err());
    }

    #[test]
    fn tenant_file_matches_spec() {
        assert_eq!(
            tenant_toml("t000001.bench.example"),
            "mode = \"testing\"\nmax_age = 604800\n\
             mx = [\"mail.t000001.bench.example\", \"*.mx.t000001.bench.example\"]\n\
             cert = \"certs/mta-sts.t000001.bench.example/fullchain.pem\"\n\
             key = \"certs/mta-sts.t000001.bench.example/privkey.pem\"\n"
        );
    }

    #[test]
    fn leaf_is_signed_and_hashed() {
        let now = OffsetDateTime::now_utc();
        let ca = new_ca(now).unwrap();
        let leaf = issue_leaf(&ca, "mta-sts.t000001.bench.example", now).unwrap();
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(cert_sha256(&leaf.cert_der).len(), 32);
    }
}
