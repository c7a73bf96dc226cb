//! Shared test helpers: oracle discovery (OpenJPH / OpenJPEG CLIs, the Python venv), temp
//! directories, synthetic images and sample comparisons.
#![allow(dead_code)]

pub mod pnm;

use lightbox_codec::{DecodedSamples, ImageDesc, Samples};
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when the project's test command demands that every oracle is present.
pub fn oracles_required() -> bool {
    std::env::var("LIGHTBOX_REQUIRE_ORACLES")
        .map(|v| v == "1")
        .unwrap_or(false)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Returns true if all `tools` exist. Otherwise fails the test when oracles are required, or
/// prints a skip notice.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| on_path(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if oracles_required() {
        panic!("{test}: required tool(s) missing: {missing:?} (LIGHTBOX_REQUIRE_ORACLES=1)");
    }
    eprintln!("{test}: skipped: tool missing: {missing:?}");
    false
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project venv's python with imagecodecs and pydicom, or a skip/fail as for tools.
pub fn venv_python(test: &str) -> Option<PathBuf> {
    let py = workspace_root().join(".venv/bin/python");
    let ok = py.is_file()
        && Command::new(&py)
            .args(["-c", "import imagecodecs, pydicom, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if ok {
        return Some(py);
    }
    if oracles_required() {
        panic!("{test}: .venv with imagecodecs/pydicom missing (run scripts/setup-test-env.sh)");
    }
    eprintln!("{test}: skipped: tool missing: .venv/bin/python with imagecodecs");
    None
}

pub fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("codec")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// Runs a command and panics with its output on failure.
pub fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Deterministic xorshift generator.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Synthetic test image: smooth gradient + noise + a few edges, in range for `bits`.
/// Samples are interleaved; values are i32 (two's complement range when signed).
pub fn synth(w: u32, h: u32, comps: u8, bits: u8, signed: bool, seed: u64) -> Vec<i32> {
    let mut rng = Rng(seed | 1);
    let max = (1i64 << bits) - 1;
    let mut v = Vec::with_capacity((w * h) as usize * comps as usize);
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            for c in 0..comps as i64 {
                let base = (x * 37 + y * 11 + c * 1000) % (max + 1);
                let edge = if (x / 7 + y / 5) % 3 == 0 { max / 2 } else { 0 };
                let noise = (rng.next() % 9) as i64 - 4;
                let mut s = (base + edge + noise).rem_euclid(max + 1);
                if rng.next().is_multiple_of(50) {
                    s = if rng.next().is_multiple_of(2) { 0 } else { max };
                }
                if signed {
                    s -= 1i64 << (bits - 1);
                }
                v.push(s as i32);
            }
        }
    }
    v
}

/// Encodes i32 samples with the right `Samples` variant.
pub fn encode_i32(desc: &ImageDesc, v: &[i32], opts: &lightbox_codec::EncodeOptions) -> Vec<u8> {
    let r = match (desc.signed, desc.bits_stored <= 8) {
        (false, true) => {
            let s: Vec<u8> = v.iter().map(|&x| x as u8).collect();
            lightbox_codec::encode_lossless(desc, Samples::U8(&s), opts)
        }
        (false, false) => {
            let s: Vec<u16> = v.iter().map(|&x| x as u16).collect();
            lightbox_codec::encode_lossless(desc, Samples::U16(&s), opts)
        }
        (true, true) => {
            let s: Vec<i8> = v.iter().map(|&x| x as i8).collect();
            lightbox_codec::encode_lossless(desc, Samples::I8(&s), opts)
        }
        (true, false) => {
            let s: Vec<i16> = v.iter().map(|&x| x as i16).collect();
            lightbox_codec::encode_lossless(desc, Samples::I16(&s), opts)
        }
    };
    r.expect("encode")
}

pub fn decoded_i32(s: &DecodedSamples) -> Vec<i32> {
    match s {
        DecodedSamples::U8(v) => v.iter().map(|&x| x as i32).collect(),
        DecodedSamples::U16(v) => v.iter().map(|&x| x as i32).collect(),
        DecodedSamples::I8(v) => v.iter().map(|&x| x as i32).collect(),
        DecodedSamples::I16(v) => v.iter().map(|&x| x as i32).collect(),
    }
}

/// Writes a PGM/PPM of unsigned samples.
pub fn write_pnm_i32(path: &Path, w: u32, h: u32, comps: u8, bits: u8, v: &[i32]) {
    let p = pnm::Pnm {
        width: w,
        height: h,
        components: comps,
        maxval: (1u32 << bits) - 1,
        samples: v.iter().map(|&x| x as u16).collect(),
    };
    pnm::write_pnm(path, &p).expect("write pnm");
}

pub fn read_pnm_i32(path: &Path) -> Vec<i32> {
    pnm::read_pnm(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .samples
        .iter()
        .map(|&x| x as i32)
        .collect()
}

/// Reads opj_decompress `.rawl` output (little-endian; 1 byte per sample for <= 8 bits).
pub fn read_rawl(path: &Path, bits: u8) -> Vec<i32> {
    let d = std::fs::read(path).expect("read rawl");
    if bits <= 8 {
        d.iter().map(|&b| b as i32).collect()
    } else {
        d.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
            .collect()
    }
}

/// Writes raw samples in the checksum layout (1 byte for <= 8 bits, else 2 bytes LE).
pub fn write_raw(path: &Path, bits: u8, v: &[i32]) {
    let mut out = Vec::new();
    for &x in v {
        if bits <= 8 {
            out.push(x as u8);
        } else {
            out.extend_from_slice(&(x as i16).to_le_bytes());
        }
    }
    std::fs::write(path, out).expect("write raw");
}

/// Compares two sample vectors, reporting the first mismatch.
pub fn assert_same(what: &str, got: &[i32], want: &[i32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: sample {i}: got {} want {}", got[i], want[i]);
    }
}
