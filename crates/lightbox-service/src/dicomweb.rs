//! DICOMweb WADO-RS reads (#8, notes §11): series and instance metadata as DICOM JSON, frames
//! (as stored, or decoded to Explicit VR Little Endian) and bulk data, addressed by study,
//! series and instance UIDs.
//!
//! A request reads the series' live primary image set (notes §3.4), or the image set named by
//! `?imageSetId=`, which must hold that study and series. DELETED image sets are not found; a
//! LOCKED one serves its latest completed document. Parsed documents are kept in a small
//! bounded cache keyed by their blob key (a key's document never changes), so frame-by-frame
//! requests do not inflate the document again.
//!
//! Error messages never contain UIDs or other patient data: they say "the series", "the
//! instance", "frame 7".

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use futures::StreamExt;
use lightbox_dicom::{DicomJsonOptions, MetadataDocument};
use lightbox_domain::{DatastoreId, ImageSet, ImageSetId, ImageSetState};
use lightbox_storage::FrameRecord;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::image_sets::BlobStream;
use crate::{Service, ServiceError, datastores};

/// Parsed documents kept at most.
const CACHE_ENTRIES: usize = 64;
/// Total compressed size of the cached documents (a parsed document takes roughly 10 to 30
/// times its gzip size).
const CACHE_BYTES: u64 = 64 << 20;
/// Frame records looked up at once.
const FRAME_LOOKUPS: usize = 8;

/// Which series a WADO-RS request reads: its UIDs as in the path, and `?imageSetId=`.
#[derive(Debug, Clone)]
pub struct SeriesRef {
    pub study: String,
    pub series: String,
    pub image_set_id: Option<String>,
}

/// The image pixel attributes of an instance needed to decode its stored frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelAttributes {
    pub rows: u16,
    pub columns: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub pixel_representation: u16,
    pub planar_configuration: u16,
    pub photometric_interpretation: String,
    pub sop_class_uid: String,
}

/// The frames a GetDICOMInstanceFrames request asked for, in the order asked.
#[derive(Debug, Clone)]
pub struct InstanceFrames {
    /// The instance's StoredTransferSyntaxUID.
    pub stored_transfer_syntax: String,
    pub pixel: Option<PixelAttributes>,
    /// `(frame number from 1, stored frame)`.
    pub frames: Vec<(u32, FrameRecord)>,
}

impl InstanceFrames {
    /// Whether the stored frames can be decoded to Explicit VR Little Endian samples that
    /// match the instance's attributes (same size, same photometric interpretation).
    pub fn can_transcode(&self) -> bool {
        let Some(px) = &self.pixel else { return false };
        can_transcode(&self.stored_transfer_syntax, px)
    }
}

fn can_transcode(ts: &str, px: &PixelAttributes) -> bool {
    let Some(codec) = ts.strip_prefix("1.2.840.10008.1.2") else {
        return false;
    };
    if !matches!(px.bits_allocated, 1 | 8 | 16 | 32) || !(1..=4).contains(&px.samples_per_pixel) {
        return false;
    }
    let colour = px.samples_per_pixel > 1;
    let pi = px.photometric_interpretation.as_str();
    match codec {
        // Native: nothing to do (already Explicit VR Little Endian samples).
        "" | ".1" => true,
        ".5" | ".4.57" | ".4.70" | ".4.80" | ".4.81" => pi != "YBR_FULL_422",
        // Lossy JPEG decoders turn YBR into RGB: the samples would not match the attributes.
        ".4.50" | ".4.51" => !(colour && pi.starts_with("YBR")),
        // J2K / HTJ2K with a multi-component transform come back as RGB.
        ".4.90" | ".4.91" | ".4.201" | ".4.202" | ".4.203" => {
            !matches!(pi, "YBR_RCT" | "YBR_ICT" | "YBR_FULL_422")
        }
        _ => false,
    }
}

/// A bounded cache of parsed metadata documents by blob key.
#[derive(Default)]
pub(crate) struct DocumentCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: Vec<CacheEntry>,
    tick: u64,
}

struct CacheEntry {
    key: String,
    cell: Arc<OnceCell<Arc<MetadataDocument>>>,
    /// Compressed size once loaded.
    weight: u64,
    used: u64,
}

impl DocumentCache {
    /// The cell for `key` (new and empty if not cached), marking it used.
    fn cell(&self, key: &str) -> Arc<OnceCell<Arc<MetadataDocument>>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(e) = inner.entries.iter_mut().find(|e| e.key == key) {
            e.used = tick;
            return e.cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        inner.entries.push(CacheEntry {
            key: key.to_string(),
            cell: cell.clone(),
            weight: 0,
            used: tick,
        });
        inner.evict();
        cell
    }

    /// Records the size of a loaded document and evicts what no longer fits.
    fn loaded(&self, key: &str, weight: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.entries.iter_mut().find(|e| e.key == key) {
            e.weight = weight;
        }
        inner.evict();
    }

    /// Forgets a key whose load failed (the next request tries again).
    fn forget(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .retain(|e| e.key != key || e.cell.initialized());
    }
}

impl CacheInner {
    fn evict(&mut self) {
        loop {
            let total: u64 = self.entries.iter().map(|e| e.weight).sum();
            if self.entries.len() <= CACHE_ENTRIES && total <= CACHE_BYTES {
                return;
            }
            // The least recently used entry, but never the only one.
            if self.entries.len() <= 1 {
                return;
            }
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                return;
            };
            self.entries.swap_remove(oldest);
        }
    }
}

/// An image set resolved for a WADO-RS request and its document.
pub(crate) struct Resolved {
    pub(crate) image_set: ImageSet,
    pub(crate) doc: Arc<MetadataDocument>,
}

fn series_not_found() -> ServiceError {
    ServiceError::NotFound("The series does not exist in this data store".into())
}

pub(crate) fn instance_not_found() -> ServiceError {
    ServiceError::NotFound("The instance does not exist in the series".into())
}

/// The value of `keyword` for an instance: the instance level, else the series, study and
/// patient levels.
fn attribute<'a>(
    doc: &'a MetadataDocument,
    series: &str,
    sop: &str,
    keyword: &str,
) -> Option<&'a Value> {
    let root = doc.as_json();
    let study = root.get("Study");
    let series_obj = study
        .and_then(|s| s.get("Series"))
        .and_then(|s| s.get(series));
    let instance = series_obj
        .and_then(|s| s.get("Instances"))
        .and_then(|i| i.get(sop));
    [instance, series_obj, study, root.get("Patient")]
        .into_iter()
        .flatten()
        .find_map(|level| level.get("DICOM")?.get(keyword))
        .filter(|v| !v.is_null())
}

/// An integer attribute value: a number, a numeric string (IS), or the first of an array.
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim_matches([' ', '\0']).parse().ok(),
        Value::Array(a) => as_int(a.first()?),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim_matches([' ', '\0']).to_string()),
        Value::Array(a) => as_text(a.first()?),
        _ => None,
    }
}

pub(crate) fn pixel_attributes(
    doc: &MetadataDocument,
    series: &str,
    sop: &str,
) -> Option<PixelAttributes> {
    let int = |k: &str| attribute(doc, series, sop, k).and_then(as_int);
    let small = |k: &str| int(k).and_then(|v| u16::try_from(v).ok());
    let rows = small("Rows")?;
    let columns = small("Columns")?;
    let bits_allocated = small("BitsAllocated")?;
    Some(PixelAttributes {
        rows,
        columns,
        samples_per_pixel: small("SamplesPerPixel").unwrap_or(1),
        bits_allocated,
        bits_stored: small("BitsStored").unwrap_or(bits_allocated),
        pixel_representation: small("PixelRepresentation").unwrap_or(0),
        planar_configuration: small("PlanarConfiguration").unwrap_or(0),
        photometric_interpretation: attribute(doc, series, sop, "PhotometricInterpretation")
            .and_then(as_text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "MONOCHROME2".into()),
        sop_class_uid: attribute(doc, series, sop, "SOPClassUID")
            .and_then(as_text)
            .unwrap_or_default(),
    })
}

/// The instance object of a series in a document.
pub(crate) fn instance_object<'a>(
    doc: &'a MetadataDocument,
    series: &str,
    sop: &str,
) -> Option<&'a Map<String, Value>> {
    doc.as_json()
        .get("Study")?
        .get("Series")?
        .get(series)?
        .get("Instances")?
        .get(sop)?
        .as_object()
}

/// The IDs of an instance's stored frames in order (empty where a frame has none).
pub(crate) fn frame_ids(instance: &Map<String, Value>) -> Vec<String> {
    instance
        .get("ImageFrames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|f| {
                    f.get("ID")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An instance's StoredTransferSyntaxUID (HTJ2K when absent or empty).
pub(crate) fn stored_transfer_syntax(instance: &Map<String, Value>) -> String {
    instance
        .get("StoredTransferSyntaxUID")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("1.2.840.10008.1.2.4.202")
        .to_string()
}

/// Parses a frame list (`1,3,2`): numbers from 1, no duplicates, in the order given.
pub fn parse_frame_list(list: &str) -> Result<Vec<u32>, ServiceError> {
    let invalid = || {
        ServiceError::Validation(
            "The frame list must be comma-separated frame numbers starting at 1".into(),
        )
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for item in list.split(',') {
        if item.is_empty() || item.len() > 9 || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let n: u32 = item.parse().map_err(|_| invalid())?;
        if n == 0 {
            return Err(ServiceError::Validation(
                "Frame numbers start at 1: frame 0 does not exist".into(),
            ));
        }
        if !seen.insert(n) {
            return Err(ServiceError::Validation(format!(
                "Frame {n} is listed more than once"
            )));
        }
        out.push(n);
    }
    Ok(out)
}

impl Service {
    /// The document stored under `key`, from the cache or the blob store.
    pub(crate) async fn document(&self, key: &str) -> Result<Arc<MetadataDocument>, ServiceError> {
        let cell = self.documents.cell(key);
        let result = cell
            .get_or_try_init(|| async {
                let Some(bytes) = self.blobs.get(key).await? else {
                    return Err(ServiceError::Internal(
                        "an image set's metadata document is missing".into(),
                    ));
                };
                let weight = bytes.len() as u64;
                let doc = tokio::task::spawn_blocking(move || MetadataDocument::from_gzip(&bytes))
                    .await
                    .map_err(|e| ServiceError::Internal(format!("document task: {e}")))?
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                self.documents.loaded(key, weight);
                Ok(Arc::new(doc))
            })
            .await;
        match result {
            Ok(doc) => Ok(doc.clone()),
            Err(e) => {
                self.documents.forget(key);
                Err(e)
            }
        }
    }

    /// The image set a WADO-RS request reads and its latest completed document.
    pub(crate) async fn resolve_series(
        &self,
        datastore_id: &DatastoreId,
        target: &SeriesRef,
    ) -> Result<Resolved, ServiceError> {
        let (image_set, key) = match &target.image_set_id {
            None => {
                let found = self
                    .catalog
                    .find_primary_image_set(datastore_id, &target.study, &target.series)
                    .await?;
                let Some(primary) = found else {
                    if self.catalog.get_datastore(datastore_id).await?.is_none() {
                        return Err(datastores::not_found(datastore_id));
                    }
                    return Err(series_not_found());
                };
                (primary.image_set, primary.metadata_key)
            }
            Some(id) => {
                let id = ImageSetId::parse(id).map_err(|_| {
                    ServiceError::Validation("imageSetId is not a valid image set ID".into())
                })?;
                let image_set = self.image_set_or_not_found(datastore_id, &id).await?;
                if image_set.state == ImageSetState::Deleted {
                    return Err(ServiceError::NotFound(format!(
                        "Image set {id} is DELETED: its metadata and frames are no longer stored"
                    )));
                }
                let version = self
                    .catalog
                    .get_image_set_version(datastore_id, &id, image_set.version)
                    .await?;
                // A LOCKED latest version carries the previous version's document.
                let key = version.and_then(|v| v.metadata_key).unwrap_or_default();
                (image_set, key)
            }
        };
        if key.is_empty() {
            return Err(ServiceError::NotFound(
                "The image set has no metadata yet".into(),
            ));
        }
        let doc = self.document(&key).await?;
        let study_uid = doc
            .as_json()
            .get("Study")
            .and_then(|s| s.get("DICOM"))
            .and_then(|d| d.get("StudyInstanceUID"))
            .and_then(as_text);
        let has_series = doc
            .as_json()
            .get("Study")
            .and_then(|s| s.get("Series"))
            .and_then(|s| s.get(&target.series))
            .is_some();
        if study_uid.as_deref() != Some(target.study.as_str()) || !has_series {
            return Err(match &target.image_set_id {
                Some(_) => ServiceError::NotFound(format!(
                    "The series is not part of image set {}",
                    image_set.id
                )),
                None => series_not_found(),
            });
        }
        Ok(Resolved { image_set, doc })
    }

    /// GetDICOMSeriesMetadata: every instance of the series as DICOM JSON, in InstanceNumber
    /// order (then SOPInstanceUID). `instances_base`, if given, is the URL up to
    /// `…/instances/`: BulkDataURIs are `{instances_base}{sop}/bulkdata/{hash}`.
    pub async fn wado_series_metadata(
        &self,
        datastore_id: &DatastoreId,
        target: &SeriesRef,
        instances_base: Option<&str>,
        bulk_data_threshold: usize,
    ) -> Result<Vec<Map<String, Value>>, ServiceError> {
        let resolved = self.resolve_series(datastore_id, target).await?;
        let doc = resolved.doc.clone();
        let series = target.series.clone();
        let base = instances_base.map(str::to_string);
        let out = tokio::task::spawn_blocking(move || {
            let mut sops: Vec<(Option<i64>, String)> = doc
                .instances()
                .filter(|(s, _, _)| *s == series)
                .map(|(_, sop, inst)| {
                    let number = inst
                        .get("DICOM")
                        .and_then(|d| d.get("InstanceNumber"))
                        .and_then(as_int);
                    (number, sop.to_string())
                })
                .collect();
            // Numbered instances first, by number; then by UID.
            sops.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
            sops.into_iter()
                .filter_map(|(_, sop)| {
                    let bulk = base.as_ref().map(|b| format!("{b}{sop}/bulkdata/"));
                    let opts = DicomJsonOptions {
                        bulk_data_threshold,
                        bulk_data_base: bulk.as_deref(),
                    };
                    doc.instance_dicom_json(&series, &sop, &opts)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("metadata task: {e}")))?;
        self.touch(&resolved.image_set).await;
        Ok(out)
    }

    /// GetDICOMInstanceMetadata: one instance as DICOM JSON. `bulk_data_base`, if given, is
    /// the URL up to `…/bulkdata/`.
    pub async fn wado_instance_metadata(
        &self,
        datastore_id: &DatastoreId,
        target: &SeriesRef,
        sop: &str,
        bulk_data_base: Option<&str>,
        bulk_data_threshold: usize,
    ) -> Result<Map<String, Value>, ServiceError> {
        let resolved = self.resolve_series(datastore_id, target).await?;
        let opts = DicomJsonOptions {
            bulk_data_threshold,
            bulk_data_base,
        };
        let out = resolved
            .doc
            .instance_dicom_json(&target.series, sop, &opts)
            .ok_or_else(instance_not_found)?;
        self.touch(&resolved.image_set).await;
        Ok(out)
    }

    /// GetDICOMBulkdata: the bytes of the instance's binary attribute whose BulkDataURI ends
    /// in `hash`.
    pub async fn wado_bulk_data(
        &self,
        datastore_id: &DatastoreId,
        target: &SeriesRef,
        sop: &str,
        hash: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        let resolved = self.resolve_series(datastore_id, target).await?;
        if instance_object(&resolved.doc, &target.series, sop).is_none() {
            return Err(instance_not_found());
        }
        let (_, bytes) = resolved
            .doc
            .instance_bulk_data(&target.series, sop, hash)
            .ok_or_else(|| {
                ServiceError::NotFound("The bulk data does not exist in the instance".into())
            })?;
        self.touch(&resolved.image_set).await;
        Ok(bytes)
    }

    /// The catalog records of the frames `wanted` names (frame number, frame ID), in that
    /// order, `ahead` looked up at once; a frame without an ID or record is NotFound.
    pub(crate) async fn frame_records(
        &self,
        datastore_id: &DatastoreId,
        image_set_id: &ImageSetId,
        wanted: Vec<(u32, String)>,
        ahead: usize,
    ) -> Result<Vec<(u32, FrameRecord)>, ServiceError> {
        // Collected first: a lazy `map` closure over borrowed data would make this future
        // not `Send` for every lifetime.
        let mut lookups = Vec::with_capacity(wanted.len());
        for (n, id) in wanted {
            let image_set_id = image_set_id.clone();
            lookups.push(async move {
                let found = if id.is_empty() {
                    None
                } else {
                    self.catalog
                        .get_image_frame(datastore_id, &image_set_id, &id)
                        .await?
                        .and_then(|(_, f)| f)
                };
                found
                    .map(|f| (n, f))
                    .ok_or_else(|| ServiceError::NotFound(format!("Frame {n} is not stored")))
            });
        }
        futures::stream::iter(lookups)
            .buffered(ahead)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// GetDICOMInstanceFrames: the stored frames `frame_list` names (see
    /// [`parse_frame_list`]), in that order, with what decoding them needs.
    pub async fn wado_frames(
        &self,
        datastore_id: &DatastoreId,
        target: &SeriesRef,
        sop: &str,
        frame_list: &str,
    ) -> Result<InstanceFrames, ServiceError> {
        let numbers = parse_frame_list(frame_list)?;
        let resolved = self.resolve_series(datastore_id, target).await?;
        let doc = &resolved.doc;
        let instance = instance_object(doc, &target.series, sop).ok_or_else(instance_not_found)?;
        let ids = frame_ids(instance);
        if ids.is_empty() {
            return Err(ServiceError::NotFound("The instance has no frames".into()));
        }
        if let Some(n) = numbers.iter().find(|n| **n as usize > ids.len()) {
            return Err(ServiceError::Validation(format!(
                "Frame {n} does not exist: the instance has {} frame{}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" }
            )));
        }
        let stored_transfer_syntax = stored_transfer_syntax(instance);
        let wanted = numbers
            .iter()
            .map(|&n| (n, ids[n as usize - 1].clone()))
            .collect();
        let frames = self
            .frame_records(datastore_id, &resolved.image_set.id, wanted, FRAME_LOOKUPS)
            .await?;
        self.touch(&resolved.image_set).await;
        Ok(InstanceFrames {
            stored_transfer_syntax,
            pixel: pixel_attributes(doc, &target.series, sop),
            frames,
        })
    }

    /// A frame's stored bytes, streamed.
    pub async fn wado_stored_frame(&self, frame: &FrameRecord) -> Result<BlobStream, ServiceError> {
        self.read_blob(&frame.blob_key, Some(frame.size))
            .await?
            .ok_or_else(|| ServiceError::Internal("a stored frame is missing".into()))
    }

    /// A frame decoded to native Explicit VR Little Endian pixel data (PS3.5 8.2): Rows ×
    /// Columns × SamplesPerPixel samples of BitsAllocated bits, colour by pixel
    /// (PlanarConfiguration 0) or by plane (1) as the instance says.
    pub async fn wado_native_frame(
        &self,
        frames: &InstanceFrames,
        frame: &FrameRecord,
    ) -> Result<Bytes, ServiceError> {
        let Some(px) = frames.pixel.clone() else {
            return Err(ServiceError::Internal(
                "frame transcoding without pixel attributes".into(),
            ));
        };
        let Some(bytes) = self.blobs.get(&frame.blob_key).await? else {
            return Err(ServiceError::Internal("a stored frame is missing".into()));
        };
        let ts = frame.transfer_syntax.clone();
        tokio::task::spawn_blocking(move || native_frame(&px, &ts, &bytes))
            .await
            .map_err(|e| ServiceError::Internal(format!("transcoding task: {e}")))?
            .map(Bytes::from)
    }
}

/// The attributes `lightbox_frames::decode_stored_frame` reads.
fn decode_object(px: &PixelAttributes) -> InMemDicomObject {
    let us = |g, e, v: u16| DataElement::new(Tag(g, e), VR::US, PrimitiveValue::from(v));
    let mut obj = InMemDicomObject::new_empty();
    obj.put(us(0x0028, 0x0002, px.samples_per_pixel));
    obj.put(DataElement::new(
        Tag(0x0028, 0x0004),
        VR::CS,
        PrimitiveValue::from(px.photometric_interpretation.as_str()),
    ));
    obj.put(us(0x0028, 0x0006, px.planar_configuration));
    obj.put(DataElement::new(
        Tag(0x0028, 0x0008),
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    obj.put(us(0x0028, 0x0010, px.rows));
    obj.put(us(0x0028, 0x0011, px.columns));
    obj.put(us(0x0028, 0x0100, px.bits_allocated));
    obj.put(us(0x0028, 0x0101, px.bits_stored));
    obj.put(us(0x0028, 0x0103, px.pixel_representation));
    if !px.sop_class_uid.is_empty() {
        obj.put(DataElement::new(
            Tag(0x0008, 0x0016),
            VR::UI,
            PrimitiveValue::from(px.sop_class_uid.as_str()),
        ));
    }
    obj
}

/// Decodes one stored frame and writes its samples as native little-endian pixel data.
fn native_frame(px: &PixelAttributes, ts: &str, bytes: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let obj = decode_object(px);
    let decoded = lightbox_frames::decode_stored_frame(&obj, ts, bytes)
        .map_err(|e| ServiceError::Internal(format!("decoding a stored frame: {e}")))?;
    if decoded.width != u32::from(px.columns)
        || decoded.height != u32::from(px.rows)
        || u16::from(decoded.components) != px.samples_per_pixel
    {
        return Err(ServiceError::Internal(
            "a decoded frame does not match the instance's Rows, Columns and SamplesPerPixel"
                .into(),
        ));
    }
    let mut values = decoded.values();
    let spp = usize::from(px.samples_per_pixel);
    if px.planar_configuration == 1 && spp > 1 {
        // Colour by plane: all first samples, then all second samples, …
        let pixels = values.len() / spp;
        let mut planar = Vec::with_capacity(values.len());
        for c in 0..spp {
            planar.extend((0..pixels).map(|p| values[p * spp + c]));
        }
        values = planar;
    }
    Ok(pack_samples(&values, px.bits_allocated))
}

/// Samples as BitsAllocated-bit little-endian values (two's complement when negative); 1-bit
/// samples packed eight to a byte, first sample in the least significant bit (PS3.5 8.1.1).
fn pack_samples(values: &[i64], bits_allocated: u16) -> Vec<u8> {
    match bits_allocated {
        1 => {
            let mut out = vec![0u8; values.len().div_ceil(8)];
            for (i, v) in values.iter().enumerate() {
                if *v != 0 {
                    out[i / 8] |= 1 << (i % 8);
                }
            }
            out
        }
        8 => values.iter().map(|v| *v as u8).collect(),
        16 => values
            .iter()
            .flat_map(|v| (*v as u16).to_le_bytes())
            .collect(),
        _ => values
            .iter()
            .flat_map(|v| (*v as u32).to_le_bytes())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1").unwrap(), vec![1]);
        assert_eq!(parse_frame_list("3,1,2").unwrap(), vec![3, 1, 2]);
        for bad in ["", "1,", ",1", "a", "1;2", " 1", "-1", "1.0", "1234567890"] {
            assert!(
                matches!(parse_frame_list(bad), Err(ServiceError::Validation(_))),
                "{bad:?}"
            );
        }
        let dup = parse_frame_list("1,2,1").unwrap_err().to_string();
        assert!(dup.contains("Frame 1"), "{dup}");
        let zero = parse_frame_list("0").unwrap_err().to_string();
        assert!(zero.contains("frame 0"), "{zero}");
    }

    #[test]
    fn packs_samples() {
        assert_eq!(pack_samples(&[1, -1, 255], 8), vec![1, 255, 255]);
        assert_eq!(pack_samples(&[-2, 513], 16), vec![0xfe, 0xff, 0x01, 0x02]);
        assert_eq!(pack_samples(&[-1], 32), vec![0xff; 4]);
        assert_eq!(
            pack_samples(&[1, 0, 0, 0, 0, 0, 0, 1, 1], 1),
            vec![0b1000_0001, 0b1]
        );
    }

    fn attrs(pi: &str, spp: u16) -> PixelAttributes {
        PixelAttributes {
            rows: 4,
            columns: 4,
            samples_per_pixel: spp,
            bits_allocated: 8,
            bits_stored: 8,
            pixel_representation: 0,
            planar_configuration: 0,
            photometric_interpretation: pi.into(),
            sop_class_uid: String::new(),
        }
    }

    #[test]
    fn transcodable_syntaxes() {
        let mono = attrs("MONOCHROME2", 1);
        for ts in [
            "1.2.840.10008.1.2.4.202",
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.1",
        ] {
            assert!(can_transcode(ts, &mono), "{ts}");
        }
        for ts in [
            "1.2.840.10008.1.2.4.100",
            "1.2.840.10008.1.2.4.112",
            "1.2.3",
        ] {
            assert!(!can_transcode(ts, &mono), "{ts}");
        }
        assert!(!can_transcode(
            "1.2.840.10008.1.2.4.50",
            &attrs("YBR_FULL_422", 3)
        ));
        assert!(can_transcode("1.2.840.10008.1.2.4.50", &attrs("RGB", 3)));
        assert!(!can_transcode(
            "1.2.840.10008.1.2.4.91",
            &attrs("YBR_ICT", 3)
        ));
    }

    #[test]
    fn native_frames_decode_to_themselves() {
        let px = PixelAttributes {
            rows: 3,
            columns: 2,
            samples_per_pixel: 1,
            bits_allocated: 16,
            bits_stored: 16,
            pixel_representation: 1,
            planar_configuration: 0,
            photometric_interpretation: "MONOCHROME2".into(),
            sop_class_uid: String::new(),
        };
        let samples: Vec<i16> = vec![-3, 0, 7, 32767, -32768, 12];
        let native: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        // A native frame decodes to itself.
        let out = native_frame(&px, "1.2.840.10008.1.2.1", &native).unwrap();
        assert_eq!(out, native);
        // A too short frame is an error, not a panic.
        assert!(native_frame(&px, "1.2.840.10008.1.2.1", &native[..4]).is_err());
        assert!(native_frame(&px, "1.2.840.10008.1.2.4.202", b"junk").is_err());
    }

    #[test]
    fn cache_is_bounded() {
        let cache = DocumentCache::default();
        for i in 0..(CACHE_ENTRIES + 10) {
            let key = format!("k{i}");
            let cell = cache.cell(&key);
            cell.set(Arc::new(MetadataDocument::new("d", "i"))).unwrap();
            cache.loaded(&key, 1);
        }
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.entries.len(), CACHE_ENTRIES);
        assert!(inner.entries.iter().all(|e| e.key != "k0"));
    }
}
