//! Differential check of the DICOM JSON writer (`MetadataDocument::instance_dicom_json`) against
//! pydicom's `Dataset.to_json_dict`: every corpus file both read is imported into a metadata
//! document and written back as DICOM JSON; every attribute (top level and inside sequences)
//! must have pydicom's VR and value, binary values above the threshold must be BulkDataURIs that
//! `instance_bulk_data` resolves to pydicom's bytes. pydicom's view comes from
//! `scripts/dicom-json-oracle.py` (run into `target/dicom-json-oracle` when missing or stale, or
//! `LIGHTBOX_DICOM_JSON_ORACLE`).
//!
//! The justified differences are the [`Difference`] variants, each with its reason; every other
//! difference fails the test.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use lightbox_dicom::{DicomJsonOptions, Limits, MetadataDocument, StoredInstance, parse_p10};
use serde_json::{Map, Value};

/// Must match `VERSION` in scripts/dicom-json-oracle.py.
const ORACLE_VERSION: u64 = 1;
const STORED_TS: &str = "1.2.840.10008.1.2.4.202";
const BULK_BASE: &str = "http://lightbox.test/bulkdata/";

/// The differences from pydicom we accept, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Difference {
    /// pydicom writes an empty item of a multi-valued text attribute as `""` (and an empty
    /// person name as `{"Alphabetic": ""}`); PS3.18 F.2.5 says such items are `null`.
    EmptyItemIsNull,
    /// pydicom writes an empty sequence as `"Value": []`; PS3.18 F.2.5 says an empty attribute
    /// has no `"Value"`, which is what we write for every empty attribute.
    EmptySequenceHasNoValue,
    /// pydicom keeps trailing spaces of the inner values of a multi-valued text attribute
    /// (`"DERIVED "` of `DERIVED \PRIMARY`); the metadata document trims trailing spaces of
    /// every text value as AWS does (notes §5.2), and they are insignificant padding for those
    /// VRs (PS3.5 6.2).
    TrailingSpacesTrimmed,
    /// IS/DS and FL numbers equal in value but written differently: pydicom writes every DS as a
    /// Python float (`1.0`), we write integral DS text as an integer (`1`); FL values are
    /// widened by pydicom (`0.30000001192092896`) and written in shortest form by us (`0.3`).
    NumberFormatting,
    /// An IS/DS text that is not a number (`"1A"` in badVR.dcm): pydicom cannot serialize the
    /// element (`{"error": ..}` in the oracle); we keep the stored string (PS3.18 F.2.3 has no
    /// representation for it and dropping it would lose data; dicom_json.rs docs).
    InvalidNumberKeptAsString,
    /// A private attribute whose tag is used with several VRs at different nesting levels
    /// (OBXXXX1A's Philips 200Dxxxx): the document's `DICOMVRs` is one map for all levels
    /// (notes §5.1), so it records only one of them; we keep a recorded VR that fits the value,
    /// else the value's shape decides (items → SQ, integers → UL/SL, floats → FD), and text
    /// under a non-text VR becomes UN bytes. Values are still compared (numbers by value, UN
    /// bytes against the text).
    FlatDicomVrs,
}

fn oracle_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LIGHTBOX_DICOM_JSON_ORACLE") {
        return Some(PathBuf::from(d));
    }
    let corpus = common::corpus()?;
    let root = common::workspace_root();
    let dir = root.join("target/dicom-json-oracle");
    let current = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v["version"].as_u64() == Some(ORACLE_VERSION));
    if current {
        return Some(dir);
    }
    let Some(python) = common::python() else {
        common::skip_or_panic("pydicom DICOM JSON oracle unavailable: no .venv/bin/python");
        return None;
    };
    let status = Command::new(python)
        .arg(root.join("scripts/dicom-json-oracle.py"))
        .arg(corpus)
        .arg(&dir)
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "scripts/dicom-json-oracle.py failed: {status:?}"
    );
    Some(dir)
}

struct Compare<'a> {
    doc: &'a MetadataDocument,
    series: &'a str,
    sop: &'a str,
    /// The instance's `DICOMVRs`.
    vrs: &'a Map<String, Value>,
    accepted: BTreeMap<Difference, usize>,
    problems: Vec<String>,
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

/// The kind of a value, never its content (messages carry no values from the files).
fn shape(v: Option<&Value>) -> String {
    match v {
        None => "absent".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(_)) => "bool".into(),
        Some(Value::Number(_)) => "number".into(),
        Some(Value::String(s)) => format!("string of {} chars", s.chars().count()),
        Some(Value::Array(a)) => format!("array of {}", a.len()),
        Some(Value::Object(o)) => format!("object of {} keys", o.len()),
    }
}

fn trim(s: &str) -> &str {
    s.trim_end_matches([' ', '\0'])
}

impl Compare<'_> {
    fn accept(&mut self, d: Difference) {
        *self.accepted.entry(d).or_default() += 1;
    }

    fn problem(&mut self, at: &str, what: &str) {
        self.problems.push(format!("{at}: {what}"));
    }

    fn dataset(&mut self, ours: &Map<String, Value>, theirs: &Map<String, Value>, at: &str) {
        let keys: Vec<&String> = ours.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        if keys != sorted {
            self.problem(at, "keys not sorted");
        }
        for k in keys {
            if k.len() != 8
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            {
                self.problem(at, &format!("{k}: not an uppercase tag key"));
            }
        }
        for (k, t) in theirs {
            let here = format!("{at}{k}");
            match ours.get(k) {
                None => self.problem(&here, "missing"),
                Some(o) => self.attribute(o, t, &here),
            }
        }
        for k in ours.keys() {
            if !theirs.contains_key(k) {
                self.problem(&format!("{at}{k}"), "extra");
            }
        }
    }

    fn attribute(&mut self, ours: &Value, theirs: &Value, at: &str) {
        if theirs.get("error").is_some() {
            let vr = ours["vr"].as_str().unwrap_or_default();
            let kept = ours["Value"]
                .as_array()
                .is_some_and(|v| v.iter().any(Value::is_string));
            if (vr == "IS" || vr == "DS") && kept {
                self.accept(Difference::InvalidNumberKeptAsString);
            } else {
                self.problem(at, "pydicom cannot serialize it");
            }
            return;
        }
        let ovr = ours["vr"].as_str().unwrap_or_default();
        let tvr = theirs["vr"].as_str().unwrap_or_default();
        let key = &at[at.len().saturating_sub(8)..];
        let recorded = self.vrs.get(key).and_then(Value::as_str);
        if ovr != tvr && recorded.is_some_and(|r| r != tvr) {
            self.accept(Difference::FlatDicomVrs);
            match (ours.get("InlineBinary"), theirs.get("Value")) {
                (Some(Value::String(b)), Some(Value::Array(t))) if ovr == "UN" => {
                    let text: Vec<&str> = t.iter().map(|x| x.as_str().unwrap_or("?")).collect();
                    if trim(&String::from_utf8_lossy(&b64(b))) != trim(&text.join("\\")) {
                        self.problem(at, "UN bytes differ from the text");
                    }
                }
                (_, Some(Value::Array(t))) => match ours.get("Value") {
                    Some(Value::Array(o)) if o.len() == t.len() => {
                        for (i, (x, y)) in o.iter().zip(t).enumerate() {
                            self.item(x, y, tvr, &format!("{at}[{i}]"));
                        }
                    }
                    _ => self.problem(at, "values differ"),
                },
                _ => self.problem(at, &format!("vr {ovr} vs {tvr}")),
            }
            return;
        }
        if ovr != tvr {
            self.problem(at, &format!("vr {ovr} vs {tvr}"));
            return;
        }
        // Binary.
        let obin = ours.get("InlineBinary").or(ours.get("BulkDataURI"));
        let tbin = theirs.get("InlineBinary").or(theirs.get("BulkDataURI"));
        if obin.is_some() || tbin.is_some() {
            self.binary(ours, theirs, at);
            return;
        }
        let ov = ours.get("Value");
        let tv = theirs.get("Value");
        match (ov, tv) {
            (None, None) => {}
            (None, Some(Value::Array(t))) if t.is_empty() && ovr == "SQ" => {
                self.accept(Difference::EmptySequenceHasNoValue)
            }
            (None, Some(Value::Array(t)))
                if t.iter()
                    .all(|x| x.is_null() || x.as_str().is_some_and(|s| trim(s).is_empty())) =>
            {
                self.accept(Difference::EmptyItemIsNull)
            }
            (Some(Value::Array(o)), Some(Value::Array(t))) if o.len() == t.len() => {
                for (i, (x, y)) in o.iter().zip(t).enumerate() {
                    let here = format!("{at}[{i}]");
                    if ovr == "SQ" {
                        match (x.as_object(), y.as_object()) {
                            (Some(a), Some(b)) => self.dataset(a, b, &format!("{here}.")),
                            _ => self.problem(&here, "item not an object"),
                        }
                    } else {
                        self.item(x, y, ovr, &here);
                    }
                }
            }
            _ => self.problem(
                at,
                &format!("value differs ({} vs {})", shape(ov), shape(tv)),
            ),
        }
    }

    fn item(&mut self, x: &Value, y: &Value, vr: &str, at: &str) {
        match (x, y) {
            _ if x == y => {}
            (Value::Null, Value::String(s)) if trim(s).is_empty() => {
                self.accept(Difference::EmptyItemIsNull)
            }
            (Value::Null, Value::Object(o))
                if o.values().all(|v| v.as_str().is_some_and(str::is_empty)) =>
            {
                self.accept(Difference::EmptyItemIsNull)
            }
            (Value::String(a), Value::String(b)) if trim(a) == trim(b) => {
                self.accept(Difference::TrailingSpacesTrimmed)
            }
            (Value::Number(a), Value::Number(b)) => {
                let (p, q) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                if p == q || (vr == "FL" && p as f32 == q as f32) {
                    self.accept(Difference::NumberFormatting);
                } else {
                    self.problem(at, "numbers differ");
                }
            }
            (Value::Object(a), Value::Object(b)) if vr == "PN" => {
                for (k, v) in b {
                    let s = v.as_str().unwrap_or_default();
                    match a.get(k) {
                        Some(Value::String(o)) if trim(o) == trim(s) => {}
                        _ => self.problem(at, &format!("PN group {k} differs")),
                    }
                }
                for k in a.keys() {
                    if !b.contains_key(k) {
                        self.problem(at, &format!("PN group {k} extra"));
                    }
                }
            }
            _ => self.problem(
                at,
                &format!("item differs ({} vs {})", shape(Some(x)), shape(Some(y))),
            ),
        }
    }

    fn binary(&mut self, ours: &Value, theirs: &Value, at: &str) {
        let theirs_bytes = match (theirs.get("InlineBinary"), theirs.get("BulkDataURI")) {
            (Some(Value::String(s)), _) => b64(s),
            (_, Some(Value::String(s))) => b64(s.strip_prefix("bulk:").expect("oracle marker")),
            _ => Vec::new(),
        };
        let their_bulk = theirs.get("BulkDataURI").is_some();
        let ours_bytes = match (ours.get("InlineBinary"), ours.get("BulkDataURI")) {
            (Some(Value::String(s)), _) => {
                if their_bulk {
                    self.problem(at, "inline where pydicom has bulk data");
                }
                b64(s)
            }
            (_, Some(Value::String(uri))) => {
                if !their_bulk {
                    self.problem(at, "bulk data where pydicom is inline");
                }
                let Some(hash) = uri.strip_prefix(BULK_BASE) else {
                    self.problem(at, "BulkDataURI does not start with the base");
                    return;
                };
                match self.doc.instance_bulk_data(self.series, self.sop, hash) {
                    Some((vr, bytes)) => {
                        if vr != ours["vr"].as_str().unwrap_or_default() {
                            self.problem(at, "bulk data VR differs from the attribute's");
                        }
                        bytes
                    }
                    None => {
                        self.problem(at, "BulkDataURI does not resolve");
                        return;
                    }
                }
            }
            _ => Vec::new(),
        };
        if ours_bytes != theirs_bytes {
            // pydicom keeps odd-length values as read; we keep them too, so any difference is
            // a real one.
            self.problem(
                at,
                &format!(
                    "bytes differ ({} vs {})",
                    ours_bytes.len(),
                    theirs_bytes.len()
                ),
            );
        }
    }
}

#[test]
fn dicom_json_matches_pydicom() {
    let Some(dir) = oracle_dir() else {
        return;
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let threshold = index["threshold"].as_u64().unwrap() as usize;
    let limits = Limits::default();
    let opts = DicomJsonOptions {
        bulk_data_threshold: threshold,
        bulk_data_base: Some(BULK_BASE),
    };
    let mut problems = Vec::new();
    let mut accepted: BTreeMap<Difference, usize> = BTreeMap::new();
    let mut compared = 0;
    let mut bulk = 0;
    for name in index["files"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let Some(bytes) = common::read(name) else {
            return;
        };
        let Ok(p) = parse_p10(&bytes, &limits) else {
            // Failures are covered by the corpus test's explicit list.
            continue;
        };
        let mut doc = MetadataDocument::new(&"d".repeat(32), &"i".repeat(32));
        let stored = StoredInstance {
            stored_transfer_syntax: STORED_TS.into(),
            frames: Vec::new(),
        };
        doc.put_instance(
            &p.metadata,
            &p.series_instance_uid,
            &p.sop_instance_uid,
            &stored,
        );
        // Through the stored (gzip JSON) form, as the server reads it.
        let doc = MetadataDocument::from_gzip(&doc.to_gzip()).unwrap();
        let mut ours = doc
            .instance_dicom_json(&p.series_instance_uid, &p.sop_instance_uid, &opts)
            .expect("instance exists");
        let ts = ours.shift_remove("00020010");
        if ts != Some(serde_json::json!({"vr": "UI", "Value": [STORED_TS]})) {
            problems.push(format!("{name}: TransferSyntaxUID is not the stored one"));
        }
        bulk += serde_json::to_string(&ours)
            .unwrap()
            .matches("BulkDataURI")
            .count();
        let oracle: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let theirs = oracle["dataset"].as_object().unwrap();
        let vrs = doc.as_json()["Study"]["Series"][&p.series_instance_uid]["Instances"]
            [&p.sop_instance_uid]["DICOMVRs"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut cmp = Compare {
            vrs: &vrs,
            doc: &doc,
            series: &p.series_instance_uid,
            sop: &p.sop_instance_uid,
            accepted: BTreeMap::new(),
            problems: Vec::new(),
        };
        cmp.dataset(&ours, theirs, "");
        for (d, n) in cmp.accepted {
            *accepted.entry(d).or_default() += n;
        }
        if !cmp.problems.is_empty() {
            problems.push(format!("{name}: {:?}", cmp.problems));
        }
        compared += 1;
    }
    eprintln!("{compared} files compared, {bulk} BulkDataURIs; accepted differences: {accepted:?}");
    assert!(compared > 150, "only {compared} files compared");
    assert!(bulk > 0, "no attribute exercised BulkDataURI");
    assert!(
        problems.is_empty(),
        "{} files differ:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
