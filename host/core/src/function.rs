//! A loaded function: its pre-instantiated component, settings and capability contexts (the
//! instance lifecycle is in `instances.rs`, invoking in [`crate::invoke`]).
//!
//! Loading does all the expensive work once (read, compile or deserialize, let each capability
//! build its context, type-check imports against the linker into an `InstancePre`). An
//! invocation then only allocates a pool slot and runs the guest: no compilation, no file I/O.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::bindings::{queue, schedule, stream, task};
use crate::capability::{AppCapability, FunctionInfo};
use crate::compile_cache::{CacheOutcome, CompileCache};
use crate::error::{InvokeError, LoadError};
use crate::extensions::Extensions;
use crate::instances::{Handler, Lease};
use crate::invoke::http_p3::P3Pool;
use crate::limits::{InstanceMode, Limits};
use crate::state::InstanceState;
use crate::usage::{names, FunctionMetrics, UsageTotals};
use crate::world::World;

/// Everything configurable about one function besides its component.
#[derive(Clone, Debug, Default)]
pub struct FunctionSettings {
    /// The world the component must implement; `None` accepts any of them.
    pub expected_world: Option<World>,
    /// Resource limits.
    pub limits: Limits,
    /// Fresh instance per invocation, warm reuse, or (WASI 0.3 http) concurrent requests per
    /// instance.
    pub mode: InstanceMode,
    /// The capabilities' settings for it, by type: store bindings, config values and secrets,
    /// outbound hosts (each capability documents its types).
    pub extensions: Extensions,
}

impl FunctionSettings {
    /// The capability setting of type `T`, if set.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.extensions.get()
    }

    /// Set a capability setting (builder style), e.g. the key-value stores it may open.
    pub fn with<T: std::any::Any + Send + Sync>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }
}

/// What loading a function needs from its host and app.
pub struct Loader<'a> {
    /// The host's engines and linkers (every capability's imports), by WASI generation.
    pub runtimes: &'a crate::Runtimes,
    /// Where compiled components are cached.
    pub cache: &'a CompileCache,
    /// The app's configured capabilities, which build the function's contexts.
    pub capabilities: &'a [Box<dyn AppCapability>],
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
    /// What its capabilities' imports read, by type; shared by all its instances.
    pub(crate) contexts: Arc<Extensions>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) warm: Mutex<Vec<Lease>>,
    pub(crate) cache_outcome: CacheOutcome,
    /// Its metric handles and running totals.
    pub(crate) metrics: FunctionMetrics,
    /// What it was loaded with (to load a rebuilt component the same way).
    settings: FunctionSettings,
}

impl Function {
    /// Load `path` as function `name`: read, compile through the cache, check its world, let
    /// each capability prepare its context, and check its imports against the linker.
    pub fn load(
        name: &str,
        path: &Path,
        settings: FunctionSettings,
        loader: &Loader<'_>,
    ) -> Result<Function, LoadError> {
        let fail = |message: String| LoadError {
            path: path.to_path_buf(),
            function: name.to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        check_binary_kind(&bytes).map_err(fail)?;
        let runtime = loader
            .runtimes
            .get(crate::Wasi::of_component(&bytes))
            .map_err(fail)?;
        let engine = runtime.engine.engine();
        let (component, cache_outcome) = loader.cache.load(engine, path, &bytes).map_err(|e| {
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
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let info = FunctionInfo {
            name,
            world,
            imports: &imports,
            settings: &settings,
        };
        let mut contexts = Extensions::new();
        for capability in loader.capabilities {
            if let Some(context) = capability.prepare(&info).map_err(fail)? {
                contexts.insert_arc(context, "capability context");
            }
        }
        let contexts = Arc::new(contexts);
        let handler = if world == World::Http && crate::world::exports_http_p3(engine, &component) {
            pre_instantiate_p3(
                name,
                &component,
                &settings,
                contexts.clone(),
                &runtime.linker,
            )
            .map_err(fail)?
        } else {
            if matches!(settings.mode, InstanceMode::Concurrent(_)) {
                return Err(fail(format!(
                    "`instances = \"concurrent\"` needs a WASI 0.3 http component (exporting \
                     wasi:http/handler@0.3.x), and this one is a WASI 0.2 `{world}` component; \
                     use `fresh` or `reuse`, or rebuild it against wasi:http 0.3 \
                     (`wasmfn new rust-http-p3`)"
                )));
            }
            pre_instantiate(world, &component, &runtime.linker).map_err(fail)?
        };
        let cache_result = if cache_outcome == CacheOutcome::Hit {
            "hit"
        } else {
            "miss"
        };
        metrics::counter!(names::COMPILE_CACHE, "result" => cache_result).increment(1);
        Ok(Function {
            inner: Arc::new(FunctionInner {
                name: name.into(),
                world,
                source: path.to_path_buf(),
                handler,
                permits: Arc::new(Semaphore::new(settings.limits.max_concurrency as usize)),
                limits: settings.limits.clone(),
                mode: settings.mode.clone(),
                contexts,
                warm: Mutex::new(Vec::new()),
                cache_outcome,
                metrics: FunctionMetrics::register(name, world, settings.limits.memory_bytes),
                settings,
            }),
        })
    }

    /// The settings it was loaded with.
    pub fn settings(&self) -> &FunctionSettings {
        &self.inner.settings
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.inner.world
    }

    /// For an `http` function, the `wasi:http` version its component exports: `"0.2"`
    /// (`incoming-handler`) or `"0.3"` (`handler`); `None` for the other worlds.
    pub fn wasi_http_version(&self) -> Option<&'static str> {
        match &self.inner.handler {
            Handler::Http(_) => Some("0.2"),
            Handler::HttpP3(_) => Some("0.3"),
            _ => None,
        }
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

    /// What its invocations have used since it was loaded, in total.
    pub fn usage_totals(&self) -> UsageTotals {
        self.inner.metrics.totals.snapshot()
    }

    /// Its last invocations (at most [`crate::recent::KEEP`]), newest first.
    pub fn recent_invocations(&self) -> Vec<crate::recent::RecentInvocation> {
        self.inner.metrics.recent.list()
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

/// Check a component's imports against the linker.
fn link(
    component: &Component,
    linker: &Linker<InstanceState>,
) -> Result<wasmtime::component::InstancePre<InstanceState>, String> {
    linker.instantiate_pre(component).map_err(|e| {
        let text = format!("{e:#}");
        match text.split('`').nth(1) {
            Some(import) if text.contains("matching implementation was not found") => format!(
                "it imports `{import}`, which this host does not provide; remove the import or \
                 bind the capability in wasmfn.toml"
            ),
            _ => format!("cannot link its imports: {text}"),
        }
    })
}

fn pre_instantiate(
    world: World,
    component: &Component,
    linker: &Linker<InstanceState>,
) -> Result<Handler, String> {
    let pre = link(component, linker)?;
    let typed = match world {
        World::Http => ProxyPre::new(pre).map(Handler::Http),
        World::Queue => queue::QueueExportsPre::new(pre).map(Handler::Queue),
        World::Stream => stream::StreamExportsPre::new(pre).map(Handler::Stream),
        World::Schedule => schedule::ScheduleExportsPre::new(pre).map(Handler::Schedule),
        World::Task => task::TaskExportsPre::new(pre).map(Handler::Task),
    };
    typed.map_err(|e| format!("its `{world}` export has the wrong type: {e:#}"))
}

/// A WASI 0.3 http component, served by a worker pool sized by its instance mode.
fn pre_instantiate_p3(
    name: &str,
    component: &Component,
    settings: &FunctionSettings,
    contexts: Arc<Extensions>,
    linker: &Linker<InstanceState>,
) -> Result<Handler, String> {
    if let InstanceMode::Reuse(policy) = &settings.mode {
        if policy.prewarm > 0 {
            return Err(
                "`prewarm` is not supported for WASI 0.3 components yet (their instances live \
                 in a worker pool that starts them on demand); remove `prewarm`"
                    .into(),
            );
        }
    }
    let pre = link(component, linker)?;
    let pre = ServicePre::new(pre)
        .map_err(|e| format!("its wasi:http/handler@0.3 export has the wrong type: {e:#}"))?;
    Ok(Handler::HttpP3(P3Pool::new(
        pre,
        name.into(),
        &settings.limits,
        &settings.mode,
        contexts,
    )))
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
