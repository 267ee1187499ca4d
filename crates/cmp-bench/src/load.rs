//! The load: `wrk` (installed from Debian's packages when missing), a Lua script per point, and
//! its report read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::service::{COLLECTION, Server};

/// A point of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// POST creates with unique display names over `connections` connections.
    Create {
        /// Concurrent connections.
        connections: u32,
    },
    /// GET by id of partners created beforehand, over `connections` connections.
    Get {
        /// Concurrent connections.
        connections: u32,
    },
}

impl Point {
    /// The point as the table names it.
    pub fn label(&self) -> String {
        match self {
            Self::Create { connections } => format!("POST create, {connections} connections"),
            Self::Get { connections } => format!("GET by id, {connections} connections"),
        }
    }

    fn connections(&self) -> u32 {
        match self {
            Self::Create { connections } | Self::Get { connections } => *connections,
        }
    }
}

/// How many partners a GET point reads, created before it starts.
const GET_SET: usize = 1000;

/// What one load measured.
#[derive(Debug, Clone, Copy)]
pub struct LoadResult {
    /// Requests per second.
    pub requests_per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Answers other than 2xx and 3xx.
    pub errors: u64,
}

/// `wrk`, found or installed.
pub struct Wrk(PathBuf);

/// Finds `wrk`, installing Debian's package when it is missing.
///
/// # Errors
/// When it is missing and cannot be installed.
pub fn ensure_wrk() -> anyhow::Result<Wrk> {
    if let Some(path) = which("wrk") {
        return Ok(Wrk(path));
    }
    println!("wrk is missing: installing Debian's package");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "wrk"])
        .status()
        .context("running apt-get")?;
    if !status.success() {
        // The package lists may be stale on a fresh machine.
        Command::new("apt-get").args(["update", "-q"]).status()?;
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .status()?;
        if !status.success() {
            bail!("apt-get install wrk failed");
        }
    }
    which("wrk").map(Wrk).context("wrk after installing it")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// One point against one server, ready to run.
pub struct Load<'a> {
    wrk: &'a Wrk,
    point: Point,
    url: String,
    script: PathBuf,
}

impl<'a> Load<'a> {
    /// Writes the point's script for `server` (creating the partners a GET point reads).
    ///
    /// # Errors
    /// When the script cannot be written or the partners created.
    pub fn prepare(
        wrk: &'a Wrk,
        point: Point,
        server: &Server,
        scratch: &Path,
    ) -> anyhow::Result<Self> {
        let headers = headers_table(server.authorization.as_deref());
        let run = uuid::Uuid::new_v4().simple().to_string();
        let script = match point {
            Point::Create { .. } => create_script(&headers, &run),
            Point::Get { .. } => {
                let mut ids = Vec::with_capacity(GET_SET);
                for n in 0..GET_SET {
                    ids.push(server.create(&format!("read {run} {n}"))?);
                }
                let list = ids
                    .iter()
                    .map(|id| format!("\"{id}\""))
                    .collect::<Vec<_>>()
                    .join(",");
                format!(
                    r#"{headers}
local ids = {{{list}}}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "{COLLECTION}/" .. ids[(counter % #ids) + 1], headers)
end
"#
                )
            }
        };
        let path = scratch.join(format!("{:?}-{run}.lua", server.kind()));
        std::fs::write(&path, script).context("writing the wrk script")?;
        Ok(Self {
            wrk,
            point,
            url: server.base_url(),
            script: path,
        })
    }

    /// A create point against our service on `port` (one of several replicas), whose requests
    /// carry `authorization`.
    ///
    /// # Errors
    /// When the script cannot be written.
    pub fn prepare_creates(
        wrk: &'a Wrk,
        connections: u32,
        port: u16,
        authorization: &str,
        scratch: &Path,
    ) -> anyhow::Result<Self> {
        let headers = headers_table(Some(authorization));
        let run = uuid::Uuid::new_v4().simple().to_string();
        let path = scratch.join(format!("creates-{port}-{run}.lua"));
        std::fs::write(&path, create_script(&headers, &run)).context("writing the wrk script")?;
        Ok(Self {
            wrk,
            point: Point::Create { connections },
            url: format!("http://127.0.0.1:{port}"),
            script: path,
        })
    }

    /// Loads the server for `duration` and reads wrk's report.
    ///
    /// # Errors
    /// When wrk fails or its report cannot be read.
    pub fn run(&self, duration: Duration) -> anyhow::Result<LoadResult> {
        let output = Command::new(&self.wrk.0)
            .arg("-t2")
            .arg(format!("-c{}", self.point.connections()))
            .arg(format!("-d{}s", duration.as_secs()))
            .arg("--latency")
            .arg("-s")
            .arg(&self.script)
            .arg(&self.url)
            .output()
            .context("running wrk")?;
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "wrk failed: {report}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse_report(&report).with_context(|| format!("reading wrk's report:\n{report}"))
    }
}

/// The script of a create point: unique display names per run, thread and request.
fn create_script(headers: &str, run: &str) -> String {
    format!(
        r#"{headers}
local threads = {{}}
function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end
local counter = 0
request = function()
  counter = counter + 1
  local body = '{{"displayName":"bench {run} ' .. thread_id .. ' ' .. counter .. '"}}'
  return wrk.format("POST", "{COLLECTION}", headers, body)
end
"#
    )
}

/// The Lua `headers` table every request carries.
fn headers_table(authorization: Option<&str>) -> String {
    let mut table =
        String::from("headers = {}\nheaders[\"Content-Type\"] = \"application/json\"\n");
    if let Some(authorization) = authorization {
        table.push_str(&format!(
            "headers[\"Authorization\"] = \"{authorization}\"\n"
        ));
    }
    table
}

/// Reads `Requests/sec`, the 50 % and 99 % latencies and the non-2xx count of a wrk report.
fn parse_report(report: &str) -> anyhow::Result<LoadResult> {
    let mut result = LoadResult {
        requests_per_second: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    for line in report.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(value)) => {
                result.requests_per_second = value.parse().context("Requests/sec")?;
            }
            (Some("50%"), Some(value)) => result.p50_ms = milliseconds(value)?,
            (Some("99%"), Some(value)) => result.p99_ms = milliseconds(value)?,
            (Some("Non-2xx"), _) => {
                result.errors = line
                    .rsplit(' ')
                    .next()
                    .and_then(|count| count.parse().ok())
                    .context("the non-2xx count")?;
            }
            _ => {}
        }
    }
    if result.requests_per_second == 0.0 {
        bail!("no Requests/sec line");
    }
    Ok(result)
}

/// A wrk duration (`850.00us`, `1.23ms`, `2.00s`) in milliseconds.
fn milliseconds(value: &str) -> anyhow::Result<f64> {
    let (number, factor) = if let Some(number) = value.strip_suffix("us") {
        (number, 0.001)
    } else if let Some(number) = value.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = value.strip_suffix('s') {
        (number, 1000.0)
    } else if let Some(number) = value.strip_suffix('m') {
        (number, 60_000.0)
    } else {
        bail!("'{value}' is not a wrk duration");
    };
    Ok(number.parse::<f64>().context("a duration")? * factor)
}
