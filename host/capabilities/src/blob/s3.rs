//! The distributed blob backend: any S3-compatible service (AWS S3, R2, MinIO, Ceph...)
//! through the `object_store` crate. Content type and metadata travel as S3 headers
//! (`Content-Type`, `x-amz-meta-*`); uploads stream through a multipart writer.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, GetRange, GetResult, ObjectStore, PutPayload,
};
use tokio::io::AsyncWriteExt as _;

use super::{
    BlobBackend, BlobError, BlobFuture, BoxReader, ByteRange, ListPage, ObjectInfo, PutOptions,
};
use crate::stores::now_ms;
use wasmfn_host_core::secrets::SecretSource;

/// Connection settings of an S3 binding. Credentials left out are taken from the standard
/// `AWS_*` environment variables.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region (default: `AWS_REGION` or `AWS_DEFAULT_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Endpoint URL for non-AWS services (`http://127.0.0.1:9000`); plain HTTP is allowed when
    /// the endpoint says so.
    pub endpoint: Option<String>,
    /// Access key id.
    pub access_key_id: Option<SecretSource>,
    /// Secret access key.
    pub secret_access_key: Option<SecretSource>,
}

/// S3 blob backend.
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
}

fn error(key: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_string()),
        other => BlobError::Other(format!("`{key}`: {other}")),
    }
}

fn attributes(opts: &PutOptions) -> Attributes {
    let mut attrs = Attributes::new();
    if let Some(ct) = &opts.content_type {
        attrs.insert(Attribute::ContentType, AttributeValue::from(ct.clone()));
    }
    for (k, v) in &opts.metadata {
        attrs.insert(
            Attribute::Metadata(k.to_ascii_lowercase().into()),
            AttributeValue::from(v.clone()),
        );
    }
    attrs
}

fn info_of(key: &str, r: &GetResult) -> ObjectInfo {
    let mut metadata = BTreeMap::new();
    let mut content_type = None;
    for (attr, value) in r.attributes.iter() {
        match attr {
            Attribute::ContentType => content_type = Some(value.to_string()),
            Attribute::Metadata(k) => {
                metadata.insert(k.to_string(), value.to_string());
            }
            _ => {}
        }
    }
    ObjectInfo {
        key: key.to_string(),
        size: r.meta.size,
        content_type,
        etag: r.meta.e_tag.clone().unwrap_or_default(),
        last_modified: r.meta.last_modified.timestamp_millis().max(0) as u64,
        metadata,
    }
}

impl S3Blobs {
    /// Build the client and check the bucket answers.
    pub async fn connect(c: &S3Config) -> anyhow::Result<Self> {
        let mut b = AmazonS3Builder::from_env()
            // Three retries with backoff (as AWS SDKs do), so an unreachable endpoint fails a
            // request in about a second instead of object_store's default of minutes.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .with_bucket_name(&c.bucket);
        // The manifest's region, else the environment's (`AWS_REGION`, which Lambda sets),
        // else us-east-1.
        let region = c
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        if let Some(e) = &c.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                // S3-compatible servers rarely resolve bucket subdomains.
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &c.access_key_id {
            b = b.with_access_key_id(k.resolve().map_err(anyhow::Error::msg)?.expose());
        }
        if let Some(s) = &c.secret_access_key {
            b = b.with_secret_access_key(s.resolve().map_err(anyhow::Error::msg)?.expose());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(b.build().context("configuring S3")?);
        // One cheap request so that a wrong endpoint or bucket fails at load, not on first use.
        let probe = store.list_with_delimiter(None);
        tokio::time::timeout(std::time::Duration::from_secs(10), probe)
            .await
            .map_err(|_| anyhow::anyhow!("S3 endpoint did not answer within 10 s"))?
            .with_context(|| format!("listing bucket `{}`", c.bucket))?;
        Ok(Self { store })
    }

    async fn get_opts(
        &self,
        key: &str,
        range: Option<ByteRange>,
        head: bool,
    ) -> Result<GetResult, BlobError> {
        let range = match range {
            None => None,
            Some(r) => {
                // Ask for the size first: the interface distinguishes a range past the end.
                let size = self
                    .store
                    .head(&Path::from(key))
                    .await
                    .map_err(|e| error(key, e))?
                    .size;
                let (start, end) = r.bounds(size).ok_or(BlobError::InvalidRange)?;
                (end > start).then_some(GetRange::Bounded(start..end))
            }
        };
        let opts = GetOptions {
            range,
            head,
            ..Default::default()
        };
        self.store
            .get_opts(&Path::from(key), opts)
            .await
            .map_err(|e| error(key, e))
    }
}

impl BlobBackend for S3Blobs {
    fn put<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        opts: &'a PutOptions,
    ) -> BlobFuture<'a, ObjectInfo> {
        Box::pin(async move {
            let size = data.len() as u64;
            let put = object_store::PutOptions {
                attributes: attributes(opts),
                ..Default::default()
            };
            let r = self
                .store
                .put_opts(&Path::from(key), PutPayload::from(data), put)
                .await
                .map_err(|e| error(key, e))?;
            Ok(ObjectInfo {
                key: key.to_string(),
                size,
                content_type: opts.content_type.clone(),
                etag: r.e_tag.unwrap_or_default(),
                last_modified: now_ms(),
                metadata: opts
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
            })
        })
    }

    fn upload(
        &self,
        key: String,
        opts: PutOptions,
        mut body: BoxReader,
    ) -> BlobFuture<'static, ObjectInfo> {
        let store = self.store.clone();
        Box::pin(async move {
            // Small bodies go up in one PUT, large ones as a multipart upload of 8 MiB parts.
            let mut writer =
                BufWriter::with_capacity(store.clone(), Path::from(key.as_str()), 8 << 20)
                    .with_attributes(attributes(&opts));
            let copied = async {
                tokio::io::copy(&mut body, &mut writer).await?;
                writer.shutdown().await
            }
            .await;
            if let Err(e) = copied {
                let _ = writer.abort().await;
                return Err(BlobError::Other(format!("uploading `{key}`: {e}")));
            }
            let head = store
                .get_opts(
                    &Path::from(key.as_str()),
                    GetOptions {
                        head: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| error(&key, e))?;
            Ok(info_of(&key, &head))
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
        max_bytes: u64,
    ) -> BlobFuture<'a, (ObjectInfo, Bytes)> {
        Box::pin(async move {
            let r = self.get_opts(key, range, false).await?;
            // The response's headers give its length; the body is not read past them.
            let len = (r.range.end - r.range.start) as u64;
            if len > max_bytes {
                return Err(super::too_large(key, len, max_bytes));
            }
            let info = info_of(key, &r);
            let data = r.bytes().await.map_err(|e| error(key, e))?;
            Ok((info, data))
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
    ) -> BlobFuture<'a, (ObjectInfo, BoxReader)> {
        Box::pin(async move {
            let r = self.get_opts(key, range, false).await?;
            let info = info_of(key, &r);
            let stream = r.into_stream().map_err(std::io::Error::other);
            Ok((
                info,
                Box::new(tokio_util::io::StreamReader::new(stream)) as BoxReader,
            ))
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BlobFuture<'a, Option<ObjectInfo>> {
        Box::pin(async move {
            match self.get_opts(key, None, true).await {
                Ok(r) => Ok(Some(info_of(key, &r))),
                Err(BlobError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            match self.store.delete(&Path::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(error(key, e)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BlobFuture<'a, ListPage> {
        Box::pin(async move {
            let limit = limit.clamp(1, 1000) as usize;
            // object_store lists by path segments; list the prefix's folder and filter the rest.
            let folder = prefix.rsplit_once('/').map(|(d, _)| Path::from(d));
            let offset = Path::from(cursor.unwrap_or(""));
            let mut listing = if cursor.is_some() {
                self.store.list_with_offset(folder.as_ref(), &offset)
            } else {
                self.store.list(folder.as_ref())
            };
            let mut keys = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| error(prefix, e))?;
                let key = meta.location.to_string();
                if key.starts_with(prefix) {
                    keys.push(key);
                    if keys.len() > limit {
                        break;
                    }
                }
            }
            keys.sort();
            let cursor = if keys.len() > limit {
                keys.truncate(limit);
                keys.last().cloned()
            } else {
                None
            };
            // Listings carry neither content type nor metadata: ask for each object's headers.
            let heads = futures::future::try_join_all(keys.iter().map(|k| self.head(k))).await?;
            Ok(ListPage {
                objects: heads.into_iter().flatten().collect(),
                cursor,
            })
        })
    }
}
