//! What the figures were measured on (the same fields as the benchmark
//! harness's RESULT lines).

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
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            profile: if cfg!(debug_assertions) { "debug (figures are meaningless)" } else { "release" },
            busy_before_percent: (busy_percent(std::time::Duration::from_millis(500)) * 10.0).round() / 10.0,
        }
    }

    /// One line for the top of a report.
    pub fn summary(&self) -> String {
        format!(
            "{} x{} | Linux {} | {} build | {:.0}% busy before the run",
            self.cpu, self.cpus, self.kernel, self.profile, self.busy_before_percent
        )
    }
}

/// The share of all CPUs busy over `window`, from `/proc/stat`.
fn busy_percent(window: std::time::Duration) -> f64 {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        Some((f.iter().sum(), f.get(3)? + f.get(4).copied().unwrap_or(0)))
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
