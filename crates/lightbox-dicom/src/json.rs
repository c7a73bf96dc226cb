//! DICOM elements → the attribute encoding of the HealthImaging metadata document (notes §5.2).
//!
//! * Keys are standard dictionary keywords; private tags (odd group), group lengths other than
//!   (0002,0000), tags missing from the dictionary, and a second element whose keyword is already
//!   taken in the same map (repeating groups such as 60xx) use the 8-upper-hex tag as key, and
//!   their VR goes into the instance's `DICOMVRs` map (nested ones too).
//! * Text VRs → JSON strings. Trailing NUL bytes are always removed. IS and DS keep their
//!   trailing spaces exactly as stored (`"SeriesNumber": "1 "`, `"RescaleIntercept": "-1000 "`
//!   in AWS output); every other text VR loses trailing spaces (`"PatientName": "NAME^NONE"` and
//!   `"ImageType": [.., "AXIAL"]` in AWS output, whose stored values were space-padded to an
//!   even length). Leading spaces are kept. Multi-valued text (VM > 1, split on backslash; never
//!   for LT, ST, UT, UR) → array of strings; attributes whose dictionary VM allows several
//!   values (`multi_valued.rs`) are arrays even with one value, as in AWS output
//!   (`"SoftwareVersions": ["3.1.62"]`, `"WindowCenter": ["0 "]`). PN stays one plain string.
//! * An empty value (zero length, or only padding for a single value) → `null`.
//! * US SS UL SL SV UV FL FD → JSON numbers (non-finite floats → `null`; FL printed in its
//!   shortest single-precision decimal form); arrays by the same VM rule.
//!   AT → `"GGGGEEEE"` (arrays for VM > 1).
//! * OB OW OD OF OL OV UN → base64 of the little-endian bytes. A UN value of a standard tag is
//!   re-read with its dictionary VR (as pydicom does): text, numbers, and for SQ attributes the
//!   Implicit VR Little Endian sequence inside; a UN private creator is read as LO (and its
//!   `DICOMVRs` entry says LO).
//! * SQ → array of objects keyed the same way; Pixel Data, Float Pixel Data, Double Float
//!   Pixel Data → `null`; any encapsulated value → `null`.
//!
//! Text is already UTF-8: dicom-rs decodes it with the Specific Character Set. The value of
//! SpecificCharacterSet itself is kept as stored.

use base64::Engine as _;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use serde_json::{Map, Number, Value as Json};

use crate::scan::{Encoding, ScanLimits, scan_dataset};

/// The metadata key of a tag and whether it is a hex key (needs a `DICOMVRs` entry).
pub fn key_of(tag: Tag) -> (String, bool) {
    if tag.0 % 2 == 1 || (tag.1 == 0 && tag.0 != 0x0002) {
        return (hex_key(tag), true);
    }
    match StandardDataDictionary.by_tag(tag) {
        Some(e) if !e.alias().is_empty() => (e.alias().to_string(), false),
        _ => (hex_key(tag), true),
    }
}

pub fn hex_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.0, tag.1)
}

/// The tag a metadata key stands for (for ordering); `None` for keys that are neither.
pub fn tag_of_key(key: &str) -> Option<Tag> {
    if key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        let v = u32::from_str_radix(key, 16).ok()?;
        return Some(Tag((v >> 16) as u16, v as u16));
    }
    StandardDataDictionary.by_name(key).map(|e| e.tag())
}

/// Converts elements into one `DICOM` map, recording hex keys' VRs in `vrs`.
pub struct Converter<'a> {
    pub vrs: &'a mut Map<String, Json>,
    /// Sequence depth limit for UN values re-read as sequences.
    pub max_depth: usize,
}

fn is_private_creator(tag: Tag) -> bool {
    tag.0 % 2 == 1 && (0x0010..=0x00FF).contains(&tag.1)
}

impl Converter<'_> {
    /// Converts one element to its key and value; the key is decided against `map` (collision
    /// with an existing keyword → hex key).
    pub fn entry(&mut self, elem: &InMemElement, map: &Map<String, Json>) -> (String, Json) {
        let tag = elem.tag();
        let (mut key, mut hex) = key_of(tag);
        if !hex && map.contains_key(&key) {
            key = hex_key(tag);
            hex = true;
        }
        let un_creator = elem.vr() == VR::UN && is_private_creator(tag);
        if hex {
            let vr = if un_creator {
                "LO"
            } else {
                elem.vr().to_string()
            };
            self.vrs.insert(key.clone(), Json::String(vr.to_string()));
        }
        if un_creator && let Value::Primitive(PrimitiveValue::U8(bytes)) = elem.value() {
            // Private creators are LO by definition (PS3.5 7.8.1).
            let s = String::from_utf8_lossy(bytes);
            return (
                key,
                primitive(VR::LO, &PrimitiveValue::Str(s.into_owned()), false),
            );
        }
        (key, self.value(elem))
    }

    /// Converts all elements of an object into a new map in tag order.
    pub fn object(&mut self, obj: &InMemDicomObject) -> Map<String, Json> {
        let mut map = Map::new();
        for elem in obj {
            let (k, v) = self.entry(elem, &map);
            map.insert(k, v);
        }
        map
    }

    fn value(&mut self, elem: &InMemElement) -> Json {
        let tag = elem.tag();
        if tag == Tag(0x7FE0, 0x0010) || tag == Tag(0x7FE0, 0x0008) || tag == Tag(0x7FE0, 0x0009) {
            return Json::Null;
        }
        match elem.value() {
            Value::Sequence(seq) => Json::Array(
                seq.items()
                    .iter()
                    .map(|item| Json::Object(self.object(item)))
                    .collect(),
            ),
            Value::PixelSequence(_) => Json::Null,
            Value::Primitive(PrimitiveValue::U8(bytes)) if elem.vr() == VR::UN => {
                if let Some(seq) = self.un_sequence(tag, bytes) {
                    return seq;
                }
                match known_un(tag, bytes) {
                    Some((vr, p)) => primitive(vr, &p, is_multi_valued(tag)),
                    None => primitive(VR::UN, &PrimitiveValue::U8(bytes.clone()), false),
                }
            }
            Value::Primitive(p) => primitive(elem.vr(), p, is_multi_valued(tag)),
        }
    }
}

/// A UN element of a standard tag, re-read with its dictionary VR (UN values are Implicit VR
/// Little Endian encoded, PS3.5 6.2.2). `None` for private, unknown, SQ and binary VRs, or when
/// the length does not fit the VR.
pub fn known_un(tag: Tag, bytes: &[u8]) -> Option<(VR, PrimitiveValue)> {
    if tag.0 % 2 == 1 {
        return None;
    }
    let vr = StandardDataDictionary.by_tag(tag)?.vr().relaxed();
    fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
        if !b.len().is_multiple_of(N) {
            return None;
        }
        Some(
            b.chunks_exact(N)
                .map(|c| f(c.try_into().expect("exact chunk")))
                .collect(),
        )
    }
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let p = match vr {
        VR::AE
        | VR::AS
        | VR::CS
        | VR::DA
        | VR::DS
        | VR::DT
        | VR::IS
        | VR::LO
        | VR::PN
        | VR::SH
        | VR::TM
        | VR::UC
        | VR::UI => PrimitiveValue::Strs(text().split('\\').map(str::to_string).collect()),
        VR::LT | VR::ST | VR::UT | VR::UR => PrimitiveValue::Str(text()),
        VR::US => PrimitiveValue::U16(chunks(bytes, u16::from_le_bytes)?.into()),
        VR::SS => PrimitiveValue::I16(chunks(bytes, i16::from_le_bytes)?.into()),
        VR::UL => PrimitiveValue::U32(chunks(bytes, u32::from_le_bytes)?.into()),
        VR::SL => PrimitiveValue::I32(chunks(bytes, i32::from_le_bytes)?.into()),
        VR::UV => PrimitiveValue::U64(chunks(bytes, u64::from_le_bytes)?.into()),
        VR::SV => PrimitiveValue::I64(chunks(bytes, i64::from_le_bytes)?.into()),
        VR::FL => PrimitiveValue::F32(chunks(bytes, f32::from_le_bytes)?.into()),
        VR::FD => PrimitiveValue::F64(chunks(bytes, f64::from_le_bytes)?.into()),
        VR::AT => PrimitiveValue::Tags(
            chunks(bytes, |c: [u8; 4]| {
                Tag(
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                )
            })?
            .into(),
        ),
        _ => return None,
    };
    Some((vr, p))
}

impl Converter<'_> {
    /// A UN value of a standard SQ attribute, re-read as the Implicit VR Little Endian sequence
    /// it is (PS3.5 6.2.2), after the same bounded scan as the file.
    fn un_sequence(&mut self, tag: Tag, bytes: &[u8]) -> Option<Json> {
        if tag.0 % 2 == 1
            || StandardDataDictionary.by_tag(tag)?.vr().relaxed() != VR::SQ
            || bytes.len() >= u32::MAX as usize
        {
            return None;
        }
        let mut buf = Vec::with_capacity(bytes.len() + 8);
        buf.extend_from_slice(&tag.0.to_le_bytes());
        buf.extend_from_slice(&tag.1.to_le_bytes());
        buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        buf.extend_from_slice(bytes);
        let limits = ScanLimits {
            max_depth: self.max_depth,
            max_element_bytes: u64::MAX,
        };
        scan_dataset(&buf, Encoding::ImplicitLittle, limits).ok()?;
        let obj =
            InMemDicomObject::read_dataset_with_ts(&buf[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .ok()?;
        let elem = obj.element_opt(tag).ok().flatten()?;
        matches!(elem.value(), Value::Sequence(_)).then(|| self.value(elem))
    }
}

fn keeps_trailing_spaces(vr: VR) -> bool {
    matches!(vr, VR::IS | VR::DS)
}

fn clean(s: &str, vr: VR) -> String {
    let s = s.trim_end_matches('\0');
    if keeps_trailing_spaces(vr) {
        s.to_string()
    } else {
        s.trim_end_matches([' ', '\0']).to_string()
    }
}

fn many<T>(items: &[T], force_array: bool, f: impl Fn(&T) -> Json) -> Json {
    match items.len() {
        0 => Json::Null,
        1 if !force_array => f(&items[0]),
        _ => Json::Array(items.iter().map(f).collect()),
    }
}

/// Does the dictionary allow this attribute more than one value? Such attributes are arrays
/// even with one value (`"SoftwareVersions": ["3.1.62"]` in AWS output).
pub fn is_multi_valued(tag: Tag) -> bool {
    let t = (u32::from(tag.0) << 16) | u32::from(tag.1);
    crate::multi_valued::MULTI_VALUED.binary_search(&t).is_ok()
}

fn float(v: f64) -> Json {
    Number::from_f64(v).map(Json::Number).unwrap_or(Json::Null)
}

/// FL values as their shortest decimal form (`-180.5358`, not the widened
/// `-180.53579711914062`).
fn float32(v: f32) -> Json {
    if !v.is_finite() {
        return Json::Null;
    }
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Json::Number)
        .unwrap_or(Json::Null)
}

fn is_binary_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OD | VR::OF | VR::OL | VR::OV | VR::UN
    )
}

fn base64_le(p: &PrimitiveValue) -> Json {
    let mut bytes = Vec::new();
    match p {
        PrimitiveValue::U8(v) => bytes.extend_from_slice(v),
        PrimitiveValue::I16(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::U16(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::I32(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::U32(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::I64(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::U64(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::F32(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::F64(v) => v.iter().for_each(|x| bytes.extend(x.to_le_bytes())),
        PrimitiveValue::Empty => return Json::Null,
        other => bytes.extend_from_slice(&other.to_bytes()),
    }
    Json::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
}

/// One text value: `null` when empty, a one-element array for multi-valued attributes.
fn one(s: String, force_array: bool) -> Json {
    if s.is_empty() {
        Json::Null
    } else if force_array {
        Json::Array(vec![Json::String(s)])
    } else {
        Json::String(s)
    }
}

/// One primitive value by VR.
pub fn primitive(vr: VR, p: &PrimitiveValue, force_array: bool) -> Json {
    if matches!(p, PrimitiveValue::Empty) {
        return Json::Null;
    }
    if is_binary_vr(vr) {
        return base64_le(p);
    }
    match p {
        PrimitiveValue::Empty => Json::Null,
        PrimitiveValue::Str(s) => one(clean(s, vr), force_array),
        PrimitiveValue::Strs(v) => {
            if v.len() == 1 {
                one(clean(&v[0], vr), force_array)
            } else {
                Json::Array(v.iter().map(|s| Json::String(clean(s, vr))).collect())
            }
        }
        PrimitiveValue::Tags(v) => many(v, force_array, |t| Json::String(hex_key(*t))),
        PrimitiveValue::U8(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::I16(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::U16(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::I32(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::U32(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::I64(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::U64(v) => many(v, force_array, |x| Json::from(*x)),
        PrimitiveValue::F32(v) => many(v, force_array, |x| float32(*x)),
        PrimitiveValue::F64(v) => many(v, force_array, |x| float(*x)),
        // Dates and times are only produced by dicom-rs's interpreted strategy; render them as
        // their DICOM text.
        other => {
            let s = other.to_str();
            let parts: Vec<&str> = s.split('\\').collect();
            if parts.len() == 1 {
                one(clean(parts[0], vr), force_array)
            } else {
                Json::Array(parts.iter().map(|s| Json::String(clean(s, vr))).collect())
            }
        }
    }
}

/// The trimmed text of a top-level element (both ends, spaces and NUL), for UIDs, search and
/// grouping values. `None` when absent or empty.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok().flatten()?;
    let Value::Primitive(p) = elem.value() else {
        return None;
    };
    let reread;
    let p = match p {
        PrimitiveValue::U8(bytes) if elem.vr() == VR::UN => match known_un(tag, bytes) {
            Some((_, v)) => {
                reread = v;
                &reread
            }
            None => p,
        },
        _ => p,
    };
    if matches!(p, PrimitiveValue::Empty) {
        return None;
    }
    let s = p.to_str();
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}
