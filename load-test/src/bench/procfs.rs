//! CPU time and peak memory of a process, from `/proc`: what each part of a
//! drain costs per event is the difference of its CPU ticks before and after.

use std::sync::OnceLock;

/// User + system CPU seconds of `pid` so far (0 once it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are plain. utime and stime are fields 14 and 15.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|field| field.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks as f64 / clock_ticks()
}

/// The CPU seconds of several processes together.
pub fn cpu_seconds_of(pids: impl IntoIterator<Item = u32>) -> f64 {
    pids.into_iter().map(cpu_seconds).sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak resident memory (`VmHWM`) of `pid` in MB, while it runs.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
