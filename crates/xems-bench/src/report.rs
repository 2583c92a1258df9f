//! Output: human-readable tables, the machine description, and the single
//! `RESULT {json}` line every subcommand ends with.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::measure::{Measurement, TimerOverhead};

/// What the figures were measured on (one implementation, shared with the
/// `http` benchmark's own binary).
pub use xems_bench_http::{Machine, cpu_busy_percent};

/// `a / b` rounded to three decimals, or `None` when either is missing or
/// `b` is zero. Ratios named `x_vs_y` are always *x's throughput over y's*
/// (above 1: x is faster).
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => Some(round3(a / b)),
        _ => None,
    }
}

/// The median of `values` (the mean of the middle two, rounded to three
/// decimals, for an even count); `None` for none.
///
/// ```
/// use xems_bench::report::median;
///
/// assert_eq!(median(&[]), None);
/// assert_eq!(median(&[1.2, 0.8, 0.9]), Some(0.9));
/// assert_eq!(median(&[1.0, 0.8, 0.9, 1.2]), Some(0.95));
/// ```
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(round3((v[n / 2 - 1] + v[n / 2]) / 2.0)),
    }
}

/// Rounds to three decimals (for compact JSON).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Formats nanoseconds with a unit that keeps three significant figures.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Formats an operations-per-second figure.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 { format!("{:.2} M/s", r / 1e6) } else { format!("{:.1} k/s", r / 1e3) }
}

/// Prints a table of measurements under a title.
pub fn print_table(title: &str, rows: &[Measurement]) {
    let mut out = String::new();
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "  {:<32} {:>4} {:>12} {:>9} {:>9} {:>5} {:>9} {:>9} {:>9}",
        "case", "thr", "throughput", "ns/op", "cpu ns/op", "cpu%", "p50", "p99", "p99.9"
    );
    for m in rows {
        // CPU time is known only for in-process cases.
        let (cpu, share) = if m.cpu_ns_per_op > 0.0 {
            (format!("{:.1}", m.cpu_ns_per_op), format!("{:.0}", m.cpu_share * 100.0))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        let _ = writeln!(
            out,
            "  {:<32} {:>4} {:>12} {:>9.1} {:>9} {:>5} {:>9} {:>9} {:>9}",
            m.name,
            m.threads,
            fmt_rate(m.ops_per_s),
            m.ns_per_op,
            cpu,
            share,
            fmt_ns(m.latency.p50_ns as f64),
            fmt_ns(m.latency.p99_ns as f64),
            fmt_ns(m.latency.p999_ns as f64),
        );
    }
    print!("{out}");
}

/// Prints `name  value` lines for the ratios of a report.
pub fn print_ratios(ratios: &Map<String, Value>) {
    println!("\nratios (x_vs_y = x's throughput / y's; above 1 means x is faster)");
    for (k, v) in ratios {
        match v.as_f64() {
            Some(x) => println!("  {k:<44} {x:.3}"),
            None => println!("  {k:<44} n/a"),
        }
    }
}

/// A report under construction: the fields every `RESULT` line carries,
/// then the subcommand's own.
#[derive(Debug)]
pub struct Report {
    fields: Map<String, Value>,
}

impl Report {
    /// Starts a report for `bench` in the given mode.
    pub fn new(bench: &str, quick: bool, machine: &Machine, timer: &TimerOverhead) -> Self {
        let mut fields = Map::new();
        fields.insert("bench".into(), bench.into());
        fields.insert("mode".into(), if quick { "quick" } else { "full" }.into());
        fields.insert("machine".into(), to_value(machine));
        fields.insert("timer_overhead_ns".into(), to_value(timer));
        Report { fields }
    }

    /// Sets a field.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        self.fields.insert(key.to_owned(), to_value(&value));
    }

    /// Sets every ratio as a top-level field.
    pub fn set_ratios(&mut self, ratios: &Map<String, Value>) {
        for (k, v) in ratios {
            self.fields.insert(k.clone(), v.clone());
        }
    }

    /// Prints the `RESULT` line: the last line of the subcommand's stdout.
    pub fn print(self) {
        let line = serde_json::to_string(&Value::Object(self.fields)).expect("a JSON map serializes");
        println!("RESULT {line}");
    }
}

/// Serializes a value that cannot fail to serialize (plain structs, maps
/// with string keys, finite numbers).
pub fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_formats() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(fmt_ns(250.0), "250 ns");
        assert_eq!(fmt_ns(2_500.0), "2.50 us");
        assert_eq!(fmt_rate(2_500_000.0), "2.50 M/s");
    }
}
