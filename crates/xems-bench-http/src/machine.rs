//! What the figures were measured on: the one description every benchmark
//! of the workspace prints and puts in its RESULT line (`xems-bench`
//! re-exports it).

use serde::Serialize;

/// The machine.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Online logical CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, GiB.
    pub mem_gib: f64,
    /// Build profile (figures from a debug build are meaningless).
    pub profile: &'static str,
    /// Share of the CPUs busy with other work just before the run (0-100),
    /// over half a second: figures taken on a busy machine are not worth
    /// writing down.
    pub busy_before_percent: f64,
}

impl Machine {
    /// Reads the description from `/proc`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            mem_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            profile: if cfg!(debug_assertions) { "debug (figures are meaningless)" } else { "release" },
            busy_before_percent: (cpu_busy_percent(std::time::Duration::from_millis(500)) * 1000.0).round() / 1000.0,
        }
    }

    /// One line for the top of a report.
    pub fn summary(&self) -> String {
        format!(
            "{} x{} | Linux {} | {} GiB | {} build | {:.0}% busy before the run",
            self.cpu, self.cpus, self.kernel, self.mem_gib, self.profile, self.busy_before_percent
        )
    }
}

/// The share of all CPUs that was busy over `window` (0-100), from
/// `/proc/stat`; call it while this process is idle to see other load.
pub fn cpu_busy_percent(window: std::time::Duration) -> f64 {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((fields.iter().sum(), idle))
    }
    let Some((t0, i0)) = sample() else { return 0.0 };
    std::thread::sleep(window);
    let Some((t1, i1)) = sample() else { return 0.0 };
    let total = t1.saturating_sub(t0);
    if total == 0 {
        return 0.0;
    }
    100.0 * (total - i1.saturating_sub(i0).min(total)) as f64 / total as f64
}
