//! Image set changes applied to a [`MetadataDocument`]: UpdateImageSetMetadata's
//! `DICOMUpdates` (updatable / removable attribute documents) and CopyImageSet's
//! `copiableAttributes` selection and merge, as pure functions (contract: docs/compatibility.md,
//! "Image set changes"; notes §8, §9).
//!
//! Every rejection is a [`ChangeError`] whose message names the rule, the member
//! (`updatableAttributes`, `removableAttributes`, `copiableAttributes`) and the attribute keyword,
//! hex tag or member path (`Study.Series.<series>.Instances.<instance>`), never a value or UID.
//!
//! Values are checked in two tiers. Always: the JSON shape the document uses for the VR (text and
//! binary VRs take strings, numeric VRs numbers within range, SQ a list of objects; `null` is the
//! empty value). Without `force` only: the VR's syntax and length (DA, TM, DT, UI, CS, AS, IS, DS,
//! AE, SH, LO, PN, ...), and one value at most. New UIDs (the identifiers that rename series and
//! instances, and StudyInstanceUID) must be valid UIDs even with `force`. Stored values follow the
//! import's encoding: trailing spaces are removed except for IS and DS, an empty string is `null`,
//! attributes the dictionary marks multi-valued are lists even with one value.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;

use base64::Engine as _;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::{Map, Value};

use crate::document::level_text;
use crate::levels::{Level, level_of};
use crate::{GroupingKey, MetadataDocument, is_multi_valued, tag_of_key};

const UPDATABLE: &str = "updatableAttributes";
const REMOVABLE: &str = "removableAttributes";
const COPIABLE: &str = "copiableAttributes";

/// CopyImageSet's failure message when the destination's series do not match the source's.
pub const SERIES_MISMATCH: &str =
    "INVALID_REQUEST: Series of SourceImageSet and DestinationImageSet don't match.";
/// CopyImageSet's failure message when a copied SOP Instance UID is already in the destination.
pub const DUPLICATE_SOP_INSTANCE: &str =
    "INVALID_REQUEST: SOP Instance UIDs must be unique within the destination image set.";

/// Members and attributes HealthImaging generates; never changed by an update.
const GENERATED: &[&str] = &[
    "SchemaVersion",
    "DatastoreID",
    "ImageSetID",
    "PixelData",
    "Checksum",
    "Width",
    "Height",
    "MinPixelValue",
    "MaxPixelValue",
    "FrameSizeInBytes",
    "ImageFrames",
    "StoredTransferSyntaxUID",
    "ChecksumType",
    "PixelDataChecksumFromBaseToFullResolution",
    "FloatPixelData",
    "DoubleFloatPixelData",
];

/// A rejected change: a ValidationException message naming the rule and the attribute keyword
/// or member (never a value or a UID). For copies, `message` is the version's failure message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeError(pub String);

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChangeError {}

fn fail<T>(message: impl Into<String>) -> Result<T, ChangeError> {
    Err(ChangeError(message.into()))
}

/// Options of one UpdateImageSetMetadata call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// The request's `force=true`.
    pub force: bool,
    /// The image set is a primary image set.
    pub is_primary: bool,
}

/// The instances a CopyImageSet selects (`copiableAttributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySelection {
    /// SeriesInstanceUID → `None` (the whole series) or `Some` (these SOP Instance UIDs).
    pub series: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl CopySelection {
    /// `(SeriesInstanceUID, None = whole series / Some(SOP Instance UIDs))`.
    pub fn series(&self) -> impl Iterator<Item = (&str, Option<&BTreeSet<String>>)> {
        self.series.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Parses an updatableAttributes / removableAttributes document (already base64-decoded bytes):
/// JSON object, SchemaVersion 1.1 as number or string (required), only known members.
/// `member` is "updatableAttributes" or "removableAttributes" and is named in errors.
pub fn parse_change_document(
    bytes: &[u8],
    member: &str,
) -> Result<Map<String, Value>, ChangeError> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => return fail(format!("{member} is not valid JSON")),
    };
    let Value::Object(doc) = value else {
        return fail(format!("{member} must be a JSON object"));
    };
    check_change_structure(&doc, member)?;
    Ok(doc)
}

/// Parses copiableAttributes (a raw JSON string):
/// `{"SchemaVersion":..,"Study":{"Series":{uid:{"Instances":{sop:{}}}}}}`. A series given as `{}`,
/// without `Instances` or with an empty `Instances` object selects the whole series.
pub fn parse_copy_selection(text: &str) -> Result<CopySelection, ChangeError> {
    let m = COPIABLE;
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return fail(format!("{m} is not valid JSON")),
    };
    let Value::Object(doc) = value else {
        return fail(format!("{m} must be a JSON object"));
    };
    check_schema_version(&doc, m)?;
    only(&doc, &["SchemaVersion", "Study"], m, "")?;
    let mut selection = CopySelection::default();
    if let Some(study) = doc.get("Study") {
        let study = object(study, m, "Study")?;
        only(study, &["Series"], m, "Study")?;
        if let Some(series) = study.get("Series") {
            let series = object(series, m, "Study.Series")?;
            for (uid, node) in series {
                let node = object(node, m, "Study.Series.<series>")?;
                only(node, &["Instances"], m, "Study.Series.<series>")?;
                let mut sops = BTreeSet::new();
                if let Some(instances) = node.get("Instances") {
                    let instances = object(instances, m, "Study.Series.<series>.Instances")?;
                    for (sop, inode) in instances {
                        let path = "Study.Series.<series>.Instances.<instance>";
                        let inode = object(inode, m, path)?;
                        only(inode, &[], m, path)?;
                        sops.insert(sop.clone());
                    }
                }
                selection
                    .series
                    .insert(uid.clone(), (!sops.is_empty()).then_some(sops));
            }
        }
    }
    if selection.series.is_empty() {
        return fail(format!(
            "{m} selects no series (Study.Series is missing or empty)"
        ));
    }
    Ok(selection)
}

fn check_schema_version(doc: &Map<String, Value>, member: &str) -> Result<(), ChangeError> {
    match doc.get("SchemaVersion") {
        None => fail(format!("{member}: SchemaVersion is required")),
        Some(Value::Number(n)) if n.as_f64() == Some(1.1) => Ok(()),
        Some(Value::String(s)) if s.trim() == "1.1" => Ok(()),
        Some(_) => fail(format!("{member}: SchemaVersion must be 1.1")),
    }
}

/// A key as it may appear in a message: keywords and hex tags as they are, anything else (which
/// could be a value or a UID) as a placeholder.
fn shown(key: &str) -> &str {
    let word = !key.is_empty()
        && key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric());
    if word || is_hex8(key) { key } else { "<key>" }
}

fn is_hex8(key: &str) -> bool {
    key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Rejects members other than `allowed`.
fn only(
    node: &Map<String, Value>,
    allowed: &[&str],
    member: &str,
    path: &str,
) -> Result<(), ChangeError> {
    for key in node.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        if GENERATED.contains(&key.as_str()) {
            return fail(format!(
                "{member}: {} is generated by HealthImaging and cannot be changed",
                join(path, key)
            ));
        }
        return fail(format!(
            "{member}: unknown member {}",
            join(path, shown(key))
        ));
    }
    Ok(())
}

fn object<'a>(
    value: &'a Value,
    member: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, ChangeError> {
    value
        .as_object()
        .ok_or_else(|| ChangeError(format!("{member}: {path} must be a JSON object")))
}

/// The member structure of an updatable / removable document.
fn check_change_structure(doc: &Map<String, Value>, member: &str) -> Result<(), ChangeError> {
    check_schema_version(doc, member)?;
    only(doc, &["SchemaVersion", "Patient", "Study"], member, "")?;
    let dicom = |node: &Map<String, Value>, path: &str| -> Result<(), ChangeError> {
        if let Some(d) = node.get("DICOM") {
            object(d, member, &join(path, "DICOM"))?;
        }
        Ok(())
    };
    if let Some(patient) = doc.get("Patient") {
        let patient = object(patient, member, "Patient")?;
        only(patient, &["DICOM"], member, "Patient")?;
        dicom(patient, "Patient")?;
    }
    if let Some(study) = doc.get("Study") {
        let study = object(study, member, "Study")?;
        only(study, &["DICOM", "Series"], member, "Study")?;
        dicom(study, "Study")?;
        if let Some(series) = study.get("Series") {
            for node in object(series, member, "Study.Series")?.values() {
                let path = "Study.Series.<series>";
                let node = object(node, member, path)?;
                only(node, &["DICOM", "Instances"], member, path)?;
                dicom(node, path)?;
                if let Some(instances) = node.get("Instances") {
                    let ipath = "Study.Series.<series>.Instances";
                    for inode in object(instances, member, ipath)?.values() {
                        let path = "Study.Series.<series>.Instances.<instance>";
                        let inode = object(inode, member, path)?;
                        only(inode, &["DICOM", "DICOMVRs"], member, path)?;
                        dicom(inode, path)?;
                        if let Some(vrs) = inode.get("DICOMVRs") {
                            let vpath = format!("{path}.DICOMVRs");
                            for (key, vr) in object(vrs, member, &vpath)? {
                                let ok = vr.as_str().is_some_and(|s| VR::from_str(s).is_ok());
                                if !is_hex8(key) || !ok {
                                    return fail(format!(
                                        "{member}: {vpath} entry {} must map an 8-hex-digit tag to a VR",
                                        shown(key)
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Attributes

/// What a key of a change document stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A dictionary attribute with its dictionary VR.
    Standard(VirtualVr),
    /// An odd-group element.
    Private,
    /// An even-group tag the dictionary does not know (or a group length).
    Unknown,
}

#[derive(Debug, Clone)]
struct Attr {
    /// The key in the document map.
    key: String,
    tag: Tag,
    kind: Kind,
}

impl Attr {
    fn tag32(&self) -> u32 {
        (u32::from(self.tag.0) << 16) | u32::from(self.tag.1)
    }

    fn is_hex(&self) -> bool {
        !matches!(self.kind, Kind::Standard(_))
    }

    fn is_sequence(&self) -> bool {
        self.kind == Kind::Standard(VirtualVr::Exact(VR::SQ))
    }
}

/// The expected value representation of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Vr(VR),
    /// US or SS (pixel-representation dependent).
    Xs,
    /// US or OW (LUT data).
    Lt,
}

impl Expect {
    fn name(self) -> String {
        match self {
            Expect::Vr(vr) => vr.to_string().to_owned(),
            Expect::Xs => "US or SS".into(),
            Expect::Lt => "US or OW".into(),
        }
    }
}

fn expect_of(vr: VirtualVr) -> Expect {
    match vr {
        VirtualVr::Exact(vr) => Expect::Vr(vr),
        VirtualVr::Xs => Expect::Xs,
        VirtualVr::Lt => Expect::Lt,
        _ => Expect::Vr(VR::OW),
    }
}

/// Resolves a key of a `DICOM` map against the map it changes (`existing`).
fn resolve(
    key: &str,
    existing: &Map<String, Value>,
    member: &str,
    path: &str,
) -> Result<Attr, ChangeError> {
    let generated = |name: &str| {
        fail(format!(
            "{member}: {name} ({path}) is generated by HealthImaging and cannot be changed"
        ))
    };
    if GENERATED.contains(&key) {
        return generated(key);
    }
    if is_hex8(key) {
        let key = key.to_ascii_uppercase();
        let v = u32::from_str_radix(&key, 16).expect("8 hex digits");
        let tag = Tag((v >> 16) as u16, v as u16);
        if tag.0 % 2 == 1 {
            return Ok(Attr {
                key,
                tag,
                kind: Kind::Private,
            });
        }
        let entry = StandardDataDictionary
            .by_tag(tag)
            .filter(|e| !e.alias().is_empty() && (tag.1 != 0 || tag.0 == 0x0002));
        return match entry {
            Some(e) => {
                if GENERATED.contains(&e.alias()) {
                    return generated(e.alias());
                }
                // A standard tag: keyword key unless the document holds it under its hex key
                // (a repeating-group duplicate).
                let key = if existing.contains_key(&key) {
                    key
                } else {
                    e.alias().to_string()
                };
                Ok(Attr {
                    key,
                    tag,
                    kind: Kind::Standard(e.vr()),
                })
            }
            None => Ok(Attr {
                key,
                tag,
                kind: Kind::Unknown,
            }),
        };
    }
    match StandardDataDictionary.by_name(key) {
        Some(e) => Ok(Attr {
            key: key.to_string(),
            tag: e.tag(),
            kind: Kind::Standard(e.vr()),
        }),
        None => fail(format!(
            "{member}: unknown attribute {} in {path}: keys are DICOM keywords or 8-hex-digit tags",
            shown(key)
        )),
    }
}

/// Which identifier an attribute is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ident {
    Study,
    Series,
    Sop,
}

fn ident_of(tag: Tag) -> Option<Ident> {
    match (tag.0, tag.1) {
        (0x0020, 0x000D) => Some(Ident::Study),
        (0x0020, 0x000E) => Some(Ident::Series),
        (0x0008, 0x0018) => Some(Ident::Sop),
        _ => None,
    }
}

const STUDY_ID: Tag = Tag(0x0020, 0x0010);

/// Where a `DICOM` map of a change document sits.
struct Place<'a> {
    member: &'a str,
    level: Level,
    path: &'a str,
    opts: UpdateOptions,
}

/// The checks shared by updates and removals (everything but the value).
fn check_attribute(attr: &Attr, place: &Place<'_>, removing: bool) -> Result<(), ChangeError> {
    let Place {
        member,
        level,
        path,
        opts,
    } = *place;
    let name = attr.key.as_str();
    if attr.is_hex() {
        let what = if attr.kind == Kind::Private {
            "private element"
        } else {
            "attribute unknown to the DICOM dictionary"
        };
        if level != Level::Instance {
            return fail(format!(
                "{member}: {what} {name} can only be changed at the instance level, not in {path}"
            ));
        }
        if !opts.force {
            return fail(format!("{member}: changing {what} {name} requires force"));
        }
        return Ok(());
    }
    let own = level_of(attr.tag32());
    if own != level {
        return fail(format!(
            "{member}: {name} is {} {own:?}-level attribute and cannot be given at the {level:?} level ({path})",
            if matches!(own, Level::Instance) {
                "an"
            } else {
                "a"
            }
        ));
    }
    if opts.is_primary && matches!(level, Level::Patient | Level::Series) {
        return fail(format!(
            "{member}: {level:?}-level attributes of a primary image set cannot be updated or removed ({name})"
        ));
    }
    if ident_of(attr.tag).is_some() {
        if removing {
            return fail(format!("{member}: {name} cannot be removed"));
        }
        if !opts.force {
            return fail(format!("{member}: changing {name} requires force"));
        }
        if opts.is_primary {
            return fail(format!(
                "{member}: {name} of a primary image set cannot change, even with force"
            ));
        }
    }
    if attr.tag == STUDY_ID && !opts.force {
        return fail(format!("{member}: changing {name} requires force"));
    }
    if attr.is_sequence() && !opts.force {
        return fail(format!(
            "{member}: changing sequence (SQ) attribute {name} requires force"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Values

fn is_text_vr(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS | AT | CS | DA | DS | DT | IS | LO | LT | PN | SH | ST | TM | UC | UI | UR | UT
    )
}

fn is_binary_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// Checks and normalizes an update's value for `attr` with the expected VR.
fn check_value(
    attr: &Attr,
    expect: Expect,
    value: &Value,
    force: bool,
    member: &str,
) -> Result<Value, ChangeError> {
    let name = attr.key.as_str();
    if expect == Expect::Vr(VR::SQ) {
        return match value {
            Value::Null => Ok(Value::Null),
            Value::Array(items) if items.iter().all(Value::is_object) => Ok(value.clone()),
            _ => fail(format!(
                "{member}: the value of {name} must be a list of sequence items (VR SQ)"
            )),
        };
    }
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    if items.len() > 1 && !force {
        return fail(format!(
            "{member}: {name} is given several values (multi-valued); changing it requires force"
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(check_item(name, expect, item, force, member)?);
    }
    let multi = matches!(attr.kind, Kind::Standard(_)) && is_multi_valued(attr.tag);
    Ok(match out.len() {
        0 => Value::Null,
        1 => {
            let v = out.pop().expect("one value");
            if v.is_null() || !multi {
                v
            } else {
                Value::Array(vec![v])
            }
        }
        _ => Value::Array(out),
    })
}

/// One value (not a list).
fn check_item(
    name: &str,
    expect: Expect,
    item: &Value,
    force: bool,
    member: &str,
) -> Result<Value, ChangeError> {
    if item.is_null() {
        return Ok(Value::Null);
    }
    let vr_name = expect.name();
    let shape = |why: &str| {
        fail(format!(
            "{member}: the value of {name} does not fit its VR {vr_name} ({why})"
        ))
    };
    let syntax = |why: &str| {
        fail(format!(
            "{member}: the value of {name} does not fit its VR {vr_name} ({why}); changing it requires force"
        ))
    };
    let vr = match expect {
        Expect::Xs => VR::SS,
        Expect::Lt => {
            if item.is_string() {
                VR::OW
            } else {
                VR::US
            }
        }
        Expect::Vr(vr) => vr,
    };
    if is_text_vr(vr) {
        let Some(s) = item.as_str() else {
            return shape("a JSON string is required");
        };
        let s = s.trim_end_matches('\0');
        if !force && let Err(why) = text_syntax(vr, s) {
            return syntax(why);
        }
        let s = if matches!(vr, VR::IS | VR::DS) {
            s
        } else {
            s.trim_end_matches([' ', '\0'])
        };
        return Ok(if s.is_empty() {
            Value::Null
        } else {
            Value::String(s.to_string())
        });
    }
    if is_binary_vr(vr) {
        let Some(s) = item.as_str() else {
            return shape("a base64 JSON string is required");
        };
        if !force && base64::engine::general_purpose::STANDARD.decode(s).is_err() {
            return syntax("not valid base64");
        }
        return Ok(item.clone());
    }
    let Value::Number(n) = item else {
        return shape("a JSON number is required");
    };
    let int_in = |lo: i64, hi: u64| match (n.as_i64(), n.as_u64()) {
        (_, Some(u)) => u <= hi,
        (Some(i), None) => i >= lo,
        _ => false,
    };
    let ok = match (expect, vr) {
        (Expect::Xs, _) => int_in(i16::MIN.into(), u16::MAX.into()),
        (_, VR::US) => int_in(0, u16::MAX.into()),
        (_, VR::SS) => int_in(i16::MIN.into(), i16::MAX as u64),
        (_, VR::UL) => int_in(0, u32::MAX.into()),
        (_, VR::SL) => int_in(i32::MIN.into(), i32::MAX as u64),
        (_, VR::UV) => n.as_u64().is_some(),
        (_, VR::SV) => n.as_i64().is_some(),
        (_, VR::FL) => n
            .as_f64()
            .is_some_and(|f| f.is_finite() && f.abs() <= f64::from(f32::MAX)),
        (_, VR::FD) => n.as_f64().is_some_and(f64::is_finite),
        _ => false,
    };
    if !ok {
        return shape("number out of range for the VR");
    }
    Ok(item.clone())
}

fn no_control(s: &str, text: bool) -> bool {
    s.chars().all(|c| {
        !c.is_control() || c == '\u{1b}' || (text && matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
    })
}

/// The syntax and length rules of a text VR (PS3.5 6.2).
fn text_syntax(vr: VR, s: &str) -> Result<(), &'static str> {
    let t = s.trim_end_matches(' ');
    let len = s.chars().count();
    let single = |max: usize| -> Result<(), &'static str> {
        if s.contains('\\') {
            return Err("a backslash separates values; give values as a JSON list");
        }
        if len > max {
            return Err("too long");
        }
        if !no_control(s, false) {
            return Err("control characters are not allowed");
        }
        Ok(())
    };
    match vr {
        VR::AE => single(16),
        VR::SH => single(16),
        VR::LO => single(64),
        VR::UC | VR::UR => single(usize::MAX),
        VR::LT | VR::ST | VR::UT => {
            let max = match vr {
                VR::LT => 10_240,
                VR::ST => 1_024,
                _ => usize::MAX,
            };
            if len > max {
                Err("too long")
            } else if !no_control(s, true) {
                Err("control characters are not allowed")
            } else {
                Ok(())
            }
        }
        VR::PN => {
            single(usize::MAX)?;
            if s.split('=').count() > 3 {
                Err("at most three component groups")
            } else if s.split('=').any(|g| g.chars().count() > 64) {
                Err("a component group is longer than 64 characters")
            } else {
                Ok(())
            }
        }
        VR::CS => {
            single(16)?;
            if s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_')
            {
                Ok(())
            } else {
                Err("only A-Z, 0-9, space and underscore")
            }
        }
        VR::AS => {
            let b = t.as_bytes();
            if b.len() == 4 && b[..3].iter().all(u8::is_ascii_digit) && b"DWMY".contains(&b[3]) {
                Ok(())
            } else {
                Err("nnnD, nnnW, nnnM or nnnY")
            }
        }
        VR::DA => valid_date(t).then_some(()).ok_or("YYYYMMDD"),
        VR::TM => valid_time(t).then_some(()).ok_or("HH[MM[SS[.F{1,6}]]]"),
        VR::DT => valid_datetime(t)
            .then_some(())
            .ok_or("YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]"),
        VR::IS => {
            let n = t.trim_start_matches(' ');
            let ok = s.len() <= 12
                && !n.is_empty()
                && n.strip_prefix(['+', '-'])
                    .unwrap_or(n)
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                && n.parse::<i64>()
                    .is_ok_and(|v| (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&v));
            ok.then_some(())
                .ok_or("an integer string of at most 12 characters")
        }
        VR::DS => {
            let n = t.trim_start_matches(' ');
            let ok = s.len() <= 16
                && !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
                && n.parse::<f64>().is_ok_and(f64::is_finite);
            ok.then_some(())
                .ok_or("a decimal string of at most 16 characters")
        }
        VR::UI => valid_uid(s)
            .then_some(())
            .ok_or("digits and dots, at most 64 characters"),
        VR::AT => is_hex8(t).then_some(()).ok_or("an 8-hex-digit tag"),
        _ => Ok(()),
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        _ => 28,
    }
}

fn valid_date(s: &str) -> bool {
    if s.len() != 8 || !s.is_ascii() {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&s[..4]), digits(&s[4..6]), digits(&s[6..])) else {
        return false;
    };
    (1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d)
}

/// `HHMMSS` prefix of 2, 4 or 6 digits in range.
fn valid_hms(s: &str) -> bool {
    if !matches!(s.len(), 2 | 4 | 6) || !s.is_ascii() {
        return false;
    }
    let limits = [23, 59, 60];
    s.as_bytes().chunks(2).zip(limits).all(|(c, max)| {
        std::str::from_utf8(c)
            .ok()
            .and_then(digits)
            .is_some_and(|v| v <= max)
    })
}

fn valid_fraction(f: &str) -> bool {
    (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit())
}

fn valid_time(s: &str) -> bool {
    match s.split_once('.') {
        None => valid_hms(s),
        Some((hms, frac)) => hms.len() == 6 && valid_hms(hms) && valid_fraction(frac),
    }
}

fn valid_datetime(s: &str) -> bool {
    if !s.is_ascii() {
        return false;
    }
    let (main, zone) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if let Some(z) = zone {
        let ok = z.len() == 4
            && digits(&z[..2]).is_some_and(|h| h <= 14)
            && digits(&z[2..]).is_some_and(|m| m <= 59);
        if !ok {
            return false;
        }
    }
    let (dt, frac) = match main.split_once('.') {
        Some((dt, f)) => (dt, Some(f)),
        None => (main, None),
    };
    if !matches!(dt.len(), 4 | 6 | 8 | 10 | 12 | 14) || !dt.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if frac.is_some_and(|f| dt.len() != 14 || !valid_fraction(f)) {
        return false;
    }
    let year = digits(&dt[..4]).unwrap_or(0);
    if dt.len() >= 6 {
        let m = digits(&dt[4..6]).unwrap_or(0);
        if !(1..=12).contains(&m) {
            return false;
        }
        if dt.len() >= 8 {
            let d = digits(&dt[6..8]).unwrap_or(0);
            if !(1..=days_in_month(year, m)).contains(&d) {
                return false;
            }
        }
    }
    dt.len() <= 8 || valid_hms(&dt[8..])
}

fn valid_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
}

// ---------------------------------------------------------------------------------------------
// Document helpers

/// The object under `key`, created (or replaced, if not an object) as needed.
fn obj_mut<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

fn obj<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    m.get(key).and_then(Value::as_object)
}

fn series_map(root: &Map<String, Value>) -> Option<&Map<String, Value>> {
    obj(root, "Study").and_then(|s| obj(s, "Series"))
}

fn series_map_mut(root: &mut Map<String, Value>) -> &mut Map<String, Value> {
    obj_mut(obj_mut(root, "Study"), "Series")
}

/// Sets `key` (in place if present; else at its tag position or, for the sorted levels, then
/// re-sorted by keyword).
fn put_attr(map: &mut Map<String, Value>, key: &str, tag: Tag, value: Value, tag_order: bool) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
        return;
    }
    if tag_order {
        let pos = map
            .keys()
            .position(|k| tag_of_key(k).is_some_and(|t| t > tag))
            .unwrap_or(map.len());
        map.shift_insert(pos, key.to_string(), value);
    } else {
        map.insert(key.to_string(), value);
        map.sort_keys();
    }
}

/// Renames a key, keeping its position.
fn rename_key(map: &mut Map<String, Value>, old: &str, new: &str) {
    if let Some(i) = map.keys().position(|k| k == old)
        && let Some(v) = map.shift_remove(old)
    {
        map.shift_insert(i, new.to_string(), v);
    }
}

/// The new UID an identifier update carries (valid UID text even with force).
fn new_uid(value: &Value, name: &str, member: &str) -> Result<String, ChangeError> {
    let s = value
        .as_str()
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0'))
        .unwrap_or_default();
    if !valid_uid(s) {
        return fail(format!(
            "{member}: the new {name} must be a valid UID (digits and dots, at most 64 characters)"
        ));
    }
    Ok(s.to_string())
}

/// Which member of DICOMUpdates a change document is: what its nodes and attributes do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// removableAttributes: each attribute is removed; a `{}` series or instance node removes
    /// that series or instance.
    Remove,
    /// updatableAttributes: each attribute is set to its checked value; a new identifier
    /// renames its series or instance.
    Update,
}

impl Mode {
    fn member(self) -> &'static str {
        match self {
            Mode::Remove => REMOVABLE,
            Mode::Update => UPDATABLE,
        }
    }

    /// Whether the series or instance a change names is in the document (a removal needs an
    /// object to change).
    fn finds(self, entry: Option<&Value>) -> bool {
        match self {
            Mode::Remove => entry.is_some_and(Value::is_object),
            Mode::Update => entry.is_some(),
        }
    }
}

/// Applies one attribute of a change document's `DICOM` map to `node`, the object holding the
/// changed `DICOM` (and, at the instance level, `DICOMVRs`; `node_vrs` is the change's own):
/// removes it, or sets its checked value. Returns the new UID an identifier update carries.
fn change_attribute(
    node: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    node_vrs: &Map<String, Value>,
    place: &Place<'_>,
    mode: Mode,
) -> Result<Option<String>, ChangeError> {
    let Place {
        member,
        level,
        path,
        opts,
    } = *place;
    let instance_level = level == Level::Instance;
    let attr = resolve(key, obj_mut(node, "DICOM"), member, path)?;
    check_attribute(&attr, place, mode == Mode::Remove)?;
    if mode == Mode::Remove {
        obj_mut(node, "DICOM").shift_remove(&attr.key);
        if instance_level && is_hex8(&attr.key) {
            obj_mut(node, "DICOMVRs").shift_remove(&attr.key);
        }
        return Ok(None);
    }
    let mut new_ident = None;
    let (value, vr_entry) = match attr.kind {
        // check_attribute admits only the level's own identifier (StudyInstanceUID in
        // Study.DICOM, SeriesInstanceUID in a series, SOPInstanceUID in an instance).
        Kind::Standard(_) if ident_of(attr.tag).is_some() => {
            let uid = new_uid(value, &attr.key, member)?;
            new_ident = Some(uid.clone());
            (Value::String(uid), None)
        }
        Kind::Standard(vr) => {
            let v = check_value(&attr, expect_of(vr), value, opts.force, member)?;
            (v, None)
        }
        Kind::Private | Kind::Unknown => {
            let given = node_vrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&attr.key))
                .and_then(|(_, v)| v.as_str());
            let stored = obj(node, "DICOMVRs")
                .and_then(|m| m.get(&attr.key))
                .and_then(Value::as_str);
            let Some(vr) = given.or(stored).and_then(|s| VR::from_str(s).ok()) else {
                return fail(format!(
                    "{member}: new element {} needs its VR in DICOMVRs ({path})",
                    attr.key
                ));
            };
            let v = check_value(&attr, Expect::Vr(vr), value, opts.force, member)?;
            (v, Some(vr.to_string().to_owned()))
        }
    };
    put_attr(
        obj_mut(node, "DICOM"),
        &attr.key,
        attr.tag,
        value,
        instance_level,
    );
    if let Some(vr) = vr_entry {
        put_attr(
            obj_mut(node, "DICOMVRs"),
            &attr.key,
            attr.tag,
            Value::String(vr),
            true,
        );
    }
    Ok(new_ident)
}

/// Applies a whole `DICOM` map of a change document to `node` (its `DICOM` made if missing);
/// the new identifier, if one was given.
fn change_attributes(
    node: &mut Map<String, Value>,
    dicom: &Map<String, Value>,
    node_vrs: &Map<String, Value>,
    place: &Place<'_>,
    mode: Mode,
) -> Result<Option<String>, ChangeError> {
    obj_mut(node, "DICOM");
    let mut new_ident = None;
    for (key, value) in dicom {
        if let Some(uid) = change_attribute(node, key, value, node_vrs, place, mode)? {
            new_ident = Some(uid);
        }
    }
    Ok(new_ident)
}

// ---------------------------------------------------------------------------------------------
// MetadataDocument

impl MetadataDocument {
    /// Applies DICOMUpdates to this document (removals first, then updates), enforcing every
    /// rule of the contract. On error the document may be partly changed (callers work on a clone).
    pub fn apply_updates(
        &mut self,
        updatable: Option<&Map<String, Value>>,
        removable: Option<&Map<String, Value>>,
        opts: UpdateOptions,
    ) -> Result<(), ChangeError> {
        if let Some(r) = removable {
            check_change_structure(r, REMOVABLE)?;
        }
        if let Some(u) = updatable {
            check_change_structure(u, UPDATABLE)?;
        }
        if let Some(r) = removable {
            self.apply_change(r, opts, Mode::Remove)?;
        }
        if let Some(u) = updatable {
            self.apply_change(u, opts, Mode::Update)?;
        }
        Ok(())
    }

    /// The Patient- and Study-level part of the same update applied to another primary image set
    /// of the study (includeStudyImageSets); Series/Instance parts are ignored.
    pub fn apply_study_updates(
        &mut self,
        updatable: Option<&Map<String, Value>>,
        removable: Option<&Map<String, Value>>,
        opts: UpdateOptions,
    ) -> Result<(), ChangeError> {
        fn study_part(doc: &Map<String, Value>) -> Map<String, Value> {
            let mut out = Map::new();
            for key in ["SchemaVersion", "Patient"] {
                if let Some(v) = doc.get(key) {
                    out.insert(key.into(), v.clone());
                }
            }
            if let Some(Value::Object(study)) = doc.get("Study") {
                let mut study = study.clone();
                study.shift_remove("Series");
                out.insert("Study".into(), Value::Object(study));
            }
            out
        }
        if let Some(r) = removable {
            check_change_structure(r, REMOVABLE)?;
        }
        if let Some(u) = updatable {
            check_change_structure(u, UPDATABLE)?;
        }
        let r = removable.map(study_part);
        let u = updatable.map(study_part);
        self.apply_updates(u.as_ref(), r.as_ref(), opts)
    }

    /// Walks a checked change document (Patient and Study `DICOM`, then every series and its
    /// instances), applying each node and attribute as `mode` says.
    fn apply_change(
        &mut self,
        doc: &Map<String, Value>,
        opts: UpdateOptions,
        mode: Mode,
    ) -> Result<(), ChangeError> {
        let member = mode.member();
        let no_vrs = Map::new();
        for (level, node, path) in [
            (Level::Patient, "Patient", "Patient.DICOM"),
            (Level::Study, "Study", "Study.DICOM"),
        ] {
            let Some(dicom) = obj(doc, node).and_then(|n| obj(n, "DICOM")) else {
                continue;
            };
            let place = Place {
                member,
                level,
                path,
                opts,
            };
            let target = obj_mut(self.root_mut(), node);
            change_attributes(target, dicom, &no_vrs, &place, mode)?;
        }
        let Some(series) = obj(doc, "Study").and_then(|s| obj(s, "Series")) else {
            return Ok(());
        };
        for (suid, snode) in series {
            let snode = snode.as_object().expect("checked structure");
            if !mode.finds(series_map(self.as_json()).and_then(|m| m.get(suid))) {
                return fail(format!(
                    "{member}: series Study.Series.<series> does not exist in the image set"
                ));
            }
            if mode == Mode::Remove && snode.is_empty() {
                series_map_mut(self.root_mut()).shift_remove(suid);
                continue;
            }
            let mut series_rename = None;
            if let Some(dicom) = obj(snode, "DICOM") {
                let place = Place {
                    member,
                    level: Level::Series,
                    path: "Study.Series.<series>.DICOM",
                    opts,
                };
                let target = obj_mut(series_map_mut(self.root_mut()), suid);
                series_rename = change_attributes(target, dicom, &no_vrs, &place, mode)?;
            }
            if let Some(instances) = obj(snode, "Instances") {
                for (iuid, inode) in instances {
                    let inode = inode.as_object().expect("checked structure");
                    self.change_instance(suid, iuid, inode, opts, mode)?;
                }
                if mode == Mode::Remove {
                    let all = series_map_mut(self.root_mut());
                    let left = obj(all, suid).and_then(|s| obj(s, "Instances"));
                    if left.is_none_or(Map::is_empty) {
                        all.shift_remove(suid);
                    }
                }
            }
            if let Some(new) = series_rename
                && new != *suid
            {
                let all = series_map_mut(self.root_mut());
                if all.contains_key(&new) {
                    return fail(format!(
                        "{member}: the new SeriesInstanceUID of Study.Series.<series> is already a series of the image set"
                    ));
                }
                rename_key(all, suid, &new);
            }
        }
        if mode == Mode::Remove && self.instance_count() == 0 {
            return fail(format!(
                "{member}: an update cannot remove every instance of the image set; use DeleteImageSet"
            ));
        }
        Ok(())
    }

    /// One instance node of a change document: `{}` removes the instance (removals); else its
    /// `DICOM` attributes (with `DICOMVRs` for updates of private or unknown elements).
    fn change_instance(
        &mut self,
        suid: &str,
        iuid: &str,
        node: &Map<String, Value>,
        opts: UpdateOptions,
        mode: Mode,
    ) -> Result<(), ChangeError> {
        let member = mode.member();
        let path = "Study.Series.<series>.Instances.<instance>.DICOM";
        let place = Place {
            member,
            level: Level::Instance,
            path,
            opts,
        };
        let sop_exists =
            |doc: &MetadataDocument, uid: &str| doc.instances().any(|(_, sop, _)| sop == uid);
        let found = series_map(self.as_json())
            .and_then(|m| obj(m, suid))
            .and_then(|s| obj(s, "Instances"))
            .and_then(|i| i.get(iuid));
        if !mode.finds(found) {
            return fail(format!(
                "{member}: instance Study.Series.<series>.Instances.<instance> does not exist in the image set"
            ));
        }
        if mode == Mode::Remove && node.is_empty() {
            let all = series_map_mut(self.root_mut());
            obj_mut(obj_mut(all, suid), "Instances").shift_remove(iuid);
            return Ok(());
        }
        let empty = Map::new();
        let dicom = obj(node, "DICOM").unwrap_or(&empty);
        let node_vrs = match mode {
            Mode::Remove => &empty,
            Mode::Update => obj(node, "DICOMVRs").unwrap_or(&empty),
        };
        for key in node_vrs.keys() {
            let known = dicom.keys().any(|k| k.eq_ignore_ascii_case(key));
            if !known {
                return fail(format!(
                    "{member}: DICOMVRs entry {key} of {path} has no value in DICOM"
                ));
            }
            let v = u32::from_str_radix(key, 16).unwrap_or_default();
            let tag = Tag((v >> 16) as u16, v as u16);
            if tag.0.is_multiple_of(2) && tag.1 != 0 && StandardDataDictionary.by_tag(tag).is_some()
            {
                return fail(format!(
                    "{member}: DICOMVRs entry {key} names a standard attribute; only private or unknown elements take a VR"
                ));
            }
        }
        let mut sop_rename = None;
        for (key, value) in dicom {
            let all = series_map_mut(self.root_mut());
            let inst = obj_mut(obj_mut(obj_mut(all, suid), "Instances"), iuid);
            if let Some(uid) = change_attribute(inst, key, value, node_vrs, &place, mode)? {
                sop_rename = Some(uid);
            }
        }
        if let Some(new) = sop_rename
            && new != iuid
        {
            if sop_exists(self, &new) {
                return fail(format!(
                    "{member}: the new SOPInstanceUID of Study.Series.<series>.Instances.<instance> is already an instance of the image set"
                ));
            }
            let all = series_map_mut(self.root_mut());
            rename_key(obj_mut(obj_mut(all, suid), "Instances"), iuid, &new);
        }
        Ok(())
    }

    /// A new document holding the selected instances (None = everything) with this document's
    /// Patient/Study/Series attributes; ImageSetID unchanged (the caller sets it). Unknown series
    /// or instance in the selection -> ChangeError (ValidationException naming copiableAttributes).
    pub fn select_for_copy(
        &self,
        selection: Option<&CopySelection>,
    ) -> Result<MetadataDocument, ChangeError> {
        let mut out = self.clone();
        let Some(selection) = selection else {
            return Ok(out);
        };
        let empty = Map::new();
        let series = series_map(self.as_json()).unwrap_or(&empty);
        for (suid, sops) in &selection.series {
            let Some(node) = obj(series, suid) else {
                return fail(format!(
                    "{COPIABLE}: series Study.Series.<series> is not in the source image set"
                ));
            };
            let instances = obj(node, "Instances").unwrap_or(&empty);
            if sops
                .iter()
                .flatten()
                .any(|sop| !instances.contains_key(sop))
            {
                return fail(format!(
                    "{COPIABLE}: instance Study.Series.<series>.Instances.<instance> is not in the source image set"
                ));
            }
        }
        let all = series_map_mut(out.root_mut());
        all.retain(|suid, _| selection.series.contains_key(suid));
        for (suid, node) in all.iter_mut() {
            if let Some(Some(sops)) = selection.series.get(suid)
                && let Some(node) = node.as_object_mut()
            {
                obj_mut(node, "Instances").retain(|sop, _| sops.contains(sop));
            }
        }
        Ok(out)
    }

    /// Merges a copied document into this (destination) document per the contract: without
    /// force every source series must exist here and the 7 grouping elements must be equal
    /// ([`SERIES_MISMATCH`]); with force destination Patient/Study/Series attributes are kept and
    /// unknown series are added with the source's series attributes; a SOP Instance UID already
    /// present anywhere in the destination -> [`DUPLICATE_SOP_INSTANCE`].
    pub fn merge_copy(
        &mut self,
        source: &MetadataDocument,
        force: bool,
    ) -> Result<(), ChangeError> {
        let empty = Map::new();
        let source_series = series_map(source.as_json()).unwrap_or(&empty);
        if !force {
            let own = series_map(self.as_json()).unwrap_or(&empty);
            for suid in source_series.keys() {
                if !own.contains_key(suid) || source.grouping_of(suid) != self.grouping_of(suid) {
                    return fail(SERIES_MISMATCH);
                }
            }
        }
        let mut seen: HashSet<String> = self
            .instances()
            .map(|(_, sop, _)| sop.to_string())
            .collect();
        for (_, sop, _) in source.instances() {
            if !seen.insert(sop.to_string()) {
                return fail(DUPLICATE_SOP_INSTANCE);
            }
        }
        let all = series_map_mut(self.root_mut());
        for (suid, snode) in source_series {
            let Some(snode) = snode.as_object() else {
                continue;
            };
            let source_instances = obj(snode, "Instances").unwrap_or(&empty);
            match all.get_mut(suid).and_then(Value::as_object_mut) {
                Some(dest) => {
                    let instances = obj_mut(dest, "Instances");
                    for (sop, inst) in source_instances {
                        instances.insert(sop.clone(), inst.clone());
                    }
                }
                None => {
                    let mut node = Map::new();
                    node.insert(
                        "DICOM".into(),
                        Value::Object(obj(snode, "DICOM").cloned().unwrap_or_default()),
                    );
                    node.insert("Instances".into(), Value::Object(source_instances.clone()));
                    all.insert(suid.clone(), Value::Object(node));
                }
            }
        }
        Ok(())
    }

    /// The 7 grouping elements, read from the document like `search_tags` reads DICOMTags
    /// (study date, accession number, patient id, study uid, study id from Patient/Study levels;
    /// series uid and series number from the first series): same values an imported instance's
    /// GroupingKey would have (trimmed text; None when absent/empty).
    pub fn grouping_key(&self) -> GroupingKey {
        let first = series_map(self.as_json()).and_then(|m| m.keys().next());
        match first {
            Some(suid) => self.grouping_of(suid),
            None => self.grouping_of(""),
        }
    }

    /// The grouping elements with the series `suid` (absent: no series values).
    fn grouping_of(&self, suid: &str) -> GroupingKey {
        let root = self.as_json();
        let patient = obj(root, "Patient").and_then(|p| obj(p, "DICOM"));
        let study = obj(root, "Study").and_then(|s| obj(s, "DICOM"));
        let node = series_map(root).and_then(|m| obj(m, suid));
        let series = node.and_then(|s| obj(s, "DICOM"));
        GroupingKey {
            study_date: level_text(study, "StudyDate"),
            accession_number: level_text(study, "AccessionNumber"),
            patient_id: level_text(patient, "PatientID"),
            study_instance_uid: level_text(study, "StudyInstanceUID"),
            study_id: level_text(study, "StudyID"),
            series_instance_uid: level_text(series, "SeriesInstanceUID")
                .or_else(|| node.map(|_| suid.to_string())),
            series_number: level_text(series, "SeriesNumber"),
        }
    }

    /// Number of ImageFrames entries over all instances.
    pub fn frame_count(&self) -> usize {
        self.instances()
            .map(|(_, _, inst)| {
                inst.get("ImageFrames")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameEntry, InstanceMetadata, StoredInstance};
    use serde_json::json;

    const SERIES: &str = "1.2.840.99.2";
    const SOP1: &str = "1.2.840.99.3.1";
    const SOP2: &str = "1.2.840.99.3.2";

    const PLAIN: UpdateOptions = UpdateOptions {
        force: false,
        is_primary: false,
    };
    const FORCE: UpdateOptions = UpdateOptions {
        force: true,
        is_primary: false,
    };
    const PRIMARY: UpdateOptions = UpdateOptions {
        force: false,
        is_primary: true,
    };
    const PRIMARY_FORCE: UpdateOptions = UpdateOptions {
        force: true,
        is_primary: true,
    };

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn meta(series_uid: &str, series_number: &str, sop: &str) -> InstanceMetadata {
        InstanceMetadata {
            patient: map(json!({"PatientID": "P1 ", "PatientName": "DOE^JANE", "PatientSex": "F"})),
            study: map(json!({
                "AccessionNumber": "A1", "StudyDate": "20240101", "StudyDescription": "CHEST",
                "StudyID": "S1", "StudyInstanceUID": "1.2.840.99.1", "StudyTime": "101010"
            })),
            series: map(json!({
                "Modality": "CT", "SeriesInstanceUID": series_uid, "SeriesNumber": series_number
            })),
            instance: map(json!({
                "TransferSyntaxUID": "1.2.840.10008.1.2.1",
                "ImageType": ["ORIGINAL", "PRIMARY"],
                "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
                "SOPInstanceUID": sop,
                "00091001": "VENDOR",
                "InstanceNumber": "1 ",
                "Rows": 2,
                "Columns": 2,
                "PixelData": null
            })),
            dicom_vrs: map(json!({"00091001": "LO"})),
        }
    }

    /// A document with the given series (uid, SeriesNumber, SOP Instance UIDs), one frame each.
    fn doc_of(series: &[(&str, &str, &[&str])]) -> MetadataDocument {
        let mut doc = MetadataDocument::new(&"d".repeat(32), &"a".repeat(32));
        for (suid, number, sops) in series {
            for sop in *sops {
                let stored = StoredInstance {
                    stored_transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
                    frames: vec![FrameEntry {
                        id: format!("frame-{sop}"),
                        checksums: vec![(2, 2, 7)],
                        min_pixel_value: Some(0),
                        max_pixel_value: Some(1),
                        frame_size_in_bytes: 8,
                    }],
                };
                doc.put_instance(&meta(suid, number, sop), suid, sop, &stored);
            }
        }
        doc
    }

    fn base() -> MetadataDocument {
        doc_of(&[(SERIES, "1 ", &[SOP1, SOP2])])
    }

    fn parse(v: Value, member: &str) -> Map<String, Value> {
        parse_change_document(v.to_string().as_bytes(), member).unwrap()
    }

    fn update(
        doc: &mut MetadataDocument,
        v: Value,
        opts: UpdateOptions,
    ) -> Result<(), ChangeError> {
        let u = parse_change_document(v.to_string().as_bytes(), UPDATABLE)?;
        doc.apply_updates(Some(&u), None, opts)
    }

    fn remove(
        doc: &mut MetadataDocument,
        v: Value,
        opts: UpdateOptions,
    ) -> Result<(), ChangeError> {
        let r = parse_change_document(v.to_string().as_bytes(), REMOVABLE)?;
        doc.apply_updates(None, Some(&r), opts)
    }

    /// The error's message, checked to hold no UID or value of the fixtures.
    fn message(r: Result<(), ChangeError>) -> String {
        let m = r.expect_err("expected a rejection").0;
        for secret in ["1.2.840", "DOE", "VENDOR", "MX^MX", "97", "2024"] {
            assert!(!m.contains(secret), "message leaks {secret}: {m}");
        }
        m
    }

    fn instance<'a>(doc: &'a MetadataDocument, series: &str, sop: &str) -> &'a Map<String, Value> {
        doc.as_json()["Study"]["Series"][series]["Instances"][sop]
            .as_object()
            .unwrap()
    }

    fn keys(m: &Value) -> Vec<&str> {
        m.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn series_node(uid: &str, v: Value) -> Value {
        json!({"SchemaVersion": 1.1, "Study": {"Series": {uid: v}}})
    }

    fn instance_node(sop: &str, v: Value) -> Value {
        series_node(SERIES, json!({"Instances": {sop: v}}))
    }

    // ----- document parsing -----

    #[test]
    fn schema_version_and_members() {
        assert!(parse_change_document(br#"{"SchemaVersion":1.1}"#, UPDATABLE).is_ok());
        assert!(parse_change_document(br#"{"SchemaVersion":"1.1"}"#, UPDATABLE).is_ok());
        let e = |b: &[u8], member: &str| parse_change_document(b, member).unwrap_err().0;
        assert_eq!(
            e(b"{}", REMOVABLE),
            "removableAttributes: SchemaVersion is required"
        );
        assert!(e(br#"{"SchemaVersion":1.2}"#, UPDATABLE).contains("must be 1.1"));
        assert!(e(br#"{"SchemaVersion":"2"}"#, UPDATABLE).contains("must be 1.1"));
        assert_eq!(e(b"{", UPDATABLE), "updatableAttributes is not valid JSON");
        assert_eq!(
            e(b"[1]", REMOVABLE),
            "removableAttributes must be a JSON object"
        );
        assert!(e(br#"{"SchemaVersion":1.1,"Foo":{}}"#, UPDATABLE).contains("unknown member Foo"));
        assert!(
            e(
                br#"{"SchemaVersion":1.1,"Patient":{"Series":{}}}"#,
                UPDATABLE
            )
            .contains("unknown member Patient.Series")
        );
        assert!(
            e(
                br#"{"SchemaVersion":1.1,"Study":{"Instances":{}}}"#,
                UPDATABLE
            )
            .contains("unknown member Study.Instances")
        );
        assert!(e(br#"{"SchemaVersion":1.1,"ImageSetID":"x"}"#, UPDATABLE).contains("generated"));
        assert!(
            e(br#"{"SchemaVersion":1.1,"Patient":[]}"#, UPDATABLE)
                .contains("Patient must be a JSON object")
        );
        // Series and instance nodes: UIDs are never echoed.
        let m = e(
            br#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2.840.5":{"DICOM":{},"Bad":1}}}}"#,
            UPDATABLE,
        );
        assert_eq!(
            m,
            "updatableAttributes: unknown member Study.Series.<series>.Bad"
        );
        let m = e(
            br#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2.840.5":{"Instances":{"1.2.840.6":{"ImageFrames":[]}}}}}}"#,
            UPDATABLE,
        );
        assert!(
            m.contains("Study.Series.<series>.Instances.<instance>.ImageFrames is generated"),
            "{m}"
        );
        let m = e(
            br#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2.840.5":{"Instances":{"1.2.840.6":{"DICOMVRs":{"001910F9":"XX"}}}}}}}"#,
            UPDATABLE,
        );
        assert!(m.contains("DICOMVRs entry 001910F9"), "{m}");
        let m = e(
            br#"{"SchemaVersion":1.1,"Study":{"1.2.840.7":{}}}"#,
            UPDATABLE,
        );
        assert_eq!(m, "updatableAttributes: unknown member Study.<key>");
    }

    // ----- AWS documented examples -----

    #[test]
    fn aws_patient_rename_on_non_primary() {
        let mut doc = base();
        update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "MX^MX"}}}),
            PLAIN,
        )
        .unwrap();
        assert_eq!(doc.as_json()["Patient"]["DICOM"]["PatientName"], "MX^MX");
        assert_eq!(doc.search_tags().patient_name.as_deref(), Some("MX^MX"));
        // Primary: Patient-level attributes cannot change.
        let mut doc = base();
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "MX^MX"}}}),
            PRIMARY,
        ));
        assert!(
            m.contains("Patient-level") && m.contains("primary") && m.contains("PatientName"),
            "{m}"
        );
    }

    #[test]
    fn aws_remove_study_description() {
        let mut doc = base();
        remove(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "CHEST"}}}),
            PLAIN,
        )
        .unwrap();
        assert!(
            doc.as_json()["Study"]["DICOM"]
                .get("StudyDescription")
                .is_none()
        );
        // Absent attributes are no error; the value is ignored.
        remove(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": 5}}}),
            PLAIN,
        )
        .unwrap();
        // Also allowed on primary image sets (Study level).
        let mut doc = base();
        remove(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": null}}}),
            PRIMARY,
        )
        .unwrap();
    }

    #[test]
    fn aws_remove_an_instance() {
        let mut doc = base();
        assert_eq!(doc.frame_count(), 2);
        remove(&mut doc, instance_node(SOP1, json!({})), PRIMARY).unwrap();
        assert_eq!(doc.instance_count(), 1);
        assert_eq!(doc.frame_count(), 1);
        assert_eq!(doc.frame_ids(), [format!("frame-{SOP2}")]);
        // Not the last one.
        let m = message(remove(
            &mut doc.clone(),
            instance_node(SOP2, json!({})),
            PLAIN,
        ));
        assert!(m.contains("DeleteImageSet"), "{m}");
        // A missing instance or series.
        let m = message(remove(&mut doc, instance_node(SOP1, json!({})), PLAIN));
        assert!(
            m.contains("Study.Series.<series>.Instances.<instance> does not exist"),
            "{m}"
        );
        let m = message(remove(
            &mut doc,
            series_node("1.2.840.77", json!({})),
            PLAIN,
        ));
        assert!(m.contains("Study.Series.<series> does not exist"), "{m}");
    }

    #[test]
    fn remove_a_series_and_every_instance_of_one() {
        let mut doc = doc_of(&[
            (SERIES, "1", &[SOP1]),
            ("1.2.840.99.4", "2", &["1.2.840.99.5"]),
        ]);
        remove(&mut doc, series_node("1.2.840.99.4", json!({})), PLAIN).unwrap();
        assert_eq!(keys(&doc.as_json()["Study"]["Series"]), [SERIES]);
        let m = message(remove(&mut doc, series_node(SERIES, json!({})), PLAIN));
        assert!(m.contains("DeleteImageSet"), "{m}");
        // Removing every instance of one series drops the series node.
        let mut doc = doc_of(&[
            (SERIES, "1", &[SOP1]),
            ("1.2.840.99.4", "2", &["1.2.840.99.5"]),
        ]);
        remove(
            &mut doc,
            series_node("1.2.840.99.4", json!({"Instances": {"1.2.840.99.5": {}}})),
            PLAIN,
        )
        .unwrap();
        assert_eq!(keys(&doc.as_json()["Study"]["Series"]), [SERIES]);
    }

    #[test]
    fn aws_add_private_element_with_force() {
        let change = instance_node(
            SOP1,
            json!({"DICOM": {"001910F9": "97"}, "DICOMVRs": {"001910F9": "DS"}}),
        );
        let mut doc = base();
        let m = message(update(&mut doc, change.clone(), PLAIN));
        assert!(m.contains("private element 001910F9 requires force"), "{m}");
        update(&mut doc, change, FORCE).unwrap();
        let inst = instance(&doc, SERIES, SOP1);
        assert_eq!(inst["DICOM"]["001910F9"], "97");
        assert_eq!(
            keys(&inst["DICOM"]),
            [
                "TransferSyntaxUID",
                "ImageType",
                "SOPClassUID",
                "SOPInstanceUID",
                "00091001",
                "001910F9",
                "InstanceNumber",
                "Rows",
                "Columns",
                "PixelData"
            ]
        );
        assert_eq!(
            inst["DICOMVRs"],
            json!({"00091001": "LO", "001910F9": "DS"})
        );
        // Allowed on a primary image set too (instance level).
        let mut doc = base();
        let change = instance_node(
            SOP1,
            json!({"DICOM": {"001910f9": "97"}, "DICOMVRs": {"001910f9": "DS"}}),
        );
        update(&mut doc, change, PRIMARY_FORCE).unwrap();
        assert_eq!(instance(&doc, SERIES, SOP1)["DICOMVRs"]["001910F9"], "DS");
    }

    #[test]
    fn private_elements_rules() {
        let mut doc = base();
        // A new private element needs its VR.
        let m = message(update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"001910F9": "97"}})),
            FORCE,
        ));
        assert!(m.contains("001910F9 needs its VR in DICOMVRs"), "{m}");
        // An existing one uses the stored VR.
        update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"00091001": "OTHER"}})),
            FORCE,
        )
        .unwrap();
        assert_eq!(instance(&doc, SERIES, SOP1)["DICOM"]["00091001"], "OTHER");
        // The value must have the VR's JSON shape.
        let m = message(update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"00091001": 5}})),
            FORCE,
        ));
        assert!(m.contains("00091001") && m.contains("LO"), "{m}");
        // Instance level only.
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"00091001": "X"}}}),
            FORCE,
        ));
        assert!(m.contains("instance level"), "{m}");
        // A DICOMVRs entry without a value.
        let m = message(update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {}, "DICOMVRs": {"001910F9": "DS"}})),
            FORCE,
        ));
        assert!(
            m.contains("DICOMVRs entry 001910F9") && m.contains("no value"),
            "{m}"
        );
        // DICOMVRs is for private and unknown elements only.
        let m = message(update(
            &mut doc,
            instance_node(
                SOP1,
                json!({"DICOM": {"00280010": 4}, "DICOMVRs": {"00280010": "US"}}),
            ),
            FORCE,
        ));
        assert!(
            m.contains("DICOMVRs entry 00280010 names a standard attribute"),
            "{m}"
        );
        // Removal needs force and takes the DICOMVRs entry along.
        let rm = instance_node(SOP1, json!({"DICOM": {"00091001": null}}));
        let m = message(remove(&mut doc, rm.clone(), PLAIN));
        assert!(m.contains("requires force"), "{m}");
        remove(&mut doc, rm, FORCE).unwrap();
        let inst = instance(&doc, SERIES, SOP1);
        assert!(inst["DICOM"].get("00091001").is_none());
        assert_eq!(inst["DICOMVRs"], json!({}));
        // Tags the dictionary does not know behave like private elements.
        let change = instance_node(
            SOP1,
            json!({"DICOM": {"77780010": "X"}, "DICOMVRs": {"77780010": "LO"}}),
        );
        let m = message(update(&mut doc, change.clone(), PLAIN));
        assert!(
            m.contains("unknown to the DICOM dictionary") && m.contains("requires force"),
            "{m}"
        );
        update(&mut doc, change, FORCE).unwrap();
        assert_eq!(instance(&doc, SERIES, SOP1)["DICOM"]["77780010"], "X");
    }

    #[test]
    fn aws_change_sop_instance_uid_with_force() {
        let new = "1.2.840.99.3.9";
        let change = instance_node(SOP1, json!({"DICOM": {"SOPInstanceUID": new}}));
        let mut doc = base();
        let m = message(update(&mut doc, change.clone(), PLAIN));
        assert!(m.contains("SOPInstanceUID requires force"), "{m}");
        let m = message(update(&mut doc, change.clone(), PRIMARY_FORCE));
        assert!(m.contains("SOPInstanceUID") && m.contains("primary"), "{m}");
        update(&mut doc, change, FORCE).unwrap();
        let instances = &doc.as_json()["Study"]["Series"][SERIES]["Instances"];
        assert_eq!(keys(instances), [new, SOP2]);
        assert_eq!(instances[new]["DICOM"]["SOPInstanceUID"], new);
        assert_eq!(
            instances[new]["ImageFrames"][0]["ID"],
            format!("frame-{SOP1}")
        );
        // A UID already in the image set.
        let m = message(update(
            &mut doc,
            instance_node(new, json!({"DICOM": {"SOPInstanceUID": SOP2}})),
            FORCE,
        ));
        assert!(m.contains("already an instance"), "{m}");
        // Not a UID.
        let m = message(update(
            &mut doc,
            instance_node(new, json!({"DICOM": {"SOPInstanceUID": "abc"}})),
            FORCE,
        ));
        assert!(m.contains("valid UID"), "{m}");
        // Same UID: no change.
        update(
            &mut doc,
            instance_node(new, json!({"DICOM": {"SOPInstanceUID": new}})),
            FORCE,
        )
        .unwrap();
        // Cannot be removed, even with force.
        let m = message(remove(
            &mut doc,
            instance_node(new, json!({"DICOM": {"SOPInstanceUID": null}})),
            FORCE,
        ));
        assert!(m.contains("SOPInstanceUID cannot be removed"), "{m}");
    }

    #[test]
    fn series_instance_uid_renames_the_series() {
        let other = "1.2.840.99.4";
        let mut doc = doc_of(&[(SERIES, "1", &[SOP1]), (other, "2", &["1.2.840.99.5"])]);
        let new = "1.2.840.99.8";
        let change = series_node(SERIES, json!({"DICOM": {"SeriesInstanceUID": new}}));
        let m = message(update(&mut doc, change.clone(), PLAIN));
        assert!(m.contains("SeriesInstanceUID requires force"), "{m}");
        let m = message(update(&mut doc, change.clone(), PRIMARY_FORCE));
        assert!(m.contains("primary"), "{m}");
        // An instance change in the same node still uses the old key.
        let mut both = change.clone();
        both["Study"]["Series"][SERIES]["Instances"] =
            json!({SOP1: {"DICOM": {"InstanceNumber": "7"}}});
        update(&mut doc, both, FORCE).unwrap();
        let series = &doc.as_json()["Study"]["Series"];
        assert_eq!(keys(series), [new, other]);
        assert_eq!(series[new]["DICOM"]["SeriesInstanceUID"], new);
        assert_eq!(
            series[new]["Instances"][SOP1]["DICOM"]["InstanceNumber"],
            "7"
        );
        assert_eq!(doc.grouping_key().series_instance_uid.as_deref(), Some(new));
        let m = message(update(
            &mut doc,
            series_node(new, json!({"DICOM": {"SeriesInstanceUID": other}})),
            FORCE,
        ));
        assert!(m.contains("already a series"), "{m}");
        let m = message(remove(
            &mut doc,
            series_node(new, json!({"DICOM": {"SeriesInstanceUID": null}})),
            FORCE,
        ));
        assert!(m.contains("cannot be removed"), "{m}");
    }

    #[test]
    fn study_identifiers() {
        let mut doc = base();
        let uid =
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyInstanceUID": "1.2.840.99.9"}}});
        let m = message(update(&mut doc, uid.clone(), PLAIN));
        assert!(m.contains("StudyInstanceUID requires force"), "{m}");
        let m = message(update(&mut doc, uid.clone(), PRIMARY_FORCE));
        assert!(m.contains("primary"), "{m}");
        update(&mut doc, uid, FORCE).unwrap();
        assert_eq!(
            doc.grouping_key().study_instance_uid.as_deref(),
            Some("1.2.840.99.9")
        );
        let m = message(remove(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyInstanceUID": null}}}),
            FORCE,
        ));
        assert!(m.contains("cannot be removed"), "{m}");
        let id = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyID": "S2"}}});
        let m = message(update(&mut doc, id.clone(), PLAIN));
        assert!(m.contains("StudyID requires force"), "{m}");
        update(&mut doc, id.clone(), FORCE).unwrap();
        update(&mut doc, id, PRIMARY_FORCE).unwrap();
        assert_eq!(doc.grouping_key().study_id.as_deref(), Some("S2"));
        let rm = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyID": null}}});
        assert!(message(remove(&mut doc, rm.clone(), PLAIN)).contains("requires force"));
        remove(&mut doc, rm, FORCE).unwrap();
        assert_eq!(doc.grouping_key().study_id, None);
    }

    #[test]
    fn generated_attributes_are_rejected_even_with_force() {
        let mut doc = base();
        for key in [
            "PixelData",
            "7FE00010",
            "ImageFrames",
            "Checksum",
            "SchemaVersion",
        ] {
            let m = message(update(
                &mut doc,
                instance_node(SOP1, json!({"DICOM": {key: null}})),
                FORCE,
            ));
            assert!(
                m.contains("generated") && m.contains("cannot be changed"),
                "{key}: {m}"
            );
            let m = message(remove(
                &mut doc,
                instance_node(SOP1, json!({"DICOM": {key: null}})),
                FORCE,
            ));
            assert!(m.contains("generated"), "{key}: {m}");
        }
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"DatastoreID": "x"}}}),
            FORCE,
        ));
        assert!(m.contains("DatastoreID") && m.contains("generated"), "{m}");
    }

    #[test]
    fn attributes_at_their_level() {
        let mut doc = base();
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"PatientName": "X"}}}),
            PLAIN,
        ));
        assert!(
            m.contains("PatientName is a Patient-level attribute")
                && m.contains("at the Study level"),
            "{m}"
        );
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"StudyDate": "20240102"}}}),
            PLAIN,
        ));
        assert!(
            m.contains("StudyDate is a Study-level") && m.contains("Patient level"),
            "{m}"
        );
        let m = message(update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"Modality": "MR"}})),
            FORCE,
        ));
        assert!(
            m.contains("Modality is a Series-level") && m.contains("Instance level"),
            "{m}"
        );
        let m = message(remove(
            &mut doc,
            series_node(SERIES, json!({"DICOM": {"Rows": null}})),
            PLAIN,
        ));
        assert!(
            m.contains("Rows is a Instance-level") || m.contains("Rows is a"),
            "{m}"
        );
        // The right levels work, and hex keys of standard tags mean the keyword.
        update(
            &mut doc,
            series_node(SERIES, json!({"DICOM": {"00080060": "MR"}})),
            PLAIN,
        )
        .unwrap();
        assert_eq!(
            doc.as_json()["Study"]["Series"][SERIES]["DICOM"]["Modality"],
            "MR"
        );
        update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"PatientAge": "045Y"}}}),
            PLAIN,
        )
        .unwrap();
        assert_eq!(doc.as_json()["Study"]["DICOM"]["PatientAge"], "045Y");
    }

    #[test]
    fn primary_image_sets() {
        let mut doc = base();
        let m = message(update(
            &mut doc,
            series_node(SERIES, json!({"DICOM": {"Modality": "MR"}})),
            PRIMARY,
        ));
        assert!(
            m.contains("Series-level") && m.contains("primary") && m.contains("Modality"),
            "{m}"
        );
        let m = message(remove(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientSex": null}}}),
            PRIMARY_FORCE,
        ));
        assert!(m.contains("Patient-level") && m.contains("primary"), "{m}");
        update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "HEAD"}}}),
            PRIMARY,
        )
        .unwrap();
        update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"InstanceNumber": "5"}})),
            PRIMARY,
        )
        .unwrap();
        assert_eq!(instance(&doc, SERIES, SOP1)["DICOM"]["InstanceNumber"], "5");
    }

    #[test]
    fn unknown_attributes_and_sequences() {
        let mut doc = base();
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"Foo": "x"}}}),
            FORCE,
        ));
        assert!(m.contains("unknown attribute Foo"), "{m}");
        let m = message(update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"1.2.840.99.1": "x"}}}),
            FORCE,
        ));
        assert!(m.contains("unknown attribute <key>"), "{m}");
        let seq = json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {
            "OtherPatientIDsSequence": [{"PatientID": "X", "TypeOfPatientID": "TEXT"}]
        }}});
        let m = message(update(&mut doc, seq.clone(), PLAIN));
        assert!(
            m.contains("sequence (SQ) attribute OtherPatientIDsSequence requires force"),
            "{m}"
        );
        update(&mut doc, seq, FORCE).unwrap();
        assert_eq!(
            doc.as_json()["Patient"]["DICOM"]["OtherPatientIDsSequence"][0]["PatientID"],
            "X"
        );
        let bad =
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"OtherPatientIDsSequence": "x"}}});
        let m = message(update(&mut doc, bad, FORCE));
        assert!(m.contains("list of sequence items"), "{m}");
        let rm =
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"OtherPatientIDsSequence": null}}});
        assert!(message(remove(&mut doc, rm.clone(), PLAIN)).contains("requires force"));
        remove(&mut doc, rm, FORCE).unwrap();
        assert!(
            doc.as_json()["Patient"]["DICOM"]
                .get("OtherPatientIDsSequence")
                .is_none()
        );
    }

    #[test]
    fn multi_valued_values() {
        let mut doc = base();
        let two = instance_node(
            SOP1,
            json!({"DICOM": {"ImageType": ["DERIVED", "SECONDARY"]}}),
        );
        let m = message(update(&mut doc, two.clone(), PLAIN));
        assert!(
            m.contains("ImageType") && m.contains("multi-valued") && m.contains("requires force"),
            "{m}"
        );
        let m = message(update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"ImageType": "DERIVED\\SECONDARY"}})),
            PLAIN,
        ));
        assert!(m.contains("requires force"), "{m}");
        update(&mut doc, two, FORCE).unwrap();
        assert_eq!(
            instance(&doc, SERIES, SOP1)["DICOM"]["ImageType"],
            json!(["DERIVED", "SECONDARY"])
        );
        // One value of a multi-valued attribute is stored as a list, as on import.
        update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"ImageType": "DERIVED"}})),
            PLAIN,
        )
        .unwrap();
        assert_eq!(
            instance(&doc, SERIES, SOP1)["DICOM"]["ImageType"],
            json!(["DERIVED"])
        );
        // A one-element list of a single-valued attribute is stored as the value.
        update(
            &mut doc,
            instance_node(SOP1, json!({"DICOM": {"InstanceNumber": ["3"]}})),
            PLAIN,
        )
        .unwrap();
        assert_eq!(instance(&doc, SERIES, SOP1)["DICOM"]["InstanceNumber"], "3");
    }

    #[test]
    fn values_by_vr() {
        let study = |kw: &str, v: Value| json!({"SchemaVersion": 1.1, "Study": {"DICOM": {kw: v}}});
        let series = |kw: &str, v: Value| series_node(SERIES, json!({"DICOM": {kw: v}}));
        let inst = |kw: &str, v: Value| instance_node(SOP1, json!({"DICOM": {kw: v}}));
        let good = [
            study("StudyDate", json!("20240229")),
            study("StudyTime", json!("101010.123456")),
            study("StudyTime", json!("10")),
            study("PatientAge", json!("045Y")),
            study("PatientWeight", json!("72.5")),
            study("PatientSize", json!(" -1.5e3 ")),
            study("StudyDescription", json!(null)),
            study("ReferringPhysicianName", json!("DOE^JOHN^^^=JD")),
            series("SeriesNumber", json!("12 ")),
            series("Modality", json!("MR")),
            series("FrameOfReferenceUID", json!("1.2.3.4")),
            series("SeriesDescription", json!("x".repeat(64))),
            inst("AcquisitionDateTime", json!("20240101101010.5+0100")),
            inst("AcquisitionDateTime", json!("2024")),
            inst("Rows", json!(65535)),
            inst("InstanceNumber", json!("-2147483648")),
            inst("StationAETitle", json!("AE_1")),
        ];
        for change in good {
            let mut doc = base();
            update(&mut doc, change.clone(), PLAIN).unwrap_or_else(|e| panic!("{change}: {e}"));
        }
        let forcible = [
            study("StudyDate", json!("2024-01-01")),
            study("StudyDate", json!("20230229")),
            study("StudyTime", json!("2500")),
            study("StudyTime", json!("10:10:10")),
            study("PatientAge", json!("45Y")),
            study("PatientWeight", json!("heavy")),
            study("AccessionNumber", json!("x".repeat(17))),
            study("ReferringPhysicianName", json!("a=b=c=d")),
            study(
                "ReferringPhysicianName",
                json!(format!("{}^X", "a".repeat(64))),
            ),
            series("SeriesNumber", json!("1.5")),
            series("SeriesNumber", json!("1234567890123")),
            series("Modality", json!("mr")),
            series("FrameOfReferenceUID", json!("1.2.x")),
            series("SeriesDescription", json!("x".repeat(65))),
            series("SeriesDescription", json!("a\u{7}b")),
            inst("AcquisitionDateTime", json!("20241301")),
            inst("StationAETitle", json!("x".repeat(17))),
            inst("FileMetaInformationVersion", json!("not base64!")),
        ];
        for change in forcible {
            let mut doc = base();
            let m = message(update(&mut doc, change.clone(), PLAIN));
            assert!(
                m.contains("does not fit its VR") && m.contains("requires force"),
                "{change}: {m}"
            );
            let mut doc = base();
            update(&mut doc, change.clone(), FORCE).unwrap_or_else(|e| panic!("{change}: {e}"));
        }
        let never = [
            study("StudyDate", json!(20240101)),
            study("StudyDescription", json!({"a": 1})),
            inst("Rows", json!(65536)),
            inst("Rows", json!(-1)),
            inst("Rows", json!("2")),
            inst("Rows", json!(1.5)),
            inst("InstanceNumber", json!(true)),
            inst("FileMetaInformationVersion", json!(1)),
        ];
        for change in never {
            let mut doc = base();
            let m = message(update(&mut doc, change.clone(), FORCE));
            assert!(
                m.contains("does not fit its VR") && !m.contains("force"),
                "{change}: {m}"
            );
        }
    }

    #[test]
    fn values_are_stored_as_on_import_and_in_key_order() {
        let mut doc = base();
        update(
            &mut doc,
            json!({"SchemaVersion": 1.1,
                "Patient": {"DICOM": {"PatientName": "ROE^RICHARD  ", "EthnicGroup": "X", "PatientSex": ""}},
                "Study": {"Series": {SERIES: {"Instances": {SOP1: {"DICOM": {
                    "AcquisitionNumber": "4 ", "ContentDate": "20240101"
                }}}}}}}),
            PLAIN,
        )
        .unwrap();
        let patient = &doc.as_json()["Patient"]["DICOM"];
        assert_eq!(
            keys(patient),
            ["EthnicGroup", "PatientID", "PatientName", "PatientSex"]
        );
        assert_eq!(patient["PatientName"], "ROE^RICHARD");
        assert_eq!(patient["PatientSex"], Value::Null);
        let inst = instance(&doc, SERIES, SOP1);
        assert_eq!(inst["DICOM"]["AcquisitionNumber"], "4 ");
        assert_eq!(
            keys(&inst["DICOM"]),
            [
                "TransferSyntaxUID",
                "ImageType",
                "SOPClassUID",
                "SOPInstanceUID",
                "ContentDate",
                "00091001",
                "AcquisitionNumber",
                "InstanceNumber",
                "Rows",
                "Columns",
                "PixelData"
            ]
        );
        let top: Vec<&String> = doc.as_json().keys().collect();
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
    }

    #[test]
    fn nodes_must_exist_and_removals_come_first() {
        let mut doc = base();
        let m = message(update(
            &mut doc,
            series_node("1.2.840.77", json!({"DICOM": {"Modality": "MR"}})),
            PLAIN,
        ));
        assert!(
            m.contains("updatableAttributes: series Study.Series.<series> does not exist"),
            "{m}"
        );
        let m = message(update(
            &mut doc,
            instance_node("1.2.840.77", json!({"DICOM": {}})),
            PLAIN,
        ));
        assert!(m.contains("Instances.<instance> does not exist"), "{m}");
        // Both documents: removals first, then updates.
        let r = parse(
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": null}}}),
            REMOVABLE,
        );
        let u = parse(
            json!({"SchemaVersion": "1.1", "Study": {"DICOM": {"StudyDescription": "NEW"}}}),
            UPDATABLE,
        );
        doc.apply_updates(Some(&u), Some(&r), PLAIN).unwrap();
        assert_eq!(doc.as_json()["Study"]["DICOM"]["StudyDescription"], "NEW");
        // An update of a removed instance fails.
        let r = parse(instance_node(SOP1, json!({})), REMOVABLE);
        let u = parse(
            instance_node(SOP1, json!({"DICOM": {"InstanceNumber": "2"}})),
            UPDATABLE,
        );
        let m = message(doc.apply_updates(Some(&u), Some(&r), PLAIN));
        assert!(m.contains("does not exist"), "{m}");
        // Empty nodes change nothing.
        let mut doc = base();
        let before = doc.clone();
        update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Patient": {}, "Study": {"DICOM": {}, "Series": {}}}),
            PLAIN,
        )
        .unwrap();
        remove(
            &mut doc,
            series_node(SERIES, json!({"DICOM": {}, "Instances": {}})),
            PLAIN,
        )
        .unwrap();
        assert_eq!(doc, before);
    }

    #[test]
    fn study_updates_for_other_primary_image_sets() {
        let mut doc = base();
        let u = parse(
            json!({"SchemaVersion": 1.1,
                "Study": {"DICOM": {"StudyDescription": "HEAD"},
                          "Series": {"1.2.840.77": {"DICOM": {"Modality": "MR"}}}}}),
            UPDATABLE,
        );
        let r = parse(
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"AccessionNumber": null},
                "Series": {"1.2.840.77": {}}}}),
            REMOVABLE,
        );
        doc.apply_study_updates(Some(&u), Some(&r), PRIMARY)
            .unwrap();
        assert_eq!(doc.as_json()["Study"]["DICOM"]["StudyDescription"], "HEAD");
        assert_eq!(doc.grouping_key().accession_number, None);
        assert_eq!(
            doc.as_json()["Study"]["Series"][SERIES]["DICOM"]["Modality"],
            "CT"
        );
        // The same rules apply to the part that is applied.
        let u = parse(
            json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "X"}}}),
            UPDATABLE,
        );
        assert!(doc.apply_study_updates(Some(&u), None, PRIMARY).is_err());
    }

    // ----- copies -----

    #[test]
    fn copy_selection_parsing() {
        let sel = parse_copy_selection(&format!(
            r#"{{"SchemaVersion":"1.1","Study":{{"Series":{{"{SERIES}":{{"Instances":{{"{SOP1}":{{}}}}}},"1.2.840.99.4":{{}}}}}}}}"#
        ))
        .unwrap();
        let got: Vec<_> = sel
            .series()
            .map(|(s, i)| (s.to_string(), i.cloned()))
            .collect();
        assert_eq!(
            got,
            [
                (SERIES.to_string(), Some(BTreeSet::from([SOP1.to_string()]))),
                ("1.2.840.99.4".to_string(), None),
            ]
        );
        let sel = parse_copy_selection(
            r#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2":{"Instances":{}}}}}"#,
        )
        .unwrap();
        assert_eq!(sel.series["1.2"], None);
        let e = |t: &str| parse_copy_selection(t).unwrap_err().0;
        assert_eq!(e("{"), "copiableAttributes is not valid JSON");
        assert_eq!(e(r#""x""#), "copiableAttributes must be a JSON object");
        assert!(e(r#"{"Study":{"Series":{"1.2":{}}}}"#).contains("SchemaVersion is required"));
        assert!(e(r#"{"SchemaVersion":1.1,"Study":{"Series":{}}}"#).contains("selects no series"));
        assert!(e(r#"{"SchemaVersion":1.1}"#).contains("selects no series"));
        assert_eq!(
            e(r#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2":{"DICOM":{}}}}}"#),
            "copiableAttributes: unknown member Study.Series.<series>.DICOM"
        );
        assert!(
            e(r#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2":{"Instances":{"1.3":{"x":1}}}}}}"#)
                .contains("unknown member Study.Series.<series>.Instances.<instance>.x")
        );
    }

    #[test]
    fn select_for_copy_whole_and_subset() {
        let other = "1.2.840.99.4";
        let doc = doc_of(&[
            (SERIES, "1", &[SOP1, SOP2]),
            (other, "2", &["1.2.840.99.5"]),
        ]);
        let all = doc.select_for_copy(None).unwrap();
        assert_eq!(all, doc);
        assert_eq!(all.frame_count(), 3);
        let sel = parse_copy_selection(&format!(
            r#"{{"SchemaVersion":"1.1","Study":{{"Series":{{"{SERIES}":{{"Instances":{{"{SOP2}":{{}}}}}}}}}}}}"#
        ))
        .unwrap();
        let part = doc.select_for_copy(Some(&sel)).unwrap();
        assert_eq!(part.image_set_id(), doc.image_set_id());
        assert_eq!(keys(&part.as_json()["Study"]["Series"]), [SERIES]);
        assert_eq!(
            keys(&part.as_json()["Study"]["Series"][SERIES]["Instances"]),
            [SOP2]
        );
        assert_eq!(part.frame_count(), 1);
        assert_eq!(part.as_json()["Patient"], doc.as_json()["Patient"]);
        assert_eq!(
            part.as_json()["Study"]["DICOM"],
            doc.as_json()["Study"]["DICOM"]
        );
        let whole = parse_copy_selection(&format!(
            r#"{{"SchemaVersion":"1.1","Study":{{"Series":{{"{other}":{{}}}}}}}}"#
        ))
        .unwrap();
        assert_eq!(
            doc.select_for_copy(Some(&whole)).unwrap().instance_count(),
            1
        );
        let missing =
            parse_copy_selection(r#"{"SchemaVersion":1.1,"Study":{"Series":{"1.2.840.77":{}}}}"#)
                .unwrap();
        let m = doc.select_for_copy(Some(&missing)).unwrap_err().0;
        assert_eq!(
            m,
            "copiableAttributes: series Study.Series.<series> is not in the source image set"
        );
        let missing = parse_copy_selection(&format!(
            r#"{{"SchemaVersion":1.1,"Study":{{"Series":{{"{SERIES}":{{"Instances":{{"1.2.840.77":{{}}}}}}}}}}}}"#
        ))
        .unwrap();
        let m = doc.select_for_copy(Some(&missing)).unwrap_err().0;
        assert!(
            m.contains("copiableAttributes: instance") && !m.contains("1.2.840"),
            "{m}"
        );
    }

    #[test]
    fn merge_into_a_matching_destination() {
        let mut dest = doc_of(&[(SERIES, "1", &[SOP1])]);
        let source = doc_of(&[(SERIES, "1 ", &[SOP2])]);
        dest.merge_copy(&source, false).unwrap();
        assert_eq!(
            keys(&dest.as_json()["Study"]["Series"][SERIES]["Instances"]),
            [SOP1, SOP2]
        );
        assert_eq!(dest.frame_count(), 2);
        assert_eq!(dest.image_set_id(), "a".repeat(32));
        // The same SOP Instance UID again.
        let m = dest.merge_copy(&source, false).unwrap_err().0;
        assert_eq!(m, DUPLICATE_SOP_INSTANCE);
        assert_eq!(
            m,
            "INVALID_REQUEST: SOP Instance UIDs must be unique within the destination image set."
        );
        let m = dest.merge_copy(&source, true).unwrap_err().0;
        assert_eq!(m, DUPLICATE_SOP_INSTANCE);
    }

    #[test]
    fn merge_mismatch_and_force() {
        let mut dest = doc_of(&[(SERIES, "1", &[SOP1])]);
        // Different SeriesNumber.
        let source = doc_of(&[(SERIES, "2", &[SOP2])]);
        let m = dest.merge_copy(&source, false).unwrap_err().0;
        assert_eq!(
            m,
            "INVALID_REQUEST: Series of SourceImageSet and DestinationImageSet don't match."
        );
        // A series the destination does not have.
        let new_series = "1.2.840.99.4";
        let mut source = doc_of(&[(new_series, "2", &["1.2.840.99.5"])]);
        assert_eq!(
            dest.merge_copy(&source, false).unwrap_err().0,
            SERIES_MISMATCH
        );
        // Different study-level grouping element.
        let mut other_study = doc_of(&[(SERIES, "1", &[SOP2])]);
        other_study
            .apply_updates(
                Some(&parse(
                    json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"AccessionNumber": "A2"}}}),
                    UPDATABLE,
                )),
                None,
                PLAIN,
            )
            .unwrap();
        assert_eq!(
            dest.merge_copy(&other_study, false).unwrap_err().0,
            SERIES_MISMATCH
        );
        // With force: destination attributes stay, the new series keeps the source's.
        source
            .apply_updates(
                Some(&parse(
                    json!({"SchemaVersion": 1.1,
                    "Patient": {"DICOM": {"PatientName": "OTHER^NAME"}},
                    "Study": {"Series": {new_series: {"DICOM": {"Modality": "MR"}}}}}),
                    UPDATABLE,
                )),
                None,
                PLAIN,
            )
            .unwrap();
        dest.merge_copy(&source, true).unwrap();
        assert_eq!(
            dest.as_json()["Patient"]["DICOM"]["PatientName"],
            "DOE^JANE"
        );
        assert_eq!(
            keys(&dest.as_json()["Study"]["Series"]),
            [SERIES, new_series]
        );
        assert_eq!(
            dest.as_json()["Study"]["Series"][new_series]["DICOM"]["Modality"],
            "MR"
        );
        assert_eq!(
            dest.as_json()["Study"]["Series"][SERIES]["DICOM"]["Modality"],
            "CT"
        );
        assert_eq!(dest.instance_count(), 2);
        assert_eq!(dest.frame_count(), 2);
        // Force into an existing series with other attributes keeps the destination's.
        let mut dest = doc_of(&[(SERIES, "1", &[SOP1])]);
        let source = doc_of(&[(SERIES, "9", &[SOP2])]);
        dest.merge_copy(&source, true).unwrap();
        assert_eq!(
            dest.as_json()["Study"]["Series"][SERIES]["DICOM"]["SeriesNumber"],
            "1"
        );
        assert_eq!(dest.instance_count(), 2);
    }

    #[test]
    fn grouping_key_and_frame_count() {
        let doc = base();
        assert_eq!(
            doc.grouping_key(),
            GroupingKey {
                study_date: Some("20240101".into()),
                accession_number: Some("A1".into()),
                patient_id: Some("P1".into()),
                study_instance_uid: Some("1.2.840.99.1".into()),
                study_id: Some("S1".into()),
                series_instance_uid: Some(SERIES.into()),
                series_number: Some("1".into()),
            }
        );
        assert_eq!(doc.frame_count(), 2);
        let mut doc = base();
        update(
            &mut doc,
            json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"AccessionNumber": "  "}}}),
            PLAIN,
        )
        .unwrap();
        assert_eq!(doc.grouping_key().accession_number, None);
        let empty = MetadataDocument::new("d", "i");
        assert_eq!(empty.grouping_key(), GroupingKey::default());
        assert_eq!(empty.frame_count(), 0);
    }
}
