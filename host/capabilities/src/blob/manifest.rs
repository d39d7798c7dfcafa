//! `[blob.NAME]`: an embedded folder (default) or an S3 bucket, and the [`StoreKind`] that
//! ties blob stores into [`crate::stores`].

use std::path::Path;

use wasmfn_host_core::manifest::ManifestError;
use wasmfn_host_core::InstanceState;
use wasmtime::component::Linker;

use std::sync::Arc;

#[cfg(feature = "blob-s3")]
use super::S3Blobs;
use super::{Blob, BlobBackend, BlobBackendConfig, BlobStore, FsBlobs};
use crate::stores::{ChangeSink, Checker, RawStore, StoreKind};

impl StoreKind for Blob {
    const KIND: &'static str = "blob";
    const WHAT: &'static str = "blob";
    const IMPORT: &'static str = "wasmfn:platform/blob";
    const DEFAULT_BACKEND: &'static str = "fs";
    type Config = BlobBackendConfig;
    type Store = BlobStore;

    fn is_import(interface: &str) -> bool {
        interface == "wasmfn:platform/blob"
    }

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        super::host_impl::add_to_linker(linker)
    }

    fn config(
        c: &Checker<'_>,
        base: &Path,
        r: &RawStore,
    ) -> Result<BlobBackendConfig, ManifestError> {
        c.refuse_url(r)?;
        c.refuse(&r.prefix, "prefix")?;
        c.refuse(&r.pool_size, "pool-size")?;
        match c.backend {
            "fs" => {
                c.refuse_all(&[
                    (&r.bucket, "bucket"),
                    (&r.region, "region"),
                    (&r.endpoint, "endpoint"),
                    (&r.access_key_id_env, "access-key-id-env"),
                    (&r.secret_access_key_env, "secret-access-key-env"),
                ])?;
                Ok(BlobBackendConfig::Fs {
                    path: r.path_in(base),
                })
            }
            #[cfg(feature = "blob-s3")]
            "s3" => {
                use wasmfn_host_core::secrets::SecretSource;
                c.refuse(&r.path, "path")?;
                let Some(bucket) = &r.bucket else {
                    return Err(ManifestError(format!(
                        "[{}]: the `s3` backend needs `bucket = \"NAME\"`",
                        c.table
                    )));
                };
                let env = |v: &Option<toml::Spanned<String>>| {
                    v.as_ref().map(|e| SecretSource::Env(e.get_ref().clone()))
                };
                Ok(BlobBackendConfig::S3(super::S3Config {
                    bucket: bucket.get_ref().clone(),
                    region: r.region.as_ref().map(|v| v.get_ref().clone()),
                    endpoint: r.endpoint.as_ref().map(|v| v.get_ref().clone()),
                    access_key_id: env(&r.access_key_id_env),
                    secret_access_key: env(&r.secret_access_key_env),
                }))
            }
            #[cfg(not(feature = "blob-s3"))]
            "s3" => Err(c.not_compiled("s3")),
            _ => Err(c.unknown_backend("\"fs\" (embedded) or \"s3\"")),
        }
    }

    fn default_config() -> BlobBackendConfig {
        BlobBackendConfig::Fs { path: None }
    }

    fn is_distributed(config: &BlobBackendConfig) -> bool {
        !matches!(config, BlobBackendConfig::Fs { .. })
    }

    async fn open(
        name: &str,
        config: &BlobBackendConfig,
        state_dir: &Path,
        changes: Option<ChangeSink>,
    ) -> anyhow::Result<BlobStore> {
        let backend: Arc<dyn BlobBackend> = match config {
            BlobBackendConfig::Fs { path } => {
                let path = path
                    .clone()
                    .unwrap_or_else(|| state_dir.join("blob").join(name));
                Arc::new(FsBlobs::open(&path)?)
            }
            #[cfg(feature = "blob-s3")]
            BlobBackendConfig::S3(c) => Arc::new(S3Blobs::connect(c).await?),
        };
        Ok(BlobStore {
            name: name.to_string(),
            backend,
            changes,
        })
    }
}
