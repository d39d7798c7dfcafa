//! [`Host`]: the engine, linker (every registered capability's imports) and compile cache
//! shared by every function, and loading a single component. Loading a folder as an app is in
//! [`crate::load`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use wasmfn_host_core::manifest::Sections;
use wasmfn_host_core::services::Services;
use wasmfn_host_core::{
    Allocator, AppCapability, AppContext, CacheOutcome, Capability, CompileCache, EngineOptions,
    Function, FunctionSettings, LoadError, Loader, Runtimes, Wasi,
};

use crate::app::App;

/// The wasmfn host: create one per process and load functions with it. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    /// The engines and linkers for WASI 0.2 and (on demand) 0.3 components.
    pub(crate) runtimes: Arc<Runtimes>,
    pub(crate) cache: CompileCache,
    pub(crate) capabilities: Arc<[Arc<dyn Capability>]>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) environment: Option<String>,
    pub(crate) dev: bool,
}

/// Builder for [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    engine: EngineOptions,
    cache: CompileCache,
    state_dir: Option<PathBuf>,
    environment: Option<String>,
    config_env_prefix: Option<String>,
    dev: bool,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            engine: EngineOptions::default(),
            cache: CompileCache::at_default_dir(),
            state_dir: None,
            environment: None,
            config_env_prefix: None,
            dev: false,
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

    /// Load apps in development mode (see [`App::set_dev`]): clients see errors' text.
    pub fn dev(mut self, dev: bool) -> Self {
        self.dev = dev;
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

    /// Create the engine, and the linker with every capability of this build.
    pub fn build(self) -> Result<Host> {
        let capabilities: Arc<[Arc<dyn Capability>]> =
            crate::registry::capabilities(&crate::registry::Options {
                config_env_prefix: self.config_env_prefix,
            })
            .into();
        let runtimes = Runtimes::new(self.engine, capabilities.clone())?;
        Ok(Host {
            runtimes: Arc::new(runtimes),
            cache: self.cache,
            capabilities,
            state_dir: self.state_dir,
            environment: self.environment,
            dev: self.dev,
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
        self.runtimes.p2().engine.allocator()
    }

    /// The compile cache.
    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// The wasmtime engine of WASI 0.2 components (0.3 ones run on a second engine).
    pub fn engine(&self) -> &wasmtime::Engine {
        self.runtimes.p2().engine.engine()
    }

    /// Load one component file as function `name`, outside any app: its capabilities see no
    /// manifest and no stores are opened for it.
    pub fn load_component(
        &self,
        name: &str,
        path: impl AsRef<Path>,
        settings: FunctionSettings,
    ) -> Result<Function, LoadError> {
        let fail = |e: anyhow::Error| LoadError {
            path: path.as_ref().to_path_buf(),
            function: name.to_string(),
            message: format!("{e:#}"),
        };
        let sections = Sections::new();
        let state_dir = std::env::temp_dir();
        let capabilities = self
            .configure_capabilities(&AppContext {
                sections: &sections,
                state_dir: &state_dir,
                services: &Arc::new(Services::default()),
            })
            .map_err(fail)?;
        Function::load(name, path.as_ref(), settings, &self.loader(&capabilities))
    }

    /// The capabilities configured for one app.
    pub(crate) fn configure_capabilities(
        &self,
        app: &AppContext<'_>,
    ) -> Result<Vec<Box<dyn AppCapability>>> {
        let mut out = Vec::new();
        for c in self.capabilities.iter() {
            if let Some(configured) = c
                .configure_app(app)
                .with_context(|| format!("setting up the `{}` capability", c.name()))?
            {
                out.push(configured);
            }
        }
        Ok(out)
    }

    /// What loading a function of an app with `capabilities` needs.
    pub(crate) fn loader<'a>(&'a self, capabilities: &'a [Box<dyn AppCapability>]) -> Loader<'a> {
        Loader {
            runtimes: &self.runtimes,
            cache: &self.cache,
            capabilities,
        }
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
        let fresh = Function::load(
            name,
            current.source(),
            current.settings().clone(),
            &self.loader(&app.capabilities),
        )?;
        app.replace(fresh.clone()).map_err(|message| LoadError {
            path: current.source().to_path_buf(),
            function: name.to_string(),
            message,
        })?;
        Ok(fresh)
    }

    /// Compile a component into the cache without loading it (what `wasmfn compile` does).
    pub fn precompile(&self, path: impl AsRef<Path>) -> Result<CacheOutcome> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let runtime = self
            .runtimes
            .get(Wasi::of_component(&bytes))
            .map_err(anyhow::Error::msg)?;
        self.cache.store(runtime.engine.engine(), path, &bytes)
    }
}
