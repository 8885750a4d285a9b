//! `stsedge tenant add|set|rm|list|show`: tenant files written atomically (a running
//! server picks them up through its watcher), and views computed from the files the
//! same way the server computes them.

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{CliError, records};
use crate::config::decommission::{Decommission, marker_path, render_marker};
use crate::config::write::{TenantEdit, write_atomic};
use crate::config::{ConfigError, DEFAULT_MAX_AGE, ServerConfig, TENANT_FILE_SUFFIX, parse_tenant};
use crate::domain::DomainName;
use crate::policy::{Mode, MxPattern};
use crate::reload::Sources;
use crate::snapshot::{Phase, Snapshot};
use crate::tls::{format_unix, unix_now};
use crate::view::TenantView;

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create tenants/DOMAIN.toml (mode testing and max_age 604800 unless given).
    Add {
        domain: String,
        /// An MX host name or `*.` pattern; repeat for each.
        #[arg(
            long = "mx",
            value_name = "PAT",
            required_unless_present = "mx_from_dns",
            conflicts_with = "mx_from_dns"
        )]
        mx: Vec<String>,
        /// Take the patterns from the domain's MX records: one provider wildcard when
        /// every MX shares it (`*.mail.protection.outlook.com`), else the hosts.
        #[arg(long)]
        mx_from_dns: bool,
        #[command(flatten)]
        net: super::NetArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's mode, mx patterns or max_age, keeping the rest of its file.
    Set {
        domain: String,
        /// Replaces the whole mx list; repeat for each pattern.
        #[arg(long = "mx", value_name = "PAT")]
        mx: Vec<String>,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long)]
        json: bool,
    },
    /// Decommission safely (RFC 8461 §8.3): serve `mode: none` until the previous
    /// max_age has passed, then remove; `--now` removes at once.
    Rm {
        domain: String,
        /// Delete now. Senders that cached the policy keep applying it until it expires.
        #[arg(long)]
        now: bool,
        #[arg(long)]
        json: bool,
    },
    /// List every tenant with its mode, id and state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The policy, id, state, certificate and DNS records of one tenant.
    Show {
        domain: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// Seconds, 1 ..= 31557600.
    #[arg(long, value_name = "SECS")]
    max_age: Option<u32>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("`{s}` is not a mode; use testing, enforce or none"))
}

pub fn run(config_path: &Path, command: TenantCommand) -> Result<ExitCode, CliError> {
    let config = ServerConfig::load(config_path).map_err(CliError::Config)?;
    match command {
        TenantCommand::Add {
            domain,
            mx,
            mx_from_dns,
            net,
            policy,
            json,
        } => {
            let mx = if mx_from_dns {
                mx_from_dns_records(&domain, &net)?
            } else {
                mx
            };
            add(&config, &domain, &mx, &policy, json)
        }
        TenantCommand::Set {
            domain,
            mx,
            policy,
            json,
        } => set(&config, &domain, &mx, &policy, json),
        TenantCommand::Rm { domain, now, json } => rm(&config, &domain, now, json),
        TenantCommand::List { json } => list(config, json),
        TenantCommand::Show { domain, json } => show(config, &domain, json),
    }
}

fn domain(input: &str) -> Result<DomainName, CliError> {
    DomainName::parse(input).map_err(|e| CliError::Usage(format!("`{input}` is not a valid domain name ({e}); give the customer's domain, like example.com")))
}

fn tenant_file(config: &ServerConfig, domain: &DomainName) -> PathBuf {
    config
        .tenants_dir
        .join(format!("{domain}{TENANT_FILE_SUFFIX}"))
}

fn patterns(mx: &[String]) -> Result<Vec<MxPattern>, CliError> {
    mx.iter()
        .map(|m| {
            MxPattern::parse(m).map_err(|e| {
                CliError::Usage(format!("--mx `{m}` is not a valid MX pattern ({e}); give a host name like mail.example.com or *.mx.example.net"))
            })
        })
        .collect()
}

/// The text of a tenant file that must exist; `hint` completes "… does not exist; ".
fn read_existing(path: &Path, hint: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            CliError::Usage(format!("{} does not exist; {hint}", path.display()))
        }
        _ => CliError::Config(vec![ConfigError::io(path, &e)]),
    })
}

/// Validates the new text exactly as the server will, then writes it atomically.
fn commit(config: &ServerConfig, domain: &DomainName, text: &str) -> Result<PathBuf, CliError> {
    let path = tenant_file(config, domain);
    parse_tenant(domain.clone(), &path, text, &config.base_dir).map_err(CliError::Config)?;
    std::fs::create_dir_all(&config.tenants_dir)
        .map_err(|e| CliError::Config(vec![ConfigError::io(&config.tenants_dir, &e)]))?;
    write_atomic(&path, text.as_bytes())
        .map_err(|e| CliError::Config(vec![ConfigError::io(&path, &e)]))?;
    Ok(path)
}

/// The `mx` patterns the domain's MX records call for.
fn mx_from_dns_records(input: &str, net: &super::NetArgs) -> Result<Vec<String>, CliError> {
    let domain = domain(input)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let patterns = runtime.block_on(async {
        let resolver =
            crate::verify::resolver(net.resolver).map_err(|e| CliError::Usage(e.to_string()))?;
        crate::verify::mx_patterns_from_dns(&domain, &resolver)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))
    })?;
    eprintln!("{domain}: mx from DNS: {}", patterns.join(", "));
    Ok(patterns)
}

fn add(
    config: &ServerConfig,
    input: &str,
    mx: &[String],
    args: &PolicyArgs,
    json: bool,
) -> Result<ExitCode, CliError> {
    let domain = domain(input)?;
    let path = tenant_file(config, &domain);
    let marker = marker_path(&config.state_dir, &domain);
    let reviving = marker.exists();
    if path.exists() && !reviving {
        return Err(CliError::Usage(format!(
            "{} already exists; change it with `stsedge tenant set {domain}`",
            path.display()
        )));
    }
    let mut edit = TenantEdit::new(domain.as_str());
    edit.mode(args.mode.unwrap_or(Mode::Testing))
        .max_age(args.max_age.unwrap_or(DEFAULT_MAX_AGE))
        .mx(&patterns(mx)?);
    let path = commit(config, &domain, &edit.text())?;
    if reviving {
        // Adding a tenant that is being decommissioned cancels the decommissioning.
        std::fs::remove_file(&marker)
            .map_err(|e| CliError::Config(vec![ConfigError::io(&marker, &e)]))?;
    }
    report(
        config,
        &domain,
        &path,
        if reviving {
            "decommissioning cancelled; tenant re-added"
        } else {
            "tenant added"
        },
        json,
    )
}

fn set(
    config: &ServerConfig,
    input: &str,
    mx: &[String],
    args: &PolicyArgs,
    json: bool,
) -> Result<ExitCode, CliError> {
    let domain = domain(input)?;
    let path = tenant_file(config, &domain);
    let text = read_existing(
        &path,
        &format!("create it with `stsedge tenant add {domain} --mx …`"),
    )?;
    if mx.is_empty() && args.mode.is_none() && args.max_age.is_none() {
        return Err(CliError::Usage(
            "nothing to change; give --mode, --mx or --max-age".into(),
        ));
    }
    let mut edit = TenantEdit::parse(&text).map_err(|e| {
        CliError::Usage(format!(
            "{}: {e}; fix the file by hand first",
            path.display()
        ))
    })?;
    if let Some(mode) = args.mode {
        edit.mode(mode);
    }
    if let Some(max_age) = args.max_age {
        edit.max_age(max_age);
    }
    if !mx.is_empty() {
        edit.mx(&patterns(mx)?);
    }
    let path = commit(config, &domain, &edit.text())?;
    report(config, &domain, &path, "tenant updated", json)
}

fn rm(config: &ServerConfig, input: &str, now: bool, json: bool) -> Result<ExitCode, CliError> {
    let domain = domain(input)?;
    let path = tenant_file(config, &domain);
    let text = read_existing(&path, "nothing to remove")?;
    let marker = marker_path(&config.state_dir, &domain);
    if now {
        let max_age = parse_tenant(domain.clone(), &path, &text, &config.base_dir)
            .map(|s| s.policy.max_age)
            .unwrap_or(DEFAULT_MAX_AGE);
        eprintln!(
            "warning: removing {domain} at once; senders that cached its policy keep applying it for up to {max_age} s, and mail to {domain} may fail if its MX hosts change meanwhile"
        );
        std::fs::remove_file(&path)
            .map_err(|e| CliError::Config(vec![ConfigError::io(&path, &e)]))?;
        let _ = std::fs::remove_file(&marker);
        print_result(
            json,
            &serde_json::json!({"domain": domain, "removed": true}),
            &format!("{domain}: removed"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Ok(existing) = std::fs::read_to_string(&marker) {
        let d = crate::config::decommission::parse_marker(&marker, &existing)
            .map_err(|e| CliError::Config(vec![e]))?;
        let msg = format!(
            "{domain}: already being decommissioned; removal at {}",
            format_unix(d.until)
        );
        print_result(
            json,
            &serde_json::json!({"domain": domain, "since": d.since, "until": d.until}),
            &msg,
        );
        return Ok(ExitCode::SUCCESS);
    }
    let spec =
        parse_tenant(domain.clone(), &path, &text, &config.base_dir).map_err(CliError::Config)?;
    let since = unix_now();
    let decommission = Decommission {
        since,
        until: since + i64::from(spec.policy.max_age),
    };
    std::fs::create_dir_all(crate::config::decommission::marker_dir(&config.state_dir))
        .and_then(|()| write_atomic(&marker, render_marker(&decommission).as_bytes()))
        .map_err(|e| CliError::Config(vec![ConfigError::io(&marker, &e)]))?;
    let served = spec.policy.decommissioned();
    let msg = format!(
        "{domain}: decommissioning; serving mode none (max_age {}, new id {}) until {}, when the previous max_age of {} s has passed; then it is removed",
        served.max_age,
        served.render().id,
        format_unix(decommission.until),
        spec.policy.max_age
    );
    print_result(
        json,
        &serde_json::json!({"domain": domain, "since": decommission.since, "until": decommission.until, "id": served.render().id}),
        &msg,
    );
    Ok(ExitCode::SUCCESS)
}

fn list(config: ServerConfig, json: bool) -> Result<ExitCode, CliError> {
    let snapshot = Sources::read_only(config, crate::tls::provider()).initial();
    let views = crate::view::tenants(&snapshot);
    if json {
        println!("{}", serde_json::to_string_pretty(&views).expect("json"));
    } else {
        println!(
            "{:<40} {:<8} {:>9}  {:<32}  state",
            "domain", "mode", "max_age", "id"
        );
        for v in &views {
            println!(
                "{:<40} {:<8} {:>9}  {:<32}  {}",
                v.domain,
                v.mode,
                v.max_age,
                v.id,
                state_word(v)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn state_word(v: &TenantView) -> String {
    match (&v.phase, v.servable) {
        (Phase::Decommissioning { until, .. }, _) => {
            format!("decommissioning until {}", format_unix(*until))
        }
        (Phase::Active, true) => "serving".to_owned(),
        (Phase::Active, false) => format!("not served: {}", v.reason.as_deref().unwrap_or("?")),
    }
}

fn show(config: ServerConfig, input: &str, json: bool) -> Result<ExitCode, CliError> {
    let domain = domain(input)?;
    let zone = config.dns.as_ref().map(|d| d.zone.clone());
    let tlsrpt = config.tlsrpt.is_some();
    let snapshot: Snapshot =
        Sources::read_only(config, crate::tls::provider()).initial_only(&domain);
    let Some(tenant) = snapshot.tenant(domain.as_str()) else {
        let why = snapshot
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        return Err(CliError::Usage(if why.is_empty() {
            format!("{domain} is not a tenant; add it with `stsedge tenant add {domain} --mx …`")
        } else {
            why
        }));
    };
    let view = TenantView::of(tenant, true);
    let lines = zone.as_ref().map(|z| records::lines(&domain, z, tlsrpt));
    if json {
        let mut v = serde_json::to_value(&view).expect("json");
        v["records"] = serde_json::json!(lines);
        v["problems"] = serde_json::json!(crate::view::problems(&snapshot.problems));
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{domain}");
    println!("  state:       {}", state_word(&view));
    println!(
        "  TXT record:  {}",
        match (&view.phase, tenant.servable()) {
            (Phase::Decommissioning { .. }, Ok(())) =>
                format!("served, v=STSv1; id={} (the mode none policy)", view.id),
            (_, Ok(())) => format!("served, v=STSv1; id={}", view.id),
            (_, Err(why)) => format!("withheld, because {why}"),
        }
    );
    match &view.certificate {
        Some(c) => println!(
            "  certificate: {:?}, expires {}{}",
            c.origin,
            c.not_after,
            c.file
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        ),
        None => println!("  certificate: none"),
    }
    println!("  policy (https://mta-sts.{domain}/.well-known/mta-sts.txt):");
    for line in view.policy.as_deref().unwrap_or("").lines() {
        println!("    {line}");
    }
    for p in snapshot.problems.iter() {
        println!("  problem:     {p}");
    }
    match lines {
        Some(lines) => {
            println!("  DNS records the customer publishes:");
            for l in lines {
                println!("    {l}");
            }
        }
        None => println!("  DNS records: configure [dns] zone to host the _mta-sts record"),
    }
    Ok(ExitCode::SUCCESS)
}

fn report(
    config: &ServerConfig,
    domain: &DomainName,
    path: &Path,
    what: &str,
    json: bool,
) -> Result<ExitCode, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(vec![ConfigError::io(path, &e)]))?;
    let spec =
        parse_tenant(domain.clone(), path, &text, &config.base_dir).map_err(CliError::Config)?;
    let rendered = spec.policy.render();
    let lines = config
        .dns
        .as_ref()
        .map(|d| records::lines(domain, &d.zone, config.tlsrpt.is_some()));
    if json {
        let out = serde_json::json!({
            "domain": domain, "file": path.display().to_string(), "id": rendered.id,
            "policy": String::from_utf8_lossy(&rendered.body), "records": lines,
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        println!(
            "{domain}: {what} in {}; policy id {}",
            path.display(),
            rendered.id
        );
        if let Some(lines) = lines {
            println!("the customer publishes:");
            for l in lines {
                println!("  {l}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_result(json: bool, value: &serde_json::Value, text: &str) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("json"));
    } else {
        println!("{text}");
    }
}
