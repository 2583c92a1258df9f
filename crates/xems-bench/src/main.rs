//! `xems-bench`: xems measured side by side with the peers a user would pick
//! instead, in one run, reported as ratios.
//!
//! Every subcommand prints human-readable tables, then ends its stdout with
//! exactly one line `RESULT {json}` holding all figures and ratios. Ratios
//! named `x_vs_y` are x's throughput over y's: above 1, x is faster.
//!
//! `--quick` is a CI smoke run of a few seconds; the default full mode gives
//! the figures written to `docs/BENCHMARKS.md`. Build with `--release`.

use clap::{Args, Parser, Subcommand};
use xems_bench::measure::timer_overhead;
use xems_bench::report::{Machine, Report};
use xems_bench::{crypto, engine, http, memory, server, soak, vault};

/// Benchmarks of xems against the stores a user would pick instead.
#[derive(Debug, Parser)]
#[command(name = "xems-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every benchmark takes.
#[derive(Debug, Args)]
struct Common {
    /// A CI smoke run of a few seconds instead of the full run.
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The embedded engine against tower-sessions' MemoryStore, moka and a
    /// sharded HashMap; memory per session.
    Engine(Common),
    /// `xems serve` against redis-server over loopback (50 connections,
    /// pipeline depth 1 and 16).
    Server(Common),
    /// An axum app without sessions, with tower-sessions, and with xems-axum.
    Http(Common),
    /// Vault persistence under each fsync policy against Redis AOF.
    Vault(Common),
    /// The Redis backend's scripted rotation against naive round trips.
    Redis(Common),
    /// The cryptographic primitives of xems-core against the alternatives.
    Crypto(Common),
    /// Load and soak of `xems serve`: 10,000 connections held, 25,000 users
    /// rotating for 60 s; fails if a resolution within grace fails, a token
    /// is accepted after its grace, or the server's memory grows.
    Soak(Common),
    /// Prints the benchmark subcommands, one per line (for scripts that run
    /// them all).
    List,
    /// Internal: fill one store in a fresh process and print its memory use.
    #[command(hide = true)]
    MemoryChild {
        /// The case (see `engine::MEMORY_CASES`).
        #[arg(long)]
        case: String,
        /// Entries to insert.
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (name, common) = match &cli.command {
        Command::MemoryChild { case, entries } => return memory::child_main(case, *entries),
        Command::List => {
            for name in ["crypto", "engine", "server", "http", "vault", "redis", "soak"] {
                println!("{name}");
            }
            return Ok(());
        }
        Command::Engine(c) => ("engine", c),
        Command::Server(c) => ("server", c),
        Command::Http(c) => ("http", c),
        Command::Vault(c) => ("vault", c),
        Command::Redis(c) => ("redis", c),
        Command::Crypto(c) => ("crypto", c),
        Command::Soak(c) => ("soak", c),
    };
    let machine = Machine::detect();
    let timer = timer_overhead();
    println!("xems-bench {name} ({} mode)", if common.quick { "quick" } else { "full" });
    println!("machine: {}", machine.summary());
    println!("timer: quanta {:.1} ns/read, Instant {:.1} ns/read", timer.quanta_ns, timer.instant_ns);
    if machine.busy_before_percent > 10.0 {
        println!(
            "WARNING: the machine was {:.0}% busy with other work before the run: these figures are not worth writing down",
            machine.busy_before_percent
        );
    }
    let mut report = Report::new(name, common.quick, &machine, &timer);
    let mut passed = true;
    match &cli.command {
        Command::Engine(c) => engine::run(c.quick, &mut report)?,
        Command::Server(c) => server::run(c.quick, &mut report)?,
        Command::Crypto(c) => crypto::run(c.quick, &mut report),
        Command::Http(c) => http::run(c.quick, &mut report)?,
        Command::Vault(c) => vault::run(c.quick, &mut report)?,
        Command::Redis(_) => pending(&mut report, "needs the xems-redis crate (issue 6)"),
        Command::Soak(c) => passed = soak::run(c.quick, &mut report)?,
        Command::MemoryChild { .. } | Command::List => unreachable!("handled above"),
    }
    report.print();
    // The RESULT line is printed either way; a broken invariant still fails
    // the run (non-zero exit), so CI's quick run catches it.
    anyhow::ensure!(passed, "{name}: invariants broken (see above)");
    Ok(())
}

/// A benchmark whose subject has not landed: says so, in the table and in
/// the RESULT line, rather than printing made-up figures.
fn pending(report: &mut Report, why: &str) {
    println!("\nnot measured yet: {why}");
    report.set("pending", why);
}
