//! `cmp-bench`: our service against a bare axum + sqlx server on the same stack, side by side.
//!
//! `cargo run --release -p cmp-bench` builds the service in release, starts the bare server
//! (this binary, `baseline` mode) and the service on loopback ports, and loads them one after
//! the other, alternating, with `wrk` (installed from Debian's packages when missing): POST
//! creates at 16 and 64 connections and GET by id at 16. It prints requests per second,
//! p50/p99 latency and peak RSS for each, with our/baseline ratios. It asserts nothing; it is
//! not part of `cargo test`. See `docs/benchmarks.md`.
//!
//! # Layout
//! - `baseline.rs`: the bare server: one `INSERT` of the raw body per POST, one `SELECT` per
//!   GET, SQLite with WAL and `synchronous=FULL`, no validation, auth or logging.
//! - `service.rs`: building and starting our service, and minting its token.
//! - `load.rs`: `wrk`: installing it, its scripts, and reading its report.
//! - `report.rs`: the table.
//! - `soak.rs`: `cmp-bench soak`, delivery under Graph's throttle and failures (not wrk).
//! - `replicas.rs`: `cmp-bench replicas`, one and three replicas on one PostgreSQL database:
//!   creates per second, and the drain of a backlog against Graph's throttle.

mod baseline;
mod load;
mod replicas;
mod report;
mod service;
mod soak;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::load::{Load, Point};
use crate::report::{Measured, Row};
use crate::service::{Server, ServerKind};

/// How the benchmark runs, from its command line.
struct Options {
    /// Seconds each point is loaded for.
    seconds: u64,
    /// How many times the whole table is measured.
    runs: u32,
}

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.first().map(String::as_str) {
        Some("baseline") => {
            let port: u16 = arguments
                .get(1)
                .context("baseline PORT DATABASE")?
                .parse()
                .context("the port")?;
            let database = PathBuf::from(arguments.get(2).context("baseline PORT DATABASE")?);
            baseline::serve(port, &database)
        }
        Some("soak") => soak::run(&soak::parse(&arguments[1..])?),
        Some("replicas") => replicas::run(&replicas::parse(&arguments[1..])?),
        Some("--help" | "-h") => {
            println!(
                "usage: cmp-bench [--seconds N] [--runs N]\n  \
                 loads the bare server and our service side by side and prints the table\n\
                 usage: cmp-bench soak [--seed N] [--fault-seconds N] [--outage-seconds N] [--creates N]\n  \
                 [--clients N] [--kills N] [--drain-seconds N] [--service PATH]\n  \
                 delivery to a throttled, failing fake Graph, then after healing (docs/benchmarks.md)\n\
                 usage: cmp-bench replicas [--postgres URL] [--seconds N] [--drain-seconds N]\n  \
                 one and three replicas on one PostgreSQL database (docs/benchmarks.md)"
            );
            Ok(())
        }
        _ => run(&parse_options(&arguments)?),
    }
}

fn parse_options(arguments: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 10,
        runs: 1,
    };
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{word} needs a value"))?;
        match word.as_str() {
            "--seconds" => options.seconds = value.parse().context("--seconds")?,
            "--runs" => options.runs = value.parse().context("--runs")?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

fn run(options: &Options) -> anyhow::Result<()> {
    let wrk = load::ensure_wrk()?;
    let service = service::build_release()?;
    let duration = Duration::from_secs(options.seconds);
    let points = [
        Point::Create { connections: 16 },
        Point::Create { connections: 64 },
        Point::Get { connections: 16 },
    ];
    for run in 1..=options.runs {
        println!(
            "\nrun {run} of {}, {} s per point",
            options.runs, options.seconds
        );
        let scratch = tempfile::tempdir().context("a scratch directory")?;
        let mut bare = Server::start(ServerKind::Baseline, scratch.path(), &service)?;
        let mut ours = Server::start(ServerKind::Ours, scratch.path(), &service)?;
        let mut rows = Vec::new();
        for point in points {
            let mut measured = Vec::new();
            // Alternate: the bare server, then ours, on the same machine state.
            for server in [&mut bare, &mut ours] {
                let load = Load::prepare(&wrk, point, server, scratch.path())?;
                let result = load.run(duration)?;
                measured.push(Measured {
                    result,
                    peak_rss_kib: server.peak_rss_kib()?,
                });
            }
            let ours_measured = measured.pop().context("ours was measured")?;
            let bare_measured = measured.pop().context("bare was measured")?;
            rows.push(Row {
                point,
                bare: bare_measured,
                ours: ours_measured,
            });
        }
        println!("{}", report::table(&rows));
        bare.stop();
        ours.stop();
    }
    Ok(())
}
