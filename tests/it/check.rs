//! `stsedge check`: every problem with its file and line, exit status, JSON.

use crate::common::Fixture;

#[test]
fn a_good_setup_passes() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let out = f.stsedge(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 tenants, 1 servable") && stdout.contains("0 problems"),
        "{stdout}"
    );
}

#[test]
fn every_problem_is_listed_with_file_line_and_fix() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let cert = f.issue_cert("example.org");
    std::fs::write(
        f.tenant_path("example.org"),
        format!("mx = [\"mail.example.org\"]\nmax_age = 99999999\nmood = \"x\"\n{cert}"),
    )
    .unwrap();
    std::fs::write(
        f.tenant_path("example.net"),
        "mode = \"enforce\"\nmx = [\"*.*.example.net\"]\n",
    )
    .unwrap();
    std::fs::write(f.path().join("tenants/not_a_domain.toml"), "mx = []\n").unwrap();
    // A key that does not match its certificate.
    let host = "mta-sts.example.edu";
    let cert = f.issue_cert("example.edu");
    let (_, other_key) = f.ca.leaf(&[host]);
    std::fs::write(
        f.path().join("certs").join(host).join("privkey.pem"),
        other_key,
    )
    .unwrap();
    std::fs::write(
        f.tenant_path("example.edu"),
        format!("mx = [\"mail.example.edu\"]\n{cert}"),
    )
    .unwrap();

    let out = f.stsedge(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for expected in [
        "tenants/example.org.toml:3:1: unknown field `mood`",
        "tenants/example.net.toml:2:7: mx `*.*.example.net` is not a valid MX pattern",
        "tenants/not_a_domain.toml: the file name `not_a_domain` is not a valid domain name",
        "certs/mta-sts.example.edu/privkey.pem: this key does not belong to the certificate",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Fixing the unknown key reveals the range error: both are reported per file.
    std::fs::write(
        f.tenant_path("example.org"),
        format!(
            "mx = [\"mail.example.org\"]\nmax_age = 99999999\n{}",
            f.issue_cert("example.org")
        ),
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&f.stsedge(&["check"]).stdout).into_owned();
    assert!(stdout.contains("tenants/example.org.toml:2:11: max_age 99999999 is out of range; set it to a number of seconds from 1 to 31557600"), "{stdout}");

    let json = f.stsedge(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["tenants"], 2,
        "example.com and example.edu load; the others are invalid"
    );
    assert!(v["problems"].as_array().unwrap().len() >= 4);
}

#[test]
fn a_tenant_that_can_never_get_a_certificate_is_a_problem() {
    let f = Fixture::new();
    std::fs::write(
        f.tenant_path("example.com"),
        "mx = [\"mail.example.com\"]\n",
    )
    .unwrap();
    let out = f.stsedge(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("tenants/example.com.toml: no certificate"),
        "{stdout}"
    );
}

#[test]
fn a_bad_server_config_names_the_file_and_line() {
    let f = Fixture::new();
    std::fs::write(
        f.config_path(),
        "tenants_dir = \"tenants\"\n[https]\nlisten = [\"443\"]\n",
    )
    .unwrap();
    let out = f.stsedge(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("stsedge.toml:3:11: `443` is not an address and port"),
        "{stderr}"
    );
}
