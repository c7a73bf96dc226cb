//! Every file of the real corpus either parses or fails with the expected, value-free error;
//! byte-order and VR-mode twins produce the same metadata.

mod common;

use lightbox_dicom::{InstanceMetadata, Limits, MetadataDocument, StoredInstance, parse_p10};
use serde_json::{Map, Value};

/// Files that must fail, with (a part of) their message and why.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    // Media storage directories are not SOP instances.
    ("DICOMDIR", "SOPInstanceUID does not exist"),
    ("DICOMDIR-bigEnd", "SOPInstanceUID does not exist"),
    ("DICOMDIR-empty.dcm", "SOPInstanceUID does not exist"),
    ("DICOMDIR-implicit", "SOPInstanceUID does not exist"),
    ("DICOMDIR-nopatient", "SOPInstanceUID does not exist"),
    ("DICOMDIR-reordered", "SOPInstanceUID does not exist"),
    // Directory records whose offsets are broken (pydicom needs force=True too).
    ("DICOMDIR-nooffset", "File is truncated"),
    // Deliberately truncated.
    ("MR_truncated.dcm", "File is truncated"),
    ("rtplan_truncated.dcm", "File is truncated"),
    // pydicom test fragments without the SOP / study identifiers.
    (
        "JPEGLSNearLossless_08.dcm",
        "StudyInstanceUID does not exist",
    ),
    (
        "JPEGLSNearLossless_16.dcm",
        "StudyInstanceUID does not exist",
    ),
    (
        "SC_rgb_jls_lossy_line.dcm",
        "StudyInstanceUID does not exist",
    ),
    (
        "SC_rgb_jls_lossy_sample.dcm",
        "StudyInstanceUID does not exist",
    ),
    ("empty_charset_LEI.dcm", "SOPInstanceUID does not exist"),
    ("nested_priv_SQ.dcm", "SOPInstanceUID does not exist"),
    ("priv_SQ.dcm", "SOPInstanceUID does not exist"),
    ("no_meta_group_length.dcm", "SOPInstanceUID does not exist"),
    // One private UN sequence of undefined length whose items are Implicit VR inside an
    // Explicit VR data set; nothing else (no SOP instance either).
    ("UN_sequence.dcm", ""),
    // A meta group without TransferSyntaxUID and a data set without identifiers.
    (
        "meta_missing_tsyntax.dcm",
        "TransferSyntaxUID does not exist",
    ),
    // Not DICOM at all.
    ("crayons.icc", "Not a DICOM file"),
    ("rtplan.dump", "Not a DICOM file"),
    ("rtstruct.dump", "Not a DICOM file"),
];

#[test]
fn every_corpus_file_parses_or_fails_as_expected() {
    let files = common::corpus_files();
    if files.is_empty() {
        return;
    }
    let limits = Limits::default();
    let mut problems = Vec::new();
    let mut parsed = 0;
    for name in &files {
        let bytes = common::read(name).unwrap();
        let expected = EXPECTED_FAILURES.iter().find(|(n, _)| n == name);
        match (parse_p10(&bytes, &limits), expected) {
            (Ok(p), None) => {
                parsed += 1;
                let md = &p.metadata;
                if md.instance.get("TransferSyntaxUID").and_then(Value::as_str)
                    != Some(p.transfer_syntax.as_str())
                {
                    problems.push(format!("{name}: TransferSyntaxUID not the original TS"));
                }
                if md.instance.get("SOPInstanceUID").and_then(Value::as_str)
                    != Some(p.sop_instance_uid.as_str())
                {
                    problems.push(format!("{name}: SOPInstanceUID missing at instance level"));
                }
                if md.instance.contains_key("PixelData") && md.instance["PixelData"] != Value::Null
                {
                    problems.push(format!("{name}: PixelData not null"));
                }
                for (k, _) in md.patient.iter().chain(&md.study).chain(&md.series) {
                    if k.len() == 8 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
                        problems.push(format!("{name}: hex key {k} hoisted"));
                    }
                }
                for k in md.dicom_vrs.keys() {
                    if !contains_key_deep(&md.instance, k) {
                        problems.push(format!("{name}: DICOMVRs key {k} not in the metadata"));
                    }
                }
                // Search reads an image set's tags from its document: the same as the file's.
                let mut doc = MetadataDocument::new("d", "i");
                doc.put_instance(
                    md,
                    &p.series_instance_uid,
                    &p.sop_instance_uid,
                    &StoredInstance::default(),
                );
                if doc.search_tags() != p.search {
                    problems.push(format!(
                        "{name}: document search tags differ from the instance's"
                    ));
                }
                // QIDO-RS indexes an image set's instances from its document.
                let q = doc.qido_index();
                let one = &q.instances;
                if one.len() != 1
                    || one[0].sop_instance_uid != p.sop_instance_uid
                    || one[0].series_instance_uid != p.series_instance_uid
                {
                    problems.push(format!("{name}: QIDO-RS instance index wrong: {one:?}"));
                }
                // Changes regroup an image set from its document: the same key as the file's.
                if doc.grouping_key() != p.grouping {
                    problems.push(format!(
                        "{name}: document grouping key differs from the instance's: {:?} vs {:?}",
                        doc.grouping_key(),
                        p.grouping
                    ));
                }
            }
            (Ok(_), Some((_, msg))) => problems.push(format!("{name}: parsed, expected `{msg}`")),
            (Err(e), None) => problems.push(format!("{name}: unexpected failure: {e}")),
            (Err(e), Some((_, msg))) => {
                if !e.message.contains(msg) {
                    problems.push(format!("{name}: got `{}`, expected `{msg}`", e.message));
                }
                if e.exception_type != "ValidationException" {
                    problems.push(format!("{name}: exception type {}", e.exception_type));
                }
            }
        }
    }
    for (n, _) in EXPECTED_FAILURES {
        if !files.iter().any(|f| f == n) {
            problems.push(format!(
                "{n}: listed as expected failure but not in the corpus"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(parsed > 200, "only {parsed} files parsed");
}

fn contains_key_deep(map: &Map<String, Value>, key: &str) -> bool {
    map.iter().any(|(k, v)| {
        k == key
            || match v {
                Value::Array(items) => items
                    .iter()
                    .any(|i| i.as_object().is_some_and(|o| contains_key_deep(o, key))),
                _ => false,
            }
    })
}

/// Error messages never quote values from the file.
#[test]
fn error_messages_carry_no_values() {
    if common::corpus().is_none() {
        return;
    }
    // A valid file whose PatientName is too long.
    let mut bytes = common::read("CT_small.dcm").unwrap();
    let p = parse_p10(&bytes, &Limits::default()).unwrap();
    let uid = p.sop_instance_uid.clone();
    // Cut the file right after the meta group: identifiers are gone.
    bytes.truncate(400);
    let e = parse_p10(&bytes, &Limits::default()).unwrap_err();
    assert!(!e.message.contains(&uid), "{}", e.message);
    assert!(!e.message.contains("CompressedSamples"), "{}", e.message);
}

fn metadata(name: &str) -> Option<InstanceMetadata> {
    let bytes = common::read(name)?;
    Some(
        parse_p10(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .metadata,
    )
}

/// The data set part of the instance level: group 0002 dropped (it differs by design).
fn without_meta(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "FileMetaInformationGroupLength"
                    | "FileMetaInformationVersion"
                    | "MediaStorageSOPClassUID"
                    | "MediaStorageSOPInstanceUID"
                    | "TransferSyntaxUID"
                    | "ImplementationClassUID"
                    | "ImplementationVersionName"
                    | "SourceApplicationEntityTitle"
                    // (FFFC,FFFC) is file padding, not data.
                    | "DataSetTrailingPadding"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn byte_order_and_vr_mode_twins_agree() {
    if common::corpus().is_none() {
        return;
    }
    let twins: &[(&str, &[&str])] = &[
        (
            "MR_small.dcm",
            &[
                "MR_small_implicit.dcm",
                "MR_small_bigendian.dcm",
                "MR_small_expb.dcm",
            ],
        ),
        ("ExplVR_LitEndNoMeta.dcm", &["ExplVR_BigEndNoMeta.dcm"]),
        ("emri_small.dcm", &["emri_small_big_endian.dcm"]),
        ("SC_rgb.dcm", &["SC_rgb_expb.dcm"]),
        ("OBXXXX1A.dcm", &["OBXXXX1A_expb.dcm"]),
    ];
    let mut problems = Vec::new();
    for (base, others) in twins {
        let a = metadata(base).unwrap();
        for other in *others {
            let b = metadata(other).unwrap();
            for (level, x, y) in [
                ("Patient", &a.patient, &b.patient),
                ("Study", &a.study, &b.study),
                ("Series", &a.series, &b.series),
            ] {
                if x != y {
                    problems.push(format!("{base} vs {other}: {level} differs"));
                }
            }
            let (x, y) = (without_meta(&a.instance), without_meta(&b.instance));
            for (k, v) in &x {
                if y.get(k) != Some(v) {
                    problems.push(format!("{base} vs {other}: {k}: {v} != {:?}", y.get(k)));
                }
            }
            for k in y.keys() {
                if !x.contains_key(k) {
                    problems.push(format!("{base} vs {other}: extra {k}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
