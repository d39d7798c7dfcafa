//! The last invocations of each function, in a small ring per function, so that an operator
//! (the console's functions view, `GET /_wasmfn/functions/NAME`) can see what just happened
//! and how long it took without a metrics backend.
//!
//! Each ended invocation costs one uncontended lock and a push. [`Ring`] is the bounded,
//! newest-first list behind it, also used for the other "last N" views (schedule runs, event
//! deliveries).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::usage::{Outcome, Usage};

/// Invocations kept per function: enough for a p99 that means something.
pub const KEEP: usize = 200;

/// One ended invocation, as the console lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentInvocation {
    /// Its id (the `invocation` field of its log lines).
    pub invocation: u64,
    /// When it ended, in milliseconds since the epoch.
    pub ended_ms: u64,
    /// How it ended (`ok`, `handler_error`, `trap`, `timeout`, ...).
    pub outcome: &'static str,
    /// Wall time, microseconds.
    pub duration_us: u64,
    /// On-thread time, microseconds.
    pub cpu_us: u64,
    /// Peak linear memory, bytes.
    pub peak_memory: u64,
    /// Whether it created a fresh instance.
    pub cold: bool,
    /// The HTTP response status (HTTP functions that answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its trace id, when traces are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The last `capacity` items pushed, shared between threads.
pub struct Ring<T> {
    capacity: usize,
    items: Mutex<VecDeque<T>>,
}

impl<T: Clone> Ring<T> {
    /// An empty ring keeping at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            items: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// Add `items`, oldest first, dropping the oldest kept ones beyond the capacity.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        let mut kept = self.items.lock().unwrap_or_else(|p| p.into_inner());
        for item in items {
            if kept.len() == self.capacity {
                kept.pop_front();
            }
            kept.push_back(item);
        }
    }

    /// Add one item.
    pub fn push(&self, item: T) {
        self.extend([item]);
    }

    /// What it holds, newest first.
    pub fn newest_first(&self) -> Vec<T> {
        let kept = self.items.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().rev().cloned().collect()
    }
}

/// What an ended invocation adds to its function's ring besides its usage.
pub(crate) struct Ended {
    pub invocation: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Its trace id (when traces are on), formatted once for the ring and the log line.
    pub trace_id: Option<String>,
}

/// One function's ring.
pub(crate) struct Recent(Ring<RecentInvocation>);

impl Default for Recent {
    fn default() -> Self {
        Self(Ring::new(KEEP))
    }
}

impl Recent {
    pub(crate) fn push(&self, outcome: Outcome, usage: &Usage, ended: Ended) {
        let entry = RecentInvocation {
            invocation: ended.invocation,
            ended_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            outcome: outcome.label(),
            duration_us: usage.wall.as_micros() as u64,
            cpu_us: usage.cpu.as_micros() as u64,
            peak_memory: usage.peak_memory,
            cold: usage.instantiation.is_some(),
            status: ended.status,
            error: ended.error,
            trace_id: ended.trace_id,
        };
        self.0.push(entry);
    }

    /// Newest first.
    pub(crate) fn list(&self) -> Vec<RecentInvocation> {
        self.0.newest_first()
    }
}

/// The `q` quantile (0..=1) of `values` (sorted in place), by the nearest-rank method;
/// `None` when there are none.
pub fn quantile(values: &mut [u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.saturating_sub(1).min(values.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50));
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut [7], 0.99), Some(7));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn the_ring_keeps_the_newest_first() {
        let recent = Recent::default();
        for invocation in 0..(KEEP as u64 + 5) {
            let ended = Ended {
                invocation,
                status: None,
                error: None,
                trace_id: None,
            };
            recent.push(Outcome::Ok, &Usage::default(), ended);
        }
        let list = recent.list();
        assert_eq!(list.len(), KEEP);
        assert_eq!(list[0].invocation, KEEP as u64 + 4);
        assert_eq!(list[KEEP - 1].invocation, 5);
    }
}
