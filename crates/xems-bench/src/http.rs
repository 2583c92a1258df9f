//! `xems-bench http`: the same small axum app without sessions, with
//! tower-sessions (`MemoryStore`, reading and modifying the session on every
//! request), with xems-axum rotating on every request and without rotation,
//! each loaded over loopback by one load generator with 64 keep-alive
//! connections carrying their cookie. The measurement lives in the
//! `xems-bench-http` crate (whose own binary adds profiling switches); this
//! module runs it and reports its fields.

use crate::report::Report;

/// Runs the http benchmark into `report`.
///
/// # Errors
///
/// A server cannot start or the load generator cannot reach it.
pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let opts = xems_bench_http::Options::for_mode(quick);
    println!(
        "load: {} keep-alive connections, one request at a time each, cookie carried and updated from Set-Cookie",
        opts.connections
    );
    let fields = xems_bench_http::run(&opts, |line| println!("  {line}")).map_err(anyhow::Error::msg)?;
    let errors = xems_bench_http::print_tables(&fields);
    for (k, v) in &fields {
        report.set(k, v);
    }
    if errors > 0 {
        anyhow::bail!("{errors} responses were errors: the figures are invalid");
    }
    Ok(())
}
