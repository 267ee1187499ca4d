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
            // Dev Proxy's usual Graph failures.
            failure_statuses: vec![429, 500, 502, 503, 504],
            applied_before_failure_rate: 0.5,
            latency_ms: (0, 0),
            // Short, so that clients honouring it keep soak tests fast.
            retry_after: "0.05".to_owned(),
            down: false,
            page_size: 100,
            require_token: true,
            seed: None,
        }
    }
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
}
