//! `stsedge records DOMAIN`: the lines the customer adds to their zone (SPEC §3).

use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::config::ServerConfig;
use crate::domain::DomainName;

/// Zone-file lines: the two CNAMEs, and the TLS-RPT one (optional for the customer).
pub fn lines(domain: &DomainName, zone: &DomainName, tlsrpt: bool) -> Vec<String> {
    let mut out = vec![
        format!("_mta-sts.{domain}.    CNAME  _mta-sts.{domain}.{zone}."),
        format!("mta-sts.{domain}.     CNAME  mta-sts.{domain}.{zone}."),
    ];
    let note = if tlsrpt {
        "optional: TLS-RPT reports"
    } else {
        "optional: TLS-RPT (the tenant's tlsrpt_rua)"
    };
    out.push(format!(
        "_smtp._tls.{domain}.  CNAME  _smtp._tls.{domain}.{zone}.   ; {note}"
    ));
    out
}

pub fn run(config_path: &Path, input: &str, json: bool) -> Result<ExitCode, CliError> {
    let config = ServerConfig::load(config_path).map_err(CliError::Config)?;
    let domain = DomainName::parse(input)
        .map_err(|e| CliError::Usage(format!("`{input}` is not a valid domain name ({e}); give the customer's domain, like example.com")))?;
    let Some(dns) = &config.dns else {
        return Err(CliError::Usage(format!(
            "{}: records need the hosting zone; add a [dns] section with zone = \"sts.example.net\"",
            config.path.display()
        )));
    };
    let lines = lines(&domain, &dns.zone, config.tlsrpt.is_some());
    if !config.tenants_dir.join(format!("{domain}.toml")).exists() {
        eprintln!(
            "note: {domain} is not a tenant yet; add it with `stsedge tenant add {domain} --mx …`"
        );
    }
    if json {
        let out = serde_json::json!({"domain": domain, "zone": dns.zone, "records": lines});
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
