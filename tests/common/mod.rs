//! Test harness: a test CA (rcgen), a fixture directory with config and tenants, the
//! real `stsedge` binary on 127.0.0.1 port 0, and a real HTTPS client.

#![allow(dead_code)]

pub mod client;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use client::{Request, fetch};

/// How long anything in a test may take before it counts as broken.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "stsedge test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names`: (chain PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }

    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        Arc::new(roots)
    }
}

/// Writes `contents` the way careful editors do: a temporary file, then a rename.
pub fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A config directory: `stsedge.toml`, `tenants/`, `certs/`, `state/`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_config("")
    }

    /// `extra` is appended to a config that listens on port 0.
    pub fn with_config(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture {
            dir,
            ca: TestCa::new(),
        };
        std::fs::create_dir_all(f.path().join("tenants")).unwrap();
        std::fs::write(
            f.config_path(),
            format!(
                "tenants_dir = \"tenants\"\nstate_dir = \"state\"\n{extra}\n[https]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n"
            ),
        )
        .unwrap();
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("stsedge.toml")
    }

    pub fn tenant_path(&self, domain: &str) -> PathBuf {
        self.path().join("tenants").join(format!("{domain}.toml"))
    }

    /// Writes a certificate for `mta-sts.DOMAIN` under `certs/mta-sts.DOMAIN/` and
    /// returns the `cert`/`key` lines for the tenant file.
    pub fn issue_cert(&self, domain: &str) -> String {
        let host = format!("mta-sts.{domain}");
        let (chain, key) = self.ca.leaf(&[&host]);
        let dir = self.path().join("certs").join(&host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fullchain.pem"), chain).unwrap();
        std::fs::write(dir.join("privkey.pem"), key).unwrap();
        format!("cert = \"certs/{host}/fullchain.pem\"\nkey = \"certs/{host}/privkey.pem\"\n")
    }

    /// A tenant with its own certificate; `policy` holds the mode/max_age/mx lines.
    pub fn add_tenant(&self, domain: &str, policy: &str) {
        let cert = self.issue_cert(domain);
        write_atomic(&self.tenant_path(domain), &format!("{policy}\n{cert}"));
    }

    pub fn start(&self) -> Server {
        Server::start(&self.config_path())
    }

    pub fn stsedge(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_stsedge"))
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .output()
            .unwrap()
    }
}

/// The policy text stsedge must serve for these lines, rendered independently of the
/// crate: CRLF, version first, mx in file order.
pub fn policy_text(mode: &str, mx: &[&str], max_age: u32) -> String {
    let mut s = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        s.push_str(&format!("mx: {m}\r\n"));
    }
    s.push_str(&format!("max_age: {max_age}\r\n"));
    s
}

/// A running `stsedge serve`, killed on drop.
pub struct Server {
    child: Child,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    /// The first DNS address (UDP and TCP), when `[dns]` is configured.
    pub dns: Option<SocketAddr>,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        let mut server = Self::spawn(config);
        server.wait_for_ready();
        server
    }

    /// Starts without waiting for the `ready;` line (for tests of the start-up itself).
    pub fn start_quiet(config: &Path) -> Server {
        let mut server = Self::spawn(config);
        let listening = server.wait_log("listening");
        server.take_addresses(&listening);
        server
    }

    /// The `https=` and `admin=` addresses of a `listening` or `ready;` line.
    fn take_addresses(&mut self, line: &str) {
        self.https = field(line, "https")
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        self.admin = field(line, "admin").parse().unwrap();
    }

    fn wait_for_ready(&mut self) {
        let ready = self.wait_log("ready;");
        self.take_addresses(&ready);
        if let Some(dns) = ready.contains(" dns=").then(|| field(&ready, "dns")) {
            self.dns = Some(dns.split(',').next().unwrap().parse().unwrap());
        }
    }

    fn spawn(config: &Path) -> Server {
        Self::spawn_in(config.parent().unwrap(), config)
    }

    /// Starts with `--config` relative to `cwd` when `config` is relative.
    pub fn start_in(cwd: &Path, config: &Path) -> Server {
        let mut server = Self::spawn_in(cwd, config);
        server.wait_for_ready();
        server
    }

    fn spawn_in(cwd: &Path, config: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stsedge"))
            .current_dir(cwd)
            .args(["serve", "--config"])
            .arg(config)
            .env("STSEDGE_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*sink;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        Server {
            child,
            https: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            dns: None,
            log,
        }
    }

    /// Waits for a log line containing `needle` (an event, not a sleep).
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_after(0, needle)
    }

    /// Like `wait_log`, among lines after the first `skip`.
    pub fn wait_log_after(&self, skip: usize, needle: &str) -> String {
        let (lines, cv) = &*self.log;
        let deadline = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().skip(skip).find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no log line with {needle:?}; log:\n{}",
                guard.join("\n")
            );
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn log_len(&self) -> usize {
        self.log.0.lock().unwrap().len()
    }

    pub fn log_text(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        client::plain_get(self.admin, path).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a tracing line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"))
        + key.len()
        + 2;
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
}

/// Polls `check` until it returns `Some`, or fails the test at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the server's end of the TCP connection `server` ↔ `client` has read
/// everything the client sent (its receive queue in /proc/net/tcp is empty): the
/// observable event "the server has the bytes", without guessing with a sleep.
pub fn server_has_read(server: SocketAddr, client: SocketAddr) -> bool {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("the harness binds 127.0.0.1 only"),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 4 && f[1] == local && f[2] == remote && f[4].ends_with(":00000000")
    })
}
