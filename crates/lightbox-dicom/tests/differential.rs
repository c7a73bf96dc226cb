//! Differential check against pydicom: for every corpus file both read, every attribute
//! (keyword or hex key, top level and inside sequences) has the same value.
//! pydicom's view comes from `scripts/dicom-metadata-oracle.py` (run into
//! `target/dicom-oracle` when missing, or `LIGHTBOX_DICOM_ORACLE`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use lightbox_dicom::{Limits, parse_p10};
use serde_json::{Map, Value};

fn oracle_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LIGHTBOX_DICOM_ORACLE") {
        return Some(PathBuf::from(d));
    }
    let corpus = common::corpus()?;
    let root = common::workspace_root();
    let dir = root.join("target/dicom-oracle");
    if dir.join("index.json").exists() {
        return Some(dir);
    }
    let Some(python) = common::python() else {
        common::skip_or_panic("pydicom oracle unavailable: no .venv/bin/python");
        return None;
    };
    let status = Command::new(python)
        .arg(root.join("scripts/dicom-metadata-oracle.py"))
        .arg(corpus)
        .arg(&dir)
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "scripts/dicom-metadata-oracle.py failed: {status:?}"
    );
    Some(dir)
}

fn trim(s: &str) -> &str {
    s.trim_end_matches([' ', '\0'])
}

fn same(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Null, Value::Null) => true,
        (Value::String(a), Value::String(b)) => trim(a) == trim(b),
        // An all-padding single value is null for us and an empty string for pydicom.
        (Value::Null, Value::String(b)) | (Value::String(b), Value::Null) => trim(b).is_empty(),
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => {
                let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                // FL values are printed in their shortest single-precision form.
                x == y || x as f32 == y as f32 || ((x - y) / x.abs().max(y.abs())).abs() < 1e-6
            }
        },
        // Attributes whose VM allows several values are arrays for us even with one value.
        (Value::Array(a), b) if a.len() == 1 && !b.is_array() => same(&a[0], b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => diff_maps(a, b, "").is_empty(),
        _ => false,
    }
}

fn diff_maps(ours: &Map<String, Value>, theirs: &Map<String, Value>, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in theirs {
        match ours.get(k) {
            None => out.push(format!("{at}{k}: missing")),
            Some(o) if !same(o, v) => out.push(format!("{at}{k}: differs")),
            _ => {}
        }
    }
    for k in ours.keys() {
        if !theirs.contains_key(k) {
            out.push(format!("{at}{k}: extra"));
        }
    }
    out
}

#[test]
fn metadata_matches_pydicom() {
    let Some(dir) = oracle_dir() else {
        return;
    };
    let index: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let limits = Limits::default();
    let mut problems = Vec::new();
    let mut compared = 0;
    for name in &index {
        let Some(bytes) = common::read(name) else {
            return;
        };
        let Ok(p) = parse_p10(&bytes, &limits) else {
            // Failures are covered by the corpus test's explicit list.
            continue;
        };
        let oracle: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let theirs = oracle["elements"].as_object().unwrap();
        let md = &p.metadata;
        let mut ours = Map::new();
        for m in [&md.instance, &md.patient, &md.study, &md.series] {
            for (k, v) in m {
                ours.insert(k.clone(), v.clone());
            }
        }
        if p.meta_synthesized {
            // pydicom has no meta group for these; ours is synthesized.
            ours.retain(|k, _| {
                theirs.contains_key(k) || !k.starts_with("MediaStorage") && k != "TransferSyntaxUID"
            });
        }
        let d = diff_maps(&ours, theirs, "");
        if !d.is_empty() {
            problems.push(format!("{name}: {d:?}"));
        }
        compared += 1;
    }
    assert!(compared > 150, "only {compared} files compared");
    assert!(
        problems.is_empty(),
        "{} files differ:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
