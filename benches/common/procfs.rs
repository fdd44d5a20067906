//! What the load drivers read about a running server and the machine: CPU from `/proc`,
//! per-thread time, per-core busy time, and the guard against pointing a driver at anything
//! but loopback. Shared by `rtp_load` and `webrtc_load` (included with `#[path]`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long before a deadline [`wait_until`] stops sleeping and spins.
const SPIN: Duration = Duration::from_micros(300);

pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
pub fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 (state) is index 0, utime (14) is 11, stime (15) 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub fn proc_status(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Per-core (busy, total) jiffies from `/proc/stat`.
pub fn cores_busy() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total.saturating_sub(idle), total)
        })
        .collect()
}

/// Thread id → (name, nanoseconds on CPU) from `/proc/PID/task/*/schedstat`.
pub fn proc_threads(pid: &str) -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let tid = entry.file_name().to_string_lossy().to_string();
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"));
        let sched = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"));
        if let (Ok(name), Ok(sched)) = (name, sched)
            && let Some(ns) = sched.split_whitespace().next().and_then(|v| v.parse().ok())
        {
            out.insert(tid, (name.trim().to_string(), ns));
        }
    }
    out
}

/// % of one core per thread name over the window.
pub fn thread_groups(
    start: &HashMap<String, (String, u64)>,
    end: &HashMap<String, (String, u64)>,
    secs: f64,
) -> BTreeMap<String, f64> {
    let mut groups = BTreeMap::new();
    for (tid, (name, ns)) in end {
        let before = start.get(tid).map_or(0, |s| s.1);
        *groups.entry(name.clone()).or_insert(0.0) +=
            ns.saturating_sub(before) as f64 / 1e9 / secs * 100.0;
    }
    groups
}

/// Refuses any `--url` but a plain `http://` base URL on a loopback address.
pub fn check_loopback(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("--url {url}: {e}"))?;
    if parsed.scheme() != "http" {
        return Err("--url must be http:// (plain, on loopback)".into());
    }
    let host = parsed.host_str().ok_or("--url has no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "--url host {host} is not a loopback address; this driver only loads a local server"
        ));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err("--url must be the server's base URL (no path or query)".into());
    }
    Ok(())
}

/// Sleeps to `SPIN` before `deadline`, then spins.
pub fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now + SPIN {
        std::thread::sleep(deadline - now - SPIN);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}
