//! The fake's state: stored objects, options, counters and the random draws.
//!
//! Everything sits behind one mutex that is never held across an `.await`, so each call sees
//! and changes the state atomically, and a seeded run draws in call order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::options::{FakeGraphOptions, FakeGraphStats};

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

    pub(crate) fn count(&mut self, call: Call) {
        let counter = match call {
            Call::Create => &mut self.stats.posts,
            Call::Read => &mut self.stats.gets,
            Call::Update => &mut self.stats.patches,
            Call::Delete => &mut self.stats.deletes,
        };
        *counter += 1;
    }

    pub(crate) fn latency(&mut self) -> Duration {
        let (a, b) = self.options.latency_ms;
        let (min, max) = (a.min(b), a.max(b));
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.rng.u64(min..=max))
    }

    /// Draws whether this call fails, and how; counts the failure.
    pub(crate) fn fault(&mut self, call: Call) -> Option<Fault> {
        let status = if self.options.down {
            503
        } else if self.rng.f64() < self.options.failure_rate {
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
        Some(Fault {
            status,
            applied,
            retry_after: self.options.retry_after.clone(),
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

    pub(crate) fn objects(&self) -> Vec<Value> {
        self.objects.values().cloned().collect()
    }
}
