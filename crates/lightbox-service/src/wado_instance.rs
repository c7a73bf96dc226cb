//! GetDICOMInstance (#8, notes §11.1–11.2): a DICOM PS3.10 file of one instance, rebuilt from
//! the image set's metadata document (Patient, Study, Series and instance levels merged, as
//! GetDICOMInstanceMetadata serves them) and its stored frames.
//!
//! Two encodings: Explicit VR Little Endian, with native Pixel Data decoded from the stored
//! frames (as GetDICOMInstanceFrames transcodes them), or the stored transfer syntax, with
//! encapsulated Pixel Data (one fragment per stored frame, Basic Offset Table filled). Which one
//! is the caller's negotiation, from [`InstanceSource::stored_transfer_syntax`] and
//! [`InstanceSource::can_transcode`]. The data set is written first; the frames are then
//! streamed (read, or decoded, a few at a time), so an instance is never held in memory whole
//! (except 1-bit frames that do not end on a byte boundary, packed across frames).
//!
//! Errors never contain UIDs or values (see `dicomweb.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use lightbox_dicom::{
    DicomJsonOptions, P10Parts, SEQUENCE_DELIMITATION, basic_offsets, dataset_from_dicom_json,
    encapsulated_pixel_data_header, item_header, native_pixel_data_header, p10_parts,
};
use lightbox_domain::DatastoreId;
use serde_json::{Map, Value};

use crate::dicomweb::{
    frame_ids, instance_not_found, instance_object, pixel_attributes, stored_transfer_syntax,
};
use crate::{BlobStream, InstanceFrames, SeriesRef, Service, ServiceError};

/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Frames read or decoded at once.
const FRAMES_AHEAD: usize = 4;
/// (0028,0006) Planar Configuration, as a DICOM JSON key.
const PLANAR_CONFIGURATION: &str = "00280006";

/// Everything a GetDICOMInstance response is built from.
#[derive(Debug, Clone)]
pub struct InstanceSource {
    /// The instance's StoredTransferSyntaxUID.
    pub stored_transfer_syntax: String,
    /// The data set as DICOM JSON (binary values inline, no Pixel Data).
    dataset: Map<String, Value>,
    /// Every stored frame in order, with the pixel attributes.
    frames: InstanceFrames,
}

/// How the file's Pixel Data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceEncoding {
    /// Explicit VR Little Endian with native Pixel Data, decoded from the stored frames.
    ExplicitVrLittleEndian,
    /// The stored transfer syntax; frames as stored (encapsulated, or native when stored so).
    Stored,
}

impl InstanceSource {
    /// Whether the frames can be decoded to Explicit VR Little Endian (always so for an
    /// instance without frames).
    pub fn can_transcode(&self) -> bool {
        self.frames.frames.is_empty() || self.frames.can_transcode()
    }

    /// The number of stored frames.
    pub fn frame_count(&self) -> usize {
        self.frames.frames.len()
    }
}

/// JPEG 2000 and HTJ2K: Planar Configuration is 0 in files of these syntaxes (PS3.5 8.2.4).
fn is_jpeg_2000(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203"
    )
}

/// Whether a transfer syntax has native (not encapsulated) Pixel Data. Frames stored in one
/// (they are always little endian samples) are sent in Explicit VR Little Endian.
fn is_native(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
            | "1.2.840.10008.1.2.8.1"
    )
}

impl Service {
    /// The metadata and stored frames of one instance, for GetDICOMInstance.
    pub async fn wado_instance_source(
        &self,
        datastore_id: &DatastoreId,
        target: &SeriesRef,
        sop: &str,
    ) -> Result<InstanceSource, ServiceError> {
        let resolved = self.resolve_series(datastore_id, target).await?;
        let doc = resolved.doc.clone();
        let instance = instance_object(&doc, &target.series, sop).ok_or_else(instance_not_found)?;
        let ids = frame_ids(instance);
        let stored_transfer_syntax = stored_transfer_syntax(instance);
        let opts = DicomJsonOptions {
            bulk_data_threshold: usize::MAX,
            bulk_data_base: None,
        };
        let series = target.series.clone();
        let sop_owned = sop.to_string();
        let doc_for_json = doc.clone();
        let dataset = tokio::task::spawn_blocking(move || {
            doc_for_json.instance_dicom_json(&series, &sop_owned, &opts)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("metadata task: {e}")))?
        .ok_or_else(instance_not_found)?;
        let wanted = (1..).zip(ids).collect();
        let frames = self
            .frame_records(
                datastore_id,
                &resolved.image_set.id,
                wanted,
                FRAMES_AHEAD * 2,
            )
            .await?;
        self.touch(&resolved.image_set).await;
        Ok(InstanceSource {
            frames: InstanceFrames {
                stored_transfer_syntax: stored_transfer_syntax.clone(),
                pixel: pixel_attributes(&doc, &target.series, sop),
                frames,
            },
            stored_transfer_syntax,
            dataset,
        })
    }

    /// The PS3.10 file of `source` in `encoding`, streamed: the data set is written first, then
    /// the frames are read (and decoded, for Explicit VR Little Endian) a few at a time as the
    /// body is sent. An error while streaming ends the body early (its length is announced).
    pub async fn wado_instance_file(
        self: Arc<Self>,
        source: InstanceSource,
        encoding: InstanceEncoding,
    ) -> Result<InstanceFile, ServiceError> {
        let stored = source.stored_transfer_syntax.as_str();
        let ts = match encoding {
            InstanceEncoding::Stored if !is_native(stored) => stored,
            _ => EXPLICIT_VR_LITTLE_ENDIAN,
        }
        .to_string();
        let InstanceSource {
            mut dataset,
            frames,
            ..
        } = source;
        let encapsulated = !frames.frames.is_empty() && !is_native(&ts);
        if encapsulated && is_jpeg_2000(&ts) {
            // PS3.5 8.2.4: the codestream orders the components, and Planar Configuration
            // shall be 0 (frames of a colour-by-plane original are stored so).
            if let Some(Value::Object(attr)) = dataset.get_mut(PLANAR_CONFIGURATION)
                && attr.contains_key("Value")
            {
                attr.insert("Value".into(), Value::Array(vec![Value::from(0)]));
            }
        }
        let ts_out = ts.clone();
        let P10Parts { head, tail } = tokio::task::spawn_blocking(move || {
            let obj = dataset_from_dicom_json(&dataset)?;
            p10_parts(obj, &ts_out)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("instance task: {e}")))?
        .map_err(|e| ServiceError::Internal(format!("building the instance file: {e}")))?;
        let frames = Arc::new(frames);
        let (pixel_len, pixel): (u64, ByteStream) = if frames.frames.is_empty() {
            (0, futures::stream::empty().boxed())
        } else if encapsulated {
            encapsulated_pixel_data(self, frames)
        } else {
            native_pixel_data(self, frames).await?
        };
        let content_length = head.len() as u64 + pixel_len + tail.len() as u64;
        let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(pixel)
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }))
            .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
            .boxed();
        Ok(InstanceFile {
            transfer_syntax: ts,
            content_length,
            body,
        })
    }
}

/// A body being streamed.
type ByteStream = BoxStream<'static, Result<Bytes, ServiceError>>;

/// A GetDICOMInstance body.
pub struct InstanceFile {
    /// The file's transfer syntax.
    pub transfer_syntax: String,
    /// The body's length in bytes.
    pub content_length: u64,
    pub body: BoxStream<'static, Result<Bytes, ServiceError>>,
}

/// Encapsulated Pixel Data: a filled Basic Offset Table, then one fragment per stored frame
/// streamed from the blob store (odd lengths padded), then the delimiter.
fn encapsulated_pixel_data(svc: Arc<Service>, frames: Arc<InstanceFrames>) -> (u64, ByteStream) {
    let sizes: Vec<u64> = frames.frames.iter().map(|(_, r)| r.size).collect();
    let header = encapsulated_pixel_data_header(&basic_offsets(&sizes));
    let len = header.len() as u64
        + sizes.iter().map(|s| 8 + s.next_multiple_of(2)).sum::<u64>()
        + SEQUENCE_DELIMITATION.len() as u64;
    let count = frames.frames.len();
    let fragments = futures::stream::iter(0..count)
        .map(move |i| {
            let svc = svc.clone();
            let frames = frames.clone();
            async move {
                let record = &frames.frames[i].1;
                let size = u32::try_from(record.size.next_multiple_of(2)).map_err(|_| {
                    ServiceError::Internal("a stored frame is too large for a fragment".into())
                })?;
                let stream = svc.wado_stored_frame(record).await?;
                Ok::<_, ServiceError>(fragment(size, record.size, stream))
            }
        })
        .buffered(FRAMES_AHEAD)
        .try_flatten();
    let stream = futures::stream::once(async move { Ok(Bytes::from(header)) })
        .chain(fragments)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(&SEQUENCE_DELIMITATION))
        }))
        .boxed();
    (len, stream)
}

/// One fragment: its item header, the stored bytes (exactly `size` of them, else an error) and
/// a zero byte when `size` is odd.
fn fragment(padded: u32, size: u64, stored: BlobStream) -> ByteStream {
    let seen = Arc::new(AtomicU64::new(0));
    let counted = seen.clone();
    let body = stored.map(move |r| {
        let b = r.map_err(ServiceError::from)?;
        counted.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    });
    let end = futures::stream::once(async move {
        if seen.load(Ordering::Relaxed) != size {
            return Err(ServiceError::Internal(
                "a stored frame does not have its recorded size".into(),
            ));
        }
        Ok(if size % 2 == 1 {
            Bytes::from_static(&[0])
        } else {
            Bytes::new()
        })
    });
    futures::stream::once(async move { Ok(Bytes::copy_from_slice(&item_header(padded))) })
        .chain(body)
        .chain(end)
        .boxed()
}

/// Native Pixel Data decoded from the stored frames: each frame checked to have the length
/// the pixel attributes give. 1-bit frames that do not end on a byte boundary are packed
/// across frames, so they are decoded before the first byte is sent.
async fn native_pixel_data(
    svc: Arc<Service>,
    frames: Arc<InstanceFrames>,
) -> Result<(u64, ByteStream), ServiceError> {
    let px = frames.pixel.clone().ok_or_else(|| {
        ServiceError::Internal("frame transcoding without pixel attributes".into())
    })?;
    let samples =
        usize::from(px.rows) * usize::from(px.columns) * usize::from(px.samples_per_pixel);
    let count = frames.frames.len();
    if px.bits_allocated == 1 && !samples.is_multiple_of(8) {
        let mut reads = Vec::with_capacity(count);
        for (_, record) in &frames.frames {
            reads.push(svc.wado_native_frame(&frames, record));
        }
        let decoded: Vec<Bytes> = futures::stream::iter(reads)
            .buffered(FRAMES_AHEAD)
            .try_collect()
            .await?;
        let mut bytes = concat_native(&decoded, 1, samples);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let header = native_pixel_data_header(bytes.len() as u64, 1)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut all = header.to_vec();
        all.extend_from_slice(&bytes);
        let len = all.len() as u64;
        return Ok((
            len,
            futures::stream::once(async move { Ok(Bytes::from(all)) }).boxed(),
        ));
    }
    let frame_len = if px.bits_allocated == 1 {
        samples / 8
    } else {
        samples * usize::from(px.bits_allocated.div_ceil(8))
    } as u64;
    let total = frame_len * count as u64;
    let header = native_pixel_data_header(total.next_multiple_of(2), px.bits_allocated)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let decoded = futures::stream::iter(0..count)
        .map(move |i| {
            let svc = svc.clone();
            let frames = frames.clone();
            async move {
                let bytes = svc.wado_native_frame(&frames, &frames.frames[i].1).await?;
                if bytes.len() as u64 != frame_len {
                    return Err(ServiceError::Internal(
                        "a decoded frame does not have the size its attributes give".into(),
                    ));
                }
                Ok(bytes)
            }
        })
        .buffered(FRAMES_AHEAD);
    let pad = futures::stream::once(async move {
        Ok(if total % 2 == 1 {
            Bytes::from_static(&[0])
        } else {
            Bytes::new()
        })
    });
    let len = header.len() as u64 + total.next_multiple_of(2);
    let stream = futures::stream::once(async move { Ok(Bytes::copy_from_slice(&header)) })
        .chain(decoded)
        .chain(pad)
        .boxed();
    Ok((len, stream))
}

/// Native frames as one Pixel Data value. 1-bit frames whose size is not a whole number of
/// bytes are packed across frame boundaries (PS3.5 8.1.1): each frame's `samples` bits follow
/// the previous frame's directly.
fn concat_native(frames: &[Bytes], bits_allocated: u16, samples: usize) -> Vec<u8> {
    if bits_allocated != 1 || samples.is_multiple_of(8) {
        return frames.iter().flat_map(|f| f.iter().copied()).collect();
    }
    let total = samples * frames.len();
    let mut out = vec![0u8; total.div_ceil(8)];
    let mut at = 0usize;
    for f in frames {
        for i in 0..samples {
            let bit = f.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            if bit {
                out[at / 8] |= 1 << (at % 8);
            }
            at += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bit_frames_are_packed_across_boundaries() {
        // Two frames of 3 × 3 samples: 9 bits each, stored as 2 bytes each.
        let a = Bytes::from_static(&[0b0000_0001, 0b1]);
        let b = Bytes::from_static(&[0b0000_0011, 0b0]);
        let out = concat_native(&[a, b], 1, 9);
        // Frame 1: bits 0, 8; frame 2: bits 9, 10.
        assert_eq!(out, vec![0b0000_0001, 0b0000_0111, 0b0]);
        // Whole bytes: plain concatenation.
        let c = Bytes::from_static(&[1, 2]);
        assert_eq!(concat_native(&[c.clone(), c], 8, 2), vec![1, 2, 1, 2]);
    }

    #[test]
    fn native_syntaxes() {
        assert!(is_native(EXPLICIT_VR_LITTLE_ENDIAN));
        assert!(!is_native("1.2.840.10008.1.2.4.202"));
    }
}
