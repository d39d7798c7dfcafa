//! What one instance's [`wasmtime::Store`] carries: WASI contexts, the resource table, the
//! memory limiter and the invocation deadline.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest_output::GuestOutput;
use crate::stores::{StoreBindings, StoreRegistry};

/// Store data for one instance of a function.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    outbound: crate::outbound::OutboundHooks,
    /// The stores this function may open.
    pub(crate) grants: Arc<Grants>,
    pub(crate) config: Arc<WasiConfigVariables>,
    pub(crate) limiter: MemoryLimiter,
    /// When the current invocation must end.
    pub(crate) deadline: Instant,
    /// Name of the function, for log lines the guest emits.
    pub(crate) function: Arc<str>,
    /// The invocation in progress, for log lines the guest emits (shared with its stdout and
    /// stderr writers, which outlive one invocation when the instance is reused).
    pub(crate) invocation: Arc<std::sync::atomic::AtomicU64>,
    /// The app's services the guest may reach through imports.
    pub(crate) platform: Arc<Platform>,
}

/// Services of the app a function belongs to, filled in once the app is assembled (functions
/// load before the queues that may name them).
#[derive(Default)]
pub struct Platform {
    pub(crate) queues: std::sync::OnceLock<Arc<crate::queue::dispatcher::QueueService>>,
    pub(crate) stores: std::sync::OnceLock<Arc<StoreRegistry>>,
    pub(crate) workflows: std::sync::OnceLock<Arc<crate::workflow::Workflows>>,
    pub(crate) events: std::sync::OnceLock<Arc<crate::eventbus::EventBus>>,
}

/// What one function was granted in the manifest: store bindings and outbound hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Stores it may open, by kind and binding name.
    pub stores: StoreBindings,
    /// Hosts it may call.
    pub outbound: Arc<crate::outbound::OutboundPolicy>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("queues", &self.queues.get().map(|q| q.configs().count()))
            .field("stores", &self.stores.get())
            .finish()
    }
}

impl InstanceState {
    pub(crate) fn new(
        function: Arc<str>,
        memory_limit: u64,
        config: Arc<WasiConfigVariables>,
        deadline: Instant,
        platform: Arc<Platform>,
        grants: Arc<Grants>,
    ) -> Self {
        let invocation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput::stdout(function.clone(), invocation.clone()))
            .stderr(GuestOutput::stderr(function.clone(), invocation.clone()));
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: crate::outbound::OutboundHooks {
                function: function.clone(),
                policy: grants.outbound.clone(),
            },
            grants,
            config,
            limiter: MemoryLimiter::new(memory_limit),
            deadline,
            function,
            invocation,
            platform,
        }
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

impl InstanceState {
    /// The store `name` of one kind, if this function was granted it and it is open. A refusal
    /// is logged with the fix (the interfaces' own errors carry at most the name).
    pub(crate) fn granted_store<T>(
        &self,
        kind: &str,
        name: &str,
        granted: impl Fn(&StoreBindings) -> &Vec<String>,
        find: impl Fn(&StoreRegistry) -> Option<Arc<T>>,
    ) -> Result<Arc<T>, ()> {
        let function = &*self.function;
        if !granted(&self.grants.stores).iter().any(|g| g == name) {
            tracing::warn!(
                target: "guest",
                function,
                "{kind} store `{name}` is not bound to this function; add \"{name}\" to `{kind}` in [functions.{function}] of wasmfn.toml"
            );
            return Err(());
        }
        let found = self.platform.stores.get().and_then(|r| find(r));
        if found.is_none() {
            tracing::warn!(target: "guest", function, "{kind} store `{name}` is bound but not open (see the errors at start-up)");
        }
        found.ok_or(())
    }
}

/// Enforces a function's memory limit and remembers whether it was hit, so that the trap a
/// guest raises after a refused `memory.grow` is reported as "memory limit exceeded".
pub(crate) struct MemoryLimiter {
    limit: u64,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
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
