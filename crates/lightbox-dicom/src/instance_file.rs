//! DICOM PS3.10 files rebuilt from DICOM JSON (GetDICOMInstance, notes §11.1): the data set of
//! [`MetadataDocument::instance_dicom_json`](crate::MetadataDocument::instance_dicom_json)
//! turned back into a dicom-rs object ([`dataset_from_dicom_json`]) and written by dicom-rs with
//! a File Meta Information group naming Lightbox, split around the Pixel Data ([`p10_parts`]) so
//! the frames can be streamed in between: native samples after [`native_pixel_data_header`], or
//! an encapsulated fragment sequence ([`encapsulated_pixel_data_header`] with its Basic Offset
//! Table, one [`item_header`] per frame, [`SEQUENCE_DELIMITATION`]). [`write_p10`] does it all
//! in memory.
//!
//! Conversion rules (the inverse of PS3.18 F.2 as `dicom_json.rs` writes it): IS / DS numbers
//! become their shortest decimal text; PN objects become `Alphabetic=Ideographic=Phonetic`
//! (trailing empty groups dropped); AT strings become tags; `InlineBinary` becomes the decoded
//! little-endian bytes; `BulkDataURI` values cannot be resolved here and are an error (callers
//! ask for InlineBinary only); `null` values are empty. Group 0002 is never part of the data
//! set. Errors name tags and VRs, never values.

use base64::Engine as _;
use dicom_core::header::Header;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{Map, Value};

/// Lightbox's Implementation Class UID (a UUID-derived `2.25` UID, PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.163018594431562829164216127838921702453";
/// Lightbox's Implementation Version Name: `LIGHTBOX_` and the crate version (at most 16
/// characters, checked at compile time).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("LIGHTBOX_", env!("CARGO_PKG_VERSION"));
const _: () = assert!(IMPLEMENTATION_VERSION_NAME.len() <= 16);
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Why a data set or file could not be built. Messages name tags and VRs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFileError(pub String);

impl std::fmt::Display for InstanceFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InstanceFileError {}

/// The Pixel Data of a rebuilt instance.
#[derive(Debug, Clone)]
pub enum PixelData {
    /// No Pixel Data element.
    None,
    /// Native samples (all frames, concatenated), written as OB when BitsAllocated ≤ 8,
    /// else OW.
    Native { bytes: Vec<u8>, bits_allocated: u16 },
    /// Encapsulated: one fragment per frame (odd lengths padded with a zero byte), with a
    /// filled Basic Offset Table (`offset_table`, when every offset fits in 32 bits) or an
    /// empty one.
    Encapsulated {
        frames: Vec<Vec<u8>>,
        offset_table: bool,
    },
}

fn err(tag: Tag, what: &str) -> InstanceFileError {
    InstanceFileError(format!(
        "attribute ({:04X},{:04X}): {what}",
        tag.group(),
        tag.element()
    ))
}

/// The data set described by a DICOM JSON object (PS3.18 F.2). Group 0002 keys are skipped.
pub fn dataset_from_dicom_json(
    json: &Map<String, Value>,
) -> Result<InMemDicomObject, InstanceFileError> {
    let mut obj = InMemDicomObject::new_empty();
    for (key, attr) in json {
        let tag = parse_tag(key)
            .ok_or_else(|| InstanceFileError("a DICOM JSON key is not a tag".into()))?;
        if tag.group() == 0x0002 {
            continue;
        }
        obj.put(element(tag, attr)?);
    }
    Ok(obj)
}

fn parse_tag(key: &str) -> Option<Tag> {
    if key.len() != 8 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let g = u16::from_str_radix(&key[..4], 16).ok()?;
    let e = u16::from_str_radix(&key[4..], 16).ok()?;
    Some(Tag(g, e))
}

fn element(tag: Tag, attr: &Value) -> Result<DataElement<InMemDicomObject>, InstanceFileError> {
    let attr = attr
        .as_object()
        .ok_or_else(|| err(tag, "not a JSON object"))?;
    let vr: VR = attr
        .get("vr")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(tag, "missing or unknown VR"))?;
    if attr.contains_key("BulkDataURI") {
        return Err(err(tag, "bulk data cannot be resolved"));
    }
    if let Some(b64) = attr.get("InlineBinary") {
        let text = b64
            .as_str()
            .ok_or_else(|| err(tag, "InlineBinary is not a string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| err(tag, "InlineBinary is not base64"))?;
        return Ok(DataElement::new(tag, vr, PrimitiveValue::U8(bytes.into())));
    }
    let values: &[Value] = match attr.get("Value") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err(tag, "Value is not an array")),
    };
    if vr == VR::SQ {
        let items = values
            .iter()
            .map(|item| match item {
                Value::Object(m) => dataset_from_dicom_json(m),
                Value::Null => Ok(InMemDicomObject::new_empty()),
                _ => Err(err(tag, "a sequence item is not an object")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(DataElement::new(
            tag,
            VR::SQ,
            DataSetSequence::new(items, Length::UNDEFINED),
        ));
    }
    if values.is_empty() {
        return Ok(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }
    Ok(DataElement::new(tag, vr, primitive(tag, vr, values)?))
}

fn primitive(tag: Tag, vr: VR, values: &[Value]) -> Result<PrimitiveValue, InstanceFileError> {
    let bad = || err(tag, &format!("a value does not fit VR {vr}"));
    macro_rules! numbers {
        ($variant:ident, $conv:expr) => {
            PrimitiveValue::$variant(
                values
                    .iter()
                    .map(|v| $conv(v).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    let int = |v: &Value| -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let uint = |v: &Value| -> Option<u64> {
        match v {
            Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|i| i as u64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let float = |v: &Value| -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    Ok(match vr {
        VR::US => numbers!(U16, |v| uint(v).map(|x| x as u16)),
        VR::SS => numbers!(I16, |v| int(v).map(|x| x as i16)),
        VR::UL => numbers!(U32, |v| uint(v).map(|x| x as u32)),
        VR::SL => numbers!(I32, |v| int(v).map(|x| x as i32)),
        VR::UV => numbers!(U64, uint),
        VR::SV => numbers!(I64, int),
        VR::FL => numbers!(F32, |v| float(v).map(|x| x as f32)),
        VR::FD => numbers!(F64, float),
        VR::AT => numbers!(Tags, |v: &Value| v.as_str().and_then(parse_tag)),
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN => {
            return Err(err(tag, "a binary value without InlineBinary"));
        }
        VR::PN => PrimitiveValue::Strs(
            values
                .iter()
                .map(|v| person_name(v).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        _ => PrimitiveValue::Strs(
            values
                .iter()
                .map(|v| match v {
                    Value::Null => Some(String::new()),
                    Value::String(s) => Some(s.clone()),
                    // IS / DS as JSON numbers: the shortest text that reads back the same.
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .map(|s| s.ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A PN value object as `Alphabetic=Ideographic=Phonetic`.
fn person_name(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => {
            let part = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
            let mut groups = vec![part("Alphabetic"), part("Ideographic"), part("Phonetic")];
            while groups.last().is_some_and(|g| g.is_empty()) {
                groups.pop();
            }
            Some(groups.join("="))
        }
        _ => None,
    }
}

/// A PS3.10 file around its Pixel Data, for streaming the pixels between the two.
#[derive(Debug, Clone)]
pub struct P10Parts {
    /// Preamble, `DICM`, File Meta Information and the elements before (7FE0,0010).
    pub head: Vec<u8>,
    /// The elements after (7FE0,0010) (e.g. a Data Set Trailing Padding).
    pub tail: Vec<u8>,
}

/// The file around the Pixel Data of `dataset` (any Pixel Data in it is dropped): 128-byte
/// preamble, `DICM`, the File Meta Information (SOP Class and Instance UIDs from the data set,
/// `transfer_syntax`, Lightbox's implementation), then the data set in Explicit VR Little
/// Endian (the data set encoding of every native-little-endian and encapsulated syntax).
pub fn p10_parts(
    dataset: InMemDicomObject,
    transfer_syntax: &str,
) -> Result<P10Parts, InstanceFileError> {
    let text = |tag: Tag| -> String {
        dataset
            .element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(text(tags::SOP_CLASS_UID))
        .media_storage_sop_instance_uid(text(tags::SOP_INSTANCE_UID))
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| InstanceFileError(format!("file meta information: {e}")))?;
    // Text after the Pixel Data is encoded in the data set's character set.
    let charset = text(tags::SPECIFIC_CHARACTER_SET);
    let charset = charset
        .split('\\')
        .find(|c| !c.is_empty())
        .and_then(SpecificCharacterSet::from_code)
        .unwrap_or_default();
    let (before, after): (Vec<_>, Vec<_>) = dataset
        .into_iter()
        .filter(|e| e.tag() != tags::PIXEL_DATA)
        .partition(|e| e.tag() < tags::PIXEL_DATA);
    let ele = TransferSyntaxRegistry
        .get(EXPLICIT_VR_LITTLE_ENDIAN)
        .ok_or_else(|| InstanceFileError("Explicit VR Little Endian is not registered".into()))?;
    let mut head = Vec::new();
    head.extend_from_slice(&[0u8; 128]);
    head.extend_from_slice(b"DICM");
    meta.write(&mut head)
        .map_err(|e| InstanceFileError(format!("writing file meta information: {e}")))?;
    InMemDicomObject::from_element_iter(before)
        .write_dataset_with_ts(&mut head, ele)
        .map_err(|e| InstanceFileError(format!("writing the data set: {e}")))?;
    let mut tail = Vec::new();
    if !after.is_empty() {
        InMemDicomObject::from_element_iter(after)
            .write_dataset_with_ts_cs(&mut tail, ele, charset)
            .map_err(|e| InstanceFileError(format!("writing the data set: {e}")))?;
    }
    Ok(P10Parts { head, tail })
}

/// The header of a native Pixel Data element of `value_len` bytes (even), in Explicit VR Little
/// Endian: OB when BitsAllocated ≤ 8, else OW.
pub fn native_pixel_data_header(
    value_len: u64,
    bits_allocated: u16,
) -> Result<[u8; 12], InstanceFileError> {
    let len = u32::try_from(value_len)
        .ok()
        .filter(|l| *l < u32::MAX && l % 2 == 0)
        .ok_or_else(|| {
            InstanceFileError("the pixel data is too large for a native value".into())
        })?;
    let vr = if bits_allocated <= 8 { b"OB" } else { b"OW" };
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&[0xE0, 0x7F, 0x10, 0x00]);
    h[4..6].copy_from_slice(vr);
    h[8..].copy_from_slice(&len.to_le_bytes());
    Ok(h)
}

/// The header of an encapsulated Pixel Data element (undefined length) and its Basic Offset
/// Table item holding `offsets` (empty: an empty table).
pub fn encapsulated_pixel_data_header(offsets: &[u32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(20 + offsets.len() * 4);
    h.extend_from_slice(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    h.extend_from_slice(&item_header((offsets.len() * 4) as u32));
    for o in offsets {
        h.extend_from_slice(&o.to_le_bytes());
    }
    h
}

/// The header of an item (a fragment) of `len` bytes (even).
pub fn item_header(len: u32) -> [u8; 8] {
    let mut h = [0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0];
    h[4..].copy_from_slice(&len.to_le_bytes());
    h
}

/// The Sequence Delimitation Item that ends encapsulated Pixel Data.
pub const SEQUENCE_DELIMITATION: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];

/// The Basic Offset Table of fragments of these sizes (before padding to even lengths): each
/// fragment's offset from the first one's item tag. Empty when an offset does not fit in 32
/// bits (PS3.5 A.4 allows an empty table).
pub fn basic_offsets(fragment_sizes: &[u64]) -> Vec<u32> {
    let mut out = Vec::with_capacity(fragment_sizes.len());
    let mut at: u64 = 0;
    for size in fragment_sizes {
        let Ok(o) = u32::try_from(at) else {
            return Vec::new();
        };
        out.push(o);
        at += 8 + size.next_multiple_of(2);
    }
    out
}

/// Writes a whole PS3.10 file in memory: [`p10_parts`] with `pixel` as its Pixel Data.
pub fn write_p10(
    dataset: InMemDicomObject,
    transfer_syntax: &str,
    pixel: PixelData,
) -> Result<Vec<u8>, InstanceFileError> {
    let P10Parts { mut head, tail } = p10_parts(dataset, transfer_syntax)?;
    match pixel {
        PixelData::None => {}
        PixelData::Native {
            bytes,
            bits_allocated,
        } => {
            let len = (bytes.len() as u64).next_multiple_of(2);
            head.extend_from_slice(&native_pixel_data_header(len, bits_allocated)?);
            head.extend_from_slice(&bytes);
            if bytes.len() % 2 == 1 {
                head.push(0);
            }
        }
        PixelData::Encapsulated {
            frames,
            offset_table,
        } => {
            let offsets = if offset_table {
                basic_offsets(&frames.iter().map(|f| f.len() as u64).collect::<Vec<_>>())
            } else {
                Vec::new()
            };
            head.extend_from_slice(&encapsulated_pixel_data_header(&offsets));
            for f in frames {
                let len = u32::try_from(f.len().next_multiple_of(2))
                    .map_err(|_| InstanceFileError("a frame is too large for a fragment".into()))?;
                head.extend_from_slice(&item_header(len));
                head.extend_from_slice(&f);
                if f.len() % 2 == 1 {
                    head.push(0);
                }
            }
            head.extend_from_slice(&SEQUENCE_DELIMITATION);
        }
    }
    head.extend_from_slice(&tail);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::OpenFileOptions;

    #[test]
    fn round_trips_dicom_json() {
        let json: Map<String, Value> = serde_json::from_str(
            r#"{
            "00020010": {"vr": "UI", "Value": ["1.2.840.10008.1.2.4.202"]},
            "00080016": {"vr": "UI", "Value": ["1.2.3"]},
            "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
            "00081140": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2"]}}]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J", "Ideographic": "X"}]},
            "00200013": {"vr": "IS", "Value": [7]},
            "00280030": {"vr": "DS", "Value": [0.5, 1.25]},
            "00280010": {"vr": "US", "Value": [2]},
            "00280011": {"vr": "US", "Value": [2]},
            "00280100": {"vr": "US", "Value": [8]},
            "00291010": {"vr": "OB", "InlineBinary": "AQID"},
            "00209165": {"vr": "AT", "Value": ["00100020"]},
            "00081030": {"vr": "LO"}
        }"#,
        )
        .unwrap();
        let obj = dataset_from_dicom_json(&json).unwrap();
        let bytes = write_p10(
            obj,
            EXPLICIT_VR_LITTLE_ENDIAN,
            PixelData::Native {
                bytes: vec![1, 2, 3, 4],
                bits_allocated: 8,
            },
        )
        .unwrap();
        let file = OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .expect("reads back");
        assert_eq!(file.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
        assert_eq!(file.meta().media_storage_sop_instance_uid(), "1.2.3.4");
        let s = |t: Tag| file.element(t).unwrap().to_str().unwrap().to_string();
        assert_eq!(s(tags::PATIENT_NAME), "Doe^J=X");
        assert_eq!(s(tags::PIXEL_SPACING), "0.5\\1.25");
        assert_eq!(s(tags::INSTANCE_NUMBER), "7");
        assert_eq!(
            file.element(Tag(0x0029, 0x1010))
                .unwrap()
                .to_bytes()
                .unwrap()[..3],
            [1, 2, 3]
        );
        assert_eq!(
            file.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap()[..],
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn encapsulated_pixel_data() {
        let json: Map<String, Value> = serde_json::from_str(
            r#"{"00080016": {"vr": "UI", "Value": ["1.2.3"]},
                "00080018": {"vr": "UI", "Value": ["1.2.3.4"]}}"#,
        )
        .unwrap();
        let obj = dataset_from_dicom_json(&json).unwrap();
        let bytes = write_p10(
            obj,
            "1.2.840.10008.1.2.4.90",
            PixelData::Encapsulated {
                frames: vec![vec![1, 2, 3], vec![4, 5]],
                offset_table: true,
            },
        )
        .unwrap();
        let file = OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .expect("reads back");
        let pixel = file.element(tags::PIXEL_DATA).unwrap();
        assert_eq!(pixel.offset_table().unwrap().to_vec(), vec![0, 12]);
        let fragments: Vec<Vec<u8>> = pixel.fragments().unwrap().to_vec();
        assert_eq!(fragments, vec![vec![1, 2, 3, 0], vec![4, 5]]);
        assert!(bytes.ends_with(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]));
        // Without a table: an empty Basic Offset Table item.
        let bytes = write_p10(
            dataset_from_dicom_json(&json).unwrap(),
            "1.2.840.10008.1.2.4.90",
            PixelData::Encapsulated {
                frames: vec![vec![1, 2]],
                offset_table: false,
            },
        )
        .unwrap();
        let file = OpenFileOptions::new().from_reader(&bytes[128..]).unwrap();
        let pixel = file.element(tags::PIXEL_DATA).unwrap();
        assert!(pixel.offset_table().unwrap().is_empty());
        assert_eq!(pixel.fragments().unwrap().len(), 1);
    }

    #[test]
    fn elements_after_pixel_data_follow_it() {
        let json: Map<String, Value> = serde_json::from_str(
            r#"{"00080016": {"vr": "UI", "Value": ["1.2.3"]},
                "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
                "FFFCFFFC": {"vr": "OB", "InlineBinary": "AAAA"}}"#,
        )
        .unwrap();
        let parts = p10_parts(
            dataset_from_dicom_json(&json).unwrap(),
            EXPLICIT_VR_LITTLE_ENDIAN,
        )
        .unwrap();
        assert_eq!(parts.tail.len(), 12 + 4);
        let bytes = write_p10(
            dataset_from_dicom_json(&json).unwrap(),
            EXPLICIT_VR_LITTLE_ENDIAN,
            PixelData::Native {
                bytes: vec![7; 3],
                bits_allocated: 8,
            },
        )
        .unwrap();
        assert!(bytes.ends_with(&parts.tail));
        let file = OpenFileOptions::new().from_reader(&bytes[128..]).unwrap();
        assert_eq!(
            file.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap()[..],
            [7, 7, 7, 0]
        );
        assert_eq!(
            file.element(Tag(0xFFFC, 0xFFFC))
                .unwrap()
                .to_bytes()
                .unwrap()[..],
            [0, 0, 0, 0]
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(basic_offsets(&[3, 2, 10]), vec![0, 12, 22]);
        assert!(basic_offsets(&[u64::from(u32::MAX), 2]).is_empty());
        assert!(native_pixel_data_header(u64::from(u32::MAX) + 1, 16).is_err());
    }

    #[test]
    fn bulk_data_uris_are_refused() {
        let json: Map<String, Value> =
            serde_json::from_str(r#"{"00420011": {"vr": "OB", "BulkDataURI": "http://x"}}"#)
                .unwrap();
        let e = dataset_from_dicom_json(&json).unwrap_err();
        assert!(e.0.contains("(0042,0011)"), "{}", e.0);
    }
}
