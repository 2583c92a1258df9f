//! The `http` benchmark of xems: the same small axum app served without
//! sessions, with tower-sessions (`MemoryStore`, reading and modifying the
//! session on every request), with xems-axum rotating the token on every
//! request, and with xems-axum without rotation; each loaded over loopback
//! by one load generator with 64 keep-alive connections that carry their
//! cookie and update it from `Set-Cookie`, as browsers do.
//!
//! The binary prints tables and ends with one line `RESULT {json}` holding
//! every figure and the ratios `rotating_vs_tower_sessions` and
//! `rotating_vs_no_session` (throughput over throughput: above 1, xems
//! rotating is faster). [`run`] returns the same fields, so the workspace's
//! benchmark harness can call it as its `http` case.

mod apps;
mod cpu;
mod inproc;
mod load;
mod machine;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};

pub use apps::Case;
pub use load::{LoadConfig, LoadOutcome};
pub use machine::{Machine, cpu_busy_percent};

/// The targets of issue 4: xems rotating on every request against
/// tower-sessions (which never rotates) and against no sessions at all.
pub const TARGET_VS_TOWER_SESSIONS: f64 = 1.0;
/// See [`TARGET_VS_TOWER_SESSIONS`].
pub const TARGET_VS_NO_SESSION: f64 = 0.85;

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// A smoke run of a few seconds instead of the full run.
    pub quick: bool,
    /// Concurrent connections of the load generator.
    pub connections: usize,
    /// Worker threads of the server's runtime.
    pub server_threads: usize,
    /// Rounds over the four cases (interleaved, so a burst of other load on
    /// the machine hits every case alike); each case reports its median
    /// round.
    pub rounds: usize,
    /// Only these cases (for profiling one); all when empty. Ratios need
    /// all four.
    pub only: Vec<Case>,
    /// Measure in process only (no server, no load generator), for
    /// profiling.
    pub inproc_only: bool,
}

impl Options {
    /// The defaults of a mode.
    pub fn for_mode(quick: bool) -> Self {
        Options {
            quick,
            connections: 64,
            server_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            rounds: if quick { 1 } else { 3 },
            only: Vec::new(),
            inproc_only: false,
        }
    }

    fn load_config(&self) -> LoadConfig {
        if self.quick {
            LoadConfig {
                connections: self.connections,
                warmup: Duration::from_millis(200),
                duration: Duration::from_millis(700),
            }
        } else {
            LoadConfig {
                connections: self.connections,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(5),
            }
        }
    }
}

/// One case's figures (its median round).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseFigures {
    /// Requests per second.
    pub req_per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: f64,
    /// Non-200 responses over all rounds (a valid run has none).
    pub errors: u64,
    /// Share of responses that set a new cookie.
    pub set_cookie_share: f64,
    /// CPU time the server's threads spent per request, microseconds (user
    /// and system, from `/proc`; less sensitive to other load on the
    /// machine than throughput).
    pub server_cpu_us_per_req: f64,
    /// Requests per second of every round, in order.
    pub rounds: Vec<f64>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn us(ns: u64) -> f64 {
    round3(ns as f64 / 1000.0)
}

/// Runs the benchmark and returns the RESULT fields (without `bench`, `mode`
/// and `machine`, which the caller adds).
///
/// # Errors
///
/// A server cannot start, or the load generator cannot talk to it.
pub fn run(opts: &Options, mut progress: impl FnMut(&str)) -> Result<Map<String, Value>, String> {
    // In process first, on this thread, before any server runs.
    let inproc_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let inproc_time = if opts.quick { Duration::from_millis(300) } else { Duration::from_secs(2) };
    let mut inproc = Map::new();
    for case in Case::ALL.into_iter().filter(|c| opts.only.is_empty() || opts.only.contains(c)) {
        let ns = inproc_rt.block_on(inproc::ns_per_request(case, inproc_time))?;
        progress(&format!("in process  {:<16} {:>8.0} ns/request", case.name(), ns));
        inproc.insert(case.name().to_owned(), json!(round3(ns)));
    }
    for (name, rotate) in [("store_resolve_static", false), ("store_resolve_rotating", true)] {
        let ns = inproc_rt.block_on(inproc::store_resolve_ns(rotate, inproc_time))?;
        progress(&format!("in process  {name:<24} {ns:>8.0} ns (the engine alone)"));
        inproc.insert(name.to_owned(), json!(round3(ns)));
    }
    drop(inproc_rt);
    if opts.inproc_only {
        let mut fields = Map::new();
        fields.insert("inproc_ns_per_request".into(), Value::Object(inproc));
        return Ok(fields);
    }

    let server_threads = cpu::ThreadSet::default();
    let registry = server_threads.clone();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.server_threads.max(1))
        .thread_name("bench-server")
        .on_thread_start(move || registry.register_current())
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut addrs: Vec<(Case, SocketAddr)> = Vec::new();
    for case in Case::ALL.into_iter().filter(|c| opts.only.is_empty() || opts.only.contains(c)) {
        let listener = server_rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("bind a loopback port: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = case.router();
        server_rt.spawn(async move { axum::serve(listener, app).await });
        addrs.push((case, addr));
    }

    // The load generator: one thread, its own runtime.
    let load_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let cfg = opts.load_config();
    let mut runs: Vec<Vec<LoadOutcome>> = Case::ALL.iter().map(|_| Vec::new()).collect();
    for round in 0..opts.rounds {
        for (i, (case, addr)) in addrs.iter().enumerate() {
            let outcome = load_rt.block_on(load::run(*addr, case.login(), "/widget", cfg, &server_threads))?;
            progress(&format!(
                "round {}/{} {:<16} {:>10.0} req/s  p99 {:>8.1} us  server CPU {:>5.1} us/req  errors {}",
                round + 1,
                opts.rounds,
                case.name(),
                outcome.ok as f64 / outcome.elapsed.as_secs_f64(),
                outcome.latency.value_at_quantile(0.99) as f64 / 1000.0,
                outcome.server_cpu_us_per_req(),
                outcome.errors,
            ));
            runs[i].push(outcome);
        }
    }
    drop(server_rt);

    let mut fields = Map::new();
    let mut rates = Map::new();
    let mut cpu_costs = Map::new();
    for ((case, _), mut outcomes) in addrs.iter().zip(runs) {
        let rate = |o: &LoadOutcome| o.ok as f64 / o.elapsed.as_secs_f64();
        let rounds: Vec<f64> = outcomes.iter().map(|o| round3(rate(o))).collect();
        let errors = outcomes.iter().map(|o| o.errors).sum();
        outcomes.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        let median = &outcomes[outcomes.len() / 2];
        let figures = CaseFigures {
            req_per_s: round3(rate(median)),
            p50_us: us(median.latency.value_at_quantile(0.50)),
            p99_us: us(median.latency.value_at_quantile(0.99)),
            p999_us: us(median.latency.value_at_quantile(0.999)),
            errors,
            set_cookie_share: round3(median.cookies_set as f64 / median.ok.max(1) as f64),
            server_cpu_us_per_req: round3(median.server_cpu_us_per_req()),
            rounds,
        };
        rates.insert(case.name().to_owned(), json!(figures.req_per_s));
        cpu_costs.insert(case.name().to_owned(), json!(figures.server_cpu_us_per_req));
        fields.insert(case.name().to_owned(), serde_json::to_value(&figures).map_err(|e| e.to_string())?);
    }
    let r = |a: &str, b: &str| {
        let get = |k: &str| rates.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let (a, b) = (get(a), get(b));
        if b > 0.0 { round3(a / b) } else { 0.0 }
    };
    let vs_ts = r("xems_rotating", "tower_sessions");
    let vs_none = r("xems_rotating", "no_session");
    fields.insert("rotating_vs_tower_sessions".into(), json!(vs_ts));
    fields.insert("rotating_vs_no_session".into(), json!(vs_none));
    fields.insert("static_vs_no_session".into(), json!(r("xems_static", "no_session")));
    fields.insert("tower_sessions_vs_no_session".into(), json!(r("tower_sessions", "no_session")));
    fields.insert("rotating_vs_static".into(), json!(r("xems_rotating", "xems_static")));
    // CPU per request, as a ratio of costs (above 1: x costs more).
    let c = |a: &str, b: &str| {
        let get = |k: &str| cpu_costs.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let (a, b) = (get(a), get(b));
        if b > 0.0 { round3(a / b) } else { 0.0 }
    };
    fields.insert("rotating_cpu_over_tower_sessions".into(), json!(c("xems_rotating", "tower_sessions")));
    fields.insert("rotating_cpu_over_no_session".into(), json!(c("xems_rotating", "no_session")));
    fields.insert("inproc_ns_per_request".into(), Value::Object(inproc));
    fields.insert("connections".into(), json!(opts.connections));
    fields.insert("server_threads".into(), json!(opts.server_threads));
    fields.insert("rounds".into(), json!(opts.rounds));
    fields.insert(
        "targets".into(),
        json!({
            "rotating_vs_tower_sessions": { "min": TARGET_VS_TOWER_SESSIONS, "met": vs_ts >= TARGET_VS_TOWER_SESSIONS },
            "rotating_vs_no_session": { "min": TARGET_VS_NO_SESSION, "met": vs_none >= TARGET_VS_NO_SESSION },
        }),
    );
    Ok(fields)
}

/// Prints the tables of a [`run`]'s fields (cases, ratios, targets); returns
/// how many responses were errors.
pub fn print_tables(fields: &Map<String, Value>) -> u64 {
    println!(
        "\n  {:<16} {:>12} {:>10} {:>10} {:>10} {:>8} {:>12}",
        "case", "req/s", "p50", "p99", "p99.9", "errors", "set-cookie"
    );
    let mut errors = 0;
    for case in Case::ALL {
        let Some(f) = fields.get(case.name()) else { continue };
        errors += f["errors"].as_u64().unwrap_or(0);
        println!(
            "  {:<16} {:>12.0} {:>8.1}us {:>8.1}us {:>8.1}us {:>8} {:>11.0}%",
            case.name(),
            f["req_per_s"].as_f64().unwrap_or(0.0),
            f["p50_us"].as_f64().unwrap_or(0.0),
            f["p99_us"].as_f64().unwrap_or(0.0),
            f["p999_us"].as_f64().unwrap_or(0.0),
            f["errors"].as_u64().unwrap_or(0),
            f["set_cookie_share"].as_f64().unwrap_or(0.0) * 100.0,
        );
    }
    println!("\nratios (x_vs_y = x's throughput / y's; above 1 means x is faster)");
    for k in [
        "rotating_vs_tower_sessions",
        "rotating_vs_no_session",
        "static_vs_no_session",
        "tower_sessions_vs_no_session",
        "rotating_vs_static",
    ] {
        println!("  {k:<32} {:.3}", fields[k].as_f64().unwrap_or(0.0));
    }
    let targets = &fields["targets"];
    println!(
        "targets: rotating >= {:.2}x tower-sessions: {}; rotating >= {:.2}x no session: {}",
        TARGET_VS_TOWER_SESSIONS,
        if targets["rotating_vs_tower_sessions"]["met"] == json!(true) { "met" } else { "MISSED" },
        TARGET_VS_NO_SESSION,
        if targets["rotating_vs_no_session"]["met"] == json!(true) { "met" } else { "MISSED" },
    );
    errors
}
