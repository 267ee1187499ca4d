//! The fake's state: stored objects, options, counters and the random draws.
//!
//! Everything sits behind one mutex that is never held across an `.await`, so each call sees
//! and changes the state atomically, and a seeded run draws in call order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::options::{FakeGraphOptions, FakeGraphStats, RetryAfterBreach};

/// What a Graph call does, for counting and for deciding whether a failure may be "applied".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Create,
    Read,
    Update,
    Delete,
}

/// An injected failure, decided before the call touches any object.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) status: u16,
    /// Only ever true for a POST: store the object, then answer the error anyway.
    pub(crate) applied: bool,
    pub(crate) retry_after: String,
}

pub(crate) struct Store {
    pub(crate) options: FakeGraphOptions,
    pub(crate) stats: FakeGraphStats,
    rng: fastrand::Rng,
    /// Objects by insertion sequence. Iterating gives insertion order, and a `$skiptoken`
    /// holding the last sequence served stays right when objects are deleted between pages
    /// (an offset would skip one).
    objects: BTreeMap<u64, Value>,
    /// Graph id to insertion sequence.
    ids: HashMap<String, u64>,
    next_seq: u64,
    /// When the writes let through the throttle's window arrived, oldest first.
    recent_writes: VecDeque<Instant>,
    /// The end of the latest `Retry-After` the fake answered with a 429, and when that 429
    /// was answered.
    paused_until: Option<(Instant, Instant)>,
    /// Every call that arrived inside a `Retry-After`, oldest first.
    retry_after_breaches: Vec<RetryAfterBreach>,
    /// When every write (POST, PATCH, DELETE) arrived, whatever its answer, oldest first: the
    /// record a test measures the busiest window of.
    write_arrivals: Vec<Instant>,
}

impl Store {
    pub(crate) fn new(options: FakeGraphOptions) -> Self {
        let mut store = Self {
            options: FakeGraphOptions::default(),
            stats: FakeGraphStats::default(),
            rng: fastrand::Rng::new(),
            objects: BTreeMap::new(),
            ids: HashMap::new(),
            next_seq: 0,
            recent_writes: VecDeque::new(),
            paused_until: None,
            retry_after_breaches: Vec::new(),
            write_arrivals: Vec::new(),
        };
        store.set_options(options);
        store
    }

    pub(crate) fn set_options(&mut self, options: FakeGraphOptions) {
        if let Some(seed) = options.seed {
            self.rng = fastrand::Rng::with_seed(seed);
        }
        self.options = options;
    }

    /// Counts a Graph call on arrival, and whether it came inside a `Retry-After` already
    /// answered.
    pub(crate) fn count(&mut self, call: Call) {
        let now = Instant::now();
        if let Some((throttled_at, until)) = self.paused_until.filter(|(_, until)| now < *until) {
            self.stats.inside_retry_after += 1;
            self.retry_after_breaches.push(RetryAfterBreach {
                arrived: now,
                write: call != Call::Read,
                throttled_at,
                paused_until: until,
            });
        }
        if call != Call::Read {
            self.write_arrivals.push(Instant::now());
        }
        let counter = match call {
            Call::Create => &mut self.stats.posts,
            Call::Read => &mut self.stats.gets,
            Call::Update => &mut self.stats.patches,
            Call::Delete => &mut self.stats.deletes,
        };
        *counter += 1;
    }

    /// When every write arrived, oldest first.
    pub(crate) fn write_arrivals(&self) -> Vec<Instant> {
        self.write_arrivals.clone()
    }

    /// Every call that arrived inside a `Retry-After`, oldest first.
    pub(crate) fn retry_after_breaches(&self) -> Vec<RetryAfterBreach> {
        self.retry_after_breaches.clone()
    }

    /// The most writes that arrived within any `window` (a sliding window over every arrival).
    pub(crate) fn busiest_write_window(&self, window: Duration) -> usize {
        let arrivals = &self.write_arrivals;
        let mut oldest = 0;
        let mut busiest = 0;
        for (newest, arrived) in arrivals.iter().enumerate() {
            while arrived.duration_since(arrivals[oldest]) >= window {
                oldest += 1;
            }
            busiest = busiest.max(newest + 1 - oldest);
        }
        busiest
    }

    pub(crate) fn latency(&mut self) -> Duration {
        let (a, b) = self.options.latency_ms;
        let (min, max) = (a.min(b), a.max(b));
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.rng.u64(min..=max))
    }

    /// Whether a write is over the write throttle: a 429 whose `Retry-After` is the time until
    /// the window has room. A write let through is counted in the window.
    pub(crate) fn throttle(&mut self) -> Option<Fault> {
        let throttle = self.options.write_throttle?;
        let now = Instant::now();
        let window = Duration::from_millis(throttle.window_ms);
        while self
            .recent_writes
            .front()
            .is_some_and(|oldest| now.duration_since(*oldest) >= window)
        {
            self.recent_writes.pop_front();
        }
        if self.recent_writes.len() < throttle.writes as usize {
            self.recent_writes.push_back(now);
            return None;
        }
        let room_at = self
            .recent_writes
            .front()
            .map_or(now, |oldest| *oldest + window);
        // Whole milliseconds, rounded up, so a client waiting exactly this long finds room.
        let wait = Duration::from_millis(
            u64::try_from(room_at.duration_since(now).as_micros().div_ceil(1000))
                .unwrap_or(u64::MAX),
        );
        self.stats.throttled += 1;
        Some(self.answer_429(wait))
    }

    /// A 429 answered now, with `Retry-After: wait`: calls arriving before it ends are counted
    /// in [`FakeGraphStats::inside_retry_after`].
    fn answer_429(&mut self, wait: Duration) -> Fault {
        let now = Instant::now();
        let until = now + wait;
        if self.paused_until.is_none_or(|(_, current)| current < until) {
            self.paused_until = Some((now, until));
        }
        Fault {
            status: 429,
            applied: false,
            retry_after: format!("{:.3}", wait.as_secs_f64()),
        }
    }

    /// The `Retry-After` of an injected failure.
    fn draw_retry_after(&mut self) -> (String, Duration) {
        match self.options.retry_after_ms {
            Some((a, b)) => {
                let wait = Duration::from_millis(self.rng.u64(a.min(b)..=a.max(b)));
                (format!("{:.3}", wait.as_secs_f64()), wait)
            }
            None => {
                let text = self.options.retry_after.clone();
                let wait = text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                    .unwrap_or(Duration::ZERO);
                (text, wait)
            }
        }
    }

    /// Draws whether this call fails, and how; counts the failure.
    pub(crate) fn fault(&mut self, call: Call) -> Option<Fault> {
        let rate = match call {
            Call::Read => self
                .options
                .read_failure_rate
                .unwrap_or(self.options.failure_rate),
            Call::Create | Call::Update | Call::Delete => self.options.failure_rate,
        };
        let status = if self.options.down {
            503
        } else if self.rng.f64() < rate {
            let statuses = &self.options.failure_statuses;
            if statuses.is_empty() {
                503
            } else {
                statuses[self.rng.usize(..statuses.len())]
            }
        } else {
            return None;
        };
        // `down` means Graph never saw the request, so nothing can have been applied.
        let applied = call == Call::Create
            && !self.options.down
            && status >= 500
            && self.rng.f64() < self.options.applied_before_failure_rate;
        self.stats.failures_injected += 1;
        let (retry_after, wait) = self.draw_retry_after();
        if status == 429 {
            return Some(self.answer_429(wait));
        }
        Some(Fault {
            status,
            applied,
            retry_after,
        })
    }

    /// Stores a new object with a fresh GUID `id` (overriding any client-sent one).
    pub(crate) fn insert(&mut self, mut object: Map<String, Value>) -> Value {
        let id = Uuid::new_v4().to_string();
        object.insert("id".to_owned(), Value::String(id.clone()));
        let object = Value::Object(object);
        self.ids.insert(id, self.next_seq);
        self.objects.insert(self.next_seq, object.clone());
        self.next_seq += 1;
        self.stats.posts_applied += 1;
        object
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Value> {
        self.ids.get(id).and_then(|seq| self.objects.get(seq))
    }

    /// Replaces the given top-level properties; `id` and `@odata.*` annotations are ignored.
    pub(crate) fn patch(&mut self, id: &str, changes: Map<String, Value>) -> Option<Value> {
        let seq = self.ids.get(id)?;
        let object = self.objects.get_mut(seq)?.as_object_mut()?;
        for (key, value) in changes {
            if key != "id" && !key.starts_with("@odata.") {
                object.insert(key, value);
            }
        }
        Some(Value::Object(object.clone()))
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        match self.ids.remove(id) {
            Some(seq) => self.objects.remove(&seq).is_some(),
            None => false,
        }
    }

    /// One list page after the sequence `after`, and the sequence to continue from if more
    /// objects remain.
    pub(crate) fn page(&self, after: Option<u64>) -> (Vec<Value>, Option<u64>) {
        let size = self.options.page_size.max(1);
        let start = after.map_or(0, |seq| seq + 1);
        let mut rest = self.objects.range(start..);
        let page: Vec<(u64, Value)> = rest
            .by_ref()
            .take(size)
            .map(|(seq, object)| (*seq, object.clone()))
            .collect();
        let more = rest.next().is_some();
        let next = page.last().filter(|_| more).map(|(seq, _)| *seq);
        (page.into_iter().map(|(_, object)| object).collect(), next)
    }

    /// Every object whose `displayName` equals `name` (Graph's `eq` on a string is
    /// case-insensitive), in insertion order.
    pub(crate) fn named(&self, name: &str) -> Vec<Value> {
        self.objects
            .values()
            .filter(|object| {
                object["displayName"]
                    .as_str()
                    .is_some_and(|held| held.to_lowercase() == name.to_lowercase())
            })
            .cloned()
            .collect()
    }

    pub(crate) fn objects(&self) -> Vec<Value> {
        self.objects.values().cloned().collect()
    }
}
