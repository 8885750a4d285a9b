//! `stsload summarize`: turns the JSON lines that benches/compare.sh collects (one
//! per loader run, tagged with round, server, mode and concurrency) into the A/B
//! table and the median stsedge/nginx ratios. It lives here, not in the shell
//! script, so the arithmetic is typed and the script needs no jq or python.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Line {
    round: u32,
    server: String,
    mode: String,
    concurrency: u32,
    rc: i32,
    report: Option<Report>,
}

/// The subset of `run --json` the summary needs.
#[derive(Debug, Deserialize)]
struct Report {
    req_per_s: f64,
    latency_us: Latency,
    errors_total: u64,
    mismatches_total: u64,
    server_cpu_us_per_req: Option<f64>,
    loader_cpu_share: f64,
    #[serde(default)]
    others_cpu_s: Option<f64>,
    elapsed_s: f64,
    threads: usize,
    resumed: u64,
    handshakes: u64,
}

#[derive(Debug, Deserialize)]
struct Latency {
    p50: u64,
    p99: u64,
}

/// Per (mode, concurrency): stsedge/nginx ratios of req/s, CPU per request, p99.
type Ratios = (Vec<f64>, Vec<f64>, Vec<f64>);

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn cell(r: Option<&Report>) -> String {
    match r {
        None => format!("{:>9} {:>7} {:>7} {:>7}", "-", "-", "-", "-"),
        Some(r) => {
            let flag = if r.errors_total + r.mismatches_total > 0 {
                "!"
            } else if r.loader_cpu_share > 0.9 * r.threads as f64 {
                "L"
            } else if r.others_cpu_s.is_some_and(|o| o / r.elapsed_s > 0.1) {
                "O"
            } else {
                " "
            };
            format!(
                "{:>9.0} {:>7} {:>7} {:>7}{flag}",
                r.req_per_s,
                r.latency_us.p50,
                r.latency_us.p99,
                r.server_cpu_us_per_req
                    .map_or("-".to_string(), |c| format!("{c:.1}")),
            )
        }
    }
}

/// Entry point of `stsload summarize FILE`.
pub fn summarize(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // (mode, concurrency, round) -> server -> report
    let mut runs: BTreeMap<(String, u32, u32), BTreeMap<String, Option<Report>>> = BTreeMap::new();
    let mut bad = Vec::new();
    for (n, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line: Line = serde_json::from_str(l)
            .with_context(|| format!("{}:{}: not a result line", path.display(), n + 1))?;
        let ok = line
            .report
            .as_ref()
            .is_some_and(|r| r.errors_total + r.mismatches_total == 0);
        if line.rc != 0 || !ok {
            bad.push(format!(
                "round {} {} {} c={}: rc {}{}",
                line.round,
                line.server,
                line.mode,
                line.concurrency,
                line.rc,
                line.report
                    .as_ref()
                    .map_or(" (no report)".to_string(), |r| format!(
                        ", {} errors, {} mismatches",
                        r.errors_total, r.mismatches_total
                    ))
            ));
        }
        runs.entry((line.mode, line.concurrency, line.round))
            .or_default()
            .insert(line.server, line.report);
    }

    println!(
        "{:<9} {:>4} {:>5} | {:^34} | {:^34} | {:>7} {:>7}",
        "mode",
        "c",
        "round",
        "stsedge  req/s  p50µs  p99µs cpuµs/req",
        "nginx  req/s  p50µs  p99µs cpuµs/req",
        "req/s",
        "cpu/req"
    );
    println!(
        "{:<9} {:>4} {:>5} | {:34} | {:34} | {:>7} {:>7}",
        "", "", "", "", "", "s/n", "s/n"
    );
    let mut ratios: BTreeMap<(String, u32), Ratios> = BTreeMap::new();
    for ((mode, c, round), servers) in &runs {
        let s = servers.get("stsedge").and_then(Option::as_ref);
        let g = servers.get("nginx").and_then(Option::as_ref);
        let (mut tput, mut cpu) = ("-".to_string(), "-".to_string());
        if let (Some(s), Some(g)) = (s, g) {
            let e = ratios.entry((mode.clone(), *c)).or_default();
            if g.req_per_s > 0.0 {
                let t = s.req_per_s / g.req_per_s;
                e.0.push(t);
                tput = format!("{t:.2}");
            }
            if let (Some(sc), Some(gc)) = (s.server_cpu_us_per_req, g.server_cpu_us_per_req)
                && gc > 0.0
            {
                e.1.push(sc / gc);
                cpu = format!("{:.2}", sc / gc);
            }
            if g.latency_us.p99 > 0 {
                e.2.push(s.latency_us.p99 as f64 / g.latency_us.p99 as f64);
            }
        }
        println!(
            "{mode:<9} {c:>4} {round:>5} | {:34} | {:34} | {tput:>7} {cpu:>7}",
            cell(s),
            cell(g)
        );
        for (name, r) in [("stsedge", s), ("nginx", g)] {
            if let Some(r) = r.filter(|r| mode == "resume" && r.handshakes > 0) {
                println!(
                    "{:>22} {name}: {} of {} handshakes resumed",
                    "", r.resumed, r.handshakes
                );
            }
        }
    }
    println!(
        "  flags: ! = errors or mismatches, L = loader CPU-bound (a loader limit, not the server's),"
    );
    println!(
        "         O = other processes used >10% of a core during the run (shared machine: noisy)"
    );
    println!();
    println!(
        "median stsedge/nginx ratio per mode (higher req/s ratio and lower cpu ratio favour stsedge):"
    );
    for ((mode, c), (t, cpu, p99)) in ratios {
        let n = t.len();
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
        println!(
            "  {mode:<9} c={c:<4} req/s {}   cpu µs/req {}   p99 {}   ({n} A/B rounds)",
            f(median(t)),
            f(median(cpu)),
            f(median(p99))
        );
    }
    if !bad.is_empty() {
        println!();
        println!("runs with failures:");
        for b in &bad {
            println!("  {b}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
