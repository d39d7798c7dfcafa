//! The shape shared by the imports that reach one of the app's own services (queue publishing,
//! the event bus, workflow starts): the capability defines a trait, a higher layer implements
//! it and provides it in the app's [`Services`](wasmfn_host_core::services::Services), and each
//! function importing the interface gets the slot as its context.

use std::marker::PhantomData;
use std::sync::Arc;

use wasmfn_host_core::manifest::ManifestSection;
use wasmfn_host_core::services::Slot;
use wasmfn_host_core::{
    AppCapability, AppContext, Capability, Context, FunctionInfo, InstanceState,
};
use wasmtime::component::Linker;

/// A capability whose import is served by the app's service `T` (a `dyn Trait`).
pub struct ServiceImportCapability<T: ?Sized> {
    name: &'static str,
    /// The interface it implements, without version.
    interface: &'static str,
    link: fn(&mut Linker<InstanceState>) -> anyhow::Result<()>,
    service: PhantomData<fn() -> Box<T>>,
}

impl<T: ?Sized> ServiceImportCapability<T> {
    pub(crate) const fn new(
        name: &'static str,
        interface: &'static str,
        link: fn(&mut Linker<InstanceState>) -> anyhow::Result<()>,
    ) -> Self {
        Self {
            name,
            interface,
            link,
            service: PhantomData,
        }
    }
}

impl<T: ?Sized + Send + Sync + 'static> ManifestSection for ServiceImportCapability<T> {}

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
        })))
    }
}

/// The per-app part: the slot every function importing the interface reads.
struct ServiceImport<T: ?Sized> {
    slot: Slot<T>,
    interface: &'static str,
}

impl<T: ?Sized + Send + Sync + 'static> AppCapability for ServiceImport<T> {
    fn prepare(&self, function: &FunctionInfo<'_>) -> Result<Option<Context>, String> {
        if !function.imports_any(|i| i == self.interface) {
            return Ok(None);
        }
        Ok(Some(Arc::new(self.slot.clone())))
    }
}

/// The service behind a function's import, once the app provided it.
pub(crate) fn service<T: ?Sized + Send + Sync + 'static>(state: &InstanceState) -> Option<Arc<T>> {
    state.context::<Slot<T>>()?.get().cloned()
}
