//! Every corpus input and every saved crash of the fuzz targets, run through the targets'
//! functions: `cargo test` keeps what fuzzing found fixed without running a fuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The cargo-fuzz project beside this crate.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`; none when it does not exist (a target without saved crashes).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{} must be readable: {e}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{} must be readable: {e}", dir.display()),
    }
}

/// Runs every input of `target`'s corpus and regressions through `run`, and names each input
/// that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    assert!(!corpus.is_empty(), "the {target} corpus must not be empty");

    let failed: Vec<String> = corpus
        .iter()
        .chain(&regressions)
        .filter(|path| {
            let input = std::fs::read(path)
                .unwrap_or_else(|e| panic!("{} must be readable: {e}", path.display()));
            catch_unwind(AssertUnwindSafe(|| run(&input))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();

    assert!(failed.is_empty(), "{target} panicked on {failed:#?}");
}

#[test]
fn every_saved_partner_body_input_is_handled() {
    replay("partner_body", cmp_fuzz::partner_body);
}

#[test]
fn every_saved_filter_input_is_handled() {
    replay("filter", cmp_fuzz::filter);
}

#[test]
fn every_saved_skip_token_input_is_handled() {
    replay("skip_token", cmp_fuzz::skip_token);
}
