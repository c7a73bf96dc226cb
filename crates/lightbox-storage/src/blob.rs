//! The BlobStore interface (frames, metadata documents, job outputs) and its implementation over
//! the `object_store` crate, which serves both the local filesystem and S3-compatible stores.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::StorageError;

/// Immutable-object storage addressed by `/`-separated keys.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes `data` under `key`, replacing any previous object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;

    /// Writes `data` under `key` only if no object exists there. Returns `false` if one did
    /// (the existing object is left untouched). Atomic across processes.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StorageError>;

    /// The whole object, or `None` if absent.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;

    /// Bytes `range` of the object, or `None` if absent.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StorageError>;

    /// The object as a stream of chunks, or `None` if absent.
    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, StorageError>>>, StorageError>;

    /// Size in bytes, or `None` if absent.
    async fn size(&self, key: &str) -> Result<Option<u64>, StorageError>;

    /// Removes the object; removing an absent object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Keys under `prefix` (recursive), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
}

/// A BlobStore over any `object_store` backend.
#[derive(Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
}

impl ObjectBlobStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Blobs as files under `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Backend(format!("cannot create blob directory: {e}")))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs)))
    }
}

fn path(key: &str) -> Result<Path, StorageError> {
    Path::parse(key).map_err(|e| StorageError::Backend(format!("invalid blob key: {e}")))
}

fn absent<T>(r: Result<T, object_store::Error>) -> Result<Option<T>, StorageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.store.put(&path(key)?, PutPayload::from(data)).await?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StorageError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path(key)?, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let Some(r) = absent(self.store.get(&path(key)?).await)? else {
            return Ok(None);
        };
        Ok(Some(r.bytes().await?))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StorageError> {
        absent(self.store.get_range(&path(key)?, range).await)
    }

    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, StorageError>>>, StorageError> {
        let Some(r) = absent(self.store.get(&path(key)?).await)? else {
            return Ok(None);
        };
        Ok(Some(r.into_stream().map_err(StorageError::from).boxed()))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        Ok(absent(self.store.head(&path(key)?).await)?.map(|m| m.size))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = path(prefix)?;
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }
}
