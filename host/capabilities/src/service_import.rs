//! The shape shared by the imports that reach one of the app's own services (queue publishing,
//! the event bus, workflow starts): the capability defines a trait, a higher layer implements
//! it and provides it in the app's [`Services`](wasmfn_host_core::services::Services), and each
//! function importing the interface gets the slot as its context.
//!
//! What a function may reach through them is granted per function in the manifest, denied by
//! default like stores: `queues = ["jobs"]`, `event-sources = ["shop.orders"]`,
//! `topics = ["order-events"]`, `workflows = ["order-saga"]` (`"*"` for every name,
//! `"prefix.*"` for names under a prefix). A function that imports one of these interfaces with
//! no grant for it is not loaded, and the error names the line to add. An app without a
//! manifest grants everything (one developer's folder).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use toml::Spanned;
use wasmfn_host_core::manifest::{KeySpec, ManifestError, ManifestSection, Merge, ParseContext};
use wasmfn_host_core::services::Slot;
use wasmfn_host_core::{
    AppCapability, AppContext, Capability, Context, Extensions, FunctionInfo, InstanceState,
};
use wasmtime::component::Linker;

/// A key of `[functions.NAME]` granting names reachable through a service import.
pub struct GrantKey {
    /// The key (`queues`).
    pub key: &'static str,
    /// What its entries name, for messages (`queue`).
    pub what: &'static str,
}

/// What one function may reach through the service imports: the names granted under each key,
/// or everything when the app has no manifest.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    open: bool,
    lists: BTreeMap<&'static str, Vec<String>>,
}

impl Grants {
    /// Everything (an app without a manifest).
    pub fn open() -> Self {
        Self {
            open: true,
            lists: BTreeMap::new(),
        }
    }

    /// Whether `name` is granted under `key`.
    pub fn allows(&self, key: &str, name: &str) -> bool {
        self.open
            || self.lists.get(key).is_some_and(|granted| {
                granted.iter().any(|g| {
                    g == "*"
                        || g == name
                        || g.strip_suffix('*')
                            .is_some_and(|prefix| prefix.ends_with('.') && name.starts_with(prefix))
                })
            })
    }

    fn has_any(&self, keys: &[GrantKey]) -> bool {
        self.open || keys.iter().any(|k| self.lists.contains_key(k.key))
    }
}

/// A capability whose import is served by the app's service `T` (a `dyn Trait`).
pub struct ServiceImportCapability<T: ?Sized> {
    name: &'static str,
    /// The interface it implements, without version.
    interface: &'static str,
    link: fn(&mut Linker<InstanceState>) -> anyhow::Result<()>,
    /// The keys of `[functions.NAME]` granting what it reaches, with their manifest shapes.
    grants: &'static [GrantKey],
    keys: &'static [KeySpec],
    service: PhantomData<fn() -> Box<T>>,
}

impl<T: ?Sized> ServiceImportCapability<T> {
    pub(crate) const fn new(
        name: &'static str,
        interface: &'static str,
        link: fn(&mut Linker<InstanceState>) -> anyhow::Result<()>,
        grants: &'static [GrantKey],
        keys: &'static [KeySpec],
    ) -> Self {
        Self {
            name,
            interface,
            link,
            grants,
            keys,
            service: PhantomData,
        }
    }
}

/// The manifest shape of a grant key: a list replaced whole by an environment.
pub(crate) const fn grant_key_spec(name: &'static str) -> KeySpec {
    KeySpec {
        name,
        merge: Merge::Replace,
    }
}

impl<T: ?Sized + Send + Sync + 'static> ManifestSection for ServiceImportCapability<T> {
    fn function_keys(&self) -> &'static [KeySpec] {
        self.keys
    }

    fn parse_function_keys(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        for grant in self.grants {
            for (function, list) in cx.take_function_values::<Vec<Spanned<String>>>(grant.key)? {
                let mut names = Vec::new();
                for n in list {
                    let name = n.get_ref();
                    let valid = !name.is_empty()
                        && name.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '/')
                        })
                        && name.find('*').is_none_or(|i| i == name.len() - 1);
                    if !valid {
                        return Err(cx.at(
                            n.span(),
                            &format!("functions.{function}.{}", grant.key),
                            format!("`{name}` is not a {} name, `*`, or `prefix.*`", grant.what),
                        ));
                    }
                    names.push(name.clone());
                }
                cx.function_settings(&function)
                    .get_or_default::<Grants>()
                    .lists
                    .insert(grant.key, names);
            }
        }
        Ok(())
    }

    fn without_manifest(&self, settings: &mut Extensions) {
        settings.insert(Grants::open());
    }
}

impl<T: ?Sized + Send + Sync + 'static> Capability for ServiceImportCapability<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn add_to_linker(&self, linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        (self.link)(linker)
    }

    fn configure_app(
        &self,
        app: &AppContext<'_>,
    ) -> anyhow::Result<Option<Box<dyn AppCapability>>> {
        Ok(Some(Box::new(ServiceImport {
            slot: app.services.slot::<T>(),
            interface: self.interface,
            grants: self.grants,
        })))
    }
}

/// The per-app part: the slot every function importing the interface reads.
struct ServiceImport<T: ?Sized> {
    slot: Slot<T>,
    interface: &'static str,
    grants: &'static [GrantKey],
}

impl<T: ?Sized + Send + Sync + 'static> AppCapability for ServiceImport<T> {
    fn prepare(&self, function: &FunctionInfo<'_>) -> Result<Option<Context>, String> {
        if !function.imports_any(|i| i == self.interface) {
            return Ok(None);
        }
        let grants = function
            .settings
            .extensions
            .get::<Grants>()
            .cloned()
            .unwrap_or_default();
        if !grants.has_any(self.grants) {
            let lines: Vec<String> = self
                .grants
                .iter()
                .map(|g| format!("`{} = [\"...\"]` ({}s it may reach)", g.key, g.what))
                .collect();
            return Err(format!(
                "it imports `{}` but is granted nothing to reach through it; add {} to [functions.{}] in wasmfn.toml",
                self.interface,
                lines.join(" or "),
                function.name
            ));
        }
        Ok(Some(Arc::new(ServiceContext {
            slot: self.slot.clone(),
            grants: Arc::new(grants),
        })))
    }
}

/// A function's context for one service import: the service and what it may reach.
struct ServiceContext<T: ?Sized> {
    slot: Slot<T>,
    grants: Arc<Grants>,
}

/// The service behind a function's import, once the app provided it.
pub(crate) fn service<T: ?Sized + Send + Sync + 'static>(state: &InstanceState) -> Option<Arc<T>> {
    state.context::<ServiceContext<T>>()?.slot.get().cloned()
}

/// `Err` with the line to add unless the function importing `T` was granted `name` under
/// `grant`.
pub(crate) fn granted<T: ?Sized + Send + Sync + 'static>(
    state: &InstanceState,
    grant: &GrantKey,
    name: &str,
) -> Result<(), String> {
    let allowed = state
        .context::<ServiceContext<T>>()
        .is_some_and(|c| c.grants.allows(grant.key, name));
    if allowed {
        return Ok(());
    }
    let function = state.function_name();
    Err(format!(
        "function `{function}` may not reach {} `{name}`: add it to `{} = [...]` in [functions.{function}] of wasmfn.toml",
        grant.what, grant.key
    ))
}
