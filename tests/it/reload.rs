//! Hot reload: file events and SIGHUP, bad edits, deletions, certificate swaps, and a
//! reload storm under concurrent load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::client::{client_config, refused};
use crate::common::{Fixture, Request, eventually, fetch, policy_text, write_atomic};

const SNI: &str = "mta-sts.example.com";

async fn policy_id(server: &crate::common::Server) -> String {
    let (_, body) = server.admin_get("/api/tenants/example.com").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn body_now(f: &Fixture, server: &crate::common::Server) -> Option<String> {
    fetch(server.https, f.ca.roots(), Request::get(SNI))
        .await
        .ok()
        .map(|r| r.text())
}

#[tokio::test]
async fn an_edited_tenant_serves_the_new_policy_and_id() {
    let f = Fixture::new();
    let cert = f.issue_cert("example.com");
    write_atomic(
        &f.tenant_path("example.com"),
        &format!("mx = [\"mail.example.com\"]\n{cert}"),
    );
    let server = f.start();
    let before = policy_id(&server).await;

    // Rename-replace, as editors do.
    write_atomic(
        &f.tenant_path("example.com"),
        &format!("mode = \"enforce\"\nmx = [\"mail.example.com\"]\n{cert}"),
    );
    let want = policy_text("enforce", &["mail.example.com"], 604800);
    eventually("the enforce policy", || async {
        (body_now(&f, &server).await? == want).then_some(())
    })
    .await;
    let after = policy_id(&server).await;
    assert_ne!(before, after, "a new policy has a new id");

    // In-place write, as `echo >` does.
    std::fs::write(
        f.tenant_path("example.com"),
        format!("mode = \"enforce\"\nmax_age = 3600\nmx = [\"mail.example.com\"]\n{cert}"),
    )
    .unwrap();
    let want = policy_text("enforce", &["mail.example.com"], 3600);
    eventually("the max_age change", || async {
        (body_now(&f, &server).await? == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_last_good_policy_and_says_why() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    f.add_tenant("example.org", "mx = [\"mail.example.org\"]");
    let server = f.start();
    let good = policy_text("testing", &["mail.example.com"], 604800);
    assert_eq!(body_now(&f, &server).await.unwrap(), good);

    write_atomic(
        &f.tenant_path("example.com"),
        "mx = [\"mail.example.com\"]\nmax_age = 0\n",
    );
    let problems = eventually("the problem to be reported", || async {
        let (_, body) = server.admin_get("/api/problems").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (!v.as_array().unwrap().is_empty()).then_some(v)
    })
    .await;
    assert_eq!(problems[0]["line"], 2);
    assert!(
        problems[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("tenants/example.com.toml")
    );
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("max_age 0 is out of range")
    );
    let logged = server.wait_log("max_age 0 is out of range");
    assert!(logged.contains("example.com.toml:2"), "{logged}");

    assert_eq!(
        body_now(&f, &server).await.unwrap(),
        good,
        "last good version still served"
    );
    let other = fetch(
        server.https,
        f.ca.roots(),
        Request::get("mta-sts.example.org"),
    )
    .await
    .unwrap();
    assert_eq!(other.status, 200, "other tenants unaffected");
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(metrics.contains("stsedge_config_problems 1"), "{metrics}");

    // Fixing the file clears the problem.
    write_atomic(
        &f.tenant_path("example.com"),
        &format!(
            "mx = [\"mail.example.com\"]\n{}",
            f.issue_cert("example.com")
        ),
    );
    eventually("the problem to clear", || async {
        let (_, body) = server.admin_get("/api/problems").await;
        (body.trim() == "[]").then_some(())
    })
    .await;
}

#[tokio::test]
async fn tenants_come_and_go_with_their_files() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let config = client_config(f.ca.roots(), false, false);

    f.add_tenant("example.org", "mx = [\"mail.example.org\"]");
    eventually("the new tenant", || async {
        let r = fetch(
            server.https,
            f.ca.roots(),
            Request::get("mta-sts.example.org"),
        )
        .await
        .ok()?;
        (r.status == 200).then_some(())
    })
    .await;

    std::fs::remove_file(f.tenant_path("example.com")).unwrap();
    eventually("the deleted tenant to be refused", || async {
        refused(server.https, SNI, config.clone())
            .await
            .then_some(())
    })
    .await;
    let (status, _) = server.admin_get("/api/tenants/example.com").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_certbot_style_symlink_swap_rotates_the_certificate() {
    use std::os::unix::fs::symlink;
    let f = Fixture::new();
    let archive = f.path().join("archive");
    let live = f.path().join("live").join(SNI);
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let mut leaves = Vec::new();
    for n in 1..=2 {
        let (chain, key) = f.ca.leaf(&[SNI]);
        std::fs::write(archive.join(format!("fullchain{n}.pem")), &chain).unwrap();
        std::fs::write(archive.join(format!("privkey{n}.pem")), key).unwrap();
        use rustls_pki_types::pem::PemObject;
        leaves.push(
            rustls_pki_types::CertificateDer::from_pem_slice(chain.as_bytes())
                .unwrap()
                .to_vec(),
        );
    }
    let link = |n: u32| {
        for (name, target) in [
            ("fullchain.pem", format!("fullchain{n}.pem")),
            ("privkey.pem", format!("privkey{n}.pem")),
        ] {
            let tmp = live.join(format!(".{name}.new"));
            symlink(format!("../../archive/{target}"), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(name)).unwrap();
        }
    };
    link(1);
    write_atomic(
        &f.tenant_path("example.com"),
        &format!(
            "mx = [\"mail.example.com\"]\ncert = \"live/{SNI}/fullchain.pem\"\nkey = \"live/{SNI}/privkey.pem\"\n"
        ),
    );
    let server = f.start();
    let first = fetch(server.https, f.ca.roots(), Request::get(SNI))
        .await
        .unwrap();
    assert_eq!(first.leaf, leaves[0]);

    link(2);
    eventually("the renewed certificate", || async {
        let r = fetch(server.https, f.ca.roots(), Request::get(SNI))
            .await
            .ok()?;
        (r.leaf == leaves[1]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_broken_certificate_update_keeps_the_old_certificate() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let before = fetch(server.https, f.ca.roots(), Request::get(SNI))
        .await
        .unwrap();
    // A new certificate with the old key: mismatched pair.
    let (chain, _) = f.ca.leaf(&[SNI]);
    let skip = server.log_len();
    write_atomic(
        &f.path().join("certs").join(SNI).join("fullchain.pem"),
        &chain,
    );
    let line = server.wait_log_after(skip, "does not belong to the certificate");
    assert!(line.contains("privkey.pem"), "{line}");
    let after = fetch(server.https, f.ca.roots(), Request::get(SNI))
        .await
        .unwrap();
    assert_eq!(
        after.leaf, before.leaf,
        "the last good certificate keeps serving"
    );
}

#[tokio::test]
async fn sighup_rereads_the_server_config() {
    let f = Fixture::new();
    f.add_tenant("example.com", "mx = [\"mail.example.com\"]");
    let server = f.start();
    let skip = server.log_len();
    server.signal(libc::SIGHUP);
    // Nothing changed on disk: the reload says so, and publishes nothing new.
    let line = server.wait_log_after(skip, "trigger=\"sighup\"");
    assert!(line.contains("nothing changed"), "{line}");
    // A broken server config is rejected and the running one kept.
    std::fs::write(f.config_path(), "tenants_dir = 5\n").unwrap();
    let skip = server.log_len();
    server.signal(libc::SIGHUP);
    server.wait_log_after(skip, "server configuration rejected");
    let r = fetch(server.https, f.ca.roots(), Request::get(SNI))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

/// Hundreds of policy swaps while clients fetch: every answer is 200 and exactly one
/// complete version of the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_under_load_never_fails_or_mixes_versions() {
    const SWAPS: u32 = 300;
    const CLIENTS: usize = 4;
    let f = Fixture::new();
    let cert = f.issue_cert("example.com");
    let tenant = |max_age: u32| {
        format!(
            "mode = \"enforce\"\nmax_age = {max_age}\nmx = [\"mail.example.com\", \"*.mx.example.net\"]\n{cert}"
        )
    };
    let version = |max_age: u32| {
        policy_text(
            "enforce",
            &["mail.example.com", "*.mx.example.net"],
            max_age,
        )
    };
    write_atomic(&f.tenant_path("example.com"), &tenant(1000));
    let server = f.start();
    let valid: Arc<std::collections::HashSet<String>> =
        Arc::new((1000..=1000 + SWAPS).map(version).collect());

    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, fetched, valid, roots, addr) = (
            stop.clone(),
            fetched.clone(),
            valid.clone(),
            f.ca.roots(),
            server.https,
        );
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match fetch(
                    addr,
                    roots.clone(),
                    Request {
                        h2: c % 2 == 1,
                        ..Request::get(SNI)
                    },
                )
                .await
                {
                    Ok(r) if r.status == 200 && valid.contains(&r.text()) => {}
                    Ok(r) => failures.push(format!("status {} body {:?}", r.status, r.text())),
                    Err(e) => failures.push(e.to_string()),
                }
                fetched.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for n in 1..=SWAPS {
        write_atomic(&f.tenant_path("example.com"), &tenant(1000 + n));
        let want = version(1000 + n);
        eventually("the swap to be served", || async {
            (body_now(&f, &server).await? == want).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        fetched.load(Ordering::Relaxed) >= SWAPS as usize,
        "clients fetched during the storm"
    );
    let (_, metrics) = server.admin_get("/metrics").await;
    let applied: u64 = metrics
        .lines()
        .find(|l| l.starts_with("stsedge_reloads_total{result=\"applied\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap();
    assert!(applied >= u64::from(SWAPS), "{applied} swaps published");
}

/// Regression: with a relative `--config`, the tenants directory was relative while
/// file events carry absolute paths, so every edit went unseen until SIGHUP.
#[tokio::test]
async fn edits_are_seen_when_the_config_path_is_relative() {
    let f = Fixture::new();
    let cert = f.issue_cert("example.com");
    write_atomic(
        &f.tenant_path("example.com"),
        &format!("mx = [\"mail.example.com\"]\n{cert}"),
    );
    // Several components, like `--config etc/stsedge.toml` run from a checkout.
    let (parent, name) = (f.path().parent().unwrap(), f.path().file_name().unwrap());
    let relative = std::path::Path::new(name).join("stsedge.toml");
    let server = crate::common::Server::start_in(parent, &relative);
    // After the watches are set and the catch-up rescan is done: only an event can
    // bring the edit in now.
    server.wait_log("watching for changes");
    write_atomic(
        &f.tenant_path("example.com"),
        &format!("mode = \"enforce\"\nmx = [\"mail.example.com\"]\n{cert}"),
    );
    let want = policy_text("enforce", &["mail.example.com"], 604800);
    eventually("the edit, without SIGHUP", || async {
        (body_now(&f, &server).await? == want).then_some(())
    })
    .await;
}

/// Regression: a tenants directory replaced by rename (a deploy) kept the watch on the
/// old directory, so later edits were missed; SIGHUP now renews the watches.
#[tokio::test]
async fn a_replaced_tenants_directory_is_watched_again_after_sighup() {
    let f = Fixture::new();
    let cert = f.issue_cert("example.com");
    let tenant = |mode: &str| format!("mode = \"{mode}\"\nmx = [\"mail.example.com\"]\n{cert}");
    write_atomic(&f.tenant_path("example.com"), &tenant("testing"));
    let server = f.start();
    server.wait_log("watching for changes");
    let staged = f.path().join("tenants.new");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("example.com.toml"), tenant("enforce")).unwrap();
    std::fs::rename(f.path().join("tenants"), f.path().join("tenants.old")).unwrap();
    std::fs::rename(&staged, f.path().join("tenants")).unwrap();
    server.signal(libc::SIGHUP);
    let want = policy_text("enforce", &["mail.example.com"], 604800);
    eventually("the deployed directory", || async {
        (body_now(&f, &server).await? == want).then_some(())
    })
    .await;
    // An edit in the new directory, without SIGHUP.
    write_atomic(&f.tenant_path("example.com"), &tenant("none"));
    let want = policy_text("none", &["mail.example.com"], 604800);
    eventually("the edit in the new directory", || async {
        (body_now(&f, &server).await? == want).then_some(())
    })
    .await;
}
