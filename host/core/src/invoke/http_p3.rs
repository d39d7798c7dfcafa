//! Serving `wasi:http/handler@0.3.x` components (WASI 0.3, async in the component model).
//!
//! A 0.3 handler is an async export: one instance can work on several requests at once, each
//! a task of the component. Requests go through wasmtime-wasi-http's [`ProxyHandler`], the
//! worker pool `wasmtime serve` uses, one pool per server thread: a worker owns one instance
//! (store), takes requests from its pool's queue while its [`Worker`] says it may (the
//! function's instance mode sets how many at once and in all), and ends when it expires
//! ([`Expiry`]), traps, or has served its last one. This module supplies the wasmfn side:
//! stores built like every other instance's (limiter, epoch deadline, capability contexts),
//! per-request deadlines, and the error each request is answered with when its instance fails.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::error::InvokeError;
use crate::extensions::Extensions;
use crate::instances::{classify, new_store, PoolSlot};
use crate::limits::{InstanceMode, Limits};
use crate::state::InstanceState;

/// How long past its deadline a request waits for the pool before it is answered with a
/// timeout anyway: the pool retires an overdue instance itself, this only bounds the wait if
/// its event loop is stuck in a host call.
const RETIRE_GRACE: Duration = Duration::from_millis(500);

/// How long a request whose instance died waits for the worker to say why (it does so right
/// after dropping the instance's tasks).
const VERDICT_WAIT: Duration = Duration::from_secs(2);

/// The worker pools of one 0.3 http function: one per server thread. Each server thread runs
/// its own single-threaded runtime, and a worker runs on the thread whose request started it;
/// a shared pool would hand most requests to another thread, and every hand-off (request in,
/// response out) would wake that thread: about a fifth of the throughput at 16 connections on
/// two cores. Threads beyond [`SHARDS`] share pools (still correct, only slower).
pub(crate) struct P3Pool {
    shards: Box<[OnceLock<ProxyHandler<PoolState>>]>,
    pre: ServicePre<InstanceState>,
    settings: PoolSettings,
}

/// What every pool of one function is built with.
#[derive(Clone)]
struct PoolSettings {
    engine: wasmtime::Engine,
    shared: Arc<Shared>,
    max_concurrent: usize,
    max_uses: usize,
    idle_timeout: Duration,
    contexts: Arc<Extensions>,
}

/// Pools per function, at most: more than any server's thread count (one per core).
const SHARDS: usize = 64;

/// This thread's pool index, handed out in the order threads first serve a 0.3 request.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s) % SHARDS
}

/// What one request hands the pool: who it is and when it must have answered, and where the
/// worker reports about it.
pub(crate) struct RequestData {
    invocation: u64,
    deadline: Instant,
    report: Arc<Report>,
}

/// What the worker that took a request tells it.
#[derive(Default)]
pub(crate) struct Report {
    /// The instance's memory when the request started (a concurrent instance's memory is
    /// shared by its requests: this is the closest per-request figure).
    pub(crate) memory: AtomicU64,
    /// How long creating the instance took, if this request was its first.
    pub(crate) instantiated_in: Mutex<Option<Duration>>,
    /// Why the instance ended, if it failed while this request was in it.
    failure: Mutex<Option<InvokeError>>,
    failed: Notify,
}

impl P3Pool {
    /// Pools for function `name`, sized by its instance mode: fresh is one request per
    /// instance, reuse one at a time up to its `max-uses`, concurrent up to `max-concurrent`
    /// at once.
    pub(crate) fn new(
        pre: ServicePre<InstanceState>,
        name: Arc<str>,
        limits: &Limits,
        mode: &InstanceMode,
        contexts: Arc<Extensions>,
    ) -> Self {
        let (max_concurrent, max_uses, idle_timeout) = match mode {
            InstanceMode::Fresh => (1, 1, Duration::ZERO),
            InstanceMode::Reuse(p) => (1, p.max_uses, p.idle_timeout),
            InstanceMode::Concurrent(p) => (p.max_concurrent, p.max_uses, p.idle_timeout),
        };
        Self {
            shards: (0..SHARDS).map(|_| OnceLock::new()).collect(),
            settings: PoolSettings {
                engine: pre.engine().clone(),
                shared: Arc::new(Shared {
                    name,
                    limits: limits.clone(),
                }),
                max_concurrent: max_concurrent.max(1) as usize,
                max_uses: max_uses.max(1) as usize,
                idle_timeout,
                contexts,
            },
            pre,
        }
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        &self.settings.engine
    }

    /// This thread's pool.
    fn handler(&self) -> &ProxyHandler<PoolState> {
        self.shards[shard()].get_or_init(|| {
            ProxyHandler::new(PoolState {
                pre: ProxyPre::P3(self.pre.clone()),
                settings: self.settings.clone(),
            })
        })
    }

    /// Handle one request: the response head once the guest has produced it (its body
    /// streams from the instance's tasks), with what the worker reported about it.
    pub(crate) async fn handle(
        &self,
        request: http::Request<WasiBody>,
        invocation: u64,
        deadline: Instant,
    ) -> Result<(http::Response<WasiBody>, Arc<Report>), InvokeError> {
        let report = Arc::new(Report::default());
        let data = RequestData {
            invocation,
            deadline,
            report: report.clone(),
        };
        let handled = tokio::time::timeout_at(
            (deadline + RETIRE_GRACE).into(),
            self.handler().handle(data, request),
        )
        .await;
        match handled {
            Ok(Ok(response)) => Ok((response, report)),
            Ok(Err(error)) => Err(request_error(&self.settings.shared, error, &report).await),
            Err(_elapsed) => Err(self.settings.shared.timeout()),
        }
    }
}

/// The error a request of a failed handling is answered with.
async fn request_error(shared: &Shared, error: wasmtime::Error, report: &Report) -> InvokeError {
    if let Some(failed) = error.downcast_ref::<InstantiationError<RequestData>>() {
        return match failed.error.downcast_ref::<InvokeError>() {
            Some(e) => e.clone(),
            None => InvokeError::Instantiate {
                function: shared.name.to_string(),
                message: format!("{:#}", failed.error),
            },
        };
    }
    if error.downcast_ref::<ExpirationError>().is_some() {
        return shared.timeout();
    }
    if error.downcast_ref::<TrapOrPanicError>().is_some() {
        // The worker drops the instance's tasks (this request's among them) before it
        // reports why: wait for the report.
        let _ = tokio::time::timeout(VERDICT_WAIT, report.failed.notified()).await;
        return report
            .failure
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| InvokeError::Trap {
                function: shared.name.to_string(),
                message: "its instance ended before it answered".into(),
                backtrace: None,
            });
    }
    InvokeError::Trap {
        function: shared.name.to_string(),
        message: format!(
            "the guest answered with a wasi:http error instead of a response: {error:#}"
        ),
        backtrace: None,
    }
}

/// What every worker of a pool needs to name its function and apply its limits.
struct Shared {
    name: Arc<str>,
    limits: Limits,
}

impl Shared {
    fn timeout(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.name.to_string(),
            after: self.limits.timeout,
        }
    }
}

struct PoolState {
    pre: ProxyPre<InstanceState>,
    settings: PoolSettings,
}

impl HandlerState for PoolState {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        let started = Instant::now();
        let shared = &self.settings.shared;
        // Start-up code runs under the function's timeout like a request.
        let deadline = started + shared.limits.timeout;
        let mut store = new_store(
            &self.settings.engine,
            &shared.name,
            &shared.limits,
            self.settings.contexts.clone(),
            deadline,
        );
        let proxy = match self.pre.instantiate_async(&mut store).await {
            Ok(proxy) => proxy,
            Err(e) => {
                let error = classify(&shared.name, &shared.limits, &store, e);
                return Err(wasmtime::Error::new(error));
            }
        };
        let expired = Arc::new(AtomicBool::new(false));
        Ok(Instance {
            store,
            proxy,
            view: <InstanceState as WasiHttpView>::http,
            expiration: Expiry {
                timer: Mutex::new(Box::pin(tokio::time::sleep_until(deadline.into()))),
                timeout: shared.limits.timeout,
                idle_timeout: self.settings.idle_timeout,
                expired: expired.clone(),
            },
            state: Worker {
                shared: shared.clone(),
                max_concurrent: self.settings.max_concurrent,
                max_uses: self.settings.max_uses,
                instantiated_in: Mutex::new(Some(started.elapsed())),
                reports: Mutex::new(Vec::new()),
                expired,
                _slot: PoolSlot::new(),
            },
        })
    }
}

/// One worker's instance: how many requests it takes, and what it reports to them.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    max_concurrent: usize,
    max_uses: usize,
    /// Taken by the first request.
    instantiated_in: Mutex<Option<Duration>>,
    /// The requests it took that may still wait for an answer.
    reports: Mutex<Vec<Arc<Report>>>,
    /// Set by its [`Expiry`] when it retired the instance with requests still in it.
    expired: Arc<AtomicBool>,
    _slot: PoolSlot,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = RequestData;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_uses {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, InstanceState>,
        data: RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>> {
        let state = store.data_mut();
        // Guest log lines name the newest request of the instance.
        state.set_invocation(data.invocation);
        // The epoch callback interrupts the instance once every request it took is overdue.
        state.deadline = state.deadline.max(data.deadline);
        data.report
            .memory
            .store(state.limiter.total(), Ordering::Relaxed);
        *data.report.instantiated_in.lock().unwrap() = self.instantiated_in.lock().unwrap().take();
        let mut reports = self.reports.lock().unwrap();
        // Requests that have been answered hold no reference of their own any more.
        reports.retain(|r| Arc::strong_count(r) > 1);
        reports.push(data.report);
        let deadline = data.deadline;
        Box::pin(SyncFuture(Mutex::new(Box::pin(tokio::time::sleep_until(
            deadline.into(),
        )))))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        let Err(error) = result else {
            return;
        };
        let shared = &self.shared;
        let error = if self.expired.load(Ordering::Relaxed) {
            shared.timeout()
        } else {
            match classify(&shared.name, &shared.limits, &store, error) {
                InvokeError::Instantiate { function, message } => InvokeError::Trap {
                    function,
                    message,
                    backtrace: None,
                },
                other => other,
            }
        };
        drop(store);
        let reports = std::mem::take(&mut *self.reports.lock().unwrap());
        let waiting = reports.iter().filter(|r| Arc::strong_count(r) > 1).count();
        tracing::warn!(
            target: "wasmfn::invocation",
            function = %shared.name, requests_in_it = waiting,
            "a WASI 0.3 instance was retired: {error}"
        );
        for report in reports {
            let retired = match &error {
                InvokeError::Trap {
                    function,
                    message,
                    backtrace,
                } if waiting > 1 => InvokeError::Trap {
                    function: function.clone(),
                    message: format!(
                        "its instance was retired while serving {waiting} requests at once, \
                         after a trap in one of them: {message}"
                    ),
                    backtrace: backtrace.clone(),
                },
                other => other.clone(),
            };
            *report.failure.lock().unwrap() = Some(retired);
            report.failed.notify_one();
        }
    }
}

/// When a worker's instance is retired: idle too long, or a request (or the work after its
/// response) running past the function's timeout. Polled from outside the instance's event
/// loop, so it holds even while a host call blocks that loop.
pub(crate) struct Expiry {
    /// Wakes the worker when the current limit passes (`Mutex`: the trait wants `Sync`).
    timer: Mutex<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    idle_timeout: Duration,
    expired: Arc<AtomicBool>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => self.idle_timeout,
            // Each request's own deadline answers it; this retires an instance whose newest
            // request is overdue, which only happens when its event loop is stuck.
            WorkerStatus::Requests => self.timeout + RETIRE_GRACE,
            // Responses are out, their bodies (or the guest's work after them) still going.
            WorkerStatus::PostReturn => self.timeout,
        };
        let at = start + limit;
        if Instant::now() >= at {
            if status != WorkerStatus::Idle {
                self.expired.store(true, Ordering::Relaxed);
            }
            return Poll::Ready(());
        }
        let mut timer = self.timer.lock().unwrap();
        if timer.deadline() != at.into() {
            timer.as_mut().reset(at.into());
        }
        // Registers the waker; the time check above decides.
        let _ = timer.as_mut().poll(cx);
        Poll::Pending
    }
}

/// A `Send` future made `Sync` by a lock (the pool's expiration futures must be both; a tokio
/// timer is not `Sync`). Only ever polled by one task, so the lock is never contended.
struct SyncFuture<F>(Mutex<Pin<Box<F>>>);

impl<F: std::future::Future> std::future::Future for SyncFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.0.lock().unwrap().as_mut().poll(cx)
    }
}
