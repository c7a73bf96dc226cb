//! Test support: the real DICOM corpus (pydicom / pydicom-data test files).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The corpus directory: `LIGHTBOX_DICOM_CORPUS`, else `target/dicom-corpus` (collected with
/// `.venv/bin/python scripts/dicom-corpus.py collect` when missing). `None` (with a loud
/// message) only when the project's Python is absent and `LIGHTBOX_REQUIRE_ORACLES` is unset;
/// a failing collection is a test failure.
pub fn corpus() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("LIGHTBOX_DICOM_CORPUS") {
            return Some(PathBuf::from(dir));
        }
        let root = workspace_root();
        let dir = root.join("target").join("dicom-corpus");
        if dir.join("index.json").exists() {
            return Some(dir);
        }
        let python = root.join(".venv/bin/python");
        if !python.exists() {
            skip_or_panic(
                "DICOM corpus unavailable: no .venv/bin/python (run `bash scripts/setup-test-env.sh` \
                 or set LIGHTBOX_DICOM_CORPUS)",
            );
            return None;
        }
        let status = Command::new(&python)
            .arg(root.join("scripts/dicom-corpus.py"))
            .arg("collect")
            .arg(&dir)
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "scripts/dicom-corpus.py collect failed: {status:?}"
        );
        Some(dir)
    })
    .as_deref()
}

/// Without Python the real-file tests skip loudly, unless `LIGHTBOX_REQUIRE_ORACLES` is set.
pub fn skip_or_panic(msg: &str) {
    if std::env::var_os("LIGHTBOX_REQUIRE_ORACLES").is_some() {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPING: {msg} !!!!!!!!!!\n");
}

/// The workspace's Python (from scripts/setup-test-env.sh), if present.
pub fn python() -> Option<PathBuf> {
    let p = workspace_root().join(".venv/bin/python");
    p.exists().then_some(p)
}

/// All corpus file names (from index.json), sorted.
pub fn corpus_files() -> Vec<String> {
    let Some(dir) = corpus() else {
        return Vec::new();
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn read(name: &str) -> Option<Vec<u8>> {
    corpus().map(|d| std::fs::read(d.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}
