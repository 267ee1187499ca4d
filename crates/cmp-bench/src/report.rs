//! The printed table: each point's figures for both servers and our/baseline ratios, of
//! throughput (the goal: at least 1.0 and 1.5 for creates, 0.9 for reads) and of peak RSS (the
//! goal: at most 2.0).

use crate::load::{LoadResult, Point};

/// One server's figures at one point.
pub struct Measured {
    /// What wrk measured.
    pub result: LoadResult,
    /// The process's peak RSS after the point, KiB.
    pub peak_rss_kib: u64,
}

/// One point of the table.
pub struct Row {
    /// The point.
    pub point: Point,
    /// The bare server's figures.
    pub bare: Measured,
    /// Ours.
    pub ours: Measured,
}

/// The table, as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| point | bare req/s | bare p50 / p99 ms | bare peak RSS MiB | ours req/s | ours p50 / p99 ms | ours peak RSS MiB | req/s ratio | peak RSS ratio | errors bare / ours |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let (bare, ours) = (&row.bare, &row.ours);
        text.push_str(&format!(
            "| {} | {:.0} | {:.1} / {:.1} | {:.1} | {:.0} | {:.1} / {:.1} | {:.1} | {:.2} | {:.2} | {} / {} |\n",
            row.point.label(),
            bare.result.requests_per_second,
            bare.result.p50_ms,
            bare.result.p99_ms,
            mib(bare.peak_rss_kib),
            ours.result.requests_per_second,
            ours.result.p50_ms,
            ours.result.p99_ms,
            mib(ours.peak_rss_kib),
            ours.result.requests_per_second / bare.result.requests_per_second,
            mib(ours.peak_rss_kib) / mib(bare.peak_rss_kib),
            bare.result.errors,
            ours.result.errors,
        ));
    }
    text
}

fn mib(kib: u64) -> f64 {
    // Exact below 2^52 KiB, which no process reaches.
    kib as f64 / 1024.0
}
