//! The image set metadata document returned by `GetImageSetMetadata` (notes §5.1), built and
//! updated instance by instance, stored gzip-compressed.
//!
//! Key order: `SchemaVersion` ("1.1"), `DatastoreID`, `ImageSetID`, `Patient.DICOM`,
//! `Study.DICOM`, `Study.Series.<uid>.DICOM`, `...Instances.<uid>` with `DICOM`, `DICOMVRs`,
//! `StoredTransferSyntaxUID`, `ChecksumType` ("DECOMPRESSED"), `ImageFrames`. The Patient,
//! Study and Series `DICOM` maps are sorted by keyword, the instance `DICOM` maps are in tag
//! order (both as in real AWS output).

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::InstanceMetadata;

/// Largest inflated metadata document accepted by [`MetadataDocument::from_gzip`] (the
/// HealthImaging limit is 50 MB per image set; this leaves room).
const MAX_INFLATED_DOCUMENT: u64 = 1 << 30;

/// The stored form of one instance's pixel data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredInstance {
    /// `StoredTransferSyntaxUID`, e.g. `1.2.840.10008.1.2.4.202`.
    pub stored_transfer_syntax: String,
    /// One entry per frame, in frame number order.
    pub frames: Vec<FrameEntry>,
}

/// One `ImageFrames[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FrameEntry {
    /// The image frame ID (32 hex).
    pub id: String,
    /// `(Width, Height, Checksum)` from the base (lowest) to the full resolution.
    pub checksums: Vec<(u32, u32, u32)>,
    /// Omitted from the JSON when `None`.
    pub min_pixel_value: Option<i64>,
    /// Omitted from the JSON when `None`.
    pub max_pixel_value: Option<i64>,
    /// Size of the stored frame.
    pub frame_size_in_bytes: u64,
}

/// A document that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError(pub String);

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid image set metadata document: {}", self.0)
    }
}

impl std::error::Error for DocumentError {}

/// The whole image set metadata document.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataDocument {
    root: Map<String, Value>,
}

impl MetadataDocument {
    /// An empty document (no instances).
    pub fn new(datastore_id: &str, image_set_id: &str) -> Self {
        let Value::Object(root) = json!({
            "SchemaVersion": "1.1",
            "DatastoreID": datastore_id,
            "ImageSetID": image_set_id,
            "Patient": {"DICOM": {}},
            "Study": {"DICOM": {}, "Series": {}},
        }) else {
            unreachable!()
        };
        MetadataDocument { root }
    }

    /// Reads a document written by [`to_json_bytes`](Self::to_json_bytes).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, DocumentError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| DocumentError(e.to_string()))?;
        let Value::Object(root) = value else {
            return Err(DocumentError("not a JSON object".into()));
        };
        let ok = root
            .get("Patient")
            .and_then(|p| p.get("DICOM"))
            .is_some_and(Value::is_object)
            && root
                .get("Study")
                .and_then(|s| s.get("DICOM"))
                .is_some_and(Value::is_object)
            && root
                .get("Study")
                .and_then(|s| s.get("Series"))
                .is_some_and(Value::is_object)
            && root.get("ImageSetID").is_some_and(Value::is_string);
        if !ok {
            return Err(DocumentError("missing Patient, Study or ImageSetID".into()));
        }
        Ok(MetadataDocument { root })
    }

    /// Reads a gzip-compressed document (see [`to_gzip`](Self::to_gzip)).
    pub fn from_gzip(bytes: &[u8]) -> Result<Self, DocumentError> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_INFLATED_DOCUMENT + 1)
            .read_to_end(&mut out)
            .map_err(|e| DocumentError(format!("gzip: {e}")))?;
        if out.len() as u64 > MAX_INFLATED_DOCUMENT {
            return Err(DocumentError("document too large".into()));
        }
        Self::from_json_bytes(&out)
    }

    /// Compact JSON.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.root).expect("a JSON map always serializes")
    }

    /// Gzip-compressed compact JSON (what `GetImageSetMetadata` returns).
    pub fn to_gzip(&self) -> Vec<u8> {
        gzip(&self.to_json_bytes())
    }

    /// The document as JSON.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.root
    }

    /// The document as JSON, for the changes in `changes.rs`.
    pub(crate) fn root_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.root
    }

    pub fn set_image_set_id(&mut self, id: &str) {
        self.root
            .insert("ImageSetID".into(), Value::String(id.to_string()));
    }

    pub fn image_set_id(&self) -> &str {
        self.root
            .get("ImageSetID")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Adds one instance with its stored frames; replaces it (and returns `true`) if the
    /// SOPInstanceUID already exists in that series.
    ///
    /// Patient, Study and Series attributes: values already in the document are kept and only
    /// keys missing there are added from this instance (first writer wins per attribute; the
    /// merged map stays sorted by keyword). Conflicts between instances are the caller's concern
    /// (they decide which image set an instance joins).
    pub fn put_instance(
        &mut self,
        meta: &InstanceMetadata,
        series_uid: &str,
        sop_uid: &str,
        stored: &StoredInstance,
    ) -> bool {
        merge_level(self.level_dicom(&["Patient"]), &meta.patient);
        merge_level(self.level_dicom(&["Study"]), &meta.study);

        let study = object_at(&mut self.root, "Study");
        let series_map = object_at(study, "Series");
        let series = object_at(series_map, series_uid);
        merge_level(object_at(series, "DICOM"), &meta.series);
        let instances = object_at(series, "Instances");

        let frames: Vec<Value> = stored.frames.iter().map(frame_json).collect();
        let mut entry = Map::new();
        entry.insert("DICOM".into(), Value::Object(meta.instance.clone()));
        entry.insert("DICOMVRs".into(), Value::Object(meta.dicom_vrs.clone()));
        entry.insert(
            "StoredTransferSyntaxUID".into(),
            Value::String(stored.stored_transfer_syntax.clone()),
        );
        entry.insert("ChecksumType".into(), Value::String("DECOMPRESSED".into()));
        entry.insert("ImageFrames".into(), Value::Array(frames));
        instances
            .insert(sop_uid.to_string(), Value::Object(entry))
            .is_some()
    }

    fn level_dicom(&mut self, path: &[&str]) -> &mut Map<String, Value> {
        let mut m = &mut self.root;
        for p in path {
            m = object_at(m, p);
        }
        object_at(m, "DICOM")
    }

    /// Number of instances in all series.
    pub fn instance_count(&self) -> usize {
        self.instances().count()
    }

    /// `(SeriesInstanceUID, SOPInstanceUID, instance object)` for every instance.
    pub fn instances(&self) -> impl Iterator<Item = (&str, &str, &Map<String, Value>)> {
        self.root
            .get("Study")
            .and_then(|s| s.get("Series"))
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|series| series.iter())
            .flat_map(|(series_uid, s)| {
                s.get("Instances")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.iter())
                    .filter_map(move |(uid, v)| {
                        v.as_object()
                            .map(|o| (series_uid.as_str(), uid.as_str(), o))
                    })
            })
    }

    /// What the image set is found by (SearchImageSets' `DICOMTags`), read from the merged
    /// document: the patient and study levels and the first series (an image set holds one).
    pub fn search_tags(&self) -> crate::SearchTags {
        let study_obj = self.root.get("Study");
        let patient = level_map(self.root.get("Patient"));
        let study = level_map(study_obj);
        let first_series = self.first_series();
        let series = level_map(first_series.map(|(_, s)| s));
        crate::SearchTags {
            patient_id: level_text(patient, "PatientID"),
            patient_name: level_text(patient, "PatientName"),
            patient_birth_date: level_text(patient, "PatientBirthDate"),
            patient_sex: level_text(patient, "PatientSex"),
            accession_number: level_text(study, "AccessionNumber"),
            study_id: level_text(study, "StudyID"),
            study_instance_uid: level_text(study, "StudyInstanceUID"),
            study_date: level_text(study, "StudyDate"),
            study_time: level_text(study, "StudyTime"),
            study_description: level_text(study, "StudyDescription"),
            series_instance_uid: level_text(series, "SeriesInstanceUID")
                .or_else(|| first_series.map(|(uid, _)| uid.clone())),
            series_modality: level_text(series, "Modality"),
            series_body_part: level_text(series, "BodyPartExamined"),
            series_number: level_text(series, "SeriesNumber").and_then(|n| n.parse().ok()),
        }
    }

    /// What QIDO-RS finds the image set by beyond [`Self::search_tags`]: study and series
    /// attributes read as `search_tags` reads its own, and every instance with its
    /// instance-level return attributes (PS3.18 Table 6.7.1-2b).
    pub fn qido_index(&self) -> lightbox_domain::QidoIndex {
        let study = level_map(self.root.get("Study"));
        let series = level_map(self.first_series().map(|(_, s)| s));
        let number = |m: Option<&Map<String, Value>>, key: &str| -> Option<i64> {
            level_text(m, key)?.split('\\').next()?.trim().parse().ok()
        };
        lightbox_domain::QidoIndex {
            attributes: lightbox_domain::QidoAttributes {
                referring_physician_name: level_text(study, "ReferringPhysicianName"),
                series_description: level_text(series, "SeriesDescription"),
                series_date: level_text(series, "SeriesDate"),
                series_time: level_text(series, "SeriesTime"),
            },
            instances: self
                .instances()
                .map(|(series_uid, sop_uid, inst)| {
                    let d = inst.get("DICOM").and_then(Value::as_object);
                    lightbox_domain::QidoInstance {
                        series_instance_uid: series_uid.to_string(),
                        sop_instance_uid: sop_uid.to_string(),
                        sop_class_uid: level_text(d, "SOPClassUID"),
                        instance_number: number(d, "InstanceNumber"),
                        rows: number(d, "Rows"),
                        columns: number(d, "Columns"),
                        bits_allocated: number(d, "BitsAllocated"),
                        number_of_frames: number(d, "NumberOfFrames"),
                    }
                })
                .collect(),
        }
    }

    fn first_series(&self) -> Option<(&String, &Value)> {
        self.root
            .get("Study")
            .and_then(|s| s.get("Series"))
            .and_then(Value::as_object)
            .and_then(|m| m.iter().next())
    }

    /// Every `ImageFrames[].ID`, in document order.
    pub fn frame_ids(&self) -> Vec<String> {
        self.instances()
            .flat_map(|(_, _, inst)| {
                inst.get("ImageFrames")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.get("ID").and_then(Value::as_str).map(str::to_string))
            })
            .collect()
    }
}

/// The `DICOM` map of a document level (Patient, Study, a series).
fn level_map(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v?.get("DICOM")?.as_object()
}

/// A level's attribute as text, as an instance's own search tags and grouping key read it:
/// several values joined by `\`, numbers in their JSON form, trimmed; `None` when absent or
/// empty.
pub(crate) fn level_text(level: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let s = match level?.get(key)? {
        Value::Array(a) => a.iter().filter_map(one).collect::<Vec<_>>().join("\\"),
        v => one(v)?,
    };
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

fn frame_json(f: &FrameEntry) -> Value {
    let mut m = Map::new();
    m.insert("ID".into(), Value::String(f.id.clone()));
    m.insert(
        "PixelDataChecksumFromBaseToFullResolution".into(),
        Value::Array(
            f.checksums
                .iter()
                .map(|(w, h, c)| json!({"Width": w, "Height": h, "Checksum": c}))
                .collect(),
        ),
    );
    if let Some(v) = f.min_pixel_value {
        m.insert("MinPixelValue".into(), Value::from(v));
    }
    if let Some(v) = f.max_pixel_value {
        m.insert("MaxPixelValue".into(), Value::from(v));
    }
    m.insert(
        "FrameSizeInBytes".into(),
        Value::from(f.frame_size_in_bytes),
    );
    Value::Object(m)
}

/// The object under `key`, created (or replaced, if not an object) as needed.
fn object_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// Adds the keys of `from` missing in `into`, then re-sorts `into` by keyword if anything was
/// added.
fn merge_level(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    let mut added = false;
    for (k, v) in from {
        if !into.contains_key(k) {
            into.insert(k.clone(), v.clone());
            added = true;
        }
    }
    if added {
        into.sort_keys();
    }
}

/// Gzip of a serialized document (`to_gzip` for a caller that already holds the JSON bytes).
pub fn gzip(json: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(json).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(patient: Value, series: Value, instance: Value) -> InstanceMetadata {
        InstanceMetadata {
            patient: patient.as_object().unwrap().clone(),
            study: Map::new(),
            series: series.as_object().unwrap().clone(),
            instance: instance.as_object().unwrap().clone(),
            dicom_vrs: Map::new(),
        }
    }

    #[test]
    fn layout_merge_replace_and_roundtrip() {
        let mut doc = MetadataDocument::new("d".repeat(32).as_str(), "i".repeat(32).as_str());
        let stored = StoredInstance {
            stored_transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
            frames: vec![FrameEntry {
                id: "f1".into(),
                checksums: vec![(8, 8, 1), (16, 16, 2)],
                min_pixel_value: Some(0),
                max_pixel_value: Some(9),
                frame_size_in_bytes: 100,
            }],
        };
        let a = meta(
            json!({"PatientID": "A", "PatientSex": null}),
            json!({"Modality": "CT"}),
            json!({"SOPInstanceUID": "1.1"}),
        );
        assert!(!doc.put_instance(&a, "1.2", "1.1", &stored));
        // Existing values win; missing keys are added in tag order.
        let b = meta(
            json!({"PatientName": "X", "PatientID": "B"}),
            json!({"Modality": "MR"}),
            json!({"SOPInstanceUID": "1.1"}),
        );
        assert!(doc.put_instance(&b, "1.2", "1.1", &stored));
        let j: Value = serde_json::from_slice(&doc.to_json_bytes()).unwrap();
        let keys: Vec<&String> = j["Patient"]["DICOM"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["PatientID", "PatientName", "PatientSex"]);
        assert_eq!(j["Patient"]["DICOM"]["PatientID"], "A");
        assert_eq!(j["Study"]["Series"]["1.2"]["DICOM"]["Modality"], "CT");
        let top: Vec<&String> = j.as_object().unwrap().keys().collect();
        assert_eq!(
            top,
            [
                "SchemaVersion",
                "DatastoreID",
                "ImageSetID",
                "Patient",
                "Study"
            ]
        );
        let inst = j["Study"]["Series"]["1.2"]["Instances"]["1.1"]
            .as_object()
            .unwrap();
        let ik: Vec<&String> = inst.keys().collect();
        assert_eq!(
            ik,
            [
                "DICOM",
                "DICOMVRs",
                "StoredTransferSyntaxUID",
                "ChecksumType",
                "ImageFrames"
            ]
        );
        assert_eq!(
            inst["ImageFrames"][0]["PixelDataChecksumFromBaseToFullResolution"][1],
            json!({"Width": 16, "Height": 16, "Checksum": 2})
        );
        assert_eq!(doc.instance_count(), 1);
        assert_eq!(doc.frame_ids(), ["f1"]);
        let back = MetadataDocument::from_gzip(&doc.to_gzip()).unwrap();
        assert_eq!(back, doc);
        doc.set_image_set_id("x");
        assert_eq!(doc.image_set_id(), "x");
    }
}
