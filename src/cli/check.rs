//! `stsedge check`: load everything the server would load and list every problem.

use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::config::ServerConfig;
use crate::reload::Sources;
use crate::view;

pub fn run(config_path: &Path, json: bool) -> Result<ExitCode, CliError> {
    let config = ServerConfig::load(config_path).map_err(CliError::Config)?;
    let mut sources = Sources::read_only(config, crate::tls::provider());
    let snapshot = sources.initial();
    let problems = &snapshot.problems;
    let servable = snapshot.servable_count();
    if json {
        let out = serde_json::json!({
            "ok": problems.is_empty(),
            "tenants": snapshot.tenant_count(),
            "servable": servable,
            "problems": view::problems(problems),
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        for p in problems.iter() {
            println!("{p}");
        }
        let waiting = snapshot.tenant_count() - servable;
        println!(
            "{}: {} tenants, {servable} servable{}, {} problem{}",
            config_path.display(),
            snapshot.tenant_count(),
            if waiting > 0 {
                format!(", {waiting} waiting for a certificate")
            } else {
                String::new()
            },
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
        );
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
