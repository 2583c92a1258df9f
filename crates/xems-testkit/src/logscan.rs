//! The scan behind `xems-logscan`: reads every log file the suite wrote
//! under [`crate::logs::DIR_ENV`] and reports each line that holds
//!
//! - a token-shaped string: a run of URL-safe base64 characters
//!   (`A-Za-z0-9_-`) of exactly 44 (`xems_core::Token`, the Redis store, the
//!   client) or 66 characters (the engine's tokens), bounded by other
//!   characters;
//! - 64 hexadecimal digits in a run of their own (a 32-byte key written as
//!   `hex:`, such as the random secrets some tests draw);
//! - a test secret of [`crate::secrets`], as written, as its 32 bytes, in
//!   hex, in base64 or as a Rust byte array;
//! - the [`MARKER`] the suites put into values and keys.
//!
//! A scan that saw nothing proves nothing, so [`Scan::problems`] also
//! reports a directory without TRACE lines, without audit lines
//! (`xems::audit`), without a child process's TRACE lines, or without the
//! log file of an integration test binary of the workspace.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use base64::Engine as _;

use crate::logs::MARKER;
use crate::secrets;

/// Integration test binaries that write no log file, and why. Each is
/// `<package>.<test>`.
pub const NOT_CAPTURED: &[(&str, &str)] = &[
    ("xems-protocol.decoder_never_panics", PROTOCOL_LOGS_NOTHING),
    ("xems-protocol.fuzz_corpus", PROTOCOL_LOGS_NOTHING),
    ("xems-protocol.spec_is_complete", PROTOCOL_LOGS_NOTHING),
];

const PROTOCOL_LOGS_NOTHING: &str = "xems-protocol has no logging (no tracing dependency): its tests cannot log";

/// Fewer lines than this is not a whole-suite capture.
pub const MIN_LINES: usize = 10_000;

/// One line that must not be there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The log file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What was found.
    pub what: String,
    /// The line (cut when long).
    pub text: String,
}

/// What a scan of a directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Log files read.
    pub files: usize,
    /// Lines read.
    pub lines: usize,
    /// Lines at TRACE.
    pub trace_lines: usize,
    /// Lines of the audit target `xems::audit`.
    pub audit_lines: usize,
    /// Lines at TRACE written by child processes (`xems`, `xems-portal`).
    pub child_trace_lines: usize,
    /// `<package>.<test>` of every test binary that wrote its own log file.
    pub binaries: BTreeSet<String>,
    /// Every forbidden string found.
    pub findings: Vec<Finding>,
}

impl Scan {
    /// Why this scan does not prove the suite clean: the findings, then
    /// every sign of an incomplete capture. Empty when all is well.
    /// `expected` lists the `<package>.<test>` binaries that must have
    /// written a file.
    pub fn problems(&self, expected: &BTreeSet<String>) -> Vec<String> {
        let mut p: Vec<String> =
            self.findings.iter().map(|f| format!("{}:{}: {}: {}", f.file.display(), f.line, f.what, f.text)).collect();
        if self.files == 0 {
            p.push("no log file at all: was the suite run with XEMS_TEST_LOG_DIR set?".to_owned());
        }
        if self.lines < MIN_LINES {
            p.push(format!("only {} log lines (at least {MIN_LINES} expected from the whole suite)", self.lines));
        }
        if self.trace_lines == 0 {
            p.push("no TRACE line: the capture is not at TRACE".to_owned());
        }
        if self.audit_lines == 0 {
            p.push("no xems::audit line: the stores' audit logs were not captured".to_owned());
        }
        if self.child_trace_lines == 0 {
            p.push("no TRACE line from a child process: xems / xems-portal were not run at TRACE".to_owned());
        }
        for missing in expected.difference(&self.binaries) {
            p.push(format!("the test binary {missing} wrote no log file (it never called xems_testkit::logs)"));
        }
        p
    }
}

/// The test binaries of the workspace at `root` that must log, as
/// `<package>.<test>`: every integration test (`crates/<package>/tests/<test>.rs`
/// and `crates/<package>/tests/<test>/main.rs`), and the library unit tests
/// (`<package>.<crate_name>`) of every package whose unit tests call
/// `xems_testkit::logs::capture()`; less [`NOT_CAPTURED`].
///
/// # Errors
///
/// When `root/crates` cannot be read.
pub fn expected_binaries(root: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for krate in std::fs::read_dir(root.join("crates"))? {
        let krate = krate?.path();
        let Some(package) = krate.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if unit_tests_capture(&krate.join("src"))? {
            out.insert(format!("{package}.{}", package.replace('-', "_")));
        }
        let Ok(tests) = std::fs::read_dir(krate.join("tests")) else { continue };
        for t in tests {
            let t = t?.path();
            let name = t.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if t.extension().is_some_and(|e| e == "rs") || t.join("main.rs").is_file() {
                out.insert(format!("{package}.{name}"));
            }
        }
    }
    for (skip, _) in NOT_CAPTURED {
        out.remove(*skip);
    }
    Ok(out)
}

/// Whether a library's sources (not its `main.rs`) hold a unit test that
/// calls the capture (a line that is exactly that statement).
fn unit_tests_capture(src: &Path) -> std::io::Result<bool> {
    let Ok(entries) = std::fs::read_dir(src) else { return Ok(false) };
    for e in entries {
        let path = e?.path();
        if path.is_dir() {
            if unit_tests_capture(&path)? {
                return Ok(true);
            }
        } else if path.extension().is_some_and(|x| x == "rs")
            && path.file_name().is_some_and(|n| n != "main.rs")
            && std::fs::read_to_string(&path)?.lines().any(|l| l.trim() == "xems_testkit::logs::capture();")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Looks for every forbidden string in a line.
#[derive(Debug)]
pub struct Scanner {
    needles: AhoCorasick,
    names: Vec<String>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner for the [`MARKER`] and every secret of [`crate::secrets`].
    pub fn new() -> Scanner {
        let mut needles: Vec<(String, Vec<u8>)> = vec![("the marker".to_owned(), MARKER.as_bytes().to_vec())];
        for (name, text) in secrets::ALL {
            let bytes = xems_core::MasterSecret::parse(text)
                .unwrap_or_else(|e| panic!("secrets::{name} is not a master secret: {e}"))
                .expose_secret()
                .to_vec();
            needles.push((format!("secrets::{name} (as written)"), text.as_bytes().to_vec()));
            if let Some(hex) = text.strip_prefix("hex:") {
                needles.push((format!("secrets::{name} (hex)"), hex.as_bytes().to_vec()));
            }
            key_forms(&format!("secrets::{name}"), &bytes, &mut needles);
        }
        for n in 1..=secrets::VAULT_SECRETS {
            key_forms(&format!("secrets::vault({n})"), &secrets::vault(n), &mut needles);
        }
        for (name, text) in secrets::CREDENTIALS {
            needles.push((format!("secrets::{name}"), text.as_bytes().to_vec()));
        }
        // Longest first, so the report names the most telling form.
        needles.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
        needles.dedup_by(|a, b| a.1 == b.1);
        let (names, patterns): (Vec<String>, Vec<Vec<u8>>) = needles.into_iter().unzip();
        Scanner { needles: AhoCorasick::new(&patterns).expect("the needles build an automaton"), names }
    }

    /// What `line` holds that it must not, each described once. Terminal
    /// colour codes are removed first (a child writing them would otherwise
    /// glue `0m` to the start of a token).
    pub fn line(&self, line: &[u8]) -> Vec<String> {
        let line = &strip_ansi(line)[..];
        let mut found = Vec::new();
        for m in self.needles.find_overlapping_iter(line) {
            let what = &self.names[m.pattern().as_usize()];
            if !found.contains(what) {
                found.push(what.clone());
            }
        }
        for run in line.split(|&b| !is_token_char(b)) {
            match run.len() {
                44 | 66 => found.push(format!("a {}-character token-shaped string", run.len())),
                64 if run.iter().all(u8::is_ascii_hexdigit) => {
                    found.push("64 hex digits (a 32-byte key written as hex)".to_owned())
                }
                _ => {}
            }
        }
        found
    }

    /// Scans every file of `dir`.
    ///
    /// # Errors
    ///
    /// When the directory or a file cannot be read.
    pub fn dir(&self, dir: &Path) -> std::io::Result<Scan> {
        let mut scan = Scan::default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        paths.sort();
        for path in paths.into_iter().filter(|p| p.is_file()) {
            let bytes = std::fs::read(&path)?;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // <package>.<test>.<pid>.log is the process's own; anything
            // longer is a child's.
            let parts: Vec<&str> = name.trim_end_matches(".log").split('.').collect();
            let own = parts.len() == 3 && parts[2].bytes().all(|b| b.is_ascii_digit());
            if own {
                scan.binaries.insert(format!("{}.{}", parts[0], parts[1]));
            }
            scan.files += 1;
            for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
                if raw.is_empty() {
                    continue;
                }
                let line = &strip_ansi(raw)[..];
                scan.lines += 1;
                if contains(line, b" TRACE ") || line.starts_with(b"TRACE ") {
                    scan.trace_lines += 1;
                    if !own {
                        scan.child_trace_lines += 1;
                    }
                }
                if contains(line, b"xems::audit") {
                    scan.audit_lines += 1;
                }
                for what in self.line(line) {
                    scan.findings.push(Finding { file: path.clone(), line: i + 1, what, text: shown(line) });
                }
            }
        }
        Ok(scan)
    }
}

/// A 32-byte key as it could be printed: raw, hex, base64, a Rust array.
fn key_forms(name: &str, bytes: &[u8], needles: &mut Vec<(String, Vec<u8>)>) {
    let hex: String = bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    needles.push((format!("{name} (bytes)"), bytes.to_vec()));
    needles.push((format!("{name} (bytes in hex)"), hex.clone().into_bytes()));
    needles.push((format!("{name} (bytes in upper-case hex)"), hex.to_ascii_uppercase().into_bytes()));
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    needles.push((format!("{name} (bytes in base64)"), b64.into_bytes()));
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    needles.push((format!("{name} (bytes in URL-safe base64)"), b64url.into_bytes()));
    needles.push((format!("{name} (bytes as a Rust array)"), format!("{bytes:?}").into_bytes()));
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !line.contains(&0x1b) {
        return line.into();
    }
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b == 0x1b && bytes.peek() == Some(&b'[') {
            bytes.next();
            // Parameters and intermediates, then one final byte in @..~.
            for c in bytes.by_ref() {
                if (0x40..=0x7e).contains(&c) {
                    break;
                }
            }
        } else {
            out.push(b);
        }
    }
    out.into()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A line for the report, cut at 400 characters.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(400) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(len: usize) -> String {
        // Random, as real tokens are: mixed case, digits, '-' and '_'.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut raw = vec![0u8; len];
        xems_core::random_bytes(&mut raw);
        raw.iter().map(|b| alphabet[usize::from(b % 64)] as char).collect()
    }

    const NORMAL: &[&str] = &[
        "2026-03-01T10:00:00.123456Z TRACE xems::audit: event=\"resolved\" sandbox=\"active\" fingerprint=9f0c1d2e3f405162 detail=\"\"",
        "2026-03-01T10:00:00.123456Z DEBUG xems::audit: event=\"created\" sandbox=\"otp-pending\" fingerprint=0011223344556677",
        "2026-03-01T10:00:00.123456Z  INFO xems_server::net: listening listener=unix:///tmp/.tmpAbCdEf/xems.sock",
        "2026-03-01T10:00:00.123456Z TRACE xems_server::handler: set sandbox=\"cache\" key_len=48 value_len=1024",
        "2026-03-01T10:00:00.123456Z  INFO xems::portal: OTP accepted; signed in user=\"u1\" session=AAAAAAAAAAE",
        "2026-03-01T10:00:00.123456Z  WARN xems::audit: rotated token replayed after its grace period event=\"reuse_detected\"",
    ];

    #[test]
    fn normal_log_text_passes() {
        let s = Scanner::new();
        for line in NORMAL {
            assert_eq!(s.line(line.as_bytes()), Vec::<String>::new(), "{line}");
        }
    }

    #[test]
    fn a_planted_44_or_66_character_token_is_found() {
        let s = Scanner::new();
        for len in [44, 66] {
            let t = token(len);
            for line in [format!("resolve token={t}"), t.clone(), format!("cookie xems_token={t}; Path=/")] {
                let found = s.line(line.as_bytes());
                assert_eq!(found, [format!("a {len}-character token-shaped string")], "{line}");
            }
        }
        // Behind terminal colour codes, as a child writing to a terminal
        // would print it.
        let t = token(66);
        let coloured = format!("\x1b[3mtoken\x1b[0m\x1b[2m=\x1b[0m{t} \x1b[2m2026\x1b[0m");
        assert_eq!(s.line(coloured.as_bytes()), ["a 66-character token-shaped string"], "{coloured:?}");
        // Bounded: one character more or less is another shape.
        for len in [43, 45, 65, 67] {
            assert!(s.line(format!("x={}", token(len)).as_bytes()).is_empty(), "{len}");
        }
    }

    #[test]
    fn a_planted_secret_is_found_in_any_form() {
        let s = Scanner::new();
        let bytes = xems_core::MasterSecret::parse(secrets::REDIS).unwrap().expose_secret().to_vec();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        for line in [
            format!("secret={}", secrets::REDIS),
            format!("key={hex}!"),
            format!("key={b64}"),
            format!("key={bytes:?}"),
            secrets::AUTH_TOKEN.to_owned(),
            format!("url=redis://u:{}@host", secrets::REDIS_PASSWORD),
            format!("the vault key {:?}", secrets::vault(3)),
        ] {
            assert!(!s.line(line.as_bytes()).is_empty(), "not found: {line}");
        }
        let found = s.line(format!("secret={}", secrets::SIDECAR_NEXT).as_bytes());
        assert!(found.contains(&"secrets::SIDECAR_NEXT (as written)".to_owned()), "{found:?}");
        // A random key written as hex, as the memory canary's.
        assert!(!s.line(format!("hex:{}", "ab".repeat(32)).as_bytes()).is_empty());
    }

    #[test]
    fn the_marker_is_found() {
        let s = Scanner::new();
        let found = s.line(format!("value=\"{{\\\"note\\\":\\\"{MARKER}\\\"}}\"").as_bytes());
        assert_eq!(found, ["the marker"]);
    }

    fn write_dir(files: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn normal_lines(n: usize) -> String {
        NORMAL.iter().cycle().take(n).map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn a_directory_scan_names_file_and_line() {
        let t = token(66);
        let dir = write_dir(&[
            ("xems-axum.http.1.log", normal_lines(MIN_LINES)),
            ("xems-server.serve.2.serve-0.log", format!("{}ok\nleak {t}\n", normal_lines(6))),
        ]);
        let scan = Scanner::new().dir(dir.path()).unwrap();
        assert_eq!(scan.findings.len(), 1);
        let f = &scan.findings[0];
        assert_eq!((f.file.file_name().unwrap().to_str().unwrap(), f.line), ("xems-server.serve.2.serve-0.log", 8));
        assert!(f.text.contains(&t));
        let expected: BTreeSet<String> = ["xems-axum.http".to_owned()].into();
        let problems = scan.problems(&expected);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("serve-0.log:8: a 66-character token-shaped string"), "{problems:?}");
    }

    #[test]
    fn a_clean_directory_passes() {
        let dir = write_dir(&[
            ("xems-axum.http.1.log", normal_lines(MIN_LINES)),
            ("xems-server.serve.2.serve-0.log", normal_lines(10)),
        ]);
        let scan = Scanner::new().dir(dir.path()).unwrap();
        let expected: BTreeSet<String> = ["xems-axum.http".to_owned()].into();
        assert_eq!(scan.problems(&expected), Vec::<String>::new());
        assert_eq!(scan.binaries, expected);
    }

    #[test]
    fn an_empty_or_thin_capture_fails() {
        let expected: BTreeSet<String> = ["xems-axum.http".to_owned(), "xems-redis.rotation".to_owned()].into();
        let empty = write_dir(&[]);
        let problems = Scanner::new().dir(empty.path()).unwrap().problems(&expected);
        for want in [
            "no log file",
            "only 0 log lines",
            "no TRACE line",
            "no xems::audit",
            "from a child",
            "xems-redis.rotation",
        ] {
            assert!(problems.iter().any(|p| p.contains(want)), "{want} not in {problems:?}");
        }
        // Lines, but no audit line, and one binary missing.
        let thin = write_dir(&[("xems-axum.http.1.log", "2026 TRACE xems_client: connected\n".repeat(MIN_LINES))]);
        let problems = Scanner::new().dir(thin.path()).unwrap().problems(&expected);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("no xems::audit")));
        assert!(problems.iter().any(|p| p.contains("from a child")));
        assert!(problems.iter().any(|p| p.contains("xems-redis.rotation wrote no log file")));
    }

    #[test]
    fn every_test_binary_of_the_workspace_that_logs_is_expected() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let expected = expected_binaries(&root).unwrap();
        for name in [
            "xems-axum.http",
            "xems-server.no_secrets_in_logs",
            "xems-redis.conformance_cluster",
            "xems-vault.corruption",
        ] {
            assert!(expected.contains(name), "{name} not in {expected:?}");
        }
        assert!(expected.contains("xems-core.fuzz_corpus"), "{expected:?}");
        // Unit tests too, where they call the capture; not the testkit's own.
        for name in ["xems-engine.xems_engine", "xems-server.xems_server", "xems-core.xems_core"] {
            assert!(expected.contains(name), "{name} not in {expected:?}");
        }
        assert!(!expected.contains("xems-testkit.xems_testkit"), "{expected:?}");
        // What NOT_CAPTURED says of xems-protocol still holds.
        let manifest = std::fs::read_to_string(root.join("crates/xems-protocol/Cargo.toml")).unwrap();
        assert!(
            !manifest.contains("tracing"),
            "xems-protocol logs now: capture its tests and drop it from NOT_CAPTURED"
        );
        assert!(!expected.iter().any(|e| e.ends_with(".common")), "common/ is a module, not a test: {expected:?}");
    }
}
