//! `xems-bench-http [--quick]`: see the crate docs. Ends its stdout with one
//! line `RESULT {json}`; exits non-zero if any response was an error.

use std::process::ExitCode;

use clap::Parser;
use serde_json::{Value, json};
use xems_bench_http::{Case, Machine, Options};

/// The same axum app without sessions, with tower-sessions, and with
/// xems-axum (rotating on every request, and not), under one load generator.
#[derive(Debug, Parser)]
#[command(name = "xems-bench-http", version)]
struct Cli {
    /// A smoke run of a few seconds instead of the full run.
    #[arg(long)]
    quick: bool,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Rounds over the four cases (default: 1 quick, 3 full).
    #[arg(long)]
    rounds: Option<usize>,
    /// Worker threads of the server (default: one per CPU).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Run only this case (repeatable), for profiling: no_session,
    /// tower_sessions, xems_rotating, xems_static.
    #[arg(long, value_parser = parse_case)]
    only: Vec<Case>,
    /// Measure in process only (no sockets), for profiling.
    #[arg(long, hide = true)]
    inproc_only: bool,
}

fn parse_case(s: &str) -> Result<Case, String> {
    Case::from_name(s).ok_or_else(|| format!("unknown case {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut opts = Options::for_mode(cli.quick);
    opts.connections = cli.connections.max(1);
    if let Some(r) = cli.rounds {
        opts.rounds = r.max(1);
    }
    opts.only = cli.only.clone();
    opts.inproc_only = cli.inproc_only;
    if let Some(t) = cli.server_threads {
        opts.server_threads = t.max(1);
    }
    let machine = Machine::detect();
    println!("xems-bench http ({} mode)", if cli.quick { "quick" } else { "full" });
    println!("machine: {}", machine.summary());
    if machine.busy_before_percent > 10.0 {
        println!(
            "WARNING: the machine was {:.0}% busy with other work before the run: these figures are not worth writing down",
            machine.busy_before_percent
        );
    }
    println!(
        "load: {} keep-alive connections, one request at a time each, cookie carried and updated from Set-Cookie",
        opts.connections
    );
    let fields = match xems_bench_http::run(&opts, |line| println!("  {line}")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xems-bench-http: {e}");
            return ExitCode::FAILURE;
        }
    };

    if cli.inproc_only {
        println!("RESULT {}", Value::Object(fields));
        return ExitCode::SUCCESS;
    }
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
        xems_bench_http::TARGET_VS_TOWER_SESSIONS,
        if targets["rotating_vs_tower_sessions"]["met"] == json!(true) { "met" } else { "MISSED" },
        xems_bench_http::TARGET_VS_NO_SESSION,
        if targets["rotating_vs_no_session"]["met"] == json!(true) { "met" } else { "MISSED" },
    );

    let mut result = serde_json::Map::new();
    result.insert("bench".into(), json!("http"));
    result.insert("mode".into(), json!(if cli.quick { "quick" } else { "full" }));
    result.insert("machine".into(), serde_json::to_value(&machine).unwrap_or(Value::Null));
    result.extend(fields);
    println!("RESULT {}", Value::Object(result));
    if errors > 0 {
        eprintln!("xems-bench-http: {errors} responses were errors: the figures are invalid");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
