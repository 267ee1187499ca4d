//! Puts the git revision the binary is built from into `--version`, and lays out the code of
//! a release build so that what the service runs sits together (`code-layout/`).
//!
//! `CMP_VERSION` is the crate version, followed by the short revision when git answers
//! (`0.0.0 (1a2b3c4)`). A build from a source archive, or on a machine without git, gets the
//! bare version instead of failing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let version = env!("CARGO_PKG_VERSION");
    let text = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(revision) => {
            watch_head();
            format!("{version} ({revision})")
        }
        None => version.to_owned(),
    };
    println!("cargo::rustc-env=CMP_VERSION={text}");
    order_code();
}

/// In a release build for x86-64 Linux, hands the linker the list of functions the service was
/// seen running (`code-layout/functions.txt`, written by `code-layout/record.sh`) so that it
/// places them first and together. The kernel maps code in 64 KiB runs around each page a
/// process touches: with the functions in the compiler's order, the 2.7 MB that run were spread
/// over nearly all of the 6.5 MB of code, and all of it stayed resident
/// (`docs/benchmarks.md`, "Code layout"). Rust's default linker on that target is LLD, which
/// reads the list; a function missing from the binary (renamed since the list was recorded)
/// is skipped without a warning, so a stale list costs memory, never the build (`.ci/run`
/// checks that the list is current). A build that links with another linker, which would refuse
/// the option, sets `CMP_CODE_LAYOUT=off`.
fn order_code() {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("code-layout/functions.txt");
    println!("cargo::rerun-if-changed={}", list.display());
    println!("cargo::rerun-if-env-changed=CMP_CODE_LAYOUT");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let wanted = std::env::var("CMP_CODE_LAYOUT").map_or(true, |value| value != "off");
    if wanted && release && target == "x86_64-unknown-linux-gnu" && list.is_file() {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Asks cargo to run this script again when `HEAD` moves: when another branch is checked out
/// (`HEAD` itself changes) and when a commit lands on the current one (its ref file changes,
/// or `packed-refs` once git packs it). Only files that exist are named, because cargo reruns a
/// script on every build while a named file is missing.
fn watch_head() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else {
        return;
    };
    let mut watched = vec![git_dir.join("HEAD")];
    if let Some(common_dir) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            // A worktree keeps its own HEAD but shares the branch refs with the main checkout.
            watched.push(common_dir.join(reference));
        }
        watched.push(common_dir.join("packed-refs"));
    }
    for file in watched.iter().filter(|file| Path::new(file).is_file()) {
        println!("cargo::rerun-if-changed={}", file.display());
    }
}

/// The trimmed output of a successful `git` run in the crate's folder, `None` otherwise.
fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(arguments)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
