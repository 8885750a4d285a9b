//! CPU accounting from outside the measured processes: server CPU from
//! `/proc/PID/stat` (utime+stime in clock ticks), the loader's own CPU from
//! `getrusage`, and resident memory from `/proc/PID/status`.
//!
//! Ticks are coarse (usually 10 ms), so server CPU per request is only meaningful over
//! windows of seconds and thousands of requests — which is how `run` uses it.

use std::collections::BTreeSet;
use std::fs;

/// Kernel clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 only for unknown names.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The fields of `/proc/PID/stat` after the `(comm)` field, which may itself contain
/// spaces and parentheses — hence splitting after the *last* `)`.
fn stat_fields(pid: u32) -> std::io::Result<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| std::io::Error::other("malformed /proc stat"))?;
    Ok(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a whole process (all threads), in clock ticks.
pub fn process_cpu_ticks(pid: u32) -> std::io::Result<u64> {
    let f = stat_fields(pid)?;
    // After comm: state(3) ppid(4) … utime(14) stime(15); index 0 here is field 3.
    let get = |field: usize| -> std::io::Result<u64> {
        f.get(field - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("short /proc stat"))
    };
    Ok(get(14)? + get(15)?)
}

fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid).ok()?.get(1)?.parse().ok()
}

/// `roots` plus all their descendants. This kernel has no
/// `/proc/PID/task/TID/children`, so the process table is scanned for parent links;
/// it lets `--server-pid <nginx master>` also count the worker that does the work.
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut set: BTreeSet<u32> = roots.iter().copied().collect();
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some(ppid) = parent_pid(pid)
            {
                all.push((pid, ppid));
            }
        }
    }
    loop {
        let before = set.len();
        for &(pid, ppid) in &all {
            if set.contains(&ppid) {
                set.insert(pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set.into_iter().collect()
}

/// Sum of CPU ticks over `pids`; a vanished process is an error (its CPU is lost).
pub fn total_cpu_ticks(pids: &[u32]) -> std::io::Result<u64> {
    pids.iter().map(|&p| process_cpu_ticks(p)).sum()
}

/// The loader's own user+system CPU so far, in microseconds.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Machine-wide CPU counters from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    /// Everything but idle and iowait, over all CPUs.
    pub busy: u64,
    /// Time the hypervisor ran someone else while this VM wanted the CPU.
    pub steal: u64,
}

/// Reads `/proc/stat`. The machine is shared (other builds, other benchmarks), so a
/// run reports how much CPU *others* used during its window: a server/loader figure
/// taken while a compiler ran on the same core is not comparable.
pub fn machine_cpu() -> Option<MachineCpu> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some(MachineCpu {
        busy,
        steal: get(7),
    })
}

/// VmRSS of one process in KiB, if readable.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Proportional set size of one process in KiB (`/proc/PID/smaps_rollup`). Unlike
/// VmRSS it splits copy-on-write pages shared between nginx's master and workers,
/// so summing it over processes does not double-count the loaded certificates.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(process_cpu_ticks(me).is_ok());
        assert!(vm_rss_kib(me).unwrap() > 0);
        assert!(pss_kib(me).unwrap() > 0);
        assert!(with_descendants(&[me]).contains(&me));
        assert!(clock_ticks_per_sec() > 0);
    }
}
