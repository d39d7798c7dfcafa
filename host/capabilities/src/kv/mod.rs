//! Key-value capability: `wasi:keyvalue` (store, atomics, batch) plus `kv-extensions` (TTL,
//! prefix listing, compare-and-swap), over named stores.
//!
//! Each store is a [`KvBackend`]: [`SqliteKv`] (embedded, durable, the default) or [`RedisKv`]
//! (distributed). [`KvStore`] wraps a backend with the binding's name and, when the binding has a
//! `stream`, records every change (insert/modify/remove with old and new images).

use std::sync::Arc;
use std::time::Duration;

use wasmfn_host_core::stream::{ChangeRecord, ImageFormat, Operation, StreamEvent};

use crate::stores::{
    now_ms, Bindings, ChangeSink, StoreApp, StoreCapability, StoreDecls, StoreFuture,
};

mod host_async;
mod host_impl;
mod manifest;
#[cfg(feature = "kv-redis")]
mod redis;
mod sqlite;

#[cfg(feature = "kv-redis")]
pub use self::redis::RedisKv;
pub use self::sqlite::SqliteKv;

/// The key-value store kind (see [`crate::stores::StoreKind`]).
pub struct Kv;

/// The key-value capability.
pub type KvCapability = StoreCapability<Kv>;
/// The key-value stores of one app ([`StoreApp::store`] gives one by binding name).
pub type KvApp = StoreApp<Kv>;
/// The key-value stores a function may open (`kv = [...]`).
pub type KvBindings = Bindings<Kv>;
/// The `[kv.NAME]` tables of a manifest.
pub type KvStores = StoreDecls<Kv>;

/// A key-value backend. Values are bytes; counters are stored as decimal text (as Redis does),
/// so `increment` works on values written by `set` and vice versa.
pub trait KvBackend: Send + Sync {
    /// The live value of `key` (expired keys are absent).
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Set `key`, replacing any value and expiry; `ttl` gives it one.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()>;
    /// Delete `key`; deleting an absent key succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;
    /// Whether `key` holds a live value.
    fn exists<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;
    /// Keys starting with `prefix`, at most about `limit`, continuing after `cursor`.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> StoreFuture<'a, KeyPage>;
    /// Add `delta` to the integer at `key` (absent counts as 0), atomically; the new value.
    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> StoreFuture<'a, i64>;
    /// Set `key` to `new` if its value is `expected` (`None`: absent), atomically.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool>;
    /// Time left before `key` expires (`None`: no expiry or absent).
    fn ttl<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Duration>>;
    /// Clear the expiry of `key`; false when absent.
    fn persist<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;
}

/// One page of keys.
#[derive(Debug, Default)]
pub struct KeyPage {
    /// The keys.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` at the end.
    pub cursor: Option<String>,
}

/// Where a key-value binding lives (`[kv.NAME]` in the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvBackendConfig {
    /// Embedded SQLite database file (default: `STATE/kv/NAME.sqlite`).
    Sqlite {
        /// Database file; `None` picks the default under the state folder.
        path: Option<std::path::PathBuf>,
    },
    /// Redis server; keys are namespaced by `prefix` (default `NAME:`).
    #[cfg(feature = "kv-redis")]
    Redis {
        /// Connection URL (`redis://host:port/db`); may carry a password, so never logged.
        url: wasmfn_host_core::secrets::SecretSource,
        /// Prefix added to every key so that bindings can share one database.
        prefix: Option<String>,
    },
}

/// A named key-value store: a backend plus optional change recording.
pub struct KvStore {
    name: String,
    backend: Arc<dyn KvBackend>,
    changes: Option<ChangeSink>,
}

impl KvStore {
    /// Wrap `backend` as store `name`.
    pub fn new(name: &str, backend: Arc<dyn KvBackend>, changes: Option<ChangeSink>) -> Self {
        Self {
            name: name.to_string(),
            backend,
            changes,
        }
    }

    /// The binding name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend, for direct use by embedders and benchmarks.
    pub fn backend(&self) -> &Arc<dyn KvBackend> {
        &self.backend
    }

    /// Read the previous value only when someone records changes (it costs a round trip).
    async fn before(&self, key: &str) -> anyhow::Result<Option<Option<Vec<u8>>>> {
        match &self.changes {
            Some(_) => Ok(Some(self.backend.get(key).await?)),
            None => Ok(None),
        }
    }

    fn record(&self, key: &str, old: Option<Vec<u8>>, new: Option<Vec<u8>>) {
        let Some(sink) = &self.changes else { return };
        let operation = match (&old, &new) {
            (None, Some(_)) => Operation::Insert,
            (Some(_), Some(_)) => Operation::Modify,
            (Some(_), None) => Operation::Remove,
            (None, None) => return,
        };
        sink.emit(vec![StreamEvent::Change(ChangeRecord {
            source: self.name.clone(),
            sequence: String::new(),
            key: key.to_string(),
            operation,
            format: ImageFormat::Raw,
            old_image: old,
            new_image: new,
            timestamp: now_ms(),
        })]);
    }

    /// `set`, recording the change.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> anyhow::Result<()> {
        let old = self.before(key).await?;
        self.backend.set(key, value, ttl).await?;
        if let Some(old) = old {
            self.record(key, old, Some(value.to_vec()));
        }
        Ok(())
    }

    /// `delete`, recording the change.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let old = self.before(key).await?;
        self.backend.delete(key).await?;
        if let Some(old) = old {
            self.record(key, old, None);
        }
        Ok(())
    }

    /// `increment`, recording the change.
    pub async fn increment(&self, key: &str, delta: i64) -> anyhow::Result<i64> {
        let old = self.before(key).await?;
        let new = self.backend.increment(key, delta).await?;
        if let Some(old) = old {
            self.record(key, old, Some(new.to_string().into_bytes()));
        }
        Ok(new)
    }

    /// `compare_and_swap`, recording the change when it happened.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> anyhow::Result<bool> {
        let swapped = self
            .backend
            .compare_and_swap(key, expected, new, ttl)
            .await?;
        if swapped && self.changes.is_some() {
            self.record(key, expected.map(<[u8]>::to_vec), Some(new.to_vec()));
        }
        Ok(swapped)
    }
}

/// Resource behind a guest's `wasi:keyvalue/store.bucket` handle.
pub struct Bucket {
    store: Arc<KvStore>,
}
