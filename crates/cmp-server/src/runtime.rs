//! The tokio runtime the service runs on, its worker threads a few nice levels below the
//! threads that carry the store's writes.
//!
//! Every write of the SQLite store runs on one writer connection, whose thread executes each
//! batch of writes while the runtime's workers parse requests, check tokens and render answers
//! (`docs/architecture.md`). On a busy machine the kernel shares the cores evenly among all of
//! those threads, so the writer's thread was set aside in the middle of a batch several
//! thousand times a second at 64 connections, and every create of that batch waited with it.
//! With the workers at a higher nice value (a lower priority) the writer's thread runs as soon
//! as it has work, and the workers take the rest of the cores: creates per second rose by about
//! a sixth, and the CPU per request fell (`docs/benchmarks.md`, "The writer ahead of the request
//! workers").
//!
//! A thread takes its nice value from the thread that creates it. The workers (and the
//! runtime's blocking threads) raise their own when they start; the thread that calls
//! [`Runtime::block_on`](tokio::runtime::Runtime::block_on) keeps the process's value, and
//! the store is opened there ([`crate::Application::build`]), so the writer's connection thread,
//! the WAL sync thread and the checkpoint connection keep it too. Connections opened later, by
//! a task on a worker, run at the workers' level. Raising a nice value needs no privilege.
//! Under PostgreSQL nothing of the store runs in the process, and the setting changes nothing
//! that matters.

use tokio::runtime::{Builder, Runtime};

/// The highest nice value Linux knows (the lowest priority).
const LOWEST_PRIORITY: i32 = 19;

/// The multi-threaded runtime, with its worker threads `worker_nice_increment` nice levels
/// above the calling thread's (`service.worker_nice_increment`; 0 leaves them as they are).
///
/// # Errors
/// When the runtime cannot start its threads or its I/O driver.
pub fn build(worker_nice_increment: u8) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    if worker_nice_increment > 0 {
        let increment = i32::from(worker_nice_increment);
        builder.on_thread_start(move || lower_this_thread(increment));
    }
    builder.build()
}

/// Adds `increment` to the calling thread's nice value. On Linux `setpriority(PRIO_PROCESS, 0)`
/// sets the calling thread's own value, not the whole process's.
#[cfg(target_os = "linux")]
fn lower_this_thread(increment: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    let lowered = getpriority_process(None)
        .and_then(|now| setpriority_process(None, (now + increment).min(LOWEST_PRIORITY)));
    if let Err(error) = lowered {
        // The log is not set up yet when the first workers start; the service runs on, with
        // the workers at the writer's priority.
        eprintln!("warning: a runtime worker could not lower its priority: {error}");
    }
}

/// Elsewhere a nice value is the whole process's: lowering it would lower the writer's thread
/// too, so nothing is done.
#[cfg(not(target_os = "linux"))]
fn lower_this_thread(_increment: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    use rustix::process::getpriority_process;

    /// The nice value of the thread that runs a task spawned on `runtime`.
    fn worker_nice(runtime: &Runtime) -> i32 {
        runtime
            .block_on(async { tokio::spawn(async { getpriority_process(None) }).await })
            .expect("the task ran")
            .expect("a worker's nice value")
    }

    #[test]
    fn the_workers_run_below_the_thread_that_builds_the_runtime_and_it_keeps_its_priority() {
        let builder_nice = getpriority_process(None).expect("this thread's nice value");
        let runtime = build(5).expect("runtime");
        let worker_nice = worker_nice(&runtime);
        assert_eq!(worker_nice, (builder_nice + 5).min(LOWEST_PRIORITY));
        let blocking_nice = runtime
            .block_on(async { tokio::task::spawn_blocking(|| getpriority_process(None)).await })
            .expect("the blocking task ran")
            .expect("a blocking thread's nice value");
        assert_eq!(blocking_nice, worker_nice);
        // `block_on` runs its future on this thread, which is left as it was: what it starts
        // (the store's writer connection) starts at the process's priority.
        let block_on_nice = runtime
            .block_on(async { getpriority_process(None) })
            .expect("this thread's nice value");
        assert_eq!(block_on_nice, builder_nice);
    }

    #[test]
    fn an_increment_of_zero_leaves_the_workers_alone() {
        let builder_nice = getpriority_process(None).expect("this thread's nice value");
        let runtime = build(0).expect("runtime");
        assert_eq!(worker_nice(&runtime), builder_nice);
    }
}
