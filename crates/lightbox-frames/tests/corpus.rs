//! Real-corpus test: every pydicom / pydicom-data file with pixel data goes through
//! `process_frames` (HTJ2K and JPEG 2000 lossless storage) and its stored frames are compared
//! with pydicom's decoding (`scripts/dicom-frames-oracle.py`), by our decoders and — second
//! pass — by imagecodecs (OpenJPH for HTJ2K, OpenJPEG for JPEG 2000).
//!
//! Needs `.venv` (scripts/setup-test-env.sh). Without Python the test is skipped loudly,
//! unless `LIGHTBOX_REQUIRE_ORACLES` is set (CI), which makes it fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lightbox_frames::{StorageFormat, StoredFrame, decode_stored_frame, process_frames};
use serde_json::Value;

/// Files that are expected not to go through, with the reason. The test fails if one of them
/// starts working (so the list stays true) or if any other file fails.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        "badVR.dcm",
        "NumberOfFrames is \"1A\": not an integer (pydicom fails too)",
    ),
    (
        "MR_truncated.dcm",
        "pixel data shorter than one frame (deliberately truncated)",
    ),
    (
        "nested_priv_SQ.dcm",
        "Pixel Data without BitsAllocated (pydicom fails too)",
    ),
    (
        "JPEG2000-embedded-sequence-delimiter.dcm",
        "the J2K fragment contains a sequence delimiter, so parsers end the fragment early \
         and the codestream is cut (pydicom fails too)",
    ),
];

/// Files dicom-object cannot open (no file meta, deliberately broken); the importer
/// (lightbox-dicom) handles or rejects them before pixel data is looked at.
const NOT_OPENABLE: &[(&str, &str)] = &[
    (
        "OT-PAL-8-face.dcm",
        "no file meta information (no transfer syntax)",
    ),
    (
        "meta_missing_tsyntax.dcm",
        "file meta without TransferSyntaxUID",
    ),
    (
        "SC_rgb_jpeg.dcm",
        "dicom-rs 0.10.1: \"Could not read data set token\" (pydicom reads it)",
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_oracles() -> bool {
    std::env::var_os("LIGHTBOX_REQUIRE_ORACLES").is_some_and(|v| !v.is_empty() && v != "0")
}

fn python() -> Option<PathBuf> {
    let p = root().join(".venv/bin/python");
    let ok = p.exists()
        && Command::new(&p)
            .args(["-c", "import pydicom, numpy, imagecodecs, data_store"])
            .status()
            .is_ok_and(|s| s.success());
    ok.then_some(p)
}

/// Collects the corpus and the pydicom reference (cached under target/, keyed by the
/// scripts' contents).
fn prepare(py: &Path) -> (PathBuf, PathBuf) {
    let base = root().join("target/lightbox-frames-corpus");
    let corpus = base.join("files");
    let reference = base.join("reference");
    let script = root().join("scripts/dicom-frames-oracle.py");
    let collect = root().join("scripts/dicom-corpus.py");
    let key = format!(
        "{:08x}{:08x}",
        crc32fast::hash(&std::fs::read(&script).unwrap()),
        crc32fast::hash(&std::fs::read(&collect).unwrap())
    );
    let stamp = base.join("stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(key.as_str()) {
        std::fs::create_dir_all(&base).unwrap();
        let st = Command::new(py)
            .arg(&collect)
            .arg("collect")
            .arg(&corpus)
            .status()
            .unwrap();
        assert!(st.success(), "dicom-corpus.py collect failed");
        let out = Command::new(py)
            .arg(&script)
            .arg(&corpus)
            .arg(&reference)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dicom-frames-oracle.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp, &key).unwrap();
    }
    (corpus, reference)
}

fn read_reference(path: &Path, dtype: &str) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    let size: usize = dtype[2..].parse().unwrap();
    let kind = &dtype[1..2];
    bytes
        .chunks_exact(size)
        .map(|c| match (kind, size) {
            ("u", 1) => c[0] as i64,
            ("i", 1) => c[0] as i8 as i64,
            ("u", 2) => u16::from_le_bytes([c[0], c[1]]) as i64,
            ("i", 2) => i16::from_le_bytes([c[0], c[1]]) as i64,
            ("u", 4) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            ("i", 4) => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            other => panic!("unexpected reference dtype {other:?}"),
        })
        .collect()
}

/// CRC-32 of reference samples in the checksum layout for `precision` / `bits_allocated`.
fn reference_crc(values: &[i64], precision: u8, bits_allocated: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let bytes: Vec<u8> = if precision <= 8 {
        values.iter().map(|&v| v as u8).collect()
    } else if bits_allocated == 32 {
        values
            .iter()
            .flat_map(|&v| (v as u32).to_le_bytes())
            .collect()
    } else {
        values
            .iter()
            .flat_map(|&v| (v as u16).to_le_bytes())
            .collect()
    };
    h.update(&bytes);
    h.finalize()
}

/// Maximum sample difference accepted against pydicom for lossy sources: the decoders'
/// IDCT / upsampling (JPEG) and floating-point 9/7 (JPEG 2000) differ slightly.
fn lossy_tolerance(ts: &str, bits: u64) -> Option<i64> {
    match ts {
        // Observed: ≤ 5 (8-bit, libjpeg-turbo/Pillow vs jpeg-decoder), ≤ 1 (12-bit, libjpeg vs ours).
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => Some(if bits > 8 { 4 } else { 6 }),
        // Observed: 0 (OpenJPEG on both sides).
        "1.2.840.10008.1.2.4.91" => Some(1),
        // Our 9/7 decoder vs OpenJPH (lightbox-codec docs: within ±1).
        "1.2.840.10008.1.2.4.203" => Some(1),
        _ => None,
    }
}

struct CheckItem {
    frame: PathBuf,
    codec: &'static str,
    reference: PathBuf,
    offset: usize,
    dtype: String,
    shape: [u64; 3],
}

#[test]
fn corpus_frames_match_pydicom() {
    let Some(py) = python() else {
        assert!(
            !require_oracles(),
            "LIGHTBOX_REQUIRE_ORACLES is set but .venv (pydicom, imagecodecs) is missing: run scripts/setup-test-env.sh"
        );
        eprintln!(
            "\n*** SKIPPED corpus_frames_match_pydicom: .venv with pydicom/imagecodecs not found (run scripts/setup-test-env.sh) ***\n"
        );
        return;
    };
    let (corpus, reference) = prepare(&py);
    let oracle: Vec<Value> =
        serde_json::from_slice(&std::fs::read(reference.join("oracle.json")).unwrap()).unwrap();
    let stored_dir = root().join("target/lightbox-frames-corpus/stored");
    let _ = std::fs::remove_dir_all(&stored_dir);
    std::fs::create_dir_all(&stored_dir).unwrap();

    let expected: BTreeMap<&str, &str> = EXPECTED_FAILURES.iter().copied().collect();
    let not_openable: BTreeMap<&str, &str> = NOT_OPENABLE.iter().copied().collect();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut passed = Vec::new();
    let mut check_items = Vec::new();
    let mut by_ts: BTreeMap<String, (usize, usize)> = BTreeMap::new();

    // Files are checked on two threads (results merged in corpus order).
    let entries: Vec<&Value> = oracle
        .iter()
        .filter(|e| e.get("no_pixel_data").is_none() && e.get("transfer_syntax").is_some())
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(entry) = entries.get(i) else { break };
                        out.push((i, check_file(entry, &corpus, &reference, &stored_dir)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    outcomes.sort_by_key(|(i, _)| *i);
    for (_, o) in outcomes {
        check_items.extend(o.check_items);
        if let Some(ts) = &o.ts {
            let stat = by_ts.entry(ts.clone()).or_default();
            if o.result.is_ok() {
                stat.0 += 1;
            } else {
                stat.1 += 1;
            }
        }
        match o.result {
            Ok(()) => passed.push(o.name),
            Err(e) => {
                failures.insert(o.name, e);
            }
        }
    }

    // Second pass: independent decoders on the stored frames.
    if !check_items.is_empty() {
        let list: Vec<Value> = check_items
            .iter()
            .map(|c| {
                serde_json::json!({
                    "frame": c.frame, "codec": c.codec, "reference": c.reference,
                    "offset": c.offset, "dtype": c.dtype, "shape": c.shape,
                })
            })
            .collect();
        let list_path = stored_dir.join("check.json");
        std::fs::write(&list_path, serde_json::to_vec(&list).unwrap()).unwrap();
        let out = Command::new(&py)
            .arg(root().join("scripts/dicom-frames-oracle.py"))
            .arg("check")
            .arg(&list_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "oracle check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let res: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        for r in res {
            if r["ok"] != Value::Bool(true) {
                let frame = r["frame"].as_str().unwrap().to_string();
                let file = Path::new(&frame)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let name = file.split(".frame").next().unwrap().to_string();
                passed.retain(|p| *p != name);
                failures.insert(name, format!("imagecodecs: {} ({file})", r["error"]));
            }
        }
    }
    eprintln!("per transfer syntax (passed, failed): {by_ts:#?}");
    eprintln!(
        "{} files passed, {} independently re-decoded frames",
        passed.len(),
        check_items.len()
    );

    let mut problems = Vec::new();
    for (name, why) in &failures {
        if expected.contains_key(name.as_str()) {
            eprintln!("expected failure {name}: {why}");
        } else if not_openable.contains_key(name.as_str()) && why.starts_with("open:") {
            eprintln!("not openable {name}: {why}");
        } else {
            problems.push(format!("{name}: {why}"));
        }
    }
    for name in expected.keys().chain(not_openable.keys()) {
        if passed.iter().any(|p| p == name) {
            problems.push(format!("{name}: listed as an expected failure but passed"));
        }
    }
    assert!(
        problems.is_empty(),
        "corpus failures:\n{}",
        problems.join("\n")
    );
    assert!(
        passed.len() >= 150,
        "only {} corpus files passed",
        passed.len()
    );
    for (prefix, n) in [("htj2k_", 8), ("relabelled_", 2)] {
        assert!(
            passed.iter().filter(|p| p.starts_with(prefix)).count() >= n,
            "the generated {prefix}* inputs did not all pass"
        );
    }
}

struct Outcome {
    name: String,
    ts: Option<String>,
    result: Result<(), String>,
    check_items: Vec<CheckItem>,
}

fn check_file(entry: &Value, corpus: &Path, reference: &Path, stored_dir: &Path) -> Outcome {
    let name = entry["name"].as_str().unwrap().to_string();
    let path = match entry.get("path").and_then(Value::as_str) {
        Some(p) => reference.join(p), // generated by the oracle
        None => corpus.join(&name),
    };
    let mut check_items = Vec::new();
    let obj = match dicom_object::OpenFileOptions::new().open_file(&path) {
        Ok(o) => o,
        Err(e) => {
            return Outcome {
                name,
                ts: None,
                result: Err(format!("open: {e}")),
                check_items,
            };
        }
    };
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let t0 = std::time::Instant::now();
    let result = run_one(
        &name,
        entry,
        &obj,
        &ts,
        reference,
        stored_dir,
        &mut check_items,
    );
    if t0.elapsed().as_secs_f64() > 1.0 {
        eprintln!("slow: {name} {:.1}s", t0.elapsed().as_secs_f64());
    }
    Outcome {
        name,
        ts: Some(ts),
        result,
        check_items,
    }
}

fn run_one(
    name: &str,
    entry: &Value,
    obj: &dicom_object::DefaultDicomObject,
    ts: &str,
    reference: &Path,
    stored_dir: &Path,
    check_items: &mut Vec<CheckItem>,
) -> Result<(), String> {
    let rows = entry["rows"].as_u64().unwrap_or(0);
    let cols = entry["columns"].as_u64().unwrap_or(0);
    let spp = entry["samples_per_pixel"].as_u64().unwrap_or(1);
    let bits_allocated = entry["bits_allocated"].as_u64().unwrap_or(0);
    let bits_stored = entry["bits_stored"].as_u64().unwrap_or(0);
    let video = entry.get("video").is_some();
    let tolerance = lossy_tolerance(ts, bits_stored);
    for format in [StorageFormat::Htj2k, StorageFormat::Jpeg2000Lossless] {
        let mut frames: Vec<StoredFrame> = Vec::new();
        let info = process_frames(obj, ts, format, &mut |i, f| {
            assert_eq!(i, frames.len(), "sink called out of order");
            frames.push(f);
            Ok(())
        })
        .map_err(|e| format!("{format:?}: {e}"))?;
        if info.frame_count != frames.len() {
            return Err("frame_count differs from sink calls".into());
        }
        if video {
            if frames.len() != 1 {
                return Err("video must be one stored object".into());
            }
            continue;
        }
        if let Some(e) = entry.get("error") {
            return Err(format!("pydicom could not decode: {e}"));
        }
        let ref_frames = entry["frames"].as_u64().unwrap() as usize;
        if frames.len() != ref_frames {
            return Err(format!("{} frames, pydicom has {ref_frames}", frames.len()));
        }
        let dtype = entry["dtype"].as_str().unwrap().to_string();
        let ref_path = reference.join(format!("{name}.raw"));
        let all = read_reference(&ref_path, &dtype);
        let per = (rows * cols * spp) as usize;
        if all.len() != per * ref_frames {
            return Err(format!(
                "reference has {} samples, expected {}",
                all.len(),
                per * ref_frames
            ));
        }
        let item_size: usize = dtype[2..].parse().unwrap();
        for (k, f) in frames.iter().enumerate() {
            let want = &all[k * per..(k + 1) * per];
            let dec = decode_stored_frame(obj, &info.stored_transfer_syntax, &f.bytes)
                .map_err(|e| format!("frame {k}: stored frame does not decode: {e}"))?;
            let got = dec.values();
            if got.len() != want.len() {
                return Err(format!(
                    "frame {k}: {} samples, reference {}",
                    got.len(),
                    want.len()
                ));
            }
            let maxdiff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .max()
                .unwrap_or(0);
            let full = f
                .checksums
                .last()
                .ok_or(format!("frame {k}: no checksum"))?;
            if full.0 as u64 != cols || full.1 as u64 != rows {
                return Err(format!(
                    "frame {k}: full-resolution checksum entry is {}x{}",
                    full.0, full.1
                ));
            }
            if f.checksums
                .windows(2)
                .any(|w| w[0].0 > w[1].0 || w[0].1 > w[1].1)
            {
                return Err(format!("frame {k}: checksums not ordered base → full"));
            }
            match tolerance {
                None => {
                    if maxdiff != 0 {
                        return Err(format!(
                            "frame {k}: samples differ from pydicom (max diff {maxdiff})"
                        ));
                    }
                    let crc = reference_crc(want, dec.precision, bits_allocated);
                    if full.2 != crc {
                        return Err(format!(
                            "frame {k}: checksum differs from the reference CRC"
                        ));
                    }
                    let lo = want.iter().min().copied();
                    let hi = want.iter().max().copied();
                    if f.min_pixel_value != lo || f.max_pixel_value != hi {
                        return Err(format!(
                            "frame {k}: min/max {:?}/{:?}, reference {lo:?}/{hi:?}",
                            f.min_pixel_value, f.max_pixel_value
                        ));
                    }
                }
                Some(tol) => {
                    if k == 0 && format == StorageFormat::Htj2k {
                        eprintln!(
                            "lossy {name} ({ts}): max diff to pydicom {maxdiff} (tolerance {tol})"
                        );
                    }
                    if maxdiff > tol {
                        return Err(format!(
                            "frame {k}: lossy samples differ by {maxdiff} > {tol}"
                        ));
                    }
                    if full.2 != dec.crc32() {
                        return Err(format!(
                            "frame {k}: checksum differs from the stored frame's decoding"
                        ));
                    }
                    let lo = got.iter().min().copied();
                    let hi = got.iter().max().copied();
                    if f.min_pixel_value != lo || f.max_pixel_value != hi {
                        return Err(format!(
                            "frame {k}: min/max differ from the stored frame's decoding"
                        ));
                    }
                }
            }
            let codec = match info.stored_transfer_syntax.as_str() {
                "1.2.840.10008.1.2.4.202" => Some("htj2k"),
                "1.2.840.10008.1.2.4.90" => Some("j2k"),
                _ => None,
            };
            if let (Some(codec), None) = (codec, tolerance) {
                let ext = if codec == "htj2k" { "j2c" } else { "j2k" };
                let fpath = stored_dir.join(format!("{name}.frame{k}.{ext}"));
                std::fs::write(&fpath, &f.bytes).unwrap();
                check_items.push(CheckItem {
                    frame: fpath,
                    codec,
                    reference: ref_path.clone(),
                    offset: k * per * item_size,
                    dtype: dtype.clone(),
                    shape: [rows, cols, spp],
                });
            }
        }
        if info.stored_transfer_syntax != "1.2.840.10008.1.2.4.202" {
            break; // kept as it is: the storage format does not matter
        }
    }
    Ok(())
}
