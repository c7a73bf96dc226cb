//! Property tests: bit-exact round trips over bit depth × signedness × components × sizes ×
//! decomposition levels × code-block sizes × layouts, plus edge cases and marker checks.

mod common;

use common::*;
use lightbox_codec::*;
use proptest::prelude::*;

fn roundtrip(desc: &ImageDesc, v: &[i32], opts: &EncodeOptions) -> Vec<u8> {
    let j2c = encode_i32(desc, v, opts);
    let img = decode(&j2c, &DecodeOptions::default()).expect("decode");
    assert_eq!(
        (img.width, img.height, img.components),
        (desc.width, desc.height, desc.components)
    );
    assert_eq!(
        (img.bits_stored, img.signed),
        (desc.bits_stored, desc.signed)
    );
    let got = decoded_i32(&img.samples);
    let want: Vec<i32> = if opts.planar {
        let n = (desc.width * desc.height) as usize;
        let c = desc.components as usize;
        (0..n * c).map(|i| v[(i % c) * n + i / c]).collect()
    } else {
        v.to_vec()
    };
    assert_same(&format!("{desc:?} {opts:?}"), &got, &want);
    j2c
}

#[derive(Debug, Clone, Copy)]
enum Content {
    Constant,
    Noise,
    Gradient,
    Extremes,
}

fn make(
    w: u32,
    h: u32,
    comps: u8,
    bits: u8,
    signed: bool,
    content: Content,
    seed: u64,
) -> Vec<i32> {
    let n = (w * h) as usize * comps as usize;
    let lo: i64 = if signed { -(1i64 << (bits - 1)) } else { 0 };
    let span = 1i64 << bits;
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|i| {
            let off = match content {
                Content::Constant => (seed as i64).rem_euclid(span),
                Content::Noise => (rng.next() % span as u64) as i64,
                Content::Gradient => (i as i64 * 7 + (i as i64 / w as i64) * 3).rem_euclid(span),
                Content::Extremes => {
                    if rng.next().is_multiple_of(2) {
                        0
                    } else {
                        span - 1
                    }
                }
            };
            (lo + off) as i32
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn lossless_roundtrip(
        w in 1u32..150,
        h in 1u32..150,
        comps in prop::sample::select(vec![1u8, 3, 2, 4]),
        bits in 1u8..=16,
        signed in any::<bool>(),
        content in prop::sample::select(vec![Content::Constant, Content::Noise, Content::Gradient, Content::Extremes]),
        levels in prop::option::of(0u8..9),
        cb in prop::sample::select(vec![(6u8, 6u8), (5, 5), (4, 6), (6, 4), (2, 2), (3, 7)]),
        planar in any::<bool>(),
        rct in any::<bool>(),
        prog in prop::sample::select(vec![Progression::Rpcl, Progression::Lrcp, Progression::Pcrl, Progression::Cprl, Progression::Rlcp]),
        precincts in prop::sample::select(vec![vec![], vec![(4u8, 4u8), (5, 5)], vec![(2, 3), (3, 3), (6, 6)]]),
        seed in any::<u64>(),
    ) {
        let desc = ImageDesc { width: w, height: h, components: comps, bits_stored: bits, signed };
        let v = make(w, h, comps, bits, signed, content, seed);
        let opts = EncodeOptions {
            planar,
            levels,
            block_size_log2: cb,
            color_transform: rct,
            progression: prog,
            precincts,
            ..Default::default()
        };
        roundtrip(&desc, &v, &opts);
    }
}

#[test]
fn edge_sizes_and_depths() {
    for &(w, h) in &[
        (1, 1),
        (1, 2),
        (2, 1),
        (1, 4097),
        (4097, 1),
        (3, 3),
        (63, 65),
        (64, 64),
        (65, 64),
    ] {
        for bits in [1u8, 8, 16] {
            for signed in [false, true] {
                for comps in [1u8, 3] {
                    let desc = ImageDesc {
                        width: w,
                        height: h,
                        components: comps,
                        bits_stored: bits,
                        signed,
                    };
                    for content in [Content::Extremes, Content::Noise] {
                        let v = make(w, h, comps, bits, signed, content, 42);
                        roundtrip(&desc, &v, &EncodeOptions::default());
                    }
                }
            }
        }
    }
}

/// Worst-case dynamic range: 16-bit extremes in checkerboards and stripes through the RCT and
/// many levels must still round-trip (guard bits are raised when needed).
#[test]
fn adversarial_dynamic_range() {
    let (w, h) = (256u32, 256u32);
    for pattern in 0..4 {
        let v: Vec<i32> = (0..w * h * 3)
            .map(|i| {
                let p = i / 3;
                let (x, y, c) = (p % w, p / w, i % 3);
                let hi = match pattern {
                    0 => (x + y) % 2 == 0,
                    1 => (x / 2 + y / 2) % 2 == 0,
                    2 => x % 3 == 0,
                    _ => ((x ^ y) >> c) & 1 == 1,
                };
                if hi { 65535 } else { 0 }
            })
            .collect();
        let desc = ImageDesc {
            width: w,
            height: h,
            components: 3,
            bits_stored: 16,
            signed: false,
        };
        roundtrip(
            &desc,
            &v,
            &EncodeOptions {
                levels: Some(8),
                ..Default::default()
            },
        );
        let vs: Vec<i32> = v.iter().map(|&x| x - 32768).collect();
        let desc = ImageDesc {
            signed: true,
            ..desc
        };
        roundtrip(
            &desc,
            &vs,
            &EncodeOptions {
                levels: Some(8),
                ..Default::default()
            },
        );
    }
}

/// The default codestream satisfies DICOM 1.2.840.10008.1.2.4.202: SOC SIZ CAP COD QCD TLM,
/// RPCL, base resolution ≤ 64, TLM lengths equal to the tile-part lengths.
#[test]
fn dicom_htj2k_rpcl_structure() {
    for &(w, h) in &[
        (512u32, 512u32),
        (1841, 1955),
        (3000, 20),
        (1, 1),
        (64, 64),
        (65, 65),
    ] {
        let desc = ImageDesc {
            width: w,
            height: h,
            components: 1,
            bits_stored: 12,
            signed: false,
        };
        let v = make(w, h, 1, 12, false, Content::Gradient, 1);
        let j2c = encode_i32(&desc, &v, &EncodeOptions::default());
        let marker = |pos: usize| u16::from_be_bytes([j2c[pos], j2c[pos + 1]]);
        let seg_len = |pos: usize| u16::from_be_bytes([j2c[pos + 2], j2c[pos + 3]]) as usize;
        let mut pos = 2;
        assert_eq!(marker(0), 0xFF4F);
        let mut order = Vec::new();
        let mut tlm = Vec::new();
        while marker(pos) != 0xFF90 {
            let m = marker(pos);
            order.push(m);
            if m == 0xFF50 {
                let pcap = u32::from_be_bytes(j2c[pos + 4..pos + 8].try_into().unwrap());
                assert_eq!(pcap, 0x0002_0000, "Pcap15");
            }
            if m == 0xFF52 {
                assert_eq!(j2c[pos + 5], 2, "RPCL");
                let levels = j2c[pos + 9] as u32;
                assert!(w.div_ceil(1 << levels) <= 64 && h.div_ceil(1 << levels) <= 64);
                assert_eq!(j2c[pos + 12], 0x40, "HT code-block style");
            }
            if m == 0xFF55 {
                assert_eq!(j2c[pos + 5], 0x60);
                let n = (seg_len(pos) - 4) / 6;
                for i in 0..n {
                    let o = pos + 6 + i * 6 + 2;
                    tlm.push(u32::from_be_bytes(j2c[o..o + 4].try_into().unwrap()));
                }
            }
            pos += 2 + seg_len(pos);
        }
        assert_eq!(order, vec![0xFF51, 0xFF50, 0xFF52, 0xFF5C, 0xFF55]);
        let mut parts = Vec::new();
        while marker(pos) == 0xFF90 {
            let psot = u32::from_be_bytes(j2c[pos + 6..pos + 10].try_into().unwrap());
            parts.push(psot);
            pos += psot as usize;
        }
        assert_eq!(marker(pos), 0xFFD9);
        assert_eq!(pos + 2, j2c.len());
        assert_eq!(parts, tlm, "TLM matches tile-parts");
        let inf = info(&j2c).unwrap();
        assert!(inf.cap_part15 && inf.has_tlm && inf.ht && inf.reversible);
        // Every prefix that ends at a tile-part boundary decodes at the matching resolution.
        let mut end = j2c.len() - 2 - parts.iter().map(|&p| p as usize).sum::<usize>();
        for (k, &pl) in parts.iter().enumerate() {
            end += pl as usize;
            let mut prefix = j2c[..end].to_vec();
            prefix.extend_from_slice(&[0xFF, 0xD9]);
            let keep = (k + 1) as u8;
            let a = decode(
                &prefix,
                &DecodeOptions {
                    max_resolution_levels: Some(keep),
                    ..Default::default()
                },
            )
            .unwrap();
            let b = decode(
                &j2c,
                &DecodeOptions {
                    max_resolution_levels: Some(keep),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(a, b, "prefix of {} tile-parts", k + 1);
        }
    }
}

#[test]
fn rejects_bad_input() {
    let desc = ImageDesc {
        width: 2,
        height: 2,
        components: 1,
        bits_stored: 8,
        signed: false,
    };
    let o = EncodeOptions::default();
    assert!(matches!(
        encode_lossless(&desc, Samples::U8(&[1, 2, 3]), &o),
        Err(CodecError::InvalidInput(_))
    ));
    assert!(matches!(
        encode_lossless(&desc, Samples::I8(&[1, 2, 3, 4]), &o),
        Err(CodecError::InvalidInput(_))
    ));
    let d12 = ImageDesc {
        bits_stored: 12,
        ..desc
    };
    assert!(matches!(
        encode_lossless(&d12, Samples::U16(&[0, 4096, 0, 0]), &o),
        Err(CodecError::InvalidInput(_))
    ));
    let d0 = ImageDesc { width: 0, ..desc };
    assert!(encode_lossless(&d0, Samples::U8(&[]), &o).is_err());
    let d17 = ImageDesc {
        bits_stored: 17,
        ..desc
    };
    assert!(encode_lossless(&d17, Samples::U16(&[0; 4]), &o).is_err());
}

/// Multi-threaded coding gives byte-identical codestreams and identical decoded images.
#[test]
fn threads_do_not_change_results() {
    let (w, h) = (700u32, 333u32);
    let desc = ImageDesc {
        width: w,
        height: h,
        components: 3,
        bits_stored: 12,
        signed: false,
    };
    // Noise makes code-block rows large enough for the decoder's parallel path.
    for content in [Content::Gradient, Content::Noise] {
        let v = make(w, h, 3, 12, false, content, 9);
        let one = encode_i32(
            &desc,
            &v,
            &EncodeOptions {
                threads: 1,
                ..Default::default()
            },
        );
        for t in [2, 3, 0] {
            let many = encode_i32(
                &desc,
                &v,
                &EncodeOptions {
                    threads: t,
                    ..Default::default()
                },
            );
            assert_eq!(one, many, "threads {t}");
            let a = decode(
                &one,
                &DecodeOptions {
                    threads: 1,
                    ..Default::default()
                },
            )
            .unwrap();
            let b = decode(
                &one,
                &DecodeOptions {
                    threads: t,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(a, b);
        }
    }
}

/// A codestream wrapped in JPH boxes (signature, ftyp, jp2h, jp2c) decodes like the raw one.
#[test]
fn jph_file_wrapper() {
    let desc = ImageDesc {
        width: 17,
        height: 9,
        components: 1,
        bits_stored: 12,
        signed: false,
    };
    let v = make(17, 9, 1, 12, false, Content::Noise, 3);
    let j2c = encode_i32(&desc, &v, &EncodeOptions::default());
    let mut jph = vec![0, 0, 0, 12, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A];
    jph.extend_from_slice(&[0, 0, 0, 20]);
    jph.extend_from_slice(b"ftypjph \0\0\0\0jph ");
    jph.extend_from_slice(&[0, 0, 0, 8]);
    jph.extend_from_slice(b"jp2h");
    jph.extend_from_slice(&((j2c.len() + 8) as u32).to_be_bytes());
    jph.extend_from_slice(b"jp2c");
    jph.extend_from_slice(&j2c);
    assert_eq!(
        decode(&jph, &DecodeOptions::default()).unwrap(),
        decode(&j2c, &DecodeOptions::default()).unwrap()
    );
    assert_eq!(info(&jph).unwrap(), info(&j2c).unwrap());
    // A truncated box structure is an error, not a panic.
    assert!(decode(&jph[..30], &DecodeOptions::default()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    /// Encoder-side checksums equal the checksums of the decoded codestream at every level.
    #[test]
    fn encoder_checksums_match_decoder(
        w in 1u32..120,
        h in 1u32..120,
        comps in prop::sample::select(vec![1u8, 3]),
        bits in 1u8..=16,
        signed in any::<bool>(),
        planar in any::<bool>(),
        rct in any::<bool>(),
        coc in any::<bool>(),
        levels in prop::option::of(0u8..7),
        seed in any::<u64>(),
    ) {
        let desc = ImageDesc { width: w, height: h, components: comps, bits_stored: bits, signed };
        let v = make(w, h, comps, bits, signed, Content::Noise, seed);
        let opts = EncodeOptions {
            planar,
            color_transform: rct,
            component_coding_for_testing: coc,
            levels,
            ..Default::default()
        };
        let (j2c, sums) = match (signed, bits <= 8) {
            (false, true) => {
                let s: Vec<u8> = v.iter().map(|&x| x as u8).collect();
                encode_lossless_with_checksums(&desc, Samples::U8(&s), &opts)
            }
            (false, false) => {
                let s: Vec<u16> = v.iter().map(|&x| x as u16).collect();
                encode_lossless_with_checksums(&desc, Samples::U16(&s), &opts)
            }
            (true, true) => {
                let s: Vec<i8> = v.iter().map(|&x| x as i8).collect();
                encode_lossless_with_checksums(&desc, Samples::I8(&s), &opts)
            }
            (true, false) => {
                let s: Vec<i16> = v.iter().map(|&x| x as i16).collect();
                encode_lossless_with_checksums(&desc, Samples::I16(&s), &opts)
            }
        }
        .unwrap();
        let from_decoder = resolution_checksums(&j2c, &DecodeOptions::default()).unwrap();
        prop_assert_eq!(sums, from_decoder);
    }
}
