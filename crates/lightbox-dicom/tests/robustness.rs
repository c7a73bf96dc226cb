//! Hostile input: random truncations, byte flips and planted huge lengths in real files never
//! panic and never make the parser allocate more than a small multiple of the file size.
//!
//! A counting global allocator records the peak heap use of each case; this test binary holds
//! one test so that nothing else allocates concurrently.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use lightbox_dicom::{Limits, parse_p10};
use proptest::prelude::*;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Small files covering every encoding: implicit/explicit LE, explicit BE, deflated,
/// encapsulated (JPEG, J2K, JPEG-LS, RLE), no meta, SR with deep sequences, private tags.
const FILES: &[&str] = &[
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "image_dfl.dcm",
    "ExplVR_BigEndNoMeta.dcm",
    "ExplVR_LitEndNoMeta.dcm",
    "no_meta.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "rtplan.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "nested_priv_SQ.dcm",
    "UN_sequence.dcm",
    // UN values re-read as sequences / with their dictionary VR.
    "bad_sequence.dcm",
    "rtdose_rle_1frame.dcm",
    // Deep directory-record sequences, big endian, implicit.
    "DICOMDIR-bigEnd",
    "DICOMDIR-implicit",
    "rtstruct.dcm",
    // Odd sizes, empty numbers, RLE multi-frame, a data set in another VR mode than its TS.
    "SC_rgb_small_odd_big_endian.dcm",
    "reportsi_with_empty_number_tags.dcm",
    "rtdose_expb_1frame.dcm",
    "SC_rgb_jpeg.dcm",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(f64),
    Flip(f64, u8),
    /// Plant a length-like 32-bit value (little or big endian) at a position.
    Length(f64, u32, bool),
    /// Remove 1-16 bytes (shifts everything after).
    Delete(f64, u8),
    /// Duplicate a 1-64 byte run in place (repeats headers and items).
    Duplicate(f64, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        (0.0..1.0f64, 1u8..=255).prop_map(|(p, x)| Mutation::Flip(p, x)),
        (
            0.0..1.0f64,
            prop_oneof![
                Just(0xFFFF_FFFFu32),
                Just(0xFFFF_FFF0),
                Just(0x7FFF_FFFF),
                Just(0x0100_0000),
                any::<u32>()
            ],
            any::<bool>()
        )
            .prop_map(|(p, v, be)| Mutation::Length(p, v, be)),
        (0.0..1.0f64, 1u8..=16).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (0.0..1.0f64, 1u8..=64).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len - 1);
        match *m {
            Mutation::Truncate(p) => {
                let n = at(p, bytes.len());
                bytes.truncate(n);
            }
            Mutation::Flip(p, x) => {
                let i = at(p, bytes.len());
                bytes[i] ^= x;
            }
            Mutation::Delete(p, n) => {
                let i = at(p, bytes.len());
                let end = (i + n as usize).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Duplicate(p, n) => {
                let i = at(p, bytes.len());
                let end = (i + n as usize).min(bytes.len());
                let run = bytes[i..end].to_vec();
                bytes.splice(i..i, run);
            }
            Mutation::Length(p, v, be) => {
                let i = at(p, bytes.len());
                let b = if be { v.to_be_bytes() } else { v.to_le_bytes() };
                for (k, x) in b.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(i + k) {
                        *slot = *x;
                    }
                }
            }
        }
    }
    bytes
}

/// Cases the random search found; each once made dicom-rs allocate hundreds of MB.
fn regressions() -> Vec<(&'static str, Vec<Mutation>)> {
    vec![
        // FL element length 90 (not a multiple of 4): dicom-rs lost its place (1.3 GB).
        ("no_meta.dcm", vec![Mutation::Flip(0.07248827336723487, 94)]),
        // Meta group VR flipped OB -> OV with length 2 (775 MB).
        (
            "JPEG2000-embedded-sequence-delimiter.dcm",
            vec![
                Mutation::Truncate(0.16390547474137526),
                Mutation::Flip(0.2751097495896357, 20),
            ],
        ),
    ]
}

/// Heap bytes used at peak by one parse (this binary's only test, so nothing else allocates).
fn peak_of(bytes: &[u8], limits: &Limits) -> usize {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = parse_p10(bytes, limits);
    let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    drop(result);
    used
}

#[test]
fn mutated_real_files_are_bounded() {
    let Some(_) = common::corpus() else {
        return;
    };
    let files: Vec<(String, Vec<u8>)> = FILES
        .iter()
        .map(|n| (n.to_string(), common::read(n).unwrap()))
        .collect();
    let limits = Limits::default();
    for (name, mutations) in regressions() {
        let bytes = apply(common::read(name).unwrap(), &mutations);
        let used = peak_of(&bytes, &limits);
        assert!(used < 4 << 20, "{name}: {used} bytes ({mutations:?})");
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(0..files.len(), prop::collection::vec(mutation(), 1..6)),
            |(which, mutations)| {
                let (name, original) = &files[which];
                let bytes = apply(original.clone(), &mutations);
                let started = std::time::Instant::now();
                let used = peak_of(&bytes, &limits);
                // Deflate can legitimately expand ~1000x; everything else stays within a
                // small multiple of the input.
                let factor = if name == "image_dfl.dcm" { 1100 } else { 32 };
                let budget = factor * bytes.len().max(original.len()) + (4 << 20);
                prop_assert!(
                    used <= budget,
                    "{name}: {used} bytes allocated for a {} byte input ({mutations:?})",
                    bytes.len()
                );
                prop_assert!(
                    started.elapsed() < std::time::Duration::from_secs(5),
                    "{name}: slow case ({mutations:?})"
                );
                Ok(())
            },
        )
        .unwrap();
}
