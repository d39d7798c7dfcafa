//! Who fires a tick: before a schedule runs at a due time, its host claims that tick. On one
//! host the claim is local (a state file keeps the last tick for the missed-run policy); in a
//! cluster every host claims the same tick in the shared database and exactly one wins, so a
//! schedule fires once per tick however many hosts run it, and keeps firing as long as any
//! host is alive. A schedule without `overlap` also takes a run lease with its claim: a tick
//! that comes while any host still runs the previous one is skipped, cluster-wide.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};

/// A pending claim operation.
pub type TickFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// The answer to a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This host fires the tick.
    Fire,
    /// Another host claimed this tick (or a later one) first.
    Elsewhere,
    /// This host claimed the tick, but the previous run still holds the run lease (no
    /// overlap): the tick is skipped, and only this host reports it.
    Busy,
}

/// Where the hosts of an app agree on who fires each tick.
pub trait Ticks: Send + Sync + 'static {
    /// The last tick fired of each schedule (ms since the epoch), for the missed-run policy.
    fn last_fired(&self) -> TickFuture<BTreeMap<String, i64>>;
    /// Claim `schedule`'s tick at `tick_ms`; `exclusive` also takes the run lease, refused
    /// while the previous run holds it.
    fn claim(&self, schedule: &str, tick_ms: i64, exclusive: bool) -> TickFuture<Claim>;
    /// Keep the run lease of `schedule`'s run of `tick_ms` (an exclusive claim) while it runs.
    fn renew(&self, schedule: &str, tick_ms: i64) -> TickFuture<()>;
    /// The run of `tick_ms` ended: give its run lease back.
    fn finish(&self, schedule: &str, tick_ms: i64) -> TickFuture<()>;
    /// How often a running exclusive run renews its lease (`None`: no lease to renew).
    fn renew_every(&self) -> Option<Duration>;
}

/// Ticks of one host: the last tick of each schedule in a JSON state file, and the run lease
/// as an in-process flag.
pub struct LocalTicks {
    state_file: PathBuf,
    running: Mutex<BTreeMap<String, Arc<AtomicBool>>>,
}

impl LocalTicks {
    /// Ticks recorded in `state_file`.
    pub fn new(state_file: PathBuf) -> Self {
        Self {
            state_file,
            running: Mutex::default(),
        }
    }

    fn load(&self) -> BTreeMap<String, i64> {
        std::fs::read(&self.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, name: &str, tick_ms: i64) -> Result<()> {
        let mut state = self.load();
        state.insert(name.to_string(), tick_ms);
        let tmp = self.state_file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&state)?)?;
        std::fs::rename(&tmp, &self.state_file).context("saving schedule state")
    }

    fn flag(&self, name: &str) -> Arc<AtomicBool> {
        self.running
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

impl Ticks for LocalTicks {
    fn last_fired(&self) -> TickFuture<BTreeMap<String, i64>> {
        let state = self.load();
        Box::pin(async move { Ok(state) })
    }

    fn claim(&self, schedule: &str, tick_ms: i64, exclusive: bool) -> TickFuture<Claim> {
        // A state file that cannot be written costs the missed-run record, not the run.
        if let Err(e) = self.save(schedule, tick_ms) {
            tracing::warn!(file = %self.state_file.display(), error = %format!("{e:#}"), "cannot record the schedule's last run");
        }
        let claim = if exclusive && self.flag(schedule).swap(true, Ordering::AcqRel) {
            Claim::Busy
        } else {
            Claim::Fire
        };
        Box::pin(async move { Ok(claim) })
    }

    fn renew(&self, _schedule: &str, _tick_ms: i64) -> TickFuture<()> {
        Box::pin(async { Ok(()) })
    }

    fn finish(&self, schedule: &str, _tick_ms: i64) -> TickFuture<()> {
        self.flag(schedule).store(false, Ordering::Release);
        Box::pin(async { Ok(()) })
    }

    fn renew_every(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_ticks_keep_the_last_tick_and_the_run_flag() {
        let dir = tempfile::tempdir().unwrap();
        let ticks = LocalTicks::new(dir.path().join("schedules.json"));
        assert_eq!(ticks.claim("a", 1000, true).await.unwrap(), Claim::Fire);
        // The run of 1000 still runs: the next exclusive tick is skipped, an overlapping one is not.
        assert_eq!(ticks.claim("a", 2000, true).await.unwrap(), Claim::Busy);
        assert_eq!(ticks.claim("b", 2000, false).await.unwrap(), Claim::Fire);
        ticks.finish("a", 1000).await.unwrap();
        assert_eq!(ticks.claim("a", 3000, true).await.unwrap(), Claim::Fire);
        let again = LocalTicks::new(dir.path().join("schedules.json"));
        let last = again.last_fired().await.unwrap();
        assert_eq!((last["a"], last["b"]), (3000, 2000));
    }
}
