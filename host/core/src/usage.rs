//! Resource accounting of invocations: what each one used (wall time, time on a host thread,
//! instantiation, peak memory, bytes in and out), its running totals per function, and the
//! metrics each invocation feeds.
//!
//! Metrics go through the [`metrics`] facade: the host records them whether or not anything
//! listens, and an embedder (or `wasmfn serve`, with its Prometheus exporter) installs a
//! recorder *before loading functions*, because each function registers its handles once, at
//! load, so that an invocation only bumps atomics (no label hashing or allocation per call).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use serde::{Deserialize, Serialize};

use crate::error::InvokeError;
use crate::world::World;

/// What one invocation used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// From admission to the end of the guest's work (an HTTP guest's work ends when it has
    /// written its response body).
    pub wall: Duration,
    /// Time the invocation ran on a host thread: the sum of the durations of its polls, so
    /// waiting for I/O, timers or a concurrency slot is not counted. It is the thread's CPU
    /// time except for the moments the OS ran another process on that thread's core.
    pub cpu: Duration,
    /// Creating the instance, when the invocation got a fresh one (`None`: a warm instance
    /// was reused).
    pub instantiation: Option<Duration>,
    /// Bytes of linear memory the instance held at its largest (all its memories together;
    /// wasm memories never shrink, so this is the size at the end).
    pub peak_memory: u64,
    /// Bytes of the event or request body the guest was given (read, for HTTP).
    pub bytes_in: u64,
    /// Bytes of the HTTP response body sent to the client (0 in the other worlds).
    pub bytes_out: u64,
}

/// How an invocation ended, as the `outcome` label of `wasmfn_invocations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest completed (for HTTP: set a response, whatever its status).
    Ok,
    /// The guest returned its own error (failed the batch, the run or the task).
    HandlerError,
    /// The invocation failed; the label is the error's kind.
    Failed(&'static str),
}

impl Outcome {
    /// Every label value, in the order [`Outcome::index`] uses.
    pub const LABELS: [&'static str; 9] = [
        "ok",
        "handler_error",
        "trap",
        "timeout",
        "memory",
        "overloaded",
        "instantiation",
        "bad_invocation",
        "request_too_large",
    ];

    /// The outcome of an invocation that failed with `error`.
    pub fn of_error(error: &InvokeError) -> Self {
        Self::Failed(match error {
            InvokeError::Trap { .. } => "trap",
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::MemoryLimit { .. } => "memory",
            InvokeError::Overloaded { .. } | InvokeError::HostBusy { .. } => "overloaded",
            InvokeError::Instantiate { .. } => "instantiation",
            InvokeError::BadInvocation { .. } => "bad_invocation",
            InvokeError::RequestTooLarge { .. } => "request_too_large",
        })
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HandlerError => "handler_error",
            Outcome::Failed(kind) => kind,
        }
    }

    fn index(self) -> usize {
        let label = self.label();
        Self::LABELS.iter().position(|l| *l == label).unwrap_or(0)
    }
}

/// Running totals of one function's invocations since it was loaded (what `wasmfn cost` and
/// the admin API's `/_wasmfn/usage` read). Updated with relaxed atomics: a reader may see one
/// invocation's fields partly added.
#[derive(Default)]
pub(crate) struct Totals {
    invocations: AtomicU64,
    failed: AtomicU64,
    cold_starts: AtomicU64,
    wall_us: AtomicU64,
    /// Wall time rounded up to whole milliseconds per invocation (how Lambda bills).
    billed_ms: AtomicU64,
    cpu_us: AtomicU64,
    peak_memory: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    max_wall_us: AtomicU64,
    max_cpu_us: AtomicU64,
    max_bytes_in: AtomicU64,
    max_bytes_out: AtomicU64,
}

/// A snapshot of a function's [`Totals`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageTotals {
    /// Invocations that ended (any outcome).
    pub invocations: u64,
    /// Of those, how many failed or returned the guest's own error.
    pub failed: u64,
    /// Of those, how many created a fresh instance.
    pub cold_starts: u64,
    /// Sum of wall times, in microseconds.
    pub wall_us: u64,
    /// Sum of wall times each rounded up to a whole millisecond.
    pub billed_ms: u64,
    /// Sum of on-thread (CPU) times, in microseconds.
    pub cpu_us: u64,
    /// The largest peak memory of any invocation, in bytes.
    pub peak_memory: u64,
    /// Sum of bytes in.
    pub bytes_in: u64,
    /// Sum of bytes out.
    pub bytes_out: u64,
    /// The longest wall time of one invocation, in microseconds.
    pub max_wall_us: u64,
    /// The longest on-thread time of one invocation, in microseconds.
    pub max_cpu_us: u64,
    /// The largest event or request body of one invocation.
    pub max_bytes_in: u64,
    /// The largest response body of one invocation.
    pub max_bytes_out: u64,
}

impl UsageTotals {
    /// What was used after `earlier` (an older snapshot of the same function): sums are
    /// differences; the maxima (peak memory, longest invocation...) stay those since load,
    /// since a maximum cannot be taken apart.
    pub fn since(&self, earlier: &UsageTotals) -> UsageTotals {
        UsageTotals {
            invocations: self.invocations.saturating_sub(earlier.invocations),
            failed: self.failed.saturating_sub(earlier.failed),
            cold_starts: self.cold_starts.saturating_sub(earlier.cold_starts),
            wall_us: self.wall_us.saturating_sub(earlier.wall_us),
            billed_ms: self.billed_ms.saturating_sub(earlier.billed_ms),
            cpu_us: self.cpu_us.saturating_sub(earlier.cpu_us),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            ..*self
        }
    }
}

impl Totals {
    fn add(&self, outcome: Outcome, usage: &Usage) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if usage.instantiation.is_some() {
            self.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
        let wall_us = usage.wall.as_micros() as u64;
        self.wall_us.fetch_add(wall_us, Ordering::Relaxed);
        self.billed_ms
            .fetch_add(wall_us.div_ceil(1000).max(1), Ordering::Relaxed);
        let cpu_us = usage.cpu.as_micros() as u64;
        self.cpu_us.fetch_add(cpu_us, Ordering::Relaxed);
        self.max_wall_us.fetch_max(wall_us, Ordering::Relaxed);
        self.max_cpu_us.fetch_max(cpu_us, Ordering::Relaxed);
        self.max_bytes_in
            .fetch_max(usage.bytes_in, Ordering::Relaxed);
        self.max_bytes_out
            .fetch_max(usage.bytes_out, Ordering::Relaxed);
        self.peak_memory
            .fetch_max(usage.peak_memory, Ordering::Relaxed);
        self.bytes_in.fetch_add(usage.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(usage.bytes_out, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> UsageTotals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UsageTotals {
            invocations: get(&self.invocations),
            failed: get(&self.failed),
            cold_starts: get(&self.cold_starts),
            wall_us: get(&self.wall_us),
            billed_ms: get(&self.billed_ms),
            cpu_us: get(&self.cpu_us),
            peak_memory: get(&self.peak_memory),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            max_wall_us: get(&self.max_wall_us),
            max_cpu_us: get(&self.max_cpu_us),
            max_bytes_in: get(&self.max_bytes_in),
            max_bytes_out: get(&self.max_bytes_out),
        }
    }
}

/// One function's metric handles, registered when it loads.
pub(crate) struct FunctionMetrics {
    outcomes: Vec<Counter>,
    duration: Histogram,
    cpu: Histogram,
    instantiation: Histogram,
    peak_memory: Histogram,
    bytes_in: Counter,
    bytes_out: Counter,
    warm_reuse: Counter,
    cold_starts: Counter,
    in_flight: Gauge,
    rejected: Counter,
    pub(crate) totals: Totals,
    pub(crate) recent: crate::recent::Recent,
}

/// Names of the metrics every function has (the README's metrics table lists them).
pub mod names {
    /// Counter, labels `function`, `world`, `outcome`.
    pub const INVOCATIONS: &str = "wasmfn_invocations_total";
    /// Histogram of wall time, seconds.
    pub const DURATION: &str = "wasmfn_invocation_duration_seconds";
    /// Histogram of on-thread (CPU) time, seconds.
    pub const CPU: &str = "wasmfn_invocation_cpu_seconds";
    /// Histogram of instance creation time (fresh instances only), seconds.
    pub const INSTANTIATION: &str = "wasmfn_instantiation_duration_seconds";
    /// Histogram of each invocation's peak linear memory, bytes.
    pub const PEAK_MEMORY: &str = "wasmfn_invocation_peak_memory_bytes";
    /// Counter of request/event bytes given to guests.
    pub const BYTES_IN: &str = "wasmfn_invocation_bytes_in_total";
    /// Counter of response bytes sent.
    pub const BYTES_OUT: &str = "wasmfn_invocation_bytes_out_total";
    /// Counter of invocations served by a warm (reused) instance.
    pub const WARM_REUSE: &str = "wasmfn_warm_reuse_total";
    /// Counter of invocations that created a fresh instance.
    pub const COLD_STARTS: &str = "wasmfn_cold_starts_total";
    /// Gauge of invocations running now.
    pub const IN_FLIGHT: &str = "wasmfn_invocations_in_flight";
    /// Counter of invocations refused at the concurrency limit or a full instance pool.
    pub const REJECTED: &str = "wasmfn_concurrency_rejections_total";
    /// Gauge of the function's memory limit, bytes.
    pub const MEMORY_LIMIT: &str = "wasmfn_function_memory_limit_bytes";
    /// Gauge of live instances (in use or warm) of the host's pool.
    pub const POOL_INSTANCES: &str = "wasmfn_pool_instances";
    /// Counter of compile cache lookups, label `result` (`hit`, `miss`).
    pub const COMPILE_CACHE: &str = "wasmfn_compile_cache_total";
}

impl FunctionMetrics {
    pub(crate) fn register(name: &str, world: World, memory_limit: u64) -> Self {
        let (function, world) = (name.to_string(), world.name());
        let outcomes = Outcome::LABELS
            .iter()
            .map(|outcome| {
                metrics::counter!(names::INVOCATIONS, "function" => function.clone(),
                    "world" => world, "outcome" => *outcome)
            })
            .collect();
        let labels = [("function", function.clone()), ("world", world.to_string())];
        let only_function = [("function", function.clone())];
        metrics::gauge!(names::MEMORY_LIMIT, &only_function).set(memory_limit as f64);
        Self {
            outcomes,
            duration: metrics::histogram!(names::DURATION, &labels),
            cpu: metrics::histogram!(names::CPU, &labels),
            instantiation: metrics::histogram!(names::INSTANTIATION, &only_function),
            peak_memory: metrics::histogram!(names::PEAK_MEMORY, &only_function),
            bytes_in: metrics::counter!(names::BYTES_IN, &labels),
            bytes_out: metrics::counter!(names::BYTES_OUT, &labels),
            warm_reuse: metrics::counter!(names::WARM_REUSE, &only_function),
            cold_starts: metrics::counter!(names::COLD_STARTS, &only_function),
            in_flight: metrics::gauge!(names::IN_FLIGHT, &labels),
            rejected: metrics::counter!(names::REJECTED, &only_function),
            totals: Totals::default(),
            recent: Default::default(),
        }
    }

    /// An invocation started running (it holds a concurrency slot).
    pub(crate) fn started(&self) {
        self.in_flight.increment(1.0);
    }

    /// An invocation that [`FunctionMetrics::started`] ended.
    pub(crate) fn stopped(&self) {
        self.in_flight.decrement(1.0);
    }

    /// Count one ended invocation.
    pub(crate) fn record(&self, outcome: Outcome, usage: &Usage, ended: crate::recent::Ended) {
        self.outcomes[outcome.index()].increment(1);
        self.recent.push(outcome, usage, ended);
        if outcome == Outcome::Failed("overloaded") {
            self.rejected.increment(1);
            return;
        }
        self.duration.record(usage.wall.as_secs_f64());
        self.cpu.record(usage.cpu.as_secs_f64());
        match usage.instantiation {
            Some(t) => {
                self.cold_starts.increment(1);
                self.instantiation.record(t.as_secs_f64());
            }
            None => self.warm_reuse.increment(1),
        }
        if usage.peak_memory > 0 {
            self.peak_memory.record(usage.peak_memory as f64);
        }
        self.bytes_in.increment(usage.bytes_in);
        self.bytes_out.increment(usage.bytes_out);
        self.totals.add(outcome, usage);
    }
}

/// Live instances of the host's pool, across functions.
pub(crate) fn pool_instances() -> &'static Gauge {
    static GAUGE: std::sync::OnceLock<Gauge> = std::sync::OnceLock::new();
    GAUGE.get_or_init(|| metrics::gauge!(names::POOL_INSTANCES))
}

pin_project_lite::pin_project! {
    /// A future that adds the time spent in each of its polls to `busy`.
    pub(crate) struct OnThread<'a, F> {
        #[pin]
        inner: F,
        busy: &'a mut Duration,
    }
}

impl<'a, F> OnThread<'a, F> {
    pub(crate) fn new(inner: F, busy: &'a mut Duration) -> Self {
        Self { inner, busy }
    }
}

impl<F: Future> Future for OnThread<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let start = Instant::now();
        let polled = this.inner.poll(cx);
        **this.busy += start.elapsed();
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_is_not_on_thread_time_but_work_is() {
        let mut busy = Duration::ZERO;
        OnThread::new(tokio::time::sleep(Duration::from_millis(50)), &mut busy).await;
        assert!(busy < Duration::from_millis(10), "{busy:?}");
        let mut busy = Duration::ZERO;
        OnThread::new(
            async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(30) {
                    std::hint::spin_loop();
                }
            },
            &mut busy,
        )
        .await;
        assert!(busy >= Duration::from_millis(30), "{busy:?}");
    }

    #[test]
    fn totals_round_each_invocation_up_to_a_billed_millisecond() {
        let totals = Totals::default();
        let usage = |wall_us, peak| Usage {
            wall: Duration::from_micros(wall_us),
            peak_memory: peak,
            ..Usage::default()
        };
        totals.add(Outcome::Ok, &usage(200, 1 << 20));
        totals.add(Outcome::HandlerError, &usage(1_001, 3 << 20));
        totals.add(Outcome::Ok, &usage(3_000, 2 << 20));
        let t = totals.snapshot();
        assert_eq!(t.invocations, 3);
        assert_eq!(t.failed, 1);
        assert_eq!(t.wall_us, 4_201);
        // 1 ms + 2 ms + 3 ms.
        assert_eq!(t.billed_ms, 6);
        assert_eq!(t.peak_memory, 3 << 20);
    }

    #[test]
    fn every_error_kind_has_an_outcome_label() {
        for label in Outcome::LABELS {
            let outcome = match label {
                "ok" => Outcome::Ok,
                "handler_error" => Outcome::HandlerError,
                other => Outcome::Failed(other),
            };
            assert_eq!(Outcome::LABELS[outcome.index()], label);
        }
    }
}
