//! [`Host`]: the engine, linker and compile cache shared by every function, and how functions
//! are loaded from a folder or a single file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use wasmtime::component::Linker;

use crate::app::App;
use crate::compile_cache::{CacheOutcome, CompileCache};
use crate::discovery::discover;
use crate::engine::{Allocator, EngineOptions, HostEngine};
use crate::error::LoadError;
use crate::function::{Function, FunctionSettings};
use crate::manifest::{Manifest, QueueBackendChoice};
use crate::queue::dispatcher::QueueService;
use crate::queue::SqliteQueues;
use crate::router::Route;
use crate::scheduler::Scheduler;
use crate::state::InstanceState;
use crate::stream_feed::StreamFeed;

/// The wasmfn host: create one per process and load functions with it. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    engine: HostEngine,
    linker: Arc<Linker<InstanceState>>,
    cache: CompileCache,
    state_dir: Option<PathBuf>,
    environment: Option<String>,
    config_env_prefix: Option<String>,
}

/// Builder for [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    engine: EngineOptions,
    cache: CompileCache,
    state_dir: Option<PathBuf>,
    environment: Option<String>,
    config_env_prefix: Option<String>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            engine: EngineOptions::default(),
            cache: CompileCache::new(CompileCache::default_dir()),
            state_dir: None,
            environment: None,
            config_env_prefix: None,
        }
    }
}

impl HostBuilder {
    /// Engine settings (allocator, pool size, memory recycling).
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.engine = options;
        self
    }

    /// Apply the manifest's `[env.NAME]` overlay when loading folders.
    pub fn environment(mut self, name: impl Into<String>) -> Self {
        self.environment = Some(name.into());
        self
    }

    /// Let environment variables `PREFIX_KEY` override (or add) config values of every loaded
    /// function (see [`crate::config_env`]); the Lambda adapter uses `WASMFN_CONFIG_`.
    pub fn config_from_env(mut self, prefix: impl Into<String>) -> Self {
        self.config_env_prefix = Some(prefix.into());
        self
    }

    /// Use the on-demand allocator instead of the pooling one.
    pub fn allocator(mut self, allocator: Allocator) -> Self {
        self.engine.allocator = allocator;
        self
    }

    /// Where precompiled components are cached.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = CompileCache::new(dir);
        self
    }

    /// Load only precompiled components from `dir`, never compiling (see
    /// [`CompileCache::read_only`]).
    pub fn read_only_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = CompileCache::read_only(dir);
        self
    }

    /// Compile every component in memory on every load (tests, read-only systems).
    pub fn disable_cache(mut self) -> Self {
        self.cache = CompileCache::disabled();
        self
    }

    /// Where durable state (queues) is kept [default: `.wasmfn/` inside the functions folder].
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Create the engine and linker.
    pub fn build(self) -> Result<Host> {
        let engine = HostEngine::new(&self.engine)?;
        let linker = crate::linker::build_linker(engine.engine())?;
        Ok(Host {
            engine,
            linker: Arc::new(linker),
            cache: self.cache,
            state_dir: self.state_dir,
            environment: self.environment,
            config_env_prefix: self.config_env_prefix,
        })
    }
}

impl Host {
    /// Start configuring a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The allocator in use (pooling unless it fell back to on-demand).
    pub fn allocator(&self) -> Allocator {
        self.engine.allocator()
    }

    /// The compile cache.
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        self.engine.engine()
    }

    /// Load one component file as function `name`.
    pub fn load_component(
        &self,
        name: &str,
        path: impl AsRef<Path>,
        settings: FunctionSettings,
    ) -> Result<Function, LoadError> {
        Function::load(
            name,
            path.as_ref(),
            settings,
            self.engine.engine(),
            &self.linker,
            &self.cache,
        )
    }

    /// Load function `name` of `app` again from its component file (after a rebuild), with
    /// the settings it was loaded with, and swap it in ([`App::replace`]): invocations in
    /// flight finish on the old build, new ones get the new one. On error the old one stays.
    pub fn reload(&self, app: &App, name: &str) -> Result<Function, LoadError> {
        let current = app.function(name).ok_or_else(|| LoadError {
            path: PathBuf::new(),
            function: name.to_string(),
            message: format!("no function `{name}` is loaded"),
        })?;
        let fresh = self.load_component(name, current.source(), current.settings().clone())?;
        app.replace(fresh.clone()).map_err(|message| LoadError {
            path: current.source().to_path_buf(),
            function: name.to_string(),
            message,
        })?;
        Ok(fresh)
    }

    fn overlay_config_env(&self, settings: &mut FunctionSettings) {
        if let Some(prefix) = &self.config_env_prefix {
            crate::config_env::overlay(&mut settings.config, prefix, std::env::vars());
        }
    }

    /// Compile a component into the cache without loading it (what `wasmfn compile` does).
    pub fn precompile(&self, path: impl AsRef<Path>) -> Result<CacheOutcome> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.cache.store(self.engine.engine(), path, &bytes)
    }

    /// Load every function in `dir` (see the folder conventions in the README), applying
    /// `dir/wasmfn.toml` if present.
    ///
    /// Fails only when the folder cannot be read or the manifest is invalid; a function that
    /// cannot load is recorded in [`App::load_errors`] and the others are served.
    pub fn load_dir(&self, dir: impl AsRef<Path>) -> Result<App> {
        let dir = dir.as_ref();
        let manifest = Manifest::load_from_dir_env(dir, self.environment.as_deref())?;
        // Without a manifest every function may use the embedded `default` store of each kind.
        let implicit_grants = match &manifest {
            None => crate::state::Grants {
                stores: crate::stores::StoreBindings::defaults(),
                ..Default::default()
            },
            Some(_) => crate::state::Grants::default(),
        };
        let manifest = manifest.unwrap_or_default();
        let candidates =
            discover(dir).with_context(|| format!("reading functions folder {}", dir.display()))?;
        let mut app = App::default();
        // Shared by every function of this app; the queues are plugged in once they exist.
        let platform = Arc::new(crate::state::Platform::default());
        // Manifest entries first (they may point anywhere), then discovered files by name.
        for (name, entry) in &manifest.functions {
            let discovered = candidates.iter().find(|c| &c.name == name);
            let path = match (&entry.component, discovered) {
                (Some(path), _) => path.clone(),
                (None, Some(c)) if c.problem.is_none() => c.path.clone(),
                (None, Some(c)) => {
                    app.record_error(LoadError {
                        path: c.path.clone(),
                        function: name.clone(),
                        message: c.problem.clone().unwrap_or_default(),
                    });
                    continue;
                }
                (None, None) => {
                    app.record_error(LoadError {
                        path: manifest.path.clone(),
                        function: name.clone(),
                        message: format!(
                            "no component found: expected {0}/{name}.wasm or {0}/{name}/{name}.wasm, \
                             or set `component` in [functions.{name}]",
                            dir.display()
                        ),
                    });
                    continue;
                }
            };
            let mut settings = FunctionSettings {
                platform: platform.clone(),
                ..entry.settings.clone()
            };
            self.overlay_config_env(&mut settings);
            for (key, source) in &entry.secrets {
                match source.resolve() {
                    Ok(value) => settings.secrets.push((key.clone(), value)),
                    Err(message) => {
                        app.record_error(LoadError {
                            path: manifest.path.clone(),
                            function: name.clone(),
                            message: format!("secret `{key}`: {message}"),
                        });
                    }
                }
            }
            if settings.secrets.len() != entry.secrets.len() {
                continue;
            }
            let loaded = self.load_component(name, &path, settings);
            app.add_loaded(loaded, entry.routes.clone());
        }
        // A component that manifest entries deploy under other names (one component, several
        // functions told apart by config) is not served under its own name as well.
        let claimed: Vec<PathBuf> = manifest
            .functions
            .values()
            .filter_map(|e| e.component.as_ref()?.canonicalize().ok())
            .collect();
        for c in candidates {
            if manifest.functions.contains_key(&c.name) {
                continue;
            }
            if c.path.canonicalize().is_ok_and(|p| claimed.contains(&p)) {
                continue;
            }
            if let Some(problem) = c.problem {
                app.record_error(LoadError {
                    path: c.path,
                    function: c.name,
                    message: problem,
                });
                continue;
            }
            let mut settings = FunctionSettings {
                platform: platform.clone(),
                grants: implicit_grants.clone(),
                ..FunctionSettings::default()
            };
            self.overlay_config_env(&mut settings);
            let loaded = self.load_component(&c.name, &c.path, settings);
            app.add_loaded(loaded, None);
        }
        let state = self
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.join(".wasmfn"));
        if !manifest.schedules.is_empty() {
            std::fs::create_dir_all(&state)
                .with_context(|| format!("creating {}", state.display()))?;
            let mut scheduler =
                Scheduler::new(manifest.schedules.clone(), state.join("schedules.json"));
            for problem in scheduler.validate(&app) {
                tracing::error!("{problem}");
                app.queue_errors.push(problem);
            }
            app.scheduler = Some(Arc::new(scheduler));
        }
        if !manifest.streams.is_empty() {
            std::fs::create_dir_all(&state)
                .with_context(|| format!("creating {}", state.display()))?;
            let mut feed =
                StreamFeed::open(&state.join("streams.sqlite"), manifest.streams.clone())?;
            for problem in feed.validate(&app) {
                tracing::error!("{problem}");
                app.queue_errors.push(problem);
            }
            app.streams = Some(Arc::new(feed));
        }
        let mut defaults_needed = crate::stores::StoreUse::default();
        for f in app.functions() {
            let (u, g) = (f.inner.uses, &f.inner.grants.stores);
            let has = |list: &Vec<String>| list.iter().any(|n| n == "default");
            defaults_needed.kv |= u.kv && has(&g.kv);
            defaults_needed.sql |= u.sql && has(&g.sql);
            defaults_needed.blob |= u.blob && has(&g.blob);
        }
        let (stores, store_errors) =
            crate::stores::open_all(&manifest, defaults_needed, &state, app.streams.as_ref());
        for problem in store_errors {
            tracing::error!("{problem}");
            app.queue_errors.push(problem);
        }
        let stores = Arc::new(stores);
        let _ = platform.stores.set(stores.clone());
        app.stores = Some(stores);
        if !manifest.queues.is_empty() {
            let backend: Arc<dyn crate::queue::QueueBackend> = match &manifest.queue_backend {
                QueueBackendChoice::Sqlite { fsync } => {
                    let db = state.join("queues.sqlite");
                    tracing::info!(database = %db.display(), "queues: embedded SQLite backend");
                    Arc::new(SqliteQueues::open(&db, *fsync)?)
                }
                QueueBackendChoice::Nats { url, stream } => {
                    let visibility: Vec<_> = manifest
                        .queues
                        .iter()
                        .flat_map(|q| {
                            [
                                (q.name.clone(), q.visibility_timeout),
                                (q.dead_letter_queue.clone(), q.visibility_timeout),
                            ]
                        })
                        .collect();
                    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                        anyhow::anyhow!("the NATS queue backend needs a tokio runtime")
                    })?;
                    // The client's tasks must live on the long-lived runtime, so connect on it.
                    let nats = tokio::task::block_in_place(|| {
                        handle.block_on(crate::queue::NatsQueues::connect(url, stream, &visibility))
                    })?;
                    tracing::info!(%url, %stream, "queues: NATS JetStream backend");
                    Arc::new(nats)
                }
            };
            let mut queues = QueueService::new(backend, manifest.queues.clone());
            for problem in queues.validate(&app) {
                tracing::error!("{problem}");
                app.queue_errors.push(problem);
            }
            tracing::info!(queues = manifest.queues.len(), "queues ready");
            let queues = Arc::new(queues);
            let _ = platform.queues.set(queues.clone());
            app.queues = Some(queues);
        }
        if !manifest.workflows.is_empty() {
            let store: Arc<dyn crate::workflow::ExecutionStore> = match &manifest.workflow_store {
                crate::manifest::WorkflowStoreChoice::Sqlite => {
                    let db = state.join("workflows.sqlite");
                    tracing::info!(database = %db.display(), "workflows: embedded SQLite store");
                    Arc::new(crate::workflow::SqliteExecutions::open(&db)?)
                }
                crate::manifest::WorkflowStoreChoice::Postgres { url, lease } => {
                    let url = url
                        .resolve()
                        .map_err(|e| anyhow::anyhow!("[workflow-store] url: {e}"))?;
                    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                        anyhow::anyhow!("the PostgreSQL workflow store needs a tokio runtime")
                    })?;
                    // The pool's connections must live on the long-lived runtime.
                    let pg = tokio::task::block_in_place(|| {
                        handle.block_on(crate::workflow::PostgresExecutions::connect(
                            url.expose(),
                            *lease,
                        ))
                    })
                    .context("[workflow-store]: connecting to PostgreSQL")?;
                    tracing::info!(
                        lease_ms = lease.as_millis() as u64,
                        "workflows: PostgreSQL store"
                    );
                    Arc::new(pg)
                }
            };
            let mut workflows = crate::workflow::Workflows::new(store, manifest.workflows.clone());
            for problem in workflows.validate(&app) {
                tracing::error!("{problem}");
                app.queue_errors.push(problem);
            }
            let workflows = Arc::new(workflows);
            let _ = platform.workflows.set(workflows.clone());
            app.workflows = Some(workflows);
        }
        if !manifest.rules.is_empty() || !manifest.topics.is_empty() {
            let bus = Arc::new(crate::eventbus::EventBus::new(
                manifest.rules.clone(),
                manifest.topics.clone(),
                app.queues.clone(),
                app.workflows.clone(),
            ));
            let _ = platform.events.set(bus.clone());
            app.events = Some(bus);
        }
        Ok(app)
    }
}

/// The default routes of an HTTP function: `/<name>` and everything below it.
pub(crate) fn default_routes(name: &str) -> Vec<Route> {
    vec![
        Route {
            pattern: format!("/{name}"),
            function: name.to_string(),
        },
        Route {
            pattern: format!("/{name}/*"),
            function: name.to_string(),
        },
    ]
}
