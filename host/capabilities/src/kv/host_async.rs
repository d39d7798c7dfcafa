//! `wasmfn:platform/kv@0.2.0` for WASI 0.3 guests: the buckets `wasi:keyvalue` reaches, with
//! every call that touches the store a concurrent host call, so one request awaiting a key
//! leaves the instance free to run its other requests. TTL bounds and change records are the
//! same as through `wasi:keyvalue` and `kv-extensions`.

use std::sync::Arc;

use wasmfn_host_core::InstanceState;
use wasmtime::component::{Accessor, HasData, Linker, Resource};

use super::{Bucket, KvStore};
use bindings::wasmfn::platform::kv::{self, Error, KeyPage};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/async",
        inline: "
            package wasmfn:host-bindings;
            world kv-async-imports { import wasmfn:platform/kv@0.2.0; }
        ",
        world: "wasmfn:host-bindings/kv-async-imports",
        // The `async func`s get `async | store` (concurrent) by default; `open` stays plain.
        imports: { default: trappable },
        with: {
            "wasmfn:platform/kv.bucket": crate::kv::Bucket,
        },
    });
}

/// The instance state as the 0.2.0 key-value imports see it.
struct KvAsync;

impl HasData for KvAsync {
    type Data<'a> = &'a mut InstanceState;
}

/// Link them on an engine for WASI 0.3 components (the others cannot run `async func`s).
pub(super) fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    if !linker.engine().get_concurrency_support() {
        return Ok(());
    }
    kv::add_to_linker::<_, KvAsync>(linker, |s| s)?;
    Ok(())
}

type KvResult<T> = wasmtime::Result<Result<T, Error>>;

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("{e:#}"))
}

/// The TTL rules of `kv-extensions` (1 ms to ten years), with this interface's error.
fn ttl(ms: u64) -> Result<std::time::Duration, Error> {
    super::host_impl::ttl_within_bounds(ms).map_err(Error::Other)
}

/// The bucket's store, taken from the table before the call awaits it.
fn bucket<T>(
    accessor: &Accessor<T, KvAsync>,
    b: &Resource<Bucket>,
) -> wasmtime::Result<Arc<KvStore>> {
    accessor.with(|mut access| Ok(access.get().table().get(b)?.store.clone()))
}

/// `call` on store `s`, in a span when tracing.
async fn traced<T, E: std::fmt::Display>(
    operation: &'static str,
    s: &KvStore,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    crate::traced::call(operation, "kv", s.name(), call)
        .await
        .map_err(other)
}

impl kv::Host for InstanceState {}

impl kv::HostBucket for InstanceState {
    fn open(&mut self, name: String) -> KvResult<Resource<Bucket>> {
        match crate::stores::granted::<super::Kv>(self, &name) {
            Ok(store) => Ok(Ok(self.table().push(Bucket { store })?)),
            Err(()) => Ok(Err(Error::NoSuchStore)),
        }
    }

    fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table().delete(b)?;
        Ok(())
    }
}

impl<T: Send> kv::HostBucketWithStore<T> for KvAsync {
    async fn get(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> KvResult<Option<Vec<u8>>> {
        let s = bucket(accessor, &b)?;
        Ok(traced("kv get", &s, s.backend().get(&key)).await)
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> KvResult<()> {
        let s = bucket(accessor, &b)?;
        Ok(traced("kv set", &s, s.set(&key, &value, None)).await)
    }

    async fn set_with_ttl(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> KvResult<()> {
        let s = bucket(accessor, &b)?;
        let ttl = match ttl(ttl_ms) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        Ok(traced("kv set", &s, s.set(&key, &value, Some(ttl))).await)
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> KvResult<()> {
        let s = bucket(accessor, &b)?;
        Ok(traced("kv delete", &s, s.delete(&key)).await)
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> KvResult<bool> {
        let s = bucket(accessor, &b)?;
        Ok(traced("kv exists", &s, s.backend().exists(&key)).await)
    }

    async fn increment(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> KvResult<i64> {
        let s = bucket(accessor, &b)?;
        Ok(traced("kv increment", &s, s.increment(&key, delta)).await)
    }

    async fn ttl(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
    ) -> KvResult<Option<u64>> {
        let s = bucket(accessor, &b)?;
        Ok(traced("kv ttl", &s, s.backend().ttl(&key))
            .await
            .map(|t| t.map(|t| t.as_millis() as u64)))
    }

    async fn compare_and_swap(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> KvResult<bool> {
        let s = bucket(accessor, &b)?;
        let ttl = match ttl_ms.map(ttl).transpose() {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let call = s.compare_and_swap(&key, expected.as_deref(), &new, ttl);
        Ok(traced("kv compare-and-swap", &s, call).await)
    }

    async fn list_prefix(
        accessor: &Accessor<T, Self>,
        b: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> KvResult<KeyPage> {
        let s = bucket(accessor, &b)?;
        let call = s.backend().list(&prefix, cursor.as_deref(), limit);
        Ok(traced("kv list", &s, call).await.map(|p| KeyPage {
            keys: p.keys,
            cursor: p.cursor,
        }))
    }
}
