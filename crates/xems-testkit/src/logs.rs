//! Every log line of the test suite, at TRACE, in one directory: the proof
//! that no token, secret or value reaches a log line covers the whole
//! suite, not one test.
//!
//! When the environment variable [`DIR_ENV`] (`XEMS_TEST_LOG_DIR`) names a
//! directory, as `scripts/test.sh` sets it:
//!
//! - [`capture`] installs, once per test process, a global `tracing`
//!   subscriber at TRACE for every target (and the `log` crate's records),
//!   writing to `<dir>/<package>.<test binary>.<pid>.log`. The shared
//!   helpers every integration test goes through (the conformance macro,
//!   the `common` modules, harness constructors, spawn helpers) call it, so
//!   no integration test function has to; unit tests (`#[cfg(test)]` in
//!   `src/`), which share no helper, call it as their first statement.
//! - a child process (`xems`, `xems-portal`) prepared with [`child`],
//!   [`traced`] or run by [`output`] logs at TRACE (`XEMS_LOG` and
//!   `RUST_LOG` set to `trace`), and its stderr ends up in
//!   `<dir>/<package>.<test binary>.<pid>.<name>-<n>.log`: directly, or
//!   through a [`Tee`] or [`save`] when the test reads it itself.
//!
//! Then `xems-logscan <dir>` ([`crate::logscan`]) reads every file and fails
//! on any token-shaped string, test secret or [`MARKER`].
//!
//! Without the variable, [`capture`] installs nothing and the child helpers
//! change nothing: a plain `cargo test` runs as before.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

/// The environment variable naming the capture directory.
pub const DIR_ENV: &str = "XEMS_TEST_LOG_DIR";

/// A string the suites put into session values and caller keys (the
/// conformance cases, the axum, portal, Redis and vault tests), so that a
/// value reaching a log line is found by the scan whatever its shape.
pub const MARKER: &str = marker!();

/// `text`, a space and the [`MARKER`]: a value fixture the scan recognizes.
pub fn marked(text: &str) -> String {
    format!("{text} {MARKER}")
}

/// The capture directory, when [`DIR_ENV`] is set (created if missing).
pub fn dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).filter(|d| !d.is_empty())?);
        // Cargo runs each test binary in its package's directory.
        assert!(dir.is_absolute(), "{DIR_ENV}={}: give an absolute path", dir.display());
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{DIR_ENV}={}: {e}", dir.display()));
        Some(dir)
    })
    .as_deref()
}

/// Whether logs are being captured ([`DIR_ENV`] is set).
pub fn capturing() -> bool {
    dir().is_some()
}

/// Installs the TRACE subscriber of this process when [`DIR_ENV`] is set;
/// otherwise does nothing. Idempotent and cheap: call it from every shared
/// helper.
///
/// # Panics
///
/// If another global `tracing` subscriber or `log` logger was installed
/// first: tests install none of their own, they go through this module.
pub fn capture() {
    if capturing() {
        install();
    }
}

/// Installs the subscriber (with or without [`DIR_ENV`]) and keeps every
/// line this process logs from now on in memory too, for a test that checks
/// its own logs; [`captured`] returns them. The lines still go to the
/// directory when it is set.
pub fn capture_in_memory() {
    sink().memory.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Vec::new);
    install();
}

/// What this process logged since [`capture_in_memory`].
pub fn captured() -> Vec<u8> {
    sink().memory.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
}

/// Prepares a child process that logs on stderr: when capturing, it logs at
/// TRACE and its stderr goes to a new file of the directory (replacing
/// whatever stderr was set before). Otherwise `cmd` is left as it is.
/// Call it last, after the test's own `env` calls.
pub fn child<'a>(cmd: &'a mut Command, name: &str) -> &'a mut Command {
    traced(cmd);
    if let Some((file, _)) = new_file(name) {
        cmd.stderr(Stdio::from(file));
    }
    cmd
}

/// Sets a child's log filter to TRACE when capturing (`XEMS_LOG` for
/// `xems`, `RUST_LOG` for `xems-portal`), leaving its stdio alone: for a
/// test that reads the child's stderr itself and copies it into a [`Tee`].
/// Call it last, after the test's own `env` calls.
pub fn traced(cmd: &mut Command) -> &mut Command {
    capture();
    if capturing() {
        cmd.env("XEMS_LOG", "trace").env("RUST_LOG", "trace");
    }
    cmd
}

/// Runs `cmd` to completion like [`Command::output`], logging at TRACE when
/// capturing, and saves its stderr in the directory.
///
/// # Errors
///
/// When the command cannot be started.
pub fn output(cmd: &mut Command, name: &str) -> std::io::Result<Output> {
    let out = traced(cmd).output()?;
    save(name, &out.stderr);
    Ok(out)
}

/// Writes `bytes` (log lines a test collected itself) to a new file of the
/// directory when capturing.
pub fn save(name: &str, bytes: &[u8]) {
    if let Some((mut file, path)) = new_file(name) {
        file.write_all(bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// A file of the directory that a test copies a child's log lines into as
/// it reads them (nothing when not capturing).
#[derive(Debug)]
pub struct Tee(Option<Mutex<File>>);

impl Tee {
    /// A new file named after `name`, when capturing.
    pub fn new(name: &str) -> Tee {
        Tee(new_file(name).map(|(f, _)| Mutex::new(f)))
    }

    /// Appends one line (a newline is added when it lacks one).
    pub fn line(&self, line: &str) {
        if let Some(f) = &self.0 {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            // A lost line could only hide a leak, so a failed write fails the test.
            f.write_all(line.as_bytes()).expect("write to the log capture");
            if !line.ends_with('\n') {
                f.write_all(b"\n").expect("write to the log capture");
            }
        }
    }
}

// ------------------------------------------------------------ internals

/// `<package>.<test binary>.<pid>`: the binary's name without cargo's hash,
/// prefixed by its package, so the scan can tell which test binaries wrote
/// (`conformance` exists in several packages).
fn process_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let stem = exe.as_deref().and_then(Path::file_stem).map(|s| s.to_string_lossy().into_owned());
        let stem = stem.unwrap_or_else(|| "unknown".to_owned());
        let name = match stem.rsplit_once('-') {
            Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        };
        // Cargo sets it when it runs a test binary.
        let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "unknown".to_owned());
        format!("{package}.{name}.{}", std::process::id())
    })
}

/// A new file of the directory, `<prefix>.<name>-<n>.log`, when capturing.
fn new_file(name: &str) -> Option<(File, PathBuf)> {
    static N: AtomicU64 = AtomicU64::new(0);
    capture();
    let dir = dir()?;
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = dir.join(format!("{}.{name}-{}.log", process_prefix(), N.fetch_add(1, Ordering::Relaxed)));
    let file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    Some((file, path))
}

/// Where the in-process subscriber writes.
struct Sink {
    /// `<dir>/<prefix>.log`, when capturing.
    file: Option<File>,
    /// Every line, when a test asked for them ([`capture_in_memory`]).
    memory: Mutex<Option<Vec<u8>>>,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let file = dir().map(|dir| {
            let path = dir.join(format!("{}.log", process_prefix()));
            // Append-only: one write per event lands whole even when several
            // threads log at once.
            File::options()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
        });
        Sink { file, memory: Mutex::new(None) }
    })
}

struct SinkWriter(&'static Sink);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole event per call.
        if let Some(mut file) = self.0.file.as_ref() {
            file.write_all(buf)?;
        }
        if let Some(memory) = self.0.memory.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            memory.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let sink = sink();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || SinkWriter(sink))
            .try_init()
            .unwrap_or_else(|e| {
                panic!(
                    "xems_testkit::logs: another global tracing subscriber or log logger is installed ({e}); \
                     tests install none of their own, they call xems_testkit::logs::capture()"
                )
            });
    });
}
