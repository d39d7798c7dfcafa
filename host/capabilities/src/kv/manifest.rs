//! `[kv.NAME]`: an embedded SQLite file (default) or a Redis server, and the [`StoreKind`]
//! that ties key-value stores into [`crate::stores`].

use std::path::Path;

use wasmfn_host_core::manifest::ManifestError;
use wasmtime::component::Linker;

use std::sync::Arc;

#[cfg(feature = "kv-redis")]
use super::RedisKv;
use super::{Kv, KvBackend, KvBackendConfig, KvStore, SqliteKv};
use crate::stores::{ChangeSink, Checker, RawStore, StoreKind};
use wasmfn_host_core::InstanceState;

impl StoreKind for Kv {
    const KIND: &'static str = "kv";
    const WHAT: &'static str = "key-value";
    const IMPORT: &'static str = "wasi:keyvalue";
    const DEFAULT_BACKEND: &'static str = "sqlite";
    type Config = KvBackendConfig;
    type Store = KvStore;

    fn is_import(interface: &str) -> bool {
        interface.starts_with("wasi:keyvalue/")
            || interface == "wasmfn:platform/kv-extensions"
            || interface == "wasmfn:platform/kv"
    }

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        super::host_impl::add_to_linker(linker)?;
        super::host_async::add_to_linker(linker)
    }

    fn config(
        c: &Checker<'_>,
        base: &Path,
        r: &RawStore,
    ) -> Result<KvBackendConfig, ManifestError> {
        c.refuse_all(&[
            (&r.bucket, "bucket"),
            (&r.region, "region"),
            (&r.endpoint, "endpoint"),
            (&r.access_key_id_env, "access-key-id-env"),
            (&r.secret_access_key_env, "secret-access-key-env"),
        ])?;
        c.refuse(&r.pool_size, "pool-size")?;
        match c.backend {
            "sqlite" => {
                c.refuse_url(r)?;
                c.refuse(&r.prefix, "prefix")?;
                Ok(KvBackendConfig::Sqlite {
                    path: r.path_in(base),
                })
            }
            #[cfg(feature = "kv-redis")]
            "redis" => {
                c.refuse(&r.path, "path")?;
                Ok(KvBackendConfig::Redis {
                    url: c.url(r, "redis://127.0.0.1:6379")?,
                    prefix: r.prefix.as_ref().map(|p| p.get_ref().clone()),
                })
            }
            #[cfg(not(feature = "kv-redis"))]
            "redis" => Err(c.not_compiled("redis")),
            _ => Err(c.unknown_backend("\"sqlite\" (embedded) or \"redis\"")),
        }
    }

    fn default_config() -> KvBackendConfig {
        KvBackendConfig::Sqlite { path: None }
    }

    fn is_distributed(config: &KvBackendConfig) -> bool {
        !matches!(config, KvBackendConfig::Sqlite { .. })
    }

    async fn open(
        name: &str,
        config: &KvBackendConfig,
        state_dir: &Path,
        changes: Option<ChangeSink>,
    ) -> anyhow::Result<KvStore> {
        let backend: Arc<dyn KvBackend> = match config {
            KvBackendConfig::Sqlite { path } => {
                let path = path
                    .clone()
                    .unwrap_or_else(|| state_dir.join("kv").join(format!("{name}.sqlite")));
                Arc::new(SqliteKv::open(&path)?)
            }
            #[cfg(feature = "kv-redis")]
            KvBackendConfig::Redis { url, prefix } => {
                let prefix = prefix.clone().unwrap_or_else(|| format!("{name}:"));
                let url = url.resolve().map_err(anyhow::Error::msg)?;
                Arc::new(RedisKv::connect(url.expose(), prefix).await?)
            }
        };
        Ok(KvStore::new(name, backend, changes))
    }
}
