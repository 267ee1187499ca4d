//! The threads of the real `cmp-server` binary and their priorities (`docs/architecture.md`,
//! "Threads"): the runtime's workers run `service.worker_nice_increment` nice levels below the
//! SQLite writer's thread, which keeps the priority the process started with.
#![cfg(target_os = "linux")]

#[allow(
    dead_code,
    reason = "the harness the crash and replica tests share; this file needs only its start"
)]
mod support;

use std::path::{Path, PathBuf};

use support::{Service, harness_environment, write_development_key};

/// The environment of a service on a SQLite file in `directory` and the simulated Graph.
fn service_environment(directory: &Path, worker_nice_increment: u8) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    [
        ("CMP__SQLITE__PATH", path(directory.join("partners.db"))),
        (
            "CMP__SERVICE__WORKER_NICE_INCREMENT",
            worker_nice_increment.to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .chain(harness_environment(&directory.join("keys")))
    .collect()
}

/// The nice value in a `/proc/.../stat` line: field 19, counted after the name, which is in
/// parentheses and may hold spaces.
fn nice_in_stat(stat: &str) -> i32 {
    let (_, after_name) = stat.rsplit_once(')').expect("a stat line names its thread");
    after_name
        .split_whitespace()
        .nth(16)
        .expect("a stat line has a nice field")
        .parse()
        .expect("the nice field is a number")
}

/// Every thread of process `pid`: its name and its nice value.
fn threads_of(pid: u32) -> Vec<(String, i32)> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    std::fs::read_dir(&tasks)
        .expect("the process's threads are listed")
        .map(|task| {
            let task = task.expect("a thread's folder").path();
            let name = std::fs::read_to_string(task.join("comm")).expect("a thread's name");
            let stat = std::fs::read_to_string(task.join("stat")).expect("a thread's stat");
            (name.trim_end().to_owned(), nice_in_stat(&stat))
        })
        .collect()
}

/// The nice values of the threads of `pid` called `name`.
fn nice_of(threads: &[(String, i32)], name: &str) -> Vec<i32> {
    threads
        .iter()
        .filter(|(thread, _)| thread == name)
        .map(|(_, nice)| *nice)
        .collect()
}

/// The nice value this test runs at, which the service it starts inherits.
fn own_nice() -> i32 {
    nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").expect("own stat"))
}

/// The threads of a service started with `worker_nice_increment`, once it serves.
async fn threads_of_a_service(worker_nice_increment: u8) -> Vec<(String, i32)> {
    let directory = tempfile::tempdir().expect("temporary folder");
    write_development_key(&directory.path().join("keys"));
    let service = Service::start(&service_environment(
        directory.path(),
        worker_nice_increment,
    ))
    .await;
    threads_of(service.pid())
}

#[tokio::test]
async fn the_runtime_workers_run_below_the_sqlite_writer_which_keeps_the_process_priority() {
    let threads = threads_of_a_service(7).await;
    let writer = nice_of(&threads, cmp_sqlite::WRITER_THREAD_NAME);
    assert_eq!(writer, vec![own_nice()], "the writer's thread: {threads:?}");
    let workers = nice_of(&threads, "tokio-rt-worker");
    assert!(!workers.is_empty(), "no runtime worker among {threads:?}");
    let lowered = (own_nice() + 7).min(19);
    assert!(
        workers.iter().all(|nice| *nice == lowered),
        "every worker at nice {lowered}: {threads:?}"
    );
    assert_eq!(
        nice_of(&threads, "sqlite-wal-sync"),
        vec![own_nice()],
        "the WAL sync thread: {threads:?}"
    );
}

#[tokio::test]
async fn an_increment_of_zero_leaves_the_workers_at_the_process_priority() {
    let threads = threads_of_a_service(0).await;
    let workers = nice_of(&threads, "tokio-rt-worker");
    assert!(!workers.is_empty(), "no runtime worker among {threads:?}");
    assert!(
        workers.iter().all(|nice| *nice == own_nice()),
        "{threads:?}"
    );
}
