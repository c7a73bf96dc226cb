//! Real AWS output as the oracle: rebuild a P10 file holding exactly the attributes of a
//! `GetImageSetMetadata` document returned by HealthImaging (tests/aws/ct-jpeg-lossy.json), parse
//! it, and check that our document equals AWS's, key order included. Values are written the way
//! DICOM stores them: text padded to even length (NUL for UI, space otherwise), IS/DS exactly as
//! AWS shows them (AWS keeps their padding).

use base64::Engine as _;
use dicom_core::VR;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use lightbox_dicom::{FrameEntry, Limits, MetadataDocument, StoredInstance, parse_p10};
use serde_json::{Map, Value};

fn long_form(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

fn header(out: &mut Vec<u8>, g: u16, e: u16, vr: VR, len: u32) {
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend_from_slice(vr.to_string().as_bytes());
    if long_form(vr) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    }
}

fn value_bytes(vr: VR, v: &Value) -> Vec<u8> {
    let items: Vec<&Value> = match v {
        Value::Null => return Vec::new(),
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    match vr {
        VR::US => items
            .iter()
            .flat_map(|x| (x.as_u64().unwrap() as u16).to_le_bytes())
            .collect(),
        VR::UL => items
            .iter()
            .flat_map(|x| (x.as_u64().unwrap() as u32).to_le_bytes())
            .collect(),
        VR::SS => items
            .iter()
            .flat_map(|x| (x.as_i64().unwrap() as i16).to_le_bytes())
            .collect(),
        VR::OB => base64::engine::general_purpose::STANDARD
            .decode(items[0].as_str().unwrap())
            .unwrap(),
        _ => {
            let joined = items
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("\\");
            let mut b = joined.into_bytes();
            if b.len() % 2 == 1 {
                b.push(if vr == VR::UI { 0 } else { b' ' });
            }
            b
        }
    }
}

/// Explicit VR Little Endian encoding of a keyword-keyed map, in tag order.
fn encode(map: &Map<String, Value>) -> Vec<u8> {
    let mut elems: Vec<(u16, u16, VR, &Value)> = map
        .iter()
        .map(|(k, v)| {
            let e = StandardDataDictionary
                .by_name(k)
                .unwrap_or_else(|| panic!("{k}"));
            let t = e.tag();
            (t.0, t.1, e.vr().relaxed(), v)
        })
        .collect();
    elems.sort_by_key(|(g, e, _, _)| (*g, *e));
    let mut out = Vec::new();
    for (g, e, vr, v) in elems {
        if vr == VR::SQ {
            header(&mut out, g, e, vr, u32::MAX);
            for item in v.as_array().unwrap() {
                let body = encode(item.as_object().unwrap());
                out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend(body);
            }
            out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        } else {
            let b = value_bytes(vr, v);
            header(&mut out, g, e, vr, b.len() as u32);
            out.extend(b);
        }
    }
    out
}

#[test]
fn our_document_equals_aws_output() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws/ct-jpeg-lossy.json");
    let aws: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let study = &aws["Study"];
    let (series_uid, series) = study["Series"].as_object().unwrap().iter().next().unwrap();
    let (sop_uid, instance) = series["Instances"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();

    // One flat data set from all levels; group 0002 goes to the meta group.
    let mut meta = Map::new();
    let mut dataset = Map::new();
    for level in [
        &aws["Patient"]["DICOM"],
        &study["DICOM"],
        &series["DICOM"],
        &instance["DICOM"],
    ] {
        for (k, v) in level.as_object().unwrap() {
            let tag = StandardDataDictionary.by_name(k).unwrap().tag();
            if tag.0 == 0x0002 {
                meta.insert(k.clone(), v.clone());
            } else {
                dataset.insert(k.clone(), v.clone());
            }
        }
    }
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend(encode(&meta));
    file.extend(encode(&dataset));
    // Encapsulated Pixel Data: empty offset table, one fragment.
    file.extend_from_slice(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    file.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    file.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xD9]);
    file.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);

    let p = parse_p10(&file, &Limits::default()).unwrap();
    assert_eq!(&p.series_instance_uid, series_uid);
    assert_eq!(&p.sop_instance_uid, sop_uid);
    assert_eq!(p.transfer_syntax, "1.2.840.10008.1.2.4.51");

    let frame = &instance["ImageFrames"][0];
    let stored = StoredInstance {
        stored_transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
        frames: vec![FrameEntry {
            id: frame["ID"].as_str().unwrap().into(),
            checksums: vec![(640, 640, 989529591)],
            min_pixel_value: Some(0),
            max_pixel_value: Some(2025),
            frame_size_in_bytes: 168371,
        }],
    };
    let mut doc = MetadataDocument::new(
        aws["DatastoreID"].as_str().unwrap(),
        aws["ImageSetID"].as_str().unwrap(),
    );
    doc.put_instance(&p.metadata, series_uid, sop_uid, &stored);
    let mut ours: Value = serde_json::from_slice(&doc.to_json_bytes()).unwrap();
    // Documented deviation: we write `"PixelData": null` (AWS DG example); this AWS output
    // omits the key.
    let inst = &mut ours["Study"]["Series"][series_uid]["Instances"][sop_uid]["DICOM"];
    assert_eq!(
        inst.as_object_mut().unwrap().shift_remove("PixelData"),
        Some(Value::Null)
    );

    let ours_text = serde_json::to_string_pretty(&ours).unwrap();
    let aws_text = serde_json::to_string_pretty(&aws).unwrap();
    if ours_text != aws_text {
        let diff: Vec<String> = ours_text
            .lines()
            .zip(aws_text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {i}: ours {a:?} aws {b:?}"))
            .collect();
        panic!("document differs from AWS output:\n{}", diff.join("\n"));
    }
}
