//! A loaded function: its pre-instantiated component, limits and instance lifecycle.
//!
//! Loading does all the expensive work once (read, compile or deserialize, type-check imports
//! against the linker into an `InstancePre`). An invocation then only allocates a pool slot and
//! runs the guest: no compilation, no file I/O.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use crate::bindings::{queue, schedule, stream, task};
use crate::compile_cache::{CacheOutcome, CompileCache};
use crate::error::{InvokeError, LoadError};
use crate::limits::{InstanceMode, Limits};
use crate::state::InstanceState;
use crate::world::World;

/// Everything configurable about one function besides its component.
#[derive(Clone, Debug, Default)]
pub struct FunctionSettings {
    /// The world the component must implement; `None` accepts any of the four.
    pub expected_world: Option<World>,
    /// Resource limits.
    pub limits: Limits,
    /// Fresh instance per invocation, or warm reuse.
    pub mode: InstanceMode,
    /// Values the guest reads through `wasi:config/store`.
    pub config: Vec<(String, String)>,
    /// The app services reachable from the guest (queues to publish to).
    pub platform: Arc<crate::state::Platform>,
    /// Store bindings and outbound hosts granted to this function.
    pub grants: crate::state::Grants,
    /// Secrets the guest reads through `wasi:config` beside `config` (never logged).
    pub secrets: Vec<(String, crate::secrets::SecretString)>,
}

/// A function ready to be invoked. Cheap to clone.
#[derive(Clone)]
pub struct Function {
    pub(crate) inner: Arc<FunctionInner>,
}

pub(crate) struct FunctionInner {
    pub(crate) name: Arc<str>,
    pub(crate) world: World,
    pub(crate) source: PathBuf,
    pub(crate) handler: Handler,
    pub(crate) limits: Limits,
    pub(crate) mode: InstanceMode,
    config: Arc<WasiConfigVariables>,
    platform: Arc<crate::state::Platform>,
    pub(crate) grants: Arc<crate::state::Grants>,
    permits: Arc<Semaphore>,
    warm: Mutex<Vec<Lease>>,
    pub(crate) cache_outcome: CacheOutcome,
    /// The store kinds its component imports.
    pub(crate) uses: crate::stores::StoreUse,
    config_names: Vec<String>,
    secret_names: Vec<String>,
    /// What it was loaded with (to load a rebuilt component the same way).
    settings: FunctionSettings,
}

/// The pre-instantiated component, typed by world.
pub(crate) enum Handler {
    Http(ProxyPre<InstanceState>),
    Queue(queue::QueueExportsPre<InstanceState>),
    Stream(stream::StreamExportsPre<InstanceState>),
    Schedule(schedule::ScheduleExportsPre<InstanceState>),
    Task(task::TaskExportsPre<InstanceState>),
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
    uses: u32,
    idle_since: Instant,
}

/// Counter behind invocation ids (unique per process, short enough to read in logs).
static INVOCATIONS: AtomicU64 = AtomicU64::new(1);

/// A fresh invocation id.
pub(crate) fn next_invocation_id() -> u64 {
    INVOCATIONS.fetch_add(1, Ordering::Relaxed)
}

impl Function {
    /// Load `path` as function `name`: read, compile through `cache`, check its world and its
    /// imports against `linker`.
    pub(crate) fn load(
        name: &str,
        path: &Path,
        settings: FunctionSettings,
        engine: &wasmtime::Engine,
        linker: &Linker<InstanceState>,
        cache: &CompileCache,
    ) -> Result<Function, LoadError> {
        let fail = |message: String| LoadError {
            path: path.to_path_buf(),
            function: name.to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        check_binary_kind(&bytes).map_err(fail)?;
        let (component, cache_outcome) = cache.load(engine, path, &bytes).map_err(|e| {
            fail(format!(
                "not a valid component (truncated or corrupt?): {}",
                root_cause(&e)
            ))
        })?;
        let world = World::detect(engine, &component).map_err(|e| fail(e.to_string()))?;
        if let Some(expected) = settings.expected_world {
            if expected != world {
                return Err(fail(format!(
                    "expected a component of world `{expected}` (exporting {}), but it implements \
                     world `{world}`; fix `world` in wasmfn.toml or build it against the `{expected}` world",
                    expected.export()
                )));
            }
        }
        let uses = crate::stores::StoreUse::from_imports(
            component
                .component_type()
                .imports(engine)
                .map(|(name, _)| name),
        );
        uses.check(name, &settings.grants.stores).map_err(fail)?;
        let handler = pre_instantiate(world, &component, linker).map_err(fail)?;
        let mut config = WasiConfigVariables::new();
        for (k, v) in &settings.config {
            config.insert(k, v);
        }
        for (k, v) in &settings.secrets {
            config.insert(k, v.expose());
        }
        Ok(Function {
            inner: Arc::new(FunctionInner {
                name: name.into(),
                world,
                source: path.to_path_buf(),
                handler,
                permits: Arc::new(Semaphore::new(settings.limits.max_concurrency as usize)),
                limits: settings.limits.clone(),
                mode: settings.mode.clone(),
                config: Arc::new(config),
                platform: settings.platform.clone(),
                grants: Arc::new(settings.grants.clone()),
                warm: Mutex::new(Vec::new()),
                cache_outcome,
                uses,
                config_names: settings.config.iter().map(|(k, _)| k.clone()).collect(),
                secret_names: settings.secrets.iter().map(|(k, _)| k.clone()).collect(),
                settings,
            }),
        })
    }

    /// The settings it was loaded with.
    pub fn settings(&self) -> &FunctionSettings {
        &self.inner.settings
    }

    /// Store bindings and outbound hosts granted to it.
    pub fn grants(&self) -> &crate::state::Grants {
        &self.inner.grants
    }

    /// The names (never the values) of its config values and of its secrets.
    pub fn config_names(&self) -> (&[String], &[String]) {
        (&self.inner.config_names, &self.inner.secret_names)
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.inner.world
    }

    /// The component file it was loaded from.
    pub fn source(&self) -> &Path {
        &self.inner.source
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Its instance mode.
    pub fn mode(&self) -> &InstanceMode {
        &self.inner.mode
    }

    /// Whether loading compiled the component or found it in the compile cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache_outcome
    }

    /// Number of warm instances currently idle (always 0 in fresh mode).
    pub fn idle_instances(&self) -> usize {
        self.inner.warm.lock().unwrap().len()
    }

    /// Discard warm instances idle past their idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        self.inner.evict_idle()
    }

    /// Fill the warm pool up to the function's `prewarm` count (reuse mode); returns how many
    /// instances were created.
    pub async fn prewarm(&self) -> Result<usize, InvokeError> {
        self.inner.prewarm().await
    }
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
            let lease = self
                .instantiate(Instant::now() + self.limits.timeout)
                .await?;
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
        lease
            .store
            .data()
            .invocation
            .store(invocation, std::sync::atomic::Ordering::Relaxed);
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
        let engine = self.handler.engine();
        let state = InstanceState::new(
            self.name.clone(),
            self.limits.memory_bytes,
            self.config.clone(),
            deadline,
            self.platform.clone(),
            self.grants.clone(),
        );
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
        };
        match bindings {
            Ok(bindings) => Ok(Lease {
                store,
                bindings,
                uses: 0,
                idle_since: Instant::now(),
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
        self.warm.lock().unwrap().push(lease);
    }

    /// Turn a wasmtime error from instantiating or calling the guest into an [`InvokeError`].
    pub(crate) fn classify(
        &self,
        store: &Store<InstanceState>,
        error: wasmtime::Error,
    ) -> InvokeError {
        let function = self.name.to_string();
        if store.data().limiter.exceeded {
            return InvokeError::MemoryLimit {
                function,
                limit: self.limits.memory_bytes,
            };
        }
        if matches!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            return InvokeError::Timeout {
                function,
                after: self.limits.timeout,
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

    /// Run `call` on an instance with the function's limits applied, then check the instance
    /// back in. `call` hands the lease back with its result so that it can be reused.
    pub(crate) async fn run<R, F, Fut>(&self, invocation: u64, call: F) -> Result<R, InvokeError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = (Lease, wasmtime::Result<R>)>,
    {
        let _permit = self.admit()?;
        let deadline = Instant::now() + self.limits.timeout;
        let lease = self.checkout(deadline, invocation).await?;
        match tokio::time::timeout_at(deadline.into(), call(lease)).await {
            Ok((lease, Ok(value))) => {
                self.checkin(lease, true);
                Ok(value)
            }
            Ok((lease, Err(e))) => Err(self.classify(&lease.store, e)),
            Err(_elapsed) => Err(self.timeout()),
        }
    }

    /// The error for an invocation that ran out of time while awaiting I/O.
    pub(crate) fn timeout(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.name.to_string(),
            after: self.limits.timeout,
        }
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
        }
    }
}

fn pre_instantiate(
    world: World,
    component: &Component,
    linker: &Linker<InstanceState>,
) -> Result<Handler, String> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        let text = format!("{e:#}");
        match text.split('`').nth(1) {
            Some(import) if text.contains("matching implementation was not found") => format!(
                "it imports `{import}`, which this host does not provide; remove the import or \
                 bind the capability in wasmfn.toml"
            ),
            _ => format!("cannot link its imports: {text}"),
        }
    })?;
    let typed = match world {
        World::Http => ProxyPre::new(pre).map(Handler::Http),
        World::Queue => queue::QueueExportsPre::new(pre).map(Handler::Queue),
        World::Stream => stream::StreamExportsPre::new(pre).map(Handler::Stream),
        World::Schedule => schedule::ScheduleExportsPre::new(pre).map(Handler::Schedule),
        World::Task => task::TaskExportsPre::new(pre).map(Handler::Task),
    };
    typed.map_err(|e| format!("its `{world}` export has the wrong type: {e:#}"))
}

/// Recognise files that are not components before handing them to the compiler, for clearer
/// messages than a parse error.
fn check_binary_kind(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(
            "not a WebAssembly file (no `\\0asm` header); expected a component built for \
             wasm32-wasip2"
                .into(),
        );
    }
    // Layer 0 with version 1 is a core module; components are layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(
            "is a core WebAssembly module, not a component; build for `wasm32-wasip2` or wrap it \
             with `wasm-tools component new`"
                .into(),
        );
    }
    Ok(())
}

/// The innermost cause of an error chain, which is what names the actual problem.
fn root_cause(e: &anyhow::Error) -> String {
    let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    causes.join(": ")
}
