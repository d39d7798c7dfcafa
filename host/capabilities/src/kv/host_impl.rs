//! `wasi:keyvalue` and `kv-extensions` for guests: resolves buckets against the function's
//! bindings and maps backend failures to the interface's errors.

use std::time::Duration;

use wasmfn_host_core::InstanceState;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::{Bucket, Kv, KvStore};
use bindings::wasi::keyvalue::{atomics, batch, store};
use bindings::wasmfn::platform::kv_extensions::{self, KeyPage};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world kv-imports {
                import wasi:keyvalue/store@0.2.0-draft;
                import wasi:keyvalue/atomics@0.2.0-draft;
                import wasi:keyvalue/batch@0.2.0-draft;
                import wasmfn:platform/kv-extensions@0.1.0;
            }
        ",
        world: "wasmfn:host-bindings/kv-imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::kv::Bucket,
        },
    });
}

pub(super) fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    store::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    atomics::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    batch::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    kv_extensions::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    Ok(())
}

type Error = store::Error;
type KvResult<T> = wasmtime::Result<Result<T, Error>>;

fn other(e: anyhow::Error) -> Error {
    Error::Other(format!("{e:#}"))
}

/// The longest TTL: ten years (far beyond any cache; every backend's clock arithmetic holds).
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// A TTL of zero would mean "already expired": refuse it rather than guess; so is one past
/// [`MAX_TTL_MS`] (use no TTL for keys that should stay).
pub(super) fn ttl_within_bounds(ms: u64) -> Result<Duration, String> {
    if ms == 0 {
        return Err("ttl-ms must be at least 1".into());
    }
    if ms > MAX_TTL_MS {
        return Err(format!(
            "ttl-ms {ms} is more than ten years ({MAX_TTL_MS}); set the key without a TTL to keep it"
        ));
    }
    Ok(Duration::from_millis(ms))
}

fn ttl(ms: u64) -> Result<Duration, Error> {
    ttl_within_bounds(ms).map_err(Error::Other)
}

/// `call` on store `s`, in a span when tracing.
async fn traced<T, E: std::fmt::Display>(
    operation: &'static str,
    s: &KvStore,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    crate::traced::call(operation, "kv", s.name(), call).await
}

fn bucket(
    state: &mut InstanceState,
    b: &Resource<Bucket>,
) -> wasmtime::Result<std::sync::Arc<KvStore>> {
    Ok(state.table().get(b)?.store.clone())
}

impl store::Host for InstanceState {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let store = match crate::stores::granted::<Kv>(self, &identifier) {
            Ok(s) => s,
            Err(()) => return Ok(Err(Error::NoSuchStore)),
        };
        Ok(Ok(self.table().push(Bucket { store })?))
    }
}

impl store::HostBucket for InstanceState {
    async fn get(&mut self, b: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let s = bucket(self, &b)?;
        Ok(traced("kv get", &s, s.backend().get(&key))
            .await
            .map_err(other))
    }

    async fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let s = bucket(self, &b)?;
        Ok(traced("kv set", &s, s.set(&key, &value, None))
            .await
            .map_err(other))
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> KvResult<()> {
        let s = bucket(self, &b)?;
        Ok(traced("kv delete", &s, s.delete(&key)).await.map_err(other))
    }

    async fn exists(&mut self, b: Resource<Bucket>, key: String) -> KvResult<bool> {
        let s = bucket(self, &b)?;
        Ok(traced("kv exists", &s, s.backend().exists(&key))
            .await
            .map_err(other))
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        // The standard cursor is a number; it is the count of keys already returned, so a page
        // is re-read from the start of the (sorted) keyspace. For large stores use `list-prefix`.
        let s = bucket(self, &b)?;
        const PAGE: u32 = 1000;
        let skip = cursor.unwrap_or(0);
        let mut seen = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page =
                match traced("kv list", &s, s.backend().list("", after.as_deref(), PAGE)).await {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(other(e))),
                };
            let n = page.keys.len() as u64;
            if seen + n > skip || page.cursor.is_none() {
                let start = (skip.saturating_sub(seen)) as usize;
                let keys: Vec<String> = page.keys.into_iter().skip(start).collect();
                let next = page.cursor.map(|_| seen + n);
                return Ok(Ok(store::KeyResponse { keys, cursor: next }));
            }
            seen += n;
            after = page.cursor;
        }
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table().delete(b)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(&mut self, b: Resource<Bucket>, key: String, delta: u64) -> KvResult<u64> {
        let s = bucket(self, &b)?;
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(Error::Other(
                "delta is larger than a 64-bit signed integer".into(),
            )));
        };
        Ok(
            match traced("kv increment", &s, s.increment(&key, delta)).await {
                Ok(n) => {
                    u64::try_from(n).map_err(|_| Error::Other(format!("`{key}` is negative: {n}")))
                }
                Err(e) => Err(other(e)),
            },
        )
    }
}

impl batch::Host for InstanceState {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let s = bucket(self, &b)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match traced("kv get", &s, s.backend().get(&key)).await {
                Ok(v) => out.push(v.map(|v| (key, v))),
                Err(e) => return Ok(Err(other(e))),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(&mut self, b: Resource<Bucket>, kvs: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let s = bucket(self, &b)?;
        for (key, value) in kvs {
            if let Err(e) = traced("kv set", &s, s.set(&key, &value, None)).await {
                return Ok(Err(other(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let s = bucket(self, &b)?;
        for key in keys {
            if let Err(e) = traced("kv delete", &s, s.delete(&key)).await {
                return Ok(Err(other(e)));
            }
        }
        Ok(Ok(()))
    }
}

impl kv_extensions::Host for InstanceState {
    async fn set_with_ttl(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> KvResult<()> {
        let s = bucket(self, &b)?;
        let ttl = match ttl(ttl_ms) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        Ok(traced("kv set", &s, s.set(&key, &value, Some(ttl)))
            .await
            .map_err(other))
    }

    async fn ttl(&mut self, b: Resource<Bucket>, key: String) -> KvResult<Option<u64>> {
        let s = bucket(self, &b)?;
        Ok(traced("kv ttl", &s, s.backend().ttl(&key))
            .await
            .map(|t| t.map(|t| t.as_millis() as u64))
            .map_err(other))
    }

    async fn persist(&mut self, b: Resource<Bucket>, key: String) -> KvResult<bool> {
        let s = bucket(self, &b)?;
        Ok(traced("kv persist", &s, s.backend().persist(&key))
            .await
            .map_err(other))
    }

    async fn list_prefix(
        &mut self,
        b: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> KvResult<KeyPage> {
        let s = bucket(self, &b)?;
        Ok(traced(
            "kv list",
            &s,
            s.backend().list(&prefix, cursor.as_deref(), limit),
        )
        .await
        .map(|p| KeyPage {
            keys: p.keys,
            cursor: p.cursor,
        })
        .map_err(other))
    }

    async fn compare_and_swap(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> KvResult<bool> {
        let s = bucket(self, &b)?;
        let ttl = match ttl_ms.map(ttl).transpose() {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        Ok(traced(
            "kv compare-and-swap",
            &s,
            s.compare_and_swap(&key, expected.as_deref(), &new, ttl),
        )
        .await
        .map_err(other))
    }
}
