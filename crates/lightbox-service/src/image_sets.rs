//! Image set reads: GetImageSet, GetImageSetMetadata, GetImageFrame, SearchImageSets and
//! ListImageSetVersions, and the touches that keep an image set in the Frequent Access tier.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use lightbox_domain::{DatastoreId, ImageSet, ImageSetId, ImageSetState, StorageTier};
use lightbox_storage::{
    FrameRecord, ImageSetSearch, ImageSetSummary, ImageSetVersion, Page, StorageError,
};

use crate::{Service, ServiceError, datastores, token};

/// A touch within this long of the recorded one is not written (storage tiers are counted in
/// days; one write a minute per image set keeps frame reads from writing on every request).
pub const TOUCH_GRANULARITY: Duration = Duration::from_secs(60);

/// Stored bytes, streamed from the blob store.
pub type BlobStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Blobs up to this size are read in one piece (one blocking read on a local disk instead of
/// one per 8 KiB chunk); larger ones are streamed.
const READ_WHOLE_UP_TO: u64 = 16 << 20;

/// One version of an image set as GetImageSet shows it.
#[derive(Debug, Clone)]
pub struct ImageSetView {
    /// The image set's latest-version record (creation and access times, tier).
    pub image_set: ImageSet,
    /// The version asked for (the latest one by default).
    pub version: ImageSetVersion,
    pub storage_tier: StorageTier,
}

/// A stored frame and its bytes.
pub struct FrameRead {
    pub frame: FrameRecord,
    pub body: BlobStream,
}

/// A page of search results, each with its storage tier.
pub struct SearchPage {
    pub items: Vec<(ImageSetSummary, StorageTier)>,
    pub next_token: Option<String>,
}

fn image_set_not_found(id: &ImageSetId) -> ServiceError {
    ServiceError::NotFound(format!("Image set {id} does not exist"))
}

/// Reads of a DELETED image set's documents and frames.
fn deleted(id: &ImageSetId) -> ServiceError {
    ServiceError::NotFound(format!(
        "Image set {id} is DELETED: its metadata and frames are no longer stored"
    ))
}

fn version_not_found(id: &ImageSetId, version: &str) -> ServiceError {
    ServiceError::NotFound(format!(
        "Version {version} of image set {id} does not exist"
    ))
}

/// A `version` query value (digits, per the model) as a number.
fn parse_version(id: &ImageSetId, version: &str) -> Result<i64, ServiceError> {
    version
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| version_not_found(id, version))
}

fn invalid_cursor(e: StorageError) -> ServiceError {
    match e {
        StorageError::InvalidCursor => token::invalid(),
        other => other.into(),
    }
}

impl Service {
    /// The image set record, or NotFound naming the image set (or its data store).
    pub(crate) async fn image_set_or_not_found(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
    ) -> Result<ImageSet, ServiceError> {
        match self.catalog.get_image_set(datastore_id, id).await? {
            Some(s) => Ok(s),
            None => Err(self.missing(datastore_id, id).await),
        }
    }

    /// The error for an image set that is not there: its data store's, if that is missing too.
    pub(crate) async fn missing(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
    ) -> ServiceError {
        match self.catalog.get_datastore(datastore_id).await {
            Ok(None) => datastores::not_found(datastore_id),
            Ok(Some(_)) => image_set_not_found(id),
            Err(e) => e.into(),
        }
    }

    /// One version of an image set as recorded, with the image set's record.
    async fn image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: Option<&str>,
    ) -> Result<(ImageSet, ImageSetVersion), ServiceError> {
        let image_set = self.image_set_or_not_found(datastore_id, id).await?;
        let number = match version {
            Some(v) => parse_version(id, v)?,
            None => image_set.version,
        };
        let found = self
            .catalog
            .get_image_set_version(datastore_id, id, number)
            .await?;
        let Some(v) = found else {
            return Err(version_not_found(id, &number.to_string()));
        };
        Ok((image_set, v))
    }

    /// Records a touch of an image set (storage tiers). Failing to record it does not fail the
    /// read that touched it.
    pub(crate) async fn touch(&self, image_set: &ImageSet) {
        let now = self.clock.now();
        if now.0 - image_set.last_accessed_at.0 < TOUCH_GRANULARITY.as_millis() as i64 {
            return;
        }
        if let Err(e) = self
            .catalog
            .touch_image_set(
                &image_set.datastore_id,
                &image_set.id,
                now,
                TOUCH_GRANULARITY,
            )
            .await
        {
            tracing::warn!(error = %e, "could not record an image set access");
        }
    }

    /// A blob as a stream: read whole when small, streamed otherwise.
    pub(crate) async fn read_blob(
        &self,
        key: &str,
        size: Option<u64>,
    ) -> Result<Option<BlobStream>, ServiceError> {
        if size.is_some_and(|n| n <= READ_WHOLE_UP_TO) {
            let bytes = self.blobs.get(key).await?;
            return Ok(bytes.map(|b| futures::stream::once(async move { Ok(b) }).boxed()));
        }
        Ok(self.blobs.get_stream(key).await?)
    }

    fn tier(&self, image_set: &ImageSet) -> StorageTier {
        StorageTier::at(image_set.last_accessed_at, self.clock.now())
    }

    /// GetImageSet: a version's properties (the latest by default).
    pub async fn get_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: Option<&str>,
    ) -> Result<ImageSetView, ServiceError> {
        let (image_set, version) = self.image_set_version(datastore_id, id, version).await?;
        let storage_tier = self.tier(&image_set);
        Ok(ImageSetView {
            image_set,
            version,
            storage_tier,
        })
    }

    /// GetImageSetMetadata: a version's gzip metadata document, as stored, and its size. A
    /// touch.
    pub async fn get_image_set_metadata(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: Option<&str>,
    ) -> Result<(BlobStream, Option<u64>), ServiceError> {
        let (image_set, v) = self.image_set_version(datastore_id, id, version).await?;
        if image_set.state == ImageSetState::Deleted {
            return Err(deleted(id));
        }
        let Some(key) = v.metadata_key.as_deref() else {
            return Err(ServiceError::NotFound(format!(
                "Version {} of image set {id} has no metadata",
                v.version
            )));
        };
        let Some(body) = self.read_blob(key, v.metadata_size).await? else {
            return Err(ServiceError::Internal(format!(
                "metadata blob of image set {id} version {} is missing",
                v.version
            )));
        };
        self.touch(&image_set).await;
        Ok((body, v.metadata_size))
    }

    /// GetImageFrame: a frame live in the image set's latest version, as stored. A touch.
    pub async fn get_image_frame(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        frame_id: &str,
    ) -> Result<FrameRead, ServiceError> {
        let Some((image_set, frame)) = self
            .catalog
            .get_image_frame(datastore_id, id, frame_id)
            .await?
        else {
            return Err(self.missing(datastore_id, id).await);
        };
        if image_set.state == ImageSetState::Deleted {
            return Err(deleted(id));
        }
        let Some(frame) = frame else {
            return Err(ServiceError::NotFound(format!(
                "Image frame {frame_id} is not part of the latest version of image set {id}"
            )));
        };
        let Some(body) = self.read_blob(&frame.blob_key, Some(frame.size)).await? else {
            return Err(ServiceError::Internal(format!(
                "frame blob {frame_id} of image set {id} is missing"
            )));
        };
        self.touch(&image_set).await;
        Ok(FrameRead { frame, body })
    }

    /// SearchImageSets: one page of a data store's live image sets.
    pub async fn search_image_sets(
        &self,
        datastore_id: &DatastoreId,
        search: &ImageSetSearch,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Result<SearchPage, ServiceError> {
        const LISTING: &str = "SearchImageSets";
        if self.catalog.get_datastore(datastore_id).await?.is_none() {
            return Err(datastores::not_found(datastore_id));
        }
        // The token is bound to the whole query: filters, sort field and order.
        let filters = format!("{datastore_id}/{search:?}");
        let cursor = next_token
            .map(|t| self.tokens.open(LISTING, &filters, t))
            .transpose()?;
        let Page { items, next } = self
            .catalog
            .search_image_sets(datastore_id, search, cursor.as_ref(), max_results)
            .await
            .map_err(invalid_cursor)?;
        let items = items
            .into_iter()
            .map(|s| {
                let tier = self.tier(&s.image_set);
                (s, tier)
            })
            .collect();
        Ok(SearchPage {
            items,
            next_token: next.map(|c| self.tokens.seal(LISTING, &filters, &c)),
        })
    }

    /// ListImageSetVersions: one page of an image set's versions, newest first, with the image
    /// set's creation time (every version shows it as `createdAt`).
    pub async fn list_image_set_versions(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Result<(ImageSet, Vec<ImageSetVersion>, Option<String>), ServiceError> {
        const LISTING: &str = "ListImageSetVersions";
        let image_set = self.image_set_or_not_found(datastore_id, id).await?;
        let filters = format!("{datastore_id}/{id}");
        let cursor = next_token
            .map(|t| self.tokens.open(LISTING, &filters, t))
            .transpose()?;
        let Page { items, next } = self
            .catalog
            .list_image_set_versions(datastore_id, id, cursor.as_ref(), max_results)
            .await
            .map_err(invalid_cursor)?;
        let token = next.map(|c| self.tokens.seal(LISTING, &filters, &c));
        Ok((image_set, items, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_positive_numbers() {
        let id = ImageSetId::generate();
        assert_eq!(parse_version(&id, "3").unwrap(), 3);
        for bad in ["0", "99999999999999999999999", ""] {
            assert!(matches!(
                parse_version(&id, bad),
                Err(ServiceError::NotFound(_))
            ));
        }
    }
}
