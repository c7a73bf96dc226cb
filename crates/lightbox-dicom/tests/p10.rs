//! Synthetic variations of real files: every transfer syntax HealthImaging accepts, limits,
//! element constraints, missing attributes, and meta-less files.

mod common;

use lightbox_dicom::{Limits, parse_p10};

/// Explicit VR Little Endian element bytes.
fn element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&group.to_le_bytes());
    v.extend_from_slice(&elem.to_le_bytes());
    v.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" | b"UC" | b"UR") {
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    v.extend_from_slice(value);
    v
}

fn padded(s: &str, pad: u8) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    if b.len() % 2 == 1 {
        b.push(pad);
    }
    b
}

/// A P10 file: preamble, DICM, a meta group with the given TS (or none), then `dataset`.
fn p10(ts: Option<&str>, dataset: &[u8]) -> Vec<u8> {
    let mut meta = element(0x0002, 0x0001, b"OB", &[0, 1]);
    meta.extend(element(
        0x0002,
        0x0002,
        b"UI",
        &padded("1.2.840.10008.5.1.4.1.1.7", 0),
    ));
    meta.extend(element(0x0002, 0x0003, b"UI", &padded("1.2.3.4", 0)));
    if let Some(ts) = ts {
        meta.extend(element(0x0002, 0x0010, b"UI", &padded(ts, 0)));
    }
    meta.extend(element(0x0002, 0x0012, b"UI", &padded("1.2.3.5", 0)));
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend(element(
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    ));
    out.extend(meta);
    out.extend_from_slice(dataset);
    out
}

/// The data set of a real file (everything after its meta group).
fn dataset_of(name: &str) -> Option<Vec<u8>> {
    let bytes = common::read(name)?;
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    Some(bytes[144 + group_len..].to_vec())
}

/// A minimal Explicit VR Little Endian data set with the required identifiers.
fn minimal(extra: &[(u16, u16, &[u8; 2], String)]) -> Vec<u8> {
    let mut items: Vec<(u16, u16, [u8; 2], Vec<u8>)> = vec![
        (
            0x0008,
            0x0016,
            *b"UI",
            padded("1.2.840.10008.5.1.4.1.1.7", 0),
        ),
        (0x0008, 0x0018, *b"UI", padded("1.2.3.4", 0)),
        (0x0020, 0x000D, *b"UI", padded("1.2.3.6", 0)),
        (0x0020, 0x000E, *b"UI", padded("1.2.3.7", 0)),
    ];
    for (g, e, vr, v) in extra {
        items.push((*g, *e, **vr, padded(v, b' ')));
    }
    items.sort_by_key(|(g, e, _, _)| (*g, *e));
    items
        .iter()
        .flat_map(|(g, e, vr, v)| element(*g, *e, vr, v))
        .collect()
}

#[test]
fn every_accepted_encapsulated_syntax_parses() {
    // AWS DG "Supported transfer syntaxes" (notes §6.2); the data set of an encapsulated syntax
    // is Explicit VR Little Endian whatever the codec.
    let syntaxes = [
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.100.1",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.101.1",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.103.1",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.104.1",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.105.1",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.106.1",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
        "1.2.840.10008.1.2.4.112",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.5",
    ];
    let Some(dataset) = dataset_of("MR_small_RLE.dcm") else {
        return;
    };
    for ts in syntaxes {
        let p = parse_p10(&p10(Some(ts), &dataset), &Limits::default())
            .unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert_eq!(p.transfer_syntax, ts);
        assert_eq!(p.metadata.instance["TransferSyntaxUID"], ts);
        assert!(matches!(
            p.object
                .element(dicom_core_tag_pixel_data())
                .unwrap()
                .value(),
            dicom_core::value::Value::PixelSequence(_)
        ));
    }
}

fn dicom_core_tag_pixel_data() -> dicom_core::Tag {
    dicom_core::Tag(0x7FE0, 0x0010)
}

#[test]
fn native_syntaxes_and_meta_variants() {
    for (name, ts) in [
        ("MR_small.dcm", "1.2.840.10008.1.2.1"),
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
        ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
    ] {
        let Some(bytes) = common::read(name) else {
            return;
        };
        let p = parse_p10(&bytes, &Limits::default()).unwrap();
        assert_eq!(p.transfer_syntax, ts, "{name}");
        assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
        // Without the meta group the same data set is detected (except deflate, which has no
        // meaning without its meta group).
        if ts != "1.2.840.10008.1.2.1.99" {
            let bare = dataset_of(name).unwrap();
            let q = parse_p10(&bare, &Limits::default()).unwrap();
            assert_eq!(q.transfer_syntax, ts, "{name} without meta");
            assert!(q.meta_synthesized);
            assert_eq!(q.sop_instance_uid, p.sop_instance_uid);
            assert_eq!(q.metadata.patient, p.metadata.patient);
            // A meta group without TransferSyntaxUID: detected, with a warning.
            let r = parse_p10(&p10(None, &bare), &Limits::default()).unwrap();
            assert_eq!(r.transfer_syntax, ts, "{name} meta without TS");
            assert_eq!(r.warnings.len(), 1);
        }
    }
}

#[test]
fn required_attributes_and_constraints() {
    let ok = parse_p10(
        &p10(Some("1.2.840.10008.1.2.1"), &minimal(&[])),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(ok.sop_instance_uid, "1.2.3.4");
    assert_eq!(ok.grouping.series_instance_uid.as_deref(), Some("1.2.3.7"));

    // Drop each required attribute in turn.
    for (tag, keyword) in [
        ((0x0008u16, 0x0016u16), "SOPClassUID"),
        ((0x0008, 0x0018), "SOPInstanceUID"),
        ((0x0020, 0x000D), "StudyInstanceUID"),
        ((0x0020, 0x000E), "SeriesInstanceUID"),
    ] {
        let full = minimal(&[]);
        // Rebuild without that element.
        let mut ds = Vec::new();
        let mut pos = 0;
        while pos < full.len() {
            let g = u16::from_le_bytes([full[pos], full[pos + 1]]);
            let e = u16::from_le_bytes([full[pos + 2], full[pos + 3]]);
            let len = u16::from_le_bytes([full[pos + 6], full[pos + 7]]) as usize;
            if (g, e) != tag {
                ds.extend_from_slice(&full[pos..pos + 8 + len]);
            }
            pos += 8 + len;
        }
        let e = parse_p10(&p10(Some("1.2.840.10008.1.2.1"), &ds), &Limits::default()).unwrap_err();
        assert_eq!(
            e.message,
            format!("DICOM attribute {keyword} does not exist")
        );
        assert_eq!(e.exception_type, "ValidationException");
    }

    // Maximum lengths (notes §4.5), value never echoed.
    let long_name = "A".repeat(257);
    let e = parse_p10(
        &p10(
            Some("1.2.840.10008.1.2.1"),
            &minimal(&[(0x0010, 0x0010, b"PN", long_name.clone())]),
        ),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "DICOM attribute PatientName exceeds the maximum length of 256"
    );
    assert!(!e.message.contains("AAAA"));
    let e = parse_p10(
        &p10(
            Some("1.2.840.10008.1.2.1"),
            &minimal(&[(0x0008, 0x0020, b"DA", "2020010120200101".repeat(2))]),
        ),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("StudyDate"), "{}", e.message);
    // 256 is fine.
    assert!(
        parse_p10(
            &p10(
                Some("1.2.840.10008.1.2.1"),
                &minimal(&[(0x0010, 0x0010, b"PN", "A".repeat(256))]),
            ),
            &Limits::default(),
        )
        .is_ok()
    );
}

#[test]
fn limits_are_enforced() {
    let file = p10(Some("1.2.840.10008.1.2.1"), &minimal(&[]));
    let small = Limits {
        max_file_bytes: 100,
        ..Limits::default()
    };
    assert!(
        parse_p10(&file, &small)
            .unwrap_err()
            .message
            .contains("larger")
    );

    // Nested sequences deeper than the limit.
    let mut nested: Vec<u8> = Vec::new();
    for _ in 0..40 {
        nested.extend(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        nested.extend(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    let mut ds = minimal(&[]);
    ds.extend(nested);
    let e = parse_p10(&p10(Some("1.2.840.10008.1.2.1"), &ds), &Limits::default()).unwrap_err();
    assert!(e.message.contains("nested deeper than 32"), "{}", e.message);

    // A declared length far past the end of the file.
    let mut ds = minimal(&[]);
    ds.extend(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 1, 2,
    ]);
    let e = parse_p10(&p10(Some("1.2.840.10008.1.2.1"), &ds), &Limits::default()).unwrap_err();
    assert_eq!(e.message, "File is truncated");

    // Not DICOM.
    let e = parse_p10(b"hello world, this is not a DICOM file", &Limits::default()).unwrap_err();
    assert_eq!(e.message, "Not a DICOM file");
    let e = parse_p10(&[], &Limits::default()).unwrap_err();
    assert_eq!(e.message, "Not a DICOM file");
}

#[test]
fn grouping_and_search_tags() {
    let Some(bytes) = common::read("CT_small.dcm") else {
        return;
    };
    let p = parse_p10(&bytes, &Limits::default()).unwrap();
    assert_eq!(p.grouping.patient_id.as_deref(), Some("1CT1"));
    assert_eq!(p.grouping.series_number.as_deref(), Some("1"));
    assert_eq!(p.grouping.accession_number, None);
    assert_eq!(p.search.series_number, Some(1));
    assert_eq!(p.search.series_modality.as_deref(), Some("CT"));
    assert_eq!(
        p.search.patient_name.as_deref(),
        Some("CompressedSamples^CT1")
    );
    assert_eq!(p.search.study_date.as_deref(), Some("20040119"));
    // Hoisting: patient/study/series attributes are not repeated at instance level.
    let md = &p.metadata;
    assert!(md.patient.contains_key("PatientName"));
    assert!(md.study.contains_key("PatientWeight"));
    assert!(md.series.contains_key("Manufacturer"));
    for k in [
        "PatientName",
        "StudyDate",
        "Manufacturer",
        "SeriesInstanceUID",
    ] {
        assert!(!md.instance.contains_key(k), "{k} at instance level");
    }
    assert_eq!(md.instance["TransferSyntaxUID"], "1.2.840.10008.1.2.1");
    assert_eq!(md.instance["PixelData"], serde_json::Value::Null);
    assert_eq!(md.series["SeriesNumber"], "1 ");
    assert_eq!(md.dicom_vrs["00091001"], "LO");
}

/// Regression (mutation test): a meta group element whose VR was flipped to OV with a length
/// that is not a multiple of 8 made dicom-rs lose its place and allocate ~775 MB.
#[test]
fn meta_group_lengths_are_checked() {
    let mut file = p10(Some("1.2.840.10008.1.2.1"), &minimal(&[]));
    // (0002,0001) OB → OV, length 2.
    let at = file
        .windows(6)
        .position(|w| w == [2, 0, 1, 0, b'O', b'B'])
        .unwrap();
    file[at + 5] = b'V';
    let e = parse_p10(&file, &Limits::default()).unwrap_err();
    assert_eq!(e.message, "Invalid file meta information");
}

/// Deflated data sets are inflated under a cap; a small bomb is refused, not inflated.
#[test]
fn deflate_is_capped() {
    use std::io::Write;
    let mut dataset = minimal(&[]);
    // 8 MB of zeros in one OB element compresses to a few KB.
    let big = 8u32 << 20;
    dataset.extend(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    dataset.extend(big.to_le_bytes());
    dataset.resize(dataset.len() + big as usize, 0);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&dataset).unwrap();
    let deflated = enc.finish().unwrap();
    assert!(deflated.len() < 64 << 10);
    let file = p10(Some("1.2.840.10008.1.2.1.99"), &deflated);
    let limits = Limits {
        max_inflated_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = parse_p10(&file, &limits).unwrap_err();
    assert!(
        e.message.contains("inflated data set is larger"),
        "{}",
        e.message
    );
    // Within the cap it parses.
    let p = parse_p10(&file, &Limits::default()).unwrap();
    assert_eq!(p.transfer_syntax, "1.2.840.10008.1.2.1.99");
    // Corrupt deflate stream.
    let mut bad = file.clone();
    let n = bad.len();
    bad.truncate(n - deflated.len() / 2);
    assert!(parse_p10(&bad, &Limits::default()).is_err());
}
