//! Hostile input: truncated, bit-flipped and field-mutated codestreams must return `Ok` or
//! `Err`, never panic, hang or allocate without bound; plus regression inputs from fuzzing.

mod common;

use common::*;
use lightbox_codec::*;

fn streams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, &(w, h, comps, bits, signed)) in [
        (37u32, 29u32, 1u8, 12u8, false),
        (16, 16, 3, 8, false),
        (70, 9, 1, 16, true),
        (1, 1, 1, 1, false),
    ]
    .iter()
    .enumerate()
    {
        let desc = ImageDesc {
            width: w,
            height: h,
            components: comps,
            bits_stored: bits,
            signed,
        };
        let v = synth(w, h, comps, bits, signed, k as u64 + 3);
        out.push(encode_i32(&desc, &v, &EncodeOptions::default()));
        out.push(encode_i32(
            &desc,
            &v,
            &EncodeOptions {
                block_size_log2: (3, 4),
                precincts: vec![(3, 3), (4, 4)],
                progression: Progression::Lrcp,
                tlm: false,
                ..Default::default()
            },
        ));
        out.push(encode_i32(
            &desc,
            &v,
            &EncodeOptions {
                packed_headers_for_testing: 1 + (k % 2) as u8,
                layers_for_testing: 2,
                ..Default::default()
            },
        ));
        out.push(encode_i32(
            &desc,
            &v,
            &EncodeOptions {
                poc_for_testing: true,
                layers_for_testing: 2,
                marker_variants_for_testing: true,
                component_coding_for_testing: true,
                ..Default::default()
            },
        ));
        out.push(encode_i32(
            &desc,
            &v,
            &EncodeOptions {
                refinement_passes_for_testing: true,
                levels: Some(1),
                ..Default::default()
            },
        ));
    }
    // Irreversible (9/7, ICT, expounded and derived quantization, tiles) streams written by
    // ojph_compress -reversible false.
    for lossy in [
        &include_bytes!("lossy-corpus/grey12.j2c")[..],
        &include_bytes!("lossy-corpus/grey12-derived.j2c")[..],
        &include_bytes!("lossy-corpus/rgb8.j2c")[..],
        &include_bytes!("lossy-corpus/tiles8.j2c")[..],
        // Component subsampling (4:2:0 lossless, 4:2:2 lossy) from ojph_compress -downsamp.
        &include_bytes!("subsampling-corpus/yuv420-8.j2c")[..],
        &include_bytes!("subsampling-corpus/yuv422-10-lossy.j2c")[..],
    ] {
        assert!(decode(lossy, &opts()).is_ok());
        out.push(lossy.to_vec());
    }
    out
}

fn opts() -> DecodeOptions {
    DecodeOptions {
        max_samples: 1 << 22,
        ..Default::default()
    }
}

fn try_all_levels(data: &[u8]) {
    let _ = info(data);
    if let Ok(img) = decode(data, &opts()) {
        for c in 0..=img.components as usize {
            let _ = img.component(c);
        }
    }
    let _ = decode(
        data,
        &DecodeOptions {
            max_resolution_levels: Some(1),
            ..opts()
        },
    );
}

#[test]
fn truncations_never_panic() {
    for s in streams() {
        for n in 0..s.len() {
            try_all_levels(&s[..n]);
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for s in streams() {
        for _ in 0..3000 {
            let mut m = s.clone();
            let flips = 1 + rng.next() % 4;
            for _ in 0..flips {
                let i = (rng.next() % m.len() as u64) as usize;
                m[i] ^= 1 << (rng.next() % 8);
            }
            try_all_levels(&m);
        }
    }
}

#[test]
fn byte_overwrites_in_headers_never_panic() {
    let mut rng = Rng(12345);
    for s in streams() {
        let header_end = s.len().min(140);
        for i in 0..header_end {
            for v in [0u8, 1, 0x7F, 0x80, 0xFF, (rng.next() & 0xFF) as u8] {
                let mut m = s.clone();
                m[i] = v;
                try_all_levels(&m);
            }
        }
    }
}

/// A declared 60000 × 60000 × 4 image with a few bytes of data must be refused up front.
#[test]
fn huge_declared_sizes_are_refused() {
    let desc = ImageDesc {
        width: 8,
        height: 8,
        components: 1,
        bits_stored: 8,
        signed: false,
    };
    let v = vec![0i32; 64];
    let mut s = encode_i32(&desc, &v, &EncodeOptions::default());
    // SIZ Xsiz/Ysiz at offsets 8 and 12; XTsiz/YTsiz at 24 and 28.
    for off in [8usize, 24] {
        s[off..off + 4].copy_from_slice(&60000u32.to_be_bytes());
        s[off + 4..off + 8].copy_from_slice(&60000u32.to_be_bytes());
    }
    match decode(&s, &DecodeOptions::default()) {
        Err(CodecError::LimitExceeded(_)) => {}
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(info(&s).is_ok());
}

#[test]
fn garbage_is_rejected() {
    assert!(decode(&[], &opts()).is_err());
    assert!(decode(&[0xFF, 0x4F], &opts()).is_err());
    assert!(decode(&[0xFF, 0x4F, 0xFF, 0x51, 0, 2], &opts()).is_err());
    assert!(decode(b"not a codestream at all", &opts()).is_err());
}

/// Inputs found by `cargo fuzz run decode` (crates/lightbox-codec/fuzz) that once crashed or
/// ran slowly (e.g. 63233 declared layers made the decoder build a 4-million-entry packet list);
/// each must now finish quickly.
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("regression dir").flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let t = std::time::Instant::now();
        try_all_levels(&data);
        assert!(
            t.elapsed().as_secs_f64() < 2.0,
            "{} took {:?}",
            e.path().display(),
            t.elapsed()
        );
        n += 1;
    }
    assert!(n >= 2);
}
