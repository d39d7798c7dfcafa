//! What the three storage capabilities (key-value, SQL, blob) share: the registry of an app's
//! named stores, the per-function list of bindings a guest may open, and the sink that turns
//! store writes into stream records.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::events::stream::StreamEvent;
use crate::stream_feed::StreamFeed;

/// A boxed future returned by store backends (object-safe async traits).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// Every named store of an app, opened once at load and shared by all instances.
#[derive(Default)]
pub struct StoreRegistry {
    /// Key-value stores by binding name.
    pub kv: BTreeMap<String, Arc<crate::kv::KvStore>>,
    /// SQL databases by binding name.
    pub sql: BTreeMap<String, Arc<crate::sql::SqlStore>>,
    /// Blob stores by binding name.
    pub blob: BTreeMap<String, Arc<crate::blob::BlobStore>>,
}

impl std::fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRegistry")
            .field("kv", &self.kv.keys().collect::<Vec<_>>())
            .field("sql", &self.sql.keys().collect::<Vec<_>>())
            .field("blob", &self.blob.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The stores a function was granted in the manifest, by binding name. A guest opening any
/// other name gets a "no such store" error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreBindings {
    /// Key-value bindings.
    pub kv: Vec<String>,
    /// SQL bindings.
    pub sql: Vec<String>,
    /// Blob bindings.
    pub blob: Vec<String>,
}

impl StoreBindings {
    /// One store of each kind named `default`: what every function gets without a manifest.
    pub fn defaults() -> Self {
        let d = vec!["default".to_string()];
        Self {
            kv: d.clone(),
            sql: d.clone(),
            blob: d,
        }
    }
}

/// Where a store's writes are recorded as stream events (`stream = "NAME"` on a binding).
#[derive(Clone)]
pub struct ChangeSink {
    feed: Arc<StreamFeed>,
    stream: String,
}

impl ChangeSink {
    /// Record into `stream` of `feed`.
    pub fn new(feed: Arc<StreamFeed>, stream: String) -> Self {
        Self { feed, stream }
    }

    /// Append events; a failure is logged, never surfaced to the writer whose write succeeded.
    pub fn emit(&self, events: Vec<StreamEvent>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.feed.append(&self.stream, events) {
            tracing::error!(stream = %self.stream, "recording store changes failed: {e:#}");
        }
    }
}

/// Milliseconds since the Unix epoch, as stream records and object infos carry them.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Which store kinds a component imports (decided from its import names at load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUse {
    /// `wasi:keyvalue/*` or `kv-extensions`.
    pub kv: bool,
    /// `wasmfn:platform/sql`.
    pub sql: bool,
    /// `wasmfn:platform/blob`.
    pub blob: bool,
}

impl StoreUse {
    /// Classify import names.
    pub fn from_imports<'a>(imports: impl IntoIterator<Item = &'a str>) -> Self {
        let mut u = StoreUse::default();
        for name in imports {
            let iface = name.split('@').next().unwrap_or(name);
            match iface {
                i if i.starts_with("wasi:keyvalue/") => u.kv = true,
                "wasmfn:platform/kv-extensions" => u.kv = true,
                "wasmfn:platform/sql" => u.sql = true,
                "wasmfn:platform/blob" => u.blob = true,
                _ => {}
            }
        }
        u
    }

    /// Why a function importing these stores cannot load with `bindings`, if it cannot.
    pub fn check(&self, function: &str, bindings: &StoreBindings) -> Result<(), String> {
        for (used, granted, kind, what, import) in [
            (self.kv, &bindings.kv, "kv", "key-value", "wasi:keyvalue"),
            (self.sql, &bindings.sql, "sql", "SQL", "wasmfn:platform/sql"),
            (
                self.blob,
                &bindings.blob,
                "blob",
                "blob",
                "wasmfn:platform/blob",
            ),
        ] {
            if used && granted.is_empty() {
                return Err(format!(
                    "it imports {import} but no {what} store is bound to it; add \
                     `{kind} = [\"default\"]` (or a store declared in [{kind}.NAME]) to \
                     [functions.{function}] in wasmfn.toml"
                ));
            }
        }
        Ok(())
    }
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

/// Open every store the manifest declares, plus the implicit embedded `default` of a kind when
/// a loaded function is bound to it. Failures are returned as messages (the functions bound to
/// a failed store get "no such store" errors; everything else is served).
pub(crate) fn open_all(
    manifest: &crate::manifest::Manifest,
    needed_defaults: StoreUse,
    state_dir: &std::path::Path,
    feed: Option<&Arc<StreamFeed>>,
) -> (StoreRegistry, Vec<String>) {
    use crate::blob::{BlobBackendConfig, BlobStore};
    use crate::kv::{KvBackendConfig, KvStore};
    use crate::manifest::StoreDecl;
    use crate::sql::{SqlBackendConfig, SqlStore};

    let mut registry = StoreRegistry::default();
    let mut errors = Vec::new();
    let sink = |stream: &Option<String>| -> Option<ChangeSink> {
        Some(ChangeSink::new(feed?.clone(), stream.clone()?))
    };
    let with_default = |declared: bool, needed: bool| needed && !declared;

    let mut kv = manifest.kv.clone();
    if with_default(kv.contains_key("default"), needed_defaults.kv) {
        kv.insert(
            "default".into(),
            StoreDecl {
                config: KvBackendConfig::Sqlite { path: None },
                stream: None,
            },
        );
    }
    for (name, d) in &kv {
        let distributed = !matches!(d.config, KvBackendConfig::Sqlite { .. });
        match block_on(
            distributed,
            KvStore::open(name, &d.config, state_dir, sink(&d.stream)),
        )
        .and_then(|r| r)
        {
            Ok(s) => {
                registry.kv.insert(name.clone(), Arc::new(s));
            }
            Err(e) => errors.push(format!("[kv.{name}]: cannot open: {e:#}")),
        }
    }
    let mut sql = manifest.sql.clone();
    if with_default(sql.contains_key("default"), needed_defaults.sql) {
        sql.insert(
            "default".into(),
            StoreDecl {
                config: SqlBackendConfig::Sqlite { path: None },
                stream: None,
            },
        );
    }
    for (name, d) in &sql {
        let distributed = !matches!(d.config, SqlBackendConfig::Sqlite { .. });
        match block_on(
            distributed,
            SqlStore::open(name, &d.config, state_dir, sink(&d.stream)),
        )
        .and_then(|r| r)
        {
            Ok(s) => {
                registry.sql.insert(name.clone(), Arc::new(s));
            }
            Err(e) => errors.push(format!("[sql.{name}]: cannot open: {e:#}")),
        }
    }
    let mut blob = manifest.blob.clone();
    if with_default(blob.contains_key("default"), needed_defaults.blob) {
        blob.insert(
            "default".into(),
            StoreDecl {
                config: BlobBackendConfig::Fs { path: None },
                stream: None,
            },
        );
    }
    for (name, d) in &blob {
        let distributed = !matches!(d.config, BlobBackendConfig::Fs { .. });
        match block_on(
            distributed,
            BlobStore::open(name, &d.config, state_dir, sink(&d.stream)),
        )
        .and_then(|r| r)
        {
            Ok(s) => {
                registry.blob.insert(name.clone(), Arc::new(s));
            }
            Err(e) => errors.push(format!("[blob.{name}]: cannot open: {e:#}")),
        }
    }
    (registry, errors)
}
