//! CPU time of a set of threads, read from `/proc` (user and system time,
//! in clock ticks of 10 ms: precise enough over a window of a second).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// The threads of a runtime, registered as they start.
#[derive(Clone, Debug, Default)]
pub(crate) struct ThreadSet(Arc<Mutex<Vec<u32>>>);

impl ThreadSet {
    /// Adds the calling thread.
    pub(crate) fn register_current(&self) {
        // `/proc/thread-self` links to `<pid>/task/<tid>`.
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()));
        if let Some(tid) = tid {
            self.0.lock().push(tid);
        }
    }

    /// User plus system time of every registered thread so far.
    pub(crate) fn cpu_time(&self) -> Duration {
        let ticks: u64 = self.0.lock().iter().map(|tid| thread_ticks(*tid).unwrap_or(0)).sum();
        // USER_HZ is 100 on every Linux architecture we run on.
        Duration::from_millis(ticks * 10)
    }
}

fn thread_ticks(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
