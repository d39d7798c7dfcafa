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
        for f in functions_of(dir, manifest, candidates) {
            let path = match f.component {
                Ok(path) => path,
                Err(e) => {
                    app.record_error(e);
                    continue;
                }
            };
            let entry = manifest.functions.get(&f.name);
            let settings = entry.map_or_else(|| implicit.clone(), |e| e.settings.clone());
            let loaded = Function::load(&f.name, &path, settings, &self.loader(&app.capabilities));
            app.add_loaded(loaded, entry.and_then(|e| e.routes.clone()));
        }
    }
}

/// A function of an app folder, as [`Host::load_dir`] finds it.
pub struct AppFunction {
    /// Its name.
    pub name: String,
    /// Its component file, or why it has none.
    pub component: std::result::Result<PathBuf, LoadError>,
    /// Whether `[functions.NAME]` declares it.
    pub declared: bool,
}

/// The functions of folder `dir` under `manifest`, in loading order: the manifest's entries
/// first (their `component` may point anywhere), then the components found by name, except
/// those that entries deploy under other names (one component, several functions told apart
/// by config).
pub fn app_functions(dir: &Path, manifest: &Manifest) -> Result<Vec<AppFunction>> {
    let candidates =
        discover(dir).with_context(|| format!("reading functions folder {}", dir.display()))?;
    Ok(functions_of(dir, manifest, candidates))
}

fn functions_of(
    dir: &Path,
    manifest: &Manifest,
    candidates: Vec<wasmfn_host_core::discovery::Candidate>,
) -> Vec<AppFunction> {
    let mut out = Vec::new();
    for (name, entry) in &manifest.functions {
        let discovered = candidates.iter().find(|c| &c.name == name);
        let component = match (&entry.component, discovered) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(c)) => match &c.problem {
                None => Ok(c.path.clone()),
                Some(problem) => Err(LoadError {
                    path: c.path.clone(),
                    function: name.clone(),
                    message: problem.clone(),
                }),
            },
            (None, None) => Err(LoadError {
                path: manifest.path.clone(),
                function: name.clone(),
                message: format!(
                    "no component found: expected {0}/{name}.wasm or {0}/{name}/{name}.wasm, \
                     or set `component` in [functions.{name}]",
                    dir.display()
                ),
            }),
        };
        out.push(AppFunction {
            name: name.clone(),
            component,
            declared: true,
        });
    }
    let claimed: Vec<PathBuf> = manifest
        .functions
        .values()
        .filter_map(|e| e.component.as_ref()?.canonicalize().ok())
        .collect();
    for c in candidates {
        if manifest.functions.contains_key(&c.name)
            || c.path.canonicalize().is_ok_and(|p| claimed.contains(&p))
        {
            continue;
        }
        let component = match c.problem {
            None => Ok(c.path),
            Some(message) => Err(LoadError {
                path: c.path,
                function: c.name.clone(),
                message,
            }),
        };
        out.push(AppFunction {
            name: c.name,
            component,
            declared: false,
        });
    }
    out
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
