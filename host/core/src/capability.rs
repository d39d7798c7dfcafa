//! How platform capabilities plug into the host, the way Spin's factors do: a [`Capability`] is
//! registered once per host and links its imports; for each app it is configured into an
//! [`AppCapability`], which builds the context a function's imports read while it runs.
//!
//! The lifecycle, driven by the composition root (`wasmfn-host`):
//! 1. [`Capability::add_to_linker`] when the host is built: one linker for every app.
//! 2. Its [`ManifestSection`] parses its tables of `wasmfn.toml` and its keys in
//!    `[functions.NAME]` into typed values: app-wide ones in the manifest's
//!    [`Sections`], per-function ones in each function's
//!    [`FunctionSettings::extensions`](crate::FunctionSettings).
//! 3. [`Capability::configure_app`] for each loaded folder, before its functions load.
//! 4. [`AppCapability::prepare`] for each function as it loads: its context, or the reason it
//!    cannot load (it imports the capability but nothing is bound to it).
//! 5. [`AppCapability::finish`] once every function is loaded: open what they need.
//!
//! Host functions find their context with [`InstanceState::context`](crate::InstanceState).

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::Linker;

use crate::manifest::{ManifestSection, Sections};
use crate::services::Services;
use crate::state::InstanceState;
use crate::world::World;
use crate::FunctionSettings;

/// A platform service that guests reach through imports.
pub trait Capability: ManifestSection {
    /// A short name, for logs.
    fn name(&self) -> &'static str;

    /// Link the imports it implements. Imports no capability links are refused at load with
    /// their name, so a host built without a capability says so instead of failing later.
    fn add_to_linker(&self, linker: &mut Linker<InstanceState>) -> anyhow::Result<()>;

    /// Set it up for one app (a loaded folder), before the app's functions load. Capabilities
    /// whose imports need nothing per app or per function (logging) return `None`.
    fn configure_app(
        &self,
        app: &AppContext<'_>,
    ) -> anyhow::Result<Option<Box<dyn AppCapability>>> {
        let _ = app;
        Ok(None)
    }
}

/// What [`Capability::configure_app`] sees of the app being loaded.
pub struct AppContext<'a> {
    /// The manifest's parsed sections (empty without a manifest).
    pub sections: &'a Sections,
    /// Where the app keeps durable state (embedded stores, queues).
    pub state_dir: &'a Path,
    /// Late-bound services shared by the app's capabilities, triggers and orchestration.
    pub services: &'a Arc<Services>,
}

/// A capability configured for one app. Embedders reach the concrete type (a store
/// registry) by upcasting to `&dyn Any` and downcasting.
pub trait AppCapability: Any + Send + Sync {
    /// The context its imports read while `function` runs (`None`: it does not use this
    /// capability). An `Err` refuses the function with that message (what is wrong and the fix).
    fn prepare(&self, function: &FunctionInfo<'_>) -> Result<Option<Context>, String>;

    /// Called once every function of the app is loaded: open what they need (stores bound to
    /// them). Returned problems are reported at start-up; the app still serves.
    fn finish(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A function's context for one capability, kept for the function's lifetime.
pub type Context = Arc<dyn Any + Send + Sync>;

/// What a capability knows about a function while it loads.
pub struct FunctionInfo<'a> {
    /// The function's name.
    pub name: &'a str,
    /// The world it implements.
    pub world: World,
    /// Its component's import names (`wasi:keyvalue/store@0.2.0-draft`, ...).
    pub imports: &'a [String],
    /// Its settings, with the capabilities' values from the manifest in `extensions`.
    pub settings: &'a FunctionSettings,
}

impl FunctionInfo<'_> {
    /// Whether the component imports an interface of `package:name/interface` (any version)
    /// for which `matches` holds.
    pub fn imports_any(&self, matches: impl Fn(&str) -> bool) -> bool {
        self.imports
            .iter()
            .any(|i| matches(i.split('@').next().unwrap_or(i)))
    }
}
