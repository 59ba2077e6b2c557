//! A CPU cap for one replica, as a pod's CPU limit sets it: a cgroup (v1,
//! the `cpu` controller) of its own with a CFS quota per 100 ms period.
//! The folder is removed when dropped, which the kernel allows once its
//! processes have exited.

use std::{
    io,
    path::{Path, PathBuf},
};

const ROOT: &str = "/sys/fs/cgroup/cpu";
const PERIOD_US: u32 = 100_000;

/// A share of one CPU, above 0 and at most the whole machine's.
#[derive(Debug, Clone, Copy)]
pub struct Cpus(f64);

impl Cpus {
    pub fn parse(cpus: f64) -> Result<Self, String> {
        if cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0 {
            Ok(Self(cpus))
        } else {
            Err(format!("a CPU cap must be above 0, not {cpus}"))
        }
    }

    /// The CFS quota per period, at least the kernel's minimum of 1 ms.
    fn quota_us(self) -> u32 {
        ((self.0 * f64::from(PERIOD_US)).round() as u32).max(1_000)
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// One capped cgroup.
pub struct CpuCap {
    dir: PathBuf,
}

impl CpuCap {
    /// Whether cgroups can be made here; the reason when not.
    pub fn writable() -> Result<(), String> {
        let probe = Path::new(ROOT).join(format!("flagmeter-bench-probe-{}", std::process::id()));
        std::fs::create_dir(&probe)
            .and_then(|()| std::fs::remove_dir(&probe))
            .map_err(|err| format!("cannot create a cgroup under {ROOT}: {err}"))
    }

    /// Creates `name` capped at `cpus`.
    pub fn create(name: &str, cpus: Cpus) -> io::Result<Self> {
        let dir = Path::new(ROOT).join(name);
        if dir.exists() {
            // Left by an interrupted bench; empty, or removing it fails.
            std::fs::remove_dir(&dir)?;
        }
        std::fs::create_dir(&dir)?;
        let cap = Self { dir };
        std::fs::write(cap.dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        std::fs::write(
            cap.dir.join("cpu.cfs_quota_us"),
            cpus.quota_us().to_string(),
        )?;
        Ok(cap)
    }

    /// Moves `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            eprintln!(
                "flagmeter-bench: could not remove {}: {err}",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_becomes_its_share_of_the_period() {
        assert_eq!(Cpus::parse(0.03).map(Cpus::quota_us), Ok(3_000));
        assert_eq!(Cpus::parse(0.05).map(Cpus::quota_us), Ok(5_000));
        assert_eq!(Cpus::parse(0.001).map(Cpus::quota_us), Ok(1_000));
        assert!(Cpus::parse(0.0).is_err());
        assert!(Cpus::parse(f64::NAN).is_err());
    }
}
