//! Memory per entry: resident set size before and after filling a store with
//! N entries, measured in a fresh child process per case (the bench binary
//! re-executed with the hidden `memory-child` subcommand), so allocator
//! state left by earlier cases cannot pollute the figure.

use std::any::Any;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// A store filled for a memory measurement: holds everything alive until
/// the figure is read.
pub type Filled = Box<dyn Any>;

/// A memory case: fills a new store with `n` entries of the session value.
pub type FillFn = fn(n: usize) -> anyhow::Result<Filled>;

/// What a child reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryFigure {
    /// Case name.
    pub case: String,
    /// Entries inserted.
    pub entries: usize,
    /// Resident bytes before the store was created.
    pub rss_before: u64,
    /// Resident bytes with every entry inserted.
    pub rss_after: u64,
    /// `(rss_after - rss_before) / entries`.
    pub bytes_per_entry: f64,
    /// Payload bytes per entry (the value), for comparison.
    pub payload_bytes: usize,
}

/// The resident set size of this process, from `/proc/self/status`.
///
/// # Errors
///
/// When `/proc` is not mounted or the field is missing (not Linux).
pub fn rss_bytes() -> anyhow::Result<u64> {
    rss_from_status("/proc/self/status")
}

/// The resident set size of process `pid`, from `/proc/PID/status`.
///
/// # Errors
///
/// The process is gone, `/proc` is not mounted, or the field is missing.
pub fn rss_bytes_of(pid: u32) -> anyhow::Result<u64> {
    rss_from_status(&format!("/proc/{pid}/status"))
}

fn rss_from_status(path: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no VmRSS line in {path}"))?;
    Ok(kib * 1024)
}

/// In the child: fills the case's store and prints one JSON line.
///
/// # Errors
///
/// Unknown case, or the fill failed.
pub fn child_main(case: &str, entries: usize) -> anyhow::Result<()> {
    let Some(fill) = crate::engine::memory_case(case) else {
        bail!("unknown memory case {case:?} (known: {:?})", crate::engine::MEMORY_CASES);
    };
    let before = rss_bytes()?;
    let filled = fill(entries)?;
    let after = rss_bytes()?;
    let fig = MemoryFigure {
        case: case.to_owned(),
        entries,
        rss_before: before,
        rss_after: after,
        bytes_per_entry: after.saturating_sub(before) as f64 / entries.max(1) as f64,
        payload_bytes: crate::engine::VALUE_LEN,
    };
    println!("{}", serde_json::to_string(&fig)?);
    drop(filled);
    Ok(())
}

/// In the parent: runs one case in a fresh child process.
///
/// # Errors
///
/// The child failed or printed no figure.
pub fn measure_in_child(case: &str, entries: usize) -> anyhow::Result<MemoryFigure> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let out = Command::new(exe)
        .args(["memory-child", "--case", case, "--entries", &entries.to_string()])
        .output()
        .context("starting the memory child")?;
    if !out.status.success() {
        bail!("memory child for {case:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("memory child printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("memory child printed {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_readable_and_grows() {
        let before = rss_bytes().unwrap();
        assert!(before > 0);
        let mut v = vec![0u8; 64 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&v);
        let after = rss_bytes().unwrap();
        assert!(after >= before + (32 << 20), "{before} -> {after}");
        let by_pid = rss_bytes_of(std::process::id()).unwrap();
        assert!(by_pid >= before + (32 << 20), "{before} -> {by_pid}");
        drop(v);
    }
}
