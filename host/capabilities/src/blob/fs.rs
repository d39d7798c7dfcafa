//! The embedded blob store: a folder opened with cap-std, so every path is resolved inside it
//! (`..`, absolute paths and symlinks pointing out are refused by construction, not by string
//! checks alone), plus an SQLite index under `.wasmfn/` holding each object's size, content type,
//! ETag and metadata, which also serves listings in key order.
//!
//! Writes go to a temporary file first, are flushed to disk, then renamed over the key: a
//! reader sees the old object or the new one, never half of one.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use rusqlite::{params, OptionalExtension as _};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::{
    BlobBackend, BlobError, BlobFuture, BoxReader, ByteRange, ListPage, ObjectInfo, PutOptions,
};
use crate::sqlite_pool::SqlitePool;
use crate::stores::now_ms;

const INDEX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    key           TEXT PRIMARY KEY,
    size          INTEGER NOT NULL,
    content_type  TEXT,
    etag          TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    metadata      TEXT NOT NULL
) WITHOUT ROWID;
";

/// Embedded blob backend.
pub struct FsBlobs {
    inner: Arc<Inner>,
}

struct Inner {
    dir: Dir,
    index: SqlitePool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_error(key: &str, e: std::io::Error) -> BlobError {
    match e.kind() {
        std::io::ErrorKind::NotFound => BlobError::NotFound(key.to_string()),
        // cap-std's answer to a path (through a symlink) that leads outside the folder.
        std::io::ErrorKind::PermissionDenied => BlobError::InvalidKey(format!(
            "`{key}` resolves outside the store (a symlink?): {e}"
        )),
        _ => BlobError::Other(format!("`{key}`: {e}")),
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> BlobFuture<'static, T> {
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BlobError::Other(format!("blob task failed: {e}")))?
    })
}

impl FsBlobs {
    /// Open (or create) the store in folder `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root.join(".wasmfn/tmp"))
            .with_context(|| format!("creating blob folder {}", root.display()))?;
        let dir = Dir::open_ambient_dir(root, ambient_authority())
            .with_context(|| format!("opening blob folder {}", root.display()))?;
        let index = SqlitePool::open(&root.join(".wasmfn/index.sqlite"), |c| {
            c.execute_batch(INDEX_SCHEMA)
        })?;
        Ok(Self {
            inner: Arc::new(Inner { dir, index }),
        })
    }
}

impl Inner {
    fn info(&self, key: &str) -> Result<Option<ObjectInfo>, BlobError> {
        Ok(self.index.with(|c| {
            Ok(c.prepare_cached(
                "SELECT size, content_type, etag, last_modified, metadata FROM objects WHERE key = ?1",
            )?
            .query_row([key], |r| row_info(key.to_string(), r))
            .optional()?)
        })?)
    }

    /// A fresh temporary file inside the store.
    fn temp(&self) -> Result<(String, std::fs::File), BlobError> {
        let name = format!(
            ".wasmfn/tmp/{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let file = self
            .dir
            .create(&name)
            .map_err(|e| io_error(&name, e))?
            .into_std();
        Ok((name, file))
    }

    /// Move a written temporary file to `key` and record it in the index.
    fn commit(
        &self,
        temp: &str,
        key: &str,
        size: u64,
        etag: String,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, BlobError> {
        let result = (|| {
            if let Some((parent, _)) = key.rsplit_once('/') {
                self.dir
                    .create_dir_all(parent)
                    .map_err(|e| io_error(key, e))?;
            }
            self.dir
                .rename(temp, &self.dir, key)
                .map_err(|e| io_error(key, e))
        })();
        if let Err(e) = result {
            let _ = self.dir.remove_file(temp);
            return Err(e);
        }
        let info = ObjectInfo {
            key: key.to_string(),
            size,
            content_type: opts.content_type.clone(),
            etag,
            last_modified: now_ms(),
            metadata: opts.metadata.clone(),
        };
        self.index.with(|c| {
            c.prepare_cached(
                "INSERT INTO objects (key, size, content_type, etag, last_modified, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET size = excluded.size,
                   content_type = excluded.content_type, etag = excluded.etag,
                   last_modified = excluded.last_modified, metadata = excluded.metadata",
            )?
            .execute(params![
                key,
                size as i64,
                info.content_type,
                info.etag,
                info.last_modified as i64,
                serde_json::to_string(&info.metadata)?
            ])?;
            Ok(())
        })?;
        Ok(info)
    }

    /// Open `key` positioned at the range start; returns the info and how many bytes to read.
    fn open_range(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, std::fs::File, u64), BlobError> {
        let info = self
            .info(key)?
            .ok_or_else(|| BlobError::NotFound(key.to_string()))?;
        let mut file = self.dir.open(key).map_err(|e| io_error(key, e))?.into_std();
        let (start, end) = match range {
            None => (0, info.size),
            Some(r) => r.bounds(info.size).ok_or(BlobError::InvalidRange)?,
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_error(key, e))?;
        Ok((info, file, end - start))
    }
}

fn row_info(key: String, r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectInfo> {
    let metadata: String = r.get(4)?;
    Ok(ObjectInfo {
        key,
        size: r.get::<_, i64>(0)? as u64,
        content_type: r.get(1)?,
        etag: r.get(2)?,
        last_modified: r.get::<_, i64>(3)? as u64,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
    })
}

fn etag(hash: blake3::Hash) -> String {
    format!("\"{}\"", &hash.to_hex()[..32])
}

impl BlobBackend for FsBlobs {
    fn put<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        opts: &'a PutOptions,
    ) -> BlobFuture<'a, ObjectInfo> {
        let inner = self.inner.clone();
        let (key, opts) = (key.to_string(), opts.clone());
        blocking(move || {
            use std::io::Write as _;
            let (temp, mut file) = inner.temp()?;
            let written = file.write_all(&data).and_then(|_| file.sync_data());
            if let Err(e) = written {
                let _ = inner.dir.remove_file(&temp);
                return Err(io_error(&key, e));
            }
            let tag = etag(blake3::hash(&data));
            inner.commit(&temp, &key, data.len() as u64, tag, &opts)
        })
    }

    fn upload(
        &self,
        key: String,
        opts: PutOptions,
        mut body: BoxReader,
    ) -> BlobFuture<'static, ObjectInfo> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let (temp, file) = inner.temp()?;
            let mut file = tokio::fs::File::from_std(file);
            let mut hasher = blake3::Hasher::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            let copied: std::io::Result<()> = async {
                loop {
                    let n = body.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n]).await?;
                    size += n as u64;
                }
                file.sync_data().await
            }
            .await;
            if let Err(e) = copied {
                let _ = inner.dir.remove_file(&temp);
                return Err(io_error(&key, e));
            }
            drop(file);
            let tag = etag(hasher.finalize());
            blocking(move || inner.commit(&temp, &key, size, tag, &opts)).await
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
        max_bytes: u64,
    ) -> BlobFuture<'a, (ObjectInfo, Bytes)> {
        let inner = self.inner.clone();
        let key = key.to_string();
        blocking(move || {
            let (info, file, len) = inner.open_range(&key, range)?;
            if len > max_bytes {
                return Err(super::too_large(&key, len, max_bytes));
            }
            let mut data = Vec::with_capacity(len as usize);
            file.take(len)
                .read_to_end(&mut data)
                .map_err(|e| io_error(&key, e))?;
            Ok((info, Bytes::from(data)))
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
    ) -> BlobFuture<'a, (ObjectInfo, BoxReader)> {
        let inner = self.inner.clone();
        let key = key.to_string();
        Box::pin(async move {
            let (info, file, len) = blocking(move || inner.open_range(&key, range)).await?;
            let mut file = tokio::fs::File::from_std(file);
            // The std handle's position carries over; re-seek to be explicit about it.
            let pos = file
                .stream_position()
                .await
                .map_err(|e| BlobError::Other(e.to_string()))?;
            file.seek(SeekFrom::Start(pos))
                .await
                .map_err(|e| BlobError::Other(e.to_string()))?;
            Ok((info, Box::new(file.take(len)) as BoxReader))
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BlobFuture<'a, Option<ObjectInfo>> {
        Box::pin(async move { self.inner.info(key) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BlobFuture<'a, ()> {
        let inner = self.inner.clone();
        let key = key.to_string();
        blocking(move || {
            match inner.dir.remove_file(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&key, e)),
            }
            inner.index.with(|c| {
                c.prepare_cached("DELETE FROM objects WHERE key = ?1")?
                    .execute([&key])?;
                Ok(())
            })?;
            Ok(())
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
            let mut objects = self.inner.index.with(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT size, content_type, etag, last_modified, metadata, key FROM objects
                     WHERE key > ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(
                        params![cursor.unwrap_or(""), prefix, limit as i64 + 1],
                        |r| row_info(r.get(5)?, r),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })?;
            let cursor = if objects.len() > limit {
                objects.truncate(limit);
                objects.last().map(|o| o.key.clone())
            } else {
                None
            };
            Ok(ListPage { objects, cursor })
        })
    }
}
