//! DICOM JSON (PS3.18 Annex F.2) for one instance of an image set metadata document, as
//! DICOMweb's GetDICOMInstanceMetadata / GetDICOMSeriesMetadata return it, and the bulk data
//! behind its `BulkDataURI`s (GetDICOMBulkdata).
//!
//! The instance's data set is the Patient, Study, Series and instance `DICOM` maps merged (a key
//! present at several levels: the most specific level wins). Every attribute becomes
//! `"GGGGEEEE": {"vr": .., "Value": [..]}`, keys uppercase and sorted by tag at every nesting
//! level. Rules:
//!
//! * **Tags.** Keyword keys are resolved through the standard dictionary (a repeating-group
//!   keyword such as `OverlayRows` stands for its first group, 6000); 8-hex keys are their tag.
//!   Keys that are neither are skipped. Group 0002 is dropped except (0002,0010)
//!   TransferSyntaxUID, whose value is the instance's `StoredTransferSyntaxUID` (absent or null:
//!   `1.2.840.10008.1.2.4.202`, notes §5.1). Pixel Data, Float Pixel Data and Double Float Pixel
//!   Data are left out at every level (frames are served by GetDICOMInstanceFrames).
//! * **VR.** Hex keys: the instance's `DICOMVRs` entry, else the dictionary (a hex key can be a
//!   standard tag, e.g. a second overlay group), else UN. `DICOMVRs` is one map for every
//!   nesting level (notes §5.1), so a private tag used with different VRs at different levels
//!   has only the last one recorded: a recorded VR that does not fit the value's JSON shape is
//!   replaced by the shape's (array of objects → SQ, floating-point numbers → FD, integers →
//!   UL, or SL when one is negative; SV/UV beyond 32 bits); text keeps the recorded VR and, if
//!   that is not a text VR, falls back to UN below. Keyword keys: the dictionary VR. The
//!   document does not record the VR of keyword attributes, so the dictionary's ambiguous VRs are
//!   resolved like this, a `DICOMVRs` entry for the tag winning when present:
//!   - `US or SS`: SS if a value is negative or the PixelRepresentation of the item (or of the
//!     nearest enclosing data set that has one) is 1, else US. Values read as US that are
//!     above 32767 are written as the SS they encode (the bytes are the same).
//!   - `US or OW` (LUT data): US when the document holds numbers, OW when it holds bytes.
//!   - `OB or OW` (overlay and pixel data): OW (the Implicit VR Little Endian choice, PS3.5 A.1).
//!
//!   A value that does not fit the chosen VR (a standard attribute whose UN value could not be
//!   re-read with its dictionary VR, so the document holds its base64 bytes) is written as UN
//!   with its bytes: the base64 decoded, or the UTF-8 text when it is not base64.
//! * **Empty values.** `null` in the document → the attribute without `"Value"`, also for SQ
//!   (PS3.18 F.2.5). An empty value inside a multi-valued attribute → `null` in the array.
//! * **IS / DS** → JSON numbers parsed from the stored text (surrounding spaces ignored). IS is
//!   an integer (a decimal with an integral value such as `"1.0"` too). DS is an integer when
//!   its text is an integer that fits in 64 bits, else a double. A value that is not a number
//!   (or not finite) is kept as the stored string: PS3.18 F.2.3 has no other representation and
//!   dropping or zeroing it would lose data; clients that parse numbers see it as invalid.
//! * **SV / UV** → numbers within ±(2^53 − 1), else strings (PS3.18 F.2.3.1).
//! * **PN** → `{"Alphabetic": .., "Ideographic": .., "Phonetic": ..}` from the `=`-separated
//!   component groups; empty groups are omitted, an empty name is `null`.
//! * **AT** → `"GGGGEEEE"` strings.
//! * **Binary VRs** (OB OD OF OL OV OW UN) → `InlineBinary` (base64 of the little-endian bytes,
//!   as the document stores them) or, when a base is given and the decoded value is longer than
//!   the threshold, `BulkDataURI` = base + [`bulk_data_hash`] of the attribute path.
//! * **SQ** → an array of objects written by the same rules.
//!
//! Errors and logs never contain values: this module has neither; unreadable values degrade to
//! UN bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::{Map, Number, Value};

use crate::MetadataDocument;
use crate::json::tag_of_key;

/// The stored transfer syntax assumed when `StoredTransferSyntaxUID` is absent (notes §5.1).
const DEFAULT_STORED_TS: &str = "1.2.840.10008.1.2.4.202";
const TRANSFER_SYNTAX_UID: Tag = Tag(0x0002, 0x0010);
const PIXEL_REPRESENTATION: &str = "PixelRepresentation";
/// Largest integer a double holds exactly (PS3.18 F.2.3.1 for SV/UV).
const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// How [`MetadataDocument::instance_dicom_json`] writes binary values.
#[derive(Debug, Clone, Copy)]
pub struct DicomJsonOptions<'a> {
    /// Binary values longer than this (bytes, decoded) are written as BulkDataURI (AWS: 1 MB).
    pub bulk_data_threshold: usize,
    /// Base of BulkDataURIs, e.g.
    /// `"http://host/datastore/<ds>/studies/<s>/series/<se>/instances/<i>/bulkdata/"`; the URI
    /// is base + a stable hash of the attribute path (hex). `None`: always InlineBinary.
    pub bulk_data_base: Option<&'a str>,
}

impl DicomJsonOptions<'_> {
    /// HealthImaging's threshold: binary values over 1 MB become BulkDataURIs (notes §11.1).
    pub const AWS_BULK_DATA_THRESHOLD: usize = 1 << 20;
}

impl Default for DicomJsonOptions<'_> {
    /// Always InlineBinary.
    fn default() -> Self {
        DicomJsonOptions {
            bulk_data_threshold: Self::AWS_BULK_DATA_THRESHOLD,
            bulk_data_base: None,
        }
    }
}

/// The hash in a BulkDataURI: FNV-1a (64 bit) of the attribute path, as 16 lowercase hex
/// digits. The path is the tags (`GGGGEEEE`, uppercase) from the top-level attribute down,
/// separated by `/` with the 0-based item index between a sequence and the attribute inside it:
/// `"00420011"`, `"00540016/0/00189999"`. It depends only on where the attribute is, so it is
/// stable across requests and serializations of the same image set version.
pub fn bulk_data_hash(path: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The parts of one instance a data set is made of.
struct InstanceView<'a> {
    /// Patient, Study, Series, instance `DICOM` maps.
    levels: [Option<&'a Map<String, Value>>; 4],
    vrs: Option<&'a Map<String, Value>>,
    stored_ts: &'a str,
}

fn level(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v?.get("DICOM")?.as_object()
}

impl MetadataDocument {
    fn instance_view(&self, series_uid: &str, sop_uid: &str) -> Option<InstanceView<'_>> {
        let root = self.as_json();
        let series = root.get("Study")?.get("Series")?.get(series_uid)?;
        let instance = series.get("Instances")?.get(sop_uid)?.as_object()?;
        Some(InstanceView {
            levels: [
                level(root.get("Patient")),
                level(root.get("Study")),
                level(Some(series)),
                instance.get("DICOM").and_then(Value::as_object),
            ],
            vrs: instance.get("DICOMVRs").and_then(Value::as_object),
            stored_ts: instance
                .get("StoredTransferSyntaxUID")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_STORED_TS),
        })
    }

    /// The instance's full data set as DICOM JSON (PS3.18 F.2; rules in the module docs):
    /// Patient + Study + Series + instance levels merged, keys `"GGGGEEEE"` sorted, plus
    /// (0002,0010) TransferSyntaxUID = the instance's StoredTransferSyntaxUID, and no Pixel
    /// Data. `None` if the series or instance does not exist.
    pub fn instance_dicom_json(
        &self,
        series_uid: &str,
        sop_uid: &str,
        opts: &DicomJsonOptions,
    ) -> Option<Map<String, Value>> {
        let view = self.instance_view(series_uid, sop_uid)?;
        let empty = Map::new();
        let writer = Writer {
            vrs: view.vrs.unwrap_or(&empty),
            opts: *opts,
        };
        let attrs = writer.top_level(&view);
        let mut out = Map::new();
        for (tag, (key, value)) in &attrs {
            let path = hex(*tag);
            let attr = if *tag == TRANSFER_SYNTAX_UID {
                let mut m = Map::new();
                m.insert("vr".into(), Value::String("UI".into()));
                m.insert(
                    "Value".into(),
                    Value::Array(vec![Value::String(view.stored_ts.to_string())]),
                );
                m
            } else {
                writer.attribute(*tag, key, value, &path, top_pixel_rep(&view))
            };
            out.insert(path, Value::Object(attr));
        }
        Some(out)
    }

    /// The binary attribute whose BulkDataURI ends in `hash` (see [`bulk_data_hash`]), for
    /// GetDICOMBulkdata: its VR and decoded (little-endian) bytes. Any binary attribute of the
    /// instance is found, whatever its size. `None` if the series, instance or attribute does
    /// not exist.
    pub fn instance_bulk_data(
        &self,
        series_uid: &str,
        sop_uid: &str,
        hash: &str,
    ) -> Option<(String, Vec<u8>)> {
        let view = self.instance_view(series_uid, sop_uid)?;
        let empty = Map::new();
        let writer = Writer {
            vrs: view.vrs.unwrap_or(&empty),
            opts: DicomJsonOptions::default(),
        };
        let attrs = writer.top_level(&view);
        let pixel_rep = top_pixel_rep(&view);
        attrs.iter().find_map(|(tag, (key, value))| {
            if *tag == TRANSFER_SYNTAX_UID {
                return None;
            }
            writer.find_bulk(*tag, key, value, &hex(*tag), pixel_rep, hash)
        })
    }
}

/// PixelRepresentation of the merged top level.
fn top_pixel_rep(view: &InstanceView) -> Option<i64> {
    view.levels
        .iter()
        .rev()
        .flatten()
        .find_map(|m| pixel_rep_of(m))
}

fn pixel_rep_of(m: &Map<String, Value>) -> Option<i64> {
    match m.get(PIXEL_REPRESENTATION)? {
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => a.first()?.as_i64(),
        _ => None,
    }
}

fn hex(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.0, tag.1)
}

fn is_pixel_data(tag: Tag) -> bool {
    tag.0 == 0x7FE0 && matches!(tag.1, 0x0008 | 0x0009 | 0x0010)
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

fn is_hex_key(key: &str) -> bool {
    key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The tags of one data set (a level or an item), sorted; group 0002 except TransferSyntaxUID
/// and pixel data dropped.
fn sorted_attrs<'a>(
    maps: impl Iterator<Item = &'a Map<String, Value>>,
    top: bool,
) -> BTreeMap<Tag, (&'a str, &'a Value)> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            let Some(tag) = tag_of_key(k) else { continue };
            if is_pixel_data(tag) || (top && tag.0 == 0x0002 && tag != TRANSFER_SYNTAX_UID) {
                continue;
            }
            // Later maps are more specific and win.
            out.insert(tag, (k.as_str(), v));
        }
    }
    out
}

/// A value's bytes or numbers, as a binary VR sees them.
enum Typed<'v> {
    Empty,
    Numbers(Vec<&'v Number>),
    Texts,
    Items,
}

fn typed(v: &Value) -> Typed<'_> {
    match v {
        Value::Null => Typed::Empty,
        Value::Number(n) => Typed::Numbers(vec![n]),
        Value::Array(a) if a.iter().all(|x| x.is_number() || x.is_null()) && !a.is_empty() => {
            Typed::Numbers(a.iter().filter_map(Value::as_number).collect())
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(|x| x.is_object()) => Typed::Items,
        Value::Array(a) if a.is_empty() => Typed::Empty,
        _ => Typed::Texts,
    }
}

struct Writer<'a> {
    vrs: &'a Map<String, Value>,
    opts: DicomJsonOptions<'a>,
}

impl<'a> Writer<'a> {
    fn top_level(&self, view: &InstanceView<'a>) -> BTreeMap<Tag, (&'a str, &'a Value)> {
        let mut attrs = sorted_attrs(view.levels.iter().flatten().copied(), true);
        static NULL: Value = Value::Null;
        attrs
            .entry(TRANSFER_SYNTAX_UID)
            .or_insert(("TransferSyntaxUID", &NULL));
        attrs
    }

    /// The VR recorded in `DICOMVRs` for this key / tag.
    fn recorded_vr(&self, key: &str, tag: Tag) -> Option<VR> {
        let by = |k: &str| self.vrs.get(k)?.as_str()?.parse::<VR>().ok();
        by(key).or_else(|| if is_hex_key(key) { None } else { by(&hex(tag)) })
    }

    /// The VR of an attribute (module docs, "VR").
    fn vr_of(&self, tag: Tag, key: &str, value: &Value, pixel_rep: Option<i64>) -> VR {
        let dict = StandardDataDictionary.by_tag(tag).map(|e| e.vr());
        if is_hex_key(key) {
            if let Some(vr) = self.recorded_vr(key, tag) {
                // `DICOMVRs` is one map for all nesting levels: a private tag used with other
                // VRs at other levels has the last one recorded. The value's shape tells
                // sequences and numbers apart from what was recorded.
                return if fits_shape(vr, value) {
                    vr
                } else {
                    shape_vr(value).unwrap_or(vr)
                };
            }
            // A standard tag under a hex key (a keyword collision): as for a keyword.
            if dict.is_none() {
                return VR::UN;
            }
        }
        match dict {
            None => VR::UN,
            Some(VirtualVr::Exact(vr)) => vr,
            Some(ambiguous) => {
                if let Some(vr) = self.recorded_vr(key, tag) {
                    return vr;
                }
                match ambiguous {
                    VirtualVr::Xs => {
                        let negative = match typed(value) {
                            Typed::Numbers(ns) => {
                                ns.iter().any(|n| n.as_i64().is_some_and(|x| x < 0))
                            }
                            _ => false,
                        };
                        if negative || pixel_rep == Some(1) {
                            VR::SS
                        } else {
                            VR::US
                        }
                    }
                    VirtualVr::Lt => match typed(value) {
                        Typed::Numbers(_) => VR::US,
                        _ => VR::OW,
                    },
                    _ => VR::OW,
                }
            }
        }
    }

    /// One attribute object `{"vr": .., ...}`.
    fn attribute(
        &self,
        tag: Tag,
        key: &str,
        value: &Value,
        path: &str,
        pixel_rep: Option<i64>,
    ) -> Map<String, Value> {
        let vr = self.vr_of(tag, key, value, pixel_rep);
        let mut out = Map::new();
        let (vr, body) = match self.body(vr, value, path, pixel_rep) {
            Some(b) => (vr, b),
            // The value does not fit the VR: its bytes, as UN.
            None => (VR::UN, self.binary_body(&fallback_bytes(value), path)),
        };
        out.insert("vr".into(), Value::String(vr.to_string().to_string()));
        if let Some((k, v)) = body {
            out.insert(k.into(), v);
        }
        out
    }

    /// `Some(None)`: no value; `Some(Some((key, v)))`: `"Value"`, `"InlineBinary"` or
    /// `"BulkDataURI"`; `None`: the value does not fit the VR.
    #[allow(clippy::type_complexity)]
    fn body(
        &self,
        vr: VR,
        value: &Value,
        path: &str,
        pixel_rep: Option<i64>,
    ) -> Option<Option<(&'static str, Value)>> {
        if value.is_null() {
            return Some(None);
        }
        if is_binary(vr) {
            let bytes = binary_bytes(vr, value)?;
            return Some(self.binary_body(&bytes, path));
        }
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        if items.is_empty() {
            return Some(None);
        }
        let values: Vec<Value> = if vr == VR::SQ {
            let inherited = pixel_rep;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let obj = item.as_object()?;
                    Some(Value::Object(self.item(
                        obj,
                        &format!("{path}/{i}"),
                        inherited,
                    )))
                })
                .collect::<Option<_>>()?
        } else {
            items.iter().map(|v| scalar(vr, v)).collect::<Option<_>>()?
        };
        Some(Some(("Value", Value::Array(values))))
    }

    fn binary_body(&self, bytes: &[u8], path: &str) -> Option<(&'static str, Value)> {
        if bytes.is_empty() {
            return None;
        }
        match self.opts.bulk_data_base {
            Some(base) if bytes.len() > self.opts.bulk_data_threshold => Some((
                "BulkDataURI",
                Value::String(format!("{base}{}", bulk_data_hash(path))),
            )),
            _ => Some((
                "InlineBinary",
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )),
        }
    }

    /// One sequence item.
    fn item(
        &self,
        obj: &Map<String, Value>,
        path: &str,
        inherited: Option<i64>,
    ) -> Map<String, Value> {
        let pixel_rep = pixel_rep_of(obj).or(inherited);
        let mut out = Map::new();
        for (tag, (key, value)) in sorted_attrs(std::iter::once(obj), false) {
            let p = format!("{path}/{}", hex(tag));
            let attr = self.attribute(tag, key, value, &p, pixel_rep);
            out.insert(hex(tag), Value::Object(attr));
        }
        out
    }

    /// Depth-first search for the binary attribute whose path hashes to `hash`.
    fn find_bulk(
        &self,
        tag: Tag,
        key: &str,
        value: &Value,
        path: &str,
        pixel_rep: Option<i64>,
        hash: &str,
    ) -> Option<(String, Vec<u8>)> {
        if value.is_null() {
            return None;
        }
        let vr = self.vr_of(tag, key, value, pixel_rep);
        let binary = if is_binary(vr) {
            Some((vr, binary_bytes(vr, value)))
        } else if vr == VR::SQ {
            let items: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if items.iter().all(|v| v.is_object()) {
                return items.iter().enumerate().find_map(|(i, item)| {
                    let obj = item.as_object()?;
                    let rep = pixel_rep_of(obj).or(pixel_rep);
                    sorted_attrs(std::iter::once(obj), false)
                        .into_iter()
                        .find_map(|(t, (k, v))| {
                            let p = format!("{path}/{i}/{}", hex(t));
                            self.find_bulk(t, k, v, &p, rep, hash)
                        })
                });
            }
            Some((VR::UN, None))
        } else {
            let fits = match value {
                Value::Array(a) => a.iter().all(|v| scalar(vr, v).is_some()),
                v => scalar(vr, v).is_some(),
            };
            (!fits).then_some((VR::UN, None))
        };
        let (vr, bytes) = binary?;
        if bulk_data_hash(path) != hash {
            return None;
        }
        let (vr, bytes) = match bytes {
            Some(b) => (vr, b),
            None => (VR::UN, fallback_bytes(value)),
        };
        (!bytes.is_empty()).then(|| (vr.to_string().to_string(), bytes))
    }
}

/// Whether a value has the JSON shape the metadata document gives this VR.
fn fits_shape(vr: VR, value: &Value) -> bool {
    match typed(value) {
        Typed::Empty => true,
        Typed::Items => vr == VR::SQ,
        Typed::Numbers(_) => {
            matches!(
                vr,
                VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV | VR::FL | VR::FD
            ) || (is_binary(vr) && vr != VR::UN)
        }
        Typed::Texts => !matches!(
            vr,
            VR::SQ | VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV | VR::FL | VR::FD
        ),
    }
}

/// The VR a value's shape implies when the recorded one does not fit: SQ for items; FD for
/// floating-point numbers; SL/UL (SV/UV beyond 32 bits) for integers by sign. Text has no
/// implied VR.
fn shape_vr(value: &Value) -> Option<VR> {
    match typed(value) {
        Typed::Items => Some(VR::SQ),
        Typed::Numbers(ns) => {
            if ns.iter().any(|n| n.is_f64()) {
                Some(VR::FD)
            } else if ns.iter().any(|n| n.as_i64().is_some_and(|x| x < 0)) {
                let small = ns
                    .iter()
                    .all(|n| n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()));
                Some(if small { VR::SL } else { VR::SV })
            } else {
                let small = ns
                    .iter()
                    .all(|n| n.as_u64().is_some_and(|x| u32::try_from(x).is_ok()));
                Some(if small { VR::UL } else { VR::UV })
            }
        }
        _ => None,
    }
}

/// The bytes of a binary value: base64 text as the document stores it, or numbers (LUT data
/// read as US) packed little-endian at the VR's width. `None` if it is neither.
fn binary_bytes(vr: VR, value: &Value) -> Option<Vec<u8>> {
    match typed(value) {
        Typed::Empty => Some(Vec::new()),
        Typed::Items => None,
        Typed::Numbers(ns) => {
            let mut out = Vec::new();
            for n in ns {
                match vr {
                    VR::OB | VR::UN => out.push(u8::try_from(n.as_u64()?).ok()?),
                    VR::OW => out.extend((n.as_i64()? as u16).to_le_bytes()),
                    VR::OL => out.extend((n.as_i64()? as u32).to_le_bytes()),
                    VR::OV => out.extend((n.as_i64()? as u64).to_le_bytes()),
                    VR::OF => out.extend((n.as_f64()? as f32).to_le_bytes()),
                    VR::OD => out.extend(n.as_f64()?.to_le_bytes()),
                    _ => return None,
                }
            }
            Some(out)
        }
        Typed::Texts => {
            let mut out = Vec::new();
            let parts: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            for p in parts {
                let s = p.as_str()?;
                out.extend(base64::engine::general_purpose::STANDARD.decode(s).ok()?);
            }
            Some(out)
        }
    }
}

/// The bytes of a value that fits no VR: base64 if it decodes, else its text.
fn fallback_bytes(value: &Value) -> Vec<u8> {
    if let Some(b) = binary_bytes(VR::UN, value) {
        return b;
    }
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        v => v.to_string().into_bytes(),
    }
}

/// One element of a `"Value"` array; `None` when it does not fit the VR.
fn scalar(vr: VR, v: &Value) -> Option<Value> {
    if v.is_null() {
        return Some(Value::Null);
    }
    match vr {
        VR::US | VR::UL | VR::SS | VR::SL | VR::FL | VR::FD | VR::SV | VR::UV => {
            let n = match v {
                Value::Number(n) => n.clone(),
                Value::String(s) => parse_number(s.trim(), false)?,
                _ => return None,
            };
            if matches!(vr, VR::SV | VR::UV) && fit_binary_number(vr, n.clone()).is_none() {
                // Beyond what a double holds exactly: a string (PS3.18 F.2.3.1).
                return Some(Value::String(n.to_string()));
            }
            Some(Value::Number(fit_binary_number(vr, n)?))
        }
        VR::IS | VR::DS => match v {
            Value::Number(n) => Some(Value::Number(n.clone())),
            Value::String(s) => {
                let t = s.trim_matches([' ', '\0']);
                if t.is_empty() {
                    return Some(Value::Null);
                }
                Some(
                    parse_number(t, vr == VR::IS)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(s.clone())),
                )
            }
            _ => None,
        },
        VR::PN => match v {
            Value::String(s) => Some(person_name(s)),
            Value::Object(o) => Some(Value::Object(o.clone())),
            _ => None,
        },
        VR::AT => match v {
            Value::String(s) if is_hex_key(s) => Some(Value::String(s.to_ascii_uppercase())),
            Value::Number(n) => Some(Value::String(format!("{:08X}", n.as_u64()? as u32))),
            _ => None,
        },
        VR::SQ => None,
        _ => match v {
            Value::String(s) if s.is_empty() => Some(Value::Null),
            Value::String(s) => Some(Value::String(s.clone())),
            Value::Number(n) => Some(Value::String(n.to_string())),
            _ => None,
        },
    }
}

/// A number from text: an integer when it is one (for IS also a decimal with an integral
/// value), else a finite double.
fn parse_number(t: &str, integer_only: bool) -> Option<Number> {
    let t = t.strip_prefix('+').unwrap_or(t);
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = t.parse::<u64>() {
        return Some(Number::from(u));
    }
    let f = t.parse::<f64>().ok().filter(|f| f.is_finite())?;
    // Rust also accepts "inf"/"nan" spellings; the finite check removes them.
    if integer_only {
        if f.fract() != 0.0 || f.abs() >= 9.2e18 {
            return None;
        }
        return Some(Number::from(f as i64));
    }
    Number::from_f64(f)
}

/// A number as a binary-numeric VR holds it: SS reinterprets values stored as US; SV/UV beyond
/// 2^53 are not numbers (the caller writes them as strings in [`scalar`]).
fn fit_binary_number(vr: VR, n: Number) -> Option<Number> {
    match vr {
        VR::SS => {
            let i = n.as_i64()?;
            Some(Number::from(if (32768..=65535).contains(&i) {
                i - 65536
            } else {
                i
            }))
        }
        VR::US | VR::UL | VR::SL => n
            .as_i64()
            .map(Number::from)
            .or_else(|| n.as_u64().map(Number::from)),
        VR::SV | VR::UV => {
            let i = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))?;
            (i.abs() <= MAX_SAFE_INTEGER).then_some(n)
        }
        _ => Some(n),
    }
}

/// A PN value as its component-group object.
fn person_name(s: &str) -> Value {
    let mut m = Map::new();
    for (name, group) in ["Alphabetic", "Ideographic", "Phonetic"]
        .into_iter()
        .zip(s.splitn(3, '='))
    {
        let g = group.trim_end_matches([' ', '\0']);
        if !g.is_empty() {
            m.insert(name.into(), Value::String(g.to_string()));
        }
    }
    if m.is_empty() {
        Value::Null
    } else {
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceMetadata, StoredInstance};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn doc(instance: Value, vrs: Value, stored_ts: &str) -> MetadataDocument {
        let meta = InstanceMetadata {
            patient: obj(json!({
                "PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう",
                "OtherPatientNames": ["A^B", ""],
                "PatientBirthDate": null,
            })),
            study: obj(json!({"StudyDate": "20000101", "PatientWeight": "70.5 "})),
            series: obj(json!({"Modality": "CT", "SeriesNumber": "1 "})),
            instance: obj(instance),
            dicom_vrs: obj(vrs),
        };
        let mut d = MetadataDocument::new(&"d".repeat(32), &"i".repeat(32));
        let stored = StoredInstance {
            stored_transfer_syntax: stored_ts.into(),
            frames: Vec::new(),
        };
        d.put_instance(&meta, "1.2", "1.2.3", &stored);
        d
    }

    fn inline() -> DicomJsonOptions<'static> {
        DicomJsonOptions::default()
    }

    #[test]
    fn writes_ps3_18_attributes() {
        let d = doc(
            json!({
                "FileMetaInformationVersion": "AAE=",
                "TransferSyntaxUID": "1.2.840.10008.1.2.1",
                "SOPInstanceUID": "1.2.3",
                "ImageType": ["ORIGINAL", "", "AXIAL"],
                "InstanceNumber": "1.0 ",
                "FrameIncrementPointer": "00181063",
                "PixelSpacing": ["0.25", "0.25 "],
                "SliceThickness": "abc",
                "Rows": 512,
                "PixelRepresentation": 1,
                "SmallestImagePixelValue": 65535,
                "ReferencedImageSequence": [{"ReferencedSOPInstanceUID": "9.9", "00091001": "AQID"}],
                "SourceImageSequence": null,
                "00091001": "AAECAw==",
                "00090010": "ACME",
                "PixelData": null,
            }),
            json!({"00090010": "LO", "00091001": "OB"}),
            "1.2.840.10008.1.2.4.202",
        );
        let j = d.instance_dicom_json("1.2", "1.2.3", &inline()).unwrap();
        let keys: Vec<&str> = j.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "00020010", "00080008", "00080018", "00080020", "00080060", "00081140", "00090010",
                "00091001", "00100010", "00100030", "00101001", "00101030", "00180050", "00200011",
                "00200013", "00280009", "00280010", "00280030", "00280103", "00280106", "00082112"
            ]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert_eq!(
            j["00020010"],
            json!({"vr": "UI", "Value": ["1.2.840.10008.1.2.4.202"]})
        );
        assert_eq!(
            j["00100010"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]})
        );
        assert_eq!(
            j["00101001"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "A^B"}, null]})
        );
        assert_eq!(j["00100030"], json!({"vr": "DA"}));
        assert_eq!(
            j["00080008"],
            json!({"vr": "CS", "Value": ["ORIGINAL", null, "AXIAL"]})
        );
        assert_eq!(j["00200013"], json!({"vr": "IS", "Value": [1]}));
        assert_eq!(j["00200011"], json!({"vr": "IS", "Value": [1]}));
        assert_eq!(j["00101030"], json!({"vr": "DS", "Value": [70.5]}));
        assert_eq!(j["00280030"], json!({"vr": "DS", "Value": [0.25, 0.25]}));
        assert_eq!(j["00180050"], json!({"vr": "DS", "Value": ["abc"]}));
        assert_eq!(j["00280009"], json!({"vr": "AT", "Value": ["00181063"]}));
        assert_eq!(j["00280010"], json!({"vr": "US", "Value": [512]}));
        // US or SS with PixelRepresentation 1: SS, the stored bits reinterpreted.
        assert_eq!(j["00280106"], json!({"vr": "SS", "Value": [-1]}));
        assert_eq!(j["00082112"], json!({"vr": "SQ"}));
        assert_eq!(
            j["00091001"],
            json!({"vr": "OB", "InlineBinary": "AAECAw=="})
        );
        assert_eq!(j["00090010"], json!({"vr": "LO", "Value": ["ACME"]}));
        let item = &j["00081140"]["Value"][0];
        assert_eq!(item["00081155"], json!({"vr": "UI", "Value": ["9.9"]}));
        // Nested hex key: same DICOMVRs entry.
        assert_eq!(
            item["00091001"],
            json!({"vr": "OB", "InlineBinary": "AQID"})
        );
        assert!(!j.contains_key("7FE00010"));
        assert!(!j.contains_key("00020001"));
    }

    #[test]
    fn bulk_data_uris_resolve() {
        let d = doc(
            json!({
                "SOPInstanceUID": "1.2.3",
                "00091001": "AAECAw==",
                "ReferencedImageSequence": [{}, {"00091001": "AAECAwQ="}],
                "RedPaletteColorLookupTableData": "AQID",
            }),
            json!({"00091001": "OB"}),
            "",
        );
        let base = "http://h/datastore/d/studies/s/series/1.2/instances/1.2.3/bulkdata/";
        let opts = DicomJsonOptions {
            bulk_data_threshold: 3,
            bulk_data_base: Some(base),
        };
        let j = d.instance_dicom_json("1.2", "1.2.3", &opts).unwrap();
        // Absent StoredTransferSyntaxUID: HTJ2K.
        assert_eq!(j["00020010"]["Value"][0], "1.2.840.10008.1.2.4.202");
        let top = format!("{base}{}", bulk_data_hash("00091001"));
        assert_eq!(j["00091001"], json!({"vr": "OB", "BulkDataURI": top}));
        // 3 bytes: not above the threshold.
        assert_eq!(j["00281201"], json!({"vr": "OW", "InlineBinary": "AQID"}));
        let nested = &j["00081140"]["Value"][1]["00091001"];
        let hash = bulk_data_hash("00081140/1/00091001");
        assert_eq!(nested["BulkDataURI"], format!("{base}{hash}"));
        assert_eq!(j["00081140"]["Value"][0], json!({}));

        assert_eq!(
            d.instance_bulk_data("1.2", "1.2.3", &bulk_data_hash("00091001")),
            Some(("OB".into(), vec![0, 1, 2, 3]))
        );
        assert_eq!(
            d.instance_bulk_data("1.2", "1.2.3", &hash),
            Some(("OB".into(), vec![0, 1, 2, 3, 4]))
        );
        assert_eq!(
            d.instance_bulk_data("1.2", "1.2.3", &bulk_data_hash("00281201")),
            Some(("OW".into(), vec![1, 2, 3]))
        );
        assert_eq!(
            d.instance_bulk_data("1.2", "1.2.3", &bulk_data_hash("00080018")),
            None
        );
        assert_eq!(d.instance_bulk_data("1.2", "1.2.3", "nope"), None);
        assert_eq!(d.instance_bulk_data("1.2", "9", &hash), None);
        assert_eq!(d.instance_dicom_json("9", "1.2.3", &opts), None);
        assert_eq!(d.instance_dicom_json("1.2", "9", &opts), None);
        // Stable: FNV-1a 64 of the path.
        assert_eq!(bulk_data_hash(""), "cbf29ce484222325");
        assert_eq!(bulk_data_hash("a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn values_that_do_not_fit_their_vr() {
        let d = doc(
            json!({
                "SOPInstanceUID": "1.2.3",
                // A standard US attribute whose UN value could not be re-read: its bytes.
                "Columns": "AQID",
                // Recorded VR from another nesting level (flat DICOMVRs): the shape decides.
                "00291001": [{"00291002": 1.5}],
                "00291003": [-1, 2],
                "00291004": "text",
                "LUTData": [1, 2],
                "SV": null,
            }),
            json!({"00291001": "LO", "00291002": "CS", "00291003": "SQ", "00291004": "US"}),
            "1.2.840.10008.1.2.1",
        );
        let j = d.instance_dicom_json("1.2", "1.2.3", &inline()).unwrap();
        assert_eq!(j["00280011"], json!({"vr": "UN", "InlineBinary": "AQID"}));
        assert_eq!(
            j["00291001"],
            json!({"vr": "SQ", "Value": [{"00291002": {"vr": "FD", "Value": [1.5]}}]})
        );
        assert_eq!(j["00291003"], json!({"vr": "SL", "Value": [-1, 2]}));
        // "text" is valid base64 (3 bytes); a text value under a numeric VR is UN bytes.
        assert_eq!(j["00291004"]["vr"], "UN");
        assert_eq!(j["00283006"], json!({"vr": "US", "Value": [1, 2]}));
        assert_eq!(j["00020010"]["Value"][0], "1.2.840.10008.1.2.1");
        // Keys that are neither keywords nor tags are skipped.
        assert!(j.keys().all(|k| k.len() == 8));
    }

    #[test]
    fn numbers_from_text() {
        let n = |s: &str, vr: VR| scalar(vr, &Value::String(s.into())).unwrap();
        assert_eq!(n("1e3", VR::DS), json!(1000.0));
        assert_eq!(n(" +5 ", VR::DS), json!(5));
        assert_eq!(n("-0.5", VR::DS), json!(-0.5));
        assert_eq!(n("1.0", VR::IS), json!(1));
        assert_eq!(n("1.5", VR::IS), json!("1.5"));
        assert_eq!(n("NaN", VR::DS), json!("NaN"));
        assert_eq!(n("inf", VR::DS), json!("inf"));
        assert_eq!(n("  ", VR::DS), Value::Null);
        assert_eq!(
            n("18446744073709551615", VR::IS),
            json!(18446744073709551615u64)
        );
        let big = scalar(VR::UV, &json!(18446744073709551615u64)).unwrap();
        assert_eq!(big, json!("18446744073709551615"));
        assert_eq!(scalar(VR::SV, &json!(-5)).unwrap(), json!(-5));
        assert_eq!(person_name("=Yamada"), json!({"Ideographic": "Yamada"}));
        assert_eq!(person_name("=="), Value::Null);
    }
}
