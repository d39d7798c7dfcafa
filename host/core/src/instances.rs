//! The instance lifecycle of a loaded function: admission under its concurrency limit, a fresh
//! instance per invocation (or a warm one in reuse mode), the deadline, and turning wasmtime's
//! errors into [`InvokeError`]s.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use crate::bindings::{queue, schedule, stream, task};
use crate::error::InvokeError;
use crate::extensions::Extensions;
use crate::function::FunctionInner;
use crate::limits::{InstanceMode, Limits};
use crate::state::InstanceState;
use crate::usage::{pool_instances, OnThread, Outcome, Usage};

/// The pre-instantiated component, typed by world.
pub(crate) enum Handler {
    Http(ProxyPre<InstanceState>),
    Queue(queue::QueueExportsPre<InstanceState>),
    Stream(stream::StreamExportsPre<InstanceState>),
    Schedule(schedule::ScheduleExportsPre<InstanceState>),
    Task(task::TaskExportsPre<InstanceState>),
    /// A `wasi:http/handler@0.3.x` component, served by its own pool of workers (each an
    /// instance that may take several requests at once).
    HttpP3(crate::invoke::http_p3::P3Pool),
}

/// A live instance, typed by world.
pub(crate) enum Bindings {
    Http(Proxy),
    Queue(queue::QueueExports),
    Stream(stream::StreamExports),
    Schedule(schedule::ScheduleExports),
    Task(task::TaskExports),
}

/// An instance checked out for one invocation.
pub(crate) struct Lease {
    pub(crate) store: Store<InstanceState>,
    pub(crate) bindings: Bindings,
    pub(crate) uses: u32,
    pub(crate) idle_since: Instant,
    /// How long creating it took, until its first invocation (`None` once it is warm).
    pub(crate) instantiated_in: Option<Duration>,
    _slot: PoolSlot,
}

/// Counts a live instance in the `wasmfn_pool_instances` gauge while it exists.
pub(crate) struct PoolSlot;

impl PoolSlot {
    pub(crate) fn new() -> Self {
        pool_instances().increment(1.0);
        PoolSlot
    }
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        pool_instances().decrement(1.0);
    }
}

/// Counts an invocation in `wasmfn_invocations_in_flight` while it runs (`D`: a reference to
/// the function, borrowed or shared).
pub(crate) struct InFlight<D: Deref<Target = FunctionInner>>(D);

impl<D: Deref<Target = FunctionInner>> InFlight<D> {
    pub(crate) fn new(function: D) -> Self {
        function.metrics.started();
        InFlight(function)
    }
}

impl<D: Deref<Target = FunctionInner>> Drop for InFlight<D> {
    fn drop(&mut self) {
        self.0.metrics.stopped();
    }
}

/// A concurrency slot of one function, held before its invocation starts.
///
/// Triggers that pull work (queue consumers) wait for one before they take messages, so that
/// a busy function slows its consumers down instead of failing the messages they took.
pub struct Admission(OwnedSemaphorePermit);

/// Counter behind invocation ids (unique per process, short enough to read in logs).
static INVOCATIONS: AtomicU64 = AtomicU64::new(1);

/// A fresh invocation id.
pub(crate) fn next_invocation_id() -> u64 {
    INVOCATIONS.fetch_add(1, Ordering::Relaxed)
}

impl FunctionInner {
    /// Reserve a concurrency slot, or fail fast with `Overloaded`.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, InvokeError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Overloaded {
                function: self.name.to_string(),
                limit: self.limits.max_concurrency,
            })
    }

    /// Wait for a concurrency slot.
    pub(crate) async fn admission(&self) -> Admission {
        let permit = self.permits.clone().acquire_owned().await;
        Admission(permit.expect("a function's semaphore is never closed"))
    }

    /// Discard warm instances idle for longer than the reuse policy's idle timeout, freeing
    /// their pool slots. Returns how many were discarded.
    pub(crate) fn evict_idle(&self) -> usize {
        let InstanceMode::Reuse(policy) = &self.mode else {
            return 0;
        };
        let expired: Vec<Lease> = {
            let mut warm = self.warm.lock().unwrap();
            let (mut keep, mut expired): (Vec<Lease>, Vec<Lease>) = warm
                .drain(..)
                .partition(|l| l.idle_since.elapsed() < policy.idle_timeout);
            // Pre-warmed capacity stays, however long it idles: keep the most recent ones.
            while keep.len() < policy.prewarm as usize {
                match expired.pop() {
                    Some(l) => keep.insert(0, l),
                    None => break,
                }
            }
            *warm = keep;
            expired
        };
        // Dropped here, outside the lock: tearing down a store is not free.
        expired.len()
    }

    /// Create instances until the warm pool holds the policy's `prewarm` count; returns how
    /// many were created.
    pub(crate) async fn prewarm(&self) -> Result<usize, InvokeError> {
        let InstanceMode::Reuse(policy) = &self.mode else {
            return Ok(0);
        };
        let mut created = 0;
        while self.warm.lock().unwrap().len() < policy.prewarm as usize {
            // No invocation runs during pre-warming; the deadline only bounds start-up code.
            let mut lease = self
                .instantiate(Instant::now() + self.limits.timeout)
                .await?;
            // Its creation happened before any invocation: the first one is a warm start.
            lease.instantiated_in = None;
            self.warm.lock().unwrap().push(lease);
            created += 1;
        }
        Ok(created)
    }

    /// A warm idle instance if reuse is on and one is fresh enough, else a new instance.
    pub(crate) async fn checkout(
        &self,
        deadline: Instant,
        invocation: u64,
    ) -> Result<Lease, InvokeError> {
        let lease = self.checkout_instance(deadline).await?;
        lease.store.data().set_invocation(invocation);
        Ok(lease)
    }

    async fn checkout_instance(&self, deadline: Instant) -> Result<Lease, InvokeError> {
        if let InstanceMode::Reuse(policy) = &self.mode {
            let candidate = {
                let mut warm = self.warm.lock().unwrap();
                // Most recently used first: its memory is the most likely to be cache-warm.
                let mut candidate = warm.pop();
                // Too old to reuse, unless it is part of the pre-warmed capacity.
                while candidate.as_ref().is_some_and(|l| {
                    l.idle_since.elapsed() >= policy.idle_timeout
                        && warm.len() >= policy.prewarm as usize
                }) {
                    candidate = warm.pop();
                }
                candidate
            };
            if let Some(mut lease) = candidate {
                lease.store.data_mut().deadline = deadline;
                lease.store.set_epoch_deadline(1);
                return Ok(lease);
            }
        }
        self.instantiate(deadline).await
    }

    async fn instantiate(&self, deadline: Instant) -> Result<Lease, InvokeError> {
        let started = Instant::now();
        let mut store = new_store(
            self.handler.engine(),
            &self.name,
            &self.limits,
            self.contexts.clone(),
            deadline,
        );
        let bindings = match &self.handler {
            Handler::Http(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Http),
            Handler::Queue(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Queue),
            Handler::Stream(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Stream),
            Handler::Schedule(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Bindings::Schedule),
            Handler::Task(pre) => pre.instantiate_async(&mut store).await.map(Bindings::Task),
            Handler::HttpP3(_) => unreachable!("0.3 http functions instantiate in their pool"),
        };
        match bindings {
            Ok(bindings) => Ok(Lease {
                store,
                bindings,
                uses: 0,
                idle_since: Instant::now(),
                instantiated_in: Some(started.elapsed()),
                _slot: PoolSlot::new(),
            }),
            Err(e) => Err(self.classify(&store, e)),
        }
    }

    /// Return an instance after an invocation: kept warm if reuse is on, the invocation
    /// succeeded and the instance has uses left; otherwise dropped (freeing its pool slot).
    pub(crate) fn checkin(&self, mut lease: Lease, succeeded: bool) {
        let InstanceMode::Reuse(policy) = &self.mode else {
            return;
        };
        lease.uses += 1;
        if !succeeded || lease.uses >= policy.max_uses {
            return;
        }
        lease.idle_since = Instant::now();
        lease.instantiated_in = None;
        self.warm.lock().unwrap().push(lease);
    }

    /// Turn a wasmtime error from instantiating or calling the guest into an [`InvokeError`].
    pub(crate) fn classify(
        &self,
        store: &Store<InstanceState>,
        error: wasmtime::Error,
    ) -> InvokeError {
        classify(&self.name, &self.limits, store, error)
    }

    /// Run `call` on an instance with the function's limits applied, then check the instance
    /// back in. `call` hands the lease back with its result so that it can be reused. Without
    /// an `admission` the invocation takes a concurrency slot or fails fast. Returns what the
    /// invocation used with its result (`bytes_in`: the size of the event given to it).
    pub(crate) async fn run<R, F, Fut>(
        &self,
        admission: Option<Admission>,
        invocation: u64,
        bytes_in: u64,
        call: F,
    ) -> (Result<R, InvokeError>, Usage)
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = (Lease, wasmtime::Result<R>)>,
    {
        let started = Instant::now();
        let mut usage = Usage {
            bytes_in,
            ..Usage::default()
        };
        let _permit = match admission {
            Some(held) => held.0,
            None => match self.admit() {
                Ok(permit) => permit,
                Err(e) => return (Err(e), usage),
            },
        };
        let _in_flight = InFlight::new(self);
        let deadline = started + self.limits.timeout;
        let checkout = OnThread::new(self.checkout(deadline, invocation), &mut usage.cpu).await;
        let lease = match checkout {
            Ok(lease) => lease,
            Err(e) => {
                usage.wall = started.elapsed();
                return (Err(e), usage);
            }
        };
        usage.instantiation = lease.instantiated_in;
        let ran =
            tokio::time::timeout_at(deadline.into(), OnThread::new(call(lease), &mut usage.cpu))
                .await;
        let result = match ran {
            Ok((lease, outcome)) => {
                usage.peak_memory = lease.store.data().limiter.total();
                match outcome {
                    Ok(value) => {
                        self.checkin(lease, true);
                        Ok(value)
                    }
                    Err(e) => Err(self.classify(&lease.store, e)),
                }
            }
            Err(_elapsed) => Err(self.timeout()),
        };
        usage.wall = started.elapsed();
        (result, usage)
    }

    /// Count an ended invocation in the function's metrics and totals.
    pub(crate) fn record<T, E>(
        &self,
        result: &Result<Result<T, E>, InvokeError>,
        usage: &Usage,
        ended: crate::recent::Ended,
    ) {
        let outcome = match result {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(_)) => Outcome::HandlerError,
            Err(e) => Outcome::of_error(e),
        };
        self.metrics.record(outcome, usage, ended);
    }

    /// The error for an invocation that ran out of time while awaiting I/O.
    pub(crate) fn timeout(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.name.to_string(),
            after: self.limits.timeout,
        }
    }
}

/// A store for one instance of function `name`: its state, the memory limiter, and the epoch
/// callback that yields every tick and interrupts the guest past `store.data().deadline`.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    name: &Arc<str>,
    limits: &Limits,
    contexts: Arc<Extensions>,
    deadline: Instant,
) -> Store<InstanceState> {
    let state = InstanceState::new(name.clone(), limits.memory_bytes, contexts, deadline);
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    // Each epoch tick, a running guest either yields to the executor (so one CPU-bound
    // guest cannot starve the others on its thread) or, past its deadline, is interrupted.
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Turn a wasmtime error from instantiating or calling an instance of function `name` into an
/// [`InvokeError`].
pub(crate) fn classify(
    name: &str,
    limits: &Limits,
    store: &Store<InstanceState>,
    error: wasmtime::Error,
) -> InvokeError {
    let function = name.to_string();
    // Every slot of the host's instance pool is taken (by all functions together): the
    // same condition for the caller as this function's own limit.
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return InvokeError::HostBusy { function };
    }
    if store.data().limiter.exceeded {
        return InvokeError::MemoryLimit {
            function,
            limit: limits.memory_bytes,
        };
    }
    if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return InvokeError::Timeout {
            function,
            after: limits.timeout,
        };
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        let backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|bt| bt.to_string());
        return InvokeError::Trap {
            function,
            message: trap.to_string(),
            backtrace,
        };
    }
    InvokeError::Instantiate {
        function,
        message: format!("{error:#}"),
    }
}

impl Handler {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            Handler::Http(pre) => pre.engine(),
            Handler::Queue(pre) => pre.engine(),
            Handler::Stream(pre) => pre.engine(),
            Handler::Schedule(pre) => pre.engine(),
            Handler::Task(pre) => pre.engine(),
            Handler::HttpP3(pool) => pool.engine(),
        }
    }
}
