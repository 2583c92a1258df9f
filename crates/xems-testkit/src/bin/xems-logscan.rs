//! `xems-logscan DIR [--workspace ROOT]`: fails (exit 1, each hit listed
//! with its file and line) when the logs the test suite captured in `DIR`
//! (`XEMS_TEST_LOG_DIR`) hold a token-shaped string, a test secret or the
//! leak marker, or when the capture is too thin to prove anything. See
//! `xems_testkit::logscan`. `scripts/test.sh` runs it after `cargo test`.

use std::path::PathBuf;
use std::process::ExitCode;

use xems_testkit::logscan::{Scanner, expected_binaries};

/// Hits listed one by one; the rest are counted per file.
const MAX_SHOWN: usize = 200;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let mut dir = None;
    let mut root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    while let Some(a) = args.next() {
        if a == "--workspace" {
            root = args.next().map(PathBuf::from).unwrap_or_default();
        } else if dir.is_none() {
            dir = Some(PathBuf::from(a));
        } else {
            eprintln!("usage: xems-logscan DIR [--workspace ROOT]");
            return ExitCode::from(2);
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: xems-logscan DIR [--workspace ROOT]");
        return ExitCode::from(2);
    };
    let expected = match expected_binaries(&root) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xems-logscan: cannot list the test binaries of {}: {e}", root.display());
            return ExitCode::from(2);
        }
    };
    let scan = match Scanner::new().dir(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xems-logscan: cannot read {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let summary = format!(
        "{} files, {} lines ({} at TRACE, {} from child processes; {} audit) from {} of {} test binaries",
        scan.files,
        scan.lines,
        scan.trace_lines,
        scan.child_trace_lines,
        scan.audit_lines,
        scan.binaries.intersection(&expected).count(),
        expected.len()
    );
    let problems = scan.problems(&expected);
    if problems.is_empty() {
        println!("xems-logscan: {summary}: no token, secret or marker in any line");
        return ExitCode::SUCCESS;
    }
    eprintln!("xems-logscan: {}: {summary}", dir.display());
    // Every problem, up to a screenful of hits; past that, hits are counted
    // per file (one leak in a hot path can repeat a million times).
    let shown_hits = scan.findings.len().min(MAX_SHOWN);
    for p in problems.iter().take(shown_hits) {
        eprintln!("  {p}");
    }
    if scan.findings.len() > MAX_SHOWN {
        let mut per_file = std::collections::BTreeMap::new();
        for f in &scan.findings[MAX_SHOWN..] {
            *per_file.entry(f.file.display().to_string()).or_insert(0usize) += 1;
        }
        eprintln!("  ... and {} more hits not shown:", scan.findings.len() - MAX_SHOWN);
        for (file, n) in per_file {
            eprintln!("    {file}: {n} more");
        }
    }
    for p in &problems[scan.findings.len()..] {
        eprintln!("  {p}");
    }
    eprintln!(
        "xems-logscan: FAILED: {} problem(s), {} of them forbidden strings in log lines",
        problems.len(),
        scan.findings.len()
    );
    ExitCode::FAILURE
}
