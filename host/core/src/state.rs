//! What one instance's [`wasmtime::Store`] carries: WASI contexts, the resource table, the
//! memory limiter, the invocation deadline, and the contexts of the capabilities its function
//! uses.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::extensions::Extensions;
use crate::guest_output::GuestOutput;
use crate::outbound::{OutboundGate, OutboundHooks};

/// Store data for one instance of a function.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundHooks,
    /// The contexts of the capabilities the function uses, by type.
    contexts: Arc<Extensions>,
    pub(crate) limiter: MemoryLimiter,
    /// When the current invocation must end.
    pub(crate) deadline: Instant,
    /// Name of the function, for log lines the guest emits.
    function: Arc<str>,
    /// The invocation in progress, for log lines the guest emits (shared with its stdout and
    /// stderr writers, which outlive one invocation when the instance is reused).
    invocation: Arc<AtomicU64>,
}

impl InstanceState {
    pub(crate) fn new(
        function: Arc<str>,
        memory_limit: u64,
        contexts: Arc<Extensions>,
        deadline: Instant,
    ) -> Self {
        let invocation = Arc::new(AtomicU64::new(0));
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::stdout(function.clone(), invocation.clone()))
            .stderr(GuestOutput::stderr(function.clone(), invocation.clone()));
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundHooks {
                function: function.clone(),
                gate: contexts.get::<Arc<dyn OutboundGate>>().cloned(),
            },
            contexts,
            limiter: MemoryLimiter::new(memory_limit),
            deadline,
            function,
            invocation,
        }
    }

    /// The resource table (handles the guest holds: buckets, connections, streams).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The context capability `T` built for this function, if it uses that capability.
    pub fn context<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.contexts.get::<T>()
    }

    /// [`InstanceState::context`] and the resource table at once.
    pub fn context_and_table<T: Any + Send + Sync>(&mut self) -> (Option<&T>, &mut ResourceTable) {
        (self.contexts.get::<T>(), &mut self.table)
    }

    /// When the current invocation must end: host calls that wait or work on its behalf
    /// stop by then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The function's memory limit in bytes (all its instance's memories together).
    pub fn memory_limit(&self) -> u64 {
        self.limiter.limit
    }

    /// The function's name.
    pub fn function_name(&self) -> &str {
        &self.function
    }

    /// The id of the invocation in progress (as in the host's log lines).
    pub fn invocation(&self) -> u64 {
        self.invocation.load(Ordering::Relaxed)
    }

    pub(crate) fn set_invocation(&self, id: u64) {
        self.invocation.store(id, Ordering::Relaxed);
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Enforces a function's memory limit over all the linear memories of its instance together
/// (a component holds one per core module, so a per-memory cap would multiply the limit), and
/// remembers whether it was hit, so that the trap a guest raises after a refused
/// `memory.grow` is reported as "memory limit exceeded".
pub(crate) struct MemoryLimiter {
    limit: u64,
    /// Bytes of every memory of the instance, as approved so far.
    total: u64,
    /// The growth approved last, taken back if wasmtime then fails to grow.
    pending: u64,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    /// Bytes of every memory of the instance now (its peak: wasm memories never shrink).
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn new(limit: u64) -> Self {
        Self {
            limit,
            total: 0,
            pending: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Instantiation reports each memory's initial size as growth from 0 too.
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.total.saturating_add(growth);
        if total > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.total = total;
        self.pending = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.total -= std::mem::take(&mut self.pending);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any real guest.
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryLimiter;
    use wasmtime::ResourceLimiter as _;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_limit_covers_every_memory_of_the_instance() {
        let mut limiter = MemoryLimiter::new(64 * MIB as u64);
        // Two core modules' memories, instantiated at 16 MiB each: 32 MiB in all.
        assert!(limiter.memory_growing(0, 16 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, 16 * MIB, None).unwrap());
        // Each alone would stay under 64 MiB; together they may not pass it.
        assert!(limiter.memory_growing(16 * MIB, 40 * MIB, None).unwrap());
        assert!(!limiter.memory_growing(16 * MIB, 40 * MIB, None).unwrap());
        assert!(limiter.exceeded);
        // A growth wasmtime could not carry out is given back.
        assert!(limiter.memory_growing(16 * MIB, 24 * MIB, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::Error::msg("no room"))
            .unwrap();
        assert!(limiter.memory_growing(16 * MIB, 24 * MIB, None).unwrap());
    }
}
