//! Snapshots of every function's usage totals, one a minute for a day, so that
//! `/_wasmfn/usage?since=SECONDS` (and `wasmfn cost --since`) can tell what a recent window
//! used.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use wasmfn_host_core::UsageTotals;

/// How often a snapshot is taken (the resolution of `--since`).
pub const EVERY: Duration = Duration::from_secs(60);

/// Snapshots kept: a day of them.
const KEEP: usize = 24 * 60;

type Snapshot = (SystemTime, BTreeMap<String, UsageTotals>);

/// Usage snapshots of one app, oldest first.
pub struct UsageHistory {
    /// When the app loaded: the start of every window that reaches past the oldest snapshot.
    loaded: SystemTime,
    snapshots: Mutex<VecDeque<Snapshot>>,
}

impl Default for UsageHistory {
    fn default() -> Self {
        Self {
            loaded: SystemTime::now(),
            snapshots: Mutex::new(VecDeque::new()),
        }
    }
}

impl UsageHistory {
    /// Keep `totals` as the snapshot of now.
    pub fn record(&self, totals: BTreeMap<String, UsageTotals>) {
        let mut snapshots = self.snapshots.lock().unwrap();
        if snapshots.len() == KEEP {
            snapshots.pop_front();
        }
        snapshots.push_back((SystemTime::now(), totals));
    }

    /// What to subtract for a window of `since` ending now: the newest snapshot at least that
    /// old, or nothing (zeros, from load) when there is none. Returns when the window starts.
    pub fn baseline(&self, since: Duration) -> (SystemTime, BTreeMap<String, UsageTotals>) {
        let cutoff = SystemTime::now()
            .checked_sub(since)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let snapshots = self.snapshots.lock().unwrap();
        snapshots
            .iter()
            .rev()
            .find(|(at, _)| *at <= cutoff)
            .cloned()
            .unwrap_or_else(|| (self.loaded, BTreeMap::new()))
    }

    /// When the app loaded.
    pub fn loaded(&self) -> SystemTime {
        self.loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_starts_at_the_newest_snapshot_old_enough_or_at_load() {
        let history = UsageHistory::default();
        let totals = |n| {
            BTreeMap::from([(
                "hello".to_string(),
                UsageTotals {
                    invocations: n,
                    ..UsageTotals::default()
                },
            )])
        };
        history.record(totals(3));
        std::thread::sleep(Duration::from_millis(20));
        history.record(totals(5));
        // A window of 10 ms: the 3-invocation snapshot is old enough, the newer one not.
        let (_, base) = history.baseline(Duration::from_millis(10));
        assert_eq!(base["hello"].invocations, 3);
        // A window older than every snapshot starts at load, from zero.
        let (start, base) = history.baseline(Duration::from_secs(3600));
        assert!(base.is_empty());
        assert_eq!(start, history.loaded());
    }
}
