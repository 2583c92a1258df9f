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
    let errors = xems_bench_http::print_tables(&fields);

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
