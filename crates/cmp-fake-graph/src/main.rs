//! `cmp-fake-graph`: the fake Graph as a process of its own, for crash tests that kill and
//! restart the service while Graph's state must live on.
//!
//! Prints `LISTENING http://127.0.0.1:PORT` once it accepts connections, then serves until it
//! is killed (or Ctrl-C). Its state lives in memory; read it over `GET /_fake/objects` and
//! `GET /_fake/stats`, and change its failures over `POST /_fake/options`.

use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;

use cmp_fake_graph::{FakeGraph, FakeGraphOptions, WriteThrottle};

const USAGE: &str = "\
usage: cmp-fake-graph [FLAGS]   (values as `--flag VALUE` or `--flag=VALUE`)
  --port N                          port on 127.0.0.1, 0 = any free port (default 0)
  --failure-rate F                  share of Graph calls that fail, 0..1 (default 0)
  --read-failure-rate F             share of reads that fail (default: --failure-rate)
  --failure-statuses S,S,...        statuses drawn for failures (default 429,500,502,503,504)
  --applied-before-failure-rate F   share of 5xx on POST that store the object anyway (default 0.5)
  --latency-ms MIN[,MAX]            added latency per Graph call (default 0)
  --retry-after VALUE               Retry-After sent with 429/503 (default 0.05)
  --retry-after-ms MIN,MAX          draw each failure's Retry-After from this range instead
  --write-throttle N,MS             at most N writes in any MS window, else 429 (default none)
  --filter-ignored[=BOOL]           answer $filter queries unfiltered (default false)
  --down[=BOOL]                     every Graph call answers 503 (default false)
  --page-size N                     objects per list page (default 100)
  --require-token=BOOL              401 without `Bearer fake-token` (default true)
  --seed N                          seed the random draws
  --help                            print this
";

#[tokio::main]
async fn main() -> ExitCode {
    let (port, options) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("cmp-fake-graph: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeGraph::start_on_port(port, options).await {
        Ok(fake) => fake,
        Err(error) => {
            eprintln!("cmp-fake-graph: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The parent reads this line to learn the port, so it must not sit in a buffer.
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "LISTENING {}", fake.uri())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler: serve until killed.
        std::future::pending::<()>().await;
    }
    match fake.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cmp-fake-graph: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The port and options from the command line, or `None` for `--help`.
fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<Option<(u16, FakeGraphOptions)>, String> {
    let mut port = 0;
    let mut options = FakeGraphOptions::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => port = parse(&flag, &value()?)?,
            "--failure-rate" => options.failure_rate = parse(&flag, &value()?)?,
            "--read-failure-rate" => options.read_failure_rate = Some(parse(&flag, &value()?)?),
            "--retry-after-ms" => {
                let range = value()?;
                let (min, max) = range.split_once(',').unwrap_or((&range, &range));
                options.retry_after_ms = Some((parse(&flag, min)?, parse(&flag, max)?));
            }
            "--write-throttle" => {
                let pair = value()?;
                let (writes, window) = pair
                    .split_once(',')
                    .ok_or_else(|| format!("{flag} takes WRITES,WINDOW_MS"))?;
                options.write_throttle = Some(WriteThrottle {
                    writes: parse(&flag, writes)?,
                    window_ms: parse(&flag, window)?,
                });
            }
            "--filter-ignored" => {
                options.filter_ignored = inline.as_deref().map_or(Ok(true), |v| parse(&flag, v))?;
            }
            "--failure-statuses" => {
                options.failure_statuses = value()?
                    .split(',')
                    .map(|status| parse(&flag, status))
                    .collect::<Result<_, _>>()?;
            }
            "--applied-before-failure-rate" => {
                options.applied_before_failure_rate = parse(&flag, &value()?)?;
            }
            "--latency-ms" => {
                let range = value()?;
                let (min, max) = range.split_once(',').unwrap_or((&range, &range));
                options.latency_ms = (parse(&flag, min)?, parse(&flag, max)?);
            }
            "--retry-after" => options.retry_after = value()?,
            // Booleans take no separate value, so `--down` alone reads as true.
            "--down" => options.down = inline.as_deref().map_or(Ok(true), |v| parse(&flag, v))?,
            "--require-token" => {
                options.require_token = inline.as_deref().map_or(Ok(true), |v| parse(&flag, v))?;
            }
            "--page-size" => options.page_size = parse(&flag, &value()?)?,
            "--seed" => options.seed = Some(parse(&flag, &value()?)?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Some((port, options)))
}

fn parse<T: FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag}: cannot parse {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> impl Iterator<Item = String> {
        line.split_whitespace().map(str::to_owned)
    }

    #[test]
    fn parse_args_reads_every_flag_in_both_forms() {
        let parsed = parse_args(args(
            "--port 8080 --failure-rate=0.5 --failure-statuses 429,503 \
             --applied-before-failure-rate 1 --latency-ms=5,10 --retry-after 2 --down \
             --page-size 7 --require-token=false --seed 42 --read-failure-rate 0.1 \
             --retry-after-ms 500,3000 --write-throttle=100,20000 --filter-ignored",
        ));

        let (port, options) = parsed.expect("valid").expect("not --help");
        assert_eq!(port, 8080);
        let expected = FakeGraphOptions {
            failure_rate: 0.5,
            failure_statuses: vec![429, 503],
            applied_before_failure_rate: 1.0,
            latency_ms: (5, 10),
            retry_after: "2".to_owned(),
            down: true,
            page_size: 7,
            require_token: false,
            seed: Some(42),
            read_failure_rate: Some(0.1),
            retry_after_ms: Some((500, 3_000)),
            write_throttle: Some(WriteThrottle {
                writes: 100,
                window_ms: 20_000,
            }),
            filter_ignored: true,
        };
        assert_eq!(options, expected);
    }

    #[test]
    fn parse_args_refuses_unknown_flags_and_bad_values() {
        for line in [
            "--bogus",
            "--port",
            "--port x",
            "--down=maybe",
            "--latency-ms 1,x",
        ] {
            assert!(parse_args(args(line)).is_err(), "{line}");
        }
    }
}
