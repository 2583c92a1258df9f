//! Process hardening applied by the `xems` binary before it reads a secret.
//!
//! A core dump of a running store would hold whatever was in memory when it
//! crashed: derived keys, and (briefly) request lines with tokens and values.
//! Key pages are already excluded from dumps (`xems-locked` advises
//! `MADV_DONTDUMP`); this module turns dumps off for the whole process:
//!
//! - `RLIMIT_CORE` 0 (soft and hard, so nothing in the process can raise it
//!   again): the kernel writes no core file;
//! - `PR_SET_DUMPABLE` 0: no core dump either (including to a `core_pattern`
//!   pipe such as systemd-coredump, which ignores `RLIMIT_CORE`), and other
//!   processes of the same user can no longer attach with `ptrace` or read
//!   `/proc/<pid>/mem`, `environ` and the like (those files become owned by
//!   root). Root, holding `CAP_SYS_PTRACE`, still can.

/// Disables core dumps and ptrace access by same-user processes.
///
/// Returns a description of each step that failed (none on Linux normally);
/// the caller logs them once logging is set up. Failing steps are not fatal:
/// refusing to start would be worse than running unhardened, and the warning
/// says what is missing.
pub fn disable_core_dumps() -> Vec<String> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let mut failed = Vec::new();
    if let Err(e) = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) }) {
        failed.push(format!("cannot set RLIMIT_CORE to 0 ({e}); a crash may write a core file"));
    }
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        failed.push(format!(
            "cannot clear the dumpable flag ({e}); a crash may be dumped and same-user processes can attach"
        ));
    }
    failed
}

/// How much stack [`scrub_stack`] overwrites below the frame that polls
/// the connections. Unoptimized builds use far larger frames.
pub const REQUEST_STACK_SCRUB: usize = if cfg!(debug_assertions) { 128 * 1024 } else { 32 * 1024 };

/// Batches of requests a busy thread answers between two scrubs of its
/// stack (see [`scrub_after_batch`]).
pub const BUSY_SCRUB_EVERY: u32 = 64;

/// Overwrites `N` bytes of the stack below the caller's frame with zeros.
///
/// Handling a request copies tokens and values into stack frames (parsing,
/// hashing, encryption) that are dead once it returns but keep their bytes
/// until something deeper overwrites them; a memory dump would find them.
/// Called from a frame above the handlers, this wipes those dead frames.
/// Safe code: a zeroed array the optimizer must materialise, since
/// `black_box` may read it.
#[inline(never)]
pub fn scrub_stack<const N: usize>() {
    let mut area = [0u8; N];
    std::hint::black_box(&mut area);
}

/// Wipes the dead frames of the requests a runtime thread answered, when it
/// goes idle: the `xems` binary installs it as its runtime's
/// `on_thread_park` hook, which runs in the scheduler's frame, above every
/// task it polled. An idle server's stacks hold no request.
///
/// Scrubbing after every batch instead cost 32 KiB of writes per batch: at
/// pipeline depth 1, 5% of the server's CPU per request, and it pushed the
/// socket buffers and records of the other connections out of the cache
/// (the kernel's send path then missed too). A thread parks whenever it has
/// nothing to run, so under a light load this still scrubs after every few
/// requests; under a heavy one [`scrub_after_batch`] bounds the time.
pub fn scrub_idle_stack() {
    scrub_stack::<REQUEST_STACK_SCRUB>();
}

thread_local! {
    static BATCHES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Called after each batch of requests a connection answers: scrubs the
/// stack every [`BUSY_SCRUB_EVERY`] batches of this thread, so a thread too
/// busy to park (see [`scrub_idle_stack`]) keeps a request's dead frames
/// for at most that many batches, and a runtime without the idle hook (an
/// application embedding `serve_connection`) still gets them wiped.
pub fn scrub_after_batch() {
    let n = BATCHES.get().wrapping_add(1);
    BATCHES.set(n);
    if n.is_multiple_of(BUSY_SCRUB_EVERY) {
        scrub_stack::<REQUEST_STACK_SCRUB>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in a child process of its own (`--exact` plus an environment
    /// guard), since the changes are irreversible for the process.
    #[test]
    fn dumps_are_disabled() {
        xems_testkit::logs::capture();
        if std::env::var_os("XEMS_HARDEN_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args(["--exact", "harden::tests::dumps_are_disabled", "--nocapture"])
                .env("XEMS_HARDEN_CHILD", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
            assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
            return;
        }
        assert!(disable_core_dumps().is_empty());
        let core = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
        assert_eq!(rustix::process::dumpable_behavior().unwrap(), rustix::process::DumpableBehavior::NotDumpable);
    }
}
