//! `xems vault verify | inspect | compact | rekey`: the vault tools. They
//! print counts, sizes and key ids, never a value or a token.

use std::path::Path;
use std::process::ExitCode;

use xems_vault::{FileInfo, Report, VaultError, VaultOptions, inspect, rewrite};

use crate::cli::VaultCommand;

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn print_files(files: &[FileInfo]) {
    for f in files {
        let records = if f.records > 0 { format!("{:>10} records", f.records) } else { String::new() };
        println!(
            "  {:<18} {:>10}  key id {}{}  {records}",
            f.name,
            human(f.bytes),
            f.key_id,
            if f.hardware_bound { "  hardware-bound" } else { "" }
        );
    }
}

fn print_report(path: &Path, r: &Report) {
    println!(
        "vault {}: {} files, {} shards, {}",
        path.display(),
        r.files.len(),
        r.shards,
        if r.hardware_bound { "hardware-bound" } else { "not hardware-bound" }
    );
    print_files(&r.files);
    println!("sandboxes:");
    if r.sandboxes.is_empty() {
        println!("  (none)");
    }
    for s in &r.sandboxes {
        println!(
            "  {:<24} {:>10} records  {:>10} of values  {:>8} retired tokens  {:>8} with a subject",
            s.name,
            s.records,
            human(s.value_bytes),
            s.retired_tokens,
            s.with_subject
        );
    }
    println!(
        "total: {} live records, {} expired (dropped at the next open), {} journal changes",
        r.records, r.expired, r.journal_changes
    );
    if let Some(t) = &r.torn_tail {
        println!(
            "warning: {} ends with an incomplete record ({} bytes at offset {}): a crash in the middle of a write; \
             it is cut off at the next open",
            t.file, t.bytes, t.offset
        );
    }
}

fn fail(e: &VaultError) -> ExitCode {
    eprintln!("xems vault: {e}");
    if e.is_corruption() { ExitCode::FAILURE } else { ExitCode::from(2) }
}

/// Runs a vault tool; exit code 0 on success, 1 when the vault is damaged,
/// 2 on any other error (a wrong secret, a vault in use).
pub fn run(command: &VaultCommand, path: &Path, opts: VaultOptions) -> ExitCode {
    match command {
        VaultCommand::Inspect { .. } => match inspect(path, opts) {
            Ok(r) => {
                print_report(path, &r);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        VaultCommand::Verify { .. } => match inspect(path, opts) {
            Ok(r) => {
                let records: u64 = r.files.iter().map(|f| f.records).sum();
                println!(
                    "ok: {} records in {} files authenticated; {} live sessions and keys",
                    records,
                    r.files.len(),
                    r.records
                );
                if let Some(t) = &r.torn_tail {
                    println!(
                        "warning: {} ends with an incomplete record ({} bytes at offset {}), cut off at the next open",
                        t.file, t.bytes, t.offset
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        VaultCommand::Compact { .. } | VaultCommand::Rekey { .. } => {
            let rekey = matches!(command, VaultCommand::Rekey { .. });
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records ({eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(if rekey { "rekeying" } else { "compacting" });
            let r = rewrite(path, opts, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            match r {
                Ok(r) => {
                    println!(
                        "{} {}: {} live records written, {} expired dropped",
                        if rekey { "rekeyed" } else { "compacted" },
                        path.display(),
                        r.records,
                        r.expired
                    );
                    print_files(&r.files);
                    if rekey {
                        let old: Vec<String> =
                            r.key_ids_before.iter().filter(|k| **k != r.key_id).map(|k| k.to_string()).collect();
                        if old.is_empty() {
                            println!("every file is wrapped under key id {} with fresh file keys", r.key_id);
                        } else {
                            println!(
                                "every file is now wrapped under key id {} only: the secret(s) with key id {} can be retired",
                                r.key_id,
                                old.join(", ")
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}
