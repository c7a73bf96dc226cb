//! Golden metadata documents for a few real files (tests/golden/*.json). Regenerate with
//! `LIGHTBOX_UPDATE_GOLDEN=1 cargo test -p lightbox-dicom --test golden` and review the diff.

mod common;

use lightbox_dicom::{FrameEntry, Limits, MetadataDocument, StoredInstance, parse_p10};
use std::path::PathBuf;

const GOLDEN: &[&str] = &[
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "emri_small.dcm",
    "test-SR.dcm",
    "ExplVR_BigEndNoMeta.dcm",
];

/// The document for one file, with deterministic fake frames (one per frame).
pub fn document_for(name: &str, bytes: &[u8]) -> MetadataDocument {
    let p = parse_p10(bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let frames = p
        .metadata
        .instance
        .get("NumberOfFrames")
        .and_then(|v| v.as_str())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(usize::from(p.metadata.instance.contains_key("PixelData")));
    let stored = StoredInstance {
        stored_transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
        frames: (0..frames)
            .map(|i| FrameEntry {
                id: format!("{i:032x}"),
                checksums: vec![(1, 1, i as u32)],
                min_pixel_value: Some(0),
                max_pixel_value: Some(1),
                frame_size_in_bytes: 1,
            })
            .collect(),
    };
    let mut doc = MetadataDocument::new(&"d".repeat(32), &"i".repeat(32));
    doc.put_instance(
        &p.metadata,
        &p.series_instance_uid,
        &p.sop_instance_uid,
        &stored,
    );
    doc
}

#[test]
fn golden_documents() {
    if common::corpus().is_none() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("LIGHTBOX_UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for name in GOLDEN {
        let bytes = common::read(name).unwrap();
        let doc = document_for(name, &bytes);
        let value: serde_json::Value = serde_json::from_slice(&doc.to_json_bytes()).unwrap();
        let mut pretty = serde_json::to_string_pretty(&value).unwrap();
        pretty.push('\n');
        let path = dir.join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &pretty).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != pretty {
            mismatches.push(name);
        }
        // The stored document round-trips byte for byte.
        let back = MetadataDocument::from_gzip(&doc.to_gzip()).unwrap();
        assert_eq!(back.to_json_bytes(), doc.to_json_bytes());
    }
    assert!(
        mismatches.is_empty(),
        "golden documents differ: {mismatches:?} (LIGHTBOX_UPDATE_GOLDEN=1 rewrites them)"
    );
}
