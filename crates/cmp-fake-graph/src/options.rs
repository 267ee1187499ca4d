//! [`FakeGraphOptions`] (how the fake misbehaves) and [`FakeGraphStats`] (what it has seen).

use serde::{Deserialize, Serialize};

/// How the fake Graph behaves. [`Default`] is a healthy Graph.
///
/// This is also the body of `POST /_fake/options`. Missing fields take their defaults, so
/// `{}` brings Graph back to healthy and `{"down": true}` takes it down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeGraphOptions {
    /// Share of Graph calls (reads and writes) that fail, from 0.0 (none) to 1.0 (all).
    pub failure_rate: f64,
    /// Share of reads (list pages, single objects, filtered queries) that fail, when reads
    /// should fail less often than writes. `None`: [`FakeGraphOptions::failure_rate`].
    pub read_failure_rate: Option<f64>,
    /// Statuses of the injected failures, drawn uniformly. An empty list means 503.
    pub failure_statuses: Vec<u16>,
    /// Share of the injected 5xx failures of a POST where the object is stored anyway before
    /// the error goes out. These make a create's outcome truly unknown to the caller. 429s are
    /// never applied, because Graph's 429 means "not done".
    pub applied_before_failure_rate: f64,
    /// Latency added to every Graph call, drawn uniformly from `(min, max)` milliseconds.
    pub latency_ms: (u64, u64),
    /// `Retry-After` value sent with 429 and 503. Graph really sends fractions such as `2.128`.
    pub retry_after: String,
    /// When set, the `Retry-After` of each injected failure is drawn uniformly from
    /// `(min, max)` milliseconds instead of [`FakeGraphOptions::retry_after`], and sent in
    /// seconds with three decimals.
    pub retry_after_ms: Option<(u64, u64)>,
    /// Graph's write throttle: at most `writes` POST, PATCH or DELETE requests in any
    /// `window_ms` window (Intune: 100 in 20 s). A write beyond it answers 429 with a
    /// `Retry-After` of the time until the window has room; every write let through counts,
    /// whether it then succeeds or fails.
    pub write_throttle: Option<WriteThrottle>,
    /// Answer a `$filter` query as if the filter were not there (the whole first page of the
    /// collection), as Intune does on some collections: the client must check what it got.
    pub filter_ignored: bool,
    /// Graph is down: every Graph call answers 503 and stores nothing. The token endpoint
    /// keeps working.
    pub down: bool,
    /// Objects per list page. 0 is treated as 1.
    pub page_size: usize,
    /// Graph calls without `Authorization: Bearer fake-token` answer 401.
    pub require_token: bool,
    /// Seeds the random draws (failures, statuses, applied, latency), so a run with sequential
    /// calls can be reproduced. Setting options with a seed restarts the sequence.
    pub seed: Option<u64>,
}

impl Default for FakeGraphOptions {
    fn default() -> Self {
        Self {
            failure_rate: 0.0,
            read_failure_rate: None,
            // Dev Proxy's usual Graph failures.
            failure_statuses: vec![429, 500, 502, 503, 504],
            applied_before_failure_rate: 0.5,
            latency_ms: (0, 0),
            // Short, so that clients honouring it keep soak tests fast.
            retry_after: "0.05".to_owned(),
            retry_after_ms: None,
            write_throttle: None,
            filter_ignored: false,
            down: false,
            page_size: 100,
            require_token: true,
            seed: None,
        }
    }
}

/// A sliding-window cap on writes, like Graph's per app and tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteThrottle {
    /// Writes allowed in any window.
    pub writes: u32,
    /// The window, in milliseconds.
    pub window_ms: u64,
}

/// Counts of what the fake has seen since it started (`GET /_fake/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeGraphStats {
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// POSTs to the collection, whatever their answer.
    pub posts: u64,
    /// Objects stored by POSTs, including those stored before an injected failure.
    pub posts_applied: u64,
    /// GETs of a list page or of one object.
    pub gets: u64,
    /// PATCHes of one object.
    pub patches: u64,
    /// DELETEs of one object.
    pub deletes: u64,
    /// Injected failures, including the 503s answered while [`FakeGraphOptions::down`].
    pub failures_injected: u64,
    /// Writes answered 429 because they exceeded [`FakeGraphOptions::write_throttle`].
    pub throttled: u64,
    /// Graph calls (reads and writes) that arrived before the end of the `Retry-After` of a
    /// 429 the fake had already answered: a client that honours `Retry-After` sends none.
    pub inside_retry_after: u64,
    /// GETs of the collection with a `$filter`.
    pub filtered_gets: u64,
}

/// One call that arrived inside a `Retry-After` the fake had answered, with the 429 that set
/// the pause: what a soak needs to tell which process sent it (the one that got the 429, or a
/// successor started after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterBreach {
    /// When the call arrived.
    pub arrived: std::time::Instant,
    /// Whether it was a write (POST, PATCH, DELETE) rather than a read.
    pub write: bool,
    /// When the 429 whose pause it broke was answered.
    pub throttled_at: std::time::Instant,
    /// When that pause ended.
    pub paused_until: std::time::Instant,
}
