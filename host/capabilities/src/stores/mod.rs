//! What the three storage capabilities (key-value, SQL, blob) share: one generic capability,
//! [`StoreCapability`], parameterised by a [`StoreKind`] that says how that kind's tables read
//! and how its stores open; the per-function [`Bindings`] a guest may open; and the sink that
//! turns store writes into stream records.
//!
//! For an app, the capability opens every store the manifest declares, plus the implicit
//! embedded `default` of its kind when a loaded function that uses the kind is bound to it.
//! A failed store is reported at start-up (its functions get "no such store"); everything else
//! is served.

mod manifest;

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use wasmfn_host_core::manifest::ManifestError;
use wasmfn_host_core::services::Slot;
use wasmfn_host_core::{
    AppCapability, AppContext, Capability, Context, FunctionInfo, InstanceState,
};
use wasmtime::component::Linker;

pub use crate::changes::{ChangeRecorder, ChangeSink};
pub use manifest::{Checker, RawStore, StoreDecl, StoreDecls};

/// A boxed future returned by store backends (object-safe async traits).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// Milliseconds since the Unix epoch, as stream records and object infos carry them.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One kind of store: how its manifest tables read and how its stores open.
pub trait StoreKind: Send + Sync + 'static {
    /// Its table and function key in the manifest (`kv`).
    const KIND: &'static str;
    /// What it is called in messages (`key-value`).
    const WHAT: &'static str;
    /// The import named in messages (`wasi:keyvalue`).
    const IMPORT: &'static str;
    /// The embedded backend, used when a table names none.
    const DEFAULT_BACKEND: &'static str;
    /// A store's backend and connection settings.
    type Config: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static;
    /// An open store.
    type Store: Send + Sync + 'static;

    /// Whether `interface` (`package:name/iface`, no version) is one of its imports.
    fn is_import(interface: &str) -> bool;
    /// Link its imports.
    fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()>;
    /// The config of one `[KIND.NAME]` table (`checker` refuses keys of other backends).
    fn config(
        checker: &Checker<'_>,
        base: &Path,
        raw: &RawStore,
    ) -> Result<Self::Config, ManifestError>;
    /// The config of the implicit embedded `default` store.
    fn default_config() -> Self::Config;
    /// Whether opening it talks to a server (and so needs a multi-thread runtime).
    fn is_distributed(config: &Self::Config) -> bool;
    /// Open store `name`; `changes` records its writes.
    fn open(
        name: &str,
        config: &Self::Config,
        state_dir: &Path,
        changes: Option<ChangeSink>,
    ) -> impl Future<Output = anyhow::Result<Self::Store>> + Send;
}

/// The stores of kind `K` a function may open, by binding name (`kv = ["cache"]`). A guest
/// opening any other name gets "no such store".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings<K> {
    /// The binding names.
    pub names: Vec<String>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Bindings<K> {
    /// Bindings to these stores.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
            kind: PhantomData,
        }
    }
}

impl<K> Default for Bindings<K> {
    fn default() -> Self {
        Self::new(Vec::<String>::new())
    }
}

/// The storage capability of kind `K`. Its imports are linked by the kind's own module.
pub struct StoreCapability<K>(PhantomData<fn() -> K>);

impl<K> Default for StoreCapability<K> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<K: StoreKind> Capability for StoreCapability<K> {
    fn name(&self) -> &'static str {
        K::KIND
    }

    fn add_to_linker(&self, linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        K::add_to_linker(linker)
    }

    fn configure_app(
        &self,
        app: &AppContext<'_>,
    ) -> anyhow::Result<Option<Box<dyn AppCapability>>> {
        Ok(Some(Box::new(StoreApp::<K>::configure(app))))
    }
}

/// The stores of kind `K` of one app.
pub struct StoreApp<K: StoreKind> {
    decls: BTreeMap<String, StoreDecl<K::Config>>,
    state_dir: PathBuf,
    recorder: Slot<dyn ChangeRecorder>,
    /// A loaded function that uses `K` is bound to the implicit `default` store.
    needs_default: AtomicBool,
    /// Filled once every function is loaded.
    open: Arc<OnceLock<BTreeMap<String, Arc<K::Store>>>>,
}

impl<K: StoreKind> StoreApp<K> {
    pub(crate) fn configure(app: &AppContext<'_>) -> Self {
        Self {
            decls: app
                .sections
                .get::<StoreDecls<K>>()
                .map(|d| d.stores.clone())
                .unwrap_or_default(),
            state_dir: app.state_dir.to_path_buf(),
            recorder: app.services.slot::<dyn ChangeRecorder>(),
            needs_default: AtomicBool::new(false),
            open: Arc::default(),
        }
    }

    /// The open store bound as `name` (after the app's functions loaded).
    pub fn store(&self, name: &str) -> Option<Arc<K::Store>> {
        self.open.get()?.get(name).cloned()
    }

    /// Every open store, by binding name.
    pub fn stores(&self) -> impl Iterator<Item = (&str, &Arc<K::Store>)> {
        self.open
            .get()
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

/// What a function's `K` imports read: its bindings and the app's open stores.
pub(crate) struct StoreContext<K: StoreKind> {
    bindings: Vec<String>,
    open: Arc<OnceLock<BTreeMap<String, Arc<K::Store>>>>,
}

impl<K: StoreKind> AppCapability for StoreApp<K> {
    fn prepare(&self, function: &FunctionInfo<'_>) -> Result<Option<Context>, String> {
        if !function.imports_any(K::is_import) {
            return Ok(None);
        }
        let bindings = function
            .settings
            .get::<Bindings<K>>()
            .map(|b| b.names.clone())
            .unwrap_or_default();
        if bindings.is_empty() {
            return Err(format!(
                "it imports {} but no {} store is bound to it; add `{kind} = [\"default\"]` \
                 (or a store declared in [{kind}.NAME]) to [functions.{}] in wasmfn.toml",
                K::IMPORT,
                K::WHAT,
                function.name,
                kind = K::KIND,
            ));
        }
        if bindings.iter().any(|b| b == "default") {
            self.needs_default.store(true, Ordering::Relaxed);
        }
        Ok(Some(Arc::new(StoreContext::<K> {
            bindings,
            open: self.open.clone(),
        })))
    }

    fn finish(&self) -> Vec<String> {
        let mut decls = self.decls.clone();
        if self.needs_default.load(Ordering::Relaxed) && !decls.contains_key("default") {
            decls.insert(
                "default".into(),
                StoreDecl {
                    config: K::default_config(),
                    stream: None,
                },
            );
        }
        let mut open = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, d) in &decls {
            let changes = d
                .stream
                .clone()
                .map(|s| ChangeSink::new(self.recorder.clone(), s));
            let opened = block_on(
                K::is_distributed(&d.config),
                K::open(name, &d.config, &self.state_dir, changes),
            )
            .and_then(|r| r);
            match opened {
                Ok(s) => {
                    open.insert(name.clone(), Arc::new(s));
                }
                Err(e) => errors.push(format!("[{}.{name}]: cannot open: {e:#}", K::KIND)),
            }
        }
        let _ = self.open.set(open);
        errors
    }
}

/// The store `name` of kind `K`, if the running function was granted it and it is open. A
/// refusal is logged with the fix (the interfaces' own errors carry at most the name).
pub(crate) fn granted<K: StoreKind>(
    state: &InstanceState,
    name: &str,
) -> Result<Arc<K::Store>, ()> {
    let function = state.function_name();
    let kind = K::KIND;
    let Some(cx) = state.context::<StoreContext<K>>() else {
        return Err(());
    };
    if !cx.bindings.iter().any(|g| g == name) {
        tracing::warn!(
            target: "guest",
            function,
            "{kind} store `{name}` is not bound to this function; add \"{name}\" to `{kind}` in [functions.{function}] of wasmfn.toml"
        );
        return Err(());
    }
    let found = cx.open.get().and_then(|m| m.get(name).cloned());
    if found.is_none() {
        tracing::warn!(target: "guest", function, "{kind} store `{name}` is bound but not open (see the errors at start-up)");
    }
    found.ok_or(())
}

/// Run a store's async constructor from the synchronous loader: on the caller's multi-thread
/// runtime (clients such as Redis spawn tasks that must outlive loading), or inline for the
/// embedded stores, which never wait on I/O.
fn block_on<F: Future>(distributed: bool, fut: F) -> anyhow::Result<F::Output> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| h.block_on(fut)))
        }
        _ if distributed => anyhow::bail!(
            "distributed stores (Redis, PostgreSQL, S3) must be loaded inside a multi-thread tokio runtime"
        ),
        _ => Ok(futures::executor::block_on(fut)),
    }
}
