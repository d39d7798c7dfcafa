//! Loading a folder as an [`App`]: the manifest, every function (manifest entries first, then
//! the components found by name), the capabilities configured for the app, then the services
//! of its triggers and orchestration, each provided to the capabilities that reach it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use wasmfn_host_core::discovery::discover;
use wasmfn_host_core::{AppContext, Function, FunctionSettings, LoadError};

use crate::app::App;
use crate::manifest::Manifest;
use crate::router::Route;
use crate::Host;

impl Host {
    /// Load every function in `dir` (see the folder conventions in the README), applying
    /// `dir/wasmfn.toml` if present.
    ///
    /// Fails only when the folder cannot be read or the manifest is invalid; a function that
    /// cannot load is recorded in [`App::load_errors`] and the others are served.
    pub fn load_dir(&self, dir: impl AsRef<Path>) -> Result<App> {
        let dir = dir.as_ref();
        let manifest = Manifest::load_from_dir_env(dir, self.environment.as_deref())?;
        // Without a manifest every function gets what each section grants by default (the
        // embedded `default` store of each kind).
        let mut implicit = FunctionSettings::default();
        if manifest.is_none() {
            for section in crate::registry::sections().all() {
                section.without_manifest(&mut implicit.extensions);
            }
        }
        let manifest = manifest.unwrap_or_default();
        let candidates =
            discover(dir).with_context(|| format!("reading functions folder {}", dir.display()))?;
        let state = self
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.join(".wasmfn"));
        let mut app = App::default();
        app.state_dir = Some(state.clone());
        app.dev = self.dev;
        app.capabilities = self.configure_capabilities(&AppContext {
            sections: &manifest.sections,
            state_dir: &state,
            services: &app.services,
        })?;
        self.load_functions(&mut app, dir, &manifest, candidates, &implicit);
        for c in &app.capabilities {
            for problem in c.finish() {
                tracing::error!("{problem}");
                app.queue_errors.push(problem);
            }
        }
        crate::wiring::start_services(&mut app, &manifest, &state)?;
        Ok(app)
    }

    fn load_functions(
        &self,
        app: &mut App,
        dir: &Path,
        manifest: &Manifest,
        candidates: Vec<wasmfn_host_core::discovery::Candidate>,
        implicit: &FunctionSettings,
    ) {
        let load = |app: &App, name: &str, path: &Path, settings: FunctionSettings| {
            Function::load(name, path, settings, &self.loader(&app.capabilities))
        };
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
            let loaded = load(app, name, &path, entry.settings.clone());
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
            let loaded = load(app, &c.name, &c.path, implicit.clone());
            app.add_loaded(loaded, None);
        }
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
