//! Blob storage capability: `wasmfn:platform/blob` over named stores (buckets).
//!
//! Each store is a [`BlobBackend`]: [`FsBlobs`] (embedded: a folder opened through cap-std, so
//! no key can reach outside it, with an SQLite index of sizes, content types and metadata) or
//! [`S3Blobs`] (any S3-compatible service through `object_store`). Bodies stream both ways:
//! guests read through `wasi:io` input streams and upload through output streams, so an object
//! never has to fit in guest memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::stores::{now_ms, Bindings, ChangeSink, StoreApp, StoreCapability, StoreDecls};
use wasmfn_host_core::stream::{ObjectEvent, ObjectEventKind, StreamEvent};

mod fs;
mod host_impl;
mod manifest;
#[cfg(feature = "blob-s3")]
mod s3;

pub use self::fs::FsBlobs;
#[cfg(feature = "blob-s3")]
pub use self::s3::{S3Blobs, S3Config};

/// The blob store kind (see [`crate::stores::StoreKind`]).
pub struct Blob;

/// The blob capability.
pub type BlobCapability = StoreCapability<Blob>;
/// The blob stores of one app ([`StoreApp::store`] gives one by binding name).
pub type BlobApp = StoreApp<Blob>;
/// The blob stores a function may open (`blob = [...]`).
pub type BlobBindings = Bindings<Blob>;
/// The `[blob.NAME]` tables of a manifest.
pub type BlobStores = StoreDecls<Blob>;

/// What is known about a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type given at upload.
    pub content_type: Option<String>,
    /// Changes whenever the content changes.
    pub etag: String,
    /// Unix milliseconds.
    pub last_modified: u64,
    /// Custom metadata given at upload, sorted by name.
    pub metadata: BTreeMap<String, String>,
}

/// Content type and metadata of an upload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// MIME type.
    pub content_type: Option<String>,
    /// Custom metadata (names are lower-cased, as S3 does).
    pub metadata: BTreeMap<String, String>,
}

/// `offset` and at most `length` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub offset: u64,
    /// How many bytes at most; `None`: to the end.
    pub length: Option<u64>,
}

impl ByteRange {
    /// The `[start, end)` bounds within an object of `size` bytes, or `None` when the range
    /// starts past the end.
    pub fn bounds(&self, size: u64) -> Option<(u64, u64)> {
        if self.offset > size || (self.offset == size && size > 0) {
            return None;
        }
        let end = match self.length {
            Some(n) => self.offset.saturating_add(n).min(size),
            None => size,
        };
        Some((self.offset, end))
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Objects in key order.
    pub objects: Vec<ObjectInfo>,
    /// Where the next page starts; `None` at the end.
    pub cursor: Option<String>,
}

/// Why a blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// No such object.
    NotFound(String),
    /// The key is not acceptable (and why).
    InvalidKey(String),
    /// The range starts past the end.
    InvalidRange,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for BlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobError::NotFound(k) => write!(f, "object `{k}` not found"),
            BlobError::InvalidKey(m) => write!(f, "invalid key: {m}"),
            BlobError::InvalidRange => f.write_str("the range starts past the end of the object"),
            BlobError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BlobError {}

impl From<anyhow::Error> for BlobError {
    fn from(e: anyhow::Error) -> Self {
        BlobError::Other(format!("{e:#}"))
    }
}

/// A body being read or written.
pub type BoxReader = Box<dyn AsyncRead + Send + Unpin + 'static>;

/// A boxed future of a blob operation.
pub type BlobFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BlobError>> + Send + 'a>>;

/// A blob storage backend. Keys reaching a backend have passed [`validate_key`].
pub trait BlobBackend: Send + Sync {
    /// Store `data` under `key`.
    fn put<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        opts: &'a PutOptions,
    ) -> BlobFuture<'a, ObjectInfo>;
    /// Store the whole of `body` under `key`; the object appears once `body` ends.
    fn upload(
        &self,
        key: String,
        opts: PutOptions,
        body: BoxReader,
    ) -> BlobFuture<'static, ObjectInfo>;
    /// Read an object (or a range of it) whole; more than `max_bytes` is refused with
    /// [`too_large`] before it is read.
    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
        max_bytes: u64,
    ) -> BlobFuture<'a, (ObjectInfo, Bytes)>;
    /// Read an object (or a range of it) as a stream.
    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
    ) -> BlobFuture<'a, (ObjectInfo, BoxReader)>;
    /// Metadata only.
    fn head<'a>(&'a self, key: &'a str) -> BlobFuture<'a, Option<ObjectInfo>>;
    /// Delete; absent objects are fine.
    fn delete<'a>(&'a self, key: &'a str) -> BlobFuture<'a, ()>;
    /// Objects whose key starts with `prefix`, after `cursor`, in key order.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BlobFuture<'a, ListPage>;
}

/// The longest key accepted (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Keys are `/`-separated relative paths: no empty, `.` or `..` segments, no leading `/`, no
/// backslashes or NUL, nothing under the reserved `.wasmfn/`. The same rules hold on every
/// backend so that a function behaves alike on the embedded store and on S3.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let bad = |why: &str| {
        Err(BlobError::InvalidKey(format!(
            "`{}`: {why}",
            key.escape_debug()
        )))
    };
    if key.is_empty() {
        return bad("keys must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("keys are at most 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("keys are relative: remove the leading `/`");
    }
    if key.contains('\0') || key.contains('\\') {
        return bad("keys must not contain NUL or `\\`");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("empty path segment (`//` or a trailing `/`)"),
            "." | ".." => return bad("`.` and `..` segments are not allowed"),
            s if s.len() > 255 => return bad("a path segment is longer than 255 bytes"),
            _ => {}
        }
    }
    if key == ".wasmfn" || key.starts_with(".wasmfn/") {
        return bad("`.wasmfn/` is reserved for the store's own index");
    }
    Ok(())
}

/// Where a blob binding lives (`[blob.NAME]` in the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobBackendConfig {
    /// A local folder (default `STATE/blob/NAME`).
    Fs {
        /// The folder; `None` picks the default under the state folder.
        path: Option<std::path::PathBuf>,
    },
    /// An S3-compatible bucket.
    #[cfg(feature = "blob-s3")]
    S3(S3Config),
}

/// A named blob store: a backend plus optional object events.
pub struct BlobStore {
    name: String,
    backend: Arc<dyn BlobBackend>,
    changes: Option<ChangeSink>,
}

impl BlobStore {
    /// The binding name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn BlobBackend> {
        &self.backend
    }

    /// Record an object event when the binding has a stream.
    pub(crate) fn record(&self, kind: ObjectEventKind, key: &str, info: Option<&ObjectInfo>) {
        let Some(sink) = &self.changes else { return };
        sink.emit(vec![StreamEvent::Object(ObjectEvent {
            source: self.name.clone(),
            sequence: String::new(),
            key: key.to_string(),
            kind,
            size: info.map_or(0, |i| i.size),
            content_type: info.and_then(|i| i.content_type.clone()),
            etag: info.map(|i| i.etag.clone()),
            timestamp: now_ms(),
        })]);
    }
}

/// Resource behind a guest's `blob.container`.
pub struct Container {
    pub(crate) store: Arc<BlobStore>,
}

/// Resource behind a guest's `blob.object-writer`: the upload task fed by the body stream.
pub struct ObjectWriter {
    pub(crate) store: Arc<BlobStore>,
    pub(crate) key: String,
    /// The body stream, until the guest takes it.
    pub(crate) body: Option<tokio::io::DuplexStream>,
    /// The guest's handle to the body, to check it was dropped before `finish`.
    pub(crate) body_handle: Option<u32>,
    pub(crate) upload: Option<tokio::task::JoinHandle<Result<ObjectInfo, BlobError>>>,
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // Dropped without `finish`: the upload is discarded.
        if let Some(task) = self.upload.take() {
            task.abort();
        }
    }
}

/// The error for a whole-object read of `len` bytes past `max` (the guest's memory limit:
/// it could never receive them, and reading them would only cost the host memory).
pub fn too_large(key: &str, len: u64, max: u64) -> BlobError {
    BlobError::Other(format!(
        "object `{key}` ({len} bytes) is larger than `get` may return to this function ({} MiB, \
         its memory limit); read it as a stream with `read`, or a byte range at a time",
        max >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["a", "a/b.png", "avatars/1", "x..y", ".hidden"] {
            validate_key(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "a/",
            "a\\b",
            ".wasmfn/index",
            "./a",
        ] {
            assert!(
                matches!(validate_key(bad), Err(BlobError::InvalidKey(_))),
                "{bad}"
            );
        }
        assert!(validate_key(&"k".repeat(1025)).is_err());
    }

    #[test]
    fn ranges() {
        let r = |offset, length| ByteRange { offset, length };
        assert_eq!(r(0, None).bounds(10), Some((0, 10)));
        assert_eq!(r(2, Some(3)).bounds(10), Some((2, 5)));
        assert_eq!(r(8, Some(30)).bounds(10), Some((8, 10)));
        assert_eq!(r(10, None).bounds(10), None);
        assert_eq!(r(0, None).bounds(0), Some((0, 0)));
    }
}
