//! `parse_p10`: envelope → bounded scan → dicom-rs → identifiers, validation, metadata.

use dicom_core::Tag;
use dicom_core::header::Header;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use serde_json::{Map, Value};

use crate::json::{Converter, text};
use crate::levels::{Level, level_of};
use crate::p10::{self, DEFLATED_EXPLICIT_VR_LE, EnvelopeError, InflateError};
use crate::scan::{Encoding, ScanError, ScanLimits, scan_dataset};
use crate::{
    GroupingKey, InstanceError, InstanceMetadata, Limits, ParsedInstance, SearchTags, Warning,
};

mod tags {
    use dicom_core::Tag;
    pub const SOP_CLASS_UID: Tag = Tag(0x0008, 0x0016);
    pub const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
    pub const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
    pub const STUDY_TIME: Tag = Tag(0x0008, 0x0030);
    pub const ACCESSION_NUMBER: Tag = Tag(0x0008, 0x0050);
    pub const MODALITY: Tag = Tag(0x0008, 0x0060);
    pub const STUDY_DESCRIPTION: Tag = Tag(0x0008, 0x1030);
    pub const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
    pub const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
    pub const PATIENT_BIRTH_DATE: Tag = Tag(0x0010, 0x0030);
    pub const PATIENT_SEX: Tag = Tag(0x0010, 0x0040);
    pub const BODY_PART_EXAMINED: Tag = Tag(0x0018, 0x0015);
    pub const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
    pub const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
    pub const STUDY_ID: Tag = Tag(0x0020, 0x0010);
    pub const SERIES_NUMBER: Tag = Tag(0x0020, 0x0011);
    pub const NUMBER_OF_STUDY_RELATED_SERIES: Tag = Tag(0x0020, 0x1206);
    pub const NUMBER_OF_STUDY_RELATED_INSTANCES: Tag = Tag(0x0020, 0x1208);
}

/// Maximum lengths HealthImaging enforces at import (notes §4.5, DG:dicom-element-constraints),
/// measured in characters of the value without padding.
const MAX_LENGTHS: &[(Tag, &str, usize)] = &[
    (tags::PATIENT_NAME, "PatientName", 256),
    (tags::PATIENT_ID, "PatientID", 256),
    (tags::PATIENT_BIRTH_DATE, "PatientBirthDate", 18),
    (tags::PATIENT_SEX, "PatientSex", 16),
    (tags::STUDY_INSTANCE_UID, "StudyInstanceUID", 256),
    (tags::STUDY_ID, "StudyID", 256),
    (tags::STUDY_DESCRIPTION, "StudyDescription", 256),
    (tags::ACCESSION_NUMBER, "AccessionNumber", 256),
    (tags::STUDY_DATE, "StudyDate", 18),
    (tags::STUDY_TIME, "StudyTime", 28),
    (tags::SOP_INSTANCE_UID, "SOPInstanceUID", 256),
    (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID", 256),
];

/// Largest value of NumberOfStudyRelatedSeries / NumberOfStudyRelatedInstances.
const MAX_STUDY_RELATED: i64 = 1_000_000;

fn not_dicom() -> InstanceError {
    InstanceError::validation("Not a DICOM file")
}

fn truncated() -> InstanceError {
    InstanceError::validation("File is truncated")
}

fn scan_error(e: ScanError, limits: &Limits) -> InstanceError {
    match e {
        ScanError::Truncated => truncated(),
        ScanError::TooDeep => InstanceError::validation(format!(
            "DICOM sequences are nested deeper than {} levels",
            limits.max_sequence_depth
        )),
        ScanError::ElementTooLarge => InstanceError::validation(format!(
            "A DICOM element is larger than {} bytes",
            limits.max_element_bytes
        )),
        ScanError::BadLength(tag) => InstanceError::validation(format!(
            "DICOM attribute {} has a length that does not fit its VR",
            crate::json::key_of(tag).0
        )),
        ScanError::Malformed(what) => {
            InstanceError::validation(format!("Invalid DICOM data set: {what}"))
        }
    }
}

/// Parses one DICOM P10 file (or a bare data set without file meta information).
///
/// Errors are `ValidationException`s whose message names the problem or the DICOM keyword,
/// never a value from the file.
pub fn parse_p10(bytes: &[u8], limits: &Limits) -> Result<ParsedInstance, InstanceError> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(InstanceError::validation(format!(
            "File is larger than the maximum of {} bytes",
            limits.max_file_bytes
        )));
    }
    let scan_limits = ScanLimits {
        max_depth: limits.max_sequence_depth,
        max_element_bytes: limits.max_element_bytes,
    };
    let mut warnings = Vec::new();

    let envelope = p10::locate(bytes).map_err(|e| match e {
        EnvelopeError::Truncated => truncated(),
        EnvelopeError::BadMeta(what) => {
            InstanceError::validation(format!("Invalid file meta information: {what}"))
        }
    })?;
    let has_meta = !envelope.meta.is_empty();
    let mut dataset = &bytes[envelope.dataset_offset..];

    // Transfer syntax: from the meta group, else detected from the data set. A meta-less file
    // may start with up to 3 stray bytes (pydicom's no_meta.dcm does); they are skipped.
    let (transfer_syntax, detected) = match &envelope.meta_transfer_syntax {
        Some(ts) => (ts.clone(), false),
        None => {
            let skips: &[usize] = if has_meta { &[0] } else { &[0, 1, 2, 3] };
            let found = skips.iter().find_map(|&skip| {
                let d = dataset.get(skip..)?;
                p10::detect_encoding(d, scan_limits).map(|enc| (skip, enc))
            });
            let (skip, enc) = found.ok_or_else(|| {
                if has_meta {
                    InstanceError::missing("TransferSyntaxUID")
                } else {
                    not_dicom()
                }
            })?;
            if skip > 0 {
                dataset = &dataset[skip..];
                warnings.push(Warning {
                    code: 0xB006,
                    kind: "ELEMENTS_DISCARDED",
                    message: format!("{skip} stray bytes before the data set were ignored"),
                });
            }
            (p10::ts_of(enc).to_string(), true)
        }
    };
    if !is_uid(&transfer_syntax) {
        return Err(InstanceError::validation(
            "DICOM attribute TransferSyntaxUID is not a valid UID",
        ));
    }
    if detected {
        warnings.push(Warning {
            code: 0xB000,
            kind: "COERCION_OF_DATA_ELEMENTS",
            message: if has_meta {
                "The file meta information has no TransferSyntaxUID; it was detected from the data set"
                    .to_string()
            } else {
                "The file has no file meta information; the transfer syntax was detected from the data set"
                    .to_string()
            },
        });
    }

    // Inflate the Deflated syntax (bounded), then scan.
    let inflated;
    let (data, encoding) = if transfer_syntax == DEFLATED_EXPLICIT_VR_LE {
        let cap = limits.max_inflated_bytes.min(limits.max_file_bytes);
        inflated = p10::inflate(dataset, cap).map_err(|e| match e {
            InflateError::Corrupt => {
                InstanceError::validation("The deflated data set is corrupt or truncated")
            }
            InflateError::TooLarge => InstanceError::validation(format!(
                "The inflated data set is larger than the maximum of {cap} bytes"
            )),
        })?;
        (&inflated[..], Encoding::ExplicitLittle)
    } else {
        (dataset, p10::encoding_of(&transfer_syntax))
    };
    let encoding = match scan_dataset(data, encoding, scan_limits) {
        Ok(_) => encoding,
        Err(e) => {
            // Some writers encode the data set in another VR mode than the transfer syntax
            // says (e.g. Implicit VR under an encapsulated syntax); read what is there, as
            // pydicom does.
            match p10::detect_encoding(data, scan_limits).filter(|d| *d != encoding) {
                Some(actual) => {
                    warnings.push(Warning {
                        code: 0xB000,
                        kind: "COERCION_OF_DATA_ELEMENTS",
                        message: format!(
                            "The data set is encoded as {} although the transfer syntax says otherwise",
                            encoding_name(actual)
                        ),
                    });
                    actual
                }
                None => return Err(scan_error(e, limits)),
            }
        }
    };

    // Both parts pass the scan before dicom-rs may read them.
    let meta_obj = if has_meta {
        scan_dataset(
            &bytes[envelope.meta.clone()],
            Encoding::ExplicitLittle,
            scan_limits,
        )
        .map_err(|_| InstanceError::validation("Invalid file meta information"))?;
        Some(
            InMemDicomObject::read_dataset_with_ts(
                &bytes[envelope.meta.clone()],
                &EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .map_err(|_| InstanceError::validation("Invalid file meta information"))?,
        )
    } else {
        None
    };
    let ts_entry = match encoding {
        Encoding::ImplicitLittle => IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        Encoding::ExplicitLittle => EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        Encoding::ExplicitBig => EXPLICIT_VR_BIG_ENDIAN.erased(),
    };
    let object = InMemDicomObject::read_dataset_with_ts(data, &ts_entry)
        .map_err(|e| dicom_read_error(&e))?;
    if object.iter().next().is_none() {
        return Err(not_dicom());
    }

    // Required identifiers.
    let required =
        |tag: Tag, keyword: &str| text(&object, tag).ok_or_else(|| InstanceError::missing(keyword));
    let sop_instance_uid = required(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let sop_class_uid = required(tags::SOP_CLASS_UID, "SOPClassUID")?;
    let study_instance_uid = required(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series_instance_uid = required(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    validate_lengths(&object)?;

    let t = |tag| text(&object, tag);
    let grouping = GroupingKey {
        study_date: t(tags::STUDY_DATE),
        accession_number: t(tags::ACCESSION_NUMBER),
        patient_id: t(tags::PATIENT_ID),
        study_instance_uid: Some(study_instance_uid.clone()),
        study_id: t(tags::STUDY_ID),
        series_instance_uid: Some(series_instance_uid.clone()),
        series_number: t(tags::SERIES_NUMBER),
    };
    let search = SearchTags {
        patient_id: t(tags::PATIENT_ID),
        patient_name: t(tags::PATIENT_NAME),
        patient_birth_date: t(tags::PATIENT_BIRTH_DATE),
        patient_sex: t(tags::PATIENT_SEX),
        accession_number: t(tags::ACCESSION_NUMBER),
        study_id: t(tags::STUDY_ID),
        study_instance_uid: Some(study_instance_uid.clone()),
        study_date: t(tags::STUDY_DATE),
        study_time: t(tags::STUDY_TIME),
        study_description: t(tags::STUDY_DESCRIPTION),
        series_instance_uid: Some(series_instance_uid.clone()),
        series_modality: t(tags::MODALITY),
        series_body_part: t(tags::BODY_PART_EXAMINED),
        series_number: t(tags::SERIES_NUMBER).and_then(|s| s.parse::<i64>().ok()),
    };

    let metadata = build_metadata(
        meta_obj.as_ref(),
        &object,
        &transfer_syntax,
        &sop_class_uid,
        &sop_instance_uid,
        limits.max_sequence_depth,
    );

    Ok(ParsedInstance {
        object,
        transfer_syntax,
        sop_instance_uid,
        sop_class_uid,
        study_instance_uid,
        series_instance_uid,
        grouping,
        search,
        metadata,
        warnings,
        meta_synthesized: !has_meta,
    })
}

fn dicom_read_error(e: &dicom_object::ReadError) -> InstanceError {
    // dicom-rs messages can quote values; keep only a generic description.
    let s = e.to_string();
    if s.contains("nexpected end") || s.contains("UnexpectedEof") || s.contains("fill whole buffer")
    {
        truncated()
    } else {
        InstanceError::validation("Invalid DICOM data set: the file could not be decoded")
    }
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::ImplicitLittle => "Implicit VR Little Endian",
        Encoding::ExplicitLittle => "Explicit VR Little Endian",
        Encoding::ExplicitBig => "Explicit VR Big Endian",
    }
}

fn is_uid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn validate_lengths(object: &InMemDicomObject) -> Result<(), InstanceError> {
    for (tag, keyword, max) in MAX_LENGTHS {
        if let Some(v) = text(object, *tag)
            && v.chars().count() > *max
        {
            return Err(InstanceError::validation(format!(
                "DICOM attribute {keyword} exceeds the maximum length of {max}"
            )));
        }
    }
    for (tag, keyword) in [
        (
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            "NumberOfStudyRelatedSeries",
        ),
        (
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            "NumberOfStudyRelatedInstances",
        ),
    ] {
        if let Some(v) = text(object, tag)
            && v.parse::<i64>()
                .is_ok_and(|n| !(0..=MAX_STUDY_RELATED).contains(&n))
        {
            return Err(InstanceError::validation(format!(
                "DICOM attribute {keyword} exceeds the maximum value of {MAX_STUDY_RELATED}"
            )));
        }
    }
    Ok(())
}

/// Splits the instance's attributes by level. Group 0002 (stored, or synthesized for meta-less
/// files: MediaStorageSOPClassUID, MediaStorageSOPInstanceUID, TransferSyntaxUID) comes first
/// at instance level.
fn build_metadata(
    meta: Option<&InMemDicomObject>,
    object: &InMemDicomObject,
    transfer_syntax: &str,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    max_depth: usize,
) -> InstanceMetadata {
    let mut md = InstanceMetadata::default();
    let mut vrs = Map::new();
    {
        let mut conv = Converter {
            vrs: &mut vrs,
            max_depth,
        };
        match meta {
            Some(meta) => {
                for elem in meta {
                    let (k, v) = conv.entry(elem, &md.instance);
                    md.instance.insert(k, v);
                }
                if !md.instance.contains_key("TransferSyntaxUID") {
                    md.instance.insert(
                        "TransferSyntaxUID".into(),
                        Value::String(transfer_syntax.to_string()),
                    );
                }
            }
            None => {
                md.instance.insert(
                    "MediaStorageSOPClassUID".into(),
                    Value::String(sop_class_uid.to_string()),
                );
                md.instance.insert(
                    "MediaStorageSOPInstanceUID".into(),
                    Value::String(sop_instance_uid.to_string()),
                );
                md.instance.insert(
                    "TransferSyntaxUID".into(),
                    Value::String(transfer_syntax.to_string()),
                );
            }
        }
        for elem in object {
            let tag = elem.tag();
            let level = if tag.0 == 0x0002 {
                Level::Instance
            } else {
                level_of((u32::from(tag.0) << 16) | u32::from(tag.1))
            };
            let target = match level {
                Level::Patient => &mut md.patient,
                Level::Study => &mut md.study,
                Level::Series => &mut md.series,
                Level::Instance => &mut md.instance,
            };
            let (k, v) = conv.entry(elem, target);
            target.insert(k, v);
        }
    }
    // AWS output lists the hoisted levels by keyword, the instance level by tag.
    for level in [&mut md.patient, &mut md.study, &mut md.series] {
        level.sort_keys();
    }
    // Hex keys sort like their tags.
    let mut entries: Vec<(String, Value)> = vrs.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    md.dicom_vrs = entries.into_iter().collect();
    md
}
