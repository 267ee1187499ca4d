//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the files at compile
//! time, but cargo does not know they are inputs unless told.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
