//! Interoperability with independent codecs: OpenJPH (ojph_compress / ojph_expand, Debian
//! 0.9, and 0.26 via imagecodecs) and OpenJPEG (opj_decompress 2.5, and imagecodecs).
//! With LIGHTBOX_REQUIRE_ORACLES=1 a missing tool fails the test instead of skipping it.

mod common;

use common::*;
use lightbox_codec::*;
use std::path::Path;

const SIZES: &[(u32, u32)] = &[
    (1, 1),
    (1, 13),
    (13, 1),
    (3, 2),
    (2, 130),
    (64, 64),
    (65, 67),
    (200, 31),
    (129, 300),
    (5000, 1),
    (1, 4500),
];

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Our codestreams decode bit-exact in ojph_expand and opj_decompress (unsigned data).
#[test]
fn ours_decoded_by_openjph_and_openjpeg() {
    if !have_tools(
        "ours_decoded_by_openjph_and_openjpeg",
        &["ojph_expand", "opj_decompress"],
    ) {
        return;
    }
    let dir = tmp_dir("ours_to_oracles");
    let mut cases = Vec::new();
    for &(w, h) in SIZES {
        for bits in [1u8, 2, 7, 8, 9, 12, 14, 15, 16] {
            cases.push((w, h, 1u8, bits));
        }
        for bits in [8u8, 12, 16] {
            cases.push((w, h, 3u8, bits));
        }
    }
    for (k, &(w, h, comps, bits)) in cases.iter().enumerate() {
        let desc = ImageDesc {
            width: w,
            height: h,
            components: comps,
            bits_stored: bits,
            signed: false,
        };
        let v = synth(w, h, comps, bits, false, k as u64 + 7);
        let j2c = encode_i32(&desc, &v, &EncodeOptions::default());
        let what = format!("{w}x{h}x{comps} {bits}-bit");
        let img = decode(&j2c, &DecodeOptions::default()).expect("self decode");
        assert_same(&format!("{what} self"), &decoded_i32(&img.samples), &v);
        let jf = dir.join(format!("c{k}.j2c"));
        std::fs::write(&jf, &j2c).unwrap();
        let ext = if comps == 3 { "ppm" } else { "pgm" };
        let of = dir.join(format!("c{k}.ojph.{ext}"));
        run("ojph_expand", &["-i", p(&jf), "-o", p(&of)]);
        assert_same(&format!("{what} ojph_expand"), &read_pnm_i32(&of), &v);
        let pf = dir.join(format!("c{k}.opj.rawl"));
        run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
        let mut got = read_rawl(&pf, bits);
        if comps == 3 {
            // opj writes planar raw files.
            let n = (w * h) as usize;
            got = (0..n * 3).map(|i| got[(i % 3) * n + i / 3]).collect();
        }
        assert_same(&format!("{what} opj_decompress"), &got, &v);
    }
}

/// Codestreams written by ojph_compress with many option combinations decode bit-exact in ours.
#[test]
fn openjph_streams_decoded_by_us() {
    if !have_tools("openjph_streams_decoded_by_us", &["ojph_compress"]) {
        return;
    }
    let dir = tmp_dir("ojph_to_ours");
    let variants: &[&[&str]] = &[
        &[],
        &["-num_decomps", "0"],
        &["-num_decomps", "1"],
        &["-num_decomps", "8"],
        &["-block_size", "{32,32}"],
        &["-block_size", "{16,64}"],
        &["-block_size", "{64,16}"],
        &["-block_size", "{4,8}"],
        &["-prog_order", "LRCP"],
        &["-prog_order", "RLCP"],
        &["-prog_order", "PCRL"],
        &["-prog_order", "CPRL"],
        &["-precincts", "{32,32},{64,64},{128,128}"],
        &[
            "-precincts",
            "{16,16}",
            "-block_size",
            "{8,8}",
            "-prog_order",
            "PCRL",
        ],
        &["-tile_size", "{64,48}"],
        &[
            "-tile_size",
            "{50,40}",
            "-tile_offset",
            "{7,3}",
            "-image_offset",
            "{9,11}",
            "-prog_order",
            "PCRL",
            "-precincts",
            "{32,32},{64,64}",
        ],
        &[
            "-tile_size",
            "{60,45}",
            "-tile_offset",
            "{2,9}",
            "-image_offset",
            "{5,13}",
            "-prog_order",
            "CPRL",
            "-block_size",
            "{16,16}",
            "-precincts",
            "{16,16},{32,32}",
        ],
        &[
            "-image_offset",
            "{3,7}",
            "-prog_order",
            "PCRL",
            "-precincts",
            "{8,8},{16,16},{32,32}",
            "-block_size",
            "{8,8}",
        ],
        &[
            "-tile_size",
            "{50,50}",
            "-tile_offset",
            "{3,5}",
            "-image_offset",
            "{10,7}",
        ],
        &["-colour_trans", "false"],
    ];
    let images = [
        (131u32, 97u32, 1u8, 12u8),
        (70, 45, 3, 8),
        (257, 33, 1, 16),
        (33, 257, 3, 10),
    ];
    for (ii, &(w, h, comps, bits)) in images.iter().enumerate() {
        let v = synth(w, h, comps, bits, false, 99 + ii as u64);
        let ext = if comps == 3 { "ppm" } else { "pgm" };
        let src = dir.join(format!("img{ii}.{ext}"));
        write_pnm_i32(&src, w, h, comps, bits, &v);
        for (vi, extra) in variants.iter().enumerate() {
            if comps == 1 && extra.contains(&"-colour_trans") {
                continue;
            }
            let jf = dir.join(format!("img{ii}_v{vi}.j2c"));
            let mut args = vec!["-i", p(&src), "-o", p(&jf), "-reversible", "true"];
            args.extend_from_slice(extra);
            run("ojph_compress", &args);
            let j2c = std::fs::read(&jf).unwrap();
            let img = decode(&j2c, &DecodeOptions::default())
                .unwrap_or_else(|e| panic!("image {ii} variant {extra:?}: {e}"));
            let offset = extra.contains(&"-image_offset");
            if !offset {
                assert_eq!((img.width, img.height), (w, h));
                assert_same(
                    &format!("image {ii} variant {extra:?}"),
                    &decoded_i32(&img.samples),
                    &v,
                );
            } else {
                // The image area starts at (10, 7) of the reference grid; ojph reads the
                // file as the area itself.
                assert_eq!((img.width, img.height), (w, h), "offset image size");
                assert_same(
                    &format!("image {ii} variant {extra:?}"),
                    &decoded_i32(&img.samples),
                    &v,
                );
            }
        }
    }
}

/// Reduced-resolution decoding matches opj_decompress -r and ojph_expand -skip_res, and the
/// per-level checksums equal CRC-32 of those oracle outputs.
#[test]
fn reduced_resolutions_and_checksums_match_oracles() {
    if !have_tools(
        "reduced_resolutions",
        &["ojph_expand", "opj_decompress", "ojph_compress"],
    ) {
        return;
    }
    let dir = tmp_dir("reduced");
    for (k, &(w, h, comps, bits)) in [
        (300u32, 211u32, 1u8, 12u8),
        (97, 64, 3, 8),
        (1000, 9, 1, 16),
    ]
    .iter()
    .enumerate()
    {
        let desc = ImageDesc {
            width: w,
            height: h,
            components: comps,
            bits_stored: bits,
            signed: false,
        };
        let v = synth(w, h, comps, bits, false, 5 + k as u64);
        let ext = if comps == 3 { "ppm" } else { "pgm" };
        let ours = encode_i32(&desc, &v, &EncodeOptions::default());
        let src = dir.join(format!("s{k}.{ext}"));
        write_pnm_i32(&src, w, h, comps, bits, &v);
        let theirs_f = dir.join(format!("s{k}.ojph.j2c"));
        run(
            "ojph_compress",
            &["-i", p(&src), "-o", p(&theirs_f), "-reversible", "true"],
        );
        let theirs = std::fs::read(&theirs_f).unwrap();
        // Tiled, offset and with custom precincts: reduced tile rectangles must line up too.
        let tiled_f = dir.join(format!("s{k}.ojph.tiled.j2c"));
        run(
            "ojph_compress",
            &[
                "-i",
                p(&src),
                "-o",
                p(&tiled_f),
                "-reversible",
                "true",
                "-tile_size",
                "{100,70}",
                "-tile_offset",
                "{5,3}",
                "-image_offset",
                "{13,9}",
                "-precincts",
                "{64,64},{128,128}",
            ],
        );
        let tiled = std::fs::read(&tiled_f).unwrap();
        let mut streams = vec![ours, theirs];
        if h > 16 {
            streams.push(tiled);
        }
        for (si, stream) in streams.iter().enumerate() {
            let jf = dir.join(format!("s{k}_{si}.j2c"));
            std::fs::write(&jf, stream).unwrap();
            let inf = info(stream).unwrap();
            let sums = resolution_checksums(stream, &DecodeOptions::default()).unwrap();
            assert_eq!(sums.len(), inf.resolution_levels as usize);
            for skip in 0..inf.resolution_levels {
                let keep = inf.resolution_levels - skip;
                let img = decode(
                    stream,
                    &DecodeOptions {
                        max_resolution_levels: Some(keep),
                        ..Default::default()
                    },
                )
                .unwrap();
                let mine = decoded_i32(&img.samples);
                let what = format!("image {k} stream {si} skip {skip}");
                let of = dir.join(format!("s{k}_{si}_{skip}.{ext}"));
                // OpenJPH 0.9 crashes on the tiled stream at high skips; OpenJPEG covers it.
                let want = if si < 2 {
                    let skip_s = format!("{skip},{skip}");
                    run(
                        "ojph_expand",
                        &["-i", p(&jf), "-o", p(&of), "-skip_res", &skip_s],
                    );
                    let want = read_pnm_i32(&of);
                    assert_same(&format!("{what} ojph_expand"), &mine, &want);
                    want
                } else {
                    mine.clone()
                };
                // OpenJPEG refuses reductions that empty a tile; only compare where it decodes.
                if skip < 6 && (si < 2 || skip < 4) {
                    let pf = dir.join(format!("s{k}_{si}_{skip}.opj.{ext}"));
                    let r = skip.to_string();
                    run("opj_decompress", &["-i", p(&jf), "-o", p(&pf), "-r", &r]);
                    assert_same(&format!("{what} opj_decompress"), &read_pnm_i32(&pf), &mine);
                }
                let sum = &sums[keep as usize - 1];
                assert_eq!((sum.width, sum.height), (img.width, img.height), "{what}");
                let mut bytes = Vec::new();
                for &x in &want {
                    if bits <= 8 {
                        bytes.push(x as u8);
                    } else {
                        bytes.extend_from_slice(&(x as u16).to_le_bytes());
                    }
                }
                assert_eq!(sum.crc32, crc32fast::hash(&bytes), "{what} crc");
            }
        }
    }
}

/// Signed data: ours decoded by opj_decompress (raw output) and by OpenJPH 0.26 / OpenJPEG via
/// imagecodecs; imagecodecs' (OpenJPH 0.26) signed streams decoded by ours.
#[test]
fn signed_interop() {
    if !have_tools("signed_interop", &["opj_decompress"]) {
        return;
    }
    let Some(py) = venv_python("signed_interop") else {
        return;
    };
    let dir = tmp_dir("signed");
    let mut names = Vec::new();
    for (k, &(w, h)) in SIZES.iter().enumerate() {
        for bits in [2u8, 8, 12, 16] {
            let name = format!("s{k}_{bits}");
            let desc = ImageDesc {
                width: w,
                height: h,
                components: 1,
                bits_stored: bits,
                signed: true,
            };
            let v = synth(w, h, 1, bits, true, 1000 + k as u64);
            let j2c = encode_i32(&desc, &v, &EncodeOptions::default());
            let jf = dir.join(format!("{name}.ours.j2c"));
            std::fs::write(&jf, &j2c).unwrap();
            write_raw(&dir.join(format!("{name}.raw")), bits, &v);
            std::fs::write(
                dir.join(format!("{name}.json")),
                format!(
                    r#"{{"width":{w},"height":{h},"components":1,"bits":{bits},"signed":true}}"#
                ),
            )
            .unwrap();
            let pf = dir.join(format!("{name}.opj.rawl"));
            run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
            let mask = (1i32 << bits) - 1;
            let got = read_rawl(&pf, bits);
            let want: Vec<i32> = v.iter().map(|&x| x & mask).collect();
            let got: Vec<i32> = got.iter().map(|&x| x & mask).collect();
            assert_same(&format!("{name} opj_decompress"), &got, &want);
            names.push((name, v));
        }
    }
    let script = workspace_root().join("scripts/codec-corpus.py");
    let out = run(p(&py), &[p(&script), "check", p(&dir)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("FAIL"), "python oracles: {text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK")).count(),
        2 * names.len(),
        "{text}"
    );
    run(p(&py), &[p(&script), "encode", p(&dir)]);
    for (name, v) in &names {
        let theirs = std::fs::read(dir.join(format!("{name}.ic.j2c"))).unwrap();
        let img = decode(&theirs, &DecodeOptions::default()).unwrap();
        assert_same(
            &format!("{name} imagecodecs -> ours"),
            &decoded_i32(&img.samples),
            v,
        );
    }
}

/// Real DICOM pixel data (pydicom test files: CT/MR signed 16-bit, 12-bit signed and unsigned,
/// 10-, 14-, 15-bit radiographs, 8- and 16-bit RGB, 1-bit segmentation), both directions.
#[test]
fn real_dicom_corpus() {
    if !have_tools(
        "real_dicom_corpus",
        &["ojph_expand", "ojph_compress", "opj_decompress"],
    ) {
        return;
    }
    let Some(py) = venv_python("real_dicom_corpus") else {
        return;
    };
    let dir = tmp_dir("dicom");
    let script = workspace_root().join("scripts/codec-corpus.py");
    run(p(&py), &[p(&script), "extract", p(&dir)]);
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut count = 0;
    for entry in manifest.split('{').skip(1) {
        let field = |k: &str| -> String {
            let i = entry
                .find(&format!("\"{k}\": "))
                .unwrap_or_else(|| panic!("{k} in {entry}"))
                + k.len()
                + 4;
            entry[i..]
                .split([',', '}', '\n'])
                .next()
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_string()
        };
        let name = field("name");
        let w: u32 = field("width").parse().unwrap();
        let h: u32 = field("height").parse().unwrap();
        let comps: u8 = field("components").parse().unwrap();
        let bits: u8 = field("bits").parse().unwrap();
        let signed = field("signed") == "true";
        let raw = std::fs::read(dir.join(format!("{name}.raw"))).unwrap();
        let v: Vec<i32> = match (signed, bits <= 8) {
            (false, true) => raw.iter().map(|&b| b as i32).collect(),
            (true, true) => raw.iter().map(|&b| b as i8 as i32).collect(),
            (false, false) => raw
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
                .collect(),
            (true, false) => raw
                .chunks(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
                .collect(),
        };
        let desc = ImageDesc {
            width: w,
            height: h,
            components: comps,
            bits_stored: bits,
            signed,
        };
        let j2c = encode_i32(&desc, &v, &EncodeOptions::default());
        let inf = info(&j2c).unwrap();
        assert!(inf.cap_part15 && inf.has_tlm && inf.progression == Progression::Rpcl);
        let jf = dir.join(format!("{name}.ours.j2c"));
        std::fs::write(&jf, &j2c).unwrap();
        let img = decode(&j2c, &DecodeOptions::default()).unwrap();
        assert_same(&format!("{name} self"), &decoded_i32(&img.samples), &v);
        // OpenJPH 0.26 (imagecodecs) stream -> ours.
        let theirs = std::fs::read(dir.join(format!("{name}.ic.j2c"))).unwrap();
        let img = decode(&theirs, &DecodeOptions::default()).unwrap();
        assert_same(
            &format!("{name} imagecodecs -> ours"),
            &decoded_i32(&img.samples),
            &v,
        );
        // opj_decompress (Debian OpenJPEG 2.5.0).
        let pf = dir.join(format!("{name}.opj.rawl"));
        run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
        let mask = (1i32 << bits) - 1;
        let n = (w * h) as usize;
        let got = read_rawl(&pf, bits);
        let got: Vec<i32> = (0..n * comps as usize)
            .map(|i| got[(i % comps as usize) * n + i / comps as usize] & mask)
            .collect();
        let want: Vec<i32> = v.iter().map(|&x| x & mask).collect();
        assert_same(&format!("{name} opj_decompress"), &got, &want);
        if !signed {
            let ext = if comps == 3 { "ppm" } else { "pgm" };
            let of = dir.join(format!("{name}.ojph.{ext}"));
            run("ojph_expand", &["-i", p(&jf), "-o", p(&of)]);
            assert_same(&format!("{name} ojph_expand"), &read_pnm_i32(&of), &v);
            let src = dir.join(format!("{name}.{ext}"));
            std::fs::copy(dir.join(format!("{name}.pnm")), &src).unwrap();
            let tf = dir.join(format!("{name}.ojph.j2c"));
            run(
                "ojph_compress",
                &["-i", p(&src), "-o", p(&tf), "-reversible", "true"],
            );
            let img = decode(&std::fs::read(&tf).unwrap(), &DecodeOptions::default()).unwrap();
            assert_same(
                &format!("{name} ojph_compress -> ours"),
                &decoded_i32(&img.samples),
                &v,
            );
        }
        count += 1;
    }
    assert!(count >= 12, "corpus too small: {count}");
    let out = run(p(&py), &[p(&script), "check", p(&dir)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("FAIL"), "python oracles: {text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK")).count(),
        2 * count,
        "{text}"
    );
}

/// Code-blocks carrying SigProp and MagRef passes (cleanup at bit-plane 1): our writer is
/// checked by OpenJPH and OpenJPEG, then our decoder's refinement passes against it.
#[test]
fn refinement_passes_interop() {
    if !have_tools(
        "refinement_passes_interop",
        &["ojph_expand", "opj_decompress"],
    ) {
        return;
    }
    let dir = tmp_dir("refine");
    let mut rng = Rng(77);
    for (k, &(w, h, levels)) in [
        (64u32, 64u32, Some(0u8)),
        (61, 37, Some(0)),
        (200, 150, None),
        (33, 300, Some(2)),
    ]
    .iter()
    .enumerate()
    {
        // Noisy 8-bit content: almost every magnitude-1 coefficient has a significant neighbour.
        let v: Vec<i32> = (0..w * h)
            .map(|i| {
                let base = ((i % w) * 3 + (i / w)) as i32 % 200;
                (base + (rng.next() % 40) as i32).min(255)
            })
            .collect();
        let desc = ImageDesc {
            width: w,
            height: h,
            components: 1,
            bits_stored: 8,
            signed: false,
        };
        let opts = EncodeOptions {
            levels,
            refinement_passes_for_testing: true,
            ..Default::default()
        };
        let j2c = encode_i32(&desc, &v, &opts);
        let plain = encode_i32(
            &desc,
            &v,
            &EncodeOptions {
                levels,
                ..Default::default()
            },
        );
        assert_ne!(j2c, plain, "image {k}: no block used refinement passes");
        let jf = dir.join(format!("r{k}.j2c"));
        std::fs::write(&jf, &j2c).unwrap();
        let of = dir.join(format!("r{k}.ojph.pgm"));
        run("ojph_expand", &["-i", p(&jf), "-o", p(&of)]);
        assert_same(&format!("refine {k} ojph_expand"), &read_pnm_i32(&of), &v);
        let pf = dir.join(format!("r{k}.opj.pgm"));
        run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
        assert_same(
            &format!("refine {k} opj_decompress"),
            &read_pnm_i32(&pf),
            &v,
        );
        let img = decode(&j2c, &DecodeOptions::default()).unwrap();
        assert_same(&format!("refine {k} ours"), &decoded_i32(&img.samples), &v);
    }
}

/// Several quality layers (code-blocks first included in layer 1, trailing empty layers) in
/// every progression order: written by us, checked by OpenJPEG, then decoded by us. OpenJPH
/// decodes single-layer codestreams only. (OpenJPEG 2.5.0 rejects multi-layer streams whose
/// blocks carry refinement passes, so that combination has no oracle and is not asserted.)
#[test]
fn multi_layer_interop() {
    if !have_tools("multi_layer_interop", &["opj_decompress"]) {
        return;
    }
    let dir = tmp_dir("layers");
    let mut rng = Rng(4242);
    let (w, h) = (150u32, 97u32);
    let v: Vec<i32> = (0..w * h * 3)
        .map(|i| {
            let p = i / 3;
            let base = ((p % w) * 2 + (p / w) + (i % 3) * 40) as i32 % 220;
            (base + (rng.next() % 30) as i32).min(255)
        })
        .collect();
    let desc = ImageDesc {
        width: w,
        height: h,
        components: 3,
        bits_stored: 8,
        signed: false,
    };
    let mut k = 0;
    for prog in [
        Progression::Rpcl,
        Progression::Lrcp,
        Progression::Rlcp,
        Progression::Pcrl,
        Progression::Cprl,
    ] {
        for (layers, precincts) in [
            (2u16, vec![]),
            (4, vec![(5u8, 5u8)]),
            (3, vec![(4, 4), (6, 6)]),
        ] {
            let opts = EncodeOptions {
                progression: prog,
                layers_for_testing: layers,
                precincts: precincts.clone(),
                block_size_log2: (5, 5),
                ..Default::default()
            };
            let j2c = encode_i32(&desc, &v, &opts);
            assert_eq!(info(&j2c).unwrap().layers, layers);
            let what = format!("{prog:?} layers {layers} precincts {precincts:?}");
            let jf = dir.join(format!("m{k}.j2c"));
            std::fs::write(&jf, &j2c).unwrap();
            let pf = dir.join(format!("m{k}.opj.ppm"));
            run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
            assert_same(&format!("{what} opj_decompress"), &read_pnm_i32(&pf), &v);
            let img = decode(&j2c, &DecodeOptions::default()).unwrap();
            assert_same(&format!("{what} ours"), &decoded_i32(&img.samples), &v);
            k += 1;
        }
    }
}

/// SOP/EPH markers, per-component QCC, COD/QCD/QCC repeated in a tile-part header and Psot = 0
/// on the last tile-part: written by us, checked by OpenJPH and OpenJPEG, decoded by us.
#[test]
fn marker_variants_interop() {
    if !have_tools(
        "marker_variants_interop",
        &["ojph_expand", "opj_decompress"],
    ) {
        return;
    }
    let dir = tmp_dir("markers");
    for (k, &(w, h, comps, bits)) in [(120u32, 77u32, 1u8, 12u8), (64, 40, 3, 8)]
        .iter()
        .enumerate()
    {
        let desc = ImageDesc {
            width: w,
            height: h,
            components: comps,
            bits_stored: bits,
            signed: false,
        };
        let v = synth(w, h, comps, bits, false, 300 + k as u64);
        for prog in [Progression::Rpcl, Progression::Lrcp] {
            let opts = EncodeOptions {
                marker_variants_for_testing: true,
                progression: prog,
                precincts: vec![(5, 5)],
                ..Default::default()
            };
            let j2c = encode_i32(&desc, &v, &opts);
            let what = format!("markers image {k} {prog:?}");
            let ext = if comps == 3 { "ppm" } else { "pgm" };
            let jf = dir.join(format!("k{k}_{prog:?}.j2c"));
            std::fs::write(&jf, &j2c).unwrap();
            let of = dir.join(format!("k{k}_{prog:?}.ojph.{ext}"));
            run("ojph_expand", &["-i", p(&jf), "-o", p(&of)]);
            assert_same(&format!("{what} ojph_expand"), &read_pnm_i32(&of), &v);
            let pf = dir.join(format!("k{k}_{prog:?}.opj.{ext}"));
            run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
            assert_same(&format!("{what} opj_decompress"), &read_pnm_i32(&pf), &v);
            let img = decode(&j2c, &DecodeOptions::default()).unwrap();
            assert_same(&format!("{what} ours"), &decoded_i32(&img.samples), &v);
        }
    }
}

/// Components with their own coding parameters (COC: fewer levels, other code-block size) and
/// quantization (QCC), in every progression order and with custom precincts: written by us,
/// checked by OpenJPEG (full and reduced resolution) and OpenJPH, decoded by us.
#[test]
fn component_coding_interop() {
    if !have_tools(
        "component_coding_interop",
        &["ojph_expand", "opj_decompress"],
    ) {
        return;
    }
    let dir = tmp_dir("coc");
    let (w, h) = (181u32, 133u32);
    let v = synth(w, h, 3, 10, false, 77);
    let desc = ImageDesc {
        width: w,
        height: h,
        components: 3,
        bits_stored: 10,
        signed: false,
    };
    let progs = [
        Progression::Rpcl,
        Progression::Pcrl,
        Progression::Cprl,
        Progression::Lrcp,
        Progression::Rlcp,
    ];
    for (k, prog) in progs.into_iter().enumerate() {
        for precincts in [vec![], vec![(4u8, 4u8), (5, 5), (6, 6)]] {
            let opts = EncodeOptions {
                component_coding_for_testing: true,
                color_transform: false,
                progression: prog,
                precincts: precincts.clone(),
                ..Default::default()
            };
            let j2c = encode_i32(&desc, &v, &opts);
            let what = format!("COC {prog:?} precincts {precincts:?}");
            let jf = dir.join(format!("c{k}_{}.j2c", precincts.len()));
            std::fs::write(&jf, &j2c).unwrap();
            let img = decode(&j2c, &DecodeOptions::default()).unwrap();
            assert_same(&format!("{what} ours"), &decoded_i32(&img.samples), &v);
            let pf = dir.join(format!("c{k}_{}.opj.ppm", precincts.len()));
            run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
            assert_same(&format!("{what} opj_decompress"), &read_pnm_i32(&pf), &v);
            let levels = info(&j2c).unwrap().resolution_levels;
            for skip in 1..levels.min(4) {
                let small = decode(
                    &j2c,
                    &DecodeOptions {
                        max_resolution_levels: Some(levels - skip),
                        ..Default::default()
                    },
                )
                .unwrap();
                let rf = dir.join(format!("c{k}_{}_{skip}.opj.ppm", precincts.len()));
                run(
                    "opj_decompress",
                    &["-i", p(&jf), "-o", p(&rf), "-r", &skip.to_string()],
                );
                assert_same(
                    &format!("{what} skip {skip}"),
                    &decoded_i32(&small.samples),
                    &read_pnm_i32(&rf),
                );
            }
        }
    }
}

/// Progression order changes (POC with three volumes over resolution and component ranges,
/// then the COD order), with several layers and with per-component coding: written by us,
/// checked by OpenJPEG, decoded by us.
#[test]
fn poc_interop() {
    if !have_tools("poc_interop", &["opj_decompress"]) {
        return;
    }
    let dir = tmp_dir("poc");
    let (w, h) = (150u32, 101u32);
    let v = synth(w, h, 3, 12, false, 91);
    let desc = ImageDesc {
        width: w,
        height: h,
        components: 3,
        bits_stored: 12,
        signed: false,
    };
    let mut k = 0;
    for prog in [Progression::Rpcl, Progression::Lrcp, Progression::Pcrl] {
        for (layers, coc, precincts) in [
            (1u16, false, vec![]),
            (3, false, vec![(5u8, 5u8)]),
            (2, true, vec![(4, 4), (6, 6)]),
        ] {
            let opts = EncodeOptions {
                poc_for_testing: true,
                progression: prog,
                layers_for_testing: layers,
                component_coding_for_testing: coc,
                color_transform: !coc,
                precincts: precincts.clone(),
                ..Default::default()
            };
            let j2c = encode_i32(&desc, &v, &opts);
            let what = format!("POC {prog:?} layers {layers} coc {coc} precincts {precincts:?}");
            let jf = dir.join(format!("p{k}.j2c"));
            std::fs::write(&jf, &j2c).unwrap();
            let pf = dir.join(format!("p{k}.opj.ppm"));
            run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
            assert_same(&format!("{what} opj_decompress"), &read_pnm_i32(&pf), &v);
            let img = decode(&j2c, &DecodeOptions::default()).unwrap();
            assert_same(&format!("{what} ours"), &decoded_i32(&img.samples), &v);
            k += 1;
        }
    }
}

/// Packed packet headers (PPT per tile-part, PPM in the main header), alone and with SOP/EPH,
/// several tile-parts and layers: written by us, checked by OpenJPEG, decoded by us.
#[test]
fn packed_headers_interop() {
    if !have_tools("packed_headers_interop", &["opj_decompress"]) {
        return;
    }
    let dir = tmp_dir("packed");
    let (w, h) = (140u32, 90u32);
    let v = synth(w, h, 3, 12, false, 5);
    let desc = ImageDesc {
        width: w,
        height: h,
        components: 3,
        bits_stored: 12,
        signed: false,
    };
    let mut k = 0;
    for packed in [1u8, 2] {
        for (markers, layers, prog) in [
            (false, 1u16, Progression::Rpcl),
            (true, 2, Progression::Rpcl),
            (false, 3, Progression::Lrcp),
        ] {
            let opts = EncodeOptions {
                packed_headers_for_testing: packed,
                marker_variants_for_testing: markers,
                layers_for_testing: layers,
                progression: prog,
                precincts: vec![(5, 5)],
                ..Default::default()
            };
            let j2c = encode_i32(&desc, &v, &opts);
            let what = format!("packed {packed} markers {markers} layers {layers} {prog:?}");
            let jf = dir.join(format!("h{k}.j2c"));
            std::fs::write(&jf, &j2c).unwrap();
            let pf = dir.join(format!("h{k}.opj.ppm"));
            run("opj_decompress", &["-i", p(&jf), "-o", p(&pf)]);
            assert_same(&format!("{what} opj_decompress"), &read_pnm_i32(&pf), &v);
            let img = decode(&j2c, &DecodeOptions::default()).unwrap();
            assert_same(&format!("{what} ours"), &decoded_i32(&img.samples), &v);
            k += 1;
        }
    }
}
