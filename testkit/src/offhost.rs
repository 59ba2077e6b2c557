//! The test side of the off-host guard: the suite must reach nothing
//! beyond this machine. `scripts/test` runs it in a cgroup whose packets
//! to anything but loopback the kernel refuses at once and records
//! (`scripts/services.sh`, `offhost_guard_start`), and names the record in
//! `FLAGMETER_TEST_OFFHOST_LIST`. Every [`crate::TestEnv`], when dropped,
//! fails its test if an address other than the [`CANARIES`] is in it, so
//! an attempt fails loudly near the test that made it, and `scripts/test`
//! fails the run naming every address. Without the guard (a plain `cargo
//! test`) nothing is checked.

use std::net::IpAddr;

/// TEST-NET-2 addresses the guard's own proof reaches for (in-process,
/// and from a pipeline binary), left out of the check; `scripts/services.sh`
/// names the same two.
pub const CANARIES: [&str; 2] = ["198.51.100.7", "198.51.100.8"];

/// Every address beyond loopback a process of the suite tried to reach,
/// if the suite runs under the guard and its record is readable (it is
/// root's).
pub fn attempts() -> Option<Vec<IpAddr>> {
    let list = std::env::var_os("FLAGMETER_TEST_OFFHOST_LIST")?;
    let text = std::fs::read_to_string(list).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.strip_prefix("src=")?.split(' ').next()?.parse().ok())
            .collect(),
    )
}

/// Panics, naming them, if a process of the suite tried to reach an
/// address beyond this machine other than the canaries.
pub fn assert_none() {
    let canaries: Vec<IpAddr> = CANARIES.iter().filter_map(|c| c.parse().ok()).collect();
    let tried: Vec<IpAddr> = attempts()
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| !canaries.contains(ip))
        .collect();
    assert!(
        tried.is_empty(),
        "the test suite tried to reach beyond this machine (refused by the off-host guard): \
         {tried:?}; tests may use loopback only"
    );
}
