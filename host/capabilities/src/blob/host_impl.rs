//! `wasmfn:platform/blob` for guests: key checks, object events, and the stream plumbing that
//! lets bodies flow without being held whole in guest memory.

use std::sync::Arc;

use wasmfn_host_core::stream::ObjectEventKind;
use wasmfn_host_core::InstanceState;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use super::{
    validate_key, Blob, BlobError, BlobStore, ByteRange, Container, ObjectInfo, ObjectWriter,
    PutOptions,
};
use bindings::wasmfn::platform::blob::{self, Error};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world blob-imports { import wasmfn:platform/blob@0.1.0; }
        ",
        world: "wasmfn:host-bindings/blob-imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasmfn:platform/blob.container": crate::blob::Container,
            "wasmfn:platform/blob.object-writer": crate::blob::ObjectWriter,
        },
    });
}

pub(super) fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    blob::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    Ok(())
}

type BlobResult<T> = wasmtime::Result<Result<T, Error>>;

/// Bytes buffered between the guest's body stream and the upload task.
const UPLOAD_PIPE: usize = 256 * 1024;
/// Bytes a guest may hand to the body stream per write.
const WRITE_BUDGET: usize = 64 * 1024;

fn to_error(e: BlobError) -> Error {
    match e {
        BlobError::NotFound(k) => Error::NotFound(k),
        BlobError::InvalidKey(m) => Error::InvalidKey(m),
        BlobError::InvalidRange => Error::InvalidRange,
        BlobError::Other(m) => Error::Other(m),
    }
}

fn to_info(i: ObjectInfo) -> blob::ObjectInfo {
    blob::ObjectInfo {
        key: i.key,
        size: i.size,
        content_type: i.content_type,
        etag: i.etag,
        last_modified: i.last_modified,
        metadata: i.metadata.into_iter().collect(),
    }
}

fn to_options(o: blob::PutOptions) -> PutOptions {
    PutOptions {
        content_type: o.content_type,
        metadata: o
            .metadata
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    }
}

fn to_range(r: Option<blob::ByteRange>) -> Option<ByteRange> {
    r.map(|r| ByteRange {
        offset: r.offset,
        length: r.length,
    })
}

fn container(
    state: &mut InstanceState,
    c: &Resource<Container>,
) -> wasmtime::Result<Arc<BlobStore>> {
    Ok(state.table().get(c)?.store.clone())
}

/// Validate `key`, or return the interface error from the enclosing host function.
macro_rules! checked_key {
    ($key:expr) => {
        if let Err(e) = validate_key(&$key) {
            return Ok(Err(to_error(e)));
        }
    };
}

/// `call` on container `store`, in a span when tracing.
async fn traced<T>(
    operation: &'static str,
    store: &super::BlobStore,
    call: impl std::future::Future<Output = Result<T, BlobError>>,
) -> Result<T, BlobError> {
    crate::traced::call(operation, "blob", store.name(), call).await
}

impl blob::Host for InstanceState {}

impl blob::HostContainer for InstanceState {
    async fn open(&mut self, name: String) -> BlobResult<Resource<Container>> {
        match crate::stores::granted::<Blob>(self, &name) {
            Ok(store) => Ok(Ok(self.table().push(Container { store })?)),
            Err(()) => Ok(Err(Error::NoSuchContainer(name))),
        }
    }

    async fn put(
        &mut self,
        c: Resource<Container>,
        key: String,
        data: Vec<u8>,
        options: blob::PutOptions,
    ) -> BlobResult<blob::ObjectInfo> {
        checked_key!(key);
        let store = container(self, &c)?;
        let opts = to_options(options);
        Ok(
            match traced(
                "blob put",
                &store,
                store.backend().put(&key, data.into(), &opts),
            )
            .await
            {
                Ok(info) => {
                    store.record(ObjectEventKind::Created, &key, Some(&info));
                    Ok(to_info(info))
                }
                Err(e) => Err(to_error(e)),
            },
        )
    }

    async fn get(
        &mut self,
        c: Resource<Container>,
        key: String,
        range: Option<blob::ByteRange>,
    ) -> BlobResult<(blob::ObjectInfo, Vec<u8>)> {
        checked_key!(key);
        let max_bytes = self.memory_limit();
        let store = container(self, &c)?;
        Ok(traced(
            "blob get",
            &store,
            store.backend().get(&key, to_range(range), max_bytes),
        )
        .await
        .map(|(info, data)| (to_info(info), data.to_vec()))
        .map_err(to_error))
    }

    async fn read(
        &mut self,
        c: Resource<Container>,
        key: String,
        range: Option<blob::ByteRange>,
    ) -> BlobResult<(blob::ObjectInfo, Resource<DynInputStream>)> {
        checked_key!(key);
        let store = container(self, &c)?;
        match traced(
            "blob read",
            &store,
            store.backend().read(&key, to_range(range)),
        )
        .await
        {
            Ok((info, reader)) => {
                let stream: DynInputStream = Box::new(AsyncReadStream::new(reader));
                Ok(Ok((to_info(info), self.table().push(stream)?)))
            }
            Err(e) => Ok(Err(to_error(e))),
        }
    }

    async fn write(
        &mut self,
        c: Resource<Container>,
        key: String,
        options: blob::PutOptions,
    ) -> BlobResult<Resource<ObjectWriter>> {
        checked_key!(key);
        let store = container(self, &c)?;
        let (guest_side, upload_side) = tokio::io::duplex(UPLOAD_PIPE);
        let upload = tokio::spawn(store.backend().upload(
            key.clone(),
            to_options(options),
            Box::new(upload_side),
        ));
        Ok(Ok(self.table().push(ObjectWriter {
            store,
            key,
            body: Some(guest_side),
            body_handle: None,
            upload: Some(upload),
        })?))
    }

    async fn head(
        &mut self,
        c: Resource<Container>,
        key: String,
    ) -> BlobResult<Option<blob::ObjectInfo>> {
        checked_key!(key);
        let store = container(self, &c)?;
        Ok(traced("blob head", &store, store.backend().head(&key))
            .await
            .map(|i| i.map(to_info))
            .map_err(to_error))
    }

    async fn delete(&mut self, c: Resource<Container>, key: String) -> BlobResult<()> {
        checked_key!(key);
        let store = container(self, &c)?;
        Ok(
            match traced("blob delete", &store, store.backend().delete(&key)).await {
                Ok(()) => {
                    store.record(ObjectEventKind::Deleted, &key, None);
                    Ok(())
                }
                Err(e) => Err(to_error(e)),
            },
        )
    }

    async fn list_objects(
        &mut self,
        c: Resource<Container>,
        prefix: Option<String>,
        cursor: Option<String>,
        limit: u32,
    ) -> BlobResult<blob::ListPage> {
        let store = container(self, &c)?;
        let listed =
            store
                .backend()
                .list(prefix.as_deref().unwrap_or(""), cursor.as_deref(), limit);
        Ok(traced("blob list", &store, listed)
            .await
            .map(|p| blob::ListPage {
                objects: p.objects.into_iter().map(to_info).collect(),
                cursor: p.cursor,
            })
            .map_err(to_error))
    }

    async fn drop(&mut self, c: Resource<Container>) -> wasmtime::Result<()> {
        self.table().delete(c)?;
        Ok(())
    }
}

impl blob::HostObjectWriter for InstanceState {
    async fn body(
        &mut self,
        w: Resource<ObjectWriter>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let Some(pipe) = self.table().get_mut(&w)?.body.take() else {
            return Ok(Err(()));
        };
        let stream: DynOutputStream = Box::new(AsyncWriteStream::new(WRITE_BUDGET, pipe));
        let handle = self.table().push(stream)?;
        self.table().get_mut(&w)?.body_handle = Some(handle.rep());
        Ok(Ok(handle))
    }

    async fn finish(&mut self, w: Resource<ObjectWriter>) -> BlobResult<blob::ObjectInfo> {
        let mut writer = self.table().delete(w)?;
        if let Some(rep) = writer.body_handle {
            let body = Resource::<DynOutputStream>::new_borrow(rep);
            if self.table().get(&body).is_ok() {
                return Ok(Err(Error::Other(
                    "drop the body stream (after flushing it) before calling finish".into(),
                )));
            }
        }
        // A body never taken, or already dropped: the upload sees the end of its input.
        drop(writer.body.take());
        let upload = writer
            .upload
            .take()
            .expect("upload task present until finish");
        let uploaded = async {
            match upload.await {
                Ok(r) => r,
                Err(e) => Err(BlobError::Other(format!("upload task failed: {e}"))),
            }
        };
        let outcome = traced("blob write", &writer.store, uploaded).await;
        Ok(match outcome {
            Ok(info) => {
                writer
                    .store
                    .record(ObjectEventKind::Created, &writer.key, Some(&info));
                Ok(to_info(info))
            }
            Err(e) => Err(to_error(e)),
        })
    }

    async fn drop(&mut self, w: Resource<ObjectWriter>) -> wasmtime::Result<()> {
        // Dropping the writer aborts its upload (see `ObjectWriter`'s Drop).
        self.table().delete(w)?;
        Ok(())
    }
}
