//! `cmp-bench soak`: delivery under Graph's real throttle and failures, then after healing.
//!
//! The fake Graph (in this process, on loopback) enforces Graph's write throttle (100 writes in
//! any 20 s, else 429 with `Retry-After`), fails 30 % of writes and 10 % of reads with
//! 429/500/502/503/504 (half of the failed POSTs applied anyway, `Retry-After` 0.5 to 3 s),
//! adds 50 to 500 ms to every call, and goes down for a stretch. Our release service runs in
//! `graph` mode against it with the write budget and timings below; 16 clients create
//! partners until the planned number is acknowledged, and the service is killed with SIGKILL
//! and restarted a few times. Then the fake heals and the backlog drains. The run prints:
//! writes offered to Graph per second during the faults as a share of the budget, the drain
//! rate after healing as a share of the budget, ack latency p50/p99, provoked 429s, calls
//! inside a `Retry-After`, and partners lost or duplicated. It asserts nothing.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cmp_fake_graph::{
    FakeGraph, FakeGraphOptions, FakeGraphStats, RetryAfterBreach, WriteThrottle,
};

use crate::service::{self, COLLECTION, ServiceBinary};

/// The write budget the service is configured with, per second.
const WRITE_RATE: f64 = 4.5;

/// How the soak runs, from its command line.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Seeds the fake's failures (and the names).
    pub seed: u64,
    /// Seconds the faults last.
    pub fault_seconds: u64,
    /// Seconds of the outage inside the faults (starting a third of the way in).
    pub outage_seconds: u64,
    /// Creates to have acknowledged.
    pub creates: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// SIGKILLs of the service during the faults.
    pub kills: u32,
    /// Longest wait for the backlog to drain after healing.
    pub drain_seconds: u64,
    /// A `cmp-server` binary to run instead of building this workspace's, e.g. one built
    /// from an earlier commit for a before/after comparison.
    pub service: Option<std::path::PathBuf>,
}

impl Default for SoakOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            fault_seconds: 60,
            outage_seconds: 20,
            creates: 400,
            clients: 16,
            kills: 2,
            drain_seconds: 240,
            service: None,
        }
    }
}

/// Parses `soak` flags (`--seed N --fault-seconds N --outage-seconds N --creates N --clients N
/// --kills N --drain-seconds N --service PATH`).
///
/// # Errors
/// On an unknown flag or a bad value.
pub fn parse(arguments: &[String]) -> anyhow::Result<SoakOptions> {
    let mut options = SoakOptions::default();
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{word} needs a value"))?;
        match word.as_str() {
            "--seed" => options.seed = value.parse().context("--seed")?,
            "--fault-seconds" => {
                options.fault_seconds = value.parse().context("--fault-seconds")?
            }
            "--outage-seconds" => {
                options.outage_seconds = value.parse().context("--outage-seconds")?;
            }
            "--creates" => options.creates = value.parse().context("--creates")?,
            "--clients" => options.clients = value.parse().context("--clients")?,
            "--kills" => options.kills = value.parse().context("--kills")?,
            "--drain-seconds" => {
                options.drain_seconds = value.parse().context("--drain-seconds")?
            }
            "--service" => options.service = Some(value.into()),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

/// Graph's throttle and the faults of the soak.
fn faulty(seed: u64) -> FakeGraphOptions {
    FakeGraphOptions {
        failure_rate: 0.3,
        read_failure_rate: Some(0.1),
        failure_statuses: vec![429, 500, 502, 503, 504],
        applied_before_failure_rate: 0.5,
        latency_ms: (50, 500),
        retry_after_ms: Some((500, 3_000)),
        write_throttle: Some(graph_throttle()),
        seed: Some(seed),
        ..FakeGraphOptions::default()
    }
}

/// Graph's real write throttle: 100 writes in any 20 s.
fn graph_throttle() -> WriteThrottle {
    WriteThrottle {
        writes: 100,
        window_ms: 20_000,
    }
}

/// Graph healed: no injected failure, same latency and throttle.
fn healed() -> FakeGraphOptions {
    FakeGraphOptions {
        latency_ms: (50, 500),
        write_throttle: Some(graph_throttle()),
        ..FakeGraphOptions::default()
    }
}

/// Our service in `graph` mode against the fake, restartable on the same files.
struct Service {
    binary: ServiceBinary,
    /// The working folder.
    folder: std::path::PathBuf,
    environment: Vec<(String, String)>,
    port: u16,
    authorization: String,
    /// A token with the operator role, for reading the outbox during the drain.
    operator: String,
    child: Option<Child>,
    /// Every SIGKILL and the restart after it.
    restarts: Vec<Restart>,
}

/// One SIGKILL of the service and its restart.
#[derive(Debug, Clone, Copy)]
struct Restart {
    /// When the killed process was gone.
    killed: Instant,
    /// When its successor listened.
    listening: Instant,
}

impl Service {
    fn start(binary: ServiceBinary, scratch: &Path, fake: &FakeGraph) -> anyhow::Result<Self> {
        let port = service::free_port()?;
        let mut environment = service::service_environment(&scratch.join("service"), port);
        environment.extend(
            [
                ("CMP__GRAPH__MODE", "graph".to_owned()),
                (
                    "CMP__GRAPH__TENANT_ID",
                    "72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned(),
                ),
                ("CMP__GRAPH__CLIENT__ROOT", fake.graph_root()),
                ("CMP__GRAPH__CLIENT__AUTHORITY", fake.authority()),
                (
                    "CMP__GRAPH__CLIENT__CLIENT_ID",
                    "11111111-2222-3333-4444-555555555555".to_owned(),
                ),
                (
                    "CMP__GRAPH__CLIENT__CLIENT_SECRET",
                    "fake-secret".to_owned(),
                ),
                (
                    "CMP__GRAPH__CLIENT__WRITE_RATE_PER_SECOND",
                    WRITE_RATE.to_string(),
                ),
                ("CMP__GRAPH__CLIENT__REQUEST_TIMEOUT", "10s".to_owned()),
                ("CMP__OUTBOX__INLINE_DEADLINE", "3s".to_owned()),
                ("CMP__OUTBOX__SETTLE", "10s".to_owned()),
                ("CMP__OUTBOX__LEASE", "30s".to_owned()),
                ("CMP__OUTBOX__RETRY_BASE", "1s".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
        );
        // Run from the scratch folder on the binary's compiled-in defaults, so that a binary
        // built from another commit never reads this checkout's configuration files.
        let folder = scratch.to_path_buf();
        let mint = |roles: &[&str]| binary.mint_authorization(&environment, &folder, roles);
        let authorization = mint(&[])?;
        let operator = mint(&["CompliancePartners.Operate"])?;
        let mut service = Self {
            binary,
            folder,
            environment,
            port,
            authorization,
            operator,
            child: None,
            restarts: Vec::new(),
        };
        service.spawn()?;
        Ok(service)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join("cmp-soak-service.log"))
            .context("the service log")?;
        let child = Command::new(&self.binary.path)
            .envs(
                self.environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .current_dir(&self.folder)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting our service")?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("our service did not listen within 30 s")
    }

    /// SIGKILL, then start again on the same files and port.
    fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let killed = Instant::now();
        self.spawn()?;
        self.restarts.push(Restart {
            killed,
            listening: Instant::now(),
        });
        Ok(())
    }

    /// What the outbox holds now: rows in flight, waiting rows due, and waiting rows still in
    /// their back-off. `None` when the service does not answer.
    fn outbox_sample(&self) -> Option<OutboxSample> {
        let (status, body) = service::request(
            self.port,
            Some(&self.operator),
            "GET",
            "/admin/outbox?limit=1000",
            None,
        )
        .ok()?;
        if status != 200 {
            return None;
        }
        let rows: serde_json::Value = serde_json::from_str(&body).ok()?;
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let now = cmp_domain::Timestamp::from_unix_seconds(
            i64::try_from(since_epoch.as_secs()).ok()?,
            since_epoch.subsec_nanos() / 100,
        )
        .ok()?;
        let mut sample = OutboxSample::default();
        for row in rows["value"].as_array()? {
            match row["state"].as_str()? {
                "in_flight" => sample.in_flight += 1,
                "delivered" if row["lastStatus"].is_null() => sample.delivered_unsent += 1,
                "pending" | "unknown" => {
                    let due = row["nextAttemptAt"]
                        .as_str()
                        .and_then(|text| cmp_graph_model::datetime::parse(text).ok())
                        .is_none_or(|at| at <= now);
                    if due {
                        sample.due += 1;
                    } else {
                        sample.backing_off += 1;
                    }
                }
                _ => {}
            }
        }
        Some(sample)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The outbox's waiting rows at one moment of the drain.
#[derive(Debug, Default, Clone, Copy)]
struct OutboxSample {
    in_flight: usize,
    due: usize,
    backing_off: usize,
    /// Delivered rows whose last delivery sent nothing (adopted from Graph, or rightly
    /// absent): reconciled without a write.
    delivered_unsent: usize,
}

/// Where the drain's time went, from samples of the outbox every half second.
#[derive(Debug, Default, Clone)]
struct DrainTime {
    /// Each sample, with when it was taken.
    samples: Vec<(Instant, OutboxSample)>,
    /// Time covered by samples.
    sampled: Duration,
    /// Nothing in flight and nothing due, while rows waited in their back-off.
    only_backing_off: Duration,
    /// Rows in flight or due.
    working: Duration,
}

/// What the clients saw.
#[derive(Default)]
struct Acks {
    /// Names acknowledged (201 or 202).
    names: Vec<String>,
    /// Milliseconds from sending to the answer of each acknowledged create.
    latencies_ms: Vec<f64>,
    created: usize,
    accepted: usize,
    /// Creates that got no answer (the service was killed) or an unexpected one.
    unanswered: usize,
}

/// Runs the soak and prints its figures.
///
/// # Errors
/// When the service or the fake cannot be started.
pub fn run(options: &SoakOptions) -> anyhow::Result<()> {
    let binary = match &options.service {
        Some(path) => ServiceBinary::prebuilt(path)?,
        None => service::build_release()?,
    };
    let runtime = tokio::runtime::Runtime::new().context("a runtime for the fake Graph")?;
    let fake = runtime
        .block_on(FakeGraph::start(faulty(options.seed)))
        .context("starting the fake Graph")?;
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let mut service = Service::start(binary, scratch.path(), &fake)?;
    println!(
        "soak: seed {}, {} s of faults (outage {} s), {} creates by {} clients, {} kills, budget {WRITE_RATE} writes/s",
        options.seed,
        options.fault_seconds,
        options.outage_seconds,
        options.creates,
        options.clients,
        options.kills
    );

    let acks = Arc::new(Mutex::new(Acks::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let fault_end = started + Duration::from_secs(options.fault_seconds);
    let clients: Vec<_> = (0..options.clients)
        .map(|_| {
            let (acks, next, stop) = (acks.clone(), next.clone(), stop.clone());
            let (port, authorization) = (service.port, service.authorization.clone());
            let (creates, seed) = (options.creates, options.seed);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= creates {
                        break;
                    }
                    let name = format!("soak-{seed}-{n:05}");
                    let body = format!(r#"{{"displayName":"{name}"}}"#);
                    let sent = Instant::now();
                    let answer = service::request(
                        port,
                        Some(&authorization),
                        "POST",
                        COLLECTION,
                        Some(&body),
                    );
                    let took = sent.elapsed().as_secs_f64() * 1000.0;
                    let mut acks = acks.lock().unwrap_or_else(PoisonError::into_inner);
                    match answer {
                        Ok((status @ (201 | 202), _)) => {
                            acks.names.push(name);
                            acks.latencies_ms.push(took);
                            if status == 201 {
                                acks.created += 1;
                            } else {
                                acks.accepted += 1;
                            }
                        }
                        _ => {
                            acks.unanswered += 1;
                            drop(acks);
                            // A killed service comes back within a second or two; the name is
                            // not reused, since the service may have stored it.
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
        })
        .collect();

    // The fault schedule: the outage a third of the way in, kills spread over the faults.
    let outage_start = started + Duration::from_secs(options.fault_seconds / 3);
    let outage_end = outage_start + Duration::from_secs(options.outage_seconds);
    let kill_times: Vec<Instant> = (1..=options.kills)
        .map(|k| {
            started
                + Duration::from_secs(options.fault_seconds) * k / (options.kills + 1)
                + Duration::from_millis(1_500)
        })
        .collect();
    let mut kills_done = 0;
    let mut outage = false;
    while Instant::now() < fault_end {
        let now = Instant::now();
        if !outage && now >= outage_start && now < outage_end {
            fake.set_options(FakeGraphOptions {
                down: true,
                ..faulty(options.seed.wrapping_add(1))
            });
            outage = true;
        } else if outage && now >= outage_end {
            fake.set_options(faulty(options.seed.wrapping_add(2)));
            outage = false;
        }
        if kill_times.get(kills_done).is_some_and(|at| now >= *at) {
            service.kill_and_restart()?;
            kills_done += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fault_stats = fake.stats();
    let fault_elapsed = started.elapsed();
    fake.set_options(healed());
    let heal = Instant::now();
    let objects_at_heal = fake.objects().len();
    let unsent_at_heal = service
        .outbox_sample()
        .map(|sample| sample.delivered_unsent);

    // Clients still creating finish on a healed Graph; then the backlog drains.
    for client in clients {
        let _ = client.join();
    }
    stop.store(true, Ordering::Relaxed);
    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(PoisonError::into_inner));
    let drain_limit = heal + Duration::from_secs(options.drain_seconds);
    let mut drained_at = None;
    let mut drain_time = DrainTime::default();
    let mut last_sample: Option<(Instant, OutboxSample)> = None;
    loop {
        if last_sample.is_none_or(|(at, _)| at.elapsed() >= Duration::from_millis(500))
            && let Some(sample) = service.outbox_sample()
        {
            let now = Instant::now();
            if let Some((at, previous)) = last_sample {
                let span = now.duration_since(at);
                drain_time.sampled += span;
                if previous.in_flight + previous.due > 0 {
                    drain_time.working += span;
                } else if previous.backing_off > 0 {
                    drain_time.only_backing_off += span;
                }
            }
            last_sample = Some((now, sample));
            drain_time.samples.push((now, sample));
        }
        let counts = fake.count_by_display_name();
        let missing = acks
            .names
            .iter()
            .filter(|name| !counts.contains_key(&name.to_lowercase()))
            .count();
        if missing == 0 {
            drained_at = Some(Instant::now());
            break;
        }
        if Instant::now() >= drain_limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let unsent_at_end = service
        .outbox_sample()
        .map(|sample| sample.delivered_unsent);
    let end_stats = fake.stats();
    let breaches = fake.retry_after_breaches();
    let write_arrivals = fake.write_arrivals();
    let writes_after_heal = write_arrivals
        .iter()
        .filter(|at| **at >= heal && drained_at.is_none_or(|end| **at <= end))
        .count();
    let objects_at_end = fake.objects().len();
    let counts = fake.count_by_display_name();
    let lost = acks
        .names
        .iter()
        .filter(|name| !counts.contains_key(&name.to_lowercase()))
        .count();
    let duplicated: usize = counts
        .values()
        .filter(|count| **count > 1)
        .map(|c| c - 1)
        .sum();
    service.stop();
    runtime
        .block_on(fake.shutdown())
        .context("stopping the fake")?;

    print_figures(&Figures {
        fault_stats,
        fault_elapsed,
        end_stats,
        objects_at_heal,
        objects_at_end,
        drain: drained_at.map(|at| at.duration_since(heal)),
        drain_limit: Duration::from_secs(options.drain_seconds),
        acks: &acks,
        lost,
        duplicated,
    });
    print_drain_time(
        &drain_time,
        writes_after_heal,
        drained_at.map(|at| at.duration_since(heal)),
    );
    print_drain_buckets(&drain_time, &write_arrivals, heal, drained_at);
    if let (Some(at_heal), Some(at_end)) = (unsent_at_heal, unsent_at_end) {
        println!(
            "rows delivered without a write (adopted or absent) during the drain: {}",
            at_end.saturating_sub(at_heal)
        );
    }
    print_breaches(&breaches, &service.restarts, started);
    Ok(())
}

/// Where the drain's time went: the budget's worth of the writes Graph received, and how long
/// the outbox had nothing to send but rows still in their back-off.
fn print_drain_time(time: &DrainTime, writes: usize, drain: Option<Duration>) {
    let Some(drain) = drain else {
        return;
    };
    let budget_seconds = writes as f64 / WRITE_RATE;
    println!(
        "drain: {:.1} s; {writes} writes reached Graph, {budget_seconds:.1} s of budget, so the budget idled {:.1} s",
        drain.as_secs_f64(),
        (drain.as_secs_f64() - budget_seconds).max(0.0)
    );
    println!(
        "outbox sampled over {:.1} s: rows in flight or due {:.1} s; nothing in flight or due while rows waited in their back-off {:.1} s",
        time.sampled.as_secs_f64(),
        time.working.as_secs_f64(),
        time.only_backing_off.as_secs_f64()
    );
}

/// The drain in five-second steps from healing: the writes Graph received (the budget allows
/// 22.5) and the outbox's rows in flight, due, and in their back-off (means of the samples).
fn print_drain_buckets(
    time: &DrainTime,
    write_arrivals: &[Instant],
    heal: Instant,
    drained_at: Option<Instant>,
) {
    const STEP: Duration = Duration::from_secs(5);
    let Some(end) = drained_at else {
        return;
    };
    println!("| from healing | writes | in flight | due | in back-off |\n|---|---|---|---|---|");
    let mut from = heal;
    while from < end {
        let to = (from + STEP).min(end);
        let writes = write_arrivals
            .iter()
            .filter(|at| **at >= from && **at < to)
            .count();
        let samples: Vec<&OutboxSample> = time
            .samples
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, sample)| sample)
            .collect();
        let mean = |of: fn(&OutboxSample) -> usize| {
            if samples.is_empty() {
                f64::NAN
            } else {
                samples.iter().map(|sample| of(sample)).sum::<usize>() as f64 / samples.len() as f64
            }
        };
        println!(
            "| {:.0}-{:.1} s | {writes} | {:.1} | {:.1} | {:.1} |",
            from.duration_since(heal).as_secs_f64(),
            to.duration_since(heal).as_secs_f64(),
            mean(|sample| sample.in_flight),
            mean(|sample| sample.due),
            mean(|sample| sample.backing_off)
        );
        from = to;
    }
}

/// Each call that arrived inside a `Retry-After`, on the run's clock (seconds since the load
/// began), with the 429 that set the pause and whether the service was killed between the
/// 429 and the call, i.e. whether the call came from a process that never received the 429.
fn print_breaches(breaches: &[RetryAfterBreach], restarts: &[Restart], started: Instant) {
    let at = |instant: Instant| instant.saturating_duration_since(started).as_secs_f64();
    for restart in restarts {
        println!(
            "kill at {:.2} s, successor listening at {:.2} s",
            at(restart.killed),
            at(restart.listening)
        );
    }
    for breach in breaches {
        let killed_between = restarts.iter().find(|restart| {
            restart.killed > breach.throttled_at && restart.killed < breach.arrived
        });
        println!(
            "inside a Retry-After: {} at {:.3} s; 429 answered at {:.3} s, pause until {:.3} s; {}",
            if breach.write { "write" } else { "read" },
            at(breach.arrived),
            at(breach.throttled_at),
            at(breach.paused_until),
            match killed_between {
                Some(restart) => format!(
                    "sent by the process started after the kill at {:.2} s (listening at {:.2} s)",
                    at(restart.killed),
                    at(restart.listening)
                ),
                None => "sent by the process that received the 429".to_owned(),
            }
        );
    }
}

struct Figures<'a> {
    fault_stats: FakeGraphStats,
    fault_elapsed: Duration,
    end_stats: FakeGraphStats,
    objects_at_heal: usize,
    objects_at_end: usize,
    drain: Option<Duration>,
    drain_limit: Duration,
    acks: &'a Acks,
    lost: usize,
    duplicated: usize,
}

fn writes(stats: &FakeGraphStats) -> u64 {
    stats.posts + stats.patches + stats.deletes
}

fn print_figures(figures: &Figures<'_>) {
    let fault_seconds = figures.fault_elapsed.as_secs_f64();
    let offered = writes(&figures.fault_stats) as f64 / fault_seconds;
    let drained = figures
        .objects_at_end
        .saturating_sub(figures.objects_at_heal);
    let (drain_text, drain_rate) = match figures.drain {
        Some(took) if took.as_secs_f64() > 0.0 => (
            format!("{drained} objects in {:.1} s", took.as_secs_f64()),
            Some(drained as f64 / took.as_secs_f64()),
        ),
        Some(_) => ("nothing left to drain".to_owned(), None),
        None => (
            format!(
                "{drained} objects, not drained within {} s",
                figures.drain_limit.as_secs()
            ),
            Some(drained as f64 / figures.drain_limit.as_secs_f64()),
        ),
    };
    let mut latencies = figures.acks.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index.min(latencies.len() - 1)]
    };
    let mut rows: Vec<(String, String)> = vec![
        (
            "writes offered/s during faults".into(),
            format!(
                "{offered:.2} ({:.1} % of {WRITE_RATE}); {} writes in {fault_seconds:.1} s",
                100.0 * offered / WRITE_RATE,
                writes(&figures.fault_stats)
            ),
        ),
        (
            "drain after healing".into(),
            match drain_rate {
                Some(rate) => format!(
                    "{rate:.2}/s ({:.1} % of {WRITE_RATE}); {drain_text}",
                    100.0 * rate / WRITE_RATE
                ),
                None => drain_text,
            },
        ),
        (
            "ack latency p50 / p99".into(),
            format!("{:.0} ms / {:.0} ms", percentile(0.5), percentile(0.99)),
        ),
        (
            "acks 201 / 202 / unanswered".into(),
            format!(
                "{} / {} / {}",
                figures.acks.created, figures.acks.accepted, figures.acks.unanswered
            ),
        ),
        (
            "provoked 429s (throttle)".into(),
            figures.end_stats.throttled.to_string(),
        ),
        (
            "calls inside a Retry-After".into(),
            figures.end_stats.inside_retry_after.to_string(),
        ),
        ("lost".into(), figures.lost.to_string()),
        ("duplicated".into(), figures.duplicated.to_string()),
    ];
    rows.push((
        "Graph calls: POST / GET (filtered) / failures injected".into(),
        format!(
            "{} / {} ({}) / {}",
            figures.end_stats.posts,
            figures.end_stats.gets,
            figures.end_stats.filtered_gets,
            figures.end_stats.failures_injected
        ),
    ));
    let mut text = String::from("| figure | value |\n|---|---|\n");
    for (figure, value) in rows {
        text.push_str(&format!("| {figure} | {value} |\n"));
    }
    println!("{text}");
}
