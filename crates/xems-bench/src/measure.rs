//! The measurement core: run an operation on N OS threads (or N async tasks,
//! one current-thread runtime per thread) for a fixed time after a warm-up,
//! and report throughput and per-operation latency percentiles.
//!
//! # How latency is recorded
//!
//! Throughput is total operations over wall time, so it is never distorted
//! by the latency machinery beyond the small cost below.
//!
//! Latency is *sampled*: about one operation in every `sample_every` is
//! timed on its own (the gap between timed operations is drawn at random
//! with that mean, so sampling cannot fall into step with a periodic cost
//! such as a buffer refilled every 32 calls) with two reads of the CPU's time-stamp counter (`quanta`, about
//! 10 ns here; `std::time::Instant` costs about twice that through the vDSO)
//! and recorded in a thread-local `hdrhistogram`, merged when the threads
//! finish. The other operations run untimed. Sampling every 8th operation
//! keeps the timer's cost under 3 ns per operation on average, while a 5 s
//! run of a 300 ns operation still records about 2 million samples, plenty
//! for a p99.9. Each sampled latency includes one timer read; the
//! calibrated cost of a read is reported as `timer_overhead_ns` so a reader
//! can judge the error on sub-100 ns operations.
//!
//! Timing batches of operations and recording their averages (the other
//! classic trick) was rejected: it hides the very tail (a lock wait, a
//! resize) that p99 is meant to show.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// How long and how a case runs.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// OS threads running the operation at once.
    pub threads: usize,
    /// Untimed run before measuring, on every thread at once.
    pub warmup: Duration,
    /// Measured run.
    pub duration: Duration,
    /// Time one operation in this many (1 = every operation).
    pub sample_every: u32,
}

impl RunConfig {
    /// The defaults of a mode: `quick` is a CI smoke run (well under a second
    /// per case), otherwise a full run whose figures go into the docs.
    pub fn for_mode(quick: bool, threads: usize) -> Self {
        if quick {
            RunConfig {
                threads,
                warmup: Duration::from_millis(100),
                duration: Duration::from_millis(400),
                sample_every: 8,
            }
        } else {
            RunConfig { threads, warmup: Duration::from_secs(1), duration: Duration::from_secs(5), sample_every: 8 }
        }
    }

    /// The same with another thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The same with another sampling interval.
    pub fn with_sample_every(mut self, n: u32) -> Self {
        self.sample_every = n.max(1);
        self
    }
}

/// Latency percentiles, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Operations timed.
    pub samples: u64,
    /// Mean.
    pub mean_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest.
    pub max_ns: u64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.50),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

/// The outcome of one case.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Case name, e.g. `hashmap/get+insert`.
    pub name: String,
    /// Threads (or connections, for the load generator).
    pub threads: usize,
    /// Operations completed in the measured window.
    pub ops: u64,
    /// Length of the measured window.
    pub secs: f64,
    /// Operations per second, all threads together.
    pub ops_per_s: f64,
    /// Wall nanoseconds per operation on one thread (`threads / ops_per_s`):
    /// for one thread, the cost of one operation.
    pub ns_per_op: f64,
    /// Latency of sampled operations.
    pub latency: Latency,
    /// One operation in this many was timed (on average).
    pub sample_every: u32,
    /// CPU nanoseconds the measuring threads ran per operation (from
    /// `/proc/thread-self/schedstat`; 0 when unavailable). Unlike `ns_per_op`
    /// it does not count time the threads were preempted by other work, so
    /// it is the steadier figure on a shared machine; it does count spinning,
    /// and not time parked on a lock.
    pub cpu_ns_per_op: f64,
    /// CPU time of the measuring threads over `threads` x wall time: about
    /// 1 for a CPU-bound case on an idle machine, lower when other work took
    /// the CPUs or the threads blocked.
    pub cpu_share: f64,
}

impl Measurement {
    /// Assembles a measurement from its raw parts.
    pub fn new(name: impl Into<String>, threads: usize, ops: u64, elapsed: Duration, hist: &Histogram<u64>) -> Self {
        let secs = elapsed.as_secs_f64();
        let ops_per_s = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
        let ns_per_op = if ops_per_s > 0.0 { threads as f64 * 1e9 / ops_per_s } else { 0.0 };
        Measurement {
            name: name.into(),
            threads,
            ops,
            secs,
            ops_per_s,
            ns_per_op,
            latency: Latency::from_histogram(hist),
            sample_every: 1,
            cpu_ns_per_op: 0.0,
            cpu_share: 0.0,
        }
    }

    /// Adds the CPU time the measuring threads used.
    pub fn with_cpu_ns(mut self, cpu_ns: u64) -> Self {
        if self.ops > 0 && self.secs > 0.0 {
            self.cpu_ns_per_op = cpu_ns as f64 / self.ops as f64;
            self.cpu_share = cpu_ns as f64 / (self.secs * 1e9 * self.threads as f64);
        }
        self
    }
}

/// CPU nanoseconds the calling thread has run, from
/// `/proc/thread-self/schedstat` (`None` without it).
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU nanoseconds every thread of process `pid` has run so far, summed
/// from `/proc/PID/task/*/schedstat` (`None` when the process is gone).
/// Threads that exited before the call are not counted, so read it across
/// a window where the server's threads live on (tokio workers do).
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        total += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(total)
}

/// A histogram of nanoseconds from 1 ns to 100 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// The shared TSC clock (calibrated once).
fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// What one thread brings back.
struct ThreadOutcome {
    ops: u64,
    hist: Histogram<u64>,
    cpu_ns: u64,
}

/// The per-thread loop state shared by the sync and async runners.
struct Recorder {
    hist: Histogram<u64>,
    ops: u64,
    sample_every: u32,
    deadline: quanta::Instant,
    jitter: FastRng,
}

impl Recorder {
    /// Starts measuring now, for `duration`.
    fn start(sample_every: u32, duration: Duration) -> Self {
        let seed = clock().raw();
        Recorder {
            hist: new_histogram(),
            ops: 0,
            sample_every: sample_every.max(1),
            deadline: clock().now() + duration,
            jitter: FastRng::new(seed),
        }
    }

    /// Operations until the next timed one, the timed one included: uniform
    /// in `1..=2k-1` (mean `k`), so that sampling cannot fall into step with
    /// a periodic cost (a buffer refilled every 32 calls, a map resize).
    #[inline]
    fn next_gap(&mut self) -> u32 {
        if self.sample_every == 1 { 1 } else { 1 + self.jitter.below(2 * self.sample_every as usize - 1) as u32 }
    }

    /// Records one timed operation; `true` once the deadline has passed.
    #[inline]
    fn record(&mut self, start: quanta::Instant, end: quanta::Instant, gap: u32) -> bool {
        let ns = (end.duration_since(start).as_nanos() as u64).max(1);
        // Out-of-range values are clamped rather than dropped.
        let _ = self.hist.record(ns.min(self.hist.high()));
        self.ops += u64::from(gap);
        end >= self.deadline
    }
}

fn merge(name: &str, cfg: &RunConfig, outcomes: Vec<ThreadOutcome>, elapsed: Duration) -> Measurement {
    let mut hist = new_histogram();
    let (mut ops, mut cpu_ns) = (0, 0);
    for o in &outcomes {
        hist.add(&o.hist).expect("histograms of one shape merge");
        ops += o.ops;
        cpu_ns += o.cpu_ns;
    }
    let mut m = Measurement::new(name, cfg.threads, ops, elapsed, &hist).with_cpu_ns(cpu_ns);
    m.sample_every = cfg.sample_every.max(1);
    m
}

/// Runs a synchronous operation on `cfg.threads` OS threads.
///
/// `make_op(i)` builds thread `i`'s operation (on that thread), so each
/// thread can own its state (its keys, its buffers). Every thread warms up,
/// then all start measuring together.
pub fn run_threads<M, O>(name: &str, cfg: &RunConfig, make_op: M) -> Measurement
where
    M: Fn(usize) -> O + Sync,
    O: FnMut(),
{
    let start_line = Barrier::new(cfg.threads + 1);
    let (outcomes, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|i| {
                let (start_line, make_op) = (&start_line, &make_op);
                s.spawn(move || {
                    // A panic before the start line must still reach it, or
                    // the other threads and the caller would wait forever.
                    let prepared = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let mut op = make_op(i);
                        let warm_until = Instant::now() + cfg.warmup;
                        while Instant::now() < warm_until {
                            for _ in 0..64 {
                                op();
                            }
                        }
                        op
                    }));
                    start_line.wait();
                    let mut op = prepared.unwrap_or_else(|p| std::panic::resume_unwind(p));
                    let cpu0 = thread_cpu_ns();
                    let mut rec = Recorder::start(cfg.sample_every, cfg.duration);
                    let c = clock();
                    loop {
                        let gap = rec.next_gap();
                        for _ in 1..gap {
                            op();
                        }
                        let t0 = c.now();
                        op();
                        let t1 = c.now();
                        if rec.record(t0, t1, gap) {
                            break;
                        }
                    }
                    let cpu_ns = match (cpu0, thread_cpu_ns()) {
                        (Some(a), Some(b)) => b.saturating_sub(a),
                        _ => 0,
                    };
                    ThreadOutcome { ops: rec.ops, hist: rec.hist, cpu_ns }
                })
            })
            .collect();
        start_line.wait();
        let t0 = Instant::now();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect();
        (outcomes, t0.elapsed())
    });
    merge(name, cfg, outcomes, elapsed)
}

/// Runs an asynchronous operation on `cfg.threads` OS threads, each driving
/// a loop of `op().await` on its own current-thread tokio runtime (how a
/// multi-threaded server's workers would call an async store).
pub fn run_async_threads<M, O, F>(name: &str, cfg: &RunConfig, make_op: M) -> Measurement
where
    M: Fn(usize) -> O + Sync,
    O: FnMut() -> F,
    F: Future<Output = ()>,
{
    let start_line = Barrier::new(cfg.threads + 1);
    let (outcomes, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|i| {
                let (start_line, make_op) = (&start_line, &make_op);
                s.spawn(move || {
                    // As in `run_threads`: reach the start line even after a panic.
                    let prepared = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let rt =
                            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
                        let mut op = make_op(i);
                        rt.block_on(async {
                            let warm_until = Instant::now() + cfg.warmup;
                            while Instant::now() < warm_until {
                                for _ in 0..64 {
                                    op().await;
                                }
                            }
                        });
                        (rt, op)
                    }));
                    start_line.wait();
                    let (rt, mut op) = prepared.unwrap_or_else(|p| std::panic::resume_unwind(p));
                    let cpu0 = thread_cpu_ns();
                    let mut rec = Recorder::start(cfg.sample_every, cfg.duration);
                    let c = clock();
                    rt.block_on(async {
                        loop {
                            let gap = rec.next_gap();
                            for _ in 1..gap {
                                op().await;
                            }
                            let t0 = c.now();
                            op().await;
                            let t1 = c.now();
                            if rec.record(t0, t1, gap) {
                                break;
                            }
                        }
                    });
                    let cpu_ns = match (cpu0, thread_cpu_ns()) {
                        (Some(a), Some(b)) => b.saturating_sub(a),
                        _ => 0,
                    };
                    ThreadOutcome { ops: rec.ops, hist: rec.hist, cpu_ns }
                })
            })
            .collect();
        start_line.wait();
        let t0 = Instant::now();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect();
        (outcomes, t0.elapsed())
    });
    merge(name, cfg, outcomes, elapsed)
}

/// The cost of one timer read, in nanoseconds, for `quanta` and for
/// `std::time::Instant` (the median of many back-to-back reads).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TimerOverhead {
    /// One `quanta::Clock::now` read (a TSC read and a scaling), as used by
    /// the runners.
    pub quanta_ns: f64,
    /// One `Instant::now()` read.
    pub instant_ns: f64,
}

/// Measures [`TimerOverhead`].
pub fn timer_overhead() -> TimerOverhead {
    const N: u32 = 200_000;
    let c = clock();
    let t_base = c.now();
    let t0 = Instant::now();
    let mut acc = 0u64;
    for _ in 0..N {
        acc = acc.wrapping_add(c.now().duration_since(t_base).as_nanos() as u64);
    }
    let quanta_ns = t0.elapsed().as_nanos() as f64 / f64::from(N);
    std::hint::black_box(acc);
    let t0 = Instant::now();
    let mut last = t0;
    for _ in 0..N {
        last = std::hint::black_box(Instant::now());
    }
    let instant_ns = (last - t0).as_nanos() as f64 / f64::from(N);
    TimerOverhead { quanta_ns, instant_ns }
}

/// The latency of a dependent random load (pointer chasing) over a
/// working set of `bytes`, in nanoseconds: what a cache miss costs on this
/// machine, which bounds every store whose working set outgrows the caches.
pub fn dependent_load_ns(bytes: usize) -> f64 {
    let n = (bytes / 8).max(2);
    // A random single cycle through all slots (Sattolo's shuffle).
    let mut next: Vec<usize> = (0..n).collect();
    let mut rng = FastRng::new(0x5eed);
    for i in (1..n).rev() {
        next.swap(i, rng.below(i));
    }
    let steps = 2_000_000;
    let mut p = 0;
    let t0 = Instant::now();
    for _ in 0..steps {
        p = next[p];
    }
    std::hint::black_box(p);
    t0.elapsed().as_nanos() as f64 / f64::from(steps)
}

/// A stop flag shared by cooperating loops (for example a background writer
/// that runs while a case is measured).
#[derive(Debug, Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    /// Asks the loops to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A tiny, fast, non-cryptographic generator for picking keys in loops
/// (xorshift64*); never used for anything secret.
#[derive(Clone, Debug)]
pub struct FastRng(u64);

impl FastRng {
    /// A generator from a seed (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        FastRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0), with negligible bias for the small `n` used here.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_count_and_sample() {
        let cfg = RunConfig {
            threads: 2,
            warmup: Duration::from_millis(5),
            duration: Duration::from_millis(30),
            sample_every: 4,
        };
        let m = run_threads("spin", &cfg, |_| {
            let mut x = 0u64;
            move || {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        });
        assert_eq!(m.threads, 2);
        assert!(m.ops > m.latency.samples);
        // Gaps average 4: the sample count is close to a quarter of the ops.
        let per_sample = m.ops as f64 / m.latency.samples as f64;
        assert!((3.5..4.5).contains(&per_sample), "{per_sample}");
        assert!(m.secs >= 0.025, "{m:?}");
        assert!(m.cpu_ns_per_op > 0.0 && m.cpu_share > 0.0, "{m:?}");

        let m = run_async_threads("async", &cfg.with_threads(1), |_| || async { tokio::task::yield_now().await });
        assert!(m.ops > 0);
        assert!(m.latency.p50_ns <= m.latency.p99_ns && m.latency.p99_ns <= m.latency.max_ns);
    }

    #[test]
    fn a_panicking_setup_fails_the_run_instead_of_hanging() {
        let cfg = RunConfig {
            threads: 2,
            warmup: Duration::from_millis(1),
            duration: Duration::from_millis(5),
            sample_every: 1,
        };
        let r = std::panic::catch_unwind(|| {
            run_threads("boom", &cfg, |i| {
                assert!(i == 0, "thread {i} fails its setup");
                || {}
            })
        });
        assert!(r.is_err());
        let r = std::panic::catch_unwind(|| {
            run_async_threads("boom", &cfg, |i| {
                assert!(i == 0, "thread {i} fails its setup");
                || async {}
            })
        });
        assert!(r.is_err());
    }

    #[test]
    fn fast_rng_spreads() {
        let mut r = FastRng::new(0);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
