//! Test support: the real DICOM corpus (pydicom / pydicom-data test files).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The corpus directory: `LIGHTBOX_DICOM_CORPUS`, else `target/dicom-corpus` (collected with
/// `.venv/bin/python scripts/dicom-corpus.py collect` when missing). `None` (with a loud
/// message) only when Python is unavailable and `LIGHTBOX_REQUIRE_ORACLES` is unset.
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
        let status = Command::new(&python)
            .arg(root.join("scripts/dicom-corpus.py"))
            .arg("collect")
            .arg(&dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(dir),
            other => {
                let msg = format!(
                    "DICOM corpus unavailable ({other:?}); run `bash scripts/setup-test-env.sh` \
                     or set LIGHTBOX_DICOM_CORPUS"
                );
                if std::env::var_os("LIGHTBOX_REQUIRE_ORACLES").is_some() {
                    panic!("{msg}");
                }
                eprintln!("\n!!!!!!!!!! SKIPPING: {msg} !!!!!!!!!!\n");
                None
            }
        }
    })
    .as_deref()
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
