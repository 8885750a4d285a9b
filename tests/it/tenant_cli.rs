//! `stsedge tenant …` and `stsedge records`: files written atomically and picked up by
//! a running server; decommissioning per RFC 8461 §8.3, surviving a restart.

use std::sync::Arc;

use crate::common::client::{client_config, connect, refused};
use crate::common::{Fixture, Request, Server, eventually, fetch, policy_text};

const SNI: &str = "mta-sts.example.com";

/// A fixture whose tenants get development certificates, with a DNS zone for records.
fn dev_fixture() -> Fixture {
    let f = Fixture::new();
    std::fs::write(
        f.config_path(),
        "tenants_dir = \"tenants\"\nstate_dir = \"state\"\n[https]\nlisten = [\"127.0.0.1:0\"]\ndev_self_signed = true\n[admin]\nlisten = \"127.0.0.1:0\"\n[dns]\nzone = \"sts.example.net\"\nlisten = [\"127.0.0.1:0\"]\nipv4 = [\"192.0.2.10\"]\nnameservers = [\"ns1.sts.example.net\"]\n",
    )
    .unwrap();
    f
}

fn dev_roots(f: &Fixture) -> Arc<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(f.path().join("state/dev-ca/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn run(f: &Fixture, args: &[&str]) -> (bool, String, String) {
    let out = f.stsedge(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `stsedge tenant add DOMAIN --mx mail.DOMAIN EXTRA…`, which must succeed.
fn add(f: &Fixture, domain: &str, extra: &[&str]) {
    let mx = format!("mail.{domain}");
    let mut args = vec!["tenant", "add", domain, "--mx", &mx];
    args.extend_from_slice(extra);
    let (ok, out, err) = run(f, &args);
    assert!(ok, "tenant add {domain}: {out}{err}");
}

async fn served(f: &Fixture, server: &Server) -> Option<String> {
    fetch(server.https, dev_roots(f), Request::get(SNI))
        .await
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.text())
}

#[tokio::test]
async fn add_and_set_are_picked_up_by_the_running_server() {
    let f = dev_fixture();
    let server = f.start();
    let (ok, out, err) = run(
        &f,
        &[
            "tenant",
            "add",
            "Example.COM",
            "--mx",
            "mail.example.com",
            "--mx",
            "*.mx.example.net",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("_mta-sts.example.com.    CNAME  _mta-sts.example.com.sts.example.net."),
        "{out}"
    );
    let want = policy_text("testing", &["mail.example.com", "*.mx.example.net"], 604800);
    eventually("the added tenant", || async {
        (served(&f, &server).await? == want).then_some(())
    })
    .await;

    // Keep the operator's own lines through `set`.
    let path = f.tenant_path("example.com");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("# customer 4711\n{text}tlsrpt_rua = [\"mailto:tls@example.com\"]\n"),
    )
    .unwrap();
    let (ok, out, err) = run(
        &f,
        &[
            "tenant",
            "set",
            "example.com",
            "--mode",
            "enforce",
            "--max-age",
            "86400",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("# customer 4711") && text.contains("tlsrpt_rua"),
        "{text}"
    );
    let want = policy_text("enforce", &["mail.example.com", "*.mx.example.net"], 86400);
    eventually("the changed policy", || async {
        (served(&f, &server).await? == want).then_some(())
    })
    .await;
    let (_, api) = server.admin_get("/api/tenants/example.com").await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(
        api["id"], v["id"],
        "the CLI reports the id the server serves"
    );
}

#[test]
fn bad_input_is_refused_with_the_fix_and_writes_nothing() {
    let f = dev_fixture();
    let (ok, _, err) = run(
        &f,
        &["tenant", "add", "example.com", "--mx", "mx*.example.com"],
    );
    assert!(!ok);
    assert!(
        err.contains("--mx `mx*.example.com` is not a valid MX pattern"),
        "{err}"
    );
    let (ok, _, err) = run(
        &f,
        &[
            "tenant",
            "add",
            "example.com",
            "--mx",
            "mail.example.com",
            "--max-age",
            "0",
        ],
    );
    assert!(!ok);
    assert!(err.contains("max_age 0 is out of range"), "{err}");
    assert!(!f.tenant_path("example.com").exists());
    add(&f, "example.com", &[]);
    let (ok, _, err) = run(
        &f,
        &["tenant", "add", "example.com", "--mx", "mail.example.com"],
    );
    assert!(
        !ok && err.contains("already exists; change it with `stsedge tenant set example.com`"),
        "{err}"
    );
    let (ok, _, err) = run(&f, &["tenant", "set", "example.org", "--mode", "enforce"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let left: Vec<_> = std::fs::read_dir(f.path().join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "no temporary files left: {left:?}");
}

#[tokio::test]
async fn rm_serves_mode_none_until_the_old_max_age_passes_even_across_a_restart() {
    let f = dev_fixture();
    add(&f, "example.com", &["--max-age", "3600"]);
    let server = f.start();
    let before_id = {
        let (_, api) = server.admin_get("/api/tenants/example.com").await;
        serde_json::from_str::<serde_json::Value>(&api).unwrap()["id"].clone()
    };
    let (ok, out, err) = run(&f, &["tenant", "rm", "example.com"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("decommissioning; serving mode none"), "{out}");
    let none = policy_text("none", &["mail.example.com"], 3600);
    eventually("the mode none policy", || async {
        (served(&f, &server).await? == none).then_some(())
    })
    .await;
    let (_, api) = server.admin_get("/api/tenants/example.com").await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_ne!(api["id"], before_id, "a new id announces the change");
    assert_eq!(api["phase"], "decommissioning");
    drop(server);

    let server = f.start();
    assert_eq!(
        served(&f, &server).await.unwrap(),
        none,
        "state survives a restart"
    );
    let (ok, out, _) = run(&f, &["tenant", "show", "example.com"]);
    assert!(ok && out.contains("decommissioning until"), "{out}");
    assert!(out.contains("TXT record:  served"), "{out}");
}

#[tokio::test]
async fn decommissioning_ends_by_removing_the_tenant() {
    let f = dev_fixture();
    add(&f, "example.com", &["--max-age", "1"]);
    add(&f, "example.org", &[]);
    let server = f.start();
    assert!(run(&f, &["tenant", "rm", "example.com"]).0);
    let config = client_config(dev_roots(&f), false, false);
    eventually("the tenant to be removed", || async {
        refused(server.https, SNI, config.clone())
            .await
            .then_some(())
    })
    .await;
    server.wait_log("decommissioned");
    assert!(
        !f.tenant_path("example.com").exists(),
        "the tenant file is gone"
    );
    assert!(
        !f.path()
            .join("state/decommission/example.com.toml")
            .exists()
    );
    let other = fetch(
        server.https,
        dev_roots(&f),
        Request::get("mta-sts.example.org"),
    )
    .await
    .unwrap();
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn rm_now_removes_at_once_with_a_warning() {
    let f = dev_fixture();
    add(&f, "example.com", &[]);
    let server = f.start();
    let (ok, _, err) = run(&f, &["tenant", "rm", "example.com", "--now"]);
    assert!(ok);
    assert!(
        err.contains("warning: removing example.com at once"),
        "{err}"
    );
    assert!(!f.tenant_path("example.com").exists());
    let config = client_config(dev_roots(&f), false, false);
    eventually("the tenant to be gone", || async {
        connect(server.https, SNI, config.clone())
            .await
            .err()
            .map(|_| ())
    })
    .await;
}

#[test]
fn list_show_and_records_print_data_and_json() {
    let f = dev_fixture();
    add(&f, "example.com", &[]);
    add(&f, "example.org", &["--mode", "enforce"]);
    let (ok, out, _) = run(&f, &["tenant", "list", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let domains: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["example.com", "example.org"]);
    let (ok, out, _) = run(&f, &["tenant", "list"]);
    assert!(
        ok && out.contains("example.org") && out.contains("enforce") && out.contains("serving"),
        "{out}"
    );

    let (ok, out, _) = run(&f, &["tenant", "show", "example.com", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["policy"],
        policy_text("testing", &["mail.example.com"], 604800)
    );
    assert_eq!(v["certificate"]["origin"], "dev_self_signed");
    assert_eq!(v["records"].as_array().unwrap().len(), 3);

    let (ok, out, _) = run(&f, &["records", "example.com"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "_mta-sts.example.com.    CNAME  _mta-sts.example.com.sts.example.net."
    );
    assert_eq!(
        lines[1],
        "mta-sts.example.com.     CNAME  mta-sts.example.com.sts.example.net."
    );
    assert!(
        lines[2]
            .starts_with("_smtp._tls.example.com.  CNAME  _smtp._tls.example.com.sts.example.net.")
    );

    let plain = Fixture::new();
    let out = plain.stsedge(&["records", "example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("add a [dns] section"));
}

#[test]
fn a_tenant_without_a_certificate_says_why_its_txt_is_withheld() {
    let f = Fixture::new();
    add(&f, "example.com", &[]);
    let (ok, out, _) = run(&f, &["tenant", "show", "example.com"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("TXT record:  withheld, because no certificate"),
        "{out}"
    );
}
